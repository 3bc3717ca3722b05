//! Write access to every path `load` will write, checked before the archive is
//! read: a run without root used to verify and push everything, then fail on
//! the lock, then on the state file, then on the sigstore directory.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A path a command will write, and the option that names it.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    /// `--sigstore-dir`, …: what the user can change.
    pub option: &'static str,
    pub path: &'a Path,
    /// A file replaced atomically (written through its directory) rather than
    /// a directory written into.
    pub is_file: bool,
}

/// One path that can't be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    pub option: &'static str,
    pub path: PathBuf,
    /// The existing directory that refuses writing.
    pub at: PathBuf,
    pub why: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.0))]
pub struct NotWritable(pub Vec<Denied>);

fn describe(denied: &[Denied]) -> String {
    let mut s = String::from(
        "cannot write where load needs to (run it as root, or point these options elsewhere):",
    );
    for d in denied {
        s.push_str(&format!(
            "\n  {} {}: {} ({})",
            d.option,
            d.path.display(),
            d.why,
            d.at.display()
        ));
    }
    s
}

/// The directory whose write permission decides: for a file, its directory
/// (files are replaced by rename); for a directory, itself; then the nearest
/// ancestor that exists, since missing ones will be created in it.
fn deciding_dir(t: &Target<'_>) -> PathBuf {
    let mut p = if t.is_file {
        t.path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        t.path.to_path_buf()
    };
    if p.as_os_str().is_empty() {
        p = PathBuf::from(".");
    }
    while !p.exists() {
        match p.parent() {
            Some(up) if !up.as_os_str().is_empty() => p = up.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
    p
}

/// `access(2)` with W_OK|X_OK: the kernel's answer for this process
/// (permissions, read-only mounts), without creating anything. A deciding
/// path that is not a directory (a file where a directory must be created)
/// is refused first: root passes `access(2)` on most paths, but nothing can
/// be created under a file.
fn can_write(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err("not a directory".into());
    }
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: access(2) on a NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// Check every target; all refusals are reported together.
pub fn check(targets: &[Target<'_>]) -> Result<(), NotWritable> {
    let denied: Vec<Denied> = targets
        .iter()
        .filter_map(|t| {
            let at = deciding_dir(t);
            can_write(&at).err().map(|why| Denied {
                option: t.option,
                path: t.path.to_path_buf(),
                at,
                why,
            })
        })
        .collect();
    if denied.is_empty() {
        Ok(())
    } else {
        Err(NotWritable(denied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_paths_are_decided_by_their_nearest_existing_ancestor() {
        let d = tempfile::tempdir().unwrap();
        let t = Target {
            option: "--x",
            path: &d.path().join("a/b/c.json"),
            is_file: true,
        };
        assert_eq!(deciding_dir(&t), d.path());
        assert!(check(&[t]).is_ok());
        // A file where a directory must be: refused for root as for anyone.
        let file = d.path().join("file");
        std::fs::write(&file, "").unwrap();
        let lock = file.join("u7s/x.lock");
        let t = Target {
            option: "--lock-file",
            path: &lock,
            is_file: true,
        };
        let e = check(&[t]).unwrap_err().to_string();
        assert!(
            e.contains(&format!("--lock-file {}", lock.display()))
                && e.contains("not a directory")
                && e.contains("run it as root"),
            "{e}"
        );
    }
}
