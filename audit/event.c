/* audit/event.c - the event model and its JSON serialization (schemas/event.schema.json).
 *
 * An event is a fixed-size, pointer-free struct whose strings live in a packed text area:
 *
 *   header (scalars, str_off[], str_len[], text_used) | text: "GETexample.com/x..." | unused
 *                                                      ^ str_off[METHOD], str_len[METHOD] = 3
 *
 * Only the header and the first <text_used> bytes of text matter, so producers build events
 * on their stack without zeroing the 3.5 KiB text area and the ring copies only
 * audit_event_used_size() bytes. A string field is unset while its length is 0.
 *
 * The serializer runs on the pipeline thread for every event: it computes an upper bound
 * of the output, grows the buffer once, then writes without bounds checks or printf. Every
 * string read from an event is checked against the text area, so a damaged event (one
 * recovered from a shared mapping after a crash) cannot make it read out of bounds. */
#include "audit/audit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "audit/audit-int.h"

void audit_event_init(struct audit_event *ev, enum audit_event_kind kind)
{
    memset(ev, 0, offsetof(struct audit_event, text));
    ev->kind = (uint8_t)kind;
    ev->time_us = audit_now_us();
    ev->content_length = -1;
}

/* Length of the longest prefix of <s> no longer than <max> that does not end inside a
 * UTF-8 sequence. Bytes that are not UTF-8 are cut anywhere. */
static size_t utf8_prefix(const char *s, size_t len, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = max;

    if (n >= len)
        return len;
    if ((u[n] & 0xC0) != 0x80)
        return n; /* the first byte dropped starts a character */
    /* It continues one: find that character's lead byte, at most 3 bytes back, and cut
     * before it when the character would reach past the cut. */
    for (size_t i = n; i > 0 && n - i < 3;) {
        size_t seqlen;

        i--;
        if ((u[i] & 0xC0) == 0x80)
            continue;
        seqlen = u[i] >= 0xF0 ? 4 : u[i] >= 0xE0 ? 3 : u[i] >= 0xC0 ? 2 : 1;
        return i + seqlen > n ? i : n;
    }
    return n;
}

int audit_event_set_str(struct audit_event *ev, enum audit_str f, const char *s, size_t len)
{
    size_t used = ev->text_used, avail, n;

    if ((unsigned)f >= AUDIT_STR_COUNT)
        return -1;
    if (used > AUDIT_TEXT_MAX)
        used = AUDIT_TEXT_MAX;
    avail = AUDIT_TEXT_MAX - used;
    n = len <= avail ? len : utf8_prefix(s, len, avail);
    if (n > 0)
        memcpy(ev->text + used, s, n);
    ev->str_off[f] = (uint16_t)used;
    ev->str_len[f] = (uint16_t)n;
    ev->text_used = (uint16_t)(used + n);
    if (n < len) {
        ev->flags |= AUDIT_F_TRUNCATED;
        return -1;
    }
    return 0;
}

int audit_event_list_add_n(struct audit_event *ev, enum audit_str f, const char *const *members, const size_t *lens,
                           size_t n)
{
    size_t need = 0, used = ev->text_used;

    if ((unsigned)f >= AUDIT_STR_COUNT || used > AUDIT_TEXT_MAX)
        return -1;
    for (size_t i = 0; i < n; i++)
        need += lens[i] + 1; /* a '\t' between members, '\n' after the last */
    if (ev->str_len[f] == 0)
        ev->str_off[f] = (uint16_t)used;
    else if ((size_t)ev->str_off[f] + ev->str_len[f] != used)
        return -1; /* another field was set since: the list would not be contiguous */
    if (need > AUDIT_TEXT_MAX - used) {
        ev->flags |= AUDIT_F_TRUNCATED;
        return -1;
    }
    char *p = ev->text + used;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, members[i], lens[i]);
        p += lens[i];
        *p++ = i + 1 < n ? '\t' : '\n';
    }
    ev->str_len[f] = (uint16_t)(ev->str_len[f] + need);
    ev->text_used = (uint16_t)(used + need);
    return 0;
}

