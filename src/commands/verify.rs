//! `u7s-bundle verify`: the whole trust chain, offline: signature over
//! bundle.json by a trusted key, then every entry's name, size and digest, the
//! layout's consistency, nothing missing or extra.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::{print_json, trusted_keys, Exit};
use crate::cli::VerifyArgs;
use u7s_bundle::bundle::reader::{self, Entry};
use u7s_bundle::bundle::verify::{check_layout, check_signature};
use u7s_bundle::bundle::volumes;

pub fn run(args: VerifyArgs) -> Result<()> {
    let keyring = trusted_keys(&args.trust)?;
    let trust = volumes::Trust {
        keyring: &keyring,
        allow_unsigned: args.trust.allow_unsigned,
    };
    if let Some(index) = &args.volumes {
        return verify_volume(&args, index, &trust);
    }
    let mut input = volumes::Input::open(&args.archive, None, Some(&trust))
        .with_context(|| format!("opening {}", args.archive.display()))?;
    let volume_json = input.bundle_json_digest();
    let mut signer: Option<String> = None;
    let mut index: Option<Vec<u8>> = None;
    let mut blobs = 0usize;
    let header = reader::read_bundle(
        &mut input,
        |h| {
            volumes::check_bundle_json(volume_json.as_ref(), &h.raw_manifest)?;
            signer = check_signature(
                &h.raw_manifest,
                h.signature.as_deref(),
                &keyring,
                args.trust.allow_unsigned,
            )?;
            // Signed, so its `expires` can be believed; past it, refused.
            u7s_bundle::freshness::check_expiry(&h.manifest, time::OffsetDateTime::now_utc())
                .map_err(|e| Exit::Verification(e.to_string()))?;
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
        // A bad volume is the cause, not the corrupt stream it made.
        let e = match input.diagnose() {
            Some(v) => anyhow::Error::new(v),
            None => anyhow::Error::new(e),
        };
        e.context(format!("{} does not verify", args.archive.display()))
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

/// `verify VOLUME --volumes INDEX`: one volume, alone, against the signed
/// index; and which of the others are not here yet.
fn verify_volume(args: &VerifyArgs, index: &Path, trust: &volumes::Trust) -> Result<()> {
    let set = volumes::VolumeSet::open(index)?;
    let signer = set.check_signature(trust)?;
    let i = set.verify_one(&args.archive)?;
    let missing = set.missing(args.archive.parent());
    let (name, count) = (&set.index.volumes[i].name, set.count());
    if args.json {
        print_json(&json!({
            "volume": name,
            "number": i + 1,
            "count": count,
            "bundle": set.index.bundle,
            "verified": true,
            "signed": signer.is_some(),
            "signer": signer,
            "missing": missing,
        }));
    } else if !args.quiet {
        let by = match &signer {
            Some(f) => format!("index signed by {f}"),
            None => "index NOT signed (accepted with --allow-unsigned)".into(),
        };
        println!("OK: volume {} of {count} ({name}) — {by}", i + 1);
        if missing.is_empty() {
            println!("all {count} volumes are here");
        } else {
            println!("still missing: {}", missing.join(", "));
        }
    }
    Ok(())
}
