//! A content-addressed blob cache for builds: `<dir>/blobs/sha256/<hex>`.
//!
//! Why a cache at all: a tar entry header carries the entry's size before its data,
//! and `bundle.json` (first in the archive) lists every blob's size, but the size of
//! a decompressed layer is known only after decompressing it. So layers land here
//! first, decompressed and verified; the archive is then written from here. The
//! cache also lets a re-run after a failure reuse what was already downloaded —
//! every entry is re-hashed before reuse, so a corrupted cache can't leak into a
//! bundle.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};

pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(dir: &Path) -> io::Result<Cache> {
        fs::create_dir_all(dir.join("blobs/sha256"))?;
        fs::create_dir_all(dir.join("tmp"))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    /// The default location: `$XDG_CACHE_HOME/u7s-bundle` or `~/.cache/u7s-bundle`.
    pub fn default_dir() -> PathBuf {
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("u7s-bundle");
        }
        match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".cache/u7s-bundle"),
            None => PathBuf::from("/var/tmp/u7s-bundle-cache"),
        }
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// The size of a cached blob, after re-hashing it; a corrupt entry is removed.
    pub fn verified_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        let p = self.path(digest);
        let mut f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let size = h.len();
        if &h.finish() == digest {
            Ok(Some(size))
        } else {
            let _ = fs::remove_file(&p);
            Ok(None)
        }
    }

    /// A temp file inside the cache, removed on drop unless committed.
    pub fn writer(&self) -> io::Result<CacheWriter> {
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.dir.join("tmp"))?;
        Ok(CacheWriter {
            tmp,
            target_dir: self.dir.join("blobs/sha256"),
        })
    }
}

pub struct CacheWriter {
    tmp: tempfile::NamedTempFile,
    target_dir: PathBuf,
}

impl CacheWriter {
    /// Start over (a retried download).
    pub fn reset(&mut self) -> io::Result<()> {
        self.tmp.as_file_mut().set_len(0)?;
        use std::io::Seek;
        self.tmp.as_file_mut().seek(io::SeekFrom::Start(0))?;
        Ok(())
    }

    /// Store under `digest`; the caller has verified the content hashes to it.
    pub fn commit(self, digest: &Digest) -> io::Result<PathBuf> {
        let target = self.target_dir.join(digest.hex());
        self.tmp.persist(&target).map_err(|e| e.error)?;
        Ok(target)
    }
}

impl Write for CacheWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_entries_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        let d = Digest::of(b"layer");
        let mut w = c.writer().unwrap();
        w.write_all(b"layer").unwrap();
        w.commit(&d).unwrap();
        assert_eq!(c.verified_size(&d).unwrap(), Some(5));
        fs::write(c.path(&d), b"layeR").unwrap();
        assert_eq!(c.verified_size(&d).unwrap(), None);
        assert!(!c.path(&d).exists());
    }
}
