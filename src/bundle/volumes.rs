//! Volumes: one bundle split into files that fit a medium, each checkable on
//! its own.
//!
//! `build --volume-size` cuts the compressed archive (not the tar: the bytes
//! of `NAME.u7s.tar.xz` itself) into `NAME.u7s.tar.xz.001`, `.002`, …, every
//! one but the last exactly the volume size. Beside them, the volume index
//! `NAME.u7s.volumes.json` lists each volume's size and sha256, and is signed
//! by the builder key (`.sig`), so one volume can be checked straight from
//! read-only media before the others arrive.
//!
//! Reading never joins the volumes on disk: [`VolumeReader`] yields them in
//! order as one stream. Before the first byte it checks that every volume is
//! there with its listed size and that no stray one lies beside them; each
//! volume's sha256 is compared at its end, before a byte of the next one is
//! read; and when the decompressor or the bundle reader fails in the middle
//! of a volume, [`VolumeReader::diagnose`] hashes the rest of it so the
//! message names the volume, not a symptom. Nothing is tagged before the
//! whole stream verified, so a bad volume leaves the registry's tags as
//! they were.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::error::Class;
use crate::fsutil::PendingFile;

pub const INDEX_FORMAT: &str = "u7s-volumes";
pub const INDEX_VERSION: u32 = 1;
/// The index is small: a thousand volumes fit in far less.
pub const MAX_INDEX_BYTES: u64 = 1 << 20;
/// The largest file FAT32 holds: 4 GiB − 1.
pub const FAT32_MAX: u64 = (4 << 30) - 1;
/// Smaller volumes would only multiply files (and make tests' sets split).
pub const MIN_VOLUME_SIZE: u64 = 4096;
pub const MAX_VOLUMES: usize = 9999;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("--volume-size {0:?}: give bytes or a size with K, M, G or T (powers of 1024), or `fat32` (4 GiB − 1); at least 4096")]
    BadSize(String),
    #[error("{path}: not a volume index: {why}")]
    BadIndex { path: PathBuf, why: String },
    #[error("volume {number} of {count} ({name}) is missing; put it beside {index}")]
    Missing {
        number: usize,
        count: usize,
        name: String,
        index: String,
    },
    #[error("volume {number} of {count} ({name}) is {actual} bytes, the index says {expected}: it is truncated, from another build, or out of order")]
    Size {
        number: usize,
        count: usize,
        name: String,
        actual: u64,
        expected: u64,
    },
    #[error("volume {number} of {count} ({name}) does not match the index: its sha256 is {actual}, the index says {expected}; it is damaged, from another build, or out of order")]
    Digest {
        number: usize,
        count: usize,
        name: String,
        actual: Digest,
        expected: Digest,
    },
    #[error("{name} is not one of the {count} volumes of the index: a volume from another build? remove it")]
    Extra { name: String, count: usize },
    #[error("{name} is not a volume of {bundle}")]
    NotAVolume { name: String, bundle: String },
    #[error("bundle.json in the volumes is not the one the volume index names ({expected})")]
    BundleJson { expected: Digest },
    #[error("volume {number} of {count} ({name}): {source}")]
    Io {
        number: usize,
        count: usize,
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("the volume index {0} is not signed; give --allow-unsigned to accept it anyway")]
    Unsigned(PathBuf),
    #[error("the volume index {path} is signed, but no trusted key was found in {sources}: pass --keyring FILE or put the builder's public key there")]
    NoKeys { path: PathBuf, sources: String },
    #[error("the volume index {path} is signed by unknown key {issuer}; trusted are {trusted} (read from {sources}): put the builder's public key there or pass --keyring FILE")]
    UnknownKey {
        path: PathBuf,
        issuer: String,
        trusted: String,
        sources: String,
    },
    #[error("the signature of the volume index {path}: {source}")]
    Signature {
        path: PathBuf,
        #[source]
        source: crate::sign::SignError,
    },
    #[error("{0}")]
    Other(#[from] io::Error),
}

