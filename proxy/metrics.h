/* proxy/metrics.h - the proxy's own counters, per worker, for the admin endpoint's /metrics.
 *
 * Each worker owns a struct proxy_metrics_worker (a member of struct proxy_worker). Only that
 * worker's thread writes it (after the workers are joined, the thread that frees the server
 * may too), so an update is a relaxed load and store of one atomic: no lock, no locked
 * instruction, no syscall on the flow path. The admin thread reads every worker's struct
 * with relaxed loads and sums them; a scrape may see one counter a step ahead of another,
 * never a torn value.
 *
 *   worker 0 ─ metrics ─┐
 *   worker 1 ─ metrics ─┼─► proxy_metrics_sum() (admin thread) ─► /metrics text
 *   worker N ─ metrics ─┘
 *
 * Latencies go into histograms with fixed buckets (PROXY_METRICS_BUCKET_US, in microseconds,
 * exposed in seconds as Prometheus expects). */
#ifndef VIGIL_PROXY_METRICS_H
#define VIGIL_PROXY_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "audit/audit.h"

/* Upper bounds of the latency buckets in microseconds: 0.5 ms .. 10 s, then +Inf. */
#define PROXY_METRICS_NBUCKETS 14
extern const uint64_t proxy_metrics_bucket_us[PROXY_METRICS_NBUCKETS];

#define PROXY_METRICS_NPHASES 4  /* enum audit_phase */
#define PROXY_METRICS_NACTIONS 4 /* enum audit_action */

/* Why flows ended, in classes with a bounded number of label values. */
enum proxy_metrics_end {
    PROXY_END_COMPLETED = 0,
    PROXY_END_CLIENT_CLOSED,
    PROXY_END_UPSTREAM_CLOSED,
    PROXY_END_DENIED,
    PROXY_END_AUTH,        /* auth_required, auth_failed, auth_busy */
    PROXY_END_BAD_REQUEST, /* bad_request.*, headers_too_large */
    PROXY_END_TIMEOUT,     /* header, connect, upstream, idle, TLS handshake timeouts */
    PROXY_END_DNS_FAILURE,
    PROXY_END_CONNECT_FAILED, /* connect_refused, connect_failed */
    PROXY_END_TLS,            /* TLS failures of an intercepted connection */
    PROXY_END_RING_FULL,      /* audit_ring_full */
    PROXY_END_SHUTDOWN,       /* ended by the drain deadline, or aborted */
    PROXY_END_OTHER,
    PROXY_END_COUNT
};

/* The label value of <cls> ("completed", "client_closed", ...). */
const char *proxy_metrics_end_name(enum proxy_metrics_end cls);
/* The class of a flow.end reason ("bad_request.obs_fold" -> PROXY_END_BAD_REQUEST). */
enum proxy_metrics_end proxy_metrics_end_class(const char *reason);

struct proxy_metrics_hist {
    atomic_uint_least64_t bucket[PROXY_METRICS_NBUCKETS + 1]; /* not cumulative; the last is +Inf */
    atomic_uint_least64_t sum_us;
};

struct proxy_metrics_worker {
    atomic_uint_least64_t flows[PROXY_METRICS_NPHASES][PROXY_METRICS_NACTIONS]; /* flow.phase events */
    atomic_uint_least64_t ended[PROXY_END_COUNT];                             /* flows ended, by class */
    atomic_uint_least64_t accepted;  /* client connections accepted */
    atomic_int_least64_t conns;      /* client connections open (a gauge) */
    atomic_int_least64_t tunnels;    /* CONNECT relays running (a gauge) */
    struct proxy_metrics_hist dns;     /* resolver latency of names resolved */
    struct proxy_metrics_hist connect; /* upstream TCP connect latency */
    char pad[64];                      /* keeps the next worker's counters off this one's cache lines */
};

struct proxy_worker;

/* Worker thread of <w> only. A flow.phase event was recorded for <phase> with <action>. */
void proxy_metrics_phase(struct proxy_worker *w, enum audit_phase phase, enum audit_action action);
/* A client connection was accepted (+1) or closed (-1). */
void proxy_metrics_conn(struct proxy_worker *w, int delta);
/* A CONNECT relay started (+1) or stopped (-1). */
void proxy_metrics_tunnel(struct proxy_worker *w, int delta);
/* A flow ended with <reason> (its flow.end reason; borrowed for the call). */
void proxy_metrics_flow_end(struct proxy_worker *w, const char *reason);
/* A name took <us> microseconds to resolve. */
void proxy_metrics_dns_latency(struct proxy_worker *w, uint64_t us);
/* An upstream TCP connection took <us> microseconds to establish. */
void proxy_metrics_upstream_connect(struct proxy_worker *w, uint64_t us);

/* The sum over workers, for one scrape. */
struct proxy_metrics_snapshot {
    uint64_t flows[PROXY_METRICS_NPHASES][PROXY_METRICS_NACTIONS];
    uint64_t ended[PROXY_END_COUNT];
    uint64_t accepted;
    int64_t conns;
    int64_t tunnels;
    uint64_t dns_bucket[PROXY_METRICS_NBUCKETS + 1], dns_sum_us;
    uint64_t connect_bucket[PROXY_METRICS_NBUCKETS + 1], connect_sum_us;
};

/* Sums the <n> workers' counters of <workers> (borrowed) into <out>. Any thread, while the
 * workers exist. */
void proxy_metrics_sum(const struct proxy_worker *workers, unsigned n, struct proxy_metrics_snapshot *out);

#endif
