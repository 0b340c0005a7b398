/* redact/redact.h - redaction: credentials and PII in string fields become keyed tokens.
 *
 * A pure library (like libsodium): it returns errors and never logs. It reads and writes only
 * its own files (the token key ring, detector files, role files and role key files).
 *
 *   field ──► field rules (header names, URL userinfo, query parameters, path segments)
 *         ──► one Vectorscan pass with every content detector (block mode)
 *         ──► exact span of each hit, validator (Luhn, mod-97, checksums, ...)
 *         ──► overlaps: longest first, then the most specific (highest priority)
 *         ──► each span replaced by  tok:<class>:<key-id>:<26 Crockford base32 chars>
 *
 * The token is a 128-bit keyed BLAKE2b of  class ‖ 0x00 ‖ value  under the token key named by
 * <key-id>: the same value gives the same token under one key, so a secret correlates across
 * events and clients without being stored. Low-entropy classes (pii.ssn, pii.phone, pii.card)
 * are safe only because the key is secret: whoever holds the key can test guesses. Keep
 * DATA_DIR/keys out of backups that leave the host, and rotate (redact_keyring_rotate) if it
 * leaks.
 *
 * Fail safe: a field that cannot be scanned (longer than the configured limit, a scanner
 * error, out of memory) is tokenized whole under the class "unscannable"; an input is never
 * passed through unredacted.
 *
 * Sealed originals: where policy keeps originals, the pipeline seals each value with a
 * per-segment data key (XChaCha20-Poly1305, associated data = seq ‖ field path) and seals the
 * data key once per segment to each role allowed to reveal its class (crypto_box_seal).
 * Roles come from compliance/roles.json (redact_roles_load).
 *
 * Threads: a struct redact is used by one thread at a time (it owns Vectorscan scratch and
 * work buffers); create one per thread. A struct redact_keyring and a struct redact_roles are
 * read-only after loading and may be shared, except during redact_keyring_rotate(). */
#ifndef VIGIL_REDACT_REDACT_H
#define VIGIL_REDACT_REDACT_H

#include <stddef.h>
#include <stdint.h>

#define REDACT_CLASS_MAX 64          /* longest class name, in bytes, without the NUL */
#define REDACT_KEY_ID_MAX 12         /* longest key id, in bytes, without the NUL ("k1", "k2", ...) */
#define REDACT_TOKEN_HASH_LEN 26     /* Crockford base32 characters of the 128-bit hash */
#define REDACT_TOKEN_MAX 112         /* "tok:" class ":" key-id ":" hash, NUL included */
#define REDACT_DEFAULT_MAX_FIELD (64 * 1024)
#define REDACT_CLASS_UNSCANNABLE "unscannable"

/* ---- token key ring: DATA_DIR/keys/token-k<N>.key, 32 random bytes, mode 0600 ---- */

struct redact_keyring;

/* Opens the key ring in directory <dir>, creating the directory (0700) and a first key "k1"
 * (0600) when it holds none. Every token-k<N>.key file is loaded; the highest N is the current
 * key, which new tokens use; older keys stay loaded so their tokens can be verified. Refuses a
 * key file that is not a regular file, is not 32 bytes, or is readable or writable by group or
 * others. NULL with <err> (at most <errlen> bytes, always terminated) on failure. */
struct redact_keyring *redact_keyring_open(const char *dir, char *err, size_t errlen);

/* Rotation: creates key k<N+1> (0600) in the ring's directory and makes it current. Old keys
 * stay loaded. 0, or -1 with <err>. Not while another thread uses <kr> (or a struct redact made
 * with it); redact contexts pick up the new key on their next call. */
int redact_keyring_rotate(struct redact_keyring *kr, char *err, size_t errlen);

/* Id of the current key ("k1", ...). Valid until the next rotation or redact_keyring_free(). */
const char *redact_keyring_current(const struct redact_keyring *kr);

size_t redact_keyring_count(const struct redact_keyring *kr); /* keys loaded */

/* Wipes the keys from memory and frees <kr>. NULL does nothing. */
void redact_keyring_free(struct redact_keyring *kr);

/* Writes the token of <len> bytes at <value> for class <cls> under the current key into <out>.
 * 0, or -1 when <cls> is not a valid class name (lower-case dotted, [a-z0-9_-] parts, at most
 * REDACT_CLASS_MAX bytes). Any thread. */
