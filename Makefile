# chassis - top-level commands. See README.md.
#
#   make demo    set up, build, boot the demo guest (the firmware diagnostic boot; kvm, or emu without /dev/kvm)
#   make test    set up, build, run every test and the format check (what .ci/run runs)
#   make setup   host packages, rustup target, Debian artifacts, test initramfs (scripts/setup.sh)
#   make build   host crates, guest firmware, stub-domain image, no_std check of the shared crates
#   make bench   PIO round trip (chassis kvm vs QEMU kvm/TCG), instruction throughput (chassis emu vs QEMU TCG); installs QEMU
#   make fuzz    run every cargo-fuzz target for FUZZ_SECONDS each (not part of make test)
#   make clean   cargo clean (keeps cache/; `make distclean` drops it too)
#
# Anything that runs a guest uses release builds (target/release/chassis).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
BARE := x86_64-unknown-none
DEMO_CFG ?= examples/diag.cfg
FUZZ_SECONDS ?= 60

.PHONY: all setup build build-firmware build-stubdom build-host build-nostd test demo bench fuzz clean distclean

all: build

setup:
	@scripts/setup.sh

# The firmware image first: the toolstack loads it from target/$(BARE)/firmware/.
build-firmware: setup
	$(CARGO) build --profile firmware -p chassis-firmware --target $(BARE)

# The stub-domain image: the toolstack loads it from target/$(BARE)/stubdom/.
build-stubdom: setup
	$(CARGO) build --profile stubdom -p chassis-stubdom --target $(BARE)

build-host: setup build-firmware build-stubdom
	$(CARGO) build --release

# chassis-devices and hypervisor-abi must stay no_std: build them for bare metal.
build-nostd: setup
	$(CARGO) build --release -p chassis-devices -p hypervisor-abi --target $(BARE)

build: build-firmware build-stubdom build-host build-nostd

test: build
	$(CARGO) test --release --no-fail-fast
	$(CARGO) test --release -p chassis-firmware --lib
	$(CARGO) test --release -p chassis-stubdom --lib
	$(CARGO) fmt --all -- --check
	@echo "make test: all passed"

demo: build
	@if [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then \
	  target/release/chassis create $(DEMO_CFG); \
	else \
	  echo "make demo: /dev/kvm is missing or not read-write for $$(id -un): running the demo on the software CPU (cpu_backend=emu)"; \
	  target/release/chassis create $(DEMO_CFG) cpu_backend=emu; \
	fi

# PIO round-trip cost (chassis kvm vs QEMU kvm/TCG) and guest instruction throughput
# (chassis emu vs QEMU TCG) in one run;
# figures and ratios, never a timed assertion. Installs qemu-system-x86 if missing
# (only here: make test does not need QEMU). See README.md, "Benchmarks".
bench: build
	@if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then \
	  echo "make bench: installing qemu-system-x86 (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	  $$SUDO apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null \
	    || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null; } \
	    || echo "make bench: could not install qemu-system-x86; the QEMU rows will be skipped" >&2; \
	fi
	"$${CARGO_TARGET_DIR:-target}/release/chassis-bench"

# Coverage-guided fuzzing with cargo-fuzz (libFuzzer). The fuzz packages are outside the
# workspace; cargo-fuzz needs nightly -Z flags, which RUSTC_BOOTSTRAP=1 allows on stable.
# Corpora and crash artifacts stay in <pkg>/fuzz/{corpus,artifacts} (git-ignored).
FUZZ_TARGETS := devices/fuzz:machine_io devices/fuzz:state_load toolstack/fuzz:xl_cfg \
	stubdom/fuzz:ioreq_server stubdom/fuzz:stub_config

fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	@for t in $(FUZZ_TARGETS); do \
	  dir=$${t%%:*}; name=$${t#*:}; \
	  echo "make fuzz: $$name ($$dir) for $(FUZZ_SECONDS) s"; \
	  mkdir -p $$dir/corpus/$$name; \
	  (cd $$dir && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$name -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1) || exit 1; \
	done
	@echo "make fuzz: no crashes"

clean:
	$(CARGO) clean

distclean: clean
	rm -rf cache
