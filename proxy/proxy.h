/* proxy/proxy.h - the proxy as the `vigil` main sees it: configuration and the server.
 *
 * A server owns one worker thread per core, each with its own event_base, evdns_base and
 * listeners (SO_REUSEPORT sockets bound to the same addresses, so the kernel spreads
 * connections over the workers). Workers record every flow into the audit ring. */
#ifndef VIGIL_PROXY_PROXY_H
#define VIGIL_PROXY_PROXY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "audit/audit.h"

#define PROXY_VERSION "0.1.0"

struct proxy_timeouts {
    unsigned header_read_ms;       /* from a request's first byte (or accept) to its last header byte: 408 */
    unsigned connect_ms;           /* TCP connect to the upstream: 504 */
    unsigned upstream_response_ms; /* upstream silent while a response is awaited or streamed: 504 */
    unsigned idle_tunnel_ms;       /* no byte either way in a CONNECT tunnel: closed */
    unsigned client_idle_ms;       /* keep-alive client connection with no request */
    unsigned client_hello_ms;      /* CONNECT: after the 200, how long the ClientHello may take */
    unsigned drain_ms;             /* on SIGTERM, how long in-flight flows may take */
};

struct proxy_policy;
struct proxy_auth;
struct proxy_tls;

/* A loaded configuration. Immutable once parsed and shared between threads by reference:
 * each worker holds the one its new flows use, each connection the one its flow started
 * with, so a reload never changes the policy under a flow in progress. */
struct proxy_config {
    char **listen; /* "HOST:PORT" or "[V6]:PORT" */
    size_t nlisten;
    unsigned workers; /* 0 = one per core */
    char *data_dir;
    struct proxy_timeouts timeouts;
    size_t max_header_bytes; /* request line + headers: 431 above it */
    unsigned max_headers;    /* header count: 431 above it */
    unsigned dns_timeout_ms;
    unsigned dns_attempts;
    size_t ring_slots;
    enum audit_overflow overflow;
    char **header_include; /* audit.headers.include: record only these (empty: all) */
    size_t header_include_n;
    char **header_exclude; /* audit.headers.exclude: never record these */
    size_t header_exclude_n;
    json_t *sinks;   /* the "sinks" array, opened through sinks/'s registry by main */
    char version[33]; /* hex BLAKE2b-128 of the canonical (sorted, compact) config JSON */
    json_t *root;    /* the whole document */
    char *path;      /* the file it came from, NULL for the embedded default */
    struct proxy_policy *policy; /* rule groups and proxy configurations, compiled */
    struct proxy_auth *auth;     /* proxy authentication, or NULL when not configured */
    struct proxy_tls *tls;       /* TLS interception (the "tls" section), or NULL */
    int auth_required;           /* no valid credentials: 407 */
    char *admin_listen;          /* "admin.listen": the admin endpoint's "IP:PORT", NULL: off */
    int admin_allow_remote;      /* "admin.allow_remote": a non-loopback admin address is accepted */
    char *user;                  /* "user": started as root, run as this user once bound; NULL: stay */
    _Atomic int refs;
};

/* The embedded default configuration (JSON text). */
const char *proxy_config_default_text(void);

/* Parses and validates <text> (<len> bytes). Returns a config, or NULL with one line per
 * error in <err> ("timeouts.connect_ms: must be a positive integer"), each naming the JSON
 * path. Keys that are absent take the embedded defaults. Caller frees with
 * proxy_config_free(). */
struct proxy_config *proxy_config_parse(const char *text, size_t len, char *err, size_t errlen);

/* Reads <path> and parses it as above; errors are prefixed with nothing but name the path. */
struct proxy_config *proxy_config_load(const char *path, char *err, size_t errlen);

void proxy_config_ref(struct proxy_config *c);   /* any thread */
void proxy_config_unref(struct proxy_config *c); /* frees at zero; NULL does nothing */
void proxy_config_free(struct proxy_config *c);  /* = unref, for the single owner at start-up */

/* Adds "HOST:PORT" to the listen list, replacing the configured list on the first call
 * after a load (command-line overrides). 0, or -1 with <err>. */
int proxy_config_override_listen(struct proxy_config *c, const char *addr, int first, char *err, size_t errlen);
int proxy_config_override_data_dir(struct proxy_config *c, const char *dir);

struct proxy_server;

/* Binds every listener of <cfg> (borrowed; it must outlive the server) and prepares the
 * workers that record into <ring> (borrowed). NULL with <err> on failure (e.g. a port in
 * use). Prints "listening on ADDR" per bound address through diag_log. */
struct proxy_server *proxy_server_new(const struct proxy_config *cfg, struct audit_ring *ring, char *err,
                                      size_t errlen);

/* Starts the worker threads. 0, or -1 with <err>. */
int proxy_server_start(struct proxy_server *s, char *err, size_t errlen);

/* Stops accepting, lets in-flight flows finish up to cfg->timeouts.drain_ms (then ends
 * them, recording why), and joins the workers. Any thread but a worker's. */
void proxy_server_stop(struct proxy_server *s);
void proxy_server_free(struct proxy_server *s);

/* Hands <cfg> (the caller's reference is taken over) to every worker for the flows that
 * start from now on; flows in progress keep theirs. Main thread. */
void proxy_server_reload(struct proxy_server *s, struct proxy_config *cfg);

/* Records a proxy.config event for <version> with <reason> ("loaded", "reloaded",
 * "rejected: ..."). */
int proxy_emit_config_event(struct audit_ring *ring, const char *version, const char *reason);

#endif
