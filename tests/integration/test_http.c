/* tests/integration/test_http.c - plain HTTP through vigil: what the client gets and what the record says.
 *
 * Each test starts the origin and vigil, runs curl through the proxy, stops vigil (SIGTERM, exit 0, record
 * flushed) and then reads the record with audit-query. h_record() also checks what holds for every record:
 * seq strictly increasing, one flow.end per flow, nothing of a flow after its flow.end. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

/* Asserts the four events of a completed plain-HTTP GET/POST flow and returns its flow.end. */
static json_t *expect_plain_flow(struct h_env *e, const char *fid, const char *method, const char *path,
                                 const char *query)
{
    json_t *ev;

    h_expect_flow(e->events, fid, "flow.phase:pre_dns", "flow.phase:pre_request", "flow.phase:post_response",
                  "flow.end", NULL);
    ev = h_one(e->events, fid, "flow.phase", "pre_dns");
    h_expect_default_allow(ev);
    h_expect_str(ev, "request.method", method);
    h_expect_str(ev, "request.scheme", "http");
    h_expect_str(ev, "request.host", "127.0.0.1");
    h_expect_int(ev, "request.port", e->http_port);
    h_expect_str(ev, "request.path", path);
    if (query != NULL)
        h_expect_str(ev, "request.query", query);
    h_expect_str(ev, "client.ip", "127.0.0.1");
    assert_true(h_int(ev, "client.port") > 0);

    ev = h_one(e->events, fid, "flow.phase", "pre_request");
    h_expect_default_allow(ev);
    h_expect_str(ev, "request.path", path);
    h_expect_str(ev, "destination.ip", "127.0.0.1");
    h_expect_int(ev, "destination.port", e->http_port);

    ev = h_one(e->events, fid, "flow.phase", "post_response");
    h_expect_default_allow(ev);
    h_expect_int(ev, "response.status", 200);

    ev = h_one(e->events, fid, "flow.end", NULL);
    h_expect_int(ev, "response.status", 200);
    h_expect_str(ev, "reason", "completed");
    if (!json_is_number(h_get(ev, "duration_ms")) || json_number_value(h_get(ev, "duration_ms")) < 0)
        fail_msg("flow.end of %s has no duration_ms >= 0", fid);
    return ev;
}

