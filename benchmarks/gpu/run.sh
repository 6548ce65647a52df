#!/usr/bin/env bash
# The GPU check in one call: install the carried wheels that the machine lacks (never its torch), then
# run the gpu-marked tests and the training / inference / evaluation benchmarks under one time budget.
#
#   bash benchmarks/gpu/run.sh                 # on the GPU machine (wheels in benchmarks/gpu/wheels)
#   bash benchmarks/gpu/run.sh --dry-run       # on a CPU: tiny sizes, no CUDA, no installs (CI)
#   bash benchmarks/gpu/run.sh --budget 300 --sections train,inference
#
# Writes $OUT/result.json + result.md (OUT unset: benchmarks/gpu/out/). Python: $PYTHON, else the
# project's .venv for a dry run when there is one, else python3. See benchmarks/gpu/README.md.
set -u
start=$(date +%s)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 2

dry=0
for arg in "$@"; do [ "$arg" = "--dry-run" ] && dry=1; done
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ $dry = 1 ] && [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
out=${OUT:-$root/benchmarks/gpu/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline MPLBACKEND=Agg
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/edtalk-numba}
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
log="$out/install.log"
: >"$log"

if [ $dry = 0 ]; then
  site=${EDTALK_GPU_SITE:-/tmp/edtalk-site}
  wheels="$here/wheels"
  echo "[gpu-bench] installing missing wheels from $wheels into $site"
  # Only the distributions this Python lacks; --no-deps --no-index: nothing else is fetched or replaced.
  mapfile -t todo < <("$py" "$here/missing_wheels.py" "$wheels" 2>>"$log")
  if [ ${#todo[@]} -gt 0 ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "${todo[@]}" >>"$log" 2>&1 \
      || echo "[gpu-bench] pip install failed: see $log (continuing; sections that need a package will say so)"
  fi
  export PYTHONPATH="$root:$site${PYTHONPATH#"$root"}"
  echo "installed: ${todo[*]:-none}" >>"$log"
  "$py" -c "import torch; print('[gpu-bench] torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "[gpu-bench] setup took $(($(date +%s) - start)) s"
fi

exec "$py" "$here/bench.py" "$@" --started-at "$start" --install-log "$log" --out "$out"