impl VolumeError {
    /// Everything but a bad `--volume-size` and plain I/O trouble means the
    /// volumes are not to be trusted.
    pub fn class(&self) -> Class {
        match self {
            VolumeError::BadSize(_) | VolumeError::Other(_) => Class::Failed,
            _ => Class::Untrusted,
        }
    }
}

/// Asks for volume `number` of `count` (with what was wrong with the one
/// offered before) and returns once it should be there.
pub type Prompt = Box<dyn FnMut(usize, usize, Option<&VolumeError>) -> io::Result<()>>;

pub use crate::bundle::verify::Trust;

/// `4G`, `700M`, `fat32`, or a number of bytes.
pub fn parse_size(s: &str) -> Result<u64, VolumeError> {
    let bad = || VolumeError::BadSize(s.to_string());
    let t = s.trim();
    if t.eq_ignore_ascii_case("fat32") {
        return Ok(FAT32_MAX);
    }
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let size = n.checked_mul(mult).ok_or_else(bad)?;
    if size < MIN_VOLUME_SIZE {
        return Err(bad());
    }
    Ok(size)
}

/// `c10f-v1.26.9-amd64.u7s.tar.xz` → `c10f-v1.26.9-amd64.u7s.volumes.json`.
pub fn index_name(bundle: &str) -> String {
    let stem = bundle
        .strip_suffix(".tar.xz")
        .or_else(|| bundle.strip_suffix(".tar.zst"))
        .unwrap_or(bundle);
    format!("{stem}.volumes.json")
}

/// The file name of volume `number` (from 1) of `bundle`.
pub fn volume_name(bundle: &str, number: usize) -> String {
    format!("{bundle}.{number:03}")
}

/// Does `path` name a volume index or the first volume?
pub fn is_volume_path(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    name.is_some_and(|n| n.ends_with(".volumes.json") || n.ends_with(".001"))
}

/// The volume index: what the builder signed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VolumeIndex {
    pub format: String,
    pub format_version: u32,
    /// The file name the volumes make when joined (`NAME.u7s.tar.xz`).
    pub bundle: String,
    /// sha256 of the bundle.json inside.
    pub bundle_json_digest: Digest,
    pub volume_size: u64,
    pub volume_count: usize,
    pub total_size: u64,
    pub volumes: Vec<VolumeEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VolumeEntry {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
}

impl VolumeIndex {
    pub fn parse(bytes: &[u8]) -> Result<VolumeIndex, String> {
        let v: VolumeIndex = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        v.validate()?;
        Ok(v)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("serializable");
        v.push(b'\n');
        v
    }

    /// Names come from the index and become paths: they must be exactly the
    /// derived ones, beside the index.
    fn validate(&self) -> Result<(), String> {
        if self.format != INDEX_FORMAT || self.format_version != INDEX_VERSION {
            return Err(format!(
                "format {:?} version {} (this u7s-bundle reads {INDEX_FORMAT:?} version {INDEX_VERSION})",
                self.format, self.format_version
            ));
        }
        let b = &self.bundle;
        if b.is_empty()
            || b.starts_with('.')
            || b.len() > 200
            || !b
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-+".contains(&c))
        {
            return Err(format!("bundle name {b:?} is not a plain file name"));
        }
        let n = self.volumes.len();
        if n == 0 || n > MAX_VOLUMES || n != self.volume_count {
            return Err(format!(
                "volume_count {} and {n} volumes listed",
                self.volume_count
            ));
        }
        let mut total = 0u64;
        for (i, v) in self.volumes.iter().enumerate() {
            if v.name != volume_name(b, i + 1) {
                return Err(format!("volume {} is named {:?}", i + 1, v.name));
            }
            let last = i + 1 == n;
            if v.size == 0 || v.size > self.volume_size || (!last && v.size != self.volume_size) {
                return Err(format!("volume {} has size {}", v.name, v.size));
            }
            total = total.saturating_add(v.size);
        }
        if total != self.total_size {
            return Err(format!(
                "total_size {} and the volumes add up to {total}",
                self.total_size
            ));
        }
        Ok(())
    }
}

/// A volume being written.
struct Open {
    pending: PendingFile,
    file: io::BufWriter<File>,
    hasher: Hasher,
}

