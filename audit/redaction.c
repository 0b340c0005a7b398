/* audit/redaction.c - the pipeline's redaction stage: no event leaves the pipeline with a
 * credential or PII value in a string field; originals of kept classes travel sealed.
 *
 * The pipeline thread hands every event it serializes (audit.loss and audit.key excepted: the
 * pipeline writes those itself) to this stage, which builds a redacted copy:
 *
 *   event ──► fields[] (host, path, query, each header value, principal, reason, ...)
 *         ──► ONE redact_fields() call (one Vectorscan pass over all of them)
 *         ──► out event: text area packed anew, field by field, the redacted value;
 *             "redactions": field \t class \t token per replaced span;
 *             "sealed":     field \t class \t key_id \t box per kept original
 *
 * Which fields pass (every string that can carry user data) and which are copied as they
 * are (strings the proxy makes itself from its config or its own state) is the table
 * <redacted> below; header names are copied (they are the field paths of "redactions").
 *
 * Sealed originals. A class is sealed when config keep_originals covers it AND some
 * provisioned role (public_key set in the roles file) may reveal it. The set of roles that
 * may reveal a class is its audience; each audience has its own data key per key epoch, sealed
 * (crypto_box_seal) to exactly its roles in an audit.key record, so a role can open the
 * originals of the classes it may reveal and no others (one key for every class would hand
 * the privacy officer the credentials sealed for incident response). Each value is sealed
 * with redact_seal() under its audience's key, associated data = the record's seq and the
 * field's JSON path, so a box cannot be moved to another record or field.
 *
 * Key epochs. An epoch begins at the first record after start-up, and again after
 * key_rotate_records records or key_rotate_seconds seconds: every data key of the old epoch
 * is wiped from memory, new ones are made for the audiences of the classes the detectors and
 * field rules are known to produce, and an audit.key record for each is written before any
 * record that uses it. An audience first met later in an epoch (a class of a custom header
 * rule) gets its key then, again announced before its first use. DESIGN.md speaks of one key
 * per segment: the record stream is what every sink carries, so keys follow the stream (an
 * audit.key record per key and epoch) and a reader finds a key by its key_id, whichever
 * segment, topic or syslog feed it reads.
 *
 * Threads: everything here runs on the pipeline thread, except the counters, which any thread
 * may read (atomics; class names are published before their count becomes visible). */
#include "audit/audit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <sodium.h>

#include "audit/audit-int.h"
#include "audit/diag.h"
#include "redact/redact.h"

#define RED_ROTATE_RECORDS 100000
#define RED_ROTATE_SECONDS 3600
#define RED_ROLES_DEFAULT "compliance/roles.json"
#define RED_MAX_ROLES 64     /* provisioned roles: an audience is a 64-bit mask of them */
#define RED_MAX_AUDIENCES 64 /* distinct audiences per epoch */
#define RED_MAX_CLASSES 128  /* classes counted by name; more are counted as "other" */
#define RED_BOX_VARIANT sodium_base64_VARIANT_ORIGINAL /* as the roles file's public keys */

/* Classes the built-in field rules produce (redact/redact.h), besides the detectors' own:
 * their audiences get keys at the start of each epoch. Others are met lazily. */
static const char *const rule_classes[] = {
    "credential.bearer", "credential.basic", "credential.authorization", "credential.cookie",
    "credential.api_key", "credential.userinfo", "credential.query", "credential.password",
    REDACT_CLASS_UNSCANNABLE,
};

/* The string fields that can carry user data, how each is redacted, and its JSON path. Every
 * other string field is the proxy's own (rule ids and groups, config version, listener, scheme,
 * alerts and dry-run lists from the config, DNS answers and TLS version, cipher, leaf serial
 * and verify error from the resolver and OpenSSL, the parent flow id) and is copied as it is;
 * the stage's own outputs (redactions, sealed, key_id, sealed_for) are never taken from input.
 * Headers are separate: each value is a field of its own (REDACT_FIELD_HEADER with its name). */
static const struct {
    enum audit_str f;
    enum redact_field_kind kind;
    const char *path;
    const char *hname; /* REDACT_FIELD_HEADER: the header it came from */
} redacted[] = {
    {AUDIT_STR_METHOD, REDACT_FIELD_STRING, "request.method", NULL},
    {AUDIT_STR_HOST, REDACT_FIELD_STRING, "request.host", NULL},
    {AUDIT_STR_PATH, REDACT_FIELD_URL, "request.path", NULL},
    {AUDIT_STR_QUERY, REDACT_FIELD_QUERY, "request.query", NULL},
    {AUDIT_STR_CONTENT_TYPE, REDACT_FIELD_HEADER, "response.content_type", "content-type"},
    {AUDIT_STR_PRINCIPAL, REDACT_FIELD_STRING, "principal", NULL},
    {AUDIT_STR_REASON, REDACT_FIELD_STRING, "reason", NULL},
    {AUDIT_STR_TLS_SNI, REDACT_FIELD_STRING, "tls.sni", NULL},
    {AUDIT_STR_TLS_ALPN, REDACT_FIELD_STRING, "tls.alpn_offered", NULL},
    {AUDIT_STR_TLS_CERT, REDACT_FIELD_STRING, "tls.upstream_certificate", NULL},
};
#define NREDACTED (sizeof(redacted) / sizeof(redacted[0]))

/* Copied as they are. */
static const enum audit_str copied[] = {
    AUDIT_STR_RULE_GROUP,  AUDIT_STR_RULE_ID,     AUDIT_STR_CONFIG_VERSION, AUDIT_STR_SCHEME,
    AUDIT_STR_LISTENER,    AUDIT_STR_ALERTS,      AUDIT_STR_DRY_RUN,        AUDIT_STR_UNEVALUABLE,
    AUDIT_STR_DNS_ANSWERS, AUDIT_STR_TLS_HELLO,   AUDIT_STR_TLS_VERSION,    AUDIT_STR_TLS_CIPHER,
    AUDIT_STR_TLS_LEAF_SERIAL, AUDIT_STR_TLS_VERIFY_ERROR, AUDIT_STR_PARENT_FLOW,
};

