/* tests/unit/audit/test_pipeline.c - the pipeline thread against a fake sink: contiguous
 * seqs, audit.loss for ring overflow and for sink failures, retries, and a full drain on stop.
 *
 * The fake sink records every record it accepts and answers writes from a script. Tests never
 * wait on time: they emit before starting the pipeline, or stop it (which drains) before
 * looking at what the sink got. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/segment.h"
#include "audit/sink.h"

#define FAKE_MAX_SCRIPT 8

struct fake {
    json_t *got;                   /* array of the accepted records, parsed */
    enum sink_result script[FAKE_MAX_SCRIPT]; /* answers to the first writes; then SINK_OK */
    size_t nscript;
    size_t writes;
    size_t flushes;
    size_t ticks;
    size_t bad; /* records that were not JSON or whose seq differed from the record's */
};

static enum sink_result fake_write(struct sink *s, const struct sink_record *recs, size_t n)
{
    struct fake *f = s->ctx;
    enum sink_result r = f->writes < f->nscript ? f->script[f->writes] : SINK_OK;

    f->writes++;
    if (r != SINK_OK)
        return r;
    for (size_t i = 0; i < n; i++) {
        json_error_t jerr;
        json_t *o = json_loadb(recs[i].data, recs[i].len, 0, &jerr);

        /* no cmocka assert here: this runs on the pipeline thread; the test checks <bad> */
        if (o == NULL || (uint64_t)json_integer_value(json_object_get(o, "seq")) != recs[i].seq ||
            recs[i].time_us <= 0) {
            f->bad++;
            json_decref(o);
            continue;
        }
        json_array_append_new(f->got, o);
    }
    return SINK_OK;
}

static void fake_tick(struct sink *s, int64_t now_us)
{
    ((struct fake *)s->ctx)->ticks++;
}

static int fake_flush(struct sink *s, int timeout_ms)
{
    ((struct fake *)s->ctx)->flushes++;
    return 0;
}

static void fake_close(struct sink *s)
{
}

static const struct sink_ops fake_ops = {
    .type = "fake", .write = fake_write, .tick = fake_tick, .flush = fake_flush, .close = fake_close,
};

static void fake_init(struct fake *f, struct sink *s, char *name)
{
    memset(f, 0, sizeof(*f));
    f->got = json_array();
    *s = (struct sink){.ops = &fake_ops, .name = name, .ctx = f};
}

static void emit_n(struct audit_ring *r, size_t n, uint64_t tag)
{
    struct audit_event ev;

    for (size_t i = 0; i < n; i++) {
        audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
        audit_flow_id_new(ev.flow_id);
        ev.flags = AUDIT_F_FLOW | AUDIT_F_BYTES;
        ev.bytes_up = tag;
        ev.bytes_down = i;
        audit_emit(r, &ev);
    }
}

static struct audit_pipeline *start(struct audit_ring *r, struct sink **sinks, size_t n)
{
    char err[256];
    struct audit_pipeline *p = audit_pipeline_new(r, sinks, n, NULL, err, sizeof(err));

    assert_non_null(p);
    assert_int_equal(audit_pipeline_start(p, err, sizeof(err)), 0);
    return p;
}

static const char *kind_of(json_t *o)
{
    return json_string_value(json_object_get(o, "event"));
}

/* records carry seqs 1..N with no gap, in ring order, and audit_pipeline_seq reports N */
static void test_pipeline_seqs_contiguous_from_one(void **state)
{
    struct audit_ring *r = audit_ring_new(1024, AUDIT_OVERFLOW_DROP);
    struct fake f;
    struct sink s, *sinks[] = {&s};
    struct audit_pipeline *p;
    size_t i;
    json_t *o;

    fake_init(&f, &s, "fake");
    emit_n(r, 1000, 7);
    p = start(r, sinks, 1);
    audit_pipeline_stop(p);
    assert_int_equal(json_array_size(f.got), 1000);
    json_array_foreach(f.got, i, o) {
        assert_int_equal(json_integer_value(json_object_get(o, "seq")), i + 1);
        assert_string_equal(kind_of(o), "flow.end");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "bytes"), "down")), i);
    }
    assert_int_equal(audit_pipeline_seq(p), 1000);
    assert_int_equal(f.flushes, 1);
    audit_pipeline_stop(p); /* idempotent */
    assert_int_equal(f.flushes, 1);
    audit_pipeline_free(p);
    audit_ring_free(r);
    assert_int_equal(f.bad, 0);
    json_decref(f.got);
}