/* a GET through the proxy returns the origin's bytes and records pre_dns, pre_request, post_response, end */
static void test_http_get_records_all_phases(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    json_t *ev;
    const char *fid;

    h_start(e, h_config("\"audit\": {\"headers\": {\"exclude\": [\"Accept\"]}}"), H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "-H", "X-Team: payments", "-H", "X-Team: infra",
           h_origin_url(e, 0, "/bytes/1024"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 1024);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/bytes/1024");
    ev = expect_plain_flow(e, fid, "GET", "/bytes/1024", NULL);
    h_expect_int(ev, "bytes.up", 0);
    h_expect_int(ev, "bytes.down", 1024);
    ev = h_one(e->events, fid, "flow.phase", "post_response");
    h_expect_str(ev, "response.content_type", "text/plain");
    h_expect_int(ev, "response.content_length", 1024);
    /* the headers as they came, names lowercased, repeats joined; excluded ones left out */
    h_expect_str(ev, "response.headers.content-type", "text/plain");
    ev = h_one(e->events, fid, "flow.phase", "pre_request");
    h_expect_str(ev, "request.headers.x-team", "payments, infra");
    assert_non_null(strstr(h_str(ev, "request.headers.user-agent"), "curl/"));
    assert_null(h_get(ev, "request.headers.accept"));
    h_done(e);
}

/* the query string is recorded without its '?' and apart from the path */
static void test_http_query_recorded_without_question_mark(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    const char *fid;

    h_start(e, NULL, H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/10?colour=blue&size=3"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 10);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/bytes/10");
    expect_plain_flow(e, fid, "GET", "/bytes/10", "colour=blue&size=3");
    h_expect_str(h_one(e->events, fid, "flow.phase", "pre_request"), "request.query", "colour=blue&size=3");
    h_done(e);
}

/* a 100 KB POST is echoed exactly and counted as bytes.up */
static void test_http_post_echo_counts_bytes_up(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char *data, arg[PATH_MAX + 2], v[64];
    const char *fid;
    json_t *ev;

    h_start(e, NULL, H_DEFAULT);
    snprintf(arg, sizeof(arg), "@%s", h_random_file(e, "up.bin", 100 * 1024, &data));
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--data-binary", arg, h_origin_url(e, 0, "/echo"), NULL);
    h_expect_http(&r, 0, 200);
    assert_int_equal(r.body_len[0], 100 * 1024);
    assert_memory_equal(r.body[0], data, 100 * 1024);
    assert_int_equal(h_header(r.headers, "X-Echo-Length", v, sizeof(v)), 0);
    assert_string_equal(v, "102400");
    h_result_fini(&r);
    free(data);
    h_stop_vigil(e);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/echo");
    ev = expect_plain_flow(e, fid, "POST", "/echo", NULL);
    h_expect_int(ev, "bytes.up", 100 * 1024);
    h_expect_int(ev, "bytes.down", 100 * 1024);
    ev = h_one(e->events, fid, "flow.phase", "post_response");
    h_expect_str(ev, "response.content_type", "application/octet-stream");
    h_expect_int(ev, "response.content_length", 100 * 1024);
    h_done(e);
}

/* a chunked upload reaches the origin intact (echoed exactly); bytes.up counts the body, not the framing */
static void test_http_chunked_upload_echoed(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char *data, arg[PATH_MAX + 2];
    const char *fid;
    json_t *ev;

    h_start(e, NULL, H_DEFAULT);
    snprintf(arg, sizeof(arg), "@%s", h_random_file(e, "up.bin", 300000, &data));
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "-H", "Transfer-Encoding: chunked", "--data-binary", arg,
           h_origin_url(e, 0, "/echo"), NULL);
    h_expect_http(&r, 0, 200);
    assert_int_equal(r.body_len[0], 300000);
    assert_memory_equal(r.body[0], data, 300000);
    h_result_fini(&r);
    free(data);
    h_stop_vigil(e);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/echo");
    ev = expect_plain_flow(e, fid, "POST", "/echo", NULL);
    h_expect_int(ev, "bytes.up", 300000);
    h_expect_int(ev, "bytes.down", 300000);
    h_done(e);
}

/* a chunked response arrives exactly; bytes.down counts the body */
static void test_http_chunked_response_exact(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    const char *fid;

    h_start(e, NULL, H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, "/chunked/100000"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 100000);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/chunked/100000");
    h_expect_int(expect_plain_flow(e, fid, "GET", "/chunked/100000", NULL), "bytes.down", 100000);
    h_done(e);
}

/* a body delimited by the origin closing (no length, not chunked) arrives exactly */
static void test_http_eof_delimited_response_exact(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    const char *fid;

    h_start(e, NULL, H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, "/eof/5000"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 5000);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/eof/5000");
    h_expect_int(expect_plain_flow(e, fid, "GET", "/eof/5000", NULL), "bytes.down", 5000);
    h_done(e);
}

/* two requests on one client connection: curl re-uses it, both flows share the client port, and the
 * origin saw one upstream connection */
static void test_http_keepalive_reuses_client_and_upstream(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    const char *f1, *f2;

    h_start(e, NULL, H_DEFAULT);
    h_curl(e, &r, 2, "-v", "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/100"), h_origin_url(e, 0, "/stats"),
           NULL);
    h_expect_http(&r, 0, 200);
    h_expect_http(&r, 1, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 100);
    if (strstr(r.err, "Re-using existing connection") == NULL)
        fail_msg("curl did not re-use its proxy connection; curl -v:\n%.4000s", r.err);
    if (strncmp(r.body[1], "connections 1\n", 14) != 0)
        fail_msg("the origin saw \"%s\" for two requests on one client connection, want \"connections 1\" "
                 "(upstream keep-alive)",
                 r.body[1]);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    f1 = h_flow_where(e->events, "request.path", "/bytes/100");
    f2 = h_flow_where(e->events, "request.path", "/stats");
    assert_string_not_equal(f1, f2);
    expect_plain_flow(e, f1, "GET", "/bytes/100", NULL);
    expect_plain_flow(e, f2, "GET", "/stats", NULL);
    assert_int_equal(h_int(h_one(e->events, f1, "flow.phase", "pre_dns"), "client.port"),
                     h_int(h_one(e->events, f2, "flow.phase", "pre_dns"), "client.port"));
    h_done(e);
}

