/* tools/bench/sink-bench.c - events/s through the pipeline into each sink, the zstd ratio
 * and the bytes written per event, on a realistic event mix.
 *
 *   build/bin/sink-bench [--keep DIR] [EVENTS] [SINK_JSON ...]
 *
 * --keep DIR writes into DIR (a data dir) and leaves it there: the corpus generator of
 * tools/bench/query-bench.sh.
 * With no SINK_JSON it measures a file sink in a temp dir. Each SINK_JSON is one sink's
 * config object, e.g. '{"type":"syslog","transport":"udp","address":"127.0.0.1:5514"}' or
 * '{"type":"kafka","brokers":"127.0.0.1:PORT","topic":"vigil"}' (tools/bench/sink-bench.sh
 * starts the peers and passes them). The mix is what a plain HTTP flow records: pre_dns,
 * pre_request with request headers, post_response with response headers, flow.end; hosts,
 * paths and queries vary. One producer thread pushes as fast as the ring takes them; the
 * figure is events per second of wall time until the pipeline has stopped (all sinks
 * flushed). The redaction stage is off here (its own bench is pipeline-bench). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "audit/audit.h"
#include "sinks/sinks.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set(struct audit_event *ev, enum audit_str f, const char *s)
{
    audit_event_set_str(ev, f, s, strlen(s));
}

static void header(struct audit_event *ev, enum audit_str f, const char *name, const char *value)
{
    const char *m[] = {name, value};
    audit_event_list_add(ev, f, m, 2);
}

/* Event <i> of the mix (four per flow). */
static void make_event(struct audit_event *ev, uint64_t i, const uint8_t flow_id[16])
{
    static const char *const hosts[] = {"api.example.com", "cdn.assets.example.net", "login.example.org",
                                        "updates.vendor.example", "s3.eu-west-1.example.com"};
    char path[96], query[64], host[64];
    unsigned kind = (unsigned)(i % 4), n = (unsigned)(i / 4);
    audit_event_init(ev, kind == 3 ? AUDIT_EVENT_FLOW_END : AUDIT_EVENT_FLOW_PHASE);
    memcpy(ev->flow_id, flow_id, 16);
    ev->flags |= AUDIT_F_FLOW | AUDIT_F_CLIENT | AUDIT_F_REQUEST;
    ev->client.family = 4;
    ev->client.addr[0] = 10;
    ev->client.addr[3] = (uint8_t)(n % 200);
    ev->client.port = (uint16_t)(30000 + n % 30000);
    snprintf(host, sizeof(host), "%s", hosts[n % 5]);
    snprintf(path, sizeof(path), "/v1/items/%u/details", n % 1000);
    snprintf(query, sizeof(query), "page=%u&sort=desc", n % 17);
    set(ev, AUDIT_STR_CONFIG_VERSION, "ad5212fad3c64bfeef1cc5e1e5efe6ba");
    set(ev, AUDIT_STR_LISTENER, "127.0.0.1:3128");
    set(ev, AUDIT_STR_METHOD, n % 7 ? "GET" : "POST");
    set(ev, AUDIT_STR_SCHEME, "http");
    set(ev, AUDIT_STR_HOST, host);
    ev->request_port = 80;
    set(ev, AUDIT_STR_PATH, path);
    set(ev, AUDIT_STR_QUERY, query);
    if (kind < 3) {
        ev->phase = (uint8_t)(kind + 1);
        ev->action = AUDIT_ACTION_ALLOW;
        ev->flags |= AUDIT_F_RULE;
        set(ev, AUDIT_STR_REASON, "default_action");
    }
    if (kind >= 1) {
        ev->flags |= AUDIT_F_DESTINATION;
        ev->destination.family = 4;
        ev->destination.addr[0] = 93;
        ev->destination.addr[1] = 184;
        ev->destination.addr[2] = 216;
        ev->destination.addr[3] = (uint8_t)(n % 250);
        ev->destination.port = 80;
    }
    if (kind == 1) {
        header(ev, AUDIT_STR_REQ_HEADERS, "host", host);
        header(ev, AUDIT_STR_REQ_HEADERS, "user-agent", "curl/7.88.1");
        header(ev, AUDIT_STR_REQ_HEADERS, "accept", "application/json");
        header(ev, AUDIT_STR_REQ_HEADERS, "x-request-id", "7f0c9a52-3c1e-4c5e-9a3b-1d2e3f4a5b6c");
    }
    if (kind >= 2) {
        ev->flags |= AUDIT_F_RESPONSE;
        ev->status = n % 13 ? 200 : 404;
        ev->content_length = 1000 + n % 5000;
        set(ev, AUDIT_STR_CONTENT_TYPE, "application/json");
    }
    if (kind == 2) {
        header(ev, AUDIT_STR_RESP_HEADERS, "content-type", "application/json");
        header(ev, AUDIT_STR_RESP_HEADERS, "cache-control", "no-store");
        header(ev, AUDIT_STR_RESP_HEADERS, "server", "nginx");
    }
    if (kind == 3) {
        ev->flags |= AUDIT_F_BYTES | AUDIT_F_DURATION;
        ev->bytes_up = n % 7 ? 0 : 512;
        ev->bytes_down = (uint64_t)ev->content_length;
        ev->duration_us = 1000 + n % 20000;
        set(ev, AUDIT_STR_REASON, "completed");
    }
}

