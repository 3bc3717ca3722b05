//! `u7s-bundle inspect`: what a bundle says it holds. Reads only the first
//! entries (bundle.json and its signature); `verify` checks everything.

use anyhow::Result;
use serde_json::json;

use super::{human_bytes, print_json};
use crate::cli::InspectArgs;
use u7s_bundle::bundle::compress::Codec;
use u7s_bundle::bundle::BundleManifest;
use u7s_bundle::sign;

pub fn run(args: InspectArgs) -> Result<()> {
    let h = super::read_header(&args.archive)?;
    let (m, sig, codec) = (h.manifest, h.signature, h.codec);
    // The issuer as the signature names it: unverified, for information only.
    let signer = sig.as_deref().and_then(sign::detached::issuer_fingerprint);
    if args.json {
        print_inspect_json(&args, &m, codec, sig.is_some(), signer);
        return Ok(());
    }
    print_text(&args, &m, sig.is_some(), signer);
    Ok(())
}

fn print_inspect_json(
    args: &InspectArgs,
    m: &BundleManifest,
    codec: Codec,
    signed: bool,
    signer: Option<String>,
) {
    let total: u64 = m.blobs.iter().map(|b| b.size).sum();
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
        "kubeadm_versions": m.kubeadm_versions,
        "created": m.created,
        "expires": m.expires,
        "tool": m.tool,
        "signed": signed,
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
}

fn print_text(args: &InspectArgs, m: &BundleManifest, signed: bool, signer: Option<String>) {
    let total: u64 = m.blobs.iter().map(|b| b.size).sum();
    println!("bundle:     {}", args.archive.display());
    println!(
        "platform:   {} (aliases: {})",
        m.platform,
        m.platform_aliases.join(", ")
    );
    if let Some(v) = &m.kube_version {
        println!("kubernetes: {v}");
    }
    if !m.kubeadm_versions.is_empty() {
        println!(
            "kubeadm:    {} (pause/etcd/coredns of that kubeadm package)",
            m.kubeadm_versions.join(", ")
        );
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
    match (signed, &signer) {
        (true, Some(f)) => {
            println!("signed:     yes, by {f} (not verified here: run `u7s-bundle verify`)")
        }
        (true, None) => println!("signed:     yes (signer unreadable; run `u7s-bundle verify`)"),
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
}
