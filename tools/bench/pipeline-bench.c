/* tools/bench/pipeline-bench.c - pipeline throughput with the redaction stage on and off.
 *
 *   build/bin/pipeline-bench [SECONDS] [EVENTS]      (defaults 3 and 4096)
 *
 * Builds EVENTS synthetic events of the mix the pipeline sees after interception (host, path,
 * query, 8 to 12 request headers, 4 to 6 response headers, a reason; about one event in four
 * carries a secret: a bearer JWT, a session cookie, an API key, an e-mail or a token in the
 * query, a card number in the path, a userinfo Referer, a Set-Cookie), then for each mode runs
 * the real pipeline (ring -> redaction -> serialize -> chain -> queue) into a null sink for
 * SECONDS while a producer thread keeps the ring fed:
 *
 *   off     no redaction stage
 *   on      the stage with the default detectors (what vigil runs by default)
 *   sealed  the stage keeping pii.* and credential.bearer for two provisioned roles
 *
 * It prints records/s per second of the pipeline thread's own CPU time (read from
 * /proc/self/task/TID/schedstat, so other threads and processes do not deflate it: this is
 * the one-core figure), records/s of wall time, the share of a core the pipeline thread got,
 * and the ratio of each mode to "off". The key ring and role keys live in a temporary
 * directory removed on exit.
 *
 * Target (issue 5): redaction never the bottleneck below 200,000 events/s on one core. */
#include <dirent.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <pthread.h>
#include <sodium.h>

#include "audit/audit.h"
#include "audit/sink.h"
#include "redact/redact.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

#define PICK(a) (a[rnd() % (sizeof(a) / sizeof(a[0]))])

static const char *const hosts[] = {"api.github.com", "registry.npmjs.org", "pypi.org", "s3.eu-west-1.amazonaws.com",
                                    "hooks.slack.com", "api.stripe.com", "login.microsoftonline.com",
                                    "www.googleapis.com", "updates.example-vendor.net", "telemetry.internal.example"};
static const char *const paths[] = {"/", "/v1/objects/7f3a9c2e-41d2-4b8e-9a61-2f0c5e7d8b11", "/repos/acme/widgets/pulls",
                                    "/simple/requests/", "/api/v2/users/12345/orders", "/static/js/app.4f9c2a1b.js",
                                    "/oauth2/v2.0/token", "/storage/v1/b/bucket/o", "/healthz",
                                    "/services/data/v58.0/query"};
static const char *const agents[] = {"curl/8.5.0", "python-requests/2.31.0", "Go-http-client/1.1",
                                     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                                     "Chrome/120.0 Safari/537.36",
                                     "aws-sdk-java/2.20.0 Linux/5.15 OpenJDK_64-Bit_Server_VM/17"};
static const char *const ctypes[] = {"application/json", "text/html; charset=utf-8", "application/octet-stream",
                                     "application/x-www-form-urlencoded", "image/png"};
static const char jwt[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0."
                          "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

struct text {
    char buf[4096];
    size_t len;
};

static void addf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void addf(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(t->buf) - t->len)
        t->len += (size_t)n;
}

