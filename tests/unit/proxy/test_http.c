/* tests/unit/proxy/test_http.c - authority parsing and the heads Vigil forwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "proxy/http.h"
#include "proxy/proxy-int.h"

static void add_header(struct msg *m, const char *name, const char *value)
{
    assert_int_equal(msg_on_field(m, name, strlen(name)), 0);
    assert_int_equal(msg_on_field_complete(m), 0);
    assert_int_equal(msg_on_value(m, value, strlen(value)), 0);
}

static char *head_text(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

/* hosts are lowercased, one trailing dot dropped, brackets removed, ports checked */
static void test_authority_normalises_host(void **state)
{
    struct proxy_target t;
    (void)state;
    assert_int_equal(proxy_parse_authority("Example.COM.", 12, 80, &t), 0);
    assert_string_equal(t.host, "example.com");
    assert_int_equal(t.port, 80);
    assert_false(t.host_is_ip);
    assert_int_equal(proxy_parse_authority("[::1]:8443", 10, 80, &t), 0);
    assert_string_equal(t.host, "::1");
    assert_int_equal(t.port, 8443);
    assert_true(t.host_is_ip);
    assert_int_equal(proxy_parse_authority("10.0.0.1:443", 12, 0, &t), 0);
    assert_true(t.host_is_ip);
}

/* bad authorities are refused: empty, bad port, junk characters, bad IPv6 */
static void test_authority_rejects_malformed(void **state)
{
    struct proxy_target t;
    const char *bad[] = {"", ":80", "host:0", "host:65536", "host:8x", "ho st", "ho/st", "[::1", "[zz]:1", "host:"};
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(proxy_parse_authority(bad[i], strlen(bad[i]), 80, &t), -1);
}

