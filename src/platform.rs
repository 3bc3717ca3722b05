//! Facts about the host: its architecture in OCI terms and its ALT platform.
//!
//! A bundle holds one architecture, and the platform decides the image names
//! (`c10f/…`), so both have to be right by default on the isolated host — where the
//! user may not know that ALT SP Server 10 is "c10f" or that `aarch64` is `arm64`.

use std::collections::HashMap;

use crate::reference::is_valid_repository;

/// The architectures podsec-k8s builds images for, in OCI (GOARCH) spelling.
pub const KNOWN_ARCHES: &[&str] = &["amd64", "arm64", "arm", "ppc64le", "386"];

/// An architecture name [`normalize_arch`] does not know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown architecture {input:?}; known: amd64, arm64, arm (arm/v7, arm/v6, arm/v5, arm/v8), ppc64le, 386 \
     (x86_64, aarch64, armhf, i686 … are accepted as aliases)"
)]
pub struct UnknownArch {
    pub input: String,
}

/// The OCI name of the architecture this binary runs on.
pub fn host_arch() -> &'static str {
    oci_arch(std::env::consts::ARCH, cfg!(target_endian = "little"))
}

/// Whether a bundle for `bundle_arch` may be loaded here: it must be the
/// architecture asked for (`requested`, normalized) or, when none is, the
/// host's. A signed bundle for another architecture is still an attack when
/// it re-points this host's tags to images it cannot run.
pub fn check_bundle_arch(bundle_arch: &str, requested: Option<&str>) -> Result<(), String> {
    let wanted = match requested {
        Some(r) => normalize_arch(r).map_err(|e| e.to_string())?.0,
        None => host_arch().to_string(),
    };
    if bundle_arch == wanted {
        return Ok(());
    }
    Err(match requested {
        Some(_) => format!("the bundle is for {bundle_arch}, not {wanted} (--arch)"),
        None => format!(
            "the bundle is for {bundle_arch}, this host is {wanted}: give --arch {bundle_arch} to load it anyway"
        ),
    })
}

/// Rust's `target_arch` → OCI's `architecture`. Anything not listed is spelled the
/// same in both (`riscv64`, `s390x`), so it is passed through.
fn oci_arch(rust_arch: &'static str, little_endian: bool) -> &'static str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" if little_endian => "ppc64le",
        "powerpc64" => "ppc64",
        "x86" => "386",
        other => other,
    }
}

/// An architecture as the user, `uname -m` or ALT's packaging spells it →
/// `(OCI architecture, OCI variant)`.
///
/// Variants follow containerd's normalization, which is what registries' indexes
/// are written against: `arm` alone means `arm/v7` (ALT's only 32-bit ARM port,
/// armh, is ARMv7 hard-float), and `arm64/v8` is plain `arm64`.
pub fn normalize_arch(s: &str) -> Result<(String, Option<String>), UnknownArch> {
    let unknown = || UnknownArch {
        input: s.to_string(),
    };
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.strip_prefix("linux/").unwrap_or(&lower);
    let (arch, variant) = match lower.split_once('/') {
        Some((a, v)) => (a, Some(v.strip_prefix('v').unwrap_or(v))),
        None => (lower, None),
    };
    let pair = |a: &str, v: Option<&str>| Ok((a.to_string(), v.map(|v| format!("v{v}"))));
    match (arch, variant) {
        ("amd64" | "x86_64" | "x86-64", None) => pair("amd64", None),
        ("arm64" | "aarch64", None | Some("8")) => pair("arm64", None),
        ("arm" | "armhf" | "armh" | "armv7" | "armv7l" | "armv7hl", None) => pair("arm", Some("7")),
        ("armv6" | "armv6l" | "armel", None) => pair("arm", Some("6")),
        ("arm", Some(v @ ("5" | "6" | "7" | "8"))) => pair("arm", Some(v)),
        ("ppc64le" | "ppc64el" | "powerpc64le", None) => pair("ppc64le", None),
        ("386" | "i386" | "i486" | "i586" | "i686" | "x86", None) => pair("386", None),
        _ => Err(unknown()),
    }
}

/// Parse os-release(5): `KEY=value` lines, values optionally in double quotes (with
/// `\` escapes) or single quotes; comments and malformed lines are skipped.
fn parse_os_release(text: &str) -> HashMap<&str, String> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let raw = raw.trim();
        let value = if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            inner.to_string()
        } else {
            raw.to_string()
        };
        fields.insert(key.trim(), value);
    }
    fields
}

