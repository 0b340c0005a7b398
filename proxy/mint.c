/* proxy/mint.c - leaf certificates mirroring the destination's, and their LRU cache
 * (see mint.h for the contract).
 *
 * The extensions every leaf carries unchanged (basicConstraints, the default key usages,
 * subjectKeyIdentifier of the shared leaf key, authorityKeyIdentifier from the CA) are
 * encoded once in proxy_mint_new(); a mint copies them, the mirrored ones and the
 * validity into a fresh X509 and signs it.
 *
 * Cache layout, all under <mu>:
 *
 *   buckets[hash & mask] ─► leaf ─hnext─► leaf ─► NULL     (chained hash on the 32-byte key)
 *   mru ◄─prev/next─► ... ◄─prev/next─► lru                (recency list; evict from lru)
 *
 * The cache holds one reference on each leaf it lists, and every caller its own; a leaf
 * is freed by whoever drops the last one, always outside <mu>. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "proxy/mint.h"

#define KEY_LEN 32 /* SHA-256 of the mirrored inputs */
#define DAY 86400

struct proxy_leaf {
    atomic_uint refs;
    X509 *cert;
    time_t not_after;
    uint8_t key[KEY_LEN];
    struct proxy_leaf *prev, *next; /* recency list, mru first */
    struct proxy_leaf *hnext;       /* bucket chain */
    char serial[PROXY_LEAF_SERIAL_HEX + 1];
};

struct proxy_mint {
    X509 *ca;
    EVP_PKEY *ca_key;
    const EVP_MD *md; /* NULL for Ed25519/Ed448 CA keys */
    time_t ca_not_before, ca_not_after;
    EVP_PKEY *leaf_key;
    X509_EXTENSION *ext_bc, *ext_ski, *ext_aki, *ext_ku_default, *ext_eku_default;
    unsigned max_days;
    time_t fixed_now; /* tests: 0 means time(NULL) */

    pthread_mutex_t mu;
    struct proxy_leaf **buckets;
    size_t mask;
    struct proxy_leaf *mru, *lru;
    size_t entries, cap;
    uint64_t hits, misses;
};

static void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The reason of the oldest queued OpenSSL error (the queue is then cleared). */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown OpenSSL error";
}

static time_t mint_now(const struct proxy_mint *m)
{
    return m->fixed_now ? m->fixed_now : time(NULL);
}

static int asn1_time_get(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    *out = timegm(&tm);
    return 0;
}

/* ---- host names for the CN / SNI fallback ---- */

/* 1: <s> is a DNS name a SAN may carry ("*." first label allowed), 2: an IP literal, 0: neither. */
static int name_kind(const char *s)
{
    unsigned char ip[16];
    if (inet_pton(AF_INET, s, ip) == 1 || inet_pton(AF_INET6, s, ip) == 1)
        return 2;
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (c == '*') {
            if (i != 0 || n < 3 || s[1] != '.')
                return 0;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                     c == '_')) {
            return 0;
        }
        if (++label > 63)
            return 0;
    }
    return label > 0 ? 1 : 0;
}

/* The last CN of <up>'s subject as UTF-8 (OPENSSL_free it) when it is a usable name, else NULL. */
static char *usable_cn(X509 *up)
{
    const X509_NAME *subj = X509_get_subject_name(up);
    int idx = -1, last = -1;
    while ((idx = X509_NAME_get_index_by_NID(subj, NID_commonName, idx)) >= 0)
        last = idx;
    if (last < 0)
        return NULL;
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last)));
    if (len < 0) {
        ERR_clear_error();
        return NULL;
    }
    if ((size_t)len != strlen((char *)utf8) || !name_kind((char *)utf8)) {
        OPENSSL_free(utf8);
        return NULL;
    }
    return (char *)utf8;
}