/* Bytes of the files below <dir>. */
static uint64_t du(const char *dir)
{
    uint64_t total = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL) {
        char p[4096];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        if (stat(p, &st) == 0)
            total += S_ISDIR(st.st_mode) ? du(p) : (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

int main(int argc, char **argv)
{
    const char *keep = NULL;
    if (argc > 2 && strcmp(argv[1], "--keep") == 0) {
        keep = argv[2];
        argv += 2;
        argc -= 2;
    }
    long n = argc > 1 ? atol(argv[1]) : 400000;
    char tmpl[] = "/tmp/vigil-sink-bench-XXXXXX", err[1024];
    char *dir = keep ? (char *)keep : tmpl;
    if (keep && mkdir(keep, 0750) == -1) {
        fprintf(stderr, "sink-bench: cannot create %s (it must not exist)\n", keep);
        return 2;
    }
    if (n < 4 || (!keep && !mkdtemp(tmpl))) {
        fprintf(stderr, "usage: sink-bench [EVENTS] [SINK_JSON ...]\n");
        return 2;
    }
    const char *def[] = {"{\"type\":\"file\",\"name\":\"file\"}"};
    const char *const *confs = argc > 2 ? (const char *const *)argv + 2 : def;
    int nconfs = argc > 2 ? argc - 2 : 1;
    struct sink_env env = {.data_dir = dir};
    printf("| sink | events | events/s | JSON bytes/event | bytes written/event | zstd ratio |\n"
           "|---|---:|---:|---:|---:|---:|\n");
    for (int k = 0; k < nconfs; k++) {
        json_error_t je;
        json_t *conf = json_loads(confs[k], 0, &je);
        struct sink *s = conf ? sink_open(conf, "sinks[0]", &env, err, sizeof(err)) : NULL;
        if (!s) {
            fprintf(stderr, "sink-bench: %s: %s\n", confs[k], conf ? err : je.text);
            return 1;
        }
        struct audit_ring *ring = audit_ring_new(65536, AUDIT_OVERFLOW_BLOCK);
        struct audit_pipeline *p = audit_pipeline_new(ring, &s, 1, NULL, err, sizeof(err));
        if (!p || audit_pipeline_start(p, err, sizeof(err)) == -1) {
            fprintf(stderr, "sink-bench: %s\n", err);
            return 1;
        }
        struct audit_event *ev = malloc(sizeof(*ev));
        struct audit_buf jb;
        audit_buf_init(&jb, 0);
        uint64_t json_bytes = 0;
        uint8_t fid[16];
        double t0 = now_s();
        for (long i = 0; i < n; i++) {
            if (i % 4 == 0)
                audit_flow_id_new(fid);
            make_event(ev, (uint64_t)i, fid);
            if (i < 4096) { /* the serialized size, sampled */
                jb.len = 0;
                audit_event_to_json(ev, (uint64_t)i + 1, &jb);
                json_bytes += jb.len + 1 + 80; /* + newline and the chain member the pipeline adds */
            }
            while (audit_emit(ring, ev) == -1)
                ; /* block: the ring is the back-pressure */
        }
        audit_pipeline_stop(p);
        double secs = now_s() - t0;
        double per_json = (double)json_bytes / (double)(n < 4096 ? n : 4096);
        struct sink_stats st = {0};
        s->ops->stats(s, &st);
        uint64_t written = strcmp(s->ops->type, "file") == 0 ? du(dir) : 0;
        if (written)
            printf("| %s | %ld | %.0f | %.0f | %.1f | %.1fx |\n", s->ops->type, n, (double)n / secs, per_json,
                   (double)written / (double)n, per_json * (double)n / (double)written);
        else
            printf("| %s | %ld | %.0f | %.0f | (on the wire) | - |\n", s->ops->type, n, (double)n / secs, per_json);
        audit_buf_fini(&jb);
        free(ev);
        audit_pipeline_free(p);
        audit_ring_free(ring);
        sink_free(s);
        json_decref(conf);
    }
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (!keep && system(cmd) != 0)
        fprintf(stderr, "sink-bench: could not remove %s\n", dir);
    return 0;
}
