/* tests/integration/test_connect.c - CONNECT tunnels through vigil to the origin's HTTPS listener.
 *
 * curl verifies the origin's certificate (CN=localhost, made by the harness) end to end, so a tunnel that
 * altered a byte fails the handshake or the body comparison. A tunnel records pre_dns, pre_request and
 * flow.end, never post_response. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

/* Tunnels that carry plain bytes (not TLS) need the proxy configuration to allow them. */
#define NON_TLS_PCONF                                                                                            \
    "\"rule_groups\": [" H_LOOPBACK_GROUP "], \"proxy_configurations\": [{\"name\": \"plain-tunnels\","           \
    " \"rule_groups\": [\"test-loopback\"], \"non_tls_tunnels\": \"allow\"}]"

/* Asserts the events of the one CONNECT flow in the record and returns its flow.end. */
static json_t *expect_tunnel_flow(struct h_env *e, const char *headers)
{
    json_t *tunnels = h_filter(e->events, NULL, "flow.end", NULL);
    const char *fid = h_flow_where(e->events, "request.method", "CONNECT");
    char hdr_fid[64];
    const char *reason;
    json_t *ev;

    assert_int_equal(json_array_size(tunnels), 1);
    json_decref(tunnels);
    /* the proxy's own "200 Connection established" may name the flow: then it must be this one */
    if (headers != NULL && h_header(headers, "X-Vigil-Flow-Id", hdr_fid, sizeof(hdr_fid)) == 0)
        assert_string_equal(hdr_fid, fid);
    h_expect_flow(e->events, fid, "flow.phase:pre_dns", "flow.phase:pre_request", "flow.end", NULL);

    ev = h_one(e->events, fid, "flow.phase", "pre_dns");
    h_expect_default_allow(ev);
    h_expect_str(ev, "request.method", "CONNECT");
    h_expect_str(ev, "request.host", "localhost");
    h_expect_int(ev, "request.port", e->https_port);
    h_expect_str(ev, "client.ip", "127.0.0.1");
    if (h_get(ev, "request.path") != NULL && !json_is_null(h_get(ev, "request.path")))
        fail_msg("a CONNECT flow records a request.path");

    /* the ClientHello was read before anything went upstream */
    h_expect_str(ev, "tls.sni", "localhost");
    h_expect_str(ev, "tls.client_hello", "ok");
    assert_true(json_is_false(h_get(ev, "tls.intercepted")));
    assert_true(json_is_true(h_get(ev, "tls.sni_matches_host")));
    assert_true(json_array_size(h_get(ev, "tls.alpn_offered")) >= 1);

    ev = h_one(e->events, fid, "flow.phase", "pre_request");
    h_expect_default_allow(ev);
    h_expect_str(ev, "destination.ip", "127.0.0.1");
    h_expect_int(ev, "destination.port", e->https_port);

    ev = h_one(e->events, fid, "flow.end", NULL);
    h_expect_int(ev, "response.status", 200);
    reason = h_str(ev, "reason");
    if (strcmp(reason, "client_closed") != 0 && strcmp(reason, "upstream_closed") != 0)
        fail_msg("tunnel flow.end reason \"%s\", want client_closed or upstream_closed", reason);
    return ev;
}

