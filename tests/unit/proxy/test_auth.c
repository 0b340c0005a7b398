/* tests/unit/proxy/test_auth.c - Basic proxy authentication: parsing, password files,
 * verification, the credential cache, the challenge and password hashing.
 *
 * Password files are written into a fresh temporary directory. Their hashes use libsodium's
 * minimum cost so that the suite stays fast; proxy_auth_hash_password() itself is exercised
 * once at its real (interactive) cost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "proxy/auth-int.h"
#include "proxy/auth.h"

struct fixture {
    char dir[64];
    char path[128];
    char alice[PROXY_AUTH_HASH_MAX]; /* hash of "wonderland" */
    char bob[PROXY_AUTH_HASH_MAX];   /* hash of "b:c" */
};

static void fast_hash(const char *pass, char *out)
{
    assert_int_equal(crypto_pwhash_str_alg(out, pass, strlen(pass), crypto_pwhash_OPSLIMIT_MIN,
                                           crypto_pwhash_MEMLIMIT_MIN, crypto_pwhash_ALG_ARGON2ID13),
                     0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_true(sodium_init() >= 0);
    snprintf(f->dir, sizeof(f->dir), "/tmp/vigil-auth-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/passwd", f->dir);
    fast_hash("wonderland", f->alice);
    fast_hash("b:c", f->bob);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void write_file(const struct fixture *f, const char *text, mode_t mode)
{
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(f->path, mode), 0);
}

/* The standard two-user file: alice / wonderland, bob / b:c. */
static struct proxy_auth *load_standard(const struct fixture *f, const char *realm)
{
    char text[1024], err[256];
    snprintf(text, sizeof(text), "\xef\xbb\xbf# vigil users\n\nalice:%s\r\n   # indented comment\nbob:%s  \t\n", f->alice,
             f->bob);
    write_file(f, text, 0600);
    struct proxy_auth *a = proxy_auth_load(f->path, realm, err, sizeof(err));
    if (!a)
        fail_msg("load: %s", err);
    return a;
}

static enum proxy_auth_result parse(const char *v, char *user, char *pass)
{
    return proxy_auth_parse(v, v ? strlen(v) : 0, user, PROXY_AUTH_USER_MAX, pass, PROXY_AUTH_PASS_MAX);
}

/* "Basic" in any case, blanks around, padding optional, the split at the first ':' */
static void test_auth_parse_good_headers(void **state)
{
    char user[PROXY_AUTH_USER_MAX], pass[PROXY_AUTH_PASS_MAX];
    (void)state;
    assert_int_equal(parse("Basic dXNlcjpwYXNz", user, pass), PROXY_AUTH_OK); /* user:pass */
    assert_string_equal(user, "user");
    assert_string_equal(pass, "pass");
    assert_int_equal(parse("bAsIc \t dXNlcjpwYXNz \t", user, pass), PROXY_AUTH_OK);
    assert_string_equal(user, "user");
    assert_int_equal(parse("  BASIC YWxpY2U6YTpiOmM=", user, pass), PROXY_AUTH_OK); /* alice:a:b:c */
    assert_string_equal(user, "alice");
    assert_string_equal(pass, "a:b:c");
    assert_int_equal(parse("Basic YWxpY2U6YTpiOmM", user, pass), PROXY_AUTH_OK); /* no padding */
    assert_string_equal(pass, "a:b:c");
    assert_int_equal(parse("Basic dXNlcjo=", user, pass), PROXY_AUTH_OK); /* user: (empty password) */
    assert_string_equal(user, "user");
    assert_string_equal(pass, "");
    assert_int_equal(parse("Basic w6Rzw7Y6cMOkc3M=", user, pass), PROXY_AUTH_OK); /* UTF-8 "äsö:päss" */
    assert_string_equal(user, "\xc3\xa4s\xc3\xb6");
    assert_string_equal(pass, "p\xc3\xa4ss");
    /* the length bounds the value: bytes after it are not read */
    assert_int_equal(proxy_auth_parse("Basic dXNlcjpwYXNzGARBAGE", 18, user, sizeof(user), pass, sizeof(pass)),
                     PROXY_AUTH_OK);
    assert_string_equal(pass, "pass");
}

/* absent or blank is MISSING; every other defect is MALFORMED and leaves the buffers empty */
static void test_auth_parse_bad_headers(void **state)
{
    char user[PROXY_AUTH_USER_MAX], pass[PROXY_AUTH_PASS_MAX];
    (void)state;
    assert_int_equal(parse(NULL, user, pass), PROXY_AUTH_MISSING);
    assert_int_equal(parse("", user, pass), PROXY_AUTH_MISSING);
    assert_int_equal(parse(" \t ", user, pass), PROXY_AUTH_MISSING);

    static const char *const bad[] = {
        "Bearer dXNlcjpwYXNz",     /* another scheme */
        "Digest username=\"u\"",   /* another scheme */
        "Basic",                   /* no credentials */
        "Basic   ",                /* no credentials */
        "BasicdXNlcjpwYXNz",       /* no blank after the scheme */
        "Basi dXNlcjpwYXNz",       /* not the scheme */
        "Basic dXNlcjpwYXNz dXM=", /* two tokens */
        "Basic !!!!",              /* not base64 */
        "Basic dXNlcjpwYXNz=",     /* wrong padding */
        "Basic dXNlcnBhc3M=",      /* "userpass": no ':' */
        "Basic OnBhc3M=",          /* ":pass": empty user */
        "Basic dXMJZXI6cGFzcw==",  /* "us\ter:pass" */
        "Basic dXNlcjpwYQpzcw==",  /* "user:pa\nss" */
        "Basic dXNlcjpwYQ1zcw==",  /* "user:pa\rss" */
        "Basic dXNlcjpwYQBzcw==",  /* "user:pa\0ss" */
        "Basic dXNlcjpwYX9zcw==",  /* "user:pa\x7fss" */
        "Basic dXNlcjpwYXNz\x01",  /* a control character outside the base64 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(user, "stale");
        strcpy(pass, "stale");
        enum proxy_auth_result r = parse(bad[i], user, pass);
        if (r != PROXY_AUTH_MALFORMED)
            fail_msg("\"%s\": %s", bad[i], proxy_auth_result_name(r));
        assert_string_equal(user, "");
        assert_string_equal(pass, "");
    }

    /* credentials longer than the caller's buffers */
    char small_user[5], small_pass[4];
    assert_int_equal(proxy_auth_parse("Basic dXNlcjpwYXNz", 18, small_user, 4, pass, sizeof(pass)),
                     PROXY_AUTH_MALFORMED); /* "user" needs 5 bytes */
    assert_int_equal(proxy_auth_parse("Basic dXNlcjpwYXNz", 18, user, sizeof(user), small_pass, sizeof(small_pass)),
                     PROXY_AUTH_MALFORMED);
    assert_int_equal(proxy_auth_parse("Basic dXNlcjpwYXM=", 18, small_user, sizeof(small_user), small_pass,
                                      sizeof(small_pass)),
                     PROXY_AUTH_OK); /* "user:pas" fits exactly */

    /* a huge token is refused without decoding */
    size_t n = 8192;
    char *huge = malloc(n + 7);
    assert_non_null(huge);
    memcpy(huge, "Basic ", 6);
    memset(huge + 6, 'A', n);
    huge[6 + n] = '\0';
    assert_int_equal(parse(huge, user, pass), PROXY_AUTH_MALFORMED);
    free(huge);
}

/* a BOM, comments, blank lines, CRLF and trailing blanks are accepted; the users are loaded */
static void test_auth_load_valid_file(void **state)
{
    struct fixture *f = *state;
    struct proxy_auth *a = load_standard(f, NULL);
    assert_int_equal(proxy_auth_count(a), 2);
    proxy_auth_free(a);
    proxy_auth_free(NULL);
}

static void load_fails(const struct fixture *f, const char *text, mode_t mode, const char *want)
{
    char err[512];
    write_file(f, text, mode);
    struct proxy_auth *a = proxy_auth_load(f->path, NULL, err, sizeof(err));
    if (a) {
        proxy_auth_free(a);
        fail_msg("loaded, wanted error \"%s\"", want);
    }
    if (!strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
    if (strncmp(err, f->path, strlen(f->path)) != 0)
        fail_msg("error \"%s\" does not name the file", err);
    /* diagnostics carry neither hashes nor passwords */
    assert_null(strstr(err, "$argon2"));
    assert_null(strstr(err, "hunter2"));
}

/* each bad line is reported with the file and its line number, and nothing secret */
static void test_auth_load_bad_lines_name_line(void **state)
{
    struct fixture *f = *state;
    char text[1024], want[256];

    snprintf(text, sizeof(text), "# users\nalice:%s\nno-colon-here\n", f->alice);
    snprintf(want, sizeof(want), "%s:3: expected user:hash", f->path);
    load_fails(f, text, 0600, want);

    snprintf(text, sizeof(text), "alice:%s\n\n\ncarol:hunter2\n", f->alice); /* plaintext password */
    snprintf(want, sizeof(want), "%s:4: not a crypto_pwhash_str hash", f->path);
    load_fails(f, text, 0600, want);

    snprintf(text, sizeof(text), "alice:%s\n:%s\n", f->alice, f->bob); /* empty user */
    snprintf(want, sizeof(want), "%s:2: bad user name", f->path);
    load_fails(f, text, 0600, want);

    snprintf(text, sizeof(text), "al\x01ice:%s\n", f->alice); /* control character in the user */
    snprintf(want, sizeof(want), "%s:1: bad user name", f->path);
    load_fails(f, text, 0600, want);

    snprintf(text, sizeof(text), "alice:%s\nbob:%s\n# again\nalice:%s\n", f->alice, f->bob, f->bob);
    snprintf(want, sizeof(want), "%s:4: duplicate user (first on line 1)", f->path);
    load_fails(f, text, 0600, want);

    snprintf(text, sizeof(text), "alice:%s x\n", f->alice); /* a blank inside the hash */
    snprintf(want, sizeof(want), "%s:1: not a crypto_pwhash_str hash", f->path);
    load_fails(f, text, 0600, want);

    snprintf(want, sizeof(want), "%s: no users", f->path);
    load_fails(f, "# nobody yet\n\n", 0600, want);
    load_fails(f, "", 0600, want);

    char *longline = malloc(5000);
    assert_non_null(longline);
    memset(longline, 'a', 4999);
    longline[4999] = '\0';
    snprintf(want, sizeof(want), "%s:1: line longer than", f->path);
    load_fails(f, longline, 0600, want);
    free(longline);
}

/* a file others may read, write or execute is refused, whatever its content */
static void test_auth_load_refuses_other_access(void **state)
{
    struct fixture *f = *state;
    char text[512], err[256];
    snprintf(text, sizeof(text), "alice:%s\n", f->alice);
    load_fails(f, text, 0644, "accessible by others (mode 0644)");
    load_fails(f, text, 0604, "accessible by others (mode 0604)");
    load_fails(f, text, 0602, "accessible by others (mode 0602)");
    load_fails(f, text, 0601, "accessible by others (mode 0601)");

    /* owner and group only are fine */
    write_file(f, text, 0640);
    struct proxy_auth *a = proxy_auth_load(f->path, NULL, err, sizeof(err));
    assert_non_null(a);
    proxy_auth_free(a);

    /* a missing file and a directory are reported by name */
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/nope", f->dir);
    assert_null(proxy_auth_load(missing, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, missing));
    assert_null(proxy_auth_load(f->dir, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "not a regular file"));

    /* a realm with a control character is refused */
    assert_null(proxy_auth_load(f->path, "bad\nrealm", err, sizeof(err)));
    assert_non_null(strstr(err, "realm"));
}

/* the right password verifies; a wrong one, an unknown user, or another user's password do not */
static void test_auth_verify_good_bad_unknown(void **state)
{
    struct fixture *f = *state;
    struct proxy_auth *a = load_standard(f, NULL);
    assert_int_equal(proxy_auth_verify(a, "alice", "wonderland"), PROXY_AUTH_OK);
    assert_int_equal(proxy_auth_verify(a, "bob", "b:c"), PROXY_AUTH_OK);
    assert_int_equal(proxy_auth_verify(a, "alice", "Wonderland"), PROXY_AUTH_BAD);
    assert_int_equal(proxy_auth_verify(a, "alice", ""), PROXY_AUTH_BAD);
    assert_int_equal(proxy_auth_verify(a, "alice", "b:c"), PROXY_AUTH_BAD);
    assert_int_equal(proxy_auth_verify(a, "Alice", "wonderland"), PROXY_AUTH_BAD); /* users are case-sensitive */
    assert_int_equal(proxy_auth_verify(a, "carol", "wonderland"), PROXY_AUTH_BAD);
    assert_int_equal(proxy_auth_verify(a, "", ""), PROXY_AUTH_BAD);
    proxy_auth_free(a);
}

static int64_t fake_now;
static int64_t fake_clock(void)
{
    return fake_now;
}

/* only a credential verified within the TTL is a cache hit; nothing else ever is */
static void test_auth_cache_hit_after_verify(void **state)
{
    struct fixture *f = *state;
    struct proxy_auth *a = load_standard(f, NULL);
    fake_now = 1000;
    proxy_auth_set_clock(a, fake_clock);

    assert_int_equal(proxy_auth_check_cached(a, "alice", "wonderland"), PROXY_AUTH_UNKNOWN);
    assert_int_equal(proxy_auth_verify(a, "alice", "wonderland"), PROXY_AUTH_OK);
    assert_int_equal(proxy_auth_check_cached(a, "alice", "wonderland"), PROXY_AUTH_OK);
    /* a different password, user, or split of the same bytes misses */
    assert_int_equal(proxy_auth_check_cached(a, "alice", "wonderland2"), PROXY_AUTH_UNKNOWN);
    assert_int_equal(proxy_auth_check_cached(a, "alice", "wonderlan"), PROXY_AUTH_UNKNOWN);
    assert_int_equal(proxy_auth_check_cached(a, "bob", "wonderland"), PROXY_AUTH_UNKNOWN);
    assert_int_equal(proxy_auth_check_cached(a, "alicew", "onderland"), PROXY_AUTH_UNKNOWN);
    /* failed verifications are not cached */
    assert_int_equal(proxy_auth_verify(a, "bob", "wrong"), PROXY_AUTH_BAD);
    assert_int_equal(proxy_auth_check_cached(a, "bob", "wrong"), PROXY_AUTH_UNKNOWN);
    assert_int_equal(proxy_auth_verify(a, "carol", "x"), PROXY_AUTH_BAD);
    assert_int_equal(proxy_auth_check_cached(a, "carol", "x"), PROXY_AUTH_UNKNOWN);

    /* entries expire after the TTL; a fresh verify renews them */
    fake_now += PROXY_AUTH_CACHE_TTL_S - 1;
    assert_int_equal(proxy_auth_check_cached(a, "alice", "wonderland"), PROXY_AUTH_OK);
    fake_now += 1;
    assert_int_equal(proxy_auth_check_cached(a, "alice", "wonderland"), PROXY_AUTH_UNKNOWN);
    assert_int_equal(proxy_auth_verify(a, "alice", "wonderland"), PROXY_AUTH_OK);
    assert_int_equal(proxy_auth_check_cached(a, "alice", "wonderland"), PROXY_AUTH_OK);
    proxy_auth_free(a);

    /* a reload starts with an empty cache */
    a = load_standard(f, NULL);
    assert_int_equal(proxy_auth_check_cached(a, "alice", "wonderland"), PROXY_AUTH_UNKNOWN);
    proxy_auth_free(a);
}

/* the cache never holds more than PROXY_AUTH_CACHE_ENTRIES credentials, and the newest is kept */
static void test_auth_cache_bounded(void **state)
{
    struct fixture *f = *state;
    enum { NUSERS = PROXY_AUTH_CACHE_ENTRIES * 2 };
    size_t cap = (size_t)NUSERS * (PROXY_AUTH_HASH_MAX + 16);
    char *text = malloc(cap), err[256], user[16], hash[PROXY_AUTH_HASH_MAX];
    size_t o = 0;
    assert_non_null(text);
    for (int i = 0; i < NUSERS; i++) {
        snprintf(user, sizeof(user), "u%d", i);
        fast_hash(user, hash); /* password = user name */
        o += (size_t)snprintf(text + o, cap - o, "%s:%s\n", user, hash);
    }
    write_file(f, text, 0600);
    free(text);
    struct proxy_auth *a = proxy_auth_load(f->path, NULL, err, sizeof(err));
    assert_non_null(a);
    assert_int_equal(proxy_auth_count(a), NUSERS);
    for (int i = 0; i < NUSERS; i++) {
        snprintf(user, sizeof(user), "u%d", i);
        assert_int_equal(proxy_auth_verify(a, user, user), PROXY_AUTH_OK);
    }
    int hits = 0;
    for (int i = 0; i < NUSERS; i++) {
        snprintf(user, sizeof(user), "u%d", i);
        hits += proxy_auth_check_cached(a, user, user) == PROXY_AUTH_OK;
    }
    assert_true(hits <= PROXY_AUTH_CACHE_ENTRIES);
    assert_true(hits >= PROXY_AUTH_CACHE_ENTRIES / 2); /* most of the table is in use */
    snprintf(user, sizeof(user), "u%d", NUSERS - 1);
    assert_int_equal(proxy_auth_check_cached(a, user, user), PROXY_AUTH_OK);
    proxy_auth_free(a);
}

struct race {
    struct proxy_auth *a;
    int ok;
};

static void *race_thread(void *arg)
{
    struct race *r = arg;
    r->ok = 1;
    for (int i = 0; i < 200; i++) {
        if (proxy_auth_check_cached(r->a, "alice", "wonderland") == PROXY_AUTH_UNKNOWN &&
            proxy_auth_verify(r->a, "alice", "wonderland") != PROXY_AUTH_OK)
            r->ok = 0;
        if (proxy_auth_check_cached(r->a, "bob", "nope") != PROXY_AUTH_UNKNOWN)
            r->ok = 0;
        if (i % 20 == 0 && proxy_auth_verify(r->a, "bob", "b:c") != PROXY_AUTH_OK)
            r->ok = 0;
    }
    return NULL;
}

/* checks and verifications from several threads at once agree with the single-threaded answers */
static void test_auth_threads_share_one_auth(void **state)
{
    struct fixture *f = *state;
    struct proxy_auth *a = load_standard(f, NULL);
    pthread_t t[4];
    struct race r[4];
    for (int i = 0; i < 4; i++) {
        r[i].a = a;
        assert_int_equal(pthread_create(&t[i], NULL, race_thread, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_true(r[i].ok);
    }
    proxy_auth_free(a);
}

/* the challenge names the realm as a quoted-string and the charset */
static void test_auth_challenge_text(void **state)
{
    struct fixture *f = *state;
    char out[128];
    struct proxy_auth *a = load_standard(f, NULL);
    proxy_auth_challenge(a, out, sizeof(out));
    assert_string_equal(out, "Basic realm=\"vigil\", charset=\"UTF-8\"");
    proxy_auth_challenge(a, out, 10);
    assert_string_equal(out, "Basic rea");
    proxy_auth_free(a);

    a = load_standard(f, "Corp \"egress\" \\ proxy");
    proxy_auth_challenge(a, out, sizeof(out));
    assert_string_equal(out, "Basic realm=\"Corp \\\"egress\\\" \\\\ proxy\", charset=\"UTF-8\"");
    proxy_auth_free(a);
}

/* a hash from proxy_auth_hash_password works in a password file; unusable passwords are refused */
static void test_auth_hash_password_roundtrip(void **state)
{
    struct fixture *f = *state;
    char hash[PROXY_AUTH_HASH_MAX], text[512], err[256];
    assert_int_equal(proxy_auth_hash_password("correct horse", hash, sizeof(hash)), 0);
    assert_memory_equal(hash, "$argon2id$", 10);
    snprintf(text, sizeof(text), "dave:%s\n", hash);
    write_file(f, text, 0600);
    struct proxy_auth *a = proxy_auth_load(f->path, NULL, err, sizeof(err));
    assert_non_null(a);
    assert_int_equal(proxy_auth_verify(a, "dave", "correct horse"), PROXY_AUTH_OK);
    assert_int_equal(proxy_auth_verify(a, "dave", "correct horse "), PROXY_AUTH_BAD);
    assert_int_equal(proxy_auth_check_cached(a, "dave", "correct horse"), PROXY_AUTH_OK);
    proxy_auth_free(a);

    assert_int_equal(proxy_auth_hash_password("", hash, sizeof(hash)), -1);
    assert_int_equal(proxy_auth_hash_password("line\n", hash, sizeof(hash)), -1);
    assert_int_equal(proxy_auth_hash_password("ok", hash, PROXY_AUTH_HASH_MAX - 1), -1);
}

/* user names for the file: non-empty, short, no ':' nor control characters */
static void test_auth_user_valid_and_names(void **state)
{
    char longname[PROXY_AUTH_USER_MAX + 1];
    (void)state;
    assert_true(proxy_auth_user_valid("alice"));
    assert_true(proxy_auth_user_valid("svc-build@corp"));
    assert_false(proxy_auth_user_valid(""));
    assert_false(proxy_auth_user_valid("a:b"));
    assert_false(proxy_auth_user_valid("a\tb"));
    memset(longname, 'x', PROXY_AUTH_USER_MAX);
    longname[PROXY_AUTH_USER_MAX] = '\0';
    assert_false(proxy_auth_user_valid(longname));
    longname[PROXY_AUTH_USER_MAX - 1] = '\0';
    assert_true(proxy_auth_user_valid(longname));

    assert_string_equal(proxy_auth_result_name(PROXY_AUTH_OK), "ok");
    assert_string_equal(proxy_auth_result_name(PROXY_AUTH_MISSING), "missing");
    assert_string_equal(proxy_auth_result_name(PROXY_AUTH_MALFORMED), "malformed");
    assert_string_equal(proxy_auth_result_name(PROXY_AUTH_BAD), "bad");
    assert_string_equal(proxy_auth_result_name(PROXY_AUTH_UNKNOWN), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_parse_good_headers),
        cmocka_unit_test(test_auth_parse_bad_headers),
        cmocka_unit_test_setup_teardown(test_auth_load_valid_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_load_bad_lines_name_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_load_refuses_other_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_verify_good_bad_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_cache_hit_after_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_cache_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_threads_share_one_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_challenge_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_hash_password_roundtrip, setup, teardown),
        cmocka_unit_test(test_auth_user_valid_and_names),
    };
    return cmocka_run_group_tests_name("proxy/auth", tests, NULL, NULL);
}
