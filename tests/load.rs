//! `u7s-bundle load` into a real docker-registry, checked by skopeo — the same
//! containers/image verifier CRI-O uses — with the policy.json and registries.d
//! that load wrote.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn ub(home: &Path, args: &[&str]) -> Output {
    command(home).args(args).output().expect("run u7s-bundle")
}

/// Everything a load test needs: a built, signed bundle; a target registry; the
/// trust paths in a temp dir.
struct Site {
    _src: Registry,
    target: Registry,
    home: tempfile::TempDir,
    work: tempfile::TempDir,
    archive: PathBuf,
    builder_pub: PathBuf,
    signer_key: PathBuf,
    signer_fpr: String,
}

impl Site {
    fn new() -> Site {
        let src = Registry::start();
        let target = Registry::start();
        let work = tempfile::tempdir().unwrap();
        make_fixtures(&work.path().join("layout"), &SET, Some(&src));
        let home = tempfile::tempdir().unwrap();
        let builder = work.path().join("builder");
        stdout_ok(&ub(
            home.path(),
            &[
                "keygen",
                "--uid",
                "Builder <builder@example.org>",
                "--output",
                builder.to_str().unwrap(),
            ],
        ));
        let signer = work.path().join("imagemaker");
        let text = stdout_ok(&ub(
            home.path(),
            &[
                "keygen",
                "--uid",
                "Image Maker <imagemaker@example.org>",
                "--output",
                signer.to_str().unwrap(),
            ],
        ));
        let signer_fpr = text
            .lines()
            .find_map(|l| l.strip_prefix("fingerprint: "))
            .unwrap()
            .trim()
            .to_uppercase();
        let out_dir = work.path().join("bundles");
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
                &src.addr,
                "--plain-http",
                "--sign-key",
                builder.with_extension("key").to_str().unwrap(),
                "--output",
                out_dir.to_str().unwrap(),
                "--compression",
                "zstd",
            ],
        );
        let archive = PathBuf::from(stdout_ok(&out).trim());
        Site {
            _src: src,
            target,
            home,
            work,
            archive,
            builder_pub: builder.with_extension("pgp"),
            signer_key: signer.with_extension("key"),
            signer_fpr,
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    fn trust_args(&self) -> Vec<String> {
        let sigstore = self.p("sigstore");
        vec![
            "--registry".into(),
            self.target.addr.clone(),
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
            // Per test, so parallel tests don't queue on the host-wide lock.
            "--lock-file".into(),
            self.p("load.lock").display().to_string(),
            "--state-dir".into(),
            self.p("state").display().to_string(),
        ]
    }

    fn load(&self, archive: &Path, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec![
            "load".into(),
            archive.display().to_string(),
            "--keyring".into(),
            self.builder_pub.display().to_string(),
        ];
        args.extend(self.trust_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ub(self.home.path(), &a)
    }

    fn load_with_key(&self) -> Output {
        self.load(
            &self.archive.clone(),
            &["--sign-key", self.signer_key.to_str().unwrap()],
        )
    }

    /// `skopeo copy` of one image with the written policy and registries.d.
    fn skopeo_pull(&self, name: &str, policy: &Path) -> Output {
        let dest = self.p(&format!("pulled/{}", name.replace(['/', ':'], "_")));
        let _ = fs::remove_dir_all(&dest);
        fs::create_dir_all(&dest).unwrap();
        skopeo([
            "--policy",
            policy.to_str().unwrap(),
            "--registries.d",
            self.p("etc/containers/registries.d").to_str().unwrap(),
            "copy",
            "--src-tls-verify=false",
            &self.target.docker_ref(name),
            &format!("dir:{}", dest.display()),
        ])
    }

    fn trust_snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v = Vec::new();
        for d in ["keys", "etc", "sigstore"] {
            snapshot(&self.p(d), &mut v);
        }
        v.sort();
        v
    }
}

fn snapshot(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            snapshot(&p, out);
        } else {
            out.push((p.clone(), fs::read(&p).unwrap()));
        }
    }
}

fn legacy(name: &str) -> String {
    name.replacen("c10f/", "k8s-c10f2/", 1)
}

