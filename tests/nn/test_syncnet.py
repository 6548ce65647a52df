"""Wav2Lip SyncNet expert: official layout, embeddings, the BCE-on-cosine loss and window stacking."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk import weights
from edtalk.losses.sync import sync_loss, sync_probability
from edtalk.mel import mel_windows, window_rows
from edtalk.nn.syncnet import SyncNet, gather_sync_windows, stack_mouth_frames, sync_window_index
from tests.conftest import manifest

TINY = (4, 8, 8, 16, 16)


def test_state_dict_layout_equals_the_manifest() -> None:
    model = SyncNet()
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == manifest("syncnet_expert")[
        "state_dict"
    ]
    assert sum(p.numel() for p in model.parameters()) == manifest("syncnet_expert")["num_params"]


def test_wav2lip_checkpoint_with_module_prefix_loads(tmp_path: Path) -> None:
    layout = manifest("syncnet_expert")["state_dict"]
    sd = {f"module.{k}": torch.randn(s) if s else torch.tensor(1) for k, s in layout.items()}
    sd = {k: v.abs() + 0.5 if "running_var" in k else v for k, v in sd.items()}
    path = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": sd, "global_step": 1}, path)
    model = weights.load_official(path, "syncnet_expert")
    assert isinstance(model, SyncNet)
    assert torch.equal(
        model.face_encoder[0].conv_block[0].weight, sd["module.face_encoder.0.conv_block.0.weight"]
    )


def test_embeddings_are_unit_length_and_non_negative() -> None:
    model = SyncNet(TINY).eval()
    faces = stack_mouth_frames(torch.rand(3, 5, 3, 96, 96) * 2 - 1)
    with torch.no_grad():
        a, v = model(torch.rand(3, 1, 80, 16) * 8 - 4, faces)
    assert a.shape == v.shape == (3, 16)
    assert torch.allclose(a.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(v.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (a >= 0).all() and (v >= 0).all()  # ReLU before normalisation: cosine in [0, 1]


def test_sync_loss_is_bce_of_the_cosine() -> None:
    a = torch.tensor([[1.0, 0.0], [0.6, 0.8], [1.0, 0.0]])
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(sync_probability(a, v), torch.tensor([1.0, 0.6, 0.0]))
    assert sync_loss(a[1:2], v[1:2]).item() == pytest.approx(-math.log(0.6), rel=1e-6)
    assert sync_loss(a[1:2], v[1:2], 0.0).item() == pytest.approx(-math.log(0.4), rel=1e-6)
    labels = torch.tensor([1.0, 1.0, 0.0])
    assert sync_loss(a, v, labels).item() == pytest.approx(-math.log(0.6) / 3, rel=1e-5)


def test_stack_mouth_frames_keeps_lower_halves_in_frame_order() -> None:
    crops = torch.arange(5.0).view(1, 5, 1, 1, 1).expand(1, 5, 3, 96, 96).clone()
    crops[:, :, :, :48] = -1.0  # upper half must be dropped
    faces = stack_mouth_frames(crops)
    assert faces.shape == (1, 15, 48, 96)
    assert faces[0, :, 0, 0].tolist() == [float(i) for i in range(5) for _ in range(3)]
    with pytest.raises(ValueError, match="B x 5 x 3 x 96 x 96"):
        stack_mouth_frames(torch.zeros(1, 4, 3, 96, 96))
    with pytest.raises(ValueError, match="stack_mouth_frames"):
        SyncNet(TINY).embed_face(torch.zeros(1, 3, 96, 96))


@pytest.mark.parametrize("first", [0, 3, 10])
def test_sync_window_covers_the_same_five_frames(first: int) -> None:
    """The audio window paired with frames r..r+4 holds the audio of exactly those frames (Wav2Lip)."""
    t = 20
    rows = window_rows(t, 1 + t * 640 // 200)
    idx = sync_window_index(first)
    start = int(80 * first / 25)  # Wav2Lip crop_audio_window start for these frames
    assert rows[idx].tolist() == list(range(start, start + 16))
    # mel frame m is centred at m / 80 s; the window spans [r / 25, (r + 5) / 25) seconds
    assert first / 25 <= rows[idx][0] / 80 + 1 / 80 and rows[idx][-1] / 80 < (first + 5) / 25
    # audio energy only during frames r..r+4 fills the paired window; upstream's window r (two frames
    # early) is half silent
    wav = np.zeros(t * 640, dtype=np.float32)
    wav[first * 640 : (first + 5) * 640] = np.random.default_rng(first).standard_normal(3200) * 0.5
    mel = torch.from_numpy(mel_windows(wav))[None]  # -> 1 x T x 1 x 80 x 16
    level = mel[0, :, 0].mean(1)  # -> T x 16 mean level per column
    loud = (level > -1.0).sum(1)
    assert int(loud[idx]) >= 15
    if first >= 2:
        assert int(loud[first]) <= 11
    picked = gather_sync_windows(mel, torch.tensor([first]))
    assert torch.equal(picked[0], mel[0, idx])
    with pytest.raises(ValueError, match="do not fit"):
        gather_sync_windows(mel, torch.tensor([t - 4]))
