//! From resolved images and cached layers to the bundle's content: rewritten
//! manifests, the image layout's index.json, bundle.json, and the ordered list
//! of blobs to write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::model::{
    BlobEntry, BlobKind, BundleManifest, FileEntry, ImageEntry, FORMAT, FORMAT_VERSION,
};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::oci::{self, Descriptor, Index, Manifest, Platform};
use crate::pull::ResolvedImage;

/// Where a blob's bytes come from when writing the archive.
#[derive(Clone, Debug)]
pub enum BlobData {
    Memory(Vec<u8>),
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct BlobSource {
    pub entry: BlobEntry,
    pub data: BlobData,
}

/// Everything the writer needs.
pub struct Assembled {
    pub manifest: BundleManifest,
    pub oci_layout: Vec<u8>,
    pub index_json: Vec<u8>,
    /// In archive order: manifests, configs, then layers in first-use order
    /// (the base layers of related images end up next to each other).
    pub blobs: Vec<BlobSource>,
}

/// Facts about the bundle that are not in the images.
pub struct BundleInfo {
    pub platform: String,
    pub platform_aliases: Vec<String>,
    pub legacy_prefixes: Vec<String>,
    pub kube_version: Option<String>,
    pub arch: String,
    pub variant: Option<String>,
    pub profile: String,
    pub flannel_tag: Option<String>,
    pub flannel_cni_plugin_tag: Option<String>,
    /// See [`BundleManifest::kubeadm_versions`].
    pub kubeadm_versions: Vec<String>,
    pub created: String,
    /// `build --expires`: RFC 3339.
    pub expires: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("layer {0} is not in the build cache")]
    MissingLayer(Digest),
    #[error("two images are named {0}")]
    DuplicateName(String),
}

