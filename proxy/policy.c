/* proxy/policy.c - compiling and evaluating the policy (see proxy/policy.h).
 *
 *   proxy_policy ── groups[]  (shared: several configurations may name one)
 *        │            └─ rules[] sorted by priority; per phase: rule positions + domain index
 *        └─ pconfs[] ── sources (CIDRs, listener names), groups (pointers), defaults
 *
 * Compilation collects every error with its JSON path; evaluation allocates nothing unless
 * a phase has more than CAND_STACK candidate rules. */
#include <ctype.h>
#include <idn2.h>
#include <regex.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/errs.h"
#include "proxy/policy.h"
#include "proxy/ssrf.h"

#define NPHASES 4 /* indexed by enum audit_phase; 0 unused */
#define CAND_STACK 256

/* ---- small containers ---- */

struct str_list {
    char **v;
    size_t n;
};

struct range {
    int64_t lo, hi;
};

struct range_list {
    struct range *v;
    size_t n;
};

struct rx {
    regex_t re;
    char *src;
};

struct rx_list {
    struct rx *v;
    size_t n;
};

struct cidr_list {
    struct proxy_cidr *v;
    size_t n;
};

struct domain_cond {
    struct str_list exact;  /* "example.com" */
    struct str_list suffix; /* "*.example.com" stored as "example.com" */
    struct rx_list rx;
    int any; /* "*" */
};

enum hdr_kind {
    HDR_PRESENT = 0,
    HDR_ABSENT,
    HDR_EQUALS,
    HDR_REGEX,
};

struct hdr_cond {
    char *name;
    enum hdr_kind kind;
    char *value;
    struct rx rx;
};

struct policy_rule {
    char *id;
    int priority;
    int prio_set;   /* a valid priority was given */
    size_t index;   /* position in the config's list, for error paths */
    enum audit_phase phase;
    enum audit_action action;
    char *message;
    int dry_run;
    uint32_t has; /* bit per enum policy_cond */
    struct domain_cond domain, sni;
    struct cidr_list client_cidr, dest_cidr;
    struct str_list principal, method, content_type;
    struct range_list port, status, content_length;
    struct str_list path_prefix;
    struct rx_list path_rx;
    struct hdr_cond *headers;
    size_t nheaders;
};

/* A string -> positions map with open addressing (keys borrowed from the rules). */
struct pos_list {
    uint32_t *v;
    size_t n, cap;
};

struct strmap {
    const char **keys;
    struct pos_list *vals;
    size_t cap, n;
};

struct phase_index {
    uint32_t *rules; /* indices into the group's rules, ascending priority */
    size_t n;
    struct strmap exact, suffix; /* name -> positions in rules[] */
    struct pos_list always;      /* positions evaluated whatever the host */
};

struct policy_group {
    char *name;
    struct policy_rule *rules;
    size_t n;
    struct phase_index ph[NPHASES];
};

struct policy_pconf {
    char *name;
    struct cidr_list cidrs;
    struct str_list listeners;
    int any_source;
    struct policy_group **groups;
    size_t ngroups;
    int per_phase;
    enum audit_action defaults[NPHASES];
    int ssrf_guard;
    struct range_list connect_ports;
    int sni_mismatch_allowed;
    int non_tls_allowed;
    int has_intercept;
    struct domain_cond intercept, bypass; /* "intercept": {"domains", "bypass"} */
};

struct proxy_policy {
    _Atomic int refs;
    char version[65];
    struct policy_group *groups;
    size_t ngroups;
    struct policy_pconf *pconfs;
    size_t npconfs;
};

static int domain_match(const struct domain_cond *d, const char *host);
static void domain_free(struct domain_cond *d);

static const char *const cond_names[POLICY_COND_COUNT] = {
    [POLICY_COND_DOMAIN] = "domain",
    [POLICY_COND_SNI] = "sni",
    [POLICY_COND_CLIENT_CIDR] = "client_cidr",
    [POLICY_COND_PRINCIPAL] = "principal",
    [POLICY_COND_DESTINATION_CIDR] = "destination_cidr",
    [POLICY_COND_PORT] = "port",
    [POLICY_COND_METHOD] = "method",
    [POLICY_COND_PATH] = "path",
    [POLICY_COND_HEADER] = "header",
    [POLICY_COND_STATUS] = "status",
    [POLICY_COND_CONTENT_LENGTH] = "content_length",
    [POLICY_COND_CONTENT_TYPE] = "content_type",
};

/* The phases in which a flow can show each condition (bit per enum audit_phase). */
#define PH(p) (1u << (p))
#define PH_ALL (PH(AUDIT_PHASE_PRE_DNS) | PH(AUDIT_PHASE_PRE_REQUEST) | PH(AUDIT_PHASE_POST_RESPONSE))
#define PH_REQ (PH(AUDIT_PHASE_PRE_REQUEST) | PH(AUDIT_PHASE_POST_RESPONSE))
static const unsigned cond_phases[POLICY_COND_COUNT] = {
    [POLICY_COND_DOMAIN] = PH_ALL,
    [POLICY_COND_SNI] = PH_ALL,
    [POLICY_COND_CLIENT_CIDR] = PH_ALL,
    [POLICY_COND_PRINCIPAL] = PH_ALL,
    [POLICY_COND_DESTINATION_CIDR] = PH_REQ,
    [POLICY_COND_PORT] = PH_ALL,
    [POLICY_COND_METHOD] = PH_REQ,
    [POLICY_COND_PATH] = PH_REQ,
    [POLICY_COND_HEADER] = PH_REQ,
    [POLICY_COND_STATUS] = PH(AUDIT_PHASE_POST_RESPONSE),
    [POLICY_COND_CONTENT_LENGTH] = PH(AUDIT_PHASE_POST_RESPONSE),
    [POLICY_COND_CONTENT_TYPE] = PH(AUDIT_PHASE_POST_RESPONSE),
};

const char *policy_cond_name(enum policy_cond c)
{
    return (unsigned)c < POLICY_COND_COUNT ? cond_names[c] : "?";
}

/* ---- errors with JSON paths ---- */

