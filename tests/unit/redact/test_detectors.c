/* tests/unit/redact/test_detectors.c - the default content detectors, one by one: true
 * positives become tokens of their class with the exact span, near misses stay as they are;
 * then overlaps, the unscannable fail-safe, and detector files (custom additions, errors that
 * name the JSON path, enable/disable). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>

#include "helpers.h"

/* ---- an independent GitHub token generator: CRC32 (reflected, 0xEDB88320) in base62 ---- */

static uint32_t crc_table[256];

static uint32_t test_crc32(const char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;

    if (crc_table[1] == 0) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;

            for (int k = 0; k < 8; k++)
                v = v & 1 ? 0xEDB88320u ^ (v >> 1) : v >> 1;
            crc_table[i] = v;
        }
    }
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ (uint8_t)p[i]) & 0xFF] ^ (c >> 8);
    return ~c;
}

/* <prefix> ("ghp") + "_" + the 30 characters of <entropy> + their checksum. */
static void github_token(char out[41], const char *prefix, const char *entropy)
{
    static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    uint32_t c = test_crc32(entropy, 30);

    snprintf(out, 41, "%s_%s", prefix, entropy);
    for (int i = 5; i >= 0; i--) {
        out[34 + i] = b62[c % 62];
        c /= 62;
    }
    out[40] = '\0';
}

