/* tests/integration/harness.h - real processes, real sockets and the audit record for the integration tests.
 *
 * A test gets a struct h_env from h_setup() (a fresh mkdtemp directory under /tmp with a self-signed
 * localhost certificate made by the openssl CLI), starts the test origin and vigil with h_start(), drives
 * them with curl (h_curl) or raw bytes (h_raw), stops vigil with h_stop_vigil() (SIGTERM, exit 0 expected,
 * record flushed) and only then reads the record with h_record() (audit-query search --format json).
 * h_teardown() stops every child still running by PID (SIGTERM, SIGKILL after 5 s) even when the test
 * failed, and removes the directory unless the test failed (then it says where it kept it).
 *
 * Every wait is bounded and polls every 20 ms; nothing sleeps to wait for something that can be polled and
 * nothing asserts on timing. Failures go through cmocka's fail_msg() with the child's stderr tail.
 *
 * Binaries come from compile definitions VIGIL_BIN, AUDIT_QUERY_BIN and ORIGIN_BIN. Everything listens on
 * 127.0.0.1 (and ::1 for the IPv6 listener) with ports picked by the kernel and read back. */
#ifndef VIGIL_TESTS_INTEGRATION_HARNESS_H
#define VIGIL_TESTS_INTEGRATION_HARNESS_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#define H_START_DEADLINE_MS 10000 /* a child must be ready within this */
#define H_STOP_GRACE_MS 5000      /* SIGTERM, then SIGKILL */
#define H_CLIENT_DEADLINE_MS 90000
#define H_MAX_URLS 8
#define H_FLOW_ID_LEN 26

struct h_proc {
    pid_t pid; /* 0: not running */
    char name[32];
    char out_path[PATH_MAX];
    char err_path[PATH_MAX];
};

struct h_env {
    char dir[64]; /* the test's temp dir (/tmp/vigil-it-XXXXXX); everything below lives in it */
    char cert[PATH_MAX];
    char key[PATH_MAX];
    char data_dir[PATH_MAX];
    char config[PATH_MAX];
    struct h_proc origin;
    struct h_proc vigil;
    int http_port;   /* origin, 127.0.0.1 */
    int https_port;  /* origin, 127.0.0.1, certificate for localhost */
    int proxy_port;  /* vigil's 127.0.0.1 listener */
    int proxy6_port; /* vigil's [::1] listener, 0 without H_IPV6 */
    char proxy_url[64];
    int ok;          /* set by h_done(): the dir is removed at teardown */
    json_t *events;  /* the record, after h_record() */
    unsigned seq;    /* names client output files */
};

/* The result of one client run; release with h_result_fini(). */
struct h_result {
    int exit_code;          /* curl's exit code, 128+N if killed by signal N */
    int ncodes;
    int codes[H_MAX_URLS];  /* %{http_code} per transfer, in order */
    int http_code;          /* codes[0] */
    size_t nbodies;
    char *body[H_MAX_URLS]; /* NUL-terminated, body_len excludes the NUL */
    size_t body_len[H_MAX_URLS];
    char *headers;          /* curl -D output (all transfers, CONNECT responses too) */
    char *err;              /* curl's stderr (with -v: the verbose trace) */
};

enum h_start_flags {
    H_DEFAULT = 0,
    H_IPV6 = 1 << 0,      /* a second listener on [::1]:0 */
    H_NO_ORIGIN = 1 << 1, /* only vigil */
    H_NO_VIGIL = 1 << 2,  /* only the origin */
};

/* Call first in main(): applies VIGIL_IT_FILTER (run only tests matching a cmocka name pattern, e.g.
 * "*keepalive*") and VIGIL_IT_SKIP (skip those matching). */
void h_main_init(void);

/* cmocka fixtures: *<state> becomes a struct h_env. */
int h_setup(void **state);
int h_teardown(void **state);

/* Starts the origin (unless H_NO_ORIGIN) and vigil with <config_json> (NULL: h_base_config()) written to
 * <dir>/vigil.json. Returns once vigil printed its listeners and "ready"; fails the test otherwise. */
void h_start(struct h_env *e, const char *config_json, int flags);

