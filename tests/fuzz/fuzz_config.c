/* fuzz_config.c: config.json (bert_config_load in core/model.c) on arbitrary bytes.
 * Property: a refusal has a message naming the file; an accepted config passes
 * bert_config_check, so every size the loader goes on to allocate from is in range. */
#include "fuzz_common.h"
#include "bert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path(0, "config.json");
    fuzz_write(path, data, size);
    bert_config c;
    kn_err err = { "" };
    if (bert_config_load(path, &c, &err) != 0) {
        FUZZ_CHECK(strstr(err.msg, path) != NULL, "config refusal does not name the file: %s", err.msg);
        return 0;
    }
    kn_err e2 = { "" };
    FUZZ_CHECK(bert_config_check(&c, &e2) == 0, "accepted config fails bert_config_check: %s", e2.msg);
    FUZZ_CHECK(c.hidden % c.heads == 0, "hidden %d not divisible by heads %d", c.hidden, c.heads);
    return 0;
}
