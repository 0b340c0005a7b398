/* proxy/worker.c - the server: listeners and worker threads.
 *
 * Each listen address gets one socket per worker, all bound with SO_REUSEPORT to the same
 * address (the port the first bind got, when the config says 0), so the kernel spreads
 * connections over the workers and no accept lock is shared. A worker is one thread with
 * its own event_base and evdns_base; a conn never leaves the worker that accepted it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/eventfd.h>

#include "audit/diag.h"
#include "proxy/proxy-int.h"

static int bind_listener(const struct sockaddr_storage *ss, socklen_t sl, char *err, size_t errlen)
{
    int one = 1;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) {
        snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, sl) == -1) {
        char a[80];
        proxy_format_sockaddr((const struct sockaddr *)ss, a, sizeof(a));
        snprintf(err, errlen, "bind %s: %s", a, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, 1024) == -1) {
        snprintf(err, errlen, "listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static unsigned worker_count(const struct proxy_config *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

struct proxy_server *proxy_server_new(const struct proxy_config *cfg, struct audit_ring *ring, char *err,
                                      size_t errlen)
{
    struct proxy_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    proxy_flow_init_once();
    s->cfg = cfg;
    s->ring = ring;
    s->nworkers = worker_count(cfg);
    s->nlisteners = cfg->nlisten;
    s->listeners = calloc(cfg->nlisten, sizeof(*s->listeners));
    s->workers = calloc(s->nworkers, sizeof(*s->workers));
    s->fds = calloc(s->nworkers, sizeof(*s->fds));
    if (!s->listeners || !s->workers || !s->fds) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (unsigned w = 0; w < s->nworkers; w++) {
        s->workers[w].stop_fd = -1;
        s->workers[w].reload_fd = -1;
        s->workers[w].done_fd = -1;
        pthread_mutex_init(&s->workers[w].done_mu, NULL);
        s->fds[w] = malloc(sizeof(int) * (cfg->nlisten ? cfg->nlisten : 1));
        if (!s->fds[w]) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        for (size_t l = 0; l < cfg->nlisten; l++)
            s->fds[w][l] = -1;
    }
    for (size_t l = 0; l < cfg->nlisten; l++) {
        struct proxy_listener *pl = &s->listeners[l];
        if (proxy_parse_hostport(cfg->listen[l], &pl->addr, &pl->addrlen) == -1) {
            snprintf(err, errlen, "listen %s: not IP:PORT", cfg->listen[l]);
            goto fail;
        }
        for (unsigned w = 0; w < s->nworkers; w++) {
            int fd = bind_listener(&pl->addr, pl->addrlen, err, errlen);
            if (fd == -1)
                goto fail;
            s->fds[w][l] = fd;
            if (w == 0) { /* port 0: every other worker binds the port the first got */
                getsockname(fd, (struct sockaddr *)&pl->addr, &pl->addrlen);
                proxy_format_sockaddr((struct sockaddr *)&pl->addr, pl->name, sizeof(pl->name));
            }
        }
        diag_log(DIAG_INFO, "proxy", "listening on %s (%u workers)", pl->name, s->nworkers);
    }
    struct sockaddr_storage *la = calloc(s->nlisteners ? s->nlisteners : 1, sizeof(*la));
    if (!la) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t l = 0; l < s->nlisteners; l++)
        la[l] = s->listeners[l].addr;
    int rc = proxy_ssrf_self_load(&s->self, la, s->nlisteners);
    free(la);
    if (rc == -1) {
        snprintf(err, errlen, "cannot list the proxy's own addresses");
        goto fail;
    }
    s->offload = proxy_offload_new(2);
    if (!s->offload) {
        snprintf(err, errlen, "cannot start the offload threads");
        goto fail;
    }
    return s;
fail:
    proxy_server_free(s);
    return NULL;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg);

static void resume_listeners_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;
    (void)fd;
    (void)what;
    if (w->draining)
        return;
    for (size_t l = 0; l < w->server->nlisteners; l++)
        evconnlistener_enable(w->listeners[l]);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct proxy_worker *w = arg;
    struct proxy_server *s = w->server;
    size_t idx = 0;
    for (size_t i = 0; i < s->nlisteners; i++)
        if (w->listeners[i] == l)
            idx = i;
    /* overflow policy "block": stop accepting while the ring has no room */
    if (audit_ring_policy(s->ring) == AUDIT_OVERFLOW_BLOCK && audit_ring_admit(s->ring) == -1) {
        for (size_t i = 0; i < s->nlisteners; i++)
            evconnlistener_disable(w->listeners[i]);
        struct timeval tv = {0, 20000};
        evtimer_add(w->drain_timer, &tv);
    }
    proxy_conn_accept(w, fd, sa, salen, s->listeners[idx].name);
}

