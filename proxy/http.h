/* proxy/http.h - HTTP/1.1 message heads (private to proxy/): header storage filled from
 * llhttp callbacks, and the heads Vigil writes. */
#ifndef VIGIL_PROXY_HTTP_H
#define VIGIL_PROXY_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define PROXY_VIA "1.1 vigil"

struct hdr {
    uint32_t name_off, name_len;
    uint32_t val_off, val_len;
};

/* One message head: the URL (requests) or reason phrase (responses), then header names and
 * values, in one buffer capped at <max> bytes and <max_n> headers. */
struct msg {
    char *buf;
    size_t len, cap, max;
    uint32_t url_off, url_len;
    struct hdr *h;
    unsigned n, hcap, max_n;
    int field_open;   /* a header name is being received */
    int headers_done; /* later header callbacks are trailers, dropped */
    int too_large;    /* a cap was hit: 431 for requests */
};

int msg_init(struct msg *m, size_t max, unsigned max_n); /* 0, or -1 (ENOMEM) */
void msg_fini(struct msg *m);
void msg_reset(struct msg *m); /* for the next message on the connection */

/* llhttp callback bodies: 0, or -1 when a cap was hit (m->too_large set). */
int msg_on_url(struct msg *m, const char *at, size_t len);
int msg_on_field(struct msg *m, const char *at, size_t len);
int msg_on_field_complete(struct msg *m);
int msg_on_value(struct msg *m, const char *at, size_t len);

int hdr_is(const struct msg *m, unsigned i, const char *name); /* case-insensitive name match */
int msg_find(const struct msg *m, const char *name);           /* index of the first such header, or -1 */
int msg_bad_header_name(const struct msg *m);                  /* a name is empty or holds whitespace */
int msg_connection_has(const struct msg *m, const char *token); /* Connection lists <token> */

/* A request-target holds no whitespace or control bytes (RFC 9112 3.2). llhttp lets HTAB and
 * FF through; an upstream that read them as separators would see another request than the
 * policy did, so Vigil refuses such a target (400). */
int http_target_ok(const char *p, size_t n);

enum http_framing {
    HTTP_FRAMING_NONE = 0, /* no body, or (responses) delimited by close */
    HTTP_FRAMING_LENGTH,
    HTTP_FRAMING_CHUNKED,
};

/* Appends the origin-form request head Vigil sends upstream: hop-by-hop headers (and those
 * Connection names), Host, framing and Via as received are dropped; Host from the target,
 * framing from <framing>, and Via with ours appended are written. */
void http_build_request_head(struct evbuffer *out, const struct msg *m, const char *method, const char *target,
                             size_t target_len, const char *host, int host_is_v6, unsigned port,
                             enum http_framing framing, uint64_t content_length);

/* Appends the response head to the client, filtered the same way; "Connection: close"
 * when <close>. */
void http_build_response_head(struct evbuffer *out, const struct msg *m, unsigned status, enum http_framing framing,
                              uint64_t content_length, int close);

/* Appends body bytes, as one chunk when <chunked>. */
void http_add_body(struct evbuffer *out, const char *at, size_t len, int chunked);

#endif
