/* redact/token.c - the token key ring and the tokens themselves.
 *
 *   DATA_DIR/keys/            mode 0700, created on first use
 *       token-k1.key          32 random bytes, mode 0600
 *       token-k2.key          after one rotation: the current key (highest number)
 *
 *   tok:<class>:<key-id>:<26 Crockford base32 chars of BLAKE2b-128(key; class ‖ 0x00 ‖ value)>
 *
 * A key file is created under a temporary name (O_EXCL, 0600), synced, then linked to its
 * final name, so a reader never sees a partial key and two processes starting at once agree
 * on one key. A key file readable or writable by group or others is refused, not repaired:
 * the key may already have leaked, and rotating is the operator's call. */
#include "redact/redact-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN_KEY_BYTES 32
#define KEY_PREFIX "token-k"
#define KEY_SUFFIX ".key"

struct token_key {
    unsigned num;
    char id[REDACT_KEY_ID_MAX + 1];
    uint8_t key[TOKEN_KEY_BYTES];
};

struct redact_keyring {
    char *dir;
    struct token_key *keys; /* sorted by num */
    size_t n;
    size_t current; /* index of the highest num */
};

int redact_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int redact_ascii_ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];

        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return 1;
}

char *redact_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL) {
        redact_errf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        size_t r;

        if (cap - n < 4096 && cap < max + 1) { /* n > max is caught after the read */
            char *nb;

            cap = cap ? cap * 2 : 8192;
            if (cap > max + 1)
                cap = max + 1;
            nb = realloc(buf, cap + 1);
            if (nb == NULL) {
                redact_errf(err, errlen, "%s: out of memory", path);
                goto fail;
            }
            buf = nb;
        }
        r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                redact_errf(err, errlen, "%s: read error", path);
                goto fail;
            }
            break;
        }
        if (n > max) {
            redact_errf(err, errlen, "%s: larger than %zu bytes", path, max);
            goto fail;
        }
    }
    fclose(f);
    if (buf == NULL && (buf = malloc(1)) == NULL) {
        redact_errf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    fclose(f);
    free(buf);
    return NULL;
}

int redact_class_valid(const char *cls)
{
    size_t n = 0;
    int part = 0; /* characters in the current dotted part */

    if (cls == NULL)
        return -1;
    for (const char *p = cls; *p; p++, n++) {
        char c = *p;

        if (n >= REDACT_CLASS_MAX)
            return -1;
        if (c == '.') {
            if (part == 0)
                return -1;
            part = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-') {
            part++;
        } else {
            return -1;
        }
    }
    return part == 0 ? -1 : 0;
}

static const char crockford[32] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void redact_base32_128(const uint8_t h[16], char out[REDACT_TOKEN_HASH_LEN + 1])
{
    uint64_t hi = 0, lo = 0;

    for (int i = 0; i < 8; i++) {
        hi = hi << 8 | h[i];
        lo = lo << 8 | h[8 + i];
    }
    /* 26 digits hold 130 bits: the number 00‖h, most significant digit first. */
    for (int i = 0; i < REDACT_TOKEN_HASH_LEN; i++) {
        unsigned shift = 5 * (unsigned)(REDACT_TOKEN_HASH_LEN - 1 - i), v;

        if (shift >= 64)
            v = (unsigned)(hi >> (shift - 64)) & 31;
        else if (shift > 59)
            v = (unsigned)((lo >> shift) | (hi << (64 - shift))) & 31;
        else
            v = (unsigned)(lo >> shift) & 31;
        out[i] = crockford[v];
    }
    out[REDACT_TOKEN_HASH_LEN] = '\0';
}

static void token_hash(const uint8_t key[TOKEN_KEY_BYTES], const char *cls, const void *value, size_t len,
                       char out[REDACT_TOKEN_HASH_LEN + 1])
{
    crypto_generichash_state st;
    uint8_t h[16];
    static const uint8_t zero = 0;

    crypto_generichash_init(&st, key, TOKEN_KEY_BYTES, sizeof(h));
    crypto_generichash_update(&st, (const uint8_t *)cls, strlen(cls));
    crypto_generichash_update(&st, &zero, 1);
    crypto_generichash_update(&st, value, len);
    crypto_generichash_final(&st, h, sizeof(h));
    redact_base32_128(h, out);
    sodium_memzero(&st, sizeof(st));
}

int redact_token_make(const struct redact_keyring *kr, const char *cls, const void *value, size_t len,
                      char out[REDACT_TOKEN_MAX])
{
    const struct token_key *k = &kr->keys[kr->current];
    char hash[REDACT_TOKEN_HASH_LEN + 1];

    if (redact_class_valid(cls) == -1)
        return -1;
    token_hash(k->key, cls, value, len, hash);
    snprintf(out, REDACT_TOKEN_MAX, "tok:%s:%s:%s", cls, k->id, hash);
    return 0;
}