static void drain_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;
    (void)fd;
    (void)what;
    if (!w->draining) {
        resume_listeners_cb(fd, what, arg);
        return;
    }
    if (w->nconns > 0)
        diag_log(DIAG_WARN, "proxy", "worker %u: drain deadline, ending %zu connections", w->index, w->nconns);
    while (w->conns)
        proxy_conn_abort(w->conns, "shutdown");
    event_base_loopexit(w->base, NULL);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;
    const struct proxy_config *cfg = w->server->cfg;
    (void)fd;
    (void)what;
    w->draining = 1;
    for (size_t l = 0; l < w->server->nlisteners; l++) {
        evconnlistener_free(w->listeners[l]);
        w->listeners[l] = NULL;
        w->server->fds[w->index][l] = -1; /* closed with the listener */
    }
    struct conn *c = w->conns, *next;
    for (; c; c = next) {
        next = c->next;
        proxy_conn_close_idle(c);
    }
    event_del(w->stop_ev);
    if (w->nconns == 0) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    struct timeval tv = {.tv_sec = cfg->timeouts.drain_ms / 1000, .tv_usec = (cfg->timeouts.drain_ms % 1000) * 1000};
    evtimer_add(w->drain_timer, &tv);
}

/* A reload handed this worker a new config: new flows use it from now on. */
static void reload_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_worker *w = arg;
    uint64_t n;
    (void)what;
    if (read(fd, &n, sizeof(n)) == -1 && errno != EAGAIN)
        return;
    struct proxy_config *c = atomic_exchange_explicit(&w->pending_cfg, NULL, memory_order_acq_rel);
    if (c) {
        proxy_config_unref(w->cfg);
        w->cfg = c;
    }
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proxy_offload_run_done(arg);
}

void proxy_server_reload(struct proxy_server *s, struct proxy_config *cfg)
{
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct proxy_worker *w = &s->workers[i];
        proxy_config_ref(cfg);
        struct proxy_config *old = atomic_exchange_explicit(&w->pending_cfg, cfg, memory_order_acq_rel);
        proxy_config_unref(old); /* a reload the worker had not picked up yet */
        uint64_t one = 1;
        if (write(w->reload_fd, &one, sizeof(one)) != sizeof(one))
            diag_log(DIAG_ERROR, "proxy", "cannot signal worker %u to reload: %s", i, strerror(errno));
    }
    proxy_config_unref(cfg);
}

static void *worker_main(void *arg)
{
    struct proxy_worker *w = arg;
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static int worker_init(struct proxy_server *s, unsigned i, char *err, size_t errlen)
{
    const struct proxy_config *cfg = s->cfg;
    struct proxy_worker *w = &s->workers[i];
    char v[16];

    w->server = s;
    w->index = i;
    w->base = event_base_new();
    if (!w->base) {
        snprintf(err, errlen, "event_base_new failed");
        return -1;
    }
    w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!w->dns) { /* no usable resolv.conf: /etc/hosts only */
        w->dns = evdns_base_new(w->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (!w->dns) {
            snprintf(err, errlen, "evdns_base_new failed");
            return -1;
        }
        evdns_base_load_hosts(w->dns, NULL);
    }
    snprintf(v, sizeof(v), "%u.%03u", cfg->dns_timeout_ms / 1000, cfg->dns_timeout_ms % 1000);
    evdns_base_set_option(w->dns, "timeout:", v);
    snprintf(v, sizeof(v), "%u", cfg->dns_attempts);
    evdns_base_set_option(w->dns, "attempts:", v);

    w->cfg = (struct proxy_config *)cfg;
    proxy_config_ref(w->cfg);
    w->reload_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->reload_fd == -1 || w->done_fd == -1) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        return -1;
    }
    w->reload_ev = event_new(w->base, w->reload_fd, EV_READ | EV_PERSIST, reload_cb, w);
    w->done_ev = event_new(w->base, w->done_fd, EV_READ | EV_PERSIST, done_cb, w);
    if (!w->reload_ev || !w->done_ev || event_add(w->reload_ev, NULL) == -1 || event_add(w->done_ev, NULL) == -1) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->listeners = calloc(s->nlisteners ? s->nlisteners : 1, sizeof(*w->listeners));
    /* the only cross-thread call: main writes the eventfd; bases need no locking */
    w->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->stop_fd == -1) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        return -1;
    }
    w->stop_ev = event_new(w->base, w->stop_fd, EV_READ, stop_cb, w);
    w->drain_timer = evtimer_new(w->base, drain_deadline_cb, w);
    if (!w->listeners || !w->stop_ev || !w->drain_timer || event_add(w->stop_ev, NULL) == -1) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t l = 0; l < s->nlisteners; l++) {
        w->listeners[l] = evconnlistener_new(w->base, accept_cb, w, LEV_OPT_CLOSE_ON_FREE, -1, s->fds[i][l]);
        if (!w->listeners[l]) {
            snprintf(err, errlen, "evconnlistener_new failed");
            return -1;
        }
        s->fds[i][l] = -2; /* owned by the listener now */
    }
    return 0;
}

