//! Writing the archive: a deterministic tar stream through the compressor.
//!
//! Entries are plain ustar regular files (mode 0644, uid/gid 0, one fixed mtime):
//! the same input gives the same archive, and nothing in it is a directory, link
//! or device for an extractor to trip over.
//!
//! All entries are known before the first byte is written (blobs sit in the
//! download cache), so the tar stream is laid out first as a list of
//! [`Segment`]s and then compressed. With xz and more than one thread, the tar
//! stream is cut into equal byte ranges, one per thread, and each range becomes
//! its own complete xz stream from a single-threaded encoder; the streams are
//! written one after another. `xz -d`, liblzma and our reader treat
//! concatenated streams as one, so the result is an ordinary `.tar.xz`.
//!
//! Why not liblzma's multi-threaded encoder: it keeps each whole block of
//! input and of output in memory, so to give every thread an equal share its
//! blocks must grow with the bundle (build memory went from 1.7 GB at 300 MB
//! to well over 3 GB at 900 MB); with its default blocks (3× the dictionary),
//! a 300 MB set is one big block and one small one, and one thread does most
//! of the work. Independent streams need one encoder per thread whatever the
//! size. The first stream goes straight into the output; the others into
//! anonymous temporary files beside it (unlinked from the start: an interrupt
//! leaves nothing behind), appended when all are done.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::compress::{xz_encoder_memory, Codec, EncodeOptions, Encoder};

const BLOCK: u64 = 512;

/// One file of the archive.
pub struct Entry {
    pub path: String,
    pub content: Content,
}

pub enum Content {
    Bytes(Vec<u8>),
    /// A file of exactly `size` bytes (a verified blob in the cache).
    File {
        path: PathBuf,
        size: u64,
    },
}

impl Content {
    fn size(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::File { size, .. } => *size,
        }
    }
}

/// A piece of the uncompressed tar stream.
enum Segment {
    Bytes(Vec<u8>),
    File { path: PathBuf, size: u64 },
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::File { size, .. } => *size,
        }
    }
}

/// How a write went: sizes for the report.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub uncompressed: u64,
    pub compressed: u64,
    /// Compressed streams in the file (xz: one per thread used).
    pub streams: usize,
}

/// Where the writer reports and asks.
pub struct Hooks<'a> {
    /// Called with the number of uncompressed bytes just consumed (from any
    /// thread).
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// Checked between reads; when set, writing stops with an error.
    pub cancel: &'a AtomicBool,
}

/// The smallest share worth a stream of its own: below this, splitting saves
/// little time and costs ratio.
const MIN_PART: u64 = 16 << 20;

/// Write `entries` as a tar stream compressed per `opts` into `out` (at its
/// current position). Temporary streams go to anonymous files in `spill_dir`.
pub fn write_archive<W: Write>(
    out: &mut W,
    spill_dir: &Path,
    entries: Vec<Entry>,
    opts: EncodeOptions,
    mtime: u64,
    hooks: &Hooks,
) -> io::Result<Written> {
    let segments = layout(entries, mtime)?;
    let total: u64 = segments.iter().map(Segment::len).sum();
    let parts = match opts.codec {
        Codec::Zstd => 1,
        Codec::Xz => xz_parts(total, opts, MIN_PART, available_memory()),
    };
    write_parts(out, spill_dir, &segments, total, parts, opts, hooks)
}

/// How many independent xz streams: one per thread, each at least `min_part`
/// of input, and no more encoders than `memory` holds (at least one).
fn xz_parts(total: u64, opts: EncodeOptions, min_part: u64, memory: Option<u64>) -> usize {
    let by_size = (total / min_part.max(1)).max(1);
    let by_memory = memory
        .map(|m| (m / xz_encoder_memory(opts.xz_level())).max(1))
        .unwrap_or(u64::MAX);
    u64::from(opts.threads.max(1))
        .min(by_size)
        .min(by_memory)
        .try_into()
        .unwrap_or(1)
}

/// MemAvailable from /proc/meminfo, in bytes.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn write_parts<W: Write>(
    out: &mut W,
    spill_dir: &Path,
    segments: &[Segment],
    total: u64,
    parts: usize,
    opts: EncodeOptions,
    hooks: &Hooks,
) -> io::Result<Written> {
    let mut out = Counting { inner: out, n: 0 };
    let out = &mut out;
    let share = total.div_ceil(parts as u64);
    let ranges: Vec<(u64, u64)> = (0..parts as u64)
        .map(|i| (i * share, ((i + 1) * share).min(total)))
        .collect();
    let first = ranges[0];
    // Set when one part fails, so the others stop early.
    let stop = AtomicBool::new(false);
    let stop = &stop;
    let results: Vec<io::Result<Option<File>>> = std::thread::scope(|s| {
        let rest: Vec<_> = ranges[1..]
            .iter()
            .map(|&(a, b)| {
                s.spawn(move || -> io::Result<Option<File>> {
                    let spill = tempfile::tempfile_in(spill_dir)
                        .and_then(|f| compress_range(f, segments, (a, b), opts, hooks, stop));
                    if spill.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    spill.map(Some)
                })
            })
            .collect();
        let head = compress_range(&mut *out, segments, first, opts, hooks, stop).map(|_| None);
        if head.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        std::iter::once(head)
            .chain(
                rest.into_iter()
                    .map(|h| h.join().expect("compression thread")),
            )
            .collect()
    });
    // Report the failure that stopped the others, not their stopping.
    let (ok, mut failed): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
    failed.sort_by_key(|r| r.as_ref().err().is_some_and(is_stopped));
    if let Some(Err(e)) = failed.into_iter().next() {
        return Err(e);
    }
    let spills: Vec<File> = ok.into_iter().filter_map(|r| r.ok().flatten()).collect();
    for mut f in spills {
        f.seek(SeekFrom::Start(0))?;
        io::copy(&mut f, out)?;
    }
    out.flush()?;
    Ok(Written {
        uncompressed: total,
        compressed: out.n,
        streams: parts,
    })
}

