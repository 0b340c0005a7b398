/* redact/detectors.c - detector files (schemas/detectors.schema.json) and the context.
 *
 * Detectors are data: the default file is compiled into the library from
 * compliance/detectors.json, and a DLP team's file can add detectors, header, query and path
 * rules without a rebuild. Every pattern is checked on its own first (hs_expression_info), so
 * that an error names the file and the JSON path of the bad pattern; then all enabled patterns
 * are compiled into one block-mode Vectorscan database. A pattern of fixed width needs no
 * start-of-match tracking (start = end - width); the others get HS_FLAG_SOM_LEFTMOST. */
#include "redact/redact-int.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DETECTOR_FILE_MAX (4 * 1024 * 1024)
#define DEFAULT_PRIORITY 50

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void det_fini(struct redact_detector *d)
{
    hs_free_database(d->confirm);
    free(d->id);
    free(d->cls);
    free(d->pattern);
    free(d->origin);
    free(d->redact_after);
    memset(d, 0, sizeof(*d));
}

static void seg_fini(struct redact_segment_rule *g)
{
    free(g->id);
    free(g->pattern);
    free(g->cls);
    free(g->origin);
}

void redact_spec_fini(struct redact_spec *sp)
{
    for (size_t i = 0; i < sp->ndets; i++)
        det_fini(&sp->dets[i]);
    for (size_t i = 0; i < sp->nhdrs; i++) {
        free(sp->hdrs[i].name);
        free(sp->hdrs[i].cls);
    }
    for (size_t i = 0; i < sp->nparams; i++) {
        free(sp->params[i].name);
        free(sp->params[i].cls);
    }
    for (size_t i = 0; i < sp->nsegs; i++)
        seg_fini(&sp->segs[i]);
    free(sp->dets);
    free(sp->hdrs);
    free(sp->params);
    free(sp->segs);
    memset(sp, 0, sizeof(*sp));
}

/* Makes room for one more element in a growable array. 0, or -1 when out of memory. */
static int grow(void **arr, size_t n, size_t *cap, size_t elem)
{
    void *na;
    size_t nc;

    if (n < *cap)
        return 0;
    nc = *cap ? *cap * 2 : 16;
    na = realloc(*arr, nc * elem);
    if (na == NULL)
        return -1;
    *arr = na;
    *cap = nc;
    return 0;
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static int valid_id(const char *s)
{
    size_t n = 0;

    for (; *s; s++, n++) {
        char c = *s;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'
              || c == '.'))
            return 0;
    }
    return n > 0 && n <= 64;
}

/* A header or query parameter name: visible ASCII without separators that would never parse. */
static int valid_name(const char *s)
{
    size_t n = 0;

    for (; *s; s++, n++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == '=' || *s == '&' || *s == ':')
            return 0;
    return n > 0 && n <= REDACT_NAME_MAX;
}

/* Selector of "enable"/"disable": a detector id, a class, "prefix.*" or "*". */
static int selects(const char *sel, const struct redact_detector *d)
{
    size_t n = strlen(sel);

    if (strcmp(sel, "*") == 0 || strcmp(sel, d->id) == 0 || strcmp(sel, d->cls) == 0)
        return 1;
    return n >= 2 && sel[n - 1] == '*' && sel[n - 2] == '.' && strncmp(d->cls, sel, n - 1) == 0;
}

static void apply_selector(struct redact_spec *sp, const char *sel, int on)
{
    for (size_t i = 0; i < sp->ndets; i++)
        if (selects(sel, &sp->dets[i]))
            sp->dets[i].enabled = on;
}

static unsigned parse_flag(const char *f)
{
    if (strcmp(f, "caseless") == 0)
        return HS_FLAG_CASELESS;
    if (strcmp(f, "dotall") == 0)
        return HS_FLAG_DOTALL;
    if (strcmp(f, "multiline") == 0)
        return HS_FLAG_MULTILINE;
    return 0;
}

