/* tests/integration/harness.c - processes, clients and record reading for the integration tests.
 *
 * See harness.h for the contract. Children are started with posix_spawn and tracked in a small table so
 * that even a test process dying outside cmocka's control (atexit) does not leave them running. */
#include "harness.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <setjmp.h>
#include <cmocka.h>

#ifndef VIGIL_BIN
#error "VIGIL_BIN must be defined by the build"
#endif
#ifndef AUDIT_QUERY_BIN
#error "AUDIT_QUERY_BIN must be defined by the build"
#endif
#ifndef ORIGIN_BIN
#error "ORIGIN_BIN must be defined by the build"
#endif

extern char **environ;

#define POLL_MS 20
#define TAIL_BYTES 4000

/* ---- children still running, killed at exit if a test could not stop them ---- */

#define MAX_LIVE 16
static pid_t live[MAX_LIVE];

static void live_add(pid_t pid)
{
    for (size_t i = 0; i < MAX_LIVE; i++)
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
}

static void live_del(pid_t pid)
{
    for (size_t i = 0; i < MAX_LIVE; i++)
        if (live[i] == pid)
            live[i] = 0;
}

static void live_kill_all(void)
{
    for (size_t i = 0; i < MAX_LIVE; i++)
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
}

/* ---- small utilities ---- */

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_poll(void)
{
    struct timespec ts = { 0, POLL_MS * 1000000L };

    nanosleep(&ts, NULL);
}

char *h_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        size_t got;
        if (cap - n < 65536) {
            char *nb;
            cap = cap == 0 ? 65536 : cap * 2;
            nb = realloc(buf, cap + 1);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

/* The last TAIL_BYTES of a file, for failure messages. Static buffer. */
static const char *tail(const char *path)
{
    static char buf[TAIL_BYTES + 64];
    size_t n = 0;
    char *all = h_slurp(path, &n);

    if (all == NULL) {
        snprintf(buf, sizeof(buf), "(cannot read %s)", path);
        return buf;
    }
    snprintf(buf, sizeof(buf), "%s%s", n > TAIL_BYTES ? "..." : "", all + (n > TAIL_BYTES ? n - TAIL_BYTES : 0));
    free(all);
    return buf;
}

static int write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    const char *p = data;

    if (fd == -1)
        return -1;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return close(fd);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* ---- processes ---- */

static int is_proxy_var(const char *kv)
{
    static const char *const names[] = { "http_proxy=", "https_proxy=", "all_proxy=", "no_proxy=", "ftp_proxy=" };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strncasecmp(kv, names[i], strlen(names[i])) == 0)
            return 1;
    return 0;
}

void h_spawn(struct h_env *e, struct h_proc *p, const char *name, char *const argv[])
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, dfl;
    char **envp;
    size_t n = 0, k = 0;
    int rc;

    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(p->out_path, sizeof(p->out_path), "%s/%s.out", e->dir, name);
    snprintf(p->err_path, sizeof(p->err_path), "%s/%s.err", e->dir, name);
    while (environ[n] != NULL)
        n++;
    envp = calloc(n + 1, sizeof(*envp));
    assert_non_null(envp);
    for (size_t i = 0; i < n; i++)
        if (!is_proxy_var(environ[i]))
            envp[k++] = environ[i];

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, p->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, p->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGHUP);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawn(&p->pid, argv[0], &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free(envp);
    if (rc != 0) {
        p->pid = 0;
        fail_msg("cannot start %s (%s): %s", name, argv[0], strerror(rc));
    }
    live_add(p->pid);
}

static int decode_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

/* Reaps <p> if it has exited: its status, or -1 while it runs. */
static int try_reap(struct h_proc *p)
{
    int status;
    pid_t r;

    if (p->pid <= 0)
        return -1;
    r = waitpid(p->pid, &status, WNOHANG);
    if (r == p->pid) {
        live_del(p->pid);
        p->pid = 0;
        return decode_status(status);
    }
    return -1;
}

int h_wait_exit(struct h_proc *p, int deadline_ms)
{
    long long end = now_ms() + deadline_ms;

    if (p->pid <= 0)
        return -1;
    for (;;) {
        int st = try_reap(p);
        if (st != -1)
            return st;
        if (now_ms() >= end)
            return -1;
        pause_poll();
    }
}