/// Splits what is written into volumes of at most `max` bytes in `dir`, each
/// under a temporary name until [`FinishedVolumes::persist`].
pub struct VolumeWriter {
    dir: PathBuf,
    bundle: String,
    max: u64,
    open: Option<Open>,
    done: Vec<(PendingFile, VolumeEntry)>,
}

impl VolumeWriter {
    pub fn new(dir: &Path, bundle: &str, max: u64) -> VolumeWriter {
        VolumeWriter {
            dir: dir.to_path_buf(),
            bundle: bundle.to_string(),
            max: max.max(MIN_VOLUME_SIZE),
            open: None,
            done: Vec::new(),
        }
    }

    fn close_current(&mut self) -> io::Result<()> {
        if let Some(o) = self.open.take() {
            let file = o.file.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            let size = o.hasher.len();
            let entry = VolumeEntry {
                name: volume_name(&self.bundle, self.done.len() + 1),
                size,
                sha256: o.hasher.finish(),
            };
            self.done.push((o.pending, entry));
        }
        Ok(())
    }

    fn current(&mut self) -> io::Result<&mut Open> {
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.hasher.len() >= self.max)
        {
            self.close_current()?;
        }
        if self.open.is_none() {
            if self.done.len() >= MAX_VOLUMES {
                return Err(io::Error::other(format!(
                    "more than {MAX_VOLUMES} volumes: choose a larger --volume-size"
                )));
            }
            let path = self
                .dir
                .join(volume_name(&self.bundle, self.done.len() + 1));
            let (pending, file) = PendingFile::create(&path)?;
            self.open = Some(Open {
                pending,
                file: io::BufWriter::with_capacity(1 << 20, file),
                hasher: Hasher::new(),
            });
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    /// Close the last volume; the files stay temporary until persisted.
    pub fn finish(mut self) -> io::Result<FinishedVolumes> {
        self.close_current()?;
        Ok(FinishedVolumes {
            dir: self.dir,
            bundle: self.bundle,
            max: self.max,
            volumes: self.done,
        })
    }
}

impl Write for VolumeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let max = self.max;
        let o = self.current()?;
        let room = (max - o.hasher.len()).min(buf.len() as u64) as usize;
        let n = o.file.write(&buf[..room])?;
        o.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.open {
            Some(o) => o.file.flush(),
            None => Ok(()),
        }
    }
}

/// Volumes written, not yet under their final names.
pub struct FinishedVolumes {
    dir: PathBuf,
    bundle: String,
    max: u64,
    volumes: Vec<(PendingFile, VolumeEntry)>,
}

impl FinishedVolumes {
    /// The index for these volumes.
    pub fn index(&self, bundle_json: &[u8]) -> VolumeIndex {
        VolumeIndex {
            format: INDEX_FORMAT.into(),
            format_version: INDEX_VERSION,
            bundle: self.bundle.clone(),
            bundle_json_digest: Digest::of(bundle_json),
            volume_size: self.max,
            volume_count: self.volumes.len(),
            total_size: self.volumes.iter().map(|(_, v)| v.size).sum(),
            volumes: self.volumes.iter().map(|(_, v)| v.clone()).collect(),
        }
    }

    /// Rename the volumes into place, then write the signature and, last,
    /// the index (its presence says the set is complete). Volumes of an
    /// earlier, longer build of the same name are removed: a stale `.004`
    /// beside a new three-volume set would be refused as extra.
    pub fn persist(self, index: &VolumeIndex, signature: Option<&[u8]>) -> io::Result<PathBuf> {
        for (p, _) in self.volumes {
            p.persist()?;
        }
        for extra in stray_volumes(&self.dir, &self.bundle, index.volume_count)? {
            std::fs::remove_file(self.dir.join(extra))?;
        }
        let index_path = self.dir.join(index_name(&self.bundle));
        let sig_path = sig_path(&index_path);
        match signature {
            Some(s) => write_file(&sig_path, s)?,
            None => match std::fs::remove_file(&sig_path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
        }
        write_file(&index_path, &index.to_json())?;
        Ok(index_path)
    }
}

fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let (pending, mut f) = PendingFile::create(path)?;
    f.write_all(data)?;
    drop(f);
    pending.persist().map(drop)
}

