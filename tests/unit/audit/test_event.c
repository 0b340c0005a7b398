/* tests/unit/audit/test_event.c - the event model and its JSON form: packed strings and
 * truncation, addresses, time formatting, escaping, and every kind's output checked against
 * schemas/event.schema.json (loaded from $VIGIL_SOURCE_DIR) by a small checker of the keywords
 * the schema uses: type, const, enum, required, properties, additionalProperties, pattern,
 * minimum/maximum, minLength, $ref, allOf, anyOf and if/then ("format" is not checked). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <jansson.h>

#include "audit/audit.h"

#define T_KNOWN 1795710645123456LL /* 2026-11-26T16:30:45.123456Z */

/* ---- a checker for the subset of JSON Schema 2020-12 that event.schema.json uses ---- */

static json_t *schema_root;

static int check(const json_t *schema, const json_t *inst, const char *path, char *err, size_t errlen);

static int type_ok(const char *type, const json_t *inst)
{
    if (strcmp(type, "object") == 0)
        return json_is_object(inst);
    if (strcmp(type, "string") == 0)
        return json_is_string(inst);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(inst);
    if (strcmp(type, "number") == 0)
        return json_is_number(inst);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(inst);
    if (strcmp(type, "array") == 0)
        return json_is_array(inst);
    return 0;
}

static int pattern_ok(const char *pattern, const char *s)
{
    regex_t re;
    int rc;

    /* The schema's patterns are POSIX-ERE compatible ("\\." and classes only). */
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return 0;
    rc = regexec(&re, s, 0, NULL, 0);
    regfree(&re);
    return rc == 0;
}

static const json_t *resolve_ref(const char *ref)
{
    const char *prefix = "#/$defs/";

    if (strncmp(ref, prefix, strlen(prefix)) != 0)
        return NULL;
    return json_object_get(json_object_get(schema_root, "$defs"), ref + strlen(prefix));
}

static int check(const json_t *schema, const json_t *inst, const char *path, char *err, size_t errlen)
{
    const json_t *v;

    if ((v = json_object_get(schema, "$ref")) != NULL) {
        const json_t *target = resolve_ref(json_string_value(v));

        if (target == NULL) {
            snprintf(err, errlen, "%s: unresolved $ref", path);
            return -1;
        }
        if (check(target, inst, path, err, errlen) == -1)
            return -1;
    }
    if ((v = json_object_get(schema, "type")) != NULL && !type_ok(json_string_value(v), inst)) {
        snprintf(err, errlen, "%s: not of type %s", path, json_string_value(v));
        return -1;
    }
    if ((v = json_object_get(schema, "const")) != NULL && !json_equal((json_t *)v, (json_t *)inst)) {
        snprintf(err, errlen, "%s: not the const value", path);
        return -1;
    }
    if ((v = json_object_get(schema, "enum")) != NULL) {
        size_t i;
        json_t *e;
        int found = 0;

        json_array_foreach(v, i, e) {
            found |= json_equal(e, (json_t *)inst);
        }
        if (!found) {
            snprintf(err, errlen, "%s: not in enum", path);
            return -1;
        }
    }
    if (json_is_string(inst)) {
        if ((v = json_object_get(schema, "pattern")) != NULL &&
            !pattern_ok(json_string_value(v), json_string_value(inst))) {
            snprintf(err, errlen, "%s: \"%s\" does not match %s", path, json_string_value(inst), json_string_value(v));
            return -1;
        }
        if ((v = json_object_get(schema, "minLength")) != NULL &&
            json_string_length(inst) < (size_t)json_integer_value(v)) {
            snprintf(err, errlen, "%s: too short", path);
            return -1;
        }
    }
    if (json_is_number(inst)) {
        if ((v = json_object_get(schema, "minimum")) != NULL && json_number_value(inst) < json_number_value(v)) {
            snprintf(err, errlen, "%s: below minimum", path);
            return -1;
        }
        if ((v = json_object_get(schema, "maximum")) != NULL && json_number_value(inst) > json_number_value(v)) {
            snprintf(err, errlen, "%s: above maximum", path);
            return -1;
        }
    }
    if (json_is_object(inst)) {
        const json_t *props = json_object_get(schema, "properties");
        const char *key;
        json_t *member;
        size_t i;

        if ((v = json_object_get(schema, "required")) != NULL) {
            json_t *k;

            json_array_foreach(v, i, k) {
                if (json_object_get(inst, json_string_value(k)) == NULL) {
                    snprintf(err, errlen, "%s: missing required \"%s\"", path, json_string_value(k));
                    return -1;
                }
            }
        }
        json_object_foreach((json_t *)inst, key, member) {
            const json_t *sub = props != NULL ? json_object_get(props, key) : NULL;
            char subpath[256];

            snprintf(subpath, sizeof(subpath), "%s.%s", path, key);
            if (sub == NULL) {
                if (json_is_false(json_object_get(schema, "additionalProperties"))) {
                    snprintf(err, errlen, "%s: not allowed", subpath);
                    return -1;
                }
                continue;
            }
            if (check(sub, member, subpath, err, errlen) == -1)
                return -1;
        }
    }
    if ((v = json_object_get(schema, "allOf")) != NULL) {
        size_t i;
        json_t *sub;

        json_array_foreach(v, i, sub) {
            if (check(sub, inst, path, err, errlen) == -1)
                return -1;
        }
    }
    if ((v = json_object_get(schema, "anyOf")) != NULL) {
        size_t i;
        json_t *sub;
        int ok = 0;
        char scratch[256];

        json_array_foreach(v, i, sub) {
            ok |= check(sub, inst, path, scratch, sizeof(scratch)) == 0;
        }
        if (!ok) {
            snprintf(err, errlen, "%s: matches no anyOf branch", path);
            return -1;
        }
    }
    if ((v = json_object_get(schema, "if")) != NULL) {
        char scratch[256];

        if (check(v, inst, path, scratch, sizeof(scratch)) == 0 && json_object_get(schema, "then") != NULL &&
            check(json_object_get(schema, "then"), inst, path, err, errlen) == -1)
            return -1;
    }
    return 0;
}

