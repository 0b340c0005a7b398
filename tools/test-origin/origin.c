/* tools/test-origin/origin.c - an HTTP and HTTPS origin on loopback for the integration tests.
 *
 *   vigil-test-origin [--http ADDR:PORT] [--https ADDR:PORT --cert FILE --key FILE] --ready-file FILE
 *
 * Port 0 picks a free port. Once every listener is bound, the ready file receives one line per listener,
 * "http 127.0.0.1:PORT" / "https 127.0.0.1:PORT", written to a temporary name and renamed into place so a
 * reader never sees a partial file. Runs until SIGTERM or SIGINT, then exits 0.
 *
 * Endpoints, the same on both listeners:
 *   GET  /bytes/N     N bytes 'a'..'z' repeating, Content-Length, text/plain (HEAD too)
 *   POST|PUT /echo    the request body back, application/octet-stream, X-Echo-Length: N
 *                     ("Expect: 100-continue" gets its interim 100 Continue first)
 *   GET  /chunked/N   N bytes with Transfer-Encoding: chunked, in several chunks
 *   GET  /slow/MS     an empty-ish 200 after MS milliseconds (a timer; the loop keeps serving)
 *   GET  /eof/N       N bytes with neither Content-Length nor chunked: the body ends when we close
 *   GET  /headers     the request headers as received, one "Name: value" per line
 *   GET  /set-header/NAME/VALUE   "ok\n", with the response header "NAME: VALUE" (the redaction canary)
 *   GET  /stats       "connections N\ngenerated M\n": TCP connections accepted so far on this listener,
 *                     and body bytes generated for /bytes and /chunked on all listeners (back-pressure tests)
 *
 * It is its own small HTTP/1.1 server on bufferevents rather than evhttp so that it says exactly what the
 * tests need (a body delimited by close, the headers as they arrived, a connection count) and nothing
 * else: persistent connections by default for HTTP/1.1, pipelined requests answered in order, request
 * bodies by Content-Length or chunked, large responses generated under write back-pressure instead of
 * being buffered whole. A closing connection shuts down its write side and waits (bounded) for the peer's
 * EOF before closing, so the last bytes are never lost to a reset. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_HEAD_BYTES (64 * 1024)
#define MAX_BODY_BYTES ((uint64_t)256 * 1024 * 1024)
#define MAX_GEN_BYTES ((uint64_t)1 << 36)
#define GEN_PIECE (64 * 1024)
#define GEN_HIGH (256 * 1024)
#define CHUNK_PIECE (16 * 1024)
#define LINGER_MS 2000

struct origin_listener {
    struct evconnlistener *lev;
    SSL_CTX *tls; /* NULL: plain HTTP */
    const char *scheme;
    unsigned long accepted;
    char bound[INET6_ADDRSTRLEN + 8];
};

enum conn_state {
    ST_HEAD = 0,
    ST_BODY_CL,
    ST_CHUNK_SIZE,
    ST_CHUNK_DATA,
    ST_CHUNK_CRLF,
    ST_TRAILER,
    ST_BUSY,    /* a response is pending or being written; input waits in the buffer */
    ST_CLOSING, /* write side shut; waiting for the peer's EOF or the linger timer */
};

struct conn {
    struct origin_listener *l;
    struct bufferevent *bev;
    enum conn_state st;
    int line_no;
    size_t head_bytes;
    char method[16];
    char path[2048];
    int http_minor;
    struct evbuffer *headers; /* "Name: value\n" per header line, as received */
    struct evbuffer *body;
    uint64_t content_length;
    int has_cl;
    int chunked;
    uint64_t chunk_left;
    int expect_continue; /* "Expect: 100-continue": answer 100 before reading the body */
    int want_close;      /* close once the current response is out */
    int peer_eof;
    /* the response body being generated */
    uint64_t gen_left;
    uint64_t gen_pos;
    int gen_chunked;
    int gen_active;
    struct event *timer; /* /slow and the linger on close */
    uint64_t slow_ms;
};

static void conn_process(struct conn *c);
static void conn_free(struct conn *c);

static const char *status_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    default:
        return "Unknown";
    }
}

