/*
 * replay.c - runs LLVMFuzzerTestOneInput over every file in the directories
 * (or files) named on the command line, without libFuzzer. Linked with each
 * fuzz target so ctest replays the corpora in every build, with any compiler.
 * Fails when a path cannot be read or when no input was found at all, so an
 * emptied or mistyped corpus does not pass silently.
 */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Reads a whole file into an exactly sized allocation, so that ASan catches
 * a read one byte past the input. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf != NULL && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (bigger == NULL)
                free(buf);
            buf = bigger;
            cap *= 2;
        }
    }
    int failed = buf == NULL || ferror(f);
    fclose(f);
    uint8_t *exact = failed ? NULL : malloc(len ? len : 1);
    if (exact == NULL) {
        fprintf(stderr, "%s: read failed\n", path);
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

/* Replays path (a file, or the files directly inside a directory); returns
 * the number of inputs run or -1. */
static long replay_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return replay_file(path) == 0 ? 1 : -1;

    DIR *d = opendir(path);
    if (d == NULL) {
        perror(path);
        return -1;
    }
    long count = 0;
    struct dirent *e;
    while (count >= 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char full[4096];
        if (snprintf(full, sizeof(full), "%s/%s", path, e->d_name) >= (int)sizeof(full) ||
            stat(full, &st) != 0) {
            fprintf(stderr, "%s/%s: cannot stat\n", path, e->d_name);
            count = -1;
        } else if (S_ISREG(st.st_mode)) {
            count = replay_file(full) == 0 ? count + 1 : -1;
        }
    }
    closedir(d);
    return count;
}

int main(int argc, char **argv)
{
    long total = 0;
    for (int i = 1; i < argc; i++) {
        long n = replay_path(argv[i]);
        if (n < 0)
            return 1;
        total += n;
    }
    if (total == 0) {
        fprintf(stderr, "no inputs found\n");
        return 1;
    }
    fprintf(stderr, "replayed %ld inputs\n", total);
    return 0;
}
