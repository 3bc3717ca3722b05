//! The verification core shared by detached and simple signatures.
//!
//! Sequoia's streaming verifiers do the parsing and the cryptography; this module
//! turns each signature's outcome into a [`SignError`] the operator can act on, and
//! adds the one check Sequoia leaves to the caller: that the signer's key is still
//! valid *now*. Sequoia evaluates the key at the signature's creation time, while
//! GnuPG (and therefore containers/image via GPGME) refuses signatures by keys that
//! are expired or revoked at verification time (EXPKEYSIG / REVKEYSIG). We want both.

use std::io::Read;

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
    VerificationResult, VerifierBuilder,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::types::RevocationStatus;
use openpgp::{Cert, KeyHandle};

use super::SignError;

/// A signature that verified: who made it.
#[derive(Debug, Clone)]
pub(crate) struct Good {
    /// Primary fingerprint of the signer's certificate.
    pub primary: String,
    /// Fingerprint of the key that made the signature (== `primary` unless a
    /// subkey signed).
    pub signer: String,
}

/// Outcome of one signature.
pub(crate) type SigOutcome = Result<Good, SignError>;

/// Formats a revocation's stated reason, or nothing.
pub(crate) fn revocation_reason(revs: &[&openpgp::packet::Signature]) -> String {
    revs.iter()
        .find_map(|r| r.reason_for_revocation())
        .map(|(code, msg)| {
            let msg = String::from_utf8_lossy(msg);
            if msg.is_empty() {
                format!(" ({code})")
            } else {
                format!(" ({code}: {msg})")
            }
        })
        .unwrap_or_default()
}

