/* redact/redact-int.h - private to the .c files of redact/: detector and rule tables, the context, the
 * validators and the token helpers. Never included outside redact/ (tests may). */
#ifndef VIGIL_REDACT_REDACT_INT_H
#define VIGIL_REDACT_REDACT_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <hs.h>

#include "redact/redact.h"

/* The default detector file, embedded at build time from compliance/detectors.json
 * (redact/embed.cmake writes default-detectors.c). NUL-terminated; <len> excludes the NUL. */
extern const char redact_default_detectors_json[];
extern const size_t redact_default_detectors_len;

#define REDACT_MAX_HITS 4096 /* raw Vectorscan hits per field; more makes the field unscannable */
#define REDACT_NAME_MAX 128  /* longest header or query parameter name a rule can name */

/* ---- validators ---- */

enum redact_validator {
    REDACT_V_NONE = 0,
    REDACT_V_LUHN,           /* pii.card: 13-19 digits, Luhn, IIN ranges; may move the start */
    REDACT_V_IBAN_MOD97,     /* pii.iban: country length table and ISO 7064 mod 97-10 */
    REDACT_V_SSN_RANGES,     /* pii.ssn: no area 000/666/9xx, group 00, serial 0000 */
    REDACT_V_GITHUB_CHECKSUM, /* gh[pousr]_ + 30 chars + 6-char base62 CRC32 of the 30 */
    REDACT_V_JWT,            /* 3 base64url parts; the header decodes to a JSON object with "alg" */
    REDACT_V_AWS_SECRET_CONTEXT, /* narrows to the 40-char secret after an aws..secret key name */
    REDACT_V_NPM,            /* npm_ + 36 base62 */
    REDACT_V_PYPI,           /* pypi-AgE... macaroon for pypi.org or test.pypi.org, long enough */
    REDACT_V_SLACK,          /* xox[abposer]- / xapp- prefixes, length */
    REDACT_V_STRIPE,         /* sk_/rk_ live/test + 20.., whsec_ + 32.. */
    REDACT_V_GOOGLE_API,     /* AIza + 35: narrows off a trailing delimiter */
    REDACT_V_PHONE,          /* E.164 digit count (8-15) or NANP plausibility */
    REDACT_V_BASIC_AUTH,     /* "Basic" + base64 that decodes to printable user:password */
    REDACT_V_URL_USERINFO,   /* narrows scheme://user:pass@ to user:pass */
    REDACT_V_IPV4,           /* four octets <= 255 */
    REDACT_V_IPV6,           /* inet_pton(AF_INET6) */
    REDACT_V_COUNT
};

/* Looks a validator up by its detector-file name ("luhn", ...). 0, or -1 when unknown. */
int redact_validator_lookup(const char *name, enum redact_validator *out);
const char *redact_validator_name(enum redact_validator v);

/* 1 when, for one start, only the longest end need be tried (the validator does not depend on
 * where the match ends, or trims the end itself); 0 when shorter ends must be tried too. */
int redact_validator_longest_only(enum redact_validator v);

/* Runs validator <v> on <s>[*<start>, *<end>) of a field of <len> bytes. 1 when valid (the span
 * may have been narrowed), 0 when rejected. */
int redact_validate(enum redact_validator v, const char *s, size_t len, size_t *start, size_t *end);

/* Helpers the validators use, exposed for the tests. */
int redact_luhn_ok(const char *digits, size_t n);
uint32_t redact_crc32(const void *p, size_t n);

/* ---- detectors and field rules ---- */

struct redact_detector {
    char *id;
    char *cls;
    char *pattern;
    char *origin;           /* "file: detectors[3]" for errors */
    char *redact_after;     /* NULL, or: the token starts after the first occurrence of this
                             * (case-insensitive), skipping blanks */
    enum redact_validator validator;
    int priority;           /* higher = more specific; breaks ties between equally long matches */
    unsigned hs_flags;      /* HS_FLAG_* from "flags", plus SOM_LEFTMOST when not fixed-width */
    int enabled;
    int fixed;              /* fixed width: start = end - width, no SOM needed */
    unsigned width;
    int longest_only;
    int trusted;            /* fixed width and no ^ or $: a main-scan hit is the match itself */
    hs_database_t *confirm; /* this pattern alone, with SOM unless fixed: run on the field up to
                             * its last main-scan hit; NULL when trusted */
};

