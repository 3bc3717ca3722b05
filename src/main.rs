//! u7s-bundle: parse the command line, run the command, map errors to exit codes.

mod cli;
mod commands;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let code = match commands::run(cli) {
        Ok(()) => 0,
        Err(err) => {
            let code = commands::exit_code(&err);
            eprintln!("u7s-bundle: error: {err:#}");
            code
        }
    };
    std::process::exit(code);
}
