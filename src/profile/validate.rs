//! Validation: every string read from a profile is checked before it becomes part
//! of the model (names, tags, registries, overlaps between table rows).

use std::collections::BTreeMap;

use super::flannel::{flannel_version, FlannelManifest};
use super::kubeadm::KubeadmRow;
use super::schema::{FileDoc, PlatformDoc};
use super::version::VersionReq;
use super::{
    KubeVersion, Platform, PlatformKind, ProfileError, Profiles, DEFAULT_SOURCE_REGISTRY,
    KUBE_COMPONENTS, MAX_DESCRIPTION,
};
use crate::reference::{is_valid_registry, is_valid_repository, is_valid_tag};

pub(super) fn invalid(file: &str, message: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        file: file.to_string(),
        message: message.into(),
    }
}

/// A single repository path component (`c10f`, `k8s-c10f2`): a platform name,
/// alias or prefix must not contain `/` or anything outside the OCI grammar.
pub(super) fn check_component(file: &str, what: &str, s: &str) -> Result<(), ProfileError> {
    if s.contains('/') || !is_valid_repository(s) {
        return Err(invalid(
            file,
            format!("{what} {s:?} is not a repository path component ([a-z0-9]+([._-][a-z0-9]+)*)"),
        ));
    }
    Ok(())
}

pub(super) fn check_repository(file: &str, what: &str, s: &str) -> Result<(), ProfileError> {
    if !is_valid_repository(s) {
        return Err(invalid(
            file,
            format!("{what} {s:?} is not a repository path (components [a-z0-9]+([._-][a-z0-9]+)* joined by '/')"),
        ));
    }
    Ok(())
}

pub(super) fn check_tag(file: &str, what: &str, s: &str) -> Result<(), ProfileError> {
    if !is_valid_tag(s) {
        return Err(invalid(
            file,
            format!("{what} {s:?} is not an image tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})"),
        ));
    }
    Ok(())
}

