//! "Simple signing" image signatures, the format skopeo, podman and CRI-O verify
//! through containers/image (`type: signedBy, keyType: GPGKeys` in policy.json).
//!
//! A signature is a binary OpenPGP signed message whose literal content is a small
//! JSON document binding an image identity (`docker-reference`) to a manifest digest.
//! Every rule below comes from `shared/notes/simple-signing.md` and mirrors
//! containers/image 5.23: what we write must pass that verifier, and
//! [`verify_simple`] must refuse what it refuses, because our tests and our policy
//! evaluation stand in for the cluster.

use std::time::SystemTime;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use sequoia_openpgp as openpgp;

use openpgp::crypto::KeyPair;
use openpgp::serialize::stream::{LiteralWriter, Message, Signer};
use openpgp::types::{DataFormat, HashAlgorithm};
use openpgp::Cert;

use super::keys::SigningKey;
use super::{verify, Result, SignError};

/// The `critical.type` every simple signature carries.
pub const SIGNATURE_TYPE: &str = "atomic container signature";

#[derive(Serialize)]
struct PayloadOut<'a> {
    critical: CriticalOut<'a>,
    optional: OptionalOut<'a>,
}
#[derive(Serialize)]
struct CriticalOut<'a> {
    identity: IdentityOut<'a>,
    image: ImageOut<'a>,
    #[serde(rename = "type")]
    typ: &'a str,
}
#[derive(Serialize)]
struct IdentityOut<'a> {
    #[serde(rename = "docker-reference")]
    docker_reference: &'a str,
}
#[derive(Serialize)]
struct ImageOut<'a> {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: &'a str,
}
#[derive(Serialize)]
struct OptionalOut<'a> {
    creator: &'a str,
    timestamp: i64,
}

/// Sign a throwaway payload with `signer` and check it with its own public
/// key: a missing passphrase, a locked card or an unusable key shows up before
/// anything is pushed, not after the whole push.
pub fn probe(signer: &dyn ImageSigner) -> Result<()> {
    let digest = format!("sha256:{}", "0".repeat(64));
    let data = payload("u7s-bundle.invalid/probe:0", &digest, "u7s-bundle probe", 0);
    let sig = signer.sign_payload(&data)?;
    let own = super::keys::load_keyring_bytes(&signer.public_key_bytes()?)?;
    verify_simple(&own, &sig).map(|_| ())
}

/// Builds the JSON payload of a simple signature, byte for byte in the layout
/// containers/image itself writes:
/// `{"critical":{"identity":{"docker-reference":R},"image":{"docker-manifest-digest":D},"type":"atomic container signature"},"optional":{"creator":C,"timestamp":T}}`.
///
/// `docker_reference` must be the name the cluster pulls (`host/repo:tag`), and
/// `manifest_digest` the digest of the per-platform manifest (`sha256:<hex>`):
/// podman and CRI-O check the chosen platform's manifest, never the index.
/// `timestamp` is seconds since the epoch (an integer; the verifier rejects
/// fractions).
pub fn payload(
    docker_reference: &str,
    manifest_digest: &str,
    creator: &str,
    timestamp: i64,
) -> Vec<u8> {
    let p = PayloadOut {
        critical: CriticalOut {
            identity: IdentityOut { docker_reference },
            image: ImageOut {
                docker_manifest_digest: manifest_digest,
            },
            typ: SIGNATURE_TYPE,
        },
        optional: OptionalOut { creator, timestamp },
    };
    serde_json::to_vec(&p).expect("serializing plain strings and integers cannot fail")
}

