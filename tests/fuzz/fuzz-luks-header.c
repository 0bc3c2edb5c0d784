// SPDX-License-Identifier: MIT
/* Fuzz target: a LUKS1 header area (the header and its key material, as
 * lib/crypto reads it inside an encrypted qcow2 image or a standalone LUKS
 * file): decode and validate it, map its names to QEMU's, and, when its
 * iteration counts are small enough to run quickly, try to unlock it with
 * a passphrase (the PBKDF2, the key material decryption and the
 * anti-forensic merge then all run on hostile input).
 *
 * Every call may fail, but cleanly, with a message.  A header the decoder
 * accepts has the properties it promises: names that map, active key
 * material inside the area, before the payload. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "topcow.h"
#include "fuzz-common.h"
#include "luks.h"

/* Unlock only headers whose PBKDF2 work stays small. */
#define MAX_ITERS 5000u
#define MAX_KEY_MATERIAL (1u << 20)

struct area {
    const uint8_t *data;
    size_t size;
};

static int
area_read(void *opaque, void *buf, size_t len, uint64_t off)
{
    const struct area *a = opaque;
    /* Past the end reads as zeros, as a sparse file does. */
    memset(buf, 0, len);
    if (off < a->size)
        memcpy(buf, a->data + off, len < a->size - off ? len : (size_t)(a->size - off));
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    struct luks_header h;
    int r = luks_header_decode(data, size, &h);
    if (r < 0) {
        fuzz_touch_string(topcow_last_error());
        return 0;
    }
    fuzz_touch_string(h.cipher_name);
    fuzz_touch_string(h.cipher_mode);
    fuzz_touch_string(h.hash_spec);
    fuzz_touch_string(h.uuid);
    fuzz_touch_string(h.names.cipher_alg);
    fuzz_touch_string(h.names.ivgen_hash_alg);
    bool cheap = h.mk_iters <= MAX_ITERS;
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        const struct luks_slot *s = &h.slots[i];
        if (!s->active)
            continue;
        if (h.payload_offset && s->key_offset >= h.payload_offset)
            fuzz_fail("decoded header: slot %d key material at %llu is not before the payload "
                      "(%llu)", i, (unsigned long long)s->key_offset,
                      (unsigned long long)h.payload_offset);
        cheap = cheap && s->iters <= MAX_ITERS &&
                (uint64_t)s->stripes * h.key_bytes <= MAX_KEY_MATERIAL;
    }
    if (!cheap)
        return 0;
    struct area a = { data, size };
    struct luks_io io = { area_read, NULL, &a };
    struct luks *l = NULL;
    r = luks_unlock(&io, (const uint8_t *)"fuzz", 4, -1, &l);
    if (r == 0) {
        /* Possible only for an input made with this passphrase (a seed). */
        uint8_t sector[512] = { 0 };
        if (sector_cipher_decrypt(luks_cipher(l), 0, sector, sizeof sector) < 0)
            fuzz_fail("an unlocked volume's cipher fails: %s", topcow_last_error());
        luks_free(l);
    } else {
        if (l)
            fuzz_fail("a failed unlock (%d) returned a volume", r);
        fuzz_touch_string(topcow_last_error());
    }
    return 0;
}