enum redact_verify redact_token_verify(const struct redact_keyring *kr, const void *value, size_t len,
                                       const char *token)
{
    char cls[REDACT_CLASS_MAX + 1], kid[REDACT_KEY_ID_MAX + 1], hash[REDACT_TOKEN_HASH_LEN + 1];
    const char *c1, *c2, *c3;
    size_t n;

    if (token == NULL || strncmp(token, "tok:", 4) != 0)
        return REDACT_VERIFY_MALFORMED;
    c1 = token + 4;
    c3 = strrchr(c1, ':');
    if (c3 == NULL || strlen(c3 + 1) != REDACT_TOKEN_HASH_LEN)
        return REDACT_VERIFY_MALFORMED;
    for (c2 = c3 - 1; c2 > c1 && *c2 != ':'; c2--)
        ;
    if (c2 <= c1)
        return REDACT_VERIFY_MALFORMED;
    n = (size_t)(c2 - c1);
    if (n > REDACT_CLASS_MAX)
        return REDACT_VERIFY_MALFORMED;
    memcpy(cls, c1, n);
    cls[n] = '\0';
    n = (size_t)(c3 - c2 - 1);
    if (n == 0 || n > REDACT_KEY_ID_MAX)
        return REDACT_VERIFY_MALFORMED;
    memcpy(kid, c2 + 1, n);
    kid[n] = '\0';
    if (redact_class_valid(cls) == -1)
        return REDACT_VERIFY_MALFORMED;
    for (const char *p = c3 + 1; *p; p++)
        if (memchr(crockford, *p, sizeof(crockford)) == NULL)
            return REDACT_VERIFY_MALFORMED;
    for (size_t i = 0; i < kr->n; i++) {
        if (strcmp(kr->keys[i].id, kid) != 0)
            continue;
        token_hash(kr->keys[i].key, cls, value, len, hash);
        return sodium_memcmp(hash, c3 + 1, REDACT_TOKEN_HASH_LEN) == 0 ? REDACT_VERIFY_MATCH
                                                                        : REDACT_VERIFY_NO_MATCH;
    }
    return REDACT_VERIFY_UNKNOWN_KEY;
}

/* "token-k<N>.key" -> N (1..999999999), or 0. */
static unsigned key_file_num(const char *name)
{
    size_t pl = strlen(KEY_PREFIX), sl = strlen(KEY_SUFFIX), n = strlen(name);
    unsigned long v = 0;

    if (n <= pl + sl || strncmp(name, KEY_PREFIX, pl) != 0 || strcmp(name + n - sl, KEY_SUFFIX) != 0)
        return 0;
    if (name[pl] == '0' || n - pl - sl > 9)
        return 0;
    for (size_t i = pl; i < n - sl; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(name[i] - '0');
    }
    return (unsigned)v;
}

static int load_key(struct redact_keyring *kr, unsigned num, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct token_key *nk, *k;
    struct stat st;
    ssize_t r;
    int fd;

    snprintf(path, sizeof(path), "%s/" KEY_PREFIX "%u" KEY_SUFFIX, kr->dir, num);
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1)
        return redact_errf(err, errlen, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) == -1) {
        redact_errf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        redact_errf(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    if (st.st_mode & 077) {
        redact_errf(err, errlen, "%s: mode %04o gives group or others access; refusing the key (chmod 600, "
                    "and rotate if it may have leaked)", path, (unsigned)(st.st_mode & 07777));
        goto fail;
    }
    if (st.st_size != TOKEN_KEY_BYTES) {
        redact_errf(err, errlen, "%s: %lld bytes, want %d", path, (long long)st.st_size, TOKEN_KEY_BYTES);
        goto fail;
    }
    /* Not realloc: the old array is wiped before it is freed. */
    nk = malloc((kr->n + 1) * sizeof(*nk));
    if (nk == NULL) {
        redact_errf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    if (kr->n) {
        memcpy(nk, kr->keys, kr->n * sizeof(*nk));
        sodium_memzero(kr->keys, kr->n * sizeof(*nk));
    }
    free(kr->keys);
    kr->keys = nk;
    k = &kr->keys[kr->n];
    memset(k, 0, sizeof(*k));
    r = read(fd, k->key, TOKEN_KEY_BYTES);
    if (r != TOKEN_KEY_BYTES) {
        sodium_memzero(k->key, sizeof(k->key));
        redact_errf(err, errlen, "%s: short read", path);
        goto fail;
    }
    close(fd);
    k->num = num;
    snprintf(k->id, sizeof(k->id), "k%u", num);
    kr->n++;
    return 0;
fail:
    close(fd);
    return -1;
}

/* Creates key file <num> with fresh random bytes. EEXIST at the final name is success: another
 * process made it first, and it is loaded like any other. */
static int create_key(const char *dir, unsigned num, char *err, size_t errlen)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    uint8_t key[TOKEN_KEY_BYTES];
    int fd, rc = -1, dfd;

    snprintf(path, sizeof(path), "%s/" KEY_PREFIX "%u" KEY_SUFFIX, dir, num);
    snprintf(tmp, sizeof(tmp), "%s/." KEY_PREFIX "%u.%ld.tmp", dir, num, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd == -1)
        return redact_errf(err, errlen, "%s: %s", tmp, strerror(errno));
    randombytes_buf(key, sizeof(key));
    if (fchmod(fd, 0600) == -1 || write(fd, key, sizeof(key)) != (ssize_t)sizeof(key) || fsync(fd) == -1) {
        redact_errf(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        goto out;
    }
    close(fd);
    if (link(tmp, path) == -1 && errno != EEXIST) {
        redact_errf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd != -1) {
        fsync(dfd);
        close(dfd);
    }
    rc = 0;
out:
    unlink(tmp);
    sodium_memzero(key, sizeof(key));
    return rc;
}

static int mkdir_p(const char *dir, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof(buf))
        return redact_errf(err, errlen, "key directory: bad path");
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0700) == -1 && errno != EEXIST)
            return redact_errf(err, errlen, "%s: %s", buf, strerror(errno));
        buf[i] = dir[i];
    }
    return 0;
}