/* Where a field of the redact_fields() call came from. */
struct fmeta {
    enum audit_str f;   /* source field */
    const char *prefix; /* JSON path, or its prefix for a header ("request.headers.") */
    const char *name;   /* header name (in the input event), or NULL */
    size_t name_len;
};

/* A class seen so far: its metrics slot and its audience. */
struct cls {
    const char *ptr; /* as the library returned it (stable while the struct redact lives) */
    int aud;         /* audience index in the current epoch, -1: not sealed, -2: not yet known */
    uint64_t mask;   /* roles that may reveal it; 0: not sealed */
};

enum aud_state { AUD_NONE = 0, AUD_PENDING, AUD_LIVE };

struct audience {
    uint64_t mask;
    enum aud_state state;
    struct redact_data_key key;
    char key_id[24];
    const char *reason;
};

/* What redaction made of one field: the library's result, or the value itself when the clean
 * cache knew it holds nothing to redact. */
struct fview {
    const char *out;
    size_t len;
    const struct redact_match *matches;
    size_t nmatches;
    unsigned flags;
};

/* The clean cache: values seen to hold nothing to redact, by field kind and header name. The
 * fields of a flow's events repeat (host, path, query, most headers), so most fields of most
 * events are found here and skip the scan. A hit compares the whole value byte for byte: a
 * hash collision can only cause a miss, never let a value through unscanned. */
#define CLEAN_SLOTS 8192 /* power of two */
#define CLEAN_NAME_MAX 48
#define CLEAN_VALUE_MAX 200

struct clean_ent {
    uint64_t h; /* 0: empty */
    uint8_t kind;
    uint8_t name_len;
    uint16_t len;
    char data[CLEAN_NAME_MAX + CLEAN_VALUE_MAX]; /* name, then value */
};

/* An original to seal, found by prepare(). */
struct cand {
    size_t field; /* index into fields */
    size_t match; /* index into res[field].matches */
    int aud;
};

struct audit_redactor {
    struct redact_keyring *kr;
    struct redact *rd;       /* compiled by audit_redactor_compile() */
    char *o_custom;          /* detector options, owned copies, for the compile */
    char **o_lists[4];       /* enable, disable, api_key_headers, query_params: NULL-terminated */
    size_t o_max_field;
    struct redact_roles *roles;
    const struct redact_role *prov[RED_MAX_ROLES]; /* provisioned roles, bit i of a mask */
    size_t nprov;
    char **keep; /* keep_originals patterns */
    size_t nkeep;
    int sealing; /* some kept class may be revealed by some provisioned role */
    uint64_t rotate_records;
    int64_t rotate_us;

    /* work area, reused across events */
    struct redact_field *fields;
    struct fmeta *meta;
    struct redact_result *res;  /* results of the scanned (missed) fields, in miss order */
    struct fview *view;         /* per field: its result, scanned or clean */
    struct redact_field *mfields; /* the fields the clean cache did not know */
    size_t *miss;               /* their indices into fields */
    size_t nfields, cap;
    struct clean_ent *clean;    /* CLEAN_SLOTS entries */
    uint64_t clean_hits, clean_misses;
    struct cand *cands;
    size_t ncands, capcands;
    struct audit_buf red;   /* "redactions" being built */
    struct audit_buf sealed;/* "sealed" being built */
    struct audit_buf path;  /* a field's JSON path, NUL-terminated */
    struct audit_buf hdr;   /* a packed header field being built */
    uint8_t *box;
    size_t boxcap;
    char *b64;
    size_t b64cap;

    /* classes and epochs */
    struct cls classes[RED_MAX_CLASSES];
    struct audience aud[RED_MAX_AUDIENCES];
    size_t naud;
    int epoch;              /* an epoch is running */
    uint64_t epoch_records;
    int64_t epoch_start_us; /* monotonic */
    const char *epoch_reason;
    int last_key;           /* audience of the last audit.key handed out, for key_failed() */

    /* metrics: any thread reads */
    char names[RED_MAX_CLASSES][REDACT_CLASS_MAX + 1];
    _Atomic size_t nclasses;
    _Atomic uint64_t counts[RED_MAX_CLASSES + 1]; /* [RED_MAX_CLASSES]: "other" */
    _Atomic uint64_t events, redactions, unscannable, sealed_n, seal_dropped, keys, failures;
};

/* ---- config ---- */

/* Collects error lines ("redaction.x: why") into the caller's buffer. */
struct errs {
    char *buf;
    size_t len, cap;
    int count;
};

