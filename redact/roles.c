/* redact/roles.c - compliance/roles.json: who may reveal which classes of sealed originals.
 *
 *   {"version": 1, "roles": [
 *      {"name": "dlp_analyst", "description": "...", "public_key": "NAME.pub" | "<base64 X25519>" | null,
 *       "reveal": ["pii.*"]}]}
 *
 * A role with "public_key": null is declared but not provisioned: nothing is sealed to it.
 * Credentials are revealed only to roles that list credential classes explicitly: "*" does
 * not cover them (redact_class_match). Errors name the file and the JSON path. */
#include "redact/redact-int.h"

#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define ROLES_FILE_MAX (1024 * 1024)

struct role_store {
    struct redact_role pub;
    char *name;
    char *description;
    char **reveal;
};

struct redact_roles {
    struct role_store *roles;
    size_t n;
};

/* A class pattern: "*", a class, or a class prefix followed by ".*". */
static int valid_pattern(const char *p)
{
    size_t n = strlen(p);
    char buf[REDACT_CLASS_MAX + 1];

    if (strcmp(p, "*") == 0)
        return 1;
    if (n >= 3 && p[n - 1] == '*' && p[n - 2] == '.') {
        if (n - 2 > REDACT_CLASS_MAX)
            return 0;
        memcpy(buf, p, n - 2);
        buf[n - 2] = '\0';
        return redact_class_valid(buf) == 0;
    }
    return redact_class_valid(p) == 0;
}

static int sensitive(const char *cls)
{
    return strncmp(cls, "credential.", 11) == 0 || strcmp(cls, REDACT_CLASS_UNSCANNABLE) == 0;
}

int redact_class_match(const char *pattern, const char *cls)
{
    size_t n = strlen(pattern);

    if (strcmp(pattern, "*") == 0)
        return !sensitive(cls);
    if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '.')
        return strncmp(cls, pattern, n - 1) == 0 && cls[n - 1] != '\0';
    return strcmp(pattern, cls) == 0;
}

int redact_role_may_reveal(const struct redact_role *role, const char *cls)
{
    for (size_t i = 0; i < role->nreveal; i++)
        if (redact_class_match(role->reveal[i], cls))
            return 1;
    return 0;
}

void redact_roles_free(struct redact_roles *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++) {
        struct role_store *s = &r->roles[i];

        free(s->name);
        free(s->description);
        for (size_t k = 0; s->reveal && k < s->pub.nreveal; k++)
            free(s->reveal[k]);
        free(s->reveal);
    }
    free(r->roles);
    free(r);
}

size_t redact_roles_count(const struct redact_roles *r)
{
    return r->n;
}

const struct redact_role *redact_roles_at(const struct redact_roles *r, size_t i)
{
    return i < r->n ? &r->roles[i].pub : NULL;
}

const struct redact_role *redact_roles_find(const struct redact_roles *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->roles[i].name, name) == 0)
            return &r->roles[i].pub;
    return NULL;
}

static int valid_role_name(const char *s)
{
    size_t n = 0;

    for (; *s; s++, n++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return n > 0 && n <= 64;
}

static int decode_key(uint8_t out[REDACT_ROLE_KEY_BYTES], const char *b64, size_t len)
{
    size_t bin;

    return sodium_base642bin(out, REDACT_ROLE_KEY_BYTES, b64, len, " \t\r\n", &bin, NULL,
                             sodium_base64_VARIANT_ORIGINAL) == 0 && bin == REDACT_ROLE_KEY_BYTES ? 0 : -1;
}

/* "public_key" is the path of a .pub file as `audit-query keys new-role` writes it (relative
 * paths are taken from the roles file's directory), or the key itself in base64. */
static int role_public_key(uint8_t out[REDACT_ROLE_KEY_BYTES], const char *v, const char *origin, size_t idx,
                           char *e, size_t elen)
{
    char path[4096], why[512];
    const char *slash = strrchr(origin, '/');
    size_t vlen = strlen(v), len;
    char *text;
    int rc;

    if (vlen < 4 || strcmp(v + vlen - 4, ".pub") != 0) {
        if (decode_key(out, v, vlen) == -1)
            return redact_errf(e, elen, "roles[%zu].public_key: neither a .pub path nor the base64 of 32 bytes", idx);
        return 0;
    }
    if (v[0] == '/' || slash == NULL)
        rc = snprintf(path, sizeof(path), "%s", v);
    else
        rc = snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - origin), origin, v);
    if (rc < 0 || (size_t)rc >= sizeof(path))
        return redact_errf(e, elen, "roles[%zu].public_key: path too long", idx);
    text = redact_read_file(path, 1024, &len, why, sizeof(why));
    if (text == NULL)
        return redact_errf(e, elen, "roles[%zu].public_key: %s", idx, why);
    rc = decode_key(out, text, len);
    free(text);
    if (rc == -1)
        return redact_errf(e, elen, "roles[%zu].public_key: %s: not the base64 of 32 bytes", idx, path);
    return 0;
}

