/* tests/unit/proxy/test_clienthello.c - the ClientHello parser on hand-made records (with
 * and without SNI, ALPN, supported_versions; split over records; every truncation; every
 * length field off by one), on a hello captured from `openssl s_client`, on other
 * protocols, and on deterministic random mutations (run under ASan: no read past len). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/clienthello.h"

/* `openssl s_client -servername x.example.com -alpn h2,http/1.1 -connect` (OpenSSL 3.0),
 * captured by a listener on loopback: one 332-byte record. */
static const uint8_t real_hello[] = {
    0x16, 0x03, 0x01, 0x01, 0x4c, 0x01, 0x00, 0x01, 0x48, 0x03, 0x03, 0x60, 0xee, 0xfe, 0x76, 0x0c, 0x20, 0x73, 0x1a,
    0x72, 0xc3, 0x1b, 0x69, 0x50, 0x99, 0xd6, 0x41, 0xe9, 0x8d, 0x8b, 0x50, 0x49, 0xc3, 0x8f, 0x5e, 0x53, 0xfc, 0xb3,
    0x60, 0xec, 0x19, 0x56, 0x5d, 0x20, 0xad, 0x9b, 0x16, 0xb4, 0xf3, 0x40, 0xfc, 0xd1, 0xcb, 0x21, 0x15, 0xaf, 0x47,
    0xc4, 0x5f, 0xf7, 0xf0, 0x63, 0xc3, 0x34, 0x92, 0xf8, 0x12, 0x5c, 0x38, 0x32, 0x72, 0xa7, 0x70, 0xba, 0xd2, 0x15,
    0x00, 0x3e, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc,
    0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67,
    0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00,
    0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0xc1, 0x00, 0x00, 0x00, 0x12, 0x00, 0x10, 0x00, 0x00,
    0x0d, 0x78, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x63, 0x6f, 0x6d, 0x00, 0x0b, 0x00, 0x04, 0x03,
    0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x16, 0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18,
    0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23, 0x00, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00,
    0x0c, 0x02, 0x68, 0x32, 0x08, 0x68, 0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x16, 0x00, 0x00, 0x00, 0x17,
    0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08,
    0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x03, 0x03,
    0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02, 0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03,
    0x03, 0x02, 0x03, 0x01, 0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00,
    0x20, 0xc6, 0xc8, 0xb8, 0xd9, 0x3b, 0x3c, 0x8b, 0x79, 0x01, 0xad, 0x46, 0xc9, 0x2e, 0x39, 0x10, 0xd3, 0xac, 0x93,
    0x16, 0x05, 0x0b, 0xa4, 0xb3, 0x15, 0x64, 0x77, 0x2a, 0xe1, 0x9f, 0x1a, 0x4b, 0x3a,
};

/* ---- building hellos ---- */

#define BUF_MAX (PROXY_CH_MAX_PEEK * 2)
#define MAX_LENS 64

struct buf {
    uint8_t b[BUF_MAX];
    size_t n;
    size_t lens[MAX_LENS]; /* offsets of inner length fields (not record/handshake), for mutation */
    size_t lenw[MAX_LENS]; /* their widths */
    size_t nlens;
};

static void put8(struct buf *b, unsigned v)
{
    assert_true(b->n < BUF_MAX);
    b->b[b->n++] = (uint8_t)v;
}

static void put16(struct buf *b, unsigned v)
{
    put8(b, v >> 8);
    put8(b, v);
}

