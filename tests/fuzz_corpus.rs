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
        let r = reader::read_bundle(
            Cursor::new(input),
            |_| Ok(()),
            |_, e| {
                if let reader::Entry::Blob { reader, .. } = e {
                    std::io::copy(reader, &mut std::io::sink())?;
                }
                Ok(())
            },
        );
        match name.as_str() {
            "valid.tar" | "signed-shape.tar" => {
                assert!(r.is_ok(), "{name}: {:?}", r.err().map(|e| e.to_string()))
            }
            _ => assert!(r.is_err(), "{name} was accepted"),
        }
    }
}
