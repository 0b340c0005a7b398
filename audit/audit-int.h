/* audit/audit-int.h - private declarations shared by the audit/ sources; never included outside audit/
 * (tests may include it to reach internals).
 *
 * Clock helpers used by the event model, the pipeline and diagnostics. Both clocks are read
 * with clock_gettime(), a vDSO call on Linux: no syscall on the producers' path. */
#ifndef VIGIL_AUDIT_AUDIT_INT_H
#define VIGIL_AUDIT_AUDIT_INT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define AUDIT_CACHELINE 64

/* CLOCK_REALTIME in microseconds since the epoch. Any thread. */
static inline int64_t audit_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* CLOCK_MONOTONIC in microseconds, for intervals (ticks, back-off, rate limits). Any thread. */
static inline int64_t audit_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Upper bound of the JSON text audit_event_to_json() writes for an event whose text area
 * holds <text_used> bytes: every text byte may become a 6-byte escape, the rest is bounded. */
#define AUDIT_JSON_FIXED_MAX 1536
/* A byte of text becomes at most 6 (an escape); a packed list entry (at least 5 bytes of text)
 * also gains at most 48 bytes of member names and punctuation: 16 per byte covers both. */
#define AUDIT_JSON_MAX(text_used) (AUDIT_JSON_FIXED_MAX + 16 * (size_t)(text_used))

/* Writes <s> as a quoted JSON string at <p> (room for 6 * <len> + 2 bytes); returns the end.
 * Control characters become \u00XX, bytes that are not UTF-8 become \ufffd. The one JSON
 * string escaper of the native and OCSF forms. */
char *audit_json_str(char *p, const char *s, size_t len);

/* ---- the redaction stage (audit/redaction.c), driven by the pipeline thread ----
 *
 * Per event, in this order:
 *   audit_redactor_rotate_if_due()  a new key epoch when one is due (start, N records, T s)
 *   audit_redactor_prepare(in)      redacts every user-data field of <in> (one redact_fields call)
 *   audit_redactor_key_event(kev)   while it returns 1: write <kev> (an audit.key) as a record
 *   audit_redactor_finish(in, seq, out)  the redacted event, sealed originals bound to <seq>
 * Pipeline thread only, but for the counters (any thread). */
struct audit_event;
struct audit_redactor;
struct json_t;
struct audit_redaction_stats;
struct audit_redaction_count;

/* Parses <conf> (the "redaction" object; NULL: defaults), opens the token key ring (in
 * conf's keys_dir, else <keys_dir>) and loads the roles file; then audit_redactor_compile()
 * compiles the detectors. 0 with
 * the stage in *<out>, or with *<out> NULL when "enabled" is false; -1 with <err>. */
int audit_redactor_new(struct audit_redactor **out, const struct json_t *conf, const char *keys_dir, char *err,
                       size_t errlen);
void audit_redactor_free(struct audit_redactor *r); /* wipes the data keys; NULL does nothing */

/* Compiles the detectors (a Vectorscan database: hundreds of milliseconds). 0, or -1 with
 * <err> naming "redaction.detectors". Until it has succeeded, audit_redactor_prepare() refuses
 * every event (lost, never written unredacted). Idempotent. */
int audit_redactor_compile(struct audit_redactor *r, char *err, size_t errlen);

void audit_redactor_rotate_if_due(struct audit_redactor *r);

/* 0, or -1 when memory ran out (the event must not be written: count it as lost). Borrows <in>
 * until audit_redactor_finish(). */
int audit_redactor_prepare(struct audit_redactor *r, const struct audit_event *in);

/* 1 with the next audit.key record due in <ev>, else 0. The caller writes it before the
 * event; if it cannot (serialization failed), it calls audit_redactor_key_failed() and the
 * key is dropped (the values it would seal are not kept). */
int audit_redactor_key_event(struct audit_redactor *r, struct audit_event *ev);
void audit_redactor_key_failed(struct audit_redactor *r);

/* Builds the redacted copy of <in> (as prepared) into <out>, whose record will be <seq>. */
void audit_redactor_finish(struct audit_redactor *r, const struct audit_event *in, uint64_t seq,
                           struct audit_event *out);

void audit_redactor_stats(const struct audit_redactor *r, struct audit_redaction_stats *out);
size_t audit_redactor_counts(const struct audit_redactor *r, struct audit_redaction_count *out, size_t max);

#endif
