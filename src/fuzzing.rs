//! Entry points for the fuzz targets in `fuzz/` and for the test that replays
//! their seed corpus on stable Rust. Each takes arbitrary bytes and must return
//! without panicking, whatever they hold; where a parser's output can be
//! checked against itself (printing and re-parsing, merging twice), that is
//! asserted too, so the fuzzer finds wrong answers as well as crashes.
//!
//! These are the parsers that see bytes from outside: the archive read on the
//! isolated host before anything in it is trusted, image references from
//! profiles, the command line and bundle.json, and the administrator's
//! policy.json and registries.d files that `load` merges into.

use std::io::Cursor;
use std::path::Path;

use crate::bundle::reader::{self, Entry, Flow};
use crate::bundle::BundleManifest;
use crate::reference::Reference;
use crate::trust::{policy, registries_d};

/// The bundle reader: tar + bundle.json + layout. Input that does not start
/// with an xz or zstd magic is taken as the tar stream itself and compressed
/// with zstd first, so the fuzzer spends its time on the tar and JSON layers
/// rather than on the decompressor's framing.
pub fn bundle_reader(data: &[u8]) {
    let sniffed = crate::bundle::compress::Codec::sniff(data).is_some();
    let input = if sniffed {
        data.to_vec()
    } else {
        match zstd::stream::encode_all(data, 1) {
            Ok(v) => v,
            Err(_) => return,
        }
    };
    let result = reader::read_bundle(Cursor::new(input), &mut HalfReader { blobs: 0 });
    if let Ok(out) = result {
        // Whatever it accepted is a valid manifest in every respect.
        out.header
            .manifest
            .validate()
            .expect("accepted manifests validate");
    }
}

/// Reads only part of some blobs: the reader must drain and check the rest
/// itself.
struct HalfReader {
    blobs: u64,
}

impl reader::BundleSink for HalfReader {
    type Error = reader::ReadError;
    fn header(&mut self, _: &reader::Header) -> Result<Flow, reader::ReadError> {
        Ok(Flow::Continue)
    }
    fn entry(&mut self, _: &BundleManifest, entry: Entry<'_>) -> Result<Flow, reader::ReadError> {
        if let Entry::Blob { reader, .. } = entry {
            let mut buf = [0u8; 512];
            let _ = reader.read(&mut buf)?;
            self.blobs += 1;
            if self.blobs % 2 == 0 {
                std::io::copy(reader, &mut std::io::sink())?;
                assert!(reader.verified(), "a blob read to its end is verified");
            }
        }
        Ok(Flow::Continue)
    }
}

/// The tar entry layer of the bundle reader against GNU tar: any tar stream
/// whose entries the reader accepts must be listed by `tar -tv` with the same
/// names and sizes, in the same order, so what `verify` checked is what an
/// extraction by hand yields. Needs GNU tar on PATH.
pub fn tar_entries(data: &[u8]) {
    let Ok(ours) = reader::plain_entries(data) else {
        return;
    };
    let theirs = gnu_tar_list(data);
    assert_eq!(
        ours, theirs,
        "the reader and GNU tar list different entries"
    );
}

/// `tar -tv` of a tar stream: (name, size) per entry.
pub fn gnu_tar_list(data: &[u8]) -> Vec<(String, u64)> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("tar")
        .args(["-tv", "--numeric-owner", "-f", "-"])
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("GNU tar");
    let mut stdin = child.stdin.take().expect("piped");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("tar ran");
    let _ = writer.join();
    // -rw-r--r-- 0/0  1234 1970-01-01 00:00 name
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let size = f.nth(2)?.parse().ok()?;
            let rest: Vec<&str> = l.splitn(2, ':').collect();
            let name = rest.get(1)?.get(3..)?.to_string();
            Some((name, size))
        })
        .collect()
}

/// The image reference parser: whatever parses prints as something that
/// parses back to the same reference.
pub fn reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(s) {
        let printed = r.to_string();
        let again = Reference::parse(&printed).expect("a printed reference parses");
        assert_eq!(again, r, "{s:?} printed as {printed:?}");
        // No path component that climbs or stays (`..` inside a tag, as in
        // `v0.6..-x`, is one URL segment and harmless).
        assert!(
            printed.split('/').all(|c| c != ".." && c != "."),
            "{printed:?}"
        );
        assert!(!printed.chars().any(char::is_control), "{printed:?}");
    }
    let _ = crate::reference::is_valid_registry(s);
    let _ = crate::trust::DockerName::parse(s);
}

/// policy.json: parse; if it parses, merge our rule in; the result parses,
/// and merging again changes nothing (a re-run of `load` is a no-op).
pub fn policy(data: &[u8]) {
    if policy::parse(data).is_err() {
        return;
    }
    let key = Path::new("/var/sigstore/keys/imagemaker.pgp");
    let Ok((merged, _)) = policy::merge_signed_by(Some(data), "registry.local", key) else {
        return;
    };
    policy::parse(&merged).expect("a merged policy parses");
    let (again, changed) = policy::merge_signed_by(Some(&merged), "registry.local", key)
        .expect("a merged policy merges again");
    assert!(!changed, "a second merge changed the policy");
    assert_eq!(again, merged);
}

/// One registries.d file.
pub fn registries_d(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = registries_d::parse(text, Path::new("fuzz.yaml"));
}