int audit_event_list_add(struct audit_event *ev, enum audit_str f, const char *const *members, size_t n)
{
    size_t lens[8];
    if (n > 8)
        return -1;
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(members[i]);
    return audit_event_list_add_n(ev, f, members, lens, n);
}

const char *audit_event_str(const struct audit_event *ev, enum audit_str f, size_t *len)
{
    size_t off, n, used;

    *len = 0;
    if ((unsigned)f >= AUDIT_STR_COUNT)
        return NULL;
    off = ev->str_off[f];
    n = ev->str_len[f];
    used = ev->text_used <= AUDIT_TEXT_MAX ? ev->text_used : AUDIT_TEXT_MAX;
    if (n == 0 || off + n > used)
        return NULL;
    *len = n;
    return ev->text + off;
}

void audit_ip_from_sockaddr(struct audit_ip *ip, const struct sockaddr *sa)
{
    memset(ip, 0, sizeof(*ip));
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        ip->family = 4;
        memcpy(ip->addr, &sin->sin_addr, 4);
        ip->port = ntohs(sin->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        /* ::ffff:a.b.c.d is an IPv4 client of a dual-stack listener: record it as IPv4 so
         * queries and rules see one form of each address. */
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            ip->family = 4;
            memcpy(ip->addr, sin6->sin6_addr.s6_addr + 12, 4);
        } else {
            ip->family = 6;
            memcpy(ip->addr, sin6->sin6_addr.s6_addr, 16);
        }
        ip->port = ntohs(sin6->sin6_port);
    }
}

/* Writes the decimal digits of <v> at <p> and returns the end. */
static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

static char *put_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

