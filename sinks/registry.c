/* sinks/registry.c - the table of sink types and the opening of configured instances.
 *
 * The table is written by hand: a type that registered itself from a constructor would
 * vanish when the linker skips its unreferenced object file. sink_open() checks every ops
 * slot once, so the pipeline calls them without testing for NULL.
 *
 * sink_open() parses the keys every sink takes and hands the type only the rest:
 *
 *   type      "file" | "kafka" | "syslog"                         (required)
 *   name      diagnostics, audit.loss reasons, spool directory     (default: the type)
 *   format    "native" | "ocsf"                                    (default "native")
 *   on_full   "block" | "spill" | "drop", when the sink's queue is full
 *             (default: file "block": the local record is the one that must not have holes;
 *              kafka and syslog "spill": a remote outage must stall neither the proxy nor
 *              the file sink, and the spool replays in order when the peer is back)
 *   required  bool: /readyz fails while this sink is not healthy
 *             (default: true for file, false for the others) */
#include "sinks/sinks.h"
#include "sinks/sinks-int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct sink_ops *const sink_types[] = {
    &sink_file_ops,
    &sink_kafka_ops,
    &sink_syslog_ops,
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
    if (ops->health == NULL)
        return "health";
    if (ops->stats == NULL)
        return "stats";
    return NULL;
}

static const char *const common_keys[] = {"type", "name", "format", "on_full", "required", NULL};
static const char *const format_names[] = {"native", "ocsf", NULL};
static const char *const on_full_names[] = {"block", "spill", "drop", NULL};

/* Per-type defaults of on_full and required (see the header comment). */
static void type_defaults(const char *type, enum sink_on_full *on_full, int *required)
{
    if (strcmp(type, "file") == 0) {
        *on_full = SINK_ON_FULL_BLOCK;
        *required = 1;
    } else {
        *on_full = SINK_ON_FULL_SPILL;
        *required = 0;
    }
}

/* Parses the common keys of <conf> into <s>. 0, or -1 with <err> relative to the object. */
static int parse_common(struct sink *s, const char *type, const json_t *conf, char *err, size_t errlen)
{
    int format = SINK_FORMAT_NATIVE, on_full, required;
    enum sink_on_full def_on_full;
    const json_t *v;

    type_defaults(type, &def_on_full, &required);
    on_full = (int)def_on_full;
    if (sink_conf_enum(conf, "format", format_names, &format, err, errlen) == -1 ||
        sink_conf_enum(conf, "on_full", on_full_names, &on_full, err, errlen) == -1)
        return -1;
    v = json_object_get(conf, "required");
    if (v != NULL) {
        if (!json_is_boolean(v)) {
            set_err(err, errlen, ".required: must be true or false");
            return -1;
        }
        required = json_is_true(v);
    }
    s->format = (enum sink_format)format;
    s->on_full = (enum sink_on_full)on_full;
    s->required = required;
    return 0;
}

/* A shallow copy of <conf> without the common keys: what ops->open gets. NULL on ENOMEM. */
static json_t *type_conf(const json_t *conf)
{
    json_t *c = json_copy((json_t *)conf);

    for (size_t i = 0; c != NULL && common_keys[i] != NULL; i++)
        json_object_del(c, common_keys[i]);
    return c;
}

struct sink *sink_open(const json_t *conf, const char *path, const struct sink_env *env, char *err, size_t errlen)
{
    const struct sink_ops *ops;
    const json_t *jtype, *jname;
    const char *type, *name, *slot;
    struct sink *s = NULL;
    json_t *tconf;
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
    if (strchr(name, '/') != NULL || name[0] == '.') {
        /* it names the sink's spool directory under DATA_DIR/spool */
        set_err(err, errlen, "%s.name: must not contain '/' or start with '.'", path);
        return NULL;
    }

    s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto oom;
    s->ops = ops;
    s->name = strdup(name);
    if (s->name == NULL)
        goto oom;
    msg[0] = '\0';
    if (parse_common(s, type, conf, msg, sizeof(msg)) == -1) {
        set_err(err, errlen, "%s%s", path, msg);
        goto fail;
    }
    tconf = type_conf(conf);
    if (tconf == NULL)
        goto oom;
    if (ops->open(s, tconf, env, msg, sizeof(msg)) == -1) {
        if (msg[0] == '.' || msg[0] == '[')
            set_err(err, errlen, "%s%s", path, msg);
        else
            set_err(err, errlen, "%s: %s", path, msg[0] != '\0' ? msg : "cannot open");
        json_decref(tconf);
        ops->close(s);
        goto fail;
    }
    json_decref(tconf);
    return s;

oom:
    set_err(err, errlen, "%s: out of memory", path);
fail:
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
