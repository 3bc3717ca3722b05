//! Signing keys: generation in the one shape every image verifier accepts, key files,
//! public keyrings and passphrases.
//!
//! The shape matters more than anything else here. containers/image (skopeo 1.9.3,
//! podman 4.3, CRI-O 1.26) accepts an image signature only when the signer's
//! fingerprint equals a *primary* fingerprint of the trusted keyring; GnuPG 2.2 cannot
//! read v6 keys; the Go OpenPGP verifier some CRI-O builds use cannot verify EdDSA.
//! Hence: RSA-3072, OpenPGP v4, primary flagged certify+sign, no subkeys.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::cert::CertParser;
use openpgp::crypto::{KeyPair, Password, S2K};
use openpgp::packet::key::SecretKeyMaterial;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::types::{Features, KeyFlags, RevocationStatus};
use openpgp::{Cert, Profile};

use super::{Result, SignError};

/// Generates a new signing certificate for image and bundle signatures.
///
/// RSA-3072 (every verifier, including the Go one, accepts RSA), OpenPGP v4 (RFC 4880
/// profile: GnuPG 2.2 on the cluster cannot parse v6), the primary key flagged
/// certify+sign and no subkeys at all: a signature by a subkey is refused by
/// containers/image, so a subkey would only invite mistakes. No expiry: image
/// signatures live in the lookaside store for as long as the images are used, and a
/// key that silently expires would stop every pull on the cluster; retire a key by
/// revoking it instead.
///
/// With `passphrase`, the secret key is encrypted with it (S2K, as GnuPG reads it).
pub fn generate(uid: &str, passphrase: Option<&str>) -> Result<Cert> {
    if uid.trim().is_empty() {
        return Err(SignError::InvalidKey {
            what: "user id".into(),
            reason: "must not be empty (e.g. \"Image signer <imagemaker@example.org>\")".into(),
        });
    }
    let builder = CertBuilder::new()
        .set_profile(Profile::RFC4880)
        .map_err(SignError::OpenPgp)?
        .set_cipher_suite(CipherSuite::RSA3k)
        // Advertise only what GnuPG 2.2 understands.
        .set_features(Features::empty().set_seipdv1())
        .map_err(SignError::OpenPgp)?
        .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
        .set_validity_period(None)
        .add_userid(uid)
        .set_password(passphrase.map(Password::from));
    let (cert, _revocation) = builder.generate().map_err(SignError::OpenPgp)?;
    Ok(cert)
}

/// `PREFIX` + `ext`, appending to the file name (so `keys/imagemaker` gives
/// `keys/imagemaker.key`, and `keys/v1.2` gives `keys/v1.2.key`, not `keys/v1.key`).
fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = OsString::from(prefix.as_os_str());
    s.push(ext);
    PathBuf::from(s)
}

/// Writes `PREFIX.key` (the armored secret key) and `PREFIX.pgp` (the binary public
/// key) and returns their paths, in that order.
///
/// The public key is binary because that is what podsec publishes as
/// `/var/sigstore/keys/<signer>.pgp` (`gpg --export` output) and what policy.json's
/// `keyPath` feeds to GPGME; the secret key is armored so it survives copy-paste.
///
/// Safety properties: the secret key file is created with mode 0600 from the start
/// (the mode is given to `open`, never fixed up afterwards, so there is no window in
/// which it is readable); each file is written to a temporary file in the target
/// directory, synced and then linked into place without replacing anything, so an
/// existing key is never overwritten and a crash leaves no half-written key. If the
/// public key cannot be placed, the secret key just written is removed again.
pub fn write_key_pair(cert: &Cert, prefix: &Path) -> Result<(PathBuf, PathBuf)> {
    let fpr = cert.fingerprint().to_hex();
    if !cert.is_tsk() {
        return Err(SignError::NoSecretKey(format!("certificate {fpr}")));
    }
    let key_path = with_suffix(prefix, ".key");
    let pub_path = with_suffix(prefix, ".pgp");
    for p in [&key_path, &pub_path] {
        if fs::symlink_metadata(p).is_ok() {
            return Err(SignError::AlreadyExists(p.clone()));
        }
    }
    let secret = cert
        .as_tsk()
        .armored()
        .to_vec()
        .map_err(SignError::OpenPgp)?;
    let public = cert.export_to_vec().map_err(SignError::OpenPgp)?;

    write_new_file(&key_path, &secret, 0o600)?;
    if let Err(e) = write_new_file(&pub_path, &public, 0o644) {
        // We created this file a moment ago; don't leave half a key pair behind.
        let _ = fs::remove_file(&key_path);
        return Err(e);
    }
    Ok((key_path, pub_path))
}

