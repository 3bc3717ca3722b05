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

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    #[error("{0}")]
    Rejected(BoxError),
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

/// Read `input` as a bundle. `check_header` runs after bundle.json and its
/// signature are read and before anything else; an error from it stops the read.
/// `on_entry` gets every other entry in archive order; a blob must be read to its
/// end for it to count as verified (it is drained if the callback stops early).
pub fn read_bundle(
    input: impl Read,
    check_header: impl FnOnce(&Header) -> Result<(), BoxError>,
    mut on_entry: impl FnMut(&BundleManifest, Entry<'_>) -> Result<(), BoxError>,
) -> Result<Header, ReadError> {
    let (codec, decoded) = compress::decoder(BufReader::with_capacity(1 << 20, input))?;
    let mut archive = tar::Archive::new(decoded);
    let mut entries = archive.entries()?;

    // 1. bundle.json, then maybe its signature.
    let first = entries.next().ok_or_else(|| ReadError::NoManifest {
        first: "<empty archive>".into(),
    })??;
    let first_name = entry_name(&first);
    if first_name != MANIFEST_NAME {
        return Err(ReadError::NoManifest { first: first_name });
    }
    let raw_manifest = read_small(first, MANIFEST_NAME, MAX_MANIFEST_BYTES)?;
    let manifest = BundleManifest::parse(&raw_manifest)?;

    let mut pending = entries.next().transpose()?;
    let mut signature = None;
    if let Some(e) = pending.take() {
        if entry_name(&e) == SIGNATURE_NAME {
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
    check_header(&header).map_err(ReadError::Rejected)?;
    let m = &header.manifest;

    // 2. The expected entries: name → what it is.
    enum Want<'a> {
        Layout(&'a super::model::FileEntry),
        Blob(&'a BlobEntry),
    }
    let mut want: BTreeMap<String, Want> = BTreeMap::new();
    for f in &m.layout {
        want.insert(format!("{}/{}", m.arch, f.path), Want::Layout(f));
    }
    for b in &m.blobs {
        want.insert(m.blob_path(&b.digest), Want::Blob(b));
    }
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();

    let mut next = pending.map(Ok);
    loop {
        let e = match next.take().or_else(|| entries.next()) {
            None => break,
            Some(e) => e?,
        };
        let name = entry_name(&e);
        if name == SIGNATURE_NAME || name == MANIFEST_NAME {
            return Err(ReadError::Duplicate { name });
        }
        let kind = e.header().entry_type();
        if !matches!(kind, tar::EntryType::Regular) {
            return Err(ReadError::BadEntry {
                name,
                why: format!("is a {kind:?}, only regular files are allowed"),
            });
        }
        let Some(w) = want.get(&name) else {
            return Err(ReadError::Unlisted { name });
        };
        if seen.insert(name.clone(), ()).is_some() {
            return Err(ReadError::Duplicate { name });
        }
        let (expected, size) = match w {
            Want::Layout(f) => (&f.digest, f.size),
            Want::Blob(b) => (&b.digest, b.size),
        };
        if e.size() != size {
            return Err(ReadError::BadEntry {
                name,
                why: format!("is {} bytes, bundle.json says {size}", e.size()),
            });
        }
        let mut e = e;
        match w {
            Want::Layout(f) => {
                let data = read_small(&mut e, &name, size)?;
                let actual = Digest::of(&data);
                if actual != f.digest {
                    return Err(ReadError::DigestMismatch {
                        name,
                        expected: f.digest.clone(),
                        actual,
                    });
                }
                on_entry(
                    m,
                    Entry::LayoutFile {
                        path: &f.path,
                        data,
                    },
                )
                .map_err(ReadError::Rejected)?;
            }
            Want::Blob(b) => {
                let mut r = BlobReader {
                    inner: &mut e,
                    hasher: Hasher::new(),
                    expected: expected.clone(),
                    size,
                    verified: false,
                };
                let res = on_entry(
                    m,
                    Entry::Blob {
                        blob: b,
                        reader: &mut r,
                    },
                );
                res.map_err(ReadError::Rejected)?;
                if !r.verified {
                    // The callback stopped early: read the rest to check the digest.
                    io::copy(&mut r, &mut io::sink()).map_err(|err| {
                        if err.kind() == io::ErrorKind::InvalidData {
                            ReadError::BadEntry {
                                name: name.clone(),
                                why: err.to_string(),
                            }
                        } else {
                            ReadError::Io(err)
                        }
                    })?;
                }
            }
        }
    }

    // 3. Truncation after the tar end: drain the decompressor (bounded).
    let mut rest = archive.into_inner();
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

    let missing: Vec<&String> = want.keys().filter(|k| !seen.contains_key(*k)).collect();
    if !missing.is_empty() {
        let list: Vec<&str> = missing.iter().take(5).map(|s| s.as_str()).collect();
        let more = if missing.len() > 5 {
            format!(" and {} more", missing.len() - 5)
        } else {
            String::new()
        };
        return Err(ReadError::Missing(format!("{}{more}", list.join(", "))));
    }
    Ok(header)
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