/// Counts what goes through: the archive's size, whatever `W` is (a file,
/// or the volumes of a split bundle).
struct Counting<'a, W> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Why a part ended early: another part failed.
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped: another part of the archive failed")
    }
}

impl std::error::Error for Stopped {}

fn is_stopped(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Stopped>())
}

/// Compress bytes `[a, b)` of the tar stream as one complete stream into `w`.
fn compress_range<W: Write>(
    w: W,
    segments: &[Segment],
    (a, b): (u64, u64),
    opts: EncodeOptions,
    hooks: &Hooks,
    stop: &AtomicBool,
) -> io::Result<W> {
    let mut enc = Encoder::new(BufWriter::with_capacity(1 << 20, w), opts)?;
    let mut src = RangeReader {
        segments,
        pos: a,
        end: b,
        index: 0,
        seg_start: 0,
        open: None,
        hooks,
        stop,
    };
    io::copy(&mut src, &mut enc)?;
    let buffered = enc.finish()?;
    buffered.into_inner().map_err(|e| e.into_error())
}

/// The tar stream as segments: headers and small files in memory, blobs by
/// path, padding, and the two zero blocks at the end.
fn layout(entries: Vec<Entry>, mtime: u64) -> io::Result<Vec<Segment>> {
    let mut segs: Vec<Segment> = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for e in entries {
        let size = e.content.size();
        pending.extend_from_slice(header(&e.path, size, mtime)?.as_bytes());
        match e.content {
            Content::Bytes(b) => pending.extend_from_slice(&b),
            Content::File { path, size } => {
                segs.push(Segment::Bytes(std::mem::take(&mut pending)));
                segs.push(Segment::File { path, size });
            }
        }
        let pad = (BLOCK - size % BLOCK) % BLOCK;
        pending.resize(pending.len() + pad as usize, 0);
    }
    pending.resize(pending.len() + 2 * BLOCK as usize, 0);
    segs.push(Segment::Bytes(pending));
    segs.retain(|s| s.len() > 0);
    Ok(segs)
}

