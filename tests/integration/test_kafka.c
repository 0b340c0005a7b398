/* tests/integration/test_kafka.c - the kafka sink against a real Kafka protocol peer.
 *
 * vigil-kafka-mock (librdkafka's mock cluster, on 127.0.0.1 with a port it picks) is the broker;
 * kcat reads the topic back. Every test runs vigil with the file sink and a kafka sink, drives
 * traffic with curl, and compares what kcat reads with the file sink's record, field for field:
 * the payload is the record, the key its flow_id (its seq without one), the "seq" and "chain"
 * headers the record's. The outage tests take the broker down (SIGUSR1) and up (SIGUSR2) under
 * traffic and check that every event of the file record reaches the topic at least once,
 * duplicates being recognisable by their seq. The mock is stopped by PID at teardown. */
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define TOPIC "vigil-audit"
#define WAIT_MS 60000

static struct h_proc mock; /* the broker of the running test */
static char bootstrap[256];

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static int setup(void **state)
{
    memset(&mock, 0, sizeof(mock));
    bootstrap[0] = '\0';
    return h_setup(state);
}

static int teardown(void **state)
{
    h_stop(&mock);
    return h_teardown(state);
}

/* Waits (bounded) until <p>'s stdout has the line <line>; fails the test otherwise. */
static void wait_line(struct h_proc *p, const char *line)
{
    long long end = now_ms() + 10000;

    for (;;) {
        char *text = h_slurp(p->out_path, NULL);
        int found = 0;

        if (text != NULL) {
            for (char *l = text; l != NULL && *l != '\0';) {
                char *eol = strchr(l, '\n');

                if (eol == NULL)
                    break;
                if ((size_t)(eol - l) == strlen(line) && memcmp(l, line, strlen(line)) == 0)
                    found = 1;
                l = eol + 1;
            }
        }
        free(text);
        if (found)
            return;
        if (h_wait_exit(p, 0) != -1)
            fail_msg("%s exited before printing \"%s\"", p->name, line);
        if (now_ms() >= end)
            fail_msg("%s did not print \"%s\" within 10 s", p->name, line);
        pause_ms(20);
    }
}

static void start_mock(struct h_env *e)
{
    char topic[] = "--topic", spec[] = TOPIC ":3";
    char *const argv[] = { KAFKA_MOCK_BIN, topic, spec, NULL };
    long long end = now_ms() + 10000;

    h_spawn(e, &mock, "kafka-mock", argv);
    for (;;) {
        char *text = h_slurp(mock.out_path, NULL);
        char *eol = text != NULL ? strchr(text, '\n') : NULL;

        if (eol != NULL) {
            *eol = '\0';
            snprintf(bootstrap, sizeof(bootstrap), "%s", text);
            free(text);
            break;
        }
        free(text);
        if (h_wait_exit(&mock, 0) != -1 || now_ms() >= end)
            fail_msg("vigil-kafka-mock printed no bootstrap line");
        pause_ms(20);
    }
    if (strncmp(bootstrap, "127.0.0.1:", 10) != 0)
        fail_msg("the mock broker is not on loopback: %s", bootstrap);
}

static void mock_signal(int sig, const char *line)
{
    assert_true(mock.pid > 0);
    assert_int_equal(kill(mock.pid, sig), 0);
    wait_line(&mock, line);
}

/* The harness's test config plus a kafka sink named "siem" (with <props>, a JSON object, or
 * NULL), and the file sink closing frames every 100 ms so the record can be read while vigil
 * runs. Returns a string to free. */
