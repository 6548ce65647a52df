"""Per-clip feature sidecars beside the shards: HuBERT speech features (written here) and text vectors (read).

The paper's audio2exp variant (`model.network.input=hubert`) reads, for each shard `<split>-NNNNNN.tar`:
- `<shard>.hubert.npz`: one float32 array T x D per clip id (T = the clip's video frames, 25 fps),
  written by `extract_hubert` (`edtalk extract-hubert CHECKPOINT --shards DIR`) from a local
  `transformers` HuBERT checkpoint;
- `<shard>.text.npz` (optional): one float32 vector D_text per clip id, e.g. the EmoBERTa embedding of
  the clip's transcript, written by `extract_text` (`edtalk extract-text CHECKPOINT --transcripts
  FILE.json --shards DIR`; shards carry no transcripts, so the user supplies {clip id: text}); any tool
  that writes this layout (`write_features(shard, TEXT, {clip id: vector}, meta)`) feeds the text branch.
Both hold `__meta__`: a JSON string (what made them: checkpoint, layer, fps, dim). Writing is atomic
per shard; `extract_hubert` skips shards whose sidecar exists (resumable) unless `overwrite`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edtalk.io import save_npz_atomic

HUBERT = ".hubert.npz"
TEXT = ".text.npz"
META_KEY = "__meta__"


def feature_path(shard: str | Path, suffix: str) -> Path:
    """`<shard><suffix>` for a local shard path or `file:` URL."""
    return Path(str(shard).removeprefix("file:") + suffix)


def write_features(
    shard: str | Path, suffix: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> Path:
    """Write `{clip id: float32 array}` + `__meta__` (JSON) as the `suffix` sidecar of `shard`, atomically."""
    out = feature_path(shard, suffix)
    payload: dict[str, Any] = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
    payload[META_KEY] = np.array(json.dumps(dict(meta)))
    return save_npz_atomic(out, payload)


class FeatureSidecar:
    """One sidecar, arrays read lazily (`np.load` of an .npz)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data = np.load(path)
        self.meta: dict[str, Any] = json.loads(str(self._data[META_KEY]))

    def __contains__(self, clip_id: str) -> bool:
        return clip_id != META_KEY and clip_id in self._data

    @property
    def clip_ids(self) -> list[str]:
        return [k for k in self._data.files if k != META_KEY]

    def __getitem__(self, clip_id: str) -> np.ndarray:
        if clip_id not in self:
            raise KeyError(
                f"{self.path} has no features for clip {clip_id}; re-run its extraction with --overwrite"
            )
        return np.asarray(self._data[clip_id], np.float32)


class FeatureCache:
    """The `suffix` sidecars of the shards a stream reads, opened on first use (picklable: opens per worker)."""

    def __init__(self, suffix: str, fix: str) -> None:
        self.suffix, self.fix = suffix, fix
        self._files: dict[str, FeatureSidecar] = {}

    def get(self, url: str, clip_id: str) -> np.ndarray:
        """The array of `clip_id` in the sidecar of shard `url`; `FileNotFoundError` naming it and the fix."""
        if url not in self._files:
            path = feature_path(url, self.suffix)
            if not path.is_file():
                raise FileNotFoundError(f"{path} missing: {self.fix}")
            self._files[url] = FeatureSidecar(path)
        return self._files[url][clip_id]


def hubert_shard(extractor: Any, shard: str, meta: Mapping[str, Any]) -> tuple[Path, int]:
    """Write `<shard>.hubert.npz`: T x D features of every clip of one local shard. Returns (path, clips)."""
    import torch

    from datamodules.shards import Clip, clip_pipeline

    arrays: dict[str, np.ndarray] = {}
    for sample in clip_pipeline([shard], rank=0, world_size=1):
        clip = Clip(sample)
        arrays[clip.key] = extractor(torch.from_numpy(clip.wav()), clip.num_frames).numpy()
    return write_features(shard, HUBERT, arrays, meta), len(arrays)


def extract_hubert(
    checkpoint: str | Path,
    root: str | Path,
    splits: Sequence[str] = ("train", "test"),
    layer: int = -1,
    device: str = "cpu",
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """HuBERT sidecars for every shard of `splits` under the local shard directory `root`.

    Args:
        checkpoint: folder of a `transformers` HuBERT checkpoint (local files only; see `edtalk.nn.hubert`).
        root: shard directory (index.json + tars).
        splits: which splits to process.
        layer: hidden state to store (-1: last).
        device: torch device to run HuBERT on.
        overwrite: redo shards that already have a sidecar (otherwise they are skipped: resumable).
        progress: called with one line per shard.

    Returns:
        The sidecars written (skipped ones are not listed).
    """
    import torch

    from datamodules.shards import fill_sidecars
    from edtalk.nn.hubert import FPS, HubertFeatures, load_hubert, wants_normalized_input

    model = load_hubert(checkpoint).to(torch.device(device))
    extractor = HubertFeatures(model, layer, wants_normalized_input(checkpoint, model))
    meta = {"checkpoint": str(checkpoint), "layer": layer, "fps": FPS, "dim": extractor.dim}

    def write(shard: str) -> tuple[Path, str]:
        path, n = hubert_shard(extractor, shard, meta)
        return path, f"{n} clips, {extractor.dim}-d"

    return fill_sidecars(
        root, splits, lambda s: feature_path(s, HUBERT), write, "extract-hubert", overwrite, progress
    )


def extract_text(
    checkpoint: str | Path,
    root: str | Path,
    transcripts: Mapping[str, str],
    splits: Sequence[str] = ("train", "test"),
    device: str = "cpu",
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Text sidecars (`<shard>.text.npz`, one vector per clip) from `transcripts` {clip id: text} and a local
    text encoder (`edtalk.nn.text_features`). Shards whose sidecar exists are skipped unless `overwrite`.

    Raises:
        ValueError: a clip of a processed shard has no transcript (names the first ones).
    """
    import torch

    from datamodules.shards import read_index
    from edtalk.nn.text_features import TextFeatures, load_text_encoder

    tokenizer, model = load_text_encoder(checkpoint)
    encode = TextFeatures(tokenizer, model.to(torch.device(device)))
    written = []
    for shard in read_index(root)["shards"]:
        path = Path(root) / shard["name"]
        if shard["split"] not in splits:
            continue
        if feature_path(path, TEXT).is_file() and not overwrite:
            if progress:
                progress(f"skip {feature_path(path, TEXT)} (exists; --overwrite to redo)")
            continue
        missing = [c for c in shard["clips"] if c not in transcripts]
        if missing:
            raise ValueError(f"no transcript for {len(missing)} clip(s) of {path}, e.g. {missing[:3]}")
        vectors = encode([transcripts[c] for c in shard["clips"]]).numpy()  # -> N x D
        meta = {"checkpoint": str(checkpoint), "dim": int(vectors.shape[1])}
        written.append(write_features(path, TEXT, dict(zip(shard["clips"], vectors)), meta))
        if progress:
            progress(f"wrote {written[-1]} ({len(vectors)} clips, {vectors.shape[1]}-d)")
    return written


__all__ = [
    "HUBERT",
    "TEXT",
    "FeatureCache",
    "FeatureSidecar",
    "extract_hubert",
    "extract_text",
    "feature_path",
    "write_features",
]
