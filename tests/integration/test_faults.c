/* tests/integration/test_faults.c - the record when the disk fills: ring overflow under each policy.
 *
 * The file sink's disk is a small tmpfs mounted for the test (DATA_DIR lives on it). Once
 * vigil runs, a filler file takes all the space left: the file sink's writes fail with
 * ENOSPC, it keeps the frame and asks to retry (sinks/file.c), its queue (16384 records)
 * fills, the pipeline blocks on it (on_full "block", the file sink's default), the ring
 * ("ring_slots": 64) fills, and audit.overflow decides what the proxy does. Removing the
 * filler gives the space back and the sink writes everything it held. This is the
 * deterministic way to make the sink unable to keep up: nothing depends on timing.
 *
 * The client sends one request at a time, GET /bytes/1?i=<i> through vigil to the test
 * origin, each with its own query, so every request's events can be found in the record:
 * a plain GET that is allowed has four (flow.phase pre_dns, pre_request, post_response and
 * flow.end).
 *
 *   fail_closed  a full ring refuses new flows with 503; audit.loss reports how many were
 *                refused, and nothing else is lost: a flow answered 200 has all four events,
 *                a refused one none.
 *   drop         every request is answered; events that found the ring full are counted,
 *                and the audit.loss "lost" counts add up exactly to the events missing.
 *   block        vigil stops answering (new connections too) and nothing is lost; once the
 *                disk has room again, the waiting requests are answered and recorded.
 *
 * Each also checks the diagnostics (the ENOSPC line and the recovery line) and that
 * audit-query verify passes over what was written during and after the outage.
 *
 * Needs root (mount(2) of a tmpfs); skipped with a message otherwise. Kafka outages and kill -9
 * are covered by test_kafka.c and test_crash.c.
 *
 * Finding F3 (tests/fuzz/README.md, fixed): fail_closed refuses a flow at admission, before
 * anything of it is recorded, so refused == the 503s clients saw and nothing is lost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "harness.h"

#define DISK_SIZE "16m"
#define MAX_REQUESTS 40000   /* the sink queue holds 16384 records, four per request */
#define STALL_WAIT_MS 2000   /* block: a request unanswered this long is stalled */
#define STALL_RUN 200        /* fail_closed: refusals in a row that show the stall */
#define RECOVER_MS 30000
#define EVENTS_PER_FLOW 4

struct fault_env {
    struct h_env *e;
    char disk[128];    /* <dir>/disk: the test's dir is /tmp/vigil-it-XXXXXX */
    char filler[160];
    int mounted;
    int mount_errno;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int fault_setup(void **state)
{
    struct h_env *e;
    struct fault_env *f;

    if (h_setup(state) != 0)
        return -1;
    e = *state;
    f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->e = e;
    snprintf(f->disk, sizeof(f->disk), "%s/disk", e->dir);
    snprintf(f->filler, sizeof(f->filler), "%s/filler", f->disk);
    if (mkdir(f->disk, 0700) == -1)
        return -1;
    if (mount("vigil-it-disk", f->disk, "tmpfs", MS_NOSUID | MS_NODEV, "size=" DISK_SIZE ",mode=0700") == 0) {
        f->mounted = 1;
        /* the record, the keys and the spool all live on the small disk */
        if (snprintf(e->data_dir, sizeof(e->data_dir), "%s/data", f->disk) >= (int)sizeof(e->data_dir))
            return -1;
        mkdir(e->data_dir, 0700);
    } else {
        f->mount_errno = errno;
    }
    *state = f;
    return 0;
}

static int fault_teardown(void **state)
{
    struct fault_env *f = *state;
    struct h_env *e = f->e;

    h_stop(&e->vigil);
    if (f->mounted) {
        if (!e->ok) { /* keep what the failed test left, off the disk that goes away */
            char *out = NULL, cp[] = "/bin/cp", a[] = "-a", dst[PATH_MAX + 16];
            snprintf(dst, sizeof(dst), "%s/data-kept", e->dir);
            char *const argv[] = {cp, a, e->data_dir, dst, NULL};
            h_run(e, "cp", argv, 30000, &out, NULL);
            free(out);
        }
        umount2(f->disk, MNT_DETACH);
    }
    *state = e;
    free(f);
    return h_teardown(state);
}

static void need_disk(struct fault_env *f)
{
    if (!f->mounted) {
        print_message("test_faults: skipped: cannot mount a tmpfs here (needs root): %s\n", strerror(f->mount_errno));
        skip();
    }
}

/* Takes every byte left on the disk. */
static void disk_fill(struct fault_env *f)
{
    static char block[65536];
    int fd = open(f->filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd != -1);
    for (;;) {
        ssize_t n = write(fd, block, sizeof(block));
        if (n == -1 && errno == ENOSPC)
            break;
        if (n == -1)
            fail_msg("filling the disk: %s", strerror(errno));
        if (n < (ssize_t)sizeof(block)) /* the last bytes: the next write fails */
            continue;
    }
    close(fd);
}

static void disk_free(struct fault_env *f)
{
    assert_int_equal(unlink(f->filler), 0);
}

static const char *fault_config(const char *overflow)
{
    static char buf[8192];
    /* one worker: one flow at a time, so the reserve the ring keeps for admitted flows is
     * never the limit; a frame every 16 records or 20 ms, so the sink writes (and hits
     * ENOSPC) soon after the disk fills */
    snprintf(buf, sizeof(buf),
             "{\"workers\": 1, \"audit\": {\"ring_slots\": 64, \"overflow\": \"%s\"},"
             " \"sinks\": [{\"type\": \"file\", \"frame_records\": 16, \"frame_ms\": 20}], %s}",
             overflow, H_LOOPBACK_RULE_GROUPS);
    return buf;
}

/* ---- a raw keep-alive client, one request at a time ---- */

struct client {
    int fd;
    int port;
    char buf[16384];
    size_t len;
};

static void client_open(struct client *c, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->port = port;
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd != -1);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1)
        fail_msg("connect to vigil: %s", strerror(errno));
}

