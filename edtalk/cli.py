"""`edtalk` command line: parse, compose config, dispatch. No logic lives here.

Each subcommand is a module exposing `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the parser default. Modules are imported lazily-by-name so that
`edtalk --help` stays fast and one broken optional extra does not break every command.

This module is also the one boundary between a user's mistake and a traceback: a usage error, an argument
outside what `ARGUMENTS` below accepts, or an error a library raises at run time for a user's value
(our ValueError/FileNotFoundError, Lightning's configuration errors, PyAV/FFmpeg open errors, OS errors on
a path) ends with exit status 2 and one line `edtalk CMD: error: ...` naming the flag, key or path.
`EDTALK_TRACEBACK=1` re-raises instead, for developers. Anything else is a bug: a traceback, exit 1.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import math
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

# Subcommand modules, in help order.
COMMANDS = (
    "edtalk.commands.parity",
    "edtalk.commands.weights",
    "edtalk.commands.preprocess",
    "edtalk.commands.data",
    "edtalk.commands.fit",
    "edtalk.commands.finetune",
    "edtalk.commands.extract",
    "edtalk.commands.hubert",
    "edtalk.commands.sweep",
    "edtalk.commands.evaluate",
    "edtalk.commands.generate",
    "edtalk.commands.stream",
    "edtalk.commands.quickstart",
    "edtalk.commands.run",
    "edtalk.commands.ui",
)


class Parser(argparse.ArgumentParser):
    """argparse with a two-line usage error: the error naming the argument, then where the usage is."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n(see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="edtalk", description="EDTalk: train, evaluate and render talking heads.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # command not built yet / not installed
                continue
            raise
        module.register(subparsers)
    check_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or a usage error (2): returned like every other outcome
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        line = user_error(err)
        if line is None or os.environ.get("EDTALK_TRACEBACK", "") not in ("", "0"):
            raise
        print(f"edtalk {args.command}: error: {line}", file=sys.stderr)
        return 2


def user_error(err: BaseException) -> str | None:
    """The one line for an error a user fixes (their value, their path), or None for a bug of ours."""
    if isinstance(err, OSError) and err.errno is not None and (err.filename or err.errno in OUTPUT_ERRNOS):
        return path_error(err)  # PyAV's errors are OSErrors too: av.FileNotFoundError, av.InvalidDataError
    if isinstance(err, FileNotFoundError | ValueError):
        return _one_line(err)  # ours name the bad input and the fix
    if _is_misconfiguration(err):
        return f"{_one_line(err)} (a trainer.* key of the config; see `edtalk fit EXPERIMENT --print-config`)"
    return None


def _is_misconfiguration(err: BaseException) -> bool:
    """Lightning's MisconfigurationException (imported only when something raised it)."""
    return any(cls.__name__ == "MisconfigurationException" for cls in type(err).__mro__)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


# -- what each argument accepts, checked while parsing (before a command does any work) ----------------------
# A check takes the text given and returns it (or raises argparse.ArgumentTypeError: argparse prints it as
# "argument --flag: ..."). Every int/float/path argument of every subcommand is listed here, as a check or as
# FREE with the reason (tests/faults/test_cli_args.py walks the parsers and fails on one that is in neither).
Check = Callable[[str], str]


class AtLeast:
    """An integer >= `low`."""

    def __init__(self, low: int) -> None:
        self.low = low
        self.__name__ = f"an integer >= {low}"

    def __call__(self, text: str) -> str:
        if int(text) < self.low:
            raise argparse.ArgumentTypeError(f"{text}: expected an integer >= {self.low}")
        return text


class Between:
    """An integer in [low, high]."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.__name__ = f"an integer from {low} to {high}"

    def __call__(self, text: str) -> str:
        if not self.low <= int(text) <= self.high:
            raise argparse.ArgumentTypeError(f"{text}: expected an integer from {self.low} to {self.high}")
        return text


class Above:
    """A finite number > `low` (>= with `inclusive`)."""

    def __init__(self, low: float, inclusive: bool = False) -> None:
        self.low, self.inclusive = low, inclusive
        self.__name__ = f"a number {'>=' if inclusive else '>'} {low}"

    def __call__(self, text: str) -> str:
        value = float(text)
        ok = math.isfinite(value) and (value >= self.low if self.inclusive else value > self.low)
        if not ok:
            raise argparse.ArgumentTypeError(
                f"{text}: expected a finite number {'>=' if self.inclusive else '>'} {self.low}"
            )
        return text


def input_file(text: str) -> str:
    """An existing, readable file (not a folder)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; expected a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file not found: {text}")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text} is not readable (permissions)")
    return text