enum redact_header_kind {
    REDACT_H_VALUE = 0,   /* the whole value, rule's class (default credential.api_key) */
    REDACT_H_AUTHORIZATION,
    REDACT_H_COOKIE,
    REDACT_H_SET_COOKIE,
    REDACT_H_URL,
};

struct redact_header_rule {
    char *name; /* lower case */
    size_t name_len;
    enum redact_header_kind kind;
    char *cls;
};

struct redact_param_rule {
    char *name; /* lower case */
    size_t name_len;
    char *cls;
};

struct redact_segment_rule {
    char *id;
    char *pattern;
    char *cls;
    char *origin;
};

/* Everything a detector file and the options describe, before compiling. */
struct redact_spec {
    struct redact_detector *dets;
    size_t ndets, capdets;
    struct redact_header_rule *hdrs;
    size_t nhdrs, caphdrs;
    struct redact_param_rule *params;
    size_t nparams, capparams;
    struct redact_segment_rule *segs;
    size_t nsegs, capsegs;
};

void redact_spec_fini(struct redact_spec *sp);

/* Parses a detector file's JSON text into <sp> (merging: a detector with an existing id
 * replaces it). <origin> names the source in errors. 0, or -1 with <err>. */
int redact_spec_parse(struct redact_spec *sp, const char *json, size_t len, const char *origin, char *err,
                      size_t errlen);

/* One hit or accepted span during a call. */
struct redact_span {
    size_t start, end;
    const char *cls;
    const char *rule;
    int prio;
    int rank;  /* order of acceptance; lower wins a merge; forced (field-rule) spans are < 0 */
};

struct redact_hit {
    unsigned det;
    int prio;
    size_t from, to;
};

struct redact_raw_hit { /* a main-scan hit: end offset in the scanned buffer */
    unsigned det;
    size_t to;
};

struct redact {
    const struct redact_keyring *kr;
    size_t max_field;
    struct redact_detector *dets; /* enabled detectors; index = Vectorscan id */
    size_t ndets;
    struct redact_header_rule *hdrs;
    size_t nhdrs;
    struct redact_param_rule *params;
    size_t nparams;
    struct redact_segment_rule *segs;
    size_t nsegs;
    hs_database_t *db;    /* content detectors, no SOM, multi-line: finds which detectors hit
                           * and where their matches end; NULL when none is enabled */
    hs_database_t *segdb; /* path-segment rules, anchored; NULL when none */
    hs_scratch_t *scratch;

    /* work areas of one call */
    struct redact_raw_hit *raw; /* main-scan hits */
    size_t nraw, capraw;
    int raw_overflow;
    size_t *pend_to; /* per detector: end of its confirm window in the current field, 0 = none */
    unsigned *pending;
    size_t npending;
    char *batch; /* fields joined by '\n' for one main scan, field-rule spans masked */
    size_t batch_cap;
    struct redact_span *fsp; /* a batch's field-rule spans, all fields */
    size_t nfsp, capfsp;
    size_t *fidx; /* field i's spans are fsp[fidx[i], fidx[i + 1]) */
    size_t capfidx;
    struct redact_hit *hits; /* confirmed hits of the current field */
    size_t nhits, caphits;
    long *last_hit; /* per detector: index of its latest hit in <hits>, or -1 */
    int hit_overflow;
    struct redact_span *spans; /* forced spans, then accepted ones */
    size_t nspans, capspans;
    int nforced;
    int oom;        /* an allocation failed during this call */
    int scan_error; /* Vectorscan failed during this call */
};

/* ---- keys and tokens ---- */

/* Writes the 26 Crockford base32 characters of <h> (128 bits) and a NUL. */
void redact_base32_128(const uint8_t h[16], char out[REDACT_TOKEN_HASH_LEN + 1]);

/* Formats into <err>, always terminated, and returns -1 (so "return errf(...)"). */
int redact_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Reads the whole file at <path> into a NUL-terminated heap buffer (*<len> bytes, capped at
 * <max>). NULL with <err>. */
char *redact_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen);

/* Case-insensitive ASCII comparisons. */
int redact_ascii_ieq(const char *a, size_t alen, const char *b, size_t blen);

#endif