static void client_close(struct client *c)
{
    if (c->fd != -1)
        close(c->fd);
    c->fd = -1;
}

static void client_send(struct client *c, const char *req)
{
    size_t off = 0, n = strlen(req);
    while (off < n) {
        ssize_t w = send(c->fd, req + off, n - off, MSG_NOSIGNAL);
        if (w == -1)
            fail_msg("send to vigil: %s", strerror(errno));
        off += (size_t)w;
    }
}

/* Reads one whole response (head and Content-Length body). Returns its status, 0 when none
 * came within <deadline_ms>, -1 when vigil closed first. Sets *<close> when the response says
 * "Connection: close". */
static int client_read(struct client *c, int deadline_ms, int *close_after)
{
    int64_t end = now_ms() + deadline_ms;
    *close_after = 0;
    for (;;) {
        c->buf[c->len] = '\0';
        char *eoh = strstr(c->buf, "\r\n\r\n");
        if (eoh) {
            size_t head = (size_t)(eoh + 4 - c->buf), body = 0;
            char *cl = strcasestr(c->buf, "\r\ncontent-length:");
            if (cl && cl < eoh)
                body = strtoul(cl + 17, NULL, 10);
            if (c->len >= head + body) {
                int status = 0;
                sscanf(c->buf, "HTTP/1.1 %d", &status);
                char *conn = strcasestr(c->buf, "\r\nconnection: close");
                *close_after = conn && conn < eoh;
                memmove(c->buf, c->buf + head + body, c->len - head - body);
                c->len -= head + body;
                return status;
            }
        }
        int left = (int)(end - now_ms());
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        if (c->len + 1 >= sizeof(c->buf))
            fail_msg("response too large: %.200s", c->buf);
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
        if (r <= 0)
            return -1;
        c->len += (size_t)r;
    }
}

/* Request <i>: GET /bytes/1?i=<i> through vigil; reopens the connection vigil closed after a
 * response of its own. Returns the status, or 0 when no answer came within <deadline_ms> (the
 * request stays pending on <c>). */
static int request(struct h_env *e, struct client *c, unsigned i, int deadline_ms)
{
    char req[256];
    int close_after, st;
    if (c->fd == -1)
        client_open(c, e->proxy_port);
    snprintf(req, sizeof(req), "GET http://127.0.0.1:%d/bytes/1?i=%u HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
             e->http_port, i, e->http_port);
    client_send(c, req);
    st = client_read(c, deadline_ms, &close_after);
    if (st == -1)
        fail_msg("request %u: vigil closed the connection without an answer", i);
    if (close_after)
        client_close(c);
    return st;
}

