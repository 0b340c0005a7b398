/* proxy/auth.c - Basic proxy authentication against a crypto_pwhash password file.
 *
 * Users are a sorted array searched with bsearch(); the file is read once per load and never
 * changes under a struct proxy_auth. The verified-credential cache is set-associative:
 *
 *   digest = BLAKE2b-256(key = random per load, user ‖ 0 ‖ pass)
 *   set    = digest[0..1] mod CACHE_SETS    ──► CACHE_WAYS entries { digest, expires }
 *
 * A probe compares the ways of one set with sodium_memcmp (constant time) under a mutex;
 * an insert refreshes the same digest, else takes an empty or expired way, else evicts the
 * way written longest ago. The digest is one-way and keyed, so a memory dump of the cache
 * gives nothing to brute-force offline without the key. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "proxy/auth-int.h"
#include "proxy/auth.h"

#define CACHE_WAYS 4
#define CACHE_SETS (PROXY_AUTH_CACHE_ENTRIES / CACHE_WAYS)
#define LINE_MAX_BYTES 4096
#define USERS_MAX 1000000
#define FILE_MAX_BYTES (64 * 1024 * 1024)

_Static_assert(PROXY_AUTH_HASH_MAX == crypto_pwhash_STRBYTES, "PROXY_AUTH_HASH_MAX is crypto_pwhash_STRBYTES");
_Static_assert(CACHE_SETS * CACHE_WAYS == PROXY_AUTH_CACHE_ENTRIES, "cache geometry");

struct auth_user {
    char *name;
    char hash[PROXY_AUTH_HASH_MAX];
    unsigned line;
};

struct cache_entry {
    uint8_t digest[crypto_generichash_BYTES];
    int64_t expires; /* 0: empty */
    uint64_t seq;    /* when it was last written: the oldest is evicted */
};

struct proxy_auth {
    struct auth_user *users;
    size_t nusers;
    char *realm;
    char dummy[PROXY_AUTH_HASH_MAX]; /* verified against for unknown users */
    uint8_t key[crypto_generichash_KEYBYTES];
    int64_t (*now_s)(void);
    pthread_mutex_t lock; /* the cache and <seq> */
    uint64_t seq;
    struct cache_entry cache[CACHE_SETS][CACHE_WAYS];
};

const char *proxy_auth_result_name(enum proxy_auth_result r)
{
    switch (r) {
    case PROXY_AUTH_OK: return "ok";
    case PROXY_AUTH_MISSING: return "missing";
    case PROXY_AUTH_MALFORMED: return "malformed";
    case PROXY_AUTH_BAD: return "bad";
    case PROXY_AUTH_UNKNOWN: return "unknown";
    }
    return "?";
}

static int64_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

void proxy_auth_set_clock(struct proxy_auth *a, int64_t (*now_s)(void))
{
    a->now_s = now_s ? now_s : mono_s;
}

static int is_ctl(unsigned char ch)
{
    return ch < 0x20 || ch == 0x7f;
}

static int has_ctl(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (is_ctl((unsigned char)s[i]))
            return 1;
    return 0;
}

int proxy_auth_user_valid(const char *user)
{
    size_t len = strlen(user);
    return len > 0 && len < PROXY_AUTH_USER_MAX && !memchr(user, ':', len) && !has_ctl(user, len);
}

/* ---- loading ---- */

static int user_cmp(const void *x, const void *y)
{
    const struct auth_user *a = x, *b = y;
    return strcmp(a->name, b->name);
}

static void users_free(struct auth_user *users, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(users[i].name);
        sodium_memzero(users[i].hash, sizeof(users[i].hash));
    }
    free(users);
}

/* Checks that <h> (<len> bytes) looks like a crypto_pwhash_str() string; a plaintext
 * password in its place fails here, and the message never quotes it. */
