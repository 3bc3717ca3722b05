//! Planned file writes: a command computes every file it would write first,
//! then applies them. So a refusal found while planning (a key that doesn't
//! match, a policy we can't merge) changes nothing, and `--dry-run` / `--check`
//! compare the plan with the disk without writing.
//!
//! Each write goes through [`fsutil::write_atomic_with_backup`]: atomic, with
//! a dated backup of what it replaces, and a no-op when the content is there.

use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil;
use crate::trust::{Change, ChangeKind};

/// One file to write: where (as the host sees it), what, with which mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    pub path: PathBuf,
    pub content: Vec<u8>,
    pub mode: u32,
    /// One line for the summary ("docker-registry configuration").
    pub what: String,
}

/// `path` under `root` (`/` leaves it as it is): `--root DIR` writes a host's
/// files into a directory tree, for tests and for preparing an image.
pub fn rooted(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(rel) => root.join(rel),
        Err(_) => root.join(path),
    }
}

/// The current content of `path`, `None` when it doesn't exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What applying `edit` under `root` would change: `None` when the file
/// already holds the content.
pub fn pending(root: &Path, edit: &Edit) -> io::Result<Option<Change>> {
    let path = rooted(root, &edit.path);
    let old = read_optional(&path)?;
    if old.as_deref() == Some(edit.content.as_slice()) {
        return Ok(None);
    }
    let kind = if old.is_some() {
        ChangeKind::Updated
    } else {
        ChangeKind::Created
    };
    Ok(Some(Change::new(kind, Some(path), edit.what.clone())))
}

/// Write every edit under `root` (parents created 0755); returns what changed.
/// Stops at the first failure, naming the file.
pub fn apply(root: &Path, edits: &[Edit]) -> Result<Vec<Change>, (PathBuf, io::Error)> {
    let mut changes = Vec::new();
    for edit in edits {
        let path = rooted(root, &edit.path);
        let Some(mut change) = pending(root, edit).map_err(|e| (path.clone(), e))? else {
            continue;
        };
        if let Some(parent) = path.parent() {
            fsutil::create_dir_all_mode(parent, 0o755).map_err(|e| (path.clone(), e))?;
        }
        change.backup = fsutil::write_atomic_with_backup(&path, &edit.content, edit.mode)
            .map_err(|e| (path.clone(), e))?;
        changes.push(change);
    }
    Ok(changes)
}

/// The lines `new` removes from and adds to `old` (`-`/`+` prefixed), for
/// `--dry-run`: a line-set difference, enough for short configuration files.
pub fn line_diff(old: &[u8], new: &[u8]) -> Vec<String> {
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    let (o, n): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut out: Vec<String> = o
        .iter()
        .filter(|l| !n.contains(l))
        .map(|l| format!("-{l}"))
        .collect();
    out.extend(n.iter().filter(|l| !o.contains(l)).map(|l| format!("+{l}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_is_idempotent_and_keeps_a_backup() {
        let t = tempfile::tempdir().unwrap();
        let mut e = Edit {
            path: "/etc/x/a.conf".into(),
            content: b"one\n".to_vec(),
            mode: 0o644,
            what: "a".into(),
        };
        let c = apply(t.path(), std::slice::from_ref(&e)).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].kind, ChangeKind::Created);
        assert!(apply(t.path(), std::slice::from_ref(&e))
            .unwrap()
            .is_empty());
        e.content = b"two\n".to_vec();
        let c = apply(t.path(), std::slice::from_ref(&e)).unwrap();
        assert_eq!(c[0].kind, ChangeKind::Updated);
        let backup = c[0].backup.clone().unwrap();
        assert_eq!(std::fs::read(backup).unwrap(), b"one\n");
        assert_eq!(
            std::fs::read(t.path().join("etc/x/a.conf")).unwrap(),
            b"two\n"
        );
        assert_eq!(line_diff(b"one\nsame\n", b"same\ntwo\n"), ["-one", "+two"]);
    }
}
