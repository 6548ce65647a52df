"""syncnet_python's crop path (`--crop s3fd`): S3FD decoding and NMS, IoU tracking, crop geometry, and the
whole `prepare_lse_inputs` on a real clip.

The official S3FD file cannot ship: the S3FD test loads a random-init network of face-alignment's layout
from a local file (nothing downloaded); the end-to-end test uses a detector that finds the clip's bright
square by thresholding, so the tracker, the crop and the audio cut run on real decoded frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.sync import prepare_lse_inputs
from metrics.syncnet_crop import (
    S3FD_FILE,
    TrackConfig,
    crop_track,
    decode_s3fd,
    postprocess,
    track_faces,
)
from tests.avclips import write_clip


def _box(cx: float, cy: float, side: float, score: float = 0.99) -> np.ndarray:
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, score])


def test_tracker_follows_overlap_interpolates_gaps_and_drops_short_or_small_tracks() -> None:
    frames: list[list[np.ndarray]] = []
    for t in range(130):
        faces = [] if 40 <= t < 50 else [_box(200 + t, 200, 120)]  # A: moves 1 px a frame, missed 10 frames
        faces.append(_box(600, 200, 60))  # B: every frame but only 60 px wide
        if t < 60:
            faces.append(_box(200, 600, 120))  # C: big but only 60 frames
        frames.append([np.asarray(f) for f in faces])
    tracks = track_faces(frames, TrackConfig())
    assert len(tracks) == 1
    (track,) = tracks
    np.testing.assert_array_equal(track.frames, np.arange(130))
    expected = np.stack([_box(200 + t, 200, 120)[:4] for t in range(130)])
    np.testing.assert_allclose(track.boxes, expected, atol=1e-9)  # the gap filled linearly


def test_tracker_splits_when_the_next_face_is_more_than_25_frames_later() -> None:
    frames = [[_box(300, 300, 150)] if t < 120 or t >= 150 else [] for t in range(280)]
    tracks = track_faces(frames, TrackConfig())
    assert [(int(t.frames[0]), int(t.frames[-1])) for t in tracks] == [(150, 279), (0, 119)]
    frames = [[_box(300, 300, 150)] if t < 120 or t >= 145 else [] for t in range(280)]  # 119 -> 145: two
    assert [len(t.frames) for t in track_faces(frames, TrackConfig())] == [135, 120]
    frames = [[_box(300, 300, 150)] if t < 120 or t >= 144 else [] for t in range(280)]  # 119 -> 144: one
    assert [len(t.frames) for t in track_faces(frames, TrackConfig())] == [280]


def test_crop_is_centred_like_syncnet_python() -> None:
    """Box half-size s: rows [cy - s, cy + 1.8 s), columns [cx - 1.4 s, cx + 1.4 s) -> 224: the box centre
    lands at row 224 / 2.8 = 80, column 112; outside the frame the padding value 110 shows."""
    frames = np.zeros((20, 400, 400, 3), np.uint8)
    frames[:, 148:153, 198:203] = 255  # marker at (150, 200)
    boxes = np.tile([150.0, 100.0, 250.0, 200.0], (20, 1))  # centre (200, 150), s = 50
    crops = crop_track(frames, boxes)
    assert crops.shape == (20, 224, 224, 3)
    ys, xs = np.nonzero(crops[10, :, :, 0] > 128)
    assert abs(ys.mean() - 80) < 1.5 and abs(xs.mean() - 112) < 1.5
    edge = crop_track(frames, np.tile([0.0, 0.0, 100.0, 100.0], (20, 1)))  # a box at the corner
    assert edge[10, 0, 0, 0] == 110


def test_s3fd_decoding_thresholds_and_nms() -> None:
    """One confident anchor at level 0 (stride 4, 16 px anchor) with zero offsets -> that anchor's box."""
    outputs = []
    for k in range(6):
        size = 64 // 2**k
        cls = np.zeros((2, size, size), np.float32)
        cls[0] = 5.0  # background everywhere
        outputs += [cls, np.zeros((4, size, size), np.float32)]
    outputs[0][:, 10, 20] = [0.0, 8.0]  # face at cell (y 10, x 20): centre (82, 42) in the 256² input
    outputs[0][:, 10, 21] = [0.0, 7.0]  # its neighbour: overlaps (IoU 0.6), suppressed
    outputs[0][:, 30, 5] = [0.0, 1.5]  # p = 0.82: under the 0.9 threshold
    dets = postprocess(decode_s3fd(outputs, (1024, 1024), (256, 256)))
    assert dets.shape == (1, 5)
    np.testing.assert_allclose(dets[0, :4], np.array([82 - 8, 42 - 8, 82 + 8, 42 + 8]) * 4, atol=1e-4)
    assert dets[0, 4] > 0.99


