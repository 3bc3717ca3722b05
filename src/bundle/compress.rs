//! The outer compression of a bundle: xz (compact, default) or zstd (fast).

use std::io::{self, BufRead, Read, Write};

use liblzma::stream::{Check, Filters, LzmaOptions, Stream};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Xz,
    Zstd,
}

/// zstd window: 2^27 = 128 MiB, enough to see the redundancy between the images
/// of a kubernetes set. Decoders must allow at least this (`window_log_max`).
pub const ZSTD_WINDOW_LOG: u32 = 27;
/// zstd level unless `--level` says otherwise.
pub const ZSTD_DEFAULT_LEVEL: u32 = 12;
/// Hash and chain table size (log2 entries) at the default level.
const ZSTD_TABLE_LOG: u32 = 25;
/// zstd job size (the input one worker compresses at a time): 64 MiB.
/// zstd's own default is 4 windows (512 MiB), and its input buffer holds
/// 2 jobs + 3 slack jobs, so the memory a build needs kept growing with the
/// image set up to ~2.5 GiB (689 MiB at 300 MB, 1.3 GiB at 900 MB). With
/// 64 MiB jobs the buffer is ~320 MiB, which a 300 MB set already fills:
/// ~730 MiB for 300 MB and ~770 MiB for 900 MB (measured, zstd 1.5.4).
const ZSTD_JOB_SIZE: u32 = 64 << 20;
/// Each job starts with the whole window (2^9/2^9) of the data before it as
/// its dictionary, so small jobs lose no matches: the archives came out
/// 0.5–0.7% *smaller* than with 512 MiB jobs, for ~45% more CPU — which the
/// second worker, now busy from the first 64 MiB on, more than pays back
/// on a small set.
const ZSTD_OVERLAP_LOG: u32 = 9;
/// Largest zstd window a bundle may use: refuse absurd memory demands on load.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 31;

impl Codec {
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Xz => "tar.xz",
            Codec::Zstd => "tar.zst",
        }
    }

    /// Which codec the first bytes of a file are.
    pub fn sniff(head: &[u8]) -> Option<Codec> {
        if head.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
            Some(Codec::Xz)
        } else if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
            Some(Codec::Zstd)
        } else {
            None
        }
    }
}

/// Settings for compression: level and threads.
#[derive(Clone, Copy, Debug)]
pub struct EncodeOptions {
    pub codec: Codec,
    /// xz: 0–9 (default 9); zstd: 1–22 (default 12).
    pub level: Option<u32>,
    /// zstd: worker threads of one stream. xz: how many independent streams
    /// the archive writer may cut the tar into (see `writer`); one xz
    /// [`Encoder`] is always single-threaded.
    pub threads: u32,
    /// Put the x86 branch/call/jump filter before LZMA2 (xz only). Layers are
    /// mostly executables; for x86 code the filter turns relative call targets
    /// into absolute ones, which repeat, and the archive comes out ~6% smaller
    /// and faster to make. Every xz ever shipped decodes it, so `xz -d | tar x`
    /// still works. (The ARM64 filter would need xz ≥ 5.4 on the reading
    /// side, so other architectures go without.)
    pub x86_filter: bool,
}

impl EncodeOptions {
    /// The usual settings for a bundle of `arch`.
    pub fn for_arch(codec: Codec, level: Option<u32>, threads: u32, arch: &str) -> EncodeOptions {
        EncodeOptions {
            codec,
            level,
            threads,
            x86_filter: matches!(arch, "amd64" | "386"),
        }
    }

    /// The xz preset in use.
    pub fn xz_level(&self) -> u32 {
        self.level.unwrap_or(9).min(9)
    }
}

/// Memory one single-threaded xz encoder needs at `level` (the figures of
/// xz(1)'s preset table, MiB): the writer runs no more encoders at once than
/// the machine's available memory holds.
pub fn xz_encoder_memory(level: u32) -> u64 {
    const MIB: [u64; 10] = [3, 9, 17, 32, 48, 94, 94, 186, 370, 674];
    MIB[level.min(9) as usize] << 20
}

