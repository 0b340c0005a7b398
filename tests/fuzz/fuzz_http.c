/* tests/fuzz/fuzz_http.c - libFuzzer target: the request/response path through the llhttp glue.
 *
 * proxy/flow.c keeps its llhttp callbacks static, so this mirrors them (proxy/flow.c,
 * "request parsing" and "response parsing"): the same callback bodies over proxy/http.h's
 * header storage (msg_on_url/field/field_complete/value), a pause at each head and at each
 * message end, the feed loop of conn_feed() (resume, drain what llhttp used), then what
 * process_request_head() and send_request_head() do with a head: the header-name check, the
 * absolute-form split (proxy_parse_authority), the CONNECT authority, lookups, and
 * http_build_request_head() / http_build_response_head() into an evbuffer. Keep it in step
 * with flow.c when its callbacks change.
 *
 * Input: byte 0 picks the chunking (how the stream is cut into llhttp_execute calls, as TCP
 * reads would cut it) and the caps; the rest up to the first NUL is the client's byte stream
 * (pipelined requests), the rest after it the upstream's response stream.
 *
 * Invariants checked (abort on violation), besides ASan/UBSan: a head Vigil writes (upstream
 * or to the client) is exactly one head (one CRLF CRLF, at its end; no bare CR or LF; no other
 * control byte), carries at most one framing header, matching the framing llhttp decided, and
 * a request exactly one Host; header storage never holds more than its cap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <llhttp.h>

#include "proxy/http.h"
#include "proxy/proxy-int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* VIGIL_FUZZ_STRICT=1 also checks the open findings of tests/fuzz/README.md (ctest
 * "fuzz/http-pending" replays their reproducers that way and expects them to fail). */
static int strict;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *e = getenv("VIGIL_FUZZ_STRICT");
    (void)argc;
    (void)argv;
    strict = e && strcmp(e, "1") == 0;
    return 0;
}

struct side {
    struct msg m;
    int head_done; /* this message's head went through request_head() / response_head() */
    int complete;
    uint64_t body;
};

static int on_begin(llhttp_t *p)
{
    struct side *s = p->data;
    msg_reset(&s->m);
    s->head_done = 0;
    s->complete = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct side *s = p->data;
    return msg_on_url(&s->m, at, len);
}

static int on_field(llhttp_t *p, const char *at, size_t len)
{
    struct side *s = p->data;
    return msg_on_field(&s->m, at, len);
}

static int on_field_complete(llhttp_t *p)
{
    struct side *s = p->data;
    return s->m.headers_done ? 0 : msg_on_field_complete(&s->m);
}

static int on_value(llhttp_t *p, const char *at, size_t len)
{
    struct side *s = p->data;
    return msg_on_value(&s->m, at, len);
}

static int on_headers_complete(llhttp_t *p)
{
    struct side *s = p->data;
    s->m.headers_done = 1;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct side *s = p->data;
    s->body += len;
    (void)at;
    return 0;
}

static int on_complete(llhttp_t *p)
{
    struct side *s = p->data;
    s->complete = 1;
    return HPE_PAUSED;
}

static size_t count(const char *h, size_t n, const char *needle)
{
    size_t k = 0, l = strlen(needle);
    for (const char *p = h; (p = memmem(p, n - (size_t)(p - h), needle, l)) != NULL; p += l)
        k++;
    return k;
}

