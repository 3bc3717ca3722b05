//! Trust on a node other than the registry host: what podsec-create-policy
//! does there, without its unauthenticated step.
//!
//! podsec downloads whatever `http://sigstore.local:81/keys/` serves and copies
//! the served `policy.json` over the node's own. Plain HTTP authenticates
//! nothing, so here everything served is untrusted input:
//! - a served key is installed only when its primary fingerprint is one the
//!   admin gave (`--fingerprint`, printed by `load` and written into the join
//!   commands by `init`); a served file holding several certificates, or secret
//!   material, is refused;
//! - a fingerprint that is not served (the key changed on the server, or the
//!   server is not ours) refuses the whole run *before* any file is written;
//! - the node's own `policy.json` gets the `signedBy` rule for the registry by
//!   [`super::policy::merge`], exactly as `load` writes it; the served policy is
//!   never copied.
//!
//! Every file is planned first ([`plan`]) and written afterwards
//! ([`crate::edits::apply`]); `registries.d` is written by
//! [`super::registries_d::configure`], last, once everything else is in place.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::lookaside::{Fetch, LookasideError};
use super::policy::{self, PolicyError};
use super::{keys, registries_conf, registries_d, Change};
use crate::edits::{self, Edit};
use crate::hosts;
use crate::sign::{self, Cert};

/// At most this many entries of `keys/` are looked at (a real one holds a
/// key or two and the policy copy).
const MAX_LISTED: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum NodeTrustError {
    #[error("{url}: {why}")]
    Fetch { url: String, why: String },
    #[error("{url} is not there (is `u7s-bundle services` running on the registry host?)")]
    NotServed { url: String },
    #[error("{url}: not a JSON directory listing: {why}")]
    Listing { url: String, why: String },
    #[error(
        "no key with fingerprint {fingerprint} is served at {url} (served: {served}); \
         nothing was changed. If the signing key was replaced on purpose, give the new \
         fingerprint `u7s-bundle load` printed"
    )]
    KeyNotServed {
        fingerprint: String,
        url: String,
        served: String,
    },
    #[error("invalid fingerprint {0:?}: expected 40 hex digits (spaces allowed)")]
    BadFingerprint(String),
    #[error("give the fingerprint of the image-signing key with --fingerprint (printed by `u7s-bundle load`)")]
    NoFingerprint,
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    RegistriesConf(#[from] registries_conf::RegistriesConfError),
    #[error(transparent)]
    RegistriesD(#[from] registries_d::RegistriesDError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

type Result<T, E = NodeTrustError> = std::result::Result<T, E>;

/// `ABCD 1234 …` or `abcd1234…` → 40 uppercase hex digits.
pub fn normalize_fingerprint(s: &str) -> Result<String> {
    let f: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let f = f.strip_prefix("0x").unwrap_or(&f).to_ascii_uppercase();
    if f.len() != 40 || !f.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NodeTrustError::BadFingerprint(s.to_string()));
    }
    Ok(f)
}

/// A key file as served: its name (`imagemaker` for `imagemaker.pgp`) and, when
/// it holds exactly one public certificate, that certificate's fingerprint.
#[derive(Clone, Debug)]
pub struct ServedKey {
    pub name: String,
    pub fingerprint: Option<String>,
    pub bytes: Vec<u8>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

fn fetch_err(e: LookasideError) -> NodeTrustError {
    match e {
        LookasideError::Fetch { url, why } => NodeTrustError::Fetch { url, why },
        other => NodeTrustError::Fetch {
            url: String::new(),
            why: other.to_string(),
        },
    }
}

fn get(fetch: &dyn Fetch, url: &str) -> Result<Vec<u8>> {
    fetch
        .fetch(url)
        .map_err(fetch_err)?
        .ok_or_else(|| NodeTrustError::NotServed {
            url: url.to_string(),
        })
}

/// The `*.pgp` files of `<sigstore_url>/keys/`, listed through nginx's JSON
/// autoindex and downloaded. Names that are not plain key names are skipped.
pub fn fetch_keys(fetch: &dyn Fetch, sigstore_url: &str) -> Result<Vec<ServedKey>> {
    let base = format!("{}/keys/", sigstore_url.trim_end_matches('/'));
    let listing = get(fetch, &base)?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&listing).map_err(|e| NodeTrustError::Listing {
            url: base.clone(),
            why: e.to_string(),
        })?;
    let mut served = Vec::new();
    for e in entries.into_iter().take(MAX_LISTED) {
        let Some(name) = e.name.strip_suffix(".pgp") else {
            continue;
        };
        if e.kind != "file" || !keys::is_valid_key_name(name) {
            continue;
        }
        let bytes = get(fetch, &format!("{base}{}", e.name))?;
        served.push(ServedKey {
            name: name.to_string(),
            fingerprint: single_fingerprint(&bytes),
            bytes,
        });
    }
    Ok(served)
}