impl Profiles {
    pub(super) fn build(docs: Vec<(String, FileDoc)>) -> Result<Profiles, ProfileError> {
        let mut kubeadm = Vec::new();
        let mut flannel = Vec::new();
        let mut flannel_default: Option<(String, KubeVersion)> = None;
        let mut platform_docs = Vec::new();
        for (file, doc) in docs {
            for row in doc.kubeadm {
                kubeadm.push((file.clone(), Self::kubeadm_row(&file, row)?));
            }
            if let Some(f) = doc.flannel {
                if let Some(d) = f.default {
                    if let Some((other, _)) = &flannel_default {
                        return Err(invalid(
                            &file,
                            format!("[flannel].default is already set in {other}"),
                        ));
                    }
                    let v = flannel_version(&d).ok_or_else(|| {
                        invalid(
                            &file,
                            format!("[flannel].default {d:?} is not a version vX.Y.Z"),
                        )
                    })?;
                    flannel_default = Some((file.clone(), v));
                }
                for row in f.manifests {
                    flannel.push((file.clone(), Self::flannel_manifest_row(&file, row)?));
                }
            }
            platform_docs.extend(doc.platform.into_iter().map(|p| (file.clone(), p)));
        }

        kubeadm.sort_by_key(|(_, r)| (r.minor, r.first));
        for pair in kubeadm.windows(2) {
            let ((fa, a), (fb, b)) = (&pair[0], &pair[1]);
            if a.minor != b.minor {
                continue;
            }
            let (maj, min) = a.minor;
            if b.first <= a.last {
                return Err(invalid(
                    fb,
                    format!(
                        "kubeadm rows for {maj}.{min} overlap: patches {}-{} (in {fa}) and {}-{}",
                        a.first, a.last, b.first, b.last
                    ),
                ));
            }
            if b.first != a.last + 1 {
                return Err(invalid(
                    fb,
                    format!(
                        "kubeadm rows for {maj}.{min} leave patches {}-{} out (a missing line?)",
                        a.last + 1,
                        b.first - 1
                    ),
                ));
            }
        }
        let kubeadm: Vec<KubeadmRow> = kubeadm.into_iter().map(|(_, r)| r).collect();

        flannel.sort_by_key(|(_, r)| r.tag);
        for pair in flannel.windows(2) {
            let ((fa, a), (fb, b)) = (&pair[0], &pair[1]);
            if a.tag == b.tag {
                return Err(invalid(
                    fb,
                    format!("flannel manifest {} is listed twice (also in {fa})", a.tag),
                ));
            }
        }
        let flannel: Vec<FlannelManifest> = flannel.into_iter().map(|(_, r)| r).collect();

        let mut profiles = Profiles {
            platforms: Vec::new(),
            kubeadm,
            flannel,
        };
        let flannel_default = match flannel_default {
            Some((file, v)) => {
                profiles.flannel_manifest_for(&v).ok_or_else(|| {
                    invalid(
                        &file,
                        format!("[flannel].default {v} is not among the manifests"),
                    )
                })?;
                Some(v.to_string())
            }
            None => None,
        };
        let all_versions: Vec<KubeVersion> = profiles
            .kubeadm
            .iter()
            .flat_map(|r| {
                (r.first..=r.last).map(move |p| KubeVersion::new(r.minor.0, r.minor.1, p))
            })
            .collect();

        let mut names: BTreeMap<String, String> = BTreeMap::new(); // name or alias → platform
        for (file, doc) in platform_docs {
            let platform = profiles.platform_from_doc(
                &file,
                doc,
                &all_versions,
                flannel_default.as_deref(),
            )?;
            for n in std::iter::once(&platform.name).chain(&platform.aliases) {
                if let Some(owner) = names.insert(n.clone(), platform.name.clone()) {
                    return Err(invalid(
                        &file,
                        format!("platform name {n:?} is already used by platform {owner}"),
                    ));
                }
            }
            profiles.platforms.push(platform);
        }
        profiles.platforms.sort_by(|a, b| a.name.cmp(&b.name));

        // A legacy prefix is another name for the platform's images on registry.local:
        // it must not be another platform's namespace, nor shared, or one platform's
        // load would overwrite (and sign) another's images.
        let mut prefixes: BTreeMap<&str, &str> = BTreeMap::new();
        for p in &profiles.platforms {
            for prefix in &p.legacy_prefixes {
                let owner = names.get(prefix.as_str());
                if owner.is_some_and(|o| o != &p.name) || prefixes.insert(prefix, &p.name).is_some()
                {
                    return Err(invalid(
                        &p.name,
                        format!(
                            "legacy prefix {prefix:?} of platform {} belongs to another platform",
                            p.name
                        ),
                    ));
                }
            }
        }
        Ok(profiles)
    }

