/* proxy/auth.h - proxy authentication: Basic credentials in Proxy-Authorization, checked
 * against a password file of libsodium crypto_pwhash_str() hashes.
 *
 * Checking a password costs an Argon2id computation (tens of milliseconds, tens of MiB), far
 * too slow for an event loop, so a check has two paths:
 *
 *   worker loop:   proxy_auth_parse() ─► proxy_auth_check_cached() ── OK ──► principal = user
 *                                                   │ UNKNOWN
 *                                                   ▼
 *   helper thread: proxy_auth_verify() ─► OK (and cached) or BAD ─► back to the worker
 *
 * The cache holds a keyed BLAKE2b of user ‖ 0 ‖ password (a random key per struct
 * proxy_auth, never the password) for credentials that verified recently: 1024 entries,
 * 5 minutes each. A reload loads a new struct proxy_auth, whose cache starts empty, so a
 * removed user or changed password stops working at the reload.
 *
 * Every result other than OK is answered with 407 and proxy_auth_challenge(); the values
 * tell the record why. Nothing here logs, and no error text carries a password or a hash.
 * A loaded struct proxy_auth is read-only except for its cache, which has its own lock: any
 * thread may call any function on it between load and free. */
#ifndef VIGIL_PROXY_AUTH_H
#define VIGIL_PROXY_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define PROXY_AUTH_USER_MAX 256       /* bytes, terminator included */
#define PROXY_AUTH_PASS_MAX 1024      /* bytes, terminator included */
#define PROXY_AUTH_HASH_MAX 128       /* crypto_pwhash_STRBYTES */
#define PROXY_AUTH_CACHE_ENTRIES 1024
#define PROXY_AUTH_CACHE_TTL_S 300
#define PROXY_AUTH_DEFAULT_REALM "vigil"

enum proxy_auth_result {
    PROXY_AUTH_OK = 0,
    PROXY_AUTH_MISSING,   /* no Proxy-Authorization header (or an empty one) */
    PROXY_AUTH_MALFORMED, /* not "Basic <base64 of user:pass>", or control characters */
    PROXY_AUTH_BAD,       /* unknown user or wrong password (indistinguishable on purpose) */
    PROXY_AUTH_UNKNOWN,   /* proxy_auth_check_cached(): not verified recently, call proxy_auth_verify() */
};

/* "ok", "missing", "malformed", "bad", "unknown": for events. Static strings. */
const char *proxy_auth_result_name(enum proxy_auth_result r);

struct proxy_auth;

/* Loads the password file at <path>: one "user:hash" per line, where hash is the output of
 * crypto_pwhash_str() ("$argon2id$..." or "$argon2i$..."); blank lines and lines whose first
 * non-blank character is '#' are ignored; trailing blanks and CR are dropped, and so is a
 * leading UTF-8 BOM. The user is 1-255 bytes without ':' or control characters; users are
 * unique. The file must be a
 * regular file with no permission bits for others (mode & 007 == 0), checked on the open
 * descriptor. <realm> (borrowed; NULL means PROXY_AUTH_DEFAULT_REALM) is what the challenge
 * names; it may not contain control characters. A file with no users is an error (every
 * client would get 407). Returns the loaded state, or NULL with one line in <err> naming the
 * file and, for content errors, the line ("/etc/vigil/passwd:7: duplicate user (first on
 * line 3)"). Slow path: also computes the dummy hash that unknown users are checked
 * against, with the cost parameters of the file's first hash. Free with proxy_auth_free(). */
struct proxy_auth *proxy_auth_load(const char *path, const char *realm, char *err, size_t errlen);

/* Wipes and frees <a>; NULL does nothing. No other thread may be using <a>. */
void proxy_auth_free(struct proxy_auth *a);

/* Number of users loaded. */
size_t proxy_auth_count(const struct proxy_auth *a);

/* Parses a Proxy-Authorization value (<header_value>, <len> bytes, need not be terminated;
 * NULL or blank means MISSING): optional blanks, the scheme "Basic" in any case, one or more
 * blanks, standard base64 (padding optional), optional blanks. The decoded text splits at
 * its first ':' into <user> (non-empty) and <pass> (may be empty), written terminated into
 * the caller's buffers of <userlen> and <passlen> bytes. Any control character (below 0x20,
 * or 0x7f) in either, a missing ':', another scheme, bad base64 or a value too long for
 * the buffers gives MALFORMED. Returns OK, MISSING or MALFORMED; the buffers are cleared
 * unless OK. The caller should sodium_memzero(<pass>) after use. Any thread. */
enum proxy_auth_result proxy_auth_parse(const char *header_value, size_t len, char *user, size_t userlen, char *pass,
                                        size_t passlen);

/* Fast path (a keyed hash and a locked table probe, about a microsecond): OK when exactly
 * this <user> and <pass> were verified by proxy_auth_verify() in the last
 * PROXY_AUTH_CACHE_TTL_S seconds, else UNKNOWN. Never BAD: a wrong password is not cached.
 * Any thread, the event loop included. */
enum proxy_auth_result proxy_auth_check_cached(struct proxy_auth *a, const char *user, const char *pass);

/* Slow path (crypto_pwhash_str_verify: tens of milliseconds of CPU and the hash's memory
 * cost): OK when <pass> is <user>'s password, and the credential is then cached; BAD
 * otherwise. An unknown user is verified against the dummy hash, so it costs what a known
 * user with the same parameters costs. Never on an event loop: a helper thread. */
enum proxy_auth_result proxy_auth_verify(struct proxy_auth *a, const char *user, const char *pass);

/* Writes the Proxy-Authenticate value into <out> (always terminated when <outlen> > 0,
 * truncated if too small; 64 bytes plus twice the realm suffice):
 *   Basic realm="<realm>", charset="UTF-8"
 * with '"' and '\' in the realm escaped as a quoted-string requires. */
void proxy_auth_challenge(const struct proxy_auth *a, char *out, size_t outlen);

/* Hashes <pass> with crypto_pwhash_str() at OPSLIMIT_INTERACTIVE / MEMLIMIT_INTERACTIVE into
 * <out> (at least PROXY_AUTH_HASH_MAX bytes), for `vigil --hash-password USER`. Returns 0, or
 * -1 when <pass> is empty, contains a control character (no client could send it),
 * is longer than PROXY_AUTH_PASS_MAX - 1 bytes, <outlen> is too small, or hashing failed
 * (out of memory). Slow path; any thread. */
int proxy_auth_hash_password(const char *pass, char *out, size_t outlen);

/* 1 when <user> can be a password file user (1-255 bytes, no ':' and no control
 * character), else 0: check it before printing "user:hash". */
int proxy_auth_user_valid(const char *user);

#endif
