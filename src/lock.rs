//! One load at a time per host: two loads interleaving their pushes, signatures
//! and policy.json merges could each undo the other's work. An advisory `flock`
//! on a lock file serializes them; the second waits and says for whom.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Held while alive; the kernel releases the lock when the file closes, even
/// if the process is killed, so a crash never leaves a stale lock.
pub struct HostLock {
    _file: File,
}

impl HostLock {
    /// Take the lock at `path`, waiting if another process has it; `on_wait`
    /// is told that process's pid (as it recorded it) before waiting.
    pub fn acquire(path: &Path, on_wait: impl FnOnce(Option<u32>)) -> io::Result<HostLock> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err);
            }
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            on_wait(s.trim().parse().ok());
            loop {
                // SAFETY: as above; blocking wait, retried on EINTR.
                if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                    break;
                }
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(HostLock { _file: file })
    }
}