/* Whether the leaf of <up> depends only on <up>: it has a SAN or a usable CN. */
static int names_itself(X509 *up)
{
    if (X509_get_ext_by_NID(up, NID_subject_alt_name, -1) >= 0)
        return 1;
    char *cn = usable_cn(up);
    OPENSSL_free(cn);
    return cn != NULL;
}

/* ---- the cache key ---- */

static int hash_field(EVP_MD_CTX *h, uint8_t tag, const void *p, size_t n)
{
    uint8_t hdr[5] = {tag, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    return EVP_DigestUpdate(h, hdr, sizeof(hdr)) == 1 && (n == 0 || EVP_DigestUpdate(h, p, n) == 1) ? 0 : -1;
}

static int hash_ext(EVP_MD_CTX *h, uint8_t tag, X509 *up, int nid)
{
    int idx = X509_get_ext_by_NID(up, nid, -1);
    if (idx < 0)
        return hash_field(h, 0xff, NULL, 0); /* absent differs from any encoding */
    X509_EXTENSION *ext = X509_get_ext(up, idx);
    const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(ext);
    uint8_t crit = X509_EXTENSION_get_critical(ext) ? 1 : 0;
    if (hash_field(h, tag, &crit, 1) == -1)
        return -1;
    return hash_field(h, tag, ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v));
}

/* The upstream validity clipped to the CA's: <nb>, <na>. 0, or -1 when unreadable. */
static int clip_to_ca(const struct proxy_mint *m, X509 *up, time_t *nb, time_t *na)
{
    if (asn1_time_get(X509_get0_notBefore(up), nb) == -1 || asn1_time_get(X509_get0_notAfter(up), na) == -1)
        return -1;
    if (*nb < m->ca_not_before)
        *nb = m->ca_not_before;
    if (*na > m->ca_not_after)
        *na = m->ca_not_after;
    return 0;
}

static int mirror_key(const struct proxy_mint *m, X509 *up, uint8_t key[KEY_LEN])
{
    const unsigned char *der;
    size_t derlen;
    time_t nb, na;
    int rc = -1;

    if (clip_to_ca(m, up, &nb, &na) == -1 || X509_NAME_get0_der(X509_get_subject_name(up), &der, &derlen) != 1) {
        ERR_clear_error();
        return -1;
    }
    int64_t t[2] = {(int64_t)nb, (int64_t)na};
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    if (h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1 && hash_field(h, 1, der, derlen) == 0 &&
        hash_ext(h, 2, up, NID_subject_alt_name) == 0 && hash_ext(h, 3, up, NID_key_usage) == 0 &&
        hash_ext(h, 4, up, NID_ext_key_usage) == 0 && hash_field(h, 5, t, sizeof(t)) == 0 &&
        EVP_DigestFinal_ex(h, key, NULL) == 1)
        rc = 0;
    EVP_MD_CTX_free(h);
    if (rc == -1)
        ERR_clear_error();
    return rc;
}

/* ---- leaves and the LRU (callers hold mu) ---- */

static void leaf_free(struct proxy_leaf *l)
{
    X509_free(l->cert);
    free(l);
}

void proxy_leaf_ref(struct proxy_leaf *l)
{
    atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
}

