//! `u7s-bundle init` / `join`: preflight, then podsec's rootless kubeadm
//! wrapper with the `U7S_*` environment set from the image set, so that it
//! takes every image from the registry and never reaches for the Internet.
//! The wrapper's output is streamed (and, for init, searched for the
//! `kubeadm join` commands, which are saved 0600); its exit code is ours.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::node::{self, Selection};
use crate::cli::{ClusterSelectArgs, InitArgs, JoinArgs, KubeadmRunArgs};
use u7s_bundle::fsutil;
use u7s_bundle::kubeadm::{
    self, shell_quote, ClusterSpec, JoinSpec, DEFAULT_POD_CIDR, DEFAULT_SERVICE_CIDR,
    JOIN_CONTROL_PLANE_FILE, JOIN_WORKER_FILE,
};
use u7s_bundle::policy_eval::HttpFetch;
use u7s_bundle::trust::node::{self as trust_node, NodePaths, Setup};

pub fn run_init(args: InitArgs) -> Result<()> {
    run(&args.select, &args.run, None)
}

pub fn run_join(args: JoinArgs) -> Result<()> {
    kubeadm::validate_endpoint(&args.endpoint).map_err(anyhow::Error::msg)?;
    let token = secret(
        args.token.as_deref(),
        args.token_file.as_deref(),
        "--token-file",
    )?;
    let certificate_key = match (&args.certificate_key, &args.certificate_key_file) {
        (None, None) => None,
        (k, f) => Some(secret(
            k.as_deref(),
            f.as_deref(),
            "--certificate-key-file",
        )?),
    };
    if token.trim().is_empty() || args.discovery_token_ca_cert_hash.trim().is_empty() {
        bail!("--token and --discovery-token-ca-cert-hash must not be empty");
    }
    let ignored: Vec<&str> = [
        ("--pod-network-cidr", args.run.pod_network_cidr.is_some()),
        ("--service-cidr", args.run.service_cidr.is_some()),
        (
            "--control-plane-endpoint",
            args.run.control_plane_endpoint.is_some(),
        ),
    ]
    .into_iter()
    .filter_map(|(f, set)| set.then_some(f))
    .collect();
    if !ignored.is_empty() {
        eprintln!(
            "u7s-bundle: note: {} apply to init only; a joining node takes the cluster's configuration",
            ignored.join(", ")
        );
    }
    let join = JoinSpec {
        endpoint: args.endpoint.clone(),
        token,
        ca_cert_hash: args.discovery_token_ca_cert_hash.clone(),
        control_plane: certificate_key,
    };
    if !args.run.print_config {
        node_trust(&args)?;
    }
    run(&args.select, &args.run, Some(join))
}

/// A secret given on the command line or read from a file (or stdin).
fn secret(value: Option<&str>, file: Option<&Path>, flag: &str) -> Result<String> {
    match (value, file) {
        (Some(v), _) => Ok(v.to_string()),
        (None, Some(f)) => {
            kubeadm::read_secret(f).with_context(|| format!("{flag} {}", f.display()))
        }
        (None, None) => bail!("{flag} is missing"),
    }
}

/// A joining node must trust the registry before kubeadm pulls from it:
/// `--setup-trust` runs node-trust first; then the node's policy must hold a
/// signedBy rule for the registry (with the given fingerprints) and
/// registries.d a lookaside for it. Preflight then verifies every image's
/// signature through that lookaside.
fn node_trust(args: &JoinArgs) -> Result<()> {
    let t = &args.trust;
    let paths = NodePaths {
        policy: args.select.policy.clone(),
        registries_d: args.select.registries_d.clone(),
        registries_conf_d: t.registries_conf_d.clone(),
        keys_dir: t.keys_dir.clone(),
        hosts_file: t.hosts_file.clone(),
    };
    let registry = &args.select.registry;
    if t.setup_trust {
        let http = match t.registry_address {
            Some(addr) => HttpFetch::resolving(&t.sigstore_url, addr),
            None => HttpFetch::new(),
        }
        .context("starting the HTTP client")?;
        let setup = Setup {
            sigstore_url: &t.sigstore_url,
            fingerprints: &t.fingerprints,
            registry,
            address: t.registry_address,
            paths: &paths,
        };
        for c in trust_node::setup(&http, &setup, false)?.changes {
            println!("{c}");
        }
    }
    let problems = trust_node::local_problems(&paths, registry, &t.fingerprints);
    if problems.is_empty() {
        return Ok(());
    }
    for p in &problems {
        eprintln!("u7s-bundle: {p}");
    }
    let fprs = if t.fingerprints.is_empty() {
        " --fingerprint FPR".to_string()
    } else {
        t.fingerprints
            .iter()
            .map(|f| format!(" --fingerprint {}", shell_quote(f)))
            .collect()
    };
    bail!(
        "this node does not trust {registry}; kubeadm was not run. Fix: \
         u7s-bundle node-trust --registry {registry}{fprs} --address <registry host's IP> \
         (FPR: the fingerprint `u7s-bundle load` printed), or join again with --setup-trust{fprs}"
    )
}

