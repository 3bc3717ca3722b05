//! Pushing a bundle's images into the target registry while the archive streams.
//!
//! Order, so that a failure anywhere leaves no tag pointing at anything new:
//! 1. layers, each as it arrives from the archive: skipped when the repository
//!    has it (HEAD), mounted from a repository that has it, else uploaded —
//!    streamed straight from the decompressor and finalized (PUT ?digest=) only
//!    after the archive reader verified its digest — that PUT runs while the
//!    next layer streams (see [`Pending`]);
//! 2. after the whole archive verified: configs, then every manifest by digest;
//! 3. (the caller signs here, so a tag never exists without its signature)
//! 4. tags.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::mpsc::sync_channel;

use bytes::Bytes;

use crate::bundle::model::{BlobEntry, BlobKind, BundleManifest};
use crate::bundle::reader::VerifyingRead;
use crate::digest::{Digest, HashingWriter};
use crate::oci;
use crate::reference::Reference;
use crate::registry::{Client, Mount, RegistryError};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("pushing {what} to {repo}: {source}")]
    Registry {
        what: String,
        repo: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("reading blob {digest} from the archive: {source}")]
    Archive {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} did not verify; its upload was cancelled")]
    NotVerified { digest: Digest },
    #[error("{0} is needed but was not in the archive")]
    MissingSmallBlob(Digest),
    #[error("manifest {digest}: {why}")]
    Manifest { digest: Digest, why: String },
}

/// How layers go to the registry. The bundle holds them uncompressed (so the
/// outer compressor sees across images); by default they are pushed as they
/// are — nothing to recompress, and CRI-O reads them as well as any. Some
/// registries or mirrors downstream want compressed layers: then each layer
/// is compressed on the way, deterministically (same bytes, same digest, so
/// a reload still finds it present), and the manifests are rewritten to
/// point at the compressed blobs. The configs — and so the image IDs and
/// the diff_ids CRI-O checks — do not change; the manifest digests (what
/// gets signed) do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LayerCompression {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl LayerCompression {
    /// The media type of a compressed `media_type` layer, or None when this
    /// layer stays as it is (already compressed, or no compression asked).
    fn compressed_type(self, media_type: &str) -> Option<&'static str> {
        let oci = media_type == oci::OCI_LAYER;
        let docker = media_type == oci::DOCKER_LAYER;
        match self {
            LayerCompression::None => None,
            LayerCompression::Gzip if oci => Some(oci::OCI_LAYER_GZIP),
            LayerCompression::Gzip if docker => Some(oci::DOCKER_LAYER_GZIP),
            // Docker's manifest has no zstd layer type: such a layer (rare:
            // bundles hold OCI manifests unless digests were preserved) goes
            // as it is.
            LayerCompression::Zstd if oci => Some(oci::OCI_LAYER_ZSTD),
            _ => None,
        }
    }
}

/// A layer as pushed, when it was compressed on the way.
#[derive(Clone, Debug)]
struct PushedLayer {
    digest: Digest,
    size: u64,
    media_type: &'static str,
}

/// An upload whose bytes were all sent and verified, waiting for its final
/// PUT. The registry makes the blob durable in that PUT (distribution fsyncs
/// it: 0.1 s for a 50 MB layer here), and with one stream at a time the
/// socket sat idle meanwhile; so the PUT — and the mounts into the other
/// repositories, which need the blob to exist — run on a second connection
/// while the next layer streams. Nothing can refer to the blob before
/// [`Pusher::push_manifests`], which settles it first.
#[derive(Debug)]
struct Pending {
    repo: String,
    location: String,
    digest: Digest,
    size: u64,
    /// Other repositories that need the blob: mounted from `repo`.
    mount_into: Vec<String>,
}

