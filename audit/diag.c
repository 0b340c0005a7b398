/* audit/diag.c - the program's diagnostics on stderr, one line per message.
 *
 * Each line is formatted into a stack buffer and written with a single write(2), so lines of
 * concurrent threads never interleave (writes to a pipe or terminal below PIPE_BUF bytes are
 * atomic). No lock, no allocation: diagnostics work when memory is short. A message that
 * does not fit is cut and ends with "..."; newlines inside a message become spaces so one
 * call stays one line. */
#include "audit/diag.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "audit/audit-int.h"
#include "audit/audit.h"

#define DIAG_LINE_MAX 1024

static _Atomic int diag_level = DIAG_INFO;
static pthread_once_t diag_once = PTHREAD_ONCE_INIT;

static void diag_init(void)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    const char *env = getenv("VIGIL_LOG_LEVEL");

    if (env == NULL)
        return;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(env, names[i]) == 0) {
            atomic_store(&diag_level, i);
            return;
        }
    }
    if (strcasecmp(env, "warning") == 0)
        atomic_store(&diag_level, DIAG_WARN);
}

void diag_set_level(enum diag_level lvl)
{
    /* The environment is read first, so an explicit level (a command-line flag) wins. */
    pthread_once(&diag_once, diag_init);
    atomic_store(&diag_level, (int)lvl);
}

void diag_log(enum diag_level lvl, const char *component, const char *fmt, ...)
{
    static const char *const lvlnames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char line[DIAG_LINE_MAX], ts[32];
    size_t len, head;
    va_list ap;
    int n;

    pthread_once(&diag_once, diag_init);
    if ((int)lvl < atomic_load_explicit(&diag_level, memory_order_relaxed))
        return;
    if ((unsigned)lvl > DIAG_ERROR)
        lvl = DIAG_ERROR;

    audit_format_time(audit_now_us(), ts);
    ts[23] = 'Z'; /* milliseconds are enough here */
    ts[24] = '\0';
    n = snprintf(line, sizeof(line), "%s vigil[%ld] %s %s: ", ts, (long)getpid(), lvlnames[lvl],
                 component != NULL ? component : "-");
    head = n < 0 ? 0 : (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;

    va_start(ap, fmt);
    n = vsnprintf(line + head, sizeof(line) - head, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    len = head + (size_t)n;
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2;
        memcpy(line + len - 3, "...", 3);
    }
    for (size_t i = head; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';

    for (;;) {
        ssize_t w = write(STDERR_FILENO, line, len);

        if (w == -1 && errno == EINTR)
            continue;
        break; /* a short write or an error: nowhere better to report it */
    }
}