fn run(select: &ClusterSelectArgs, opts: &KubeadmRunArgs, join: Option<JoinSpec>) -> Result<()> {
    for (flag, v) in [
        ("--pod-network-cidr", &opts.pod_network_cidr),
        ("--service-cidr", &opts.service_cidr),
    ] {
        if let Some(v) = v {
            kubeadm::validate_cidr(v).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        }
    }
    if let Some(e) = &opts.control_plane_endpoint {
        kubeadm::validate_endpoint(e)
            .map_err(|e| anyhow::anyhow!("--control-plane-endpoint: {e}"))?;
    }
    let sel = node::select(select)?;
    if opts.print_config {
        let spec = ClusterSpec {
            kube_version: sel.kube_version,
            image_repository: sel.image_repository(),
            advertise_address: opts.apiserver_advertise_address.map(|a| a.to_string()),
            control_plane_endpoint: opts.control_plane_endpoint.clone(),
            pod_cidr: opts
                .pod_network_cidr
                .clone()
                .unwrap_or_else(|| DEFAULT_POD_CIDR.into()),
            service_cidr: opts
                .service_cidr
                .clone()
                .unwrap_or_else(|| DEFAULT_SERVICE_CIDR.into()),
            join: join.clone(),
        };
        print!("{}", kubeadm::config_yaml(&spec, true));
        return Ok(());
    }

    let report = node::check(select, &sel);
    {
        let mut out = std::io::stdout().lock();
        report.print(&sel, &mut out)?;
        out.flush()?;
    }
    if !report.ok() {
        bail!(
            "preflight failed ({} check(s)): {} was not run",
            report.failed(),
            select.kubeadm.display()
        );
    }

    let argv = wrapper_args(join.as_ref(), opts);
    let mut env = wrapper_env(&sel);
    if opts.dry_run {
        println!("would run (dry run):");
        for (k, v) in &env {
            println!("  {k}={}", shell_quote(v));
        }
        let shown: Vec<String> = kubeadm::redact_args(&argv)
            .iter()
            .map(|a| shell_quote(a))
            .collect();
        println!(
            "  {} {}",
            shell_quote(&select.kubeadm.display().to_string()),
            shown.join(" ")
        );
        return Ok(());
    }

    println!(
        "running {} {} (images from {})",
        select.kubeadm.display(),
        if join.is_some() { "join" } else { "init" },
        sel.image_repository()
    );
    std::io::stdout().flush()?;
    // The secrets go in the environment, never on the wrapper's command line.
    env.extend(join.iter().flat_map(JoinSpec::secret_env));
    let mut child = Command::new(&select.kubeadm)
        .args(&argv)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Exact tags were checked: no substitution of "available" ones.
        .env_remove("U7S_SETAVAILABLEIMAGES")
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("running {}", select.kubeadm.display()))?;
    let mut captured = String::new();
    {
        let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut out = std::io::stdout();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .context("reading the wrapper's output")?;
            if n == 0 {
                break;
            }
            // Keep streaming even if our own stdout went away.
            let _ = out.write_all(&line).and_then(|()| out.flush());
            captured.push_str(&String::from_utf8_lossy(&line));
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {}", select.kubeadm.display()))?;
    if !status.success() {
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(1)
        });
        eprintln!(
            "u7s-bundle: {} {} failed ({status})",
            select.kubeadm.display(),
            if join.is_some() { "join" } else { "init" }
        );
        std::process::exit(if code == 0 { 1 } else { code });
    }
    // What this node runs now: a later load of another version does not
    // change what init/join/preflight here default to.
    u7s_bundle::node_state::NodeRecord {
        platform: sel.platform.clone(),
        kube_version: sel.kube_version.to_string(),
    }
    .write(&select.state_dir)
    .context("recording the node's kubernetes version")?;
    if join.is_none() {
        save_join_commands(select, &sel, &captured)?;
    }
    Ok(())
}

