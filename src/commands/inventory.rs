//! `u7s-bundle inventory`: what the isolated registry holds, as the base of
//! the next delta (`build --base`).

use anyhow::{Context, Result};

use super::registry_client;
use crate::cli::InventoryArgs;
use u7s_bundle::{delta, fsutil};

pub fn run(args: InventoryArgs) -> Result<()> {
    let local = args.registry == "registry.local" || args.registry.starts_with("registry.local:");
    let plain_http = args.registry_opts.plain_http || local;
    let client = registry_client(&args.registry, plain_http, &args.registry_opts)?;
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let inv = delta::take_inventory(&client, created)
        .with_context(|| format!("listing {}", args.registry))?;
    let mut json = serde_json::to_vec_pretty(&inv)?;
    json.push(b'\n');
    match &args.output {
        Some(p) => fsutil::write_atomic(p, &json, 0o644)
            .with_context(|| format!("writing {}", p.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&json)?;
        }
    }
    Ok(())
}
