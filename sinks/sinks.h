/* sinks/sinks.h - the sink registry: the configured sinks by type.
 *
 * The table of types is written by hand in sinks/registry.c (no self-registration: the
 * linker would drop an unreferenced object file of a static library, and the sink with it). */
#ifndef VIGIL_SINKS_SINKS_H
#define VIGIL_SINKS_SINKS_H

#include "audit/sink.h"

extern const struct sink_ops sink_file_ops;
extern const struct sink_ops sink_kafka_ops;
extern const struct sink_ops sink_syslog_ops;

/* The ops table of <type>, or NULL when there is no such type. */
const struct sink_ops *sink_type_find(const char *type);

/* Opens one configured sink from its config object <conf> ({"type": ..., "name": ...,
 * type-specific keys}). <path> is the object's JSON path for error messages ("sinks[0]").
 * Returns the instance, or NULL with <err> naming the JSON path. Caller frees with
 * sink_free(). */
struct sink *sink_open(const json_t *conf, const char *path, const struct sink_env *env, char *err, size_t errlen);

/* Closes and frees <s>; NULL does nothing. */
void sink_free(struct sink *s);

#endif