int redact_token_make(const struct redact_keyring *kr, const char *cls, const void *value, size_t len,
                      char out[REDACT_TOKEN_MAX]);

enum redact_verify {
    REDACT_VERIFY_MATCH = 0,     /* <token> is the token of <value> under its own key id and class */
    REDACT_VERIFY_NO_MATCH,      /* well-formed, key known, but another value */
    REDACT_VERIFY_UNKNOWN_KEY,   /* the token's key id is not in the ring */
    REDACT_VERIFY_MALFORMED,     /* not tok:<class>:<key-id>:<26 chars> */
};

/* Checks whether <token> was made from <value> (<len> bytes), under the key id and the class
 * the token names. Constant time in the hash comparison. Any thread. */
enum redact_verify redact_token_verify(const struct redact_keyring *kr, const void *value, size_t len,
                                       const char *token);

/* ---- the redaction context: detectors, field rules and work buffers ---- */

/* Options of redact_new(). Zero-initialize and set what you need. Lists are NULL-terminated
 * arrays of strings, borrowed for the call. */
struct redact_opts {
    /* Detector file (schemas/detectors.schema.json). NULL: the default embedded in the library
     * (compliance/detectors.json at build time). */
    const char *detectors_path;
    /* A DLP team's file in the same format, merged on top: its detectors are added (one with
     * the id of an existing detector replaces it), its header, query and path rules are added,
     * and its "enable" / "disable" lists apply. NULL: none. */
    const char *custom_path;
    size_t max_field_bytes;        /* longer fields are tokenized whole ("unscannable"); 0: 64 KiB */
    const char *const *enable;     /* detector ids or class patterns ("pii.ip", "pii.*") to switch on */
    const char *const *disable;    /* detector ids or class patterns to switch off (applied after <enable>) */
    const char *const *api_key_headers; /* more header names whose whole value is credential.api_key */
    const char *const *query_params;    /* more query parameter names whose value is credential.query */
};

struct redact;

/* Loads and compiles the detectors and field rules of <o> (NULL: all defaults) into one
 * Vectorscan database. Borrows <kr>, which must outlive the context. NULL with <err> on
 * failure; errors in a file name the file and the JSON path, e.g.
 * "custom.json: detectors[3].pattern: Missing close parenthesis for group started at index 0". */
struct redact *redact_new(const struct redact_opts *o, const struct redact_keyring *kr, char *err, size_t errlen);

/* Frees <rd>. NULL does nothing. */
void redact_free(struct redact *rd);

/* Loads and compiles what redact_new() would, then discards it: a config check that needs no
 * key ring. 0, or -1 with <err>. */
int redact_check(const struct redact_opts *o, char *err, size_t errlen);

/* Number of enabled detectors of <rd>, and the id and class of detector <i> (for listings). */
size_t redact_detector_count(const struct redact *rd);
const char *redact_detector_id(const struct redact *rd, size_t i);
const char *redact_detector_class(const struct redact *rd, size_t i);

/* One replaced span. The original value is never copied here: <in_off>/<in_len> locate it in
 * the caller's own input (for sealing), <out_off>/<out_len> locate the token in the output. */
struct redact_match {
    const char *cls;          /* class, e.g. "pii.email"; valid while the struct redact lives */
    const char *rule;         /* detector id, or the field rule: "header", "authorization", "cookie",
                               * "userinfo", "query", "path", "unscannable"; same lifetime */
    size_t in_off, in_len;    /* span in the input */
    size_t out_off, out_len;  /* span of the token in redact_result.out */
    char token[REDACT_TOKEN_MAX];
};

#define REDACT_R_UNSCANNABLE 0x1u /* the whole field was tokenized: too long, scanner error, no memory */

/* Output of one redaction call. The caller owns it (redact_result_init/_fini) and reuses it
 * across calls so that the hot path does not allocate once the buffers have grown. */
struct redact_result {
    const char *out;                    /* redacted text, NUL-terminated; valid until the next call
                                         * with this result or redact_result_fini() */
    size_t len;                         /* bytes of <out> */
    const struct redact_match *matches; /* <nmatches> spans, by ascending offset; same validity */
    size_t nmatches;
    unsigned flags;                     /* REDACT_R_* */
    /* private: */
    char *buf;
    size_t buf_cap;
    struct redact_match *mbuf;
    size_t mbuf_cap;
    char fallback[REDACT_TOKEN_MAX];
    struct redact_match fallback_match;
};

