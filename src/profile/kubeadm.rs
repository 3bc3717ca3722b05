//! The kubeadm rules: which pause/etcd/coredns tags a kubeadm release names.

use super::schema::KubeadmRowDoc;
use super::validate::{check_tag, invalid};
use super::version::{parse_minor, parse_number};
use super::{KubeVersion, ProfileError, Profiles};

/// One row of the kubeadm table: patches `first..=last` of `minor` pin these tags.
#[derive(Debug, Clone)]
pub(super) struct KubeadmRow {
    pub(super) minor: (u64, u64),
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) pause: String,
    pub(super) etcd: String,
    pub(super) coredns: String,
}

impl Profiles {
    pub(super) fn kubeadm_row(file: &str, row: KubeadmRowDoc) -> Result<KubeadmRow, ProfileError> {
        let minor = parse_minor(&row.minor)
            .filter(|_| !row.minor.starts_with('v'))
            .ok_or_else(|| {
                invalid(
                    file,
                    format!(
                        "kubeadm minor {:?} is not MAJOR.MINOR (e.g. \"1.26\")",
                        row.minor
                    ),
                )
            })?;
        let patches = row.patches.replace('–', "-");
        let bad_patches = || {
            invalid(
                file,
                format!(
                    "kubeadm patches {:?} is not \"N\" or \"FIRST-LAST\"",
                    row.patches
                ),
            )
        };
        let (first, last) = match patches.split_once('-') {
            Some((a, b)) => (
                parse_number(a.trim()).ok_or_else(bad_patches)?,
                parse_number(b.trim()).ok_or_else(bad_patches)?,
            ),
            None => {
                let n = parse_number(patches.trim()).ok_or_else(bad_patches)?;
                (n, n)
            }
        };
        if first > last {
            return Err(bad_patches());
        }
        check_tag(file, "pause tag", &row.pause)?;
        check_tag(file, "etcd tag", &row.etcd)?;
        check_tag(file, "coredns tag", &row.coredns)?;
        Ok(KubeadmRow {
            minor,
            first,
            last,
            pause: row.pause,
            etcd: row.etcd,
            coredns: row.coredns,
        })
    }

    pub(super) fn kubeadm_row_for(&self, v: &KubeVersion) -> Option<&KubeadmRow> {
        self.kubeadm
            .iter()
            .find(|r| r.minor == v.minor_key() && r.first <= v.patch && v.patch <= r.last)
    }
}

impl Profiles {
    /// The table row of kubeadm release `kubeadm` for target `kube`: pause and
    /// coredns are that binary's constants, etcd its entry for the target minor.
    /// The table holds each release's entry for its own minor only, so a kubeadm
    /// of another minor is refused (its etcd for `kube` is not known here).
    pub(super) fn kubeadm_release(
        &self,
        kubeadm: &KubeVersion,
        kube: &KubeVersion,
    ) -> Result<&KubeadmRow, ProfileError> {
        if kubeadm.minor_key() != kube.minor_key() {
            return Err(ProfileError::KubeadmMinor {
                kubeadm: kubeadm.to_string(),
                kube: kube.to_string(),
            });
        }
        self.kubeadm_row_for(kubeadm)
            .ok_or_else(|| ProfileError::UnknownKubeadm {
                version: kubeadm.to_string(),
                known: self
                    .kubeadm
                    .iter()
                    .filter(|r| r.minor == kubeadm.minor_key())
                    .flat_map(|r| {
                        (r.first..=r.last).map(|p| KubeVersion::new(r.minor.0, r.minor.1, p))
                    })
                    .collect(),
            })
    }
}

/// The images kubeadm names (`kubeadm config images list`), as `(name, tag)`.
pub(super) const KUBEADM_IMAGES: [&str; 7] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "coredns",
    "pause",
    "etcd",
];

/// The output of `kubeadm config images list` (one reference a line, any
/// repository) as `(image, tag)` pairs: the image is the last path component
/// (`registry.k8s.io/coredns/coredns` → `coredns`), as podsec's `getKuberImages`
/// strips the repository. Blank lines and `#` comments are skipped; an image
/// kubeadm does not name is refused, so that a wrong file is not taken for a set.
pub fn parse_kubeadm_images(text: &str) -> Result<Vec<(String, String)>, ProfileError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: String| ProfileError::KubeadmImages {
            line: i + 1,
            message,
        };
        let last = line.rsplit('/').next().unwrap_or(line);
        let (name, tag) = last
            .split_once(':')
            .ok_or_else(|| bad(format!("{line:?} has no tag")))?;
        if !KUBEADM_IMAGES.contains(&name) {
            return Err(bad(format!(
                "{name:?} is not an image kubeadm names ({})",
                KUBEADM_IMAGES.join(", ")
            )));
        }
        if !crate::reference::is_valid_tag(tag) {
            return Err(bad(format!("{tag:?} is not an image tag")));
        }
        if !out.iter().any(|(n, t)| n == name && t == tag) {
            out.push((name.to_string(), tag.to_string()));
        }
    }
    if !out.iter().any(|(n, _)| n == "kube-apiserver") {
        return Err(ProfileError::KubeadmImages {
            line: 0,
            message: "no kube-apiserver image: not the output of `kubeadm config images list`"
                .into(),
        });
    }
    Ok(out)
}
