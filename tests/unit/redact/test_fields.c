/* tests/unit/redact/test_fields.c - field rules: header values by name (Authorization schemes,
 * cookies, API-key headers, URL-valued headers), URL userinfo, query and fragment parameters,
 * path segments; names and structure are kept, values become tokens, and the spans point at
 * the values in the input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "helpers.h"

static const struct redact_result *hdr(struct fx *f, const char *name, const char *value, const char *const *classes,
                                       const char *secret)
{
    assert_int_equal(redact_header(f->rd, name, strlen(name), value, strlen(value), &f->res), 0);
    check_result(value, strlen(value), &f->res, classes, secret);
    return &f->res;
}

static const struct redact_result *url(struct fx *f, const char *u, const char *const *classes, const char *secret)
{
    assert_int_equal(redact_url(f->rd, u, strlen(u), &f->res), 0);
    check_result(u, strlen(u), &f->res, classes, secret);
    return &f->res;
}

/* Authorization keeps its scheme; the class follows the scheme */
static void test_fields_authorization_by_scheme(void **state)
{
    struct fx *f = *state;
    char buf[64];

    hdr(f, "Authorization", "Bearer abc.def", CLASSES("credential.bearer"), "abc.def");
    assert_true(strncmp(f->res.out, "Bearer tok:credential.bearer:k1:", 32) == 0);
    assert_string_equal(match_text("Bearer abc.def", &f->res, 0, buf, sizeof(buf)), "abc.def");
    hdr(f, "authorization", "basic dXNlcjpwYXNz", CLASSES("credential.basic"), "dXNlcjpwYXNz");
    assert_true(strncmp(f->res.out, "basic tok:credential.basic:", 27) == 0);
    hdr(f, "AUTHORIZATION", "Digest username=\"bob\", response=\"6629fae49393a05397450978507c4ef1\"",
        CLASSES("credential.authorization"), "6629fae4");
    assert_true(strncmp(f->res.out, "Digest tok:", 11) == 0);
    hdr(f, "Authorization", "rawtoken123", CLASSES("credential.authorization"), "rawtoken123");
    hdr(f, "Proxy-Authorization", "Basic Ym9iOnMzY3JldA==", CLASSES("credential.basic"), "Ym9iOnMzY3JldA");
    /* a lone word could be a scheme or a raw credential: it is tokenized, to be safe */
    hdr(f, "Authorization", "Negotiate", CLASSES("credential.authorization"), "Negotiate");
}

/* Cookie: every value is a token, the names stay; Set-Cookie: the value, not the attributes */
static void test_fields_cookies_keep_names(void **state)
{
    struct fx *f = *state;
    const char *c = "sid=abc123; theme=dark; csrf=\"q1w2e3\"; empty=";
    char buf[64];

    hdr(f, "Cookie", c, CLASSES("credential.cookie", "credential.cookie", "credential.cookie"), "abc123");
    assert_true(strncmp(f->res.out, "sid=tok:credential.cookie:", 26) == 0);
    assert_non_null(strstr(f->res.out, "; theme=tok:credential.cookie:"));
    assert_non_null(strstr(f->res.out, "; csrf=\"tok:credential.cookie:"));
    assert_non_null(strstr(f->res.out, "; empty="));
    assert_null(strstr(f->res.out, "dark"));
    assert_string_equal(match_text(c, &f->res, 2, buf, sizeof(buf)), "q1w2e3");
    hdr(f, "Set-Cookie", "session=s3cr3tv4lue; Path=/; Domain=example.com; HttpOnly; Secure",
        CLASSES("credential.cookie"), "s3cr3tv4lue");
    assert_non_null(strstr(f->res.out, "; Path=/; Domain=example.com; HttpOnly; Secure"));
    assert_true(strncmp(f->res.out, "session=tok:", 12) == 0);
}

/* API-key headers are tokenized whole; configured names too; other headers get the detectors */
static void test_fields_api_key_headers(void **state)
{
    struct fx *f = *state, *g;
    const char *const extra[] = {"X-Acme-Key", NULL};
    struct redact_opts o = {.api_key_headers = extra};

    hdr(f, "X-Api-Key", "k-12345", CLASSES("credential.api_key"), "k-12345");
    hdr(f, "api-key", " padded ", CLASSES("credential.api_key"), "padded");
    assert_string_equal(f->res.out + f->res.len - 1, " ");
    hdr(f, "X-Auth-Token", "t0k3n", CLASSES("credential.api_key"), "t0k3n");
    hdr(f, "X-Acme-Key", "zzz", NO_CLASSES, NULL);
    hdr(f, "User-Agent", "curl/8.5.0 (contact ops@example.com)", CLASSES("pii.email"), "ops@");
    hdr(f, "Accept", "text/html", NO_CLASSES, NULL);
    g = fx_new(&o);
    hdr(g, "x-acme-key", "zzz", CLASSES("credential.api_key"), "zzz");
    fx_free(g);
}

