/* sinks/kafka.c - the kafka sink: the record to a Kafka topic, at least once.
 *
 *     {"type": "kafka", "name": "siem", "brokers": "host1:9092,host2:9092", "topic": "vigil-audit",
 *      "properties": {"security.protocol": "ssl", "ssl.ca.location": "/etc/vigil/ca.pem", ...},
 *      "spool_max_bytes": 1073741824}
 *
 * librdkafka is set up as an idempotent producer (enable.idempotence=true, acks=all) with
 * compression.type=zstd and linger.ms=5; "properties" are passed to rd_kafka_conf_set() as
 * they are, after those defaults, so TLS, SASL, compression and tuning come from there (and
 * can override the defaults: an operator who turns idempotence off gets what they asked for).
 * Each message's key is the record's flow_id, so a flow's events stay in one partition and in
 * order (events without a flow are keyed by their seq); headers "seq" and "chain" carry the
 * record's seq and chain hash (the latter when the record has one).
 *
 * At least once. Every record goes into a disk spool (audit/spool.h) under
 * DATA_DIR/spool/<name>/ before it is produced, and leaves it only when its delivery report
 * says it is on the broker: never on enqueue. Records are produced from the spool in order,
 * at most KAFKA_MAX_INFLIGHT at a time. A failed delivery (a broker outage longer than
 * message.timeout.ms, 300 s by default) stops producing; once every outstanding report is
 * in, the spool is rewound and everything not acknowledged is produced again in order. A
 * restart produces what an earlier run left in the spool first. A record can reach the
 * broker twice (a report lost with a crash, a timeout after all), never zero times:
 * duplicates carry the same "seq" header.
 *
 * write() never waits on the network: it appends to the spool, produces what the in-flight
 * window allows and serves delivery reports with rd_kafka_poll(rk, 0); tick() does the same.
 * When the spool is full, write() accepts nothing more (SINK_RETRY) and health is DOWN;
 * while the broker is unreachable or the spool holds records not yet produced it is
 * DEGRADED. librdkafka's own log goes to diag_log() as component "sink.kafka" (it never
 * logs payloads). One thread at a time (the sink's delivery thread) calls write, tick and
 * flush, and close comes after it stopped; health and stats read atomics and may be called
 * from any thread. */
#include "sinks/sinks.h"
#include "sinks/sinks-int.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "audit/diag.h"
#include "audit/spool.h"

#define COMPONENT "sink.kafka"
#define KAFKA_MAX_INFLIGHT 10000
#define KAFKA_SPOOL_DEFAULT (1024LL * 1024 * 1024)

/* What a write() that returned SINK_RETRY had already accepted: its first <k> records are in
 * the spool, and the pipeline calls again with the same batch. */
struct retry_state {
    size_t k;         /* 0: none */
    uint64_t first;   /* seq of the batch's first record */
    uint64_t last;    /* seq of its k-th */
};

struct kafka_sink {
    struct sink *s;
    char *brokers;
    char *topic;
    json_t *props; /* borrowed copy of the config's "properties" (incref'd) */
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    struct audit_spool *sp;
    uint64_t inflight;     /* produced, report not yet served */
    int need_rewind;       /* a delivery failed: replay the unacknowledged once inflight is 0 */
    uint64_t replay_left;  /* the next records handed out by the spool are replays */
    int failing;           /* deliveries fail: diagnostics print transitions only */
    int spool_full;
    struct retry_state retry;
    atomic_int fatal;          /* librdkafka raised a fatal error: make a new producer */
    atomic_int unreachable;    /* all brokers down, or deliveries failing */
    atomic_int backlog;        /* the spool holds records not yet produced */
    atomic_int down;           /* the spool is full: not accepting */
    atomic_uint_least64_t delivered, pending, spooled, replayed;
};

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the record's top-level members, without parsing the whole JSON ---- */

static size_t skip_ws(const char *p, size_t len, size_t i)
{
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* Index just past the JSON string starting at p[i] == '"', or <len>. */
static size_t skip_string(const char *p, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (p[i] == '\\')
            i++;
        else if (p[i] == '"')
            return i + 1;
    }
    return len;
}

