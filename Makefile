# Parley build. `make` builds everything into build/release; `make SAN=1`
# builds the same with AddressSanitizer and UndefinedBehaviorSanitizer into
# build/asan. See README.md for the targets people use.

SAN ?= 0
ifeq ($(SAN),1)
  BUILD ?= build/asan
  OPT = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDSAN = -fsanitize=address,undefined
else
  BUILD ?= build/release
  OPT = -O2 -g
  LDSAN =
endif

CC ?= cc
WARN = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
       -Wformat=2 -Wno-unused-parameter -Werror
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -Iinclude -Isrc/core -Isrc/io -Isrc/sim -Isrc/media -MMD -MP $(CFLAGS)
# Voice: Opus (codec), speexdsp (echo canceller, noise suppressor, resampler),
# PortAudio (sound devices, src/media/audio_device.c only).
MEDIA_LIBS = -lopus -lspeexdsp -lportaudio
# Port mapping: libminiupnpc (UPnP IGD) and libnatpmp (NAT-PMP), src/io/portmap.c.
PORTMAP_LIBS = -lminiupnpc -lnatpmp
LDLIBS_ALL = $(LDSAN) -lsodium -lsqlite3 -lcjson $(MEDIA_LIBS) $(PORTMAP_LIBS) -lm -lpthread $(LDLIBS)

