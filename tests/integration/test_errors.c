/* tests/integration/test_errors.c - requests vigil must refuse or cannot complete, and the command line.
 *
 * Every error answers the client with the right status, "Connection: close" and the proxy's own
 * X-Vigil-Flow-Id, and leaves exactly one flow.end with that flow id, the status and the reason. A request
 * refused while parsing has no flow.phase events at all. Requests curl will not produce are sent raw. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

#define FLOW_ID_BUF 64

/* Asserts a proxy-made error response in <head> (status line and headers, raw or curl -D) and copies its
 * X-Vigil-Flow-Id into <fid>. */
static void expect_proxy_error(const char *head, int status, char fid[FLOW_ID_BUF])
{
    char conn[128], want[32];

    snprintf(want, sizeof(want), " %d ", status);
    if (strncmp(head, "HTTP/1.", 7) != 0 || strncmp(head + 8, want, strlen(want)) != 0)
        fail_msg("want a %d response, got:\n%.500s", status, head);
    if (h_header(head, "X-Vigil-Flow-Id", fid, FLOW_ID_BUF) == -1)
        fail_msg("the %d response has no X-Vigil-Flow-Id:\n%.500s", status, head);
    if (strlen(fid) != H_FLOW_ID_LEN)
        fail_msg("X-Vigil-Flow-Id \"%s\" is not %d characters", fid, H_FLOW_ID_LEN);
    if (h_header(head, "Connection", conn, sizeof(conn)) == -1 || strcmp(conn, "close") != 0)
        fail_msg("the %d response does not say \"Connection: close\":\n%.500s", status, head);
}

/* Asserts the recorded flow.end of <fid>: <status> and <reason>. */
static void expect_end(struct h_env *e, const char *fid, int status, const char *reason)
{
    json_t *ev = h_one(e->events, fid, "flow.end", NULL);

    h_expect_int(ev, "response.status", status);
    h_expect_str(ev, "reason", reason);
}

enum refusal_kind {
    REFUSED_IN_HEAD = 0, /* refused while parsing the head: no phase was evaluated, only the flow.end */
    REFUSED_IN_BODY,     /* refused in the body: the head may already have passed pre_dns and pre_request */
};

/* Sends <req> (a printf format taking the origin's port, possibly twice) raw to the proxy started with
 * <config>, expects a refusal with <status>, and a record holding the flow.end with <reason>. */
static void raw_refusal_kind(struct h_env *e, const char *config, const char *req_fmt, int status, const char *reason,
                             enum refusal_kind kind)
{
    char req[16384], fid[FLOW_ID_BUF];
    char *reply;
    int n;

    h_start(e, config, H_DEFAULT);
    n = snprintf(req, sizeof(req), req_fmt, e->http_port, e->http_port);
    assert_true(n > 0 && (size_t)n < sizeof(req));
    reply = h_raw("127.0.0.1", e->proxy_port, req, (size_t)n, 15000, NULL);
    expect_proxy_error(reply, status, fid);
    free(reply);
    h_stop_vigil(e);

    h_record(e);
    if (kind == REFUSED_IN_BODY) {
        /* A streaming proxy evaluates the head before the body arrives (and may forward it), so the phases it
         * decided are on record; a proxy that saw the bad chunk first has none. Either, but nothing else. */
        const char *kinds = h_flow_kinds(e->events, fid);
        if (strcmp(kinds, "flow.end") != 0 &&
            strcmp(kinds, "flow.phase:pre_dns flow.phase:pre_request flow.end") != 0)
            fail_msg("flow %s: events are [%s], want [flow.end] or [pre_dns pre_request flow.end]", fid, kinds);
    } else {
        h_expect_flow(e->events, fid, "flow.end", NULL);
    }
    expect_end(e, fid, status, reason);
    h_done(e);
}

static void raw_refusal(struct h_env *e, const char *config, const char *req_fmt, int status, const char *reason)
{
    raw_refusal_kind(e, config, req_fmt, status, reason, REFUSED_IN_HEAD);
}

/* Content-Length together with Transfer-Encoding is refused (request smuggling) */
static void test_errors_cl_and_te_refused(void **state)
{
    raw_refusal(*state, NULL,
                "POST http://127.0.0.1:%d/echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 5\r\n"
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                400, "bad_request.cl_and_te");
}

/* two differing Content-Length headers are refused */
static void test_errors_duplicate_content_length_refused(void **state)
{
    raw_refusal(*state, NULL,
                "POST http://127.0.0.1:%d/echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 5\r\n"
                "Content-Length: 6\r\n\r\nhello!",
                400, "bad_request.duplicate_content_length");
}

