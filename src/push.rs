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
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::bundle::model::{BlobEntry, BlobKind, BundleManifest};
use crate::bundle::reader::VerifyingRead;
use crate::digest::{Digest, HashingWriter};
use crate::oci;
use crate::reference::Reference;
use crate::registry::{body_channel, Client, Mount, RegistryError};

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

/// An upload whose bytes were all handed to the registry and verified, and
/// which is not final yet. Each blob goes in one streaming PATCH; the
/// registry answers it only after fsyncing the data (and its hash state),
/// and the final PUT links the blob (more fsyncs). With one upload at a time
/// the socket sat idle meanwhile, so the answer, the PUT and the mounts into
/// the other repositories (which need the blob to exist) wait on other
/// threads while the next layer streams on a second connection. Nothing can
/// refer to the blob before [`Pusher::push_manifests`], which settles it
/// first.
#[derive(Debug)]
struct Pending {
    repo: String,
    /// The upload session: the POST's location, then the PATCH's.
    location: String,
    /// The PATCH carrying the bytes, until it is answered.
    patch: Option<JoinHandle<Result<String, RegistryError>>>,
    digest: Digest,
    size: u64,
    /// Other repositories that need the blob: mounted from `repo`.
    mount_into: Vec<String>,
}

impl Pending {
    /// Wait for the PATCH's answer; on success the session's new location.
    fn patched(&mut self) -> Result<(), RegistryError> {
        if let Some(h) = self.patch.take() {
            self.location = h.join().expect("upload thread")?;
        }
        Ok(())
    }

    /// Give the upload up: wait for the PATCH to end (its body fails as soon
    /// as the archive side stopped) and cancel the session (best effort).
    /// Returns the PATCH's own failure, if it had one.
    fn abandon(mut self, client: &Client) -> Option<RegistryError> {
        let failed = self.patched().err();
        client.cancel_upload(&self.repo, &self.location);
        failed
    }
}

/// Finalize `p` and mount it where else it is needed; returns how many
/// mounts were made.
fn settle(client: &Client, p: &mut Pending) -> Result<usize, PushError> {
    let blob = format!("blob {}", p.digest);
    let what = || blob.clone();
    let err = |what: String, repo: &str| {
        let repo = repo.to_string();
        move |source| PushError::Registry {
            what,
            repo,
            source: Box::new(source),
        }
    };
    p.patched().map_err(err(what(), &p.repo))?;
    client
        .finish_upload(&p.repo, &p.location, &p.digest)
        .map_err(err(what(), &p.repo))?;
    for r in &p.mount_into {
        let mounted = client
            .mount_blob(r, &p.repo, &p.digest)
            .map_err(err(format!("{} (mount from {})", what(), p.repo), r))?;
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
    m: BundleManifest,
    names: Vec<PushName>,
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
    /// Tags `tag_all` moved from another digest (not new tags).
    pub repointed: Vec<Repointed>,
}

/// A tag that pointed to another digest before `tag_all` set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repointed {
    /// Index into the names the pusher was made with.
    pub name: usize,
    pub old: Digest,
    pub new: Digest,
}

impl Drop for Pusher<'_> {
    /// A load that fails before its last upload settled leaves no open
    /// upload session behind (best effort, as any cancel).
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.abandon(self.client);
        }
    }
}

impl PushError {
    /// A blob that did not verify, or could not be read from the archive, is
    /// the archive's fault; the registry failing is not.
    pub fn class(&self) -> crate::error::Class {
        match self {
            PushError::NotVerified { .. } | PushError::Archive { .. } => {
                crate::error::Class::Untrusted
            }
            _ => crate::error::Class::Failed,
        }
    }
}

