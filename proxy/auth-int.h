/* proxy/auth-int.h - private to proxy/ and its tests: hooks into proxy/auth.c. */
#ifndef VIGIL_PROXY_AUTH_INT_H
#define VIGIL_PROXY_AUTH_INT_H

#include <stdint.h>

#include "proxy/auth.h"

/* Replaces the monotonic clock (seconds) that cache entries expire by, so tests can step
 * past PROXY_AUTH_CACHE_TTL_S without sleeping. NULL restores the real clock. Call before
 * any other thread uses <a>. */
void proxy_auth_set_clock(struct proxy_auth *a, int64_t (*now_s)(void));

#endif
