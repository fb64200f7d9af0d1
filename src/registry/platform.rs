//! Platform artifact matching: which release file fits this host (OS and CPU architecture),
//! and which file holds its published SHA-256 checksum.

/// Archive suffixes the deployer can extract, lower-case.
const ARCHIVE_SUFFIXES: &[&str] = &[
    ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst", ".tzst", ".tar", ".zip",
];

/// Suffixes of files that are never the artifact: checksums, signatures, certificates, SBOMs,
/// OS packages and bare compressed files.
const NEVER_SUFFIXES: &[&str] = &[
    ".sha256",
    ".sha256sum",
    ".sha256sums",
    ".sha512",
    ".sha1",
    ".md5",
    ".sig",
    ".asc",
    ".minisig",
    ".txt",
    ".pem",
    ".crt",
    ".cert",
    ".pub",
    ".sbom",
    ".spdx",
    ".json",
    ".jsonl",
    ".intoto",
    ".deb",
    ".rpm",
    ".apk",
    ".msi",
    ".exe",
    ".dmg",
    ".pkg",
    ".gz",
    ".bz2",
    ".xz",
    ".zst",
    ".7z",
];

/// Name fragments of aggregate checksum files.
const NEVER_CONTAINS: &[&str] = &["checksums", "sha256sums"];

/// The OS names a file may use for `os` (`std::env::consts::OS` spelling).
fn os_aliases(os: &str) -> Vec<String> {
    match os {
        "macos" | "darwin" => vec!["darwin".into(), "macos".into()],
        other => vec![other.to_ascii_lowercase()],
    }
}

/// The architecture tokens a file may use for `arch` (`std::env::consts::ARCH` spelling).
fn arch_aliases(arch: &str) -> Vec<String> {
    let group: &[&str] = match arch {
        "x86_64" | "amd64" | "x64" => &["x86_64", "amd64", "x64"],
        "aarch64" | "arm64" => &["aarch64", "arm64"],
        "arm" | "armv7" | "armhf" => &["arm", "armv7", "armv7l", "armhf"],
        "x86" | "i686" | "i386" | "386" => &["i686", "i386", "386", "x86"],
        other => return vec![other.to_ascii_lowercase()],
    };
    group.iter().map(|s| s.to_string()).collect()
}

/// Split a lower-cased name into tokens on `_`, `-` and `.`, keeping `x86_64`/`x86-64` whole.
fn tokens(name: &str) -> Vec<String> {
    let parts: Vec<&str> = name.split(['_', '-', '.']).filter(|s| !s.is_empty()).collect();
    let mut out = Vec::with_capacity(parts.len());
    let mut i = 0;
    while i < parts.len() {
        if parts[i] == "x86" && parts.get(i + 1) == Some(&"64") {
            out.push("x86_64".to_string());
            i += 2;
        } else {
            out.push(parts[i].to_string());
            i += 1;
        }
    }
    out
}

fn is_archive(lower: &str) -> bool {
    ARCHIVE_SUFFIXES.iter().any(|s| lower.ends_with(s))
}

fn is_never(lower: &str) -> bool {
    NEVER_SUFFIXES.iter().any(|s| lower.ends_with(s)) || NEVER_CONTAINS.iter().any(|s| lower.contains(s))
}

fn fits(lower: &str, os: &[String], arch: &[String]) -> bool {
    let toks = tokens(lower);
    let has_os = os.iter().any(|o| lower.contains(o.as_str()));
    let has_arch = arch.iter().any(|a| toks.iter().any(|t| t == a));
    has_os && has_arch
}

/// The artifact for this host among `names`: the exact `explicit` name when given, otherwise
/// the first archive naming this OS and architecture, else a plain binary naming both.
pub fn choose<'a>(names: &[&'a str], explicit: Option<&str>) -> Option<&'a str> {
    choose_for(names, explicit, std::env::consts::OS, std::env::consts::ARCH)
}

