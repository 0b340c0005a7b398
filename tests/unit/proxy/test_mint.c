/* tests/unit/proxy/test_mint.c - minted leaves mirror the upstream certificate and chain
 * to the CA; the LRU cache hits, evicts and expires; bad CA files are refused with the
 * file named. The CAs and "upstream" certificates are made here with OpenSSL and written
 * to a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "proxy/mint.h"

#define DAY 86400

static char dir[64];
static time_t now0; /* the test's "now", fixed once */

/* ---- making certificates ---- */

struct cert_spec {
    const char *cn;  /* NULL: no CN */
    const char *org; /* NULL: no O */
    const char *san; /* "DNS:a,IP:1.2.3.4" or NULL */
    const char *ku;  /* "critical,digitalSignature" or NULL */
    const char *eku; /* "serverAuth,clientAuth" or NULL */
    int is_ca;
    int no_ski;    /* a CA without subjectKeyIdentifier */
    time_t nb, na; /* absolute */
};

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* A certificate for <key> as <s> says, signed by <issuer>/<ikey> (NULL, NULL: self-signed). */
static X509 *make_cert(const struct cert_spec *s, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey)
{
    static long serial = 1000;
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_NAME *n = X509_NAME_new();
    if (s->org)
        assert_int_equal(X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)s->org, -1, -1, 0), 1);
    if (s->cn)
        assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)s->cn, -1, -1, 0), 1);
    assert_int_equal(X509_set_subject_name(x, n), 1);
    X509_NAME_free(n);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x)), 1);
    assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), s->nb));
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), s->na));
    assert_int_equal(X509_set_pubkey(x, key), 1);

    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    if (s->is_ca) {
        add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    if (!s->no_ski)
        add_ext(x, &ctx, NID_subject_key_identifier, "hash");
    if (s->ku)
        add_ext(x, &ctx, NID_key_usage, s->ku);
    if (s->eku)
        add_ext(x, &ctx, NID_ext_key_usage, s->eku);
    if (s->san)
        add_ext(x, &ctx, NID_subject_alt_name, s->san);
    int id = EVP_PKEY_get_id(ikey ? ikey : key);
    assert_true(X509_sign(x, ikey ? ikey : key, id == EVP_PKEY_ED25519 ? NULL : EVP_sha256()) > 0);
    return x;
}

static EVP_PKEY *ec_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    return k;
}

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static void write_cert(const char *name, X509 *x)
{
    char p[128];
    path_of(p, sizeof(p), name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
}

static void write_key(const char *name, EVP_PKEY *k, mode_t mode, const char *passphrase)
{
    char p[128];
    path_of(p, sizeof(p), name);
    unlink(p);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    if (passphrase)
        assert_int_equal(PEM_write_PrivateKey(f, k, EVP_aes_128_cbc(), (unsigned char *)passphrase,
                                              (int)strlen(passphrase), NULL, NULL),
                         1);
    else
        assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    assert_int_equal(chmod(p, mode), 0);
}

/* A CA valid from <nb> to <na> written as <name>.pem / <name>.key (0600); returns the mint. */
struct ca {
    X509 *cert;
    EVP_PKEY *key;
    char cert_path[128], key_path[128];
};

static void ca_make(struct ca *ca, const char *name, time_t nb, time_t na, int ed25519)
{
    char f[64];
    struct cert_spec s = {.cn = "Vigil Test CA", .org = "Vigil Tests", .is_ca = 1, .nb = nb, .na = na};
    ca->key = ed25519 ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519") : ec_key();
    assert_non_null(ca->key);
    ca->cert = make_cert(&s, ca->key, NULL, NULL);
    snprintf(f, sizeof(f), "%s.pem", name);
    write_cert(f, ca->cert);
    path_of(ca->cert_path, sizeof(ca->cert_path), f);
    snprintf(f, sizeof(f), "%s.key", name);
    write_key(f, ca->key, 0600, NULL);
    path_of(ca->key_path, sizeof(ca->key_path), f);
}

static void ca_free(struct ca *ca)
{
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
}

/* An upstream certificate (from an unrelated "public" CA, as on the Internet). */
static EVP_PKEY *up_key;
static struct ca up_ca;

static X509 *upstream(const struct cert_spec *s)
{
    return make_cert(s, up_key, up_ca.cert, up_ca.key);
}

static struct cert_spec web_spec(void)
{
    struct cert_spec s = {.cn = "www.example.com",
                          .org = "Example Inc",
                          .san = "DNS:www.example.com,DNS:example.com,DNS:*.cdn.example.com,IP:192.0.2.10",
                          .ku = "critical,digitalSignature",
                          .eku = "serverAuth,clientAuth",
                          .nb = now0 - 30 * DAY,
                          .na = now0 + 60 * DAY};
    return s;
}

static time_t time_of(const ASN1_TIME *t)
{
    struct tm tm;
    assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
    return timegm(&tm);
}

static const ASN1_OCTET_STRING *ext_data(X509 *x, int nid, int *crit)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    if (i < 0)
        return NULL;
    if (crit)
        *crit = X509_EXTENSION_get_critical(X509_get_ext(x, i));
    return X509_EXTENSION_get_data(X509_get_ext(x, i));
}

