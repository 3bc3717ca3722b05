//! u7s-bundle: parse the command line, run the command, map errors to exit codes.

mod cli;
mod commands;

use clap::Parser;

fn main() {
    // SIGPIPE stays ignored (Rust's default). When a registry dies in the
    // middle of an upload, the socket write fails with EPIPE and the kernel
    // sends SIGPIPE to the whole process, not just the writing thread: its
    // default action would end a load with no message at all. Instead, a
    // closed stdout (`u7s-bundle plan --json | head`) ends the process
    // quietly here, with the exit status of a SIGPIPE death, as Unix tools do.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(128 + libc::SIGPIPE);
        }
        default_hook(info)
    }));
    let cli = cli::Cli::try_parse().unwrap_or_else(|e| commands::usage_error(e));
    let json = cli.command.json();
    let code = commands::finish(commands::run(cli), json);
    std::process::exit(code);
}
