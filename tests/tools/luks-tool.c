// SPDX-License-Identifier: MIT
/* luks-tool: drive lib/crypto on standalone LUKS1 files (QEMU's "luks"
 * format: the header, then the payload at the payload offset, sector n of
 * the payload encrypted with IV n), so the interop tests can check the
 * module against qemu-img and qemu-io.
 *
 *   luks-tool dump FILE
 *   luks-tool create FILE SIZE [--cipher-alg A] [--cipher-mode M] [--ivgen-alg I]
 *                    [--ivgen-hash-alg H] [--hash-alg H] [--iter-time MS]
 *   luks-tool unlock FILE [--slot N]           prints the slot that opened
 *   luks-tool read FILE OFF LEN > data         any offset and length
 *   luks-tool write FILE OFF < data
 *   luks-tool add-key FILE [--slot N] [--iter-time MS]
 *   luks-tool remove-key FILE [--slot N] [--old] [--force]
 *
 * Passphrases come from the environment, never from argv: LUKS_PASS unlocks
 * (and is slot 0's for create), LUKS_NEW_PASS is added by add-key, and
 * remove-key --old erases the slots that LUKS_OLD_PASS opens. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "topcow.h"
#include "error.h"
#include "luks.h"

static int fd = -1;

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "luks-tool: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void
check(int r, const char *what)
{
    if (r < 0)
        die("%s: %s", what, topcow_last_error()[0] ? topcow_last_error() : strerror(-r));
}

static int
file_read(void *opaque, void *buf, size_t len, uint64_t off)
{
    (void)opaque;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0)
            return -errno;
        if (n == 0) { /* past the end: zeros */
            memset((char *)buf + done, 0, len - done);
            break;
        }
        done += (size_t)n;
    }
    return 0;
}

static int
file_write(void *opaque, const void *buf, size_t len, uint64_t off)
{
    (void)opaque;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0)
            return -errno;
        done += (size_t)n;
    }
    return 0;
}

static const struct luks_io io = {file_read, file_write, NULL};

static const char *
env_pass(const char *name)
{
    const char *p = getenv(name);
    if (!p)
        die("set %s to the passphrase", name);
    return p;
}

static struct luks *
unlock(int slot)
{
    const char *pass = env_pass("LUKS_PASS");
    struct luks *l;
    check(luks_unlock(&io, (const uint8_t *)pass, strlen(pass), slot, &l), "unlock");
    return l;
}

static uint64_t
number(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s)
        die("bad number '%s'", s);
    switch (*end) {
    case 'k':
    case 'K':
        v <<= 10;
        end++;
        break;
    case 'M':
        v <<= 20;
        end++;
        break;
    case 'G':
        v <<= 30;
        end++;
        break;
    }
    if (*end)
        die("bad number '%s'", s);
    return v;
}

static void
dump(const char *path)
{
    struct luks_header h;
    check(luks_read_header(&io, &h), path);
    printf("cipher-alg: %s\ncipher-mode: %s\nivgen-alg: %s\n", h.names.cipher_alg,
           h.names.cipher_mode, h.names.ivgen_alg);
    if (h.names.ivgen_hash_alg[0])
        printf("ivgen-hash-alg: %s\n", h.names.ivgen_hash_alg);
    printf("hash-alg: %s\npayload-offset: %" PRIu64 "\nmaster-key-iters: %u\nuuid: %s\n",
           h.names.hash_alg, h.payload_offset, h.mk_iters, h.uuid);
    printf("luks-cipher: %s %s %s %u\n", h.cipher_name, h.cipher_mode, h.hash_spec, h.key_bytes);
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        const struct luks_slot *s = &h.slots[i];
        if (s->active)
            printf("slot %d: active iters=%u stripes=%u key-offset=%" PRIu64 "\n", i, s->iters,
                   s->stripes, s->key_offset);
        else
            printf("slot %d: inactive key-offset=%" PRIu64 "\n", i, s->key_offset);
    }
}

/* Read (and with @data, overwrite) guest bytes [off, off + len). */
static void
payload_rw(struct luks *l, uint64_t off, size_t len, uint8_t *data, bool write)
{
    const uint64_t ss = SECTOR_CIPHER_SECTOR_SIZE;
    uint64_t start = off / ss * ss, end = (off + len + ss - 1) / ss * ss;
    size_t n = (size_t)(end - start);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        die("out of memory");
    uint64_t base = luks_payload_offset(l);
    check(file_read(NULL, buf, n, base + start), "read");
    check(sector_cipher_decrypt(luks_cipher(l), start / ss, buf, n), "decrypt");
    if (write) {
        memcpy(buf + (off - start), data, len);
        check(sector_cipher_encrypt(luks_cipher(l), start / ss, buf, n), "encrypt");
        check(file_write(NULL, buf, n, base + start), "write");
    } else {
        memcpy(data, buf + (off - start), len);
    }
    free(buf);
}