/// The wrapper's command line (secrets included: it is not printed).
fn wrapper_args(join: Option<&JoinSpec>, opts: &KubeadmRunArgs) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    match join {
        None => {
            a.push("init".into());
            if let Some(e) = &opts.control_plane_endpoint {
                a.extend(["--control-plane-endpoint".into(), e.clone()]);
            }
            if let Some(c) = &opts.pod_network_cidr {
                a.extend(["--pod-network-cidr".into(), c.clone()]);
            }
            if let Some(c) = &opts.service_cidr {
                a.extend(["--service-cidr".into(), c.clone()]);
            }
        }
        Some(j) => {
            a.extend([
                "join".into(),
                j.endpoint.clone(),
                "--discovery-token-ca-cert-hash".into(),
                j.ca_cert_hash.clone(),
            ]);
            // --token and --certificate-key: in the environment (JoinSpec::secret_env).
            if j.control_plane.is_some() {
                a.push("--control-plane".into());
            }
        }
    }
    if let Some(ip) = &opts.apiserver_advertise_address {
        a.extend(["--apiserver-advertise-address".into(), ip.to_string()]);
    }
    if let Some(v) = opts.verbosity {
        a.extend(["-v".into(), v.to_string()]);
    }
    a
}

/// What the wrapper reads to choose its images.
fn wrapper_env(sel: &Selection) -> Vec<(String, String)> {
    let mut env = vec![
        ("U7S_REGISTRY".to_string(), sel.registry.clone()),
        ("U7S_PLATFORM".to_string(), sel.platform.clone()),
        ("U7S_KUBEVERSION".to_string(), sel.kube_version.to_string()),
    ];
    if let Some(t) = &sel.flannel_tag {
        env.push(("U7S_FLANNEL_TAG".into(), t.clone()));
    }
    if let Some(t) = &sel.flannel_cni_plugin_tag {
        env.push(("U7S_FLANNELCNIPLUGIN_TAG".into(), t.clone()));
    }
    env
}

/// The secrets of a saved join command, each with the file (in the script's
/// private temporary directory) that carries it to `u7s-bundle join`.
type Secrets = Vec<(&'static str, String)>;

/// `u7s-bundle join …` for a `kubeadm join …` line: the same endpoint, the
/// secrets as `--token-file`/`--certificate-key-file` (their values are
/// returned, for the script to write into 0600 files: a command line is
/// readable by every local user), plus the image set of this cluster (a
/// joining node has no bundle record of its own).
fn u7s_join_command(
    select: &ClusterSelectArgs,
    sel: &Selection,
    kubeadm_line: &str,
) -> (String, Secrets) {
    let words: Vec<&str> = kubeadm_line.split_whitespace().skip(2).collect();
    let mut out: Vec<String> = vec!["u7s-bundle".into(), "join".into()];
    let mut secrets: Secrets = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        match w {
            "--token" | "--certificate-key" => {
                let file = if w == "--token" {
                    "token"
                } else {
                    "certificate-key"
                };
                if let Some(v) = words.get(i + 1) {
                    out.push(format!("{w}-file \"$secrets/{file}\""));
                    secrets.push((file, v.to_string()));
                }
                i += 2;
                continue;
            }
            "--discovery-token-ca-cert-hash" => {
                out.push(w.to_string());
                if let Some(v) = words.get(i + 1) {
                    out.push(shell_quote(v));
                }
                i += 2;
                continue;
            }
            "--control-plane" => out.push(w.to_string()),
            w if !w.starts_with('-') && out.len() == 2 => out.push(shell_quote(w)),
            _ => {}
        }
        i += 1;
    }
    out.extend([
        "--platform".into(),
        shell_quote(&sel.platform),
        "--kube-version".into(),
        sel.kube_version.to_string(),
    ]);
    if let Some(t) = &sel.flannel_tag {
        out.extend(["--flannel-tag".into(), shell_quote(t)]);
    }
    if select.registry != "registry.local" {
        out.extend(["--registry".into(), shell_quote(&select.registry)]);
    }
    if select.plain_http {
        out.push("--plain-http".into());
    }
    let fprs = trust_node::trusted_fingerprints(&select.policy, &select.registry);
    if !fprs.is_empty() {
        out.push("--setup-trust".into());
    }
    for f in fprs {
        out.extend(["--fingerprint".into(), f]);
    }
    (out.join(" "), secrets)
}