/// Creates `path` with `contents` and `mode`, atomically and without overwriting.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".u7s-key-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(&dir)
        .map_err(|e| SignError::io(&dir, e))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| SignError::io(tmp.path(), e))?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            SignError::AlreadyExists(path.to_path_buf())
        } else {
            SignError::io(path, e.error)
        }
    })?;
    // Make the new directory entry durable too; failure here is not fatal for
    // correctness, only for crash-safety, and some filesystems refuse it.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A secret signing key, decrypted and ready to sign.
///
/// Holds the certificate (with secrets) and the key pair of its *primary* key, which
/// is the only key containers/image accepts image signatures from. Construction
/// checks everything a signature depends on (primary flagged for signing, not
/// expired, not revoked, secret present and decrypted), so that signing itself
/// cannot produce a signature the cluster would refuse for key reasons.
#[derive(Clone)]
pub struct SigningKey {
    cert: Cert,
    keypair: KeyPair,
    fingerprint: String,
}

impl std::fmt::Debug for SigningKey {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a secret key file as `u7s-bundle keygen` (armored) or
    /// `gpg --export-secret-keys [--armor]` write it, and decrypts the primary key
    /// with `passphrase` if it is protected.
    pub fn from_file(path: &Path, passphrase: Option<&str>) -> Result<SigningKey> {
        let bytes = fs::read(path).map_err(|e| SignError::io(path, e))?;
        Self::from_bytes(&bytes, passphrase, &path.display().to_string())
    }

    /// Like [`SigningKey::from_file`], from memory; `what` names the source in errors.
    pub fn from_bytes(bytes: &[u8], passphrase: Option<&str>, what: &str) -> Result<SigningKey> {
        let certs = parse_certs(bytes, what)?;
        let mut secret: Vec<Cert> = certs.into_iter().filter(|c| c.is_tsk()).collect();
        match secret.len() {
            0 => return Err(SignError::NoSecretKey(what.to_string())),
            1 => {}
            _ => {
                return Err(SignError::MultipleSecretKeys {
                    what: what.to_string(),
                    fingerprints: secret.iter().map(|c| c.fingerprint().to_hex()).collect(),
                })
            }
        }
        Self::from_cert(secret.remove(0), passphrase)
    }

    /// Builds a signing key from a certificate with secret key material.
    pub fn from_cert(cert: Cert, passphrase: Option<&str>) -> Result<SigningKey> {
        let fingerprint = cert.fingerprint().to_hex();
        check_primary_can_sign(&cert)?;

        let primary = cert.primary_key().key().clone();
        let primary = primary
            .parts_into_secret()
            .map_err(|_| SignError::NoPrimarySecret {
                fingerprint: fingerprint.clone(),
            })?;
        let stub = match primary.secret() {
            SecretKeyMaterial::Encrypted(e) => {
                matches!(e.s2k(), S2K::Private { .. } | S2K::Unknown { .. })
            }
            SecretKeyMaterial::Unencrypted(_) => false,
        };
        if stub {
            return Err(SignError::NoPrimarySecret { fingerprint });
        }
        let primary = if primary.secret().is_encrypted() {
            let Some(pass) = passphrase else {
                return Err(SignError::PassphraseRequired { fingerprint });
            };
            primary.decrypt_secret(&Password::from(pass)).map_err(|_| {
                SignError::WrongPassphrase {
                    fingerprint: fingerprint.clone(),
                }
            })?
        } else {
            primary
        };
        let keypair = primary.into_keypair().map_err(SignError::OpenPgp)?;
        Ok(SigningKey {
            cert,
            keypair,
            fingerprint,
        })
    }

