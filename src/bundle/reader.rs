//! Reading a bundle as a stream, trusting nothing until it is checked.
//!
//! Order of trust: `bundle.json` must be the first entry (size-capped, strictly
//! parsed and validated), its detached signature the optional second; the caller
//! decides whether to go on (signature check) before any other byte is looked at.
//! Every later entry must be a regular file whose exact name bundle.json implies,
//! seen once, with the declared size; its content is hashed while the caller
//! consumes it and fails at its end on a digest mismatch. After the tar end the
//! decompressor is drained so a truncated file is an error, and every listed
//! entry must have been seen.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};

use super::compress::{self, Codec};
use super::model::{
    BlobEntry, BundleManifest, ModelError, MANIFEST_NAME, MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES,
    SIGNATURE_NAME,
};
use crate::digest::{Digest, Hasher};
use crate::error::Class;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the archive: {0}")]
    Io(#[from] io::Error),
    #[error("the archive does not start with bundle.json (first entry: {first:?}); a legacy podsec archive has no bundle.json")]
    NoManifest { first: String },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("entry {name:?}: {why}")]
    BadEntry { name: String, why: String },
    #[error("entry {name:?} is not listed in bundle.json")]
    Unlisted { name: String },
    #[error("entry {name:?} appears twice")]
    Duplicate { name: String },
    #[error("{name}: digest mismatch: bundle.json says {expected}, the content is {actual}")]
    DigestMismatch {
        name: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("entries listed in bundle.json are missing from the archive: {0}")]
    Missing(String),
    #[error("the archive is truncated or corrupt after its last entry: {0}")]
    Trailer(String),
}

impl ReadError {
    /// Everything wrong with the archive's content means it is not to be
    /// trusted; only an archive that could not be opened at all (missing,
    /// unreadable, a directory) is a plain failure.
    pub fn class(&self) -> Class {
        use io::ErrorKind as K;
        match self {
            ReadError::Io(e)
                if matches!(
                    e.kind(),
                    K::NotFound | K::PermissionDenied | K::IsADirectory
                ) =>
            {
                Class::Failed
            }
            _ => Class::Untrusted,
        }
    }
}

/// What the sink wants after an entry: ripgrep's `Sink` and `WalkState` in
/// one. `Stop` ends the read cleanly (nothing after it is checked; the read
/// reports it was not complete), so a caller needing only a prefix of the
/// archive says so without faking an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Who consumes a bundle as it is read. Its own error type carries the
/// reader's (`From<ReadError>`), so one error tells the caller what went
/// wrong, the archive's fault or the sink's.
pub trait BundleSink {
    type Error: From<ReadError>;
    /// bundle.json and its signature, before any other byte is looked at:
    /// the place to check the signature.
    fn header(&mut self, header: &Header) -> Result<Flow, Self::Error>;
    /// Every other entry, in archive order; a blob must be read to its end to
    /// count as verified (the reader drains the rest itself on `Continue`).
    fn entry(&mut self, manifest: &BundleManifest, entry: Entry<'_>) -> Result<Flow, Self::Error>;
}

/// A finished read: the header, and whether the sink let it run to the end
/// (every entry seen and checked, the archive's end too).
pub struct Outcome {
    pub header: Header,
    pub complete: bool,
}

/// The header entries, available before anything else is read.
pub struct Header {
    pub manifest: BundleManifest,
    pub raw_manifest: Vec<u8>,
    pub signature: Option<Vec<u8>>,
    pub codec: Codec,
}

/// A verified entry handed to the caller.
pub enum Entry<'a> {
    /// `oci-layout` or `index.json` (small, already verified).
    LayoutFile { path: &'a str, data: Vec<u8> },
    /// A blob; `reader` verifies at its end (an error there means: don't use it).
    Blob {
        blob: &'a BlobEntry,
        reader: &'a mut (dyn VerifyingRead + 'a),
    },
}

/// A blob's content: reading it to the end checks it against bundle.json; the
/// final `read` returns an `InvalidData` error on a mismatch.
pub trait VerifyingRead: Read {
    /// True once the end was reached and size and digest matched.
    fn verified(&self) -> bool;
}