#[test]
fn loaded_images_pass_skopeo_with_the_written_policy_and_fail_when_tampered() {
    let s = Site::new();
    let out = s.load_with_key();
    let text = stdout_ok(&out);
    assert!(text.contains(&s.signer_fpr), "{text}");
    let policy = s.p("etc/containers/policy.json");

    // The policy: default reject, signedBy for the registry with our key.
    let pj: Value = serde_json::from_slice(&fs::read(&policy).unwrap()).unwrap();
    assert_eq!(pj["default"][0]["type"], "reject");
    let rule = &pj["transports"]["docker"][&s.target.addr][0];
    assert_eq!(rule["type"], "signedBy");
    assert_eq!(rule["keyType"], "GPGKeys");
    assert_eq!(
        rule["keyPath"],
        s.p("keys/imagemaker.pgp").display().to_string()
    );
    assert_eq!(
        fs::read(s.p("keys/policy.json")).unwrap(),
        fs::read(&policy).unwrap(),
        "copy for other nodes"
    );
    let last: Value =
        serde_json::from_slice(&fs::read(s.p("state/last-bundle.json")).unwrap()).unwrap();
    assert_eq!(
        last["kube_version"], "v1.26.9",
        "load records what it loaded"
    );
    assert_eq!(last["platform"], "c10f");

    // Every image, under both names, passes the real verifier.
    for name in SET {
        for n in [name.to_string(), legacy(name)] {
            let out = s.skopeo_pull(&n, &policy);
            assert_success(&out, &format!("skopeo copy {n} with the written policy"));
        }
    }

    // Each signature file passes skopeo standalone-verify.
    let gh = gnupg_home();
    assert_success(
        &gh.gpg(["--import", s.p("keys/imagemaker.pgp").to_str().unwrap()]),
        "gpg --import",
    );
    for name in SET {
        let manifest = s.target.manifest(name).unwrap();
        let mfile = s.p("manifest.json");
        fs::write(&mfile, &manifest).unwrap();
        let digest = sha256_digest(&manifest);
        let repo = name.split(':').next().unwrap();
        let sigdir = s
            .p("sigstore")
            .join(format!("{repo}@{}", digest.replace(':', "=")));
        let sigs: Vec<_> = fs::read_dir(&sigdir).unwrap().collect();
        assert_eq!(sigs.len(), 1, "one signature for {name}");
        let out = skopeo_env(
            [
                "standalone-verify",
                mfile.to_str().unwrap(),
                &format!("{}/{name}", s.target.addr),
                &s.signer_fpr,
                sigdir.join("signature-1").to_str().unwrap(),
            ],
            &[("GNUPGHOME", gh.path().to_str().unwrap())],
        );
        assert_success(&out, &format!("standalone-verify {name}"));
    }

    // Policy pointing at another key: refused.
    let other = s.p("other");
    stdout_ok(&ub(
        s.home.path(),
        &[
            "keygen",
            "--uid",
            "O <o@example.org>",
            "--output",
            other.to_str().unwrap(),
        ],
    ));
    let other_policy = s.p("other-policy.json");
    fs::write(
        &other_policy,
        fs::read_to_string(&policy).unwrap().replace(
            &s.p("keys/imagemaker.pgp").display().to_string(),
            &other.with_extension("pgp").display().to_string(),
        ),
    )
    .unwrap();
    let out = s.skopeo_pull(SET[0], &other_policy);
    assert!(!out.status.success(), "another key must be refused");

    // One byte altered in a signature: refused.
    let name = SET[4];
    let digest = s.target.manifest_digest(name).unwrap();
    let sigfile = s
        .p("sigstore")
        .join(format!(
            "{}@{}",
            name.split(':').next().unwrap(),
            digest.replace(':', "=")
        ))
        .join("signature-1");
    let mut sig = fs::read(&sigfile).unwrap();
    let orig = sig.clone();
    let i = sig.len() - 20;
    sig[i] ^= 0x40;
    fs::write(&sigfile, &sig).unwrap();
    assert!(
        !s.skopeo_pull(name, &policy).status.success(),
        "altered signature accepted"
    );
    // Deleted: refused.
    fs::remove_file(&sigfile).unwrap();
    assert!(
        !s.skopeo_pull(name, &policy).status.success(),
        "missing signature accepted"
    );
    fs::write(&sigfile, &orig).unwrap();
    assert_success(&s.skopeo_pull(name, &policy), "restored signature");
}

