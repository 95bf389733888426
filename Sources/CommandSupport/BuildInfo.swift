/// What `--version` prints on every binary: the release and the git commit it was built from.
public enum BuildInfo {
    /// The release, the same text as the git tag `v<version>` it is cut from.
    public static let version = "0.2.0"

    /// The commit the binary was built from (12 hex digits), or `unknown` when the source tree had no
    /// git history (a tarball, a Docker build without .git). Written at build time by
    /// Plugins/BuildInfoPlugin, never by hand.
    public static let commit: String = generatedBuildCommit

    /// `stockctl 0.2.0 (commit abc123def456)`.
    public static func versionLine(program: String) -> String {
        "\(program) \(version) (commit \(commit))"
    }
}
