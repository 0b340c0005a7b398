/* proxy/errs.h - private to proxy/: the error lines a config or policy check collects, each
 * naming its JSON path ("rule_groups[0].rules[1].priority: ..."), into a caller's buffer. */
#ifndef VIGIL_PROXY_ERRS_H
#define VIGIL_PROXY_ERRS_H

#include <stddef.h>

struct errs {
    char *buf;
    size_t len, cap;
    int count;
};

/* Counts one error and appends its line (newline-separated) while <e>->buf has room. */
__attribute__((format(printf, 2, 3))) void proxy_add_err(struct errs *e, const char *fmt, ...);

#endif