/* an overflowed ring is reported by an audit.loss (lost count, ring_overflow) before the surviving events */
static void test_pipeline_ring_overflow_emits_loss(void **state)
{
    struct audit_ring *r = audit_ring_new(16, AUDIT_OVERFLOW_DROP);
    struct fake f;
    struct sink s, *sinks[] = {&s};
    struct audit_pipeline *p;
    json_t *loss;
    size_t i;
    json_t *o;

    fake_init(&f, &s, "fake");
    emit_n(r, 28, 1);
    p = start(r, sinks, 1);
    audit_pipeline_stop(p);
    assert_int_equal(json_array_size(f.got), 17);
    loss = json_array_get(f.got, 0);
    assert_string_equal(kind_of(loss), "audit.loss");
    assert_string_equal(json_string_value(json_object_get(loss, "reason")), "ring_overflow");
    assert_int_equal(json_integer_value(json_object_get(loss, "lost")), 12);
    assert_int_equal(json_integer_value(json_object_get(loss, "refused")), 0);
    json_array_foreach(f.got, i, o) {
        assert_int_equal(json_integer_value(json_object_get(o, "seq")), i + 1);
        if (i > 0)
            assert_string_equal(kind_of(o), "flow.end");
    }
    assert_int_equal(audit_ring_take_lost(r), 0); /* reported, so cleared */
    audit_pipeline_free(p);
    audit_ring_free(r);
    assert_int_equal(f.bad, 0);
    json_decref(f.got);
}

/* flows refused under fail_closed are reported as an audit.loss with reason ring_full */
static void test_pipeline_refused_flows_emit_loss(void **state)
{
    struct audit_ring *r = audit_ring_new(16, AUDIT_OVERFLOW_FAIL_CLOSED);
    struct fake f;
    struct sink s, *sinks[] = {&s};
    struct audit_pipeline *p;
    json_t *loss;

    fake_init(&f, &s, "fake");
    emit_n(r, 12, 1);
    assert_int_equal(audit_ring_admit(r), -1);
    assert_int_equal(audit_ring_admit(r), -1);
    assert_int_equal(audit_ring_admit(r), -1);
    p = start(r, sinks, 1);
    audit_pipeline_stop(p);
    assert_int_equal(json_array_size(f.got), 13);
    loss = json_array_get(f.got, 0);
    assert_string_equal(kind_of(loss), "audit.loss");
    assert_string_equal(json_string_value(json_object_get(loss, "reason")), "ring_full");
    assert_int_equal(json_integer_value(json_object_get(loss, "lost")), 0);
    assert_int_equal(json_integer_value(json_object_get(loss, "refused")), 3);
    audit_pipeline_free(p);
    audit_ring_free(r);
    assert_int_equal(f.bad, 0);
    json_decref(f.got);
}

/* a failed write adds the batch to the sink's dropped count; an audit.loss naming the sink reports it everywhere */
static void test_pipeline_sink_fail_counts_and_reports(void **state)
{
    struct audit_ring *r = audit_ring_new(64, AUDIT_OVERFLOW_DROP);
    struct fake bad, good;
    struct sink sb, sg, *sinks[] = {&sb, &sg};
    struct audit_pipeline *p;
    json_t *loss;
    size_t n;

    fake_init(&bad, &sb, "broken");
    fake_init(&good, &sg, "fine");
    bad.script[0] = SINK_FAIL;
    bad.nscript = 1;
    emit_n(r, 10, 1);
    p = start(r, sinks, 2);
    audit_pipeline_stop(p);

    /* the healthy sink saw everything, the loss report last */
    n = json_array_size(good.got);
    assert_int_equal(n, 11);
    loss = json_array_get(good.got, 10);
    assert_string_equal(kind_of(loss), "audit.loss");
    assert_string_equal(json_string_value(json_object_get(loss, "reason")), "sink_failure:broken");
    assert_int_equal(json_integer_value(json_object_get(loss, "lost")), 10);
    assert_int_equal(json_integer_value(json_object_get(loss, "seq")), 11);
    /* the broken sink lost the batch but got the report of its loss */
    assert_int_equal(json_array_size(bad.got), 1);
    assert_true(json_equal(json_array_get(bad.got, 0), loss));
    assert_int_equal(sb.dropped, 0);
    assert_int_equal(audit_pipeline_seq(p), 11);
    audit_pipeline_free(p);
    audit_ring_free(r);
    assert_int_equal(bad.bad, 0);
    json_decref(bad.got);
    assert_int_equal(good.bad, 0);
    json_decref(good.got);
}