/* One post_response event of the mix. */
static void make_event(struct audit_event *ev)
{
    int s = rnd() % 4 == 0;
    unsigned which = rnd() % 8;
    struct text path = {.len = 0}, query = {.len = 0}, req = {.len = 0}, resp = {.len = 0};
    const char *host = PICK(hosts), *reason = "completed";

    audit_event_init(ev, AUDIT_EVENT_FLOW_PHASE);
    audit_flow_id_new(ev->flow_id);
    ev->flags = AUDIT_F_FLOW | AUDIT_F_CLIENT | AUDIT_F_REQUEST | AUDIT_F_DESTINATION | AUDIT_F_RESPONSE |
                AUDIT_F_RULE | AUDIT_F_TLS;
    ev->phase = AUDIT_PHASE_POST_RESPONSE;
    ev->action = AUDIT_ACTION_ALLOW;
    ev->client = (struct audit_ip){.family = 4, .addr = {10, 20, 1, (uint8_t)rnd()}, .port = (uint16_t)rnd()};
    ev->destination = (struct audit_ip){.family = 4, .addr = {93, 184, 216, 34}, .port = 443};
    ev->request_port = 443;
    ev->status = 200;
    ev->content_length = rnd() % 100000;
    ev->tls_bits = AUDIT_TLS_INTERCEPTED;
    if (s && which == 0)
        addf(&path, "/v1/customers/4111111111111111/charges");
    else
        addf(&path, "%s", PICK(paths));
    if (s && which == 1)
        addf(&query, "q=widgets&email=jane.doe%%40example.com&token=%08x%08x", rnd(), rnd());
    else if (rnd() % 2)
        addf(&query, "page=%u&per_page=50", rnd() % 100);
    addf(&req, "host\t%s\nuser-agent\t%s\naccept\t*/*\naccept-encoding\tgzip, deflate, br\n", host, PICK(agents));
    addf(&req, "x-request-id\t%08x-%04x-%04x-%04x-%08x%04x\n", rnd(), rnd() & 0xffff, rnd() & 0xffff,
         rnd() & 0xffff, rnd(), rnd() & 0xffff);
    addf(&req, "content-type\t%s\ncontent-length\t%u\n", PICK(ctypes), rnd() % 100000);
    if (s && which == 2)
        addf(&req, "authorization\tBearer %s\n", jwt);
    else if (rnd() % 3 == 0)
        addf(&req, "authorization\tBearer %08x%08x%08x%08x\n", rnd(), rnd(), rnd(), rnd());
    if (s && which == 3)
        addf(&req, "cookie\t_ga=GA1.2.%u.%u; session=%08x%08x%08x; theme=dark\n", rnd(), rnd(), rnd(), rnd(), rnd());
    if (s && which == 4)
        addf(&req, "x-api-key\tsk_live_%08x%08x%08x\n", rnd(), rnd(), rnd());
    if (s && which == 5)
        addf(&req, "referer\thttps://admin:pa55w0rd@intranet.example.com/dashboard?tab=%u\n", rnd() % 9);
    else
        addf(&req, "referer\thttps://app.example.com/dashboard?tab=%u\n", rnd() % 9);
    addf(&resp, "content-type\t%s\nserver\tnginx/1.25.3\ncache-control\tprivate, max-age=%u\n", PICK(ctypes),
         rnd() % 3600);
    addf(&resp, "date\tTue, 26 Nov 2024 16:30:%02u GMT\n", rnd() % 60);
    if (s && which == 6)
        addf(&resp, "set-cookie\tsid=%08x%08x; Path=/; HttpOnly; Secure\n", rnd(), rnd());
    if (s && which == 7)
        reason = "upstream said: contact ops@example.com or +1 415 555 2671";
    audit_event_set_str(ev, AUDIT_STR_METHOD, "GET", 3);
    audit_event_set_str(ev, AUDIT_STR_SCHEME, "https", 5);
    audit_event_set_str(ev, AUDIT_STR_HOST, host, strlen(host));
    audit_event_set_str(ev, AUDIT_STR_PATH, path.buf, path.len);
    if (query.len > 0)
        audit_event_set_str(ev, AUDIT_STR_QUERY, query.buf, query.len);
    audit_event_set_str(ev, AUDIT_STR_CONTENT_TYPE, "application/json", 16);
    audit_event_set_str(ev, AUDIT_STR_REASON, reason, strlen(reason));
    audit_event_set_str(ev, AUDIT_STR_CONFIG_VERSION, "9f86d081884c7d659a2feaa0c55ad015", 32);
    audit_event_set_str(ev, AUDIT_STR_RULE_GROUP, "baseline", 8);
    audit_event_set_str(ev, AUDIT_STR_RULE_ID, "allow-vendors", 13);
    audit_event_set_str(ev, AUDIT_STR_LISTENER, "10.0.0.1:3128", 13);
    audit_event_set_str(ev, AUDIT_STR_TLS_SNI, host, strlen(host));
    audit_event_set_str(ev, AUDIT_STR_TLS_VERSION, "TLSv1.3", 7);
    audit_event_set_str(ev, AUDIT_STR_TLS_CIPHER, "TLS_AES_128_GCM_SHA256", 22);
    audit_event_set_str(ev, AUDIT_STR_REQ_HEADERS, req.buf, req.len);
    audit_event_set_str(ev, AUDIT_STR_RESP_HEADERS, resp.buf, resp.len);
}

