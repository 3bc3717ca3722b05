//! Image-set resolution: the images one bundle carries for a platform and version.

use serde::Serialize;

use super::flannel::flannel_version;
use super::{Platform, PlatformKind, ProfileError, Profiles, KUBE_COMPONENTS};

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

impl Profiles {
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
    pub(super) fn resolve_branch(
        &self,
        p: &Platform,
        requested: &str,
    ) -> Result<String, ProfileError> {
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
