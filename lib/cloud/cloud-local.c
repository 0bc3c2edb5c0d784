// SPDX-License-Identifier: MIT
/* The local side of a remote (remote.h): the state file IMAGE.topcow that
 * records which generation a local copy matches, and who this machine is
 * for manifests and leases. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "remote.h"
#include "strbuf.h"

#define STATE_MAX 8192

char *
local_state_path(const char *image)
{
    struct strbuf b = {0};
    strbuf_addf(&b, "%s.topcow", image);
    return strbuf_release(&b);
}

void
local_state_clear(struct local_state *s)
{
    free(s->remote);
    memset(s, 0, sizeof *s);
}

int
local_state_read(const char *image, struct local_state *out)
{
    memset(out, 0, sizeof *out);
    char *path = local_state_path(image);
    RETURN_ERR_IF(!path, -ENOMEM, "cloud: out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        int r = e == ENOENT ? -ENOENT : err_set_errno(-e, "cloud: %s", path);
        free(path);
        return r;
    }
    char buf[STATE_MAX + 1];
    ssize_t n = read(fd, buf, STATE_MAX);
    close(fd);
    int r = 0;
    if (n < 0) {
        r = err_set_errno(-errno, "cloud: %s", path);
        goto out;
    }
    buf[n] = '\0';
    char remote[4096], gen[CLOUD_GEN_MAX];
    if (sscanf(buf, "topcow-local 1\nremote %4095[^\n]\ngeneration %17[^\n]\n", remote, gen) != 2 ||
        !cloud_gen_valid(gen)) {
        r = err_set(-EPROTO, "cloud: %s is not a topcow state file (delete it to push as new)",
                    path);
        goto out;
    }
    out->remote = strdup(remote);
    snprintf(out->gen, sizeof out->gen, "%s", gen);
    if (!out->remote)
        r = err_set(-ENOMEM, "cloud: out of memory");
out:
    free(path);
    return r;
}

int
local_state_write(const char *image, const char *remote, const char *gen)
{
    char *path = local_state_path(image);
    struct strbuf tb = {0}, cb = {0};
    strbuf_addf(&tb, "%s.tmp%d", path ? path : "", (int)getpid());
    strbuf_addf(&cb, "topcow-local 1\nremote %s\ngeneration %s\n", remote, gen);
    int r = 0, fd = -1;
    if (!path || strbuf_failed(&tb) || strbuf_failed(&cb)) {
        r = err_set(-ENOMEM, "cloud: out of memory");
        goto out;
    }
    fd = open(tb.s, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        r = err_set_errno(-errno, "cloud: %s", tb.s);
        goto out;
    }
    if (write(fd, cb.s, cb.len) != (ssize_t)cb.len || fsync(fd) < 0) {
        r = err_set_errno(errno ? -errno : -EIO, "cloud: writing %s", tb.s);
        goto out;
    }
    if (rename(tb.s, path) < 0)
        r = err_set_errno(-errno, "cloud: %s", path);
out:
    if (fd >= 0)
        close(fd);
    if (r < 0 && tb.s)
        unlink(tb.s);
    strbuf_free(&tb);
    strbuf_free(&cb);
    free(path);
    return r;
}

/* @s with anything but letters, digits and "._-" replaced by '_', so a
 * value fits one line of a manifest or lease. */
static void
tidy(char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            *s = '_';
}

void
cloud_whoami(char *user, size_t user_size, char *host, size_t host_size, char *machine,
             size_t machine_size)
{
    struct passwd pw, *pp = NULL;
    char pwbuf[1024];
    if (getpwuid_r(getuid(), &pw, pwbuf, sizeof pwbuf, &pp) == 0 && pp)
        snprintf(user, user_size, "%s", pw.pw_name);
    else
        snprintf(user, user_size, "uid%u", (unsigned)getuid());
    char h[256] = "";
    if (gethostname(h, sizeof h - 1) < 0 || !h[0])
        snprintf(h, sizeof h, "localhost");
    snprintf(host, host_size, "%s", h);
    const char *env = getenv("TOPCOW_MACHINE_ID");
    char id[128] = "";
    if (env && *env) {
        snprintf(id, sizeof id, "%s", env);
    } else {
        FILE *f = fopen("/etc/machine-id", "re");
        if (f) {
            if (!fgets(id, sizeof id, f))
                id[0] = '\0';
            fclose(f);
        }
        id[strcspn(id, "\n")] = '\0';
        if (!id[0])
            snprintf(id, sizeof id, "%s", h);
    }
    snprintf(machine, machine_size, "%s", id);
    tidy(user);
    tidy(host);
    tidy(machine);
}