/* <leaf> chains to <ca> for TLS server use at the real current time, and names <host>. */
static int verifies(X509 *leaf, X509 *ca, const char *host)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_add_cert(st, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, st, leaf, NULL), 1);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    int ok = X509_verify_cert(ctx);
    if (ok != 1)
        print_message("verify: %s\n", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return ok == 1 && X509_check_host(leaf, host, 0, 0, NULL) == 1;
}

/* A TLS handshake over a memory BIO pair: a server with <leaf> and <key>, a client that trusts
 * only <ca>, checks the name <host> and speaks at most <maxv>. 1 when both sides finish. */
static int handshake(X509 *leaf, EVP_PKEY *key, X509 *ca, const char *host, int maxv)
{
    SSL_CTX *sc = SSL_CTX_new(TLS_server_method()), *cc = SSL_CTX_new(TLS_client_method());
    assert_non_null(sc);
    assert_non_null(cc);
    assert_int_equal(SSL_CTX_use_certificate(sc, leaf), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(sc, key), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(cc, maxv), 1);
    assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(cc), ca), 1);
    SSL_CTX_set_verify(cc, SSL_VERIFY_PEER, NULL);
    SSL *s = SSL_new(sc), *c = SSL_new(cc);
    BIO *b1, *b2;
    assert_int_equal(BIO_new_bio_pair(&b1, 0, &b2, 0), 1);
    assert_int_equal(SSL_set1_host(c, host), 1);
    assert_int_equal(SSL_set_tlsext_host_name(c, host), 1);
    SSL_set_bio(c, b1, b1);
    SSL_set_bio(s, b2, b2);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    int cdone = 0, sdone = 0, failed = 0;
    for (int i = 0; i < 50 && !failed && !(cdone && sdone); i++) {
        int r;
        if (!cdone && (r = SSL_do_handshake(c)) != 1 && SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
            failed = 1;
        else if (!cdone && r == 1)
            cdone = 1;
        if (!failed && !sdone && (r = SSL_do_handshake(s)) != 1 && SSL_get_error(s, r) != SSL_ERROR_WANT_READ)
            failed = 1;
        else if (!failed && !sdone && r == 1)
            sdone = 1;
    }
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(sc);
    SSL_CTX_free(cc);
    ERR_clear_error();
    return cdone && sdone && !failed;
}

/* ---- fixtures ---- */

struct fx {
    struct ca ca;
    struct proxy_mint *m;
};

