// CRC32C with the SSE4.2 instruction where available and a slice-by-8 table
// everywhere else. The choice is made once (pthread_once) so the hot path is
// one predictable branch; the tables are built at the same time because a
// 2,048-entry literal would be unreviewable and building them takes ~10 us.

#include "ccrc32c.h"

#include <pthread.h>
#include <string.h>

// CCRC32C_NO_HARDWARE builds the table path alone (how non-x86 targets
// compile; lets the fallback be built and checked on an x86 machine).
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(CCRC32C_NO_HARDWARE)
#define CCRC32C_X86 1
#include <nmmintrin.h>
#endif

// Reflected Castagnoli polynomial.
#define POLY 0x82F63B78u

// table[k][b]: the CRC of byte b followed by k zero bytes, so eight bytes can
// be folded with eight independent lookups (slice-by-8).
static uint32_t table[8][256];
static int use_hardware;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++) c = (c >> 1) ^ (POLY & (0u - (c & 1u)));
        table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++) {
        for (int k = 1; k < 8; k++) table[k][b] = (table[k - 1][b] >> 8) ^ table[0][table[k - 1][b] & 0xFF];
    }
}

static void init(void) {
    build_tables();
#ifdef CCRC32C_X86
    __builtin_cpu_init();
    use_hardware = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    use_hardware = 0;
#endif
}

// Little-endian load without alignment assumptions (memcpy compiles to one mov).
static inline uint64_t load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static uint32_t extend_table(uint32_t crc, const unsigned char *p, size_t len) {
    uint32_t c = ~crc;
    while (len >= 8) {
        uint64_t w = load64(p) ^ c;
        c = table[7][w & 0xFF] ^ table[6][(w >> 8) & 0xFF] ^ table[5][(w >> 16) & 0xFF] ^
            table[4][(w >> 24) & 0xFF] ^ table[3][(w >> 32) & 0xFF] ^ table[2][(w >> 40) & 0xFF] ^
            table[1][(w >> 48) & 0xFF] ^ table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--) c = (c >> 8) ^ table[0][(c ^ *p++) & 0xFF];
    return ~c;
}

#ifdef CCRC32C_X86
// Eight bytes per instruction; records are short (< 512 bytes), so no
// three-way interleaving: the loop is already far below the cost of encoding.
__attribute__((target("sse4.2")))
static uint32_t extend_hardware(uint32_t crc, const unsigned char *p, size_t len) {
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

uint32_t ccrc32c_extend(uint32_t crc, const void *data, size_t len) {
    pthread_once(&once, init);
#ifdef CCRC32C_X86
    if (use_hardware) return extend_hardware(crc, (const unsigned char *)data, len);
#endif
    return extend_table(crc, (const unsigned char *)data, len);
}

uint32_t ccrc32c_extend_table(uint32_t crc, const void *data, size_t len) {
    pthread_once(&once, init);
    return extend_table(crc, (const unsigned char *)data, len);
}

int ccrc32c_hardware(void) {
    pthread_once(&once, init);
    return use_hardware;
}
