//! Reaching registries the way real ones are set up: HTTPS with a private CA
//! (`--ca-file`) and HTTP basic auth (`--username` + `--password-stdin`, or the
//! containers auth file) — against real `docker-registry` processes with a
//! throwaway CA made by `openssl` and a bcrypt htpasswd file made by `htpasswd`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use base64::Engine as _;
use common::*;

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

const USER: &str = "builder";
const PASS: &str = "s3cret-Pass-4711";

const SELECT: [&str; 6] = [
    "--platform",
    "k8s-c10f2",
    "--kube-version",
    "v1.26.9",
    "--arch",
    "amd64",
];

/// Run u7s-bundle with HOME=`home`, extra environment, and `stdin` written to
/// its standard input (then closed) when given.
fn ub_io(home: &Path, args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = command(home);
    cmd.args(args).envs(envs.iter().copied());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("run u7s-bundle");
    if let Some(text) = stdin {
        let mut w = child.stdin.take().unwrap();
        // The process may exit before reading (e.g. a usage error): ignore EPIPE.
        let _ = w.write_all(text.as_bytes());
    }
    child.wait_with_output().expect("wait for u7s-bundle")
}

fn ub(home: &Path, args: &[&str]) -> Output {
    ub_io(home, args, &[], None)
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

/// A source registry started with `config`, holding the amd64 c10f v1.26.9 set.
fn seeded(config: RegistryConfig, work: &Path) -> Registry {
    let reg = Registry::start_with(config);
    let layout = work.join("layout");
    Fixtures::new().arches(&["amd64"]).make(&layout, &SET, None);
    reg.seed(&layout, &SET);
    reg
}

fn build_args(source: &str, out_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["build".into()];
    v.extend(SELECT.iter().map(|s| s.to_string()));
    v.extend(
        [
            "--source",
            source,
            "--compression",
            "zstd",
            "--retries",
            "2",
            "--output",
            out_dir.to_str().unwrap(),
            "--cache-dir",
            out_dir.with_extension("cache").to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The archive a successful build printed; checked with `verify`.
#[track_caller]
fn built_and_verified(home: &Path, out: &Output) -> PathBuf {
    assert_exit(out, 0, "build");
    let archive = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(archive.is_file(), "{}", archive.display());
    let v = ub(
        home,
        &[
            "verify",
            archive.to_str().unwrap(),
            "--allow-unsigned",
            "--quiet",
        ],
    );
    assert_exit(&v, 0, "verify of the built bundle");
    archive
}

fn mentions_certificate(out: &Output) -> bool {
    text(out).to_lowercase().contains("certificate")
}

#[test]
fn tls_registry_needs_the_ca_file() {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(&work.path().join("tls"));
    let reg = seeded(
        RegistryConfig {
            tls: Some(tls.clone()),
            htpasswd: None,
            ..Default::default()
        },
        work.path(),
    );
    // A CA that did not sign the registry's certificate.
    let other = TlsFiles::generate(&work.path().join("other-ca"));
    let ca = tls.ca.to_str().unwrap();

    let mut plan: Vec<&str> = vec!["plan"];
    plan.extend(SELECT);
    plan.extend(["--source", &reg.addr, "--resolve", "--retries", "2"]);

    // No --ca-file: the system roots do not know our CA.
    let out = ub(home.path(), &plan);
    assert_exit(&out, 1, "plan --resolve without --ca-file");
    assert!(mentions_certificate(&out), "{}", text(&out));
    let mut with_other = plan.clone();
    with_other.extend(["--ca-file", other.ca.to_str().unwrap()]);
    let out = ub(home.path(), &with_other);
    assert_exit(&out, 1, "plan --resolve with the wrong CA");
    assert!(mentions_certificate(&out), "{}", text(&out));
    // Neither attempt fetched anything: the handshake failed first.
    assert!(
        !reg.requests()
            .iter()
            .any(|r| r.user_agent.starts_with("u7s-bundle")),
        "no request got through without the right CA"
    );

    // With it: resolved (digests printed).
    let mut with_ca = plan.clone();
    with_ca.extend(["--ca-file", ca, "--json"]);
    let out = ub(home.path(), &with_ca);
    assert_exit(&out, 0, "plan --resolve --ca-file");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), SET.len());
    for img in images {
        let name = img["name"].as_str().unwrap();
        assert_eq!(
            img["digest"].as_str(),
            reg.manifest_digest(name).as_deref(),
            "{name}"
        );
    }

    // build: the same.
    let out_dir = work.path().join("bundles");
    let out = ub(home.path(), &strs(&build_args(&reg.addr, &out_dir, &[])));
    assert_exit(&out, 1, "build without --ca-file");
    assert!(mentions_certificate(&out), "{}", text(&out));
    assert!(
        !out_dir.join("c10f-v1.26.9-amd64.u7s.tar.zst").exists(),
        "no archive from a failed build"
    );
    let out = ub(
        home.path(),
        &strs(&build_args(&reg.addr, &out_dir, &["--ca-file", ca])),
    );
    built_and_verified(home.path(), &out);
    // A CA file that holds no certificate is refused up front.
    let junk = work.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let mut with_junk = plan.clone();
    with_junk.extend(["--ca-file", junk.to_str().unwrap()]);
    let out = ub(home.path(), &with_junk);
    assert_exit(&out, 1, "plan with a CA file without certificates");
    assert!(text(&out).contains("junk.pem"), "{}", text(&out));
}

fn auth_file(dir: &Path, registry: &str, user: &str, pass: &str) -> PathBuf {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let path = dir.join("auth.json");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{b64}"}}}}}}"#),
    )
    .unwrap();
    path
}

#[test]
fn basic_auth_from_stdin_or_the_auth_file() {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    // Plain HTTP: distribution 2.8 accepts htpasswd auth without TLS.
    let reg = seeded(
        RegistryConfig {
            tls: None,
            htpasswd: Some((USER.into(), PASS.into())),
            ..Default::default()
        },
        work.path(),
    );
    let out_dir = work.path().join("bundles");
    let args = |extra: &[&str]| {
        let mut a = build_args(&reg.addr, &out_dir, &["--plain-http", "--force"]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // No credentials anywhere.
    let out = ub(home.path(), &strs(&args(&[])));
    assert_exit(&out, 1, "build without credentials");
    let t = text(&out);
    assert!(
        t.contains("--username") && t.contains("--password-stdin") && t.contains("login"),
        "tells how to give credentials:\n{t}"
    );
    assert!(!out_dir.join("c10f-v1.26.9-amd64.u7s.tar.zst").exists());

    // --username + --password-stdin.
    let out = ub_io(
        home.path(),
        &strs(&args(&["--username", USER, "--password-stdin"])),
        &[],
        Some(&format!("{PASS}\n")),
    );
    built_and_verified(home.path(), &out);

    // The containers auth file (REGISTRY_AUTH_FILE), fresh cache: every blob
    // is fetched with these credentials.
    let file = auth_file(&work.path().join("auth"), &reg.addr, USER, PASS);
    let out_dir2 = work.path().join("bundles2");
    let a = build_args(&reg.addr, &out_dir2, &["--plain-http"]);
    let out = ub_io(
        home.path(),
        &strs(&a),
        &[("REGISTRY_AUTH_FILE", file.to_str().unwrap())],
        None,
    );
    built_and_verified(home.path(), &out);

    // …and the auth file in $HOME (~/.config/containers/auth.json), for plan --resolve.
    let home2 = tempfile::tempdir().unwrap();
    auth_file(
        &home2.path().join(".config/containers"),
        &reg.addr,
        USER,
        PASS,
    );
    let mut plan: Vec<&str> = vec!["plan"];
    plan.extend(SELECT);
    plan.extend(["--source", &reg.addr, "--plain-http", "--resolve"]);
    let out = ub(home2.path(), &plan);
    assert_exit(
        &out,
        0,
        "plan --resolve with ~/.config/containers/auth.json",
    );

    // A wrong password: refused, and never echoed.
    let wrong = "Wr0ng-Horse-Battery-9921";
    let out = ub_io(
        home.path(),
        &strs(&args(&["--username", USER, "--password-stdin"])),
        &[],
        Some(&format!("{wrong}\n")),
    );
    assert_exit(&out, 1, "build with a wrong password");
    let t = text(&out);
    assert!(t.contains("check the user name and password"), "{t}");
    assert!(
        !t.contains(wrong),
        "the password leaked into the output:\n{t}"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{wrong}"));
    assert!(!t.contains(&b64), "the Authorization header leaked:\n{t}");
    // The same from an auth file.
    let bad = auth_file(&work.path().join("bad-auth"), &reg.addr, USER, wrong);
    let out = ub_io(
        home.path(),
        &strs(&args(&[])),
        &[("REGISTRY_AUTH_FILE", bad.to_str().unwrap())],
        None,
    );
    assert_exit(&out, 1, "build with a wrong password in the auth file");
    let t = text(&out);
    assert!(!t.contains(wrong) && !t.contains(&b64), "{t}");
    // The registry saw our attempts with the wrong password (401s), so the
    // refusal came from it, not from us skipping the request.
    assert!(reg
        .requests()
        .iter()
        .any(|r| r.status == 401 && r.user_agent.starts_with("u7s-bundle")));
}

#[test]
fn load_into_a_tls_registry_with_basic_auth() {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let src = seeded(RegistryConfig::default(), work.path());
    let tls = TlsFiles::generate(&work.path().join("tls"));
    let target = Registry::start_with(RegistryConfig {
        tls: Some(tls.clone()),
        htpasswd: Some((USER.into(), PASS.into())),
        ..Default::default()
    });

    let out_dir = work.path().join("bundles");
    let out = ub(
        home.path(),
        &strs(&build_args(&src.addr, &out_dir, &["--plain-http"])),
    );
    let archive = built_and_verified(home.path(), &out);
    let signer = work.path().join("imagemaker");
    let out = ub(
        home.path(),
        &[
            "keygen",
            "--uid",
            "Image Maker <imagemaker@example.org>",
            "--output",
            signer.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 0, "keygen");

    let p = |rel: &str| work.path().join(rel).display().to_string();
    let load = |extra: &[&str], envs: &[(&str, &str)], stdin: Option<&str>| {
        let mut a: Vec<String> = vec![
            "load".into(),
            archive.display().to_string(),
            "--allow-unsigned".into(),
            "--registry".into(),
            target.addr.clone(),
            "--retries".into(),
            "2".into(),
            "--sign-key".into(),
            signer.with_extension("key").display().to_string(),
            "--sigstore-dir".into(),
            p("sigstore"),
            "--keys-dir".into(),
            p("keys"),
            "--policy".into(),
            p("etc/containers/policy.json"),
            "--registries-d".into(),
            p("etc/containers/registries.d"),
            "--registries-conf-d".into(),
            p("etc/containers/registries.conf.d"),
            "--lookaside-url".into(),
            format!("file://{}", p("sigstore")),
            "--lock-file".into(),
            p("load.lock"),
            "--json".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        ub_io(home.path(), &strs(&a), envs, stdin)
    };
    let ca = tls.ca.to_str().unwrap();

    let out = load(&["--username", USER, "--password-stdin"], &[], Some(PASS));
    assert_exit(&out, 1, "load without --ca-file");
    assert!(mentions_certificate(&out), "{}", text(&out));
    let out = load(&["--ca-file", ca], &[], None);
    assert_exit(&out, 1, "load without credentials");
    assert!(text(&out).contains("--password-stdin"), "{}", text(&out));
    assert!(target.tags("c10f/pause").is_empty());
    assert!(
        !work.path().join("etc").exists() && !work.path().join("sigstore").exists(),
        "failed loads write no trust files"
    );

    let out = load(
        &["--ca-file", ca, "--username", USER, "--password-stdin"],
        &[],
        Some(&format!("{PASS}\n")),
    );
    assert_exit(&out, 0, "load with --ca-file and credentials");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["registry"], target.addr.as_str());
    let images = v["images"].as_array().unwrap();
    // Each image under its name and its legacy k8s-c10f2/ alias.
    assert_eq!(images.len(), 2 * SET.len(), "{v}");
    for img in images {
        let identity = img["name"].as_str().unwrap();
        let name = identity
            .strip_prefix(&format!("{}/", target.addr))
            .expect("identity names the TLS registry");
        let digest = img["digest"].as_str().unwrap();
        assert_eq!(
            target.manifest_digest(name).as_deref(),
            Some(digest),
            "{name}"
        );
        let (repo, _) = name.split_once(':').unwrap();
        let sig = work.path().join(format!(
            "sigstore/{repo}@{}/signature-1",
            digest.replace(':', "=")
        ));
        assert!(sig.is_file(), "{}", sig.display());
    }
    assert!(target.requests().iter().all(|r| r.status < 500));

    // The same credentials from the auth file: a reload uploads and tags nothing.
    let file = auth_file(&work.path().join("auth"), &target.addr, USER, PASS);
    let out = load(
        &["--ca-file", ca],
        &[("REGISTRY_AUTH_FILE", file.to_str().unwrap())],
        None,
    );
    assert_exit(&out, 0, "reload with the auth file");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["push"]["blobs_uploaded"], 0, "{v}");
    assert_eq!(v["push"]["tags_set"], 0, "{v}");
}

/// Lines of the registry's error log about failed TLS handshakes.
fn handshake_errors(reg: &Registry) -> usize {
    reg.log()
        .lines()
        .filter(|l| l.contains("TLS handshake error"))
        .count()
}

#[test]
fn a_certificate_failure_is_not_retried() {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(&work.path().join("tls"));
    let reg = Registry::start_with(RegistryConfig {
        tls: Some(tls),
        htpasswd: None,
        ..Default::default()
    });
    let before = handshake_errors(&reg);
    let mut plan: Vec<&str> = vec!["plan"];
    plan.extend(SELECT);
    // Five attempts allowed: a retried handshake would show up five times.
    plan.extend(["--source", &reg.addr, "--resolve", "--retries", "5"]);
    let out = ub(home.path(), &plan);
    assert_exit(&out, 1, "plan --resolve against an untrusted certificate");
    assert!(
        text(&out).contains("--ca-file"),
        "the message points at --ca-file: {}",
        text(&out)
    );
    // Go logs a handshake error asynchronously; give it a moment.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        handshake_errors(&reg) - before,
        1,
        "one handshake, not retried:\n{}",
        reg.log()
    );
}

#[test]
fn a_silent_server_fails_the_request_after_the_read_timeout() {
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    // Accepts connections, reads nothing, answers nothing: a half-open peer.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            match s {
                Ok(s) => {
                    count.fetch_add(1, Ordering::SeqCst);
                    held.push(s);
                }
                Err(_) => break,
            }
        }
    });

    let home = tempfile::tempdir().unwrap();
    let mut plan: Vec<&str> = vec!["plan"];
    plan.extend(SELECT);
    plan.extend([
        "--source",
        &addr,
        "--plain-http",
        "--resolve",
        "--retries",
        "2",
    ]);
    let mut child = command(home.path())
        .args(&plan)
        .env("U7S_READ_TIMEOUT", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // Without a read timeout this would wait forever: give up after 60 s.
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("plan --resolve hung on a silent registry");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    assert_exit(&out, 1, "plan --resolve against a silent server");
    assert!(
        text(&out).contains("no answer for 2 s"),
        "the message says the registry stalled: {}",
        text(&out)
    );
    // Two attempts of two seconds each, then a clean failure.
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(30),
        "took {took:?}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "a stall is transient: retried, within --retries"
    );
}
