/* proxy/admin.c - the admin endpoint: evhttp on its own thread and event_base.
 *
 * Everything it serves is read, never written: the workers' counters (relaxed atomics, see
 * proxy/metrics.h), the ring's and the pipeline's counters (atomics), each sink's health and
 * stats through its ops (any thread may call them) and the mint's cache counters (its own
 * mutex, held for a load). The config it reports is a reference swapped under a mutex on
 * reload, so a scrape never sees a freed config.
 *
 * The listener is bound by proxy_admin_new() on the main thread, before privileges are
 * dropped; the thread starts later. Stopping is the workers' pattern: an eventfd the main
 * thread writes, read by the admin loop, which then exits. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "audit/diag.h"
#include "proxy/admin.h"
#include "proxy/metrics.h"
#include "proxy/mint.h"
#include "proxy/proxy-int.h"
#include "proxy/tls.h"

#define ADMIN_TIMEOUT_S 10           /* a scrape client that stalls longer is cut */
#define ADMIN_MAX_HEADERS_SIZE 8192
#define ADMIN_MAX_BODY_SIZE 0        /* GET only: no request body */
#define ADMIN_CONTENT_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"

struct proxy_admin {
    struct event_base *base;
    struct evhttp *http;
    int stop_fd;
    struct event *stop_ev;
    pthread_t thread;
    int started;
    struct proxy_admin_sources src;
    pthread_mutex_t mu;
    struct proxy_config *cfg; /* a reference; under <mu> */
    atomic_int draining;
    int64_t start_us; /* wall clock, for vigil_start_time_seconds */
    char name[80];    /* the bound address */
};

static int is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return 0;
}

int proxy_admin_check_listen(const char *addr, int allow_remote, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!addr || proxy_parse_hostport(addr, &ss, &sl) == -1) {
        snprintf(err, errlen, "%s: must be \"IP:PORT\" or \"[IPv6]:PORT\"", addr ? addr : "(null)");
        return -1;
    }
    if (!allow_remote && !is_loopback(&ss)) {
        snprintf(err, errlen,
                 "%s is not a loopback address: the admin endpoint is unauthenticated; set "
                 "\"admin\": {\"allow_remote\": true} to expose it anyway",
                 addr);
        return -1;
    }
    return 0;
}

/* ---- Prometheus text exposition 0.0.4 ---- */

static void head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped as the format requires. */
static void label_value(struct evbuffer *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            evbuffer_add(b, "\\\\", 2);
        else if (*v == '"')
            evbuffer_add(b, "\\\"", 2);
        else if (*v == '\n')
            evbuffer_add(b, "\\n", 2);
        else
            evbuffer_add(b, v, 1);
    }
}

static void sink_sample(struct evbuffer *b, const char *name, const struct sink *s, uint64_t v)
{
    evbuffer_add_printf(b, "%s{sink=\"", name);
    label_value(b, s->name ? s->name : "");
    evbuffer_add_printf(b, "\",type=\"");
    label_value(b, s->ops->type);
    evbuffer_add_printf(b, "\"} %" PRIu64 "\n", v);
}

static void histogram(struct evbuffer *b, const char *name, const char *help, const uint64_t *bucket,
                      uint64_t sum_us)
{
    uint64_t cum = 0;
    head(b, name, "histogram", help);
    for (int i = 0; i < PROXY_METRICS_NBUCKETS; i++) {
        cum += bucket[i];
        evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, (double)proxy_metrics_bucket_us[i] / 1e6,
                            cum);
    }
    cum += bucket[PROXY_METRICS_NBUCKETS];
    evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    evbuffer_add_printf(b, "%s_sum %" PRIu64 ".%06" PRIu64 "\n", name, sum_us / 1000000, sum_us % 1000000);
    evbuffer_add_printf(b, "%s_count %" PRIu64 "\n", name, cum);
}

static struct proxy_config *config_get(struct proxy_admin *a)
{
    pthread_mutex_lock(&a->mu);
    struct proxy_config *c = a->cfg;
    if (c)
        proxy_config_ref(c);
    pthread_mutex_unlock(&a->mu);
    return c;
}

static const char *const health_names[] = {"healthy", "degraded", "down"};

#define ADMIN_MAX_CLASSES 129 /* the pipeline keeps 128 classes and "other" */

