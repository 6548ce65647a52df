# edtalk developer entry points. README's two commands call these.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export WANDB_MODE ?= offline
export MPLBACKEND ?= Agg

.PHONY: setup system-deps demo test lint typecheck pytest bench seed-sweep clean

## setup: system packages + a virtualenv with the project, pinned by constraints.txt
setup: system-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[dev,ui,hubert]'
	# the optional face_alignment landmark backend: --no-deps, its opencv-python requirement clashes with
	# opencv-python-headless (cv2 is the same module); numba, scikit-image, scipy, tqdm come with the project
	$(PIP) install -q -c constraints.txt --no-deps face-alignment==1.4.1

## system-deps: espeak-ng (speech of the built-in dataset), chromium (the web page's browser test) and the
## ffmpeg CLI (the reference the audio / LSE parity tests compare with; they skip without it)
system-deps:
	@missing=""; command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	  command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	  command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	  if [ -n "$$missing" ]; then \
	    if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	        || echo "warning: could not install$$missing (built-in data falls back to synthetic vowels; browser test skips)"; \
	    else echo "note: install$$missing with your package manager"; fi; fi

## demo: the main job on the built-in data (see README)
demo:
	$(VENV)/bin/edtalk quickstart --out outputs/quickstart

## test: lint, types and the test suite (what CI runs)
test: lint typecheck pytest

lint:
	$(VENV)/bin/ruff check edtalk datamodules metrics benchmarks tests
	$(VENV)/bin/ruff format --check edtalk datamodules metrics benchmarks tests

typecheck:
	$(VENV)/bin/mypy

pytest:
	$(VENV)/bin/pytest -q -p no:cacheprovider; status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$status

## bench: speed benchmarks (ratios against baselines measured in the same run)
bench:
	$(PY) benchmarks/render.py --frames 12
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/loader.py
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/evaluate.py

## seed-sweep: the tests that train (pytest -m learns) over 10 seeds at 1 and 2 torch threads (not in `test`)
seed-sweep:
	nice $(PY) tests/seed_sweep.py --plan $${PLAN:-1x10,2x10}

clean:
	rm -rf outputs runs .cache .mypy_cache .ruff_cache