/* listen addresses are numeric IP:PORT only */
static void test_hostport_numeric_only(void **state)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    (void)state;
    assert_int_equal(proxy_parse_hostport("127.0.0.1:3128", &ss, &sl), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(proxy_parse_hostport("[::1]:0", &ss, &sl), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(proxy_parse_hostport("localhost:80", &ss, &sl), -1);
    assert_int_equal(proxy_parse_hostport("127.0.0.1", &ss, &sl), -1);
    assert_int_equal(proxy_parse_hostport("127.0.0.1:99999", &ss, &sl), -1);
}

/* the forwarded request drops hop-by-hop headers and those Connection names, rewrites Host
 * from the target, writes framing once, and appends Via */
static void test_request_head_strips_hop_by_hop(void **state)
{
    struct msg m;
    struct evbuffer *b = evbuffer_new();
    (void)state;
    assert_int_equal(msg_init(&m, 4096, 64), 0);
    add_header(&m, "Host", "evil.example");
    add_header(&m, "Connection", "close, X-Secret");
    add_header(&m, "X-Secret", "1");
    add_header(&m, "Keep-Alive", "timeout=5");
    add_header(&m, "Proxy-Connection", "keep-alive");
    add_header(&m, "Proxy-Authorization", "Basic Zm9vOmJhcg==");
    add_header(&m, "TE", "trailers");
    add_header(&m, "Upgrade", "h2c");
    add_header(&m, "Transfer-Encoding", "chunked");
    add_header(&m, "Via", "1.0 upstream-proxy");
    add_header(&m, "Accept", "*/*");
    m.headers_done = 1;
    http_build_request_head(b, &m, "POST", "/a?b=1", 6, "origin.test", 0, 8080, HTTP_FRAMING_CHUNKED, 0);
    char *s = head_text(b);
    assert_non_null(strstr(s, "POST /a?b=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(s, "Host: origin.test:8080\r\n"));
    assert_non_null(strstr(s, "Accept: */*\r\n"));
    assert_non_null(strstr(s, "Transfer-Encoding: chunked\r\n"));
    assert_non_null(strstr(s, "Via: 1.0 upstream-proxy, 1.1 vigil\r\n"));
    assert_null(strstr(s, "evil.example"));
    assert_null(strstr(s, "X-Secret"));
    assert_null(strstr(s, "Keep-Alive"));
    assert_null(strstr(s, "Proxy-"));
    assert_null(strstr(s, "TE:"));
    assert_null(strstr(s, "Upgrade"));
    assert_null(strstr(s, "Connection"));
    assert_int_equal(strstr(s, "Transfer-Encoding") - s, strrchr(strstr(s, "Transfer-Encoding"), 'T') - s);
    free(s);
    msg_fini(&m);
    evbuffer_free(b);
}

/* an empty path or a bare query forwards as "/" or "/?q"; port 80 is left out of Host */
static void test_request_head_default_path(void **state)
{
    struct msg m;
    struct evbuffer *b = evbuffer_new();
    (void)state;
    assert_int_equal(msg_init(&m, 4096, 64), 0);
    m.headers_done = 1;
    http_build_request_head(b, &m, "GET", "", 0, "a.test", 0, 80, HTTP_FRAMING_NONE, 0);
    char *s = head_text(b);
    assert_true(strncmp(s, "GET / HTTP/1.1\r\nHost: a.test\r\n", 30) == 0);
    free(s);
    http_build_request_head(b, &m, "GET", "?q=1", 4, "::1", 1, 8080, HTTP_FRAMING_LENGTH, 12);
    s = head_text(b);
    assert_true(strncmp(s, "GET /?q=1 HTTP/1.1\r\nHost: [::1]:8080\r\n", 38) == 0);
    assert_non_null(strstr(s, "Content-Length: 12\r\n"));
    free(s);
    msg_fini(&m);
    evbuffer_free(b);
}

/* header storage enforces both caps: bytes and count */
static void test_msg_caps(void **state)
{
    struct msg m;
    char big[300];
    (void)state;
    memset(big, 'a', sizeof(big));
    assert_int_equal(msg_init(&m, 256, 4), 0);
    assert_int_equal(msg_on_field(&m, big, sizeof(big)), -1);
    assert_true(m.too_large);
    msg_reset(&m);
    assert_false(m.too_large);
    for (int i = 0; i < 4; i++)
        add_header(&m, "A", "b");
    assert_int_equal(msg_on_field(&m, "X", 1), -1);
    assert_true(m.too_large);
    msg_fini(&m);
}

/* a header value split over several callbacks is one value; empty values are kept */
static void test_msg_split_and_empty_values(void **state)
{
    struct msg m;
    (void)state;
    assert_int_equal(msg_init(&m, 4096, 16), 0);
    assert_int_equal(msg_on_field(&m, "Con", 3), 0);
    assert_int_equal(msg_on_field(&m, "tent-Type", 9), 0);
    assert_int_equal(msg_on_field_complete(&m), 0);
    assert_int_equal(msg_on_value(&m, "text/", 5), 0);
    assert_int_equal(msg_on_value(&m, "plain", 5), 0);
    assert_int_equal(msg_on_field(&m, "X-Empty", 7), 0);
    assert_int_equal(msg_on_field_complete(&m), 0);
    assert_int_equal(msg_on_field(&m, "X-Next", 6), 0);
    assert_int_equal(msg_on_field_complete(&m), 0);
    assert_int_equal(m.n, 3);
    int i = msg_find(&m, "content-type");
    assert_int_equal(i, 0);
    assert_int_equal(m.h[0].val_len, 10);
    assert_memory_equal(m.buf + m.h[0].val_off, "text/plain", 10);
    assert_int_equal(m.h[1].val_len, 0);
    assert_int_equal(msg_find(&m, "x-next"), 2);
    assert_false(msg_bad_header_name(&m));
    msg_fini(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authority_normalises_host),
        cmocka_unit_test(test_authority_rejects_malformed),
        cmocka_unit_test(test_hostport_numeric_only),
        cmocka_unit_test(test_request_head_strips_hop_by_hop),
        cmocka_unit_test(test_request_head_default_path),
        cmocka_unit_test(test_msg_caps),
        cmocka_unit_test(test_msg_split_and_empty_values),
    };
    return cmocka_run_group_tests_name("proxy/http", tests, NULL, NULL);
}