/* The redaction stage's totals and its redactions by class; nothing without a stage. */
static void render_redaction(const struct audit_pipeline *p, struct evbuffer *b)
{
    struct audit_redaction_stats rs;
    if (audit_pipeline_redaction_stats(p, &rs) == -1)
        return;
    static const struct {
        const char *name, *help;
        size_t off;
    } totals[] = {
        {"vigil_redaction_events_total", "Events that passed the redaction stage.",
         offsetof(struct audit_redaction_stats, events)},
        {"vigil_redaction_unscannable_total", "Fields tokenized whole (too long, scanner error, out of memory).",
         offsetof(struct audit_redaction_stats, unscannable)},
        {"vigil_redaction_failures_total", "Redaction calls that ran out of memory.",
         offsetof(struct audit_redaction_stats, failures)},
        {"vigil_redaction_lost_total", "Events not written because the redaction stage failed (never unredacted).",
         offsetof(struct audit_redaction_stats, lost)},
        {"vigil_redaction_sealed_total", "Originals sealed for the roles allowed to reveal them.",
         offsetof(struct audit_redaction_stats, sealed)},
        {"vigil_redaction_seal_dropped_total", "Originals of kept classes that could not be sealed.",
         offsetof(struct audit_redaction_stats, seal_dropped)},
        {"vigil_redaction_keys_total", "Data keys made for sealed originals (one audit.key record each).",
         offsetof(struct audit_redaction_stats, keys)},
    };
    for (size_t i = 0; i < sizeof(totals) / sizeof(totals[0]); i++) {
        uint64_t v;
        memcpy(&v, (const char *)&rs + totals[i].off, sizeof(v));
        head(b, totals[i].name, "counter", totals[i].help);
        evbuffer_add_printf(b, "%s %" PRIu64 "\n", totals[i].name, v);
    }
    struct audit_redaction_count *c = calloc(ADMIN_MAX_CLASSES, sizeof(*c));
    if (!c)
        return;
    size_t n = audit_pipeline_redaction_counts(p, c, ADMIN_MAX_CLASSES);
    if (n > ADMIN_MAX_CLASSES)
        n = ADMIN_MAX_CLASSES;
    head(b, "vigil_redactions_total", "counter", "Values replaced by tokens, by class.");
    for (size_t i = 0; i < n; i++) {
        evbuffer_add_printf(b, "vigil_redactions_total{class=\"");
        label_value(b, c[i].cls ? c[i].cls : "");
        evbuffer_add_printf(b, "\"} %" PRIu64 "\n", c[i].count);
    }
    free(c);
}

