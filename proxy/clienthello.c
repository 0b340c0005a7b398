/* proxy/clienthello.c - strict, bounded ClientHello parser (see clienthello.h).
 *
 * Two steps: the handshake records at the start of the buffer are walked and their
 * payloads joined into one bounded copy of the handshake message (so a hello split over
 * records, or a handshake header split between two, needs no special case), then the
 * message is read with a cursor whose every read checks the bytes left. Anything that
 * could be a prefix of a valid hello returns NEED_MORE; a check that can already fail on
 * the prefix (record type, version, lengths over the caps, message type) fails early, so
 * a caller peeking in steps learns of junk without waiting for PROXY_CH_MAX_PEEK bytes. */
#include <string.h>

#include "proxy/clienthello.h"

#define TLS_RECORD_HANDSHAKE 0x16
#define TLS_RECORD_HEADER 5
#define TLS_RECORD_MAX 16384 /* 2^14: TLSPlaintext.length */
#define TLS_HS_CLIENT_HELLO 1
#define TLS_HS_HEADER 4

#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define EXT_SUPPORTED_VERSIONS 43

/* A bounded read cursor: every read fails (returns -1) rather than pass <n>. */
struct rd {
    const uint8_t *p;
    size_t n;
};

static int rd_u8(struct rd *r, unsigned *v)
{
    if (r->n < 1)
        return -1;
    *v = r->p[0];
    r->p++;
    r->n--;
    return 0;
}

static int rd_u16(struct rd *r, unsigned *v)
{
    if (r->n < 2)
        return -1;
    *v = (unsigned)r->p[0] << 8 | r->p[1];
    r->p += 2;
    r->n -= 2;
    return 0;
}

static int rd_skip(struct rd *r, size_t k)
{
    if (r->n < k)
        return -1;
    r->p += k;
    r->n -= k;
    return 0;
}

/* A vector with a <width>-byte length prefix (1 or 2) as a sub-cursor, length in [min, max]. */
static int rd_vec(struct rd *r, unsigned width, size_t min, size_t max, struct rd *sub)
{
    unsigned l;
    if ((width == 1 ? rd_u8(r, &l) : rd_u16(r, &l)) == -1)
        return -1;
    if (l < min || l > max || l > r->n)
        return -1;
    sub->p = r->p;
    sub->n = l;
    r->p += l;
    r->n -= l;
    return 0;
}

/* The record header's first bytes (as many as <n>) are a plausible TLS handshake record:
 * type 22, version 3.0 to 3.4 (1.3 clients write 3.1 or 3.3; no TLS stack writes more). */
static int record_prefix_ok(const uint8_t *h, size_t n)
{
    if (n >= 1 && h[0] != TLS_RECORD_HANDSHAKE)
        return 0;
    if (n >= 2 && h[1] != 3)
        return 0;
    if (n >= 3 && h[2] > 4)
        return 0;
    return 1;
}

static int is_host_byte(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
}

/* Validates host_name <p>[<n>] and stores it lowercased, one trailing dot removed. */
static int take_sni(const uint8_t *p, size_t n, char out[256])
{
    if (n > 0 && p[n - 1] == '.')
        n--;
    if (n == 0 || n > 253)
        return -1;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (!is_host_byte(c))
            return -1;
        if (c == '.') {
            if (label == 0)
                return -1; /* leading dot or ".." */
            label = 0;
        } else if (++label > 63) {
            return -1;
        }
        out[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    if (label == 0)
        return -1; /* "name.." : an empty label after the one trailing dot removed */
    out[n] = '\0';
    return 0;
}

static int parse_sni(struct rd ext, struct proxy_clienthello *out)
{
    struct rd list;
    int have_host = 0;

    if (rd_vec(&ext, 2, 1, 0xffff, &list) == -1 || ext.n != 0)
        return -1;
    while (list.n) {
        unsigned type;
        struct rd name;
        if (rd_u8(&list, &type) == -1 || rd_vec(&list, 2, 1, 0xffff, &name) == -1)
            return -1;
        if (type != 0) /* no other name type is defined; RFC 6066 lets a server ignore them */
            continue;
        if (have_host++) /* "MUST NOT contain more than one name of the same name_type" */
            return -1;
        if (take_sni(name.p, name.n, out->sni) == -1)
            return -1;
    }
    return 0;
}

static int alpn_printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e)
            return 0;
    return 1;
}

static int parse_alpn(struct rd ext, struct proxy_clienthello *out)
{
    struct rd list;

    /* ProtocolNameList protocol_name_list<2..2^16-1>; ProtocolName<1..2^8-1> (RFC 7301) */
    if (rd_vec(&ext, 2, 2, 0xffff, &list) == -1 || ext.n != 0)
        return -1;
    out->has_alpn = 1;
    while (list.n) {
        struct rd name;
        if (rd_vec(&list, 1, 1, 0xff, &name) == -1)
            return -1;
        if (out->nalpn < PROXY_CH_MAX_ALPN && name.n < PROXY_CH_ALPN_LEN && alpn_printable(name.p, name.n)) {
            memcpy(out->alpn[out->nalpn], name.p, name.n);
            out->alpn[out->nalpn][name.n] = '\0';
            out->nalpn++;
        } else {
            out->alpn_omitted++;
        }
    }
    return 0;
}

static int parse_supported_versions(struct rd ext, struct proxy_clienthello *out)
{
    struct rd list;

    /* ProtocolVersion versions<2..254> in a ClientHello (RFC 8446 4.2.1) */
    if (rd_vec(&ext, 1, 2, 254, &list) == -1 || ext.n != 0 || list.n % 2)
        return -1;
    while (list.n) {
        unsigned v;
        if (rd_u16(&list, &v) == -1)
            return -1;
        if (v == 0x0304)
            out->has_supported_versions_tls13 = 1;
    }
    return 0;
}

