/* audit/diag.h - the program's own diagnostics (stderr), kept apart from the audit record.
 *
 * Only audit_emit() writes the record; everything the program says about itself (startup,
 * reloads, sink trouble, bugs) goes through diag_log(). A diagnostic never carries a secret
 * or a payload value: flow ids, rule ids, lengths and token classes only. Thread-safe: one
 * write(2) per line. */
#ifndef VIGIL_AUDIT_DIAG_H
#define VIGIL_AUDIT_DIAG_H

enum diag_level {
    DIAG_DEBUG = 0,
    DIAG_INFO,
    DIAG_WARN,
    DIAG_ERROR,
};

/* Lines below <lvl> are not printed. Default DIAG_INFO; VIGIL_LOG_LEVEL=debug|info|warn|error
 * in the environment overrides it at the first call. */
void diag_set_level(enum diag_level lvl);

/* "2026-11-26T16:30:45.123Z vigil[pid] WARN component: message\n" on stderr. */
void diag_log(enum diag_level lvl, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
