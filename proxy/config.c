/* proxy/config.c - the configuration: embedded default, loading, validation, version hash.
 *
 * A config is one JSON document. Every key is optional: what is absent comes from the
 * embedded default. Validation collects every error, one line each, naming its JSON path,
 * so an operator fixes a file in one pass. Unknown keys are errors too (a typo must not
 * silently fall back to a default). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "proxy/auth.h"
#include "proxy/errs.h"
#include "proxy/policy.h"
#include "proxy/proxy.h"
#include "proxy/tls.h"
#include "proxy/admin.h"
#include "proxy/proxy-int.h"

static const char default_config[] =
    "{\n"
    "  \"listen\": [\"127.0.0.1:3128\"],\n"
    "  \"workers\": 0,\n"
    "  \"data_dir\": \"./vigil-data\",\n"
    "  \"timeouts\": {\n"
    "    \"header_read_ms\": 10000,\n"
    "    \"connect_ms\": 10000,\n"
    "    \"upstream_response_ms\": 60000,\n"
    "    \"idle_tunnel_ms\": 300000,\n"
    "    \"client_idle_ms\": 60000,\n"
    "    \"client_hello_ms\": 3000,\n"
    "    \"drain_ms\": 10000\n"
    "  },\n"
    "  \"limits\": {\n"
    "    \"max_header_bytes\": 65536,\n"
    "    \"max_headers\": 200\n"
    "  },\n"
    "  \"dns\": {\n"
    "    \"timeout_ms\": 5000,\n"
    "    \"attempts\": 2\n"
    "  },\n"
    "  \"audit\": {\n"
    "    \"ring_slots\": 16384,\n"
    "    \"overflow\": \"fail_closed\"\n"
    "  },\n"
    "  \"redaction\": {\"enabled\": true, \"keep_originals\": []},\n"
    "  \"rule_groups\": [],\n"
    "  \"proxy_configurations\": [\n"
    "    {\"name\": \"default\", \"rule_groups\": [], \"default_action\": \"allow\",\n"
    "     \"ssrf_guard\": true, \"connect_ports\": [443]}\n"
    "  ],\n"
    "  \"sinks\": [\n"
    "    {\"type\": \"file\", \"name\": \"file\", \"format\": \"native\", \"on_full\": \"block\", \"required\": true,\n"
    "     \"rotate_bytes\": 67108864, \"rotate_seconds\": 3600, \"retain_days\": 0, \"retain_bytes\": 0,\n"
    "     \"fsync\": \"segment\", \"frame_records\": 1024, \"frame_ms\": 1000, \"compression_level\": 3}\n"
    "  ]\n"
    "}\n";

const char *proxy_config_default_text(void)
{
    return default_config;
}

static void check_keys(struct errs *e, const json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, key) == 0)
                ok = 1;
        if (!ok)
            proxy_add_err(e, "%s%s%s: unknown key", path, *path ? "." : "", key);
    }
}

/* Reads an integer in [lo, hi] at <obj>.<key> into *<out>; absent leaves *<out>. */
static void get_uint(struct errs *e, const json_t *obj, const char *path, const char *key, unsigned long long lo,
                     unsigned long long hi, unsigned long long *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (unsigned long long)json_integer_value(v) < lo ||
        (unsigned long long)json_integer_value(v) > hi) {
        proxy_add_err(e, "%s%s%s: must be an integer from %llu to %llu", path, *path ? "." : "", key, lo, hi);
        return;
    }
    *out = (unsigned long long)json_integer_value(v);
}

static void get_ms(struct errs *e, const json_t *obj, const char *path, const char *key, unsigned *out)
{
    unsigned long long v = *out;
    get_uint(e, obj, path, key, 1, 86400000ULL, &v);
    *out = (unsigned)v;
}

