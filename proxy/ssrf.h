/* proxy/ssrf.h - the SSRF guard's address classifier, numeric host normalisation and CIDRs.
 *
 * After resolution the policy engine classifies the exact address it is about to connect
 * to; every class but PROXY_SSRF_PUBLIC is denied unless a rule allows that destination
 * explicitly (Stripe Smokescreen's classifier is the model). Hosts that are IP literals,
 * including the decimal/octal/hex forms browsers and curl accept, are normalised first so
 * that rules and the classifier see the address the connection will really go to.
 *
 * Everything here is pure computation on caller-owned memory except
 * proxy_ssrf_self_load() (getifaddrs, allocation); any thread may call any function, and a
 * loaded struct proxy_ssrf_self is read-only, so workers may share one. */
#ifndef VIGIL_PROXY_SSRF_H
#define VIGIL_PROXY_SSRF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Room for any text this header writes: an IPv6 address (INET6_ADDRSTRLEN) plus "/128". */
#define PROXY_IP_TEXT_MAX 52

/* Address classes, in no order of precedence (see proxy_ssrf_classify() for that). */
enum proxy_ssrf_class {
    PROXY_SSRF_PUBLIC = 0,     /* none of the below: allowed by the guard */
    PROXY_SSRF_LOOPBACK,       /* 127.0.0.0/8, ::1 */
    PROXY_SSRF_UNSPECIFIED,    /* 0.0.0.0, :: (Linux connects them to the host itself) */
    PROXY_SSRF_PRIVATE,        /* RFC 1918: 10/8, 172.16/12, 192.168/16 */
    PROXY_SSRF_CGNAT,          /* 100.64.0.0/10 (RFC 6598 shared address space) */
    PROXY_SSRF_LINK_LOCAL,     /* 169.254.0.0/16, fe80::/10 */
    PROXY_SSRF_METADATA,       /* cloud instance metadata and credential endpoints */
    PROXY_SSRF_UNIQUE_LOCAL,   /* fc00::/7 */
    PROXY_SSRF_MULTICAST,      /* 224.0.0.0/4, ff00::/8 */
    PROXY_SSRF_BROADCAST,      /* 255.255.255.255 */
    PROXY_SSRF_RESERVED,       /* special-purpose, documentation, benchmarking, unallocated */
    PROXY_SSRF_IPV4_EMBEDDED,  /* IPv6 forms that carry or translate to an IPv4 address */
    PROXY_SSRF_SELF,           /* an address of this proxy or of the machine it runs on */
};
#define PROXY_SSRF_NCLASSES (PROXY_SSRF_SELF + 1)

/* One address of the proxy itself: family AF_INET (4 bytes used) or AF_INET6. */
struct proxy_ssrf_addr {
    uint8_t family;
    uint8_t addr[16];
};

/* The proxy's own addresses, sorted for binary search. Caller-owned storage: fill it with
 * proxy_ssrf_self_load(), release it with proxy_ssrf_self_fini(). A zeroed struct is a valid
 * empty set. It is a snapshot: addresses the machine gains later are not in it until the
 * caller loads a new one (e.g. on reload). */
struct proxy_ssrf_self {
    struct proxy_ssrf_addr *addrs;
    size_t n;
};

/* Collects the proxy's own addresses into <self> (whose previous contents are released):
 * the addresses of <listeners> (<n> of them, borrowed for the call) and every address of
 * every interface from getifaddrs(), up or not. A wildcard listener (0.0.0.0 or ::) means
 * "all interfaces", which getifaddrs() already covers, so it adds nothing itself; the
 * interfaces are always collected because services beside the proxy (its admin listener,
 * anything else on the host) are reachable on them whatever the listeners are. Scope ids
 * of IPv6 link-local addresses are ignored (any interface's fe80::x counts). Returns 0, or -1
 * with errno set (getifaddrs or allocation failed) and <self> left empty. Slow path. */
int proxy_ssrf_self_load(struct proxy_ssrf_self *self, const struct sockaddr_storage *listeners, size_t n);

/* Adds one address to <self> (tests, and callers that learn addresses otherwise). 0, or -1
 * (not AF_INET/AF_INET6, or out of memory). */
int proxy_ssrf_self_add(struct proxy_ssrf_self *self, const struct sockaddr *sa);

/* Releases <self>'s memory and leaves it empty; NULL does nothing. */
void proxy_ssrf_self_fini(struct proxy_ssrf_self *self);

