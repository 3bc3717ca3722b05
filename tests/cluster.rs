//! `u7s-bundle preflight`, `init` and `join` against a real loaded registry:
//! a bundle built and loaded into a loopback docker-registry with real
//! signatures, policy.json and registries.d (as tests/load.rs does); the
//! policy verdicts compared with skopeo's on the same cases; kubeadm replaced
//! by tests/stand-in/kubeadm, which records its arguments and environment.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde::Deserialize;
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

const TOKEN: &str = "abcdef.0123456789abcdef";
const CERT_KEY: &str = "3c6e0b8a9c15224a8228b9a98ca1531d3c6e0b8a9c15224a8228b9a98ca1531d";

fn ub(home: &Path, args: &[&str]) -> Output {
    command(home).args(args).output().expect("run u7s-bundle")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A bundle built from fixture images and loaded (signed, trust files written
/// into a temp dir); the stand-in wrapper copied next to them.
struct Site {
    _src: Registry,
    target: Registry,
    home: tempfile::TempDir,
    work: tempfile::TempDir,
    archive: PathBuf,
    kubeadm: PathBuf,
}

impl Site {
    fn new() -> Site {
        let src = Registry::start();
        let target = Registry::start();
        let work = tempfile::tempdir().unwrap();
        make_fixtures(&work.path().join("layout"), &SET, Some(&src));
        let home = tempfile::tempdir().unwrap();
        let keygen = |name: &str, uid: &str| {
            let prefix = work.path().join(name);
            stdout_ok(&ub(
                home.path(),
                &["keygen", "--uid", uid, "--output", prefix.to_str().unwrap()],
            ));
            prefix
        };
        let builder = keygen("builder", "Builder <builder@example.org>");
        keygen("imagemaker", "Image Maker <imagemaker@example.org>");
        keygen("other", "Other <other@example.org>");
        let out = ub(
            home.path(),
            &[
                "build",
                "--platform",
                "c10f",
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
                work.path().join("bundles").to_str().unwrap(),
                "--compression",
                "zstd",
            ],
        );
        let archive = PathBuf::from(stdout_ok(&out).trim());
        let p = |rel: &str| work.path().join(rel).display().to_string();
        let sigstore = p("sigstore");
        stdout_ok(&ub(
            home.path(),
            &[
                "load",
                archive.to_str().unwrap(),
                "--keyring",
                &p("builder.pgp"),
                "--sign-key",
                &p("imagemaker.key"),
                "--registry",
                &target.addr,
                "--plain-http",
                "--sigstore-dir",
                &sigstore,
                "--keys-dir",
                &p("keys"),
                "--policy",
                &p("etc/containers/policy.json"),
                "--registries-d",
                &p("etc/containers/registries.d"),
                "--registries-conf-d",
                &p("etc/containers/registries.conf.d"),
                "--lookaside-url",
                &format!("file://{sigstore}"),
            ],
        ));
        let kubeadm = work.path().join("bin/kubeadm");
        fs::create_dir_all(kubeadm.parent().unwrap()).unwrap();
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stand-in/kubeadm"),
            &kubeadm,
        )
        .unwrap();
        fs::set_permissions(&kubeadm, fs::Permissions::from_mode(0o755)).unwrap();
        Site {
            _src: src,
            target,
            home,
            work,
            archive,
            kubeadm,
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    fn policy(&self) -> PathBuf {
        self.p("etc/containers/policy.json")
    }

    /// The trust and wrapper options every command here gets.
    fn common(&self, policy: &Path, registries_d: &Path) -> Vec<String> {
        vec![
            "--registry".into(),
            self.target.addr.clone(),
            "--plain-http".into(),
            "--policy".into(),
            policy.display().to_string(),
            "--registries-d".into(),
            registries_d.display().to_string(),
            "--skip-host-checks".into(),
            "--kubeadm".into(),
            self.kubeadm.display().to_string(),
            "--state-dir".into(),
            self.p("state").display().to_string(),
        ]
    }

    fn run(
        &self,
        cmd: &[&str],
        policy: &Path,
        registries_d: &Path,
        envs: &[(&str, &str)],
    ) -> Output {
        let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        args.extend(self.common(policy, registries_d));
        let record = self.p("record");
        command(self.home.path())
            .args(&args)
            .env("STANDIN_RECORD", &record)
            .envs(envs.iter().copied())
            .output()
            .expect("run u7s-bundle")
    }

    /// [`Site::run`] with `stdin` on standard input.
    fn run_stdin(&self, cmd: &[&str], policy: &Path, registries_d: &Path, stdin: &str) -> Output {
        use std::io::Write;
        let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        args.extend(self.common(policy, registries_d));
        let mut child = command(self.home.path())
            .args(&args)
            .env("STANDIN_RECORD", self.p("record"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run u7s-bundle");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn bundle_args(&self) -> Vec<String> {
        vec!["--bundle".into(), self.archive.display().to_string()]
    }

    /// `preflight --bundle … --json` with `policy`: (exit success, report).
    fn preflight(&self, policy: &Path, registries_d: &Path) -> (bool, Value) {
        let b = self.bundle_args();
        let mut cmd = vec!["preflight", "--json"];
        cmd.extend(b.iter().map(String::as_str));
        let out = self.run(&cmd, policy, registries_d, &[]);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("preflight --json output: {e}\n{}", text(&out)));
        assert_eq!(
            v["ok"].as_bool(),
            Some(out.status.success()),
            "{}",
            text(&out)
        );
        if !out.status.success() {
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        }
        (out.status.success(), v)
    }

    fn registries_d(&self) -> PathBuf {
        self.p("etc/containers/registries.d")
    }

    /// `skopeo copy` of one image with `policy` and `registries_d`.
    fn skopeo_pull(&self, name: &str, policy: &Path, registries_d: &Path) -> Output {
        let dest = self.p(&format!("pulled/{}", name.replace(['/', ':'], "_")));
        let _ = fs::remove_dir_all(&dest);
        fs::create_dir_all(&dest).unwrap();
        skopeo([
            "--policy",
            policy.to_str().unwrap(),
            "--registries.d",
            registries_d.to_str().unwrap(),
            "copy",
            "--src-tls-verify=false",
            &self.target.docker_ref(name),
            &format!("dir:{}", dest.display()),
        ])
    }

    /// The signature file of `name` (the registry's manifest for the tag).
    fn sigfile(&self, name: &str) -> PathBuf {
        let digest = self.target.manifest_digest(name).unwrap();
        self.p("sigstore")
            .join(format!(
                "{}@{}",
                name.split(':').next().unwrap(),
                digest.replace(':', "=")
            ))
            .join("signature-1")
    }

    /// init with the bundle; returns the output and whether the wrapper ran.
    fn init(&self, policy: &Path, envs: &[(&str, &str)]) -> (Output, bool) {
        let _ = fs::remove_dir_all(self.p("record"));
        let b = self.bundle_args();
        let mut cmd = vec!["init"];
        cmd.extend(b.iter().map(String::as_str));
        let out = self.run(&cmd, policy, &self.registries_d(), envs);
        (out, self.p("record/called").exists())
    }

    fn recorded_args(&self) -> Vec<String> {
        fs::read_to_string(self.p("record/args"))
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    fn recorded_env(&self) -> Vec<String> {
        fs::read_to_string(self.p("record/env"))
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }
}

/// The image check for `name` in a preflight report.
fn image_status<'a>(report: &'a Value, reference: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "image" && c["image"] == reference)
        .unwrap_or_else(|| panic!("no image check for {reference} in {report:#}"))
}

/// skopeo and preflight must agree on every image of the set; returns the
/// names refused.
fn compare_with_skopeo(s: &Site, policy: &Path, registries_d: &Path, case: &str) -> Vec<String> {
    let (ok, report) = s.preflight(policy, registries_d);
    let mut refused = Vec::new();
    for name in SET {
        let reference = format!("{}/{name}", s.target.addr);
        let check = image_status(&report, &reference);
        let ours = check["status"] == "ok";
        let out = s.skopeo_pull(name, policy, registries_d);
        assert_eq!(
            out.status.success(),
            ours,
            "{case}: skopeo and preflight disagree on {name}:\npreflight: {check:#}\nskopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !ours {
            refused.push(name.to_string());
        }
    }
    assert_eq!(ok, refused.is_empty(), "{case}: {report:#}");
    refused
}

#[test]
fn preflight_init_join_on_a_loaded_registry_agree_with_skopeo() {
    let s = Site::new();
    let policy = s.policy();
    let rd = s.registries_d();

    // Good: everything passes, for skopeo and for us; host checks skipped, said so.
    assert!(compare_with_skopeo(&s, &policy, &rd, "good").is_empty());
    let (ok, report) = s.preflight(&policy, &rd);
    assert!(ok, "{report:#}");
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.iter().filter(|c| c["check"] == "image").count(), 9);
    for skipped in ["kernel", "user"] {
        let c = checks.iter().find(|c| c["check"] == skipped).unwrap();
        assert_eq!(c["status"], "skipped", "{c}");
    }
    assert_eq!(
        checks.iter().find(|c| c["check"] == "kubeadm").unwrap()["status"],
        "ok"
    );
    assert_eq!(report["kube_version"], "v1.26.9");
    assert_eq!(report["platform"], "c10f");

    // The same set from the profile, and with the version from last-bundle.json.
    let out = s.run(
        &[
            "preflight",
            "--platform",
            "c10f",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
        ],
        &policy,
        &rd,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = s.run(
        &["preflight", "--arch", "amd64"],
        &policy,
        &rd,
        &[("U7S_PLATFORM", "c10f")],
    );
    assert!(
        !out.status.success(),
        "no version known yet: {}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kube-version"));
    fs::create_dir_all(s.p("state")).unwrap();
    fs::write(
        s.p("state/last-bundle.json"),
        r#"{"kube_version":"v1.26.9","platform":"c10f","flannel_tag":"v0.26.7"}"#,
    )
    .unwrap();
    let out = s.run(
        &["preflight", "--arch", "amd64"],
        &policy,
        &rd,
        &[("U7S_PLATFORM", "c10f")],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("c10f v1.26.9"));
    // Two versions loaded (load records each), none running here yet: which
    // one is not guessed, both are named.
    let loaded = s.p("state/loaded/c10f");
    fs::create_dir_all(&loaded).unwrap();
    for v in ["v1.26.9", "v1.27.3"] {
        fs::write(
            loaded.join(format!("{v}.json")),
            format!(r#"{{"kube_version":"{v}","platform":"c10f"}}"#),
        )
        .unwrap();
    }
    let out = s.run(
        &["preflight", "--arch", "amd64"],
        &policy,
        &rd,
        &[("U7S_PLATFORM", "c10f")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        err.contains("v1.27.3, v1.26.9") && err.contains("--kube-version"),
        "{err}"
    );

    // init: the wrapper gets `init`, the U7S_* values of the bundle; both join
    // commands saved 0600.
    let (out, called) = s.init(&policy, &[]);
    assert!(out.status.success() && called, "{}", text(&out));
    assert_eq!(s.recorded_args(), ["init"]);
    let env = s.recorded_env();
    for want in [
        format!("U7S_REGISTRY={}", s.target.addr),
        "U7S_PLATFORM=c10f".into(),
        "U7S_KUBEVERSION=v1.26.9".into(),
        "U7S_FLANNEL_TAG=v0.26.7".into(),
        "U7S_FLANNELCNIPLUGIN_TAG=v1.7.1-flannel1".into(),
    ] {
        assert!(env.contains(&want), "{want} not in {env:?}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("initialized successfully"),
        "streamed: {stdout}"
    );
    let worker = s.p("state/join-worker.sh");
    let cp = s.p("state/join-control-plane.sh");
    for f in [&worker, &cp] {
        assert_eq!(
            fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            f.display()
        );
        assert!(
            stdout.contains(&f.display().to_string()),
            "where they are: {stdout}"
        );
    }
    let w = fs::read_to_string(&worker).unwrap();
    let c = fs::read_to_string(&cp).unwrap();
    let hash = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    for script in [&w, &c] {
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(
            script.contains(&format!(
                "kubeadm join 10.0.0.10:6443 --token <redacted> --discovery-token-ca-cert-hash {hash}"
            )),
            "{script}"
        );
        assert!(script.contains(&format!("\nu7s-bundle join 10.0.0.10:6443 --token-file \"$secrets/token\" --discovery-token-ca-cert-hash {hash}")), "{script}");
        assert!(
            script.contains("--platform c10f --kube-version v1.26.9"),
            "{script}"
        );
        // The secrets only as here-document bodies: never in a command's
        // arguments, where every local user could read them.
        for l in script.lines() {
            if l.contains(TOKEN) || l.contains(CERT_KEY) {
                assert!(l == TOKEN || l == CERT_KEY, "a secret in {l:?}");
            }
        }
        assert!(
            script.contains(&format!(
                "cat > \"$secrets/token\" <<'U7S_SECRET'\n{TOKEN}\nU7S_SECRET\n"
            )),
            "{script}"
        );
        // The shell reads it as written.
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", script])
            .output()
            .unwrap();
        assert_success(&out, "sh -n join script");
    }
    assert!(
        !w.contains("--control-plane") && !w.contains(CERT_KEY),
        "{w}"
    );
    assert!(
        c.contains("--control-plane --certificate-key-file \"$secrets/certificate-key\"")
            && c.contains(&format!("\n{CERT_KEY}\nU7S_SECRET\n")),
        "{c}"
    );

    // init recorded the version this node runs: it wins over the newer one
    // loaded (an upgrade is the admin's decision, not a load's).
    let out = s.run(
        &["preflight", "--arch", "amd64"],
        &policy,
        &rd,
        &[("U7S_PLATFORM", "c10f")],
    );
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        o.contains("c10f v1.26.9") && o.contains("this node runs"),
        "{o}"
    );

    // The wrapper's exit code is passed through.
    let (out, called) = s.init(&policy, &[("STANDIN_EXIT", "7")]);
    assert!(called);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));

    // --dry-run: preflight, the command line and environment; no wrapper, no secrets.
    let _ = fs::remove_dir_all(s.p("record"));
    let b = s.bundle_args();
    let mut cmd = vec![
        "join",
        "10.0.0.10:6443",
        "--token",
        TOKEN,
        "--discovery-token-ca-cert-hash",
        hash,
        "--control-plane",
        "--certificate-key",
        CERT_KEY,
        "--dry-run",
    ];
    cmd.extend(b.iter().map(String::as_str));
    let out = s.run(&cmd, &policy, &rd, &[]);
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!s.p("record/called").exists(), "dry run called the wrapper");
    assert!(
        o.contains("U7S_KUBEVERSION=v1.26.9") && o.contains("--control-plane"),
        "{o}"
    );
    assert!(
        !o.contains(TOKEN) && !o.contains(CERT_KEY),
        "secrets printed: {o}"
    );

    // join passes endpoint, token, hash, --control-plane --certificate-key through.
    cmd.pop(); // bundle path
    cmd.pop(); // --bundle
    cmd.pop(); // --dry-run
    cmd.extend(b.iter().map(String::as_str));
    cmd.extend(["-v", "5"]);
    let out = s.run(&cmd, &policy, &rd, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        s.recorded_args(),
        [
            "join",
            "10.0.0.10:6443",
            "--discovery-token-ca-cert-hash",
            hash,
            "--control-plane",
            "-v",
            "5"
        ]
    );
    // The secrets reach the wrapper in its environment, as podsec's wrapper
    // reads its flags (FLAG_<name>).
    let env = s.recorded_env();
    assert!(env.contains(&format!("FLAG_token={TOKEN}")), "{env:?}");
    assert!(
        env.contains(&format!("FLAG_certificate_key={CERT_KEY}")),
        "{env:?}"
    );
    assert!(s.recorded_env().contains(&"U7S_PLATFORM=c10f".to_string()));
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(o.contains("This node has joined"), "{o}");
    // A worker join: no control-plane flags.
    let out = s.run(
        &[
            "join",
            "10.0.0.10:6443",
            "--token",
            TOKEN,
            "--discovery-token-ca-cert-hash",
            hash,
            "--bundle",
            s.archive.to_str().unwrap(),
        ],
        &policy,
        &rd,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        s.recorded_args(),
        [
            "join",
            "10.0.0.10:6443",
            "--discovery-token-ca-cert-hash",
            hash
        ]
    );
    assert!(!s
        .recorded_env()
        .iter()
        .any(|l| l.starts_with("FLAG_certificate_key")));

    // From files and stdin: no secret on any command line, ours or the
    // wrapper's (as every local user can read them in /proc/<pid>/cmdline).
    let token_file = s.p("token");
    fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let out = s.run_stdin(
        &[
            "join",
            "10.0.0.10:6443",
            "--token-file",
            token_file.to_str().unwrap(),
            "--discovery-token-ca-cert-hash",
            hash,
            "--control-plane",
            "--certificate-key-file",
            "-",
            "--bundle",
            s.archive.to_str().unwrap(),
        ],
        &policy,
        &rd,
        &format!("{CERT_KEY}\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    for f in ["cmdline", "parent-cmdline"] {
        let c = fs::read_to_string(s.p("record").join(f)).unwrap();
        assert!(c.contains("join"), "{f}: {c}");
        assert!(!c.contains(TOKEN) && !c.contains(CERT_KEY), "{f}: {c}");
    }
    let env = s.recorded_env();
    assert!(env.contains(&format!("FLAG_token={TOKEN}")), "{env:?}");
    assert!(
        env.contains(&format!("FLAG_certificate_key={CERT_KEY}")),
        "{env:?}"
    );

    // The same over an http:// lookaside (what nodes use: sigstore.local:81).
    let http = HttpDir::serve(&s.p("sigstore"));
    let http_rd = s.p("http-registries.d");
    fs::create_dir_all(&http_rd).unwrap();
    fs::write(
        http_rd.join("default.yaml"),
        format!("default-docker:\n  lookaside: {}/\n", http.url()),
    )
    .unwrap();
    assert!(compare_with_skopeo(&s, &policy, &http_rd, "http lookaside").is_empty());

    // Altered signature: refused by both, named.
    let name = SET[4];
    let reference = format!("{}/{name}", s.target.addr);
    let sigfile = s.sigfile(name);
    let orig = fs::read(&sigfile).unwrap();
    let mut bad = orig.clone();
    let i = bad.len() - 20;
    bad[i] ^= 0x40;
    fs::write(&sigfile, &bad).unwrap();
    assert_eq!(
        compare_with_skopeo(&s, &policy, &rd, "altered signature"),
        [name]
    );
    assert_eq!(
        compare_with_skopeo(&s, &policy, &http_rd, "altered, http"),
        [name]
    );
    let (out, called) = s.init(&policy, &[]);
    assert!(!out.status.success() && !called, "{}", text(&out));

    // Deleted signature: refused by both; init fails naming it, wrapper not run.
    fs::remove_file(&sigfile).unwrap();
    assert_eq!(
        compare_with_skopeo(&s, &policy, &rd, "deleted signature"),
        [name]
    );
    assert_eq!(
        compare_with_skopeo(&s, &policy, &http_rd, "deleted, http"),
        [name]
    );
    let (out, called) = s.init(&policy, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!called, "the wrapper ran after a failed preflight");
    let o = String::from_utf8_lossy(&out.stdout);
    let line = o.lines().find(|l| l.contains("FAILED")).unwrap_or_default();
    assert!(
        line.contains(&reference) && line.contains("no signature exists"),
        "{o}"
    );
    fs::write(&sigfile, &orig).unwrap();
    assert!(compare_with_skopeo(&s, &policy, &rd, "restored").is_empty());

    // Policy pointing at another key: every image refused by both.
    let other_policy = s.p("other-policy.json");
    fs::write(
        &other_policy,
        fs::read_to_string(&policy).unwrap().replace(
            &s.p("keys/imagemaker.pgp").display().to_string(),
            &s.p("other.pgp").display().to_string(),
        ),
    )
    .unwrap();
    assert_ne!(fs::read(&other_policy).unwrap(), fs::read(&policy).unwrap());
    assert_eq!(
        compare_with_skopeo(&s, &other_policy, &rd, "another key").len(),
        SET.len()
    );
    let (out, called) = s.init(&other_policy, &[]);
    assert!(!out.status.success() && !called, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{}/{}", s.target.addr, SET[0])));

    // Deleted tag: refused by both, named as missing; init does not run the wrapper.
    let gone = SET[6];
    s.target.delete_tag(gone);
    assert_eq!(compare_with_skopeo(&s, &policy, &rd, "deleted tag"), [gone]);
    let (_, report) = s.preflight(&policy, &rd);
    let c = image_status(&report, &format!("{}/{gone}", s.target.addr));
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("not in the registry"),
        "{c}"
    );
    assert!(
        c["fix"].as_str().unwrap().contains("u7s-bundle load"),
        "{c}"
    );
    let (out, called) = s.init(&policy, &[]);
    assert!(!out.status.success() && !called, "{}", text(&out));
}

/// Documents of a multi-document YAML text.
fn yaml_docs(text: &str) -> Vec<serde_yaml_ng::Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).expect("valid YAML"))
        .collect()
}

