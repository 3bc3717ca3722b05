//! Progress reporting for long work: bars on a terminal, plain lines otherwise,
//! nothing with `--quiet`. Library code reports through this type only; the
//! command decides the mode.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Lines,
    Quiet,
}

pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise; `quiet` wins.
    pub fn auto(quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Progress::new(mode)
    }

    pub fn new(mode: Mode) -> Progress {
        let multi = match mode {
            Mode::Bars => MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            _ => MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        };
        Progress { mode, multi }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A one-off message (a line in every mode but quiet).
    pub fn message(&self, msg: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Bars => {
                let _ = self.multi.println(msg);
            }
            Mode::Lines => eprintln!("{msg}"),
        }
    }

    /// A task measured in bytes (`total` when known).
    pub fn bytes_task(&self, label: &str, total: Option<u64>) -> Task {
        let bar = match self.mode {
            Mode::Bars => {
                let b = self.multi.add(match total {
                    Some(t) => ProgressBar::new(t),
                    None => ProgressBar::no_length(),
                });
                let style = ProgressStyle::with_template(
                    "{spinner} {prefix:40!} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {wide_bar}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                b.set_style(style);
                b.set_prefix(label.to_string());
                b.enable_steady_tick(Duration::from_millis(200));
                Some(b)
            }
            _ => None,
        };
        if self.mode == Mode::Lines {
            eprintln!("{label} ...");
        }
        Task {
            bar,
            mode: self.mode,
            label: label.to_string(),
        }
    }
}

pub struct Task {
    bar: Option<ProgressBar>,
    mode: Mode,
    label: String,
}

impl Task {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn finish(self, msg: &str) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if self.mode != Mode::Quiet {
            eprintln!("{}: {msg}", self.label);
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
