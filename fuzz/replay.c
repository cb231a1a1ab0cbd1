/*
 * replay: runs a fuzz target's inputs without libFuzzer, for the normal and
 * sanitizer builds' tests: every file named, and every file of every
 * directory named (in name order, dot-files skipped), once each. Prints TAP;
 * an input that still crashes ends the process, and the test fails.
 */
#include "fuzz_app.h"

#include "jsonutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct inputs {
    char **paths;
    size_t n, cap;
};

static void add(struct inputs *in, const char *path)
{
    if (in->n == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 64;
        char **paths = realloc(in->paths, cap * sizeof *paths);
        if (!paths)
            return;
        in->paths = paths;
        in->cap = cap;
    }
    in->paths[in->n] = strdup(path);
    if (in->paths[in->n])
        in->n++;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void collect(struct inputs *in, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return; /* a target without regressions yet */
    if (!S_ISDIR(st.st_mode)) {
        add(in, path);
        return;
    }
    DIR *d = opendir(path);
    if (!d)
        return;
    size_t first = in->n;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode))
            add(in, full);
    }
    closedir(d);
    if (in->n - first > 1)
        qsort(in->paths + first, in->n - first, sizeof *in->paths, by_name);
}

int main(int argc, char **argv)
{
    struct inputs in = {0};
    for (int i = 1; i < argc; i++)
        collect(&in, argv[i]);
    LLVMFuzzerInitialize(&argc, &argv);
    if (in.n == 0)
        printf("1..0 # SKIP no inputs\n");
    else
        printf("1..%zu\n", in.n);
    for (size_t i = 0; i < in.n; i++) {
        size_t len;
        char *text = file_read(in.paths[i], &len);
        /* As libFuzzer passes it: a buffer of exactly the input's size. */
        uint8_t *data = text ? malloc(len ? len : 1) : NULL;
        if (!data) {
            printf("not ok %zu - %s cannot be read\n", i + 1, in.paths[i]);
        } else {
            memcpy(data, text, len);
            fflush(stdout);
            LLVMFuzzerTestOneInput(data, len);
            printf("ok %zu - %s\n", i + 1, in.paths[i]);
        }
        free(data);
        free(text);
        free(in.paths[i]);
    }
    free(in.paths);
    return 0;
}
