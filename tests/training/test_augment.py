"""Augmentation of training crops: each change against a NumPy reference, the sources it spares, and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlmusic.errors import ConfigError
from mtlmusic_training.augment import EQ_TERMS, N_PARAMS, PITCH_SOURCES, TEMPO_SOURCES, Augmentation
from mtlmusic_training.trainer import Trainer, TrainConfig, load_training_data

RNG = np.random.default_rng(0)
CROPS = torch.from_numpy(RNG.normal(-40, 10, size=(3, 2, 216, 128)).astype(np.float32))


def _params(gain=0.0, shift=0.0, factor=1.0, eq=(0.0,) * EQ_TERMS) -> torch.Tensor:
    return torch.tensor([[gain, shift, factor, *eq]] * len(CROPS), dtype=torch.float32)


def _interp(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each row of ``rows`` (last axis) read at ``positions``, linearly, edges repeated: np.interp."""
    flat = rows.reshape(-1, rows.shape[-1])
    grid = np.arange(rows.shape[-1])
    return np.stack([np.interp(positions, grid, row) for row in flat]).reshape(*rows.shape[:-1], len(positions))


def test_gain_adds_its_level_everywhere():
    out = Augmentation(gain_db=6).apply(CROPS, _params(gain=-4.5))
    torch.testing.assert_close(out, CROPS - 4.5)


def test_equalisation_is_a_smooth_curve_over_the_bands_bounded_by_eq_db():
    weights = (1.0, -1.0, 1.0, -1.0)   # the extremes of the weights eq_db = 4 draws: each up to eq_db / 4
    out = Augmentation(eq_db=4).apply(CROPS, _params(eq=weights))
    change = (out - CROPS).numpy()
    assert np.allclose(change, change[:1, :1, :1, :], atol=1e-4)   # the same curve for every crop, channel, frame
    band = np.arange(128)
    curve = sum(w * np.cos(np.pi * k * (band + 0.5) / 128) for k, w in enumerate(weights, 1))
    assert np.allclose(change[0, 0, 0], curve, atol=1e-4)
    draws = Augmentation(eq_db=4).draw(np.random.default_rng(1), (1000,), "tag")[:, 3:]
    assert np.abs(draws).max() <= 1.0 and np.abs(draws).max() > 0.95


@pytest.mark.parametrize("shift", [2.0, -1.25])
def test_pitch_shift_moves_the_bands(shift):
    out = Augmentation(pitch_bands=3).apply(CROPS, _params(shift=shift)).numpy()
    expected = _interp(CROPS.numpy(), np.arange(128) - shift)
    assert np.allclose(out, expected, atol=2e-3)   # float32 positions
    if shift == 2.0:   # whole bands: a plain shift, the lowest band repeated below
        assert np.allclose(out[..., 2:], CROPS.numpy()[..., :-2], atol=1e-3)
        assert np.allclose(out[..., 0], CROPS.numpy()[..., 0], atol=1e-3)


@pytest.mark.parametrize("factor", [0.9, 1.07])
def test_time_stretch_resamples_the_frames_about_the_centre(factor):
    out = Augmentation(stretch=0.1).apply(CROPS, _params(factor=factor)).numpy()
    centre = 215 / 2
    positions = centre + (np.arange(216) - centre) * factor
    expected = _interp(np.swapaxes(CROPS.numpy(), 2, 3), positions)
    assert np.allclose(out, np.swapaxes(expected, 2, 3), atol=2e-3)   # float32 positions


def test_no_change_leaves_the_crops_as_they_are():
    out = Augmentation(gain_db=6, eq_db=6, pitch_bands=2, stretch=0.1).apply(CROPS, _params())
    torch.testing.assert_close(out, CROPS, rtol=0, atol=1e-3)   # dB, up to the rounding of the sampling grid


def test_draws_spare_the_sources_whose_targets_they_would_change():
    augmentation = Augmentation(gain_db=6, pitch_bands=2, stretch=0.1)
    rng = np.random.default_rng(2)
    for source in TEMPO_SOURCES:
        params = augmentation.draw(rng, (4, 8), source)
        assert params.shape == (4, 8, N_PARAMS) and (params[..., 2] == 1).all() and (params[..., 1] != 0).all()
    for source in PITCH_SOURCES:
        params = augmentation.draw(rng, (4, 8), source)
        assert (params[..., 1] == 0).all() and (params[..., 2] != 1).all()
    params = augmentation.draw(rng, (10_000,), "tag")
    assert np.abs(params[:, 0]).max() <= 6 and np.abs(params[:, 1]).max() <= 2
    assert np.abs(params[:, 2] - 1).max() <= 0.1 and abs(params[:, 2].mean() - 1) < 0.01


def test_settings_are_parsed_and_checked():
    assert Augmentation.parse("gain_db=6, stretch=0.05") == Augmentation(gain_db=6, stretch=0.05)
    assert Augmentation.parse("").as_dict() == {} and not Augmentation.parse("")
    for bad, message in (("gain=6", "Unknown augmentation"), ("gain_db", "Unknown augmentation"),
                         ("gain_db=loud", "needs a number"), ("eq_db=-1", ">= 0"), ("stretch=1", "below 1"),
                         ("pitch_bands=nan", "finite")):
        with pytest.raises(ConfigError, match=message):
            Augmentation.parse(bad)
    with pytest.raises(ConfigError, match="Unknown augmentation volume"):
        TrainConfig("SS-R", ["bpm"], augment={"volume": 3})
    assert TrainConfig("SS-R", ["bpm"], augment={"gain_db": 6, "eq_db": 0}).augment == {"gain_db": 6}


def _augmented(epochs: int) -> TrainConfig:
    return TrainConfig("MS-CR@2", ["self", "bpm"], epochs=epochs, batch_size=8, iterations_per_epoch=4, lr=1e-3,
                       device="cpu", valid_tracks=8, augment={"gain_db": 6, "eq_db": 6, "pitch_bands": 1,
                                                              "stretch": 0.1})


def test_an_augmented_run_resumes_exactly_and_learns_otherwise_than_a_plain_one(data_dir, tmp_path):
    torch.set_num_threads(1)
    data = load_training_data(data_dir, ["self", "bpm"])
    whole = Trainer(_augmented(2), data, tmp_path / "whole", log=lambda _: None)
    whole.train()
    Trainer(_augmented(1), data, tmp_path / "halves", log=lambda _: None).train()
    resumed = Trainer(_augmented(2), data, tmp_path / "halves", log=lambda _: None)
    resumed.train()
    for key, value in whole.network.state_dict().items():
        assert torch.equal(value, resumed.network.state_dict()[key]), key

    plain = TrainConfig(**{**_augmented(2).__dict__, "augment": {}})
    other = Trainer(plain, data, tmp_path / "plain", log=lambda _: None)
    other.train()
    assert whole.history[-1]["train_loss"] != other.history[-1]["train_loss"]
    with pytest.raises(ValueError, match="another configuration"):
        Trainer(plain, data, tmp_path / "whole", log=lambda _: None)