/* ---- the record ---- */

struct tally {
    json_t *events;          /* the whole record */
    unsigned char *count;    /* events per request i */
    unsigned char *has_end;  /* a flow.end per request i */
    unsigned long long lost; /* sum of audit.loss "lost" */
    unsigned long long refused;
    unsigned losses;         /* audit.loss events */
};

/* Reads the record with audit-query (not h_record(): it holds audit.loss events by design). */
static void tally_record(struct h_env *e, struct tally *t, unsigned n)
{
    char search[] = "search", fmt[] = "json", dd[] = "--data-dir", f[] = "--format";
    char *const argv[] = {AUDIT_QUERY_BIN, search, dd, e->data_dir, f, fmt, NULL};
    char *out = NULL, *err = NULL;
    int st = h_run(e, "audit-query", argv, 60000, &out, &err);
    if (st != 0)
        fail_msg("audit-query search exited %d: %s", st, err ? err : "");
    memset(t, 0, sizeof(*t));
    t->events = json_array();
    t->count = calloc(n + 1, 1);
    t->has_end = calloc(n + 1, 1);
    assert_non_null(t->count);
    assert_non_null(t->has_end);
    for (char *line = out, *eol; line && *line; line = eol) {
        eol = strchr(line, '\n');
        if (eol)
            *eol++ = '\0';
        if (!*line)
            continue;
        json_error_t je;
        json_t *ev = json_loads(line, 0, &je);
        if (!json_is_object(ev))
            fail_msg("audit-query printed a line that is not a JSON object: %.200s", line);
        json_array_append_new(t->events, ev);
        const char *kind = json_string_value(json_object_get(ev, "event"));
        if (kind && strcmp(kind, "audit.loss") == 0) {
            t->losses++;
            t->lost += (unsigned long long)json_integer_value(json_object_get(ev, "lost"));
            t->refused += (unsigned long long)json_integer_value(json_object_get(ev, "refused"));
            continue;
        }
        const char *q = json_string_value(h_get(ev, "request.query"));
        unsigned i;
        if (!q || sscanf(q, "i=%u", &i) != 1 || i > n)
            continue;
        t->count[i]++;
        if (kind && strcmp(kind, "flow.end") == 0)
            t->has_end[i]++;
    }
    free(out);
    free(err);
}

static void tally_fini(struct tally *t)
{
    json_decref(t->events);
    free(t->count);
    free(t->has_end);
}

/* audit-query verify over the whole data dir: chain and digests intact after the outage. */
static void expect_verify(struct h_env *e)
{
    char verify[] = "verify", dd[] = "--data-dir";
    char *const argv[] = {AUDIT_QUERY_BIN, verify, dd, e->data_dir, NULL};
    char *out = NULL, *err = NULL;
    int st = h_run(e, "audit-query-verify", argv, 60000, &out, &err);
    if (st != 0)
        fail_msg("audit-query verify exited %d:\n%s\n%s", st, out ? out : "", err ? err : "");
    free(out);
    free(err);
}

/* Requests until one gets no answer within STALL_WAIT_MS (block: vigil stalled); fills
 * <status>[i]. Returns the index of that request, still pending on <c>. */
static unsigned drive_until_stalled(struct h_env *e, struct client *c, unsigned first, int *status)
{
    for (unsigned i = first; i < MAX_REQUESTS; i++) {
        status[i] = request(e, c, i, STALL_WAIT_MS);
        if (status[i] == 0)
            return i;
        if (status[i] != 200)
            fail_msg("request %u: status %d", i, status[i]);
    }
    fail_msg("vigil did not stall within %d requests of the disk filling", MAX_REQUESTS);
    return 0;
}

/* ---- tests ---- */

/* fail_closed, disk full: new flows get 503 while the ring is full, audit.loss counts them,
 * the ENOSPC is a diagnostic, and once space returns flows pass and the record verifies */