void proxy_add_err(struct errs *e, const char *fmt, ...)
{
    va_list ap;
    e->count++;
    if (e->cap == 0 || e->len + 2 >= e->cap)
        return;
    if (e->len > 0)
        e->buf[e->len++] = '\n';
    va_start(ap, fmt);
    int n = vsnprintf(e->buf + e->len, e->cap - e->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        e->len += (size_t)n < e->cap - e->len ? (size_t)n : e->cap - e->len - 1;
    e->buf[e->len] = '\0';
}

/* ---- strmap ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int pos_add(struct pos_list *l, uint32_t v)
{
    if (l->n > 0 && l->v[l->n - 1] == v)
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        uint32_t *nv = realloc(l->v, cap * sizeof(*nv));
        if (!nv)
            return -1;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return 0;
}

static struct pos_list *strmap_find(const struct strmap *m, const char *key)
{
    if (m->cap == 0)
        return NULL;
    for (size_t i = hash_str(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i])
            return NULL;
        if (strcmp(m->keys[i], key) == 0)
            return &m->vals[i];
    }
}

static int strmap_grow(struct strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    const char **keys = calloc(cap, sizeof(*keys));
    struct pos_list *vals = calloc(cap, sizeof(*vals));
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = hash_str(m->keys[i]) & (cap - 1);
        while (keys[j])
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

static int strmap_add(struct strmap *m, const char *key, uint32_t pos)
{
    struct pos_list *l = strmap_find(m, key);
    if (!l) {
        if ((m->n + 1) * 2 > m->cap && strmap_grow(m) == -1)
            return -1;
        size_t i = hash_str(key) & (m->cap - 1);
        while (m->keys[i])
            i = (i + 1) & (m->cap - 1);
        m->keys[i] = key;
        m->n++;
        l = &m->vals[i];
    }
    return pos_add(l, pos);
}

static void strmap_free(struct strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->vals[i].v);
    free(m->keys);
    free(m->vals);
}

/* ---- parsing helpers ---- */

static int no_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static int str_list_add(struct str_list *l, const char *s)
{
    char **nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (!nv)
        return -1;
    l->v = nv;
    if (!(l->v[l->n] = strdup(s)))
        return -1;
    l->n++;
    return 0;
}

static void str_list_free(struct str_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static int rx_compile(struct rx *r, const char *src, char *why, size_t whylen)
{
    int rc = regcomp(&r->re, src, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        regerror(rc, &r->re, why, whylen);
        regfree(&r->re);
        return -1;
    }
    r->src = strdup(src);
    return r->src ? 0 : -1;
}

static int rx_list_add(struct rx_list *l, const char *src, char *why, size_t whylen)
{
    struct rx *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (!nv) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    l->v = nv;
    if (rx_compile(&l->v[l->n], src, why, whylen) == -1)
        return -1;
    l->n++;
    return 0;
}

static void rx_list_free(struct rx_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        regfree(&l->v[i].re);
        free(l->v[i].src);
    }
    free(l->v);
}

static int range_add(struct range_list *l, int64_t lo, int64_t hi)
{
    struct range *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (!nv)
        return -1;
    l->v = nv;
    l->v[l->n].lo = lo;
    l->v[l->n].hi = hi;
    l->n++;
    return 0;
}

static int cidr_add(struct cidr_list *l, const char *s)
{
    struct proxy_cidr c;
    if (proxy_cidr_parse(s, &c) == -1)
        return -1;
    struct proxy_cidr *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
    if (!nv)
        return -1;
    l->v = nv;
    l->v[l->n++] = c;
    return 0;
}

/* Lowercases, drops one trailing dot and converts an IDN to its ASCII (punycode) form.
 * 0, or -1 when it is not a usable name. */
int policy_normalize_domain(const char *in, char *out, size_t outlen);
int policy_normalize_domain(const char *in, char *out, size_t outlen)
{
    size_t n = strlen(in);
    int ascii = 1;
    if (n == 0 || n >= outlen)
        return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)in[i] >= 0x80)
            ascii = 0;
    if (ascii) {
        for (size_t i = 0; i < n; i++)
            out[i] = (char)tolower((unsigned char)in[i]);
        out[n] = '\0';
    } else {
        char *a = NULL;
        if (idn2_to_ascii_8z(in, &a, IDN2_NONTRANSITIONAL) != IDN2_OK)
            return -1;
        if (strlen(a) >= outlen) {
            idn2_free(a);
            return -1;
        }
        strcpy(out, a);
        idn2_free(a);
        for (char *p = out; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    n = strlen(out);
    if (n > 1 && out[n - 1] == '.')
        out[--n] = '\0';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)out[i];
        if (!isalnum(ch) && ch != '-' && ch != '.' && ch != '_' && ch != '*' && ch != ':')
            return -1;
    }
    return 0;
}

/* domain / sni: a list of "name", "*.suffix", "*", or {"regex": "..."}. */
static void parse_domain(struct errs *e, const char *path, const json_t *v, struct domain_cond *d)
{
    size_t i;
    json_t *a;
    if (!json_is_array(v) || json_array_size(v) == 0) {
        proxy_add_err(e, "%s: must be a non-empty list of names, \"*.suffix\" or {\"regex\": ...}", path);
        return;
    }
    json_array_foreach(v, i, a)
    {
        char norm[300], why[200];
        if (json_is_object(a)) {
            json_t *rx = json_object_get(a, "regex");
            if (!json_is_string(rx) || json_object_size(a) != 1)
                proxy_add_err(e, "%s[%zu]: an object must be {\"regex\": \"...\"}", path, i);
            else if (rx_list_add(&d->rx, json_string_value(rx), why, sizeof(why)) == -1)
                proxy_add_err(e, "%s[%zu]: bad regex: %s", path, i, why);
            continue;
        }
        const char *s = json_string_value(a);
        if (!s) {
            proxy_add_err(e, "%s[%zu]: must be a string or {\"regex\": ...}", path, i);
            continue;
        }
        if (strcmp(s, "*") == 0) {
            d->any = 1;
            continue;
        }
        int wild = strncmp(s, "*.", 2) == 0;
        if (policy_normalize_domain(wild ? s + 2 : s, norm, sizeof(norm)) == -1 || strchr(norm, '*')) {
            proxy_add_err(e, "%s[%zu]: \"%s\" is not a domain name, \"*.suffix\" or \"*\"", path, i, s);
            continue;
        }
        char ipn[64];
        if (!wild && proxy_normalize_ip_host(norm, ipn, sizeof(ipn)) == 1)
            snprintf(norm, sizeof(norm), "%s", ipn); /* "0x7f.1" names the same host as 127.0.0.1 */
        if (str_list_add(wild ? &d->suffix : &d->exact, norm) == -1)
            proxy_add_err(e, "%s[%zu]: out of memory", path, i);
    }
}

static void parse_strings(struct errs *e, const char *path, const json_t *v, struct str_list *l, int upper)
{
    size_t i;
    json_t *a;
    if (!json_is_array(v) || json_array_size(v) == 0) {
        proxy_add_err(e, "%s: must be a non-empty list of strings", path);
        return;
    }
    json_array_foreach(v, i, a)
    {
        const char *s = json_string_value(a);
        if (!s || !*s || !no_control(s)) {
            proxy_add_err(e, "%s[%zu]: must be a non-empty string", path, i);
            continue;
        }
        if (str_list_add(l, s) == -1) {
            proxy_add_err(e, "%s[%zu]: out of memory", path, i);
            continue;
        }
        if (upper)
            for (char *p = l->v[l->n - 1]; *p; p++)
                *p = (char)toupper((unsigned char)*p);
    }
}

static void parse_cidrs(struct errs *e, const char *path, const json_t *v, struct cidr_list *l)
{
    size_t i;
    json_t *a;
    if (!json_is_array(v) || json_array_size(v) == 0) {
        proxy_add_err(e, "%s: must be a non-empty list of CIDRs", path);
        return;
    }
    json_array_foreach(v, i, a)
    {
        if (!json_is_string(a) || cidr_add(l, json_string_value(a)) == -1)
            proxy_add_err(e, "%s[%zu]: must be a CIDR like \"10.0.0.0/8\" or \"::1/128\"", path, i);
    }
}