__attribute__((format(printf, 2, 3))) static void add_err(struct errs *e, const char *fmt, ...)
{
    va_list ap;
    int n;

    e->count++;
    if (e->cap == 0 || e->len + 1 >= e->cap)
        return;
    if (e->len > 0)
        e->buf[e->len++] = '\n';
    va_start(ap, fmt);
    n = vsnprintf(e->buf + e->len, e->cap - e->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        e->len += (size_t)n < e->cap - e->len ? (size_t)n : e->cap - e->len - 1;
    e->buf[e->len] = '\0';
}

/* The "redaction" object, parsed; strings borrowed from the JSON. */
struct conf {
    int enabled;
    const char *custom;
    const char *keys_dir;
    const char *roles_file;
    int roles_explicit; /* set in the config (an absent default file is not an error) */
    const char **keep, **query_params, **api_key_headers, **enable, **disable; /* NULL-terminated */
    size_t max_field;
    uint64_t rotate_records, rotate_seconds;
};

static void conf_fini(struct conf *c)
{
    free(c->keep);
    free(c->query_params);
    free(c->api_key_headers);
    free(c->enable);
    free(c->disable);
    memset(c, 0, sizeof(*c));
}

/* A class pattern as roles and keep_originals use it: a class, "prefix.*" or "*". */
static int pattern_valid(const char *p)
{
    size_t n = strlen(p);
    char tmp[REDACT_CLASS_MAX + 1];

    if (strcmp(p, "*") == 0)
        return 1;
    if (n > 2 && p[n - 1] == '*' && p[n - 2] == '.') {
        if (n - 2 > REDACT_CLASS_MAX)
            return 0;
        memcpy(tmp, p, n - 2);
        tmp[n - 2] = '\0';
        return redact_class_valid(tmp) == 0;
    }
    return redact_class_valid(p) == 0;
}

/* A NULL-terminated array of the strings of <key> (an array of non-empty strings). */
static const char **str_list(struct errs *e, const json_t *o, const char *key, int patterns)
{
    json_t *a = json_object_get(o, key), *v;
    const char **l;
    size_t i;

    if (a == NULL)
        return NULL;
    if (!json_is_array(a)) {
        add_err(e, "redaction.%s: must be an array of strings", key);
        return NULL;
    }
    l = calloc(json_array_size(a) + 1, sizeof(*l));
    if (l == NULL) {
        add_err(e, "redaction.%s: out of memory", key);
        return NULL;
    }
    json_array_foreach(a, i, v)
    {
        const char *s = json_string_value(v);

        if (s == NULL || *s == '\0' || strpbrk(s, "\t\n") != NULL)
            add_err(e, "redaction.%s[%zu]: must be a non-empty string", key, i);
        else if (patterns && !pattern_valid(s))
            add_err(e, "redaction.%s[%zu]: not a class pattern (\"pii.email\", \"pii.*\" or \"*\")", key, i);
        l[i] = s;
    }
    return l;
}

static void get_u64(struct errs *e, const json_t *o, const char *key, uint64_t lo, uint64_t hi, uint64_t *out)
{
    json_t *v = json_object_get(o, key);

    if (v == NULL)
        return;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < lo ||
        (uint64_t)json_integer_value(v) > hi) {
        add_err(e, "redaction.%s: must be an integer from %llu to %llu", key, (unsigned long long)lo,
                (unsigned long long)hi);
        return;
    }
    *out = (uint64_t)json_integer_value(v);
}

static const char *get_str(struct errs *e, const json_t *o, const char *key, int nullable, int *present)
{
    json_t *v = json_object_get(o, key);

    if (present != NULL)
        *present = v != NULL;
    if (v == NULL || (nullable && json_is_null(v)))
        return NULL;
    if (!json_is_string(v) || json_string_length(v) == 0) {
        add_err(e, "redaction.%s: must be a non-empty string%s", key, nullable ? " or null" : "");
        return NULL;
    }
    return json_string_value(v);
}

/* Parses <o> (NULL: all defaults) into <c>; errors into <e>. */
static void conf_parse(const json_t *o, struct conf *c, struct errs *e)
{
    static const char *const keys[] = {"enabled", "detectors", "keys_dir", "roles_file", "keep_originals",
                                       "query_params", "api_key_headers", "enable", "disable", "max_field_bytes",
                                       "key_rotate_records", "key_rotate_seconds", NULL};
    const char *key;
    json_t *v;
    uint64_t u;

    memset(c, 0, sizeof(*c));
    c->enabled = 1;
    c->roles_file = RED_ROLES_DEFAULT;
    c->rotate_records = RED_ROTATE_RECORDS;
    c->rotate_seconds = RED_ROTATE_SECONDS;
    if (o == NULL)
        return;
    if (!json_is_object(o)) {
        add_err(e, "redaction: must be an object");
        return;
    }
    json_object_foreach((json_t *)o, key, v)
    {
        int ok = 0;

        for (const char *const *k = keys; *k != NULL; k++)
            ok |= strcmp(*k, key) == 0;
        if (!ok)
            add_err(e, "redaction.%s: unknown key", key);
    }
    v = json_object_get(o, "enabled");
    if (v != NULL && !json_is_boolean(v))
        add_err(e, "redaction.enabled: must be true or false");
    else if (v != NULL)
        c->enabled = json_is_true(v);
    c->custom = get_str(e, o, "detectors", 1, NULL);
    c->keys_dir = get_str(e, o, "keys_dir", 0, NULL);
    {
        int present;
        const char *r = get_str(e, o, "roles_file", 1, &present);

        if (present) {
            c->roles_file = r;
            c->roles_explicit = 1;
        }
    }
    c->keep = str_list(e, o, "keep_originals", 1);
    c->query_params = str_list(e, o, "query_params", 0);
    c->api_key_headers = str_list(e, o, "api_key_headers", 0);
    c->enable = str_list(e, o, "enable", 0);
    c->disable = str_list(e, o, "disable", 0);
    u = 0;
    get_u64(e, o, "max_field_bytes", 256, 1024 * 1024, &u);
    c->max_field = (size_t)u;
    get_u64(e, o, "key_rotate_records", 1000, 1000000000ULL, &c->rotate_records);
    get_u64(e, o, "key_rotate_seconds", 1, 30 * 86400, &c->rotate_seconds);
}

static void opts_of(const struct conf *c, struct redact_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->custom_path = c->custom;
    o->max_field_bytes = c->max_field;
    o->enable = c->enable;
    o->disable = c->disable;
    o->api_key_headers = c->api_key_headers;
    o->query_params = c->query_params;
}

/* Loads the roles file of <c>: NULL with no error when none is configured or the default file
 * is absent. Checks what the stage relies on: role names usable in a packed list, at most
 * RED_MAX_ROLES provisioned roles. */
static struct redact_roles *roles_of(const struct conf *c, struct errs *e)
{
    struct redact_roles *r;
    char why[512];
    size_t nprov = 0;
    struct stat st;

    if (c->roles_file == NULL)
        return NULL;
    if (!c->roles_explicit && stat(c->roles_file, &st) == -1 && errno == ENOENT)
        return NULL;
    r = redact_roles_load(c->roles_file, why, sizeof(why));
    if (r == NULL) {
        add_err(e, "redaction.roles_file: %s", why);
        return NULL;
    }
    for (size_t i = 0; i < redact_roles_count(r); i++) {
        const struct redact_role *role = redact_roles_at(r, i);

        if (strpbrk(role->name, "\t\n") != NULL || *role->name == '\0')
            add_err(e, "redaction.roles_file: %s: roles[%zu].name: must not be empty or hold a tab or line break",
                    c->roles_file, i);
        nprov += role->has_key != 0;
    }
    if (nprov > RED_MAX_ROLES)
        add_err(e, "redaction.roles_file: %s: at most %d roles may have a public key", c->roles_file, RED_MAX_ROLES);
    if (e->count > 0) {
        redact_roles_free(r);
        return NULL;
    }
    return r;
}

