//! `registries.conf` drop-ins: tell containers/image that our registry speaks
//! plain HTTP.
//!
//! `registry.local` serves HTTP on port 80 (podsec's layout). containers/image
//! (podman, CRI-O) tries HTTPS first and, unless the registry is marked
//! `insecure = true`, never falls back, so every pull on the cluster fails
//! with `Get "https://registry.local/v2/": connection refused` — while `load`,
//! which talks HTTP, succeeds. podsec-create-policy adds the entry to
//! registries.conf; we add it as a drop-in of our own
//! (`registries.conf.d/u7s-bundle.conf`) so the admin's file stays theirs.
//!
//! How containers/image reads it (5.23, as in Debian bookworm and ALT):
//! `registries.conf`, then every `*.conf` of `registries.conf.d` in lexical
//! order; a `[[registry]]` table with the same `prefix` (default: its
//! `location`) in a later file replaces the earlier one as a whole. The
//! version-1 form `[registries.insecure] registries = [...]` also marks a host
//! insecure.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{is_registry_host, Change, ChangeKind};
use crate::fsutil;

/// The drop-in we own.
pub const OWN_FILE: &str = "u7s-bundle.conf";

#[derive(Debug, thiserror::Error)]
pub enum RegistriesConfError {
    #[error("invalid registry host {0:?}")]
    InvalidHost(String),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not valid TOML (containers/image would refuse it too)")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = RegistriesConfError> = std::result::Result<T, E>;

/// What [`plan`] decided: the drop-in to write (if any) and what to report.
#[derive(Debug, Default)]
pub struct Plan {
    pub write: Option<(PathBuf, Vec<u8>)>,
    pub changes: Vec<Change>,
}

/// The `[[registry]]` entry for `host` as the configuration stands, and the
/// file it comes from.
#[derive(Debug)]
struct Entry {
    insecure: bool,
    file: PathBuf,
}

/// `registries.conf` beside `registries.conf.d` (`/etc/containers/registries.conf.d`
/// → `/etc/containers/registries.conf`).
pub fn main_file(conf_d: &Path) -> PathBuf {
    let name = conf_d
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".d"))
        .unwrap_or("registries.conf");
    conf_d.with_file_name(name)
}

fn own_content(host: &str) -> Vec<u8> {
    format!(
        "# Managed by u7s-bundle: {host} serves plain HTTP, so containers/image\n\
         # (podman, CRI-O) must not insist on HTTPS (podsec-create-policy adds the same).\n\
         [[registry]]\n\
         location = \"{host}\"\n\
         insecure = true\n"
    )
    .into_bytes()
}

fn read_toml(path: &Path) -> Result<Option<toml::Table>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RegistriesConfError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    text.parse::<toml::Table>()
        .map(Some)
        .map_err(|source| RegistriesConfError::Parse {
            path: path.to_path_buf(),
            source,
        })
}

/// Apply one file's say about `host` on top of `entry`.
fn apply_file(table: &toml::Table, file: &Path, host: &str, entry: &mut Option<Entry>) {
    if let Some(list) = table
        .get("registries")
        .and_then(|r| r.get("insecure"))
        .and_then(|i| i.get("registries"))
        .and_then(|l| l.as_array())
    {
        if list.iter().any(|v| v.as_str() == Some(host)) {
            *entry = Some(Entry {
                insecure: true,
                file: file.to_path_buf(),
            });
        }
    }
    for reg in table
        .get("registry")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        let location = reg.get("location").and_then(|v| v.as_str());
        let prefix = reg.get("prefix").and_then(|v| v.as_str()).or(location);
        if prefix == Some(host) {
            *entry = Some(Entry {
                insecure: reg.get("insecure").and_then(|v| v.as_bool()) == Some(true),
                file: file.to_path_buf(),
            });
        }
    }
}