static int group_setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/vigil-mint-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    now0 = time(NULL);
    up_key = EVP_EC_gen("P-256");
    struct cert_spec s = {
        .cn = "Public Root", .is_ca = 1, .nb = now0 - 3650 * (time_t)DAY, .na = now0 + 3650 * (time_t)DAY};
    up_ca.key = EVP_EC_gen("P-256");
    up_ca.cert = make_cert(&s, up_ca.key, NULL, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[128];
    EVP_PKEY_free(up_key);
    ca_free(&up_ca);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct fx *fx_new(time_t ca_nb, time_t ca_na, unsigned max_days, size_t cache)
{
    char err[256] = "";
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    ca_make(&f->ca, "ca", ca_nb, ca_na, 0);
    f->m = proxy_mint_new(f->ca.cert_path, f->ca.key_path, max_days, cache, err, sizeof(err));
    if (!f->m)
        fail_msg("proxy_mint_new: %s", err);
    proxy_mint_set_time(f->m, now0);
    return f;
}

static int fx_setup(void **state)
{
    *state = fx_new(now0 - 365 * (time_t)DAY, now0 + 3650 * (time_t)DAY, 397, 16);
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    proxy_mint_free(f->m);
    ca_free(&f->ca);
    free(f);
    return 0;
}

static struct proxy_leaf *make_ok(struct proxy_mint *m, X509 *up, const char *sni)
{
    char err[256] = "";
    struct proxy_leaf *l = proxy_mint_make(m, up, sni, err, sizeof(err));
    if (!l)
        fail_msg("proxy_mint_make: %s", err);
    return l;
}

/* ---- tests ---- */

/* the leaf carries the upstream's subject and SANs, is signed by the CA and verifies for its hosts */
static void test_mint_leaf_mirrors_and_verifies(void **state)
{
    struct fx *f = *state;
    struct cert_spec s = web_spec();
    X509 *up = upstream(&s);
    struct proxy_leaf *l = make_ok(f->m, up, "www.example.com");
    X509 *x = proxy_leaf_cert(l);

    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_subject_name(up)), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(f->ca.cert)), 0);
    int c1, c2;
    assert_int_equal(ASN1_STRING_cmp(ext_data(x, NID_subject_alt_name, &c1), ext_data(up, NID_subject_alt_name, &c2)),
                     0);
    assert_int_equal(c1, c2);
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    assert_int_equal(X509_check_private_key(x, proxy_mint_leaf_key(f->m)), 1);
    assert_int_equal(EVP_PKEY_get_id(proxy_mint_leaf_key(f->m)), EVP_PKEY_EC);
    assert_int_equal(X509_cmp(proxy_mint_ca_cert(f->m), f->ca.cert), 0);
    assert_int_equal(X509_check_ca(x), 0); /* CA:FALSE */
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);

    assert_true(verifies(x, f->ca.cert, "www.example.com"));
    assert_true(verifies(x, f->ca.cert, "example.com"));
    assert_true(verifies(x, f->ca.cert, "img.cdn.example.com"));
    assert_int_equal(X509_check_ip_asc(x, "192.0.2.10", 0), 1);
    assert_int_not_equal(X509_check_host(x, "other.example.net", 0, 0, NULL), 1);
    /* and not against the upstream's own CA */
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_add_cert(st, up_ca.cert);
    X509_STORE_CTX_init(ctx, st, x, NULL);
    assert_int_not_equal(X509_verify_cert(ctx), 1);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);

    proxy_leaf_unref(l);
    X509_free(up);
}

/* keyUsage and extendedKeyUsage are copied with their criticality; absent ones get the defaults */
static void test_mint_key_usages_copied_or_default(void **state)
{
    struct fx *f = *state;
    struct cert_spec s = web_spec();
    X509 *up = upstream(&s);
    struct proxy_leaf *l = make_ok(f->m, up, NULL);
    X509 *x = proxy_leaf_cert(l);
    int c1, c2;

    assert_int_equal(ASN1_STRING_cmp(ext_data(x, NID_key_usage, &c1), ext_data(up, NID_key_usage, &c2)), 0);
    assert_int_equal(c1, 1);
    assert_int_equal(c2, 1);
    assert_int_equal(ASN1_STRING_cmp(ext_data(x, NID_ext_key_usage, &c1), ext_data(up, NID_ext_key_usage, &c2)), 0);
    assert_int_equal(c1, c2);
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    proxy_leaf_unref(l);
    X509_free(up);

    s.ku = NULL;
    s.eku = NULL;
    up = upstream(&s);
    l = make_ok(f->m, up, NULL);
    x = proxy_leaf_cert(l);
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    assert_non_null(ext_data(x, NID_key_usage, &c1));
    assert_int_equal(c1, 1);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER);
    assert_true(verifies(x, f->ca.cert, "example.com"));
    proxy_leaf_unref(l);
    X509_free(up);
}

