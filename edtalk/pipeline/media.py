"""Input media of one render: photos, 25 fps videos (cropped, resized, staged on disk), speech and soundtrack.

Photos are face-aligned by template (`datamodules.preprocess.crop.crop_image`), videos get one tracked
square tube crop for the whole clip; both are resized bicubically to the generator's size (as the
original demos' PIL resize). Videos are staged as uint8 memmaps N x S x S x 3, so memory stays flat in
the video length.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from edtalk.io import MediaError, iter_frames, probe_video, read_audio
from edtalk.pipeline.inputs import Inputs, is_image

SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 H x W x 3 -> size x size x 3 (bicubic, as the original demos' PIL resize)."""
    if image.shape[:2] == (size, size):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 H x W x 3 of an image file; MediaError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise MediaError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise MediaError(f"cannot read image {path} ({err}); give a .png or .jpg photo") from err


class Media:
    """Reads, crops and resizes the inputs of one render; videos are staged on disk under `tmp`, once each."""

    def __init__(self, tmp: Path, size: int, crop: bool) -> None:
        self.tmp, self.size, self.crop = tmp, size, crop
        self._videos: dict[Path, tuple[int | None, np.ndarray]] = {}

    def image(self, path: Path) -> np.ndarray:
        """A photo, face-aligned (unless crop is off) and resized: size x size x 3 uint8."""
        image = read_image(path)
        if self.crop:
            image = crop_photo(image, path)
        return resize(image, self.size)

    def video(self, path: Path, limit: int | None) -> np.ndarray:
        """Frames at 25 fps (at most `limit`), cropped and resized: N x size x size x 3 uint8 (memmap)."""
        key = path.resolve()
        if key in self._videos:
            read_limit, frames = self._videos[key]
            if read_limit is None or (limit is not None and limit <= read_limit):
                return frames[:limit]
        frames = stage_video(path, limit, self.size, self.crop, self.tmp / f"video{len(self._videos)}")
        self._videos[key] = (limit, frames)
        return frames

    def frames(self, path: Path, limit: int) -> np.ndarray:
        """An image (as one frame) or a video: N x size x size x 3 uint8."""
        return self.image(path)[None] if is_image(path) else self.video(path, limit)


def read_speech(path: Path, device: torch.device) -> tuple[np.ndarray, torch.Tensor]:
    """The waveform cut to whole frames and its mel windows T x 1 x 80 x 16 on `device`.

    Raises:
        MediaError: the audio is shorter than one video frame (40 ms).
    """
    from edtalk.mel import mel_windows

    wav = read_audio(path)
    frames = len(wav) // SAMPLES_PER_FRAME
    if frames < 1:
        raise MediaError(
            f"audio {path} lasts {len(wav) / 16000:.3f} s, shorter than one video frame (40 ms); "
            "give a longer audio"
        )
    wav = wav[: frames * SAMPLES_PER_FRAME]
    return wav, torch.from_numpy(mel_windows(wav)).to(device)


def soundtrack(inputs: Inputs) -> np.ndarray | None:
    """Audio for modes without --audio: the lip video's, else the source video's sound."""
    for path in (inputs.lip, inputs.source):
        if path is not None and not is_image(Path(path)) and probe_video(path).has_audio:
            return read_audio(path)
    return None


# -- cropping and staging ------------------------------------------------------------------------
def crop_photo(image: np.ndarray, path: Path) -> np.ndarray:
    """The template-aligned face crop of a photo; MediaError with the --no-crop hint when no face is found."""
    from datamodules.preprocess.crop import crop_image

    try:
        return crop_image(image)
    except ValueError as err:
        raise MediaError(f"{path}: {err}; or pass --no-crop if it is already a square face crop") from err


def stage_video(path: Path, limit: int | None, size: int, crop: bool, stem: Path) -> np.ndarray:
    """Decode (25 fps), crop and resize a video into a uint8 memmap N x size x size x 3 at `stem`.u8."""
    info = probe_video(path)
    frames: Iterator[np.ndarray] = iter_frames(path)
    raw_file = stem.with_suffix(".raw")
    if crop:  # the tube crop needs the whole clip first: stage the raw frames on disk
        raw = to_memmap(frames, limit, (info.height, info.width), raw_file)
        frames = crop_video(raw, path) if len(raw) else iter(())
    out = to_memmap((resize(f, size) for f in frames), limit, (size, size), stem.with_suffix(".u8"))
    raw_file.unlink(missing_ok=True)
    if len(out) == 0:
        raise MediaError(f"{path} contains no decodable video frames")
    return out


def to_memmap(frames: Iterator[np.ndarray], limit: int | None, hw: tuple[int, int], file: Path) -> np.ndarray:
    """Write frames into a growing disk file, then map it (memory stays flat)."""
    n = 0
    with open(file, "wb") as fh:
        for frame in frames:
            if limit is not None and n >= limit:
                break
            if frame.shape[:2] != hw:
                raise MediaError(f"{file.name}: frame size changed mid-video ({frame.shape[:2]} vs {hw})")
            fh.write(np.ascontiguousarray(frame, np.uint8).tobytes())
            n += 1
    if n == 0:
        return np.zeros((0, *hw, 3), np.uint8)
    return np.memmap(file, dtype=np.uint8, mode="r", shape=(n, *hw, 3))


def crop_video(frames: np.ndarray, path: Path, chunk: int = 64) -> Iterator[np.ndarray]:
    """One tracked square tube crop (256^2) for the whole clip, applied chunk by chunk."""
    from datamodules.preprocess.crop import crop_frames, crop_matrix, tube_crop_box
    from datamodules.preprocess.landmarks import get_backend
    from datamodules.preprocess.track import SkipClip, track_face

    try:
        track = track_face(frames, get_backend("dlib"))
    except SkipClip as err:
        raise MediaError(
            f"{path}: {err}; give a video of one face, or --no-crop if it is already cropped"
        ) from err
    matrix = crop_matrix(tube_crop_box(track.det_landmarks))
    for i in range(0, len(frames), chunk):
        yield from crop_frames(np.asarray(frames[i : i + chunk]), matrix)
