//! The profile file format (serde), checked and turned into the model by
//! [`super::validate`].

use serde::Deserialize;

use super::PlatformKind;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDoc {
    #[serde(default)]
    pub(super) platform: Vec<PlatformDoc>,
    #[serde(default)]
    pub(super) kubeadm: Vec<KubeadmRowDoc>,
    pub(super) flannel: Option<FlannelDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlatformDoc {
    pub(super) name: String,
    pub(super) kind: PlatformKind,
    pub(super) description: String,
    #[serde(default)]
    pub(super) aliases: Vec<String>,
    #[serde(default)]
    pub(super) legacy_prefixes: Vec<String>,
    pub(super) base_branch: Option<String>,
    pub(super) registry: Option<String>,
    pub(super) kube_versions: Option<String>,
    pub(super) default_version: Option<String>,
    pub(super) flannel: Option<String>,
    #[serde(default)]
    pub(super) images: Vec<String>,
    #[serde(default)]
    pub(super) branches: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KubeadmRowDoc {
    pub(super) minor: String,
    pub(super) patches: String,
    pub(super) pause: String,
    pub(super) etcd: String,
    pub(super) coredns: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FlannelDoc {
    pub(super) default: Option<String>,
    #[serde(default)]
    pub(super) manifests: Vec<FlannelManifestDoc>,
}

/// One kube-flannel manifest podsec ships: asked for `tag`, it deploys
/// `flannel:<flannel or tag>` and `flannel-cni-plugin:<cni_plugin>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FlannelManifestDoc {
    pub(super) tag: String,
    pub(super) flannel: Option<String>,
    pub(super) cni_plugin: String,
}
