//! Profiles: which images make up a bundle, for a (platform, kubernetes version).
//!
//! The facts live in `profiles/*.toml`, not in code, so that a maintainer adds a
//! kubernetes patch or a flannel release by editing one line. The files are embedded
//! in the binary (an air-gapped host has nothing else to read), and
//! [`Profiles::load_dir`] overlays a directory on them: a file there replaces the
//! embedded file of the same name, any other `*.toml` adds to the set.
//!
//! # TOML schema
//! Every file may hold any of three top-level items; all files are merged:
//!
//! ```toml
//! # one line per patch range of a minor that shares pause/etcd/coredns
//! kubeadm = [
//!   { minor = "1.26", patches = "0-9", pause = "3.9", etcd = "3.5.6-0", coredns = "v1.9.3" },
//! ]
//!
//! [flannel]
//! default = "v0.26.7"        # the flannel tag taken when none is asked for
//! cni_plugin = [             # flannel range (inclusive; `to` optional) → plugin tag
//!   { from = "v0.26.4", to = "v0.26.7", plugin = "v1.6.2-flannel1" },
//! ]
//!
//! [[platform]]
//! name = "c10f"              # first component of every image name
//! kind = "kubernetes"        # or "base"
//! description = "…"
//! aliases = ["k8s-c10f2"]    # optional
//! legacy_prefixes = ["k8s-c10f2"]  # optional: also pushed as registry.local/<prefix>/…
//! base_branch = "c10f2"      # optional: this platform's tag of the base images
//! registry = "registry.altlinux.org"  # optional source registry
//! kube_versions = ">=1.26"   # optional restriction of the shared kubeadm table
//! default_version = "1.26.9" # optional; default: the newest offered
//! flannel = "v0.26.7"        # optional; default: [flannel].default
//! # kind = "base" only:
//! images = ["alt", "distroless-base"]
//! branches = ["c10f2", "p10", "p11", "sisyphus"]
//! ```
//!
//! Every string read from a profile is checked against the OCI distribution grammar
//! (tags, repository path components): a profile from an override directory must
//! not be able to smuggle `../` or a control character into an image name, which
//! later becomes a registry URL and a lookaside directory name.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::reference::{is_valid_registry, is_valid_repository, is_valid_tag};

/// The embedded profiles, by file name. A file of the same name in an override
/// directory replaces one of these.
const BUILTIN: &[(&str, &str)] = &[
    ("alt.toml", include_str!("../profiles/alt.toml")),
    ("c10f.toml", include_str!("../profiles/c10f.toml")),
    ("flannel.toml", include_str!("../profiles/flannel.toml")),
    ("kubeadm.toml", include_str!("../profiles/kubeadm.toml")),
    ("p10.toml", include_str!("../profiles/p10.toml")),
    ("p11.toml", include_str!("../profiles/p11.toml")),
    ("sisyphus.toml", include_str!("../profiles/sisyphus.toml")),
];

/// Where the images come from unless a platform names another registry.
pub const DEFAULT_SOURCE_REGISTRY: &str = "registry.altlinux.org";

/// The images kubeadm tags with the kubernetes version itself, in kubeadm's order
/// (`kubeadm config images list`); coredns, pause and etcd follow, from the table.
/// The list is kubeadm's behaviour, unchanged since 1.24, hence code rather than data.
const KUBE_COMPONENTS: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
];

/// Longest description accepted: it is printed in one line by `u7s-bundle profiles`.
const MAX_DESCRIPTION: usize = 300;

/// Everything that can go wrong reading profiles or choosing from them.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profiles at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A profile file that does not parse or breaks a rule (bad name, overlap…).
    #[error("profile {file}: {message}")]
    Invalid { file: String, message: String },
    /// `known` holds each platform as `name (alias, alias)`.
    #[error("unknown platform {name:?}; known: {}", known.join(", "))]
    UnknownPlatform { name: String, known: Vec<String> },
    /// `known` holds every offered version (`v1.26.0`, …) or, for a base platform,
    /// every branch; the message shows them as compact ranges.
    #[error("{}", unknown_version_message(platform, version, known))]
    UnknownVersion {
        platform: String,
        version: String,
        known: Vec<String>,
    },
    #[error("invalid version {input:?}: expected [v]MAJOR.MINOR.PATCH, e.g. v1.26.9")]
    InvalidVersion { input: String },
    /// `known` holds the ranges of the flannel table (`v0.19.0–v0.20.2`, …).
    #[error("flannel {tag:?} is not in the flannel table; known: {}", known.join(", "))]
    UnknownFlannel { tag: String, known: Vec<String> },
    #[error("platform {platform} holds base images: {what} does not apply to it")]
    NotApplicable {
        platform: String,
        what: &'static str,
    },
}

fn unknown_version_message(platform: &str, version: &str, known: &[String]) -> String {
    let all_parse: Option<Vec<KubeVersion>> = known.iter().map(|k| k.parse().ok()).collect();
    let Some(known_versions) = all_parse.filter(|v| !v.is_empty()) else {
        return format!(
            "version {version:?} is not offered by platform {platform}; known: {}",
            known.join(", ")
        );
    };
    let parsed = version.parse::<KubeVersion>().ok();
    let shown = parsed.map_or_else(|| format!("{version:?}"), |v| v.to_string());
    let mut msg = format!(
        "kubernetes version {shown} is not offered by platform {platform}; known: {}",
        compact_versions(&known_versions)
    );
    // A patch newer than the table is the common case (kubernetes released one after
    // this build): say so instead of guessing its etcd/coredns/pause tags.
    if let Some(v) = parsed {
        let newest = known_versions
            .iter()
            .filter(|k| (k.major, k.minor) == (v.major, v.minor))
            .max();
        if let Some(newest) = newest.filter(|n| v.patch > n.patch) {
            msg.push_str(&format!(
                ". {v} is newer than the newest {}.{} patch {platform} offers ({newest}); \
                 a patch released after the kubeadm table was written needs a line in \
                 kubeadm.toml (in a profiles directory), since its pause/etcd/coredns tags \
                 may differ; or take {newest}",
                v.major, v.minor
            ));
        }
    }
    msg
}

/// What a platform carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    /// The kubeadm image set plus flannel; the version is a kubernetes version.
    Kubernetes,
    /// Base images (`alt/alt:<branch>`); the version is an ALT branch.
    Base,
}

impl fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlatformKind::Kubernetes => "kubernetes",
            PlatformKind::Base => "base",
        })
    }
}

/// A kubernetes (or flannel) release `major.minor.patch`. Ordered numerically, so
/// v1.28.10 > v1.28.9 (podsec sorts these as strings and gets it wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl KubeVersion {
    pub const fn new(major: u64, minor: u64, patch: u64) -> KubeVersion {
        KubeVersion {
            major,
            minor,
            patch,
        }
    }

    /// `(major, minor)`: what kubeadm's image pins and `--set-available-images` key on.
    pub fn minor_key(&self) -> (u64, u64) {
        (self.major, self.minor)
    }
}

/// A decimal number without sign or leading zeros: versions have one spelling, so
/// `v1.26.09` cannot name an image set that is then tagged `v1.26.9`.
fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// `[v]X.Y` → (X, Y).
fn parse_minor(s: &str) -> Option<(u64, u64)> {
    let s = s.strip_prefix('v').unwrap_or(s);
    let (a, b) = s.split_once('.')?;
    Some((parse_number(a)?, parse_number(b)?))
}

impl FromStr for KubeVersion {
    type Err = ProfileError;

    /// Accepts `v1.26.9` and `1.26.9`; nothing else (no suffixes, no `1.26`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ProfileError::InvalidVersion {
            input: s.to_string(),
        };
        let rest = s.strip_prefix('v').unwrap_or(s);
        let mut parts = rest.split('.');
        let mut next = || parts.next().and_then(parse_number).ok_or_else(invalid);
        let v = KubeVersion::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(v)
    }
}