/// The fingerprint of the one public certificate in `bytes`; `None` for
/// anything else (several certificates would all be trusted by the policy's
/// `keyPath`, secret material must never be published).
fn single_fingerprint(bytes: &[u8]) -> Option<String> {
    keys::check_public_key(bytes).ok()?;
    let certs: Vec<Cert> = sign::load_keyring_bytes(bytes).ok()?;
    match certs.as_slice() {
        [one] => Some(one.fingerprint().to_hex()),
        _ => None,
    }
}

/// The served keys whose fingerprints were given; every given fingerprint
/// must be served, else nothing is trusted.
pub fn select(served: &[ServedKey], wanted: &[String], url: &str) -> Result<Vec<ServedKey>> {
    if wanted.is_empty() {
        return Err(NodeTrustError::NoFingerprint);
    }
    let mut out: Vec<ServedKey> = Vec::new();
    for f in wanted {
        let f = normalize_fingerprint(f)?;
        let Some(k) = served
            .iter()
            .find(|k| k.fingerprint.as_deref() == Some(f.as_str()))
        else {
            let served = served
                .iter()
                .map(|k| {
                    format!(
                        "{}.pgp {}",
                        k.name,
                        k.fingerprint.as_deref().unwrap_or("(not one public key)")
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(NodeTrustError::KeyNotServed {
                fingerprint: f,
                url: url.to_string(),
                served: if served.is_empty() {
                    "nothing".into()
                } else {
                    served
                },
            });
        };
        if !out.iter().any(|o| o.name == k.name) {
            out.push(k.clone());
        }
    }
    Ok(out)
}

/// Where a node keeps its trust files.
#[derive(Clone, Debug)]
pub struct NodePaths {
    pub policy: PathBuf,
    pub registries_d: PathBuf,
    pub registries_conf_d: PathBuf,
    pub keys_dir: PathBuf,
    pub hosts_file: PathBuf,
}

/// The lookaside URL nodes read signatures from: `<sigstore_url>/sigstore/`.
pub fn lookaside_url(sigstore_url: &str) -> String {
    format!("{}/sigstore/", sigstore_url.trim_end_matches('/'))
}

/// Every file but registries.d: the selected keys, the merged policy, the
/// registries.conf drop-in, and `/etc/hosts` when `address` is given.
pub fn plan(
    paths: &NodePaths,
    registry: &str,
    selected: &[ServedKey],
    address: Option<IpAddr>,
) -> Result<Vec<Edit>> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NodeTrustError::Io { path, source }
    };
    let mut edits = Vec::new();
    let mut policy_bytes = edits::read_optional(&paths.policy).map_err(io(&paths.policy))?;
    let before = policy_bytes.clone();
    for k in selected {
        let key_path = paths.keys_dir.join(format!("{}.pgp", k.name));
        edits.push(Edit {
            path: key_path.clone(),
            content: k.bytes.clone(),
            mode: 0o644,
            what: format!("public key {}", k.fingerprint.as_deref().unwrap_or("")),
        });
        let merged = policy::merge(policy_bytes.as_deref(), registry, &key_path)?;
        policy_bytes = Some(merged.bytes);
    }
    if let Some(bytes) = policy_bytes.filter(|b| Some(b) != before.as_ref()) {
        edits.push(Edit {
            path: paths.policy.clone(),
            content: bytes,
            mode: 0o644,
            what: format!("signedBy rule for {registry}"),
        });
    }
    // The same drop-in `load` writes, decided the same way: nothing when the
    // node's registries.conf files already mark the registry insecure.
    if let Some((path, content)) = registries_conf::plan(&paths.registries_conf_d, registry)?.write
    {
        edits.push(Edit {
            path,
            content,
            mode: 0o644,
            what: format!("{registry} over plain HTTP"),
        });
    }
    if let Some(addr) = address {
        let now = edits::read_optional(&paths.hosts_file).map_err(io(&paths.hosts_file))?;
        let now = String::from_utf8_lossy(now.as_deref().unwrap_or_default()).into_owned();
        if let Some(h) = hosts::bind(&now, addr, &hosts::CLUSTER_NAMES) {
            edits.push(Edit {
                path: paths.hosts_file.clone(),
                content: h.into_bytes(),
                mode: 0o644,
                what: "registry.local sigstore.local".into(),
            });
        }
    }
    Ok(edits)
}

/// Does registries.d already send readers of `registry` to `lookaside`?
pub fn lookaside_configured(
    registries_d: &Path,
    registry: &str,
    lookaside: &str,
) -> Result<bool, registries_d::RegistriesDError> {
    let probe = format!("{registry}/u7s-bundle-probe");
    Ok(registries_d::lookaside_for(registries_d, &probe)?.as_deref() == Some(lookaside))
}

/// registries.d's staging URL must be a local directory; a node signs
/// nothing, so this is only there because the writer needs one (podsec's path).
const STAGING_URL: &str = "file:///var/sigstore/sigstore/";

/// What [`setup`] is asked to do.
#[derive(Clone, Debug)]
pub struct Setup<'a> {
    pub sigstore_url: &'a str,
    pub fingerprints: &'a [String],
    pub registry: &'a str,
    /// The registry host's address, for `/etc/hosts`.
    pub address: Option<IpAddr>,
    pub paths: &'a NodePaths,
}

