//! `u7s-bundle services`: the registry host's docker-registry, nginx
//! (sigstore.local) and /etc/hosts, then systemctl.

use anyhow::{Context, Result};
use serde_json::json;

use crate::cli::ServicesArgs;
use u7s_bundle::edits::{self, rooted};
use u7s_bundle::fsutil;
use u7s_bundle::services::{self, Services};

pub fn run(args: ServicesArgs) -> Result<()> {
    let s = Services {
        address: args.address,
        registry_port: args.registry_port,
        sigstore_port: args.sigstore_port,
        sigstore_dir: args.sigstore_dir.clone(),
        registry_storage: args.registry_storage.clone(),
        registry_bin: args.registry_bin.clone(),
    };
    let hosts_path = rooted(&args.root, services::HOSTS.as_ref());
    let hosts_now = edits::read_optional(&hosts_path)
        .with_context(|| format!("reading {}", hosts_path.display()))?
        .unwrap_or_default();
    let plan = services::plan(&s, &String::from_utf8_lossy(&hosts_now))?;

    if args.dry_run {
        let mut shown = Vec::new();
        for e in &plan {
            let path = rooted(&args.root, &e.path);
            if let Some(c) = edits::pending(&args.root, e)
                .with_context(|| format!("reading {}", path.display()))?
            {
                let old = edits::read_optional(&path)?.unwrap_or_default();
                shown.push((c, edits::line_diff(&old, &e.content)));
            }
        }
        if args.json {
            let files: Vec<_> = shown
                .iter()
                .map(|(c, d)| json!({"change": c.to_string(), "diff": d}))
                .collect();
            super::print_json(&json!({"dry_run": true, "files": files}));
        } else if shown.is_empty() {
            println!("nothing would change");
        } else {
            for (c, diff) in shown {
                println!("would be {c}");
                for l in diff {
                    println!("    {l}");
                }
            }
        }
        return Ok(());
    }

    for dir in services::directories(&s) {
        let dir = rooted(&args.root, &dir);
        fsutil::create_dir_all_mode(&dir, 0o755)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let changes = edits::apply(&args.root, &plan)
        .map_err(|(path, e)| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    let calls = services::systemctl_calls(!changes.is_empty());
    if !args.no_start {
        services::run_systemctl(&args.systemctl, &calls)?;
    }
    if args.json {
        let files: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        super::print_json(&json!({
            "files": files,
            "started": !args.no_start,
            "units": services::UNITS,
        }));
        return Ok(());
    }
    if changes.is_empty() {
        println!("services: configuration already in place");
    }
    for c in &changes {
        println!("{c}");
    }
    if args.no_start {
        println!("not started (--no-start); to start:");
        for call in &calls {
            println!("  systemctl {}", call.join(" "));
        }
    } else {
        println!("started: {}", services::UNITS.join(", "));
    }
    Ok(())
}
