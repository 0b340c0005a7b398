/* proxy/mint.h - leaf certificates minted from the configured CA, mirroring the
 * destination's certificate, for TLS interception.
 *
 * When a tunnel is intercepted, the proxy verifies the origin's certificate and then
 * answers the client with a leaf that says the same things (subject, subjectAltNames, key
 * usages, validity clipped to the CA's and to <max_days>), signed by the Vigil CA. All
 * leaves share one key pair (EC P-256) made at start-up: a key per leaf would buy nothing,
 * since the proxy holds every key anyway, and costs a key generation per mint.
 *
 *   worker loop:    leaf = proxy_mint_lookup(m, upstream)     cache hit: a few µs, no signing
 *                   miss → proxy_offload_submit(work, done)
 *   offload thread: leaf = proxy_mint_make(m, upstream, sni)  signs, inserts into the LRU
 *   worker loop:    done: SSL_use_certificate(proxy_leaf_cert(leaf)), proxy_leaf_unref(leaf)
 *
 * The cache is an LRU of at most <cache_entries> leaves keyed by a SHA-256 of the mirrored
 * inputs: the upstream's subject, subjectAltName, keyUsage and extendedKeyUsage extensions
 * (DER, criticality included) and its validity clipped to the CA's. The clip to now +
 * <max_days> is left out of the key on purpose (it moves every second, so no entry would
 * ever hit again); it bounds each entry's life instead: an entry whose notAfter has passed
 * is a miss and is evicted, and the next make re-mints it. A renewed upstream certificate
 * has another validity, hence another key, hence a fresh leaf.
 *
 * Thread safety: every function may be called from any thread once proxy_mint_new() has
 * returned, except proxy_mint_free() and proxy_mint_set_time(). The cache is one mutex held
 * for a hash probe and a list splice; signing happens outside it. Leaves, their
 * certificates, the leaf key and the CA certificate are never modified after they are
 * published, so threads may use them concurrently (OpenSSL's read-only-object rule). */
#ifndef VIGIL_PROXY_MINT_H
#define VIGIL_PROXY_MINT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

struct proxy_mint;
struct proxy_leaf;

#define PROXY_MINT_MAX_CACHE (1u << 20) /* cache_entries above this are refused */
#define PROXY_LEAF_SERIAL_HEX 40        /* hex digits of a serial, at most (20 bytes, RFC 5280) */

/* Loads the CA certificate <ca_cert> and key <ca_key> (PEM files; the first certificate of
 * <ca_cert> is the CA) and makes the leaf key pair. Refused, with a message in <err> (at
 * most <errlen> bytes, always terminated) naming the file at fault: a key file that is not
 * a regular file or whose mode grants any group or other permission (0600 expected); an
 * encrypted key (no passphrase is ever prompted for); a certificate that is not a CA
 * (basicConstraints CA:TRUE, and keyCertSign if it has a keyUsage), has no
 * subjectKeyIdentifier (the leaves' authorityKeyIdentifier copies it), or is not valid
 * now; a key that is not the certificate's; <max_days> 0; <cache_entries> 0 or over
 * PROXY_MINT_MAX_CACHE. Returns the minter, which the caller frees with proxy_mint_free(),
 * or NULL. Start-up (slow path). */
struct proxy_mint *proxy_mint_new(const char *ca_cert, const char *ca_key, unsigned max_days, size_t cache_entries,
                                  char *err, size_t errlen);

/* Frees <m> and drops the cache's references; leaves still referenced elsewhere stay valid
 * until their last proxy_leaf_unref(), but proxy_mint_leaf_key() and proxy_mint_ca_cert()
 * pointers die with <m> unless the caller took references (EVP_PKEY_up_ref, X509_up_ref).
 * NULL does nothing. No other call on <m> may run concurrently. */
void proxy_mint_free(struct proxy_mint *m);

/* The cached leaf mirroring <upstream> (borrowed for the call), with a reference the caller
 * drops with proxy_leaf_unref(); NULL on a miss or when the entry has expired (it is then
 * evicted). Counts a hit or a miss. Cheap: the worker's loop may call it. A certificate
 * with neither a subjectAltName nor a usable subject CN is never cached (its leaf names the
 * SNI of one flow), so it always misses. */
