/* audit/digest.c - the integrity primitives of the record: the per-record chain hash, the
 * signed segment digest and the signing key (formats in audit/segment.h and
 * schemas/segment-digest.schema.json).
 *
 * The writer side (the pipeline's chain, the file sink's digests and key) and a verifier
 * (audit-query verify) use the same functions, so both agree on what exactly is hashed
 * and signed. Nothing here is on the per-record path except audit_chain_next(). */
#include "audit/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "audit/audit.h"

#define KEY_MODE 0600
#define PUB_MODE 0644
#define KEYS_DIR_MODE 0700
#define DIGEST_MAX 4096 /* a digest file is about 700 bytes */

static const char sig_member[] = ",\"signature\":\"";
#define SIG_TAIL_LEN (sizeof(sig_member) - 1 + 128 + 3) /* ,"signature":"<128 hex>"}\n */

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int unhex(const char *hex, size_t hexlen, uint8_t *out, size_t outlen)
{
    size_t bin_len;

    if (hexlen != outlen * 2)
        return -1;
    for (size_t i = 0; i < hexlen; i++) {
        char c = hex[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -1; /* lowercase only: one spelling per value */
    }
    if (sodium_hex2bin(out, outlen, hex, hexlen, NULL, &bin_len, NULL) != 0 || bin_len != outlen)
        return -1;
    return 0;
}

/* ---- chain ---- */

void audit_chain_next(const uint8_t prev[32], const char *rec, size_t len, uint8_t out[32])
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, prev, 32);
    crypto_generichash_update(&st, (const unsigned char *)rec, len);
    crypto_generichash_final(&st, out, 32);
}

int audit_chain_split(const char *line, size_t len, size_t *body, uint8_t chain[32])
{
    static const char key[] = ",\"chain\":\"";
    const char *m;

    if (len < AUDIT_CHAIN_MEMBER_LEN + 2 || line[len - 1] != '}' || line[len - 2] != '"')
        return -1;
    m = line + len - 1 - AUDIT_CHAIN_MEMBER_LEN;
    if (memcmp(m, key, sizeof(key) - 1) != 0)
        return -1;
    if (unhex(m + sizeof(key) - 1, AUDIT_CHAIN_HEX, chain, 32) == -1)
        return -1;
    *body = (size_t)(m - line);
    return 0;
}

int audit_chain_expected(const uint8_t prev[32], const char *line, size_t len, uint8_t out[32])
{
    crypto_generichash_state st;
    uint8_t stored[32];
    size_t body;

    if (audit_chain_split(line, len, &body, stored) == -1)
        return -1;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, prev, 32);
    crypto_generichash_update(&st, (const unsigned char *)line, body);
    crypto_generichash_update(&st, (const unsigned char *)"}", 1);
    crypto_generichash_final(&st, out, 32);
    return 0;
}

int audit_chain_find(const char *line, size_t len, uint8_t chain[32])
{
    static const char key[] = "\"chain\":\"";
    const size_t klen = sizeof(key) - 1;

    /* the member is the last or nearly: search backwards */
    for (size_t i = len >= klen + AUDIT_CHAIN_HEX ? len - klen - AUDIT_CHAIN_HEX + 1 : 0; i-- > 0;) {
        if (line[i] == '"' && memcmp(line + i, key, klen) == 0) {
            if (i + klen + AUDIT_CHAIN_HEX >= len || line[i + klen + AUDIT_CHAIN_HEX] != '"')
                return -1;
            return unhex(line + i + klen, AUDIT_CHAIN_HEX, chain, 32);
        }
    }
    return -1;
}

/* ---- digests ---- */

static void put_hex(struct audit_buf *b, const char *key, const uint8_t *bin, size_t n, int present)
{
    char hex[129];

    audit_buf_append(b, key, strlen(key));
    if (!present) {
        audit_buf_append(b, "null", 4);
        return;
    }
    sodium_bin2hex(hex, sizeof(hex), bin, n);
    audit_buf_append(b, "\"", 1);
    audit_buf_append(b, hex, n * 2);
    audit_buf_append(b, "\"", 1);
}

