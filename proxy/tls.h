/* proxy/tls.h - TLS interception contexts, the leaf mint and upstream verification (the
 * config's "tls" section). Immutable once made: shared by every worker through the config. */
#ifndef VIGIL_PROXY_TLS_H
#define VIGIL_PROXY_TLS_H

#include <jansson.h>
#include <openssl/ssl.h>

struct proxy_tls;
struct proxy_mint;
struct proxy_leaf;

/* Loads the "tls" object <conf>: {"ca_cert", "ca_key" (mode 0600, refused otherwise),
 * "upstream_ca_file" (default: the system trust store), "leaf_max_days" (30),
 * "leaf_cache" (1024)}. NULL with <err> naming the key ("tls.ca_key: ...") on failure. */
struct proxy_tls *proxy_tls_new(const json_t *conf, char *err, size_t errlen);
void proxy_tls_free(struct proxy_tls *t); /* NULL does nothing */

struct proxy_mint *proxy_tls_mint(const struct proxy_tls *t);

/* A client SSL for the upstream of an intercepted tunnel: SNI and the verified name are the
 * client's SNI, else <host> (an IP literal is checked as an IP SAN); ALPN http/1.1. */
SSL *proxy_tls_upstream_ssl(struct proxy_tls *t, const char *host, int host_is_ip, const char *sni);

/* A server SSL for the client side showing <leaf> (with the CA as its chain); ALPN http/1.1 only. */
SSL *proxy_tls_client_ssl(struct proxy_tls *t, const struct proxy_leaf *leaf);

/* A server SSL whose handshake fails with an alert: a denied tunnel's client learns it so. */
SSL *proxy_tls_alert_ssl(struct proxy_tls *t);

/* Why the upstream's certificate was refused, or NULL when it verified. */
const char *proxy_tls_verify_error(SSL *ssl);

#endif
