/* tools/bench/loadgen.c - connection-count load for a forward proxy: idle tunnels, slowloris, soak.
 *
 *   loadgen -x PROXY_HOST:PORT MODE [options]        (built on the fly by the tools/bench scripts:
 *                                                      cc -O2 -o loadgen loadgen.c)
 *   modes:
 *     idle       open -n N CONNECT tunnels to its own origin, check each end to end (PING/PONG
 *                through the tunnel), print "established N", hold them -d SECS (0: until
 *                SIGTERM), then print "held N closed K" (K: tunnels the proxy closed meanwhile)
 *     slowloris  -n N clients each send a request line, then one header byte every -i MS; one
 *                normal client does sequential GETs through the proxy meanwhile. Prints the
 *                normal client's latency (p50/p99/max ms, requests, errors, 503s) and, per slow client,
 *                when the proxy cut it (median and max seconds after its first byte, how many
 *                were cut, and with which status)
 *     soak       -c C keep-alive clients doing GETs through the proxy (a new connection every -r
 *                requests; -R REQ_PER_SEC in all, paced, 0: as fast as answered) and -t T clients
 *                opening and closing tunnels in a loop, for -d SECS;
 *                prints a progress line every 10 s ("t=SECS requests=R tunnels=T errors=E 503=F") and
 *                totals at the end
 *
 * Its origin listens on 127.0.0.1 (port printed: "origin 127.0.0.1:PORT"): a tunnel's "PING\n"
 * gets "PONG\n"; an HTTP request gets "200 OK" with a 2-byte body, keep-alive. One thread, epoll,
 * everything non-blocking; it raises its own RLIMIT_NOFILE to the hard limit. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum kind { K_LISTEN = 0, K_ORIGIN, K_TUNNEL, K_SLOW, K_NORMAL, K_SOAK, K_CHURN };
enum st { S_CONNECTING = 0, S_HEAD, S_PING, S_IDLE, S_REQ, S_DONE };

struct conn {
    int fd;
    enum kind kind;
    enum st st;
    char in[4096];
    size_t len;
    double t0;     /* first byte sent (slow), request sent (normal, soak) */
    double due;    /* soak: when the next request may go (pacing); 0: waiting for a response */
    unsigned sent; /* slow: header bytes sent; soak: requests on this connection */
    int slot;      /* index for slow clients */
};

static int ep;
static struct sockaddr_in proxy, origin;
static char origin_hostport[64];
static volatile sig_atomic_t stop;
static long established, closed_idle, requests, errors, refused, tunnels_done;
static double *latency;
static size_t nlat, caplat;
static double *cut_at;
static double soak_gap; /* seconds between two requests of one soak client */
static struct conn *paced[1024];
static size_t npaced;
static int *cut_status;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static struct conn *conn_new(int fd, enum kind k, enum st s, uint32_t events)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        die("calloc");
    c->fd = fd;
    c->kind = k;
    c->st = s;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1)
        die("epoll_ctl");
    return c;
}

static void conn_free(struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

static void want(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static struct conn *dial(enum kind k)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd == -1)
        return NULL;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&proxy, sizeof(proxy)) == -1 && errno != EINPROGRESS) {
        close(fd);
        return NULL;
    }
    return conn_new(fd, k, S_CONNECTING, EPOLLOUT);
}

static int send_all(struct conn *c, const char *s, size_t n)
{
    return send(c->fd, s, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* Reads what is there; 0 when the peer closed or failed, 1 otherwise. */
static int fill(struct conn *c)
{
    for (;;) {
        if (c->len + 1 >= sizeof(c->in))
            c->len = 0; /* bodies we do not keep */
        ssize_t r = recv(c->fd, c->in + c->len, sizeof(c->in) - 1 - c->len, 0);
        if (r > 0) {
            c->len += (size_t)r;
            c->in[c->len] = '\0';
            continue;
        }
        if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        return 0;
    }
}

static void add_latency(double ms)
{
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 4096;
        latency = realloc(latency, caplat * sizeof(*latency));
        if (!latency)
            die("realloc");
    }
    latency[nlat++] = ms;
}

static void send_get(struct conn *c)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", origin_hostport, origin_hostport);
    c->t0 = now();
    c->len = 0;
    c->st = S_REQ;
    if (send_all(c, req, (size_t)n) == -1)
        errors++;
}