int proxy_server_start(struct proxy_server *s, char *err, size_t errlen)
{
    for (unsigned i = 0; i < s->nworkers; i++)
        if (worker_init(s, i, err, errlen) == -1)
            return -1;
    for (unsigned i = 0; i < s->nworkers; i++) {
        int rc = pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
        if (rc != 0) {
            snprintf(err, errlen, "pthread_create: %s", strerror(rc));
            s->nworkers = i; /* stop joins only what started */
            proxy_server_stop(s);
            return -1;
        }
    }
    s->started = 1;
    return 0;
}

void proxy_server_stop(struct proxy_server *s)
{
    if (!s->started)
        return;
    for (unsigned i = 0; i < s->nworkers; i++) {
        uint64_t one = 1;
        if (write(s->workers[i].stop_fd, &one, sizeof(one)) != sizeof(one))
            diag_log(DIAG_ERROR, "proxy", "cannot signal worker %u to stop: %s", i, strerror(errno));
    }
    for (unsigned i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i].thread, NULL);
    s->started = 0;
}

void proxy_server_free(struct proxy_server *s)
{
    if (!s)
        return;
    proxy_server_stop(s);
    /* the workers are gone: finish the jobs still queued and run their completions here */
    proxy_offload_free(s->offload);
    s->offload = NULL;
    for (unsigned i = 0; s->workers && i < s->nworkers; i++)
        if (s->workers[i].done_fd >= 0)
            proxy_offload_run_done(&s->workers[i]);
    for (unsigned i = 0; s->workers && i < s->nworkers; i++) {
        struct proxy_worker *w = &s->workers[i];
        while (w->conns)
            proxy_conn_abort(w->conns, "shutdown");
        for (size_t l = 0; w->listeners && l < s->nlisteners; l++)
            if (w->listeners[l])
                evconnlistener_free(w->listeners[l]);
        free(w->listeners);
        if (w->stop_ev)
            event_free(w->stop_ev);
        if (w->stop_fd >= 0)
            close(w->stop_fd);
        if (w->reload_ev)
            event_free(w->reload_ev);
        if (w->done_ev)
            event_free(w->done_ev);
        if (w->reload_fd >= 0)
            close(w->reload_fd);
        if (w->done_fd >= 0)
            close(w->done_fd);
        proxy_config_unref(atomic_exchange(&w->pending_cfg, NULL));
        proxy_config_unref(w->cfg);
        pthread_mutex_destroy(&w->done_mu);
        if (w->drain_timer)
            event_free(w->drain_timer);
        if (w->dns)
            evdns_base_free(w->dns, 1);
        if (w->base)
            event_base_free(w->base);
    }
    proxy_ssrf_self_fini(&s->self);
    for (unsigned i = 0; s->fds && i < s->nworkers; i++) {
        for (size_t l = 0; s->fds[i] && l < s->nlisteners; l++)
            if (s->fds[i][l] >= 0)
                close(s->fds[i][l]);
        free(s->fds[i]);
    }
    free(s->fds);
    free(s->workers);
    free(s->listeners);
    free(s);
}
