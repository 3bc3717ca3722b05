//! The OCI / Docker v2 schema 2 JSON documents we read and write: index, image
//! manifest, the parts of the image config we check, and the image layout files.
//!
//! Why not the `oci-spec` crate: its `Digest` accepts any algorithm and its builders
//! normalize documents, while we must (a) validate every digest from untrusted input
//! as sha256 at parse time (they become file and URL paths) and (b) pass Docker media
//! types and unknown fields through untouched when `--preserve-digests` keeps the
//! original bytes. The few structs below do exactly that and nothing more.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The Accept header for manifest requests: every shape we can handle.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest we accept, as distribution does (4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("malformed {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported manifest media type {0:?} (expected an OCI or Docker v2 schema 2 manifest or index)")]
    UnsupportedMediaType(String),
    #[error("unsupported layer media type {0:?}")]
    UnsupportedLayer(String),
    #[error("no image for {arch} in the index (it has: {available})")]
    NoPlatform { arch: String, available: String },
    #[error("the image has {layers} layers but its config lists {diff_ids} diff_ids")]
    LayerCountMismatch { layers: usize, diff_ids: usize },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The parts of an image config we need: the platform and the diff_ids that
/// name each uncompressed layer.
#[derive(Clone, Debug, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub rootfs: RootFs,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RootFs {
    pub diff_ids: Vec<Digest>,
}

/// A manifest document as fetched: either a multi-platform index or one image.
pub enum Fetched {
    Index(Index),
    Image(Manifest),
}

pub fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub fn is_manifest_type(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Parse a manifest or index. The media type comes from the document itself when
/// present, else from the Content-Type the registry sent.
pub fn parse_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<(Fetched, String), OciError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| OciError::Json {
        what: "manifest",
        source,
    })?;
    let media_type = match (probe.media_type, content_type) {
        (Some(m), _) => m,
        (None, Some(c)) if c != "application/json" && !c.is_empty() => c.to_string(),
        (None, _) if probe.manifests.is_some() => OCI_INDEX.to_string(),
        (None, _) => OCI_MANIFEST.to_string(),
    };
    if is_index_type(&media_type) {
        let index = serde_json::from_slice(bytes).map_err(|source| OciError::Json {
            what: "image index",
            source,
        })?;
        Ok((Fetched::Index(index), media_type))
    } else if is_manifest_type(&media_type) {
        let m = serde_json::from_slice(bytes).map_err(|source| OciError::Json {
            what: "image manifest",
            source,
        })?;
        Ok((Fetched::Image(m), media_type))
    } else {
        Err(OciError::UnsupportedMediaType(media_type))
    }
}

pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, OciError> {
    serde_json::from_slice(bytes).map_err(|source| OciError::Json {
        what: "image config",
        source,
    })
}

/// How a layer blob is compressed, from its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn layer_compression(media_type: &str) -> Result<Compression, OciError> {
    match media_type {
        OCI_LAYER | DOCKER_LAYER => Ok(Compression::None),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Ok(Compression::Gzip),
        OCI_LAYER_ZSTD => Ok(Compression::Zstd),
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        other => Err(OciError::UnsupportedLayer(other.to_string())),
    }
}

/// Pick the manifest for `arch` (and `variant` when given) from an index,
/// ignoring attestation entries (`unknown/unknown`).
pub fn select_platform<'a>(
    index: &'a Index,
    arch: &str,
    variant: Option<&str>,
) -> Result<&'a Descriptor, OciError> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == "linux"
                    && p.architecture == arch
                    && (variant.is_none() || p.variant.as_deref() == variant)
            })
        })
        .collect();
    // Prefer an exact variant match; for arm without a requested variant take v7,
    // then anything (the common default of container tools).
    let pick = candidates
        .iter()
        .find(|d| {
            variant.is_none()
                && arch == "arm"
                && d.platform.as_ref().unwrap().variant.as_deref() == Some("v7")
        })
        .or_else(|| candidates.first())
        .copied();
    pick.ok_or_else(|| OciError::NoPlatform {
        arch: match variant {
            Some(v) => format!("{arch}/{v}"),
            None => arch.to_string(),
        },
        available: index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| match &p.variant {
                Some(v) => format!("{}/{}/{}", p.os, p.architecture, v),
                None => format!("{}/{}", p.os, p.architecture),
            })
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// `oci-layout` file content of an image layout.
pub const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn picks_platform_from_docker_list() {
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D1}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D2}","size":2,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#
        );
        let (f, mt) = parse_manifest(doc.as_bytes(), None).unwrap();
        assert_eq!(mt, DOCKER_LIST);
        let Fetched::Index(i) = f else {
            panic!("not an index")
        };
        assert_eq!(
            select_platform(&i, "arm64", None)
                .unwrap()
                .digest
                .to_string(),
            D2
        );
        assert_eq!(
            select_platform(&i, "amd64", None)
                .unwrap()
                .digest
                .to_string(),
            D1
        );
        let err = select_platform(&i, "ppc64le", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux/arm64/v8"), "{err}");
    }

    #[test]
    fn refuses_bad_digests_and_unknown_types() {
        let doc = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:../../x","size":1},"layers":[]}"#;
        assert!(parse_manifest(doc.as_bytes(), None).is_err());
        let doc = r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(matches!(
            parse_manifest(doc.as_bytes(), None),
            Err(OciError::UnsupportedMediaType(_))
        ));
        assert_eq!(
            layer_compression(DOCKER_LAYER_GZIP).unwrap(),
            Compression::Gzip
        );
        assert!(layer_compression("application/x-evil").is_err());
    }
}
