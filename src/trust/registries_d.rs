//! `registries.d`: where containers/image reads (and writes) lookaside
//! signatures for a registry.
//!
//! Rules of the real reader that shape this module:
//! - every `*.yaml` file in the directory is read (other names are ignored);
//! - `default-docker` may be defined in only one file, and a `docker:` scope in
//!   only one file — otherwise *every* pull fails with a configuration error;
//! - for an image, the most specific `docker:` scope with a URL wins
//!   (`host/repo:tag`, `host/repo`, `host/ns`, `host`, `*.domain`), then
//!   `default-docker`;
//! - a namespace reads from `lookaside` (deprecated alias `sigstore`) and
//!   writes to `lookaside-staging` (alias `sigstore-staging`), else to its read
//!   URL; unknown keys are ignored, wrongly typed values are errors.
//!
//! [`configure`] therefore edits in place whatever already defines the entry we
//! need, and only adds entries that nobody defines. Files we create start with
//! [`MANAGED_HEADER`]; files rewritten by us lose their comments (YAML
//! round-trip), which is why each rewrite keeps a dated backup.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use super::{namespace_scopes, validate_write_scope, Change, ChangeKind, DockerName};
use crate::fsutil;

/// First line of files written by u7s-bundle; marks a file as ours to edit.
pub const MANAGED_HEADER: &str =
    "# Managed by u7s-bundle (lookaside signatures for images it loads).\n\
# Local edits are kept; each change leaves a dated backup next to this file.\n";

/// The file holding `default-docker` when we create it (podsec's choice too).
pub const DEFAULT_FILE: &str = "default.yaml";
/// Where our per-registry scope goes when `default.yaml` belongs to someone else.
pub const OWN_FILE: &str = "u7s-bundle.yaml";

#[derive(Debug, thiserror::Error)]
pub enum RegistriesDError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: invalid registries.d configuration: {why}", path.display())]
    Parse { path: PathBuf, why: String },
    /// The directory is already invalid for containers/image (an entry defined
    /// in two files); we don't guess which file should win.
    #[error("registries.d configuration is invalid: {0}")]
    Conflict(String),
    #[error("invalid registry scope {scope:?}: {why}")]
    InvalidScope { scope: String, why: String },
    #[error("invalid image reference {reference:?}: {why}")]
    InvalidReference { reference: String, why: String },
    #[error("invalid lookaside URL {url:?}: {why}")]
    InvalidUrl { url: String, why: &'static str },
}

type Result<T, E = RegistriesDError> = std::result::Result<T, E>;

/// One `default-docker` or `docker: {scope: …}` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    pub lookaside: Option<String>,
    pub lookaside_staging: Option<String>,
    /// Deprecated alias of `lookaside` (still written by podsec).
    pub sigstore: Option<String>,
    /// Deprecated alias of `lookaside-staging`.
    pub sigstore_staging: Option<String>,
    pub use_sigstore_attachments: Option<bool>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

impl Namespace {
    /// The URL signatures are read from: `lookaside`, else `sigstore`.
    pub fn read_url(&self) -> Option<&str> {
        non_empty(&self.lookaside).or(non_empty(&self.sigstore))
    }
    /// The URL signatures are written to: `lookaside-staging`, else
    /// `sigstore-staging`, else the read URL.
    pub fn write_url(&self) -> Option<&str> {
        non_empty(&self.lookaside_staging)
            .or(non_empty(&self.sigstore_staging))
            .or(self.read_url())
    }
}

/// An entry and the file that defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defined {
    pub file: PathBuf,
    pub namespace: Namespace,
}

/// The merged configuration of a registries.d directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub default_docker: Option<Defined>,
    /// `docker:` scopes in file-name order.
    pub docker: Vec<(String, Defined)>,
}

impl Config {
    fn scope(&self, scope: &str) -> Option<&Defined> {
        self.docker.iter().find(|(s, _)| s == scope).map(|(_, d)| d)
    }

    /// The namespace containers/image would use for a docker reference, for
    /// reading (`write == false`) or writing.
    fn lookup(&self, scopes: &[String], write: bool) -> Option<&str> {
        fn url(ns: &Namespace, write: bool) -> Option<&str> {
            if write {
                ns.write_url()
            } else {
                ns.read_url()
            }
        }
        scopes
            .iter()
            .filter_map(|s| self.scope(s))
            .find_map(|d| url(&d.namespace, write))
            .or_else(|| {
                self.default_docker
                    .as_ref()
                    .and_then(|d| url(&d.namespace, write))
            })
    }
}