/// Decide what makes containers/image reach `host` over plain HTTP:
/// nothing when the admin's files (registries.conf and the other drop-ins)
/// already mark it insecure; our drop-in when nobody has an entry for it; a
/// [`ChangeKind::Warning`] when the admin's own entry says otherwise (a drop-in
/// of ours would replace that entry as a whole, mirrors and all).
pub fn plan(conf_d: &Path, host: &str) -> Result<Plan> {
    if !is_registry_host(host) {
        return Err(RegistriesConfError::InvalidHost(host.to_string()));
    }
    let own = conf_d.join(OWN_FILE);
    let mut files = vec![main_file(conf_d)];
    match fs::read_dir(conf_d) {
        Ok(rd) => {
            let mut names: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf") && *p != own)
                .collect();
            names.sort();
            files.extend(names);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(RegistriesConfError::Read {
                path: conf_d.to_path_buf(),
                source,
            })
        }
    }
    let mut entry = None;
    for f in &files {
        if let Some(t) = read_toml(f)? {
            apply_file(&t, f, host, &mut entry);
        }
    }
    let mut plan = Plan::default();
    match entry {
        Some(Entry { insecure: true, .. }) => {}
        Some(Entry { file, .. }) => plan.changes.push(Change::new(
            ChangeKind::Warning,
            Some(file),
            format!(
                "its [[registry]] entry for {host} does not say insecure = true: \
                 podman and CRI-O will try HTTPS and fail; add insecure = true there"
            ),
        )),
        None => {
            let want = own_content(host);
            let have = match fs::read(&own) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(RegistriesConfError::Read { path: own, source });
                }
            };
            if have.as_deref() != Some(&want[..]) {
                let kind = if have.is_some() {
                    ChangeKind::Updated
                } else {
                    ChangeKind::Created
                };
                plan.changes.push(Change::new(
                    kind,
                    Some(own.clone()),
                    format!("{host} marked insecure (plain HTTP)"),
                ));
                plan.write = Some((own, want));
            }
        }
    }
    Ok(plan)
}

/// Write what [`plan`] decided, atomically, with a dated backup of a file it
/// replaces; returns the changes to report.
pub fn apply(plan: Plan) -> Result<Vec<Change>> {
    let mut changes = plan.changes;
    if let Some((path, data)) = plan.write {
        let err = |source| RegistriesConfError::Write {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            fsutil::create_dir_all_mode(dir, 0o755).map_err(err)?;
        }
        let backup = fsutil::write_atomic_with_backup(&path, &data, 0o644).map_err(err)?;
        if let Some(c) = changes.iter_mut().find(|c| c.path.as_ref() == Some(&path)) {
            c.backup = backup;
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(main: &str, dropins: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("registries.conf"), main).unwrap();
        let conf_d = d.path().join("registries.conf.d");
        fs::create_dir(&conf_d).unwrap();
        for (n, t) in dropins {
            fs::write(conf_d.join(n), t).unwrap();
        }
        d
    }

    #[test]
    fn writes_a_drop_in_once() {
        let d = setup("unqualified-search-registries = []\n", &[]);
        let conf_d = d.path().join("registries.conf.d");
        let p = plan(&conf_d, "registry.local").unwrap();
        assert!(p.write.is_some());
        assert_eq!(apply(p).unwrap().len(), 1);
        let text = fs::read_to_string(conf_d.join(OWN_FILE)).unwrap();
        let t: toml::Table = text.parse().unwrap();
        assert_eq!(
            t["registry"][0]["location"].as_str(),
            Some("registry.local")
        );
        assert_eq!(t["registry"][0]["insecure"].as_bool(), Some(true));
        let again = plan(&conf_d, "registry.local").unwrap();
        assert!(again.write.is_none() && again.changes.is_empty());
    }

    #[test]
    fn the_admins_entry_is_respected() {
        let ok = "[[registry]]\nlocation = \"registry.local\"\ninsecure = true\n";
        for (main, dropins) in [
            (ok, vec![]),
            ("", vec![("10-admin.conf", ok)]),
            (
                "[registries.insecure]\nregistries = ['registry.local']\n",
                vec![],
            ),
        ] {
            let d = setup(main, &dropins);
            let p = plan(&d.path().join("registries.conf.d"), "registry.local").unwrap();
            assert!(
                p.write.is_none() && p.changes.is_empty(),
                "{main} {dropins:?}"
            );
        }
        // The admin says secure (a later drop-in overrides): warned, not replaced.
        let d = setup(
            ok,
            &[(
                "20-x.conf",
                "[[registry]]\nlocation = \"registry.local\"\nmirror = []\n",
            )],
        );
        let p = plan(&d.path().join("registries.conf.d"), "registry.local").unwrap();
        assert!(p.write.is_none());
        assert_eq!(p.changes[0].kind, ChangeKind::Warning);
        // Bad TOML: an error, nothing written.
        let d = setup("[[registry]\n", &[]);
        assert!(plan(&d.path().join("registries.conf.d"), "registry.local").is_err());
    }
}