int h_stop(struct h_proc *p)
{
    int status, st;
    pid_t pid = p->pid;

    if (pid <= 0)
        return -1;
    kill(pid, SIGTERM);
    st = h_wait_exit(p, H_STOP_GRACE_MS);
    if (st != -1)
        return st;
    print_message("harness: %s (pid %d) ignored SIGTERM for %d ms, sending SIGKILL\n", p->name, (int)pid,
                  H_STOP_GRACE_MS);
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
        ;
    live_del(pid);
    p->pid = 0;
    return decode_status(status);
}

int h_run(struct h_env *e, const char *name, char *const argv[], int deadline_ms, char **out, char **err)
{
    struct h_proc p;
    int st;

    h_spawn(e, &p, name, argv);
    st = h_wait_exit(&p, deadline_ms);
    if (st == -1) {
        h_stop(&p);
        fail_msg("%s did not finish within %d ms; stderr:\n%s", name, deadline_ms, tail(p.err_path));
    }
    if (out != NULL)
        *out = h_slurp(p.out_path, NULL);
    if (err != NULL)
        *err = h_slurp(p.err_path, NULL);
    return st;
}

/* Polls <cond> until true; fails if <p> exits first or the deadline passes. */
static void wait_for(struct h_proc *p, int (*cond)(void *), void *arg, const char *what)
{
    long long end = now_ms() + H_START_DEADLINE_MS;

    for (;;) {
        int st;
        if (cond(arg))
            return;
        st = try_reap(p);
        if (st != -1)
            fail_msg("%s exited with status %d before %s; stderr:\n%s", p->name, st, what, tail(p->err_path));
        if (now_ms() >= end)
            fail_msg("%s: no %s within %d ms; stderr:\n%s", p->name, what, H_START_DEADLINE_MS,
                     tail(p->err_path));
        pause_poll();
    }
}

static int file_exists(void *path)
{
    return access(path, F_OK) == 0;
}

struct count_arg {
    const char *path, *needle;
    int want;
};

static int needle_count_reached(void *arg)
{
    struct count_arg *a = arg;
    char *text = h_slurp(a->path, NULL);
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, a->needle)) != NULL; p++)
        n++;
    free(text);
    return n >= a->want;
}

void h_wait_stderr(struct h_proc *p, const char *needle, int count)
{
    struct count_arg a = {.path = p->err_path, .needle = needle, .want = count};
    wait_for(p, needle_count_reached, &a, needle);
}

/* Is "ready" in <text> as a word (not "already", not "/readyz")? */
static int has_ready_word(const char *text)
{
    for (const char *p = text; (p = strstr(p, "ready")) != NULL; p += 5) {
        int before = p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '/' || p[-1] == '_');
        int after = isalnum((unsigned char)p[5]) || p[5] == '_';
        if (!before && !after)
            return 1;
    }
    return 0;
}

static int vigil_ready(void *path)
{
    char *text = h_slurp(path, NULL);
    int r = text != NULL && has_ready_word(text);

    free(text);
    return r;
}

/* The port after "<prefix>" in <text>, or 0. */
static int port_after(const char *text, const char *prefix)
{
    const char *p = strstr(text, prefix);

    return p != NULL ? atoi(p + strlen(prefix)) : 0;
}

/* ---- fixtures ---- */

void h_main_init(void)
{
    const char *filter = getenv("VIGIL_IT_FILTER");

    const char *skip_pattern = getenv("VIGIL_IT_SKIP");

    if (filter != NULL && *filter != '\0')
        cmocka_set_test_filter(filter);
    if (skip_pattern != NULL && *skip_pattern != '\0')
        cmocka_set_skip_filter(skip_pattern);
}

