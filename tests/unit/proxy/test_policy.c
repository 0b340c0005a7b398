/* tests/unit/proxy/test_policy.c - rule matching, ordering, defaults, config errors and the
 * domain index of the policy engine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "proxy/policy.h"

static struct proxy_policy *compile(const char *text, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root)
        fail_msg("test JSON: %s: %s", je.text, text);
    struct proxy_policy *p = proxy_policy_compile(root, "v1", err, errlen);
    json_decref(root);
    return p;
}

static struct proxy_policy *must_compile(const char *text)
{
    char err[4096];
    struct proxy_policy *p = compile(text, err, sizeof(err));
    if (!p)
        fail_msg("compile failed: %s", err);
    return p;
}

static void expect_error(const char *text, const char *want)
{
    char err[4096];
    struct proxy_policy *p = compile(text, err, sizeof(err));
    if (p)
        fail_msg("compiled, want an error containing \"%s\"", want);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

static struct sockaddr_storage addr(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
    }
    return ss;
}

struct hdrs {
    const char *name[4], *value[4];
    int n;
};

static int hdr_cb(void *arg, const char *name, const char **value, size_t *len)
{
    struct hdrs *h = arg;
    for (int i = 0; i < h->n; i++)
        if (strcasecmp(h->name[i], name) == 0) {
            *value = h->value[i];
            *len = strlen(h->value[i]);
            return 1;
        }
    return 0;
}

/* A plain-HTTP request to <host> seen in <phase>. */
struct flow_view {
    struct sockaddr_storage client, dest;
    struct hdrs h;
    struct policy_input in;
};

static void view(struct flow_view *v, enum audit_phase phase, const char *host)
{
    memset(v, 0, sizeof(*v));
    v->client = addr("10.1.2.3", 40000);
    v->dest = addr("93.184.216.34", 80);
    v->in.phase = phase;
    v->in.client = (struct sockaddr *)&v->client;
    v->in.listener = "127.0.0.1:3128";
    v->in.host = host;
    v->in.port = 80;
    v->in.content_length = -1;
    if (phase >= AUDIT_PHASE_PRE_REQUEST) {
        v->in.dest = (struct sockaddr *)&v->dest;
        v->in.method = "GET";
        v->in.path = "/index.html";
        v->in.path_len = strlen(v->in.path);
        v->in.header = hdr_cb;
        v->in.header_arg = &v->h;
    }
    if (phase == AUDIT_PHASE_POST_RESPONSE) {
        v->in.status = 200;
        v->in.content_type = "text/html; charset=utf-8";
        v->in.content_length = 1234;
    }
}

static struct policy_decision decide(struct proxy_policy *p, struct flow_view *v)
{
    struct policy_decision d;
    const struct policy_pconf *pc = proxy_policy_select(p, v->in.client, v->in.listener);
    assert_non_null(pc);
    proxy_policy_eval(pc, &v->in, 0, &d, NULL, NULL);
    return d;
}

/* One group with one rule of <phase> whose match is <match>: does it decide for <v>? */
static int rule_matches(const char *phase, const char *match, struct flow_view *v)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"rule_groups\":[{\"name\":\"g\",\"rules\":[{\"id\":\"r\",\"priority\":1,\"phase\":\"%s\","
             "\"action\":\"deny\",\"match\":%s}]}]}",
             phase, match);
    struct proxy_policy *p = must_compile(text);
    struct policy_decision d = decide(p, v);
    proxy_policy_unref(p);
    return d.action == AUDIT_ACTION_DENY;
}

/* groups run in configuration order, rules by ascending priority; the first allow or deny wins */
static void test_policy_order_groups_then_priority(void **state)
{
    (void)state;
    struct proxy_policy *p = must_compile(
        "{\"rule_groups\":["
        " {\"name\":\"b\",\"rules\":[{\"id\":\"b-deny\",\"priority\":1,\"phase\":\"pre_dns\",\"action\":\"deny\"}]},"
        " {\"name\":\"a\",\"rules\":["
        "   {\"id\":\"late\",\"priority\":20,\"phase\":\"pre_dns\",\"action\":\"deny\"},"
        "   {\"id\":\"early\",\"priority\":10,\"phase\":\"pre_dns\",\"action\":\"allow\"}]}],"
        " \"proxy_configurations\":[{\"name\":\"pc\",\"rule_groups\":[\"a\",\"b\"],\"default_action\":\"allow\"}]}");
    struct flow_view v;
    view(&v, AUDIT_PHASE_PRE_DNS, "example.com");
    struct policy_decision d = decide(p, &v);
    assert_int_equal(d.action, AUDIT_ACTION_ALLOW);
    assert_true(d.by_rule);
    assert_string_equal(d.rule.group, "a");
    assert_string_equal(d.rule.id, "early");
    assert_int_equal(d.rule.priority, 10);
    proxy_policy_unref(p);
}

