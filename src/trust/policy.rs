//! `containers-policy.json`: the model, a strict parser, the merge that adds our
//! signer, and scope evaluation.
//!
//! containers/image parses this file strictly: an unknown or duplicate key, a
//! missing `keyType`, two of `keyPath`/`keyPaths`/`keyData`, an empty
//! requirement list — and *every* image is refused, cluster-wide. So:
//! - we parse at least as strictly as it does for everything we model, and refuse
//!   to touch a file we don't fully understand (the caller reports it; the
//!   file stays as it is);
//! - requirement types we don't model (e.g. `sigstoreSigned`, or types newer
//!   than us) are kept verbatim as JSON values and written back unchanged;
//! - transports and scopes we don't manage are written back in their order.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::{Change, ChangeKind, DockerName};
use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not JSON, or JSON the containers/image parser rejects (duplicate key…).
    #[error("policy is not valid JSON: {0}")]
    Syntax(String),
    /// Valid JSON that is not a policy containers/image accepts, or one with
    /// fields we don't know and therefore won't rewrite.
    #[error("invalid policy at {at}: {why}")]
    Invalid { at: String, why: String },
    #[error("invalid policy scope {scope:?}: {why}")]
    InvalidScope { scope: String, why: String },
    #[error("invalid key path {path:?}: {why}")]
    InvalidKeyPath { path: PathBuf, why: &'static str },
    /// The existing rule for the scope can't take another key without
    /// changing its meaning; the file is left alone.
    #[error("cannot add our key to policy scope {scope:?}: {why}")]
    Conflict { scope: String, why: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

type Result<T, E = PolicyError> = std::result::Result<T, E>;

fn invalid(at: &str, why: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        at: if at.is_empty() {
            "top level".into()
        } else {
            at.into()
        },
        why: why.into(),
    }
}

/// A JSON object whose key order is kept, so that rewriting a policy only
/// changes what we changed (serde_json's own map sorts keys).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct OrderedMap<V> {
    entries: Vec<(String, V)>,
}

