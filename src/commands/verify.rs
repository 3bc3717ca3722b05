//! `u7s-bundle verify`: the whole trust chain, offline: signature over
//! bundle.json by a trusted key, then every entry's name, size and digest, the
//! layout's consistency, nothing missing or extra.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::{print_json, trust_sources, trusted_keys, Exit};
use crate::cli::VerifyArgs;
use u7s_bundle::bundle::verify::{self as bundle_verify, check_layout};
use u7s_bundle::bundle::volumes;

pub fn run(args: VerifyArgs) -> Result<()> {
    let keyring = trusted_keys(&args.trust)?;
    let sources = trust_sources(&args.trust);
    let trust = volumes::Trust {
        keyring: &keyring,
        sources: &sources,
        allow_unsigned: args.trust.allow_unsigned,
    };
    if let Some(index) = &args.volumes {
        return verify_volume(&args, index, &trust);
    }
    let mut input = volumes::Input::open(&args.archive, None, Some(&trust))
        .with_context(|| format!("opening {}", args.archive.display()))?;
    let volume_json = input.bundle_json_digest();
    let (header, verified) = bundle_verify::verify_bundle(&mut input, &trust, volume_json)
        .map_err(|e| {
            // A bad volume is the cause, not the corrupt stream it made.
            let e = match input.diagnose() {
                Some(v) => anyhow::Error::new(v),
                None => anyhow::Error::new(e),
            };
            e.context(format!("{} does not verify", args.archive.display()))
        })?;
    let (signer, blobs) = (verified.signer, verified.blobs);
    let index = verified.index_json.context("index.json missing")?;
    check_layout(&header.manifest, &index)
        .map_err(|why| Exit::Verification(format!("{}: {why}", args.archive.display())))?;

    let m = &header.manifest;
    // Docker manifests kept byte for byte are pushed by us but are not in the
    // OCI layout: `skopeo copy oci:…` and umoci don't see them.
    let outside_layout: Vec<&str> = m
        .images
        .iter()
        .filter(|i| !i.in_layout())
        .map(|i| i.name.as_str())
        .collect();
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
            "outside_layout": outside_layout,
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
        if !outside_layout.is_empty() {
            println!(
                "readable only by u7s-bundle (Docker format, kept out of the OCI layout): {}",
                outside_layout.join(", ")
            );
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