/* alert records and goes on; dry run records what it would do and does not enforce */
static void test_policy_alert_and_dry_run_do_not_decide(void **state)
{
    (void)state;
    struct proxy_policy *p = must_compile(
        "{\"rule_groups\":[{\"name\":\"g\",\"rules\":["
        " {\"id\":\"watch\",\"priority\":1,\"phase\":\"pre_dns\",\"action\":\"alert\"},"
        " {\"id\":\"trial\",\"priority\":2,\"phase\":\"pre_dns\",\"action\":\"deny\",\"dry_run\":true},"
        " {\"id\":\"real\",\"priority\":3,\"phase\":\"pre_dns\",\"action\":\"allow\"}]}]}");
    struct flow_view v;
    view(&v, AUDIT_PHASE_PRE_DNS, "example.com");
    struct policy_decision d = decide(p, &v);
    assert_int_equal(d.action, AUDIT_ACTION_ALLOW);
    assert_string_equal(d.rule.id, "real");
    assert_int_equal(d.nalerts, 1);
    assert_string_equal(d.alerts[0].id, "watch");
    assert_int_equal(d.ndry, 1);
    assert_string_equal(d.dry_run[0].id, "trial");
    assert_int_equal(d.dry_action[0], AUDIT_ACTION_DENY);

    /* in the event: rule, alerts and dry_run as the schema has them */
    struct audit_event ev;
    struct audit_buf b;
    audit_event_init(&ev, AUDIT_EVENT_FLOW_PHASE);
    ev.phase = AUDIT_PHASE_PRE_DNS;
    policy_decision_to_event(&d, &ev);
    audit_buf_init(&b, 0);
    assert_int_equal(audit_event_to_json(&ev, 7, &b), 0);
    json_error_t je;
    json_t *o = json_loadb(b.data, b.len, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "rule"), "id")), "real");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "rule"), "priority")), 3);
    json_t *alerts = json_object_get(o, "alerts"), *dry = json_object_get(o, "dry_run");
    assert_int_equal(json_array_size(alerts), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(alerts, 0), "id")), "watch");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(alerts, 0), "priority")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(dry, 0), "action")), "deny");
    json_decref(o);
    audit_buf_fini(&b);
    proxy_policy_unref(p);
}

/* two rules of one group with one priority are a config error naming the path */
static void test_policy_priority_tie_is_error(void **state)
{
    (void)state;
    expect_error("{\"rule_groups\":[{\"name\":\"g\",\"rules\":["
                 " {\"id\":\"a\",\"priority\":5,\"phase\":\"pre_dns\",\"action\":\"deny\"},"
                 " {\"id\":\"b\",\"priority\":5,\"phase\":\"pre_request\",\"action\":\"deny\"}]}]}",
                 "rule_groups[0].rules[1].priority: 5 is also the priority of rules[0]");
}

/* "*.example.com" matches subdomains only: not example.com, not badexample.com */
static void test_policy_wildcard_edges(void **state)
{
    (void)state;
    struct flow_view v;
    const char *m = "{\"domain\":[\"*.example.com\"]}";
    view(&v, AUDIT_PHASE_PRE_DNS, "a.example.com");
    assert_true(rule_matches("pre_dns", m, &v));
    view(&v, AUDIT_PHASE_PRE_DNS, "a.b.example.com");
    assert_true(rule_matches("pre_dns", m, &v));
    view(&v, AUDIT_PHASE_PRE_DNS, "example.com");
    assert_false(rule_matches("pre_dns", m, &v));
    view(&v, AUDIT_PHASE_PRE_DNS, "badexample.com");
    assert_false(rule_matches("pre_dns", m, &v));
    view(&v, AUDIT_PHASE_PRE_DNS, "example.com.evil.net");
    assert_false(rule_matches("pre_dns", m, &v));
    view(&v, AUDIT_PHASE_PRE_DNS, "example.com");
    assert_true(rule_matches("pre_dns", "{\"domain\":[\"example.com\"]}", &v));
    view(&v, AUDIT_PHASE_PRE_DNS, "www.example.com");
    assert_false(rule_matches("pre_dns", "{\"domain\":[\"example.com\"]}", &v));
    assert_true(rule_matches("pre_dns", "{\"domain\":[\"*\"]}", &v));
    assert_true(rule_matches("pre_dns", "{\"domain\":[{\"regex\":\"^w+\\\\.example\\\\.com$\"}]}", &v));
}