impl<V> OrderedMap<V> {
    pub fn new() -> Self {
        OrderedMap {
            entries: Vec::new(),
        }
    }
    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
    /// Get the entry, appending `make()` at the end if absent.
    pub fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.entries.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                self.entries.push((key.to_string(), make()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<V: Serialize> Serialize for OrderedMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A whole policy. `transports` maps a transport name (`docker`, `atomic`,
/// `oci`…) to its scopes; scope `""` is the transport's default.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub default: Vec<Requirement>,
    /// `None` when the file had no `transports` key (kept absent on rewrite).
    pub transports: Option<OrderedMap<OrderedMap<Vec<Requirement>>>>,
}

/// One policy requirement. All requirements of the selected scope must be
/// satisfied (AND); alternatives between keys are expressed *inside* one
/// `signedBy` with `keyPaths`.
#[derive(Clone, Debug, PartialEq)]
pub enum Requirement {
    InsecureAcceptAnything,
    Reject,
    SignedBy(SignedBy),
    /// A requirement type we don't model (`sigstoreSigned`, future types),
    /// kept verbatim so it round-trips.
    Other(Value),
}

/// `keyType` values containers/image recognises.
pub const KEY_TYPES: [&str; 4] = [
    "GPGKeys",
    "signedByGPGKeys",
    "X509Certificates",
    "signedByX509CAs",
];

#[derive(Clone, Debug, PartialEq)]
pub struct SignedBy {
    /// `GPGKeys` for OpenPGP simple signing (the only type that is implemented
    /// by containers/image).
    pub key_type: String,
    pub keys: KeySource,
    /// Absent means `matchRepoDigestOrExact`.
    pub signed_identity: Option<SignedIdentity>,
}

/// Exactly one of `keyPath`, `keyPaths`, `keyData`.
#[derive(Clone, Debug, PartialEq)]
pub enum KeySource {
    /// `keyPath`: one keyring file.
    Path(String),
    /// `keyPaths`: several keyring files; a signature by *any* key is accepted.
    Paths(Vec<String>),
    /// `keyData`: base64 of a keyring.
    Data(String),
}

impl KeySource {
    /// Does this source name the keyring file `path`?
    pub fn has_path(&self, path: &str) -> bool {
        match self {
            KeySource::Path(p) => p == path,
            KeySource::Paths(ps) => ps.iter().any(|p| p == path),
            KeySource::Data(_) => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum SignedIdentity {
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    ExactReference {
        docker_reference: String,
    },
    ExactRepository {
        docker_repository: String,
    },
    RemapIdentity {
        prefix: String,
        signed_prefix: String,
    },
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::InsecureAcceptAnything => f.write_str("insecureAcceptAnything"),
            Requirement::Reject => f.write_str("reject"),
            Requirement::SignedBy(s) => match &s.keys {
                KeySource::Path(p) => write!(f, "signedBy {} {p}", s.key_type),
                KeySource::Paths(ps) => {
                    write!(f, "signedBy {} any of [{}]", s.key_type, ps.join(", "))
                }
                KeySource::Data(_) => write!(f, "signedBy {} (inline keyData)", s.key_type),
            },
            Requirement::Other(v) => {
                let t = v.get("type").and_then(Value::as_str).unwrap_or("?");
                write!(f, "{t}")
            }
        }
    }
}

fn fmt_reqs(reqs: &[Requirement]) -> String {
    let v: Vec<String> = reqs.iter().map(ToString::to_string).collect();
    format!("[{}]", v.join(", "))
}

// ---------------------------------------------------------------- parsing

/// Walks any JSON document and fails on a duplicate key in any object, which
/// containers/image rejects but serde_json silently resolves (last wins).
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(self)
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| invalid(at, format!("expected a JSON object, got {}", kind(v))))
}

fn string(v: &Value, at: &str) -> Result<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| invalid(at, format!("expected a string, got {}", kind(v))))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn only_keys(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(
            at,
            format!(
                "unknown field {k:?} (expected one of {})",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn parse_requirements(v: &Value, at: &str) -> Result<Vec<Requirement>> {
    let list = v.as_array().ok_or_else(|| {
        invalid(
            at,
            format!("expected a list of requirements, got {}", kind(v)),
        )
    })?;
    if list.is_empty() {
        return Err(invalid(at, "list of requirements must not be empty"));
    }
    list.iter()
        .enumerate()
        .map(|(i, r)| parse_requirement(r, &format!("{at}[{i}]")))
        .collect()
}

fn parse_requirement(v: &Value, at: &str) -> Result<Requirement> {
    let obj = object(v, at)?;
    let ty = match obj.get("type") {
        Some(t) => string(t, &format!("{at}.type"))?,
        None => return Err(invalid(at, "requirement has no \"type\"")),
    };
    match ty.as_str() {
        "insecureAcceptAnything" => {
            only_keys(obj, &["type"], at)?;
            Ok(Requirement::InsecureAcceptAnything)
        }
        "reject" => {
            only_keys(obj, &["type"], at)?;
            Ok(Requirement::Reject)
        }
        "signedBy" => parse_signed_by(obj, at).map(Requirement::SignedBy),
        _ => Ok(Requirement::Other(v.clone())),
    }
}

fn parse_signed_by(obj: &Map<String, Value>, at: &str) -> Result<SignedBy> {
    only_keys(
        obj,
        &[
            "type",
            "keyType",
            "keyPath",
            "keyPaths",
            "keyData",
            "signedIdentity",
        ],
        at,
    )?;
    let key_type = match obj.get("keyType") {
        Some(t) => string(t, &format!("{at}.keyType"))?,
        None => return Err(invalid(at, "signedBy requires \"keyType\"")),
    };
    if !KEY_TYPES.contains(&key_type.as_str()) {
        return Err(invalid(
            &format!("{at}.keyType"),
            format!("unrecognized keyType {key_type:?}"),
        ));
    }
    let present: Vec<&str> = ["keyPath", "keyPaths", "keyData"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    if present.len() != 1 {
        return Err(invalid(
            at,
            format!(
                "exactly one of keyPath, keyPaths, keyData must be given (found {})",
                present.len()
            ),
        ));
    }
    let keys = match present[0] {
        "keyPath" => KeySource::Path(string(&obj["keyPath"], &format!("{at}.keyPath"))?),
        "keyData" => KeySource::Data(string(&obj["keyData"], &format!("{at}.keyData"))?),
        _ => {
            let a = format!("{at}.keyPaths");
            let list = obj["keyPaths"]
                .as_array()
                .ok_or_else(|| invalid(&a, "expected a list of strings"))?;
            KeySource::Paths(
                list.iter()
                    .enumerate()
                    .map(|(i, p)| string(p, &format!("{a}[{i}]")))
                    .collect::<Result<_>>()?,
            )
        }
    };
    let signed_identity = match obj.get("signedIdentity") {
        None => None,
        Some(v) => Some(parse_identity(v, &format!("{at}.signedIdentity"))?),
    };
    Ok(SignedBy {
        key_type,
        keys,
        signed_identity,
    })
}

fn parse_identity(v: &Value, at: &str) -> Result<SignedIdentity> {
    let obj = object(v, at)?;
    let ty = match obj.get("type") {
        Some(t) => string(t, &format!("{at}.type"))?,
        None => return Err(invalid(at, "signedIdentity has no \"type\"")),
    };
    let field = |name: &str| -> Result<String> {
        match obj.get(name) {
            Some(x) => string(x, &format!("{at}.{name}")),
            None => Err(invalid(at, format!("{ty} requires {name:?}"))),
        }
    };
    Ok(match ty.as_str() {
        "matchExact" | "matchRepoDigestOrExact" | "matchRepository" => {
            only_keys(obj, &["type"], at)?;
            match ty.as_str() {
                "matchExact" => SignedIdentity::MatchExact,
                "matchRepoDigestOrExact" => SignedIdentity::MatchRepoDigestOrExact,
                _ => SignedIdentity::MatchRepository,
            }
        }
        "exactReference" => {
            only_keys(obj, &["type", "dockerReference"], at)?;
            SignedIdentity::ExactReference {
                docker_reference: field("dockerReference")?,
            }
        }
        "exactRepository" => {
            only_keys(obj, &["type", "dockerRepository"], at)?;
            SignedIdentity::ExactRepository {
                docker_repository: field("dockerRepository")?,
            }
        }
        "remapIdentity" => {
            only_keys(obj, &["type", "prefix", "signedPrefix"], at)?;
            SignedIdentity::RemapIdentity {
                prefix: field("prefix")?,
                signed_prefix: field("signedPrefix")?,
            }
        }
        other => {
            return Err(invalid(
                at,
                format!("unknown signedIdentity type {other:?}"),
            ))
        }
    })
}

/// Parse a policy the way containers/image does (strict: unknown or
/// duplicate keys, empty requirement lists and malformed `signedBy` rules are
/// errors), keeping unmodelled requirement types as raw JSON.
pub fn parse(bytes: &[u8]) -> Result<Policy> {
    serde_json::from_slice::<NoDuplicateKeys>(bytes)
        .map_err(|e| PolicyError::Syntax(e.to_string()))?;
    let v: Value = serde_json::from_slice(bytes).map_err(|e| PolicyError::Syntax(e.to_string()))?;
    let top = object(&v, "")?;
    only_keys(top, &["default", "transports"], "")?;
    let default = match top.get("default") {
        Some(d) => parse_requirements(d, "default")?,
        None => return Err(invalid("", "\"default\" policy is missing")),
    };
    let transports = match top.get("transports") {
        None => None,
        Some(t) => {
            // Validate everything first (errors name the offending path)…
            let t = object(t, "transports")?;
            for (name, scopes) in t {
                let at = format!("transports.{name}");
                for (scope, reqs) in object(scopes, &at)? {
                    parse_requirements(reqs, &format!("{at}[{scope:?}]"))?;
                }
            }
            // …then build in the file's own key order (serde_json's map is
            // sorted), so a rewrite only moves what we changed.
            let order = key_order(bytes)?;
            let mut out = OrderedMap::new();
            for (name, scopes_v) in ordered(t, order.transports.iter()) {
                let at = format!("transports.{name}");
                let scope_order = order.scopes.iter().find(|(t, _)| t == name).map(|(_, s)| s);
                let mut scopes = OrderedMap::new();
                for (scope, reqs) in
                    ordered(object(scopes_v, &at)?, scope_order.into_iter().flatten())
                {
                    let reqs = parse_requirements(reqs, &format!("{at}[{scope:?}]"))?;
                    scopes.entries.push((scope.to_string(), reqs));
                }
                out.entries.push((name.to_string(), scopes));
            }
            Some(out)
        }
    };
    Ok(Policy {
        default,
        transports,
    })
}

/// Iterate `obj` in the order given by `order` (keys from the raw text),
/// falling back to the map's order for anything not listed.
fn ordered<'a>(
    obj: &'a Map<String, Value>,
    order: impl Iterator<Item = &'a String>,
) -> Vec<(&'a str, &'a Value)> {
    let mut out: Vec<(&str, &Value)> = Vec::new();
    for k in order {
        if let Some((k, v)) = obj.get_key_value(k.as_str()) {
            if !out.iter().any(|(x, _)| *x == k) {
                out.push((k.as_str(), v));
            }
        }
    }
    for (k, v) in obj {
        if !out.iter().any(|(x, _)| *x == k) {
            out.push((k.as_str(), v));
        }
    }
    out
}

/// Key order of `transports` and of each transport's scopes, as written.
#[derive(Default)]
struct KeyOrder {
    transports: Vec<String>,
    scopes: Vec<(String, Vec<String>)>,
}

fn key_order(bytes: &[u8]) -> Result<KeyOrder> {
    /// Collects the keys of an object, in order, ignoring values.
    struct Keys(Vec<String>);
    impl<'de> Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Keys, A::Error> {
                    let mut k = Vec::new();
                    while let Some(key) = m.next_key::<String>()? {
                        m.next_value::<de::IgnoredAny>()?;
                        k.push(key);
                    }
                    Ok(Keys(k))
                }
            }
            d.deserialize_map(V)
        }
    }
    /// `transports` as transport name → keys of its scope object.
    struct Transports(Vec<(String, Vec<String>)>);
    impl<'de> Deserialize<'de> for Transports {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Transports;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Transports, A::Error> {
                    let mut out = Vec::new();
                    while let Some(key) = m.next_key::<String>()? {
                        let Keys(k) = m.next_value()?;
                        out.push((key, k));
                    }
                    Ok(Transports(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    #[derive(serde::Deserialize)]
    struct Top {
        transports: Option<Transports>,
    }
    // Only called after `parse` validated the shape.
    let top: Top = serde_json::from_slice(bytes).map_err(|e| PolicyError::Syntax(e.to_string()))?;
    let t = top.transports.map(|t| t.0).unwrap_or_default();
    Ok(KeyOrder {
        transports: t.iter().map(|(n, _)| n.clone()).collect(),
        scopes: t,
    })
}

// ---------------------------------------------------------------- writing

impl Serialize for Requirement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Requirement::InsecureAcceptAnything => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("type", "insecureAcceptAnything")?;
                m.end()
            }
            Requirement::Reject => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("type", "reject")?;
                m.end()
            }
            Requirement::SignedBy(sb) => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("type", "signedBy")?;
                m.serialize_entry("keyType", &sb.key_type)?;
                match &sb.keys {
                    KeySource::Path(p) => m.serialize_entry("keyPath", p)?,
                    KeySource::Paths(p) => m.serialize_entry("keyPaths", p)?,
                    KeySource::Data(d) => m.serialize_entry("keyData", d)?,
                }
                if let Some(id) = &sb.signed_identity {
                    m.serialize_entry("signedIdentity", id)?;
                }
                m.end()
            }
            Requirement::Other(v) => v.serialize(s),
        }
    }
}