static int parse_role(struct redact_roles *r, json_t *j, size_t idx, const char *origin, char *e, size_t elen)
{
    static const char *const keys[] = {"name", "description", "public_key", "reveal", NULL};
    struct role_store *s = &r->roles[idx];
    const char *k;
    json_t *v, *name, *desc, *pk, *rev;
    size_t i;

    if (!json_is_object(j))
        return redact_errf(e, elen, "roles[%zu]: not an object", idx);
    json_object_foreach(j, k, v) {
        int known = 0;

        for (const char *const *p = keys; *p; p++)
            known |= strcmp(*p, k) == 0;
        if (!known)
            return redact_errf(e, elen, "roles[%zu].%s: unknown key", idx, k);
    }
    name = json_object_get(j, "name");
    desc = json_object_get(j, "description");
    pk = json_object_get(j, "public_key");
    rev = json_object_get(j, "reveal");
    if (!json_is_string(name) || !valid_role_name(json_string_value(name)))
        return redact_errf(e, elen, "roles[%zu].name: required, 1-64 characters of [a-z0-9_.-]", idx);
    for (size_t o = 0; o < idx; o++)
        if (strcmp(r->roles[o].name, json_string_value(name)) == 0)
            return redact_errf(e, elen, "roles[%zu].name: duplicate role \"%s\"", idx, json_string_value(name));
    if (desc != NULL && !json_is_string(desc))
        return redact_errf(e, elen, "roles[%zu].description: not a string", idx);
    if (pk == NULL)
        return redact_errf(e, elen, "roles[%zu].public_key: required (a .pub path, base64 of 32 bytes, or null)", idx);
    if (!json_is_null(pk)) {
        if (!json_is_string(pk))
            return redact_errf(e, elen, "roles[%zu].public_key: not a string (a .pub path or base64 of 32 bytes)", idx);
        if (role_public_key(s->pub.public_key, json_string_value(pk), origin, idx, e, elen) == -1)
            return -1;
        s->pub.has_key = 1;
    }
    if (!json_is_array(rev))
        return redact_errf(e, elen, "roles[%zu].reveal: required, an array of class patterns", idx);
    s->name = strdup(json_string_value(name));
    s->description = strdup(desc ? json_string_value(desc) : "");
    s->reveal = calloc(json_array_size(rev) + 1, sizeof(*s->reveal));
    if (s->name == NULL || s->description == NULL || s->reveal == NULL)
        return redact_errf(e, elen, "out of memory");
    json_array_foreach(rev, i, v) {
        if (!json_is_string(v) || !valid_pattern(json_string_value(v)))
            return redact_errf(e, elen, "roles[%zu].reveal[%zu]: not a class pattern (\"pii.email\", \"pii.*\", \"*\")",
                               idx, i);
        s->reveal[i] = strdup(json_string_value(v));
        if (s->reveal[i] == NULL)
            return redact_errf(e, elen, "out of memory");
        s->pub.nreveal = i + 1;
    }
    s->pub.name = s->name;
    s->pub.description = s->description;
    s->pub.reveal = (const char *const *)s->reveal;
    return 0;
}

struct redact_roles *redact_roles_parse(const char *json, size_t len, const char *origin, char *err, size_t errlen)
{
    struct redact_roles *r = NULL;
    char e[512] = "";
    json_error_t jerr;
    json_t *root, *roles, *v;
    const char *k;
    size_t i;

    if (sodium_init() == -1) {
        redact_errf(err, errlen, "libsodium failed to initialize");
        return NULL;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        redact_errf(err, errlen, "%s:%d:%d: %s", origin, jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        redact_errf(e, sizeof(e), "(root): not an object");
        goto fail;
    }
    json_object_foreach(root, k, v) {
        if (strcmp(k, "$schema") != 0 && strcmp(k, "version") != 0 && strcmp(k, "description") != 0
            && strcmp(k, "roles") != 0) {
            redact_errf(e, sizeof(e), "%s: unknown key", k);
            goto fail;
        }
    }
    v = json_object_get(root, "version");
    if (v != NULL && !(json_is_integer(v) && json_integer_value(v) == 1)) {
        redact_errf(e, sizeof(e), "version: must be 1");
        goto fail;
    }
    roles = json_object_get(root, "roles");
    if (!json_is_array(roles)) {
        redact_errf(e, sizeof(e), "roles: required, an array");
        goto fail;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->roles = calloc(json_array_size(roles) + 1, sizeof(*r->roles))) == NULL) {
        redact_errf(e, sizeof(e), "out of memory");
        goto fail;
    }
    json_array_foreach(roles, i, v) {
        r->n = i + 1; /* so that a failure frees what this role allocated */
        if (parse_role(r, v, i, origin, e, sizeof(e)) == -1)
            goto fail;
    }
    json_decref(root);
    return r;
fail:
    redact_errf(err, errlen, "%s: %s", origin, e);
    redact_roles_free(r);
    json_decref(root);
    return NULL;
}

struct redact_roles *redact_roles_load(const char *path, char *err, size_t errlen)
{
    struct redact_roles *r;
    size_t len;
    char *text = redact_read_file(path, ROLES_FILE_MAX, &len, err, errlen);

    if (text == NULL)
        return NULL;
    r = redact_roles_parse(text, len, path, err, errlen);
    free(text);
    return r;
}