/// The verified content of a simple signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimplePayload {
    /// `critical.identity.docker-reference`, unparsed (policy matching parses it).
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`, a syntactically valid digest.
    pub manifest_digest: String,
    /// `optional.creator`, if present.
    pub creator: Option<String>,
    /// `optional.timestamp`, if present.
    pub timestamp: Option<i64>,
}

/// Something that makes simple signatures: our own key ([`SigningKey`]) or the
/// operator's GnuPG ([`super::GpgSigner`]). The load command does not care which.
pub trait ImageSigner {
    /// Wraps `payload` into a binary OpenPGP signed message signed by the primary key.
    fn sign_payload(&self, payload: &[u8]) -> Result<Vec<u8>>;
    /// Primary fingerprint, 40 uppercase hex digits.
    fn fingerprint(&self) -> &str;
    /// The binary public key, to publish as `/var/sigstore/keys/<signer>.pgp`.
    fn public_key_bytes(&self) -> Result<Vec<u8>>;
    /// E-mail of the primary user id (names the published key file).
    fn email(&self) -> Option<String>;
}

impl ImageSigner for SigningKey {
    fn sign_payload(&self, payload: &[u8]) -> Result<Vec<u8>> {
        signed_message(self.keypair().clone(), payload, None)
    }

    fn fingerprint(&self) -> &str {
        self.fingerprint_str()
    }

    fn public_key_bytes(&self) -> Result<Vec<u8>> {
        Ok(SigningKey::public_key_bytes(self))
    }

    fn email(&self) -> Option<String> {
        self.primary_email()
    }
}

/// Makes a signed message: one-pass signature, literal data (binary), signature —
/// Sequoia writes new-format packets, so the first byte is 0xC4 — with exactly one
/// v4 binary signature, SHA-256, by `keypair` (callers pass the primary key).
pub(crate) fn signed_message(
    keypair: KeyPair,
    payload: &[u8],
    created: Option<SystemTime>,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let message = Message::new(&mut out);
    let mut signer = Signer::new(message, keypair)
        .and_then(|s| s.hash_algo(HashAlgorithm::SHA256))
        .map_err(SignError::OpenPgp)?;
    if let Some(t) = created {
        signer = signer.creation_time(t);
    }
    let signer = signer.build().map_err(SignError::OpenPgp)?;
    let mut literal = LiteralWriter::new(signer)
        .format(DataFormat::Binary)
        .build()
        .map_err(SignError::OpenPgp)?;
    std::io::Write::write_all(&mut literal, payload).map_err(|e| SignError::OpenPgp(e.into()))?;
    literal.finalize().map_err(SignError::OpenPgp)?;
    Ok(out)
}

/// Whether containers/image recognizes `b` as the first byte of a simple signature:
/// an OpenPGP compressed-data, one-pass-signature or signature packet header, in the
/// old (0x80 | tag << 2 | length type) or new (0xC0 | tag) format. Anything else
/// (ASCII armor, cleartext signatures, sigstore JSON) is not a simple signature.
fn is_simple_signing_first_byte(b: u8) -> bool {
    matches!(
        b,
        0xA0..=0xA3 | 0xC8 // compressed data
        | 0x90..=0x92 | 0xC4 // one-pass signature
        | 0x88..=0x8B | 0xC2 // signature
    )
}

/// Verifies a simple signature the way containers/image does, and returns its
/// payload and the signer's primary fingerprint.
///
/// Accepted only if: the first byte is one of the packet tags containers/image
/// dispatches to simple signing; the blob is a valid signed message (compression
/// allowed, encryption not); it holds exactly one signature; that signature verifies
/// with a key from `keyring` which is valid at signing time and now (not expired,
/// not revoked, flagged for signing); the signing key is a *primary* key (GPGME
/// reports the subkey's fingerprint for subkey signatures, and containers/image
/// compares it with the keyring's primary fingerprints, so subkey signatures never
/// match); and the payload passes [`parse_payload`].
///
/// Known deviation, stricter than GPGME: Sequoia's standard policy refuses SHA-1
/// and other weak algorithms, which GnuPG 2.2 would still accept. We never produce
/// those.
///
/// Matching the identity and digest against an image is the caller's job (policy
/// evaluation), as in containers/image.
pub fn verify_simple(keyring: &[Cert], sig: &[u8]) -> Result<(SimplePayload, String)> {
    let (content, fingerprint) = check_signed_message(keyring, sig)?;
    let payload = parse_payload(&content)?;
    Ok((payload, fingerprint))
}

/// The OpenPGP half of [`verify_simple`]: everything but the payload parsing.
/// Returns the signed content and the signer's primary fingerprint.
pub(crate) fn check_signed_message(keyring: &[Cert], sig: &[u8]) -> Result<(Vec<u8>, String)> {
    let Some(&first) = sig.first() else {
        return Err(SignError::NotSignedMessage("empty signature".into()));
    };
    if !is_simple_signing_first_byte(first) {
        return Err(SignError::NotSignedMessage(format!(
            "first byte {first:#04x} is not an OpenPGP compressed, one-pass signature or signature packet{}",
            if first == b'-' { " (ASCII-armored or cleartext-signed input is not accepted)" } else { "" }
        )));
    }
    let (content, outcomes) = verify::inline(keyring, sig)?;
    if outcomes.len() != 1 {
        return Err(SignError::SignatureCount(outcomes.len()));
    }
    let good = outcomes.into_iter().next().expect("exactly one")?;
    if good.signer != good.primary {
        return Err(SignError::NotPrimaryKey {
            signer: good.signer,
            primary: good.primary,
        });
    }
    Ok((content, good.primary))
}

/// Parses a simple-signing payload as strictly as containers/image does.
///
/// Rules: the top level is an object with exactly the keys `critical` and `optional`
/// (both required, no others, no duplicates, nothing after it); `critical` has
/// exactly `type`, `image`, `identity`; `type` is "atomic container signature";
/// `image` has exactly `docker-manifest-digest`, a valid digest; `identity` has
/// exactly `docker-reference`, a string; `optional` is an object whose other keys
/// are ignored, but duplicates are still refused, `creator` must be a string and
/// `timestamp` a number with an integral value (Go decodes it as a float64 and
/// refuses a fractional part, so `1.0` passes and `1.5` does not).
pub fn parse_payload(bytes: &[u8]) -> Result<SimplePayload> {
    let bad = |m: String| SignError::InvalidPayload(m);
    let top: Json = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let top = exact_object(&top, "the payload", &["critical", "optional"])?;
    let critical = exact_object(top[0], "critical", &["type", "image", "identity"])?;
    let typ = string_field(critical[0], "critical.type")?;
    if typ != SIGNATURE_TYPE {
        return Err(bad(format!("unrecognized signature type {typ:?}")));
    }
    let image = exact_object(critical[1], "critical.image", &["docker-manifest-digest"])?;
    let digest = string_field(image[0], "critical.image.docker-manifest-digest")?;
    validate_digest(digest)?;
    let identity = exact_object(critical[2], "critical.identity", &["docker-reference"])?;
    let reference = string_field(identity[0], "critical.identity.docker-reference")?;

    let Json::Object(optional) = top[1] else {
        return Err(bad("optional is not an object".into()));
    };
    check_no_duplicates(optional, "optional")?;
    let mut creator = None;
    let mut timestamp = None;
    for (k, v) in optional {
        match k.as_str() {
            "creator" => creator = Some(string_field(v, "optional.creator")?.to_string()),
            "timestamp" => timestamp = Some(integral_timestamp(v)?),
            _ => {}
        }
    }
    Ok(SimplePayload {
        docker_reference: reference.to_string(),
        manifest_digest: digest.to_string(),
        creator,
        timestamp,
    })
}

fn check_no_duplicates(entries: &[(String, Json)], what: &str) -> Result<()> {
    for (i, (k, _)) in entries.iter().enumerate() {
        if entries[..i].iter().any(|(p, _)| p == k) {
            return Err(SignError::InvalidPayload(format!(
                "duplicate key {k:?} in {what}"
            )));
        }
    }
    Ok(())
}

/// Requires `v` to be an object with exactly `keys` (each once) and returns the
/// values in the order of `keys`.
fn exact_object<'a>(v: &'a Json, what: &str, keys: &[&str]) -> Result<Vec<&'a Json>> {
    let Json::Object(entries) = v else {
        return Err(SignError::InvalidPayload(format!(
            "{what} is not an object"
        )));
    };
    check_no_duplicates(entries, what)?;
    if let Some((k, _)) = entries.iter().find(|(k, _)| !keys.contains(&k.as_str())) {
        return Err(SignError::InvalidPayload(format!(
            "unexpected key {k:?} in {what}"
        )));
    }
    keys.iter()
        .map(|key| {
            entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .ok_or_else(|| SignError::InvalidPayload(format!("{what} lacks key {key:?}")))
        })
        .collect()
}

fn string_field<'a>(v: &'a Json, what: &str) -> Result<&'a str> {
    match v {
        Json::String(s) => Ok(s),
        _ => Err(SignError::InvalidPayload(format!("{what} is not a string"))),
    }
}

fn integral_timestamp(v: &Json) -> Result<i64> {
    let not_int = || SignError::InvalidPayload("optional.timestamp is not an integer".into());
    match v {
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i);
            }
            let f = n.as_f64().ok_or_else(not_int)?;
            // 2^63 is exactly representable; everything in [-2^63, 2^63) converts.
            const TWO_63: f64 = 9_223_372_036_854_775_808.0;
            if f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f) {
                Ok(f as i64)
            } else {
                Err(not_int())
            }
        }
        _ => Err(not_int()),
    }
}

/// Validates an OCI digest the way go-digest's `Parse` does for the algorithms it
/// registers: `sha256:` + 64, `sha384:` + 96 or `sha512:` + 128 lowercase hex digits.
fn validate_digest(d: &str) -> Result<()> {
    let bad = || SignError::InvalidPayload(format!("invalid docker-manifest-digest value {d:?}"));
    let (algo, hex) = d.split_once(':').ok_or_else(bad)?;
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(bad()),
    };
    if hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A JSON tree that keeps object entries in order *including duplicates*, which
/// `serde_json::Value` silently collapses; containers/image refuses duplicate keys
/// in the objects it reads, so we must see them.
#[derive(Debug)]
enum Json {
    Null,
    Bool(#[allow(dead_code)] bool),
    Number(serde_json::Number),
    String(String),
    Array(#[allow(dead_code)] Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Json, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Json, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<Json, E> {
                serde_json::Number::from_f64(n)
                    .map(Json::Number)
                    .ok_or_else(|| E::custom("non-finite number"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Json, E> {
                Ok(Json::String(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<Json, E> {
                Ok(Json::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Json, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Json::Array(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> std::result::Result<Json, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = a.next_entry::<String, Json>()? {
                    v.push((k, x));
                }
                Ok(Json::Object(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::testutil::{self, GnupgHome};
    use openpgp::parse::{PacketParser, PacketParserResult, Parse};
    use openpgp::serialize::SerializeInto;
    use openpgp::types::SignatureType;
    use openpgp::Packet;
    use std::path::Path;

    const REF: &str = "registry.local/c10f/coredns:v1.9.3";

    /// A small manifest file and its digest.
    fn manifest(dir: &Path) -> (std::path::PathBuf, String) {
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
        let path = dir.join("manifest.json");
        std::fs::write(&path, body).unwrap();
        (path, testutil::sha256_digest(body))
    }

    #[test]
    fn payload_layout_is_exact() {
        let p = payload(REF, "sha256:abc", "u7s-bundle 0.1.0", 1700000000);
        assert_eq!(
            std::str::from_utf8(&p).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"registry.local/c10f/coredns:v1.9.3"},"image":{"docker-manifest-digest":"sha256:abc"},"type":"atomic container signature"},"optional":{"creator":"u7s-bundle 0.1.0","timestamp":1700000000}}"#
        );
        // Escaping is JSON's, not ad hoc.
        let p = payload("a\"b", "d", "c\\", -1);
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["critical"]["identity"]["docker-reference"], "a\"b");
        assert_eq!(v["optional"]["timestamp"], -1);
    }

    #[test]
    fn signed_message_shape() {
        let a = testutil::key_a();
        let digest = testutil::sha256_digest(b"m");
        let sig = a.sign_payload(&payload(REF, &digest, "t", 1)).unwrap();
        assert_eq!(sig[0], 0xC4, "new-format one-pass signature packet first");
        let mut tags = Vec::new();
        let mut ppr = PacketParser::from_bytes(&sig).unwrap();
        while let PacketParserResult::Some(pp) = ppr {
            let (packet, next) = pp.recurse().unwrap();
            match &packet {
                Packet::OnePassSig(ops) => {
                    assert_eq!(ops.typ(), SignatureType::Binary);
                    assert_eq!(ops.hash_algo(), HashAlgorithm::SHA256);
                }
                Packet::Literal(l) => assert_eq!(l.format(), DataFormat::Binary),
                Packet::Signature(s) => {
                    assert_eq!(s.version(), 4);
                    assert_eq!(s.typ(), SignatureType::Binary);
                    assert_eq!(s.hash_algo(), HashAlgorithm::SHA256);
                    assert_eq!(
                        s.issuer_fingerprints().next().unwrap().to_hex(),
                        a.fingerprint()
                    );
                }
                other => panic!("unexpected packet {other:?}"),
            }
            tags.push(packet.tag());
            ppr = next;
        }
        use openpgp::packet::Tag;
        assert_eq!(tags, vec![Tag::OnePassSig, Tag::Literal, Tag::Signature]);
    }

    #[test]
    fn sign_and_verify_simple_round_trip() {
        let a = testutil::key_a();
        let digest = testutil::sha256_digest(b"manifest");
        let sig = a
            .sign_payload(&payload(REF, &digest, "u7s-bundle", 1700000000))
            .unwrap();
        let ring = vec![Cert::from_bytes(&a.public_key_bytes()).unwrap()];
        let (p, fpr) = verify_simple(&ring, &sig).unwrap();
        assert_eq!(fpr, a.fingerprint());
        assert_eq!(
            p,
            SimplePayload {
                docker_reference: REF.into(),
                manifest_digest: digest.clone(),
                creator: Some("u7s-bundle".into()),
                timestamp: Some(1700000000),
            }
        );
        assert_eq!(ImageSigner::fingerprint(a), a.fingerprint());
        assert_eq!(a.email().as_deref(), Some("a@example.org"));

        // Other key in the keyring: unknown signer.
        let ring_b = vec![Cert::from_bytes(&testutil::key_b().public_key_bytes()).unwrap()];
        assert!(matches!(
            verify_simple(&ring_b, &sig),
            Err(SignError::UnknownKey { ref issuer }) if *issuer == a.fingerprint()
        ));
        // Tampered content: the literal data sits in the middle of the message.
        let pos = sig
            .windows(REF.len())
            .position(|w| w == REF.as_bytes())
            .unwrap();
        let mut bad = sig.clone();
        bad[pos] ^= 0x20;
        assert!(matches!(
            verify_simple(&ring, &bad),
            Err(SignError::BadSignature { .. })
        ));
    }

    #[test]
    fn verify_simple_refuses_wrong_shapes() {
        let a = testutil::key_a();
        let ring = vec![Cert::from_bytes(&a.public_key_bytes()).unwrap()];
        let digest = testutil::sha256_digest(b"x");
        let p = payload(REF, &digest, "c", 1);

        // Armored.
        let sig = a.sign_payload(&p).unwrap();
        let armored = openpgp::armor::Writer::new(Vec::new(), openpgp::armor::Kind::Message)
            .and_then(|mut w| {
                std::io::Write::write_all(&mut w, &sig)?;
                w.finalize()
            })
            .unwrap();
        assert!(matches!(
            verify_simple(&ring, &armored),
            Err(SignError::NotSignedMessage(_))
        ));
        assert!(matches!(
            verify_simple(&ring, b""),
            Err(SignError::NotSignedMessage(_))
        ));

        // A detached signature is not a signed message (no content).
        let det = crate::sign::detached::sign_detached(a, &p).unwrap();
        assert_eq!(det[0], 0xC2, "passes the first-byte check");
        assert!(verify_simple(&ring, &det).is_err());

        // Two signatures (signed by two keys in one message).
        let b = testutil::key_b();
        let ring_ab = vec![
            ring[0].clone(),
            Cert::from_bytes(&b.public_key_bytes()).unwrap(),
        ];
        let mut out = Vec::new();
        let m = Message::new(&mut out);
        let s = Signer::new(m, a.keypair().clone())
            .unwrap()
            .add_signer(b.keypair().clone())
            .unwrap()
            .build()
            .unwrap();
        let mut l = LiteralWriter::new(s).build().unwrap();
        std::io::Write::write_all(&mut l, &p).unwrap();
        l.finalize().unwrap();
        assert!(matches!(
            verify_simple(&ring_ab, &out),
            Err(SignError::SignatureCount(2))
        ));

        // Unsigned literal data.
        let mut out = Vec::new();
        let mut l = LiteralWriter::new(Message::new(&mut out)).build().unwrap();
        std::io::Write::write_all(&mut l, &p).unwrap();
        l.finalize().unwrap();
        assert!(verify_simple(&ring, &out).is_err());

        // Garbage after a valid first byte.
        assert!(matches!(
            verify_simple(&ring, b"\xC4garbage"),
            Err(SignError::MalformedSignature(_))
        ));

        // Compressed signed message (what `gpg --sign` writes) is accepted.
        let mut out = Vec::new();
        let m = Message::new(&mut out);
        let c = openpgp::serialize::stream::Compressor::new(m)
            .algo(openpgp::types::CompressionAlgorithm::Zip)
            .build()
            .unwrap();
        let s = Signer::new(c, a.keypair().clone())
            .unwrap()
            .build()
            .unwrap();
        let mut l = LiteralWriter::new(s).build().unwrap();
        std::io::Write::write_all(&mut l, &p).unwrap();
        l.finalize().unwrap();
        assert_eq!(out[0], 0xC8);
        assert!(verify_simple(&ring, &out).is_ok());
    }

    #[test]
    fn verify_simple_refuses_subkey_signatures() {
        let cert = testutil::subkey_shaped_cert();
        let subkey = testutil::signing_subkey_keypair(&cert);
        let digest = testutil::sha256_digest(b"x");
        let sig = signed_message(subkey, &payload(REF, &digest, "c", 1), None).unwrap();
        let ring = vec![cert.clone().strip_secret_key_material()];
        // The same signature is cryptographically fine as a message...
        let (_, outcomes) = verify::inline(&ring, &sig).unwrap();
        assert!(outcomes[0].is_ok());
        // ...but not as an image signature.
        let err = verify_simple(&ring, &sig).unwrap_err();
        match &err {
            SignError::NotPrimaryKey { signer, primary } => {
                assert_eq!(primary, &cert.fingerprint().to_hex());
                assert_ne!(signer, primary);
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn payload_parser_is_strict() {
        let d = testutil::sha256_digest(b"x");
        let ok = |s: &str| parse_payload(s.as_bytes());
        let crit = |extra: &str| {
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"r"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"atomic container signature"{extra}}},"optional":{{}}}}"#
            )
        };
        // Minimal valid: empty optional.
        let p = ok(&crit("")).unwrap();
        assert_eq!(p.creator, None);
        assert_eq!(p.timestamp, None);
        // Unknown or duplicate key in critical.
        assert!(ok(&crit(r#","extra":1"#)).is_err());
        assert!(ok(&crit(r#","type":"atomic container signature""#)).is_err());
        // Wrong type.
        assert!(ok(&crit("").replace("atomic container signature", "other")).is_err());
        // Missing optional / critical; extra top-level key; duplicate top-level key.
        assert!(ok(&crit("").replace(r#","optional":{}"#, "")).is_err());
        let with_top = |extra: &str| format!("{}{extra}}}", &crit("")[..crit("").len() - 1]);
        assert!(ok(&with_top("")).is_ok());
        assert!(ok(&with_top(r#","more":1"#)).is_err());
        assert!(ok(&with_top(r#","optional":{}"#)).is_err());
        // Trailing data after the object; whitespace is fine.
        assert!(ok(&format!("{} x", crit(""))).is_err());
        assert!(ok(&format!("{}\n", crit(""))).is_ok());
        // Digest syntax.
        assert!(ok(&crit("").replace(&d, "sha256:abc")).is_err());
        assert!(ok(&crit("").replace(&d, &d.to_uppercase())).is_err());
        assert!(ok(&crit("").replace(&d, &d.replace("sha256", "md5"))).is_err());
        // Identity / image extra keys; non-string reference.
        assert!(ok(&crit("").replace(r#""r"}"#, r#""r","x":"y"}"#)).is_err());
        assert!(ok(&crit("").replace(r#""r""#, "1")).is_err());
        // optional: ignored keys fine, duplicates not; creator must be a string;
        // timestamp must be integral.
        let opt = |o: &str| crit("").replace(r#""optional":{}"#, &format!(r#""optional":{o}"#));
        let p = ok(&opt(
            r#"{"creator":"me","timestamp":12,"other":{"a":[1,2]}}"#,
        ))
        .unwrap();
        assert_eq!(p.creator.as_deref(), Some("me"));
        assert_eq!(p.timestamp, Some(12));
        assert_eq!(
            ok(&opt(r#"{"timestamp":12.0}"#)).unwrap().timestamp,
            Some(12)
        );
        assert_eq!(
            ok(&opt(r#"{"timestamp":1.2e3}"#)).unwrap().timestamp,
            Some(1200)
        );
        assert!(ok(&opt(r#"{"timestamp":12.5}"#)).is_err());
        assert!(ok(&opt(r#"{"timestamp":"12"}"#)).is_err());
        assert!(ok(&opt(r#"{"creator":1}"#)).is_err());
        assert!(ok(&opt(r#"{"x":1,"x":2}"#)).is_err());
        assert!(ok(&opt("null")).is_err());
        assert!(ok(&opt("[]")).is_err());
        // Round trip of our own payload.
        let p = parse_payload(&payload(REF, &d, "c", 5)).unwrap();
        assert_eq!(p.docker_reference, REF);
        assert_eq!(p.manifest_digest, d);
    }

    #[test]
    fn skopeo_accepts_our_signature_and_refuses_wrong_ones() {
        let a = testutil::key_a();
        let home = GnupgHome::new();
        home.import(&a.public_key_bytes());
        let dir = tempfile::tempdir().unwrap();
        let (manifest, digest) = manifest(dir.path());
        let sig_path = dir.path().join("signature-1");

        // Good.
        std::fs::write(
            &sig_path,
            a.sign_payload(&payload(REF, &digest, "t", 1)).unwrap(),
        )
        .unwrap();
        let out = home.skopeo_verify(&manifest, REF, &a.fingerprint(), &sig_path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(&digest));

        // Same signature, another expected reference: refused.
        let other = "registry.local/c10f/coredns:v1.9.4";
        let out = home.skopeo_verify(&manifest, other, &a.fingerprint(), &sig_path);
        assert!(!out.status.success());

        // Signed payload names another reference: refused.
        std::fs::write(
            &sig_path,
            a.sign_payload(&payload(other, &digest, "t", 1)).unwrap(),
        )
        .unwrap();
        let out = home.skopeo_verify(&manifest, REF, &a.fingerprint(), &sig_path);
        assert!(!out.status.success());

        // Signed payload names another digest: refused.
        let wrong = testutil::sha256_digest(b"other manifest");
        std::fs::write(
            &sig_path,
            a.sign_payload(&payload(REF, &wrong, "t", 1)).unwrap(),
        )
        .unwrap();
        let out = home.skopeo_verify(&manifest, REF, &a.fingerprint(), &sig_path);
        assert!(!out.status.success());
    }

    /// Our verifier and skopeo's (GPGME) agree on keys that expired or were revoked
    /// after the signature was made: both refuse.
    #[test]
    fn expired_and_revoked_keys_refused_like_skopeo() {
        use openpgp::types::ReasonForRevocation;
        use std::time::Duration;
        let now = SystemTime::now();
        let dir = tempfile::tempdir().unwrap();
        let (manifest, digest) = manifest(dir.path());
        let sig_path = dir.path().join("signature-1");
        let p = payload(REF, &digest, "t", 1);

        // Valid from two days ago for one day; signed while valid.
        let expired = testutil::shaped_cert_at(
            "Expired <expired@example.org>",
            now - Duration::from_secs(2 * 86400),
            Some(Duration::from_secs(86400)),
        );
        let sig = signed_message(
            testutil::primary_keypair(&expired),
            &p,
            Some(now - Duration::from_secs(2 * 86400 - 3600)),
        )
        .unwrap();
        let ring = vec![expired.clone().strip_secret_key_material()];
        let err = verify_simple(&ring, &sig).unwrap_err();
        assert!(matches!(err, SignError::KeyExpired { .. }), "{err}");
        let home = GnupgHome::new();
        home.import(&expired.export_to_vec().unwrap());
        std::fs::write(&sig_path, &sig).unwrap();
        let fpr = expired.fingerprint().to_hex();
        let out = home.skopeo_verify(&manifest, REF, &fpr, &sig_path);
        assert!(!out.status.success(), "skopeo accepted an expired key");

        // Signed yesterday, key retired (soft revocation) today.
        let cert = testutil::shaped_cert_at(
            "Retired <retired@example.org>",
            now - Duration::from_secs(2 * 86400),
            None,
        );
        let mut kp = testutil::primary_keypair(&cert);
        let sig = signed_message(kp.clone(), &p, Some(now - Duration::from_secs(86400))).unwrap();
        let home = GnupgHome::new();
        home.import(&cert.export_to_vec().unwrap());
        std::fs::write(&sig_path, &sig).unwrap();
        let fpr = cert.fingerprint().to_hex();
        // Before the revocation both accept...
        assert!(verify_simple(std::slice::from_ref(&cert), &sig).is_ok());
        let out = home.skopeo_verify(&manifest, REF, &fpr, &sig_path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // ...after it, both refuse.
        let rev = cert
            .revoke(&mut kp, ReasonForRevocation::KeyRetired, b"retired")
            .unwrap();
        let (revoked, _) = cert.clone().insert_packets(rev).unwrap();
        let err = verify_simple(std::slice::from_ref(&revoked), &sig).unwrap_err();
        assert!(matches!(err, SignError::KeyRevoked { .. }), "{err}");
        home.import(&revoked.export_to_vec().unwrap());
        let out = home.skopeo_verify(&manifest, REF, &fpr, &sig_path);
        assert!(!out.status.success(), "skopeo accepted a revoked key");
    }

    #[test]
    fn skopeo_refuses_subkey_signature_shape() {
        // Sequoia's default shape: certify-only primary + signing subkey.
        let cert = testutil::subkey_shaped_cert();
        let home = GnupgHome::new();
        home.import(&cert.export_to_vec().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let (manifest, digest) = manifest(dir.path());
        let sig_path = dir.path().join("signature-1");
        let subkey = testutil::signing_subkey_keypair(&cert);
        let subkey_fpr = subkey.public().fingerprint().to_hex();
        std::fs::write(
            &sig_path,
            signed_message(subkey, &payload(REF, &digest, "t", 1), None).unwrap(),
        )
        .unwrap();
        // The policy keyring trusts the certificate, i.e. its primary fingerprint.
        let primary = cert.fingerprint().to_hex();
        let out = home.skopeo_verify(&manifest, REF, &primary, &sig_path);
        assert!(!out.status.success(), "skopeo accepted a subkey signature");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&subkey_fpr), "{stderr}");
        // The signature itself is valid GnuPG-wise: skopeo accepts it when told to
        // expect the subkey — which no policy.json can express.
        let out = home.skopeo_verify(&manifest, REF, &subkey_fpr, &sig_path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
