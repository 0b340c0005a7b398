/* proxy/explain.c - `vigil --explain`: the decision trace of each phase for one request,
 * computed with the same policy code the workers run, without sending traffic. */
#include <arpa/inet.h>
#include <netdb.h>
#include <string.h>
#include <strings.h>

#include "proxy/explain.h"
#include "proxy/proxy-int.h"

static void trace_line(void *arg, const char *line)
{
    fprintf(arg, "  %s\n", line);
}

struct explain_headers {
    const struct proxy_explain_opts *o;
};

static int explain_header(void *arg, const char *name, const char **value, size_t *len)
{
    const struct proxy_explain_opts *o = arg;
    size_t nl = strlen(name);
    for (size_t i = 0; i < o->nheaders; i++) {
        const char *h = o->headers[i];
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            const char *v = h + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            *value = v;
            *len = strlen(v);
            return 1;
        }
    }
    return 0;
}

static int parse_ip(const char *s, uint16_t port, struct sockaddr_storage *ss)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        return 0;
    }
    if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        return 0;
    }
    return -1;
}

static void print_decision(FILE *out, enum audit_phase ph, const struct policy_decision *d)
{
    fprintf(out, "%s: %s", audit_phase_name(ph), audit_action_name(d->action));
    if (d->by_rule && d->rule.group)
        fprintf(out, " by rule %s/%s (priority %d)", d->rule.group, d->rule.id, d->rule.priority);
    else if (d->by_rule)
        fprintf(out, " by %s", d->rule.id);
    fprintf(out, " (%s)", d->message ? d->message : d->reason);
    for (size_t i = 0; i < d->nalerts; i++)
        fprintf(out, "; alert %s/%s", d->alerts[i].group, d->alerts[i].id);
    for (size_t i = 0; i < d->ndry; i++)
        fprintf(out, "; dry run %s/%s would %s", d->dry_run[i].group, d->dry_run[i].id,
                audit_action_name(d->dry_action[i]));
    for (size_t i = 0; i < d->nunevaluable; i++)
        fprintf(out, "; unevaluable %s/%s (%s)", d->unevaluable[i].group, d->unevaluable[i].id,
                policy_cond_name(d->unevaluable_cond[i]));
    fputc('\n', out);
}