/* no SAN: the CN becomes a DNS (or IP) SAN; no usable CN: the SNI; neither: refused */
static void test_mint_cn_and_sni_fallback(void **state)
{
    struct fx *f = *state;
    struct cert_spec s = web_spec();
    char err[256] = "";

    s.san = NULL;
    s.cn = "Legacy.Example.org";
    X509 *up = upstream(&s);
    struct proxy_leaf *l = make_ok(f->m, up, "ignored.example");
    assert_true(verifies(proxy_leaf_cert(l), f->ca.cert, "legacy.example.org"));
    assert_int_not_equal(X509_check_host(proxy_leaf_cert(l), "ignored.example", 0, 0, NULL), 1);
    proxy_leaf_unref(l);
    X509_free(up);

    s.cn = "198.51.100.7";
    up = upstream(&s);
    l = make_ok(f->m, up, NULL);
    assert_int_equal(X509_check_ip_asc(proxy_leaf_cert(l), "198.51.100.7", 0), 1);
    proxy_leaf_unref(l);
    X509_free(up);

    /* a CN that is no host name: the SNI names the leaf, which is not cached */
    size_t before, after;
    proxy_mint_stats(f->m, NULL, NULL, &before);
    s.cn = "Example Corp Server";
    up = upstream(&s);
    l = make_ok(f->m, up, "sni.example.net");
    assert_true(verifies(proxy_leaf_cert(l), f->ca.cert, "sni.example.net"));
    proxy_mint_stats(f->m, NULL, NULL, &after);
    assert_int_equal(after, before);
    assert_null(proxy_mint_lookup(f->m, up));
    proxy_leaf_unref(l);
    assert_null(proxy_mint_make(f->m, up, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no SNI"));
    X509_free(up);

    s.cn = NULL; /* no CN at all */
    up = upstream(&s);
    l = make_ok(f->m, up, "bare.example");
    assert_true(verifies(proxy_leaf_cert(l), f->ca.cert, "bare.example"));
    proxy_leaf_unref(l);
    X509_free(up);
}

/* AKI keyid equals the CA's SKI byte for byte; the leaf's SKI is the leaf key's, never the CA's */
static void test_mint_key_identifiers(void **state)
{
    struct fx *f = *state;
    struct cert_spec s = web_spec();
    X509 *up = upstream(&s);
    struct proxy_leaf *l = make_ok(f->m, up, NULL);
    X509 *x = proxy_leaf_cert(l);

    const ASN1_OCTET_STRING *ca_ski = X509_get0_subject_key_id(f->ca.cert);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x);
    assert_non_null(ca_ski);
    assert_non_null(aki);
    assert_non_null(ski);
    assert_int_equal(ASN1_STRING_length(aki), ASN1_STRING_length(ca_ski));
    assert_memory_equal(ASN1_STRING_get0_data(aki), ASN1_STRING_get0_data(ca_ski), (size_t)ASN1_STRING_length(aki));
    assert_int_not_equal(ASN1_OCTET_STRING_cmp(ski, ca_ski), 0);
    assert_int_not_equal(ASN1_OCTET_STRING_cmp(ski, X509_get0_subject_key_id(up)), 0);
    assert_int_equal(ASN1_STRING_length(ski), 20);
    /* the leaf SKI is what `openssl x509 -ext subjectKeyIdentifier` would compute ("hash") */
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, NULL, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
    assert_non_null(e);
    ASN1_OCTET_STRING *want = X509V3_EXT_d2i(e);
    assert_int_equal(ASN1_OCTET_STRING_cmp(want, ski), 0);
    ASN1_OCTET_STRING_free(want);
    X509_EXTENSION_free(e);
    proxy_leaf_unref(l);
    X509_free(up);
}

/* a real client completes TLS 1.2 and 1.3 handshakes with the leaf, trusting only the CA and
 * checking the name; a keyUsage without digitalSignature gains it (the leaf key is EC) */
static void test_mint_leaf_handshakes(void **state)
{
    struct fx *f = *state;
    struct cert_spec s = web_spec();
    s.ku = "critical,keyEncipherment"; /* as on old RSA key-exchange certificates */
    X509 *up = upstream(&s);
    struct proxy_leaf *l = make_ok(f->m, up, NULL);
    X509 *x = proxy_leaf_cert(l);
    int crit;

    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    assert_non_null(ext_data(x, NID_key_usage, &crit));
    assert_int_equal(crit, 1);
    EVP_PKEY *k = proxy_mint_leaf_key(f->m);
    assert_true(handshake(x, k, f->ca.cert, "www.example.com", TLS1_2_VERSION));
    assert_true(handshake(x, k, f->ca.cert, "www.example.com", TLS1_3_VERSION));
    assert_false(handshake(x, k, f->ca.cert, "other.example.net", TLS1_3_VERSION));
    assert_false(handshake(x, k, up_ca.cert, "www.example.com", TLS1_3_VERSION));
    proxy_leaf_unref(l);
    X509_free(up);
}

/* validity: clipped to a CA that starts later and ends earlier than the upstream */
static void test_mint_validity_clipped_to_ca(void **state)
{
    struct fx *f = fx_new(now0 - 1 * DAY, now0 + 10 * DAY, 397, 4);
    struct cert_spec s = web_spec(); /* now-30d .. now+60d */
    X509 *up = upstream(&s);
    struct proxy_leaf *l = make_ok(f->m, up, NULL);
    X509 *x = proxy_leaf_cert(l);

    assert_int_equal(time_of(X509_get0_notBefore(x)), now0 - 1 * DAY);
    assert_int_equal(time_of(X509_get0_notAfter(x)), now0 + 10 * DAY);
    assert_true(verifies(x, f->ca.cert, "www.example.com"));
    proxy_leaf_unref(l);
    X509_free(up);
    *state = f;
    fx_teardown(state);
}

/* validity: the upstream's own when inside the CA's, and never past now + max_days */
static void test_mint_validity_clipped_to_max_days(void **state)
{
    struct fx *f = fx_new(now0 - 365 * (time_t)DAY, now0 + 3650 * (time_t)DAY, 30, 4);
    struct cert_spec s = web_spec();
    s.na = now0 + 20 * DAY; /* inside max_days: kept */
    X509 *up = upstream(&s);
    struct proxy_leaf *l = make_ok(f->m, up, NULL);
    assert_int_equal(time_of(X509_get0_notBefore(proxy_leaf_cert(l))), now0 - 30 * DAY);
    assert_int_equal(time_of(X509_get0_notAfter(proxy_leaf_cert(l))), now0 + 20 * DAY);
    proxy_leaf_unref(l);
    X509_free(up);

    s.na = now0 + 300 * DAY; /* beyond: clipped to now + 30 days */
    up = upstream(&s);
    l = make_ok(f->m, up, NULL);
    assert_int_equal(time_of(X509_get0_notAfter(proxy_leaf_cert(l))), now0 + 30 * DAY);
    proxy_leaf_unref(l);
    X509_free(up);

    /* an upstream that expired before the CA began leaves nothing: refused */
    char err[256] = "";
    s.nb = now0 - 800 * DAY;
    s.na = now0 - 400 * DAY;
    up = upstream(&s);
    assert_null(proxy_mint_make(f->m, up, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "validity"));
    X509_free(up);
    *state = f;
    fx_teardown(state);
}

/* every leaf gets a fresh positive 128-bit serial, reported in hex */
static void test_mint_serials_fresh(void **state)
{
    struct fx *f = *state;
    struct cert_spec s = web_spec();
    X509 *up = upstream(&s);
    struct proxy_leaf *a = make_ok(f->m, up, NULL);
    struct proxy_leaf *b = make_ok(f->m, up, NULL);

    assert_int_not_equal(
        ASN1_INTEGER_cmp(X509_get0_serialNumber(proxy_leaf_cert(a)), X509_get0_serialNumber(proxy_leaf_cert(b))), 0);
    assert_string_not_equal(proxy_leaf_serial_hex(a), proxy_leaf_serial_hex(b));
    assert_int_equal(strlen(proxy_leaf_serial_hex(a)), 32);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(proxy_leaf_cert(a)), NULL);
    assert_false(BN_is_negative(bn));
    assert_int_equal(BN_num_bits(bn), 127);
    char *hex = BN_bn2hex(bn);
    assert_string_equal(hex, proxy_leaf_serial_hex(a));
    OPENSSL_free(hex);
    BN_free(bn);
    proxy_leaf_unref(a);
    proxy_leaf_unref(b);
    X509_free(up);
}