static void putmem(struct buf *b, const void *p, size_t n)
{
    assert_true(b->n + n <= BUF_MAX);
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

/* Opens a vector with a <w>-byte length prefix; close_vec() fills it in. */
static size_t open_vec(struct buf *b, size_t w)
{
    size_t at = b->n;
    assert_true(b->nlens < MAX_LENS);
    b->lens[b->nlens] = at;
    b->lenw[b->nlens++] = w;
    for (size_t i = 0; i < w; i++)
        put8(b, 0);
    return at;
}

static void close_vec(struct buf *b, size_t at, size_t w)
{
    size_t l = b->n - at - w;
    for (size_t i = 0; i < w; i++)
        b->b[at + i] = (uint8_t)(l >> (8 * (w - 1 - i)));
}

struct spec {
    const char *sni;      /* NULL: no server_name */
    size_t sni_len;       /* 0: strlen(sni) */
    const char *alpn[12]; /* NULL-terminated; alpn[0] NULL and no_alpn_ext: no extension */
    int alpn_ext;
    int tls13;     /* supported_versions with GREASE, 1.3, 1.2 */
    int no_ext;    /* no extensions block at all (an old TLS 1.2 hello) */
    size_t pad;    /* a padding extension (21) of this many bytes */
    int dup_sni;   /* a second server_name extension */
    int two_hosts; /* two host_names in one server_name list */
};

/* The handshake message (4-byte header + ClientHello body) described by <s>. */
static void build_msg(struct buf *m, const struct spec *s)
{
    memset(m, 0, sizeof(*m));
    put8(m, 1);
    put8(m, 0);
    put16(m, 0); /* 24-bit length, filled at the end */
    put16(m, 0x0303);
    for (int i = 0; i < 32; i++)
        put8(m, i * 7);
    size_t v = open_vec(m, 1); /* session id */
    for (int i = 0; i < 32; i++)
        put8(m, 0xa0 + i);
    close_vec(m, v, 1);
    v = open_vec(m, 2); /* cipher suites */
    put16(m, 0x1301);
    put16(m, 0x1302);
    put16(m, 0xc02f);
    close_vec(m, v, 2);
    v = open_vec(m, 1); /* compression */
    put8(m, 0);
    close_vec(m, v, 1);
    if (!s->no_ext) {
        size_t exts = open_vec(m, 2);
        put16(m, 0x0a0a); /* a GREASE extension, empty */
        put16(m, 0);
        for (int k = 0; k < (s->dup_sni ? 2 : 1) && s->sni; k++) {
            put16(m, 0);
            size_t e = open_vec(m, 2);
            size_t l = open_vec(m, 2);
            for (int h = 0; h < (s->two_hosts ? 2 : 1); h++) {
                put8(m, 0);
                size_t n = open_vec(m, 2);
                putmem(m, s->sni, s->sni_len ? s->sni_len : strlen(s->sni));
                close_vec(m, n, 2);
            }
            close_vec(m, l, 2);
            close_vec(m, e, 2);
        }
        put16(m, 23); /* extended_master_secret, empty */
        put16(m, 0);
        if (s->alpn_ext || s->alpn[0]) {
            put16(m, 16);
            size_t e = open_vec(m, 2);
            size_t l = open_vec(m, 2);
            for (int i = 0; s->alpn[i]; i++) {
                size_t p = open_vec(m, 1);
                putmem(m, s->alpn[i], strlen(s->alpn[i]));
                close_vec(m, p, 1);
            }
            close_vec(m, l, 2);
            close_vec(m, e, 2);
        }
        if (s->tls13) {
            put16(m, 43);
            size_t e = open_vec(m, 2);
            size_t l = open_vec(m, 1);
            put16(m, 0x3a3a);
            put16(m, 0x0304);
            put16(m, 0x0303);
            close_vec(m, l, 1);
            close_vec(m, e, 2);
        }
        if (s->pad) {
            put16(m, 21);
            size_t e = open_vec(m, 2);
            for (size_t i = 0; i < s->pad; i++)
                put8(m, 0);
            close_vec(m, e, 2);
        }
        close_vec(m, exts, 2);
    }
    size_t body = m->n - 4;
    m->b[1] = (uint8_t)(body >> 16);
    m->b[2] = (uint8_t)(body >> 8);
    m->b[3] = (uint8_t)body;
}

/* <m> cut into handshake records: the first holds <first> bytes (0: as many as fit),
 * the others at most <each> (0: 16384). Length-field offsets follow into <out>. */
static void build_records(struct buf *out, const struct buf *m, size_t first, size_t each)
{
    size_t done = 0, hdr_total = 0;
    memset(out, 0, sizeof(*out));
    if (!each)
        each = 16384;
    while (done < m->n) {
        size_t k = m->n - done;
        size_t cap = done == 0 && first ? first : each;
        if (k > cap)
            k = cap;
        put8(out, 0x16);
        put16(out, done == 0 ? 0x0301 : 0x0303);
        put16(out, (unsigned)k);
        putmem(out, m->b + done, k);
        done += k;
        hdr_total += 5;
    }
    /* inner length offsets are valid only for the one-record layout */
    if (hdr_total == 5) {
        for (size_t i = 0; i < m->nlens; i++) {
            out->lens[i] = m->lens[i] + 5;
            out->lenw[i] = m->lenw[i];
        }
        out->nlens = m->nlens;
    }
}

static struct spec full_spec(void)
{
    struct spec s = {.sni = "Www.Example.COM", .alpn = {"h2", "http/1.1", NULL}, .tls13 = 1};
    return s;
}

/* Parses exactly <n> bytes copied into a heap block of that size, so ASan sees any read past it. */
static enum proxy_ch_result parse_exact(const uint8_t *p, size_t n, struct proxy_clienthello *ch)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    if (n)
        memcpy(copy, p, n);
    enum proxy_ch_result r = proxy_clienthello_parse(n ? copy : NULL, n, ch);
    free(copy);
    return r;
}