int h_setup(void **state)
{
    static int registered;
    struct h_env *e = calloc(1, sizeof(*e));
    char subj_alt[] = "subjectAltName=DNS:localhost,IP:127.0.0.1";
    char *err = NULL;
    int st;

    if (e == NULL)
        return -1;
    if (!registered) {
        atexit(live_kill_all);
        registered = 1;
    }
    snprintf(e->dir, sizeof(e->dir), "/tmp/vigil-it-XXXXXX");
    if (mkdtemp(e->dir) == NULL) {
        print_message("harness: mkdtemp: %s\n", strerror(errno));
        free(e);
        return -1;
    }
    snprintf(e->cert, sizeof(e->cert), "%s/origin.pem", e->dir);
    snprintf(e->key, sizeof(e->key), "%s/origin.key", e->dir);
    snprintf(e->data_dir, sizeof(e->data_dir), "%s/data", e->dir);
    snprintf(e->config, sizeof(e->config), "%s/vigil.json", e->dir);
    if (mkdir(e->data_dir, 0700) == -1) {
        print_message("harness: mkdir %s: %s\n", e->data_dir, strerror(errno));
        free(e);
        return -1;
    }
    {
        char *const argv[] = { "/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                               "ec_paramgen_curve:P-256", "-nodes", "-keyout", e->key, "-out", e->cert, "-days",
                               "2", "-subj", "/CN=localhost", "-addext", subj_alt, NULL };
        st = h_run(e, "openssl-req", argv, H_START_DEADLINE_MS, NULL, &err);
    }
    if (st != 0 || chmod(e->key, 0600) == -1) {
        print_message("harness: openssl req failed (%d): %s\n", st, err != NULL ? err : "");
        free(err);
        free(e);
        return -1;
    }
    free(err);
    *state = e;
    return 0;
}

