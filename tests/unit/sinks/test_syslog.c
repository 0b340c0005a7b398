/* tests/unit/sinks/test_syslog.c - the syslog sink through the registry against sockets the
 * test holds: the RFC 5424 line (PRI from the event, SD-PARAM escaping, MSG the record),
 * octet counting on TCP, oversized messages refused whole and counted, a TCP receiver that
 * is away makes the sink spool and replay, and config errors name their key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../testutil.h"
#include "sinks/sinks.h"

struct fixture {
    char dir[64];
    struct sink_env env;
    int fd;   /* the receiving socket */
    int port;
};

static int bind_loopback(int type, int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, type, 0);

    assert_true(fd != -1);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    strcpy(f->dir, "/tmp/vigil-syslog-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->env.data_dir = f->dir;
    f->fd = -1;
    signal(SIGPIPE, SIG_IGN);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (f->fd != -1)
        close(f->fd);
    tu_rm_rf(f->dir);
    free(f);
    return 0;
}

static struct sink *open_sink(struct fixture *f, const char *json)
{
    json_error_t jerr;
    json_t *conf = json_loads(json, 0, &jerr);
    char err[512] = "";
    struct sink *s;

    if (conf == NULL)
        fail_msg("bad test config %s: %s", json, jerr.text);
    s = sink_open(conf, "sinks[1]", &f->env, err, sizeof(err));
    json_decref(conf);
    if (s == NULL)
        fail_msg("sink_open: %s", err);
    return s;
}