static void send_connect(struct conn *c)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", origin_hostport, origin_hostport);
    c->st = S_HEAD;
    if (send_all(c, req, (size_t)n) == -1)
        errors++;
}

/* A complete "HTTP/1.1 200 ..." response with a Content-Length body in c->in? Returns its status,
 * 0 when incomplete. */
static int response_done(struct conn *c)
{
    char *eoh = strstr(c->in, "\r\n\r\n");
    if (!eoh)
        return 0;
    size_t body = 0, head = (size_t)(eoh + 4 - c->in);
    char *cl = strcasestr(c->in, "\r\ncontent-length:");
    if (cl && cl < eoh)
        body = strtoul(cl + 17, NULL, 10);
    if (c->len < head + body)
        return 0;
    int status = 0;
    sscanf(c->in, "HTTP/%*d.%*d %d", &status);
    return status ? status : -1;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void origin_event(struct conn *c)
{
    if (!fill(c)) {
        conn_free(c);
        return;
    }
    if (strstr(c->in, "PING\n")) {
        send_all(c, "PONG\n", 5);
        c->len = 0;
        return;
    }
    char *p;
    while ((p = strstr(c->in, "\r\n\r\n")) != NULL) {
        static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
        send_all(c, resp, sizeof(resp) - 1);
        size_t used = (size_t)(p + 4 - c->in);
        memmove(c->in, p + 4, c->len - used + 1);
        c->len -= used;
    }
}

int main(int argc, char **argv)
{
    const char *mode = NULL, *px = NULL;
    long n = 10000, conc = 16, tun = 4, reuse = 100;
    double rate = 0; /* soak: requests per second in all, 0 = as fast as answered */
    double dur = 0, interval_ms = 2000;
    int opt;
    while ((opt = getopt(argc, argv, "x:n:d:i:c:t:r:R:")) != -1) {
        switch (opt) {
        case 'x': px = optarg; break;
        case 'n': n = atol(optarg); break;
        case 'd': dur = atof(optarg); break;
        case 'i': interval_ms = atof(optarg); break;
        case 'c': conc = atol(optarg); break;
        case 't': tun = atol(optarg); break;
        case 'r': reuse = atol(optarg); break;
        case 'R': rate = atof(optarg); break;
        default: goto usage;
        }
    }
    if (optind < argc)
        mode = argv[optind];
    if (!px || !mode || (strcmp(mode, "idle") && strcmp(mode, "slowloris") && strcmp(mode, "soak"))) {
    usage:
        fprintf(stderr, "usage: loadgen -x HOST:PORT idle [-n N] [-d SECS] | slowloris [-n N] [-i MS] [-d SECS]"
                        " | soak [-c C] [-t T] [-r R] [-R REQ_PER_SEC] -d SECS\n");
        return 2;
    }
    char host[64];
    const char *colon = strrchr(px, ':');
    if (!colon || (size_t)(colon - px) >= sizeof(host))
        goto usage;
    memcpy(host, px, (size_t)(colon - px));
    host[colon - px] = '\0';
    proxy.sin_family = AF_INET;
    proxy.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &proxy.sin_addr) != 1)
        goto usage;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep == -1)
        die("epoll_create1");

    /* the origin */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    socklen_t sl = sizeof(origin);
    origin.sin_family = AF_INET;
    origin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&origin, sizeof(origin)) == -1 || listen(lfd, 4096) == -1 ||
        getsockname(lfd, (struct sockaddr *)&origin, &sl) == -1)
        die("origin");
    snprintf(origin_hostport, sizeof(origin_hostport), "127.0.0.1:%u", ntohs(origin.sin_port));
    printf("origin %s\n", origin_hostport);
    fflush(stdout);
    conn_new(lfd, K_LISTEN, S_IDLE, EPOLLIN);

    int idle = !strcmp(mode, "idle"), slow = !strcmp(mode, "slowloris"), soak = !strcmp(mode, "soak");
    long to_open = idle || slow ? n : 0, opened = 0, inflight = 0;
    struct conn **slows = NULL;
    struct conn *normal = NULL;
    if (slow) {
        slows = calloc((size_t)n, sizeof(*slows));
        cut_at = calloc((size_t)n, sizeof(*cut_at));
        cut_status = calloc((size_t)n, sizeof(*cut_status));
        if (!slows || !cut_at || !cut_status)
            die("calloc");
    }
    if (soak) {
        for (long i = 0; i < conc; i++)
            dial(K_SOAK);
        soak_gap = rate > 0 ? (double)conc / rate : 0;
        for (long i = 0; i < tun; i++)
            dial(K_CHURN);
    }
    double start = now(), next_tick = start + (slow ? interval_ms / 1000 : 10), end = dur > 0 ? start + dur : 0;
    double all_up = 0;
    int announced = 0;
    struct epoll_event evs[512];

    while (!stop) {
        /* open more, 256 connection set-ups in flight at most */
        while (opened < to_open && inflight < 256) {
            struct conn *c = dial(idle ? K_TUNNEL : K_SLOW);
            if (!c) {
                errors++;
                break;
            }
            if (slow) {
                c->slot = (int)opened;
                slows[opened] = c;
            }
            opened++;
            inflight++;
        }
        if (idle && !announced && opened == to_open && inflight == 0) {
            printf("established %ld errors %ld in %.1fs\n", established, errors, now() - start);
            fflush(stdout);
            announced = 1;
            all_up = now();
            if (dur > 0)
                end = all_up + dur;
        }
        if (slow && !normal && opened == to_open && inflight == 0) {
            normal = dial(K_NORMAL);
            if (dur > 0)
                end = now() + dur;
            printf("slow clients connected: %ld; normal client starts\n", opened);
            fflush(stdout);
        }
        if (end > 0 && now() >= end && (announced || !idle))
            break;
        int k = epoll_wait(ep, evs, 512, npaced ? 1 : 100);
        double t = now();
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (c->kind == K_LISTEN) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1)
                    conn_new(fd, K_ORIGIN, S_IDLE, EPOLLIN);
                continue;
            }
            if (c->kind == K_ORIGIN) {
                origin_event(c);
                continue;
            }
            if (c->st == S_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || (e & (EPOLLERR | EPOLLHUP))) {
                    errors++;
                    if (c->kind == K_TUNNEL || c->kind == K_SLOW)
                        inflight--;
                    if (c->kind == K_SLOW)
                        slows[c->slot] = NULL;
                    conn_free(c);
                    continue;
                }
                want(c, EPOLLIN);
                if (c->kind == K_TUNNEL || c->kind == K_CHURN) {
                    send_connect(c);
                } else if (c->kind == K_SLOW) {
                    char line[256];
                    int ln = snprintf(line, sizeof(line), "GET http://%s/ HTTP/1.1\r\n", origin_hostport);
                    send_all(c, line, (size_t)ln);
                    c->t0 = t;
                    c->st = S_HEAD;
                    inflight--;
                } else {
                    send_get(c);
                }
                continue;
            }
            if (!fill(c)) { /* the proxy closed */
                if (c->kind == K_SLOW) {
                    cut_at[c->slot] = t - c->t0;
                    sscanf(c->in, "HTTP/%*d.%*d %d", &cut_status[c->slot]);
                    if (!cut_status[c->slot])
                        cut_status[c->slot] = -1;
                    slows[c->slot] = NULL;
                } else if (c->kind == K_TUNNEL) {
                    if (c->st == S_IDLE)
                        closed_idle++;
                    else {
                        errors++;
                        inflight--;
                    }
                } else if (c->kind == K_NORMAL || c->kind == K_SOAK) {
                    if (c->st == S_REQ && c->len > 0) /* closed in the middle of a response */
                        errors++;
                    for (size_t j = 0; j < npaced; j++)
                        if (paced[j] == c)
                            paced[j] = paced[--npaced];
                    struct conn *r = dial(c->kind);
                    if (c->kind == K_NORMAL)
                        normal = r;
                } else if (c->kind == K_CHURN) {
                    errors++;
                    dial(K_CHURN);
                }
                conn_free(c);
                continue;
            }
            if (c->kind == K_TUNNEL || c->kind == K_CHURN) {
                if (c->st == S_HEAD && strstr(c->in, "\r\n\r\n")) {
                    if (strncmp(c->in, "HTTP/1.1 200", 12) && strncmp(c->in, "HTTP/1.0 200", 12)) {
                        enum kind kd = c->kind;
                        errors++;
                        if (kd == K_TUNNEL)
                            inflight--;
                        conn_free(c);
                        if (kd == K_CHURN)
                            dial(K_CHURN);
                        continue;
                    }
                    c->len = 0;
                    c->st = S_PING;
                    send_all(c, "PING\n", 5);
                } else if (c->st == S_PING && strstr(c->in, "PONG\n")) {
                    if (c->kind == K_TUNNEL) {
                        c->st = S_IDLE;
                        established++;
                        inflight--;
                    } else {
                        tunnels_done++;
                        conn_free(c);
                        dial(K_CHURN);
                    }
                }
                continue;
            }
            if (c->kind == K_NORMAL || c->kind == K_SOAK) {
                int st = response_done(c);
                if (!st)
                    continue;
                if (st == 503) {
                    refused++; /* Vigil's fail_closed: the audit record cannot keep up */
                } else if (st != 200) {
                    errors++;
                    if (errors <= 3)
                        fprintf(stderr, "loadgen: status %d: %.120s\n", st, c->in);
                }
                requests++;
                if (c->kind == K_NORMAL)
                    add_latency((t - c->t0) * 1000);
                if (c->kind == K_SOAK && ++c->sent >= (unsigned)reuse) {
                    conn_free(c);
                    dial(K_SOAK);
                    continue;
                }
                if (c->kind == K_SOAK && soak_gap > 0 && c->t0 + soak_gap > t && npaced < 1024) {
                    c->due = c->t0 + soak_gap; /* paced: sent from the loop below */
                    c->st = S_IDLE;
                    paced[npaced++] = c;
                    continue;
                }
                send_get(c);
            }
        }
        if (slow && t >= next_tick) { /* one more header byte from every slow client still connected */
            next_tick = t + interval_ms / 1000;
            for (long i = 0; i < opened; i++)
                if (slows[i] && slows[i]->st == S_HEAD) {
                    char b = "X-Slow: abcdefgh\r\n"[slows[i]->sent++ % 18];
                    send(slows[i]->fd, &b, 1, MSG_NOSIGNAL);
                }
        }
        for (size_t i = 0; i < npaced;) {
            if (paced[i]->due <= t) {
                send_get(paced[i]);
                paced[i] = paced[--npaced];
            } else {
                i++;
            }
        }
        if (soak && t >= next_tick) {
            next_tick += 10;
            printf("t=%.0f requests=%ld tunnels=%ld errors=%ld 503=%ld\n", t - start, requests, tunnels_done, errors,
                   refused);
            fflush(stdout);
        }
    }

    if (idle) {
        printf("held %ld closed %ld errors %ld for %.1fs\n", established, closed_idle, errors,
               all_up > 0 ? now() - all_up : 0.0);
    } else if (slow) {
        double *cuts = calloc((size_t)n, sizeof(*cuts));
        long ncut = 0, s408 = 0, other = 0, still = 0;
        for (long i = 0; i < opened; i++) {
            if (cut_at[i] > 0) {
                cuts[ncut++] = cut_at[i];
                if (cut_status[i] == 408)
                    s408++;
                else
                    other++;
            } else if (slows[i]) {
                still++;
            }
        }
        qsort(cuts, (size_t)ncut, sizeof(*cuts), cmp_d);
        qsort(latency, nlat, sizeof(*latency), cmp_d);
        printf("slow clients %ld: cut %ld (408: %ld, other/none: %ld), still open %ld; cut after median %.1fs max "
               "%.1fs\n",
               opened, ncut, s408, other, still, ncut ? cuts[ncut / 2] : 0.0, ncut ? cuts[ncut - 1] : 0.0);
        printf("normal client: %zu requests, errors %ld, 503 %ld, latency ms p50 %.2f p99 %.2f max %.2f\n", nlat,
               errors, refused,
               nlat ? latency[nlat / 2] : 0.0, nlat ? latency[(size_t)((double)nlat * 0.99)] : 0.0,
               nlat ? latency[nlat - 1] : 0.0);
        free(cuts);
    } else {
        printf("total: %.0fs requests=%ld (%.0f/s) tunnels=%ld errors=%ld 503=%ld\n", now() - start, requests,
               (double)requests / (now() - start), tunnels_done, errors, refused);
    }
    fflush(stdout);
    return 0;
}