static char *kafka_config(const char *props)
{
    json_error_t jerr;
    json_t *root = json_loads(h_config(NULL), 0, &jerr), *sinks, *k;
    char *text;

    assert_non_null(root);
    sinks = json_object_get(root, "sinks");
    assert_true(json_is_array(sinks));
    json_object_set_new(json_array_get(sinks, 0), "frame_ms", json_integer(100));
    k = json_pack("{s:s, s:s, s:s, s:s}", "type", "kafka", "name", "siem", "brokers", bootstrap, "topic", TOPIC);
    assert_non_null(k);
    if (props != NULL) {
        json_t *p = json_loads(props, 0, &jerr);

        if (p == NULL)
            fail_msg("bad test properties: %s", jerr.text);
        json_object_set_new(k, "properties", p);
    }
    json_array_append_new(sinks, k);
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    assert_non_null(text);
    return text;
}

/* Everything on the topic, as kcat -J prints it: an array of {"key", "payload", "headers", ...}. */
static json_t *read_topic(struct h_env *e)
{
    char c[] = "-C", b[] = "-b", t[] = "-t", topic[] = TOPIC, ex[] = "-e", q[] = "-q", j[] = "-J";
    char *const argv[] = { KCAT_BIN, c, b, bootstrap, t, topic, ex, q, j, NULL };
    char *out = NULL, *err = NULL;
    json_t *msgs = json_array();
    int st;

    if (access(KCAT_BIN, X_OK) != 0)
        fail_msg("kcat is not installed (%s): apt-get install kcat", KCAT_BIN);
    st = h_run(e, "kcat", argv, 30000, &out, &err);
    if (st != 0)
        fail_msg("kcat exited %d: %s", st, err != NULL ? err : "");
    for (char *line = out, *eol; line != NULL && *line != '\0'; line = eol) {
        json_error_t jerr;
        json_t *m;

        eol = strchr(line, '\n');
        if (eol != NULL)
            *eol++ = '\0';
        else
            eol = line + strlen(line);
        if (*line == '\0')
            continue;
        m = json_loads(line, 0, &jerr);
        if (!json_is_object(m))
            fail_msg("kcat printed a line that is not JSON (%s): %.300s", jerr.text, line);
        json_array_append_new(msgs, m);
    }
    free(out);
    free(err);
    return msgs;
}

/* The value of header <name> of kcat message <m> (headers: ["k1","v1","k2","v2"]), or NULL. */
static const char *header(json_t *m, const char *name)
{
    json_t *h = json_object_get(m, "headers");
    const char *v = NULL;

    for (size_t i = 0; json_is_array(h) && i + 1 < json_array_size(h); i += 2) {
        if (json_is_string(json_array_get(h, i)) && strcmp(json_string_value(json_array_get(h, i)), name) == 0)
            v = json_string_value(json_array_get(h, i + 1));
    }
    return v;
}

/* Checks one message against the record and returns its payload's seq. */
static long long check_message(json_t *m)
{
    json_error_t jerr;
    const char *payload = json_string_value(json_object_get(m, "payload"));
    const char *key = json_string_value(json_object_get(m, "key"));
    const char *hseq = header(m, "seq"), *hchain = header(m, "chain");
    json_t *rec;
    long long seq;
    char buf[32];

    if (payload == NULL || key == NULL || hseq == NULL)
        fail_msg("message without payload, key or seq header: %s", json_dumps(m, JSON_COMPACT));
    rec = json_loads(payload, 0, &jerr);
    if (!json_is_object(rec))
        fail_msg("payload is not a JSON object: %.300s", payload);
    seq = h_int(rec, "seq");
    snprintf(buf, sizeof(buf), "%lld", seq);
    assert_string_equal(hseq, buf);
    if (json_is_string(json_object_get(rec, "flow_id")))
        assert_string_equal(key, json_string_value(json_object_get(rec, "flow_id")));
    else
        assert_string_equal(key, buf);
    if (json_is_string(json_object_get(rec, "chain"))) {
        assert_non_null(hchain);
        assert_string_equal(hchain, json_string_value(json_object_get(rec, "chain")));
    } else {
        assert_null(hchain);
    }
    json_decref(rec);
    return seq;
}

