# chassis - top-level commands. See README.md.
#
#   make demo    set up, build, boot the demo guest (today: the firmware diagnostic boot on kvm)
#   make test    set up, build, run every test and the format check (what .ci/run runs)
#   make setup   host packages, rustup target, Debian artifacts, test initramfs (scripts/setup.sh)
#   make build   host crates, guest firmware, no_std check of the shared crates
#   make bench   benchmarks (none yet: they arrive with issue [2])
#   make clean   cargo clean (keeps cache/; `make distclean` drops it too)
#
# Anything that runs a guest uses release builds (target/release/chassis).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
BARE := x86_64-unknown-none
DEMO_CFG ?= examples/diag.cfg

.PHONY: all setup build build-firmware build-host build-nostd test demo bench clean distclean

all: build

setup:
	@scripts/setup.sh

# The firmware image first: the toolstack loads it from target/$(BARE)/firmware/.
build-firmware: setup
	$(CARGO) build --profile firmware -p chassis-firmware --target $(BARE)

build-host: setup build-firmware
	$(CARGO) build --release

# chassis-devices and hypervisor-abi must stay no_std: build them for bare metal.
build-nostd: setup
	$(CARGO) build --release -p chassis-devices -p hypervisor-abi --target $(BARE)

build: build-firmware build-host build-nostd

test: build
	$(CARGO) test --release --no-fail-fast
	$(CARGO) test --release -p chassis-firmware --lib
	$(CARGO) fmt --all -- --check
	@echo "make test: all passed"

demo: build
	@if [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then \
	  echo "make demo: /dev/kvm is missing or not read-write for $$(id -un)." >&2; \
	  echo "  The demo (firmware diagnostic boot) runs on the kvm backend until issue [3]" >&2; \
	  echo "  brings the emu backend; it cannot run on this machine." >&2; \
	  exit 1; \
	fi
	target/release/chassis create $(DEMO_CFG)

bench:
	@echo "make bench: no benchmarks yet - they arrive with issue [2] (emu backend vs QEMU TCG)."

clean:
	$(CARGO) clean

distclean: clean
	rm -rf cache
