/* proxy/flow.c - a client connection and its flows: the request parser, the phases, the
 * upstream connection and the response path of plain HTTP.
 *
 * One conn per client TCP connection, owned by the worker thread that accepted it. Flows
 * run one at a time: the request parser pauses at the end of each head (to resolve and
 * connect) and at the end of each message (so a pipelined next request waits its turn).
 * Bodies stream both ways and are never buffered whole: when the peer's output holds more
 * than PROXY_HIGH_WATER bytes the parser feeding it stops until it drains to half.
 *
 * Every flow ends with exactly one flow.end event (conn_flow_end), whatever the path. */
#include <ctype.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include <sodium.h>

#include "audit/diag.h"
#include "proxy/auth.h"
#include "proxy/clienthello.h"
#include "proxy/proxy-int.h"

static llhttp_settings_t req_settings;
static llhttp_settings_t resp_settings;
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void up_read_cb(struct bufferevent *bev, void *arg);
static void up_write_cb(struct bufferevent *bev, void *arg);
static void up_event_cb(struct bufferevent *bev, short what, void *arg);
static void up_feed(struct conn *c);
static void timer_cb(evutil_socket_t fd, short what, void *arg);

/* ---- lifetime ---- */

void conn_hold(struct conn *c)
{
    c->hold++;
}

