/* proxy/tunnel.c - CONNECT tunnels: after the 200, bytes both ways with back-pressure.
 *
 * The relay works on the two sockets directly, not through bufferevents: a readable side is
 * read (at most TUNNEL_READ bytes) into the other side's pending buffer, which is written at
 * once. Only when that write is partial does the relay wait for the peer to become writable,
 * and meanwhile it stops reading the first side. So the steady state costs one read and one
 * write per burst and no epoll change, and a slow reader costs at most TUNNEL_READ bytes of
 * buffer per direction.
 *
 * An EOF from one side is passed on as a half-close (shutdown SHUT_WR) once its bytes are
 * delivered; the flow ends when both sides have closed, on an error, or after
 * idle_tunnel_ms without a byte either way. The sockets stay owned by the conn's
 * bufferevents (disabled while the tunnel runs), which close them when the conn is freed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "proxy/proxy-int.h"

#define TUNNEL_READ (64 * 1024)

struct tunnel_side {
    struct conn *c;
    int index; /* 0: client, 1: upstream */
    evutil_socket_t fd;
    struct event *rd, *wr;
    struct evbuffer *out; /* bytes waiting to be written to this side */
    int eof;              /* this side sent its EOF */
    int shut;             /* SHUT_WR was passed on to this side */
};

struct tunnel {
    struct tunnel_side side[2];
    struct event *idle;
    int64_t last_us; /* CLOCK_MONOTONIC of the last byte either way */
    int first_eof;   /* the side that closed first: 0 client, 1 upstream, -1 none yet */
};

void tunnel_free(struct conn *c)
{
    struct tunnel *t = c->tunnel;
    if (!t)
        return;
    proxy_metrics_tunnel(c->w, -1);
    for (int i = 0; i < 2; i++) {
        if (t->side[i].rd)
            event_free(t->side[i].rd);
        if (t->side[i].wr)
            event_free(t->side[i].wr);
        if (t->side[i].out)
            evbuffer_free(t->side[i].out);
    }
    if (t->idle)
        event_free(t->idle);
    free(t);
    c->tunnel = NULL;
}

static void tunnel_end(struct conn *c, const char *reason)
{
    tunnel_free(c);
    conn_flow_end(c, reason);
    conn_free(c);
}

static const char *side_error(const struct tunnel_side *s)
{
    return s->index == 0 ? "client_error" : "upstream_error";
}

/* Both sides closed and everything delivered: the flow is over. */
static int maybe_finish(struct conn *c)
{
    struct tunnel *t = c->tunnel;
    if (t->side[0].eof && t->side[1].eof && evbuffer_get_length(t->side[0].out) == 0 &&
        evbuffer_get_length(t->side[1].out) == 0) {
        tunnel_end(c, t->first_eof == 0 ? "client_closed" : "upstream_closed");
        return 1;
    }
    return 0;
}

