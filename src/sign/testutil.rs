//! Test support: shared keys (RSA-3072 generation is slow, so tests share them),
//! odd-shaped keys, and a throw-away GnuPG home with helpers for gpg and skopeo.
//!
//! The GnuPG home is always passed explicitly (`--homedir`, or `GNUPGHOME` set on
//! the child `Command` only): tests run in parallel threads of one process, and
//! the environment is process-global.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::crypto::KeyPair;
use openpgp::policy::StandardPolicy;
use openpgp::types::{Features, KeyFlags};
use openpgp::{Cert, Profile};

use super::keys::{generate, SigningKey};

/// A signing key in the shape `keys::generate` makes ("Key A <a@example.org>").
pub fn key_a() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| {
        SigningKey::from_cert(generate("Key A <a@example.org>", None).unwrap(), None).unwrap()
    })
}

/// A second, unrelated signing key.
pub fn key_b() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| {
        SigningKey::from_cert(generate("Key B <b@example.org>", None).unwrap(), None).unwrap()
    })
}

/// Our shape, with a chosen creation time and validity (for expiry tests).
pub fn shaped_cert_at(uid: &str, created: SystemTime, validity: Option<Duration>) -> Cert {
    CertBuilder::new()
        .set_profile(Profile::RFC4880)
        .unwrap()
        .set_cipher_suite(CipherSuite::RSA3k)
        .set_features(Features::empty().set_seipdv1())
        .unwrap()
        .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
        .set_creation_time(created)
        .set_validity_period(validity)
        .add_userid(uid)
        .generate()
        .unwrap()
        .0
}

/// Sequoia's default shape: certify-only primary plus a signing subkey (v4, RSA).
pub fn subkey_shaped_cert() -> Cert {
    static C: OnceLock<Cert> = OnceLock::new();
    C.get_or_init(|| {
        CertBuilder::new()
            .set_profile(Profile::RFC4880)
            .unwrap()
            .set_cipher_suite(CipherSuite::RSA3k)
            .add_userid("Subkey Shape <sub@example.org>")
            .add_signing_subkey()
            .generate()
            .unwrap()
            .0
    })
    .clone()
}

/// The unencrypted primary key pair of `cert`, with no validity checks.
pub fn primary_keypair(cert: &Cert) -> KeyPair {
    cert.primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .unwrap()
        .into_keypair()
        .unwrap()
}

/// The key pair of the signing subkey of `cert`.
pub fn signing_subkey_keypair(cert: &Cert) -> KeyPair {
    let p = StandardPolicy::new();
    cert.keys()
        .subkeys()
        .with_policy(&p, None)
        .for_signing()
        .secret()
        .next()
        .expect("a signing subkey")
        .key()
        .clone()
        .into_keypair()
        .unwrap()
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A temporary GnuPG home; its gpg-agent is stopped on drop.
pub struct GnupgHome {
    dir: tempfile::TempDir,
}

impl GnupgHome {
    pub fn new() -> GnupgHome {
        // tempdir() creates the directory with mode 0700, which gpg requires.
        GnupgHome {
            dir: tempfile::Builder::new().prefix("gpg").tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `gpg --homedir H --batch --no-tty ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("gpg")
            .arg("--homedir")
            .arg(self.path())
            .args(["--batch", "--no-tty"])
            .args(args)
            .output()
            .expect("gpg is a required test dependency")
    }

    /// Like `run`, but panics with gpg's stderr on failure; returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Imports keys (any format gpg reads).
    pub fn import(&self, key: &[u8]) {
        let f = self.path().join("import.tmp");
        std::fs::write(&f, key).unwrap();
        self.run_ok(&["--import", f.to_str().unwrap()]);
        std::fs::remove_file(f).unwrap();
    }

    /// `gpg --export FPR` (binary).
    pub fn export(&self, fpr: &str) -> Vec<u8> {
        self.run_ok(&["--export", fpr])
    }

    /// Generates an RSA-3072 `sign,cert` key with no expiry; returns its fingerprint.
    pub fn gen_key(&self, uid: &str, passphrase: Option<&str>) -> String {
        self.gen(uid, "sign,cert", passphrase.unwrap_or(""))
    }

    /// Generates an unprotected RSA-3072 key with the given usage.
    pub fn gen_key_usage(&self, uid: &str, usage: &str) -> String {
        self.gen(uid, usage, "")
    }

    fn gen(&self, uid: &str, usage: &str, passphrase: &str) -> String {
        let out = self.run_ok(&[
            "--status-fd",
            "1",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            passphrase,
            "--quick-gen-key",
            uid,
            "rsa3072",
            usage,
            "never",
        ]);
        let status = String::from_utf8_lossy(&out);
        status
            .lines()
            .find_map(|l| l.strip_prefix("[GNUPG:] KEY_CREATED "))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no KEY_CREATED in {status}"))
            .to_string()
    }

    /// `skopeo standalone-verify MANIFEST REFERENCE FINGERPRINT SIGNATURE`, with this
    /// home as the GnuPG keyring (skopeo 1.9.3 uses the default home via GPGME).
    pub fn skopeo_verify(&self, manifest: &Path, reference: &str, fpr: &str, sig: &Path) -> Output {
        Command::new("skopeo")
            .env("GNUPGHOME", self.path())
            .arg("standalone-verify")
            .arg(manifest)
            .arg(reference)
            .arg(fpr)
            .arg(sig)
            .output()
            .expect("skopeo is a required test dependency")
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        // Stop the agent this home started, and nothing else.
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.path())
            .args(["--kill", "all"])
            .output();
    }
}
