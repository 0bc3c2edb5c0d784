// SPDX-License-Identifier: MIT
/* Replay driver: runs a fuzz target's LLVMFuzzerTestOneInput on every file
 * named on the command line, and on every regular file inside a named
 * directory (in name order; README.md files are skipped).  Built with the
 * normal compiler and no libFuzzer, so `meson test` replays the regression
 * inputs and a seed corpus under whatever sanitizers the build has.
 *
 * Each input runs in a child process, so a crash, a sanitizer report, an
 * abort from a broken contract or a hang (longer than FUZZ_REPLAY_TIMEOUT
 * seconds, default 60) fails that input only; the driver goes on and ends
 * with the list of failed inputs.  A directory that does not exist counts as
 * empty (a target without regression inputs yet).  Scratch files of the
 * targets go to a private TMPDIR, removed at the end.
 * Exit status: 0 when every input ran cleanly, 1 otherwise, 2 on bad usage. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned timeout_sec = 60;
static unsigned replayed, failed;

/* Read a whole file into a malloc'd buffer; NULL (errno set) on failure. */
static uint8_t *
slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = p;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    *size = len;
    return buf;
}

/* Run one input in a child; count and name it if it failed. */
static void
replay_file(const char *path)
{
    fprintf(stderr, "replay: %s\n", path);
    fflush(stderr);
    replayed++;
    pid_t pid = fork();
    if (pid == 0) {
        size_t size;
        uint8_t *data = slurp(path, &size);
        if (!data) {
            fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
            exit(1);
        }
        alarm(timeout_sec); /* SIGALRM's default action ends the child */
        LLVMFuzzerTestOneInput(data, size);
        free(data);
        exit(0); /* through exit(), so LeakSanitizer checks this input */
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) {
        fprintf(stderr, "replay: cannot run %s: %s\n", path, strerror(errno));
        failed++;
        return;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return;
    failed++;
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
        fprintf(stderr, "replay: FAILED %s: timed out after %u s (a hang)\n", path, timeout_sec);
    else if (WIFSIGNALED(st))
        fprintf(stderr, "replay: FAILED %s: killed by signal %d (%s)\n", path, WTERMSIG(st),
                strsignal(WTERMSIG(st)));
    else
        fprintf(stderr, "replay: FAILED %s: exit status %d\n", path, WEXITSTATUS(st));
}

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replay the regular files of @dir in name order; -1 if it cannot be read. */
static int
replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: cannot open %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int r = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, "README.md") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(names, cap * sizeof *names);
            if (!p) {
                r = -1;
                break;
            }
            names = p;
        }
        size_t len = strlen(dir) + strlen(de->d_name) + 2;
        if (!(names[n] = malloc(len))) {
            r = -1;
            break;
        }
        snprintf(names[n], len, "%s/%s", dir, de->d_name);
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (r == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
            replay_file(names[i]);
        free(names[i]);
    }
    free(names);
    return r;
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    const char *t = getenv("FUZZ_REPLAY_TIMEOUT");
    if (t && atoi(t) > 0)
        timeout_sec = (unsigned)atoi(t);
    const char *tmp = getenv("TMPDIR");
    char scratch[512];
    snprintf(scratch, sizeof scratch, "%s/topcow-replay.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(scratch)) {
        fprintf(stderr, "replay: cannot create a scratch directory: %s\n", strerror(errno));
        return 1;
    }
    setenv("TMPDIR", scratch, 1);

    int r = 0;
    for (int i = 1; i < argc && r == 0; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0 && errno == ENOENT) {
            fprintf(stderr, "replay: %s does not exist: nothing to replay\n", argv[i]);
            continue;
        }
        if (S_ISDIR(st.st_mode))
            r = replay_dir(argv[i]);
        else
            replay_file(argv[i]);
    }
    nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (r < 0)
        return 1;
    fprintf(stderr, "replay: %u input(s), %u failed\n", replayed, failed);
    return failed ? 1 : 0;
}
