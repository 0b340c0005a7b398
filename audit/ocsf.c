/* audit/ocsf.c - the OCSF form of an event, for sinks configured with "format": "ocsf".
 *
 * flow.phase and flow.end become OCSF HTTP Activity (class_uid 4002, category Network
 * Activity, activity by request method), proxy.config becomes Device Config State Change
 * (5019) and audit.loss a Base Event (0); every field without an OCSF attribute goes under
 * "unmapped", which ends with the record's "seq" and "chain" so the OCSF feed can be
 * matched against the signed native record. schemas/ocsf-mapping.md lists the mapping
 * field by field.
 *
 * Runs on the pipeline thread, only when some sink wants OCSF. It appends to an audit_buf
 * that keeps its memory between records: no allocation per record once warm. */
#include "audit/audit.h"
#include "audit/audit-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OCSF_VERSION "1.1.0"
#define OCSF_PRODUCT "Vigil"

struct out {
    struct audit_buf *b;
    int failed;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (audit_buf_append(o->b, s, n) == -1)
        o->failed = 1;
}

#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)

/* "<key>": preceded by a comma unless it is the first member of its object. */
static void put_key(struct out *o, const char *key, int first)
{
    if (!first)
        put(o, ",", 1);
    put(o, "\"", 1);
    put(o, key, strlen(key));
    put(o, "\":", 2);
}

static void put_u64(struct out *o, uint64_t v)
{
    char tmp[24];
    size_t n = sizeof(tmp);

    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(o, tmp + n, sizeof(tmp) - n);
}

static void put_i64(struct out *o, int64_t v)
{
    if (v < 0) {
        put(o, "-", 1);
        put_u64(o, (uint64_t)0 - (uint64_t)v);
        return;
    }
    put_u64(o, (uint64_t)v);
}

/* <s> as a JSON string, escaped exactly as the native form escapes it (audit_json_str). */
static void put_str(struct out *o, const char *s, size_t len)
{
    char stack[512];
    size_t need = 6 * len + 2;
    char *tmp = need <= sizeof(stack) ? stack : malloc(need);
    if (!tmp) {
        o->failed = 1;
        return;
    }
    char *end = audit_json_str(tmp, s, len);
    put(o, tmp, (size_t)(end - tmp));
    if (tmp != stack)
        free(tmp);
}

static void put_cstr(struct out *o, const char *s)
{
    put_str(o, s, strlen(s));
}

/* ,"<key>":"<field>" when field <f> is set; <key> includes the comma when one is needed. */
static int put_field(struct out *o, const struct audit_event *ev, enum audit_str f, const char *key)
{
    size_t len;
    const char *s = audit_event_str(ev, f, &len);

    if (s == NULL)
        return 0;
    put(o, key, strlen(key));
    put_str(o, s, len);
    return 1;
}

/* An OCSF endpoint object {"ip", "port"[, "hostname"]}. */
static void put_endpoint(struct out *o, const struct audit_ip *ip, const char *host, size_t hostlen)
{
    char addr[64];
    int first = 1;

    PUT_LIT(o, "{");
    if (ip->family == 4 || ip->family == 6) {
        PUT_LIT(o, "\"ip\":");
        put_cstr(o, audit_ip_format(ip, addr, sizeof(addr)));
        first = 0;
    }
    if (ip->port != 0) {
        put_key(o, "port", first);
        put_u64(o, ip->port);
        first = 0;
    }
    if (host != NULL) {
        put_key(o, "hostname", first);
        put_str(o, host, hostlen);
    }
    PUT_LIT(o, "}");
}

/* HTTP Activity's activity_id for a request method (OCSF 1.1: 1 Connect ... 9 Patch). */
static int method_activity(const char *m, size_t len, const char **name)
{
    static const struct {
        const char *method;
        const char *name;
    } map[] = {
        {"CONNECT", "Connect"}, {"DELETE", "Delete"}, {"GET", "Get"},     {"HEAD", "Head"},   {"OPTIONS", "Options"},
        {"POST", "Post"},       {"PUT", "Put"},       {"TRACE", "Trace"}, {"PATCH", "Patch"},
    };

    if (m == NULL) {
        *name = "Unknown";
        return 0;
    }
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strlen(map[i].method) == len && memcmp(map[i].method, m, len) == 0) {
            *name = map[i].name;
            return (int)i + 1;
        }
    }
    *name = "Other";
    return 99;
}

