/* tests/integration/test_canary.c - the redaction canary: known secrets in every position of
 * real requests through vigil, then every output searched for them.
 *
 * Secrets: a GitHub token with a valid checksum, an AWS access key id, an e-mail address and an
 * opaque cookie value. Positions: Authorization (Bearer), X-Api-Key, Cookie, a Referer with URL
 * userinfo, the query string, the path, an absolute-form request line with userinfo, and a
 * response header (the origin's /set-header/NAME/VALUE returns it), over plain HTTP and
 * through TLS interception. vigil writes to the file sink, to a kafka sink (vigil-kafka-mock,
 * read back with kcat) and to a syslog sink (UDP to a socket this test reads). None of the three
 * may contain a raw secret, and a secret has one token in all of them: the token the key ring
 * in DATA_DIR/keys makes for it. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "redact/redact.h"

#define GH "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"
#define AWS "AKIAIOSFODNN7EXAMPLE"
#define MAIL "jane.doe@example.com"
#define COOKIE "c00k1e-5ekr1t-9a8b7c6d5e4f"
#define TOPIC "vigil-audit"

static const char *const secrets[] = {GH, AWS, MAIL, COOKIE, NULL};

static struct h_proc mock;
static char bootstrap[256];
static int syslog_fd = -1;

static void pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static int setup(void **state)
{
    memset(&mock, 0, sizeof(mock));
    bootstrap[0] = '\0';
    syslog_fd = -1;
    return h_setup(state);
}

static int teardown(void **state)
{
    h_stop(&mock);
    if (syslog_fd != -1)
        close(syslog_fd);
    syslog_fd = -1;
    return h_teardown(state);
}

static void start_mock(struct h_env *e)
{
    char topic[] = "--topic", spec[] = TOPIC ":1";
    char *const argv[] = {KAFKA_MOCK_BIN, topic, spec, NULL};

    h_spawn(e, &mock, "kafka-mock", argv);
    for (int i = 0; i < 500; i++) {
        char *text = h_slurp(mock.out_path, NULL);
        char *eol = text != NULL ? strchr(text, '\n') : NULL;

        if (eol != NULL) {
            *eol = '\0';
            snprintf(bootstrap, sizeof(bootstrap), "%s", text);
            free(text);
            return;
        }
        free(text);
        if (h_wait_exit(&mock, 0) != -1)
            break;
        pause_ms(20);
    }
    fail_msg("vigil-kafka-mock printed no bootstrap line");
}

/* A UDP socket on 127.0.0.1 with room for the whole run's datagrams; returns its port. */
static int open_syslog_socket(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int big = 8 << 20;

    syslog_fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(syslog_fd != -1);
    if (setsockopt(syslog_fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) == -1)
        setsockopt(syslog_fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    assert_int_equal(bind(syslog_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(syslog_fd, (struct sockaddr *)&a, &al), 0);
    return ntohs(a.sin_port);
}

/* Every datagram received so far, one per line; caller frees. */
static char *read_syslog(size_t *count)
{
    size_t len = 0, cap = 1 << 20;
    char *all = malloc(cap), buf[65536];

    assert_non_null(all);
    *count = 0;
    fcntl(syslog_fd, F_SETFL, O_NONBLOCK);
    for (;;) {
        ssize_t n = recv(syslog_fd, buf, sizeof(buf), 0);

        if (n <= 0)
            break;
        while (len + (size_t)n + 2 > cap) {
            cap *= 2;
            all = realloc(all, cap);
            assert_non_null(all);
        }
        memcpy(all + len, buf, (size_t)n);
        len += (size_t)n;
        all[len++] = '\n';
        (*count)++;
    }
    all[len] = '\0';
    return all;
}

static const char *make_ca(struct h_env *e)
{
    static char frag[3 * PATH_MAX + 128];
    char cmd[1024], *out = NULL;

    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=vigil-test-ca -keyout vigil-ca.key -out vigil-ca.pem 2>/dev/null && chmod 600 vigil-ca.key",
             e->dir);
    char *const sh[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(h_run(e, "ca", sh, 30000, &out, NULL), 0);
    free(out);
    snprintf(frag, sizeof(frag),
             "\"tls\": {\"ca_cert\": \"%s/vigil-ca.pem\", \"ca_key\": \"%s/vigil-ca.key\", \"upstream_ca_file\": \"%s\"}",
             e->dir, e->dir, e->cert);
    return frag;
}

/* The test config: interception of everything, the file sink, a kafka sink and a syslog sink. */
static char *canary_config(struct h_env *e, int syslog_port)
{
    char extra[3 * PATH_MAX + 1024], addr[64];
    json_t *root, *sinks, *s;
    char *text;

    snprintf(extra, sizeof(extra),
             "%s, \"rule_groups\": [" H_LOOPBACK_GROUP "], \"proxy_configurations\": [{\"name\": \"tls\","
             " \"rule_groups\": [\"test-loopback\"], \"intercept\": {\"domains\": [\"*\"]}}]",
             make_ca(e));
    root = json_loads(h_config(extra), 0, NULL);
    assert_non_null(root);
    sinks = json_object_get(root, "sinks");
    s = json_pack("{s:s, s:s, s:s, s:s}", "type", "kafka", "name", "siem", "brokers", bootstrap, "topic", TOPIC);
    json_array_append_new(sinks, s);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", syslog_port);
    s = json_pack("{s:s, s:s, s:s, s:s, s:i}", "type", "syslog", "name", "syslog", "transport", "udp", "address",
                  addr, "max_message", 65000);
    json_array_append_new(sinks, s);
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    assert_non_null(text);
    return text;
}

/* Every payload on the topic, one per line; caller frees. */
static char *read_topic(struct h_env *e, size_t *count)
{
    char c[] = "-C", b[] = "-b", t[] = "-t", topic[] = TOPIC, ex[] = "-e", q[] = "-q", fmt[] = "-f", f[] = "%s\n";
    char *const argv[] = {KCAT_BIN, c, b, bootstrap, t, topic, ex, q, fmt, f, NULL};
    char *out = NULL, *err = NULL;
    int st;

    if (access(KCAT_BIN, X_OK) != 0)
        fail_msg("kcat is not installed (%s): apt-get install kcat", KCAT_BIN);
    st = h_run(e, "kcat", argv, 30000, &out, &err);
    if (st != 0)
        fail_msg("kcat exited %d: %s", st, err != NULL ? err : "");
    free(err);
    *count = 0;
    for (const char *p = out; p != NULL && *p != '\0'; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        (*count)++;
    return out;
}

/* The file sink's segments, decompressed, one record per line; caller frees. */
static char *read_segments(struct h_env *e, size_t *count)
{
    char cmd[PATH_MAX + 128], *out = NULL;

    snprintf(cmd, sizeof(cmd), "find %s/audit -name '*.vseg' | sort | xargs zstdcat", e->data_dir);
    char *const sh[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(h_run(e, "zstdcat", sh, 30000, &out, NULL), 0);
    *count = 0;
    for (const char *p = out; p != NULL && *p != '\0'; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        (*count)++;
    return out;
}

static void expect_no_secret(const char *what, const char *text)
{
    for (const char *const *s = secrets; *s != NULL; s++) {
        const char *hit = strstr(text, *s);

        if (hit != NULL)
            fail_msg("%s holds the raw secret %s: ...%.200s...", what, *s, hit > text + 100 ? hit - 100 : text);
    }
}

/* The distinct tokens of class <cls> in <text>, as one sorted, space-separated string. */
static char *tokens_of(const char *text, const char *cls)
{
    char prefix[128], *list[256];
    size_t n = 0, len = 0;
    char *out;

    snprintf(prefix, sizeof(prefix), "tok:%s:", cls);
    for (const char *p = strstr(text, prefix); p != NULL; p = strstr(p + 1, prefix)) {
        size_t l = strlen(prefix);
        int dup = 0;

        while (p[l] != '\0' && strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-", p[l]) != NULL)
            l++;
        for (size_t i = 0; i < n; i++)
            dup |= strlen(list[i]) == l && strncmp(list[i], p, l) == 0;
        if (dup || n == 256)
            continue;
        list[n] = strndup(p, l);
        len += l + 1;
        n++;
    }
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && strcmp(list[k - 1], list[k]) > 0; k--) {
            char *t = list[k];
            list[k] = list[k - 1];
            list[k - 1] = t;
        }
    out = calloc(1, len + 1);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        strcat(out, list[i]);
        if (i + 1 < n)
            strcat(out, " ");
        free(list[i]);
    }
    return out;
}

/* The requests: every position, over plain HTTP (<https> 0) or through interception. */
static void traffic(struct h_env *e, int https)
{
    struct h_result r;
    char ca[PATH_MAX], path[512];

    snprintf(ca, sizeof(ca), "%s/vigil-ca.pem", e->dir);
    snprintf(path, sizeof(path), "/set-header/X-Leak/%s?q=" AWS "&contact=" MAIL "&ref=%s", GH, GH);
    h_curl(e, &r, 1, "--proxy", e->proxy_url, "--cacert", ca, "-H", "Authorization: Bearer " GH, "-H",
           "X-Api-Key: " AWS, "-H", "Cookie: sid=" COOKIE "; mail=" MAIL, "-H",
           "Referer: https://admin:" GH "@intranet.example.com/dashboard", "-H", "From: " MAIL,
           h_origin_url(e, https, path), NULL);
    h_expect_http(&r, 0, 200);
    {
        char v[256];

        assert_int_equal(h_header(r.headers, "X-Leak", v, sizeof(v)), 0);
        assert_string_equal(v, GH); /* the client got it: only the record must not */
    }
    h_result_fini(&r);
    /* URL userinfo: curl turns it into Authorization: Basic */
    snprintf(path, sizeof(path), "%s", h_origin_url(e, https, "/bytes/10"));
    {
        char url[600];
        const char *scheme_end = strstr(path, "://");

        assert_non_null(scheme_end);
        snprintf(url, sizeof(url), "%.*s://admin:" GH "@%s", (int)(scheme_end - path), path, scheme_end + 3);
        h_curl(e, &r, 1, "--proxy", e->proxy_url, "--cacert", ca, url, NULL);
        h_expect_http(&r, 0, 200);
        h_result_fini(&r);
    }
}

/* a request line in absolute form with userinfo, which curl never sends */
static void raw_userinfo(struct h_env *e)
{
    char req[1024];
    size_t len;
    char *reply;

    snprintf(req, sizeof(req),
             "GET http://" MAIL ":" GH "@127.0.0.1:%d/bytes/5 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
             e->http_port, e->http_port);
    reply = h_raw("127.0.0.1", e->proxy_port, req, strlen(req), 30000, &len);
    assert_non_null(reply);
    free(reply);
}

/* no output of vigil holds a raw secret, and each secret has one token in all of them */
static void test_canary_no_secret_in_any_output(void **state)
{
    struct h_env *e = *state;
    size_t nfile, nkafka, nsyslog;
    char *file, *kafka, *sys, *cfg, err[256];
    static const char *const classes[] = {"credential.github", "credential.aws", "pii.email", "credential.cookie",
                                          "credential.bearer", "credential.api_key", "credential.userinfo",
                                          "credential.basic", NULL};

    start_mock(e);
    cfg = canary_config(e, open_syslog_socket());
    h_start(e, cfg, H_DEFAULT);
    free(cfg);
    traffic(e, 0);
    traffic(e, 1);
    raw_userinfo(e);
    h_stop_vigil(e);

    /* the record is whole (the harness's invariants) and names what it redacted */
    json_t *ev = h_record(e), *x;
    size_t i;
    int authz = 0, leak = 0;
    json_array_foreach(ev, i, x)
    {
        json_t *r;
        size_t k;
        json_array_foreach(json_object_get(x, "redactions"), k, r)
        {
            const char *field = json_string_value(json_object_get(r, "field"));
            authz += strcmp(field, "request.headers.authorization") == 0;
            leak += strcmp(field, "response.headers.x-leak") == 0;
        }
    }
    assert_true(authz >= 2); /* plain and intercepted */
    assert_true(leak >= 2);

    file = read_segments(e, &nfile);
    kafka = read_topic(e, &nkafka);
    sys = read_syslog(&nsyslog);
    assert_true(nfile > 5);
    assert_int_equal(nkafka, nfile);
    assert_int_equal(nsyslog, nfile);
    expect_no_secret("the file segments", file);
    expect_no_secret("the kafka topic", kafka);
    expect_no_secret("the syslog feed", sys);
    {
        char *diag = h_slurp(e->vigil.err_path, NULL);

        assert_non_null(diag);
        expect_no_secret("vigil's stderr", diag);
        free(diag);
    }

    /* one token per secret and class, the same in every output */
    for (const char *const *c = classes; *c != NULL; c++) {
        char *tf = tokens_of(file, *c), *tk = tokens_of(kafka, *c), *ts = tokens_of(sys, *c);

        assert_string_equal(tf, tk);
        assert_string_equal(tf, ts);
        free(tf);
        free(tk);
        free(ts);
    }
    {
        struct redact_keyring *kr;
        char keys[PATH_MAX + 8], tok[REDACT_TOKEN_MAX];
        char *gh = tokens_of(file, "credential.github"), *mail = tokens_of(file, "pii.email");

        snprintf(keys, sizeof(keys), "%s/keys", e->data_dir);
        kr = redact_keyring_open(keys, err, sizeof(err));
        if (kr == NULL)
            fail_msg("%s", err);
        assert_int_equal(redact_token_make(kr, "credential.github", GH, strlen(GH), tok), 0);
        assert_string_equal(gh, tok); /* path, query and response header: one value, one token */
        assert_int_equal(redact_token_make(kr, "pii.email", MAIL, strlen(MAIL), tok), 0);
        assert_string_equal(mail, tok);
        redact_keyring_free(kr);
        free(gh);
        free(mail);
    }
    free(file);
    free(kafka);
    free(sys);
    h_done(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_canary_no_secret_in_any_output, setup, teardown),
    };

    h_main_init();
    return cmocka_run_group_tests_name("integration/canary", tests, NULL, NULL);
}
