# Set-up and the two things people run first. Everything a fresh Debian/Ubuntu machine needs is
# installed from here: Debian packages, the Python environment, and the sample footage.
PYTHON ?= python3
VENV := .venv
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
SAMPLE_FILES := vtest.avi Megamind.avi Megamind_bugy.avi messi5.jpg building.jpg starry_night.jpg
# Tests read ../shared/samples when it is there (CI), else ./samples: Debian's opencv-doc footage and
# the face photographs in face_recognition 1.3.0's source distribution on PyPI (../shared/samples/README.md).
FACE_FILES := biden.jpg obama2.jpg obama3.jpg
TEST_SAMPLES := $(if $(wildcard ../shared/samples/vtest.avi),,samples/vtest.avi samples/biden.jpg)

.PHONY: setup system demo test bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

# Debian packages: espeak-ng makes the speech the lip-sync tests drive with; PostgreSQL is the
# real server the consent ledger's concurrency tests run against; chromium is the browser the web
# page tests drive (Playwright with executable_path, no browser download).
system:
	@dpkg -s espeak-ng postgresql chromium >/dev/null 2>&1 || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq espeak-ng postgresql chromium >/dev/null )

samples/vtest.avi:
	@command -v apt-get >/dev/null || { echo "needs Debian/Ubuntu apt-get to fetch opencv-doc"; exit 1; }
	$(SUDO) apt-get update -qq
	tmp=$$(mktemp -d) && cd $$tmp && apt-get download opencv-doc >/dev/null && dpkg -x opencv-doc_*.deb x && \
	  mkdir -p $(CURDIR)/samples && \
	  for f in $(SAMPLE_FILES); do cp x/usr/share/doc/opencv-doc/examples/data/$$f $(CURDIR)/samples/; done && \
	  rm -rf $$tmp

samples/biden.jpg: $(VENV)/.installed
	tmp=$$(mktemp -d) && \
	  $(VENV)/bin/pip download --quiet --no-deps --no-binary :all: --no-build-isolation face_recognition==1.3.0 -d $$tmp && \
	  tar xzf $$tmp/face_recognition-1.3.0.tar.gz -C $$tmp && mkdir -p $(CURDIR)/samples && \
	  for f in $(FACE_FILES); do cp $$tmp/face_recognition-1.3.0/tests/test_images/$$f $(CURDIR)/samples/; done && \
	  rm -rf $$tmp

demo: setup samples/vtest.avi
	$(VENV)/bin/vfx demo --samples samples --out out

test: setup system $(TEST_SAMPLES)
	.ci/test.sh

bench: setup
	$(VENV)/bin/python benchmarks/bench_pipeline.py
