//! `/etc/hosts`: the names `registry.local` and `sigstore.local` that every
//! node of the cluster resolves to the registry host.
//!
//! The file is shared with the rest of the system, so only the lines naming
//! our hosts are touched: a name bound to another address is removed from
//! that line (the line goes when only its address is left), and one line
//! `ADDR registry.local sigstore.local` is appended. Everything else —
//! comments, other names, their order — stays byte for byte. The caller writes
//! the result atomically with a backup ([`crate::fsutil`]).

use std::net::IpAddr;

/// The names podsec binds to the registry host.
pub const CLUSTER_NAMES: [&str; 2] = ["registry.local", "sigstore.local"];

/// `existing` with every name of `names` bound to `address`, or `None` when it
/// already says so (and nothing would change).
pub fn bind(existing: &str, address: IpAddr, names: &[&str]) -> Option<String> {
    let mut out = String::with_capacity(existing.len() + 64);
    let mut bound = false;
    for line in existing.split_inclusive('\n') {
        let body = line.split('#').next().unwrap_or_default();
        let mut words = body.split_whitespace();
        let ip = words.next().and_then(|w| w.parse::<IpAddr>().ok());
        let hosts: Vec<&str> = words.collect();
        let ours = hosts.iter().any(|h| names.contains(h));
        match ip {
            Some(ip) if ours && ip == address && names.iter().all(|n| hosts.contains(n)) => {
                bound = true;
                out.push_str(line);
            }
            Some(ip) if ours => {
                let kept: Vec<&str> = hosts
                    .iter()
                    .copied()
                    .filter(|h| !names.contains(h))
                    .collect();
                if !kept.is_empty() {
                    out.push_str(&format!("{ip} {}\n", kept.join(" ")));
                }
            }
            _ => out.push_str(line),
        }
    }
    if !bound {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{address} {}\n", names.join(" ")));
    }
    (out != existing).then_some(out)
}

/// The address `name` is bound to in `text`, the first line that names it
/// (as the resolver reads the file).
pub fn lookup(text: &str, name: &str) -> Option<IpAddr> {
    text.lines().find_map(|line| {
        let body = line.split('#').next().unwrap_or_default();
        let mut words = body.split_whitespace();
        let ip = words.next()?.parse::<IpAddr>().ok()?;
        words.any(|w| w == name).then_some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn appends_once_and_is_idempotent() {
        let base = "127.0.0.1 localhost\n# comment\n";
        let once = bind(base, ip("10.0.0.10"), &CLUSTER_NAMES).unwrap();
        assert_eq!(
            once,
            "127.0.0.1 localhost\n# comment\n10.0.0.10 registry.local sigstore.local\n"
        );
        assert_eq!(bind(&once, ip("10.0.0.10"), &CLUSTER_NAMES), None);
        assert_eq!(lookup(&once, "sigstore.local"), Some(ip("10.0.0.10")));
    }

    #[test]
    fn moves_names_from_another_address_and_keeps_other_names() {
        let base = "10.0.0.9 registry.local sigstore.local trivy.local\n10.0.0.7 sigstore.local";
        let out = bind(base, ip("10.0.0.10"), &CLUSTER_NAMES).unwrap();
        assert_eq!(
            out,
            "10.0.0.9 trivy.local\n10.0.0.10 registry.local sigstore.local\n"
        );
        assert_eq!(lookup(&out, "registry.local"), Some(ip("10.0.0.10")));
    }

    #[test]
    fn a_partial_binding_is_completed() {
        let base = "10.0.0.10 registry.local\n";
        let out = bind(base, ip("10.0.0.10"), &CLUSTER_NAMES).unwrap();
        assert_eq!(out, "10.0.0.10 registry.local sigstore.local\n");
    }
}