/// One `*.yaml` file as read.
struct YamlFile {
    path: PathBuf,
    name: String,
    /// Starts with [`MANAGED_HEADER`] (or is about to be created by us).
    ours: bool,
    exists: bool,
    root: Mapping,
    default_docker: Option<Namespace>,
    docker: Vec<(String, Namespace)>,
    /// What we changed in it, for the report; non-empty = must be written.
    edits: Vec<String>,
}

fn parse_err(path: &Path, why: impl Into<String>) -> RegistriesDError {
    RegistriesDError::Parse {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

fn parse_namespace(v: &Value, path: &Path, at: &str) -> Result<Namespace> {
    let m = match v {
        Value::Null => return Ok(Namespace::default()),
        Value::Mapping(m) => m,
        _ => return Err(parse_err(path, format!("{at}: expected a mapping"))),
    };
    let string = |key: &str| -> Result<Option<String>> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(parse_err(path, format!("{at}.{key}: expected a string"))),
        }
    };
    let use_attachments = match m.get("use-sigstore-attachments") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(parse_err(
                path,
                format!("{at}.use-sigstore-attachments: expected a boolean"),
            ))
        }
    };
    Ok(Namespace {
        lookaside: string("lookaside")?,
        lookaside_staging: string("lookaside-staging")?,
        sigstore: string("sigstore")?,
        sigstore_staging: string("sigstore-staging")?,
        use_sigstore_attachments: use_attachments,
    })
}

fn read_file(path: &Path, name: &str) -> Result<YamlFile> {
    let text = fs::read_to_string(path).map_err(|source| RegistriesDError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(&text, path, name)
}

/// One file's text, as `read_file` sees it; no I/O, so it can be fed anything.
fn parse_file(text: &str, path: &Path, name: &str) -> Result<YamlFile> {
    let value: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| parse_err(path, e.to_string()))?
    };
    let root = match value {
        Value::Null => Mapping::new(),
        Value::Mapping(m) => m,
        _ => return Err(parse_err(path, "expected a mapping at the top level")),
    };
    let default_docker = match root.get("default-docker") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_namespace(v, path, "default-docker")?),
    };
    let mut docker = Vec::new();
    match root.get("docker") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(scopes)) => {
            for (k, v) in scopes {
                let Value::String(scope) = k else {
                    return Err(parse_err(path, "docker: scope names must be strings"));
                };
                docker.push((
                    scope.clone(),
                    parse_namespace(v, path, &format!("docker.{scope}"))?,
                ));
            }
        }
        Some(_) => return Err(parse_err(path, "docker: expected a mapping of scopes")),
    }
    Ok(YamlFile {
        path: path.to_path_buf(),
        name: name.to_string(),
        ours: text.starts_with(MANAGED_HEADER.lines().next().unwrap_or_default()),
        exists: true,
        root,
        default_docker,
        docker,
        edits: Vec::new(),
    })
}

/// All `*.yaml` files of `dir`, sorted by name; a missing directory is empty.
fn read_dir(dir: &Path) -> Result<Vec<YamlFile>> {
    let io_err = |source| RegistriesDError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    };
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(io_err)?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if name.ends_with(".yaml") && !e.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    names.iter().map(|n| read_file(&dir.join(n), n)).collect()
}

/// Merge files the way containers/image does, failing where it fails.
fn merge_files(files: &[YamlFile]) -> Result<Config> {
    let mut cfg = Config::default();
    for f in files {
        if let Some(ns) = &f.default_docker {
            if let Some(prev) = &cfg.default_docker {
                return Err(RegistriesDError::Conflict(format!(
                    "\"default-docker\" defined both in {} and {}",
                    prev.file.display(),
                    f.path.display()
                )));
            }
            cfg.default_docker = Some(Defined {
                file: f.path.clone(),
                namespace: ns.clone(),
            });
        }
        for (scope, ns) in &f.docker {
            if let Some(prev) = cfg.scope(scope) {
                return Err(RegistriesDError::Conflict(format!(
                    "docker scope {scope:?} defined both in {} and {}",
                    prev.file.display(),
                    f.path.display()
                )));
            }
            cfg.docker.push((
                scope.clone(),
                Defined {
                    file: f.path.clone(),
                    namespace: ns.clone(),
                },
            ));
        }
    }
    Ok(cfg)
}