static void render_metrics(struct proxy_admin *a, struct evbuffer *b)
{
    const struct proxy_admin_sources *src = &a->src;
    struct proxy_metrics_snapshot m;
    struct proxy_config *cfg = config_get(a);

    head(b, "vigil_build_info", "gauge", "The vigil version running (value 1).");
    evbuffer_add_printf(b, "vigil_build_info{version=\"%s\"} 1\n", PROXY_VERSION);
    head(b, "vigil_config_info", "gauge", "The version (hash) of the config new flows use (value 1).");
    evbuffer_add_printf(b, "vigil_config_info{version=\"%s\"} 1\n", cfg ? cfg->version : "");
    head(b, "vigil_start_time_seconds", "gauge", "When the process started, seconds since the epoch.");
    evbuffer_add_printf(b, "vigil_start_time_seconds %" PRId64 "\n", a->start_us / 1000000);

    /* the proxy: per-worker counters, summed */
    unsigned nworkers = src->server ? src->server->nworkers : 0;
    proxy_metrics_sum(src->server ? src->server->workers : NULL, nworkers, &m);
    head(b, "vigil_workers", "gauge", "Worker threads.");
    evbuffer_add_printf(b, "vigil_workers %u\n", nworkers);
    head(b, "vigil_flows_total", "counter",
         "Policy phase decisions recorded (flow.phase events), by phase and action.");
    for (int p = AUDIT_PHASE_PRE_DNS; p < PROXY_METRICS_NPHASES; p++)
        for (int act = AUDIT_ACTION_NONE; act < PROXY_METRICS_NACTIONS; act++) {
            const char *an = audit_action_name((enum audit_action)act);
            if (!an && m.flows[p][act] == 0)
                continue; /* "none" appears only if it ever happened */
            evbuffer_add_printf(b, "vigil_flows_total{phase=\"%s\",action=\"%s\"} %" PRIu64 "\n",
                                audit_phase_name((enum audit_phase)p), an ? an : "none", m.flows[p][act]);
        }
    head(b, "vigil_flows_ended_total", "counter", "Flows ended (flow.end), by class of reason.");
    for (int e = 0; e < PROXY_END_COUNT; e++)
        evbuffer_add_printf(b, "vigil_flows_ended_total{reason=\"%s\"} %" PRIu64 "\n",
                            proxy_metrics_end_name((enum proxy_metrics_end)e), m.ended[e]);
    head(b, "vigil_connections_accepted_total", "counter", "Client connections accepted.");
    evbuffer_add_printf(b, "vigil_connections_accepted_total %" PRIu64 "\n", m.accepted);
    head(b, "vigil_connections_active", "gauge", "Client connections open.");
    evbuffer_add_printf(b, "vigil_connections_active %" PRId64 "\n", m.conns);
    head(b, "vigil_tunnels_active", "gauge", "CONNECT tunnels relaying bytes.");
    evbuffer_add_printf(b, "vigil_tunnels_active %" PRId64 "\n", m.tunnels);
    histogram(b, "vigil_dns_resolve_seconds", "Time to resolve a destination name.", m.dns_bucket, m.dns_sum_us);
    histogram(b, "vigil_upstream_connect_seconds", "Time to establish an upstream TCP connection.", m.connect_bucket,
              m.connect_sum_us);

    /* the ring */
    if (src->ring) {
        head(b, "vigil_ring_slots", "gauge", "Capacity of the ring between workers and the pipeline, in slots.");
        evbuffer_add_printf(b, "vigil_ring_slots %zu\n", audit_ring_capacity(src->ring));
        head(b, "vigil_ring_depth", "gauge", "Slots in use in the ring.");
        evbuffer_add_printf(b, "vigil_ring_depth %zu\n", audit_ring_depth(src->ring));
        head(b, "vigil_ring_events_total", "counter", "Events put into the ring.");
        evbuffer_add_printf(b, "vigil_ring_events_total %" PRIu64 "\n", audit_ring_total_pushed(src->ring));
        head(b, "vigil_ring_overflows_total", "counter",
             "Ring overflows: events lost (drop) and flows refused (fail_closed).");
        evbuffer_add_printf(b, "vigil_ring_overflows_total{kind=\"lost\"} %" PRIu64 "\n",
                            audit_ring_total_lost(src->ring));
        evbuffer_add_printf(b, "vigil_ring_overflows_total{kind=\"refused\"} %" PRIu64 "\n",
                            audit_ring_total_refused(src->ring));
    }
    if (src->pipeline) {
        head(b, "vigil_records_total", "counter", "Sequence number of the last record the pipeline serialized.");
        evbuffer_add_printf(b, "vigil_records_total %" PRIu64 "\n", audit_pipeline_seq(src->pipeline));
        render_redaction(src->pipeline, b);
    }

    /* the sinks */
    if (src->nsinks > 0) {
        struct sink_stats *st = calloc(src->nsinks, sizeof(*st));
        struct audit_pipeline_sink_stats *ps = calloc(src->nsinks, sizeof(*ps));
        enum sink_health *h = calloc(src->nsinks, sizeof(*h));
        if (st && ps && h) {
            for (size_t i = 0; i < src->nsinks; i++) {
                struct sink *s = src->sinks[i];
                s->ops->stats(s, &st[i]);
                h[i] = s->ops->health(s);
                if (src->pipeline)
                    audit_pipeline_sink_stats(src->pipeline, i, &ps[i]);
            }
#define SINKS(NAME, TYPE, HELP, EXPR)                                                                                  \
    do {                                                                                                               \
        head(b, NAME, TYPE, HELP);                                                                                     \
        for (size_t i = 0; i < src->nsinks; i++)                                                                       \
            sink_sample(b, NAME, src->sinks[i], (EXPR));                                                               \
    } while (0)
            head(b, "vigil_sink_health", "gauge", "Sink health: 1 for the state the sink is in, 0 for the others.");
            for (size_t i = 0; i < src->nsinks; i++)
                for (int k = SINK_HEALTHY; k <= SINK_DOWN; k++) {
                    const struct sink *s = src->sinks[i];
                    evbuffer_add_printf(b, "vigil_sink_health{sink=\"");
                    label_value(b, s->name ? s->name : "");
                    evbuffer_add_printf(b, "\",type=\"");
                    label_value(b, s->ops->type);
                    evbuffer_add_printf(b, "\",state=\"%s\"} %d\n", health_names[k], (int)h[i] == k);
                }
            SINKS("vigil_sink_required", "gauge", "1 if /readyz requires this sink to be healthy.",
                  (uint64_t)(src->sinks[i]->required != 0));
            SINKS("vigil_sink_queued", "gauge", "Records waiting in the sink's pipeline queue.", ps[i].queued);
            SINKS("vigil_sink_pending", "gauge", "Records the sink accepted and has not delivered yet.", st[i].pending);
            SINKS("vigil_sink_delivered_total", "counter", "Records the sink wrote out or its peer acknowledged.",
                  st[i].delivered);
            SINKS("vigil_sink_spooled_total", "counter",
                  "Records put in the sink's disk spool while its peer was away.",
                  st[i].spooled);
            SINKS("vigil_sink_replayed_total", "counter", "Records taken back from the spool and delivered.",
                  st[i].replayed);
            SINKS("vigil_sink_dropped_total", "counter", "Records lost to the sink (on_full drop, failed writes).",
                  ps[i].dropped);
            SINKS("vigil_sink_spilled_total", "counter", "Records spilled to disk under on_full spill.", ps[i].spilled);
            SINKS("vigil_sink_blocked_total", "counter",
                  "Times the pipeline waited for the sink's queue (on_full block).",
                  ps[i].blocked);
#undef SINKS
        }
        free(st);
        free(ps);
        free(h);
    }

    /* TLS interception: the leaf cache of the config in force */
    if (cfg && cfg->tls) {
        uint64_t hits = 0, misses = 0;
        size_t entries = 0;
        proxy_mint_stats(proxy_tls_mint(cfg->tls), &hits, &misses, &entries);
        head(b, "vigil_tls_leaf_cache_hits_total", "counter",
             "Minted leaf certificates found in the cache (since the config was loaded).");
        evbuffer_add_printf(b, "vigil_tls_leaf_cache_hits_total %" PRIu64 "\n", hits);
        head(b, "vigil_tls_leaf_cache_misses_total", "counter",
             "Leaf cache lookups that missed, each followed by a mint (since the config was loaded).");
        evbuffer_add_printf(b, "vigil_tls_leaf_cache_misses_total %" PRIu64 "\n", misses);
        head(b, "vigil_tls_leaf_cache_entries", "gauge", "Leaf certificates in the cache.");
        evbuffer_add_printf(b, "vigil_tls_leaf_cache_entries %zu\n", entries);
    }
    proxy_config_unref(cfg);
}

