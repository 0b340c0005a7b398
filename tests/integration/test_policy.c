/* tests/integration/test_policy.c - the policy engine end to end: blocklist and allowlist
 * configurations driven by curl through vigil with the exact events, the SSRF and CONNECT
 * port guards, proxy authentication, --check-config and --explain, and live reload (under a
 * client loop, and a bad reload that keeps the old policy). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "harness.h"

/* A blocklist: "block" runs before the loopback allows, so its denies win. */
#define BLOCK_GROUP                                                                                            \
    "{\"name\": \"block\", \"rules\": ["                                                                         \
    "{\"id\": \"no-admin\", \"priority\": 10, \"phase\": \"pre_request\", \"action\": \"deny\","                \
    " \"message\": \"admin pages are off limits\", \"match\": {\"path\": [\"/bytes/666\"]}},"                     \
    "{\"id\": \"watch-echo\", \"priority\": 20, \"phase\": \"pre_request\", \"action\": \"alert\","              \
    " \"match\": {\"method\": [\"POST\"]}},"                                                                      \
    "{\"id\": \"trial\", \"priority\": 30, \"phase\": \"pre_request\", \"action\": \"deny\", \"dry_run\": true,"   \
    " \"match\": {\"path\": [{\"regex\": \"^/bytes/[0-9]+$\"}]}},"                                               \
    "{\"id\": \"no-big\", \"priority\": 40, \"phase\": \"post_response\", \"action\": \"deny\","                 \
    " \"match\": {\"content_length\": [1000000, 100000000]}},"                                                   \
    "{\"id\": \"tunnel-path\", \"priority\": 50, \"phase\": \"pre_request\", \"action\": \"deny\","              \
    " \"match\": {\"domain\": [\"localhost\"], \"path\": [\"/secret\"]}}]}"

static const char *blocklist_config(void)
{
    return h_config("\"rule_groups\": [" BLOCK_GROUP ", " H_LOOPBACK_GROUP "],"
                    " \"proxy_configurations\": [{\"name\": \"corp\", \"rule_groups\": [\"block\", \"test-loopback\"],"
                    " \"default_action\": \"allow\"}]");
}

static const char *flow_of(const struct h_result *r)
{
    static char id[64];
    if (h_header(r->headers, "X-Vigil-Flow-Id", id, sizeof(id)) != 0)
        fail_msg("no X-Vigil-Flow-Id in:\n%s", r->headers);
    return id;
}

