//! The stage of `load` that reads the archive: a [`BundleSink`] that checks
//! the header (volume index, signature, architecture, a delta's base) before
//! any other byte is read, then pushes every blob to the registry as the
//! reader verifies it. Nothing is tagged here: the tags wait until the whole
//! archive verified and the signatures are in place (see `push::Pusher`).

use crate::bundle::model::BlobKind;
use crate::bundle::reader::{BundleSink, Entry, Flow, Header, ReadError};
use crate::bundle::verify::{self, VerifyError};
use crate::bundle::volumes::Trust;
use crate::bundle::BundleManifest;
use crate::delta::{self, DeltaError};
use crate::digest::Digest;
use crate::error::Class;
use crate::freshness::{self, FreshnessError, Guard};
use crate::profile::Profiles;
use crate::progress::Task;
use crate::push::{push_names, LayerCompression, PushError, Pusher};
use crate::registry::Client;
use crate::{interrupt, platform};

/// Why streaming the archive into the registry stopped.
///
/// Each variant shows only its own message (no source chain), as the
/// reader's callers always did: the message already holds its cause.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The archive, its header or its signature (the bundle is not to be trusted).
    #[error("{0}")]
    Verify(VerifyError),
    #[error("{0}")]
    Delta(DeltaError),
    /// Expired, or older than the bundle that set the tags it would move.
    #[error("{0}")]
    Fresh(FreshnessError),
    #[error("{0}")]
    Push(PushError),
    /// Ctrl-C or SIGTERM between two entries, with the shell's exit code.
    #[error("interrupted")]
    Interrupted(i32),
}

impl StreamError {
    pub fn class(&self) -> Class {
        match self {
            StreamError::Verify(e) => e.class(),
            StreamError::Delta(_) => Class::Failed,
            StreamError::Fresh(e) if e.is_refusal() => Class::Untrusted,
            StreamError::Fresh(_) => Class::Failed,
            StreamError::Push(e) => e.class(),
            StreamError::Interrupted(code) => Class::Interrupted(*code),
        }
    }

    /// The registry failed, not the archive: the load can be run again.
    pub fn is_registry(&self) -> bool {
        matches!(self, StreamError::Push(PushError::Registry { .. }))
    }
}

impl From<ReadError> for StreamError {
    fn from(e: ReadError) -> Self {
        StreamError::Verify(VerifyError::Archive(e))
    }
}

impl From<VerifyError> for StreamError {
    fn from(e: VerifyError) -> Self {
        StreamError::Verify(e)
    }
}

impl From<PushError> for StreamError {
    fn from(e: PushError) -> Self {
        StreamError::Push(e)
    }
}

/// The choices of a load that the stream stage acts on.
pub struct StreamOptions<'a> {
    pub dry_run: bool,
    /// Also push under the platform's old names (`k8s-c10f2/…`).
    pub legacy_names: bool,
    pub layer_compression: LayerCompression,
    /// `--arch`; `None`: the bundle must be for this host's architecture.
    pub arch: Option<&'a str>,
    /// Set when reading volumes: the bundle.json digest their index names.
    pub volume_json: Option<Digest>,
    /// Where the record of what set each tag lives (see `freshness`).
    pub state_dir: &'a std::path::Path,
    /// `--allow-downgrade`: an older bundle may move a newer one's tags.
    pub allow_downgrade: bool,
}

/// Checks the header, then pushes what it reads (see the module doc).
///
/// `'c` is the registry client's lifetime, which the pusher it hands on keeps;
/// `'s` that of everything used only while reading.
pub struct PushSink<'c, 's> {
    client: &'c Client,
    trust: &'s Trust<'s>,
    profiles: &'s Profiles,
    options: StreamOptions<'s>,
    task: &'s Task,
    pusher: Option<Pusher<'c>>,
    index_json: Option<Vec<u8>>,
    signer: Option<String>,
    guard: Option<Guard>,
    checked_rest: bool,
}