void redact_result_init(struct redact_result *res);
void redact_result_fini(struct redact_result *res);

/* Each call below redacts <len> bytes at <s> (any bytes; need not be NUL-terminated) into
 * <res>. Whatever happens, <res> then holds output that is safe to emit: the redacted text,
 * or one "unscannable" token for the whole field (REDACT_R_UNSCANNABLE). Returns 0, or -1 when
 * memory ran out (the whole-field token is still in <res>; count it). Borrows <s> for the call.
 * The thread that owns <rd> only. */

/* A free string field: content detectors only. */
int redact_string(struct redact *rd, const char *s, size_t len, struct redact_result *res);

/* A header value. <name> (<name_len> bytes, any case) selects the field rule: Authorization
 * and Proxy-Authorization keep the scheme and tokenize the credentials (credential.bearer,
 * credential.basic, or credential.authorization for other schemes); Cookie and Set-Cookie keep
 * the cookie names and attributes and tokenize each value (credential.cookie); API-key headers
 * (X-Api-Key, Api-Key, X-Auth-Token, configured ones) are tokenized whole (credential.api_key);
 * URL-valued headers (Referer, Location, ...) get the URL rules. Content detectors run over
 * the rest. */
int redact_header(struct redact *rd, const char *name, size_t name_len, const char *value, size_t len,
                  struct redact_result *res);

/* A URL: absolute ("https://user:pass@host/p?q#f"), origin-form ("/p?q#f") or a bare path.
 * Userinfo becomes credential.userinfo; path segments matching a configured segment pattern
 * are tokenized; the values of configured query (and fragment) parameters are tokenized, the
 * names kept; content detectors run over the rest. */
int redact_url(struct redact *rd, const char *s, size_t len, struct redact_result *res);

/* A query string without the '?' ("a=1&token=x"): the query rules and the detectors. */
int redact_query(struct redact *rd, const char *s, size_t len, struct redact_result *res);

/* Several fields at once, e.g. every string field of one event: one Vectorscan pass over all
 * of them (a scan call has a fixed cost that dominates short fields), then each field's
 * hits are confirmed on that field alone, so the outcome is exactly that of one call per
 * field. */
enum redact_field_kind {
    REDACT_FIELD_STRING = 0, /* redact_string() */
    REDACT_FIELD_URL,        /* redact_url() */
    REDACT_FIELD_QUERY,      /* redact_query() */
    REDACT_FIELD_HEADER,     /* redact_header(): <name>, <name_len> name the header */
};

struct redact_field {
    enum redact_field_kind kind;
    const char *name;
    size_t name_len;
    const char *value;
    size_t len;
};

/* Redacts the <n> fields of <f> into <res>[0..n) (each initialized by the caller), with the
 * contract of the single-field calls for each. Returns 0, or -1 when memory ran out for some
 * field (its result holds its whole-field token). Borrows <f> and the values for the call. */
int redact_fields(struct redact *rd, const struct redact_field *f, size_t n, struct redact_result *res);

/* ---- sealed originals ---- */

#define REDACT_DATA_KEY_BYTES 32    /* crypto_aead_xchacha20poly1305_ietf_KEYBYTES */
#define REDACT_SEAL_OVERHEAD 40     /* 24-byte nonce + 16-byte tag */
#define REDACT_SEALED_KEY_BYTES 80  /* crypto_box_SEALBYTES + REDACT_DATA_KEY_BYTES */
#define REDACT_ROLE_KEY_BYTES 32    /* X25519 public or secret key */

/* A per-segment data key. Plain bytes: wipe it with redact_data_key_wipe() when done. */
struct redact_data_key {
    uint8_t bytes[REDACT_DATA_KEY_BYTES];
};

/* A fresh random key (crypto_aead_xchacha20poly1305_ietf_keygen). 0, or -1 when libsodium
 * cannot initialize. */
int redact_data_key_new(struct redact_data_key *k);
void redact_data_key_wipe(struct redact_data_key *k);

