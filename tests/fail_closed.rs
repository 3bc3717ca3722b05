//! Failing closed at `verify`, `load` and `build`: hostile or broken input (an
//! oversized, deeply nested or duplicate-keyed bundle.json, sizes that lie — a
//! decompression bomb —, links, devices and directories in the archive,
//! signatures by expired and revoked keys, names with path tricks) is refused
//! with exit code 3, nothing pushed and no trust file written; a full disk
//! (RLIMIT_FSIZE) leaves every existing trust file and archive as it was; an
//! administrator's own policy.json and registries.d are merged, not replaced.
//! One real bundle is built (from a real docker-registry) and rewritten per
//! case; loads go into real registries and are checked with skopeo.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;

const SET: [&str; 9] = [
    "c10f/kube-apiserver:v1.26.9",
    "c10f/kube-controller-manager:v1.26.9",
    "c10f/kube-scheduler:v1.26.9",
    "c10f/kube-proxy:v1.26.9",
    "c10f/coredns:v1.9.3",
    "c10f/pause:3.9",
    "c10f/etcd:3.5.6-0",
    "c10f/flannel:v0.26.7",
    "c10f/flannel-cni-plugin:v1.7.1-flannel1",
];

/// bundle.json's size limit in the reader (`model::MAX_MANIFEST_BYTES`).
const MAX_MANIFEST_BYTES: usize = 16 << 20;

/// The bundle every case starts from, built once per test process.
struct Base {
    dir: PathBuf,
    /// The archive's entries in order: (name, data).
    entries: Vec<(String, Vec<u8>)>,
    builder_pub: PathBuf,
    builder_key: PathBuf,
    signer_key: PathBuf,
}

fn ub(home: &Path, args: &[&str]) -> Output {
    command(home).args(args).output().expect("run u7s-bundle")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn assert_refused(out: &Output, needle: &str, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(3),
        "{what}: expected exit 3, got {:?}: {}",
        out.status,
        text(out)
    );
    assert!(
        text(out).to_lowercase().contains(&needle.to_lowercase()),
        "{what}: the message should mention {needle:?}: {}",
        text(out)
    );
}

fn base() -> &'static Base {
    static B: OnceLock<Base> = OnceLock::new();
    B.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "bad-input-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&dir).unwrap();
        let src = Registry::start();
        Fixtures::new()
            .arches(&["amd64"])
            .size_kib(32)
            .make(&dir.join("layout"), &SET, Some(&src));
        let home = dir.join("home");
        fs::create_dir_all(&home).unwrap();
        for (who, uid) in [
            ("builder", "Builder <builder@example.org>"),
            ("imagemaker", "Image Maker <imagemaker@example.org>"),
        ] {
            let prefix = dir.join(who);
            stdout_ok(&ub(
                &home,
                &["keygen", "--uid", uid, "--output", prefix.to_str().unwrap()],
            ));
        }
        let out_dir = dir.join("bundles");
        let out = ub(
            &home,
            &[
                "build",
                "--platform",
                "k8s-c10f2",
                "--kube-version",
                "v1.26.9",
                "--arch",
                "amd64",
                "--source",
                &src.addr,
                "--plain-http",
                "--sign-key",
                dir.join("builder.key").to_str().unwrap(),
                "--output",
                out_dir.to_str().unwrap(),
                "--compression",
                "zstd",
            ],
        );
        let archive = PathBuf::from(stdout_ok(&out).trim());
        let raw = zstd::stream::decode_all(fs::File::open(&archive).unwrap()).unwrap();
        let mut entries = Vec::new();
        for e in tar::Archive::new(&raw[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let mut d = Vec::new();
            e.read_to_end(&mut d).unwrap();
            entries.push((e.path().unwrap().display().to_string(), d));
        }
        assert_eq!(entries[0].0, "bundle.json");
        assert_eq!(entries[1].0, "bundle.json.sig");
        Base {
            builder_pub: dir.join("builder.pgp"),
            builder_key: dir.join("builder.key"),
            signer_key: dir.join("imagemaker.key"),
            dir,
            entries,
        }
    })
}

impl Base {
    fn bundle_json(&self) -> Value {
        serde_json::from_slice(&self.entries[0].1).unwrap()
    }

    /// Index of the first blob entry (the first thing a load would push).
    fn first_blob(&self) -> usize {
        self.entries
            .iter()
            .position(|(n, _)| n.contains("/blobs/"))
            .unwrap()
    }

    /// Index of the largest blob entry (a layer).
    fn largest_blob(&self) -> usize {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].0.contains("/blobs/"))
            .max_by_key(|&i| self.entries[i].1.len())
            .unwrap()
    }
}

/// One entry of a rewritten archive.
enum Item {
    File(String, Vec<u8>),
    /// A raw header (any type, any size) followed by `data`.
    Raw(Box<tar::Header>, Box<dyn Read>),
}

fn files(entries: &[(String, Vec<u8>)]) -> Vec<Item> {
    entries
        .iter()
        .map(|(n, d)| Item::File(n.clone(), d.clone()))
        .collect()
}

/// A ustar header with the raw name bytes (no normalization by the tar crate).
fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let field = &mut h.as_ustar_mut().unwrap().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