/* Index just past the JSON value starting at p[i]. */
static size_t skip_value(const char *p, size_t len, size_t i)
{
    int depth = 0;

    if (i < len && p[i] == '"')
        return skip_string(p, len, i);
    while (i < len) {
        char c = p[i];

        if (c == '"') {
            i = skip_string(p, len, i);
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return i;
            if (--depth == 0)
                return i + 1;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r')) {
            return i;
        }
        i++;
    }
    return len;
}

/* The contents (between the quotes, still escaped) of the top-level string member <key> of
 * the JSON object <p>. 0, or -1 when absent or not a string. */
static int top_string(const char *p, size_t len, const char *key, const char **val, size_t *vlen)
{
    size_t klen = strlen(key), i = skip_ws(p, len, 0);

    if (i >= len || p[i] != '{')
        return -1;
    i++;
    for (;;) {
        size_t ks, ke, vs, ve;

        i = skip_ws(p, len, i);
        if (i >= len || p[i] != '"')
            return -1;
        ks = i + 1;
        i = skip_string(p, len, i);
        ke = i - 1;
        i = skip_ws(p, len, i);
        if (i >= len || p[i] != ':')
            return -1;
        vs = skip_ws(p, len, i + 1);
        ve = skip_value(p, len, vs);
        if (ke - ks == klen && memcmp(p + ks, key, klen) == 0) {
            if (vs >= len || p[vs] != '"' || ve - vs < 2)
                return -1;
            *val = p + vs + 1;
            *vlen = ve - vs - 2;
            return 0;
        }
        i = skip_ws(p, len, ve);
        if (i >= len || p[i] != ',')
            return -1;
        i++;
    }
}

/* ---- librdkafka callbacks ---- */

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    struct kafka_sink *ks = rd_kafka_opaque(rk);
    enum diag_level lvl = level <= 3 ? DIAG_ERROR : level == 4 ? DIAG_WARN : level <= 6 ? DIAG_INFO : DIAG_DEBUG;

    diag_log(lvl, COMPONENT, "%s: %s: %s", ks != NULL ? ks->s->name : "kafka", fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kafka_sink *ks = opaque;

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char msg[512];

        rd_kafka_fatal_error(rk, msg, sizeof(msg));
        diag_log(DIAG_ERROR, COMPONENT, "%s: fatal producer error, starting a new producer: %s", ks->s->name, msg);
        atomic_store(&ks->fatal, 1);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (!atomic_exchange(&ks->unreachable, 1))
            diag_log(DIAG_WARN, COMPONENT, "%s: all brokers are down; records stay in the spool", ks->s->name);
        return;
    }
    /* the details already came through log_cb */
    diag_log(DIAG_DEBUG, COMPONENT, "%s: %s: %s", ks->s->name, rd_kafka_err2name(err), reason);
}

static int permanent_error(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || err == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE ||
           err == RD_KAFKA_RESP_ERR_INVALID_MSG || err == RD_KAFKA_RESP_ERR_INVALID_RECORD;
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct kafka_sink *ks = opaque;
    rd_kafka_headers_t *hdrs = NULL;
    const void *val = NULL;
    size_t vlen = 0;
    uint64_t seq = 0;
    char buf[24];

    if (ks->inflight > 0)
        ks->inflight--;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, "seq", &val, &vlen) != RD_KAFKA_RESP_ERR_NO_ERROR || vlen == 0 ||
        vlen >= sizeof(buf)) {
        diag_log(DIAG_ERROR, COMPONENT, "%s: delivery report without its seq header", ks->s->name);
        return;
    }
    memcpy(buf, val, vlen);
    buf[vlen] = '\0';
    seq = strtoull(buf, NULL, 10);

    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (audit_spool_ack(ks->sp, seq) == 0) {
            atomic_fetch_add(&ks->delivered, 1);
            if (m->_private != NULL)
                atomic_fetch_add(&ks->replayed, 1);
        }
        if (ks->failing)
            diag_log(DIAG_INFO, COMPONENT, "%s: delivering again", ks->s->name);
        ks->failing = 0;
        atomic_store(&ks->unreachable, 0);
        return;
    }
    if (permanent_error(m->err)) {
        /* the broker will never take it: out of the spool, counted, never silent */
        if (audit_spool_ack(ks->sp, seq) == 0)
            ks->s->dropped++;
        diag_log(DIAG_ERROR, COMPONENT, "%s: record %" PRIu64 " (%zu bytes) refused by the broker: %s", ks->s->name,
                 seq, m->len, rd_kafka_err2str(m->err));
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        return; /* closing: it stays in the spool */
    if (!ks->failing)
        diag_log(DIAG_WARN, COMPONENT, "%s: delivery failed (%s); undelivered records stay in the spool and are "
                                       "replayed in order",
                 ks->s->name, rd_kafka_err2str(m->err));
    ks->failing = 1;
    ks->need_rewind = 1;
    atomic_store(&ks->unreachable, 1);
    (void)rk;
}