impl Serialize for SignedIdentity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            SignedIdentity::MatchExact => m.serialize_entry("type", "matchExact")?,
            SignedIdentity::MatchRepoDigestOrExact => {
                m.serialize_entry("type", "matchRepoDigestOrExact")?
            }
            SignedIdentity::MatchRepository => m.serialize_entry("type", "matchRepository")?,
            SignedIdentity::ExactReference { docker_reference } => {
                m.serialize_entry("type", "exactReference")?;
                m.serialize_entry("dockerReference", docker_reference)?;
            }
            SignedIdentity::ExactRepository { docker_repository } => {
                m.serialize_entry("type", "exactRepository")?;
                m.serialize_entry("dockerRepository", docker_repository)?;
            }
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                m.serialize_entry("type", "remapIdentity")?;
                m.serialize_entry("prefix", prefix)?;
                m.serialize_entry("signedPrefix", signed_prefix)?;
            }
        }
        m.end()
    }
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("default", &self.default)?;
        if let Some(t) = &self.transports {
            m.serialize_entry("transports", t)?;
        }
        m.end()
    }
}

impl Policy {
    /// Pretty JSON (two-space indent) with a final newline; key order is
    /// deterministic (ours fixed, the file's own order elsewhere), so the same
    /// policy always gives the same bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a policy always serializes");
        out.push(b'\n');
        out
    }

    /// The requirements containers/image applies to an image pulled through
    /// the `docker` transport (`docker://host[:port]/repo:tag`).
    ///
    /// The most specific scope present wins: `host/repo:tag` (or
    /// `host/repo@digest`), `host/repo`, each parent namespace `host/ns…`,
    /// `host`, wildcard domains `*.example.com` (port ignored), then
    /// the transport's `""` scope, then the global `default`. Only one list
    /// applies — scopes are not combined.
    ///
    /// Host-less names are Docker Hub names (`busybox` →
    /// `docker.io/library/busybox`). An unparsable reference matches no
    /// named scope (only `""` and `default`).
    pub fn requirements_for_docker(&self, reference: &str) -> &[Requirement] {
        let scopes = self.transports.as_ref().and_then(|t| t.get("docker"));
        if let Some(scopes) = scopes {
            if let Ok(name) = DockerName::parse(reference) {
                for candidate in name.scopes() {
                    if let Some(reqs) = scopes.get(&candidate) {
                        return reqs;
                    }
                }
            }
            if let Some(reqs) = scopes.get("") {
                return reqs;
            }
        }
        &self.default
    }
}