/* drops a sink reports itself (its dropped counter) are turned into an audit.loss too */
static void test_pipeline_sink_dropped_counter_reported(void **state)
{
    struct audit_ring *r = audit_ring_new(64, AUDIT_OVERFLOW_DROP);
    struct fake f;
    struct sink s, *sinks[] = {&s};
    struct audit_pipeline *p;
    json_t *loss;

    fake_init(&f, &s, NULL); /* no name: the type names it */
    s.dropped = 4;
    emit_n(r, 2, 1);
    p = start(r, sinks, 1);
    audit_pipeline_stop(p);
    assert_int_equal(json_array_size(f.got), 3);
    loss = json_array_get(f.got, 0);
    assert_string_equal(kind_of(loss), "audit.loss");
    assert_string_equal(json_string_value(json_object_get(loss, "reason")), "sink_failure:fake");
    assert_int_equal(json_integer_value(json_object_get(loss, "lost")), 4);
    assert_int_equal(s.dropped, 0);
    audit_pipeline_free(p);
    audit_ring_free(r);
    assert_int_equal(f.bad, 0);
    json_decref(f.got);
}

/* a sink that asks to retry gets the same batch again and nothing is lost or duplicated */
static void test_pipeline_sink_retry_delivers_once(void **state)
{
    struct audit_ring *r = audit_ring_new(64, AUDIT_OVERFLOW_DROP);
    struct fake f;
    struct sink s, *sinks[] = {&s};
    struct audit_pipeline *p;
    size_t i;
    json_t *o;

    fake_init(&f, &s, "flaky");
    f.script[0] = SINK_RETRY;
    f.script[1] = SINK_RETRY;
    f.nscript = 2;
    emit_n(r, 30, 1);
    p = start(r, sinks, 1);
    audit_pipeline_stop(p);
    assert_true(f.writes >= 3);
    assert_int_equal(json_array_size(f.got), 30);
    json_array_foreach(f.got, i, o) {
        assert_string_equal(kind_of(o), "flow.end");
        assert_int_equal(json_integer_value(json_object_get(o, "seq")), i + 1);
    }
    assert_int_equal(s.dropped, 0);
    audit_pipeline_free(p);
    audit_ring_free(r);
    assert_int_equal(f.bad, 0);
    json_decref(f.got);
}

/* events emitted while the pipeline runs are all delivered by stop, and every failed push is reported as lost */
static void test_pipeline_stop_drains_everything(void **state)
{
    struct audit_ring *r = audit_ring_new(64, AUDIT_OVERFLOW_DROP);
    struct fake f;
    struct sink s, *sinks[] = {&s};
    struct audit_pipeline *p;
    struct audit_event ev;
    uint64_t pushed = 0, failed = 0, lost = 0, flows = 0;
    size_t i;
    json_t *o;

    fake_init(&f, &s, "fake");
    p = start(r, sinks, 1);
    for (i = 0; i < 20000; i++) {
        audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
        audit_flow_id_new(ev.flow_id);
        ev.flags = AUDIT_F_FLOW;
        if (audit_emit(r, &ev) == 0)
            pushed++;
        else
            failed++;
    }
    audit_pipeline_stop(p);
    json_array_foreach(f.got, i, o) {
        assert_int_equal(json_integer_value(json_object_get(o, "seq")), i + 1);
        if (strcmp(kind_of(o), "audit.loss") == 0)
            lost += (uint64_t)json_integer_value(json_object_get(o, "lost"));
        else
            flows++;
    }
    assert_int_equal(flows, pushed);
    assert_int_equal(lost, failed);
    assert_int_equal(audit_ring_depth(r), 0);
    assert_int_equal(audit_pipeline_seq(p), json_array_size(f.got));
    assert_int_equal(f.flushes, 1);
    audit_pipeline_free(p);
    audit_ring_free(r);
    assert_int_equal(f.bad, 0);
    json_decref(f.got);
}

