/* tests/integration/test_admin.c - operations: the admin endpoint (/metrics, /healthz, /readyz), SIGTERM's
 * drain deadline and the privilege drop.
 *
 * The admin endpoint listens on 127.0.0.1:0; its port comes from vigil's "admin endpoint on
 * http://127.0.0.1:PORT/" line. /metrics must be valid Prometheus text (every line a comment, a HELP/TYPE
 * line or a sample) and its counters must agree with the record: vigil_flows_total{phase,action} counts
 * exactly the flow.phase events the record holds. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <cmocka.h>

#include "harness.h"

#define ADMIN_LOCAL "\"admin\": {\"listen\": \"127.0.0.1:0\"}"

/* A deny rule for one path, before the loopback allows. */
#define DENY_GROUP                                                                                             \
    "{\"name\": \"block\", \"rules\": ["                                                                         \
    "{\"id\": \"no-666\", \"priority\": 10, \"phase\": \"pre_request\", \"action\": \"deny\","                  \
    " \"match\": {\"path\": [\"/bytes/666\"]}}]}"

static const char *admin_config(const char *extra)
{
    static char buf[8192];
    snprintf(buf, sizeof(buf), "%s%s%s", ADMIN_LOCAL, extra ? ", " : "", extra ? extra : "");
    return h_config(buf);
}

/* The admin port vigil printed. */
static int admin_port(struct h_env *e)
{
    static const char prefix[] = "admin endpoint on http://127.0.0.1:";
    char *text = h_slurp(e->vigil.err_path, NULL);
    const char *p = text ? strstr(text, prefix) : NULL;
    int port = p ? atoi(p + sizeof(prefix) - 1) : 0;
    free(text);
    if (port <= 0)
        fail_msg("vigil printed no \"%s\" line", prefix);
    return port;
}

/* One GET on 127.0.0.1:<port>: the status code, and the body in *<body> (caller frees). */
static int admin_get(int port, const char *path, char **body)
{
    char req[256];
    size_t len;
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    char *reply = h_raw("127.0.0.1", port, req, (size_t)n, 10000, &len);
    int code = 0;
    if (strncmp(reply, "HTTP/1.1 ", 9) == 0)
        code = atoi(reply + 9);
    const char *b = strstr(reply, "\r\n\r\n");
    if (body)
        *body = strdup(b ? b + 4 : "");
    free(reply);
    return code;
}

/* Does a connection to 127.0.0.1:<port> succeed? */
static int port_open(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = fd != -1 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    if (fd != -1)
        close(fd);
    return ok;
}

/* ---- Prometheus text format 0.0.4 ---- */

static const char *metric_name(const char *p)
{
    if (!(isalpha((unsigned char)*p) || *p == '_' || *p == ':'))
        return NULL;
    while (isalnum((unsigned char)*p) || *p == '_' || *p == ':')
        p++;
    return p;
}

static int valid_value(const char *p, const char **end)
{
    char *e;
    if (strncmp(p, "+Inf", 4) == 0 || strncmp(p, "-Inf", 4) == 0 || strncmp(p, "NaN", 3) == 0) {
        *end = p + (p[0] == 'N' ? 3 : 4);
        return 1;
    }
    if (!(isdigit((unsigned char)*p) || *p == '-' || *p == '+' || *p == '.'))
        return 0;
    strtod(p, &e);
    *end = e;
    return e != p;
}

