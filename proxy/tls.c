/* proxy/tls.c - the TLS side of interception: contexts, the leaf mint, upstream verification.
 *
 * One struct proxy_tls per loaded config (the "tls" section): an upstream client context that
 * verifies the destination against the system trust store or the configured bundle (and the
 * host name, per connection), a server context for the client side whose ALPN offers
 * http/1.1 only (so an h2-preferring client falls back instead of hanging), a context whose
 * certificate callback fails (so a client whose flow is denied after the 200 gets a TLS
 * alert rather than silence), and the mint of leaf certificates (proxy/mint.c). */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "proxy/mint.h"
#include "proxy/tls.h"

struct proxy_tls {
    SSL_CTX *upstream;
    SSL_CTX *client;
    SSL_CTX *alert;
    struct proxy_mint *mint;
};

static const unsigned char alpn_http11[] = "\x08http/1.1";

/* The client side: choose http/1.1 when offered, else no ALPN at all. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *sel = NULL;
    unsigned char sellen = 0;
    if (SSL_select_next_proto(&sel, &sellen, alpn_http11, sizeof(alpn_http11) - 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        *outlen = sellen;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static int fail_cert_cb(SSL *ssl, void *arg)
{
    (void)ssl;
    (void)arg;
    return 0; /* the handshake ends with an alert */
}

static void ssl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(err, errlen, "%s: %s", what, e ? buf : "failed");
    ERR_clear_error();
}

struct proxy_tls *proxy_tls_new(const json_t *conf, char *err, size_t errlen)
{
    static const char *const keys[] = {"ca_cert", "ca_key", "upstream_ca_file", "leaf_max_days", "leaf_cache", NULL};
    const char *key;
    json_t *v;
    struct proxy_tls *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "tls: out of memory");
        return NULL;
    }
    if (!json_is_object(conf)) {
        snprintf(err, errlen, "tls: must be an object with ca_cert and ca_key");
        goto fail;
    }
    json_object_foreach((json_t *)conf, key, v)
    {
        int ok = 0;
        for (const char *const *k = keys; *k; k++)
            ok |= strcmp(*k, key) == 0;
        if (!ok) {
            snprintf(err, errlen, "tls.%s: unknown key", key);
            goto fail;
        }
    }
    const char *cert = json_string_value(json_object_get(conf, "ca_cert"));
    const char *ca_key = json_string_value(json_object_get(conf, "ca_key"));
    json_t *up = json_object_get(conf, "upstream_ca_file");
    json_t *days = json_object_get(conf, "leaf_max_days"), *cache = json_object_get(conf, "leaf_cache");
    if (!cert || !ca_key) {
        snprintf(err, errlen, "tls.%s: must be the path of a PEM file", cert ? "ca_key" : "ca_cert");
        goto fail;
    }
    if (up && !json_is_string(up)) {
        snprintf(err, errlen, "tls.upstream_ca_file: must be the path of a PEM bundle");
        goto fail;
    }
    if ((days && (!json_is_integer(days) || json_integer_value(days) < 1 || json_integer_value(days) > 825)) ||
        (cache && (!json_is_integer(cache) || json_integer_value(cache) < 1 || json_integer_value(cache) > 1000000))) {
        snprintf(err, errlen, "tls.%s: must be an integer from 1 to %s",
                 days && (!json_is_integer(days) || json_integer_value(days) < 1 || json_integer_value(days) > 825)
                     ? "leaf_max_days"
                     : "leaf_cache",
                 days ? "825" : "1000000");
        goto fail;
    }
    char why[512];
    t->mint = proxy_mint_new(cert, ca_key, days ? (unsigned)json_integer_value(days) : 30,
                             cache ? (size_t)json_integer_value(cache) : 1024, why, sizeof(why));
    if (!t->mint) {
        snprintf(err, errlen, "tls: %s", why);
        goto fail;
    }

    /* upstream: verify the chain and (per connection) the name */
    t->upstream = SSL_CTX_new(TLS_client_method());
    if (!t->upstream) {
        ssl_err(err, errlen, "tls: upstream context");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->upstream, TLS1_2_VERSION);
    SSL_CTX_set_verify(t->upstream, SSL_VERIFY_PEER, NULL);
    if (up ? SSL_CTX_load_verify_locations(t->upstream, json_string_value(up), NULL) != 1
           : SSL_CTX_set_default_verify_paths(t->upstream) != 1) {
        ssl_err(err, errlen, up ? "tls.upstream_ca_file" : "tls: system trust store");
        goto fail;
    }
    SSL_CTX_set_alpn_protos(t->upstream, alpn_http11, sizeof(alpn_http11) - 1);

    /* client side: the minted leaf is set per connection */
    t->client = SSL_CTX_new(TLS_server_method());
    t->alert = SSL_CTX_new(TLS_server_method());
    if (!t->client || !t->alert) {
        ssl_err(err, errlen, "tls: client context");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->client, TLS1_2_VERSION);
    SSL_CTX_set_alpn_select_cb(t->client, alpn_select, NULL);
    SSL_CTX_set_session_cache_mode(t->client, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_cert_cb(t->alert, fail_cert_cb, NULL);
    return t;
fail:
    proxy_tls_free(t);
    return NULL;
}

void proxy_tls_free(struct proxy_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->upstream);
    SSL_CTX_free(t->client);
    SSL_CTX_free(t->alert);
    proxy_mint_free(t->mint);
    free(t);
}

struct proxy_mint *proxy_tls_mint(const struct proxy_tls *t)
{
    return t->mint;
}

SSL *proxy_tls_upstream_ssl(struct proxy_tls *t, const char *host, int host_is_ip, const char *sni)
{
    SSL *ssl = SSL_new(t->upstream);
    if (!ssl)
        return NULL;
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    /* the name checked is the one the client asked for: its SNI, else the CONNECT host */
    const char *name = sni && sni[0] ? sni : host;
    int ok = (sni && sni[0]) || !host_is_ip ? X509_VERIFY_PARAM_set1_host(vp, name, 0)
                                             : X509_VERIFY_PARAM_set1_ip_asc(vp, host);
    if (ok != 1 || (!(host_is_ip && !(sni && sni[0])) && SSL_set_tlsext_host_name(ssl, name) != 1)) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

SSL *proxy_tls_client_ssl(struct proxy_tls *t, const struct proxy_leaf *leaf)
{
    SSL *ssl = SSL_new(t->client);
    if (!ssl)
        return NULL;
    if (SSL_use_certificate(ssl, proxy_leaf_cert(leaf)) != 1 ||
        SSL_use_PrivateKey(ssl, proxy_mint_leaf_key(t->mint)) != 1 ||
        SSL_add1_chain_cert(ssl, proxy_mint_ca_cert(t->mint)) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

SSL *proxy_tls_alert_ssl(struct proxy_tls *t)
{
    return SSL_new(t->alert);
}

const char *proxy_tls_verify_error(SSL *ssl)
{
    long r = SSL_get_verify_result(ssl);
    return r == X509_V_OK ? NULL : X509_verify_cert_error_string(r);
}
