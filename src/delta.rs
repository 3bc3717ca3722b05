//! Deltas: bundles that leave out the layers the isolated registry already has.
//!
//! The round trip: `inventory` on the isolated host lists what its registry
//! holds (a small JSON file carried back); `build --base` leaves out every
//! layer that base holds and lists them in bundle.json's `delta` (so the
//! bundle signature covers exactly what was left out); `load` checks, before
//! reading any layer, that every left-out layer is in each repository that
//! will use it — mounting it from another repository of the registry when
//! the base saw it there — and otherwise refuses, naming them, nothing
//! tagged. The base is only a hint: a wrong one makes a delta that no
//! registry accepts, never one that loads half.
//!
//! Only layers are left out. Manifests and configs are kilobytes, and `load`
//! needs their bytes (it pushes configs and manifests under new names).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::bundle::assemble::Assembled;
use crate::bundle::model::{BlobKind, BundleManifest, Delta, OmittedBlob};
use crate::bundle::reader;
use crate::bundle::volumes::Input;
use crate::digest::Digest;
use crate::oci::{self, Fetched};
use crate::push::PushName;
use crate::registry::{Client, Mount, RegistryError};

pub const INVENTORY_FORMAT: &str = "u7s-inventory";
pub const INVENTORY_VERSION: u32 = 1;
/// An inventory larger than this is refused (one of 10 000 images is ~2 MB).
const MAX_BASE_JSON: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("{registry}: {source}")]
    Registry {
        registry: String,
        #[source]
        source: RegistryError,
    },
    #[error("{path}: not an inventory, bundle.json or bundle: {why}")]
    BadBase { path: String, why: String },
    #[error("the registry lacks {} layer(s) this delta leaves out: {}; load the full bundle, or build the delta against an inventory of this registry (`u7s-bundle inventory`)", .0.len(), list(.0))]
    Missing(Vec<(Digest, Vec<String>)>),
    #[error("a delta cannot be loaded with --layer-compression: the compressed digests of the layers it leaves out are unknown")]
    Compression,
}

fn list(v: &[(Digest, Vec<String>)]) -> String {
    let mut s: Vec<String> = v
        .iter()
        .take(10)
        .map(|(d, r)| match r.len() {
            0..=2 => format!("{d} (for {})", r.join(", ")),
            n => format!("{d} (for {}, {} and {} more)", r[0], r[1], n - 2),
        })
        .collect();
    if v.len() > 10 {
        s.push(format!("and {} more", v.len() - 10));
    }
    s.join(", ")
}