impl fmt::Display for KubeVersion {
    /// Always with the `v`: the form kubeadm, the registry tags and podsec use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Versions as compact ranges of consecutive patches: `1.26.0–1.26.15, 1.27.0–1.27.16`.
/// Used in messages and `u7s-bundle profiles`, where 200 versions would drown the
/// one line that matters.
pub fn compact_versions(versions: &[KubeVersion]) -> String {
    let mut sorted = versions.to_vec();
    sorted.sort();
    sorted.dedup();
    let bare = |v: &KubeVersion| format!("{}.{}.{}", v.major, v.minor, v.patch);
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len()
            && sorted[i + 1].minor_key() == end.minor_key()
            && sorted[i + 1].patch == end.patch + 1
        {
            i += 1;
            end = sorted[i];
        }
        out.push(if start == end {
            bare(&start)
        } else {
            format!("{}–{}", bare(&start), bare(&end))
        });
        i += 1;
    }
    out.join(", ")
}

// ---------------------------------------------------------------------------------
// Registry tags sorted as versions (for --set-available-images).

/// A tag read as a version: `[v]X.Y.Z[-pre][+build]`, numbers leniently (registry
/// tags are whatever was pushed). `suffix` is everything after `X.Y.Z`.
struct TagVersion<'a> {
    version: KubeVersion,
    pre: Option<&'a str>,
    suffix: &'a str,
}

fn tag_version(tag: &str) -> Option<TagVersion<'_>> {
    let s = tag.strip_prefix('v').unwrap_or(tag);
    let end = s.find(['-', '+']).unwrap_or(s.len());
    let (core, suffix) = s.split_at(end);
    let mut nums = core.split('.').map(|n| {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            n.parse::<u64>().ok()
        } else {
            None
        }
    });
    let version = KubeVersion::new(nums.next()??, nums.next()??, nums.next()??);
    if nums.next().is_some() {
        return None;
    }
    let pre = suffix
        .strip_prefix('-')
        .map(|p| p.split_once('+').map_or(p, |(pre, _)| pre));
    Some(TagVersion {
        version,
        pre,
        suffix,
    })
}

