# Two commands do everything on a fresh machine:
#   make demo   set up, then prepare data/jokes.csv, train the packaged config char and print samples
#   make test   set up, then run the test suite and ruff
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The torch build: empty picks it (tools/torch_pip_args.py): torch==2.13.0+cpu from PyTorch's CPU index on Linux
# without an NVIDIA GPU, PyPI's CUDA build where nvidia-smi lists one, PyPI's (CPU) build on macOS and Windows.
# Another build: make install TORCH=torch==2.13.0+cu126 (its index follows from +cu126), or add TORCH_INDEX=URL
# (TORCH_INDEX=none: only the indexes pip is configured with).
TORCH       ?=
TORCH_INDEX ?= auto

.PHONY: install test demo lint bench clean

$(BIN)/lstmgen: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: on Linux an unpinned (or plain ==) torch from PyPI is the multi-GB CUDA build
	@args=$$($(BIN)/python tools/torch_pip_args.py --torch '$(TORCH)' --index '$(TORCH_INDEX)') && \
	  $(BIN)/pip install --quiet $$args || { echo "make install: torch did not install; pick a build with" \
	  "TORCH=... and TORCH_INDEX=... as the README's Set-up says" >&2; exit 1; }
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# Bytecode on every install: with PYTHONDONTWRITEBYTECODE set, an editable install would otherwise
# recompile on every start (lstmgen --help: 0.38 s instead of 0.25 s). Unchanged files are skipped.
install: $(BIN)/lstmgen
	@$(BIN)/python -m compileall -q lstmgen

test: install
	$(BIN)/python -m pytest
	$(BIN)/ruff check .

lint: install
	$(BIN)/ruff check .

demo: install
	$(BIN)/lstmgen prepare data/jokes.csv --overwrite
	$(BIN)/lstmgen train --config char --overwrite
	$(BIN)/lstmgen sample "Hey, " --temperature 0.8 --num-samples 5 --seed 1
	$(BIN)/lstmgen eval

# Every benchmark, one after another (about an hour on 2 cores; run nothing else meanwhile: the figures are
# ratios within each benchmark's run, but a busy machine skews them). Results: BENCHMARKS.md.
bench: install
	$(BIN)/python benchmarks/train_overhead.py --rounds 3 --seconds 20
	$(BIN)/python benchmarks/vs_tutorial.py
	$(BIN)/python benchmarks/word_step.py
	$(BIN)/python benchmarks/word_configs.py
	$(BIN)/python benchmarks/sampling.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/shakespeare_quality.py --minutes 3 10
	$(BIN)/python benchmarks/char_word_bpe.py
	$(BIN)/python benchmarks/ddp_scaling.py --rounds 2 --seconds 40
	$(BIN)/python benchmarks/large_corpus.py --mb 1000 --steps 200

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