static int load_schema(void **state)
{
    const char *dir = getenv("VIGIL_SOURCE_DIR");
    char path[4096];
    json_error_t jerr;

    if (dir == NULL) {
        fprintf(stderr, "VIGIL_SOURCE_DIR is not set (ctest sets it)\n");
        return -1;
    }
    snprintf(path, sizeof(path), "%s/schemas/event.schema.json", dir);
    schema_root = json_load_file(path, 0, &jerr);
    if (schema_root == NULL) {
        fprintf(stderr, "%s:%d: %s\n", path, jerr.line, jerr.text);
        return -1;
    }
    return 0;
}

static int free_schema(void **state)
{
    json_decref(schema_root);
    schema_root = NULL;
    return 0;
}

/* ---- helpers ---- */

/* Serializes <ev>, parses it back (failing the test if it is not JSON) and checks it against
 * the schema. The caller owns the returned object. */
static json_t *to_json_checked(const struct audit_event *ev, uint64_t seq, int want_valid)
{
    struct audit_buf b;
    json_error_t jerr;
    json_t *obj;
    char err[512] = "";

    audit_buf_init(&b, 0);
    assert_int_equal(audit_event_to_json(ev, seq, &b), 0);
    assert_non_null(b.data);
    assert_null(memchr(b.data, '\n', b.len));
    obj = json_loadb(b.data, b.len, 0, &jerr);
    if (obj == NULL)
        fail_msg("not JSON: %s in %.*s", jerr.text, (int)b.len, b.data);
    if (want_valid && check(schema_root, obj, "$", err, sizeof(err)) == -1)
        fail_msg("schema: %s in %.*s", err, (int)b.len, b.data);
    if (!want_valid)
        assert_int_equal(check(schema_root, obj, "$", err, sizeof(err)), -1);
    audit_buf_fini(&b);
    return obj;
}

static void set(struct audit_event *ev, enum audit_str f, const char *s)
{
    assert_int_equal(audit_event_set_str(ev, f, s, strlen(s)), 0);
}

