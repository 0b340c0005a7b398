/* tools/aq-scan.c - audit-query's filters, frame reader and time-indexed scanner (tools/aq.h).
 *
 * The scanner reads DATA_DIR/audit in writing order (audit_segment_list). A time range
 * skips, without decompressing anything:
 *   - a whole segment, by its digest's first_time/last_time (an unsealed segment: by its
 *     date directory and the next segment's start), and stops at the first segment that
 *     starts after --until;
 *   - frames inside a segment, by their first record's time, read from the first few
 *     hundred bytes of each frame (a frame whose successor starts before --since holds
 *     nothing newer); a frame is passed over by walking its block headers.
 * Bounds are widened by AQ_TIME_SLACK_US because record times may lag the record order a
 * little; each record is then filtered exactly. */
#include "tools/aq.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader: a frame's extent without decoding it */
#include <zstd.h>

#include "audit/audit.h"
#include "audit/segment.h"

#define ZSTD_MAGIC 0xFD2FB528u
#define SKIPPABLE_MASK 0xFFFFFFF0u
#define SKIPPABLE_MAGIC 0x184D2A50u
#define BLOCK_MAX (128 * 1024)
#define CFRAME_MAX (2 * AUDIT_SEGMENT_FRAME_MAX + 65536) /* a compressed frame, worst case */
#define PEEK_OUT 2048

const char aq_filter_help[] =
    "  --data-dir DIR      Vigil's data directory (default " AQ_DEFAULT_DATA_DIR ")\n"
    "  --since TIME        records at or after TIME: RFC 3339 (2026-11-26T10:00:00Z, a date,\n"
    "                      an offset) or relative to now (90s, 30m, 2h, 7d)\n"
    "  --until TIME        records at or before TIME (same forms)\n"
    "  --flow ID           flow_id or parent_flow_id (26 characters, any case)\n"
    "  --domain NAME       request.host: exactly NAME (any case), or *.SUFFIX for its subdomains\n"
    "  --client CIDR       client.ip inside CIDR (10.0.0.0/8, 2001:db8::/32, or one address)\n"
    "  --action ACTION     allow, deny, alert\n"
    "  --phase PHASE       pre_dns, pre_request, post_response\n"
    "  --event KIND        flow.phase, flow.end, proxy.config, audit.loss, audit.key\n"
    "  --rule [GROUP/]ID   the deciding rule, or an alert or dry-run rule of the phase\n"
    "  --class CLASS       a redaction class (pii.email) or pattern (pii.*, *) in redactions or sealed\n"
    "  --token TOKEN       records carrying this token (tok:<class>:<key>:<hash>)\n"
    "  --principal USER    the authenticated proxy user\n"
    "  --stats             print segments and frames read and skipped on stderr\n";

/* ---- small helpers ---- */

int64_t aq_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t aq_progress_interval_us(void)
{
    const char *ms = getenv("AQ_PROGRESS_MS");
    char *end;
    long v;

    if (ms == NULL || *ms == '\0')
        return 500000;
    v = strtol(ms, &end, 10);
    return *end == '\0' && v >= 0 && v <= 3600000 ? (int64_t)v * 1000 : 500000;
}

void aq_format_time(int64_t us, char out[32])
{
    audit_format_time(us, out);
}

/* days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil) */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* "YYYY-MM-DD[(T| )HH:MM[:SS[.frac]]][Z|+HH:MM|-HH:MM]" of <n> bytes */
static int parse_rfc3339(const char *s, size_t n, int64_t *out)
{
    int y, mo, d, h = 0, mi = 0, sec = 0;
    int64_t frac_us = 0, off_s = 0;
    size_t i;

    if (n < 10 || digits(s, 4, &y) == -1 || s[4] != '-' || digits(s + 5, 2, &mo) == -1 || s[7] != '-' ||
        digits(s + 8, 2, &d) == -1 || mo < 1 || mo > 12 || d < 1 || d > 31)
        return -1;
    i = 10;
    if (i < n && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
        if (n < i + 6 || digits(s + i + 1, 2, &h) == -1 || s[i + 3] != ':' || digits(s + i + 4, 2, &mi) == -1 ||
            h > 23 || mi > 59)
            return -1;
        i += 6;
        if (i < n && s[i] == ':') {
            if (n < i + 3 || digits(s + i + 1, 2, &sec) == -1 || sec > 60)
                return -1;
            i += 3;
            if (i < n && s[i] == '.') {
                int64_t scale = 100000;

                i++;
                if (i >= n || !isdigit((unsigned char)s[i]))
                    return -1;
                for (; i < n && isdigit((unsigned char)s[i]); i++) {
                    frac_us += (s[i] - '0') * scale;
                    scale /= 10;
                }
            }
        }
        if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
        } else if (i < n && (s[i] == '+' || s[i] == '-')) {
            int oh, om;

            if (n < i + 6 || digits(s + i + 1, 2, &oh) == -1 || s[i + 3] != ':' || digits(s + i + 4, 2, &om) == -1)
                return -1;
            off_s = (oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
            i += 6;
        }
    }
    if (i != n)
        return -1;
    *out = ((days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec) - off_s) * 1000000 +
           frac_us;
    return 0;
}

int aq_parse_time(const char *s, int64_t now_us, int64_t *out)
{
    char *end;
    unsigned long long v;
    int64_t unit;

    if (isdigit((unsigned char)s[0]) && strchr(s, '-') == NULL) {
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || end == s || end[0] == '\0' || end[1] != '\0')
            return -1;
        switch (*end) {
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86400;
            break;
        case 'w':
            unit = 7 * 86400;
            break;
        default:
            return -1;
        }
        if (v > 100ULL * 365 * 86400 / (unsigned long long)unit)
            return -1;
        *out = now_us - (int64_t)v * unit * 1000000;
        return 0;
    }
    return parse_rfc3339(s, strlen(s), out);
}