/* a lookup after a make returns that very leaf, counted as a hit; another upstream misses */
static void test_mint_cache_hit_same_leaf(void **state)
{
    struct fx *f = *state;
    struct cert_spec s = web_spec();
    X509 *up = upstream(&s);
    uint64_t hits, misses;
    size_t entries;

    assert_null(proxy_mint_lookup(f->m, up));
    struct proxy_leaf *l = make_ok(f->m, up, NULL);
    struct proxy_leaf *h = proxy_mint_lookup(f->m, up);
    assert_ptr_equal(h, l);
    /* an equal certificate parsed anew (the next connection) hits too */
    X509 *again = X509_dup(up);
    struct proxy_leaf *h2 = proxy_mint_lookup(f->m, again);
    assert_ptr_equal(h2, l);
    proxy_mint_stats(f->m, &hits, &misses, &entries);
    assert_int_equal(hits, 2);
    assert_int_equal(misses, 1);
    assert_int_equal(entries, 1);
    /* the leaf outlives its eviction for as long as someone holds it */
    proxy_leaf_unref(l);
    proxy_leaf_unref(h);
    proxy_leaf_unref(h2);
    X509_free(again);

    /* a renewed upstream (new validity) or another SAN set is another entry */
    s.na += DAY;
    X509 *renewed = upstream(&s);
    assert_null(proxy_mint_lookup(f->m, renewed));
    s = web_spec();
    s.san = "DNS:www.example.com";
    X509 *other = upstream(&s);
    assert_null(proxy_mint_lookup(f->m, other));
    X509_free(renewed);
    X509_free(other);
    X509_free(up);
}

