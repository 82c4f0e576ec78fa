"""The embedded default model: loads with no network and gives the documented features."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

import mtlmusic
from mtlmusic.hub import model_status
from mtlmusic.registry import embedded_models
from samples import DATA, REAL_MUSIC


def test_default_is_embedded_and_documented():
    assert "default" in embedded_models() and model_status("default") == "embedded"
    model = mtlmusic.load_model("default", device="cpu")
    assert model.architecture == "MS-SR@FC" and model.sources[0] == "self"
    assert model.dim == 512 and len(model.feature_names) == 512
    card = model.config["info"]["card"]
    assert "Evaluation on the held-out part" in card and "rand" in card and "mfcc" in card


def test_default_extracts_offline_in_a_fresh_process(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MTLMUSIC_HOME": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9"}
    code = ("import json, mtlmusic; v = mtlmusic.extract(%r, device='cpu'); "
            "print(json.dumps([len(v), float(abs(v).sum())]))" % str(REAL_MUSIC))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    length, total = json.loads(out.stdout.strip().splitlines()[-1])
    assert length == 512 and total > 0
    here = mtlmusic.load_model("default", device="cpu").extract(REAL_MUSIC)
    assert np.isclose(np.abs(here).sum(), total, rtol=1e-4)


def test_default_features_are_pinned():
    """Any change of the default's weights, the front end or the aggregation must be deliberate (tests/data/README.md)."""
    expected = np.load(DATA / "default-features.npy")
    found = mtlmusic.load_model("default", device="cpu").extract(REAL_MUSIC)
    np.testing.assert_allclose(found, expected, rtol=1e-3, atol=1e-5)