/// Hashes a blob as it is read; at the end checks size and digest.
struct BlobReader<R> {
    inner: R,
    hasher: Hasher,
    expected: Digest,
    size: u64,
    verified: bool,
}

impl<R: Read> VerifyingRead for BlobReader<R> {
    fn verified(&self) -> bool {
        self.verified
    }
}

impl<R: Read> Read for BlobReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() && !self.verified {
            let actual = std::mem::take(&mut self.hasher);
            let len = actual.len();
            let actual = actual.finish();
            if len != self.size || actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {}: content does not match bundle.json ({} bytes with digest {}, expected {} bytes)",
                        self.expected, len, actual, self.size
                    ),
                ));
            }
            self.verified = true;
        }
        Ok(n)
    }
}

/// Read `input` as a bundle into `sink`: the header first, then (unless the
/// sink stopped) every other entry, each checked before or as it is handed on.
pub fn read_bundle<S: BundleSink>(input: impl Read, sink: &mut S) -> Result<Outcome, S::Error> {
    let (codec, decoded) =
        compress::decoder(BufReader::with_capacity(1 << 20, input)).map_err(ReadError::from)?;
    let mut archive = tar::Archive::new(decoded);
    // Raw: the tar crate must not act on PAX or GNU extension records (it
    // would buffer them, and reads them differently from GNU tar); every
    // header is checked to be the plain ustar the writer makes.
    let mut entries = archive.entries().map_err(ReadError::from)?.raw(true);
    let (header, pending) = header_entries(&mut entries, codec)?;
    let mut complete = sink.header(&header)? == Flow::Continue;
    if complete {
        complete = read_body(&mut entries, pending, &header.manifest, Mode::Bundle, sink)?;
    }
    if complete {
        strict_end(archive.into_inner())?;
    }
    Ok(Outcome { header, complete })
}

/// bundle.json and its signature, and nothing more: what `inspect`,
/// `preflight` and a delta's base need. Every check of [`read_bundle`] on
/// those two entries applies.
pub fn read_header(input: impl Read) -> Result<Header, ReadError> {
    struct HeaderOnly;
    impl BundleSink for HeaderOnly {
        type Error = ReadError;
        fn header(&mut self, _: &Header) -> Result<Flow, ReadError> {
            Ok(Flow::Stop)
        }
        fn entry(&mut self, _: &BundleManifest, _: Entry<'_>) -> Result<Flow, ReadError> {
            Ok(Flow::Stop)
        }
    }
    Ok(read_bundle(input, &mut HeaderOnly)?.header)
}

/// The first entries: bundle.json (strictly parsed), then its signature if
/// it is next; the entry after them, if already taken, is handed back.
fn header_entries<'a, R: Read + 'a>(
    entries: &mut tar::Entries<'a, R>,
    codec: Codec,
) -> Result<(Header, Option<tar::Entry<'a, R>>), ReadError> {
    let first = entries.next().ok_or_else(|| ReadError::NoManifest {
        first: "<empty archive>".into(),
    })??;
    let first_name = plain_ustar(first.header())?;
    if first_name != MANIFEST_NAME {
        return Err(ReadError::NoManifest { first: first_name });
    }
    let raw_manifest = read_small(first, MANIFEST_NAME, MAX_MANIFEST_BYTES)?;
    let manifest = BundleManifest::parse(&raw_manifest)?;

    let mut pending = entries.next().transpose()?;
    let mut signature = None;
    if let Some(e) = pending.take() {
        if plain_ustar(e.header())? == SIGNATURE_NAME {
            signature = Some(read_small(e, SIGNATURE_NAME, MAX_SIGNATURE_BYTES)?);
        } else {
            pending = Some(e);
        }
    }
    let header = Header {
        manifest,
        raw_manifest,
        signature,
        codec,
    };
    Ok((header, pending))
}

/// How strictly the body is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A u7s bundle: every entry listed, regular files only.
    Bundle,
    /// A legacy podsec archive: directories and unreferenced files are
    /// skipped (they are in every `tar c <arch>`); links and devices are
    /// still refused, and everything used is still checked by digest.
    Legacy,
}