/* a chunk size that is not hex is refused */
static void test_errors_bad_chunk_refused(void **state)
{
    raw_refusal_kind(*state, NULL,
                     "POST http://127.0.0.1:%d/echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTransfer-Encoding: chunked\r\n"
                     "\r\nzz\r\nhello\r\n0\r\n\r\n",
                     400, "bad_request.bad_chunk", REFUSED_IN_BODY);
}

/* a bad chunk size after a good chunk (part of the body already on its way upstream) is still refused */
static void test_errors_bad_chunk_after_good_chunk_refused(void **state)
{
    raw_refusal_kind(*state, NULL,
                     "POST http://127.0.0.1:%d/echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTransfer-Encoding: chunked\r\n"
                     "\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n",
                     400, "bad_request.bad_chunk", REFUSED_IN_BODY);
}

/* a request line that is not HTTP is refused as malformed */
static void test_errors_garbage_request_line_refused(void **state)
{
    raw_refusal(*state, NULL, "HELLO THERE\r\n\r\n", 400, "bad_request.malformed");
}

/* a Content-Length that is not a number is refused, with its own reason */
static void test_errors_bad_content_length_refused(void **state)
{
    raw_refusal(*state, NULL,
                "POST http://127.0.0.1:%d/echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 12abc\r\n\r\n"
                "hello",
                400, "bad_request.bad_content_length");
}

/* a header continued on the next line (obs-fold) is refused */
static void test_errors_obs_fold_refused(void **state)
{
    raw_refusal(*state, NULL,
                "GET http://127.0.0.1:%d/headers HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Long: first\r\n"
                " second\r\n\r\n",
                400, "bad_request.obs_fold");
}

/* a header line without a colon is refused as malformed */
static void test_errors_malformed_header_refused(void **state)
{
    raw_refusal(*state, NULL,
                "GET http://127.0.0.1:%d/headers HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nNoColonHere\r\n\r\n", 400,
                "bad_request.malformed");
}

/* an origin-form request (a proxy needs the absolute URI) is refused */
static void test_errors_origin_form_refused(void **state)
{
    raw_refusal(*state, NULL, "GET /bytes/10 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", 400,
                "bad_request.not_absolute_form");
}

/* headers over limits.max_header_bytes get 431 */
static void test_errors_headers_too_large_431(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char big[9000], fid[FLOW_ID_BUF];

    h_start(e, h_config("\"limits\": {\"max_header_bytes\": 4096}"), H_DEFAULT);
    memcpy(big, "X-Big: ", 7);
    memset(big + 7, 'a', 8000);
    big[8007] = '\0';
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "-H", big, h_origin_url(e, 0, "/bytes/10"), NULL);
    if (r.http_code != 431)
        fail_msg("want 431, curl exit %d code %d; stderr:\n%.2000s", r.exit_code, r.http_code, r.err);
    expect_proxy_error(r.headers, 431, fid);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    h_expect_flow(e->events, fid, "flow.end", NULL);
    expect_end(e, fid, 431, "headers_too_large");
    h_done(e);
}

/* a client that does not finish its headers within header_read_ms gets 408 */
static void test_errors_header_timeout_408(void **state)
{
    raw_refusal(*state, h_config("\"timeouts\": {\"header_read_ms\": 300}"),
                "GET http://127.0.0.1:%d/bytes/10 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", 408, "header_timeout");
}

/* a host that does not resolve gets 502 dns_failure after pre_dns */
static void test_errors_dns_failure_502(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char fid[FLOW_ID_BUF];
    json_t *ev;

    h_start(e, NULL, H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "http://nonexistent.invalid/x", NULL);
    if (r.http_code != 502)
        fail_msg("want 502, curl exit %d code %d; stderr:\n%.2000s", r.exit_code, r.http_code, r.err);
    expect_proxy_error(r.headers, 502, fid);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    h_expect_flow(e->events, fid, "flow.phase:pre_dns", "flow.end", NULL);
    ev = h_one(e->events, fid, "flow.phase", "pre_dns");
    h_expect_default_allow(ev);
    h_expect_str(ev, "request.host", "nonexistent.invalid");
    expect_end(e, fid, 502, "dns_failure");
    h_done(e);
}

/* a closed upstream port gets 502 connect_refused after pre_dns and pre_request */
static void test_errors_connect_refused_502(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char url[128], fid[FLOW_ID_BUF];
    int port = h_closed_port();

    h_start(e, NULL, H_DEFAULT);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, url, NULL);
    if (r.http_code != 502)
        fail_msg("want 502, curl exit %d code %d; stderr:\n%.2000s", r.exit_code, r.http_code, r.err);
    expect_proxy_error(r.headers, 502, fid);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    h_expect_flow(e->events, fid, "flow.phase:pre_dns", "flow.phase:pre_request", "flow.end", NULL);
    h_expect_int(h_one(e->events, fid, "flow.phase", "pre_request"), "destination.port", port);
    expect_end(e, fid, 502, "connect_refused");
    h_done(e);
}

