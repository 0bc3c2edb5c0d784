// SPDX-License-Identifier: MIT
/* The format registry: a const table, no constructors, no plugins.  Probing
 * reads magic numbers only; raw is the fallback with the lowest score. */
#include <string.h>

#include "minmax.h"
#include "image.h"

static const struct format_ops *const formats[] = {
    &qcow2_format,
    &vdi_format,
    &vpc_format,
    &vhdx_format,
    &vmdk_format,
    &raw_format,
};

const struct format_ops *
format_lookup(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(formats); i++)
        if (strcmp(formats[i]->name, name) == 0)
            return formats[i];
    return NULL;
}

bool
topcow_format_known(const char *name)
{
    return name && format_lookup(name) != NULL;
}

bool
topcow_format_can_create(const char *name)
{
    const struct format_ops *f = name ? format_lookup(name) : NULL;
    return f && f->create;
}

const struct format_ops *
format_probe(const uint8_t *buf, size_t len)
{
    const struct format_ops *best = &raw_format;
    int best_score = 0;
    for (size_t i = 0; i < ARRAY_SIZE(formats); i++) {
        int score = formats[i]->probe ? formats[i]->probe(buf, len) : 0;
        if (score > best_score) {
            best = formats[i];
            best_score = score;
        }
    }
    return best;
}
