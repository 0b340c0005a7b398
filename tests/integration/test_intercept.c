/* tests/integration/test_intercept.c - TLS interception end to end: real curl trusting only
 * the Vigil CA, vigil trusting the origin's certificate as its upstream bundle, the minted
 * leaf, requests inside the tunnel as flows of their own, bypass, and refused upstreams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "harness.h"

/* Makes the Vigil CA (key 0600) in the test dir; returns the config fragment for it. */
static const char *make_ca(struct h_env *e, int trust_origin)
{
    static char frag[8192];
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=vigil-test-ca -keyout vigil-ca.key -out vigil-ca.pem 2>/dev/null && chmod 600 vigil-ca.key",
             e->dir);
    char *const sh[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(h_run(e, "ca", sh, 30000, &out, NULL), 0);
    free(out);
    snprintf(frag, sizeof(frag),
             "\"tls\": {\"ca_cert\": \"%s/vigil-ca.pem\", \"ca_key\": \"%s/vigil-ca.key\"%s%s%s}", e->dir, e->dir,
             trust_origin ? ", \"upstream_ca_file\": \"" : "", trust_origin ? e->cert : "", trust_origin ? "\"" : "");
    return frag;
}

static const char *config(struct h_env *e, int trust_origin, const char *intercept, const char *extra_pconf)
{
    static char buf[16384];
    char tls[8192];
    snprintf(tls, sizeof(tls), "%s", make_ca(e, trust_origin));
    snprintf(buf, sizeof(buf),
             "%s, \"rule_groups\": [" H_LOOPBACK_GROUP "], \"proxy_configurations\": [{\"name\": \"tls\","
             " \"rule_groups\": [\"test-loopback\"], \"intercept\": %s%s}]",
             tls, intercept, extra_pconf ? extra_pconf : "");
    return h_config(buf);
}

static const char *ca_path(struct h_env *e)
{
    static char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/vigil-ca.pem", e->dir);
    return p;
}

/* a GET and a POST through interception: exact bodies, the leaf from the Vigil CA, and the
 * events of the tunnel and of each request inside it */