void proxy_leaf_unref(struct proxy_leaf *l)
{
    if (l && atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        leaf_free(l);
}

X509 *proxy_leaf_cert(const struct proxy_leaf *l)
{
    return l->cert;
}

const char *proxy_leaf_serial_hex(const struct proxy_leaf *l)
{
    return l->serial;
}

static size_t bucket_of(const struct proxy_mint *m, const uint8_t key[KEY_LEN])
{
    uint64_t v;
    memcpy(&v, key, sizeof(v));
    return (size_t)v & m->mask;
}

static struct proxy_leaf *cache_find(struct proxy_mint *m, const uint8_t key[KEY_LEN])
{
    for (struct proxy_leaf *l = m->buckets[bucket_of(m, key)]; l; l = l->hnext)
        if (memcmp(l->key, key, KEY_LEN) == 0)
            return l;
    return NULL;
}

static void lru_unlink(struct proxy_mint *m, struct proxy_leaf *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        m->mru = l->next;
    if (l->next)
        l->next->prev = l->prev;
    else
        m->lru = l->prev;
    l->prev = l->next = NULL;
}

static void lru_push_front(struct proxy_mint *m, struct proxy_leaf *l)
{
    l->prev = NULL;
    l->next = m->mru;
    if (m->mru)
        m->mru->prev = l;
    else
        m->lru = l;
    m->mru = l;
}

/* Takes <l> out of the cache; the cache's reference passes to the caller. */
static void cache_remove(struct proxy_mint *m, struct proxy_leaf *l)
{
    struct proxy_leaf **pp = &m->buckets[bucket_of(m, l->key)];
    while (*pp != l)
        pp = &(*pp)->hnext;
    *pp = l->hnext;
    l->hnext = NULL;
    lru_unlink(m, l);
    m->entries--;
}

/* ---- lookup ---- */

struct proxy_leaf *proxy_mint_lookup(struct proxy_mint *m, X509 *upstream)
{
    uint8_t key[KEY_LEN];
    struct proxy_leaf *hit = NULL, *expired = NULL;

    if (!names_itself(upstream) || mirror_key(m, upstream, key) == -1) {
        pthread_mutex_lock(&m->mu);
        m->misses++;
        pthread_mutex_unlock(&m->mu);
        return NULL;
    }
    time_t now = mint_now(m);
    pthread_mutex_lock(&m->mu);
    struct proxy_leaf *l = cache_find(m, key);
    if (l && now >= l->not_after) {
        cache_remove(m, l);
        expired = l;
    } else if (l) {
        lru_unlink(m, l);
        lru_push_front(m, l);
        proxy_leaf_ref(l);
        hit = l;
    }
    if (hit)
        m->hits++;
    else
        m->misses++;
    pthread_mutex_unlock(&m->mu);
    proxy_leaf_unref(expired);
    return hit;
}

/* ---- minting ---- */

static int add_san_from_name(X509 *x, const char *name)
{
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    int rc = -1;

    if (!gens || !gn)
        goto out;
    if (name_kind(name) == 2) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(name);
        if (!ip)
            goto out;
        GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
    } else {
        ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
        if (!dns || ASN1_STRING_set(dns, name, (int)strlen(name)) != 1) {
            ASN1_IA5STRING_free(dns);
            goto out;
        }
        GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
    }
    if (!sk_GENERAL_NAME_push(gens, gn))
        goto out;
    gn = NULL;
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1)
        rc = 0;
out:
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(gens);
    return rc;
}

/* Copies <up>'s extension <nid> into <x>, or <dflt> when <up> has none. 0, or -1. */
static int copy_ext(X509 *x, X509 *up, int nid, X509_EXTENSION *dflt)
{
    int idx = X509_get_ext_by_NID(up, nid, -1);
    X509_EXTENSION *ext = idx >= 0 ? X509_get_ext(up, idx) : dflt;
    return X509_add_ext(x, ext, -1) == 1 ? 0 : -1;
}

/* keyUsage is copied as is, except that digitalSignature is added when it is missing: the
 * leaf key is an EC key, which can only sign, and OpenSSL (among others) will not use an EC
 * certificate without digitalSignature for ECDHE-ECDSA, so a verbatim copy of an RSA
 * upstream's "keyEncipherment" alone would break TLS 1.2 handshakes. 0, or -1. */