/* The value after "<key>": in <line>, searching from the start (the members the pipeline
 * writes first: schema, event, seq, time). */
static const char *find_member(const char *line, size_t len, const char *key, size_t klen)
{
    const char *p = memmem(line, len < 256 ? len : 256, key, klen);

    if (p == NULL)
        p = memmem(line, len, key, klen);
    return p != NULL ? p + klen : NULL;
}

int aq_line_time(const char *line, size_t len, int64_t *out)
{
    static const char key[] = "\"time\":\"";
    const char *v = find_member(line, len, key, sizeof(key) - 1), *q;

    if (v == NULL)
        return -1;
    q = memchr(v, '"', (size_t)(line + len - v));
    if (q == NULL)
        return -1;
    return parse_rfc3339(v, (size_t)(q - v), out);
}

int aq_line_seq(const char *line, size_t len, uint64_t *out)
{
    static const char key[] = "\"seq\":";
    const char *v = find_member(line, len, key, sizeof(key) - 1), *end = line + len;
    uint64_t n = 0;
    int nd = 0;

    if (v == NULL)
        return -1;
    for (; v < end && isdigit((unsigned char)*v) && nd < 20; v++, nd++)
        n = n * 10 + (uint64_t)(*v - '0');
    if (nd == 0 || (v < end && isdigit((unsigned char)*v)))
        return -1;
    *out = n;
    return 0;
}

/* ---- CIDR ---- */

int aq_cidr_parse(const char *s, struct aq_cidr *out)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash != NULL ? (size_t)(slash - s) : strlen(s);
    int max;

    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = 4;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = 6;
        max = 128;
    } else {
        return -1;
    }
    out->bits = max;
    if (slash != NULL) {
        char *end;
        long b;

        errno = 0;
        b = strtol(slash + 1, &end, 10);
        if (errno != 0 || end == slash + 1 || *end != '\0' || b < 0 || b > max)
            return -1;
        out->bits = (int)b;
    }
    return 0;
}

int aq_cidr_contains(const struct aq_cidr *c, const char *ip)
{
    uint8_t a[16];
    int full, rest;

    if (ip == NULL)
        return 0;
    memset(a, 0, sizeof(a));
    if (c->family == 4 ? inet_pton(AF_INET, ip, a) != 1 : inet_pton(AF_INET6, ip, a) != 1)
        return 0;
    full = c->bits / 8;
    rest = c->bits % 8;
    if (memcmp(a, c->addr, (size_t)full) != 0)
        return 0;
    if (rest != 0) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));

        if ((a[full] & mask) != (c->addr[full] & mask))
            return 0;
    }
    return 1;
}

/* ---- JSON access ---- */

static json_t *get_path(json_t *obj, const char *path)
{
    char key[128];
    const char *dot;
    json_t *v = obj;

    while ((dot = strchr(path, '.')) != NULL) {
        size_t n = (size_t)(dot - path);

        if (n >= sizeof(key))
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        v = json_object_get(v, key);
        path = dot + 1;
    }
    return json_object_get(v, path);
}

