//! OpenPGP for u7s-bundle: signing keys, detached signatures over `bundle.json`, and
//! the "simple signing" image signatures that skopeo, podman and CRI-O verify.
//!
//! Why this module is so particular about shapes: the verifier on the cluster is
//! containers/image (5.23 in skopeo 1.9.3 / podman 4.3, the same library in CRI-O)
//! driving GnuPG through GPGME. It refuses, at pull time and only there, anything
//! that deviates from a narrow shape (see `shared/notes/simple-signing.md`):
//! a binary OpenPGP *signed message*, exactly one v4 signature, made by the
//! *primary* key of a v4 RSA certificate that carries the signing flag itself.
//! Sequoia's defaults (certify-only primary + signing subkey, v6 under the
//! RFC 9580 profile) produce keys that cannot sign images for that verifier, so
//! [`keys::generate`] and [`keys::SigningKey`] pin the working shape, and
//! [`simple::verify_simple`] reproduces the verifier's rules so that our own
//! tests and policy evaluation fail where the cluster would.
//!
//! Layout:
//! - [`keys`]: key generation, key files, keyrings, passphrases;
//! - [`detached`]: detached signatures over bundle metadata;
//! - [`simple`]: the simple-signing payload, signers and the faithful verifier;
//! - [`gpg`]: [`gpg::GpgSigner`], signing through the operator's own GnuPG.

use std::path::PathBuf;

pub mod detached;
pub mod gpg;
pub mod keys;
mod open;
pub mod simple;
mod verify;

#[cfg(test)]
mod testutil;

pub use sequoia_openpgp::Cert;

pub use detached::{issuer_fingerprint, sign_detached, verify_detached, Verified};
pub use gpg::{GpgOptions, GpgSigner};
pub use keys::{
    generate, keyring_from_dir, load_keyring, load_keyring_bytes, passphrase_from_file,
    write_key_pair, SigningKey,
};
pub use open::{open_key_file, open_signer, OpenSignerError};
pub use simple::{parse_payload, payload, probe, verify_simple, ImageSigner, SimplePayload};

/// Result type of this module.
pub type Result<T, E = SignError> = std::result::Result<T, E>;