#[test]
fn reload_uploads_nothing_and_keeps_one_signature_per_name() {
    let s = Site::new();
    stdout_ok(&s.load_with_key());
    let before = s.target.requests().len();
    let snap = s.trust_snapshot();
    let out = s.load(
        &s.archive.clone(),
        &["--sign-key", s.signer_key.to_str().unwrap(), "--json"],
    );
    let j: Value = serde_json::from_str(&stdout_ok(&out)).unwrap();
    assert_eq!(j["push"]["blobs_uploaded"], 0, "{j}");
    assert_eq!(j["push"]["tags_set"], 0);
    assert_eq!(j["signatures"]["written"], 0);
    assert_eq!(
        j["archive_fully_read"], false,
        "a reload need not read the layers again"
    );
    let writes: Vec<_> = s.target.requests()[before..]
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                || r.method == "PUT"
                || (r.method == "POST" && !r.path.contains("mount="))
        })
        .cloned()
        .collect();
    assert!(
        writes.is_empty(),
        "a reload wrote to the registry: {writes:?}"
    );
    assert_eq!(
        s.trust_snapshot(),
        snap,
        "a reload changed trust files or signatures"
    );
}

#[test]
fn a_tampered_or_untrusted_bundle_changes_nothing() {
    let s = Site::new();
    // Untrusted: a keyring with another key.
    let other = s.p("other");
    stdout_ok(&ub(
        s.home.path(),
        &[
            "keygen",
            "--uid",
            "O <o@example.org>",
            "--output",
            other.to_str().unwrap(),
        ],
    ));
    let mut args: Vec<String> = vec![
        "load".into(),
        s.archive.display().to_string(),
        "--keyring".into(),
        other.with_extension("pgp").display().to_string(),
        "--sign-key".into(),
        s.signer_key.display().to_string(),
    ];
    args.extend(s.trust_args());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ub(s.home.path(), &a);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.target.tags("c10f/kube-apiserver").is_empty());
    assert!(s.trust_snapshot().is_empty(), "nothing written");

    // A flipped byte in the last layer: blobs before it may land, but no tag, no
    // signature, no trust file.
    let bad = s.p("bad.u7s.tar.zst");
    let raw = Command::new("zstd")
        .arg("-dc")
        .arg(&s.archive)
        .output()
        .unwrap()
        .stdout;
    let mut ar = tar::Archive::new(&raw[..]);
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut d = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut d).unwrap();
        entries.push((e.path().unwrap().display().to_string(), d));
    }
    let last = entries
        .iter()
        .rposition(|(n, d)| n.contains("/blobs/") && d.len() > 1000)
        .unwrap();
    let mid = entries[last].1.len() / 2;
    entries[last].1[mid] ^= 1;
    let mut b = tar::Builder::new(Vec::new());
    for (n, d) in &entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(n).unwrap();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &d[..]).unwrap();
    }
    let t = s.p("bad.tar");
    fs::write(&t, b.into_inner().unwrap()).unwrap();
    assert_success(
        &Command::new("zstd")
            .arg("-q")
            .arg("-f")
            .arg(&t)
            .arg("-o")
            .arg(&bad)
            .output()
            .unwrap(),
        "zstd",
    );
    let out = s.load(&bad, &["--sign-key", s.signer_key.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in SET {
        let repo = name.split(':').next().unwrap();
        assert!(
            s.target.tags(repo).is_empty(),
            "{repo} got a tag from a bad bundle"
        );
    }
    assert!(
        s.trust_snapshot().is_empty(),
        "trust files or signatures written for a bad bundle"
    );

    // The good bundle then loads (and re-uses what the failed run uploaded).
    stdout_ok(&s.load_with_key());
    assert_success(
        &s.skopeo_pull(SET[0], &s.p("etc/containers/policy.json")),
        "pull after good load",
    );
}

#[test]
fn sign_by_uses_a_key_in_the_users_gnupg_home() {
    let s = Site::new();
    let gh = gnupg_home();
    assert_success(
        &gh.gpg([
            "--passphrase",
            "",
            "--quick-gen-key",
            "Image Maker <imagemaker@example.org>",
            "rsa3072",
            "sign,cert",
            "never",
        ]),
        "gpg keygen",
    );
    let mut args: Vec<String> = vec![
        "load".into(),
        s.archive.display().to_string(),
        "--keyring".into(),
        s.builder_pub.display().to_string(),
        "--sign-by".into(),
        "imagemaker@example.org".into(),
    ];
    args.extend(s.trust_args());
    let out = command(s.home.path())
        .args(&args)
        .env("GNUPGHOME", gh.path())
        .output()
        .unwrap();
    stdout_ok(&out);
    let policy = s.p("etc/containers/policy.json");
    for name in [SET[0], SET[6]] {
        assert_success(&s.skopeo_pull(name, &policy), name);
        assert_success(&s.skopeo_pull(&legacy(name), &policy), name);
    }
}

#[test]
fn dry_run_verifies_and_writes_nothing() {
    let s = Site::new();
    let out = s.load(
        &s.archive.clone(),
        &[
            "--sign-key",
            s.signer_key.to_str().unwrap(),
            "--dry-run",
            "--json",
        ],
    );
    let j: Value = serde_json::from_str(&stdout_ok(&out)).unwrap();
    assert_eq!(j["dry_run"], true);
    assert!(j["push"]["tags_set"].as_u64().unwrap() >= 18, "{j}");
    assert!(s.target.tags("c10f/kube-apiserver").is_empty());
    assert!(s.trust_snapshot().is_empty());
    assert!(
        s.target
            .requests()
            .iter()
            .all(|r| r.method == "GET" || r.method == "HEAD"),
        "dry run wrote to the registry"
    );
}

/// A podsec-style archive, made as podsec-k8s-save-oci makes it (skopeo into an
/// OCI layout per arch, then `tar c amd64 | xz`), loads with --allow-unsigned.
#[test]
fn a_podsec_archive_loads_with_allow_unsigned() {
    let s = Site::new();
    let layout = s.p("podsec");
    fs::create_dir_all(layout.join("amd64")).unwrap();
    for name in SET {
        let out = skopeo([
            "--insecure-policy",
            "--override-arch",
            "amd64",
            "copy",
            "--src-tls-verify=false",
            &s._src.docker_ref(name),
            &format!("oci:{}/amd64:{name}", layout.display()),
        ]);
        assert_success(&out, &format!("skopeo copy {name} → oci:"));
    }
    let archive = s.p("amd64.tar.xz");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c amd64 | xz -1 > '{}'",
            layout.display(),
            archive.display()
        ))
        .output()
        .unwrap();
    assert_success(&out, "tar | xz");

    // Unsigned input is refused unless asked for.
    let out = s.load(&archive, &["--sign-key", s.signer_key.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-unsigned"));
    assert!(s.target.tags("c10f/etcd").is_empty());

    stdout_ok(&s.load(
        &archive,
        &[
            "--sign-key",
            s.signer_key.to_str().unwrap(),
            "--allow-unsigned",
            "--arch",
            "amd64",
        ],
    ));
    let policy = s.p("etc/containers/policy.json");
    for name in SET {
        assert_success(&s.skopeo_pull(name, &policy), name);
        assert_success(&s.skopeo_pull(&legacy(name), &policy), &legacy(name));
    }
    // Same manifests as in the podsec layout: nothing was rewritten.
    let idx: Value =
        serde_json::from_slice(&fs::read(layout.join("amd64/index.json")).unwrap()).unwrap();
    let want = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == SET[6])
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.target.manifest_digest(SET[6]).unwrap(), want);
}

