//! `u7s-bundle build`, `inspect`, `verify`, `plan`, `keygen` against a real
//! docker-registry seeded with skopeo, checked with skopeo and tar.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

const SET_1_26_9: [&str; 9] = [
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

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&stdout_ok(out)).expect("JSON output")
}

fn keygen(home: &Path, prefix: &Path, uid: &str) -> String {
    let out = ub(
        home,
        &["keygen", "--uid", uid, "--output", prefix.to_str().unwrap()],
    );
    let text = stdout_ok(&out);
    let fpr = text
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .expect("fingerprint line")
        .trim()
        .to_string();
    let mode = fs::metadata(prefix.with_extension("key"))
        .unwrap()
        .permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.mode() & 0o777, 0o600, "secret key must be 0600");
    fpr
}

/// The names of the archive's entries, in order.
fn entry_names(archive: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tf")
        .arg(archive)
        .output()
        .unwrap();
    assert_success(&out, "tar -t");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn extract(archive: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .output()
        .unwrap();
    assert_success(&out, "tar -x");
}

/// Rewrite a bundle's tar stream: `f` maps each entry (name, data) to zero or
/// more entries; `extra` is appended. Recompressed with xz.
fn rewrite(
    src: &Path,
    dst: &Path,
    mut f: impl FnMut(&str, Vec<u8>) -> Vec<(String, Vec<u8>)>,
    extra: Vec<(String, Vec<u8>)>,
) {
    let out = Command::new("xz").arg("-dc").arg(src).output().unwrap();
    assert_success(&out, "xz -d");
    let mut ar = tar::Archive::new(&out.stdout[..]);
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        // Raw bytes, so hostile names (`..`, absolute) can be written too.
        let field = &mut h.as_ustar_mut().unwrap().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        for (n, d) in f(&name, data) {
            add(&mut b, &n, &d);
        }
    }
    for (n, d) in extra {
        add(&mut b, &n, &d);
    }
    let tar_path = dst.with_extension("plain-tar");
    fs::write(&tar_path, b.into_inner().unwrap()).unwrap();
    let out = Command::new("xz")
        .arg("-1")
        .arg("-c")
        .arg(&tar_path)
        .output()
        .unwrap();
    assert_success(&out, "xz -1");
    fs::write(dst, out.stdout).unwrap();
}

struct Built {
    _src: Registry,
    home: tempfile::TempDir,
    work: tempfile::TempDir,
    archive: PathBuf,
    fpr: String,
}

/// Seed the v1.26.9 set (amd64 + arm64), make a key, build a signed xz bundle.
fn build_signed() -> Built {
    let src = Registry::start();
    let work = tempfile::tempdir().unwrap();
    make_fixtures(&work.path().join("layout"), &SET_1_26_9, Some(&src));
    let home = tempfile::tempdir().unwrap();
    let key = work.path().join("builder");
    let fpr = keygen(home.path(), &key, "Image Builder <builder@example.org>");
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
            key.with_extension("key").to_str().unwrap(),
            "--output",
            out_dir.to_str().unwrap(),
        ],
    );
    let printed = stdout_ok(&out);
    let archive = out_dir.join("c10f-v1.26.9-amd64.u7s.tar.xz");
    assert_eq!(
        printed.trim(),
        archive.to_str().unwrap(),
        "build prints the archive path"
    );
    assert!(archive.is_file());
    // No temporary file left next to it.
    let names: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "only the archive in the output dir: {names:?}"
    );
    Built {
        _src: src,
        home,
        work,
        archive,
        fpr,
    }
}