static void conn_reset_request(struct conn *c)
{
    c->st = ST_HEAD;
    c->line_no = 0;
    c->head_bytes = 0;
    c->method[0] = '\0';
    c->path[0] = '\0';
    c->http_minor = 1;
    evbuffer_drain(c->headers, evbuffer_get_length(c->headers));
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    c->content_length = 0;
    c->has_cl = 0;
    c->chunked = 0;
    c->chunk_left = 0;
    c->expect_continue = 0;
    c->gen_left = 0;
    c->gen_pos = 0;
    c->gen_chunked = 0;
    c->gen_active = 0;
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_free(arg);
}

/* Frees <c> from the loop after <ms>: code deep in conn_process() never frees the connection it is using. */
static void conn_free_after(struct conn *c, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    c->st = ST_CLOSING;
    if (c->timer != NULL)
        event_free(c->timer);
    c->timer = evtimer_new(bufferevent_get_base(c->bev), linger_cb, c);
    if (c->timer == NULL) {
        fprintf(stderr, "vigil-test-origin: out of memory: leaking a connection\n");
        return;
    }
    evtimer_add(c->timer, &tv);
}

/* Shuts the write side (after a TLS close_notify) and waits for the peer's EOF, bounded by LINGER_MS.
 * Called with the output drained. */
static void conn_close(struct conn *c)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);

    if (c->l->tls != NULL) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl != NULL)
            SSL_shutdown(ssl);
    }
    if (fd != -1)
        shutdown(fd, SHUT_WR);
    conn_free_after(c, c->peer_eof ? 0 : LINGER_MS);
}

/* The whole response is queued: go on with the next request, or close once the output has drained. */
static void response_done(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    c->gen_active = 0;
    if (c->want_close || c->peer_eof) {
        c->want_close = 1;
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        if (evbuffer_get_length(out) == 0)
            conn_close(c);
        return;
    }
    conn_reset_request(c); /* the caller goes on parsing */
}

/* body bytes generate() produced, all listeners: a stalled reader shows as a number that stops growing */
static unsigned long long generated_total;

static void fill_pattern(char *buf, size_t n, uint64_t pos)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + (pos + i) % 26);
}

/* Generates body bytes until the output holds GEN_HIGH bytes or the body is complete. */
static void generate(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char piece[GEN_PIECE];

    while (c->gen_left > 0 && evbuffer_get_length(out) < GEN_HIGH) {
        size_t n = c->gen_chunked ? CHUNK_PIECE : GEN_PIECE;
        if (n > c->gen_left)
            n = (size_t)c->gen_left;
        fill_pattern(piece, n, c->gen_pos);
        if (c->gen_chunked)
            evbuffer_add_printf(out, "%zx\r\n", n);
        evbuffer_add(out, piece, n);
        if (c->gen_chunked)
            evbuffer_add(out, "\r\n", 2);
        c->gen_pos += n;
        c->gen_left -= n;
        generated_total += n;
    }
    if (c->gen_left == 0) {
        if (c->gen_chunked)
            evbuffer_add(out, "0\r\n\r\n", 5);
        response_done(c);
    }
}

enum body_mode {
    BODY_LENGTH = 0, /* Content-Length */
    BODY_CHUNKED,
    BODY_EOF, /* neither: the body ends when the connection closes */
};

/* Queues the status line and headers. <extra> is "Name: value\r\n" lines or NULL. */
static void respond_head(struct conn *c, int status, const char *ctype, enum body_mode mode, uint64_t length,
                         const char *extra)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (mode == BODY_EOF)
        c->want_close = 1;
    c->st = ST_BUSY;
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nServer: vigil-test-origin\r\n", status, status_reason(status));
    if (ctype != NULL)
        evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
    if (mode == BODY_LENGTH)
        evbuffer_add_printf(out, "Content-Length: %llu\r\n", (unsigned long long)length);
    else if (mode == BODY_CHUNKED)
        evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
    if (c->want_close)
        evbuffer_add_printf(out, "Connection: close\r\n");
    else if (c->http_minor == 0)
        evbuffer_add_printf(out, "Connection: keep-alive\r\n");
    if (extra != NULL)
        evbuffer_add(out, extra, strlen(extra));
    evbuffer_add(out, "\r\n", 2);
}