impl<'a> Pusher<'a> {
    pub fn new(
        client: &'a Client,
        m: BundleManifest,
        names: Vec<PushName>,
        dry_run: bool,
        compression: LayerCompression,
    ) -> Pusher<'a> {
        let mut need: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for n in &names {
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
            repointed: Vec::new(),
        }
    }

    /// The bundle's manifest, with the names its images are pushed under.
    pub fn manifest(&self) -> &BundleManifest {
        &self.m
    }

    /// Every (image, repository, tag) this load pushes.
    pub fn names(&self) -> &[PushName] {
        &self.names
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
        let pending = self.upload_stream(&missing[0], digest, size, reader)?;
        self.pending = Some(Pending {
            mount_into: missing[1..].to_vec(),
            ..pending
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
        if let Some(mut p) = self.pending.take() {
            match settle(self.client, &mut p) {
                Ok(mounted) => self.record(p, mounted),
                Err(e) => {
                    p.abandon(self.client);
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
    /// thread in chunks of [`UPLOAD_CHUNK`], and a thread of its own sends
    /// them as one PATCH ([`Client::patch_stream`]); the channel holds four,
    /// so at most six chunks are in memory. Meanwhile a third thread settles the previous upload
    /// ([`Pending`]). Returns once every byte was handed over and the reader
    /// verified the blob; the PATCH's answer is waited for when it settles.
    fn upload_stream(
        &mut self,
        repo: &str,
        digest: &Digest,
        size: u64,
        reader: &mut dyn VerifyingRead,
    ) -> Result<Pending, PushError> {
        let client = self.client;
        let location = client
            .start_upload(repo)
            .map_err(Self::reg_err(format!("blob {digest}"), repo))?;
        let (tx, body) = body_channel(4);
        let patch = {
            let (client, repo, location) = (client.clone(), repo.to_string(), location.clone());
            std::thread::spawn(move || client.patch_stream(&repo, &location, size, body))
        };
        let pending = Pending {
            repo: repo.to_string(),
            location,
            patch: Some(patch),
            digest: digest.clone(),
            size,
            mount_into: vec![],
        };
        let mut previous = self.pending.take();
        let mut read = 0u64;
        let mut cut_off = false;
        let (pump, settled) = std::thread::scope(|s| {
            let settling = previous
                .as_mut()
                .map(|p| s.spawn(move || settle(client, p)));
            let pump: io::Result<()> = loop {
                match read_chunk(reader, UPLOAD_CHUNK) {
                    Ok(chunk) if chunk.is_empty() => break Ok(()),
                    Ok(chunk) => {
                        read += chunk.len() as u64;
                        if tx.blocking_send(Bytes::from(chunk)).is_err() {
                            // The PATCH ended early; it says why.
                            cut_off = true;
                            break Ok(());
                        }
                    }
                    Err(e) => break Err(e),
                }
            };
            drop(tx);
            let settled = settling.map(|h| h.join().expect("settling thread"));
            (pump, settled)
        });
        if let (Some(p), Some(settled)) = (previous, settled) {
            match settled {
                Ok(mounted) => self.record(p, mounted),
                Err(e) => {
                    p.abandon(client);
                    pending.abandon(client);
                    return Err(e);
                }
            }
        }
        if let Err(e) = pump {
            pending.abandon(client);
            return Err(PushError::Archive {
                digest: digest.clone(),
                source: e,
            });
        }
        if !reader.verified() || read != size {
            // The registry's failure, if it stopped taking the bytes before
            // the blob's end; otherwise (and past the blob's size, which the
            // body refuses) the archive's.
            let failed = pending.abandon(client).filter(|_| cut_off && read <= size);
            return Err(match failed {
                Some(e) => Self::reg_err(format!("blob {digest}"), repo)(e),
                None => PushError::NotVerified {
                    digest: digest.clone(),
                },
            });
        }
        Ok(pending)
    }

    /// After the archive verified: configs into every repository, then each
    /// manifest by digest. Returns nothing; tags come later (`tag_all`).
    ///
    /// Images go in parallel ([`MANIFEST_WORKERS`]): each of these small
    /// requests waits mostly for the registry's fsyncs, and one at a time
    /// they took a quarter of a load. An image's names go in order, so its
    /// config is uploaded once and mounted for its other names.
    pub fn push_manifests(&mut self) -> Result<(), PushError> {
        if self.dry_run {
            return Ok(());
        }
        self.settle_pending()?;
        self.rewrite_manifests()?;
        let mut by_image: BTreeMap<usize, Vec<&PushName>> = BTreeMap::new();
        for n in &self.names {
            by_image.entry(n.image).or_default().push(n);
        }
        let mut work = Vec::new();
        for (i, names) in by_image {
            let img = &self.m.images[i];
            let config = self
                .small
                .get(&img.config)
                .ok_or_else(|| PushError::MissingSmallBlob(img.config.clone()))?;
            let (digest, manifest) = self.manifest_of(i)?;
            let present: Vec<bool> = names
                .iter()
                .map(|n| {
                    self.present
                        .contains(&(n.repository.clone(), img.config.clone()))
                })
                .collect();
            work.push((img, names, present, config.as_slice(), digest, manifest));
        }
        let client = self.client;
        let placed = in_parallel(&work, |(img, names, present, config, digest, manifest)| {
            let mut stats = PushStats::default();
            let mut source: Option<&str> = None;
            for (n, &known) in names.iter().zip(present) {
                let repo = n.repository.as_str();
                let err = |what: String| Self::reg_err(what, repo);
                let cfg = || format!("config {}", img.config);
                if known {
                    source.get_or_insert(repo);
                } else if client
                    .blob_size(repo, &img.config)
                    .map_err(err(cfg()))?
                    .is_some()
                {
                    stats.blobs_present += 1;
                    source.get_or_insert(repo);
                } else {
                    let mounted = match source {
                        Some(from) => match client
                            .mount_blob(repo, from, &img.config)
                            .map_err(err(format!("{} (mount from {from})", cfg())))?
                        {
                            Mount::Mounted => true,
                            Mount::Upload(loc) => {
                                client.cancel_upload(repo, &loc);
                                false
                            }
                        },
                        None => false,
                    };
                    if mounted {
                        stats.blobs_mounted += 1;
                    } else {
                        client
                            .push_blob_bytes(repo, &img.config, config)
                            .map_err(err(cfg()))?;
                        stats.blobs_uploaded += 1;
                        stats.bytes_uploaded += config.len() as u64;
                        source.get_or_insert(repo);
                    }
                }
                let reference = digest.to_string();
                let what = || format!("manifest {digest}");
                if client
                    .head_manifest(repo, &reference)
                    .map_err(err(what()))?
                    .is_none()
                {
                    client
                        .put_manifest(repo, &reference, manifest, &img.manifest_media_type)
                        .map_err(err(what()))?;
                    stats.manifests_pushed += 1;
                }
            }
            Ok(stats)
        })?;
        let configs: Vec<(String, Digest)> = work
            .iter()
            .flat_map(|(img, names, ..)| {
                names
                    .iter()
                    .map(|n| (n.repository.clone(), img.config.clone()))
            })
            .collect();
        drop(work);
        self.present.extend(configs);
        for stats in placed {
            self.stats.blobs_present += stats.blobs_present;
            self.stats.blobs_mounted += stats.blobs_mounted;
            self.stats.blobs_uploaded += stats.blobs_uploaded;
            self.stats.bytes_uploaded += stats.bytes_uploaded;
            self.stats.manifests_pushed += stats.manifests_pushed;
        }
        Ok(())
    }

    /// Point every tag at its manifest (skipping tags already right), several
    /// at a time as [`Pusher::push_manifests`] does.
    pub fn tag_all(&mut self) -> Result<(), PushError> {
        let mut work = Vec::new();
        for n in &self.names {
            let (digest, manifest) = self.manifest_of(n.image)?;
            work.push((n, digest, manifest));
        }
        let (client, dry_run, m) = (self.client, self.dry_run, &self.m);
        // Per name: None when already right, Some(what it pointed to) when set.
        let set = in_parallel(&work, |(n, digest, manifest)| {
            let err = || Self::reg_err(format!("tag {}", n.tag), &n.repository);
            let current = client.head_manifest(&n.repository, &n.tag).map_err(err())?;
            if current.as_ref() == Some(digest) {
                return Ok(None);
            }
            if !dry_run {
                let media_type = &m.images[n.image].manifest_media_type;
                client
                    .put_manifest(&n.repository, &n.tag, manifest, media_type)
                    .map_err(err())?;
            }
            Ok(Some(current))
        })?;
        let new: Vec<Digest> = work.into_iter().map(|(_, d, _)| d).collect();
        for (i, (changed, new)) in set.into_iter().zip(new).enumerate() {
            match changed {
                None => self.stats.tags_unchanged += 1,
                Some(old) => {
                    self.stats.tags_set += 1;
                    if let Some(old) = old {
                        self.repointed.push(Repointed { name: i, old, new });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Requests the manifest and tag phases keep in flight at once.
const MANIFEST_WORKERS: usize = 4;

/// `f` over `items` on up to [`MANIFEST_WORKERS`] threads; results in the
/// items' order. The first failure stops handing out items, and is returned
/// once the items under way ended.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, PushError> + Sync,
) -> Result<Vec<R>, PushError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<R, PushError>>>> =
        Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..MANIFEST_WORKERS.min(items.len()) {
            s.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    results.lock().unwrap()[i] = Some(r);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(items.len());
    let mut first_err = None;
    for r in results.into_inner().unwrap() {
        match r {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
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

/// How much of a layer the archive reader hands over at a time. Large enough
/// that per-chunk costs vanish, small enough that the chunks in flight stay
/// well inside load's memory budget.
const UPLOAD_CHUNK: usize = 1 << 20;

/// Read up to `max` bytes; fewer only at the end of the stream.
fn read_chunk(r: &mut dyn VerifyingRead, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(max);
    (&mut *r).take(max as u64).read_to_end(&mut buf)?;
    Ok(buf)
}
