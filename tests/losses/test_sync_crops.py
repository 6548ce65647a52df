"""Sync crops (issue 14 item 7): lower halves of face-box crops by default, mouth-box squares as an option.

On the built-in data (real preprocessing, 68 landmarks detected on every frame) the face boxes of the
audio batches cover every landmark and the lower half of their 96 x 96 crop holds the mouth and no eye,
as in the input Wav2Lip's expert was trained on. The mouth option reproduces, bit for bit, the crops of
the mouth-box code as it was before the option existed (`reference_mouth_crops`, written out here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datamodules.samplers import AudioSampler, face_boxes
from datamodules.shards import Clip, iter_clips
from edtalk.losses.sync import SyncLoss, crop_boxes, crop_resize, sync_faces, sync_loss, sync_pair
from edtalk.nn.syncnet import SyncNet, gather_sync_windows
from edtalk.stages.audio2mouth import Audio2MouthConfig
from edtalk.stages.syncnet import SyncNetStage, SyncNetStageConfig

MOUTH, EYES = list(range(48, 68)), list(range(36, 48))


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    """Every clip of the built-in dataset (train and test speakers)."""
    from datamodules.synthetic import ensure_builtin

    root = ensure_builtin()
    return [clip for split in ("train", "test") for clip in iter_clips(root, split)]


def whole_clip(clip: Clip, size: int) -> dict[str, torch.Tensor]:
    """The audio sample of all frames of `clip` (clip_frames = its length, so the window starts at 0)."""
    sampler = AudioSampler(image_size=size, clip_frames=clip.num_frames, deterministic=True)
    return next(iter(sampler([clip.raw])))


def reference_mouth_crops(
    frames: torch.Tensor, bbox: torch.Tensor, start: torch.Tensor, crop_scale: float = 2.0
) -> torch.Tensor:
    """The expert's input as the mouth-box code computed it before `sync_crop` (B x 15 x 48 x 96).

    Square of side crop_scale x mean mouth-box width over the 5 frames, centred on each frame's mouth
    horizontally, mouth centre at 3/4 of the crop height; bilinear 96 x 96 crop; lower halves stacked.
    """
    b = frames.shape[0]
    idx = start[:, None] + torch.arange(5)  # -> B x 5
    rows = torch.arange(b)[:, None]
    clip = frames[rows, idx].flatten(0, 1)  # -> (B*5) x 3 x S x S
    box = bbox.to(frames.dtype)[rows, idx]  # -> B x 5 x 4
    cx = 0.5 * (box[..., 0] + box[..., 2])
    cy = 0.5 * (box[..., 1] + box[..., 3])
    side = (crop_scale * (box[..., 2] - box[..., 0]).mean(dim=-1, keepdim=True).clamp_min(1.0)).expand_as(cx)
    x1, y1 = (cx - side / 2).flatten(), (cy - 0.75 * side).flatten()
    x2, y2 = (cx + side / 2).flatten(), (cy + 0.25 * side).flatten()
    n, _, h, w = clip.shape
    theta = clip.new_zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = (x2 - x1) / w, (x1 + x2) / w - 1
    theta[:, 1, 1], theta[:, 1, 2] = (y2 - y1) / h, (y1 + y2) / h - 1
    grid = F.affine_grid(theta, [n, 3, 96, 96], align_corners=False)
    crops = F.grid_sample(clip, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crops.view(b, 5, 3, 96, 96)[:, :, :, 48:].reshape(b, 15, 48, 96)


# -- the face box ---------------------------------------------------------------------------------
def test_face_boxes_cover_every_landmark_with_the_mouth_in_the_lower_half(clips: list[Clip]) -> None:
    size = 64
    assert len(clips) >= 8
    for clip in clips:
        sample = whole_clip(clip, size)
        scale = size / clip.frame(0).shape[1]
        box = sample["face_box"].numpy().astype(np.float64)  # -> T x 4
        lmk = clip.lmk.astype(np.float64) * scale  # -> T x 68 x 2 in pixels of the 64² frames
        assert box.shape == (clip.num_frames, 4)
        # the whole face: all 68 points inside the box (float32 rounding only)
        assert (lmk[..., 0] >= box[:, None, 0] - 1e-4).all() and (lmk[..., 0] <= box[:, None, 2] + 1e-4).all()
        assert (lmk[..., 1] >= box[:, None, 1] - 1e-4).all() and (lmk[..., 1] <= box[:, None, 3] + 1e-4).all()
        # the mouth in the lower half: its points' mean >= 9.9 % of the box height below the centre (measured on
        # the built-in data v4); a happy clip's raised corners reach the centre line (measured: exactly 0.0)
        centre, height = (box[:, 1] + box[:, 3]) / 2, box[:, 3] - box[:, 1]
        assert (lmk[:, MOUTH, 1].mean(1) > centre + 0.05 * height).all(), clip.key
        assert (lmk[:, MOUTH, 1].min(1) > centre - 0.02 * height).all(), clip.key
        assert (lmk[:, EYES, 1].max(1) < centre).all(), clip.key  # and the eyes in the upper half
        # the mouth box (with its margin) is mostly in the lower half (measured >= 86 % of its height)
        mouth = sample["bbox"].numpy().astype(np.float64)
        inside = np.minimum(mouth[:, 3], box[:, 3]) - np.maximum(mouth[:, 1], centre)
        assert (inside / (mouth[:, 3] - mouth[:, 1]) > 0.75).all(), clip.key
        assert (mouth[:, 0] >= box[:, 0]).all() and (mouth[:, 2] <= box[:, 2]).all()
        # the mouth boxes are the stored ones, scaled to the frame size, as before
        assert torch.equal(sample["bbox"], torch.from_numpy(clip.bbox * scale).float())


def test_face_box_top_reaches_above_the_brows_to_centre_the_nose_tip() -> None:
    lmk = np.zeros((2, 68, 2), np.float32)
    lmk[:, :, 0] = np.linspace(10, 50, 68)
    lmk[:, :, 1] = np.linspace(20, 80, 68)  # brows (17-26) high, chin (8) not the lowest: any layout
    lmk[0, 30, 1] = 40.0  # nose tip above mid-height: top = 2 * 40 - 80 = 0, above the brows
    lmk[1, 30, 1] = 60.0  # nose tip low: 2 * 60 - 80 = 40 is below the topmost point, which stays the top
    np.testing.assert_array_equal(face_boxes(lmk), [[10, 0, 50, 80], [10, 20, 50, 80]])


def paint(points: np.ndarray, size: int, channels: list[list[int]]) -> torch.Tensor:
    """1 x T x 3 x size x size zeros with 3 x 3 squares of 1 at the given landmarks (T x 68 x 2) per channel."""
    t = points.shape[0]
    out = torch.zeros(1, t, 3, size, size)
    for c, ids in enumerate(channels):
        for k in range(t):
            for x, y in np.rint(points[k, ids]).astype(int):
                out[0, k, c, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = 1.0
    return out


def test_face_crop_lower_half_holds_the_mouth_and_no_eye(clips: list[Clip]) -> None:
    """Landmarks painted into blank 256² frames (channels: mouth, eyes, all 68 points), cropped by the
    face boxes of the batch: the whole 96² crop holds the face, its lower half (the expert's input) the
    mouth and not the eyes."""
    size = 256
    for clip in clips[::8]:
        sample = whole_clip(clip, size)
        frames = paint(clip.lmk[:5] * (size / clip.frame(0).shape[1]), size, [MOUTH, EYES, list(range(68))])
        boxes = sample["face_box"][None, :5]  # -> 1 x 5 x 4
        lower = sync_faces(frames, boxes, torch.tensor([0]), crop="face").view(5, 3, 48, 96)
        full = crop_resize(frames[0], boxes[0])  # -> 5 x 3 x 96 x 96
        area = ((boxes[0, :, 2] - boxes[0, :, 0]) * (boxes[0, :, 3] - boxes[0, :, 1]) / 96**2).view(5, 1)
        painted = frames[0].sum((2, 3))  # -> 5 x 3
        kept = full.sum((2, 3)) * area  # mass in the crop, in frame pixels
        assert (kept[:, 2] > 0.9 * painted[:, 2]).all(), (clip.key, kept[:, 2], painted[:, 2])  # whole face
        assert (lower[:, 0].sum((1, 2)) > 0.95 * full[:, 0].sum((1, 2))).all(), clip.key  # mouth below
        assert float(lower[:, 1].abs().max()) == 0.0, clip.key  # no eye in the lower half


# -- the mouth option is today's crop ---------------------------------------------------------------
def test_mouth_option_reproduces_the_mouth_box_crops_bit_for_bit(clips: list[Clip]) -> None:
    from edtalk.io import uint8_to_float

    g = torch.Generator().manual_seed(0)
    sample = whole_clip(clips[0], 64)
    t = sample["frames"].shape[0]
    real = uint8_to_float(sample["frames"])[None]  # -> 1 x T x 3 x 64 x 64, the built-in data
    corner = 16 + 16 * torch.rand(3, 9, 2, generator=g)
    random_boxes = torch.cat([corner, corner + 8 + 16 * torch.rand(3, 9, 2, generator=g)], -1)  # -> 3 x 9 x 4
    cases = [
        (real, sample["bbox"][None], torch.tensor([0]), 2.0),
        (real, sample["bbox"][None], torch.tensor([t - 5]), 1.6),
        (torch.rand(3, 9, 3, 64, 64, generator=g) * 2 - 1, random_boxes, torch.tensor([0, 2, 4]), 2.0),
    ]
    for frames, bbox, start, scale in cases:
        want = reference_mouth_crops(frames, bbox, start, scale)
        assert torch.equal(sync_faces(frames, bbox, start, scale, crop="mouth"), want)
        mel = torch.randn(frames.shape[0], frames.shape[1], 1, 80, 16, generator=g)
        window, faces = sync_pair(frames, bbox, mel, start, scale, crop="mouth")
        assert torch.equal(faces, want) and torch.equal(window, gather_sync_windows(mel, start))
        net = SyncNet((4, 8, 16, 32, 64)).eval()
        with torch.no_grad():
            loss = SyncLoss(net, scale, "mouth")(frames, bbox, mel, start)
            assert torch.equal(loss, sync_loss(*net(gather_sync_windows(mel, start), want), 1.0))
        assert not torch.equal(sync_faces(frames, bbox, start, scale), want)  # the default is the face crop


def test_stages_thread_the_crop_choice() -> None:
    """`model.sync_crop` selects the boxes the syncnet stage crops; the mouth option needs no face box."""
    g = torch.Generator().manual_seed(0)
    batch = {
        "frames": torch.rand(2, 15, 3, 64, 64, generator=g) * 2 - 1,
        "mel": torch.randn(2, 15, 1, 80, 16, generator=g),
        "bbox": torch.tensor([24.0, 38, 40, 50]).expand(2, 15, 4).clone(),
        "face_box": torch.tensor([16.0, 18, 48, 54]).expand(2, 15, 4).clone(),
    }
    out = {}
    for crop in ("face", "mouth"):
        torch.manual_seed(0)
        net = SyncNet((4, 8, 16, 32, 64))
        stage = SyncNetStage(net, {"channels": [4, 8, 16, 32, 64]}, SyncNetStageConfig(sync_crop=crop)).eval()
        with torch.no_grad():
            out[crop] = stage.compute(batch, train=False)["loss"]
            if crop == "mouth":
                no_face = {k: v for k, v in batch.items() if k != "face_box"}
                assert torch.equal(stage.compute(no_face, train=False)["loss"], out[crop])
            else:
                with pytest.raises(KeyError, match="face_box"):
                    stage.compute({k: v for k, v in batch.items() if k != "face_box"}, train=False)
    assert not torch.equal(out["face"], out["mouth"])


def test_unknown_crop_is_refused_naming_the_choices() -> None:
    for make in (
        lambda: SyncNetStageConfig(sync_crop="lips"),
        lambda: Audio2MouthConfig(sync_crop="lips"),
        lambda: SyncLoss(SyncNet((4, 8, 16, 32, 64)), crop="lips"),
        lambda: crop_boxes({"bbox": torch.zeros(1, 5, 4)}, "lips"),
    ):
        with pytest.raises(ValueError, match=r"sync_crop='lips'.*'face'.*'mouth'"):
            make()
    assert SyncNetStageConfig().sync_crop == "face" and Audio2MouthConfig().sync_crop == "face"


@pytest.mark.parametrize("experiment", ["syncnet", "audio2mouth"])
def test_print_config_shows_the_crop(experiment: str, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from edtalk.cli import main

    for extra, want in (([], "face"), (["model.sync_crop=mouth"], "mouth")):
        assert main(["fit", experiment, *extra, "--print-config"]) == 0
        assert yaml.safe_load(capsys.readouterr().out)["model"]["sync_crop"] == want
    assert main(["fit", experiment, "model.sync_crop=lips", "--print-config"]) == 2
    assert "sync_crop='lips'" in capsys.readouterr().err


def test_audio2mouth_warns_when_the_expert_was_trained_on_the_other_crop(tmp_path: Path) -> None:
    """Our syncnet export records its crop; Wav2Lip's expert counts as face-trained; older syncnet
    exports (no record) as mouth-trained."""
    import warnings

    from edtalk import weights
    from edtalk.losses.sync import expert_crop, warn_other_crop

    channels = [4, 8, 16, 32, 64]
    files = {}
    for crop in ("face", "mouth"):
        stage = SyncNetStage(
            SyncNet(tuple(channels)), {"channels": channels}, SyncNetStageConfig(sync_crop=crop)
        )
        files[crop] = stage.export(tmp_path / f"{crop}.pt")
    old = weights.save_checkpoint(
        SyncNet(tuple(channels)),
        "syncnet",
        tmp_path / "old.pt",
        config={"channels": channels},
        stage="syncnet",
        step=3,
    )
    official = weights.save_official(SyncNet(), "syncnet_expert", tmp_path / "lipsync_expert.pth")
    lightning = tmp_path / "last.ckpt"  # a syncnet run's Lightning checkpoint: the crop is in its run config
    meta = {"stage": "syncnet", "kind": "syncnet", "config": {"model": {"sync_crop": "face"}}}
    torch.save({"state_dict": {}, "edtalk": meta}, lightning)
    trained = {"face": files["face"], "mouth": files["mouth"], "mouth_old": old, "face_wav2lip": official}
    trained["face_lightning"] = lightning
    for name, path in trained.items():
        want = name.split("_")[0]
        assert expert_crop(weights.load_file(path)) == want, name
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warn_other_crop(path, want)  # same crop: silent
        other = "mouth" if want == "face" else "face"
        with pytest.warns(
            UserWarning, match=rf"trained on '{want}' crops but is fed '{other}'.*model\.sync_crop={want}"
        ):
            warn_other_crop(path, other)
    from edtalk.stages.supervised import load_network

    assert isinstance(load_network(files["mouth"], "syncnet"), SyncNet)  # the record does not hinder loading