/* A complete response from a buffer (copied). */
static void respond_buf(struct conn *c, int status, const char *ctype, const void *data, size_t len,
                        const char *extra)
{
    respond_head(c, status, ctype, BODY_LENGTH, len, extra);
    if (strcmp(c->method, "HEAD") != 0)
        evbuffer_add(bufferevent_get_output(c->bev), data, len);
    response_done(c);
}

static void respond_error(struct conn *c, int status, const char *msg)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "%d %s: %s\n", status, status_reason(status), msg);

    c->want_close = 1;
    respond_buf(c, status, "text/plain", body, (size_t)n, NULL);
}

/* A generated body of <n> pattern bytes. */
static void respond_generated(struct conn *c, enum body_mode mode, uint64_t n)
{
    respond_head(c, 200, "text/plain", mode, n, NULL);
    if (strcmp(c->method, "HEAD") == 0) {
        response_done(c);
        return;
    }
    c->gen_left = n;
    c->gen_pos = 0;
    c->gen_chunked = mode == BODY_CHUNKED;
    c->gen_active = 1;
    bufferevent_setwatermark(c->bev, EV_WRITE, GEN_HIGH / 2, 0);
    generate(c);
}

static void slow_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    char body[64];
    int n = snprintf(body, sizeof(body), "slept %llu ms\n", (unsigned long long)c->slow_ms);

    event_free(c->timer);
    c->timer = NULL;
    respond_buf(c, 200, "text/plain", body, (size_t)n, NULL);
    conn_process(c);
}

/* Parses a decimal <s> entirely; -1 if it is not a number or exceeds <max>. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

static int is_get(const struct conn *c)
{
    return strcmp(c->method, "GET") == 0 || strcmp(c->method, "HEAD") == 0;
}

static void dispatch(struct conn *c)
{
    uint64_t n;
    const char *p = c->path;

    c->st = ST_BUSY;
    if (strncmp(p, "/bytes/", 7) == 0 || strncmp(p, "/chunked/", 9) == 0 || strncmp(p, "/eof/", 5) == 0) {
        enum body_mode mode = p[1] == 'b' ? BODY_LENGTH : p[1] == 'c' ? BODY_CHUNKED : BODY_EOF;
        if (!is_get(c)) {
            respond_error(c, 405, "GET only");
            return;
        }
        if (parse_u64(strchr(p + 1, '/') + 1, MAX_GEN_BYTES, &n) == -1) {
            respond_error(c, 400, "bad length");
            return;
        }
        respond_generated(c, mode, n);
    } else if (strcmp(p, "/echo") == 0) {
        char extra[64];
        size_t len = evbuffer_get_length(c->body);
        if (strcmp(c->method, "POST") != 0 && strcmp(c->method, "PUT") != 0) {
            respond_error(c, 405, "POST or PUT only");
            return;
        }
        snprintf(extra, sizeof(extra), "X-Echo-Length: %zu\r\n", len);
        respond_head(c, 200, "application/octet-stream", BODY_LENGTH, len, extra);
        evbuffer_add_buffer(bufferevent_get_output(c->bev), c->body);
        response_done(c);
    } else if (strncmp(p, "/slow/", 6) == 0) {
        struct timeval tv;
        if (!is_get(c)) {
            respond_error(c, 405, "GET only");
            return;
        }
        if (parse_u64(p + 6, 3600 * 1000, &n) == -1) {
            respond_error(c, 400, "bad delay");
            return;
        }
        c->slow_ms = n;
        tv.tv_sec = (time_t)(n / 1000);
        tv.tv_usec = (suseconds_t)((n % 1000) * 1000);
        c->timer = evtimer_new(bufferevent_get_base(c->bev), slow_cb, c);
        if (c->timer == NULL) {
            respond_error(c, 500, "no timer");
            return;
        }
        evtimer_add(c->timer, &tv);
    } else if (strcmp(p, "/headers") == 0) {
        size_t len = evbuffer_get_length(c->headers);
        if (!is_get(c)) {
            respond_error(c, 405, "GET only");
            return;
        }
        respond_head(c, 200, "text/plain", BODY_LENGTH, len, NULL);
        if (strcmp(c->method, "HEAD") != 0)
            evbuffer_add_buffer(bufferevent_get_output(c->bev), c->headers);
        response_done(c);
    } else if (strncmp(p, "/set-header/", 12) == 0) {
        char extra[1024];
        const char *name = p + 12, *slash = strchr(name, '/');
        if (!is_get(c)) {
            respond_error(c, 405, "GET only");
            return;
        }
        if (slash == NULL || slash == name || strpbrk(p, "\r\n") != NULL ||
            snprintf(extra, sizeof(extra), "%.*s: %s\r\n", (int)(slash - name), name, slash + 1) >= (int)sizeof(extra)) {
            respond_error(c, 400, "want /set-header/NAME/VALUE");
            return;
        }
        respond_buf(c, 200, "text/plain", "ok\n", 3, extra);
    } else if (strcmp(p, "/stats") == 0) {
        char body[96];
        int len = snprintf(body, sizeof(body), "connections %lu\ngenerated %llu\n", c->l->accepted, generated_total);
        if (!is_get(c)) {
            respond_error(c, 405, "GET only");
            return;
        }
        respond_buf(c, 200, "text/plain", body, (size_t)len, NULL);
    } else {
        respond_error(c, 404, "no such endpoint");
    }
}

/* Parses "METHOD SP target SP HTTP/1.x" into <c>; the target's query is dropped and an absolute URI reduced
 * to its path. */
