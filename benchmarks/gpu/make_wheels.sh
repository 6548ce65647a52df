#!/usr/bin/env bash
# Fetch the wheels the GPU machine lacks (benchmarks/gpu/wheels.txt) for CPython 3.12 manylinux x86_64
# into benchmarks/gpu/wheels/ (git-ignored; the device tool carries it). Run on any machine with pip and
# access to PyPI; nothing is installed here.
#
#   bash benchmarks/gpu/make_wheels.sh [--optional] [--python-version 3.12]
#
# --no-deps: wheels.txt names every missing dependency itself; the machine's own packages (torch!) are
# never fetched. Ends with the total size: the device tool carries at most 64 MiB with the source tree.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pyver=3.12
lists=("$here/wheels.txt")
while [ $# -gt 0 ]; do
  case "$1" in
    --optional) lists+=("$here/wheels-optional.txt") ;;
    --python-version) pyver=$2; shift ;;
    *) echo "unknown argument $1 (use --optional, --python-version X.Y)" >&2; exit 2 ;;
  esac
  shift
done
dest="$here/wheels"
mkdir -p "$dest"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
  manylinux2014_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
reqs=$(grep -hv '^\s*#' "${lists[@]}" | grep -v '^\s*$')
# shellcheck disable=SC2086
python3 -m pip download --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  "${platforms[@]}" -d "$dest" $reqs 2>&1 | grep -v "^WARNING: Location" || true
# every pinned requirement must have its wheel (names compared as PEP 503 normalises them)
missing=0
python3 - "$dest" $reqs <<'PY' || missing=1
import re, sys
from pathlib import Path
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
have = {(norm(w.name.split("-")[0]), w.name.split("-")[1]) for w in Path(sys.argv[1]).glob("*.whl")}
lost = [r for r in sys.argv[2:] if (norm(r.split("==")[0]), r.split("==")[1]) not in have]
print(*(f"MISSING: {r}" for r in lost), sep="\n", file=sys.stderr) if lost else None
sys.exit(1 if lost else 0)
PY
total=$(du -cb "$dest"/*.whl | tail -1 | cut -f1)
echo "wheels in $dest: $(ls "$dest"/*.whl | wc -l) files, $((total / 1024 / 1024)) MiB ($total bytes)"
[ "$total" -lt $((60 * 1024 * 1024)) ] || echo "warning: over 60 MiB; with the source tree the carry limit is 64 MiB" >&2
exit $missing
