//! Freshness: an older bundle does not roll this host's tags back, and a
//! bundle past its signed `expires` is not loaded.
//!
//! A signature proves who made a bundle, not that it is current: an old bundle
//! signed by the same key would re-point every tag to the images it carries.
//! So `load` keeps, in its state directory, a record of which bundle set each
//! tag to which digest (`tags.json`), and before the first tag is set it
//! compares the bundle with the one that set each tag it would move. Moving a
//! tag back needs `--allow-downgrade`, and every tag that moves is named.
//!
//! A tag the record does not explain (none recorded, or the registry holds
//! another digest than the one recorded: podsec or a person set it) has no
//! bundle to compare with; it is re-pointed and named as set outside
//! u7s-bundle, since refusing would leave a host that was never loaded by us
//! unable to take its first bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::bundle::BundleManifest;
use crate::digest::Digest;
use crate::fsutil;
use crate::profile::KubeVersion;
use crate::push::{PushName, Repointed};
use crate::registry::{Client, RegistryError};

/// The tag record in the state directory.
pub const TAGS_FILE: &str = "tags.json";
const RECORD_FORMAT: &str = "u7s-bundle-tags";
const RECORD_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum FreshnessError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a tag record (remove it to start a new one)")]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("reading the tag {tag}")]
    Registry {
        tag: String,
        #[source]
        source: RegistryError,
    },
    /// Loading would move tags back to an older bundle's images.
    #[error("{}", downgrade_message(.bundle, .tags))]
    Downgrade {
        bundle: String,
        tags: Vec<Replacement>,
    },
    #[error("the bundle expired at {expires} (created {created}): build a new one")]
    Expired { expires: String, created: String },
    #[error("{0:?} is not a validity: give a number of days, weeks or hours (90d, 12w, 36h)")]
    BadValidity(String),
}

impl FreshnessError {
    /// The bundle is refused as not current (as opposed to trouble reading
    /// the record or the registry).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Downgrade { .. } | Self::Expired { .. })
    }
}

fn downgrade_message(bundle: &str, tags: &[Replacement]) -> String {
    let mut s = format!(
        "{bundle} is older than the bundle that set {} tag(s); nothing was tagged. \
         To move them back anyway, give --allow-downgrade:",
        tags.len()
    );
    for t in tags {
        s.push_str(&format!("\n  {}", t.describe()));
    }
    s
}

/// Which bundle: enough to compare it with another and to name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleId {
    /// sha256 of bundle.json: the bundle itself, whatever its file is called.
    pub digest: Digest,
    /// RFC 3339, as signed in bundle.json (empty for a podsec archive).
    pub created: String,
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_version: Option<String>,
    pub arch: String,
}

impl BundleId {
    pub fn of(m: &BundleManifest, raw_manifest: &[u8]) -> BundleId {
        BundleId {
            digest: Digest::of(raw_manifest),
            created: m.created.clone(),
            platform: m.platform.clone(),
            kube_version: m.kube_version.clone(),
            arch: m.arch.clone(),
        }
    }

    /// `bundle c10f v1.26.9 amd64 of 2026-12-01T10:00:00Z (sha256:…)`.
    pub fn describe(&self) -> String {
        let version = self
            .kube_version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        let created = if self.created.is_empty() {
            "of unknown date".to_string()
        } else {
            format!("of {}", self.created)
        };
        format!(
            "bundle {}{version} {} {created} ({})",
            self.platform, self.arch, self.digest
        )
    }

    fn created_at(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.created, &Rfc3339).ok()
    }

    fn version(&self) -> Option<KubeVersion> {
        self.kube_version.as_deref()?.parse().ok()
    }
}

/// Whether `ours` may replace what `setter` set; `Err(why)` when it is older.
///
/// Older means: a lower kubernetes version (numeric order, v1.26.10 >
/// v1.26.9), or created earlier. Both are signed in bundle.json. A bundle with
/// no creation time (a podsec archive) cannot show it is newer than one with
/// one; a setter with none has no claim to defend.
pub fn not_older(ours: &BundleId, setter: &BundleId) -> Result<(), String> {
    if ours.digest == setter.digest {
        return Ok(());
    }
    if let (Some(a), Some(b)) = (ours.version(), setter.version()) {
        if a < b {
            return Err(format!("kubernetes {a} is older than {b}"));
        }
    }
    match (ours.created_at(), setter.created_at()) {
        (Some(a), Some(b)) if a < b => Err(format!(
            "created {} is before {}",
            ours.created, setter.created
        )),
        (None, Some(_)) => Err("it carries no creation time to compare".into()),
        _ => Ok(()),
    }
}

/// What set one tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagEntry {
    /// The manifest digest the tag was set to (as pushed).
    pub digest: Digest,
    /// The image's manifest digest in the bundle (equal to `digest` unless
    /// load compressed the layers): the same image whatever the options.
    pub bundle_manifest: Digest,
    pub bundle: BundleId,
    /// RFC 3339 time of the load.
    pub set_at: String,
}