static int hash_ok(const char *h, size_t len)
{
    if (len >= PROXY_AUTH_HASH_MAX)
        return 0;
    if (strncmp(h, "$argon2id$", 10) != 0 && strncmp(h, "$argon2i$", 9) != 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)h[i] <= 0x20 || (unsigned char)h[i] >= 0x7f)
            return 0;
    return 1;
}

/* The dummy hash: a random password hashed with the cost parameters of <model> (the file's
 * first hash), so that verifying an unknown user costs what verifying that user costs.
 * Falls back to the interactive limits when <model>'s parameters are unreadable or out of
 * libsodium's range. 0, or -1 (out of memory). */
static int make_dummy(char *dummy, const char *model)
{
    unsigned v, m, t, p;
    int alg = crypto_pwhash_ALG_ARGON2ID13;
    unsigned long long ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    size_t mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    uint8_t rnd[16];
    char pw[sizeof(rnd) * 2 + 1];
    int n = -1;

    if (strncmp(model, "$argon2id$", 10) == 0) {
        n = sscanf(model + 10, "v=%u$m=%u,t=%u,p=%u$", &v, &m, &t, &p);
    } else if (strncmp(model, "$argon2i$", 9) == 0) {
        alg = crypto_pwhash_ALG_ARGON2I13;
        n = sscanf(model + 9, "v=%u$m=%u,t=%u,p=%u$", &v, &m, &t, &p);
    }
    if (n == 4 && p == 1 && t >= crypto_pwhash_OPSLIMIT_MIN && t <= crypto_pwhash_OPSLIMIT_SENSITIVE &&
        (size_t)m * 1024 >= crypto_pwhash_MEMLIMIT_MIN && (size_t)m * 1024 <= crypto_pwhash_MEMLIMIT_SENSITIVE &&
        (alg == crypto_pwhash_ALG_ARGON2ID13 || t >= 3)) {
        ops = t;
        mem = (size_t)m * 1024;
    } else {
        alg = crypto_pwhash_ALG_ARGON2ID13;
    }
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(pw, sizeof(pw), rnd, sizeof(rnd));
    int r = crypto_pwhash_str_alg(dummy, pw, strlen(pw), ops, mem, alg);
    sodium_memzero(pw, sizeof(pw));
    return r == 0 ? 0 : -1;
}

/* Reads the users of <f> into <a>. 0, or -1 with <err> naming <path> and the line. */
static int read_users(struct proxy_auth *a, FILE *f, const char *path, char *err, size_t errlen)
{
    char *line = NULL;
    size_t linecap = 0, cap = 0;
    ssize_t got;
    unsigned lineno = 0;
    int rc = -1;

    errno = 0;
    while ((got = getline(&line, &linecap, f)) != -1) {
        size_t len = (size_t)got;
        lineno++;
        if (len > LINE_MAX_BYTES) {
            snprintf(err, errlen, "%s:%u: line longer than %d bytes", path, lineno, LINE_MAX_BYTES);
            goto out;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' ||
                           line[len - 1] == '\t'))
            len--;
        line[len] = '\0';
        if (lineno == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) { /* a UTF-8 BOM from an editor */
            memmove(line, line + 3, len - 2);
            len -= 3;
        }
        if (memchr(line, '\0', len)) {
            snprintf(err, errlen, "%s:%u: NUL byte in line", path, lineno);
            goto out;
        }
        size_t lead = strspn(line, " \t");
        if (lead == len || line[lead] == '#')
            continue;
        char *colon = strchr(line, ':');
        if (!colon) {
            snprintf(err, errlen, "%s:%u: expected user:hash", path, lineno);
            goto out;
        }
        *colon = '\0';
        const char *hash = colon + 1;
        if (!proxy_auth_user_valid(line)) {
            snprintf(err, errlen, "%s:%u: bad user name (1-%d bytes, no control characters)", path, lineno,
                     PROXY_AUTH_USER_MAX - 1);
            goto out;
        }
        if (!hash_ok(hash, strlen(hash))) {
            snprintf(err, errlen,
                     "%s:%u: not a crypto_pwhash_str hash (argon2id); make one with vigil --hash-password",
                     path, lineno);
            goto out;
        }
        if (a->nusers == USERS_MAX) {
            snprintf(err, errlen, "%s:%u: more than %d users", path, lineno, USERS_MAX);
            goto out;
        }
        if (a->nusers == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct auth_user *nu = realloc(a->users, ncap * sizeof(*nu));
            if (!nu) {
                snprintf(err, errlen, "%s:%u: out of memory", path, lineno);
                goto out;
            }
            a->users = nu;
            cap = ncap;
        }
        struct auth_user *u = &a->users[a->nusers];
        memset(u, 0, sizeof(*u));
        u->name = strdup(line);
        if (!u->name) {
            snprintf(err, errlen, "%s:%u: out of memory", path, lineno);
            goto out;
        }
        memcpy(u->hash, hash, strlen(hash) + 1);
        u->line = lineno;
        a->nusers++;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read failed: %s", path, strerror(errno ? errno : EIO));
        goto out;
    }
    if (a->nusers == 0) {
        snprintf(err, errlen, "%s: no users", path);
        goto out;
    }
    rc = 0;