static void full_phase_event(struct audit_event *ev)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(41000)};

    audit_event_init(ev, AUDIT_EVENT_FLOW_PHASE);
    ev->time_us = T_KNOWN;
    assert_int_equal(audit_flow_id_parse("01JDGX0Q7W3E4F5G6H7J8K9M0N", ev->flow_id), 0);
    ev->flags = AUDIT_F_FLOW | AUDIT_F_RULE | AUDIT_F_CLIENT | AUDIT_F_REQUEST | AUDIT_F_DESTINATION |
                AUDIT_F_RESPONSE | AUDIT_F_BYTES | AUDIT_F_DURATION;
    ev->phase = AUDIT_PHASE_POST_RESPONSE;
    ev->action = AUDIT_ACTION_ALLOW;
    set(ev, AUDIT_STR_RULE_GROUP, "g");
    set(ev, AUDIT_STR_RULE_ID, "r");
    ev->rule_priority = 10;
    set(ev, AUDIT_STR_REASON, "rule_match");
    set(ev, AUDIT_STR_CONFIG_VERSION, "c0ffee");
    set(ev, AUDIT_STR_LISTENER, "127.0.0.1:3128");
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    audit_ip_from_sockaddr(&ev->client, (struct sockaddr *)&sin);
    set(ev, AUDIT_STR_METHOD, "GET");
    set(ev, AUDIT_STR_SCHEME, "http");
    set(ev, AUDIT_STR_HOST, "example.com");
    ev->request_port = 80;
    set(ev, AUDIT_STR_PATH, "/x");
    set(ev, AUDIT_STR_QUERY, "a=1");
    ev->destination.family = 4;
    memcpy(ev->destination.addr, (uint8_t[]){93, 184, 216, 34}, 4);
    ev->destination.port = 80;
    ev->status = 200;
    set(ev, AUDIT_STR_CONTENT_TYPE, "text/html");
    ev->content_length = 1256;
    ev->bytes_up = 0;
    ev->bytes_down = 1256;
    ev->duration_us = 12345;
}

/* ---- tests ---- */

/* a set string reads back with its length; an unset one is NULL */
static void test_event_set_str_reads_back(void **state)
{
    struct audit_event ev;
    const char *s;
    size_t len;

    audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
    assert_int_equal(ev.kind, AUDIT_EVENT_FLOW_END);
    assert_int_equal(ev.content_length, -1);
    assert_true(ev.time_us > 0);
    assert_null(audit_event_str(&ev, AUDIT_STR_HOST, &len));
    assert_int_equal(len, 0);
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_HOST, "example.com", 11), 0);
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_PATH, "/p\0q", 4), 0); /* bytes, not C strings */
    s = audit_event_str(&ev, AUDIT_STR_HOST, &len);
    assert_int_equal(len, 11);
    assert_memory_equal(s, "example.com", 11);
    s = audit_event_str(&ev, AUDIT_STR_PATH, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(s, "/p\0q", 4);
    assert_int_equal(ev.text_used, 15);
    assert_int_equal(audit_event_used_size(&ev), offsetof(struct audit_event, text) + 15);
    assert_int_equal(ev.flags & AUDIT_F_TRUNCATED, 0);
    /* an empty string is the same as unset */
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_QUERY, "", 0), 0);
    assert_null(audit_event_str(&ev, AUDIT_STR_QUERY, &len));
    /* a field out of range is refused */
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_COUNT, "x", 1), -1);
    assert_null(audit_event_str(&ev, AUDIT_STR_COUNT, &len));
}

/* a string that does not fit keeps the prefix that does, returns -1 and sets AUDIT_F_TRUNCATED */
static void test_event_set_str_overflow_truncates_and_flags(void **state)
{
    static char big[AUDIT_TEXT_MAX + 100];
    struct audit_event ev;
    const char *s;
    size_t len;

    memset(big, 'a', sizeof(big));
    audit_event_init(&ev, AUDIT_EVENT_FLOW_PHASE);
    set(&ev, AUDIT_STR_HOST, "h");
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_PATH, big, sizeof(big)), -1);
    assert_true(ev.flags & AUDIT_F_TRUNCATED);
    s = audit_event_str(&ev, AUDIT_STR_PATH, &len);
    assert_non_null(s);
    assert_int_equal(len, AUDIT_TEXT_MAX - 1);
    assert_int_equal(ev.text_used, AUDIT_TEXT_MAX);
    assert_int_equal(audit_event_used_size(&ev), offsetof(struct audit_event, text) + AUDIT_TEXT_MAX);
    /* a full area leaves later fields unset, still flagged */
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_QUERY, "q", 1), -1);
    assert_null(audit_event_str(&ev, AUDIT_STR_QUERY, &len));
    /* and the earlier field is intact */
    s = audit_event_str(&ev, AUDIT_STR_HOST, &len);
    assert_int_equal(len, 1);
    assert_memory_equal(s, "h", 1);
}