/* port: numbers or "lo-hi" strings */
static void parse_ports(struct errs *e, const char *path, const json_t *v, struct range_list *l)
{
    size_t i;
    json_t *a;
    if (!json_is_array(v) || json_array_size(v) == 0) {
        proxy_add_err(e, "%s: must be a non-empty list of ports or \"lo-hi\" ranges", path);
        return;
    }
    json_array_foreach(v, i, a)
    {
        long long lo = -1, hi = -1;
        if (json_is_integer(a)) {
            lo = hi = json_integer_value(a);
        } else if (json_is_string(a)) {
            char junk;
            if (sscanf(json_string_value(a), "%lld-%lld%c", &lo, &hi, &junk) != 2)
                lo = hi = -1;
        }
        if (lo < 1 || hi > 65535 || lo > hi)
            proxy_add_err(e, "%s[%zu]: must be a port (1-65535) or \"lo-hi\"", path, i);
        else
            range_add(l, lo, hi);
    }
}

/* status / content_length: [lo, hi], or a list of [lo, hi] pairs and single numbers */
static void parse_ranges(struct errs *e, const char *path, const json_t *v, struct range_list *l, int64_t max)
{
    size_t i;
    json_t *a;
    if (!json_is_array(v) || json_array_size(v) == 0) {
        proxy_add_err(e, "%s: must be [lo, hi] or a list of [lo, hi] ranges and numbers", path);
        return;
    }
    if (json_array_size(v) == 2 && json_is_integer(json_array_get(v, 0)) && json_is_integer(json_array_get(v, 1))) {
        int64_t lo = json_integer_value(json_array_get(v, 0)), hi = json_integer_value(json_array_get(v, 1));
        if (lo < 0 || hi > max || lo > hi)
            proxy_add_err(e, "%s: [lo, hi] must have 0 <= lo <= hi <= %lld", path, (long long)max);
        else
            range_add(l, lo, hi);
        return;
    }
    json_array_foreach(v, i, a)
    {
        int64_t lo = -1, hi = -1;
        if (json_is_integer(a)) {
            lo = hi = json_integer_value(a);
        } else if (json_is_array(a) && json_array_size(a) == 2 && json_is_integer(json_array_get(a, 0)) &&
                   json_is_integer(json_array_get(a, 1))) {
            lo = json_integer_value(json_array_get(a, 0));
            hi = json_integer_value(json_array_get(a, 1));
        }
        if (lo < 0 || hi > max || lo > hi)
            proxy_add_err(e, "%s[%zu]: must be a number or [lo, hi] with 0 <= lo <= hi <= %lld", path, i,
                          (long long)max);
        else
            range_add(l, lo, hi);
    }
}

/* path: a string is a prefix, {"regex": ...} a regex */
static void parse_path(struct errs *e, const char *path, const json_t *v, struct policy_rule *r)
{
    size_t i;
    json_t *a;
    if (!json_is_array(v) || json_array_size(v) == 0) {
        proxy_add_err(e, "%s: must be a non-empty list of prefixes or {\"regex\": ...}", path);
        return;
    }
    json_array_foreach(v, i, a)
    {
        char why[200];
        if (json_is_string(a) && json_string_value(a)[0] == '/') {
            str_list_add(&r->path_prefix, json_string_value(a));
        } else if (json_is_object(a) && json_is_string(json_object_get(a, "regex")) && json_object_size(a) == 1) {
            if (rx_list_add(&r->path_rx, json_string_value(json_object_get(a, "regex")), why, sizeof(why)) == -1)
                proxy_add_err(e, "%s[%zu]: bad regex: %s", path, i, why);
        } else {
            proxy_add_err(e, "%s[%zu]: must be a prefix starting with \"/\" or {\"regex\": ...}", path, i);
        }
    }
}

static void parse_headers(struct errs *e, const char *path, const json_t *v, struct policy_rule *r)
{
    size_t i;
    json_t *a;
    if (!json_is_array(v) || json_array_size(v) == 0) {
        proxy_add_err(e, "%s: must be a non-empty list of {\"name\", and \"present\", \"equals\" or \"regex\"}", path);
        return;
    }
    r->headers = calloc(json_array_size(v), sizeof(*r->headers));
    if (!r->headers) {
        proxy_add_err(e, "%s: out of memory", path);
        return;
    }
    json_array_foreach(v, i, a)
    {
        struct hdr_cond *h = &r->headers[r->nheaders];
        const char *name = json_string_value(json_object_get(a, "name"));
        json_t *present = json_object_get(a, "present"), *equals = json_object_get(a, "equals"),
               *regex = json_object_get(a, "regex");
        int kinds = (present != NULL) + (equals != NULL) + (regex != NULL);
        char why[200];
        if (!json_is_object(a) || !name || !*name || kinds != 1 || json_object_size(a) != 2) {
            proxy_add_err(e, "%s[%zu]: must be {\"name\": ..., and one of \"present\", \"equals\", \"regex\"}", path, i);
            continue;
        }
        if (present && !json_is_boolean(present)) {
            proxy_add_err(e, "%s[%zu].present: must be true or false", path, i);
            continue;
        }
        if ((equals && !json_is_string(equals)) || (regex && !json_is_string(regex))) {
            proxy_add_err(e, "%s[%zu]: \"equals\" and \"regex\" take a string", path, i);
            continue;
        }
        h->name = strdup(name);
        if (present) {
            h->kind = json_is_true(present) ? HDR_PRESENT : HDR_ABSENT;
        } else if (equals) {
            h->kind = HDR_EQUALS;
            h->value = strdup(json_string_value(equals));
        } else {
            h->kind = HDR_REGEX;
            if (rx_compile(&h->rx, json_string_value(regex), why, sizeof(why)) == -1) {
                proxy_add_err(e, "%s[%zu].regex: bad regex: %s", path, i, why);
                free(h->name);
                continue;
            }
        }
        r->nheaders++;
    }
}

