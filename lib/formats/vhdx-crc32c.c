// SPDX-License-Identifier: MIT
/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial value and
 * final XOR 0xFFFFFFFF), the checksum of every VHDX header, region table
 * and log entry.  Table-driven, one byte at a time; a table of 256 entries
 * is computed once on first use. */
#include <pthread.h>
#include <string.h>

#include "byteorder.h"
#include "vhdx-internal.h"

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t
crc_update(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

uint32_t
vhdx_crc32c(const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_table_init);
    return ~crc_update(0xFFFFFFFFu, buf, len);
}

/* The CRC over @buf with the 4 bytes at @crc_off counted as zeros. */
static uint32_t
crc_without_field(const uint8_t *buf, size_t len, size_t crc_off)
{
    static const uint8_t zero[4];
    pthread_once(&crc_once, crc_table_init);
    uint32_t crc = crc_update(0xFFFFFFFFu, buf, crc_off);
    crc = crc_update(crc, zero, 4);
    return ~crc_update(crc, buf + crc_off + 4, len - crc_off - 4);
}

bool
vhdx_checksum_ok(const uint8_t *buf, size_t len, size_t crc_off)
{
    return crc_off + 4 <= len && crc_without_field(buf, len, crc_off) == le32_get(buf + crc_off);
}

void
vhdx_checksum_set(uint8_t *buf, size_t len, size_t crc_off)
{
    le32_put(buf + crc_off, crc_without_field(buf, len, crc_off));
}