/* truncation never cuts a UTF-8 character: the partial character is dropped whole */
static void test_event_set_str_truncation_keeps_utf8_whole(void **state)
{
    static char fill[AUDIT_TEXT_MAX];
    struct audit_event ev;
    const char *s;
    size_t len;

    memset(fill, 'f', sizeof(fill));
    /* 5 bytes left: "abcd" fits, the 3-byte euro sign would be cut after 1 byte */
    audit_event_init(&ev, AUDIT_EVENT_FLOW_PHASE);
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_REASON, fill, AUDIT_TEXT_MAX - 5), 0);
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_PATH, "abcd\xE2\x82\xAC", 7), -1);
    s = audit_event_str(&ev, AUDIT_STR_PATH, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(s, "abcd", 4);
    assert_true(ev.flags & AUDIT_F_TRUNCATED);

    /* 6 bytes left: "ab" and a 4-byte character fit exactly, the next one is dropped whole */
    audit_event_init(&ev, AUDIT_EVENT_FLOW_PHASE);
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_REASON, fill, AUDIT_TEXT_MAX - 6), 0);
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_PATH, "ab\xF0\x9F\x98\x80\xC3\xA9", 8), -1);
    s = audit_event_str(&ev, AUDIT_STR_PATH, &len);
    assert_int_equal(len, 6);
    assert_memory_equal(s, "ab\xF0\x9F\x98\x80", 6);

    /* bytes that are not UTF-8 are cut where the space ends */
    audit_event_init(&ev, AUDIT_EVENT_FLOW_PHASE);
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_REASON, fill, AUDIT_TEXT_MAX - 3), 0);
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_PATH, "a\x80\x80\x80\x80", 5), -1);
    s = audit_event_str(&ev, AUDIT_STR_PATH, &len);
    assert_int_equal(len, 3);
}

/* IPv4, IPv6 and IPv4-mapped IPv6 sockaddrs fill the address and port; mapped ones become IPv4 */
static void test_event_ip_from_sockaddr_families(void **state)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(3128)};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    struct sockaddr_storage other = {.ss_family = AF_UNIX};
    struct audit_ip ip;
    char text[64];

    inet_pton(AF_INET, "10.1.2.3", &sin.sin_addr);
    audit_ip_from_sockaddr(&ip, (struct sockaddr *)&sin);
    assert_int_equal(ip.family, 4);
    assert_int_equal(ip.port, 3128);
    assert_string_equal(audit_ip_format(&ip, text, sizeof(text)), "10.1.2.3");

    inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr);
    audit_ip_from_sockaddr(&ip, (struct sockaddr *)&sin6);
    assert_int_equal(ip.family, 6);
    assert_int_equal(ip.port, 443);
    assert_string_equal(audit_ip_format(&ip, text, sizeof(text)), "2001:db8::1");

    inet_pton(AF_INET6, "::ffff:192.0.2.7", &sin6.sin6_addr);
    audit_ip_from_sockaddr(&ip, (struct sockaddr *)&sin6);
    assert_int_equal(ip.family, 4);
    assert_string_equal(audit_ip_format(&ip, text, sizeof(text)), "192.0.2.7");

    audit_ip_from_sockaddr(&ip, (struct sockaddr *)&other);
    assert_int_equal(ip.family, 0);
    assert_string_equal(audit_ip_format(&ip, text, sizeof(text)), "");
    /* too small a buffer gives an empty string, not a cut address */
    inet_pton(AF_INET, "10.1.2.3", &sin.sin_addr);
    audit_ip_from_sockaddr(&ip, (struct sockaddr *)&sin);
    assert_string_equal(audit_ip_format(&ip, text, 5), "");
}

