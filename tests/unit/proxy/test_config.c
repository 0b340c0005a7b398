/* tests/unit/proxy/test_config.c - config loading, defaults, JSON-path errors, version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/proxy.h"

static struct proxy_config *parse(const char *text, char *err, size_t errlen)
{
    return proxy_config_parse(text, strlen(text), err, errlen);
}

/* the embedded default parses and gives the documented defaults */
static void test_config_default_valid(void **state)
{
    char err[1024];
    const char *t = proxy_config_default_text();
    struct proxy_config *c = parse(t, err, sizeof(err));
    (void)state;
    assert_non_null(c);
    assert_int_equal(c->nlisten, 1);
    assert_string_equal(c->listen[0], "127.0.0.1:3128");
    assert_string_equal(c->data_dir, "./vigil-data");
    assert_int_equal(c->overflow, AUDIT_OVERFLOW_FAIL_CLOSED);
    assert_int_equal(c->timeouts.header_read_ms, 10000);
    assert_int_equal(c->max_header_bytes, 65536);
    assert_int_equal(json_array_size(c->sinks), 1);
    assert_int_equal(strlen(c->version), 32);
    proxy_config_free(c);
}

/* absent keys keep their defaults; present ones override */
static void test_config_partial_overrides_defaults(void **state)
{
    char err[1024];
    struct proxy_config *c = parse("{\"timeouts\": {\"connect_ms\": 250}, \"audit\": {\"overflow\": \"drop\"}}", err,
                                   sizeof(err));
    (void)state;
    assert_non_null(c);
    assert_int_equal(c->timeouts.connect_ms, 250);
    assert_int_equal(c->timeouts.header_read_ms, 10000);
    assert_int_equal(c->overflow, AUDIT_OVERFLOW_DROP);
    proxy_config_free(c);
}

/* each bad value is reported with its JSON path, all of them in one pass */
static void test_config_errors_name_json_path(void **state)
{
    char err[2048];
    struct proxy_config *c = parse("{\"timeouts\": {\"connect_ms\": \"fast\"}, \"listen\": [\"nowhere\"],"
                                   " \"limits\": {\"bogus\": 1}, \"audit\": {\"overflow\": \"maybe\"},"
                                   " \"sinks\": [{\"name\": \"x\"}]}",
                                   err, sizeof(err));
    (void)state;
    assert_null(c);
    assert_non_null(strstr(err, "timeouts.connect_ms: must be an integer"));
    assert_non_null(strstr(err, "listen[0]: must be"));
    assert_non_null(strstr(err, "limits.bogus: unknown key"));
    assert_non_null(strstr(err, "audit.overflow: must be"));
    assert_non_null(strstr(err, "sinks[0]: must be an object with a string \"type\""));
}

/* unknown top-level keys are errors, not silently ignored */
static void test_config_unknown_top_key_rejected(void **state)
{
    char err[1024];
    (void)state;
    assert_null(parse("{\"listne\": [\"127.0.0.1:1\"]}", err, sizeof(err)));
    assert_non_null(strstr(err, "listne: unknown key"));
}

/* JSON syntax errors give line and column */
static void test_config_syntax_error_has_position(void **state)
{
    char err[1024];
    (void)state;
    assert_null(parse("{\"workers\": 2,,}", err, sizeof(err)));
    assert_non_null(strstr(err, "line 1"));
}

/* the version is a hash of the content: equal for equal configs, different otherwise */
static void test_config_version_tracks_content(void **state)
{
    char err[1024];
    struct proxy_config *a = parse("{\"workers\": 2, \"data_dir\": \"/x\"}", err, sizeof(err));
    struct proxy_config *b = parse("{\"data_dir\": \"/x\",   \"workers\": 2}", err, sizeof(err));
    struct proxy_config *c = parse("{\"workers\": 3, \"data_dir\": \"/x\"}", err, sizeof(err));
    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_string_equal(a->version, b->version);
    assert_string_not_equal(a->version, c->version);
    proxy_config_free(a);
    proxy_config_free(b);
    proxy_config_free(c);
}

/* --listen replaces the configured list on its first use and appends after */
static void test_config_override_listen_replaces(void **state)
{
    char err[1024];
    struct proxy_config *c = parse("{}", err, sizeof(err));
    (void)state;
    assert_non_null(c);
    assert_int_equal(proxy_config_override_listen(c, "[::1]:0", 1, err, sizeof(err)), 0);
    assert_int_equal(proxy_config_override_listen(c, "127.0.0.1:0", 0, err, sizeof(err)), 0);
    assert_int_equal(c->nlisten, 2);
    assert_string_equal(c->listen[0], "[::1]:0");
    assert_int_equal(proxy_config_override_listen(c, "localhost:80", 0, err, sizeof(err)), -1);
    proxy_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_default_valid),
        cmocka_unit_test(test_config_partial_overrides_defaults),
        cmocka_unit_test(test_config_errors_name_json_path),
        cmocka_unit_test(test_config_unknown_top_key_rejected),
        cmocka_unit_test(test_config_syntax_error_has_position),
        cmocka_unit_test(test_config_version_tracks_content),
        cmocka_unit_test(test_config_override_listen_replaces),
    };
    return cmocka_run_group_tests_name("proxy/config", tests, NULL, NULL);
}