/// What [`setup`] did (or, checking, would do).
#[derive(Debug)]
pub struct Outcome {
    pub trusted: Vec<ServedKey>,
    /// Written changes; with `check`, the changes that *would* be made.
    pub changes: Vec<Change>,
    pub lookaside: String,
}

/// Fetch, select, plan and (unless `check`) write: the whole of `node-trust`.
/// Any refusal comes before the first write. With `check` nothing is written
/// and [`Outcome::changes`] lists what is not in place yet.
pub fn setup(fetch: &dyn Fetch, s: &Setup<'_>, check: bool) -> Result<Outcome> {
    let served = fetch_keys(fetch, s.sigstore_url)?;
    let trusted = select(&served, s.fingerprints, s.sigstore_url)?;
    let plan = plan(s.paths, s.registry, &trusted, s.address)?;
    let lookaside = lookaside_url(s.sigstore_url);
    let root = Path::new("/");
    let mut changes = Vec::new();
    if check {
        for e in &plan {
            let pending = edits::pending(root, e).map_err(|source| NodeTrustError::Io {
                path: e.path.clone(),
                source,
            })?;
            changes.extend(pending);
        }
        if !lookaside_configured(&s.paths.registries_d, s.registry, &lookaside)? {
            changes.push(Change::new(
                super::ChangeKind::Updated,
                Some(s.paths.registries_d.clone()),
                format!("signatures for {} from {lookaside}", s.registry),
            ));
        }
    } else {
        changes = edits::apply(root, &plan)
            .map_err(|(path, source)| NodeTrustError::Io { path, source })?;
        changes.extend(registries_d::configure(
            &s.paths.registries_d,
            s.registry,
            &lookaside,
            STAGING_URL,
        )?);
    }
    Ok(Outcome {
        trusted,
        changes,
        lookaside,
    })
}