fn sig_path(index: &Path) -> PathBuf {
    let mut s = index.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// Files `BUNDLE.NNN` in `dir` whose number is beyond `count`.
fn stray_volumes(dir: &Path, bundle: &str, count: usize) -> io::Result<Vec<String>> {
    let prefix = format!("{bundle}.");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        let Some(num) = name.strip_prefix(&prefix) else {
            continue;
        };
        let numbered = num.len() >= 3 && num.bytes().all(|b| b.is_ascii_digit());
        if numbered && num.parse::<usize>().map_or(true, |n| n == 0 || n > count) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Any volume of `bundle` already in `dir` (to refuse overwriting without --force).
pub fn existing_volumes(dir: &Path, bundle: &str) -> io::Result<Vec<String>> {
    match stray_volumes(dir, bundle, 0) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
        r => r,
    }
}

/// A volume index read from disk, with its signature (not checked here).
pub struct VolumeSet {
    pub dir: PathBuf,
    pub index_path: PathBuf,
    pub index: VolumeIndex,
    pub raw: Vec<u8>,
    pub signature: Option<Vec<u8>>,
}

impl VolumeSet {
    /// `path` is the index or the first volume (its index lies beside it).
    pub fn open(path: &Path) -> Result<VolumeSet, VolumeError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let index_path = match name.strip_suffix(".001") {
            Some(bundle) => dir.join(index_name(bundle)),
            None => path.to_path_buf(),
        };
        let bad = |why: String| VolumeError::BadIndex {
            path: index_path.clone(),
            why,
        };
        let raw = read_limited(&index_path, MAX_INDEX_BYTES).map_err(|e| bad(e.to_string()))?;
        let index = VolumeIndex::parse(&raw).map_err(bad)?;
        let signature = match read_limited(&sig_path(&index_path), 64 << 10) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(bad(format!("its signature: {e}"))),
        };
        Ok(VolumeSet {
            dir,
            index_path,
            index,
            raw,
            signature,
        })
    }

    /// The index's signature by a trusted key: Some(fingerprint), or None
    /// when unsigned and that is allowed.
    pub fn check_signature(&self, trust: &Trust) -> Result<Option<String>, VolumeError> {
        let path = self.index_path.clone();
        match &self.signature {
            None if trust.allow_unsigned => Ok(None),
            None => Err(VolumeError::Unsigned(path)),
            Some(_) if trust.keyring.is_empty() => Err(VolumeError::NoKeys {
                path,
                sources: trust.sources(),
            }),
            Some(sig) => {
                match crate::sign::detached::verify_detached(trust.keyring, &self.raw, sig) {
                    Ok(v) => Ok(Some(v.fingerprint)),
                    Err(crate::sign::SignError::UnknownKey { issuer }) => {
                        Err(VolumeError::UnknownKey {
                            path,
                            issuer,
                            trusted: trust.fingerprints(),
                            sources: trust.sources(),
                        })
                    }
                    Err(source) => Err(VolumeError::Signature { path, source }),
                }
            }
        }
    }

    pub fn count(&self) -> usize {
        self.index.volumes.len()
    }

    fn path(&self, i: usize) -> PathBuf {
        self.dir.join(&self.index.volumes[i].name)
    }

    /// Every volume present beside the index with its listed size, and no
    /// stray one: checked before the first byte is read.
    pub fn check_present(&self) -> Result<(), VolumeError> {
        for i in 0..self.count() {
            self.check_size(i, &self.path(i))?;
        }
        let count = self.count();
        if let Some(name) = stray_volumes(&self.dir, &self.index.bundle, count)?
            .into_iter()
            .next()
        {
            return Err(VolumeError::Extra { name, count });
        }
        Ok(())
    }

    fn check_size(&self, i: usize, path: &Path) -> Result<(), VolumeError> {
        let v = &self.index.volumes[i];
        let actual = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::Missing {
                    number: i + 1,
                    count: self.count(),
                    name: v.name.clone(),
                    index: self.index_path.display().to_string(),
                })
            }
            Err(e) => return Err(self.io(i, e)),
        };
        if actual != v.size {
            return Err(VolumeError::Size {
                number: i + 1,
                count: self.count(),
                name: v.name.clone(),
                actual,
                expected: v.size,
            });
        }
        Ok(())
    }

    fn io(&self, i: usize, source: io::Error) -> VolumeError {
        VolumeError::Io {
            number: i + 1,
            count: self.count(),
            name: self.index.volumes[i].name.clone(),
            source,
        }
    }

    /// Check volume `i` whole: size and sha256.
    fn check_volume(&self, i: usize, path: &Path) -> Result<(), VolumeError> {
        self.check_size(i, path)?;
        let f = File::open(path).map_err(|e| self.io(i, e))?;
        let mut h = crate::digest::HashingWriter::new(io::sink());
        io::copy(&mut BufReader::with_capacity(1 << 20, f), &mut h).map_err(|e| self.io(i, e))?;
        let (_, actual, _) = h.finish();
        self.compare(i, actual)
    }

    fn compare(&self, i: usize, actual: Digest) -> Result<(), VolumeError> {
        let v = &self.index.volumes[i];
        if actual != v.sha256 {
            return Err(VolumeError::Digest {
                number: i + 1,
                count: self.count(),
                name: v.name.clone(),
                actual,
                expected: v.sha256.clone(),
            });
        }
        Ok(())
    }

    /// `verify VOLUME --volumes INDEX`: which volume `path` is, checked
    /// whole against the index.
    pub fn verify_one(&self, path: &Path) -> Result<usize, VolumeError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let i = self
            .index
            .volumes
            .iter()
            .position(|v| v.name == name)
            .ok_or_else(|| VolumeError::NotAVolume {
                name: name.clone(),
                bundle: self.index.bundle.clone(),
            })?;
        self.check_volume(i, path)?;
        Ok(i)
    }

    /// Volumes not (yet) beside the index or beside `also` with their size.
    pub fn missing(&self, also: Option<&Path>) -> Vec<String> {
        (0..self.count())
            .filter(|&i| {
                let here = self.check_size(i, &self.path(i)).is_ok();
                let there = also.is_some_and(|d| {
                    self.check_size(i, &d.join(&self.index.volumes[i].name))
                        .is_ok()
                });
                !here && !there
            })
            .map(|i| self.index.volumes[i].name.clone())
            .collect()
    }

    /// The volumes as one stream. With `prompt`, each volume after the first
    /// is asked for (one drive, volumes swapped in turn) and checked whole
    /// before it is read; otherwise all are checked present first.
    pub fn reader(self, prompt: Option<Prompt>) -> Result<VolumeReader, VolumeError> {
        if prompt.is_none() {
            self.check_present()?;
        } else {
            self.check_volume(0, &self.path(0))?;
        }
        Ok(VolumeReader {
            set: self,
            prompt,
            next: 0,
            current: None,
        })
    }
}

fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    File::open(path)?.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(buf)
}

struct Current {
    index: usize,
    file: File,
    hasher: Hasher,
}

/// The volumes in order as one `Read`; each checked at its end.
pub struct VolumeReader {
    set: VolumeSet,
    prompt: Option<Prompt>,
    next: usize,
    current: Option<Current>,
}

impl VolumeReader {
    pub fn set(&self) -> &VolumeSet {
        &self.set
    }

    fn open_next(&mut self) -> io::Result<bool> {
        let i = self.next;
        if i >= self.set.count() {
            return Ok(false);
        }
        let path = self.set.path(i);
        if i > 0 {
            if let Some(p) = self.prompt.as_mut() {
                // Not inserted, or the wrong or a damaged one: say so and
                // ask again; nothing of it is read.
                let mut problem = None;
                loop {
                    p(i + 1, self.set.count(), problem.take().as_ref())?;
                    match self.set.check_volume(i, &path) {
                        Ok(()) => break,
                        Err(e) => problem = Some(e),
                    }
                }
            }
        }
        let file = File::open(&path).map_err(|e| invalid(self.set.io(i, e)))?;
        self.current = Some(Current {
            index: i,
            file,
            hasher: Hasher::new(),
        });
        self.next += 1;
        Ok(true)
    }

