/* tests/integration/test_audit_query.c - audit-query on the record a real vigil wrote.
 *
 * vigil runs with a small policy (a deny rule, an alert rule), redaction keeping pii.*
 * originals for a role whose key vigil-keygen made, and a file sink that rotates at every
 * frame (two records a frame), so the record spans many signed segments. curl sends
 * traffic, vigil stops, and then: search filters and formats, report figures against the
 * record itself, verify intact; then each kind of tampering on a copy, named exactly by
 * verify; reveal with the role key restores the kept e-mail address, refuses without a
 * reason, logs the access, and the access log verifies until it is edited. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/segment.h"
#include "harness.h"

#define SECRET "alice@example.com"

/* Runs audit-query with the NULL-terminated arguments; returns its exit code, its stdout in
 * *<out> (caller frees; NULL: not wanted). */
static int aq(struct h_env *e, char **out, ...)
{
    char *argv[32], *err = NULL, *o = NULL;
    va_list ap;
    int n = 0, rc;

    argv[n++] = AUDIT_QUERY_BIN;
    va_start(ap, out);
    while (n < 31 && (argv[n] = va_arg(ap, char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    rc = h_run(e, "aq", argv, 60000, &o, &err);
    free(err);
    if (out != NULL)
        *out = o;
    else
        free(o);
    return rc;
}

static int sh(struct h_env *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sh(struct h_env *e, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    {
        char *const argv[] = { "/bin/sh", "-c", cmd, NULL };

        return h_run(e, "sh", argv, 60000, NULL, NULL);
    }
}

static size_t lines(const char *s)
{
    size_t n = 0;

    for (; s != NULL && *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* The "First failure: ..." line of verify's output, without the prefix (static). */
static const char *first_failure(const char *out)
{
    static char buf[1024];
    const char *p = out != NULL ? strstr(out, "First failure: ") : NULL;

    if (p == NULL)
        return "";
    p += strlen("First failure: ");
    snprintf(buf, sizeof(buf), "%.*s", (int)strcspn(p, "\n"), p);
    return buf;
}

/* "<date>/<name>" of segment <i> of <data_dir>, and its path. */
static void segment(const char *data_dir, size_t i, char *name, size_t namelen, char *path, size_t pathlen, size_t *n)
{
    struct audit_segment_entry *list;
    char err[256];

    if (audit_segment_list(data_dir, &list, n, err, sizeof(err)) == -1)
        fail_msg("%s", err);
    assert_true(i < *n);
    snprintf(name, namelen, "%s/%s", list[i].date, strrchr(list[i].path, '/') + 1);
    snprintf(path, pathlen, "%s", list[i].path);
    audit_segment_list_free(list, *n);
}

static json_t *find(json_t *arr, const char *key, const char *value)
{
    json_t *x;
    size_t i;

    json_array_foreach(arr, i, x) {
        json_t *v = json_object_get(x, key);

        if (json_is_string(v) && strcmp(json_string_value(v), value) == 0)
            return x;
    }
    return NULL;
}

/* a fresh copy of the record to tamper with */
static const char *copy(struct h_env *e)
{
    static char dst[PATH_MAX];

    snprintf(dst, sizeof(dst), "%s/copy", e->dir);
    assert_int_equal(sh(e, "rm -rf '%s' && cp -a '%s' '%s'", dst, e->data_dir, dst), 0);
    return dst;
}

/* search, report, verify, tampering, reveal and the access log on one real record */
static void test_audit_query_real_record(void **state)
{
    struct h_env *e = *state;
    struct h_result r;
    char roles[PATH_MAX + 16], keyfile[PATH_MAX + 16], config[8192 + PATH_MAX], name[128], path[PATH_MAX + 16];
    char name2[128], path2[PATH_MAX + 16];
    char *out = NULL, *pub = NULL, pk[64] = "";
    json_t *events, *rep, *x;
    json_error_t jerr;
    long long sum_down = 0, flows = 0;
    size_t i, nseg;
    const char *d;

    /* the role key and the roles file, before vigil starts: the dlp role's key pair from
     * `audit-query keys new-role`, named in roles.json by its .pub file; the roles file named
     * by the top-level "roles" key */
    {
        char *const argv[] = { AUDIT_QUERY_BIN, "keys", "new-role", "dlp", "--out", e->dir, NULL };

        assert_int_equal(h_run(e, "keys", argv, 10000, &pub, NULL), 0);
        assert_int_equal(sscanf(strstr(pub, "\"public_key\": \"") + 15, "%44[A-Za-z0-9+/=]", pk), 1);
        free(pub);
    }
    snprintf(keyfile, sizeof(keyfile), "%s/dlp.key", e->dir);
    snprintf(roles, sizeof(roles), "%s/roles.json", e->dir);
    {
        FILE *f = fopen(roles, "w");

        assert_non_null(f);
        fprintf(f, "{\"roles\": [{\"name\": \"dlp\", \"public_key\": \"dlp.pub\", \"reveal\": [\"pii.*\"]}]}\n");
        fclose(f);
    }
    snprintf(config, sizeof(config),
             "{\"sinks\": [{\"type\": \"file\", \"frame_records\": 2, \"frame_ms\": 1000, \"rotate_bytes\": 1}],"
             " \"rule_groups\": [{\"name\": \"base\", \"rules\": ["
             "{\"id\": \"no-blocked\", \"priority\": 10, \"phase\": \"pre_dns\", \"action\": \"deny\","
             " \"match\": {\"domain\": [\"blocked.example\"]}},"
             "{\"id\": \"watch\", \"priority\": 20, \"phase\": \"pre_dns\", \"action\": \"alert\","
             " \"match\": {\"domain\": [\"127.0.0.1\"]}}]}, " H_LOOPBACK_GROUP "],"
             " \"proxy_configurations\": [{\"name\": \"all\", \"rule_groups\": [\"base\", \"test-loopback\"],"
             " \"default_action\": \"allow\"}],"
             " \"redaction\": {\"keep_originals\": [\"pii.*\"]}, \"roles\": \"%s\"}\n",
             roles);
    h_start(e, config, H_DEFAULT);
    h_curl(e, &r, 3, "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/100?email=" SECRET),
           h_origin_url(e, 0, "/bytes/2000"), h_origin_url(e, 0, "/bytes/3"), NULL);
    h_expect_http(&r, 0, 200);
    h_expect_http(&r, 2, 200);
    h_result_fini(&r);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "http://blocked.example/", NULL);
    h_expect_http(&r, 0, 403);
    h_result_fini(&r);
    h_curl(e, &r, 2, "--proxy", e->proxy_url, h_origin_url(e, 0, "/bytes/50"), h_origin_url(e, 0, "/bytes/60"), NULL);
    h_result_fini(&r);
    h_stop_vigil(e);
    events = h_record(e);
    d = e->data_dir;
    json_array_foreach(events, i, x) {
        if (strcmp(h_str(x, "event"), "flow.end") == 0) {
            flows++;
            sum_down += h_int(x, "bytes.down");
        }
    }
    assert_int_equal(flows, 6);

    /* search */
    assert_int_equal(aq(e, &out, "search", "--data-dir", d, "--event", "flow.end", NULL), 0);
    assert_int_equal(lines(out), 6);
    assert_null(strstr(out, SECRET)); /* redacted before any sink */
    free(out);
    assert_int_equal(aq(e, &out, "search", "--data-dir", d, "--action", "deny", "--format", "csv", NULL), 0);
    assert_int_equal(lines(out), 2);
    assert_non_null(strstr(out, ",pre_dns,deny,base,no-blocked,127.0.0.1,"));
    free(out);
    assert_int_equal(aq(e, &out, "search", "--data-dir", d, "--domain", "blocked.example", "--format", "table", NULL), 0);
    assert_int_equal(lines(out), 3); /* header, the phase, the flow.end */
    free(out);
    assert_int_equal(aq(e, &out, "search", "--data-dir", d, "--class", "pii.*", "--event", "flow.end", NULL), 0);
    assert_int_equal(lines(out), 1);
    free(out);
    assert_int_equal(aq(e, NULL, "search", "--data-dir", d, "--client", "10.0.0.0/8", NULL), 1);
    assert_int_equal(aq(e, &out, "search", "--data-dir", d, "--client", "127.0.0.0/8", "--rule", "base/watch", NULL), 0);
    assert_int_equal(lines(out), 5); /* every flow to 127.0.0.1 raised the alert in pre_dns */
    free(out);
    assert_int_equal(aq(e, NULL, "search", "--data-dir", d, "--since", "1h", "--event", "flow.end", NULL), 0);
    assert_int_equal(aq(e, NULL, "search", "--data-dir", d, "--until", "1h", NULL), 1);

    /* report: its figures are the record's */
    assert_int_equal(aq(e, &out, "report", "--data-dir", d, "--format", "json", NULL), 0);
    rep = json_loads(out, 0, &jerr);
    free(out);
    assert_non_null(rep);
    assert_int_equal(h_int(rep, "totals.flows"), 6);
    assert_int_equal(h_int(rep, "totals.denies"), 1);
    assert_int_equal(h_int(rep, "totals.alerts"), 5);
    assert_int_equal(h_int(rep, "totals.bytes_down"), sum_down);
    x = json_array_get(json_object_get(rep, "top_denied_domains"), 0);
    h_expect_str(x, "domain", "blocked.example");
    h_expect_int(x, "denies", 1);
    x = find(json_object_get(rep, "rule_hits"), "rule", "base/watch");
    assert_non_null(x);
    h_expect_int(x, "alert", 5);
    x = find(json_object_get(rep, "rule_hits"), "rule", "base/no-blocked");
    assert_non_null(x);
    h_expect_int(x, "deny", 1);
    x = find(json_object_get(rep, "clients"), "client", "127.0.0.1");
    assert_non_null(x);
    h_expect_int(x, "flows", 6);
    h_expect_int(x, "bytes_down", sum_down);
    assert_int_equal(json_array_size(json_object_get(rep, "alerts_per_hour")) >= 1, 1);
    json_decref(rep);
    assert_int_equal(aq(e, &out, "report", "--data-dir", d, "--format", "html", NULL), 0);
    assert_non_null(strstr(out, "<svg"));
    assert_non_null(strstr(out, "blocked.example"));
    free(out);

    /* verify: intact */
    assert_int_equal(aq(e, &out, "verify", "--data-dir", d, NULL), 0);
    segment(d, 0, name, sizeof(name), path, sizeof(path), &nseg);
    assert_true(nseg >= 6);
    {
        char want[128];

        snprintf(want, sizeof(want), "%zu/%zu segments valid", nseg, nseg);
        assert_non_null(strstr(out, want));
        assert_non_null(strstr(out, "Gaps: none"));
        assert_non_null(strstr(out, "Flows without flow.end: 0"));
    }
    free(out);

    /* a record edited (its frame decompressed, changed, compressed again) */
    d = copy(e);
    segment(d, 2, name, sizeof(name), path, sizeof(path), &nseg);
    assert_int_equal(sh(e, "zstd -q -d -c '%s' | sed '1s/\"schema\":\"vigil.event\\/1\"/\"schema\":\"vigil.event\\/2\"/' | "
                           "zstd -q -c --check > '%s.new' && mv '%s.new' '%s'", path, path, path, path), 0);
    assert_int_equal(aq(e, &out, "verify", "--data-dir", d, NULL), 1);
    {
        uint64_t seq = 0;
        char want[256];

        sscanf(strrchr(name, '/') + 1, "%20" SCNu64, &seq);
        snprintf(want, sizeof(want), "%s: record seq %" PRIu64 " (line 1, frame 0) altered", name, seq);
        assert_int_equal(strncmp(first_failure(out), want, strlen(want)), 0);
    }
    free(out);

    /* a segment deleted */
    d = copy(e);
    segment(d, 3, name, sizeof(name), path, sizeof(path), &nseg);
    segment(d, 4, name2, sizeof(name2), path2, sizeof(path2), &nseg);
    assert_int_equal(sh(e, "rm '%s' '%s.sig'", path, path), 0);
    assert_int_equal(aq(e, &out, "verify", "--data-dir", d, NULL), 1);
    assert_int_equal(strncmp(first_failure(out), name2, strlen(name2)), 0);
    assert_non_null(strstr(first_failure(out), "missing before it"));
    free(out);

    /* the newest segment truncated */
    d = copy(e);
    segment(d, nseg - 1, name, sizeof(name), path, sizeof(path), &nseg);
    assert_int_equal(sh(e, "truncate -s -5 '%s'", path), 0);
    assert_int_equal(aq(e, &out, "verify", "--data-dir", d, NULL), 1);
    assert_int_equal(strncmp(first_failure(out), name, strlen(name)), 0);
    assert_non_null(strstr(first_failure(out), ": truncated: "));
    free(out);

    /* two segments' names swapped */
    d = copy(e);
    segment(d, 1, name, sizeof(name), path, sizeof(path), &nseg);
    segment(d, 2, name2, sizeof(name2), path2, sizeof(path2), &nseg);
    assert_int_equal(sh(e, "mv '%s' '%s.x' && mv '%s' '%s' && mv '%s.x' '%s'", path, path, path2, path, path, path2), 0);
    assert_int_equal(aq(e, &out, "verify", "--data-dir", d, NULL), 1);
    assert_int_equal(strncmp(first_failure(out), name, strlen(name)), 0);
    assert_non_null(strstr(first_failure(out), "renamed, reordered or replaced"));
    free(out);

    /* a digest edited */
    d = copy(e);
    segment(d, 0, name, sizeof(name), path, sizeof(path), &nseg);
    assert_int_equal(sh(e, "sed -i 's/\"frames\":1,/\"frames\":2,/' '%s.sig'", path), 0);
    assert_int_equal(aq(e, &out, "verify", "--data-dir", d, NULL), 1);
    {
        char want[256];

        snprintf(want, sizeof(want), "%s: its digest was edited or forged: the signature does not verify", name);
        assert_string_equal(first_failure(out), want);
    }
    free(out);

    /* reveal: a reason is required; the role sees the kept address; the access is logged */
    d = e->data_dir;
    assert_int_equal(aq(e, NULL, "reveal", "--data-dir", d, "--roles", roles, "--role-key", keyfile, "--class",
                        "pii.email", NULL),
                     2);
    assert_int_equal(aq(e, &out, "reveal", "--data-dir", d, "--roles", roles, "--role-key", keyfile, "--reason",
                        "DSR-2026-17", "--class", "pii.email", "--event", "flow.end", NULL),
                     0);
    assert_int_equal(lines(out), 1);
    assert_non_null(strstr(out, "email=" SECRET));
    assert_non_null(strstr(out, "\"revealed\":[{\"field\":\"request.query\",\"class\":\"pii.email\"}]"));
    free(out);
    snprintf(path, sizeof(path), "%s/access.log", d);
    out = h_slurp(path, NULL);
    assert_non_null(out);
    assert_int_equal(lines(out), 1);
    assert_non_null(strstr(out, "\"role\":\"dlp\""));
    assert_non_null(strstr(out, "\"reason\":\"DSR-2026-17\""));
    assert_non_null(strstr(out, "\"fields\":[\"request.query\"]"));
    free(out);
    assert_int_equal(aq(e, &out, "verify", "--data-dir", d, NULL), 0);
    assert_non_null(strstr(out, "access.log: 1 entry, valid"));
    free(out);
    assert_int_equal(sh(e, "sed -i 's/DSR-2026-17/DSR-2026-18/' '%s'", path), 0);
    assert_int_equal(aq(e, &out, "verify", "--data-dir", d, NULL), 1);
    assert_string_equal(first_failure(out), "access.log: entry 1 (line 1) altered: its hash does not match its content");
    free(out);
    h_done(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_audit_query_real_record, h_setup, h_teardown),
    };

    h_main_init();
    return cmocka_run_group_tests_name("integration/audit_query", tests, NULL, NULL);
}