/* an HTTPS GET through a CONNECT tunnel returns the exact body and records the tunnel with its bytes */
static void test_connect_https_get_tunnelled_and_recorded(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    json_t *ev;

    h_start(e, NULL, H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--cacert", e->cert, h_origin_url(e, 1, "/bytes/2048"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 2048);
    h_stop_vigil(e);

    h_record(e);
    ev = expect_tunnel_flow(e, r.headers);
    assert_true(h_int(ev, "bytes.up") > 0);
    assert_true(h_int(ev, "bytes.down") > 2048); /* the body plus TLS */
    h_result_fini(&r);
    h_done(e);
}

/* a 20 MB download through the tunnel arrives exactly and bytes.down covers it */
static void test_connect_large_download_exact(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    json_t *ev;

    h_start(e, NULL, H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--cacert", e->cert, h_origin_url(e, 1, "/bytes/20000000"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 20000000);
    h_stop_vigil(e);

    h_record(e);
    ev = expect_tunnel_flow(e, r.headers);
    assert_true(h_int(ev, "bytes.down") > 20000000);
    assert_true(h_int(ev, "bytes.up") > 0);
    h_result_fini(&r);
    h_done(e);
}

/* several requests in one tunnel: curl re-uses it, the origin saw one connection, one flow is recorded */
static void test_connect_sequential_requests_share_tunnel(void **state)
{
    struct h_env *e = *state;
    struct h_result r;

    h_start(e, NULL, H_DEFAULT);
    h_curl(e, &r, 3, "-v", "--proxy", e->proxy_url, "--cacert", e->cert, h_origin_url(e, 1, "/bytes/100"),
           h_origin_url(e, 1, "/chunked/5000"), h_origin_url(e, 1, "/stats"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_http(&r, 1, 200);
    h_expect_http(&r, 2, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 100);
    h_expect_pattern(r.body[1], r.body_len[1], 5000);
    if (strstr(r.err, "Re-using existing connection") == NULL)
        fail_msg("curl did not re-use the tunnel; curl -v:\n%.4000s", r.err);
    assert_true(strncmp(r.body[2], "connections 1\n", 14) == 0);
    h_stop_vigil(e);

    h_record(e);
    expect_tunnel_flow(e, r.headers);
    h_result_fini(&r);
    h_done(e);
}

/* Opens a raw tunnel to 127.0.0.1:<port> through the proxy and consumes the proxy's 200 head. */
static void open_tunnel(struct h_env *e, struct h_conn *c, int port)
{
    char req[256];
    char *end;
    int n = snprintf(req, sizeof(req), "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port, port);

    h_conn_open(c, "127.0.0.1", e->proxy_port);
    assert_int_equal(h_conn_send(c, req, (size_t)n, 10000), 0);
    if (h_conn_read_until(c, "\r\n\r\n", 10000) == -1 || strncmp(c->buf, "HTTP/1.1 200", 12) != 0)
        fail_msg("CONNECT was not answered 200; got:\n%.500s", c->buf);
    end = strstr(c->buf, "\r\n\r\n");
    h_conn_consume(c, (size_t)(end + 4 - c->buf));
}

/* bytes.up and bytes.down of a tunnel are exactly the bytes relayed each way, not the CONNECT exchange */
static void test_connect_tunnel_counts_exact_bytes(void **state)
{
    struct h_env *e = *state;
    static const char get[] = "GET /bytes/777 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    struct h_conn c;
    size_t down;
    json_t *ev;

    h_start(e, h_config(NON_TLS_PCONF), H_DEFAULT);
    open_tunnel(e, &c, e->http_port);
    assert_int_equal(h_conn_send(&c, get, sizeof(get) - 1, 10000), 0);
    if (h_conn_read_until(&c, NULL, 10000) == -1)
        fail_msg("the tunnel did not close after the origin closed; got %zu bytes", c.len);
    if (strncmp(c.buf, "HTTP/1.1 200 OK\r\n", 17) != 0 || c.len < 777)
        fail_msg("the origin's reply did not come through the tunnel; got:\n%.500s", c.buf);
    h_expect_pattern(c.buf + c.len - 777, 777, 777);
    if (strstr(c.buf, "Via:") != NULL)
        fail_msg("a tunnel must relay bytes untouched, but the reply has a Via header:\n%.500s", c.buf);
    down = c.len;
    h_conn_close(&c);
    h_stop_vigil(e);

    h_record(e);
    ev = h_one(e->events, h_flow_where(e->events, "request.method", "CONNECT"), "flow.end", NULL);
    h_expect_int(ev, "response.status", 200);
    h_expect_int(ev, "bytes.up", (long long)(sizeof(get) - 1));
    h_expect_int(ev, "bytes.down", (long long)down);
    h_expect_str(ev, "reason", "upstream_closed");
    h_expect_int(h_one(e->events, h_str(ev, "flow_id"), "flow.phase", "pre_request"), "destination.port",
                 e->http_port);
    h_done(e);
}

/* a client closing its side of a tunnel ends the flow with client_closed */
static void test_connect_client_close_ends_tunnel(void **state)
{
    struct h_env *e = *state;
    static const char get[] = "GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n";
    struct h_conn c;
    json_t *ev;

    h_start(e, h_config(NON_TLS_PCONF), H_DEFAULT);
    open_tunnel(e, &c, e->http_port);
    assert_int_equal(h_conn_send(&c, get, sizeof(get) - 1, 10000), 0);
    if (h_conn_read_until(&c, "\r\n\r\nabcdefghij", 10000) == -1)
        fail_msg("no reply through the tunnel; got:\n%.500s", c.buf);
    h_conn_close(&c);
    h_stop_vigil(e);

    h_record(e);
    ev = h_one(e->events, h_flow_where(e->events, "request.method", "CONNECT"), "flow.end", NULL);
    h_expect_int(ev, "response.status", 200);
    h_expect_int(ev, "bytes.up", (long long)(sizeof(get) - 1));
    h_expect_str(ev, "reason", "client_closed");
    h_done(e);
}

/* Sends a raw CONNECT to <authority> and a few plain bytes: the proxy answers 200 at once (the
 * ClientHello comes after it and is read before anything goes upstream), then closes when the
 * upstream cannot be reached (or policy says no). Then stops vigil and returns the CONNECT's flow id
 * from the record (which h_record leaves in e->events). */
static void connect_then_closed(struct h_env *e, const char *authority, char fid[64])
{
    char req[512];
    char *reply;
    int n = snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nping\r\n", authority, authority);

    reply = h_raw("127.0.0.1", e->proxy_port, req, (size_t)n, 15000, NULL);
    if (strncmp(reply, "HTTP/1.1 200 ", 13) != 0)
        fail_msg("CONNECT %s: want 200 then a close, got:\n%.500s", authority, reply);
    char *body = strstr(reply, "\r\n\r\n");
    if (!body || body[4] != '\0')
        fail_msg("CONNECT %s: bytes after the 200 from an upstream that cannot exist:\n%.500s", authority, reply);
    free(reply);
    h_stop_vigil(e);
    json_t *evs = h_record(e);
    snprintf(fid, 64, "%s", h_flow_where(evs, "request.method", "CONNECT"));
}

/* CONNECT to a closed port: 200, the tunnel closes; recorded as connect_refused after pre_dns and pre_request */
static void test_connect_refused_port_closed(void **state)
{
    struct h_env *e = *state;
    char authority[64], fid[64];
    json_t *ev;

    h_start(e, h_config(NON_TLS_PCONF), H_NO_ORIGIN);
    snprintf(authority, sizeof(authority), "127.0.0.1:%d", h_closed_port());
    connect_then_closed(e, authority, fid);

    h_expect_flow(e->events, fid, "flow.phase:pre_dns", "flow.phase:pre_request", "flow.end", NULL);
    h_expect_str(h_one(e->events, fid, "flow.phase", "pre_dns"), "request.method", "CONNECT");
    h_expect_str(h_one(e->events, fid, "flow.phase", "pre_dns"), "tls.client_hello", "not_tls");
    ev = h_one(e->events, fid, "flow.end", NULL);
    h_expect_int(ev, "response.status", 200);
    h_expect_str(ev, "reason", "connect_refused");
    h_done(e);
}

/* CONNECT to a name that does not resolve: 200, the tunnel closes; recorded as dns_failure after pre_dns */
static void test_connect_dns_failure_closed(void **state)
{
    struct h_env *e = *state;
    char fid[64];
    json_t *ev;

    h_start(e, h_config(NON_TLS_PCONF), H_NO_ORIGIN);
    connect_then_closed(e, "nonexistent.invalid:443", fid);

    h_expect_flow(e->events, fid, "flow.phase:pre_dns", "flow.end", NULL);
    h_expect_str(h_one(e->events, fid, "flow.phase", "pre_dns"), "request.host", "nonexistent.invalid");
    ev = h_one(e->events, fid, "flow.end", NULL);
    h_expect_str(ev, "reason", "dns_failure");
    h_done(e);
}

/* by default a tunnel must carry TLS: plain bytes are recorded as a pre_dns deny and the tunnel closes */
static void test_connect_non_tls_denied(void **state)
{
    struct h_env *e = *state;
    char fid[64];

    h_start(e, NULL, H_DEFAULT);
    char authority[64];
    snprintf(authority, sizeof(authority), "127.0.0.1:%d", e->http_port);
    connect_then_closed(e, authority, fid);

    h_expect_flow(e->events, fid, "flow.phase:pre_dns", "flow.end", NULL);
    json_t *ev = h_one(e->events, fid, "flow.phase", "pre_dns");
    h_expect_str(ev, "action", "deny");
    h_expect_str(ev, "rule.id", "tls_only");
    h_expect_str(ev, "reason", "not_tls");
    h_expect_str(ev, "tls.client_hello", "not_tls");
    h_expect_str(h_one(e->events, fid, "flow.end", NULL), "reason", "denied");
    h_done(e);
}

/* an SNI that is not the CONNECT host (domain fronting) is denied, before anything goes upstream */
static void test_connect_sni_mismatch_denied(void **state)
{
    struct h_env *e = *state;
    char proxy[64], target[64], *out = NULL;

    h_start(e, NULL, H_DEFAULT);
    snprintf(proxy, sizeof(proxy), "127.0.0.1:%d", e->proxy_port);
    snprintf(target, sizeof(target), "localhost:%d", e->https_port);
    char *const argv[] = {"/usr/bin/openssl", "s_client", "-proxy", proxy, "-connect", target, "-servername",
                          "fronted.example", "-brief", NULL};
    assert_int_not_equal(h_run(e, "s_client", argv, 15000, &out, NULL), 0); /* the handshake never completes */
    free(out);
    h_stop_vigil(e);

    h_record(e);
    const char *fid = h_flow_where(e->events, "request.method", "CONNECT");
    h_expect_flow(e->events, fid, "flow.phase:pre_dns", "flow.end", NULL);
    json_t *ev = h_one(e->events, fid, "flow.phase", "pre_dns");
    h_expect_str(ev, "action", "deny");
    h_expect_str(ev, "rule.id", "sni_guard");
    h_expect_str(ev, "reason", "sni_mismatch");
    h_expect_str(ev, "tls.sni", "fronted.example");
    assert_true(json_is_false(h_get(ev, "tls.sni_matches_host")));
    h_expect_int(h_one(e->events, fid, "flow.end", NULL), "bytes.up", 0); /* the ClientHello never left */
    h_done(e);
}

/* a tunnel with no traffic either way is closed after idle_tunnel_ms and recorded once */
static void test_connect_idle_tunnel_closed(void **state)
{
    struct h_env *e = *state;
    struct h_conn c;
    json_t *ev;

    h_start(e, h_config("\"timeouts\": {\"idle_tunnel_ms\": 300}, " NON_TLS_PCONF), H_DEFAULT);
    open_tunnel(e, &c, e->http_port);
    if (h_conn_read_until(&c, NULL, 10000) == -1)
        fail_msg("an idle tunnel was not closed within 10 s with idle_tunnel_ms 300");
    h_conn_close(&c);
    h_stop_vigil(e);

    h_record(e);
    ev = h_one(e->events, h_flow_where(e->events, "request.method", "CONNECT"), "flow.end", NULL);
    h_expect_int(ev, "response.status", 200);
    h_expect_int(ev, "bytes.up", 0);
    h_expect_int(ev, "bytes.down", 0);
    print_message("idle tunnel: flow.end reason \"%s\"\n", h_str(ev, "reason"));
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
static void test_connect_slow_reader_bounded_buffering(void **state)
{
    struct h_env *e = *state;

    h_start(e, h_config(NON_TLS_PCONF), H_DEFAULT);
    unsigned long long generated = stalled_download(e, 1);
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
        cmocka_unit_test_setup_teardown(test_connect_slow_reader_bounded_buffering, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_connect_https_get_tunnelled_and_recorded, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_connect_large_download_exact, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_connect_sequential_requests_share_tunnel, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_connect_tunnel_counts_exact_bytes, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_connect_client_close_ends_tunnel, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused_port_closed, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_connect_dns_failure_closed, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_connect_non_tls_denied, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_connect_sni_mismatch_denied, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_connect_idle_tunnel_closed, h_setup, h_teardown),
    };

    h_main_init();
    return cmocka_run_group_tests_name("integration/connect", tests, NULL, NULL);
}