/* ---- the null sink ---- */

static _Atomic uint64_t sunk, sunk_bytes;

static enum sink_result null_write(struct sink *s, const struct sink_record *recs, size_t n)
{
    uint64_t b = 0;

    for (size_t i = 0; i < n; i++)
        b += recs[i].len;
    atomic_fetch_add(&sunk, n);
    atomic_fetch_add(&sunk_bytes, b);
    return SINK_OK;
}

static void null_tick(struct sink *s, int64_t now_us)
{
}

static int null_flush(struct sink *s, int timeout_ms)
{
    return 0;
}

static void null_close(struct sink *s)
{
}

static const struct sink_ops null_ops = {
    .type = "null", .write = null_write, .tick = null_tick, .flush = null_flush, .close = null_close,
};

/* ---- the producer ---- */

struct producer {
    struct audit_ring *ring;
    const struct audit_event *evs;
    size_t nev;
    _Atomic int stop;
    uint64_t emitted;
};

static void *produce(void *arg)
{
    struct producer *pr = arg;
    size_t cap = audit_ring_capacity(pr->ring), i = 0;

    while (!atomic_load(&pr->stop)) {
        /* keep the ring fed, never full: a failed push would count as lost */
        if (audit_ring_depth(pr->ring) + 64 > cap) {
            sched_yield();
            continue;
        }
        audit_emit(pr->ring, &pr->evs[i]);
        i = (i + 1) % pr->nev;
        pr->emitted++;
    }
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds the pipeline thread ("vigil-audit") has run, from its schedstat; -1 if not found. */
static double pipeline_cpu_s(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    double cpu = -1;

    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        char path[300], comm[64] = "";
        unsigned long long ns;
        FILE *f;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        if (fgets(comm, sizeof(comm), f) == NULL)
            comm[0] = '\0';
        fclose(f);
        if (strncmp(comm, "vigil-audit", 11) != 0)
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", de->d_name);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        if (fscanf(f, "%llu", &ns) == 1)
            cpu = (double)ns / 1e9;
        fclose(f);
    }
    closedir(d);
    return cpu;
}

struct figures {
    double per_cpu;  /* records per CPU second of the pipeline thread */
    double per_wall; /* records per second of wall time */
    double core;     /* share of a core the pipeline thread got */
    double bytes;    /* serialized bytes per record */
};