LIB_SRC   := $(wildcard src/core/*.c src/io/*.c src/sim/*.c src/media/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/libparley.a

CLI_SRC   := $(wildcard src/cli/*.c)
CA_SRC    := $(wildcard src/ca/*.c)
DAEMON_SRC:= $(wildcard src/daemon/*.c)
IMPAIR_SRC  := $(wildcard src/tools/impair/*.c)
QUALITY_SRC := $(wildcard src/tools/quality/*.c)
SIM_SRC     := $(wildcard src/tools/sim/*.c)
RELAYD_SRC  := $(wildcard src/tools/relayd/*.c)
TEST_SRC  := $(wildcard tests/test_*.c)
# Programs the test scripts drive (not tests themselves: tests/run.sh runs
# only $(BUILD)/tests/test_*).
TOOL_SRC  := $(wildcard tests/tools/*.c)
BENCH_SRC := $(wildcard bench/bench_*.c)
FUZZ_SRC  := $(wildcard fuzz/fuzz_*.c)
# Helpers shared by several test programs (not tests themselves).
TESTLIB_SRC := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))

BINS   := $(BUILD)/parley $(BUILD)/parley-ca $(BUILD)/parleyd $(BUILD)/parley-impair $(BUILD)/parley-quality \
          $(BUILD)/parley-relayd $(BUILD)/parley-sim
TESTS  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TOOLS  := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/tools/%)
BENCHES:= $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
# The load generator of `make bench-swarm` (not run by `make bench`).
SWARM  := $(BUILD)/bench/swarm

.SECONDARY:
.PHONY: all test test-asan bench bench-sim bench-swarm fuzz fuzz-smoke clean deps demo check fuzzers
all: $(BINS) $(TESTS) $(TOOLS) $(BENCHES) $(SWARM)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BUILD)/parley: $(CLI_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $^ -o $@ $(LDLIBS_ALL)

$(BUILD)/parley-ca: $(CA_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $^ -o $@ $(LDLIBS_ALL)

$(BUILD)/parleyd: $(DAEMON_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $^ -o $@ $(LDLIBS_ALL)

# Test tools: the user-space impairment relay and the speech-quality harness.
$(BUILD)/parley-impair: $(IMPAIR_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $^ -o $@ $(LDLIBS_ALL)

$(BUILD)/parley-quality: $(QUALITY_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $^ -o $@ $(LDLIBS_ALL)

# The overlay at scale on the simulator (issue figures; see README).
$(BUILD)/parley-sim: $(SIM_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $^ -o $@ $(LDLIBS_ALL)

# The media relay alone on the event loop (benchmarks, lab tests).
$(BUILD)/parley-relayd: $(RELAYD_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $^ -o $@ $(LDLIBS_ALL)

# Test programs may also link the CA's store (src/ca/store.c) to drive it directly.
CA_LIB_OBJ := $(filter-out $(BUILD)/src/ca/main.o,$(CA_SRC:%.c=$(BUILD)/%.o))
$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TESTLIB_SRC:%.c=$(BUILD)/%.o) $(CA_LIB_OBJ) $(LIB)
	$(CC) $^ -o $@ $(LDLIBS_ALL)

$(BUILD)/tests/tools/%: $(BUILD)/tests/tools/%.o $(LIB)
	$(CC) $^ -o $@ $(LDLIBS_ALL)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $^ -o $@ $(LDLIBS_ALL)

# It mints its certificates with the tests' signing authority (tests/pki.c).
$(SWARM): $(BUILD)/bench/swarm.o $(BUILD)/tests/pki.o $(LIB)
	$(CC) $^ -o $@ $(LDLIBS_ALL)

# The test command: every test program and script, then one summary line.
test: all
	@tests/run.sh $(BUILD)

test-asan:
	@$(MAKE) --no-print-directory SAN=1 test

bench: all
	@for b in $(BENCHES); do $$b || exit 1; done
	@bench/call.bench.sh $(BUILD)
	@bench/conference.bench.sh $(BUILD)

# The overlay at 100k/1k (storm, cascade) and 1M/10k in the simulator: long.
bench-sim: all
	@bench/sim.sh

# A real parleyd supernode under 200,000 real clients on loopback: idle
# clients per core, memory per client, look-ups per second (a few minutes).
bench-swarm: all
	@bench/swarm.sh

# libFuzzer targets, built with clang. fuzz-smoke runs each briefly (CI);
# `make fuzz FUZZ_SECONDS=600` runs a longer campaign.
FUZZ_BUILD := build/fuzz
FUZZ_SECONDS ?= 15
FUZZ_INC = -std=c11 -D_GNU_SOURCE -O1 -g -Iinclude -Isrc/core -Isrc/io -Isrc/sim -Isrc/media
FUZZ_CFLAGS = $(FUZZ_INC) -fsanitize=fuzzer,address,undefined
FUZZERS := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_BUILD)/%)
# The library is compiled once for every fuzzer (instrumented for coverage,
# without libFuzzer's main), not once per fuzzer: that was most of CI's
# fuzzing time.
FUZZ_LIB := $(FUZZ_BUILD)/libparley_fuzz.a
FUZZ_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_INC) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c $< -o $@
$(FUZZ_LIB): $(FUZZ_OBJ)
	rm -f $@
	ar rcs $@ $^
$(FUZZ_BUILD)/%: fuzz/%.c $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $< $(FUZZ_LIB) -o $@ -lsodium -lsqlite3 $(MEDIA_LIBS) $(PORTMAP_LIBS) -lm -lpthread
-include $(FUZZ_OBJ:.o=.d)

fuzz: $(FUZZERS)
	@fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZERS)

fuzz-smoke: $(FUZZERS)
	@fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZERS)

deps:
	@scripts/setup.sh

# The test command (README, CI): set up, then every test in the release
# build and under ASan+UBSan, then each fuzzer for a few seconds. The last
# line is the total: "N passed, N failed".
CHECK_FUZZ_SECONDS ?= 10
check:
	@scripts/setup.sh
	@$(MAKE) --no-print-directory -j2 all
	@$(MAKE) --no-print-directory -j2 SAN=1 all
	@$(MAKE) --no-print-directory -j2 fuzzers
	@scripts/check.sh $(CHECK_FUZZ_SECONDS) $(FUZZERS)

fuzzers: $(FUZZERS)

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(wildcard $(BUILD)/src/*/*.d $(BUILD)/src/tools/*/*.d $(BUILD)/tests/*.d $(BUILD)/tests/tools/*.d $(BUILD)/bench/*.d)
