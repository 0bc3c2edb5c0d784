# topcow: a thin wrapper over Meson.  `make demo` and `make test` work on a
# fresh Debian 12 machine as root: they install what is missing first.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_TSAN ?= build-tsan
BUILD_FUZZ ?= build-fuzz
MESON_OPTS ?=

.PHONY: all setup build test test-long test-asan test-valgrind demo bench bench-lifecycle bench-nbd bench-nbd-aio bench-formats bench-top bench-cloud-boot bench-cloud clean

all: build

setup:
	@./scripts/setup.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: setup $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD_ASAN)/build.ninja:
	meson setup $(BUILD_ASAN) -Db_sanitize=address,undefined -Db_lundef=false $(MESON_OPTS)

$(BUILD_TSAN)/build.ninja:
	meson setup $(BUILD_TSAN) -Db_sanitize=thread -Db_lundef=false $(MESON_OPTS)

# clang, so that the libFuzzer targets are built (tests/fuzz/meson.build).
$(BUILD_FUZZ)/build.ninja:
	CC=clang meson setup $(BUILD_FUZZ) -Db_sanitize=address,undefined -Db_lundef=false $(MESON_OPTS)

# Every suite in the normal build; the fast suites and the mutation test
# under ASan+UBSan; the threaded paths under TSan; 60 s of libFuzzer per target.
test: build $(BUILD_ASAN)/build.ninja $(BUILD_TSAN)/build.ninja $(BUILD_FUZZ)/build.ninja
	ninja -C $(BUILD_ASAN)
	ninja -C $(BUILD_TSAN)
	ninja -C $(BUILD_FUZZ)
	@./scripts/run-tests.sh $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) $(BUILD_FUZZ)

# The long reliability runs, not part of `make test`: 15,000 crash points
# (suite 'long') and 10 minutes of libFuzzer per target (suite 'fuzz-10m').
test-long: build $(BUILD_FUZZ)/build.ninja
	ninja -C $(BUILD_FUZZ)
	@MESON_TEST_ARGS="--suite long" FUZZ_SUITE=fuzz-10m \
	    ./scripts/run-tests.sh $(BUILD) "" "" $(BUILD_FUZZ)

# The unit suite under valgrind memcheck (memory errors and definite or
# indirect leaks fail).
VALGRIND = valgrind --error-exitcode=1 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --track-origins=yes -q
test-valgrind: build
	meson test -C $(BUILD) --suite unit --num-processes 2 --print-errorlogs \
	    --timeout-multiplier 10 --wrap='$(VALGRIND)'

test-asan: setup $(BUILD_ASAN)/build.ninja
	ninja -C $(BUILD_ASAN)
	@MESON_TEST_ARGS="--no-suite long --no-suite tsan" ./scripts/run-tests.sh $(BUILD_ASAN)

demo: build
	@./scripts/demo.sh $(BUILD)

bench: build
	@BENCH_DIR=$${BENCH_DIR:-/dev/shm} BENCH_PREFAULT_MIB=$${BENCH_PREFAULT_MIB:-3072} \
	    ./bench/convert.sh $(BUILD)/tools/topcow

# Snapshot create/apply/delete, check and commit against qemu-img.
bench-lifecycle: build
	@BENCH_DIR=$${BENCH_DIR:-/dev/shm} ./bench/lifecycle.sh $(BUILD)/tools/topcow

# topcow serve against qemu-nbd (and on raw) with fio's nbd engine.
bench-nbd: build
	@BENCH_DIR=$${BENCH_DIR:-/dev/shm} ./bench/nbd.sh $(BUILD)/tools/topcow

# --aio=io_uring against --aio=threads and qemu-nbd, O_DIRECT on a scattered image.
bench-nbd-aio: build
	@./bench/nbd-aio.sh $(BUILD)/tools/topcow

# What publishing statistics for topcow top costs: instructions under
# callgrind, statistics on and off.
bench-top: build
	@BENCH_DIR=$${BENCH_DIR:-/dev/shm} ./bench/top-overhead.sh $(BUILD)/tools/topcow

# Converting VDI, VMDK, VHD and VHDX images to qcow2, against qemu-img.
bench-formats: build
	@BENCH_DIR=$${BENCH_DIR:-/dev/shm} ./bench/formats.sh $(BUILD)/tools/topcow

# The test guest booting from an s3:// image (Ceph RGW on loopback): served
# lazily with a cold and a warm cache, and pull-then-boot.
bench-cloud-boot: build
	@./bench/cloud-boot.sh $(BUILD)

# topcow push/pull against s3cmd put/get on a Ceph RGW on loopback (first,
# pull, delta of 5%).
bench-cloud: build
	@BENCH_DIR=$${BENCH_DIR:-/dev/shm} ./bench/cloud.sh $(BUILD)/tools/topcow

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) $(BUILD_FUZZ)
