//! What a failure means to whoever ran the command, said by the error itself
//! where its cause is known, so the binary turns it into an exit code with one
//! `match` (just's `Error::code`, uv's `UvError::user`).

/// The class of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Anything that means "this bundle (or image, or volume) is not to be
    /// trusted": exit code 3.
    Untrusted,
    /// Ctrl-C or SIGTERM, with the shell's code for the signal (130/143).
    Interrupted(i32),
    /// Everything else: trouble with the host, the registry, our own keys or
    /// the command line (exit code 1).
    Failed,
}