/* A head Vigil wrote: exactly one head, well formed, framed one way. */
static void check_head(struct evbuffer *out, enum http_framing framing, int request)
{
    size_t n = evbuffer_get_length(out);
    const char *h = (const char *)evbuffer_pullup(out, -1);
    if (n < 4 || !h || memcmp(h + n - 4, "\r\n\r\n", 4) != 0 || count(h, n, "\r\n\r\n") != 1)
        abort();
    const char *eol = memchr(h, '\n', n);
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)h[i];
        if (b == '\n' && (i == 0 || h[i - 1] != '\r'))
            abort();
        if (b == '\r' && (i + 1 == n || h[i + 1] != '\n'))
            abort();
        int ctl = (b < 0x20 && b != '\t' && b != '\r' && b != '\n') || b == 0x7f;
        if (h + i < eol && (ctl || (request && b == '\t')))
            abort(); /* the first line (findings F1 and F2, fixed: tests/fuzz/regressions/http/) */
        if (ctl)
            abort();
    }
    size_t cl = count(h, n, "\r\nContent-Length:") + count(h, n, "\r\ncontent-length:");
    size_t te = count(h, n, "\r\nTransfer-Encoding:") + count(h, n, "\r\ntransfer-encoding:");
    if (framing == HTTP_FRAMING_LENGTH && (cl != 1 || te != 0))
        abort();
    if (framing == HTTP_FRAMING_CHUNKED && (cl != 0 || te != 1))
        abort();
    if (request && framing == HTTP_FRAMING_NONE && (cl != 0 || te != 0))
        abort();
    if (request && count(h, n, "\r\nHost:") + count(h, n, "\r\nhost:") != 1)
        abort();
    evbuffer_drain(out, n);
}

static void check_msg(const struct msg *m)
{
    if (m->len > m->max || m->n > m->max_n || m->len > m->cap)
        abort();
    for (unsigned i = 0; i < m->n; i++)
        if ((size_t)m->h[i].name_off + m->h[i].name_len > m->len || (size_t)m->h[i].val_off + m->h[i].val_len > m->len)
            abort();
    if ((size_t)m->url_off + m->url_len > m->len)
        abort();
}

/* process_request_head() and send_request_head(), without policy, DNS or sockets. */
static void request_head(llhttp_t *p, struct side *s, struct evbuffer *out)
{
    struct msg *m = &s->m;
    check_msg(m);
    if (msg_bad_header_name(m))
        return;
    (void)msg_find(m, "proxy-authorization");
    (void)msg_connection_has(m, "close");
    const char *url = m->buf + m->url_off;
    size_t n = m->url_len;
    struct proxy_target t;
    if (llhttp_get_method(p) == HTTP_CONNECT) {
        (void)proxy_parse_authority(url, n, 0, &t);
        return;
    }
    /* parse_absolute_url() */
    if (n == 0 || url[0] == '/' || url[0] == '*' || !http_target_ok(url, n))
        return;
    const char *sep = memmem(url, n, "://", 3);
    if (!sep || sep - url != 4 || strncasecmp(url, "http", 4) != 0)
        return;
    const char *auth = sep + 3, *end = url + n, *q = auth;
    while (q < end && *q != '/' && *q != '?' && *q != '#')
        q++;
    const char *a = auth;
    for (const char *k = auth; k < q; k++)
        if (*k == '@')
            a = k + 1;
    if (proxy_parse_authority(a, (size_t)(q - a), 80, &t) == -1)
        return;
    char ip[PROXY_IP_TEXT_MAX];
    (void)proxy_normalize_ip_host(t.host, ip, sizeof(ip));
    const char *frag = memchr(q, '#', (size_t)(end - q));
    if (frag)
        end = frag;
    enum http_framing framing = HTTP_FRAMING_NONE;
    if (p->flags & F_CHUNKED)
        framing = HTTP_FRAMING_CHUNKED;
    else if (p->flags & F_CONTENT_LENGTH)
        framing = HTTP_FRAMING_LENGTH;
    http_build_request_head(out, m, llhttp_method_name((llhttp_method_t)llhttp_get_method(p)), q, (size_t)(end - q),
                            t.host, strchr(t.host, ':') != NULL, t.port, framing, p->content_length);
    check_head(out, framing, 1);
}