static int copy_key_usage(const struct proxy_mint *m, X509 *x, X509 *up)
{
    int idx = X509_get_ext_by_NID(up, NID_key_usage, -1);
    if (idx < 0)
        return X509_add_ext(x, m->ext_ku_default, -1) == 1 ? 0 : -1;
    X509_EXTENSION *ext = X509_get_ext(up, idx);
    ASN1_BIT_STRING *ku = X509V3_EXT_d2i(ext);
    if (!ku)
        return -1;
    int rc = -1;
    if (ASN1_BIT_STRING_get_bit(ku, 0)) {
        rc = X509_add_ext(x, ext, -1) == 1 ? 0 : -1;
    } else if (ASN1_BIT_STRING_set_bit(ku, 0, 1) == 1) {
        X509_EXTENSION *fixed = X509V3_EXT_i2d(NID_key_usage, X509_EXTENSION_get_critical(ext), ku);
        rc = fixed && X509_add_ext(x, fixed, -1) == 1 ? 0 : -1;
        X509_EXTENSION_free(fixed);
    }
    ASN1_BIT_STRING_free(ku);
    return rc;
}

static int set_serial(X509 *x, char hex[PROXY_LEAF_SERIAL_HEX + 1])
{
    unsigned char rnd[16];
    int rc = -1;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return -1;
    rnd[0] = (uint8_t)((rnd[0] & 0x7f) | 0x40); /* positive, and always 16 bytes long in DER */
    BIGNUM *bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
    if (bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) {
        char *h = BN_bn2hex(bn);
        if (h && strlen(h) <= PROXY_LEAF_SERIAL_HEX) {
            strcpy(hex, h);
            rc = 0;
        }
        OPENSSL_free(h);
    }
    BN_free(bn);
    return rc;
}

static X509 *build_leaf(struct proxy_mint *m, X509 *up, const char *sni, time_t *not_after, char serial[], char *err,
                        size_t errlen)
{
    time_t nb, na, now = mint_now(m);
    X509 *x = NULL;
    char *cn = NULL;

    if (clip_to_ca(m, up, &nb, &na) == -1) {
        errf(err, errlen, "upstream certificate: unreadable validity");
        goto fail;
    }
    if (na > now + (time_t)m->max_days * DAY)
        na = now + (time_t)m->max_days * DAY;
    if (na <= nb) {
        errf(err, errlen, "upstream certificate: no validity left once clipped to the CA's and to %u days",
             m->max_days);
        goto fail;
    }
    x = X509_new();
    if (!x || X509_set_version(x, X509_VERSION_3) != 1 || set_serial(x, serial) == -1 ||
        X509_set_issuer_name(x, X509_get_subject_name(m->ca)) != 1 ||
        X509_set_subject_name(x, X509_get_subject_name(up)) != 1 || !ASN1_TIME_set(X509_getm_notBefore(x), nb) ||
        !ASN1_TIME_set(X509_getm_notAfter(x), na) || X509_set_pubkey(x, m->leaf_key) != 1)
        goto oom;

    if (X509_add_ext(x, m->ext_bc, -1) != 1 || copy_key_usage(m, x, up) == -1 ||
        copy_ext(x, up, NID_ext_key_usage, m->ext_eku_default) == -1)
        goto oom;
    int san = X509_get_ext_by_NID(up, NID_subject_alt_name, -1);
    if (san >= 0) {
        if (X509_add_ext(x, X509_get_ext(up, san), -1) != 1)
            goto oom;
    } else if ((cn = usable_cn(up)) != NULL) {
        if (add_san_from_name(x, cn) == -1)
            goto oom;
    } else if (sni && name_kind(sni)) {
        if (add_san_from_name(x, sni) == -1)
            goto oom;
    } else {
        errf(err, errlen, "upstream certificate names no host (no subjectAltName, no host name CN) and no SNI");
        goto fail;
    }
    if (X509_add_ext(x, m->ext_ski, -1) != 1 || X509_add_ext(x, m->ext_aki, -1) != 1)
        goto oom;
    if (X509_sign(x, m->ca_key, m->md) <= 0) {
        errf(err, errlen, "signing the leaf: %s", ssl_reason());
        goto fail;
    }
    /* fill OpenSSL's lazily computed extension cache now, while only this thread sees it */
    X509_check_purpose(x, -1, 0);
    OPENSSL_free(cn);
    ERR_clear_error();
    *not_after = na;
    return x;
oom:
    errf(err, errlen, "building the leaf: %s", ssl_reason());
fail:
    OPENSSL_free(cn);
    X509_free(x);
    ERR_clear_error();
    return NULL;
}

