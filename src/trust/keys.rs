//! Public keys named by policy.json `signedBy` rules:
//! `/var/sigstore/keys/<name>.pgp`.
//!
//! The keys directory is also served over HTTP (sigstore.local) to the other
//! nodes, so installing a *secret* key there by mistake would publish it:
//! anything that looks like secret key material is refused.

use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid key name {0:?}: use letters, digits, '.', '_', '-', not starting with '.'")]
    InvalidName(String),
    #[error("{0}")]
    NotAPublicKey(&'static str),
    #[error("{0}.pgp and its alternative names in the keys directory all hold other keys")]
    NameTaken(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// `[A-Za-z0-9._-]+`, no leading dot (no hidden files, no `.`/`..`), at most
/// 200 bytes so `<name>.pgp` plus backup suffixes stay under NAME_MAX.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Check that `bytes` is an OpenPGP *public* key (binary packets or ASCII
/// armor), the forms GnuPG imports from a `keyPath` keyring.
pub(crate) fn check_public_key(bytes: &[u8]) -> Result<(), KeyError> {
    const SECRET: KeyError =
        KeyError::NotAPublicKey("refusing to install secret key material as a public key");
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or(KeyError::NotAPublicKey("empty key file"))?;
    let body = &bytes[start..];
    if body.starts_with(b"-----BEGIN PGP ") {
        if body.starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----") {
            return Ok(());
        }
        if body.starts_with(b"-----BEGIN PGP PRIVATE KEY BLOCK-----") {
            return Err(SECRET);
        }
        return Err(KeyError::NotAPublicKey(
            "armored data is not a PUBLIC KEY BLOCK",
        ));
    }
    // Binary: the first packet must be a public key (tag 6). Tag 5 is a
    // secret key. Old format: 10tttt ll; new format: 11tttttt.
    let first = bytes[0];
    let tag = match first {
        b if b & 0xC0 == 0xC0 => b & 0x3F,
        b if b & 0xC0 == 0x80 => (b >> 2) & 0x0F,
        _ => {
            return Err(KeyError::NotAPublicKey(
                "not an OpenPGP key (binary or armored)",
            ))
        }
    };
    match tag {
        6 => Ok(()),
        5 => Err(SECRET),
        _ => Err(KeyError::NotAPublicKey(
            "first OpenPGP packet is not a public key",
        )),
    }
}

/// Install `bytes` as `<keys_dir>/<name>.pgp` (0644; directory created 0755),
/// atomically, keeping a dated backup if a different key was there. The
/// backup goes to `backup_dir` when given: the keys directory is served to
/// every node over HTTP, and an old file must not be published there.
///
/// Returns the path and whether anything changed (`false` when the same key
/// is already installed — re-runs are no-ops). `bytes` must be an OpenPGP
/// public key, binary or armored; secret keys are refused.
pub fn install_public_key(
    keys_dir: &Path,
    name: &str,
    bytes: &[u8],
    backup_dir: Option<&Path>,
) -> Result<(PathBuf, bool), KeyError> {
    if !is_valid_key_name(name) {
        return Err(KeyError::InvalidName(name.to_string()));
    }
    check_public_key(bytes)?;
    let path = keys_dir.join(format!("{name}.pgp"));
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| KeyError::Io { path: p, source }
    };
    fsutil::create_dir_all_mode(keys_dir, 0o755).map_err(io_err(keys_dir))?;
    let existed = path.exists();
    let backup = fsutil::write_atomic_with_backup_in(&path, bytes, 0o644, backup_dir)
        .map_err(io_err(&path))?;
    Ok((path, !existed || backup.is_some()))
}

/// Primary fingerprints (upper-case hex) of the certificates in a keyring
/// file, binary or armored; empty when it holds none we can parse.
fn file_fingerprints(path: &Path) -> Result<Vec<String>, KeyError> {
    use sequoia_openpgp::cert::CertParser;
    use sequoia_openpgp::parse::Parse;
    let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let Ok(parser) = CertParser::from_bytes(&bytes) else {
        return Ok(Vec::new());
    };
    Ok(parser
        .filter_map(Result::ok)
        .map(|c| c.fingerprint().to_hex())
        .collect())
}