/* at capacity the least recently used entry goes; a lookup refreshes recency */
static void test_mint_lru_evicts_least_recent(void **state)
{
    struct fx *f = fx_new(now0 - 365 * (time_t)DAY, now0 + 3650 * (time_t)DAY, 397, 2);
    struct cert_spec s = web_spec();
    X509 *up[3];
    size_t entries;

    for (int i = 0; i < 3; i++) {
        s.na = now0 + (60 + i) * DAY;
        up[i] = upstream(&s);
    }
    proxy_leaf_unref(make_ok(f->m, up[0], NULL));
    proxy_leaf_unref(make_ok(f->m, up[1], NULL));
    proxy_leaf_unref(proxy_mint_lookup(f->m, up[0])); /* 0 is now the most recent */
    proxy_leaf_unref(make_ok(f->m, up[2], NULL));     /* evicts 1 */
    proxy_mint_stats(f->m, NULL, NULL, &entries);
    assert_int_equal(entries, 2);
    assert_null(proxy_mint_lookup(f->m, up[1]));
    struct proxy_leaf *a = proxy_mint_lookup(f->m, up[0]);
    struct proxy_leaf *c = proxy_mint_lookup(f->m, up[2]);
    assert_non_null(a);
    assert_non_null(c);
    proxy_leaf_unref(a);
    proxy_leaf_unref(c);

    /* minting the same inputs again replaces the entry instead of adding one */
    struct proxy_leaf *n = make_ok(f->m, up[2], NULL);
    proxy_mint_stats(f->m, NULL, NULL, &entries);
    assert_int_equal(entries, 2);
    c = proxy_mint_lookup(f->m, up[2]);
    assert_ptr_equal(c, n);
    proxy_leaf_unref(c);
    proxy_leaf_unref(n);
    for (int i = 0; i < 3; i++)
        X509_free(up[i]);
    *state = f;
    fx_teardown(state);
}

/* an entry whose leaf has expired is a miss and is evicted */
static void test_mint_expired_entry_evicted(void **state)
{
    struct fx *f = fx_new(now0 - 365 * (time_t)DAY, now0 + 3650 * (time_t)DAY, 1, 4);
    struct cert_spec s = web_spec();
    X509 *up = upstream(&s);
    size_t entries;

    proxy_leaf_unref(make_ok(f->m, up, NULL)); /* notAfter = now0 + 1 day */
    proxy_mint_set_time(f->m, now0 + DAY - 1);
    struct proxy_leaf *l = proxy_mint_lookup(f->m, up);
    assert_non_null(l);
    proxy_leaf_unref(l);
    proxy_mint_set_time(f->m, now0 + DAY);
    assert_null(proxy_mint_lookup(f->m, up));
    proxy_mint_stats(f->m, NULL, NULL, &entries);
    assert_int_equal(entries, 0);
    /* the re-mint lasts another day from the new now */
    l = make_ok(f->m, up, NULL);
    assert_int_equal(time_of(X509_get0_notAfter(proxy_leaf_cert(l))), now0 + 2 * DAY);
    proxy_leaf_unref(l);
    X509_free(up);
    *state = f;
    fx_teardown(state);
}

