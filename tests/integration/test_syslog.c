/* tests/integration/test_syslog.c - the syslog sink against a real rsyslogd.
 *
 * Each test starts rsyslogd (-n -f CONF -i PIDFILE) with a private config: imudp, imtcp and
 * imtcp over TLS (the ossl stream driver, the harness's localhost certificate) on 127.0.0.1
 * ports the test picks, imuxsock on a socket in the test's directory, each input writing the
 * raw messages it receives to its own file (omfile, template "%rawmsg%"). vigil runs with the
 * file sink and one syslog sink per transport; every line rsyslog stored must parse as RFC 5424
 * and give back the file record's event: PRI, timestamp, app, MSGID and the structured data
 * agree with it and MSG is the record itself, field for field. rsyslogd is stopped by PID. */
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define NTRANSPORTS 4

static const char *const transports[NTRANSPORTS] = { "udp", "tcp", "tls", "unix" };

static struct h_proc rsyslog;
static int udp_port, tcp_port, tls_port;
static char conf_path[PATH_MAX];

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
    memset(&rsyslog, 0, sizeof(rsyslog));
    return h_setup(state);
}

static int teardown(void **state)
{
    h_stop(&rsyslog);
    return h_teardown(state);
}

/* A UDP port on 127.0.0.1 with nothing bound (bound, then closed). */
static int free_udp_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_DGRAM, 0), port;

    assert_true(fd != -1);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void out_path(struct h_env *e, const char *transport, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/syslog-%s.log", e->dir, transport);
}

static void write_conf(struct h_env *e)
{
    FILE *f;
    char p[NTRANSPORTS][PATH_MAX], work[PATH_MAX];

    for (int i = 0; i < NTRANSPORTS; i++)
        out_path(e, transports[i], p[i], sizeof(p[i]));
    snprintf(work, sizeof(work), "%s/rsyslog-work", e->dir);
    mkdir(work, 0700);
    snprintf(conf_path, sizeof(conf_path), "%s/rsyslog.conf", e->dir);
    f = fopen(conf_path, "w");
    assert_non_null(f);
    fprintf(f,
            "global(workDirectory=\"%s\" maxMessageSize=\"64k\"\n"
            "       defaultNetstreamDriverCAFile=\"%s\" defaultNetstreamDriverCertFile=\"%s\"\n"
            "       defaultNetstreamDriverKeyFile=\"%s\")\n"
            "module(load=\"imudp\")\n"
            "module(load=\"imtcp\" maxSessions=\"100\")\n"
            "module(load=\"imuxsock\" sysSock.use=\"off\")\n"
            "template(name=\"raw\" type=\"string\" string=\"%%rawmsg%%\\n\")\n"
            "action(type=\"omfile\" file=\"%s/rsyslog-internal.log\")\n",
            work, e->cert, e->cert, e->key, e->dir);
    for (int i = 0; i < NTRANSPORTS; i++)
        fprintf(f, "ruleset(name=\"r%s\") { action(type=\"omfile\" file=\"%s\" template=\"raw\") }\n", transports[i],
                p[i]);
    fprintf(f,
            "input(type=\"imudp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"rudp\")\n"
            "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"rtcp\")\n"
            "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\" ruleset=\"rtls\" streamDriver.name=\"ossl\"\n"
            "      streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n"
            "input(type=\"imuxsock\" socket=\"%s/log.sock\" ruleset=\"runix\" ratelimit.interval=\"0\"\n"
            "      createPath=\"off\")\n",
            udp_port, tcp_port, tls_port, e->dir);
    fclose(f);
}

