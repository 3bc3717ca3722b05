//! `bundle.json`: what a bundle holds, and the root of its trust chain.
//!
//! The signature covers these exact bytes; every other entry of the archive is
//! accepted only if it is listed here with its digest and size. Parsing is strict
//! (unknown and duplicate fields are errors) and validation runs before anything
//! in the file is used to build a path or a URL.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::reference::{self, Reference};

pub const FORMAT: &str = "u7s-bundle";
pub const FORMAT_VERSION: u32 = 1;
/// bundle.json larger than this is refused before parsing.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Detached signature larger than this is refused.
pub const MAX_SIGNATURE_BYTES: u64 = 64 << 10;
pub const MAX_BLOBS: usize = 100_000;
/// Largest manifest or config blob: they are held in memory when loaded
/// (the source side fetches configs with the same bound).
pub const MAX_SMALL_BLOB_BYTES: u64 = 8 << 20;
pub const MAX_IMAGES: usize = 10_000;

pub const MANIFEST_NAME: &str = "bundle.json";
pub const SIGNATURE_NAME: &str = "bundle.json.sig";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("bundle.json is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("bundle.json is not valid: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    pub format: String,
    pub format_version: u32,
    /// Canonical platform name (`c10f`), used as the first repository component.
    pub platform: String,
    #[serde(default)]
    pub platform_aliases: Vec<String>,
    /// Extra repository prefixes the images are also pushed under on load
    /// (`k8s-c10f2` for c10f: older manifests name it).
    #[serde(default)]
    pub legacy_prefixes: Vec<String>,
    pub kube_version: Option<String>,
    pub arch: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub profile: String,
    #[serde(default)]
    pub flannel_tag: Option<String>,
    #[serde(default)]
    pub flannel_cni_plugin_tag: Option<String>,
    /// The kubeadm releases whose pause/etcd/coredns the bundle carries (the
    /// kubeadm package the target hosts must run). Absent in bundles built
    /// before it was recorded, and when the images came from a listing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubeadm_versions: Vec<String>,
    /// RFC 3339 UTC.
    pub created: String,
    /// RFC 3339 UTC: after this, `load` and `verify` refuse the bundle
    /// (`build --expires`). Signed like the rest; absent in bundles built
    /// without it, which make no such statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    pub tool: String,
    /// The image layout's own files (`oci-layout`, `index.json`).
    pub layout: Vec<FileEntry>,
    pub images: Vec<ImageEntry>,
    pub blobs: Vec<BlobEntry>,
    /// Set in a delta: the layers left out because the base (what the target
    /// registry holds) has them. Absent in a full bundle, whose bytes are
    /// then those of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
}

/// What a delta bundle leaves out, and what it was made against.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    /// The base, for people: `inventory of registry.local (2026-12-05T…)`.
    pub base: String,
    /// sha256 of the base file (inventory, bundle.json, or bundle).
    pub base_digest: Digest,
    /// Layers the images use that the archive does not carry.
    pub omitted: Vec<OmittedBlob>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OmittedBlob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// Repositories the base holds it in: where `load` mounts it from into
    /// a repository that lacks it.
    #[serde(default)]
    pub repositories: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to `<arch>/`.
    pub path: String,
    pub digest: Digest,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    /// Registry-relative name, e.g. `c10f/kube-apiserver:v1.26.9`.
    pub name: String,
    #[serde(default)]
    pub role: Option<String>,
    /// Where it was pulled from.
    pub source: String,
    /// What the source tag pointed at (index or manifest).
    pub source_digest: Digest,
    /// The per-platform manifest at the source.
    pub source_manifest_digest: Digest,
    /// The manifest in this bundle (differs from the source's when layers were
    /// stored uncompressed; equal when digests were preserved).
    pub manifest: Digest,
    pub manifest_media_type: String,
    pub config: Digest,
    pub layers: Vec<Digest>,
    /// Bytes of manifest + config + layers as stored.
    pub size: u64,
    pub preserved: bool,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Manifest,
    Config,
    Layer,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub kind: BlobKind,
}