/* The ClientHello body (after the 4-byte handshake header). 0, or -1: malformed. */
static int parse_body(struct rd r, struct proxy_clienthello *out)
{
    unsigned v;
    struct rd skip, exts;
    uint8_t seen[65536 / 8];

    if (rd_u16(&r, &v) == -1 || (v >> 8) != 3)
        return -1;
    out->legacy_version = (uint16_t)v;
    if (rd_skip(&r, 32) == -1) /* random */
        return -1;
    if (rd_vec(&r, 1, 0, 32, &skip) == -1) /* legacy_session_id<0..32> */
        return -1;
    if (rd_vec(&r, 2, 2, 0xfffe, &skip) == -1 || skip.n % 2) /* cipher_suites<2..2^16-2> */
        return -1;
    if (rd_vec(&r, 1, 1, 0xff, &skip) == -1) /* legacy_compression_methods<1..2^8-1> */
        return -1;
    if (r.n == 0) /* a TLS 1.2-or-older hello may end here, without extensions */
        return 0;
    if (rd_vec(&r, 2, 0, 0xffff, &exts) == -1 || r.n != 0)
        return -1;

    memset(seen, 0, sizeof(seen));
    while (exts.n) {
        unsigned type;
        struct rd data;
        if (rd_u16(&exts, &type) == -1 || rd_vec(&exts, 2, 0, 0xffff, &data) == -1)
            return -1;
        /* "There MUST NOT be more than one extension of the same type" (RFC 8446 4.2): a
         * second server_name would let the proxy and the origin see different names. */
        if (seen[type / 8] & (1u << (type % 8)))
            return -1;
        seen[type / 8] |= (uint8_t)(1u << (type % 8));
        int rc = 0;
        switch (type) {
        case EXT_SERVER_NAME:
            rc = parse_sni(data, out);
            break;
        case EXT_ALPN:
            rc = parse_alpn(data, out);
            break;
        case EXT_SUPPORTED_VERSIONS:
            rc = parse_supported_versions(data, out);
            break;
        default:
            break;
        }
        if (rc == -1)
            return -1;
    }
    return 0;
}

enum proxy_ch_result proxy_clienthello_parse(const uint8_t *buf, size_t len, struct proxy_clienthello *out)
{
    uint8_t msg[PROXY_CH_MAX_HELLO]; /* the handshake message, joined from its records */
    size_t have = 0;                 /* bytes of it gathered */
    size_t need = 0;                 /* its length, once its header is in (0: not yet) */
    size_t off = 0;                  /* start of the current record in <buf> */

    memset(out, 0, sizeof(*out));
    if (len == 0)
        return PROXY_CH_NEED_MORE;
    if (!record_prefix_ok(buf, len < 3 ? len : 3))
        return PROXY_CH_NOT_TLS;

    for (;;) {
        const uint8_t *h = buf + off;
        size_t left = len - off;

        if (left < TLS_RECORD_HEADER) {
            if (!record_prefix_ok(h, left < 3 ? left : 3))
                return PROXY_CH_MALFORMED; /* a continuation record that is not handshake */
            return PROXY_CH_NEED_MORE;
        }
        if (!record_prefix_ok(h, 3))
            return off == 0 ? PROXY_CH_NOT_TLS : PROXY_CH_MALFORMED;
        size_t rlen = (size_t)h[3] << 8 | h[4];
        if (rlen == 0 || rlen > TLS_RECORD_MAX) /* empty handshake records are forbidden (RFC 8446 5.1) */
            return PROXY_CH_MALFORMED;
        if (off + TLS_RECORD_HEADER + rlen > PROXY_CH_MAX_PEEK || have + rlen > PROXY_CH_MAX_HELLO)
            return PROXY_CH_MALFORMED;
        /* the record's payload must not run past the hello: the client sends nothing else
         * before the server's answer, so extra bytes are not a well-formed first flight */
        if (need && have + rlen > need)
            return PROXY_CH_MALFORMED;

        size_t avail = left - TLS_RECORD_HEADER < rlen ? left - TLS_RECORD_HEADER : rlen;
        memcpy(msg + have, h + TLS_RECORD_HEADER, avail);
        size_t before = have;
        have += avail;

        if (!need && have >= 1 && msg[0] != TLS_HS_CLIENT_HELLO)
            return PROXY_CH_MALFORMED;
        if (!need && have >= TLS_HS_HEADER) {
            need = TLS_HS_HEADER + ((size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3]);
            if (need > PROXY_CH_MAX_HELLO)
                return PROXY_CH_MALFORMED;
            if (before + rlen > need)
                return PROXY_CH_MALFORMED;
        }
        if (avail < rlen)
            return PROXY_CH_NEED_MORE;
        off += TLS_RECORD_HEADER + rlen;
        if (need && have == need)
            break;
    }

    struct rd body = {msg + TLS_HS_HEADER, need - TLS_HS_HEADER};
    if (parse_body(body, out) == -1) {
        memset(out, 0, sizeof(*out));
        return PROXY_CH_MALFORMED;
    }
    out->record_len = off;
    return PROXY_CH_OK;
}

const char *proxy_ch_result_str(enum proxy_ch_result r)
{
    switch (r) {
    case PROXY_CH_OK:
        return "ok";
    case PROXY_CH_NEED_MORE:
        return "need_more";
    case PROXY_CH_NOT_TLS:
        return "not_tls";
    case PROXY_CH_MALFORMED:
        return "malformed";
    }
    return "unknown";
}
