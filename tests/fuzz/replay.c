/* tests/fuzz/replay.c - runs a fuzz target over files without libFuzzer.
 *
 *   fuzz_<target>_replay FILE|DIR...
 *   fuzz_<target>_replay --expect-fail FILE|DIR...
 *
 * Links with one tests/fuzz/fuzz_<target>.c in place of libFuzzer's main, so the committed
 * corpus and every crash reproducer in tests/fuzz/regressions/<target>/ run as plain ctest
 * tests in every build (gcc, the ASan+UBSan build), with no clang needed: a crash fixed once
 * stays fixed. Each file is one input; directories are read one level deep, in name order.
 *
 * --expect-fail runs each input in a child process and passes only if every one of them
 * fails (a sanitizer report, an abort, a non-zero exit): the reproducers of open findings in
 * tests/fuzz/pending/<target>/, run with VIGIL_FUZZ_STRICT=1. Once a fix lands this fails,
 * naming the input: move it to regressions/<target>/. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0, n;
    uint8_t *buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    /* an exact-size copy, so ASan sees a read one past the input */
    uint8_t *in = malloc(len ? len : 1);
    if (!in) {
        free(buf);
        return -1;
    }
    memcpy(in, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(in, len);
    free(in);
    return 0;
}

static int expect_fail;

/* 0 when the input behaved as expected, -1 otherwise. */
static int run_input(const char *path)
{
    if (!expect_fail)
        return run_file(path);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == -1) {
        perror("fork");
        return -1;
    }
    if (pid == 0) {
        /* the report is expected: keep it short */
        if (!freopen("/dev/null", "w", stderr))
            _exit(3);
        _exit(run_file(path) == 0 ? 0 : 3);
    }
    int st;
    if (waitpid(pid, &st, 0) == -1) {
        perror("waitpid");
        return -1;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        printf("%s: no longer fails: fixed? move it to regressions/ (tests/fuzz/README.md)\n", path);
        return -1;
    }
    printf("%s: fails as expected (%s %d)\n", path, WIFSIGNALED(st) ? "signal" : "exit",
           WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int files = 0, bad = 0;
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (strcmp(argv[i], "--expect-fail") == 0) {
            expect_fail = 1;
            continue;
        }
        if (stat(argv[i], &st) == -1) { /* regressions/<target>/ exists once a crash was found */
            printf("%s: absent, skipped\n", argv[i]);
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad += run_input(argv[i]) == -1;
            files++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            perror(argv[i]);
            bad++;
            continue;
        }
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                char **nn = realloc(names, cap * sizeof(*names));
                if (!nn)
                    break;
                names = nn;
            }
            size_t l = strlen(argv[i]) + strlen(e->d_name) + 2;
            names[n] = malloc(l);
            if (!names[n])
                break;
            snprintf(names[n++], l, "%s/%s", argv[i], e->d_name);
        }
        closedir(d);
        if (n)
            qsort(names, n, sizeof(*names), cmp);
        for (size_t k = 0; k < n; k++) {
            struct stat fs;
            if (stat(names[k], &fs) == 0 && S_ISREG(fs.st_mode)) {
                bad += run_input(names[k]) == -1;
                files++;
            }
            free(names[k]);
        }
        free(names);
    }
    printf("%s: %d inputs run\n", argv[0], files);
    return bad ? 1 : 0;
}