/* Whether <p> uses ^ or $ outside a character class (1), or \A, \z, \Z (-1), or neither (0). */
static int anchors(const char *p)
{
    int in_class = 0, found = 0;

    for (; *p; p++) {
        if (*p == '\\') {
            if (p[1] == 'A' || p[1] == 'z' || p[1] == 'Z')
                return -1;
            if (p[1] != '\0')
                p++;
        } else if (in_class) {
            if (*p == ']')
                in_class = 0;
        } else if (*p == '[') {
            in_class = 1;
            if (p[1] == '^')
                p++;
            if (p[1] == ']')
                p++; /* a literal ']' first in the class */
        } else if (*p == '^' || *p == '$') {
            found = 1;
        }
    }
    return found;
}

/* Checks <pattern> with <flags> on its own and fills in the width. 0, or -1 with <err>. */
static int check_pattern(struct redact_detector *d, const char *path, char *err, size_t errlen)
{
    hs_expr_info_t *info = NULL;
    hs_compile_error_t *cerr = NULL;
    int rc = 0, anch = anchors(d->pattern);

    if (hs_expression_info(d->pattern, d->hs_flags, &info, &cerr) != HS_SUCCESS) {
        rc = redact_errf(err, errlen, "%s.pattern: %s", path, cerr ? cerr->message : "invalid");
        hs_free_compile_error(cerr);
        return rc;
    }
    if (info->min_width == 0)
        rc = redact_errf(err, errlen, "%s.pattern: can match the empty string", path);
    else if (anch == -1)
        rc = redact_errf(err, errlen, "%s.pattern: \\A, \\z and \\Z are not supported; use ^ and $ (field or line)",
                         path);
    d->fixed = info->max_width != UINT_MAX && info->min_width == info->max_width;
    d->width = info->max_width;
    d->trusted = d->fixed && anch == 0;
    free(info);
    return rc;
}

static const char *const det_keys[] = {"id", "class", "pattern", "flags", "validator", "priority", "enabled",
                                       "redact_after", "description", NULL};

static int known_key(const char *const *keys, const char *k)
{
    for (; *keys; keys++)
        if (strcmp(*keys, k) == 0)
            return 1;
    return 0;
}

static int unknown_keys(json_t *obj, const char *const *keys, const char *path, char *err, size_t errlen)
{
    const char *k;
    json_t *v;

    json_object_foreach(obj, k, v) {
        if (!known_key(keys, k))
            return redact_errf(err, errlen, "%s.%s: unknown key", path, k);
    }
    return 0;
}

