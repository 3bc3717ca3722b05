//! One platform: a name on the registry and what it offers.

use super::version::{compact_versions, parse_minor};
use super::{KubeVersion, PlatformKind, ProfileError};

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
    pub(super) versions: Vec<KubeVersion>,
    /// Base: the offered branches (tags). Kubernetes: empty.
    pub(super) branches: Vec<String>,
    /// Base: the image names under the platform. Kubernetes: empty.
    pub(super) images: Vec<String>,
    /// `v1.36.3` or a branch.
    pub(super) default_version: String,
    /// Kubernetes: the flannel tag taken when none is given.
    pub(super) flannel_default: Option<String>,
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

    pub(super) fn unknown_version(&self, requested: &str) -> ProfileError {
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