static enum proxy_ch_result parse_spec(const struct spec *s, struct proxy_clienthello *ch, struct buf *rec)
{
    static struct buf m;
    build_msg(&m, s);
    build_records(rec, &m, 0, 0);
    return parse_exact(rec->b, rec->n, ch);
}

/* ---- tests ---- */

/* a hello with SNI, ALPN h2+http/1.1 and TLS 1.3 supported_versions yields all of them */
static void test_clienthello_full_ok(void **state)
{
    static struct buf rec;
    struct proxy_clienthello ch;
    struct spec s = full_spec();

    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_OK);
    assert_string_equal(ch.sni, "www.example.com");
    assert_int_equal(ch.nalpn, 2);
    assert_string_equal(ch.alpn[0], "h2");
    assert_string_equal(ch.alpn[1], "http/1.1");
    assert_int_equal(ch.alpn_omitted, 0);
    assert_true(ch.has_alpn);
    assert_int_equal(ch.legacy_version, 0x0303);
    assert_true(ch.has_supported_versions_tls13);
    assert_int_equal(ch.record_len, rec.n);
}

/* without server_name, ALPN or supported_versions the fields are empty, and it is OK */
static void test_clienthello_no_sni_ok(void **state)
{
    static struct buf rec;
    struct proxy_clienthello ch;
    struct spec s = {0};

    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_OK);
    assert_string_equal(ch.sni, "");
    assert_int_equal(ch.nalpn, 0);
    assert_false(ch.has_alpn);
    assert_false(ch.has_supported_versions_tls13);
    assert_int_equal(ch.record_len, rec.n);
}

/* a TLS 1.2-era hello that ends after compression_methods (no extensions block) is OK */
static void test_clienthello_no_extensions_ok(void **state)
{
    static struct buf rec;
    struct proxy_clienthello ch;
    struct spec s = {.no_ext = 1};

    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_OK);
    assert_string_equal(ch.sni, "");
    assert_int_equal(ch.record_len, rec.n);
}

/* the hello OpenSSL's s_client sends parses to what its command line asked for */
static void test_clienthello_real_openssl_ok(void **state)
{
    struct proxy_clienthello ch;

    assert_int_equal(parse_exact(real_hello, sizeof(real_hello), &ch), PROXY_CH_OK);
    assert_string_equal(ch.sni, "x.example.com");
    assert_int_equal(ch.nalpn, 2);
    assert_string_equal(ch.alpn[0], "h2");
    assert_string_equal(ch.alpn[1], "http/1.1");
    assert_int_equal(ch.legacy_version, 0x0303);
    assert_true(ch.has_supported_versions_tls13);
    assert_int_equal(ch.record_len, sizeof(real_hello));
}

/* every proper prefix of a valid hello (one record, split records, the real one) is NEED_MORE */
static void test_clienthello_every_truncation_need_more(void **state)
{
    static struct buf m, rec;
    struct proxy_clienthello ch;
    struct spec s = full_spec();

    for (size_t n = 0; n < sizeof(real_hello); n++)
        assert_int_equal(parse_exact(real_hello, n, &ch), PROXY_CH_NEED_MORE);

    build_msg(&m, &s);
    size_t firsts[] = {0, 1, 3, 4, 5, 60};
    for (size_t f = 0; f < sizeof(firsts) / sizeof(firsts[0]); f++) {
        build_records(&rec, &m, firsts[f], firsts[f] ? 50 : 0);
        for (size_t n = 0; n < rec.n; n++) {
            enum proxy_ch_result r = parse_exact(rec.b, n, &ch);
            if (r != PROXY_CH_NEED_MORE)
                fail_msg("first=%zu prefix=%zu/%zu: %s", firsts[f], n, rec.n, proxy_ch_result_str(r));
        }
        assert_int_equal(parse_exact(rec.b, rec.n, &ch), PROXY_CH_OK);
    }
}