/* Writes what is pending toward <s>. 0, or -1 after ending the tunnel on a write error. */
static int flush_side(struct tunnel_side *s)
{
    struct tunnel *t = s->c->tunnel;
    struct tunnel_side *from = &t->side[!s->index];
    while (evbuffer_get_length(s->out) > 0) {
        int n = evbuffer_write(s->out, s->fd);
        if (n > 0)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            break;
        tunnel_end(s->c, side_error(s));
        return -1;
    }
    if (evbuffer_get_length(s->out) > 0) {
        /* the peer is slow: stop reading the other side until this drains */
        event_del(from->rd);
        event_add(s->wr, NULL);
        return 0;
    }
    event_del(s->wr);
    if (from->eof) {
        if (!s->shut) {
            shutdown(s->fd, SHUT_WR);
            s->shut = 1;
        }
    } else {
        event_add(from->rd, NULL);
    }
    return 0;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tunnel_side *s = arg;
    struct conn *c = s->c;
    struct tunnel *t = c->tunnel;
    struct tunnel_side *to = &t->side[!s->index];
    (void)what;

    conn_hold(c);
    /* The fast path: one read, one write, no buffer in between. Only what the peer does not
     * take at once is kept (and reading this side stops until it drains). */
    char buf[TUNNEL_READ];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
        if (s->index == 0)
            c->flow.bytes_up += (uint64_t)n;
        else
            c->flow.bytes_down += (uint64_t)n;
        t->last_us = proxy_now_mono_us();
        ssize_t w = 0;
        if (evbuffer_get_length(to->out) == 0) {
            w = send(to->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                tunnel_end(c, side_error(to));
                conn_release(c);
                return;
            }
            if (w < 0)
                w = 0;
        }
        if (w < n) {
            evbuffer_add(to->out, buf + w, (size_t)(n - w));
            flush_side(to);
        }
    } else if (n == 0) {
        s->eof = 1;
        if (t->first_eof < 0)
            t->first_eof = s->index;
        event_del(s->rd);
        if (flush_side(to) == 0)
            maybe_finish(c);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        tunnel_end(c, side_error(s));
    }
    conn_release(c);
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tunnel_side *s = arg;
    struct conn *c = s->c;
    (void)fd;
    (void)what;
    conn_hold(c);
    if (flush_side(s) == 0 && s->c->tunnel)
        maybe_finish(c);
    conn_release(c);
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct tunnel *t = c->tunnel;
    unsigned idle_ms = c->cfg->timeouts.idle_tunnel_ms;
    int64_t quiet_us = proxy_now_mono_us() - t->last_us;
    (void)fd;
    (void)what;
    if (quiet_us >= (int64_t)idle_ms * 1000) {
        conn_hold(c);
        tunnel_end(c, "idle_timeout");
        conn_release(c);
        return;
    }
    int64_t left_us = (int64_t)idle_ms * 1000 - quiet_us;
    struct timeval tv = {.tv_sec = left_us / 1000000, .tv_usec = left_us % 1000000};
    evtimer_add(t->idle, &tv);
}

void tunnel_start(struct conn *c)
{
    struct event_base *base = c->w->base;
    unsigned idle_ms = c->cfg->timeouts.idle_tunnel_ms;
    struct tunnel *t = calloc(1, sizeof(*t));
    struct flow *f = &c->flow;

    evtimer_del(c->timer);
    if (!t) {
        conn_send_error(c, 503, "out_of_memory", "no memory for the tunnel");
        return;
    }
    c->tunnel = t;
    proxy_metrics_tunnel(c->w, 1);
    t->first_eof = -1;
    t->last_us = proxy_now_mono_us();
    struct bufferevent *bevs[2] = {c->bev, c->up->bev};
    for (int i = 0; i < 2; i++) {
        struct tunnel_side *s = &t->side[i];
        s->c = c;
        s->index = i;
        s->fd = bufferevent_getfd(bevs[i]);
        bufferevent_disable(bevs[i], EV_READ | EV_WRITE);
        s->rd = event_new(base, s->fd, EV_READ | EV_PERSIST, read_cb, s);
        s->wr = event_new(base, s->fd, EV_WRITE | EV_PERSIST, write_cb, s);
        s->out = evbuffer_new();
        if (!s->rd || !s->wr || !s->out) {
            tunnel_free(c);
            conn_send_error(c, 503, "out_of_memory", "no memory for the tunnel");
            return;
        }
    }
    t->idle = evtimer_new(base, idle_cb, c);
    if (!t->idle) {
        tunnel_free(c);
        conn_send_error(c, 503, "out_of_memory", "no memory for the tunnel");
        return;
    }
    c->state = CONN_TUNNEL;

    /* the 200 may still be on its way to the client, and the ClientHello that was peeked is
     * in the client's input: both move to the relay's buffers, in order */
    evbuffer_add_buffer(t->side[0].out, bufferevent_get_output(c->bev));
    struct evbuffer *cin = bufferevent_get_input(c->bev);
    f->bytes_up += evbuffer_get_length(cin);
    evbuffer_add_buffer(t->side[1].out, cin);

    struct timeval tv = {.tv_sec = idle_ms / 1000, .tv_usec = (idle_ms % 1000) * 1000};
    evtimer_add(t->idle, &tv);
    conn_hold(c);
    event_add(t->side[0].rd, NULL);
    event_add(t->side[1].rd, NULL);
    if (flush_side(&t->side[0]) == 0 && c->tunnel)
        flush_side(&t->side[1]);
    conn_release(c);
}
