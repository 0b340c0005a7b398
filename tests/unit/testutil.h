/* tests/unit/testutil.h - small helpers the unit tests share: a private temp directory and
 * its removal. Header-only (static functions), included by tests, never by the libraries. */
#ifndef VIGIL_TESTS_UNIT_TESTUTIL_H
#define VIGIL_TESTS_UNIT_TESTUTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Removes <path> and everything below it. */
static inline void tu_rm_rf(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;

    if (d == NULL) {
        unlink(path);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char sub[4096];
        size_t pl = strlen(path), nl = strlen(de->d_name);

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 || pl + nl + 2 > sizeof(sub))
            continue;
        memcpy(sub, path, pl);
        sub[pl] = '/';
        memcpy(sub + pl + 1, de->d_name, nl + 1);
        tu_rm_rf(sub);
    }
    closedir(d);
    rmdir(path);
}

#endif