const char *aq_str(json_t *obj, const char *path)
{
    json_t *v = get_path(obj, path);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

long long aq_int(json_t *obj, const char *path, long long dflt)
{
    json_t *v = get_path(obj, path);

    return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

/* ---- filters ---- */

static int set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int one_of(const char *s, const char *const *names)
{
    for (; *names != NULL; names++)
        if (strcmp(s, *names) == 0)
            return 1;
    return 0;
}

int aq_filter_set(struct aq_filter *f, int opt, const char *arg, char *err, size_t errlen)
{
    static const char *const actions[] = { "allow", "deny", "alert", NULL };
    static const char *const phases[] = { "pre_dns", "pre_request", "post_response", NULL };
    static const char *const events[] = { "flow.phase", "flow.end", "proxy.config", "audit.loss", "audit.key", NULL };
    int64_t t;

    switch (opt) {
    case AQ_OPT_SINCE:
    case AQ_OPT_UNTIL:
        if (aq_parse_time(arg, aq_now_us(), &t) == -1)
            return set_err(err, errlen, "--%s: \"%s\" is neither an RFC 3339 time nor a relative one (2h, 30m, 7d)",
                           opt == AQ_OPT_SINCE ? "since" : "until", arg);
        if (opt == AQ_OPT_SINCE) {
            f->has_since = 1;
            f->since_us = t;
        } else {
            f->has_until = 1;
            f->until_us = t;
        }
        return 0;
    case AQ_OPT_FLOW: {
        uint8_t id[16];

        if (strlen(arg) != AUDIT_FLOW_ID_LEN || audit_flow_id_parse(arg, id) == -1)
            return set_err(err, errlen, "--flow: \"%s\" is not a flow id (26 Crockford base32 characters)", arg);
        audit_flow_id_format(id, f->flow);
        return 0;
    }
    case AQ_OPT_DOMAIN:
        if (strncmp(arg, "*.", 2) == 0) {
            f->domain = arg + 2;
            f->domain_suffix = 1;
        } else {
            f->domain = arg;
            f->domain_suffix = 0;
        }
        if (*f->domain == '\0')
            return set_err(err, errlen, "--domain: empty name");
        return 0;
    case AQ_OPT_CLIENT:
        if (aq_cidr_parse(arg, &f->client) == -1)
            return set_err(err, errlen, "--client: \"%s\" is not an address or CIDR", arg);
        f->has_client = 1;
        return 0;
    case AQ_OPT_ACTION:
        if (!one_of(arg, actions))
            return set_err(err, errlen, "--action: must be allow, deny or alert, not \"%s\"", arg);
        f->action = arg;
        return 0;
    case AQ_OPT_PHASE:
        if (!one_of(arg, phases))
            return set_err(err, errlen, "--phase: must be pre_dns, pre_request or post_response, not \"%s\"", arg);
        f->phase = arg;
        return 0;
    case AQ_OPT_EVENT:
        if (!one_of(arg, events))
            return set_err(err, errlen,
                           "--event: must be flow.phase, flow.end, proxy.config, audit.loss or audit.key, not \"%s\"",
                           arg);
        f->event = arg;
        return 0;
    case AQ_OPT_RULE: {
        const char *slash = strchr(arg, '/');

        if (slash != NULL) {
            static char groups[8][128]; /* a few --rule options at most; argv-like lifetime */
            static int ng;
            size_t n = (size_t)(slash - arg);

            if (n == 0 || n >= sizeof(groups[0]) || slash[1] == '\0' || ng == 8)
                return set_err(err, errlen, "--rule: \"%s\" is not ID or GROUP/ID", arg);
            memcpy(groups[ng], arg, n);
            groups[ng][n] = '\0';
            f->rule_group = groups[ng++];
            f->rule_id = slash + 1;
        } else {
            if (*arg == '\0')
                return set_err(err, errlen, "--rule: empty id");
            f->rule_group = NULL;
            f->rule_id = arg;
        }
        return 0;
    }
    case AQ_OPT_CLASS:
        if (*arg == '\0')
            return set_err(err, errlen, "--class: empty class");
        f->cls = arg;
        return 0;
    case AQ_OPT_TOKEN:
        if (strncmp(arg, "tok:", 4) != 0)
            return set_err(err, errlen, "--token: \"%s\" is not a token (tok:<class>:<key-id>:<hash>)", arg);
        f->token = arg;
        return 0;
    case AQ_OPT_PRINCIPAL:
        f->principal = arg;
        return 0;
    default:
        return set_err(err, errlen, "unknown filter");
    }
}

int aq_filter_any(const struct aq_filter *f)
{
    return f->flow[0] != '\0' || f->domain != NULL || f->has_client || f->action != NULL || f->phase != NULL ||
           f->event != NULL || f->principal != NULL || f->rule_id != NULL || f->cls != NULL || f->token != NULL ||
           f->has_since || f->has_until;
}

static int has_member(const char *line, size_t len, const char *key, const char *value)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "\"%s\":\"%s\"", key, value);

    if (n < 0 || (size_t)n >= sizeof(buf))
        return 1; /* cannot tell: let the full test decide */
    return memmem(line, len, buf, (size_t)n) != NULL;
}

int aq_filter_prefilter(const struct aq_filter *f, const char *line, size_t len)
{
    if (f->flow[0] != '\0' && memmem(line, len, f->flow, AUDIT_FLOW_ID_LEN) == NULL)
        return 0;
    if (f->domain != NULL) {
        /* host names are LDH, never escaped: "x" needs "host":"x", "*.x" needs .x" */
        char buf[300];
        int n = f->domain_suffix ? snprintf(buf, sizeof(buf), ".%s\"", f->domain)
                                 : snprintf(buf, sizeof(buf), "\"host\":\"%s\"", f->domain);
        for (int i = 0; i > -1 && i < n && (size_t)i < sizeof(buf); i++) /* vigil records hosts lowercased */
            buf[i] = (char)tolower((unsigned char)buf[i]);
        if (n > 0 && (size_t)n < sizeof(buf) && memmem(line, len, buf, (size_t)n) == NULL)
            return 0;
    }
    if (f->token != NULL && memmem(line, len, f->token, strlen(f->token)) == NULL)
        return 0;
    if (f->event != NULL && !has_member(line, len, "event", f->event))
        return 0;
    if (f->action != NULL && memmem(line, len, f->action, strlen(f->action)) == NULL)
        return 0;
    if (f->phase != NULL && !has_member(line, len, "phase", f->phase))
        return 0;
    if (f->rule_id != NULL && memmem(line, len, f->rule_id, strlen(f->rule_id)) == NULL)
        return 0;
    if (f->cls != NULL && memmem(line, len, "\"class\":\"", 9) == NULL)
        return 0;
    if (f->principal != NULL && memmem(line, len, "\"principal\":", 12) == NULL)
        return 0;
    if (f->has_since || f->has_until) {
        int64_t t;

        if (aq_line_time(line, len, &t) == 0 &&
            ((f->has_since && t < f->since_us) || (f->has_until && t > f->until_us)))
            return 0;
    }
    return 1;
}

static int class_match(const char *pattern, const char *cls)
{
    size_t n = strlen(pattern);

    if (strcmp(pattern, "*") == 0)
        return 1;
    if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '.')
        return strncmp(cls, pattern, n - 1) == 0 && cls[n - 1] != '\0';
    return strcmp(pattern, cls) == 0;
}

static int rule_entry_match(json_t *r, const struct aq_filter *f)
{
    const char *id = aq_str(r, "id"), *group = aq_str(r, "group");

    if (id == NULL || strcmp(id, f->rule_id) != 0)
        return 0;
    return f->rule_group == NULL || (group != NULL && strcmp(group, f->rule_group) == 0);
}

static int list_has(json_t *obj, const char *list, const char *key, const char *pattern)
{
    json_t *a = json_object_get(obj, list), *e;
    size_t i;

    json_array_foreach(a, i, e) {
        const char *v = aq_str(e, key);

        if (v != NULL && class_match(pattern, v))
            return 1;
    }
    return 0;
}

