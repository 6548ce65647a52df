"""The rows of README's "What happens when" table that the generated suite covers, and what each cell says.

tests/faults/test_readme_table.py checks README against this (and every README row against a test that
covers it); the suite's tests assert the phrases below on the real error lines.
"""

from __future__ import annotations

COLUMNS = ("preprocess", "fit", "evaluate", "generate", "lse")

USAGE = "usage error"
EXPECTED = "expected"  # every range error says what is accepted: "VALUE: expected an integer >= 1"
FILE_NOT_FOUND = "file not found"
FOLDER_NOT_FOUND = "folder not found"
CANNOT_WRITE = "choose another output path"

# row label -> the phrase each column's cell must hold (None: the cell is free text, e.g. n.a.)
ROWS: dict[str, dict[str, str | None]] = {
    "unknown or mistyped config key / value": {
        "preprocess": USAGE, "fit": "error naming the key, the value and what is expected, before any run folder",
        "evaluate": USAGE, "generate": USAGE, "lse": USAGE,
    },
    "config value out of range: negative steps, batch 0, lr <= 0, betas >= 1, size not a power of two, unknown enum value": {
        "preprocess": "n.a.", "fit": "`KEY=VALUE: expected WHAT` before any run folder exists",
        "evaluate": "n.a.", "generate": "n.a.", "lse": "n.a.",
    },
    "flag value of the wrong type, out of range or not a choice": {
        c: f"{USAGE} `argument FLAG:" for c in COLUMNS
    },
    "input path missing, or a folder where a file is expected (and the reverse)": {
        "preprocess": FOLDER_NOT_FOUND, "fit": "error naming the experiment", "evaluate": FILE_NOT_FOUND,
        "generate": FILE_NOT_FOUND, "lse": FILE_NOT_FOUND,
    },
    "output path not writable (a file on the way, a folder given for a file, /proc)": {
        "preprocess": CANNOT_WRITE, "fit": "run.root", "evaluate": CANNOT_WRITE, "generate": CANNOT_WRITE,
        "lse": "n.a.",
    },
    "a library refuses a user's value at run time (Lightning configuration, FFmpeg open, OS error on a path)": {
        "preprocess": "naming the path", "fit": "naming the key or path", "evaluate": "naming the path",
        "generate": "naming the path", "lse": "naming the path",
    },
}  # fmt: skip

# README rows that the older tests own (tests/faults/test_media.py, test_training.py and the named files)
OTHER_ROWS = (
    "truncated mp4",
    "zero-byte file",
    "image instead of video",
    "no face",
    "two faces",
    "30 / 50 fps, variable frame rate",
    "silent audio",
    "audio shorter than the video",
    "no audio stream",
    "8 kHz / 48 kHz audio",
    "wrong checkpoint kind",
    "checkpoint truncated / empty on disk",
    "shard truncated mid-member",
    "NaN or Inf loss",
    "disk full while writing a shard",
)