/* Does <headers> ("Name: value\n" lines) have a header <name>? */
static int has_header_line(const char *headers, const char *name)
{
    size_t nl = strlen(name);

    for (const char *l = headers; l != NULL && *l != '\0'; l = strchr(l, '\n') != NULL ? strchr(l, '\n') + 1 : NULL)
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':')
            return 1;
    return 0;
}

/* hop-by-hop request headers (Connection and what it names, Keep-Alive, Proxy-Connection, TE) are not
 * forwarded; Via is added to the request and the response */
static void test_http_hop_by_hop_removed_via_added(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char via[256], conn[256];
    const char *fid;

    h_start(e, NULL, H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "-H", "Connection: close, X-Foo", "-H", "X-Foo: 1", "-H",
           "Keep-Alive: 1", "-H", "Proxy-Connection: keep-alive", "-H", "TE: trailers", "-H", "X-Kept: yes",
           h_origin_url(e, 0, "/headers"), NULL);
    h_expect_http(&r, 0, 200);
    if (!has_header_line(r.body[0], "X-Kept"))
        fail_msg("an end-to-end header was dropped; origin received:\n%s", r.body[0]);
    if (has_header_line(r.body[0], "X-Foo") || has_header_line(r.body[0], "Keep-Alive") ||
        has_header_line(r.body[0], "Proxy-Connection") || has_header_line(r.body[0], "TE"))
        fail_msg("a hop-by-hop header was forwarded; origin received:\n%s", r.body[0]);
    /* the proxy may say Connection: keep-alive for its own hop, but not forward the client's */
    if (h_header(r.body[0], "Connection", conn, sizeof(conn)) == 0 &&
        (strcasestr(conn, "X-Foo") != NULL || strcasestr(conn, "close") != NULL))
        fail_msg("the client's Connection header was forwarded: \"%s\"", conn);
    if (h_header(r.body[0], "Via", via, sizeof(via)) == -1 || strstr(via, "1.1 vigil") == NULL)
        fail_msg("the forwarded request has no \"Via: 1.1 vigil\"; origin received:\n%s", r.body[0]);
    if (h_header(r.headers, "Via", via, sizeof(via)) == -1 || strstr(via, "vigil") == NULL)
        fail_msg("the forwarded response has no Via naming vigil; response headers:\n%s", r.headers);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/headers");
    expect_plain_flow(e, fid, "GET", "/headers", NULL);
    h_done(e);
}

/* a 10 MB download arrives exactly (the proxy applies back-pressure instead of losing or reordering) */
static void test_http_large_download_exact(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    const char *fid;
    json_t *ev;

    h_start(e, NULL, H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/10000000"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 10000000);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/bytes/10000000");
    ev = expect_plain_flow(e, fid, "GET", "/bytes/10000000", NULL);
    h_expect_int(ev, "bytes.down", 10000000);
    h_expect_int(h_one(e->events, fid, "flow.phase", "post_response"), "response.content_length", 10000000);
    h_done(e);
}