/// [`choose`] for a given OS and architecture (Rust `std::env::consts` spellings).
pub fn choose_for<'a>(names: &[&'a str], explicit: Option<&str>, os: &str, arch: &str) -> Option<&'a str> {
    if let Some(want) = explicit {
        return names.iter().copied().find(|n| *n == want);
    }
    let os = os_aliases(os);
    let arch = arch_aliases(arch);
    let archive = names.iter().copied().find(|n| {
        let lower = n.to_ascii_lowercase();
        is_archive(&lower) && fits(&lower, &os, &arch)
    });
    archive
        .or_else(|| {
            names.iter().copied().find(|n| {
                let lower = n.to_ascii_lowercase();
                !is_archive(&lower) && !is_never(&lower) && fits(&lower, &os, &arch)
            })
        })
        .or_else(|| platform_neutral(names))
}

/// The one archive that names no OS and no architecture at all (a static site, a bundle of
/// scripts): assets are often the same for every host. Ambiguity (several such archives) picks none.
fn platform_neutral<'a>(names: &[&'a str]) -> Option<&'a str> {
    const OS_WORDS: &[&str] = &[
        "linux", "darwin", "macos", "windows", "freebsd", "netbsd", "openbsd",
    ];
    const ARCH_WORDS: &[&str] = &[
        "x86_64", "amd64", "x64", "aarch64", "arm64", "arm", "armv7", "armv6", "armhf", "i686", "i386",
        "386", "x86", "riscv64", "ppc64le", "s390x", "mips", "mips64", "loong64",
    ];
    let mut neutral = names.iter().copied().filter(|n| {
        let lower = n.to_ascii_lowercase();
        let toks = tokens(&lower);
        is_archive(&lower)
            && !OS_WORDS.iter().any(|o| lower.contains(o))
            && !toks.iter().any(|t| ARCH_WORDS.contains(&t.as_str()))
    });
    let first = neutral.next()?;
    neutral.next().is_none().then_some(first)
}

/// Where a checksum file ranks among the files that may hold the SHA-256 of `artifact` (lower is
/// preferred): `<artifact>.sha256` (or `.sha256sum`, `.sha256.txt`, `.sha256sums`) first, then an
/// aggregate `checksums.txt`, `SHA256SUMS`, `*_checksums.txt` or `sha256sums.txt`.
fn checksum_rank(name: &str, artifact: &str) -> Option<usize> {
    const OWN: [&str; 4] = [".sha256", ".sha256sum", ".sha256.txt", ".sha256sums"];
    if let Some(i) = OWN
        .iter()
        .position(|suffix| name.strip_suffix(suffix) == Some(artifact))
    {
        return Some(i);
    }
    let lower = name.to_ascii_lowercase();
    let aggregate: [&dyn Fn(&str) -> bool; 4] = [
        &|n| n == "checksums.txt",
        &|n| n == "sha256sums",
        &|n| n.ends_with("_checksums.txt") || n.ends_with("-checksums.txt"),
        &|n| n == "sha256sums.txt",
    ];
    aggregate
        .iter()
        .position(|rule| rule(&lower))
        .map(|i| OWN.len() + i)
}

/// The file holding the SHA-256 of `artifact`: `<artifact>.sha256` (or `.sha256sum`,
/// `.sha256.txt`, `.sha256sums`) first, then an aggregate `checksums.txt`, `SHA256SUMS`,
/// `*_checksums.txt` or `sha256sums.txt`.
pub fn checksum_asset<'a>(names: &[&'a str], artifact: &str) -> Option<&'a str> {
    names
        .iter()
        .copied()
        .filter_map(|n| checksum_rank(n, artifact).map(|rank| (rank, n)))
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, n)| n)
}

/// The suffixes of detached signature files: minisign, and `.sig` (signify, cosign or binary
/// OpenPGP), `.asc` (armored OpenPGP).
pub const SIGNATURE_SUFFIXES: [&str; 3] = [".minisig", ".sig", ".asc"];

