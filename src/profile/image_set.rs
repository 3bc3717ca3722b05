//! Image-set resolution: the images one bundle carries for a platform and version.

use serde::Serialize;

use super::flannel::{flannel_version, FlannelImages};
use super::kubeadm::{KubeadmRow, KUBEADM_IMAGES};
use super::{KubeVersion, Platform, PlatformKind, ProfileError, Profiles, KUBE_COMPONENTS};

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
    /// The flannel tag asked for (podsec's U7S_FLANNEL_TAG: which manifest).
    pub flannel_tag: Option<String>,
    /// The flannel-cni-plugin tag the manifest deploys.
    pub flannel_cni_plugin_tag: Option<String>,
    /// The kubeadm releases whose pause/etcd/coredns the set holds (empty for a
    /// base platform, or when the kubeadm images came from a listing).
    pub kubeadm_versions: Vec<String>,
    /// See [`Platform::legacy_prefixes`].
    pub legacy_prefixes: Vec<String>,
    /// See [`Platform::source_registry`].
    pub source_registry: String,
    /// In kubeadm's order, then flannel, flannel-cni-plugin.
    pub images: Vec<ImageSpec>,
    /// What the set holds besides the obvious, for `plan` and `build` to print.
    pub notes: Vec<String>,
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

/// What a kubernetes image set is asked for, beyond platform and version.
#[derive(Debug, Clone, Default)]
pub struct SetOptions {
    /// `v1.26.9`, a minor (`1.30`), or for a base platform a branch; default: the
    /// platform's default.
    pub kube_version: Option<String>,
    /// The flannel tag asked for (podsec's U7S_FLANNEL_TAG); default: the platform's.
    pub flannel_tag: Option<String>,
    /// The images a kube-flannel.yml names (`--flannel-manifest`): they replace
    /// what the manifest table says, and a tag without a podsec manifest is accepted.
    pub flannel_manifest: Option<FlannelImages>,
    /// podsec's U7S_FLANNELCNIPLUGIN_TAG: podsec lists (and pre-pulls) this
    /// plugin tag, while the manifest still deploys its own; the set carries both.
    pub flannel_cni_plugin_tag: Option<String>,
    /// The kubeadm releases on the target hosts (`--kubeadm-version`, union);
    /// empty: the kubernetes version itself.
    pub kubeadm_versions: Vec<String>,
    /// `kubeadm config images list` of a target host, parsed
    /// ([`super::parse_kubeadm_images`]): the exact kubeadm images.
    pub kubeadm_images: Option<Vec<(String, String)>>,
}

impl SetOptions {
    /// Just a version and a flannel tag, everything else by default.
    pub fn version(kube_version: Option<&str>, flannel_tag: Option<&str>) -> SetOptions {
        SetOptions {
            kube_version: kube_version.map(str::to_string),
            flannel_tag: flannel_tag.map(str::to_string),
            ..SetOptions::default()
        }
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
        self.image_set_with(platform, &SetOptions::version(kube_version, flannel_tag))
    }