def input_folder(text: str) -> str:
    """An existing folder."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"folder not found: {text}")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a folder")
    return text


def input_path(text: str) -> str:
    """An existing file or folder."""
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"not found: {text}")
    return text


def _writable_parent(path: Path, text: str) -> None:
    """The nearest existing parent of `path` is a writable folder (the command creates the rest)."""
    parent = next(p for p in path.absolute().parents if p.exists())
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot write {text}: {parent} is a file, not a folder; choose another output path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"cannot write {text}: {parent} is not writable; choose another output path"
        )


def output_file(text: str) -> str:
    """A file path that can be written: not a folder, its folder writable (probed when it exists)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; expected a file path")
    _writable_parent(path, text)
    if path.exists() or not path.parent.is_dir():
        return text
    try:  # a real probe: some folders (/proc, /sys, read-only mounts) pass the permission test
        path.open("xb").close()
    except OSError as err:
        raise argparse.ArgumentTypeError(
            f"cannot write {text}: {err.strerror}; choose another output path"
        ) from None
    path.unlink()
    return text


def output_folder(text: str) -> str:
    """A folder that exists or can be created (no file in the way)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a folder")
    _writable_parent(path, text)
    first = next((p for p in [*reversed(path.absolute().parents), path.absolute()] if not p.exists()), None)
    if first is None:
        return text
    try:  # a real probe, as for files: create the first missing folder and remove it again
        first.mkdir()
    except OSError as err:
        raise argparse.ArgumentTypeError(
            f"cannot write {text}: {err.strerror}; choose another output path"
        ) from None
    first.rmdir()
    return text


# (command path, dest) -> check; FREE: (command path, dest) -> why nothing is checked here
ARGUMENTS: dict[tuple[str, str], Check] = {
    ("check-parity", "directory"): input_folder,
    ("check-parity", "tolerance"): Above(0.0),
    ("preprocess", "input"): input_folder,
    ("preprocess", "out"): output_folder,
    ("preprocess", "workers"): AtLeast(1),
    ("preprocess", "shard_clips"): AtLeast(1),
    ("preprocess", "min_frames"): AtLeast(1),
    ("preprocess", "jpeg_quality"): Between(1, 100),
    ("data pairing", "shards"): input_folder,
    ("data pairing", "world_size"): AtLeast(1),
    ("data pairing", "workers"): AtLeast(0),
    ("data neutral-bank", "out"): output_file,
    ("extract-coefficients", "checkpoint"): input_file,
    ("extract-coefficients", "shards"): input_folder,
    ("extract-coefficients", "batch_size"): AtLeast(1),
    ("emotion-vectors", "shards"): input_folder,
    ("emotion-vectors", "levels"): AtLeast(1),
    ("emotion-vectors", "out"): output_folder,
    ("extract-hubert", "shards"): input_folder,
    ("extract-text", "checkpoint"): input_path,
    ("extract-text", "transcripts"): input_path,
    ("extract-text", "shards"): input_folder,
    ("sweep", "file"): input_file,
    ("sweep", "count"): AtLeast(1),
    ("sweep", "out"): output_folder,
    ("evaluate", "checkpoint"): input_file,
    ("evaluate", "audio2lip"): input_file,
    ("evaluate", "clips"): input_file,
    ("evaluate", "gt"): input_folder,
    ("evaluate", "out"): output_folder,
    ("evaluate", "fid_frames"): AtLeast(0),
    ("evaluate", "max_clips"): AtLeast(1),
    ("evaluate", "emotion_judge"): input_file,
    ("evaluate", "workers"): AtLeast(1),
    ("evaluate-merge", "folders"): input_folder,
    ("evaluate-merge", "out"): output_folder,
    ("lse", "video"): input_file,
    ("lse", "audio"): input_file,
    ("lse", "weights"): input_file,
    ("lse", "min_track"): AtLeast(0),
    ("lse", "vshift"): AtLeast(0),
    ("generate", "source"): input_file,
    ("generate", "audio"): input_file,
    ("generate", "lip"): input_file,
    ("generate", "pose"): input_file,
    ("generate", "exp"): input_file,
    ("generate", "out"): output_file,
    ("generate", "write_samples"): output_folder,
    ("generate", "checkpoint"): input_file,
    ("generate", "audio2lip"): input_file,
    ("generate", "audio2pose"): input_file,
    ("generate", "audio2exp"): input_file,
    ("generate", "pose_temperature"): Above(0.0, inclusive=True),
    ("generate", "emotion_strength"): Above(0.0, inclusive=True),
    ("generate", "chunk_size"): AtLeast(1),
    ("generate", "threads"): AtLeast(1),
    ("stream", "source"): input_file,
    ("stream", "out"): output_file,
    ("stream", "checkpoint"): input_file,
    ("stream", "audio2lip"): input_file,
    ("stream", "lookahead"): AtLeast(0),
    ("stream", "max_lag"): Above(0.0),
    ("stream", "chunk_size"): AtLeast(1),
    ("stream", "threads"): AtLeast(1),
    ("finetune", "video"): input_file,
    ("finetune", "checkpoint"): input_file,
    ("finetune", "out"): output_folder,
    ("finetune", "workers"): AtLeast(1),
    ("quickstart", "out"): output_folder,
    ("quickstart", "steps"): AtLeast(1),
    ("quickstart", "audio_steps"): AtLeast(1),
    ("quickstart", "eval_clips"): AtLeast(1),
    ("quickstart", "threads"): AtLeast(1),
    ("quickstart", "weights"): input_folder,
    ("run", "plan"): input_file,
    ("run", "out"): output_folder,
    ("ui", "port"): Between(0, 65535),
    ("ui", "checkpoint"): input_file,
    ("ui", "audio2lip"): input_file,
    ("ui", "audio2pose"): input_file,
    ("ui", "audio2exp"): input_file,
    ("ui", "gfpgan"): input_file,
    ("ui", "out_dir"): output_folder,
}
FREE: dict[tuple[str, str], str] = {
    ("generate", "face_sr"): "the command names the missing file and where to get it",
    ("generate", "seed"): "any integer",
    ("generate", "emotion"): "a name, a mix or a .npy file: the command checks each form",
    ("weights inspect", "path"): "the command names the missing file and where to get it",
    ("lse", "s3fd"): "the command names the S3FD file it looks for",
    ("preprocess", "backend_weights"): "the backend names the S3FD / FAN files it looks for there",
    ("extract-hubert", "checkpoint"): "the command says which HuBERT checkpoint it needs and where to get it",
    ("weights status", "dir"): "a missing folder is reported as missing files",
    ("extract-hubert", "layer"): "any hidden-state index (negative counts from the last)",
    ("sweep", "seed"): "any integer",
    ("evaluate", "weights_dir"): "a missing folder skips the metrics whose judges it lacks",
    ("evaluate", "shard"): "I/N, checked by the command (metrics.store.parse_shard)",
    ("data pairing", "seed"): "any integer",
    ("data neutral-bank", "shards"): "a shard folder or a webdataset URL (shard_urls names what is missing)",
    ("quickstart", "seed"): "any integer",
    ("run", "seed"): "any integer",
}


def walk(parser: argparse.ArgumentParser, path: str = "") -> typing.Iterator[tuple[str, argparse.Action]]:
    """(command path, action) for every argument of every (nested) subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():  # an alias maps to the same parser: walk it once
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from walk(sub, f"{path} {name}".strip())
        elif path:
            yield path, action


