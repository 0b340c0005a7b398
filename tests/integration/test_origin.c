/* tests/integration/test_origin.c - the test origin and the harness, without vigil.
 *
 * The other integration tests trust the origin to be an honest HTTP/1.1 server and the harness to read
 * curl's results correctly; this checks both directly (curl straight at the origin), so a failure in
 * integration/http or integration/connect points at the proxy. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"

/* /bytes/N answers N pattern bytes with Content-Length over HTTP and HTTPS */
static void test_origin_bytes_exact_on_both_listeners(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char v[64];

    h_start(e, NULL, H_NO_VIGIL);
    h_curl(e, &r, 2, "--cacert", e->cert, h_origin_url(e, 0, "/bytes/1000"), h_origin_url(e, 1, "/bytes/70000"),
           NULL);
    h_expect_http(&r, 0, 200);
    h_expect_http(&r, 1, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 1000);
    h_expect_pattern(r.body[1], r.body_len[1], 70000);
    assert_int_equal(h_header(r.headers, "Content-Length", v, sizeof(v)), 0);
    assert_string_equal(v, "70000");
    h_result_fini(&r);
    h_done(e);
}

/* /chunked/N is chunked and exact; /eof/N has neither length nor chunking and ends at close */
static void test_origin_chunked_and_eof_bodies_exact(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char v[64];

    h_start(e, NULL, H_NO_VIGIL);
    h_curl(e, &r, 1, h_origin_url(e, 0, "/chunked/100000"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 100000);
    assert_int_equal(h_header(r.headers, "Transfer-Encoding", v, sizeof(v)), 0);
    assert_string_equal(v, "chunked");
    h_result_fini(&r);

    h_curl(e, &r, 1, "--cacert", e->cert, h_origin_url(e, 1, "/eof/5000"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 5000);
    assert_int_equal(h_header(r.headers, "Content-Length", v, sizeof(v)), -1);
    assert_int_equal(h_header(r.headers, "Transfer-Encoding", v, sizeof(v)), -1);
    h_result_fini(&r);
    h_done(e);
}

/* /echo returns a POSTed, PUT or chunked-uploaded body unchanged with X-Echo-Length; Expect gets 100 */
static void test_origin_echo_returns_body(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char *data, arg[PATH_MAX + 2], v[64];
    const char *path;

    h_start(e, NULL, H_NO_VIGIL);
    path = h_random_file(e, "up.bin", 100 * 1024, &data);
    snprintf(arg, sizeof(arg), "@%s", path);
    h_curl(e, &r, 1, "--data-binary", arg, h_origin_url(e, 0, "/echo"), NULL);
    h_expect_http(&r, 0, 200);
    assert_int_equal(r.body_len[0], 100 * 1024);
    assert_memory_equal(r.body[0], data, 100 * 1024);
    assert_int_equal(h_header(r.headers, "X-Echo-Length", v, sizeof(v)), 0);
    assert_string_equal(v, "102400");
    h_result_fini(&r);

    h_curl(e, &r, 1, "-H", "Transfer-Encoding: chunked", "--data-binary", arg, "--cacert", e->cert,
           h_origin_url(e, 1, "/echo"), NULL);
    h_expect_http(&r, 0, 200);
    assert_int_equal(r.body_len[0], 100 * 1024);
    assert_memory_equal(r.body[0], data, 100 * 1024);
    h_result_fini(&r);

    h_curl(e, &r, 1, "-v", "-H", "Expect: 100-continue", "-T", path, h_origin_url(e, 0, "/echo"), NULL);
    assert_non_null(strstr(r.err, "< HTTP/1.1 100 Continue"));
    h_expect_http(&r, 0, 200);
    assert_int_equal(r.body_len[0], 100 * 1024);
    assert_memory_equal(r.body[0], data, 100 * 1024);
    h_result_fini(&r);
    free(data);
    h_done(e);
}

/* /headers lists the request headers as received; /stats counts connections; keep-alive reuses one */
static void test_origin_headers_and_stats_keepalive(void **state)
{
    struct h_env *e = *state;
    struct h_result r;

    h_start(e, NULL, H_NO_VIGIL);
    h_curl(e, &r, 2, "-v", "-H", "X-Foo: 1", h_origin_url(e, 0, "/headers"), h_origin_url(e, 0, "/stats"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_http(&r, 1, 200);
    assert_non_null(strstr(r.body[0], "X-Foo: 1\n"));
    assert_non_null(strstr(r.body[0], "Host: 127.0.0.1:"));
    assert_non_null(strstr(r.err, "Re-using existing connection"));
    assert_true(strncmp(r.body[1], "connections 1\n", 14) == 0);
    h_result_fini(&r);
    h_done(e);
}

/* /slow/MS answers 200 after a timer; several pipelined requests on one raw connection answer in order */
static void test_origin_slow_and_pipelined(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char req[512];
    char *reply;
    size_t len;
    int n;

    h_start(e, NULL, H_NO_VIGIL);
    h_curl(e, &r, 1, h_origin_url(e, 0, "/slow/50"), NULL);
    h_expect_http(&r, 0, 200);
    assert_string_equal(r.body[0], "slept 50 ms\n");
    h_result_fini(&r);

    n = snprintf(req, sizeof(req),
                 "GET /bytes/3 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /slow/10 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /bytes/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    reply = h_raw("127.0.0.1", e->http_port, req, (size_t)n, 10000, &len);
    assert_non_null(strstr(reply, "\r\n\r\nabcHTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(reply, "slept 10 ms\nHTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(reply, "Connection: close\r\n"));
    assert_int_equal(strcmp(reply + len - 6, "\r\n\r\nab"), 0);
    free(reply);
    h_done(e);
}

/* the origin refuses what the proxy must never forward: CL+TE, obs-fold, a bad chunk */
static void test_origin_rejects_ambiguous_framing(void **state)
{
    struct h_env *e = *state;
    static const char *const reqs[] = {
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /headers HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    };

    h_start(e, NULL, H_NO_VIGIL);
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        char *reply = h_raw("127.0.0.1", e->http_port, reqs[i], strlen(reqs[i]), 10000, NULL);
        if (strncmp(reply, "HTTP/1.1 400 ", 13) != 0)
            fail_msg("request %zu: want 400, got: %.200s", i, reply);
        free(reply);
    }
    h_done(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_origin_bytes_exact_on_both_listeners, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_origin_chunked_and_eof_bodies_exact, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_origin_echo_returns_body, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_origin_headers_and_stats_keepalive, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_origin_slow_and_pipelined, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_origin_rejects_ambiguous_framing, h_setup, h_teardown),
    };

    h_main_init();
    return cmocka_run_group_tests_name("integration/origin", tests, NULL, NULL);
}