#[test]
fn print_config_is_kubeadm_yaml_of_the_right_version_and_runs_nothing() {
    let home = tempfile::tempdir().unwrap();
    let rec = home.path().join("record");
    for (version, api) in [
        ("v1.26.9", "kubeadm.k8s.io/v1beta3"),
        ("v1.31.1", "kubeadm.k8s.io/v1beta4"),
    ] {
        let out = command(home.path())
            .args([
                "init",
                "--platform",
                "c10f",
                "--kube-version",
                version,
                "--print-config",
                "--pod-network-cidr",
                "10.200.0.0/16",
                "--apiserver-advertise-address",
                "10.0.0.10",
                "--control-plane-endpoint",
                "cp.example:6443",
                "--kubeadm",
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/stand-in/kubeadm")
                    .to_str()
                    .unwrap(),
            ])
            .env("STANDIN_RECORD", &rec)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let docs = yaml_docs(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(docs.len(), 2);
        for d in &docs {
            assert_eq!(d["apiVersion"], api, "{version}");
        }
        assert_eq!(docs[0]["kind"], "InitConfiguration");
        assert_eq!(docs[0]["localAPIEndpoint"]["advertiseAddress"], "10.0.0.10");
        let c = &docs[1];
        assert_eq!(c["kind"], "ClusterConfiguration");
        assert_eq!(c["kubernetesVersion"], version);
        assert_eq!(c["imageRepository"], "registry.local/c10f");
        assert_eq!(c["controlPlaneEndpoint"], "cp.example:6443");
        assert_eq!(c["etcd"]["local"]["dataDir"], "/var/lib/podsec/u7s/etcd");
        assert_eq!(c["networking"]["podSubnet"], "10.200.0.0/16");
        assert_eq!(c["networking"]["serviceSubnet"], "10.96.0.0/12");
        assert!(!rec.exists(), "--print-config ran the wrapper");
    }
    // join: a JoinConfiguration with the secrets redacted.
    let out = command(home.path())
        .args([
            "join",
            "10.0.0.10:6443",
            "--token",
            TOKEN,
            "--discovery-token-ca-cert-hash",
            "sha256:00",
            "--control-plane",
            "--certificate-key",
            CERT_KEY,
            "--platform",
            "c10f",
            "--kube-version",
            "v1.31.1",
            "--print-config",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(!o.contains(TOKEN) && !o.contains(CERT_KEY), "{o}");
    let docs = yaml_docs(&o);
    assert_eq!(docs[0]["kind"], "JoinConfiguration");
    assert_eq!(docs[0]["apiVersion"], "kubeadm.k8s.io/v1beta4");
    assert_eq!(
        docs[0]["discovery"]["bootstrapToken"]["apiServerEndpoint"],
        "10.0.0.10:6443"
    );
    assert_eq!(docs[0]["controlPlane"]["certificateKey"], "<redacted>");

    // Usage errors.
    let bad = command(home.path())
        .args([
            "init",
            "--platform",
            "c10f",
            "--kube-version",
            "v1.26.9",
            "--print-config",
            "--pod-network-cidr",
            "10.0.0.0",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let bad = command(home.path())
        .args([
            "join",
            "10.0.0.10:6443",
            "--token",
            "t",
            "--discovery-token-ca-cert-hash",
            "h",
            "--certificate-key",
            "k",
        ])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "--certificate-key needs --control-plane"
    );
}

#[test]
fn preflight_without_a_registry_fails_and_says_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let out = command(home.path())
        .args([
            "preflight",
            "--platform",
            "c10f",
            "--kube-version",
            "v1.26.9",
            "--registry",
            "127.0.0.1:9",
            "--plain-http",
            "--skip-host-checks",
            "--policy",
            "/nonexistent/policy.json",
            "--kubeadm",
            "/nonexistent/kubeadm",
            "--state-dir",
            home.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let o = String::from_utf8_lossy(&out.stdout);
    for want in [
        "FAILED   registry",
        "FAILED   policy",
        "FAILED   kubeadm",
        "skipped  kernel",
        "skipped  user",
        "127.0.0.1:9/c10f/etcd:3.5.6-0",
        "->",
    ] {
        assert!(o.contains(want), "{want:?} not in\n{o}");
    }
}

/// `python3 -m http.server` serving a directory on 127.0.0.1 (a stand-in
/// for sigstore.local:81). Killed on drop.
struct HttpDir {
    child: Child,
    port: u16,
}

impl HttpDir {
    fn serve(dir: &Path) -> HttpDir {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpDir { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpDir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// preflight asks the host's own kubeadm (the stand-in, answering as a given
/// kubeadm release) and podsec's kube-flannel manifest on the host, and names
/// what the registry lacks with the build option that carries it.
#[test]
fn preflight_checks_what_the_hosts_kubeadm_and_flannel_manifest_pull() {
    let s = Site::new();
    let policy = s.policy();
    let rd = s.registries_d();
    let manifests = s.p("podsec-manifests");
    let preflight = |kubeadm_version: &str, extra: &[&str]| {
        let kubeadm_bin = s.kubeadm.display().to_string();
        let manifests = manifests.display().to_string();
        let mut cmd = vec![
            "preflight",
            "--json",
            "--platform",
            "c10f",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--kubeadm-bin",
            &kubeadm_bin,
            "--flannel-manifests",
            &manifests,
        ];
        cmd.extend(extra);
        let out = s.run(
            &cmd,
            &policy,
            &rd,
            &[("STANDIN_KUBEADM_VERSION", kubeadm_version)],
        );
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("preflight --json: {e}\n{}", text(&out)));
        (out.status.success(), v)
    };
    let check = |v: &Value, name: &str| -> Value {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no {name} check in {v:#}"))
            .clone()
    };
    // kubeadm 1.26.9 on the host, no podsec manifest: the loaded set is what it pulls.
    let (ok, v) = preflight("v1.26.9", &[]);
    assert!(ok, "{v:#}");
    assert_eq!(check(&v, "kubeadm images")["status"], "ok", "{v:#}");
    assert_eq!(check(&v, "flannel manifest")["status"], "skipped", "{v:#}");

    // kubeadm 1.26.15 asked for v1.26.9 wants etcd 3.5.10-0, which the bundle lacks.
    let (ok, v) = preflight("v1.26.15", &[]);
    assert!(!ok, "{v:#}");
    let failed: Vec<&Value> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{v:#}");
    assert!(
        failed[0]["image"]
            .as_str()
            .unwrap()
            .ends_with("c10f/etcd:3.5.10-0"),
        "{v:#}"
    );
    assert!(
        failed[0]["fix"]
            .as_str()
            .unwrap()
            .contains("--kubeadm-version v1.26.15"),
        "{v:#}"
    );

    // podsec's manifest on the host deploys another cni plugin than the bundle's.
    let dir = manifests.join("0/26/7");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("kube-flannel.yml"),
        "kind: DaemonSet\nspec:\n  template:\n    spec:\n      initContainers:\n      \
         - image: registry.altlinux.org/c10f/flannel-cni-plugin:v1.6.2-flannel1\n      \
         - image: registry.altlinux.org/c10f/flannel:v0.26.7\n      containers:\n      \
         - image: registry.altlinux.org/c10f/flannel:v0.26.7\n",
    )
    .unwrap();
    let (ok, v) = preflight("v1.26.9", &[]);
    assert!(!ok, "{v:#}");
    assert_eq!(check(&v, "flannel manifest")["status"], "ok", "{v:#}");
    let img = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "failed")
        .unwrap()
        .clone();
    assert!(
        img["image"]
            .as_str()
            .unwrap()
            .ends_with("c10f/flannel-cni-plugin:v1.6.2-flannel1"),
        "{v:#}"
    );
    assert!(
        img["fix"].as_str().unwrap().contains("--flannel-manifest"),
        "{v:#}"
    );
}
