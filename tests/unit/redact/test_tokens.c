/* tests/unit/redact/test_tokens.c - tokens and the key ring: the exact construction, determinism
 * under one key, separation across keys and classes, rotation with old tokens still verifiable,
 * and the key files' modes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <sodium.h>

#include "helpers.h"
#include "redact/redact-int.h"

static int is_token(const char *t, const char *cls, const char *kid)
{
    char prefix[128];
    const char *h;
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    snprintf(prefix, sizeof(prefix), "tok:%s:%s:", cls, kid);
    if (strncmp(t, prefix, strlen(prefix)) != 0)
        return 0;
    h = t + strlen(prefix);
    if (strlen(h) != REDACT_TOKEN_HASH_LEN || h[0] > '7')
        return 0;
    return strspn(h, alphabet) == REDACT_TOKEN_HASH_LEN;
}

/* the token is tok:<class>:<key-id>:<base32 of BLAKE2b-128(key; class ‖ 0 ‖ value)> */
static void test_tokens_exact_construction(void **state)
{
    struct fx *f = *state;
    char tok[REDACT_TOKEN_MAX], want[REDACT_TOKEN_HASH_LEN + 1], path[256];
    uint8_t key[32], h[16], msg[64];
    int fd;

    assert_int_equal(redact_token_make(f->kr, "pii.email", "a@b.example", 11, tok), 0);
    assert_true(is_token(tok, "pii.email", "k1"));
    snprintf(path, sizeof(path), "%s/token-k1.key", f->keys);
    fd = open(path, O_RDONLY);
    assert_true(fd != -1);
    assert_int_equal(read(fd, key, sizeof(key)), 32);
    close(fd);
    memcpy(msg, "pii.email\0a@b.example", 21);
    crypto_generichash(h, sizeof(h), msg, 21, key, sizeof(key));
    redact_base32_128(h, want);
    assert_string_equal(tok + strlen("tok:pii.email:k1:"), want);
}