pub fn assemble(
    info: BundleInfo,
    images: &[ResolvedImage],
    cache: &Cache,
    stored_sizes: &BTreeMap<Digest, u64>,
) -> Result<Assembled, AssembleError> {
    let mut manifests: Vec<BlobSource> = Vec::new();
    let mut configs: Vec<BlobSource> = Vec::new();
    let mut layers: Vec<BlobSource> = Vec::new();
    let mut seen: BTreeSet<Digest> = BTreeSet::new();
    let mut entries = Vec::new();
    let mut index_entries = Vec::new();
    let mut names = BTreeSet::new();

    for img in images {
        if !names.insert(img.name.clone()) {
            return Err(AssembleError::DuplicateName(img.name.clone()));
        }
        // Layers: uncompressed (digest = diff_id) unless preserving.
        let mut layer_descs = Vec::new();
        for (desc, diff_id) in img.layers() {
            let stored = if img.preserve {
                desc.digest.clone()
            } else {
                diff_id.clone()
            };
            let size = *stored_sizes
                .get(&stored)
                .ok_or_else(|| AssembleError::MissingLayer(stored.clone()))?;
            let media_type = if img.preserve {
                desc.media_type.clone()
            } else {
                oci::OCI_LAYER.to_string()
            };
            if seen.insert(stored.clone()) {
                layers.push(BlobSource {
                    entry: BlobEntry {
                        digest: stored.clone(),
                        size,
                        media_type: media_type.clone(),
                        kind: BlobKind::Layer,
                    },
                    data: BlobData::File(cache.path(&stored)),
                });
            }
            layer_descs.push(Descriptor {
                media_type,
                digest: stored,
                size,
                platform: None,
                annotations: desc.annotations.clone(),
            });
        }

        // The manifest: the original bytes when preserving, else an OCI manifest
        // over the uncompressed layers with the unchanged config (same image ID).
        let (m_bytes, m_type, config_type) = if img.preserve {
            (
                img.manifest_bytes.clone(),
                img.manifest_media_type.clone(),
                img.manifest.config.media_type.clone(),
            )
        } else {
            let config_type = if img.manifest.config.media_type == oci::DOCKER_CONFIG {
                oci::OCI_CONFIG.to_string()
            } else {
                img.manifest.config.media_type.clone()
            };
            let m = Manifest {
                schema_version: 2,
                media_type: Some(oci::OCI_MANIFEST.to_string()),
                config: Descriptor {
                    media_type: config_type.clone(),
                    digest: img.manifest.config.digest.clone(),
                    size: img.config_bytes.len() as u64,
                    platform: None,
                    annotations: BTreeMap::new(),
                },
                layers: layer_descs.clone(),
                annotations: img.manifest.annotations.clone(),
            };
            (
                serde_json::to_vec(&m).expect("serializable"),
                oci::OCI_MANIFEST.to_string(),
                config_type,
            )
        };
        let m_digest = Digest::of(&m_bytes);
        let config_digest = img.manifest.config.digest.clone();
        if seen.insert(config_digest.clone()) {
            configs.push(BlobSource {
                entry: BlobEntry {
                    digest: config_digest.clone(),
                    size: img.config_bytes.len() as u64,
                    media_type: config_type,
                    kind: BlobKind::Config,
                },
                data: BlobData::Memory(img.config_bytes.clone()),
            });
        }
        if seen.insert(m_digest.clone()) {
            manifests.push(BlobSource {
                entry: BlobEntry {
                    digest: m_digest.clone(),
                    size: m_bytes.len() as u64,
                    media_type: m_type.clone(),
                    kind: BlobKind::Manifest,
                },
                data: BlobData::Memory(m_bytes.clone()),
            });
        }
        let size = m_bytes.len() as u64
            + img.config_bytes.len() as u64
            + layer_descs.iter().map(|l| l.size).sum::<u64>();
        // A Docker manifest kept byte for byte stays out of index.json (see
        // `ImageEntry::in_layout`).
        if m_type == oci::OCI_MANIFEST {
            index_entries.push(Descriptor {
                media_type: m_type.clone(),
                digest: m_digest.clone(),
                size: m_bytes.len() as u64,
                platform: Some(Platform {
                    architecture: info.arch.clone(),
                    os: "linux".into(),
                    variant: info.variant.clone(),
                }),
                annotations: BTreeMap::from([(
                    oci::REF_NAME_ANNOTATION.to_string(),
                    img.name.clone(),
                )]),
            });
        }
        entries.push(ImageEntry {
            name: img.name.clone(),
            role: img.role.clone(),
            source: img.source.to_string(),
            source_digest: img.source_digest.clone(),
            source_manifest_digest: img.manifest_digest.clone(),
            manifest: m_digest,
            manifest_media_type: m_type,
            config: config_digest,
            layers: layer_descs.into_iter().map(|d| d.digest).collect(),
            size,
            preserved: img.preserve,
        });
    }

    let index = Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.to_string()),
        manifests: index_entries,
        annotations: BTreeMap::new(),
    };
    let index_json = serde_json::to_vec(&index).expect("serializable");
    let oci_layout = oci::OCI_LAYOUT_FILE.to_vec();
    let mut blobs = manifests;
    blobs.extend(configs);
    blobs.extend(layers);

    let manifest = BundleManifest {
        format: FORMAT.to_string(),
        format_version: FORMAT_VERSION,
        platform: info.platform,
        platform_aliases: info.platform_aliases,
        legacy_prefixes: info.legacy_prefixes,
        kube_version: info.kube_version,
        arch: info.arch,
        variant: info.variant,
        profile: info.profile,
        flannel_tag: info.flannel_tag,
        flannel_cni_plugin_tag: info.flannel_cni_plugin_tag,
        kubeadm_versions: info.kubeadm_versions,
        created: info.created,
        expires: info.expires,
        tool: concat!("u7s-bundle ", env!("CARGO_PKG_VERSION")).to_string(),
        layout: vec![
            FileEntry {
                path: "oci-layout".into(),
                digest: Digest::of(&oci_layout),
                size: oci_layout.len() as u64,
            },
            FileEntry {
                path: "index.json".into(),
                digest: Digest::of(&index_json),
                size: index_json.len() as u64,
            },
        ],
        images: entries,
        blobs: blobs.iter().map(|b| b.entry.clone()).collect(),
        delta: None,
    };
    Ok(Assembled {
        manifest,
        oci_layout,
        index_json,
        blobs,
    })
}