static int eq(json_t *obj, const char *path, const char *want)
{
    const char *v = aq_str(obj, path);

    return v != NULL && strcmp(v, want) == 0;
}

int aq_filter_match(const struct aq_filter *f, json_t *obj)
{
    if (f->event != NULL && !eq(obj, "event", f->event))
        return 0;
    if (f->phase != NULL && !eq(obj, "phase", f->phase))
        return 0;
    if (f->action != NULL && !eq(obj, "action", f->action))
        return 0;
    if (f->principal != NULL && !eq(obj, "principal", f->principal))
        return 0;
    if (f->flow[0] != '\0') {
        const char *a = aq_str(obj, "flow_id"), *b = aq_str(obj, "parent_flow_id");

        if (!((a != NULL && strcmp(a, f->flow) == 0) || (b != NULL && strcmp(b, f->flow) == 0)))
            return 0;
    }
    if (f->domain != NULL) {
        const char *h = aq_str(obj, "request.host");
        size_t hl, sl = strlen(f->domain);

        if (h == NULL)
            return 0;
        hl = strlen(h);
        if (f->domain_suffix) {
            /* a label, a dot, then the suffix; never the suffix alone (as in policy) */
            if (!(hl > sl + 1 && h[hl - sl - 1] == '.' && strcasecmp(h + hl - sl, f->domain) == 0))
                return 0;
        } else if (strcasecmp(h, f->domain) != 0) {
            return 0;
        }
    }
    if (f->has_client && !aq_cidr_contains(&f->client, aq_str(obj, "client.ip")))
        return 0;
    if (f->rule_id != NULL) {
        json_t *r = json_object_get(obj, "rule"), *e;
        int hit = r != NULL && rule_entry_match(r, f);
        size_t i;

        json_array_foreach(json_object_get(obj, "alerts"), i, e) hit = hit || rule_entry_match(e, f);
        json_array_foreach(json_object_get(obj, "dry_run"), i, e) hit = hit || rule_entry_match(e, f);
        if (!hit)
            return 0;
    }
    if (f->cls != NULL && !list_has(obj, "redactions", "class", f->cls) && !list_has(obj, "sealed", "class", f->cls))
        return 0;
    if (f->has_since || f->has_until) {
        const char *ts = aq_str(obj, "time");
        int64_t t;

        if (ts == NULL || parse_rfc3339(ts, strlen(ts), &t) == -1)
            return 0;
        if ((f->has_since && t < f->since_us) || (f->has_until && t > f->until_us))
            return 0;
    }
    return 1;
}

json_t *aq_filter_to_json(const struct aq_filter *f)
{
    json_t *o = json_object();
    char t[32], buf[256];

    if (f->has_since) {
        aq_format_time(f->since_us, t);
        json_object_set_new(o, "since", json_string(t));
    }
    if (f->has_until) {
        aq_format_time(f->until_us, t);
        json_object_set_new(o, "until", json_string(t));
    }
    if (f->flow[0] != '\0')
        json_object_set_new(o, "flow", json_string(f->flow));
    if (f->domain != NULL) {
        snprintf(buf, sizeof(buf), "%s%s", f->domain_suffix ? "*." : "", f->domain);
        json_object_set_new(o, "domain", json_string(buf));
    }
    if (f->has_client) {
        char ip[INET6_ADDRSTRLEN];

        inet_ntop(f->client.family == 4 ? AF_INET : AF_INET6, f->client.addr, ip, sizeof(ip));
        snprintf(buf, sizeof(buf), "%s/%d", ip, f->client.bits);
        json_object_set_new(o, "client", json_string(buf));
    }
    if (f->action != NULL)
        json_object_set_new(o, "action", json_string(f->action));
    if (f->phase != NULL)
        json_object_set_new(o, "phase", json_string(f->phase));
    if (f->event != NULL)
        json_object_set_new(o, "event", json_string(f->event));
    if (f->rule_id != NULL) {
        snprintf(buf, sizeof(buf), "%s%s%s", f->rule_group ? f->rule_group : "", f->rule_group ? "/" : "", f->rule_id);
        json_object_set_new(o, "rule", json_string(buf));
    }
    if (f->cls != NULL)
        json_object_set_new(o, "class", json_string(f->cls));
    if (f->token != NULL)
        json_object_set_new(o, "token", json_string(f->token));
    if (f->principal != NULL)
        json_object_set_new(o, "principal", json_string(f->principal));
    return o;
}

/* ---- frames ---- */

struct aq_frames {
    int fd;
    uint64_t size;
    uint64_t pos;      /* where the next frame starts */
    uint64_t off, end; /* the current frame: [off, end) */
    uint64_t index;    /* data frames consumed */
    int have;          /* a frame was found and not consumed */
    ZSTD_DCtx *dctx;
    unsigned char *cbuf;
    size_t ccap;
    char *out;
    size_t outcap;
    char err[256];
};

struct aq_frames *aq_frames_open(const char *path, char *err, size_t errlen)
{
    struct aq_frames *fr = calloc(1, sizeof(*fr));
    struct stat st;

