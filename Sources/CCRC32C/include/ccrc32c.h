// CRC32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78) for the
// journal's records and snapshots. Check value: CRC32C("123456789") = 0xE3069283.
#ifndef CCRC32C_H
#define CCRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Extends `crc` (0 to start, or a previous result) over `len` bytes of
/// `data`, so a value can be checksummed in pieces:
/// extend(extend(0, a), b) == extend(0, a ++ b). The pre- and
/// post-inversion of the standard CRC32C are applied inside. Uses the SSE4.2
/// `crc32` instruction when the CPU has it, a slice-by-8 table otherwise.
uint32_t ccrc32c_extend(uint32_t crc, const void *data, size_t len);

/// The table implementation alone, whatever the CPU (tests compare the two).
uint32_t ccrc32c_extend_table(uint32_t crc, const void *data, size_t len);

/// 1 when `ccrc32c_extend` uses the hardware instruction, 0 otherwise.
int ccrc32c_hardware(void);

#ifdef __cplusplus
}
#endif

#endif