static void put_u64(struct audit_buf *b, const char *key, uint64_t v)
{
    char tmp[64];
    int n = snprintf(tmp, sizeof(tmp), "%s%" PRIu64, key, v);

    audit_buf_append(b, tmp, (size_t)n);
}

static void put_time(struct audit_buf *b, const char *key, int64_t t, int present)
{
    char tmp[32];

    audit_buf_append(b, key, strlen(key));
    if (!present) {
        audit_buf_append(b, "null", 4);
        return;
    }
    audit_format_time(t, tmp);
    audit_buf_append(b, "\"", 1);
    audit_buf_append(b, tmp, strlen(tmp));
    audit_buf_append(b, "\"", 1);
}

/* The JSON string <s> (plain ASCII printable expected; anything else becomes '?'). */
static void put_str(struct audit_buf *b, const char *key, const char *s)
{
    audit_buf_append(b, key, strlen(key));
    audit_buf_append(b, "\"", 1);
    for (; *s != '\0'; s++) {
        char c = (*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\') ? *s : '?';

        audit_buf_append(b, &c, 1);
    }
    audit_buf_append(b, "\"", 1);
}

/* The digest object without its signature member, closing brace included. -1 on ENOMEM. */
static int digest_unsigned(const struct audit_digest *d, struct audit_buf *b)
{
    int recs = d->records > 0;

    audit_buf_append(b, "{\"schema\":\"" AUDIT_DIGEST_SCHEMA "\"", sizeof("{\"schema\":\"" AUDIT_DIGEST_SCHEMA "\"") - 1);
    put_str(b, ",\"segment\":", d->segment);
    put_hex(b, ",\"hash\":", d->hash, 32, 1);
    put_u64(b, ",\"bytes\":", d->bytes);
    put_u64(b, ",\"frames\":", d->frames);
    put_u64(b, ",\"records\":", d->records);
    put_u64(b, ",\"first_seq\":", d->first_seq);
    put_u64(b, ",\"last_seq\":", d->last_seq);
    put_time(b, ",\"first_time\":", d->first_time_us, recs);
    put_time(b, ",\"last_time\":", d->last_time_us, recs);
    put_hex(b, ",\"prev_chain\":", d->prev_chain, 32, d->has_prev_chain);
    put_hex(b, ",\"last_chain\":", d->last_chain, 32, d->has_last_chain);
    put_hex(b, ",\"prev_digest\":", d->prev_digest, 32, 1);
    if (d->recovered)
        audit_buf_append(b, ",\"recovered\":true", 17);
    else
        audit_buf_append(b, ",\"recovered\":false", 18);
    put_u64(b, ",\"discarded_bytes\":", d->discarded_bytes);
    if (d->recovered)
        put_str(b, ",\"recovery_reason\":", d->recovery_reason);
    put_hex(b, ",\"public_key\":", d->public_key, 32, 1);
    return audit_buf_append(b, "}", 1);
}

static int fsync_parent(const char *path)
{
    char *dir = strdup(path), *slash;
    int fd, rc;

    if (dir == NULL)
        return -1;
    slash = strrchr(dir, '/');
    if (slash == NULL) {
        free(dir);
        return 0;
    }
    *slash = '\0';
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd == -1)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w == -1 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int audit_digest_write(const char *segment_path, struct audit_digest *d, const uint8_t sk[64], int sync,
                       uint8_t file_hash[32], char *err, size_t errlen)
{
    struct audit_buf b;
    char path[4096], tmp[4096], hex[129];
    int fd = -1, rc = -1;

    if (snprintf(path, sizeof(path), "%s%s", segment_path, AUDIT_DIGEST_SUFFIX) >= (int)sizeof(path) ||
        snprintf(tmp, sizeof(tmp), "%s%s.tmp", segment_path, AUDIT_DIGEST_SUFFIX) >= (int)sizeof(tmp)) {
        set_err(err, errlen, "%s: path too long", segment_path);
        return -1;
    }
    {
        const char *slash = strrchr(segment_path, '/');

        snprintf(d->segment, sizeof(d->segment), "%s", slash != NULL ? slash + 1 : segment_path);
    }
    crypto_sign_ed25519_sk_to_pk(d->public_key, sk);
    audit_buf_init(&b, DIGEST_MAX);
    if (digest_unsigned(d, &b) == -1)
        goto nomem;
    crypto_sign_detached(d->signature, NULL, (const unsigned char *)b.data, b.len, sk);
    /* replace the closing brace by the signature member */
    b.len--;
    sodium_bin2hex(hex, sizeof(hex), d->signature, 64);
    if (audit_buf_append(&b, sig_member, sizeof(sig_member) - 1) == -1 || audit_buf_append(&b, hex, 128) == -1 ||
        audit_buf_append(&b, "\"}\n", 3) == -1)
        goto nomem;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, AUDIT_SEGMENT_FILE_MODE);
    if (fd == -1) {
        set_err(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (write_all(fd, b.data, b.len) == -1 || (sync && fdatasync(fd) == -1)) {
        set_err(err, errlen, "write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) == -1) {
        fd = -1;
        set_err(err, errlen, "close %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) == -1) {
        set_err(err, errlen, "rename %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (sync && fsync_parent(path) == -1) {
        set_err(err, errlen, "fsync the directory of %s: %s", path, strerror(errno));
        goto out;
    }
    if (file_hash != NULL)
        crypto_generichash(file_hash, 32, (const unsigned char *)b.data, b.len, NULL, 0);
    rc = 0;
    goto out;

nomem:
    set_err(err, errlen, "out of memory");
out:
    if (fd != -1) {
        close(fd);
        unlink(tmp);
    } else if (rc == -1) {
        unlink(tmp);
    }
    audit_buf_fini(&b);
    return rc;
}

/* Reads a whole small file (at most <max> bytes) into a malloc'ed buffer. */
static char *slurp(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf;
    size_t n = 0;

    if (fd == -1) {
        set_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(max + 1);
    if (buf == NULL) {
        close(fd);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, max + 1 - n);

        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            set_err(err, errlen, "read %s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max) {
            set_err(err, errlen, "%s: larger than %zu bytes", path, max);
            goto fail;
        }
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;

fail:
    close(fd);
    free(buf);
    return NULL;
}

static int get_hex(json_t *o, const char *key, uint8_t *out, size_t n, int *present, const char *path, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(o, key);

    if (present != NULL && json_is_null(v)) {
        *present = 0;
        memset(out, 0, n);
        return 0;
    }
    if (!json_is_string(v) || unhex(json_string_value(v), json_string_length(v), out, n) == -1) {
        set_err(err, errlen, "%s: \"%s\" must be %zu lowercase hex digits", path, key, n * 2);
        return -1;
    }
    if (present != NULL)
        *present = 1;
    return 0;
}

static int get_u64(json_t *o, const char *key, uint64_t *out, const char *path, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        set_err(err, errlen, "%s: \"%s\" must be a non-negative integer", path, key);
        return -1;
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* An RFC 3339 time written by audit_format_time() back to microseconds. */
static int get_time(json_t *o, const char *key, int64_t *out, const char *path, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    char check[32];
    const char *s;
    struct tm tm;
    unsigned us;
    time_t t;

    *out = 0;
    if (json_is_null(v))
        return 0;
    s = json_string_value(v);
    memset(&tm, 0, sizeof(tm));
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%6uZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                            &tm.tm_min, &tm.tm_sec, &us) != 7)
        goto bad;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    t = timegm(&tm);
    *out = (int64_t)t * 1000000 + us;
    audit_format_time(*out, check);
    if (strcmp(check, s) != 0)
        goto bad;
    return 0;
bad:
    set_err(err, errlen, "%s: \"%s\" must be an RFC 3339 UTC time with microseconds", path, key);
    return -1;
}

int audit_digest_read(const char *path, const uint8_t *pk, struct audit_digest *d, uint8_t *file_hash, char *err,
                      size_t errlen)
{
    size_t len = 0, tail;
    char *text = slurp(path, DIGEST_MAX, &len, err, errlen);
    json_error_t jerr;
    json_t *o = NULL, *v;
    int rc = -1;

    memset(d, 0, sizeof(*d));
    if (text == NULL)
        return -1;
    if (file_hash != NULL)
        crypto_generichash(file_hash, 32, (const unsigned char *)text, len, NULL, 0);
    o = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(o)) {
        set_err(err, errlen, "%s: not a JSON object: %s", path, jerr.text);
        goto out;
    }
    v = json_object_get(o, "schema");
    if (!json_is_string(v) || strcmp(json_string_value(v), AUDIT_DIGEST_SCHEMA) != 0) {
        set_err(err, errlen, "%s: \"schema\" is not \"" AUDIT_DIGEST_SCHEMA "\"", path);
        goto out;
    }
    v = json_object_get(o, "segment");
    if (!json_is_string(v) || json_string_length(v) >= sizeof(d->segment)) {
        set_err(err, errlen, "%s: \"segment\" must be a file name", path);
        goto out;
    }
    snprintf(d->segment, sizeof(d->segment), "%s", json_string_value(v));
    if (get_hex(o, "hash", d->hash, 32, NULL, path, err, errlen) == -1 ||
        get_u64(o, "bytes", &d->bytes, path, err, errlen) == -1 ||
        get_u64(o, "frames", &d->frames, path, err, errlen) == -1 ||
        get_u64(o, "records", &d->records, path, err, errlen) == -1 ||
        get_u64(o, "first_seq", &d->first_seq, path, err, errlen) == -1 ||
        get_u64(o, "last_seq", &d->last_seq, path, err, errlen) == -1 ||
        get_time(o, "first_time", &d->first_time_us, path, err, errlen) == -1 ||
        get_time(o, "last_time", &d->last_time_us, path, err, errlen) == -1 ||
        get_hex(o, "prev_chain", d->prev_chain, 32, &d->has_prev_chain, path, err, errlen) == -1 ||
        get_hex(o, "last_chain", d->last_chain, 32, &d->has_last_chain, path, err, errlen) == -1 ||
        get_hex(o, "prev_digest", d->prev_digest, 32, NULL, path, err, errlen) == -1 ||
        get_u64(o, "discarded_bytes", &d->discarded_bytes, path, err, errlen) == -1 ||
        get_hex(o, "public_key", d->public_key, 32, NULL, path, err, errlen) == -1 ||
        get_hex(o, "signature", d->signature, 64, NULL, path, err, errlen) == -1)
        goto out;
    v = json_object_get(o, "recovered");
    if (!json_is_boolean(v)) {
        set_err(err, errlen, "%s: \"recovered\" must be true or false", path);
        goto out;
    }
    d->recovered = json_is_true(v);
    v = json_object_get(o, "recovery_reason");
    if (json_is_string(v))
        snprintf(d->recovery_reason, sizeof(d->recovery_reason), "%s", json_string_value(v));
    /* The signed message is the text with its last member, the signature, taken out. */
    tail = SIG_TAIL_LEN;
    if (len < tail + 1 || memcmp(text + len - tail, sig_member, sizeof(sig_member) - 1) != 0 ||
        memcmp(text + len - 3, "\"}\n", 3) != 0) {
        set_err(err, errlen, "%s: the signature is not the last member", path);
        goto out;
    }
    text[len - tail] = '}';
    if (crypto_sign_verify_detached(d->signature, (const unsigned char *)text, len - tail + 1,
                                    pk != NULL ? pk : d->public_key) != 0) {
        set_err(err, errlen, "%s: bad signature", path);
        goto out;
    }
    if (pk != NULL && sodium_memcmp(pk, d->public_key, 32) != 0) {
        set_err(err, errlen, "%s: signed by another key", path);
        goto out;
    }
    rc = 0;
out:
    json_decref(o);
    free(text);
    return rc;
}

int audit_file_hash(const char *path, uint64_t limit, uint8_t out[32], uint64_t *bytes, char *err, size_t errlen)
{
    crypto_generichash_state st;
    unsigned char buf[64 * 1024];
    uint64_t done = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd == -1) {
        set_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    crypto_generichash_init(&st, NULL, 0, 32);
    while (done < limit) {
        size_t want = limit - done < sizeof(buf) ? (size_t)(limit - done) : sizeof(buf);
        ssize_t r = read(fd, buf, want);

        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            set_err(err, errlen, "read %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        crypto_generichash_update(&st, buf, (size_t)r);
        done += (uint64_t)r;
    }
    close(fd);
    crypto_generichash_final(&st, out, 32);
    if (bytes != NULL)
        *bytes = done;
    return 0;
}

/* ---- signing key ---- */

/* Reads 64 hex digits (and an optional newline) from <fd> into <out>. */
static int read_hex_file(int fd, const char *path, uint8_t out[32], char *err, size_t errlen)
{
    char buf[80];
    size_t n = 0;

    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);

        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            set_err(err, errlen, "read %s: %s", path, strerror(errno));
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == sizeof(buf))
            break;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (unhex(buf, n, out, 32) == -1) {
        sodium_memzero(buf, sizeof(buf));
        set_err(err, errlen, "%s: must hold 64 lowercase hex digits", path);
        return -1;
    }
    sodium_memzero(buf, sizeof(buf));
    return 0;
}

int audit_signing_pub_read(const char *path, uint8_t pk[32], char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

    if (fd == -1) {
        set_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    rc = read_hex_file(fd, path, pk, err, errlen);
    close(fd);
    return rc;
}

/* Writes <hex> and a newline to a new file <path> with <mode> (O_EXCL unless <replace>). */
static int write_hex_file(const char *path, const uint8_t *bin, mode_t mode, int replace, char *err, size_t errlen)
{
    char hex[66];
    int fd;

    sodium_bin2hex(hex, sizeof(hex), bin, 32);
    hex[64] = '\n';
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (replace ? O_TRUNC : O_EXCL), mode);
    if (fd == -1) {
        set_err(err, errlen, "cannot create %s: %s", path, strerror(errno));
        sodium_memzero(hex, sizeof(hex));
        return -1;
    }
    if (fchmod(fd, mode) == -1 || write_all(fd, hex, 65) == -1 || fsync(fd) == -1) {
        set_err(err, errlen, "write %s: %s", path, strerror(errno));
        close(fd);
        sodium_memzero(hex, sizeof(hex));
        return -1;
    }
    sodium_memzero(hex, sizeof(hex));
    if (close(fd) == -1) {
        set_err(err, errlen, "close %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int audit_signing_key_load(const char *data_dir, uint8_t pk[32], uint8_t sk[64], char *err, size_t errlen)
{
    char dir[4096], key[4200], pub[4200];
    uint8_t seed[32], have[32];
    struct stat st;
    int fd, rc;

    if (snprintf(dir, sizeof(dir), "%s/%s", data_dir, AUDIT_KEYS_SUBDIR) >= (int)sizeof(dir)) {
        set_err(err, errlen, "%s: path too long", data_dir);
        return -1;
    }
    snprintf(key, sizeof(key), "%s/%s", dir, AUDIT_SIGNING_KEY_FILE);
    snprintf(pub, sizeof(pub), "%s/%s", dir, AUDIT_SIGNING_PUB_FILE);
    if (mkdir(dir, KEYS_DIR_MODE) == -1 && errno != EEXIST) {
        set_err(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    fd = open(key, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd == -1 && errno == ENOENT) {
        /* first run: a new key pair */
        randombytes_buf(seed, sizeof(seed));
        if (write_hex_file(key, seed, KEY_MODE, 0, err, errlen) == -1) {
            sodium_memzero(seed, sizeof(seed));
            return -1;
        }
        crypto_sign_seed_keypair(pk, sk, seed);
        sodium_memzero(seed, sizeof(seed));
        if (write_hex_file(pub, pk, PUB_MODE, 1, err, errlen) == -1)
            return -1;
        fsync_parent(key);
        return 0;
    }
    if (fd == -1) {
        set_err(err, errlen, "cannot open %s: %s", key, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", key);
        close(fd);
        return -1;
    }
    if ((st.st_mode & 077) != 0) {
        set_err(err, errlen, "%s: mode %04o grants access to group or others; refusing it (chmod 600)", key,
                (unsigned)(st.st_mode & 07777));
        close(fd);
        return -1;
    }
    rc = read_hex_file(fd, key, seed, err, errlen);
    close(fd);
    if (rc == -1)
        return -1;
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(seed, sizeof(seed));
    if (audit_signing_pub_read(pub, have, NULL, 0) == -1 || sodium_memcmp(have, pk, 32) != 0) {
        if (write_hex_file(pub, pk, PUB_MODE, 1, err, errlen) == -1)
            return -1;
    }
    return 0;
}
