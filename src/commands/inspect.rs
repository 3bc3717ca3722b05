//! `u7s-bundle inspect`: what a bundle says it holds. Reads only the first
//! entries (bundle.json and its signature); `verify` checks everything.

use std::io::{BufReader, Read};

use anyhow::{Context, Result};
use serde_json::json;

use super::{human_bytes, print_json};
use crate::cli::InspectArgs;
use u7s_bundle::bundle::model::{
    BundleManifest, MANIFEST_NAME, MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES, SIGNATURE_NAME,
};
use u7s_bundle::bundle::{compress, volumes};
use u7s_bundle::sign;

pub fn run(args: InspectArgs) -> Result<()> {
    // (A volume set is read without checking its signature: inspect is
    // informational, `verify` decides.)
    let f = volumes::Input::open(&args.archive, None, None)
        .with_context(|| format!("opening {}", args.archive.display()))?;
    let (codec, dec) = compress::decoder(BufReader::new(f))
        .with_context(|| format!("reading {}", args.archive.display()))?;
    let mut ar = tar::Archive::new(dec);
    let mut entries = ar.entries()?;
    let mut raw = None;
    let mut sig = None;
    for _ in 0..2 {
        let Some(e) = entries.next() else { break };
        let mut e = e?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let limit = if name == MANIFEST_NAME {
            MAX_MANIFEST_BYTES
        } else {
            MAX_SIGNATURE_BYTES
        };
        let mut buf = Vec::new();
        (&mut e).take(limit + 1).read_to_end(&mut buf)?;
        if name == MANIFEST_NAME && raw.is_none() {
            raw = Some(buf);
        } else if name == SIGNATURE_NAME && raw.is_some() {
            sig = Some(buf);
        } else {
            break;
        }
    }
    let raw = raw.with_context(|| {
        format!(
            "{} has no bundle.json first: not a u7s bundle (a legacy podsec archive?)",
            args.archive.display()
        )
    })?;
    let m = BundleManifest::parse(&raw)?;
    // The issuer as the signature names it: unverified, for information only.
    let signer = sig.as_deref().and_then(sign::detached::issuer_fingerprint);
    let total: u64 = m.blobs.iter().map(|b| b.size).sum();
    if args.json {
        print_json(&json!({
            "archive": args.archive,
            "compression": codec,
            "format_version": m.format_version,
            "platform": m.platform,
            "platform_aliases": m.platform_aliases,
            "legacy_prefixes": m.legacy_prefixes,
            "kube_version": m.kube_version,
            "arch": m.arch,
            "variant": m.variant,
            "profile": m.profile,
            "flannel_tag": m.flannel_tag,
            "flannel_cni_plugin_tag": m.flannel_cni_plugin_tag,
            "created": m.created,
            "expires": m.expires,
            "tool": m.tool,
            "signed": sig.is_some(),
            "signer": signer,
            "signature_verified": false,
            "uncompressed_size": total,
            "images": m.images.iter().map(|i| json!({
                "name": i.name,
                "digest": i.manifest,
                "size": i.size,
                "source": i.source,
                "source_digest": i.source_digest,
                "preserved": i.preserved,
            })).collect::<Vec<_>>(),
            "blobs": m.blobs.len(),
            "delta": m.delta.as_ref().map(|d| json!({
                "base": d.base,
                "base_digest": d.base_digest,
                "omitted": d.omitted.len(),
                "bytes_saved": d.omitted.iter().map(|o| o.size).sum::<u64>(),
            })),
        }));
        return Ok(());
    }
    println!("bundle:     {}", args.archive.display());
    println!(
        "platform:   {} (aliases: {})",
        m.platform,
        m.platform_aliases.join(", ")
    );
    if let Some(v) = &m.kube_version {
        println!("kubernetes: {v}");
    }
    println!(
        "arch:       {}{}",
        m.arch,
        m.variant
            .as_deref()
            .map(|v| format!("/{v}"))
            .unwrap_or_default()
    );
    println!("created:    {} by {}", m.created, m.tool);
    if let Some(e) = &m.expires {
        println!("expires:    {e} (load and verify refuse it after)");
    }
    match (&sig, &signer) {
        (Some(_), Some(f)) => {
            println!("signed:     yes, by {f} (not verified here: run `u7s-bundle verify`)")
        }
        (Some(_), None) => println!("signed:     yes (signer unreadable; run `u7s-bundle verify`)"),
        _ => println!("signed:     no"),
    }
    println!(
        "content:    {} images, {} blobs, {} uncompressed",
        m.images.len(),
        m.blobs.len(),
        human_bytes(total)
    );
    if let Some(d) = &m.delta {
        println!(
            "delta:      against {} ({}); {} layers left out, {} saved; \
             load needs them in the registry",
            d.base,
            d.base_digest,
            d.omitted.len(),
            human_bytes(d.omitted.iter().map(|o| o.size).sum())
        );
    }
    for i in &m.images {
        println!(
            "  {:<50} {}  {:>10}",
            i.name,
            &i.manifest.to_string()[..19],
            human_bytes(i.size)
        );
    }
    Ok(())
}
