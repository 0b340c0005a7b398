/* proxy/policy.h - the policy engine: rule groups, proxy configurations, phase decisions.
 *
 * A policy is compiled once from the config's "rule_groups" and "proxy_configurations" and
 * is immutable after that; workers share it and hold a reference per flow, so a reload
 * (SIGHUP) swaps in a new one while flows in progress finish under the one they started
 * with.
 *
 * Semantics (DESIGN.md, "Flow and phases"): a proxy configuration names the clients it
 * serves and an ordered list of rule groups. In a phase, rules run group by group in that
 * order and, inside a group, by ascending priority (unique in the group). The first
 * matching allow or deny decides the phase; alert records and goes on; a dry-run rule is
 * recorded as what it would have decided and does not enforce. A phase no rule decides
 * takes the default: with one default_action for the whole configuration, "allow" passes
 * every phase (blocklist mode) and "deny" needs an allow in pre_dns or pre_request before
 * the request leaves (allowlist mode); with an object, each phase takes its own default.
 *
 * Domain conditions are indexed (a hash of exact names and of "*.suffix" suffixes per group
 * and phase), so a decision with 10,000 domain rules only evaluates the rules whose domain
 * could match, in priority order, plus the rules without an indexable domain condition. */
#ifndef VIGIL_PROXY_POLICY_H
#define VIGIL_PROXY_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>

#include "audit/audit.h"

enum policy_cond {
    POLICY_COND_DOMAIN = 0,
    POLICY_COND_SNI,
    POLICY_COND_CLIENT_CIDR,
    POLICY_COND_PRINCIPAL,
    POLICY_COND_DESTINATION_CIDR,
    POLICY_COND_PORT,
    POLICY_COND_METHOD,
    POLICY_COND_PATH,
    POLICY_COND_HEADER,
    POLICY_COND_STATUS,
    POLICY_COND_CONTENT_LENGTH,
    POLICY_COND_CONTENT_TYPE,
    POLICY_COND_COUNT
};

/* The config key of a condition ("domain", "client_cidr", ...). */
const char *policy_cond_name(enum policy_cond c);

/* Looks up a header of the message the phase sees: 1 with its value, 0 when absent. */
typedef int (*policy_header_cb)(void *arg, const char *name, const char **value, size_t *len);

/* What a flow shows a phase. What the flow cannot see is NULL / 0 and makes a condition on
 * it unevaluable (the rule does not match and the decision lists it). */
struct policy_input {
    enum audit_phase phase;
    const struct sockaddr *client;
    const char *listener;   /* the listener's name */
    const char *principal;  /* the authenticated user, or NULL */
    const char *host;       /* normalised: lowercase, no trailing dot, IP literals canonical */
    uint16_t port;
    int is_connect;
    const char *sni;              /* from the ClientHello, or NULL when not seen */
    const struct sockaddr *dest;  /* pre_request on: the address resolved */
    const char *method;           /* plain HTTP and CONNECT */
    const char *path;             /* plain HTTP (or intercepted): without the query */
    size_t path_len;
    policy_header_cb header;      /* request headers in pre_request, response headers after */
    void *header_arg;
    int status;                   /* post_response */
    int64_t content_length;       /* post_response; -1 unknown */
    const char *content_type;     /* post_response; NULL when absent */
};

#define POLICY_MAX_LISTED 16

struct policy_rule_ref {
    const char *group; /* NULL for a default or built-in decision */
    const char *id;
    int priority;
};

struct policy_decision {
    enum audit_action action;    /* ALLOW or DENY: the phase's outcome */
    int by_rule;                 /* a rule decided; else the default (or no decision) */
    struct policy_rule_ref rule; /* the deciding rule */
    const char *reason;          /* "rule", "default_action", "no_decision" */
    const char *message;         /* the deciding rule's message, or NULL */
    int rule_has_destination;    /* the deciding allow names destination_cidr (SSRF guard exception) */
    int rule_has_port;           /* the deciding allow names port (CONNECT port exception) */
    int rule_has_sni;            /* the deciding allow names sni (domain fronting exception) */
    struct policy_rule_ref alerts[POLICY_MAX_LISTED];
    size_t nalerts;
    struct policy_rule_ref dry_run[POLICY_MAX_LISTED];
    enum audit_action dry_action[POLICY_MAX_LISTED];
    size_t ndry;
    struct policy_rule_ref unevaluable[POLICY_MAX_LISTED];
    enum policy_cond unevaluable_cond[POLICY_MAX_LISTED];
    size_t nunevaluable;
};

struct proxy_policy;
struct policy_pconf;

/* Compiles the policy parts of the config document <root>. NULL with one line per error in
 * <err>, each naming its JSON path ("rule_groups[1].rules[0].match.domain[2]: bad regex:
 * ..."). <listeners> (<nlisteners> names) are the listener names proxy configurations may
 * name. The policy starts with one reference. */
struct proxy_policy *proxy_policy_compile(const json_t *root, const char *version, char *err, size_t errlen);

void proxy_policy_ref(struct proxy_policy *p);   /* any thread */
void proxy_policy_unref(struct proxy_policy *p); /* frees at zero; NULL does nothing */
const char *proxy_policy_version(const struct proxy_policy *p);

/* The proxy configuration serving <client> on <listener>: the first whose sources match,
 * or NULL when none does. Borrowed from <p>. */
const struct policy_pconf *proxy_policy_select(const struct proxy_policy *p, const struct sockaddr *client,
                                               const char *listener);
const char *policy_pconf_name(const struct policy_pconf *pc);
int policy_pconf_ssrf_guard(const struct policy_pconf *pc);
int policy_pconf_connect_port_ok(const struct policy_pconf *pc, uint16_t port);
int policy_pconf_sni_mismatch_allowed(const struct policy_pconf *pc); /* "sni_mismatch": "allow" */
int policy_pconf_non_tls_allowed(const struct policy_pconf *pc);      /* "non_tls_tunnels": "allow" */
int policy_pconf_has_intercept(const struct policy_pconf *pc);        /* an "intercept" section */
/* 1 with the JSON path of the first proxy configuration that intercepts, 0 when none does. */
int proxy_policy_intercept_path(const struct proxy_policy *p, char *path, size_t pathlen);
/* TLS interception for a tunnel to <host> (and the ClientHello's <sni>, or NULL): a domain of
 * "intercept.domains" matches and none of "intercept.bypass" does. */
int policy_pconf_intercepts(const struct policy_pconf *pc, const char *host, const char *sni);

/* One line of the decision trace (for `vigil --explain`). */
typedef void (*policy_trace_cb)(void *arg, const char *line);

/* Decides phase in->phase for a flow of <pc>. <allowed_before>: a rule allowed an earlier
 * phase of this flow (allowlist mode needs one). <trace> may be NULL. */
void proxy_policy_eval(const struct policy_pconf *pc, const struct policy_input *in, int allowed_before,
                       struct policy_decision *out, policy_trace_cb trace, void *trace_arg);

/* Writes <d>'s rule, lists and reason into <ev> (a flow.phase event). */
void policy_decision_to_event(const struct policy_decision *d, struct audit_event *ev);

#endif