// ---------------------------------------------------------------- merging

/// The result of [`merge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    /// The policy to write. When nothing changed this is the existing input,
    /// byte for byte (its formatting is kept).
    pub bytes: Vec<u8>,
    /// What changed, for the summary; empty when nothing did. `path` is `None`.
    pub changes: Vec<Change>,
}

impl Merged {
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// Add "images from `scope` must be signed by the key in `key_path`" to a
/// policy (see [`merge`]); returns the bytes to write and whether they differ
/// from `existing`.
pub fn merge_signed_by(
    existing: Option<&[u8]>,
    scope: &str,
    key_path: &Path,
) -> Result<(Vec<u8>, bool)> {
    let m = merge(existing, scope, key_path)?;
    let changed = m.changed();
    Ok((m.bytes, changed))
}

/// Merge our signer into an existing policy (or a new one).
///
/// Decisions, and why:
/// - **`default` becomes `[{"type":"reject"}]`.** The isolated-host regime
///   (and podsec) is "nothing runs unless signed"; a permissive default would
///   make the signature rule for our registry pointless for every other name
///   an attacker could use. A different default is replaced and the change is
///   reported, so the operator sees it.
/// - **Our scope (`transports.docker[scope]`) gets one `signedBy` GPGKeys rule
///   naming `key_path`.** All requirements of a scope must hold, so a second
///   `signedBy` would demand *two* signatures; instead an existing GPGKeys rule
///   with another key is widened to `keyPaths: [old…, ours]` (any of the keys),
///   keeping its `signedIdentity`. Already listed → nothing changes.
/// - `insecureAcceptAnything` or `reject` in our scope are removed (reported):
///   the first would be a misleading no-op next to a signature rule, the second
///   would refuse the images we are loading.
/// - A rule we can't widen without changing its meaning — inline `keyData`, or
///   several GPGKeys rules (a deliberate multi-signature setup) — is an error
///   ([`PolicyError::Conflict`]); the file must be edited by a human.
/// - Everything else — other transports, other scopes, `sigstoreSigned` and
///   other requirement types in our scope — is kept as it is.
///
/// `existing`: the current file, `None` if absent; an empty (whitespace-only)
/// file counts as absent. A file that doesn't parse ([`parse`]) is an error
/// and is never clobbered. `key_path` must be absolute (it is resolved by
/// every tool that reads the policy, from its own working directory).
pub fn merge(existing: Option<&[u8]>, scope: &str, key_path: &Path) -> Result<Merged> {
    super::validate_write_scope(scope).map_err(|why| PolicyError::InvalidScope {
        scope: scope.to_string(),
        why,
    })?;
    if !key_path.is_absolute() {
        return Err(PolicyError::InvalidKeyPath {
            path: key_path.to_path_buf(),
            why: "must be absolute",
        });
    }
    let key = key_path
        .to_str()
        .ok_or_else(|| PolicyError::InvalidKeyPath {
            path: key_path.to_path_buf(),
            why: "not valid UTF-8",
        })?;

    let existing = existing.filter(|b| !b.iter().all(u8::is_ascii_whitespace));
    let mut changes = Vec::new();
    let note = |changes: &mut Vec<Change>, kind, detail: String| {
        changes.push(Change::new(kind, None, detail))
    };
    let mut policy = match existing {
        Some(b) => parse(b)?,
        None => {
            note(&mut changes, ChangeKind::Created, "new policy".to_string());
            Policy {
                default: vec![Requirement::Reject],
                transports: None,
            }
        }
    };

    if policy.default != [Requirement::Reject] {
        note(
            &mut changes,
            ChangeKind::Updated,
            format!(
                "default policy changed from {} to [reject]",
                fmt_reqs(&policy.default)
            ),
        );
        policy.default = vec![Requirement::Reject];
    }

    let ours = || {
        Requirement::SignedBy(SignedBy {
            key_type: "GPGKeys".to_string(),
            keys: KeySource::Path(key.to_string()),
            signed_identity: None,
        })
    };
    let docker = policy
        .transports
        .get_or_insert_with(OrderedMap::new)
        .get_or_insert_with("docker", OrderedMap::new);
    match docker.get_mut(scope) {
        None => {
            docker.entries.push((scope.to_string(), vec![ours()]));
            note(
                &mut changes,
                ChangeKind::Updated,
                format!("docker scope {scope:?}: require a signature by {key}"),
            );
        }
        Some(reqs) => {
            let before = reqs.len();
            let dropped: Vec<String> = reqs
                .iter()
                .filter(|r| matches!(r, Requirement::InsecureAcceptAnything | Requirement::Reject))
                .map(ToString::to_string)
                .collect();
            reqs.retain(|r| {
                !matches!(r, Requirement::InsecureAcceptAnything | Requirement::Reject)
            });
            if reqs.len() != before {
                note(
                    &mut changes,
                    ChangeKind::Updated,
                    format!("docker scope {scope:?}: removed {}", dropped.join(", ")),
                );
            }
            let gpg: Vec<usize> = reqs
                .iter()
                .enumerate()
                .filter(|(_, r)| matches!(r, Requirement::SignedBy(s) if s.key_type == "GPGKeys"))
                .map(|(i, _)| i)
                .collect();
            let has_key =
                |i: &usize| matches!(&reqs[*i], Requirement::SignedBy(s) if s.keys.has_path(key));
            match gpg.len() {
                0 => {
                    reqs.push(ours());
                    note(
                        &mut changes,
                        ChangeKind::Updated,
                        format!("docker scope {scope:?}: require a signature by {key}"),
                    );
                }
                1 if has_key(&gpg[0]) => {}
                1 => {
                    let Requirement::SignedBy(sb) = &mut reqs[gpg[0]] else {
                        unreachable!("filtered above")
                    };
                    match &mut sb.keys {
                        KeySource::Path(old) => sb.keys = KeySource::Paths(vec![old.clone(), key.to_string()]),
                        KeySource::Paths(list) => list.push(key.to_string()),
                        KeySource::Data(_) => {
                            return Err(PolicyError::Conflict {
                                scope: scope.to_string(),
                                why: "its signedBy rule has inline keyData, which can't be combined \
                                      with a key file; adding a second rule would require both signatures"
                                    .into(),
                            })
                        }
                    }
                    note(
                        &mut changes,
                        ChangeKind::Updated,
                        format!("docker scope {scope:?}: also accept signatures by {key}"),
                    );
                }
                // Several rules, one of which names our key: a multi-signature
                // setup someone made on purpose; we don't second-guess it.
                _ if gpg.iter().any(has_key) => {}
                n => {
                    return Err(PolicyError::Conflict {
                        scope: scope.to_string(),
                        why: format!(
                            "it has {n} signedBy GPGKeys rules (images need all {n} signatures); \
                             refusing to guess which one should accept our key"
                        ),
                    })
                }
            }
        }
    }

    let bytes = match existing {
        Some(b) if changes.is_empty() => b.to_vec(),
        _ => policy.to_json(),
    };
    Ok(Merged { bytes, changes })
}

/// Result of [`update_file`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileUpdate {
    /// Empty when the file already said what we want (nothing was written).
    /// Each change has `path` set; the first one carries the backup path.
    pub changes: Vec<Change>,
    pub backup: Option<PathBuf>,
}