static void conn_destroy(struct conn *c)
{
    struct proxy_worker *w = c->w;
    proxy_resolve_cancel(c);
    if (c->peek_ev)
        event_free(c->peek_ev);
    conn_flow_end(c, "aborted");
    intercept_tunnel_end(c, c->close_reason ? c->close_reason : "client_closed");
    tunnel_free(c);
    conn_upstream_free(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    proxy_metrics_conn(w, -1);
    event_free(c->timer);
    bufferevent_free(c->bev);
    msg_fini(&c->req);
    msg_fini(&c->resp);
    if (c->flow.req_head)
        evbuffer_free(c->flow.req_head);
    proxy_config_unref(c->cfg);
    free(c);
    if (w->draining && w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

void conn_release(struct conn *c)
{
    if (--c->hold == 0 && c->dead)
        conn_destroy(c);
}

void conn_free(struct conn *c)
{
    if (c->hold > 0) {
        c->dead = 1;
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        tunnel_free(c);
        conn_upstream_free(c);
        return;
    }
    conn_destroy(c);
}

void conn_upstream_free(struct conn *c)
{
    if (!c->up)
        return;
    bufferevent_free(c->up->bev);
    free(c->up);
    c->up = NULL;
    c->up_paused = 0;
}

void conn_set_timer(struct conn *c, unsigned ms)
{
    if (ms == 0) {
        evtimer_del(c->timer);
        return;
    }
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* ---- events ---- */

static void fill_event(struct conn *c, struct audit_event *ev)
{
    struct flow *f = &c->flow;
    const struct proxy_config *cfg = c->cfg;

    ev->flags |= AUDIT_F_FLOW | AUDIT_F_CLIENT;
    memcpy(ev->flow_id, f->id, sizeof(f->id));
    ev->client = c->client;
    audit_event_set_str(ev, AUDIT_STR_CONFIG_VERSION, cfg->version, strlen(cfg->version));
    audit_event_set_str(ev, AUDIT_STR_LISTENER, c->listener, strlen(c->listener));
    if (f->method[0]) {
        ev->flags |= AUDIT_F_REQUEST;
        audit_event_set_str(ev, AUDIT_STR_METHOD, f->method, strlen(f->method));
        if (f->target.host[0]) {
            audit_event_set_str(ev, AUDIT_STR_HOST, f->target.host, strlen(f->target.host));
            ev->request_port = f->target.port;
        }
        if (!f->is_connect && f->target.host[0]) {
            audit_event_set_str(ev, AUDIT_STR_SCHEME, f->intercept ? "https" : "http", f->intercept ? 5 : 4);
            size_t plen = f->query_set ? f->query_off - 1 - f->path_off : f->path_len;
            if (plen)
                audit_event_set_str(ev, AUDIT_STR_PATH, c->req.buf + f->path_off, plen);
            else
                audit_event_set_str(ev, AUDIT_STR_PATH, "/", 1);
            if (f->query_set)
                audit_event_set_str(ev, AUDIT_STR_QUERY, c->req.buf + f->query_off, f->query_len);
        }
    }
    if (f->principal[0])
        audit_event_set_str(ev, AUDIT_STR_PRINCIPAL, f->principal, strlen(f->principal));
    if (f->dest_set) {
        ev->flags |= AUDIT_F_DESTINATION;
        audit_ip_from_sockaddr(&ev->destination, (const struct sockaddr *)&f->dest);
    }
    if (f->intercept && !f->is_connect) /* a request inside an intercepted tunnel */
        audit_event_set_str(ev, AUDIT_STR_PARENT_FLOW, c->tunnel_flow.id_text, AUDIT_FLOW_ID_LEN);
    if ((f->is_connect && f->hello_done) || f->intercept) {
        ev->flags |= AUDIT_F_TLS;
        if (f->intercept)
            ev->tls_bits |= AUDIT_TLS_INTERCEPTED;
        if (f->tls_version[0])
            audit_event_set_str(ev, AUDIT_STR_TLS_VERSION, f->tls_version, strlen(f->tls_version));
        if (f->tls_cipher[0])
            audit_event_set_str(ev, AUDIT_STR_TLS_CIPHER, f->tls_cipher, strlen(f->tls_cipher));
        if (f->tls_cert[0] && f->is_connect)
            audit_event_set_str(ev, AUDIT_STR_TLS_CERT, f->tls_cert, strlen(f->tls_cert));
        if (f->tls_leaf && f->is_connect) {
            ev->tls_bits |= AUDIT_TLS_LEAF | (f->tls_leaf_hit ? AUDIT_TLS_LEAF_CACHE_HIT : 0);
            audit_event_set_str(ev, AUDIT_STR_TLS_LEAF_SERIAL, f->tls_leaf_serial, strlen(f->tls_leaf_serial));
        }
        if (f->tls_verify_error[0])
            audit_event_set_str(ev, AUDIT_STR_TLS_VERIFY_ERROR, f->tls_verify_error, strlen(f->tls_verify_error));
        const char *hr = f->hello_result == PROXY_CH_OK          ? "ok"
                         : f->hello_result == PROXY_CH_NOT_TLS    ? "not_tls"
                         : f->hello_result == PROXY_CH_NEED_MORE  ? "timeout"
                                                                  : "malformed";
        audit_event_set_str(ev, AUDIT_STR_TLS_HELLO, hr, strlen(hr));
        if (f->hello.sni[0]) {
            audit_event_set_str(ev, AUDIT_STR_TLS_SNI, f->hello.sni, strlen(f->hello.sni));
            ev->tls_bits |= AUDIT_TLS_SNI_COMPARED;
            if (strcmp(f->hello.sni, f->target.host) == 0)
                ev->tls_bits |= AUDIT_TLS_SNI_MATCHES;
        }
        for (size_t i = 0; i < f->hello.nalpn; i++) {
            const char *m[] = {f->hello.alpn[i]};
            audit_event_list_add(ev, AUDIT_STR_TLS_ALPN, m, 1);
        }
    }
    if (f->dns_resolved) {
        ev->flags |= AUDIT_F_DNS;
        ev->dns_latency_us = f->dns_latency_us;
        if (f->dns_answers_len)
            audit_event_set_str(ev, AUDIT_STR_DNS_ANSWERS, f->dns_answers, f->dns_answers_len);
    }
    if (f->status) {
        ev->flags |= AUDIT_F_RESPONSE;
        ev->status = f->status;
        ev->content_length = f->resp_content_length;
        if (f->content_type[0])
            audit_event_set_str(ev, AUDIT_STR_CONTENT_TYPE, f->content_type, strlen(f->content_type));
    }
}

/* Records the decision <d> of <phase>. 0, or -1 when the ring had no room. */
/* Does the config record header <name> (<len> bytes)? audit.headers include/exclude lists. */
static int header_recorded(const struct proxy_config *cfg, const char *name, size_t len)
{
    for (size_t i = 0; i < cfg->header_exclude_n; i++)
        if (strlen(cfg->header_exclude[i]) == len && strncasecmp(cfg->header_exclude[i], name, len) == 0)
            return 0;
    if (cfg->header_include_n == 0)
        return 1;
    for (size_t i = 0; i < cfg->header_include_n; i++)
        if (strlen(cfg->header_include[i]) == len && strncasecmp(cfg->header_include[i], name, len) == 0)
            return 1;
    return 0;
}

/* Packs the headers of <m> into field <f> of <ev>: "name \t value \n", names lowercased. The
 * values go into the record as they came: the pipeline's redaction stage tokenizes credentials
 * and PII before any sink sees them. */
static void add_headers(struct conn *c, struct audit_event *ev, enum audit_str f, const struct msg *m)
{
    char name[256];
    for (unsigned i = 0; i < m->n; i++) {
        const struct hdr *h = &m->h[i];
        if (h->name_len == 0 || h->name_len >= sizeof(name) || !header_recorded(c->cfg, m->buf + h->name_off, h->name_len))
            continue;
        for (uint32_t k = 0; k < h->name_len; k++)
            name[k] = (char)tolower((unsigned char)m->buf[h->name_off + k]);
        name[h->name_len] = '\0';
        const char *members[2] = {name, m->buf + h->val_off};
        const size_t lens[2] = {h->name_len, h->val_len};
        if (audit_event_list_add_n(ev, f, members, lens, 2) == -1)
            break; /* the event says "truncated": true */
    }
}

int conn_emit_phase(struct conn *c, enum audit_phase phase, const struct policy_decision *d)
{
    struct audit_event ev;
    audit_event_init(&ev, AUDIT_EVENT_FLOW_PHASE);
    fill_event(c, &ev);
    if (phase == AUDIT_PHASE_PRE_REQUEST && !c->flow.is_connect && c->req.headers_done)
        add_headers(c, &ev, AUDIT_STR_REQ_HEADERS, &c->req);
    else if (phase == AUDIT_PHASE_POST_RESPONSE && c->resp.headers_done)
        add_headers(c, &ev, AUDIT_STR_RESP_HEADERS, &c->resp);
    ev.phase = (uint8_t)phase;
    policy_decision_to_event(d, &ev);
    int rc = audit_emit(c->w->server->ring, &ev);
    if (rc == 0)
        proxy_metrics_phase(c->w, phase, (enum audit_action)ev.action);
    return rc;
}

void conn_flow_end(struct conn *c, const char *reason)
{
    struct flow *f = &c->flow;
    if (!f->active)
        return;
    f->active = 0;
    proxy_metrics_flow_end(c->w, reason);
    if (f->intercept && !f->is_connect) { /* a request inside a tunnel: the tunnel's totals */
        c->tunnel_bytes_up += f->bytes_up;
        c->tunnel_bytes_down += f->bytes_down;
    }
    if (f->refused)
        return;
    struct audit_event ev;
    audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
    fill_event(c, &ev);
    ev.flags |= AUDIT_F_BYTES | AUDIT_F_DURATION;
    ev.bytes_up = f->bytes_up;
    ev.bytes_down = f->bytes_down;
    ev.duration_us = ev.time_us > f->start_us ? (uint64_t)(ev.time_us - f->start_us) : 0;
    audit_event_set_str(&ev, AUDIT_STR_REASON, reason, strlen(reason));
    audit_emit(c->w->server->ring, &ev);
}

static void flow_begin(struct conn *c)
{
    struct flow *f = &c->flow;
    if (f->req_head)
        evbuffer_free(f->req_head);
    memset(f, 0, sizeof(*f));
    if (c->cfg != c->w->cfg && !c->intercepted) { /* a reload: this flow starts under the new config */
        proxy_config_unref(c->cfg);
        c->cfg = c->w->cfg;
        proxy_config_ref(c->cfg);
    }
    audit_flow_id_new(f->id);
    audit_flow_id_format(f->id, f->id_text);
    f->start_us = proxy_now_wall_us();
    f->active = 1;
    f->resp_content_length = -1;
}

/* ---- responses Vigil makes itself ---- */

static void begin_closing(struct conn *c)
{
    c->state = CONN_CLOSING;
    evtimer_del(c->timer);
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_WRITE);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_free(c);
}

void conn_send_error(struct conn *c, unsigned status, const char *reason, const char *text)
{
    conn_send_error_hdr(c, status, reason, text, NULL);
}

void conn_send_error_hdr(struct conn *c, unsigned status, const char *reason, const char *text, const char *extra)
{
    struct flow *f = &c->flow;
    proxy_resolve_cancel(c);
    conn_upstream_free(c);
    if (!f->active && !f->refused)
        flow_begin(c);
    if (f->resp_started) {
        /* too late for a status (a response or a CONNECT's 200 is out): what was written
         * goes out, then the connection closes */
        conn_flow_end(c, reason);
        if (f->is_connect && f->hello_done && f->hello_result == PROXY_CH_OK && c->cfg->tls &&
            (c->state == CONN_RESOLVING || c->state == CONN_CONNECTING || c->state == CONN_TLS_UP ||
             c->state == CONN_MINTING || c->state == CONN_PEEK)) {
            intercept_alert(c); /* the client is waiting for a TLS handshake: it gets an alert */
            return;
        }
        begin_closing(c);
        return;
    }
    f->status = (uint16_t)status;
    f->content_type[0] = '\0';
    strcpy(f->content_type, "text/plain");
    char body[512];
    int bl = snprintf(body, sizeof(body), "%u %s: %s\nreason: %s\nflow id: %s\n", status,
                      proxy_status_phrase(status), text, reason, f->id_text);
    if (bl < 0)
        bl = 0;
    if ((size_t)bl >= sizeof(body))
        bl = sizeof(body) - 1;
    f->resp_content_length = bl;
    conn_flow_end(c, reason); /* recorded before the client can see the answer */
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %u %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                        "X-Vigil-Flow-Id: %s\r\n%sConnection: close\r\nVia: " PROXY_VIA "\r\n\r\n",
                        status, proxy_status_phrase(status), bl, f->id_text, extra ? extra : "");
    evbuffer_add(out, body, (size_t)bl);
    f->resp_started = 1;
    begin_closing(c);
}

/* ---- accept ---- */

void proxy_conn_accept(struct proxy_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen,
                       const char *listener)
{
    const struct proxy_config *cfg = w->cfg;
    struct conn *c = calloc(1, sizeof(*c));
    (void)salen;
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->w = w;
    c->cfg = w->cfg;
    proxy_config_ref(c->cfg);
    memcpy(&c->client_sa, sa, (size_t)salen < sizeof(c->client_sa) ? (size_t)salen : sizeof(c->client_sa));
    c->listener = listener;
    audit_ip_from_sockaddr(&c->client, sa);
    int one = 1; /* small writes (a tunnel's request/response exchanges) go out at once */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(w->base, NULL, NULL);
    if (!c->bev || !c->timer || msg_init(&c->req, cfg->max_header_bytes, cfg->max_headers) == -1 ||
        msg_init(&c->resp, cfg->max_header_bytes * 4, PROXY_MAX_HEADERS) == -1) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->timer)
            event_free(c->timer);
        msg_fini(&c->req);
        msg_fini(&c->resp);
        proxy_config_unref(c->cfg);
        free(c);
        return;
    }
    evtimer_assign(c->timer, w->base, timer_cb, c);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    proxy_metrics_conn(w, 1);

    llhttp_init(&c->req_parser, HTTP_REQUEST, &req_settings);
    c->req_parser.data = c;
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, PROXY_READ_HIGH);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = CONN_IDLE;
    conn_set_timer(c, cfg->timeouts.header_read_ms);
}