/* The file record's event with <seq>, or NULL. */
static json_t *event_with_seq(json_t *events, long long seq)
{
    size_t i;
    json_t *ev;

    json_array_foreach(events, i, ev) {
        if (json_integer_value(json_object_get(ev, "seq")) == seq)
            return ev;
    }
    return NULL;
}

/* Compares the topic with the file record: every message is a record event, equal field for
 * field, and every event is on the topic at least once (<exactly_once>: exactly once).
 * Returns the number of duplicates. */
static size_t compare_with_record(json_t *events, json_t *msgs, int exactly_once)
{
    size_t i, n = json_array_size(events), dups = 0;
    long long max_seq = 0;
    unsigned *count;
    json_t *ev, *m;

    json_array_foreach(events, i, ev) {
        if (h_int(ev, "seq") > max_seq)
            max_seq = h_int(ev, "seq");
    }
    count = calloc((size_t)max_seq + 1, sizeof(*count));
    assert_non_null(count);
    json_array_foreach(msgs, i, m) {
        long long seq = check_message(m);
        json_t *rec = json_loads(json_string_value(json_object_get(m, "payload")), 0, NULL);

        ev = event_with_seq(events, seq);
        if (ev == NULL)
            fail_msg("seq %lld is on the topic but not in the file record", seq);
        if (!json_equal(rec, ev))
            fail_msg("seq %lld differs:\n kafka %s\n file  %s", seq, json_dumps(rec, JSON_COMPACT),
                     json_dumps(ev, JSON_COMPACT));
        json_decref(rec);
        if (count[seq]++ > 0)
            dups++;
    }
    json_array_foreach(events, i, ev) {
        long long seq = h_int(ev, "seq");

        if (count[seq] == 0)
            fail_msg("seq %lld (%s) of the file record never reached the topic (%zu messages, %zu events)", seq,
                     h_str(ev, "event"), json_array_size(msgs), n);
        if (exactly_once && count[seq] != 1)
            fail_msg("seq %lld is on the topic %u times", seq, count[seq]);
    }
    free(count);
    return dups;
}

/* Runs <n> GETs through the proxy, each one answered 200. */
static void traffic(struct h_env *e, const char *tag, int n)
{
    for (int i = 0; i < n; i++) {
        struct h_result r;
        char path[96];

        snprintf(path, sizeof(path), "/bytes/%d?%s=%d", 100 + i, tag, i);
        h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, path), NULL);
        h_expect_http(&r, 0, 200);
        h_result_fini(&r);
    }
}

/* The record as audit-query reads it now, vigil running (closed frames only). */
static json_t *record_now(struct h_env *e)
{
    char fmt[] = "json", search[] = "search";
    char *const argv[] = { AUDIT_QUERY_BIN, search, "--data-dir", e->data_dir, "--format", fmt, NULL };
    char *out = NULL, *err = NULL;
    json_t *events = json_array();

    if (h_run(e, "audit-query-now", argv, 30000, &out, &err) != 0)
        fail_msg("audit-query: %s", err != NULL ? err : "");
    for (char *line = out, *eol; line != NULL && *line != '\0'; line = eol) {
        json_t *ev;

        eol = strchr(line, '\n');
        if (eol != NULL)
            *eol++ = '\0';
        else
            eol = line + strlen(line);
        ev = json_loads(line, 0, NULL);
        if (ev != NULL)
            json_array_append_new(events, ev);
    }
    free(out);
    free(err);
    return events;
}

/* Whether some event of <events> has request.query <query>. */
static int has_query(json_t *events, const char *query)
{
    size_t i;
    json_t *ev;

    json_array_foreach(events, i, ev) {
        json_t *q = h_get(ev, "request.query");

        if (json_is_string(q) && strcmp(json_string_value(q), query) == 0)
            return 1;
    }
    return 0;
}

