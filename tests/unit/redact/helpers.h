/* tests/unit/redact/helpers.h - shared by the redact tests: a fixture with a fresh key ring in
 * a temporary directory and a context on the default detectors, and assertions on results.
 * Include after <cmocka.h>. */
#ifndef VIGIL_TESTS_REDACT_HELPERS_H
#define VIGIL_TESTS_REDACT_HELPERS_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "redact/redact.h"

struct fx {
    char dir[64];
    char keys[96];
    struct redact_keyring *kr;
    struct redact *rd;
    struct redact_result res;
};

static inline void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;

    if (d == NULL) {
        unlink(path);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char sub[1024];

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= (int)sizeof(sub))
            continue;
        rm_rf(sub);
    }
    closedir(d);
    rmdir(path);
}

/* A fixture with a key ring and, when <with_ctx>, a context built from <o> (NULL: defaults). */
static inline struct fx *fx_new_ctx(const struct redact_opts *o, int with_ctx)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[512];

    assert_non_null(f);
    strcpy(f->dir, "/tmp/vigil-redact-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->keys, sizeof(f->keys), "%s/keys", f->dir);
    f->kr = redact_keyring_open(f->keys, err, sizeof(err));
    if (f->kr == NULL)
        fail_msg("keyring: %s", err);
    redact_result_init(&f->res);
    if (!with_ctx)
        return f;
    f->rd = redact_new(o, f->kr, err, sizeof(err));
    if (f->rd == NULL)
        fail_msg("redact_new: %s", err);
    return f;
}

static inline struct fx *fx_new(const struct redact_opts *o)
{
    return fx_new_ctx(o, 1);
}

static inline void fx_free(struct fx *f)
{
    if (f == NULL)
        return;
    redact_result_fini(&f->res);
    redact_free(f->rd);
    redact_keyring_free(f->kr);
    rm_rf(f->dir);
    free(f);
}

static inline int fx_setup(void **state)
{
    *state = fx_new(NULL);
    return 0;
}

/* A key ring only: for tests that need no detectors (building a context compiles them all). */
static inline int fx_setup_keys(void **state)
{
    *state = fx_new_ctx(NULL, 0);
    return 0;
}

static inline int fx_teardown(void **state)
{
    fx_free(*state);
    return 0;
}

/* Path of <rel> under the source tree (VIGIL_SOURCE_DIR, set by ctest). */
static inline const char *src_path(const char *rel, char *buf, size_t n)
{
    const char *root = getenv("VIGIL_SOURCE_DIR");

    snprintf(buf, n, "%s/%s", root ? root : ".", rel);
    return buf;
}

/* Writes <text> to <dir>/<name> and returns the path in <buf>. */
static inline const char *write_file(const char *dir, const char *name, const char *text, char *buf, size_t n)
{
    FILE *fp;

    snprintf(buf, n, "%s/%s", dir, name);
    fp = fopen(buf, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return buf;
}

/* Checks a result: exactly the classes in <classes> (NULL-terminated, in order of offset),
 * spans and tokens consistent, and the output free of <secret> when it is not NULL. */
static inline void check_result(const char *in, size_t inlen, const struct redact_result *r, const char *const *classes,
                                const char *secret)
{
    size_t n = 0;

    while (classes[n])
        n++;
    if (r->nmatches != n) {
        fprintf(stderr, "input: %.*s\noutput: %s\n", (int)inlen, in, r->out);
        for (size_t i = 0; i < r->nmatches; i++)
            fprintf(stderr, "  match %zu: %s (%s) in[%zu+%zu]\n", i, r->matches[i].cls, r->matches[i].rule,
                    r->matches[i].in_off, r->matches[i].in_len);
    }
    assert_int_equal(r->nmatches, n);
    assert_int_equal(strlen(r->out), r->len);
    for (size_t i = 0; i < n; i++) {
        const struct redact_match *m = &r->matches[i];
        char prefix[128];

        assert_string_equal(m->cls, classes[i]);
        assert_true(m->in_off + m->in_len <= inlen);
        assert_true(m->out_off + m->out_len <= r->len);
        assert_int_equal(strlen(m->token), m->out_len);
        assert_memory_equal(r->out + m->out_off, m->token, m->out_len);
        snprintf(prefix, sizeof(prefix), "tok:%s:", m->cls);
        assert_true(strncmp(m->token, prefix, strlen(prefix)) == 0);
        if (i > 0)
            assert_true(m->in_off >= r->matches[i - 1].in_off + r->matches[i - 1].in_len);
    }
    if (secret != NULL && strstr(r->out, secret) != NULL)
        fail_msg("secret \"%s\" leaked: %s", secret, r->out);
}

#define CLASSES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_CLASSES ((const char *const[]){NULL})

/* redact_string on <in>, then check_result. */
static inline const struct redact_result *str_check(struct fx *f, const char *in, const char *const *classes,
                                                    const char *secret)
{
    assert_int_equal(redact_string(f->rd, in, strlen(in), &f->res), 0);
    check_result(in, strlen(in), &f->res, classes, secret);
    return &f->res;
}

/* <in> comes out unchanged, with no match. */
static inline void str_clean(struct fx *f, const char *in)
{
    str_check(f, in, NO_CLASSES, NULL);
    assert_string_equal(f->res.out, in);
}

/* The original bytes of match <i>, copied into <buf>. */
static inline const char *match_text(const char *in, const struct redact_result *r, size_t i, char *buf, size_t n)
{
    size_t l = r->matches[i].in_len < n - 1 ? r->matches[i].in_len : n - 1;

    memcpy(buf, in + r->matches[i].in_off, l);
    buf[l] = '\0';
    return buf;
}

#endif