    /// The current volume ended: size (and nothing beyond it) and sha256.
    fn close_current(&mut self) -> Result<(), VolumeError> {
        let Some(mut c) = self.current.take() else {
            return Ok(());
        };
        let expected = self.set.index.volumes[c.index].size;
        let mut probe = [0u8; 1];
        let more = c
            .file
            .read(&mut probe)
            .map_err(|e| self.set.io(c.index, e))?;
        if more > 0 || c.hasher.len() != expected {
            let actual = c.hasher.len() + more as u64;
            return Err(VolumeError::Size {
                number: c.index + 1,
                count: self.set.count(),
                name: self.set.index.volumes[c.index].name.clone(),
                actual: if more > 0 {
                    actual.max(expected + 1)
                } else {
                    actual
                },
                expected,
            });
        }
        self.set.compare(c.index, c.hasher.finish())
    }

    /// After a failure downstream (a corrupt stream, a blob that did not
    /// verify): hash the rest of the volume being read; if it does not match
    /// the index, that is the cause, and it names the volume.
    pub fn diagnose(&mut self) -> Option<VolumeError> {
        let c = self.current.as_mut()?;
        let mut buf = vec![0u8; 1 << 20];
        let expected = self.set.index.volumes[c.index].size;
        loop {
            let room = (expected.saturating_sub(c.hasher.len())).min(buf.len() as u64) as usize;
            if room == 0 {
                break;
            }
            match c.file.read(&mut buf[..room]) {
                Ok(0) => break,
                Ok(n) => c.hasher.update(&buf[..n]),
                Err(e) => return Some(self.set.io(c.index, e)),
            }
        }
        self.close_current().err()
    }
}

fn invalid(e: VolumeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Read for VolumeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(0);
            }
            let c = self.current.as_mut().expect("opened above");
            let left = self.set.index.volumes[c.index].size
                - c.hasher.len().min(self.set.index.volumes[c.index].size);
            let n = if left == 0 {
                0
            } else {
                let want = left.min(buf.len() as u64) as usize;
                let index = c.index;
                match c.file.read(&mut buf[..want]) {
                    Ok(n) => n,
                    Err(e) => return Err(invalid(self.set.io(index, e))),
                }
            };
            if n == 0 {
                self.close_current().map_err(invalid)?;
                continue;
            }
            let c = self.current.as_mut().expect("still open");
            c.hasher.update(&buf[..n]);
            return Ok(n);
        }
    }
}

/// The prompt of `load --wait-for-volumes`: asks on standard error, waits
/// for Enter on standard input (the terminal, when run by hand). The end of
/// the input is an error: nobody is there to insert the volume.
pub fn terminal_prompt() -> Prompt {
    Box::new(|number, count, problem| {
        if let Some(p) = problem {
            eprintln!("{p}");
        }
        eprintln!("insert volume {number} of {count}, then press Enter");
        let mut line = String::new();
        if io::stdin().read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("volume {number} of {count} was not inserted (end of input)"),
            ));
        }
        Ok(())
    })
}

/// bundle.json read from the volumes must be the one their index names.
pub fn check_bundle_json(expected: Option<&Digest>, raw: &[u8]) -> Result<(), VolumeError> {
    match expected {
        Some(d) if Digest::of(raw) != *d => Err(VolumeError::BundleJson {
            expected: d.clone(),
        }),
        _ => Ok(()),
    }
}

/// Where a bundle is read from: one file or a set of volumes.
pub enum Input {
    File(File),
    Volumes(Box<VolumeReader>),
}

impl Input {
    /// The file, or — for a volume index or a first volume — the set.
    /// With `trust`, the volume index must be signed by a trusted key.
    pub fn open(
        path: &Path,
        prompt: Option<Prompt>,
        trust: Option<&Trust>,
    ) -> Result<Input, VolumeError> {
        if is_volume_path(path) {
            let set = VolumeSet::open(path)?;
            if let Some(t) = trust {
                set.check_signature(t)?;
            }
            return Ok(Input::Volumes(Box::new(set.reader(prompt)?)));
        }
        Ok(Input::File(File::open(path)?))
    }