/* Waits (bounded) until every event the file record holds now is on the topic. */
static void wait_delivered(struct h_env *e)
{
    long long end = now_ms() + WAIT_MS;

    for (;;) {
        json_t *events = record_now(e), *msgs = read_topic(e), *ev;
        size_t i, missing = 0;

        json_array_foreach(events, i, ev) {
            size_t j;
            json_t *m;
            int found = 0;

            json_array_foreach(msgs, j, m) {
                const char *s = header(m, "seq");

                if (s != NULL && strtoll(s, NULL, 10) == h_int(ev, "seq")) {
                    found = 1;
                    break;
                }
            }
            missing += !found;
        }
        json_decref(events);
        json_decref(msgs);
        if (missing == 0)
            return;
        if (now_ms() >= end)
            fail_msg("%zu events of the file record still not on the topic after %d ms", missing, WAIT_MS);
        pause_ms(200);
    }
}

/* Waits (bounded) until vigil's stderr has <needle>. */
static void wait_vigil_says(struct h_env *e, const char *needle, int deadline_ms)
{
    long long end = now_ms() + deadline_ms;

    for (;;) {
        char *text = h_slurp(e->vigil.err_path, NULL);
        int found = text != NULL && strstr(text, needle) != NULL;

        free(text);
        if (found)
            return;
        if (now_ms() >= end) {
            text = h_slurp(e->vigil.err_path, NULL);
            fail_msg("vigil did not say \"%s\" within %d ms; stderr:\n%s", needle, deadline_ms, text ? text : "");
        }
        pause_ms(20);
    }
}

/* what kcat reads from the topic is the file sink's record, field for field, each event once */
static void test_kafka_topic_matches_file_record(void **state)
{
    struct h_env *e = *state;
    char *conf;
    json_t *msgs;
    struct h_result r;

    start_mock(e);
    conf = kafka_config(NULL);
    h_start(e, conf, H_DEFAULT);
    free(conf);
    traffic(e, "plain", 4);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--cacert", e->cert, h_origin_url(e, 1, "/bytes/64"), NULL);
    h_expect_http(&r, 0, 200);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    msgs = read_topic(e);
    assert_true(json_array_size(msgs) >= 5 * 3);
    assert_int_equal(compare_with_record(e->events, msgs, 1), 0);
    json_decref(msgs);
    h_done(e);
}

/* with the broker down under traffic the proxy keeps serving, the file sink keeps writing, and
 * once it is back every event reaches the topic at least once (replayed after timed-out deliveries) */
static void test_kafka_outage_every_event_delivered(void **state)
{
    struct h_env *e = *state;
    char *conf;
    json_t *msgs, *now;
    size_t dups;
    long long end;

    start_mock(e);
    conf = kafka_config("{\"message.timeout.ms\": \"1500\", \"reconnect.backoff.ms\": \"50\","
                        " \"reconnect.backoff.max.ms\": \"500\"}");
    h_start(e, conf, H_DEFAULT);
    free(conf);
    traffic(e, "before", 3);

    mock_signal(SIGUSR1, "brokers down");
    traffic(e, "during", 10);
    /* the file sink is not held up by kafka: the outage's flows are in the file record now */
    end = now_ms() + 10000;
    for (;;) {
        int ok;

        now = record_now(e);
        ok = has_query(now, "during=9");
        json_decref(now);
        if (ok)
            break;
        if (now_ms() >= end)
            fail_msg("the file record did not get the flows made during the kafka outage");
        pause_ms(50);
    }
    /* deliveries time out (message.timeout.ms): the records stay in the spool */
    wait_vigil_says(e, "delivery failed", 20000);
    traffic(e, "still", 3);

    mock_signal(SIGUSR2, "brokers up");
    traffic(e, "after", 3);
    wait_delivered(e);
    h_stop_vigil(e);

    h_record(e);
    msgs = read_topic(e);
    dups = compare_with_record(e->events, msgs, 0);
    print_message("kafka outage: %zu events, %zu messages, %zu duplicates (same seq)\n", json_array_size(e->events),
                  json_array_size(msgs), dups);
    {
        char *text = h_slurp(e->vigil.err_path, NULL);

        assert_non_null(text);
        if (strstr(text, "replaying") == NULL)
            fail_msg("no replay from the spool; stderr:\n%s", text);
        free(text);
    }
    json_decref(msgs);
    h_done(e);
}