/* NULL when <line> is a valid exposition line, else why not. */
static const char *check_line(const char *line)
{
    const char *p;
    if (*line == '\0')
        return NULL; /* blank lines are allowed */
    if (*line == '#') {
        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
            p = metric_name(line + 7);
            if (!p || (*p != ' ' && *p != '\0'))
                return "HELP/TYPE without a metric name";
            if (strncmp(line, "# TYPE ", 7) == 0) {
                static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
                for (size_t i = 0; i < 5; i++)
                    if (strcmp(p + 1, types[i]) == 0)
                        return NULL;
                return "unknown TYPE";
            }
        }
        return NULL; /* any other comment */
    }
    p = metric_name(line);
    if (!p)
        return "bad metric name";
    if (*p == '{') {
        p++;
        while (*p != '}') {
            const char *q = metric_name(p);
            if (!q || *q != '=' || q[1] != '"')
                return "bad label name";
            p = q + 2;
            while (*p != '"') {
                if (*p == '\0')
                    return "unterminated label value";
                if (*p == '\\') {
                    if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                        return "bad escape in label value";
                    p++;
                }
                p++;
            }
            p++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return "labels not separated by ','";
        }
        p++;
    }
    if (*p != ' ')
        return "no space before the value";
    if (!valid_value(p + 1, &p))
        return "bad value";
    if (*p == ' ') { /* optional timestamp */
        char *e;
        strtoll(p + 1, &e, 10);
        if (e == p + 1)
            return "bad timestamp";
        p = e;
    }
    return *p == '\0' ? NULL : "trailing text";
}

/* Asserts every line of <text> is valid; returns the number of samples. */
static int check_exposition(const char *text)
{
    char *copy = strdup(text), *save = NULL;
    int samples = 0, lineno = 0;
    assert_non_null(copy);
    assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *why = check_line(line);
        lineno++;
        if (why)
            fail_msg("/metrics line %d is not valid exposition text (%s):\n%s", lineno, why, line);
        if (line[0] != '#' && line[0] != '\0')
            samples++;
    }
    free(copy);
    return samples;
}

/* The value of the sample "<series>" (name with its labels exactly as printed), or -1 if absent. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

/* ---- tests ---- */

