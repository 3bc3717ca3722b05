//! `u7s-bundle keygen`: a signing key of the one shape every container tool
//! accepts (RSA-3072, v4, primary key certify+sign, no signing subkey).

use anyhow::{Context, Result};

use crate::cli::KeygenArgs;
use u7s_bundle::sign::keys;

pub fn run(args: KeygenArgs) -> Result<()> {
    let passphrase = args
        .passphrase_file
        .as_deref()
        .map(keys::passphrase_from_file)
        .transpose()
        .context("reading --passphrase-file")?;
    // `--output keys/builder` with no keys/ yet: create it, private (it will
    // hold a secret key).
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        u7s_bundle::fsutil::create_dir_all_mode(dir, 0o700)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let cert = keys::generate(&args.uid, passphrase.as_deref()).context("generating the key")?;
    let (secret, public) = keys::write_key_pair(&cert, &args.output).with_context(|| {
        format!(
            "writing {}.key and {}.pgp",
            args.output.display(),
            args.output.display()
        )
    })?;
    println!("fingerprint: {}", cert.fingerprint().to_hex());
    println!(
        "secret key:  {} (mode 0600: keep it off the isolated hosts unless they sign)",
        secret.display()
    );
    println!("public key:  {}", public.display());
    Ok(())
}