/// The saved join script. Its secrets go to `u7s-bundle join` in 0600 files
/// of a private temporary directory, written by the shell from here-documents
/// (no process gets them as arguments), removed when it ends.
fn join_script(what: &str, kubeadm_line: &str, u7s_line: &str, secrets: &Secrets) -> String {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let kubeadm_line = kubeadm::redact_args(
        &kubeadm_line
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>(),
    )
    .join(" ");
    let mut writes = String::new();
    for (file, value) in secrets {
        writes.push_str(&format!(
            "cat > \"$secrets/{file}\" <<'U7S_SECRET'\n{value}\nU7S_SECRET\n"
        ));
    }
    format!(
        "#!/bin/sh\n\
         # Join {what} to this cluster: run on that node as root.\n\
         # Saved by `u7s-bundle init` at {now}. It holds a bootstrap token (and for a\n\
         # control-plane node the certificate key): keep it secret; both expire\n\
         # (`kubeadm token create --print-join-command` makes new ones).\n\
         # kubeadm printed (secrets left out):\n\
         #   {kubeadm_line}\n\
         # The secrets reach u7s-bundle in 0600 files, never on a command line.\n\
         set -eu\n\
         umask 077\n\
         secrets=$(mktemp -d)\n\
         trap 'rm -rf \"$secrets\"' EXIT\n\
         trap 'exit 130' INT TERM\n\
         {writes}\
         # u7s-bundle join checks the node first and keeps the wrapper on the registry:\n\
         {u7s_line}\n"
    )
}

/// A bootstrap token (`abcdef.0123456789abcdef`) or certificate key (hex):
/// safe in a quoted here-document, which then cannot end early.
fn is_plain_secret(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

fn save_join_commands(select: &ClusterSelectArgs, sel: &Selection, output: &str) -> Result<()> {
    let (worker, control_plane) = kubeadm::join_commands(output);
    let dir: &Path = &select.state_dir;
    let mut saved: Vec<(&str, PathBuf)> = Vec::new();
    for (line, file, what, label) in [
        (&worker, JOIN_WORKER_FILE, "a worker node", "worker"),
        (
            &control_plane,
            JOIN_CONTROL_PLANE_FILE,
            "a control-plane node",
            "control plane",
        ),
    ] {
        let Some(line) = line else {
            eprintln!(
                "u7s-bundle: warning: kubeadm printed no {label} join command; \
                 make one with `kubeadm token create --print-join-command`{}",
                if label == "control plane" {
                    " (plus --control-plane --certificate-key from `kubeadm init phase upload-certs --upload-certs`)"
                } else {
                    ""
                }
            );
            continue;
        };
        fsutil::create_dir_all_mode(dir, 0o755)
            .with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(file);
        let (command, secrets) = u7s_join_command(select, sel, line);
        if let Some((_, v)) = secrets.iter().find(|(_, v)| !is_plain_secret(v)) {
            bail!(
                "kubeadm printed a join secret u7s-bundle does not expect ({} characters, not \
                 letters, digits and dots); the join commands were not saved",
                v.len()
            );
        }
        let script = join_script(what, line, &command, &secrets);
        fsutil::write_atomic(&path, script.as_bytes(), 0o600)
            .with_context(|| format!("writing {}", path.display()))?;
        saved.push((label, path));
    }
    if !saved.is_empty() {
        println!("join commands saved (mode 0600: they hold secrets):");
        for (label, path) in saved {
            println!("  {label}: {}", path.display());
        }
    }
    Ok(())
}