int h_teardown(void **state)
{
    struct h_env *e = *state;
    const char *keep = getenv("VIGIL_IT_KEEP");

    if (e == NULL)
        return 0;
    h_stop(&e->vigil);
    h_stop(&e->origin);
    json_decref(e->events);
    if (e->ok && (keep == NULL || *keep == '\0' || strcmp(keep, "0") == 0))
        nftw(e->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    else
        print_message("harness: kept %s for inspection (vigil.err, origin.err, curl-*.err, data/)\n", e->dir);
    free(e);
    *state = NULL;
    return 0;
}

void h_done(struct h_env *e)
{
    e->ok = 1;
}

const char *h_config(const char *extra)
{
    static char buf[16384];
    /* The origin is on loopback, which the SSRF guard denies, on ports the CONNECT port guard
     * denies: the test policy allows exactly that, explicitly (unless the test brings its own). */
    const char *loopback = extra && strstr(extra, "\"rule_groups\"") ? ""
                           : ", " H_LOOPBACK_RULE_GROUPS;

    snprintf(buf, sizeof(buf), "{\"sinks\": [{\"type\": \"file\", \"frame_records\": 1024, \"frame_ms\": 1000}]%s%s%s}\n",
             loopback, extra != NULL ? ", " : "", extra != NULL ? extra : "");
    return buf;
}

void h_start(struct h_env *e, const char *config_json, int flags)
{
    char ready[PATH_MAX + 16];
    char *text;

    if (!(flags & H_NO_ORIGIN)) {
        char http[] = "127.0.0.1:0", https[] = "127.0.0.1:0";
        char *const argv[] = { ORIGIN_BIN, "--http", http, "--https", https, "--cert", e->cert, "--key", e->key,
                               "--ready-file", ready, NULL };
        snprintf(ready, sizeof(ready), "%s/origin.ready", e->dir);
        h_spawn(e, &e->origin, "origin", argv);
        wait_for(&e->origin, file_exists, ready, "ready file");
        text = h_slurp(ready, NULL);
        assert_non_null(text);
        e->http_port = port_after(text, "http 127.0.0.1:");
        e->https_port = port_after(text, "https 127.0.0.1:");
        free(text);
        if (e->http_port <= 0 || e->https_port <= 0)
            fail_msg("origin ready file %s has no ports", ready);
    }
    if (flags & H_NO_VIGIL)
        return;

    if (config_json == NULL)
        config_json = h_config(NULL);
    if (write_file(e->config, config_json, strlen(config_json), 0600) == -1)
        fail_msg("cannot write %s: %s", e->config, strerror(errno));
    {
        char l4[] = "127.0.0.1:0", l6[] = "[::1]:0";
        char *argv[12] = { VIGIL_BIN, "--config", e->config, "--listen", l4, "--data-dir", e->data_dir, NULL };
        if (flags & H_IPV6) {
            argv[7] = "--listen";
            argv[8] = l6;
            argv[9] = NULL;
        }
        h_spawn(e, &e->vigil, "vigil", argv);
    }
    wait_for(&e->vigil, vigil_ready, e->vigil.err_path, "\"ready\" line on stderr");
    text = h_slurp(e->vigil.err_path, NULL);
    assert_non_null(text);
    e->proxy_port = port_after(text, "listening on 127.0.0.1:");
    e->proxy6_port = port_after(text, "listening on [::1]:");
    free(text);
    if (e->proxy_port <= 0)
        fail_msg("vigil said ready but printed no \"listening on 127.0.0.1:PORT\" line; stderr:\n%s",
                 tail(e->vigil.err_path));
    if ((flags & H_IPV6) && e->proxy6_port <= 0)
        fail_msg("vigil printed no \"listening on [::1]:PORT\" line; stderr:\n%s", tail(e->vigil.err_path));
    snprintf(e->proxy_url, sizeof(e->proxy_url), "http://127.0.0.1:%d", e->proxy_port);
}

void h_stop_vigil(struct h_env *e)
{
    int st;

    if (e->vigil.pid <= 0)
        fail_msg("vigil is not running (it exited earlier); stderr:\n%s", tail(e->vigil.err_path));
    st = h_stop(&e->vigil);
    if (st != 0)
        fail_msg("vigil exited with status %d after SIGTERM (want 0); stderr:\n%s", st, tail(e->vigil.err_path));
}

/* ---- clients ---- */

const char *h_origin_url(struct h_env *e, int https, const char *path)
{
    static char ring[8][1024];
    static unsigned next;
    char *buf = ring[next++ % 8];

    if (https)
        snprintf(buf, sizeof(ring[0]), "https://localhost:%d%s", e->https_port, path);
    else
        snprintf(buf, sizeof(ring[0]), "http://127.0.0.1:%d%s", e->http_port, path);
    return buf;
}

void h_curl(struct h_env *e, struct h_result *r, int nurls, ...)
{
    char *argv[128];
    char paths[H_MAX_URLS][PATH_MAX];
    char hdr[PATH_MAX], name[32];
    char maxtime[] = "60", wfmt[] = "%{http_code}\\n";
    char *out = NULL;
    size_t n = 0;
    unsigned id = ++e->seq;
    va_list ap;

    assert_true(nurls >= 1 && nurls <= H_MAX_URLS);
    memset(r, 0, sizeof(*r));
    snprintf(name, sizeof(name), "curl-%u", id);
    snprintf(hdr, sizeof(hdr), "%s/curl-%u.headers", e->dir, id);
    argv[n++] = "/usr/bin/curl";
    argv[n++] = "-q"; /* no .curlrc */
    argv[n++] = "-sS";
    argv[n++] = "--max-time";
    argv[n++] = maxtime;
    argv[n++] = "-D";
    argv[n++] = hdr;
    argv[n++] = "-w";
    argv[n++] = wfmt;
    for (int i = 0; i < nurls; i++) {
        snprintf(paths[i], sizeof(paths[i]), "%s/curl-%u.body.%d", e->dir, id, i);
        argv[n++] = "-o";
        argv[n++] = paths[i];
    }
    va_start(ap, nurls);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
        assert_true(n < sizeof(argv) / sizeof(argv[0]) - 1);
        argv[n++] = (char *)a;
    }
    va_end(ap);
    argv[n] = NULL;

    r->exit_code = h_run(e, name, argv, H_CLIENT_DEADLINE_MS, &out, &r->err);
    for (char *p = out, *end; p != NULL && *p != '\0' && r->ncodes < H_MAX_URLS; p = end) {
        r->codes[r->ncodes++] = (int)strtol(p, &end, 10);
        if (end == p)
            break;
        while (*end == '\n')
            end++;
    }
    free(out);
    r->http_code = r->codes[0];
    r->nbodies = (size_t)nurls;
    for (int i = 0; i < nurls; i++) {
        r->body[i] = h_slurp(paths[i], &r->body_len[i]);
        if (r->body[i] == NULL) {
            r->body[i] = strdup("");
            r->body_len[i] = 0;
        }
    }
    r->headers = h_slurp(hdr, NULL);
    if (r->headers == NULL)
        r->headers = strdup("");
    if (r->err == NULL)
        r->err = strdup("");
}

void h_expect_http(const struct h_result *r, int i, int code)
{
    if (r->exit_code != 0 || i >= r->ncodes || r->codes[i] != code)
        fail_msg("curl: exit %d, transfer %d got HTTP %d, want exit 0 and HTTP %d\n--- curl stderr:\n%.3000s\n"
                 "--- response headers:\n%.2000s",
                 r->exit_code, i, i < r->ncodes ? r->codes[i] : -1, code, r->err, r->headers);
}