int audit_redaction_check(const struct json_t *conf, char *err, size_t errlen)
{
    struct errs e = {.buf = err, .cap = errlen};
    struct conf c;
    struct redact_opts o;
    char why[1024];

    if (errlen > 0)
        err[0] = '\0';
    conf_parse(conf, &c, &e);
    if (e.count == 0 && c.enabled) {
        /* Compiling takes about a second: only when the config changes what is compiled (the
         * embedded default always compiles; its tests say so). */
        opts_of(&c, &o);
        if ((c.custom != NULL || c.enable != NULL || c.disable != NULL || c.query_params != NULL ||
             c.api_key_headers != NULL) &&
            redact_check(&o, why, sizeof(why)) == -1)
            add_err(&e, "redaction.detectors: %s", why);
        redact_roles_free(roles_of(&c, &e));
    }
    conf_fini(&c);
    return e.count > 0 ? -1 : 0;
}

/* ---- the stage ---- */

static int kept(const struct audit_redactor *r, const char *cls)
{
    for (size_t i = 0; i < r->nkeep; i++)
        if (redact_class_match(r->keep[i], cls))
            return 1;
    return 0;
}

/* Roles (bits) that may reveal <cls> if it is kept; 0 when it is not sealed. */
static uint64_t audience_of(const struct audit_redactor *r, const char *cls)
{
    uint64_t m = 0;

    if (!r->sealing || !kept(r, cls))
        return 0;
    for (size_t i = 0; i < r->nprov; i++)
        if (redact_role_may_reveal(r->prov[i], cls))
            m |= 1ULL << i;
    return m;
}

/* The audience of <mask> in this epoch, its key made (and its audit.key pending) if new.
 * -1 when the table is full. */
static int audience_get(struct audit_redactor *r, uint64_t mask, const char *reason)
{
    uint8_t rnd[8];
    char hex[17];
    size_t i;

    for (i = 0; i < r->naud; i++)
        if (r->aud[i].mask == mask && r->aud[i].state != AUD_NONE)
            return (int)i;
    for (i = 0; i < r->naud; i++)
        if (r->aud[i].state == AUD_NONE)
            break;
    if (i == r->naud) {
        if (r->naud == RED_MAX_AUDIENCES)
            return -1;
        r->naud++;
    }
    if (redact_data_key_new(&r->aud[i].key) == -1)
        return -1;
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    snprintf(r->aud[i].key_id, sizeof(r->aud[i].key_id), "dk-%s", hex);
    r->aud[i].mask = mask;
    r->aud[i].state = AUD_PENDING;
    r->aud[i].reason = reason;
    atomic_fetch_add_explicit(&r->keys, 1, memory_order_relaxed);
    return (int)i;
}

/* Index of <cls> in the class table (registering it), or -1 when the table is full. */
static int class_index(struct audit_redactor *r, const char *cls)
{
    size_t n = atomic_load_explicit(&r->nclasses, memory_order_relaxed);

    for (size_t i = 0; i < n; i++)
        if (r->classes[i].ptr == cls)
            return (int)i;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r->names[i], cls) == 0) {
            r->classes[i].ptr = cls; /* same name from elsewhere: remember the newer pointer */
            return (int)i;
        }
    }
    if (n == RED_MAX_CLASSES)
        return -1;
    snprintf(r->names[n], sizeof(r->names[n]), "%s", cls);
    r->classes[n] = (struct cls){.ptr = cls, .aud = -2, .mask = audience_of(r, cls)};
    atomic_store_explicit(&r->nclasses, n + 1, memory_order_release);
    return (int)n;
}

/* The audience for class <cls> in this epoch (making its key on first use), or -1: not sealed. */
static int class_audience(struct audit_redactor *r, int ci, const char *cls, const char *reason)
{
    uint64_t mask;
    int a;

    if (ci >= 0 && r->classes[ci].aud != -2)
        return r->classes[ci].aud;
    mask = ci >= 0 ? r->classes[ci].mask : audience_of(r, cls);
    a = mask != 0 ? audience_get(r, mask, reason) : -1;
    if (ci >= 0)
        r->classes[ci].aud = a;
    return a;
}

/* Ends the epoch: wipes every data key. */
static void epoch_end(struct audit_redactor *r)
{
    for (size_t i = 0; i < r->naud; i++) {
        redact_data_key_wipe(&r->aud[i].key);
        r->aud[i].state = AUD_NONE;
        r->aud[i].mask = 0;
    }
    r->naud = 0;
    for (size_t i = 0; i < atomic_load_explicit(&r->nclasses, memory_order_relaxed); i++)
        r->classes[i].aud = -2;
    r->epoch = 0;
}

/* Starts an epoch: keys for the audiences of every class known to be produced. */
static void epoch_begin(struct audit_redactor *r, const char *reason)
{
    r->epoch = 1;
    r->epoch_records = 0;
    r->epoch_start_us = audit_mono_us();
    for (size_t i = 0; i < redact_detector_count(r->rd); i++) {
        const char *cls = redact_detector_class(r->rd, i);

        class_audience(r, class_index(r, cls), cls, reason);
    }
    for (size_t i = 0; i < sizeof(rule_classes) / sizeof(rule_classes[0]); i++)
        class_audience(r, class_index(r, rule_classes[i]), rule_classes[i], reason);
}

void audit_redactor_rotate_if_due(struct audit_redactor *r)
{
    const char *reason;

    if (!r->sealing || r->rd == NULL)
        return;
    if (!r->epoch) {
        reason = "start";
    } else if (r->epoch_records >= r->rotate_records) {
        reason = "rotate_records";
    } else if (audit_mono_us() - r->epoch_start_us >= r->rotate_us) {
        reason = "rotate_seconds";
    } else {
        return;
    }
    epoch_end(r);
    epoch_begin(r, reason);
}

