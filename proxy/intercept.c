/* proxy/intercept.c - TLS interception of a CONNECT tunnel.
 *
 *   CONNECT ─► 200 ─► ClientHello peeked (SNI) ─► pre_dns ─► resolve ─► pre_request decided
 *     ─► TCP to the upstream ─► TLS to the upstream, verified (chain + the SNI's name)
 *     ─► leaf: the mint's cache, or minted on an offload thread ─► pre_request recorded
 *        (with the upstream certificate and the leaf)
 *     ─► TLS with the client, showing the leaf (ALPN http/1.1 only)
 *     ─► every request inside is a flow of its own (pre_request, post_response, flow.end),
 *        naming the tunnel as its parent; the tunnel's flow.end comes when the client leaves.
 *
 * A refusal after the 200 (policy, a certificate that does not verify, a failed mint) is
 * recorded and answered with a TLS alert, never a silent pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "audit/diag.h"
#include "proxy/metrics.h"
#include "proxy/mint.h"
#include "proxy/proxy-int.h"
#include "proxy/tls.h"

static void client_tls_start(struct conn *c, struct proxy_leaf *leaf, int cache_hit);

/* Puts TLS (<ssl>, in <mode>) on the connection *<bevp> holds, replacing *<bevp>. When nothing
 * waits in that bufferevent's buffers (the ClientHello was peeked in the socket, the 200 has
 * gone out), the new one works on the socket itself; otherwise it is a filter over the old
 * one, which owns the bytes buffered there. NULL on failure (*<bevp> unchanged). */
static struct bufferevent *tls_on_socket(struct conn *c, struct bufferevent **bevp, SSL *ssl,
                                         enum bufferevent_ssl_state mode)
{
    struct bufferevent *old = *bevp, *b;
    evutil_socket_t fd = bufferevent_getfd(old);
    if (fd >= 0 && evbuffer_get_length(bufferevent_get_input(old)) == 0 &&
        evbuffer_get_length(bufferevent_get_output(old)) == 0) {
        b = bufferevent_openssl_socket_new(c->w->base, fd, ssl, mode, BEV_OPT_CLOSE_ON_FREE);
        if (!b)
            return NULL;
        bufferevent_setfd(old, -1); /* the socket is the new bufferevent's now */
        bufferevent_free(old);
    } else {
        b = bufferevent_openssl_filter_new(c->w->base, old, ssl, mode, BEV_OPT_CLOSE_ON_FREE);
        if (!b)
            return NULL;
        /* bytes already buffered below (a ClientHello sent right behind the CONNECT) */
        bufferevent_trigger(old, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
    }
    *bevp = b;
    return b;
}

/* ---- a refusal after the 200: a TLS alert ---- */

static void alert_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    (void)what;
    conn_free(c);
}

static void alert_read_cb(struct bufferevent *bev, void *arg)
{
    evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
    (void)arg;
}

