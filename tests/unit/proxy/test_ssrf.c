/* tests/unit/proxy/test_ssrf.c - the SSRF classifier, numeric host normalisation, CIDRs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "proxy/ssrf.h"

/* <ip> (v4 or v6 text) as a sockaddr. */
static struct sockaddr_storage sa_of(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(443);
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(443);
    }
    return ss;
}

static enum proxy_ssrf_class classify_self(const char *ip, const struct proxy_ssrf_self *self)
{
    struct sockaddr_storage ss = sa_of(ip);
    return proxy_ssrf_classify((const struct sockaddr *)&ss, self);
}

static enum proxy_ssrf_class classify(const char *ip)
{
    return classify_self(ip, NULL);
}

struct want {
    const char *ip;
    enum proxy_ssrf_class cls;
};

static void check_all(const struct want *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        enum proxy_ssrf_class got = classify(w[i].ip);
        if (got != w[i].cls)
            fail_msg("%s: got %s, want %s", w[i].ip, proxy_ssrf_class_name(got), proxy_ssrf_class_name(w[i].cls));
    }
}

#define CHECK_ALL(w) check_all((w), sizeof(w) / sizeof((w)[0]))

/* every IPv4 range starts and ends where the registry says, with public space on both sides */
static void test_ssrf_ipv4_ranges_boundaries(void **state)
{
    static const struct want w[] = {
        { "0.0.0.0", PROXY_SSRF_UNSPECIFIED },
        { "0.0.0.1", PROXY_SSRF_RESERVED },
        { "0.255.255.255", PROXY_SSRF_RESERVED },
        { "1.0.0.0", PROXY_SSRF_PUBLIC },
        { "9.255.255.255", PROXY_SSRF_PUBLIC },
        { "10.0.0.0", PROXY_SSRF_PRIVATE },
        { "10.255.255.255", PROXY_SSRF_PRIVATE },
        { "11.0.0.0", PROXY_SSRF_PUBLIC },
        { "100.63.255.255", PROXY_SSRF_PUBLIC },
        { "100.64.0.0", PROXY_SSRF_CGNAT },
        { "100.127.255.255", PROXY_SSRF_CGNAT },
        { "100.128.0.0", PROXY_SSRF_PUBLIC },
        { "126.255.255.255", PROXY_SSRF_PUBLIC },
        { "127.0.0.0", PROXY_SSRF_LOOPBACK },
        { "127.0.0.1", PROXY_SSRF_LOOPBACK },
        { "127.255.255.255", PROXY_SSRF_LOOPBACK },
        { "128.0.0.0", PROXY_SSRF_PUBLIC },
        { "169.253.255.255", PROXY_SSRF_PUBLIC },
        { "169.254.0.0", PROXY_SSRF_LINK_LOCAL },
        { "169.254.169.253", PROXY_SSRF_LINK_LOCAL },
        { "169.254.169.255", PROXY_SSRF_LINK_LOCAL },
        { "169.254.255.255", PROXY_SSRF_LINK_LOCAL },
        { "169.255.0.0", PROXY_SSRF_PUBLIC },
        { "172.15.255.255", PROXY_SSRF_PUBLIC },
        { "172.16.0.0", PROXY_SSRF_PRIVATE },
        { "172.31.255.255", PROXY_SSRF_PRIVATE },
        { "172.32.0.0", PROXY_SSRF_PUBLIC },
        { "191.255.255.255", PROXY_SSRF_PUBLIC },
        { "192.0.0.0", PROXY_SSRF_RESERVED },
        { "192.0.0.255", PROXY_SSRF_RESERVED },
        { "192.0.1.0", PROXY_SSRF_PUBLIC },
        { "192.0.2.0", PROXY_SSRF_RESERVED },
        { "192.0.2.255", PROXY_SSRF_RESERVED },
        { "192.0.3.0", PROXY_SSRF_PUBLIC },
        { "192.88.98.255", PROXY_SSRF_PUBLIC },
        { "192.88.99.1", PROXY_SSRF_RESERVED },
        { "192.88.100.0", PROXY_SSRF_PUBLIC },
        { "192.167.255.255", PROXY_SSRF_PUBLIC },
        { "192.168.0.0", PROXY_SSRF_PRIVATE },
        { "192.168.255.255", PROXY_SSRF_PRIVATE },
        { "192.169.0.0", PROXY_SSRF_PUBLIC },
        { "198.17.255.255", PROXY_SSRF_PUBLIC },
        { "198.18.0.0", PROXY_SSRF_RESERVED },
        { "198.19.255.255", PROXY_SSRF_RESERVED },
        { "198.20.0.0", PROXY_SSRF_PUBLIC },
        { "198.51.99.255", PROXY_SSRF_PUBLIC },
        { "198.51.100.0", PROXY_SSRF_RESERVED },
        { "198.51.100.255", PROXY_SSRF_RESERVED },
        { "198.51.101.0", PROXY_SSRF_PUBLIC },
        { "203.0.112.255", PROXY_SSRF_PUBLIC },
        { "203.0.113.0", PROXY_SSRF_RESERVED },
        { "203.0.113.255", PROXY_SSRF_RESERVED },
        { "203.0.114.0", PROXY_SSRF_PUBLIC },
        { "223.255.255.255", PROXY_SSRF_PUBLIC },
        { "224.0.0.0", PROXY_SSRF_MULTICAST },
        { "239.255.255.255", PROXY_SSRF_MULTICAST },
        { "240.0.0.0", PROXY_SSRF_RESERVED },
        { "255.255.255.254", PROXY_SSRF_RESERVED },
        { "255.255.255.255", PROXY_SSRF_BROADCAST },
        { "8.8.8.8", PROXY_SSRF_PUBLIC },
        { "1.1.1.1", PROXY_SSRF_PUBLIC },
    };
    (void)state;
    CHECK_ALL(w);
}

