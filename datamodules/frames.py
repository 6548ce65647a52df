"""Frames of one video for person-specific fine-tuning (`finetune`, SPEC 5.5).

`FramesDataModule` yields the same batches as `PairDataModule` ({"source", "target"}, uint8
B x 3 x S x S) from the frames of one person's video, split as upstream does: the first
`train_fraction` (80 %) of the frames in time order train, the rest validate. Where the frames come
from (`root`):

* a folder of face crops (``*.png``, ``*.jpg``, ``*.jpeg``, ``*.bmp``, ``*.webp``), ordered by natural
  sort (``frame_2.png`` before ``frame_10.png``); upstream's fine-tuning input;
* a video file of face crops (resampled to 25 fps on read, kept in memory as JPEG);
* a shard directory (``edtalk preprocess`` output, or the built-in dataset when `root` is None): the
  frames of the clips of one `clip` id or video name (``<video>`` takes ``<video>#0``, ``<video>#1``,
  ... in order), of the listed `clips` (ids or video names, joined in natural order), or of one
  `speaker`; with none of these, the speaker of the first test clip (a person the other stages did
  not train on). A raw, uncropped video goes through ``edtalk preprocess`` first. Shard frames carry
  their mouth boxes: batches then hold "target_box" (pixels of the sample) for `model.loss.mouth`.

Training pairs: every training frame is a target once per epoch (shuffled; split over DDP ranks by
Lightning's distributed sampler), its source another training frame drawn from torch's RNG (seeded
per worker and epoch, reproducible under `lightning.seed_everything`). Validation: every held-out
frame as target, rendered from the fixed source frame `val_source` (default: the first frame, the
single photo inference starts from): the same set every time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.modules import make_loader
from datamodules.samplers import to_image_tensor
from datamodules.shards import INDEX_NAME, SPLITS, Clip, decode_jpeg, encode_jpeg, iter_clips, read_index

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
CACHE_QUALITY = 95  # JPEG quality of frames decoded from a video and kept in memory


def natural_key(path: Path) -> list[Any]:
    """Sort key that orders ``frame_2`` before ``frame_10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class FrameSource:
    """The frames of one video: files on disk or JPEG bytes in memory, all of one square size."""

    def __init__(
        self,
        name: str,
        paths: Sequence[Path] = (),
        jpegs: Sequence[bytes] = (),
        boxes: np.ndarray | None = None,
    ) -> None:
        if bool(paths) == bool(jpegs):
            raise ValueError("FrameSource takes either paths or jpegs")
        self.name, self.paths, self.jpegs = name, list(paths), list(jpegs)
        self.boxes = boxes  # N x 4 mouth boxes (x1, y1, x2, y2) in pixels of the stored frames, or None
        if boxes is not None and len(boxes) != len(self):
            raise ValueError(f"{name}: {len(boxes)} mouth boxes for {len(self)} frames")

    def __len__(self) -> int:
        return len(self.paths) or len(self.jpegs)

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as H x W x 3 uint8 RGB."""
        if self.jpegs:
            return decode_jpeg(self.jpegs[index])
        import cv2

        path = self.paths[index]
        image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode frame {path}; replace or delete the file")
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def _check_square(size: tuple[int, int], where: str) -> None:
    width, height = size
    if width != height:
        raise ValueError(
            f"{where} is {width}x{height}: fine-tuning needs square face crops; crop the video first with "
            "`edtalk preprocess --input <folder with the video> --layout folder --out <dir>` and pass <dir>"
        )


def folder_frames(folder: Path) -> FrameSource:
    """Image files of a folder, natural order; sizes checked from the file headers."""
    from PIL import Image, UnidentifiedImageError

    paths = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    if not paths:
        raise FileNotFoundError(
            f"no frames ({', '.join(IMAGE_SUFFIXES)}) in {folder}; give a folder of face crops, a video "
            "file or a shard directory"
        )
    sizes: dict[tuple[int, int], Path] = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.setdefault(image.size, path)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read frame {path} ({err}); replace or delete the file") from err
    if len(sizes) > 1:
        (a, pa), (b, pb) = list(sizes.items())[:2]
        raise ValueError(f"frames of {folder} differ in size: {pa} is {a}, {pb} is {b}; crop them alike")
    _check_square(next(iter(sizes)), str(paths[0]))
    return FrameSource(folder.name, paths=paths)


def video_frames(path: Path) -> FrameSource:
    """All frames of a video, resampled to 25 fps, kept in memory as JPEG."""
    from edtalk.io import iter_frames

    jpegs, shape = [], None
    for frame in iter_frames(path):
        shape = shape or frame.shape
        jpegs.append(encode_jpeg(frame, CACHE_QUALITY))
    if shape is None:
        raise ValueError(f"{path} has no frames")
    _check_square((shape[1], shape[0]), str(path))
    return FrameSource(path.stem, jpegs=jpegs)


def shard_frames(
    root: Path, clip: str | None = None, speaker: str | None = None, clips: Sequence[str] = ()
) -> FrameSource:
    """The frames of one video (`clip`: a clip id or a video name), of the listed `clips` or of one
    `speaker` from shards, with their mouth boxes.

    Streams the shards once and keeps only the chosen clips' JPEG bytes; clips join in natural order
    of their ids (``<video>#2`` before ``<video>#10``).
    """
    splits = [s for s in SPLITS if read_index(root)["splits"].get(s)]
    names = [clip] if clip is not None else list(clips)
    if not names and speaker is None:  # the person of the first test clip (else of the first clip)
        first = next(iter_clips(root, "test" if "test" in splits else splits[0]))
        speaker = str(first.meta.get("speaker"))

    def wanted(c: Clip) -> bool:
        if names:
            return any(c.key == n or c.key.startswith(f"{n}#") for n in names)
        return str(c.meta.get("speaker")) == speaker

    picked = {
        c.key: ([c.jpeg(i) for i in range(c.num_frames)], c.bbox[: c.num_frames])
        for s in splits
        for c in iter_clips(root, s)
        if wanted(c)
    }
    missing = [n for n in names if not any(k == n or k.startswith(f"{n}#") for k in picked)]
    if missing or not picked:
        what = f"clips {missing}" if missing else f"speaker {speaker!r}"
        raise ValueError(f"no clips of {what} in {root / INDEX_NAME}; its shard list names the clip ids")
    keys = sorted(picked, key=lambda k: natural_key(Path(k)))
    return FrameSource(
        "+".join(names) if names else str(speaker),
        jpegs=[j for k in keys for j in picked[k][0]],
        boxes=np.concatenate([picked[k][1] for k in keys]).astype(np.float32),
    )


class FramePairs(Dataset[dict[str, torch.Tensor]]):
    """Item i: target frame `targets[i % len(targets)]`; source frame `source` when given, else another
    frame of `pool` (sorted indices containing the targets) drawn from torch's RNG."""

    def __init__(
        self,
        frames: FrameSource,
        targets: np.ndarray,
        pool: np.ndarray,
        image_size: int,
        length: int | None = None,
        source: int | None = None,
    ) -> None:
        self.frames, self.targets, self.pool = frames, targets, pool
        self.image_size, self.source = image_size, source
        self.length = length if length is not None else len(targets)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        target = int(self.targets[index % len(self.targets)])
        if self.source is not None:
            source = self.source
        else:  # another frame of the pool, from torch's (worker-seeded) RNG
            k = int(torch.randint(len(self.pool) - 1, ()))
            k += k >= int(np.searchsorted(self.pool, target))  # skip the target itself (pool is sorted)
            source = int(self.pool[k])
        images = np.stack([self.frames.frame(source), self.frames.frame(target)])
        tensor = to_image_tensor(images, self.image_size)  # -> 2 x 3 x S x S uint8
        item = {"source": tensor[0], "target": tensor[1]}
        if self.frames.boxes is not None:  # stored-frame pixels -> pixels of the S x S sample
            scale = self.image_size / images.shape[2]
            item["target_box"] = torch.from_numpy(self.frames.boxes[target] * scale).float()
        return item


class FramesDataModule(L.LightningDataModule):
    """Same-identity pairs {"source", "target"} from one video's frames (module docstring).

    Args:
        root: folder of frames, video file, or shard directory (None: the built-in dataset).
        image_size: S of the output frames.
        batch_size: training batch size (validation uses `val_batch_size` or the same).
        num_workers: DataLoader workers.
        train_fraction: leading share of the frames used for training (upstream: 0.8).
        samples_per_epoch: training samples per epoch (default: one per training frame).
        val_source: index of the fixed source frame of the validation pairs.
        clip, speaker: which frames of a shard directory (ignored for folders and videos).
        val_batch_size: validation batch size.
        clips: several clip ids or video names of a shard directory (instead of `clip`).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        image_size: int = 256,
        batch_size: int = 8,
        num_workers: int = 2,
        train_fraction: float = 0.8,
        samples_per_epoch: int | None = None,
        val_source: int = 0,
        clip: str | None = None,
        speaker: str | None = None,
        val_batch_size: int | None = None,
        clips: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if not 0 < train_fraction < 1:
            raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
        self.root = root
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.train_fraction, self.samples_per_epoch = train_fraction, samples_per_epoch
        self.val_source, self.clip, self.speaker = val_source, clip, speaker
        if clip is not None and clips:
            raise ValueError(f"give data.clip or data.clips, not both (clip={clip!r}, clips={list(clips)})")
        self.clips = list(clips or ())
        self.val_batch_size = val_batch_size or batch_size
        self.frames: FrameSource | None = None

    def load_frames(self) -> FrameSource:
        """The frames of `root` (read once)."""
        if self.frames is not None:
            return self.frames
        if self.root is None:
            from datamodules.synthetic import ensure_builtin

            self.root = ensure_builtin()
        root = Path(self.root)
        if (root / INDEX_NAME).is_file():
            self.frames = shard_frames(root, self.clip, self.speaker, self.clips)
        elif root.is_dir():
            self.frames = folder_frames(root)
        elif root.is_file() and root.suffix.lower() in VIDEO_SUFFIXES:
            self.frames = video_frames(root)
        else:
            raise FileNotFoundError(
                f"{root}: not a folder of frames, a video file ({', '.join(VIDEO_SUFFIXES)}) or a shard directory"
            )
        return self.frames

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(training frame indices, validation frame indices): leading / trailing part of the video."""
        n = len(self.load_frames())
        cut = round(n * self.train_fraction)
        if cut < 2 or cut >= n:
            raise ValueError(
                f"{self.root}: {n} frames are too few to hold out {1 - self.train_fraction:.0%} for validation "
                "and train on at least 2; give a longer video"
            )
        return np.arange(cut), np.arange(cut, n)

    def setup(self, stage: str | None = None) -> None:
        self.split()
        if not 0 <= self.val_source < len(self.load_frames()):
            raise ValueError(f"val_source={self.val_source} outside the {len(self.load_frames())} frames")

    def train_dataloader(self) -> DataLoader[Any]:
        train, _ = self.split()
        dataset = FramePairs(self.load_frames(), train, train, self.image_size, self.samples_per_epoch)
        return make_loader(dataset, self.batch_size, self.num_workers, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        _, val = self.split()
        dataset = FramePairs(self.load_frames(), val, val, self.image_size, source=self.val_source)
        return make_loader(dataset, self.val_batch_size, self.num_workers)

    def test_dataloader(self) -> DataLoader[Any]:
        """The held-out frames, as in validation."""
        return self.val_dataloader()
