//! Pulling an image set from a source registry into the build cache.
//!
//! Resolution (manifests, configs: small) happens first, so that a missing image
//! or platform fails the build before any layer is downloaded. Layers are then
//! downloaded in parallel, decompressed while they stream, hashed twice (the
//! compressed digest from the manifest, the diff_id from the config) and only
//! stored when both match.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::cache::Cache;
use crate::digest::{Digest, Hasher};
use crate::oci::{self, Compression, Descriptor, Fetched, ImageConfig, Manifest};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::{self, Client, RegistryError};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{image}: {source}")]
    Registry {
        image: String,
        #[source]
        source: RegistryError,
    },
    #[error("{image}: {source}")]
    Oci {
        image: String,
        #[source]
        source: oci::OciError,
    },
    #[error("{image}: layer {layer}: {why}")]
    Layer {
        image: String,
        layer: Digest,
        why: String,
    },
    #[error("{image}: the config says architecture {found}, expected {expected}")]
    WrongArch {
        image: String,
        found: String,
        expected: String,
    },
    /// A digest pinned on a multi-arch index: a bundle carries one
    /// architecture, and a registry refuses an index whose other manifests
    /// it doesn't hold, so that digest could never be pulled on the target.
    #[error("{image} is a multi-arch index, and a bundle holds one architecture ({arch}): that digest cannot exist on the target registry. Pin the {arch} manifest instead: {pin}")]
    PinnedIndex {
        image: String,
        arch: String,
        pin: String,
    },
    #[error("cache: {0}")]
    Cache(#[from] io::Error),
    #[error("interrupted")]
    Interrupted,
}

/// An image resolved at the source for one platform.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    /// Bundle name (registry-relative), e.g. `c10f/kube-apiserver:v1.26.9`.
    pub name: String,
    pub role: Option<String>,
    pub source: Reference,
    /// What the source tag pointed at (an index or a manifest).
    pub source_digest: Digest,
    /// The per-platform manifest at the source.
    pub manifest_digest: Digest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_media_type: String,
    pub manifest: Manifest,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfig,
    /// Keep the original blobs byte for byte.
    pub preserve: bool,
}

impl ResolvedImage {
    /// The layers as stored in the bundle: (compressed source descriptor, diff_id).
    pub fn layers(&self) -> impl Iterator<Item = (&Descriptor, &Digest)> {
        self.manifest
            .layers
            .iter()
            .zip(self.config.rootfs.diff_ids.iter())
    }
}

/// Ask the source for `source`, select `arch` from an index, fetch and check the config.
pub fn resolve(
    client: &Client,
    name: &str,
    role: Option<&str>,
    source: &Reference,
    arch: &str,
    variant: Option<&str>,
    preserve: bool,
) -> Result<ResolvedImage, PullError> {
    let image = source.to_string();
    let reg = |source| PullError::Registry {
        image: image.clone(),
        source,
    };
    let oci_err = |source| PullError::Oci {
        image: image.clone(),
        source,
    };
    let top = client
        .get_manifest(&source.repository, &source.manifest_reference())
        .map_err(reg)?;
    let (fetched, _) = oci::parse_manifest(&top.bytes, Some(&top.media_type)).map_err(oci_err)?;
    let (manifest, m_bytes, m_type, m_digest) = match fetched {
        Fetched::Image(m) => (
            m,
            top.bytes.clone(),
            top.media_type.clone(),
            top.digest.clone(),
        ),
        Fetched::Index(index) => {
            let d = oci::select_platform(&index, arch, variant).map_err(oci_err)?;
            if preserve && source.digest.is_some() {
                let pin = Reference {
                    tag: None,
                    digest: Some(d.digest.clone()),
                    ..source.clone()
                };
                return Err(PullError::PinnedIndex {
                    image,
                    arch: arch.to_string(),
                    pin: pin.to_string(),
                });
            }
            let child = client
                .get_manifest(&source.repository, &d.digest.to_string())
                .map_err(reg)?;
            let (f, mt) =
                oci::parse_manifest(&child.bytes, Some(&child.media_type)).map_err(oci_err)?;
            match f {
                Fetched::Image(m) => (m, child.bytes, mt, child.digest),
                Fetched::Index(_) => {
                    return Err(oci_err(oci::OciError::UnsupportedMediaType(
                        "an index nested in an index".into(),
                    )))
                }
            }
        }
    };
    let config_bytes = client
        .get_blob_bytes(&source.repository, &manifest.config.digest, 8 << 20)
        .map_err(reg)?;
    let config = oci::parse_config(&config_bytes).map_err(oci_err)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(oci_err(oci::OciError::LayerCountMismatch {
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        }));
    }
    if !config.architecture.is_empty() && config.architecture != arch {
        return Err(PullError::WrongArch {
            image,
            found: config.architecture.clone(),
            expected: arch.to_string(),
        });
    }
    for l in &manifest.layers {
        oci::layer_compression(&l.media_type).map_err(oci_err)?;
    }
    Ok(ResolvedImage {
        name: name.to_string(),
        role: role.map(str::to_string),
        source: source.clone(),
        source_digest: top.digest,
        manifest_digest: m_digest,
        manifest_bytes: m_bytes,
        manifest_media_type: m_type,
        manifest,
        config_bytes,
        config,
        preserve,
    })
}

