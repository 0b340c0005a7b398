/* sinks/registry.c - the table of sink types and the opening of configured instances.
 *
 * The table is written by hand: a type that registered itself from a constructor would
 * vanish when the linker skips its unreferenced object file. sink_open() checks every ops
 * slot once, so the pipeline calls them without testing for NULL. */
#include "sinks/sinks.h"
#include "sinks/sinks-int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct sink_ops *const sink_types[] = {
    &sink_file_ops,
};

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const struct sink_ops *sink_type_find(const char *type)
{
    size_t i;

    if (type == NULL)
        return NULL;
    for (i = 0; i < sizeof(sink_types) / sizeof(sink_types[0]); i++) {
        if (strcmp(sink_types[i]->type, type) == 0)
            return sink_types[i];
    }
    return NULL;
}

/* The name of the first empty slot of <ops>, or NULL when all are set. */
static const char *missing_slot(const struct sink_ops *ops)
{
    if (ops->type == NULL)
        return "type";
    if (ops->open == NULL)
        return "open";
    if (ops->write == NULL)
        return "write";
    if (ops->tick == NULL)
        return "tick";
    if (ops->flush == NULL)
        return "flush";
    if (ops->close == NULL)
        return "close";
    return NULL;
}

struct sink *sink_open(const json_t *conf, const char *path, const struct sink_env *env, char *err, size_t errlen)
{
    const struct sink_ops *ops;
    const json_t *jtype, *jname;
    const char *type, *name, *slot;
    struct sink *s;
    char msg[512];

    if (path == NULL)
        path = "sink";
    if (!json_is_object(conf)) {
        set_err(err, errlen, "%s: must be an object", path);
        return NULL;
    }
    jtype = json_object_get(conf, "type");
    if (jtype == NULL) {
        set_err(err, errlen, "%s.type: missing", path);
        return NULL;
    }
    if (!json_is_string(jtype)) {
        set_err(err, errlen, "%s.type: must be a string", path);
        return NULL;
    }
    type = json_string_value(jtype);
    ops = sink_type_find(type);
    if (ops == NULL) {
        set_err(err, errlen, "%s.type: unknown sink type \"%.64s\"", path, type);
        return NULL;
    }
    slot = missing_slot(ops);
    if (slot != NULL) {
        set_err(err, errlen, "%s.type: sink type \"%s\" has no %s operation", path, type, slot);
        return NULL;
    }
    jname = json_object_get(conf, "name");
    if (jname != NULL && (!json_is_string(jname) || json_string_length(jname) == 0)) {
        set_err(err, errlen, "%s.name: must be a non-empty string", path);
        return NULL;
    }
    name = jname != NULL ? json_string_value(jname) : type;

    s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto oom;
    s->ops = ops;
    s->name = strdup(name);
    if (s->name == NULL)
        goto oom;
    msg[0] = '\0';
    if (ops->open(s, conf, env, msg, sizeof(msg)) == -1) {
        if (msg[0] == '.' || msg[0] == '[')
            set_err(err, errlen, "%s%s", path, msg);
        else
            set_err(err, errlen, "%s: %s", path, msg[0] != '\0' ? msg : "cannot open");
        ops->close(s);
        free(s->name);
        free(s);
        return NULL;
    }
    return s;

oom:
    set_err(err, errlen, "%s: out of memory", path);
    if (s != NULL)
        free(s->name);
    free(s);
    return NULL;
}

void sink_free(struct sink *s)
{
    if (s == NULL)
        return;
    s->ops->close(s);
    s->ctx = NULL;
    free(s->name);
    s->name = NULL;
    free(s);
}

/* ---- config helpers (sinks/sinks-int.h) ---- */

int sink_conf_check_keys(const json_t *conf, const char *const *known, char *err, size_t errlen)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)conf, key, v) {
        size_t i;

        for (i = 0; known[i] != NULL; i++) {
            if (strcmp(key, known[i]) == 0)
                break;
        }
        if (known[i] == NULL) {
            set_err(err, errlen, ".%.64s: unknown key", key);
            return -1;
        }
    }
    return 0;
}

int sink_conf_int(const json_t *conf, const char *key, long long min, long long max, long long *inout, char *err,
                  size_t errlen)
{
    const json_t *v = json_object_get(conf, key);
    long long x;

    if (v == NULL)
        return 0;
    if (json_is_integer(v)) {
        x = (long long)json_integer_value(v);
        if (x >= min && x <= max) {
            *inout = x;
            return 0;
        }
        if (min == 1 && x >= min) {
            set_err(err, errlen, ".%s: must be at most %lld", key, max);
            return -1;
        }
    }
    if (min == 1)
        set_err(err, errlen, ".%s: must be a positive integer", key);
    else
        set_err(err, errlen, ".%s: must be an integer from %lld to %lld", key, min, max);
    return -1;
}

int sink_conf_enum(const json_t *conf, const char *key, const char *const *names, int *inout, char *err,
                   size_t errlen)
{
    const json_t *v = json_object_get(conf, key);
    size_t i, off;

    if (v == NULL)
        return 0;
    if (json_is_string(v)) {
        for (i = 0; names[i] != NULL; i++) {
            if (strcmp(json_string_value(v), names[i]) == 0) {
                *inout = (int)i;
                return 0;
            }
        }
    }
    if (err == NULL || errlen == 0)
        return -1;
    off = (size_t)snprintf(err, errlen, ".%s: must be one of", key);
    for (i = 0; names[i] != NULL && off < errlen; i++)
        off += (size_t)snprintf(err + off, errlen - off, "%s \"%s\"", i == 0 ? "" : ",", names[i]);
    return -1;
}
