//! Planning a build: the image set of a selection (profile, Kubernetes version,
//! flannel tag), the images to pull for it, and podsec's
//! U7S_SETAVAILABLEIMAGES substitution of missing tags. Used by `plan` (to show
//! it) and `build` (to do it); a library module so neither command imports the
//! other.

use crate::profile::{self, ImageSet, KubeVersion, ProfileError, Profiles};
use crate::pull;
use crate::reference::{Reference, ReferenceError};
use crate::registry::{Client, RegistryError};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The requested version is not a version (only with `set_available`).
    #[error("--kube-version")]
    KubeVersion(#[source] ProfileError),
    #[error(
        "the profile knows no kubernetes {major}.{minor} release to take pause/etcd/coredns from"
    )]
    NoBaseRelease { major: u64, minor: u64 },
    #[error("image {name} from the profile")]
    Reference {
        name: String,
        #[source]
        source: ReferenceError,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("listing the tags of {repository}")]
    ListTags {
        repository: String,
        #[source]
        source: RegistryError,
    },
}

/// One image to pull: its bundle name and where it comes from.
#[derive(Clone, Debug)]
pub struct Planned {
    pub name: String,
    pub role: Option<String>,
    pub source: Reference,
    pub preserve: bool,
}

/// The image set for a selection. With `set_available` and a version the
/// profile does not know, the newest known patch of the same minor supplies
/// pause/etcd/coredns and the kube-* images carry the requested version (their
/// tags are then looked up on the source, see [`substitute_missing`]).
pub fn image_set(
    profiles: &Profiles,
    platform: &str,
    kube_version: Option<&str>,
    flannel_tag: Option<&str>,
    set_available: bool,
) -> Result<ImageSet, PlanError> {
    match profiles.image_set(platform, kube_version, flannel_tag) {
        Ok(s) => Ok(s),
        Err(ProfileError::UnknownVersion { .. }) if set_available => {
            let wanted: KubeVersion = kube_version
                .unwrap_or_default()
                .parse()
                .map_err(PlanError::KubeVersion)?;
            let base = profiles
                .platform(platform)?
                .versions()
                .into_iter()
                .filter(|v| v.major == wanted.major && v.minor == wanted.minor)
                .max()
                .ok_or(PlanError::NoBaseRelease {
                    major: wanted.major,
                    minor: wanted.minor,
                })?;
            let mut set = profiles.image_set(platform, Some(&base.to_string()), flannel_tag)?;
            for img in &mut set.images {
                if img.tag == set.kube_version {
                    img.tag = wanted.to_string();
                }
            }
            set.kube_version = wanted.to_string();
            Ok(set)
        }
        Err(e) => Err(e.into()),
    }
}

/// The images of a set, each pulled from `source`/name.
pub fn planned_images(set: &ImageSet, source: &str) -> Result<Vec<Planned>, PlanError> {
    set.images
        .iter()
        .map(|img| {
            let name = img.name();
            let source = Reference::parse(&format!("{source}/{name}")).map_err(|source| {
                PlanError::Reference {
                    name: name.clone(),
                    source,
                }
            })?;
            Ok(Planned {
                name,
                role: Some(img.role.clone()),
                source,
                preserve: false,
            })
        })
        .collect()
}

/// podsec's U7S_SETAVAILABLEIMAGES: for an image whose tag is missing on the
/// source, pull the newest tag of the same minor (sorted as versions) and name
/// it as expected. Returns a note per substitution.
pub fn substitute_missing(
    client: &Client,
    planned: &mut [Planned],
) -> Result<Vec<String>, PlanError> {
    let mut notes = Vec::new();
    for p in planned.iter_mut() {
        let tag = p.source.tag.clone().unwrap_or_default();
        if client.head_manifest(&p.source.repository, &tag)?.is_some() {
            continue;
        }
        let Ok(v) = tag.parse::<profile::KubeVersion>() else {
            continue;
        };
        let tags = match client.list_tags(&p.source.repository) {
            Ok(t) => t,
            // No such repository: leave the image as it is; resolving it later
            // fails and names it.
            Err(RegistryError::NotFound { .. }) => continue,
            Err(source) => {
                return Err(PlanError::ListTags {
                    repository: p.source.repository.clone(),
                    source,
                })
            }
        };
        if let Some(newest) = profile::newest_in_minor(&tags, (v.major, v.minor)) {
            notes.push(format!(
                "{}: tag {tag} is not on {}; using {newest} (same minor, newest)",
                p.name,
                client.host()
            ));
            p.source.tag = Some(newest);
        }
    }
    Ok(notes)
}

/// Bytes to download for one platform: manifest + config + compressed layers.
pub fn image_size(r: &pull::ResolvedImage) -> u64 {
    r.manifest_bytes.len() as u64
        + r.manifest.config.size
        + r.manifest.layers.iter().map(|l| l.size).sum::<u64>()
}