/// What the stream stage hands on.
pub struct Streamed<'a> {
    /// Holds the manifest and the names every image is pushed under.
    pub pusher: Pusher<'a>,
    /// The key that signed bundle.json; `None` when accepted unsigned.
    pub signer: Option<String>,
    pub index_json: Option<Vec<u8>>,
    /// The freshness check made with the header, to commit once tagged.
    pub guard: Guard,
}

impl<'c, 's> PushSink<'c, 's> {
    pub fn new(
        client: &'c Client,
        trust: &'s Trust<'s>,
        profiles: &'s Profiles,
        options: StreamOptions<'s>,
        task: &'s Task,
    ) -> Self {
        PushSink {
            client,
            trust,
            profiles,
            options,
            task,
            pusher: None,
            index_json: None,
            signer: None,
            guard: None,
            checked_rest: false,
        }
    }

    /// What was read; `None` if the header never came.
    pub fn finish(self) -> Option<Streamed<'c>> {
        Some(Streamed {
            pusher: self.pusher?,
            signer: self.signer,
            index_json: self.index_json,
            guard: self.guard?,
        })
    }

    /// A podsec archive does not say its old names; the profile of its
    /// platform does. Its names may use the canonical platform (c10f/…) or
    /// an old one (k8s-c10f2/…): push under the others too.
    fn with_legacy_prefixes(&self, mut m: BundleManifest) -> BundleManifest {
        if m.legacy_prefixes.is_empty() {
            if let Ok(p) = self.profiles.platform(&m.platform) {
                let mut prefixes = vec![p.name.clone()];
                prefixes.extend(p.legacy_prefixes.iter().cloned());
                prefixes.retain(|x| x != &m.platform);
                m.legacy_prefixes = prefixes;
            }
        }
        m
    }
}

impl BundleSink for PushSink<'_, '_> {
    type Error = StreamError;

    fn header(&mut self, h: &Header) -> Result<Flow, StreamError> {
        let o = &self.options;
        self.signer = verify::check_header(h, self.trust, o.volume_json.as_ref())?;
        platform::check_bundle_arch(&h.manifest.arch, o.arch).map_err(VerifyError::Arch)?;
        freshness::check_expiry(&h.manifest, time::OffsetDateTime::now_utc())
            .map_err(StreamError::Fresh)?;
        let m = self.with_legacy_prefixes(h.manifest.clone());
        let names = push_names(&m, o.legacy_names);
        // Before the first blob: an older bundle must not move a newer one's tags.
        let guard = Guard::check(
            o.state_dir,
            self.client,
            &m,
            &h.raw_manifest,
            &names,
            o.allow_downgrade,
        )
        .map_err(StreamError::Fresh)?;
        self.guard = Some(guard);
        // A delta: what it leaves out must be here before a layer is read.
        let compressing = o.layer_compression != LayerCompression::None;
        delta::check_base_present(self.client, &m, &names, o.dry_run, compressing)
            .map_err(StreamError::Delta)?;
        let (dry_run, compression) = (o.dry_run, o.layer_compression);
        self.pusher = Some(Pusher::new(self.client, m, names, dry_run, compression));
        Ok(Flow::Continue)
    }

    fn entry(&mut self, _: &BundleManifest, entry: Entry<'_>) -> Result<Flow, StreamError> {
        if interrupt::cancelled() {
            return Err(StreamError::Interrupted(
                interrupt::exit_code().unwrap_or(130),
            ));
        }
        let p = self.pusher.as_mut().expect("the header comes first");
        match entry {
            Entry::LayoutFile { path, data } => {
                if path == "index.json" {
                    self.index_json = Some(data);
                }
            }
            Entry::Blob { blob, reader } => {
                if blob.kind == BlobKind::Layer && !self.checked_rest {
                    self.checked_rest = true;
                    if p.nothing_left_to_read()? {
                        return Ok(Flow::Stop);
                    }
                }
                p.on_blob(blob, reader)?;
                self.task.inc(blob.size);
            }
        }
        Ok(Flow::Continue)
    }
}