    /// The primary fingerprint: 40 uppercase hex digits, the form containers/image
    /// prints and GnuPG's `--with-colons` listing uses.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The fingerprint, borrowed (for [`super::ImageSigner::fingerprint`]).
    pub(crate) fn fingerprint_str(&self) -> &str {
        &self.fingerprint
    }

    /// The e-mail address of the primary user id, if any (used to name the signer,
    /// e.g. `/var/sigstore/keys/<name>.pgp`).
    pub fn primary_email(&self) -> Option<String> {
        primary_email(&self.cert)
    }

    /// The public key, binary (`gpg --export` format), without any secret material.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        // Serializing a `Cert` (as opposed to its TSK view) never includes secrets,
        // and `export` also drops non-exportable signatures. It cannot fail on a
        // certificate we parsed or built ourselves.
        self.cert
            .export_to_vec()
            .expect("serializing a parsed certificate to memory")
    }

    /// The certificate. Note: it still contains the secret key material; use
    /// [`SigningKey::public_key_bytes`] for anything that leaves the process.
    pub fn cert(&self) -> &Cert {
        &self.cert
    }

    /// The decrypted primary key pair (crate-internal: signers clone it per use).
    pub(crate) fn keypair(&self) -> &KeyPair {
        &self.keypair
    }
}

/// The e-mail of the primary user id valid under the standard policy now.
pub(crate) fn primary_email(cert: &Cert) -> Option<String> {
    let policy = StandardPolicy::new();
    let vc = cert.with_policy(&policy, None).ok()?;
    let uid = vc.primary_userid().ok()?;
    uid.userid().email().ok().flatten().map(str::to_string)
}

/// Refuses keys whose primary cannot make an image signature the cluster accepts.
fn check_primary_can_sign(cert: &Cert) -> Result<()> {
    let fingerprint = cert.fingerprint().to_hex();
    let policy = StandardPolicy::new();
    let vc = cert
        .with_policy(&policy, None)
        .map_err(|e| SignError::UnusableSigningKey {
            fingerprint: fingerprint.clone(),
            reason: format!("{e:#}"),
        })?;
    if let RevocationStatus::Revoked(revs) = vc.revocation_status() {
        return Err(SignError::UnusableSigningKey {
            fingerprint,
            reason: format!("revoked{}", super::verify::revocation_reason(&revs)),
        });
    }
    if let Err(e) = vc.alive() {
        return Err(SignError::UnusableSigningKey {
            fingerprint,
            reason: format!("{e:#}"),
        });
    }
    if !vc.primary_key().for_signing() {
        let subkey_can_sign = vc.keys().subkeys().for_signing().next().is_some();
        return Err(SignError::PrimaryCannotSign {
            fingerprint,
            subkey_can_sign,
        });
    }
    Ok(())
}

/// Parses every certificate in `bytes` (armored or binary, one or many).
///
/// Concatenated armored files (`cat a.asc b.asc`) are common for keyrings, and the
/// armor reader stops at the first END line, so armored input is split into its
/// blocks first.
fn parse_certs(bytes: &[u8], what: &str) -> Result<Vec<Cert>> {
    let invalid = |reason: String| SignError::InvalidKey {
        what: what.to_string(),
        reason,
    };
    let mut certs = Vec::new();
    for chunk in armor_blocks(bytes) {
        let parser = CertParser::from_bytes(chunk)
            .map_err(|e| invalid(format!("not an OpenPGP key: {e:#}")))?;
        for cert in parser {
            certs.push(cert.map_err(|e| invalid(format!("not an OpenPGP key: {e:#}")))?);
        }
    }
    if certs.is_empty() {
        return Err(invalid("contains no OpenPGP key".into()));
    }
    Ok(certs)
}

