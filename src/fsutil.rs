//! Crash-safe file writing for the trust files, lookaside signatures and archives.
//!
//! Everything u7s-bundle writes on an isolated host is either a trust root
//! (`policy.json`, `registries.d/*.yaml`, public keys) or something a running
//! cluster reads concurrently (lookaside signatures). A half-written
//! `policy.json` makes CRI-O refuse *every* image, so files are never written in
//! place: data goes to a temporary file in the same directory (same filesystem,
//! so `rename(2)` is atomic), is fsynced, renamed over the target, and the
//! directory is fsynced so the rename itself survives a power loss. Readers see
//! either the old or the new content, never a prefix; when the disk fills up the
//! old file stays untouched.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of files created by [`PendingFile::create`].
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// How many times a temporary/backup name is retried when it already exists.
const NAME_ATTEMPTS: u32 = 1000;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The directory holding `path` (`.` for a bare file name), where its
/// temporary file must live for the final `rename` to be atomic.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A hidden, unique sibling name: `.<name>.tmp-<pid>-<counter>-<nanos>`.
/// Hidden (leading dot) so that directory scanners that only look at `*.yaml`
/// or `signature-N` never pick a half-written file up.
fn temp_sibling(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}-{}-{}", std::process::id(), n, nanos));
    Ok(parent_dir(path).join(tmp))
}

/// Create a fresh file with exactly `mode` (umask not applied: the mode is
/// set with `fchmod` after `open`, so a restrictive umask can't make a trust
/// file unreadable for CRI-O). `O_EXCL` so we never open someone else's file.
fn create_new_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    if let Err(e) = f.set_permissions(fs::Permissions::from_mode(mode)) {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(f)
}

/// Create a uniquely named temporary sibling of `path`.
fn create_temp_sibling(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    for _ in 0..NAME_ATTEMPTS {
        let tmp = temp_sibling(path)?;
        match create_new_with_mode(&tmp, mode) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{}: no free temporary name", path.display()),
    ))
}

/// fsync a directory so that a rename/create inside it is durable.
/// Filesystems that can't fsync directories (EINVAL) are tolerated.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    match d.sync_all() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r,
    }
}

/// Atomically replace `path` with `data`, the new file having exactly `mode`.
///
/// A temporary file is created next to `path` (`O_EXCL`), written, fsynced and
/// renamed over `path`; then the directory is fsynced. On any error the
/// temporary file is removed and `path` is left as it was — a full disk never
/// leaves a truncated target.
///
/// If `path` is a symlink, the symlink itself is replaced by a regular file
/// (`rename(2)` does not follow links); its former target is not modified.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    check_dir(parent_dir(path))?;
    let tmp = stage(path, data, mode)?;
    commit(&tmp, path)
}

