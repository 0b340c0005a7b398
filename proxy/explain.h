/* proxy/explain.h - `vigil --explain URL`: a policy decision trace without traffic. */
#ifndef VIGIL_PROXY_EXPLAIN_H
#define VIGIL_PROXY_EXPLAIN_H

#include <stddef.h>
#include <stdio.h>

#include "proxy/proxy.h"

#define PROXY_EXPLAIN_MAX_HEADERS 32

struct proxy_explain_opts {
    const char *url;       /* "http://host[:port]/path?q", "https://host[:port]/..." (a CONNECT), or "host:port" */
    const char *client;    /* client IP; default 127.0.0.1 */
    const char *principal; /* as if authenticated so */
    const char *ip;        /* the destination address, instead of resolving the host */
    const char *method;    /* default GET (CONNECT for https:// and host:port) */
    const char *headers[PROXY_EXPLAIN_MAX_HEADERS]; /* "Name: value" */
    size_t nheaders;
};

/* Evaluates every phase of <cfg>'s policy for the request <o> describes and prints each
 * rule considered (matched or not, and why) and each phase's decision to <out>. Resolves
 * the host with the system resolver unless <o>->ip is given. Returns 0 when the request
 * would be allowed, 1 when a phase denies it, 2 with <err> on bad input. */
int proxy_explain(const struct proxy_config *cfg, const struct proxy_explain_opts *o, FILE *out, char *err,
                  size_t errlen);

#endif