struct proxy_leaf *proxy_mint_make(struct proxy_mint *m, X509 *upstream, const char *sni, char *err, size_t errlen)
{
    struct proxy_leaf *l = calloc(1, sizeof(*l));
    struct proxy_leaf *old = NULL, *evicted = NULL;

    if (!l) {
        errf(err, errlen, "out of memory");
        return NULL;
    }
    l->cert = build_leaf(m, upstream, sni, &l->not_after, l->serial, err, errlen);
    if (!l->cert) {
        free(l);
        return NULL;
    }
    atomic_init(&l->refs, 1);
    if (!names_itself(upstream) || mirror_key(m, upstream, l->key) == -1)
        return l; /* named after this flow's SNI: not for other flows */

    pthread_mutex_lock(&m->mu);
    old = cache_find(m, l->key);
    if (old)
        cache_remove(m, old);
    if (m->entries >= m->cap) {
        evicted = m->lru;
        cache_remove(m, evicted);
    }
    size_t b = bucket_of(m, l->key);
    l->hnext = m->buckets[b];
    m->buckets[b] = l;
    lru_push_front(m, l);
    m->entries++;
    proxy_leaf_ref(l); /* the cache's */
    pthread_mutex_unlock(&m->mu);

    proxy_leaf_unref(old);
    proxy_leaf_unref(evicted);
    return l;
}

/* ---- set-up ---- */

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    *(int *)u = 1;
    return -1;
}

static EVP_PKEY *load_key(const char *path, char *err, size_t errlen)
{
    struct stat st;
    int asked = 0;
    EVP_PKEY *k = NULL;

    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd == -1) {
        errf(err, errlen, "%s: cannot open the CA key: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) == -1) {
        errf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        errf(err, errlen, "%s: the CA key is not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_mode & 077) {
        errf(err, errlen, "%s: the CA key has mode %04o, readable beyond its owner; run chmod 600 %s", path,
             (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return NULL;
    }
    BIO *b = BIO_new_fd(fd, BIO_CLOSE);
    if (!b) {
        close(fd);
        errf(err, errlen, "%s: %s", path, ssl_reason());
        return NULL;
    }
    k = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, &asked);
    BIO_free(b);
    if (!k) {
        if (asked)
            errf(err, errlen, "%s: the CA key is encrypted; Vigil needs it unencrypted (mode 0600)", path);
        else
            errf(err, errlen, "%s: no PEM private key (%s)", path, ssl_reason());
    }
    ERR_clear_error();
    return k;
}

static X509 *load_cert(const char *path, char *err, size_t errlen)
{
    BIO *b = BIO_new_file(path, "r");
    if (!b) {
        errf(err, errlen, "%s: cannot open the CA certificate: %s", path, strerror(errno));
        ERR_clear_error();
        return NULL;
    }
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!x)
        errf(err, errlen, "%s: no PEM certificate (%s)", path, ssl_reason());
    ERR_clear_error();
    return x;
}

/* The fixed extensions of every leaf. 0, or -1. */
static int make_fixed_exts(struct proxy_mint *m, const ASN1_OCTET_STRING *ca_skid)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    ASN1_OCTET_STRING *skid = ASN1_OCTET_STRING_new();
    X509_PUBKEY *xpk = NULL;
    const unsigned char *pk;
    int pklen, rc = -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen;

    if (!bc || !ku || !eku || !akid || !skid)
        goto out;
    bc->ca = 0;
    if (ASN1_BIT_STRING_set_bit(ku, 0, 1) != 1 || ASN1_BIT_STRING_set_bit(ku, 2, 1) != 1 || /* dS, kE */
        !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)))
        goto out;
    akid->keyid = ASN1_OCTET_STRING_dup(ca_skid);
    if (!akid->keyid)
        goto out;
    /* RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's value */
    if (X509_PUBKEY_set(&xpk, m->leaf_key) != 1 || X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, xpk) != 1 ||
        EVP_Digest(pk, (size_t)pklen, md, &mdlen, EVP_sha1(), NULL) != 1 ||
        ASN1_OCTET_STRING_set(skid, md, (int)mdlen) != 1)
        goto out;
    if (ASN1_OCTET_STRING_cmp(skid, ca_skid) == 0) /* only if the CA key were the leaf key */
        goto out;
    m->ext_bc = X509V3_EXT_i2d(NID_basic_constraints, 1, bc);
    m->ext_ku_default = X509V3_EXT_i2d(NID_key_usage, 1, ku);
    m->ext_eku_default = X509V3_EXT_i2d(NID_ext_key_usage, 0, eku);
    m->ext_ski = X509V3_EXT_i2d(NID_subject_key_identifier, 0, skid);
    m->ext_aki = X509V3_EXT_i2d(NID_authority_key_identifier, 0, akid);
    if (m->ext_bc && m->ext_ku_default && m->ext_eku_default && m->ext_ski && m->ext_aki)
        rc = 0;
