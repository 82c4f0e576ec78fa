"""Import of the study authors' PyTorch checkpoints, checked against a reference written in their layout.

The reference network below is written for this test from the checkpoint layout
(the study's Table 3 network as one flat sequence cut at the branch point into
``shared``, ``branches_feature`` and ``branches_infer`` ModuleLists); it shares
no code with mtlmusic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mtlmusic
from mtlmusic import ModelFileError
from mtlmusic.checkpoint import import_checkpoint, read_scaler
from mtlmusic.frontend import Scaler, track_slices
from mtlmusic.modelfile import load_model_file

#: How many items of the flat network each branch point keeps in ``shared``.
REFERENCE_SHARED = {"null": 0, "2": 1, "4": 3, "6": 5, "fc": 12}
AUDIO = (0.1 * np.random.default_rng(3).standard_normal((2, 22050 * 3))).astype(np.float32)


class RefConvBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int, kernel: int, stride=1, pool: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(n_in, n_out, kernel, stride=stride, padding=kernel // 2)
        self.bn = nn.BatchNorm2d(n_out)
        self.pool = pool

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        return F.max_pool2d(x, 2) if self.pool else x


class RefMeanPool(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], x.shape[1], -1).mean(dim=2)


def reference_items() -> list[nn.Module]:
    return [RefConvBlock(2, 16, 5, stride=(2, 1)), RefConvBlock(16, 32, 3), RefConvBlock(32, 64, 3),
            RefConvBlock(64, 64, 3), RefConvBlock(64, 128, 3), RefConvBlock(128, 256, 3, pool=False),
            RefConvBlock(256, 256, 1, pool=False), RefMeanPool(), nn.Linear(256, 256), nn.BatchNorm1d(256),
            nn.ReLU(), nn.Dropout()]


class Reference(nn.Module):
    """The checkpoint's layout: ``shared``, ``branches_feature[t]``, ``branches_infer[t]``."""

    def __init__(self, tasks: list[str], branch_at: str, n_outs: int = 50):
        super().__init__()
        cut = REFERENCE_SHARED[branch_at]
        self.tasks = tasks
        self.shared = nn.Sequential(*reference_items()[:cut])
        self.branches_feature = nn.ModuleList(nn.Sequential(*reference_items()[cut:]) for _ in tasks)
        self.branches_infer = nn.ModuleList(
            nn.Sequential(nn.Linear(512, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(), nn.Linear(128, 2))
            if task == "self_" else nn.Sequential(nn.Linear(256, n_outs)) for task in tasks)
        for module in self.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                nn.init.uniform_(module.weight, 0.8, 1.2)
                nn.init.uniform_(module.bias, -0.1, 0.1)

    def feature(self, x, task: str):
        return self.branches_feature[self.tasks.index(task)](self.shared(x))

    def infer(self, features, task: str):
        return self.branches_infer[self.tasks.index(task)](features)


def save_checkpoint(path, reference: Reference, branch_at: str, n_outs: int = 50, **changes):
    checkpoint = {"iters": 1234, "tasks": list(reference.tasks), "n_outs": n_outs, "branch_at": branch_at,
                  "scaler_fn": "/data/sclr_dbmel.npz", "state_dict": reference.state_dict(),
                  "optimizer": torch.optim.Adam(reference.parameters()).state_dict()}
    checkpoint.update(changes)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def scaler_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("scaler") / "scaler.npz"
    np.savez(path, mean=rng.uniform(-30, 5, 128), sd=rng.uniform(5, 15, 128))
    return path


@pytest.fixture(scope="module")
def reference_slices(scaler_npz) -> torch.Tensor:
    """Our front end's dB slices of AUDIO, standardized the reference way: (X - mean) / sd over the mel axis."""
    raw = torch.cat([c.slices for c in track_slices(AUDIO, 22050, Scaler.identity(), "cpu")])
    stats = np.load(scaler_npz)
    return (raw - torch.tensor(stats["mean"], dtype=torch.float32)) / torch.tensor(stats["sd"], dtype=torch.float32)


@pytest.mark.parametrize("branch_at, architecture", [("null", "MSS-CR"), ("2", "MS-CR@2"), ("4", "MS-CR@4"),
                                                     ("6", "MS-CR@6"), ("fc", "MS-SR@FC")])
def test_import_matches_the_reference_layout(tmp_path, scaler_npz, reference_slices, branch_at, architecture):
    torch.manual_seed(int(REFERENCE_SHARED[branch_at]))
    tasks = ["tag", "self_", "bpm"]   # not in canonical order: our blocks are self, bpm, tag
    reference = Reference(tasks, branch_at).eval()
    checkpoint = save_checkpoint(tmp_path / "model.pth", reference, branch_at)
    out = import_checkpoint(checkpoint, scaler_npz, tmp_path / "imported.safetensors")

    network, scaler, config = load_model_file(out)
    assert (config["architecture"], config["sources"]) == (architecture, ["self", "bpm", "tag"])
    assert config["name"] == f"{architecture.lower().replace('-', '').replace('@', '')}-self-bpm-tag"
    assert config["info"]["imported_from"]["branch_at"] == branch_at
    assert config["info"]["imported_from"]["iters"] == 1234

    model = mtlmusic.load_model(out, device="cpu")
    close = dict(rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        per_task = {task: reference.feature(reference_slices, task) for task in tasks}
        blocks = ["tag"] if branch_at == "fc" else ["self_", "bpm", "tag"]
        expected = torch.cat([per_task[t] for t in blocks], 1)
        assert expected.abs().sum() > 0
        slices = model.extract_slices(AUDIO, sr=22050).features
        np.testing.assert_allclose(slices, expected.numpy(), **close)
        if branch_at == "null":  # the no-sharing case the authors' own extraction could not load, end to end
            track = model.extract(AUDIO, sr=22050)  # the final, partial slice weighs what it holds
            weights = torch.cat([c.weights for c in track_slices(AUDIO, 22050)]).double()[:, None]
            mean = (weights * expected.double()).sum(0) / weights.sum()
            std = ((weights * (expected.double() - mean).square()).sum(0) / weights.sum()).sqrt()
            np.testing.assert_allclose(track, torch.cat([mean, std]).float(), **close)
        # the heads: our features through our heads equal the reference's heads on its features
        ours = {block: torch.from_numpy(slices[:, i * 256:(i + 1) * 256])
                for i, block in enumerate(network.representation_blocks)}
        bpm = ours["shared" if branch_at == "fc" else "bpm"]
        np.testing.assert_allclose(network.heads["bpm"](bpm), reference.infer(per_task["bpm"], "bpm"), **close)
        mine = ours["shared" if branch_at == "fc" else "self"]
        theirs = torch.cat([per_task["self_"][:1], per_task["self_"][1:2]], 1)
        np.testing.assert_allclose(network.heads["self"](mine[:1], mine[1:2]), reference.infer(theirs, "self_"),
                                   **close)


@pytest.mark.parametrize("branch_at", ["null", "fc", "4"])
def test_single_task_checkpoints_become_ssr(tmp_path, scaler_npz, reference_slices, branch_at):
    torch.manual_seed(7)
    reference = Reference(["year"], branch_at, n_outs=30).eval()
    out = import_checkpoint(save_checkpoint(tmp_path / "m.pth", reference, branch_at, n_outs=30), scaler_npz,
                            tmp_path / "ssr.safetensors")
    network, scaler, config = load_model_file(out)
    assert (config["name"], config["head_sizes"]) == ("ssr-year", {"year": 30})
    with torch.no_grad():
        np.testing.assert_allclose(network.features(reference_slices), reference.feature(reference_slices, "year"),
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scaler.mean.numpy(), np.load(scaler_npz)["mean"], rtol=1e-6)


def test_refuses_to_overwrite_and_old_files_without_batch_counters(tmp_path, scaler_npz):
    reference = Reference(["bpm", "tag"], "6")
    state = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    checkpoint = save_checkpoint(tmp_path / "old.pth", reference, "6", state_dict=state)
    out = import_checkpoint(checkpoint, scaler_npz, tmp_path / "out.safetensors")
    assert mtlmusic.load_model(out, device="cpu").sources == ("bpm", "tag")
    with pytest.raises(ModelFileError, match="exists"):
        import_checkpoint(checkpoint, scaler_npz, out)
    assert import_checkpoint(checkpoint, scaler_npz, out, overwrite=True) == out


@pytest.mark.parametrize("changes, message", [
    ({"branch_at": "8"}, "unknown branch point '8'"),
    ({"tasks": []}, "non-empty list"),
    ({"tasks": ["bpm", "Bad Task"]}, "bad task list"),
    ({"tasks": ["bpm", "bpm"]}, "Duplicate"),
    ({"n_outs": 20}, "n_outs is 20 but the heads of bpm, tag have 50, 50 outputs"),
    ({"n_outs": "50"}, "'n_outs' must be a positive integer"),
    ({"state_dict": {"shared.0.conv.weight": [1.0]}}, "must map parameter names to tensors"),
    ({"branch_at": "4"}, "parameter shared.1.conv.weight is missing"),
    ({"branch_at": "null"}, "branches_feature.0.6.conv.weight is missing .* branch point and tasks"),
])
def test_malformed_checkpoints_are_clear_errors(tmp_path, scaler_npz, changes, message):
    changes = {"branch_at": "2", **changes}
    checkpoint = save_checkpoint(tmp_path / "bad.pth", Reference(["bpm", "tag"], "2"), **changes)
    with pytest.raises(ModelFileError, match=message):
        import_checkpoint(checkpoint, scaler_npz, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_unreadable_checkpoints_and_scalers(tmp_path, scaler_npz):
    reference = Reference(["bpm", "tag"], "2")
    extra = {**reference.state_dict(), "branches_feature.0.99.weight": torch.zeros(1)}
    cases = {
        "extra.pth": (lambda p: save_checkpoint(p, reference, "2", state_dict=extra), "do not belong"),
        "wrong_shape.pth": (lambda p: save_checkpoint(p, Reference(["bpm", "tag"], "2"), "4"), "missing|do not fit"),
        "missing_keys.pth": (lambda p: torch.save({"tasks": ["bpm"], "state_dict": {}}, p), "no branch_at"),
        "not_a_dict.pth": (lambda p: torch.save(torch.zeros(3), p), "holds a Tensor"),
        "truncated.pth": (lambda p: p.write_bytes(b"PK\x03\x04 garbage"), "PyTorch checkpoint that cannot be read"),
        "numpy.pth": (lambda p: save_checkpoint(p, reference, "2", iters=np.int64(5)), "allow_pickle=True"),
    }
    for name, (make, message) in cases.items():
        path = tmp_path / name
        make(path)
        with pytest.raises(ModelFileError, match=message):
            import_checkpoint(path, scaler_npz, tmp_path / "out.safetensors")
    trusted = import_checkpoint(tmp_path / "numpy.pth", scaler_npz, tmp_path / "out.safetensors", allow_pickle=True)
    assert load_model_file(trusted)[2]["info"]["imported_from"]["iters"] == 5
    with pytest.raises(ModelFileError, match="does not exist"):
        import_checkpoint(tmp_path / "none.pth", scaler_npz, tmp_path / "x.safetensors")

    np.savez(tmp_path / "no_sd.npz", mean=np.zeros(128), std=np.ones(128))
    np.savez(tmp_path / "short.npz", mean=np.zeros(64), sd=np.ones(64))
    np.savez(tmp_path / "nan.npz", mean=np.full(128, np.nan), sd=np.ones(128))
    np.savez(tmp_path / "negative.npz", mean=np.zeros(128), sd=-np.ones(128))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    for name, message in [("no_sd", "holds 'mean' and 'sd'"), ("short", "must be 128 finite numbers"),
                          ("nan", "must be 128 finite numbers"), ("negative", "negative"),
                          ("junk", "not a readable .npz")]:
        with pytest.raises(ModelFileError, match=message):
            read_scaler(tmp_path / f"{name}.npz")
