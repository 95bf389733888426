import Foundation
import Glibc

/// The terminal `stockctl watch` draws on: its size, colour preference, and
/// the alternate screen (entered once, left on every way out — a normal end,
/// an error, SIGINT or SIGTERM — so the operator's shell is never left in it).
enum Terminal {
    /// Used when neither TIOCGWINSZ nor $LINES / $COLUMNS give a size.
    static let fallbackSize = WatchScreen.Size(rows: 24, columns: 80)

    /// The size of the terminal on `fd` (TIOCGWINSZ), else $LINES × $COLUMNS, else 24 × 80.
    /// Read again for every frame, so a resized window gets a fitting frame on the next refresh.
    static func size(_ fd: Int32 = STDOUT_FILENO) -> WatchScreen.Size {
        var w = winsize()
        if ioctl(fd, UInt(TIOCGWINSZ), &w) == 0, w.ws_row > 0, w.ws_col > 0 {
            return WatchScreen.Size(rows: Int(w.ws_row), columns: Int(w.ws_col))
        }
        let env = ProcessInfo.processInfo.environment
        if let rows = env["LINES"].flatMap({ Int($0) }), let columns = env["COLUMNS"].flatMap({ Int($0) }),
           rows > 0, columns > 0 {
            return WatchScreen.Size(rows: rows, columns: columns)
        }
        return fallbackSize
    }

    /// Colour unless NO_COLOR is set to anything non-empty (https://no-color.org).
    static var colourAllowed: Bool {
        guard let value = ProcessInfo.processInfo.environment["NO_COLOR"] else { return true }
        return value.isEmpty
    }

    /// Enters the alternate screen and hides the cursor; SIGINT and SIGTERM
    /// then leave it before the process dies of the signal (so the shell
    /// still sees "killed by SIGINT", as without the handler).
    static func enterAlternateScreen() {
        signal(SIGINT, leaveOnSignal)
        signal(SIGTERM, leaveOnSignal)
        writeAll("\u{1B}[?1049h\u{1B}[?25l")
    }

    /// Leaves the alternate screen and shows the cursor again (the screen before watch comes back).
    static func leaveAlternateScreen() {
        writeAll("\u{1B}[?25h\u{1B}[?1049l")
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }

    /// Draws a frame: cursor home, each line erased to its end, then everything below erased.
    /// The last line gets no newline, so a frame of exactly the terminal's height does not scroll.
    static func draw(_ lines: [String]) {
        writeAll("\u{1B}[H" + lines.map { $0 + "\u{1B}[K" }.joined(separator: "\r\n") + "\u{1B}[J")
    }

    /// The whole text to stdout (retrying short writes), unbuffered: a frame goes out in one piece.
    static func writeAll(_ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }  // stdout gone: nothing left to draw on
            bytes = bytes.dropFirst(n)
        }
    }
}

/// SIGINT / SIGTERM while on the alternate screen: only async-signal-safe calls
/// (write, signal, raise) and a static string, no allocation.
private func leaveOnSignal(_ sig: Int32) {
    let restore: StaticString = "\u{1B}[?25h\u{1B}[?1049l"
    _ = write(STDOUT_FILENO, restore.utf8Start, restore.utf8CodeUnitCount)
    signal(sig, SIG_DFL)
    raise(sig)
}
