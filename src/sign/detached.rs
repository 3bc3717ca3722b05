//! Detached signatures over `bundle.json` (stored as `bundle.json.sig`).
//!
//! The bundle's trust chain starts here: signature → bundle.json → digests of every
//! manifest and blob. The format is the one `gpg --detach-sign` writes (binary, one
//! v4 signature of type 0x00, SHA-256), so an operator can check a bundle by hand
//! with `gpg --verify bundle.json.sig bundle.json` without our tool.

use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::crypto::KeyPair;
use openpgp::serialize::stream::{Message, Signer};
use openpgp::types::HashAlgorithm;
use openpgp::Cert;

use super::keys::SigningKey;
use super::{verify, Result, SignError};

/// A successfully verified detached signature.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// Primary fingerprint (40 uppercase hex digits) of the signer's certificate,
    /// i.e. the identity the keyring trusts, even when a subkey made the signature.
    pub fingerprint: String,
}

/// Signs `data` with the primary key of `key`; returns a binary detached signature.
pub fn sign_detached(key: &SigningKey, data: &[u8]) -> Result<Vec<u8>> {
    sign_detached_with(key.keypair().clone(), data, None)
}

/// The signing primitive, with an optional creation time (tests backdate signatures
/// to model keys that expired or were revoked after signing).
pub(crate) fn sign_detached_with(
    keypair: KeyPair,
    data: &[u8],
    created: Option<SystemTime>,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let message = Message::new(&mut out);
    let mut signer = Signer::new(message, keypair)
        .and_then(|s| s.hash_algo(HashAlgorithm::SHA256))
        .map_err(SignError::OpenPgp)?
        .detached();
    if let Some(t) = created {
        signer = signer.creation_time(t);
    }
    let mut w = signer.build().map_err(SignError::OpenPgp)?;
    std::io::Write::write_all(&mut w, data).map_err(|e| SignError::OpenPgp(e.into()))?;
    w.finalize().map_err(SignError::OpenPgp)?;
    Ok(out)
}

/// Verifies a detached signature (binary or armored) over `data` against `keyring`.
///
/// Succeeds when at least one signature in `sig` verifies with a key of the keyring
/// that is valid both when the signature was made and now (not expired, not revoked,
/// flagged for signing, acceptable under Sequoia's standard policy — which also
/// refuses SHA-1). Extra signatures by unknown keys do not spoil a good one (a
/// bundle may be co-signed), but input without any signature is malformed.
///
/// When nothing verifies, the error is the most informative one: a problem with a
/// key we know (bad signature, expired, revoked) wins over "unknown key", which wins
/// over a malformed extra signature.
pub fn verify_detached(keyring: &[Cert], data: &[u8], sig: &[u8]) -> Result<Verified> {
    let outcomes = verify::detached(keyring, data, sig)?;
    if outcomes.is_empty() {
        return Err(SignError::MalformedSignature(
            "no signature found in the signature data".into(),
        ));
    }
    let mut errors = Vec::new();
    for o in outcomes {
        match o {
            Ok(good) => {
                return Ok(Verified {
                    fingerprint: good.primary,
                })
            }
            Err(e) => errors.push(e),
        }
    }
    Err(most_informative(errors))
}

/// The issuer named by the first signature in `sig` (binary or armored), without
/// verifying anything: the issuer fingerprint if the signature carries one, else
/// its key id. For messages such as "signed by X, but no trusted key was given";
/// never a basis for trust.
pub fn issuer_fingerprint(sig: &[u8]) -> Option<String> {
    use openpgp::parse::{PacketParser, PacketParserResult, Parse};
    // A detached signature starts with a signature packet; anything else (a key,
    // whose self-signatures come later) is not one.
    let PacketParserResult::Some(pp) = PacketParser::from_bytes(sig).ok()? else {
        return None;
    };
    let openpgp::Packet::Signature(s) = &pp.packet else {
        return None;
    };
    let issuers = s.get_issuers();
    issuers
        .iter()
        .find(|h| matches!(h, openpgp::KeyHandle::Fingerprint(_)))
        .or_else(|| issuers.first())
        .map(|h| h.to_hex())
}

