"""The paper's audio2exp input path: HuBERT features from a local checkpoint, written beside the shards.

A tiny random-init `transformers` HuBERT is saved in the real checkpoint layout (`save_pretrained`) and
run over the built-in shards; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip(
    "transformers", reason="the hubert extra is not installed (pip install -c constraints.txt -e '.[hubert]')"
)

from datamodules.preprocess.hubert import HUBERT, FeatureSidecar, extract_hubert, feature_path  # noqa: E402
from datamodules.shards import iter_clips, read_index  # noqa: E402
from edtalk.cli import main as cli  # noqa: E402
from edtalk.nn.hubert import HubertFeatures, load_hubert, to_video_rate  # noqa: E402

DIM = 32


def save_tiny_hubert(path: Path) -> Path:
    """A random-init HuBERT (2 layers, 32 wide, 20-sample hop) in the layout `save_pretrained` writes."""
    torch.manual_seed(0)
    cfg = transformers.HubertConfig(
        hidden_size=DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    transformers.HubertModel(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_hubert(tmp_path_factory.mktemp("hubert"))


def linked_shards(dst: Path) -> Path:
    """The built-in shards seen from `dst` (symlinks), so sidecars are written into `dst`."""
    from datamodules.synthetic import ensure_builtin

    src = ensure_builtin()
    dst.mkdir()
    for item in src.iterdir():
        if item.name == "index.json" or item.suffix == ".tar":
            (dst / item.name).symlink_to(item)
    return dst


@pytest.fixture(scope="module")
def hubert_shards(tmp_path_factory: pytest.TempPathFactory, hubert_dir: Path) -> Path:
    """The built-in shards with HuBERT sidecars written by the tiny checkpoint."""
    root = linked_shards(tmp_path_factory.mktemp("data") / "shards")
    extract_hubert(hubert_dir, root)
    return root


def test_to_video_rate_maps_frame_centres() -> None:
    # a ramp over HuBERT frame centres (50 Hz: frame n at (n + 0.5) / 50 s) read at video frame centres
    n_frames = 10
    hub = torch.arange(2 * n_frames, dtype=torch.float32)[:, None]  # value = index, N = 2T
    out = to_video_rate(hub, n_frames)
    assert out.shape == (n_frames, 1)
    t = torch.arange(n_frames, dtype=torch.float32)
    expected = (2 * t + 0.5).clamp(max=2 * n_frames - 1)  # centre of video frame t in HuBERT frames
    torch.testing.assert_close(out[:, 0], expected)


def test_missing_checkpoint_names_the_path_and_where_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no HuBERT checkpoint at .*nowhere.*hubert-large-ls960-ft"):
        load_hubert(tmp_path / "nowhere")


def test_sidecars_hold_one_feature_row_per_video_frame(hubert_shards: Path, hubert_dir: Path) -> None:
    index = read_index(hubert_shards)
    extractor = HubertFeatures(load_hubert(hubert_dir))
    for shard in index["shards"]:
        sidecar = FeatureSidecar(feature_path(hubert_shards / shard["name"], HUBERT))
        assert sorted(sidecar.clip_ids) == sorted(shard["clips"])
        assert sidecar.meta["dim"] == DIM and sidecar.meta["fps"] == 25
    clip = next(iter_clips(hubert_shards, "test"))
    feats = FeatureSidecar(feature_path(clip.url, HUBERT))[clip.key]
    assert feats.shape == (clip.num_frames, DIM) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and feats.std(0).mean() > 0  # features vary over time
    # the stored rows are the model's output on the clip's audio, resampled to the video frames
    again = extractor(torch.from_numpy(clip.wav()), clip.num_frames).numpy()
    np.testing.assert_allclose(feats, again, rtol=1e-5, atol=1e-5)
    # and they depend on the audio: the features of silence differ
    silent = extractor(torch.zeros_like(torch.from_numpy(clip.wav())), clip.num_frames).numpy()
    assert np.abs(feats - silent).max() > 1e-3


def test_second_run_skips_existing_sidecars(tmp_path: Path, hubert_dir: Path) -> None:
    root = linked_shards(tmp_path / "shards")
    first = extract_hubert(hubert_dir, root, splits=["test"])
    assert len(first) == 2 and not list(root.glob(".*tmp*"))  # atomic: no temporary left behind
    stamps = {p: p.stat().st_mtime_ns for p in first}
    lines: list[str] = []
    assert extract_hubert(hubert_dir, root, splits=["test"], progress=lines.append) == []
    assert all(line.startswith("skip ") for line in lines) and len(lines) == 2
    assert {p: p.stat().st_mtime_ns for p in first} == stamps
    # the CLI: resumes the same way (train shards new, test ones skipped), exit 0
    assert cli(["extract-hubert", str(hubert_dir), "--shards", str(root)]) == 0
    assert len(list(root.glob("*.tar" + HUBERT))) == 8
    assert {p: p.stat().st_mtime_ns for p in first} == stamps


def test_cli_missing_checkpoint_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = linked_shards(tmp_path / "shards")
    assert cli(["extract-hubert", str(tmp_path / "absent"), "--shards", str(root)]) == 2
    assert "no HuBERT checkpoint" in capsys.readouterr().err
