/* redact/validators.c - validators: what a regex cannot say about a candidate.
 *
 * A detector's pattern finds candidates; its validator (named in the detector file) keeps
 * only those whose structure checks out: checksums (Luhn, ISO 7064 mod 97-10, GitHub's CRC32),
 * number ranges (SSN areas, card IINs, NANP area codes), decodings (a JWT header that is JSON
 * with "alg", Basic credentials that decode to user:password). Some also narrow the span to
 * the secret itself (the 40 characters of an AWS secret after its key name). Each runs only
 * on a hit, on a span no longer than the field, in time linear in the span. */
#include "redact/redact-int.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <sodium.h>
#include <string.h>

static const char *const names[REDACT_V_COUNT] = {
    [REDACT_V_NONE] = "none",
    [REDACT_V_LUHN] = "luhn",
    [REDACT_V_IBAN_MOD97] = "iban_mod97",
    [REDACT_V_SSN_RANGES] = "ssn_ranges",
    [REDACT_V_GITHUB_CHECKSUM] = "github_checksum",
    [REDACT_V_JWT] = "jwt",
    [REDACT_V_AWS_SECRET_CONTEXT] = "aws_secret_context",
    [REDACT_V_NPM] = "npm",
    [REDACT_V_PYPI] = "pypi",
    [REDACT_V_SLACK] = "slack",
    [REDACT_V_STRIPE] = "stripe",
    [REDACT_V_GOOGLE_API] = "google_api",
    [REDACT_V_PHONE] = "phone",
    [REDACT_V_BASIC_AUTH] = "basic_auth",
    [REDACT_V_URL_USERINFO] = "url_userinfo",
    [REDACT_V_IPV4] = "ipv4",
    [REDACT_V_IPV6] = "ipv6",
};

int redact_validator_lookup(const char *name, enum redact_validator *out)
{
    for (int i = 0; i < REDACT_V_COUNT; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum redact_validator)i;
            return 0;
        }
    }
    if (strcmp(name, "e164") == 0) {
        *out = REDACT_V_PHONE;
        return 0;
    }
    return -1;
}

const char *redact_validator_name(enum redact_validator v)
{
    return (unsigned)v < REDACT_V_COUNT ? names[v] : "?";
}

int redact_validator_longest_only(enum redact_validator v)
{
    switch (v) {
    case REDACT_V_LUHN:
    case REDACT_V_IBAN_MOD97:
    case REDACT_V_SSN_RANGES:
    case REDACT_V_GITHUB_CHECKSUM:
    case REDACT_V_PHONE:
    case REDACT_V_IPV4:
    case REDACT_V_IPV6:
        return 0;
    default:
        return 1;
    }
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static int is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static int is_alnum(char c)
{
    return is_digit(c) || is_upper(c) || is_lower(c);
}

/* ---- payment cards ---- */

int redact_luhn_ok(const char *digits, size_t n)
{
    unsigned sum = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(digits[n - 1 - i] - '0');

        if (i & 1) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return n > 0 && sum % 10 == 0;
}

static unsigned prefix_num(const char *d, size_t k)
{
    unsigned v = 0;

    for (size_t i = 0; i < k; i++)
        v = v * 10 + (unsigned)(d[i] - '0');
    return v;
}

/* Issuer identification ranges of the major networks, with their lengths. */
static int iin_ok(const char *d, size_t n)
{
    unsigned p1 = prefix_num(d, 1), p2 = prefix_num(d, 2), p3 = prefix_num(d, 3), p4 = prefix_num(d, 4),
             p6 = prefix_num(d, 6);

    if (p1 == 4) /* Visa */
        return n == 13 || n == 16 || n == 19;
    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) /* Mastercard */
        return n == 16;
    if (p4 >= 2200 && p4 <= 2204) /* Mir */
        return n >= 16 && n <= 19;
    if (p2 == 34 || p2 == 37) /* American Express */
        return n == 15;
    if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925)) /* Discover */
        return n >= 16 && n <= 19;
    if (p2 == 62) /* UnionPay */
        return n >= 16 && n <= 19;
    if (p4 >= 3528 && p4 <= 3589) /* JCB */
        return n >= 16 && n <= 19;
    if ((p3 >= 300 && p3 <= 305) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39) /* Diners Club */
        return n >= 14 && n <= 19;
    if (p4 == 5018 || p4 == 5020 || p4 == 5038 || p4 == 5893 || p4 == 6304 || (p4 >= 6759 && p4 <= 6763))
        return n >= 13 && n <= 19; /* Maestro */
    return 0;
}

/* Separators, when present, are all the same character and split the number as printed on
 * cards: groups of four with a shorter last group, or 4-6-5 (Amex) and 4-6-4 (Diners). */
