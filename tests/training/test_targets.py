"""Tests of the learning-target preprocessing (pLSA, GMM, TF-IDF, artist pLSA, registry, cache)."""

import json
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from sklearn.feature_extraction.text import TfidfTransformer

from mtlmusic.architectures import SOURCES
from mtlmusic.errors import ConfigError
from mtlmusic_training import targets as tg


def random_counts(n_docs, n_terms, density, seed):
    rng = np.random.default_rng(seed)
    matrix = sp.random(n_docs, n_terms, density=density, random_state=rng, format="csr",
                       data_rvs=lambda n: rng.integers(1, 6, n))
    return matrix


def textbook_plsa(counts, doc_topic, topic_term, n_iter):
    """Dense EM straight from Hofmann's equations, with the full docs x terms x topics posterior."""
    counts = np.asarray(counts, dtype=float)
    theta, phi = doc_topic.copy(), topic_term.copy()
    empty = counts.sum(axis=1) == 0
    theta[empty] = 1.0 / theta.shape[1]
    history = []
    for _ in range(n_iter + 1):
        joint = theta[:, None, :] * phi.T[None, :, :]             # (d, w, z)
        p_w_d = joint.sum(axis=2)
        seen = counts > 0
        history.append(float(np.sum(counts[seen] * np.log(p_w_d[seen]))))
        if len(history) == n_iter + 1:
            break
        posterior = joint / np.where(p_w_d > 0, p_w_d, 1.0)[:, :, None]
        expected = counts[:, :, None] * posterior
        n_dz = expected.sum(axis=1)
        n_zw = expected.sum(axis=0).T
        theta = np.where(empty[:, None], 1.0 / theta.shape[1], n_dz / np.where(empty, 1.0, n_dz.sum(axis=1))[:, None])
        phi = n_zw / n_zw.sum(axis=1, keepdims=True)
    return theta, phi, np.array(history)


def planted_corpus(n_topics=4, n_terms=200, n_docs=300, doc_length=150, seed=3):
    rng = np.random.default_rng(seed)
    block = n_terms // n_topics
    topics = np.full((n_topics, n_terms), 0.05 / (n_terms - block))
    for t in range(n_topics):
        topics[t, t * block:(t + 1) * block] = 0.95 / block
    mixtures = rng.dirichlet(np.full(n_topics, 0.2), size=n_docs)
    counts = np.array([rng.multinomial(doc_length, m @ topics) for m in mixtures])
    return sp.csr_matrix(counts), topics, mixtures


def test_plsa_log_likelihood_never_decreases():
    counts = random_counts(60, 80, 0.1, seed=1)
    result = tg.plsa(counts, k=6, n_iter=60, seed=0)
    ll = result.log_likelihood
    assert ll.shape == (61,)
    assert np.all(np.diff(ll) >= -1e-9 * np.abs(ll[:-1])), np.diff(ll).min()
    assert ll[-1] > ll[0] + 1.0


