/* proxy/http.c - HTTP/1.1 message heads: header storage during parsing, hop-by-hop
 * filtering and the heads Vigil writes upstream and back to the client.
 *
 * A forwarded head never carries the peer's framing headers as received: Content-Length
 * and Transfer-Encoding are written from what llhttp decided, so a request that reached
 * the upstream is framed exactly one way (no smuggling through disagreeing framings). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "proxy/http.h"
#include "proxy/proxy-int.h"

int msg_init(struct msg *m, size_t max, unsigned max_n)
{
    memset(m, 0, sizeof(*m));
    m->max = max;
    m->max_n = max_n;
    m->cap = 1024;
    m->buf = malloc(m->cap);
    m->h = malloc(sizeof(*m->h) * 32);
    m->hcap = 32;
    if (!m->buf || !m->h) {
        msg_fini(m);
        return -1;
    }
    return 0;
}

void msg_fini(struct msg *m)
{
    free(m->buf);
    free(m->h);
    m->buf = NULL;
    m->h = NULL;
}

void msg_reset(struct msg *m)
{
    m->len = 0;
    m->url_off = m->url_len = 0;
    m->n = 0;
    m->field_open = 0;
    m->headers_done = 0;
    m->too_large = 0;
    /* give back memory a large head took */
    if (m->cap > 16384) {
        char *b = realloc(m->buf, 1024);
        if (b) {
            m->buf = b;
            m->cap = 1024;
        }
    }
}

static int msg_append(struct msg *m, const char *at, size_t len)
{
    if (m->len + len > m->max) {
        m->too_large = 1;
        return -1;
    }
    if (m->len + len > m->cap) {
        size_t cap = m->cap;
        while (cap < m->len + len)
            cap *= 2;
        char *b = realloc(m->buf, cap);
        if (!b) {
            m->too_large = 1;
            return -1;
        }
        m->buf = b;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, at, len);
    m->len += len;
    return 0;
}

int msg_on_url(struct msg *m, const char *at, size_t len)
{
    if (m->url_len == 0)
        m->url_off = (uint32_t)m->len;
    if (msg_append(m, at, len) == -1)
        return -1;
    m->url_len += (uint32_t)len;
    return 0;
}

int msg_on_field(struct msg *m, const char *at, size_t len)
{
    if (m->headers_done)
        return 0; /* a trailer: dropped */
    if (!m->field_open) {
        if (m->n >= m->max_n) {
            m->too_large = 1;
            return -1;
        }
        if (m->n == m->hcap) {
            struct hdr *h = realloc(m->h, sizeof(*h) * m->hcap * 2);
            if (!h) {
                m->too_large = 1;
                return -1;
            }
            m->h = h;
            m->hcap *= 2;
        }
        struct hdr *h = &m->h[m->n++];
        h->name_off = (uint32_t)m->len;
        h->name_len = 0;
        h->val_off = (uint32_t)m->len;
        h->val_len = 0;
        m->field_open = 1;
    }
    if (msg_append(m, at, len) == -1)
        return -1;
    m->h[m->n - 1].name_len += (uint32_t)len;
    m->h[m->n - 1].val_off = (uint32_t)m->len;
    return 0;
}

int msg_on_field_complete(struct msg *m)
{
    m->field_open = 0;
    /* every header costs its ": " and CRLF on the wire too */
    if (m->len + 4 > m->max) {
        m->too_large = 1;
        return -1;
    }
    return 0;
}

int msg_on_value(struct msg *m, const char *at, size_t len)
{
    if (m->headers_done || m->n == 0)
        return 0;
    if (msg_append(m, at, len) == -1)
        return -1;
    m->h[m->n - 1].val_len += (uint32_t)len;
    return 0;
}

int http_target_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] == 0x7f)
            return 0;
    return 1;
}

int hdr_is(const struct msg *m, unsigned i, const char *name)
{
    size_t n = strlen(name);
    return m->h[i].name_len == n && strncasecmp(m->buf + m->h[i].name_off, name, n) == 0;
}

int msg_find(const struct msg *m, const char *name)
{
    for (unsigned i = 0; i < m->n; i++)
        if (hdr_is(m, i, name))
            return (int)i;
    return -1;
}

int msg_bad_header_name(const struct msg *m)
{
    for (unsigned i = 0; i < m->n; i++) {
        const char *p = m->buf + m->h[i].name_off;
        if (m->h[i].name_len == 0)
            return 1;
        for (uint32_t k = 0; k < m->h[i].name_len; k++)
            if (p[k] == ' ' || p[k] == '\t')
                return 1;
    }
    return 0;
}

/* Is the token <name> (<len>) listed in any Connection header of <m>? */
static int named_by_connection(const struct msg *m, const char *name, size_t len)
{
    for (unsigned i = 0; i < m->n; i++) {
        if (!hdr_is(m, i, "connection"))
            continue;
        const char *v = m->buf + m->h[i].val_off, *end = v + m->h[i].val_len;
        while (v < end) {
            while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
                v++;
            const char *s = v;
            while (v < end && *v != ',' && *v != ' ' && *v != '\t')
                v++;
            if ((size_t)(v - s) == len && strncasecmp(s, name, len) == 0)
                return 1;
        }
    }
    return 0;
}

