/* tests/fuzz/fuzz_detectors.c - libFuzzer target: redaction (redact/redact.h) on any bytes.
 *
 * Every string field of every event goes through redaction before it is stored, including
 * what clients put in URLs and headers, so the detectors, validators and field rules see
 * hostile input at line rate. The default detector set (compliance/detectors.json, embedded)
 * is compiled once with a key ring in a temporary directory.
 *
 * Input: a list of fields separated by NUL bytes; the first byte of each field picks its
 * kind (string, URL, query, header: "Name:value"). Checked (abort on violation), besides
 * ASan/UBSan: every result is NUL-terminated at <len>, its matches are in ascending order,
 * within the input and the output, and each token span of the output holds that match's
 * token; the output differs from the input only inside match spans (what is not a match is
 * copied as it was: no secret can survive outside one, nothing else is altered); and
 * redact_fields() over all fields gives exactly what one call per field gives (its
 * documented contract). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redact/redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_FIELDS 16

static struct redact_keyring *kr;
static struct redact *rd;
static char keydir[64];

static void cleanup(void)
{
    char path[128];
    redact_free(rd);
    redact_keyring_free(kr);
    snprintf(path, sizeof(path), "%s/token-k1.key", keydir);
    unlink(path);
    rmdir(keydir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[1024];
    (void)argc;
    (void)argv;
    snprintf(keydir, sizeof(keydir), "/tmp/vigil-fuzz-keys.XXXXXX");
    if (!mkdtemp(keydir))
        abort();
    kr = redact_keyring_open(keydir, err, sizeof(err));
    if (!kr) {
        fprintf(stderr, "fuzz_detectors: %s\n", err);
        abort();
    }
    struct redact_opts o = {0};
    rd = redact_new(&o, kr, err, sizeof(err));
    if (!rd) {
        fprintf(stderr, "fuzz_detectors: %s\n", err);
        abort();
    }
    atexit(cleanup);
    return 0;
}

static void check_result(const struct redact_result *r, const char *in, size_t len)
{
    if (r->out == NULL || r->out[r->len] != '\0')
        abort();
    if (r->flags & REDACT_R_UNSCANNABLE) {
        if (r->nmatches != 1)
            abort();
        return;
    }
    size_t in_pos = 0, out_pos = 0;
    for (size_t i = 0; i < r->nmatches; i++) {
        const struct redact_match *m = &r->matches[i];
        if (m->in_off < in_pos || m->in_off + m->in_len > len || m->in_len == 0)
            abort();
        if (m->out_off < out_pos || m->out_off + m->out_len > r->len)
            abort();
        size_t tl = strnlen(m->token, REDACT_TOKEN_MAX);
        if (tl == REDACT_TOKEN_MAX || tl == 0 || strncmp(m->token, "tok:", 4) != 0 || m->cls == NULL)
            abort();
        if (m->out_len != tl || memcmp(r->out + m->out_off, m->token, tl) != 0)
            abort();
        /* the bytes between two matches are copied unchanged */
        if (m->in_off - in_pos != m->out_off - out_pos ||
            memcmp(in + in_pos, r->out + out_pos, m->in_off - in_pos) != 0)
            abort();
        in_pos = m->in_off + m->in_len;
        out_pos = m->out_off + m->out_len;
    }
    if (len - in_pos != r->len - out_pos || memcmp(in + in_pos, r->out + out_pos, len - in_pos) != 0)
        abort();
}

static int single(const struct redact_field *f, struct redact_result *r)
{
    switch (f->kind) {
    case REDACT_FIELD_URL:
        return redact_url(rd, f->value, f->len, r);
    case REDACT_FIELD_QUERY:
        return redact_query(rd, f->value, f->len, r);
    case REDACT_FIELD_HEADER:
        return redact_header(rd, f->name, f->name_len, f->value, f->len, r);
    default:
        return redact_string(rd, f->value, f->len, r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct redact_field f[MAX_FIELDS];
    struct redact_result batch[MAX_FIELDS], one;
    size_t n = 0, off = 0;
    const char *in = (const char *)data;

    while (off < size && n < MAX_FIELDS) {
        const char *end = memchr(in + off, '\0', size - off);
        size_t flen = end ? (size_t)(end - (in + off)) : size - off;
        if (flen > 0) {
            struct redact_field *x = &f[n++];
            memset(x, 0, sizeof(*x));
            x->kind = (enum redact_field_kind)((unsigned char)in[off] % 4);
            x->value = in + off + 1;
            x->len = flen - 1;
            if (x->kind == REDACT_FIELD_HEADER) {
                const char *colon = memchr(x->value, ':', x->len);
                x->name = x->value;
                x->name_len = colon ? (size_t)(colon - x->value) : 0;
                if (colon) {
                    x->len -= x->name_len + 1;
                    x->value = colon + 1;
                }
            }
        }
        off += flen + 1;
    }
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        redact_result_init(&batch[i]);
    redact_result_init(&one);
    int brc = redact_fields(rd, f, n, batch);
    for (size_t i = 0; i < n; i++) {
        check_result(&batch[i], f[i].value, f[i].len);
        int rc = single(&f[i], &one);
        check_result(&one, f[i].value, f[i].len);
        if (brc == 0 && rc == 0 &&
            (one.len != batch[i].len || memcmp(one.out, batch[i].out, one.len) != 0 ||
             one.nmatches != batch[i].nmatches)) {
            fprintf(stderr, "field %zu: redact_fields gave \"%s\", the single call \"%s\"\n", i, batch[i].out,
                    one.out);
            abort();
        }
    }
    for (size_t i = 0; i < n; i++)
        redact_result_fini(&batch[i]);
    redact_result_fini(&one);
    return 0;
}
