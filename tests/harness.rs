//! Proves the test harness itself (tests/common): real docker-registry instances,
//! fixture images seeded with skopeo, checks with skopeo and gpg.

mod common;

use std::collections::BTreeSet;
use std::io::Read;

use common::*;
use serde_json::Value;

const APISERVER: &str = "c10f/kube-apiserver:v1.26.9";
const SCHEDULER: &str = "c10f/kube-scheduler:v1.26.9";

fn repo_of(reference: &str) -> &str {
    reference.rsplit_once(':').unwrap().0
}

/// Digest of the per-arch manifest for `arch` in the index at `reference`.
fn arch_manifest(reg: &Registry, reference: &str, arch: &str) -> Value {
    let index = reg.manifest_json(reference).expect("index present");
    let d = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("no {arch} in {reference}"))["digest"]
        .as_str()
        .unwrap()
        .to_string();
    reg.manifest_json(&format!("{}@{d}", repo_of(reference)))
        .expect("arch manifest present")
}

#[test]
fn seeded_index_has_both_arches_and_a_shared_base_layer() {
    let reg = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let digests = make_fixtures(layout.path(), &[APISERVER, SCHEDULER], Some(&reg));

    // skopeo inspect --raw of the tag is the OCI index we generated, byte for byte.
    let out = skopeo([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &reg.docker_ref(APISERVER),
    ]);
    let raw = stdout_ok(&out);
    assert_eq!(sha256_digest(raw.as_bytes()), digests[APISERVER]);
    assert_eq!(
        reg.manifest_digest(APISERVER).as_ref(),
        Some(&digests[APISERVER])
    );
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: BTreeSet<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
            assert_eq!(m["platform"]["os"], "linux");
            m["platform"]["architecture"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        platforms,
        BTreeSet::from(["amd64".to_string(), "arm64".to_string()])
    );

    // Base layer shared by both images of one arch, app layers unique; arm64 differs.
    let api64 = arch_manifest(&reg, APISERVER, "amd64");
    let sch64 = arch_manifest(&reg, SCHEDULER, "amd64");
    let apiarm = arch_manifest(&reg, APISERVER, "arm64");
    assert_eq!(api64["layers"].as_array().unwrap().len(), 2);
    assert_eq!(api64["layers"][0]["digest"], sch64["layers"][0]["digest"]);
    assert_ne!(api64["layers"][1]["digest"], sch64["layers"][1]["digest"]);
    assert_ne!(api64["layers"][0]["digest"], apiarm["layers"][0]["digest"]);
    assert_eq!(
        api64["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    assert_eq!(reg.tags("c10f/kube-apiserver"), vec!["v1.26.9"]);
    assert_eq!(reg.tags("c10f/no-such-repo"), Vec::<String>::new());
    assert_eq!(reg.manifest_digest("c10f/kube-apiserver:v0.0.0"), None);
}

#[test]
fn config_diff_ids_are_the_sha256_of_the_gunzipped_layers() {
    let reg = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    make_fixtures(layout.path(), &[APISERVER], Some(&reg));
    let repo = repo_of(APISERVER);
    for arch in ["amd64", "arm64"] {
        let m = arch_manifest(&reg, APISERVER, arch);
        let cfg_digest = m["config"]["digest"].as_str().unwrap();
        let cfg_raw = reg.blob(repo, cfg_digest).expect("config blob");
        assert_eq!(sha256_digest(&cfg_raw), cfg_digest);
        let cfg: Value = serde_json::from_slice(&cfg_raw).unwrap();
        assert_eq!(cfg["architecture"], arch);
        assert_eq!(cfg["os"], "linux");
        let diff_ids = cfg["rootfs"]["diff_ids"].as_array().unwrap();
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(diff_ids.len(), layers.len());
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            let digest = layer["digest"].as_str().unwrap();
            let blob = reg.blob(repo, digest).expect("layer blob");
            assert_eq!(sha256_digest(&blob), digest);
            assert_eq!(blob.len() as u64, layer["size"].as_u64().unwrap());
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&blob[..])
                .read_to_end(&mut tar)
                .unwrap();
            assert_eq!(
                sha256_digest(&tar),
                diff_id.as_str().unwrap(),
                "{arch} {digest}"
            );
        }
    }
    let cfg = skopeo([
        "inspect",
        "--tls-verify=false",
        "--config",
        "--override-arch",
        "arm64",
        &reg.docker_ref(APISERVER),
    ]);
    let cfg: Value = serde_json::from_str(&stdout_ok(&cfg)).unwrap();
    assert_eq!(cfg["architecture"], "arm64");
    assert_eq!(cfg["variant"], "v8");
}

#[test]
fn two_registries_run_side_by_side_and_survive_restart() {
    let mut a = Registry::start();
    let b = Registry::start();
    assert_ne!(a.addr, b.addr);
    let layout = tempfile::tempdir().unwrap();
    make_fixtures(layout.path(), &[APISERVER], Some(&a));
    assert_eq!(b.manifest_digest(APISERVER), None);

    let out = skopeo([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &a.docker_ref(APISERVER),
        &b.docker_ref(APISERVER),
    ]);
    assert_success(&out, "skopeo copy a → b");
    let want = a.manifest_digest(APISERVER);
    assert!(want.is_some());
    assert_eq!(b.manifest_digest(APISERVER), want);
    assert!(b
        .requests()
        .iter()
        .any(|r| r.method == "PUT" && r.path.ends_with("/manifests/v1.26.9")));

    // Crash + restart: same address, same storage.
    let addr = a.addr.clone();
    a.stop();
    assert!(!a.is_running());
    assert!(http_request(a.port(), "GET", "/v2/", &[], &[]).is_err());
    assert_eq!(
        b.manifest_digest(APISERVER),
        want,
        "b unaffected by a's stop"
    );
    a.restart();
    assert!(a.is_running());
    assert_eq!(a.addr, addr);
    assert_eq!(a.manifest_digest(APISERVER), want);

    // Deletes are enabled; delete_tag removes the manifest, blobs stay until GC.
    let m = arch_manifest(&a, APISERVER, "amd64");
    let base = m["layers"][0]["digest"].as_str().unwrap();
    a.delete_tag(APISERVER);
    assert_eq!(a.tags("c10f/kube-apiserver"), Vec::<String>::new());
    assert_eq!(a.manifest_digest(APISERVER), None);
    assert!(a.has_blob("c10f/kube-apiserver", base));
    assert!(
        !a.has_blob("c10f/other", base),
        "blob existence is per repository"
    );
    a.delete_blob("c10f/kube-apiserver", base);
    assert!(!a.has_blob("c10f/kube-apiserver", base));
}