static int run(const char *label, const char *keys_dir, json_t *conf, const struct audit_event *evs, size_t nev,
               double seconds, struct figures *fig)
{
    struct audit_ring *ring = audit_ring_new(1 << 16, AUDIT_OVERFLOW_DROP);
    struct sink s = {.ops = &null_ops, .name = "null"}, *sinks[] = {&s};
    struct audit_pipeline_opts o = {.keys_dir = keys_dir, .redaction = conf, .idle_sleep_us = 50};
    struct audit_pipeline *p;
    struct producer pr = {.ring = ring, .evs = evs, .nev = nev};
    struct audit_redaction_stats st;
    pthread_t th;
    char err[1024];
    uint64_t n0, n1, b0, b1;
    double t0, t1, c0, c1;

    atomic_init(&pr.stop, 0);
    p = audit_pipeline_new(ring, sinks, 1, &o, err, sizeof(err));
    if (p == NULL || audit_pipeline_start(p, err, sizeof(err)) == -1) {
        fprintf(stderr, "pipeline: %s\n", err);
        return -1;
    }
    pthread_create(&th, NULL, produce, &pr);
    /* warm up: buffers grown, caches hot */
    while (atomic_load(&sunk) < 20000)
        usleep(1000);
    n0 = atomic_load(&sunk);
    b0 = atomic_load(&sunk_bytes);
    t0 = now_s();
    c0 = pipeline_cpu_s();
    do {
        usleep(20000);
        t1 = now_s();
    } while (t1 - t0 < seconds);
    n1 = atomic_load(&sunk);
    b1 = atomic_load(&sunk_bytes);
    c1 = pipeline_cpu_s();
    atomic_store(&pr.stop, 1);
    pthread_join(th, NULL);
    audit_pipeline_stop(p);
    fig->per_wall = (double)(n1 - n0) / (t1 - t0);
    fig->per_cpu = c0 >= 0 && c1 > c0 ? (double)(n1 - n0) / (c1 - c0) : 0;
    fig->core = c0 >= 0 ? (c1 - c0) / (t1 - t0) : 0;
    fig->bytes = n1 > n0 ? (double)(b1 - b0) / (double)(n1 - n0) : 0;
    printf("%-7s %9.0f records/s per pipeline-thread CPU second  %9.0f records/s wall  (%3.0f%% of a core)  "
           "%5.0f bytes/record",
           label, fig->per_cpu, fig->per_wall, 100 * fig->core, fig->bytes);
    if (audit_pipeline_redaction_stats(p, &st) == 0)
        printf("  %.2f redactions/event, %.2f sealed/event, %llu keys, %llu lost", (double)st.redactions / st.events,
               (double)st.sealed / st.events, (unsigned long long)st.keys, (unsigned long long)st.lost);
    printf("\n");
    audit_pipeline_free(p);
    audit_ring_free(ring);
    atomic_store(&sunk, 0);
    atomic_store(&sunk_bytes, 0);
    return 0;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    size_t nev = argc > 2 ? (size_t)atol(argv[2]) : 4096;
    char dir[] = "/tmp/pipeline-bench-XXXXXX", keys[64], roles[96], path[128], err[256], cmd[128];
    uint8_t pk[REDACT_ROLE_KEY_BYTES];
    char b64[2][64];
    struct audit_event *evs;
    struct figures off, on, sealed;
    json_t *conf;
    FILE *f;
    int rc = 1;

    if (seconds <= 0 || nev == 0) {
        fprintf(stderr, "usage: %s [SECONDS] [EVENTS]\n", argv[0]);
        return 2;
    }
    if (sodium_init() < 0 || mkdtemp(dir) == NULL) {
        perror("setup");
        return 1;
    }
    setenv("VIGIL_LOG_LEVEL", "warn", 0);
    snprintf(keys, sizeof(keys), "%s/keys", dir);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/role%d.key", dir, i);
        if (redact_role_key_create(path, pk, err, sizeof(err)) == -1) {
            fprintf(stderr, "%s\n", err);
            goto out;
        }
        sodium_bin2base64(b64[i], sizeof(b64[i]), pk, sizeof(pk), sodium_base64_VARIANT_ORIGINAL);
    }
    snprintf(roles, sizeof(roles), "%s/roles.json", dir);
    if ((f = fopen(roles, "w")) == NULL)
        goto out;
    fprintf(f,
            "{\"version\": 1, \"roles\": [{\"name\": \"dlp\", \"public_key\": \"%s\", \"reveal\": [\"pii.*\"]},"
            "{\"name\": \"ir\", \"public_key\": \"%s\", \"reveal\": [\"credential.*\", \"pii.*\"]}]}",
            b64[0], b64[1]);
    fclose(f);
    evs = malloc(nev * sizeof(*evs));
    if (evs == NULL)
        goto out;
    size_t bytes = 0;
    for (size_t i = 0; i < nev; i++) {
        make_event(&evs[i]);
        bytes += evs[i].text_used;
    }
    printf("pipeline-bench: %zu events of the mix (%.0f bytes of strings each on average), %.1f s per mode, "
           "one pipeline thread, null sink\n",
           nev, (double)bytes / (double)nev, seconds);
    if (run("off", NULL, NULL, evs, nev, seconds, &off) == -1)
        goto out_evs;
    conf = json_pack("{s:n}", "roles_file");
    if (run("on", keys, conf, evs, nev, seconds, &on) == -1)
        goto out_conf;
    json_decref(conf);
    conf = json_pack("{s:s, s:[s, s]}", "roles_file", roles, "keep_originals", "pii.*", "credential.bearer");
    if (run("sealed", keys, conf, evs, nev, seconds, &sealed) == -1)
        goto out_conf;
    printf("ratio on/off %.2f, sealed/off %.2f (per pipeline-thread CPU second); target: redaction never the "
           "bottleneck below 200000 events/s on one core: %s\n",
           on.per_cpu / off.per_cpu, sealed.per_cpu / off.per_cpu,
           on.per_cpu >= 200000 && sealed.per_cpu >= 200000 ? "met" : "NOT met");
    rc = 0;
out_conf:
    json_decref(conf);
out_evs:
    free(evs);
out:
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return rc;
}
