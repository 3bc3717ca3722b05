//! `u7s-bundle node-trust`: make a node trust the cluster's registry, with the
//! keys served by sigstore.local checked against the fingerprints given.

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::cli::NodeTrustArgs;
use u7s_bundle::edits;
use u7s_bundle::policy_eval::HttpFetch;
use u7s_bundle::trust::node::{self, NodePaths};
use u7s_bundle::trust::registries_d;

/// registries.d's staging URL must be a local directory; a node signs nothing,
/// so this is only there because the writer needs one (podsec's path).
const STAGING_URL: &str = "file:///var/sigstore/sigstore/";

pub fn run(args: NodeTrustArgs) -> Result<()> {
    let paths = NodePaths {
        policy: args.policy.clone(),
        registries_d: args.registries_d.clone(),
        registries_conf_d: args.registries_conf_d.clone(),
        keys_dir: args.keys_dir.clone(),
        hosts_file: args.hosts_file.clone(),
    };
    let http = HttpFetch::new().context("starting the HTTP client")?;
    let served = node::fetch_keys(&http, &args.sigstore_url)?;
    let selected = node::select(&served, &args.fingerprints, &args.sigstore_url)?;
    let plan = node::plan(&paths, &args.registry, &selected, args.address)?;
    let lookaside = node::lookaside_url(&args.sigstore_url);

    if args.check {
        let mut problems = Vec::new();
        for e in &plan {
            if let Some(c) = edits::pending("/".as_ref(), e)? {
                problems.push(format!("would be {c}"));
            }
        }
        if !node::lookaside_configured(&args.registries_d, &args.registry, &lookaside)? {
            problems.push(format!(
                "{} does not read signatures for {} from {lookaside}",
                args.registries_d.display(),
                args.registry
            ));
        }
        return report_check(&args, &problems);
    }

    let mut changes = edits::apply("/".as_ref(), &plan)
        .map_err(|(path, e)| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    changes.extend(
        registries_d::configure(&args.registries_d, &args.registry, &lookaside, STAGING_URL)
            .with_context(|| format!("configuring {}", args.registries_d.display()))?,
    );
    let trusted: Vec<_> = selected
        .iter()
        .map(|k| json!({"name": k.name, "fingerprint": k.fingerprint}))
        .collect();
    if args.json {
        let files: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        super::print_json(
            &json!({"trusted_keys": trusted, "files": files, "lookaside": lookaside}),
        );
        return Ok(());
    }
    for k in &selected {
        println!(
            "trusted {}.pgp {} for {}",
            k.name,
            k.fingerprint.as_deref().unwrap_or_default(),
            args.registry
        );
    }
    if changes.is_empty() {
        println!("trust files already in place");
    }
    for c in &changes {
        println!("{c}");
    }
    Ok(())
}

fn report_check(args: &NodeTrustArgs, problems: &[String]) -> Result<()> {
    if args.json {
        super::print_json(&json!({"ok": problems.is_empty(), "problems": problems}));
    } else {
        for p in problems {
            println!("{p}");
        }
    }
    if !problems.is_empty() {
        bail!(
            "this node does not trust {} yet: run the same command without --check",
            args.registry
        );
    }
    if !args.json {
        println!(
            "this node trusts {} (signatures from {})",
            args.registry,
            node::lookaside_url(&args.sigstore_url)
        );
    }
    Ok(())
}
