//! Trust files on the isolated host: what CRI-O, podman and skopeo (all built on
//! containers/image) read to decide whether an image from `registry.local` may run.
//!
//! - [`policy`]: `/etc/containers/policy.json` — default `reject`, and a `signedBy`
//!   rule for our registry scope naming our public key.
//! - [`registries_d`]: `/etc/containers/registries.d/*.yaml` — where the lookaside
//!   signatures of a registry are read from (and written to).
//! - [`lookaside`]: the lookaside store itself,
//!   `<base>/<repo path>@sha256=<hex>/signature-N`.
//! - [`keys`]: the public keys the policy points at.
//! - [`registries_conf`]: a `registries.conf.d` drop-in marking a plain-HTTP
//!   registry `insecure`, without which podman and CRI-O insist on HTTPS.
//! - [`install`]: all of the above as `load` leaves them, planned then
//!   written by one function that returns what changed.
//!
//! Every file is written through [`crate::fsutil`]: atomically, and with a dated
//! backup of what it replaces, because a broken trust file stops the whole
//! cluster from pulling images. Each writer is idempotent: a re-run with the same
//! inputs changes nothing and reports no [`Change`].
//!
//! The rules these modules follow (strict parsers, scope precedence, lookaside
//! layout) are those of containers/image as shipped in Debian bookworm and ALT;
//! see `shared/notes/simple-signing.md`.

pub mod install;
pub mod keys;
pub mod lookaside;
pub mod node;
pub mod policy;
pub mod registries_conf;
pub mod registries_d;
pub mod writable;

use std::fmt;
use std::path::PathBuf;

/// What kind of [`Change`] was made, for the load summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// A file that did not exist was written.
    Created,
    /// An existing file was replaced (see [`Change::backup`]).
    Updated,
    /// Nothing was written, but the user should know (e.g. a configuration
    /// we don't manage that overrides ours for part of the registry).
    Warning,
}

/// One user-visible change (or warning) made to the trust configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// The file concerned; `None` for changes computed in memory (e.g. by
    /// [`policy::merge`], before the caller decides where to write).
    pub path: Option<PathBuf>,
    /// Where the previous content was saved, if a file was replaced.
    pub backup: Option<PathBuf>,
    /// Human-readable description, one line.
    pub detail: String,
}

impl Change {
    pub(crate) fn new(kind: ChangeKind, path: Option<PathBuf>, detail: impl Into<String>) -> Self {
        Change {
            kind,
            path,
            backup: None,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Warning => "warning",
        };
        match &self.path {
            Some(p) => write!(f, "{kind}: {}: {}", p.display(), self.detail)?,
            None => write!(f, "{kind}: {}", self.detail)?,
        }
        if let Some(b) = &self.backup {
            write!(f, " (previous content saved as {})", b.display())?;
        }
        Ok(())
    }
}

/// Is `c` one path component of a repository name, per the OCI distribution
/// grammar `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`? This is what keeps a
/// repository path from naming `..`, `.`, an empty or absolute component when
/// it becomes part of a lookaside directory.
pub(crate) fn is_repo_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-+", then an alphanumeric.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// `a/b/c` made of [`is_repo_component`] components, at most 255 bytes.
pub(crate) fn is_repo_path(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.split('/').all(is_repo_component)
}

/// `host`, `host:port` (letters, digits, `.`, `-`; a numeric port), or a
/// bracketed IPv6 literal with optional port.
pub(crate) fn is_registry_host(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return false;
        };
        let (v6, after) = (&rest[..end], &rest[end + 1..]);
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|x| x.is_ascii_hexdigit() || x == b':' || x == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => ("x", Some(p)),
                None => return false,
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|x| x.is_ascii_alphanumeric() || x == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = match port {
        None => true,
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|x| x.is_ascii_digit()),
    };
    host_ok && port_ok
}

/// Does the first component of a name look like a registry host (as opposed to
/// a Docker Hub namespace)? Docker's rule: it contains `.` or `:`, or is
/// `localhost`.
fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

/// A docker reference split the way containers/image matches scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DockerName {
    /// `host[:port]`
    pub host: String,
    /// Repository path without the host: `c10f/coredns`.
    pub path: String,
    /// `:tag` or `@algo:hex` suffix, if any (with its separator).
    pub suffix: String,
}

impl DockerName {
    /// Parse `host[:port]/path[:tag][@digest]`. Host-less names are Docker Hub
    /// names (`busybox` → `docker.io/library/busybox`), as in containers/image.
    /// No tag is *not* turned into `:latest`: callers pass `host/repo` to ask
    /// about a repository as a whole.
    pub fn parse(reference: &str) -> Result<DockerName, String> {
        let (name, digest) = match reference.split_once('@') {
            Some((n, d)) => {
                let ok = d.split_once(':').is_some_and(|(a, h)| {
                    !a.is_empty()
                        && a.bytes().all(|x| {
                            x.is_ascii_lowercase() || x.is_ascii_digit() || b"+._-".contains(&x)
                        })
                        && h.len() >= 32
                        && h.bytes()
                            .all(|x| x.is_ascii_hexdigit() && !x.is_ascii_uppercase())
                });
                if !ok {
                    return Err(format!("invalid digest {d:?}"));
                }
                (n, Some(d))
            }
            None => (reference, None),
        };
        let last_slash = name.rfind('/');
        let (name, tag) = match name.rfind(':') {
            Some(i) if last_slash.is_none_or(|s| i > s) => (&name[..i], Some(&name[i + 1..])),
            _ => (name, None),
        };
        if let Some(t) = tag {
            let b = t.as_bytes();
            let ok = !b.is_empty()
                && b.len() <= 128
                && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
                && b.iter()
                    .all(|x| x.is_ascii_alphanumeric() || b"_.-".contains(x));
            if !ok {
                return Err(format!("invalid tag {t:?}"));
            }
        }
        let (host, path) = match name.split_once('/') {
            Some((first, rest)) if looks_like_host(first) => (first.to_string(), rest.to_string()),
            Some(_) => ("docker.io".to_string(), name.to_string()),
            None => ("docker.io".to_string(), format!("library/{name}")),
        };
        if !is_registry_host(&host) {
            return Err(format!("invalid registry host {host:?}"));
        }
        if !is_repo_path(&path) {
            return Err(format!("invalid repository path {path:?}"));
        }
        let mut suffix = String::new();
        if let Some(t) = tag {
            suffix.push(':');
            suffix.push_str(t);
        }
        if let Some(d) = digest {
            suffix.push('@');
            suffix.push_str(d);
        }
        Ok(DockerName { host, path, suffix })
    }