/// Where the public key with `fingerprint` goes, given the name we would like
/// (`imagemaker`): a key file is never replaced by a different key, because a
/// policy rule (podsec's `signedBy keyPath …/imagemaker.pgp`) may name it, and
/// every image signed with that key would then be refused, and the other
/// nodes would fetch the wrong key.
///
/// Tries `<name>`, `<name>-<last 16 hex of the fingerprint>`, `<name>-<fingerprint>`:
/// the first that is free or already holds this key. Deterministic, so a re-run
/// finds the same file. Returns the name and whether the key is already there.
pub fn choose_key_name(
    keys_dir: &Path,
    name: &str,
    fingerprint: &str,
) -> Result<(String, bool), KeyError> {
    let fpr = fingerprint.to_ascii_uppercase();
    let short = &fpr[fpr.len().saturating_sub(16)..];
    for candidate in [
        name.to_string(),
        format!("{name}-{short}"),
        format!("{name}-{fpr}"),
    ] {
        if !is_valid_key_name(&candidate) {
            return Err(KeyError::InvalidName(candidate));
        }
        let path = keys_dir.join(format!("{candidate}.pgp"));
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((candidate, false)),
            Err(source) => return Err(KeyError::Io { path, source }),
            Ok(_) => {
                if file_fingerprints(&path)?.contains(&fpr) {
                    return Ok((candidate, true));
                }
            }
        }
    }
    Err(KeyError::NameTaken(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    const ARMORED: &[u8] =
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxsBN\n-----END PGP PUBLIC KEY BLOCK-----\n";

    #[test]
    fn names() {
        for ok in ["imagemaker", "a.b_c-1", "A9"] {
            assert!(is_valid_key_name(ok), "{ok}");
        }
        let long = "a".repeat(201);
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "../x",
            "a b",
            "ключ",
            long.as_str(),
        ] {
            assert!(!is_valid_key_name(bad), "{bad}");
        }
    }

    /// keys/ is served over HTTP: a replaced key's backup goes elsewhere
    /// (the state directory), with the old file's mode; a key file planted
    /// as a link to a 0600 secret is refused, and the secret is copied
    /// nowhere.
    #[test]
    fn backups_leave_the_served_directory_and_links_to_secrets_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("keys");
        let state = t.path().join("state/backups");
        install_public_key(&dir, "imagemaker", ARMORED, Some(&state)).unwrap();
        let binary = [0x99u8, 0x01, 0x0d, 0x04];
        install_public_key(&dir, "imagemaker", &binary, Some(&state)).unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no backup in keys/");
        let backups: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(backups.len(), 1);
        assert_eq!(fs::read(&backups[0]).unwrap(), ARMORED);

        let secret = t.path().join("secret");
        fs::write(&secret, "PRIVATE").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        let key = dir.join("other.pgp");
        std::os::unix::fs::symlink(&secret, &key).unwrap();
        assert!(install_public_key(&dir, "other", ARMORED, Some(&state)).is_err());
        assert!(fs::symlink_metadata(&key).unwrap().file_type().is_symlink());
        for d in [&dir, &state] {
            for e in fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p != key {
                    assert_ne!(fs::read(&p).unwrap(), b"PRIVATE", "{}", p.display());
                }
            }
        }
    }

    #[test]
    fn install_is_atomic_idempotent_and_backed_up() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("keys");
        let (p, changed) = install_public_key(&dir, "imagemaker", ARMORED, None).unwrap();
        assert!(changed);
        assert_eq!(p, dir.join("imagemaker.pgp"));
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            install_public_key(&dir, "imagemaker", ARMORED, None).unwrap(),
            (p.clone(), false)
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);

        let binary = [0x99u8, 0x01, 0x0d, 0x04];
        let (_, changed) = install_public_key(&dir, "imagemaker", &binary, None).unwrap();
        assert!(changed);
        assert_eq!(fs::read(&p).unwrap(), binary);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2, "one backup");

        assert!(matches!(
            install_public_key(&dir, "../evil", ARMORED, None),
            Err(KeyError::InvalidName(_))
        ));
    }

    #[test]
    fn refuses_non_public_keys() {
        let t = tempfile::tempdir().unwrap();
        for (bad, want) in [
            (&b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n"[..], "secret"),
            (&[0x95u8, 0x01][..], "secret"),
            (&[0xC5u8, 0x01][..], "secret"),
            (&b"-----BEGIN PGP SIGNATURE-----\n"[..], "PUBLIC KEY BLOCK"),
            (&[0xC2u8][..], "not a public key"),
            (&b"hello"[..], "not an OpenPGP key"),
            (&b"  \n"[..], "empty"),
        ] {
            let e = install_public_key(t.path(), "k", bad, None).unwrap_err();
            assert!(e.to_string().contains(want), "{bad:?}: {e}");
        }
        assert!(!t.path().join("k.pgp").exists());
    }

    /// A real GnuPG export (binary and armored) is accepted.
    #[test]
    fn accepts_gpg_exports() {
        let home = tempfile::tempdir().unwrap();
        let gpg = |args: &[&str]| {
            Command::new("gpg")
                .arg("--homedir")
                .arg(home.path())
                .args([
                    "--batch",
                    "--quiet",
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    "",
                ])
                .args(args)
                .output()
        };
        match gpg(&[
            "--quick-gen-key",
            "test@u7s.invalid",
            "rsa2048",
            "sign",
            "never",
        ]) {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("gpg: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return eprintln!("gpg missing; skipped")
            }
            Err(e) => panic!("{e}"),
        }
        let t = tempfile::tempdir().unwrap();
        for armor in [false, true] {
            let mut args = vec!["--export"];
            if armor {
                args.insert(0, "--armor");
            }
            args.push("test@u7s.invalid");
            let out = gpg(&args).unwrap();
            assert!(out.status.success() && !out.stdout.is_empty());
            install_public_key(t.path(), "k", &out.stdout, None).unwrap();
            let secret = gpg(&["--export-secret-keys", "test@u7s.invalid"]).unwrap();
            assert!(install_public_key(t.path(), "s", &secret.stdout, None).is_err());
        }
    }
}
