# topcow: a thin wrapper over Meson.  `make demo` and `make test` work on a
# fresh Debian 12 machine as root: they install what is missing first.
BUILD      ?= build
BUILD_ASAN ?= build-asan
MESON_OPTS ?=

.PHONY: all setup build test test-long test-asan demo bench bench-lifecycle clean

all: build

setup:
	@./scripts/setup.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: setup $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD_ASAN)/build.ninja:
	meson setup $(BUILD_ASAN) -Db_sanitize=address,undefined -Db_lundef=false $(MESON_OPTS)

# Every suite in the normal build, then the fast suites under ASan+UBSan.
test: build $(BUILD_ASAN)/build.ninja
	ninja -C $(BUILD_ASAN)
	@./scripts/run-tests.sh $(BUILD) $(BUILD_ASAN)

# The long reliability runs (thousands of crash points); not part of `make test`.
test-long: build
	@MESON_TEST_ARGS="--suite long" ./scripts/run-tests.sh $(BUILD)

test-asan: setup $(BUILD_ASAN)/build.ninja
	ninja -C $(BUILD_ASAN)
	@./scripts/run-tests.sh $(BUILD_ASAN)

demo: build
	@./scripts/demo.sh $(BUILD)

bench: build
	@BENCH_DIR=$${BENCH_DIR:-/dev/shm} BENCH_PREFAULT_MIB=$${BENCH_PREFAULT_MIB:-3072} \
	    ./bench/convert.sh $(BUILD)/tools/topcow

# Snapshot create/apply/delete, check and commit against qemu-img.
bench-lifecycle: build
	@BENCH_DIR=$${BENCH_DIR:-/dev/shm} ./bench/lifecycle.sh $(BUILD)/tools/topcow

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
