/* proxy/metrics.c - per-worker counters: updates on the worker's loop, sums for the admin thread.
 *
 * A counter has one writer (its worker), so an update is a relaxed load plus a relaxed store:
 * no read-modify-write instruction on the flow path. Readers sum relaxed loads. */
#include <string.h>

#include "proxy/metrics.h"
#include "proxy/proxy-int.h"

const uint64_t proxy_metrics_bucket_us[PROXY_METRICS_NBUCKETS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

static const char *const end_names[PROXY_END_COUNT] = {
    [PROXY_END_COMPLETED] = "completed",
    [PROXY_END_CLIENT_CLOSED] = "client_closed",
    [PROXY_END_UPSTREAM_CLOSED] = "upstream_closed",
    [PROXY_END_DENIED] = "denied",
    [PROXY_END_AUTH] = "auth",
    [PROXY_END_BAD_REQUEST] = "bad_request",
    [PROXY_END_TIMEOUT] = "timeout",
    [PROXY_END_DNS_FAILURE] = "dns_failure",
    [PROXY_END_CONNECT_FAILED] = "connect_failed",
    [PROXY_END_TLS] = "tls",
    [PROXY_END_RING_FULL] = "audit_ring_full",
    [PROXY_END_SHUTDOWN] = "shutdown",
    [PROXY_END_OTHER] = "other",
};

const char *proxy_metrics_end_name(enum proxy_metrics_end cls)
{
    return (unsigned)cls < PROXY_END_COUNT ? end_names[cls] : "other";
}

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

enum proxy_metrics_end proxy_metrics_end_class(const char *r)
{
    static const struct {
        const char *reason;
        enum proxy_metrics_end cls;
    } exact[] = {
        {"completed", PROXY_END_COMPLETED},
        {"client_closed", PROXY_END_CLIENT_CLOSED},
        {"client_error", PROXY_END_CLIENT_CLOSED},
        {"upstream_closed", PROXY_END_UPSTREAM_CLOSED},
        {"upstream_error", PROXY_END_UPSTREAM_CLOSED},
        {"denied", PROXY_END_DENIED},
        {"headers_too_large", PROXY_END_BAD_REQUEST},
        {"dns_failure", PROXY_END_DNS_FAILURE},
        {"connect_refused", PROXY_END_CONNECT_FAILED},
        {"connect_failed", PROXY_END_CONNECT_FAILED},
        {"audit_ring_full", PROXY_END_RING_FULL},
        {"shutdown", PROXY_END_SHUTDOWN},
        {"aborted", PROXY_END_SHUTDOWN},
    };
    if (!r)
        return PROXY_END_OTHER;
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strcmp(r, exact[i].reason) == 0)
            return exact[i].cls;
    if (starts(r, "bad_request"))
        return PROXY_END_BAD_REQUEST;
    if (starts(r, "auth_"))
        return PROXY_END_AUTH;
    if (ends(r, "_timeout"))
        return PROXY_END_TIMEOUT;
    if (strstr(r, "tls"))
        return PROXY_END_TLS;
    return PROXY_END_OTHER;
}

/* One writer: a plain increment of the atomic is enough. */
static inline void add_u(atomic_uint_least64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void add_i(atomic_int_least64_t *c, int64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static void observe(struct proxy_metrics_hist *h, uint64_t us)
{
    size_t b = 0;
    while (b < PROXY_METRICS_NBUCKETS && us > proxy_metrics_bucket_us[b])
        b++;
    add_u(&h->bucket[b], 1);
    add_u(&h->sum_us, us);
}

void proxy_metrics_phase(struct proxy_worker *w, enum audit_phase phase, enum audit_action action)
{
    if ((unsigned)phase < PROXY_METRICS_NPHASES && (unsigned)action < PROXY_METRICS_NACTIONS)
        add_u(&w->metrics.flows[phase][action], 1);
}

void proxy_metrics_conn(struct proxy_worker *w, int delta)
{
    if (delta > 0)
        add_u(&w->metrics.accepted, 1);
    add_i(&w->metrics.conns, delta);
}

void proxy_metrics_tunnel(struct proxy_worker *w, int delta)
{
    add_i(&w->metrics.tunnels, delta);
}

void proxy_metrics_flow_end(struct proxy_worker *w, const char *reason)
{
    add_u(&w->metrics.ended[proxy_metrics_end_class(reason)], 1);
}

void proxy_metrics_dns_latency(struct proxy_worker *w, uint64_t us)
{
    observe(&w->metrics.dns, us);
}

void proxy_metrics_upstream_connect(struct proxy_worker *w, uint64_t us)
{
    observe(&w->metrics.connect, us);
}

void proxy_metrics_sum(const struct proxy_worker *workers, unsigned n, struct proxy_metrics_snapshot *out)
{
#define LD(x) atomic_load_explicit((x), memory_order_relaxed)
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < n; i++) {
        const struct proxy_metrics_worker *m = &workers[i].metrics;
        for (int p = 0; p < PROXY_METRICS_NPHASES; p++)
            for (int a = 0; a < PROXY_METRICS_NACTIONS; a++)
                out->flows[p][a] += LD(&m->flows[p][a]);
        for (int e = 0; e < PROXY_END_COUNT; e++)
            out->ended[e] += LD(&m->ended[e]);
        out->accepted += LD(&m->accepted);
        out->conns += LD(&m->conns);
        out->tunnels += LD(&m->tunnels);
        for (int b = 0; b <= PROXY_METRICS_NBUCKETS; b++) {
            out->dns_bucket[b] += LD(&m->dns.bucket[b]);
            out->connect_bucket[b] += LD(&m->connect.bucket[b]);
        }
        out->dns_sum_us += LD(&m->dns.sum_us);
        out->connect_sum_us += LD(&m->connect.sum_us);
    }
#undef LD
}