/* /metrics is valid exposition text and vigil_flows_total counts exactly the record's flow.phase events */
static void test_admin_metrics_valid_and_match_record(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char *body;

    h_start(e, admin_config("\"rule_groups\": [" DENY_GROUP ", " H_LOOPBACK_GROUP "],"
                            " \"proxy_configurations\": [{\"name\": \"t\", \"rule_groups\": [\"block\", "
                            "\"test-loopback\"], \"default_action\": \"allow\"}]"),
            H_DEFAULT);
    int port = admin_port(e);

    assert_int_equal(admin_get(port, "/metrics", &body), 200);
    check_exposition(body);
    assert_true(sample(body, "vigil_build_info{version=\"0.1.0\"}") == 1);
    assert_true(sample(body, "vigil_ring_slots") > 0);
    assert_true(sample(body, "vigil_connections_active") == 0);
    free(body);

    h_curl(e, &r, 2, "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/100"), h_origin_url(e, 0, "/bytes/666"),
           NULL);
    h_expect_http(&r, 0, 200);
    h_expect_http(&r, 1, 403);
    h_result_fini(&r);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--cacert", e->cert, h_origin_url(e, 1, "/bytes/2048"), NULL);
    h_expect_http(&r, 0, 200);
    h_result_fini(&r);

    /* the last flow.end may be recorded just after the client saw its response: poll until it counts */
    for (int i = 0;; i++) {
        assert_int_equal(admin_get(port, "/metrics", &body), 200);
        if (sample(body, "vigil_connections_active") == 0 && sample(body, "vigil_tunnels_active") == 0 &&
            sample(body, "vigil_flows_ended_total{reason=\"completed\"}") +
                    sample(body, "vigil_flows_ended_total{reason=\"client_closed\"}") +
                    sample(body, "vigil_flows_ended_total{reason=\"upstream_closed\"}") +
                    sample(body, "vigil_flows_ended_total{reason=\"denied\"}") >= 3)
            break;
        free(body);
        if (i > 500)
            fail_msg("connections never went back to 0 on /metrics");
        usleep(20000);
    }
    int nsamples = check_exposition(body);
    assert_true(nsamples > 50);
    assert_true(sample(body, "vigil_connections_accepted_total") >= 2);
    assert_true(sample(body, "vigil_upstream_connect_seconds_count") >= 2);
    assert_true(sample(body, "vigil_upstream_connect_seconds_bucket{le=\"+Inf\"}") ==
                sample(body, "vigil_upstream_connect_seconds_count"));
    assert_true(sample(body, "vigil_dns_resolve_seconds_count") >= 1); /* "localhost" of the https URL */
    assert_true(sample(body, "vigil_flows_ended_total{reason=\"denied\"}") == 1);
    assert_true(sample(body, "vigil_records_total") > 0);
    assert_true(sample(body, "vigil_sink_health{sink=\"file\",type=\"file\",state=\"healthy\"}") == 1);
    assert_true(sample(body, "vigil_sink_required{sink=\"file\",type=\"file\"}") == 1);
    assert_true(sample(body, "vigil_sink_queued{sink=\"file\",type=\"file\"}") >= 0);
    assert_true(sample(body, "vigil_sink_dropped_total{sink=\"file\",type=\"file\"}") == 0);
    assert_true(sample(body, "vigil_ring_overflows_total{kind=\"lost\"}") == 0);
    assert_true(sample(body, "vigil_ring_overflows_total{kind=\"refused\"}") == 0);
    if (strstr(body, "vigil_config_info{version=\"") == NULL)
        fail_msg("no vigil_config_info in:\n%s", body);
    h_stop_vigil(e);

    /* every (phase, action) pair: the metric equals the record */
    json_t *events = h_record(e), *ev;
    static const char *const phases[] = {"pre_dns", "pre_request", "post_response"};
    static const char *const actions[] = {"allow", "deny", "alert"};
    long long total = 0;
    for (size_t p = 0; p < 3; p++)
        for (size_t a = 0; a < 3; a++) {
            long long want = 0;
            size_t i;
            char series[128];
            json_array_foreach(events, i, ev)
            {
                const char *kind = json_string_value(json_object_get(ev, "event"));
                const char *ph = json_string_value(json_object_get(ev, "phase"));
                const char *ac = json_string_value(json_object_get(ev, "action"));
                if (kind && strcmp(kind, "flow.phase") == 0 && ph && ac && strcmp(ph, phases[p]) == 0 &&
                    strcmp(ac, actions[a]) == 0)
                    want++;
            }
            snprintf(series, sizeof(series), "vigil_flows_total{phase=\"%s\",action=\"%s\"}", phases[p], actions[a]);
            double got = sample(body, series);
            if (got != (double)want)
                fail_msg("%s is %g, the record has %lld such events", series, got, want);
            total += want;
        }
    assert_true(total >= 6);
    assert_true(sample(body, "vigil_flows_total{phase=\"pre_request\",action=\"deny\"}") == 1);
    free(body);
    h_done(e);
}

/* /healthz answers 200 ok, /readyz 200 with a healthy required file sink, anything else 404 */
static void test_admin_healthz_readyz_ok(void **state)
{
    struct h_env *e = *state;
    char *body;

    h_start(e, admin_config(NULL), H_NO_ORIGIN);
    int port = admin_port(e);
    assert_int_equal(admin_get(port, "/healthz", &body), 200);
    assert_string_equal(body, "ok\n");
    free(body);
    assert_int_equal(admin_get(port, "/readyz", &body), 200);
    assert_string_equal(body, "ready\n");
    free(body);
    assert_int_equal(admin_get(port, "/", NULL), 404);
    assert_int_equal(admin_get(port, "/metrics/x", NULL), 404);
    assert_int_equal(admin_get(port, "/metricsz", NULL), 404);
    {
        static const char post[] =
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        char *reply = h_raw("127.0.0.1", port, post, sizeof(post) - 1, 10000, NULL);
        if (strncmp(reply, "HTTP/1.1 405 ", 13) != 0)
            fail_msg("POST /metrics got:\n%s", reply);
        free(reply);
    }
    h_stop_vigil(e);
    h_done(e);
}