def test_s3fd_loads_a_local_face_alignment_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("face_alignment")
    import face_alignment.utils
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from skimage.data import astronaut

    from metrics.syncnet_crop import S3FD

    def no_download(url: str, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(face_alignment.utils, "download_url_to_file", no_download)
    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), tmp_path / S3FD_FILE)
    detector = S3FD(tmp_path / S3FD_FILE, conf_threshold=0.0)  # a random net: keep every box to see them
    dets = detector.detect(astronaut())
    assert dets.ndim == 2 and dets.shape[1] == 5 and len(dets) > 0
    assert np.all(dets[:, 4] > 0) and np.all(dets[:, 4] <= 1)
    with pytest.raises(FileNotFoundError, match=rf"{S3FD_FILE}.*--crop dlib"):
        S3FD(tmp_path / "elsewhere" / S3FD_FILE)


class BrightSquare:
    """A real (if simple) detector: the bounding box of pixels brighter than 200."""

    def detect(self, image: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(image.min(-1) > 200)
        if not len(ys):
            return np.zeros((0, 5))
        return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, 1.0]])


def test_prepare_lse_inputs_crops_the_track_and_cuts_its_audio(tmp_path: Path) -> None:
    n, first = 60, 12  # the face shows from frame 12 on
    frames = np.full((n, 256, 256, 3), 40, np.uint8)
    for t in range(first, n):
        frames[t, 60:180, 70 + t // 4 : 190 + t // 4] = 230  # 120 px square drifting right
    audio = (np.random.default_rng(0).standard_normal((1, n * 640)) * 0.1).astype(np.float32)
    clip = write_clip(tmp_path / "face.mov", frames, 25, audio)
    inputs = prepare_lse_inputs(clip, crop="s3fd", min_track=20, detector=BrightSquare())
    assert inputs.start_frame == first and inputs.tracks == 1
    assert inputs.frames.shape == (n - first, 3, 224, 224)
    from edtalk.io import read_audio

    np.testing.assert_array_equal(inputs.wav, read_audio(clip)[first * 640 : n * 640])
    crop = ((inputs.frames[20].permute(1, 2, 0) + 1) * 127.5).numpy()
    # the square spans rows [cy - s, cy + s) of the crop's [cy - s, cy + 1.8 s) (crop rows 0..160) and
    # columns [cx - s, cx + s) of [cx - 1.4 s, cx + 1.4 s) (32..192)
    assert crop[5:155, 40:185].mean() > 200 and crop[170:].mean() < 60 and crop[:, :25].mean() < 60
    with pytest.raises(ValueError, match=r"no face track of more than 100 frames.*--min-track"):
        prepare_lse_inputs(clip, crop="s3fd", detector=BrightSquare())


def test_lse_cli_s3fd_without_weights_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edtalk.cli import main
    from metrics.judges import SyncNetV2

    torch.save(SyncNetV2().state_dict(), tmp_path / "syncnet_v2.model")
    clip = write_clip(tmp_path / "c.mov", np.zeros((10, 64, 64, 3), np.uint8), 25, np.zeros((1, 6400)))
    args = ["lse", str(clip), "--weights", str(tmp_path / "syncnet_v2.model"), "--crop", "s3fd"]
    assert main([*args, "--s3fd", str(tmp_path / "none")]) == 2
    assert S3FD_FILE in capsys.readouterr().err
    assert main([*args, "--no-crop"]) == 2  # contradictory flags name each other
    assert "--no-crop contradicts --crop s3fd" in capsys.readouterr().err
