//! `u7s-bundle profiles`: which platforms and kubernetes versions exist.

use anyhow::Result;
use serde_json::json;

use super::{load_profiles, print_json};
use crate::cli::ProfilesArgs;

pub fn run(args: ProfilesArgs) -> Result<()> {
    let profiles = load_profiles(args.profiles_dir.as_deref())?;
    if args.json {
        let list: Vec<_> = profiles
            .platforms()
            .map(|p| {
                json!({
                    "name": p.name,
                    "aliases": p.aliases,
                    "legacy_prefixes": p.legacy_prefixes,
                    "description": p.description,
                    "kind": p.kind.to_string(),
                    "versions": p.versions().iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                    "default_version": p.default_version(),
                })
            })
            .collect();
        print_json(&json!({ "platforms": list }));
        return Ok(());
    }
    for p in profiles.platforms() {
        let aliases = if p.aliases.is_empty() {
            String::new()
        } else {
            format!(" (aliases: {})", p.aliases.join(", "))
        };
        println!("{}{aliases}", p.name);
        if !p.description.is_empty() {
            println!("  {}", p.description);
        }
        println!("  versions: {}", p.version_summary());
        if !p.default_version().is_empty() {
            println!("  default:  {}", p.default_version());
        }
    }
    Ok(())
}