impl ImageEntry {
    pub fn reference(&self) -> Reference {
        // Validated in `BundleManifest::validate`.
        Reference::parse(&self.name).expect("validated image name")
    }

    /// Is the image named in the OCI layout's index.json? Only OCI manifests
    /// are: skopeo's `oci:` reader does not see a Docker-typed descriptor and
    /// umoci refuses one, so a Docker manifest kept byte for byte (a pinned
    /// digest) is listed in bundle.json alone, and pushed from there.
    pub fn in_layout(&self) -> bool {
        self.manifest_media_type == crate::oci::OCI_MANIFEST
    }
}

/// Characters allowed in the names that become path components (`arch`, platform).
fn is_simple_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
        && !s.starts_with('.')
}

/// A one-line human-readable value (`created`, `tool`, `source`): shown by
/// `inspect` and in messages before the signature is checked, so it must not
/// carry terminal control sequences or newlines.
fn is_display_text(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(char::is_control)
}

/// `type/subtype[+suffix]` in RFC 6838's restricted-name characters: it becomes
/// a `Content-Type` header on push.
fn is_media_type(s: &str) -> bool {
    let ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 127
            && part.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                    )
            })
    };
    matches!(s.split_once('/'), Some((t, sub)) if ok(t) && ok(sub))
}

impl BundleManifest {
    /// Strict parse + validation.
    pub fn parse(bytes: &[u8]) -> Result<BundleManifest, ModelError> {
        let m: BundleManifest = serde_json::from_slice(bytes)?;
        m.validate()?;
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("serializable");
        v.push(b'\n');
        v
    }