/* Parses detectors[<i>] of <origin> into <d>. 0, or -1 with <err>. */
static int parse_detector(json_t *j, const char *path, const char *origin, struct redact_detector *d, char *err,
                          size_t errlen)
{
    json_t *v;
    char opath[256];

    memset(d, 0, sizeof(*d));
    if (!json_is_object(j))
        return redact_errf(err, errlen, "%s: not an object", path);
    if (unknown_keys(j, det_keys, path, err, errlen) == -1)
        return -1;
    v = json_object_get(j, "id");
    if (!json_is_string(v) || !valid_id(json_string_value(v)))
        return redact_errf(err, errlen, "%s.id: required, 1-64 characters of [A-Za-z0-9_.-]", path);
    v = json_object_get(j, "class");
    if (!json_is_string(v) || redact_class_valid(json_string_value(v)) == -1
        || strcmp(json_string_value(v), REDACT_CLASS_UNSCANNABLE) == 0)
        return redact_errf(err, errlen, "%s.class: required, a dotted lower-case class such as \"pii.email\"", path);
    v = json_object_get(j, "pattern");
    if (!json_is_string(v) || json_string_length(v) == 0)
        return redact_errf(err, errlen, "%s.pattern: required, a non-empty string", path);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return redact_errf(err, errlen, "%s.pattern: contains a NUL", path);
    d->priority = DEFAULT_PRIORITY;
    d->enabled = 1;
    v = json_object_get(j, "flags");
    if (v != NULL) {
        size_t i;
        json_t *f;

        if (!json_is_array(v))
            return redact_errf(err, errlen, "%s.flags: not an array", path);
        json_array_foreach(v, i, f) {
            unsigned fl = json_is_string(f) ? parse_flag(json_string_value(f)) : 0;

            if (fl == 0)
                return redact_errf(err, errlen, "%s.flags[%zu]: one of \"caseless\", \"dotall\", \"multiline\"", path,
                                   i);
            d->hs_flags |= fl;
        }
    }
    v = json_object_get(j, "validator");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v) || redact_validator_lookup(json_string_value(v), &d->validator) == -1)
            return redact_errf(err, errlen, "%s.validator: unknown validator \"%s\"", path,
                               json_is_string(v) ? json_string_value(v) : "?");
    }
    v = json_object_get(j, "priority");
    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000)
            return redact_errf(err, errlen, "%s.priority: an integer from 0 to 1000", path);
        d->priority = (int)json_integer_value(v);
    }
    v = json_object_get(j, "enabled");
    if (v != NULL) {
        if (!json_is_boolean(v))
            return redact_errf(err, errlen, "%s.enabled: not a boolean", path);
        d->enabled = json_is_true(v);
    }
    v = json_object_get(j, "redact_after");
    if (v != NULL && (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 32))
        return redact_errf(err, errlen, "%s.redact_after: a string of 1 to 32 bytes", path);
    v = json_object_get(j, "description");
    if (v != NULL && !json_is_string(v))
        return redact_errf(err, errlen, "%s.description: not a string", path);

    snprintf(opath, sizeof(opath), "%s: %s", origin, path);
    d->id = xstrdup(json_string_value(json_object_get(j, "id")));
    d->cls = xstrdup(json_string_value(json_object_get(j, "class")));
    d->pattern = xstrdup(json_string_value(json_object_get(j, "pattern")));
    d->origin = xstrdup(opath);
    if (json_object_get(j, "redact_after") != NULL)
        d->redact_after = xstrdup(json_string_value(json_object_get(j, "redact_after")));
    if (d->id == NULL || d->cls == NULL || d->pattern == NULL || d->origin == NULL
        || (json_object_get(j, "redact_after") != NULL && d->redact_after == NULL)) {
        det_fini(d);
        return redact_errf(err, errlen, "%s: out of memory", path);
    }
    d->longest_only = redact_validator_longest_only(d->validator);
    if (check_pattern(d, path, err, errlen) == -1) {
        det_fini(d);
        return -1;
    }
    return 0;
}

static int add_detector(struct redact_spec *sp, struct redact_detector *d, char *err, size_t errlen)
{
    for (size_t i = 0; i < sp->ndets; i++) {
        if (strcmp(sp->dets[i].id, d->id) == 0) {
            det_fini(&sp->dets[i]);
            sp->dets[i] = *d;
            return 0;
        }
    }
    if (grow((void **)&sp->dets, sp->ndets, &sp->capdets, sizeof(*sp->dets)) == -1) {
        det_fini(d);
        return redact_errf(err, errlen, "out of memory");
    }
    sp->dets[sp->ndets++] = *d;
    return 0;
}

static int parse_header_kind(const char *s, enum redact_header_kind *k)
{
    static const char *const kinds[] = {"value", "authorization", "cookie", "set_cookie", "url"};

    for (int i = 0; i < 5; i++) {
        if (strcmp(s, kinds[i]) == 0) {
            *k = (enum redact_header_kind)i;
            return 0;
        }
    }
    return -1;
}

