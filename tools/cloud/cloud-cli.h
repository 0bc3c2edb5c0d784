// SPDX-License-Identifier: MIT
/* What push, pull and remote share: the options every cloud command takes
 * (--endpoint, --profile, -j, --lease-ttl), the progress bar and the
 * transfer summary. */
#ifndef TOPCOW_TOOLS_CLOUD_CLI_H
#define TOPCOW_TOOLS_CLOUD_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "topcow.h"

/* Long options shared by the cloud commands; their values are >= 1000. */
enum {
    CLOUD_OPT_ENDPOINT = 1000,
    CLOUD_OPT_PROFILE,
    CLOUD_OPT_LEASE_TTL,
    CLOUD_OPT_TAKE_LEASE,
    CLOUD_OPT_OUTPUT,
    CLOUD_OPT_LAST, /* commands number their own options from here */
};
#define CLOUD_LONG_OPTS                                                                            \
    {"endpoint", required_argument, NULL, CLOUD_OPT_ENDPOINT},                                     \
    {"profile", required_argument, NULL, CLOUD_OPT_PROFILE},                                       \
    {"jobs", required_argument, NULL, 'j'},                                                        \
    {"lease-ttl", required_argument, NULL, CLOUD_OPT_LEASE_TTL},                                   \
    {"take-lease", no_argument, NULL, CLOUD_OPT_TAKE_LEASE},                                       \
    {"output", required_argument, NULL, CLOUD_OPT_OUTPUT}

#define CLOUD_OPTS_HELP                                                                            \
    "      --endpoint=URL       S3 endpoint (default: AWS_ENDPOINT_URL, the profile's\n"           \
    "                           endpoint_url, or AWS's own for the region)\n"                      \
    "      --profile=NAME       AWS profile for credentials and region (default:\n"                \
    "                           AWS_PROFILE, else AWS_ACCESS_KEY_ID/SECRET, else 'default')\n"     \
    "  -j, --jobs=N             parallel transfers (default 4)\n"                                  \
    "      --lease-ttl=SECONDS  how long the writer lease lasts unrenewed (default 60)\n"          \
    "      --take-lease         take over a lease whose holder let it expire\n"               \
    "      --output=human|json  the report's format\n"

/* Handle one of the shared options @c (with optarg) into @o, and
 * --output=human|json into *@json.  Returns 1 when it was one, 0 when not,
 * -1 (message printed) for a bad value. */
int cloud_opt(int c, const char *arg, struct topcow_remote_opts *o, bool *json);

/* The progress bar (-p): bytes, chunks and rate, on stderr, rewritten in
 * place.  Use as opts.progress with a struct cloud_progress. */
struct cloud_progress {
    const char *verb; /* "push", "pull" */
    double start;     /* seconds */
    bool drawn;
};
void cloud_progress_cb(void *opaque, const struct topcow_remote_progress *p);
void cloud_progress_end(struct cloud_progress *cp);

/* "1.50 GiB" style */
void cloud_size_str(uint64_t v, char *buf, size_t len);

/* Transfer summary line for a push or pull result, and the same as JSON
 * with --output=json. */
void cloud_print_result(FILE *f, const char *verb, const char *remote,
                        const struct topcow_remote_result *res, double seconds, bool json);

double cloud_now(void);

#endif