static int grouping_ok(const char *s, size_t b, size_t e)
{
    size_t groups[8], ng = 0, run = 0;
    char sep = 0;

    for (size_t i = b; i < e; i++) {
        if (is_digit(s[i])) {
            run++;
            continue;
        }
        if (sep != 0 && s[i] != sep)
            return 0;
        sep = s[i];
        if (ng == 7)
            return 0;
        groups[ng++] = run;
        run = 0;
    }
    groups[ng++] = run;
    if (ng == 1)
        return 1;
    if (ng == 3 && groups[0] == 4 && groups[1] == 6 && (groups[2] == 5 || groups[2] == 4))
        return 1;
    for (size_t i = 0; i + 1 < ng; i++)
        if (groups[i] != 4)
            return 0;
    return groups[ng - 1] >= 1 && groups[ng - 1] <= 4;
}

/* The span is digits with single spaces or dashes. Vectorscan reports the leftmost start, which
 * may take in a leading group that is not part of the card ("ref 12 4111 1111 1111 1111"):
 * try each group start from the left and keep the first that makes a valid card. */
static int v_luhn(const char *s, size_t *start, size_t *end)
{
    char digits[24];

    for (size_t b = *start; b < *end; b++) {
        size_t n = 0;

        if (b > *start && is_digit(s[b - 1]))
            continue; /* not the start of a group */
        if (!is_digit(s[b]))
            continue;
        for (size_t i = b; i < *end && n < sizeof(digits); i++)
            if (is_digit(s[i]))
                digits[n++] = s[i];
        if (n < 13)
            return 0;
        if (n > 19)
            continue;
        if (iin_ok(digits, n) && redact_luhn_ok(digits, n) && grouping_ok(s, b, *end)) {
            *start = b;
            return 1;
        }
    }
    return 0;
}

/* ---- IBAN ---- */

static const struct {
    char cc[3];
    unsigned char len;
} iban_lengths[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22}, {"BH", 22},
    {"BI", 27}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DJ", 27},
    {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FK", 18}, {"FO", 18}, {"FR", 27},
    {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22},
    {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32},
    {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"LY", 25}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19},
    {"MN", 20}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NI", 28}, {"NL", 18}, {"NO", 15}, {"OM", 23}, {"PK", 24},
    {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"RU", 33}, {"SA", 24}, {"SC", 31},
    {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"SO", 23}, {"ST", 25}, {"SV", 28}, {"TL", 23},
    {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20}, {"YE", 30},
};

static int v_iban(const char *s, size_t start, size_t end)
{
    char c[40];
    size_t n = 0, want = 0;
    unsigned rem = 0;

    for (size_t i = start; i < end; i++) {
        if (s[i] == ' ')
            continue;
        if (n == sizeof(c))
            return 0;
        c[n++] = s[i];
    }
    if (n < 15)
        return 0;
    for (size_t i = 0; i < sizeof(iban_lengths) / sizeof(iban_lengths[0]); i++)
        if (iban_lengths[i].cc[0] == c[0] && iban_lengths[i].cc[1] == c[1])
            want = iban_lengths[i].len;
    if (want == 0 || n != want)
        return 0;
    /* ISO 7064 mod 97-10 over BBAN ‖ country ‖ check digits, letters as 10..35. */
    for (size_t k = 0; k < n; k++) {
        char ch = c[(k + 4) % n];

        if (is_digit(ch))
            rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
        else if (is_upper(ch))
            rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
        else
            return 0;
    }
    return rem == 1;
}

/* ---- US SSN ---- */

static int v_ssn(const char *s, size_t start, size_t end)
{
    unsigned area, group, serial;

    if (end - start != 11 || s[start + 3] != '-' || s[start + 6] != '-')
        return 0;
    area = prefix_num(s + start, 3);
    group = prefix_num(s + start + 4, 2);
    serial = prefix_num(s + start + 7, 4);
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
        return 0;
    /* Numbers published in advertising and never valid. */
    if ((area == 78 && group == 5 && serial == 1120) || (area == 219 && group == 9 && serial == 9999))
        return 0;
    return 1;
}

/* ---- GitHub ---- */