out:
    X509_PUBKEY_free(xpk);
    ASN1_OCTET_STRING_free(skid);
    AUTHORITY_KEYID_free(akid);
    sk_ASN1_OBJECT_free(eku); /* OBJ_nid2obj() objects are static */
    ASN1_BIT_STRING_free(ku);
    BASIC_CONSTRAINTS_free(bc);
    return rc;
}

struct proxy_mint *proxy_mint_new(const char *ca_cert, const char *ca_key, unsigned max_days, size_t cache_entries,
                                  char *err, size_t errlen)
{
    struct proxy_mint *m = NULL;

    if (max_days == 0) {
        errf(err, errlen, "max_days must be at least 1");
        return NULL;
    }
    if (cache_entries == 0 || cache_entries > PROXY_MINT_MAX_CACHE) {
        errf(err, errlen, "cache_entries must be 1 to %u", PROXY_MINT_MAX_CACHE);
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        errf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->max_days = max_days;
    m->cap = cache_entries;
    size_t nb = 1;
    while (nb < cache_entries * 2)
        nb <<= 1;
    m->buckets = calloc(nb, sizeof(*m->buckets));
    if (!m->buckets) {
        errf(err, errlen, "out of memory");
        goto fail;
    }
    m->mask = nb - 1;

    if (!(m->ca = load_cert(ca_cert, err, errlen)) || !(m->ca_key = load_key(ca_key, err, errlen)))
        goto fail;
    if (X509_check_ca(m->ca) != 1) {
        errf(err, errlen, "%s: not a CA certificate (needs basicConstraints CA:TRUE, and keyCertSign in any keyUsage)",
             ca_cert);
        goto fail;
    }
    const ASN1_OCTET_STRING *ca_skid = X509_get0_subject_key_id(m->ca);
    if (!ca_skid) {
        errf(err, errlen, "%s: the CA certificate has no subjectKeyIdentifier (vigil-ca create makes one)", ca_cert);
        goto fail;
    }
    if (asn1_time_get(X509_get0_notBefore(m->ca), &m->ca_not_before) == -1 ||
        asn1_time_get(X509_get0_notAfter(m->ca), &m->ca_not_after) == -1) {
        errf(err, errlen, "%s: unreadable validity", ca_cert);
        goto fail;
    }
    time_t now = time(NULL);
    if (now < m->ca_not_before || now >= m->ca_not_after) {
        errf(err, errlen, "%s: the CA certificate is not valid now (expired or not yet valid)", ca_cert);
        goto fail;
    }
    if (X509_check_private_key(m->ca, m->ca_key) != 1) {
        ERR_clear_error();
        errf(err, errlen, "%s: the key is not the key of the CA certificate %s", ca_key, ca_cert);
        goto fail;
    }
    int id = EVP_PKEY_get_id(m->ca_key);
    m->md = id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();

    m->leaf_key = EVP_EC_gen("P-256");
    if (!m->leaf_key) {
        errf(err, errlen, "generating the leaf key: %s", ssl_reason());
        goto fail;
    }
    if (make_fixed_exts(m, ca_skid) == -1) {
        errf(err, errlen, "building the leaf extensions: %s", ssl_reason());
        goto fail;
    }
    ERR_clear_error();
    return m;
fail:
    ERR_clear_error();
    proxy_mint_free(m);
    return NULL;
}

void proxy_mint_free(struct proxy_mint *m)
{
    if (!m)
        return;
    while (m->mru) {
        struct proxy_leaf *l = m->mru;
        cache_remove(m, l);
        proxy_leaf_unref(l);
    }
    free(m->buckets);
    X509_EXTENSION_free(m->ext_bc);
    X509_EXTENSION_free(m->ext_ski);
    X509_EXTENSION_free(m->ext_aki);
    X509_EXTENSION_free(m->ext_ku_default);
    X509_EXTENSION_free(m->ext_eku_default);
    EVP_PKEY_free(m->leaf_key);
    EVP_PKEY_free(m->ca_key);
    X509_free(m->ca);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

EVP_PKEY *proxy_mint_leaf_key(const struct proxy_mint *m)
{
    return m->leaf_key;
}

X509 *proxy_mint_ca_cert(const struct proxy_mint *m)
{
    return m->ca;
}

void proxy_mint_stats(struct proxy_mint *m, uint64_t *hits, uint64_t *misses, size_t *entries)
{
    pthread_mutex_lock(&m->mu);
    if (hits)
        *hits = m->hits;
    if (misses)
        *misses = m->misses;
    if (entries)
        *entries = m->entries;
    pthread_mutex_unlock(&m->mu);
}

void proxy_mint_set_time(struct proxy_mint *m, time_t now)
{
    m->fixed_now = now;
}

/* ---- describing a certificate ---- */

/* Copies <n> bytes of <p> into <out> (<cap> bytes), ending in "..." when they do not fit. */
static void copy_bounded(char *out, size_t cap, const char *p, size_t n)
{
    if (n < cap) {
        memcpy(out, p, n);
        out[n] = '\0';
        return;
    }
    memcpy(out, p, cap - 4);
    memcpy(out + cap - 4, "...", 4);
}

static void describe_name(const X509_NAME *name, char *out, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p;
    out[0] = '\0';
    if (b && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        long n = BIO_get_mem_data(b, &p);
        if (n > 0)
            copy_bounded(out, cap, p, (size_t)n);
    }
    BIO_free(b);
}

static void describe_time(const ASN1_TIME *t, char out[32])
{
    struct tm tm;
    out[0] = '\0';
    if (t && ASN1_TIME_to_tm(t, &tm) == 1)
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void proxy_cert_describe(X509 *c, struct proxy_cert_info *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    static const char hex[] = "0123456789abcdef";

    memset(out, 0, sizeof(*out));
    if (X509_digest(c, EVP_sha256(), md, &n) == 1 && n == 32) {
        for (unsigned i = 0; i < n; i++) {
            out->sha256[2 * i] = hex[md[i] >> 4];
            out->sha256[2 * i + 1] = hex[md[i] & 15];
        }
    }
    describe_name(X509_get_subject_name(c), out->subject, sizeof(out->subject));
    describe_name(X509_get_issuer_name(c), out->issuer, sizeof(out->issuer));
    describe_time(X509_get0_notBefore(c), out->not_before);
    describe_time(X509_get0_notAfter(c), out->not_after);
    ERR_clear_error();
}
