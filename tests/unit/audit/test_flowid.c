/* tests/unit/audit/test_flowid.c - flow ids: Crockford base32 text, time ordering within a
 * thread, uniqueness across threads, and strict parsing. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "audit/audit.h"

#define ORDER_IDS 100000
#define UNIQ_THREADS 4
#define UNIQ_IDS 50000

static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* formatting then parsing gives back the same 16 bytes, for new ids and edge values */
static void test_flowid_format_parse_roundtrip(void **state)
{
    uint8_t id[16], back[16];
    char text[AUDIT_FLOW_ID_LEN + 1];

    for (int i = 0; i < 1000; i++) {
        audit_flow_id_new(id);
        audit_flow_id_format(id, text);
        assert_int_equal(audit_flow_id_parse(text, back), 0);
        assert_memory_equal(id, back, 16);
    }
    memset(id, 0xFF, 16);
    audit_flow_id_format(id, text);
    assert_string_equal(text, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
    assert_int_equal(audit_flow_id_parse(text, back), 0);
    assert_memory_equal(id, back, 16);
    memset(id, 0, 16);
    audit_flow_id_format(id, text);
    assert_string_equal(text, "00000000000000000000000000");
    /* one bit at the edges of the 5-bit groups that straddle the 64-bit halves */
    memset(id, 0, 16);
    id[7] = 0x01;
    audit_flow_id_format(id, text);
    assert_int_equal(audit_flow_id_parse(text, back), 0);
    assert_memory_equal(id, back, 16);
    memset(id, 0, 16);
    id[8] = 0x80;
    audit_flow_id_format(id, text);
    assert_int_equal(audit_flow_id_parse(text, back), 0);
    assert_memory_equal(id, back, 16);
}

/* the known ULID text of a known value: 48-bit time 1469918176385, then 80 bits */
static void test_flowid_format_known_value(void **state)
{
    uint8_t id[16], back[16];
    char text[AUDIT_FLOW_ID_LEN + 1];

    /* 01ARYZ6S41 is the ULID spec's encoding of 1469918176385 ms; the rest is all ones */
    assert_int_equal(audit_flow_id_parse("01ARYZ6S41ZZZZZZZZZZZZZZZZ", back), 0);
    assert_int_equal(audit_flow_id_time_ms(back), 1469918176385ULL);
    for (int i = 6; i < 16; i++)
        assert_int_equal(back[i], 0xFF);
    memcpy(id, back, 16);
    audit_flow_id_format(id, text);
    assert_string_equal(text, "01ARYZ6S41ZZZZZZZZZZZZZZZZ");
}

/* every id is 26 characters from the Crockford alphabet and starts with 0-7 */
static void test_flowid_format_uses_crockford_alphabet(void **state)
{
    uint8_t id[16];
    char text[AUDIT_FLOW_ID_LEN + 1];

    for (int i = 0; i < 1000; i++) {
        audit_flow_id_new(id);
        audit_flow_id_format(id, text);
        assert_int_equal(strlen(text), AUDIT_FLOW_ID_LEN);
        assert_true(text[0] >= '0' && text[0] <= '7');
        for (int k = 0; k < AUDIT_FLOW_ID_LEN; k++)
            assert_non_null(strchr(alphabet, text[k]));
    }
}

/* ids from one thread strictly increase, as bytes and as text */
static void test_flowid_same_thread_strictly_increasing(void **state)
{
    uint8_t prev[16], id[16];
    char prevt[AUDIT_FLOW_ID_LEN + 1], text[AUDIT_FLOW_ID_LEN + 1];

    audit_flow_id_new(prev);
    audit_flow_id_format(prev, prevt);
    for (int i = 0; i < ORDER_IDS; i++) {
        audit_flow_id_new(id);
        audit_flow_id_format(id, text);
        assert_true(memcmp(prev, id, 16) < 0);
        assert_true(strcmp(prevt, text) < 0);
        memcpy(prev, id, 16);
        memcpy(prevt, text, sizeof(text));
    }
}

static void *make_ids(void *arg)
{
    uint8_t (*ids)[16] = arg;

    for (int i = 0; i < UNIQ_IDS; i++)
        audit_flow_id_new(ids[i]);
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

/* 4 threads x 50k ids: no two are equal */
static void test_flowid_threads_ids_unique(void **state)
{
    uint8_t (*ids)[16] = calloc((size_t)UNIQ_THREADS * UNIQ_IDS, 16);
    pthread_t th[UNIQ_THREADS];

    assert_non_null(ids);
    for (int i = 0; i < UNIQ_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, make_ids, ids + (size_t)i * UNIQ_IDS), 0);
    for (int i = 0; i < UNIQ_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    qsort(ids, (size_t)UNIQ_THREADS * UNIQ_IDS, 16, cmp_id);
    for (size_t i = 1; i < (size_t)UNIQ_THREADS * UNIQ_IDS; i++)
        assert_true(memcmp(ids[i - 1], ids[i], 16) < 0);
    free(ids);
}

/* the timestamp in a new id is the wall clock of its creation */
static void test_flowid_time_ms_matches_clock(void **state)
{
    uint8_t id[16];
    uint64_t before, after, t;

    before = now_ms();
    audit_flow_id_new(id);
    after = now_ms();
    t = audit_flow_id_time_ms(id);
    /* a same-ms id keeps the ms and moves only the random bits, so the clock bounds it */
    assert_true(t >= before);
    assert_true(t <= after);
}

/* parsing is case-insensitive and rejects wrong lengths, characters outside the alphabet and overflow */
static void test_flowid_parse_rejects_malformed(void **state)
{
    uint8_t a[16], b[16];

    assert_int_equal(audit_flow_id_parse("01ARYZ6S41TSV4RRFFQ69G5FAV", a), 0);
    assert_int_equal(audit_flow_id_parse("01aryz6s41tsv4rrffq69g5fav", b), 0);
    assert_memory_equal(a, b, 16);
    assert_int_equal(audit_flow_id_parse("01ARYZ6S41TSV4RRFFQ69G5FA", a), -1);   /* 25 */
    assert_int_equal(audit_flow_id_parse("01ARYZ6S41TSV4RRFFQ69G5FAVX", a), -1); /* 27 */
    assert_int_equal(audit_flow_id_parse("", a), -1);
    assert_int_equal(audit_flow_id_parse(NULL, a), -1);
    assert_int_equal(audit_flow_id_parse("01ARYZ6S41TSV4RRFFQ69G5FAU", a), -1); /* U */
    assert_int_equal(audit_flow_id_parse("01ARYZ6S41TSV4RRFFQ69G5FAI", a), -1); /* I */
    assert_int_equal(audit_flow_id_parse("01ARYZ6S41TSV4RRFFQ69G5FAL", a), -1); /* L */
    assert_int_equal(audit_flow_id_parse("01ARYZ6S41TSV4RRFFQ69G5FAO", a), -1); /* O */
    assert_int_equal(audit_flow_id_parse("01ARYZ6S41TSV4RRFFQ69G5FA-", a), -1);
    assert_int_equal(audit_flow_id_parse("81ARYZ6S41TSV4RRFFQ69G5FAV", a), -1); /* > 128 bits */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flowid_format_parse_roundtrip),
        cmocka_unit_test(test_flowid_format_known_value),
        cmocka_unit_test(test_flowid_format_uses_crockford_alphabet),
        cmocka_unit_test(test_flowid_same_thread_strictly_increasing),
        cmocka_unit_test(test_flowid_threads_ids_unique),
        cmocka_unit_test(test_flowid_time_ms_matches_clock),
        cmocka_unit_test(test_flowid_parse_rejects_malformed),
    };
    return cmocka_run_group_tests_name("audit/flowid", tests, NULL, NULL);
}
