import Foundation
import Glibc

/// The credentials of the `--auth-file` tests (stockd's AuthTests, ViewerRoleTests, SpecConformanceTests,
/// and stockbench's hostile suite against an authenticated stockd).
public enum AuthFixture {
    public static let checkoutSecret = "chk-7f3a9c2e1b4d8f60a5e2"
    public static let adminSecret = "adm-2b8e4f1a9c7d3e5f6a0b"
    public static let authText = """
        # name      role      secret
        shop        checkout  \(checkoutSecret)
        ops         admin     \(adminSecret)
        """

    /// An auth file (mode 600) in `dir`.
    @discardableResult
    public static func authFile(_ dir: TempDirectory, _ text: String = authText, name: String = "auth") throws -> String {
        let path = try dir.write(name, text)
        chmod(path, 0o600)
        return path
    }
}
