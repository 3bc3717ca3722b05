//! `u7s-bundle verify`: the whole trust chain, offline: signature over
//! bundle.json by a trusted key, then every entry's name, size and digest, the
//! layout's consistency, nothing missing or extra.

use std::fs::File;

use anyhow::{Context, Result};
use serde_json::json;

use super::{print_json, trusted_keys, Exit};
use crate::cli::VerifyArgs;
use u7s_bundle::bundle::reader::{self, Entry};
use u7s_bundle::bundle::verify::{check_layout, check_signature};

pub fn run(args: VerifyArgs) -> Result<()> {
    let keyring = trusted_keys(&args.trust)?;
    let f =
        File::open(&args.archive).with_context(|| format!("opening {}", args.archive.display()))?;
    let mut signer: Option<String> = None;
    let mut index: Option<Vec<u8>> = None;
    let mut blobs = 0usize;
    let header = reader::read_bundle(
        f,
        |h| {
            signer = check_signature(
                &h.raw_manifest,
                h.signature.as_deref(),
                &keyring,
                args.trust.allow_unsigned,
            )?;
            Ok(())
        },
        |_, entry| {
            match entry {
                Entry::LayoutFile {
                    path: "index.json",
                    data,
                } => index = Some(data),
                Entry::LayoutFile { .. } => {}
                Entry::Blob { blob, reader } => {
                    // A read error here is the archive's (cut short, corrupt):
                    // a verification failure, not an operational one.
                    std::io::copy(reader, &mut std::io::sink()).map_err(|e| {
                        Exit::Verification(format!("reading blob {}: {e}", blob.digest))
                    })?;
                    blobs += 1;
                }
            }
            Ok(())
        },
    )
    .map_err(|e| {
        anyhow::Error::new(e).context(format!("{} does not verify", args.archive.display()))
    })?;
    let index = index.context("index.json missing")?;
    check_layout(&header.manifest, &index)
        .map_err(|why| Exit::Verification(format!("{}: {why}", args.archive.display())))?;

    let m = &header.manifest;
    if args.json {
        print_json(&json!({
            "archive": args.archive,
            "verified": true,
            "signed": signer.is_some(),
            "signer": signer,
            "platform": m.platform,
            "kube_version": m.kube_version,
            "arch": m.arch,
            "images": m.images.len(),
            "blobs": blobs,
        }));
    } else if !args.quiet {
        match &signer {
            Some(f) => println!("OK: {} — signed by {f}; {} images, {blobs} blobs verified", args.archive.display(), m.images.len()),
            None => println!(
                "OK (UNSIGNED, accepted with --allow-unsigned): {} — {} images, {blobs} blobs verified",
                args.archive.display(),
                m.images.len()
            ),
        }
    }
    Ok(())
}