fn header(path: &str, size: u64, mtime: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// Reads bytes `[pos, end)` of the concatenated segments. A file shorter than
/// its declared size is an error, never a shifted archive.
struct RangeReader<'a> {
    segments: &'a [Segment],
    pos: u64,
    end: u64,
    /// The segment holding `pos` and where it starts.
    index: usize,
    seg_start: u64,
    open: Option<File>,
    hooks: &'a Hooks<'a>,
    /// Another part failed.
    stop: &'a AtomicBool,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.hooks.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("interrupted"));
        }
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other(Stopped));
        }
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        // Advance to the segment holding `pos`.
        while self.seg_start + self.segments[self.index].len() <= self.pos {
            self.seg_start += self.segments[self.index].len();
            self.index += 1;
            self.open = None;
        }
        let seg = &self.segments[self.index];
        let within = self.pos - self.seg_start;
        let want = (seg.len() - within).min(self.end - self.pos);
        let want = want.min(buf.len() as u64) as usize;
        let n = match seg {
            Segment::Bytes(b) => {
                buf[..want].copy_from_slice(&b[within as usize..within as usize + want]);
                want
            }
            Segment::File { path, .. } => {
                if self.open.is_none() {
                    let mut f = File::open(path).map_err(|e| {
                        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?;
                    f.seek(SeekFrom::Start(within))?;
                    self.open = Some(f);
                }
                let n = self
                    .open
                    .as_mut()
                    .expect("opened above")
                    .read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{} ended {} bytes early",
                            path.display(),
                            seg.len() - within
                        ),
                    ));
                }
                n
            }
        };
        self.pos += n as u64;
        (self.hooks.progress)(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::compress::decoder;

    fn entries(dir: &Path) -> Vec<Entry> {
        let big: Vec<u8> = (0..700_000u32)
            .flat_map(|i| (i % 4093).to_le_bytes())
            .collect();
        let p = dir.join("blob");
        std::fs::write(&p, &big).unwrap();
        vec![
            Entry {
                path: "bundle.json".into(),
                content: Content::Bytes(b"{}".to_vec()),
            },
            Entry {
                path: "amd64/blobs/sha256/aa".into(),
                content: Content::File {
                    path: p,
                    size: big.len() as u64,
                },
            },
            Entry {
                path: "amd64/index.json".into(),
                content: Content::Bytes(vec![7u8; 1000]),
            },
        ]
    }

    fn write(dir: &Path, codec: Codec, parts: Option<usize>) -> (Vec<u8>, Written) {
        let cancel = AtomicBool::new(false);
        let done = std::sync::atomic::AtomicU64::new(0);
        let progress = |n: u64| {
            done.fetch_add(n, Ordering::Relaxed);
        };
        let hooks = Hooks {
            progress: &progress,
            cancel: &cancel,
        };
        let opts = EncodeOptions::for_arch(codec, Some(1), 3, "amd64");
        let segs = layout(entries(dir), 1_700_000_000).unwrap();
        let total = segs.iter().map(Segment::len).sum();
        let mut out = tempfile::tempfile_in(dir).unwrap();
        let w = write_parts(
            &mut out,
            dir,
            &segs,
            total,
            parts.unwrap_or(1),
            opts,
            &hooks,
        )
        .unwrap();
        assert_eq!(
            done.load(Ordering::Relaxed),
            total,
            "progress saw every byte"
        );
        out.seek(SeekFrom::Start(0)).unwrap();
        let mut bytes = Vec::new();
        out.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, w.compressed);
        (bytes, w)
    }

    fn untar(compressed: &[u8]) -> Vec<(String, Vec<u8>)> {
        let (_, d) = decoder(compressed).unwrap();
        let mut a = tar::Archive::new(d);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut v = Vec::new();
                e.read_to_end(&mut v).unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), v)
            })
            .collect()
    }

    /// Three xz streams, cut mid-file, read back as one archive, identical to
    /// the one-stream archive; and `xz -d | tar` (the tools a user has) agree.
    #[test]
    fn xz_streams_concatenate_into_one_archive() {
        let dir = tempfile::tempdir().unwrap();
        let (one, w1) = write(dir.path(), Codec::Xz, Some(1));
        let (three, w3) = write(dir.path(), Codec::Xz, Some(3));
        assert_eq!((w1.streams, w3.streams), (1, 3));
        assert_ne!(one, three);
        let a = untar(&one);
        assert_eq!(a, untar(&three));
        let names: Vec<_> = a.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["bundle.json", "amd64/blobs/sha256/aa", "amd64/index.json"]
        );
        assert_eq!(a[1].1.len(), 2_800_000);
        // Three stream headers in the file.
        let magic = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
        assert_eq!(three.windows(6).filter(|w| *w == magic).count(), 3);
        let f = dir.path().join("x.tar.xz");
        std::fs::write(&f, &three).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("xz -dc {} | tar tvf -", f.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            listing.contains("2800000") && listing.contains("amd64/index.json"),
            "{listing}"
        );
    }

    #[test]
    fn zstd_archive_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let (z, w) = write(dir.path(), Codec::Zstd, None);
        assert_eq!(w.streams, 1);
        assert_eq!(untar(&z).len(), 3);
    }

    #[test]
    fn a_short_blob_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = entries(dir.path());
        if let Content::File { size, .. } = &mut e[1].content {
            *size += 1;
        }
        let segs = layout(e, 0).unwrap();
        let total = segs.iter().map(Segment::len).sum();
        let cancel = AtomicBool::new(false);
        let hooks = Hooks {
            progress: &|_| {},
            cancel: &cancel,
        };
        let mut out = tempfile::tempfile_in(dir.path()).unwrap();
        let opts = EncodeOptions::for_arch(Codec::Xz, Some(1), 2, "amd64");
        let err = write_parts(&mut out, dir.path(), &segs, total, 2, opts, &hooks).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }

    #[test]
    fn cancelling_stops_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let segs = layout(entries(dir.path()), 0).unwrap();
        let total = segs.iter().map(Segment::len).sum();
        let cancel = AtomicBool::new(true);
        let hooks = Hooks {
            progress: &|_| {},
            cancel: &cancel,
        };
        let mut out = tempfile::tempfile_in(dir.path()).unwrap();
        let opts = EncodeOptions::for_arch(Codec::Xz, Some(1), 2, "amd64");
        assert!(write_parts(&mut out, dir.path(), &segs, total, 2, opts, &hooks).is_err());
    }

    #[test]
    fn stream_count_follows_threads_size_and_memory() {
        let opts = EncodeOptions::for_arch(Codec::Xz, Some(9), 4, "amd64");
        let gib = 1u64 << 30;
        assert_eq!(xz_parts(gib, opts, MIN_PART, Some(64 * gib)), 4);
        // Small bundles stay one stream.
        assert_eq!(xz_parts(20 << 20, opts, MIN_PART, Some(64 * gib)), 1);
        // 1.5 GiB available holds two -9 encoders (674 MiB each), not four.
        assert_eq!(xz_parts(gib, opts, MIN_PART, Some(3 * gib / 2)), 2);
        // Never zero, whatever the memory.
        assert_eq!(xz_parts(gib, opts, MIN_PART, Some(1)), 1);
    }
}
