//! The lookaside signature store: `<base>/<repo path>@<algo>=<hex>/signature-N`.
//!
//! This is the layout containers/image reads (`lookaside` URL in registries.d):
//! the repository path *without* the registry host, the manifest digest with
//! `=` instead of `:`, and signatures numbered from 1 with no gaps — a reader
//! stops at the first missing number, so a gap hides every later signature.
//! Files are 0644 and directories 0755 because nginx (sigstore.local) and
//! unprivileged readers serve/read them.
//!
//! The repository path comes from an archive on the isolated host, so it is
//! validated against the OCI grammar before it becomes part of a path: no
//! `..`, no absolute paths, no empty components.
//!
//! This module is synchronous and HTTP-free; reading an `http(s)://`
//! lookaside goes through a [`Fetch`] implementation supplied by the caller.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::is_repo_path;
use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum LookasideError {
    #[error("invalid repository path {0:?}: expected registry-relative components like \"c10f/coredns\"")]
    InvalidRepoPath(String),
    #[error("invalid manifest digest {0:?}: expected \"sha256=<hex>\" (or \"sha256:<hex>\")")]
    InvalidDigest(String),
    #[error("refusing to store an empty signature")]
    EmptySignature,
    #[error("invalid lookaside URL {url:?}: {why}")]
    InvalidUrl { url: String, why: &'static str },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("fetching {url}: {why}")]
    Fetch { url: String, why: String },
}

type Result<T, E = LookasideError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LookasideError + '_ {
    move |source| LookasideError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Readers never look further than this; bounds a loop over a misbehaving
/// HTTP server that answers every URL.
const MAX_SIGNATURES: u32 = 1024;

/// `sha256=<hex>` from `sha256=<hex>` or `sha256:<hex>`, checked: a known
/// algorithm and lowercase hex of its length.
fn normalize_digest(digest: &str) -> Result<String> {
    let bad = || LookasideError::InvalidDigest(digest.to_string());
    let (algo, hex) = digest.split_once(['=', ':']).ok_or_else(bad)?;
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(bad()),
    };
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad());
    }
    Ok(format!("{algo}={hex}"))
}

/// The path of one image's signature directory, relative part validated.
fn relative_dir(repo_path: &str, digest: &str) -> Result<String> {
    if !is_repo_path(repo_path) {
        return Err(LookasideError::InvalidRepoPath(repo_path.to_string()));
    }
    Ok(format!("{repo_path}@{}", normalize_digest(digest)?))
}

/// `<base>/<repo_path>@<algo>=<hex>`, e.g.
/// `/var/sigstore/sigstore/c10f/coredns@sha256=<hex>`.
///
/// `repo_path` is the repository *without* the registry host (`c10f/coredns`,
/// not `registry.local/c10f/coredns`); every component must match the OCI
/// grammar, so the result can't escape `base`. `digest` is `sha256=<hex>`;
/// `sha256:<hex>` is accepted and converted.
pub fn signature_dir(base: &Path, repo_path: &str, digest: &str) -> Result<PathBuf> {
    Ok(base.join(relative_dir(repo_path, digest)?))
}

/// What [`store_signature`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Written as a new `signature-<index>`.
    Added { path: PathBuf, index: u32 },
    /// An earlier signature by the same signer for the same identity was
    /// replaced in place (re-signing doesn't pile up files).
    Replaced { path: PathBuf, index: u32 },
    /// The very same bytes were already stored.
    AlreadyPresent { path: PathBuf, index: u32 },
}

impl StoreOutcome {
    pub fn path(&self) -> &Path {
        match self {
            StoreOutcome::Added { path, .. }
            | StoreOutcome::Replaced { path, .. }
            | StoreOutcome::AlreadyPresent { path, .. } => path,
        }
    }
    pub fn index(&self) -> u32 {
        match self {
            StoreOutcome::Added { index, .. }
            | StoreOutcome::Replaced { index, .. }
            | StoreOutcome::AlreadyPresent { index, .. } => *index,
        }
    }
    /// Whether a file was written.
    pub fn changed(&self) -> bool {
        !matches!(self, StoreOutcome::AlreadyPresent { .. })
    }
}