/* rule domains are normalised like hosts: case, a trailing dot, IDN to its A-label, numeric IPs */
static void test_policy_domain_normalisation(void **state)
{
    (void)state;
    struct flow_view v;
    view(&v, AUDIT_PHASE_PRE_DNS, "example.com");
    assert_true(rule_matches("pre_dns", "{\"domain\":[\"EXAMPLE.Com.\"]}", &v));
    view(&v, AUDIT_PHASE_PRE_DNS, "xn--bcher-kva.example");
    assert_true(rule_matches("pre_dns", "{\"domain\":[\"B\xc3\xbc" "cher.example\"]}", &v));
    view(&v, AUDIT_PHASE_PRE_DNS, "shop.xn--bcher-kva.example");
    assert_true(rule_matches("pre_dns", "{\"domain\":[\"*.b\xc3\xbc" "cher.example\"]}", &v));
    view(&v, AUDIT_PHASE_PRE_DNS, "127.0.0.1");
    assert_true(rule_matches("pre_dns", "{\"domain\":[\"0x7f.1\"]}", &v));
    expect_error("{\"rule_groups\":[{\"name\":\"g\",\"rules\":[{\"id\":\"r\",\"priority\":1,\"phase\":\"pre_dns\","
                 "\"action\":\"deny\",\"match\":{\"domain\":[\"bad domain\"]}}]}]}",
                 "rule_groups[0].rules[0].match.domain[0]");
}

/* every condition type matches what it should and not its near misses */
static void test_policy_condition_types(void **state)
{
    (void)state;
    struct flow_view v;
    view(&v, AUDIT_PHASE_PRE_REQUEST, "example.com");
    assert_true(rule_matches("pre_request", "{\"client_cidr\":[\"10.0.0.0/8\"]}", &v));
    assert_false(rule_matches("pre_request", "{\"client_cidr\":[\"10.2.0.0/16\",\"192.168.0.0/16\"]}", &v));
    assert_true(rule_matches("pre_request", "{\"destination_cidr\":[\"93.184.216.0/24\"]}", &v));
    assert_false(rule_matches("pre_request", "{\"destination_cidr\":[\"::1/128\"]}", &v));
    assert_true(rule_matches("pre_request", "{\"port\":[80]}", &v));
    assert_true(rule_matches("pre_request", "{\"port\":[\"1-1024\"]}", &v));
    assert_false(rule_matches("pre_request", "{\"port\":[443, \"8000-8100\"]}", &v));
    assert_true(rule_matches("pre_request", "{\"method\":[\"get\",\"POST\"]}", &v));
    assert_false(rule_matches("pre_request", "{\"method\":[\"POST\"]}", &v));
    assert_true(rule_matches("pre_request", "{\"path\":[\"/index\"]}", &v));
    assert_false(rule_matches("pre_request", "{\"path\":[\"/admin\"]}", &v));
    assert_true(rule_matches("pre_request", "{\"path\":[{\"regex\":\"\\\\.html$\"}]}", &v));
    assert_false(rule_matches("pre_request", "{\"principal\":[\"alice\"]}", &v));
    v.in.principal = "alice";
    assert_true(rule_matches("pre_request", "{\"principal\":[\"bob\",\"alice\"]}", &v));
    v.h.name[0] = "X-Team";
    v.h.value[0] = "payments";
    v.h.n = 1;
    assert_true(rule_matches("pre_request", "{\"header\":[{\"name\":\"x-team\",\"present\":true}]}", &v));
    assert_false(rule_matches("pre_request", "{\"header\":[{\"name\":\"x-other\",\"present\":true}]}", &v));
    assert_true(rule_matches("pre_request", "{\"header\":[{\"name\":\"x-other\",\"present\":false}]}", &v));
    assert_true(rule_matches("pre_request", "{\"header\":[{\"name\":\"X-Team\",\"equals\":\"payments\"}]}", &v));
    assert_false(rule_matches("pre_request", "{\"header\":[{\"name\":\"X-Team\",\"equals\":\"pay\"}]}", &v));
    assert_true(rule_matches("pre_request", "{\"header\":[{\"name\":\"X-Team\",\"regex\":\"^pay\"}]}", &v));
    /* keys are ANDed */
    assert_false(rule_matches("pre_request", "{\"port\":[80],\"method\":[\"PUT\"]}", &v));

    view(&v, AUDIT_PHASE_POST_RESPONSE, "example.com");
    assert_true(rule_matches("post_response", "{\"status\":[200,299]}", &v));
    assert_false(rule_matches("post_response", "{\"status\":[[500,599],404]}", &v));
    assert_true(rule_matches("post_response", "{\"content_length\":[1000,2000]}", &v));
    assert_false(rule_matches("post_response", "{\"content_length\":[0,1000]}", &v));
    assert_true(rule_matches("post_response", "{\"content_type\":[\"text/html\"]}", &v));
    assert_true(rule_matches("post_response", "{\"content_type\":[\"TEXT/*\"]}", &v));
    assert_false(rule_matches("post_response", "{\"content_type\":[\"application/json\"]}", &v));
}