/// The key files the policy's `signedBy` rules name for images of `registry`.
fn policy_key_paths(policy: &policy::Policy, registry: &str) -> Vec<PathBuf> {
    let probe = format!("{registry}/u7s-bundle-probe");
    policy
        .requirements_for_docker(&probe)
        .iter()
        .filter_map(|r| match r {
            policy::Requirement::SignedBy(s) => match &s.keys {
                policy::KeySource::Path(p) => Some(vec![PathBuf::from(p)]),
                policy::KeySource::Paths(ps) => Some(ps.iter().map(PathBuf::from).collect()),
                policy::KeySource::Data(_) => None,
            },
            _ => None,
        })
        .flatten()
        .collect()
}

/// The fingerprints of the keys this host's policy trusts for `registry`
/// (what `init` writes into the join commands).
pub fn trusted_fingerprints(policy_file: &Path, registry: &str) -> Vec<String> {
    let Ok(policy) = std::fs::read(policy_file)
        .map_err(|e| e.to_string())
        .and_then(|b| policy::parse(&b).map_err(|e| e.to_string()))
    else {
        return Vec::new();
    };
    let paths: Vec<PathBuf> = policy_key_paths(&policy, registry)
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    sign::load_keyring(&paths)
        .map(|ring| ring.iter().map(|c| c.fingerprint().to_hex()).collect())
        .unwrap_or_default()
}

/// What keeps this node from trusting `registry` (without the network): no
/// `signedBy` rule for it, a rule whose key files are missing or don't hold
/// the wanted fingerprints, or no lookaside for it. Empty when all is well.
pub fn local_problems(paths: &NodePaths, registry: &str, fingerprints: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let policy = match std::fs::read(&paths.policy)
        .map_err(|e| e.to_string())
        .and_then(|b| policy::parse(&b).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => return vec![format!("{}: {e}", paths.policy.display())],
    };
    let key_paths = policy_key_paths(&policy, registry);
    if key_paths.is_empty() {
        problems.push(format!(
            "{} has no signedBy rule for {registry}",
            paths.policy.display()
        ));
    }
    let have: Vec<String> = sign::load_keyring(&key_paths)
        .map(|ring| ring.iter().map(|c| c.fingerprint().to_hex()).collect())
        .unwrap_or_else(|e| {
            problems.push(format!("the policy's keys: {e}"));
            Vec::new()
        });
    for f in fingerprints {
        match normalize_fingerprint(f) {
            Ok(f) if !have.contains(&f) => problems.push(format!(
                "no key of the policy's signedBy rule for {registry} has fingerprint {f}"
            )),
            Ok(_) => {}
            Err(e) => problems.push(e.to_string()),
        }
    }
    let probe = format!("{registry}/u7s-bundle-probe");
    match registries_d::lookaside_for(&paths.registries_d, &probe) {
        Ok(Some(_)) => {}
        Ok(None) => problems.push(format!(
            "{} names no lookaside for {registry}",
            paths.registries_d.display()
        )),
        Err(e) => problems.push(e.to_string()),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalized() {
        let f = "0123 4567 89ab cdef 0123  4567 89AB CDEF 0123 4567";
        assert_eq!(
            normalize_fingerprint(f).unwrap(),
            "0123456789ABCDEF0123456789ABCDEF01234567"
        );
        assert!(normalize_fingerprint("0123").is_err());
        assert!(normalize_fingerprint(&"g".repeat(40)).is_err());
    }

    #[test]
    fn a_fingerprint_not_served_refuses_everything() {
        let served = vec![ServedKey {
            name: "imagemaker".into(),
            fingerprint: Some("A".repeat(40)),
            bytes: vec![],
        }];
        assert_eq!(select(&served, &["a".repeat(40)], "u").unwrap().len(), 1);
        let e = select(&served, &["B".repeat(40)], "u").unwrap_err();
        assert!(matches!(e, NodeTrustError::KeyNotServed { .. }), "{e}");
        assert!(matches!(
            select(&served, &[], "u"),
            Err(NodeTrustError::NoFingerprint)
        ));
    }
}
