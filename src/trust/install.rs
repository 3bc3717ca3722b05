//! The trust files `load` leaves on the host, planned then written by one
//! function: the image-signing public key, policy.json and its copy for the
//! other nodes (in the keys directory), registries.d, and — for a plain-HTTP
//! registry — the registries.conf drop-in.
//!
//! [`plan`] computes every file's new content (refusing, before anything is
//! written, a policy it cannot merge); [`install`] writes them and returns a
//! [`FileChange`] per file it looked at. A dry run asks [`install`] the same
//! question without writing, so `--dry-run` reports what the real run would
//! change — registries.d is configured in a scratch copy for that — and
//! `--json` reports the same objects.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{keys, policy, registries_conf, registries_d, Change, ChangeKind};
use crate::edits::read_optional;
use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("choosing a key file in {}: {source}", .dir.display())]
    KeyName {
        dir: PathBuf,
        #[source]
        source: Box<keys::KeyError>,
    },
    #[error("writing the public key into {}: {source}", .dir.display())]
    Key {
        dir: PathBuf,
        #[source]
        source: Box<keys::KeyError>,
    },
    #[error("merging into {}: {source}", .path.display())]
    Policy {
        path: PathBuf,
        #[source]
        source: Box<policy::PolicyError>,
    },
    #[error("configuring {}: {source}", .dir.display())]
    RegistriesD {
        dir: PathBuf,
        #[source]
        source: Box<registries_d::RegistriesDError>,
    },
    #[error("checking {}: {source}", .dir.display())]
    RegistriesConf {
        dir: PathBuf,
        #[source]
        source: Box<registries_conf::RegistriesConfError>,
    },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = InstallError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What happened (or, in a dry run, would happen) to one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
}

/// One trust file, as `load --json` reports it in `files[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub path: PathBuf,
    pub action: Action,
    /// Where the replaced content was saved (not in a dry run).
    pub backup: Option<PathBuf>,
}

/// What [`install`] did: the files, and what the admin should know of
/// configuration we leave alone.
#[derive(Debug, Default)]
pub struct Installed {
    pub files: Vec<FileChange>,
    pub warnings: Vec<Change>,
}

/// Where the trust files go and what they say.
pub struct Request<'a> {
    /// The registry as images are named (`registry.local`): the policy scope.
    pub registry: &'a str,
    pub keys_dir: &'a Path,
    pub policy: &'a Path,
    pub registries_d: &'a Path,
    /// `Some` for a plain-HTTP registry: where its drop-in goes.
    pub registries_conf_d: Option<&'a Path>,
    pub lookaside_url: &'a str,
    /// Where load stages signatures (`file://` in registries.d).
    pub sigstore_dir: &'a Path,
    /// Backups of a replaced key (not in the served keys directory).
    pub key_backups: &'a Path,
    /// The key file name wanted (`imagemaker`), its bytes and fingerprint.
    pub key_name: &'a str,
    pub public_key: &'a [u8],
    pub fingerprint: &'a str,
}

/// Every file's content, decided before anything is written.
pub struct Plan {
    /// The key file, and whether this key is already there.
    key_path: PathBuf,
    key_present: bool,
    key_name: String,
    policy: Vec<u8>,
    policy_existed: bool,
    policy_changed: bool,
    staging: String,
}

/// Decide every file (see the module doc); nothing is written.
pub fn plan(req: &Request) -> Result<Plan> {
    // Never over another key: a policy rule may name that file.
    let (key_name, key_present) =
        keys::choose_key_name(req.keys_dir, req.key_name, req.fingerprint).map_err(|source| {
            InstallError::KeyName {
                dir: req.keys_dir.to_path_buf(),
                source: Box::new(source),
            }
        })?;
    // policy.json needs an absolute keyPath: CRI-O would resolve a relative
    // one from its own working directory.
    let key_path = absolute(req.keys_dir).join(format!("{key_name}.pgp"));
    let existing = read_optional(req.policy).map_err(io_err(req.policy))?;
    let (policy, policy_changed) =
        policy::merge_signed_by(existing.as_deref(), req.registry, &key_path).map_err(
            |source| InstallError::Policy {
                path: req.policy.to_path_buf(),
                source: Box::new(source),
            },
        )?;
    Ok(Plan {
        key_path: req.keys_dir.join(format!("{key_name}.pgp")),
        key_present,
        key_name,
        policy,
        policy_existed: existing.is_some(),
        policy_changed,
        staging: format!("file://{}", absolute(req.sigstore_dir).display()),
    })
}

/// Write what `plan` decided (or, with `dry_run`, only say what would change).
pub fn install(req: &Request, plan: &Plan, dry_run: bool) -> Result<Installed> {
    let mut out = Installed::default();
    out.files.push(install_key(req, plan, dry_run)?);
    out.files.push(write_file(
        req.policy,
        &plan.policy,
        policy_action(plan),
        dry_run,
    )?);
    let copy = req.keys_dir.join("policy.json");
    let copy_action = action_of(&copy, &plan.policy)?;
    out.files
        .push(write_file(&copy, &plan.policy, copy_action, dry_run)?);
    sort_changes(configure_registries_d(req, plan, dry_run)?, &mut out);
    if let Some(conf_d) = req.registries_conf_d {
        sort_changes(mark_insecure(conf_d, req.registry, dry_run)?, &mut out);
    }
    Ok(out)
}