/* ---- the producer ---- */

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *val, const char *path, char *err,
                    size_t errlen)
{
    char e[256];

    if (rd_kafka_conf_set(conf, key, val, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "%s: %s", path, e);
        return -1;
    }
    return 0;
}

/* A new producer for <ks>. 0, or -1 with <err> (".properties.x: ..." for a bad property). */
static int producer_new(struct kafka_sink *ks, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char cid[128], e[512];
    const char *key;
    json_t *v;

    snprintf(cid, sizeof(cid), "vigil-%s", ks->s->name);
    if (conf_set(conf, "bootstrap.servers", ks->brokers, ".brokers", err, errlen) == -1 ||
        conf_set(conf, "client.id", cid, ".name", err, errlen) == -1 ||
        conf_set(conf, "enable.idempotence", "true", "enable.idempotence", err, errlen) == -1 ||
        conf_set(conf, "acks", "all", "acks", err, errlen) == -1 ||
        conf_set(conf, "compression.type", "zstd", "compression.type", err, errlen) == -1 ||
        conf_set(conf, "linger.ms", "5", "linger.ms", err, errlen) == -1 ||
        conf_set(conf, "log.connection.close", "false", "log.connection.close", err, errlen) == -1)
        goto fail;
    json_object_foreach(ks->props, key, v) {
        char path[300];

        snprintf(path, sizeof(path), ".properties.%.200s", key);
        if (conf_set(conf, key, json_string_value(v), path, err, errlen) == -1)
            goto fail;
    }
    rd_kafka_conf_set_opaque(conf, ks);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    ks->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (ks->rk == NULL) {
        snprintf(err, errlen, "cannot create the producer: %s", e);
        goto fail;
    }
    ks->rkt = rd_kafka_topic_new(ks->rk, ks->topic, NULL);
    if (ks->rkt == NULL) {
        snprintf(err, errlen, ".topic: %s", rd_kafka_err2str(rd_kafka_last_error()));
        rd_kafka_destroy(ks->rk);
        ks->rk = NULL;
        return -1;
    }
    return 0;

fail:
    rd_kafka_conf_destroy(conf);
    return -1;
}

