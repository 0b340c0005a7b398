/* proxy/user.h - dropping root after start-up ("user" config key, `vigil --user NAME`).
 *
 * Started as root, vigil binds its listeners (ports below 1024 need it), opens its keys and
 * sinks, and then becomes <user> for good: the data directory trees (DATA_DIR and every file
 * sink's "dir") are handed to the user so the record can go on being written (segments,
 * digests, spools, keys keep their modes), then supplementary groups, gid and uid change.
 * glibc applies set*id to every thread of the process, so threads already running (the
 * pipeline, the sinks) change with the main thread. */
#ifndef VIGIL_PROXY_USER_H
#define VIGIL_PROXY_USER_H

#include <stddef.h>

#include "proxy/proxy.h"

/* Becomes <user> (NULL: nobody to become) as described above. Not root: nothing changes
 * (a warning if <user> is not the current user). Root without a user: a warning. Returns 0,
 * or -1 with <err> when the user is unknown, a tree could not be handed over or any step of
 * the drop failed; the caller must then exit rather than go on as root. Main thread, once
 * every listener is bound. */
int proxy_user_drop(const struct proxy_config *cfg, const char *user, char *err, size_t errlen);

#endif