/* every enum value has its schema name, and NONE / out-of-range values have none */
static void test_event_names_match_schema(void **state)
{
    assert_string_equal(audit_event_kind_name(AUDIT_EVENT_FLOW_PHASE), "flow.phase");
    assert_string_equal(audit_event_kind_name(AUDIT_EVENT_FLOW_END), "flow.end");
    assert_string_equal(audit_event_kind_name(AUDIT_EVENT_PROXY_CONFIG), "proxy.config");
    assert_string_equal(audit_event_kind_name(AUDIT_EVENT_AUDIT_LOSS), "audit.loss");
    assert_null(audit_event_kind_name(AUDIT_EVENT_KIND_COUNT));
    assert_string_equal(audit_phase_name(AUDIT_PHASE_PRE_DNS), "pre_dns");
    assert_string_equal(audit_phase_name(AUDIT_PHASE_PRE_REQUEST), "pre_request");
    assert_string_equal(audit_phase_name(AUDIT_PHASE_POST_RESPONSE), "post_response");
    assert_null(audit_phase_name(AUDIT_PHASE_NONE));
    assert_string_equal(audit_action_name(AUDIT_ACTION_ALLOW), "allow");
    assert_string_equal(audit_action_name(AUDIT_ACTION_DENY), "deny");
    assert_string_equal(audit_action_name(AUDIT_ACTION_ALERT), "alert");
    assert_null(audit_action_name(AUDIT_ACTION_NONE));
}

/* the schema's own enums list exactly the names the code writes */
static void test_event_schema_enums_match_code(void **state)
{
    const json_t *props = json_object_get(schema_root, "properties");
    const json_t *kinds = json_object_get(json_object_get(props, "event"), "enum");
    const json_t *phases = json_object_get(json_object_get(props, "phase"), "enum");
    const json_t *actions = json_object_get(json_object_get(props, "action"), "enum");
    const json_t *req = json_object_get(schema_root, "required");

    assert_int_equal(json_array_size(kinds), AUDIT_EVENT_KIND_COUNT);
    for (int k = 0; k < AUDIT_EVENT_KIND_COUNT; k++)
        assert_string_equal(json_string_value(json_array_get(kinds, (size_t)k)),
                            audit_event_kind_name((enum audit_event_kind)k));
    assert_int_equal(json_array_size(phases), 3);
    for (int p = 1; p <= 3; p++)
        assert_string_equal(json_string_value(json_array_get(phases, (size_t)p - 1)),
                            audit_phase_name((enum audit_phase)p));
    assert_int_equal(json_array_size(actions), 3);
    for (int a = 1; a <= 3; a++)
        assert_string_equal(json_string_value(json_array_get(actions, (size_t)a - 1)),
                            audit_action_name((enum audit_action)a));
    assert_int_equal(json_array_size(req), 4);
    assert_string_equal(json_string_value(json_array_get(req, 0)), "schema");
    assert_string_equal(json_string_value(json_array_get(req, 3)), "time");
    /* every property is documented */
    {
        const char *key;
        json_t *sub;

        json_object_foreach((json_t *)props, key, sub) {
            assert_non_null(json_object_get(sub, "description"));
        }
    }
}