/* Crockford base32 of 128 bits: 26 digits, the first one carrying the top 3 bits */
static void test_tokens_base32_vectors(void **state)
{
    uint8_t h[16];
    char out[REDACT_TOKEN_HASH_LEN + 1];

    memset(h, 0xFF, sizeof(h));
    redact_base32_128(h, out);
    assert_string_equal(out, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
    memset(h, 0, sizeof(h));
    redact_base32_128(h, out);
    assert_string_equal(out, "00000000000000000000000000");
    h[15] = 0x21; /* 0b100001: digits "1" and "1" */
    redact_base32_128(h, out);
    assert_string_equal(out, "00000000000000000000000011");
    (void)state;
}

/* the same value gives the same token, across contexts and after reopening the ring */
static void test_tokens_deterministic_under_one_key(void **state)
{
    struct fx *f = *state;
    char a[REDACT_TOKEN_MAX], b[REDACT_TOKEN_MAX], err[256];
    struct redact_keyring *again;
    struct redact *rd2;
    struct redact_result r2;

    str_check(f, "mail jane@example.com", CLASSES("pii.email"), "jane");
    strcpy(a, f->res.matches[0].token);
    str_check(f, "other text, jane@example.com again", CLASSES("pii.email"), "jane");
    assert_string_equal(f->res.matches[0].token, a);
    again = redact_keyring_open(f->keys, err, sizeof(err));
    assert_non_null(again);
    rd2 = redact_new(NULL, again, err, sizeof(err));
    assert_non_null(rd2);
    redact_result_init(&r2);
    assert_int_equal(redact_string(rd2, "jane@example.com", 16, &r2), 0);
    assert_int_equal(r2.nmatches, 1);
    assert_string_equal(r2.matches[0].token, a);
    assert_int_equal(redact_token_make(again, "pii.email", "jane@example.com", 16, b), 0);
    assert_string_equal(a, b);
    redact_result_fini(&r2);
    redact_free(rd2);
    redact_keyring_free(again);
}

/* two key rings give unrelated tokens; two classes give unrelated hashes for one value */
static void test_tokens_key_and_class_separation(void **state)
{
    struct fx *f = *state, *g = fx_new_ctx(NULL, 0);
    char a[REDACT_TOKEN_MAX], b[REDACT_TOKEN_MAX], c[REDACT_TOKEN_MAX];

    assert_int_equal(redact_token_make(f->kr, "pii.ssn", "123-45-6789", 11, a), 0);
    assert_int_equal(redact_token_make(g->kr, "pii.ssn", "123-45-6789", 11, b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(redact_token_make(f->kr, "pii.phone", "123-45-6789", 11, c), 0);
    assert_string_not_equal(strrchr(a, ':'), strrchr(c, ':'));
    assert_int_equal(redact_token_verify(g->kr, "123-45-6789", 11, a), REDACT_VERIFY_NO_MATCH);
    fx_free(g);
}

/* verify: match, another value, a class changed in the token, an unknown key, junk */
static void test_tokens_verify_outcomes(void **state)
{
    struct fx *f = *state;
    char t[REDACT_TOKEN_MAX], forged[REDACT_TOKEN_MAX];

    assert_int_equal(redact_token_make(f->kr, "credential.bearer", "s3cret", 6, t), 0);
    assert_int_equal(redact_token_verify(f->kr, "s3cret", 6, t), REDACT_VERIFY_MATCH);
    assert_int_equal(redact_token_verify(f->kr, "s3creT", 6, t), REDACT_VERIFY_NO_MATCH);
    snprintf(forged, sizeof(forged), "tok:credential.basic:%s", t + strlen("tok:credential.bearer:"));
    assert_int_equal(redact_token_verify(f->kr, "s3cret", 6, forged), REDACT_VERIFY_NO_MATCH);
    snprintf(forged, sizeof(forged), "tok:credential.bearer:k9:%s", strrchr(t, ':') + 1);
    assert_int_equal(redact_token_verify(f->kr, "s3cret", 6, forged), REDACT_VERIFY_UNKNOWN_KEY);
    assert_int_equal(redact_token_verify(f->kr, "s3cret", 6, "tok:x:k1:short"), REDACT_VERIFY_MALFORMED);
    assert_int_equal(redact_token_verify(f->kr, "s3cret", 6, "nope"), REDACT_VERIFY_MALFORMED);
    assert_int_equal(redact_token_verify(f->kr, "s3cret", 6, "tok:Bad Class:k1:00000000000000000000000000"),
                     REDACT_VERIFY_MALFORMED);
    assert_int_equal(redact_token_make(f->kr, "Not.Valid", "x", 1, t), -1);
}

/* rotation: k2 becomes current, new tokens differ, k1 tokens still verify, a reopen agrees */
static void test_tokens_rotation_keeps_old_verifiable(void **state)
{
    struct fx *f = *state;
    char t1[REDACT_TOKEN_MAX], t2[REDACT_TOKEN_MAX], err[256];
    struct redact_keyring *again;

    assert_string_equal(redact_keyring_current(f->kr), "k1");
    str_check(f, "jane@example.com", CLASSES("pii.email"), "jane");
    strcpy(t1, f->res.matches[0].token);
    assert_int_equal(redact_keyring_rotate(f->kr, err, sizeof(err)), 0);
    assert_string_equal(redact_keyring_current(f->kr), "k2");
    assert_int_equal(redact_keyring_count(f->kr), 2);
    str_check(f, "jane@example.com", CLASSES("pii.email"), "jane");
    strcpy(t2, f->res.matches[0].token);
    assert_true(is_token(t2, "pii.email", "k2"));
    assert_string_not_equal(strrchr(t1, ':'), strrchr(t2, ':'));
    assert_int_equal(redact_token_verify(f->kr, "jane@example.com", 16, t1), REDACT_VERIFY_MATCH);
    assert_int_equal(redact_token_verify(f->kr, "jane@example.com", 16, t2), REDACT_VERIFY_MATCH);
    again = redact_keyring_open(f->keys, err, sizeof(err));
    assert_non_null(again);
    assert_string_equal(redact_keyring_current(again), "k2");
    assert_int_equal(redact_token_verify(again, "jane@example.com", 16, t1), REDACT_VERIFY_MATCH);
    assert_int_equal(redact_keyring_rotate(again, err, sizeof(err)), 0);
    assert_string_equal(redact_keyring_current(again), "k3");
    redact_keyring_free(again);
}

/* key files are created 0600 in a 0700 directory; a key readable by others is refused */
static void test_tokens_key_file_modes(void **state)
{
    struct fx *f = *state;
    char path[256], err[512];
    struct stat st;
    struct redact_keyring *kr;

    snprintf(path, sizeof(path), "%s/token-k1.key", f->keys);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 32);
    assert_int_equal(stat(f->keys, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(chmod(path, 0640), 0);
    kr = redact_keyring_open(f->keys, err, sizeof(err));
    assert_null(kr);
    assert_non_null(strstr(err, "token-k1.key"));
    assert_non_null(strstr(err, "0640"));
    assert_int_equal(chmod(path, 0604), 0);
    assert_null(redact_keyring_open(f->keys, err, sizeof(err)));
    assert_int_equal(chmod(path, 0600), 0);
    kr = redact_keyring_open(f->keys, err, sizeof(err));
    assert_non_null(kr);
    redact_keyring_free(kr);
}

/* a key file of the wrong size is refused, not padded */
static void test_tokens_key_file_size_checked(void **state)
{
    struct fx *f = *state;
    char path[256], err[512];

    write_file(f->keys, "token-k2.key", "short", path, sizeof(path));
    assert_int_equal(chmod(path, 0600), 0);
    assert_null(redact_keyring_open(f->keys, err, sizeof(err)));
    assert_non_null(strstr(err, "token-k2.key"));
    unlink(path);
}

/* a first open creates the directory tree and key k1 */
static void test_tokens_first_open_creates(void **state)
{
    struct fx *f = *state;
    char dir[256], err[256];
    struct redact_keyring *kr;

    snprintf(dir, sizeof(dir), "%s/data/deeper/keys", f->dir);
    kr = redact_keyring_open(dir, err, sizeof(err));
    assert_non_null(kr);
    assert_string_equal(redact_keyring_current(kr), "k1");
    assert_int_equal(redact_keyring_count(kr), 1);
    redact_keyring_free(kr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tokens_exact_construction, fx_setup_keys, fx_teardown),
        cmocka_unit_test(test_tokens_base32_vectors),
        cmocka_unit_test_setup_teardown(test_tokens_deterministic_under_one_key, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tokens_key_and_class_separation, fx_setup_keys, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tokens_verify_outcomes, fx_setup_keys, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tokens_rotation_keeps_old_verifiable, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tokens_key_file_modes, fx_setup_keys, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tokens_key_file_size_checked, fx_setup_keys, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tokens_first_open_creates, fx_setup_keys, fx_teardown),
    };
    return cmocka_run_group_tests_name("redact/tokens", tests, NULL, NULL);
}