static void expect_refused(const char *cert, const char *key, const char *needle1, const char *needle2)
{
    char err[512] = "";
    struct proxy_mint *m = proxy_mint_new(cert, key, 30, 8, err, sizeof(err));
    if (m)
        fail_msg("accepted %s / %s", cert, key);
    if (!strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
        fail_msg("error \"%s\" lacks \"%s\"/\"%s\"", err, needle1, needle2 ? needle2 : "");
}

/* a CA key readable by group or others is refused, naming the file and the fix */
static void test_mint_key_mode_refused(void **state)
{
    struct ca ca;
    ca_make(&ca, "loose", now0 - DAY, now0 + 365 * DAY, 0);
    chmod(ca.key_path, 0644);
    expect_refused(ca.cert_path, ca.key_path, ca.key_path, "chmod 600");
    chmod(ca.key_path, 0640);
    expect_refused(ca.cert_path, ca.key_path, ca.key_path, "0640");
    chmod(ca.key_path, 0400);
    char err[256] = "";
    struct proxy_mint *m = proxy_mint_new(ca.cert_path, ca.key_path, 30, 8, err, sizeof(err));
    assert_non_null(m);
    proxy_mint_free(m);
    ca_free(&ca);
}

/* a key that is not the CA certificate's, an encrypted key, and missing files are refused */
static void test_mint_key_mismatch_refused(void **state)
{
    struct ca a, b;
    char p[128];
    ca_make(&a, "ca-a", now0 - DAY, now0 + 365 * DAY, 0);
    ca_make(&b, "ca-b", now0 - DAY, now0 + 365 * DAY, 0);
    expect_refused(a.cert_path, b.key_path, b.key_path, "not the key");

    write_key("enc.key", a.key, 0600, "secret");
    path_of(p, sizeof(p), "enc.key");
    expect_refused(a.cert_path, p, p, "encrypted");

    path_of(p, sizeof(p), "missing.key");
    expect_refused(a.cert_path, p, p, NULL);
    path_of(p, sizeof(p), "missing.pem");
    expect_refused(p, a.key_path, p, NULL);
    expect_refused(a.key_path, a.key_path, a.key_path, "no PEM certificate");
    ca_free(&a);
    ca_free(&b);
}

/* a certificate that is not a CA, lacks an SKI, or has expired is refused; so are bad limits */
static void test_mint_bad_ca_refused(void **state)
{
    char p[128], err[256];
    EVP_PKEY *k = ec_key();
    write_key("leafonly.key", k, 0600, NULL);
    char kp[128];
    path_of(kp, sizeof(kp), "leafonly.key");

    struct cert_spec s = {.cn = "not a ca", .nb = now0 - DAY, .na = now0 + 30 * DAY};
    X509 *x = make_cert(&s, k, NULL, NULL);
    write_cert("leafonly.pem", x);
    path_of(p, sizeof(p), "leafonly.pem");
    expect_refused(p, kp, "not a CA", NULL);
    X509_free(x);

    struct cert_spec n = {.cn = "no ski CA", .is_ca = 1, .no_ski = 1, .nb = now0 - DAY, .na = now0 + 30 * DAY};
    x = make_cert(&n, k, NULL, NULL);
    write_cert("noski.pem", x);
    path_of(p, sizeof(p), "noski.pem");
    expect_refused(p, kp, "subjectKeyIdentifier", NULL);
    X509_free(x);

    struct cert_spec e = {.cn = "old CA", .is_ca = 1, .nb = now0 - 30 * DAY, .na = now0 - DAY};
    x = make_cert(&e, k, NULL, NULL);
    write_cert("old.pem", x);
    path_of(p, sizeof(p), "old.pem");
    expect_refused(p, kp, "not valid now", NULL);
    X509_free(x);

    struct ca ok;
    ca_make(&ok, "ok", now0 - DAY, now0 + 30 * DAY, 0);
    assert_null(proxy_mint_new(ok.cert_path, ok.key_path, 0, 8, err, sizeof(err)));
    assert_non_null(strstr(err, "max_days"));
    assert_null(proxy_mint_new(ok.cert_path, ok.key_path, 30, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "cache_entries"));
    ca_free(&ok);
    EVP_PKEY_free(k);
}

/* an Ed25519 CA signs leaves too (no digest), and they verify */
static void test_mint_ed25519_ca(void **state)
{
    struct ca ca;
    char err[256] = "";
    ca_make(&ca, "ed", now0 - DAY, now0 + 365 * DAY, 1);
    struct proxy_mint *m = proxy_mint_new(ca.cert_path, ca.key_path, 30, 8, err, sizeof(err));
    if (!m)
        fail_msg("%s", err);
    struct cert_spec s = web_spec();
    X509 *up = upstream(&s);
    struct proxy_leaf *l = make_ok(m, up, NULL);
    assert_int_equal(X509_get_signature_nid(proxy_leaf_cert(l)), NID_ED25519);
    assert_true(verifies(proxy_leaf_cert(l), ca.cert, "www.example.com"));
    proxy_leaf_unref(l);
    X509_free(up);
    proxy_mint_free(m);
    ca_free(&ca);
}

/* proxy_cert_describe: fingerprint, RFC 2253 names, RFC 3339 times */
static void test_mint_cert_describe(void **state)
{
    struct cert_spec s = web_spec();
    X509 *up = upstream(&s);
    struct proxy_cert_info ci;
    unsigned char md[32];
    unsigned n;
    char hex[65], t[32];

    proxy_cert_describe(up, &ci);
    assert_int_equal(X509_digest(up, EVP_sha256(), md, &n), 1);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    assert_string_equal(ci.sha256, hex);
    assert_string_equal(ci.subject, "CN=www.example.com,O=Example Inc");
    assert_string_equal(ci.issuer, "CN=Public Root");
    struct tm tm;
    time_t nb = s.nb;
    gmtime_r(&nb, &tm);
    strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%SZ", &tm);
    assert_string_equal(ci.not_before, t);
    assert_int_equal(strlen(ci.not_after), 20);
    assert_int_equal(ci.not_after[10], 'T');
    X509_free(up);

    /* a long, escaped subject is bounded and marked: twelve 60-byte OUs, one with a comma */
    X509_NAME *name = X509_NAME_new();
    char ou[61];
    memset(ou, 'o', 60);
    ou[60] = '\0';
    for (int i = 0; i < 12; i++) {
        ou[5] = i == 11 ? ',' : 'o';
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_ASC, (unsigned char *)ou, -1, -1, 0), 1);
    }
    up = X509_new();
    assert_int_equal(X509_set_subject_name(up, name), 1);
    X509_NAME_free(name);
    proxy_cert_describe(up, &ci);
    assert_int_equal(strlen(ci.subject), PROXY_CERT_NAME_MAX - 1);
    assert_string_equal(ci.subject + PROXY_CERT_NAME_MAX - 4, "...");
    assert_non_null(strstr(ci.subject, "ooooo\\,o"));
    X509_free(up);
}