/// Read `path` (absent is fine), [`merge`] our rule, and write it back
/// atomically (mode 0644, parent directories 0755) with a dated backup of the
/// previous content. An invalid existing file is left untouched (error). A
/// symlinked policy (podsec's layout) is replaced by a regular file, see
/// [`fsutil::write_atomic_with_backup`].
pub fn update_file(path: &Path, scope: &str, key_path: &Path) -> Result<FileUpdate> {
    let io_err = |source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let existing = match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(e)),
    };
    let merged = merge(existing.as_deref(), scope, key_path)?;
    if !merged.changed() {
        return Ok(FileUpdate {
            changes: Vec::new(),
            backup: None,
        });
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::create_dir_all_mode(parent, 0o755).map_err(io_err)?;
    }
    let backup = fsutil::write_atomic_with_backup(path, &merged.bytes, 0o644).map_err(io_err)?;
    let mut changes = merged.changes;
    for (i, c) in changes.iter_mut().enumerate() {
        c.path = Some(path.to_path_buf());
        if i == 0 {
            c.backup = backup.clone();
        }
    }
    Ok(FileUpdate { changes, backup })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const KEY: &str = "/var/sigstore/keys/imagemaker.pgp";

    fn merged(existing: Option<&str>, scope: &str, key: &str) -> Merged {
        merge(existing.map(str::as_bytes), scope, Path::new(key)).unwrap()
    }

    fn json(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn merge_into_absent_policy() {
        let m = merged(None, "registry.local", KEY);
        assert!(m.changed());
        assert_eq!(
            json(&m.bytes),
            serde_json::json!({
                "default": [{"type": "reject"}],
                "transports": {"docker": {"registry.local": [
                    {"type": "signedBy", "keyType": "GPGKeys", "keyPath": KEY}
                ]}}
            })
        );
        let text = String::from_utf8(m.bytes.clone()).unwrap();
        assert!(text.ends_with("}\n"));
        // "type" first, as humans expect.
        assert!(text.find("\"type\": \"signedBy\"").unwrap() < text.find("\"keyType\"").unwrap());
        // Re-run: byte-identical, unchanged.
        let again = merge(Some(&m.bytes), "registry.local", Path::new(KEY)).unwrap();
        assert!(!again.changed());
        assert_eq!(again.bytes, m.bytes);
        // Empty file counts as absent.
        assert_eq!(merged(Some(" \n"), "registry.local", KEY).bytes, m.bytes);
    }

    const PODSEC: &str = r#"{
    "default": [{"type": "reject"}],
    "transports": {
        "docker": {
            "registry.altlinux.org": [{"type": "insecureAcceptAnything"}],
            "registry.local/k8s-c10f2": [
                {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/var/sigstore/keys/old.pgp",
                 "signedIdentity": {"type": "remapIdentity", "prefix": "a.example", "signedPrefix": "b.example"}}
            ],
            "quay.io": [{"type": "sigstoreSigned", "keyPath": "/k.pub", "signedIdentity": {"type": "matchRepository"}}]
        },
        "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}
    }
}"#;

    #[test]
    fn merge_into_podsec_policy_keeps_other_scopes() {
        let m = merged(Some(PODSEC), "registry.local", KEY);
        let v = json(&m.bytes);
        let before = json(PODSEC.as_bytes());
        let docker = &v["transports"]["docker"];
        for s in [
            "registry.altlinux.org",
            "registry.local/k8s-c10f2",
            "quay.io",
        ] {
            assert_eq!(docker[s], before["transports"]["docker"][s], "{s}");
        }
        assert_eq!(
            v["transports"]["docker-daemon"],
            before["transports"]["docker-daemon"]
        );
        assert_eq!(docker["registry.local"][0]["keyPath"], KEY);
        // Order of the file is kept; the new scope is appended.
        let text = String::from_utf8(m.bytes.clone()).unwrap();
        let pos = |s: &str| text.find(s).unwrap();
        assert!(pos("registry.altlinux.org") < pos("k8s-c10f2"));
        assert!(pos("k8s-c10f2") < pos("quay.io"));
        assert!(pos("quay.io") < pos("\"registry.local\""));
        assert!(pos("\"registry.local\"") < pos("docker-daemon"));
        assert_eq!(m.changes.len(), 1, "{:?}", m.changes);
        // Round trip of the unmodelled requirement.
        let p = parse(&m.bytes).unwrap();
        assert!(matches!(
            &p.transports
                .as_ref()
                .unwrap()
                .get("docker")
                .unwrap()
                .get("quay.io")
                .unwrap()[0],
            Requirement::Other(_)
        ));
    }

    #[test]
    fn merge_changes_permissive_default_and_reports_it() {
        let m = merged(
            Some(r#"{"default":[{"type":"insecureAcceptAnything"}]}"#),
            "registry.local",
            KEY,
        );
        let v = json(&m.bytes);
        assert_eq!(v["default"], serde_json::json!([{"type": "reject"}]));
        assert!(
            m.changes
                .iter()
                .any(|c| c.detail.contains("insecureAcceptAnything")),
            "{:?}",
            m.changes
        );
    }

    #[test]
    fn second_signer_yields_key_paths() {
        let first = merged(None, "registry.local", KEY);
        let second = merge(
            Some(&first.bytes),
            "registry.local",
            Path::new("/keys/second.pgp"),
        )
        .unwrap();
        assert!(second.changed());
        let v = json(&second.bytes);
        let reqs = v["transports"]["docker"]["registry.local"]
            .as_array()
            .unwrap();
        assert_eq!(reqs.len(), 1, "one rule, any of the keys: {reqs:?}");
        assert_eq!(
            reqs[0]["keyPaths"],
            serde_json::json!([KEY, "/keys/second.pgp"])
        );
        assert!(reqs[0].get("keyPath").is_none());
        // Both keys idempotent now.
        for k in [KEY, "/keys/second.pgp"] {
            let again = merge(Some(&second.bytes), "registry.local", Path::new(k)).unwrap();
            assert!(!again.changed());
            assert_eq!(again.bytes, second.bytes);
        }
        // A third one appends.
        let third = merge(
            Some(&second.bytes),
            "registry.local",
            Path::new("/keys/3.pgp"),
        )
        .unwrap();
        let v = json(&third.bytes);
        assert_eq!(
            v["transports"]["docker"]["registry.local"][0]["keyPaths"],
            serde_json::json!([KEY, "/keys/second.pgp", "/keys/3.pgp"])
        );
    }

    #[test]
    fn existing_identical_rule_keeps_bytes() {
        let compact = format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"registry.local":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{KEY}"}}]}}}}}}"#
        );
        let m = merged(Some(&compact), "registry.local", KEY);
        assert!(!m.changed());
        assert_eq!(m.bytes, compact.as_bytes());
    }

    #[test]
    fn accept_anything_and_reject_in_our_scope_are_replaced() {
        let p = r#"{"default":[{"type":"reject"}],"transports":{"docker":{"registry.local":[{"type":"insecureAcceptAnything"}]}}}"#;
        let m = merged(Some(p), "registry.local", KEY);
        let v = json(&m.bytes);
        assert_eq!(
            v["transports"]["docker"]["registry.local"],
            serde_json::json!([{"type": "signedBy", "keyType": "GPGKeys", "keyPath": KEY}])
        );
        assert_eq!(m.changes.len(), 2, "{:?}", m.changes);
    }

    #[test]
    fn unmergeable_rules_are_conflicts() {
        let data = r#"{"default":[{"type":"reject"}],"transports":{"docker":{"registry.local":[{"type":"signedBy","keyType":"GPGKeys","keyData":"AAAA"}]}}}"#;
        let e = merge(Some(data.as_bytes()), "registry.local", Path::new(KEY)).unwrap_err();
        assert!(matches!(e, PolicyError::Conflict { .. }), "{e}");
        let two = r#"{"default":[{"type":"reject"}],"transports":{"docker":{"registry.local":[
            {"type":"signedBy","keyType":"GPGKeys","keyPath":"/a"},
            {"type":"signedBy","keyType":"GPGKeys","keyPath":"/b"}]}}}"#;
        let e = merge(Some(two.as_bytes()), "registry.local", Path::new(KEY)).unwrap_err();
        assert!(e.to_string().contains("2 signedBy"), "{e}");
    }

    #[test]
    fn invalid_existing_policies_are_refused_with_clear_errors() {
        let cases = [
            (
                r#"{"default":[{"type":"reject"}],"extra":1}"#,
                "unknown field \"extra\"",
            ),
            (
                r#"{"default":[{"type":"reject"}],"transports":{"docker":{"r":[{"type":"signedBy","keyType":"GPGKeys","keyPth":"/x"}]}}}"#,
                "unknown field \"keyPth\"",
            ),
            (
                r#"{"default":[{"type":"reject"}],"default":[{"type":"reject"}]}"#,
                "duplicate key \"default\"",
            ),
            (
                r#"{"default":[{"type":"reject"}],"transports":{"docker":{"r":[{"type":"reject"}],"r":[{"type":"reject"}]}}}"#,
                "duplicate key \"r\"",
            ),
            (r#"{"default":[]}"#, "must not be empty"),
            (r#"{}"#, "\"default\" policy is missing"),
            (
                r#"{"default":[{"type":"signedBy","keyPath":"/x"}]}"#,
                "requires \"keyType\"",
            ),
            (
                r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/x","keyData":"AA=="}]}"#,
                "exactly one of",
            ),
            (
                r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/x","signedIdentity":{"type":"matchExact","x":1}}]}"#,
                "default[0].signedIdentity: unknown field \"x\"",
            ),
            (
                r#"{"default":[{"type":"reject"}]} trailing"#,
                "not valid JSON",
            ),
            (
                r#"{"default":[{"type":"reject"}],"transports":null}"#,
                "expected a JSON object",
            ),
        ];
        for (text, want) in cases {
            let e = merge(Some(text.as_bytes()), "registry.local", Path::new(KEY)).unwrap_err();
            assert!(
                e.to_string().contains(want),
                "{text}: got {e}, want {want:?}"
            );
        }
    }

    #[test]
    fn bad_inputs() {
        assert!(matches!(
            merge(None, "registry.local/../x", Path::new(KEY)),
            Err(PolicyError::InvalidScope { .. })
        ));
        assert!(matches!(
            merge(None, "registry.local", Path::new("keys/a.pgp")),
            Err(PolicyError::InvalidKeyPath { .. })
        ));
        let (b, changed) = merge_signed_by(None, "127.0.0.1:5000", Path::new(KEY)).unwrap();
        assert!(changed);
        assert!(json(&b)["transports"]["docker"]["127.0.0.1:5000"].is_array());
    }

    #[test]
    fn requirements_for_docker_most_specific_wins() {
        let p = parse(
            br#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{
                "":[{"type":"reject"}],
                "registry.local":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/host"}],
                "registry.local/c10f":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/ns"}],
                "registry.local/c10f/coredns":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/repo"}],
                "registry.local/c10f/coredns:v1":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/tag"}],
                "*.example.com":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/wild"}],
                "docker.io/library/busybox":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/hub"}]
            }}}"#,
        )
        .unwrap();
        let key = |r: &str| match p.requirements_for_docker(r) {
            [Requirement::SignedBy(SignedBy {
                keys: KeySource::Path(k),
                ..
            })] => k.clone(),
            other => fmt_reqs(other),
        };
        assert_eq!(key("registry.local/c10f/coredns:v1"), "/tag");
        assert_eq!(key("registry.local/c10f/coredns:v2"), "/repo");
        assert_eq!(key("registry.local/c10f/etcd:v1"), "/ns");
        assert_eq!(key("registry.local/c10f2/etcd:v1"), "/host");
        assert_eq!(key("registry.local/k8s-c10f2/x/y:z"), "/host");
        assert_eq!(key("a.b.example.com/x:1"), "/wild");
        assert_eq!(key("busybox:latest"), "/hub");
        assert_eq!(key("quay.io/x:1"), "[reject]");
        assert_eq!(key("not a reference"), "[reject]");
        let no_docker = parse(br#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
        assert_eq!(
            no_docker.requirements_for_docker("registry.local/x:1"),
            [Requirement::InsecureAcceptAnything]
        );
    }

    #[test]
    fn update_file_writes_backs_up_and_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("etc/containers/policy.json");
        let u = update_file(&path, "registry.local", Path::new(KEY)).unwrap();
        assert!(u.backup.is_none());
        assert_eq!(u.changes[0].path.as_deref(), Some(path.as_path()));
        let first = std::fs::read(&path).unwrap();
        let u = update_file(&path, "registry.local", Path::new(KEY)).unwrap();
        assert!(u.changes.is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), first);

        let u = update_file(&path, "registry.local", Path::new("/k2.pgp")).unwrap();
        assert_eq!(std::fs::read(u.backup.unwrap()).unwrap(), first);

        // Invalid file: error, untouched, no backup.
        std::fs::write(&path, b"{\"default\":[{\"type\":\"reject\"}],\"x\":1}").unwrap();
        assert!(update_file(&path, "registry.local", Path::new(KEY)).is_err());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"default\":[{\"type\":\"reject\"}],\"x\":1}"
        );
    }

    /// A minimal OCI layout (empty config, no layers) for skopeo to copy.
    fn oci_layout(dir: &Path) {
        use std::fs;
        let sha = |b: &[u8]| {
            let out = Command::new("sha256sum")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().unwrap().write_all(b)?;
                    c.wait_with_output()
                })
                .unwrap();
            String::from_utf8(out.stdout).unwrap()[..64].to_string()
        };
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let config = b"{}";
        let c = sha(config);
        fs::write(blobs.join(&c), config).unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{c}","size":2}},"layers":[]}}"#
        );
        let m = sha(manifest.as_bytes());
        fs::write(blobs.join(&m), &manifest).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        fs::write(
            dir.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{m}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#,
                manifest.len()
            ),
        )
        .unwrap();
    }

    fn skopeo_copy_with_policy(policy: &[u8]) -> Option<String> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("policy.json");
        std::fs::write(&p, policy).unwrap();
        oci_layout(&d.path().join("src"));
        let src = format!("oci:{}:t", d.path().join("src").display());
        let dst = format!("oci:{}:t", d.path().join("dst").display());
        let out = match Command::new("skopeo")
            .arg("--policy")
            .arg(&p)
            .args(["copy", "-q", &src, &dst])
            .output()
        {
            Ok(o) => o,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                eprintln!("skopeo not installed; skipping the skopeo check");
                return None;
            }
            Err(e) => panic!("running skopeo: {e}"),
        };
        assert!(
            !out.status.success(),
            "default reject must refuse the oci: copy"
        );
        Some(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// skopeo parses what we write: with our policy the oci: copy falls to the
    /// global default (reject) — a policy error would say "invalid policy".
    #[test]
    fn skopeo_accepts_our_policy() {
        let first = merged(Some(PODSEC), "registry.local", KEY);
        let second = merge(
            Some(&first.bytes),
            "registry.local",
            Path::new("/keys/b.pgp"),
        )
        .unwrap();
        for bytes in [
            &first.bytes,
            &second.bytes,
            &merged(None, "127.0.0.1:5000", KEY).bytes,
        ] {
            let Some(err) = skopeo_copy_with_policy(bytes) else {
                return;
            };
            assert!(err.contains("rejected by policy"), "{err}");
            assert!(!err.contains("invalid policy"), "{err}");
        }
        // And the oracle does see invalid files.
        let err = skopeo_copy_with_policy(br#"{"default":[{"type":"reject"}],"x":1}"#).unwrap();
        assert!(err.contains("invalid policy"), "{err}");
    }
}