static int cmp_key(const void *a, const void *b)
{
    const struct token_key *x = a, *y = b;

    return x->num < y->num ? -1 : x->num > y->num;
}

static int scan_dir(struct redact_keyring *kr, char *err, size_t errlen)
{
    DIR *d = opendir(kr->dir);
    struct dirent *de;

    if (d == NULL)
        return redact_errf(err, errlen, "%s: %s", kr->dir, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        unsigned num = key_file_num(de->d_name);

        if (num == 0)
            continue;
        if (load_key(kr, num, err, errlen) == -1) {
            closedir(d);
            return -1;
        }
    }
    closedir(d);
    if (kr->n > 1)
        qsort(kr->keys, kr->n, sizeof(*kr->keys), cmp_key);
    kr->current = kr->n ? kr->n - 1 : 0;
    return 0;
}

static void wipe_keys(struct redact_keyring *kr)
{
    if (kr->keys != NULL)
        sodium_memzero(kr->keys, kr->n * sizeof(*kr->keys));
    free(kr->keys);
    kr->keys = NULL;
    kr->n = 0;
}

struct redact_keyring *redact_keyring_open(const char *dir, char *err, size_t errlen)
{
    struct redact_keyring *kr;

    if (sodium_init() == -1) {
        redact_errf(err, errlen, "libsodium failed to initialize");
        return NULL;
    }
    if (dir == NULL || *dir == '\0') {
        redact_errf(err, errlen, "key directory: not set");
        return NULL;
    }
    kr = calloc(1, sizeof(*kr));
    if (kr == NULL || (kr->dir = strdup(dir)) == NULL) {
        redact_errf(err, errlen, "out of memory");
        goto fail;
    }
    if (mkdir_p(dir, err, errlen) == -1 || scan_dir(kr, err, errlen) == -1)
        goto fail;
    if (kr->n == 0) {
        if (create_key(dir, 1, err, errlen) == -1 || scan_dir(kr, err, errlen) == -1)
            goto fail;
        if (kr->n == 0) {
            redact_errf(err, errlen, "%s: no key after creating one", dir);
            goto fail;
        }
    }
    return kr;
fail:
    redact_keyring_free(kr);
    return NULL;
}

int redact_keyring_rotate(struct redact_keyring *kr, char *err, size_t errlen)
{
    unsigned next = kr->keys[kr->n - 1].num + 1;
    struct redact_keyring fresh = {.dir = kr->dir};

    if (create_key(kr->dir, next, err, errlen) == -1)
        return -1;
    /* Reload all: keys another process added in between are picked up too. */
    if (scan_dir(&fresh, err, errlen) == -1) {
        wipe_keys(&fresh);
        return -1;
    }
    wipe_keys(kr);
    kr->keys = fresh.keys;
    kr->n = fresh.n;
    kr->current = fresh.current;
    return 0;
}

const char *redact_keyring_current(const struct redact_keyring *kr)
{
    return kr->keys[kr->current].id;
}

size_t redact_keyring_count(const struct redact_keyring *kr)
{
    return kr->n;
}

void redact_keyring_free(struct redact_keyring *kr)
{
    if (kr == NULL)
        return;
    wipe_keys(kr);
    free(kr->dir);
    free(kr);
}