void intercept_alert(struct conn *c)
{
    SSL *ssl = c->cfg->tls ? proxy_tls_alert_ssl(c->cfg->tls) : NULL;
    struct bufferevent *b = ssl ? bufferevent_openssl_filter_new(c->w->base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                                  BEV_OPT_CLOSE_ON_FREE)
                                : NULL;
    if (!b) {
        if (ssl)
            SSL_free(ssl);
        conn_free(c);
        return;
    }
    c->bev = b;
    c->state = CONN_CLOSING;
    evtimer_del(c->timer);
    conn_set_timer(c, 2000); /* the alert's delivery is bounded */
    bufferevent_setcb(b, alert_read_cb, NULL, alert_event_cb, c);
    bufferevent_enable(b, EV_READ | EV_WRITE);
    bufferevent_trigger(bufferevent_get_underlying(b), EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
}

/* ---- the upstream side ---- */

static void deny_after_200(struct conn *c, const char *guard, const char *reason)
{
    struct policy_decision d;
    memset(&d, 0, sizeof(d));
    d.action = AUDIT_ACTION_DENY;
    d.by_rule = 1;
    d.rule.id = guard;
    d.reason = reason;
    conn_deny_phase(c, AUDIT_PHASE_PRE_REQUEST, &d);
}

struct mint_job {
    struct conn *c;
    struct proxy_config *cfg; /* keeps the mint alive */
    X509 *upstream;
    char sni[256];
    struct proxy_leaf *leaf;
    char err[256];
};

static void mint_work(void *arg)
{
    struct mint_job *j = arg;
    j->leaf = proxy_mint_make(proxy_tls_mint(j->cfg->tls), j->upstream, j->sni[0] ? j->sni : NULL, j->err,
                              sizeof(j->err));
}

static void mint_done(void *arg)
{
    struct mint_job *j = arg;
    struct conn *c = j->c;
    if (!c->dead && c->state == CONN_MINTING) {
        if (j->leaf) {
            client_tls_start(c, j->leaf, 0);
        } else {
            diag_log(DIAG_WARN, "proxy.tls", "flow %s: minting a leaf failed: %s", c->flow.id_text, j->err);
            deny_after_200(c, "tls_mint", "leaf_mint_failed");
        }
    }
    proxy_leaf_unref(j->leaf);
    X509_free(j->upstream);
    proxy_config_unref(j->cfg);
    conn_release(c);
    free(j);
}

static void tls_up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    struct flow *f = &c->flow;
    conn_hold(c);
    if (what & BEV_EVENT_CONNECTED) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        X509 *peer = SSL_get1_peer_certificate(ssl);
        evtimer_del(c->timer);
        if (!peer) {
            deny_after_200(c, "upstream_tls", "upstream_sent_no_certificate");
            goto out;
        }
        struct proxy_cert_info ci;
        proxy_cert_describe(peer, &ci);
        snprintf(f->tls_cert, sizeof(f->tls_cert), "%s\t%s\t%s\t%s\t%s", ci.sha256, ci.issuer, ci.subject,
                 ci.not_before, ci.not_after);
        snprintf(f->tls_version, sizeof(f->tls_version), "%s", SSL_get_version(ssl));
        snprintf(f->tls_cipher, sizeof(f->tls_cipher), "%s", SSL_get_cipher_name(ssl));
        struct proxy_leaf *leaf = proxy_mint_lookup(proxy_tls_mint(c->cfg->tls), peer);
        if (leaf) {
            X509_free(peer);
            client_tls_start(c, leaf, 1);
            proxy_leaf_unref(leaf);
            goto out;
        }
        /* a miss: signing takes a while, and must not stall the other flows of this worker */
        struct mint_job *j = calloc(1, sizeof(*j));
        if (!j) {
            X509_free(peer);
            deny_after_200(c, "tls_mint", "out_of_memory");
            goto out;
        }
        j->c = c;
        j->cfg = c->cfg;
        proxy_config_ref(j->cfg);
        j->upstream = peer;
        snprintf(j->sni, sizeof(j->sni), "%s", f->hello.sni);
        c->state = CONN_MINTING;
        conn_hold(c); /* released by mint_done */
        if (proxy_offload_submit(c->w, mint_work, mint_done, j) == -1) {
            X509_free(peer);
            proxy_config_unref(j->cfg);
            free(j);
            conn_release(c);
            deny_after_200(c, "tls_mint", "mint_busy");
        }
        goto out;
    }
    /* the handshake failed: a certificate that does not verify is a deny with the reason */
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    const char *why = ssl ? proxy_tls_verify_error(ssl) : NULL;
    unsigned long e = bufferevent_get_openssl_error(bev);
    if (why) {
        snprintf(f->tls_verify_error, sizeof(f->tls_verify_error), "%s", why);
        deny_after_200(c, "upstream_tls", "upstream_certificate_rejected");
    } else {
        char buf[160];
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(f->tls_verify_error, sizeof(f->tls_verify_error), "%s",
                 what & BEV_EVENT_TIMEOUT ? "handshake timed out" : e ? buf : "handshake failed");
        deny_after_200(c, "upstream_tls", "upstream_tls_failed");
    }
out:
    conn_release(c);
}

void intercept_upstream_start(struct conn *c)
{
    struct flow *f = &c->flow;
    SSL *ssl = proxy_tls_upstream_ssl(c->cfg->tls, f->target.host, f->target.host_is_ip,
                                      f->hello.sni[0] ? f->hello.sni : NULL);
    struct bufferevent *b = ssl ? tls_on_socket(c, &c->up->bev, ssl, BUFFEREVENT_SSL_CONNECTING) : NULL;
    if (!b) {
        if (ssl)
            SSL_free(ssl);
        deny_after_200(c, "upstream_tls", "out_of_memory");
        return;
    }
    c->state = CONN_TLS_UP;
    bufferevent_setcb(b, NULL, NULL, tls_up_event_cb, c);
    bufferevent_enable(b, EV_READ | EV_WRITE);
    conn_set_timer(c, c->cfg->timeouts.connect_ms);
}

/* ---- the client side ---- */

