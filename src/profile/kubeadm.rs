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