/* a fully populated flow.phase serializes to exactly the documented shape and key order */
static void test_event_to_json_phase_exact(void **state)
{
    struct audit_event ev;
    struct audit_buf b;
    const char *want = "{\"schema\":\"vigil.event/1\",\"event\":\"flow.phase\",\"seq\":12,"
                       "\"time\":\"2026-11-26T16:30:45.123456Z\",\"flow_id\":\"01JDGX0Q7W3E4F5G6H7J8K9M0N\","
                       "\"phase\":\"post_response\",\"action\":\"allow\",\"rule\":{\"group\":\"g\",\"id\":\"r\","
                       "\"priority\":10},\"reason\":\"rule_match\",\"config_version\":\"c0ffee\","
                       "\"listener\":\"127.0.0.1:3128\",\"client\":{\"ip\":\"127.0.0.1\",\"port\":41000},"
                       "\"request\":{\"method\":\"GET\",\"scheme\":\"http\",\"host\":\"example.com\",\"port\":80,"
                       "\"path\":\"/x\",\"query\":\"a=1\"},\"destination\":{\"ip\":\"93.184.216.34\",\"port\":80},"
                       "\"response\":{\"status\":200,\"content_type\":\"text/html\",\"content_length\":1256},"
                       "\"bytes\":{\"up\":0,\"down\":1256},\"duration_ms\":12.345}";

    full_phase_event(&ev);
    audit_buf_init(&b, 0);
    assert_int_equal(audit_event_to_json(&ev, 12, &b), 0);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    /* appending: a second object follows the first untouched */
    assert_int_equal(audit_event_to_json(&ev, 13, &b), 0);
    assert_int_equal(b.len, 2 * strlen(want));
    assert_memory_equal(b.data, want, strlen(want));
    audit_buf_fini(&b);
    json_decref(to_json_checked(&ev, 12, 1));
}

/* a minimal flow.phase decided by the default action names the rule "default" and omits unset groups */
static void test_event_to_json_phase_default_rule(void **state)
{
    struct audit_event ev;
    json_t *o;

    audit_event_init(&ev, AUDIT_EVENT_FLOW_PHASE);
    audit_flow_id_new(ev.flow_id);
    ev.flags = AUDIT_F_FLOW | AUDIT_F_RULE;
    ev.phase = AUDIT_PHASE_PRE_DNS;
    ev.action = AUDIT_ACTION_DENY;
    set(&ev, AUDIT_STR_REASON, "default_action");
    o = to_json_checked(&ev, 1, 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "rule"), "id")), "default");
    assert_int_equal(json_object_size(json_object_get(o, "rule")), 1);
    assert_null(json_object_get(o, "client"));
    assert_null(json_object_get(o, "request"));
    assert_null(json_object_get(o, "truncated"));
    assert_null(json_object_get(o, "lost"));
    assert_string_equal(json_string_value(json_object_get(o, "action")), "deny");
    json_decref(o);

    /* without the flow id, phase or rule, a flow.phase breaks the schema */
    ev.flags = AUDIT_F_RULE;
    json_decref(to_json_checked(&ev, 1, 0));
    ev.flags = AUDIT_F_FLOW;
    json_decref(to_json_checked(&ev, 1, 0));
}

/* flow.end carries bytes, duration and response members, and omits unknown length and zero status */
static void test_event_to_json_end_valid(void **state)
{
    struct audit_event ev;
    json_t *o, *resp;

    audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
    audit_flow_id_new(ev.flow_id);
    ev.flags = AUDIT_F_FLOW | AUDIT_F_BYTES | AUDIT_F_DURATION | AUDIT_F_RESPONSE | AUDIT_F_REQUEST;
    ev.bytes_up = 123;
    ev.bytes_down = INT64_MAX; /* the largest a signed 64-bit JSON reader (jansson) takes */
    ev.duration_us = 7;
    set(&ev, AUDIT_STR_CONTENT_TYPE, "application/json");
    set(&ev, AUDIT_STR_HOST, "example.org");
    set(&ev, AUDIT_STR_METHOD, "CONNECT");
    ev.request_port = 443;
    set(&ev, AUDIT_STR_REASON, "client_closed");
    o = to_json_checked(&ev, 99, 1);
    resp = json_object_get(o, "response");
    assert_null(json_object_get(resp, "status"));
    assert_null(json_object_get(resp, "content_length"));
    assert_string_equal(json_string_value(json_object_get(resp, "content_type")), "application/json");
    assert_true(json_real_value(json_object_get(o, "duration_ms")) == 0.007);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "request"), "port")), 443);
    assert_null(json_object_get(json_object_get(o, "request"), "path"));
    assert_null(json_object_get(o, "phase"));
    assert_null(json_object_get(o, "action"));
    assert_null(json_object_get(o, "rule"));
    json_decref(o);

    /* flow.end without a flow id breaks the schema */
    ev.flags &= ~(uint32_t)AUDIT_F_FLOW;
    json_decref(to_json_checked(&ev, 99, 0));
}

