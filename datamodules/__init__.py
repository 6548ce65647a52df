"""Data for edtalk: preprocessing, webdataset shards, splits, DataModules and the built-in dataset.

Heavy modules load on first use (`datamodules.PairDataModule` imports Lightning then).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ShardDataModule": "datamodules.modules",
    "PairDataModule": "datamodules.modules",
    "CrossPairDataModule": "datamodules.modules",
    "EmotionDataModule": "datamodules.modules",
    "AudioDataModule": "datamodules.modules",
    "FramesDataModule": "datamodules.frames",
    "ensure_builtin": "datamodules.synthetic",
    "ShardWriter": "datamodules.shards",
    "ClipRecord": "datamodules.shards",
    "Clip": "datamodules.shards",
    "shard_urls": "datamodules.shards",
    "load_splits": "datamodules.splits",
    "swap_mouth": "datamodules.mouth_swap",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
