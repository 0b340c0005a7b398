/* proxy/tunnel.c - CONNECT tunnels: after the 200, bytes both ways with back-pressure.
 *
 * A side's bytes move to the other side's output buffer; when that holds PROXY_HIGH_WATER
 * bytes, reading from the first side stops until the output drains to half, so a slow
 * reader costs at most about PROXY_HIGH_WATER + PROXY_READ_HIGH bytes per direction. An
 * EOF from one side is passed on as a half-close (shutdown SHUT_WR) once its bytes are
 * delivered; the flow ends when both sides have closed, on an error, or after
 * idle_tunnel_ms without a byte either way. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>

#include "proxy/proxy-int.h"

static void tunnel_read_cb(struct bufferevent *bev, void *arg);
static void tunnel_write_cb(struct bufferevent *bev, void *arg);
static void tunnel_event_cb(struct bufferevent *bev, short what, void *arg);

struct side {
    struct bufferevent *self, *peer;
    int is_client;
};

static struct side side_of(struct conn *c, struct bufferevent *bev)
{
    struct side s;
    s.is_client = bev == c->bev;
    s.self = bev;
    s.peer = s.is_client ? c->up->bev : c->bev;
    return s;
}

static int *eof_flag(struct conn *c, int is_client)
{
    return is_client ? &c->tunnel_client_eof : &c->tunnel_up_eof;
}

static int *paused_flag(struct conn *c, int is_client)
{
    /* reading from the client pauses when the upstream is full, and the reverse */
    return is_client ? &c->client_paused : &c->up_paused;
}

static void tunnel_end(struct conn *c, const char *reason)
{
    conn_flow_end(c, reason);
    conn_free(c);
}

/* Both sides closed and everything delivered: the flow is over. */
static void maybe_finish(struct conn *c)
{
    if (c->tunnel_client_eof && c->tunnel_up_eof && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 &&
        evbuffer_get_length(bufferevent_get_output(c->up->bev)) == 0)
        tunnel_end(c, c->tunnel_client_first ? "client_closed" : "upstream_closed");
}

/* Passes an EOF on to <peer> once its output is empty. */
static void propagate_eof(struct bufferevent *peer)
{
    if (evbuffer_get_length(bufferevent_get_output(peer)) == 0)
        shutdown(bufferevent_getfd(peer), SHUT_WR);
}

void tunnel_start(struct conn *c)
{
    const struct proxy_config *cfg = c->w->server->cfg;
    struct flow *f = &c->flow;
    struct evbuffer *cin = bufferevent_get_input(c->bev);

    c->state = CONN_TUNNEL;
    evtimer_del(c->timer);
    f->status = 200;
    f->resp_started = 1;
    c->tunnel_last_us = proxy_now_mono_us();
    evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 200 Connection established\r\n\r\n", 39);

    /* bytes the client sent right behind its CONNECT head (a ClientHello) go first */
    f->bytes_up += evbuffer_get_length(cin);
    evbuffer_add_buffer(bufferevent_get_output(c->up->bev), cin);

    struct timeval tv = {.tv_sec = cfg->timeouts.idle_tunnel_ms / 1000,
                         .tv_usec = (cfg->timeouts.idle_tunnel_ms % 1000) * 1000};
    bufferevent_setcb(c->bev, tunnel_read_cb, tunnel_write_cb, tunnel_event_cb, c);
    bufferevent_setcb(c->up->bev, tunnel_read_cb, tunnel_write_cb, tunnel_event_cb, c);
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    bufferevent_set_timeouts(c->up->bev, &tv, NULL);
    bufferevent_setwatermark(c->bev, EV_READ, 0, PROXY_READ_HIGH);
    bufferevent_setwatermark(c->up->bev, EV_READ, 0, PROXY_READ_HIGH);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    bufferevent_enable(c->up->bev, EV_READ | EV_WRITE);
}

static void tunnel_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct side s = side_of(c, bev);
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(s.peer);
    size_t n = evbuffer_get_length(in);

    if (s.is_client)
        c->flow.bytes_up += n;
    else
        c->flow.bytes_down += n;
    evbuffer_add_buffer(out, in);
    c->tunnel_last_us = proxy_now_mono_us();
    if (evbuffer_get_length(out) >= PROXY_HIGH_WATER) {
        *paused_flag(c, s.is_client) = 1;
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(s.peer, EV_WRITE, PROXY_HIGH_WATER / 2, 0);
    }
}

static void tunnel_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct side s = side_of(c, bev);
    /* <bev> drained: the side feeding it may read again */
    int *paused = paused_flag(c, !s.is_client);
    if (*paused) {
        *paused = 0;
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_enable(s.peer, EV_READ);
    }
    if (*eof_flag(c, !s.is_client) && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        shutdown(bufferevent_getfd(bev), SHUT_WR);
        conn_hold(c);
        maybe_finish(c);
        conn_release(c);
    }
}

static void tunnel_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    struct side s = side_of(c, bev);
    conn_hold(c);
    if (what & BEV_EVENT_TIMEOUT) {
        const struct proxy_config *cfg = c->w->server->cfg;
        int64_t idle_us = proxy_now_mono_us() - c->tunnel_last_us;
        if (idle_us < (int64_t)cfg->timeouts.idle_tunnel_ms * 1000) {
            bufferevent_enable(bev, EV_READ); /* the other direction was busy */
        } else {
            tunnel_end(c, "idle_timeout");
        }
    } else if (what & BEV_EVENT_ERROR) {
        tunnel_end(c, s.is_client ? "client_error" : "upstream_error");
    } else if (what & BEV_EVENT_EOF) {
        int *eof = eof_flag(c, s.is_client);
        if (!*eof) {
            *eof = 1;
            if (!*eof_flag(c, !s.is_client))
                c->tunnel_client_first = s.is_client;
            bufferevent_disable(bev, EV_READ);
            bufferevent_setwatermark(s.peer, EV_WRITE, 0, 0);
            propagate_eof(s.peer);
        }
        maybe_finish(c);
    }
    conn_release(c);
}