/* proxy.config needs config_version and audit.loss always has both counts */
static void test_event_to_json_config_and_loss_valid(void **state)
{
    struct audit_event ev;
    json_t *o;

    audit_event_init(&ev, AUDIT_EVENT_PROXY_CONFIG);
    set(&ev, AUDIT_STR_CONFIG_VERSION, "sha256:abcd");
    set(&ev, AUDIT_STR_REASON, "reload");
    o = to_json_checked(&ev, 3, 1);
    assert_string_equal(json_string_value(json_object_get(o, "config_version")), "sha256:abcd");
    assert_null(json_object_get(o, "flow_id"));
    json_decref(o);
    audit_event_init(&ev, AUDIT_EVENT_PROXY_CONFIG);
    json_decref(to_json_checked(&ev, 3, 0));

    audit_event_init(&ev, AUDIT_EVENT_AUDIT_LOSS);
    set(&ev, AUDIT_STR_REASON, "ring_full");
    ev.refused = 5;
    o = to_json_checked(&ev, 4, 1);
    assert_int_equal(json_integer_value(json_object_get(o, "lost")), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "refused")), 5);
    json_decref(o);
}

/* a truncated event says so and stays valid JSON and valid against the schema */
static void test_event_to_json_truncated_flag(void **state)
{
    static char big[AUDIT_TEXT_MAX + 1];
    struct audit_event ev;
    json_t *o;

    memset(big, '\x01', sizeof(big)); /* the worst case for escaping: 6 bytes out per byte in */
    audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
    audit_flow_id_new(ev.flow_id);
    ev.flags = AUDIT_F_FLOW | AUDIT_F_REQUEST;
    assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_PATH, big, sizeof(big)), -1);
    o = to_json_checked(&ev, 1, 1);
    assert_true(json_is_true(json_object_get(o, "truncated")));
    assert_int_equal(json_string_length(json_object_get(json_object_get(o, "request"), "path")), AUDIT_TEXT_MAX);
    json_decref(o);
}

