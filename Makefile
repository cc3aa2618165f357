# knwb: the knowledge-neuron workbench. `make` builds ./knwb; `make test` runs every test.
# core/ is pure C11 + OpenBLAS (no Lua); lua/ holds the bindings and the CLI host.

CC      ?= cc
PKGS    := lua5.4 yaml-0.1 jansson openblas libpcre2-8
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -Wall -Wextra -D_GNU_SOURCE -fno-fast-math
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS  = $(PKG_LIBS) -lm -lpthread
# MPI (issue 16): built in when OpenMPI's development package is installed (scripts/deps.sh
# installs it); only lua/knwb_mpi.c includes <mpi.h>, and a knwb started without a launcher never
# initialises MPI.
MPI_CFLAGS = $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   = $(shell pkg-config --libs ompi-c 2>/dev/null)
ifneq ($(MPI_LIBS),)
MPI_CFLAGS += -DKNWB_MPI
endif

CORE_SRC := $(wildcard core/*.c)
LUA_SRC  := $(wildcard lua/*.c)
CTESTS   := $(patsubst tests/c/%.c,%,$(wildcard tests/c/test_*.c))

B := build
CORE_OBJ := $(patsubst %.c,$(B)/%.o,$(CORE_SRC))
LUA_OBJ  := $(patsubst %.c,$(B)/%.o,$(LUA_SRC))
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

.PHONY: all test bench clean data model neurons ref fuzz
all: knwb

$(B)/.deps: scripts/deps.sh
	@mkdir -p $(B)
	@sh scripts/deps.sh
	@touch $@

$(B)/%.o: %.c $(wildcard core/*.h lua/*.h) | $(B)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Icore -c $< -o $@

$(B)/libknwbcore.a: $(CORE_OBJ)
	ar rcs $@ $^

$(B)/lua/knwb_mpi.o: lua/knwb_mpi.c | $(B)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(MPI_CFLAGS) -c $< -o $@

knwb: $(LUA_OBJ) $(B)/libknwbcore.a
	$(CC) $(CFLAGS) -o $@ $(LUA_OBJ) $(B)/libknwbcore.a $(LDLIBS) $(MPI_LIBS)

# C tests: one binary per tests/c/test_*.c, built normally and with ASan+UBSan.
$(B)/tests/%: tests/c/%.c $(wildcard tests/c/*.h) $(B)/libknwbcore.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Icore -Itests/c -o $@ $< $(B)/libknwbcore.a $(LDLIBS)

$(B)/asan/tests/%: tests/c/%.c $(wildcard tests/c/*.h) $(CORE_SRC) $(wildcard core/*.h) | $(B)/.deps
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -g -Wall -Wextra -D_GNU_SOURCE $(SAN) $(PKG_CFLAGS) -Icore -Itests/c -o $@ $< $(CORE_SRC) $(LDLIBS)

# knwb itself under ASan+UBSan, for the Lua tests' second run (bindings, YAML, JSON, the CLI host);
# it finds lua/ next to itself, so build/asan/lua points at the repository's.
$(B)/asan/knwb: $(LUA_SRC) $(CORE_SRC) $(wildcard core/*.h lua/*.h) | $(B)/.deps
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -g -Wall -Wextra -D_GNU_SOURCE $(SAN) $(PKG_CFLAGS) $(MPI_CFLAGS) -Icore -o $@ $(LUA_SRC) $(CORE_SRC) $(LDLIBS) $(MPI_LIBS)
	@ln -sfn ../../lua $(B)/asan/lua

# libFuzzer harnesses: one binary per tests/fuzz/fuzz_*.c, linked against core/ and the Lua
# modules (not the CLI host) built with coverage instrumentation, ASan and UBSan. Their seeds are
# tests/fuzz/corpus/<name>/ (committed) and build/fuzz/corpus/<name>/ (made by make_corpus.lua).
FUZZ_CC   := $(shell command -v clang-14 2>/dev/null || command -v clang 2>/dev/null)
FUZZ_TIME ?= 60
FUZZ_SAN  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_NAMES := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_LIBSRC := $(CORE_SRC) $(filter-out lua/main.c lua/knwb_mpi.c,$(LUA_SRC))
FUZZ_OBJ := $(patsubst %.c,$(B)/fuzz/obj/%.o,$(FUZZ_LIBSRC))
FUZZ_BINS := $(addprefix $(B)/fuzz/,$(FUZZ_NAMES))
.SECONDARY: $(FUZZ_OBJ)

$(B)/fuzz/obj/%.o: %.c $(wildcard core/*.h lua/*.h) | $(B)/.deps
	@mkdir -p $(dir $@)
	@[ -n "$(FUZZ_CC)" ] || { echo "make: the fuzz harnesses need clang-14 or clang (scripts/deps.sh installs it)" >&2; exit 1; }
	$(FUZZ_CC) -std=c11 -O1 -g -D_GNU_SOURCE -fsanitize=fuzzer-no-link $(FUZZ_SAN) $(PKG_CFLAGS) -Icore -c $< -o $@

$(B)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard tests/fuzz/*.h) $(FUZZ_OBJ)
	$(FUZZ_CC) -std=c11 -O1 -g -D_GNU_SOURCE -fsanitize=fuzzer $(FUZZ_SAN) $(PKG_CFLAGS) -Icore -Itests/fuzz -o $@ $< $(FUZZ_OBJ) $(LDLIBS)

$(B)/fuzz/corpus/.made: tests/fuzz/make_corpus.lua knwb
	./knwb tests/fuzz/make_corpus.lua $(B)/fuzz/corpus >/dev/null
	@touch $@

# `make fuzz` runs every harness for FUZZ_TIME seconds (default 60); findings go to build/fuzz/.
fuzz: $(FUZZ_BINS) $(B)/fuzz/corpus/.made
	@for f in $(FUZZ_NAMES); do sh tests/fuzz/run.sh $$f time $(FUZZ_TIME) || exit 1; done

test: knwb $(B)/asan/knwb $(addprefix $(B)/tests/,$(CTESTS)) $(addprefix $(B)/asan/tests/,$(CTESTS)) \
      $(FUZZ_BINS) $(B)/fuzz/corpus/.made
	@sh tests/run.sh

bench: knwb
	@sh bench/run.sh

# The default model's data and weights. `make data` rebuilds the fact set and vocabulary from the
# installed Debian data packages; `make model` pretrains models/default (about 7 minutes);
# `make neurons` stores its knowledge neurons (models/default/neurons.jsonl) for the editing
# experiments; `make ref` regenerates the PyTorch parity fixtures.
data: knwb
	@sh scripts/deps.sh data
	./knwb data/build_facts.lua
	./knwb data/build_vocab.lua

model: knwb
	OPENBLAS_NUM_THREADS=1 ./knwb experiments/pretrain.lua configs/pretrain.yaml --save models/default --out runs/pretrain-default

neurons: knwb
	./knwb experiments/attribute.lua configs/attribute.yaml --out runs/attribute-default
	cp runs/attribute-default/neurons.jsonl runs/attribute-default/neurons.jsonl.meta.json models/default/

ref:
	@sh scripts/deps.sh ref
	/usr/bin/python3 tests/ref/gen_fixtures.py
	/usr/bin/python3 tests/ref/gen_kernels.py
	/usr/bin/python3 tests/ref/gen_tokenizers.py

clean:
	rm -rf $(B) knwb