/* <v> (0..99..) as exactly <width> digits, zero-padded. */
static char *put_fixed(char *p, uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

/* Dotted quad or RFC 5952 text of <ip> at <p> (at most INET6_ADDRSTRLEN - 1 bytes); returns
 * the end. An unset address writes nothing. */
static char *put_ip(char *p, const struct audit_ip *ip)
{
    if (ip->family == 4) {
        for (int i = 0; i < 4; i++) {
            if (i > 0)
                *p++ = '.';
            p = put_u64(p, ip->addr[i]);
        }
    } else if (ip->family == 6) {
        char tmp[INET6_ADDRSTRLEN];
        size_t n;

        if (inet_ntop(AF_INET6, ip->addr, tmp, sizeof(tmp)) == NULL)
            return p;
        n = strlen(tmp);
        memcpy(p, tmp, n);
        p += n;
    }
    return p;
}

const char *audit_ip_format(const struct audit_ip *ip, char *out, size_t outlen)
{
    char tmp[INET6_ADDRSTRLEN];
    size_t n;

    if (outlen == 0)
        return out;
    n = (size_t)(put_ip(tmp, ip) - tmp);
    if (n >= outlen)
        n = 0; /* too small: an empty string rather than a cut address */
    memcpy(out, tmp, n);
    out[n] = '\0';
    return out;
}

size_t audit_event_used_size(const struct audit_event *ev)
{
    size_t used = ev->text_used;

    if (used > AUDIT_TEXT_MAX)
        used = AUDIT_TEXT_MAX;
    return offsetof(struct audit_event, text) + used;
}

const char *audit_event_kind_name(enum audit_event_kind k)
{
    static const char *const names[AUDIT_EVENT_KIND_COUNT] = {
        [AUDIT_EVENT_FLOW_PHASE] = "flow.phase",
        [AUDIT_EVENT_FLOW_END] = "flow.end",
        [AUDIT_EVENT_PROXY_CONFIG] = "proxy.config",
        [AUDIT_EVENT_AUDIT_LOSS] = "audit.loss",
        [AUDIT_EVENT_AUDIT_KEY] = "audit.key",
    };

    return (unsigned)k < AUDIT_EVENT_KIND_COUNT ? names[k] : NULL;
}

const char *audit_phase_name(enum audit_phase p)
{
    switch (p) {
    case AUDIT_PHASE_PRE_DNS:
        return "pre_dns";
    case AUDIT_PHASE_PRE_REQUEST:
        return "pre_request";
    case AUDIT_PHASE_POST_RESPONSE:
        return "post_response";
    case AUDIT_PHASE_NONE:
        break;
    }
    return NULL;
}

const char *audit_action_name(enum audit_action a)
{
    switch (a) {
    case AUDIT_ACTION_ALLOW:
        return "allow";
    case AUDIT_ACTION_DENY:
        return "deny";
    case AUDIT_ACTION_ALERT:
        return "alert";
    case AUDIT_ACTION_NONE:
        break;
    }
    return NULL;
}

/* ---- audit_buf ---- */

void audit_buf_init(struct audit_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void audit_buf_fini(struct audit_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* Makes room for <n> more bytes. 0, or -1 past the cap or out of memory. */
static int buf_reserve(struct audit_buf *b, size_t n)
{
    size_t need, cap;
    char *d;

    if (n > SIZE_MAX - b->len)
        return -1;
    need = b->len + n;
    if (need <= b->cap)
        return 0;
    if (b->max != 0 && need > b->max)
        return -1;
    cap = b->cap < 256 ? 256 : b->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->max != 0 && cap > b->max)
        cap = b->max;
    d = realloc(b->data, cap);
    if (d == NULL)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

int audit_buf_append(struct audit_buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) == -1)
        return -1;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* ---- time ---- */

void audit_format_time(int64_t time_us, char out[32])
{
    /* 0000-01-01 .. 9999-12-31: what four year digits can show. */
    const int64_t min_us = -62167219200LL * 1000000, max_us = 253402300799LL * 1000000 + 999999;
    int64_t secs, days, sod, z, era, doe, yoe, y, doy, mp, d, m;
    int64_t us;
    char *p = out;

    if (time_us < min_us)
        time_us = min_us;
    if (time_us > max_us)
        time_us = max_us;
    secs = time_us >= 0 ? time_us / 1000000 : -((-time_us + 999999) / 1000000);
    us = time_us - secs * 1000000;
    days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    sod = secs - days * 86400;

    /* Proleptic Gregorian date of a day number (H. Hinnant, "chrono-compatible low-level
     * date algorithms"): no gmtime_r, no locale, no lock. */
    z = days + 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;

    p = put_fixed(p, (uint64_t)y, 4);
    *p++ = '-';
    p = put_fixed(p, (uint64_t)m, 2);
    *p++ = '-';
    p = put_fixed(p, (uint64_t)d, 2);
    *p++ = 'T';
    p = put_fixed(p, (uint64_t)(sod / 3600), 2);
    *p++ = ':';
    p = put_fixed(p, (uint64_t)(sod / 60 % 60), 2);
    *p++ = ':';
    p = put_fixed(p, (uint64_t)(sod % 60), 2);
    *p++ = '.';
    p = put_fixed(p, (uint64_t)us, 6);
    *p++ = 'Z';
    *p = '\0';
}

/* ---- JSON ---- */

#define PUT_LIT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) += sizeof(lit) - 1)

static const char hexdig[16] = "0123456789abcdef";

/* Length of the valid UTF-8 sequence starting at <u> (at most <n> bytes), or 0 when the
 * bytes there are not one (bad lead, missing continuation, overlong, surrogate, > U+10FFFF). */
static size_t utf8_seq(const unsigned char *u, size_t n)
{
    unsigned char b = u[0], lo = 0x80, hi = 0xBF;
    size_t len;

    if (b >= 0xC2 && b <= 0xDF)
        len = 2;
    else if (b >= 0xE0 && b <= 0xEF)
        len = 3;
    else if (b >= 0xF0 && b <= 0xF4)
        len = 4;
    else
        return 0;
    if (b == 0xE0)
        lo = 0xA0;
    else if (b == 0xED)
        hi = 0x9F;
    else if (b == 0xF0)
        lo = 0x90;
    else if (b == 0xF4)
        hi = 0x8F;
    if (n < len || u[1] < lo || u[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((u[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

char *audit_json_str(char *p, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    *p++ = '"';
    while (i < len) {
        size_t run = i;

        while (run < len && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i) {
            memcpy(p, u + i, run - i);
            p += run - i;
            i = run;
            if (i == len)
                break;
        }
        if (u[i] == '"' || u[i] == '\\') {
            *p++ = '\\';
            *p++ = (char)u[i++];
        } else if (u[i] < 0x20) {
            PUT_LIT(p, "\\u00");
            *p++ = hexdig[u[i] >> 4];
            *p++ = hexdig[u[i] & 15];
            i++;
        } else {
            size_t n = utf8_seq(u + i, len - i);

            if (n == 0) {
                PUT_LIT(p, "\\ufffd");
                i++;
            } else {
                memcpy(p, u + i, n);
                p += n;
                i += n;
            }
        }
    }
    *p++ = '"';
    return p;
}

/* Writes ,"<key>":"<field>" when field <f> is set. <key> includes its comma and colon. */
static char *put_field(char *p, const struct audit_event *ev, enum audit_str f, const char *key, size_t keylen,
                       int *first)
{
    size_t len;
    const char *s = audit_event_str(ev, f, &len);

    if (s == NULL)
        return p;
    if (*first) {
        key++, keylen--; /* skip the comma of the first member of an object */
        *first = 0;
    }
    memcpy(p, key, keylen);
    p += keylen;
    return audit_json_str(p, s, len);
}

#define PUT_FIELD(p, ev, f, key, first) ((p) = put_field((p), (ev), (f), (key), sizeof(key) - 1, (first)))

/* "ip" and "port" members of an address object (opening and closing braces included). */
static char *put_addr(char *p, const struct audit_ip *ip)
{
    int first = 1;

    *p++ = '{';
    if (ip->family == 4 || ip->family == 6) {
        PUT_LIT(p, "\"ip\":\"");
        p = put_ip(p, ip);
        *p++ = '"';
        first = 0;
    }
    if (ip->port != 0) {
        if (!first)
            *p++ = ',';
        PUT_LIT(p, "\"port\":");
        p = put_u64(p, ip->port);
    }
    *p++ = '}';
    return p;
}

/* Writes a packed list field as a JSON array of objects whose members are named by <keys>
 * (<nkeys> of them); a key starting with '#' is written as a number. */
static char *put_list(char *p, const struct audit_event *ev, enum audit_str f, const char *name,
                      const char *const *keys, size_t nkeys)
{
    size_t len;
    const char *s = audit_event_str(ev, f, &len);
    const char *end;

    if (s == NULL)
        return p;
    end = s + len;
    *p++ = ',';
    *p++ = '"';
    memcpy(p, name, strlen(name));
    p += strlen(name);
    PUT_LIT(p, "\":[");
    for (int entry = 0; s < end; entry++) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        if (eol == NULL)
            eol = end;
        if (entry)
            *p++ = ',';
        *p++ = '{';
        for (size_t k = 0; k < nkeys; k++) {
            const char *m = s;
            while (s < eol && *s != '\t')
                s++;
            int num = keys[k][0] == '#';
            const char *key = keys[k] + num;
            if (k)
                *p++ = ',';
            *p++ = '"';
            memcpy(p, key, strlen(key));
            p += strlen(key);
            *p++ = '"';
            *p++ = ':';
            if (num && s > m) {
                memcpy(p, m, (size_t)(s - m));
                p += s - m;
            } else if (num) {
                *p++ = '0';
            } else {
                p = audit_json_str(p, m, (size_t)(s - m));
            }
            if (s < eol)
                s++; /* the '\t' */
        }
        *p++ = '}';
        s = eol + 1;
    }
    *p++ = ']';
    return p;
}

/* Writes a packed header field ("name \t value \n"...) as ,"headers":{"name":"value",...}; a
 * repeated name is written once, its values joined with ", " (RFC 9110 5.3). */
static char *put_headers(char *p, const struct audit_event *ev, enum audit_str f)
{
    size_t len;
    const char *s = audit_event_str(ev, f, &len), *end;
    if (s == NULL)
        return p;
    end = s + len;
    PUT_LIT(p, ",\"headers\":{");
    int first = 1;
    for (const char *line = s; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        const char *tab = memchr(line, '\t', (size_t)(eol - line));
        size_t nl = tab ? (size_t)(tab - line) : (size_t)(eol - line);
        /* skip a name written before: its values were joined there */
        int seen = 0;
        for (const char *q = s; q < line && !seen;) {
            const char *qe = memchr(q, '\n', (size_t)(line - q));
            const char *qt = qe ? memchr(q, '\t', (size_t)(qe - q)) : NULL;
            size_t ql = qt ? (size_t)(qt - q) : (size_t)((qe ? qe : line) - q);
            seen = ql == nl && memcmp(q, line, nl) == 0;
            q = qe ? qe + 1 : line;
        }
        if (!seen) {
            if (!first)
                *p++ = ',';
            first = 0;
            p = audit_json_str(p, line, nl);
            *p++ = ':';
            *p++ = '"';
            int nvals = 0;
            for (const char *q = line; q < end;) {
                const char *qe = memchr(q, '\n', (size_t)(end - q));
                if (qe == NULL)
                    qe = end;
                const char *qt = memchr(q, '\t', (size_t)(qe - q));
                size_t ql = qt ? (size_t)(qt - q) : (size_t)(qe - q);
                if (ql == nl && memcmp(q, line, nl) == 0) {
                    if (nvals++) {
                        *p++ = ',';
                        *p++ = ' ';
                    }
                    if (qt) { /* the value, escaped, without its quotes */
                        char *v = audit_json_str(p, qt + 1, (size_t)(qe - qt - 1));
                        memmove(p, p + 1, (size_t)(v - p - 2));
                        p = v - 2;
                    }
                }
                q = qe + 1;
            }
            *p++ = '"';
        }
        line = eol + 1;
    }
    *p++ = '}';
    return p;
}

/* Serializes <ev> at <p>, which has room for AUDIT_JSON_MAX of its strings; returns the end. */
static char *event_json(char *p, const struct audit_event *ev, const char *kind, uint64_t seq)
{
    const char *phase = audit_phase_name((enum audit_phase)ev->phase);
    const char *action = audit_action_name((enum audit_action)ev->action);
    uint32_t fl = ev->flags;
    int first;

    PUT_LIT(p, "{\"schema\":\"" AUDIT_SCHEMA "\",\"event\":\"");
    memcpy(p, kind, strlen(kind));
    p += strlen(kind);
    PUT_LIT(p, "\",\"seq\":");
    p = put_u64(p, seq);
    PUT_LIT(p, ",\"time\":\"");
    audit_format_time(ev->time_us, p);
    p += 27;
    *p++ = '"';
    if (fl & AUDIT_F_FLOW) {
        PUT_LIT(p, ",\"flow_id\":\"");
        audit_flow_id_format(ev->flow_id, p);
        p += AUDIT_FLOW_ID_LEN;
        *p++ = '"';
    }
    first = 0;
    PUT_FIELD(p, ev, AUDIT_STR_PARENT_FLOW, ",\"parent_flow_id\":", &first);
    if (phase != NULL) {
        PUT_LIT(p, ",\"phase\":\"");
        memcpy(p, phase, strlen(phase));
        p += strlen(phase);
        *p++ = '"';
    }
    if (action != NULL) {
        PUT_LIT(p, ",\"action\":\"");
        memcpy(p, action, strlen(action));
        p += strlen(action);
        *p++ = '"';
    }
    if (fl & AUDIT_F_RULE) {
        size_t len;
        const char *id = audit_event_str(ev, AUDIT_STR_RULE_ID, &len);

        if (id == NULL) {
            PUT_LIT(p, ",\"rule\":{\"id\":\"default\"}");
        } else {
            first = 1;
            PUT_LIT(p, ",\"rule\":{");
            PUT_FIELD(p, ev, AUDIT_STR_RULE_GROUP, ",\"group\":", &first);
            PUT_FIELD(p, ev, AUDIT_STR_RULE_ID, ",\"id\":", &first);
            PUT_LIT(p, ",\"priority\":");
            p = put_i64(p, ev->rule_priority);
            *p++ = '}';
        }
    }
    {
        static const char *const rule_keys[] = {"group", "id", "#priority", "action"};
        static const char *const unev_keys[] = {"group", "id", "#priority", "condition"};
        p = put_list(p, ev, AUDIT_STR_ALERTS, "alerts", rule_keys, 3);
        p = put_list(p, ev, AUDIT_STR_DRY_RUN, "dry_run", rule_keys, 4);
        p = put_list(p, ev, AUDIT_STR_UNEVALUABLE, "unevaluable", unev_keys, 4);
    }
    first = 0;
    PUT_FIELD(p, ev, AUDIT_STR_REASON, ",\"reason\":", &first);
    PUT_FIELD(p, ev, AUDIT_STR_CONFIG_VERSION, ",\"config_version\":", &first);
    PUT_FIELD(p, ev, AUDIT_STR_LISTENER, ",\"listener\":", &first);
    if (fl & AUDIT_F_CLIENT) {
        PUT_LIT(p, ",\"client\":");
        p = put_addr(p, &ev->client);
    }
    PUT_FIELD(p, ev, AUDIT_STR_PRINCIPAL, ",\"principal\":", &first);
    if (fl & AUDIT_F_REQUEST) {
        first = 1;
        PUT_LIT(p, ",\"request\":{");
        PUT_FIELD(p, ev, AUDIT_STR_METHOD, ",\"method\":", &first);
        PUT_FIELD(p, ev, AUDIT_STR_SCHEME, ",\"scheme\":", &first);
        PUT_FIELD(p, ev, AUDIT_STR_HOST, ",\"host\":", &first);
        if (ev->request_port != 0) {
            if (!first)
                *p++ = ',';
            first = 0;
            PUT_LIT(p, "\"port\":");
            p = put_u64(p, ev->request_port);
        }
        PUT_FIELD(p, ev, AUDIT_STR_PATH, ",\"path\":", &first);
        PUT_FIELD(p, ev, AUDIT_STR_QUERY, ",\"query\":", &first);
        if (first && audit_event_str(ev, AUDIT_STR_REQ_HEADERS, &(size_t){0}) != NULL) {
            /* no member before: drop the comma put_headers starts with */
            char *h = put_headers(p, ev, AUDIT_STR_REQ_HEADERS);
            memmove(p, p + 1, (size_t)(h - p - 1));
            p = h - 1;
        } else {
            p = put_headers(p, ev, AUDIT_STR_REQ_HEADERS);
        }
        *p++ = '}';
    }
    if (fl & AUDIT_F_DESTINATION) {
        PUT_LIT(p, ",\"destination\":");
        p = put_addr(p, &ev->destination);
    }
    if (fl & AUDIT_F_DNS) {
        size_t len;
        const char *a = audit_event_str(ev, AUDIT_STR_DNS_ANSWERS, &len), *end = a + len;
        PUT_LIT(p, ",\"dns\":{\"answers\":[");
        for (int n = 0; a != NULL && a < end; n++) {
            const char *eol = memchr(a, '\n', (size_t)(end - a));
            if (eol == NULL)
                eol = end;
            if (n)
                *p++ = ',';
            p = audit_json_str(p, a, (size_t)(eol - a));
            a = eol + 1;
        }
        *p++ = ']';
        if (fl & AUDIT_F_DESTINATION && ev->destination.family != 0) {
            PUT_LIT(p, ",\"used\":\"");
            p = put_ip(p, &ev->destination);
            *p++ = '"';
        }
        PUT_LIT(p, ",\"latency_ms\":");
        p = put_u64(p, ev->dns_latency_us / 1000);
        *p++ = '.';
        p = put_fixed(p, ev->dns_latency_us % 1000, 3);
        *p++ = '}';
    }
    if (fl & AUDIT_F_TLS) {
        size_t len;
        const char *a;
        first = 1;
        PUT_LIT(p, ",\"tls\":{");
        PUT_FIELD(p, ev, AUDIT_STR_TLS_SNI, ",\"sni\":", &first);
        if ((a = audit_event_str(ev, AUDIT_STR_TLS_ALPN, &len)) != NULL) {
            const char *end = a + len;
            if (!first)
                *p++ = ',';
            first = 0;
            PUT_LIT(p, "\"alpn_offered\":[");
            for (int n = 0; a < end; n++) {
                const char *eol = memchr(a, '\n', (size_t)(end - a));
                if (eol == NULL)
                    eol = end;
                if (n)
                    *p++ = ',';
                p = audit_json_str(p, a, (size_t)(eol - a));
                a = eol + 1;
            }
            *p++ = ']';
        }
        if (!first)
            *p++ = ',';
        first = 0;
        if (ev->tls_bits & AUDIT_TLS_INTERCEPTED)
            PUT_LIT(p, "\"intercepted\":true");
        else
            PUT_LIT(p, "\"intercepted\":false");
        if (ev->tls_bits & AUDIT_TLS_SNI_COMPARED) {
            if (ev->tls_bits & AUDIT_TLS_SNI_MATCHES)
                PUT_LIT(p, ",\"sni_matches_host\":true");
            else
                PUT_LIT(p, ",\"sni_matches_host\":false");
        }
        PUT_FIELD(p, ev, AUDIT_STR_TLS_HELLO, ",\"client_hello\":", &first);
        PUT_FIELD(p, ev, AUDIT_STR_TLS_VERSION, ",\"version\":", &first);
        PUT_FIELD(p, ev, AUDIT_STR_TLS_CIPHER, ",\"cipher\":", &first);
        if ((a = audit_event_str(ev, AUDIT_STR_TLS_CERT, &len)) != NULL) {
            static const char *const keys[] = {"sha256", "issuer", "subject", "not_before", "not_after"};
            const char *end = a + len;
            PUT_LIT(p, ",\"upstream_certificate\":{");
            for (size_t k = 0; k < 5; k++) {
                const char *m = a;
                while (a < end && *a != '\t')
                    a++;
                if (k)
                    *p++ = ',';
                *p++ = '"';
                memcpy(p, keys[k], strlen(keys[k]));
                p += strlen(keys[k]);
                *p++ = '"';
                *p++ = ':';
                p = audit_json_str(p, m, (size_t)(a - m));
                if (a < end)
                    a++;
            }
            *p++ = '}';
        }
        if (ev->tls_bits & AUDIT_TLS_LEAF) {
            int lfirst = 1;
            PUT_LIT(p, ",\"leaf\":{");
            PUT_FIELD(p, ev, AUDIT_STR_TLS_LEAF_SERIAL, ",\"serial\":", &lfirst);
            if (!lfirst)
                *p++ = ',';
            if (ev->tls_bits & AUDIT_TLS_LEAF_CACHE_HIT)
                PUT_LIT(p, "\"cache\":\"hit\"}");
            else
                PUT_LIT(p, "\"cache\":\"miss\"}");
        }
        PUT_FIELD(p, ev, AUDIT_STR_TLS_VERIFY_ERROR, ",\"verify_error\":", &first);
        *p++ = '}';
    }
    if (fl & AUDIT_F_RESPONSE) {
        first = 1;
        PUT_LIT(p, ",\"response\":{");
        if (ev->status != 0) {
            PUT_LIT(p, "\"status\":");
            p = put_u64(p, ev->status);
            first = 0;
        }
        PUT_FIELD(p, ev, AUDIT_STR_CONTENT_TYPE, ",\"content_type\":", &first);
        if (ev->content_length >= 0) {
            if (!first)
                *p++ = ',';
            first = 0;
            PUT_LIT(p, "\"content_length\":");
            p = put_i64(p, ev->content_length);
        }
        if (first && audit_event_str(ev, AUDIT_STR_RESP_HEADERS, &(size_t){0}) != NULL) {
            char *h = put_headers(p, ev, AUDIT_STR_RESP_HEADERS);
            memmove(p, p + 1, (size_t)(h - p - 1));
            p = h - 1;
        } else {
            p = put_headers(p, ev, AUDIT_STR_RESP_HEADERS);
        }
        *p++ = '}';
    }
    if (fl & AUDIT_F_BYTES) {
        PUT_LIT(p, ",\"bytes\":{\"up\":");
        p = put_u64(p, ev->bytes_up);
        PUT_LIT(p, ",\"down\":");
        p = put_u64(p, ev->bytes_down);
        *p++ = '}';
    }
    if (fl & AUDIT_F_DURATION) {
        PUT_LIT(p, ",\"duration_ms\":");
        p = put_u64(p, ev->duration_us / 1000);
        *p++ = '.';
        p = put_fixed(p, ev->duration_us % 1000, 3);
    }
    {
        static const char *const red_keys[] = {"field", "class", "token"};
        static const char *const seal_keys[] = {"field", "class", "key_id", "box"};
        static const char *const key_keys[] = {"role", "box"};
        p = put_list(p, ev, AUDIT_STR_REDACTIONS, "redactions", red_keys, 3);
        p = put_list(p, ev, AUDIT_STR_SEALED, "sealed", seal_keys, 4);
        first = 0;
        PUT_FIELD(p, ev, AUDIT_STR_KEY_ID, ",\"key_id\":", &first);
        p = put_list(p, ev, AUDIT_STR_KEY_SEALED, "sealed_for", key_keys, 2);
    }
    if (ev->kind == AUDIT_EVENT_AUDIT_LOSS) {
        PUT_LIT(p, ",\"lost\":");
        p = put_u64(p, ev->lost);
        PUT_LIT(p, ",\"refused\":");
        p = put_u64(p, ev->refused);
    }
    if (fl & AUDIT_F_TRUNCATED)
        PUT_LIT(p, ",\"truncated\":true");
    *p++ = '}';
    return p;
}

int audit_event_to_json(const struct audit_event *ev, uint64_t seq, struct audit_buf *out)
{
    const char *kind = audit_event_kind_name((enum audit_event_kind)ev->kind);
    size_t strings = 0, bound, len;
    char *end;

    if (kind == NULL)
        return -1; /* not an event (a damaged slot): the caller counts it as lost */
    /* Bound the output by the strings actually referenced, not by text_used: the fields of a
     * damaged event could overlap. */
    for (int f = 0; f < AUDIT_STR_COUNT; f++) {
        size_t n;

        if (audit_event_str(ev, (enum audit_str)f, &n) != NULL)
            strings += n;
    }
    bound = AUDIT_JSON_MAX(strings);
    if (buf_reserve(out, bound) == 0) {
        end = event_json(out->data + out->len, ev, kind, seq);
        out->len = (size_t)(end - out->data);
        return 0;
    }
    if (out->max == 0 || out->len > out->max)
        return -1; /* out of memory */
    {
        /* Near the cap the bound may not fit although the object would: write it aside. */
        char *tmp = malloc(bound);
        int rc;

        if (tmp == NULL)
            return -1;
        len = (size_t)(event_json(tmp, ev, kind, seq) - tmp);
        rc = audit_buf_append(out, tmp, len);
        free(tmp);
        return rc;
    }
}
