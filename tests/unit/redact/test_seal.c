/* tests/unit/redact/test_seal.c - sealed originals: a value sealed under a data key opens only
 * with that key, seq and field path, and not after any change; a data key sealed to a role
 * opens only with that role's key pair; role key files are created 0600 and refused when
 * others can read them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>

#include "helpers.h"

struct sfx {
    char dir[64];
    struct redact_data_key k;
};

static int setup(void **state)
{
    struct sfx *s = calloc(1, sizeof(*s));

    assert_non_null(s);
    strcpy(s->dir, "/tmp/vigil-seal-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    assert_int_equal(redact_data_key_new(&s->k), 0);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    struct sfx *s = *state;

    redact_data_key_wipe(&s->k);
    rm_rf(s->dir);
    free(s);
    return 0;
}

static const char secret[] = "Bearer eyJhbGciOi.secret.value";
#define FIELD "request.headers.authorization"

/* seal then open with the same key, seq and field gives the value back */
static void test_seal_roundtrip(void **state)
{
    struct sfx *s = *state;
    uint8_t sealed[128], back[128];
    size_t sl, bl;

    assert_int_equal(redact_seal(&s->k, 42, FIELD, secret, strlen(secret), sealed, sizeof(sealed), &sl), 0);
    assert_int_equal(sl, strlen(secret) + REDACT_SEAL_OVERHEAD);
    assert_null(memmem(sealed, sl, "secret", 6));
    assert_int_equal(redact_open(&s->k, 42, FIELD, sealed, sl, back, sizeof(back), &bl), 0);
    assert_int_equal(bl, strlen(secret));
    assert_memory_equal(back, secret, bl);
    /* empty values too */
    assert_int_equal(redact_seal(&s->k, 1, "x", "", 0, sealed, sizeof(sealed), &sl), 0);
    assert_int_equal(sl, REDACT_SEAL_OVERHEAD);
    assert_int_equal(redact_open(&s->k, 1, "x", sealed, sl, back, sizeof(back), &bl), 0);
    assert_int_equal(bl, 0);
}

/* two seals of one value differ (random nonces) */
static void test_seal_nonce_fresh(void **state)
{
    struct sfx *s = *state;
    uint8_t a[128], b[128];
    size_t al, bl;

    assert_int_equal(redact_seal(&s->k, 7, FIELD, secret, strlen(secret), a, sizeof(a), &al), 0);
    assert_int_equal(redact_seal(&s->k, 7, FIELD, secret, strlen(secret), b, sizeof(b), &bl), 0);
    assert_int_equal(al, bl);
    assert_memory_not_equal(a, b, al);
}

/* any flipped bit (nonce, ciphertext, tag) or a truncation makes open fail */
static void test_seal_tamper_fails(void **state)
{
    struct sfx *s = *state;
    uint8_t sealed[128], back[128];
    size_t sl, bl;

    assert_int_equal(redact_seal(&s->k, 42, FIELD, secret, strlen(secret), sealed, sizeof(sealed), &sl), 0);
    for (size_t i = 0; i < sl; i++) {
        sealed[i] ^= 0x01;
        assert_int_equal(redact_open(&s->k, 42, FIELD, sealed, sl, back, sizeof(back), &bl), -1);
        sealed[i] ^= 0x01;
    }
    assert_int_equal(redact_open(&s->k, 42, FIELD, sealed, sl - 1, back, sizeof(back), &bl), -1);
    assert_int_equal(redact_open(&s->k, 42, FIELD, sealed, 10, back, sizeof(back), &bl), -1);
    assert_int_equal(redact_open(&s->k, 42, FIELD, sealed, sl, back, sizeof(back), &bl), 0);
}

/* a sealed value moved to another record (seq) or field does not open; nor under another key */
static void test_seal_ad_mismatch_fails(void **state)
{
    struct sfx *s = *state;
    struct redact_data_key other;
    uint8_t sealed[128], back[128];
    size_t sl, bl;

    assert_int_equal(redact_seal(&s->k, 42, FIELD, secret, strlen(secret), sealed, sizeof(sealed), &sl), 0);
    assert_int_equal(redact_open(&s->k, 43, FIELD, sealed, sl, back, sizeof(back), &bl), -1);
    assert_int_equal(redact_open(&s->k, 42, "request.headers.cookie", sealed, sl, back, sizeof(back), &bl), -1);
    assert_int_equal(redact_open(&s->k, 42, FIELD ".", sealed, sl, back, sizeof(back), &bl), -1);
    assert_int_equal(redact_data_key_new(&other), 0);
    assert_int_equal(redact_open(&other, 42, FIELD, sealed, sl, back, sizeof(back), &bl), -1);
    redact_data_key_wipe(&other);
}

