/* tests/unit/audit/test_digest.c - the integrity primitives: the record chain, signed segment
 * digests (a flipped byte anywhere is caught) and the signing key's files and modes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../testutil.h"
#include "audit/audit.h"
#include "audit/segment.h"

struct fixture {
    char dir[64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    strcpy(f->dir, "/tmp/vigil-digest-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    tu_rm_rf(f->dir);
    free(f);
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf = malloc(8192);

    assert_non_null(fp);
    assert_non_null(buf);
    *len = fread(buf, 1, 8191, fp);
    buf[*len] = '\0';
    fclose(fp);
    return buf;
}

static void spit(const char *path, const char *data, size_t len)
{
    FILE *fp = fopen(path, "wb");

    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    fclose(fp);
}

/* a chained line verifies against its predecessor and not against another one */
static void test_digest_chain_line_verifies(void **state)
{
    uint8_t zero[32] = {0}, c1[32], got[32], want[32], other[32];
    char line[256], hex[65];
    const char *rec = "{\"schema\":\"vigil.event/1\",\"seq\":1}";
    size_t body;

    audit_chain_next(zero, rec, strlen(rec), c1);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", c1[i]);
    snprintf(line, sizeof(line), "{\"schema\":\"vigil.event/1\",\"seq\":1,\"chain\":\"%s\"}", hex);
    assert_int_equal(audit_chain_split(line, strlen(line), &body, got), 0);
    assert_memory_equal(got, c1, 32);
    assert_int_equal(body, strlen(rec) - 1);
    assert_int_equal(audit_chain_expected(zero, line, strlen(line), want), 0);
    assert_memory_equal(want, c1, 32);
    memset(other, 1, 32);
    assert_int_equal(audit_chain_expected(other, line, strlen(line), want), 0);
    assert_memory_not_equal(want, c1, 32);
    assert_int_equal(audit_chain_find(line, strlen(line), got), 0);
    assert_memory_equal(got, c1, 32);
    /* a line without the member, or with a bad one, has no chain */
    assert_int_equal(audit_chain_split(rec, strlen(rec), &body, got), -1);
    assert_int_equal(audit_chain_find(rec, strlen(rec), got), -1);
    line[strlen(line) - 3] = 'X';
    assert_int_equal(audit_chain_split(line, strlen(line), &body, got), -1);
}

static void fill_digest(struct audit_digest *d)
{
    memset(d, 0, sizeof(*d));
    memset(d->hash, 0xab, 32);
    d->bytes = 1234;
    d->frames = 3;
    d->records = 30;
    d->first_seq = 1;
    d->last_seq = 30;
    d->first_time_us = 1795710645000001LL;
    d->last_time_us = 1795710646999999LL;
    d->has_prev_chain = 0;
    d->has_last_chain = 1;
    memset(d->last_chain, 0x11, 32);
    memset(d->prev_digest, 0x22, 32);
    d->recovered = 1;
    d->discarded_bytes = 17;
    snprintf(d->recovery_reason, sizeof(d->recovery_reason), "the last frame is incomplete");
}

/* a digest written and signed reads back equal and verifies; flipping any one byte of the
 * file makes it fail; another key does not verify it */
