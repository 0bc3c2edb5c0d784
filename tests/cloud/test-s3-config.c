// SPDX-License-Identifier: MIT
/* Unit test of the S3 client's configuration: where the endpoint, keys,
 * region and retry count come from (AWS_* variables, the shared credentials
 * and config files, profiles, explicit arguments), in AWS CLI's order of
 * precedence, and which endpoints s3_client_new() refuses.  No server. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "topcow.h"
#include "error.h"
#include "s3.h"

static int failures;
static char dir[] = "/tmp/topcow-s3-config.XXXXXX";

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL line %d: ", __LINE__);                                           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, " [last error: %s]\n", topcow_last_error());                           \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static bool
streq(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

static void
clear_env(void)
{
    static const char *const vars[] = {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
        "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_MAX_ATTEMPTS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        unsetenv(vars[i]);
    setenv("HOME", dir, 1); /* no ~/.aws there unless a test writes one */
}

static void
write_file(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static int
load(struct s3_config *cfg, const char *endpoint, const char *profile)
{
    err_begin("test");
    return s3_config_load(cfg, endpoint, profile);
}

static void
test_environment(void)
{
    struct s3_config cfg;
    clear_env();
    setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret/env", 1);
    setenv("AWS_SESSION_TOKEN", "tok", 1);
    setenv("AWS_REGION", "eu-west-3", 1);
    setenv("AWS_DEFAULT_REGION", "us-west-1", 1);
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:7480", 1);
    int r = load(&cfg, NULL, NULL);
    CHECK(r == 0, "environment: %d", r);
    CHECK(streq(cfg.access_key, "AKENV") && streq(cfg.secret_key, "secret/env") &&
              streq(cfg.session_token, "tok"),
          "keys from the environment");
    CHECK(streq(cfg.region, "eu-west-3"), "AWS_REGION beats AWS_DEFAULT_REGION: %s", cfg.region);
    CHECK(streq(cfg.endpoint, "http://127.0.0.1:7480") && !cfg.endpoint_is_default,
          "AWS_ENDPOINT_URL: %s", cfg.endpoint);
    CHECK(cfg.max_attempts == 5 && cfg.list_page_size == 1000 && cfg.addressing == S3_ADDR_AUTO,
          "defaults");
    s3_config_clear(&cfg);

    setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000", 1);
    r = load(&cfg, NULL, NULL);
    CHECK(r == 0 && streq(cfg.endpoint, "http://127.0.0.1:9000"),
          "AWS_ENDPOINT_URL_S3 beats AWS_ENDPOINT_URL: %s", cfg.endpoint);
    s3_config_clear(&cfg);
    r = load(&cfg, "http://localhost:1234", NULL);
    CHECK(r == 0 && streq(cfg.endpoint, "http://localhost:1234"),
          "an explicit endpoint beats the environment: %s", cfg.endpoint);
    s3_config_clear(&cfg);

    unsetenv("AWS_ENDPOINT_URL_S3");
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_REGION");
    unsetenv("AWS_SESSION_TOKEN");
    r = load(&cfg, NULL, NULL);
    CHECK(r == 0 && streq(cfg.region, "us-west-1"), "AWS_DEFAULT_REGION: %s", cfg.region);
    CHECK(streq(cfg.endpoint, "https://s3.us-west-1.amazonaws.com") && cfg.endpoint_is_default,
          "AWS's endpoint for the region by default: %s", cfg.endpoint);
    CHECK(cfg.session_token == NULL, "no session token");
    s3_config_clear(&cfg);

    unsetenv("AWS_DEFAULT_REGION");
    setenv("AWS_MAX_ATTEMPTS", "3", 1);
    r = load(&cfg, NULL, NULL);
    CHECK(r == 0 && streq(cfg.region, "us-east-1"), "region us-east-1 by default: %s",
          cfg.region);
    CHECK(cfg.max_attempts == 3, "AWS_MAX_ATTEMPTS: %u", cfg.max_attempts);
    s3_config_clear(&cfg);
    setenv("AWS_MAX_ATTEMPTS", "0", 1);
    r = load(&cfg, NULL, NULL);
    CHECK(r == -EINVAL && strstr(topcow_last_error(), "AWS_MAX_ATTEMPTS"),
          "AWS_MAX_ATTEMPTS=0 refused: %d", r);
    s3_config_clear(&cfg);
}

static const char credentials[] =
    "# comment\n"
    "[default]\n"
    "aws_access_key_id = AKDEFAULT\n"
    "aws_secret_access_key=secret-default\n"
    "\n"
    "[work]\n"
    "  ; an indented comment\n"
    "aws_access_key_id   =   AKWORK  \n"
    "aws_secret_access_key = secret/work+1\n"
    "aws_session_token = worktoken\n"
    "s3 =\n"
    "  aws_access_key_id = NESTED-IGNORED\n";

static const char config[] =
    "[default]\n"
    "region = ca-central-1\n"
    "[profile work]\n"
    "region = ap-south-1\n"
    "endpoint_url = http://127.0.0.1:8000\n"
    "[profile onlyconfig]\n"
    "aws_access_key_id = AKCONF\n"
    "aws_secret_access_key = secret-conf\n"
    "[work]\n"
    "region = not-a-config-section-name\n";

static void
test_files(void)
{
    struct s3_config cfg;
    char path[512];

    clear_env();
    write_file("creds", credentials);
    write_file("conf", config);
    snprintf(path, sizeof path, "%s/creds", dir);
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    snprintf(path, sizeof path, "%s/conf", dir);
    setenv("AWS_CONFIG_FILE", path, 1);

    int r = load(&cfg, NULL, NULL);
    CHECK(r == 0 && streq(cfg.access_key, "AKDEFAULT") && streq(cfg.secret_key, "secret-default"),
          "profile default: %d %s", r, cfg.access_key);
    CHECK(streq(cfg.region, "ca-central-1"), "region of [default] in config: %s", cfg.region);
    CHECK(cfg.endpoint_is_default, "no endpoint_url in [default]");
    s3_config_clear(&cfg);

    setenv("AWS_PROFILE", "work", 1);
    r = load(&cfg, NULL, NULL);
    CHECK(r == 0 && streq(cfg.access_key, "AKWORK") && streq(cfg.secret_key, "secret/work+1") &&
              streq(cfg.session_token, "worktoken"),
          "AWS_PROFILE=work: %d %s", r, cfg.access_key);
    CHECK(streq(cfg.region, "ap-south-1"), "[profile work] region: %s", cfg.region);
    CHECK(streq(cfg.endpoint, "http://127.0.0.1:8000") && !cfg.endpoint_is_default,
          "[profile work] endpoint_url: %s", cfg.endpoint);
    s3_config_clear(&cfg);

    /* Keys in the environment beat AWS_PROFILE, as in the AWS CLI... */
    setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret-env", 1);
    r = load(&cfg, NULL, NULL);
    CHECK(r == 0 && streq(cfg.access_key, "AKENV") && cfg.session_token == NULL,
          "environment keys over AWS_PROFILE: %s", cfg.access_key);
    CHECK(streq(cfg.region, "ap-south-1"), "the profile still gives the region");
    s3_config_clear(&cfg);
    /* ...but an explicit profile (--profile) beats them. */
    r = load(&cfg, NULL, "default");
    CHECK(r == 0 && streq(cfg.access_key, "AKDEFAULT"), "explicit profile over environment: %s",
          cfg.access_key);
    s3_config_clear(&cfg);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");

    r = load(&cfg, NULL, "onlyconfig");
    CHECK(r == 0 && streq(cfg.access_key, "AKCONF"), "keys from the config file: %d", r);
    s3_config_clear(&cfg);

    r = load(&cfg, NULL, "nosuch");
    CHECK(r == -ENOENT && strstr(topcow_last_error(), "profile 'nosuch' not found"),
          "a missing profile: %d", r);
    s3_config_clear(&cfg);

    /* The default locations under $HOME. */
    clear_env();
    snprintf(path, sizeof path, "%s/.aws", dir);
    mkdir(path, 0700);
    write_file(".aws/credentials", credentials);
    r = load(&cfg, NULL, "work");
    CHECK(r == 0 && streq(cfg.access_key, "AKWORK"), "~/.aws/credentials: %d", r);
    s3_config_clear(&cfg);
}

static void
test_no_credentials(void)
{
    struct s3_config cfg;
    clear_env();
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
    setenv("AWS_CONFIG_FILE", "/nonexistent/config", 1);
    setenv("AWS_ACCESS_KEY_ID", "only-the-id", 1);
    int r = load(&cfg, NULL, NULL);
    CHECK(r == -ENOKEY && strstr(topcow_last_error(), "no credentials"),
          "no credentials: %d", r);
    s3_config_clear(&cfg);
}

static void
test_endpoints(void)
{
    static const struct {
        const char *endpoint;
        int want;
    } cases[] = {
        {"http://127.0.0.1:7480", 0},
        {"HTTPS://S3.Example.COM/", 0},
        {"http://[::1]:7480", 0},
        {"http://host:80", 0},
        {"127.0.0.1:7480", -EINVAL},       /* no scheme */
        {"ftp://host", -EINVAL},
        {"http://host:99999", -EINVAL},
        {"http://host:", -EINVAL},
        {"http://host/prefix", -EINVAL},   /* a path */
        {"http://user@host", -EINVAL},
        {"http://", -EINVAL},
        {"http://ho st", -EINVAL},
        {"http://[::1", -EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct s3_config cfg = {
            .endpoint = (char *)cases[i].endpoint,
            .region = (char *)"us-east-1",
            .access_key = (char *)"AK",
            .secret_key = (char *)"SK",
        };
        struct s3_client *c = NULL;
        err_begin("test");
        int r = s3_client_new(&cfg, &c);
        CHECK(r == cases[i].want, "endpoint '%s': %d, expected %d", cases[i].endpoint, r,
              cases[i].want);
        CHECK((r == 0) == (c != NULL), "client set only on success");
        s3_client_free(c);
    }
}

int
main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_environment();
    test_files();
    test_no_credentials();
    test_endpoints();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
