//! Writing the archive: a deterministic tar stream through the compressor.
//!
//! Entries are plain ustar regular files (mode 0644, uid/gid 0, one fixed mtime):
//! the same input gives the same archive, and nothing in it is a directory, link
//! or device for an extractor to trip over.

use std::io::{self, Read, Write};

use super::compress::{EncodeOptions, Encoder};

pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<Encoder<W>>,
    mtime: u64,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(w: W, opts: EncodeOptions, mtime: u64) -> io::Result<ArchiveWriter<W>> {
        let mut tar = tar::Builder::new(Encoder::new(w, opts)?);
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(ArchiveWriter { tar, mtime })
    }

    fn header(&self, path: &str, size: u64) -> io::Result<tar::Header> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path)?;
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        Ok(h)
    }

    pub fn add_bytes(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        let h = self.header(path, data.len() as u64)?;
        self.tar.append(&h, data)
    }

    /// Append `size` bytes from `r`; fewer or more bytes is an error (the header
    /// is already written with `size`).
    pub fn add_reader(&mut self, path: &str, size: u64, r: impl Read) -> io::Result<()> {
        let h = self.header(path, size)?;
        let mut limited = ExactReader {
            inner: r.take(size),
            remaining: size,
        };
        self.tar.append(&h, &mut limited)
    }

    /// Write the end-of-archive blocks and finish the compressed stream.
    pub fn finish(self) -> io::Result<W> {
        let enc = self.tar.into_inner()?;
        enc.finish()
    }
}

/// Errors out if the source ends before `remaining` bytes.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("source ended {} bytes early", self.remaining),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
