/* proxy/clienthello.h - a strict, bounded parser of the TLS ClientHello a client sends
 * first into a CONNECT tunnel.
 *
 * The tunnel peeks the client's bytes (MSG_PEEK or an evbuffer it does not drain), hands
 * them here, and learns the SNI and the offered ALPN protocols before it connects
 * upstream, so pre_dns can compare the SNI with the CONNECT host (domain fronting). The
 * bytes are never consumed: whatever the verdict, the same bytes later go upstream or to
 * the intercepting TLS stack untouched.
 *
 *   record  16 03 0x | len16 | handshake 01 | len24 | legacy_version | random[32]
 *           | session_id<0..32> | cipher_suites<2..2^16-2> | compression<1..255>
 *           | extensions<0..2^16-1>: server_name(0), alpn(16), supported_versions(43), ...
 *
 * A hello may be split over several handshake records (RFC 8446 5.1): they are
 * reassembled, up to PROXY_CH_MAX_HELLO bytes of handshake message and PROXY_CH_MAX_PEEK
 * bytes of records in all, so a caller that has peeked PROXY_CH_MAX_PEEK bytes always gets
 * an answer other than PROXY_CH_NEED_MORE. Every length is checked against its container
 * and nothing is read past <len>.
 *
 * Pure computation on caller-owned memory: any thread may call it. */
#ifndef VIGIL_PROXY_CLIENTHELLO_H
#define VIGIL_PROXY_CLIENTHELLO_H

#include <stddef.h>
#include <stdint.h>

#define PROXY_CH_MAX_HELLO 16384                        /* handshake message: 4-byte header + body */
#define PROXY_CH_MAX_PEEK (PROXY_CH_MAX_HELLO + 16 * 5) /* the records carrying it, headers included */
#define PROXY_CH_MAX_ALPN 8                             /* offered protocols kept */
#define PROXY_CH_ALPN_LEN 32                            /* room for one, NUL included */

enum proxy_ch_result {
    PROXY_CH_OK = 0,
    PROXY_CH_NEED_MORE, /* a valid prefix: peek more bytes (the client has not sent them yet) */
    PROXY_CH_NOT_TLS,   /* the stream does not start with a TLS handshake record (HTTP, SSH, ...) */
    PROXY_CH_MALFORMED, /* a TLS record, but not a well-formed ClientHello within the caps */
};

struct proxy_clienthello {
    char sni[256]; /* host_name from server_name, lowercased, one trailing dot removed; "" when absent */
    char alpn[PROXY_CH_MAX_ALPN][PROXY_CH_ALPN_LEN]; /* offered protocols, in the client's order */
    size_t nalpn;
    size_t alpn_omitted;              /* offered protocols not kept: beyond PROXY_CH_MAX_ALPN, longer than 31 bytes,
                                       * or holding bytes outside printable ASCII */
    int has_alpn;                     /* the application_layer_protocol_negotiation extension is present */
    uint16_t legacy_version;          /* ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3) */
    int has_supported_versions_tls13; /* supported_versions lists 0x0304 */
    size_t record_len;                /* bytes of the record(s) that carry the hello, headers included */
};

/* Parses the ClientHello at the start of <buf> (<len> bytes, borrowed for the call).
 * PROXY_CH_OK fills <out> entirely. Otherwise <out> is zeroed except that, for
 * PROXY_CH_NEED_MORE, nothing in it is meaningful yet. Strictness, each MALFORMED:
 * a record longer than 2^14, an empty or non-handshake record inside the hello, a first
 * handshake message that is not a ClientHello or exceeds the caps, bytes after the hello
 * in its last record, any length that overruns its container, a duplicated server_name,
 * ALPN or supported_versions extension, two host_names, an empty ALPN list or protocol,
 * and an SNI that is not a host name (bytes other than letters, digits, '-', '_' and '.';
 * an empty label; a label over 63 or a name over 253 bytes). */
enum proxy_ch_result proxy_clienthello_parse(const uint8_t *buf, size_t len, struct proxy_clienthello *out);

/* "ok", "need_more", "not_tls", "malformed": for events and diagnostics. */
const char *proxy_ch_result_str(enum proxy_ch_result r);

#endif