/* Classifies the destination <sa> (AF_INET or AF_INET6; the port is ignored). <self> may be
 * NULL (no self addresses). Precedence, first match wins:
 *
 *   1. UNSPECIFIED, LOOPBACK   - always the host itself, whatever <self> holds
 *   2. METADATA                - before LINK_LOCAL (169.254.169.254) and SELF (a metadata
 *                                emulator bound on the host is still the metadata service)
 *   3. SELF                    - before every range below: the proxy's own 10.x or fe80::x
 *                                address reports "self", not "private"/"link_local"
 *   4. IPV6 embedded forms     - IPV4_EMBEDDED (see below)
 *   5. the ranges: BROADCAST, LINK_LOCAL, PRIVATE, CGNAT, MULTICAST, UNIQUE_LOCAL, RESERVED
 *   6. PUBLIC
 *
 * IPv4-embedded IPv6 forms are one class of their own, denied whatever IPv4 address they
 * carry (even a public one): ::ffff:0:0/96 (mapped), ::ffff:0:0:0/96 (SIIT translated),
 * ::/96 (IPv4-compatible; :: and ::1 excepted, see 1.), 64:ff9b::/96 and 64:ff9b:1::/48
 * (NAT64), 2002::/16 (6to4), 2001::/32 (Teredo). Decoding them to classify the inner
 * address would make the guard's safety depend on how each translator on the path maps
 * them; a flat deny is simpler to reason about, and a rule that allows the IPv4 destination
 * by CIDR also matches its IPv4-mapped form (proxy_cidr_match), so mapped destinations
 * that a rule allows keep working. On a NAT64 network, name lookups that return
 * 64:ff9b::/96 answers therefore need an explicit rule.
 *
 * IPv6 outside 2000::/3 (the only block IANA allocates as global unicast) that no other
 * class covers is RESERVED. A family other than AF_INET/AF_INET6 is RESERVED (deny). */
enum proxy_ssrf_class proxy_ssrf_classify(const struct sockaddr *sa, const struct proxy_ssrf_self *self);

/* "public", "loopback", "unspecified", "private", "cgnat", "link_local", "metadata",
 * "unique_local", "multicast", "broadcast", "reserved", "ipv4_embedded", "self"; "unknown"
 * for a value outside the enum. Static strings. */
const char *proxy_ssrf_class_name(enum proxy_ssrf_class c);

/* Decides whether <host> (NUL-terminated, brackets and one trailing dot already removed by
 * proxy_parse_authority, though one trailing dot is tolerated here too) is an IP literal.
 *
 * Returns 1 and writes the canonical text into <out> (at least PROXY_IP_TEXT_MAX bytes):
 *   - IPv4 in any form inet_aton() accepts: 1 to 4 dot-separated parts, each decimal,
 *     octal (leading 0) or hex (leading 0x/0X), the last part filling the remaining bytes:
 *     "2130706433", "0177.0.0.1", "0x7f.1", "127.1" all give "127.0.0.1".
 *   - IPv6 (the host contains ':'): inet_pton(), written back with inet_ntop() ("::1").
 * Returns 0 when <host> is a name: "123.example", "1e100.net", "0xcafe.com".
 * Returns -1 when it is neither: a host whose last label is numeric (all decimal digits, or
 * 0x followed by hex digits) but which is not a valid IPv4 address ("256.1.1.1",
 * "1.2.3.4.5", "08.1.1.1", "4294967296", "example.123"), an invalid IPv6 literal (a zone id
 * "fe80::1%eth0" included), an empty host or label ("a..b", "1.2.3.4.."), or <outlen> too
 * small.
 *
 * The rule for the all-digits case is the WHATWG URL standard's "ends in a number": no
 * top-level domain is numeric (RFC 3696 §2), so such a host is never a DNS name, and it is
 * refused rather than handed to a resolver that might read it differently (glibc's
 * inet_aton also accepts trailing garbage after a space; this parser does not). Names whose
 * other labels are numeric ("1.2.3.example") are names: their resolved addresses are
 * classified like any others. */
int proxy_normalize_ip_host(const char *host, char *out, size_t outlen);

/* An address block. <family> is AF_INET (addr[0..3] used) or AF_INET6; the bits of <addr>
 * beyond <bits> are always zero. */
struct proxy_cidr {
    uint8_t family;
    uint8_t addr[16];
    uint8_t bits;
};

/* Parses "10.0.0.0/8", "2001:db8::/32", or a bare address ("10.1.2.3" = /32, "::1" = /128)
 * into <out>. Addresses are strict: dotted quads and inet_pton IPv6, no shorthand like
 * "10/8", no zone ids, no brackets. The prefix length is 0-32 or 0-128 in plain decimal.
 * Host bits set beyond the prefix ("10.1.2.3/8") are accepted and masked off (10.0.0.0/8),
 * as ip(8)'s route syntax does; a caller that wants to warn can compare with
 * proxy_cidr_format(). An IPv6 block inside ::ffff:0:0/96 with a prefix of 96 or more is
 * stored as the IPv4 block it maps ("::ffff:10.0.0.0/104" = "10.0.0.0/8"), so the mapped
 * and plain forms of a destination match the same blocks. Returns 0, or -1 on bad input. */
int proxy_cidr_parse(const char *s, struct proxy_cidr *out);

/* 1 when <sa> (AF_INET or AF_INET6) is inside <c>, else 0. An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) matches IPv4 blocks as a.b.c.d does; other embedded forms (NAT64, 6to4,
 * IPv4-compatible) are matched as the IPv6 addresses they are. */
int proxy_cidr_match(const struct proxy_cidr *c, const struct sockaddr *sa);

/* Writes "10.0.0.0/8" or "2001:db8::/32" into <out> (PROXY_IP_TEXT_MAX bytes suffice;
 * always terminated when <outlen> > 0). */
void proxy_cidr_format(const struct proxy_cidr *c, char *out, size_t outlen);

#endif