void h_result_fini(struct h_result *r)
{
    for (size_t i = 0; i < r->nbodies; i++)
        free(r->body[i]);
    free(r->headers);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

void h_conn_open(struct h_conn *c, const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t sl;

    memset(c, 0, sizeof(*c));
    memset(&ss, 0, sizeof(ss));
    if (strchr(host, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET6, host, &s6->sin6_addr), 1);
        sl = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET, host, &s4->sin_addr), 1);
        sl = sizeof(*s4);
    }
    c->cap = 65536;
    c->buf = malloc(c->cap + 1);
    assert_non_null(c->buf);
    c->buf[0] = '\0';
    c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd != -1);
    if (connect(c->fd, (struct sockaddr *)&ss, sl) == -1)
        fail_msg("raw connect to %s:%d: %s", host, port, strerror(errno));
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
}

/* One poll round: reads what is there into c->buf. Returns -1 at the deadline. */
static int conn_pump(struct h_conn *c, long long end, const void *out, size_t outlen, size_t *sent)
{
    struct pollfd pfd = { c->fd, (short)((c->eof ? 0 : POLLIN) | (sent != NULL && *sent < outlen ? POLLOUT : 0)),
                          0 };
    long long left = end - now_ms();
    int pr;

    if (left <= 0)
        return -1;
    pr = poll(&pfd, 1, (int)left);
    if (pr <= 0)
        return 0;
    if ((pfd.revents & POLLOUT) && sent != NULL && *sent < outlen) {
        ssize_t w = send(c->fd, (const char *)out + *sent, outlen - *sent, MSG_NOSIGNAL);
        if (w > 0)
            *sent += (size_t)w;
        else if (w == -1 && errno != EAGAIN && errno != EINTR)
            return -2;
    }
    if ((pfd.revents & (POLLIN | POLLHUP | POLLERR)) && !c->eof) {
        ssize_t rd;
        if (c->cap - c->len < 4096) {
            char *nb = realloc(c->buf, c->cap * 2 + 1);
            assert_non_null(nb);
            c->buf = nb;
            c->cap *= 2;
        }
        rd = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (rd > 0)
            c->len += (size_t)rd;
        else if (rd == 0 || (errno != EAGAIN && errno != EINTR))
            c->eof = 1; /* EOF, or a reset after the reply */
        c->buf[c->len] = '\0';
    }
    if (pfd.revents & POLLNVAL)
        return -1;
    return 0;
}

int h_conn_send(struct h_conn *c, const void *data, size_t len, int deadline_ms)
{
    long long end = now_ms() + deadline_ms;
    size_t sent = 0;

    while (sent < len) {
        int r = conn_pump(c, end, data, len, &sent);
        if (r < 0)
            return -1;
    }
    return 0;
}

int h_conn_read_until(struct h_conn *c, const char *needle, int deadline_ms)
{
    long long end = now_ms() + deadline_ms;

    for (;;) {
        if (needle != NULL && memmem(c->buf, c->len, needle, strlen(needle)) != NULL)
            return 0;
        if (c->eof)
            return needle == NULL ? 0 : -1;
        if (conn_pump(c, end, NULL, 0, NULL) < 0)
            return -1;
    }
}

void h_conn_consume(struct h_conn *c, size_t n)
{
    if (n > c->len)
        n = c->len;
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    c->buf[c->len] = '\0';
}