/* records a stopped vigil could not deliver wait in its spool and go first at the next start */
static void test_kafka_restart_replays_spool(void **state)
{
    struct h_env *e = *state;
    char *conf, *text;
    json_t *first, *msgs;

    start_mock(e);
    mock_signal(SIGUSR1, "brokers down");
    conf = kafka_config("{\"reconnect.backoff.ms\": \"50\", \"reconnect.backoff.max.ms\": \"500\"}");
    h_start(e, conf, H_DEFAULT);
    traffic(e, "first", 5);
    h_stop_vigil(e);
    text = h_slurp(e->vigil.err_path, NULL);
    assert_non_null(text);
    if (strstr(text, "stay in the spool") == NULL)
        fail_msg("vigil stopped without keeping its records in the spool; stderr:\n%s", text);
    free(text);
    h_record(e);
    first = json_deep_copy(e->events);

    mock_signal(SIGUSR2, "brokers up");
    msgs = read_topic(e);
    assert_int_equal(json_array_size(msgs), 0);
    json_decref(msgs);
    h_start(e, conf, H_NO_ORIGIN);
    free(conf);
    wait_vigil_says(e, "left in the spool by an earlier run", 10000);
    traffic(e, "second", 2);
    wait_delivered(e);
    h_stop_vigil(e);

    h_record(e);
    msgs = read_topic(e);
    /* everything of both runs is on the topic, the first run's events among them */
    compare_with_record(e->events, msgs, 0);
    {
        size_t i;
        json_t *ev;

        json_array_foreach(first, i, ev) {
            if (event_with_seq(e->events, h_int(ev, "seq")) == NULL)
                fail_msg("seq %lld of the first run is not in the record any more", h_int(ev, "seq"));
        }
    }
    json_decref(first);
    json_decref(msgs);
    h_done(e);
}

/* a bad kafka config is refused at startup, naming the JSON path */
static void test_kafka_bad_property_refused(void **state)
{
    struct h_env *e = *state;
    char *conf, *err = NULL;
    int st;

    snprintf(bootstrap, sizeof(bootstrap), "127.0.0.1:%d", h_closed_port());
    conf = kafka_config("{\"no.such.property\": \"1\"}");
    {
        char path[PATH_MAX];
        FILE *f;
        char check[] = "--check-config";

        snprintf(path, sizeof(path), "%s/bad.json", e->dir);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(conf, f);
        fclose(f);
        {
            char *const argv[] = { VIGIL_BIN, check, path, NULL };

            st = h_run(e, "check-config", argv, 10000, NULL, &err);
        }
        /* --check-config validates the config's shape; opening the sink is what refuses it */
        if (st == 0) {
            char *const argv[] = { VIGIL_BIN, "--config", path, "--listen", "127.0.0.1:0", "--data-dir", e->data_dir,
                                   NULL };

            free(err);
            err = NULL;
            st = h_run(e, "vigil-bad", argv, 10000, NULL, &err);
        }
    }
    assert_int_not_equal(st, 0);
    assert_non_null(err);
    if (strstr(err, "sinks[1].properties.no.such.property") == NULL)
        fail_msg("the error does not name sinks[1].properties.no.such.property:\n%s", err);
    free(err);
    free(conf);
    h_done(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kafka_topic_matches_file_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kafka_outage_every_event_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kafka_restart_replays_spool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kafka_bad_property_refused, setup, teardown),
    };

    h_main_init();
    return cmocka_run_group_tests_name("integration/kafka", tests, NULL, NULL);
}