/// Two loads at once: the second waits for the first's lock, says for whom,
/// then completes.
#[test]
fn a_second_load_waits_for_the_lock() {
    let s = Site::new();
    let lock = s.p("u7s.lock");
    let ready = s.p("ready");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .arg("-c")
        .arg(format!(
            "echo 4242 > '{}'; touch '{}'; sleep 3",
            lock.display(),
            ready.display()
        ))
        .spawn()
        .expect("flock(1) from util-linux");
    while !ready.exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = s.load(
        &s.archive.clone(),
        &[
            "--sign-key",
            s.signer_key.to_str().unwrap(),
            "--lock-file",
            lock.to_str().unwrap(),
        ],
    );
    // (--lock-file given twice: the last one counts.)
    holder.wait().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("waiting for another load") && err.contains("pid 4242"),
        "{err}"
    );
    stdout_ok(&out);
    assert_eq!(s.target.tags("c10f/pause"), vec!["3.9".to_string()]);
}

/// `--layer-compression gzip|zstd`: layers go compressed, manifests point at
/// the compressed blobs, configs (image IDs) stay, the signatures are for the
/// manifests as pushed, and a reload compresses to the same blobs so it
/// uploads and signs nothing.
#[test]
fn layer_compression_pushes_compressed_layers_that_verify() {
    let s = Site::new();
    let policy = s.p("etc/containers/policy.json");
    for (how, media_type, magic) in [
        (
            "gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &[0x1f, 0x8b][..],
        ),
        (
            "zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            &[0x28, 0xb5, 0x2f, 0xfd][..],
        ),
    ] {
        let key = s.signer_key.to_str().unwrap();
        let args = ["--sign-key", key, "--layer-compression", how, "--json"];
        let first: Value = serde_json::from_str(&stdout_ok(&s.load(&s.archive, &args))).unwrap();
        assert!(
            first["push"]["blobs_uploaded"].as_u64().unwrap() > 0,
            "{first}"
        );
        for name in SET {
            let m: Value = serde_json::from_slice(&s.target.manifest(name).unwrap()).unwrap();
            let repo = name.split(':').next().unwrap();
            for l in m["layers"].as_array().unwrap() {
                assert_eq!(l["mediaType"], media_type, "{how}: {name}");
                let blob = s.target.blob(repo, l["digest"].as_str().unwrap()).unwrap();
                assert!(blob.starts_with(magic), "{how}: {name}: not {how} data");
                assert_eq!(blob.len() as u64, l["size"].as_u64().unwrap());
            }
            for n in [name.to_string(), legacy(name)] {
                assert_success(&s.skopeo_pull(&n, &policy), &format!("{how}: skopeo {n}"));
            }
            // The manifest pushed is the one reported.
            let digest = s.target.manifest_digest(name).unwrap();
            let reported = first["images"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["name"] == format!("{}/{name}", s.target.addr))
                .unwrap_or_else(|| panic!("{name} in {first}"));
            assert_eq!(reported["digest"], digest);
        }
        let again: Value = serde_json::from_str(&stdout_ok(&s.load(&s.archive, &args))).unwrap();
        assert_eq!(again["push"]["blobs_uploaded"], 0, "{how} reload: {again}");
        assert_eq!(again["push"]["tags_set"], 0, "{how} reload: {again}");
        assert_eq!(again["signatures"]["written"], 0, "{how} reload: {again}");
    }
    // The images keep their configs: the same image IDs as an uncompressed load.
    let gz_config = {
        let m: Value = serde_json::from_slice(&s.target.manifest(SET[0]).unwrap()).unwrap();
        m["config"]["digest"].clone()
    };
    stdout_ok(&s.load_with_key());
    let m: Value = serde_json::from_slice(&s.target.manifest(SET[0]).unwrap()).unwrap();
    assert_eq!(m["config"]["digest"], gz_config);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
}