/// What a registry holds: written by `inventory`, read by `build --base`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub format: String,
    pub format_version: u32,
    pub registry: String,
    pub created: String,
    /// `repo:tag` → manifest digest (what the tag points at).
    pub images: Vec<InventoryImage>,
    /// Every manifest (image manifests and indexes) reached from a tag.
    pub manifests: Vec<Digest>,
    /// Every config and layer those manifests name, with the repositories
    /// holding it.
    pub blobs: Vec<InventoryBlob>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryImage {
    pub name: String,
    pub manifest: Digest,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryBlob {
    pub digest: Digest,
    pub size: u64,
    pub repositories: Vec<String>,
}

/// List `client`'s registry: catalog, each repository's tags, each tag's
/// manifest (and an index's manifests).
pub fn take_inventory(client: &Client, created: String) -> Result<Inventory, DeltaError> {
    let host = client.host().to_string();
    let err = |source| DeltaError::Registry {
        registry: host.clone(),
        source,
    };
    let mut images = Vec::new();
    let mut manifests = BTreeSet::new();
    let mut blobs: BTreeMap<Digest, (u64, BTreeSet<String>)> = BTreeMap::new();
    for repo in client.catalog().map_err(err)? {
        let tags = match client.list_tags(&repo) {
            Ok(t) => t,
            // Listed, but emptied since: nothing to record.
            Err(RegistryError::NotFound { .. }) => continue,
            Err(e) => return Err(err(e)),
        };
        for tag in tags {
            let m = client.get_manifest(&repo, &tag).map_err(err)?;
            images.push(InventoryImage {
                name: format!("{repo}:{tag}"),
                manifest: m.digest.clone(),
            });
            let mut queue = vec![m];
            while let Some(m) = queue.pop() {
                if !manifests.insert(m.digest.clone()) {
                    continue;
                }
                match oci::parse_manifest(&m.bytes, Some(&m.media_type)) {
                    Ok((Fetched::Image(img), _)) => {
                        for d in std::iter::once(&img.config).chain(&img.layers) {
                            let e = blobs.entry(d.digest.clone()).or_default();
                            e.0 = d.size;
                            e.1.insert(repo.clone());
                        }
                    }
                    Ok((Fetched::Index(ix), _)) => {
                        for d in ix.manifests {
                            match client.get_manifest(&repo, &d.digest.to_string()) {
                                Ok(c) => queue.push(c),
                                // An index whose platforms were not all copied.
                                Err(RegistryError::NotFound { .. }) => {}
                                Err(e) => return Err(err(e)),
                            }
                        }
                    }
                    // Something else under a tag (a signature, an artifact).
                    Err(_) => {}
                }
            }
        }
    }
    Ok(Inventory {
        format: INVENTORY_FORMAT.into(),
        format_version: INVENTORY_VERSION,
        registry: host,
        created,
        images,
        manifests: manifests.into_iter().collect(),
        blobs: blobs
            .into_iter()
            .map(|(digest, (size, repos))| InventoryBlob {
                digest,
                size,
                repositories: repos.into_iter().collect(),
            })
            .collect(),
    })
}

/// What a delta is built against: blobs the target has, and where.
pub struct Base {
    pub description: String,
    pub digest: Digest,
    pub blobs: BTreeMap<Digest, BTreeSet<String>>,
}

impl Base {
    /// An inventory, a bundle.json, a bundle, or a volume set's index or first volume.
    pub fn read(path: &Path) -> Result<Base, DeltaError> {
        let bad = |why: String| DeltaError::BadBase {
            path: path.display().to_string(),
            why,
        };
        let name = path.display().to_string();
        let mut head = [0u8; 1];
        let n = std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .map_err(|e| bad(e.to_string()))?;
        let is_json = n == 1 && head[0] == b'{';
        if is_json && !name.ends_with(".volumes.json") {
            let mut raw = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_BASE_JSON + 1).read_to_end(&mut raw))
                .map_err(|e| bad(e.to_string()))?;
            if raw.len() as u64 > MAX_BASE_JSON {
                return Err(bad("too large".into()));
            }
            if let Ok(inv) = serde_json::from_slice::<Inventory>(&raw) {
                if inv.format != INVENTORY_FORMAT || inv.format_version != INVENTORY_VERSION {
                    return Err(bad(format!("inventory format {:?}", inv.format)));
                }
                return Ok(Base::of_inventory(&inv, Digest::of(&raw)));
            }
            let m = BundleManifest::parse(&raw).map_err(|e| bad(e.to_string()))?;
            return Ok(Base::of_bundle(&m, Digest::of(&raw)));
        }
        let (m, raw) = read_bundle_json(path).map_err(bad)?;
        Ok(Base::of_bundle(&m, Digest::of(&raw)))
    }

    fn of_inventory(inv: &Inventory, digest: Digest) -> Base {
        Base {
            description: format!("inventory of {} ({})", inv.registry, inv.created),
            digest,
            blobs: inv
                .blobs
                .iter()
                .map(|b| (b.digest.clone(), b.repositories.iter().cloned().collect()))
                .collect(),
        }
    }

    /// A previous bundle: its blobs (and what it left out itself), in the
    /// repositories its images are loaded under.
    fn of_bundle(m: &BundleManifest, digest: Digest) -> Base {
        let mut blobs: BTreeMap<Digest, BTreeSet<String>> = BTreeMap::new();
        for n in crate::push::push_names(m, true) {
            let img = &m.images[n.image];
            for d in std::iter::once(&img.config).chain(&img.layers) {
                blobs
                    .entry(d.clone())
                    .or_default()
                    .insert(n.repository.clone());
            }
        }
        Base {
            description: format!("bundle {} ({})", m.file_stem(), m.created),
            digest,
            blobs,
        }
    }
}