/* a required syslog sink whose peer is down makes /readyz 503 and names the sink; /healthz stays 200 */
static void test_admin_readyz_required_sink_down_503(void **state)
{
    struct h_env *e = *state;
    char cfg[2048], *body;

    snprintf(cfg, sizeof(cfg),
             "{\"sinks\": [{\"type\": \"file\"},"
             " {\"type\": \"syslog\", \"name\": \"siem\", \"transport\": \"tcp\", \"address\": \"127.0.0.1:%d\","
             " \"required\": true, \"reconnect_max_ms\": 1000}], %s}\n",
             h_closed_port(), ADMIN_LOCAL);
    h_start(e, cfg, H_NO_ORIGIN);
    int port = admin_port(e);
    assert_int_equal(admin_get(port, "/readyz", &body), 503);
    if (strstr(body, "sink siem (syslog): degraded") == NULL && strstr(body, "sink siem (syslog): down") == NULL)
        fail_msg("/readyz does not name the failing sink:\n%s", body);
    if (strstr(body, "sink file") != NULL)
        fail_msg("/readyz names the healthy file sink:\n%s", body);
    free(body);
    assert_int_equal(admin_get(port, "/healthz", NULL), 200);
    assert_int_equal(admin_get(port, "/metrics", &body), 200);
    check_exposition(body);
    assert_true(sample(body, "vigil_sink_health{sink=\"siem\",type=\"syslog\",state=\"healthy\"}") == 0);
    assert_true(sample(body, "vigil_sink_required{sink=\"siem\",type=\"syslog\"}") == 1);
    free(body);
    h_stop(&e->vigil); /* the syslog peer never comes: how long its flush waits is not this test's business */
    h_done(e);
}

/* a non-loopback admin address is refused unless allow_remote says so; --admin is checked the same way */
static void test_admin_non_loopback_refused(void **state)
{
    struct h_env *e = *state;
    char path[PATH_MAX], *err = NULL;
    FILE *f;

    snprintf(path, sizeof(path), "%s/remote.json", e->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"admin\": {\"listen\": \"0.0.0.0:9090\"}}\n", f);
    fclose(f);
    {
        char *const argv[] = {VIGIL_BIN, "--check-config", path, NULL};
        assert_int_equal(h_run(e, "check-remote", argv, 10000, NULL, &err), 2);
        if (!strstr(err, "admin.listen: 0.0.0.0:9090 is not a loopback address") || !strstr(err, "allow_remote"))
            fail_msg("--check-config said:\n%s", err);
        free(err);
    }
    {
        char l[] = "127.0.0.1:0", a[] = "[::]:0";
        char *const argv[] = {VIGIL_BIN, "--listen", l, "--data-dir", e->data_dir, "--admin", a, NULL};
        assert_int_equal(h_run(e, "run-remote", argv, 10000, NULL, &err), 2);
        if (!strstr(err, "not a loopback address"))
            fail_msg("vigil --admin [::]:0 said:\n%s", err);
        free(err);
    }
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"admin\": {\"listen\": \"0.0.0.0:9090\", \"allow_remote\": true}}\n", f);
    fclose(f);
    {
        char *const argv[] = {VIGIL_BIN, "--check-config", path, NULL};
        assert_int_equal(h_run(e, "check-allowed", argv, 10000, NULL, NULL), 0);
    }
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"admin\": {\"listen\": \"localhost:80\", \"allow_remote\": 1, \"port\": 3}, \"user\": 7}\n", f);
    fclose(f);
    {
        char *const argv[] = {VIGIL_BIN, "--check-config", path, NULL};
        assert_int_equal(h_run(e, "check-bad", argv, 10000, NULL, &err), 2);
        if (!strstr(err, "admin.port: unknown key") || !strstr(err, "admin.allow_remote: must be true or false") ||
            !strstr(err, "admin.listen: ") || !strstr(err, "user: must be a user name"))
            fail_msg("--check-config said:\n%s", err);
        free(err);
    }
    h_done(e);
}

