/* tests/unit/sinks/test_kafka.c - the kafka sink through the registry, without a broker:
 * config errors name their key, records written while no broker answers wait in the spool
 * (never acknowledged on enqueue) and are still there after a restart, and health says so.
 * Delivery against a real broker is tests/integration/test_kafka.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../testutil.h"
#include "sinks/sinks.h"

struct fixture {
    char dir[64];
    struct sink_env env;
    char conf[256];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_non_null(f);
    strcpy(f->dir, "/tmp/vigil-kafka-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->env.data_dir = f->dir;
    /* a loopback port with nothing listening: the broker is away */
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    snprintf(f->conf, sizeof(f->conf),
             "{\"type\":\"kafka\",\"name\":\"k\",\"brokers\":\"127.0.0.1:%d\",\"topic\":\"t\","
             "\"properties\":{\"reconnect.backoff.ms\":\"10\",\"reconnect.backoff.max.ms\":\"50\"}}",
             ntohs(sa.sin_port));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    tu_rm_rf(f->dir);
    free(f);
    return 0;
}

static struct sink *try_open(struct fixture *f, const char *json, char *err, size_t errlen)
{
    json_t *conf = json_loads(json, 0, NULL);
    struct sink *s;

    assert_non_null(conf);
    s = sink_open(conf, "sinks[2]", &f->env, err, errlen);
    json_decref(conf);
    return s;
}

static void expect_open_error(struct fixture *f, const char *json, const char *want)
{
    char err[512] = "";
    struct sink *s = try_open(f, json, err, sizeof(err));

    assert_null(s);
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

/* config errors name the key, librdkafka's own property errors included */
static void test_kafka_config_errors_name_key(void **state)
{
    struct fixture *f = *state;

    expect_open_error(f, "{\"type\":\"kafka\",\"topic\":\"t\"}", "sinks[2].brokers: missing");
    expect_open_error(f, "{\"type\":\"kafka\",\"brokers\":\"h:1\"}", "sinks[2].topic: missing");
    expect_open_error(f, "{\"type\":\"kafka\",\"brokers\":[],\"topic\":\"t\"}", "sinks[2].brokers:");
    expect_open_error(f, "{\"type\":\"kafka\",\"brokers\":\"h:1\",\"topic\":\"t\",\"properties\":{\"linger.ms\":5}}",
                      "sinks[2].properties.linger.ms: must be a string");
    expect_open_error(f, "{\"type\":\"kafka\",\"brokers\":\"h:1\",\"topic\":\"t\",\"properties\":{\"no.such\":\"1\"}}",
                      "sinks[2].properties.no.such:");
    expect_open_error(f, "{\"type\":\"kafka\",\"brokers\":\"h:1\",\"topic\":\"t\",\"spool_max_bytes\":10}",
                      "sinks[2].spool_max_bytes:");
    expect_open_error(f, "{\"type\":\"kafka\",\"brokers\":\"h:1\",\"topic\":\"t\",\"acks\":\"all\"}",
                      "sinks[2].acks: unknown key");
}

/* with no broker, written records stay pending in the spool, across a restart too */
static void test_kafka_unreachable_records_stay_spooled(void **state)
{
    struct fixture *f = *state;
    struct sink_record recs[3];
    struct sink_stats st;
    char err[512] = "", data[3][128], spool[128];
    struct sink *s = try_open(f, f->conf, err, sizeof(err));
    struct stat sb;

    if (s == NULL)
        fail_msg("sink_open: %s", err);
    for (int i = 0; i < 3; i++) {
        int n = snprintf(data[i], sizeof(data[i]), "{\"event\":\"flow.end\",\"seq\":%d,\"flow_id\":\"F%d\"}", i + 1, i);

        recs[i] = (struct sink_record){.data = data[i], .len = (size_t)n, .seq = (uint64_t)i + 1};
    }
    assert_int_equal(s->ops->write(s, recs, 3), SINK_OK);
    /* librdkafka says all brokers are down after its first failed connects */
    for (int i = 0; i < 1000 && s->ops->health(s) == SINK_HEALTHY; i++) {
        struct pollfd none = {.fd = -1};

        poll(&none, 0, 10);
        s->ops->tick(s, 0);
    }
    assert_int_equal(s->ops->health(s), SINK_DEGRADED);
    s->ops->stats(s, &st);
    assert_int_equal(st.delivered, 0);
    assert_int_equal(st.pending, 3);
    /* accepted records are on disk for the next start: flush says so without waiting the timeout out */
    assert_int_equal(s->ops->flush(s, 3000), 0);
    sink_free(s);

    snprintf(spool, sizeof(spool), "%s/spool/k", f->dir);
    assert_int_equal(stat(spool, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    s = try_open(f, f->conf, err, sizeof(err));
    assert_non_null(s);
    s->ops->stats(s, &st);
    assert_int_equal(st.pending, 3);
    sink_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kafka_config_errors_name_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kafka_unreachable_records_stay_spooled, setup, teardown),
    };
    return cmocka_run_group_tests_name("sinks/kafka", tests, NULL, NULL);
}
