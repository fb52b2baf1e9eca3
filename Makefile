# Two commands set everything up: `make demo` and `make test` (each creates .venv if missing).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: venv demo test clean

venv: $(VENV)/.installed

# Reinstalled when pyproject.toml changes. pip, not uv: pip finds the local torch wheels.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: venv
	$(PY) train.py hydra.run.dir=outputs/demo/train
	$(PY) eval.py checkpoint=outputs/demo/train/checkpoints/best.pt hydra.run.dir=outputs/demo/eval

test: venv
	$(PY) -m pytest -q

clean:
	rm -rf outputs multirun .pytest_cache