/// One blob to fetch into the cache.
#[derive(Clone, Debug)]
pub struct LayerJob {
    /// Where to fetch it from (first image that uses it).
    pub image: String,
    pub repository: String,
    /// The blob as the source registry stores it.
    pub source: Descriptor,
    /// What is stored in the cache: the diff_id (decompressed) or, when
    /// preserving, the source digest itself.
    pub stored: Digest,
    pub decompress: bool,
    /// Most bytes the stored (decompressed) layer may have: a small gzip or
    /// zstd bomb would otherwise fill the cache before the diff_id check.
    pub max_stored: u64,
}

/// Default for [`LayerJob::max_stored`] (`build --max-layer-size`): the
/// largest layers of a kubernetes set are a few hundred MB.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 4 << 30;

/// The distinct layer blobs of a set of images, in first-use order.
pub fn layer_jobs(images: &[ResolvedImage]) -> Vec<LayerJob> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for img in images {
        for (desc, diff_id) in img.layers() {
            let decompress = !img.preserve;
            let stored = if decompress {
                diff_id.clone()
            } else {
                desc.digest.clone()
            };
            if seen.insert(stored.clone(), ()).is_none() {
                out.push(LayerJob {
                    image: img.source.to_string(),
                    repository: img.source.repository.clone(),
                    source: desc.clone(),
                    stored,
                    decompress,
                    max_stored: DEFAULT_MAX_LAYER_SIZE,
                });
            }
        }
    }
    out
}