def check_arguments(parser: argparse.ArgumentParser) -> None:
    """Chain each `ARGUMENTS` check after the argument's own type (the value keeps that type)."""
    for path, action in walk(parser):
        check = ARGUMENTS.get((path, action.dest))
        if check is not None:
            action.type = _chained(check, action.type)


def _chained(check: Check, convert: typing.Any) -> Callable[[str], typing.Any]:
    def checked(text: str) -> typing.Any:
        value = convert(text) if convert is not None else text  # a wrong type fails here, as before
        check(text)
        return value

    checked.__name__ = getattr(convert, "__name__", "str")
    return checked


# Where writing an output fails for a reason the user fixes (a file in the way, permissions, a full disk).
OUTPUT_ERRNOS = {
    errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
}  # fmt: skip


def path_error(err: OSError) -> str:
    """One line for a file-system error: what failed, on which path, and the fix."""
    where = f"{err.filename or 'an output file'}" + (f" -> {err.filename2}" if err.filename2 else "")
    if err.errno == errno.EEXIST:
        return f"cannot create folder {where}: a file of that name is in the way; choose another output path"
    if err.errno == errno.ENOTDIR:
        return f"cannot write {where}: a folder on that path is a file; choose another output path"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device while writing {where}; free space or choose another output path"
    if err.errno in OUTPUT_ERRNOS:
        return f"cannot write {where}: {err.strerror}; choose a writable output path"
    return f"{where}: {err.strerror or _one_line(err)}; check the path"


output_error = path_error  # the name tests and callers used before the boundary covered every path


if __name__ == "__main__":
    sys.exit(main())