int audit_redactor_key_event(struct audit_redactor *r, struct audit_event *ev)
{
    for (size_t i = 0; i < r->naud; i++) {
        struct audience *a = &r->aud[i];

        if (a->state != AUD_PENDING)
            continue;
        audit_event_init(ev, AUDIT_EVENT_AUDIT_KEY);
        audit_event_set_str(ev, AUDIT_STR_REASON, a->reason, strlen(a->reason));
        audit_event_set_str(ev, AUDIT_STR_KEY_ID, a->key_id, strlen(a->key_id));
        for (size_t k = 0; k < r->nprov; k++) {
            uint8_t sealed[REDACT_SEALED_KEY_BYTES];
            char b64[sodium_base64_ENCODED_LEN(REDACT_SEALED_KEY_BYTES, RED_BOX_VARIANT)];
            const char *m[2];

            if (!(a->mask & (1ULL << k)))
                continue;
            if (redact_data_key_seal(&a->key, r->prov[k]->public_key, sealed) == -1)
                continue; /* that role cannot open this epoch's values: they stay sealed */
            sodium_bin2base64(b64, sizeof(b64), sealed, sizeof(sealed), RED_BOX_VARIANT);
            m[0] = r->prov[k]->name;
            m[1] = b64;
            audit_event_list_add(ev, AUDIT_STR_KEY_SEALED, m, 2);
        }
        a->state = AUD_LIVE;
        r->last_key = (int)i;
        return 1;
    }
    return 0;
}

void audit_redactor_key_failed(struct audit_redactor *r)
{
    struct audience *a = &r->aud[r->last_key];

    /* nobody could ever open what it would seal: drop it, the next use makes another */
    redact_data_key_wipe(&a->key);
    a->state = AUD_NONE;
    for (size_t i = 0; i < atomic_load_explicit(&r->nclasses, memory_order_relaxed); i++)
        if (r->classes[i].aud == r->last_key)
            r->classes[i].aud = -2;
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    size_t n = *cap != 0 ? *cap : 16;
    void *q;

    if (need <= *cap)
        return 0;
    while (n < need)
        n *= 2;
    q = realloc(*p, n * size);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Room for <need> fields: the three arrays grow together; new results are initialized. */
static int fields_reserve(struct audit_redactor *r, size_t need)
{
    size_t cap = r->cap, n;
    void *f, *m, *res;

    if (need <= cap)
        return 0;
    n = cap != 0 ? cap * 2 : 64;
    while (n < need)
        n *= 2;
    f = realloc(r->fields, n * sizeof(*r->fields));
    if (f == NULL)
        return -1;
    r->fields = f;
    m = realloc(r->meta, n * sizeof(*r->meta));
    if (m == NULL)
        return -1;
    r->meta = m;
    res = realloc(r->res, n * sizeof(*r->res));
    if (res == NULL)
        return -1;
    r->res = res;
    for (size_t i = cap; i < n; i++)
        redact_result_init(&r->res[i]);
    r->cap = n; /* the results are initialized: what follows may fail and be retried */
    if ((m = realloc(r->view, n * sizeof(*r->view))) == NULL)
        return -1;
    r->view = m;
    if ((m = realloc(r->mfields, n * sizeof(*r->mfields))) == NULL)
        return -1;
    r->mfields = m;
    if ((m = realloc(r->miss, n * sizeof(*r->miss))) == NULL)
        return -1;
    r->miss = m;
    return 0;
}

static int add_field(struct audit_redactor *r, enum redact_field_kind kind, const char *name, size_t name_len,
                     const char *value, size_t len, enum audit_str f, const char *prefix)
{
    if (fields_reserve(r, r->nfields + 1) == -1)
        return -1;
    r->fields[r->nfields] =
        (struct redact_field){.kind = kind, .name = name, .name_len = name_len, .value = value, .len = len};
    r->meta[r->nfields] = (struct fmeta){.f = f, .prefix = prefix, .name = NULL, .name_len = 0};
    r->nfields++;
    return 0;
}

/* Adds each value of packed header field <f> ("name \t value \n"...) of <ev>. */
static int add_headers(struct audit_redactor *r, const struct audit_event *ev, enum audit_str f, const char *prefix)
{
    size_t len;
    const char *s = audit_event_str(ev, f, &len), *end = s + len;

    for (const char *line = s; s != NULL && line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line)), *tab;

        if (eol == NULL)
            eol = end;
        tab = memchr(line, '\t', (size_t)(eol - line));
        if (tab == NULL) /* a name without a value (cut short): its name is all there is */
            tab = eol;
        if (add_field(r, REDACT_FIELD_HEADER, line, (size_t)(tab - line), tab < eol ? tab + 1 : eol,
                      tab < eol ? (size_t)(eol - tab - 1) : 0, f, prefix) == -1)
            return -1;
        r->meta[r->nfields - 1].name = line;
        r->meta[r->nfields - 1].name_len = (size_t)(tab - line);
        line = eol + 1;
    }
    return 0;
}

/* The JSON path of field <i>, NUL-terminated in r->path. NULL out of memory. */
static const char *field_path(struct audit_redactor *r, size_t i)
{
    const struct fmeta *m = &r->meta[i];

    r->path.len = 0;
    if (audit_buf_append(&r->path, m->prefix, strlen(m->prefix)) == -1 ||
        (m->name != NULL && audit_buf_append(&r->path, m->name, m->name_len) == -1) ||
        audit_buf_append(&r->path, "", 1) == -1)
        return NULL;
    return r->path.data;
}

static int list_add(struct audit_buf *b, const char *const *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (audit_buf_append(b, m[i], strlen(m[i])) == -1 || audit_buf_append(b, i + 1 < n ? "\t" : "\n", 1) == -1)
            return -1;
    return 0;
}

static uint64_t clean_hash(const struct redact_field *f)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)f->kind;
    for (size_t i = 0; i < f->name_len; i++)
        h = (h ^ (unsigned char)f->name[i]) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (size_t i = 0; i < f->len; i++)
        h = (h ^ (unsigned char)f->value[i]) * 1099511628211ULL;
    return h | 1; /* never 0: 0 marks an empty slot */
}