void h_conn_close(struct h_conn *c)
{
    if (c->fd > 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

char *h_raw(const char *host, int port, const void *req, size_t reqlen, int deadline_ms, size_t *len)
{
    struct h_conn c;
    long long end = now_ms() + deadline_ms;
    size_t sent = 0;
    char *reply;

    h_conn_open(&c, host, port);
    while (!c.eof) {
        int r = conn_pump(&c, end, req, reqlen, &sent);
        if (r == -2)
            sent = reqlen; /* the peer stopped reading (it may have answered already): keep reading */
        else if (r == -1) {
            print_message("harness: raw reply from %s:%d not finished by EOF within %d ms (%zu bytes so far)\n",
                          host, port, deadline_ms, c.len);
            break;
        }
    }
    close(c.fd);
    reply = c.buf;
    if (len != NULL)
        *len = c.len;
    return reply;
}

int h_header(const char *headers, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    int found = -1;

    for (const char *line = headers; line != NULL && *line != '\0';) {
        const char *eol = strchr(line, '\n');
        size_t len = eol != NULL ? (size_t)(eol - line) : strlen(line);
        if (len > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            size_t vl;
            while (*v == ' ' || *v == '\t')
                v++;
            vl = (size_t)(line + len - v);
            while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (vl >= outlen)
                vl = outlen - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            found = 0;
        }
        line = eol != NULL ? eol + 1 : NULL;
    }
    return found;
}

/* ---- the record ---- */

json_t *h_get(json_t *ev, const char *path)
{
    char key[128];
    json_t *cur = ev;

    while (cur != NULL && *path != '\0') {
        const char *dot = strchr(path, '.');
        size_t kl = dot != NULL ? (size_t)(dot - path) : strlen(path);
        if (kl >= sizeof(key))
            return NULL;
        memcpy(key, path, kl);
        key[kl] = '\0';
        cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
        path += kl + (dot != NULL ? 1 : 0);
    }
    return cur;
}

/* A compact dump for failure messages. Static buffer. */
static const char *dump(json_t *j)
{
    static char buf[8192];
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);

    snprintf(buf, sizeof(buf), "%s", s != NULL ? s : "(null)");
    free(s);
    return buf;
}

const char *h_str(json_t *ev, const char *path)
{
    json_t *v = h_get(ev, path);

    if (!json_is_string(v))
        fail_msg("event has no string at %s: %s", path, dump(ev));
    return json_string_value(v);
}

long long h_int(json_t *ev, const char *path)
{
    json_t *v = h_get(ev, path);

    if (!json_is_integer(v))
        fail_msg("event has no integer at %s: %s", path, dump(ev));
    return (long long)json_integer_value(v);
}

void h_expect_str(json_t *ev, const char *path, const char *want)
{
    const char *got = h_str(ev, path);

    if (strcmp(got, want) != 0)
        fail_msg("%s is \"%s\", want \"%s\" in %s", path, got, want, dump(ev));
}

void h_expect_int(json_t *ev, const char *path, long long want)
{
    long long got = h_int(ev, path);

    if (got != want)
        fail_msg("%s is %lld, want %lld in %s", path, got, want, dump(ev));
}

static int matches(json_t *ev, const char *flow_id, const char *event, const char *phase)
{
    json_t *f = json_object_get(ev, "flow_id"), *k = json_object_get(ev, "event"), *p = json_object_get(ev, "phase");

    if (flow_id != NULL && (!json_is_string(f) || strcmp(json_string_value(f), flow_id) != 0))
        return 0;
    if (event != NULL && (!json_is_string(k) || strcmp(json_string_value(k), event) != 0))
        return 0;
    if (phase != NULL && (!json_is_string(p) || strcmp(json_string_value(p), phase) != 0))
        return 0;
    return 1;
}

json_t *h_filter(json_t *events, const char *flow_id, const char *event, const char *phase)
{
    json_t *out = json_array();
    json_t *ev;
    size_t i;

    json_array_foreach(events, i, ev)
        if (matches(ev, flow_id, event, phase))
            json_array_append(out, ev);
    return out;
}

/* Prints the whole record, for failures about what is missing. */
static void print_record(json_t *events)
{
    json_t *ev;
    size_t i;

    print_message("record (%zu events):\n", json_array_size(events));
    json_array_foreach(events, i, ev)
        print_message("  %s\n", dump(ev));
}

json_t *h_one(json_t *events, const char *flow_id, const char *event, const char *phase)
{
    json_t *found = NULL;
    json_t *ev;
    size_t i, n = 0;

    json_array_foreach(events, i, ev)
        if (matches(ev, flow_id, event, phase)) {
            found = ev;
            n++;
        }
    if (n != 1) {
        print_record(events);
        fail_msg("want exactly one event flow_id=%s event=%s phase=%s, found %zu", flow_id ? flow_id : "*",
                 event ? event : "*", phase ? phase : "*", n);
    }
    return found;
}

const char *h_flow_where(json_t *events, const char *path, const char *value)
{
    json_t *ev;
    size_t i;

    json_array_foreach(events, i, ev) {
        json_t *v = h_get(ev, path), *f = json_object_get(ev, "flow_id");
        char num[32];
        const char *s = NULL;
        if (!json_is_string(f))
            continue;
        if (json_is_string(v)) {
            s = json_string_value(v);
        } else if (json_is_integer(v)) {
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
            s = num;
        }
        if (s != NULL && strcmp(s, value) == 0)
            return json_string_value(f);
    }
    print_record(events);
    fail_msg("no flow event with %s = \"%s\" in the record", path, value);
    return NULL;
}

const char *h_flow_kinds(json_t *events, const char *flow_id)
{
    static char got[1024];
    json_t *ev;
    size_t i;

    got[0] = '\0';
    json_array_foreach(events, i, ev) {
        json_t *k = json_object_get(ev, "event"), *p = json_object_get(ev, "phase");
        int phase = json_is_string(k) && strcmp(json_string_value(k), "flow.phase") == 0 && json_is_string(p);
        size_t l = strlen(got);
        if (!matches(ev, flow_id, NULL, NULL))
            continue;
        snprintf(got + l, sizeof(got) - l, "%s%s%s%s", l > 0 ? " " : "", json_is_string(k) ? json_string_value(k) : "?",
                 phase ? ":" : "", phase ? json_string_value(p) : "");
    }
    return got;
}

void h_expect_flow(json_t *events, const char *flow_id, ...)
{
    const char *got = h_flow_kinds(events, flow_id);
    char want[1024] = "";
    va_list ap;

    va_start(ap, flow_id);
    for (const char *k; (k = va_arg(ap, const char *)) != NULL;) {
        size_t l = strlen(want);
        snprintf(want + l, sizeof(want) - l, "%s%s", l > 0 ? " " : "", k);
    }
    va_end(ap);
    if (strcmp(got, want) != 0) {
        json_t *mine = h_filter(events, flow_id, NULL, NULL);
        json_t *ev;
        size_t i;
        json_array_foreach(mine, i, ev)
            print_message("  %s\n", dump(ev));
        json_decref(mine);
        fail_msg("flow %s: events are [%s], want [%s]", flow_id, got, want);
    }
}

void h_expect_default_allow(json_t *ev)
{
    const char *id = h_str(ev, "rule.id"), *reason = h_str(ev, "reason");
    h_expect_str(ev, "action", "allow");
    /* the default, or one of the test policy's loopback allows (H_LOOPBACK_GROUP) */
    if (id && strcmp(id, "default") == 0) {
        h_expect_str(ev, "reason", "default_action");
    } else if (id && (strcmp(id, "origin-ports") == 0 || strcmp(id, "origin-addresses") == 0)) {
        h_expect_str(ev, "rule.group", "test-loopback");
        h_expect_str(ev, "reason", "rule");
    } else {
        fail_msg("phase decided by rule \"%s\" (%s), want the default or a test-loopback allow", id ? id : "?",
                 reason ? reason : "?");
    }
}

/* "2026-01-02T03:04:05Z" with optional fraction. */
static int is_rfc3339z(const char *t)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    size_t i;

    for (i = 0; shape[i] != '\0'; i++)
        if (shape[i] == 'd' ? !isdigit((unsigned char)t[i]) : t[i] != shape[i])
            return 0;
    if (t[i] == '.') {
        i++;
        if (!isdigit((unsigned char)t[i]))
            return 0;
        while (isdigit((unsigned char)t[i]))
            i++;
    }
    return t[i] == 'Z' && t[i + 1] == '\0';
}