struct proxy_leaf *proxy_mint_lookup(struct proxy_mint *m, X509 *upstream);

/* Mints the leaf mirroring <upstream> (borrowed for the call), inserts it into the cache
 * (evicting the least recently used entry when full; an entry for the same inputs that
 * another thread inserted first is replaced) and returns it with a reference for the
 * caller; NULL with <err> filled on failure. <sni> (or NULL) names the leaf only when
 * <upstream> has no subjectAltName and no CN that is a host name or an IP address.
 * The leaf:
 *   version 3, fresh random positive 128-bit serial, issuer = the CA's subject;
 *   subject copied; subjectAltName copied, else a DNS (or IP) SAN from the last CN, else
 *   the SNI, else failure; keyUsage and extendedKeyUsage copied, criticality included, else
 *   critical digitalSignature+keyEncipherment and serverAuth (a copied keyUsage without
 *   digitalSignature gains it: the leaf key is EC and must sign, or TLS 1.2 ECDHE-ECDSA
 *   handshakes fail); critical basicConstraints
 *   CA:FALSE; subjectKeyIdentifier = SHA-1 of the leaf public key (RFC 5280 4.2.1.2 (1));
 *   authorityKeyIdentifier keyid = the CA's subjectKeyIdentifier byte for byte;
 *   notBefore = max(upstream, CA), notAfter = min(upstream, CA, now + max_days) (refused
 *   when that leaves no time at all); signed with the CA key, SHA-256 (no digest for
 *   Ed25519/Ed448 CA keys). No other upstream extension is copied (SCTs, AIA, CRL points,
 *   policies would be false for the leaf).
 * Slow (a signature): call it from an offload thread, never from a worker's loop. */
struct proxy_leaf *proxy_mint_make(struct proxy_mint *m, X509 *upstream, const char *sni, char *err, size_t errlen);

/* The leaf's certificate, borrowed: valid while the caller holds its reference. */
X509 *proxy_leaf_cert(const struct proxy_leaf *l);
/* The leaf's serial in uppercase hex (no separators), valid while the reference is held. */
const char *proxy_leaf_serial_hex(const struct proxy_leaf *l);
/* Reference counting (atomic: any thread). unref(NULL) does nothing; the last unref frees. */
void proxy_leaf_ref(struct proxy_leaf *l);
void proxy_leaf_unref(struct proxy_leaf *l);

/* The key pair every leaf certifies, and the CA certificate (e.g. for the chain sent to the
 * client): borrowed, valid until proxy_mint_free(). */
EVP_PKEY *proxy_mint_leaf_key(const struct proxy_mint *m);
X509 *proxy_mint_ca_cert(const struct proxy_mint *m);

/* Lookup hits and misses since proxy_mint_new(), and the entries cached now. Any pointer
 * may be NULL. */
void proxy_mint_stats(struct proxy_mint *m, uint64_t *hits, uint64_t *misses, size_t *entries);

/* Tests only: the clock used for clipping and expiry (0: the real clock). Not thread-safe:
 * set it before other calls. */
void proxy_mint_set_time(struct proxy_mint *m, time_t now);

/* A certificate as events describe it. Every string is terminated; names longer than their
 * room end in "...". */
#define PROXY_CERT_NAME_MAX 256
struct proxy_cert_info {
    char sha256[65];                   /* fingerprint of the DER, lowercase hex */
    char subject[PROXY_CERT_NAME_MAX]; /* RFC 2253 one-line form, non-ASCII and controls escaped */
    char issuer[PROXY_CERT_NAME_MAX];
    char not_before[32]; /* RFC 3339 UTC, "2026-01-31T00:00:00Z"; "" if unreadable */
    char not_after[32];
};

/* Fills <out> from <c> (borrowed for the call). Any thread. */
void proxy_cert_describe(X509 *c, struct proxy_cert_info *out);

#endif