/* a condition the flow cannot show makes the rule not match, and the decision lists it */
static void test_policy_unevaluable_listed(void **state)
{
    (void)state;
    struct proxy_policy *p = must_compile(
        "{\"rule_groups\":[{\"name\":\"g\",\"rules\":["
        " {\"id\":\"admin\",\"priority\":1,\"phase\":\"pre_request\",\"action\":\"deny\","
        "  \"match\":{\"domain\":[\"example.com\"],\"path\":[\"/admin\"]}},"
        " {\"id\":\"other\",\"priority\":2,\"phase\":\"pre_request\",\"action\":\"deny\","
        "  \"match\":{\"domain\":[\"other.com\"],\"path\":[\"/admin\"]}}]}]}");
    struct flow_view v;
    view(&v, AUDIT_PHASE_PRE_REQUEST, "example.com");
    v.in.is_connect = 1; /* a tunnel: no path, no headers */
    v.in.path = NULL;
    v.in.header = NULL;
    struct policy_decision d = decide(p, &v);
    assert_int_equal(d.action, AUDIT_ACTION_ALLOW);
    assert_false(d.by_rule);
    assert_int_equal(d.nunevaluable, 1); /* "other" failed on its domain: not listed */
    assert_string_equal(d.unevaluable[0].id, "admin");
    assert_int_equal(d.unevaluable_cond[0], POLICY_COND_PATH);
    proxy_policy_unref(p);
}

/* conditions no flow could show in a phase, and other mistakes, are config errors with paths */
static void test_policy_config_errors(void **state)
{
    (void)state;
    expect_error("{\"rule_groups\":[{\"name\":\"g\",\"rules\":[{\"id\":\"r\",\"priority\":1,\"phase\":\"pre_dns\","
                 "\"action\":\"deny\",\"match\":{\"status\":[500,599]}}]}]}",
                 "rule_groups[0].rules[0].match.status: no flow shows status in phase pre_dns");
    expect_error("{\"rule_groups\":[{\"name\":\"g\",\"rules\":[{\"id\":\"r\",\"priority\":1,\"phase\":\"pre_dns\","
                 "\"action\":\"deny\",\"match\":{\"destination_cidr\":[\"10.0.0.0/8\"]}}]}]}",
                 "match.destination_cidr: no flow shows destination_cidr in phase pre_dns");
    expect_error("{\"rule_groups\":[{\"name\":\"g\",\"rules\":[{\"id\":\"r\",\"priority\":1,\"phase\":\"pre_request\","
                 "\"action\":\"deny\",\"match\":{\"path\":[{\"regex\":\"(\"}]}}]}]}",
                 "rule_groups[0].rules[0].match.path[0]: bad regex");
    expect_error("{\"rule_groups\":[{\"name\":\"g\",\"rules\":[{\"id\":\"r\",\"priority\":1,\"phase\":\"pre_dns\","
                 "\"action\":\"block\"}]}]}",
                 "rule_groups[0].rules[0].action: must be");
    expect_error("{\"rule_groups\":[{\"name\":\"g\",\"rules\":[{\"id\":\"r\",\"priority\":1,\"phase\":\"pre_dns\","
                 "\"action\":\"deny\",\"match\":{\"colour\":[\"red\"]}}]}]}",
                 "rule_groups[0].rules[0].match.colour: unknown condition");
    expect_error("{\"rule_groups\":[],\"proxy_configurations\":[{\"name\":\"p\",\"rule_groups\":[\"nope\"]}]}",
                 "proxy_configurations[0].rule_groups[0]: no rule group of that name");
    expect_error("{\"proxy_configurations\":[{\"name\":\"p\",\"default_action\":{\"pre_dns\":\"maybe\"}}]}",
                 "proxy_configurations[0].default_action.pre_dns: must be");
    expect_error("{\"rule_groups\":[{\"name\":\"g\",\"rules\":[{\"id\":\"r\",\"priority\":1,\"phase\":\"pre_request\","
                 "\"action\":\"deny\",\"match\":{\"port\":[\"90-80\"]}}]}]}",
                 "rule_groups[0].rules[0].match.port[0]");
}

