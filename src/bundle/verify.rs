//! The offline trust-chain checks shared by `verify` and `load`: the signature
//! over bundle.json, and index.json's agreement with bundle.json. A library
//! module so that no command has to import another command for them.

use std::io::Read;

use crate::bundle::reader::{self, BundleSink, Entry, Flow, Header, ReadError};
use crate::bundle::volumes::{self, VolumeError};
use crate::bundle::BundleManifest;
use crate::digest::Digest;
use crate::error::Class;
use crate::oci::{self, Index};
use std::path::PathBuf;

use crate::sign::{self, SignError};

/// Why a bundle is not to be trusted. Every variant is a verification failure
/// (exit code 3), except a [`SignError`] that is trouble with our own tools
/// rather than with the signature (see [`VerifyError::class`]).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the bundle is not signed; give --allow-unsigned to accept it anyway")]
    Unsigned,
    #[error("the bundle is signed by {issuer}, but no trusted key was found in {sources}: pass --keyring FILE or put the builder's public key there")]
    NoTrustedKey { issuer: String, sources: String },
    #[error("the bundle is signed by unknown key {issuer}; trusted are {trusted} (read from {sources}): put the builder's public key there or pass --keyring FILE")]
    UnknownKey {
        issuer: String,
        trusted: String,
        sources: String,
    },
    #[error(transparent)]
    Signature(#[from] SignError),
    #[error("index.json: {0}")]
    IndexJson(serde_json::Error),
    #[error("index.json lists {index} images, bundle.json {bundle} in OCI format")]
    ImageCount { index: usize, bundle: usize },
    #[error("index.json entry {name:?} does not match image {image} of bundle.json")]
    Mismatch { name: Option<String>, image: String },
    #[error("index.json gives a wrong size for {image}")]
    WrongSize { image: String },
    #[error(transparent)]
    Archive(#[from] ReadError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// The bundle is for another architecture than the one wanted.
    #[error("{0}")]
    Arch(String),
    /// Past the signed `expires` of bundle.json.
    #[error("{0}")]
    Expired(String),
    /// A blob that could not be read to its end: the archive is cut short
    /// or corrupt.
    #[error("reading blob {digest}: {source}")]
    Blob {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
}

impl VerifyError {
    /// Untrusted, except a signing-tool failure that says nothing about the bundle.
    pub fn class(&self) -> Class {
        match self {
            VerifyError::Signature(e) => e.class(),
            VerifyError::Archive(e) => e.class(),
            VerifyError::Volume(e) => e.class(),
            _ => Class::Untrusted,
        }
    }
}

/// Who may vouch for a bundle or a volume index.
pub struct Trust<'a> {
    pub keyring: &'a [sequoia_openpgp::Cert],
    /// Where the keyring was read from (`--keyring` files, the trusted
    /// directory): a refusal names them, so that the admin knows where the
    /// builder's key has to go.
    pub sources: &'a [PathBuf],
    pub allow_unsigned: bool,
}

impl Trust<'_> {
    /// The trusted fingerprints, for a message ("none" when empty).
    pub fn fingerprints(&self) -> String {
        let fprs: Vec<String> = self
            .keyring
            .iter()
            .map(|c| c.fingerprint().to_hex())
            .collect();
        if fprs.is_empty() {
            "none".into()
        } else {
            fprs.join(", ")
        }
    }

    /// The keyring's sources, for a message.
    pub fn sources(&self) -> String {
        let s: Vec<String> = self
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if s.is_empty() {
            "no keyring".into()
        } else {
            s.join(", ")
        }
    }
}

/// The signature decision: Some(fingerprint) when signed by a trusted key,
/// None when unsigned and that is allowed, an error otherwise.
pub fn check_signature(
    raw: &[u8],
    sig: Option<&[u8]>,
    trust: &Trust<'_>,
) -> Result<Option<String>, VerifyError> {
    match sig {
        None if trust.allow_unsigned => Ok(None),
        None => Err(VerifyError::Unsigned),
        Some(s) if trust.keyring.is_empty() => Err(VerifyError::NoTrustedKey {
            issuer: sign::detached::issuer_fingerprint(s)
                .unwrap_or_else(|| "an unknown key".into()),
            sources: trust.sources(),
        }),
        Some(s) => match sign::detached::verify_detached(trust.keyring, raw, s) {
            Ok(v) => Ok(Some(v.fingerprint)),
            Err(SignError::UnknownKey { issuer }) => Err(VerifyError::UnknownKey {
                issuer,
                trusted: trust.fingerprints(),
                sources: trust.sources(),
            }),
            Err(e) => Err(e.into()),
        },
    }
}

