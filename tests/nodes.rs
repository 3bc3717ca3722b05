//! Every node of a cluster on this machine: host A (the registry host) runs
//! `services`, whose written configuration starts the real docker-registry
//! and the real nginx on loopback ports (systemctl is a stand-in that records
//! its calls), then `load`; host B, with its own root for /etc/containers,
//! /var/sigstore and /etc/hosts, runs `node-trust` against A's nginx and
//! `join` with the stand-in kubeadm, and skopeo with B's files pulls every
//! image from A's registry, reading the signatures through A's nginx. Then A
//! serves another key under the same name: B refuses it and none of B's files
//! change.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

const HASH: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(port: u16, what: &str, d: &mut Daemon, log: &Path) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = d.0.try_wait() {
            panic!(
                "{what} exited ({st}): {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what} did not listen on {port}: {}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// Every file under `dir`, path → content (what "no file of B changes" compares).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A stand-in for systemctl: records each call, one line of arguments.
fn systemctl_stand_in(dir: &Path) -> (PathBuf, PathBuf) {
    let script = dir.join("systemctl");
    let record = dir.join("systemctl.calls");
    fs::write(
        &script,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", record.display()),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    (script, record)
}

/// docker-registry started the way A's systemd drop-in says, with the
/// configuration file `services` wrote (both read under A's root).
fn start_registry(a: &Path, work: &Path, port: u16) -> Daemon {
    let dropin =
        fs::read_to_string(a.join("etc/systemd/system/docker-registry.service.d/u7s-bundle.conf"))
            .unwrap();
    let exec = dropin
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .rfind(|l| !l.is_empty())
        .expect("an ExecStart in the drop-in");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(words[1], "serve", "{exec}");
    let config = a.join(words[2].trim_start_matches('/'));
    let log = work.join("registry.log");
    let mut d = Daemon(
        Command::new(words[0])
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(work.join("registry.err")).unwrap())
            .spawn()
            .expect("run docker-registry"),
    );
    wait_for(port, "docker-registry", &mut d, &work.join("registry.err"));
    d
}

/// nginx with a minimal main configuration (what ALT's nginx.conf amounts
/// to: include sites-enabled.d/*.conf) and A's site file.
fn start_nginx(a: &Path, work: &Path, port: u16) -> Daemon {
    let prefix = work.join("nginx");
    fs::create_dir_all(prefix.join("logs")).unwrap();
    let conf = prefix.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {p}/body;\n proxy_temp_path {p}/proxy;\n\
              fastcgi_temp_path {p}/fastcgi;\n uwsgi_temp_path {p}/uwsgi;\n scgi_temp_path {p}/scgi;\n\
              include {a}/etc/nginx/sites-enabled.d/*.conf;\n}}\n",
            p = prefix.display(),
            a = a.display()
        ),
    )
    .unwrap();
    let log = prefix.join("logs/error.log");
    let mut d = Daemon(
        Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(prefix.join("stderr")).unwrap())
            .spawn()
            .expect("run nginx"),
    );
    wait_for(port, "nginx", &mut d, &log);
    d
}

#[test]
fn a_two_host_cluster_from_services_to_join_and_a_replaced_key_refused() {
    let src = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let home = tempfile::tempdir().unwrap();
    let ub = |args: &[&str]| command(home.path()).args(args).output().unwrap();
    make_fixtures(&w.join("layout"), &SET, Some(&src));
    for (name, uid) in [
        ("builder", "Builder <builder@example.org>"),
        ("imagemaker", "Image Maker <imagemaker@example.org>"),
        ("other", "Image Maker <imagemaker@example.org>"),
    ] {
        ok(ub(&[
            "keygen",
            "--uid",
            uid,
            "--output",
            w.join(name).to_str().unwrap(),
        ]));
    }
    let archive = ok(ub(&[
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
        w.join("builder.key").to_str().unwrap(),
        "--output",
        w.join("bundles").to_str().unwrap(),
        "--compression",
        "zstd",
    ]));
    let archive = archive.trim();

    // ---- host A: services, then the real daemons from what it wrote.
    let a = w.join("A");
    fs::create_dir_all(a.join("etc")).unwrap();
    fs::write(a.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    let (reg_port, sig_port) = (port(), port());
    let (systemctl, calls) = systemctl_stand_in(w);
    let sigstore = a.join("var/sigstore");
    let storage = a.join("var/lib/registry");
    let services = |extra: &[&str]| {
        let mut args = vec![
            "services".to_string(),
            "--root".into(),
            a.display().to_string(),
            "--address".into(),
            "127.0.0.1".into(),
            "--registry-port".into(),
            reg_port.to_string(),
            "--sigstore-port".into(),
            sig_port.to_string(),
            "--sigstore-dir".into(),
            sigstore.display().to_string(),
            "--registry-storage".into(),
            storage.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        command(home.path())
            .args(&args)
            .env("U7S_SYSTEMCTL", &systemctl)
            .output()
            .unwrap()
    };
    let dry = ok(services(&["--dry-run"]));
    assert!(dry.contains("+        autoindex_format json;"), "{dry}");
    assert!(!a.join("etc/nginx").exists(), "--dry-run wrote");
    assert!(!calls.exists(), "--dry-run ran systemctl");
    ok(services(&[]));
    assert_eq!(
        fs::read_to_string(&calls).unwrap(),
        "daemon-reload\nenable --now docker-registry.service nginx.service\n\
         restart docker-registry.service nginx.service\n"
    );
    assert_eq!(
        fs::read_to_string(a.join("etc/hosts")).unwrap(),
        "127.0.0.1 localhost\n127.0.0.1 registry.local sigstore.local\n"
    );
    // Idempotent: nothing rewritten, no restart, no backups.
    let before = snapshot(&a);
    let again = ok(services(&[]));
    assert!(again.contains("already in place"), "{again}");
    assert_eq!(snapshot(&a), before);
    assert!(fs::read_to_string(&calls)
        .unwrap()
        .ends_with("daemon-reload\nenable --now docker-registry.service nginx.service\n"));

    fs::create_dir_all(&storage).unwrap();
    let _registry = start_registry(&a, w, reg_port);
    let _nginx = start_nginx(&a, w, sig_port);
    let registry = format!("127.0.0.1:{reg_port}");
    let sigstore_url = format!("http://127.0.0.1:{sig_port}");

    let lookaside = format!("{sigstore_url}/sigstore/");
    let ps = |p: PathBuf| p.display().to_string();
    let (keyring, sign_key, sigs, keys_a, pol_a, rd_a) = (
        ps(w.join("builder.pgp")),
        ps(w.join("imagemaker.key")),
        ps(sigstore.join("sigstore")),
        ps(sigstore.join("keys")),
        ps(a.join("etc/containers/policy.json")),
        ps(a.join("etc/containers/registries.d")),
    );
    let load_args: Vec<&str> = vec![
        "load",
        archive,
        "--keyring",
        &keyring,
        "--sign-key",
        &sign_key,
        "--registry",
        &registry,
        "--plain-http",
        "--sigstore-dir",
        &sigs,
        "--keys-dir",
        &keys_a,
        "--policy",
        &pol_a,
        "--registries-d",
        &rd_a,
        "--lookaside-url",
        &lookaside,
        "--json",
    ];
    let load: Value = serde_json::from_str(&ok(ub(&load_args))).unwrap();
    let fpr = load["image_signer"].as_str().unwrap().to_string();
    // The text summary names the key for the other nodes (a re-run changes nothing).
    let again = ok(ub(&load_args[..load_args.len() - 1]));
    assert!(
        again.contains(&format!("image-signing key fingerprint: {fpr}")),
        "{again}"
    );

    // init on A: the saved join commands carry the fingerprint.
    let kubeadm = w.join("kubeadm");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stand-in/kubeadm"),
        &kubeadm,
    )
    .unwrap();
    fs::set_permissions(&kubeadm, fs::Permissions::from_mode(0o755)).unwrap();
    let cluster = |cmd: &[&str], policy: &Path, registries_d: &Path, state: &str| {
        command(home.path())
            .args(cmd)
            .args(["--bundle", archive, "--registry", &registry, "--plain-http"])
            .arg("--policy")
            .arg(policy)
            .arg("--registries-d")
            .arg(registries_d)
            .args(["--skip-host-checks", "--kubeadm", kubeadm.to_str().unwrap()])
            .arg("--state-dir")
            .arg(w.join(state))
            .env("STANDIN_RECORD", w.join("record"))
            .output()
            .unwrap()
    };
    ok(cluster(
        &["init"],
        &a.join("etc/containers/policy.json"),
        &a.join("etc/containers/registries.d"),
        "stateA",
    ));
    let script = fs::read_to_string(w.join("stateA/join-worker.sh")).unwrap();
    assert!(
        script.contains(&format!("--setup-trust --fingerprint {fpr}")),
        "{script}"
    );
    fs::remove_dir_all(w.join("record")).unwrap();
    let join_args = [
        "join",
        "10.0.0.10:6443",
        "--token",
        "abcdef.0123456789abcdef",
        "--discovery-token-ca-cert-hash",
        HASH,
    ];

    // ---- host B: its own /etc/containers, /var/sigstore, /etc/hosts.
    let b = w.join("B");
    let bp = |rel: &str| b.join(rel).display().to_string();
    fs::create_dir_all(b.join("etc/containers")).unwrap();
    fs::write(b.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    // The node's own policy: its other rules stay.
    fs::write(
        b.join("etc/containers/policy.json"),
        r#"{"default":[{"type":"reject"}],"transports":{"docker":{"quay.example":[{"type":"insecureAcceptAnything"}]}}}"#,
    )
    .unwrap();
    let node_trust = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "node-trust",
            "--sigstore-url",
            &sigstore_url,
            "--fingerprint",
            &fpr,
            "--registry",
            &registry,
            "--address",
            "127.0.0.1",
            "--policy",
            &bp("etc/containers/policy.json"),
            "--registries-d",
            &bp("etc/containers/registries.d"),
            "--registries-conf-d",
            &bp("etc/containers/registries.conf.d"),
            "--keys-dir",
            &bp("var/sigstore/keys"),
            "--hosts-file",
            &bp("etc/hosts"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        ub(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let check = node_trust(&["--check"]);
    assert!(!check.status.success(), "--check before: {}", text(&check));
    assert!(!b.join("var").exists(), "--check wrote");
    let out = ok(node_trust(&[]));
    assert!(
        out.contains(&format!("trusted imagemaker.pgp {fpr}")),
        "{out}"
    );
    ok(node_trust(&["--check"]));
    let trusted = snapshot(&b);
    assert!(ok(node_trust(&[])).contains("already in place"));
    assert_eq!(snapshot(&b), trusted, "a re-run changed files");

    let policy: Value =
        serde_json::from_slice(&fs::read(b.join("etc/containers/policy.json")).unwrap()).unwrap();
    assert_eq!(
        policy["transports"]["docker"]["quay.example"][0]["type"],
        "insecureAcceptAnything"
    );
    assert_eq!(
        policy["transports"]["docker"][&registry][0]["keyPath"],
        bp("var/sigstore/keys/imagemaker.pgp")
    );
    assert_eq!(
        fs::read(b.join("var/sigstore/keys/imagemaker.pgp")).unwrap(),
        fs::read(sigstore.join("keys/imagemaker.pgp")).unwrap()
    );
    assert!(
        fs::read_to_string(b.join("etc/containers/registries.conf.d/u7s-bundle.conf"))
            .unwrap()
            .contains(&format!("location = \"{registry}\"\ninsecure = true\n"))
    );
    assert_eq!(
        fs::read_to_string(b.join("etc/hosts")).unwrap(),
        "127.0.0.1 localhost\n127.0.0.1 registry.local sigstore.local\n"
    );

    // join on B, with B's trust files; a fingerprint B doesn't trust is refused.
    let b_policy = b.join("etc/containers/policy.json");
    let b_rd = b.join("etc/containers/registries.d");
    let mut cmd: Vec<&str> = join_args.to_vec();
    cmd.extend(["--fingerprint", &fpr]);
    ok(cluster(&cmd, &b_policy, &b_rd, "stateB"));
    assert!(w.join("record/called").exists());
    fs::remove_dir_all(w.join("record")).unwrap();
    let zeros = "0".repeat(40);
    let mut cmd: Vec<&str> = join_args.to_vec();
    cmd.extend(["--fingerprint", &zeros]);
    let out = cluster(&cmd, &b_policy, &b_rd, "stateB");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!w.join("record/called").exists(), "kubeadm ran");

    // Node C trusts nothing: join is refused with the command that fixes it;
    // with --setup-trust it sets the trust up and joins.
    let c = w.join("C");
    let cp = |rel: &str| c.join(rel).display().to_string();
    let (c_policy, c_rd) = (
        c.join("etc/containers/policy.json"),
        c.join("etc/containers/registries.d"),
    );
    let out = cluster(&join_args, &c_policy, &c_rd, "stateC");
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("u7s-bundle node-trust --registry"), "{err}");
    assert!(!w.join("record/called").exists(), "kubeadm ran");
    let mut cmd: Vec<&str> = join_args.to_vec();
    let (keys, rcd, hosts) = (
        cp("var/sigstore/keys"),
        cp("etc/containers/registries.conf.d"),
        cp("etc/hosts"),
    );
    cmd.extend([
        "--setup-trust",
        "--fingerprint",
        &fpr,
        "--sigstore-url",
        &sigstore_url,
        "--registry-address",
        "127.0.0.1",
        "--keys-dir",
        &keys,
        "--registries-conf-d",
        &rcd,
        "--hosts-file",
        &hosts,
    ]);
    ok(cluster(&cmd, &c_policy, &c_rd, "stateC"));
    assert!(w.join("record/called").exists());
    assert!(fs::read_to_string(c.join("etc/hosts"))
        .unwrap()
        .contains("127.0.0.1 registry.local sigstore.local"));

    // Node D is fresh: the sigstore name resolves only after node-trust has
    // written --hosts-file, which it does only after the keys are checked, so
    // the keys are fetched from --address directly. Without --address the
    // error says why the fetch failed (the name does not resolve).
    let d = w.join("D");
    let dp = |rel: &str| d.join(rel).display().to_string();
    let unresolved = format!("http://sigstore.invalid:{sig_port}");
    let check_d = |address: &[&str]| {
        let mut args = vec![
            "node-trust".to_string(),
            "--check".into(),
            "--sigstore-url".into(),
            unresolved.clone(),
            "--fingerprint".into(),
            fpr.clone(),
            "--registry".into(),
            registry.clone(),
        ];
        for (opt, rel) in [
            ("--policy", "etc/containers/policy.json"),
            ("--registries-d", "etc/containers/registries.d"),
            ("--registries-conf-d", "etc/containers/registries.conf.d"),
            ("--keys-dir", "var/sigstore/keys"),
            ("--hosts-file", "etc/hosts"),
        ] {
            args.push(opt.into());
            args.push(dp(rel));
        }
        args.extend(address.iter().map(|s| s.to_string()));
        ub(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let served = check_d(&["--address", "127.0.0.1"]);
    assert!(
        text(&served).contains(&format!("served imagemaker.pgp {fpr}")),
        "{}",
        text(&served)
    );
    let unresolvable = check_d(&[]);
    assert!(!unresolvable.status.success());
    let err = String::from_utf8_lossy(&unresolvable.stderr);
    assert!(
        err.contains("sigstore.invalid") && err.contains("failed to lookup address"),
        "{err}"
    );
    assert!(!d.exists(), "--check wrote");

    // skopeo with B's files pulls every image, signatures read through nginx.
    for name in SET {
        let dest = w.join("pulled").join(name.replace(['/', ':'], "_"));
        fs::create_dir_all(&dest).unwrap();
        let out = skopeo([
            "--policy",
            &bp("etc/containers/policy.json"),
            "--registries.d",
            &bp("etc/containers/registries.d"),
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{registry}/{name}"),
            &format!("dir:{}", dest.display()),
        ]);
        assert!(out.status.success(), "{name}: {}", text(&out));
    }

    // A now serves another key under the same name: refused, nothing of B changes.
    fs::write(
        sigstore.join("keys/imagemaker.pgp"),
        fs::read(w.join("other.pgp")).unwrap(),
    )
    .unwrap();
    let refused = node_trust(&[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("no key with fingerprint {fpr}")),
        "{err}"
    );
    assert_eq!(snapshot(&b), trusted, "a refused key changed files of B");
}