/* Adds a header rule; a rule for a name already present replaces it. <cls> may be NULL. */
static int add_header(struct redact_spec *sp, const char *name, enum redact_header_kind kind, const char *cls)
{
    char *n = strdup(name), *c = xstrdup(cls ? cls : "credential.api_key");

    if (n == NULL || c == NULL)
        goto fail;
    lower(n);
    for (size_t i = 0; i < sp->nhdrs; i++) {
        if (strcmp(sp->hdrs[i].name, n) == 0) {
            free(sp->hdrs[i].name);
            free(sp->hdrs[i].cls);
            sp->hdrs[i] = (struct redact_header_rule){.name = n, .name_len = strlen(n), .kind = kind, .cls = c};
            return 0;
        }
    }
    if (grow((void **)&sp->hdrs, sp->nhdrs, &sp->caphdrs, sizeof(*sp->hdrs)) == -1)
        goto fail;
    sp->hdrs[sp->nhdrs++] = (struct redact_header_rule){.name = n, .name_len = strlen(n), .kind = kind, .cls = c};
    return 0;
fail:
    free(n);
    free(c);
    return -1;
}

static int add_param(struct redact_spec *sp, const char *name, const char *cls)
{
    char *n = strdup(name), *c = xstrdup(cls ? cls : "credential.query");

    if (n == NULL || c == NULL)
        goto fail;
    lower(n);
    for (size_t i = 0; i < sp->nparams; i++) {
        if (strcmp(sp->params[i].name, n) == 0) {
            free(sp->params[i].name);
            free(sp->params[i].cls);
            sp->params[i] = (struct redact_param_rule){.name = n, .name_len = strlen(n), .cls = c};
            return 0;
        }
    }
    if (grow((void **)&sp->params, sp->nparams, &sp->capparams, sizeof(*sp->params)) == -1)
        goto fail;
    sp->params[sp->nparams++] = (struct redact_param_rule){.name = n, .name_len = strlen(n), .cls = c};
    return 0;
fail:
    free(n);
    free(c);
    return -1;
}

static int parse_headers(struct redact_spec *sp, json_t *arr, char *err, size_t errlen)
{
    static const char *const keys[] = {"name", "rule", "class", "description", NULL};
    size_t i;
    json_t *h;

    if (!json_is_array(arr))
        return redact_errf(err, errlen, "headers: not an array");
    json_array_foreach(arr, i, h) {
        enum redact_header_kind kind = REDACT_H_VALUE;
        json_t *n, *r, *c;
        char path[64];

        snprintf(path, sizeof(path), "headers[%zu]", i);
        if (!json_is_object(h))
            return redact_errf(err, errlen, "%s: not an object", path);
        if (unknown_keys(h, keys, path, err, errlen) == -1)
            return -1;
        n = json_object_get(h, "name");
        r = json_object_get(h, "rule");
        c = json_object_get(h, "class");
        if (!json_is_string(n) || !valid_name(json_string_value(n)))
            return redact_errf(err, errlen, "%s.name: required, a header name", path);
        if (r != NULL && (!json_is_string(r) || parse_header_kind(json_string_value(r), &kind) == -1))
            return redact_errf(err, errlen,
                               "%s.rule: one of \"value\", \"authorization\", \"cookie\", \"set_cookie\", \"url\"", path);
        if (c != NULL && (!json_is_string(c) || redact_class_valid(json_string_value(c)) == -1))
            return redact_errf(err, errlen, "%s.class: not a valid class", path);
        if (add_header(sp, json_string_value(n), kind, c ? json_string_value(c) : NULL) == -1)
            return redact_errf(err, errlen, "out of memory");
    }
    return 0;
}

static int parse_params(struct redact_spec *sp, json_t *arr, char *err, size_t errlen)
{
    static const char *const keys[] = {"name", "class", "description", NULL};
    size_t i;
    json_t *p;

    if (!json_is_array(arr))
        return redact_errf(err, errlen, "query_params: not an array");
    json_array_foreach(arr, i, p) {
        json_t *n, *c;
        char path[64];

        snprintf(path, sizeof(path), "query_params[%zu]", i);
        if (!json_is_object(p))
            return redact_errf(err, errlen, "%s: not an object", path);
        if (unknown_keys(p, keys, path, err, errlen) == -1)
            return -1;
        n = json_object_get(p, "name");
        c = json_object_get(p, "class");
        if (!json_is_string(n) || !valid_name(json_string_value(n)))
            return redact_errf(err, errlen, "%s.name: required, a parameter name", path);
        if (c != NULL && (!json_is_string(c) || redact_class_valid(json_string_value(c)) == -1))
            return redact_errf(err, errlen, "%s.class: not a valid class", path);
        if (add_param(sp, json_string_value(n), c ? json_string_value(c) : NULL) == -1)
            return redact_errf(err, errlen, "out of memory");
    }
    return 0;
}