/// bundle.json of a bundle file or volume set (its first entry only).
fn read_bundle_json(path: &Path) -> Result<(BundleManifest, Vec<u8>), String> {
    let input = Input::open(path, None, None).map_err(|e| e.to_string())?;
    let h = reader::read_header(input).map_err(|e| e.to_string())?;
    Ok((h.manifest, h.raw_manifest))
}

/// Leave out of `a` every layer `base` holds; returns the bytes saved.
pub fn leave_out(a: &mut Assembled, base: &Base) -> u64 {
    let mut omitted = Vec::new();
    a.blobs.retain(|b| {
        let hit = b.entry.kind == BlobKind::Layer && base.blobs.contains_key(&b.entry.digest);
        if hit {
            omitted.push(OmittedBlob {
                digest: b.entry.digest.clone(),
                size: b.entry.size,
                media_type: b.entry.media_type.clone(),
                repositories: base.blobs[&b.entry.digest].iter().cloned().collect(),
            });
        }
        !hit
    });
    let gone: BTreeSet<&Digest> = omitted.iter().map(|o| &o.digest).collect();
    a.manifest.blobs.retain(|b| !gone.contains(&b.digest));
    let saved = omitted.iter().map(|o| o.size).sum();
    a.manifest.delta = Some(Delta {
        base: base.description.clone(),
        base_digest: base.digest.clone(),
        omitted,
    });
    saved
}

/// What [`check_base_present`] found.
#[derive(Debug, Default, Serialize)]
pub struct BaseCheck {
    pub present: usize,
    pub mounted: usize,
}

/// Before any layer is read: every layer `m` leaves out must be in each
/// repository of `names` that uses it, or be mounted there from one that
/// has it (not in a dry run: there it must merely exist somewhere known).
pub fn check_base_present(
    client: &Client,
    m: &BundleManifest,
    names: &[PushName],
    dry_run: bool,
    compressing: bool,
) -> Result<BaseCheck, DeltaError> {
    let mut out = BaseCheck::default();
    let Some(delta) = &m.delta else {
        return Ok(out);
    };
    if compressing && !delta.omitted.is_empty() {
        return Err(DeltaError::Compression);
    }
    let err = |source| DeltaError::Registry {
        registry: client.host().to_string(),
        source,
    };
    let mut missing = Vec::new();
    for o in &delta.omitted {
        let mut need: Vec<&str> = names
            .iter()
            .filter(|n| m.images[n.image].layers.contains(&o.digest))
            .map(|n| n.repository.as_str())
            .collect();
        need.sort_unstable();
        need.dedup();
        let mut lacking = Vec::new();
        let mut source: Option<String> = None;
        for r in &need {
            if client.blob_size(r, &o.digest).map_err(err)?.is_some() {
                out.present += 1;
                source.get_or_insert_with(|| r.to_string());
            } else {
                lacking.push(*r);
            }
        }
        if lacking.is_empty() {
            continue;
        }
        if source.is_none() {
            for r in &o.repositories {
                if client.blob_size(r, &o.digest).map_err(err)?.is_some() {
                    source = Some(r.clone());
                    break;
                }
            }
        }
        let mut absent = Vec::new();
        for r in lacking {
            let Some(from) = &source else {
                absent.push(r.to_string());
                continue;
            };
            if dry_run {
                continue;
            }
            match client.mount_blob(r, from, &o.digest).map_err(err)? {
                Mount::Mounted => out.mounted += 1,
                Mount::Upload(loc) => {
                    client.cancel_upload(r, &loc);
                    absent.push(r.to_string());
                }
            }
        }
        if !absent.is_empty() {
            missing.push((o.digest.clone(), absent));
        }
    }
    if !missing.is_empty() {
        return Err(DeltaError::Missing(missing));
    }
    Ok(out)
}