/* Seals <len> bytes of <value> under <k> with associated data  seq (8 bytes, big-endian) ‖
 * <field> (e.g. "request.headers.authorization"), so the sealed value opens only for that
 * record and field. Writes nonce ‖ ciphertext ‖ tag (<len> + REDACT_SEAL_OVERHEAD bytes) to
 * <out> (capacity <outcap>) and its length to *<outlen>. 0, or -1 when <out> is too small. */
int redact_seal(const struct redact_data_key *k, uint64_t seq, const char *field, const void *value, size_t len,
                uint8_t *out, size_t outcap, size_t *outlen);

/* Opens what redact_seal() made. 0 with the value in <out> (*<outlen> bytes), or -1 when <out>
 * is too small, the input is too short, or it was altered, or <seq>/<field>/<k> differ. */
int redact_open(const struct redact_data_key *k, uint64_t seq, const char *field, const uint8_t *sealed,
                size_t sealed_len, uint8_t *out, size_t outcap, size_t *outlen);

/* Seals data key <k> to a role's X25519 public key (crypto_box_seal). 0, or -1. */
int redact_data_key_seal(const struct redact_data_key *k, const uint8_t role_pk[REDACT_ROLE_KEY_BYTES],
                         uint8_t out[REDACT_SEALED_KEY_BYTES]);

/* Opens a sealed data key with the role's key pair. 0, or -1 when it was not sealed to that
 * key or was altered. */
int redact_data_key_open(struct redact_data_key *k, const uint8_t sealed[REDACT_SEALED_KEY_BYTES],
                         const uint8_t role_pk[REDACT_ROLE_KEY_BYTES], const uint8_t role_sk[REDACT_ROLE_KEY_BYTES]);

/* Role key files: the base64 of a 32-byte X25519 secret key and a newline, mode 0600.
 * redact_role_key_create() makes a new key pair at <path> (refusing to overwrite) and returns
 * its public key; redact_role_key_load() reads one back (refusing a file readable or writable
 * by group or others) and derives the public key. 0, or -1 with <err>. The caller wipes <sk>. */
int redact_role_key_create(const char *path, uint8_t pk[REDACT_ROLE_KEY_BYTES], char *err, size_t errlen);
int redact_role_key_load(const char *path, uint8_t pk[REDACT_ROLE_KEY_BYTES], uint8_t sk[REDACT_ROLE_KEY_BYTES],
                         char *err, size_t errlen);

/* ---- roles: compliance/roles.json (schemas/roles.schema.json) ---- */

struct redact_role {
    const char *name;
    const char *description;             /* "" when absent */
    int has_key;                         /* 0: "public_key": null, not provisioned: nothing is sealed to it */
    uint8_t public_key[REDACT_ROLE_KEY_BYTES];
    const char *const *reveal;           /* <nreveal> class patterns */
    size_t nreveal;
};

struct redact_roles;

/* Loads the roles file at <path>. NULL with <err> naming the file and the JSON path on
 * failure, e.g. "roles.json: roles[1].public_key: not the base64 of 32 bytes". */
struct redact_roles *redact_roles_load(const char *path, char *err, size_t errlen);

/* Same from <len> bytes of JSON text; <origin> names the source in errors. */
struct redact_roles *redact_roles_parse(const char *json, size_t len, const char *origin, char *err, size_t errlen);

void redact_roles_free(struct redact_roles *r); /* NULL does nothing */
size_t redact_roles_count(const struct redact_roles *r);
const struct redact_role *redact_roles_at(const struct redact_roles *r, size_t i); /* valid while <r> is */
const struct redact_role *redact_roles_find(const struct redact_roles *r, const char *name); /* or NULL */

/* 1 when <role> may reveal values of class <cls>, else 0. */
int redact_role_may_reveal(const struct redact_role *role, const char *cls);

/* 1 when class pattern <pattern> covers class <cls>, else 0. A pattern is a class ("pii.email"),
 * a prefix wildcard ("pii.*": pii.email, pii.card.amex, ...), or "*". Credentials need explicit
 * listing: "*" covers neither credential.* nor "unscannable" (which may hide a credential). */
int redact_class_match(const char *pattern, const char *cls);

/* 0 when <cls> is a valid class name, else -1. */
int redact_class_valid(const char *cls);

#endif