/* a hello split over two records at any point, the handshake header included, parses */
static void test_clienthello_split_records_ok(void **state)
{
    static struct buf m, rec;
    struct proxy_clienthello ch;
    struct spec s = full_spec();

    build_msg(&m, &s);
    for (size_t first = 1; first < m.n; first++) {
        build_records(&rec, &m, first, 0);
        assert_int_equal(rec.n, m.n + 10);
        assert_int_equal(parse_exact(rec.b, rec.n, &ch), PROXY_CH_OK);
        assert_string_equal(ch.sni, "www.example.com");
        assert_int_equal(ch.nalpn, 2);
        assert_int_equal(ch.record_len, rec.n);
    }
    /* and one byte per record */
    build_records(&rec, &m, 1, 1);
    assert_int_equal(parse_exact(rec.b, rec.n, &ch), PROXY_CH_OK);
    assert_string_equal(ch.sni, "www.example.com");
    assert_int_equal(ch.record_len, m.n * 6);
}

/* bytes after the hello's last record (the client's next flight) are not the parser's: OK */
static void test_clienthello_bytes_after_record_ok(void **state)
{
    static struct buf rec;
    struct proxy_clienthello ch;
    struct spec s = full_spec();

    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_OK);
    size_t n = rec.n;
    put8(&rec, 0x14);
    put16(&rec, 0x0303);
    put16(&rec, 1);
    put8(&rec, 1);
    assert_int_equal(parse_exact(rec.b, rec.n, &ch), PROXY_CH_OK);
    assert_int_equal(ch.record_len, n);
}

/* an inner length field one too big, one too small, or with its top bit flipped is MALFORMED */
static void test_clienthello_length_flips_malformed(void **state)
{
    static struct buf rec, bad;
    struct proxy_clienthello ch;
    struct spec s = full_spec();

    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_OK);
    assert_true(rec.nlens > 10);
    for (size_t i = 0; i < rec.nlens; i++) {
        size_t at = rec.lens[i], w = rec.lenw[i];
        unsigned v = w == 1 ? rec.b[at] : (unsigned)rec.b[at] << 8 | rec.b[at + 1];
        unsigned tries[3] = {v + 1, v - 1, v ^ (w == 1 ? 0x80u : 0x8000u)};
        for (int t = 0; t < 3; t++) {
            if (t == 1 && v == 0)
                continue;
            bad = rec;
            if (w == 1) {
                bad.b[at] = (uint8_t)tries[t];
            } else {
                bad.b[at] = (uint8_t)(tries[t] >> 8);
                bad.b[at + 1] = (uint8_t)tries[t];
            }
            enum proxy_ch_result r = parse_exact(bad.b, bad.n, &ch);
            if (r != PROXY_CH_MALFORMED)
                fail_msg("length at %zu (width %zu) %u -> %u: %s", at, w, v, tries[t], proxy_ch_result_str(r));
        }
    }

    /* the handshake length one short leaves a byte after the hello in its record */
    bad = rec;
    bad.b[8]--;
    assert_int_equal(parse_exact(bad.b, bad.n, &ch), PROXY_CH_MALFORMED);
    /* the record one byte longer than the hello, with that byte present */
    bad = rec;
    bad.b[4]++;
    put8(&bad, 0);
    assert_int_equal(parse_exact(bad.b, bad.n, &ch), PROXY_CH_MALFORMED);
    /* ... and already without it: the handshake header says the record is too long for it */
    bad.n--;
    assert_int_equal(parse_exact(bad.b, bad.n, &ch), PROXY_CH_MALFORMED);
    /* the handshake length one longer, the record unchanged: the rest may follow in a second record */
    bad = rec;
    bad.b[8]++;
    assert_int_equal(parse_exact(bad.b, bad.n, &ch), PROXY_CH_NEED_MORE);
    /* a huge handshake length is refused as soon as the header is in */
    bad = rec;
    bad.b[6] = 0x01;
    assert_int_equal(parse_exact(bad.b, 9, &ch), PROXY_CH_MALFORMED);
}

