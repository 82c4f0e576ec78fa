"""Checkpoints as the study's 2018 training code wrote them, and the compatibility mode of their import.

The fake checkpoint below holds random weights in the authors' layout: gzip-compressed,
PyTorch's pre-1.6 serialization, no ``n_outs``, their task names ``cdr`` and ``self``, tasks
out of canonical order, heads of different sizes. Expected features are computed here
from its state dict with plain tensor operations, sharing no code with mtlmusic's networks.
"""

from __future__ import annotations

import gzip
import io
import json
from concurrent.futures import Future

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import mtlmusic
from mtlmusic import ConfigError, ModelFileError
from mtlmusic.architectures import build_network
from mtlmusic.checkpoint import head_sizes, import_checkpoint, load_checkpoint
from mtlmusic.cli import app
from mtlmusic.extraction import engine
from mtlmusic.extraction.engine import extract_files
from mtlmusic.frontend import Scaler, track_db
from mtlmusic.modelfile import load_model_file, read_config

SR = 22050
#: Checkpoint order; canonical order is self, bpm, tag, cdr_tag.
TASKS = ["tag", "cdr", "self", "bpm"]
HEADS = {"tag": 50, "cdr": 30, "bpm": 20}
CUT = {"4": 3, "fc": 12}  # items of the flat network in ``shared``
#: (in channels, out channels, kernel) of the seven conv blocks; the first has stride (2, 1), the first five pool.
CONVS = [(2, 16, 5), (16, 32, 3), (32, 64, 3), (64, 64, 3), (64, 128, 3), (128, 256, 3), (256, 256, 1)]
#: One second of stereo noise: 87 frames, padded to one slice of 216.
SHORT = (0.1 * np.random.default_rng(5).standard_normal((2, SR))).astype(np.float32)


def batchnorm(prefix: str, n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": 0.8 + 0.4 * torch.rand(n, generator=g),
            f"{prefix}.bias": 0.2 * torch.rand(n, generator=g) - 0.1,
            f"{prefix}.running_mean": 0.4 * torch.rand(n, generator=g) - 0.2,
            f"{prefix}.running_var": 0.5 + torch.rand(n, generator=g),
            f"{prefix}.num_batches_tracked": torch.tensor(100)}