/// What an entry name stands for in bundle.json.
enum Want<'m> {
    Layout(&'m super::model::FileEntry),
    Blob(&'m BlobEntry),
}

/// The entries after the header, checked against `m`; false when the sink
/// stopped the read.
fn read_body<'a, R: Read + 'a, S: BundleSink>(
    entries: &mut tar::Entries<'a, R>,
    first: Option<tar::Entry<'a, R>>,
    m: &BundleManifest,
    mode: Mode,
    sink: &mut S,
) -> Result<bool, S::Error> {
    // The expected entries: name → what it is.
    let mut want: BTreeMap<String, Want> = BTreeMap::new();
    for f in &m.layout {
        want.insert(format!("{}/{}", m.arch, f.path), Want::Layout(f));
    }
    for b in &m.blobs {
        want.insert(m.blob_path(&b.digest), Want::Blob(b));
    }
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();

    let mut next = first.map(Ok);
    while let Some(e) = next.take().or_else(|| entries.next()) {
        let e = e.map_err(ReadError::from)?;
        let Some((name, w)) = admit(&e, &want, &mut seen, mode)? else {
            continue;
        };
        if hand_on(e, &name, w, m, sink)? == Flow::Stop {
            return Ok(false);
        }
    }
    missing(&want, &seen)?;
    Ok(true)
}

/// The checks on an entry's header: its name is one bundle.json lists, seen
/// once, a regular file of the listed size. `None`: an entry a legacy
/// archive may carry that nothing uses (skipped unread).
fn admit<'w, 'm, R: Read>(
    e: &tar::Entry<'_, R>,
    want: &'w BTreeMap<String, Want<'m>>,
    seen: &mut BTreeMap<String, ()>,
    mode: Mode,
) -> Result<Option<(String, &'w Want<'m>)>, ReadError> {
    let name = match mode {
        Mode::Bundle => plain_ustar(e.header())?,
        Mode::Legacy => entry_name(e).trim_start_matches("./").to_string(),
    };
    if name == SIGNATURE_NAME || name == MANIFEST_NAME {
        return Err(ReadError::Duplicate { name });
    }
    let kind = e.header().entry_type();
    if mode == Mode::Legacy && kind == tar::EntryType::Directory {
        return Ok(None);
    }
    if !matches!(kind, tar::EntryType::Regular) {
        return Err(ReadError::BadEntry {
            name,
            why: format!("is a {kind:?}, only regular files are allowed"),
        });
    }
    let Some(w) = want.get(&name) else {
        if mode == Mode::Legacy {
            // Not referenced by any image: podsec archives may carry
            // leftovers. Skipped unread; nothing uses it.
            return Ok(None);
        }
        return Err(ReadError::Unlisted { name });
    };
    if seen.insert(name.clone(), ()).is_some() {
        return Err(ReadError::Duplicate { name });
    }
    let size = match w {
        Want::Layout(f) => f.size,
        Want::Blob(b) => b.size,
    };
    if e.size() != size {
        return Err(ReadError::BadEntry {
            name,
            why: format!("is {} bytes, bundle.json says {size}", e.size()),
        });
    }
    Ok(Some((name, w)))
}

/// An admitted entry to the sink: a layout file checked whole first, a blob
/// checked as the sink reads it (and drained to its end if the sink did not).
fn hand_on<R: Read, S: BundleSink>(
    mut e: tar::Entry<'_, R>,
    name: &str,
    w: &Want,
    m: &BundleManifest,
    sink: &mut S,
) -> Result<Flow, S::Error> {
    match w {
        Want::Layout(f) => {
            let data = read_small(&mut e, name, f.size)?;
            let actual = Digest::of(&data);
            if actual != f.digest {
                return Err(ReadError::DigestMismatch {
                    name: name.to_string(),
                    expected: f.digest.clone(),
                    actual,
                }
                .into());
            }
            let path = &f.path;
            sink.entry(m, Entry::LayoutFile { path, data })
        }
        Want::Blob(b) => {
            let mut r = BlobReader {
                inner: &mut e,
                hasher: Hasher::new(),
                expected: b.digest.clone(),
                size: b.size,
                verified: false,
            };
            let flow = sink.entry(
                m,
                Entry::Blob {
                    blob: b,
                    reader: &mut r,
                },
            )?;
            if flow == Flow::Continue && !r.verified {
                // The sink read part of it: read the rest to check the digest.
                io::copy(&mut r, &mut io::sink()).map_err(|err| match err.kind() {
                    io::ErrorKind::InvalidData => ReadError::BadEntry {
                        name: name.to_string(),
                        why: err.to_string(),
                    },
                    _ => ReadError::Io(err),
                })?;
            }
            Ok(flow)
        }
    }
}

/// Every entry bundle.json lists must have been seen.
fn missing(want: &BTreeMap<String, Want>, seen: &BTreeMap<String, ()>) -> Result<(), ReadError> {
    let missing: Vec<&String> = want.keys().filter(|k| !seen.contains_key(*k)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<&str> = missing.iter().take(5).map(|s| s.as_str()).collect();
    let more = if missing.len() > 5 {
        format!(" and {} more", missing.len() - 5)
    } else {
        String::new()
    };
    Err(ReadError::Missing(format!("{}{more}", list.join(", "))))
}

/// Truncation after the tar end: drain the decompressor (bounded); only the
/// zero padding of the tar format may follow.
fn drain_trailer(mut rest: impl Read) -> Result<(), ReadError> {
    let mut tail = Vec::new();
    (&mut rest)
        .take(1 << 20)
        .read_to_end(&mut tail)
        .map_err(|e| ReadError::Trailer(e.to_string()))?;
    if tail.len() >= 1 << 20 || tail.iter().any(|&b| b != 0) {
        return Err(ReadError::Trailer(
            "unexpected data after the end of the archive".into(),
        ));
    }
    Ok(())
}

/// After the first zero block (where the tar reader stopped) the writer puts
/// exactly one more, and then the stream ends: anything else is refused,
/// reading at most one block of it.
fn strict_end(mut rest: impl Read) -> Result<(), ReadError> {
    let mut tail = Vec::new();
    (&mut rest)
        .take(BLOCK as u64 + 1)
        .read_to_end(&mut tail)
        .map_err(|e| ReadError::Trailer(e.to_string()))?;
    if tail.len() != BLOCK || tail.iter().any(|&b| b != 0) {
        return Err(ReadError::Trailer(
            "unexpected data after the end of the archive (it must end with exactly two zero blocks)".into(),
        ));
    }
    Ok(())
}

const BLOCK: usize = 512;

/// The name of an entry whose header is exactly what the writer makes: POSIX
/// ustar magic and version, a regular file (`'0'`), a size in octal digits
/// (no base-256), name and prefix fields NUL-padded with nothing after the
/// first NUL, UTF-8, within the ustar limits. Extension headers (PAX `x`/`g`,
/// GNU `L`/`K`), sparse files and old or GNU headers are refused without
/// reading their data: other tar readers interpret them in ways the tar crate
/// does not (the last of two PAX `size` records, a long name against a PAX
/// `path`), so only a header every reader reads alike is accepted.
pub fn plain_ustar(h: &tar::Header) -> Result<String, ReadError> {
    let b = h.as_bytes();
    let name_field = &b[0..100];
    let prefix_field = &b[345..500];
    let shown = String::from_utf8_lossy(until_nul(name_field))
        .chars()
        .take(100)
        .collect::<String>();
    let bad = |why: &str| ReadError::BadEntry {
        name: shown.clone(),
        why: why.to_string(),
    };
    if &b[257..263] != b"ustar\0" || &b[263..265] != b"00" {
        return Err(bad("is not a POSIX ustar header"));
    }
    if b[156] != b'0' {
        return Err(bad(&format!(
            "has type {:?}, only plain regular files are allowed (no PAX or GNU extension records, links or directories)",
            b[156] as char
        )));
    }
    let size = &b[124..136];
    let digits = until_nul(size);
    if digits.is_empty() || !digits.iter().all(|c| (b'0'..=b'7').contains(c)) {
        return Err(bad("has a size that is not plain octal"));
    }
    let (name, prefix) = (until_nul(name_field), until_nul(prefix_field));
    if !padded(name_field) || !padded(prefix_field) || name.is_empty() {
        return Err(bad("has a malformed name field"));
    }
    let full = if prefix.is_empty() {
        name.to_vec()
    } else {
        [prefix, b"/", name].concat()
    };
    // What the writer emits: printable ASCII without spaces or backslashes
    // (which tar tools quote or escape), relative, no `.`/`..` or empty
    // components, no trailing slash (a regular file named `x/` is a
    // directory to GNU tar).
    let name = String::from_utf8(full).map_err(|_| bad("has a name that is not UTF-8"))?;
    let printable = name.bytes().all(|c| c.is_ascii_graphic() && c != b'\\');
    let tidy = name
        .split('/')
        .all(|c| !c.is_empty() && c != "." && c != "..");
    if !printable || !tidy {
        return Err(bad("has a name the writer never makes (absolute, dotted, empty components or unusual characters)"));
    }
    Ok(name)
}

/// The entries of an uncompressed tar stream as the bundle reader's entry
/// layer sees them (name and size), or its refusal: every header plain ustar,
/// nothing after the end. Used to check that layer against GNU tar: whatever
/// it accepts, `tar -t` must list alike.
pub fn plain_entries(tar_stream: impl Read) -> Result<Vec<(String, u64)>, ReadError> {
    let mut archive = tar::Archive::new(tar_stream);
    let mut out = Vec::new();
    for e in archive.entries()?.raw(true) {
        let e = e?;
        out.push((plain_ustar(e.header())?, e.size()));
    }
    strict_end(archive.into_inner())?;
    Ok(out)
}

/// The bytes before the first NUL.
fn until_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    &field[..end]
}

/// Nothing but NULs after the first NUL.
fn padded(field: &[u8]) -> bool {
    field[until_nul(field).len()..].iter().all(|&c| c == 0)
}

fn entry_name<R: Read>(e: &tar::Entry<'_, R>) -> String {
    String::from_utf8_lossy(&e.path_bytes()).into_owned()
}

fn read_small(mut r: impl Read, name: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::new();
    (&mut r).take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(ReadError::BadEntry {
            name: name.to_string(),
            why: format!("is larger than the limit of {limit} bytes"),
        });
    }
    Ok(buf)
}