/* quotes, backslashes and control characters are escaped; valid UTF-8 passes; invalid bytes become U+FFFD */
static void test_event_to_json_escapes_strings(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        const char *raw;     /* as written */
        const char *decoded; /* as a JSON parser reads it back */
    } cases[] = {
        {"a\"b\\c", 5, "\"a\\\"b\\\\c\"", "a\"b\\c"},
        {"x\ny\x01\x1f\x7f", 6, "\"x\\u000ay\\u0001\\u001f\x7f\"", "x\ny\x01\x1f\x7f"},
        {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 14, "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"",
         "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"},
        {"a\xFFz", 3, "\"a\\ufffdz\"", "a\xEF\xBF\xBDz"},
        {"\xC0\x80", 2, "\"\\ufffd\\ufffd\"", "\xEF\xBF\xBD\xEF\xBF\xBD"},           /* overlong NUL */
        {"\xED\xA0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* surrogate */
        {"\xE2\x82", 2, "\"\\ufffd\\ufffd\"", "\xEF\xBF\xBD\xEF\xBF\xBD"},           /* cut sequence at the end */
        {"\xF4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\"",
         "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* above U+10FFFF */
        {"nul\0byte", 8, "\"nul\\u0000byte\"", NULL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct audit_event ev;
        struct audit_buf b;
        json_t *o;
        const char *key = "\"reason\":";
        char *at;

        audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
        assert_int_equal(audit_event_set_str(&ev, AUDIT_STR_REASON, cases[i].in, cases[i].len), 0);
        audit_buf_init(&b, 0);
        assert_int_equal(audit_event_to_json(&ev, 1, &b), 0);
        assert_int_equal(audit_buf_append(&b, "", 1), 0); /* terminate for strstr */
        at = strstr(b.data, key);
        assert_non_null(at);
        at += strlen(key);
        assert_memory_equal(at, cases[i].raw, strlen(cases[i].raw));
        assert_true(at[strlen(cases[i].raw)] == '}' || at[strlen(cases[i].raw)] == ',');
        o = json_loadb(b.data, b.len - 1, JSON_ALLOW_NUL, NULL);
        assert_non_null(o);
        if (cases[i].decoded != NULL)
            assert_string_equal(json_string_value(json_object_get(o, "reason")), cases[i].decoded);
        else
            assert_int_equal(json_string_length(json_object_get(o, "reason")), 8);
        json_decref(o);
        audit_buf_fini(&b);
    }
}

/* RFC 3339 UTC with microseconds, exact for known instants including leap days and before 1970 */
static void test_event_format_time_exact(void **state)
{
    char out[32];

    audit_format_time(T_KNOWN, out);
    assert_string_equal(out, "2026-11-26T16:30:45.123456Z");
    audit_format_time(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000000Z");
    audit_format_time(951868799999999LL, out);
    assert_string_equal(out, "2000-02-29T23:59:59.999999Z");
    audit_format_time(4107542400000000LL, out);
    assert_string_equal(out, "2100-03-01T00:00:00.000000Z");
    audit_format_time(-1, out);
    assert_string_equal(out, "1969-12-31T23:59:59.999999Z");
    audit_format_time(INT64_MAX, out);
    assert_string_equal(out, "9999-12-31T23:59:59.999999Z");
}

/* a buffer cap is honoured: an object that does not fit fails and leaves the buffer as it was */
static void test_event_buf_cap_refuses_growth(void **state)
{
    struct audit_event ev;
    struct audit_buf b;

    full_phase_event(&ev);
    audit_buf_init(&b, 64);
    assert_int_equal(audit_event_to_json(&ev, 1, &b), -1);
    assert_int_equal(b.len, 0);
    assert_int_equal(audit_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(audit_buf_append(&b, "x", 60), -1);
    assert_int_equal(b.len, 10);
    audit_buf_fini(&b);

    /* a cap below the worst-case bound but above the object still works */
    audit_buf_init(&b, 1000);
    assert_int_equal(audit_event_to_json(&ev, 1, &b), 0);
    assert_true(b.len > 0 && b.len <= 1000);
    audit_buf_fini(&b);
}

/* an event of an unknown kind (a damaged slot) is refused, not serialized */
static void test_event_to_json_bad_kind_fails(void **state)
{
    struct audit_event ev;
    struct audit_buf b;

    audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
    ev.kind = 200;
    audit_buf_init(&b, 0);
    assert_int_equal(audit_event_to_json(&ev, 1, &b), -1);
    assert_int_equal(b.len, 0);
    audit_buf_fini(&b);
}

/* string offsets that point outside the used text (a damaged event) read as unset */
static void test_event_str_bad_offsets_unset(void **state)
{
    struct audit_event ev;
    size_t len;

    audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
    set(&ev, AUDIT_STR_HOST, "abc");
    ev.str_off[AUDIT_STR_PATH] = 2;
    ev.str_len[AUDIT_STR_PATH] = 5000;
    assert_null(audit_event_str(&ev, AUDIT_STR_PATH, &len));
    ev.text_used = 60000;
    assert_int_equal(audit_event_used_size(&ev), offsetof(struct audit_event, text) + AUDIT_TEXT_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_set_str_reads_back),
        cmocka_unit_test(test_event_set_str_overflow_truncates_and_flags),
        cmocka_unit_test(test_event_set_str_truncation_keeps_utf8_whole),
        cmocka_unit_test(test_event_ip_from_sockaddr_families),
        cmocka_unit_test(test_event_names_match_schema),
        cmocka_unit_test(test_event_schema_enums_match_code),
        cmocka_unit_test(test_event_to_json_phase_exact),
        cmocka_unit_test(test_event_to_json_phase_default_rule),
        cmocka_unit_test(test_event_to_json_end_valid),
        cmocka_unit_test(test_event_to_json_config_and_loss_valid),
        cmocka_unit_test(test_event_to_json_truncated_flag),
        cmocka_unit_test(test_event_to_json_escapes_strings),
        cmocka_unit_test(test_event_format_time_exact),
        cmocka_unit_test(test_event_buf_cap_refuses_growth),
        cmocka_unit_test(test_event_to_json_bad_kind_fails),
        cmocka_unit_test(test_event_str_bad_offsets_unset),
    };
    return cmocka_run_group_tests_name("audit/event", tests, load_schema, free_schema);
}