/* The rule groups a test config has unless the test brings its own: allow the loopback origin
 * (pre_dns: its names on any port, lifting the CONNECT port guard; pre_request: 127.0.0.0/8
 * and ::1, lifting the SSRF guard). Tests with their own "rule_groups" include it as needed. */
#define H_LOOPBACK_GROUP                                                                                        \
    "{\"name\": \"test-loopback\", \"rules\": ["                                                                \
    "{\"id\": \"origin-ports\", \"priority\": 1, \"phase\": \"pre_dns\", \"action\": \"allow\","                  \
    " \"match\": {\"domain\": [\"127.0.0.1\", \"localhost\", \"::1\"], \"port\": [\"1-65535\"]}},"                   \
    "{\"id\": \"origin-addresses\", \"priority\": 2, \"phase\": \"pre_request\", \"action\": \"allow\","          \
    " \"match\": {\"destination_cidr\": [\"127.0.0.0/8\", \"::1/128\"]}}]}"
#define H_LOOPBACK_RULE_GROUPS "\"rule_groups\": [" H_LOOPBACK_GROUP "]"

/* A test config: the file sink plus <extra>, a JSON fragment of further top-level members (without braces)
 * or NULL. Returns a static buffer valid until the next call. */
const char *h_config(const char *extra);

/* SIGTERM to vigil, waits for it (bounded) and asserts exit 0. */
void h_stop_vigil(struct h_env *e);

/* Marks the test as passed: teardown removes the temp dir. Call it last. */
void h_done(struct h_env *e);

/* Spawns <argv> (argv[0] a path) with stdout/stderr to <dir>/<name>.out/.err and stdin /dev/null, with the
 * environment minus *_proxy variables. Fails the test if it cannot. */
void h_spawn(struct h_env *e, struct h_proc *p, const char *name, char *const argv[]);

/* Waits up to <deadline_ms> for <p> to exit; returns its exit code (128+N for signal N), or -1 if it is
 * still running at the deadline. */
int h_wait_exit(struct h_proc *p, int deadline_ms);

/* Waits (bounded, polling) until <p>'s stderr holds <needle> <count> times; fails the test if
 * <p> exits first or the deadline passes. */
void h_wait_stderr(struct h_proc *p, const char *needle, int count);
/* Stops <p> by PID: SIGTERM, SIGKILL after H_STOP_GRACE_MS, reaps it. Returns the exit status as above,
 * or -1 if it was not running. */
int h_stop(struct h_proc *p);

/* Runs <argv> to completion (bounded by <deadline_ms>) with output to files named after <name> in the
 * temp dir; returns the exit code. The outputs are in *<out> / *<err> if non-NULL (caller frees). */
int h_run(struct h_env *e, const char *name, char *const argv[], int deadline_ms, char **out, char **err);

/* Runs curl with the NULL-terminated options that follow <nurls> (the URLs among them). The harness adds
 * -q -sS --max-time, -D, -w '%{http_code}\n' and one -o per URL; <nurls> is the number of URLs (<=8). */
void h_curl(struct h_env *e, struct h_result *r, int nurls, ...) __attribute__((sentinel));
void h_result_fini(struct h_result *r);
/* Asserts curl exited 0 and transfer <i> got HTTP <code>; prints curl's stderr and headers otherwise. */
void h_expect_http(const struct h_result *r, int i, int code);

/* The proxy URL for curl's --proxy: http://127.0.0.1:PROXYPORT. And an origin URL with <path>:
 * "http://127.0.0.1:HTTPPORT<path>" (<https> 0) or "https://localhost:HTTPSPORT<path>". Static buffers,
 * a ring of 8, so several can be used in one call. */
const char *h_origin_url(struct h_env *e, int https, const char *path);

/* A raw client connection, for requests curl cannot make. All reads are bounded by a deadline. */
struct h_conn {
    int fd;
    char *buf; /* everything read so far, NUL-terminated */
    size_t len;
    size_t cap;
    int eof;   /* the peer closed (or reset) */
};

/* Connects to <host>:<port> (an IPv4 or IPv6 literal); fails the test if it cannot. */
void h_conn_open(struct h_conn *c, const char *host, int port);
/* Writes all of <data> (bounded by <deadline_ms>); -1 if the peer stopped reading or closed. */
int h_conn_send(struct h_conn *c, const void *data, size_t len, int deadline_ms);
/* Reads until c->buf contains <needle> (NULL: until EOF) or <deadline_ms> passes. Returns 0 if found (or
 * EOF reached when <needle> is NULL), -1 otherwise. */