/* ---- HTTP ---- */

static void reply(struct evhttp_request *req, int code, const char *reason, const char *ctype, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(b, text, strlen(text));
    reply(req, code, reason, "text/plain; charset=utf-8", b);
    evbuffer_free(b);
}

static void serve_readyz(struct proxy_admin *a, struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();
    int ready = 1;
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    if (atomic_load(&a->draining)) {
        ready = 0;
        evbuffer_add_printf(b, "draining\n");
    }
    for (size_t i = 0; i < a->src.nsinks; i++) {
        struct sink *s = a->src.sinks[i];
        if (!s->required)
            continue;
        enum sink_health h = s->ops->health(s);
        if (h == SINK_HEALTHY)
            continue;
        if (ready)
            evbuffer_add_printf(b, "not ready\n");
        ready = 0;
        evbuffer_add_printf(b, "sink %s (%s): %s\n", s->name ? s->name : "", s->ops->type,
                            (unsigned)h <= SINK_DOWN ? health_names[h] : "unknown");
    }
    if (ready)
        evbuffer_add_printf(b, "ready\n");
    reply(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", "text/plain; charset=utf-8", b);
    evbuffer_free(b);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    struct proxy_admin *a = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

    if (!path)
        path = "";
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_text(req, 405, "Method Not Allowed", "method not allowed\n");
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        struct evbuffer *b = evbuffer_new();
        if (!b) {
            evhttp_send_error(req, 500, NULL);
            return;
        }
        render_metrics(a, b);
        reply(req, 200, "OK", ADMIN_CONTENT_TYPE_METRICS, b);
        evbuffer_free(b);
    } else if (strcmp(path, "/healthz") == 0) {
        reply_text(req, 200, "OK", "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        serve_readyz(a, req);
    } else {
        reply_text(req, 404, "Not Found", "not found: /metrics, /healthz, /readyz\n");
    }
}

/* ---- lifecycle ---- */

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_admin *a = arg;
    uint64_t n;
    (void)what;
    if (read(fd, &n, sizeof(n)) == -1 && errno != EAGAIN)
        diag_log(DIAG_WARN, "admin", "stop eventfd: %s", strerror(errno));
    event_base_loopexit(a->base, NULL);
}

