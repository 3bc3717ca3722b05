//! The outer compression of a bundle: xz (compact, default) or zstd (fast).

use std::io::{self, BufRead, Read, Write};

use liblzma::stream::{Check, MtStreamBuilder, Stream};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Xz,
    Zstd,
}

/// zstd window: 2^27 = 128 MiB, enough to see the redundancy between the images
/// of a kubernetes set. Decoders must allow at least this (`window_log_max`).
pub const ZSTD_WINDOW_LOG: u32 = 27;
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
    pub threads: u32,
}

pub enum Encoder<W: Write> {
    Xz(liblzma::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub fn new(w: W, opts: EncodeOptions) -> io::Result<Encoder<W>> {
        match opts.codec {
            Codec::Xz => {
                let level = opts.level.unwrap_or(9).min(9);
                // The multi-threaded encoder splits input into blocks of 3× the
                // dictionary (192 MiB at -9), so a set under that stays one block
                // and compresses exactly as `xz -9` would; larger sets use both
                // cores. One thread uses the plain encoder (no block overhead).
                let stream = if opts.threads > 1 {
                    MtStreamBuilder::new()
                        .preset(level)
                        .threads(opts.threads)
                        .check(Check::Crc64)
                        .encoder()
                } else {
                    Stream::new_easy_encoder(level, Check::Crc64)
                }
                .map_err(io::Error::other)?;
                Ok(Encoder::Xz(liblzma::write::XzEncoder::new_stream(
                    w, stream,
                )))
            }
            Codec::Zstd => {
                let level = opts.level.unwrap_or(12).clamp(1, 22) as i32;
                let mut e = zstd::stream::write::Encoder::new(w, level)?;
                // Always multithread (even with 1 worker) so the output does not
                // depend on the thread count.
                e.multithread(opts.threads.max(1))?;
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

/// A decompressing reader for either codec, chosen by sniffing. Concatenated
/// xz streams and zstd frames are read through. Truncated input is an error,
/// never a silent short read.
pub fn decoder<'a, R: BufRead + 'a>(mut r: R) -> io::Result<(Codec, Box<dyn Read + 'a>)> {
    let head = r.fill_buf()?;
    match Codec::sniff(head) {
        Some(Codec::Xz) => Ok((
            Codec::Xz,
            Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r)),
        )),
        Some(Codec::Zstd) => {
            let mut d = zstd::stream::read::Decoder::with_buffer(r)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Ok((Codec::Zstd, Box::new(d)))
        }
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an xz or zstd file (a bundle is .tar.xz or .tar.zst)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(codec: Codec, threads: u32) {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut e = Encoder::new(
            Vec::new(),
            EncodeOptions {
                codec,
                level: Some(3),
                threads,
            },
        )
        .unwrap();
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
        roundtrip(Codec::Xz, 2);
    }

    #[test]
    fn zstd_roundtrip_and_truncation() {
        roundtrip(Codec::Zstd, 2);
    }

    #[test]
    fn refuses_other_formats() {
        assert!(decoder(&b"\x1f\x8b\x08gzip"[..]).is_err());
    }
}