/// Splits armored input at `-----BEGIN PGP` lines; binary input is one chunk.
fn armor_blocks(bytes: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN PGP ";
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| (i == 0 || bytes[i - 1] == b'\n') && bytes[i..].starts_with(BEGIN))
        .collect();
    if starts.len() <= 1 {
        return vec![bytes];
    }
    let mut out = Vec::with_capacity(starts.len());
    for (n, &s) in starts.iter().enumerate() {
        let e = starts.get(n + 1).copied().unwrap_or(bytes.len());
        out.push(&bytes[s..e]);
    }
    out
}

/// Reads public keys (armored or binary, possibly several per file) into a keyring.
///
/// Secret material, if a secret key file was given by mistake, is dropped: a keyring
/// is for verification only. The same certificate appearing in several files is
/// merged (so a revocation published in a second file takes effect). A file without
/// any key is an error: an empty trust anchor is a configuration mistake.
pub fn load_keyring(paths: &[PathBuf]) -> Result<Vec<Cert>> {
    let mut keyring: Vec<Cert> = Vec::new();
    for path in paths {
        let bytes = fs::read(path).map_err(|e| SignError::io(path, e))?;
        add_to_keyring(&mut keyring, &bytes, &path.display().to_string())?;
    }
    Ok(keyring)
}

/// Like [`load_keyring`], from memory (e.g. a signer's `public_key_bytes()`, or the
/// base64-decoded `keyData` of a policy.json requirement).
pub fn load_keyring_bytes(bytes: &[u8]) -> Result<Vec<Cert>> {
    let mut keyring = Vec::new();
    add_to_keyring(&mut keyring, bytes, "keyring data")?;
    Ok(keyring)
}

/// Parses `bytes` and merges its certificates, without secrets, into `keyring`.
fn add_to_keyring(keyring: &mut Vec<Cert>, bytes: &[u8], what: &str) -> Result<()> {
    for cert in parse_certs(bytes, what)? {
        let cert = cert.strip_secret_key_material();
        if let Some(existing) = keyring
            .iter_mut()
            .find(|c| c.fingerprint() == cert.fingerprint())
        {
            let merged = existing
                .clone()
                .merge_public(cert)
                .map_err(SignError::OpenPgp)?;
            *existing = merged;
        } else {
            keyring.push(cert);
        }
    }
    Ok(())
}

/// Reads every `*.pgp`, `*.asc` and `*.gpg` file of `dir` (sorted by name,
/// binary or ASCII-armored: the names `gpg --export [--armor]` output gets) as
/// a keyring; a missing
/// directory is an empty keyring, so a fresh host simply trusts nothing yet.
pub fn keyring_from_dir(dir: &Path) -> Result<Vec<Cert>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SignError::io(dir, e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SignError::io(dir, e))?;
        let path = entry.path();
        if path
            .extension()
            .is_some_and(|x| x == "pgp" || x == "asc" || x == "gpg")
            && path.is_file()
        {
            paths.push(path);
        }
    }
    paths.sort();
    load_keyring(&paths)
}