static void expect_open_error(struct fixture *f, const char *json, const char *want)
{
    json_t *conf = json_loads(json, 0, NULL);
    char err[512] = "";
    struct sink *s;

    assert_non_null(conf);
    s = sink_open(conf, "sinks[1]", &f->env, err, sizeof(err));
    json_decref(conf);
    assert_null(s);
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

static const char REC_DENY[] = "{\"schema\":\"vigil.event/1\",\"event\":\"flow.phase\",\"seq\":5,"
                               "\"time\":\"2026-11-26T16:30:45.000001Z\",\"flow_id\":\"01JD0000000000000000000000\","
                               "\"phase\":\"pre_dns\",\"action\":\"deny\","
                               "\"rule\":{\"group\":\"g\",\"id\":\"a\\\"b]c\\\\d\"},"
                               "\"chain\":\"ab12\"}";
static const char REC_CONFIG[] = "{\"schema\":\"vigil.event/1\",\"event\":\"proxy.config\",\"seq\":6}";

/* Receives one datagram (bounded wait) into <buf>; its length. */
static size_t recv_dgram(int fd, char *buf, size_t cap)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    ssize_t n;

    assert_int_equal(poll(&pfd, 1, 5000), 1);
    n = recv(fd, buf, cap - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    return (size_t)n;
}

/* a deny decision is a warning of local0 with its fields escaped in the structured data */
static void test_syslog_udp_line_is_rfc5424(void **state)
{
    struct fixture *f = *state;
    struct sink_record recs[2] = {
        {.data = REC_DENY, .len = sizeof(REC_DENY) - 1, .seq = 5, .time_us = 1795710645000001LL},
        {.data = REC_CONFIG, .len = sizeof(REC_CONFIG) - 1, .seq = 6, .time_us = 1795710645000002LL},
    };
    char conf[256], buf[4096], want[1024], host[256];
    struct sink *s;
    struct sink_stats st;

    f->fd = bind_loopback(SOCK_DGRAM, &f->port);
    snprintf(conf, sizeof(conf), "{\"type\":\"syslog\",\"transport\":\"udp\",\"address\":\"127.0.0.1:%d\"}", f->port);
    s = open_sink(f, conf);
    assert_int_equal(s->ops->write(s, recs, 2), SINK_OK);
    assert_int_equal(gethostname(host, sizeof(host)), 0);

    recv_dgram(f->fd, buf, sizeof(buf));
    snprintf(want, sizeof(want),
             "<132>1 2026-11-26T16:30:45.000001Z %s vigil %ld flow.phase [vigil@32473 "
             "flow_id=\"01JD0000000000000000000000\" seq=\"5\" chain=\"ab12\" phase=\"pre_dns\" action=\"deny\" "
             "rule=\"a\\\"b\\]c\\\\d\"] %s",
             host, (long)getpid(), REC_DENY);
    assert_string_equal(buf, want);

    recv_dgram(f->fd, buf, sizeof(buf));
    snprintf(want, sizeof(want),
             "<133>1 2026-11-26T16:30:45.000002Z %s vigil %ld proxy.config [vigil@32473 seq=\"6\"] %s", host,
             (long)getpid(), REC_CONFIG);
    assert_string_equal(buf, want);

    s->ops->stats(s, &st);
    assert_int_equal(st.delivered, 2);
    assert_int_equal(s->ops->health(s), SINK_HEALTHY);
    assert_int_equal(s->dropped, 0);
    sink_free(s);
}

/* a message over max_message is not sent at all, and counted as dropped */
static void test_syslog_oversize_dropped_whole(void **state)
{
    struct fixture *f = *state;
    char conf[256], big[2048], buf[4096];
    struct sink_record recs[2];
    struct sink *s;
    int n;

    f->fd = bind_loopback(SOCK_DGRAM, &f->port);
    snprintf(conf, sizeof(conf),
             "{\"type\":\"syslog\",\"transport\":\"udp\",\"address\":\"127.0.0.1:%d\",\"max_message\":1000,"
             "\"facility\":\"daemon\",\"hostname\":\"h1\"}",
             f->port);
    s = open_sink(f, conf);
    n = snprintf(big, sizeof(big), "{\"event\":\"flow.end\",\"seq\":1,\"pad\":\"%01200d\"}", 0);
    recs[0] = (struct sink_record){.data = big, .len = (size_t)n, .seq = 1};
    recs[1] = (struct sink_record){.data = REC_CONFIG, .len = sizeof(REC_CONFIG) - 1, .seq = 6};
    assert_int_equal(s->ops->write(s, recs, 2), SINK_OK);
    assert_int_equal(s->dropped, 1);
    recv_dgram(f->fd, buf, sizeof(buf));
    /* the next datagram is the small record: the big one never left, not even cut short */
    assert_non_null(strstr(buf, "proxy.config"));
    assert_memory_equal(buf, "<29>1 ", 6);
    assert_non_null(strstr(buf, " h1 vigil "));
    sink_free(s);
}

/* Reads from the accepted stream <c> until <n> octet-counted frames arrived; returns them
 * joined by '\n' (static buffer). */
static const char *read_frames(int c, int n)
{
    static char out[65536];
    char buf[65536];
    size_t len = 0, off = 0, olen = 0;
    int got = 0;

    while (got < n) {
        struct pollfd pfd = {.fd = c, .events = POLLIN};
        ssize_t r;

        assert_int_equal(poll(&pfd, 1, 5000), 1);
        r = recv(c, buf + len, sizeof(buf) - len, 0);
        assert_true(r > 0);
        len += (size_t)r;
        for (;;) {
            char *sp = memchr(buf + off, ' ', len - off);
            size_t flen;

            if (sp == NULL)
                break;
            flen = strtoul(buf + off, NULL, 10);
            assert_true(flen > 0);
            if ((size_t)(sp + 1 - buf) + flen > len)
                break;
            memcpy(out + olen, sp + 1, flen);
            olen += flen;
            out[olen++] = '\n';
            off = (size_t)(sp + 1 - buf) + flen;
            got++;
        }
    }
    assert_int_equal(off, len);
    out[olen] = '\0';
    return out;
}

static int accept_one(int lfd)
{
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};

    assert_int_equal(poll(&pfd, 1, 5000), 1);
    return accept(lfd, NULL, NULL);
}