/* "ip:port" or "[ipv6]:port" of the listener into an endpoint object. */
static void put_listener(struct out *o, const char *s, size_t len)
{
    const char *colon = NULL, *host = s;
    size_t hostlen;

    for (size_t i = len; i-- > 0;) {
        if (s[i] == ':') {
            colon = s + i;
            break;
        }
    }
    if (colon == NULL) {
        PUT_LIT(o, ",\"proxy_endpoint\":{\"name\":");
        put_str(o, s, len);
        PUT_LIT(o, "}");
        return;
    }
    hostlen = (size_t)(colon - s);
    if (hostlen >= 2 && host[0] == '[' && host[hostlen - 1] == ']') {
        host++;
        hostlen -= 2;
    }
    PUT_LIT(o, ",\"proxy_endpoint\":{\"ip\":");
    put_str(o, host, hostlen);
    PUT_LIT(o, ",\"port\":");
    {
        uint64_t port = 0;

        for (const char *p = colon + 1; p < s + len && *p >= '0' && *p <= '9'; p++)
            port = port * 10 + (uint64_t)(*p - '0');
        put_u64(o, port);
    }
    PUT_LIT(o, "}");
}

int audit_event_to_ocsf(const struct audit_event *ev, uint64_t seq, const char *chain_hex, struct audit_buf *b)
{
    struct out o = {.b = b, .failed = 0};
    size_t start = b->len, mlen = 0, hlen = 0, rlen = 0;
    const char *kind = audit_event_kind_name((enum audit_event_kind)ev->kind);
    const char *phase = audit_phase_name((enum audit_phase)ev->phase);
    const char *method = audit_event_str(ev, AUDIT_STR_METHOD, &mlen);
    const char *host = audit_event_str(ev, AUDIT_STR_HOST, &hlen);
    const char *reason = audit_event_str(ev, AUDIT_STR_REASON, &rlen);
    const char *aname = NULL;
    char time_dt[32], flow[AUDIT_FLOW_ID_LEN + 1];
    int activity, class_uid, category_uid, severity;
    uint32_t fl = ev->flags;

    if (kind == NULL)
        return -1;
    if (ev->kind == AUDIT_EVENT_FLOW_PHASE || ev->kind == AUDIT_EVENT_FLOW_END) {
        class_uid = 4002;
        category_uid = 4;
        activity = method_activity((fl & AUDIT_F_REQUEST) ? method : NULL, mlen, &aname);
    } else if (ev->kind == AUDIT_EVENT_PROXY_CONFIG) {
        class_uid = 5019;
        category_uid = 5;
        activity = 99;
        aname = "Other";
    } else {
        class_uid = 0;
        category_uid = 0;
        activity = 99;
        aname = "Other";
    }
    switch (ev->kind == AUDIT_EVENT_AUDIT_LOSS ? -1 : ev->action) {
    case -1:
        severity = 4; /* High: part of the record is missing */
        break;
    case AUDIT_ACTION_DENY:
        severity = 2;
        break;
    case AUDIT_ACTION_ALERT:
        severity = 3;
        break;
    default:
        severity = 1;
        break;
    }
    static const char *const severity_names[] = {"Unknown", "Informational", "Low", "Medium", "High"};

    PUT_LIT(&o, "{\"class_uid\":");
    put_u64(&o, (uint64_t)class_uid);
    PUT_LIT(&o, ",\"class_name\":");
    put_cstr(&o, class_uid == 4002 ? "HTTP Activity" : class_uid == 5019 ? "Device Config State Change" : "Base Event");
    PUT_LIT(&o, ",\"category_uid\":");
    put_u64(&o, (uint64_t)category_uid);
    PUT_LIT(&o, ",\"category_name\":");
    put_cstr(&o, category_uid == 4 ? "Network Activity" : category_uid == 5 ? "Discovery" : "Uncategorized");
    PUT_LIT(&o, ",\"activity_id\":");
    put_u64(&o, (uint64_t)activity);
    PUT_LIT(&o, ",\"activity_name\":");
    put_cstr(&o, aname);
    PUT_LIT(&o, ",\"type_uid\":");
    put_u64(&o, (uint64_t)class_uid * 100 + (uint64_t)activity);
    PUT_LIT(&o, ",\"time\":");
    put_i64(&o, ev->time_us >= 0 ? ev->time_us / 1000 : -((-ev->time_us + 999) / 1000));
    audit_format_time(ev->time_us, time_dt);
    PUT_LIT(&o, ",\"time_dt\":");
    put_cstr(&o, time_dt);
    PUT_LIT(&o, ",\"severity_id\":");
    put_u64(&o, (uint64_t)severity);
    PUT_LIT(&o, ",\"severity\":");
    put_cstr(&o, severity_names[severity]);
    if (ev->action == AUDIT_ACTION_ALLOW || ev->action == AUDIT_ACTION_ALERT) {
        PUT_LIT(&o, ",\"action_id\":1,\"action\":\"Allowed\"");
        if (ev->action == AUDIT_ACTION_ALLOW)
            PUT_LIT(&o, ",\"disposition_id\":1,\"disposition\":\"Allowed\"");
        else
            PUT_LIT(&o, ",\"disposition_id\":19,\"disposition\":\"Alert\"");
    } else if (ev->action == AUDIT_ACTION_DENY) {
        PUT_LIT(&o, ",\"action_id\":2,\"action\":\"Denied\",\"disposition_id\":2,\"disposition\":\"Blocked\"");
    }
    if (ev->kind == AUDIT_EVENT_FLOW_END) {
        int ok = reason != NULL && rlen == 9 && memcmp(reason, "completed", 9) == 0;

        PUT_LIT(&o, ",\"status_id\":");
        put_u64(&o, ok ? 1 : 2);
        PUT_LIT(&o, ",\"status\":");
        put_cstr(&o, ok ? "Success" : "Failure");
    }
    put_field(&o, ev, AUDIT_STR_REASON, ",\"status_detail\":");
    if (fl & AUDIT_F_DURATION) {
        PUT_LIT(&o, ",\"duration\":");
        put_u64(&o, ev->duration_us / 1000);
    }

    /* metadata */
    PUT_LIT(&o, ",\"metadata\":{\"version\":\"" OCSF_VERSION "\",\"product\":{\"name\":\"" OCSF_PRODUCT
                "\",\"vendor_name\":\"" OCSF_PRODUCT "\",\"feature\":{\"name\":\"" AUDIT_SCHEMA "\"}}");
    if (fl & AUDIT_F_FLOW) {
        audit_flow_id_format(ev->flow_id, flow);
        PUT_LIT(&o, ",\"uid\":");
        put_cstr(&o, flow);
        PUT_LIT(&o, ",\"correlation_uid\":");
        put_cstr(&o, flow);
    }
    PUT_LIT(&o, ",\"sequence\":");
    put_u64(&o, seq);
    PUT_LIT(&o, ",\"log_name\":");
    put_cstr(&o, kind);
    PUT_LIT(&o, "}");

    /* policy: the deciding rule and the config it came from */
    {
        size_t glen, idlen, vlen;
        const char *g = audit_event_str(ev, AUDIT_STR_RULE_GROUP, &glen);
        const char *id = audit_event_str(ev, AUDIT_STR_RULE_ID, &idlen);
        const char *ver = audit_event_str(ev, AUDIT_STR_CONFIG_VERSION, &vlen);

        if ((fl & AUDIT_F_RULE) || ver != NULL) {
            int first = 1;

            PUT_LIT(&o, ",\"policy\":{");
            if (fl & AUDIT_F_RULE) {
                PUT_LIT(&o, "\"uid\":");
                if (id != NULL)
                    put_str(&o, id, idlen);
                else
                    PUT_LIT(&o, "\"default\"");
                if (g != NULL) {
                    PUT_LIT(&o, ",\"name\":");
                    put_str(&o, g, glen);
                }
                first = 0;
            }
            if (ver != NULL) {
                put_key(&o, "version", first);
                put_str(&o, ver, vlen);
            }
            PUT_LIT(&o, "}");
        }
    }
    {
        size_t plen;
        const char *pr = audit_event_str(ev, AUDIT_STR_PRINCIPAL, &plen);

        if (pr != NULL) {
            PUT_LIT(&o, ",\"actor\":{\"user\":{\"name\":");
            put_str(&o, pr, plen);
            PUT_LIT(&o, "}}");
        }
    }
    {
        size_t llen;
        const char *l = audit_event_str(ev, AUDIT_STR_LISTENER, &llen);

        if (l != NULL)
            put_listener(&o, l, llen);
    }
    if (fl & AUDIT_F_CLIENT) {
        PUT_LIT(&o, ",\"src_endpoint\":");
        put_endpoint(&o, &ev->client, NULL, 0);
    }
    if ((fl & AUDIT_F_DESTINATION) || ((fl & AUDIT_F_REQUEST) && host != NULL)) {
        struct audit_ip none = {0};

        PUT_LIT(&o, ",\"dst_endpoint\":");
        put_endpoint(&o, (fl & AUDIT_F_DESTINATION) ? &ev->destination : &none,
                     (fl & AUDIT_F_REQUEST) ? host : NULL, hlen);
    }
    if (fl & AUDIT_F_REQUEST) {
        PUT_LIT(&o, ",\"http_request\":{");
        if (method != NULL) {
            PUT_LIT(&o, "\"http_method\":");
            put_str(&o, method, mlen);
            PUT_LIT(&o, ",");
        }
        PUT_LIT(&o, "\"url\":{");
        {
            int first = !put_field(&o, ev, AUDIT_STR_HOST, "\"hostname\":");

            if (ev->request_port != 0) {
                put_key(&o, "port", first);
                put_u64(&o, ev->request_port);
                first = 0;
            }
            if (put_field(&o, ev, AUDIT_STR_PATH, first ? "\"path\":" : ",\"path\":"))
                first = 0;
            if (put_field(&o, ev, AUDIT_STR_QUERY, first ? "\"query_string\":" : ",\"query_string\":"))
                first = 0;
            put_field(&o, ev, AUDIT_STR_SCHEME, first ? "\"scheme\":" : ",\"scheme\":");
        }
        PUT_LIT(&o, "}}");
    }
    if (fl & AUDIT_F_RESPONSE) {
        int first = 1;

        PUT_LIT(&o, ",\"http_response\":{");
        if (ev->status != 0) {
            PUT_LIT(&o, "\"code\":");
            put_u64(&o, ev->status);
            first = 0;
        }
        if (put_field(&o, ev, AUDIT_STR_CONTENT_TYPE, first ? "\"content_type\":" : ",\"content_type\":"))
            first = 0;
        if (ev->content_length >= 0) {
            put_key(&o, "length", first);
            put_i64(&o, ev->content_length);
        }
        PUT_LIT(&o, "}");
    }
    if (fl & AUDIT_F_BYTES) {
        PUT_LIT(&o, ",\"traffic\":{\"bytes_in\":");
        put_u64(&o, ev->bytes_down);
        PUT_LIT(&o, ",\"bytes_out\":");
        put_u64(&o, ev->bytes_up);
        PUT_LIT(&o, ",\"bytes\":");
        put_u64(&o, ev->bytes_up + ev->bytes_down);
        PUT_LIT(&o, "}");
    }
    if (ev->kind == AUDIT_EVENT_PROXY_CONFIG) {
        PUT_LIT(&o, ",\"device\":{\"type_id\":99,\"type\":\"Other\",\"name\":\"vigil\"},\"state_id\":99,\"state\":");
        if (reason != NULL)
            put_str(&o, reason, rlen);
        else
            PUT_LIT(&o, "\"Other\"");
    }

    /* unmapped: what OCSF has no attribute for, then seq and chain, last */
    PUT_LIT(&o, ",\"unmapped\":{\"event\":");
    put_cstr(&o, kind);
    if (phase != NULL) {
        PUT_LIT(&o, ",\"phase\":");
        put_cstr(&o, phase);
    }
    if (fl & AUDIT_F_RULE) {
        size_t idlen;

        if (audit_event_str(ev, AUDIT_STR_RULE_ID, &idlen) != NULL) {
            PUT_LIT(&o, ",\"rule\":{\"priority\":");
            put_i64(&o, ev->rule_priority);
            PUT_LIT(&o, "}");
        }
    }
    if (ev->kind == AUDIT_EVENT_AUDIT_LOSS) {
        PUT_LIT(&o, ",\"lost\":");
        put_u64(&o, ev->lost);
        PUT_LIT(&o, ",\"refused\":");
        put_u64(&o, ev->refused);
    }
    if (fl & AUDIT_F_TRUNCATED)
        PUT_LIT(&o, ",\"truncated\":true");
    PUT_LIT(&o, ",\"seq\":");
    put_u64(&o, seq);
    if (chain_hex != NULL) {
        PUT_LIT(&o, ",\"chain\":\"");
        put(&o, chain_hex, 64);
        PUT_LIT(&o, "\"");
    }
    PUT_LIT(&o, "}}");
    if (o.failed) {
        b->len = start;
        return -1;
    }
    return 0;
}