/// Reads a passphrase: the first line of the file, without its trailing newline.
///
/// Only `\n` is stripped, exactly as `gpg --passphrase-file` reads it, so the same
/// file unlocks a key both here and through [`super::GpgSigner`]. The passphrase is
/// never logged or put into an error.
pub fn passphrase_from_file(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| SignError::io(path, e))?;
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8(line.to_vec()).map_err(|_| {
        SignError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "passphrase file is not valid UTF-8",
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::testutil::{self, GnupgHome};

    #[test]
    fn trusted_dir_reads_asc_and_gpg_armored_or_binary() {
        use sequoia_openpgp::serialize::SerializeInto;
        let d = tempfile::tempdir().unwrap();
        let a = Cert::from_bytes(&testutil::key_a().public_key_bytes()).unwrap();
        let b = Cert::from_bytes(&testutil::key_b().public_key_bytes()).unwrap();
        fs::write(d.path().join("a.asc"), a.armored().to_vec().unwrap()).unwrap();
        fs::write(d.path().join("b.gpg"), b.to_vec().unwrap()).unwrap();
        fs::write(d.path().join("notes.txt"), b"not a key").unwrap();
        let ring = keyring_from_dir(d.path()).unwrap();
        let mut got: Vec<String> = ring.iter().map(|c| c.fingerprint().to_hex()).collect();
        got.sort();
        let mut want = vec![a.fingerprint().to_hex(), b.fingerprint().to_hex()];
        want.sort();
        assert_eq!(got, want);
    }
    use openpgp::types::PublicKeyAlgorithm;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn generated_key_has_the_shape_skopeo_accepts() {
        let cert = testutil::key_a().cert().clone();
        let p = StandardPolicy::new();
        let vc = cert.with_policy(&p, None).unwrap();
        let primary = vc.primary_key();
        assert_eq!(primary.key().version(), 4);
        assert_eq!(primary.key().pk_algo(), PublicKeyAlgorithm::RSAEncryptSign);
        assert_eq!(primary.key().mpis().bits(), Some(3072));
        let flags = primary.key_flags().unwrap();
        assert!(flags.for_certification() && flags.for_signing());
        assert!(!flags.for_transport_encryption() && !flags.for_storage_encryption());
        assert_eq!(vc.keys().subkeys().count(), 0, "no subkeys at all");
        assert_eq!(vc.keys().subkeys().for_signing().count(), 0);
        assert!(primary.key_expiration_time().is_none(), "no expiry");
        assert_eq!(
            vc.primary_userid().unwrap().userid().value(),
            b"Key A <a@example.org>"
        );
    }

    #[test]
    fn empty_uid_refused() {
        assert!(matches!(
            generate(" ", None),
            Err(SignError::InvalidKey { .. })
        ));
    }

    #[test]
    fn key_pair_files_modes_formats_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("imagemaker");
        let cert = testutil::key_a().cert().clone();
        let (k, p) = write_key_pair(&cert, &prefix).unwrap();
        assert_eq!(k, dir.path().join("imagemaker.key"));
        assert_eq!(p, dir.path().join("imagemaker.pgp"));
        assert_eq!(fs::metadata(&k).unwrap().mode() & 0o777, 0o600);
        let key_text = fs::read_to_string(&k).unwrap();
        assert!(key_text.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
        let pub_bytes = fs::read(&p).unwrap();
        // Binary transferable public key: new-format public-key packet tag.
        assert_eq!(pub_bytes[0], 0xC6);
        let public = Cert::from_bytes(&pub_bytes).unwrap();
        assert!(!public.is_tsk(), "the .pgp must not contain secrets");
        assert_eq!(public.fingerprint(), cert.fingerprint());
        // No temporary files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);

        // Refuses to overwrite, whichever of the two exists, and leaves them intact.
        let err = write_key_pair(&cert, &prefix).unwrap_err();
        assert!(matches!(err, SignError::AlreadyExists(_)), "{err}");
        let prefix2 = dir.path().join("other");
        fs::write(dir.path().join("other.pgp"), b"keep me").unwrap();
        let err = write_key_pair(&cert, &prefix2).unwrap_err();
        assert!(matches!(err, SignError::AlreadyExists(ref q) if q.ends_with("other.pgp")));
        assert!(!dir.path().join("other.key").exists());
        assert_eq!(fs::read(dir.path().join("other.pgp")).unwrap(), b"keep me");

        // A public-only certificate cannot be written as a key pair.
        let err = write_key_pair(&public, &dir.path().join("pub")).unwrap_err();
        assert!(matches!(err, SignError::NoSecretKey(_)));

        // Round trip through SigningKey.
        let sk = SigningKey::from_file(&k, None).unwrap();
        assert_eq!(sk.fingerprint(), cert.fingerprint().to_hex());
        assert_eq!(sk.public_key_bytes(), pub_bytes);
    }

    #[test]
    fn signing_key_accessors() {
        let sk = testutil::key_a();
        let fpr = sk.fingerprint();
        assert_eq!(fpr.len(), 40);
        assert!(fpr
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)));
        assert_eq!(sk.primary_email().as_deref(), Some("a@example.org"));
        let public = Cert::from_bytes(&sk.public_key_bytes()).unwrap();
        assert!(!public.is_tsk());
        assert!(!format!("{sk:?}").contains("secret"));
    }

    #[test]
    fn passphrase_protected_key() {
        let dir = tempfile::tempdir().unwrap();
        let cert = generate("Locked <locked@example.org>", Some("correct horse")).unwrap();
        let (k, _) = write_key_pair(&cert, &dir.path().join("locked")).unwrap();
        let err = SigningKey::from_file(&k, None).unwrap_err();
        assert!(matches!(err, SignError::PassphraseRequired { .. }), "{err}");
        let err = SigningKey::from_file(&k, Some("wrong")).unwrap_err();
        assert!(matches!(err, SignError::WrongPassphrase { .. }), "{err}");
        assert!(
            !err.to_string().contains("wrong\""),
            "never echo the passphrase"
        );
        let pf = dir.path().join("pass");
        fs::write(&pf, "correct horse\nsecond line\n").unwrap();
        let pass = passphrase_from_file(&pf).unwrap();
        assert_eq!(pass, "correct horse");
        let sk = SigningKey::from_file(&k, Some(&pass)).unwrap();
        assert_eq!(sk.fingerprint(), cert.fingerprint().to_hex());
    }

    #[test]
    fn passphrase_file_edge_cases() {
        let dir = tempfile::tempdir().unwrap();
        let pf = dir.path().join("p");
        fs::write(&pf, "no newline").unwrap();
        assert_eq!(passphrase_from_file(&pf).unwrap(), "no newline");
        fs::write(&pf, "").unwrap();
        assert_eq!(passphrase_from_file(&pf).unwrap(), "");
        assert!(matches!(
            passphrase_from_file(&dir.path().join("missing")),
            Err(SignError::Io { .. })
        ));
    }

    #[test]
    fn default_sequoia_shape_is_refused_for_signing() {
        let cert = testutil::subkey_shaped_cert();
        let err = SigningKey::from_cert(cert, None).unwrap_err();
        match &err {
            SignError::PrimaryCannotSign {
                subkey_can_sign, ..
            } => assert!(*subkey_can_sign),
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("subkey"), "{err}");
    }

    #[test]
    fn public_only_file_is_not_a_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.pgp");
        fs::write(&f, testutil::key_a().public_key_bytes()).unwrap();
        let err = SigningKey::from_file(&f, None).unwrap_err();
        assert!(matches!(err, SignError::NoSecretKey(_)), "{err}");
        fs::write(&f, b"hello").unwrap();
        let err = SigningKey::from_file(&f, None).unwrap_err();
        assert!(matches!(err, SignError::InvalidKey { .. }), "{err}");
    }

    #[test]
    fn keyrings_armored_binary_multi_and_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let a = testutil::key_a();
        let b = testutil::key_b();
        // One binary file with two certs.
        let mut both = a.public_key_bytes();
        both.extend(b.public_key_bytes());
        fs::write(dir.path().join("both.pgp"), &both).unwrap();
        // Two concatenated armored blocks.
        let mut armored = a.cert().armored().to_vec().unwrap();
        armored.extend(b.cert().armored().to_vec().unwrap());
        fs::write(dir.path().join("both.asc"), &armored).unwrap();
        // A secret key file given as keyring: secrets dropped.
        fs::write(
            dir.path().join("secret.key"),
            a.cert().as_tsk().armored().to_vec().unwrap(),
        )
        .unwrap();
        fs::write(dir.path().join("ignored.txt"), b"not a key").unwrap();

        let fprs = |ring: &[Cert]| {
            let mut v: Vec<String> = ring.iter().map(|c| c.fingerprint().to_hex()).collect();
            v.sort();
            v
        };
        let mut expect = vec![a.fingerprint(), b.fingerprint()];
        expect.sort();

        let ring = load_keyring(&[dir.path().join("both.pgp")]).unwrap();
        assert_eq!(fprs(&ring), expect);
        let ring = load_keyring(&[dir.path().join("both.asc")]).unwrap();
        assert_eq!(fprs(&ring), expect);
        let ring = load_keyring(&[
            dir.path().join("both.asc"),
            dir.path().join("both.pgp"),
            dir.path().join("secret.key"),
        ])
        .unwrap();
        assert_eq!(fprs(&ring), expect, "duplicates merged");
        assert!(ring.iter().all(|c| !c.is_tsk()));

        let ring = load_keyring_bytes(&armored).unwrap();
        assert_eq!(fprs(&ring), expect);
        assert!(load_keyring_bytes(b"").is_err());

        let err = load_keyring(&[dir.path().join("ignored.txt")]).unwrap_err();
        assert!(matches!(err, SignError::InvalidKey { .. }), "{err}");

        // Directory: only *.pgp files count; missing directory = empty keyring.
        let ring = keyring_from_dir(dir.path()).unwrap();
        assert_eq!(fprs(&ring), expect);
        assert!(keyring_from_dir(&dir.path().join("nope"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn reads_secret_keys_exported_by_gpg() {
        let home = GnupgHome::new();
        let fpr = home.gen_key("Gpg Export <export@example.org>", Some("s3cret"));
        // Binary export, passphrase protected (gpg keeps the protection on export).
        let bin = home.run_ok(&[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "s3cret",
            "--export-secret-keys",
            &fpr,
        ]);
        assert!(!bin.is_empty() && bin[0] & 0x80 != 0, "binary export");
        let dir = tempfile::tempdir().unwrap();
        let bin_path = dir.path().join("exported.gpg");
        fs::write(&bin_path, &bin).unwrap();
        let err = SigningKey::from_file(&bin_path, None).unwrap_err();
        assert!(matches!(err, SignError::PassphraseRequired { .. }), "{err}");
        let sk = SigningKey::from_file(&bin_path, Some("s3cret")).unwrap();
        assert_eq!(sk.fingerprint(), fpr);
        assert_eq!(sk.primary_email().as_deref(), Some("export@example.org"));

        // Armored export.
        let asc = home.run_ok(&[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "s3cret",
            "--armor",
            "--export-secret-keys",
            &fpr,
        ]);
        assert!(asc.starts_with(b"-----BEGIN PGP PRIVATE KEY BLOCK-----"));
        let asc_path = dir.path().join("exported.asc");
        fs::write(&asc_path, &asc).unwrap();
        let sk2 = SigningKey::from_file(&asc_path, Some("s3cret")).unwrap();
        assert_eq!(sk2.fingerprint(), fpr);
        // The key really signs: gpg's own key verifies in our verifier.
        let sig = crate::sign::detached::sign_detached(&sk2, b"data").unwrap();
        let ring = vec![Cert::from_bytes(&home.export(&fpr)).unwrap()];
        assert_eq!(
            crate::sign::detached::verify_detached(&ring, b"data", &sig)
                .unwrap()
                .fingerprint,
            fpr
        );

        // --export-secret-subkeys leaves a stub for the primary: clear refusal.
        let stub = home.run_ok(&[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "s3cret",
            "--export-secret-subkeys",
            &fpr,
        ]);
        let stub_path = dir.path().join("stub.gpg");
        fs::write(&stub_path, &stub).unwrap();
        let err = SigningKey::from_file(&stub_path, Some("s3cret")).unwrap_err();
        assert!(
            matches!(
                err,
                SignError::NoPrimarySecret { .. } | SignError::NoSecretKey(_)
            ),
            "{err}"
        );
    }
}