/* buffers that are too small are refused, not overrun */
static void test_seal_small_buffers_refused(void **state)
{
    struct sfx *s = *state;
    uint8_t sealed[128], back[8];
    size_t sl, bl;

    assert_int_equal(redact_seal(&s->k, 1, FIELD, secret, strlen(secret), sealed, strlen(secret) + 39, &sl), -1);
    assert_int_equal(redact_seal(&s->k, 1, FIELD, secret, strlen(secret), sealed, sizeof(sealed), &sl), 0);
    assert_int_equal(redact_open(&s->k, 1, FIELD, sealed, sl, back, sizeof(back), &bl), -1);
}

/* a data key sealed to a role opens with that role's key pair only, and not once altered */
static void test_seal_data_key_to_role(void **state)
{
    struct sfx *s = *state;
    uint8_t pk[32], sk[32], pk2[32], sk2[32], sealed[REDACT_SEALED_KEY_BYTES];
    struct redact_data_key back;

    crypto_box_keypair(pk, sk);
    crypto_box_keypair(pk2, sk2);
    assert_int_equal(redact_data_key_seal(&s->k, pk, sealed), 0);
    assert_int_equal(redact_data_key_open(&back, sealed, pk, sk), 0);
    assert_memory_equal(back.bytes, s->k.bytes, REDACT_DATA_KEY_BYTES);
    assert_int_equal(redact_data_key_open(&back, sealed, pk2, sk2), -1);
    sealed[REDACT_SEALED_KEY_BYTES - 1] ^= 0x80;
    assert_int_equal(redact_data_key_open(&back, sealed, pk, sk), -1);
}

/* the whole chain: value under a data key, data key to a role, role opens and reads the value */
static void test_seal_reveal_chain(void **state)
{
    struct sfx *s = *state;
    char path[256], err[256];
    uint8_t pk[32], pk2[32], sk[32], skey[REDACT_SEALED_KEY_BYTES], sealed[128], back[128];
    struct redact_data_key dk;
    size_t sl, bl;

    snprintf(path, sizeof(path), "%s/dlp.key", s->dir);
    assert_int_equal(redact_role_key_create(path, pk, err, sizeof(err)), 0);
    assert_int_equal(redact_data_key_seal(&s->k, pk, skey), 0);
    assert_int_equal(redact_seal(&s->k, 9, "request.query", "token=abc", 9, sealed, sizeof(sealed), &sl), 0);
    assert_int_equal(redact_role_key_load(path, pk2, sk, err, sizeof(err)), 0);
    assert_memory_equal(pk, pk2, 32);
    assert_int_equal(redact_data_key_open(&dk, skey, pk2, sk), 0);
    assert_int_equal(redact_open(&dk, 9, "request.query", sealed, sl, back, sizeof(back), &bl), 0);
    assert_memory_equal(back, "token=abc", 9);
    sodium_memzero(sk, sizeof(sk));
    redact_data_key_wipe(&dk);
}

/* role key files: 0600, never overwritten, refused when group or others can read them */
static void test_seal_role_key_file_modes(void **state)
{
    struct sfx *s = *state;
    char path[256], err[256];
    uint8_t pk[32], sk[32];
    struct stat st;

    snprintf(path, sizeof(path), "%s/auditor.key", s->dir);
    assert_int_equal(redact_role_key_create(path, pk, err, sizeof(err)), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(redact_role_key_create(path, pk, err, sizeof(err)), -1);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(redact_role_key_load(path, pk, sk, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "0644"));
    write_file(s->dir, "junk.key", "not base64 at all!\n", path, sizeof(path));
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(redact_role_key_load(path, pk, sk, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seal_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_nonce_fresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_tamper_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_ad_mismatch_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_small_buffers_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_data_key_to_role, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_reveal_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_role_key_file_modes, setup, teardown),
    };
    return cmocka_run_group_tests_name("redact/seal", tests, NULL, NULL);
}
