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

#include "audit/audit.h"
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
    };
    return cmocka_run_group_tests_name("audit/pipeline", tests, NULL, NULL);
}