/* Path segment patterns match a whole segment: compiled as ^(?:P)$. */
static int parse_segments(struct redact_spec *sp, json_t *arr, const char *origin, char *err, size_t errlen)
{
    static const char *const keys[] = {"id", "pattern", "class", "flags", "description", NULL};
    size_t i;
    json_t *g;

    if (!json_is_array(arr))
        return redact_errf(err, errlen, "path_segments: not an array");
    json_array_foreach(arr, i, g) {
        struct redact_segment_rule r = {0};
        struct redact_detector probe = {0};
        json_t *id, *pat, *c;
        char path[64], opath[256];
        size_t plen;

        snprintf(path, sizeof(path), "path_segments[%zu]", i);
        if (!json_is_object(g))
            return redact_errf(err, errlen, "%s: not an object", path);
        if (unknown_keys(g, keys, path, err, errlen) == -1)
            return -1;
        id = json_object_get(g, "id");
        pat = json_object_get(g, "pattern");
        c = json_object_get(g, "class");
        if (!json_is_string(id) || !valid_id(json_string_value(id)))
            return redact_errf(err, errlen, "%s.id: required, 1-64 characters of [A-Za-z0-9_.-]", path);
        if (!json_is_string(pat) || json_string_length(pat) == 0
            || strlen(json_string_value(pat)) != json_string_length(pat))
            return redact_errf(err, errlen, "%s.pattern: required, a non-empty string", path);
        if (c != NULL && (!json_is_string(c) || redact_class_valid(json_string_value(c)) == -1))
            return redact_errf(err, errlen, "%s.class: not a valid class", path);
        plen = json_string_length(pat) + 16;
        r.pattern = malloc(plen);
        r.id = xstrdup(json_string_value(id));
        r.cls = xstrdup(c ? json_string_value(c) : "credential.path");
        snprintf(opath, sizeof(opath), "%s: %s", origin, path);
        r.origin = xstrdup(opath);
        if (r.pattern == NULL || r.id == NULL || r.cls == NULL || r.origin == NULL) {
            seg_fini(&r);
            return redact_errf(err, errlen, "out of memory");
        }
        snprintf(r.pattern, plen, "^(?:%s)$", json_string_value(pat));
        probe.pattern = r.pattern;
        if (check_pattern(&probe, path, err, errlen) == -1) {
            seg_fini(&r);
            return -1;
        }
        if (grow((void **)&sp->segs, sp->nsegs, &sp->capsegs, sizeof(*sp->segs)) == -1) {
            seg_fini(&r);
            return redact_errf(err, errlen, "out of memory");
        }
        sp->segs[sp->nsegs++] = r;
    }
    return 0;
}

static int parse_selectors(struct redact_spec *sp, json_t *arr, const char *key, int on, char *err, size_t errlen)
{
    size_t i;
    json_t *s;

    if (!json_is_array(arr))
        return redact_errf(err, errlen, "%s: not an array", key);
    json_array_foreach(arr, i, s) {
        if (!json_is_string(s) || json_string_length(s) == 0)
            return redact_errf(err, errlen, "%s[%zu]: a detector id or class pattern", key, i);
        apply_selector(sp, json_string_value(s), on);
    }
    return 0;
}