/* no sinks still drains; a pipeline never started frees cleanly; bad arguments fail with a message */
static void test_pipeline_edge_cases(void **state)
{
    struct audit_ring *r = audit_ring_new(16, AUDIT_OVERFLOW_DROP);
    struct sink_ops incomplete = {.type = "x"};
    struct sink bad = {.ops = &incomplete}, *badv[] = {&bad};
    struct audit_pipeline_opts o = {.idle_sleep_us = 200, .tick_ms = 5};
    struct audit_pipeline *p;
    char err[128] = "";

    emit_n(r, 5, 1);
    p = audit_pipeline_new(r, NULL, 0, &o, err, sizeof(err));
    assert_non_null(p);
    assert_int_equal(audit_pipeline_start(p, err, sizeof(err)), 0);
    assert_int_equal(audit_pipeline_start(p, err, sizeof(err)), -1);
    audit_pipeline_free(p); /* stops first */
    assert_int_equal(audit_ring_depth(r), 0);

    p = audit_pipeline_new(r, NULL, 0, NULL, err, sizeof(err));
    assert_non_null(p);
    audit_pipeline_stop(p);
    audit_pipeline_free(p);
    audit_pipeline_free(NULL);

    assert_null(audit_pipeline_new(r, badv, 1, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "sinks[0]"));
    assert_null(audit_pipeline_new(NULL, NULL, 0, NULL, err, sizeof(err)));
    audit_ring_free(r);
}

/* ---- fan-out: a sink that holds its writes at a gate, and one that records raw lines ---- */

struct gated {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int closed;       /* writes wait while the gate is closed */
    int waiting;      /* a write is waiting at the gate */
    json_t *got;      /* parsed records */
    char **lines;     /* raw records, in order */
    size_t nlines;
    size_t cap;
    size_t bad;       /* seqs not strictly increasing, or not JSON */
    uint64_t last_seq;
};

static enum sink_result gated_write(struct sink *s, const struct sink_record *recs, size_t n)
{
    struct gated *g = s->ctx;

    pthread_mutex_lock(&g->mu);
    while (g->closed) {
        g->waiting = 1;
        pthread_cond_broadcast(&g->cv);
        pthread_cond_wait(&g->cv, &g->mu);
    }
    g->waiting = 0;
    for (size_t i = 0; i < n; i++) {
        json_error_t jerr;
        json_t *o = json_loadb(recs[i].data, recs[i].len, 0, &jerr);

        if (o == NULL || recs[i].seq <= g->last_seq) {
            g->bad++;
            json_decref(o);
            continue;
        }
        g->last_seq = recs[i].seq;
        json_array_append_new(g->got, o);
        if (g->nlines == g->cap) {
            g->cap = g->cap ? g->cap * 2 : 1024;
            g->lines = realloc(g->lines, g->cap * sizeof(*g->lines));
        }
        g->lines[g->nlines++] = strndup(recs[i].data, recs[i].len);
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return SINK_OK;
}

static void gated_tick(struct sink *s, int64_t now_us)
{
}

static int gated_flush(struct sink *s, int timeout_ms)
{
    return 0;
}

static void gated_close(struct sink *s)
{
}

static enum sink_health gated_health(struct sink *s)
{
    return SINK_HEALTHY;
}

static void gated_stats(struct sink *s, struct sink_stats *out)
{
    memset(out, 0, sizeof(*out));
}

static const struct sink_ops gated_ops = {
    .type = "gated", .write = gated_write, .tick = gated_tick, .flush = gated_flush, .close = gated_close,
    .health = gated_health, .stats = gated_stats,
};

static void gated_init(struct gated *g, struct sink *s, char *name, int closed, enum sink_on_full on_full)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->closed = closed;
    g->got = json_array();
    *s = (struct sink){.ops = &gated_ops, .name = name, .ctx = g, .on_full = on_full};
}

