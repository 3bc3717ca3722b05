//! `u7s-bundle completions bash|zsh|fish`: the shell completion script,
//! generated from the same clap definitions as `--help` and the manual pages,
//! so that it completes exactly the commands and options this binary has.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell, CompletionsArgs};

pub fn run(args: CompletionsArgs) -> Result<()> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(
        clap_complete::Shell::from(args.shell),
        &mut cmd,
        name.clone(),
        &mut script,
    );
    if args.shell == CompletionShell::Bash {
        script = fix_bash_case_labels(&script, &name);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("writing the completion script")
}

/// clap_complete's bash script names a subcommand's state `u7s__bundle__subcmd__load`
/// but labels its `case` branch `u7s__subcmd__bundle__subcmd__load` (it turns
/// the program name's `-` into the subcommand separator there), so no option
/// of any subcommand would ever complete. Relabel those branches with the
/// state's spelling.
fn fix_bash_case_labels(script: &[u8], name: &str) -> Vec<u8> {
    let wrong = format!("{}__subcmd__", name.replace('-', "__subcmd__"));
    let right = format!("{}__subcmd__", name.replace('-', "__"));
    String::from_utf8_lossy(script)
        .replace(&wrong, &right)
        .into_bytes()
}
