"""`edtalk` command line: parse, compose config, dispatch. No logic lives here.

Each subcommand is a module exposing `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the parser default. Modules are imported lazily-by-name so that
`edtalk --help` stays fast and one broken optional extra does not break every command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand modules, in help order.
COMMANDS = (
    "edtalk.commands.parity",
    "edtalk.commands.weights",
    "edtalk.commands.preprocess",
    "edtalk.commands.fit",
    "edtalk.commands.extract",
    "edtalk.commands.sweep",
    "edtalk.commands.evaluate",
    "edtalk.commands.generate",
    "edtalk.commands.quickstart",
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


if __name__ == "__main__":
    sys.exit(main())