fn signature_file(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("signature-{index}"))
}

/// `signature-1`, `signature-2`, … up to the first missing one.
fn read_numbered(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for index in 1..=MAX_SIGNATURES {
        let path = signature_file(dir, index);
        match fs::read(&path) {
            Ok(b) => out.push(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(out)
}

/// Create `dir` and its missing parents, each taking its parent's group, and
/// group write where the parent has it (0755, or 0775).
///
/// podsec makes the sigstore directory root:podman_dev 0775 so its imagemaker
/// can `podman push --sign-by` into it; `c10f/` created root:root 0755 by a
/// root `load` would lock them out of every repository below it.
pub fn create_dirs_like_parent(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    create_dirs_like_parent(parent)?;
    let meta = fs::metadata(parent).map_err(io_err(parent))?;
    let mode = 0o755 | (meta.mode() & 0o020);
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    }
    std::os::unix::fs::chown(dir, None, Some(meta.gid())).map_err(io_err(dir))?;
    // After chown (which may clear set-id bits) and regardless of the umask.
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_err(dir))
}

/// Store one signature for the image `repo_path@digest` under `base`.
///
/// - Byte-identical to an existing `signature-N` → [`StoreOutcome::AlreadyPresent`].
/// - Else, if `same_signer(existing)` says an existing signature is from the
///   same key for the same identity (the caller parses the OpenPGP packets;
///   signatures carry a timestamp, so re-signing never gives identical bytes)
///   → that file is replaced atomically, [`StoreOutcome::Replaced`]. The first
///   such file is replaced; older duplicates (podsec's pile-ups) are left,
///   since removing one would open a gap that hides later signatures.
/// - Else → appended as `signature-<first free N>` ([`StoreOutcome::Added`]),
///   created without overwriting, so two concurrent writers both land.
///
/// Directories are created 0755, files written 0644.
pub fn store_signature(
    base: &Path,
    repo_path: &str,
    digest: &str,
    sig: &[u8],
    same_signer: impl Fn(&[u8]) -> bool,
) -> Result<StoreOutcome> {
    if sig.is_empty() {
        return Err(LookasideError::EmptySignature);
    }
    let dir = signature_dir(base, repo_path, digest)?;
    create_dirs_like_parent(&dir)?;
    loop {
        let existing = read_numbered(&dir)?;
        let at = |i: usize| (signature_file(&dir, i as u32 + 1), i as u32 + 1);
        if let Some(i) = existing.iter().position(|b| b == sig) {
            let (path, index) = at(i);
            return Ok(StoreOutcome::AlreadyPresent { path, index });
        }
        if let Some(i) = existing.iter().position(|b| same_signer(b)) {
            let (path, index) = at(i);
            fsutil::write_atomic(&path, sig, 0o644).map_err(io_err(&path))?;
            return Ok(StoreOutcome::Replaced { path, index });
        }
        let (path, index) = at(existing.len());
        if index > MAX_SIGNATURES {
            return Err(io_err(&path)(io::Error::other("too many signatures")));
        }
        match fsutil::write_atomic_new(&path, sig, 0o644) {
            Ok(()) => return Ok(StoreOutcome::Added { path, index }),
            // Another writer took this number meanwhile: look again.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
}

/// Can containers/image parse this as a simple-signing blob? An empty file or
/// one that is not an OpenPGP message stops its reader at that file, so the
/// image is refused whatever valid signatures follow.
pub fn is_parsable(sig: &[u8]) -> bool {
    use sequoia_openpgp::parse::Parse;
    !sig.is_empty() && sequoia_openpgp::Message::from_bytes(sig).is_ok()
}

/// A signature file [`repair`] moved out of the numbered sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedAside {
    /// Where it was (`…/signature-N`).
    pub was: PathBuf,
    /// Where it is kept now (`…/signature-N.invalid-<unix time>`); `None` in a
    /// dry run.
    pub kept: Option<PathBuf>,
}

/// Move every `signature-N` of `repo_path@digest` that is not
/// [`is_parsable`] aside (kept, renamed `signature-N.invalid-<unix time>`, a
/// name readers never look at), then renumber the remaining ones
/// `signature-1…` without gaps, in their order. With `dry_run`, only reports.
pub fn repair(
    base: &Path,
    repo_path: &str,
    digest: &str,
    dry_run: bool,
) -> Result<Vec<MovedAside>> {
    let dir = signature_dir(base, repo_path, digest)?;
    let existing = read_numbered(&dir)?;
    if existing.iter().all(|b| is_parsable(b)) {
        return Ok(Vec::new());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut moved = Vec::new();
    let mut good = Vec::new();
    for (i, b) in existing.iter().enumerate() {
        let was = signature_file(&dir, i as u32 + 1);
        if is_parsable(b) {
            good.push(was);
            continue;
        }
        let kept = if dry_run {
            None
        } else {
            Some(move_aside(&was, stamp)?)
        };
        moved.push(MovedAside { was, kept });
    }
    if !dry_run {
        // Targets only go down, and each was freed before: no overwrite.
        for (i, from) in good.iter().enumerate() {
            let to = signature_file(&dir, i as u32 + 1);
            if *from != to {
                fs::rename(from, &to).map_err(io_err(from))?;
            }
        }
        fsutil::sync_dir(&dir).map_err(io_err(&dir))?;
    }
    Ok(moved)
}

/// Rename `path` to a free `…invalid-<stamp>[.n]` name without overwriting
/// anything (hard link, then unlink).
fn move_aside(path: &Path, stamp: u64) -> Result<PathBuf> {
    for n in 0..100 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".invalid-{stamp}"));
        if n > 0 {
            name.push(format!(".{n}"));
        }
        let to = PathBuf::from(name);
        match fs::hard_link(path, &to) {
            Ok(()) => {
                fs::remove_file(path).map_err(io_err(path))?;
                return Ok(to);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&to)(e)),
        }
    }
    Err(io_err(path)(io::Error::other(
        "no free name to move it aside",
    )))
}