static const json_t *get_object(struct errs *e, const json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    if (v && !json_is_object(v)) {
        proxy_add_err(e, "%s: must be an object", key);
        return NULL;
    }
    return v;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* A list of header names into *<out> (replacing what was there). */
static void get_names(struct errs *e, const json_t *v, const char *path, char ***out, size_t *n)
{
    size_t i;
    json_t *a;
    if (!v)
        return;
    if (!json_is_array(v)) {
        proxy_add_err(e, "%s: must be a list of header names", path);
        return;
    }
    free_names(*out, *n);
    *out = calloc(json_array_size(v) + 1, sizeof(**out));
    *n = 0;
    json_array_foreach(v, i, a)
    {
        const char *s = json_string_value(a);
        if (!s || !*s || strpbrk(s, " \t:\r\n")) {
            proxy_add_err(e, "%s[%zu]: must be a header name", path, i);
            continue;
        }
        if (*out && ((*out)[*n] = strdup(s)) != NULL)
            (*n)++;
    }
}

static void free_listen(struct proxy_config *c)
{
    for (size_t i = 0; i < c->nlisten; i++)
        free(c->listen[i]);
    free(c->listen);
    c->listen = NULL;
    c->nlisten = 0;
}

static int add_listen(struct proxy_config *c, const char *addr)
{
    char **n = realloc(c->listen, (c->nlisten + 1) * sizeof(*n));
    if (!n)
        return -1;
    c->listen = n;
    if (!(c->listen[c->nlisten] = strdup(addr)))
        return -1;
    c->nlisten++;
    return 0;
}

/* Applies the keys of <root> over the values already in <c>. */
static void apply(struct proxy_config *c, const json_t *root, struct errs *e)
{
    static const char *const top_keys[] = {"listen", "workers", "data_dir", "timeouts", "limits", "dns", "audit",
                                           "sinks", "rule_groups", "proxy_configurations", "default_action", "auth",
                                           "tls", "admin", "user", "redaction", "roles", NULL};
    unsigned long long u;

    check_keys(e, root, "", top_keys);

    json_t *listen = json_object_get(root, "listen");
    if (listen) {
        if (!json_is_array(listen) || json_array_size(listen) == 0) {
            proxy_add_err(e, "listen: must be a non-empty array of \"HOST:PORT\" strings");
        } else {
            free_listen(c);
            size_t i;
            json_t *a;
            json_array_foreach(listen, i, a)
            {
                struct sockaddr_storage ss;
                socklen_t sl;
                if (!json_is_string(a) || proxy_parse_hostport(json_string_value(a), &ss, &sl) == -1)
                    proxy_add_err(e, "listen[%zu]: must be \"IP:PORT\" or \"[IPv6]:PORT\"", i);
                else if (add_listen(c, json_string_value(a)) == -1)
                    proxy_add_err(e, "listen[%zu]: out of memory", i);
            }
        }
    }

    u = c->workers;
    get_uint(e, root, "", "workers", 0, 256, &u);
    c->workers = (unsigned)u;

    json_t *dd = json_object_get(root, "data_dir");
    if (dd) {
        if (!json_is_string(dd) || json_string_length(dd) == 0) {
            proxy_add_err(e, "data_dir: must be a non-empty string");
        } else {
            free(c->data_dir);
            c->data_dir = strdup(json_string_value(dd));
        }
    }

    const json_t *t = get_object(e, root, "timeouts");
    if (t) {
        static const char *const keys[] = {"header_read_ms", "connect_ms", "upstream_response_ms", "idle_tunnel_ms",
                                           "client_idle_ms", "client_hello_ms", "drain_ms", NULL};
        check_keys(e, t, "timeouts", keys);
        get_ms(e, t, "timeouts", "header_read_ms", &c->timeouts.header_read_ms);
        get_ms(e, t, "timeouts", "connect_ms", &c->timeouts.connect_ms);
        get_ms(e, t, "timeouts", "upstream_response_ms", &c->timeouts.upstream_response_ms);
        get_ms(e, t, "timeouts", "idle_tunnel_ms", &c->timeouts.idle_tunnel_ms);
        get_ms(e, t, "timeouts", "client_idle_ms", &c->timeouts.client_idle_ms);
        get_ms(e, t, "timeouts", "client_hello_ms", &c->timeouts.client_hello_ms);
        get_ms(e, t, "timeouts", "drain_ms", &c->timeouts.drain_ms);
    }

    const json_t *l = get_object(e, root, "limits");
    if (l) {
        static const char *const keys[] = {"max_header_bytes", "max_headers", NULL};
        check_keys(e, l, "limits", keys);
        u = c->max_header_bytes;
        get_uint(e, l, "limits", "max_header_bytes", 1024, 1024 * 1024, &u);
        c->max_header_bytes = (size_t)u;
        u = c->max_headers;
        get_uint(e, l, "limits", "max_headers", 8, PROXY_MAX_HEADERS, &u);
        c->max_headers = (unsigned)u;
    }

    const json_t *d = get_object(e, root, "dns");
    if (d) {
        static const char *const keys[] = {"timeout_ms", "attempts", NULL};
        check_keys(e, d, "dns", keys);
        get_ms(e, d, "dns", "timeout_ms", &c->dns_timeout_ms);
        u = c->dns_attempts;
        get_uint(e, d, "dns", "attempts", 1, 10, &u);
        c->dns_attempts = (unsigned)u;
    }

    const json_t *a = get_object(e, root, "audit");
    if (a) {
        static const char *const keys[] = {"ring_slots", "overflow", "headers", NULL};
        check_keys(e, a, "audit", keys);
        json_t *h = json_object_get(a, "headers");
        if (h) {
            static const char *const hkeys[] = {"include", "exclude", NULL};
            if (!json_is_object(h)) {
                proxy_add_err(e, "audit.headers: must be {\"include\": [...], \"exclude\": [...]}");
            } else {
                check_keys(e, h, "audit.headers", hkeys);
                get_names(e, json_object_get(h, "include"), "audit.headers.include", &c->header_include,
                          &c->header_include_n);
                get_names(e, json_object_get(h, "exclude"), "audit.headers.exclude", &c->header_exclude,
                          &c->header_exclude_n);
            }
        }
        u = c->ring_slots;
        get_uint(e, a, "audit", "ring_slots", 64, 1u << 22, &u);
        c->ring_slots = (size_t)u;
        json_t *o = json_object_get(a, "overflow");
        if (o && (!json_is_string(o) || audit_overflow_parse(json_string_value(o), &c->overflow) == -1))
            proxy_add_err(e, "audit.overflow: must be \"fail_closed\", \"block\" or \"drop\"");
    }

    json_t *s = json_object_get(root, "sinks");
    if (s) {
        if (!json_is_array(s)) {
            proxy_add_err(e, "sinks: must be an array of sink objects");
        } else {
            size_t i;
            json_t *so;
            json_array_foreach(s, i, so)
            {
                if (!json_is_object(so) || !json_is_string(json_object_get(so, "type")))
                    proxy_add_err(e, "sinks[%zu]: must be an object with a string \"type\"", i);
            }
            json_decref(c->sinks);
            c->sinks = json_incref(s);
        }
    }
}

/* "admin": {"listen": "127.0.0.1:9090", "allow_remote": false} and "user": "NAME" */
static void apply_admin_user(struct proxy_config *c, const json_t *root, struct errs *e)
{
    static const char *const keys[] = {"listen", "allow_remote", NULL};
    const json_t *a = get_object(e, root, "admin");
    json_t *u = json_object_get(root, "user");
    char why[512];
    if (a) {
        check_keys(e, a, "admin", keys);
        json_t *l = json_object_get(a, "listen"), *r = json_object_get(a, "allow_remote");
        if (r && !json_is_boolean(r))
            proxy_add_err(e, "admin.allow_remote: must be true or false");
        c->admin_allow_remote = r && json_is_true(r);
        if (!json_is_string(l))
            proxy_add_err(e, "admin.listen: must be \"IP:PORT\" or \"[IPv6]:PORT\"");
        else if (proxy_admin_check_listen(json_string_value(l), c->admin_allow_remote, why, sizeof(why)) == -1)
            proxy_add_err(e, "admin.listen: %s", why);
        else if (!(c->admin_listen = strdup(json_string_value(l))))
            proxy_add_err(e, "admin.listen: out of memory");
    }
    if (u && (!json_is_string(u) || json_string_length(u) == 0 || strchr(json_string_value(u), ':')))
        proxy_add_err(e, "user: must be a user name");
    else if (u && !(c->user = strdup(json_string_value(u))))
        proxy_add_err(e, "user: out of memory");
}

/* "auth": {"password_file": FILE, "realm": "vigil", "required": true} */
static void apply_auth(struct proxy_config *c, const json_t *root, struct errs *e)
{
    json_t *a = json_object_get(root, "auth");
    const char *key;
    json_t *v;
    char why[512];
    if (!a)
        return;
    if (!json_is_object(a)) {
        proxy_add_err(e, "auth: must be an object");
        return;
    }
    json_object_foreach(a, key, v)
    {
        if (strcmp(key, "password_file") != 0 && strcmp(key, "realm") != 0 && strcmp(key, "required") != 0)
            proxy_add_err(e, "auth.%s: unknown key", key);
    }
    const char *file = json_string_value(json_object_get(a, "password_file"));
    json_t *realm = json_object_get(a, "realm"), *req = json_object_get(a, "required");
    if (realm && !json_is_string(realm))
        proxy_add_err(e, "auth.realm: must be a string");
    if (req && !json_is_boolean(req))
        proxy_add_err(e, "auth.required: must be true or false");
    if (!file) {
        proxy_add_err(e, "auth.password_file: must be the path of a password file (vigil --hash-password USER)");
        return;
    }
    c->auth = proxy_auth_load(file, json_string_value(realm), why, sizeof(why));
    if (!c->auth)
        proxy_add_err(e, "auth.password_file: %s", why);
    c->auth_required = req ? json_is_true(req) : 1;
}

static void compute_version(struct proxy_config *c)
{
    char *canon = json_dumps(c->root, JSON_COMPACT | JSON_SORT_KEYS);
    unsigned char h[16];
    crypto_generichash(h, sizeof(h), (const unsigned char *)(canon ? canon : ""), canon ? strlen(canon) : 0, NULL, 0);
    free(canon);
    sodium_bin2hex(c->version, sizeof(c->version), h, sizeof(h));
}

static struct proxy_config *parse_doc(json_t *root, char *err, size_t errlen)
{
    struct errs e = {.buf = err, .cap = errlen};
    struct proxy_config *c = calloc(1, sizeof(*c));
    json_t *def = NULL;
    if (c)
        atomic_init(&c->refs, 1);
    json_error_t je;

    if (errlen)
        err[0] = '\0';
    if (!c) {
        proxy_add_err(&e, "out of memory");
        json_decref(root);
        return NULL;
    }
    if (!json_is_object(root)) {
        proxy_add_err(&e, "(root): must be an object");
        goto fail;
    }
    /* defaults first, from the embedded document, then the user's keys over them */
    def = json_loads(default_config, 0, &je);
    if (!def) {
        proxy_add_err(&e, "embedded default config: %s", je.text);
        goto fail;
    }
    apply(c, def, &e);
    json_decref(def);
    def = NULL;
    if (e.count)
        goto fail;
    apply(c, root, &e);
    apply_auth(c, root, &e);
    /* "roles" (the roles file's path, or null) is "redaction.roles_file" said at the top level:
     * folded into the "redaction" object, which the stage reads */
    json_t *roles = json_object_get(root, "roles");
    if (roles && !json_is_string(roles) && !json_is_null(roles))
        proxy_add_err(&e, "roles: must be the path of a roles file, or null");
    else if (roles) {
        json_t *r = json_object_get(root, "redaction");
        if (r && !json_is_object(r))
            ; /* audit_redaction_check names it */
        else if (r && json_object_get(r, "roles_file"))
            proxy_add_err(&e, "roles: also given as redaction.roles_file; keep one");
        else if (!r && json_object_set_new(root, "redaction", r = json_object()) == -1)
            proxy_add_err(&e, "out of memory");
        else if (json_object_set(r, "roles_file", roles) == -1)
            proxy_add_err(&e, "out of memory");
    }
    /* "redaction" belongs to the pipeline's stage (audit/redaction.c): checked here, read by main */
    json_t *red = json_object_get(root, "redaction");
    if (red) {
        char why[2048];
        if (audit_redaction_check(red, why, sizeof(why)) == -1)
            proxy_add_err(&e, "%s", why);
    }
    apply_admin_user(c, root, &e);
    json_t *tls = json_object_get(root, "tls");
    if (tls) {
        char why[1024];
        c->tls = proxy_tls_new(tls, why, sizeof(why));
        if (!c->tls)
            proxy_add_err(&e, "%s", why);
    }
    if (!c->data_dir)
        proxy_add_err(&e, "out of memory");
    c->root = root;
    compute_version(c);
    /* the policy reports its own errors, with their paths, after the others */
    size_t sep = e.len > 0 && e.len + 1 < e.cap ? 1 : 0;
    if (e.len + sep < e.cap) {
        c->policy = proxy_policy_compile(root, c->version, e.buf + e.len + sep, e.cap - e.len - sep);
        if (!c->policy) {
            e.count++;
            if (sep)
                e.buf[e.len] = '\n';
            e.len += sep + strlen(e.buf + e.len + sep);
        } else if (sep) {
            e.buf[e.len] = '\0';
        }
    }
    char ipath[96];
    if (c->policy && !c->tls && proxy_policy_intercept_path(c->policy, ipath, sizeof(ipath)))
        proxy_add_err(&e, "%s: interception needs \"tls\": {\"ca_cert\", \"ca_key\"}", ipath);
    if (e.count)
        goto fail_owned;
    return c;
fail_owned:
    proxy_config_free(c);
    return NULL;
fail:
    json_decref(root);
    proxy_config_free(c);
    return NULL;
}

struct proxy_config *proxy_config_parse(const char *text, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errlen, "(json) line %d column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    return parse_doc(root, err, errlen);
}

struct proxy_config *proxy_config_load(const char *path, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errlen, "%s: line %d column %d: %s", path, je.line, je.column, je.text);
        return NULL;
    }
    struct proxy_config *c = parse_doc(root, err, errlen);
    if (c && !(c->path = strdup(path))) {
        proxy_config_free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return c;
}