int redact_spec_parse(struct redact_spec *sp, const char *json, size_t len, const char *origin, char *err,
                      size_t errlen)
{
    static const char *const keys[] = {"$schema", "version", "description", "detectors", "headers",
                                       "query_params", "path_segments", "enable", "disable", NULL};
    char e[512] = "";
    json_error_t jerr;
    json_t *root, *v;
    size_t i;
    int rc = -1;

    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return redact_errf(err, errlen, "%s:%d:%d: %s", origin, jerr.line, jerr.column, jerr.text);
    if (!json_is_object(root)) {
        redact_errf(e, sizeof(e), "(root): not an object");
        goto out;
    }
    if (unknown_keys(root, keys, "(root)", e, sizeof(e)) == -1)
        goto out;
    v = json_object_get(root, "version");
    if (v != NULL && !(json_is_integer(v) && json_integer_value(v) == 1)) {
        redact_errf(e, sizeof(e), "version: must be 1");
        goto out;
    }
    v = json_object_get(root, "detectors");
    if (v != NULL) {
        json_t *d;
        size_t olen = strlen(origin);

        if (!json_is_array(v)) {
            redact_errf(e, sizeof(e), "detectors: not an array");
            goto out;
        }
        json_array_foreach(v, i, d) {
            struct redact_detector det;
            char path[64];

            snprintf(path, sizeof(path), "detectors[%zu]", i);
            if (parse_detector(d, path, origin, &det, e, sizeof(e)) == -1)
                goto out;
            /* Ids are unique within a file; across files a later one replaces. */
            for (size_t k = 0; k < sp->ndets; k++) {
                if (strcmp(sp->dets[k].id, det.id) == 0 && strncmp(sp->dets[k].origin, origin, olen) == 0
                    && strncmp(sp->dets[k].origin + olen, ": ", 2) == 0) {
                    redact_errf(e, sizeof(e), "%s.id: duplicate id \"%s\"", path, det.id);
                    det_fini(&det);
                    goto out;
                }
            }
            if (add_detector(sp, &det, e, sizeof(e)) == -1)
                goto out;
        }
    }
    if ((v = json_object_get(root, "headers")) != NULL && parse_headers(sp, v, e, sizeof(e)) == -1)
        goto out;
    if ((v = json_object_get(root, "query_params")) != NULL && parse_params(sp, v, e, sizeof(e)) == -1)
        goto out;
    if ((v = json_object_get(root, "path_segments")) != NULL && parse_segments(sp, v, origin, e, sizeof(e)) == -1)
        goto out;
    if ((v = json_object_get(root, "enable")) != NULL && parse_selectors(sp, v, "enable", 1, e, sizeof(e)) == -1)
        goto out;
    if ((v = json_object_get(root, "disable")) != NULL && parse_selectors(sp, v, "disable", 0, e, sizeof(e)) == -1)
        goto out;
    rc = 0;
out:
    if (rc == -1)
        redact_errf(err, errlen, "%s: %s", origin, e);
    json_decref(root);
    return rc;
}

/* Builds the spec that <o> describes. 0, or -1 with <err>. */
static int build_spec(struct redact_spec *sp, const struct redact_opts *o, char *err, size_t errlen)
{
    char *text;
    size_t len;
    int rc;

    memset(sp, 0, sizeof(*sp));
    if (o->detectors_path != NULL) {
        text = redact_read_file(o->detectors_path, DETECTOR_FILE_MAX, &len, err, errlen);
        if (text == NULL)
            return -1;
        rc = redact_spec_parse(sp, text, len, o->detectors_path, err, errlen);
        free(text);
    } else {
        rc = redact_spec_parse(sp, redact_default_detectors_json, redact_default_detectors_len, "(default detectors)",
                               err, errlen);
    }
    if (rc == -1)
        goto fail;
    if (o->custom_path != NULL) {
        text = redact_read_file(o->custom_path, DETECTOR_FILE_MAX, &len, err, errlen);
        if (text == NULL)
            goto fail;
        rc = redact_spec_parse(sp, text, len, o->custom_path, err, errlen);
        free(text);
        if (rc == -1)
            goto fail;
    }
    for (const char *const *p = o->enable; p && *p; p++)
        apply_selector(sp, *p, 1);
    for (const char *const *p = o->disable; p && *p; p++)
        apply_selector(sp, *p, 0);
    for (const char *const *p = o->api_key_headers; p && *p; p++) {
        if (!valid_name(*p)) {
            redact_errf(err, errlen, "api_key_headers: bad header name \"%s\"", *p);
            goto fail;
        }
        if (add_header(sp, *p, REDACT_H_VALUE, "credential.api_key") == -1)
            goto oom;
    }
    for (const char *const *p = o->query_params; p && *p; p++) {
        if (!valid_name(*p)) {
            redact_errf(err, errlen, "query_params: bad parameter name \"%s\"", *p);
            goto fail;
        }
        if (add_param(sp, *p, "credential.query") == -1)
            goto oom;
    }
    return 0;
oom:
    redact_errf(err, errlen, "out of memory");
fail:
    redact_spec_fini(sp);
    return -1;
}