static void test_faults_disk_full_fail_closed_refuses_then_recovers(void **state)
{
    struct fault_env *f = *state;
    struct h_env *e = f->e;
    struct client c = {.fd = -1};
    int *status = calloc(MAX_REQUESTS, sizeof(int));
    unsigned i = 0, n503 = 0, n200 = 0, last, first503 = 0;
    struct tally t;

    need_disk(f);
    assert_non_null(status);
    h_start(e, fault_config("fail_closed"), H_DEFAULT);
    for (; i < 20; i++) /* the segment is open and writing before the disk fills */
        status[i] = request(e, &c, i, 10000);
    disk_fill(f);
    /* Until the sink's queue (16384 records) and the ring are full and every flow is refused. A
     * ring of 64 slots also refuses a short burst now and then while the pipeline sleeps between
     * batches (at most 8 ms), so a 503 alone does not show the stall: STALL_RUN in a row do. */
    unsigned ok_after = 0, run = 0;
    for (; run < STALL_RUN && i < MAX_REQUESTS; i++) {
        status[i] = request(e, &c, i, 10000);
        if (status[i] != 200 && status[i] != 503)
            fail_msg("request %u: status %d", i, status[i]);
        ok_after += status[i] == 200;
        run = status[i] == 503 ? run + 1 : 0;
        if (status[i] == 503 && !first503)
            first503 = i;
    }
    if (run < STALL_RUN)
        fail_msg("no %d refusals in a row within %d requests of the disk filling", STALL_RUN, MAX_REQUESTS);
    assert_true(ok_after >= 1000); /* the queue took thousands of records before the ring filled */
    h_wait_stderr(&e->vigil, "No space left on device", 1);
    disk_free(f);
    h_wait_stderr(&e->vigil, "writing to", 1); /* sinks/file.c: "<name>: writing to <path> again" */
    int64_t until = now_ms() + RECOVER_MS;
    do {
        status[i] = request(e, &c, i, 10000);
        if (status[i] == 200)
            break;
        pause_ms(20);
        i++;
    } while (now_ms() < until);
    if (status[i] != 200)
        fail_msg("no flow passed within %d ms of the disk having room again", RECOVER_MS);
    last = i;
    ok_after = 0;
    for (i = last + 1; i < last + 21; i++) { /* a ring of 64 slots may refuse a burst now and then */
        status[i] = request(e, &c, i, 10000);
        if (status[i] != 200 && status[i] != 503)
            fail_msg("request %u: status %d", i, status[i]);
        ok_after += status[i] == 200;
    }
    assert_true(ok_after >= 10);
    unsigned n = i;
    client_close(&c);
    h_stop_vigil(e);

    tally_record(e, &t, n);
    unsigned incomplete = 0, partial_refused = 0;
    for (i = 0; i < n; i++) {
        if (status[i] == 200) {
            n200++;
            incomplete += t.count[i] != EVENTS_PER_FLOW || t.has_end[i] != 1;
        } else {
            assert_int_equal(status[i], 503);
            n503++;
            partial_refused += t.count[i] != 0;
        }
    }
    print_message("fail_closed: %u answered 200, %u refused with 503 (the first: request %u of %u); audit.loss x%u: "
                  "refused %llu, lost %llu; 200-flows with an incomplete record %u, 503-flows with events %u\n",
                  n200, n503, first503, n, t.losses, t.refused, t.lost, incomplete, partial_refused);
    assert_true(n503 >= STALL_RUN);
    /* the contract: a refused flow is counted as refused and leaves nothing; an answered one is whole */
    assert_int_equal(t.refused, n503);
    assert_int_equal(t.lost, 0);
    assert_int_equal(incomplete, 0);
    assert_int_equal(partial_refused, 0);
    tally_fini(&t);
    expect_verify(e);
    free(status);
    h_done(e);
}

/* drop, disk full: every request is answered; the events that found the ring full are exactly
 * what audit.loss counts as lost */
