"""Print the wheel files in a folder whose distribution this Python does not have (one path a line).

Used by run.sh so the GPU machine keeps every package it already has (its torch above all) and gets
only what is missing. A wheel's distribution name is the part of its file name before the version.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path


def dist_name(wheel: Path) -> str:
    return re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()


def installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def main(folder: str) -> int:
    wheels = sorted(Path(folder).glob("*.whl"))
    if not wheels:
        print(f"no wheels in {folder}: nothing to install", file=sys.stderr)
    for wheel in wheels:
        if installed(dist_name(wheel)):
            print(f"kept the installed {dist_name(wheel)} (skipped {wheel.name})", file=sys.stderr)
        else:
            print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