/// Finalize `p` and mount it where else it is needed; returns how many
/// mounts were made.
fn settle(client: &Client, p: &Pending) -> Result<usize, PushError> {
    let what = || format!("blob {}", p.digest);
    client
        .finish_upload(&p.repo, &p.location, &p.digest)
        .map_err(|source| PushError::Registry {
            what: what(),
            repo: p.repo.clone(),
            source: Box::new(source),
        })?;
    for r in &p.mount_into {
        let mounted =
            client
                .mount_blob(r, &p.repo, &p.digest)
                .map_err(|source| PushError::Registry {
                    what: format!("{} (mount from {})", what(), p.repo),
                    repo: r.clone(),
                    source: Box::new(source),
                })?;
        if let Mount::Upload(loc) = mounted {
            client.cancel_upload(r, &loc);
            return Err(PushError::Registry {
                what: what(),
                repo: r.clone(),
                source: Box::new(RegistryError::Status {
                    method: reqwest::Method::POST,
                    url: format!("{}/v2/{r}/blobs/uploads/?mount=…", client.host()),
                    status: reqwest::StatusCode::ACCEPTED,
                    body: "the registry refused a cross-repository mount".into(),
                }),
            });
        }
    }
    Ok(p.mount_into.len())
}

/// One name an image is pushed under, and the bundle image it is.
#[derive(Clone, Debug)]
pub struct PushName {
    pub image: usize,
    pub repository: String,
    pub tag: String,
}

impl PushName {
    /// `<registry>/<repo>:<tag>`: the identity a signature must carry.
    pub fn identity(&self, registry: &str) -> String {
        format!("{registry}/{}:{}", self.repository, self.tag)
    }
}

/// Every name of every image: `<name>`, plus the legacy-prefix aliases
/// (`k8s-c10f2/…` for c10f) when `legacy` is set.
pub fn push_names(m: &BundleManifest, legacy: bool) -> Vec<PushName> {
    let mut out = Vec::new();
    for (i, img) in m.images.iter().enumerate() {
        let r: Reference = img.reference();
        let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
        out.push(PushName {
            image: i,
            repository: r.repository.clone(),
            tag: tag.clone(),
        });
        if !legacy {
            continue;
        }
        if let Some(rest) = r.repository.strip_prefix(&format!("{}/", m.platform)) {
            for p in &m.legacy_prefixes {
                if p == &m.platform {
                    continue;
                }
                out.push(PushName {
                    image: i,
                    repository: format!("{p}/{rest}"),
                    tag: tag.clone(),
                });
            }
        }
    }
    out
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PushStats {
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_mounted: usize,
    pub blobs_present: usize,
    pub manifests_pushed: usize,
    pub tags_set: usize,
    pub tags_unchanged: usize,
}

pub struct Pusher<'a> {
    client: &'a Client,
    m: &'a BundleManifest,
    names: &'a [PushName],
    dry_run: bool,
    /// Layer digest → repositories that need it.
    need: BTreeMap<Digest, Vec<String>>,
    /// (repository, digest) known to be in the registry.
    present: BTreeSet<(String, Digest)>,
    /// Manifests and configs, kept (verified) until the end.
    small: BTreeMap<Digest, Vec<u8>>,
    compression: LayerCompression,
    /// Bundle layer digest → the compressed blob pushed for it.
    compressed: BTreeMap<Digest, PushedLayer>,
    /// Per image: the manifest as pushed, when it differs from the bundle's.
    rewritten: BTreeMap<usize, (Digest, Vec<u8>)>,
    /// The last uploaded layer, until its final PUT is done.
    pending: Option<Pending>,
    pub stats: PushStats,
}

impl Drop for Pusher<'_> {
    /// A load that fails before its last upload settled leaves no open
    /// upload session behind (best effort, as any cancel).
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            self.client.cancel_upload(&p.repo, &p.location);
        }
    }
}

