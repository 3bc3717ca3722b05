//! The fuzz targets' seed corpus (`fuzz/corpus/<target>/`), replayed on stable
//! Rust through the same entry points the cargo-fuzz targets call
//! (`u7s_bundle::fuzzing`), so every test run checks that none of the seeds —
//! including inputs the fuzzer once found — panics or breaks an invariant.

use std::fs;
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut v: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    v.sort();
    assert!(
        v.len() >= 3,
        "{}: the seed corpus is missing",
        dir.display()
    );
    v
}

fn replay(target: &str, f: fn(&[u8])) {
    for (path, data) in corpus(target) {
        let r = std::panic::catch_unwind(|| f(&data));
        assert!(r.is_ok(), "{target}: {} panicked", path.display());
    }
}

#[test]
fn bundle_reader_seeds() {
    replay("bundle_reader", u7s_bundle::fuzzing::bundle_reader);
}

#[test]
fn reference_seeds() {
    replay("reference", u7s_bundle::fuzzing::reference);
}

#[test]
fn policy_seeds() {
    replay("policy", u7s_bundle::fuzzing::policy);
}

#[test]
fn registries_d_seeds() {
    replay("registries_d", u7s_bundle::fuzzing::registries_d);
}

/// The valid seed is accepted, and each broken variant is refused: the
/// corpus exercises the paths it claims to.
#[test]
fn the_bundle_seeds_are_what_their_names_say() {
    use std::io::Cursor;
    use u7s_bundle::bundle::reader;
    for (path, data) in corpus("bundle_reader") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let input = zstd::stream::encode_all(&data[..], 1).unwrap();
        let r = reader::read_bundle(Cursor::new(input), &mut ReadAll);
        match name.as_str() {
            "valid.tar" | "signed-shape.tar" => {
                assert!(r.is_ok(), "{name}: {:?}", r.err().map(|e| e.to_string()))
            }
            _ => assert!(r.is_err(), "{name} was accepted"),
        }
    }
}

/// Reads every blob to its end.
struct ReadAll;

impl u7s_bundle::bundle::reader::BundleSink for ReadAll {
    type Error = u7s_bundle::bundle::reader::ReadError;
    fn header(
        &mut self,
        _: &u7s_bundle::bundle::reader::Header,
    ) -> Result<u7s_bundle::bundle::reader::Flow, Self::Error> {
        Ok(u7s_bundle::bundle::reader::Flow::Continue)
    }
    fn entry(
        &mut self,
        _: &u7s_bundle::bundle::BundleManifest,
        e: u7s_bundle::bundle::reader::Entry<'_>,
    ) -> Result<u7s_bundle::bundle::reader::Flow, Self::Error> {
        if let u7s_bundle::bundle::reader::Entry::Blob { reader, .. } = e {
            std::io::copy(reader, &mut std::io::sink())?;
        }
        Ok(u7s_bundle::bundle::reader::Flow::Continue)
    }
}

// ------------------------------------------------- the tar entry layer vs GNU tar

/// A raw ustar header: `name` as is, type byte `kind`, `size`.
fn raw_header(name: &str, kind: u8, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    let field = &mut h.as_ustar_mut().unwrap().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    h.as_bytes().to_vec()
}

fn push_entry(tar: &mut Vec<u8>, name: &str, kind: u8, data: &[u8]) {
    tar.extend(raw_header(name, kind, data.len() as u64));
    tar.extend(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

/// One PAX record, `"<len> key=value\n"`, its length counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn end(tar: &mut Vec<u8>) {
    tar.extend([0u8; 1024]);
}

/// The crafted archives of the tar entry layer: (name, tar stream, whether
/// the reader must accept it).
fn tar_cases() -> Vec<(&'static str, Vec<u8>, bool)> {
    let blob = vec![b'B'; 700];
    let mut cases = Vec::new();

    let mut plain = Vec::new();
    push_entry(&mut plain, "bundle.json", b'0', b"{}");
    push_entry(&mut plain, "amd64/blobs/sha256/aa", b'0', &blob);
    end(&mut plain);
    cases.push(("plain.tar", plain.clone(), true));

    // PAX `size` twice: the tar crate took the first record, GNU tar the
    // last, and read a fake entry hidden in the blob's data.
    let mut hidden = Vec::new();
    push_entry(&mut hidden, "evil", b'0', b"EVIL");
    let mut data = blob.clone();
    data[..hidden.len().min(512)].copy_from_slice(&hidden[..512]);
    let mut pax = pax_record("size", &data.len().to_string());
    pax.extend(pax_record("size", "0"));
    let mut t = Vec::new();
    push_entry(&mut t, "bundle.json", b'0', b"{}");
    push_entry(&mut t, "././@PaxHeader", b'x', &pax);
    push_entry(&mut t, "amd64/blobs/sha256/aa", b'0', &data);
    end(&mut t);
    cases.push(("pax-size-twice.tar", t, false));

    // A GNU long name against a PAX path.
    let mut t = Vec::new();
    push_entry(&mut t, "bundle.json", b'0', b"{}");
    push_entry(&mut t, "././@LongLink", b'L', b"amd64/blobs/sha256/evil\0");
    push_entry(
        &mut t,
        "././@PaxHeader",
        b'x',
        &pax_record("path", "amd64/blobs/sha256/aa"),
    );
    push_entry(&mut t, "amd64/blobs/sha256/aa", b'0', &blob);
    end(&mut t);
    cases.push(("gnu-long-name-vs-pax-path.tar", t, false));

    // Data after the end, and a directory spelled as a regular file.
    let mut t = plain.clone();
    t.extend(raw_header("late", b'0', 1));
    cases.push(("after-the-end.tar", t, false));
    let mut t = Vec::new();
    push_entry(&mut t, "amd64/", b'0', b"");
    end(&mut t);
    cases.push(("slash-file.tar", t, false));
    cases
}

/// The stable half of the `tar_entries` fuzz target: on the crafted cases,
/// the entry layer refuses what GNU tar reads differently from the tar crate,
/// and what it accepts GNU tar lists alike. The seeds are written to
/// fuzz/corpus/tar_entries/ when missing.
#[test]
fn the_tar_entry_layer_accepts_only_what_gnu_tar_lists_alike() {
    use u7s_bundle::bundle::reader;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/tar_entries");
    fs::create_dir_all(&dir).unwrap();
    for (name, data, accept) in tar_cases() {
        if !dir.join(name).exists() {
            fs::write(dir.join(name), &data).unwrap();
        }
        let ours = reader::plain_entries(&data[..]);
        assert_eq!(ours.is_ok(), accept, "{name}: {:?}", ours);
        u7s_bundle::fuzzing::tar_entries(&data);
        if name == "pax-size-twice.tar" {
            // The case is what it claims: the tar crate and GNU tar disagree.
            let gnu = u7s_bundle::fuzzing::gnu_tar_list(&data);
            let crate_view: Vec<(String, u64)> = tar::Archive::new(&data[..])
                .entries()
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (e.path().unwrap().display().to_string(), e.size())
                })
                .collect();
            assert_ne!(gnu, crate_view, "{name}: both readers agree");
        }
    }
}

#[test]
fn tar_entries_seeds() {
    replay("tar_entries", u7s_bundle::fuzzing::tar_entries);
}
