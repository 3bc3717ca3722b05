//! Faults: a registry that answers 503, resets connections mid-body, loses a
//! blob, stops, or is slow while the user presses Ctrl-C; an archive cut short.
//! Real `docker-registry` processes, with a small fault-injecting TCP proxy
//! ([`FaultProxy`]) in front where the fault must be injected on the wire.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

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

const ARCHIVE: &str = "c10f-v1.26.9-amd64.u7s.tar.zst";

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
fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}; output:\n{}",
        text(out)
    );
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Names of the entries of `dir` (empty if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A source registry with the amd64 c10f v1.26.9 set of `size_kib` app data.
fn source(work: &Path, size_kib: u32) -> Registry {
    let reg = Registry::start();
    Fixtures::new().arches(&["amd64"]).size_kib(size_kib).make(
        &work.join("layout"),
        &SET,
        Some(&reg),
    );
    reg
}

/// The amd64 manifest of `name` in `reg`.
fn amd64_manifest(reg: &Registry, name: &str) -> Value {
    let (repo, _) = name.split_once(':').unwrap();
    let idx = reg.manifest_json(name).unwrap();
    let d = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    reg.manifest_json(&format!("{repo}@{d}")).unwrap()
}

/// Every distinct layer digest of the set.
fn layer_digests(reg: &Registry) -> BTreeSet<String> {
    SET.iter()
        .flat_map(|n| {
            amd64_manifest(reg, n)["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `u7s-bundle build` arguments for the set from `source` into `out_dir`.
fn build_args(source: &str, out_dir: &Path, cache: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "build",
        "--platform",
        "k8s-c10f2",
        "--kube-version",
        "v1.26.9",
        "--arch",
        "amd64",
        "--source",
        source,
        "--plain-http",
        "--compression",
        "zstd",
        "--output",
        out_dir.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The build succeeded, left exactly the archive, and the archive verifies.
#[track_caller]
fn assert_built(home: &Path, out: &Output, out_dir: &Path) {
    assert_exit(out, 0, "build");
    assert_eq!(entries(out_dir), vec![ARCHIVE.to_string()]);
    let v = ub(
        home,
        &[
            "verify",
            out_dir.join(ARCHIVE).to_str().unwrap(),
            "--allow-unsigned",
            "--quiet",
        ],
    );
    assert_exit(&v, 0, "verify");
}

/// Layer blobs GET-ed by u7s-bundle in `reqs` with `status`.
fn layer_gets(reqs: &[Request], layers: &BTreeSet<String>, status: u16) -> Vec<String> {
    reqs.iter()
        .filter(|r| r.method == "GET" && r.status == status && r.user_agent.starts_with("u7s"))
        .filter_map(|r| r.path.rsplit_once("/blobs/").map(|(_, d)| d.to_string()))
        .filter(|d| layers.contains(d))
        .collect()
}

// ------------------------------------------------------------------ build

#[test]
fn build_rides_out_503s_and_connection_resets() {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let src = source(work.path(), 64);
    let layers: Vec<String> = layer_digests(&src).into_iter().collect();

    // The first three requests (manifests) answered 503 by the proxy.
    let proxy = FaultProxy::start(
        src.port(),
        Fault::FailFirst {
            n: 3,
            status: 503,
            filter: any_request(),
        },
    );
    let out_dir = work.path().join("b1");
    let out = ub(
        home.path(),
        &strs(&build_args(
            &proxy.addr,
            &out_dir,
            &work.path().join("cache1"),
            &[],
        )),
    );
    assert_built(home.path(), &out, &out_dir);
    assert_eq!(proxy.injected(), 3, "{:?}", proxy.requests());

    // The first two layer downloads cut in the middle of the body (RST).
    proxy.set_fault(Fault::ResetMidBody {
        n: 2,
        filter: blob_get_of(&layers),
    });
    let before = proxy.requests().len();
    let out_dir = work.path().join("b2");
    let out = ub(
        home.path(),
        &strs(&build_args(
            &proxy.addr,
            &out_dir,
            &work.path().join("cache2"),
            &["--jobs", "2"],
        )),
    );
    assert_built(home.path(), &out, &out_dir);
    let reqs = &proxy.requests()[before..];
    let cut: Vec<_> = reqs.iter().filter(|r| r.injected).collect();
    assert_eq!(cut.len(), 2, "{reqs:?}");
    // Each cut layer was fetched again, completely.
    for c in cut {
        assert!(
            reqs.iter().filter(|r| r.path == c.path).count() >= 2,
            "{} not retried: {reqs:?}",
            c.path
        );
    }
    // Nothing half-downloaded stays in the cache.
    assert!(entries(&work.path().join("cache2/tmp")).is_empty());
}

#[test]
fn build_fails_cleanly_when_faults_outlast_the_retries() {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let src = source(work.path(), 64);
    let layers: Vec<String> = layer_digests(&src).into_iter().collect();

    // Everything 503, --retries 2: two attempts of the first request, then exit 1.
    let proxy = FaultProxy::start(
        src.port(),
        Fault::FailFirst {
            n: u64::MAX,
            status: 503,
            filter: any_request(),
        },
    );
    let out_dir = work.path().join("bundles");
    let cache = work.path().join("cache");
    let out = ub(
        home.path(),
        &strs(&build_args(
            &proxy.addr,
            &out_dir,
            &cache,
            &["--retries", "2"],
        )),
    );
    assert_exit(&out, 1, "build against an always-503 registry");
    assert!(text(&out).contains("503"), "{}", text(&out));
    assert!(entries(&out_dir).is_empty(), "{:?}", entries(&out_dir));
    let reqs = proxy.requests();
    assert_eq!(
        reqs.len(),
        2,
        "--retries 2 means two attempts of a request: {reqs:?}"
    );

    // Resolution fine, every layer download 503: fails in the download phase,
    // still no archive, no temp file, nothing half-written in the cache.
    proxy.set_fault(Fault::FailFirst {
        n: u64::MAX,
        status: 503,
        filter: blob_get_of(&layers),
    });
    let before = proxy.requests().len();
    let out = ub(
        home.path(),
        &strs(&build_args(
            &proxy.addr,
            &out_dir,
            &cache,
            &["--retries", "2", "--jobs", "1"],
        )),
    );
    assert_exit(&out, 1, "build with layer downloads failing");
    assert!(text(&out).contains("downloading layers"), "{}", text(&out));
    assert!(entries(&out_dir).is_empty(), "{:?}", entries(&out_dir));
    assert!(entries(&cache.join("tmp")).is_empty());
    assert!(entries(&cache.join("blobs/sha256")).is_empty());
    let reqs = &proxy.requests()[before..];
    let layer_reqs: Vec<_> = reqs.iter().filter(|r| r.injected).collect();
    assert_eq!(
        layer_reqs.len(),
        2,
        "one layer, two attempts, then the build stops: {reqs:?}"
    );
}

#[test]
fn a_missing_blob_fails_the_build_and_the_rerun_fetches_only_the_rest() {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let src = source(work.path(), 64);
    let layers = layer_digests(&src);
    // The app layer of the image whose layers come last (first-use order is
    // the plan's order), so the first run downloads everything else first.
    let last = SET[SET.len() - 1];
    let (repo, _) = last.split_once(':').unwrap();
    let gone = amd64_manifest(&src, last)["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    src.delete_blob(repo, &gone);

    let out_dir = work.path().join("bundles");
    let cache = work.path().join("cache");
    let args = build_args(&src.addr, &out_dir, &cache, &["--jobs", "1"]);
    let out = ub(home.path(), &strs(&args));
    assert_exit(&out, 1, "build with a blob missing at the source");
    assert!(text(&out).contains(&gone), "names the blob: {}", text(&out));
    assert!(entries(&out_dir).is_empty());
    let first = src.requests();
    let fetched1: BTreeSet<String> = layer_gets(&first, &layers, 200).into_iter().collect();
    assert_eq!(
        fetched1.len(),
        layers.len() - 1,
        "every other layer was downloaded before the failure"
    );
    assert!(!fetched1.contains(&gone));

    // Restore the blob (skopeo re-pushes what the repository lacks) and re-run.
    src.seed(&work.path().join("layout"), &[last]);
    let n = src.requests().len();
    let out = ub(home.path(), &strs(&args));
    assert_built(home.path(), &out, &out_dir);
    let second = &src.requests()[n..];
    let fetched2 = layer_gets(second, &layers, 200);
    assert_eq!(
        fetched2,
        vec![gone.clone()],
        "the re-run downloads only the missing layer; the rest comes from the cache"
    );
}

// ------------------------------------------------------------------ load

/// A built bundle (signed), an image signing key, trust paths with an existing
/// policy.json, a target registry.
struct Site {
    _src: Registry,
    target: Registry,
    home: tempfile::TempDir,
    work: tempfile::TempDir,
    archive: PathBuf,
    builder_pub: PathBuf,
    signer_key: PathBuf,
}

const OLD_POLICY: &str = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;

impl Site {
    fn new(compression: &str) -> Site {
        Site::with_layers(compression, 64)
    }

    /// A site whose images' layers are about `size_kib` each.
    fn with_layers(compression: &str, size_kib: u32) -> Site {
        let work = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let src = source(work.path(), size_kib);
        let target = Registry::start();
        let key = |name: &str, uid: &str| {
            let prefix = work.path().join(name);
            let out = ub(
                home.path(),
                &["keygen", "--uid", uid, "--output", prefix.to_str().unwrap()],
            );
            assert_exit(&out, 0, "keygen");
            prefix
        };
        let builder = key("builder", "Builder <builder@example.org>");
        let signer = key("imagemaker", "Image Maker <imagemaker@example.org>");
        let out_dir = work.path().join("bundles");
        let mut args = build_args(
            &src.addr,
            &out_dir,
            &work.path().join("cache"),
            &[
                "--sign-key",
                builder.with_extension("key").to_str().unwrap(),
            ],
        );
        let i = args.iter().position(|a| a == "zstd").unwrap();
        args[i] = compression.to_string();
        let out = ub(home.path(), &strs(&args));
        assert_exit(&out, 0, "build");
        let archive = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let policy = work.path().join("etc/containers/policy.json");
        fs::create_dir_all(policy.parent().unwrap()).unwrap();
        fs::write(&policy, OLD_POLICY).unwrap();
        Site {
            _src: src,
            target,
            home,
            work,
            archive,
            builder_pub: builder.with_extension("pgp"),
            signer_key: signer.with_extension("key"),
        }
    }

    fn p(&self, rel: &str) -> String {
        self.work.path().join(rel).display().to_string()
    }

    fn load(&self, archive: &Path, registry: &str, extra: &[&str]) -> Output {
        ub(
            self.home.path(),
            &strs(&self.load_args(archive, registry, extra)),
        )
    }

    fn load_args(&self, archive: &Path, registry: &str, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "load".into(),
            archive.display().to_string(),
            "--keyring".into(),
            self.builder_pub.display().to_string(),
            "--registry".into(),
            registry.into(),
            "--plain-http".into(),
            "--sign-key".into(),
            self.signer_key.display().to_string(),
            "--sigstore-dir".into(),
            self.p("sigstore"),
            "--keys-dir".into(),
            self.p("keys"),
            "--policy".into(),
            self.p("etc/containers/policy.json"),
            "--registries-d".into(),
            self.p("etc/containers/registries.d"),
            "--registries-conf-d".into(),
            self.p("etc/containers/registries.conf.d"),
            "--lookaside-url".into(),
            format!("file://{}", self.p("sigstore")),
            "--lock-file".into(),
            self.p("load.lock"),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    /// The trust paths are as the site started: the old policy.json, nothing else.
    #[track_caller]
    fn assert_trust_untouched(&self) {
        assert_eq!(
            fs::read_to_string(self.p("etc/containers/policy.json")).unwrap(),
            OLD_POLICY
        );
        assert_eq!(
            entries(&self.work.path().join("etc/containers")),
            vec!["policy.json"]
        );
        for d in ["sigstore", "keys"] {
            assert!(entries(&self.work.path().join(d)).is_empty(), "{d} written");
        }
    }

    /// No tag in any repository of the set (nor its legacy aliases).
    #[track_caller]
    fn assert_no_tags(&self) {
        for name in SET {
            let (repo, _) = name.split_once(':').unwrap();
            assert!(self.target.tags(repo).is_empty(), "{repo} tagged");
            let legacy = repo.replacen("c10f/", "k8s-c10f2/", 1);
            assert!(self.target.tags(&legacy).is_empty(), "{legacy} tagged");
        }
    }
}

/// Digests of blob uploads the registry finalized (`PUT …?digest=` → 201).
fn finished_uploads(reqs: &[Request]) -> Vec<String> {
    reqs.iter()
        .filter(|r| r.method == "PUT" && r.status == 201 && r.path.contains("/blobs/uploads/"))
        .filter_map(|r| {
            r.path
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("digest="))
                .map(|d| d.replace("%3A", ":"))
        })
        .collect()
}

#[test]
fn load_into_a_stopped_registry_says_so_and_writes_nothing() {
    let mut site = Site::new("zstd");
    site.target.stop();
    let out = site.load(
        &site.archive.clone(),
        &site.target.addr.clone(),
        &["--retries", "2"],
    );
    assert_exit(&out, 1, "load into a stopped registry");
    assert!(text(&out).contains("does not answer"), "{}", text(&out));
    site.assert_trust_untouched();
}

#[test]
fn load_fails_on_upload_503s_and_the_rerun_uploads_only_the_rest() {
    let site = Site::new("zstd");
    // Upload requests (POST/PATCH/PUT/mount) 1..7 pass, later ones get 503: the
    // first layer uploads (POST, PATCH, PUT) and is mounted a few times, then
    // the registry "breaks".
    let proxy = FaultProxy::start(
        site.target.port(),
        Fault::FailAfter {
            k: 7,
            status: 503,
            filter: blob_upload(),
        },
    );
    let out = site.load(&site.archive, &proxy.addr, &["--retries", "2"]);
    assert_exit(
        &out,
        1,
        "load with uploads failing (a registry failure, not 3)",
    );
    assert!(text(&out).contains("503"), "{}", text(&out));
    assert_registry_failure_message(&out);
    assert!(proxy.injected() > 0);
    site.assert_no_tags();
    site.assert_trust_untouched();
    let first = finished_uploads(&site.target.requests());
    assert!(
        !first.is_empty(),
        "some blob was uploaded before the failure"
    );

    // Healthy registry: completes, and sends only what the first run did not.
    let n = site.target.requests().len();
    let out = site.load(&site.archive, &site.target.addr, &["--json"]);
    assert_exit(&out, 0, "re-run against the healthy registry");
    let second = finished_uploads(&site.target.requests()[n..]);
    let again: Vec<_> = second.iter().filter(|d| first.contains(d)).collect();
    assert!(again.is_empty(), "uploaded twice: {again:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["push"]["blobs_uploaded"].as_u64(),
        Some(second.len() as u64)
    );
    assert!(v["push"]["blobs_present"].as_u64().unwrap() >= 1, "{v}");
    for name in SET {
        let (repo, tag) = name.split_once(':').unwrap();
        assert_eq!(site.target.tags(repo), vec![tag.to_string()]);
    }
}

/// A registry failure during load is not blamed on the archive, says what to
/// do, and shows no upload URL's query (the registry's opaque upload state).
#[track_caller]
fn assert_registry_failure_message(out: &Output) {
    let t = text(out);
    assert!(!t.contains("was refused"), "blames the archive: {t}");
    assert!(t.contains("run the same command"), "no advice: {t}");
    assert!(!t.contains("_state="), "upload state in the message: {t}");
}

/// Upload sessions (by the id in their path) the registry saw data for
/// (PATCH) and that it neither finalized (PUT → 201) nor had cancelled
/// (DELETE): what a failed load would leave open.
fn open_uploads(reqs: &[Request]) -> Vec<String> {
    let session = |p: &str| {
        p.split_once("/blobs/uploads/")
            .map(|(_, rest)| rest.split('?').next().unwrap_or("").to_string())
            .filter(|id| !id.is_empty())
    };
    let mut open = BTreeSet::new();
    for r in reqs {
        let Some(id) = session(&r.path) else { continue };
        match r.method.as_str() {
            "PATCH" => {
                open.insert(id);
            }
            "PUT" if r.status == 201 => {
                open.remove(&id);
            }
            "DELETE" => {
                open.remove(&id);
            }
            _ => {}
        }
    }
    open.into_iter().collect()
}

/// A layer's final PUT runs while the next layer streams. When that PUT
/// fails, the load fails with its error, tags nothing, writes no trust file,
/// and leaves no upload session open: neither the failed one nor the one that
/// was streaming meanwhile.
#[test]
fn a_failed_final_put_fails_the_load_and_leaves_no_upload_open() {
    let site = Site::new("zstd");
    let put: Filter = std::sync::Arc::new(|m, p| m == "PUT" && p.contains("/blobs/uploads/"));
    let proxy = FaultProxy::start(
        site.target.port(),
        Fault::FailAfter {
            k: 1,
            status: 500,
            filter: put,
        },
    );
    let out = site.load(&site.archive, &proxy.addr, &["--retries", "1"]);
    assert_exit(&out, 1, "load whose second final PUT fails");
    assert!(text(&out).contains("500"), "{}", text(&out));
    assert_registry_failure_message(&out);
    assert!(proxy.injected() > 0);
    site.assert_no_tags();
    site.assert_trust_untouched();
    let reqs = site.target.requests();
    assert_eq!(
        finished_uploads(&reqs).len(),
        1,
        "only the first upload was finalized"
    );
    assert!(
        reqs.iter().filter(|r| r.method == "PATCH").count() > 1,
        "a second layer was streaming when its predecessor's PUT failed"
    );
    let open = open_uploads(&reqs);
    assert!(open.is_empty(), "upload sessions left open: {open:?}");
}

/// Each blob goes to the registry in one PATCH, however big: the registry
/// fsyncs at the end of every PATCH, so chunked uploads cost one fsync per
/// chunk. Layers here are 6 MiB, several times what the archive reader
/// hands over at a time (and more than any upload chunk we ever used).
#[test]
fn each_blob_is_uploaded_in_one_patch() {
    let site = Site::with_layers("zstd", 6 * 1024);
    let out = site.load(&site.archive, &site.target.addr, &["--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_exit(&out, 0, "load");
    let reqs = site.target.requests();
    let mut patches: BTreeMap<String, usize> = BTreeMap::new();
    for r in reqs.iter().filter(|r| r.method == "PATCH") {
        let id = r.path.split_once("/blobs/uploads/").unwrap().1;
        *patches
            .entry(id.split('?').next().unwrap().to_string())
            .or_default() += 1;
    }
    let uploaded = v["push"]["blobs_uploaded"].as_u64().unwrap() as usize;
    assert!(
        v["push"]["bytes_uploaded"].as_u64().unwrap() > 9 * (5 << 20),
        "nine layers of about 6 MiB went up: {v}"
    );
    assert_eq!(patches.len(), uploaded, "{patches:?}");
    let many: Vec<_> = patches.iter().filter(|(_, &n)| n != 1).collect();
    assert!(many.is_empty(), "uploads in several PATCHes: {many:?}");
    for name in SET {
        let (repo, tag) = name.split_once(':').unwrap();
        assert_eq!(site.target.tags(repo), vec![tag.to_string()]);
    }
}

/// A registry that takes an upload's request and then neither reads its
/// body nor answers: the load fails as stalled after the read timeout (not
/// after the whole transfer's worth of time, and not never), tags nothing
/// and writes no trust file.
#[test]
fn a_stalled_upload_fails_after_the_read_timeout() {
    let site = Site::with_layers("zstd", 2 * 1024);
    let patch: Filter = std::sync::Arc::new(|m, p| m == "PATCH" && p.contains("/blobs/uploads/"));
    let proxy = FaultProxy::start(site.target.port(), Fault::Stall { filter: patch });
    let started = std::time::Instant::now();
    let mut child = command(site.home.path())
        .args(site.load_args(&site.archive, &proxy.addr, &["--retries", "1"]))
        .env("U7S_READ_TIMEOUT", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run u7s-bundle");
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("load hung on a stalled upload");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed();
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 1, "load whose upload stalls");
    assert!(
        text(&out).contains("took no bytes of the upload and gave no answer for 2 s"),
        "{}",
        text(&out)
    );
    assert_registry_failure_message(&out);
    assert!(proxy.injected() > 0);
    // Stalled for 2 s, noticed within twice that, then the session cancelled.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    site.assert_no_tags();
    site.assert_trust_untouched();
}

/// Manifests go several at a time. When one is refused, the load fails with
/// the registry's error once those under way ended: no tag at all (tags come
/// only after every manifest is in), no signature, no trust file; and the
/// re-run completes.
#[test]
fn a_refused_manifest_fails_the_load_before_any_tag() {
    let site = Site::new("zstd");
    let put: Filter = std::sync::Arc::new(|m, p| m == "PUT" && p.contains("/manifests/"));
    let proxy = FaultProxy::start(
        site.target.port(),
        Fault::FailAfter {
            k: 3,
            status: 500,
            filter: put,
        },
    );
    let out = site.load(&site.archive, &proxy.addr, &["--retries", "1"]);
    assert_exit(&out, 1, "load whose fourth manifest is refused");
    assert!(text(&out).contains("500"), "{}", text(&out));
    assert!(proxy.injected() > 0);
    site.assert_no_tags();
    site.assert_trust_untouched();
    let reqs = site.target.requests();
    let by_digest = reqs
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/sha256:") && r.status == 201)
        .count();
    assert!(by_digest >= 3, "three manifests went in first: {by_digest}");

    let out = site.load(&site.archive, &site.target.addr, &[]);
    assert_exit(&out, 0, "re-run against the healthy registry");
    for name in SET {
        let (repo, tag) = name.split_once(':').unwrap();
        assert_eq!(site.target.tags(repo), vec![tag.to_string()]);
    }
}

/// The registry dies in the middle of an upload's body (its end of the
/// connection reset while we write): the load fails with exit 1 and the
/// registry named as the cause, tags nothing and writes no trust file.
/// Several rounds, as where the reset meets our writes is a matter of timing.
#[test]
fn a_registry_dying_mid_upload_fails_the_load_with_a_message() {
    let site = Site::with_layers("zstd", 4 * 1024);
    let patch: Filter = std::sync::Arc::new(|m, p| m == "PATCH" && p.contains("/blobs/uploads/"));
    for round in 0..4 {
        let proxy = FaultProxy::start(
            site.target.port(),
            Fault::DieMidRequest {
                bytes: 256 * 1024,
                filter: patch.clone(),
            },
        );
        let out = site.load(&site.archive, &proxy.addr, &["--retries", "1"]);
        assert_exit(
            &out,
            1,
            &format!("round {round}: the registry died mid-upload"),
        );
        assert!(text(&out).contains("PATCH"), "{}", text(&out));
        assert_registry_failure_message(&out);
        assert!(proxy.injected() > 0);
        site.assert_no_tags();
        site.assert_trust_untouched();
    }
}

#[test]
fn a_truncated_archive_is_refused_before_any_tag() {
    for compression in ["zstd", "xz"] {
        let site = Site::new(compression);
        let bytes = fs::read(&site.archive).unwrap();
        for cut in [bytes.len() / 3, bytes.len() - 1] {
            let short = site
                .work
                .path()
                .join(format!("cut-{cut}.u7s.tar.{compression}"));
            fs::write(&short, &bytes[..cut]).unwrap();
            let out = site.load(&short, &site.target.addr, &[]);
            assert_exit(
                &out,
                3,
                &format!(
                    "load of a {compression} archive cut at {cut} of {}",
                    bytes.len()
                ),
            );
            site.assert_no_tags();
            site.assert_trust_untouched();
            let v = ub(
                site.home.path(),
                &[
                    "verify",
                    short.to_str().unwrap(),
                    "--keyring",
                    site.builder_pub.to_str().unwrap(),
                ],
            );
            assert_exit(&v, 3, &format!("verify of the cut {compression} archive"));
        }
    }
}

// ------------------------------------------------------------------ signals

/// Start a build, wait until its stderr shows `marker`, send `signal`, and
/// return (exit code, stderr). Bounded: panics if the marker never comes or
/// the process does not exit.
fn interrupt_build(
    home: &Path,
    args: &[String],
    marker: &str,
    signal: i32,
) -> (Option<i32>, String) {
    let mut child = command(home)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run u7s-bundle");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut signalled = false;
    // Lines arrive until the marker; the loop ends at the marker, at EOF, or
    // after 600 quiet seconds.
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(600)) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(marker) {
            // SAFETY: plain kill(2) of our own child.
            let r = unsafe { libc::kill(child.id() as i32, signal) };
            assert_eq!(r, 0, "kill");
            signalled = true;
            break;
        }
    }
    if !signalled {
        let _ = child.kill();
        let _ = child.wait();
        panic!("never saw {marker:?}; stderr:\n{seen}");
    }
    let mut status = None;
    for _ in 0..1200 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the build did not stop after the signal; stderr so far:\n{seen}");
    };
    while let Ok(line) = rx.try_recv() {
        seen.push_str(&line);
        seen.push('\n');
    }
    let _ = reader.join();
    while let Ok(line) = rx.try_recv() {
        seen.push_str(&line);
        seen.push('\n');
    }
    (status.code(), seen)
}

/// A reader that closed stdout early (`u7s-bundle plan --json | head`) ends
/// the process quietly with a SIGPIPE-death status, no panic message —
/// while SIGPIPE itself stays ignored, so that a registry dying mid-upload
/// is an error with a message, not a silent death
/// (`a_registry_dying_mid_upload_fails_the_load_with_a_message`).
#[test]
fn a_closed_stdout_ends_the_process_quietly() {
    use std::os::fd::FromRawFd;
    let home = tempfile::tempdir().unwrap();
    let mut fds = [0; 2];
    // SAFETY: a fresh pipe; its read end is closed at once, so every write
    // to the other end fails with EPIPE.
    let write_end = unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        std::fs::File::from_raw_fd(fds[1])
    };
    let out = command(home.path())
        .args([
            "plan",
            "--platform",
            "c10f",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--json",
        ])
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "printed on a closed stdout: {stderr}");
}

#[test]
fn signals_stop_a_build_cleanly() {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let src = source(work.path(), 4096);
    // A slow link: 16 KiB at a time.
    let proxy = FaultProxy::start(
        src.port(),
        Fault::Slow {
            chunk: 16 * 1024,
            pause: Duration::from_millis(20),
        },
    );

    for (signal, code, name) in [
        (libc::SIGTERM, 143, "SIGTERM"),
        (libc::SIGINT, 130, "SIGINT"),
    ] {
        let out_dir = work.path().join(format!("out-{name}"));
        let cache = work.path().join(format!("cache-{name}"));
        let args = build_args(&proxy.addr, &out_dir, &cache, &[]);
        let (status, stderr) = interrupt_build(home.path(), &args, "Fetching", signal);
        assert_eq!(status, Some(code), "{name} while fetching:\n{stderr}");
        assert!(
            entries(&out_dir).is_empty(),
            "{name}: {:?}",
            entries(&out_dir)
        );
        assert!(
            entries(&cache.join("tmp")).is_empty(),
            "{name}: half-downloaded blobs left in the cache"
        );
    }

    // While compressing (xz, straight from the registry): the temporary
    // archive is removed.
    let out_dir = work.path().join("out-compressing");
    let mut args = build_args(&src.addr, &out_dir, &work.path().join("cache-c"), &[]);
    let i = args.iter().position(|a| a == "zstd").unwrap();
    args[i] = "xz".into();
    let (status, stderr) = interrupt_build(home.path(), &args, "compressing", libc::SIGINT);
    assert_eq!(status, Some(130), "SIGINT while compressing:\n{stderr}");
    assert!(entries(&out_dir).is_empty(), "{:?}", entries(&out_dir));
}

#[test]
fn signals_stop_a_load_with_no_tag_and_no_trust_file() {
    for (name, signal, code) in [
        ("SIGTERM", libc::SIGTERM, 143),
        ("SIGINT", libc::SIGINT, 130),
    ] {
        let site = Site::new("zstd");
        // Slow answers (64 bytes per 100 ms: about a second per request), so
        // the load is surely mid-push when signalled.
        let proxy = FaultProxy::start(
            site.target.port(),
            Fault::Slow {
                chunk: 64,
                pause: Duration::from_millis(100),
            },
        );
        let mut a: Vec<String> = vec![
            "load".into(),
            site.archive.display().to_string(),
            "--keyring".into(),
            site.builder_pub.display().to_string(),
            "--registry".into(),
            proxy.addr.clone(),
            "--plain-http".into(),
            "--sign-key".into(),
            site.signer_key.display().to_string(),
            "--sigstore-dir".into(),
            site.p("sigstore"),
            "--keys-dir".into(),
            site.p("keys"),
            "--policy".into(),
            site.p("etc/containers/policy.json"),
            "--registries-d".into(),
            site.p("etc/containers/registries.d"),
            "--registries-conf-d".into(),
            site.p("etc/containers/registries.conf.d"),
            "--lookaside-url".into(),
            format!("file://{}", site.p("sigstore")),
            "--lock-file".into(),
            site.p("load.lock"),
        ];
        let mut child = command(site.home.path())
            .args(strs(&a))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the first blob upload to start.
        let started = std::time::Instant::now();
        while !proxy
            .requests()
            .iter()
            .any(|r| r.path.contains("/blobs/uploads/"))
        {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{name}: no upload started"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "{name}: load ended early"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: plain kill(2) of our own child.
        let r = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(r, 0, "kill");
        let out = child.wait_with_output().unwrap();
        assert_exit(&out, code, &format!("load, {name} while pushing"));
        site.assert_no_tags();
        site.assert_trust_untouched();

        // The re-run completes.
        a[5] = site.target.addr.clone();
        let out = ub(site.home.path(), &strs(&a));
        assert_exit(&out, 0, &format!("re-run after {name}"));
        for name in SET {
            let (repo, tag) = name.split_once(':').unwrap();
            assert_eq!(site.target.tags(repo), vec![tag.to_string()]);
        }
    }
}