/// The configuration one `registries.d` file holds, parsed as [`load`] parses
/// each file (`path` only names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    merge_files(&[parse_file(text, path, &name)?])
}

/// Read the merged configuration of `dir` (only `*.yaml` files count).
pub fn load(dir: &Path) -> Result<Config> {
    merge_files(&read_dir(dir)?)
}

fn reference_scopes(reference: &str) -> Result<Vec<String>> {
    DockerName::parse(reference)
        .map(|n| n.scopes())
        .map_err(|why| RegistriesDError::InvalidReference {
            reference: reference.to_string(),
            why,
        })
}

/// The URL containers/image reads lookaside signatures from for a docker
/// reference (`host/repo`, `host/repo:tag` or `host/repo@digest`): the most
/// specific `docker:` scope with a `lookaside` (or deprecated `sigstore`)
/// URL, else `default-docker`'s; `None` if nothing is configured.
pub fn lookaside_for(dir: &Path, reference: &str) -> Result<Option<String>> {
    let scopes = reference_scopes(reference)?;
    Ok(load(dir)?.lookup(&scopes, false).map(str::to_string))
}

/// The URL `podman push --sign-by` (or `skopeo copy --sign-by`) would write
/// signatures to for a docker reference: `lookaside-staging`, else the deprecated
/// `sigstore-staging`, else the read URL, with the same scope precedence.
pub fn lookaside_staging_for(dir: &Path, reference: &str) -> Result<Option<String>> {
    let scopes = reference_scopes(reference)?;
    Ok(load(dir)?.lookup(&scopes, true).map(str::to_string))
}

fn trim_slash(u: &str) -> &str {
    u.trim_end_matches('/')
}

/// Does `ns` read from `read` and write to `write` (trailing slashes aside)?
fn is_ours(ns: &Namespace, read: &str, write: &str) -> bool {
    ns.read_url().map(trim_slash) == Some(trim_slash(read))
        && ns.write_url().map(trim_slash) == Some(trim_slash(write))
}

/// [`is_ours`], and the deprecated `sigstore`/`sigstore-staging` aliases say
/// the same: containers/image before 5.22 reads only those (podsec writes
/// both pairs).
fn is_complete(ns: &Namespace, read: &str, write: &str) -> bool {
    let same =
        |v: &Option<String>, want: &str| v.as_deref().map(trim_slash) == Some(trim_slash(want));
    is_ours(ns, read, write)
        && same(&ns.lookaside, read)
        && same(&ns.sigstore, read)
        && same(&ns.lookaside_staging, write)
        && same(&ns.sigstore_staging, write)
}

fn check_url(url: &str, schemes: &[&str], why: &'static str) -> Result<()> {
    let ok = schemes.iter().any(|s| {
        url.strip_prefix(s)
            .and_then(|r| r.strip_prefix("://"))
            .is_some_and(|rest| !rest.is_empty())
    }) && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(RegistriesDError::InvalidUrl {
            url: url.to_string(),
            why,
        })
    }
}

/// Set our URLs in a namespace mapping, keeping its other keys. The deprecated
/// `sigstore`/`sigstore-staging` aliases are written too, as podsec does:
/// containers/image before 5.22 reads only those.
fn set_ours(m: &mut Mapping, read: &str, write: &str) {
    let s = |x: &str| Value::String(x.to_string());
    m.insert(s("lookaside"), s(read));
    m.insert(s("lookaside-staging"), s(write));
    m.insert(s("sigstore"), s(read));
    m.insert(s("sigstore-staging"), s(write));
}

/// Get (creating) the mapping at `root[key]`, replacing a `null`.
fn mapping_at<'a>(root: &'a mut Mapping, key: &str) -> &'a mut Mapping {
    let k = Value::String(key.to_string());
    if !matches!(root.get(&k), Some(Value::Mapping(_))) {
        root.insert(k.clone(), Value::Mapping(Mapping::new()));
    }
    match root.get_mut(&k) {
        Some(Value::Mapping(m)) => m,
        _ => unreachable!("inserted above"),
    }
}