fn install_key(req: &Request, plan: &Plan, dry_run: bool) -> Result<FileChange> {
    let unchanged = FileChange {
        path: plan.key_path.clone(),
        action: Action::Unchanged,
        backup: None,
    };
    if plan.key_present {
        return Ok(unchanged);
    }
    let action = match plan.key_path.exists() {
        true => Action::Updated,
        false => Action::Created,
    };
    if !dry_run {
        keys::install_public_key(
            req.keys_dir,
            &plan.key_name,
            req.public_key,
            Some(req.key_backups),
        )
        .map_err(|source| InstallError::Key {
            dir: req.keys_dir.to_path_buf(),
            source: Box::new(source),
        })?;
    }
    Ok(FileChange {
        action,
        ..unchanged
    })
}

fn policy_action(plan: &Plan) -> Action {
    match (plan.policy_existed, plan.policy_changed) {
        (false, _) => Action::Created,
        (true, true) => Action::Updated,
        (true, false) => Action::Unchanged,
    }
}

/// What writing `data` to `path` would do.
fn action_of(path: &Path, data: &[u8]) -> Result<Action> {
    Ok(match read_optional(path).map_err(io_err(path))? {
        None => Action::Created,
        Some(old) if old == data => Action::Unchanged,
        Some(_) => Action::Updated,
    })
}

/// Atomically, with a dated backup of what it replaces; `action` is what the
/// plan expects (a file that already holds `data` is not touched).
fn write_file(path: &Path, data: &[u8], action: Action, dry_run: bool) -> Result<FileChange> {
    let mut change = FileChange {
        path: path.to_path_buf(),
        action,
        backup: None,
    };
    if dry_run || action == Action::Unchanged {
        return Ok(change);
    }
    if let Some(parent) = path.parent() {
        fsutil::create_dir_all_mode(parent, 0o755).map_err(io_err(parent))?;
    }
    change.backup = fsutil::write_atomic_with_backup(path, data, 0o644).map_err(io_err(path))?;
    if change.backup.is_some() {
        change.action = Action::Updated;
    }
    Ok(change)
}

/// registries.d; in a dry run, configured in a scratch copy of the
/// directory, so what is reported is what the real run would do.
fn configure_registries_d(req: &Request, plan: &Plan, dry_run: bool) -> Result<Vec<Change>> {
    let err = |source| InstallError::RegistriesD {
        dir: req.registries_d.to_path_buf(),
        source: Box::new(source),
    };
    let configure = |dir: &Path| {
        registries_d::configure(dir, req.registry, req.lookaside_url, &plan.staging).map_err(err)
    };
    if !dry_run {
        fsutil::create_dir_all_mode(req.registries_d, 0o755).map_err(io_err(req.registries_d))?;
        return configure(req.registries_d);
    }
    let scratch = tempfile::tempdir().map_err(io_err(req.registries_d))?;
    copy_yaml_files(req.registries_d, scratch.path())?;
    let mut changes = configure(scratch.path())?;
    for c in &mut changes {
        if let Some(p) = &c.path {
            c.path = Some(match p.strip_prefix(scratch.path()) {
                Ok(rel) => req.registries_d.join(rel),
                Err(_) => p.clone(),
            });
        }
        c.backup = None;
    }
    Ok(changes)
}

/// The `*.yaml` files of `from` (registries.d reads no others) into `to`.
fn copy_yaml_files(from: &Path, to: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(from)(e)),
    };
    for e in entries {
        let p = e.map_err(io_err(from))?.path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let name = p.file_name().expect("a file in a directory");
            std::fs::copy(&p, to.join(name)).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

/// Plain HTTP: the registries.conf drop-in that lets podman and CRI-O pull.
fn mark_insecure(conf_d: &Path, registry: &str, dry_run: bool) -> Result<Vec<Change>> {
    let err = |source| InstallError::RegistriesConf {
        dir: conf_d.to_path_buf(),
        source: Box::new(source),
    };
    let plan = registries_conf::plan(conf_d, registry).map_err(err)?;
    if dry_run {
        return Ok(plan.changes);
    }
    registries_conf::apply(plan).map_err(err)
}

/// Trust-module changes into files and warnings.
fn sort_changes(changes: Vec<Change>, out: &mut Installed) {
    for c in changes {
        let action = match c.kind {
            ChangeKind::Created => Action::Created,
            ChangeKind::Updated => Action::Updated,
            ChangeKind::Warning => {
                out.warnings.push(c);
                continue;
            }
        };
        let Some(path) = c.path else { continue };
        match out.files.iter_mut().find(|f| f.path == path) {
            // One file changed twice (registries.d edits in two passes).
            Some(f) => f.backup = f.backup.take().or(c.backup),
            None => out.files.push(FileChange {
                path,
                action,
                backup: c.backup,
            }),
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