/// Picks the error to report among several failed signatures.
fn most_informative(errors: Vec<SignError>) -> SignError {
    let rank = |e: &SignError| match e {
        SignError::BadSignature { .. }
        | SignError::KeyExpired { .. }
        | SignError::KeyRevoked { .. }
        | SignError::KeyInvalid { .. } => 0,
        SignError::UnknownKey { .. } => 1,
        _ => 2,
    };
    errors
        .into_iter()
        .min_by_key(rank)
        .expect("called with at least one error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::testutil::{self, GnupgHome};
    use openpgp::parse::Parse;
    use openpgp::policy::StandardPolicy;
    use openpgp::types::{ReasonForRevocation, SignatureType};
    use openpgp::Packet;
    use std::time::Duration;

    const DATA: &[u8] = b"{\"format\":1,\"images\":[]}\n";

    fn ring(keys: &[&SigningKey]) -> Vec<Cert> {
        keys.iter()
            .map(|k| Cert::from_bytes(&k.public_key_bytes()).unwrap())
            .collect()
    }

    #[test]
    fn round_trip_and_shape() {
        let a = testutil::key_a();
        let sig = sign_detached(a, DATA).unwrap();
        assert_eq!(sig[0], 0xC2, "binary, new-format signature packet");
        let pkt = Packet::from_bytes(&sig).unwrap();
        let Packet::Signature(s) = pkt else {
            panic!("not a signature")
        };
        assert_eq!(s.version(), 4);
        assert_eq!(s.typ(), SignatureType::Binary);
        assert_eq!(s.hash_algo(), HashAlgorithm::SHA256);
        let v = verify_detached(&ring(&[a]), DATA, &sig).unwrap();
        assert_eq!(v.fingerprint, a.fingerprint());
        // With several keys in the ring, the right one is found.
        let v = verify_detached(&ring(&[testutil::key_b(), a]), DATA, &sig).unwrap();
        assert_eq!(v.fingerprint, a.fingerprint());
        // Armored input is accepted as well.
        let armored = openpgp::armor::Writer::new(Vec::new(), openpgp::armor::Kind::Signature)
            .and_then(|mut w| {
                std::io::Write::write_all(&mut w, &sig)?;
                w.finalize()
            })
            .unwrap();
        assert!(verify_detached(&ring(&[a]), DATA, &armored).is_ok());
    }

    #[test]
    fn issuer_is_readable_without_verification() {
        let a = testutil::key_a();
        let sig = sign_detached(a, DATA).unwrap();
        assert_eq!(issuer_fingerprint(&sig), Some(a.fingerprint()));
        assert_eq!(issuer_fingerprint(b"garbage"), None);
        assert_eq!(issuer_fingerprint(&a.public_key_bytes()), None);
    }

    #[test]
    fn unknown_key_is_named() {
        let a = testutil::key_a();
        let sig = sign_detached(a, DATA).unwrap();
        let err = verify_detached(&ring(&[testutil::key_b()]), DATA, &sig).unwrap_err();
        match &err {
            SignError::UnknownKey { issuer } => assert_eq!(issuer, &a.fingerprint()),
            other => panic!("unexpected {other}"),
        }
        assert!(err
            .to_string()
            .contains(&format!("signed by unknown key {}", a.fingerprint())));
        // Empty keyring: same.
        assert!(matches!(
            verify_detached(&[], DATA, &sig),
            Err(SignError::UnknownKey { .. })
        ));
    }

    #[test]
    fn altered_data_or_signature_fails() {
        let a = testutil::key_a();
        let sig = sign_detached(a, DATA).unwrap();
        let keyring = ring(&[a]);
        for i in [0, DATA.len() / 2, DATA.len() - 1] {
            let mut data = DATA.to_vec();
            data[i] ^= 0x01;
            let err = verify_detached(&keyring, &data, &sig).unwrap_err();
            assert!(
                matches!(err, SignError::BadSignature { ref fingerprint, .. } if *fingerprint == a.fingerprint()),
                "byte {i}: {err}"
            );
        }
        // Last byte: inside the RSA signature value.
        let mut bad = sig.clone();
        *bad.last_mut().unwrap() ^= 0x01;
        let err = verify_detached(&keyring, DATA, &bad).unwrap_err();
        assert!(matches!(err, SignError::BadSignature { .. }), "{err}");
        // Any single flipped byte anywhere in the signature must fail somehow,
        // except the two-byte "digest prefix": RFC 4880 makes it a quick-check hint
        // outside the signed data, and neither GnuPG 2.2 nor Sequoia enforce it
        // (checked: `gpg --verify` prints GOODSIG with either byte flipped).
        let body = match sig[1] {
            0..=191 => 2,
            192..=223 => 3,
            _ => 6,
        };
        let hashed = u16::from_be_bytes([sig[body + 4], sig[body + 5]]) as usize;
        let unhashed_at = body + 6 + hashed;
        let unhashed = u16::from_be_bytes([sig[unhashed_at], sig[unhashed_at + 1]]) as usize;
        let prefix_at = unhashed_at + 2 + unhashed;
        let Packet::Signature(parsed) = Packet::from_bytes(&sig).unwrap() else {
            panic!()
        };
        assert_eq!(&sig[prefix_at..prefix_at + 2], parsed.digest_prefix());
        for i in (0..sig.len()).filter(|i| !(prefix_at..prefix_at + 2).contains(i)) {
            let mut bad = sig.clone();
            bad[i] ^= 0x01;
            assert!(
                verify_detached(&keyring, DATA, &bad).is_err(),
                "flipping signature byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        let keyring = ring(&[testutil::key_a()]);
        for garbage in [
            &b""[..],
            b"hello world",
            b"\xC2\x05\x04\x00",
            &testutil::key_a().public_key_bytes(),
        ] {
            let err = verify_detached(&keyring, DATA, garbage).unwrap_err();
            assert!(
                matches!(err, SignError::MalformedSignature(_)),
                "{garbage:?}: {err}"
            );
        }
    }

    #[test]
    fn expired_key_fails() {
        // Created two days ago, valid for one day: expired since yesterday.
        let now = SystemTime::now();
        let cert = testutil::shaped_cert_at(
            "Expired <expired@example.org>",
            now - Duration::from_secs(2 * 86400),
            Some(Duration::from_secs(86400)),
        );
        let keypair = testutil::primary_keypair(&cert);
        let keyring = vec![cert.clone().strip_secret_key_material()];

        // Signed while the key was valid, verified after it expired (GnuPG: EXPKEYSIG).
        let sig = sign_detached_with(
            keypair.clone(),
            DATA,
            Some(now - Duration::from_secs(2 * 86400 - 3600)),
        )
        .unwrap();
        let err = verify_detached(&keyring, DATA, &sig).unwrap_err();
        assert!(
            matches!(err, SignError::KeyExpired { ref fingerprint, .. } if *fingerprint == cert.fingerprint().to_hex()),
            "{err}"
        );
        // Signed after expiry.
        let sig = sign_detached_with(keypair, DATA, Some(now)).unwrap();
        let err = verify_detached(&keyring, DATA, &sig).unwrap_err();
        assert!(matches!(err, SignError::KeyExpired { .. }), "{err}");
        assert!(err.to_string().contains("expired"), "{err}");

        // And an expired key refuses to become a SigningKey.
        let err = SigningKey::from_cert(cert, None).unwrap_err();
        assert!(matches!(err, SignError::UnusableSigningKey { .. }), "{err}");
    }

    #[test]
    fn revoked_key_fails() {
        let now = SystemTime::now();
        let cert = testutil::shaped_cert_at(
            "Revoked <revoked@example.org>",
            now - Duration::from_secs(86400),
            None,
        );
        let mut keypair = testutil::primary_keypair(&cert);
        // A signature made before the revocation...
        let sig = sign_detached_with(keypair.clone(), DATA, Some(now - Duration::from_secs(3600)))
            .unwrap();
        assert!(verify_detached(std::slice::from_ref(&cert), DATA, &sig).is_ok());
        // ...is refused once the key is revoked, whatever the reason.
        for (reason, text) in [
            (ReasonForRevocation::KeyCompromised, "stolen"),
            (ReasonForRevocation::KeyRetired, "retired"),
        ] {
            let rev = cert.revoke(&mut keypair, reason, text.as_bytes()).unwrap();
            let (revoked, _) = cert.clone().insert_packets(rev).unwrap();
            let p = StandardPolicy::new();
            assert!(matches!(
                revoked.revocation_status(&p, None),
                openpgp::types::RevocationStatus::Revoked(_)
            ));
            let keyring = vec![revoked.clone().strip_secret_key_material()];
            let err = verify_detached(&keyring, DATA, &sig).unwrap_err();
            assert!(
                matches!(err, SignError::KeyRevoked { ref fingerprint, .. } if *fingerprint == cert.fingerprint().to_hex()),
                "{reason:?}: {err}"
            );
            assert!(err.to_string().contains(text), "{err}");
            let err = SigningKey::from_cert(revoked, None).unwrap_err();
            assert!(matches!(err, SignError::UnusableSigningKey { .. }), "{err}");
        }
    }

    #[test]
    fn one_good_signature_among_others_is_enough() {
        let a = testutil::key_a();
        let b = testutil::key_b();
        let mut both = sign_detached(b, DATA).unwrap();
        both.extend(sign_detached(a, DATA).unwrap());
        let v = verify_detached(&ring(&[a]), DATA, &both).unwrap();
        assert_eq!(v.fingerprint, a.fingerprint());
        // A bad signature by a known key is reported ahead of an unknown signer.
        let err = verify_detached(&ring(&[a]), b"other", &both).unwrap_err();
        assert!(matches!(err, SignError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn gpg_verifies_our_detached_signature() {
        let a = testutil::key_a();
        let home = GnupgHome::new();
        home.import(&a.public_key_bytes());
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("bundle.json");
        let sig = dir.path().join("bundle.json.sig");
        std::fs::write(&data, DATA).unwrap();
        std::fs::write(&sig, sign_detached(a, DATA).unwrap()).unwrap();
        let out = home.run(&[
            "--status-fd",
            "1",
            "--verify",
            sig.to_str().unwrap(),
            data.to_str().unwrap(),
        ]);
        let status = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{status}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // VALIDSIG <signing key fpr> ... <primary key fpr>
        let validsig = status
            .lines()
            .find(|l| l.starts_with("[GNUPG:] VALIDSIG "))
            .unwrap_or_else(|| panic!("no VALIDSIG in {status}"));
        assert!(validsig.starts_with(&format!("[GNUPG:] VALIDSIG {}", a.fingerprint())));
        assert!(validsig.ends_with(&a.fingerprint()));

        // And gpg rejects it for altered data.
        std::fs::write(&data, b"tampered").unwrap();
        let out = home.run(&["--verify", sig.to_str().unwrap(), data.to_str().unwrap()]);
        assert!(!out.status.success());
    }
}
