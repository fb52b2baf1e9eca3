# Two commands set everything up: `make demo` and `make test` (each creates .venv if missing).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: venv demo test clean

venv: $(VENV)/.installed

# Reinstalled when pyproject.toml changes. pip, not uv: pip finds the local torch wheels.
# The grep drops pip's warnings about absent local wheel folders; pipefail keeps pip's status.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	touch $@

demo: venv
	$(PY) train.py hydra.run.dir=outputs/demo/train
	$(PY) eval.py checkpoint=outputs/demo/train/checkpoints/best.pt hydra.run.dir=outputs/demo/eval

# Two pytest processes: most tests start Python and torch in a subprocess (single-threaded
# imports), so two of them fill a 2-core machine; 11 min in one process, 8 in two (AVX2 CPU).
TEST_WORKERS ?= 2

test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS)

clean:
	rm -rf outputs multirun .pytest_cache
