import CLibUV

/// A queued `uv_write`: the request, the byte count and a copy of the bytes
/// in one heap block. `req.data` holds the owner (a Connection or a
/// FeedSubscriber, unretained). The count is kept in the block because
/// libuv sets `req->bufs` to NULL before the callback of a write that
/// succeeded — reading it there is a crash (found by `make bench-feed`).
enum WriteBlock {
    private static let sizeOffset = (MemoryLayout<uv_write_t>.size + 7) & ~7
    private static let header = (sizeOffset + MemoryLayout<Int>.size + 15) & ~15

    /// A request holding a copy of `count` bytes, and the buffer to pass to `uv_write`.
    static func make(owner: UnsafeMutableRawPointer, copying bytes: UnsafeRawPointer, count: Int)
        -> (req: UnsafeMutablePointer<uv_write_t>, buf: uv_buf_t)
    {
        let block = UnsafeMutableRawPointer.allocate(byteCount: header + count, alignment: 16)
        let req = block.bindMemory(to: uv_write_t.self, capacity: 1)
        block.storeBytes(of: count, toByteOffset: sizeOffset, as: Int.self)
        let data = block + header
        data.copyMemory(from: bytes, byteCount: count)
        req.pointee.data = owner
        return (req, uv_buf_init(data.assumingMemoryBound(to: CChar.self), UInt32(count)))
    }

    /// In the write callback (or when `uv_write` refused): the owner and the byte count; frees the block.
    static func finish(_ req: UnsafeMutablePointer<uv_write_t>) -> (owner: UnsafeMutableRawPointer, count: Int) {
        let block = UnsafeMutableRawPointer(req)
        let owner = req.pointee.data!
        let count = block.load(fromByteOffset: sizeOffset, as: Int.self)
        block.deallocate()
        return (owner, count)
    }
}

extension WriteBlock {
    /// Hands `bytes` to the kernel in order: one `uv_try_write` when no
    /// write is queued (with writes queued, order demands we queue too),
    /// the rest copied into a block and queued with `uv_write`, whose
    /// callback `onWritten` gets the block back (`finish`). Returns the
    /// bytes queued (0: all written now), or nil if the stream failed.
    static func send(_ bytes: UnsafeRawBufferPointer, on stream: UnsafeMutablePointer<uv_stream_t>, queued: Int,
                     owner: UnsafeMutableRawPointer, onWritten: @escaping uv_write_cb) -> Int? {
        var written = 0
        if queued == 0 {
            var buf = uv_buf_init(UnsafeMutablePointer(mutating: bytes.baseAddress!.assumingMemoryBound(to: CChar.self)),
                                  UInt32(bytes.count))
            let n = uv_try_write(stream, &buf, 1)
            if n >= 0 {
                written = Int(n)
            } else if n != UV_EAGAIN.rawValue {
                return nil
            }
        }
        let rest = bytes.count - written
        guard rest > 0 else { return 0 }
        var (req, buf) = make(owner: owner, copying: bytes.baseAddress! + written, count: rest)
        guard uv_write(req, stream, &buf, 1, onWritten) == 0 else {
            _ = finish(req)
            return nil
        }
        return rest
    }
}
