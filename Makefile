# flipstream — the two commands people run:
#   make demo   synthetic web pairs → ingest → stats report → train → eval, end to end
#   make test   the whole test suite
# Both install what they need the first time (libtorch via pip into ~/.cache/flipstream, the
# Python test tools likewise). See README.md.

SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
DEMO_OUT ?= demo-out
WITH_TORCH := source scripts/libtorch-env.sh &&
WITH_TOOLS := source scripts/pytools-env.sh &&
WITH_MODELS := source scripts/modeltools-env.sh &&
# system packages the build needs (cmake + nasm for libjpeg-turbo); installs them once as root
SETUP := scripts/setup-system.sh &&

.PHONY: help demo test build data-tools lint fmt clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

demo:  ## run the main job end to end on generated data (writes $(DEMO_OUT)/)
	@$(SETUP) $(WITH_TORCH) $(CARGO) build --release --bin flipstream
	@scripts/demo.sh target/release/flipstream $(DEMO_OUT)

test:  ## build everything and run all tests (Rust, CLI end-to-end, Python interop)
	@$(SETUP) $(WITH_TORCH) $(WITH_TOOLS) $(WITH_MODELS) scripts/test.sh

build:  ## release build with training (links libtorch)
	@$(SETUP) $(WITH_TORCH) $(CARGO) build --release --bin flipstream

data-tools:  ## release build of the data tools only, without libtorch
	@$(SETUP) $(CARGO) build --release --bin flipstream --no-default-features

lint:  ## clippy on every crate and on the data-only CLI (no libtorch), warnings are errors
	@$(SETUP) $(WITH_TORCH) $(CARGO) clippy --workspace --all-targets -- -D warnings
	@$(SETUP) $(CARGO) clippy --bin flipstream --no-default-features -- -D warnings

fmt:  ## format the code
	$(CARGO) fmt --all

clean:  ## remove build outputs and demo output (keeps the cached libtorch and tools)
	$(CARGO) clean
	rm -rf $(DEMO_OUT)