/// Write `items` as a zstd-compressed tar (streaming: a bomb's zeros are never
/// held in memory).
fn write_archive(path: &Path, items: Vec<Item>) {
    let f = fs::File::create(path).unwrap();
    let enc = zstd::stream::Encoder::new(f, 1).unwrap().auto_finish();
    let mut b = tar::Builder::new(enc);
    for it in items {
        match it {
            Item::File(n, d) => {
                let h = header(&n, tar::EntryType::Regular, d.len() as u64);
                b.append(&h, &d[..]).unwrap();
            }
            Item::Raw(h, r) => b.append(&h, r).unwrap(),
        }
    }
    b.into_inner().unwrap().flush().unwrap();
}

/// `entries` with bundle.json replaced and the signature dropped (so only the
/// reader's own checks stand between the content and the registry).
fn unsigned_with(base: &Base, bundle_json: Vec<u8>) -> Vec<Item> {
    let mut v = vec![Item::File("bundle.json".into(), bundle_json)];
    v.extend(files(&base.entries[2..]));
    v
}

fn verify(archive: &Path, extra: &[&str]) -> Output {
    let b = base();
    let home = tempfile::tempdir().unwrap();
    let mut args = vec![
        "verify",
        archive.to_str().unwrap(),
        "--keyring",
        b.builder_pub.to_str().unwrap(),
    ];
    args.extend(extra);
    ub(home.path(), &args)
}

fn case_path(name: &str) -> PathBuf {
    let d = base().dir.join("cases");
    fs::create_dir_all(&d).unwrap();
    d.join(format!("{name}.u7s.tar.zst"))
}

