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
//! manifests = [              # podsec's kube-flannel manifests: asked tag → deployed tags
//!   { tag = "v0.23.0", flannel = "v0.22.3", cni_plugin = "v1.2.0" },
//!   { tag = "v0.26.7", cni_plugin = "v1.7.1-flannel1" },   # flannel defaults to tag
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

mod flannel;
mod image_set;
mod kubeadm;
mod platform;
mod schema;
#[cfg(test)]
mod tests;
mod validate;
mod version;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use flannel::FlannelManifest;
use kubeadm::KubeadmRow;
use schema::FileDoc;
use validate::invalid;

pub use flannel::{flannel_images_from_manifest, FlannelImages, FlannelManifestError};
pub use image_set::{ImageSet, ImageSpec, SetOptions};
pub use kubeadm::parse_kubeadm_images;
pub use platform::Platform;
pub use version::{compact_versions, newest_in_minor, sort_tags_as_versions, KubeVersion};

/// The embedded profiles, by file name. A file of the same name in an override
/// directory replaces one of these.
pub(super) const BUILTIN: &[(&str, &str)] = &[
    ("alt.toml", include_str!("../../profiles/alt.toml")),
    ("c10f.toml", include_str!("../../profiles/c10f.toml")),
    ("flannel.toml", include_str!("../../profiles/flannel.toml")),
    ("kubeadm.toml", include_str!("../../profiles/kubeadm.toml")),
    ("p10.toml", include_str!("../../profiles/p10.toml")),
    ("p11.toml", include_str!("../../profiles/p11.toml")),
    (
        "sisyphus.toml",
        include_str!("../../profiles/sisyphus.toml"),
    ),
];

/// Where the images come from unless a platform names another registry.
pub const DEFAULT_SOURCE_REGISTRY: &str = "registry.altlinux.org";

/// The images kubeadm tags with the kubernetes version itself, in kubeadm's order
/// (`kubeadm config images list`); coredns, pause and etcd follow, from the table.
/// The list is kubeadm's behaviour, unchanged since 1.24, hence code rather than data.
pub(super) const KUBE_COMPONENTS: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
];

/// Longest description accepted: it is printed in one line by `u7s-bundle profiles`.
pub(super) const MAX_DESCRIPTION: usize = 300;

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
    /// `known` holds every flannel tag podsec ships a manifest for.
    #[error("flannel {tag:?}: podsec ships no kube-flannel manifest for it (its kubeadm init would fail); known: {}; or give --flannel-manifest FILE", known.join(", "))]
    UnknownFlannel { tag: String, known: Vec<String> },
    /// `known` holds the kubeadm releases of that minor the table has.
    #[error("kubeadm {version} is not in the kubeadm table (known of its minor: {}); give --kubeadm-images FILE, the output of `kubeadm config images list` on the host", if known.is_empty() { "none".to_string() } else { compact_versions(known) })]
    UnknownKubeadm {
        version: String,
        known: Vec<KubeVersion>,
    },
    #[error("kubeadm {kubeadm} is of another minor than kubernetes {kube}: podsec installs the kubeadm of the target minor; give --kubeadm-images FILE for another")]
    KubeadmMinor { kubeadm: String, kube: String },
    /// `line` 0: the file as a whole.
    #[error("kubeadm image list, line {line}: {message}")]
    KubeadmImages { line: usize, message: String },
    #[error("the kubeadm image list is for kubernetes {listed}, not {asked}")]
    KubeadmImagesVersion { listed: String, asked: String },
    #[error("platform {platform} holds base images: {what} does not apply to it")]
    NotApplicable {
        platform: String,
        what: &'static str,
    },
}

pub(super) fn unknown_version_message(platform: &str, version: &str, known: &[String]) -> String {
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

/// All platforms and the shared tables.
#[derive(Debug, Clone)]
pub struct Profiles {
    /// Sorted by name.
    platforms: Vec<Platform>,
    /// Sorted by (minor, first patch); no overlaps.
    kubeadm: Vec<KubeadmRow>,
    /// Sorted by `from`; no overlaps.
    flannel: Vec<FlannelManifest>,
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
}