int h_conn_read_until(struct h_conn *c, const char *needle, int deadline_ms);
/* Drops the first <n> bytes of what was read. */
void h_conn_consume(struct h_conn *c, size_t n);
void h_conn_close(struct h_conn *c);

/* Connects to <host>:<port>, writes <req>, then reads until EOF or <deadline_ms>. Returns the reply
 * (NUL-terminated, caller frees) and its length in *<len>. A connect failure fails the test. */
char *h_raw(const char *host, int port, const void *req, size_t reqlen, int deadline_ms, size_t *len);

/* The header value of <name> in the last response head of <headers> that has it (case-insensitive name),
 * copied into <out>; 0, or -1 if absent. */
int h_header(const char *headers, const char *name, char *out, size_t outlen);

/* Body bytes the origin has generated so far, read from its /stats once the number has stopped
 * growing (the same over 10 polls 20 ms apart, bounded by 20 s; the test fails if it never settles).
 * A client that stops reading must stall the origin through the proxy: this is how a test sees it. */
unsigned long long h_origin_generated_settled(struct h_env *e);

/* Reads the whole record with audit-query into e->events (asserting exit 0 and one JSON object per line),
 * and checks the invariants that hold for every record: seq strictly increasing, "schema" vigil.event/1,
 * time RFC 3339 UTC, a proxy.config event, no audit.loss, 26-character flow ids, exactly one flow.end per
 * flow id and nothing of a flow after it. Returns e->events (borrowed). */
json_t *h_record(struct h_env *e);

/* The event at a dotted <path> ("request.host") of <ev>, or NULL. */
json_t *h_get(json_t *ev, const char *path);
/* Asserts the string at <path> equals <want>. */
void h_expect_str(json_t *ev, const char *path, const char *want);
/* Asserts the integer at <path> equals <want>. */
void h_expect_int(json_t *ev, const char *path, long long want);
/* The integer at <path>; fails the test if absent. */
long long h_int(json_t *ev, const char *path);
/* The string at <path>; fails the test if absent. */
const char *h_str(json_t *ev, const char *path);

/* The flow id of the first event whose string (or integer) at <path> equals <value>; fails if none. */
const char *h_flow_where(json_t *events, const char *path, const char *value);
/* The events of <flow_id> whose "event" and "phase" match (NULL: any), in record order; a new array. */
json_t *h_filter(json_t *events, const char *flow_id, const char *event, const char *phase);
/* The single event matching, failing the test unless there is exactly one. Borrowed. */
json_t *h_one(json_t *events, const char *flow_id, const char *event, const char *phase);
/* <flow_id>'s events as "flow.phase:pre_dns flow.phase:pre_request flow.end". Static buffer. */
const char *h_flow_kinds(json_t *events, const char *flow_id);
/* Asserts <flow_id>'s events are exactly <kinds> in order, each "flow.end" or "flow.phase:<phase>", NULL
 * terminated. Prints the flow's events on mismatch. */
void h_expect_flow(json_t *events, const char *flow_id, ...) __attribute__((sentinel));
/* Asserts the common fields of a default-allowed plain or CONNECT flow event. */
void h_expect_default_allow(json_t *ev); /* allowed by the default or by the test-loopback group */

/* Fills <buf> with the origin's /bytes pattern of <n> bytes. */
void h_pattern(char *buf, size_t n);
/* Asserts <got> is exactly the origin's pattern of <n> bytes. */
void h_expect_pattern(const char *got, size_t got_len, size_t n);

/* A file of <n> pseudo-random bytes in the temp dir; returns its path (static ring) and the bytes in
 * *<data> if non-NULL (caller frees). */
const char *h_random_file(struct h_env *e, const char *name, size_t n, char **data);

/* A TCP port on 127.0.0.1 with nothing listening (bound, then closed). */
int h_closed_port(void);

/* Reads a whole file; NULL if it cannot. */
char *h_slurp(const char *path, size_t *len);

#endif
