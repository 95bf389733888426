// libuv as seen from Swift. Do not define _GNU_SOURCE here: it breaks fd_set
// against the Glibc module (see shared notes). No `link` line: SwiftPM takes
// the libraries from pkg-config, which keeps static linking possible.
#include <uv.h>
