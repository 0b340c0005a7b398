/* redact/seal.c - sealed originals: values under a per-segment data key, data keys to roles.
 *
 *   sealed value  = nonce (24, random) ‖ XChaCha20-Poly1305(data key; value; AD) ‖ tag (16)
 *   AD            = seq (8 bytes, big-endian) ‖ field path ("request.headers.cookie")
 *   sealed key    = crypto_box_seal(data key, role public key)        (80 bytes)
 *
 * The associated data binds a sealed value to its record and field: moved to another event
 * or field it no longer opens. One data key per segment, sealed once per role: sealing each
 * value to each role with crypto_box_seal would cost an X25519 operation per value. */
#include "redact/redact-int.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES

_Static_assert(REDACT_DATA_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "data key size");
_Static_assert(REDACT_SEAL_OVERHEAD == NONCE_BYTES + TAG_BYTES, "seal overhead");
_Static_assert(REDACT_SEALED_KEY_BYTES == crypto_box_SEALBYTES + REDACT_DATA_KEY_BYTES, "sealed key size");
_Static_assert(REDACT_ROLE_KEY_BYTES == crypto_box_PUBLICKEYBYTES, "role key size");
_Static_assert(REDACT_ROLE_KEY_BYTES == crypto_box_SECRETKEYBYTES, "role key size");

#define AD_MAX 520 /* 8 + a field path of up to 512 bytes */

int redact_data_key_new(struct redact_data_key *k)
{
    if (sodium_init() == -1)
        return -1;
    crypto_aead_xchacha20poly1305_ietf_keygen(k->bytes);
    return 0;
}

void redact_data_key_wipe(struct redact_data_key *k)
{
    sodium_memzero(k->bytes, sizeof(k->bytes));
}

static int make_ad(uint8_t ad[AD_MAX], uint64_t seq, const char *field, size_t *adlen)
{
    size_t fl = field ? strlen(field) : 0;

    if (fl > AD_MAX - 8)
        return -1;
    for (int i = 0; i < 8; i++)
        ad[i] = (uint8_t)(seq >> (56 - 8 * i));
    if (fl)
        memcpy(ad + 8, field, fl);
    *adlen = 8 + fl;
    return 0;
}

int redact_seal(const struct redact_data_key *k, uint64_t seq, const char *field, const void *value, size_t len,
                uint8_t *out, size_t outcap, size_t *outlen)
{
    uint8_t ad[AD_MAX];
    size_t adlen;
    unsigned long long clen;

    if (len > SIZE_MAX - REDACT_SEAL_OVERHEAD || outcap < len + REDACT_SEAL_OVERHEAD
        || make_ad(ad, seq, field, &adlen) == -1)
        return -1;
    randombytes_buf(out, NONCE_BYTES);
    if (crypto_aead_xchacha20poly1305_ietf_encrypt(out + NONCE_BYTES, &clen, value, len, ad, adlen, NULL, out,
                                                   k->bytes) != 0)
        return -1;
    *outlen = NONCE_BYTES + (size_t)clen;
    return 0;
}

int redact_open(const struct redact_data_key *k, uint64_t seq, const char *field, const uint8_t *sealed,
                size_t sealed_len, uint8_t *out, size_t outcap, size_t *outlen)
{
    uint8_t ad[AD_MAX];
    size_t adlen;
    unsigned long long mlen;

    if (sealed_len < REDACT_SEAL_OVERHEAD || outcap < sealed_len - REDACT_SEAL_OVERHEAD
        || make_ad(ad, seq, field, &adlen) == -1)
        return -1;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, sealed + NONCE_BYTES, sealed_len - NONCE_BYTES,
                                                   ad, adlen, sealed, k->bytes) != 0)
        return -1;
    *outlen = (size_t)mlen;
    return 0;
}

int redact_data_key_seal(const struct redact_data_key *k, const uint8_t role_pk[REDACT_ROLE_KEY_BYTES],
                         uint8_t out[REDACT_SEALED_KEY_BYTES])
{
    return crypto_box_seal(out, k->bytes, sizeof(k->bytes), role_pk) == 0 ? 0 : -1;
}

int redact_data_key_open(struct redact_data_key *k, const uint8_t sealed[REDACT_SEALED_KEY_BYTES],
                         const uint8_t role_pk[REDACT_ROLE_KEY_BYTES], const uint8_t role_sk[REDACT_ROLE_KEY_BYTES])
{
    if (crypto_box_seal_open(k->bytes, sealed, REDACT_SEALED_KEY_BYTES, role_pk, role_sk) != 0) {
        sodium_memzero(k->bytes, sizeof(k->bytes));
        return -1;
    }
    return 0;
}

/* ---- role key files ---- */

#define B64_KEY_LEN 44 /* base64 (with padding) of 32 bytes */

int redact_role_key_create(const char *path, uint8_t pk[REDACT_ROLE_KEY_BYTES], char *err, size_t errlen)
{
    uint8_t sk[REDACT_ROLE_KEY_BYTES];
    char line[B64_KEY_LEN + 2];
    size_t n;
    int fd, rc = -1;

    if (sodium_init() == -1)
        return redact_errf(err, errlen, "libsodium failed to initialize");
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd == -1)
        return redact_errf(err, errlen, "%s: %s", path, strerror(errno));
    crypto_box_keypair(pk, sk);
    sodium_bin2base64(line, sizeof(line), sk, sizeof(sk), sodium_base64_VARIANT_ORIGINAL);
    n = strlen(line);
    line[n++] = '\n';
    if (fchmod(fd, 0600) == -1 || write(fd, line, n) != (ssize_t)n || fsync(fd) == -1) {
        redact_errf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        goto out;
    }
    close(fd);
    rc = 0;
out:
    sodium_memzero(sk, sizeof(sk));
    sodium_memzero(line, sizeof(line));
    return rc;
}

int redact_role_key_load(const char *path, uint8_t pk[REDACT_ROLE_KEY_BYTES], uint8_t sk[REDACT_ROLE_KEY_BYTES],
                         char *err, size_t errlen)
{
    char buf[128];
    struct stat st;
    ssize_t r;
    size_t n, bin;
    int fd;

    if (sodium_init() == -1)
        return redact_errf(err, errlen, "libsodium failed to initialize");
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1)
        return redact_errf(err, errlen, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        close(fd);
        return redact_errf(err, errlen, "%s: not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return redact_errf(err, errlen, "%s: mode %04o gives group or others access; refusing the key (chmod 600)",
                           path, (unsigned)(st.st_mode & 07777));
    }
    r = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (r <= 0)
        return redact_errf(err, errlen, "%s: empty or unreadable", path);
    n = (size_t)r;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    if (sodium_base642bin(sk, REDACT_ROLE_KEY_BYTES, buf, n, NULL, &bin, NULL, sodium_base64_VARIANT_ORIGINAL) != 0
        || bin != REDACT_ROLE_KEY_BYTES) {
        sodium_memzero(buf, sizeof(buf));
        sodium_memzero(sk, REDACT_ROLE_KEY_BYTES);
        return redact_errf(err, errlen, "%s: not the base64 of a 32-byte secret key", path);
    }
    sodium_memzero(buf, sizeof(buf));
    crypto_scalarmult_base(pk, sk);
    return 0;
}