/* a listener on [::1] serves and records the IPv6 client address */
static void test_http_ipv6_listener_serves(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char proxy6[64];
    const char *fid;

    h_start(e, NULL, H_IPV6);
    snprintf(proxy6, sizeof(proxy6), "http://[::1]:%d", e->proxy6_port);
    h_curl(e, &r, 1, "--proxy", proxy6, h_origin_url(e, 0, "/bytes/64"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 64);
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/bytes/64");
    h_expect_flow(e->events, fid, "flow.phase:pre_dns", "flow.phase:pre_request", "flow.phase:post_response",
                  "flow.end", NULL);
    h_expect_str(h_one(e->events, fid, "flow.phase", "pre_dns"), "client.ip", "::1");
    h_expect_int(h_one(e->events, fid, "flow.end", NULL), "bytes.down", 64);
    h_done(e);
}

/* HEAD gets the headers (Content-Length of the GET) and no body, and the proxy does not wait for one */
static void test_http_head_has_no_body(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char v[64];
    const char *fid;
    json_t *ev;

    h_start(e, NULL, H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "-I", h_origin_url(e, 0, "/bytes/1000"), NULL);
    h_expect_http(&r, 0, 200);
    assert_int_equal(h_header(r.headers, "Content-Length", v, sizeof(v)), 0);
    assert_string_equal(v, "1000");
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/bytes/1000");
    ev = expect_plain_flow(e, fid, "HEAD", "/bytes/1000", NULL);
    h_expect_int(ev, "bytes.down", 0);
    h_done(e);
}

/* two requests written at once on one connection are answered in order and recorded as two flows */
static void test_http_pipelined_requests_answered_in_order(void **state)
{
    struct h_env *e = *state;
    char req[1024];
    char *reply, *second;
    size_t len;
    const char *f1, *f2;
    int n;

    h_start(e, NULL, H_DEFAULT);
    n = snprintf(req, sizeof(req),
                 "GET http://127.0.0.1:%d/bytes/3 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                 "GET http://127.0.0.1:%d/bytes/2 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
                 e->http_port, e->http_port, e->http_port, e->http_port);
    reply = h_raw("127.0.0.1", e->proxy_port, req, (size_t)n, 15000, &len);
    second = strstr(reply, "\r\n\r\nabcHTTP/1.1 200 ");
    if (strncmp(reply, "HTTP/1.1 200 ", 13) != 0 || second == NULL || len < 6 ||
        strcmp(reply + len - 6, "\r\n\r\nab") != 0)
        fail_msg("want two 200 responses in order (bodies \"abc\" then \"ab\"), got:\n%.2000s", reply);
    free(reply);
    h_stop_vigil(e);

    h_record(e);
    f1 = h_flow_where(e->events, "request.path", "/bytes/3");
    f2 = h_flow_where(e->events, "request.path", "/bytes/2");
    h_expect_int(expect_plain_flow(e, f1, "GET", "/bytes/3", NULL), "bytes.down", 3);
    h_expect_int(expect_plain_flow(e, f2, "GET", "/bytes/2", NULL), "bytes.down", 2);
    assert_true(h_int(h_one(e->events, f1, "flow.end", NULL), "seq") <
                h_int(h_one(e->events, f2, "flow.phase", "pre_dns"), "seq"));
    h_done(e);
}

/* an 8 MB upload (curl sends Expect: 100-continue) is echoed exactly and counted as bytes.up */
static void test_http_large_upload_exact(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char *data, arg[PATH_MAX + 2];
    const size_t n = 8 * 1024 * 1024;
    const char *fid;
    json_t *ev;

    h_start(e, NULL, H_DEFAULT);
    snprintf(arg, sizeof(arg), "@%s", h_random_file(e, "big.bin", n, &data));
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "-H", "Expect: 100-continue", "--data-binary", arg,
           h_origin_url(e, 0, "/echo"), NULL);
    h_expect_http(&r, 0, 200);
    assert_int_equal(r.body_len[0], n);
    assert_memory_equal(r.body[0], data, n);
    h_result_fini(&r);
    free(data);
    h_stop_vigil(e);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/echo");
    ev = expect_plain_flow(e, fid, "POST", "/echo", NULL);
    h_expect_int(ev, "bytes.up", (long long)n);
    h_expect_int(ev, "bytes.down", (long long)n);
    h_done(e);
}