/* ---- request parsing ---- */

static int req_message_begin(llhttp_t *p)
{
    struct conn *c = p->data;
    flow_begin(c);
    msg_reset(&c->req);
    c->state = CONN_HEAD;
    c->obs_fold = 0;
    c->last_byte = 0;
    conn_set_timer(c, c->cfg->timeouts.header_read_ms);
    return 0;
}

static int req_url(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    return msg_on_url(&c->req, at, len);
}

static int req_field(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    return msg_on_field(&c->req, at, len);
}

static int req_field_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    return c->req.headers_done ? 0 : msg_on_field_complete(&c->req);
}

static int req_value(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    return msg_on_value(&c->req, at, len);
}

static int req_headers_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    c->req.headers_done = 1;
    return HPE_PAUSED;
}

static int req_body(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (!c->up)
        return 0;
    http_add_body(bufferevent_get_output(c->up->bev), at, len, c->flow.req_chunked);
    c->flow.bytes_up += len;
    return 0;
}

static int req_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    c->flow.req_done = 1;
    if (c->up && c->flow.req_chunked)
        evbuffer_add(bufferevent_get_output(c->up->bev), "0\r\n\r\n", 5);
    return HPE_PAUSED;
}

/* Maps llhttp's verdict on a bad request to the reason recorded. */
static const char *bad_request_reason(llhttp_t *p, enum llhttp_errno e)
{
    const char *why = llhttp_get_error_reason(p);
    if (e == HPE_UNEXPECTED_CONTENT_LENGTH && why && strstr(why, "Transfer-Encoding"))
        return "bad_request.cl_and_te";
    if (e == HPE_UNEXPECTED_CONTENT_LENGTH && why && strstr(why, "Duplicate"))
        return "bad_request.duplicate_content_length";
    if (e == HPE_INVALID_CHUNK_SIZE || e == HPE_CB_CHUNK_HEADER)
        return "bad_request.bad_chunk";
    if (e == HPE_INVALID_TRANSFER_ENCODING)
        return "bad_request.bad_transfer_encoding";
    if (e == HPE_INVALID_CONTENT_LENGTH)
        return "bad_request.bad_content_length";
    return "bad_request.malformed";
}

static void scan_obs_fold(struct conn *c, const char *p, size_t n)
{
    uint8_t last = c->last_byte;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)p[i];
        if (last == '\n' && (b == ' ' || b == '\t'))
            c->obs_fold = 1;
        last = b;
    }
    c->last_byte = last;
}

/* Splits the absolute-form URL into target, path and query. 0, or -1 with the reason. */
static int parse_absolute_url(struct conn *c, const char **reason)
{
    struct flow *f = &c->flow;
    const char *url = c->req.buf + c->req.url_off;
    size_t n = c->req.url_len;

    if (n == 0 || url[0] == '/' || url[0] == '*') {
        *reason = "bad_request.not_absolute_form";
        return -1;
    }
    if (!http_target_ok(url, n)) {
        *reason = "bad_request.malformed";
        return -1;
    }
    const char *sep = memmem(url, n, "://", 3);
    if (!sep) {
        *reason = "bad_request.not_absolute_form";
        return -1;
    }
    size_t sl = (size_t)(sep - url);
    if (sl != 4 || strncasecmp(url, "http", 4) != 0) {
        *reason = "bad_request.unsupported_scheme";
        return -1;
    }
    const char *auth = sep + 3, *end = url + n;
    const char *p = auth;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    const char *a = auth;
    for (const char *q = auth; q < p; q++) /* userinfo is never forwarded */
        if (*q == '@')
            a = q + 1;
    if (proxy_parse_authority(a, (size_t)(p - a), 80, &f->target) == -1) {
        *reason = "bad_request.bad_host";
        return -1;
    }
    const char *frag = memchr(p, '#', (size_t)(end - p));
    if (frag)
        end = frag;
    f->path_off = (uint32_t)(p - c->req.buf);
    f->path_len = (uint32_t)(end - p);
    const char *qm = memchr(p, '?', (size_t)(end - p));
    if (qm) {
        f->query_set = 1;
        f->query_off = (uint32_t)(qm + 1 - c->req.buf);
        f->query_len = (uint32_t)(end - qm - 1);
    }
    return 0;
}

static void on_resolved(struct conn *c, int err, const struct sockaddr_storage *addrs, size_t naddrs);
static void admit_flow(struct conn *c);
static void peek_hello(struct conn *c);
static void hello_done(struct conn *c, enum proxy_ch_result r);
static void check_auth(struct conn *c);

/* The request head is complete: validate it, record pre_dns and resolve. */
static void process_request_head(struct conn *c)
{
    struct flow *f = &c->flow;
    llhttp_t *p = &c->req_parser;
    const char *reason = NULL;

    evtimer_del(c->timer);
    f->head_done = 1;
    snprintf(f->method, sizeof(f->method), "%s", llhttp_method_name((llhttp_method_t)llhttp_get_method(p)));
    if (c->obs_fold) {
        conn_send_error(c, 400, "bad_request.obs_fold", "obsolete header line folding is not accepted");
        return;
    }
    if (msg_bad_header_name(&c->req)) {
        conn_send_error(c, 400, "bad_request.malformed", "malformed header field name");
        return;
    }
    f->client_11 = p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1);
    if (c->intercepted) {
        if (llhttp_get_method(p) == HTTP_CONNECT) {
            conn_send_error(c, 400, "bad_request.connect_in_tunnel", "CONNECT inside a tunnel");
            return;
        }
        if (intercept_request_head(c) == -1)
            return;
        f->is_head = llhttp_get_method(p) == HTTP_HEAD;
        f->req_chunked = (p->flags & F_CHUNKED) != 0;
        f->req_keepalive = llhttp_should_keep_alive(p);
        if (audit_ring_admit(c->w->server->ring) == -1 &&
            audit_ring_policy(c->w->server->ring) == AUDIT_OVERFLOW_FAIL_CLOSED) {
            f->refused = 1;
            conn_send_error(c, 503, "audit_ring_full", "the audit record cannot keep up; try again");
            return;
        }
        if (conn_run_phase(c, AUDIT_PHASE_PRE_REQUEST) == -1)
            return;
        if (!c->up || c->up->state != UP_IDLE) {
            conn_send_error(c, 502, "upstream_closed", "the upstream closed the intercepted connection");
            return;
        }
        c->up->state = UP_ACTIVE;
        c->up->reused = 1;
        conn_start_forward(c);
        return;
    }
    if (llhttp_get_method(p) == HTTP_CONNECT) {
        f->is_connect = 1;
        if (proxy_parse_authority(c->req.buf + c->req.url_off, c->req.url_len, 0, &f->target) == -1 ||
            f->target.port == 0) {
            conn_send_error(c, 400, "bad_request.bad_host", "CONNECT needs host:port");
            return;
        }
    } else {
        if (parse_absolute_url(c, &reason) == -1) {
            conn_send_error(c, 400, reason, "a proxy request needs an absolute http:// URL");
            return;
        }
        f->is_head = llhttp_get_method(p) == HTTP_HEAD;
        f->req_chunked = (p->flags & F_CHUNKED) != 0;
        f->req_keepalive = llhttp_should_keep_alive(p);
    }
    f->pc = proxy_policy_select(c->cfg->policy, (const struct sockaddr *)&c->client_sa, c->listener);
    if (!f->pc) {
        struct policy_decision d = {.action = AUDIT_ACTION_DENY, .by_rule = 1, .reason = "no_proxy_configuration"};
        d.rule.id = "no_proxy_configuration";
        conn_deny_phase(c, AUDIT_PHASE_PRE_DNS, &d);
        return;
    }
    if (c->cfg->auth) {
        check_auth(c);
        return;
    }
    admit_flow(c);
}

