//! Driving podsec's rootless kubeadm wrapper (`/usr/libexec/podsec/u7s/bin/kubeadm`):
//! the kubeadm configuration a run amounts to, the `kubeadm join` commands
//! `init` prints, and the record of the last bundle loaded on this host.
//!
//! The wrapper itself writes the configuration it hands to kubeadm (from the
//! `U7S_*` environment); [`config_yaml`] reproduces it, with the API version
//! kubeadm of that release wants: `kubeadm.k8s.io/v1beta3` before 1.31,
//! `v1beta4` from 1.31 (where v1beta3 is deprecated).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

use crate::profile::KubeVersion;

/// Where podsec-k8s installs the wrapper.
pub const DEFAULT_WRAPPER: &str = "/usr/libexec/podsec/u7s/bin/kubeadm";
/// Where u7s-bundle keeps its per-host state (last-bundle.json, join commands).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/u7s-bundle";
/// The record of the last bundle `load` put into the registry of this host.
pub const LAST_BUNDLE_FILE: &str = "last-bundle.json";
/// etcd's data directory in the rootless cluster.
pub const ETCD_DATA_DIR: &str = "/var/lib/podsec/u7s/etcd";
/// podsec's (and flannel's) pod network.
pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";
/// kubeadm's service network.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
/// Files `init` saves the join commands to, in the state directory.
pub const JOIN_WORKER_FILE: &str = "join-worker.sh";
pub const JOIN_CONTROL_PLANE_FILE: &str = "join-control-plane.sh";
/// Stands in for secrets wherever u7s-bundle prints a command or configuration.
pub const REDACTED: &str = "<redacted>";

/// `<state-dir>/last-bundle.json`: what `load` last pushed into the registry of
/// this host; `preflight`, `init` and `join` take their defaults from it.
/// Only `kube_version` is required; unknown keys are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastBundle {
    /// `v1.26.9`
    pub kube_version: String,
    /// Canonical platform (`c10f`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flannel_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flannel_cni_plugin_tag: Option<String>,
    /// The registry it was loaded into (`registry.local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The archive loaded (absolute path), for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// RFC 3339 time of the load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
}

impl LastBundle {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(LAST_BUNDLE_FILE)
    }

    /// The record in `state_dir`, `Ok(None)` if there is none.
    pub fn read(state_dir: &Path) -> Result<Option<LastBundle>, String> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// `v1beta3` for kubernetes < 1.31, `v1beta4` from 1.31.
pub fn config_api_version(v: &KubeVersion) -> &'static str {
    if (v.major, v.minor) < (1, 31) {
        "kubeadm.k8s.io/v1beta3"
    } else {
        "kubeadm.k8s.io/v1beta4"
    }
}

/// What a `join` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinSpec {
    pub endpoint: String,
    pub token: String,
    pub ca_cert_hash: String,
    /// `Some(certificate key)` for a control-plane join.
    pub control_plane: Option<String>,
}

impl JoinSpec {
    /// The join secrets as podsec's wrapper reads them: it keeps each flag
    /// it parses in a `FLAG_<name>` shell variable and sets none it was not
    /// given, so the same variables in its environment stand for
    /// `--token` and `--certificate-key` without putting them on a command
    /// line (`/proc/<pid>/cmdline` is readable by every local user; the
    /// environment only by the process's owner and root).
    pub fn secret_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("FLAG_token".to_string(), self.token.clone())];
        if let Some(k) = &self.control_plane {
            env.push(("FLAG_certificate_key".to_string(), k.clone()));
        }
        env
    }
}

/// Read a secret from `path` (`-`: standard input): the first line, trimmed;
/// empty is an error.
pub fn read_secret(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::BufRead;
    let mut line = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().lock().read_line(&mut line)?;
    } else {
        let f = std::fs::File::open(path)?;
        std::io::BufReader::new(f).read_line(&mut line)?;
    }
    let s = line.trim().to_string();
    if s.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: empty", path.display()),
        ));
    }
    Ok(s)
}