impl<'a> Pusher<'a> {
    pub fn new(
        client: &'a Client,
        m: &'a BundleManifest,
        names: &'a [PushName],
        dry_run: bool,
        compression: LayerCompression,
    ) -> Pusher<'a> {
        let mut need: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for n in names {
            for l in &m.images[n.image].layers {
                let v = need.entry(l.clone()).or_default();
                if !v.contains(&n.repository) {
                    v.push(n.repository.clone());
                }
            }
        }
        Pusher {
            client,
            m,
            names,
            dry_run,
            need,
            present: BTreeSet::new(),
            small: BTreeMap::new(),
            compression,
            compressed: BTreeMap::new(),
            rewritten: BTreeMap::new(),
            pending: None,
            stats: PushStats::default(),
        }
    }

    fn reg_err(
        what: impl Into<String>,
        repo: &str,
    ) -> impl FnOnce(RegistryError) -> PushError + '_ {
        let what = what.into();
        move |source| PushError::Registry {
            what,
            repo: repo.to_string(),
            source: Box::new(source),
        }
    }

    fn is_present(&mut self, repo: &str, digest: &Digest) -> Result<bool, PushError> {
        if self.present.contains(&(repo.to_string(), digest.clone())) {
            return Ok(true);
        }
        let has = self
            .client
            .blob_size(repo, digest)
            .map_err(Self::reg_err(format!("blob {digest}"), repo))?
            .is_some();
        if has {
            self.present.insert((repo.to_string(), digest.clone()));
        }
        Ok(has)
    }

    /// Make `digest` present in each of `repos` without sending its bytes, if
    /// some repository already has it (`known_source`, or one of `repos`).
    /// Returns the repositories still missing it.
    fn mount_everywhere(
        &mut self,
        digest: &Digest,
        repos: &[String],
        known_source: Option<&str>,
    ) -> Result<Vec<String>, PushError> {
        let mut missing = Vec::new();
        let mut source: Option<String> = known_source.map(str::to_string);
        let mut any_present = false;
        for r in repos {
            if self.is_present(r, digest)? {
                any_present = true;
                source.get_or_insert(r.clone());
            } else {
                missing.push(r.clone());
            }
        }
        if any_present {
            self.stats.blobs_present += 1;
        }
        let Some(from) = source else {
            return Ok(missing);
        };
        let mut still = Vec::new();
        for r in missing {
            if self.dry_run {
                still.push(r);
                continue;
            }
            match self
                .client
                .mount_blob(&r, &from, digest)
                .map_err(Self::reg_err(
                    format!("blob {digest} (mount from {from})"),
                    &r,
                ))? {
                Mount::Mounted => {
                    self.present.insert((r.clone(), digest.clone()));
                    self.stats.blobs_mounted += 1;
                }
                Mount::Upload(loc) => {
                    self.client.cancel_upload(&r, &loc);
                    still.push(r);
                }
            }
        }
        Ok(still)
    }

    /// True when the rest of the archive has nothing this load needs: every
    /// manifest and config was read (and verified) already, and every layer is
    /// in every repository that needs it. A reload then stops reading — the
    /// registry's blobs are content-addressed, so skipped bytes could change
    /// nothing — which makes reloading an already-loaded bundle take seconds.
    pub fn nothing_left_to_read(&mut self) -> Result<bool, PushError> {
        if self.compression != LayerCompression::None {
            // The compressed digests are known only by compressing.
            return Ok(false);
        }
        for img in &self.m.images {
            if !self.small.contains_key(&img.manifest) || !self.small.contains_key(&img.config) {
                return Ok(false);
            }
        }
        let need: Vec<(Digest, Vec<String>)> = self
            .need
            .iter()
            .map(|(d, r)| (d.clone(), r.clone()))
            .collect();
        for (digest, repos) in need {
            for r in repos {
                if !self.is_present(&r, &digest)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Handle one blob as the archive yields it.
    pub fn on_blob(
        &mut self,
        blob: &BlobEntry,
        reader: &mut dyn VerifyingRead,
    ) -> Result<(), PushError> {
        let arch_err = |source| PushError::Archive {
            digest: blob.digest.clone(),
            source,
        };
        if blob.kind != BlobKind::Layer {
            let mut buf = Vec::with_capacity(blob.size as usize);
            reader.read_to_end(&mut buf).map_err(arch_err)?;
            self.small.insert(blob.digest.clone(), buf);
            return Ok(());
        }
        let repos = self.need.get(&blob.digest).cloned().unwrap_or_default();
        if let Some(media_type) = self.compression.compressed_type(&blob.media_type) {
            if !repos.is_empty() && !self.dry_run {
                return self.on_layer_compressed(blob, reader, repos, media_type);
            }
        }
        let missing = if repos.is_empty() {
            vec![]
        } else {
            self.mount_everywhere(&blob.digest, &repos, None)?
        };
        if missing.is_empty() || self.dry_run {
            // Nothing to send; the caller's reader still verifies the bytes.
            io::copy(reader, &mut io::sink()).map_err(arch_err)?;
            return Ok(());
        }
        self.upload_and_mount(&blob.digest, blob.size, &missing, reader)
    }

    /// Upload `size` bytes of `digest` from `reader` into the first of
    /// `missing`; it is finalized, and mounted into the others, while the
    /// next layer streams (or by [`Pusher::settle_pending`]).
    fn upload_and_mount(
        &mut self,
        digest: &Digest,
        size: u64,
        missing: &[String],
        reader: &mut dyn VerifyingRead,
    ) -> Result<(), PushError> {
        let first = missing[0].clone();
        let location = self.upload_stream(&first, digest, reader)?;
        self.pending = Some(Pending {
            repo: first,
            location,
            digest: digest.clone(),
            size,
            mount_into: missing[1..].to_vec(),
        });
        Ok(())
    }

    /// Count a settled upload and note where its blob now is.
    fn record(&mut self, p: Pending, mounted: usize) {
        self.stats.blobs_uploaded += 1;
        self.stats.bytes_uploaded += p.size;
        self.stats.blobs_mounted += mounted;
        for r in p.mount_into {
            self.present.insert((r, p.digest.clone()));
        }
        self.present.insert((p.repo, p.digest));
    }

    /// Finalize the pending upload, if any, here and now.
    fn settle_pending(&mut self) -> Result<(), PushError> {
        if let Some(p) = self.pending.take() {
            match settle(self.client, &p) {
                Ok(mounted) => self.record(p, mounted),
                Err(e) => {
                    self.client.cancel_upload(&p.repo, &p.location);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Compress a layer into an anonymous temporary file (its digest is known
    /// only at the end), then push that unless the registry has it already.
    fn on_layer_compressed(
        &mut self,
        blob: &BlobEntry,
        reader: &mut dyn VerifyingRead,
        repos: Vec<String>,
        media_type: &'static str,
    ) -> Result<(), PushError> {
        let arch_err = |source| PushError::Archive {
            digest: blob.digest.clone(),
            source,
        };
        let spill = tempfile::tempfile().map_err(arch_err)?;
        let (mut spill, digest, size) =
            compress_layer(reader, spill, self.compression).map_err(arch_err)?;
        if !reader.verified() {
            return Err(PushError::NotVerified {
                digest: blob.digest.clone(),
            });
        }
        self.compressed.insert(
            blob.digest.clone(),
            PushedLayer {
                digest: digest.clone(),
                size,
                media_type,
            },
        );
        let missing = self.mount_everywhere(&digest, &repos, None)?;
        if missing.is_empty() {
            return Ok(());
        }
        spill.seek(SeekFrom::Start(0)).map_err(arch_err)?;
        self.upload_and_mount(&digest, size, &missing, &mut Hashed(spill))
    }

    /// The manifest of image `i` as pushed: its digest.
    pub fn manifest_digest(&self, i: usize) -> &Digest {
        match self.rewritten.get(&i) {
            Some((d, _)) => d,
            None => &self.m.images[i].manifest,
        }
    }

    /// The manifest of image `i` as pushed: digest and bytes.
    fn manifest_of(&self, i: usize) -> Result<(Digest, &[u8]), PushError> {
        if let Some((d, b)) = self.rewritten.get(&i) {
            return Ok((d.clone(), b));
        }
        let img = &self.m.images[i];
        self.small
            .get(&img.manifest)
            .map(|b| (img.manifest.clone(), b.as_slice()))
            .ok_or_else(|| PushError::MissingSmallBlob(img.manifest.clone()))
    }

    /// Point manifests at the compressed layers (after the archive verified).
    fn rewrite_manifests(&mut self) -> Result<(), PushError> {
        if self.compressed.is_empty() {
            return Ok(());
        }
        for (i, img) in self.m.images.iter().enumerate() {
            if !img.layers.iter().any(|l| self.compressed.contains_key(l)) {
                continue;
            }
            let bytes = self
                .small
                .get(&img.manifest)
                .ok_or_else(|| PushError::MissingSmallBlob(img.manifest.clone()))?;
            let new = rewrite_layers(bytes, &self.compressed).map_err(|e| PushError::Manifest {
                digest: img.manifest.clone(),
                why: e.to_string(),
            })?;
            self.rewritten.insert(i, (Digest::of(&new), new));
        }
        Ok(())
    }

    /// Stream one blob: the archive is read (decompressed, hashed) on this
    /// thread in chunks of [`UPLOAD_CHUNK`]; another thread PATCHes each chunk
    /// while the next is read, through a channel of one, so at most three
    /// chunks are in memory. Meanwhile a third settles the previous upload
    /// ([`Pending`]). Returns the upload's location, to be finalized only
    /// because the reader verified the blob.
    fn upload_stream(
        &mut self,
        repo: &str,
        digest: &Digest,
        reader: &mut dyn VerifyingRead,
    ) -> Result<String, PushError> {
        let client = self.client;
        let loc = client
            .start_upload(repo)
            .map_err(Self::reg_err(format!("blob {digest}"), repo))?;
        let previous = self.pending.take();
        let (tx, rx) = sync_channel::<Bytes>(1);
        let (pump, patch, settled) = std::thread::scope(|s| {
            let settling = previous
                .as_ref()
                .map(|p| s.spawn(move || settle(client, p)));
            let start = loc.clone();
            let h = s.spawn(move || {
                let mut loc = start;
                let mut offset = 0u64;
                for chunk in rx {
                    let len = chunk.len() as u64;
                    loc = client.patch_upload(repo, &loc, offset, chunk)?;
                    offset += len;
                }
                Ok(loc)
            });
            let pump: io::Result<()> = loop {
                match read_chunk(reader, UPLOAD_CHUNK) {
                    Ok(chunk) if chunk.is_empty() => break Ok(()),
                    Ok(chunk) => {
                        if tx.send(Bytes::from(chunk)).is_err() {
                            // The upload side ended early; it reports why.
                            break Ok(());
                        }
                    }
                    Err(e) => break Err(e),
                }
            };
            drop(tx);
            let patch = h.join().expect("upload thread");
            let settled = settling.map(|h| h.join().expect("settling thread"));
            (pump, patch, settled)
        });
        let cancel = |e: PushError| {
            client.cancel_upload(repo, &loc);
            Err(e)
        };
        if let (Some(p), Some(settled)) = (previous, settled) {
            match settled {
                Ok(mounted) => self.record(p, mounted),
                Err(e) => {
                    client.cancel_upload(&p.repo, &p.location);
                    return cancel(e);
                }
            }
        }
        if let Err(e) = pump {
            return cancel(PushError::Archive {
                digest: digest.clone(),
                source: e,
            });
        }
        let next = match patch {
            Ok(n) => n,
            Err(e) => return cancel(Self::reg_err(format!("blob {digest}"), repo)(e)),
        };
        if !reader.verified() {
            return cancel(PushError::NotVerified {
                digest: digest.clone(),
            });
        }
        Ok(next)
    }

    /// After the archive verified: configs into every repository, then each
    /// manifest by digest. Returns nothing; tags come later (`tag_all`).
    pub fn push_manifests(&mut self) -> Result<(), PushError> {
        if self.dry_run {
            return Ok(());
        }
        self.settle_pending()?;
        self.rewrite_manifests()?;
        let names = self.names;
        for n in names {
            let img = &self.m.images[n.image];
            let config = self
                .small
                .get(&img.config)
                .cloned()
                .ok_or_else(|| PushError::MissingSmallBlob(img.config.clone()))?;
            let known = self
                .present
                .iter()
                .find(|(_, d)| d == &img.config)
                .map(|(r, _)| r.clone());
            let left = self.mount_everywhere(
                &img.config,
                std::slice::from_ref(&n.repository),
                known.as_deref(),
            )?;
            if !left.is_empty() {
                self.client
                    .push_blob_bytes(&n.repository, &img.config, &config)
                    .map_err(Self::reg_err(
                        format!("config {}", img.config),
                        &n.repository,
                    ))?;
                self.present
                    .insert((n.repository.clone(), img.config.clone()));
                self.stats.blobs_uploaded += 1;
                self.stats.bytes_uploaded += config.len() as u64;
            }
            let (digest, manifest) = self.manifest_of(n.image)?;
            let exists = self
                .client
                .head_manifest(&n.repository, &digest.to_string())
                .map_err(Self::reg_err(format!("manifest {digest}"), &n.repository))?
                .is_some();
            if !exists {
                self.client
                    .put_manifest(
                        &n.repository,
                        &digest.to_string(),
                        manifest,
                        &img.manifest_media_type,
                    )
                    .map_err(Self::reg_err(format!("manifest {digest}"), &n.repository))?;
                self.stats.manifests_pushed += 1;
            }
        }
        Ok(())
    }

    /// Point every tag at its manifest (skipping tags already right).
    pub fn tag_all(&mut self) -> Result<(), PushError> {
        for n in self.names {
            let img = &self.m.images[n.image];
            let current = self
                .client
                .head_manifest(&n.repository, &n.tag)
                .map_err(Self::reg_err(format!("tag {}", n.tag), &n.repository))?;
            let (digest, manifest) = self.manifest_of(n.image)?;
            if current.as_ref() == Some(&digest) {
                self.stats.tags_unchanged += 1;
                continue;
            }
            if self.dry_run {
                self.stats.tags_set += 1;
                continue;
            }
            self.client
                .put_manifest(&n.repository, &n.tag, manifest, &img.manifest_media_type)
                .map_err(Self::reg_err(format!("tag {}", n.tag), &n.repository))?;
            self.stats.tags_set += 1;
        }
        Ok(())
    }
}

/// Compress `r` into `file` as `how` says; returns the file and the digest
/// and size of what was written. Deterministic: one thread, fixed level, no
/// timestamp, so the same layer always gives the same blob.
fn compress_layer(
    r: &mut dyn Read,
    file: std::fs::File,
    how: LayerCompression,
) -> io::Result<(std::fs::File, Digest, u64)> {
    let sink = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file));
    let sink = match how {
        LayerCompression::Gzip => {
            // The level `gzip` and containers/image use by default.
            let mut e = flate2::write::GzEncoder::new(sink, flate2::Compression::new(6));
            io::copy(r, &mut e)?;
            e.finish()?
        }
        LayerCompression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(sink, 3)?;
            io::copy(r, &mut e)?;
            e.finish()?
        }
        LayerCompression::None => unreachable!("only compressed layers come here"),
    };
    let (buffered, digest, len) = sink.finish();
    let file = buffered.into_inner().map_err(|e| e.into_error())?;
    Ok((file, digest, len))
}

/// A compressed layer in its temporary file: hashed while it was written, so
/// its digest is known before the upload starts.
struct Hashed(std::fs::File);

impl Read for Hashed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl VerifyingRead for Hashed {
    fn verified(&self) -> bool {
        true
    }
}

/// `manifest` with each layer found in `pushed` replaced by its compressed
/// blob (digest, size, media type); everything else kept.
fn rewrite_layers(
    manifest: &[u8],
    pushed: &BTreeMap<Digest, PushedLayer>,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut v: serde_json::Value = serde_json::from_slice(manifest)?;
    if let Some(layers) = v.get_mut("layers").and_then(|l| l.as_array_mut()) {
        for l in layers {
            let Some(d) = l
                .get("digest")
                .and_then(|d| d.as_str())
                .and_then(|d| d.parse::<Digest>().ok())
            else {
                continue;
            };
            if let Some(p) = pushed.get(&d) {
                l["digest"] = p.digest.to_string().into();
                l["size"] = p.size.into();
                l["mediaType"] = p.media_type.into();
            }
        }
    }
    serde_json::to_vec(&v)
}

/// How much of a layer one PATCH carries. Large enough that per-request costs
/// vanish, small enough that three in flight stay well inside load's memory
/// budget.
const UPLOAD_CHUNK: usize = 4 << 20;

/// Read up to `max` bytes; fewer only at the end of the stream.
fn read_chunk(r: &mut dyn VerifyingRead, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(max);
    (&mut *r).take(max as u64).read_to_end(&mut buf)?;
    Ok(buf)
}