static int parse_enum(const char *s, const char *const *names, int n)
{
    for (int i = 0; s && i < n; i++)
        if (names[i] && strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static const char *const phase_names[NPHASES] = {NULL, "pre_dns", "pre_request", "post_response"};
static const char *const action_names[4] = {NULL, "allow", "deny", "alert"};

static void parse_rule(struct errs *e, const char *path, const json_t *j, struct policy_rule *r)
{
    static const char *const keys[] = {"id", "priority", "phase", "action", "message", "dry_run", "match", NULL};
    char p[256];
    const char *key;
    json_t *v;

    if (!json_is_object(j)) {
        proxy_add_err(e, "%s: must be an object", path);
        return;
    }
    json_object_foreach((json_t *)j, key, v)
    {
        int ok = 0;
        for (const char *const *k = keys; *k; k++)
            ok |= strcmp(*k, key) == 0;
        if (!ok)
            proxy_add_err(e, "%s.%s: unknown key", path, key);
    }
    const char *id = json_string_value(json_object_get(j, "id"));
    if (!id || !*id || !no_control(id) || strchr(id, '\t'))
        proxy_add_err(e, "%s.id: must be a non-empty string", path);
    else
        r->id = strdup(id);
    json_t *pr = json_object_get(j, "priority");
    if (!json_is_integer(pr) || json_integer_value(pr) < 0 || json_integer_value(pr) > 1000000000)
        proxy_add_err(e, "%s.priority: must be an integer from 0 to 1000000000", path);
    else {
        r->priority = (int)json_integer_value(pr);
        r->prio_set = 1;
    }
    int ph = parse_enum(json_string_value(json_object_get(j, "phase")), phase_names, NPHASES);
    if (ph < 1)
        proxy_add_err(e, "%s.phase: must be \"pre_dns\", \"pre_request\" or \"post_response\"", path);
    else
        r->phase = (enum audit_phase)ph;
    int ac = parse_enum(json_string_value(json_object_get(j, "action")), action_names, 4);
    if (ac < 1)
        proxy_add_err(e, "%s.action: must be \"allow\", \"deny\" or \"alert\"", path);
    else
        r->action = (enum audit_action)ac;
    json_t *m = json_object_get(j, "message");
    if (m && (!json_is_string(m) || !no_control(json_string_value(m))))
        proxy_add_err(e, "%s.message: must be a string without control characters", path);
    else if (m)
        r->message = strdup(json_string_value(m));
    json_t *dr = json_object_get(j, "dry_run");
    if (dr && !json_is_boolean(dr))
        proxy_add_err(e, "%s.dry_run: must be true or false", path);
    r->dry_run = json_is_true(dr);

    json_t *match = json_object_get(j, "match");
    if (!match)
        return; /* matches every flow of its phase */
    if (!json_is_object(match)) {
        proxy_add_err(e, "%s.match: must be an object", path);
        return;
    }
    json_object_foreach(match, key, v)
    {
        int c = parse_enum(key, cond_names, POLICY_COND_COUNT);
        snprintf(p, sizeof(p), "%s.match.%s", path, key);
        if (c < 0) {
            proxy_add_err(e, "%s: unknown condition", p);
            continue;
        }
        if (ph >= 1 && !(cond_phases[c] & PH(ph))) {
            proxy_add_err(e, "%s: no flow shows %s in phase %s", p, key, phase_names[ph]);
            continue;
        }
        r->has |= 1u << c;
        switch ((enum policy_cond)c) {
        case POLICY_COND_DOMAIN: parse_domain(e, p, v, &r->domain); break;
        case POLICY_COND_SNI: parse_domain(e, p, v, &r->sni); break;
        case POLICY_COND_CLIENT_CIDR: parse_cidrs(e, p, v, &r->client_cidr); break;
        case POLICY_COND_DESTINATION_CIDR: parse_cidrs(e, p, v, &r->dest_cidr); break;
        case POLICY_COND_PRINCIPAL: parse_strings(e, p, v, &r->principal, 0); break;
        case POLICY_COND_METHOD: parse_strings(e, p, v, &r->method, 1); break;
        case POLICY_COND_CONTENT_TYPE: parse_strings(e, p, v, &r->content_type, 0); break;
        case POLICY_COND_PORT: parse_ports(e, p, v, &r->port); break;
        case POLICY_COND_STATUS: parse_ranges(e, p, v, &r->status, 999); break;
        case POLICY_COND_CONTENT_LENGTH: parse_ranges(e, p, v, &r->content_length, INT64_MAX); break;
        case POLICY_COND_PATH: parse_path(e, p, v, r); break;
        case POLICY_COND_HEADER: parse_headers(e, p, v, r); break;
        case POLICY_COND_COUNT: break;
        }
    }
}

static void domain_free(struct domain_cond *d)
{
    str_list_free(&d->exact);
    str_list_free(&d->suffix);
    rx_list_free(&d->rx);
}

static void rule_free(struct policy_rule *r)
{
    free(r->id);
    free(r->message);
    domain_free(&r->domain);
    domain_free(&r->sni);
    free(r->client_cidr.v);
    free(r->dest_cidr.v);
    str_list_free(&r->principal);
    str_list_free(&r->method);
    str_list_free(&r->content_type);
    free(r->port.v);
    free(r->status.v);
    free(r->content_length.v);
    str_list_free(&r->path_prefix);
    rx_list_free(&r->path_rx);
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
        if (r->headers[i].kind == HDR_REGEX) {
            regfree(&r->headers[i].rx.re);
            free(r->headers[i].rx.src);
        }
    }
    free(r->headers);
}

static int cmp_priority(const void *a, const void *b)
{
    const struct policy_rule *x = a, *y = b;
    if (x->priority != y->priority)
        return (x->priority > y->priority) - (x->priority < y->priority);
    return (x->index > y->index) - (x->index < y->index); /* a stable order for the error message */
}

/* Builds each phase's rule list and domain index. */
static int index_group(struct policy_group *g)
{
    for (int ph = 1; ph < NPHASES; ph++) {
        struct phase_index *pi = &g->ph[ph];
        pi->rules = calloc(g->n ? g->n : 1, sizeof(*pi->rules));
        if (!pi->rules)
            return -1;
        for (size_t i = 0; i < g->n; i++) {
            const struct policy_rule *r = &g->rules[i];
            if ((int)r->phase != ph)
                continue;
            uint32_t pos = (uint32_t)pi->n;
            pi->rules[pi->n++] = (uint32_t)i;
            const struct domain_cond *d = &r->domain;
            if (!(r->has & (1u << POLICY_COND_DOMAIN)) || d->any || d->rx.n > 0) {
                if (pos_add(&pi->always, pos) == -1)
                    return -1;
                continue;
            }
            for (size_t k = 0; k < d->exact.n; k++)
                if (strmap_add(&pi->exact, d->exact.v[k], pos) == -1)
                    return -1;
            for (size_t k = 0; k < d->suffix.n; k++)
                if (strmap_add(&pi->suffix, d->suffix.v[k], pos) == -1)
                    return -1;
        }
    }
    return 0;
}

static void parse_groups(struct errs *e, const json_t *root, struct proxy_policy *p)
{
    json_t *groups = json_object_get(root, "rule_groups");
    size_t gi;
    json_t *gj;
    if (!groups)
        return;
    if (!json_is_array(groups)) {
        proxy_add_err(e, "rule_groups: must be a list of {\"name\", \"rules\"}");
        return;
    }
    p->groups = calloc(json_array_size(groups) + 1, sizeof(*p->groups));
    if (!p->groups) {
        proxy_add_err(e, "rule_groups: out of memory");
        return;
    }
    json_array_foreach(groups, gi, gj)
    {
        struct policy_group *g = &p->groups[p->ngroups++];
        const char *name = json_string_value(json_object_get(gj, "name"));
        json_t *rules = json_object_get(gj, "rules");
        const char *key;
        json_t *v;
        char path[128];
        if (!json_is_object(gj)) {
            proxy_add_err(e, "rule_groups[%zu]: must be an object", gi);
            continue;
        }
        json_object_foreach(gj, key, v)
        {
            if (strcmp(key, "name") != 0 && strcmp(key, "rules") != 0)
                proxy_add_err(e, "rule_groups[%zu].%s: unknown key", gi, key);
        }
        if (!name || !*name || !no_control(name) || strchr(name, '\t')) {
            proxy_add_err(e, "rule_groups[%zu].name: must be a non-empty string", gi);
        } else {
            for (size_t k = 0; k + 1 < p->ngroups; k++)
                if (p->groups[k].name && strcmp(p->groups[k].name, name) == 0)
                    proxy_add_err(e, "rule_groups[%zu].name: \"%s\" names two groups", gi, name);
            g->name = strdup(name);
        }
        if (!json_is_array(rules)) {
            proxy_add_err(e, "rule_groups[%zu].rules: must be a list of rules", gi);
            continue;
        }
        g->rules = calloc(json_array_size(rules) + 1, sizeof(*g->rules));
        if (!g->rules) {
            proxy_add_err(e, "rule_groups[%zu].rules: out of memory", gi);
            continue;
        }
        size_t ri;
        json_t *rj;
        json_array_foreach(rules, ri, rj)
        {
            snprintf(path, sizeof(path), "rule_groups[%zu].rules[%zu]", gi, ri);
            struct policy_rule *r = &g->rules[g->n++];
            r->index = ri;
            parse_rule(e, path, rj, r);
        }
        /* ids and priorities are unique in a group: a hash of ids, then neighbours in priority order */
        struct strmap ids = {0};
        for (size_t k = 0; k < g->n; k++) {
            struct policy_rule *r = &g->rules[k];
            struct pos_list *l = r->id ? strmap_find(&ids, r->id) : NULL;
            if (l)
                proxy_add_err(e, "rule_groups[%zu].rules[%zu].id: \"%s\" is also the id of rules[%u]", gi, r->index,
                              r->id, l->v[0]);
            else if (r->id && strmap_add(&ids, r->id, (uint32_t)r->index) == -1)
                proxy_add_err(e, "rule_groups[%zu]: out of memory", gi);
        }
        strmap_free(&ids);
        qsort(g->rules, g->n, sizeof(*g->rules), cmp_priority);
        for (size_t k = 1; k < g->n; k++) {
            const struct policy_rule *a = &g->rules[k - 1], *b = &g->rules[k];
            if (a->prio_set && b->prio_set && a->priority == b->priority) {
                const struct policy_rule *later = a->index > b->index ? a : b, *first = a->index > b->index ? b : a;
                proxy_add_err(e,
                              "rule_groups[%zu].rules[%zu].priority: %d is also the priority of rules[%zu]; priorities "
                              "are unique in a group", gi, later->index, later->priority, first->index);
            }
        }
        if (index_group(g) == -1)
            proxy_add_err(e, "rule_groups[%zu]: out of memory", gi);
    }
}

static struct policy_group *find_group(struct proxy_policy *p, const char *name)
{
    for (size_t i = 0; i < p->ngroups; i++)
        if (p->groups[i].name && strcmp(p->groups[i].name, name) == 0)
            return &p->groups[i];
    return NULL;
}

static void parse_default(struct errs *e, const char *path, const json_t *v, struct policy_pconf *pc)
{
    if (!v) {
        for (int ph = 1; ph < NPHASES; ph++)
            pc->defaults[ph] = AUDIT_ACTION_ALLOW;
        return;
    }
    if (json_is_string(v)) {
        int a = parse_enum(json_string_value(v), action_names, 3);
        if (a < 1)
            proxy_add_err(e, "%s: must be \"allow\", \"deny\" or an object with one per phase", path);
        for (int ph = 1; ph < NPHASES; ph++)
            pc->defaults[ph] = a < 1 ? AUDIT_ACTION_ALLOW : (enum audit_action)a;
        return;
    }
    if (!json_is_object(v)) {
        proxy_add_err(e, "%s: must be \"allow\", \"deny\" or an object with one per phase", path);
        return;
    }
    pc->per_phase = 1;
    const char *key;
    json_t *x;
    json_object_foreach((json_t *)v, key, x)
    {
        if (parse_enum(key, phase_names, NPHASES) < 1)
            proxy_add_err(e, "%s.%s: not a phase (pre_dns, pre_request, post_response)", path, key);
    }
    for (int ph = 1; ph < NPHASES; ph++) {
        json_t *a = json_object_get(v, phase_names[ph]);
        int act = a ? parse_enum(json_string_value(a), action_names, 3) : AUDIT_ACTION_ALLOW;
        if (act < 1)
            proxy_add_err(e, "%s.%s: must be \"allow\" or \"deny\"", path, phase_names[ph]);
        pc->defaults[ph] = act < 1 ? AUDIT_ACTION_ALLOW : (enum audit_action)act;
    }
}

static void parse_pconfs(struct errs *e, const json_t *root, struct proxy_policy *p)
{
    static const char *const keys[] = {"name", "sources", "rule_groups", "default_action", "ssrf_guard",
                                       "connect_ports", "sni_mismatch", "non_tls_tunnels", "intercept", NULL};
    json_t *pcs = json_object_get(root, "proxy_configurations");
    size_t i;
    json_t *j;

    if (pcs && (!json_is_array(pcs) || json_array_size(pcs) == 0)) {
        proxy_add_err(e, "proxy_configurations: must be a non-empty list");
        return;
    }
    p->pconfs = calloc(pcs ? json_array_size(pcs) : 1, sizeof(*p->pconfs));
    if (!p->pconfs) {
        proxy_add_err(e, "proxy_configurations: out of memory");
        return;
    }
    if (!pcs) { /* the implicit configuration: every client, every group in order, allow */
        struct policy_pconf *pc = &p->pconfs[p->npconfs++];
        pc->name = strdup("default");
        pc->any_source = 1;
        pc->ssrf_guard = 1;
        range_add(&pc->connect_ports, 443, 443);
        parse_default(e, "default_action", json_object_get(root, "default_action"), pc);
        pc->groups = calloc(p->ngroups + 1, sizeof(*pc->groups));
        for (size_t g = 0; pc->groups && g < p->ngroups; g++)
            pc->groups[pc->ngroups++] = &p->groups[g];
        return;
    }
    if (json_object_get(root, "default_action"))
        proxy_add_err(e, "default_action: belongs in each of proxy_configurations when they are listed");
    json_array_foreach(pcs, i, j)
    {
        struct policy_pconf *pc = &p->pconfs[p->npconfs++];
        char path[96];
        const char *key;
        json_t *v;
        if (!json_is_object(j)) {
            proxy_add_err(e, "proxy_configurations[%zu]: must be an object", i);
            continue;
        }
        json_object_foreach(j, key, v)
        {
            int ok = 0;
            for (const char *const *k = keys; *k; k++)
                ok |= strcmp(*k, key) == 0;
            if (!ok)
                proxy_add_err(e, "proxy_configurations[%zu].%s: unknown key", i, key);
        }
        const char *name = json_string_value(json_object_get(j, "name"));
        if (!name || !*name)
            proxy_add_err(e, "proxy_configurations[%zu].name: must be a non-empty string", i);
        pc->name = strdup(name ? name : "");
        json_t *src = json_object_get(j, "sources");
        if (!src) {
            pc->any_source = 1;
        } else if (!json_is_object(src)) {
            proxy_add_err(e, "proxy_configurations[%zu].sources: must be {\"cidrs\": [...], \"listeners\": [...]}", i);
        } else {
            json_object_foreach(src, key, v)
            {
                snprintf(path, sizeof(path), "proxy_configurations[%zu].sources.%s", i, key);
                if (strcmp(key, "cidrs") == 0)
                    parse_cidrs(e, path, v, &pc->cidrs);
                else if (strcmp(key, "listeners") == 0)
                    parse_strings(e, path, v, &pc->listeners, 0);
                else
                    proxy_add_err(e, "%s: unknown key", path);
            }
        }
        json_t *gl = json_object_get(j, "rule_groups");
        if (gl && !json_is_array(gl)) {
            proxy_add_err(e, "proxy_configurations[%zu].rule_groups: must be a list of group names", i);
            gl = NULL;
        }
        pc->groups = calloc(json_array_size(gl) + 1, sizeof(*pc->groups));
        size_t k;
        json_t *gn;
        json_array_foreach(gl, k, gn)
        {
            struct policy_group *g = json_is_string(gn) ? find_group(p, json_string_value(gn)) : NULL;
            if (!g)
                proxy_add_err(e, "proxy_configurations[%zu].rule_groups[%zu]: no rule group of that name", i, k);
            else if (pc->groups)
                pc->groups[pc->ngroups++] = g;
        }
        snprintf(path, sizeof(path), "proxy_configurations[%zu].default_action", i);
        parse_default(e, path, json_object_get(j, "default_action"), pc);
        json_t *sg = json_object_get(j, "ssrf_guard");
        if (sg && !json_is_boolean(sg))
            proxy_add_err(e, "proxy_configurations[%zu].ssrf_guard: must be true or false", i);
        pc->ssrf_guard = sg ? json_is_true(sg) : 1;
        static const char *const da[] = {"deny", "allow"};
        json_t *sm = json_object_get(j, "sni_mismatch"), *nt = json_object_get(j, "non_tls_tunnels");
        int smv = sm ? parse_enum(json_string_value(sm), da, 2) : 0, ntv = nt ? parse_enum(json_string_value(nt), da, 2) : 0;
        if (smv < 0)
            proxy_add_err(e, "proxy_configurations[%zu].sni_mismatch: must be \"deny\" or \"allow\"", i);
        if (ntv < 0)
            proxy_add_err(e, "proxy_configurations[%zu].non_tls_tunnels: must be \"deny\" or \"allow\"", i);
        pc->sni_mismatch_allowed = smv == 1;
        pc->non_tls_allowed = ntv == 1;
        json_t *ic = json_object_get(j, "intercept");
        if (ic) {
            const char *k2;
            json_t *v2;
            if (!json_is_object(ic)) {
                proxy_add_err(e, "proxy_configurations[%zu].intercept: must be {\"domains\": [...], \"bypass\": [...]}",
                              i);
            } else {
                json_object_foreach(ic, k2, v2)
                {
                    snprintf(path, sizeof(path), "proxy_configurations[%zu].intercept.%s", i, k2);
                    if (strcmp(k2, "domains") == 0)
                        parse_domain(e, path, v2, &pc->intercept);
                    else if (strcmp(k2, "bypass") == 0)
                        parse_domain(e, path, v2, &pc->bypass);
                    else
                        proxy_add_err(e, "%s: unknown key", path);
                }
                pc->has_intercept = 1;
            }
        }
        json_t *cp = json_object_get(j, "connect_ports");
        snprintf(path, sizeof(path), "proxy_configurations[%zu].connect_ports", i);
        if (cp)
            parse_ports(e, path, cp, &pc->connect_ports);
        else
            range_add(&pc->connect_ports, 443, 443);
    }
}

static void policy_free(struct proxy_policy *p)
{
    for (size_t i = 0; i < p->ngroups; i++) {
        struct policy_group *g = &p->groups[i];
        for (size_t k = 0; k < g->n; k++)
            rule_free(&g->rules[k]);
        free(g->rules);
        free(g->name);
        for (int ph = 1; ph < NPHASES; ph++) {
            free(g->ph[ph].rules);
            strmap_free(&g->ph[ph].exact);
            strmap_free(&g->ph[ph].suffix);
            free(g->ph[ph].always.v);
        }
    }
    free(p->groups);
    for (size_t i = 0; i < p->npconfs; i++) {
        struct policy_pconf *pc = &p->pconfs[i];
        free(pc->name);
        free(pc->cidrs.v);
        str_list_free(&pc->listeners);
        free(pc->groups);
        free(pc->connect_ports.v);
        domain_free(&pc->intercept);
        domain_free(&pc->bypass);
    }
    free(p->pconfs);
    free(p);
}

struct proxy_policy *proxy_policy_compile(const json_t *root, const char *version, char *err, size_t errlen)
{
    struct errs e = {.buf = err, .cap = errlen};
    struct proxy_policy *p = calloc(1, sizeof(*p));
    if (errlen)
        err[0] = '\0';
    if (!p) {
        proxy_add_err(&e, "out of memory");
        return NULL;
    }
    atomic_init(&p->refs, 1);
    snprintf(p->version, sizeof(p->version), "%s", version ? version : "");
    parse_groups(&e, root, p);
    parse_pconfs(&e, root, p);
    if (e.count) {
        policy_free(p);
        return NULL;
    }
    return p;
}

void proxy_policy_ref(struct proxy_policy *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void proxy_policy_unref(struct proxy_policy *p)
{
    if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        policy_free(p);
}

const char *proxy_policy_version(const struct proxy_policy *p)
{
    return p->version;
}

/* ---- evaluation ---- */

static int cidrs_match(const struct cidr_list *l, const struct sockaddr *sa)
{
    for (size_t i = 0; i < l->n; i++)
        if (proxy_cidr_match(&l->v[i], sa))
            return 1;
    return 0;
}

const struct policy_pconf *proxy_policy_select(const struct proxy_policy *p, const struct sockaddr *client,
                                               const char *listener)
{
    for (size_t i = 0; i < p->npconfs; i++) {
        const struct policy_pconf *pc = &p->pconfs[i];
        if (pc->any_source)
            return pc;
        if (client && cidrs_match(&pc->cidrs, client))
            return pc;
        for (size_t k = 0; listener && k < pc->listeners.n; k++)
            if (strcmp(pc->listeners.v[k], listener) == 0)
                return pc;
    }
    return NULL;
}

const char *policy_pconf_name(const struct policy_pconf *pc)
{
    return pc->name;
}

int policy_pconf_ssrf_guard(const struct policy_pconf *pc)
{
    return pc->ssrf_guard;
}

static int in_ranges(const struct range_list *l, int64_t v)
{
    for (size_t i = 0; i < l->n; i++)
        if (v >= l->v[i].lo && v <= l->v[i].hi)
            return 1;
    return 0;
}

int policy_pconf_connect_port_ok(const struct policy_pconf *pc, uint16_t port)
{
    return in_ranges(&pc->connect_ports, port);
}

int policy_pconf_sni_mismatch_allowed(const struct policy_pconf *pc)
{
    return pc->sni_mismatch_allowed;
}

int policy_pconf_non_tls_allowed(const struct policy_pconf *pc)
{
    return pc->non_tls_allowed;
}

int proxy_policy_intercept_path(const struct proxy_policy *p, char *path, size_t pathlen)
{
    for (size_t i = 0; i < p->npconfs; i++)
        if (p->pconfs[i].has_intercept) {
            snprintf(path, pathlen, "proxy_configurations[%zu].intercept", i);
            return 1;
        }
    return 0;
}

int policy_pconf_has_intercept(const struct policy_pconf *pc)
{
    return pc->has_intercept;
}

int policy_pconf_intercepts(const struct policy_pconf *pc, const char *host, const char *sni)
{
    if (!pc->has_intercept)
        return 0;
    /* bypass wins: pinned clients and regulated destinations are never intercepted */
    if (domain_match(&pc->bypass, host) || (sni && domain_match(&pc->bypass, sni)))
        return 0;
    return domain_match(&pc->intercept, host) || (sni && domain_match(&pc->intercept, sni));
}

static int rx_match(const struct rx *r, const char *s, size_t len)
{
    char stack[1024];
    char *buf = len < sizeof(stack) ? stack : malloc(len + 1);
    if (!buf)
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    int m = regexec(&r->re, buf, 0, NULL, 0) == 0;
    if (buf != stack)
        free(buf);
    return m;
}

static int domain_match(const struct domain_cond *d, const char *host)
{
    size_t hl = strlen(host);
    if (d->any)
        return 1;
    for (size_t i = 0; i < d->exact.n; i++)
        if (strcmp(d->exact.v[i], host) == 0)
            return 1;
    for (size_t i = 0; i < d->suffix.n; i++) {
        size_t sl = strlen(d->suffix.v[i]);
        /* "*.example.com": a label, a dot, then the suffix; never the suffix alone */
        if (hl > sl + 1 && host[hl - sl - 1] == '.' && strcmp(host + hl - sl, d->suffix.v[i]) == 0)
            return 1;
    }
    for (size_t i = 0; i < d->rx.n; i++)
        if (rx_match(&d->rx.v[i], host, hl))
            return 1;
    return 0;
}

static int content_type_match(const struct str_list *l, const char *ct)
{
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < l->n; i++) {
        const char *want = l->v[i];
        size_t wl = strlen(want);
        if (wl >= 2 && strcmp(want + wl - 2, "/*") == 0) { /* a whole type: "text/" then anything */
            if (n > wl - 1 && strncasecmp(ct, want, wl - 1) == 0)
                return 1;
        } else if (wl == n && strncasecmp(ct, want, n) == 0) {
            return 1;
        }
    }
    return 0;
}

static int header_match(const struct hdr_cond *h, const struct policy_input *in)
{
    const char *v;
    size_t len;
    int found = in->header(in->header_arg, h->name, &v, &len);
    switch (h->kind) {
    case HDR_PRESENT: return found;
    case HDR_ABSENT: return !found;
    case HDR_EQUALS: return found && strlen(h->value) == len && memcmp(h->value, v, len) == 0;
    case HDR_REGEX: return found && rx_match(&h->rx, v, len);
    }
    return 0;
}

enum match_result {
    M_MATCH = 0,
    M_NO,
    M_UNEVALUABLE,
};

/* Evaluates every condition of <r>: M_NO (and the first failing condition in *<why>) when an
 * evaluable one fails; M_UNEVALUABLE (and the condition) when all evaluable ones hold but one
 * cannot be seen; else M_MATCH. */
static enum match_result rule_match(const struct policy_rule *r, const struct policy_input *in, enum policy_cond *why)
{
    enum policy_cond unseen = POLICY_COND_COUNT;
    for (int c = 0; c < POLICY_COND_COUNT; c++) {
        if (!(r->has & (1u << c)))
            continue;
        int ok = 1, visible = 1;
        switch ((enum policy_cond)c) {
        case POLICY_COND_DOMAIN: ok = domain_match(&r->domain, in->host); break;
        case POLICY_COND_SNI:
            visible = in->sni != NULL;
            ok = visible && domain_match(&r->sni, in->sni);
            break;
        case POLICY_COND_CLIENT_CIDR: ok = in->client && cidrs_match(&r->client_cidr, in->client); break;
        case POLICY_COND_DESTINATION_CIDR:
            visible = in->dest != NULL;
            ok = visible && cidrs_match(&r->dest_cidr, in->dest);
            break;
        case POLICY_COND_PRINCIPAL:
            ok = 0;
            for (size_t i = 0; in->principal && i < r->principal.n; i++)
                ok |= strcmp(r->principal.v[i], in->principal) == 0;
            break;
        case POLICY_COND_PORT: ok = in_ranges(&r->port, in->port); break;
        case POLICY_COND_METHOD:
            visible = in->method != NULL;
            ok = 0;
            for (size_t i = 0; visible && i < r->method.n; i++)
                ok |= strcmp(r->method.v[i], in->method) == 0;
            break;
        case POLICY_COND_PATH:
            visible = in->path != NULL;
            ok = 0;
            for (size_t i = 0; visible && !ok && i < r->path_prefix.n; i++) {
                size_t pl = strlen(r->path_prefix.v[i]);
                ok = in->path_len >= pl && memcmp(in->path, r->path_prefix.v[i], pl) == 0;
            }
            for (size_t i = 0; visible && !ok && i < r->path_rx.n; i++)
                ok = rx_match(&r->path_rx.v[i], in->path, in->path_len);
            break;
        case POLICY_COND_HEADER:
            visible = in->header != NULL;
            ok = 0;
            for (size_t i = 0; visible && !ok && i < r->nheaders; i++)
                ok = header_match(&r->headers[i], in);
            break;
        case POLICY_COND_STATUS:
            visible = in->status > 0;
            ok = visible && in_ranges(&r->status, in->status);
            break;
        case POLICY_COND_CONTENT_LENGTH:
            visible = in->content_length >= 0;
            ok = visible && in_ranges(&r->content_length, in->content_length);
            break;
        case POLICY_COND_CONTENT_TYPE: ok = in->content_type && content_type_match(&r->content_type, in->content_type); break;
        case POLICY_COND_COUNT: break;
        }
        if (!visible) {
            if (unseen == POLICY_COND_COUNT)
                unseen = (enum policy_cond)c;
            continue;
        }
        if (!ok) {
            *why = (enum policy_cond)c;
            return M_NO;
        }
    }
    if (unseen != POLICY_COND_COUNT) {
        *why = unseen;
        return M_UNEVALUABLE;
    }
    return M_MATCH;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The positions (in pi->rules) of the rules that may match <host>, ascending. */
static size_t candidates(const struct phase_index *pi, const char *host, uint32_t **out, uint32_t *stack)
{
    size_t n = 0, cap = CAND_STACK;
    uint32_t *v = stack;
    const struct pos_list *lists[64];
    size_t nl = 0;
    const struct pos_list *l = strmap_find(&pi->exact, host);
    if (l)
        lists[nl++] = l;
    for (const char *s = strchr(host, '.'); s && nl < 63; s = strchr(s + 1, '.'))
        if ((l = strmap_find(&pi->suffix, s + 1)) != NULL)
            lists[nl++] = l;
    if (pi->always.n)
        lists[nl++] = &pi->always;
    for (size_t i = 0; i < nl; i++) {
        for (size_t k = 0; k < lists[i]->n; k++) {
            if (n == cap) {
                size_t ncap = cap * 2;
                uint32_t *nv = malloc(ncap * sizeof(*nv));
                if (!nv)
                    goto done;
                memcpy(nv, v, n * sizeof(*nv));
                if (v != stack)
                    free(v);
                v = nv;
                cap = ncap;
            }
            v[n++] = lists[i]->v[k];
        }
    }
done:
    if (nl > 1)
        qsort(v, n, sizeof(*v), cmp_u32);
    *out = v;
    return n;
}

static void list_ref(struct policy_rule_ref *refs, size_t *n, const struct policy_group *g,
                     const struct policy_rule *r)
{
    if (*n >= POLICY_MAX_LISTED)
        return;
    refs[*n].group = g->name;
    refs[*n].id = r->id;
    refs[*n].priority = r->priority;
    (*n)++;
}

__attribute__((format(printf, 3, 4))) static void tracef(policy_trace_cb trace, void *arg, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    if (!trace)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    trace(arg, line);
}

void proxy_policy_eval(const struct policy_pconf *pc, const struct policy_input *in, int allowed_before,
                       struct policy_decision *out, policy_trace_cb trace, void *trace_arg)
{
    const char *phase = phase_names[in->phase];
    memset(out, 0, sizeof(*out));
    for (size_t gi = 0; gi < pc->ngroups; gi++) {
        const struct policy_group *g = pc->groups[gi];
        const struct phase_index *pi = &g->ph[in->phase];
        uint32_t stack[CAND_STACK], *cand = NULL;
        size_t n;
        if (pi->n == 0)
            continue;
        if (trace) { /* explaining: every rule of the phase, not only the indexed candidates */
            cand = pi->n <= CAND_STACK ? stack : malloc(pi->n * sizeof(*cand));
            if (!cand)
                cand = stack;
            n = 0;
            for (size_t i = 0; i < pi->n && (cand != stack || i < CAND_STACK); i++)
                cand[n++] = (uint32_t)i;
        } else {
            n = candidates(pi, in->host, &cand, stack);
        }
        int decided = 0;
        for (size_t k = 0; k < n && !decided; k++) {
            const struct policy_rule *r = &g->rules[pi->rules[cand[k]]];
            enum policy_cond why = POLICY_COND_COUNT;
            enum match_result m = rule_match(r, in, &why);
            const char *act = action_names[r->action];
            if (m == M_NO) {
                tracef(trace, trace_arg, "%s: %s/%s (priority %d, %s%s): no match: %s", phase, g->name, r->id,
                       r->priority, act, r->dry_run ? ", dry run" : "", cond_names[why]);
                continue;
            }
            if (m == M_UNEVALUABLE) {
                tracef(trace, trace_arg, "%s: %s/%s (priority %d, %s): not evaluable: this flow shows no %s", phase,
                       g->name, r->id, r->priority, act, cond_names[why]);
                if (out->nunevaluable < POLICY_MAX_LISTED)
                    out->unevaluable_cond[out->nunevaluable] = why;
                list_ref(out->unevaluable, &out->nunevaluable, g, r);
                continue;
            }
            if (r->dry_run) {
                tracef(trace, trace_arg, "%s: %s/%s (priority %d): matched, dry run: would %s", phase, g->name, r->id,
                       r->priority, act);
                if (out->ndry < POLICY_MAX_LISTED)
                    out->dry_action[out->ndry] = r->action;
                list_ref(out->dry_run, &out->ndry, g, r);
                continue;
            }
            if (r->action == AUDIT_ACTION_ALERT) {
                tracef(trace, trace_arg, "%s: %s/%s (priority %d): matched: alert, going on", phase, g->name, r->id,
                       r->priority);
                list_ref(out->alerts, &out->nalerts, g, r);
                continue;
            }
            tracef(trace, trace_arg, "%s: %s/%s (priority %d): matched: %s decides the phase", phase, g->name, r->id,
                   r->priority, act);
            out->action = r->action;
            out->by_rule = 1;
            out->rule.group = g->name;
            out->rule.id = r->id;
            out->rule.priority = r->priority;
            out->reason = "rule";
            out->message = r->message;
            out->rule_has_destination = (r->has & (1u << POLICY_COND_DESTINATION_CIDR)) != 0;
            out->rule_has_port = (r->has & (1u << POLICY_COND_PORT)) != 0;
            out->rule_has_sni = (r->has & (1u << POLICY_COND_SNI)) != 0;
            decided = 1;
        }
        if (cand != stack)
            free(cand);
        if (decided)
            return;
    }
    /* no rule decided */
    out->reason = "default_action";
    if (pc->per_phase) {
        out->action = pc->defaults[in->phase];
    } else if (pc->defaults[1] == AUDIT_ACTION_ALLOW) {
        out->action = AUDIT_ACTION_ALLOW;
    } else if (in->phase == AUDIT_PHASE_PRE_REQUEST && !allowed_before) {
        out->action = AUDIT_ACTION_DENY; /* allowlist mode: nothing allowed this flow before it leaves */
    } else {
        out->action = AUDIT_ACTION_ALLOW;
        out->reason = "no_decision";
    }
    tracef(trace, trace_arg, "%s: no rule decided: %s (%s)", phase, action_names[out->action], out->reason);
}

void policy_decision_to_event(const struct policy_decision *d, struct audit_event *ev)
{
    char prio[16];
    ev->action = (uint8_t)d->action;
    ev->flags |= AUDIT_F_RULE;
    if (d->by_rule) {
        if (d->rule.group)
            audit_event_set_str(ev, AUDIT_STR_RULE_GROUP, d->rule.group, strlen(d->rule.group));
        audit_event_set_str(ev, AUDIT_STR_RULE_ID, d->rule.id, strlen(d->rule.id));
        ev->rule_priority = d->rule.priority;
    }
    const char *reason = d->message ? d->message : d->reason;
    if (reason)
        audit_event_set_str(ev, AUDIT_STR_REASON, reason, strlen(reason));
    for (size_t i = 0; i < d->nalerts; i++) {
        snprintf(prio, sizeof(prio), "%d", d->alerts[i].priority);
        const char *m[] = {d->alerts[i].group ? d->alerts[i].group : "", d->alerts[i].id, prio};
        audit_event_list_add(ev, AUDIT_STR_ALERTS, m, 3);
    }
    for (size_t i = 0; i < d->ndry; i++) {
        snprintf(prio, sizeof(prio), "%d", d->dry_run[i].priority);
        const char *m[] = {d->dry_run[i].group ? d->dry_run[i].group : "", d->dry_run[i].id, prio,
                           action_names[d->dry_action[i]]};
        audit_event_list_add(ev, AUDIT_STR_DRY_RUN, m, 4);
    }
    for (size_t i = 0; i < d->nunevaluable; i++) {
        snprintf(prio, sizeof(prio), "%d", d->unevaluable[i].priority);
        const char *m[] = {d->unevaluable[i].group ? d->unevaluable[i].group : "", d->unevaluable[i].id, prio,
                           cond_names[d->unevaluable_cond[i]]};
        audit_event_list_add(ev, AUDIT_STR_UNEVALUABLE, m, 4);
    }
}
