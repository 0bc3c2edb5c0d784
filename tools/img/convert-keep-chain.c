// SPDX-License-Identifier: MIT
/* topcow convert --keep-chain: convert a source's backing chain layer by
 * layer into a chain of new images that mirrors it, instead of flattening
 * it into one.  The output named on the command line gets the top layer;
 * the layer N below it goes to a name with ".N" put before the output's
 * extension (out.qcow2, out.1.qcow2, out.2.qcow2, ...; out, out.1, ...).
 * Each new image holds only what its source layer defines (data and zeros)
 * and has the next one as its backing file, stored by its file name (they
 * are all in one directory), with the output format.  The base is written
 * first, so that every layer's backing file exists when it is created. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"
#include "create-opts.h"
#include "util.h"

/* The output's name for layer @depth (0: @out itself).  Caller frees. */
char *
convert_chain_layer_name(const char *out, unsigned depth)
{
    if (depth == 0)
        return strdup(out);
    const char *base = strrchr(out, '/');
    base = base ? base + 1 : out;
    const char *dot = strrchr(base, '.');
    size_t stem = dot && dot != base ? (size_t)(dot - out) : strlen(out);
    size_t len = strlen(out) + 16;
    char *name = malloc(len);
    if (name)
        snprintf(name, len, "%.*s.%u%s", (int)stem, out, depth, out + stem);
    return name;
}

/* Whether the file @name is the file of one of the @n source @layers. */
static bool
is_source_file(const char *name, struct topcow_image *const *layers, unsigned n)
{
    struct stat out, in;
    if (stat(name, &out) < 0)
        return false;
    for (unsigned i = 0; i < n; i++) {
        struct topcow_info info = { .struct_size = sizeof info };
        if (topcow_image_get_info(layers[i], &info) == 0 && stat(info.filename, &in) == 0 &&
            in.st_dev == out.st_dev && in.st_ino == out.st_ino)
            return true;
    }
    return false;
}

/* Progress over the whole chain: each layer's copy reports within its own
 * range, @before being the bytes of the layers done already. */
struct chain_progress {
    const struct convert_chain_opts *o;
    uint64_t before, total;
};

static void
chain_progress_cb(void *opaque, uint64_t done, uint64_t total)
{
    struct chain_progress *p = opaque;
    (void)total;
    p->o->progress(p->o->opaque, p->before + done, p->total);
}

/* Create and fill the output for one layer.  Returns 0, or -1 with the
 * failure described in @msg (or printed). */
static int
convert_layer(const struct convert_chain_opts *o, struct topcow_image *layer, const char *name,
              const char *backing, struct chain_progress *prog, char *msg, size_t msglen)
{
    const uint64_t size = topcow_image_size(layer);
    struct create_spec spec = { .opts = TOPCOW_CREATE_OPTS_INIT };
    spec.opts.format = o->out_fmt;
    spec.opts.size = size;
    spec.opts.backing_file = backing;
    spec.opts.backing_format = backing ? o->out_fmt : NULL;
    spec.opts.no_backing_open = backing != NULL;
    create_opts_parse(o->ol, name, &spec);
    if (topcow_image_create(name, &spec.opts) < 0) {
        error_msg("%s: error while converting %s: %s", name, o->out_fmt, topcow_last_error());
        return -1;
    }
    struct topcow_image *dst = open_image_path(name, o->out_fmt, o->dst_flags | OPEN_NEED_KEY,
                                               optlist_get(o->ol, "encrypt.key-secret"));
    if (!dst)
        return -1;
    struct topcow_info info = { .struct_size = sizeof info };
    int r = topcow_image_get_info(dst, &info);
    if (r < 0)
        snprintf(msg, msglen, "%s: %s", name, topcow_last_error());
    const struct convert_source src = {
        .img = layer, .name = name, .size = size, .span = (size + 511) & ~511ull, .start = 0,
    };
    struct convert_job job = {
        .srcs = &src,
        .nsrcs = 1,
        .dst = dst,
        .size = src.span,
        .workers = o->workers,
        .out_of_order = o->out_of_order,
        .parallel_writes = (o->dst_flags & TOPCOW_OPEN_DIRECT) != 0,
        .min_sparse = o->min_sparse,
        .granule = info.cluster_size ? info.cluster_size : 4096,
        .zero_init = backing == NULL,
        .top_only = backing != NULL,
        .compress = o->compress,
        .progress = o->progress ? chain_progress_cb : NULL,
        .opaque = prog,
    };
    if (r == 0)
        r = convert_run(&job, msg, msglen);
    if (topcow_image_close(dst) < 0 && r == 0) {
        snprintf(msg, msglen, "%s: %s", name, topcow_last_error());
        r = -1;
    }
    prog->before += src.span;
    return r < 0 ? -1 : 0;
}

int
convert_keep_chain(struct topcow_image *src, const struct convert_chain_opts *o)
{
    unsigned n = 0;
    uint64_t total = 0;
    for (struct topcow_image *l = src; l; l = topcow_image_backing(l), n++)
        total += (topcow_image_size(l) + 511) & ~511ull;
    struct topcow_image **layers = calloc(n, sizeof *layers);
    char **names = calloc(n, sizeof *names);
    int ret = -1;
    unsigned created = 0;
    char msg[1024] = "";
    if (!layers || !names) {
        error_msg("out of memory");
        goto out;
    }
    layers[0] = src;
    for (unsigned i = 0; i < n; i++) {
        if (i > 0)
            layers[i] = topcow_image_backing(layers[i - 1]);
        if (!(names[i] = convert_chain_layer_name(o->out, i))) {
            error_msg("out of memory");
            goto out;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        if (is_source_file(names[i], layers, n)) {
            error_msg("%s: output layer %u would overwrite a layer of the source", names[i], i);
            goto out;
        }
    }
    struct chain_progress prog = { .o = o, .total = total };
    for (unsigned i = n; i-- > 0;) {
        /* The backing file is named as it lies next to this layer's file. */
        const char *backing = NULL;
        if (i + 1 < n) {
            backing = strrchr(names[i + 1], '/');
            backing = backing ? backing + 1 : names[i + 1];
        }
        created++;
        if (convert_layer(o, layers[i], names[i], backing, &prog, msg, sizeof msg) < 0)
            goto out;
    }
    ret = 0;
out:
    /* A failed conversion removes every layer it created (the top one, the
     * name the user gave, included). */
    for (unsigned k = 0; ret < 0 && k < created; k++)
        unlink(names[n - 1 - k]);
    if (msg[0])
        error_msg("%s%s", msg, created ? " (removed the incomplete output chain)" : "");
    for (unsigned i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    free(layers);
    return ret;
}