/* URL-valued headers (Referer, Location) get the URL rules */
static void test_fields_url_headers(void **state)
{
    struct fx *f = *state;

    hdr(f, "Referer", "https://app.example.com/cb?code=1&access_token=ya29.secret#x", CLASSES("credential.query"),
        "ya29.secret");
    assert_non_null(strstr(f->res.out, "https://app.example.com/cb?code=1&access_token=tok:"));
    hdr(f, "Location", "https://u:p@example.com/", CLASSES("credential.userinfo"), "u:p");
}

/* userinfo in a URL is one token; host, path and the rest stay */
static void test_fields_url_userinfo(void **state)
{
    struct fx *f = *state;

    url(f, "https://bob:hunter2@example.com:8443/a/b?q=1", CLASSES("credential.userinfo"), "hunter2");
    assert_non_null(strstr(f->res.out, "@example.com:8443/a/b?q=1"));
    assert_true(strncmp(f->res.out, "https://tok:credential.userinfo:", 32) == 0);
    url(f, "ftp://anonymous@ftp.example.org/", CLASSES("credential.userinfo"), "anonymous");
    url(f, "//user:pw@cdn.example.net/x", CLASSES("credential.userinfo"), "user:pw");
    url(f, "https://example.com/user@host/path", NO_CLASSES, NULL); /* '@' in the path is not userinfo */
}

/* configured query parameters: values become tokens, names (any case, percent-encoded) stay */
static void test_fields_query_params(void **state)
{
    struct fx *f = *state;
    const char *u = "/api/v1/items?page=2&TOKEN=abc123&access%5Ftoken=def456&api_key=&x=token&password=pw1#f";
    char buf[64];

    url(f, u, CLASSES("credential.query", "credential.query", "credential.password"), "abc123");
    assert_string_equal(match_text(u, &f->res, 0, buf, sizeof(buf)), "abc123");
    assert_string_equal(match_text(u, &f->res, 1, buf, sizeof(buf)), "def456");
    assert_null(strstr(f->res.out, "pw1"));
    assert_non_null(strstr(f->res.out, "/api/v1/items?page=2&TOKEN=tok:credential.query:"));
    assert_non_null(strstr(f->res.out, "&api_key=&x=token&password=tok:credential.password:"));
    /* the fragment carries OAuth's implicit-flow token */
    url(f, "https://app.example.com/cb#access_token=ya29.a0AfH6&token_type=Bearer", CLASSES("credential.query"),
        "ya29");
    /* a bare query string */
    assert_int_equal(redact_query(f->rd, "sig=ABCDEF&se=2030-01-01", 24, &f->res), 0);
    check_result("sig=ABCDEF&se=2030-01-01", 24, &f->res, CLASSES("credential.query"), "ABCDEF");
    assert_non_null(strstr(f->res.out, "&se=2030-01-01"));
}

/* the detectors still run over the parts the field rules leave */
static void test_fields_detectors_run_on_the_rest(void **state)
{
    struct fx *f = *state;

    url(f, "/users/jane.doe@example.com/cards?n=4111111111111111&token=t",
        CLASSES("pii.email", "pii.card", "credential.query"), "4111111111111111");
    hdr(f, "Cookie", "prefs=1; email=jane@example.com", CLASSES("credential.cookie", "credential.cookie"), "jane@");
}

/* configured path-segment patterns tokenize whole segments */
static void test_fields_path_segments(void **state)
{
    struct fx *f = *state, *g;
    char path[256];
    struct redact_opts o = {0};

    write_file(f->dir, "paths.json",
               "{\"path_segments\": [{\"id\": \"share-link\", \"pattern\": \"s_[A-Za-z0-9]{16,}\", "
               "\"class\": \"credential.share_link\"}, {\"id\": \"hex-key\", \"pattern\": \"[0-9a-f]{40}\"}]}",
               path, sizeof(path));
    o.custom_path = path;
    g = fx_new(&o);
    url(g, "https://files.example.com/d/s_AbCdEfGhIjKlMnOpQr/view?dl=1", CLASSES("credential.share_link"),
        "AbCdEfGhIjKlMnOp");
    assert_non_null(strstr(g->res.out, "https://files.example.com/d/tok:credential.share_link:"));
    assert_non_null(strstr(g->res.out, "/view?dl=1"));
    url(g, "/keys/0123456789abcdef0123456789abcdef01234567", CLASSES("credential.path"), "0123456789abcdef");
    url(g, "/keys/x0123456789abcdef0123456789abcdef01234567", NO_CLASSES, NULL); /* the segment must match whole */
    url(g, "/d/s_short", NO_CLASSES, NULL);
    fx_free(g);
}

/* configured query parameter names through the options */
static void test_fields_query_params_from_options(void **state)
{
    const char *const extra[] = {"X-Acme-Sig", NULL};
    struct redact_opts o = {.query_params = extra};
    struct fx *g = fx_new(&o);

    url(g, "/a?x-acme-sig=0xdeadbeef&b=1", CLASSES("credential.query"), "deadbeef");
    fx_free(g);
    (void)state;
}