static void client_tls_start(struct conn *c, struct proxy_leaf *leaf, int cache_hit)
{
    struct flow *f = &c->flow;
    snprintf(f->tls_leaf_serial, sizeof(f->tls_leaf_serial), "%s", proxy_leaf_serial_hex(leaf));
    f->tls_leaf = 1;
    f->tls_leaf_hit = cache_hit;
    /* pre_request was decided before the connection; it is recorded now, with the evidence */
    if (conn_emit_phase(c, AUDIT_PHASE_PRE_REQUEST, &f->pending_decision) == -1 &&
        audit_ring_policy(c->w->server->ring) != AUDIT_OVERFLOW_DROP) {
        f->refused = 1;
        conn_free(c);
        return;
    }
    SSL *ssl = proxy_tls_client_ssl(c->cfg->tls, leaf);
    struct bufferevent *b = ssl ? tls_on_socket(c, &c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING) : NULL;
    if (!b) {
        if (ssl)
            SSL_free(ssl);
        conn_flow_end(c, "out_of_memory");
        conn_free(c);
        return;
    }
    c->state = CONN_TLS_CLIENT;
    conn_set_client_callbacks(c);
    bufferevent_setwatermark(b, EV_READ, 0, PROXY_READ_HIGH);
    bufferevent_enable(b, EV_READ | EV_WRITE);
    conn_set_timer(c, c->cfg->timeouts.header_read_ms);
}

/* The client finished its handshake: from here on the connection carries HTTP requests,
 * each a flow of its own with the tunnel as parent. */
void intercept_client_ready(struct conn *c)
{
    evtimer_del(c->timer);
    c->tunnel_flow = c->flow; /* the tunnel's flow.end waits until the client leaves */
    proxy_metrics_tunnel(c->w, 1);
    c->flow.req_head = NULL;
    c->flow.active = 0;
    c->intercepted = 1;
    c->up->state = UP_IDLE;
    conn_set_up_callbacks(c);
    bufferevent_enable(c->up->bev, EV_READ);
    c->req_paused = 0;
    c->need_kick = 0;
    c->got_bytes = 0;
    llhttp_reset(&c->req_parser);
    msg_reset(&c->req);
    c->state = CONN_IDLE;
    conn_set_timer(c, c->cfg->timeouts.client_idle_ms);
    conn_feed(c);
}

/* A request head inside the tunnel: its target is the tunnel's; path and query come from
 * the origin-form request line. 0, or -1 when it was refused (and answered). */
int intercept_request_head(struct conn *c)
{
    struct flow *f = &c->flow, *t = &c->tunnel_flow;
    const char *url = c->req.buf + c->req.url_off, *end = url + c->req.url_len;
    if (c->req.url_len == 0 || url[0] != '/') {
        conn_send_error(c, 400, "bad_request.not_origin_form", "a request inside TLS needs an origin-form target");
        return -1;
    }
    if (!http_target_ok(url, c->req.url_len)) {
        conn_send_error(c, 400, "bad_request.malformed", "malformed request target");
        return -1;
    }
    const char *frag = memchr(url, '#', (size_t)(end - url));
    if (frag)
        end = frag;
    f->target = t->target;
    f->path_off = c->req.url_off;
    f->path_len = (uint32_t)(end - url);
    const char *qm = memchr(url, '?', (size_t)(end - url));
    if (qm) {
        f->query_set = 1;
        f->query_off = (uint32_t)(qm + 1 - c->req.buf);
        f->query_len = (uint32_t)(end - qm - 1);
    }
    f->pc = t->pc;
    memcpy(f->principal, t->principal, sizeof(f->principal));
    memcpy(&f->dest, &t->dest, sizeof(f->dest));
    f->destlen = t->destlen;
    f->dest_set = 1;
    f->intercept = 1;
    f->hello = t->hello;
    f->hello_result = t->hello_result;
    memcpy(f->tls_version, t->tls_version, sizeof(f->tls_version));
    memcpy(f->tls_cipher, t->tls_cipher, sizeof(f->tls_cipher));
    f->allowed_by_rule = t->allowed_by_rule;
    return 0;
}

/* The connection is going away: the tunnel's own flow ends, with what went through it. */
void intercept_tunnel_end(struct conn *c, const char *reason)
{
    if (!c->intercepted || !c->tunnel_flow.active)
        return;
    proxy_metrics_tunnel(c->w, -1);
    struct flow inner = c->flow;
    c->flow = c->tunnel_flow;
    c->flow.bytes_up = c->tunnel_bytes_up;
    c->flow.bytes_down = c->tunnel_bytes_down;
    conn_flow_end(c, reason);
    c->tunnel_flow = c->flow;
    c->flow = inner;
}

void intercept_timeout(struct conn *c)
{
    if (c->state == CONN_TLS_UP) {
        snprintf(c->flow.tls_verify_error, sizeof(c->flow.tls_verify_error), "handshake timed out");
        deny_after_200(c, "upstream_tls", "upstream_tls_failed");
    } else {
        c->close_reason = "client_tls_timeout";
        conn_flow_end(c, "client_tls_timeout");
        conn_free(c);
    }
}
