// SPDX-License-Identifier: MIT
/* Public entry points of the lifecycle operations (topcow.h): argument
 * checks shared by every format, then the format's implementation. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "error.h"
#include "minmax.h"
#include "image.h"

/* The checks shared by operations that change an image in place. */
static int
lifecycle_op_ok(struct topcow_image *img, const void *op, const char *what)
{
    RETURN_ERR_IF(!img, -EINVAL, "NULL image");
    RETURN_ERR_IF(!op, -ENOTSUP, "%s: format '%s' does not support %s", img->filename,
                  img->ops->name, what);
    RETURN_ERR_IF(img->read_only, -EROFS, "%s: image is opened read-only", img->filename);
    return 0;
}

int
topcow_image_set_backing(struct topcow_image *img, const char *backing_file,
                         const char *backing_format)
{
    err_begin("set backing file");
    int r = lifecycle_op_ok(img, img ? (const void *)img->ops->set_backing : NULL,
                            "backing files");
    if (r < 0)
        return r;
    if (backing_file && !*backing_file)
        backing_file = NULL;
    RETURN_ERR_IF(!backing_file && backing_format && *backing_format, -EINVAL,
                  "%s: a backing format needs a backing file", img->filename);
    if (backing_format && !*backing_format)
        backing_format = NULL;
    RETURN_ERR_IF(backing_format && !format_lookup(backing_format), -EINVAL,
                  "%s: unknown backing format '%s'", img->filename, backing_format);
    return img->ops->set_backing(img, backing_file, backing_format);
}

int
topcow_image_make_empty(struct topcow_image *img)
{
    err_begin("make empty");
    int r = lifecycle_op_ok(img, img ? (const void *)img->ops->make_empty : NULL,
                            "emptying");
    return r < 0 ? r : img->ops->make_empty(img);
}

int
topcow_image_resize(struct topcow_image *img, uint64_t size, unsigned flags,
                    enum topcow_prealloc prealloc)
{
    err_begin("resize");
    int r = lifecycle_op_ok(img, img ? (const void *)img->ops->resize : NULL, "resizing");
    if (r < 0)
        return r;
    RETURN_ERR_IF(size > (UINT64_MAX >> 2), -EFBIG, "%s: size %llu is too large",
                  img->filename, (unsigned long long)size);
    size = (size + 511) & ~(uint64_t)511;
    RETURN_ERR_IF(prealloc > TOPCOW_PREALLOC_FULL, -EINVAL, "%s: bad preallocation mode",
                  img->filename);
    if (size == img->size)
        return 0;
    RETURN_ERR_IF(size < img->size && !(flags & TOPCOW_RESIZE_SHRINK), -EINVAL,
                  "%s: shrinking from %llu to %llu bytes needs the shrink flag (--shrink)",
                  img->filename, (unsigned long long)img->size, (unsigned long long)size);
    RETURN_ERR_IF(size < img->size && prealloc != TOPCOW_PREALLOC_OFF, -ENOTSUP,
                  "%s: preallocation makes no sense when shrinking", img->filename);
    uint64_t old = img->size;
    r = img->ops->resize(img, size, flags, prealloc);
    /* The added range reads as zeros, not as what a longer backing file
     * holds there (as in QEMU): zero it where the backing file reaches. */
    if (r == 0 && size > old && img->backing_file) {
        uint64_t reach = img->backing ? MIN(size, img->backing->size) : size;
        if (reach > old && prealloc == TOPCOW_PREALLOC_OFF)
            r = img->ops->write_zeroes(img, old, reach - old, 0);
    }
    if (img->stats_region)
        atomic_store_explicit(&img->stats_region->virtual_size, img->size, memory_order_relaxed);
    return r;
}

int
topcow_image_amend(struct topcow_image *img, const struct topcow_amend_opts *opts)
{
    err_begin("amend");
    int r = lifecycle_op_ok(img, img ? (const void *)img->ops->amend : NULL, "amending");
    if (r < 0)
        return r;
    RETURN_ERR_IF(!opts || opts->struct_size < sizeof *opts, -EINVAL, "bad amend options");
    RETURN_ERR_IF(opts->compat && opts->compat != 2 && opts->compat != 3, -EINVAL,
                  "%s: compat must be 0.10 or 1.1", img->filename);
    RETURN_ERR_IF(opts->refcount_bits && (opts->refcount_bits > 64 ||
                                          (opts->refcount_bits & (opts->refcount_bits - 1))),
                  -EINVAL, "%s: refcount_bits must be a power of two up to 64",
                  img->filename);
    RETURN_ERR_IF(opts->lazy_refcounts < -1 || opts->lazy_refcounts > 1, -EINVAL,
                  "%s: bad lazy_refcounts value", img->filename);
    return img->ops->amend(img, opts);
}