    if (fr == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    fr->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fr->fd == -1) {
        set_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        free(fr);
        return NULL;
    }
    if (fstat(fr->fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", path);
        close(fr->fd);
        free(fr);
        return NULL;
    }
    fr->size = (uint64_t)st.st_size;
    fr->dctx = ZSTD_createDCtx();
    if (fr->dctx == NULL) {
        set_err(err, errlen, "out of memory");
        close(fr->fd);
        free(fr);
        return NULL;
    }
    return fr;
}

void aq_frames_close(struct aq_frames *fr)
{
    if (fr == NULL)
        return;
    close(fr->fd);
    ZSTD_freeDCtx(fr->dctx);
    free(fr->cbuf);
    free(fr->out);
    free(fr);
}

uint64_t aq_frames_offset(const struct aq_frames *fr)
{
    return fr->have ? fr->off : fr->pos;
}

uint64_t aq_frames_size(const struct aq_frames *fr)
{
    return fr->size;
}

uint64_t aq_frames_index(const struct aq_frames *fr)
{
    return fr->index;
}

const char *aq_frames_error(const struct aq_frames *fr)
{
    return fr->err;
}

static int read_at(struct aq_frames *fr, void *buf, size_t n, uint64_t off)
{
    size_t done = 0;

    while (done < n) {
        ssize_t r = pread(fr->fd, (char *)buf + done, n - done, (off_t)(off + done));

        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            snprintf(fr->err, sizeof(fr->err), "read error at byte %llu: %s", (unsigned long long)(off + done),
                     strerror(errno));
            return -1;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (int)(done == n ? 0 : -1);
}

static enum aq_frame_rc bad(struct aq_frames *fr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static enum aq_frame_rc bad(struct aq_frames *fr, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(fr->err, sizeof(fr->err), fmt, ap);
    va_end(ap);
    fr->have = 0;
    fr->off = fr->pos;
    return AQ_FRAME_BAD;
}

#define TORN "the last frame is incomplete"

enum aq_frame_rc aq_frames_next(struct aq_frames *fr)
{
    unsigned char h[ZSTD_FRAMEHEADERSIZE_MAX];
    ZSTD_frameHeader zfh;
    uint64_t p;
    uint32_t magic;

    if (fr->have)
        return AQ_FRAME_OK;
    for (;;) {
        size_t avail;

        if (fr->pos == fr->size)
            return AQ_FRAME_END;
        if (fr->size - fr->pos < 4)
            return bad(fr, TORN);
        if (read_at(fr, h, 4, fr->pos) == -1)
            return bad(fr, "%s", fr->err[0] ? fr->err : TORN);
        magic = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
        if ((magic & SKIPPABLE_MASK) == SKIPPABLE_MAGIC) {
            uint32_t n;

            if (fr->size - fr->pos < 8 || read_at(fr, h, 8, fr->pos) == -1)
                return bad(fr, TORN);
            n = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
            if (fr->size - fr->pos - 8 < n)
                return bad(fr, TORN);
            fr->pos += 8 + (uint64_t)n;
            continue;
        }
        if (magic != ZSTD_MAGIC)
            return bad(fr, "not a zstd frame (bad magic number)");
        avail = fr->size - fr->pos < sizeof(h) ? (size_t)(fr->size - fr->pos) : sizeof(h);
        if (read_at(fr, h, avail, fr->pos) == -1)
            return bad(fr, TORN);
        if (ZSTD_getFrameHeader(&zfh, h, avail) != 0)
            return bad(fr, avail < sizeof(h) ? TORN : "corrupt frame header");
        if (zfh.frameContentSize != ZSTD_CONTENTSIZE_UNKNOWN && zfh.frameContentSize > AUDIT_SEGMENT_FRAME_MAX)
            return bad(fr, "frame larger than %d bytes", AUDIT_SEGMENT_FRAME_MAX);
        p = fr->pos + zfh.headerSize;
        for (;;) {
            unsigned char b[3];
            uint32_t bh, type, bsize;

            if (fr->size - p < 3 || read_at(fr, b, 3, p) == -1)
                return bad(fr, TORN);
            bh = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16;
            type = (bh >> 1) & 3;
            bsize = bh >> 3;
            if (type == 3 || bsize > BLOCK_MAX)
                return bad(fr, "corrupt block header");
            p += 3 + (type == 1 ? 1 : bsize);
            if (p > fr->size)
                return bad(fr, TORN);
            if (bh & 1)
                break;
        }
        if (zfh.checksumFlag)
            p += 4;
        if (p > fr->size)
            return bad(fr, TORN);
        fr->off = fr->pos;
        fr->end = p;
        fr->have = 1;
        return AQ_FRAME_OK;
    }
}

void aq_frames_skip(struct aq_frames *fr)
{
    if (!fr->have)
        return;
    fr->pos = fr->end;
    fr->have = 0;
    fr->index++;
}

/* Reads the current frame's compressed bytes into fr->cbuf (at most <limit>). */
static int load(struct aq_frames *fr, size_t limit, size_t *n)
{
    uint64_t csize = fr->end - fr->off;

    if (csize > CFRAME_MAX) {
        snprintf(fr->err, sizeof(fr->err), "frame of %llu compressed bytes is too large", (unsigned long long)csize);
        return -1;
    }
    *n = csize < limit ? (size_t)csize : limit;
    if (fr->ccap < *n) {
        unsigned char *b = realloc(fr->cbuf, *n);

        if (b == NULL) {
            snprintf(fr->err, sizeof(fr->err), "out of memory");
            return -1;
        }
        fr->cbuf = b;
        fr->ccap = *n;
    }
    if (read_at(fr, fr->cbuf, *n, fr->off) == -1) {
        if (fr->err[0] == '\0')
            snprintf(fr->err, sizeof(fr->err), TORN);
        return -1;
    }
    return 0;
}

enum aq_frame_rc aq_frames_decode(struct aq_frames *fr, const char **data, size_t *len)
{
    ZSTD_inBuffer in;
    ZSTD_outBuffer out;
    size_t n, ret;

    if (!fr->have)
        return bad(fr, "no frame");
    if (load(fr, SIZE_MAX, &n) == -1)
        return bad(fr, "%s", fr->err);
    ZSTD_DCtx_reset(fr->dctx, ZSTD_reset_session_only);
    in = (ZSTD_inBuffer){ fr->cbuf, n, 0 };
    if (fr->out == NULL) {
        fr->outcap = 256 * 1024;
        fr->out = malloc(fr->outcap);
        if (fr->out == NULL)
            return bad(fr, "out of memory");
    }
    out = (ZSTD_outBuffer){ fr->out, fr->outcap, 0 };
    for (;;) {
        ret = ZSTD_decompressStream(fr->dctx, &out, &in);
        if (ZSTD_isError(ret))
            return bad(fr, "corrupt frame: %s", ZSTD_getErrorName(ret));
        if (ret == 0)
            break;
        if (out.pos == out.size) {
            size_t cap = fr->outcap * 2;
            char *b;

            if (fr->outcap >= AUDIT_SEGMENT_FRAME_MAX)
                return bad(fr, "frame larger than %d bytes", AUDIT_SEGMENT_FRAME_MAX);
            if (cap > AUDIT_SEGMENT_FRAME_MAX)
                cap = AUDIT_SEGMENT_FRAME_MAX;
            b = realloc(fr->out, cap);
            if (b == NULL)
                return bad(fr, "out of memory");
            fr->out = b;
            fr->outcap = cap;
            out.dst = b;
            out.size = cap;
        } else if (in.pos == in.size) {
            return bad(fr, TORN);
        }
    }
    if (in.pos != in.size)
        return bad(fr, "corrupt frame: bytes after its end");
    if (out.pos > 0 && fr->out[out.pos - 1] != '\n')
        return bad(fr, "the frame does not end with a newline");
    *data = fr->out;
    *len = out.pos;
    fr->pos = fr->end;
    fr->have = 0;
    fr->index++;
    return AQ_FRAME_OK;
}

int aq_frames_peek_time(struct aq_frames *fr, int64_t *time_us)
{
    char buf[PEEK_OUT];
    ZSTD_inBuffer in;
    ZSTD_outBuffer out;
    size_t n, ret;
    const char *nl;

    if (!fr->have || load(fr, 64 * 1024, &n) == -1)
        return -1;
    ZSTD_DCtx_reset(fr->dctx, ZSTD_reset_session_only);
    in = (ZSTD_inBuffer){ fr->cbuf, n, 0 };
    out = (ZSTD_outBuffer){ buf, sizeof(buf), 0 };
    do {
        ret = ZSTD_decompressStream(fr->dctx, &out, &in);
        if (ZSTD_isError(ret))
            return -1;
    } while (ret != 0 && out.pos < out.size && in.pos < in.size);
    nl = memchr(buf, '\n', out.pos);
    return aq_line_time(buf, nl != NULL ? (size_t)(nl - buf) : out.pos, time_us);
}

/* ---- scanner ---- */

/* The time range a segment may hold: [lo, hi], from its digest, else from its date. */
struct seg_range {
    int has_lo, has_hi;
    int64_t lo, hi;
};

static void segment_range(const struct audit_segment_entry *e, struct seg_range *r)
{
    struct audit_digest d;
    char sig[4200], err[256];
    int y, m, day;

    memset(r, 0, sizeof(*r));
    snprintf(sig, sizeof(sig), "%s%s", e->path, AUDIT_DIGEST_SUFFIX);
    if (access(sig, F_OK) == 0 && audit_digest_read(sig, NULL, &d, NULL, err, sizeof(err)) == 0 && d.records > 0) {
        r->has_lo = r->has_hi = 1;
        r->lo = d.first_time_us;
        r->hi = d.last_time_us;
        return;
    }
    if (sscanf(e->date, "%4d-%2d-%2d", &y, &m, &day) == 3) {
        r->has_lo = 1;
        r->lo = days_from_civil(y, (unsigned)m, (unsigned)day) * 86400 * 1000000;
    }
}

int aq_check_data_dir(const char *dir)
{
    struct stat st;

    if (stat(dir, &st) == -1) {
        fprintf(stderr, "%s: cannot read data directory %s: %s\n", AQ_PROG, dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: cannot read data directory %s: not a directory\n", AQ_PROG, dir);
        return -1;
    }
    if (access(dir, R_OK | X_OK) == -1) {
        fprintf(stderr, "%s: cannot read data directory %s: %s\n", AQ_PROG, dir, strerror(errno));
        return -1;
    }
    return 0;
}

struct scan_state {
    const struct aq_scan_opts *o;
    aq_line_cb cb;
    void *ctx;
    struct aq_scan_stats *st;
    int stop;
    int64_t progress_us;
    size_t seg_i, seg_n;
    int show_progress;
};

static void progress(struct scan_state *s, int done)
{
    int64_t now;

    if (!s->show_progress)
        return;
    now = aq_now_us();
    if (!done && now - s->progress_us < aq_progress_interval_us())
        return;
    if (s->progress_us == 0 && !done) {
        s->progress_us = now; /* only once the scan has run a while */
        return;
    }
    s->progress_us = now;
    fprintf(stderr, "\r%s: segment %zu/%zu, %llu records, %llu MB decompressed%s", AQ_PROG, s->seg_i, s->seg_n,
            (unsigned long long)s->st->lines, (unsigned long long)(s->st->bytes_decompressed >> 20),
            done ? "\n" : "");
}

/* Hands the lines of one decoded frame to the callback. */
static void emit_frame(struct scan_state *s, const char *path, uint64_t *lineno, const char *data, size_t len)
{
    const char *p = data, *end = data + len;

    s->st->frames_decoded++;
    s->st->bytes_decompressed += len;
    while (p < end && !s->stop) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        struct aq_line l = { .path = path, .lineno = ++*lineno, .data = p, .len = (size_t)(nl - p) };

        s->st->lines++;
        if (s->cb(s->ctx, &l) != 0)
            s->stop = 1;
        p = nl + 1;
    }
    progress(s, 0);
}

static void damaged(struct scan_state *s, const char *path, struct aq_frames *fr)
{
    s->st->damaged++;
    if (!s->o->quiet)
        fprintf(stderr, "%s: warning: truncated at byte %llu of %s: %s\n", AQ_PROG,
                (unsigned long long)aq_frames_offset(fr), path, aq_frames_error(fr));
}

static void scan_segment(struct scan_state *s, const char *path, const struct seg_range *r)
{
    const struct aq_filter *f = s->o->f;
    int since = f != NULL && f->has_since, until = f != NULL && f->has_until;
    /* a segment that ends well before --until needs no look at its frames' times for it */
    if (until && r->has_hi && r->hi + AQ_TIME_SLACK_US < f->until_us)
        until = 0;
    struct aq_frames *fr;
    uint64_t lineno = 0, prev_off = 0, prev_index = 0;
    int have_prev = 0, in_range = !since;
    const char *data;
    size_t len;
    char err[512];
    enum aq_frame_rc rc;

    fr = aq_frames_open(path, err, sizeof(err));
    if (fr == NULL) {
        if (!s->o->quiet)
            fprintf(stderr, "%s: warning: %s\n", AQ_PROG, err);
        s->st->damaged++;
        return;
    }
    while (!s->stop && (rc = aq_frames_next(fr)) == AQ_FRAME_OK) {
        int64_t t;
        int known = (since && !in_range) || until ? aq_frames_peek_time(fr, &t) == 0 : 0;

        if (!in_range) {
            if (known && t + AQ_TIME_SLACK_US < f->since_us) {
                /* this frame starts too early; the one before it ends before it starts */
                if (have_prev)
                    s->st->frames_skipped++;
                prev_off = aq_frames_offset(fr);
                prev_index = aq_frames_index(fr);
                have_prev = 1;
                aq_frames_skip(fr);
                continue;
            }
            in_range = 1;
            if (have_prev) {
                /* the previous frame may reach into the range: read it, then this one */
                uint64_t here = aq_frames_offset(fr), here_index = aq_frames_index(fr);

                fr->pos = prev_off;
                fr->index = prev_index;
                fr->have = 0;
                if (aq_frames_next(fr) == AQ_FRAME_OK && aq_frames_decode(fr, &data, &len) == AQ_FRAME_OK)
                    emit_frame(s, path, &lineno, data, len);
                fr->pos = here;
                fr->index = here_index;
                fr->have = 0;
                have_prev = 0;
                if (s->stop || aq_frames_next(fr) != AQ_FRAME_OK)
                    break;
            }
        }
        if (until && known && t - AQ_TIME_SLACK_US > f->until_us) {
            s->stop = 1; /* this frame and everything after it is later */
            break;
        }
        if (aq_frames_decode(fr, &data, &len) != AQ_FRAME_OK) {
            damaged(s, path, fr);
            aq_frames_close(fr);
            return;
        }
        emit_frame(s, path, &lineno, data, len);
    }
    if (!s->stop && rc == AQ_FRAME_BAD) {
        damaged(s, path, fr);
    } else if (!s->stop && have_prev) {
        /* every frame started before the range: only the last may reach into it */
        if (r->has_hi && r->hi + AQ_TIME_SLACK_US < f->since_us) {
            s->st->frames_skipped++;
        } else {
            fr->pos = prev_off;
            fr->index = prev_index;
            fr->have = 0;
            if (aq_frames_next(fr) == AQ_FRAME_OK && aq_frames_decode(fr, &data, &len) == AQ_FRAME_OK)
                emit_frame(s, path, &lineno, data, len);
            else
                damaged(s, path, fr);
        }
    }
    aq_frames_close(fr);
}

int aq_scan(const struct aq_scan_opts *o, aq_line_cb cb, void *ctx, struct aq_scan_stats *st, char *err,
            size_t errlen)
{
    struct scan_state s = { .o = o, .cb = cb, .ctx = ctx, .st = st };
    const struct aq_filter *f = o->f;
    struct audit_segment_entry *list;
    struct seg_range cur, next;
    size_t n, i;

    memset(st, 0, sizeof(*st));
    if (audit_segment_list(o->data_dir, &list, &n, err, errlen) == -1)
        return -1;
    if (o->last_segment > 0 && o->last_segment < n)
        n = (size_t)o->last_segment;
    s.seg_n = n;
    s.show_progress = o->progress && isatty(2);
    if (n > 0)
        segment_range(&list[0], &next);
    for (i = 0; i < n && !s.stop; i++) {
        cur = next;
        if (i + 1 < n)
            segment_range(&list[i + 1], &next);
        else
            memset(&next, 0, sizeof(next));
        /* without a digest, a segment ends where the next one starts */
        if (!cur.has_hi && next.has_lo) {
            cur.has_hi = 1;
            cur.hi = next.lo;
        }
        s.seg_i = i + 1;
        if (f != NULL && f->has_until && cur.has_lo && cur.lo - AQ_TIME_SLACK_US > f->until_us)
            break; /* this one and all later ones start after the range */
        if (f != NULL && f->has_since && cur.has_hi && cur.hi + AQ_TIME_SLACK_US < f->since_us) {
            st->segments_skipped++;
            continue;
        }
        st->segments++;
        scan_segment(&s, list[i].path, &cur);
    }
    st->segments_skipped += n - i;
    progress(&s, 1);
    audit_segment_list_free(list, n);
    return 0;
}

void aq_scan_stats_print(const struct aq_scan_stats *st)
{
    fprintf(stderr,
            "%s: stats: segments read %llu, skipped %llu; frames decompressed %llu, skipped %llu; "
            "%llu bytes decompressed, %llu records read\n",
            AQ_PROG, (unsigned long long)st->segments, (unsigned long long)st->segments_skipped,
            (unsigned long long)st->frames_decoded, (unsigned long long)st->frames_skipped,
            (unsigned long long)st->bytes_decompressed, (unsigned long long)st->lines);
}

/* ---- map ---- */

struct map_slot {
    char *key; /* NULL: empty; TOMB: deleted */
    size_t klen;
    uint64_t hash;
};

static char tomb_mark;
#define TOMB (&tomb_mark)

struct aq_map {
    struct map_slot *slots;
    unsigned char *vals;
    size_t cap, used, tombs, vsize, max;
    uint64_t refused;
};

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

struct aq_map *aq_map_new(size_t vsize, size_t max)
{
    struct aq_map *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    m->cap = 64;
    m->vsize = vsize > 0 ? vsize : 1;
    m->max = max;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    m->vals = calloc(m->cap, m->vsize);
    if (m->slots == NULL || m->vals == NULL) {
        aq_map_free(m);
        return NULL;
    }
    return m;
}

void aq_map_free(struct aq_map *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; m->slots != NULL && i < m->cap; i++)
        if (m->slots[i].key != NULL && m->slots[i].key != TOMB)
            free(m->slots[i].key);
    free(m->slots);
    free(m->vals);
    free(m);
}

static int map_grow(struct aq_map *m)
{
    size_t ncap = m->used * 2 >= m->cap ? m->cap * 2 : m->cap;
    struct map_slot *ns = calloc(ncap, sizeof(*ns));
    unsigned char *nv = calloc(ncap, m->vsize);

    if (ns == NULL || nv == NULL) {
        free(ns);
        free(nv);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        size_t j;

        if (m->slots[i].key == NULL || m->slots[i].key == TOMB)
            continue;
        for (j = m->slots[i].hash & (ncap - 1); ns[j].key != NULL; j = (j + 1) & (ncap - 1))
            ;
        ns[j] = m->slots[i];
        memcpy(nv + j * m->vsize, m->vals + i * m->vsize, m->vsize);
    }
    free(m->slots);
    free(m->vals);
    m->slots = ns;
    m->vals = nv;
    m->cap = ncap;
    m->tombs = 0;
    return 0;
}

void *aq_map_get(struct aq_map *m, const char *key, size_t klen, int create)
{
    uint64_t h = hash_bytes(key, klen);
    size_t i, first_tomb = SIZE_MAX;

    for (i = h & (m->cap - 1); m->slots[i].key != NULL; i = (i + 1) & (m->cap - 1)) {
        struct map_slot *s = &m->slots[i];

        if (s->key == TOMB) {
            if (first_tomb == SIZE_MAX)
                first_tomb = i;
            continue;
        }
        if (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0)
            return m->vals + i * m->vsize;
    }
    if (!create)
        return NULL;
    if (m->max > 0 && m->used >= m->max) {
        m->refused++;
        return NULL;
    }
    if ((m->used + m->tombs + 1) * 10 > m->cap * 7) {
        if (map_grow(m) == -1) {
            m->refused++;
            return NULL;
        }
        return aq_map_get(m, key, klen, create);
    }
    if (first_tomb != SIZE_MAX) {
        i = first_tomb;
        m->tombs--;
    }
    m->slots[i].key = malloc(klen + 1);
    if (m->slots[i].key == NULL) {
        m->slots[i].key = first_tomb != SIZE_MAX ? TOMB : NULL;
        if (first_tomb != SIZE_MAX)
            m->tombs++;
        m->refused++;
        return NULL;
    }
    memcpy(m->slots[i].key, key, klen);
    m->slots[i].key[klen] = '\0';
    m->slots[i].klen = klen;
    m->slots[i].hash = h;
    memset(m->vals + i * m->vsize, 0, m->vsize);
    m->used++;
    return m->vals + i * m->vsize;
}

int aq_map_del(struct aq_map *m, const char *key, size_t klen)
{
    unsigned char *v = aq_map_get(m, key, klen, 0);
    size_t i;

    if (v == NULL)
        return -1;
    i = (size_t)(v - m->vals) / m->vsize;
    free(m->slots[i].key);
    m->slots[i].key = TOMB;
    m->used--;
    m->tombs++;
    return 0;
}

size_t aq_map_count(const struct aq_map *m)
{
    return m->used;
}

uint64_t aq_map_refused(const struct aq_map *m)
{
    return m->refused;
}

int aq_map_next(const struct aq_map *m, size_t *i, const char **key, void **val)
{
    for (; *i < m->cap; (*i)++) {
        if (m->slots[*i].key != NULL && m->slots[*i].key != TOMB) {
            *key = m->slots[*i].key;
            *val = m->vals + *i * m->vsize;
            (*i)++;
            return 1;
        }
    }
    return 0;
}

/* ---- output helpers ---- */

void aq_csv_cell(FILE *out, const char *s)
{
    int quote, formula;

    if (s == NULL)
        return;
    formula = s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r';
    quote = formula || strpbrk(s, ",\"\r\n") != NULL;
    if (quote)
        fputc('"', out);
    if (formula)
        fputc('\'', out);
    for (; *s != '\0'; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    if (quote)
        fputc('"', out);
}

void aq_html_text(FILE *out, const char *s)
{
    for (; s != NULL && *s != '\0'; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '&':
            fputs("&amp;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&#39;", out);
            break;
        default:
            fputc((unsigned char)*s < 0x20 ? '?' : *s, out);
        }
    }
}

void aq_safe_text(FILE *out, const char *s)
{
    for (; s != NULL && *s != '\0'; s++)
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, out);
}
