//! The registry host's services: what podsec-create-services sets up, as
//! configuration files and drop-ins of ALT's own packages.
//!
//! - docker-registry serves `registry.local` (plain HTTP, podsec's port 80)
//!   from its storage directory. podsec runs `sed` over the package's
//!   `config.yml`; we write our own configuration file and a systemd drop-in
//!   that starts the unit with it, so a package update never meets an edited
//!   file and our settings never meet the package's.
//! - nginx serves the sigstore directory (`keys/`, `sigstore/`) as
//!   `sigstore.local` on port 81 with a JSON autoindex, as podsec configures
//!   it: the other nodes list `keys/` through it. Symlinks are not followed
//!   (nothing outside the directory is served by accident) and only GET/HEAD
//!   are answered.
//! - `/etc/hosts` binds `registry.local sigstore.local` to the host's address
//!   ([`crate::hosts`]).
//!
//! [`plan`] computes the files; [`crate::edits::apply`] writes them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::edits::Edit;
use crate::hosts;

/// Where each file goes (on the host; `--root` prefixes them).
pub const REGISTRY_CONFIG: &str = "/etc/docker-registry/u7s-bundle.yml";
pub const REGISTRY_DROPIN: &str = "/etc/systemd/system/docker-registry.service.d/u7s-bundle.conf";
/// ALT's nginx.conf includes `sites-enabled.d/*.conf`.
pub const NGINX_SITE: &str = "/etc/nginx/sites-enabled.d/u7s-sigstore.conf";
pub const HOSTS: &str = "/etc/hosts";
/// The units enabled and started, in this order.
pub const UNITS: [&str; 2] = ["docker-registry.service", "nginx.service"];

/// What the registry host serves, and where from.
#[derive(Clone, Debug)]
pub struct Services {
    /// The host's address: both services listen on it, and `/etc/hosts` binds
    /// the cluster names to it.
    pub address: IpAddr,
    pub registry_port: u16,
    pub sigstore_port: u16,
    /// Served by nginx: `keys/` and `sigstore/` (as `load` writes them).
    pub sigstore_dir: PathBuf,
    /// docker-registry's storage (podsec's: the `registry` podman volume).
    pub registry_storage: PathBuf,
    /// The docker-registry program the drop-in starts.
    pub registry_bin: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("{what} must be an absolute path without quotes, spaces or ';' (got {path:?})")]
    BadPath { what: &'static str, path: PathBuf },
    #[error("the registry and the sigstore server cannot share port {0}")]
    SamePort(u16),
    #[error("running {command}: {why}")]
    Systemctl { command: String, why: String },
}

fn checked<'a>(what: &'static str, p: &'a Path) -> Result<&'a str, ServicesError> {
    let bad = || ServicesError::BadPath {
        what,
        path: p.to_path_buf(),
    };
    let s = p.to_str().ok_or_else(bad)?;
    // The paths go into nginx, YAML and systemd syntax unquoted.
    if !p.is_absolute()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'`;{}#$\\%".contains(c))
    {
        return Err(bad());
    }
    Ok(s)
}