/// Read a legacy podsec archive (`tar c <arch> | xz`, no bundle.json): nothing
/// in it is signed, so the caller must have been told to accept unsigned input.
///
/// Two passes, so memory stays bounded and nothing is extracted to disk: the
/// first collects the layout's `index.json` and the small JSON blobs (manifests
/// and configs, each checked against its file name) and builds the equivalent of
/// a bundle.json; the second streams the blobs through the same checks as a
/// bundle (size and digest of every entry used).
pub fn read_legacy<S: BundleSink>(
    path: &std::path::Path,
    arch: &str,
    sink: &mut S,
) -> Result<Outcome, S::Error> {
    let header = legacy_header(path, arch)?;
    if sink.header(&header)? == Flow::Stop {
        return Ok(Outcome {
            header,
            complete: false,
        });
    }
    // Pass 2: stream every blob through the checks.
    let (_, decoded) = open_legacy(path)?;
    let mut archive = tar::Archive::new(decoded);
    let mut entries = archive.entries().map_err(ReadError::from)?;
    let complete = read_body(&mut entries, None, &header.manifest, Mode::Legacy, sink)?;
    if complete {
        drain_trailer(archive.into_inner())?;
    }
    Ok(Outcome { header, complete })
}

fn open_legacy(path: &std::path::Path) -> Result<(Codec, Box<dyn Read>), ReadError> {
    let f = std::fs::File::open(path)?;
    Ok(compress::decoder(BufReader::with_capacity(1 << 20, f))?)
}