    /// The index's bundle.json digest, when reading volumes.
    pub fn bundle_json_digest(&self) -> Option<Digest> {
        match self {
            Input::File(_) => None,
            Input::Volumes(v) => Some(v.set.index.bundle_json_digest.clone()),
        }
    }

    /// See [`VolumeReader::diagnose`].
    pub fn diagnose(&mut self) -> Option<VolumeError> {
        match self {
            Input::File(_) => None,
            Input::Volumes(v) => v.diagnose(),
        }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::File(f) => f.read(buf),
            Input::Volumes(v) => v.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("700M").unwrap(), 700 << 20);
        assert_eq!(parse_size("fat32").unwrap(), (4u64 << 30) - 1);
        assert_eq!(parse_size("5000").unwrap(), 5000);
        for bad in ["", "12", "4X", "-1G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(
            index_name("c10f-v1.26.9-amd64.u7s.tar.xz"),
            "c10f-v1.26.9-amd64.u7s.volumes.json"
        );
    }

    fn split(dir: &Path, data: &[u8], max: u64) -> VolumeSet {
        let mut w = VolumeWriter::new(dir, "b.u7s.tar.xz", max);
        for chunk in data.chunks(3000) {
            w.write_all(chunk).unwrap();
        }
        let f = w.finish().unwrap();
        let idx = f.index(b"{}");
        let p = f.persist(&idx, None).unwrap();
        VolumeSet::open(&p).unwrap()
    }

    fn read_all(set: VolumeSet) -> Result<Vec<u8>, String> {
        let mut r = set.reader(None).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn split_and_join() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let set = split(dir.path(), &data, 8192);
        assert_eq!(set.count(), 3);
        let sizes: Vec<u64> = set.index.volumes.iter().map(|v| v.size).collect();
        assert_eq!(sizes, [8192, 8192, 20_000 - 16384]);
        assert_eq!(read_all(set).unwrap(), data);
        // From the first volume as well.
        let set = VolumeSet::open(&dir.path().join("b.u7s.tar.xz.001")).unwrap();
        assert_eq!(read_all(set).unwrap(), data);
    }

    #[test]
    fn each_fault_names_its_volume() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 13 % 251) as u8).collect();
        type Fault<'a> = (&'a str, &'a dyn Fn(&Path), &'a str);
        let faults: [Fault; 5] = [
            (
                "flipped",
                &|d| {
                    let p = d.join("b.u7s.tar.xz.002");
                    let mut b = std::fs::read(&p).unwrap();
                    b[100] ^= 1;
                    std::fs::write(&p, b).unwrap();
                },
                "volume 2 of 3",
            ),
            (
                "missing",
                &|d| std::fs::remove_file(d.join("b.u7s.tar.xz.003")).unwrap(),
                "volume 3 of 3",
            ),
            (
                "extra",
                &|d| std::fs::write(d.join("b.u7s.tar.xz.004"), b"x").unwrap(),
                "b.u7s.tar.xz.004",
            ),
            (
                "truncated",
                &|d| {
                    let p = d.join("b.u7s.tar.xz.003");
                    let b = std::fs::read(&p).unwrap();
                    std::fs::write(&p, &b[..b.len() - 1]).unwrap();
                },
                "volume 3 of 3",
            ),
            (
                "swapped",
                &|d| {
                    let (a, b) = (d.join("b.u7s.tar.xz.001"), d.join("b.u7s.tar.xz.002"));
                    let t = d.join("t");
                    std::fs::rename(&a, &t).unwrap();
                    std::fs::rename(&b, &a).unwrap();
                    std::fs::rename(&t, &b).unwrap();
                },
                "volume 1 of 3",
            ),
        ];
        for (what, fault, names) in faults {
            let dir = tempfile::tempdir().unwrap();
            split(dir.path(), &data, 8192);
            fault(dir.path());
            let set = VolumeSet::open(&dir.path().join("b.u7s.volumes.json")).unwrap();
            let err = read_all(set).unwrap_err();
            assert!(err.contains(names), "{what}: {err}");
        }
    }
}