static int tcp_accepts(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* Starts rsyslogd on the ports picked (the same ones again on a restart) and waits until each
 * of its inputs listens. */
static void start_rsyslog(struct h_env *e)
{
    char pidfile[PATH_MAX], sock[PATH_MAX], udp[PATH_MAX];
    char n[] = "-n", f[] = "-f", i[] = "-i";
    char *const argv[] = { RSYSLOGD_BIN, n, f, conf_path, i, pidfile, NULL };
    long long end = now_ms() + 10000;
    int probe = 0;

    if (access(RSYSLOGD_BIN, X_OK) != 0)
        fail_msg("rsyslogd is not installed (%s): apt-get install rsyslog rsyslog-openssl", RSYSLOGD_BIN);
    snprintf(pidfile, sizeof(pidfile), "%s/rsyslogd.pid", e->dir);
    snprintf(sock, sizeof(sock), "%s/log.sock", e->dir);
    out_path(e, "udp", udp, sizeof(udp));
    h_spawn(e, &rsyslog, "rsyslogd", argv);
    for (;;) {
        char *text;

        if (access(sock, F_OK) == 0 && tcp_accepts(tcp_port) && tcp_accepts(tls_port)) {
            /* UDP has no handshake: a probe datagram that lands in the file says imudp is up */
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)udp_port)};
            char msg[64];
            int fd = socket(AF_INET, SOCK_DGRAM, 0);
            int len = snprintf(msg, sizeof(msg), "<14>1 - - probe - - - probe-%d", probe++);

            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            sendto(fd, msg, (size_t)len, 0, (struct sockaddr *)&sa, sizeof(sa));
            close(fd);
            pause_ms(20);
            text = h_slurp(udp, NULL);
            if (text != NULL && strstr(text, "probe-") != NULL) {
                free(text);
                return;
            }
            free(text);
        }
        if (h_wait_exit(&rsyslog, 0) != -1) {
            text = h_slurp(rsyslog.err_path, NULL);
            fail_msg("rsyslogd exited; stderr:\n%s", text ? text : "");
        }
        if (now_ms() >= end) {
            text = h_slurp(rsyslog.err_path, NULL);
            fail_msg("rsyslogd inputs not up within 10 s; stderr:\n%s", text ? text : "");
        }
        pause_ms(20);
    }
}

static void start_peers(struct h_env *e)
{
    udp_port = free_udp_port();
    tcp_port = h_closed_port();
    tls_port = h_closed_port();
    while (tls_port == tcp_port)
        tls_port = h_closed_port();
    write_conf(e);
    start_rsyslog(e);
}

#define ALL_TRANSPORTS 0xf
#define STREAMS 0x6 /* tcp, tls */

/* The harness's config plus one syslog sink per transport in <mask> (bit i: transports[i]),
 * named "s-<transport>", extra members <extra> added to each (a JSON object or NULL).
 * Returns a string to free. */
static char *syslog_config(struct h_env *e, const char *extra, unsigned mask)
{
    json_t *root = json_loads(h_config(NULL), 0, NULL), *sinks;
    char addr[64], sock[PATH_MAX], name[32];
    char *text;

    assert_non_null(root);
    sinks = json_object_get(root, "sinks");
    snprintf(sock, sizeof(sock), "%s/log.sock", e->dir);
    for (int i = 0; i < NTRANSPORTS; i++) {
        json_t *s;

        if (!(mask & (1u << i)))
            continue;
        s = json_object();

        snprintf(name, sizeof(name), "s-%s", transports[i]);
        json_object_set_new(s, "type", json_string("syslog"));
        json_object_set_new(s, "name", json_string(name));
        json_object_set_new(s, "transport", json_string(transports[i]));
        if (strcmp(transports[i], "unix") == 0) {
            json_object_set_new(s, "address", json_string(sock));
        } else {
            snprintf(addr, sizeof(addr), "127.0.0.1:%d",
                     i == 0 ? udp_port : strcmp(transports[i], "tcp") == 0 ? tcp_port : tls_port);
            json_object_set_new(s, "address", json_string(addr));
        }
        if (strcmp(transports[i], "tls") == 0) {
            json_object_set_new(s, "ca_file", json_string(e->cert));
            json_object_set_new(s, "tls_name", json_string("localhost"));
        }
        if (extra != NULL) {
            json_t *x = json_loads(extra, 0, NULL);

            assert_non_null(x);
            json_object_update(s, x);
            json_decref(x);
        }
        json_array_append_new(sinks, s);
    }
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

static void traffic(struct h_env *e, const char *tag, int n)
{
    for (int i = 0; i < n; i++) {
        struct h_result r;
        char path[96];

        snprintf(path, sizeof(path), "/bytes/%d?%s=%d", 10 + i, tag, i);
        h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, path), NULL);
        h_expect_http(&r, 0, 200);
        h_result_fini(&r);
    }
}

/* ---- RFC 5424 parsing ---- */

struct msg5424 {
    int pri;
    char ts[64], host[256], app[64], procid[64], msgid[64];
    json_t *sd;  /* {"param": "value"} of SD-ID vigil@32473 */
    json_t *rec; /* MSG as JSON */
};