def authors_state(tasks: list[str], branch_at: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights named as in the authors' checkpoints."""
    g = torch.Generator().manual_seed(seed)
    cut = CUT[branch_at]

    def items(prefix: str, first: int, last: int) -> dict[str, torch.Tensor]:
        state = {}
        for item in range(first, last):
            name = f"{prefix}.{item - first}"
            if item < 7:
                n_in, n_out, k = CONVS[item]
                state[f"{name}.conv.weight"] = torch.randn(n_out, n_in, k, k, generator=g) / (n_in * k * k) ** 0.5
                state[f"{name}.conv.bias"] = 0.1 * torch.randn(n_out, generator=g)
                state.update(batchnorm(f"{name}.bn", n_out, g))
            elif item == 8:
                state[f"{name}.weight"] = torch.randn(256, 256, generator=g) / 16
                state[f"{name}.bias"] = 0.1 * torch.randn(256, generator=g)
            elif item == 9:
                state.update(batchnorm(name, 256, g))
        return state

    state = items("shared", 0, cut)
    for t, task in enumerate(tasks):
        state.update(items(f"branches_feature.{t}", cut, 12))
        if task == "self":
            state.update({f"branches_infer.{t}.0.weight": torch.randn(128, 512, generator=g) / 23,
                          f"branches_infer.{t}.0.bias": torch.zeros(128),
                          **batchnorm(f"branches_infer.{t}.1", 128, g),
                          f"branches_infer.{t}.4.weight": torch.randn(2, 128, generator=g) / 11,
                          f"branches_infer.{t}.4.bias": torch.zeros(2)})
        else:
            state.update({f"branches_infer.{t}.0.weight": torch.randn(HEADS[task], 256, generator=g) / 16,
                          f"branches_infer.{t}.0.bias": torch.zeros(HEADS[task])})
    return state


def save_gzipped(path, checkpoint) -> None:
    """``torch.save`` as PyTorch 0.4 wrote it (one pickle stream), gzip-compressed."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer, _use_new_zipfile_serialization=False)
    path.write_bytes(gzip.compress(buffer.getvalue()))


def study_checkpoint(path, tasks=TASKS, branch_at="4", **changes):
    state = authors_state(tasks, branch_at)
    checkpoint = {"iters": 30000, "tasks": list(tasks), "branch_at": branch_at,
                  "scaler_fn": "/data/sclr_dbmel.dat.gz", "state_dict": state,
                  "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}, **changes}
    save_gzipped(path, checkpoint)
    return path, state


def authors_features(state: dict[str, torch.Tensor], n_tasks: int, cut: int, x: torch.Tensor) -> torch.Tensor:
    """Every task's fc-feature of standardized slices ``x``, concatenated in checkpoint order."""
    def bn(h, prefix):
        return F.batch_norm(h, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                            state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5)

    blocks = []
    for t in range(n_tasks):
        h = x
        for item in range(12):
            name = f"shared.{item}" if item < cut else f"branches_feature.{t}.{item - cut}"
            if item < 7:
                k = CONVS[item][2]
                h = F.conv2d(h, state[f"{name}.conv.weight"], state[f"{name}.conv.bias"],
                             stride=(2, 1) if item == 0 else 1, padding=k // 2)
                h = F.relu(bn(h, f"{name}.bn"))
                h = F.max_pool2d(h, 2) if item < 5 else h
            elif item == 7:
                h = h.mean(dim=(2, 3))
            elif item == 8:
                h = F.linear(h, state[f"{name}.weight"], state[f"{name}.bias"])
            elif item == 9:
                h = bn(h, name)
            elif item == 10:
                h = F.relu(h)
        blocks.append(h)
    return torch.cat(blocks, dim=1)


def padded_slice(audio: np.ndarray, pad_db: float | None, stats) -> torch.Tensor:
    """The one standardized slice of a short track: dB mel padded to 216 frames with ``pad_db`` (None: its floor)."""
    db, floor = track_db(audio, SR)
    padded = torch.cat([db, torch.full((2, 216 - db.shape[1], 128), floor if pad_db is None else pad_db)], dim=1)
    mean, sd = (torch.tensor(stats[key], dtype=torch.float32) for key in ("mean", "sd"))
    return ((padded - mean) / sd)[None]


@pytest.fixture(scope="module")
def scaler_npz(tmp_path_factory):
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("scaler") / "sclr_dbmel.npz"
    np.savez(path, mean=rng.uniform(-40, 5, 128), sd=rng.uniform(5, 15, 128))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return study_checkpoint(tmp_path_factory.mktemp("ckpt") / "ss0_it30k_tag_cdr_self_bpm.pth.gz")


def test_heads_are_sized_from_their_weights_and_cdr_is_cdr_tag(tmp_path, checkpoint, scaler_npz):
    path, state = checkpoint
    assert "n_outs" not in load_checkpoint(path)
    network, _, config = load_model_file(import_checkpoint(path, scaler_npz, tmp_path / "m.safetensors"))
    assert config["name"] == "mscr4-self-bpm-tag-cdr_tag"
    assert config["head_sizes"] == {"self": 2, "bpm": 20, "tag": 50, "cdr_tag": 30}
    assert {s: network.heads[s].out_features for s in ("bpm", "tag", "cdr_tag")} == {"bpm": 20, "tag": 50,
                                                                                   "cdr_tag": 30}
    torch.testing.assert_close(network.heads["cdr_tag"].weight, state["branches_infer.1.0.weight"])
    imported = config["info"]["imported_from"]
    assert (imported["tasks"], imported["iters"], imported["compat"]) == (TASKS, 30000, None)


def test_compat_authors_computes_their_features(tmp_path, checkpoint, scaler_npz):
    path, state = checkpoint
    out = import_checkpoint(path, scaler_npz, tmp_path / "authors.safetensors", compat="authors")
    config = read_config(out)
    assert config["representation_blocks"] == ["tag", "cdr_tag", "self", "bpm"]
    assert config["pad_db"] == 0.0 and config["info"]["imported_from"]["compat"] == "authors"
    assert config["feature_names"][:2] == ["mean.tag.000", "mean.tag.001"]

    stats = np.load(scaler_npz)
    with torch.no_grad():
        theirs = authors_features(state, len(TASKS), CUT["4"], padded_slice(SHORT, 0.0, stats))[0].numpy()
        floor_padded = authors_features(state, len(TASKS), CUT["4"], padded_slice(SHORT, None, stats))[0].numpy()
    assert np.abs(theirs - floor_padded).max() > 0.05  # the padding matters for this short track

    model = mtlmusic.load_model(out, device="cpu")
    close = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.extract(SHORT, sr=SR), np.r_[theirs, np.zeros_like(theirs)], **close)
    np.testing.assert_allclose(model.extract_slices(SHORT, sr=SR).features[0], theirs, **close)
    np.testing.assert_allclose(model.extract(SHORT, sr=SR)[model.feature_slice("cdr_tag")],
                               theirs[256:512], **close)

    model.save(tmp_path / "again.safetensors")  # a model keeps its conventions when saved again
    again = read_config(tmp_path / "again.safetensors")
    assert (again["representation_blocks"], again["pad_db"]) == (config["representation_blocks"], 0.0)


def test_compat_holds_in_worker_processes(tmp_path, checkpoint, scaler_npz, monkeypatch):
    model = mtlmusic.load_model(import_checkpoint(checkpoint[0], scaler_npz, tmp_path / "a.safetensors",
                                                  compat="authors"), device="cpu")
    sf.write(tmp_path / "short.wav", SHORT.T, SR, subtype="FLOAT")

    def prepare_here(*args):
        raise AssertionError("the file was prepared in the main process, not by a worker")

    # The main process takes a file back from a worker that has not started it yet: forbid that.
    prepare_here.__module__, prepare_here.__qualname__ = engine.__name__, "_prepare"  # workers run the real one
    monkeypatch.setattr(engine, "_prepare", prepare_here)
    monkeypatch.setattr(Future, "cancel", lambda self: False)
    (result,) = extract_files(model, [tmp_path / "short.wav"], workers=1)
    assert result.ok, result.error
    np.testing.assert_allclose(result.features, model.extract(SHORT, sr=SR), rtol=1e-4, atol=1e-5)


def test_default_mode_is_unchanged(tmp_path, checkpoint, scaler_npz):
    path, state = checkpoint
    out = import_checkpoint(path, scaler_npz, tmp_path / "default.safetensors")
    config = read_config(out)
    assert config["representation_blocks"] == ["self", "bpm", "tag", "cdr_tag"] and "pad_db" not in config

    with torch.no_grad():
        blocks = authors_features(state, len(TASKS), CUT["4"], padded_slice(SHORT, None, np.load(scaler_npz)))[0]
    canonical = torch.cat([blocks[256 * TASKS.index(task):256 * (TASKS.index(task) + 1)]
                           for task in ("self", "bpm", "tag", "cdr")]).numpy()
    features = mtlmusic.load_model(out, device="cpu").extract(SHORT, sr=SR)
    np.testing.assert_allclose(features, np.r_[canonical, np.zeros_like(canonical)], rtol=1e-4, atol=1e-5)


def test_compat_keeps_the_one_block_of_fc_checkpoints(tmp_path, scaler_npz):
    path, _ = study_checkpoint(tmp_path / "fc.pth.gz", ["bpm", "self"], "fc")
    config = read_config(import_checkpoint(path, scaler_npz, tmp_path / "fc.safetensors", compat="authors"))
    assert (config["architecture"], config["representation_blocks"], config["pad_db"]) == ("MS-SR@FC",
                                                                                           ["shared"], 0.0)


def test_n_outs_when_present_must_match_the_heads(tmp_path, scaler_npz):
    agrees, _ = study_checkpoint(tmp_path / "agrees.pth.gz", ["tag", "self"], n_outs=50)
    assert read_config(import_checkpoint(agrees, scaler_npz, tmp_path / "ok.safetensors"))["head_sizes"] == {
        "self": 2, "tag": 50}
    differs, _ = study_checkpoint(tmp_path / "differs.pth.gz", ["tag", "cdr"], n_outs=50)
    with pytest.raises(ModelFileError, match="n_outs is 50 but the heads of cdr_tag have 30 outputs"):
        import_checkpoint(differs, scaler_npz, tmp_path / "no.safetensors")
    with pytest.raises(ModelFileError, match=r"branches_infer.1.0.weight \(the head of task 'cdr'\) is missing"):
        head_sizes({"branches_infer.0.0.weight": torch.zeros(50, 256)}, ["tag", "cdr"])
    with pytest.raises(ModelFileError, match="is a Linear"):
        head_sizes({"branches_infer.0.0.weight": torch.zeros(50)}, ["tag"])


def test_unreadable_files_say_what_is_wrong(tmp_path, checkpoint, scaler_npz):
    path, state = checkpoint
    blob = gzip.decompress(path.read_bytes())
    zipped = io.BytesIO()
    torch.save({"tasks": ["tag"]}, zipped)
    unreadable = "gzip-compressed PyTorch checkpoint that cannot be read"
    cases = {
        "cut.pth.gz": (path.read_bytes()[:200], "truncated or corrupt gzip file"),
        "text.pth.gz": (b"version https://git-lfs.github.com/spec/v1\n", "not gzip-compressed, despite its .gz name"),
        "text.pth": (b"<html>not found</html>", r"not a PyTorch checkpoint \(a torch.save file"),
        "npz.pth.gz": (gzip.compress(b"\x93NUMPY" + bytes(50)), "gzip-compressed, but what it holds is not a PyTorch"),
        "short.pth.gz": (gzip.compress(blob[:1000]), unreadable),
        "zip.pth.gz": (gzip.compress(zipped.getvalue()[:300]), unreadable),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelFileError, match=message):
            import_checkpoint(tmp_path / name, scaler_npz, tmp_path / "out.safetensors")

    save_gzipped(tmp_path / "keys.pth.gz", {"tasks": TASKS, "state_dict": state})
    with pytest.raises(ModelFileError, match=r"no branch_at \(it has tasks, state_dict\)"):
        import_checkpoint(tmp_path / "keys.pth.gz", scaler_npz, tmp_path / "out.safetensors")

    study_checkpoint(tmp_path / "numpy.pth.gz", iters=np.int64(30000))
    with pytest.raises(ModelFileError, match=r"objects other than tensors .* allow_pickle=True \(--trust-pickle\)"):
        import_checkpoint(tmp_path / "numpy.pth.gz", scaler_npz, tmp_path / "out.safetensors")
    trusted = import_checkpoint(tmp_path / "numpy.pth.gz", scaler_npz, tmp_path / "out.safetensors",
                                allow_pickle=True, compat="authors")
    assert read_config(trusted)["info"]["imported_from"]["iters"] == 30000

    (tmp_path / "plain.pth.gz").write_bytes(blob)  # named .gz but stored uncompressed: read all the same
    assert load_checkpoint(tmp_path / "plain.pth.gz")["tasks"] == TASKS
    with pytest.raises(ConfigError, match="Unknown compat mode 'theirs'"):
        import_checkpoint(path, scaler_npz, tmp_path / "x.safetensors", compat="theirs")
    assert not (tmp_path / "x.safetensors").exists()


def test_the_command_line_option(tmp_path, checkpoint, scaler_npz):
    out = tmp_path / "cli.safetensors"
    args = ["import-checkpoint", str(checkpoint[0]), "--scaler", str(scaler_npz), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--compat", "authors"])
    assert result.exit_code == 0, result.output
    assert read_config(out)["pad_db"] == 0.0
    result = CliRunner().invoke(app, [*args, "--compat", "theirs", "--overwrite"])
    assert result.exit_code == 2 and "Unknown compat mode 'theirs'" in result.output
    info = CliRunner().invoke(app, ["info", str(out)])
    assert json.loads(info.stdout)["representation_blocks"] == ["tag", "cdr_tag", "self", "bpm"]


def test_block_order_and_padding_are_checked():
    with pytest.raises(ConfigError, match="not an order of the representation blocks"):
        build_network("MS-CR@2", ["self", "bpm"], block_order=["bpm", "tag"])
    with pytest.raises(ConfigError, match="not an order"):
        build_network("MS-SR@FC", ["self", "bpm"], block_order=["self", "bpm"])
    with pytest.raises(ValueError, match="pad_db"):
        Scaler(torch.zeros(128), torch.ones(128), pad_db=float("nan"))
    assert Scaler(torch.zeros(128), torch.ones(128), pad_db=0.0).to("cpu").pad_db == 0.0
