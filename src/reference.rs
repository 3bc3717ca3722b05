//! Image references: `[host[:port]/]repository[:tag][@sha256:<hex>]`.
//!
//! The grammar is the OCI distribution one, deliberately strict: references come
//! from profiles, the command line and — on the isolated host — from an archive that
//! must not be able to smuggle a path (`../`) into a lookaside directory or a URL.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid image reference {0:?}: empty")]
    Empty(String),
    #[error("invalid image reference {reference:?}: {why}")]
    Invalid {
        reference: String,
        why: &'static str,
    },
}

/// A parsed image reference. `registry` is `None` for registry-relative names such
/// as the bundle names `c10f/kube-apiserver:v1.26.9`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Is `s` a valid repository path (`a/b/c`, components `[a-z0-9]+([._-][a-z0-9]+)*`)?
pub fn is_valid_repository(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.split('/').all(is_valid_component)
}

fn is_valid_component(c: &str) -> bool {
    if c.is_empty() {
        return false;
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    // Separators: '.', '_', "__", or one or more '-'; never two different ones in a row.
    let mut prev_sep: Option<u8> = None;
    let mut run = 0;
    for &x in b {
        if alnum(x) {
            prev_sep = None;
            run = 0;
        } else if matches!(x, b'.' | b'_' | b'-') {
            match prev_sep {
                None => {}
                Some(p) if p == x && (x == b'-' || (x == b'_' && run < 2)) => {}
                _ => return false,
            }
            prev_sep = Some(x);
            run += 1;
        } else {
            return false;
        }
    }
    true
}

/// Is `s` a valid tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`)?
pub fn is_valid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// Is `host` the node-local registry (`registry.local[:port]`)? It is spoken to
/// over plain HTTP: podsec serves it on loopback without TLS.
pub fn is_registry_local(host: &str) -> bool {
    host == "registry.local" || host.starts_with("registry.local:")
}

/// Is `s` a plausible registry host (`name[:port]`, `[v6]:port`)?
pub fn is_valid_registry(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (s, None), // bare IPv6 is not allowed
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return false;
        }
    }
    if let Some(v6) = host.strip_prefix('[') {
        return v6
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Does the first path component name a registry rather than a namespace?
/// The docker rule: it has a '.' or ':' or is `localhost`.
fn looks_like_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first.starts_with('[') || first == "localhost"
}

impl Reference {
    /// Parse a full or registry-relative reference. A first component that looks
    /// like a host becomes `registry`; nothing else is guessed (no docker.io default).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let invalid = |why| ReferenceError::Invalid {
            reference: s.to_string(),
            why,
        };
        if s.is_empty() {
            return Err(ReferenceError::Empty(s.to_string()));
        }
        if s.len() > 512 {
            return Err(invalid("too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<Digest>()
                        .map_err(|_| invalid("digest must be sha256:<64 hex>"))?,
                ),
            ),
            None => (s, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path)) if looks_like_registry(first) => {
                if !is_valid_registry(first) {
                    return Err(invalid("bad registry host"));
                }
                (Some(first.to_string()), path)
            }
            _ => (None, rest),
        };
        // A ':' after the last '/' separates the tag.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t)),
            _ => (path, None),
        };
        if !is_valid_repository(repository) {
            return Err(invalid(
                "repository must be lowercase path components [a-z0-9]+([._-][a-z0-9]+)* joined by '/'",
            ));
        }
        if let Some(t) = tag {
            if !is_valid_tag(t) {
                return Err(invalid("tag must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"));
            }
        }
        Ok(Reference {
            registry,
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The same reference on another registry (or registry-relative with `None`).
    pub fn with_registry(&self, registry: Option<&str>) -> Reference {
        Reference {
            registry: registry.map(str::to_string),
            ..self.clone()
        }
    }

    /// `repo:tag` or `repo@digest` without the registry: how bundles name images.
    pub fn relative(&self) -> String {
        self.with_registry(None).to_string()
    }

    /// What to ask the registry for: the digest when pinned, else the tag, else `latest`.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_relative_references() {
        let r = Reference::parse("registry.altlinux.org/c10f/kube-apiserver:v1.26.9").unwrap();
        assert_eq!(r.registry.as_deref(), Some("registry.altlinux.org"));
        assert_eq!(r.repository, "c10f/kube-apiserver");
        assert_eq!(r.tag.as_deref(), Some("v1.26.9"));
        assert_eq!(r.relative(), "c10f/kube-apiserver:v1.26.9");

        let r = Reference::parse("127.0.0.1:5000/c10f/etcd:3.5.6-0").unwrap();
        assert_eq!(r.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(r.tag.as_deref(), Some("3.5.6-0"));

        let r = Reference::parse("c10f/coredns:v1.9.3").unwrap();
        assert_eq!(r.registry, None);
        assert_eq!(r.to_string(), "c10f/coredns:v1.9.3");

        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("localhost/a/b@{d}")).unwrap();
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.tag, None);
    }

    #[test]
    fn rejects_path_tricks_and_bad_grammar() {
        for bad in [
            "",
            "../etc/passwd:1",
            "c10f/../x:1",
            "/abs/path:1",
            "c10f//x:1",
            "C10F/x:1",
            "c10f/x:-bad",
            "c10f/x:a/b",
            "c10f/x@sha256:short",
            "reg.example.org:99999/x:1",
            "c10f/x\n:1",
            "c10f/.hidden:1",
            "c10f/x-:1",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn component_separators() {
        assert!(is_valid_repository("a__b/c--d/e.f/g_h"));
        assert!(!is_valid_repository("a___b"));
        assert!(!is_valid_repository("a._b"));
    }
}
