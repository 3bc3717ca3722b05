//! `bundle.json`: what a bundle holds, and the root of its trust chain.
//!
//! The signature covers these exact bytes; every other entry of the archive is
//! accepted only if it is listed here with its digest and size. Parsing is strict
//! (unknown and duplicate fields are errors) and validation runs before anything
//! in the file is used to build a path or a URL.

use std::collections::BTreeSet;

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
    /// RFC 3339 UTC.
    pub created: String,
    pub tool: String,
    /// The image layout's own files (`oci-layout`, `index.json`).
    pub layout: Vec<FileEntry>,
    pub images: Vec<ImageEntry>,
    pub blobs: Vec<BlobEntry>,
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
        let mut blobs = BTreeSet::new();
        for b in &self.blobs {
            if !blobs.insert(b.digest.clone()) {
                return bad(format!("blob {} listed twice", b.digest));
            }
        }
        let kind_of = |d: &Digest| self.blobs.iter().find(|b| &b.digest == d).map(|b| b.kind);
        let mut names = BTreeSet::new();
        for img in &self.images {
            let r = Reference::parse(&img.name).map_err(|e| ModelError::Invalid(e.to_string()))?;
            if r.registry.is_some() || r.digest.is_some() || r.tag.is_none() {
                return bad(format!(
                    "image name {:?} must be registry-relative with a tag (repo:tag)",
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
                if kind_of(l) != Some(BlobKind::Layer) {
                    return bad(format!(
                        "{}: layer {l} is not listed as a layer blob",
                        img.name
                    ));
                }
            }
        }
        Ok(())
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