/* tcp frames with octet counting; with the receiver away records are spooled, then replayed in order */
static void test_syslog_tcp_spools_while_away_and_replays(void **state)
{
    struct fixture *f = *state;
    char conf[256];
    struct sink_record rec;
    struct sink_stats st;
    struct sink *s;
    const char *got;
    char data[128];
    int c, lfd, on = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET};

    /* a port with nothing listening yet */
    lfd = bind_loopback(SOCK_STREAM, &f->port);
    close(lfd);
    snprintf(conf, sizeof(conf),
             "{\"type\":\"syslog\",\"name\":\"t\",\"transport\":\"tcp\",\"address\":\"127.0.0.1:%d\","
             "\"reconnect_max_ms\":1}",
             f->port);
    s = open_sink(f, conf);
    for (int i = 1; i <= 3; i++) {
        int n = snprintf(data, sizeof(data), "{\"event\":\"flow.end\",\"seq\":%d}", i);

        rec = (struct sink_record){.data = data, .len = (size_t)n, .seq = (uint64_t)i};
        assert_int_equal(s->ops->write(s, &rec, 1), SINK_OK);
        s->ops->tick(s, 0);
    }
    assert_int_equal(s->ops->health(s), SINK_DEGRADED);
    s->ops->stats(s, &st);
    assert_int_equal(st.spooled, 3);
    assert_int_equal(st.pending, 3);

    /* the receiver comes up on that port */
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)f->port);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    for (int i = 0; i < 500 && s->ops->health(s) != SINK_HEALTHY; i++) {
        struct pollfd pfd = {.fd = -1};

        poll(&pfd, 0, 10);
        s->ops->tick(s, 0);
    }
    assert_int_equal(s->ops->health(s), SINK_HEALTHY);
    c = accept_one(lfd);
    assert_true(c >= 0);
    {
        int n = snprintf(data, sizeof(data), "{\"event\":\"flow.end\",\"seq\":%d}", 4);

        rec = (struct sink_record){.data = data, .len = (size_t)n, .seq = 4};
        assert_int_equal(s->ops->write(s, &rec, 1), SINK_OK);
    }
    got = read_frames(c, 4);
    {
        const char *p1 = strstr(got, "\"seq\":1}"), *p2 = strstr(got, "\"seq\":2}"), *p3 = strstr(got, "\"seq\":3}"),
                   *p4 = strstr(got, "\"seq\":4}");

        assert_true(p1 != NULL && p2 != NULL && p3 != NULL && p4 != NULL);
        assert_true(p1 < p2 && p2 < p3 && p3 < p4);
    }
    s->ops->stats(s, &st);
    assert_int_equal(st.delivered, 4);
    assert_int_equal(st.replayed, 3);
    assert_int_equal(st.pending, 0);
    assert_int_equal(s->ops->flush(s, 1000), 0);
    sink_free(s);
    close(c);
    close(lfd);
}

/* config errors name the key */
static void test_syslog_config_errors_name_key(void **state)
{
    struct fixture *f = *state;

    expect_open_error(f, "{\"type\":\"syslog\",\"transport\":\"smtp\"}", "sinks[1].transport: must be one of");
    expect_open_error(f, "{\"type\":\"syslog\",\"address\":\"nocolon\"}", "sinks[1].address:");
    expect_open_error(f, "{\"type\":\"syslog\",\"facility\":\"local9\"}", "sinks[1].facility:");
    expect_open_error(f, "{\"type\":\"syslog\",\"transport\":\"udp\",\"max_message\":70000}", "sinks[1].max_message:");
    expect_open_error(f, "{\"type\":\"syslog\",\"transport\":\"udp\",\"ca_file\":\"/x\"}", "sinks[1].ca_file:");
    expect_open_error(f, "{\"type\":\"syslog\",\"transport\":\"tls\",\"ca_file\":\"/nonexistent/ca.pem\"}",
                      "sinks[1].ca_file: cannot load");
    expect_open_error(f, "{\"type\":\"syslog\",\"bogus\":1}", "sinks[1].bogus: unknown key");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_syslog_udp_line_is_rfc5424, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syslog_oversize_dropped_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syslog_tcp_spools_while_away_and_replays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syslog_config_errors_name_key, setup, teardown),
    };
    return cmocka_run_group_tests_name("sinks/syslog", tests, NULL, NULL);
}