static void response_head(llhttp_t *p, struct side *s, struct evbuffer *out)
{
    check_msg(&s->m);
    enum http_framing framing = HTTP_FRAMING_NONE;
    if (p->flags & F_CHUNKED)
        framing = HTTP_FRAMING_CHUNKED;
    else if (p->flags & F_CONTENT_LENGTH)
        framing = HTTP_FRAMING_LENGTH;
    (void)msg_find(&s->m, "content-type");
    http_build_response_head(out, &s->m, llhttp_get_status_code(p), framing, p->content_length,
                             !llhttp_should_keep_alive(p));
    check_head(out, framing, 0);
    struct evbuffer *b = evbuffer_new();
    if (b) {
        http_add_body(b, "abc", 3, framing == HTTP_FRAMING_CHUNKED);
        evbuffer_free(b);
    }
}

/* conn_feed(): runs the parser over <data> cut into pieces of <step> bytes (0: whole). */
static void feed(llhttp_t *p, struct side *s, const char *data, size_t len, size_t step, struct evbuffer *out,
                 int request)
{
    size_t off = 0;
    int heads = 0, rounds = 0;
    while (off < len && heads < 64 && rounds++ < 100000) {
        size_t n = len - off;
        if (step && n > step)
            n = step;
        enum llhttp_errno e = llhttp_execute(p, data + off, n);
        size_t used = n;
        if (e != HPE_OK) {
            const char *pos = llhttp_get_error_pos(p);
            used = pos && pos >= data + off && pos <= data + off + n ? (size_t)(pos - (data + off)) : n;
        }
        off += used;
        if (e == HPE_OK)
            continue;
        if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
            if (s->m.headers_done && !s->head_done) {
                s->head_done = 1;
                heads++;
                if (request)
                    request_head(p, s, out);
                else
                    response_head(p, s, out);
            }
            llhttp_resume(p);
            if (e == HPE_PAUSED_UPGRADE)
                return; /* a tunnel: the rest is not HTTP */
            continue;
        }
        if (s->m.too_large)
            check_msg(&s->m);
        return; /* 400 / 431 / 502: the connection ends */
    }
    if (!request && off == len)
        (void)llhttp_finish(p); /* the upstream closed: a close-delimited body ends */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static llhttp_settings_t req_settings, resp_settings;
    static int inited;
    if (!inited) {
        llhttp_settings_init(&req_settings);
        req_settings.on_message_begin = on_begin;
        req_settings.on_url = on_url;
        req_settings.on_header_field = on_field;
        req_settings.on_header_field_complete = on_field_complete;
        req_settings.on_header_value = on_value;
        req_settings.on_headers_complete = on_headers_complete;
        req_settings.on_body = on_body;
        req_settings.on_message_complete = on_complete;
        resp_settings = req_settings;
        resp_settings.on_url = NULL;
        resp_settings.on_status = on_url;
        inited = 1;
    }
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    const char *nul = memchr(in, '\0', len);
    size_t reqlen = nul ? (size_t)(nul - in) : len;
    static const size_t steps[8] = {0, 1, 2, 3, 7, 16, 61, 512};
    size_t step = steps[mode & 7];
    /* small caps now and then, so the 431 paths run */
    size_t max_bytes = mode & 0x10 ? 96 : 65536;
    unsigned max_n = mode & 0x20 ? 4 : 100;

    struct evbuffer *out = evbuffer_new();
    struct side req = {0}, resp = {0};
    if (!out || msg_init(&req.m, max_bytes, max_n) == -1 || msg_init(&resp.m, max_bytes * 4, PROXY_MAX_HEADERS) == -1)
        goto out;
    llhttp_t rp, sp;
    llhttp_init(&rp, HTTP_REQUEST, &req_settings);
    rp.data = &req;
    feed(&rp, &req, in, reqlen, step, out, 1);
    if (nul) {
        llhttp_init(&sp, HTTP_RESPONSE, &resp_settings);
        sp.data = &resp;
        feed(&sp, &resp, nul + 1, len - reqlen - 1, step, out, 0);
    }
out:
    msg_fini(&req.m);
    msg_fini(&resp.m);
    if (out)
        evbuffer_free(out);
    return 0;
}