static void test_intercept_get_and_post(void **state)
{
    struct h_env *e = *state;
    struct h_result r;

    h_start(e, config(e, 1, "{\"domains\": [\"*\"]}", NULL), H_DEFAULT);
    h_random_file(e, "post.bin", 5000, NULL);
    char at[PATH_MAX + 1];
    snprintf(at, sizeof(at), "@%s/post.bin", e->dir);
    h_curl(e, &r, 1, "-v", "--proxy", e->proxy_url, "--cacert", ca_path(e), h_origin_url(e, 1, "/bytes/1000"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_pattern(r.body[0], r.body_len[0], 1000);
    assert_non_null(strstr(r.err, "issuer: CN=vigil-test-ca")); /* curl saw the minted leaf */
    assert_non_null(strstr(r.err, "ALPN: server accepted http/1.1"));
    h_result_fini(&r);
    h_curl(e, &r, 1, "--http2", "--proxy", e->proxy_url, "--cacert", ca_path(e), "--data-binary", at,
           h_origin_url(e, 1, "/echo"), NULL); /* an h2-preferring client falls back to http/1.1 */
    h_expect_http(&r, 0, 200);
    assert_int_equal(r.body_len[0], 5000);
    h_result_fini(&r);
    h_stop_vigil(e);

    json_t *ev = h_record(e);
    const char *tunnel = h_flow_where(ev, "request.method", "CONNECT");
    json_t *pre = h_one(ev, tunnel, "flow.phase", "pre_request");
    assert_true(json_is_true(h_get(pre, "tls.intercepted")));
    assert_int_equal(strlen(h_str(pre, "tls.upstream_certificate.sha256")), 64);
    assert_non_null(strstr(h_str(pre, "tls.upstream_certificate.subject"), "CN=localhost"));
    assert_non_null(h_str(pre, "tls.leaf.serial"));
    assert_non_null(h_str(pre, "tls.version"));
    assert_non_null(h_str(pre, "tls.cipher"));

    /* every request inside is a flow of its own, child of the tunnel */
    json_t *ends = h_filter(ev, NULL, "flow.end", NULL), *x;
    size_t i;
    int inner = 0;
    json_array_foreach(ends, i, x)
    {
        json_t *pj = h_get(x, "parent_flow_id");
        if (!pj || !json_is_string(pj))
            continue; /* the tunnel itself */
        const char *parent = json_string_value(pj);
        inner++;
        const char *fid = h_str(x, "flow_id");
        assert_int_equal(strlen(parent), 26);
        h_expect_flow(ev, fid, "flow.phase:pre_request", "flow.phase:post_response", "flow.end", NULL);
        json_t *p = h_one(ev, fid, "flow.phase", "pre_request");
        h_expect_str(p, "request.scheme", "https");
        assert_true(json_is_true(h_get(p, "tls.intercepted")));
        if (strcmp(h_str(p, "request.method"), "GET") == 0) {
            h_expect_str(p, "request.path", "/bytes/1000");
            h_expect_int(h_one(ev, fid, "flow.phase", "post_response"), "response.content_length", 1000);
            h_expect_int(x, "bytes.down", 1000);
        } else {
            h_expect_str(p, "request.method", "POST");
            h_expect_int(x, "bytes.up", 5000);
        }
    }
    assert_int_equal(inner, 2);
    json_decref(ends);
    h_done(e);
}

/* the leaf mirrors the origin's names; a second tunnel to the same origin takes it from the cache */
static void test_intercept_leaf_mirrors_and_caches(void **state)
{
    struct h_env *e = *state;
    struct h_result r;

    h_start(e, config(e, 1, "{\"domains\": [\"localhost\"]}", NULL), H_DEFAULT);
    for (int i = 0; i < 2; i++) {
        h_curl(e, &r, 1, "-v", "--proxy", e->proxy_url, "--cacert", ca_path(e), h_origin_url(e, 1, "/bytes/10"),
               NULL);
        h_expect_http(&r, 0, 200);
        assert_non_null(strstr(r.err, "subjectAltName: host \"localhost\" matched cert's \"localhost\""));
        h_result_fini(&r);
    }
    h_stop_vigil(e);

    json_t *ev = h_record(e), *pres = h_filter(ev, NULL, "flow.phase", "pre_request"), *x;
    size_t i;
    int tunnels = 0;
    const char *serial0 = NULL;
    json_array_foreach(pres, i, x)
    {
        if (strcmp(h_str(x, "request.method"), "CONNECT") != 0)
            continue;
        h_expect_str(x, "tls.leaf.cache", tunnels == 0 ? "miss" : "hit");
        if (tunnels == 0)
            serial0 = h_str(x, "tls.leaf.serial");
        else
            assert_string_equal(h_str(x, "tls.leaf.serial"), serial0);
        tunnels++;
    }
    assert_int_equal(tunnels, 2);
    json_decref(pres);
    h_done(e);
}

/* a bypassed domain is tunnelled untouched: curl sees the origin's own certificate */
static void test_intercept_bypass_untouched(void **state)
{
    struct h_env *e = *state;
    struct h_result r;

    h_start(e, config(e, 1, "{\"domains\": [\"*\"], \"bypass\": [\"localhost\"]}", NULL), H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--cacert", e->cert, h_origin_url(e, 1, "/bytes/10"), NULL);
    h_expect_http(&r, 0, 200);
    h_result_fini(&r);
    h_stop_vigil(e);

    json_t *ev = h_record(e);
    const char *tunnel = h_flow_where(ev, "request.method", "CONNECT");
    h_expect_flow(ev, tunnel, "flow.phase:pre_dns", "flow.phase:pre_request", "flow.end", NULL);
    assert_true(json_is_false(h_get(h_one(ev, tunnel, "flow.phase", "pre_dns"), "tls.intercepted")));
    h_done(e);
}

/* an upstream whose certificate does not verify is denied with the reason; curl gets a TLS
 * error, never the upstream's content */
static void test_intercept_untrusted_upstream_denied(void **state)
{
    struct h_env *e = *state;
    struct h_result r;

    h_start(e, config(e, 0 /* the system store: the origin's self-signed cert is unknown */, "{\"domains\": [\"*\"]}",
                      NULL),
            H_DEFAULT);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--cacert", ca_path(e), h_origin_url(e, 1, "/bytes/10"), NULL);
    assert_int_not_equal(r.exit_code, 0);
    assert_int_equal(r.nbodies > 0 ? r.body_len[0] : 0, 0);
    h_result_fini(&r);
    h_stop_vigil(e);

    json_t *ev = h_record(e);
    const char *tunnel = h_flow_where(ev, "request.method", "CONNECT");
    h_expect_flow(ev, tunnel, "flow.phase:pre_dns", "flow.phase:pre_request", "flow.end", NULL);
    json_t *pre = h_one(ev, tunnel, "flow.phase", "pre_request");
    h_expect_str(pre, "action", "deny");
    h_expect_str(pre, "rule.id", "upstream_tls");
    h_expect_str(pre, "reason", "upstream_certificate_rejected");
    assert_non_null(h_str(pre, "tls.verify_error"));
    h_done(e);
}

/* a certificate for another name than the SNI is refused (hostname verification) */
static void test_intercept_wrong_host_denied(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char connect_to[128], url[128];

    h_start(e, config(e, 1, "{\"domains\": [\"*\"]}", ", \"sni_mismatch\": \"allow\""), H_DEFAULT);
    /* CONNECT localhost:PORT, but curl's SNI (and the name vigil verifies) is wronghost.test */
    snprintf(connect_to, sizeof(connect_to), "wronghost.test:%d:localhost:%d", e->https_port, e->https_port);
    snprintf(url, sizeof(url), "https://wronghost.test:%d/bytes/10", e->https_port);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--cacert", ca_path(e), "--connect-to", connect_to, url, NULL);
    assert_int_not_equal(r.exit_code, 0);
    h_result_fini(&r);
    h_stop_vigil(e);

    json_t *ev = h_record(e);
    const char *tunnel = h_flow_where(ev, "request.method", "CONNECT");
    json_t *pre = h_one(ev, tunnel, "flow.phase", "pre_request");
    h_expect_str(pre, "reason", "upstream_certificate_rejected");
    assert_non_null(strstr(h_str(pre, "tls.verify_error"), "hostname"));
    h_expect_str(h_one(ev, tunnel, "flow.phase", "pre_dns"), "tls.sni", "wronghost.test");
    h_done(e);
}

/* a key file others may read is refused at start, naming the key */
static void test_intercept_ca_key_mode_refused(void **state)
{
    struct h_env *e = *state;
    char path[PATH_MAX], *out = NULL, *err = NULL;

    const char *frag = make_ca(e, 1);
    snprintf(path, sizeof(path), "%s/vigil-ca.key", e->dir);
    assert_int_equal(chmod(path, 0644), 0);
    snprintf(path, sizeof(path), "%s/tls.json", e->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{%s}", frag);
    fclose(f);
    char *const check[] = {VIGIL_BIN, "--check-config", path, NULL};
    assert_int_equal(h_run(e, "check", check, 10000, &out, &err), 2);
    assert_non_null(strstr(err, "vigil-ca.key"));
    free(out);
    free(err);
    h_done(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_intercept_get_and_post, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_intercept_leaf_mirrors_and_caches, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_intercept_bypass_untouched, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_intercept_untrusted_upstream_denied, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_intercept_wrong_host_denied, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_intercept_ca_key_mode_refused, h_setup, h_teardown),
    };
    h_main_init();
    return cmocka_run_group_tests_name("integration/intercept", tests, NULL, NULL);
}