/* The invariants of every record; see h_record(). */
static void check_record(json_t *events)
{
    json_t *ends = json_object(); /* flow_id -> number of flow.end */
    json_t *ev, *v;
    const char *key;
    long long last = -1;
    size_t i, configs = 0;

    json_array_foreach(events, i, ev) {
        const char *kind = h_str(ev, "event");
        long long seq = h_int(ev, "seq");
        h_expect_str(ev, "schema", "vigil.event/1");
        if (!is_rfc3339z(h_str(ev, "time")))
            fail_msg("time is not RFC 3339 UTC (...Z): %s", dump(ev));
        if (strcmp(kind, "audit.loss") == 0) {
            print_record(events);
            fail_msg("the record reports a loss in a test that loses nothing: %s", dump(ev));
        }
        if (seq <= last) {
            print_record(events);
            fail_msg("seq not strictly increasing: %lld after %lld (event %zu)", seq, last, i);
        }
        last = seq;
        if (strcmp(kind, "proxy.config") == 0) {
            configs++;
            if (h_get(ev, "config_version") == NULL)
                fail_msg("proxy.config without config_version: %s", dump(ev));
        } else if (strncmp(kind, "flow.", 5) == 0) {
            const char *fid = h_str(ev, "flow_id");
            json_t *cnt = json_object_get(ends, fid);
            long long n = cnt != NULL ? (long long)json_integer_value(cnt) : 0;
            if (strlen(fid) != H_FLOW_ID_LEN)
                fail_msg("flow_id \"%s\" is not %d characters: %s", fid, H_FLOW_ID_LEN, dump(ev));
            if (n > 0) { /* nothing of a flow after its flow.end */
                print_record(events);
                fail_msg("flow %s has an event after its flow.end: %s", fid, dump(ev));
            }
            if (strcmp(kind, "flow.end") == 0)
                n++;
            json_object_set_new(ends, fid, json_integer(n));
        }
    }
    if (configs == 0) {
        print_record(events);
        fail_msg("the record has no proxy.config event");
    }
    json_object_foreach(ends, key, v)
        if (json_integer_value(v) != 1) {
            print_record(events);
            fail_msg("flow %s has %lld flow.end events, want exactly 1", key, (long long)json_integer_value(v));
        }
    json_decref(ends);
}