/* ---- concurrency ---- */

struct race {
    struct proxy_mint *m;
    X509 **ups;
    int nups;
    unsigned seed;
    int bad;
};

static void *race_main(void *arg)
{
    struct race *r = arg;
    char err[256];
    for (int i = 0; i < 150; i++) {
        r->seed = r->seed * 1103515245u + 12345u;
        X509 *up = r->ups[(r->seed >> 8) % (unsigned)r->nups];
        struct proxy_leaf *l = proxy_mint_lookup(r->m, up);
        if (!l)
            l = proxy_mint_make(r->m, up, NULL, err, sizeof(err));
        if (!l || X509_NAME_cmp(X509_get_subject_name(proxy_leaf_cert(l)), X509_get_subject_name(up)) != 0) {
            r->bad++;
        }
        proxy_leaf_unref(l);
    }
    return NULL;
}

/* lookups and mints from several threads against a small cache stay consistent */
static void test_mint_threads_consistent(void **state)
{
    struct fx *f = fx_new(now0 - 365 * (time_t)DAY, now0 + 3650 * (time_t)DAY, 397, 3);
    X509 *ups[6];
    char cn[32];
    pthread_t th[4];
    struct race r[4];
    uint64_t hits, misses;
    size_t entries;

    for (int i = 0; i < 6; i++) {
        snprintf(cn, sizeof(cn), "h%d.example.com", i);
        struct cert_spec s = {.cn = cn, .nb = now0 - DAY, .na = now0 + 90 * DAY};
        ups[i] = upstream(&s);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = (struct race){.m = f->m, .ups = ups, .nups = 6, .seed = 7u * (unsigned)i + 1};
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].bad, 0);
    }
    proxy_mint_stats(f->m, &hits, &misses, &entries);
    assert_int_equal(hits + misses, 4 * 150);
    assert_true(entries <= 3);
    for (int i = 0; i < 6; i++)
        X509_free(ups[i]);
    *state = f;
    fx_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mint_leaf_mirrors_and_verifies, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mint_key_usages_copied_or_default, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mint_cn_and_sni_fallback, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mint_key_identifiers, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mint_leaf_handshakes, fx_setup, fx_teardown),
        cmocka_unit_test(test_mint_validity_clipped_to_ca),
        cmocka_unit_test(test_mint_validity_clipped_to_max_days),
        cmocka_unit_test_setup_teardown(test_mint_serials_fresh, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mint_cache_hit_same_leaf, fx_setup, fx_teardown),
        cmocka_unit_test(test_mint_lru_evicts_least_recent),
        cmocka_unit_test(test_mint_expired_entry_evicted),
        cmocka_unit_test(test_mint_key_mode_refused),
        cmocka_unit_test(test_mint_key_mismatch_refused),
        cmocka_unit_test(test_mint_bad_ca_refused),
        cmocka_unit_test(test_mint_ed25519_ca),
        cmocka_unit_test(test_mint_cert_describe),
        cmocka_unit_test(test_mint_threads_consistent),
    };
    return cmocka_run_group_tests_name("proxy/mint", tests, group_setup, group_teardown);
}