int msg_connection_has(const struct msg *m, const char *token)
{
    return named_by_connection(m, token, strlen(token));
}

/* Headers that never cross the proxy, plus the framing ones Vigil writes itself. */
static int drop_header(const struct msg *m, unsigned i, int drop_host)
{
    static const char *const hop[] = {"connection", "proxy-connection", "keep-alive", "te", "trailer", "upgrade",
                                      "proxy-authorization", "proxy-authenticate", "transfer-encoding",
                                      "content-length", "via", NULL};
    for (const char *const *h = hop; *h; h++)
        if (hdr_is(m, i, *h))
            return 1;
    if (drop_host && hdr_is(m, i, "host"))
        return 1;
    return named_by_connection(m, m->buf + m->h[i].name_off, m->h[i].name_len);
}

static void add_headers(struct evbuffer *out, const struct msg *m, int drop_host)
{
    for (unsigned i = 0; i < m->n; i++) {
        if (drop_header(m, i, drop_host))
            continue;
        evbuffer_add(out, m->buf + m->h[i].name_off, m->h[i].name_len);
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, m->buf + m->h[i].val_off, m->h[i].val_len);
        evbuffer_add(out, "\r\n", 2);
    }
}

/* Via: the values received, then ours. */
static void add_via(struct evbuffer *out, const struct msg *m)
{
    evbuffer_add(out, "Via: ", 5);
    for (unsigned i = 0; i < m->n; i++) {
        if (!hdr_is(m, i, "via") || m->h[i].val_len == 0)
            continue;
        evbuffer_add(out, m->buf + m->h[i].val_off, m->h[i].val_len);
        evbuffer_add(out, ", ", 2);
    }
    evbuffer_add(out, PROXY_VIA "\r\n", sizeof(PROXY_VIA) + 1);
}

void http_build_request_head(struct evbuffer *out, const struct msg *m, const char *method, const char *target,
                             size_t target_len, const char *host, int host_is_v6, unsigned port,
                             enum http_framing framing, uint64_t content_length)
{
    evbuffer_add_printf(out, "%s ", method);
    if (target_len == 0 || target[0] != '/') /* "http://h" and "http://h?q" have the path "/" */
        evbuffer_add(out, "/", 1);
    evbuffer_add(out, target, target_len);
    evbuffer_add(out, " HTTP/1.1\r\n", 11);
    /* absolute-form: the request-target's authority replaces any Host received (RFC 9112 3.2.2) */
    if (port == 80)
        evbuffer_add_printf(out, host_is_v6 ? "Host: [%s]\r\n" : "Host: %s\r\n", host);
    else
        evbuffer_add_printf(out, host_is_v6 ? "Host: [%s]:%u\r\n" : "Host: %s:%u\r\n", host, port);
    add_headers(out, m, 1);
    if (framing == HTTP_FRAMING_CHUNKED)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    else if (framing == HTTP_FRAMING_LENGTH)
        evbuffer_add_printf(out, "Content-Length: %llu\r\n", (unsigned long long)content_length);
    add_via(out, m);
    evbuffer_add(out, "\r\n", 2);
}

void http_build_response_head(struct evbuffer *out, const struct msg *m, unsigned status, enum http_framing framing,
                              uint64_t content_length, int close)
{
    evbuffer_add_printf(out, "HTTP/1.1 %u ", status);
    /* reason-phrase = *( HTAB / SP / VCHAR / obs-text ): llhttp lets other bytes through, and
     * they are not passed on; a phrase that has them is replaced by the standard one */
    int ok = m->url_len > 0;
    for (uint32_t i = 0; ok && i < m->url_len; i++) {
        unsigned char ch = (unsigned char)m->buf[m->url_off + i];
        ok = ch == '\t' || (ch >= 0x20 && ch != 0x7f);
    }
    if (ok)
        evbuffer_add(out, m->buf + m->url_off, m->url_len);
    else
        evbuffer_add_printf(out, "%s", proxy_status_phrase(status));
    evbuffer_add(out, "\r\n", 2);
    add_headers(out, m, 0);
    if (framing == HTTP_FRAMING_CHUNKED)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    else if (framing == HTTP_FRAMING_LENGTH)
        evbuffer_add_printf(out, "Content-Length: %llu\r\n", (unsigned long long)content_length);
    if (close)
        evbuffer_add(out, "Connection: close\r\n", 19);
    add_via(out, m);
    evbuffer_add(out, "\r\n", 2);
}

void http_add_body(struct evbuffer *out, const char *at, size_t len, int chunked)
{
    if (len == 0)
        return;
    if (chunked)
        evbuffer_add_printf(out, "%zx\r\n", len);
    evbuffer_add(out, at, len);
    if (chunked)
        evbuffer_add(out, "\r\n", 2);
}