/* allowlist mode: a flow with no allow is denied before it leaves; an allow in pre_dns lets it */
static void test_policy_allowlist_and_blocklist_defaults(void **state)
{
    (void)state;
    struct proxy_policy *p = must_compile(
        "{\"rule_groups\":[{\"name\":\"g\",\"rules\":[{\"id\":\"ok\",\"priority\":1,\"phase\":\"pre_dns\","
        "\"action\":\"allow\",\"match\":{\"domain\":[\"good.com\"]}}]}],"
        " \"proxy_configurations\":[{\"name\":\"strict\",\"rule_groups\":[\"g\"],\"default_action\":\"deny\"}]}");
    const struct policy_pconf *pc;
    struct flow_view v;
    struct policy_decision d;
    view(&v, AUDIT_PHASE_PRE_DNS, "other.com");
    pc = proxy_policy_select(p, v.in.client, v.in.listener);
    proxy_policy_eval(pc, &v.in, 0, &d, NULL, NULL);
    assert_int_equal(d.action, AUDIT_ACTION_ALLOW); /* pre_dns passes undecided... */
    assert_string_equal(d.reason, "no_decision");
    view(&v, AUDIT_PHASE_PRE_REQUEST, "other.com");
    proxy_policy_eval(pc, &v.in, 0, &d, NULL, NULL);
    assert_int_equal(d.action, AUDIT_ACTION_DENY); /* ...and nothing allowed it before it leaves */
    assert_string_equal(d.reason, "default_action");
    proxy_policy_eval(pc, &v.in, 1, &d, NULL, NULL); /* an earlier allow */
    assert_int_equal(d.action, AUDIT_ACTION_ALLOW);
    proxy_policy_unref(p);

    p = must_compile("{\"proxy_configurations\":[{\"name\":\"open\",\"default_action\":\"allow\"}]}");
    view(&v, AUDIT_PHASE_PRE_REQUEST, "other.com");
    assert_int_equal(decide(p, &v).action, AUDIT_ACTION_ALLOW);
    proxy_policy_unref(p);

    /* one default per phase, as AWS's proxy has it */
    p = must_compile("{\"proxy_configurations\":[{\"name\":\"pp\",\"default_action\":"
                     "{\"pre_dns\":\"allow\",\"pre_request\":\"allow\",\"post_response\":\"deny\"}}]}");
    view(&v, AUDIT_PHASE_PRE_REQUEST, "other.com");
    assert_int_equal(decide(p, &v).action, AUDIT_ACTION_ALLOW);
    view(&v, AUDIT_PHASE_POST_RESPONSE, "other.com");
    assert_int_equal(decide(p, &v).action, AUDIT_ACTION_DENY);
    proxy_policy_unref(p);
}