/// A target registry and trust paths of its own.
struct Target {
    reg: Registry,
    work: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Target {
    fn new() -> Target {
        Target {
            reg: Registry::start(),
            work: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    fn load(&self, archive: &Path, keyring: &Path, extra: &[&str]) -> Output {
        let b = base();
        let sigstore = self.p("sigstore");
        let mut args: Vec<String> = vec![
            "load".into(),
            archive.display().to_string(),
            "--keyring".into(),
            keyring.display().to_string(),
            "--sign-key".into(),
            b.signer_key.display().to_string(),
            "--registry".into(),
            self.reg.addr.clone(),
            "--plain-http".into(),
            "--sigstore-dir".into(),
            sigstore.display().to_string(),
            "--keys-dir".into(),
            self.p("keys").display().to_string(),
            "--policy".into(),
            self.p("etc/containers/policy.json").display().to_string(),
            "--registries-d".into(),
            self.p("etc/containers/registries.d").display().to_string(),
            "--registries-conf-d".into(),
            self.p("etc/containers/registries.conf.d")
                .display()
                .to_string(),
            "--lookaside-url".into(),
            format!("file://{}", sigstore.display()),
            "--lock-file".into(),
            self.p("load.lock").display().to_string(),
            "--state-dir".into(),
            self.p("state").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ub(self.home.path(), &a)
    }

    /// Nothing uploaded (no POST/PATCH/PUT reached the registry), no tag, and
    /// no trust file, signature or state written.
    #[track_caller]
    fn assert_untouched(&self, what: &str) {
        let writes: Vec<_> = self
            .reg
            .requests()
            .into_iter()
            .filter(|r| matches!(r.method.as_str(), "POST" | "PATCH" | "PUT"))
            .collect();
        assert!(writes.is_empty(), "{what}: the registry got {writes:?}");
        for name in SET {
            let repo = name.split(':').next().unwrap();
            assert!(self.reg.tags(repo).is_empty(), "{what}: {repo} got a tag");
        }
        for d in ["sigstore", "keys", "etc", "state"] {
            assert!(!self.p(d).exists(), "{what}: {d} was written");
        }
    }
}

// ------------------------------------------------------------------ bundle.json

#[test]
fn an_oversized_bundle_json_is_refused_before_parsing() {
    let b = base();
    // Valid JSON (trailing whitespace), one byte over the limit.
    let mut big = b.entries[0].1.clone();
    big.resize(MAX_MANIFEST_BYTES + 1, b' ');
    let path = case_path("huge-bundle-json");
    let mut items = vec![Item::File("bundle.json".into(), big)];
    items.extend(files(&b.entries[1..]));
    write_archive(&path, items);
    let out = verify(&path, &[]);
    assert_refused(&out, "larger than the limit", "bundle.json over the cap");

    // At the limit it is parsed (and then fails only on the signature, which
    // covers the original bytes).
    let mut at = b.entries[0].1.clone();
    at.resize(MAX_MANIFEST_BYTES, b' ');
    let mut items = vec![Item::File("bundle.json".into(), at)];
    items.extend(files(&b.entries[1..]));
    write_archive(&path, items);
    let out = verify(&path, &[]);
    assert_refused(&out, "signature", "bundle.json at the cap");
}

#[test]
fn deeply_nested_bundle_json_is_refused_without_crashing() {
    let b = base();
    let original = String::from_utf8(b.entries[0].1.clone()).unwrap();
    for (field, depth) in [("platform_aliases", 100_000), ("nested", 100_000)] {
        let nested = original.replacen(
            "{",
            &format!(
                "{{\n  \"{field}\": {}\"x\"{},",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
            1,
        );
        let path = case_path(&format!("nested-{field}"));
        write_archive(&path, unsigned_with(b, nested.into_bytes()));
        let out = verify(&path, &["--allow-unsigned"]);
        // Exit 3 (not a signal: no stack overflow).
        assert_refused(&out, "bundle.json is not valid", field);
    }
}

#[test]
fn duplicate_keys_in_bundle_json_are_refused_not_last_wins() {
    let b = base();
    let original = String::from_utf8(b.entries[0].1.clone()).unwrap();
    let cases = [
        (
            "top level",
            original.replacen(
                "\"platform\": \"c10f\",",
                "\"platform\": \"c10f\",\n  \"platform\": \"p10\",",
                1,
            ),
        ),
        (
            "in an image",
            original.replacen(
                "\"name\": \"c10f/",
                "\"name\": \"c10f/evil:1\",\n      \"name\": \"c10f/",
                1,
            ),
        ),
        (
            "in a blob",
            original.replacen(
                "\"kind\": \"layer\"",
                "\"kind\": \"layer\",\n      \"kind\": \"config\"",
                1,
            ),
        ),
    ];
    for (what, dup) in cases {
        assert_ne!(dup, original, "{what}: the edit applied");
        let path = case_path("duplicate-keys");
        write_archive(&path, unsigned_with(b, dup.into_bytes()));
        let out = verify(&path, &["--allow-unsigned"]);
        assert_refused(&out, "duplicate field", what);
    }
}

#[test]
fn names_and_values_with_path_tricks_are_refused() {
    let b = base();
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 12] = [
        ("image name with ../", |v| {
            v["images"][0]["name"] = "c10f/../../etc/passwd:1".into()
        }),
        ("absolute image name", |v| {
            v["images"][0]["name"] = "/c10f/pause:3.9".into()
        }),
        ("uppercase image name", |v| {
            v["images"][0]["name"] = "C10F/Pause:3.9".into()
        }),
        ("control character in a name", |v| {
            v["images"][0]["name"] = "c10f/pause:3.9\u{1b}[2J".into()
        }),
        ("image name with a registry", |v| {
            v["images"][0]["name"] = "evil.example.org/c10f/pause:3.9".into()
        }),
        ("platform ..", |v| v["platform"] = "..".into()),
        ("arch with /", |v| v["arch"] = "../amd64".into()),
        ("legacy prefix with ../", |v| {
            v["legacy_prefixes"] = serde_json::json!(["k8s/../../etc"])
        }),
        ("kube_version with a newline", |v| {
            v["kube_version"] = "v1.26.9\nU7S_EVIL=1".into()
        }),
        ("flannel tag with /", |v| v["flannel_tag"] = "../v1".into()),
        ("tool with an escape", |v| {
            v["tool"] = "u7s-bundle\u{1b}]0;owned\u{7}".into()
        }),
        ("media type with CRLF", |v| {
            v["blobs"][0]["media_type"] = "application/json\r\nX-Evil: 1".into()
        }),
    ];
    for (what, edit) in cases {
        let mut v = b.bundle_json();
        edit(&mut v);
        let path = case_path("path-tricks");
        write_archive(
            &path,
            unsigned_with(b, serde_json::to_vec_pretty(&v).unwrap()),
        );
        let out = verify(&path, &["--allow-unsigned"]);
        assert_refused(&out, "bundle.json is not valid", what);
    }

    // At load too: refused before anything reaches the registry.
    let t = Target::new();
    let mut v = b.bundle_json();
    v["images"][0]["name"] = "c10f/../../etc/passwd:1".into();
    let path = case_path("path-tricks-load");
    write_archive(
        &path,
        unsigned_with(b, serde_json::to_vec_pretty(&v).unwrap()),
    );
    let out = t.load(&path, &b.builder_pub, &["--allow-unsigned"]);
    assert_refused(&out, "invalid image reference", "load with ../ in a name");
    t.assert_untouched("load with ../ in a name");

    // On the command line and in profiles, the same grammar.
    let home = tempfile::tempdir().unwrap();
    let out_dir = home.path().join("bundles");
    let out = ub(
        home.path(),
        &[
            "build",
            "--platform",
            "k8s-c10f2",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--source",
            "127.0.0.1:9",
            "--plain-http",
            "--sign-key",
            b.builder_key.to_str().unwrap(),
            "--output",
            out_dir.to_str().unwrap(),
            "--extra-image",
            "registry.example.org/ok:1=c10f/../../etc:1",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("c10f/../../etc:1"), "{}", text(&out));
    assert!(
        fs::read_dir(&out_dir).map_or(true, |mut d| d.next().is_none()),
        "nothing written by a refused build"
    );
    let profiles = home.path().join("profiles");
    fs::create_dir_all(&profiles).unwrap();
    fs::write(
        profiles.join("evil.toml"),
        "[[platform]]\nname = \"../evil\"\nkind = \"base\"\ndescription = \"d\"\nbranches = [\"p10\"]\nimages = [\"alt\"]\n",
    )
    .unwrap();
    let out = ub(
        home.path(),
        &["profiles", "--profiles-dir", profiles.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("\"../evil\""), "{}", text(&out));
}

// ------------------------------------------------------------------ bytes and names

#[test]
fn a_flipped_byte_in_the_signature_a_manifest_or_a_config_is_refused() {
    let b = base();
    let v = b.bundle_json();
    let of_kind = |kind: &str| -> String {
        let d = v["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["kind"] == kind)
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string();
        format!("amd64/blobs/sha256/{}", d.trim_start_matches("sha256:"))
    };
    let cases = [
        ("signature", "bundle.json.sig".to_string(), "signature"),
        ("manifest", of_kind("manifest"), "does not match"),
        ("config", of_kind("config"), "does not match"),
    ];
    for (what, target, needle) in cases {
        let mut entries = b.entries.clone();
        let e = entries.iter_mut().find(|(n, _)| *n == target).unwrap();
        // Past the signature packet's header (a flip there is "malformed",
        // also refused, but the point here is the cryptographic check).
        let i = e.1.len() - 10;
        e.1[i] ^= 0x01;
        let path = case_path(&format!("flipped-{what}"));
        write_archive(&path, files(&entries));
        assert_refused(&verify(&path, &[]), needle, what);
    }
}

#[test]
fn absolute_and_dot_entry_names_are_refused() {
    let b = base();
    for name in [
        "/etc/cron.d/evil",
        "./amd64/oci-layout",
        "amd64//oci-layout",
    ] {
        let mut items = files(&b.entries);
        items.push(Item::File(name.into(), b"x".to_vec()));
        let path = case_path("odd-name");
        write_archive(&path, items);
        assert_refused(&verify(&path, &[]), "never makes", name);
    }
}

// ------------------------------------------------------------------ sizes

/// Run `verify` and return (output, the child's peak RSS in KiB) via wait4.
// The child is reaped by wait4(2) itself, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn verify_measured(archive: &Path, extra: &[&str]) -> (Output, i64) {
    let b = base();
    let home = tempfile::tempdir().unwrap();
    let mut child = command(home.path())
        .arg("verify")
        .arg(archive)
        .args(["--keyring", b.builder_pub.to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        so.read_to_end(&mut v).unwrap();
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        se.read_to_end(&mut v).unwrap();
        v
    });
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter; the pid is our child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid);
    use std::os::unix::process::ExitStatusExt;
    let out = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    };
    (out, ru.ru_maxrss)
}

#[test]
fn a_blob_larger_than_declared_is_refused_at_its_header() {
    let b = base();
    // A decompression bomb: the layer's name, but 4 GiB of zeros (a few
    // hundred KiB compressed). bundle.json is the signed original.
    let i = b.largest_blob();
    let (name, data) = &b.entries[i];
    let declared = data.len();
    const BOMB: u64 = 4 << 30;
    let mut items = files(&b.entries[..i]);
    items.push(Item::Raw(
        Box::new(header(name, tar::EntryType::Regular, BOMB)),
        Box::new(std::io::repeat(0).take(BOMB)),
    ));
    items.extend(files(&b.entries[i + 1..]));
    let path = case_path("bomb");
    write_archive(&path, items);
    assert!(fs::metadata(&path).unwrap().len() < 64 << 20);
    let (out, max_rss_kib) = verify_measured(&path, &[]);
    assert_refused(
        &out,
        &format!("is {BOMB} bytes, bundle.json says {declared}"),
        "bomb",
    );
    // Stopped at the header: not held (4 GiB of memory), and the message is
    // the header's size check, not a digest mismatch after reading it all.
    assert!(max_rss_kib < 256 * 1024, "peak RSS {max_rss_kib} KiB");

    // And the other way round: bundle.json declares more than the entry holds
    // (unsigned, so only the size check can refuse it).
    let mut v = b.bundle_json();
    let hex = name.rsplit('/').next().unwrap();
    let blob = v["blobs"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|x| x["digest"].as_str().unwrap().ends_with(hex))
        .unwrap();
    blob["size"] = (declared as u64 + 1).into();
    write_archive(
        &path,
        unsigned_with(b, serde_json::to_vec_pretty(&v).unwrap()),
    );
    let out = verify(&path, &["--allow-unsigned"]);
    assert_refused(
        &out,
        &format!("is {declared} bytes, bundle.json says {}", declared + 1),
        "declared size larger than the entry",
    );
}

// ------------------------------------------------------------------ entry types

#[test]
fn links_devices_and_directories_are_refused_at_load_before_any_push() {
    let b = base();
    let t = Target::new();
    let i = b.first_blob();
    let name = b.entries[i].0.clone();
    let link = |kind: tar::EntryType, target: &str| {
        let mut h = header(&name, kind, 0);
        h.set_link_name(target).unwrap();
        h.set_cksum();
        h
    };
    let device = |kind: tar::EntryType| {
        let mut h = header(&name, kind, 0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_cksum();
        h
    };
    let cases: Vec<(&str, tar::Header)> = vec![
        ("symlink", link(tar::EntryType::Symlink, "/etc/shadow")),
        ("hard link", link(tar::EntryType::Link, "bundle.json")),
        ("character device", device(tar::EntryType::Char)),
        ("block device", device(tar::EntryType::Block)),
        ("fifo", header(&name, tar::EntryType::Fifo, 0)),
        (
            "directory",
            header(&format!("{name}/"), tar::EntryType::Directory, 0),
        ),
    ];
    for (what, h) in cases {
        // In place of the first blob: the signature and bundle.json are the
        // good, signed ones.
        let mut items = files(&b.entries[..i]);
        items.push(Item::Raw(Box::new(h), Box::new(std::io::empty())));
        items.extend(files(&b.entries[i + 1..]));
        let path = case_path("entry-type");
        write_archive(&path, items);
        let out = t.load(&path, &b.builder_pub, &[]);
        let needle = if what == "directory" {
            "" // named `<blob>/`: not listed in bundle.json
        } else {
            "regular files"
        };
        assert_refused(&out, needle, what);
        t.assert_untouched(what);
    }
}

// ------------------------------------------------------------------ keys

mod keys {
    use super::*;
    use openpgp::cert::prelude::*;
    use openpgp::serialize::stream::{Message, Signer};
    use openpgp::serialize::SerializeInto;
    use openpgp::types::{HashAlgorithm, KeyFlags, ReasonForRevocation};
    use sequoia_openpgp as openpgp;

    /// An RSA signing key shaped like `keygen`'s (signing primary), created
    /// at `created` and valid for `validity`.
    pub fn cert(uid: &str, created: SystemTime, validity: Option<Duration>) -> Cert {
        CertBuilder::new()
            .set_profile(openpgp::Profile::RFC4880)
            .unwrap()
            .set_cipher_suite(CipherSuite::RSA3k)
            .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
            .set_creation_time(created)
            .set_validity_period(validity)
            .add_userid(uid)
            .generate()
            .unwrap()
            .0
    }

    fn keypair(c: &Cert) -> openpgp::crypto::KeyPair {
        c.primary_key()
            .key()
            .clone()
            .parts_into_secret()
            .unwrap()
            .into_keypair()
            .unwrap()
    }

    /// A detached binary signature over `data`, made at `at`.
    pub fn sign(c: &Cert, data: &[u8], at: SystemTime) -> Vec<u8> {
        let mut out = Vec::new();
        let m = Message::new(&mut out);
        let mut w = Signer::new(m, keypair(c))
            .unwrap()
            .hash_algo(HashAlgorithm::SHA256)
            .unwrap()
            .detached()
            .creation_time(at)
            .build()
            .unwrap();
        w.write_all(data).unwrap();
        w.finalize().unwrap();
        out
    }

    /// `c` with a revocation ("retired": the soft kind) added.
    pub fn revoked(c: &Cert) -> Cert {
        let rev = c
            .revoke(&mut keypair(c), ReasonForRevocation::KeyRetired, b"retired")
            .unwrap();
        c.clone().insert_packets(rev).unwrap().0
    }

    pub fn public(c: &Cert) -> Vec<u8> {
        c.clone()
            .strip_secret_key_material()
            .armored()
            .to_vec()
            .unwrap()
    }
}

/// The original bundle with `sig` in place of its signature.
fn resigned(b: &Base, name: &str, sig: Vec<u8>) -> PathBuf {
    let mut items = vec![
        Item::File("bundle.json".into(), b.entries[0].1.clone()),
        Item::File("bundle.json.sig".into(), sig),
    ];
    items.extend(files(&b.entries[2..]));
    let path = case_path(name);
    write_archive(&path, items);
    path
}

#[test]
fn signatures_by_expired_or_revoked_keys_are_refused_at_load() {
    let b = base();
    let t = Target::new();
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let raw = &b.entries[0].1;

    // Expired: created two days ago, valid for one; signed while it was valid.
    let expired = keys::cert("Expired <expired@example.org>", now - 2 * day, Some(day));
    let archive = resigned(b, "expired", keys::sign(&expired, raw, now - day - day / 2));
    let ring = t.p("expired.pgp");
    fs::write(&ring, keys::public(&expired)).unwrap();
    let out = t.load(&archive, &ring, &[]);
    assert_refused(&out, "expired", "signed by an expired key");
    t.assert_untouched("expired key");

    // Revoked (even the soft "retired" kind), signed before the revocation.
    let good = keys::cert("Retired <retired@example.org>", now - 2 * day, None);
    let archive = resigned(b, "revoked", keys::sign(&good, raw, now - day));
    // Control: with the key not (yet) revoked, the same archive verifies.
    let ring_good = t.p("good.pgp");
    fs::write(&ring_good, keys::public(&good)).unwrap();
    let out = ub(
        t.home.path(),
        &[
            "verify",
            archive.to_str().unwrap(),
            "--keyring",
            ring_good.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "control: {}", text(&out));
    let ring = t.p("revoked.pgp");
    fs::write(&ring, keys::public(&keys::revoked(&good))).unwrap();
    let out = t.load(&archive, &ring, &[]);
    assert_refused(&out, "revoked", "signed by a revoked key");
    t.assert_untouched("revoked key");
}

// ------------------------------------------------------------------ full disk

/// Run u7s-bundle with RLIMIT_FSIZE = `limit` bytes and SIGXFSZ ignored: any
/// write that would grow a file past `limit` fails with EFBIG ("File too
/// large"), which is what a full disk looks like to the writer.
fn ub_fsize(home: &Path, args: &[String], limit: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = command(home);
    cmd.args(args);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

/// Every file under `dir`, (relative path, bytes), sorted.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// An administrator's own policy: a default of reject, rules for other
/// registries, other transports. Padded with more rules to `min_len` bytes.
fn custom_policy(min_len: usize) -> Vec<u8> {
    let mut docker = serde_json::Map::new();
    docker.insert(
        "registry.example.org".into(),
        serde_json::json!([{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/etc/pki/containers/example.gpg"}]),
    );
    docker.insert(
        "quay.io/allowed".into(),
        serde_json::json!([{"type": "insecureAcceptAnything"}]),
    );
    let mut i = 0;
    loop {
        let v = serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {
                "docker": docker,
                "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]},
                "oci": {"": [{"type": "insecureAcceptAnything"}]},
            }
        });
        let bytes = serde_json::to_vec_pretty(&v).unwrap();
        if bytes.len() >= min_len {
            return bytes;
        }
        docker.insert(
            format!("mirror{i}.example.org"),
            serde_json::json!([{"type": "reject"}]),
        );
        i += 1;
    }
}

const OTHER_YAML: &str = "# signatures of the example registry\ndocker:\n  registry.example.org:\n    lookaside: https://sigs.example.org/sigstore\n";
const FOREIGN_DEFAULT_YAML: &str =
    "# the site's default\ndefault-docker:\n  lookaside: file:///var/lib/containers/sigstore\n";

/// Pre-existing trust files as an administrator left them.
fn seed_trust_files(t: &Target, policy_len: usize) {
    let etc = t.p("etc/containers");
    fs::create_dir_all(etc.join("registries.d")).unwrap();
    fs::write(etc.join("policy.json"), custom_policy(policy_len)).unwrap();
    fs::write(etc.join("registries.d/other.yaml"), OTHER_YAML).unwrap();
    fs::write(etc.join("registries.d/default.yaml"), FOREIGN_DEFAULT_YAML).unwrap();
    fs::create_dir_all(t.p("keys")).unwrap();
    fs::write(t.p("keys/example.pgp"), b"an administrator's key\n").unwrap();
}

fn load_args(t: &Target, archive: &Path) -> Vec<String> {
    let b = base();
    let sigstore = t.p("sigstore");
    vec![
        "load".into(),
        archive.display().to_string(),
        "--keyring".into(),
        b.builder_pub.display().to_string(),
        "--sign-key".into(),
        b.signer_key.display().to_string(),
        "--registry".into(),
        t.reg.addr.clone(),
        "--plain-http".into(),
        "--sigstore-dir".into(),
        sigstore.display().to_string(),
        "--keys-dir".into(),
        t.p("keys").display().to_string(),
        "--policy".into(),
        t.p("etc/containers/policy.json").display().to_string(),
        "--registries-d".into(),
        t.p("etc/containers/registries.d").display().to_string(),
        "--registries-conf-d".into(),
        t.p("etc/containers/registries.conf.d")
            .display()
            .to_string(),
        "--lookaside-url".into(),
        format!("file://{}", sigstore.display()),
        "--lock-file".into(),
        t.p("load.lock").display().to_string(),
        "--state-dir".into(),
        t.p("state").display().to_string(),
    ]
}

fn the_archive() -> PathBuf {
    let b = base();
    let path = case_path("original");
    if !path.exists() {
        write_archive(&path, files(&b.entries));
    }
    path
}

#[test]
fn a_full_disk_while_writing_trust_files_leaves_them_intact() {
    let t = Target::new();
    // A policy larger than the limit: its rewrite is the write that fails.
    // Signatures, the public key (~2 KiB) and the state's tag record
    // (~0.5 KiB a tag) fit under it.
    const LIMIT: u64 = 32 << 10;
    seed_trust_files(&t, 48 << 10);
    let before_etc = tree(&t.p("etc"));
    let before_keys = tree(&t.p("keys"));
    let out = ub_fsize(t.home.path(), &load_args(&t, &the_archive()), LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("File too large") && text(&out).contains("policy.json"),
        "names the file and the cause: {}",
        text(&out)
    );
    assert_eq!(
        tree(&t.p("etc")),
        before_etc,
        "policy.json and registries.d intact, no temp file"
    );
    let keys_after = tree(&t.p("keys"));
    assert!(
        keys_after
            .iter()
            .all(|(n, _)| !n.starts_with('.') && !n.contains(".tmp-")),
        "no temporary file in the keys directory: {keys_after:?}"
    );
    assert!(
        before_keys.iter().all(|f| keys_after.contains(f)),
        "the administrator's key is intact"
    );
    // With room again the same load completes and merges.
    let out = ub(
        t.home.path(),
        &load_args(&t, &the_archive())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_full_disk_during_build_leaves_no_archive_under_the_final_name() {
    let b = base();
    let src = Registry::start();
    let work = tempfile::tempdir().unwrap();
    Fixtures::new().arches(&["amd64"]).size_kib(32).make(
        &work.path().join("layout"),
        &SET,
        Some(&src),
    );
    let home = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let args = |out: &Path| -> Vec<String> {
        [
            "build",
            "--platform",
            "k8s-c10f2",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--source",
            &src.addr,
            "--plain-http",
            "--sign-key",
            b.builder_key.to_str().unwrap(),
            "--compression",
            "zstd",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // Warm the cache, so the limited run fails writing the archive itself.
    let first = work.path().join("first");
    let out = ub(
        home.path(),
        &args(&first).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let built = PathBuf::from(stdout_ok(&out).trim());
    let size = fs::metadata(&built).unwrap().len();
    assert!(size > 8 << 10, "{size}");

    // Room for half the archive.
    let second = work.path().join("second");
    fs::create_dir_all(&second).unwrap();
    let out = ub_fsize(home.path(), &args(&second), size / 2);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("File too large"),
        "the cause is named: {}",
        text(&out)
    );
    let left: Vec<_> = fs::read_dir(&second)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "nothing left in the output directory: {left:?}"
    );
}

// ------------------------------------------------------------------ merging

#[test]
fn an_existing_policy_and_registries_d_are_merged_backed_up_and_kept() {
    let t = Target::new();
    seed_trust_files(&t, 0);
    let etc = t.p("etc/containers");
    let original_policy = fs::read(etc.join("policy.json")).unwrap();
    let out = ub(
        t.home.path(),
        &load_args(&t, &the_archive())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // policy.json: ours added, everything else as it was.
    let merged: Value =
        serde_json::from_slice(&fs::read(etc.join("policy.json")).unwrap()).unwrap();
    let orig: Value = serde_json::from_slice(&original_policy).unwrap();
    assert_eq!(merged["default"], orig["default"], "default of reject kept");
    for transport in ["docker-daemon", "oci"] {
        assert_eq!(
            merged["transports"][transport],
            orig["transports"][transport]
        );
    }
    for scope in ["registry.example.org", "quay.io/allowed"] {
        assert_eq!(
            merged["transports"]["docker"][scope], orig["transports"]["docker"][scope],
            "{scope} kept"
        );
    }
    let ours = &merged["transports"]["docker"][t.reg.addr.as_str()];
    assert_eq!(ours[0]["type"], "signedBy", "{merged:#}");
    assert!(
        ours[0]["keyPath"]
            .as_str()
            .unwrap()
            .ends_with("keys/imagemaker.pgp"),
        "{ours}"
    );
    // The backup holds the original bytes.
    let backups: Vec<_> = fs::read_dir(&etc)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("policy.json") && n != "policy.json"
        })
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(fs::read(&backups[0]).unwrap(), original_policy);

    // registries.d: the other files untouched, our scope added beside them.
    let rd = etc.join("registries.d");
    assert_eq!(
        fs::read_to_string(rd.join("other.yaml")).unwrap(),
        OTHER_YAML
    );
    assert_eq!(
        fs::read_to_string(rd.join("default.yaml")).unwrap(),
        FOREIGN_DEFAULT_YAML,
        "a foreign default-docker is left alone"
    );
    assert_eq!(
        fs::read(t.p("keys/example.pgp")).unwrap(),
        b"an administrator's key\n"
    );

    // The merged files work for the cluster's verifier: skopeo pulls our image
    // with them, and still refuses what the default rejects.
    let dest = t.p("pulled");
    let pull = |image: &str| {
        let _ = fs::remove_dir_all(&dest);
        fs::create_dir_all(&dest).unwrap();
        skopeo([
            "--policy",
            etc.join("policy.json").to_str().unwrap(),
            "--registries.d",
            rd.to_str().unwrap(),
            "copy",
            "--src-tls-verify=false",
            image,
            &format!("dir:{}", dest.display()),
        ])
    };
    assert_success(
        &pull(&t.reg.docker_ref(SET[0])),
        "pull with the merged policy",
    );
    // The same registry under a name the policy has no rule for: the
    // administrator's default (reject) still applies.
    let out = pull(&format!("docker://localhost:{}/{}", t.reg.port(), SET[0]));
    assert!(!out.status.success(), "the default of reject was lost");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rejected"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Idempotent: a second load changes no file and makes no new backup.
    let snapshot = tree(&t.p("etc"));
    let keys = tree(&t.p("keys"));
    let out = ub(
        t.home.path(),
        &load_args(&t, &the_archive())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        tree(&t.p("etc")),
        snapshot,
        "second load rewrote a trust file"
    );
    assert_eq!(tree(&t.p("keys")), keys);
}

// ------------------------------------------------- the tar entry layer (issue: attacks)

/// One PAX record, `"<len> key=value\n"`, its length counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

#[test]
fn pax_and_gnu_extension_records_are_refused_even_around_a_signed_bundle() {
    let b = base();
    let i = b.first_blob();
    let (name, data) = &b.entries[i];
    // size=<real> then size=<larger>: the tar crate took the first record,
    // GNU tar the last; with the signed original bundle.json.
    let mut pax = pax_record("size", &data.len().to_string());
    pax.extend(pax_record("size", &(data.len() + 4096).to_string()));
    let mut items = files(&b.entries[..i]);
    items.push(Item::Raw(
        Box::new(header(
            "././@PaxHeader",
            tar::EntryType::XHeader,
            pax.len() as u64,
        )),
        Box::new(std::io::Cursor::new(pax)),
    ));
    items.extend(files(&b.entries[i..]));
    let path = case_path("pax-size-twice");
    write_archive(&path, items);
    assert_refused(&verify(&path, &[]), "has type 'x'", "PAX size twice");

    // A GNU long name before the real entry.
    let long = format!("{name}-evil\0").into_bytes();
    let mut items = files(&b.entries[..i]);
    items.push(Item::Raw(
        Box::new(header(
            "././@LongLink",
            tar::EntryType::GNULongName,
            long.len() as u64,
        )),
        Box::new(std::io::Cursor::new(long)),
    ));
    items.extend(files(&b.entries[i..]));
    write_archive(&path, items);
    assert_refused(&verify(&path, &[]), "has type 'L'", "GNU long name");

    // The control: the same entries without extension records verify.
    write_archive(&path, files(&b.entries));
    let out = verify(&path, &[]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_huge_extension_header_is_refused_without_buffering_it() {
    let b = base();
    // First entry: a 1 GiB PAX header (about 100 KiB compressed).
    const HUGE: u64 = 1 << 30;
    let mut items = vec![Item::Raw(
        Box::new(header("././@PaxHeader", tar::EntryType::XHeader, HUGE)),
        Box::new(std::io::repeat(b'a').take(HUGE)),
    )];
    items.extend(files(&b.entries));
    let path = case_path("huge-pax");
    write_archive(&path, items);
    let (out, max_rss_kib) = verify_measured(&path, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).len() < 4096, "a short message: {}", text(&out));
    // (The bound of the bomb test: the figure includes what the test process
    // held when it forked; before the fix this was ~1.6 GB.)
    assert!(max_rss_kib < 256 * 1024, "peak RSS {max_rss_kib} KiB");
}

/// The archive's tar stream (exactly two zero blocks at its end).
fn tar_stream(items: Vec<Item>) -> Vec<u8> {
    let path = case_path("tmp-stream");
    write_archive(&path, items);
    zstd::stream::decode_all(fs::File::open(&path).unwrap()).unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    fs::write(&p, data).unwrap();
    let out = std::process::Command::new("xz")
        .args(["-0", "-T1", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn nothing_may_follow_the_end_of_the_archive() {
    let b = base();
    let tar = tar_stream(files(&b.entries));
    let check = |name: &str, bytes: Vec<u8>, ext: &str, ok: bool| {
        let d = base().dir.join("cases");
        let path = d.join(format!("{name}.u7s.tar.{ext}"));
        fs::write(&path, bytes).unwrap();
        let out = verify(&path, &[]);
        if ok {
            assert!(out.status.success(), "{name}: {}", text(&out));
        } else {
            assert_refused(&out, "after the end", name);
        }
    };
    // zstd: the writer's one frame verifies; a skippable frame, a second
    // frame or data inside the tar stream after its end do not.
    let one = zstd::stream::encode_all(&tar[..], 1).unwrap();
    check("zstd-one-frame", one.clone(), "zst", true);
    let mut skippable = one.clone();
    skippable.extend([0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, b'e', b'v', b'i', b'l']);
    check("zstd-skippable", skippable, "zst", false);
    let mut second = one.clone();
    second.extend(zstd::stream::encode_all(&[0u8; 512][..], 1).unwrap());
    check("zstd-second-frame", second, "zst", false);
    let mut longer = tar.clone();
    longer.extend(b"appended");
    check(
        "tar-appended",
        zstd::stream::encode_all(&longer[..], 1).unwrap(),
        "zst",
        false,
    );

    // xz: streams one after another verify (the writer cuts the tar into
    // several); an empty stream, stream padding or garbage after them do not.
    let cut = tar.len() / 2;
    let mut two = xz(&tar[..cut]);
    two.extend(xz(&tar[cut..]));
    check("xz-two-streams", two.clone(), "xz", true);
    let mut empty = two.clone();
    empty.extend(xz(b""));
    let d = base().dir.join("cases");
    let path = d.join("xz-empty.u7s.tar.xz");
    fs::write(&path, empty).unwrap();
    assert_refused(&verify(&path, &[]), "empty xz stream", "xz empty stream");
    let mut padded = two.clone();
    padded.extend([0u8; 4]);
    check("xz-padding", padded, "xz", false);
}

#[test]
fn a_huge_declared_config_is_refused_at_the_header_not_aborted_on() {
    let b = base();
    let t = Target::new();
    let mut v = b.bundle_json();
    let config = v["blobs"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|x| x["kind"] == "config")
        .unwrap();
    config["size"] = (1u64 << 40).into();
    let hex = config["digest"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    // The entry's header says 1 TiB as well (and the archive ends there):
    // the size check at the entry agrees, and the loader used to reserve
    // that much memory for it and abort.
    let mut items = vec![Item::File(
        "bundle.json".into(),
        serde_json::to_vec_pretty(&v).unwrap(),
    )];
    for (n, d) in &b.entries[2..] {
        if n.ends_with(&hex) {
            items.push(Item::Raw(
                Box::new(header(n, tar::EntryType::Regular, 1 << 40)),
                Box::new(std::io::empty()),
            ));
            break;
        }
        items.push(Item::File(n.clone(), d.clone()));
    }
    let path = case_path("tib-config");
    write_archive(&path, items);
    let out = t.load(&path, &b.builder_pub, &["--allow-unsigned"]);
    assert_refused(&out, "the limit is", "1 TiB config");
    t.assert_untouched("1 TiB config");
}

/// A bundle for another architecture (signed or not) would re-point this
/// host's tags to images it cannot run: refused unless --arch names it.
#[test]
fn a_bundle_for_another_architecture_is_refused_unless_asked_for() {
    let b = base();
    let t = Target::new();
    let mut v = b.bundle_json();
    v["arch"] = "arm64".into();
    let mut items = vec![Item::File(
        "bundle.json".into(),
        serde_json::to_vec_pretty(&v).unwrap(),
    )];
    for (n, d) in &b.entries[2..] {
        let renamed = n.replacen("amd64/", "arm64/", 1);
        items.push(Item::File(renamed, d.clone()));
    }
    let path = case_path("arm64");
    write_archive(&path, items);
    let out = t.load(&path, &b.builder_pub, &["--allow-unsigned"]);
    assert_refused(&out, "give --arch arm64", "another architecture");
    t.assert_untouched("another architecture");
    let out = t.load(
        &path,
        &b.builder_pub,
        &["--allow-unsigned", "--arch", "ppc64le"],
    );
    assert_refused(&out, "not ppc64le", "another architecture named");
}

/// A policy.json that cannot be merged fails the load before any signature
/// or tag (it used to fail after 18 tags and 18 signatures were in place).
#[test]
fn an_unmergeable_policy_fails_the_load_before_any_tag_or_signature() {
    let b = base();
    let t = Target::new();
    let policy = t.p("etc/containers/policy.json");
    fs::create_dir_all(policy.parent().unwrap()).unwrap();
    let scope = &t.reg.addr;
    fs::write(
        &policy,
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{scope}":[{{"type":"signedBy","keyType":"GPGKeys","keyData":"AAAA"}}]}}}}}}"#
        ),
    )
    .unwrap();
    let before = fs::read(&policy).unwrap();
    let path = case_path("good-for-policy");
    write_archive(&path, files(&b.entries));
    let out = t.load(&path, &b.builder_pub, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("policy.json"), "{}", text(&out));
    for name in SET {
        let repo = name.split(':').next().unwrap();
        assert!(t.reg.tags(repo).is_empty(), "{repo} got a tag");
    }
    assert!(!t.p("sigstore").exists(), "signatures were written");
    assert_eq!(fs::read(&policy).unwrap(), before);
}
