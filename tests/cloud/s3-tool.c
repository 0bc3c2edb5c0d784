// SPDX-License-Identifier: MIT
/* A command-line driver of lib/cloud/s3.c for the cloud tests (built only
 * for them): one operation per run, configured like the library (AWS_*
 * variables, profiles) plus options for the knobs tests turn.  On failure
 * it prints "s3-tool: ERRNO_NAME: message" and exits 1, so a test can check
 * both the errno and the message. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topcow.h"
#include "error.h"
#include "s3.h"
#include "tool-files.h"

static void
usage(void)
{
    fprintf(stderr,
            "usage: s3-tool [OPTIONS] COMMAND ARGS\n"
            "  put BUCKET KEY FILE [any|create-once|if-match ETAG]  print the new ETag\n"
            "  get BUCKET KEY OUT                  whole object into OUT ('-': stdout)\n"
            "  get-range BUCKET KEY OFF LEN OUT    print the byte count\n"
            "  head BUCKET KEY                     print 'SIZE ETAG'\n"
            "  delete BUCKET KEY\n"
            "  list BUCKET PREFIX                  print 'KEY SIZE ETAG' lines\n"
            "  put-many BUCKET PREFIX N            N small objects PREFIX00000...\n"
            "  config                              print the resolved configuration\n"
            "options: --endpoint URL --profile NAME --attempts N --backoff-ms N\n"
            "         --stall-ms N --connect-timeout-ms N --page-size N --virtual-host\n"
            "         --stats (counters on stderr at the end)\n");
    exit(2);
}

static int
fail(int r)
{
    const char *name = strerrorname_np(-r);
    fprintf(stderr, "s3-tool: %s: %s\n", name ? name : "?", topcow_last_error());
    return 1;
}

static unsigned
num(const char *s)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || end == s)
        usage();
    return (unsigned)v;
}

static int
print_entry(void *opaque, const struct s3_list_entry *e)
{
    (*(unsigned long *)opaque)++;
    printf("%s %llu %s\n", e->key, (unsigned long long)e->size, e->etag);
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'},
        {"profile", required_argument, NULL, 'p'},
        {"attempts", required_argument, NULL, 'a'},
        {"backoff-ms", required_argument, NULL, 'b'},
        {"stall-ms", required_argument, NULL, 's'},
        {"connect-timeout-ms", required_argument, NULL, 'c'},
        {"page-size", required_argument, NULL, 'n'},
        {"virtual-host", no_argument, NULL, 'v'},
        {"stats", no_argument, NULL, 'S'},
        {0},
    };
    const char *endpoint = NULL, *profile = NULL;
    long attempts = -1, backoff = -1, stall = -1, conn = -1, page = -1;
    bool virt = false, stats = false;
    int o;

    while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (o) {
        case 'e': endpoint = optarg; break;
        case 'p': profile = optarg; break;
        case 'a': attempts = num(optarg); break;
        case 'b': backoff = num(optarg); break;
        case 's': stall = num(optarg); break;
        case 'c': conn = num(optarg); break;
        case 'n': page = num(optarg); break;
        case 'v': virt = true; break;
        case 'S': stats = true; break;
        default: usage();
        }
    }
    argc -= optind;
    argv += optind;
    if (argc < 1)
        usage();
    const char *cmd = argv[0];

    struct s3_config cfg;
    int r = s3_config_load(&cfg, endpoint, profile);
    if (r < 0) {
        s3_config_clear(&cfg);
        return fail(r);
    }
    if (attempts >= 0)
        cfg.max_attempts = (unsigned)attempts;
    if (backoff >= 0)
        cfg.backoff_ms = (unsigned)backoff;
    if (stall >= 0)
        cfg.stall_timeout_ms = (unsigned)stall;
    if (conn >= 0)
        cfg.connect_timeout_ms = (unsigned)conn;
    if (page >= 0)
        cfg.list_page_size = (unsigned)page;
    if (virt)
        cfg.addressing = S3_ADDR_VIRTUAL;

    if (strcmp(cmd, "config") == 0) {
        printf("endpoint %s%s\nregion %s\naccess_key %s\nsecret_key %s\nsession_token %s\n"
               "max_attempts %u\n",
               cfg.endpoint, cfg.endpoint_is_default ? " (default)" : "", cfg.region,
               cfg.access_key, cfg.secret_key,
               cfg.session_token ? cfg.session_token : "(none)", cfg.max_attempts);
        s3_config_clear(&cfg);
        return 0;
    }

    struct s3_client *c;
    r = s3_client_new(&cfg, &c);
    s3_config_clear(&cfg);
    if (r < 0)
        return fail(r);

    void *data = NULL;
    size_t len = 0;
    if (strcmp(cmd, "put") == 0 && (argc == 4 || argc == 5 || argc == 6)) {
        enum s3_put_mode mode = S3_PUT_ANY;
        const char *match = NULL;
        char etag[S3_ETAG_MAX];
        if (argc >= 5 && strcmp(argv[4], "create-once") == 0)
            mode = S3_PUT_CREATE_ONCE;
        else if (argc == 6 && strcmp(argv[4], "if-match") == 0)
            mode = S3_PUT_IF_MATCH, match = argv[5];
        else if (argc >= 5 && strcmp(argv[4], "any") != 0)
            usage();
        if ((r = read_file(argv[3], &data, &len)) == 0 &&
            (r = s3_put(c, argv[1], argv[2], data, len, mode, match, etag)) == 0)
            printf("%s\n", etag);
    } else if (strcmp(cmd, "get") == 0 && argc == 4) {
        struct s3_object_info info;
        if ((r = s3_get(c, argv[1], argv[2], &data, &len, &info)) == 0)
            r = write_out(argv[3], data, len);
    } else if (strcmp(cmd, "get-range") == 0 && argc == 6) {
        size_t want = num(argv[4]), got;
        data = malloc(want ? want : 1);
        if (!data)
            r = err_set(-ENOMEM, "out of memory");
        else if ((r = s3_get_range(c, argv[1], argv[2], strtoull(argv[3], NULL, 10), data, want,
                                   &got)) == 0 &&
                 (r = write_out(argv[5], data, got)) == 0)
            printf("%zu\n", got);
    } else if (strcmp(cmd, "head") == 0 && argc == 3) {
        struct s3_object_info info;
        if ((r = s3_head(c, argv[1], argv[2], &info)) == 0)
            printf("%llu %s\n", (unsigned long long)info.size, info.etag);
    } else if (strcmp(cmd, "delete") == 0 && argc == 3) {
        r = s3_delete(c, argv[1], argv[2]);
    } else if (strcmp(cmd, "list") == 0 && argc == 3) {
        unsigned long n = 0;
        r = s3_list(c, argv[1], argv[2], print_entry, &n);
    } else if (strcmp(cmd, "put-many") == 0 && argc == 4) {
        unsigned n = num(argv[3]);
        for (unsigned i = 0; i < n && r == 0; i++) {
            char key[1024], body[32];
            snprintf(key, sizeof key, "%s%05u", argv[2], i);
            int blen = snprintf(body, sizeof body, "%u\n", i);
            r = s3_put(c, argv[1], key, body, (size_t)blen, S3_PUT_ANY, NULL, NULL);
        }
    } else {
        usage();
    }
    free(data);
    if (stats) {
        struct s3_stats st;
        s3_client_stats(c, &st);
        fprintf(stderr, "stats requests=%llu retries=%llu connects=%llu sent=%llu received=%llu\n",
                (unsigned long long)st.requests, (unsigned long long)st.retries,
                (unsigned long long)st.connects, (unsigned long long)st.bytes_sent,
                (unsigned long long)st.bytes_received);
    }
    s3_client_free(c);
    return r < 0 ? fail(r) : 0;
}
