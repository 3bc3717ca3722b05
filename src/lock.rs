//! One load at a time per host: two loads interleaving their pushes, signatures
//! and policy.json merges could each undo the other's work. An advisory `flock`
//! on a lock file serializes them; the second waits and says for whom.
//!
//! The lock file is a target for other local users, so: it lives in a
//! directory owned by root (or by us) that nobody else may write to, so no
//! one can plant a file or link there; it is opened with `O_NOFOLLOW` and
//! must be a regular file of ours, so truncating it never reaches another
//! file; it is 0600, so no one else can open it to `flock` it. A holder that
//! is not a load (anything else that took the lock) is waited for only so
//! long, and then named.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a holder that is not a load is waited for by default.
pub const FOREIGN_HOLDER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("{dir}: {why}; the lock must be in a directory owned by root that only its owner may write to (give another one with --lock-file)")]
    UnsafeDir { dir: String, why: String },
    #[error(
        "{path} is not a regular file of ours (a link or another user's file): refused; remove it"
    )]
    UnsafeFile { path: String },
    #[error("{path} has been held for {secs} s by pid {pid} ({name}), which is not a load; stop it or remove the lock file")]
    ForeignHolder {
        path: String,
        secs: u64,
        pid: u32,
        name: String,
    },
}

/// Held while alive; the kernel releases the lock when the file closes, even
/// if the process is killed, so a crash never leaves a stale lock.
pub struct HostLock {
    _file: File,
}

impl HostLock {
    /// Take the lock at `path`, waiting if another process has it; `on_wait`
    /// is told that process's pid (as it recorded it) before waiting.
    pub fn acquire(path: &Path, on_wait: impl FnOnce(Option<u32>)) -> Result<HostLock, LockError> {
        Self::acquire_with(path, FOREIGN_HOLDER_TIMEOUT, on_wait)
    }

    /// [`HostLock::acquire`], waiting at most `foreign_timeout` for a holder
    /// that is not a u7s-bundle process (a load waits for another load for
    /// as long as it takes).
    pub fn acquire_with(
        path: &Path,
        foreign_timeout: Duration,
        on_wait: impl FnOnce(Option<u32>),
    ) -> Result<HostLock, LockError> {
        let mut file = open_safely(path)?;
        if !try_flock(&file, libc::LOCK_NB)? {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            on_wait(s.trim().parse().ok());
            wait(&file, path, foreign_timeout)?;
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(HostLock { _file: file })
    }
}

/// Check the directory, then open (or create, 0600) the file without
/// following a link, and check what was opened.
fn open_safely(path: &Path) -> Result<File, LockError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let unsafe_dir = |why: String| LockError::UnsafeDir {
        dir: dir.display().to_string(),
        why,
    };
    let m = std::fs::metadata(dir)?;
    if m.uid() != 0 && m.uid() != me {
        return Err(unsafe_dir(format!("owned by uid {}", m.uid())));
    }
    if m.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "writable by group or others (mode {:o})",
            m.mode() & 0o7777
        )));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => LockError::UnsafeFile {
                path: path.display().to_string(),
            },
            _ => LockError::Io(e),
        })?;
    let m = file.metadata()?;
    if !m.file_type().is_file() || (m.uid() != me && m.uid() != 0) || m.nlink() != 1 {
        return Err(LockError::UnsafeFile {
            path: path.display().to_string(),
        });
    }
    if m.mode() & 0o077 != 0 {
        // An older, world-readable lock: others could open it to flock it.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// `flock(LOCK_EX | extra)`: false when it would block (with `LOCK_NB`).
fn try_flock(file: &File, extra: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | extra) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// Wait for the lock: without limit while a load holds it, at most `limit`
/// while anything else does.
fn wait(file: &File, path: &Path, limit: Duration) -> Result<(), LockError> {
    let start = Instant::now();
    loop {
        if try_flock(file, libc::LOCK_NB)? {
            return Ok(());
        }
        if let Some((pid, name)) = holder(file) {
            if name != "u7s-bundle" && start.elapsed() >= limit {
                return Err(LockError::ForeignHolder {
                    path: path.display().to_string(),
                    secs: start.elapsed().as_secs(),
                    pid,
                    name,
                });
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Who holds the flock on `file`, from /proc/locks (the pid written in the
/// file is only what the holder chose to say), and its command name.
fn holder(file: &File) -> Option<(u32, String)> {
    let m = file.metadata().ok()?;
    let (major, minor) = (libc::major(m.dev()), libc::minor(m.dev()));
    let id = format!("{major:02x}:{minor:02x}:{}", m.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid: u32 = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5981511 0 EOF"; waiters have "->".
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&id.as_str()))
            .then(|| f.get(4)?.parse().ok())?
    })?;
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Some((pid, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn a_planted_link_is_neither_followed_nor_truncated() {
        let d = dir();
        let precious = d.path().join("shadow");
        std::fs::write(&precious, "precious").unwrap();
        let lock = d.path().join("u7s.lock");
        symlink(&precious, &lock).unwrap();
        let err = HostLock::acquire(&lock, |_| {}).err().expect("refused");
        assert!(matches!(err, LockError::UnsafeFile { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious");
    }

    #[test]
    fn created_0600_and_refused_in_a_directory_others_may_write() {
        let d = dir();
        let lock = d.path().join("u7s.lock");
        drop(HostLock::acquire(&lock, |_| {}).unwrap());
        let mode = std::fs::metadata(&lock).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = HostLock::acquire(&open.join("u7s.lock"), |_| {})
            .err()
            .expect("refused");
        assert!(matches!(err, LockError::UnsafeDir { .. }), "{err}");
    }

    #[test]
    fn a_holder_that_is_not_a_load_is_named_after_the_timeout() {
        let d = dir();
        let lock = d.path().join("u7s.lock");
        std::fs::write(&lock, "").unwrap();
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ready = d.path().join("ready");
        let mut holder = std::process::Command::new("flock")
            .arg(&lock)
            .arg("-c")
            .arg(format!("touch '{}'; exec sleep 5", ready.display()))
            .spawn()
            .expect("flock(1) from util-linux");
        while !ready.exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = HostLock::acquire_with(&lock, Duration::from_millis(300), |_| {});
        let _ = holder.kill();
        let _ = holder.wait();
        let err = r.err().expect("timed out");
        let LockError::ForeignHolder { name, .. } = &err else {
            panic!("{err}")
        };
        // flock(1) holds it while its child runs; either may be named.
        assert!(name == "flock" || name == "sleep", "{err}");
    }
}