/* The header lookup the policy uses: request headers until the response head, then those. */
static int policy_header(void *arg, const char *name, const char **value, size_t *len)
{
    const struct msg *m = arg;
    int i = msg_find(m, name);
    if (i < 0)
        return 0;
    *value = m->buf + m->h[i].val_off;
    *len = m->h[i].val_len;
    return 1;
}

/* What the flow shows phase <phase>. */
static void policy_input_of(struct conn *c, enum audit_phase phase, struct policy_input *in)
{
    struct flow *f = &c->flow;
    memset(in, 0, sizeof(*in));
    in->phase = phase;
    in->client = (const struct sockaddr *)&c->client_sa;
    in->listener = c->listener;
    in->principal = f->principal[0] ? f->principal : NULL;
    in->host = f->target.host;
    in->port = f->target.port;
    in->is_connect = f->is_connect;
    in->sni = f->hello_done && f->hello.sni[0] ? f->hello.sni : NULL;
    in->content_length = -1;
    if (phase >= AUDIT_PHASE_PRE_REQUEST && f->dest_set)
        in->dest = (const struct sockaddr *)&f->dest;
    if (phase >= AUDIT_PHASE_PRE_REQUEST) {
        in->method = f->method;
        if (!f->is_connect) { /* a tunnel's path and headers are inside TLS */
            size_t plen = f->query_set ? f->query_off - 1 - f->path_off : f->path_len;
            in->path = plen ? c->req.buf + f->path_off : "/";
            in->path_len = plen ? plen : 1;
            in->header = policy_header;
            in->header_arg = phase == AUDIT_PHASE_POST_RESPONSE ? &c->resp : &c->req;
        }
    }
    if (phase == AUDIT_PHASE_POST_RESPONSE) {
        in->status = f->status;
        in->content_length = f->resp_content_length;
        in->content_type = f->content_type[0] ? f->content_type : NULL;
    }
}

/* Records a deny of <phase> and answers 403 with the rule's message and the flow id. */
void conn_deny_phase(struct conn *c, enum audit_phase phase, const struct policy_decision *d)
{
    char text[300];
    if (conn_emit_phase(c, phase, d) == -1 && audit_ring_policy(c->w->server->ring) != AUDIT_OVERFLOW_DROP)
        c->flow.refused = 1;
    snprintf(text, sizeof(text), "%s", d->message ? d->message : "the egress policy does not allow this request");
    conn_send_error(c, 403, "denied", text);
}

/* Evaluates <phase> with the built-in guards into <d>, without recording anything. */
void conn_decide_phase(struct conn *c, enum audit_phase phase, struct policy_decision *d)
{
    struct flow *f = &c->flow;
    struct policy_input in;
    policy_input_of(c, phase, &in);
    proxy_policy_eval(f->pc, &in, f->allowed_by_rule, d, NULL, NULL);
    if (d->action == AUDIT_ACTION_DENY)
        return;

    /* built-in guards: an explicit allow rule naming the port / SNI / destination lifts them */
    const char *guard = NULL, *why = NULL;
    if (phase == AUDIT_PHASE_PRE_DNS && f->is_connect && !policy_pconf_connect_port_ok(f->pc, f->target.port) &&
        !(d->by_rule && d->rule_has_port)) {
        guard = "connect_ports";
        why = "connect_port_not_allowed";
    } else if (phase == AUDIT_PHASE_PRE_DNS && f->is_connect && f->hello_done && f->hello.sni[0] &&
               strcmp(f->hello.sni, f->target.host) != 0 && !policy_pconf_sni_mismatch_allowed(f->pc) &&
               !(d->by_rule && d->rule_has_sni)) {
        guard = "sni_guard";
        why = "sni_mismatch"; /* domain fronting: the tunnel would reach another name than the one checked */
    } else if (phase == AUDIT_PHASE_PRE_DNS && f->is_connect && f->hello_done && f->hello_result != PROXY_CH_OK &&
               !policy_pconf_non_tls_allowed(f->pc)) {
        guard = "tls_only";
        why = f->hello_result == PROXY_CH_MALFORMED ? "client_hello_malformed"
              : f->hello_result == PROXY_CH_NEED_MORE ? "client_hello_timeout"
                                                      : "not_tls";
    } else if (phase == AUDIT_PHASE_PRE_REQUEST && policy_pconf_ssrf_guard(f->pc) &&
               !(d->by_rule && d->rule_has_destination)) {
        enum proxy_ssrf_class cls = proxy_ssrf_classify(in.dest, &c->w->server->self);
        if (cls != PROXY_SSRF_PUBLIC) {
            snprintf(f->ssrf_reason, sizeof(f->ssrf_reason), "ssrf.%s", proxy_ssrf_class_name(cls));
            guard = "ssrf_guard";
            why = f->ssrf_reason;
        }
    }
    if (guard) {
        memset(&d->rule, 0, sizeof(d->rule));
        d->action = AUDIT_ACTION_DENY;
        d->by_rule = 1;
        d->rule.id = guard;
        d->reason = why;
        d->message = NULL;
    }
}

/* Evaluates <phase>, records it and applies it: 0 when the flow goes on, -1 when it was
 * denied (and answered: 403, or a closed tunnel after its 200). */
int conn_run_phase(struct conn *c, enum audit_phase phase)
{
    struct flow *f = &c->flow;
    struct policy_decision d;
    conn_decide_phase(c, phase, &d);
    if (d.action == AUDIT_ACTION_DENY) {
        conn_deny_phase(c, phase, &d);
        return -1;
    }
    if (d.by_rule)
        f->allowed_by_rule = 1;
    if (conn_emit_phase(c, phase, &d) == -1 && audit_ring_policy(c->w->server->ring) != AUDIT_OVERFLOW_DROP) {
        f->refused = 1;
        conn_send_error(c, 503, "audit_ring_full", "the audit record cannot keep up; try again");
        return -1;
    }
    return 0;
}

/* ---- CONNECT: the 200, then the ClientHello before anything goes upstream ---- */

static void resolve_target(struct conn *c)
{
    c->state = CONN_RESOLVING;
    c->flow.dns_start_us = proxy_now_mono_us();
    proxy_resolve(c, on_resolved);
}

/* The ClientHello is in (or will not come): pre_dns decides with the SNI, then resolution. */
static void hello_done(struct conn *c, enum proxy_ch_result r)
{
    struct flow *f = &c->flow;
    evtimer_del(c->timer);
    if (c->peek_ev) {
        event_free(c->peek_ev);
        c->peek_ev = NULL;
    }
    f->hello_done = 1;
    f->hello_result = r;
    if (r != PROXY_CH_OK)
        memset(&f->hello, 0, sizeof(f->hello));
    bufferevent_disable(c->bev, EV_READ); /* what follows is the upstream's business */
    f->intercept = r == PROXY_CH_OK && c->cfg->tls &&
                   policy_pconf_intercepts(f->pc, f->target.host, f->hello.sni[0] ? f->hello.sni : NULL);
    if (conn_run_phase(c, AUDIT_PHASE_PRE_DNS) == -1)
        return;
    resolve_target(c);
}