/// What a run of `init` or `join` configures.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub kube_version: KubeVersion,
    /// `registry.local/c10f`
    pub image_repository: String,
    pub advertise_address: Option<String>,
    pub control_plane_endpoint: Option<String>,
    pub pod_cidr: String,
    pub service_cidr: String,
    /// `None` for init.
    pub join: Option<JoinSpec>,
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(Value::String(k.to_string()), v);
    }
    Value::Mapping(m)
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// The kubeadm configuration of a run, as YAML documents: for init an
/// `InitConfiguration` and a `ClusterConfiguration`; for join a
/// `JoinConfiguration` followed by the `ClusterConfiguration` the cluster is
/// expected to have (kubeadm join reads the real one from the cluster).
/// With `redact`, the token and certificate key read [`REDACTED`].
pub fn config_yaml(spec: &ClusterSpec, redact: bool) -> String {
    let api = config_api_version(&spec.kube_version);
    let secret = |v: &str| if redact { s(REDACTED) } else { s(v) };
    let mut docs = Vec::new();
    let local_endpoint = spec
        .advertise_address
        .as_deref()
        .map(|a| map(vec![("advertiseAddress", s(a))]));
    match &spec.join {
        None => {
            let mut init = vec![("apiVersion", s(api)), ("kind", s("InitConfiguration"))];
            if let Some(e) = local_endpoint {
                init.push(("localAPIEndpoint", e));
            }
            docs.push(map(init));
        }
        Some(j) => {
            let mut join = vec![
                ("apiVersion", s(api)),
                ("kind", s("JoinConfiguration")),
                (
                    "discovery",
                    map(vec![(
                        "bootstrapToken",
                        map(vec![
                            ("apiServerEndpoint", s(&j.endpoint)),
                            ("token", secret(&j.token)),
                            ("caCertHashes", Value::Sequence(vec![s(&j.ca_cert_hash)])),
                        ]),
                    )]),
                ),
            ];
            if let Some(key) = &j.control_plane {
                let mut cp = vec![("certificateKey", secret(key))];
                if let Some(e) = local_endpoint {
                    cp.push(("localAPIEndpoint", e));
                }
                join.push(("controlPlane", map(cp)));
            }
            docs.push(map(join));
        }
    }
    let mut cluster = vec![
        ("apiVersion", s(api)),
        ("kind", s("ClusterConfiguration")),
        ("kubernetesVersion", s(&spec.kube_version.to_string())),
        ("imageRepository", s(&spec.image_repository)),
    ];
    if let Some(e) = &spec.control_plane_endpoint {
        cluster.push(("controlPlaneEndpoint", s(e)));
    }
    cluster.push((
        "networking",
        map(vec![
            ("podSubnet", s(&spec.pod_cidr)),
            ("serviceSubnet", s(&spec.service_cidr)),
        ]),
    ));
    cluster.push((
        "etcd",
        map(vec![("local", map(vec![("dataDir", s(ETCD_DATA_DIR))]))]),
    ));
    docs.push(map(cluster));
    docs.iter()
        .map(|d| serde_yaml_ng::to_string(d).expect("plain YAML serializes"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// `10.244.0.0/16` or `fd00::/108`: an IP address and a prefix length that fits it.
pub fn validate_cidr(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not a CIDR (e.g. 10.244.0.0/16)");
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok(())
}

/// `HOST:PORT` (a DNS name, an IPv4 address or a bracketed IPv6 address and a port).
pub fn validate_endpoint(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not HOST:PORT (e.g. 10.0.0.10:6443)");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    };
    if host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The `kubeadm join …` commands in kubeadm's output, each with its `\`
/// continuation lines joined into one line: `(worker, control_plane)`, the
/// last of each kind.
pub fn join_commands(output: &str) -> (Option<String>, Option<String>) {
    let mut worker = None;
    let mut control_plane = None;
    let mut lines = output.lines();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if !t.starts_with("kubeadm join ") {
            continue;
        }
        let mut words: Vec<String> = Vec::new();
        let mut cur = t.to_string();
        loop {
            let cont = cur.trim_end().ends_with('\\');
            let part = cur.trim_end().trim_end_matches('\\');
            words.extend(part.split_whitespace().map(str::to_string));
            if !cont {
                break;
            }
            match lines.next() {
                Some(l) => cur = l.trim().to_string(),
                None => break,
            }
        }
        let cmd = words.join(" ");
        if words.iter().any(|w| w == "--control-plane") {
            control_plane = Some(cmd);
        } else {
            worker = Some(cmd);
        }
    }
    (worker, control_plane)
}

/// Replace the values of `--token`, `--certificate-key` (and
/// `--discovery-token`) in an argument list with [`REDACTED`], for printing.
pub fn redact_args(args: &[String]) -> Vec<String> {
    let secret = ["--token", "--certificate-key", "--discovery-token"];
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for a in args {
        if hide_next {
            out.push(REDACTED.to_string());
            hide_next = false;
            continue;
        }
        if let Some((flag, _)) = a.split_once('=') {
            if secret.contains(&flag) {
                out.push(format!("{flag}={REDACTED}"));
                continue;
            }
        }
        hide_next = secret.contains(&a.as_str());
        out.push(a.clone());
    }
    out
}

/// Quote a word for a POSIX shell when it needs it.
pub fn shell_quote(w: &str) -> String {
    if !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: KubeVersion, join: Option<JoinSpec>) -> ClusterSpec {
        ClusterSpec {
            kube_version: v,
            image_repository: "registry.local/c10f".into(),
            advertise_address: Some("10.0.0.10".into()),
            control_plane_endpoint: None,
            pod_cidr: DEFAULT_POD_CIDR.into(),
            service_cidr: DEFAULT_SERVICE_CIDR.into(),
            join,
        }
    }

    #[test]
    fn api_versions() {
        assert_eq!(
            config_api_version(&KubeVersion::new(1, 26, 9)),
            "kubeadm.k8s.io/v1beta3"
        );
        assert_eq!(
            config_api_version(&KubeVersion::new(1, 30, 14)),
            "kubeadm.k8s.io/v1beta3"
        );
        assert_eq!(
            config_api_version(&KubeVersion::new(1, 31, 0)),
            "kubeadm.k8s.io/v1beta4"
        );
    }

    #[test]
    fn join_config_redacts() {
        let j = JoinSpec {
            endpoint: "10.0.0.10:6443".into(),
            token: "abcdef.0123456789abcdef".into(),
            ca_cert_hash: "sha256:00".into(),
            control_plane: Some("c0ffee".into()),
        };
        let y = config_yaml(&spec(KubeVersion::new(1, 31, 1), Some(j.clone())), true);
        assert!(!y.contains("abcdef.0123") && !y.contains("c0ffee"), "{y}");
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&y)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs[0]["kind"], "JoinConfiguration");
        assert_eq!(docs[0]["apiVersion"], "kubeadm.k8s.io/v1beta4");
        assert_eq!(
            docs[0]["discovery"]["bootstrapToken"]["apiServerEndpoint"],
            "10.0.0.10:6443"
        );
        assert_eq!(docs[0]["controlPlane"]["certificateKey"], REDACTED);
        let y = config_yaml(&spec(KubeVersion::new(1, 31, 1), Some(j)), false);
        assert!(y.contains("abcdef.0123456789abcdef") && y.contains("c0ffee"));
    }

    #[test]
    fn join_lines_from_kubeadm_output() {
        let out = "Your Kubernetes control-plane has initialized successfully!\n\n\
You can now join any number of the control-plane node running the following command on each as root:\n\n\
  kubeadm join 10.0.0.10:6443 --token abcdef.0123456789abcdef \\\n\
\t--discovery-token-ca-cert-hash sha256:1234 \\\n\
\t--control-plane --certificate-key 5678\n\n\
Then you can join any number of worker nodes by running the following on each as root:\n\n\
kubeadm join 10.0.0.10:6443 --token abcdef.0123456789abcdef \\\n\
\t--discovery-token-ca-cert-hash sha256:1234 \n";
        let (w, c) = join_commands(out);
        assert_eq!(
            w.as_deref(),
            Some("kubeadm join 10.0.0.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1234")
        );
        assert_eq!(
            c.as_deref(),
            Some("kubeadm join 10.0.0.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1234 --control-plane --certificate-key 5678")
        );
        assert_eq!(join_commands("nothing here"), (None, None));
    }

    #[test]
    fn redaction_and_quoting() {
        let a: Vec<String> = [
            "join",
            "x:6443",
            "--token",
            "t.s",
            "--certificate-key=k",
            "-v",
            "5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            redact_args(&a),
            [
                "join",
                "x:6443",
                "--token",
                REDACTED,
                "--certificate-key=<redacted>",
                "-v",
                "5"
            ]
        );
        assert_eq!(shell_quote("sha256:ab"), "sha256:ab");
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
    }

    #[test]
    fn validation() {
        assert!(validate_cidr("10.244.0.0/16").is_ok());
        assert!(validate_cidr("fd00::/108").is_ok());
        for bad in ["10.244.0.0", "10.244.0.0/33", "x/8", ""] {
            assert!(validate_cidr(bad).is_err(), "{bad}");
        }
        assert!(validate_endpoint("10.0.0.10:6443").is_ok());
        assert!(validate_endpoint("cp.example:6443").is_ok());
        assert!(validate_endpoint("[fd00::1]:6443").is_ok());
        for bad in ["10.0.0.10", ":6443", "a b:1", "x:99999"] {
            assert!(validate_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn last_bundle_round_trip() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(LastBundle::read(t.path()).unwrap(), None);
        std::fs::write(
            LastBundle::path(t.path()),
            r#"{"kube_version":"v1.26.9","platform":"c10f","future_key":1}"#,
        )
        .unwrap();
        let lb = LastBundle::read(t.path()).unwrap().unwrap();
        assert_eq!(lb.kube_version, "v1.26.9");
        assert_eq!(lb.platform.as_deref(), Some("c10f"));
        std::fs::write(LastBundle::path(t.path()), "{").unwrap();
        assert!(LastBundle::read(t.path()).is_err());
    }
}