static void test_digest_signature_verifies_flipped_byte_fails(void **state)
{
    struct fixture *f = *state;
    struct audit_digest d, back;
    uint8_t pk[32], sk[64], fh[32], fh2[32], pk2[32], sk2[64];
    char seg[256], sig[300], err[512], *text;
    size_t len;

    assert_int_equal(audit_signing_key_load(f->dir, pk, sk, err, sizeof(err)), 0);
    snprintf(seg, sizeof(seg), "%s/00000000000000000001.vseg", f->dir);
    snprintf(sig, sizeof(sig), "%s.sig", seg);
    fill_digest(&d);
    assert_int_equal(audit_digest_write(seg, &d, sk, 1, fh, err, sizeof(err)), 0);
    if (audit_digest_read(sig, pk, &back, fh2, err, sizeof(err)) == -1)
        fail_msg("%s", err);
    assert_memory_equal(fh, fh2, 32);
    assert_string_equal(back.segment, "00000000000000000001.vseg");
    assert_memory_equal(back.hash, d.hash, 32);
    assert_int_equal(back.bytes, 1234);
    assert_int_equal(back.records, 30);
    assert_int_equal(back.last_seq, 30);
    assert_int_equal(back.first_time_us, d.first_time_us);
    assert_int_equal(back.last_time_us, d.last_time_us);
    assert_false(back.has_prev_chain);
    assert_true(back.has_last_chain);
    assert_memory_equal(back.last_chain, d.last_chain, 32);
    assert_memory_equal(back.prev_digest, d.prev_digest, 32);
    assert_true(back.recovered);
    assert_int_equal(back.discarded_bytes, 17);
    assert_string_equal(back.recovery_reason, "the last frame is incomplete");
    assert_memory_equal(back.public_key, pk, 32);

    text = slurp(sig, &len);
    for (size_t i = 0; i + 1 < len; i++) {
        char saved = text[i];

        /* a different character of the same class keeps the JSON parseable where it can */
        text[i] = saved >= '0' && saved <= '8' ? saved + 1 : saved == '9' ? '0' : saved == 'a' ? 'b' : 'a';
        spit(sig, text, len);
        if (audit_digest_read(sig, pk, &back, NULL, err, sizeof(err)) == 0)
            fail_msg("byte %zu ('%c' -> '%c') flipped and the digest still verifies", i, saved, text[i]);
        text[i] = saved;
    }
    spit(sig, text, len);
    assert_int_equal(audit_digest_read(sig, pk, &back, NULL, err, sizeof(err)), 0);
    free(text);

    /* another key */
    {
        char dir2[128];

        snprintf(dir2, sizeof(dir2), "%s/other", f->dir);
        assert_int_equal(mkdir(dir2, 0700), 0);
        assert_int_equal(audit_signing_key_load(dir2, pk2, sk2, err, sizeof(err)), 0);
        assert_int_equal(audit_digest_read(sig, pk2, &back, NULL, err, sizeof(err)), -1);
    }
}

/* the key pair is made on first use with modes 0600 and 0644 and read back the same later */
static void test_digest_key_created_private_and_reused(void **state)
{
    struct fixture *f = *state;
    uint8_t pk[32], sk[64], pk2[32], sk2[64], pub[32];
    char path[256], err[512];
    struct stat st;

    assert_int_equal(audit_signing_key_load(f->dir, pk, sk, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/keys", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/keys/audit-signing.key", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 65);
    snprintf(path, sizeof(path), "%s/keys/audit-signing.pub", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(audit_signing_pub_read(path, pub, err, sizeof(err)), 0);
    assert_memory_equal(pub, pk, 32);
    /* a missing .pub is written again from the key */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(audit_signing_key_load(f->dir, pk2, sk2, err, sizeof(err)), 0);
    assert_memory_equal(pk2, pk, 32);
    assert_memory_equal(sk2, sk, 64);
    assert_int_equal(audit_signing_pub_read(path, pub, err, sizeof(err)), 0);
    assert_memory_equal(pub, pk, 32);
}

/* a key file group or others may read or write is refused, as is one that is not a key */
static void test_digest_key_loose_mode_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t pk[32], sk[64];
    char path[256], err[512];

    assert_int_equal(audit_signing_key_load(f->dir, pk, sk, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/keys/audit-signing.key", f->dir);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(audit_signing_key_load(f->dir, pk, sk, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "mode 0644"));
    assert_int_equal(chmod(path, 0620), 0);
    assert_int_equal(audit_signing_key_load(f->dir, pk, sk, err, sizeof(err)), -1);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(audit_signing_key_load(f->dir, pk, sk, err, sizeof(err)), 0);
    spit(path, "not a key\n", 10);
    assert_int_equal(audit_signing_key_load(f->dir, pk, sk, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "64 lowercase hex digits"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_chain_line_verifies),
        cmocka_unit_test_setup_teardown(test_digest_signature_verifies_flipped_byte_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_key_created_private_and_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_key_loose_mode_refused, setup, teardown),
    };
    return cmocka_run_group_tests_name("audit/digest", tests, NULL, NULL);
}
