//! The offline trust-chain checks shared by `verify` and `load`: the signature
//! over bundle.json, and index.json's agreement with bundle.json. A library
//! module so that no command has to import another command for them.

use crate::bundle::BundleManifest;
use crate::oci::{self, Index};
use std::path::PathBuf;

use crate::sign::{self, SignError};

/// Why a bundle is not to be trusted. Every variant is a verification failure
/// (exit code 3), except a [`SignError`] that is trouble with our own tools
/// rather than with the signature (see [`VerifyError::is_verification`]).
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
}

impl VerifyError {
    /// False only for a signing-tool failure that says nothing about the bundle.
    pub fn is_verification(&self) -> bool {
        match self {
            VerifyError::Signature(e) => e.is_verification(),
            _ => true,
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