static void *admin_main(void *arg)
{
    struct proxy_admin *a = arg;
    event_base_loop(a->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

struct proxy_admin *proxy_admin_new(const char *addr, int allow_remote, const struct proxy_admin_sources *src,
                                    struct proxy_config *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int one = 1, fd = -1;

    if (proxy_admin_check_listen(addr, allow_remote, err, errlen) == -1)
        return NULL;
    proxy_parse_hostport(addr, &ss, &sl);
    struct proxy_admin *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->stop_fd = -1;
    a->src = *src;
    a->start_us = proxy_now_wall_us();
    pthread_mutex_init(&a->mu, NULL);
    if (cfg) {
        proxy_config_ref(cfg);
        a->cfg = cfg;
    }
    a->base = event_base_new();
    a->http = a->base ? evhttp_new(a->base) : NULL;
    a->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!a->http || a->stop_fd == -1) {
        snprintf(err, errlen, "cannot set up the admin endpoint: %s", a->stop_fd == -1 ? strerror(errno) : "libevent");
        goto fail;
    }
    a->stop_ev = event_new(a->base, a->stop_fd, EV_READ, stop_cb, a);
    if (!a->stop_ev || event_add(a->stop_ev, NULL) == -1) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    evhttp_set_timeout(a->http, ADMIN_TIMEOUT_S);
    evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS_SIZE);
    evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY_SIZE);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(a->http, request_cb, a);

    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(err, errlen, "admin %s: socket: %s", addr, strerror(errno));
        goto fail;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sl) == -1 || listen(fd, 64) == -1) {
        snprintf(err, errlen, "admin %s: %s", addr, strerror(errno));
        goto fail;
    }
    sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    proxy_format_sockaddr((struct sockaddr *)&ss, a->name, sizeof(a->name));
    if (!evhttp_accept_socket_with_handle(a->http, fd)) {
        snprintf(err, errlen, "admin %s: cannot accept with evhttp", addr);
        goto fail;
    }
    fd = -1; /* the evhttp owns it now */
    diag_log(DIAG_INFO, "admin", "admin endpoint on http://%s/ (/metrics, /healthz, /readyz)%s", a->name,
             is_loopback(&ss) ? "" : " - not loopback: allow_remote is set");
    return a;
fail:
    if (fd != -1)
        close(fd);
    proxy_admin_free(a);
    return NULL;
}

int proxy_admin_start(struct proxy_admin *a, char *err, size_t errlen)
{
    int rc = pthread_create(&a->thread, NULL, admin_main, a);
    if (rc != 0) {
        snprintf(err, errlen, "admin thread: %s", strerror(rc));
        return -1;
    }
    a->started = 1;
    return 0;
}

void proxy_admin_set_config(struct proxy_admin *a, struct proxy_config *cfg)
{
    if (!a)
        return;
    proxy_config_ref(cfg);
    pthread_mutex_lock(&a->mu);
    struct proxy_config *old = a->cfg;
    a->cfg = cfg;
    pthread_mutex_unlock(&a->mu);
    proxy_config_unref(old);
}

void proxy_admin_set_draining(struct proxy_admin *a)
{
    if (a)
        atomic_store(&a->draining, 1);
}

void proxy_admin_free(struct proxy_admin *a)
{
    if (!a)
        return;
    if (a->started) {
        uint64_t one = 1;
        if (write(a->stop_fd, &one, sizeof(one)) != sizeof(one))
            diag_log(DIAG_ERROR, "admin", "cannot signal the admin thread to stop: %s", strerror(errno));
        pthread_join(a->thread, NULL);
        a->started = 0;
    }
    if (a->http)
        evhttp_free(a->http);
    if (a->stop_ev)
        event_free(a->stop_ev);
    if (a->stop_fd != -1)
        close(a->stop_fd);
    if (a->base)
        event_base_free(a->base);
    proxy_config_unref(a->cfg);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