    /// Scopes that apply to this reference, most specific first, as
    /// containers/image tries them for both policy.json and registries.d:
    /// `host/repo:tag` (or `@digest`), `host/repo`, each parent namespace
    /// `host/a`, `host`, then wildcard domains `*.b.example.com`,
    /// `*.example.com`, `*.com` (port ignored).
    pub fn scopes(&self) -> Vec<String> {
        let repo = format!("{}/{}", self.host, self.path);
        let mut out = Vec::new();
        if !self.suffix.is_empty() {
            out.push(format!("{repo}{}", self.suffix));
        }
        out.extend(namespace_scopes(&repo));
        out
    }
}

/// Scopes covering a namespace `host[/a/b]` (no tag), most specific first:
/// `host/a/b`, `host/a`, `host`, then wildcard domains of the host name.
pub(crate) fn namespace_scopes(namespace: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut ns = namespace;
    loop {
        out.push(ns.to_string());
        match ns.rfind('/') {
            Some(i) => ns = &ns[..i],
            None => break,
        }
    }
    // Wildcards match the host name whatever the port (checked against
    // skopeo 1.9.3: `*.example.com` applies to `reg.example.com:5000`).
    if !ns.starts_with('[') {
        let mut rest = ns.split_once(':').map_or(ns, |(h, _)| h);
        while let Some((_, tail)) = rest.split_once('.') {
            out.push(format!("*.{tail}"));
            rest = tail;
        }
    }
    out
}

/// Validate a scope we are asked to *write* for the docker transport:
/// `host[:port]` or `host[:port]/namespace…` (no tag, no digest, no wildcard:
/// our signatures cover a whole registry or namespace).
pub(crate) fn validate_write_scope(scope: &str) -> Result<(), String> {
    let (host, path) = match scope.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (scope, None),
    };
    if !is_registry_host(host) {
        return Err("expected host[:port] or host[:port]/namespace".into());
    }
    if let Some(p) = path {
        if !is_repo_path(p) {
            return Err(format!("invalid namespace {p:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_components() {
        for ok in [
            "a",
            "coredns",
            "kube-apiserver",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "c10f",
            "0",
        ] {
            assert!(is_repo_component(ok), "{ok}");
        }
        for bad in [
            "", ".", "..", "A", "-a", "a-", "a..b", "a___b", "a._b", "a/b", "a b", "é",
        ] {
            assert!(!is_repo_component(bad), "{bad}");
        }
        assert!(is_repo_path("c10f/coredns"));
        assert!(!is_repo_path("/c10f/coredns"));
        assert!(!is_repo_path("c10f/../x"));
        assert!(!is_repo_path("c10f//x"));
    }

    #[test]
    fn hosts() {
        for ok in [
            "registry.local",
            "127.0.0.1:5000",
            "localhost",
            "[::1]",
            "[::1]:5000",
            "Reg-1.example",
        ] {
            assert!(is_registry_host(ok), "{ok}");
        }
        for bad in [
            "", ":5000", "a:", "a:b", "a..b", "-a", "a b", "[::1", "[]", "a:123456",
        ] {
            assert!(!is_registry_host(bad), "{bad}");
        }
    }

    #[test]
    fn scopes_most_specific_first() {
        let n = DockerName::parse("registry.local/c10f/coredns:v1.9.3").unwrap();
        assert_eq!(
            n.scopes(),
            vec![
                "registry.local/c10f/coredns:v1.9.3",
                "registry.local/c10f/coredns",
                "registry.local/c10f",
                "registry.local",
                "*.local",
            ]
        );
        let n = DockerName::parse("127.0.0.1:5000/x").unwrap();
        assert_eq!(
            n.scopes(),
            vec![
                "127.0.0.1:5000/x",
                "127.0.0.1:5000",
                "*.0.0.1",
                "*.0.1",
                "*.1"
            ]
        );
        let n = DockerName::parse("reg.example.com:5000/x").unwrap();
        assert_eq!(n.scopes()[2..], ["*.example.com", "*.com"]);
        let d = format!("sha256:{}", "a".repeat(64));
        let n = DockerName::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(n.host, "docker.io");
        assert_eq!(n.scopes()[0], format!("docker.io/library/busybox@{d}"));
        assert!(DockerName::parse("registry.local/../x").is_err());
        assert!(DockerName::parse("registry.local/x:").is_err());
        assert!(DockerName::parse("registry.local/x@sha256:zz").is_err());
    }

    #[test]
    fn write_scopes() {
        assert!(validate_write_scope("registry.local").is_ok());
        assert!(validate_write_scope("127.0.0.1:5000").is_ok());
        assert!(validate_write_scope("registry.local/c10f").is_ok());
        assert!(validate_write_scope("").is_err());
        assert!(validate_write_scope("*.local").is_err());
        assert!(validate_write_scope("registry.local/C10F").is_err());
        assert!(validate_write_scope("registry.local/").is_err());
    }
}
