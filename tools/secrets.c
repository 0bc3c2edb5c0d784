// SPDX-License-Identifier: MIT
/* --object secret and --image-opts (see secrets.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "secrets.h"
#include "util.h"

#define MAX_SECRETS 16
#define MAX_SECRET_FILE (64u << 10)

struct secret {
    char *id;
    char *data; /* NUL-terminated copy; len excludes the NUL */
    size_t len;
};

static struct secret secrets[MAX_SECRETS];
static unsigned nsecrets;
static bool image_opts;

static void
wipe_free(char *p, size_t len)
{
    if (p) {
        explicit_bzero(p, len);
        free(p);
    }
}

void
secrets_clear(void)
{
    for (unsigned i = 0; i < nsecrets; i++) {
        free(secrets[i].id);
        wipe_free(secrets[i].data, secrets[i].len + 1);
    }
    nsecrets = 0;
}

static int
read_secret_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_msg("Unable to read secret file '%s': %s", path, strerror(errno));
        return -1;
    }
    char *buf = calloc(1, MAX_SECRET_FILE + 1);
    size_t n = 0;
    while (buf && n < MAX_SECRET_FILE) {
        ssize_t k = read(fd, buf + n, MAX_SECRET_FILE - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    close(fd);
    if (!buf) {
        error_msg("out of memory");
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

static int
b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decode base64 in place; returns the new length or -1. */
static long
b64_decode(char *s, size_t len)
{
    size_t o = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '=' || s[i] == '\n' || s[i] == '\r')
            continue;
        int v = b64val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            s[o++] = (char)(acc >> bits);
        }
    }
    return (long)o;
}

/* Objects other than secrets, kept as given for the command that uses
 * them (tool_object_find). */
#define MAX_OBJECTS 8
static struct {
    char *type, *id, *opts;
} objects[MAX_OBJECTS];
static unsigned nobjects;

static void
objects_clear(void)
{
    for (unsigned i = 0; i < nobjects; i++) {
        free(objects[i].type);
        free(objects[i].id);
        free(objects[i].opts);
    }
    nobjects = 0;
}

/* "tls-creds-x509,id=ID,..." and "tls-creds-psk,id=ID,...". */
static int
keep_object(const char *type, size_t tlen, const char *opts)
{
    struct optlist ol = { 0 };
    if (optlist_parse(&ol, opts) < 0)
        return -1;
    const char *id = optlist_get(&ol, "id");
    int r = -1;
    if (!id)
        error_msg("Parameter 'id' is missing");
    else if (nobjects == MAX_OBJECTS)
        error_msg("too many objects");
    else if (!(objects[nobjects].type = strndup(type, tlen)) ||
             !(objects[nobjects].id = strdup(id)) || !(objects[nobjects].opts = strdup(opts)))
        error_msg("out of memory");
    else
        r = 0;
    if (r == 0)
        nobjects++;
    optlist_free(&ol);
    return r;
}

int
tool_object_find(const char *id, const char **type, struct optlist *ol)
{
    for (unsigned i = 0; i < nobjects; i++)
        if (!strcmp(objects[i].id, id)) {
            *type = objects[i].type;
            memset(ol, 0, sizeof *ol);
            return optlist_parse(ol, objects[i].opts);
        }
    error_msg("No object with id '%s' (give it with --object)", id);
    return -1;
}

/* "secret,id=ID,data=...|file=...[,format=raw|base64]", or an object kept
 * for later (keep_object).  Other object types are refused. */
static int
add_object(const char *spec)
{
    struct optlist ol = { 0 };
    const char *type = spec;
    const char *comma = strchr(spec, ',');
    size_t tlen = comma ? (size_t)(comma - spec) : strlen(spec);
    if ((tlen == 14 && !strncmp(type, "tls-creds-x509", 14)) ||
        (tlen == 13 && !strncmp(type, "tls-creds-psk", 13)))
        return keep_object(type, tlen, comma ? comma + 1 : "");
    if (tlen != 6 || strncmp(type, "secret", 6) != 0) {
        error_msg("--object: only 'secret', 'tls-creds-x509' and 'tls-creds-psk' objects are "
                  "supported: '%.*s'", (int)tlen, spec);
        return -1;
    }
    if (comma && optlist_parse(&ol, comma + 1) < 0)
        return -1;
    const char *id = optlist_get(&ol, "id"), *data = optlist_get(&ol, "data");
    const char *file = optlist_get(&ol, "file"), *format = optlist_get(&ol, "format");
    int r = -1;
    char *val = NULL;
    size_t len = 0;
    if (!id) {
        error_msg("Parameter 'id' is missing");
    } else if ((data != NULL) == (file != NULL)) {
        error_msg("secret '%s': give exactly one of data= and file=", id);
    } else if (format && strcmp(format, "raw") && strcmp(format, "base64")) {
        error_msg("secret '%s': format must be raw or base64", id);
    } else if (optlist_unused(&ol)) {
        error_msg("Invalid parameter '%s'", optlist_unused(&ol));
    } else if (nsecrets == MAX_SECRETS) {
        error_msg("too many secrets");
    } else if (file ? read_secret_file(file, &val, &len) == 0 : (val = strdup(data)) != NULL) {
        if (!file) {
            len = strlen(val);
            fprintf(stderr, "%s: warning: secret '%s' given with data= is visible to other "
                            "users in the process list; prefer file=\n", prog_name, id);
        }
        long n = format && !strcmp(format, "base64") ? b64_decode(val, len) : (long)len;
        if (n < 0) {
            error_msg("secret '%s': invalid base64 data", id);
        } else {
            val[n] = '\0';
            secrets[nsecrets].id = strdup(id);
            secrets[nsecrets].data = val;
            secrets[nsecrets].len = (size_t)n;
            nsecrets++;
            val = NULL;
            r = 0;
        }
    } else if (!file) {
        error_msg("out of memory");
    }
    wipe_free(val, len + 1);
    /* The option list holds data= too. */
    for (size_t i = 0; i < ol.n; i++)
        if (ol.vals[i])
            explicit_bzero(ol.vals[i], strlen(ol.vals[i]));
    optlist_free(&ol);
    return r;
}