/* Next space-separated header field of <*p> into <out>. */
static int field(const char **p, char *out, size_t outlen)
{
    const char *sp = strchr(*p, ' ');
    size_t n;

    if (sp == NULL)
        return -1;
    n = (size_t)(sp - *p);
    if (n == 0 || n >= outlen)
        return -1;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p = sp + 1;
    return 0;
}

/* Parses one line; returns 0, or -1 with <why>. */
static int parse_5424(const char *line, struct msg5424 *m, const char **why)
{
    const char *p = line;
    char *end;

    memset(m, 0, sizeof(*m));
    *why = "PRI";
    if (*p++ != '<')
        return -1;
    m->pri = (int)strtol(p, &end, 10);
    if (end == p || *end != '>' || m->pri < 0 || m->pri > 191)
        return -1;
    p = end + 1;
    *why = "VERSION";
    if (strncmp(p, "1 ", 2) != 0)
        return -1;
    p += 2;
    *why = "header";
    if (field(&p, m->ts, sizeof(m->ts)) || field(&p, m->host, sizeof(m->host)) || field(&p, m->app, sizeof(m->app)) ||
        field(&p, m->procid, sizeof(m->procid)) || field(&p, m->msgid, sizeof(m->msgid)))
        return -1;
    *why = "STRUCTURED-DATA";
    if (strncmp(p, "[vigil@32473", 12) != 0)
        return -1;
    p += 12;
    m->sd = json_object();
    while (*p == ' ') {
        char name[33], val[1024];
        size_t n = 0, vn = 0;

        p++;
        while (*p != '=' && *p != '\0' && n + 1 < sizeof(name))
            name[n++] = *p++;
        name[n] = '\0';
        if (strncmp(p, "=\"", 2) != 0)
            return -1;
        p += 2;
        while (*p != '"' && *p != '\0' && vn + 1 < sizeof(val)) {
            if (*p == '\\' && (p[1] == '"' || p[1] == '\\' || p[1] == ']'))
                p++;
            else if (*p == ']')
                return -1; /* must have been escaped */
            val[vn++] = *p++;
        }
        val[vn] = '\0';
        if (*p++ != '"')
            return -1;
        json_object_set_new(m->sd, name, json_string(val));
    }
    if (strncmp(p, "] ", 2) != 0)
        return -1;
    p += 2;
    if (strncmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    *why = "MSG";
    m->rec = json_loads(p, 0, NULL);
    return json_is_object(m->rec) ? 0 : -1;
}

static int want_severity(json_t *ev)
{
    const char *kind = h_str(ev, "event");
    json_t *a = json_object_get(ev, "action");
    const char *action = json_is_string(a) ? json_string_value(a) : "";

    if (strcmp(kind, "flow.phase") == 0)
        return strcmp(action, "deny") == 0 ? 4 : strcmp(action, "alert") == 0 ? 1 : 6;
    if (strcmp(kind, "flow.end") == 0)
        return 6;
    if (strcmp(kind, "audit.loss") == 0)
        return 3;
    return 5;
}

static void expect_sd(struct msg5424 *m, const char *param, json_t *val)
{
    json_t *got = json_object_get(m->sd, param);

    if (!json_is_string(val)) {
        if (got != NULL)
            fail_msg("SD param %s present but the record has none", param);
        return;
    }
    if (!json_is_string(got) || strcmp(json_string_value(got), json_string_value(val)) != 0)
        fail_msg("SD param %s: \"%s\", record \"%s\"", param, json_is_string(got) ? json_string_value(got) : "(none)",
                 json_string_value(val));
}

/* Reads <transport>'s file and checks every vigil line against the record. Returns how many
 * times each seq arrived, in a new object {"seq": count}. */
static json_t *check_file(struct h_env *e, const char *transport, json_t *events)
{
    char path[PATH_MAX], host[256];
    char *text;
    json_t *counts = json_object();

    out_path(e, transport, path, sizeof(path));
    text = h_slurp(path, NULL);
    if (gethostname(host, sizeof(host)) == -1)
        strcpy(host, "-");
    for (char *line = text, *eol; line != NULL && *line != '\0'; line = eol) {
        struct msg5424 m;
        const char *why;
        json_t *ev;
        char seqs[32];
        size_t i;
        long long seq;

        eol = strchr(line, '\n');
        if (eol != NULL)
            *eol++ = '\0';
        else
            eol = line + strlen(line);
        if (strstr(line, "probe-") != NULL)
            continue;
        if (parse_5424(line, &m, &why) == -1)
            fail_msg("%s: not RFC 5424 (%s): %.400s", transport, why, line);
        seq = h_int(m.rec, "seq");
        ev = NULL;
        json_array_foreach(events, i, ev) {
            if (h_int(ev, "seq") == seq)
                break;
            ev = NULL;
        }
        if (ev == NULL)
            fail_msg("%s: seq %lld is not in the file record", transport, seq);
        if (!json_equal(m.rec, ev))
            fail_msg("%s: seq %lld: MSG differs from the record:\n %s\n %s", transport, seq,
                     json_dumps(m.rec, JSON_COMPACT), json_dumps(ev, JSON_COMPACT));
        assert_int_equal(m.pri, 16 * 8 + want_severity(ev));
        assert_string_equal(m.ts, h_str(ev, "time"));
        assert_string_equal(m.host, host);
        assert_string_equal(m.app, "vigil");
        assert_true(strtol(m.procid, NULL, 10) > 0);
        assert_string_equal(m.msgid, h_str(ev, "event"));
        snprintf(seqs, sizeof(seqs), "%lld", seq);
        {
            json_t *js = json_string(seqs);

            expect_sd(&m, "seq", js);
            json_decref(js);
        }
        expect_sd(&m, "flow_id", json_object_get(ev, "flow_id"));
        expect_sd(&m, "chain", json_object_get(ev, "chain"));
        expect_sd(&m, "phase", json_object_get(ev, "phase"));
        expect_sd(&m, "action", json_object_get(ev, "action"));
        expect_sd(&m, "rule", h_get(ev, "rule.id"));
        json_object_set_new(counts, seqs, json_integer(json_integer_value(json_object_get(counts, seqs)) + 1));
        json_decref(m.sd);
        json_decref(m.rec);
    }
    free(text);
    return counts;
}

/* Waits (bounded) until <transport>'s file has every seq of <events>. */
static void wait_file_has(struct h_env *e, const char *transport, json_t *events)
{
    long long end = now_ms() + 30000;

    for (;;) {
        json_t *counts = check_file(e, transport, events), *ev;
        size_t i, missing = 0;
        char seqs[32];

        json_array_foreach(events, i, ev) {
            snprintf(seqs, sizeof(seqs), "%lld", h_int(ev, "seq"));
            missing += json_object_get(counts, seqs) == NULL;
        }
        json_decref(counts);
        if (missing == 0)
            return;
        if (now_ms() >= end)
            fail_msg("%s: %zu events of the record never reached rsyslog", transport, missing);
        pause_ms(50);
    }
}

/* every transport delivers every event once, as RFC 5424 that parses back into the record */
static void test_syslog_all_transports_parse_back(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char *conf;

    start_peers(e);
    conf = syslog_config(e, NULL, ALL_TRANSPORTS);
    h_start(e, conf, H_DEFAULT);
    free(conf);
    traffic(e, "t", 4);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--cacert", e->cert, h_origin_url(e, 1, "/bytes/64"), NULL);
    h_expect_http(&r, 0, 200);
    h_result_fini(&r);
    h_stop_vigil(e);
    h_record(e);

    for (int i = 0; i < NTRANSPORTS; i++) {
        json_t *counts, *ev;
        size_t k;

        wait_file_has(e, transports[i], e->events);
        counts = check_file(e, transports[i], e->events);
        json_array_foreach(e->events, k, ev) {
            char seqs[32];

            snprintf(seqs, sizeof(seqs), "%lld", h_int(ev, "seq"));
            if (json_integer_value(json_object_get(counts, seqs)) != 1)
                fail_msg("%s: seq %s arrived %lld times", transports[i], seqs,
                         (long long)json_integer_value(json_object_get(counts, seqs)));
        }
        json_decref(counts);
    }
    h_done(e);
}

/* tcp and tls spool while rsyslog is away and deliver everything, in order, once it is back */
static void test_syslog_stream_reconnects_and_replays(void **state)
{
    struct h_env *e = *state;
    char *conf;
    json_t *events;

    start_peers(e);
    conf = syslog_config(e, "{\"reconnect_max_ms\": 200}", STREAMS);
    h_start(e, conf, H_DEFAULT);
    free(conf);
    traffic(e, "before", 2);
    /* everything so far has landed: stop rsyslog while vigil is idle */
    {
        long long end = now_ms() + 30000;
        char path[PATH_MAX];

        out_path(e, "tls", path, sizeof(path));
        for (;;) {
            char *text = h_slurp(path, NULL);
            int ok = text != NULL && strstr(text, "before=1") != NULL;
            char tpath[PATH_MAX];
            char *t2;

            free(text);
            out_path(e, "tcp", tpath, sizeof(tpath));
            t2 = h_slurp(tpath, NULL);
            ok = ok && t2 != NULL && strstr(t2, "before=1") != NULL;
            free(t2);
            if (ok)
                break;
            if (now_ms() >= end)
                fail_msg("the first flows never reached rsyslog");
            pause_ms(50);
        }
    }
    h_stop(&rsyslog);
    traffic(e, "during", 5);
    start_rsyslog(e);
    traffic(e, "after", 2);
    /* both streams are back (each logs its reconnect) before vigil stops: what
     * is still spooled at a stop waits for the next start, by design */
    h_wait_stderr(&e->vigil, "connected to", 2);
    h_stop_vigil(e);
    h_record(e);
    events = e->events;
    for (int i = 1; i <= 2; i++) {
        json_t *counts;
        char path[PATH_MAX];
        char *text;
        const char *a, *b;

        wait_file_has(e, transports[i], events);
        counts = check_file(e, transports[i], events);
        json_decref(counts);
        /* in order: what was spooled during the outage came before what followed it */
        out_path(e, transports[i], path, sizeof(path));
        text = h_slurp(path, NULL);
        a = strstr(text, "during=4");
        b = strstr(text, "after=0");
        assert_non_null(a);
        assert_non_null(b);
        assert_true(a < b);
        free(text);
    }
    {
        char *text = h_slurp(e->vigil.err_path, NULL);

        if (strstr(text, "spooling and reconnecting") == NULL || strstr(text, "connected to") == NULL)
            fail_msg("no disconnect/reconnect diagnostics; stderr:\n%s", text);
        free(text);
    }
    h_done(e);
}

/* a message over max_message is not sent, never truncated: audit.loss counts it */
static void test_syslog_oversize_counted_not_truncated(void **state)
{
    struct h_env *e = *state;
    char *conf, *text, path[PATH_MAX], big[700];
    char fmt[] = "json", search[] = "search";
    char *const argv[] = { AUDIT_QUERY_BIN, search, "--data-dir", e->data_dir, "--format", fmt, NULL };
    struct h_result r;
    char *out = NULL;
    int losses = 0;

    start_peers(e);
    conf = syslog_config(e, "{\"max_message\": 1200}", ALL_TRANSPORTS);
    h_start(e, conf, H_DEFAULT);
    free(conf);
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(path, sizeof(path), "/bytes/5?big=%s", big);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, path), NULL);
    h_expect_http(&r, 0, 200);
    h_result_fini(&r);
    traffic(e, "small", 1);
    h_stop_vigil(e);

    assert_int_equal(h_run(e, "audit-query-all", argv, 30000, &out, NULL), 0);
    for (int i = 0; i < NTRANSPORTS; i++) {
        char want[64];

        snprintf(want, sizeof(want), "\"reason\":\"sink_failure:s-%s\"", transports[i]);
        if (strstr(out, want) != NULL)
            losses++;
    }
    if (losses != NTRANSPORTS)
        fail_msg("want an audit.loss for each syslog sink; record:\n%s", out);
    free(out);
    for (int i = 0; i < NTRANSPORTS; i++) {
        char p[PATH_MAX];
        long long end = now_ms() + 30000;

        out_path(e, transports[i], p, sizeof(p));
        for (;;) {
            text = h_slurp(p, NULL);
            if (text != NULL && strstr(text, "small=0") != NULL)
                break;
            free(text);
            if (now_ms() >= end)
                fail_msg("%s: the small flow never arrived", transports[i]);
            pause_ms(50);
        }
        /* nothing of the big flow's long events, not even a prefix */
        if (strstr(text, "qqqqqqqqqq") != NULL)
            fail_msg("%s: part of an oversized message was delivered", transports[i]);
        free(text);
    }
    text = h_slurp(e->vigil.err_path, NULL);
    assert_non_null(strstr(text, "more than max_message"));
    free(text);
    h_done(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_syslog_all_transports_parse_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syslog_stream_reconnects_and_replays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syslog_oversize_counted_not_truncated, setup, teardown),
    };

    h_main_init();
    return cmocka_run_group_tests_name("integration/syslog", tests, NULL, NULL);
}
