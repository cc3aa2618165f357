# knwb: the knowledge-neuron workbench. `make` builds ./knwb; `make test` runs every test.
# core/ is pure C11 + OpenBLAS (no Lua); lua/ holds the bindings and the CLI host.

CC      ?= cc
PKGS    := lua5.4 yaml-0.1 jansson openblas
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -Wall -Wextra -D_GNU_SOURCE -fno-fast-math
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS  = $(PKG_LIBS) -lm -lpthread

CORE_SRC := $(wildcard core/*.c)
LUA_SRC  := $(wildcard lua/*.c)
CTESTS   := $(patsubst tests/c/%.c,%,$(wildcard tests/c/test_*.c))

B := build
CORE_OBJ := $(patsubst %.c,$(B)/%.o,$(CORE_SRC))
LUA_OBJ  := $(patsubst %.c,$(B)/%.o,$(LUA_SRC))
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

.PHONY: all deps test test-c test-asan test-lua bench clean data model
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

knwb: $(LUA_OBJ) $(B)/libknwbcore.a
	$(CC) $(CFLAGS) -o $@ $(LUA_OBJ) $(B)/libknwbcore.a $(LDLIBS)

# C tests: one binary per tests/c/test_*.c, built normally and with ASan+UBSan.
$(B)/tests/%: tests/c/%.c tests/c/check.h $(B)/libknwbcore.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Icore -Itests/c -o $@ $< $(B)/libknwbcore.a $(LDLIBS)

$(B)/asan/tests/%: tests/c/%.c tests/c/check.h $(CORE_SRC) $(wildcard core/*.h) | $(B)/.deps
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -g -Wall -Wextra -D_GNU_SOURCE $(SAN) $(PKG_CFLAGS) -Icore -Itests/c -o $@ $< $(CORE_SRC) $(LDLIBS)

test: knwb $(addprefix $(B)/tests/,$(CTESTS)) $(addprefix $(B)/asan/tests/,$(CTESTS))
	@sh tests/run.sh

bench: knwb
	@sh bench/run.sh

clean:
	rm -rf $(B) knwb
