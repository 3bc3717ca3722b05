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

/// `err` and its causes joined by `: `, leaving out a cause whose text the
/// message already ends with (errors that print their source, like
/// `"{path}: {source}"`, would otherwise say it twice). reqwest's "error
/// sending request" alone hides the cause that helps ("failed to lookup
/// address information"), so library code that turns an error into text
/// uses this too.
pub fn message_with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = String::new();
    let mut cause = Some(err);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.ends_with(&text) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}