/* the result of one field in a batch does not depend on the batch: it is the single call's */
static void check_batch(struct redact *rd, const struct redact_field *fs, size_t n)
{
    struct redact_result batch[16], single;

    assert_true(n <= 16);
    redact_result_init(&single);
    for (size_t i = 0; i < n; i++)
        redact_result_init(&batch[i]);
    assert_int_equal(redact_fields(rd, fs, n, batch), 0);
    for (size_t i = 0; i < n; i++) {
        const struct redact_field *f = &fs[i];

        switch (f->kind) {
        case REDACT_FIELD_STRING:
            redact_string(rd, f->value, f->len, &single);
            break;
        case REDACT_FIELD_URL:
            redact_url(rd, f->value, f->len, &single);
            break;
        case REDACT_FIELD_QUERY:
            redact_query(rd, f->value, f->len, &single);
            break;
        case REDACT_FIELD_HEADER:
            redact_header(rd, f->name, f->name_len, f->value, f->len, &single);
            break;
        }
        if (strcmp(single.out, batch[i].out) != 0)
            fail_msg("field %zu: batch \"%s\" != single \"%s\"", i, batch[i].out, single.out);
        assert_int_equal(single.nmatches, batch[i].nmatches);
        assert_int_equal(single.flags, batch[i].flags);
        for (size_t k = 0; k < single.nmatches; k++) {
            assert_string_equal(single.matches[k].cls, batch[i].matches[k].cls);
            assert_int_equal(single.matches[k].in_off, batch[i].matches[k].in_off);
            assert_int_equal(single.matches[k].in_len, batch[i].matches[k].in_len);
        }
    }
    for (size_t i = 0; i < n; i++)
        redact_result_fini(&batch[i]);
    redact_result_fini(&single);
}

#define SF(s) {.kind = REDACT_FIELD_STRING, .value = (s), .len = sizeof(s) - 1}
#define UF(s) {.kind = REDACT_FIELD_URL, .value = (s), .len = sizeof(s) - 1}
#define QF(s) {.kind = REDACT_FIELD_QUERY, .value = (s), .len = sizeof(s) - 1}
#define HF(n, s) {.kind = REDACT_FIELD_HEADER, .name = (n), .name_len = sizeof(n) - 1, .value = (s), .len = sizeof(s) - 1}

/* a batch gives each field exactly what a call for that field alone gives, at its edges too */
static void test_fields_batch_equals_single(void **state)
{
    struct fx *f = *state, *g;
    char path[256];
    struct redact_opts o = {.max_field_bytes = 200};
    const struct redact_field event[] = {
        SF("api.example.com"),
        UF("/v1/users/jane@example.com?token=abc&card=4111111111111111"),
        HF("Authorization", "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
        HF("Cookie", "a=1; b=AKIAIOSFODNN7EXAMPLE"),
        SF("ends with 4111 1111"),
        SF("1111 1111 starts here"),
        SF("user@example"),
        SF(".com"),
        SF(""),
        {.kind = REDACT_FIELD_STRING, .value = NULL, .len = 0},
        SF("k: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
        SF("-----END PRIVATE KEY----- tail"),
        QF("password=hunter2&x=1"),
        HF("User-Agent", "bearer abcdefghijklmnopqrstuvwxyz012345"),
        SF("ssn 123-45-6789"),
    };
    const struct redact_field anchored[] = {
        SF("secret-123"), SF("x secret-456"), SF("secret-789\n"), SF("aaaa"),
    };
    char big[300];

    check_batch(f->rd, event, sizeof(event) / sizeof(event[0]));
    /* a custom detector anchored to the field, and a field over the size limit */
    write_file(f->dir, "anchored.json",
               "{\"detectors\": [{\"id\": \"whole\", \"class\": \"custom.whole\", \"pattern\": \"^secret-[0-9]+$\"}]}",
               path, sizeof(path));
    o.custom_path = path;
    g = fx_new(&o);
    check_batch(g->rd, anchored, sizeof(anchored) / sizeof(anchored[0]));
    memset(big, 'x', sizeof(big));
    {
        const struct redact_field mixed[] = {SF("a@example.com"), {.kind = REDACT_FIELD_STRING, .value = big,
                                                                     .len = sizeof(big)},
                                             SF("secret-1")};

        check_batch(g->rd, mixed, 3);
    }
    str_check(g, "secret-123", CLASSES("custom.whole"), "secret-123");
    str_clean(g, "x secret-456");
    fx_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_authorization_by_scheme),
        cmocka_unit_test(test_fields_cookies_keep_names),
        cmocka_unit_test(test_fields_api_key_headers),
        cmocka_unit_test(test_fields_url_headers),
        cmocka_unit_test(test_fields_url_userinfo),
        cmocka_unit_test(test_fields_query_params),
        cmocka_unit_test(test_fields_detectors_run_on_the_rest),
        cmocka_unit_test(test_fields_path_segments),
        cmocka_unit_test(test_fields_query_params_from_options),
        cmocka_unit_test(test_fields_batch_equals_single),
    };
    /* One context for the group: building one compiles every pattern. Tests only read it. */
    return cmocka_run_group_tests_name("redact/fields", tests, fx_setup, fx_teardown);
}