static int clean_hit(const struct audit_redactor *r, const struct redact_field *f)
{
    if (r->clean == NULL || f->name_len > CLEAN_NAME_MAX || f->len > CLEAN_VALUE_MAX)
        return 0;
    uint64_t h = clean_hash(f);
    const struct clean_ent *e = &r->clean[h & (CLEAN_SLOTS - 1)];
    return e->h == h && e->kind == (uint8_t)f->kind && e->name_len == f->name_len && e->len == f->len &&
           (f->name_len == 0 || memcmp(e->data, f->name, f->name_len) == 0) &&
           (f->len == 0 || memcmp(e->data + f->name_len, f->value, f->len) == 0);
}

static void clean_insert(struct audit_redactor *r, const struct redact_field *f)
{
    if (r->clean == NULL || f->name_len > CLEAN_NAME_MAX || f->len > CLEAN_VALUE_MAX)
        return;
    uint64_t h = clean_hash(f);
    struct clean_ent *e = &r->clean[h & (CLEAN_SLOTS - 1)];
    e->h = h;
    e->kind = (uint8_t)f->kind;
    e->name_len = (uint8_t)f->name_len;
    e->len = (uint16_t)f->len;
    if (f->name_len)
        memcpy(e->data, f->name, f->name_len);
    if (f->len)
        memcpy(e->data + f->name_len, f->value, f->len);
}

int audit_redactor_prepare(struct audit_redactor *r, const struct audit_event *in)
{
    size_t len;
    const char *s;

    r->nfields = 0;
    r->ncands = 0;
    r->red.len = 0;
    if (r->rd == NULL)
        return -1; /* not compiled: the event is lost, never written unredacted */
    for (size_t i = 0; i < NREDACTED; i++) {
        if ((s = audit_event_str(in, redacted[i].f, &len)) == NULL)
            continue;
        if (add_field(r, redacted[i].kind, redacted[i].hname, redacted[i].hname ? strlen(redacted[i].hname) : 0, s,
                      len, redacted[i].f, redacted[i].path) == -1)
            return -1;
    }
    if (add_headers(r, in, AUDIT_STR_REQ_HEADERS, "request.headers.") == -1 ||
        add_headers(r, in, AUDIT_STR_RESP_HEADERS, "response.headers.") == -1)
        return -1;
    if (r->nfields == 0)
        return 0;
    size_t nmiss = 0;
    for (size_t i = 0; i < r->nfields; i++) {
        if (clean_hit(r, &r->fields[i])) {
            r->view[i] = (struct fview){.out = r->fields[i].value, .len = r->fields[i].len};
            continue;
        }
        r->miss[nmiss] = i;
        r->mfields[nmiss++] = r->fields[i];
    }
    r->clean_hits += r->nfields - nmiss;
    r->clean_misses += nmiss;
    if (nmiss > 0 && redact_fields(r->rd, r->mfields, nmiss, r->res) == -1)
        atomic_fetch_add_explicit(&r->failures, 1, memory_order_relaxed); /* each field still holds safe output */
    for (size_t j = 0; j < nmiss; j++) {
        const struct redact_result *res = &r->res[j];
        r->view[r->miss[j]] = (struct fview){.out = res->out, .len = res->len, .matches = res->matches,
                                             .nmatches = res->nmatches, .flags = res->flags};
        if (res->nmatches == 0 && !(res->flags & REDACT_R_UNSCANNABLE))
            clean_insert(r, &r->fields[r->miss[j]]);
    }

    for (size_t i = 0; i < r->nfields; i++) {
        const struct fview *res = &r->view[i];
        const char *path;

        if (res->nmatches == 0)
            continue;
        if (res->flags & REDACT_R_UNSCANNABLE)
            atomic_fetch_add_explicit(&r->unscannable, 1, memory_order_relaxed);
        if ((path = field_path(r, i)) == NULL)
            return -1;
        for (size_t k = 0; k < res->nmatches; k++) {
            const struct redact_match *mt = &res->matches[k];
            const char *m[3] = {path, mt->cls, mt->token};
            int ci = class_index(r, mt->cls), a;

            atomic_fetch_add_explicit(&r->counts[ci >= 0 ? ci : RED_MAX_CLASSES], 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&r->redactions, 1, memory_order_relaxed);
            if (list_add(&r->red, m, 3) == -1)
                return -1;
            if (!r->sealing || (a = class_audience(r, ci, mt->cls, "new_class")) < 0)
                continue;
            if (grow((void **)&r->cands, &r->capcands, r->ncands + 1, sizeof(*r->cands)) == -1)
                return -1;
            r->cands[r->ncands++] = (struct cand){.field = i, .match = k, .aud = a};
        }
    }
    return 0;
}

/* Appends packed list <b> to field <f> of <out>, cut after the last whole entry that fits. */
static void set_list(struct audit_event *out, enum audit_str f, const struct audit_buf *b)
{
    size_t avail = (size_t)AUDIT_TEXT_MAX - out->text_used, n = b->len;

    if (n == 0)
        return;
    if (n > avail) {
        while (n > 0 && (n > avail || b->data[n - 1] != '\n'))
            n--;
        out->flags |= AUDIT_F_TRUNCATED;
    }
    if (n > 0)
        audit_event_set_str(out, f, b->data, n);
}

/* Seals the original of candidate <c> into r->sealed. 0, or -1 (not sealed: counted). */
static int seal_one(struct audit_redactor *r, const struct cand *c, uint64_t seq)
{
    const struct redact_field *f = &r->fields[c->field];
    const struct redact_match *mt = &r->view[c->field].matches[c->match];
    const struct audience *a = &r->aud[c->aud];
    const char *path, *m[4];
    size_t blen, need = mt->in_len + REDACT_SEAL_OVERHEAD, b64len = sodium_base64_ENCODED_LEN(need, RED_BOX_VARIANT);

    if (a->state != AUD_LIVE || mt->in_off + mt->in_len > f->len)
        return -1;
    if (grow((void **)&r->box, &r->boxcap, need, 1) == -1 || grow((void **)&r->b64, &r->b64cap, b64len, 1) == -1 ||
        (path = field_path(r, c->field)) == NULL)
        return -1;
    if (redact_seal(&a->key, seq, path, f->value + mt->in_off, mt->in_len, r->box, r->boxcap, &blen) == -1)
        return -1;
    sodium_bin2base64(r->b64, r->b64cap, r->box, blen, RED_BOX_VARIANT);
    m[0] = path;
    m[1] = mt->cls;
    m[2] = a->key_id;
    m[3] = r->b64;
    return list_add(&r->sealed, m, 4);
}