out:
    if (line)
        sodium_memzero(line, linecap);
    free(line);
    return rc;
}

/* After sorting: the duplicate whose second occurrence comes first in the file. */
static int check_duplicates(const struct proxy_auth *a, const char *path, char *err, size_t errlen)
{
    unsigned dup_line = 0, first_line = 0;
    for (size_t i = 1; i < a->nusers; i++) {
        if (strcmp(a->users[i - 1].name, a->users[i].name) != 0)
            continue;
        unsigned l1 = a->users[i - 1].line, l2 = a->users[i].line;
        unsigned later = l1 > l2 ? l1 : l2, earlier = l1 > l2 ? l2 : l1;
        if (dup_line == 0 || later < dup_line) {
            dup_line = later;
            first_line = earlier;
        }
    }
    if (dup_line == 0)
        return 0;
    snprintf(err, errlen, "%s:%u: duplicate user (first on line %u)", path, dup_line, first_line);
    return -1;
}

struct proxy_auth *proxy_auth_load(const char *path, const char *realm, char *err, size_t errlen)
{
    struct proxy_auth *a = NULL;
    FILE *f = NULL;
    struct stat st;
    int fd = -1;

    if (errlen > 0)
        err[0] = '\0';
    if (!realm)
        realm = PROXY_AUTH_DEFAULT_REALM;
    if (has_ctl(realm, strlen(realm))) {
        snprintf(err, errlen, "%s: realm contains a control character", path);
        return NULL;
    }
    if (sodium_init() < 0) {
        snprintf(err, errlen, "%s: libsodium failed to initialise", path);
        return NULL;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    /* On the descriptor, not the name: no window for a swap between check and read. */
    if (fstat(fd, &st) == -1) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    if (st.st_mode & 007) {
        snprintf(err, errlen, "%s: accessible by others (mode %04o); run chmod o-rwx on it", path,
                 (unsigned)(st.st_mode & 07777));
        goto fail;
    }
    if (st.st_size > FILE_MAX_BYTES) {
        snprintf(err, errlen, "%s: larger than %d bytes", path, FILE_MAX_BYTES);
        goto fail;
    }
    f = fdopen(fd, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    fd = -1; /* owned by f now */

    a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    a->now_s = mono_s;
    if (pthread_mutex_init(&a->lock, NULL) != 0) {
        free(a);
        a = NULL;
        snprintf(err, errlen, "%s: mutex initialisation failed", path);
        goto fail;
    }
    a->realm = strdup(realm);
    if (!a->realm) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    if (read_users(a, f, path, err, errlen) == -1)
        goto fail;
    fclose(f);
    f = NULL;
    qsort(a->users, a->nusers, sizeof(a->users[0]), user_cmp);
    if (check_duplicates(a, path, err, errlen) == -1)
        goto fail;
    /* The first user in file order sets the dummy's cost. */
    const struct auth_user *model = &a->users[0];
    for (size_t i = 1; i < a->nusers; i++)
        if (a->users[i].line < model->line)
            model = &a->users[i];
    if (make_dummy(a->dummy, model->hash) == -1) {
        snprintf(err, errlen, "%s: computing the dummy hash failed (out of memory?)", path);
        goto fail;
    }
    crypto_generichash_keygen(a->key);
    return a;

fail:
    if (f)
        fclose(f);
    if (fd != -1)
        close(fd);
    proxy_auth_free(a);
    return NULL;
}

void proxy_auth_free(struct proxy_auth *a)
{
    if (!a)
        return;
    users_free(a->users, a->nusers);
    a->users = NULL;
    free(a->realm);
    a->realm = NULL;
    pthread_mutex_destroy(&a->lock);
    sodium_memzero(a, sizeof(*a));
    free(a);
}

size_t proxy_auth_count(const struct proxy_auth *a)
{
    return a->nusers;
}

/* ---- parsing ---- */

static int blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

enum proxy_auth_result proxy_auth_parse(const char *header_value, size_t len, char *user, size_t userlen, char *pass,
                                        size_t passlen)
{
    /* Room for the longest credential the buffers can take, plus slack to detect overflow. */
    unsigned char bin[PROXY_AUTH_USER_MAX + PROXY_AUTH_PASS_MAX + 4];
    size_t binlen = 0;
    enum proxy_auth_result r = PROXY_AUTH_MALFORMED;
    const char *p = header_value, *end;

    if (userlen > 0)
        user[0] = '\0';
    if (passlen > 0)
        pass[0] = '\0';
    if (!header_value)
        return PROXY_AUTH_MISSING;
    end = p + len;
    while (p < end && blank(*p))
        p++;
    while (end > p && blank(end[-1]))
        end--;
    if (p == end)
        return PROXY_AUTH_MISSING;
    if (end - p < 6 || strncasecmp(p, "basic", 5) != 0 || !blank(p[5]))
        return PROXY_AUTH_MALFORMED;
    p += 5;
    while (p < end && blank(*p))
        p++;
    size_t tlen = (size_t)(end - p);
    if (tlen == 0 || tlen > sodium_base64_ENCODED_LEN(sizeof(bin), sodium_base64_VARIANT_ORIGINAL))
        return PROXY_AUTH_MALFORMED;
    if (sodium_base642bin(bin, sizeof(bin), p, tlen, NULL, &binlen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 &&
        sodium_base642bin(bin, sizeof(bin), p, tlen, NULL, &binlen, NULL,
                          sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0)
        goto out;
    if (has_ctl((const char *)bin, binlen)) /* NUL, CR, LF and the rest: never in a credential */
        goto out;
    const unsigned char *colon = memchr(bin, ':', binlen);
    if (!colon)
        goto out;
    size_t ulen = (size_t)(colon - bin), plen = binlen - ulen - 1;
    if (ulen == 0 || ulen >= userlen || plen >= passlen)
        goto out;
    memcpy(user, bin, ulen);
    user[ulen] = '\0';
    memcpy(pass, colon + 1, plen);
    pass[plen] = '\0';
    r = PROXY_AUTH_OK;
out:
    sodium_memzero(bin, sizeof(bin));
    return r;
}

/* ---- cache ---- */

static void cred_digest(const struct proxy_auth *a, const char *user, const char *pass,
                        uint8_t out[crypto_generichash_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, a->key, sizeof(a->key), crypto_generichash_BYTES);
    crypto_generichash_update(&st, (const unsigned char *)user, strlen(user) + 1); /* with its NUL: user ‖ 0 */
    crypto_generichash_update(&st, (const unsigned char *)pass, strlen(pass));
    crypto_generichash_final(&st, out, crypto_generichash_BYTES);
    sodium_memzero(&st, sizeof(st));
}

static struct cache_entry *cache_set(struct proxy_auth *a, const uint8_t *digest)
{
    return a->cache[((size_t)digest[0] | (size_t)digest[1] << 8) % CACHE_SETS];
}

enum proxy_auth_result proxy_auth_check_cached(struct proxy_auth *a, const char *user, const char *pass)
{
    uint8_t d[crypto_generichash_BYTES];
    enum proxy_auth_result r = PROXY_AUTH_UNKNOWN;

    cred_digest(a, user, pass, d);
    int64_t now = a->now_s();
    pthread_mutex_lock(&a->lock);
    struct cache_entry *set = cache_set(a, d);
    for (int i = 0; i < CACHE_WAYS; i++) {
        int same = sodium_memcmp(set[i].digest, d, sizeof(d)) == 0;
        if (same && set[i].expires > now)
            r = PROXY_AUTH_OK;
    }
    pthread_mutex_unlock(&a->lock);
    sodium_memzero(d, sizeof(d));
    return r;
}

static void cache_insert(struct proxy_auth *a, const char *user, const char *pass)
{
    uint8_t d[crypto_generichash_BYTES];
    cred_digest(a, user, pass, d);
    int64_t now = a->now_s();
    pthread_mutex_lock(&a->lock);
    struct cache_entry *set = cache_set(a, d), *slot = NULL;
    for (int i = 0; i < CACHE_WAYS && !slot; i++)
        if (set[i].expires != 0 && sodium_memcmp(set[i].digest, d, sizeof(d)) == 0)
            slot = &set[i];
    for (int i = 0; i < CACHE_WAYS && !slot; i++)
        if (set[i].expires <= now)
            slot = &set[i];
    if (!slot) {
        slot = &set[0];
        for (int i = 1; i < CACHE_WAYS; i++)
            if (set[i].seq < slot->seq)
                slot = &set[i];
    }
    memcpy(slot->digest, d, sizeof(d));
    slot->expires = now + PROXY_AUTH_CACHE_TTL_S;
    slot->seq = ++a->seq;
    pthread_mutex_unlock(&a->lock);
    sodium_memzero(d, sizeof(d));
}

/* ---- verification ---- */

enum proxy_auth_result proxy_auth_verify(struct proxy_auth *a, const char *user, const char *pass)
{
    struct auth_user key = { .name = (char *)user };
    const struct auth_user *u = bsearch(&key, a->users, a->nusers, sizeof(key), user_cmp);
    /* Unknown users run the same Argon2 computation against the dummy, and fail. */
    int ok = crypto_pwhash_str_verify(u ? u->hash : a->dummy, pass, strlen(pass)) == 0;
    if (!u || !ok)
        return PROXY_AUTH_BAD;
    cache_insert(a, user, pass);
    return PROXY_AUTH_OK;
}

void proxy_auth_challenge(const struct proxy_auth *a, char *out, size_t outlen)
{
    static const char head[] = "Basic realm=\"", tail[] = "\", charset=\"UTF-8\"";
    size_t o = 0;

    if (outlen == 0)
        return;
#define PUT(ch)                                                                                                        \
    do {                                                                                                               \
        if (o + 1 < outlen)                                                                                            \
            out[o++] = (ch);                                                                                           \
    } while (0)
    for (const char *s = head; *s; s++)
        PUT(*s);
    for (const char *s = a->realm; *s; s++) {
        if (*s == '"' || *s == '\\')
            PUT('\\');
        PUT(*s);
    }
    for (const char *s = tail; *s; s++)
        PUT(*s);
#undef PUT
    out[o] = '\0';
}

int proxy_auth_hash_password(const char *pass, char *out, size_t outlen)
{
    size_t len = strlen(pass);

    if (outlen < PROXY_AUTH_HASH_MAX || len == 0 || len >= PROXY_AUTH_PASS_MAX || has_ctl(pass, len))
        return -1;
    if (sodium_init() < 0)
        return -1;
    if (crypto_pwhash_str(out, pass, len, crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return -1;
    return 0;
}