/* the first proxy configuration whose sources match serves the client */
static void test_policy_select_by_source(void **state)
{
    (void)state;
    struct proxy_policy *p = must_compile(
        "{\"proxy_configurations\":["
        " {\"name\":\"tenant-a\",\"sources\":{\"cidrs\":[\"10.1.0.0/16\"]}},"
        " {\"name\":\"lb\",\"sources\":{\"listeners\":[\"127.0.0.1:3129\"]}},"
        " {\"name\":\"v6\",\"sources\":{\"cidrs\":[\"fd00::/8\"]}}]}");
    struct sockaddr_storage a = addr("10.1.9.9", 1), b = addr("10.2.0.1", 1), c = addr("fd00::5", 1);
    assert_string_equal(policy_pconf_name(proxy_policy_select(p, (struct sockaddr *)&a, "x")), "tenant-a");
    assert_string_equal(policy_pconf_name(proxy_policy_select(p, (struct sockaddr *)&b, "127.0.0.1:3129")), "lb");
    assert_string_equal(policy_pconf_name(proxy_policy_select(p, (struct sockaddr *)&c, "x")), "v6");
    assert_null(proxy_policy_select(p, (struct sockaddr *)&b, "127.0.0.1:3128"));
    proxy_policy_unref(p);
}

static void count_line(void *arg, const char *line)
{
    (void)line;
    (*(int *)arg)++;
}

/* with 10,000 domain rules the indexed decision equals a full scan, for hits and misses */
static void test_policy_domain_index_equals_full_scan(void **state)
{
    (void)state;
    size_t cap = 2 * 1024 * 1024, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len, "{\"rule_groups\":[{\"name\":\"big\",\"rules\":[");
    for (int i = 0; i < 10000; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                "%s{\"id\":\"r%d\",\"priority\":%d,\"phase\":\"pre_dns\",\"action\":\"%s\","
                                "\"match\":{\"domain\":[\"%ssite%d.example\"]}}",
                                i ? "," : "", i, i, i % 3 ? "deny" : "allow", i % 2 ? "*." : "", i);
    len += (size_t)snprintf(text + len, cap - len,
                            ",{\"id\":\"catch\",\"priority\":20000,\"phase\":\"pre_dns\",\"action\":\"alert\"}]}]}");
    struct proxy_policy *p = must_compile(text);
    free(text);
    const char *hosts[] = {"site42.example", "a.site43.example", "site43.example", "x.y.site9999.example",
                           "nothing.example", "site10000.example", "site0.example"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        struct flow_view v;
        struct policy_decision fast, full;
        view(&v, AUDIT_PHASE_PRE_DNS, hosts[i]);
        const struct policy_pconf *pc = proxy_policy_select(p, v.in.client, v.in.listener);
        proxy_policy_eval(pc, &v.in, 0, &fast, NULL, NULL);
        int lines = 0;
        proxy_policy_eval(pc, &v.in, 0, &full, count_line, &lines); /* tracing scans every rule */
        assert_true(lines > 0);
        assert_int_equal(fast.action, full.action);
        assert_int_equal(fast.by_rule, full.by_rule);
        if (fast.by_rule)
            assert_string_equal(fast.rule.id, full.rule.id);
        assert_int_equal(fast.nalerts, full.nalerts);
    }
    struct flow_view v;
    view(&v, AUDIT_PHASE_PRE_DNS, "a.site43.example");
    struct policy_decision d = decide(p, &v);
    assert_string_equal(d.rule.id, "r43");
    view(&v, AUDIT_PHASE_PRE_DNS, "site43.example"); /* "*.site43.example" only */
    d = decide(p, &v);
    assert_false(d.by_rule);
    assert_int_equal(d.nalerts, 1);
    proxy_policy_unref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_order_groups_then_priority),
        cmocka_unit_test(test_policy_alert_and_dry_run_do_not_decide),
        cmocka_unit_test(test_policy_priority_tie_is_error),
        cmocka_unit_test(test_policy_wildcard_edges),
        cmocka_unit_test(test_policy_domain_normalisation),
        cmocka_unit_test(test_policy_condition_types),
        cmocka_unit_test(test_policy_unevaluable_listed),
        cmocka_unit_test(test_policy_config_errors),
        cmocka_unit_test(test_policy_allowlist_and_blocklist_defaults),
        cmocka_unit_test(test_policy_select_by_source),
        cmocka_unit_test(test_policy_domain_index_equals_full_scan),
    };
    return cmocka_run_group_tests_name("proxy/policy", tests, NULL, NULL);
}