/* other protocols, and records that are not handshakes, are NOT_TLS from their first bytes */
static void test_clienthello_other_protocols_not_tls(void **state)
{
    struct proxy_clienthello ch;
    const char *texts[] = {"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "G", "SSH-2.0-OpenSSH_9.6\r\n",
                           "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "\x17\x03\x03\x00\x10"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        assert_int_equal(parse_exact((const uint8_t *)texts[i], strlen(texts[i]), &ch), PROXY_CH_NOT_TLS);

    const uint8_t v9[] = {0x16, 0x03, 0x09}, v4[] = {0x16, 0x04}, v2[] = {0x16, 0x02, 0x00, 0x00, 0x10};
    assert_int_equal(parse_exact(v9, sizeof(v9), &ch), PROXY_CH_NOT_TLS);
    assert_int_equal(parse_exact(v4, sizeof(v4), &ch), PROXY_CH_NOT_TLS);
    assert_int_equal(parse_exact(v2, sizeof(v2), &ch), PROXY_CH_NOT_TLS);
    /* an SSLv2-compatible hello (RFC 5246 E.2) is not a TLS record either */
    const uint8_t sslv2[] = {0x80, 0x2e, 0x01, 0x03, 0x01};
    assert_int_equal(parse_exact(sslv2, sizeof(sslv2), &ch), PROXY_CH_NOT_TLS);

    const uint8_t one[] = {0x16}, three[] = {0x16, 0x03, 0x01};
    assert_int_equal(parse_exact(one, 0, &ch), PROXY_CH_NEED_MORE);
    assert_int_equal(parse_exact(one, sizeof(one), &ch), PROXY_CH_NEED_MORE);
    assert_int_equal(parse_exact(three, sizeof(three), &ch), PROXY_CH_NEED_MORE);
    assert_string_equal(proxy_ch_result_str(PROXY_CH_NOT_TLS), "not_tls");
}

/* an SNI holding anything but letters, digits, '-', '_' and '.', or empty labels, is MALFORMED */
static void test_clienthello_bad_sni_malformed(void **state)
{
    static struct buf rec;
    struct proxy_clienthello ch;
    const char *bad[] = {"exa mple.com",
                         "ex/ample.com",
                         "example.com:443",
                         "a..b",
                         "example.c..", /* two trailing dots: one is dropped, the empty label stays */
                         ".example.com",
                         ".",
                         "caf\xc3\xa9.example",
                         "[::1]",
                         "a\x7f.com",
                         "x.example.com%00",
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com" /* 64-byte label */};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct spec s = full_spec();
        s.sni = bad[i];
        if (parse_spec(&s, &ch, &rec) != PROXY_CH_MALFORMED)
            fail_msg("sni \"%s\" accepted", bad[i]);
    }
    /* an embedded NUL: "evil.com\0.good.com" */
    struct spec s = full_spec();
    s.sni = "evil.com\0.good.com";
    s.sni_len = 18;
    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_MALFORMED);
    /* an empty host_name */
    s.sni = "";
    s.sni_len = 0;
    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_MALFORMED);
    /* a name over 253 bytes */
    char longname[300];
    for (size_t i = 0; i < 254; i++)
        longname[i] = (i % 50 == 49) ? '.' : 'a';
    longname[254] = '\0';
    s.sni = longname;
    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_MALFORMED);
}

/* SNI normalisation: lowercased, one trailing dot dropped, underscores and IPv4-looking names kept */
static void test_clienthello_sni_normalised_ok(void **state)
{
    static struct buf rec;
    struct proxy_clienthello ch;
    struct spec s = full_spec();

    s.sni = "API.Example.com.";
    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_OK);
    assert_string_equal(ch.sni, "api.example.com");
    s.sni = "_srv.my-host.example";
    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_OK);
    assert_string_equal(ch.sni, "_srv.my-host.example");
    s.sni = "x";
    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_OK);
    assert_string_equal(ch.sni, "x");
}