    /// [`Profiles::image_set`] with every option.
    pub fn image_set_with(
        &self,
        platform: &str,
        opts: &SetOptions,
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
            kubeadm_versions: Vec::new(),
            legacy_prefixes: p.legacy_prefixes.clone(),
            source_registry: p.source_registry.clone(),
            images: Vec::new(),
            notes: Vec::new(),
        };
        match p.kind {
            PlatformKind::Base => {
                let misplaced = [
                    (opts.flannel_tag.is_some(), "a flannel tag"),
                    (opts.flannel_manifest.is_some(), "a flannel manifest"),
                    (
                        opts.flannel_cni_plugin_tag.is_some(),
                        "a flannel-cni-plugin tag",
                    ),
                    (!opts.kubeadm_versions.is_empty(), "a kubeadm version"),
                    (opts.kubeadm_images.is_some(), "a kubeadm image list"),
                ];
                if let Some((_, what)) = misplaced.iter().find(|(set, _)| *set) {
                    return Err(ProfileError::NotApplicable {
                        platform: p.name.clone(),
                        what,
                    });
                }
                let asked = opts.kube_version.as_deref();
                let branch = self.resolve_branch(p, asked.unwrap_or(&p.default_version))?;
                set.images = p.images.iter().map(|i| image(p, i, &branch)).collect();
                set.kube_version = branch;
            }
            PlatformKind::Kubernetes => {
                self.kubeadm_images(p, opts, &mut set)?;
                self.flannel_images(p, opts, &mut set)?;
            }
        }
        Ok(set)
    }

    /// The kubeadm part of a set: kube-* at the version, then coredns, pause and
    /// etcd of each kubeadm release (union, in kubeadm's order), or exactly the
    /// images of a `kubeadm config images list`.
    fn kubeadm_images(
        &self,
        p: &Platform,
        opts: &SetOptions,
        set: &mut ImageSet,
    ) -> Result<(), ProfileError> {
        if let Some(listed) = &opts.kubeadm_images {
            let tag_of = |n: &str| listed.iter().find(|(name, _)| name == n).map(|(_, t)| t);
            let api = tag_of("kube-apiserver").expect("parse_kubeadm_images requires it");
            let listed_v: KubeVersion = api.parse()?;
            if let Some(asked) = &opts.kube_version {
                let asked_v = p.resolve_version(asked).or_else(|_| asked.parse())?;
                if asked_v != listed_v {
                    return Err(ProfileError::KubeadmImagesVersion {
                        listed: listed_v.to_string(),
                        asked: asked_v.to_string(),
                    });
                }
            }
            for role in KUBEADM_IMAGES {
                for (_, tag) in listed.iter().filter(|(n, _)| n == role) {
                    set.images.push(image(p, role, tag));
                }
            }
            set.kube_version = listed_v.to_string();
            return Ok(());
        }
        let v = p.resolve_version(opts.kube_version.as_deref().unwrap_or(&p.default_version))?;
        let mut kubeadm: Vec<KubeVersion> = Vec::new();
        for k in &opts.kubeadm_versions {
            let k: KubeVersion = k.parse()?;
            if !kubeadm.contains(&k) {
                kubeadm.push(k);
            }
        }
        if kubeadm.is_empty() {
            kubeadm.push(v);
        }
        let rows = kubeadm
            .iter()
            .map(|k| self.kubeadm_release(k, &v))
            .collect::<Result<Vec<_>, _>>()?;
        let version = v.to_string();
        set.images = KUBE_COMPONENTS
            .iter()
            .map(|c| image(p, c, &version))
            .collect();
        for (role, pick) in [
            (
                "coredns",
                (|r: &KubeadmRow| r.coredns.clone()) as fn(&KubeadmRow) -> String,
            ),
            ("pause", |r| r.pause.clone()),
            ("etcd", |r| r.etcd.clone()),
        ] {
            for row in &rows {
                push_new(&mut set.images, image(p, role, &pick(row)));
            }
        }
        set.kube_version = version;
        set.kubeadm_versions = kubeadm.iter().map(|k| k.to_string()).collect();
        Ok(())
    }

    /// The flannel part of a set: the images the manifest for the asked tag
    /// deploys, then (when they differ) the images podsec lists besides: flannel
    /// at the asked tag, which its wrapper pulls before init, and the plugin of
    /// U7S_FLANNELCNIPLUGIN_TAG.
    fn flannel_images(
        &self,
        p: &Platform,
        opts: &SetOptions,
        set: &mut ImageSet,
    ) -> Result<(), ProfileError> {
        let asked = match (&opts.flannel_tag, &opts.flannel_manifest) {
            (Some(t), _) => flannel_version(t)
                .ok_or_else(|| ProfileError::UnknownFlannel {
                    tag: t.clone(),
                    known: self.flannel_tags(),
                })?
                .to_string(),
            (None, Some(m)) => m.flannel.clone(),
            (None, None) => p
                .flannel_default
                .clone()
                .expect("a kubernetes platform always has a default flannel"),
        };
        let deployed = match &opts.flannel_manifest {
            Some(m) => m.clone(),
            None => self.flannel_deployed(&asked)?.clone(),
        };
        set.images.push(image(p, "flannel", &deployed.flannel));
        set.images
            .push(image(p, "flannel-cni-plugin", &deployed.cni_plugin));
        if deployed.flannel != asked {
            set.notes.push(format!(
                "flannel {asked}: the kube-flannel manifest for it deploys flannel:{} (carried), \
                 and podsec's wrapper pulls flannel:{asked} before init (carried too)",
                deployed.flannel
            ));
            push_new(&mut set.images, image(p, "flannel", &asked));
        }
        if let Some(plugin) = &opts.flannel_cni_plugin_tag {
            if *plugin != deployed.cni_plugin {
                set.notes.push(format!(
                    "flannel-cni-plugin {plugin}: podsec lists it (carried), but the manifest for \
                     flannel {asked} still deploys flannel-cni-plugin:{} (carried too)",
                    deployed.cni_plugin
                ));
                push_new(&mut set.images, image(p, "flannel-cni-plugin", plugin));
            }
        }
        set.flannel_tag = Some(asked);
        set.flannel_cni_plugin_tag = Some(deployed.cni_plugin);
        Ok(())
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

/// `<platform>/<name>:<tag>`, playing role `name`.
fn image(p: &Platform, name: &str, tag: &str) -> ImageSpec {
    ImageSpec {
        repository: format!("{}/{name}", p.name),
        tag: tag.to_string(),
        role: name.to_string(),
    }
}

/// Append `img` unless the set has it already (a union keeps one copy).
fn push_new(images: &mut Vec<ImageSpec>, img: ImageSpec) {
    if !images.contains(&img) {
        images.push(img);
    }
}