#[test]
fn a_passphrase_protected_gpg_key_fails_before_any_push_and_works_with_a_passphrase_file() {
    let s = Site::new();
    let gh = gnupg_home();
    assert_success(
        &gh.gpg([
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "correct horse",
            "--quick-gen-key",
            "Image Maker <imagemaker@example.org>",
            "rsa3072",
            "sign,cert",
            "never",
        ]),
        "gpg keygen",
    );
    let run = |extra: &[String]| {
        let mut args: Vec<String> = vec![
            "load".into(),
            s.archive.display().to_string(),
            "--keyring".into(),
            s.builder_pub.display().to_string(),
            "--sign-by".into(),
            "imagemaker@example.org".into(),
        ];
        args.extend(s.trust_args());
        args.extend(extra.iter().cloned());
        command(s.home.path())
            .args(&args)
            .env("GNUPGHOME", gh.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // No terminal, no passphrase file: stops before the registry sees a write.
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--passphrase-file") && err.contains("terminal"),
        "{err}"
    );
    let writes: Vec<_> = s
        .target
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .collect();
    assert!(
        writes.is_empty(),
        "pushed before signing was proven: {writes:?}"
    );

    let pass = s.p("passphrase");
    fs::write(&pass, "correct horse\n").unwrap();
    fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    stdout_ok(&run(&[
        "--passphrase-file".into(),
        pass.display().to_string(),
    ]));
}

#[test]
fn without_root_every_unwritable_path_is_named_before_the_archive_is_read() {
    let s = Site::new();
    for dry in [false, true] {
        let mut args: Vec<String> = vec![
            "load".into(),
            s.archive.display().to_string(),
            "--sign-key".into(),
            s.signer_key.display().to_string(),
        ];
        args.extend(s.trust_args());
        if dry {
            args.push("--dry-run".into());
        }
        // An unprivileged user: the temp dirs are root's, 0700.
        let mut cmd = Command::new("setpriv");
        clean_env(&mut cmd, s.home.path());
        let out = cmd
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin())
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("run it as root"), "{err}");
        for opt in [
            "--lock-file",
            "--state-dir",
            "--sigstore-dir",
            "--keys-dir",
            "--policy",
            "--registries-d ",
            "--registries-conf-d",
        ] {
            assert!(err.contains(opt), "{opt} not named: {err}");
        }
        // Nothing was read from the archive: the message is not about it.
        assert!(!err.contains(s.archive.to_str().unwrap()), "{err}");
    }
    assert!(s
        .target
        .requests()
        .iter()
        .all(|r| r.method == "GET" && r.path == "/v2/"));
}