json_t *h_record(struct h_env *e)
{
    char fmt[] = "json", search[] = "search";
    char *const argv[] = { AUDIT_QUERY_BIN, search, "--data-dir", e->data_dir, "--format", fmt, NULL };
    char *out = NULL, *err = NULL;
    int st;

    if (e->vigil.pid > 0)
        fail_msg("harness misuse: h_record() before h_stop_vigil()");
    st = h_run(e, "audit-query", argv, 30000, &out, &err);
    if (st != 0)
        fail_msg("audit-query search exited %d; stderr:\n%s", st, err != NULL ? err : "");
    assert_non_null(out);
    json_decref(e->events);
    e->events = json_array();
    for (char *line = out, *eol; *line != '\0'; line = eol) {
        json_error_t jerr;
        json_t *ev;
        eol = strchr(line, '\n');
        if (eol != NULL)
            *eol++ = '\0';
        else
            eol = line + strlen(line);
        if (*line == '\0')
            continue;
        ev = json_loads(line, 0, &jerr);
        if (!json_is_object(ev))
            fail_msg("audit-query printed a line that is not a JSON object (%s): %.300s", jerr.text, line);
        json_array_append_new(e->events, ev);
    }
    free(out);
    free(err);
    check_record(e->events);
    return e->events;
}

/* ---- data ---- */

void h_pattern(char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + i % 26);
}

void h_expect_pattern(const char *got, size_t got_len, size_t n)
{
    if (got_len != n)
        fail_msg("body is %zu bytes, want %zu", got_len, n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != (char)('a' + i % 26))
            fail_msg("body differs from the origin's pattern at byte %zu of %zu", i, n);
}

const char *h_random_file(struct h_env *e, const char *name, size_t n, char **data)
{
    static char ring[4][PATH_MAX];
    static unsigned next;
    char *path = ring[next++ % 4];
    char *buf = malloc(n + 1);
    uint64_t x = 0x9e3779b97f4a7c15ULL ^ n;

    assert_non_null(buf);
    for (size_t i = 0; i < n; i++) { /* xorshift64: reproducible, not compressible */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (char)(x >> 24);
    }
    buf[n] = '\0';
    if (snprintf(path, PATH_MAX, "%s/%s", e->dir, name) >= PATH_MAX)
        fail_msg("file name too long: %s", name);
    if (write_file(path, buf, n, 0644) == -1)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    if (data != NULL)
        *data = buf;
    else
        free(buf);
    return path;
}

int h_closed_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port;

    assert_true(fd != -1);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static unsigned long long origin_generated(struct h_env *e)
{
    char req[128];
    size_t len;
    int n = snprintf(req, sizeof(req), "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    char *reply = h_raw("127.0.0.1", e->http_port, req, (size_t)n, 5000, &len);
    const char *g = strstr(reply, "generated ");
    unsigned long long v = g ? strtoull(g + 10, NULL, 10) : 0;
    if (!g)
        fail_msg("origin /stats has no generated count: %s", reply);
    free(reply);
    return v;
}

unsigned long long h_origin_generated_settled(struct h_env *e)
{
    long long end = now_ms() + 20000;
    unsigned long long last = origin_generated(e);
    int same = 0;
    while (same < 10) {
        if (now_ms() > end)
            fail_msg("the origin never stalled: %llu bytes generated and counting", last);
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
        unsigned long long v = origin_generated(e);
        same = v == last ? same + 1 : 0;
        last = v;
    }
    return last;
}