/// Collects one outcome per signature, in message order.
struct Helper<'a> {
    keyring: &'a [Cert],
    outcomes: Vec<SigOutcome>,
    encrypted: bool,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        // Keyrings are small (a handful of signers); hand over all of them and let
        // the verifier match issuers by fingerprint or key id.
        Ok(self.keyring.to_vec())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        // Never fail here: the caller decides, with the full list of outcomes.
        for layer in structure.into_iter() {
            match layer {
                MessageLayer::Compression { .. } => {}
                MessageLayer::Encryption { .. } => self.encrypted = true,
                MessageLayer::SignatureGroup { results } => {
                    for r in results {
                        self.outcomes.push(classify(r));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Maps Sequoia's per-signature result to our outcome.
fn classify(result: VerificationResult<'_>) -> SigOutcome {
    let policy = StandardPolicy::new();
    match result {
        Ok(good) => {
            let cert = good.ka.cert();
            let primary = cert.fingerprint().to_hex();
            let signer = good.ka.key().fingerprint().to_hex();
            check_valid_now(cert, &good.ka.key().key_handle(), &policy)?;
            Ok(Good { primary, signer })
        }
        Err(VerificationError::MissingKey { sig }) => {
            let issuers = sig.get_issuers();
            let issuer = issuers
                .iter()
                .find(|h| matches!(h, KeyHandle::Fingerprint(_)))
                .or_else(|| issuers.first())
                .map(|h| h.to_hex())
                .unwrap_or_else(|| "(signature names no issuer)".into());
            Err(SignError::UnknownKey { issuer })
        }
        Err(VerificationError::UnboundKey { cert, error, .. }) => Err(SignError::KeyInvalid {
            fingerprint: cert.fingerprint().to_hex(),
            reason: format!("{error:#}"),
        }),
        Err(VerificationError::BadKey { ka, error, .. }) => {
            let fingerprint = ka.cert().fingerprint().to_hex();
            let vc = ka.valid_cert();
            if let RevocationStatus::Revoked(revs) = vc.revocation_status() {
                return Err(SignError::KeyRevoked {
                    fingerprint,
                    reason: revocation_reason(&revs).trim().to_string(),
                });
            }
            if let RevocationStatus::Revoked(revs) = ka.revocation_status() {
                return Err(SignError::KeyRevoked {
                    fingerprint,
                    reason: format!(
                        "signing key {}{}",
                        ka.key().fingerprint(),
                        revocation_reason(&revs)
                    ),
                });
            }
            if let Err(e) = vc.alive().and_then(|()| ka.alive()) {
                return Err(SignError::KeyExpired {
                    fingerprint,
                    reason: format!("at signature creation time: {e:#}"),
                });
            }
            Err(SignError::KeyInvalid {
                fingerprint,
                reason: format!("{error:#}"),
            })
        }
        Err(VerificationError::BadSignature { ka, error, .. }) => Err(SignError::BadSignature {
            fingerprint: ka.cert().fingerprint().to_hex(),
            reason: format!("{error:#}"),
        }),
        Err(VerificationError::MalformedSignature { error, .. }) => {
            Err(SignError::MalformedSignature(format!("{error:#}")))
        }
        Err(VerificationError::UnknownSignature { sig }) => {
            Err(SignError::MalformedSignature(format!("{:#}", sig.error())))
        }
        Err(other) => Err(SignError::MalformedSignature(format!("{other:#}"))),
    }
}

/// GnuPG semantics on top of Sequoia's: the key must be valid at verification time.
fn check_valid_now(cert: &Cert, key: &KeyHandle, policy: &StandardPolicy) -> Result<(), SignError> {
    let fingerprint = cert.fingerprint().to_hex();
    let vc = cert
        .with_policy(policy, None)
        .map_err(|e| SignError::KeyInvalid {
            fingerprint: fingerprint.clone(),
            reason: format!("now: {e:#}"),
        })?;
    if let RevocationStatus::Revoked(revs) = vc.revocation_status() {
        return Err(SignError::KeyRevoked {
            fingerprint,
            reason: revocation_reason(&revs).trim().to_string(),
        });
    }
    if let Err(e) = vc.alive() {
        return Err(SignError::KeyExpired {
            fingerprint,
            reason: format!("now: {e:#}"),
        });
    }
    let Some(ka) = vc.keys().key_handle(key.clone()).next() else {
        return Err(SignError::KeyInvalid {
            fingerprint,
            reason: format!("signing key {key} is no longer bound to the certificate"),
        });
    };
    if let RevocationStatus::Revoked(revs) = ka.revocation_status() {
        return Err(SignError::KeyRevoked {
            fingerprint,
            reason: format!("signing key {key}{}", revocation_reason(&revs)),
        });
    }
    if let Err(e) = ka.alive() {
        return Err(SignError::KeyExpired {
            fingerprint,
            reason: format!("signing key {key} now: {e:#}"),
        });
    }
    Ok(())
}

/// Verifies a detached signature over `data`; one outcome per signature found.
pub(crate) fn detached(
    keyring: &[Cert],
    data: &[u8],
    sig: &[u8],
) -> Result<Vec<SigOutcome>, SignError> {
    let malformed = |e: anyhow::Error| SignError::MalformedSignature(format!("{e:#}"));
    let policy = StandardPolicy::new();
    let helper = Helper {
        keyring,
        outcomes: Vec::new(),
        encrypted: false,
    };
    let mut v = DetachedVerifierBuilder::from_bytes(sig)
        .map_err(malformed)?
        .with_policy(&policy, None, helper)
        .map_err(malformed)?;
    v.verify_bytes(data).map_err(malformed)?;
    let helper = v.into_helper();
    if helper.encrypted {
        return Err(SignError::MalformedSignature("encrypted data".into()));
    }
    Ok(helper.outcomes)
}

/// Upper bound on the content of a signed message we verify. Simple-signing payloads
/// are a few hundred bytes; anything near this is not one of ours.
const MAX_SIGNED_CONTENT: u64 = 1 << 20;

/// Verifies an inline-signed message; returns its content and one outcome per
/// signature (over all nesting levels).
pub(crate) fn inline(
    keyring: &[Cert],
    message: &[u8],
) -> Result<(Vec<u8>, Vec<SigOutcome>), SignError> {
    let malformed = |e: anyhow::Error| SignError::MalformedSignature(format!("{e:#}"));
    let policy = StandardPolicy::new();
    let helper = Helper {
        keyring,
        outcomes: Vec::new(),
        encrypted: false,
    };
    let mut v = VerifierBuilder::from_bytes(message)
        .map_err(malformed)?
        .with_policy(&policy, None, helper)
        .map_err(malformed)?;
    let mut content = Vec::new();
    (&mut v)
        .take(MAX_SIGNED_CONTENT + 1)
        .read_to_end(&mut content)
        .map_err(|e| SignError::MalformedSignature(e.to_string()))?;
    if content.len() as u64 > MAX_SIGNED_CONTENT {
        return Err(SignError::MalformedSignature(format!(
            "signed content larger than {MAX_SIGNED_CONTENT} bytes"
        )));
    }
    if !v.message_processed() {
        return Err(SignError::MalformedSignature(
            "the message was not completely processed".into(),
        ));
    }
    let helper = v.into_helper();
    if helper.encrypted {
        return Err(SignError::MalformedSignature(
            "encrypted messages are not signatures".into(),
        ));
    }
    Ok((content, helper.outcomes))
}
