//! `u7s-bundle preflight`: can this host bring the rootless cluster up from the
//! registry? The selection and the checks are `commands::node`'s, shared with
//! `init` and `join`, which run them before calling the wrapper.

use anyhow::{bail, Result};

use super::node::{check, select};
use super::print_json;
use crate::cli::PreflightArgs;

pub fn run(args: PreflightArgs) -> Result<()> {
    let sel = select(&args.select)?;
    let report = check(&args.select, &sel);
    if args.json {
        print_json(&report.json(&sel));
    } else {
        report.print(&sel, &mut std::io::stdout().lock())?;
    }
    if !report.ok() {
        bail!(
            "preflight failed: {} of {} checks",
            report.failed(),
            report.checks.len()
        );
    }
    Ok(())
}