/// index.json must name exactly the images of bundle.json that are in the
/// layout ([`ImageEntry::in_layout`](crate::bundle::model::ImageEntry::in_layout)),
/// in order, with the same digests.
pub fn check_layout(m: &BundleManifest, index_json: &[u8]) -> Result<(), VerifyError> {
    let index: Index = serde_json::from_slice(index_json).map_err(VerifyError::IndexJson)?;
    let in_layout: Vec<_> = m.images.iter().filter(|i| i.in_layout()).collect();
    if index.manifests.len() != in_layout.len() {
        return Err(VerifyError::ImageCount {
            index: index.manifests.len(),
            bundle: in_layout.len(),
        });
    }
    for (d, img) in index.manifests.iter().zip(in_layout) {
        let name = d.annotations.get(oci::REF_NAME_ANNOTATION);
        if name != Some(&img.name) || d.digest != img.manifest {
            return Err(VerifyError::Mismatch {
                name: name.cloned(),
                image: img.name.clone(),
            });
        }
        if m.blob(&d.digest).map(|b| b.size) != Some(d.size) {
            return Err(VerifyError::WrongSize {
                image: img.name.clone(),
            });
        }
    }
    Ok(())
}

/// The checks on a bundle's header, before any other byte is read: read from
/// volumes, bundle.json must be the one their signed index names; then its
/// own signature decides ([`check_signature`]). Returns the signer.
pub fn check_header(
    h: &Header,
    trust: &Trust,
    volume_json: Option<&Digest>,
) -> Result<Option<String>, VerifyError> {
    volumes::check_bundle_json(volume_json, &h.raw_manifest)?;
    check_signature(&h.raw_manifest, h.signature.as_deref(), trust)
}

/// What `verify` learns reading a whole bundle.
#[derive(Debug, Default)]
pub struct Verified {
    /// The trusted key that signed bundle.json; `None` when accepted unsigned.
    pub signer: Option<String>,
    pub index_json: Option<Vec<u8>>,
    /// How many blobs were read and matched their digests.
    pub blobs: usize,
}

/// The sink that checks a bundle and keeps nothing but what the layout check
/// needs: every blob is read to its end (that is where the reader checks it).
pub struct Verifier<'a> {
    trust: &'a Trust<'a>,
    volume_json: Option<Digest>,
    pub verified: Verified,
}

impl<'a> Verifier<'a> {
    pub fn new(trust: &'a Trust<'a>, volume_json: Option<Digest>) -> Self {
        Verifier {
            trust,
            volume_json,
            verified: Verified::default(),
        }
    }
}

impl BundleSink for Verifier<'_> {
    type Error = VerifyError;

    fn header(&mut self, h: &Header) -> Result<Flow, VerifyError> {
        self.verified.signer = check_header(h, self.trust, self.volume_json.as_ref())?;
        // Signed, so its `expires` can be believed; past it, refused.
        crate::freshness::check_expiry(&h.manifest, time::OffsetDateTime::now_utc())
            .map_err(|e| VerifyError::Expired(e.to_string()))?;
        Ok(Flow::Continue)
    }

    fn entry(&mut self, _: &BundleManifest, entry: Entry<'_>) -> Result<Flow, VerifyError> {
        match entry {
            Entry::LayoutFile {
                path: "index.json",
                data,
            } => self.verified.index_json = Some(data),
            Entry::LayoutFile { .. } => {}
            Entry::Blob { blob, reader } => {
                // A read error here is the archive's (cut short, corrupt):
                // a verification failure, not an operational one.
                std::io::copy(reader, &mut std::io::sink()).map_err(|source| {
                    VerifyError::Blob {
                        digest: blob.digest.clone(),
                        source,
                    }
                })?;
                self.verified.blobs += 1;
            }
        }
        Ok(Flow::Continue)
    }
}

/// Read and check a whole bundle: header, signature, every entry.
pub fn verify_bundle(
    input: impl Read,
    trust: &Trust,
    volume_json: Option<Digest>,
) -> Result<(Header, Verified), VerifyError> {
    let mut v = Verifier::new(trust, volume_json);
    let out = reader::read_bundle(input, &mut v)?;
    Ok((out.header, v.verified))
}