static void b64url(char *out, size_t n, const char *s)
{
    sodium_bin2base64(out, n, (const unsigned char *)s, strlen(s), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* ---- credentials ---- */

/* AWS access key ids (AKIA/ASIA) are found with their exact span; wrong alphabet or length is not */
static void test_detectors_aws_key_id_found_near_miss_kept(void **state)
{
    struct fx *f = *state;
    char buf[64];

    str_check(f, "key=AKIAIOSFODNN7EXAMPLE;", CLASSES("credential.aws"), "AKIAIOSFODNN7EXAMPLE");
    assert_string_equal(match_text("key=AKIAIOSFODNN7EXAMPLE;", &f->res, 0, buf, sizeof(buf)), "AKIAIOSFODNN7EXAMPLE");
    str_check(f, "ASIAY34FZKBOKMUTVV7A", CLASSES("credential.aws"), "ASIAY34FZKBOKMUTVV7A");
    str_clean(f, "AKIAIOSFODNN7EXAMPL1");  /* '1' is not in the key-id alphabet */
    str_clean(f, "AKIAIOSFODNN7EXAMPLEX"); /* 21 characters: part of a longer word */
    str_clean(f, "XAKIAIOSFODNN7EXAMPLE");
}

/* an AWS secret after its key name is tokenized alone; a 40-letter word there is not a secret */
static void test_detectors_aws_secret_context_narrows(void **state)
{
    struct fx *f = *state;
    const char *in = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
    char buf[64];

    str_check(f, in, CLASSES("credential.aws"), "wJalrXUtnFEMI");
    assert_string_equal(match_text(in, &f->res, 0, buf, sizeof(buf)), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    assert_true(strncmp(f->res.out, "aws_secret_access_key = tok:credential.aws:", 43) == 0);
    str_check(f, "AWS_SECRET_KEY: \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"", CLASSES("credential.aws"), "wJalr");
    str_clean(f, "aws_secret_access_key = abcdefghijabcdefghijabcdefghijabcdefghij");
    str_clean(f, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"); /* no context: could be anything */
}

/* a GitHub token with a valid CRC32 checksum is found; one wrong checksum character is not */
static void test_detectors_github_checksum(void **state)
{
    struct fx *f = *state;
    const char *prefixes[] = {"ghp", "gho", "ghu", "ghs", "ghr"};
    char tok[41], in[128];

    for (size_t i = 0; i < 5; i++) {
        github_token(tok, prefixes[i], "Zx81mQ0aLk2Pq7Rt9Wv4Yb6Nc3Jd5H");
        snprintf(in, sizeof(in), "token %s.", tok);
        str_check(f, in, CLASSES("credential.github"), tok + 4);
    }
    github_token(tok, "ghp", "Zx81mQ0aLk2Pq7Rt9Wv4Yb6Nc3Jd5H");
    tok[39] = tok[39] == 'a' ? 'b' : 'a';
    str_clean(f, tok);
    str_clean(f, "ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    snprintf(in, sizeof(in), "github_pat_%.22s_%.59s", "11ABCDEFG0123456789abcdefgh",
             "0123456789abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGHIJKLMN");
    assert_int_equal(strlen(in), 11 + 22 + 1 + 59);
    str_check(f, in, CLASSES("credential.github"), "11ABCDEFG");
}

/* platform tokens with their documented prefixes and lengths */
static void test_detectors_platform_tokens(void **state)
{
    struct fx *f = *state;

    str_check(f, "glpat-Ab3dEf6hIj9kLm2nOp5q", CLASSES("credential.gitlab"), "Ab3dEf6hIj9kLm2nOp5q");
    str_clean(f, "glpat-short");
    str_check(f, "SLACK=xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", CLASSES("credential.slack"),
              "AbCdEfGhIjKlMnOpQrStUvWx");
    str_clean(f, "xoxq-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"); /* no such prefix */
    str_clean(f, "xoxb-abcdefghijklmnopqrstuvwxyz");                          /* no digits: prose */
    str_check(f, "https://hooks.slack.com/services/T0123ABCD/B0123ABCD/abcdefghijklmnopqrstuvwx",
              CLASSES("credential.slack"), "abcdefghijklmnopqrstuvwx");
    assert_non_null(strstr(f->res.out, "https://hooks.slack.com/services/tok:"));
    str_check(f, "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc ok", CLASSES("credential.stripe"), "4eC39HqLyjWDarjtT1zdp7dc");
    str_check(f, "rk_test_4eC39HqLyjWDarjtT1zdp7dc", CLASSES("credential.stripe"), "4eC39");
    str_check(f, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", CLASSES("credential.stripe"), "MfKQ9r8GKYq");
    str_clean(f, "sk_live_short12345");
    str_clean(f, "pk_live_4eC39HqLyjWDarjtT1zdp7dc"); /* publishable keys are public */
    str_check(f, "npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", CLASSES("credential.npm"), "AbCdEfGhIj");
    str_clean(f, "npm_AbCdEfGhIjKlMnOpQrStUvWxYz012345678"); /* 35 characters */
    str_check(f,
              "pypi-AgEIcHlwaS5vcmcCJGUxYzM0ZDBhLTk3ZTAtNDdkNS04MjYxLWM4NWQ1MWFlNWQ5YgACKlsz"
              "LCJjNGUwZDA4Mi0xMjM0LTQ1NjctODkwMS0yMzQ1Njc4OTBhYmMiXQAABiD",
              CLASSES("credential.pypi"), "CJGUxYzM0ZDBh");
    str_clean(f, "pypi-AgEXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX");
    str_check(f, "key=AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q&x", CLASSES("credential.google_api"),
              "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q");
    str_check(f, "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6-", CLASSES("credential.google_api"), "AIzaSyA1b2");
    str_clean(f, "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"); /* 38 characters */
}

/* a JWT is three base64url parts whose header decodes to JSON with "alg"; others are not */
static void test_detectors_jwt_header_must_be_json(void **state)
{
    struct fx *f = *state;
    char hdr[128], bad[128], noalg[128], in[512];

    str_check(f,
              "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5"
              "MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
              CLASSES("credential.jwt"), "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c");
    b64url(hdr, sizeof(hdr), "{\"alg\":\"none\"}");
    snprintf(in, sizeof(in), "id_token: %s.eyJzdWIiOiIxIn0.", hdr); /* unsigned: empty signature */
    str_check(f, in, CLASSES("credential.jwt"), "eyJzdWIiOiIxIn0");
    b64url(bad, sizeof(bad), "{\"alg\":\"HS256\"");
    snprintf(in, sizeof(in), "%s.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", bad);
    str_clean(f, in);
    b64url(noalg, sizeof(noalg), "{\"typ\":\"JWT\"}");
    snprintf(in, sizeof(in), "%s.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", noalg);
    str_clean(f, in);
}

/* PEM private key blocks, whole; an unterminated one up to the end of its body; public keys stay */
static void test_detectors_private_key_blocks(void **state)
{
    struct fx *f = *state;
    const char *pem = "cfg -----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM\n"
                      "-----END RSA PRIVATE KEY----- done";

    str_check(f, pem, CLASSES("credential.private_key"), "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM");
    assert_true(strncmp(f->res.out, "cfg tok:credential.private_key:", 31) == 0);
    assert_non_null(strstr(f->res.out, " done"));
    str_check(f, "k: -----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAA",
              CLASSES("credential.private_key"), "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAA");
    str_clean(f, "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----");
}

/* Bearer and Basic credentials and passwords in query strings inside free text */
static void test_detectors_credentials_in_text(void **state)
{
    struct fx *f = *state;

    str_check(f, "curl -H 'Authorization: Bearer abcdefghijklmnop1234'", CLASSES("credential.bearer"),
              "abcdefghijklmnop1234");
    assert_non_null(strstr(f->res.out, "Bearer tok:credential.bearer:"));
    str_clean(f, "the bearer of bad news");
    str_check(f, "auth Basic dXNlcjpwYXNzd29yZA== end", CLASSES("credential.basic"), "dXNlcjpwYXNzd29yZA");
    str_clean(f, "a basic configuration");
    str_clean(f, "Basic aGVsbG8gd29ybGQ="); /* "hello world": no user:password */
    str_check(f, "GET /login?user=bob&password=hunter2&next=/", CLASSES("credential.password"), "hunter2");
    assert_non_null(strstr(f->res.out, "&password=tok:credential.password:"));
    assert_non_null(strstr(f->res.out, "&next=/"));
    str_clean(f, "/settings?passwordless=true");
    str_clean(f, "/x?oldpassword1=3");
    str_check(f, "see ftp://admin:s3cret@files.example.org/pub", CLASSES("credential.userinfo"), "s3cret");
    assert_non_null(strstr(f->res.out, "@files.example.org/pub"));
    str_clean(f, "clone https://git.example.com/org/repo.git"); /* no userinfo */
}

/* ---- PII ---- */

/* e-mail addresses, also percent-encoded; e-mail-like strings inside longer words are not */
static void test_detectors_email(void **state)
{
    struct fx *f = *state;
    char buf[64];

    str_check(f, "from: John <john.doe+tag@mail.example.co.uk>", CLASSES("pii.email"), "john.doe");
    assert_string_equal(match_text("from: John <john.doe+tag@mail.example.co.uk>", &f->res, 0, buf, sizeof(buf)),
                        "john.doe+tag@mail.example.co.uk");
    str_check(f, "/u?e=jane%40example.org&p=1", CLASSES("pii.email"), "jane");
    str_clean(f, "build-user@example.com_backup"); /* the "TLD" runs on into a longer word */
    str_clean(f, "id=foo@example.com9");
    str_clean(f, "npm i @scope/pkg@1.2.3");
    str_clean(f, "user@localhost");
}

/* card numbers: Luhn-valid with a known IIN and card grouping; Luhn-invalid or odd ones stay */
static void test_detectors_card_luhn_iin(void **state)
{
    struct fx *f = *state;
    static const char *const valid[] = {"4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111",
                                        "5555555555554444", "2223003122003222", "378282246310005", "3782 822463 10005",
                                        "6011111111111117", "3530111333300000", "30569309025904"};
    char buf[64];

    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        char in[64];

        snprintf(in, sizeof(in), "card: %s.", valid[i]);
        str_check(f, in, CLASSES("pii.card"), valid[i]);
        assert_string_equal(match_text(in, &f->res, 0, buf, sizeof(buf)), valid[i]);
    }
    /* a leading group that is not part of the card is left out of the span */
    str_check(f, "ref 12 4111 1111 1111 1111", CLASSES("pii.card"), "4111 1111 1111 1111");
    assert_string_equal(f->res.out + 7, f->res.matches[0].token);
    str_clean(f, "4111 1111 1111 1112");   /* Luhn fails */
    str_clean(f, "4111111111111112");
    str_clean(f, "1732640000000");         /* a millisecond timestamp */
    str_clean(f, "9007199254740993");      /* no such issuer */
    str_clean(f, "4111-1111 1111-1111");   /* mixed separators */
    str_clean(f, "41 11 11 11 11 11 11 11"); /* not a card grouping */
}

/* IBANs with a valid mod-97 check and country length; a wrong check digit is not one */
static void test_detectors_iban_mod97(void **state)
{
    struct fx *f = *state;

    str_check(f, "IBAN DE89 3704 0044 0532 0130 00, thanks", CLASSES("pii.iban"), "3704 0044");
    str_check(f, "GB82WEST12345698765432", CLASSES("pii.iban"), "GB82WEST12345698765432");
    str_check(f, "FR1420041010050500013M02606", CLASSES("pii.iban"), "FR1420041010050500013M02606");
    str_clean(f, "DE88370400440532013000"); /* bad check digits */
    str_clean(f, "GB82WEST1234569876543");  /* one character short for GB */
    str_clean(f, "XX89370400440532013000"); /* no such country */
}

/* SSNs outside the never-issued ranges; 000, 666, 9xx areas, 00 groups, 0000 serials are not */
static void test_detectors_ssn_ranges(void **state)
{
    struct fx *f = *state;

    str_check(f, "ssn=123-45-6789&x=1", CLASSES("pii.ssn"), "123-45-6789");
    str_check(f, "SSN 536-22-1234.", CLASSES("pii.ssn"), "536-22-1234");
    str_clean(f, "000-12-3456");
    str_clean(f, "666-12-3456");
    str_clean(f, "900-12-3456");
    str_clean(f, "987-65-4321");
    str_clean(f, "123-00-4567");
    str_clean(f, "123-45-0000");
    str_clean(f, "078-05-1120");
    str_clean(f, "2024-11-26");
}

/* phone numbers: E.164 with 8-15 digits, NANP with plausible area and exchange codes */
static void test_detectors_phone(void **state)
{
    struct fx *f = *state;

    str_check(f, "call +1 415 555 2671 now", CLASSES("pii.phone"), "415 555 2671");
    str_check(f, "tel:+442079460958", CLASSES("pii.phone"), "2079460958");
    str_check(f, "+44 (20) 7946-0958", CLASSES("pii.phone"), "7946-0958");
    str_check(f, "(415) 555-2671", CLASSES("pii.phone"), "555-2671");
    str_check(f, "415.555.2671", CLASSES("pii.phone"), "415.555.2671");
    str_clean(f, "+1234");                   /* too short */
    str_clean(f, "+0 415 555 2671");         /* no country code starts with 0 */
    str_clean(f, "+12 345");
    str_clean(f, "911-555-1234");            /* N11 service code */
    str_clean(f, "015-555-1234");            /* area codes do not start with 0 or 1 */
    str_clean(f, "version 1.2.3 build 4567");
}

/* IP addresses are an optional class: off by default, on with enable "pii.ip" */
static void test_detectors_ip_optional(void **state)
{
    struct fx *f = *state, *g;
    const char *const on[] = {"pii.ip", NULL};
    struct redact_opts o = {.enable = on};

    str_clean(f, "client 10.1.2.3 via 2001:db8::1");
    g = fx_new(&o);
    str_check(g, "client 10.1.2.3 via 2001:db8::1", CLASSES("pii.ip", "pii.ip"), "10.1.2.3");
    str_clean(g, "999.1.1.1");
    str_clean(g, "at 10:30:45");
    fx_free(g);
}

/* ---- resolution ---- */

/* equal spans go to the more specific class: "Bearer <jwt>" is a JWT, not a bearer token */
static void test_detectors_overlap_equal_span_most_specific(void **state)
{
    struct fx *f = *state;

    str_check(f,
              "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
              "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
              CLASSES("credential.jwt"), "dozjgNryP4J3jVmNHl0w5N");
}

/* the longest match wins: an SSN-shaped run inside an international number is the number */
static void test_detectors_overlap_longest_wins(void **state)
{
    struct fx *f = *state;

    str_check(f, "x +1 123-45-6789", CLASSES("pii.phone"), "123-45-6789");
}

/* partially overlapping detector matches become one token: no confirmed byte leaks at an edge */
static void test_detectors_overlap_partial_merges(void **state)
{
    struct fx *g;
    char path[256];
    struct redact_opts o = {0};
    struct fx *f = *state;

    write_file(f->dir, "overlap.json",
               "{\"detectors\": ["
               "{\"id\": \"left\", \"class\": \"custom.left\", \"pattern\": \"abc\\\\d+\", \"priority\": 60},"
               "{\"id\": \"right\", \"class\": \"custom.right\", \"pattern\": \"\\\\d+xyz\", \"priority\": 50}]}",
               path, sizeof(path));
    o.custom_path = path;
    g = fx_new(&o);
    str_check(g, "[abc123xyz]", CLASSES("custom.left"), "123");
    assert_int_equal(g->res.matches[0].in_off, 1);
    assert_int_equal(g->res.matches[0].in_len, 9);
    assert_int_equal(g->res.out[0], '[');
    assert_int_equal(g->res.out[g->res.len - 1], ']');
    fx_free(g);
}

/* several secrets in one field each get their own token, in order */
static void test_detectors_many_in_one_field(void **state)
{
    struct fx *f = *state;

    str_check(f, "a@example.com 4111111111111111 123-45-6789 AKIAIOSFODNN7EXAMPLE",
              CLASSES("pii.email", "pii.card", "pii.ssn", "credential.aws"), "4111111111111111");
}

/* ---- fail safe ---- */

/* a field longer than the limit is one "unscannable" token, never passed through */
static void test_detectors_too_long_unscannable(void **state)
{
    struct fx *f = *state, *g;
    struct redact_opts o = {.max_field_bytes = 64};
    char in[200];

    memset(in, 'a', sizeof(in) - 1);
    in[sizeof(in) - 1] = '\0';
    g = fx_new(&o);
    assert_int_equal(redact_string(g->rd, in, strlen(in), &g->res), 0);
    assert_true(g->res.flags & REDACT_R_UNSCANNABLE);
    check_result(in, strlen(in), &g->res, CLASSES("unscannable"), "aaaa");
    assert_int_equal(g->res.matches[0].in_len, strlen(in));
    assert_true(strncmp(g->res.out, "tok:unscannable:k1:", 19) == 0);
    assert_int_equal(redact_header(g->rd, "User-Agent", 10, in, strlen(in), &g->res), 0);
    assert_true(g->res.flags & REDACT_R_UNSCANNABLE);
    assert_int_equal(redact_url(g->rd, in, 64, &g->res), 0); /* at the limit: scanned */
    assert_false(g->res.flags & REDACT_R_UNSCANNABLE);
    fx_free(g);
    (void)f;
}

/* a field with more hits than the scanner keeps is tokenized whole */
static void test_detectors_hit_flood_unscannable(void **state)
{
    struct fx *f = *state;
    size_t n = 60000, len = 0;
    char *in = malloc(n + 16);

    assert_non_null(in);
    while (len + 8 < n) {
        memcpy(in + len, "a@bc.de ", 8);
        len += 8;
    }
    in[len] = '\0';
    assert_int_equal(redact_string(f->rd, in, len, &f->res), 0);
    assert_true(f->res.flags & REDACT_R_UNSCANNABLE);
    assert_null(strstr(f->res.out, "a@bc.de"));
    free(in);
}

/* the output buffers are reused across calls and results do not bleed into each other */
static void test_detectors_result_reuse(void **state)
{
    struct fx *f = *state;

    str_check(f, "x 123-45-6789 y", CLASSES("pii.ssn"), "6789");
    str_clean(f, "nothing here");
    str_clean(f, "");
    str_check(f, "z john@example.com", CLASSES("pii.email"), "john");
}

/* ---- detector files ---- */

/* the shipped compliance/detectors.json is the embedded default */
static void test_detectors_shipped_file_is_default(void **state)
{
    struct fx *f = *state;
    char path[512], err[512];
    struct redact_opts o = {.detectors_path = src_path("compliance/detectors.json", path, sizeof(path))};
    struct redact *rd = redact_new(&o, f->kr, err, sizeof(err));

    if (rd == NULL)
        fail_msg("%s", err);
    assert_int_equal(redact_detector_count(rd), redact_detector_count(f->rd));
    for (size_t i = 0; i < redact_detector_count(rd); i++) {
        assert_string_equal(redact_detector_id(rd, i), redact_detector_id(f->rd, i));
        assert_string_equal(redact_detector_class(rd, i), redact_detector_class(f->rd, i));
    }
    redact_free(rd);
}

/* a DLP team's detector (id, class, pattern, no validator) is added without a rebuild */
static void test_detectors_custom_file_adds_and_disables(void **state)
{
    struct fx *f = *state, *g;
    char path[256];
    struct redact_opts o = {0};

    write_file(f->dir, "dlp.json",
               "{\"version\": 1, \"detectors\": ["
               "{\"id\": \"acme-key\", \"class\": \"credential.acme\", \"pattern\": \"\\\\bacme_[a-f0-9]{32}\\\\b\"},"
               "{\"id\": \"project-code\", \"class\": \"confidential.project\", \"pattern\": \"(?i)project "
               "(?:bluebird|nightjar)\", \"priority\": 20}],"
               " \"disable\": [\"pii.phone\"]}",
               path, sizeof(path));
    o.custom_path = path;
    g = fx_new(&o);
    str_check(g, "k=acme_0123456789abcdef0123456789abcdef", CLASSES("credential.acme"), "0123456789abcdef");
    str_check(g, "about Project Nightjar", CLASSES("confidential.project"), "Nightjar");
    str_clean(g, "call +1 415 555 2671");             /* phone detectors disabled */
    str_check(g, "a@example.com", CLASSES("pii.email"), "a@example"); /* defaults still there */
    fx_free(g);
}

static void expect_error(struct fx *f, const char *json, const char *want)
{
    char path[256], err[512];
    struct redact_opts o = {0};

    write_file(f->dir, "bad.json", json, path, sizeof(path));
    o.custom_path = path;
    assert_null(redact_new(&o, f->kr, err, sizeof(err)));
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
    assert_non_null(strstr(err, path));
    assert_int_equal(redact_check(&o, err, sizeof(err)), -1);
}

/* a bad regex, validator, class or key is an error naming the file and the JSON path */
static void test_detectors_custom_file_errors_name_json_path(void **state)
{
    struct fx *f = *state;

    expect_error(f,
                 "{\"detectors\": [{\"id\": \"a\", \"class\": \"x.a\", \"pattern\": \"a+\"},"
                 "{\"id\": \"b\", \"class\": \"x.b\", \"pattern\": \"b+\"},"
                 "{\"id\": \"c\", \"class\": \"x.c\", \"pattern\": \"c+\"},"
                 "{\"id\": \"d\", \"class\": \"x.d\", \"pattern\": \"(unclosed\"}]}",
                 "detectors[3].pattern: ");
    expect_error(f, "{\"detectors\": [{\"id\": \"a\", \"class\": \"x.a\", \"pattern\": \"a+\", \"validator\": \"crc64\"}]}",
                 "detectors[0].validator: unknown validator \"crc64\"");
    expect_error(f, "{\"detectors\": [{\"id\": \"a\", \"class\": \"Not A Class\", \"pattern\": \"a+\"}]}",
                 "detectors[0].class:");
    expect_error(f, "{\"detectors\": [{\"id\": \"a\", \"class\": \"x.a\", \"pattern\": \"a*\"}]}",
                 "detectors[0].pattern: can match the empty string");
    expect_error(f, "{\"detectors\": [{\"id\": \"a\", \"class\": \"x.a\", \"patern\": \"a+\"}]}",
                 "detectors[0].patern: unknown key");
    expect_error(f,
                 "{\"detectors\": [{\"id\": \"a\", \"class\": \"x.a\", \"pattern\": \"a+\"},"
                 "{\"id\": \"a\", \"class\": \"x.b\", \"pattern\": \"b+\"}]}",
                 "detectors[1].id: duplicate id");
    expect_error(f, "{\"headers\": [{\"name\": \"x-key\", \"rule\": \"everything\"}]}", "headers[0].rule:");
    expect_error(f, "{\"path_segments\": [{\"id\": \"p\", \"pattern\": \"[z-a]\"}]}", "path_segments[0].pattern:");
    expect_error(f, "{\"detectors\": [", "bad.json:1:");
}

/* a custom detector with a default's id replaces it */
static void test_detectors_custom_replaces_by_id(void **state)
{
    struct fx *f = *state, *g;
    char path[256];
    struct redact_opts o = {0};

    write_file(f->dir, "replace.json",
               "{\"detectors\": [{\"id\": \"email\", \"class\": \"pii.email\", "
               "\"pattern\": \"\\\\b[a-z]+@corp\\\\.example\\\\b\"}]}",
               path, sizeof(path));
    o.custom_path = path;
    g = fx_new(&o);
    assert_int_equal(redact_detector_count(g->rd), redact_detector_count(f->rd));
    str_check(g, "bob@corp.example", CLASSES("pii.email"), "bob");
    str_clean(g, "bob@other.example.com");
    fx_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detectors_aws_key_id_found_near_miss_kept),
        cmocka_unit_test(test_detectors_aws_secret_context_narrows),
        cmocka_unit_test(test_detectors_github_checksum),
        cmocka_unit_test(test_detectors_platform_tokens),
        cmocka_unit_test(test_detectors_jwt_header_must_be_json),
        cmocka_unit_test(test_detectors_private_key_blocks),
        cmocka_unit_test(test_detectors_credentials_in_text),
        cmocka_unit_test(test_detectors_email),
        cmocka_unit_test(test_detectors_card_luhn_iin),
        cmocka_unit_test(test_detectors_iban_mod97),
        cmocka_unit_test(test_detectors_ssn_ranges),
        cmocka_unit_test(test_detectors_phone),
        cmocka_unit_test(test_detectors_ip_optional),
        cmocka_unit_test(test_detectors_overlap_equal_span_most_specific),
        cmocka_unit_test(test_detectors_overlap_longest_wins),
        cmocka_unit_test(test_detectors_overlap_partial_merges),
        cmocka_unit_test(test_detectors_many_in_one_field),
        cmocka_unit_test(test_detectors_too_long_unscannable),
        cmocka_unit_test(test_detectors_hit_flood_unscannable),
        cmocka_unit_test(test_detectors_result_reuse),
        cmocka_unit_test(test_detectors_shipped_file_is_default),
        cmocka_unit_test(test_detectors_custom_file_adds_and_disables),
        cmocka_unit_test(test_detectors_custom_file_errors_name_json_path),
        cmocka_unit_test(test_detectors_custom_replaces_by_id),
    };
    /* One context for the group: building one compiles every pattern. Tests only read it. */
    return cmocka_run_group_tests_name("redact/detectors", tests, fx_setup, fx_teardown);
}