/* Destroys the producer; what it had in flight stays in the spool for the rewind. */
static void producer_free(struct kafka_sink *ks)
{
    if (ks->rk == NULL)
        return;
    rd_kafka_purge(ks->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(ks->rk, 0);
    rd_kafka_topic_destroy(ks->rkt);
    ks->rkt = NULL;
    rd_kafka_destroy(ks->rk);
    ks->rk = NULL;
    ks->inflight = 0;
    ks->need_rewind = 1;
}

/* Produces one record. 0, 1 when librdkafka's queue is full (try later), -1 when the record
 * can never be produced (it is taken out of the spool and counted as dropped). */
static int produce(struct kafka_sink *ks, uint64_t seq, const char *data, size_t len, int replay)
{
    const char *key, *chain = NULL;
    size_t klen, clen = 0;
    char seqbuf[24];
    int n = snprintf(seqbuf, sizeof(seqbuf), "%" PRIu64, seq);
    rd_kafka_resp_err_t e;

    if (top_string(data, len, "flow_id", &key, &klen) == -1) {
        key = seqbuf;
        klen = (size_t)n;
    }
    if (top_string(data, len, "chain", &chain, &clen) == -1)
        chain = NULL;
    if (chain != NULL)
        e = rd_kafka_producev(ks->rk, RD_KAFKA_V_RKT(ks->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_VALUE((void *)data, len), RD_KAFKA_V_KEY(key, klen),
                              RD_KAFKA_V_HEADER("seq", seqbuf, n), RD_KAFKA_V_HEADER("chain", chain, (ssize_t)clen),
                              RD_KAFKA_V_OPAQUE(replay ? (void *)ks : NULL), RD_KAFKA_V_END);
    else
        e = rd_kafka_producev(ks->rk, RD_KAFKA_V_RKT(ks->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_VALUE((void *)data, len), RD_KAFKA_V_KEY(key, klen),
                              RD_KAFKA_V_HEADER("seq", seqbuf, n), RD_KAFKA_V_OPAQUE(replay ? (void *)ks : NULL),
                              RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ks->inflight++;
        return 0;
    }
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return 1;
    if (permanent_error(e)) {
        if (audit_spool_ack(ks->sp, seq) == 0)
            ks->s->dropped++;
        diag_log(DIAG_ERROR, COMPONENT, "%s: record %" PRIu64 " (%zu bytes) cannot be produced: %s", ks->s->name, seq,
                 len, rd_kafka_err2str(e));
        return -1;
    }
    /* unknown topic and the like: keep it, replay later */
    if (!ks->failing)
        diag_log(DIAG_WARN, COMPONENT, "%s: cannot produce (%s); records stay in the spool", ks->s->name,
                 rd_kafka_err2str(e));
    ks->failing = 1;
    return 1;
}

static void update_gauges(struct kafka_sink *ks)
{
    uint64_t pending = audit_spool_pending(ks->sp);

    atomic_store(&ks->pending, pending);
    atomic_store(&ks->backlog, ks->need_rewind || pending > ks->inflight);
}

/* Produces from the spool what the in-flight window allows, rewinding first if a delivery
 * failed and every outstanding report is in. */
static void pump(struct kafka_sink *ks)
{
    char err[512];

    if (ks->rk == NULL)
        return;
    if (ks->need_rewind) {
        if (ks->inflight > 0)
            return;
        audit_spool_rewind(ks->sp);
        ks->replay_left = audit_spool_pending(ks->sp);
        ks->need_rewind = 0;
        if (ks->replay_left > 0)
            diag_log(DIAG_INFO, COMPONENT, "%s: replaying %" PRIu64 " records from the spool", ks->s->name,
                     ks->replay_left);
    }
    while (ks->inflight < KAFKA_MAX_INFLIGHT) {
        const char *data;
        size_t len;
        uint64_t seq;
        int r = audit_spool_next(ks->sp, &seq, &data, &len, err, sizeof(err));
        int replay;

        if (r == 0)
            break;
        if (r == -1) {
            diag_log(DIAG_ERROR, COMPONENT, "%s: %s", ks->s->name, err);
            if (strstr(err, "damaged") == NULL)
                break; /* an I/O error: try again on the next tick */
            ks->s->dropped++; /* at least one record lost to the damage: audit.loss says so */
            continue;
        }
        replay = ks->replay_left > 0;
        if (replay)
            ks->replay_left--;
        r = produce(ks, seq, data, len, replay);
        if (r == 1) {
            /* not produced: hand it out again after what is in flight */
            if (replay)
                ks->replay_left++;
            ks->need_rewind = 1;
            break;
        }
    }
}

/* ---- the ops ---- */

static int parse_conf(struct kafka_sink *ks, const json_t *conf, char *err, size_t errlen, long long *spool_max)
{
    static const char *const known[] = {
        "name", "type", "format", "on_full", "required", "brokers", "topic", "properties", "spool_max_bytes", NULL,
    };
    const json_t *v;
    const char *key;
    json_t *pv;

    if (sink_conf_check_keys(conf, known, err, errlen) == -1)
        return -1;
    v = json_object_get(conf, "brokers");
    if (json_is_array(v)) {
        size_t i, off = 0, total = 1;
        json_t *b;

        json_array_foreach(v, i, b) {
            if (!json_is_string(b) || json_string_length(b) == 0) {
                snprintf(err, errlen, ".brokers[%zu]: must be a non-empty \"host:port\" string", i);
                return -1;
            }
            total += json_string_length(b) + 1;
        }
        if (json_array_size(v) == 0)
            goto bad_brokers;
        ks->brokers = malloc(total);
        if (ks->brokers == NULL)
            goto oom;
        json_array_foreach(v, i, b) {
            off += (size_t)sprintf(ks->brokers + off, "%s%s", i ? "," : "", json_string_value(b));
        }
    } else if (json_is_string(v) && json_string_length(v) > 0) {
        ks->brokers = strdup(json_string_value(v));
        if (ks->brokers == NULL)
            goto oom;
    } else {
bad_brokers:
        snprintf(err, errlen, ".brokers: %s", v == NULL ? "missing" : "must be \"host:port,...\" or a list of them");
        return -1;
    }
    v = json_object_get(conf, "topic");
    if (!json_is_string(v) || json_string_length(v) == 0) {
        snprintf(err, errlen, ".topic: %s", v == NULL ? "missing" : "must be a non-empty string");
        return -1;
    }
    ks->topic = strdup(json_string_value(v));
    if (ks->topic == NULL)
        goto oom;
    v = json_object_get(conf, "properties");
    if (v != NULL && !json_is_object(v)) {
        snprintf(err, errlen, ".properties: must be an object of strings");
        return -1;
    }
    ks->props = v != NULL ? json_deep_copy(v) : json_object();
    if (ks->props == NULL)
        goto oom;
    json_object_foreach(ks->props, key, pv) {
        if (!json_is_string(pv)) {
            snprintf(err, errlen, ".properties.%.200s: must be a string", key);
            return -1;
        }
    }
    *spool_max = KAFKA_SPOOL_DEFAULT;
    return sink_conf_int(conf, "spool_max_bytes", 1024 * 1024, 1LL << 50, spool_max, err, errlen);

oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static int kafka_open(struct sink *s, const json_t *conf, const struct sink_env *env, char *err, size_t errlen)
{
    struct kafka_sink *ks;
    long long spool_max;
    char dir[4096];
    uint64_t left;

    ks = calloc(1, sizeof(*ks));
    if (ks == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ks->s = s;
    s->ctx = ks;
    if (parse_conf(ks, conf, err, errlen, &spool_max) == -1)
        return -1;
    if (env == NULL || env->data_dir == NULL || *env->data_dir == '\0') {
        snprintf(err, errlen, "no data directory for the spool");
        return -1;
    }
    if (strchr(s->name, '/') != NULL || s->name[0] == '.') {
        snprintf(err, errlen, ".name: names the spool directory: no '/' and no leading '.'");
        return -1;
    }
    snprintf(dir, sizeof(dir), "%s/spool/%s", env->data_dir, s->name);
    ks->sp = audit_spool_open(dir, (uint64_t)spool_max, err, errlen);
    if (ks->sp == NULL)
        return -1;
    if (producer_new(ks, err, errlen) == -1)
        return -1;
    left = audit_spool_pending(ks->sp);
    if (left > 0) {
        ks->replay_left = left;
        diag_log(DIAG_INFO, COMPONENT, "%s: %" PRIu64 " records left in the spool by an earlier run go first",
                 s->name, left);
    }
    update_gauges(ks);
    return 0;
}

static void kafka_tick(struct sink *s, int64_t now_us)
{
    struct kafka_sink *ks = s->ctx;

    if (ks == NULL)
        return;
    if (atomic_load(&ks->fatal)) {
        char err[512];

        producer_free(ks);
        atomic_store(&ks->fatal, 0);
        if (producer_new(ks, err, sizeof(err)) == -1) {
            diag_log(DIAG_ERROR, COMPONENT, "%s: %s", s->name, err);
            atomic_store(&ks->fatal, 1); /* try again next tick */
            return;
        }
    }
    if (ks->rk == NULL)
        return;
    rd_kafka_poll(ks->rk, 0);
    pump(ks);
    update_gauges(ks);
}

static enum sink_result kafka_write(struct sink *s, const struct sink_record *recs, size_t n)
{
    struct kafka_sink *ks = s->ctx;
    size_t i = 0;
    char err[512];

    /* the same batch again after a SINK_RETRY: its first records are already in the spool */
    if (ks->retry.k > 0 && ks->retry.k < n && recs[0].seq == ks->retry.first &&
        recs[ks->retry.k - 1].seq == ks->retry.last)
        i = ks->retry.k;
    ks->retry.k = 0;
    for (; i < n; i++) {
        int degraded = atomic_load(&ks->unreachable) || atomic_load(&ks->backlog);

        if (audit_spool_append(ks->sp, recs[i].seq, recs[i].data, recs[i].len, err, sizeof(err)) == -1) {
            if (strstr(err, "larger than") != NULL) {
                /* no spool can hold it, so no broker will get it: counted, never silent */
                s->dropped++;
                diag_log(DIAG_ERROR, COMPONENT, "%s: dropping record %" PRIu64 " (%zu bytes): %s", s->name,
                         recs[i].seq, recs[i].len, err);
                continue;
            }
            if (!ks->spool_full)
                diag_log(DIAG_WARN, COMPONENT, "%s: %s; not accepting records until the broker catches up", s->name,
                         err);
            ks->spool_full = 1;
            atomic_store(&ks->down, 1);
            if (i > 0) {
                ks->retry.k = i;
                ks->retry.first = recs[0].seq;
                ks->retry.last = recs[i - 1].seq;
            }
            if (ks->rk != NULL)
                rd_kafka_poll(ks->rk, 0);
            pump(ks);
            update_gauges(ks);
            return SINK_RETRY;
        }
        if (degraded)
            atomic_fetch_add(&ks->spooled, 1);
    }
    if (ks->spool_full)
        diag_log(DIAG_INFO, COMPONENT, "%s: accepting records again", s->name);
    ks->spool_full = 0;
    atomic_store(&ks->down, 0);
    pump(ks);
    if (ks->rk != NULL)
        rd_kafka_poll(ks->rk, 0);
    update_gauges(ks);
    return SINK_OK;
}

/* Waits up to <timeout_ms> for the broker to acknowledge everything. Whatever it did not
 * acknowledge is in the spool, on disk, and goes first at the next start: that is this
 * sink's durability, so flush returns 0 either way (after saying how many records wait). */
static int kafka_flush(struct sink *s, int timeout_ms)
{
    struct kafka_sink *ks = s->ctx;
    int64_t start = mono_ms(), deadline = start + timeout_ms;
    uint64_t left;

    if (ks == NULL || ks->rk == NULL)
        return 0;
    for (;;) {
        int64_t now;

        pump(ks);
        rd_kafka_poll(ks->rk, 50);
        update_gauges(ks);
        if (audit_spool_pending(ks->sp) == 0)
            return 0;
        now = mono_ms();
        if (now >= deadline)
            break;
        /* a broker known to be away will not come back for a shutdown */
        if (atomic_load(&ks->unreachable) && now - start >= 1000)
            break;
    }
    left = audit_spool_pending(ks->sp);
    diag_log(DIAG_INFO, COMPONENT, "%s: %" PRIu64 " records not yet acknowledged stay in the spool for the next start",
             s->name, left);
    return 0;
}

static void kafka_close(struct sink *s)
{
    struct kafka_sink *ks = s->ctx;

    if (ks == NULL)
        return;
    producer_free(ks);
    audit_spool_close(ks->sp);
    json_decref(ks->props);
    free(ks->brokers);
    free(ks->topic);
    free(ks);
    s->ctx = NULL;
}

static enum sink_health kafka_health(struct sink *s)
{
    struct kafka_sink *ks = s->ctx;

    if (ks == NULL || atomic_load(&ks->down))
        return SINK_DOWN;
    if (atomic_load(&ks->unreachable) || atomic_load(&ks->backlog))
        return SINK_DEGRADED;
    return SINK_HEALTHY;
}

static void kafka_stats(struct sink *s, struct sink_stats *out)
{
    struct kafka_sink *ks = s->ctx;

    memset(out, 0, sizeof(*out));
    if (ks == NULL)
        return;
    out->delivered = atomic_load(&ks->delivered);
    out->pending = atomic_load(&ks->pending);
    out->spooled = atomic_load(&ks->spooled);
    out->replayed = atomic_load(&ks->replayed);
}

const struct sink_ops sink_kafka_ops = {
    .type = "kafka",
    .open = kafka_open,
    .write = kafka_write,
    .tick = kafka_tick,
    .flush = kafka_flush,
    .close = kafka_close,
    .health = kafka_health,
    .stats = kafka_stats,
};
