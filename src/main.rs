//! u7s-bundle: parse the command line, run the command, map errors to exit codes.

mod cli;
mod commands;

use clap::Parser;

fn main() {
    // Die quietly on a closed pipe (`u7s-bundle plan --json | head`), as Unix
    // tools do, instead of panicking on the failed write.
    // SAFETY: resetting a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