/// Pass 1 of [`read_legacy`]: the layout's small files, and the bundle.json
/// they amount to.
fn legacy_header(path: &std::path::Path, arch: &str) -> Result<Header, ReadError> {
    let (codec, decoded) = open_legacy(path)?;
    let mut archive = tar::Archive::new(decoded);
    let prefix = format!("{arch}/");
    let mut index_json: Option<Vec<u8>> = None;
    let mut oci_layout: Option<Vec<u8>> = None;
    let mut small: BTreeMap<Digest, Vec<u8>> = BTreeMap::new();
    let mut sizes: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut dirs_seen: BTreeMap<String, ()> = BTreeMap::new();
    let mut small_total = 0u64;
    for e in archive.entries()?.raw(true) {
        let mut e = e?;
        let name = entry_name(&e).trim_start_matches("./").to_string();
        if let Some(top) = name.split('/').next() {
            dirs_seen.insert(top.to_string(), ());
        }
        let kind = e.header().entry_type();
        if kind == tar::EntryType::Directory {
            continue;
        }
        if kind != tar::EntryType::Regular {
            return Err(ReadError::BadEntry {
                name,
                why: format!("is a {kind:?}, only regular files are allowed"),
            });
        }
        let Some(rel) = name.strip_prefix(&prefix) else {
            continue;
        };
        match rel {
            "index.json" => {
                index_json = Some(read_small(&mut e, &name, crate::oci::MAX_MANIFEST_SIZE)?)
            }
            "oci-layout" => oci_layout = Some(read_small(&mut e, &name, 4096)?),
            _ => {
                let Some(hex) = rel.strip_prefix("blobs/sha256/") else {
                    continue;
                };
                let Ok(digest) = format!("sha256:{hex}").parse::<Digest>() else {
                    return Err(ReadError::BadEntry {
                        name,
                        why: "is not named by a sha256 digest".into(),
                    });
                };
                sizes.insert(digest.clone(), e.size());
                if e.size() <= crate::oci::MAX_MANIFEST_SIZE
                    && small_total + e.size() <= MAX_LEGACY_JSON_BYTES
                {
                    let data = read_small(&mut e, &name, crate::oci::MAX_MANIFEST_SIZE)?;
                    if data.first() == Some(&b'{') {
                        let actual = Digest::of(&data);
                        if actual != digest {
                            return Err(ReadError::DigestMismatch {
                                name,
                                expected: digest,
                                actual,
                            });
                        }
                        small_total += data.len() as u64;
                        small.insert(digest, data);
                    }
                }
            }
        }
    }
    let Some(index_json) = index_json else {
        let found: Vec<String> = dirs_seen.into_keys().collect();
        return Err(ReadError::BadEntry {
            name: format!("{arch}/index.json"),
            why: format!(
                "is missing: not a podsec archive for {arch} (top-level entries: {})",
                found.join(", ")
            ),
        });
    };
    let oci_layout = oci_layout.unwrap_or_else(|| crate::oci::OCI_LAYOUT_FILE.to_vec());
    let manifest = legacy_manifest(arch, &index_json, &oci_layout, &small, &sizes)?;
    Ok(Header {
        raw_manifest: manifest.to_json(),
        manifest,
        signature: None,
        codec,
    })
}