    /// Everything that later code relies on without checking again.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |s: String| Err(ModelError::Invalid(s));
        if self.format != FORMAT {
            return bad(format!("format is {:?}, expected {FORMAT:?}", self.format));
        }
        if self.format_version != FORMAT_VERSION {
            return bad(format!(
                "format_version {} is not supported (this u7s-bundle reads version {FORMAT_VERSION}); use a matching u7s-bundle",
                self.format_version
            ));
        }
        if !is_simple_name(&self.arch) {
            return bad(format!("arch {:?} is not a plain name", self.arch));
        }
        if let Some(v) = &self.variant {
            if !is_simple_name(v) {
                return bad(format!("variant {v:?} is not a plain name"));
            }
        }
        if !reference::is_valid_repository(&self.platform) || self.platform.contains('/') {
            return bad(format!("platform {:?} is not a plain name", self.platform));
        }
        for a in &self.platform_aliases {
            if !reference::is_valid_repository(a) || a.contains('/') {
                return bad(format!("platform alias {a:?} is not a plain name"));
            }
        }
        // Tags: they end up in image names, kubeadm's configuration and the
        // environment of podsec's wrapper.
        for (what, v) in [
            ("kube_version", &self.kube_version),
            ("flannel_tag", &self.flannel_tag),
            ("flannel_cni_plugin_tag", &self.flannel_cni_plugin_tag),
        ] {
            if let Some(v) = v {
                if !reference::is_valid_tag(v) {
                    return bad(format!("{what} {v:?} is not a valid tag"));
                }
            }
        }
        for v in &self.kubeadm_versions {
            if !reference::is_valid_tag(v) {
                return bad(format!("kubeadm version {v:?} is not a valid tag"));
            }
        }
        if !is_simple_name(&self.profile) {
            return bad(format!("profile {:?} is not a plain name", self.profile));
        }
        if !is_display_text(&self.created, 64) || !is_display_text(&self.tool, 128) {
            return bad("created or tool is not one line of printable text".into());
        }
        if let Some(e) = &self.expires {
            let rfc3339 = &time::format_description::well_known::Rfc3339;
            if e.len() > 64 || time::OffsetDateTime::parse(e, rfc3339).is_err() {
                return bad(format!("expires {e:?} is not an RFC 3339 time"));
            }
        }
        for p in &self.legacy_prefixes {
            if !reference::is_valid_repository(p) {
                return bad(format!(
                    "legacy prefix {p:?} is not a valid repository path"
                ));
            }
        }
        if self.images.is_empty() {
            return bad("it lists no image".into());
        }
        if self.images.len() > MAX_IMAGES || self.blobs.len() > MAX_BLOBS {
            return bad("it lists too many images or blobs".into());
        }
        let mut paths = BTreeSet::new();
        for f in &self.layout {
            if f.path != "oci-layout" && f.path != "index.json" {
                return bad(format!("unexpected layout file {:?}", f.path));
            }
            if !paths.insert(f.path.clone()) {
                return bad(format!("layout file {:?} listed twice", f.path));
            }
        }
        if paths.len() != 2 {
            return bad("the layout must list oci-layout and index.json".into());
        }
        // Kind by digest, built once: a scan of the blob list per reference
        // made validation quadratic (44 s of CPU on a crafted bundle.json,
        // before the signature is checked).
        let mut kinds: BTreeMap<&Digest, BlobKind> = BTreeMap::new();
        for b in &self.blobs {
            if !is_media_type(&b.media_type) {
                return bad(format!(
                    "blob {}: media type {:?} is not valid",
                    b.digest, b.media_type
                ));
            }
            if b.kind != BlobKind::Layer && b.size > MAX_SMALL_BLOB_BYTES {
                return bad(format!(
                    "blob {}: a {:?} of {} bytes (the limit is {MAX_SMALL_BLOB_BYTES})",
                    b.digest, b.kind, b.size
                ));
            }
            if kinds.insert(&b.digest, b.kind).is_some() {
                return bad(format!("blob {} listed twice", b.digest));
            }
        }
        let carried: BTreeSet<Digest> = kinds.keys().map(|d| (*d).clone()).collect();
        let omitted = self.validate_delta(&carried)?;
        let kind_of = |d: &Digest| kinds.get(d).copied();
        let mut names = BTreeSet::new();
        for img in &self.images {
            let r = Reference::parse(&img.name).map_err(|e| ModelError::Invalid(e.to_string()))?;
            if r.registry.is_some() || r.digest.is_some() || r.tag.is_none() {
                return bad(format!(
                    "image name {:?} must be registry-relative with a tag (repo:tag)",
                    img.name
                ));
            }
            if !is_media_type(&img.manifest_media_type)
                || !is_display_text(&img.source, 1024)
                || !img.role.as_deref().is_none_or(is_simple_name)
            {
                return bad(format!(
                    "image {:?}: its media type, source or role is not valid",
                    img.name
                ));
            }
            if !names.insert(img.name.clone()) {
                return bad(format!("image {} listed twice", img.name));
            }
            if kind_of(&img.manifest) != Some(BlobKind::Manifest) {
                return bad(format!(
                    "{}: manifest {} is not listed as a manifest blob",
                    img.name, img.manifest
                ));
            }
            if kind_of(&img.config) != Some(BlobKind::Config) {
                return bad(format!(
                    "{}: config {} is not listed as a config blob",
                    img.name, img.config
                ));
            }
            for l in &img.layers {
                if kind_of(l) != Some(BlobKind::Layer) && !omitted.contains(l) {
                    return bad(format!(
                        "{}: layer {l} is not listed as a layer blob",
                        img.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The omitted layers of a delta: valid, each once, none also carried.
    fn validate_delta(&self, carried: &BTreeSet<Digest>) -> Result<BTreeSet<Digest>, ModelError> {
        let bad = |s: String| Err(ModelError::Invalid(s));
        let mut out = BTreeSet::new();
        let Some(d) = &self.delta else {
            return Ok(out);
        };
        if !is_display_text(&d.base, 1024) || d.omitted.len() > MAX_BLOBS {
            return bad("delta: base is not one line of text, or too many blobs".into());
        }
        for o in &d.omitted {
            if !is_media_type(&o.media_type) || carried.contains(&o.digest) {
                return bad(format!(
                    "delta: omitted blob {} has an invalid media type or is also carried",
                    o.digest
                ));
            }
            if o.repositories
                .iter()
                .any(|r| !reference::is_valid_repository(r))
            {
                return bad(format!(
                    "delta: omitted blob {}: a repository is not valid",
                    o.digest
                ));
            }
            if !out.insert(o.digest.clone()) {
                return bad(format!("delta: blob {} omitted twice", o.digest));
            }
        }
        Ok(out)
    }

    /// Path of a blob inside the archive.
    pub fn blob_path(&self, digest: &Digest) -> String {
        format!("{}/blobs/sha256/{}", self.arch, digest.hex())
    }

    pub fn blob(&self, digest: &Digest) -> Option<&BlobEntry> {
        self.blobs.iter().find(|b| &b.digest == digest)
    }

    /// Archive file name: `<platform>-<version>-<arch>.u7s.tar.<ext>`.
    pub fn file_stem(&self) -> String {
        let arch = match &self.variant {
            Some(v) => format!("{}{}", self.arch, v),
            None => self.arch.clone(),
        };
        match &self.kube_version {
            Some(v) => format!("{}-{}-{}", self.platform, v, arch),
            None => format!("{}-{}", self.platform, arch),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    /// The smallest manifest that validates: one image, three blobs.
    pub(crate) fn minimal() -> BundleManifest {
        let file = |path: &str| FileEntry {
            path: path.into(),
            digest: d(9),
            size: 1,
        };
        let blob = |n: u8, kind: BlobKind, media_type: &str| BlobEntry {
            digest: d(n),
            size: 1,
            media_type: media_type.into(),
            kind,
        };
        BundleManifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            platform: "c10f".into(),
            platform_aliases: vec!["k8s-c10f2".into()],
            legacy_prefixes: vec!["k8s-c10f2".into()],
            kube_version: Some("v1.26.9".into()),
            arch: "amd64".into(),
            variant: None,
            profile: "c10f".into(),
            flannel_tag: Some("v0.26.7".into()),
            flannel_cni_plugin_tag: Some("v1.6.2-flannel1".into()),
            kubeadm_versions: vec!["v1.26.9".into()],
            created: "2026-01-01T00:00:00Z".into(),
            expires: None,
            tool: "u7s-bundle 0.1.0".into(),
            layout: vec![file("oci-layout"), file("index.json")],
            images: vec![ImageEntry {
                name: "c10f/pause:3.9".into(),
                role: Some("pause".into()),
                source: "registry.altlinux.org/k8s-c10f2/pause:3.9".into(),
                source_digest: d(1),
                source_manifest_digest: d(1),
                manifest: d(1),
                manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                config: d(2),
                layers: vec![d(3)],
                size: 3,
                preserved: false,
            }],
            blobs: vec![
                blob(
                    1,
                    BlobKind::Manifest,
                    "application/vnd.oci.image.manifest.v1+json",
                ),
                blob(
                    2,
                    BlobKind::Config,
                    "application/vnd.oci.image.config.v1+json",
                ),
                blob(3, BlobKind::Layer, "application/vnd.oci.image.layer.v1.tar"),
            ],
            delta: None,
        }
    }

    fn json(m: &BundleManifest) -> String {
        String::from_utf8(m.to_json()).unwrap()
    }

    #[test]
    fn the_minimal_manifest_round_trips() {
        let m = minimal();
        assert_eq!(BundleManifest::parse(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn duplicate_keys_are_refused_at_every_level() {
        let text = json(&minimal());
        // Top level: a second `platform` after the first (last-wins would
        // let an unsigned copy say one thing to a reader and another to us).
        let top = text.replacen(
            "\"platform\": \"c10f\",",
            "\"platform\": \"c10f\",\n  \"platform\": \"p10\",",
            1,
        );
        // Inside an image and inside a blob entry.
        let image = text.replacen(
            "\"name\": \"c10f/pause:3.9\",",
            "\"name\": \"c10f/pause:3.9\",\n      \"name\": \"c10f/etcd:3.9\",",
            1,
        );
        let blob = text.replacen("\"size\": 1,", "\"size\": 1,\n      \"size\": 2,", 1);
        for (what, bad) in [("top", top), ("image", image), ("blob", blob)] {
            assert_ne!(bad, text, "{what}: the edit applied");
            let err = BundleManifest::parse(bad.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("duplicate field"), "{what}: {err}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for depth in [200usize, 100_000] {
            for field in ["platform_aliases", "layout", "unknown"] {
                let text = json(&minimal()).replacen(
                    "{",
                    &format!(
                        "{{\n  \"{field}\": {}0{},",
                        "[".repeat(depth),
                        "]".repeat(depth)
                    ),
                    1,
                );
                assert!(
                    BundleManifest::parse(text.as_bytes()).is_err(),
                    "{field} nested {depth} deep was accepted"
                );
            }
        }
        // The fixed shape means nothing is ever parsed deeply; a bare deep
        // array is refused at its second bracket.
        let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        assert!(BundleManifest::parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn path_tricks_and_control_characters_are_refused() {
        type Edit = fn(&mut BundleManifest);
        let cases: Vec<(&str, Edit)> = vec![
            ("name ../", |m| {
                m.images[0].name = "c10f/../pause:3.9".into()
            }),
            ("absolute name", |m| {
                m.images[0].name = "/c10f/pause:3.9".into()
            }),
            ("uppercase name", |m| {
                m.images[0].name = "C10F/pause:3.9".into()
            }),
            ("newline in name", |m| {
                m.images[0].name = "c10f/pause:3.9\n".into()
            }),
            ("name with registry", |m| {
                m.images[0].name = "evil.example.org/c10f/pause:3.9".into()
            }),
            ("platform ..", |m| m.platform = "..".into()),
            ("platform with /", |m| m.platform = "c10f/../../etc".into()),
            ("uppercase platform", |m| m.platform = "C10F".into()),
            ("arch ../", |m| m.arch = "../amd64".into()),
            ("arch absolute", |m| m.arch = "/etc".into()),
            ("variant ..", |m| m.variant = Some("..".into())),
            ("alias ../", |m| m.platform_aliases = vec!["../x".into()]),
            ("legacy prefix ../", |m| {
                m.legacy_prefixes = vec!["k8s/../../etc".into()]
            }),
            ("kube_version ../", |m| {
                m.kube_version = Some("../../etc/passwd".into())
            }),
            ("kube_version newline", |m| {
                m.kube_version = Some("v1.26.9\nU7S_X=1".into())
            }),
            ("flannel tag /", |m| m.flannel_tag = Some("a/b".into())),
            ("cni tag control", |m| {
                m.flannel_cni_plugin_tag = Some("v1\u{1b}[2J".into())
            }),
            ("profile ../", |m| m.profile = "../c10f".into()),
            ("created escape", |m| {
                m.created = "\u{1b}]0;owned\u{7}".into()
            }),
            ("tool newline", |m| m.tool = "u7s\nOK: verified".into()),
            ("source escape", |m| {
                m.images[0].source = "x\u{1b}[1m".into()
            }),
            ("role /", |m| m.images[0].role = Some("../x".into())),
            ("media type CRLF", |m| {
                m.blobs[2].media_type = "application/x\r\nX-Evil: 1".into()
            }),
            ("manifest media type", |m| {
                m.images[0].manifest_media_type = "text plain".into()
            }),
        ];
        for (what, edit) in cases {
            let mut m = minimal();
            edit(&mut m);
            let err = BundleManifest::parse(&m.to_json());
            assert!(err.is_err(), "{what}: accepted");
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        let text = json(&minimal());
        for bad in [
            text.replacen("{", "{\n  \"extra\": 1,", 1),
            text.replacen("\"size\": 3,", "\"size\": -3,", 1),
            text.replacen("\"size\": 3,", "\"size\": 3.5,", 1),
            text.replacen("\"format_version\": 1", "\"format_version\": \"1\"", 1),
        ] {
            assert_ne!(bad, text);
            assert!(BundleManifest::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