static int compile(hs_database_t **db, const char *const *pats, const unsigned *flags, const unsigned *ids, size_t n,
                   const char *const *origins, char *err, size_t errlen)
{
    hs_compile_error_t *cerr = NULL;

    *db = NULL;
    if (n == 0)
        return 0;
    if (hs_compile_multi(pats, flags, ids, (unsigned)n, HS_MODE_BLOCK, NULL, db, &cerr) != HS_SUCCESS) {
        if (cerr != NULL && cerr->expression >= 0 && (size_t)cerr->expression < n)
            redact_errf(err, errlen, "%s.pattern: %s", origins[cerr->expression], cerr->message);
        else
            redact_errf(err, errlen, "compiling the detectors: %s", cerr ? cerr->message : "failed");
        hs_free_compile_error(cerr);
        return -1;
    }
    return 0;
}

static int compile_all(struct redact *rd, char *err, size_t errlen)
{
    size_t n = rd->ndets > rd->nsegs ? rd->ndets : rd->nsegs;
    const char **pats = calloc(n + 1, sizeof(*pats)), **origins = calloc(n + 1, sizeof(*origins));
    unsigned *flags = calloc(n + 1, sizeof(*flags)), *ids = calloc(n + 1, sizeof(*ids));
    int rc = -1;

    if (pats == NULL || origins == NULL || flags == NULL || ids == NULL) {
        redact_errf(err, errlen, "out of memory");
        goto out;
    }
    /* The main database only says which detectors hit and where: no SOM (cheaper), and
     * multi-line so that ^ and $ also hold at the '\n' between the fields of a batch. */
    for (size_t i = 0; i < rd->ndets; i++) {
        pats[i] = rd->dets[i].pattern;
        origins[i] = rd->dets[i].origin;
        flags[i] = rd->dets[i].hs_flags | HS_FLAG_MULTILINE;
        ids[i] = (unsigned)i;
    }
    if (compile(&rd->db, pats, flags, ids, rd->ndets, origins, err, errlen) == -1)
        goto out;
    /* Each detector whose hits need their start (or whose anchors need the field alone) gets
     * its own database, run on a field only when the main scan saw it hit there. */
    for (size_t i = 0; i < rd->ndets; i++) {
        struct redact_detector *d = &rd->dets[i];
        unsigned fl = d->hs_flags | (d->fixed ? 0 : HS_FLAG_SOM_LEFTMOST), id = 0;

        if (d->trusted)
            continue;
        if (compile(&d->confirm, (const char *const *)&d->pattern, &fl, &id, 1, (const char *const *)&d->origin, err,
                    errlen) == -1)
            goto out;
        if (hs_alloc_scratch(d->confirm, &rd->scratch) != HS_SUCCESS) {
            redact_errf(err, errlen, "allocating Vectorscan scratch failed");
            goto out;
        }
    }
    for (size_t i = 0; i < rd->nsegs; i++) {
        pats[i] = rd->segs[i].pattern;
        origins[i] = rd->segs[i].origin;
        flags[i] = HS_FLAG_SINGLEMATCH;
        ids[i] = (unsigned)i;
    }
    if (compile(&rd->segdb, pats, flags, ids, rd->nsegs, origins, err, errlen) == -1)
        goto out;
    if ((rd->db != NULL && hs_alloc_scratch(rd->db, &rd->scratch) != HS_SUCCESS)
        || (rd->segdb != NULL && hs_alloc_scratch(rd->segdb, &rd->scratch) != HS_SUCCESS)) {
        redact_errf(err, errlen, "allocating Vectorscan scratch failed");
        goto out;
    }
    rc = 0;
out:
    free(pats);
    free(origins);
    free(flags);
    free(ids);
    return rc;
}