/* eight clients at once each get their exact body and their own complete flow */
static void test_http_parallel_clients_all_recorded(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char paths[H_MAX_URLS][32];
    const char *urls[H_MAX_URLS];

    h_start(e, NULL, H_DEFAULT);
    for (int i = 0; i < H_MAX_URLS; i++) {
        snprintf(paths[i], sizeof(paths[i]), "/bytes/%d", 100000 * (i + 1) + i);
        urls[i] = h_origin_url(e, 0, paths[i]);
    }
    h_curl(e, &r, 8, "-Z", "--parallel-immediate", "--parallel-max", "8", "--proxy", e->proxy_url, urls[0], urls[1],
           urls[2], urls[3], urls[4], urls[5], urls[6], urls[7], NULL);
    assert_int_equal(r.ncodes, H_MAX_URLS);
    /* with -Z, %{http_code} lines come in completion order: all must be 200 */
    for (int i = 0; i < H_MAX_URLS; i++) {
        h_expect_http(&r, i, 200);
        h_expect_pattern(r.body[i], r.body_len[i], (size_t)(100000 * (i + 1) + i));
    }
    h_result_fini(&r);
    h_stop_vigil(e);

    h_record(e);
    for (int i = 0; i < H_MAX_URLS; i++) {
        const char *fid = h_flow_where(e->events, "request.path", paths[i]);
        h_expect_int(expect_plain_flow(e, fid, "GET", paths[i], NULL), "bytes.down", 100000 * (i + 1) + i);
    }
    h_done(e);
}

/* a client that goes away in the middle of a download still leaves exactly one flow.end, and vigil stops
 * cleanly */
