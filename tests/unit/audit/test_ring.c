/* tests/unit/audit/test_ring.c - the bounded MPSC ring: order, overflow accounting, admission
 * per policy, and a many-producer stress run that checks nothing is lost, duplicated or
 * reordered per producer. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit/audit.h"

#define STRESS_PRODUCERS 4
#define STRESS_EVENTS 200000

static void make_event(struct audit_event *ev, uint64_t a, uint64_t b)
{
    audit_event_init(ev, AUDIT_EVENT_FLOW_END);
    ev->bytes_up = a;
    ev->bytes_down = b;
}

static size_t fill_ring(struct audit_ring *r)
{
    struct audit_event ev;
    size_t n = 0;

    make_event(&ev, 0, 0);
    while (audit_emit(r, &ev) == 0)
        ev.bytes_up = ++n;
    return n;
}

/* popping an empty ring fails and leaves the output alone */
static void test_ring_empty_pop_fails(void **state)
{
    struct audit_ring *r = audit_ring_new(8, AUDIT_OVERFLOW_DROP);
    struct audit_event out;

    assert_non_null(r);
    assert_int_equal(audit_ring_pop(r, &out), -1);
    assert_int_equal(audit_ring_depth(r), 0);
    audit_ring_free(r);
}

/* events come out in the order they went in, twice around the ring */
static void test_ring_fifo_order_preserved(void **state)
{
    struct audit_ring *r = audit_ring_new(4, AUDIT_OVERFLOW_DROP);
    struct audit_event ev, out;
    uint64_t next_in = 0, next_out = 0;

    assert_non_null(r);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 3; i++) {
            make_event(&ev, next_in++, 0);
            assert_int_equal(audit_emit(r, &ev), 0);
        }
        assert_int_equal(audit_ring_depth(r), 3);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(audit_ring_pop(r, &out), 0);
            assert_int_equal(out.bytes_up, next_out++);
            assert_int_equal(out.kind, AUDIT_EVENT_FLOW_END);
        }
    }
    assert_int_equal(audit_ring_pop(r, &out), -1);
    assert_int_equal(audit_ring_total_pushed(r), 15);
    audit_ring_free(r);
}

/* a full ring fails the push and counts exactly one lost event per failure, under every policy */
static void test_ring_full_emit_counts_lost(void **state)
{
    for (int pol = AUDIT_OVERFLOW_FAIL_CLOSED; pol <= AUDIT_OVERFLOW_DROP; pol++) {
        struct audit_ring *r = audit_ring_new(16, (enum audit_overflow)pol);
        struct audit_event ev, out;

        assert_non_null(r);
        assert_int_equal(fill_ring(r), 16);
        assert_int_equal(audit_ring_total_lost(r), 1); /* the push that found it full */
        make_event(&ev, 99, 0);
        assert_int_equal(audit_emit(r, &ev), -1);
        assert_int_equal(audit_ring_take_lost(r), 2);
        assert_int_equal(audit_ring_take_lost(r), 0);
        assert_int_equal(audit_ring_total_lost(r), 2);
        assert_int_equal(audit_ring_take_refused(r), 0);
        /* space returns after a pop, and the oldest event comes out first */
        assert_int_equal(audit_ring_pop(r, &out), 0);
        assert_int_equal(out.bytes_up, 0);
        assert_int_equal(audit_emit(r, &ev), 0);
        audit_ring_free(r);
    }
}

/* under drop, admission always succeeds and never counts a refusal */
static void test_ring_admit_drop_always_admits(void **state)
{
    struct audit_ring *r = audit_ring_new(8, AUDIT_OVERFLOW_DROP);

    assert_non_null(r);
    assert_int_equal(audit_ring_admit(r), 0);
    fill_ring(r);
    assert_int_equal(audit_ring_admit(r), 0);
    assert_int_equal(audit_ring_take_refused(r), 0);
    assert_int_equal(audit_ring_total_refused(r), 0);
    audit_ring_free(r);
}