int
secrets_take_args(int argc, char **argv)
{
    int out = 1;
    atexit(secrets_clear);
    atexit(objects_clear);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            while (i < argc)
                argv[out++] = argv[i++];
            break;
        }
        if (!strcmp(a, "--image-opts")) {
            image_opts = true;
            continue;
        }
        const char *spec = NULL;
        if (!strcmp(a, "--object")) {
            if (i + 1 >= argc) {
                error_msg("option '--object' requires an argument");
                return -1;
            }
            spec = argv[++i];
        } else if (!strncmp(a, "--object=", 9)) {
            spec = a + 9;
        }
        if (spec) {
            if (add_object(spec) < 0)
                return -1;
            continue;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    return out;
}

const char *
secret_lookup(const char *id, size_t *len)
{
    for (unsigned i = 0; i < nsecrets; i++)
        if (!strcmp(secrets[i].id, id)) {
            *len = secrets[i].len;
            return secrets[i].data;
        }
    error_msg("No secret with id '%s'", id);
    return NULL;
}

char *
secret_prompt(const char *path, size_t *len)
{
    if (!isatty(STDIN_FILENO))
        return NULL;
    struct termios old, quiet;
    bool restore = tcgetattr(STDIN_FILENO, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    fprintf(stderr, "Passphrase for '%s': ", path);
    fflush(stderr);
    char *buf = calloc(1, 1024);
    size_t n = 0;
    while (buf && n + 1 < 1024) {
        char c;
        ssize_t k = read(STDIN_FILENO, &c, 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0 || c == '\n')
            break;
        buf[n++] = c;
    }
    if (restore)
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
    fprintf(stderr, "\n");
    if (!buf || n == 0) {
        secret_free(buf, 1024);
        return NULL;
    }
    *len = n;
    return buf;
}

void
secret_free(char *s, size_t len)
{
    wipe_free(s, len);
}

int
open_or_prompt(struct topcow_image **img, const char *path, struct topcow_open_opts *o,
               bool *locked)
{
    *locked = false;
    int r = topcow_image_open(img, path, o);
    struct topcow_encryption enc = { .struct_size = sizeof enc };
    if (r < 0 || o->secret || topcow_image_get_encryption(*img, &enc) < 0 || !enc.format ||
        enc.unlocked)
        return r;
    size_t plen;
    char *pw = secret_prompt(path, &plen);
    if (!pw) {
        *locked = true;
        return 0;
    }
    topcow_image_close(*img);
    o->secret = pw;
    o->secret_len = plen;
    r = topcow_image_open(img, path, o);
    o->secret = NULL;
    o->secret_len = 0;
    secret_free(pw, 1024);
    return r;
}

bool
image_opts_mode(void)
{
    return image_opts;
}

int
image_spec_parse(const char *arg, struct image_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    if (!image_opts) {
        spec->path = strdup(arg);
        return spec->path ? 0 : -1;
    }
    struct optlist ol = { 0 };
    if (optlist_parse(&ol, arg) < 0)
        return -1;
    const char *v;
    int r = 0;
    if ((v = optlist_get(&ol, "file.filename")) || (v = optlist_get(&ol, "filename")))
        spec->path = strdup(v);
    if ((v = optlist_get(&ol, "driver")))
        spec->driver = strdup(v);
    if ((v = optlist_get(&ol, "encrypt.key-secret")))
        spec->key_secret = strdup(v);
    if ((v = optlist_get(&ol, "file.driver")) && strcmp(v, "file")) {
        error_msg("--image-opts: file.driver=%s is not supported (only 'file')", v);
        r = -1;
    }
    if (r == 0 && !spec->path) {
        error_msg("--image-opts: '%s' names no file (file.filename=)", arg);
        r = -1;
    }
    if (r == 0 && optlist_unused(&ol)) {
        error_msg("--image-opts: unsupported option '%s'", optlist_unused(&ol));
        r = -1;
    }
    optlist_free(&ol);
    if (r < 0)
        image_spec_free(spec);
    return r;
}

void
image_spec_free(struct image_spec *spec)
{
    free(spec->path);
    free(spec->driver);
    free(spec->key_secret);
    memset(spec, 0, sizeof *spec);
}
