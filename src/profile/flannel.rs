//! The flannel rules: which images podsec's kube-flannel manifest for a flannel
//! tag deploys.
//!
//! podsec's wrapper applies the manifest it ships for the tag asked for, with every
//! image renamed to `<registry>/<platform>/flannel:<tag>` or
//! `…/flannel-cni-plugin:<tag>` and the manifest's tags kept. Those tags, not the
//! tag asked for, are what the cluster pulls, so they are what a bundle carries.

use serde::Serialize;
use serde_yaml_ng::Value;

use super::schema::FlannelManifestDoc;
use super::validate::{check_tag, invalid};
use super::{KubeVersion, ProfileError, Profiles};
use crate::reference::is_valid_tag;

/// The two images a kube-flannel manifest deploys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlannelImages {
    /// The tag of the flannel image (the DaemonSet's container).
    pub flannel: String,
    /// The tag of the flannel-cni-plugin image (its init container).
    pub cni_plugin: String,
}

/// One manifest podsec ships: asked for `tag`, it deploys `images`.
#[derive(Debug, Clone)]
pub(super) struct FlannelManifest {
    pub(super) tag: KubeVersion,
    pub(super) images: FlannelImages,
}

/// Normalize a flannel tag (`0.26.7` or `v0.26.7`) to a version.
pub(super) fn flannel_version(tag: &str) -> Option<KubeVersion> {
    tag.trim().parse().ok()
}

impl Profiles {
    pub(super) fn flannel_manifest_row(
        file: &str,
        row: FlannelManifestDoc,
    ) -> Result<FlannelManifest, ProfileError> {
        let tag = flannel_version(&row.tag)
            .ok_or_else(|| invalid(file, format!("flannel tag {:?} is not vX.Y.Z", row.tag)))?;
        let flannel = row.flannel.unwrap_or_else(|| tag.to_string());
        check_tag(file, "flannel image tag", &flannel)?;
        check_tag(file, "flannel-cni-plugin tag", &row.cni_plugin)?;
        Ok(FlannelManifest {
            tag,
            images: FlannelImages {
                flannel,
                cni_plugin: row.cni_plugin,
            },
        })
    }

    pub(super) fn flannel_manifest_for(&self, v: &KubeVersion) -> Option<&FlannelManifest> {
        self.flannel.iter().find(|m| m.tag == *v)
    }

    /// The flannel tags podsec has a manifest for, ascending.
    pub fn flannel_tags(&self) -> Vec<String> {
        self.flannel.iter().map(|m| m.tag.to_string()).collect()
    }

    /// The images podsec's manifest for flannel `flannel_tag` deploys; a tag
    /// without a manifest is refused, naming the ones there are.
    pub fn flannel_deployed(&self, flannel_tag: &str) -> Result<&FlannelImages, ProfileError> {
        flannel_version(flannel_tag)
            .and_then(|v| self.flannel_manifest_for(&v))
            .map(|m| &m.images)
            .ok_or_else(|| ProfileError::UnknownFlannel {
                tag: flannel_tag.to_string(),
                known: self.flannel_tags(),
            })
    }

    /// The flannel-cni-plugin tag podsec's manifest for `flannel_tag` deploys.
    pub fn flannel_cni_plugin(&self, flannel_tag: &str) -> Result<&str, ProfileError> {
        Ok(&self.flannel_deployed(flannel_tag)?.cni_plugin)
    }
}

/// Why a kube-flannel.yml gave no images.
#[derive(Debug, thiserror::Error)]
pub enum FlannelManifestError {
    #[error("not YAML")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("no DaemonSet with a container image")]
    NoDaemonSet,
    #[error("no {0} image in the DaemonSet")]
    Missing(&'static str),
    #[error("image {0:?} has no valid tag")]
    BadImage(String),
    #[error("the DaemonSet names two {what} tags: {a} and {b}")]
    Conflict {
        what: &'static str,
        a: String,
        b: String,
    },
}

/// The images of a kube-flannel.yml as podsec renames them (`FlannelNameToAlt`):
/// an image whose name contains `flannel-cni-plugin` becomes flannel-cni-plugin,
/// any other of the DaemonSet's (init) containers flannel, each keeping its tag.
pub fn flannel_images_from_manifest(yaml: &str) -> Result<FlannelImages, FlannelManifestError> {
    let mut images: Vec<String> = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let doc = <Value as serde::Deserialize>::deserialize(doc)?;
        if doc.get("kind").and_then(Value::as_str) != Some("DaemonSet") {
            continue;
        }
        let pod = &doc["spec"]["template"]["spec"];
        for list in ["initContainers", "containers"] {
            if let Some(cs) = pod.get(list).and_then(Value::as_sequence) {
                images.extend(
                    cs.iter()
                        .filter_map(|c| c.get("image").and_then(Value::as_str))
                        .map(str::to_string),
                );
            }
        }
    }
    if images.is_empty() {
        return Err(FlannelManifestError::NoDaemonSet);
    }
    let (mut flannel, mut cni) = (None::<String>, None::<String>);
    for image in &images {
        let tag = image_tag(image).ok_or_else(|| FlannelManifestError::BadImage(image.clone()))?;
        let (slot, what) = if image.contains("flannel-cni-plugin") {
            (&mut cni, "flannel-cni-plugin")
        } else {
            (&mut flannel, "flannel")
        };
        match slot {
            Some(a) if *a != tag => {
                return Err(FlannelManifestError::Conflict {
                    what,
                    a: a.clone(),
                    b: tag,
                })
            }
            _ => *slot = Some(tag),
        }
    }
    Ok(FlannelImages {
        flannel: flannel.ok_or(FlannelManifestError::Missing("flannel"))?,
        cni_plugin: cni.ok_or(FlannelManifestError::Missing("flannel-cni-plugin"))?,
    })
}

/// The tag of `registry/path/name:tag` (a registry port is not a tag).
fn image_tag(image: &str) -> Option<String> {
    let last = image.rsplit('/').next()?;
    let last = last.split('@').next()?;
    let (_, tag) = last.split_once(':')?;
    is_valid_tag(tag).then(|| tag.to_string())
}