/// `<state-dir>/tags.json`: every tag a load set, keyed by
/// `registry/repository:tag`, with the bundle that set it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRecord {
    pub format: String,
    pub version: u32,
    pub tags: BTreeMap<String, TagEntry>,
}

impl TagRecord {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(TAGS_FILE)
    }

    /// The record in `state_dir`; an empty one if there is none yet.
    pub fn read(state_dir: &Path) -> Result<TagRecord, FreshnessError> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(b) => {
                let r: TagRecord = serde_json::from_slice(&b)
                    .map_err(|source| FreshnessError::Format { path, source })?;
                Ok(r)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TagRecord {
                format: RECORD_FORMAT.into(),
                version: RECORD_VERSION,
                tags: BTreeMap::new(),
            }),
            Err(source) => Err(FreshnessError::Io { path, source }),
        }
    }

    pub fn write(&self, state_dir: &Path) -> Result<(), FreshnessError> {
        let path = Self::path(state_dir);
        let mut bytes = serde_json::to_vec_pretty(self).expect("serializable");
        bytes.push(b'\n');
        fsutil::create_dir_all_mode(state_dir, 0o755)
            .and_then(|()| fsutil::write_atomic(&path, &bytes, 0o644))
            .map_err(|source| FreshnessError::Io { path, source })
    }

    /// The bundle that set `identity` to `current`, if the record explains it.
    fn setter(&self, identity: &str, current: &Digest) -> Option<&TagEntry> {
        self.tags.get(identity).filter(|e| &e.digest == current)
    }
}

/// One tag a load moves from one digest to another, and why it may.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replacement {
    /// `registry/repository:tag`
    pub name: String,
    pub old: Digest,
    pub new: Digest,
    /// The bundle that set `old`; `None`: set outside u7s-bundle.
    pub set_by: Option<BundleId>,
    /// Why the bundle loaded is older than `set_by` (allowed with
    /// --allow-downgrade).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downgrade: Option<String>,
}

impl Replacement {
    /// `reg/c10f/pause:3.9 sha256:a… → sha256:b… (set by …)`.
    pub fn describe(&self) -> String {
        let by = match &self.set_by {
            Some(b) => format!("set by {}", b.describe()),
            None => "set outside u7s-bundle".into(),
        };
        let why = self
            .downgrade
            .as_deref()
            .map(|w| format!("; a downgrade: {w}"))
            .unwrap_or_default();
        format!("{} {} → {} ({by}{why})", self.name, self.old, self.new)
    }
}

/// A tag the bundle will set, as it stands before the load.
pub struct TagState<'a> {
    pub identity: String,
    /// The registry's digest for the tag now; `None`: no such tag.
    pub current: Option<Digest>,
    /// The bundle's manifest for the image.
    pub bundle_manifest: &'a Digest,
}

/// The digest each name's tag points at now, in the order of `names`.
pub fn current_tags(
    client: &Client,
    names: &[PushName],
) -> Result<Vec<Option<Digest>>, FreshnessError> {
    names
        .iter()
        .map(|n| {
            client
                .head_manifest(&n.repository, &n.tag)
                .map_err(|source| FreshnessError::Registry {
                    tag: format!("{}:{}", n.repository, n.tag),
                    source,
                })
        })
        .collect()
}

/// The check before any tag is set: the tags that an older bundle would move
/// away from what a newer one set. `Err(Downgrade)` lists them all unless
/// `allow_downgrade`; `Ok` holds them (allowed downgrades) for the report.
pub fn check(
    record: &TagRecord,
    bundle: &BundleId,
    tags: &[TagState<'_>],
    allow_downgrade: bool,
) -> Result<Vec<Replacement>, FreshnessError> {
    let mut older = Vec::new();
    for t in tags {
        let Some(current) = &t.current else { continue };
        let Some(entry) = record.setter(&t.identity, current) else {
            continue;
        };
        // The same image (perhaps compressed otherwise): nothing goes back.
        if current == t.bundle_manifest || &entry.bundle_manifest == t.bundle_manifest {
            continue;
        }
        if let Err(why) = not_older(bundle, &entry.bundle) {
            older.push(Replacement {
                name: t.identity.clone(),
                old: current.clone(),
                new: t.bundle_manifest.clone(),
                set_by: Some(entry.bundle.clone()),
                downgrade: Some(why),
            });
        }
    }
    if older.is_empty() || allow_downgrade {
        Ok(older)
    } else {
        Err(FreshnessError::Downgrade {
            bundle: bundle.describe(),
            tags: older,
        })
    }
}

/// What a load's `tag_all` did, for the record.
pub struct Tagged<'a> {
    pub registry: &'a str,
    pub manifest: &'a BundleManifest,
    pub names: &'a [PushName],
    /// Per image of the bundle, the manifest digest as pushed.
    pub digests: &'a [Digest],
    pub repointed: &'a [Repointed],
}