/* Reads the ClientHello from the client's input without consuming it: the same bytes go
 * upstream (or into the TLS server of an interception). */
static void peek_hello(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = evbuffer_get_length(in);
    if (n == 0)
        return;
    if (n > PROXY_CH_MAX_PEEK)
        n = PROXY_CH_MAX_PEEK;
    const uint8_t *data = evbuffer_pullup(in, (ssize_t)n);
    enum proxy_ch_result r = proxy_clienthello_parse(data, n, &c->flow.hello);
    if (r == PROXY_CH_NEED_MORE && n < PROXY_CH_MAX_PEEK)
        return; /* more to come: the timer bounds the wait */
    hello_done(c, r == PROXY_CH_NEED_MORE ? PROXY_CH_MALFORMED : r);
}

/* A CONNECT past its first checks: answer 200, then wait for the client's first bytes. */
/* The ClientHello peeked in the socket itself (MSG_PEEK): the bytes stay in the kernel, so
 * the tunnel relay or a TLS bufferevent of the interception reads them straight from the
 * socket, with no buffer or filter layer in between. */
static void peek_raw_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    uint8_t buf[PROXY_CH_MAX_PEEK];
    (void)what;
    conn_hold(c);
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        conn_flow_end(c, "client_closed");
        conn_free(c);
    } else if (n < 0) {
        event_add(c->peek_ev, NULL); /* woken for nothing: wait again */
    } else {
        enum proxy_ch_result r = proxy_clienthello_parse(buf, (size_t)n, &c->flow.hello);
        if (r != PROXY_CH_NEED_MORE || (size_t)n >= sizeof(buf)) {
            hello_done(c, r == PROXY_CH_NEED_MORE ? PROXY_CH_MALFORMED : r);
        } else {
            /* the rest is on its way: the peeked bytes would wake this event at once, so wait
             * a moment instead (bounded by client_hello_ms) */
            struct timeval tv = {0, 2000};
            event_del(c->peek_ev);
            event_add(c->peek_ev, &tv);
        }
    }
    conn_release(c);
}

/* A CONNECT past its first checks: answer 200, then wait for the client's first bytes. */
static void connect_accepted(struct conn *c)
{
    struct flow *f = &c->flow;
    evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 200 Connection established\r\n\r\n", 39);
    f->status = 200;
    f->resp_started = 1;
    c->state = CONN_PEEK;
    conn_set_timer(c, c->cfg->timeouts.client_hello_ms);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) == 0) {
        c->peek_ev = event_new(c->w->base, bufferevent_getfd(c->bev), EV_READ | EV_TIMEOUT, peek_raw_cb, c);
        if (c->peek_ev && event_add(c->peek_ev, NULL) == 0) {
            bufferevent_disable(c->bev, EV_READ);
            return;
        }
        if (c->peek_ev)
            event_free(c->peek_ev);
        c->peek_ev = NULL;
    }
    /* the client sent its first bytes right behind the CONNECT: they are in the input already */
    bufferevent_enable(c->bev, EV_READ);
    peek_hello(c);
}

/* ---- proxy authentication ---- */

struct auth_job {
    struct conn *c;
    struct proxy_auth *auth;
    struct proxy_config *cfg; /* keeps <auth> alive */
    char user[PROXY_AUTH_USER_MAX];
    char pass[PROXY_AUTH_PASS_MAX];
    enum proxy_auth_result result;
};

static void auth_challenge(struct conn *c, const char *reason)
{
    char h[512], v[400];
    proxy_auth_challenge(c->cfg->auth, v, sizeof(v));
    snprintf(h, sizeof(h), "Proxy-Authenticate: %s\r\n", v);
    conn_send_error_hdr(c, 407, reason, "proxy authentication required", h);
}

static void auth_verified(struct conn *c, enum proxy_auth_result r, const char *user)
{
    if (r == PROXY_AUTH_OK) {
        snprintf(c->flow.principal, sizeof(c->flow.principal), "%s", user);
        admit_flow(c);
    } else {
        auth_challenge(c, "auth_failed");
    }
}

static void auth_work(void *arg)
{
    struct auth_job *j = arg;
    j->result = proxy_auth_verify(j->auth, j->user, j->pass);
    sodium_memzero(j->pass, sizeof(j->pass));
}

static void auth_done(void *arg)
{
    struct auth_job *j = arg;
    struct conn *c = j->c;
    if (!c->dead && c->state == CONN_AUTH)
        auth_verified(c, j->result, j->user);
    proxy_config_unref(j->cfg);
    conn_release(c);
    free(j);
}

/* Proxy-Authorization against the password file: a credential verified recently passes at
 * once; otherwise the (slow by design) hash check runs on an offload thread. */
static void check_auth(struct conn *c)
{
    char user[PROXY_AUTH_USER_MAX], pass[PROXY_AUTH_PASS_MAX];
    int i = msg_find(&c->req, "proxy-authorization");
    if (i < 0) {
        if (c->cfg->auth_required)
            auth_challenge(c, "auth_required");
        else
            admit_flow(c);
        return;
    }
    enum proxy_auth_result r = proxy_auth_parse(c->req.buf + c->req.h[i].val_off, c->req.h[i].val_len, user,
                                                sizeof(user), pass, sizeof(pass));
    if (r != PROXY_AUTH_OK) {
        auth_challenge(c, "auth_failed");
        return;
    }
    r = proxy_auth_check_cached(c->cfg->auth, user, pass);
    if (r != PROXY_AUTH_UNKNOWN) {
        sodium_memzero(pass, sizeof(pass));
        auth_verified(c, r, user);
        return;
    }
    struct auth_job *j = calloc(1, sizeof(*j));
    if (!j) {
        sodium_memzero(pass, sizeof(pass));
        conn_send_error(c, 503, "out_of_memory", "no memory to check the credentials");
        return;
    }
    j->c = c;
    j->auth = c->cfg->auth;
    j->cfg = c->cfg;
    proxy_config_ref(j->cfg);
    memcpy(j->user, user, sizeof(user));
    memcpy(j->pass, pass, sizeof(pass));
    sodium_memzero(pass, sizeof(pass));
    conn_hold(c); /* released by auth_done, whatever happened to the conn meanwhile */
    c->state = CONN_AUTH;
    if (proxy_offload_submit(c->w, auth_work, auth_done, j) == -1) {
        sodium_memzero(j->pass, sizeof(j->pass));
        proxy_config_unref(j->cfg);
        free(j);
        c->state = CONN_HEAD;
        conn_release(c);
        conn_send_error(c, 503, "auth_busy", "too many credential checks in progress; try again");
    }
}

/* No flow without a record. Under fail_closed (and drop, whose admission never fails but whose
 * emit can) a flow the ring cannot take is refused with 503, counted by the ring and reported
 * in audit.loss; under block it waits, its head held, until the ring has room. */