static void test_faults_disk_full_drop_counts_exact_loss(void **state)
{
    struct fault_env *f = *state;
    struct h_env *e = f->e;
    struct client c = {.fd = -1};
    int *status = calloc(MAX_REQUESTS, sizeof(int));
    unsigned i, n;
    struct tally t;

    need_disk(f);
    assert_non_null(status);
    h_start(e, fault_config("drop"), H_DEFAULT);
    for (i = 0; i < 20; i++)
        status[i] = request(e, &c, i, 10000);
    disk_fill(f);
    /* 16384 records fill the sink's queue, 64 slots the ring: 8000 requests overflow it */
    for (; i < 8000; i++) {
        status[i] = request(e, &c, i, 10000);
        assert_int_equal(status[i], 200);
    }
    h_wait_stderr(&e->vigil, "No space left on device", 1);
    disk_free(f);
    h_wait_stderr(&e->vigil, "writing to", 1);
    for (n = i + 20; i < n; i++)
        status[i] = request(e, &c, i, 10000);
    client_close(&c);
    h_stop_vigil(e);

    tally_record(e, &t, n);
    unsigned long long expected = 0, present = 0;
    for (i = 0; i < n; i++) {
        assert_int_equal(status[i], 200);
        expected += EVENTS_PER_FLOW;
        present += t.count[i];
        assert_true(t.count[i] <= EVENTS_PER_FLOW);
    }
    print_message("drop: %u requests, %llu events expected, %llu in the record, audit.loss x%u: lost %llu, "
                  "refused %llu\n", n, expected, present, t.losses, t.lost, t.refused);
    assert_true(t.lost > 0);
    assert_int_equal(present + t.lost, expected); /* exact: every missing event counted, none twice */
    assert_int_equal(t.refused, 0);
    tally_fini(&t);
    expect_verify(e);
    free(status);
    h_done(e);
}

/* block, disk full: vigil stops answering, new connections too, loses nothing, and answers the
 * waiting requests once the disk has room again */
static void test_faults_disk_full_block_stalls_then_recovers(void **state)
{
    struct fault_env *f = *state;
    struct h_env *e = f->e;
    struct client c = {.fd = -1}, c2 = {.fd = -1};
    int *status = calloc(MAX_REQUESTS, sizeof(int));
    unsigned i, stalled, n;
    int close_after;
    struct tally t;
    char req[256];

    need_disk(f);
    assert_non_null(status);
    h_start(e, fault_config("block"), H_DEFAULT);
    for (i = 0; i < 20; i++)
        status[i] = request(e, &c, i, 10000);
    disk_fill(f);
    stalled = drive_until_stalled(e, &c, i, status);
    h_wait_stderr(&e->vigil, "No space left on device", 1);
    /* a new client is not served either */
    client_open(&c2, e->proxy_port);
    snprintf(req, sizeof(req), "GET http://127.0.0.1:%d/bytes/1?i=%u HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
             e->http_port, stalled + 1, e->http_port);
    client_send(&c2, req);
    assert_int_equal(client_read(&c2, 1000, &close_after), 0);
    print_message("block: stalled at request %u; a new connection waits too\n", stalled);
    disk_free(f);
    /* both waiting requests are answered */
    status[stalled] = client_read(&c, RECOVER_MS, &close_after);
    assert_int_equal(status[stalled], 200);
    status[stalled + 1] = client_read(&c2, RECOVER_MS, &close_after);
    assert_int_equal(status[stalled + 1], 200);
    client_close(&c2);
    for (i = stalled + 2, n = stalled + 22; i < n; i++) {
        status[i] = request(e, &c, i, 10000);
        assert_int_equal(status[i], 200);
    }
    client_close(&c);
    h_stop_vigil(e);

    tally_record(e, &t, n);
    for (i = 0; i < n; i++) {
        if (status[i] != 200)
            fail_msg("request %u: status %d", i, status[i]);
        if (t.count[i] != EVENTS_PER_FLOW || t.has_end[i] != 1)
            fail_msg("request %u: %u events, %u flow.end in the record", i, t.count[i], t.has_end[i]);
    }
    print_message("block: %u requests, all recorded whole; audit.loss events: %u\n", n, t.losses);
    assert_int_equal(t.losses, 0);
    tally_fini(&t);
    expect_verify(e);
    free(status);
    h_done(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_faults_disk_full_fail_closed_refuses_then_recovers, fault_setup,
                                        fault_teardown),
        cmocka_unit_test_setup_teardown(test_faults_disk_full_drop_counts_exact_loss, fault_setup, fault_teardown),
        cmocka_unit_test_setup_teardown(test_faults_disk_full_block_stalls_then_recovers, fault_setup,
                                        fault_teardown),
    };
    h_main_init();
    return cmocka_run_group_tests_name("integration/faults", tests, NULL, NULL);
}