/* SIGTERM with a flow slower than drain_ms: /readyz turns 503 "draining", the flow is ended at the deadline and
 * recorded with reason "shutdown", vigil exits 0 and every segment is sealed with its digest */
static void test_admin_sigterm_drain_deadline_records_and_seals(void **state)
{
    struct h_env *e = *state;
    static const char stats[] = "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    struct h_conn c;
    char req[512];
    int n, polls = 0, saw_draining = 0;

    h_start(e, admin_config("\"timeouts\": {\"drain_ms\": 1500}"), H_DEFAULT);
    int port = admin_port(e);
    n = snprintf(req, sizeof(req), "GET http://127.0.0.1:%d/slow/60000 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                 e->http_port, e->http_port);
    h_conn_open(&c, "127.0.0.1", e->proxy_port);
    assert_int_equal(h_conn_send(&c, req, (size_t)n, 10000), 0);
    for (;;) { /* until the proxy's upstream connection reached the origin (each poll is a connection too) */
        char *reply = h_raw("127.0.0.1", e->http_port, stats, sizeof(stats) - 1, 5000, NULL);
        const char *p = strstr(reply, "connections ");
        int seen = p != NULL ? atoi(p + 12) : 0;
        free(reply);
        if (seen > ++polls)
            break;
        if (polls > 500)
            fail_msg("the proxy never connected to the origin");
    }
    assert_int_equal(kill(e->vigil.pid, SIGTERM), 0);
    /* the admin endpoint serves during the drain and says so, until it closes with the rest */
    for (int i = 0; i < 1000 && !saw_draining && port_open(port); i++) {
        char *reply = NULL;
        int code = admin_get(port, "/readyz", &reply);
        saw_draining = code == 503 && strstr(reply, "draining") != NULL;
        free(reply);
        if (!saw_draining)
            usleep(20000);
    }
    assert_true(saw_draining);
    int st = h_wait_exit(&e->vigil, 20000);
    assert_int_equal(st, 0);
    e->vigil.pid = 0;
    h_conn_read_until(&c, NULL, 10000);
    h_conn_close(&c);

    h_record(e);
    const char *fid = h_flow_where(e->events, "request.path", "/slow/60000");
    json_t *end = h_one(e->events, fid, "flow.end", NULL);
    h_expect_str(end, "reason", "shutdown");

    /* clean stop: every segment has its signed digest beside it */
    char audit[PATH_MAX + 16];
    int segs = 0;
    snprintf(audit, sizeof(audit), "%s/audit", e->data_dir);
    DIR *top = opendir(audit);
    assert_non_null(top);
    for (struct dirent *d; (d = readdir(top)) != NULL;) {
        char day[PATH_MAX + 512];
        if (d->d_name[0] == '.')
            continue;
        snprintf(day, sizeof(day), "%s/%s", audit, d->d_name);
        DIR *dd = opendir(day);
        if (!dd)
            continue;
        for (struct dirent *s; (s = readdir(dd)) != NULL;) {
            size_t l = strlen(s->d_name);
            char sig[PATH_MAX * 3];
            struct stat st2;
            if (l < 5 || strcmp(s->d_name + l - 5, ".vseg") != 0)
                continue;
            segs++;
            snprintf(sig, sizeof(sig), "%s/%s.sig", day, s->d_name);
            if (stat(sig, &st2) == -1)
                fail_msg("segment %s/%s was not sealed at SIGTERM (no .sig)", day, s->d_name);
        }
        closedir(dd);
    }
    closedir(top);
    assert_true(segs >= 1);
    h_done(e);
}

/* The "Uid:" or "Gid:" line of /proc/<pid>/status: the four ids. */
static void proc_ids(pid_t pid, const char *key, unsigned ids[4])
{
    char path[64], *text, *p;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    text = h_slurp(path, NULL);
    assert_non_null(text);
    p = strstr(text, key);
    assert_non_null(p);
    if (sscanf(p + strlen(key), "%u %u %u %u", &ids[0], &ids[1], &ids[2], &ids[3]) != 4)
        fail_msg("cannot read %s in %s", key, path);
    free(text);
}

/* started as root with --user nobody: every uid and gid is nobody's once it serves, and the record keeps
 * being written (a flow, then a clean stop that seals the segment) */
static void test_admin_user_drop_as_root(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    unsigned uid[4], gid[4];

    if (geteuid() != 0) {
        print_message("not root: the privilege drop cannot be tested\n");
        skip();
    }
    /* the user must reach the data dir: the test dir is 0700 from mkdtemp */
    assert_int_equal(chmod(e->dir, 0755), 0);
    h_start(e, NULL, H_NO_VIGIL);
    {
        FILE *f = fopen(e->config, "w");
        assert_non_null(f);
        fputs(admin_config(NULL), f);
        fclose(f);
    }
    {
        char l[] = "127.0.0.1:0";
        char *const argv[] = {VIGIL_BIN, "--config", e->config, "--listen", l, "--data-dir", e->data_dir,
                              "--user", "nobody", NULL};
        h_spawn(e, &e->vigil, "vigil", argv);
    }
    h_wait_stderr(&e->vigil, " ready (config", 1);
    {
        static const char prefix[] = "listening on 127.0.0.1:";
        char *text = h_slurp(e->vigil.err_path, NULL);
        const char *p = strstr(text, prefix);
        assert_non_null(p);
        e->proxy_port = atoi(p + sizeof(prefix) - 1);
        if (!strstr(text, "running as nobody (uid 65534"))
            fail_msg("no \"running as nobody\" line:\n%s", text);
        free(text);
        snprintf(e->proxy_url, sizeof(e->proxy_url), "http://127.0.0.1:%d", e->proxy_port);
    }
    proc_ids(e->vigil.pid, "Uid:", uid);
    proc_ids(e->vigil.pid, "Gid:", gid);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(uid[i], 65534);
        assert_int_equal(gid[i], 65534);
    }
    assert_int_equal(admin_get(admin_port(e), "/readyz", NULL), 200);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/10"), NULL);
    h_expect_http(&r, 0, 200);
    h_result_fini(&r);
    h_stop_vigil(e);
    h_record(e);
    h_flow_where(e->events, "request.path", "/bytes/10");
    {
        char *const argv[] = {AUDIT_QUERY_BIN, "verify", "--data-dir", e->data_dir, NULL};
        char *out = NULL, *err = NULL;
        int st = h_run(e, "verify", argv, 30000, &out, &err);
        if (st != 0)
            fail_msg("audit-query verify exited %d:\n%s\n%s", st, out ? out : "", err ? err : "");
        free(out);
        free(err);
    }
    h_done(e);
}

/* started as root with a user that does not exist: vigil refuses to go on */
static void test_admin_user_unknown_refused(void **state)
{
    struct h_env *e = *state;
    char *err = NULL;

    if (geteuid() != 0) {
        print_message("not root: the privilege drop cannot be tested\n");
        skip();
    }
    char l[] = "127.0.0.1:0";
    char *const argv[] = {VIGIL_BIN, "--listen", l, "--data-dir", e->data_dir, "--user", "vigil-no-such-user", NULL};
    int st = h_run(e, "unknown-user", argv, 20000, NULL, &err);
    if (st != 1 || !strstr(err, "cannot drop privileges: user vigil-no-such-user"))
        fail_msg("vigil --user vigil-no-such-user exited %d:\n%s", st, err);
    free(err);
    h_done(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_admin_metrics_valid_and_match_record, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_admin_healthz_readyz_ok, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_admin_readyz_required_sink_down_503, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_admin_non_loopback_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_admin_sigterm_drain_deadline_records_and_seals, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_admin_user_drop_as_root, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_admin_user_unknown_refused, h_setup, h_teardown),
    };

    h_main_init();
    return cmocka_run_group_tests_name("integration/admin", tests, NULL, NULL);
}
