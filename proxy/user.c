/* proxy/user.c - dropping root after start-up: hand over the data trees, then setgid,
 * initgroups, setuid, and make sure there is no way back. */
#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/diag.h"
#include "proxy/user.h"

/* nftw has no argument for its callback: the owner to set and the first error. */
static uid_t chown_uid;
static gid_t chown_gid;
static char chown_err[512];

static int chown_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type == FTW_NS || type == FTW_DNR) {
        snprintf(chown_err, sizeof(chown_err), "%s: cannot read", path);
        return 1;
    }
    if (st->st_uid == chown_uid && st->st_gid == chown_gid)
        return 0;
    if (lchown(path, chown_uid, chown_gid) == -1) {
        snprintf(chown_err, sizeof(chown_err), "chown %s: %s", path, strerror(errno));
        return 1;
    }
    return 0;
}

static int hand_over(const char *dir, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) == -1)
        return 0; /* nothing there yet; it is created later, as the user */
    chown_uid = uid;
    chown_gid = gid;
    chown_err[0] = '\0';
    if (nftw(dir, chown_entry, 16, FTW_PHYS | FTW_MOUNT) != 0) {
        snprintf(err, errlen, "%s", chown_err[0] ? chown_err : strerror(errno));
        return -1;
    }
    return 0;
}

int proxy_user_drop(const struct proxy_config *cfg, const char *user, char *err, size_t errlen)
{
    if (geteuid() != 0) {
        struct passwd *pw = user ? getpwnam(user) : NULL;
        if (user && (!pw || pw->pw_uid != geteuid()))
            diag_log(DIAG_WARN, "main", "not started as root: \"user\" %s is ignored, running as uid %u", user,
                     (unsigned)geteuid());
        return 0;
    }
    if (!user) {
        diag_log(DIAG_WARN, "main", "running as root: set \"user\" (or --user) to drop privileges after start-up");
        return 0;
    }
    errno = 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        snprintf(err, errlen, "user %s: %s", user, errno ? strerror(errno) : "no such user");
        return -1;
    }
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    if (uid == 0) {
        diag_log(DIAG_WARN, "main", "user %s is root: privileges stay", user);
        return 0;
    }

    /* the record goes on being written by the user: segments, digests, spools, keys */
    if (hand_over(cfg->data_dir, uid, gid, err, errlen) == -1)
        return -1;
    size_t i;
    json_t *s;
    json_array_foreach(cfg->sinks, i, s)
    {
        const char *type = json_string_value(json_object_get(s, "type"));
        const char *dir = json_string_value(json_object_get(s, "dir"));
        if (type && dir && strcmp(type, "file") == 0 && hand_over(dir, uid, gid, err, errlen) == -1)
            return -1;
    }

    if (setgid(gid) == -1) {
        snprintf(err, errlen, "setgid(%u): %s", (unsigned)gid, strerror(errno));
        return -1;
    }
    if (initgroups(user, gid) == -1) {
        snprintf(err, errlen, "initgroups(%s): %s", user, strerror(errno));
        return -1;
    }
    if (setuid(uid) == -1) {
        snprintf(err, errlen, "setuid(%u): %s", (unsigned)uid, strerror(errno));
        return -1;
    }
    /* no way back: a real, effective and saved uid of 0 would all allow it */
    if (setuid(0) != -1 || getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid) {
        snprintf(err, errlen, "privileges could not be dropped for good (uid %u euid %u)", (unsigned)getuid(),
                 (unsigned)geteuid());
        return -1;
    }
    diag_log(DIAG_INFO, "main", "running as %s (uid %u, gid %u)", user, (unsigned)uid, (unsigned)gid);
    return 0;
}