void proxy_config_ref(struct proxy_config *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void proxy_config_unref(struct proxy_config *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    free_listen(c);
    free_names(c->header_include, c->header_include_n);
    free_names(c->header_exclude, c->header_exclude_n);
    free(c->data_dir);
    free(c->path);
    proxy_policy_unref(c->policy);
    proxy_auth_free(c->auth);
    proxy_tls_free(c->tls);
    free(c->admin_listen);
    free(c->user);
    json_decref(c->sinks);
    json_decref(c->root);
    free(c);
}

void proxy_config_free(struct proxy_config *c)
{
    proxy_config_unref(c);
}

int proxy_config_override_listen(struct proxy_config *c, const char *addr, int first, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (proxy_parse_hostport(addr, &ss, &sl) == -1) {
        snprintf(err, errlen, "--listen %s: must be IP:PORT or [IPv6]:PORT", addr);
        return -1;
    }
    if (first)
        free_listen(c);
    if (add_listen(c, addr) == -1) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int proxy_config_override_data_dir(struct proxy_config *c, const char *dir)
{
    char *d = strdup(dir);
    if (!d)
        return -1;
    free(c->data_dir);
    c->data_dir = d;
    return 0;
}

int proxy_emit_config_event(struct audit_ring *ring, const char *version, const char *reason)
{
    struct audit_event ev;
    audit_event_init(&ev, AUDIT_EVENT_PROXY_CONFIG);
    if (version)
        audit_event_set_str(&ev, AUDIT_STR_CONFIG_VERSION, version, strlen(version));
    audit_event_set_str(&ev, AUDIT_STR_REASON, reason, strlen(reason));
    return audit_emit(ring, &ev);
}