/* two server_name extensions, or two host_names in one, are MALFORMED (the origin might use the other) */
static void test_clienthello_duplicate_sni_malformed(void **state)
{
    static struct buf rec;
    struct proxy_clienthello ch;
    struct spec s = full_spec();

    s.dup_sni = 1;
    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_MALFORMED);
    s.dup_sni = 0;
    s.two_hosts = 1;
    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_MALFORMED);
}

/* ALPN: more than 8, too long or unprintable protocols are counted, not kept; empty ones are MALFORMED */
static void test_clienthello_alpn_limits(void **state)
{
    static struct buf rec;
    struct proxy_clienthello ch;
    struct spec s = {.sni = "a.example",
                     .alpn = {"p1", "p2", "p3", "p4", "http/1.1", "0123456789012345678901234567890123456789", "p\x01q",
                              "p6", "p7", "p8", "p9", NULL}};

    assert_int_equal(parse_spec(&s, &ch, &rec), PROXY_CH_OK);
    assert_int_equal(ch.nalpn, 8);
    assert_int_equal(ch.alpn_omitted, 3);
    assert_string_equal(ch.alpn[4], "http/1.1");
    assert_string_equal(ch.alpn[5], "p6");
    assert_string_equal(ch.alpn[7], "p8");

    struct spec e = {.sni = "a.example", .alpn_ext = 1}; /* an empty list */
    assert_int_equal(parse_spec(&e, &ch, &rec), PROXY_CH_MALFORMED);
    struct spec z = {.sni = "a.example", .alpn = {"h2", "", NULL}};
    assert_int_equal(parse_spec(&z, &ch, &rec), PROXY_CH_MALFORMED);
}

/* structural refusals: wrong handshake type, empty or oversized records, a non-handshake
 * continuation, a hello over 16 KiB, a bad legacy_version */
