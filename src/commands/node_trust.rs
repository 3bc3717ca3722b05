//! `u7s-bundle node-trust`: make a node trust the cluster's registry, with the
//! keys served by sigstore.local checked against the fingerprints given.

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::cli::NodeTrustArgs;
use u7s_bundle::policy_eval::HttpFetch;
use u7s_bundle::trust::node::{self, NodePaths, Setup};

pub fn run(args: NodeTrustArgs) -> Result<()> {
    let paths = NodePaths {
        policy: args.policy.clone(),
        registries_d: args.registries_d.clone(),
        registries_conf_d: args.registries_conf_d.clone(),
        keys_dir: args.keys_dir.clone(),
        hosts_file: args.hosts_file.clone(),
    };
    let setup = Setup {
        sigstore_url: &args.sigstore_url,
        fingerprints: &args.fingerprints,
        registry: &args.registry,
        address: args.address,
        paths: &paths,
    };
    let http = match args.address {
        Some(addr) => HttpFetch::resolving(&args.sigstore_url, addr),
        None => HttpFetch::new(),
    }
    .context("starting the HTTP client")?;
    let out = node::setup(&http, &setup, args.check)?;
    let changes: Vec<String> = out.changes.iter().map(|c| c.to_string()).collect();
    if args.json {
        let trusted: Vec<_> = out
            .trusted
            .iter()
            .map(|k| json!({"name": k.name, "fingerprint": k.fingerprint}))
            .collect();
        super::print_json(&json!({
            "check": args.check,
            "ok": !args.check || changes.is_empty(),
            "trusted_keys": trusted,
            "files": changes,
            "lookaside": out.lookaside,
        }));
    } else {
        for k in &out.trusted {
            println!(
                "{} {}.pgp {} for {}",
                if args.check { "served" } else { "trusted" },
                k.name,
                k.fingerprint.as_deref().unwrap_or_default(),
                args.registry
            );
        }
        for c in &changes {
            println!("{}{c}", if args.check { "would be " } else { "" });
        }
        if changes.is_empty() {
            println!(
                "trust files already in place (signatures from {})",
                out.lookaside
            );
        }
    }
    if args.check && !changes.is_empty() {
        bail!(
            "this node does not trust {} yet: run the same command without --check",
            args.registry
        );
    }
    Ok(())
}