/// A platform name must be a single registry path component, since it becomes one
/// (`registry.local/<platform>/…`): os-release is not trusted to be well-formed.
fn as_platform(s: &str) -> Option<String> {
    (!s.contains('/') && is_valid_repository(s)).then(|| s.to_string())
}

/// The ALT platform (`c10f`, `p10`, `sisyphus`, …) of the system described by the
/// os-release text, the way podsec's `getPlatform` decides it:
///
/// 1. `ALT_BRANCH_ID`: `c10f…` (c10f1, c10f2) → `c10f`, else the branch itself;
/// 2. else `CPE_NAME` (`cpe:/o:alt:<product>:<version>`): product `spserver`
///    (ALT SP Server, the certified c10f) → `c10f`; `sisyphus` → `sisyphus`;
/// 3. else `p<major version>`, the version from the CPE or else `VERSION_ID`
///    (`10.1` → `p10`).
///
/// Unlike podsec, a system that is not ALT at all (no `ALT_BRANCH_ID`, `ID` not
/// `altlinux`, CPE vendor not `alt`) gives `None` rather than a made-up `p12` from
/// Debian's `VERSION_ID=12`.
pub fn platform_from_os_release(text: &str) -> Option<String> {
    let f = parse_os_release(text);
    let get = |k: &str| f.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());

    if let Some(branch) = get("ALT_BRANCH_ID") {
        return if branch.starts_with("c10f") {
            Some("c10f".to_string())
        } else {
            as_platform(branch)
        };
    }
    // cpe:/o:alt:spserver:10 (CPE 2.2) or cpe:2.3:o:alt:spserver:10:… (CPE 2.3):
    // find the vendor field, then product and version follow it.
    let cpe: Vec<&str> = get("CPE_NAME")
        .map(|c| c.split(':').collect())
        .unwrap_or_default();
    let vendor_at = cpe.iter().position(|&field| field == "alt");
    let product = vendor_at.and_then(|i| cpe.get(i + 1)).copied();
    let cpe_version = vendor_at.and_then(|i| cpe.get(i + 2)).copied();
    let is_alt = vendor_at.is_some() || get("ID") == Some("altlinux");
    if !is_alt {
        return None;
    }
    if cpe.contains(&"spserver") {
        return Some("c10f".to_string());
    }
    if product == Some("sisyphus") {
        return Some("sisyphus".to_string());
    }
    let version = cpe_version
        .filter(|v| !v.is_empty())
        .or_else(|| get("VERSION_ID"))?;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    let major: u64 = digits.parse().ok()?;
    as_platform(&format!("p{major}"))
}

/// The platform of this host: `U7S_PLATFORM` when set (podsec's override, kept so
/// existing scripts keep working), else /etc/os-release (or /usr/lib/os-release).
pub fn host_platform() -> Option<String> {
    host_platform_from(std::env::var("U7S_PLATFORM").ok(), || {
        ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
    })
}