/* an origin slower than upstream_response_ms gets 504 upstream_timeout */
static void test_errors_upstream_timeout_504(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char fid[FLOW_ID_BUF];

    h_start(e, h_config("\"timeouts\": {\"upstream_response_ms\": 300}"), H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, "/slow/5000"), NULL);
    if (r.http_code != 504)
        fail_msg("want 504, curl exit %d code %d; stderr:\n%.2000s", r.exit_code, r.http_code, r.err);
    expect_proxy_error(r.headers, 504, fid);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    h_expect_flow(e->events, fid, "flow.phase:pre_dns", "flow.phase:pre_request", "flow.end", NULL);
    expect_end(e, fid, 504, "upstream_timeout");
    h_done(e);
}

/* --check-config: a wrong type exits 2 naming the JSON path; the default config and a test config pass */
static void test_errors_check_config_names_json_path(void **state)
{
    struct h_env *e = *state;
    char bad[PATH_MAX], good[PATH_MAX], dflt[PATH_MAX];
    char *out = NULL, *err = NULL;
    FILE *f;
    int st;

    snprintf(bad, sizeof(bad), "%s/bad.json", e->dir);
    f = fopen(bad, "w");
    assert_non_null(f);
    fputs("{\"timeouts\": {\"header_read_ms\": \"soon\"}}\n", f);
    fclose(f);
    {
        char *const argv[] = { VIGIL_BIN, "--check-config", bad, NULL };
        st = h_run(e, "check-bad", argv, 10000, &out, &err);
    }
    if (st != 2 || (strstr(out, "timeouts.header_read_ms") == NULL && strstr(err, "timeouts.header_read_ms") == NULL))
        fail_msg("vigil --check-config on a bad type: exit %d (want 2), want a line naming timeouts.header_read_ms;"
                 "\nstdout:\n%.1000s\nstderr:\n%.1000s",
                 st, out, err);
    free(out);
    free(err);

    snprintf(good, sizeof(good), "%s/good.json", e->dir);
    f = fopen(good, "w");
    assert_non_null(f);
    fputs(h_config("\"timeouts\": {\"header_read_ms\": 300}, \"limits\": {\"max_header_bytes\": 4096}"), f);
    fclose(f);
    {
        char *const argv[] = { VIGIL_BIN, "--check-config", good, NULL };
        st = h_run(e, "check-good", argv, 10000, &out, &err);
    }
    if (st != 0)
        fail_msg("vigil --check-config on a valid test config: exit %d; stderr:\n%.1000s", st, err);
    free(out);
    free(err);

    {
        char *const argv[] = { VIGIL_BIN, "--print-default-config", NULL };
        st = h_run(e, "print-default", argv, 10000, &out, &err);
    }
    assert_int_equal(st, 0);
    assert_non_null(out);
    snprintf(dflt, sizeof(dflt), "%s/default.json", e->dir);
    f = fopen(dflt, "w");
    assert_non_null(f);
    fputs(out, f);
    fclose(f);
    free(out);
    free(err);
    {
        char *const argv[] = { VIGIL_BIN, "--check-config", dflt, NULL };
        st = h_run(e, "check-default", argv, 10000, &out, &err);
    }
    if (st != 0)
        fail_msg("vigil --check-config on its own --print-default-config: exit %d; stderr:\n%.1000s", st, err);
    free(out);
    free(err);
    h_done(e);
}

/* --version exits 0 and says something */
static void test_errors_version_exits_zero(void **state)
{
    struct h_env *e = *state;
    char *const argv[] = { VIGIL_BIN, "--version", NULL };
    char *out = NULL, *err = NULL;
    int st = h_run(e, "version", argv, 10000, &out, &err);

    if (st != 0 || (strlen(out) == 0 && strlen(err) == 0))
        fail_msg("vigil --version: exit %d, stdout \"%.200s\", stderr \"%.200s\"", st, out, err);
    free(out);
    free(err);
    h_done(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_errors_cl_and_te_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_duplicate_content_length_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_bad_chunk_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_bad_chunk_after_good_chunk_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_obs_fold_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_garbage_request_line_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_bad_content_length_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_malformed_header_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_origin_form_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_headers_too_large_431, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_header_timeout_408, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_dns_failure_502, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_connect_refused_502, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_upstream_timeout_504, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_check_config_names_json_path, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_version_exits_zero, h_setup, h_teardown),
    };

    h_main_init();
    return cmocka_run_group_tests_name("integration/errors", tests, NULL, NULL);
}