/// After tagging: what moved, named (old → new, and who had set the old
/// digest), and the record updated. An entry is replaced when the tag moved
/// or the bundle is not older than its setter, so an old bundle that happens
/// to carry the same image does not become the setter a middle one is then
/// compared with.
pub fn after_tagging(
    record: &mut TagRecord,
    bundle: &BundleId,
    t: &Tagged<'_>,
    allowed: &[Replacement],
) -> Vec<Replacement> {
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let mut out = Vec::new();
    for r in t.repointed {
        let n = &t.names[r.name];
        let identity = n.identity(t.registry);
        let set_by = record.setter(&identity, &r.old).map(|e| e.bundle.clone());
        let downgrade = allowed
            .iter()
            .find(|a| a.name == identity)
            .and_then(|a| a.downgrade.clone());
        out.push(Replacement {
            name: identity,
            old: r.old.clone(),
            new: r.new.clone(),
            set_by,
            downgrade,
        });
    }
    for n in t.names {
        let identity = n.identity(t.registry);
        let digest = &t.digests[n.image];
        let moved = record
            .tags
            .get(&identity)
            .is_none_or(|e| &e.digest != digest);
        let keep = record
            .tags
            .get(&identity)
            .is_some_and(|e| !moved && not_older(bundle, &e.bundle).is_err());
        if keep {
            continue;
        }
        record.tags.insert(
            identity,
            TagEntry {
                digest: digest.clone(),
                bundle_manifest: t.manifest.images[n.image].manifest.clone(),
                bundle: bundle.clone(),
                set_at: now.clone(),
            },
        );
    }
    out
}

/// The freshness check of one load: made before the first blob is pushed,
/// committed after the tags are set.
pub struct Guard {
    record: TagRecord,
    bundle: BundleId,
    /// Downgrades let through by --allow-downgrade.
    allowed: Vec<Replacement>,
}

impl Guard {
    /// Read the record and the registry's tags; refuse a downgrade unless
    /// `allow_downgrade`.
    pub fn check(
        state_dir: &Path,
        client: &Client,
        m: &BundleManifest,
        raw_manifest: &[u8],
        names: &[PushName],
        allow_downgrade: bool,
    ) -> Result<Guard, FreshnessError> {
        let record = TagRecord::read(state_dir)?;
        let bundle = BundleId::of(m, raw_manifest);
        let registry = client.host();
        let states: Vec<TagState<'_>> = names
            .iter()
            .zip(current_tags(client, names)?)
            .map(|(n, current)| TagState {
                identity: n.identity(registry),
                current,
                bundle_manifest: &m.images[n.image].manifest,
            })
            .collect();
        let allowed = check(&record, &bundle, &states, allow_downgrade)?;
        Ok(Guard {
            record,
            bundle,
            allowed,
        })
    }

    /// After `tag_all`: the tags that moved, named; the record written
    /// (not in a dry run).
    pub fn commit(
        mut self,
        state_dir: &Path,
        tagged: &Tagged<'_>,
        dry_run: bool,
    ) -> Result<Vec<Replacement>, FreshnessError> {
        let out = after_tagging(&mut self.record, &self.bundle, tagged, &self.allowed);
        if !dry_run {
            self.record.write(state_dir)?;
        }
        Ok(out)
    }
}

// ------------------------------------------------------------------ expiry

/// `90d`, `12w`, `36h` → that many seconds.
pub fn parse_validity(s: &str) -> Result<i64, FreshnessError> {
    let bad = || FreshnessError::BadValidity(s.to_string());
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let secs = match unit {
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Err(bad()),
    };
    if n <= 0 {
        return Err(bad());
    }
    // A thousand years is long enough; beyond, time's range ends.
    n.checked_mul(secs)
        .filter(|s| *s <= 1000 * 365 * 86_400)
        .ok_or_else(bad)
}

/// `created` + `validity` seconds, in RFC 3339 (what bundle.json's `expires` holds).
pub fn expires_at(created_unix: i64, validity_secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(created_unix.saturating_add(validity_secs))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".into())
}

/// Refuse a bundle whose `expires` is past at `now`. A bundle without one
/// (older u7s-bundle, or built without --expires) makes no such statement.
pub fn check_expiry(m: &BundleManifest, now: OffsetDateTime) -> Result<(), FreshnessError> {
    let Some(expires) = &m.expires else {
        return Ok(());
    };
    // Validated as RFC 3339 when bundle.json was parsed.
    let at = OffsetDateTime::parse(expires, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    if now >= at {
        return Err(FreshnessError::Expired {
            expires: expires.clone(),
            created: m.created.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