static void admit_flow(struct conn *c)
{
    struct audit_ring *ring = c->w->server->ring;
    if (audit_ring_admit(ring) == -1) { /* drop never refuses admission */
        if (audit_ring_policy(ring) == AUDIT_OVERFLOW_BLOCK) {
            c->state = CONN_WAIT_RING;
            conn_set_timer(c, PROXY_RING_RETRY_MS);
            return;
        }
        /* fail_closed: refused before anything is recorded or sent; the ring counted it */
        c->flow.refused = 1;
        conn_send_error(c, 503, "audit_ring_full", "the audit record cannot keep up; try again");
        return;
    }
    if (c->state == CONN_WAIT_RING)
        evtimer_del(c->timer);
    if (c->flow.is_connect) {
        /* what can be denied before the tunnel is, with a 403; pre_dns is recorded once the
         * ClientHello has shown the SNI */
        struct policy_decision d;
        conn_decide_phase(c, AUDIT_PHASE_PRE_DNS, &d);
        if (d.action == AUDIT_ACTION_DENY) {
            conn_deny_phase(c, AUDIT_PHASE_PRE_DNS, &d);
            return;
        }
        connect_accepted(c);
        return;
    }
    if (conn_run_phase(c, AUDIT_PHASE_PRE_DNS) == -1)
        return;
    resolve_target(c);
}

/* Runs the request parser over the client's input until it pauses or runs dry. */
void conn_feed(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    conn_hold(c);
    while (!c->dead && !c->req_paused && !c->client_paused &&
           (c->state == CONN_IDLE || c->state == CONN_HEAD || c->state == CONN_FORWARD)) {
        struct evbuffer_iovec v;
        size_t avail = evbuffer_get_length(in);
        const char *data = "";
        size_t len = 0;
        if (avail > 0) {
            evbuffer_peek(in, -1, NULL, &v, 1);
            data = v.iov_base;
            len = v.iov_len;
        } else if (!c->need_kick) {
            break;
        }
        c->need_kick = 0;
        int in_head = c->state == CONN_IDLE || c->state == CONN_HEAD;
        enum llhttp_errno e = llhttp_execute(&c->req_parser, data, len);
        size_t used = len;
        if (e != HPE_OK && len > 0) {
            const char *pos = llhttp_get_error_pos(&c->req_parser);
            used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
        }
        if (in_head && used > 0)
            scan_obs_fold(c, data, used);
        if (used > 0)
            evbuffer_drain(in, used);
        if (e == HPE_OK) {
            if (len == 0)
                break;
            continue;
        }
        if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
            c->req_paused = 1;
            if (c->req.headers_done && !c->flow.head_done) {
                process_request_head(c);
                continue; /* the state no longer allows parsing: leaves the loop */
            }
            break; /* message complete: the next one waits for this flow's end */
        }
        if (c->req.too_large)
            conn_send_error(c, 431, "headers_too_large", "request header fields too large");
        else
            conn_send_error(c, 400, bad_request_reason(&c->req_parser, e), "malformed request");
        break;
    }
    /* upstream output full: stop reading until it drains (up_write_cb resumes) */
    if (!c->dead && c->state == CONN_FORWARD && c->up &&
        evbuffer_get_length(bufferevent_get_output(c->up->bev)) >= PROXY_HIGH_WATER && !c->client_paused) {
        c->client_paused = 1;
        bufferevent_setwatermark(c->up->bev, EV_WRITE, PROXY_HIGH_WATER / 2, 0);
    }
    conn_release(c);
}

static void resume_request_parser(struct conn *c)
{
    if (c->req_paused) {
        llhttp_resume(&c->req_parser);
        c->req_paused = 0;
        c->need_kick = 1;
    }
}

/* ---- resolution and connect ---- */

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
}

