// Counts heap allocations of the whole process by interposing malloc and
// friends (glibc's __libc_* entry points do the real work). Linked only
// into benchmarks, to prove the hot path allocates nothing.
#pragma once
#include <stdint.h>

/// Allocation calls (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) so far.
uint64_t malloc_counter_allocations(void);