def test_plsa_outputs_are_distributions_and_empty_rows_are_uniform():
    counts = random_counts(30, 40, 0.15, seed=2).tolil()
    counts[4, :] = 0
    counts[17, :] = 0
    result = tg.plsa(counts.tocsr(), k=5, n_iter=10, seed=0)
    assert result.doc_topic.shape == (30, 5) and result.topic_term.shape == (5, 40)
    np.testing.assert_allclose(result.doc_topic.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(result.topic_term.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(result.doc_topic >= 0) and np.all(result.topic_term >= 0)
    np.testing.assert_array_equal(result.doc_topic[[4, 17]], 0.2)
    assert not np.allclose(result.doc_topic[0], 0.2)


def test_plsa_matches_dense_textbook_em_from_the_same_start():
    rng = np.random.default_rng(7)
    counts = rng.poisson(1.2, size=(7, 9)) * (rng.random((7, 9)) < 0.6)
    counts[3] = 0
    counts[:, 5] = 0
    init_theta, init_phi = rng.random((7, 3)), rng.random((3, 9))
    init_theta /= init_theta.sum(axis=1, keepdims=True)
    init_phi /= init_phi.sum(axis=1, keepdims=True)
    result = tg.plsa(counts, k=3, n_iter=25, init=(init_theta, init_phi))
    theta, phi, history = textbook_plsa(counts, init_theta, init_phi, 25)
    np.testing.assert_allclose(result.doc_topic, theta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.topic_term, phi, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.log_likelihood, history, rtol=1e-11)


def test_plsa_recovers_planted_topics():
    counts, topics, mixtures = planted_corpus()
    result = tg.plsa(counts, k=4, n_iter=150, seed=0)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(topics) @ unit(result.topic_term).T
    true_index, found_index = linear_sum_assignment(-similarity)
    assert similarity[true_index, found_index].min() > 0.97
    recovered = result.doc_topic[:, found_index]
    assert np.mean(np.abs(recovered - mixtures[:, true_index])) < 0.05


def test_plsa_dense_and_sparse_inputs_agree_and_seed_is_reproducible():
    counts = random_counts(20, 25, 0.2, seed=4)
    a = tg.plsa(counts, k=4, n_iter=15, seed=5)
    b = tg.plsa(counts.toarray(), k=4, n_iter=15, seed=5)
    c = tg.plsa(counts, k=4, n_iter=15, seed=6)
    np.testing.assert_array_equal(a.doc_topic, b.doc_topic)
    np.testing.assert_array_equal(a.log_likelihood, b.log_likelihood)
    assert not np.allclose(a.doc_topic, c.doc_topic)


def test_plsa_memory_scales_with_nonzeros_not_docs_times_terms():
    counts = random_counts(5000, 20000, 0.0005, seed=5)   # 50k nonzeros; dense would be 800 MB
    tracemalloc.start()
    try:
        tg.plsa(counts, k=20, n_iter=2, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40e6, peak


@pytest.mark.parametrize("bad", [np.array([[1.0, -1.0]]), np.array([[np.nan, 1.0]])])
def test_plsa_rejects_negative_or_nonfinite_counts(bad):
    with pytest.raises(ConfigError):
        tg.plsa(bad, k=2, n_iter=1)


def test_plsa_rejects_init_of_wrong_shape():
    with pytest.raises(ConfigError, match="shapes"):
        tg.plsa(np.eye(3), k=2, n_iter=1, init=(np.ones((3, 3)), np.ones((2, 3))))


def test_gmm_targets_are_distributions_with_a_mask_for_missing_values():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(80, 3, 300), rng.normal(160, 3, 300)]
    values[[5, 400]] = np.nan
    values[[7]] = 0.0
    values[[9]] = np.inf
    result = tg.gmm_targets(values, k=4, n_iter=100, seed=0, missing_values=[0])
    expected_mask = np.ones(600, bool)
    expected_mask[[5, 7, 9, 400]] = False
    np.testing.assert_array_equal(result.mask, expected_mask)
    z = result.responsibilities
    assert z.shape == (600, 4)
    assert np.all(np.isnan(z[~expected_mask]))
    np.testing.assert_allclose(z[expected_mask].sum(axis=1), 1.0, atol=1e-9)
    assert np.all(z[expected_mask] >= 0)
    assert np.all(np.diff(result.means) > 0)
    np.testing.assert_allclose(result.weights.sum(), 1.0)
    # Tracks near 80 and near 160 land on disjoint sets of components.
    low = z[:300][expected_mask[:300]].mean(axis=0)
    high = z[300:][expected_mask[300:]].mean(axis=0)
    assert np.abs(low - high).sum() > 1.9


def test_gmm_targets_need_at_least_k_present_values():
    with pytest.raises(ConfigError, match="at least 5"):
        tg.gmm_targets([1.0, 2.0, np.nan, 3.0, 0.0, 4.0], k=5, missing_values=[0])


def test_tfidf_matches_scikit_learn():
    counts = random_counts(40, 30, 0.2, seed=8).tolil()
    counts[3, :] = 0
    counts[:, 11] = 0
    counts = counts.tocsr()
    expected = TfidfTransformer().fit_transform(counts).toarray()
    np.testing.assert_allclose(tg.tfidf(counts).toarray(), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(tg.tfidf(counts.toarray()).toarray(), expected, rtol=1e-12, atol=1e-15)


def test_tfidf_plsa_is_plsa_of_tfidf_weights():
    counts = random_counts(25, 30, 0.2, seed=9)
    a = tg.tfidf_plsa(counts, k=3, n_iter=10, seed=2)
    b = tg.plsa(tg.tfidf(counts), k=3, n_iter=10, seed=2)
    np.testing.assert_array_equal(a.doc_topic, b.doc_topic)
    assert np.all(np.diff(a.log_likelihood) >= -1e-9 * np.abs(a.log_likelihood[:-1]))


def test_artist_plsa_shares_rows_between_tracks_of_an_artist():
    counts = random_counts(12, 15, 0.3, seed=10).toarray()
    artists = ["x", "y", "x", "z", "y", "x", "w", "z", "x", "y", "w", "z"]
    result = tg.artist_plsa(artists, counts, k=3, n_iter=20, seed=1)
    assert result.artists.tolist() == ["w", "x", "y", "z"]
    for name in set(artists):
        rows = result.track_topic[[i for i, a in enumerate(artists) if a == name]]
        assert np.all(rows == rows[0])
    bags = np.array([counts[[i for i, a in enumerate(artists) if a == name]].sum(axis=0)
                     for name in result.artists])
    reference = tg.plsa(bags, k=3, n_iter=20, seed=1)
    np.testing.assert_allclose(result.artist.doc_topic, reference.doc_topic, rtol=1e-12)
    np.testing.assert_array_equal(result.track_topic, result.artist.doc_topic[result.track_artist_index])


def test_artist_plsa_requires_one_artist_per_track():
    with pytest.raises(ConfigError, match="one artist per track"):
        tg.artist_plsa(["a", "b"], np.ones((3, 2)), k=2, n_iter=1)


def test_the_eight_study_sources_are_registered_in_canonical_order():
    specs = tg.list_sources()
    assert tuple(spec.name for spec in specs[:8]) == SOURCES
    kinds = {spec.name: spec.kind for spec in specs}
    assert kinds == {**kinds, "self": "self", "bpm": "gmm", "year": "gmm", "tag": "plsa", "taste": "plsa",
                     "cdr_tag": "plsa", "lyrics": "tfidf_plsa", "artist": "artist_plsa"}
    assert all(spec.dim == 50 and spec.n_iter == 100 for spec in specs[1:8])
    assert tg.get_source("self").dim == 2


def test_register_source_refuses_duplicates_and_accepts_new_sources(monkeypatch):
    monkeypatch.setattr(tg, "_REGISTRY", dict(tg._REGISTRY))
    with pytest.raises(ConfigError, match="already registered"):
        tg.register_source(tg.SourceSpec("tag", "plsa"))
    tg.register_source(tg.SourceSpec("tag", "plsa", 20), replace=True)
    tg.register_source(tg.SourceSpec("key", "gmm", 12))
    assert tg.get_source("tag").dim == 20
    assert [spec.name for spec in tg.list_sources()][-1] == "key"
    targets = tg.compute_targets("key", np.linspace(0, 11, 60), seed=0)
    assert targets.z.shape == (60, 12) and targets.params["kind"] == "gmm"
    with pytest.raises(ConfigError, match="Unknown learning source"):
        tg.get_source("nope")


@pytest.mark.parametrize("kwargs", [dict(name="Bad-Name", kind="plsa"), dict(name="ok", kind="lda"),
                                    dict(name="ok", kind="plsa", dim=0), dict(name="ok", kind="self", dim=50),
                                    dict(name="ok", kind="plsa", missing_values=(0.0,))])
def test_source_spec_validates_its_fields(kwargs):
    with pytest.raises(ConfigError):
        tg.SourceSpec(**kwargs)


def test_compute_targets_for_each_kind():
    counts = random_counts(30, 20, 0.2, seed=11).tolil()
    counts[2, :] = 0
    counts = counts.tocsr()
    for source in ("tag", "lyrics"):
        targets = tg.compute_targets(source, counts, seed=0)
        assert targets.z.dtype == np.float32 and targets.z.shape == (30, 50)
        np.testing.assert_array_equal(targets.mask, counts.getnnz(axis=1) > 0)
        assert not targets.mask[2]
        assert targets.topic_term.shape == (50, 20)
        np.testing.assert_allclose(targets.z.sum(axis=1), 1.0, atol=1e-5)
    artists = [i % 7 for i in range(30)]
    counts_lil = counts.tolil()
    for track in range(30):
        if artists[track] == 3:
            counts_lil[track, :] = 0
    targets = tg.compute_targets("artist", (artists, counts_lil.tocsr()), seed=0)
    assert targets.mask.tolist() == [a != 3 for a in artists]
    assert all(np.array_equal(targets.z[i], targets.z[i + 7]) for i in range(23))
    with pytest.raises(ConfigError, match="no stored targets"):
        tg.compute_targets("self", None)


def test_save_and_load_targets_round_trip(tmp_path):
    targets = tg.compute_targets("cdr_tag", np.eye(6)[:, :4], seed=3, track_ids=[f"TR{i}" for i in range(6)])
    path = tg.save_targets(targets, tg.targets_path(tmp_path / "cache", "cdr_tag"))
    assert path == tmp_path / "cache" / "cdr_tag.npz"
    assert [p.name for p in path.parent.iterdir()] == ["cdr_tag.npz"]
    loaded = tg.load_targets(path)
    assert loaded.source == "cdr_tag" and loaded.params == targets.params
    np.testing.assert_array_equal(loaded.z, targets.z)
    np.testing.assert_array_equal(loaded.mask, targets.mask)
    np.testing.assert_array_equal(loaded.track_ids, targets.track_ids)
    np.testing.assert_array_equal(loaded.topic_term, targets.topic_term)
    gmm = tg.compute_targets("bpm", np.r_[np.linspace(60, 200, 80), 0.0])
    tg.save_targets(gmm, path)
    reloaded = tg.load_targets(path)
    assert reloaded.track_ids is None and reloaded.topic_term is None
    assert not reloaded.mask[-1] and np.all(np.isnan(reloaded.z[-1]))


def test_load_targets_rejects_damaged_or_foreign_files(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(tg.TargetsFileError, match="Cannot read"):
        tg.load_targets(broken)
    other = tmp_path / "other.npz"
    np.savez(other, z=np.zeros((2, 2)))
    with pytest.raises(tg.TargetsFileError, match="not a targets file"):
        tg.load_targets(other)
    future = tmp_path / "future.npz"
    np.savez(future, version=np.array(99), source=np.array("tag"), params=np.array(json.dumps({})),
             z=np.zeros((2, 2)), mask=np.ones(2, bool))
    with pytest.raises(tg.TargetsFileError, match="version 99"):
        tg.load_targets(future)


def test_save_targets_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tg.save_targets(tg.compute_targets("tag", np.eye(3), seed=0), tmp_path / "tag.npz")
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tg.np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        tg.save_targets(tg.compute_targets("tag", np.eye(3), seed=1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tag.npz"]


def test_cached_targets_reuses_matching_files_and_recomputes_others(tmp_path):
    calls = []

    def load():
        calls.append(1)
        return np.eye(5)

    first = tg.cached_targets("tag", tmp_path, load, seed=0)
    again = tg.cached_targets("tag", tmp_path, load, seed=0)
    np.testing.assert_array_equal(first.z, again.z)
    assert len(calls) == 1
    other_seed = tg.cached_targets("tag", tmp_path, load, seed=1)
    assert len(calls) == 2 and other_seed.params["seed"] == 1
    tg.cached_targets("tag", tmp_path, load, seed=1, track_ids=list("abcde"))
    assert len(calls) == 3
    tg.cached_targets("tag", tmp_path, load, seed=1, track_ids=list("abcde"))
    assert len(calls) == 3
