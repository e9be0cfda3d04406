# Two commands for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clipdense-installed
ARCH := $(shell uname -m)
OS := $(shell uname -s)

.PHONY: install demo test test-all test-browser clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(OS)-$(ARCH),Linux-x86_64)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
endif
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/clipdense demo

# The fast tier (pyproject's addopts deselect `slow`): at most 3 minutes of pytest on two idle cores.
test: install
	$(PY) -m pytest -q

# Everything, slow tier included, with the 25 slowest steps listed; what CI (.ci/run) runs.
# A later -m replaces addopts' `-m "not slow"`.
ALL := -m "slow or not slow"
test-all: install
	$(PY) -m pytest -q $(ALL) --durations=25

# The local page in headless Chromium (Debian's chromium + chromium-driver, installed here when missing);
# its screenshot is written to docs/web-page.png.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-browser: install
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; }
	CLIPDENSE_SCREENSHOT=docs/web-page.png $(PY) -m pytest -q $(ALL) tests/test_web_browser.py

clean:
	rm -rf $(VENV) runs
