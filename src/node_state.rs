//! Which kubernetes version `preflight`, `init` and `join` use when none is
//! given: never simply the last bundle loaded.
//!
//! Loading the bundle of the next version (to upgrade later, or for another
//! node) must not switch a running node to it behind the admin's back. So
//! `load` records each platform and version it loaded on its own
//! (`<state-dir>/loaded/<platform>/<version>.json`), `init`/`join` record the
//! version the node was brought up with (`<state-dir>/node.json`), and the
//! choice is: the version this node already runs; else the only version
//! loaded for the platform; else, with several, a refusal listing them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::kubeadm::LastBundle;
use crate::profile::KubeVersion;

/// What `init`/`join` brought this node up with.
pub const NODE_FILE: &str = "node.json";
const LOADED_DIR: &str = "loaded";

#[derive(Debug, thiserror::Error)]
pub enum NodeStateError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a u7s-bundle record")]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "several kubernetes versions are loaded for {platform} ({}) and this node runs none yet: give --kube-version",
        .versions.join(", ")
    )]
    Ambiguous {
        platform: String,
        versions: Vec<String>,
    },
}

/// The node's own record: the image set it was initialized or joined with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub platform: String,
    pub kube_version: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NodeStateError + '_ {
    move |source| NodeStateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, NodeStateError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| NodeStateError::Format {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), NodeStateError> {
    let mut bytes = serde_json::to_vec_pretty(v).expect("serializable");
    bytes.push(b'\n');
    let dir = path.parent().unwrap_or(Path::new("."));
    fsutil::create_dir_all_mode(dir, 0o755)
        .and_then(|()| fsutil::write_atomic(path, &bytes, 0o644))
        .map_err(io(path))
}

/// A name that is safe as one path component (platform and version come
/// from a verified bundle.json, whose validation already allows no `/`).
fn component(s: &str) -> &str {
    if s.is_empty() || s.contains('/') || s.starts_with('.') {
        "_"
    } else {
        s
    }
}

impl NodeRecord {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(NODE_FILE)
    }

    pub fn read(state_dir: &Path) -> Result<Option<NodeRecord>, NodeStateError> {
        read_json(&Self::path(state_dir))
    }

    pub fn write(&self, state_dir: &Path) -> Result<(), NodeStateError> {
        write_json(&Self::path(state_dir), self)
    }
}

/// `<state-dir>/loaded/<platform>/<version>.json`.
pub fn loaded_path(state_dir: &Path, platform: &str, version: &str) -> PathBuf {
    state_dir
        .join(LOADED_DIR)
        .join(component(platform))
        .join(format!("{}.json", component(version)))
}

/// Record a load: per platform and version, and as the last one.
pub fn record_load(state_dir: &Path, lb: &LastBundle) -> Result<(), NodeStateError> {
    if let Some(p) = &lb.platform {
        write_json(&loaded_path(state_dir, p, &lb.kube_version), lb)?;
    }
    write_json(&LastBundle::path(state_dir), lb)
}

/// Every version loaded for `platform`, newest first.
pub fn loaded(state_dir: &Path, platform: &str) -> Result<Vec<LastBundle>, NodeStateError> {
    let dir = state_dir.join(LOADED_DIR).join(component(platform));
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&dir)(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let path = e.map_err(io(&dir))?.path();
        if path.extension().is_some_and(|x| x == "json") {
            out.extend(read_json::<LastBundle>(&path)?);
        }
    }
    out.sort_by_key(|l| std::cmp::Reverse(l.kube_version.parse::<KubeVersion>().ok()));
    Ok(out)
}

/// Where the version came from, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chosen {
    /// The version this node runs (node.json).
    Running(String),
    /// The only version loaded for the platform.
    OnlyLoaded(LastBundle),
}

/// The version to use without --kube-version; `Ok(None)`: nothing recorded
/// (the caller falls back to last-bundle.json of older state directories).
pub fn choose(
    node: Option<&NodeRecord>,
    loaded: &[LastBundle],
    platform: &str,
) -> Result<Option<Chosen>, NodeStateError> {
    if let Some(n) = node.filter(|n| n.platform == platform) {
        return Ok(Some(Chosen::Running(n.kube_version.clone())));
    }
    match loaded {
        [] => Ok(None),
        [one] => Ok(Some(Chosen::OnlyLoaded(one.clone()))),
        many => Err(NodeStateError::Ambiguous {
            platform: platform.to_string(),
            versions: many.iter().map(|l| l.kube_version.clone()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb(v: &str) -> LastBundle {
        LastBundle {
            kube_version: v.into(),
            platform: Some("c10f".into()),
            ..LastBundle::default()
        }
    }

    #[test]
    fn a_second_loaded_version_does_not_switch_a_running_node() {
        let t = tempfile::tempdir().unwrap();
        record_load(t.path(), &lb("v1.26.9")).unwrap();
        let one = loaded(t.path(), "c10f").unwrap();
        assert_eq!(
            choose(None, &one, "c10f").unwrap(),
            Some(Chosen::OnlyLoaded(lb("v1.26.9")))
        );
        record_load(t.path(), &lb("v1.27.3")).unwrap();
        record_load(t.path(), &lb("v1.26.10")).unwrap();
        let all = loaded(t.path(), "c10f").unwrap();
        let versions: Vec<_> = all.iter().map(|l| l.kube_version.as_str()).collect();
        assert_eq!(versions, ["v1.27.3", "v1.26.10", "v1.26.9"]);
        // Several, and the node runs none: refused, all named.
        let err = choose(None, &all, "c10f").unwrap_err().to_string();
        assert!(err.contains("v1.27.3, v1.26.10, v1.26.9") && err.contains("--kube-version"));
        // The node runs one: that one, whatever was loaded last.
        let node = NodeRecord {
            platform: "c10f".into(),
            kube_version: "v1.26.9".into(),
        };
        node.write(t.path()).unwrap();
        let node = NodeRecord::read(t.path()).unwrap().unwrap();
        assert_eq!(
            choose(Some(&node), &all, "c10f").unwrap(),
            Some(Chosen::Running("v1.26.9".into()))
        );
        // Another platform's node record does not count; nothing loaded → None.
        assert_eq!(choose(Some(&node), &[], "p11").unwrap(), None);
        assert!(loaded(t.path(), "p11").unwrap().is_empty());
    }
}
