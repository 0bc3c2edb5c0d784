// SPDX-License-Identifier: MIT
/* topcow io: number parsing and output formatting with qemu-io's exact
 * conventions (observed from qemu-io 7.2): cvtnum's accepted syntax and
 * rounding, cvtstr's units and ".000" trimming, the timing line, and the
 * hexdump.  Nothing here touches an image. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io-cmds.h"
#include "util.h"

/* The multiplier for a size suffix character, or 0 if @c is not one. */
static uint64_t
suffix_multiplier(char c)
{
    switch (c) {
    case 'b': case 'B': return 1;
    case 'k': case 'K': return 1ull << 10;
    case 'm': case 'M': return 1ull << 20;
    case 'g': case 'G': return 1ull << 30;
    case 't': case 'T': return 1ull << 40;
    case 'p': case 'P': return 1ull << 50;
    case 'e': case 'E': return 1ull << 60;
    default: return 0;
    }
}

int
io_cvtnum(const char *s, uint64_t *out)
{
    const char *p = s;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '-')
        return -EINVAL;
    const char *digits = *p == '+' ? p + 1 : p;
    bool hex = digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X');

    char *endp;
    errno = 0;
    unsigned long long whole = strtoull(p, &endp, hex ? 16 : 10);
    if (endp == p)
        return -EINVAL;
    bool too_big = errno == ERANGE;
    const char *end = endp;

    /* A fraction: decimal digits only (no exponent), not after hex.  They
     * are rounded to a double as strtod does; a fraction that rounds up to
     * 1.0 counts as none, as in qemu-io. */
    double frac = 0;
    if (*end == '.') {
        if (hex)
            return -EINVAL;
        size_t nd = strspn(++end, "0123456789");
        char tmp[64] = "0.";
        memcpy(tmp + 2, end, nd < sizeof tmp - 3 ? nd : sizeof tmp - 3);
        frac = strtod(tmp, NULL);
        if (frac >= 1.0)
            frac = 0;
        end += nd;
    }

    uint64_t mul = 1;
    if (*end) {
        mul = suffix_multiplier(*end++);
        if (!mul)
            return -EINVAL;
        if (hex)
            fprintf(stderr, "%s: warning: Using a multiplier suffix on hex numbers is "
                            "deprecated: %s\n", prog_name, s);
    }
    if (*end)
        return -EINVAL;
    /* A fraction needs a unit larger than a byte. */
    if (frac != 0 && mul == 1)
        return -EINVAL;
    if (too_big)
        return -ERANGE;

    /* The fraction of the unit is rounded half up. */
    uint64_t extra = (uint64_t)(frac * (double)mul + 0.5);
    if (whole > (UINT64_MAX - extra) / mul)
        return -ERANGE;
    uint64_t v = (uint64_t)whole * mul + extra;
    if (v > INT64_MAX)
        return -ERANGE;
    *out = v;
    return 0;
}

void
io_print_cvtnum_err(int err, const char *arg)
{
    if (err == -EINVAL)
        printf("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- %s\n",
               arg);
    else if (err == -ERANGE)
        printf("Parsing error: argument too large -- %s\n", arg);
    else
        printf("Parsing error: %s -- %s\n", strerror(-err), arg);
}

int
io_parse_num(const char *arg, uint64_t *out)
{
    int r = io_cvtnum(arg, out);
    if (r < 0)
        io_print_cvtnum_err(r, arg);
    return r;
}

int
io_parse_pattern(const char *arg)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 0);
    if (errno || end == arg || *end || v < 0 || v > 255) {
        printf("%s is not a valid pattern byte\n", arg);
        return -1;
    }
    return (int)v;
}

void
io_cvtstr(double value, char *buf, size_t len)
{
    static const char *const units[] = { " KiB", " MiB", " GiB", " TiB", " PiB", " EiB" };
    const char *suffix = " bytes";
    int i = 5;
    while (i >= 0 && value < (double)(1ull << (10 * (i + 1))))
        i--;
    if (i >= 0) {
        suffix = units[i];
        snprintf(buf, len, "%.3f", value / (double)(1ull << (10 * (i + 1))));
    } else {
        snprintf(buf, len, "%f", value);
    }
    /* Whole numbers lose their zeros: "64.000" -> "64", "512.000000" -> "512". */
    char *trim = strstr(buf, ".000");
    if (trim)
        *trim = '\0';
    size_t n = strlen(buf);
    snprintf(buf + n, len - n, "%s", suffix);
}

/* The time field of the report: "SS.CC sec" below a second, else
 * "H:MM:SS.CC"; the -C line always uses the long form. */
static void
timestr(const struct timespec *t, char *buf, size_t len, bool machine)
{
    double frac = (double)t->tv_nsec / 1e9;
    if (!machine && t->tv_sec == 0) {
        snprintf(buf, len, "%05.2f sec", frac);
        return;
    }
    unsigned long long s = (unsigned long long)t->tv_sec;
    snprintf(buf, len, "%llu:%02llu:%05.2f", s / 3600, s / 60 % 60, (double)(s % 60) + frac);
}

void
io_print_report(const char *op, const struct timespec *elapsed, uint64_t offset,
                uint64_t count, int ops, bool machine)
{
    char ts[64], s1[64], s2[64];
    double secs = (double)elapsed->tv_sec + (double)elapsed->tv_nsec / 1e9;
    timestr(elapsed, ts, sizeof ts, machine);
    if (machine) {
        printf("%" PRIu64 ",%d,%s,%.3f,%.3f\n", count, ops, ts, (double)count / secs,
               ops / secs);
        return;
    }
    printf("%s %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", op, count, count, offset);
    io_cvtstr((double)count, s1, sizeof s1);
    io_cvtstr((double)count / secs, s2, sizeof s2);
    printf("%s, %d ops; %s (%s/sec and %.4f ops/sec)\n", s1, ops, ts, s2, ops / secs);
}

void
io_dump_buffer(const uint8_t *buf, uint64_t offset, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* "%08x:  " + 16 * "xx " + " " + 16 chars + "\n" fits in 96 bytes. */
    char line[96];
    for (size_t i = 0; i < len; i += 16) {
        size_t n = len - i < 16 ? len - i : 16;
        int pos = snprintf(line, sizeof line, "%08" PRIx64 ":  ", offset + i);
        size_t p = (size_t)pos;
        for (size_t j = 0; j < n; j++) {
            line[p++] = hex[buf[i + j] >> 4];
            line[p++] = hex[buf[i + j] & 15];
            line[p++] = ' ';
        }
        line[p++] = ' ';
        for (size_t j = 0; j < n; j++)
            line[p++] = isalnum(buf[i + j]) ? (char)buf[i + j] : '.';
        line[p++] = '\n';
        fwrite(line, 1, p, stdout);
    }
}

struct timespec
io_elapsed(const struct timespec *start, const struct timespec *end)
{
    struct timespec d = { end->tv_sec - start->tv_sec, end->tv_nsec - start->tv_nsec };
    if (d.tv_nsec < 0) {
        d.tv_sec--;
        d.tv_nsec += 1000000000;
    }
    return d;
}

void
io_report_failure(const char *what, int r)
{
    printf("%s failed: %s\n", what, strerror(-r));
    if (r == -EUCLEAN) {
        fflush(stdout);
        error_msg("%s", topcow_last_error());
    }
}
