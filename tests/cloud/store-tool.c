// SPDX-License-Identifier: MIT
/* A command-line driver of lib/cloud/store.c for tests/cloud/store.sh, which
 * runs the same checks against a file:// and an s3:// store.  On failure it
 * prints "store-tool: ERRNO_NAME: message" and exits 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "topcow.h"
#include "error.h"
#include "store.h"
#include "tool-files.h"

static void
usage(void)
{
    fprintf(stderr,
            "usage: store-tool URL COMMAND ARGS\n"
            "  put-once KEY FILE            print the new ETag\n"
            "  put-cas KEY FILE ETAG        print the new ETag\n"
            "  get KEY OUT                  whole object into OUT ('-': stdout)\n"
            "  get-info KEY                 print 'SIZE ETAG' as GET saw them\n"
            "  get-range KEY OFF LEN OUT    print the byte count\n"
            "  head KEY                     print 'SIZE ETAG'\n"
            "  list PREFIX                  print 'KEY SIZE' lines\n"
            "  delete KEY\n"
            "  incr KEY N                   N compare-and-swap increments of a decimal\n"
            "                               counter, retried on conflicts\n");
    exit(2);
}

static int
fail(int r)
{
    const char *name = strerrorname_np(-r);
    fprintf(stderr, "store-tool: %s: %s\n", name ? name : "?", topcow_last_error());
    return 1;
}

static int
print_entry(void *opaque, const struct store_entry *e)
{
    (void)opaque;
    printf("%s %llu\n", e->key, (unsigned long long)e->size);
    return 0;
}

/* Read the counter, write it plus one if nobody changed it meanwhile.  The
 * value is followed by this writer's pid: compare-and-swap bodies must be
 * unique to their writer (as HEAD and lease objects are), since the S3
 * client takes a retried write refused because the object already holds
 * exactly its body for its own earlier attempt (s3.h, s3_put). */
static int
incr(struct store *st, const char *key, unsigned n, unsigned *conflicts)
{
    for (unsigned done = 0; done < n;) {
        void *data;
        size_t len;
        struct store_info info;
        int r = store_get(st, key, &data, &len, &info);
        if (r < 0)
            return r;
        char text[32];
        snprintf(text, sizeof text, "%.*s", (int)(len < 20 ? len : 20), (char *)data);
        free(data);
        int tlen = snprintf(text, sizeof text, "%llu %d\n", strtoull(text, NULL, 10) + 1,
                            (int)getpid());
        r = store_put_cas(st, key, text, (size_t)tlen, info.etag, NULL);
        if (r == -ESTALE) {
            (*conflicts)++;
            continue;
        }
        if (r < 0)
            return r;
        done++;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 3)
        usage();
    struct store *st;
    int r = store_open(argv[1], NULL, &st);
    if (r < 0)
        return fail(r);
    const char *cmd = argv[2];
    argc -= 2;
    argv += 2;
    void *data = NULL;
    size_t len = 0;
    char etag[STORE_ETAG_MAX];
    struct store_info info;

    if (strcmp(cmd, "put-once") == 0 && argc == 3) {
        if ((r = read_file(argv[2], &data, &len)) == 0 &&
            (r = store_put_once(st, argv[1], data, len, etag)) == 0)
            printf("%s\n", etag);
    } else if (strcmp(cmd, "put-cas") == 0 && argc == 4) {
        if ((r = read_file(argv[2], &data, &len)) == 0 &&
            (r = store_put_cas(st, argv[1], data, len, argv[3], etag)) == 0)
            printf("%s\n", etag);
    } else if (strcmp(cmd, "get") == 0 && argc == 3) {
        if ((r = store_get(st, argv[1], &data, &len, NULL)) == 0)
            r = write_out(argv[2], data, len);
    } else if (strcmp(cmd, "get-info") == 0 && argc == 2) {
        if ((r = store_get(st, argv[1], &data, &len, &info)) == 0)
            printf("%llu %s\n", (unsigned long long)info.size, info.etag);
    } else if (strcmp(cmd, "get-range") == 0 && argc == 5) {
        size_t want = strtoull(argv[3], NULL, 10), got;
        data = malloc(want ? want : 1);
        if (!data)
            r = err_set(-ENOMEM, "out of memory");
        else if ((r = store_get_range(st, argv[1], strtoull(argv[2], NULL, 10), data, want,
                                      &got)) == 0 &&
                 (r = write_out(argv[4], data, got)) == 0)
            printf("%zu\n", got);
    } else if (strcmp(cmd, "head") == 0 && argc == 2) {
        if ((r = store_head(st, argv[1], &info)) == 0)
            printf("%llu %s\n", (unsigned long long)info.size, info.etag);
    } else if (strcmp(cmd, "list") == 0 && argc == 2) {
        r = store_list(st, argv[1], print_entry, NULL);
    } else if (strcmp(cmd, "delete") == 0 && argc == 2) {
        r = store_delete(st, argv[1]);
    } else if (strcmp(cmd, "incr") == 0 && argc == 3) {
        unsigned conflicts = 0;
        if ((r = incr(st, argv[1], (unsigned)strtoul(argv[2], NULL, 10), &conflicts)) == 0)
            printf("conflicts %u\n", conflicts);
    } else {
        usage();
    }
    free(data);
    store_close(st);
    return r < 0 ? fail(r) : 0;
}