#[test]
fn a_missing_archive_exits_1_once_and_an_unresolvable_registry_points_at_etc_hosts() {
    let home = tempfile::tempdir().unwrap();
    let w = tempfile::tempdir().unwrap();
    let p = |r: &str| w.path().join(r).display().to_string();
    stdout_ok(&ub(
        home.path(),
        &["keygen", "--uid", "A <a@example.org>", "--output", &p("a")],
    ));
    let run = |registry: &str| {
        ub(
            home.path(),
            &[
                "load",
                &p("missing.tar.xz"),
                "--keyring",
                &p("a.pgp"),
                "--sign-key",
                &p("a.key"),
                "--registry",
                registry,
                "--plain-http",
                "--lock-file",
                &p("l"),
                "--state-dir",
                &p("s"),
                "--sigstore-dir",
                &p("sig"),
                "--keys-dir",
                &p("k"),
                "--policy",
                &p("policy.json"),
                "--registries-d",
                &p("rd"),
                "--registries-conf-d",
                &p("rcd"),
                "--dry-run",
            ],
        )
    };
    let out = run("127.0.0.1:9");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    let out = run("nosuch.invalid");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("does not resolve") && err.contains("/etc/hosts"),
        "{err}"
    );
}

/// `files[]` in `--json` are objects (path, action, backup), and `--dry-run`
/// reports the same files and actions the real run then has; a reload
/// changes none of them.
#[test]
fn dry_run_reports_the_files_the_real_run_changes() {
    let s = Site::new();
    let key = s.signer_key.to_str().unwrap().to_string();
    let files = |extra: &[&str]| -> Vec<(String, String)> {
        let mut args = vec!["--sign-key", key.as_str(), "--json"];
        args.extend_from_slice(extra);
        let j: Value =
            serde_json::from_str(&stdout_ok(&s.load(&s.archive.clone(), &args))).unwrap();
        let mut out: Vec<(String, String)> = j["files"]
            .as_array()
            .unwrap_or_else(|| panic!("files[] is not a list: {j}"))
            .iter()
            .map(|f| {
                assert!(f.get("backup").is_some(), "{f}");
                (
                    f["path"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{f}"))
                        .to_string(),
                    f["action"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{f}"))
                        .to_string(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let planned = files(&["--dry-run"]);
    assert!(planned.iter().any(|(_, a)| a == "created"), "{planned:?}");
    assert!(s.trust_snapshot().is_empty());
    assert_eq!(
        files(&[]),
        planned,
        "the real run did what the dry run said"
    );
    let again = files(&["--dry-run"]);
    assert!(again.iter().all(|(_, a)| a == "unchanged"), "{again:?}");
    assert!(files(&[]).iter().all(|(_, a)| a == "unchanged"));
}

impl Site {
    /// Another bundle of the same set from the source as it is now, with
    /// bundle.json's `created` at `epoch` (SOURCE_DATE_EPOCH) and `extra`
    /// build options, in its own directory `dir`.
    fn build_at(&self, dir: &str, epoch: i64, extra: &[&str]) -> PathBuf {
        let out_dir = self.p(dir);
        let mut args: Vec<String> = [
            "build",
            "--platform",
            "k8s-c10f2",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--source",
            &self._src.addr,
            "--plain-http",
            "--sign-key",
            self.builder_pub.with_extension("key").to_str().unwrap(),
            "--output",
            out_dir.to_str().unwrap(),
            "--compression",
            "zstd",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = command(self.home.path())
            .args(&args)
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .output()
            .unwrap();
        PathBuf::from(stdout_ok(&out).trim())
    }

    /// Every tag of the set (and its legacy name) → digest, in the target.
    fn tag_digests(&self) -> Vec<Option<String>> {
        SET.iter()
            .flat_map(|n| [n.to_string(), legacy(n)])
            .map(|n| self.target.manifest_digest(&n))
            .collect()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Rollback: a bundle built earlier, signed by the same key, does not move
/// the tags a newer one set — refused before any tag moves, exit 3, every tag
/// named. With --allow-downgrade it does, and each re-pointed tag is named
/// (old → new digest, and which bundle had set the old one), in text and
/// --json. The record lives in the state directory across runs; a tag it
/// does not explain (set outside u7s-bundle) is re-pointed and named.
#[test]
fn an_older_bundle_does_not_roll_the_tags_back_without_allow_downgrade() {
    let s = Site::new();
    let key = s.signer_key.to_str().unwrap().to_string();
    stdout_ok(&s.load(&s.archive.clone(), &["--sign-key", &key]));
    let newer = s.tag_digests();
    assert!(s.p("state/tags.json").exists(), "no tag record");

    // The source's images change; a bundle of them dated a day earlier.
    Fixtures::new()
        .size_kib(65)
        .make(&s.p("layout2"), &SET, Some(&s._src));
    let older = s.build_at("older", now() - 86_400, &[]);

    let out = s.load(&older, &["--sign-key", &key]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("--allow-downgrade") && err.contains("/c10f/pause:3.9"),
        "{err}"
    );
    assert_eq!(s.tag_digests(), newer, "a refused load moved a tag");

    let out = s.load(&older, &["--sign-key", &key, "--allow-downgrade", "--json"]);
    let j: Value = serde_json::from_str(&stdout_ok(&out)).unwrap();
    let moved = j["repointed"].as_array().unwrap();
    assert_eq!(moved.len(), 2 * SET.len(), "{j}");
    let pause = moved
        .iter()
        .find(|r| r["name"].as_str().unwrap().ends_with("/c10f/pause:3.9"))
        .unwrap();
    assert_eq!(pause["old"], newer[2 * 5].clone().unwrap());
    assert_eq!(pause["new"], s.target.manifest_digest(SET[5]).unwrap());
    assert!(pause["downgrade"].is_string() && pause["set_by"]["created"].is_string());
    assert_ne!(s.tag_digests(), newer);

    // Forward again: the newer bundle is newer than what set the tags now.
    let out = s.load(&s.archive.clone(), &["--sign-key", &key]);
    let text = stdout_ok(&out);
    assert!(
        text.contains("re-pointed") && text.contains("→") && text.contains("set by bundle"),
        "{text}"
    );
    assert_eq!(s.tag_digests(), newer);

    // No record (tags set by podsec or by hand): re-pointed, and named so.
    fs::remove_file(s.p("state/tags.json")).unwrap();
    let text = stdout_ok(&s.load(&older, &["--sign-key", &key]));
    assert!(text.contains("set outside u7s-bundle"), "{text}");
}

/// `build --expires`: a signed end of validity; load and verify refuse the
/// bundle after it (exit 3) and take it before.
#[test]
fn an_expired_bundle_is_refused_by_load_and_verify() {
    let s = Site::new();
    let key = s.signer_key.to_str().unwrap().to_string();
    let expired = s.build_at("expired", now() - 7200, &["--expires", "1h"]);
    for out in [
        s.load(&expired, &["--sign-key", &key]),
        ub(
            s.home.path(),
            &[
                "verify",
                expired.to_str().unwrap(),
                "--keyring",
                s.builder_pub.to_str().unwrap(),
            ],
        ),
    ] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(err.contains("expired"), "{err}");
    }
    assert!(s.target.tags("c10f/pause").is_empty());

    let fresh = s.build_at("fresh", now(), &["--expires", "90d"]);
    stdout_ok(&s.load(&fresh, &["--sign-key", &key]));
    let out = ub(
        s.home.path(),
        &["inspect", fresh.to_str().unwrap(), "--json"],
    );
    let j: Value = serde_json::from_str(&stdout_ok(&out)).unwrap();
    assert!(j["expires"].is_string(), "{j}");
}