    pub(super) fn platform_from_doc(
        &self,
        file: &str,
        doc: PlatformDoc,
        all_versions: &[KubeVersion],
        flannel_default: Option<&str>,
    ) -> Result<Platform, ProfileError> {
        let name = doc.name;
        check_component(file, "platform name", &name)?;
        let file = &format!("{file} (platform {name})");
        for a in &doc.aliases {
            check_component(file, "alias", a)?;
        }
        for p in &doc.legacy_prefixes {
            check_component(file, "legacy prefix", p)?;
        }
        if doc.description.chars().count() > MAX_DESCRIPTION
            || doc.description.chars().any(char::is_control)
        {
            return Err(invalid(
                file,
                format!("description must be one line of at most {MAX_DESCRIPTION} characters without control characters"),
            ));
        }
        if let Some(b) = &doc.base_branch {
            check_tag(file, "base_branch", b)?;
        }
        let source_registry = doc
            .registry
            .unwrap_or_else(|| DEFAULT_SOURCE_REGISTRY.to_string());
        if !is_valid_registry(&source_registry) {
            return Err(invalid(
                file,
                format!("registry {source_registry:?} is not a host[:port]"),
            ));
        }
        let misplaced = |key: &str, kind: PlatformKind| {
            invalid(
                file,
                format!("{key} does not apply to a platform of kind \"{kind}\""),
            )
        };

        let mut platform = Platform {
            name: name.clone(),
            aliases: doc.aliases,
            legacy_prefixes: doc.legacy_prefixes,
            description: doc.description,
            kind: doc.kind,
            source_registry,
            base_branch: doc.base_branch,
            versions: Vec::new(),
            branches: Vec::new(),
            images: Vec::new(),
            default_version: String::new(),
            flannel_default: None,
        };
        match doc.kind {
            PlatformKind::Kubernetes => {
                if !doc.images.is_empty() {
                    return Err(misplaced("images", doc.kind));
                }
                if !doc.branches.is_empty() {
                    return Err(misplaced("branches", doc.kind));
                }
                for image in KUBE_COMPONENTS.iter().chain(&[
                    "coredns",
                    "pause",
                    "etcd",
                    "flannel",
                    "flannel-cni-plugin",
                ]) {
                    check_repository(file, "image repository", &format!("{name}/{image}"))?;
                }
                platform.versions = match &doc.kube_versions {
                    Some(req) => {
                        let req = VersionReq::parse(req)
                            .map_err(|m| invalid(file, format!("kube_versions: {m}")))?;
                        all_versions
                            .iter()
                            .copied()
                            .filter(|v| req.matches(v))
                            .collect()
                    }
                    None => all_versions.to_vec(),
                };
                let Some(newest) = platform.versions.last() else {
                    return Err(invalid(
                        file,
                        "offers no kubernetes version (empty kubeadm table, or kube_versions excludes all of it)",
                    ));
                };
                platform.default_version = match &doc.default_version {
                    Some(d) => {
                        let v = d
                            .parse::<KubeVersion>()
                            .ok()
                            .filter(|v| platform.offers(v))
                            .ok_or_else(|| {
                                invalid(
                                    file,
                                    format!(
                                        "default_version {d:?} is not among the versions it offers"
                                    ),
                                )
                            })?;
                        v.to_string()
                    }
                    None => newest.to_string(),
                };
                let flannel = match doc.flannel {
                    Some(f) => {
                        let v = flannel_version(&f)
                            .filter(|v| self.flannel_manifest_for(v).is_some())
                            .ok_or_else(|| {
                                invalid(
                                    file,
                                    format!("flannel {f:?} is not among the flannel manifests"),
                                )
                            })?;
                        v.to_string()
                    }
                    None => flannel_default
                        .ok_or_else(|| {
                            invalid(
                                file,
                                "no flannel tag: set [flannel].default or flannel = \"vX.Y.Z\"",
                            )
                        })?
                        .to_string(),
                };
                platform.flannel_default = Some(flannel);
            }
            PlatformKind::Base => {
                for (key, set) in [
                    ("kube_versions", doc.kube_versions.is_some()),
                    ("flannel", doc.flannel.is_some()),
                    ("base_branch", platform.base_branch.is_some()),
                ] {
                    if set {
                        return Err(misplaced(key, doc.kind));
                    }
                }
                if doc.images.is_empty() || doc.branches.is_empty() {
                    return Err(invalid(file, "a base platform needs images and branches"));
                }
                for image in &doc.images {
                    check_repository(file, "image", image)?;
                    check_repository(file, "image repository", &format!("{name}/{image}"))?;
                }
                for b in &doc.branches {
                    check_tag(file, "branch", b)?;
                }
                let default = doc
                    .default_version
                    .unwrap_or_else(|| doc.branches[0].clone());
                if !doc.branches.contains(&default) {
                    return Err(invalid(
                        file,
                        format!("default_version {default:?} is not among its branches"),
                    ));
                }
                platform.default_version = default;
                platform.images = doc.images;
                platform.branches = doc.branches;
            }
        }
        Ok(platform)
    }
}