/* under fail_closed, admission stops once the reserve (capacity / 4) is reached and each refusal is counted */
static void test_ring_admit_fail_closed_refuses_and_counts(void **state)
{
    struct audit_ring *r = audit_ring_new(16, AUDIT_OVERFLOW_FAIL_CLOSED);
    struct audit_event ev, out;

    assert_non_null(r);
    make_event(&ev, 0, 0);
    for (int i = 0; i < 12; i++) { /* 16 - reserve 4 */
        assert_int_equal(audit_ring_admit(r), 0);
        assert_int_equal(audit_emit(r, &ev), 0);
    }
    assert_int_equal(audit_ring_admit(r), -1);
    assert_int_equal(audit_ring_admit(r), -1);
    assert_int_equal(audit_ring_take_refused(r), 2);
    assert_int_equal(audit_ring_take_refused(r), 0);
    assert_int_equal(audit_ring_total_refused(r), 2);
    /* running flows still have room for their events */
    for (int i = 0; i < 4; i++)
        assert_int_equal(audit_emit(r, &ev), 0);
    assert_int_equal(audit_ring_take_lost(r), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(audit_ring_pop(r, &out), 0);
    assert_int_equal(audit_ring_admit(r), 0);
    audit_ring_free(r);
}

/* under block, admission stops at the reserve but counts no refusal (the proxy stops accepting) */
static void test_ring_admit_block_refuses_without_counting(void **state)
{
    struct audit_ring *r = audit_ring_new(16, AUDIT_OVERFLOW_BLOCK);
    struct audit_event ev;

    assert_non_null(r);
    make_event(&ev, 0, 0);
    for (int i = 0; i < 12; i++) /* 16 - reserve 4 */
        assert_int_equal(audit_emit(r, &ev), 0);
    assert_int_equal(audit_ring_admit(r), -1);
    assert_int_equal(audit_ring_take_refused(r), 0);
    assert_int_equal(audit_ring_policy(r), AUDIT_OVERFLOW_BLOCK);
    audit_ring_free(r);
}

/* the smallest ring still admits a flow into an empty ring */
static void test_ring_admit_tiny_ring_admits_when_empty(void **state)
{
    struct audit_ring *r = audit_ring_new(1, AUDIT_OVERFLOW_FAIL_CLOSED);

    assert_non_null(r);
    assert_int_equal(audit_ring_capacity(r), 16);
    assert_int_equal(audit_ring_admit(r), 0);
    audit_ring_free(r);
}

/* capacity is rounded up to a power of two, at least 16, and the ring holds that many small events */
static void test_ring_capacity_rounded_to_power_of_two(void **state)
{
    static const size_t in[] = {0, 1, 2, 3, 5, 64, 65, 1000, 1024};
    static const size_t want[] = {16, 16, 16, 16, 16, 64, 128, 1024, 1024};

    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        struct audit_ring *r = audit_ring_new(in[i], AUDIT_OVERFLOW_DROP);

        assert_non_null(r);
        assert_int_equal(audit_ring_capacity(r), want[i]);
        if (want[i] <= 128)
            assert_int_equal(fill_ring(r), want[i]);
        audit_ring_free(r);
    }
}

/* an impossible capacity or policy yields NULL, and freeing NULL does nothing */
static void test_ring_new_bad_args_fails(void **state)
{
    assert_null(audit_ring_new(SIZE_MAX, AUDIT_OVERFLOW_DROP));
    assert_null(audit_ring_new(8, (enum audit_overflow)7));
    audit_ring_free(NULL);
}

/* the policy names parse to their values and anything else is rejected */
static void test_ring_overflow_parse_names(void **state)
{
    enum audit_overflow o;

    assert_int_equal(audit_overflow_parse("fail_closed", &o), 0);
    assert_int_equal(o, AUDIT_OVERFLOW_FAIL_CLOSED);
    assert_int_equal(audit_overflow_parse("block", &o), 0);
    assert_int_equal(o, AUDIT_OVERFLOW_BLOCK);
    assert_int_equal(audit_overflow_parse("drop", &o), 0);
    assert_int_equal(o, AUDIT_OVERFLOW_DROP);
    assert_int_equal(audit_overflow_parse("DROP", &o), -1);
    assert_int_equal(audit_overflow_parse("", &o), -1);
    assert_int_equal(audit_overflow_parse(NULL, &o), -1);
}