static void gated_fini(struct gated *g)
{
    for (size_t i = 0; i < g->nlines; i++)
        free(g->lines[i]);
    free(g->lines);
    json_decref(g->got);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

/* Waits (bounded by 30 s, failing the test) until <g> holds at least <n> records, or a write
 * waits at its closed gate when <n> is 0. */
static void gated_wait(struct gated *g, size_t n)
{
    struct timespec dl;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    pthread_mutex_lock(&g->mu);
    while (n == 0 ? !g->waiting : json_array_size(g->got) < n) {
        if (pthread_cond_timedwait(&g->cv, &g->mu, &dl) != 0) {
            pthread_mutex_unlock(&g->mu);
            fail_msg("timed out waiting for the sink (%zu records)", json_array_size(g->got));
        }
    }
    pthread_mutex_unlock(&g->mu);
}

static void gated_open(struct gated *g)
{
    pthread_mutex_lock(&g->mu);
    g->closed = 0;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Sum of "lost" over the audit.loss records of <got> whose reason is <reason>. */
static uint64_t lost_for(json_t *got, const char *reason)
{
    uint64_t sum = 0;
    size_t i;
    json_t *o;

    json_array_foreach(got, i, o) {
        if (strcmp(kind_of(o), "audit.loss") == 0 &&
            strcmp(json_string_value(json_object_get(o, "reason")), reason) == 0)
            sum += (uint64_t)json_integer_value(json_object_get(o, "lost"));
    }
    return sum;
}

/* every record carries a chain linking it to the one before, starting from <start> */
static void expect_chain(char **lines, size_t n, const uint8_t start[32], uint64_t first_seq)
{
    uint8_t prev[32], want[32], got[32];
    size_t body;

    memcpy(prev, start, 32);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_loads(lines[i], 0, NULL);

        assert_non_null(o);
        assert_int_equal(json_integer_value(json_object_get(o, "seq")), first_seq + i);
        json_decref(o);
        assert_int_equal(audit_chain_split(lines[i], strlen(lines[i]), &body, got), 0);
        assert_int_equal(audit_chain_expected(prev, lines[i], strlen(lines[i]), want), 0);
        assert_memory_equal(want, got, 32);
        memcpy(prev, got, 32);
    }
}

/* each record's chain is BLAKE2b-256(previous chain || record without its chain), from zeros */
static void test_pipeline_chain_links_every_record(void **state)
{
    struct audit_ring *r = audit_ring_new(1024, AUDIT_OVERFLOW_DROP);
    struct gated g;
    struct sink s, *sinks[] = {&s};
    struct audit_pipeline *p;
    uint8_t zero[32] = {0};

    gated_init(&g, &s, "raw", 0, SINK_ON_FULL_BLOCK);
    emit_n(r, 600, 1);
    p = start(r, sinks, 1);
    audit_pipeline_stop(p);
    assert_int_equal(g.nlines, 600);
    expect_chain(g.lines, g.nlines, zero, 1);
    /* the chain member is the last one */
    assert_non_null(strstr(g.lines[0], ",\"chain\":\""));
    assert_int_equal(g.lines[0][strlen(g.lines[0]) - 1], '}');
    assert_int_equal(g.bad, 0);
    audit_pipeline_free(p);
    audit_ring_free(r);
    gated_fini(&g);
}

/* a pipeline given the last seq and chain of a stored record continues both */
static void test_pipeline_last_chain_continues(void **state)
{
    struct audit_ring *r = audit_ring_new(1024, AUDIT_OVERFLOW_DROP);
    struct gated g1, g2;
    struct sink s1, s2, *v1[] = {&s1}, *v2[] = {&s2};
    struct audit_pipeline_opts o = {0};
    struct audit_pipeline *p;
    uint8_t zero[32] = {0};
    size_t body;
    char err[256];

    gated_init(&g1, &s1, "a", 0, SINK_ON_FULL_BLOCK);
    emit_n(r, 10, 1);
    p = start(r, v1, 1);
    audit_pipeline_free(p);
    o.last_seq = 10;
    assert_int_equal(audit_chain_split(g1.lines[9], strlen(g1.lines[9]), &body, o.last_chain), 0);

    gated_init(&g2, &s2, "b", 0, SINK_ON_FULL_BLOCK);
    emit_n(r, 5, 2);
    p = audit_pipeline_new(r, v2, 1, &o, err, sizeof(err));
    assert_non_null(p);
    assert_int_equal(audit_pipeline_start(p, err, sizeof(err)), 0);
    audit_pipeline_free(p);
    expect_chain(g1.lines, g1.nlines, zero, 1);
    expect_chain(g2.lines, g2.nlines, o.last_chain, 11);
    assert_int_equal(g2.nlines, 5);
    audit_ring_free(r);
    gated_fini(&g1);
    gated_fini(&g2);
}

/* a sink stuck in write does not stall another; with on_full drop its queue overflows into
 * counted losses that audit.loss reports, and what it did get is in seq order */
static void test_pipeline_stuck_sink_drop_others_keep_going(void **state)
{
    struct audit_ring *r = audit_ring_new(4096, AUDIT_OVERFLOW_DROP);
    struct gated slow, fast;
    struct sink ss, sf, *sinks[] = {&ss, &sf};
    struct audit_pipeline_opts o = {.queue_records = 600};
    struct audit_pipeline_sink_stats st;
    struct audit_pipeline *p;
    char err[256];
    uint64_t total;

    gated_init(&slow, &ss, "slow", 1, SINK_ON_FULL_DROP);
    gated_init(&fast, &sf, "fast", 0, SINK_ON_FULL_BLOCK);
    p = audit_pipeline_new(r, sinks, 2, &o, err, sizeof(err));
    assert_non_null(p);
    assert_int_equal(audit_pipeline_start(p, err, sizeof(err)), 0);
    emit_n(r, 1, 0);
    gated_wait(&slow, 0); /* its delivery thread is stuck in write */
    emit_n(r, 3000, 1);
    gated_wait(&fast, 3001);
    audit_pipeline_sink_stats(p, 0, &st);
    assert_true(st.dropped > 0);
    assert_int_equal(json_array_size(slow.got), 0);
    gated_open(&slow);
    audit_pipeline_stop(p);
    total = audit_pipeline_seq(p);
    /* every seq reached the slow sink or is counted in an audit.loss the fast one got */
    assert_int_equal(json_array_size(slow.got) + lost_for(fast.got, "sink_failure:slow"), total);
    assert_true(lost_for(fast.got, "sink_failure:slow") > 0);
    assert_int_equal(json_array_size(fast.got), total);
    assert_int_equal(lost_for(fast.got, "sink_failure:fast"), 0);
    assert_int_equal(slow.bad, 0);
    assert_int_equal(fast.bad, 0);
    audit_pipeline_free(p);
    audit_ring_free(r);
    gated_fini(&slow);
    gated_fini(&fast);
}

/* with on_full block a stuck sink backs the pipeline up into the ring, whose overflow policy
 * applies; once it moves again both sinks hold exactly the same records */
static void test_pipeline_stuck_sink_block_backs_up_ring(void **state)
{
    struct audit_ring *r = audit_ring_new(16, AUDIT_OVERFLOW_DROP);
    struct gated slow, fast;
    struct sink ss, sf, *sinks[] = {&ss, &sf};
    struct audit_pipeline_opts o = {.queue_records = 600};
    struct audit_pipeline_sink_stats st;
    struct audit_pipeline *p;
    struct audit_event ev;
    char err[256];
    size_t failed = 0;

    gated_init(&slow, &ss, "slow", 1, SINK_ON_FULL_BLOCK);
    gated_init(&fast, &sf, "fast", 0, SINK_ON_FULL_BLOCK);
    p = audit_pipeline_new(r, sinks, 2, &o, err, sizeof(err));
    assert_non_null(p);
    assert_int_equal(audit_pipeline_start(p, err, sizeof(err)), 0);
    emit_n(r, 1, 0);
    gated_wait(&slow, 0);
    /* emit until the pipeline waits for the stuck sink's queue, then some more: with the
     * pipeline held up the ring fills and its policy (drop) counts the rest */
    memset(&st, 0, sizeof(st));
    for (size_t i = 0; st.blocked == 0 && i < 100000000; i++) {
        audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
        if (audit_emit(r, &ev) == -1)
            failed++;
        audit_pipeline_sink_stats(p, 0, &st);
    }
    assert_true(st.blocked > 0);
    for (size_t i = 0; i < 100; i++) {
        audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
        if (audit_emit(r, &ev) == -1)
            failed++;
    }
    assert_true(failed >= 100 - 16);
    assert_int_equal(st.dropped, 0);
    gated_open(&slow);
    audit_pipeline_stop(p);
    assert_int_equal(slow.nlines, fast.nlines);
    for (size_t i = 0; i < slow.nlines; i++)
        assert_string_equal(slow.lines[i], fast.lines[i]);
    assert_int_equal(lost_for(fast.got, "ring_overflow"), failed);
    assert_int_equal(lost_for(fast.got, "sink_failure:slow"), 0);
    audit_pipeline_free(p);
    audit_ring_free(r);
    gated_fini(&slow);
    gated_fini(&fast);
}

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;

    if (d == NULL) {
        unlink(path);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char sub[1024];

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
        rm_rf(sub);
    }
    closedir(d);
    rmdir(path);
}