/// Most JSON (manifests and configs) a legacy archive's first pass keeps:
/// every small blob starting with `{` is a candidate until index.json says
/// which are used, and a 41 KB file of compressible fakes held 632 MB.
/// Beyond this, blobs are not kept, and an image that needs one is refused
/// as missing it.
const MAX_LEGACY_JSON_BYTES: u64 = 64 << 20;

/// The bundle.json a podsec layout amounts to.
fn legacy_manifest(
    arch: &str,
    index_json: &[u8],
    oci_layout: &[u8],
    small: &BTreeMap<Digest, Vec<u8>>,
    sizes: &BTreeMap<Digest, u64>,
) -> Result<BundleManifest, ReadError> {
    use super::model::{BlobKind, FileEntry, ImageEntry, FORMAT, FORMAT_VERSION};
    use crate::oci::{self, Fetched};
    let bad = |why: String| ReadError::BadEntry {
        name: format!("{arch}/index.json"),
        why,
    };
    let index: crate::oci::Index =
        serde_json::from_slice(index_json).map_err(|e| bad(format!("is not an OCI index: {e}")))?;
    let mut images = Vec::new();
    let mut blobs: Vec<BlobEntry> = Vec::new();
    let mut listed: BTreeMap<Digest, ()> = BTreeMap::new();
    let mut add_blob = |blobs: &mut Vec<BlobEntry>,
                        digest: &Digest,
                        media_type: &str,
                        kind: BlobKind|
     -> Result<(), ReadError> {
        let size = *sizes
            .get(digest)
            .ok_or_else(|| ReadError::Missing(format!("{arch}/blobs/sha256/{}", digest.hex())))?;
        if listed.insert(digest.clone(), ()).is_none() {
            blobs.push(BlobEntry {
                digest: digest.clone(),
                size,
                media_type: media_type.to_string(),
                kind,
            });
        }
        Ok(())
    };
    let mut platform: Option<String> = None;
    for d in &index.manifests {
        let Some(name) = d.annotations.get(oci::REF_NAME_ANNOTATION) else {
            continue;
        };
        let raw = small.get(&d.digest).ok_or_else(|| {
            ReadError::Missing(format!(
                "{arch}/blobs/sha256/{} (manifest of {name})",
                d.digest.hex()
            ))
        })?;
        let (fetched, media_type) = oci::parse_manifest(raw, Some(&d.media_type))
            .map_err(|e| bad(format!("{name}: {e}")))?;
        let Fetched::Image(m) = fetched else {
            return Err(bad(format!("{name}: nested indexes are not supported")));
        };
        if !small.contains_key(&m.config.digest) {
            return Err(ReadError::Missing(format!(
                "{arch}/blobs/sha256/{} (config of {name})",
                m.config.digest.hex()
            )));
        }
        add_blob(&mut blobs, &d.digest, &media_type, BlobKind::Manifest)?;
        add_blob(
            &mut blobs,
            &m.config.digest,
            &m.config.media_type,
            BlobKind::Config,
        )?;
        for l in &m.layers {
            if sizes.get(&l.digest) != Some(&l.size) {
                return Err(bad(format!(
                    "{name}: layer {} is missing or has another size",
                    l.digest
                )));
            }
            add_blob(&mut blobs, &l.digest, &l.media_type, BlobKind::Layer)?;
        }
        platform.get_or_insert_with(|| name.split('/').next().unwrap_or_default().to_string());
        let size = raw.len() as u64 + m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>();
        images.push(ImageEntry {
            name: name.clone(),
            role: None,
            source: format!("podsec archive ({arch})"),
            source_digest: d.digest.clone(),
            source_manifest_digest: d.digest.clone(),
            manifest: d.digest.clone(),
            manifest_media_type: media_type,
            config: m.config.digest.clone(),
            layers: m.layers.iter().map(|l| l.digest.clone()).collect(),
            size,
            preserved: true,
        });
    }
    let m = BundleManifest {
        format: FORMAT.to_string(),
        format_version: FORMAT_VERSION,
        platform: platform.unwrap_or_default(),
        platform_aliases: vec![],
        legacy_prefixes: vec![],
        kube_version: None,
        arch: arch.to_string(),
        variant: None,
        profile: "podsec-archive".into(),
        flannel_tag: None,
        flannel_cni_plugin_tag: None,
        kubeadm_versions: Vec::new(),
        created: String::new(),
        expires: None,
        tool: "podsec".into(),
        layout: vec![
            FileEntry {
                path: "oci-layout".into(),
                digest: Digest::of(oci_layout),
                size: oci_layout.len() as u64,
            },
            FileEntry {
                path: "index.json".into(),
                digest: Digest::of(index_json),
                size: index_json.len() as u64,
            },
        ],
        images,
        blobs,
        delta: None,
    };
    m.validate()?;
    Ok(m)
}

/// Is this a legacy podsec archive (a tar whose first entry is not bundle.json)?
pub fn is_legacy(path: &std::path::Path) -> Result<bool, ReadError> {
    let f = std::fs::File::open(path)?;
    let (_, decoded) = compress::decoder(BufReader::new(f))?;
    let mut archive = tar::Archive::new(decoded);
    // Raw: a first entry that is an extension record must not be buffered.
    let mut entries = archive.entries()?.raw(true);
    match entries.next() {
        Some(e) => Ok(entry_name(&e?) != MANIFEST_NAME),
        None => Ok(false),
    }
}