static struct redact *build(const struct redact_opts *o, const struct redact_keyring *kr, char *err, size_t errlen)
{
    static const struct redact_opts none = {0};
    struct redact_spec sp;
    struct redact *rd;
    size_t k = 0;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (o == NULL)
        o = &none;
    if (build_spec(&sp, o, err, errlen) == -1)
        return NULL;
    rd = calloc(1, sizeof(*rd));
    if (rd == NULL) {
        redact_spec_fini(&sp);
        redact_errf(err, errlen, "out of memory");
        return NULL;
    }
    /* Keep the enabled detectors only: their index is the Vectorscan id. */
    for (size_t i = 0; i < sp.ndets; i++) {
        if (sp.dets[i].enabled)
            sp.dets[k++] = sp.dets[i];
        else
            det_fini(&sp.dets[i]);
    }
    rd->kr = kr;
    rd->max_field = o->max_field_bytes ? o->max_field_bytes : REDACT_DEFAULT_MAX_FIELD;
    rd->dets = sp.dets;
    rd->ndets = k;
    rd->hdrs = sp.hdrs;
    rd->nhdrs = sp.nhdrs;
    rd->params = sp.params;
    rd->nparams = sp.nparams;
    rd->segs = sp.segs;
    rd->nsegs = sp.nsegs;
    rd->last_hit = calloc(k + 1, sizeof(*rd->last_hit));
    rd->pend_to = calloc(k + 1, sizeof(*rd->pend_to));
    rd->pending = calloc(k + 1, sizeof(*rd->pending));
    if (rd->last_hit == NULL || rd->pend_to == NULL || rd->pending == NULL) {
        redact_errf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < k; i++)
        rd->last_hit[i] = -1;
    if (compile_all(rd, err, errlen) == -1)
        goto fail;
    return rd;
fail:
    redact_free(rd);
    return NULL;
}

struct redact *redact_new(const struct redact_opts *o, const struct redact_keyring *kr, char *err, size_t errlen)
{
    if (kr == NULL) {
        redact_errf(err, errlen, "no key ring");
        return NULL;
    }
    return build(o, kr, err, errlen);
}

int redact_check(const struct redact_opts *o, char *err, size_t errlen)
{
    struct redact *rd = build(o, NULL, err, errlen);

    if (rd == NULL)
        return -1;
    redact_free(rd);
    return 0;
}

void redact_free(struct redact *rd)
{
    struct redact_spec sp;

    if (rd == NULL)
        return;
    hs_free_scratch(rd->scratch);
    hs_free_database(rd->db);
    hs_free_database(rd->segdb);
    sp = (struct redact_spec){.dets = rd->dets, .ndets = rd->ndets, .hdrs = rd->hdrs, .nhdrs = rd->nhdrs,
                              .params = rd->params, .nparams = rd->nparams, .segs = rd->segs, .nsegs = rd->nsegs};
    redact_spec_fini(&sp);
    free(rd->last_hit);
    free(rd->pend_to);
    free(rd->pending);
    free(rd->raw);
    free(rd->batch);
    free(rd->fsp);
    free(rd->fidx);
    free(rd->hits);
    free(rd->spans);
    free(rd);
}

size_t redact_detector_count(const struct redact *rd)
{
    return rd->ndets;
}

const char *redact_detector_id(const struct redact *rd, size_t i)
{
    return i < rd->ndets ? rd->dets[i].id : NULL;
}

const char *redact_detector_class(const struct redact *rd, size_t i)
{
    return i < rd->ndets ? rd->dets[i].cls : NULL;
}
