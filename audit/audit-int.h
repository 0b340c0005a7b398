/* audit/audit-int.h - private declarations shared by the audit/ sources; never included outside audit/
 * (tests may include it to reach internals).
 *
 * Clock helpers used by the event model, the pipeline and diagnostics. Both clocks are read
 * with clock_gettime(), a vDSO call on Linux: no syscall on the producers' path. */
#ifndef VIGIL_AUDIT_AUDIT_INT_H
#define VIGIL_AUDIT_AUDIT_INT_H

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

#endif