/* Writes the packed header field <f> of <out> from the redacted values. */
static void put_headers(struct audit_redactor *r, struct audit_event *out, enum audit_str f)
{
    size_t avail;

    r->hdr.len = 0;
    for (size_t i = 0; i < r->nfields; i++) {
        if (r->meta[i].f != f || r->meta[i].name == NULL)
            continue;
        if (audit_buf_append(&r->hdr, r->meta[i].name, r->meta[i].name_len) == -1 ||
            audit_buf_append(&r->hdr, "\t", 1) == -1 ||
            audit_buf_append(&r->hdr, r->view[i].out, r->view[i].len) == -1 || audit_buf_append(&r->hdr, "\n", 1) == -1) {
            /* cannot hold them all: leave the rest out rather than let a value through */
            while (r->hdr.len > 0 && r->hdr.data[r->hdr.len - 1] != '\n')
                r->hdr.len--;
            out->flags |= AUDIT_F_TRUNCATED;
            break;
        }
    }
    avail = (size_t)AUDIT_TEXT_MAX - out->text_used;
    if (r->hdr.len > avail)
        set_list(out, f, &r->hdr); /* whole lines only */
    else if (r->hdr.len > 0)
        audit_event_set_str(out, f, r->hdr.data, r->hdr.len);
}

void audit_redactor_finish(struct audit_redactor *r, const struct audit_event *in, uint64_t seq,
                           struct audit_event *out)
{
    size_t len;
    const char *s;

    memcpy(out, in, offsetof(struct audit_event, str_off));
    memset(out->str_off, 0, sizeof(out->str_off));
    memset(out->str_len, 0, sizeof(out->str_len));
    out->text_used = 0;
    for (size_t i = 0; i < sizeof(copied) / sizeof(copied[0]); i++)
        if ((s = audit_event_str(in, copied[i], &len)) != NULL)
            audit_event_set_str(out, copied[i], s, len);
    for (size_t i = 0; i < r->nfields; i++)
        if (r->meta[i].name == NULL)
            audit_event_set_str(out, r->meta[i].f, r->view[i].out, r->view[i].len);
    put_headers(r, out, AUDIT_STR_REQ_HEADERS);
    put_headers(r, out, AUDIT_STR_RESP_HEADERS);
    set_list(out, AUDIT_STR_REDACTIONS, &r->red);
    r->sealed.len = 0;
    for (size_t i = 0; i < r->ncands; i++) {
        if (seal_one(r, &r->cands[i], seq) == 0)
            atomic_fetch_add_explicit(&r->sealed_n, 1, memory_order_relaxed);
        else
            atomic_fetch_add_explicit(&r->seal_dropped, 1, memory_order_relaxed);
    }
    if (r->sealed.len > (size_t)AUDIT_TEXT_MAX - out->text_used) {
        /* what does not fit is not revealable; count the entries left out */
        size_t avail = (size_t)AUDIT_TEXT_MAX - out->text_used, dropped = 0;

        for (size_t k = avail; k < r->sealed.len; k++)
            dropped += r->sealed.data[k] == '\n';
        atomic_fetch_add_explicit(&r->seal_dropped, dropped, memory_order_relaxed);
        atomic_fetch_sub_explicit(&r->sealed_n, dropped, memory_order_relaxed);
    }
    set_list(out, AUDIT_STR_SEALED, &r->sealed);
    sodium_memzero(r->box, r->boxcap); /* ciphertext, but leave nothing of the work behind */
    r->epoch_records++;
    atomic_fetch_add_explicit(&r->events, 1, memory_order_relaxed);
}

static char **dup_list(const char *const *l)
{
    size_t n = 0;
    char **d;

    while (l[n] != NULL)
        n++;
    d = calloc(n + 1, sizeof(*d));
    for (size_t i = 0; d != NULL && i < n; i++) {
        if ((d[i] = strdup(l[i])) == NULL) {
            for (size_t k = 0; k < i; k++)
                free(d[k]);
            free(d);
            return NULL;
        }
    }
    return d;
}

static void free_list(char **l)
{
    for (size_t i = 0; l != NULL && l[i] != NULL; i++)
        free(l[i]);
    free(l);
}

int audit_redactor_compile(struct audit_redactor *r, char *err, size_t errlen)
{
    struct redact_opts o = {
        .custom_path = r->o_custom,
        .max_field_bytes = r->o_max_field,
        .enable = (const char *const *)r->o_lists[0],
        .disable = (const char *const *)r->o_lists[1],
        .api_key_headers = (const char *const *)r->o_lists[2],
        .query_params = (const char *const *)r->o_lists[3],
    };
    char why[1024];
    int64_t t0 = audit_mono_us();

    if (r->rd != NULL)
        return 0;
    r->rd = redact_new(&o, r->kr, why, sizeof(why));
    if (r->rd == NULL) {
        snprintf(err, errlen, "redaction.detectors: %s", why);
        return -1;
    }
    diag_log(DIAG_INFO, "redaction", "%zu detectors compiled in %lld ms, token key %s, %zu provisioned roles, "
             "originals %s",
             redact_detector_count(r->rd), (long long)((audit_mono_us() - t0) / 1000), redact_keyring_current(r->kr),
             r->nprov, r->sealing ? "sealed for kept classes" : "not kept");
    return 0;
}