static int parse_request_line(struct conn *c, const char *line)
{
    const char *sp1 = strchr(line, ' ');
    const char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    const char *target, *end, *q;
    size_t mlen, tlen;

    if (sp1 == NULL || sp2 == NULL || strchr(sp2 + 1, ' ') != NULL)
        return -1;
    mlen = (size_t)(sp1 - line);
    if (mlen == 0 || mlen >= sizeof(c->method))
        return -1;
    memcpy(c->method, line, mlen);
    c->method[mlen] = '\0';
    if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
        c->http_minor = 1;
    else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
        c->http_minor = 0;
    else
        return -1;
    target = sp1 + 1;
    end = sp2;
    if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
        const char *slash = memchr(target + 8, '/', (size_t)(end - target) > 8 ? (size_t)(end - target) - 8 : 0);
        target = slash != NULL ? slash : "/";
        if (slash == NULL)
            end = target + 1;
    }
    if (*target != '/')
        return -1;
    q = memchr(target, '?', (size_t)(end - target));
    if (q != NULL)
        end = q;
    tlen = (size_t)(end - target);
    if (tlen >= sizeof(c->path))
        return -1;
    memcpy(c->path, target, tlen);
    c->path[tlen] = '\0';
    return 0;
}

/* Does the comma-separated <list> contain <token> (case-insensitive)? */
static int has_token(const char *list, const char *token)
{
    size_t tl = strlen(token);
    const char *p = list;

    while (*p != '\0') {
        const char *e;
        size_t len;
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        e = p;
        while (*e != '\0' && *e != ',')
            e++;
        len = (size_t)(e - p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == tl && strncasecmp(p, token, tl) == 0)
            return 1;
        p = e;
    }
    return 0;
}

/* One header line; -1 with the response already queued on a bad line. */
static int parse_header(struct conn *c, char *line)
{
    char *colon, *value, *end, *ws;

    if (line[0] == ' ' || line[0] == '\t') {
        respond_error(c, 400, "obs-fold");
        return -1;
    }
    colon = strchr(line, ':');
    ws = strpbrk(line, " \t");
    if (colon == NULL || colon == line || (ws != NULL && ws < colon)) {
        respond_error(c, 400, "bad header line");
        return -1;
    }
    *colon = '\0';
    value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    end = value + strlen(value);
    while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    evbuffer_add_printf(c->headers, "%s: %s\n", line, value);

    if (strcasecmp(line, "Content-Length") == 0) {
        uint64_t n;
        if (parse_u64(value, MAX_BODY_BYTES, &n) == -1) {
            respond_error(c, 400, "bad Content-Length");
            return -1;
        }
        if (c->has_cl && n != c->content_length) {
            respond_error(c, 400, "differing Content-Length");
            return -1;
        }
        c->has_cl = 1;
        c->content_length = n;
    } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
        const char *last = strrchr(value, ',');
        last = last != NULL ? last + 1 : value;
        while (*last == ' ')
            last++;
        if (strcasecmp(last, "chunked") != 0) {
            respond_error(c, 501, "unsupported Transfer-Encoding");
            return -1;
        }
        c->chunked = 1;
    } else if (strcasecmp(line, "Expect") == 0) {
        if (strcasecmp(value, "100-continue") != 0) {
            respond_error(c, 417, "only 100-continue");
            return -1;
        }
        c->expect_continue = 1;
    } else if (strcasecmp(line, "Connection") == 0) {
        if (has_token(value, "close"))
            c->want_close = 1;
        if (has_token(value, "keep-alive") && c->http_minor == 0)
            c->want_close = 0;
    }
    return 0;
}

