"""Per-clip results on disk: written atomically as each clip finishes, read back to resume and to merge.

Layout under an evaluation's --out folder:
    clips/<settings key>/<method>/<clip id>.npz    row (JSON) + the clip's contribution (arrays)
    clips/<settings key>/<method>/<clip id>.failed.json    why a result video could not be scored
    shards/<I>of<N>.json    a shard's clips (with their places in the split) and settings
The settings key hashes the protocol, its options and the judge files (sha256), so a rerun with other
judges or options does not reuse old numbers. A stored clip whose video changed (size, mtime) is
scored again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np


def sha256_file(path: str | Path, _cache: dict[tuple[str, int, int], str] = {}) -> str:  # noqa: B006
    """sha256 of a file (memoised per path, size and mtime within the process)."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _cache:
        h = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
        _cache[key] = h.hexdigest()
    return _cache[key]


def settings_key(settings: dict[str, Any]) -> str:
    """A short stable hash of the settings that change numbers."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _flatten(part: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if isinstance(part, dict):
        for k, v in part.items():
            _flatten(v, f"{prefix}{k}/", out)
    elif part is not None:
        out[prefix.rstrip("/")] = np.asarray(part)


def _unflatten(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in arrays.items():
        *path, leaf = key.split("/")
        node = out
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _video_stamp(video: Path) -> list[int]:
    st = video.stat()
    return [st.st_size, st.st_mtime_ns]


class ClipStore:
    """The per-clip results of one method under one settings key."""

    def __init__(self, root: Path, key: str, method: str) -> None:
        self.folder = Path(root) / "clips" / key / method

    def _path(self, clip_id: str, suffix: str) -> Path:
        return self.folder / (quote(clip_id, safe="#-_.") + suffix)

    def save(self, clip_id: str, video: Path, row: dict[str, Any], part: Any) -> None:
        """Store a scored clip (atomic); clears an earlier failure record."""
        arrays: dict[str, np.ndarray] = {}
        _flatten(part, "part/", arrays)
        meta = {"row": row, "video": str(video), "stamp": _video_stamp(video)}
        buf = io.BytesIO()
        arrays["__meta__"] = np.array(json.dumps(meta))
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        atomic_write(self._path(clip_id, ".npz"), buf.getvalue())
        self._path(clip_id, ".failed.json").unlink(missing_ok=True)

    def load(self, clip_id: str, video: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(row, part) of a stored clip; None when absent or its video changed since."""
        path = self._path(clip_id, ".npz")
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            arrays = {k: data[k] for k in data.files if k != "__meta__"}
        if video is not None and meta["stamp"] != _video_stamp(video):
            return None
        return meta["row"], _unflatten(arrays).get("part", {})

    def fail(self, clip_id: str, video: Path, reason: str) -> None:
        """Record why a result video could not be scored (retried on the next run)."""
        data = {"clip_id": clip_id, "video": str(video), "error": reason}
        atomic_write(self._path(clip_id, ".failed.json"), json.dumps(data).encode())

    def failures(self, clip_ids: Iterable[str]) -> dict[str, str]:
        out = {}
        for clip_id in clip_ids:
            path = self._path(clip_id, ".failed.json")
            if path.is_file():
                out[clip_id] = json.loads(path.read_text())["error"]
        return out


def parse_shard(text: str | None) -> tuple[int, int]:
    """`I/N` -> (I, N), 0 <= I < N (I counts from 0, as SLURM_ARRAY_TASK_ID); None -> (0, 1)."""
    if text is None:
        return 0, 1
    i, sep, n = text.partition("/")
    if not sep or not i.isdigit() or not n.isdigit() or int(n) < 1 or int(i) >= int(n):
        raise ValueError(f"--shard takes I/N with 0 <= I < N (e.g. 0/4 ... 3/4), got {text!r}")
    return int(i), int(n)


def shard_file(root: Path, shard: tuple[int, int]) -> Path:
    return Path(root) / "shards" / f"{shard[0]}of{shard[1]}.json"


def write_shard(root: Path, shard: tuple[int, int], record: dict[str, Any]) -> Path:
    path = shard_file(root, shard)
    atomic_write(path, json.dumps(record, indent=1).encode())
    return path


def read_shards(folders: Iterable[Path]) -> list[dict[str, Any]]:
    """Every shard record under the given evaluation folders (each folder: its shards/*.json)."""
    records = []
    for folder in folders:
        files = sorted((Path(folder) / "shards").glob("*of*.json"))
        if not files:
            raise FileNotFoundError(
                f"{folder} holds no shard results (shards/*.json); run `edtalk evaluate --shard I/N --out {folder}` first"
            )
        records += [json.loads(f.read_text()) | {"folder": str(folder)} for f in files]
    return records