/* with on_full spill a stuck sink's overflow goes to its spool and is replayed in order once
 * it moves again: it loses nothing */
static void test_pipeline_stuck_sink_spill_replays_in_order(void **state)
{
    struct audit_ring *r = audit_ring_new(4096, AUDIT_OVERFLOW_DROP);
    struct gated slow, fast;
    struct sink ss, sf, *sinks[] = {&ss, &sf};
    struct audit_pipeline_opts o = {.queue_records = 600};
    struct audit_pipeline_sink_stats st;
    struct audit_pipeline *p;
    char err[256], dir[64] = "/tmp/vigil-pipeline-XXXXXX";

    assert_non_null(mkdtemp(dir));
    o.spool_dir = dir;
    gated_init(&slow, &ss, "slow", 1, SINK_ON_FULL_SPILL);
    gated_init(&fast, &sf, "fast", 0, SINK_ON_FULL_BLOCK);
    p = audit_pipeline_new(r, sinks, 2, &o, err, sizeof(err));
    if (p == NULL)
        fail_msg("%s", err);
    assert_int_equal(audit_pipeline_start(p, err, sizeof(err)), 0);
    emit_n(r, 1, 0);
    gated_wait(&slow, 0);
    emit_n(r, 3000, 1);
    gated_wait(&fast, 3001);
    audit_pipeline_sink_stats(p, 0, &st);
    assert_true(st.spilled > 0);
    assert_int_equal(st.dropped, 0);
    gated_open(&slow);
    audit_pipeline_stop(p);
    assert_int_equal(slow.nlines, fast.nlines);
    for (size_t i = 0; i < slow.nlines; i++)
        assert_string_equal(slow.lines[i], fast.lines[i]);
    assert_int_equal(lost_for(fast.got, "sink_failure:slow"), 0);
    assert_int_equal(slow.bad, 0);
    audit_pipeline_free(p);
    audit_ring_free(r);
    gated_fini(&slow);
    gated_fini(&fast);
    rm_rf(dir);
}