pub enum Encoder<W: Write> {
    Xz(liblzma::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub fn new(w: W, opts: EncodeOptions) -> io::Result<Encoder<W>> {
        match opts.codec {
            Codec::Xz => {
                let mut filters = Filters::new();
                if opts.x86_filter {
                    filters.x86();
                }
                filters.lzma2(&LzmaOptions::new_preset(opts.xz_level()).map_err(io::Error::other)?);
                let stream =
                    Stream::new_stream_encoder(&filters, Check::Crc64).map_err(io::Error::other)?;
                Ok(Encoder::Xz(liblzma::write::XzEncoder::new_stream(
                    w, stream,
                )))
            }
            Codec::Zstd => {
                let level = opts.level.unwrap_or(ZSTD_DEFAULT_LEVEL).clamp(1, 22) as i32;
                let mut e = zstd::stream::write::Encoder::new(w, level)?;
                if opts.level.is_none() {
                    // Level 12 sizes its match tables for an 8 MiB window; with
                    // a 128 MiB one most of the window is out of their reach.
                    // Tables of 2^25 find the matches between the images'
                    // binaries: on a 300 MB kubernetes-like set the archive
                    // was 15% smaller for 18% more CPU (2^26 gained 0.3% more
                    // for another 14%). Costs ~400 MB more memory when
                    // compressing; decompressing is unchanged.
                    e.set_parameter(zstd::zstd_safe::CParameter::HashLog(ZSTD_TABLE_LOG))?;
                    e.set_parameter(zstd::zstd_safe::CParameter::ChainLog(ZSTD_TABLE_LOG))?;
                }
                // Always multithread (even with 1 worker) so the output does not
                // depend on the thread count.
                e.multithread(opts.threads.max(1))?;
                e.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                e.set_parameter(zstd::zstd_safe::CParameter::OverlapSizeLog(
                    ZSTD_OVERLAP_LOG,
                ))?;
                e.long_distance_matching(true)?;
                e.window_log(ZSTD_WINDOW_LOG)?;
                e.include_checksum(true)?;
                Ok(Encoder::Zstd(e))
            }
        }
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Xz(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// Memory an xz decoder may take: the writer's largest preset (-9, a 64 MiB
/// dictionary) needs ~65 MiB; a stream header that asks for more is refused
/// before the dictionary is allocated, so an unsigned file cannot make the
/// reader allocate gigabytes before the signature is checked.
pub const XZ_DECODER_MEMLIMIT: u64 = 96 << 20;

/// A decompressing reader for either codec, chosen by sniffing. It accepts what
/// the writer produces and nothing more: xz streams one after another, each
/// holding some of the archive (no empty streams, no stream padding, nothing
/// else after the last one); one zstd frame and nothing after it (no skippable
/// frames, no second frame). Truncated input is an error, never a silent short
/// read.
pub fn decoder<'a, R: BufRead + 'a>(mut r: R) -> io::Result<(Codec, Box<dyn Read + 'a>)> {
    let head = r.fill_buf()?;
    match Codec::sniff(head) {
        Some(Codec::Xz) => Ok((Codec::Xz, Box::new(XzStreams::new(r)?))),
        Some(Codec::Zstd) => {
            let mut d = zstd::stream::read::Decoder::with_buffer(r)?.single_frame();
            d.window_log_max(ZSTD_WINDOW_LOG)?;
            Ok((Codec::Zstd, Box::new(ZstdFrame(d))))
        }
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an xz or zstd file (a bundle is .tar.xz or .tar.zst)",
        )),
    }
}

fn trailing_data() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "unexpected data after the end of the compressed archive",
    )
}

/// One zstd frame, then the end of the file.
struct ZstdFrame<'a, R: BufRead>(zstd::stream::read::Decoder<'a, R>);

