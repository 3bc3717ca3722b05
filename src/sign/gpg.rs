//! Signing through the operator's own GnuPG (`--sign-by ID`).
//!
//! Some sites keep the image-signing key in GnuPG (podsec's `imagemaker` key is made
//! there) or on a smartcard, and do not want it exported into a file. [`GpgSigner`]
//! drives the `gpg` binary instead of touching the key: gpg-agent and pinentry stay
//! in charge of the secret. Everything gpg hands back is checked with our own
//! verifier before use, so a surprising `gpg.conf` (armor, textmode, a subkey
//! selected behind our back) cannot produce signatures the cluster would refuse.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use sequoia_openpgp as openpgp;

use openpgp::parse::Parse;
use openpgp::Cert;

use super::keys::primary_email;
use super::simple::{check_signed_message, ImageSigner};
use super::{Result, SignError};

/// How to run `gpg`.
#[derive(Debug, Clone, Default)]
pub struct GpgOptions {
    /// `--homedir`; `None` means gpg's own default (`$GNUPGHOME`, else `~/.gnupg`).
    /// Tests always set it: the environment is process-global and tests run in
    /// parallel threads.
    pub homedir: Option<PathBuf>,
    /// A file whose first line is the passphrase, passed with
    /// `--pinentry-mode loopback --passphrase-file` (never on the command line,
    /// where `ps` would show it). `None` lets gpg-agent ask through pinentry.
    pub passphrase_file: Option<PathBuf>,
    /// The gpg binary; `None` means `gpg` from `PATH`.
    pub program: Option<PathBuf>,
    /// The terminal pinentry may ask on, passed as `GPG_TTY` (see
    /// [`stdin_tty`]). Without it, gpg-agent's curses pinentry has no terminal
    /// and a passphrase-protected key fails with "Inappropriate ioctl for device".
    pub tty: Option<PathBuf>,
}

/// The terminal on standard input, if it is one (`ttyname(0)`), for
/// [`GpgOptions::tty`]: what `export GPG_TTY=$(tty)` does in a shell.
pub fn stdin_tty() -> Option<PathBuf> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: ttyname_r writes at most buf.len() bytes, NUL-terminated on success.
    let rc = unsafe { libc::ttyname_r(0, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: NUL-terminated by ttyname_r above.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(PathBuf::from(name.to_string_lossy().into_owned()))
}

/// An [`ImageSigner`] backed by a secret key in GnuPG.
#[derive(Debug, Clone)]
pub struct GpgSigner {
    options: GpgOptions,
    fingerprint: String,
    public_key: Vec<u8>,
    cert: Cert,
}

/// One `sec` record of `gpg --with-colons --list-secret-keys`.
#[derive(Debug, Default)]
struct SecRecord {
    fingerprint: String,
    /// Field 2: validity (`e` expired, `r` revoked, `i` invalid, ...).
    validity: String,
    /// Field 12: lowercase = the primary key's own capabilities, uppercase = the
    /// whole key's (subkeys included), `D` = disabled.
    capabilities: String,
    /// Field 15: `+` secret available, `#` stub, `>SERIAL` on a card.
    token: String,
}

/// Parses the `sec` records (with their primary fingerprints) of a colon listing.
fn parse_secret_listing(text: &str) -> Vec<SecRecord> {
    let mut out: Vec<SecRecord> = Vec::new();
    // Whether the last record opened was a `sec` still waiting for its `fpr`.
    let mut want_fpr = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let field = |i: usize| f.get(i).copied().unwrap_or("").to_string();
        match f[0] {
            "sec" => {
                out.push(SecRecord {
                    validity: field(1),
                    capabilities: field(11),
                    token: field(14),
                    ..SecRecord::default()
                });
                want_fpr = true;
            }
            "fpr" if want_fpr => {
                if let Some(last) = out.last_mut() {
                    last.fingerprint = field(9).to_ascii_uppercase();
                }
                want_fpr = false;
            }
            "ssb" | "pub" | "sub" => want_fpr = false,
            _ => {}
        }
    }
    out
}

impl GpgSigner {
    /// Resolves `id` (fingerprint, key id or e-mail) in the default GnuPG home.
    pub fn new(id: &str) -> Result<GpgSigner> {
        Self::with_options(id, GpgOptions::default())
    }