#[test]
fn fixtures_are_deterministic() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let refs = [APISERVER, SCHEDULER, "c10f/pause:3.9"];
    let a = make_fixtures(d1.path(), &refs, None);
    let b = make_fixtures(d2.path(), &refs, None);
    assert_eq!(a, b);
    assert_eq!(a.len(), 3);
    let list = |d: &std::path::Path| {
        let mut v: Vec<_> = std::fs::read_dir(d.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(d1.path()), list(d2.path()));
    let idx1 = std::fs::read(d1.path().join("index.json")).unwrap();
    assert_eq!(idx1, std::fs::read(d2.path().join("index.json")).unwrap());
    let idx: Value = serde_json::from_slice(&idx1).unwrap();
    let names: Vec<&str> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names, refs);
    assert!(d1.path().join("oci-layout").is_file());

    // skopeo reads the layout (oci: transport), e.g. the arm64 image.
    let out = skopeo([
        "inspect",
        "--override-arch",
        "arm64",
        &format!("oci:{}:{}", d1.path().display(), APISERVER),
    ]);
    let v: Value = serde_json::from_str(&stdout_ok(&out)).unwrap();
    assert_eq!(v["Architecture"], "arm64");

    // Bigger app layers when asked, still one base per arch.
    let d3 = tempfile::tempdir().unwrap();
    Fixtures::new()
        .arches(&["amd64"])
        .size_kib(1024)
        .make(d3.path(), &[APISERVER], None);
    let total: u64 = std::fs::read_dir(d3.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        total > 200 * 1024 && total < 1024 * 1024,
        "1 MiB of app data compresses ~3x: {total}"
    );
}

#[test]
fn docker_media_types_and_zstd_fixtures() {
    let reg = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    make_fixtures(layout.path(), &[APISERVER], Some(&reg));
    Fixtures::new()
        .docker_media_types()
        .make(layout.path(), &["c10f/coredns:v1.9.3"], Some(&reg));
    Fixtures::new()
        .zstd()
        .make(layout.path(), &["c10f/etcd:3.5.6-0"], Some(&reg));

    let list = reg.manifest_json("c10f/coredns:v1.9.3").unwrap();
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let m = arch_manifest(&reg, "c10f/coredns:v1.9.3", "amd64");
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let oci = arch_manifest(&reg, APISERVER, "amd64");
    assert_eq!(
        m["layers"][0]["digest"], oci["layers"][0]["digest"],
        "same base bytes"
    );

    let z = arch_manifest(&reg, "c10f/etcd:3.5.6-0", "arm64");
    assert_eq!(
        z["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        z["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let cfg: Value = serde_json::from_slice(
        &reg.blob("c10f/etcd", z["config"]["digest"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let blob = reg
        .blob("c10f/etcd", z["layers"][1]["digest"].as_str().unwrap())
        .unwrap();
    let tar = zstd::stream::decode_all(&blob[..]).unwrap();
    assert_eq!(
        sha256_digest(&tar),
        cfg["rootfs"]["diff_ids"][1].as_str().unwrap()
    );

    // The layout keeps all three entries.
    let idx: Value =
        serde_json::from_slice(&std::fs::read(layout.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 3);
}

#[test]
fn gnupg_home_makes_a_primary_signing_key_that_skopeo_uses() {
    let g = gnupg_home();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(g.path()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let fpr = g.gen_key("Image Maker <imagemaker@example.test>");
    assert_eq!(fpr.len(), 40);
    let colons = stdout_ok(&g.gpg(["--with-colons", "--list-keys", &fpr]));
    assert!(
        !colons.lines().any(|l| l.starts_with("sub:")),
        "no subkeys:\n{colons}"
    );
    let pubkey = g.export(&fpr);
    assert!(pubkey[0] & 0x80 != 0, "binary OpenPGP, not armored");

    // skopeo (GPGME) signs with this GNUPGHOME and verifies the result.
    let work = tempfile::tempdir().unwrap();
    let manifest = work.path().join("manifest.json");
    std::fs::write(&manifest, br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#).unwrap();
    let sig = work.path().join("signature-1");
    let gnupghome = g.path().to_str().unwrap();
    let out = skopeo_env(
        [
            "standalone-sign",
            manifest.to_str().unwrap(),
            "registry.local/c10f/pause:3.9",
            &fpr,
            "--output",
            sig.to_str().unwrap(),
        ],
        &[("GNUPGHOME", gnupghome)],
    );
    assert_success(&out, "skopeo standalone-sign");
    let out = skopeo_env(
        [
            "standalone-verify",
            manifest.to_str().unwrap(),
            "registry.local/c10f/pause:3.9",
            &fpr,
            sig.to_str().unwrap(),
        ],
        &[("GNUPGHOME", gnupghome)],
    );
    assert!(stdout_ok(&out).contains("Signature verified"), "{out:?}");
}