static void test_clienthello_structure_malformed(void **state)
{
    static struct buf m, rec, bad;
    struct proxy_clienthello ch;
    struct spec s = full_spec();

    build_msg(&m, &s);
    build_records(&rec, &m, 0, 0);

    bad = rec; /* ServerHello */
    bad.b[5] = 2;
    assert_int_equal(parse_exact(bad.b, bad.n, &ch), PROXY_CH_MALFORMED);
    assert_int_equal(parse_exact(bad.b, 6, &ch), PROXY_CH_MALFORMED); /* known from the first byte */

    bad = rec; /* legacy_version 2.0 */
    bad.b[9] = 2;
    assert_int_equal(parse_exact(bad.b, bad.n, &ch), PROXY_CH_MALFORMED);

    const uint8_t empty[] = {0x16, 0x03, 0x01, 0x00, 0x00, 0x01};
    assert_int_equal(parse_exact(empty, sizeof(empty), &ch), PROXY_CH_MALFORMED);
    const uint8_t big[] = {0x16, 0x03, 0x01, 0x40, 0x01}; /* 16385 */
    assert_int_equal(parse_exact(big, sizeof(big), &ch), PROXY_CH_MALFORMED);

    /* split in two, the second record an alert */
    build_records(&bad, &m, 40, 0);
    bad.b[45] = 0x15;
    assert_int_equal(parse_exact(bad.b, bad.n, &ch), PROXY_CH_MALFORMED);
    assert_int_equal(parse_exact(bad.b, 46, &ch), PROXY_CH_MALFORMED);
    build_records(&bad, &m, 40, 0); /* ... or with a bad version */
    bad.b[46] = 0x07;
    assert_int_equal(parse_exact(bad.b, 47, &ch), PROXY_CH_MALFORMED);

    /* a padded hello that fits is OK; one over PROXY_CH_MAX_HELLO is refused from its header */
    s.pad = 10000;
    build_msg(&m, &s);
    build_records(&rec, &m, 0, 0);
    assert_int_equal(parse_exact(rec.b, rec.n, &ch), PROXY_CH_OK);
    s.pad = PROXY_CH_MAX_HELLO;
    build_msg(&m, &s);
    build_records(&rec, &m, 0, 0);
    assert_int_equal(parse_exact(rec.b, 9, &ch), PROXY_CH_MALFORMED);
    assert_int_equal(parse_exact(rec.b, rec.n, &ch), PROXY_CH_MALFORMED);
    /* near the cap in 100-byte records: more record headers than PROXY_CH_MAX_PEEK allows */
    s.pad = PROXY_CH_MAX_HELLO - 200;
    build_msg(&m, &s);
    assert_true(m.n <= PROXY_CH_MAX_HELLO);
    build_records(&rec, &m, 100, 100);
    assert_int_equal(parse_exact(rec.b, rec.n, &ch), PROXY_CH_MALFORMED);
    build_records(&rec, &m, 8000, 0);
    assert_int_equal(parse_exact(rec.b, rec.n, &ch), PROXY_CH_OK);

    /* an extension type repeated (not only server_name) */
    struct spec d = {.sni = "a.example"};
    build_msg(&m, &d);
    /* append a second extended_master_secret at the end of the extensions block */
    put16(&m, 23);
    put16(&m, 0);
    size_t ext_len_at = m.lens[3]; /* 0 session, 1 ciphers, 2 compression, 3 extensions */
    close_vec(&m, ext_len_at, 2);
    size_t body = m.n - 4;
    m.b[1] = (uint8_t)(body >> 16);
    m.b[2] = (uint8_t)(body >> 8);
    m.b[3] = (uint8_t)body;
    build_records(&rec, &m, 0, 0);
    assert_int_equal(parse_exact(rec.b, rec.n, &ch), PROXY_CH_MALFORMED);
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* random mutations and prefixes of valid hellos never crash or read past len, and give a known result */
static void test_clienthello_mutations_bounded(void **state)
{
    static struct buf m, rec, mut;
    struct proxy_clienthello ch;
    struct spec s = full_spec();

    build_msg(&m, &s);
    for (int iter = 0; iter < 20000; iter++) {
        if (iter % 2)
            build_records(&rec, &m, 1 + next_rand() % m.n, 0);
        else
            build_records(&rec, &m, 0, 0);
        mut = rec;
        int flips = 1 + (int)(next_rand() % 4);
        for (int f = 0; f < flips; f++)
            mut.b[next_rand() % mut.n] ^= (uint8_t)(1u << (next_rand() % 8));
        size_t n = next_rand() % (mut.n + 1);
        enum proxy_ch_result r = parse_exact(mut.b, n, &ch);
        assert_true(r == PROXY_CH_OK || r == PROXY_CH_NEED_MORE || r == PROXY_CH_NOT_TLS || r == PROXY_CH_MALFORMED);
        if (r == PROXY_CH_OK) {
            assert_true(ch.record_len <= n);
            assert_true(strlen(ch.sni) < sizeof(ch.sni));
            assert_true(ch.nalpn <= PROXY_CH_MAX_ALPN);
        }
    }
    /* the real hello mutated too */
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(mut.b, real_hello, sizeof(real_hello));
        mut.b[next_rand() % sizeof(real_hello)] = (uint8_t)next_rand();
        enum proxy_ch_result r = parse_exact(mut.b, sizeof(real_hello), &ch);
        assert_true(r == PROXY_CH_OK || r == PROXY_CH_NEED_MORE || r == PROXY_CH_NOT_TLS || r == PROXY_CH_MALFORMED);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clienthello_full_ok),
        cmocka_unit_test(test_clienthello_no_sni_ok),
        cmocka_unit_test(test_clienthello_no_extensions_ok),
        cmocka_unit_test(test_clienthello_real_openssl_ok),
        cmocka_unit_test(test_clienthello_every_truncation_need_more),
        cmocka_unit_test(test_clienthello_split_records_ok),
        cmocka_unit_test(test_clienthello_bytes_after_record_ok),
        cmocka_unit_test(test_clienthello_length_flips_malformed),
        cmocka_unit_test(test_clienthello_other_protocols_not_tls),
        cmocka_unit_test(test_clienthello_bad_sni_malformed),
        cmocka_unit_test(test_clienthello_sni_normalised_ok),
        cmocka_unit_test(test_clienthello_duplicate_sni_malformed),
        cmocka_unit_test(test_clienthello_alpn_limits),
        cmocka_unit_test(test_clienthello_structure_malformed),
        cmocka_unit_test(test_clienthello_mutations_bounded),
    };
    return cmocka_run_group_tests_name("proxy/clienthello", tests, NULL, NULL);
}