/* copying only the used bytes keeps every string and scalar of the event intact */
static void test_ring_used_size_copy_roundtrips_strings(void **state)
{
    struct audit_ring *r = audit_ring_new(2, AUDIT_OVERFLOW_DROP);
    struct audit_event ev, out;
    const char *s;
    size_t len;

    assert_non_null(r);
    audit_event_init(&ev, AUDIT_EVENT_FLOW_PHASE);
    audit_event_set_str(&ev, AUDIT_STR_HOST, "example.com", 11);
    audit_event_set_str(&ev, AUDIT_STR_PATH, "/a/b", 4);
    ev.flags = AUDIT_F_REQUEST;
    ev.request_port = 8080;
    memset(&out, 0xA5, sizeof(out)); /* garbage where the copy must not matter */
    assert_int_equal(audit_emit(r, &ev), 0);
    assert_int_equal(audit_ring_pop(r, &out), 0);
    assert_int_equal(audit_event_used_size(&out), audit_event_used_size(&ev));
    assert_memory_equal(&out, &ev, audit_event_used_size(&ev));
    s = audit_event_str(&out, AUDIT_STR_HOST, &len);
    assert_non_null(s);
    assert_int_equal(len, 11);
    assert_memory_equal(s, "example.com", 11);
    s = audit_event_str(&out, AUDIT_STR_PATH, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(s, "/a/b", 4);
    assert_null(audit_event_str(&out, AUDIT_STR_QUERY, &len));
    assert_int_equal(out.request_port, 8080);
    audit_ring_free(r);
}

struct producer {
    struct audit_ring *r;
    uint64_t id;
    uint64_t failures; /* pushes that found the ring full */
};

static void *producer_main(void *arg)
{
    struct producer *pr = arg;
    struct audit_event ev;

    for (uint64_t i = 0; i < STRESS_EVENTS; i++) {
        char path[3000];
        size_t plen = (size_t)((i * 37) % sizeof(path)); /* 0 to 4 slots: spans wrap the ring end */
        make_event(&ev, pr->id, i);
        memset(path, (int)('a' + (i + pr->id) % 26), plen);
        audit_event_set_str(&ev, AUDIT_STR_PATH, path, plen);
        while (audit_emit(pr->r, &ev) == -1) {
            pr->failures++;
            sched_yield();
        }
    }
    return NULL;
}

/* 4 producers x 200k events of 1 to 4 slots, 1024 slots: each event arrives once and intact, in producer
 * order; failed pushes count as lost */
static void test_ring_stress_no_loss_no_duplicate_order_kept(void **state)
{
    struct audit_ring *r = audit_ring_new(1024, AUDIT_OVERFLOW_DROP);
    struct producer pr[STRESS_PRODUCERS];
    pthread_t th[STRESS_PRODUCERS];
    uint64_t next[STRESS_PRODUCERS] = {0}, received = 0, failures = 0;
    const uint64_t total = (uint64_t)STRESS_PRODUCERS * STRESS_EVENTS;
    struct audit_event out;

    assert_non_null(r);
    for (int i = 0; i < STRESS_PRODUCERS; i++) {
        pr[i] = (struct producer){.r = r, .id = (uint64_t)i};
        assert_int_equal(pthread_create(&th[i], NULL, producer_main, &pr[i]), 0);
    }
    while (received < total) {
        if (audit_ring_pop(r, &out) == -1) {
            sched_yield();
            continue;
        }
        assert_true(out.bytes_up < STRESS_PRODUCERS);
        /* in producer order and no duplicate: exactly the next one expected from it */
        assert_int_equal(out.bytes_down, next[out.bytes_up]);
        size_t plen;
        const char *path = audit_event_str(&out, AUDIT_STR_PATH, &plen);
        assert_int_equal(plen, (size_t)((out.bytes_down * 37) % 3000));
        for (size_t k = 0; k < plen; k++) /* every byte of every span arrived intact */
            assert_int_equal(path[k], (char)('a' + (out.bytes_down + out.bytes_up) % 26));
        next[out.bytes_up]++;
        received++;
    }
    for (int i = 0; i < STRESS_PRODUCERS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(next[i], STRESS_EVENTS);
        failures += pr[i].failures;
    }
    assert_int_equal(audit_ring_pop(r, &out), -1);
    assert_int_equal(audit_ring_total_pushed(r), total);
    assert_int_equal(audit_ring_total_lost(r), failures);
    assert_int_equal(audit_ring_take_lost(r), failures);
    audit_ring_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_empty_pop_fails),
        cmocka_unit_test(test_ring_fifo_order_preserved),
        cmocka_unit_test(test_ring_full_emit_counts_lost),
        cmocka_unit_test(test_ring_admit_drop_always_admits),
        cmocka_unit_test(test_ring_admit_fail_closed_refuses_and_counts),
        cmocka_unit_test(test_ring_admit_block_refuses_without_counting),
        cmocka_unit_test(test_ring_admit_tiny_ring_admits_when_empty),
        cmocka_unit_test(test_ring_capacity_rounded_to_power_of_two),
        cmocka_unit_test(test_ring_new_bad_args_fails),
        cmocka_unit_test(test_ring_overflow_parse_names),
        cmocka_unit_test(test_ring_used_size_copy_roundtrips_strings),
        cmocka_unit_test(test_ring_stress_no_loss_no_duplicate_order_kept),
    };
    return cmocka_run_group_tests_name("audit/ring", tests, NULL, NULL);
}