static int connect_upstream(struct conn *c)
{
    struct flow *f = &c->flow;
    struct upstream *up = calloc(1, sizeof(*up));
    if (!up)
        return -1;
    up->bev = bufferevent_socket_new(c->w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!up->bev) {
        free(up);
        return -1;
    }
    memcpy(&up->addr, &f->dest, f->destlen);
    up->addrlen = f->destlen;
    up->state = UP_CONNECTING;
    up->connect_start_us = proxy_now_mono_us();
    c->up = up;
    c->state = CONN_CONNECTING;
    bufferevent_setcb(up->bev, up_read_cb, up_write_cb, up_event_cb, c);
    bufferevent_setwatermark(up->bev, EV_READ, 0, PROXY_READ_HIGH);
    conn_set_timer(c, c->cfg->timeouts.connect_ms);
    int rc = bufferevent_socket_connect(up->bev, (struct sockaddr *)&f->dest, (int)f->destlen);
    if (rc == 0 && bufferevent_getfd(up->bev) >= 0) {
        int one = 1;
        setsockopt(bufferevent_getfd(up->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (rc == -1) {
        /* an immediate failure: the event callback may already have run */
        if (c->state == CONN_CONNECTING)
            conn_send_error(c, 502, "connect_failed", "cannot connect to the upstream");
    }
    return 0;
}

/* Resolution done: <addrs> are the answers, the first is the address policy checks and the
 * flow connects to (no second lookup: what was checked is what is used). */
static void on_resolved(struct conn *c, int err, const struct sockaddr_storage *addrs, size_t naddrs)
{
    struct flow *f = &c->flow;
    conn_hold(c);
    if (c->dead)
        goto out;
    f->dns_latency_us = (uint64_t)(proxy_now_mono_us() - f->dns_start_us);
    if (!f->target.host_is_ip)
        proxy_metrics_dns_latency(c->w, f->dns_latency_us);
    if (!f->target.host_is_ip) {
        f->dns_resolved = 1;
        f->dns_answers_len = 0;
        for (size_t i = 0; i < naddrs; i++) {
            struct audit_ip ip;
            char text[64];
            audit_ip_from_sockaddr(&ip, (const struct sockaddr *)&addrs[i]);
            audit_ip_format(&ip, text, sizeof(text));
            size_t tl = strlen(text);
            if (f->dns_answers_len + tl + 1 > sizeof(f->dns_answers))
                break;
            memcpy(f->dns_answers + f->dns_answers_len, text, tl);
            f->dns_answers_len += tl;
            f->dns_answers[f->dns_answers_len++] = '\n';
        }
    }
    if (err != 0 || naddrs == 0) {
        conn_send_error(c, 502, "dns_failure", "the destination's name did not resolve");
        goto out;
    }
    socklen_t salen = addrs[0].ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    memcpy(&f->dest, &addrs[0], salen);
    f->destlen = salen;
    f->dest_set = 1;
    if (f->intercept) {
        /* decided now, recorded with the upstream certificate and the leaf once TLS is up */
        conn_decide_phase(c, AUDIT_PHASE_PRE_REQUEST, &f->pending_decision);
        if (f->pending_decision.action == AUDIT_ACTION_DENY) {
            struct policy_decision d = f->pending_decision;
            conn_deny_phase(c, AUDIT_PHASE_PRE_REQUEST, &d);
            goto out;
        }
        if (f->pending_decision.by_rule)
            f->allowed_by_rule = 1;
    } else if (conn_run_phase(c, AUDIT_PHASE_PRE_REQUEST) == -1) {
        goto out;
    }
    if (c->up && (f->is_connect || c->up->state != UP_IDLE || !same_addr(&c->up->addr, &f->dest)))
        conn_upstream_free(c);
    if (c->up) { /* a kept-alive connection to the same address */
        c->up->state = UP_ACTIVE;
        c->up->reused = 1;
        conn_start_forward(c);
        goto out;
    }
    if (connect_upstream(c) == -1)
        conn_send_error(c, 502, "connect_failed", "out of memory");
out:
    conn_release(c);
}

/* ---- forwarding ---- */

static void send_request_head(struct conn *c)
{
    struct flow *f = &c->flow;
    llhttp_t *p = &c->req_parser;
    enum http_framing framing = HTTP_FRAMING_NONE;
    if (f->req_chunked)
        framing = HTTP_FRAMING_CHUNKED;
    else if (p->flags & F_CONTENT_LENGTH)
        framing = HTTP_FRAMING_LENGTH;
    if (!f->req_head) {
        f->req_head = evbuffer_new();
        if (!f->req_head)
            return;
        http_build_request_head(f->req_head, &c->req, f->method, c->req.buf + f->path_off, f->path_len,
                                f->target.host, strchr(f->target.host, ':') != NULL, f->target.port, framing,
                                p->content_length);
    }
    /* a copy: the original stays until the first response byte, to resend on a stale upstream */
    evbuffer_add_buffer_reference(bufferevent_get_output(c->up->bev), f->req_head);
}

void conn_start_forward(struct conn *c)
{
    const struct proxy_config *cfg = c->cfg;
    c->state = CONN_FORWARD;
    evtimer_del(c->timer);
    llhttp_init(&c->resp_parser, HTTP_RESPONSE, &resp_settings);
    c->resp_parser.data = c;
    msg_reset(&c->resp);
    send_request_head(c);
    struct timeval tv = {.tv_sec = cfg->timeouts.upstream_response_ms / 1000,
                         .tv_usec = (cfg->timeouts.upstream_response_ms % 1000) * 1000};
    bufferevent_set_timeouts(c->up->bev, &tv, NULL);
    bufferevent_enable(c->up->bev, EV_READ | EV_WRITE);
    /* the body (if any) follows the head */
    resume_request_parser(c);
    conn_feed(c);
    if (!c->dead && c->up && evbuffer_get_length(bufferevent_get_input(c->up->bev)) > 0)
        up_feed(c);
}

/* The flow's response is complete (or the client has all it will get). */
static void flow_complete(struct conn *c)
{
    struct flow *f = &c->flow;
    const struct proxy_config *cfg = c->cfg;
    conn_flow_end(c, "completed");

    if (c->up) {
        if (llhttp_should_keep_alive(&c->resp_parser) && f->req_done && !f->resp_eof &&
            evbuffer_get_length(bufferevent_get_input(c->up->bev)) == 0 && !c->w->draining) {
            c->up->state = UP_IDLE;
            bufferevent_set_timeouts(c->up->bev, NULL, NULL);
            bufferevent_setwatermark(c->up->bev, EV_WRITE, 0, 0);
            bufferevent_enable(c->up->bev, EV_READ);
        } else {
            conn_upstream_free(c);
        }
    }
    if (f->resp_close || !f->req_done || !f->req_keepalive || c->client_eof || c->w->draining ||
        (c->intercepted && !c->up)) {
        begin_closing(c);
        return;
    }
    c->state = CONN_IDLE;
    c->got_bytes = 0;
    c->client_paused = 0;
    conn_set_timer(c, cfg->timeouts.client_idle_ms);
    bufferevent_enable(c->bev, EV_READ);
    resume_request_parser(c);
    conn_feed(c); /* a pipelined request may be waiting */
}

/* ---- response parsing ---- */

static int resp_message_begin(llhttp_t *p)
{
    struct conn *c = p->data;
    msg_reset(&c->resp);
    return 0;
}

static int resp_status(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    return msg_on_url(&c->resp, at, len);
}

static int resp_field(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    return msg_on_field(&c->resp, at, len);
}

static int resp_field_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    return c->resp.headers_done ? 0 : msg_on_field_complete(&c->resp);
}

static int resp_value(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    return msg_on_value(&c->resp, at, len);
}

static int resp_headers_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    struct flow *f = &c->flow;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    unsigned status = p->status_code;

    c->resp.headers_done = 1;
    if (f->req_head) { /* the upstream answered: no resend from here on */
        evbuffer_free(f->req_head);
        f->req_head = NULL;
    }
    if (status < 200) {
        if (status == 101)
            return -1; /* we never ask for an upgrade */
        http_build_response_head(out, &c->resp, status, HTTP_FRAMING_NONE, 0, 0);
        return 0;
    }
    f->status = (uint16_t)status;
    int ct = msg_find(&c->resp, "content-type");
    if (ct >= 0) {
        size_t n = c->resp.h[ct].val_len < sizeof(f->content_type) - 1 ? c->resp.h[ct].val_len
                                                                        : sizeof(f->content_type) - 1;
        memcpy(f->content_type, c->resp.buf + c->resp.h[ct].val_off, n);
        f->content_type[n] = '\0';
    }
    int no_body = f->is_head || status == 204 || status == 304;
    if (p->flags & F_CONTENT_LENGTH)
        f->resp_content_length = (int64_t)p->content_length;
    struct policy_input in;
    struct policy_decision d;
    policy_input_of(c, AUDIT_PHASE_POST_RESPONSE, &in);
    proxy_policy_eval(f->pc, &in, f->allowed_by_rule, &d, NULL, NULL);
    if (d.action == AUDIT_ACTION_DENY) {
        /* answered by up_feed once the parser has returned: the response never reaches the client */
        f->post_deny = d;
        f->post_denied = 1;
        return -1;
    }
    conn_emit_phase(c, AUDIT_PHASE_POST_RESPONSE, &d);

    enum http_framing framing = HTTP_FRAMING_NONE;
    if (no_body) {
        if (p->flags & F_CONTENT_LENGTH)
            framing = HTTP_FRAMING_LENGTH;
    } else if (p->flags & F_CHUNKED) {
        framing = f->client_11 ? HTTP_FRAMING_CHUNKED : HTTP_FRAMING_NONE;
    } else if (p->flags & F_CONTENT_LENGTH) {
        framing = HTTP_FRAMING_LENGTH;
    } else {
        f->resp_eof = 1;
        framing = f->client_11 ? HTTP_FRAMING_CHUNKED : HTTP_FRAMING_NONE;
    }
    f->resp_chunked = framing == HTTP_FRAMING_CHUNKED && !no_body;
    if (!no_body && framing == HTTP_FRAMING_NONE)
        f->resp_close = 1; /* the body ends with the connection */
    if (!f->req_keepalive || c->w->draining)
        f->resp_close = 1;
    http_build_response_head(out, &c->resp, status, framing, p->content_length, f->resp_close);
    f->resp_started = 1;
    return no_body ? 1 : 0;
}

static int resp_body(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    http_add_body(bufferevent_get_output(c->bev), at, len, c->flow.resp_chunked);
    c->flow.bytes_down += len;
    return 0;
}

static int resp_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    if (p->status_code < 200)
        return 0; /* an interim response: the final one follows */
    if (c->flow.resp_chunked)
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
    return HPE_PAUSED;
}

static void upstream_failed(struct conn *c, unsigned status, const char *reason, const char *text)
{
    if (c->flow.resp_started) {
        conn_flow_end(c, reason);
        conn_free(c); /* the client sees the truncation as a close */
    } else {
        conn_send_error(c, status, reason, text);
    }
}

/* Runs the response parser over the upstream's input. */
static void up_feed(struct conn *c)
{
    conn_hold(c);
    while (!c->dead && c->up && c->state == CONN_FORWARD && !c->up_paused) {
        struct evbuffer *in = bufferevent_get_input(c->up->bev);
        struct evbuffer_iovec v;
        if (evbuffer_get_length(in) == 0)
            break;
        evbuffer_peek(in, -1, NULL, &v, 1);
        enum llhttp_errno e = llhttp_execute(&c->resp_parser, v.iov_base, v.iov_len);
        size_t used = v.iov_len;
        if (e != HPE_OK) {
            const char *pos = llhttp_get_error_pos(&c->resp_parser);
            const char *base = v.iov_base;
            used = pos && pos >= base && pos <= base + v.iov_len ? (size_t)(pos - base) : v.iov_len;
        }
        evbuffer_drain(in, used);
        if (e == HPE_PAUSED) {
            flow_complete(c);
            break;
        }
        if (e != HPE_OK && c->flow.post_denied) {
            struct policy_decision d = c->flow.post_deny;
            conn_deny_phase(c, AUDIT_PHASE_POST_RESPONSE, &d);
            break;
        }
        if (e != HPE_OK) {
            upstream_failed(c, 502, "upstream_bad_response", "the upstream sent a malformed response");
            break;
        }
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) >= PROXY_HIGH_WATER) {
            c->up_paused = 1; /* client_write_cb resumes at half */
            bufferevent_setwatermark(c->bev, EV_WRITE, PROXY_HIGH_WATER / 2, 0);
            break;
        }
    }
    conn_release(c);
}