int proxy_explain(const struct proxy_config *cfg, const struct proxy_explain_opts *o, FILE *out, char *err,
                  size_t errlen)
{
    struct proxy_target t;
    struct policy_input in;
    struct policy_decision d;
    struct sockaddr_storage client, dest;
    const char *url = o->url, *path = "/", *method = o->method;
    size_t path_len = 1;
    int is_connect = 0, allowed = 0;
    char pathbuf[4096];

    if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0) {
        int tls = strncasecmp(url, "https://", 8) == 0;
        const char *auth = url + (tls ? 8 : 7);
        size_t al = strcspn(auth, "/?#");
        const char *a = auth;
        for (const char *q = auth; q < auth + al; q++)
            if (*q == '@')
                a = q + 1;
        if (proxy_parse_authority(a, (size_t)(auth + al - a), tls ? 443 : 80, &t) == -1) {
            snprintf(err, errlen, "%s: not a usable host", url);
            return 2;
        }
        if (tls) {
            is_connect = 1;
        } else if (auth[al] == '/') {
            size_t pl = strcspn(auth + al, "?#");
            snprintf(pathbuf, sizeof(pathbuf), "%.*s", (int)pl, auth + al);
            path = pathbuf;
            path_len = strlen(pathbuf);
        }
    } else {
        if (proxy_parse_authority(url, strlen(url), 0, &t) == -1 || t.port == 0) {
            snprintf(err, errlen, "%s: give http://..., https://... or host:port", url);
            return 2;
        }
        is_connect = 1;
    }
    if (!method)
        method = is_connect ? "CONNECT" : "GET";
    if (parse_ip(o->client ? o->client : "127.0.0.1", 0, &client) == -1) {
        snprintf(err, errlen, "--client %s: not an IP address", o->client);
        return 2;
    }
    const char *listener = cfg->nlisten ? cfg->listen[0] : NULL;
    const struct policy_pconf *pc = proxy_policy_select(cfg->policy, (struct sockaddr *)&client, listener);
    fprintf(out, "request: %s %s%s:%u%s (client %s%s%s)\nconfig: %s\n", method, is_connect ? "" : "http://",
            t.host, t.port, is_connect ? "" : path, o->client ? o->client : "127.0.0.1",
            o->principal ? ", principal " : "", o->principal ? o->principal : "", cfg->version);
    if (!pc) {
        fprintf(out, "no proxy configuration serves this client: denied\n");
        return 1;
    }
    fprintf(out, "proxy configuration: %s\n", policy_pconf_name(pc));

    memset(&in, 0, sizeof(in));
    in.client = (struct sockaddr *)&client;
    in.listener = listener;
    in.principal = o->principal;
    in.host = t.host;
    in.port = t.port;
    in.is_connect = is_connect;
    in.content_length = -1;

    /* pre_dns */
    in.phase = AUDIT_PHASE_PRE_DNS;
    proxy_policy_eval(pc, &in, 0, &d, trace_line, out);
    if (is_connect && d.action != AUDIT_ACTION_DENY && !policy_pconf_connect_port_ok(pc, t.port) &&
        !(d.by_rule && d.rule_has_port)) {
        fprintf(out, "  pre_dns: CONNECT to port %u is not in connect_ports and no allow rule names the port\n",
                t.port);
        memset(&d.rule, 0, sizeof(d.rule));
        d.action = AUDIT_ACTION_DENY;
        d.by_rule = 1;
        d.rule.id = "connect_ports";
        d.reason = "connect_port_not_allowed";
        d.message = NULL;
    }
    print_decision(out, AUDIT_PHASE_PRE_DNS, &d);
    if (d.action == AUDIT_ACTION_DENY) {
        fprintf(out, "result: denied at pre_dns\n");
        return 1;
    }
    allowed |= d.by_rule;

    /* resolution */
    if (o->ip) {
        if (parse_ip(o->ip, t.port, &dest) == -1) {
            snprintf(err, errlen, "--ip %s: not an IP address", o->ip);
            return 2;
        }
        fprintf(out, "dns: not resolved, --ip %s\n", o->ip);
    } else if (t.host_is_ip) {
        parse_ip(t.host, t.port, &dest);
        fprintf(out, "dns: %s is an address\n", t.host);
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(t.host, NULL, &hints, &res);
        if (rc != 0 || !res) {
            fprintf(out, "dns: %s did not resolve (%s): the flow would end with 502 dns_failure\n", t.host,
                    gai_strerror(rc));
            return 1;
        }
        memset(&dest, 0, sizeof(dest));
        memcpy(&dest, res->ai_addr, res->ai_addrlen);
        ((struct sockaddr_in *)&dest)->sin_port = htons(t.port); /* same offset for sin6_port */
        fprintf(out, "dns: %s ->", t.host);
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            struct audit_ip ip;
            char text[64];
            audit_ip_from_sockaddr(&ip, ai->ai_addr);
            fprintf(out, " %s", audit_ip_format(&ip, text, sizeof(text)));
        }
        fprintf(out, " (the first is used)\n");
        freeaddrinfo(res);
    }

    /* pre_request */
    in.phase = AUDIT_PHASE_PRE_REQUEST;
    in.dest = (struct sockaddr *)&dest;
    in.method = method;
    if (!is_connect) {
        in.path = path;
        in.path_len = path_len;
        in.header = explain_header;
        in.header_arg = (void *)o;
    }
    proxy_policy_eval(pc, &in, allowed, &d, trace_line, out);
    if (policy_pconf_ssrf_guard(pc) && d.action != AUDIT_ACTION_DENY && !(d.by_rule && d.rule_has_destination)) {
        struct proxy_ssrf_self self = {0};
        enum proxy_ssrf_class cls = proxy_ssrf_classify(in.dest, &self);
        if (cls != PROXY_SSRF_PUBLIC) {
            static char reason[40];
            snprintf(reason, sizeof(reason), "ssrf.%s", proxy_ssrf_class_name(cls));
            fprintf(out, "  pre_request: SSRF guard: the destination is %s and no allow rule names it in "
                         "destination_cidr\n", proxy_ssrf_class_name(cls));
            memset(&d.rule, 0, sizeof(d.rule));
            d.action = AUDIT_ACTION_DENY;
            d.by_rule = 1;
            d.rule.id = "ssrf_guard";
            d.reason = reason;
            d.message = NULL;
        }
    }
    print_decision(out, AUDIT_PHASE_PRE_REQUEST, &d);
    if (d.action == AUDIT_ACTION_DENY) {
        fprintf(out, "result: denied at pre_request\n");
        return 1;
    }
    allowed |= d.by_rule;

    if (is_connect) {
        fprintf(out, "post_response: none for a tunnel\nresult: allowed\n");
        return 0;
    }
    /* post_response: the response is not known; conditions on it show as not evaluable */
    in.phase = AUDIT_PHASE_POST_RESPONSE;
    proxy_policy_eval(pc, &in, allowed, &d, trace_line, out);
    print_decision(out, AUDIT_PHASE_POST_RESPONSE, &d);
    fprintf(out, "result: %s (post_response rules see the response, which --explain does not fetch)\n",
            d.action == AUDIT_ACTION_DENY ? "denied at post_response" : "allowed");
    return d.action == AUDIT_ACTION_DENY ? 1 : 0;
}