/// Make `dir` say: signatures of images under `registry_scope` are read from
/// `lookaside_url` and written to `staging_url` (a `file://` URL).
///
/// - No `default-docker` anywhere → `default.yaml` gets
///   `default-docker: {lookaside, lookaside-staging}` (podsec's layout).
/// - `default-docker` already ours (same URLs) → nothing.
/// - `default-docker` differs and lives in a file we manage → updated there.
/// - `default-docker` differs and belongs to someone else → we leave it and add
///   `docker: {<registry_scope>: {…}}` — in `default.yaml` if that file is
///   ours (or absent), else in `u7s-bundle.yaml`.
/// - A scope that already covers our registry more specifically than our
///   entry (the exact `registry_scope`, or a wildcard `*.local` that would beat
///   `default-docker`) is taken into account: an existing exact scope is
///   updated in place in whichever file defines it (the same scope in two
///   files would break every pull), a wildcard makes us add the exact scope.
/// - Scopes *below* ours (`registry.local/other-ns`) that read elsewhere are
///   reported as [`ChangeKind::Warning`], not changed.
///
/// Unrelated content is preserved; every write is atomic with a dated backup;
/// a second run with the same arguments changes nothing and returns no
/// changes. An already invalid directory (entry defined twice, bad YAML) is
/// an error and nothing is written.
pub fn configure(
    dir: &Path,
    registry_scope: &str,
    lookaside_url: &str,
    staging_url: &str,
) -> Result<Vec<Change>> {
    validate_write_scope(registry_scope).map_err(|why| RegistriesDError::InvalidScope {
        scope: registry_scope.to_string(),
        why,
    })?;
    check_url(
        lookaside_url,
        &["http", "https", "file"],
        "expected an http://, https:// or file:// URL",
    )?;
    check_url(
        staging_url,
        &["file"],
        "signatures can only be staged to a file:// URL",
    )?;

    let mut files = read_dir(dir)?;
    let cfg = merge_files(&files)?;
    let (read, write) = (lookaside_url, staging_url);
    let s = |x: &str| Value::String(x.to_string());

    let file_index = |files: &mut Vec<YamlFile>, name: &str| -> usize {
        if let Some(i) = files.iter().position(|f| f.name == name) {
            return i;
        }
        files.push(YamlFile {
            path: dir.join(name),
            name: name.to_string(),
            ours: true,
            exists: false,
            root: Mapping::new(),
            default_docker: None,
            docker: Vec::new(),
            edits: Vec::new(),
        });
        files.len() - 1
    };

    // 1. default-docker.
    let mut default_is_ours = true;
    match &cfg.default_docker {
        None => {
            let i = file_index(&mut files, DEFAULT_FILE);
            let f = &mut files[i];
            set_ours(mapping_at(&mut f.root, "default-docker"), read, write);
            f.edits
                .push(format!("default-docker: lookaside {read}, staging {write}"));
        }
        Some(d)
            if is_complete(&d.namespace, read, write)
                || (is_ours(&d.namespace, read, write)
                    && !files.iter().any(|f| f.path == d.file && f.ours)) => {}
        Some(d) => {
            let i = files
                .iter()
                .position(|f| f.path == d.file)
                .expect("read above");
            if files[i].ours {
                let f = &mut files[i];
                set_ours(mapping_at(&mut f.root, "default-docker"), read, write);
                f.edits.push(format!(
                    "default-docker: lookaside {read}, staging {write} (was {})",
                    d.namespace.read_url().unwrap_or("unset")
                ));
            } else {
                default_is_ours = false;
            }
        }
    }

    // 2. The exact scope: needed when the default isn't ours, or when a
    //    wildcard scope would win over default-docker for our registry.
    let scopes = namespace_scopes(registry_scope);
    let shadowing_wildcard = scopes
        .iter()
        .skip(1)
        .filter_map(|s| cfg.scope(s).map(|d| (s, d)))
        .find(|(_, d)| d.namespace.read_url().is_some());
    let need_scope = !default_is_ours
        || shadowing_wildcard.is_some_and(|(_, d)| !is_ours(&d.namespace, read, write));
    match cfg.scope(registry_scope) {
        Some(d) if is_complete(&d.namespace, read, write) => {}
        Some(d)
            if is_ours(&d.namespace, read, write)
                && !files.iter().any(|f| f.path == d.file && f.ours) => {}
        Some(d) => {
            let i = files
                .iter()
                .position(|f| f.path == d.file)
                .expect("read above");
            let f = &mut files[i];
            let m = mapping_at(mapping_at(&mut f.root, "docker"), registry_scope);
            set_ours(m, read, write);
            f.edits.push(format!(
                "docker scope {registry_scope:?}: lookaside {read}, staging {write} (was {})",
                d.namespace.read_url().unwrap_or("unset")
            ));
        }
        None if need_scope => {
            let default_ours_or_absent = files
                .iter()
                .find(|f| f.name == DEFAULT_FILE)
                .is_none_or(|f| f.ours);
            let name = if default_ours_or_absent {
                DEFAULT_FILE
            } else {
                OWN_FILE
            };
            let i = file_index(&mut files, name);
            let f = &mut files[i];
            let mut ns = Mapping::new();
            set_ours(&mut ns, read, write);
            mapping_at(&mut f.root, "docker").insert(s(registry_scope), Value::Mapping(ns));
            let why = match shadowing_wildcard {
                Some((w, _)) if default_is_ours => format!("scope {w:?} would take precedence"),
                _ => "default-docker is defined elsewhere with other URLs".to_string(),
            };
            f.edits.push(format!(
                "docker scope {registry_scope:?}: lookaside {read}, staging {write} ({why})"
            ));
        }
        None => {}
    }

    // 3. Scopes below ours that read elsewhere: reported, not changed.
    let mut changes = Vec::new();
    for (scope, d) in &cfg.docker {
        let below = scope.strip_prefix(registry_scope).is_some_and(|rest| {
            rest.starts_with('/') || (registry_scope.contains('/') && rest.starts_with(':'))
        });
        if below && !is_ours(&d.namespace, read, write) {
            changes.push(Change::new(
                ChangeKind::Warning,
                Some(d.file.clone()),
                format!(
                    "docker scope {scope:?} reads signatures from {}, not {read}; images under it \
                     will not find the signatures we write",
                    d.namespace.read_url().unwrap_or("nowhere")
                ),
            ));
        }
    }

    // 4. Write what changed.
    let edited: Vec<&YamlFile> = files.iter().filter(|f| !f.edits.is_empty()).collect();
    if !edited.is_empty() {
        fsutil::create_dir_all_mode(dir, 0o755).map_err(|source| RegistriesDError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut written = Vec::new();
    for f in edited {
        let yaml = serde_yaml_ng::to_string(&Value::Mapping(f.root.clone()))
            .map_err(|e| parse_err(&f.path, format!("serializing: {e}")))?;
        let text = if f.ours {
            format!("{MANAGED_HEADER}{yaml}")
        } else {
            yaml
        };
        let backup = fsutil::write_atomic_with_backup(&f.path, text.as_bytes(), 0o644).map_err(
            |source| RegistriesDError::Io {
                path: f.path.clone(),
                source,
            },
        )?;
        let mut detail = f.edits.join("; ");
        if f.exists && !f.ours {
            detail.push_str(" (file rewritten: its comments were not kept)");
        }
        let kind = if f.exists {
            ChangeKind::Updated
        } else {
            ChangeKind::Created
        };
        let mut c = Change::new(kind, Some(f.path.clone()), detail);
        c.backup = backup;
        written.push(c);
    }
    written.extend(changes);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const READ: &str = "http://sigstore.local:81/sigstore/";
    const WRITE: &str = "file:///var/sigstore/sigstore/";

    fn yaml(path: &Path) -> Value {
        serde_yaml_ng::from_str(&fs::read_to_string(path).unwrap()).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// Ask containers/image itself (skopeo --debug) which lookaside URL it
    /// reads for `docker://127.0.0.1:1/<repo>`. It loads registries.d before
    /// contacting the (unreachable) registry and logs its choice. `None` when
    /// skopeo isn't installed; panics when skopeo refuses the directory.
    fn skopeo_lookaside(dir: &Path, repo: &str) -> Option<Option<String>> {
        let d = tempfile::tempdir().unwrap();
        let policy = d.path().join("policy.json");
        fs::write(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        let out = match Command::new("skopeo")
            .arg("--debug")
            .arg("--policy")
            .arg(&policy)
            .arg("--registries.d")
            .arg(dir)
            .args(["inspect", "--retry-times", "0"])
            .arg(format!("docker://127.0.0.1:1/{repo}"))
            .output()
        {
            Ok(o) => o,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                eprintln!("skopeo not installed; skipping the containers/image check");
                return None;
            }
            Err(e) => panic!("running skopeo: {e}"),
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("connection refused"),
            "skopeo refused the configuration:\n{err}"
        );
        let url = err.lines().find_map(|l| {
            let l = l.replace("\\\"", "\"");
            ["Using \"lookaside\" ", "Using \"sigstore\" "]
                .iter()
                .find_map(|m| {
                    l.split_once(m)
                        .map(|(_, rest)| rest.trim_end_matches('"').to_string())
                })
        });
        Some(url)
    }

    /// Our answer and containers/image's agree for `127.0.0.1:1/<repo>`.
    fn assert_agrees(dir: &Path, repo: &str) -> Option<String> {
        let ours = lookaside_for(dir, &format!("127.0.0.1:1/{repo}")).unwrap();
        if let Some(theirs) = skopeo_lookaside(dir, repo) {
            assert_eq!(ours, theirs, "lookaside for {repo}");
        }
        ours
    }

    #[test]
    fn old_readers_get_the_sigstore_aliases_and_our_old_file_is_completed() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("registries.d");
        configure(&dir, "registry.local", READ, WRITE).unwrap();
        let v = yaml(&dir.join("default.yaml"));
        assert_eq!(v["default-docker"]["sigstore"].as_str(), Some(READ));
        assert_eq!(
            v["default-docker"]["sigstore-staging"].as_str(),
            Some(WRITE)
        );
        // A file of ours from before (lookaside only) gains the aliases once.
        fs::write(
            dir.join("default.yaml"),
            format!("{MANAGED_HEADER}default-docker:\n  lookaside: {READ}\n  lookaside-staging: {WRITE}\n"),
        )
        .unwrap();
        assert_eq!(
            configure(&dir, "registry.local", READ, WRITE)
                .unwrap()
                .len(),
            1
        );
        let v = yaml(&dir.join("default.yaml"));
        assert_eq!(v["default-docker"]["sigstore"].as_str(), Some(READ));
        assert!(configure(&dir, "registry.local", READ, WRITE)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn fresh_dir_gets_default_docker() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("registries.d");
        let changes = configure(&dir, "registry.local", READ, WRITE).unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].kind, ChangeKind::Created);
        let text = fs::read_to_string(dir.join("default.yaml")).unwrap();
        assert!(text.starts_with(MANAGED_HEADER), "{text}");
        let v = yaml(&dir.join("default.yaml"));
        assert_eq!(v["default-docker"]["lookaside"].as_str(), Some(READ));
        assert_eq!(
            v["default-docker"]["lookaside-staging"].as_str(),
            Some(WRITE)
        );
        assert_eq!(
            lookaside_for(&dir, "registry.local/c10f/coredns:v1.9.3")
                .unwrap()
                .as_deref(),
            Some(READ)
        );
        assert_eq!(
            lookaside_staging_for(&dir, "registry.local/c10f/coredns")
                .unwrap()
                .as_deref(),
            Some(WRITE)
        );
        // Re-run: nothing.
        assert!(configure(&dir, "registry.local", READ, WRITE)
            .unwrap()
            .is_empty());
        assert_eq!(names(&dir), vec!["default.yaml"]);
        let dir2 = d.path().join("registries2.d");
        configure(&dir2, "127.0.0.1:1", READ, WRITE).unwrap();
        assert_eq!(
            assert_agrees(&dir2, "c10f/coredns:v1.9.3").as_deref(),
            Some(READ)
        );
    }

    #[test]
    fn podsec_default_with_same_urls_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let podsec = format!(
            "# podsec\ndefault-docker:\n  lookaside: {READ}\n  sigstore: {READ}\n  lookaside-staging: {WRITE}\n  sigstore-staging: {WRITE}\n"
        );
        fs::write(d.path().join("default.yaml"), &podsec).unwrap();
        assert!(configure(d.path(), "registry.local", READ, WRITE)
            .unwrap()
            .is_empty());
        assert_eq!(
            fs::read_to_string(d.path().join("default.yaml")).unwrap(),
            podsec
        );
    }

    #[test]
    fn foreign_different_default_gets_per_registry_scope() {
        let d = tempfile::tempdir().unwrap();
        let foreign = "# site config\ndefault-docker:\n  lookaside: https://sigs.example/\nunrelated: {keep: me}\n";
        fs::write(d.path().join("default.yaml"), foreign).unwrap();
        fs::write(d.path().join("notes.txt"), "not yaml: [").unwrap();
        let changes = configure(d.path(), "registry.local", READ, WRITE).unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(
            changes[0].path.as_deref(),
            Some(d.path().join(OWN_FILE).as_path())
        );
        // default.yaml untouched, byte for byte.
        assert_eq!(
            fs::read_to_string(d.path().join("default.yaml")).unwrap(),
            foreign
        );
        let v = yaml(&d.path().join(OWN_FILE));
        assert_eq!(
            v["docker"]["registry.local"]["lookaside"].as_str(),
            Some(READ)
        );
        assert!(v.get("default-docker").is_none());
        assert_eq!(
            lookaside_for(d.path(), "registry.local/c10f/x:1")
                .unwrap()
                .as_deref(),
            Some(READ)
        );
        assert_eq!(
            lookaside_for(d.path(), "quay.io/x:1").unwrap().as_deref(),
            Some("https://sigs.example/")
        );
        // Idempotent.
        assert!(configure(d.path(), "registry.local", READ, WRITE)
            .unwrap()
            .is_empty());
        assert_eq!(names(d.path()), vec!["default.yaml", "notes.txt", OWN_FILE]);
    }

    #[test]
    fn foreign_default_per_registry_scope_seen_by_skopeo() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("default.yaml"),
            "default-docker:\n  lookaside: https://sigs.example/\n",
        )
        .unwrap();
        configure(d.path(), "127.0.0.1:1", READ, WRITE).unwrap();
        assert_eq!(
            assert_agrees(d.path(), "c10f/coredns:v1").as_deref(),
            Some(READ)
        );
    }

    #[test]
    fn foreign_default_elsewhere_scope_goes_to_default_yaml() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("site.yaml"),
            "default-docker:\n  sigstore: https://sigs.example/\n",
        )
        .unwrap();
        configure(d.path(), "127.0.0.1:5000", READ, WRITE).unwrap();
        let v = yaml(&d.path().join("default.yaml"));
        assert_eq!(
            v["docker"]["127.0.0.1:5000"]["lookaside"].as_str(),
            Some(READ)
        );
        assert!(v.get("default-docker").is_none());
        assert!(configure(d.path(), "127.0.0.1:5000", READ, WRITE)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn our_own_default_is_updated_in_place() {
        let d = tempfile::tempdir().unwrap();
        configure(d.path(), "registry.local", READ, WRITE).unwrap();
        let changes = configure(
            d.path(),
            "registry.local",
            "http://other:81/sigstore/",
            WRITE,
        )
        .unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, ChangeKind::Updated);
        let backup = changes[0].backup.as_ref().unwrap();
        assert!(fs::read_to_string(backup).unwrap().contains(READ));
        let v = yaml(&d.path().join("default.yaml"));
        assert_eq!(
            v["default-docker"]["lookaside"].as_str(),
            Some("http://other:81/sigstore/")
        );
        assert!(v.get("docker").is_none());
    }

    #[test]
    fn existing_scope_in_another_file_is_updated_not_duplicated() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("a.yaml"),
            "docker:\n  127.0.0.1:1:\n    sigstore: http://old/\n    use-sigstore-attachments: false\n  quay.io:\n    lookaside: http://q/\n",
        )
        .unwrap();
        let changes = configure(d.path(), "127.0.0.1:1", READ, WRITE).unwrap();
        // default.yaml created with default-docker; a.yaml's scope fixed in place.
        assert_eq!(changes.len(), 2, "{changes:?}");
        let a = yaml(&d.path().join("a.yaml"));
        let ns = &a["docker"]["127.0.0.1:1"];
        assert_eq!(ns["lookaside"].as_str(), Some(READ));
        assert_eq!(ns["sigstore"].as_str(), Some(READ));
        assert_eq!(ns["use-sigstore-attachments"].as_bool(), Some(false));
        assert_eq!(
            a["docker"]["quay.io"]["lookaside"].as_str(),
            Some("http://q/")
        );
        assert_eq!(assert_agrees(d.path(), "x:1").as_deref(), Some(READ));
        assert!(configure(d.path(), "127.0.0.1:1", READ, WRITE)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn wildcard_scope_that_would_win_gets_an_exact_scope() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("w.yaml"),
            "docker:\n  \"*.local\":\n    lookaside: http://wild/\n",
        )
        .unwrap();
        configure(d.path(), "registry.local", READ, WRITE).unwrap();
        assert_eq!(
            lookaside_for(d.path(), "registry.local/x:1")
                .unwrap()
                .as_deref(),
            Some(READ)
        );
        assert_eq!(
            lookaside_for(d.path(), "other.local/x:1")
                .unwrap()
                .as_deref(),
            Some("http://wild/")
        );
        assert!(configure(d.path(), "registry.local", READ, WRITE)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn sub_scope_reading_elsewhere_is_a_warning() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("x.yaml"),
            "docker:\n  registry.local/legacy:\n    lookaside: http://x/\n",
        )
        .unwrap();
        let changes = configure(d.path(), "registry.local", READ, WRITE).unwrap();
        assert!(changes
            .iter()
            .any(|c| c.kind == ChangeKind::Warning && c.detail.contains("registry.local/legacy")));
    }

    #[test]
    fn lookaside_for_picks_most_specific() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("a.yaml"),
            "default-docker:\n  lookaside: http://default/\ndocker:\n  127.0.0.1:1:\n    lookaside: http://host/\n  127.0.0.1:1/c10f/coredns:v1:\n    lookaside: http://tag/\n",
        )
        .unwrap();
        fs::write(
            d.path().join("b.yaml"),
            "docker:\n  127.0.0.1:1/c10f:\n    sigstore: http://ns/\n  127.0.0.1:1/c10f/etcd:\n    lookaside-staging: file:///only/staging\n",
        )
        .unwrap();
        // Not *.yaml: ignored even though it would conflict.
        fs::write(
            d.path().join("c.yml"),
            "default-docker:\n  lookaside: http://yml/\n",
        )
        .unwrap();
        let f = |repo: &str| assert_agrees(d.path(), repo);
        assert_eq!(f("c10f/coredns:v1").as_deref(), Some("http://tag/"));
        assert_eq!(f("c10f/coredns:v2").as_deref(), Some("http://ns/"));
        // A scope with only a staging URL doesn't stop the search for reading.
        assert_eq!(f("c10f/etcd:v2").as_deref(), Some("http://ns/"));
        assert_eq!(
            lookaside_staging_for(d.path(), "127.0.0.1:1/c10f/etcd:v2")
                .unwrap()
                .as_deref(),
            Some("file:///only/staging")
        );
        assert_eq!(f("k8s-c10f2/etcd:v2").as_deref(), Some("http://host/"));
        assert_eq!(
            lookaside_for(d.path(), "quay.io/a/b").unwrap().as_deref(),
            Some("http://default/")
        );
        assert!(lookaside_for(d.path(), "registry.local/../x").is_err());
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(assert_agrees(empty.path(), "a:1"), None);
        // Wildcards match the host name, port ignored.
        fs::write(
            empty.path().join("w.yaml"),
            "docker:\n  \"*.0.1\":\n    lookaside: http://wild/\n",
        )
        .unwrap();
        assert_eq!(
            assert_agrees(empty.path(), "a:1").as_deref(),
            Some("http://wild/")
        );
        assert_eq!(
            lookaside_for(&empty.path().join("missing"), "quay.io/a").unwrap(),
            None
        );
    }

    #[test]
    fn invalid_directories_are_refused_untouched() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("a.yaml"),
            "default-docker:\n  lookaside: http://a/\n",
        )
        .unwrap();
        fs::write(
            d.path().join("b.yaml"),
            "default-docker:\n  lookaside: http://b/\n",
        )
        .unwrap();
        let e = configure(d.path(), "registry.local", READ, WRITE).unwrap_err();
        assert!(matches!(e, RegistriesDError::Conflict(_)), "{e}");
        assert_eq!(names(d.path()), vec!["a.yaml", "b.yaml"]);

        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("a.yaml"),
            "default-docker:\n  lookaside: [1]\n",
        )
        .unwrap();
        let e = configure(d.path(), "registry.local", READ, WRITE).unwrap_err();
        assert!(e.to_string().contains("default-docker.lookaside"), "{e}");

        assert!(matches!(
            configure(d.path(), "registry.local", READ, "http://x/"),
            Err(RegistriesDError::InvalidUrl { .. })
        ));
        assert!(matches!(
            configure(d.path(), "Registry Local", READ, WRITE),
            Err(RegistriesDError::InvalidScope { .. })
        ));
    }
}
