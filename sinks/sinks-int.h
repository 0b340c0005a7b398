/* sinks/sinks-int.h - private declarations shared by the sources of sinks/; never included outside
 * sinks/ (tests may include it).
 *
 * Error text of ops->open. sink_open() knows the JSON path of the sink's object
 * ("sinks[0]") and an implementation knows the key, so the two are joined:
 *   - about a key, <err> starts with the key's path relative to the object, beginning with
 *     '.' or '[': ".frame_records: must be a positive integer";
 *   - about the object as a whole, <err> is plain text: "cannot create /x/audit: ...".
 * sink_open() turns these into "sinks[0].frame_records: must be a positive integer" and
 * "sinks[0]: cannot create /x/audit: ...". The helpers below follow the convention. */
#ifndef VIGIL_SINKS_SINKS_INT_H
#define VIGIL_SINKS_SINKS_INT_H

#include <stddef.h>

#include <jansson.h>

/* Checks that every key of the object <conf> is one of the NULL-terminated <known>. 0, or
 * -1 with ".<key>: unknown key" in <err>. */
int sink_conf_check_keys(const json_t *conf, const char *const *known, char *err, size_t errlen);

/* Reads the integer <key> of <conf> into *<inout> when present (absent: *<inout> keeps its
 * default). Refuses anything but an integer within [<min>, <max>]: -1 with
 * ".<key>: must be a positive integer" (when <min> is 1) or
 * ".<key>: must be an integer from <min> to <max>" in <err>. */
int sink_conf_int(const json_t *conf, const char *key, long long min, long long max, long long *inout, char *err,
                  size_t errlen);

/* Reads the string <key> of <conf>, which must be one of the NULL-terminated <names>, into
 * *<inout> as its index when present. -1 with ".<key>: must be one of "a", "b"" in <err>. */
int sink_conf_enum(const json_t *conf, const char *key, const char *const *names, int *inout, char *err,
                   size_t errlen);

#endif