fn listen(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

impl Services {
    fn registry_config(&self) -> Result<String, ServicesError> {
        let storage = checked("--registry-storage", &self.registry_storage)?;
        Ok(format!(
            "# Written by u7s-bundle services: registry.local for the cluster.\n\
             # The package's own config.yml is not used (see the systemd drop-in).\n\
             version: 0.1\n\
             log:\n  level: info\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: {}\n  headers:\n    X-Content-Type-Options: [nosniff]\n",
            listen(self.address, self.registry_port)
        ))
    }

    fn registry_dropin(&self) -> Result<String, ServicesError> {
        let bin = checked("--registry-bin", &self.registry_bin)?;
        Ok(format!(
            "# Written by u7s-bundle services: start docker-registry with its own\n\
             # configuration instead of editing the package's config.yml.\n\
             [Service]\nExecStart=\nExecStart={bin} serve {REGISTRY_CONFIG}\n"
        ))
    }

    fn nginx_site(&self) -> Result<String, ServicesError> {
        let root = checked("--sigstore-dir", &self.sigstore_dir)?;
        Ok(format!(
            "# Written by u7s-bundle services: sigstore.local, the public keys and\n\
             # the lookaside signatures every node of the cluster reads.\n\
             server {{\n\
             \x20   listen {};\n\
             \x20   server_name sigstore.local;\n\
             \x20   root {root};\n\
             \x20   disable_symlinks on;\n\
             \x20   location / {{\n\
             \x20       limit_except GET {{ deny all; }}\n\
             \x20       autoindex on;\n\
             \x20       autoindex_format json;\n\
             \x20   }}\n\
             }}\n",
            listen(self.address, self.sigstore_port)
        ))
    }
}

/// Every file the registry host needs; `hosts_now` is the current
/// `/etc/hosts` (the edit is left out when it already binds the names).
pub fn plan(s: &Services, hosts_now: &str) -> Result<Vec<Edit>, ServicesError> {
    if s.registry_port == s.sigstore_port {
        return Err(ServicesError::SamePort(s.registry_port));
    }
    let edit = |path: &str, content: String, what: &str| Edit {
        path: path.into(),
        content: content.into_bytes(),
        mode: 0o644,
        what: what.into(),
    };
    let mut edits = vec![
        edit(
            REGISTRY_CONFIG,
            s.registry_config()?,
            "docker-registry configuration",
        ),
        edit(
            REGISTRY_DROPIN,
            s.registry_dropin()?,
            "docker-registry.service drop-in",
        ),
        edit(NGINX_SITE, s.nginx_site()?, "nginx site sigstore.local"),
    ];
    if let Some(h) = hosts::bind(hosts_now, s.address, &hosts::CLUSTER_NAMES) {
        edits.push(edit(HOSTS, h, "registry.local sigstore.local"));
    }
    Ok(edits)
}

/// The directories the services read, created 0755 when missing.
pub fn directories(s: &Services) -> Vec<PathBuf> {
    vec![
        s.sigstore_dir.join("keys"),
        s.sigstore_dir.join("sigstore"),
        s.registry_storage.clone(),
    ]
}

/// The systemctl calls that bring the units up: reload the unit files,
/// enable and start both, and restart them when their configuration changed.
pub fn systemctl_calls(changed: bool) -> Vec<Vec<String>> {
    let mut calls = vec![vec!["daemon-reload".to_string()]];
    let mut enable = vec!["enable".to_string(), "--now".to_string()];
    enable.extend(UNITS.iter().map(|u| u.to_string()));
    calls.push(enable);
    if changed {
        let mut restart = vec!["restart".to_string()];
        restart.extend(UNITS.iter().map(|u| u.to_string()));
        calls.push(restart);
    }
    calls
}

/// Run `systemctl ARGS` for each call; the first failure stops.
pub fn run_systemctl(systemctl: &Path, calls: &[Vec<String>]) -> Result<(), ServicesError> {
    for args in calls {
        let command = format!("{} {}", systemctl.display(), args.join(" "));
        let status =
            Command::new(systemctl)
                .args(args)
                .status()
                .map_err(|e| ServicesError::Systemctl {
                    command: command.clone(),
                    why: e.to_string(),
                })?;
        if !status.success() {
            return Err(ServicesError::Systemctl {
                command,
                why: status.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Services {
        Services {
            address: "10.0.0.10".parse().unwrap(),
            registry_port: 80,
            sigstore_port: 81,
            sigstore_dir: "/var/sigstore".into(),
            registry_storage: "/var/lib/containers/storage/volumes/registry/_data".into(),
            registry_bin: "/usr/bin/docker-registry".into(),
        }
    }

    #[test]
    fn plan_writes_podsecs_settings_into_our_own_files() {
        let edits = plan(&services(), "127.0.0.1 localhost\n").unwrap();
        let text = |p: &str| {
            String::from_utf8(
                edits
                    .iter()
                    .find(|e| e.path == Path::new(p))
                    .unwrap()
                    .content
                    .clone(),
            )
            .unwrap()
        };
        assert!(text(REGISTRY_CONFIG).contains("addr: 10.0.0.10:80\n"));
        assert!(text(REGISTRY_CONFIG)
            .contains("rootdirectory: /var/lib/containers/storage/volumes/registry/_data\n"));
        assert!(text(REGISTRY_DROPIN)
            .contains("ExecStart=\nExecStart=/usr/bin/docker-registry serve /etc/docker-registry/u7s-bundle.yml\n"));
        let site = text(NGINX_SITE);
        for want in [
            "listen 10.0.0.10:81;",
            "root /var/sigstore;",
            "autoindex on;",
            "autoindex_format json;",
            "server_name sigstore.local;",
        ] {
            assert!(site.contains(want), "{want} in {site}");
        }
        assert!(text(HOSTS).ends_with("10.0.0.10 registry.local sigstore.local\n"));
        // Bound already: /etc/hosts is not in the plan.
        let edits = plan(&services(), "10.0.0.10 registry.local sigstore.local\n").unwrap();
        assert!(edits.iter().all(|e| e.path != Path::new(HOSTS)));
    }

    #[test]
    fn paths_that_would_break_the_syntax_are_refused() {
        let mut s = services();
        s.sigstore_dir = "/var/sig store; }".into();
        assert!(matches!(plan(&s, ""), Err(ServicesError::BadPath { .. })));
        let mut s = services();
        s.registry_storage = "relative".into();
        assert!(plan(&s, "").is_err());
        let mut s = services();
        s.sigstore_port = 80;
        assert!(matches!(plan(&s, ""), Err(ServicesError::SamePort(80))));
    }
}
