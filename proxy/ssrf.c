/* proxy/ssrf.c - the SSRF guard's classifier, numeric host normalisation and CIDR blocks.
 *
 * The classifier is a list of (prefix, class) tables walked in the precedence order that
 * proxy/ssrf.h documents; an address is compared as bytes in network order, so IPv4 and
 * IPv6 share one prefix test. The tables are the IANA special-purpose registries
 * (RFC 6890 and successors) reduced to the classes the policy engine reports. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/ssrf.h"

struct prefix {
    uint8_t addr[16];
    uint8_t bits;
    enum proxy_ssrf_class cls;
};

/* 1 when the first <bits> bits of <a> and <net> are equal. */
static int prefix_match(const uint8_t *a, const uint8_t *net, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, net, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

static enum proxy_ssrf_class table_lookup(const struct prefix *t, size_t n, const uint8_t *a)
{
    for (size_t i = 0; i < n; i++)
        if (prefix_match(a, t[i].addr, t[i].bits))
            return t[i].cls;
    return PROXY_SSRF_PUBLIC;
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Cloud metadata and credential endpoints. All but two also sit in a denied range; the class
 * names what the destination is in the record. */
static const struct prefix v4_metadata[] = {
    { { 169, 254, 169, 254 }, 32, PROXY_SSRF_METADATA }, /* AWS, GCP, Azure, OCI, DigitalOcean, OpenStack */
    { { 169, 254, 170, 2 }, 32, PROXY_SSRF_METADATA },   /* AWS ECS task metadata and credentials */
    { { 169, 254, 170, 23 }, 32, PROXY_SSRF_METADATA },  /* AWS EKS Pod Identity agent */
    { { 100, 100, 100, 200 }, 32, PROXY_SSRF_METADATA }, /* Alibaba Cloud */
    { { 168, 63, 129, 16 }, 32, PROXY_SSRF_METADATA },   /* Azure WireServer (public space, platform-only) */
};

static const struct prefix v4_ranges[] = {
    { { 255, 255, 255, 255 }, 32, PROXY_SSRF_BROADCAST },
    { { 169, 254 }, 16, PROXY_SSRF_LINK_LOCAL },
    { { 10 }, 8, PROXY_SSRF_PRIVATE },
    { { 172, 16 }, 12, PROXY_SSRF_PRIVATE },
    { { 192, 168 }, 16, PROXY_SSRF_PRIVATE },
    { { 100, 64 }, 10, PROXY_SSRF_CGNAT },
    { { 224 }, 4, PROXY_SSRF_MULTICAST },
    { { 0 }, 8, PROXY_SSRF_RESERVED },              /* "this network" */
    { { 192, 0, 0 }, 24, PROXY_SSRF_RESERVED },     /* IETF protocol assignments */
    { { 192, 0, 2 }, 24, PROXY_SSRF_RESERVED },     /* TEST-NET-1 */
    { { 192, 88, 99 }, 24, PROXY_SSRF_RESERVED },   /* 6to4 relay anycast (deprecated, RFC 7526) */
    { { 198, 18 }, 15, PROXY_SSRF_RESERVED },       /* benchmarking */
    { { 198, 51, 100 }, 24, PROXY_SSRF_RESERVED },  /* TEST-NET-2 */
    { { 203, 0, 113 }, 24, PROXY_SSRF_RESERVED },   /* TEST-NET-3 */
    { { 240 }, 4, PROXY_SSRF_RESERVED },            /* future use (broadcast is matched first) */
};

static const struct prefix v6_metadata[] = {
    { { 0xfd, 0x00, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54 }, 128, PROXY_SSRF_METADATA }, /* fd00:ec2::254 AWS IMDS */
    { { 0xfd, 0x00, 0x0e, 0xc2, [15] = 0x23 }, 128, PROXY_SSRF_METADATA },              /* fd00:ec2::23 EKS Pod Id */
    { { 0xfd, 0x20, 0x00, 0xce, [14] = 0x02, [15] = 0x54 }, 128, PROXY_SSRF_METADATA }, /* fd20:ce::254 GCP */
};

static const struct prefix v6_embedded[] = {
    { { [10] = 0xff, [11] = 0xff }, 96, PROXY_SSRF_IPV4_EMBEDDED }, /* ::ffff:0:0/96 IPv4-mapped */
    { { [8] = 0xff, [9] = 0xff }, 96, PROXY_SSRF_IPV4_EMBEDDED },   /* ::ffff:0:0:0/96 SIIT translated */
    { { 0 }, 96, PROXY_SSRF_IPV4_EMBEDDED },                        /* ::/96 IPv4-compatible */
    { { 0x00, 0x64, 0xff, 0x9b }, 96, PROXY_SSRF_IPV4_EMBEDDED },   /* 64:ff9b::/96 NAT64 */
    { { 0x00, 0x64, 0xff, 0x9b, 0x00, 0x01 }, 48, PROXY_SSRF_IPV4_EMBEDDED }, /* 64:ff9b:1::/48 local NAT64 */
    { { 0x20, 0x02 }, 16, PROXY_SSRF_IPV4_EMBEDDED },               /* 2002::/16 6to4 */
    { { 0x20, 0x01, 0x00, 0x00 }, 32, PROXY_SSRF_IPV4_EMBEDDED },   /* 2001::/32 Teredo */
};

static const struct prefix v6_ranges[] = {
    { { 0xfe, 0x80 }, 10, PROXY_SSRF_LINK_LOCAL },
    { { 0xfc }, 7, PROXY_SSRF_UNIQUE_LOCAL },
    { { 0xff }, 8, PROXY_SSRF_MULTICAST },
    { { 0x01, 0x00 }, 64, PROXY_SSRF_RESERVED },                  /* 100::/64 discard */
    { { 0x20, 0x01, 0x00, 0x02, 0x00, 0x00 }, 48, PROXY_SSRF_RESERVED }, /* 2001:2::/48 benchmarking */
    { { 0x20, 0x01, 0x00, 0x10 }, 28, PROXY_SSRF_RESERVED },      /* 2001:10::/28 ORCHID (deprecated) */
    { { 0x20, 0x01, 0x0d, 0xb8 }, 32, PROXY_SSRF_RESERVED },      /* 2001:db8::/32 documentation */
    { { 0x3f, 0xff, 0x00 }, 20, PROXY_SSRF_RESERVED },            /* 3fff::/20 documentation (RFC 9637) */
};

static const uint8_t v6_global_unicast[16] = { 0x20 }; /* 2000::/3 */

/* Fills <family> and <bytes> (network order) from <sa>. 0, or -1 for other families. */
static int sockaddr_bytes(const struct sockaddr *sa, uint8_t *family, uint8_t bytes[16])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        *family = AF_INET;
        memset(bytes, 0, 16);
        memcpy(bytes, &sin->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        *family = AF_INET6;
        memcpy(bytes, &sin6->sin6_addr, 16);
        return 0;
    }
    return -1;
}

/* ---- self addresses ---- */

static int addr_cmp(const void *x, const void *y)
{
    const struct proxy_ssrf_addr *a = x, *b = y;
    if (a->family != b->family)
        return a->family < b->family ? -1 : 1;
    return memcmp(a->addr, b->addr, 16);
}

static int self_contains(const struct proxy_ssrf_self *self, uint8_t family, const uint8_t *bytes)
{
    struct proxy_ssrf_addr key = { .family = family };
    if (!self || self->n == 0)
        return 0;
    memcpy(key.addr, bytes, 16);
    return bsearch(&key, self->addrs, self->n, sizeof(key), addr_cmp) != NULL;
}

/* Appends without sorting; the caller sorts and deduplicates once. */
static int self_append(struct proxy_ssrf_self *self, size_t *cap, uint8_t family, const uint8_t *bytes)
{
    if (self->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct proxy_ssrf_addr *na = realloc(self->addrs, ncap * sizeof(*na));
        if (!na)
            return -1;
        self->addrs = na;
        *cap = ncap;
    }
    struct proxy_ssrf_addr *e = &self->addrs[self->n++];
    memset(e, 0, sizeof(*e));
    e->family = family;
    memcpy(e->addr, bytes, 16);
    return 0;
}

static void self_sort_unique(struct proxy_ssrf_self *self)
{
    size_t out = 0;
    if (self->n == 0)
        return;
    qsort(self->addrs, self->n, sizeof(self->addrs[0]), addr_cmp);
    for (size_t i = 1; i < self->n; i++)
        if (addr_cmp(&self->addrs[out], &self->addrs[i]) != 0)
            self->addrs[++out] = self->addrs[i];
    self->n = out + 1;
}

static int is_wildcard(uint8_t family, const uint8_t *bytes)
{
    static const uint8_t zero[16];
    return memcmp(bytes, zero, family == AF_INET ? 4 : 16) == 0;
}

void proxy_ssrf_self_fini(struct proxy_ssrf_self *self)
{
    if (!self)
        return;
    free(self->addrs);
    self->addrs = NULL;
    self->n = 0;
}

int proxy_ssrf_self_add(struct proxy_ssrf_self *self, const struct sockaddr *sa)
{
    uint8_t family, bytes[16];
    size_t cap = self->n;
    if (sockaddr_bytes(sa, &family, bytes) == -1)
        return -1;
    if (self_contains(self, family, bytes))
        return 0;
    if (self_append(self, &cap, family, bytes) == -1)
        return -1;
    self_sort_unique(self);
    return 0;
}

int proxy_ssrf_self_load(struct proxy_ssrf_self *self, const struct sockaddr_storage *listeners, size_t n)
{
    struct ifaddrs *ifs = NULL;
    size_t cap = 0;
    uint8_t family, bytes[16];
    int saved;

    proxy_ssrf_self_fini(self);
    for (size_t i = 0; i < n; i++) {
        if (sockaddr_bytes((const struct sockaddr *)&listeners[i], &family, bytes) == -1)
            continue;
        if (is_wildcard(family, bytes)) /* all interfaces: collected below */
            continue;
        if (self_append(self, &cap, family, bytes) == -1)
            goto fail;
    }
    if (getifaddrs(&ifs) == -1)
        goto fail;
    for (struct ifaddrs *ifa = ifs; ifa; ifa = ifa->ifa_next) {
        if (!ifa->ifa_addr || sockaddr_bytes(ifa->ifa_addr, &family, bytes) == -1)
            continue;
        if (self_append(self, &cap, family, bytes) == -1)
            goto fail;
    }
    freeifaddrs(ifs);
    self_sort_unique(self);
    return 0;

fail:
    saved = errno ? errno : ENOMEM;
    if (ifs)
        freeifaddrs(ifs);
    proxy_ssrf_self_fini(self);
    errno = saved;
    return -1;
}

/* ---- classifier ---- */

enum proxy_ssrf_class proxy_ssrf_classify(const struct sockaddr *sa, const struct proxy_ssrf_self *self)
{
    static const uint8_t zero[16];
    uint8_t family, a[16];
    enum proxy_ssrf_class c;

    if (sockaddr_bytes(sa, &family, a) == -1)
        return PROXY_SSRF_RESERVED;

    if (family == AF_INET) {
        if (memcmp(a, zero, 4) == 0)
            return PROXY_SSRF_UNSPECIFIED;
        if (a[0] == 127)
            return PROXY_SSRF_LOOPBACK;
        if ((c = table_lookup(v4_metadata, NELEM(v4_metadata), a)) != PROXY_SSRF_PUBLIC)
            return c;
        if (self_contains(self, family, a))
            return PROXY_SSRF_SELF;
        return table_lookup(v4_ranges, NELEM(v4_ranges), a);
    }

    if (memcmp(a, zero, 16) == 0)
        return PROXY_SSRF_UNSPECIFIED;
    if (memcmp(a, zero, 15) == 0 && a[15] == 1)
        return PROXY_SSRF_LOOPBACK;
    if ((c = table_lookup(v6_metadata, NELEM(v6_metadata), a)) != PROXY_SSRF_PUBLIC)
        return c;
    if (self_contains(self, family, a))
        return PROXY_SSRF_SELF;
    if ((c = table_lookup(v6_embedded, NELEM(v6_embedded), a)) != PROXY_SSRF_PUBLIC)
        return c;
    if ((c = table_lookup(v6_ranges, NELEM(v6_ranges), a)) != PROXY_SSRF_PUBLIC)
        return c;
    if (!prefix_match(a, v6_global_unicast, 3))
        return PROXY_SSRF_RESERVED;
    return PROXY_SSRF_PUBLIC;
}

const char *proxy_ssrf_class_name(enum proxy_ssrf_class c)
{
    switch (c) {
    case PROXY_SSRF_PUBLIC: return "public";
    case PROXY_SSRF_LOOPBACK: return "loopback";
    case PROXY_SSRF_UNSPECIFIED: return "unspecified";
    case PROXY_SSRF_PRIVATE: return "private";
    case PROXY_SSRF_CGNAT: return "cgnat";
    case PROXY_SSRF_LINK_LOCAL: return "link_local";
    case PROXY_SSRF_METADATA: return "metadata";
    case PROXY_SSRF_UNIQUE_LOCAL: return "unique_local";
    case PROXY_SSRF_MULTICAST: return "multicast";
    case PROXY_SSRF_BROADCAST: return "broadcast";
    case PROXY_SSRF_RESERVED: return "reserved";
    case PROXY_SSRF_IPV4_EMBEDDED: return "ipv4_embedded";
    case PROXY_SSRF_SELF: return "self";
    }
    return "unknown";
}

/* ---- numeric hosts ---- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* One part of an IPv4 literal, inet_aton style: "0x" hex (digits may be absent: 0), a
 * leading "0" octal, else decimal. 0 with the value in *<out>, or -1 (bad digit, empty,
 * or above 2^32-1). */
static int ipv4_number(const char *s, size_t len, uint32_t *out)
{
    unsigned base = 10;
    uint64_t v = 0;

    if (len == 0)
        return -1;
    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        len -= 2;
    } else if (len >= 2 && s[0] == '0') {
        base = 8;
        s++;
        len--;
    }
    for (size_t i = 0; i < len; i++) {
        int d = hexval(s[i]);
        if (d < 0 || (unsigned)d >= base)
            return -1;
        v = v * base + (unsigned)d;
        if (v > 0xffffffffu)
            return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int all_digits(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* A label spelled as a number, whatever its value: decimal digits, or 0x/0X and hex digits. */
static int numeric_label(const char *s, size_t len)
{
    if (all_digits(s, len))
        return 1;
    if (len < 2 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
        return 0;
    for (size_t i = 2; i < len; i++)
        if (hexval(s[i]) < 0)
            return 0;
    return 1;
}

int proxy_normalize_ip_host(const char *host, char *out, size_t outlen)
{
    size_t len = strlen(host);

    if (len == 0 || outlen < PROXY_IP_TEXT_MAX)
        return -1;

    if (strchr(host, ':')) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return -1;
        return inet_ntop(AF_INET6, &a6, out, (socklen_t)outlen) ? 1 : -1;
    }

    if (host[len - 1] == '.') /* one trailing dot: the same host */
        len--;
    if (len == 0 || host[0] == '.' || host[len - 1] == '.' || memmem(host, len, "..", 2))
        return -1; /* an empty label */

    /* Does the last label look like a number? If not, it is a name. */
    const char *last = host + len;
    while (last > host && last[-1] != '.')
        last--;
    size_t lastlen = (size_t)(host + len - last);
    if (!numeric_label(last, lastlen))
        return 0;

    /* It must be an IPv4 literal of 1 to 4 parts. */
    uint32_t parts[4];
    size_t nparts = 0;
    const char *p = host, *end = host + len;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *pe = dot ? dot : end;
        if (nparts == 4 || ipv4_number(p, (size_t)(pe - p), &parts[nparts]) == -1)
            return -1;
        nparts++;
        if (!dot)
            break;
        p = dot + 1;
    }
    uint32_t v = 0;
    for (size_t i = 0; i + 1 < nparts; i++) {
        if (parts[i] > 255)
            return -1;
        v |= parts[i] << (8 * (3 - i));
    }
    uint32_t lastpart = parts[nparts - 1];
    if (nparts > 1 && lastpart >= (1u << (8 * (5 - nparts))))
        return -1;
    v |= lastpart;

    struct in_addr a4 = { .s_addr = htonl(v) };
    return inet_ntop(AF_INET, &a4, out, (socklen_t)outlen) ? 1 : -1;
}

/* ---- CIDR blocks ---- */

static void mask_bits(uint8_t *a, unsigned bits, unsigned total)
{
    for (unsigned i = 0; i < total / 8; i++) {
        if (bits >= 8 * (i + 1))
            continue;
        if (bits <= 8 * i)
            a[i] = 0;
        else
            a[i] &= (uint8_t)(0xff << (8 - (bits - 8 * i)));
    }
}

int proxy_cidr_parse(const char *s, struct proxy_cidr *out)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    unsigned bits, maxbits;
    struct proxy_cidr c;

    memset(&c, 0, sizeof(c));
    if (hl == 0 || hl >= sizeof(host))
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (inet_pton(AF_INET, host, c.addr) == 1) {
        c.family = AF_INET;
        maxbits = 32;
    } else if (inet_pton(AF_INET6, host, c.addr) == 1) {
        c.family = AF_INET6;
        maxbits = 128;
    } else {
        return -1;
    }
    if (slash) {
        const char *b = slash + 1;
        size_t bl = strlen(b);
        if (bl == 0 || bl > 3 || !all_digits(b, bl))
            return -1;
        bits = (unsigned)atoi(b);
        if (bits > maxbits)
            return -1;
    } else {
        bits = maxbits;
    }
    mask_bits(c.addr, bits, maxbits);
    c.bits = (uint8_t)bits;

    static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
    if (c.family == AF_INET6 && bits >= 96 && memcmp(c.addr, mapped, 12) == 0) {
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
        c.family = AF_INET;
        c.bits = (uint8_t)(bits - 96);
    }
    *out = c;
    return 0;
}

int proxy_cidr_match(const struct proxy_cidr *c, const struct sockaddr *sa)
{
    static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
    uint8_t family, a[16];

    if (sockaddr_bytes(sa, &family, a) == -1)
        return 0;
    if (family == AF_INET6 && c->family == AF_INET && memcmp(a, mapped, 12) == 0) {
        memmove(a, a + 12, 4);
        family = AF_INET;
    }
    if (family != c->family)
        return 0;
    return prefix_match(a, c->addr, c->bits);
}

void proxy_cidr_format(const struct proxy_cidr *c, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    if (outlen == 0)
        return;
    if (!inet_ntop(c->family == AF_INET ? AF_INET : AF_INET6, c->addr, ip, sizeof(ip))) {
        snprintf(out, outlen, "?");
        return;
    }
    snprintf(out, outlen, "%s/%u", ip, (unsigned)c->bits);
}
