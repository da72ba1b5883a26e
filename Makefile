# The two commands a new user needs: `make run` and `make test`.
JOBS ?= $(shell nproc)
BUILD ?= build
SHARED ?= $(abspath ../shared)
CMAKE_FLAGS ?=

.PHONY: run test test-arm64 deps build build-asan build-tsan fuzz fuzz-long bench install clean abi-check

deps:
	@./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DEDGELM_SHARED_DIR=$(SHARED) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# The main job: the device benchmark and recommendation (see README).
run: build
	./$(BUILD)/edgelm bench

# Every test: the release build, then the whole suite again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then the threading tests
# under ThreadSanitizer.
test: build
	./scripts/run-tests.sh $(BUILD) $(SHARED) $(JOBS)

# The aarch64 cross build (NEON kernels) under qemu-user: kernel tests on a
# CPU with and one without the dot-product instructions, and the stories260K
# reference test. Installs the cross toolchain and qemu when missing; see
# scripts/test-arm64.sh.
ARM64_BUILD ?= build-arm64
test-arm64:
	./scripts/test-arm64.sh $(ARM64_BUILD) $(SHARED) $(JOBS)

fuzz: deps
	./scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

# Compares build/libedgelm.so with the ABI baseline abi/libedgelm.abi
# (abigail-tools); make test runs it too. See README, "ABI".
abi-check: build
	./scripts/abi-check.sh $(BUILD)

# A long campaign: every target (or FUZZ_TARGETS) under nice for FUZZ_RUNS
# executions (default 10 million) or FUZZ_SECONDS (default: no limit); the
# corpora stay in build-fuzz/corpus/NAME, the figures go to
# build-fuzz/campaign.log. See docs/fuzzing.md.
fuzz-long: deps
	FUZZ_RUNS=$(or $(FUZZ_RUNS),10000000) FUZZ_SECONDS=$(or $(FUZZ_SECONDS),0) \
	  FUZZ_TARGETS="$(FUZZ_TARGETS)" ./scripts/fuzz.sh --long

bench: build
	./$(BUILD)/edgelm bench --ops

# Installs into PREFIX (default /usr/local): header, libraries, CLI,
# edgelm.pc and the CMake package.
PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf build build-*