int
main(int argc, char **argv)
{
    if (argc < 3)
        die("usage: luks-tool dump|create|unlock|read|write|add-key|remove-key FILE ...");
    const char *cmd = argv[1], *path = argv[2];
    struct luks_create_opts co = {0};
    int slot = -1;
    bool old = false, force = false;
    char *pos[4];
    int npos = 0;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (!strcmp(a, "--cipher-alg"))
            co.cipher_alg = v;
        else if (!strcmp(a, "--cipher-mode"))
            co.cipher_mode = v;
        else if (!strcmp(a, "--ivgen-alg"))
            co.ivgen_alg = v;
        else if (!strcmp(a, "--ivgen-hash-alg"))
            co.ivgen_hash_alg = v;
        else if (!strcmp(a, "--hash-alg"))
            co.hash_alg = v;
        else if (!strcmp(a, "--iter-time"))
            co.iter_time_ms = v ? (unsigned)number(v) : 0;
        else if (!strcmp(a, "--slot"))
            slot = v ? (int)number(v) : -1;
        else {
            takes = false;
            if (!strcmp(a, "--old"))
                old = true;
            else if (!strcmp(a, "--force"))
                force = true;
            else if (a[0] == '-' && a[1] == '-')
                die("unknown option %s", a);
            else if (npos < 4)
                pos[npos++] = argv[i];
            else
                die("too many arguments");
        }
        if (takes && !v)
            die("%s needs a value", a);
        i += takes;
    }

    bool creating = !strcmp(cmd, "create");
    bool writing =
        creating || !strcmp(cmd, "write") || !strcmp(cmd, "add-key") || !strcmp(cmd, "remove-key");
    fd = open(path, writing ? O_RDWR | (creating ? O_CREAT | O_TRUNC : 0) : O_RDONLY, 0644);
    if (fd < 0)
        die("%s: %s", path, strerror(errno));
    err_begin("luks-tool");

    if (!strcmp(cmd, "dump")) {
        dump(path);
    } else if (creating) {
        if (npos != 1)
            die("create FILE SIZE");
        const char *pass = env_pass("LUKS_PASS");
        co.passphrase = (const uint8_t *)pass;
        co.passphrase_len = strlen(pass);
        uint64_t hlen;
        check(luks_create(&co, &io, &hlen, NULL), "create");
        if (ftruncate(fd, (off_t)(hlen + number(pos[0]))) < 0)
            die("%s: %s", path, strerror(errno));
    } else if (!strcmp(cmd, "unlock")) {
        struct luks *l = unlock(slot);
        printf("unlocked slot %d\n", luks_unlocked_slot(l));
        luks_free(l);
    } else if (!strcmp(cmd, "read")) {
        if (npos != 2)
            die("read FILE OFF LEN");
        struct luks *l = unlock(-1);
        size_t len = (size_t)number(pos[1]);
        uint8_t *data = malloc(len ? len : 1);
        if (!data)
            die("out of memory");
        payload_rw(l, number(pos[0]), len, data, false);
        if (fwrite(data, 1, len, stdout) != len)
            die("writing stdout failed");
        free(data);
        luks_free(l);
    } else if (!strcmp(cmd, "write")) {
        if (npos != 1)
            die("write FILE OFF < DATA");
        struct luks *l = unlock(-1);
        size_t cap = 1 << 20, len = 0, n;
        uint8_t *data = malloc(cap);
        while (data && (n = fread(data + len, 1, cap - len, stdin)) > 0)
            if ((len += n) == cap)
                data = realloc(data, cap *= 2);
        if (!data)
            die("out of memory");
        payload_rw(l, number(pos[0]), len, data, true);
        free(data);
        luks_free(l);
    } else if (!strcmp(cmd, "add-key")) {
        struct luks *l = unlock(-1);
        const char *np = env_pass("LUKS_NEW_PASS");
        int r = luks_add_key(l, &io, (const uint8_t *)np, strlen(np), slot, co.iter_time_ms);
        check(r, "add-key");
        printf("added slot %d\n", r);
        luks_free(l);
    } else if (!strcmp(cmd, "remove-key")) {
        struct luks *l = unlock(-1);
        const char *op = old ? env_pass("LUKS_OLD_PASS") : NULL;
        int r = luks_remove_key(l, &io, (const uint8_t *)op, op ? strlen(op) : 0, slot, force);
        check(r, "remove-key");
        printf("erased %d slot%s\n", r, r == 1 ? "" : "s");
        luks_free(l);
    } else {
        die("unknown command %s", cmd);
    }
    if (writing && fsync(fd) < 0)
        die("%s: fsync: %s", path, strerror(errno));
    close(fd);
    return 0;
}