    /// Resolves `id` with explicit options.
    ///
    /// Requires exactly one matching secret key, whose *primary* key can sign (`s`
    /// in field 12 of its `sec` line; containers/image refuses subkey signatures),
    /// is not expired, revoked or disabled, and whose primary secret is available
    /// (not a `sec#` stub). The public key is exported once, here.
    pub fn with_options(id: &str, options: GpgOptions) -> Result<GpgSigner> {
        let mut cmd = base_command(&options);
        cmd.args([
            "--with-colons",
            "--fixed-list-mode",
            "--list-secret-keys",
            "--",
            id,
        ]);
        let (status, stdout, stderr) = run(&mut cmd, None)?;
        let records = parse_secret_listing(&String::from_utf8_lossy(&stdout));
        if records.is_empty() {
            let detail = if status.success() {
                String::new()
            } else {
                stderr.trim().to_string()
            };
            return Err(SignError::GpgKeyNotFound {
                id: id.to_string(),
                detail,
            });
        }
        if records.len() > 1 {
            return Err(SignError::GpgAmbiguous {
                id: id.to_string(),
                fingerprints: records.into_iter().map(|r| r.fingerprint).collect(),
            });
        }
        let rec = records.into_iter().next().expect("one record");
        let fingerprint = rec.fingerprint.clone();
        if fingerprint.len() != 40 {
            return Err(SignError::GpgFailed {
                command: describe(&cmd),
                status: "unexpected output".into(),
                stderr: format!("no v4 fingerprint for the secret key matching {id:?}"),
            });
        }
        let unusable = |reason: &str| SignError::UnusableSigningKey {
            fingerprint: fingerprint.clone(),
            reason: reason.to_string(),
        };
        match rec.validity.as_str() {
            "e" => return Err(unusable("expired (gpg)")),
            "r" => return Err(unusable("revoked (gpg)")),
            "i" => return Err(unusable("invalid (gpg)")),
            _ => {}
        }
        if rec.capabilities.contains('D') {
            return Err(unusable("disabled in gpg"));
        }
        if !rec.capabilities.contains('s') {
            return Err(SignError::PrimaryCannotSign {
                fingerprint,
                subkey_can_sign: rec.capabilities.contains('S'),
            });
        }
        if rec.token == "#" {
            return Err(SignError::NoPrimarySecret { fingerprint });
        }

        let mut cmd = base_command(&options);
        cmd.args(["--export", &fingerprint]);
        let public_key = run_ok(&mut cmd, None)?;
        let cert = Cert::from_bytes(&public_key).map_err(|e| SignError::GpgFailed {
            command: describe(&cmd),
            status: "unparsable output".into(),
            stderr: format!("{e:#}"),
        })?;
        if cert.fingerprint().to_hex() != fingerprint {
            return Err(SignError::GpgFailed {
                command: describe(&cmd),
                status: "unexpected output".into(),
                stderr: format!("exported {} instead of {fingerprint}", cert.fingerprint()),
            });
        }
        Ok(GpgSigner {
            options,
            fingerprint,
            public_key,
            cert,
        })
    }

    /// The public certificate as gpg exported it.
    pub fn cert(&self) -> &Cert {
        &self.cert
    }
}

impl ImageSigner for GpgSigner {
    /// Runs `gpg --sign --local-user FPR!` (the `!` forbids gpg to substitute a
    /// signing subkey), binary output, SHA-256, no signature expiry (an expiring
    /// image signature would stop pulls on the cluster one day; retire keys by
    /// revocation instead), then checks the result with our verifier: exactly one
    /// signature, by the primary key, over exactly `payload`.
    fn sign_payload(&self, payload: &[u8]) -> Result<Vec<u8>> {
        let mut cmd = base_command(&self.options);
        if let Some(pf) = &self.options.passphrase_file {
            cmd.args(["--pinentry-mode", "loopback", "--passphrase-file"])
                .arg(pf);
        } else if let Some(tty) = &self.options.tty {
            cmd.env("GPG_TTY", tty);
        }
        cmd.args([
            "--no-armor",
            "--no-textmode",
            "--digest-algo",
            "SHA256",
            "--default-sig-expire",
            "0",
            "--local-user",
            &format!("{}!", self.fingerprint),
            "--sign",
        ]);
        let sig = run_ok(&mut cmd, Some(payload))?;
        let (content, signer) = check_signed_message(std::slice::from_ref(&self.cert), &sig)
            .map_err(|e| SignError::GpgFailed {
                command: describe(&cmd),
                status: "produced an unacceptable signature".into(),
                stderr: e.to_string(),
            })?;
        if content != payload || signer != self.fingerprint {
            return Err(SignError::GpgFailed {
                command: describe(&cmd),
                status: "produced an unexpected signature".into(),
                stderr: "signed content or signer differ from the request".into(),
            });
        }
        Ok(sig)
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn public_key_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.public_key.clone())
    }

    fn email(&self) -> Option<String> {
        primary_email(&self.cert)
    }
}