fn host_platform_from(
    env: Option<String>,
    os_release: impl FnOnce() -> Option<String>,
) -> Option<String> {
    match env.as_deref().map(str::trim) {
        Some(p) if !p.is_empty() => Some(p.to_string()),
        _ => platform_from_os_release(&os_release()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C10F2: &str = r#"NAME="ALT SP Server"
VERSION="10.2"
ID=altlinux
VERSION_ID=10.2
PRETTY_NAME="ALT SP Server 10.2"
CPE_NAME="cpe:/o:alt:spserver:10.2"
"#;

    const P10: &str = r#"NAME="ALT Server"
VERSION="10.1 (Mendelevium)"
ID=altlinux
VERSION_ID=10.1
PRETTY_NAME="ALT Server 10.1 (Mendelevium)"
ANSI_COLOR="1;33"
CPE_NAME="cpe:/o:alt:server:10.1"
HOME_URL="https://basealt.ru/"
"#;

    const SISYPHUS: &str = r#"NAME="ALT Regular"
ID=altlinux
VERSION_ID=20240630
PRETTY_NAME="ALT Regular"
CPE_NAME="cpe:/o:alt:sisyphus:20240630"
ALT_BRANCH_ID=sisyphus
"#;

    const DEBIAN: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
"#;

    #[test]
    fn os_release_samples() {
        assert_eq!(platform_from_os_release(C10F2).as_deref(), Some("c10f"));
        assert_eq!(platform_from_os_release(P10).as_deref(), Some("p10"));
        assert_eq!(
            platform_from_os_release(SISYPHUS).as_deref(),
            Some("sisyphus")
        );
        // sisyphus known by its CPE alone
        let no_branch = SISYPHUS.replace("ALT_BRANCH_ID=sisyphus\n", "");
        assert_eq!(
            platform_from_os_release(&no_branch).as_deref(),
            Some("sisyphus")
        );
        assert_eq!(platform_from_os_release(DEBIAN), None);
        assert_eq!(platform_from_os_release(""), None);
    }

    #[test]
    fn alt_branch_id_wins() {
        let c10f1 = format!("{P10}ALT_BRANCH_ID=c10f1\n");
        assert_eq!(platform_from_os_release(&c10f1).as_deref(), Some("c10f"));
        let p11 = "ID=altlinux\nVERSION_ID=11.0\nALT_BRANCH_ID='p11'\n";
        assert_eq!(platform_from_os_release(p11).as_deref(), Some("p11"));
        // without CPE: the major of VERSION_ID
        assert_eq!(
            platform_from_os_release("ID=altlinux\nVERSION_ID=\"11.0\"\n").as_deref(),
            Some("p11")
        );
        // a branch that is no path component is not a platform
        assert_eq!(platform_from_os_release("ALT_BRANCH_ID=../etc\n"), None);
        // CPE 2.3 form
        let cpe23 = "ID=altlinux\nCPE_NAME=\"cpe:2.3:o:alt:spserver:10:*:*:*:*:*:*:*\"\n";
        assert_eq!(platform_from_os_release(cpe23).as_deref(), Some("c10f"));
    }

    #[test]
    fn env_overrides_os_release() {
        assert_eq!(
            host_platform_from(Some("k8s-c10f2".into()), || panic!("os-release read")).as_deref(),
            Some("k8s-c10f2")
        );
        assert_eq!(
            host_platform_from(Some(" ".into()), || Some(P10.into())).as_deref(),
            Some("p10")
        );
        assert_eq!(
            host_platform_from(None, || Some(C10F2.into())).as_deref(),
            Some("c10f")
        );
        assert_eq!(host_platform_from(None, || None), None);
    }

    #[test]
    fn arch_names() {
        let n = |s| normalize_arch(s).map(|(a, v)| (a, v.unwrap_or_default()));
        let ok = |a: &str, v: &str| Ok((a.to_string(), v.to_string()));
        assert_eq!(n("amd64"), ok("amd64", ""));
        assert_eq!(n("x86_64"), ok("amd64", ""));
        assert_eq!(n("arm64"), ok("arm64", ""));
        assert_eq!(n("aarch64"), ok("arm64", ""));
        assert_eq!(n("arm64/v8"), ok("arm64", ""));
        assert_eq!(n("arm"), ok("arm", "v7"));
        assert_eq!(n("arm/v7"), ok("arm", "v7"));
        assert_eq!(n("arm/v6"), ok("arm", "v6"));
        assert_eq!(n("armh"), ok("arm", "v7"));
        assert_eq!(n("ppc64le"), ok("ppc64le", ""));
        assert_eq!(n("386"), ok("386", ""));
        assert_eq!(n("i686"), ok("386", ""));
        assert_eq!(n("linux/AMD64"), ok("amd64", ""));
        for bad in ["", "amd64/v9", "arm/v9", "mips", "../amd64", "arm64/v7"] {
            assert!(normalize_arch(bad).is_err(), "{bad:?} accepted");
        }
        for a in KNOWN_ARCHES {
            assert_eq!(normalize_arch(a).unwrap().0, *a);
        }
    }

    #[test]
    fn host_arch_mapping() {
        assert_eq!(oci_arch("x86_64", true), "amd64");
        assert_eq!(oci_arch("aarch64", true), "arm64");
        assert_eq!(oci_arch("arm", true), "arm");
        assert_eq!(oci_arch("powerpc64", true), "ppc64le");
        assert_eq!(oci_arch("powerpc64", false), "ppc64");
        assert_eq!(oci_arch("x86", true), "386");
        assert_eq!(oci_arch("riscv64", true), "riscv64");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(host_arch(), "amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(host_arch(), "arm64");
    }
}