/* Reads one CRLF line into a malloc'd string (NULL if incomplete); counts it against the head limit. */
static char *read_line(struct conn *c, size_t *len)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    char *line = evbuffer_readln(in, len, EVBUFFER_EOL_CRLF);

    if (line == NULL && evbuffer_get_length(in) > MAX_HEAD_BYTES)
        respond_error(c, 431, "line too long");
    return line;
}

static void end_of_head(struct conn *c)
{
    if (c->chunked && c->has_cl) {
        respond_error(c, 400, "Content-Length and Transfer-Encoding");
        return;
    }
    if (c->expect_continue && c->http_minor == 1 && (c->chunked || c->content_length > 0))
        evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");
    if (c->chunked)
        c->st = ST_CHUNK_SIZE;
    else if (c->has_cl && c->content_length > 0)
        c->st = ST_BODY_CL;
    else
        dispatch(c);
}

/* Moves up to <want> bytes of body from the input to c->body; returns how many moved. */
static uint64_t take_body(struct conn *c, uint64_t want)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    uint64_t avail = evbuffer_get_length(in);
    uint64_t n = avail < want ? avail : want;

    if (evbuffer_get_length(c->body) + n > MAX_BODY_BYTES) {
        respond_error(c, 413, "body too large");
        return 0;
    }
    evbuffer_remove_buffer(in, c->body, (size_t)n);
    return n;
}