/// `gpg --batch --no-tty [--homedir H]`: never prompt on our terminal (pinentry, run
/// by gpg-agent, may still ask when no passphrase file is given).
fn base_command(options: &GpgOptions) -> Command {
    let program = options
        .program
        .clone()
        .unwrap_or_else(|| PathBuf::from("gpg"));
    let mut cmd = Command::new(program);
    cmd.args(["--batch", "--no-tty"]);
    if let Some(h) = &options.homedir {
        cmd.arg("--homedir").arg(h);
    }
    cmd
}

/// The command line, for error messages. It holds no secrets: passphrases are only
/// ever passed by file name.
fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd`, feeding `stdin`; returns status, stdout and stderr.
fn run(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
) -> Result<(std::process::ExitStatus, Vec<u8>, String)> {
    let spawn_err = |e: std::io::Error, cmd: &Command| SignError::GpgFailed {
        command: describe(cmd),
        status: format!("could not run: {e}"),
        stderr: String::new(),
    };
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| spawn_err(e, cmd))?;
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let data = data.to_vec();
        // Write from a thread: gpg may start writing output before it has read
        // all input, and both pipes have finite buffers.
        let writer = std::thread::spawn(move || pipe.write_all(&data));
        let out = child.wait_with_output().map_err(|e| spawn_err(e, cmd))?;
        if let Ok(Err(e)) = writer.join() {
            if out.status.success() {
                return Err(spawn_err(e, cmd));
            }
        }
        return Ok((
            out.status,
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let out = child.wait_with_output().map_err(|e| spawn_err(e, cmd))?;
    Ok((
        out.status,
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs `cmd` and requires success with non-empty output.
fn run_ok(cmd: &mut Command, stdin: Option<&[u8]>) -> Result<Vec<u8>> {
    let (status, stdout, stderr) = run(cmd, stdin)?;
    if !status.success() || stdout.is_empty() {
        return Err(SignError::GpgFailed {
            command: describe(cmd),
            status: if status.success() {
                "no output".into()
            } else {
                status.to_string()
            },
            stderr: stderr.trim().to_string(),
        });
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::simple::{payload, verify_simple};
    use crate::sign::testutil::{self, GnupgHome};

    const REF: &str = "registry.local/c10f/kube-apiserver:v1.26.9";

    fn opts(home: &GnupgHome) -> GpgOptions {
        GpgOptions {
            homedir: Some(home.path().to_path_buf()),
            ..GpgOptions::default()
        }
    }

    #[test]
    fn colon_listing_parser() {
        let text = "sec:u:3072:1:AAAABBBBCCCCDDDD:1700000000:::u:::scSC:::+:::23::0:\n\
                    fpr:::::::::0123456789ABCDEF0123456789ABCDEF01234567:\n\
                    grp:::::::::XYZ:\n\
                    uid:u::::1700000000::HASH::Test <t@example.org>::::::::::0:\n\
                    ssb:u:3072:1:EEEEFFFF00001111:1700000000::::::s:::+:::23:\n\
                    fpr:::::::::FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:\n\
                    sec:e:3072:1:1111222233334444:1600000000:1600000001::u:::cS:::#:::23::0:\n\
                    fpr:::::::::89abcdef0123456789abcdef0123456789ABCDEF:\n";
        let recs = parse_secret_listing(text);
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0].fingerprint,
            "0123456789ABCDEF0123456789ABCDEF01234567"
        );
        assert_eq!(recs[0].capabilities, "scSC");
        assert_eq!(recs[0].token, "+");
        assert_eq!(
            recs[1].fingerprint,
            "89ABCDEF0123456789ABCDEF0123456789ABCDEF"
        );
        assert_eq!(recs[1].validity, "e");
        assert_eq!(recs[1].token, "#");
    }

    #[test]
    fn gpg_signer_signs_what_skopeo_and_verify_simple_accept() {
        let home = GnupgHome::new();
        let fpr = home.gen_key("Test <t@example.org>", None);
        // By e-mail.
        let signer = GpgSigner::with_options("t@example.org", opts(&home)).unwrap();
        assert_eq!(signer.fingerprint(), fpr);
        assert_eq!(signer.email().as_deref(), Some("t@example.org"));
        let public = signer.public_key_bytes().unwrap();
        assert_eq!(public, home.export(&fpr));

        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("manifest.json");
        let body = br#"{"schemaVersion":2}"#;
        std::fs::write(&manifest, body).unwrap();
        let digest = testutil::sha256_digest(body);
        let sig = signer
            .sign_payload(&payload(REF, &digest, "u7s-bundle", 1700000000))
            .unwrap();
        // gpg compresses by default; containers/image accepts 0xA0-0xA3 / 0xC8.
        assert!(
            matches!(sig[0], 0xA0..=0xA3 | 0xC8 | 0x90..=0x92 | 0xC4),
            "first byte {:#x}",
            sig[0]
        );

        let ring = vec![Cert::from_bytes(&public).unwrap()];
        let (p, who) = verify_simple(&ring, &sig).unwrap();
        assert_eq!(who, fpr);
        assert_eq!(p.docker_reference, REF);
        assert_eq!(p.manifest_digest, digest);

        let sig_path = dir.path().join("signature-1");
        std::fs::write(&sig_path, &sig).unwrap();
        let out = home.skopeo_verify(&manifest, REF, &fpr, &sig_path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = home.skopeo_verify(&manifest, "registry.local/other:v1", &fpr, &sig_path);
        assert!(!out.status.success());
    }

    #[test]
    fn gpg_signer_with_passphrase_file_by_fingerprint() {
        let home = GnupgHome::new();
        let fpr = home.gen_key("Locked <locked@example.org>", Some("pass word"));
        let dir = tempfile::tempdir().unwrap();
        let pf = dir.path().join("pass");
        std::fs::write(&pf, "pass word\n").unwrap();
        let signer = GpgSigner::with_options(
            &fpr,
            GpgOptions {
                passphrase_file: Some(pf),
                ..opts(&home)
            },
        )
        .unwrap();
        let digest = testutil::sha256_digest(b"m");
        let sig = signer.sign_payload(&payload(REF, &digest, "c", 1)).unwrap();
        let ring = vec![signer.cert().clone()];
        assert_eq!(verify_simple(&ring, &sig).unwrap().1, fpr);
    }

    #[test]
    fn gpg_signer_resolution_errors() {
        let home = GnupgHome::new();
        let a = home.gen_key("One <one@example.org>", None);
        let b = home.gen_key("Two <two@example.org>", None);

        let err = GpgSigner::with_options("nobody@example.org", opts(&home)).unwrap_err();
        assert!(matches!(err, SignError::GpgKeyNotFound { .. }), "{err}");

        let err = GpgSigner::with_options("example.org", opts(&home)).unwrap_err();
        match &err {
            SignError::GpgAmbiguous { fingerprints, .. } => {
                let mut got = fingerprints.clone();
                got.sort();
                let mut want = vec![a.clone(), b.clone()];
                want.sort();
                assert_eq!(got, want);
            }
            other => panic!("unexpected {other}"),
        }

        // A certify-only primary with a signing subkey (gpg's own default shape).
        let c = home.gen_key_usage("Sub <sub@example.org>", "cert");
        home.run_ok(&[
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
            "--quick-add-key",
            &c,
            "rsa3072",
            "sign",
            "never",
        ]);
        let err = GpgSigner::with_options("sub@example.org", opts(&home)).unwrap_err();
        assert!(
            matches!(
                err,
                SignError::PrimaryCannotSign {
                    subkey_can_sign: true,
                    ..
                }
            ),
            "{err}"
        );

        // A missing gpg binary is a clear error, not a panic.
        let err = GpgSigner::with_options(
            &a,
            GpgOptions {
                program: Some("/nonexistent/gpg".into()),
                ..opts(&home)
            },
        )
        .unwrap_err();
        assert!(matches!(err, SignError::GpgFailed { .. }), "{err}");
    }
}