/// The signatures among `names` that dewy can check for `artifact`, as (signature, signed file):
/// those of the artifact itself first, then those of the checksum files in [`checksum_asset`]'s
/// order of preference.
pub fn signature_assets<'a>(names: &[&'a str], artifact: &str) -> Vec<(&'a str, &'a str)> {
    let mut signed: Vec<(usize, &'a str)> = names
        .iter()
        .copied()
        .filter_map(|n| {
            if n == artifact {
                Some((0, n))
            } else {
                checksum_rank(n, artifact).map(|rank| (rank + 1, n))
            }
        })
        .collect();
    signed.sort_by_key(|(rank, _)| *rank);
    let mut out = Vec::new();
    for (_, file) in signed {
        for suffix in SIGNATURE_SUFFIXES {
            let want = format!("{file}{suffix}");
            if let Some(sig) = names.iter().copied().find(|n| *n == want) {
                out.push((sig, file));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GORELEASER: &[&str] = &[
        "checksums.txt",
        "dewy_darwin_arm64.tar.gz",
        "dewy_darwin_x86_64.tar.gz",
        "dewy_linux_arm64.tar.gz",
        "dewy_linux_x86_64.tar.gz",
        "dewy_linux_armv7.tar.gz",
        "dewy_linux_i386.tar.gz",
    ];

    #[test]
    fn single_platform_neutral_archive() {
        assert_eq!(
            choose_for(&["site.tar.gz", "checksums.txt"], None, "linux", "x86_64"),
            Some("site.tar.gz")
        );
        assert_eq!(choose_for(&["a.tar.gz", "b.zip"], None, "linux", "x86_64"), None);
        assert_eq!(
            choose_for(&["app_linux_arm64.tar.gz"], None, "linux", "x86_64"),
            None
        );
    }

    #[test]
    fn explicit_is_exact() {
        assert_eq!(
            choose_for(GORELEASER, Some("dewy_linux_arm64.tar.gz"), "linux", "x86_64"),
            Some("dewy_linux_arm64.tar.gz")
        );
        assert_eq!(
            choose_for(GORELEASER, Some("DEWY_linux_arm64.tar.gz"), "linux", "x86_64"),
            None
        );
    }

    #[test]
    fn arch_aliases_as_tokens() {
        let pick = |arch| choose_for(GORELEASER, None, "linux", arch);
        assert_eq!(pick("x86_64"), Some("dewy_linux_x86_64.tar.gz"));
        assert_eq!(pick("aarch64"), Some("dewy_linux_arm64.tar.gz"));
        assert_eq!(pick("arm"), Some("dewy_linux_armv7.tar.gz"));
        assert_eq!(pick("x86"), Some("dewy_linux_i386.tar.gz"));
        assert_eq!(pick("riscv64"), None);
        assert_eq!(
            choose_for(GORELEASER, None, "macos", "aarch64"),
            Some("dewy_darwin_arm64.tar.gz")
        );
    }

    #[test]
    fn amd64_and_x64_spellings() {
        let names = ["App-Linux-AMD64.TGZ", "app-linux-x64.zip"];
        assert_eq!(
            choose_for(&names, None, "linux", "x86_64"),
            Some("App-Linux-AMD64.TGZ")
        );
        let names = ["app.x86-64.linux.tar.zst"];
        assert_eq!(
            choose_for(&names, None, "linux", "x86_64"),
            Some("app.x86-64.linux.tar.zst")
        );
    }

    #[test]
    fn arm_does_not_match_arm64_and_x86_not_x86_64() {
        let names = ["app_linux_arm64.tar.gz", "app_linux_x86_64.tar.gz"];
        assert_eq!(choose_for(&names, None, "linux", "arm"), None);
        assert_eq!(choose_for(&names, None, "linux", "x86"), None);
    }

    #[test]
    fn archive_preferred_over_binary_and_checksums_never() {
        let names = [
            "app_linux_amd64.sha256",
            "app_linux_amd64.sig",
            "app_linux_amd64",
            "app_linux_amd64.tar.xz",
        ];
        assert_eq!(
            choose_for(&names, None, "linux", "x86_64"),
            Some("app_linux_amd64.tar.xz")
        );
        let names = [
            "app_linux_amd64.sha256",
            "app_linux_amd64.asc",
            "app_linux_amd64_checksums.txt",
            "app_linux_amd64.deb",
            "app_linux_amd64",
        ];
        assert_eq!(
            choose_for(&names, None, "linux", "x86_64"),
            Some("app_linux_amd64")
        );
        let names = ["app_linux_amd64.minisig", "app_linux_amd64"];
        assert_eq!(
            choose_for(&names, None, "linux", "x86_64"),
            Some("app_linux_amd64")
        );
        let names = ["app_linux_amd64.sha256", "SHA256SUMS", "app_linux_amd64.pem"];
        assert_eq!(choose_for(&names, None, "linux", "x86_64"), None);
    }

    #[test]
    fn os_required() {
        let names = ["app_amd64.tar.gz", "app_windows_amd64.zip"];
        assert_eq!(choose_for(&names, None, "linux", "x86_64"), None);
    }

    #[test]
    fn host_choice_uses_consts() {
        let name = format!("app_{}_{}.tar.gz", std::env::consts::OS, std::env::consts::ARCH);
        let names = [name.as_str()];
        assert_eq!(choose(&names, None), Some(name.as_str()));
    }

    #[test]
    fn checksum_asset_preference() {
        let names = ["checksums.txt", "app.tar.gz.sha256", "app.tar.gz", "SHA256SUMS"];
        assert_eq!(checksum_asset(&names, "app.tar.gz"), Some("app.tar.gz.sha256"));
        assert_eq!(checksum_asset(&names, "other.tar.gz"), Some("checksums.txt"));
        let names = ["SHA256SUMS", "app_1.0_checksums.txt"];
        assert_eq!(checksum_asset(&names, "x"), Some("SHA256SUMS"));
        let names = ["app_1.0_checksums.txt", "sha256sums.txt"];
        assert_eq!(checksum_asset(&names, "x"), Some("app_1.0_checksums.txt"));
        let names = ["x.sha256.txt", "sha256sums.txt"];
        assert_eq!(checksum_asset(&names, "x"), Some("x.sha256.txt"));
        assert_eq!(checksum_asset(&["app.tar.gz"], "app.tar.gz"), None);
        let names = ["sha256sums.txt", "app_1.0_checksums.txt"];
        assert_eq!(checksum_asset(&names, "x"), Some("app_1.0_checksums.txt"));
    }

    #[test]
    fn signatures_of_the_artifact_first_then_of_checksum_files() {
        let names = [
            "SHA256SUMS",
            "SHA256SUMS.asc",
            "app.tar.gz",
            "app.tar.gz.sha256",
            "app.tar.gz.sha256.minisig",
            "app.tar.gz.sig",
            "app.tar.gz.minisig",
            "other.tar.gz",
            "other.tar.gz.minisig",
            "unrelated.txt.sig",
        ];
        assert_eq!(
            signature_assets(&names, "app.tar.gz"),
            [
                ("app.tar.gz.minisig", "app.tar.gz"),
                ("app.tar.gz.sig", "app.tar.gz"),
                ("app.tar.gz.sha256.minisig", "app.tar.gz.sha256"),
                ("SHA256SUMS.asc", "SHA256SUMS"),
            ]
        );
        assert_eq!(
            signature_assets(&names, "other.tar.gz"),
            [
                ("other.tar.gz.minisig", "other.tar.gz"),
                ("SHA256SUMS.asc", "SHA256SUMS"),
            ]
        );
        assert!(signature_assets(&["app.tar.gz", "checksums.txt"], "app.tar.gz").is_empty());
    }
}