/// Everything that can go wrong while handling keys and signatures.
///
/// Verification failures are split into distinct variants because the operator's
/// next step differs: an unknown key means "import the right public key", an
/// expired or revoked one means "re-sign with a current key", a bad signature means
/// "the data was altered". Messages name the key (primary fingerprint where known,
/// otherwise the issuer id carried by the signature). No variant ever carries
/// secret material or passphrases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A key file would be overwritten; keys are never replaced silently.
    #[error("refusing to overwrite existing file {}", .0.display())]
    AlreadyExists(PathBuf),

    /// The input is not a usable OpenPGP key / keyring.
    #[error("{what}: {reason}")]
    InvalidKey {
        /// What was being read (usually a path).
        what: String,
        /// Why it is unusable.
        reason: String,
    },

    /// A secret key file held no secret key.
    #[error("{0}: contains no secret key (only public keys)")]
    NoSecretKey(String),

    /// A secret key file held several secret keys; which one signs must be explicit.
    #[error("{what}: contains {} secret keys ({}); expected exactly one", fingerprints.len(), fingerprints.join(", "))]
    MultipleSecretKeys {
        /// What was being read.
        what: String,
        /// Primary fingerprints of the keys found.
        fingerprints: Vec<String>,
    },

    /// The secret key is encrypted and no passphrase was given.
    #[error("secret key {fingerprint} is protected by a passphrase, but none was given")]
    PassphraseRequired {
        /// Primary fingerprint.
        fingerprint: String,
    },

    /// The passphrase did not decrypt the secret key.
    #[error("wrong passphrase for secret key {fingerprint}")]
    WrongPassphrase {
        /// Primary fingerprint.
        fingerprint: String,
    },

    /// The primary key's secret is absent (a GnuPG stub, e.g. after
    /// `--export-secret-subkeys`, or a key on a smartcard).
    #[error("the secret part of primary key {fingerprint} is not available (GnuPG stub or smartcard); image signatures must be made by the primary key itself")]
    NoPrimarySecret {
        /// Primary fingerprint.
        fingerprint: String,
    },

    /// The primary key is not flagged for signing.
    #[error("primary key {fingerprint} is not signing-capable{}: skopeo, podman and CRI-O (containers/image) accept only image signatures made by the primary key, never by a subkey; create the key with `u7s-bundle keygen` or `gpg --quick-gen-key UID rsa3072 sign,cert never`",
        if *subkey_can_sign { " (only a subkey can sign)" } else { "" })]
    PrimaryCannotSign {
        /// Primary fingerprint.
        fingerprint: String,
        /// Whether a signing-capable subkey exists (the sequoia/gpg default shape).
        subkey_can_sign: bool,
    },

    /// The key cannot be used to sign now (expired, revoked, rejected by policy).
    #[error("key {fingerprint} cannot be used for signing: {reason}")]
    UnusableSigningKey {
        /// Primary fingerprint.
        fingerprint: String,
        /// Why.
        reason: String,
    },

    /// The signature could not be parsed or has the wrong structure.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),

    /// The signer is not in the keyring.
    #[error("signed by unknown key {issuer}")]
    UnknownKey {
        /// Issuer fingerprint (or key id when the signature carries only that).
        issuer: String,
    },

    /// The cryptographic check failed: the data or the signature was altered.
    #[error("bad signature by key {fingerprint}: {reason}")]
    BadSignature {
        /// Primary fingerprint of the claimed signer.
        fingerprint: String,
        /// Details from the OpenPGP library.
        reason: String,
    },

    /// The signer's key (or certificate) was expired, or not yet valid, when the
    /// signature was made or is expired now.
    #[error("key {fingerprint} is expired or not valid at the relevant time: {reason}")]
    KeyExpired {
        /// Primary fingerprint.
        fingerprint: String,
        /// Details.
        reason: String,
    },

    /// The signer's key (or certificate) is revoked.
    #[error("key {fingerprint} is revoked{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    KeyRevoked {
        /// Primary fingerprint.
        fingerprint: String,
        /// Revocation reason, if the revocation states one.
        reason: String,
    },

    /// The signer's key is not valid for another reason (no valid binding under the
    /// standard policy, not flagged for signing, weak algorithm).
    #[error("key {fingerprint} is not valid for this signature: {reason}")]
    KeyInvalid {
        /// Primary fingerprint.
        fingerprint: String,
        /// Details.
        reason: String,
    },

    /// An image signature was made by a subkey. containers/image compares the
    /// signer's fingerprint with the *primary* fingerprints of the trusted keyring,
    /// so such a signature is refused on the cluster, and here too.
    #[error("signature by key {signer} is not accepted: it is a subkey of {primary}, and only signatures made by a primary key are accepted")]
    NotPrimaryKey {
        /// Fingerprint of the subkey that signed.
        signer: String,
        /// Primary fingerprint of its certificate.
        primary: String,
    },

    /// A simple signature must contain exactly one signature.
    #[error("expected exactly one signature in the signed message, found {0}")]
    SignatureCount(usize),

    /// The blob is not a binary OpenPGP signed message (e.g. armored, cleartext).
    #[error("not a binary OpenPGP signed message: {0}")]
    NotSignedMessage(String),

    /// The signed payload is not a valid "atomic container signature".
    #[error("invalid simple-signing payload: {0}")]
    InvalidPayload(String),

    /// `gpg` found no secret key for the requested id.
    #[error("gpg: no secret key found for {id:?}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    GpgKeyNotFound {
        /// The id asked for.
        id: String,
        /// gpg's diagnostics.
        detail: String,
    },

    /// `gpg` found several secret keys for the requested id.
    #[error("gpg: {id:?} matches {} secret keys ({}); use a full fingerprint", fingerprints.len(), fingerprints.join(", "))]
    GpgAmbiguous {
        /// The id asked for.
        id: String,
        /// Primary fingerprints of the matches.
        fingerprints: Vec<String>,
    },

    /// Running `gpg` failed.
    #[error("{command} failed ({status}): {stderr}")]
    GpgFailed {
        /// The command line (no secrets: passphrases are passed by file).
        command: String,
        /// Exit status or spawn error.
        status: String,
        /// gpg's stderr, trimmed.
        stderr: String,
    },

    /// Any other OpenPGP library error.
    #[error("OpenPGP: {0:#}")]
    OpenPgp(anyhow::Error),
}

impl SignError {
    /// Signature checks that failed (the bundle or image is not to be trusted),
    /// as opposed to trouble with our own signing key, files or gpg.
    pub fn class(&self) -> crate::error::Class {
        let untrusted = matches!(
            self,
            SignError::MalformedSignature(_)
                | SignError::UnknownKey { .. }
                | SignError::BadSignature { .. }
                | SignError::KeyExpired { .. }
                | SignError::KeyRevoked { .. }
                | SignError::KeyInvalid { .. }
                | SignError::NotPrimaryKey { .. }
                | SignError::SignatureCount(_)
                | SignError::NotSignedMessage(_)
                | SignError::InvalidPayload(_)
        );
        if untrusted {
            crate::error::Class::Untrusted
        } else {
            crate::error::Class::Failed
        }
    }
}

impl SignError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SignError::Io {
            path: path.into(),
            source,
        }
    }
}