/* metadata endpoints win over link-local, CGNAT and public, and only the exact addresses */
static void test_ssrf_metadata_wins(void **state)
{
    static const struct want w[] = {
        { "169.254.169.254", PROXY_SSRF_METADATA },
        { "169.254.170.2", PROXY_SSRF_METADATA },
        { "169.254.170.23", PROXY_SSRF_METADATA },
        { "169.254.170.3", PROXY_SSRF_LINK_LOCAL },
        { "100.100.100.200", PROXY_SSRF_METADATA },
        { "100.100.100.201", PROXY_SSRF_CGNAT },
        { "168.63.129.16", PROXY_SSRF_METADATA },
        { "168.63.129.17", PROXY_SSRF_PUBLIC },
        { "fd00:ec2::254", PROXY_SSRF_METADATA },
        { "fd00:ec2::23", PROXY_SSRF_METADATA },
        { "fd00:ec2::253", PROXY_SSRF_UNIQUE_LOCAL },
        { "fd20:ce::254", PROXY_SSRF_METADATA },
    };
    (void)state;
    CHECK_ALL(w);
}

/* IPv6 special ranges, with the first address outside each */
static void test_ssrf_ipv6_ranges_boundaries(void **state)
{
    static const struct want w[] = {
        { "::", PROXY_SSRF_UNSPECIFIED },
        { "::1", PROXY_SSRF_LOOPBACK },
        { "::2", PROXY_SSRF_IPV4_EMBEDDED },
        { "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_RESERVED },
        { "fe80::", PROXY_SSRF_LINK_LOCAL },
        { "fe80::1", PROXY_SSRF_LINK_LOCAL },
        { "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_LINK_LOCAL },
        { "fec0::1", PROXY_SSRF_RESERVED },
        { "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_RESERVED },
        { "fc00::", PROXY_SSRF_UNIQUE_LOCAL },
        { "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_UNIQUE_LOCAL },
        { "fe00::", PROXY_SSRF_RESERVED },
        { "ff00::", PROXY_SSRF_MULTICAST },
        { "ff02::1", PROXY_SSRF_MULTICAST },
        { "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_MULTICAST },
        { "100::", PROXY_SSRF_RESERVED },
        { "100::ffff:ffff:ffff:ffff", PROXY_SSRF_RESERVED },
        { "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_PUBLIC },
        { "2001:db8::", PROXY_SSRF_RESERVED },
        { "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_RESERVED },
        { "2001:db9::", PROXY_SSRF_PUBLIC },
        { "2001:2::1", PROXY_SSRF_RESERVED },
        { "2001:2:1::1", PROXY_SSRF_PUBLIC },
        { "2001:10::1", PROXY_SSRF_RESERVED },
        { "2001:1f:ffff::1", PROXY_SSRF_RESERVED },
        { "2001:20::1", PROXY_SSRF_PUBLIC },
        { "3fff::1", PROXY_SSRF_RESERVED },
        { "3fff:fff:ffff::1", PROXY_SSRF_RESERVED },
        { "3fff:1000::1", PROXY_SSRF_PUBLIC },
        { "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_RESERVED }, /* below 2000::/3 */
        { "2000::", PROXY_SSRF_PUBLIC },
        { "2606:4700:4700::1111", PROXY_SSRF_PUBLIC },
        { "2a00:1450:4001:81c::200e", PROXY_SSRF_PUBLIC },
        { "3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_PUBLIC },
        { "4000::", PROXY_SSRF_RESERVED }, /* above 2000::/3 */
    };
    (void)state;
    CHECK_ALL(w);
}

/* every IPv6 form that embeds or translates to IPv4 is its own class, public inner address or not */
static void test_ssrf_ipv6_embedded_forms_denied(void **state)
{
    static const struct want w[] = {
        /* ::ffff:0:0/96 mapped */
        { "::ffff:127.0.0.1", PROXY_SSRF_IPV4_EMBEDDED },
        { "::ffff:8.8.8.8", PROXY_SSRF_IPV4_EMBEDDED },
        { "::ffff:169.254.169.254", PROXY_SSRF_IPV4_EMBEDDED },
        { "::ffff:0.0.0.0", PROXY_SSRF_IPV4_EMBEDDED },
        { "::fffe:ffff:ffff", PROXY_SSRF_RESERVED },      /* between compatible and mapped */
        { "::1:0:0:0", PROXY_SSRF_RESERVED },             /* outside every embedded block */
        /* ::ffff:0:0:0/96 SIIT */
        { "::ffff:0:7f00:1", PROXY_SSRF_IPV4_EMBEDDED },
        /* ::/96 IPv4-compatible */
        { "::127.0.0.1", PROXY_SSRF_IPV4_EMBEDDED },
        { "::8.8.8.8", PROXY_SSRF_IPV4_EMBEDDED },
        { "::ffff:ffff", PROXY_SSRF_IPV4_EMBEDDED },
        /* 64:ff9b::/96 NAT64 */
        { "64:ff9b::", PROXY_SSRF_IPV4_EMBEDDED },
        { "64:ff9b::7f00:1", PROXY_SSRF_IPV4_EMBEDDED },
        { "64:ff9b::8.8.8.8", PROXY_SSRF_IPV4_EMBEDDED },
        { "64:ff9b::ffff:ffff", PROXY_SSRF_IPV4_EMBEDDED },
        { "64:ff9b::1:0:0", PROXY_SSRF_RESERVED }, /* past the /96 */
        /* 64:ff9b:1::/48 local-use NAT64 */
        { "64:ff9b:1::a9fe:a9fe", PROXY_SSRF_IPV4_EMBEDDED },
        { "64:ff9b:1:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_IPV4_EMBEDDED },
        { "64:ff9b:2::", PROXY_SSRF_RESERVED },
        /* 2002::/16 6to4 */
        { "2002:7f00:1::", PROXY_SSRF_IPV4_EMBEDDED },
        { "2002:a9fe:a9fe::1", PROXY_SSRF_IPV4_EMBEDDED },
        { "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_IPV4_EMBEDDED },
        { "2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_PUBLIC },
        { "2003::", PROXY_SSRF_PUBLIC },
        /* 2001::/32 Teredo */
        { "2001::", PROXY_SSRF_IPV4_EMBEDDED },
        { "2001:0:4136:e378:8000:63bf:3fff:fdd2", PROXY_SSRF_IPV4_EMBEDDED },
        { "2001:0:ffff:ffff:ffff:ffff:ffff:ffff", PROXY_SSRF_IPV4_EMBEDDED },
        { "2001:1::1", PROXY_SSRF_PUBLIC },
    };
    (void)state;
    CHECK_ALL(w);
}

/* the proxy's own addresses are "self", after loopback/unspecified/metadata, before the ranges */
static void test_ssrf_self_addresses(void **state)
{
    struct proxy_ssrf_self self = { 0 };
    struct sockaddr_storage a = sa_of("10.1.2.3"), b = sa_of("203.0.113.7"), c = sa_of("2001:db8::5"),
                            d = sa_of("127.0.0.1"), e = sa_of("169.254.169.254"), f = sa_of("8.8.4.4");
    (void)state;
    assert_int_equal(proxy_ssrf_self_add(&self, (struct sockaddr *)&a), 0);
    assert_int_equal(proxy_ssrf_self_add(&self, (struct sockaddr *)&b), 0);
    assert_int_equal(proxy_ssrf_self_add(&self, (struct sockaddr *)&c), 0);
    assert_int_equal(proxy_ssrf_self_add(&self, (struct sockaddr *)&a), 0); /* duplicates collapse */
    assert_int_equal(proxy_ssrf_self_add(&self, (struct sockaddr *)&d), 0);
    assert_int_equal(proxy_ssrf_self_add(&self, (struct sockaddr *)&e), 0);
    assert_int_equal(proxy_ssrf_self_add(&self, (struct sockaddr *)&f), 0);
    assert_int_equal(self.n, 6);

    assert_int_equal(classify_self("10.1.2.3", &self), PROXY_SSRF_SELF);
    assert_int_equal(classify_self("10.1.2.4", &self), PROXY_SSRF_PRIVATE);
    assert_int_equal(classify_self("203.0.113.7", &self), PROXY_SSRF_SELF);
    assert_int_equal(classify_self("2001:db8::5", &self), PROXY_SSRF_SELF);
    assert_int_equal(classify_self("2001:db8::6", &self), PROXY_SSRF_RESERVED);
    assert_int_equal(classify_self("8.8.4.4", &self), PROXY_SSRF_SELF); /* a public address of ours */
    assert_int_equal(classify_self("8.8.8.8", &self), PROXY_SSRF_PUBLIC);
    assert_int_equal(classify_self("127.0.0.1", &self), PROXY_SSRF_LOOPBACK);
    assert_int_equal(classify_self("169.254.169.254", &self), PROXY_SSRF_METADATA);
    assert_int_equal(classify_self("::ffff:10.1.2.3", &self), PROXY_SSRF_IPV4_EMBEDDED); /* family matters */

    proxy_ssrf_self_fini(&self);
    assert_int_equal(self.n, 0);
    assert_null(self.addrs);
    assert_int_equal(classify_self("10.1.2.3", &self), PROXY_SSRF_PRIVATE);
    proxy_ssrf_self_fini(NULL);
}

/* loading takes the specific listeners, skips wildcards, and includes the machine's interfaces */
static void test_ssrf_self_load_listeners_and_interfaces(void **state)
{
    struct proxy_ssrf_self self = { 0 };
    struct sockaddr_storage l[3] = { sa_of("192.0.2.77"), sa_of("0.0.0.0"), sa_of("::") };
    (void)state;
    assert_int_equal(proxy_ssrf_self_load(&self, l, 3), 0);
    assert_true(self.n >= 2); /* the listener plus lo's 127.0.0.1 at least */
    assert_int_equal(classify_self("192.0.2.77", &self), PROXY_SSRF_SELF);
    assert_int_equal(classify_self("192.0.2.78", &self), PROXY_SSRF_RESERVED);
    for (size_t i = 0; i < self.n; i++) { /* the wildcards themselves are not in the set */
        static const uint8_t zero[16];
        assert_false(memcmp(self.addrs[i].addr, zero, 16) == 0);
    }
    /* reloading replaces the previous contents */
    assert_int_equal(proxy_ssrf_self_load(&self, NULL, 0), 0);
    assert_int_equal(classify_self("192.0.2.77", &self), PROXY_SSRF_RESERVED);
    proxy_ssrf_self_fini(&self);
}

/* a non-IP family is denied as reserved; every class has its documented name */
static void test_ssrf_class_names_and_other_family(void **state)
{
    static const char *const names[PROXY_SSRF_NCLASSES] = {
        "public", "loopback", "unspecified", "private", "cgnat", "link_local", "metadata",
        "unique_local", "multicast", "broadcast", "reserved", "ipv4_embedded", "self",
    };
    struct sockaddr_storage ss;
    (void)state;
    for (int c = 0; c < PROXY_SSRF_NCLASSES; c++)
        assert_string_equal(proxy_ssrf_class_name((enum proxy_ssrf_class)c), names[c]);
    assert_string_equal(proxy_ssrf_class_name((enum proxy_ssrf_class)99), "unknown");
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    assert_int_equal(proxy_ssrf_classify((struct sockaddr *)&ss, NULL), PROXY_SSRF_RESERVED);
}

static void norm_is(const char *host, int want_rc, const char *want)
{
    char out[PROXY_IP_TEXT_MAX];
    int rc = proxy_normalize_ip_host(host, out, sizeof(out));
    if (rc != want_rc)
        fail_msg("%s: rc %d, want %d", host, rc, want_rc);
    if (want && strcmp(out, want) != 0)
        fail_msg("%s: gave %s, want %s", host, out, want);
}

/* every IPv4 spelling that inet_aton accepts becomes the dotted quad */
static void test_ssrf_normalize_ipv4_forms(void **state)
{
    (void)state;
    norm_is("127.0.0.1", 1, "127.0.0.1");
    norm_is("2130706433", 1, "127.0.0.1");
    norm_is("0177.0.0.1", 1, "127.0.0.1");
    norm_is("0177.00.000.01", 1, "127.0.0.1");
    norm_is("0x7f.1", 1, "127.0.0.1");
    norm_is("0X7F.0X0.0x0.0x1", 1, "127.0.0.1");
    norm_is("0x7f000001", 1, "127.0.0.1");
    norm_is("017700000001", 1, "127.0.0.1");
    norm_is("127.1", 1, "127.0.0.1");
    norm_is("127.0.1", 1, "127.0.0.1");
    norm_is("169.254.43518", 1, "169.254.169.254");
    norm_is("0xa9.0xfe.0xa9.0xfe", 1, "169.254.169.254");
    norm_is("2852039166", 1, "169.254.169.254");
    norm_is("0", 1, "0.0.0.0");
    norm_is("0x", 1, "0.0.0.0");
    norm_is("4294967295", 1, "255.255.255.255");
    norm_is("1.2.3.4.", 1, "1.2.3.4");       /* one trailing dot */
    norm_is("10.0.0.1", 1, "10.0.0.1");
    norm_is("1.16777215", 1, "1.255.255.255");
    norm_is("1.2.65535", 1, "1.2.255.255");
}

/* IPv6 literals come back in inet_ntop's canonical form */
static void test_ssrf_normalize_ipv6(void **state)
{
    (void)state;
    norm_is("::1", 1, "::1");
    norm_is("0:0:0:0:0:0:0:1", 1, "::1");
    norm_is("FE80:0000::0001", 1, "fe80::1");
    norm_is("::ffff:127.0.0.1", 1, "::ffff:127.0.0.1");
    norm_is("::ffff:7f00:1", 1, "::ffff:127.0.0.1");
    norm_is("fe80::1%eth0", -1, NULL);
    norm_is("1::2::3", -1, NULL);
    norm_is(":", -1, NULL);
}

/* names are names; numeric-looking hosts that are not addresses are refused */
static void test_ssrf_normalize_names_and_invalid(void **state)
{
    (void)state;
    norm_is("example.com", 0, NULL);
    norm_is("123.example", 0, NULL);
    norm_is("1e100.net", 0, NULL);
    norm_is("0xcafe.com", 0, NULL);
    norm_is("1.2.3.example", 0, NULL);
    norm_is("localhost", 0, NULL);
    norm_is("0x1g", 0, NULL);             /* not hex: a name */
    norm_is("256.1.1.1", -1, NULL);
    norm_is("1.256.1.1", -1, NULL);
    norm_is("1.2.3.256", -1, NULL);
    norm_is("1.2.3.4.5", -1, NULL);
    norm_is("256.1.1.1.1", -1, NULL);
    norm_is("4294967296", -1, NULL);
    norm_is("0x100000000", -1, NULL);
    norm_is("1.16777216", -1, NULL);
    norm_is("1.2.65536", -1, NULL);
    norm_is("08.1.1.1", -1, NULL);         /* 8 is not an octal digit */
    norm_is("1.2.3.09", -1, NULL);
    norm_is("example.123", -1, NULL);      /* no TLD is numeric */
    norm_is("example.0x1f", -1, NULL);
    norm_is("1..2", -1, NULL);
    norm_is("a..b", -1, NULL);             /* an empty label: neither an address nor a name */
    norm_is(".example.com", -1, NULL);
    norm_is("1.2.3.4..", -1, NULL);
    norm_is("", -1, NULL);
    norm_is(".", -1, NULL);
    {
        char small[8];
        assert_int_equal(proxy_normalize_ip_host("1.2.3.4", small, sizeof(small)), -1);
    }
}

static int match(const char *cidr, const char *ip)
{
    struct proxy_cidr c;
    struct sockaddr_storage ss = sa_of(ip);
    assert_int_equal(proxy_cidr_parse(cidr, &c), 0);
    return proxy_cidr_match(&c, (struct sockaddr *)&ss);
}

static void cidr_is(const char *in, const char *want)
{
    struct proxy_cidr c;
    char out[PROXY_IP_TEXT_MAX];
    if (proxy_cidr_parse(in, &c) != 0)
        fail_msg("%s: refused", in);
    proxy_cidr_format(&c, out, sizeof(out));
    if (strcmp(out, want) != 0)
        fail_msg("%s: gave %s, want %s", in, out, want);
}

/* blocks parse, bare addresses are host routes, host bits are masked, mapped blocks become IPv4 */
static void test_cidr_parse_forms(void **state)
{
    struct proxy_cidr c;
    (void)state;
    cidr_is("10.0.0.0/8", "10.0.0.0/8");
    cidr_is("10.1.2.3/8", "10.0.0.0/8");
    cidr_is("172.16.0.0/12", "172.16.0.0/12");
    cidr_is("172.31.255.255/12", "172.16.0.0/12");
    cidr_is("192.168.1.77/23", "192.168.0.0/23");
    cidr_is("1.2.3.4", "1.2.3.4/32");
    cidr_is("0.0.0.0/0", "0.0.0.0/0");
    cidr_is("1.2.3.4/0", "0.0.0.0/0");
    cidr_is("::1", "::1/128");
    cidr_is("::/0", "::/0");
    cidr_is("2001:db8::1/32", "2001:db8::/32");
    cidr_is("fe80::1234/10", "fe80::/10");
    cidr_is("2001:db8:ffff::/33", "2001:db8:8000::/33");
    cidr_is("::ffff:10.0.0.0/104", "10.0.0.0/8");
    cidr_is("::ffff:10.1.2.3", "10.1.2.3/32");
    cidr_is("::ffff:0:0/96", "0.0.0.0/0");
    cidr_is("::ffff:0:0/95", "::fffe:0:0/95"); /* wider than the mapped block: stays IPv6 */
    assert_int_equal(proxy_cidr_parse("10.0.0.0/8", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.bits, 8);
    assert_int_equal(c.addr[0], 10);

    static const char *const bad[] = {
        "", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10/8", "10.0.0.0/8/8", "10.0.0.0/-1", "10.0.0.0/+8",
        "10.0.0.0/ 8", "10.0.0.0/8 ", "010.0.0.0/8", "10.0.0.0/1000", "example.com/8", "[::1]/128", "fe80::1%lo/64",
        "10.0.0.0/0x8", "1.2.3", "300.0.0.0/8",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (proxy_cidr_parse(bad[i], &c) != -1)
            fail_msg("\"%s\" accepted", bad[i]);
}

/* matching honours the prefix edges, families, and lets IPv4-mapped addresses match IPv4 blocks */
static void test_cidr_match_edges_and_mapped(void **state)
{
    (void)state;
    assert_true(match("10.0.0.0/8", "10.0.0.0"));
    assert_true(match("10.0.0.0/8", "10.255.255.255"));
    assert_false(match("10.0.0.0/8", "9.255.255.255"));
    assert_false(match("10.0.0.0/8", "11.0.0.0"));
    assert_true(match("172.16.0.0/12", "172.31.255.255"));
    assert_false(match("172.16.0.0/12", "172.32.0.0"));
    assert_true(match("100.64.0.0/10", "100.127.255.255"));
    assert_false(match("100.64.0.0/10", "100.128.0.0"));
    assert_true(match("1.2.3.4", "1.2.3.4"));
    assert_false(match("1.2.3.4", "1.2.3.5"));
    assert_true(match("0.0.0.0/0", "8.8.8.8"));
    assert_false(match("0.0.0.0/0", "2001:db8::1"));  /* families differ */
    assert_false(match("::/0", "8.8.8.8"));
    assert_true(match("::/0", "2001:db8::1"));
    assert_true(match("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(match("2001:db8::/32", "2001:db9::"));
    assert_true(match("fe80::/10", "febf::1"));
    assert_false(match("fe80::/10", "fec0::1"));
    /* IPv4-mapped destinations match IPv4 blocks and mapped-IPv6 blocks alike */
    assert_true(match("10.0.0.0/8", "::ffff:10.9.8.7"));
    assert_false(match("10.0.0.0/8", "::ffff:11.0.0.1"));
    assert_true(match("::ffff:10.0.0.0/104", "10.9.8.7"));
    assert_true(match("::ffff:10.0.0.0/104", "::ffff:10.9.8.7"));
    assert_true(match("169.254.169.254", "::ffff:169.254.169.254"));
    /* other embedded forms are plain IPv6 */
    assert_false(match("127.0.0.0/8", "::127.0.0.1"));
    assert_false(match("127.0.0.0/8", "64:ff9b::127.0.0.1"));
    assert_true(match("64:ff9b::/96", "64:ff9b::127.0.0.1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ssrf_ipv4_ranges_boundaries),
        cmocka_unit_test(test_ssrf_metadata_wins),
        cmocka_unit_test(test_ssrf_ipv6_ranges_boundaries),
        cmocka_unit_test(test_ssrf_ipv6_embedded_forms_denied),
        cmocka_unit_test(test_ssrf_self_addresses),
        cmocka_unit_test(test_ssrf_self_load_listeners_and_interfaces),
        cmocka_unit_test(test_ssrf_class_names_and_other_family),
        cmocka_unit_test(test_ssrf_normalize_ipv4_forms),
        cmocka_unit_test(test_ssrf_normalize_ipv6),
        cmocka_unit_test(test_ssrf_normalize_names_and_invalid),
        cmocka_unit_test(test_cidr_parse_forms),
        cmocka_unit_test(test_cidr_match_edges_and_mapped),
    };
    return cmocka_run_group_tests_name("proxy/ssrf", tests, NULL, NULL);
}