/* a sink with format ocsf gets OCSF HTTP Activity records carrying the native seq and chain */
static void test_pipeline_ocsf_sink_gets_ocsf_form(void **state)
{
    struct audit_ring *r = audit_ring_new(64, AUDIT_OVERFLOW_DROP);
    struct gated nat, oc;
    struct sink sn, so, *sinks[] = {&sn, &so};
    struct audit_pipeline *p;
    struct audit_event ev;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(40000)};
    size_t body;
    uint8_t chain[32];
    char hex[65];
    json_t *o, *n;

    gated_init(&nat, &sn, "native", 0, SINK_ON_FULL_BLOCK);
    gated_init(&oc, &so, "siem", 0, SINK_ON_FULL_BLOCK);
    so.format = SINK_FORMAT_OCSF;
    audit_event_init(&ev, AUDIT_EVENT_FLOW_PHASE);
    audit_flow_id_new(ev.flow_id);
    ev.flags = AUDIT_F_FLOW | AUDIT_F_CLIENT | AUDIT_F_REQUEST | AUDIT_F_DESTINATION | AUDIT_F_RULE;
    ev.phase = AUDIT_PHASE_PRE_REQUEST;
    ev.action = AUDIT_ACTION_DENY;
    sa.sin_addr.s_addr = htonl(0x7f000001);
    audit_ip_from_sockaddr(&ev.client, (struct sockaddr *)&sa);
    sa.sin_addr.s_addr = htonl(0x5db8d822);
    sa.sin_port = htons(443);
    audit_ip_from_sockaddr(&ev.destination, (struct sockaddr *)&sa);
    audit_event_set_str(&ev, AUDIT_STR_METHOD, "GET", 3);
    audit_event_set_str(&ev, AUDIT_STR_SCHEME, "http", 4);
    audit_event_set_str(&ev, AUDIT_STR_HOST, "example.com", 11);
    ev.request_port = 80;
    audit_event_set_str(&ev, AUDIT_STR_PATH, "/a\"b", 4);
    audit_event_set_str(&ev, AUDIT_STR_QUERY, "x=1", 3);
    audit_event_set_str(&ev, AUDIT_STR_REASON, "rule_match", 10);
    audit_emit(r, &ev);
    audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
    audit_flow_id_new(ev.flow_id);
    ev.flags = AUDIT_F_FLOW | AUDIT_F_RESPONSE | AUDIT_F_BYTES | AUDIT_F_DURATION;
    ev.status = 200;
    ev.content_length = 5;
    ev.bytes_up = 10;
    ev.bytes_down = 20;
    ev.duration_us = 1500;
    audit_event_set_str(&ev, AUDIT_STR_CONTENT_TYPE, "text/plain", 10);
    audit_event_set_str(&ev, AUDIT_STR_REASON, "completed", 9);
    audit_emit(r, &ev);
    audit_event_init(&ev, AUDIT_EVENT_PROXY_CONFIG);
    audit_emit(r, &ev);
    p = start(r, sinks, 2);
    audit_pipeline_stop(p);
    assert_int_equal(json_array_size(oc.got), 3);
    for (size_t i = 0; i < 3; i++) {
        o = json_array_get(oc.got, i);
        /* OCSF base event members every class requires */
        assert_true(json_is_integer(json_object_get(o, "class_uid")));
        assert_true(json_is_integer(json_object_get(o, "category_uid")));
        assert_true(json_is_integer(json_object_get(o, "activity_id")));
        assert_int_equal(json_integer_value(json_object_get(o, "type_uid")),
                         json_integer_value(json_object_get(o, "class_uid")) * 100 +
                             json_integer_value(json_object_get(o, "activity_id")));
        assert_true(json_is_integer(json_object_get(o, "time")));
        assert_true(json_is_integer(json_object_get(o, "severity_id")));
        assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(o, "metadata"),
                                                                              "product"), "name")), "Vigil");
        assert_true(json_is_string(json_object_get(json_object_get(o, "metadata"), "version")));
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "metadata"), "sequence")), i + 1);
        /* seq and chain are the native record's */
        assert_int_equal(audit_chain_split(nat.lines[i], strlen(nat.lines[i]), &body, chain), 0);
        for (size_t k = 0; k < 32; k++)
            snprintf(hex + 2 * k, 3, "%02x", chain[k]);
        assert_string_equal(json_string_value(json_object_get(json_object_get(o, "unmapped"), "chain")), hex);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "unmapped"), "seq")), i + 1);
    }
    o = json_array_get(oc.got, 0);
    n = json_array_get(nat.got, 0);
    assert_int_equal(json_integer_value(json_object_get(o, "class_uid")), 4002);
    assert_int_equal(json_integer_value(json_object_get(o, "category_uid")), 4);
    assert_int_equal(json_integer_value(json_object_get(o, "activity_id")), 3); /* Get */
    assert_int_equal(json_integer_value(json_object_get(o, "action_id")), 2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "metadata"), "uid")),
                        json_string_value(json_object_get(n, "flow_id")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "http_request"), "http_method")), "GET");
    o = json_object_get(json_object_get(json_array_get(oc.got, 0), "http_request"), "url");
    assert_string_equal(json_string_value(json_object_get(o, "hostname")), "example.com");
    assert_string_equal(json_string_value(json_object_get(o, "path")), "/a\"b");
    assert_string_equal(json_string_value(json_object_get(o, "query_string")), "x=1");
    assert_int_equal(json_integer_value(json_object_get(o, "port")), 80);
    assert_string_equal(json_string_value(json_object_get(o, "scheme")), "http");
    o = json_array_get(oc.got, 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "src_endpoint"), "ip")), "127.0.0.1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "dst_endpoint"), "ip")),
                        "93.184.216.34");
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "unmapped"), "phase")), "pre_request");
    o = json_array_get(oc.got, 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "http_response"), "code")), 200);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "http_response"), "length")), 5);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "traffic"), "bytes_out")), 10);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "traffic"), "bytes_in")), 20);
    assert_int_equal(json_integer_value(json_object_get(o, "duration")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(oc.got, 2), "class_uid")), 5019);
    audit_pipeline_free(p);
    audit_ring_free(r);
    gated_fini(&nat);
    gated_fini(&oc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_seqs_contiguous_from_one),
        cmocka_unit_test(test_pipeline_ring_overflow_emits_loss),
        cmocka_unit_test(test_pipeline_refused_flows_emit_loss),
        cmocka_unit_test(test_pipeline_sink_fail_counts_and_reports),
        cmocka_unit_test(test_pipeline_sink_dropped_counter_reported),
        cmocka_unit_test(test_pipeline_sink_retry_delivers_once),
        cmocka_unit_test(test_pipeline_stop_drains_everything),
        cmocka_unit_test(test_pipeline_edge_cases),
        cmocka_unit_test(test_pipeline_chain_links_every_record),
        cmocka_unit_test(test_pipeline_last_chain_continues),
        cmocka_unit_test(test_pipeline_stuck_sink_drop_others_keep_going),
        cmocka_unit_test(test_pipeline_stuck_sink_block_backs_up_ring),
        cmocka_unit_test(test_pipeline_ocsf_sink_gets_ocsf_form),
        cmocka_unit_test(test_pipeline_stuck_sink_spill_replays_in_order),
    };
    return cmocka_run_group_tests_name("audit/pipeline", tests, NULL, NULL);
}