/* ---- callbacks ---- */

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (c->state == CONN_IDLE || c->state == CONN_HEAD) {
        if (!c->got_bytes) {
            c->got_bytes = 1;
            conn_set_timer(c, c->cfg->timeouts.header_read_ms);
        }
    }
    if (c->state == CONN_TUNNEL)
        return; /* tunnel.c owns the callbacks then */
    if (c->state == CONN_PEEK) {
        conn_hold(c);
        peek_hello(c);
        conn_release(c);
        return;
    }
    conn_feed(c);
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (c->state == CONN_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            conn_free(c);
        return;
    }
    if (c->up_paused) {
        c->up_paused = 0;
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        up_feed(c);
    }
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    conn_hold(c);
    if (c->state == CONN_TLS_CLIENT) {
        if (what & BEV_EVENT_CONNECTED) {
            intercept_client_ready(c);
        } else {
            c->close_reason = "client_tls_failed";
            conn_flow_end(c, "client_tls_failed");
            conn_free(c);
        }
        conn_release(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && c->state == CONN_FORWARD && c->flow.req_done) {
        /* a half-close after a whole request: the response still goes out */
        c->client_eof = 1;
        bufferevent_disable(c->bev, EV_READ);
    } else {
        conn_flow_end(c, "client_closed");
        conn_free(c);
    }
    conn_release(c);
}

static void up_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (!c->up)
        return;
    if (c->up->state == UP_IDLE) { /* nothing may arrive on an idle connection */
        conn_upstream_free(c);
        return;
    }
    up_feed(c);
}

static void up_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (c->client_paused && c->up) {
        c->client_paused = 0;
        bufferevent_setwatermark(c->up->bev, EV_WRITE, 0, 0);
        conn_feed(c);
    }
}

/* A stale kept-alive upstream closed before answering: resend the head once on a new
 * connection when nothing of a body was sent. 0 when the retry is under way. */
static int retry_fresh_upstream(struct conn *c)
{
    struct flow *f = &c->flow;
    if (!c->up->reused || f->retried || !f->req_head || f->bytes_up > 0 || !f->req_done)
        return -1;
    f->retried = 1;
    conn_upstream_free(c);
    /* the parser is paused at message complete; start_forward resumes it once connected */
    return connect_upstream(c);
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    conn_hold(c);
    if (!c->up)
        goto out;
    if (what & BEV_EVENT_CONNECTED) {
        evtimer_del(c->timer);
        c->up->state = UP_ACTIVE;
        proxy_metrics_upstream_connect(c->w, (uint64_t)(proxy_now_mono_us() - c->up->connect_start_us));
        if (c->flow.is_connect && c->flow.intercept)
            intercept_upstream_start(c);
        else if (c->flow.is_connect)
            tunnel_start(c);
        else
            conn_start_forward(c);
        goto out;
    }
    if (c->up->state == UP_IDLE) {
        conn_upstream_free(c);
        goto out;
    }
    if (c->state == CONN_CONNECTING) {
        int err = EVUTIL_SOCKET_ERROR();
        if (err == ECONNREFUSED)
            conn_send_error(c, 502, "connect_refused", "the upstream refused the connection");
        else
            conn_send_error(c, 502, "connect_failed", "cannot connect to the upstream");
        goto out;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        upstream_failed(c, 504, "upstream_timeout", "the upstream did not answer in time");
        goto out;
    }
    /* EOF or error while forwarding */
    if (c->state == CONN_FORWARD) {
        up_feed(c); /* whatever was read before the close */
        if (c->dead || c->state != CONN_FORWARD || !c->up)
            goto out;
        if (c->flow.resp_eof && (what & BEV_EVENT_EOF)) {
            enum llhttp_errno e = llhttp_finish(&c->resp_parser);
            if (e == HPE_OK || e == HPE_PAUSED) {
                if (c->flow.resp_chunked)
                    evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
                flow_complete(c);
                goto out;
            }
        }
        if (!c->flow.resp_started && retry_fresh_upstream(c) == 0)
            goto out;
        upstream_failed(c, 502, "upstream_closed", "the upstream closed the connection early");
    }
out:
    conn_release(c);
}

void conn_set_client_callbacks(struct conn *c)
{
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
}

void conn_set_up_callbacks(struct conn *c)
{
    bufferevent_setcb(c->up->bev, up_read_cb, up_write_cb, up_event_cb, c);
}

/* ---- timers and draining ---- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    conn_hold(c);
    switch (c->state) {
    case CONN_IDLE:
        if (c->got_bytes)
            conn_send_error(c, 408, "header_timeout", "the request head did not arrive in time");
        else
            conn_free(c);
        break;
    case CONN_HEAD:
        conn_send_error(c, 408, "header_timeout", "the request head did not arrive in time");
        break;
    case CONN_CONNECTING:
        conn_send_error(c, 504, "connect_timeout", "the upstream did not accept the connection in time");
        break;
    case CONN_WAIT_RING:
        admit_flow(c);
        break;
    case CONN_TLS_UP:
    case CONN_TLS_CLIENT:
        intercept_timeout(c);
        break;
    case CONN_CLOSING: /* an alert that could not be delivered in time */
        conn_free(c);
        break;
    case CONN_PEEK: /* no (whole) ClientHello in time: a server-speaks-first protocol, or a stalled client */
        hello_done(c, evbuffer_get_length(bufferevent_get_input(c->bev)) ? PROXY_CH_MALFORMED : PROXY_CH_NEED_MORE);
        break;
    default:
        break;
    }
    conn_release(c);
}

void proxy_conn_close_idle(struct conn *c)
{
    if (c->state == CONN_IDLE && !c->got_bytes)
        conn_free(c);
}

void proxy_conn_abort(struct conn *c, const char *reason)
{
    conn_flow_end(c, reason);
    conn_free(c);
}

static void init_settings(void)
{
    llhttp_settings_init(&req_settings);
    req_settings.on_message_begin = req_message_begin;
    req_settings.on_url = req_url;
    req_settings.on_header_field = req_field;
    req_settings.on_header_field_complete = req_field_complete;
    req_settings.on_header_value = req_value;
    req_settings.on_headers_complete = req_headers_complete;
    req_settings.on_body = req_body;
    req_settings.on_message_complete = req_message_complete;

    llhttp_settings_init(&resp_settings);
    resp_settings.on_message_begin = resp_message_begin;
    resp_settings.on_status = resp_status;
    resp_settings.on_header_field = resp_field;
    resp_settings.on_header_field_complete = resp_field_complete;
    resp_settings.on_header_value = resp_value;
    resp_settings.on_headers_complete = resp_headers_complete;
    resp_settings.on_body = resp_body;
    resp_settings.on_message_complete = resp_message_complete;
}

void proxy_flow_init_once(void)
{
    pthread_once(&settings_once, init_settings);
}