int audit_redactor_new(struct audit_redactor **out, const struct json_t *conf, const char *keys_dir, char *err,
                       size_t errlen)
{
    struct errs e = {.buf = err, .cap = errlen};
    struct audit_redactor *r = NULL;
    struct conf c;
    char why[1024];

    *out = NULL;
    if (errlen > 0)
        err[0] = '\0';
    conf_parse(conf, &c, &e);
    if (e.count > 0)
        goto fail;
    if (!c.enabled) {
        conf_fini(&c);
        return 0;
    }
    r = calloc(1, sizeof(*r));
    if (r != NULL)
        r->clean = calloc(CLEAN_SLOTS, sizeof(*r->clean)); /* without it every field is scanned */
    if (r == NULL) {
        add_err(&e, "redaction: out of memory");
        goto fail;
    }
    audit_buf_init(&r->red, 0);
    audit_buf_init(&r->sealed, 0);
    audit_buf_init(&r->path, 0);
    audit_buf_init(&r->hdr, 0);
    if (c.keys_dir != NULL)
        keys_dir = c.keys_dir;
    if (keys_dir == NULL) {
        add_err(&e, "redaction.keys_dir: no key directory");
        goto fail;
    }
    r->kr = redact_keyring_open(keys_dir, why, sizeof(why));
    if (r->kr == NULL) {
        add_err(&e, "redaction.keys_dir: %s", why);
        goto fail;
    }
    /* the detectors compile in audit_redactor_compile(): keep their options */
    {
        const char *const *lists[4] = {c.enable, c.disable, c.api_key_headers, c.query_params};

        r->o_max_field = c.max_field;
        if (c.custom != NULL && (r->o_custom = strdup(c.custom)) == NULL) {
            add_err(&e, "redaction: out of memory");
            goto fail;
        }
        for (int k = 0; k < 4; k++) {
            if (lists[k] != NULL && (r->o_lists[k] = dup_list(lists[k])) == NULL) {
                add_err(&e, "redaction: out of memory");
                goto fail;
            }
        }
    }
    r->roles = roles_of(&c, &e);
    if (e.count > 0)
        goto fail;
    for (size_t i = 0; r->roles != NULL && i < redact_roles_count(r->roles); i++) {
        const struct redact_role *role = redact_roles_at(r->roles, i);

        if (role->has_key)
            r->prov[r->nprov++] = role;
    }
    for (size_t i = 0; c.keep != NULL && c.keep[i] != NULL; i++)
        r->nkeep++;
    r->keep = calloc(r->nkeep + 1, sizeof(*r->keep));
    if (r->keep == NULL) {
        add_err(&e, "redaction: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < r->nkeep; i++) {
        if ((r->keep[i] = strdup(c.keep[i])) == NULL) {
            add_err(&e, "redaction: out of memory");
            goto fail;
        }
    }
    r->rotate_records = c.rotate_records;
    r->rotate_us = (int64_t)c.rotate_seconds * 1000000;
    /* sealing is on when some kept pattern names a class some provisioned role may reveal;
     * which classes exactly is found per class (audience_of) */
    r->sealing = r->nkeep > 0 && r->nprov > 0;
    if (r->nkeep > 0 && r->nprov == 0)
        diag_log(DIAG_WARN, "redaction",
                 "keep_originals is set but no role in %s has a public key: no original is kept",
                 c.roles_file != NULL ? c.roles_file : "(no roles file)");
    conf_fini(&c);
    *out = r;
    return 0;

fail:
    conf_fini(&c);
    audit_redactor_free(r);
    return -1;
}

void audit_redactor_free(struct audit_redactor *r)
{
    if (r == NULL)
        return;
    epoch_end(r);
    for (size_t i = 0; i < r->cap; i++)
        redact_result_fini(&r->res[i]);
    free(r->res);
    free(r->view);
    free(r->mfields);
    free(r->miss);
    free(r->clean);
    free(r->meta);
    free(r->fields);
    free(r->cands);
    audit_buf_fini(&r->red);
    audit_buf_fini(&r->sealed);
    audit_buf_fini(&r->path);
    audit_buf_fini(&r->hdr);
    if (r->box != NULL)
        sodium_memzero(r->box, r->boxcap);
    free(r->box);
    free(r->b64);
    for (size_t i = 0; r->keep != NULL && i < r->nkeep; i++)
        free(r->keep[i]);
    free(r->keep);
    redact_roles_free(r->roles);
    redact_free(r->rd);
    redact_keyring_free(r->kr);
    free(r->o_custom);
    for (int k = 0; k < 4; k++)
        free_list(r->o_lists[k]);
    free(r);
}

void audit_redactor_stats(const struct audit_redactor *r, struct audit_redaction_stats *out)
{
    struct audit_redactor *w = (struct audit_redactor *)r;

    out->events = atomic_load_explicit(&w->events, memory_order_relaxed);
    out->redactions = atomic_load_explicit(&w->redactions, memory_order_relaxed);
    out->unscannable = atomic_load_explicit(&w->unscannable, memory_order_relaxed);
    out->failures = atomic_load_explicit(&w->failures, memory_order_relaxed);
    out->sealed = atomic_load_explicit(&w->sealed_n, memory_order_relaxed);
    out->seal_dropped = atomic_load_explicit(&w->seal_dropped, memory_order_relaxed);
    out->keys = atomic_load_explicit(&w->keys, memory_order_relaxed);
}

size_t audit_redactor_counts(const struct audit_redactor *r, struct audit_redaction_count *out, size_t max)
{
    struct audit_redactor *w = (struct audit_redactor *)r;
    size_t n = atomic_load_explicit(&w->nclasses, memory_order_acquire), k = 0;
    uint64_t other = atomic_load_explicit(&w->counts[RED_MAX_CLASSES], memory_order_relaxed);

    for (size_t i = 0; i < n; i++) {
        uint64_t c = atomic_load_explicit(&w->counts[i], memory_order_relaxed);

        if (c == 0)
            continue;
        if (k < max)
            out[k] = (struct audit_redaction_count){.cls = w->names[i], .count = c};
        k++;
    }
    if (other > 0) {
        if (k < max)
            out[k] = (struct audit_redaction_count){.cls = "other", .count = other};
        k++;
    }
    return k;
}