/// Download every job into the cache with `jobs` threads. Returns the stored
/// size of each blob. Stops at the first error (the others finish their current
/// blob, nothing half-written stays in the cache).
pub fn download(
    client: &Client,
    cache: &Cache,
    jobs_list: &[LayerJob],
    jobs: usize,
    attempts: u32,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<BTreeMap<Digest, u64>, PullError> {
    let sizes = Mutex::new(BTreeMap::new());
    let next = Mutex::new(0usize);
    let first_error: Mutex<Option<PullError>> = Mutex::new(None);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) || cancel.load(Ordering::Relaxed) {
                    return;
                }
                let i = {
                    let mut n = next.lock().unwrap();
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(job) = jobs_list.get(i) else { return };
                match fetch_one(client, cache, job, attempts, progress, cancel) {
                    Ok(size) => {
                        sizes.lock().unwrap().insert(job.stored.clone(), size);
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(PullError::Interrupted);
    }
    Ok(sizes.into_inner().unwrap())
}

fn fetch_one(
    client: &Client,
    cache: &Cache,
    job: &LayerJob,
    attempts: u32,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<u64, PullError> {
    if let Some(size) = cache.verified_size(&job.stored)? {
        return Ok(size);
    }
    let short = &job.source.digest.hex()[..12];
    let label = format!(
        "{} {short}",
        job.image.rsplit('/').next().unwrap_or(&job.image)
    );
    let task = progress.bytes_task(&label, Some(job.source.size));
    let mut writer = cache.writer()?;
    let layer_err = |why: String| PullError::Layer {
        image: job.image.clone(),
        layer: job.source.digest.clone(),
        why,
    };
    let result = registry::retry(attempts, || {
        if cancel.load(Ordering::Relaxed) {
            return Err(RegistryError::Cancelled);
        }
        writer.reset().map_err(|source| RegistryError::Io {
            what: "cache".into(),
            source,
        })?;
        let resp = client.get_blob(&job.repository, &job.source.digest)?;
        let mut compressed = CountingHashReader {
            inner: resp,
            hasher: Hasher::new(),
            task: &task,
            cancel,
            limit: job.source.size,
        };
        let io_err = |source: io::Error| RegistryError::Io {
            what: format!("layer {}", job.source.digest),
            source,
        };
        let mut out = HashingSink {
            inner: &mut writer,
            hasher: Hasher::new(),
            limit: job.max_stored,
        };
        let compression = if job.decompress {
            oci::layer_compression(&job.source.media_type).unwrap_or(Compression::None)
        } else {
            Compression::None
        };
        match compression {
            Compression::None => {
                io::copy(&mut compressed, &mut out).map_err(io_err)?;
            }
            Compression::Gzip => {
                let mut d = flate2::read::MultiGzDecoder::new(&mut compressed);
                io::copy(&mut d, &mut out).map_err(io_err)?;
            }
            Compression::Zstd => {
                let mut d = zstd::stream::read::Decoder::new(&mut compressed).map_err(io_err)?;
                io::copy(&mut d, &mut out).map_err(io_err)?;
            }
        }
        // Drain what the decompressor did not need (trailing padding), so the
        // compressed digest covers the whole blob.
        io::copy(&mut compressed, &mut io::sink()).map_err(io_err)?;
        let size = compressed.hasher.len();
        let c_digest = compressed.hasher.clone().finish();
        let (s_len, s_digest) = (out.hasher.len(), out.hasher.clone().finish());
        Ok((c_digest, size, s_digest, s_len))
    });
    let (c_digest, c_size, s_digest, s_len) = match result {
        Ok(v) => v,
        Err(_) if cancel.load(Ordering::Relaxed) => return Err(PullError::Interrupted),
        Err(e) => {
            return Err(PullError::Registry {
                image: job.image.clone(),
                source: e,
            })
        }
    };
    if c_digest != job.source.digest || c_size != job.source.size {
        return Err(layer_err(format!(
            "the registry sent {c_size} bytes with digest {c_digest}, the manifest says {} bytes",
            job.source.size
        )));
    }
    if s_digest != job.stored {
        return Err(layer_err(format!(
            "decompressed content has digest {s_digest}, but the image config's diff_id is {}",
            job.stored
        )));
    }
    writer.commit(&job.stored)?;
    task.finish(&format!("{} → {} bytes", c_size, s_len));
    Ok(s_len)
}

/// Reads the compressed stream: hashes, counts, reports progress, refuses more
/// bytes than the manifest declared (a registry can't feed us an endless blob).
struct CountingHashReader<'a, R> {
    inner: R,
    hasher: Hasher,
    task: &'a crate::progress::Task,
    cancel: &'a AtomicBool,
    limit: u64,
}

impl<R: Read> Read for CountingHashReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("interrupted"));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.task.inc(n as u64);
        if self.hasher.len() > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than the {} bytes the manifest declares", self.limit),
            ));
        }
        Ok(n)
    }
}

struct HashingSink<'a, W> {
    inner: &'a mut W,
    hasher: Hasher,
    /// Refuse to store more than this.
    limit: u64,
}

impl<W: Write> Write for HashingSink<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.hasher.len() + buf.len() as u64 > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "decompressed, the layer is larger than {} bytes (--max-layer-size raises the limit)",
                    self.limit
                ),
            ));
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip bomb stops at the limit instead of filling the cache.
    #[test]
    fn the_stored_layer_is_capped() {
        let zeros = vec![0u8; 4 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let bomb = gz.finish().unwrap();
        let mut stored = Vec::new();
        let mut sink = HashingSink {
            inner: &mut stored,
            hasher: Hasher::new(),
            limit: 1 << 20,
        };
        let mut d = flate2::read::MultiGzDecoder::new(&bomb[..]);
        let err = io::copy(&mut d, &mut sink).unwrap_err();
        assert!(err.to_string().contains("--max-layer-size"), "{err}");
        assert!(stored.len() <= 1 << 20, "{} bytes stored", stored.len());
    }
}
