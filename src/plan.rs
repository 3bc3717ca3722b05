//! Planning a build: the image set of a selection (profile, Kubernetes version,
//! flannel tag), the images to pull for it, and podsec's
//! U7S_SETAVAILABLEIMAGES substitution of missing tags. Used by `plan` (to show
//! it) and `build` (to do it); a library module so neither command imports the
//! other.

use crate::profile::{self, ImageSet, KubeVersion, ProfileError, Profiles, SetOptions};
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
    opts: &SetOptions,
    set_available: bool,
) -> Result<ImageSet, PlanError> {
    match profiles.image_set_with(platform, opts) {
        Ok(s) => Ok(s),
        Err(ProfileError::UnknownVersion { .. })
            if set_available && opts.kubeadm_versions.is_empty() =>
        {
            let wanted: KubeVersion = opts
                .kube_version
                .as_deref()
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
            let base_opts = SetOptions {
                kube_version: Some(base.to_string()),
                ..opts.clone()
            };
            let mut set = profiles.image_set_with(platform, &base_opts)?;
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

/// The newest version among `tags` (a repository's tags, e.g. kube-apiserver's
/// on the source) that `platform` offers: what podsec takes without
/// U7S_KUBEVERSION, restricted to what the profile can name the images for.
pub fn newest_offered(tags: &[String], platform: &profile::Platform) -> Option<KubeVersion> {
    tags.iter()
        .filter_map(|t| t.parse::<KubeVersion>().ok())
        .filter(|v| platform.offers(v))
        .max()
}

/// The newest kube-apiserver tag on the source that `platform` offers; `Ok(None)`
/// when the source has none (then the tags it has are in the error's place).
pub fn newest_on_source(
    client: &Client,
    platform: &profile::Platform,
) -> Result<(Option<KubeVersion>, Vec<String>), PlanError> {
    let repository = format!("{}/kube-apiserver", platform.name);
    let tags = client
        .list_tags(&repository)
        .map_err(|source| PlanError::ListTags {
            repository: repository.clone(),
            source,
        })?;
    Ok((newest_offered(&tags, platform), tags))
}

/// Up to `n` tags of `tags` nearest to `wanted` when sorted as versions: the
/// ones just below it, then just above, closest first. For a missing image, what
/// the source has instead.
pub fn nearest_tags(wanted: &str, tags: &[String], n: usize) -> Vec<String> {
    let mut all: Vec<String> = tags.iter().filter(|t| *t != wanted).cloned().collect();
    all.push(wanted.to_string());
    let sorted = profile::sort_tags_as_versions(&all);
    let at = sorted.iter().position(|t| t == wanted).unwrap_or(0);
    let (below, above) = (&sorted[..at], &sorted[at + 1..]);
    let mut out = Vec::new();
    let (mut b, mut a) = (below.iter().rev(), above.iter());
    while out.len() < n {
        match (b.next(), a.next()) {
            (None, None) => break,
            (x, y) => {
                out.extend(x.cloned());
                if out.len() < n {
                    out.extend(y.cloned());
                }
            }
        }
    }
    out
}

/// Bytes to download for one platform: manifest + config + compressed layers.
pub fn image_size(r: &pull::ResolvedImage) -> u64 {
    r.manifest_bytes.len() as u64
        + r.manifest.config.size
        + r.manifest.layers.iter().map(|l| l.size).sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn newest_offered_is_the_newest_tag_the_profile_knows() {
        let profiles = Profiles::builtin().unwrap();
        let c10f = profiles.platform("c10f").unwrap();
        // v1.26.99 is on the registry but unknown to the profile; latest is not a version
        let tags = strings(&["v1.26.9", "v1.28.7", "v1.28.10", "v1.26.99", "latest"]);
        assert_eq!(
            newest_offered(&tags, c10f),
            Some(KubeVersion::new(1, 28, 10))
        );
        assert_eq!(newest_offered(&strings(&["v9.9.9", "x"]), c10f), None);
    }

    #[test]
    fn nearest_tags_sorted_as_versions() {
        let tags = strings(&["v1.26.6", "v1.26.9", "v1.26.11", "v1.27.11", "v1.28.7"]);
        assert_eq!(nearest_tags("v1.26.10", &tags, 2), ["v1.26.9", "v1.26.11"]);
        assert_eq!(
            nearest_tags("v1.26.10", &tags, 4),
            ["v1.26.9", "v1.26.11", "v1.26.6", "v1.27.11"]
        );
        assert_eq!(nearest_tags("v1.29.0", &tags, 2), ["v1.28.7", "v1.27.11"]);
        assert!(nearest_tags("v1.26.9", &[], 3).is_empty());
    }

    #[test]
    fn set_available_keeps_the_kubeadm_release_it_used() {
        let profiles = Profiles::builtin().unwrap();
        let opts = SetOptions::version(Some("v1.26.16"), None);
        assert!(image_set(&profiles, "c10f", &opts, false).is_err());
        let set = image_set(&profiles, "c10f", &opts, true).unwrap();
        assert_eq!(set.kube_version, "v1.26.16");
        assert_eq!(set.kubeadm_versions, ["v1.26.15"]);
        assert_eq!(set.image("etcd").unwrap().tag, "3.5.10-0");
    }
}