/// All signatures of `repo_path@digest` under `base`, in order, reading
/// `signature-1`, `signature-2`, … until the first missing one (as
/// containers/image does). No directory → no signatures.
pub fn read_signatures(base: &Path, repo_path: &str, digest: &str) -> Result<Vec<Vec<u8>>> {
    read_numbered(&signature_dir(base, repo_path, digest)?)
}

/// Fetches one URL for [`read_signatures_from_url`]; implemented by the caller
/// for `http(s)://` lookasides (e.g. with the registry client's HTTP stack).
pub trait Fetch {
    /// The body of `url`; `Ok(None)` when it doesn't exist (HTTP 404), which
    /// ends the `signature-N` sequence.
    fn fetch(&self, url: &str) -> Result<Option<Vec<u8>>>;
}

/// A [`Fetch`] for callers that only support local (`file://`) lookasides.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHttp;

impl Fetch for NoHttp {
    fn fetch(&self, url: &str) -> Result<Option<Vec<u8>>> {
        Err(LookasideError::Fetch {
            url: url.to_string(),
            why: "reading an http(s) lookaside is not supported here".into(),
        })
    }
}

/// `<base_url>/<repo_path>@<algo>=<hex>/signature-<index>` (a trailing `/` on
/// `base_url` is not doubled).
pub fn signature_url(base_url: &str, repo_path: &str, digest: &str, index: u32) -> Result<String> {
    let rel = relative_dir(repo_path, digest)?;
    Ok(format!(
        "{}/{rel}/signature-{index}",
        base_url.trim_end_matches('/')
    ))
}

