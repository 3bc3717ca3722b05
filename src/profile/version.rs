//! Version algebra: kubernetes/flannel releases, tags sorted as versions, and the
//! `kube_versions` restrictions of a platform.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::ProfileError;

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
pub(super) fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// `[v]X.Y` → (X, Y).
pub(super) fn parse_minor(s: &str) -> Option<(u64, u64)> {
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
pub(super) struct TagVersion<'a> {
    pub(super) version: KubeVersion,
    pub(super) pre: Option<&'a str>,
    pub(super) suffix: &'a str,
}

pub(super) fn tag_version(tag: &str) -> Option<TagVersion<'_>> {
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
pub(super) fn cmp_pre(a: &str, b: &str) -> Ordering {
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
pub(super) fn cmp_tags(a: &str, b: &str) -> Ordering {
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

/// bounds (`>=1.26, <1.33 || =1.34.2`). A bound without a patch compares the minor
/// only, so `<=1.32` includes every 1.32 patch.
#[derive(Debug, Clone)]
pub(super) struct VersionReq {
    pub(super) any_of: Vec<Vec<Bound>>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Bound {
    pub(super) op: Op,
    pub(super) minor: (u64, u64),
    pub(super) patch: Option<u64>,
}

impl VersionReq {
    pub(super) fn parse(s: &str) -> Result<VersionReq, String> {
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

    pub(super) fn matches(&self, v: &KubeVersion) -> bool {
        self.any_of
            .iter()
            .any(|all| all.iter().all(|b| b.matches(v)))
    }
}

impl Bound {
    pub(super) fn parse(term: &str) -> Result<Bound, String> {
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

    pub(super) fn matches(&self, v: &KubeVersion) -> bool {
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