/// semver precedence of pre-release strings: dot-separated identifiers, numeric ones
/// compared as numbers and below alphanumeric ones; a shorter prefix is lower.
fn cmp_pre(a: &str, b: &str) -> Ordering {
    let mut ia = a.split('.');
    let mut ib = b.split('.');
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let nx = x
                    .bytes()
                    .all(|c| c.is_ascii_digit())
                    .then(|| x.parse::<u128>().ok());
                let ny = y
                    .bytes()
                    .all(|c| c.is_ascii_digit())
                    .then(|| y.parse::<u128>().ok());
                let ord = match (nx.flatten(), ny.flatten()) {
                    (Some(p), Some(q)) => p.cmp(&q),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// Total order on tags: tags that are not versions first (by string), then versions
/// numerically; a pre-release (`-rc.1`) below its release; ties by string, so the
/// order never depends on the input order.
fn cmp_tags(a: &str, b: &str) -> Ordering {
    match (tag_version(a), tag_version(b)) {
        (None, None) => a.cmp(b),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x
            .version
            .cmp(&y.version)
            .then_with(|| match (x.pre, y.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(p), Some(q)) => cmp_pre(p, q),
            })
            .then_with(|| a.cmp(b)),
    }
}

/// Tags sorted ascending as versions (v1.28.9 < v1.28.10); tags that are not
/// versions (`latest`) sort first, so the last element is the newest version.
pub fn sort_tags_as_versions(tags: &[String]) -> Vec<String> {
    let mut out = tags.to_vec();
    out.sort_by(|a, b| cmp_tags(a, b));
    out
}

/// The newest tag `[v]X.Y.Z` of `minor` among `tags`, compared as versions — what
/// `--set-available-images` substitutes for a missing tag. Suffixed tags
/// (`v1.28.9-rc.0`, `3.5.6-0`) count only when the minor has no plain one.
pub fn newest_in_minor(tags: &[String], minor: (u64, u64)) -> Option<String> {
    let in_minor: Vec<&String> = tags
        .iter()
        .filter(|t| tag_version(t).is_some_and(|v| v.version.minor_key() == minor))
        .collect();
    let newest = |plain_only: bool| {
        in_minor
            .iter()
            .filter(|t| !plain_only || tag_version(t).is_some_and(|v| v.suffix.is_empty()))
            .max_by(|a, b| cmp_tags(a, b))
            .map(|t| (*t).clone())
    };
    newest(true).or_else(|| newest(false))
}

// ---------------------------------------------------------------------------------
// The file format (serde) — checked and turned into the types below by `build`.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    platform: Vec<PlatformDoc>,
    #[serde(default)]
    kubeadm: Vec<KubeadmRowDoc>,
    flannel: Option<FlannelDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformDoc {
    name: String,
    kind: PlatformKind,
    description: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    legacy_prefixes: Vec<String>,
    base_branch: Option<String>,
    registry: Option<String>,
    kube_versions: Option<String>,
    default_version: Option<String>,
    flannel: Option<String>,
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    branches: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubeadmRowDoc {
    minor: String,
    patches: String,
    pause: String,
    etcd: String,
    coredns: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlannelDoc {
    default: Option<String>,
    #[serde(default)]
    cni_plugin: Vec<FlannelRowDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlannelRowDoc {
    from: String,
    to: Option<String>,
    plugin: String,
}

/// One row of the kubeadm table: patches `first..=last` of `minor` pin these tags.
#[derive(Debug, Clone)]
struct KubeadmRow {
    minor: (u64, u64),
    first: u64,
    last: u64,
    pause: String,
    etcd: String,
    coredns: String,
}

/// Flannel releases `from..=to` ship this flannel-cni-plugin tag.
#[derive(Debug, Clone)]
struct FlannelRow {
    from: KubeVersion,
    to: KubeVersion,
    plugin: String,
}

impl FlannelRow {
    fn label(&self) -> String {
        if self.from == self.to {
            self.from.to_string()
        } else {
            format!("{}–{}", self.from, self.to)
        }
    }
}

/// A `kube_versions` restriction: `||`-separated alternatives of `,`-separated
/// bounds (`>=1.26, <1.33 || =1.34.2`). A bound without a patch compares the minor
/// only, so `<=1.32` includes every 1.32 patch.
#[derive(Debug, Clone)]
struct VersionReq {
    any_of: Vec<Vec<Bound>>,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

#[derive(Debug, Clone, Copy)]
struct Bound {
    op: Op,
    minor: (u64, u64),
    patch: Option<u64>,
}

impl VersionReq {
    fn parse(s: &str) -> Result<VersionReq, String> {
        let mut any_of = Vec::new();
        for alternative in s.split("||") {
            let mut all_of = Vec::new();
            for term in alternative.split(',') {
                all_of.push(Bound::parse(term.trim())?);
            }
            any_of.push(all_of);
        }
        Ok(VersionReq { any_of })
    }

    fn matches(&self, v: &KubeVersion) -> bool {
        self.any_of
            .iter()
            .any(|all| all.iter().all(|b| b.matches(v)))
    }
}

impl Bound {
    fn parse(term: &str) -> Result<Bound, String> {
        let (op, rest) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ]
        .iter()
        .find_map(|(p, op)| term.strip_prefix(p).map(|r| (*op, r)))
        .unwrap_or((Op::Eq, term));
        let rest = rest.trim();
        let bad =
            || format!("bad version bound {term:?} (expected e.g. \">=1.26\" or \"=1.26.9\")");
        let (minor, patch) = match rest.strip_prefix('v').unwrap_or(rest).matches('.').count() {
            1 => (parse_minor(rest).ok_or_else(bad)?, None),
            2 => {
                let v: KubeVersion = rest.parse().map_err(|_| bad())?;
                (v.minor_key(), Some(v.patch))
            }
            _ => return Err(bad()),
        };
        Ok(Bound { op, minor, patch })
    }

    fn matches(&self, v: &KubeVersion) -> bool {
        let ord = match self.patch {
            Some(p) => (v.major, v.minor, v.patch).cmp(&(self.minor.0, self.minor.1, p)),
            None => v.minor_key().cmp(&self.minor),
        };
        match self.op {
            Op::Lt => ord.is_lt(),
            Op::Le => ord.is_le(),
            Op::Gt => ord.is_gt(),
            Op::Ge => ord.is_ge(),
            Op::Eq => ord.is_eq(),
        }
    }
}

// ---------------------------------------------------------------------------------
// The public model.

/// One platform: a name on the registry and what it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Canonical name, the first component of every image name (`c10f`).
    pub name: String,
    /// Other accepted names (the pre-2025 `k8s-c10f2` style).
    pub aliases: Vec<String>,
    /// Extra first components the images are also pushed and signed under on load.
    pub legacy_prefixes: Vec<String>,
    pub description: String,
    pub kind: PlatformKind,
    /// The registry the images are pulled from (`registry.altlinux.org`).
    pub source_registry: String,
    /// This platform's tag of the base images (`c10f2` for c10f), if any.
    pub base_branch: Option<String>,
    /// Kubernetes: the offered versions, ascending. Base: empty.
    versions: Vec<KubeVersion>,
    /// Base: the offered branches (tags). Kubernetes: empty.
    branches: Vec<String>,
    /// Base: the image names under the platform. Kubernetes: empty.
    images: Vec<String>,
    /// `v1.36.3` or a branch.
    default_version: String,
    /// Kubernetes: the flannel tag taken when none is given.
    flannel_default: Option<String>,
}

impl Platform {
    /// The kubernetes versions offered, ascending (empty for a base platform).
    pub fn versions(&self) -> Vec<KubeVersion> {
        self.versions.clone()
    }

    /// The branches (tags) offered by a base platform (empty for kubernetes ones).
    pub fn branches(&self) -> &[String] {
        &self.branches
    }

    /// The image names of a base platform (`alt`, `distroless-base`).
    pub fn base_images(&self) -> &[String] {
        &self.images
    }

    /// What is taken when no version is asked for: `v1.36.3` (by default the newest
    /// offered), or a branch for a base platform.
    pub fn default_version(&self) -> &str {
        &self.default_version
    }

    /// [`Platform::default_version`] as a version; `None` for a base platform.
    pub fn default_kube_version(&self) -> Option<KubeVersion> {
        match self.kind {
            PlatformKind::Kubernetes => self.default_version.parse().ok(),
            PlatformKind::Base => None,
        }
    }

    /// The flannel tag taken when none is asked for (kubernetes platforms).
    pub fn default_flannel(&self) -> Option<&str> {
        self.flannel_default.as_deref()
    }

    /// Is this platform called `name` (canonical name or alias, ASCII case ignored)?
    pub fn is_named(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }

    /// Does this platform offer kubernetes version `v`?
    pub fn offers(&self, v: &KubeVersion) -> bool {
        self.versions.binary_search(v).is_ok()
    }

    /// The offered versions (or branches) in one line, for listings.
    pub fn version_summary(&self) -> String {
        match self.kind {
            PlatformKind::Kubernetes => compact_versions(&self.versions),
            PlatformKind::Base => self.branches.join(", "),
        }
    }

    fn unknown_version(&self, requested: &str) -> ProfileError {
        ProfileError::UnknownVersion {
            platform: self.name.clone(),
            version: requested.to_string(),
            known: match self.kind {
                PlatformKind::Kubernetes => self.versions.iter().map(|v| v.to_string()).collect(),
                PlatformKind::Base => self.branches.clone(),
            },
        }
    }

    /// The kubernetes version meant by `requested`: `v1.26.9` / `1.26.9`, or a minor
    /// (`1.30`, `v1.30`) for the newest patch of it this platform offers.
    pub fn resolve_version(&self, requested: &str) -> Result<KubeVersion, ProfileError> {
        if self.kind == PlatformKind::Base {
            return Err(ProfileError::NotApplicable {
                platform: self.name.clone(),
                what: "a kubernetes version",
            });
        }
        let requested = requested.trim();
        let found = if let Some(minor) = parse_minor(requested) {
            self.versions
                .iter()
                .rev()
                .find(|v| v.minor_key() == minor)
                .copied()
        } else {
            requested
                .parse::<KubeVersion>()
                .ok()
                .filter(|v| self.offers(v))
        };
        found.ok_or_else(|| self.unknown_version(requested))
    }
}

/// One image of a set, named registry-relative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSpec {
    /// `c10f/kube-apiserver`: the platform, then the image.
    pub repository: String,
    pub tag: String,
    /// What the image is for: `kube-apiserver`, `etcd`, `flannel`, `alt`, …
    pub role: String,
}

impl ImageSpec {
    /// `c10f/kube-apiserver:v1.26.9`: the name inside a bundle.
    pub fn name(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// The name with its platform component replaced by `prefix`
    /// (`k8s-c10f2/kube-apiserver:v1.26.9`), for the legacy names pushed on load.
    /// `prefix` must be a valid path component, as [`ImageSet::legacy_prefixes`] are.
    pub fn name_under(&self, prefix: &str) -> String {
        let rest = self
            .repository
            .split_once('/')
            .map_or(self.repository.as_str(), |(_, rest)| rest);
        format!("{prefix}/{rest}:{}", self.tag)
    }
}

/// Everything one bundle carries for one platform and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSet {
    /// Canonical platform (`c10f`).
    pub platform: String,
    /// The name or alias the platform was asked for by (`k8s-c10f2`), for messages
    /// and bundle metadata.
    pub requested_platform: String,
    pub kind: PlatformKind,
    /// `v1.26.9`; for a base platform, the branch (`p11`).
    pub kube_version: String,
    pub flannel_tag: Option<String>,
    pub flannel_cni_plugin_tag: Option<String>,
    /// See [`Platform::legacy_prefixes`].
    pub legacy_prefixes: Vec<String>,
    /// See [`Platform::source_registry`].
    pub source_registry: String,
    /// In kubeadm's order, then flannel, flannel-cni-plugin.
    pub images: Vec<ImageSpec>,
}

impl ImageSet {
    /// Every image name (`c10f/kube-apiserver:v1.26.9`, …), in order.
    pub fn names(&self) -> Vec<String> {
        self.images.iter().map(ImageSpec::name).collect()
    }

    /// The image playing `role` (`etcd`), if the set has one.
    pub fn image(&self, role: &str) -> Option<&ImageSpec> {
        self.images.iter().find(|i| i.role == role)
    }

    /// Where `image` is pulled from: `registry.altlinux.org/c10f/etcd:3.5.6-0`.
    pub fn source_reference(&self, image: &ImageSpec) -> String {
        format!("{}/{}", self.source_registry, image.name())
    }
}

/// All platforms and the shared tables.
#[derive(Debug, Clone)]
pub struct Profiles {
    /// Sorted by name.
    platforms: Vec<Platform>,
    /// Sorted by (minor, first patch); no overlaps.
    kubeadm: Vec<KubeadmRow>,
    /// Sorted by `from`; no overlaps.
    flannel: Vec<FlannelRow>,
}

fn invalid(file: &str, message: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        file: file.to_string(),
        message: message.into(),
    }
}

/// A single repository path component (`c10f`, `k8s-c10f2`): a platform name,
/// alias or prefix must not contain `/` or anything outside the OCI grammar.
fn check_component(file: &str, what: &str, s: &str) -> Result<(), ProfileError> {
    if s.contains('/') || !is_valid_repository(s) {
        return Err(invalid(
            file,
            format!("{what} {s:?} is not a repository path component ([a-z0-9]+([._-][a-z0-9]+)*)"),
        ));
    }
    Ok(())
}

fn check_repository(file: &str, what: &str, s: &str) -> Result<(), ProfileError> {
    if !is_valid_repository(s) {
        return Err(invalid(
            file,
            format!("{what} {s:?} is not a repository path (components [a-z0-9]+([._-][a-z0-9]+)* joined by '/')"),
        ));
    }
    Ok(())
}

fn check_tag(file: &str, what: &str, s: &str) -> Result<(), ProfileError> {
    if !is_valid_tag(s) {
        return Err(invalid(
            file,
            format!("{what} {s:?} is not an image tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})"),
        ));
    }
    Ok(())
}

/// Normalize a flannel tag (`0.26.7` or `v0.26.7`) to a version.
fn flannel_version(tag: &str) -> Option<KubeVersion> {
    tag.trim().parse().ok()
}

impl Profiles {
    /// The profiles embedded in the binary (`profiles/*.toml` at build time).
    pub fn builtin() -> Result<Profiles, ProfileError> {
        Profiles::from_files(
            BUILTIN
                .iter()
                .map(|(name, text)| (format!("builtin:{name}"), *text)),
        )
    }

    /// The embedded profiles overlaid with the `*.toml` files of `dir`: a file named
    /// like an embedded one (`kubeadm.toml`) replaces it, any other adds to the set
    /// (an empty `p10.toml` thus removes platform p10). This lets an isolated site add
    /// a kubernetes patch without a new binary, and keeps the rest of the data shared.
    pub fn load_dir(dir: &Path) -> Result<Profiles, ProfileError> {
        let mut files: BTreeMap<String, (String, String)> = BUILTIN
            .iter()
            .map(|(name, text)| {
                (
                    name.to_string(),
                    (format!("builtin:{name}"), text.to_string()),
                )
            })
            .collect();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ProfileError::Io { path, source }
        };
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let name = match path.file_name() {
                Some(n) => n.to_string_lossy().into_owned(),
                None => continue,
            };
            // Editor backups and hidden files are not profiles.
            if name.starts_with('.') || !name.ends_with(".toml") || !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            files.insert(name, (path.display().to_string(), text));
        }
        Profiles::from_files(files.into_values())
    }

    /// Profiles from in-memory files `(label, toml)`; the label names the file in
    /// errors. [`Profiles::builtin`] and [`Profiles::load_dir`] end here.
    pub fn from_files<L, T>(
        files: impl IntoIterator<Item = (L, T)>,
    ) -> Result<Profiles, ProfileError>
    where
        L: AsRef<str>,
        T: AsRef<str>,
    {
        let mut docs = Vec::new();
        for (label, text) in files {
            let label = label.as_ref().to_string();
            let doc: FileDoc = toml::from_str(text.as_ref())
                .map_err(|e| invalid(&label, e.to_string().trim_end().to_string()))?;
            docs.push((label, doc));
        }
        Profiles::build(docs)
    }

    fn build(docs: Vec<(String, FileDoc)>) -> Result<Profiles, ProfileError> {
        let mut kubeadm = Vec::new();
        let mut flannel = Vec::new();
        let mut flannel_default: Option<(String, KubeVersion)> = None;
        let mut platform_docs = Vec::new();
        for (file, doc) in docs {
            for row in doc.kubeadm {
                kubeadm.push((file.clone(), Self::kubeadm_row(&file, row)?));
            }
            if let Some(f) = doc.flannel {
                if let Some(d) = f.default {
                    if let Some((other, _)) = &flannel_default {
                        return Err(invalid(
                            &file,
                            format!("[flannel].default is already set in {other}"),
                        ));
                    }
                    let v = flannel_version(&d).ok_or_else(|| {
                        invalid(
                            &file,
                            format!("[flannel].default {d:?} is not a version vX.Y.Z"),
                        )
                    })?;
                    flannel_default = Some((file.clone(), v));
                }
                for row in f.cni_plugin {
                    flannel.push((file.clone(), Self::flannel_row(&file, row)?));
                }
            }
            platform_docs.extend(doc.platform.into_iter().map(|p| (file.clone(), p)));
        }

        kubeadm.sort_by_key(|(_, r)| (r.minor, r.first));
        for pair in kubeadm.windows(2) {
            let ((fa, a), (fb, b)) = (&pair[0], &pair[1]);
            if a.minor != b.minor {
                continue;
            }
            let (maj, min) = a.minor;
            if b.first <= a.last {
                return Err(invalid(
                    fb,
                    format!(
                        "kubeadm rows for {maj}.{min} overlap: patches {}-{} (in {fa}) and {}-{}",
                        a.first, a.last, b.first, b.last
                    ),
                ));
            }
            if b.first != a.last + 1 {
                return Err(invalid(
                    fb,
                    format!(
                        "kubeadm rows for {maj}.{min} leave patches {}-{} out (a missing line?)",
                        a.last + 1,
                        b.first - 1
                    ),
                ));
            }
        }
        let kubeadm: Vec<KubeadmRow> = kubeadm.into_iter().map(|(_, r)| r).collect();

        flannel.sort_by_key(|(_, r)| r.from);
        for pair in flannel.windows(2) {
            let ((fa, a), (fb, b)) = (&pair[0], &pair[1]);
            if b.from <= a.to {
                return Err(invalid(
                    fb,
                    format!(
                        "flannel rows {} (in {fa}) and {} overlap",
                        a.label(),
                        b.label()
                    ),
                ));
            }
        }
        let flannel: Vec<FlannelRow> = flannel.into_iter().map(|(_, r)| r).collect();

        let mut profiles = Profiles {
            platforms: Vec::new(),
            kubeadm,
            flannel,
        };
        let flannel_default = match flannel_default {
            Some((file, v)) => {
                profiles.flannel_row_for(&v).ok_or_else(|| {
                    invalid(
                        &file,
                        format!("[flannel].default {v} is not in the cni_plugin table"),
                    )
                })?;
                Some(v.to_string())
            }
            None => None,
        };
        let all_versions: Vec<KubeVersion> = profiles
            .kubeadm
            .iter()
            .flat_map(|r| {
                (r.first..=r.last).map(move |p| KubeVersion::new(r.minor.0, r.minor.1, p))
            })
            .collect();

        let mut names: BTreeMap<String, String> = BTreeMap::new(); // name or alias → platform
        for (file, doc) in platform_docs {
            let platform = profiles.platform_from_doc(
                &file,
                doc,
                &all_versions,
                flannel_default.as_deref(),
            )?;
            for n in std::iter::once(&platform.name).chain(&platform.aliases) {
                if let Some(owner) = names.insert(n.clone(), platform.name.clone()) {
                    return Err(invalid(
                        &file,
                        format!("platform name {n:?} is already used by platform {owner}"),
                    ));
                }
            }
            profiles.platforms.push(platform);
        }
        profiles.platforms.sort_by(|a, b| a.name.cmp(&b.name));

        // A legacy prefix is another name for the platform's images on registry.local:
        // it must not be another platform's namespace, nor shared, or one platform's
        // load would overwrite (and sign) another's images.
        let mut prefixes: BTreeMap<&str, &str> = BTreeMap::new();
        for p in &profiles.platforms {
            for prefix in &p.legacy_prefixes {
                let owner = names.get(prefix.as_str());
                if owner.is_some_and(|o| o != &p.name) || prefixes.insert(prefix, &p.name).is_some()
                {
                    return Err(invalid(
                        &p.name,
                        format!(
                            "legacy prefix {prefix:?} of platform {} belongs to another platform",
                            p.name
                        ),
                    ));
                }
            }
        }
        Ok(profiles)
    }

    fn kubeadm_row(file: &str, row: KubeadmRowDoc) -> Result<KubeadmRow, ProfileError> {
        let minor = parse_minor(&row.minor)
            .filter(|_| !row.minor.starts_with('v'))
            .ok_or_else(|| {
                invalid(
                    file,
                    format!(
                        "kubeadm minor {:?} is not MAJOR.MINOR (e.g. \"1.26\")",
                        row.minor
                    ),
                )
            })?;
        let patches = row.patches.replace('–', "-");
        let bad_patches = || {
            invalid(
                file,
                format!(
                    "kubeadm patches {:?} is not \"N\" or \"FIRST-LAST\"",
                    row.patches
                ),
            )
        };
        let (first, last) = match patches.split_once('-') {
            Some((a, b)) => (
                parse_number(a.trim()).ok_or_else(bad_patches)?,
                parse_number(b.trim()).ok_or_else(bad_patches)?,
            ),
            None => {
                let n = parse_number(patches.trim()).ok_or_else(bad_patches)?;
                (n, n)
            }
        };
        if first > last {
            return Err(bad_patches());
        }
        check_tag(file, "pause tag", &row.pause)?;
        check_tag(file, "etcd tag", &row.etcd)?;
        check_tag(file, "coredns tag", &row.coredns)?;
        Ok(KubeadmRow {
            minor,
            first,
            last,
            pause: row.pause,
            etcd: row.etcd,
            coredns: row.coredns,
        })
    }

    fn flannel_row(file: &str, row: FlannelRowDoc) -> Result<FlannelRow, ProfileError> {
        let version = |s: &str| {
            flannel_version(s)
                .ok_or_else(|| invalid(file, format!("flannel version {s:?} is not vX.Y.Z")))
        };
        let from = version(&row.from)?;
        let to = match &row.to {
            Some(t) => version(t)?,
            None => from,
        };
        if from > to {
            return Err(invalid(
                file,
                format!("flannel range {from}–{to} is reversed"),
            ));
        }
        check_tag(file, "flannel-cni-plugin tag", &row.plugin)?;
        Ok(FlannelRow {
            from,
            to,
            plugin: row.plugin,
        })
    }

    fn platform_from_doc(
        &self,
        file: &str,
        doc: PlatformDoc,
        all_versions: &[KubeVersion],
        flannel_default: Option<&str>,
    ) -> Result<Platform, ProfileError> {
        let name = doc.name;
        check_component(file, "platform name", &name)?;
        let file = &format!("{file} (platform {name})");
        for a in &doc.aliases {
            check_component(file, "alias", a)?;
        }
        for p in &doc.legacy_prefixes {
            check_component(file, "legacy prefix", p)?;
        }
        if doc.description.chars().count() > MAX_DESCRIPTION
            || doc.description.chars().any(char::is_control)
        {
            return Err(invalid(
                file,
                format!("description must be one line of at most {MAX_DESCRIPTION} characters without control characters"),
            ));
        }
        if let Some(b) = &doc.base_branch {
            check_tag(file, "base_branch", b)?;
        }
        let source_registry = doc
            .registry
            .unwrap_or_else(|| DEFAULT_SOURCE_REGISTRY.to_string());
        if !is_valid_registry(&source_registry) {
            return Err(invalid(
                file,
                format!("registry {source_registry:?} is not a host[:port]"),
            ));
        }
        let misplaced = |key: &str, kind: PlatformKind| {
            invalid(
                file,
                format!("{key} does not apply to a platform of kind \"{kind}\""),
            )
        };

        let mut platform = Platform {
            name: name.clone(),
            aliases: doc.aliases,
            legacy_prefixes: doc.legacy_prefixes,
            description: doc.description,
            kind: doc.kind,
            source_registry,
            base_branch: doc.base_branch,
            versions: Vec::new(),
            branches: Vec::new(),
            images: Vec::new(),
            default_version: String::new(),
            flannel_default: None,
        };
        match doc.kind {
            PlatformKind::Kubernetes => {
                if !doc.images.is_empty() {
                    return Err(misplaced("images", doc.kind));
                }
                if !doc.branches.is_empty() {
                    return Err(misplaced("branches", doc.kind));
                }
                for image in KUBE_COMPONENTS.iter().chain(&[
                    "coredns",
                    "pause",
                    "etcd",
                    "flannel",
                    "flannel-cni-plugin",
                ]) {
                    check_repository(file, "image repository", &format!("{name}/{image}"))?;
                }
                platform.versions = match &doc.kube_versions {
                    Some(req) => {
                        let req = VersionReq::parse(req)
                            .map_err(|m| invalid(file, format!("kube_versions: {m}")))?;
                        all_versions
                            .iter()
                            .copied()
                            .filter(|v| req.matches(v))
                            .collect()
                    }
                    None => all_versions.to_vec(),
                };
                let Some(newest) = platform.versions.last() else {
                    return Err(invalid(
                        file,
                        "offers no kubernetes version (empty kubeadm table, or kube_versions excludes all of it)",
                    ));
                };
                platform.default_version = match &doc.default_version {
                    Some(d) => {
                        let v = d
                            .parse::<KubeVersion>()
                            .ok()
                            .filter(|v| platform.offers(v))
                            .ok_or_else(|| {
                                invalid(
                                    file,
                                    format!(
                                        "default_version {d:?} is not among the versions it offers"
                                    ),
                                )
                            })?;
                        v.to_string()
                    }
                    None => newest.to_string(),
                };
                let flannel = match doc.flannel {
                    Some(f) => {
                        let v = flannel_version(&f)
                            .filter(|v| self.flannel_row_for(v).is_some())
                            .ok_or_else(|| {
                                invalid(
                                    file,
                                    format!("flannel {f:?} is not in the flannel cni_plugin table"),
                                )
                            })?;
                        v.to_string()
                    }
                    None => flannel_default
                        .ok_or_else(|| {
                            invalid(
                                file,
                                "no flannel tag: set [flannel].default or flannel = \"vX.Y.Z\"",
                            )
                        })?
                        .to_string(),
                };
                platform.flannel_default = Some(flannel);
            }
            PlatformKind::Base => {
                for (key, set) in [
                    ("kube_versions", doc.kube_versions.is_some()),
                    ("flannel", doc.flannel.is_some()),
                    ("base_branch", platform.base_branch.is_some()),
                ] {
                    if set {
                        return Err(misplaced(key, doc.kind));
                    }
                }
                if doc.images.is_empty() || doc.branches.is_empty() {
                    return Err(invalid(file, "a base platform needs images and branches"));
                }
                for image in &doc.images {
                    check_repository(file, "image", image)?;
                    check_repository(file, "image repository", &format!("{name}/{image}"))?;
                }
                for b in &doc.branches {
                    check_tag(file, "branch", b)?;
                }
                let default = doc
                    .default_version
                    .unwrap_or_else(|| doc.branches[0].clone());
                if !doc.branches.contains(&default) {
                    return Err(invalid(
                        file,
                        format!("default_version {default:?} is not among its branches"),
                    ));
                }
                platform.default_version = default;
                platform.images = doc.images;
                platform.branches = doc.branches;
            }
        }
        Ok(platform)
    }

    fn flannel_row_for(&self, v: &KubeVersion) -> Option<&FlannelRow> {
        self.flannel.iter().find(|r| r.from <= *v && *v <= r.to)
    }

    fn kubeadm_row_for(&self, v: &KubeVersion) -> Option<&KubeadmRow> {
        self.kubeadm
            .iter()
            .find(|r| r.minor == v.minor_key() && r.first <= v.patch && v.patch <= r.last)
    }

    /// All platforms, sorted by name.
    pub fn platforms(&self) -> impl Iterator<Item = &Platform> {
        self.platforms.iter()
    }

    /// The platform called `name_or_alias` (`c10f`, `k8s-c10f2`).
    pub fn platform(&self, name_or_alias: &str) -> Result<&Platform, ProfileError> {
        let wanted = name_or_alias.trim();
        self.platforms
            .iter()
            .find(|p| p.is_named(wanted))
            .ok_or_else(|| ProfileError::UnknownPlatform {
                name: name_or_alias.to_string(),
                known: self
                    .platforms
                    .iter()
                    .map(|p| {
                        if p.aliases.is_empty() {
                            p.name.clone()
                        } else {
                            format!("{} ({})", p.name, p.aliases.join(", "))
                        }
                    })
                    .collect(),
            })
    }

    /// The flannel-cni-plugin tag that goes with flannel `flannel_tag`.
    pub fn flannel_cni_plugin(&self, flannel_tag: &str) -> Result<&str, ProfileError> {
        flannel_version(flannel_tag)
            .and_then(|v| self.flannel_row_for(&v))
            .map(|r| r.plugin.as_str())
            .ok_or_else(|| ProfileError::UnknownFlannel {
                tag: flannel_tag.to_string(),
                known: self.flannel.iter().map(FlannelRow::label).collect(),
            })
    }

    /// The image set of `platform` (name or alias) at `kube_version` (default: the
    /// platform's default) with flannel `flannel_tag` (default: the platform's).
    ///
    /// For a base platform `kube_version` is a branch (`p10`), or the name of a
    /// kubernetes platform standing for its `base_branch` (`c10f` → `c10f2`), and a
    /// flannel tag is an error.
    pub fn image_set(
        &self,
        platform: &str,
        kube_version: Option<&str>,
        flannel_tag: Option<&str>,
    ) -> Result<ImageSet, ProfileError> {
        let p = self.platform(platform)?;
        // The name as asked for, but spelled as the profile spells it (the match
        // ignores case and surrounding blanks): it may end up in bundle metadata.
        let wanted = platform.trim();
        let requested = std::iter::once(&p.name)
            .chain(&p.aliases)
            .find(|n| n.eq_ignore_ascii_case(wanted))
            .unwrap_or(&p.name);
        let mut set = ImageSet {
            platform: p.name.clone(),
            requested_platform: requested.clone(),
            kind: p.kind,
            kube_version: String::new(),
            flannel_tag: None,
            flannel_cni_plugin_tag: None,
            legacy_prefixes: p.legacy_prefixes.clone(),
            source_registry: p.source_registry.clone(),
            images: Vec::new(),
        };
        let image = |name: &str, tag: &str| ImageSpec {
            repository: format!("{}/{name}", p.name),
            tag: tag.to_string(),
            role: name.to_string(),
        };
        match p.kind {
            PlatformKind::Base => {
                if flannel_tag.is_some() {
                    return Err(ProfileError::NotApplicable {
                        platform: p.name.clone(),
                        what: "a flannel tag",
                    });
                }
                let branch = self.resolve_branch(p, kube_version.unwrap_or(&p.default_version))?;
                set.images = p.images.iter().map(|i| image(i, &branch)).collect();
                set.kube_version = branch;
            }
            PlatformKind::Kubernetes => {
                let v = p.resolve_version(kube_version.unwrap_or(&p.default_version))?;
                let row = self
                    .kubeadm_row_for(&v)
                    .expect("every offered version comes from the kubeadm table");
                let flannel = flannel_tag
                    .or(p.flannel_default.as_deref())
                    .expect("a kubernetes platform always has a default flannel");
                let plugin = self.flannel_cni_plugin(flannel)?.to_string();
                let flannel = flannel_version(flannel)
                    .expect("flannel_cni_plugin accepted it as a version")
                    .to_string();
                let version = v.to_string();
                set.images = KUBE_COMPONENTS.iter().map(|c| image(c, &version)).collect();
                set.images.push(image("coredns", &row.coredns));
                set.images.push(image("pause", &row.pause));
                set.images.push(image("etcd", &row.etcd));
                set.images.push(image("flannel", &flannel));
                set.images.push(image("flannel-cni-plugin", &plugin));
                set.kube_version = version;
                set.flannel_tag = Some(flannel);
                set.flannel_cni_plugin_tag = Some(plugin);
            }
        }
        Ok(set)
    }

    /// A branch of base platform `p`, given as a branch or as a platform whose
    /// `base_branch` is one.
    fn resolve_branch(&self, p: &Platform, requested: &str) -> Result<String, ProfileError> {
        let requested = requested.trim();
        if let Some(b) = p.branches.iter().find(|b| b.as_str() == requested) {
            return Ok(b.clone());
        }
        self.platforms
            .iter()
            .find(|other| other.is_named(requested))
            .and_then(|other| other.base_branch.as_ref())
            .filter(|b| p.branches.contains(b))
            .cloned()
            .ok_or_else(|| p.unknown_version(requested))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Profiles {
        Profiles::builtin().expect("embedded profiles load")
    }

    fn tag_of(set: &ImageSet, role: &str) -> String {
        set.image(role)
            .unwrap_or_else(|| panic!("no {role} in {set:?}"))
            .tag
            .clone()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubeadm_tags_follow_the_table() {
        let p = builtin();
        let set = p.image_set("c10f", Some("v1.26.9"), None).unwrap();
        assert_eq!(tag_of(&set, "etcd"), "3.5.6-0");
        assert_eq!(tag_of(&set, "coredns"), "v1.9.3");
        assert_eq!(tag_of(&set, "pause"), "3.9");
        assert_eq!(tag_of(&set, "kube-apiserver"), "v1.26.9");

        let set = p.image_set("c10f", Some("1.26.10"), None).unwrap();
        assert_eq!(tag_of(&set, "etcd"), "3.5.9-0");
        assert_eq!(set.kube_version, "v1.26.10");

        let set = p.image_set("p10", Some("v1.31.0"), None).unwrap();
        assert_eq!(tag_of(&set, "pause"), "3.10");
        assert_eq!(tag_of(&set, "coredns"), "v1.11.1");
        let set = p.image_set("p10", Some("v1.31.1"), None).unwrap();
        assert_eq!(tag_of(&set, "coredns"), "v1.11.3");

        let set = p.image_set("sisyphus", Some("v1.34.2"), None).unwrap();
        assert_eq!(tag_of(&set, "etcd"), "3.6.5-0");
        assert_eq!(tag_of(&set, "pause"), "3.10.1");
        let set = p.image_set("sisyphus", Some("v1.34.1"), None).unwrap();
        assert_eq!(tag_of(&set, "etcd"), "3.6.4-0");
    }

    #[test]
    fn image_order_and_names_follow_kubeadm() {
        let set = builtin().image_set("p11", Some("v1.30.5"), None).unwrap();
        let roles: Vec<&str> = set.images.iter().map(|i| i.role.as_str()).collect();
        assert_eq!(
            roles,
            [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kube-proxy",
                "coredns",
                "pause",
                "etcd",
                "flannel",
                "flannel-cni-plugin"
            ]
        );
        // custom-repository form: <platform>/coredns, not <platform>/coredns/coredns
        assert_eq!(set.images[4].name(), "p11/coredns:v1.11.3");
        assert_eq!(
            set.source_reference(&set.images[0]),
            "registry.altlinux.org/p11/kube-apiserver:v1.30.5"
        );
    }

    #[test]
    fn alias_resolves_to_canonical_platform() {
        let p = builtin();
        let set = p.image_set("k8s-c10f2", Some("v1.26.9"), None).unwrap();
        assert_eq!(set.platform, "c10f");
        assert_eq!(set.requested_platform, "k8s-c10f2");
        let set = p.image_set(" K8S-C10F2", Some("v1.26.9"), None).unwrap();
        assert_eq!(set.requested_platform, "k8s-c10f2");
        assert_eq!(set.images[0].name(), "c10f/kube-apiserver:v1.26.9");
        assert!(set.names().iter().all(|n| n.starts_with("c10f/")));
        assert_eq!(set.legacy_prefixes, ["k8s-c10f2"]);
        assert_eq!(
            set.images[6].name_under("k8s-c10f2"),
            "k8s-c10f2/etcd:3.5.6-0"
        );
        assert_eq!(p.platform("k8s-c10f1").unwrap().name, "c10f");
        assert_eq!(p.platform("k8s-p10").unwrap().name, "p10");
        assert!(p.platform("p10").unwrap().legacy_prefixes.is_empty());
    }

    #[test]
    fn unknown_platform_lists_names_and_aliases() {
        let err = builtin().platform("k8s-p9").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ProfileError::UnknownPlatform { .. }));
        assert!(msg.contains("c10f (k8s-c10f2, k8s-c10f1)"), "{msg}");
        assert!(
            msg.contains("p11") && msg.contains("sisyphus") && msg.contains("alt"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_version_lists_known_versions_compactly() {
        let err = builtin()
            .image_set("c10f", Some("v1.25.3"), None)
            .unwrap_err();
        let ProfileError::UnknownVersion {
            platform,
            version,
            known,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(platform, "c10f");
        assert_eq!(version, "v1.25.3");
        assert_eq!(known.first().map(String::as_str), Some("v1.26.0"));
        assert_eq!(known.last().map(String::as_str), Some("v1.36.3"));
        let msg = err.to_string();
        assert!(msg.contains("1.26.0–1.26.15, 1.27.0–1.27.16"), "{msg}");
        assert!(msg.contains("1.36.0–1.36.3"), "{msg}");
        assert!(!msg.contains("1.26.3,"), "not compact: {msg}");

        // a patch newer than the table: the message says so
        let msg = builtin()
            .image_set("c10f", Some("1.36.4"), None)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("newer than the newest 1.36 patch") && msg.contains("v1.36.3"),
            "{msg}"
        );
        assert!(matches!(
            builtin().image_set("c10f", Some("latest"), None),
            Err(ProfileError::UnknownVersion { .. })
        ));
    }

    #[test]
    fn every_platform_and_version_yields_a_valid_set() {
        let p = builtin();
        let names: Vec<&str> = p.platforms().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alt", "c10f", "p10", "p11", "sisyphus"]);
        let mut checked = 0;
        for platform in p.platforms().filter(|p| p.kind == PlatformKind::Kubernetes) {
            let versions = platform.versions();
            assert_eq!(
                versions.len(),
                16 + 17 + 16 + 16 + 15 + 15 + 14 + 14 + 11 + 8 + 4
            );
            assert!(versions.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(platform.default_version(), "v1.36.3");
            assert_eq!(platform.default_flannel(), Some("v0.26.7"));
            for v in versions {
                let set = p
                    .image_set(&platform.name, Some(&v.to_string()), None)
                    .unwrap();
                assert_eq!(set.images.len(), 9, "{}", v);
                for image in &set.images {
                    assert!(
                        crate::reference::Reference::parse(&image.name()).is_ok(),
                        "{}",
                        image.name()
                    );
                    assert!(image.repository.starts_with(&format!("{}/", platform.name)));
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 4 * 146);
    }

    #[test]
    fn default_version_is_the_newest() {
        let set = builtin().image_set("p10", None, None).unwrap();
        assert_eq!(set.kube_version, "v1.36.3");
        assert_eq!(set.flannel_tag.as_deref(), Some("v0.26.7"));
        assert_eq!(
            set.flannel_cni_plugin_tag.as_deref(),
            Some("v1.6.2-flannel1")
        );
        // a minor stands for its newest patch
        let set = builtin().image_set("p10", Some("1.30"), None).unwrap();
        assert_eq!(set.kube_version, "v1.30.14");
    }

    #[test]
    fn flannel_table() {
        let p = builtin();
        assert_eq!(p.flannel_cni_plugin("v0.26.7").unwrap(), "v1.6.2-flannel1");
        assert_eq!(p.flannel_cni_plugin("v0.22.0").unwrap(), "v1.1.2");
        assert_eq!(p.flannel_cni_plugin("v0.25.5").unwrap(), "v1.5.1-flannel1");
        assert_eq!(p.flannel_cni_plugin("v0.28.9").unwrap(), "v1.9.1-flannel3");
        let set = p
            .image_set("c10f", Some("v1.26.9"), Some("0.22.0"))
            .unwrap();
        assert_eq!(set.flannel_tag.as_deref(), Some("v0.22.0"));
        assert_eq!(tag_of(&set, "flannel"), "v0.22.0");
        assert_eq!(tag_of(&set, "flannel-cni-plugin"), "v1.1.2");

        let err = p.image_set("c10f", None, Some("v0.18.1")).unwrap_err();
        assert!(matches!(err, ProfileError::UnknownFlannel { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("v0.19.0–v0.20.2") && msg.contains("v0.28.9"),
            "{msg}"
        );
        assert!(p.flannel_cni_plugin("v0.29.0").is_err());
        assert!(p.flannel_cni_plugin("latest").is_err());
    }

    #[test]
    fn base_platform_versions_are_branches() {
        let p = builtin();
        let set = p.image_set("alt", Some("p10"), None).unwrap();
        assert_eq!(set.kind, PlatformKind::Base);
        assert_eq!(set.names(), ["alt/alt:p10", "alt/distroless-base:p10"]);
        assert_eq!(set.kube_version, "p10");
        assert_eq!(set.flannel_tag, None);
        assert_eq!(p.image_set("alt", None, None).unwrap().kube_version, "p11");
        // a kubernetes platform (or alias) stands for its base branch
        assert_eq!(
            p.image_set("alt", Some("k8s-c10f2"), None)
                .unwrap()
                .kube_version,
            "c10f2"
        );
        assert_eq!(
            p.image_set("alt", Some("c10f"), None).unwrap().kube_version,
            "c10f2"
        );
        let err = p.image_set("alt", Some("p9"), None).unwrap_err();
        assert!(
            err.to_string().contains("c10f2, p10, p11, sisyphus"),
            "{err}"
        );
        assert!(matches!(
            p.image_set("alt", None, Some("v0.26.7")),
            Err(ProfileError::NotApplicable { .. })
        ));
        assert!(p.platform("alt").unwrap().versions().is_empty());
    }

    #[test]
    fn kube_version_parsing() {
        let v: KubeVersion = "v1.26.9".parse().unwrap();
        assert_eq!(v, KubeVersion::new(1, 26, 9));
        assert_eq!("1.26.9".parse::<KubeVersion>().unwrap(), v);
        assert_eq!(v.to_string(), "v1.26.9");
        for bad in [
            "1.26",
            "v1.26.9.1",
            "1.26.09",
            "v1.26.9-rc.0",
            "",
            "v",
            "1..9",
            "+1.2.3",
        ] {
            assert!(bad.parse::<KubeVersion>().is_err(), "{bad:?} accepted");
        }
        assert!(KubeVersion::new(1, 28, 10) > KubeVersion::new(1, 28, 9));
        assert!(KubeVersion::new(1, 3, 0) < KubeVersion::new(1, 26, 0));
    }

    #[test]
    fn tags_sort_as_versions() {
        let tags = strings(&[
            "v1.28.9",
            "latest",
            "v1.28.10",
            "v1.28.10-rc.1",
            "v1.27.16",
            "v1.28.2",
        ]);
        assert_eq!(
            sort_tags_as_versions(&tags),
            strings(&[
                "latest",
                "v1.27.16",
                "v1.28.2",
                "v1.28.9",
                "v1.28.10-rc.1",
                "v1.28.10"
            ])
        );
        assert_eq!(newest_in_minor(&tags, (1, 28)).as_deref(), Some("v1.28.10"));
        assert_eq!(newest_in_minor(&tags, (1, 27)).as_deref(), Some("v1.27.16"));
        assert_eq!(newest_in_minor(&tags, (1, 29)), None);
        // a pre-release only when nothing else is there
        let tags = strings(&["v1.29.0-rc.2", "v1.29.0-rc.10", "v1.29.0-alpha.1"]);
        assert_eq!(
            newest_in_minor(&tags, (1, 29)).as_deref(),
            Some("v1.29.0-rc.10")
        );
        let tags = strings(&["v1.29.1-rc.0", "v1.29.0"]);
        assert_eq!(newest_in_minor(&tags, (1, 29)).as_deref(), Some("v1.29.0"));
        // etcd-style tags are all suffixed: still sorted numerically
        let tags = strings(&["3.5.9-0", "3.5.10-0", "3.5.6-0"]);
        assert_eq!(newest_in_minor(&tags, (3, 5)).as_deref(), Some("3.5.10-0"));
    }

    #[test]
    fn compact_ranges() {
        let v = |p| KubeVersion::new(1, 26, p);
        assert_eq!(
            compact_versions(&[v(0), v(1), v(2), v(5), KubeVersion::new(1, 27, 0)]),
            "1.26.0–1.26.2, 1.26.5, 1.27.0"
        );
    }

    const KUBEADM: &str = r#"kubeadm = [
  { minor = "1.26", patches = "0-9", pause = "3.9", etcd = "3.5.6-0", coredns = "v1.9.3" },
  { minor = "1.27", patches = "0-1", pause = "3.9", etcd = "3.5.7-0", coredns = "v1.10.1" },
]
[flannel]
default = "v0.26.7"
cni_plugin = [{ from = "v0.26.4", to = "v0.26.7", plugin = "v1.6.2-flannel1" }]
"#;

    fn load(platform: &str) -> Result<Profiles, ProfileError> {
        Profiles::from_files([("shared.toml", KUBEADM), ("platform.toml", platform)])
    }

    #[test]
    fn profile_strings_are_validated() {
        let good = "[[platform]]\nname = \"x\"\nkind = \"kubernetes\"\ndescription = \"d\"\n";
        assert!(load(good).is_ok());
        for bad in [
            good.replace("name = \"x\"", "name = \"../x\""),
            good.replace("name = \"x\"", "name = \"a/b\""),
            good.replace("name = \"x\"", "name = \"X\""),
            format!("{good}aliases = [\"..\"]\n"),
            format!("{good}legacy_prefixes = [\"k8s/../../etc\"]\n"),
            format!("{good}registry = \"evil/path\"\n"),
            good.replace("description = \"d\"", "description = \"a\\u001b[2Jb\""),
            format!("{good}unknown_key = 1\n"),
            format!("{good}flannel = \"v0.1.0\"\n"),
            format!("{good}kube_versions = \">=1.40\"\n"),
            format!("{good}images = [\"alt\"]\n"),
        ] {
            let err = load(&bad).expect_err(&bad);
            assert!(matches!(err, ProfileError::Invalid { .. }), "{err:?}");
        }
        let err = load(&good.replace("name = \"x\"", "name = \"../x\"")).unwrap_err();
        assert!(err.to_string().contains("platform name \"../x\""), "{err}");
        let base = "[[platform]]\nname = \"b\"\nkind = \"base\"\ndescription = \"d\"\nbranches = [\"p10\"]\n";
        assert!(load(&format!("{base}images = [\"alt\"]\n")).is_ok());
        for images in ["[\"../x\"]", "[\"a//b\"]", "[]"] {
            assert!(
                load(&format!("{base}images = {images}\n")).is_err(),
                "{images}"
            );
        }
        let err = load(&format!("{base}images = [\"alt\"]\n").replace("\"p10\"", "\"../p10\""))
            .unwrap_err();
        assert!(err.to_string().contains("branch"), "{err}");
    }

    #[test]
    fn kubeadm_rows_are_validated() {
        let platform = "[[platform]]\nname = \"x\"\nkind = \"kubernetes\"\ndescription = \"d\"\n";
        let row = |s: &str| format!("kubeadm = [{s}]\n");
        for bad in [
            // overlaps the shared 1.26.0-9 row
            row(
                r#"{ minor = "1.26", patches = "9-10", pause = "3.9", etcd = "3.5.9-0", coredns = "v1.9.3" }"#,
            ),
            // leaves 1.26.10 out
            row(
                r#"{ minor = "1.26", patches = "11", pause = "3.9", etcd = "3.5.9-0", coredns = "v1.9.3" }"#,
            ),
            row(
                r#"{ minor = "1.28", patches = "0-2", pause = "../3.9", etcd = "3.5.9-0", coredns = "v1.9.3" }"#,
            ),
            row(
                r#"{ minor = "1.28", patches = "5-2", pause = "3.9", etcd = "3.5.9-0", coredns = "v1.9.3" }"#,
            ),
            row(
                r#"{ minor = "v1.28", patches = "0", pause = "3.9", etcd = "3.5.9-0", coredns = "v1.9.3" }"#,
            ),
        ] {
            let text = format!("{bad}{platform}");
            assert!(load(&text).is_err(), "{text}");
        }
        // adding a patch is one line
        let extra = row(
            r#"{ minor = "1.26", patches = "10", pause = "3.9", etcd = "3.5.9-0", coredns = "v1.9.3" }"#,
        );
        let p = load(&format!("{extra}{platform}")).unwrap();
        let set = p.image_set("x", Some("v1.26.10"), None).unwrap();
        assert_eq!(tag_of(&set, "etcd"), "3.5.9-0");
    }

    #[test]
    fn kube_versions_restricts_a_platform() {
        let platform = |req: &str| {
            format!("[[platform]]\nname = \"x\"\nkind = \"kubernetes\"\ndescription = \"d\"\nkube_versions = \"{req}\"\n")
        };
        let p = load(&platform(">=1.27")).unwrap();
        assert_eq!(
            p.platform("x").unwrap().versions(),
            [KubeVersion::new(1, 27, 0), KubeVersion::new(1, 27, 1)]
        );
        let p = load(&platform("=1.26.6 || =1.26.9")).unwrap();
        let x = p.platform("x").unwrap();
        assert_eq!(
            x.versions(),
            [KubeVersion::new(1, 26, 6), KubeVersion::new(1, 26, 9)]
        );
        assert_eq!(x.default_version(), "v1.26.9");
        assert!(p.image_set("x", Some("v1.26.7"), None).is_err());
        let p = load(&platform("<=1.26, >1.26.7")).unwrap();
        assert_eq!(p.platform("x").unwrap().version_summary(), "1.26.8–1.26.9");
        assert!(load(&platform(">=1.26.x")).is_err());
    }

    #[test]
    fn names_and_legacy_prefixes_are_unique() {
        let two = "[[platform]]\nname = \"a\"\nkind = \"kubernetes\"\ndescription = \"d\"\naliases = [\"k8s-a\"]\n\
                   [[platform]]\nname = \"b\"\nkind = \"kubernetes\"\ndescription = \"d\"\n";
        assert!(load(two).is_ok());
        assert!(load(&two.replace("\"k8s-a\"", "\"b\"")).is_err());
        // a legacy prefix pointing into another platform's namespace
        assert!(load(&format!("{two}legacy_prefixes = [\"a\"]\n")).is_err());
        assert!(load(&format!("{two}legacy_prefixes = [\"k8s-a\"]\n")).is_err());
        assert!(load(&format!("{two}legacy_prefixes = [\"k8s-b\"]\n")).is_ok());
    }

    #[test]
    fn load_dir_overlays_the_builtin_files() {
        let dir = tempfile::tempdir().unwrap();
        // one more patch, without touching the embedded kubeadm.toml
        std::fs::write(
            dir.path().join("local.toml"),
            r#"kubeadm = [{ minor = "1.36", patches = "4", pause = "3.10.2", etcd = "3.6.8-0", coredns = "v1.14.2" }]"#,
        )
        .unwrap();
        // an emptied file removes a platform
        std::fs::write(dir.path().join("p10.toml"), "").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a profile").unwrap();
        let p = Profiles::load_dir(dir.path()).unwrap();
        assert_eq!(p.platform("c10f").unwrap().default_version(), "v1.36.4");
        assert!(p.platform("p10").is_err());

        std::fs::write(
            dir.path().join("bad.toml"),
            "[[platform]]\nname = \"../x\"\nkind = \"base\"\ndescription = \"\"\n",
        )
        .unwrap();
        let err = Profiles::load_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("bad.toml"), "{err}");
        assert!(matches!(
            Profiles::load_dir(&dir.path().join("missing")),
            Err(ProfileError::Io { .. })
        ));
    }
}