/// Write `data` to a durable temporary sibling of `path`; removed on error.
fn stage(path: &Path, data: &[u8], mode: u32) -> io::Result<PathBuf> {
    let (tmp, mut f) = create_temp_sibling(path, mode)?;
    let result = f.write_all(data).and_then(|()| f.sync_all());
    drop(f);
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Rename a staged temporary file over `path` and make the rename durable.
/// On failure the temporary file is removed.
fn commit(tmp: &Path, path: &Path) -> io::Result<()> {
    if let Err(e) = fs::rename(tmp, path) {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    sync_dir(parent_dir(path))
}

/// Atomically create `path` with `data`, failing with
/// [`io::ErrorKind::AlreadyExists`] if it exists (it is never overwritten).
///
/// The data is staged in a temporary file and hard-linked into place, so
/// readers never see a partial file and two concurrent writers can't both win
/// the same name — what numbered files such as lookaside `signature-N` need.
pub fn write_atomic_new(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    check_dir(parent_dir(path))?;
    let tmp = stage(path, data, mode)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked?;
    sync_dir(parent_dir(path))
}

/// UTC timestamp for backup names, `YYYYmmddTHHMMSSZ`.
fn backup_timestamp() -> String {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "00000000T000000Z".to_string())
}

/// Write a complete copy of `data` to a new backup file next to `path`:
/// `path.bak-<timestamp>`, or `path.bak-<timestamp>.<n>` when that exists
/// (two runs within one second). The backup is itself written through a
/// temporary file and hard-linked into place, so it is complete or absent and
/// an existing backup is never overwritten.
fn write_backup(path: &Path, data: &[u8], mode: u32) -> io::Result<PathBuf> {
    check_dir(parent_dir(path))?;
    let stamp = backup_timestamp();
    let tmp = stage(path, data, mode)?;
    let result = (|| {
        let mut base = path.as_os_str().to_owned();
        base.push(format!(".bak-{stamp}"));
        for n in 0..NAME_ATTEMPTS {
            let mut candidate = base.clone();
            if n > 0 {
                candidate.push(format!(".{n}"));
            }
            let candidate = PathBuf::from(candidate);
            match fs::hard_link(&tmp, &candidate) {
                Ok(()) => return Ok(candidate),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{}: no free backup name", path.display()),
        ))
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Like [`write_atomic`], but keeps what was there.
///
/// - `path` absent: written, `Ok(None)`.
/// - `path` present with identical content: nothing is touched, `Ok(None)` —
///   re-runs are idempotent and don't pile up backups.
/// - `path` present with other content: a copy of the old content is saved as
///   `path.bak-<UTC YYYYmmddTHHMMSSZ>` (a `.N` counter is appended if that name
///   is taken) with the old file's mode, then `path` is replaced;
///   returns `Ok(Some(backup))`.
///
/// Symlinks: podsec keeps the live `policy.json` as a symlink to a dated file.
/// When the content differs, the *symlink itself* is replaced by a regular
/// file; we never write through it, so the dated file it pointed to stays as
/// podsec left it (the backup holds a copy of the content read through the
/// link). A symlink whose target already has the wanted content is left alone;
/// a dangling symlink is replaced without a backup.
pub fn write_atomic_with_backup(
    path: &Path,
    data: &[u8],
    mode: u32,
) -> io::Result<Option<PathBuf>> {
    write_atomic_with_backup_in(path, data, mode, None)
}

/// [`write_atomic_with_backup`], with the backup in `backup_dir` (created
/// 0700) instead of beside `path`: for directories that are served to
/// others (the keys under /var/sigstore), where an old file must not be
/// published under a new name.
///
/// A `path` that is a link is resolved on purpose: its target must be a
/// regular file at least as open as `mode`, or the write is refused — the
/// content read through the link goes into the new file and the backup, and
/// a link to a 0600 secret must not turn it into a 0644 trust file.
pub fn write_atomic_with_backup_in(
    path: &Path,
    data: &[u8],
    mode: u32,
    backup_dir: Option<&Path>,
) -> io::Result<Option<PathBuf>> {
    check_dir(parent_dir(path))?;
    let Some((old, old_mode)) = read_existing(path, mode)? else {
        write_atomic(path, data, mode)?;
        return Ok(None);
    };
    if old == data {
        return Ok(None);
    }
    // New content first: if it can't be written (disk full), nothing changes,
    // not even a stray backup.
    let tmp = stage(path, data, mode)?;
    let named = match (backup_dir, path.file_name()) {
        (Some(dir), Some(name)) => {
            create_dir_all_mode(dir, 0o700)?;
            dir.join(name)
        }
        _ => path.to_path_buf(),
    };
    let backup = match write_backup(&named, &old, old_mode) {
        Ok(b) => b,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_file(&backup);
        return Err(e);
    }
    sync_dir(parent_dir(path))?;
    Ok(Some(backup))
}

/// The content and mode of the file at `path` (through a link, when the link
/// is safe to follow for a file of `mode`); `None` when there is none (or the
/// link dangles).
fn read_existing(path: &Path, mode: u32) -> io::Result<Option<(Vec<u8>, u32)>> {
    let lm = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let m = if lm.file_type().is_symlink() {
        match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    } else {
        lm.clone()
    };
    let refuse = |why: String| io::Error::new(io::ErrorKind::PermissionDenied, why);
    if !m.file_type().is_file() {
        return Err(refuse(format!(
            "{} is not a regular file: refused",
            path.display()
        )));
    }
    let old_mode = m.permissions().mode() & 0o7777;
    if lm.file_type().is_symlink() && mode & 0o777 & !old_mode != 0 {
        return Err(refuse(format!(
            "{} is a link to a file of mode {old_mode:o}, narrower than the {mode:o} it would become: refused (replace the link with the file itself)",
            path.display()
        )));
    }
    Ok(Some((fs::read(path)?, old_mode)))
}

/// A directory we write trust files into must be ours or root's, and others
/// may not write to it: otherwise any user could plant links or files between
/// our checks and our writes. Group write is the owner's choice and is kept:
/// podsec makes `/var/sigstore/sigstore` root:podman_dev 0775 so that the
/// imagemaker can sign into it. (Links to such a directory are followed: only
/// its owner could have made them.)
pub fn check_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(dir)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let why = if !m.is_dir() {
        "is not a directory"
    } else if m.uid() != 0 && m.uid() != me {
        "belongs to another user"
    } else if m.mode() & 0o002 != 0 {
        "is writable by others"
    } else {
        return Ok(());
    };
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{} {why} (mode {:o}): refused; make it owned by root and not writable by others",
            dir.display(),
            m.mode() & 0o7777
        ),
    ))
}