#[test]
fn signed_xz_bundle_holds_the_plan_and_only_amd64() {
    let b = build_signed();
    let home = b.home.path();

    // inspect --json agrees with the plan.
    let plan = json_of(&ub(
        home,
        &[
            "plan",
            "--platform",
            "k8s-c10f2",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--json",
        ],
    ));
    let plan_names: Vec<String> = plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        plan_names,
        SET_1_26_9.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    let info = json_of(&ub(
        home,
        &["inspect", b.archive.to_str().unwrap(), "--json"],
    ));
    assert_eq!(info["platform"], "c10f");
    assert_eq!(info["kube_version"], "v1.26.9");
    assert_eq!(info["arch"], "amd64");
    assert_eq!(info["signed"], true);
    assert_eq!(
        info["signer"].as_str().unwrap().to_uppercase(),
        b.fpr.to_uppercase()
    );
    let names: Vec<String> = info["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, plan_names);

    // bundle.json first, its signature second, then the layout.
    let entries = entry_names(&b.archive);
    assert_eq!(entries[0], "bundle.json");
    assert_eq!(entries[1], "bundle.json.sig");
    assert!(
        entries
            .iter()
            .all(|e| e == "bundle.json" || e == "bundle.json.sig" || e.starts_with("amd64/")),
        "{entries:?}"
    );

    // Extracted, it is an OCI layout skopeo reads, with uncompressed layers whose
    // digests are the config's diff_ids.
    let x = b.work.path().join("x");
    extract(&b.archive, &x);
    let blobs = x.join("amd64/blobs/sha256");
    let mut on_disk = BTreeSet::new();
    for e in fs::read_dir(&blobs).unwrap() {
        let e = e.unwrap();
        let data = fs::read(e.path()).unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert_eq!(
            sha256_digest(&data),
            format!("sha256:{name}"),
            "blob named by its digest"
        );
        on_disk.insert(format!("sha256:{name}"));
    }
    let index: Value =
        serde_json::from_slice(&fs::read(x.join("amd64/index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 9);
    for m in index["manifests"].as_array().unwrap() {
        let name = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        let d = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let manifest: Value = serde_json::from_slice(&fs::read(blobs.join(d)).unwrap()).unwrap();
        let cd = manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let config: Value = serde_json::from_slice(&fs::read(blobs.join(cd)).unwrap()).unwrap();
        assert_eq!(config["architecture"], "amd64", "{name}");
        let layers: Vec<&str> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap())
            .collect();
        let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(layers, diff_ids, "{name}: layers stored uncompressed");
        for l in manifest["layers"].as_array().unwrap() {
            assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar");
        }
        let out = skopeo([
            "inspect",
            "--raw",
            &format!("oci:{}:{name}", x.join("amd64").display()),
        ]);
        assert_success(&out, "skopeo inspect oci:");
        let copy_to = b
            .work
            .path()
            .join("copy")
            .join(name.replace(['/', ':'], "_"));
        fs::create_dir_all(&copy_to).unwrap();
        let out = skopeo([
            "--insecure-policy",
            "copy",
            &format!("oci:{}:{name}", x.join("amd64").display()),
            &format!("dir:{}", copy_to.display()),
        ]);
        assert_success(&out, "skopeo copy oci: → dir:");
    }

    // Not one arm64 blob: neither the source's compressed layers nor their diff_ids.
    let src_layout = b.work.path().join("layout");
    let src_index: Value =
        serde_json::from_slice(&fs::read(src_layout.join("index.json")).unwrap()).unwrap();
    let mut arm = BTreeSet::new();
    for top in src_index["manifests"].as_array().unwrap() {
        let idx: Value = serde_json::from_slice(
            &fs::read(
                src_layout.join("blobs/sha256").join(
                    top["digest"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches("sha256:"),
                ),
            )
            .unwrap(),
        )
        .unwrap();
        for m in idx["manifests"].as_array().unwrap() {
            if m["platform"]["architecture"] != "arm64" {
                continue;
            }
            arm.insert(m["digest"].as_str().unwrap().to_string());
            let man: Value = serde_json::from_slice(
                &fs::read(
                    src_layout
                        .join("blobs/sha256")
                        .join(m["digest"].as_str().unwrap().trim_start_matches("sha256:")),
                )
                .unwrap(),
            )
            .unwrap();
            arm.insert(man["config"]["digest"].as_str().unwrap().to_string());
            let cfg: Value = serde_json::from_slice(
                &fs::read(
                    src_layout.join("blobs/sha256").join(
                        man["config"]["digest"]
                            .as_str()
                            .unwrap()
                            .trim_start_matches("sha256:"),
                    ),
                )
                .unwrap(),
            )
            .unwrap();
            for l in man["layers"].as_array().unwrap() {
                arm.insert(l["digest"].as_str().unwrap().to_string());
            }
            for d in cfg["rootfs"]["diff_ids"].as_array().unwrap() {
                arm.insert(d.as_str().unwrap().to_string());
            }
        }
    }
    assert!(!arm.is_empty());
    let leaked: Vec<_> = arm.intersection(&on_disk).collect();
    assert!(
        leaked.is_empty(),
        "arm64 blobs in an amd64 bundle: {leaked:?}"
    );
}

#[test]
fn verify_accepts_the_right_key_and_refuses_everything_else() {
    let b = build_signed();
    let home = b.home.path();
    let a = b.archive.to_str().unwrap();
    let good_key = b.work.path().join("builder.pgp");
    let out = ub(
        home,
        &["verify", a, "--keyring", good_key.to_str().unwrap()],
    );
    assert!(stdout_ok(&out).contains(&b.fpr), "names the signer");

    // Another key: refused, exit 3, names the signer's fingerprint, the
    // fingerprints that are trusted and where they were read from.
    let other = b.work.path().join("other");
    let other_fpr = keygen(home, &other, "Other <other@example.org>");
    let out = ub(
        home,
        &[
            "verify",
            a,
            "--keyring",
            other.with_extension("pgp").to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr).to_uppercase();
    assert!(
        err.contains(&b.fpr.to_uppercase()[24..]),
        "error names the signing key: {err}"
    );
    let trusted_dir = home.join("etc/u7s-bundle/trusted.d");
    let keyring_path = other.with_extension("pgp");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.to_uppercase().contains(&other_fpr.to_uppercase())
            && err.contains(&keyring_path.display().to_string()),
        "error lists the trusted keys and their sources: {err}"
    );
    // No key at all: names the trusted directory actually used.
    let out = ub(
        home,
        &["verify", a, "--trusted-dir", trusted_dir.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&trusted_dir.display().to_string()),
        "error names the trusted directory: {err}"
    );

    let k = good_key.to_str().unwrap();
    let bad = b.work.path().join("bad.u7s.tar.xz");
    let check_refused = |what: &str, needle: &str| {
        let out = ub(home, &["verify", bad.to_str().unwrap(), "--keyring", k]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{what}: expected exit 3, got {:?}: {err}",
            out.status.code()
        );
        assert!(
            err.to_lowercase().contains(needle),
            "{what}: error should mention {needle:?}: {err}"
        );
    };

    // One flipped byte in a layer.
    let mut flipped = false;
    rewrite(
        &b.archive,
        &bad,
        |name, mut data| {
            if !flipped && name.contains("/blobs/") && data.len() > 10_000 {
                data[5000] ^= 1;
                flipped = true;
            }
            vec![(name.to_string(), data)]
        },
        vec![],
    );
    assert!(flipped);
    check_refused("flipped layer byte", "does not match");

    // One flipped byte in bundle.json: the signature no longer verifies.
    rewrite(
        &b.archive,
        &bad,
        |name, mut data| {
            if name == "bundle.json" {
                let i = data.iter().position(|&c| c == b'9').unwrap();
                data[i] = b'8';
            }
            vec![(name.to_string(), data)]
        },
        vec![],
    );
    check_refused("flipped bundle.json byte", "signature");

    // A listed entry missing.
    let mut dropped = false;
    rewrite(
        &b.archive,
        &bad,
        |name, data| {
            if !dropped && name.contains("/blobs/") {
                dropped = true;
                return vec![];
            }
            vec![(name.to_string(), data)]
        },
        vec![],
    );
    check_refused("missing entry", "missing");

    // An extra entry.
    rewrite(
        &b.archive,
        &bad,
        |n, d| vec![(n.to_string(), d)],
        vec![("amd64/blobs/sha256/evil".into(), b"x".to_vec())],
    );
    check_refused("extra entry", "not listed");

    // A duplicated entry.
    rewrite(
        &b.archive,
        &bad,
        |n, d| {
            if n.ends_with("index.json") {
                vec![(n.to_string(), d.clone()), (n.to_string(), d)]
            } else {
                vec![(n.to_string(), d)]
            }
        },
        vec![],
    );
    check_refused("duplicate entry", "twice");

    // A path escaping the root.
    rewrite(
        &b.archive,
        &bad,
        |n, d| vec![(n.to_string(), d)],
        vec![("amd64/../../etc/evil".into(), b"x".to_vec())],
    );
    check_refused("escaping path", "never makes");

    // Unsigned: refused unless --allow-unsigned (then the content is still checked).
    rewrite(
        &b.archive,
        &bad,
        |n, d| {
            if n == "bundle.json.sig" {
                vec![]
            } else {
                vec![(n.to_string(), d)]
            }
        },
        vec![],
    );
    check_refused("unsigned", "not signed");
    let out = ub(home, &["verify", bad.to_str().unwrap(), "--allow-unsigned"]);
    assert!(stdout_ok(&out).contains("UNSIGNED"));

    // Truncated.
    let full = fs::read(&b.archive).unwrap();
    fs::write(&bad, &full[..full.len() * 2 / 3]).unwrap();
    let out = ub(home, &["verify", bad.to_str().unwrap(), "--keyring", k]);
    assert_ne!(out.status.code(), Some(0), "truncated archive accepted");
}

#[test]
fn zstd_docker_types_extra_image_and_preserved_digests() {
    let src = Registry::start();
    let work = tempfile::tempdir().unwrap();
    Fixtures::new()
        .docker_media_types()
        .make(&work.path().join("l1"), &SET_1_26_9, Some(&src));
    let pinned =
        Fixtures::new()
            .zstd()
            .make(&work.path().join("l2"), &["tools/helper:v1"], Some(&src));
    let index_digest = pinned["tools/helper:v1"].clone();
    let home = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("b");
    let amd64_of = |reference: &str| -> String {
        let idx: Value = serde_json::from_slice(&src.manifest(reference).unwrap()).unwrap();
        idx["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == "amd64")
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let build = |extras: &[String]| {
        let mut args: Vec<&str> = vec![
            "build",
            "--platform",
            "c10f",
            "--kube-version",
            "1.26.9",
            "--arch",
            "amd64",
            "--source",
            &src.addr,
            "--plain-http",
            "--compression",
            "zstd",
            "--output",
            out_dir.to_str().unwrap(),
            "--jobs",
            "3",
        ];
        for e in extras {
            args.extend(["--extra-image", e]);
        }
        ub(home.path(), &args)
    };
    // A pinned multi-arch index can't exist on the target (one architecture
    // in the bundle): refused at build time, offering the amd64 pin.
    let helper_amd64 = amd64_of(&format!("tools/helper@{index_digest}"));
    let out = build(&[format!(
        "{}/tools/helper@{index_digest}=c10f/helper:v1",
        src.addr
    )]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("multi-arch index")
            && err.contains(&format!("{}/tools/helper@{helper_amd64}", src.addr)),
        "{err}"
    );
    // Pinned per-arch manifests: an OCI one and a Docker one, byte for byte.
    let etcd_amd64 = amd64_of("c10f/etcd:3.5.6-0");
    let out = build(&[
        format!("{}/tools/helper@{helper_amd64}=c10f/helper:v1", src.addr),
        format!("{}/c10f/etcd@{etcd_amd64}=c10f/pinned-etcd:v1", src.addr),
    ]);
    let path = stdout_ok(&out);
    assert!(
        path.trim().ends_with("c10f-v1.26.9-amd64.u7s.tar.zst"),
        "{path}"
    );
    let archive = PathBuf::from(path.trim());
    let info = json_of(&ub(
        home.path(),
        &["inspect", archive.to_str().unwrap(), "--json"],
    ));
    assert_eq!(info["signed"], false);
    assert_eq!(info["signer"], Value::Null);
    let helper = info["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "c10f/helper:v1")
        .expect("extra image");
    assert_eq!(helper["preserved"], true);
    // Preserved: the bundle's manifest is the pinned amd64 manifest, byte for byte.
    assert_eq!(helper["digest"], helper_amd64.as_str());
    let pinned_etcd = info["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "c10f/pinned-etcd:v1")
        .expect("pinned Docker image");
    assert_eq!(pinned_etcd["digest"], etcd_amd64.as_str());
    // verify names the image that only u7s-bundle reads.
    let out = ub(
        home.path(),
        &["verify", archive.to_str().unwrap(), "--allow-unsigned"],
    );
    let text = stdout_ok(&out);
    assert!(text.contains("UNSIGNED"), "{text}");
    assert!(
        text.contains("readable only by u7s-bundle") && text.contains("c10f/pinned-etcd:v1"),
        "{text}"
    );
    // Docker-typed sources are stored as OCI manifests with the same config.
    let x = work.path().join("x");
    fs::create_dir_all(&x).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            archive.display(),
            x.display()
        ))
        .output()
        .unwrap();
    assert_success(&out, "zstd -d | tar x");
    let out = skopeo([
        "inspect",
        "--config",
        &format!("oci:{}:c10f/etcd:3.5.6-0", x.join("amd64").display()),
    ]);
    let cfg: Value = serde_json::from_str(&stdout_ok(&out)).unwrap();
    assert_eq!(cfg["architecture"], "amd64");
    // skopeo reads every image the layout names; the Docker one isn't named.
    let index: Value =
        serde_json::from_slice(&fs::read(x.join("amd64/index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(names.contains(&"c10f/helper:v1"), "{names:?}");
    assert!(!names.contains(&"c10f/pinned-etcd:v1"), "{names:?}");
    for name in names {
        let out = skopeo([
            "inspect",
            "--raw",
            &format!("oci:{}:{name}", x.join("amd64").display()),
        ]);
        assert_success(&out, &format!("skopeo inspect oci:…:{name}"));
    }
}

#[test]
fn plan_is_offline_and_resolve_names_missing_images() {
    let home = tempfile::tempdir().unwrap();
    let plan = json_of(&ub(
        home.path(),
        &[
            "plan",
            "--platform",
            "k8s-c10f2",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--source",
            "mirror.example:5000",
            "--json",
        ],
    ));
    assert_eq!(plan["platform"], "c10f");
    assert_eq!(plan["kube_version"], "v1.26.9");
    assert_eq!(plan["arch"], "amd64");
    assert_eq!(
        plan["images"][0]["source"],
        "mirror.example:5000/c10f/kube-apiserver:v1.26.9"
    );
    assert_eq!(plan["images"][6]["name"], "c10f/etcd:3.5.6-0");

    let out = ub(
        home.path(),
        &["plan", "--platform", "c10f", "--kube-version", "v1.99.0"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1.26") && err.contains("v1.99.0"),
        "lists known versions: {err}"
    );

    let out = ub(home.path(), &["plan", "--platform", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("c10f"));

    // --resolve against a registry missing one image fails naming it.
    let src = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let without_etcd: Vec<&str> = SET_1_26_9
        .iter()
        .copied()
        .filter(|r| !r.contains("etcd"))
        .collect();
    make_fixtures(&work.path().join("l"), &without_etcd, Some(&src));
    let out = ub(
        home.path(),
        &[
            "plan",
            "--platform",
            "c10f",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--source",
            &src.addr,
            "--plain-http",
            "--resolve",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("c10f/etcd:3.5.6-0"), "{err}");
    make_fixtures(&work.path().join("l"), &["c10f/etcd:3.5.6-0"], Some(&src));
    let plan = json_of(&ub(
        home.path(),
        &[
            "plan",
            "--platform",
            "c10f",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--source",
            &src.addr,
            "--plain-http",
            "--resolve",
            "--json",
        ],
    ));
    for i in plan["images"].as_array().unwrap() {
        assert!(i["digest"].as_str().unwrap().starts_with("sha256:"));
        assert!(i["size"].as_u64().unwrap() > 0);
    }
}

#[test]
fn set_available_images_takes_the_newest_tag_of_the_minor_sorted_as_versions() {
    let src = Registry::start();
    let work = tempfile::tempdir().unwrap();
    // v1.28.16 is beyond the profile; the registry has .9 and .10 (string sort would pick .9).
    let mut refs = vec![];
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ] {
        refs.push(format!("c10f/{c}:v1.28.9"));
        refs.push(format!("c10f/{c}:v1.28.10"));
    }
    let refs_str: Vec<&str> = refs.iter().map(String::as_str).collect();
    make_fixtures(&work.path().join("l"), &refs_str, Some(&src));
    let home = tempfile::tempdir().unwrap();
    let out = ub(
        home.path(),
        &[
            "plan",
            "--platform",
            "c10f",
            "--kube-version",
            "v1.28.16",
            "--arch",
            "amd64",
            "--source",
            &src.addr,
            "--plain-http",
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "unknown version without the flag is an error"
    );
    let plan = json_of(&ub(
        home.path(),
        &[
            "plan",
            "--platform",
            "c10f",
            "--kube-version",
            "v1.28.16",
            "--arch",
            "amd64",
            "--source",
            &src.addr,
            "--plain-http",
            "--set-available-images",
            "--json",
        ],
    ));
    assert_eq!(plan["images"][0]["name"], "c10f/kube-apiserver:v1.28.16");
    assert_eq!(
        plan["images"][0]["source"],
        format!("{}/c10f/kube-apiserver:v1.28.10", src.addr)
    );
}

#[test]
fn keygen_refuses_to_overwrite() {
    let home = tempfile::tempdir().unwrap();
    let prefix = home.path().join("k");
    keygen(home.path(), &prefix, "A <a@example.org>");
    let before = fs::read(prefix.with_extension("key")).unwrap();
    let out = ub(
        home.path(),
        &[
            "keygen",
            "--uid",
            "B <b@example.org>",
            "--output",
            prefix.to_str().unwrap(),
        ],
    );
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(fs::read(prefix.with_extension("key")).unwrap(), before);
}

#[test]
fn base_image_bundle_for_the_alt_platform() {
    let src = Registry::start();
    let work = tempfile::tempdir().unwrap();
    make_fixtures(
        &work.path().join("l"),
        &["alt/alt:p11", "alt/distroless-base:p11"],
        Some(&src),
    );
    let home = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("b");
    let out = ub(
        home.path(),
        &[
            "build",
            "--platform",
            "alt",
            "--kube-version",
            "p11",
            "--arch",
            "arm64",
            "--source",
            &src.addr,
            "--plain-http",
            "--output",
            out_dir.to_str().unwrap(),
        ],
    );
    let archive = PathBuf::from(stdout_ok(&out).trim());
    assert_eq!(archive, out_dir.join("alt-p11-arm64.u7s.tar.xz"));
    let info = json_of(&ub(
        home.path(),
        &["inspect", archive.to_str().unwrap(), "--json"],
    ));
    assert_eq!(info["kube_version"], Value::Null);
    assert_eq!(info["arch"], "arm64");
    let names: Vec<&str> = info["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alt/alt:p11", "alt/distroless-base:p11"]);
}

/// Without --kube-version, build takes the newest kube-apiserver tag on the
/// source that the profile knows (v1.26.9 here, not the profile's default and
/// not the unknown v1.26.99); a set the source lacks is refused naming every
/// missing image with the nearest tags there and --set-available-images.
#[test]
fn build_takes_the_newest_known_version_on_the_source_and_names_all_missing() {
    let src = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let mut refs = SET_1_26_9.to_vec();
    refs.push("c10f/kube-apiserver:v1.26.99");
    make_fixtures(&work.path().join("layout"), &refs, Some(&src));
    let home = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("bundles");
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "--platform",
            "c10f",
            "--arch",
            "amd64",
            "--source",
            &src.addr,
            "--plain-http",
            "--compression",
            "zstd",
            "--output",
            out_dir.to_str().unwrap(),
        ];
        args.extend(extra);
        ub(home.path(), &args)
    };
    let out = build(&[]);
    let printed = stdout_ok(&out);
    assert!(
        printed.trim().ends_with("c10f-v1.26.9-amd64.u7s.tar.zst"),
        "{printed}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kubernetes v1.26.9: the newest"),
        "{stderr}"
    );

    // v1.26.10's kube-* and its kubeadm's etcd 3.5.9-0 are not there: all named.
    let out = build(&["--kube-version", "v1.26.10"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("5 image(s) of the set are not on"),
        "{stderr}"
    );
    for name in [
        "c10f/kube-apiserver:v1.26.10",
        "c10f/kube-proxy:v1.26.10",
        "c10f/etcd:3.5.9-0",
    ] {
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    assert!(
        stderr.contains("nearest there: v1.26.9, v1.26.99"),
        "{stderr}"
    );
    assert!(stderr.contains("nearest there: 3.5.6-0"), "{stderr}");
    assert!(stderr.contains("--set-available-images"), "{stderr}");
}
