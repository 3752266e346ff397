# Two commands for a newcomer: `make demo` (set up + run the study on the
# synthetic corpus) and `make test`.  `make setup` is idempotent.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := ffmpeg espeak-ng sox libsndfile1

.PHONY: setup system-packages test test-fast lint demo clean-demo

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# TEST_JOBS pytest-xdist workers (most tests run one single-threaded subprocess at a time);
# --durations: the slowest tests, so that CI's log shows where its time goes.
TEST_JOBS ?= 2
PYTEST = $(PY) -m pytest -q -n $(TEST_JOBS) --dist worksteal
test: setup
	$(PYTEST) --durations=20 tests

test-fast: setup
	$(PYTEST) -m "not slow" tests

lint: setup
	$(VENV)/bin/ruff check .

# The study end to end at CPU scale on the synthetic corpus (lowres/study/demo.py; settings in
# hparams/overrides/cpu_demo.yaml). Rerunning reuses what is done.
demo: setup
	$(PY) -m lowres.demo

# Remove what `make demo` made (corpus, random and pre-trained wav2vec2, runs, results): the next demo
# starts from scratch.
clean-demo:
	rm -rf data/synthetic_demo data/wav2vec2_random_tiny runs/demo runs/pretrain/demo results/demo