static void test_http_client_abort_midway_recorded(void **state)
{
    struct h_env *e = *state;
    struct h_conn c;
    char req[512];
    const char *fid;
    json_t *ev;
    int n;

    h_start(e, NULL, H_DEFAULT);
    n = snprintf(req, sizeof(req), "GET http://127.0.0.1:%d/bytes/200000000 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                 e->http_port, e->http_port);
    h_conn_open(&c, "127.0.0.1", e->proxy_port);
    assert_int_equal(h_conn_send(&c, req, (size_t)n, 10000), 0);
    if (h_conn_read_until(&c, "abcdefghijklmnopqrstuvwxyz", 10000) == -1)
        fail_msg("no body bytes through the proxy; got:\n%.500s", c.buf);
    h_conn_close(&c);
    h_stop_vigil(e);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/bytes/200000000");
    ev = h_one(e->events, fid, "flow.end", NULL);
    print_message("aborted download: flow.end reason \"%s\", bytes.down %lld\n", h_str(ev, "reason"),
                  h_int(ev, "bytes.down"));
    assert_true(h_int(ev, "bytes.down") < 200000000);
    assert_string_not_equal(h_str(ev, "reason"), "completed");
    h_done(e);
}

/* an idle keep-alive client connection is closed after client_idle_ms, and idling is not a flow */
static void test_http_idle_client_connection_closed(void **state)
{
    struct h_env *e = *state;
    struct h_conn c;
    char req[512];
    json_t *ends;
    int n;

    h_start(e, h_config("\"timeouts\": {\"client_idle_ms\": 300}"), H_DEFAULT);
    n = snprintf(req, sizeof(req), "GET http://127.0.0.1:%d/bytes/5 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                 e->http_port, e->http_port);
    h_conn_open(&c, "127.0.0.1", e->proxy_port);
    assert_int_equal(h_conn_send(&c, req, (size_t)n, 10000), 0);
    if (h_conn_read_until(&c, "\r\n\r\nabcde", 10000) == -1)
        fail_msg("no complete response; got:\n%.500s", c.buf);
    if (h_conn_read_until(&c, NULL, 10000) == -1)
        fail_msg("the idle client connection was not closed within 10 s with client_idle_ms 300");
    h_conn_close(&c);
    h_stop_vigil(e);

    h_record(e);
    ends = h_filter(e->events, NULL, "flow.end", NULL);
    assert_int_equal(json_array_size(ends), 1);
    json_decref(ends);
    expect_plain_flow(e, h_flow_where(e->events, "request.path", "/bytes/5"), "GET", "/bytes/5", NULL);
    h_done(e);
}

/* SIGTERM lets a flow in flight finish: the client gets its whole response, the record has the flow */
static void test_http_sigterm_finishes_inflight_flow(void **state)
{
    struct h_env *e = *state;
    static const char stats[] = "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    struct h_conn c;
    char req[512];
    const char *fid;
    int n, polls = 0;

    h_start(e, NULL, H_DEFAULT);
    n = snprintf(req, sizeof(req), "GET http://127.0.0.1:%d/slow/300 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                 e->http_port, e->http_port);
    h_conn_open(&c, "127.0.0.1", e->proxy_port);
    assert_int_equal(h_conn_send(&c, req, (size_t)n, 10000), 0);
    /* wait until the proxy's upstream connection reached the origin: each poll is one connection itself */
    for (;;) {
        char *reply = h_raw("127.0.0.1", e->http_port, stats, sizeof(stats) - 1, 5000, NULL);
        const char *p = strstr(reply, "connections ");
        int seen = p != NULL ? atoi(p + 12) : 0;
        free(reply);
        if (seen > ++polls)
            break;
        if (polls > 500)
            fail_msg("the proxy never connected to the origin");
    }
    h_stop_vigil(e);
    h_conn_read_until(&c, NULL, 10000);
    if (strncmp(c.buf, "HTTP/1.1 200 ", 13) != 0 || strstr(c.buf, "\r\n\r\nslept 300 ms\n") == NULL)
        fail_msg("the flow in flight at SIGTERM did not complete; client got:\n%.1000s", c.buf);
    h_conn_close(&c);

    h_record(e);
    fid = h_flow_where(e->events, "request.path", "/slow/300");
    expect_plain_flow(e, fid, "GET", "/slow/300", NULL);
    h_done(e);
}

/* A client that stops reading a 512 MB response after its first bytes: returns the bytes the
 * origin could generate before back-pressure stalled it, and leaves the connection closed. */
static unsigned long long stalled_download(struct h_env *e, int tunnel)
{
    struct h_conn c;
    char req[512];
    int n;

    h_conn_open(&c, "127.0.0.1", e->proxy_port);
    if (tunnel) {
        n = snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", e->http_port,
                     e->http_port);
        assert_int_equal(h_conn_send(&c, req, (size_t)n, 5000), 0);
        assert_int_equal(h_conn_read_until(&c, "\r\n\r\n", 5000), 0);
        h_conn_consume(&c, c.len);
        n = snprintf(req, sizeof(req), "GET /bytes/536870912 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", e->http_port);
    } else {
        n = snprintf(req, sizeof(req), "GET http://127.0.0.1:%d/bytes/536870912 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                     e->http_port, e->http_port);
    }
    assert_int_equal(h_conn_send(&c, req, (size_t)n, 5000), 0);
    assert_int_equal(h_conn_read_until(&c, "\r\n\r\n", 5000), 0);
    unsigned long long generated = h_origin_generated_settled(e);
    h_conn_close(&c);
    return generated;
}
/* a client that stops reading stalls the origin through the proxy (back-pressure): far less
 * than the 512 MB response is ever generated, so the proxy buffered a bounded amount */
static void test_http_slow_reader_bounded_buffering(void **state)
{
    struct h_env *e = *state;

    h_start(e, NULL, H_DEFAULT);
    unsigned long long generated = stalled_download(e, 0);
    /* socket buffers on both legs (loopback autotuning allows tens of MB) plus the proxy's own */
    assert_true(generated < 128ULL * 1024 * 1024);
    h_stop_vigil(e);

    h_record(e);
    json_t *ends = h_filter(e->events, NULL, "flow.end", NULL);
    assert_int_equal(json_array_size(ends), 1);
    assert_true(h_int(json_array_get(ends, 0), "bytes.down") <= (long long)generated);
    json_decref(ends);
    h_done(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_slow_reader_bounded_buffering, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_get_records_all_phases, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_query_recorded_without_question_mark, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_post_echo_counts_bytes_up, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_chunked_upload_echoed, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_chunked_response_exact, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_eof_delimited_response_exact, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_keepalive_reuses_client_and_upstream, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_hop_by_hop_removed_via_added, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_large_download_exact, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_ipv6_listener_serves, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_head_has_no_body, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_pipelined_requests_answered_in_order, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_large_upload_exact, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_parallel_clients_all_recorded, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_client_abort_midway_recorded, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_idle_client_connection_closed, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_http_sigterm_finishes_inflight_flow, h_setup, h_teardown),
    };

    h_main_init();
    return cmocka_run_group_tests_name("integration/http", tests, NULL, NULL);
}
