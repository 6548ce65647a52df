"""`edtalk` command line: parse, compose config, dispatch. No logic lives here.

Each subcommand is a module exposing `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the parser default. Modules are imported lazily-by-name so that
`edtalk --help` stays fast and one broken optional extra does not break every command.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edtalk", description="EDTalk: train, evaluate and render talking heads."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # command not built yet / not installed
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as err:
        # Our errors name the bad input and the fix; a traceback adds nothing for a user.
        print(f"edtalk {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in OUTPUT_ERRNOS:
            raise
        print(f"edtalk {args.command}: error: {output_error(err)}", file=sys.stderr)
        return 2


# Where writing an output fails for a reason the user fixes (a file in the way, permissions, a full disk).
OUTPUT_ERRNOS = {
    errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
}  # fmt: skip


def output_error(err: OSError) -> str:
    """One line for a file-system error: what failed, on which path, and the fix."""
    where = f"{err.filename or 'an output file'}" + (f" -> {err.filename2}" if err.filename2 else "")
    if err.errno == errno.EEXIST:
        return f"cannot create folder {where}: a file of that name is in the way; choose another output path"
    if err.errno == errno.ENOTDIR:
        return f"cannot write {where}: a folder on that path is a file; choose another output path"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device while writing {where}; free space or choose another output path"
    return f"cannot write {where}: {err.strerror}; choose a writable output path"


if __name__ == "__main__":
    sys.exit(main())
