"""`edtalk emotion-vectors`: per-emotion means of the expression weights in coefficient sidecars."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from datamodules.shards import read_index
from edtalk.cli import main as cli
from edtalk.emotions import EMOTIONS


@pytest.fixture()
def shards(tmp_path: Path) -> Path:
    """The built-in shards with sidecars whose exp columns are 10 * emotion id + clip noise + frame noise."""
    from datamodules.synthetic import ensure_builtin

    dst = tmp_path / "shards"
    shutil.copytree(ensure_builtin(), dst)
    rng = np.random.default_rng(0)
    for shard in read_index(dst)["shards"]:
        arrays = {}
        for key in shard["clips"]:
            exp = (
                10.0 * EMOTIONS.index(key.split("#")[1])
                + rng.normal(0, 0.1, (1, 10))
                + rng.normal(0, 0.5, (20, 10))
            )
            arrays[key] = np.concatenate([rng.normal(size=(20, 26)), exp], 1).astype(np.float32)
        np.savez(dst / f"{shard['name']}.coeffs.npz", __dims__=np.array([20, 6, 10]), **arrays)
    return dst


def test_vectors_are_per_emotion_means(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "vectors"
    assert cli(["emotion-vectors", "--shards", str(shards), "--out", str(out)]) == 0
    summary = json.loads((out / "emotion_vectors.json").read_text())["emotions"]
    train = [c for s in read_index(shards)["shards"] if s["split"] == "train" for c in s["clips"]]
    for name in ("angry", "happy", "neutral", "sad"):
        vector = np.load(out / f"{name}.npy")
        assert vector.shape == (1, 10) and vector.dtype == np.float32
        np.testing.assert_allclose(vector, 10.0 * EMOTIONS.index(name), atol=0.3)
        assert summary[name]["clips"] == sum(c.split("#")[1] == name for c in train)
    assert not (out / "contempt.npy").exists()  # no such clips: no vector

    from edtalk.commands.generate import _emotion

    weights = _emotion(str(out / "happy.npy"))  # what `generate --emotion FILE.npy` feeds every frame
    assert not isinstance(weights, str) and weights is not None and tuple(weights.shape) == (1, 10)


def test_levels_filter_and_errors(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "level1"
    assert cli(["emotion-vectors", "--shards", str(shards), "--levels", "1", "--out", str(out)]) == 0
    assert sorted(p.stem for p in out.glob("*.npy")) == ["neutral"]  # the built-in data: neutral is level 1
    for sidecar in shards.glob("train-*.coeffs.npz"):
        data = dict(np.load(sidecar))
        data["__dims__"] = np.array([20, 6, 0])
        np.savez(sidecar, **data)
    assert cli(["emotion-vectors", "--shards", str(shards), "--out", str(out)]) == 2
    assert "no expression weights: extract with a full (expression) generator" in capsys.readouterr().err
