/* CRC-32C of a byte range, continuing from `crc` (0 to start). */
#ifndef LP_CRC32C_H
#define LP_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t lp_crc32c(uint32_t crc, const uint8_t* data, size_t len);

#endif
