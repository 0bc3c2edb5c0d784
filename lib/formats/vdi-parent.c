// SPDX-License-Identifier: MIT
/* Finding the parent of a differencing VDI image.  VirtualBox links a
 * differencing image to its parent by UUID, not by path (its media registry
 * holds the paths): the child's header stores the parent's image UUID.  We
 * look for a .vdi file carrying that UUID in the child's directory and in
 * the directory above it, where a VM folder keeps its base disk when
 * differencing images live in its "Snapshots" subfolder. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "error.h"
#include "vdi-internal.h"

/* Directory entries looked at per directory, so that a huge directory
 * cannot make an open take forever. */
#define MAX_CANDIDATES 4096

static bool
has_vdi_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcasecmp(name + n - 4, ".vdi") == 0;
}

/* Whether @path is a readable VDI image (other than @self) whose image
 * UUID is @uuid. */
static bool
carries_uuid(const char *path, const struct stat *self, const uint8_t uuid[16])
{
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
        (st.st_dev == self->st_dev && st.st_ino == self->st_ino))
        return false;
    struct io *f;
    if (io_file_open(path, IO_RDONLY | IO_NOLOCK, &f) < 0) {
        err_clear();
        return false;
    }
    uint8_t buf[VDI_HEADER_END];
    bool match = (uint64_t)st.st_size >= sizeof buf && io_pread(f, buf, sizeof buf, 0) == 0 &&
                 vdi_has_signature(buf, sizeof buf) &&
                 memcmp(buf + VDI_OFF_UUID_IMAGE, uuid, 16) == 0;
    io_close(f);
    err_clear();
    return match;
}

/* Look in directory @dir (with a trailing '/', or "" for the current one)
 * for the image carrying @uuid; store its name (without @dir) in *@found. */
static int
scan_dir(const char *dir, const struct stat *self, const uint8_t uuid[16], char **found)
{
    *found = NULL;
    struct dirent **list;
    int n = scandir(*dir ? dir : ".", &list, NULL, alphasort);
    if (n < 0)
        return 0; /* an unreadable directory holds no parent we can use */
    int r = 0;
    for (int i = 0, looked = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        if (!*found && r == 0 && looked < MAX_CANDIDATES && has_vdi_suffix(name)) {
            looked++;
            size_t len = strlen(dir) + strlen(name) + 1;
            char *path = malloc(len);
            if (!path) {
                r = err_set(-ENOMEM, "out of memory");
            } else {
                snprintf(path, len, "%s%s", dir, name);
                if (carries_uuid(path, self, uuid) && !(*found = strdup(name)))
                    r = err_set(-ENOMEM, "out of memory");
                free(path);
            }
        }
        free(list[i]);
    }
    free(list);
    return r;
}

int
vdi_find_parent(const char *child, const uint8_t link[16], char **backing, char **full)
{
    *backing = *full = NULL;
    struct stat self;
    if (stat(child, &self) < 0)
        memset(&self, 0, sizeof self);
    /* The child's directory, with its trailing slash ("" for the cwd). */
    const char *slash = strrchr(child, '/');
    size_t dirlen = slash ? (size_t)(slash - child) + 1 : 0;
    CLEANUP_FREE char *dir = strndup(child, dirlen);
    CLEANUP_FREE char *updir = dir ? malloc(dirlen + 4) : NULL;
    if (!updir)
        return err_set(-ENOMEM, "out of memory");
    snprintf(updir, dirlen + 4, "%s../", dir);

    static const char *const prefixes[] = { "", "../" };
    const char *dirs[] = { dir, updir };
    for (size_t i = 0; i < 2; i++) {
        char *name;
        int r = scan_dir(dirs[i], &self, link, &name);
        if (r < 0)
            return r;
        if (!name)
            continue;
        size_t len = strlen(prefixes[i]) + strlen(name) + 1;
        *backing = malloc(len);
        if (*backing)
            snprintf(*backing, len, "%s%s", prefixes[i], name);
        free(name);
        if (*backing)
            *full = image_resolve_relative(child, *backing);
        if (!*full) {
            free(*backing);
            *backing = NULL;
            return err_set(-ENOMEM, "out of memory");
        }
        return 0;
    }
    char u[37];
    vdi_uuid_format(link, u);
    return err_set(-ENOENT,
                   "%s: vdi: parent image {%s} of this differencing image not found (looked "
                   "for a .vdi with that UUID in '%s' and '%s')",
                   child, u, *dir ? dir : "./", updir);
}
