# Spine Lab — two commands on a fresh machine: `make run` and `make test`.
# The install is idempotent: it re-runs only when requirements.txt or pyproject.toml change.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8501
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
export HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False
export STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

.PHONY: run test install browser-deps bench fuzz weights clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): $(PY) requirements.txt pyproject.toml
	@echo "installing requirements into $(VENV) (first time: ~2-3 min)"
	$(PIP) install -q -r requirements.txt
	# OpenCV clash (ENV-NOTES): ultralytics pulls opencv-python, which overwrites the headless cv2.
	-$(PIP) uninstall -q -y opencv-python
	$(PIP) install -q --force-reinstall --no-deps $$(grep '^opencv-python-headless==' requirements.txt)
	$(PIP) install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# MALLOC_ARENA_MAX=2: every session runs in its own thread and glibc gives threads their own heaps; 20 sessions held
# 2.6 GB with the default, 1.8 GB with 2 arenas (bench/load_app.py)
run: install
	MALLOC_ARENA_MAX=2 $(VENV)/bin/streamlit run app.py --server.headless true --server.port $(PORT) \
		--browser.gatherUsageStats false

# Best effort: Debian's chromium for the real-browser test (skipped with a reason when absent).
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian chromium for the browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "chromium could not be installed; the browser test will skip"; \
	fi

test: install browser-deps
	$(PY) -m pytest

bench: install
	$(PY) -m bench

# Seeded hostile inputs against the readers (issue 17): outcome counts per family; exit 1 on any traceback,
# multi-line or over-long message, name leak, invalid JSON or native stderr output. FUZZ_SEED picks another corpus.
FUZZ_N ?= 10000
FUZZ_SEED ?= 0
fuzz: install
	$(PY) -m bench.fuzz_io --n $(FUZZ_N) --seed $(FUZZ_SEED) --cli 50

clean-venv:
	rm -rf $(VENV)