/// Create `path` and any missing parents; every directory *created here* gets
/// exactly `mode` (umask not applied). Existing directories are not touched.
pub fn create_dir_all_mode(path: &Path, mode: u32) -> io::Result<()> {
    if path.as_os_str().is_empty() || path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dir_all_mode(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(mode)),
        // Raced with another creator: fine if it is a directory now.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// A file being written under a temporary name next to its final path, e.g.
/// an archive that must not appear under its real name until complete.
///
/// Dropped without [`persist`](PendingFile::persist) (error, panic, Ctrl-C
/// unwinding), the temporary file is removed, so failed runs leave no
/// half-written archives or temp litter behind.
#[derive(Debug)]
pub struct PendingFile {
    temp: PathBuf,
    final_path: PathBuf,
    /// A duplicate of the handle given to the caller, used to fsync at persist.
    handle: File,
    done: bool,
}

impl PendingFile {
    /// Start writing `final_path` (mode [`DEFAULT_FILE_MODE`]). Returns the guard
    /// and the file handle to write to.
    pub fn create(final_path: &Path) -> io::Result<(PendingFile, File)> {
        Self::create_with_mode(final_path, DEFAULT_FILE_MODE)
    }

    /// As [`create`](PendingFile::create), with an explicit mode.
    pub fn create_with_mode(final_path: &Path, mode: u32) -> io::Result<(PendingFile, File)> {
        let (temp, file) = create_temp_sibling(final_path, mode)?;
        let handle = match file.try_clone() {
            Ok(h) => h,
            Err(e) => {
                drop(file);
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
        };
        let pending = PendingFile {
            temp,
            final_path: final_path.to_path_buf(),
            handle,
            done: false,
        };
        Ok((pending, file))
    }

    /// The temporary path being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The path the file will have once persisted.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// fsync the data, rename to the final path (replacing any file there) and
    /// fsync the directory. Flush any `BufWriter` around the handle first. On
    /// error the temporary file is removed.
    pub fn persist(mut self) -> io::Result<PathBuf> {
        self.handle.sync_all()?;
        fs::rename(&self.temp, &self.final_path)?;
        self.done = true;
        sync_dir(parent_dir(&self.final_path))?;
        Ok(self.final_path.clone())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// registries.d/default.yaml planted as a link to a 0600 secret: refused,
    /// and neither the new file nor a backup holds the secret with a wider
    /// mode; a directory others may write to is refused.
    #[test]
    fn a_link_to_a_narrower_file_is_refused_and_so_is_an_open_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("registries.d");
        create_dir_all_mode(&dir, 0o755).unwrap();
        let secret = t.path().join("secret");
        fs::write(&secret, "PRIVATE").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        let yaml = dir.join("default.yaml");
        symlink(&secret, &yaml).unwrap();
        let err = write_atomic_with_backup(&yaml, b"docker: {}\n", 0o644).unwrap_err();
        assert!(err.to_string().contains("narrower"), "{err}");
        assert!(fs::symlink_metadata(&yaml)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "nothing else written"
        );

        // A link to a file at least as open is followed on purpose (podsec's
        // policy.json): replaced by a regular file, the backup keeps the mode.
        let dated = t.path().join("policy.json.dated");
        fs::write(&dated, "{}").unwrap();
        fs::set_permissions(&dated, fs::Permissions::from_mode(0o644)).unwrap();
        let policy = dir.join("policy.json");
        symlink(&dated, &policy).unwrap();
        let b = write_atomic_with_backup(&policy, b"{ }", 0o644)
            .unwrap()
            .unwrap();
        assert_eq!(mode_of(&b), 0o644);
        assert_eq!(fs::read(&dated).unwrap(), b"{}");

        let open = t.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        for r in [
            write_atomic(&open.join("a"), b"x", 0o644),
            write_atomic_new(&open.join("b"), b"x", 0o644),
            write_atomic_with_backup(&open.join("c"), b"x", 0o644).map(|_| ()),
        ] {
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        }
        assert_eq!(fs::read_dir(&open).unwrap().count(), 0);

        // Group write, as podsec sets the sigstore directory: accepted.
        let shared = t.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o775)).unwrap();
        write_atomic(&shared.join("a"), b"x", 0o644).unwrap();
    }

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn write_atomic_creates_and_replaces_with_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(mode_of(&p), 0o600);
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode_of(&p), 0o644);
        assert_eq!(names(d.path()), vec!["a.json"]);
    }

    #[test]
    fn write_atomic_failure_leaves_old_file_and_no_temp() {
        if is_root() {
            return; // root ignores directory permissions
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("policy.json");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o555)).unwrap();
        let r = write_atomic(&p, b"new", 0o644);
        let r2 = write_atomic_with_backup(&p, b"new", 0o644);
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(r.is_err());
        assert!(r2.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(names(d.path()), vec!["policy.json"]);
    }

    /// Env var telling [`fsize_limited_child`] to run (in a re-executed copy
    /// of this test binary, so the process-wide rlimit can't hurt other tests).
    const FSIZE_CHILD_ENV: &str = "U7S_FSUTIL_FSIZE_CHILD";

    /// Runs only when re-executed by `write_atomic_disk_full_keeps_old_file`:
    /// limits file size to 4 KiB (what a full disk looks like to `write`,
    /// and unlike directory permissions it also binds root) and tries to
    /// replace the file named in the env var with 64 KiB.
    #[test]
    fn fsize_limited_child() {
        let Ok(target) = std::env::var(FSIZE_CHILD_ENV) else {
            return;
        };
        // SAFETY: plain libc calls with valid arguments; this process runs
        // only this test.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 4096,
                rlim_max: libc::RLIM_INFINITY,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        }
        let p = PathBuf::from(target);
        let big = vec![b'x'; 65536];
        let e = write_atomic(&p, &big, 0o644).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFBIG), "{e}");
        let e = write_atomic_with_backup(&p, &big, 0o644).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFBIG), "{e}");
        let (pending, mut f) = PendingFile::create(&p).unwrap();
        assert!(f.write_all(&big).is_err());
        drop(pending);
    }

    #[test]
    fn write_atomic_disk_full_keeps_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("policy.json");
        fs::write(&p, b"old").unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "fsutil::tests::fsize_limited_child",
                "--exact",
                "--test-threads=1",
            ])
            .env(FSIZE_CHILD_ENV, &p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "child failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(names(d.path()), vec!["policy.json"]);
    }

    #[test]
    fn write_atomic_to_missing_dir_fails() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nope/x");
        assert!(write_atomic(&p, b"x", 0o644).is_err());
    }

    #[test]
    fn write_atomic_new_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("signature-1");
        write_atomic_new(&p, b"a", 0o644).unwrap();
        let e = write_atomic_new(&p, b"b", 0o644).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"a");
        assert_eq!(mode_of(&p), 0o644);
        assert_eq!(names(d.path()), vec!["signature-1"]);
    }

    #[test]
    fn backup_only_when_content_differs() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("policy.json");
        assert_eq!(write_atomic_with_backup(&p, b"v1", 0o644).unwrap(), None);
        assert_eq!(write_atomic_with_backup(&p, b"v1", 0o644).unwrap(), None);
        assert_eq!(names(d.path()), vec!["policy.json"]);

        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let b = write_atomic_with_backup(&p, b"v2", 0o644).unwrap().unwrap();
        let bname = b.file_name().unwrap().to_string_lossy().into_owned();
        assert!(bname.starts_with("policy.json.bak-"), "{bname}");
        let stamp = &bname["policy.json.bak-".len()..];
        assert_eq!(stamp.len(), 16, "{stamp}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T',
            "{stamp}"
        );
        assert_eq!(fs::read(&b).unwrap(), b"v1");
        assert_eq!(mode_of(&b), 0o640);
        assert_eq!(fs::read(&p).unwrap(), b"v2");
        assert_eq!(mode_of(&p), 0o644);

        // A second change within the same second gets a counter suffix.
        let b2 = write_atomic_with_backup(&p, b"v3", 0o644).unwrap().unwrap();
        assert_ne!(b, b2);
        assert_eq!(fs::read(&b2).unwrap(), b"v2");
        assert_eq!(fs::read(&b).unwrap(), b"v1");
        assert_eq!(names(d.path()).len(), 3);
        // Re-run: nothing new.
        assert_eq!(write_atomic_with_backup(&p, b"v3", 0o644).unwrap(), None);
        assert_eq!(names(d.path()).len(), 3);
    }

    #[test]
    fn symlink_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let dated = d.path().join("policy.json.2024-01-01");
        fs::write(&dated, b"podsec").unwrap();
        let live = d.path().join("policy.json");
        symlink("policy.json.2024-01-01", &live).unwrap();

        // Same content through the link: left alone.
        assert_eq!(
            write_atomic_with_backup(&live, b"podsec", 0o644).unwrap(),
            None
        );
        assert!(fs::symlink_metadata(&live)
            .unwrap()
            .file_type()
            .is_symlink());

        let b = write_atomic_with_backup(&live, b"ours", 0o644)
            .unwrap()
            .unwrap();
        let meta = fs::symlink_metadata(&live).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(fs::read(&live).unwrap(), b"ours");
        assert_eq!(fs::read(&dated).unwrap(), b"podsec");
        assert_eq!(fs::read(&b).unwrap(), b"podsec");
    }

    #[test]
    fn dangling_symlink_replaced_without_backup() {
        let d = tempfile::tempdir().unwrap();
        let live = d.path().join("x");
        symlink("missing", &live).unwrap();
        assert_eq!(write_atomic_with_backup(&live, b"x", 0o644).unwrap(), None);
        assert!(fs::symlink_metadata(&live).unwrap().file_type().is_file());
        assert!(!d.path().join("missing").exists());
    }

    #[test]
    fn create_dir_all_mode_sets_mode_on_created_only() {
        let d = tempfile::tempdir().unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let deep = d.path().join("a/b/c");
        create_dir_all_mode(&deep, 0o755).unwrap();
        assert!(deep.is_dir());
        assert_eq!(mode_of(&d.path().join("a")), 0o755);
        assert_eq!(mode_of(&deep), 0o755);
        assert_eq!(mode_of(d.path()), 0o700);
        create_dir_all_mode(&deep, 0o700).unwrap(); // existing: no-op
        assert_eq!(mode_of(&deep), 0o755);
        let f = d.path().join("file");
        fs::write(&f, b"").unwrap();
        assert!(create_dir_all_mode(&f.join("sub"), 0o755).is_err());
    }

    #[test]
    fn pending_file_persist_and_drop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bundle.tar.xz");
        let (pending, mut f) = PendingFile::create(&p).unwrap();
        assert!(pending.temp_path().exists());
        assert!(!p.exists());
        f.write_all(b"archive").unwrap();
        drop(f);
        assert_eq!(pending.persist().unwrap(), p);
        assert_eq!(fs::read(&p).unwrap(), b"archive");
        assert_eq!(mode_of(&p), DEFAULT_FILE_MODE);
        assert_eq!(names(d.path()), vec!["bundle.tar.xz"]);

        let q = d.path().join("other.tar.xz");
        {
            let (pending, mut f) = PendingFile::create(&q).unwrap();
            f.write_all(b"partial").unwrap();
            assert_eq!(pending.final_path(), q.as_path());
        }
        assert!(!q.exists());
        assert_eq!(names(d.path()), vec!["bundle.tar.xz"]);
    }
}
