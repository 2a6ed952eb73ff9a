/*
 * fuzz.h - shared by the fuzz targets: the libFuzzer entry point (declared
 * here so -Wmissing-prototypes is satisfied) and FUZZ_CHECK for oracles.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant must crash, so libFuzzer keeps the input and the
 * corpus replay test fails; a plain assert would vanish under NDEBUG. */
#define FUZZ_CHECK(cond)  \
    do {                  \
        if (!(cond))      \
            abort();      \
    } while (0)

#endif