/// The local path of a `file://` URL (`file:///var/sigstore/sigstore/` →
/// `/var/sigstore/sigstore/`; host must be empty or `localhost`; `%XX`
/// escapes decoded).
pub fn file_url_path(url: &str) -> Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let bad = |why| LookasideError::InvalidUrl {
        url: url.to_string(),
        why,
    };
    let rest = url
        .strip_prefix("file://")
        .ok_or_else(|| bad("not a file:// URL"))?;
    let path = match rest.strip_prefix("localhost") {
        Some(p) if p.starts_with('/') => p,
        _ => rest,
    };
    if !path.starts_with('/') {
        return Err(bad("expected file:///absolute/path"));
    }
    if path.contains(['?', '#']) {
        return Err(bad("query or fragment in a file:// URL"));
    }
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let v = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("invalid %-escape"))?;
            if v == 0 {
                return Err(bad("NUL in path"));
            }
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// Read the signatures of `repo_path@digest` from a lookaside URL as
/// containers/image would: `file://` locally, `http(s)://` through `http`,
/// `signature-1`… until the first missing one.
pub fn read_signatures_from_url(
    base_url: &str,
    repo_path: &str,
    digest: &str,
    http: &dyn Fetch,
) -> Result<Vec<Vec<u8>>> {
    if base_url.starts_with("file://") {
        return read_signatures(&file_url_path(base_url)?, repo_path, digest);
    }
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(LookasideError::InvalidUrl {
            url: base_url.to_string(),
            why: "expected a file://, http:// or https:// URL",
        });
    }
    let mut out = Vec::new();
    for index in 1..=MAX_SIGNATURES {
        match http.fetch(&signature_url(base_url, repo_path, digest, index)?)? {
            Some(b) => out.push(b),
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    fn digest() -> String {
        format!("sha256={}", "ab".repeat(32))
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Test signatures: "<signer>:<identity>:<n>".
    fn same(signer: &'static str) -> impl Fn(&[u8]) -> bool {
        move |b: &[u8]| b.starts_with(signer.as_bytes())
    }

    #[test]
    fn layout_and_validation() {
        let base = Path::new("/var/sigstore/sigstore");
        let d = signature_dir(base, "c10f/coredns", &digest()).unwrap();
        assert_eq!(d, base.join(format!("c10f/coredns@{}", digest())));
        let colon = digest().replace('=', ":");
        assert_eq!(signature_dir(base, "c10f/coredns", &colon).unwrap(), d);
        for bad in [
            "../etc",
            "c10f/../../etc",
            "/etc",
            "c10f//x",
            "",
            ".",
            "c10f/",
            "C10F/x",
            "a b",
            "x@y",
        ] {
            assert!(
                matches!(
                    signature_dir(base, bad, &digest()),
                    Err(LookasideError::InvalidRepoPath(_))
                ),
                "{bad}"
            );
        }
        for bad in [
            "sha256=AB",
            "sha256=abc",
            "md5=00",
            "sha256",
            "",
            &format!("sha256=../{}", "a".repeat(61)),
        ] {
            assert!(
                matches!(
                    signature_dir(base, "x", bad),
                    Err(LookasideError::InvalidDigest(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            signature_url("http://sigstore.local:81/sigstore/", "c10f/x", &digest(), 2).unwrap(),
            format!(
                "http://sigstore.local:81/sigstore/c10f/x@{}/signature-2",
                digest()
            )
        );
    }

    #[test]
    fn numbering_idempotence_and_replacement() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("sigstore");
        let dg = digest();
        let store = |sig: &[u8], signer| {
            store_signature(&base, "c10f/coredns", &dg, sig, same(signer)).unwrap()
        };

        let o = store(b"alice:1", "alice");
        assert!(matches!(o, StoreOutcome::Added { index: 1, .. }), "{o:?}");
        assert!(o.path().ends_with("signature-1"));
        assert_eq!(mode(o.path()), 0o644);
        let dir = signature_dir(&base, "c10f/coredns", &dg).unwrap();
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(&base.join("c10f")), 0o755);

        // Same bytes: nothing.
        let o = store(b"alice:1", "alice");
        assert_eq!(
            o,
            StoreOutcome::AlreadyPresent {
                path: dir.join("signature-1"),
                index: 1
            }
        );
        assert!(!o.changed());

        // Another signer: appended.
        let o = store(b"bob:1", "bob");
        assert!(matches!(o, StoreOutcome::Added { index: 2, .. }), "{o:?}");

        // Alice re-signs (new timestamp): replaces her file, no signature-3.
        let o = store(b"alice:2", "alice");
        assert_eq!(
            o,
            StoreOutcome::Replaced {
                path: dir.join("signature-1"),
                index: 1
            }
        );
        assert_eq!(
            read_signatures(&base, "c10f/coredns", &dg).unwrap(),
            vec![b"alice:2".to_vec(), b"bob:1".to_vec()]
        );
        assert!(!dir.join("signature-3").exists());
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["signature-1", "signature-2"], "no temp files left");

        assert!(matches!(
            store_signature(&base, "c10f/coredns", &dg, b"", |_| false),
            Err(LookasideError::EmptySignature)
        ));
        assert!(matches!(
            store_signature(&base, "../escape", &dg, b"x", |_| false),
            Err(LookasideError::InvalidRepoPath(_))
        ));
        assert!(!t.path().join("escape").exists());
    }

    #[test]
    fn readers_stop_at_first_gap_and_writers_fill_it() {
        let t = tempfile::tempdir().unwrap();
        let dg = digest();
        let dir = signature_dir(t.path(), "x", &dg).unwrap();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("signature-1"), b"a").unwrap();
        fs::write(dir.join("signature-3"), b"c").unwrap();
        assert_eq!(
            read_signatures(t.path(), "x", &dg).unwrap(),
            vec![b"a".to_vec()]
        );
        let o = store_signature(t.path(), "x", &dg, b"b", |_| false).unwrap();
        assert_eq!(o.index(), 2);
        assert_eq!(read_signatures(t.path(), "x", &dg).unwrap().len(), 3);
        // No directory: no signatures.
        assert!(read_signatures(t.path(), "y", &dg).unwrap().is_empty());
    }

    #[test]
    fn url_readers() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("sig store");
        let dg = digest();
        store_signature(&base, "c10f/x", &dg, b"s1", |_| false).unwrap();
        store_signature(&base, "c10f/x", &dg, b"s2", |_| false).unwrap();
        let url = format!("file://{}/", base.display()).replace(' ', "%20");
        assert_eq!(
            file_url_path(&url).unwrap(),
            PathBuf::from(format!("{}/", base.display()))
        );
        assert_eq!(
            read_signatures_from_url(&url, "c10f/x", &dg, &NoHttp).unwrap(),
            vec![b"s1".to_vec(), b"s2".to_vec()]
        );
        assert_eq!(
            file_url_path("file://localhost/var/x").unwrap(),
            PathBuf::from("/var/x")
        );
        for bad in [
            "file://host/var",
            "file:relative",
            "file:///a%zz",
            "file:///a%00",
            "http://x/",
        ] {
            assert!(file_url_path(bad).is_err(), "{bad}");
        }
        assert!(read_signatures_from_url("ftp://x/", "c10f/x", &dg, &NoHttp).is_err());
        assert!(matches!(
            read_signatures_from_url("http://x/", "c10f/x", &dg, &NoHttp),
            Err(LookasideError::Fetch { .. })
        ));

        struct Fake(HashMap<String, Vec<u8>>, RefCell<Vec<String>>);
        impl Fetch for Fake {
            fn fetch(&self, url: &str) -> Result<Option<Vec<u8>>> {
                self.1.borrow_mut().push(url.to_string());
                Ok(self.0.get(url).cloned())
            }
        }
        let mut m = HashMap::new();
        m.insert(
            format!("http://s:81/sigstore/c10f/x@{dg}/signature-1"),
            b"h1".to_vec(),
        );
        let fake = Fake(m, RefCell::default());
        assert_eq!(
            read_signatures_from_url("http://s:81/sigstore/", "c10f/x", &dg, &fake).unwrap(),
            vec![b"h1".to_vec()]
        );
        assert_eq!(fake.1.borrow().len(), 2, "stops after the first 404");
    }
}
