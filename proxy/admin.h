/* proxy/admin.h - the admin endpoint: /metrics, /healthz, /readyz over HTTP (libevent evhttp).
 *
 * Off unless configured ("admin": {"listen": "127.0.0.1:9090"} or `vigil --admin HOST:PORT`).
 * It runs on its own thread and event_base, so a busy or stuck worker never delays a scrape,
 * and it only reads: per-worker counters (proxy/metrics.h), the ring's and the pipeline's
 * atomics, and each sink's health and stats through its ops (which any thread may call).
 *
 *   GET /metrics  Prometheus text exposition 0.0.4
 *   GET /healthz  200 "ok" while the admin loop runs
 *   GET /readyz   200 "ready" when every sink with "required": true is SINK_HEALTHY and the
 *                 process is not draining; else 503 with one line per reason
 *   anything else 404 (405 for a method other than GET or HEAD) */
#ifndef VIGIL_PROXY_ADMIN_H
#define VIGIL_PROXY_ADMIN_H

#include <stddef.h>

#include "audit/audit.h"
#include "audit/sink.h"
#include "proxy/proxy.h"

struct proxy_admin;

/* What /metrics and /readyz read. Everything is borrowed and must outlive the admin
 * endpoint (free it first). <server>, <pipeline> may be NULL (tests). */
struct proxy_admin_sources {
    const struct proxy_server *server;
    struct audit_ring *ring;
    const struct audit_pipeline *pipeline;
    struct sink *const *sinks; /* in the order given to audit_pipeline_new() */
    size_t nsinks;
};

/* Checks that <addr> is "IP:PORT" or "[IPv6]:PORT" and, unless <allow_remote>, a loopback
 * address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104). 0, or -1 with the reason in <err>. */
int proxy_admin_check_listen(const char *addr, int allow_remote, char *err, size_t errlen);

/* Binds <addr> (checked as above) and prepares the endpoint; nothing is served until
 * proxy_admin_start(). <cfg> is the config in force (a reference is taken). Prints
 * "admin endpoint on http://ADDR/" through diag_log. NULL with <err> on failure. Main thread. */
struct proxy_admin *proxy_admin_new(const char *addr, int allow_remote, const struct proxy_admin_sources *src,
                                    struct proxy_config *cfg, char *err, size_t errlen);

/* Starts the admin thread. 0, or -1 with <err>. */
int proxy_admin_start(struct proxy_admin *a, char *err, size_t errlen);

/* The config new flows use from now on (a reload): /metrics reports its version and its TLS
 * leaf cache. Takes a reference to <cfg>. Any thread but the admin thread. */
void proxy_admin_set_config(struct proxy_admin *a, struct proxy_config *cfg);

/* SIGTERM: /readyz answers 503 "draining" from now on. Any thread. */
void proxy_admin_set_draining(struct proxy_admin *a);

/* Stops the thread (if started), closes the listener and frees <a>. NULL does nothing. */
void proxy_admin_free(struct proxy_admin *a);

#endif