uint32_t redact_crc32(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t c = 0xFFFFFFFFu;

    for (size_t i = 0; i < n; i++) {
        c ^= b[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static const char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* gh[pousr]_ + 30 random base62 characters + 6-character base62 CRC32 of those 30. */
static int v_github(const char *s, size_t start, size_t end)
{
    char want[6];
    uint32_t crc;

    if (end - start != 40 || s[start + 3] != '_')
        return 0;
    crc = redact_crc32(s + start + 4, 30);
    for (int i = 5; i >= 0; i--) {
        want[i] = base62[crc % 62];
        crc /= 62;
    }
    return memcmp(want, s + start + 34, 6) == 0;
}

/* ---- JWT ---- */

static int v_jwt(const char *s, size_t start, size_t end)
{
    const char *p = s + start, *d1, *d2;
    size_t n = end - start, hlen;
    unsigned char hdr[768];
    size_t bin;
    json_t *j;
    int ok;

    d1 = memchr(p, '.', n);
    if (d1 == NULL)
        return 0;
    d2 = memchr(d1 + 1, '.', (size_t)(p + n - d1 - 1));
    if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(p + n - d2 - 1)) != NULL)
        return 0;
    hlen = (size_t)(d1 - p);
    if (hlen > 1000)
        return 0;
    if (sodium_base642bin(hdr, sizeof(hdr), p, hlen, NULL, &bin, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return 0;
    j = json_loadb((const char *)hdr, bin, JSON_REJECT_DUPLICATES, NULL);
    ok = json_is_object(j) && json_is_string(json_object_get(j, "alg"));
    json_decref(j);
    return ok;
}

/* ---- AWS secret access key, found after its key name ---- */

static int secret_char(char c)
{
    return is_alnum(c) || c == '/' || c == '+';
}

static int v_aws_secret(const char *s, size_t *start, size_t *end)
{
    size_t e = *end, b;
    int up = 0, low = 0, dig = 0;

    if (e > *start && !secret_char(s[e - 1]))
        e--; /* the pattern's trailing delimiter */
    if (e - *start < 40)
        return 0;
    b = e - 40;
    if (b > *start && secret_char(s[b - 1]))
        return 0;
    for (size_t i = b; i < e; i++) {
        if (!secret_char(s[i]))
            return 0;
        up |= is_upper(s[i]);
        low |= is_lower(s[i]);
        dig |= is_digit(s[i]) || s[i] == '/' || s[i] == '+';
    }
    if (!(up && low && dig))
        return 0; /* a word, a hex digest or a constant, not a random 40-char secret */
    *start = b;
    *end = e;
    return 1;
}

/* ---- prefix and length checks ---- */

static int has_prefix(const char *s, size_t start, size_t end, const char *pfx)
{
    size_t n = strlen(pfx);

    return end - start >= n && memcmp(s + start, pfx, n) == 0;
}

static int all_base62(const char *s, size_t b, size_t e)
{
    for (size_t i = b; i < e; i++)
        if (!is_alnum(s[i]))
            return 0;
    return 1;
}

static int v_npm(const char *s, size_t start, size_t end)
{
    return end - start == 40 && has_prefix(s, start, end, "npm_") && all_base62(s, start + 4, end);
}

static int v_pypi(const char *s, size_t start, size_t end)
{
    /* "AgEIcHlwaS5vcmc" / "AgENdGVzdC5weXBpLm9yZw": a macaroon whose location is pypi.org / test.pypi.org. */
    return (has_prefix(s, start, end, "pypi-AgEIcHlwaS5vcmc") || has_prefix(s, start, end, "pypi-AgENdGVzdC5weXBpLm9yZw"))
        && end - start >= 60;
}

static int v_slack(const char *s, size_t start, size_t end)
{
    static const char *const pfx[] = {"xoxb-", "xoxp-", "xoxa-", "xoxo-", "xoxs-", "xoxr-", "xoxe-",
                                      "xoxe.xoxb-", "xoxe.xoxp-", "xapp-"};
    int digits = 0;

    if (end - start < 20 || end - start > 255)
        return 0;
    for (size_t i = start; i < end; i++)
        digits += is_digit(s[i]);
    if (digits < 3)
        return 0;
    for (size_t i = 0; i < sizeof(pfx) / sizeof(pfx[0]); i++)
        if (has_prefix(s, start, end, pfx[i]))
            return 1;
    return 0;
}

static int v_stripe(const char *s, size_t start, size_t end)
{
    size_t n = end - start;

    if (has_prefix(s, start, end, "whsec_"))
        return n >= 6 + 32 && all_base62(s, start + 6, end);
    if (has_prefix(s, start, end, "sk_live_") || has_prefix(s, start, end, "sk_test_")
        || has_prefix(s, start, end, "rk_live_") || has_prefix(s, start, end, "rk_test_"))
        return n >= 8 + 20 && n <= 8 + 247 && all_base62(s, start + 8, end);
    return 0;
}

static int v_google_api(const char *s, size_t *start, size_t *end)
{
    if (*end - *start < 39 || !has_prefix(s, *start, *end, "AIza"))
        return 0;
    *end = *start + 39;
    return 1;
}

/* ---- phone numbers ---- */

static int v_phone(const char *s, size_t start, size_t end)
{
    int digits = 0, parens = 0, prev_sep = 0;
    char d[20];

    for (size_t i = start; i < end; i++) {
        char c = s[i];

        if (is_digit(c)) {
            if (digits < (int)sizeof(d))
                d[digits] = c;
            digits++;
            prev_sep = 0;
        } else if (c == '(' || c == ')') {
            parens += c == '(' ? 1 : -1;
            if (parens < 0 || parens > 1)
                return 0;
        } else if (c == ' ' || c == '-' || c == '.') {
            if (prev_sep)
                return 0;
            prev_sep = 1;
        } else if (!(c == '+' && i == start)) {
            return 0;
        }
    }
    if (parens != 0)
        return 0;
    if (s[start] == '+') /* E.164: country code and number, 8 to 15 digits */
        return digits >= 8 && digits <= 15;
    /* NANP: NXX-NXX-XXXX, and the area code is not an N11 service code */
    if (digits != 10)
        return 0;
    if (d[0] < '2' || d[3] < '2' || (d[1] == '1' && d[2] == '1'))
        return 0;
    return 1;
}

/* ---- credentials in free text ---- */

static int v_basic_auth(const char *s, size_t *start, size_t *end)
{
    unsigned char bin[384];
    size_t b = *start, bl;
    const char *colon;

    while (b < *end && s[b] != ' ' && s[b] != '\t')
        b++;
    while (b < *end && (s[b] == ' ' || s[b] == '\t'))
        b++;
    if (b >= *end || *end - b > 500)
        return 0;
    if (sodium_base642bin(bin, sizeof(bin), s + b, *end - b, NULL, &bl, NULL, sodium_base64_VARIANT_ORIGINAL) != 0
        && sodium_base642bin(bin, sizeof(bin), s + b, *end - b, NULL, &bl, NULL,
                             sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0)
        return 0;
    for (size_t i = 0; i < bl; i++)
        if (bin[i] < 0x20 || bin[i] == 0x7f)
            return 0;
    colon = memchr(bin, ':', bl);
    if (colon == NULL)
        return 0;
    *start = b;
    return 1;
}

static int v_url_userinfo(const char *s, size_t *start, size_t *end)
{
    size_t b = *start, e = *end;

    while (b + 2 < e && !(s[b] == ':' && s[b + 1] == '/' && s[b + 2] == '/'))
        b++;
    if (b + 2 >= e)
        return 0;
    b += 3;
    while (e > b && s[e - 1] != '@')
        e--;
    if (e <= b + 1)
        return 0;
    e--; /* drop the '@' */
    if (memchr(s + b, ':', e - b) == NULL)
        return 0;
    *start = b;
    *end = e;
    return 1;
}

/* ---- IP addresses ---- */

static int v_ipv4(const char *s, size_t start, size_t end)
{
    char buf[16];
    struct in_addr a;

    if (end - start >= sizeof(buf))
        return 0;
    memcpy(buf, s + start, end - start);
    buf[end - start] = '\0';
    return inet_pton(AF_INET, buf, &a) == 1;
}

static int v_ipv6(const char *s, size_t start, size_t end)
{
    char buf[48];
    struct in6_addr a;

    if (end - start >= sizeof(buf))
        return 0;
    memcpy(buf, s + start, end - start);
    buf[end - start] = '\0';
    return inet_pton(AF_INET6, buf, &a) == 1;
}

int redact_validate(enum redact_validator v, const char *s, size_t len, size_t *start, size_t *end)
{
    (void)len;
    switch (v) {
    case REDACT_V_NONE:
        return 1;
    case REDACT_V_LUHN:
        return v_luhn(s, start, end);
    case REDACT_V_IBAN_MOD97:
        return v_iban(s, *start, *end);
    case REDACT_V_SSN_RANGES:
        return v_ssn(s, *start, *end);
    case REDACT_V_GITHUB_CHECKSUM:
        return v_github(s, *start, *end);
    case REDACT_V_JWT:
        return v_jwt(s, *start, *end);
    case REDACT_V_AWS_SECRET_CONTEXT:
        return v_aws_secret(s, start, end);
    case REDACT_V_NPM:
        return v_npm(s, *start, *end);
    case REDACT_V_PYPI:
        return v_pypi(s, *start, *end);
    case REDACT_V_SLACK:
        return v_slack(s, *start, *end);
    case REDACT_V_STRIPE:
        return v_stripe(s, *start, *end);
    case REDACT_V_GOOGLE_API:
        return v_google_api(s, start, end);
    case REDACT_V_PHONE:
        return v_phone(s, *start, *end);
    case REDACT_V_BASIC_AUTH:
        return v_basic_auth(s, start, end);
    case REDACT_V_URL_USERINFO:
        return v_url_userinfo(s, start, end);
    case REDACT_V_IPV4:
        return v_ipv4(s, *start, *end);
    case REDACT_V_IPV6:
        return v_ipv6(s, *start, *end);
    case REDACT_V_COUNT:
        break;
    }
    return 0;
}