/* Parses as much of the input as the current state allows, dispatching complete requests. */
static void conn_process(struct conn *c)
{
    for (;;) {
        char *line = NULL;
        size_t len = 0;

        switch (c->st) {
        case ST_HEAD:
            if ((line = read_line(c, &len)) == NULL)
                return;
            c->head_bytes += len + 2;
            if (c->head_bytes > MAX_HEAD_BYTES) {
                respond_error(c, 431, "head too large");
            } else if (c->line_no == 0) {
                if (len > 0) { /* an empty line before the request line is tolerated (RFC 9112 2.2) */
                    c->line_no++;
                    if (parse_request_line(c, line) == -1)
                        respond_error(c, 400, "bad request line");
                    else if (c->http_minor == 0)
                        c->want_close = 1; /* until "Connection: keep-alive" */
                }
            } else if (len == 0) {
                end_of_head(c);
            } else {
                c->line_no++;
                parse_header(c, line);
            }
            break;
        case ST_BODY_CL:
            c->content_length -= take_body(c, c->content_length);
            if (c->st != ST_BODY_CL)
                break;
            if (c->content_length > 0)
                return;
            dispatch(c);
            break;
        case ST_CHUNK_SIZE: {
            char *end;
            unsigned long long n;
            if ((line = read_line(c, &len)) == NULL)
                return;
            errno = 0;
            n = strtoull(line, &end, 16);
            while (*end == ' ' || *end == '\t')
                end++;
            if (!isxdigit((unsigned char)line[0]) || errno != 0 || (*end != '\0' && *end != ';') ||
                n > MAX_BODY_BYTES) {
                respond_error(c, 400, "bad chunk size");
            } else if (n == 0) {
                c->st = ST_TRAILER;
            } else {
                c->chunk_left = n;
                c->st = ST_CHUNK_DATA;
            }
            break;
        }
        case ST_CHUNK_DATA:
            c->chunk_left -= take_body(c, c->chunk_left);
            if (c->st != ST_CHUNK_DATA)
                break;
            if (c->chunk_left > 0)
                return;
            c->st = ST_CHUNK_CRLF;
            break;
        case ST_CHUNK_CRLF:
            if ((line = read_line(c, &len)) == NULL)
                return;
            if (len != 0)
                respond_error(c, 400, "chunk not followed by CRLF");
            else
                c->st = ST_CHUNK_SIZE;
            break;
        case ST_TRAILER:
            if ((line = read_line(c, &len)) == NULL)
                return;
            if (len == 0)
                dispatch(c);
            break;
        case ST_BUSY:
            return;
        case ST_CLOSING:
            evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
            return;
        }
        free(line);
        if (c->st == ST_CLOSING)
            return;
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    conn_process(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    if (c->gen_active) {
        generate(c);
        if (c->st == ST_HEAD)
            conn_process(c);
        return;
    }
    if (c->st == ST_BUSY && c->want_close && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_close(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;

    if (what & BEV_EVENT_ERROR) {
        conn_free(c);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        /* The peer has finished sending: answer what is already complete (a half-close after the request
         * is legal), then close. A request that can no longer complete is dropped. */
        c->peer_eof = 1;
        c->want_close = 1;
        if (c->st == ST_CLOSING) {
            conn_free(c);
            return;
        }
        if (c->st != ST_BUSY)
            conn_process(c);
        if (c->st != ST_BUSY && c->st != ST_CLOSING)
            conn_free(c);
    }
}

static void conn_free(struct conn *c)
{
    if (c->timer != NULL)
        event_free(c->timer);
    bufferevent_free(c->bev);
    evbuffer_free(c->headers);
    evbuffer_free(c->body);
    free(c);
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct origin_listener *l = arg;
    struct event_base *base = evconnlistener_get_base(lev);
    struct conn *c = calloc(1, sizeof(*c));
    int one = 1;

    l->accepted++;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c == NULL)
        goto fail;
    c->l = l;
    c->headers = evbuffer_new();
    c->body = evbuffer_new();
    if (c->headers == NULL || c->body == NULL)
        goto fail;
    if (l->tls != NULL) {
        SSL *ssl = SSL_new(l->tls);
        if (ssl == NULL)
            goto fail;
        c->bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
        if (c->bev == NULL) {
            SSL_free(ssl);
            goto fail;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
        c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (c->bev == NULL)
            goto fail;
    }
    conn_reset_request(c);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return;
fail:
    fprintf(stderr, "vigil-test-origin: out of memory accepting a connection\n");
    if (c != NULL && c->bev == NULL)
        evutil_closesocket(fd);
    if (c != NULL) {
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        if (c->headers != NULL)
            evbuffer_free(c->headers);
        if (c->body != NULL)
            evbuffer_free(c->body);
        free(c);
    } else {
        evutil_closesocket(fd);
    }
}

/* "127.0.0.1:0" or "[::1]:0" into <ss> (libevent's parser refuses port 0). */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, int *sslen)
{
    char host[INET6_ADDRSTRLEN];
    const char *colon = strrchr(addr, ':');
    uint64_t port;
    size_t hl;

    memset(ss, 0, sizeof(*ss));
    if (colon == NULL || parse_u64(colon + 1, 65535, &port) == -1)
        return -1;
    hl = (size_t)(colon - addr);
    if (addr[0] == '[') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        if (hl < 2 || addr[hl - 1] != ']' || hl - 2 >= sizeof(host))
            return -1;
        memcpy(host, addr + 1, hl - 2);
        host[hl - 2] = '\0';
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *sslen = (int)sizeof(*s6);
        return inet_pton(AF_INET6, host, &s6->sin6_addr) == 1 ? 0 : -1;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        if (hl >= sizeof(host))
            return -1;
        memcpy(host, addr, hl);
        host[hl] = '\0';
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *sslen = (int)sizeof(*s4);
        return inet_pton(AF_INET, host, &s4->sin_addr) == 1 ? 0 : -1;
    }
}

static int listen_on(struct event_base *base, struct origin_listener *l, const char *addr)
{
    struct sockaddr_storage ss;
    int sslen = (int)sizeof(ss);
    socklen_t blen = sizeof(ss);
    char host[INET6_ADDRSTRLEN];
    unsigned port;

    if (parse_addr(addr, &ss, &sslen) == -1) {
        fprintf(stderr, "vigil-test-origin: bad address %s (want IPV4:PORT or [IPV6]:PORT)\n", addr);
        return -1;
    }
    l->lev = evconnlistener_new_bind(base, accept_cb, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
                                     (struct sockaddr *)&ss, sslen);
    if (l->lev == NULL) {
        fprintf(stderr, "vigil-test-origin: cannot listen on %s: %s\n", addr, strerror(errno));
        return -1;
    }
    if (getsockname(evconnlistener_get_fd(l->lev), (struct sockaddr *)&ss, &blen) == -1)
        return -1;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        snprintf(l->bound, sizeof(l->bound), "[%s]:%u", host, port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
        snprintf(l->bound, sizeof(l->bound), "%s:%u", host, port);
    }
    return 0;
}

static SSL_CTX *tls_ctx_new(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    return ctx;
fail:
    fprintf(stderr, "vigil-test-origin: TLS setup with %s / %s failed: %s\n", cert, key,
            ERR_error_string(ERR_get_error(), NULL));
    SSL_CTX_free(ctx);
    return NULL;
}

static int write_ready_file(const char *path, const struct origin_listener *ls, size_t n)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    f = fopen(tmp, "w");
    if (f == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (ls[i].lev != NULL)
            fprintf(f, "%s %s\n", ls[i].scheme, ls[i].bound);
    if (fclose(f) != 0 || rename(tmp, path) == -1)
        goto fail;
    return 0;
fail:
    fprintf(stderr, "vigil-test-origin: cannot write %s: %s\n", path, strerror(errno));
    unlink(tmp);
    return -1;
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopexit(arg, NULL);
}

static void usage(void)
{
    fprintf(stderr, "usage: vigil-test-origin [--http ADDR:PORT] [--https ADDR:PORT --cert FILE --key FILE] "
                    "--ready-file FILE\n");
}

int main(int argc, char **argv)
{
    const char *http = NULL, *https = NULL, *cert = NULL, *key = NULL, *ready = NULL;
    struct origin_listener ls[2];
    struct event_base *base = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    int rc = 1;

    memset(ls, 0, sizeof(ls));
    for (int i = 1; i < argc; i++) {
        const char **slot = strcmp(argv[i], "--http") == 0         ? &http
                            : strcmp(argv[i], "--https") == 0      ? &https
                            : strcmp(argv[i], "--cert") == 0       ? &cert
                            : strcmp(argv[i], "--key") == 0        ? &key
                            : strcmp(argv[i], "--ready-file") == 0 ? &ready
                                                                   : NULL;
        if (slot == NULL || i + 1 >= argc) {
            usage();
            return 2;
        }
        *slot = argv[++i];
    }
    if (ready == NULL || (http == NULL && https == NULL) || (https != NULL && (cert == NULL || key == NULL))) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    if (base == NULL)
        goto out;
    ls[0].scheme = "http";
    ls[1].scheme = "https";
    if (http != NULL && listen_on(base, &ls[0], http) == -1)
        goto out;
    if (https != NULL) {
        ls[1].tls = tls_ctx_new(cert, key);
        if (ls[1].tls == NULL || listen_on(base, &ls[1], https) == -1)
            goto out;
    }
    sigterm = evsignal_new(base, SIGTERM, stop_cb, base);
    sigint = evsignal_new(base, SIGINT, stop_cb, base);
    if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) == -1 || evsignal_add(sigint, NULL) == -1)
        goto out;
    if (write_ready_file(ready, ls, 2) == -1)
        goto out;
    for (size_t i = 0; i < 2; i++)
        if (ls[i].lev != NULL)
            fprintf(stderr, "vigil-test-origin: %s listening on %s\n", ls[i].scheme, ls[i].bound);
    event_base_dispatch(base);
    rc = 0;
out:
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    for (size_t i = 0; i < 2; i++) {
        if (ls[i].lev != NULL)
            evconnlistener_free(ls[i].lev);
        SSL_CTX_free(ls[i].tls);
    }
    if (base != NULL)
        event_base_free(base);
    return rc;
}