/* blocklist: a deny rule answers 403 with its message and the flow id; the events name it */
static void test_policy_blocklist_denies_with_rule(void **state)
{
    struct h_env *e = *state;
    struct h_result r;

    h_start(e, blocklist_config(), H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/666"), NULL);
    h_expect_http(&r, 0, 403);
    assert_non_null(strstr(r.body[0], "admin pages are off limits"));
    char flow[64];
    snprintf(flow, sizeof(flow), "%s", flow_of(&r));
    assert_non_null(strstr(r.body[0], flow));
    h_result_fini(&r);
    h_stop_vigil(e);

    json_t *ev = h_record(e);
    h_expect_flow(ev, flow, "flow.phase:pre_dns", "flow.phase:pre_request", "flow.end", NULL);
    json_t *pre = h_one(ev, flow, "flow.phase", "pre_request");
    h_expect_str(pre, "action", "deny");
    h_expect_str(pre, "rule.group", "block");
    h_expect_str(pre, "rule.id", "no-admin");
    h_expect_int(pre, "rule.priority", 10);
    h_expect_str(pre, "reason", "admin pages are off limits");
    assert_non_null(h_str(pre, "config_version"));
    json_t *end = h_one(ev, flow, "flow.end", NULL);
    h_expect_int(end, "response.status", 403);
    h_expect_str(end, "reason", "denied");
    h_done(e);
}

/* alert and dry-run matches are listed on the phase event and do not change the outcome */
static void test_policy_alert_and_dry_run_recorded(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    const char *body;

    h_start(e, blocklist_config(), H_DEFAULT);
    h_random_file(e, "post.bin", 1000, NULL);
    char at[PATH_MAX + 1];
    snprintf(at, sizeof(at), "@%s/post.bin", e->dir);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--data-binary", at, h_origin_url(e, 0, "/echo"), NULL);
    h_expect_http(&r, 0, 200);
    h_result_fini(&r);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/10"), NULL);
    h_expect_http(&r, 0, 200);
    body = r.body[0];
    h_expect_pattern(body, r.body_len[0], 10);
    h_result_fini(&r);
    h_stop_vigil(e);

    json_t *ev = h_record(e);
    const char *post = h_flow_where(ev, "request.method", "POST");
    json_t *pre = h_one(ev, post, "flow.phase", "pre_request");
    h_expect_str(pre, "action", "allow");
    json_t *alerts = h_get(pre, "alerts");
    assert_int_equal(json_array_size(alerts), 1);
    h_expect_str(json_array_get(alerts, 0), "id", "watch-echo");
    h_expect_str(json_array_get(alerts, 0), "group", "block");

    const char *get = h_flow_where(ev, "request.path", "/bytes/10");
    pre = h_one(ev, get, "flow.phase", "pre_request");
    h_expect_str(pre, "action", "allow"); /* not enforced */
    json_t *dry = h_get(pre, "dry_run");
    assert_int_equal(json_array_size(dry), 1);
    h_expect_str(json_array_get(dry, 0), "id", "trial");
    h_expect_str(json_array_get(dry, 0), "action", "deny");
    h_expect_str(h_one(ev, get, "flow.end", NULL), "reason", "completed");
    h_done(e);
}

/* post_response sees the response head: a too large response is denied before it reaches the client */
static void test_policy_post_response_denies(void **state)
{
    struct h_env *e = *state;
    struct h_result r;

    h_start(e, blocklist_config(), H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/2000000"), NULL);
    h_expect_http(&r, 0, 403);
    char flow[64];
    snprintf(flow, sizeof(flow), "%s", flow_of(&r));
    h_result_fini(&r);
    h_stop_vigil(e);

    json_t *ev = h_record(e);
    h_expect_flow(ev, flow, "flow.phase:pre_dns", "flow.phase:pre_request", "flow.phase:post_response", "flow.end",
                  NULL);
    json_t *post = h_one(ev, flow, "flow.phase", "post_response");
    h_expect_str(post, "action", "deny");
    h_expect_str(post, "rule.id", "no-big");
    h_expect_int(post, "response.content_length", 2000000);
    assert_true(h_int(h_one(ev, flow, "flow.end", NULL), "bytes.down") == 0);
    h_done(e);
}

/* a path condition cannot be seen inside a tunnel: the rule does not match and is listed unevaluable */
static void test_policy_unevaluable_in_tunnel(void **state)
{
    struct h_env *e = *state;
    struct h_result r;

    h_start(e, blocklist_config(), H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--cacert", e->cert, h_origin_url(e, 1, "/secret"), NULL);
    h_expect_http(&r, 0, 404); /* the origin answered: the path is inside TLS, vigil cannot deny on it */
    h_result_fini(&r);
    h_stop_vigil(e);

    json_t *ev = h_record(e);
    const char *flow = h_flow_where(ev, "request.method", "CONNECT");
    json_t *pre = h_one(ev, flow, "flow.phase", "pre_request");
    json_t *unev = h_get(pre, "unevaluable"), *u;
    size_t i;
    int found = 0;
    assert_int_equal(json_array_size(unev), 3); /* no-admin, trial (dry run) and tunnel-path: all on the path */
    json_array_foreach(unev, i, u)
    {
        h_expect_str(u, "condition", "path");
        found += strcmp(h_str(u, "id"), "tunnel-path") == 0;
    }
    assert_int_equal(found, 1);
    h_done(e);
}

/* allowlist: only what a rule allows leaves; everything else is denied before it is sent */
static void test_policy_allowlist(void **state)
{
    struct h_env *e = *state;
    struct h_result r;

    h_start(e,
            h_config("\"rule_groups\": [{\"name\": \"allow\", \"rules\": ["
                     "{\"id\": \"origin\", \"priority\": 1, \"phase\": \"pre_dns\", \"action\": \"allow\","
                     " \"match\": {\"domain\": [\"127.0.0.1\"]}},"
                     "{\"id\": \"origin-addr\", \"priority\": 2, \"phase\": \"pre_request\", \"action\": \"allow\","
                     " \"match\": {\"domain\": [\"127.0.0.1\"], \"destination_cidr\": [\"127.0.0.1/32\"]}}]}],"
                     " \"proxy_configurations\": [{\"name\": \"strict\", \"rule_groups\": [\"allow\"],"
                     " \"default_action\": \"deny\"}]"),
            H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/100"), NULL);
    h_expect_http(&r, 0, 200);
    h_result_fini(&r);
    char url[128];
    snprintf(url, sizeof(url), "http://localhost:%d/bytes/100", e->http_port);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, url, NULL);
    h_expect_http(&r, 0, 403);
    char flow[64];
    snprintf(flow, sizeof(flow), "%s", flow_of(&r));
    h_result_fini(&r);
    h_stop_vigil(e);

    json_t *ev = h_record(e);
    json_t *dns = h_one(ev, flow, "flow.phase", "pre_dns");
    h_expect_str(dns, "action", "allow");
    h_expect_str(dns, "reason", "no_decision");
    json_t *pre = h_one(ev, flow, "flow.phase", "pre_request");
    h_expect_str(pre, "action", "deny");
    h_expect_str(pre, "rule.id", "default");
    h_expect_str(pre, "reason", "default_action");
    /* the DNS evidence of a resolved name */
    h_expect_str(pre, "dns.used", "127.0.0.1");
    assert_true(json_array_size(h_get(pre, "dns.answers")) >= 1);
    assert_non_null(h_get(pre, "dns.latency_ms"));
    h_done(e);
}

/* the SSRF guard denies loopback and its numeric disguises, and CONNECT beyond port 443 */
static void test_policy_ssrf_and_connect_guards(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char url[128];

    h_start(e, h_config("\"rule_groups\": []"), H_DEFAULT);
    /* 127.0.0.1 in decimal, sent raw: curl would normalise it itself */
    char req[256];
    int n = snprintf(req, sizeof(req), "GET http://2130706433:%d/bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n", e->http_port);
    size_t len;
    char *reply = h_raw("127.0.0.1", e->proxy_port, req, (size_t)n, 10000, &len);
    assert_true(strncmp(reply, "HTTP/1.1 403 ", 13) == 0);
    char ssrf[64];
    assert_int_equal(h_header(reply, "X-Vigil-Flow-Id", ssrf, sizeof(ssrf)), 0);
    free(reply);
    (void)url;
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--cacert", e->cert, h_origin_url(e, 1, "/bytes/1"), NULL);
    assert_int_not_equal(r.exit_code, 0); /* curl: the CONNECT got 403 */
    assert_non_null(strstr(r.headers, " 403 "));
    char conn[64];
    snprintf(conn, sizeof(conn), "%s", flow_of(&r));
    h_result_fini(&r);
    h_stop_vigil(e);

    json_t *ev = h_record(e);
    json_t *pre = h_one(ev, ssrf, "flow.phase", "pre_request");
    h_expect_str(pre, "request.host", "127.0.0.1");
    h_expect_str(pre, "action", "deny");
    h_expect_str(pre, "rule.id", "ssrf_guard");
    h_expect_str(pre, "reason", "ssrf.loopback");
    json_t *dns = h_one(ev, conn, "flow.phase", "pre_dns");
    h_expect_str(dns, "action", "deny");
    h_expect_str(dns, "rule.id", "connect_ports");
    h_expect_str(dns, "reason", "connect_port_not_allowed");
    h_done(e);
}

/* proxy authentication: 407 with a challenge without credentials or with wrong ones; the
 * principal is recorded and can be matched by rules */
static void test_policy_proxy_auth(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char pwfile[256], *out = NULL, cfg[8192];

    /* vigil --hash-password reads the password on stdin */
    snprintf(pwfile, sizeof(pwfile), "%s/passwords", e->dir);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "printf 'alice-secret\\n' | %s --hash-password alice > %s && printf 'bob-secret\\n' | "
                               "%s --hash-password bob >> %s && chmod 600 %s",
             VIGIL_BIN, pwfile, VIGIL_BIN, pwfile, pwfile);
    char *const sh[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(h_run(e, "hash", sh, 60000, &out, NULL), 0);
    free(out);
    snprintf(cfg, sizeof(cfg),
             "\"auth\": {\"password_file\": \"%s\", \"realm\": \"egress\"},"
             " \"rule_groups\": [{\"name\": \"people\", \"rules\": [{\"id\": \"no-bob\", \"priority\": 1,"
             " \"phase\": \"pre_dns\", \"action\": \"deny\", \"match\": {\"principal\": [\"bob\"]}}]}, " H_LOOPBACK_GROUP
             "], \"proxy_configurations\": [{\"name\": \"p\", \"rule_groups\": [\"people\", \"test-loopback\"]}]",
             pwfile);
    h_start(e, h_config(cfg), H_DEFAULT);

    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/5"), NULL);
    h_expect_http(&r, 0, 407);
    char v[256];
    assert_int_equal(h_header(r.headers, "Proxy-Authenticate", v, sizeof(v)), 0);
    assert_non_null(strstr(v, "Basic realm=\"egress\""));
    h_result_fini(&r);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--proxy-user", "alice:wrong", h_origin_url(e, 0, "/bytes/5"), NULL);
    h_expect_http(&r, 0, 407);
    h_result_fini(&r);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--proxy-user", "alice:alice-secret", h_origin_url(e, 0, "/bytes/5"),
           NULL);
    h_expect_http(&r, 0, 200);
    h_result_fini(&r);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--proxy-user", "bob:bob-secret", h_origin_url(e, 0, "/bytes/5"), NULL);
    h_expect_http(&r, 0, 403);
    h_result_fini(&r);
    h_stop_vigil(e);

    json_t *ev = h_record(e), *ends = h_filter(ev, NULL, "flow.end", NULL);
    assert_int_equal(json_array_size(ends), 4);
    h_expect_str(json_array_get(ends, 0), "reason", "auth_required");
    h_expect_int(json_array_get(ends, 0), "response.status", 407);
    h_expect_str(json_array_get(ends, 1), "reason", "auth_failed");
    h_expect_str(json_array_get(ends, 2), "principal", "alice");
    h_expect_str(json_array_get(ends, 2), "reason", "completed");
    h_expect_str(json_array_get(ends, 3), "principal", "bob");
    h_expect_str(json_array_get(ends, 3), "reason", "denied");
    json_decref(ends);
    h_done(e);
}

/* --check-config names every error's JSON path and exits 2; --explain traces each phase */
static void test_policy_check_config_and_explain(void **state)
{
    struct h_env *e = *state;
    char path[PATH_MAX], *out = NULL, *err = NULL;

    snprintf(path, sizeof(path), "%s/bad.json", e->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"rule_groups\": [{\"name\": \"g\", \"rules\": ["
          "{\"id\": \"a\", \"priority\": 5, \"phase\": \"pre_dns\", \"action\": \"deny\"},"
          "{\"id\": \"b\", \"priority\": 5, \"phase\": \"pre_dns\", \"action\": \"deny\","
          " \"match\": {\"status\": [500, 599]}}]}]}",
          f);
    fclose(f);
    char *const check[] = {VIGIL_BIN, "--check-config", path, NULL};
    assert_int_equal(h_run(e, "check", check, 10000, &out, &err), 2);
    assert_non_null(strstr(err, "rule_groups[0].rules[1].priority: 5 is also the priority of rules[0]"));
    assert_non_null(strstr(err, "rule_groups[0].rules[1].match.status: no flow shows status in phase pre_dns"));
    free(out);
    free(err);

    /* the top-level "roles" (the roles file's path) is checked like redaction.roles_file */
    static const char *const roles_bad[][2] = {
        {"{\"roles\": 5}", "roles: must be the path of a roles file, or null"},
        {"{\"roles\": \"/a/roles.json\", \"redaction\": {\"roles_file\": \"/b/roles.json\"}}",
         "roles: also given as redaction.roles_file"},
        {"{\"roles\": \"/nonexistent/roles.json\"}", "/nonexistent/roles.json: No such file"},
    };
    for (size_t i = 0; i < sizeof(roles_bad) / sizeof(roles_bad[0]); i++) {
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(roles_bad[i][0], f);
        fclose(f);
        assert_int_equal(h_run(e, "check-roles", check, 10000, &out, &err), 2);
        if (strstr(err, roles_bad[i][1]) == NULL)
            fail_msg("--check-config on %s said \"%s\", not \"%s\"", roles_bad[i][0], err, roles_bad[i][1]);
        free(out);
        free(err);
    }

    snprintf(path, sizeof(path), "%s/good.json", e->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"rule_groups\": [{\"name\": \"g\", \"rules\": ["
          "{\"id\": \"ads\", \"priority\": 1, \"phase\": \"pre_dns\", \"action\": \"deny\","
          " \"match\": {\"domain\": [\"*.ads.example\"]}},"
          "{\"id\": \"admin\", \"priority\": 2, \"phase\": \"pre_request\", \"action\": \"deny\","
          " \"match\": {\"path\": [\"/admin\"]}}]}]}",
          f);
    fclose(f);
    char *const deny[] = {VIGIL_BIN, "--config", path, "--explain", "http://x.ads.example/", "--ip", "93.184.216.34",
                          NULL};
    assert_int_equal(h_run(e, "explain1", deny, 10000, &out, &err), 1);
    assert_non_null(strstr(out, "pre_dns: g/ads (priority 1): matched: deny decides the phase"));
    assert_non_null(strstr(out, "result: denied at pre_dns"));
    free(out);
    free(err);
    char *const allow[] = {VIGIL_BIN, "--config", path, "--explain", "http://www.example/index", "--ip", "93.184.216.34",
                           NULL};
    assert_int_equal(h_run(e, "explain2", allow, 10000, &out, &err), 0);
    assert_non_null(strstr(out, "pre_dns: g/ads (priority 1, deny): no match: domain"));
    assert_non_null(strstr(out, "pre_request: g/admin (priority 2, deny): no match: path"));
    assert_non_null(strstr(out, "result: allowed"));
    free(out);
    free(err);
    char *const ssrf[] = {VIGIL_BIN, "--config", path, "--explain", "http://internal.example/", "--ip", "10.1.2.3",
                          NULL};
    assert_int_equal(h_run(e, "explain3", ssrf, 10000, &out, &err), 1);
    assert_non_null(strstr(out, "SSRF guard: the destination is private"));
    free(out);
    free(err);
    h_done(e);
}

struct loop {
    struct h_env *e;
    _Atomic int stop;
    _Atomic int requests;
    int failures;
};

/* a client loop: sequential requests until told to stop, counting failures */
static void *client_loop(void *arg)
{
    struct loop *l = arg;
    char cmd[512];
    while (!l->stop && l->requests < 2000) {
        snprintf(cmd, sizeof(cmd),
                 "curl -q -sS --max-time 10 -o /dev/null -w '%%{http_code}' --proxy %s http://127.0.0.1:%d/bytes/64",
                 l->e->proxy_url, l->e->http_port);
        FILE *p = popen(cmd, "r");
        char code[16] = "";
        if (!p || !fgets(code, sizeof(code), p) || strcmp(code, "200") != 0)
            l->failures++;
        if (p)
            pclose(p);
        l->requests++;
    }
    return NULL;
}

static void write_config(struct h_env *e, const char *text)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", e->config);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, e->config), 0);
}

/* SIGHUP under a client loop: no request fails, flows switch versions, the switch is recorded;
 * a bad reload is rejected, recorded, and the old policy stays */
static void test_policy_reload_under_load(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    struct loop l = {.e = e};
    pthread_t th;

    h_start(e, h_config("\"timeouts\": {\"drain_ms\": 5000}"), H_DEFAULT);
    assert_int_equal(pthread_create(&th, NULL, client_loop, &l), 0);
    /* a new policy: the same allows plus a deny for one path */
    char v2[8192];
    snprintf(v2, sizeof(v2), "%s",
             h_config("\"timeouts\": {\"drain_ms\": 5000}, \"rule_groups\": [{\"name\": \"v2\", \"rules\": ["
                      "{\"id\": \"no-13\", \"priority\": 1, \"phase\": \"pre_request\", \"action\": \"deny\","
                      " \"match\": {\"path\": [\"/bytes/13\"]}}]}, " H_LOOPBACK_GROUP "]"));
    while (l.requests < 20)
        sched_yield();
    write_config(e, v2);
    kill(e->vigil.pid, SIGHUP);
    h_wait_stderr(&e->vigil, "reloaded", 1);
    int at_reload = l.requests;
    while (l.requests < at_reload + 20)
        sched_yield();
    /* a bad config: rejected, the running one stays */
    write_config(e, "{\"rule_groups\": [{\"name\": \"broken\", \"rules\": [{\"id\": \"x\"}]}]}");
    kill(e->vigil.pid, SIGHUP);
    h_wait_stderr(&e->vigil, "rejected", 1);
    l.stop = 1;
    pthread_join(th, NULL);
    assert_int_equal(l.failures, 0);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/13"), NULL);
    h_expect_http(&r, 0, 403); /* v2 still enforced after the bad reload */
    h_result_fini(&r);
    h_stop_vigil(e);

    json_t *ev = h_record(e), *cfgs = h_filter(ev, NULL, "proxy.config", NULL);
    assert_int_equal(json_array_size(cfgs), 3);
    h_expect_str(json_array_get(cfgs, 0), "reason", "loaded");
    h_expect_str(json_array_get(cfgs, 1), "reason", "reloaded");
    const char *rej = h_str(json_array_get(cfgs, 2), "reason");
    assert_true(strncmp(rej, "rejected: ", 10) == 0);
    assert_non_null(strstr(rej, "rule_groups[0].rules[0]"));
    const char *v1id = h_str(json_array_get(cfgs, 0), "config_version");
    const char *v2id = h_str(json_array_get(cfgs, 1), "config_version");
    assert_string_not_equal(v1id, v2id);
    /* every flow ended, each under one version, v1 then v2 in record order */
    json_t *ends = h_filter(ev, NULL, "flow.end", NULL);
    size_t i, n1 = 0, n2 = 0;
    json_t *x;
    int seen_v2 = 0;
    json_array_foreach(ends, i, x)
    {
        const char *v = h_str(x, "config_version");
        if (strcmp(v, v1id) == 0) {
            assert_false(seen_v2);
            n1++;
        } else {
            assert_string_equal(v, v2id);
            seen_v2 = 1;
            n2++;
        }
    }
    assert_true(n1 > 0 && n2 > 0);
    assert_int_equal(n1 + n2, (size_t)l.requests + 1);
    json_decref(ends);
    json_decref(cfgs);
    h_done(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_policy_blocklist_denies_with_rule, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_policy_alert_and_dry_run_recorded, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_policy_post_response_denies, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_policy_unevaluable_in_tunnel, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_policy_allowlist, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_policy_ssrf_and_connect_guards, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_policy_proxy_auth, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_policy_check_config_and_explain, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_policy_reload_under_load, h_setup, h_teardown),
    };
    h_main_init();
    return cmocka_run_group_tests_name("integration/policy", tests, NULL, NULL);
}
