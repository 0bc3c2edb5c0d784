// SPDX-License-Identifier: MIT
/* Reading the statistics directory (topcow_stats_scan): every live file is
 * mapped read-only and copied into a struct topcow_stats; files whose owner
 * is gone (nobody holds their lock) are removed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "stats.h"

/* A temporary file older than this whose creator is gone is removed (a
 * creator holds its lock within microseconds of creating it). */
#define STALE_TMP_SECONDS 10

static bool
has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && strcmp(name + n - k, suffix) == 0;
}

/* Read one file into @st.  Returns 1 when it was read, 0 when it is not a
 * live statistics file (a stale one is removed). */
static void
remove_if_stale_tmp(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
        time(NULL) - sb.st_mtime > STALE_TMP_SECONDS && flock(fd, LOCK_EX | LOCK_NB) == 0)
        unlinkat(dfd, name, 0);
    close(fd);
}

static int
read_one(int dfd, const char *name, struct topcow_stats *st)
{
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    int got = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        /* Nobody holds it: its process is gone. */
        unlinkat(dfd, name, 0);
        goto out;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) ||
        (uint64_t)sb.st_size < sizeof(struct stats_region))
        goto out;
    const struct stats_region *r =
        mmap(NULL, sizeof *r, PROT_READ, MAP_SHARED, fd, 0);
    if (r == MAP_FAILED)
        goto out;
    if (memcmp(r->magic, STATS_MAGIC, sizeof r->magic) == 0 && r->version == STATS_VERSION &&
        r->size == sizeof *r) {
        stats_region_copy(r, st);
        got = 1;
    }
    munmap((void *)r, sizeof *r);
out:
    close(fd);
    return got;
}

int
topcow_stats_scan(const char *dir, topcow_stats_fn fn, void *opaque)
{
    err_begin("stats scan");
    if (!dir)
        dir = topcow_stats_dir();
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return err_set_errno(-errno, "cannot read statistics directory %s", dir);
    }
    struct topcow_stats *st = malloc(sizeof *st);
    if (!st) {
        closedir(d);
        return err_set(-ENOMEM, "out of memory");
    }
    int ret = 0;
    struct dirent *de;
    while (ret == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.') {
            if (has_suffix(de->d_name, ".tmp"))
                remove_if_stale_tmp(dirfd(d), de->d_name);
            continue;
        }
        if (!has_suffix(de->d_name, STATS_SUFFIX))
            continue;
        st->struct_size = sizeof *st;
        if (read_one(dirfd(d), de->d_name, st))
            ret = fn(opaque, st);
    }
    free(st);
    closedir(d);
    return ret;
}