impl<R: BufRead> Read for ZstdFrame<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.0.get_mut().fill_buf()?.is_empty() {
            return Err(trailing_data());
        }
        Ok(n)
    }
}

/// Concatenated xz streams read one at a time, so that what lies between and
/// after them is seen: every stream must decode to at least one byte, and
/// only another stream may follow one.
struct XzStreams<R: BufRead> {
    current: Option<liblzma::bufread::XzDecoder<R>>,
    /// Bytes the current stream has produced.
    produced: u64,
}

impl<R: BufRead> XzStreams<R> {
    fn new(r: R) -> io::Result<XzStreams<R>> {
        Ok(XzStreams {
            current: Some(Self::open(r)?),
            produced: 0,
        })
    }

    fn open(r: R) -> io::Result<liblzma::bufread::XzDecoder<R>> {
        let stream =
            Stream::new_stream_decoder(XZ_DECODER_MEMLIMIT, 0).map_err(io::Error::other)?;
        Ok(liblzma::bufread::XzDecoder::new_stream(r, stream))
    }
}

impl<R: BufRead> Read for XzStreams<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(d) = self.current.as_mut() else {
                return Ok(0);
            };
            let n = d.read(buf)?;
            if n > 0 {
                self.produced += n as u64;
                return Ok(n);
            }
            // The end of one stream.
            if self.produced == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "an empty xz stream in the archive",
                ));
            }
            let mut r = self.current.take().expect("checked above").into_inner();
            let next = r.fill_buf()?;
            if next.is_empty() {
                return Ok(0);
            }
            if Codec::sniff(next) != Some(Codec::Xz) {
                return Err(trailing_data());
            }
            self.current = Some(Self::open(r)?);
            self.produced = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(codec: Codec, threads: u32) {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let opts = EncodeOptions::for_arch(codec, Some(3), threads, "amd64");
        let mut e = Encoder::new(Vec::new(), opts).unwrap();
        e.write_all(&data).unwrap();
        let out = e.finish().unwrap();
        assert_eq!(Codec::sniff(&out), Some(codec));
        let (c, mut d) = decoder(&out[..]).unwrap();
        assert_eq!(c, codec);
        let mut back = Vec::new();
        d.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        // Truncation anywhere must be an error, not a short read.
        for cut in [out.len() / 3, out.len() - 1] {
            let (_, mut d) = decoder(&out[..cut]).unwrap();
            let mut back = Vec::new();
            assert!(
                d.read_to_end(&mut back).is_err(),
                "{codec:?} truncated at {cut} read without error"
            );
        }
    }

    #[test]
    fn xz_roundtrip_and_truncation() {
        roundtrip(Codec::Xz, 1);
    }

    #[test]
    fn zstd_roundtrip_and_truncation() {
        roundtrip(Codec::Zstd, 2);
    }

    /// The x86 filter must stay readable by the plain `xz` tool.
    #[test]
    fn x86_filtered_xz_is_read_by_the_xz_tool() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| [0xE8, (i % 7) as u8, 0, 0, 0])
            .collect();
        {
            let opts = EncodeOptions::for_arch(Codec::Xz, Some(6), 1, "amd64");
            assert!(opts.x86_filter);
            let mut e = Encoder::new(Vec::new(), opts).unwrap();
            e.write_all(&data).unwrap();
            let out = e.finish().unwrap();
            let mut child = std::process::Command::new("xz")
                .args(["-d", "-c"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("xz");
            let mut stdin = child.stdin.take().unwrap();
            let writer = std::thread::spawn(move || stdin.write_all(&out));
            let res = child.wait_with_output().unwrap();
            writer.join().unwrap().unwrap();
            assert!(res.status.success());
            assert_eq!(res.stdout, data);
        }
        assert!(!EncodeOptions::for_arch(Codec::Xz, None, 1, "arm64").x86_filter);
    }

    #[test]
    fn refuses_other_formats() {
        assert!(decoder(&b"\x1f\x8b\x08gzip"[..]).is_err());
    }
}
