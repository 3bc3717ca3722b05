//! The flannel rules: which flannel-cni-plugin goes with a flannel release.

use super::schema::FlannelRowDoc;
use super::validate::{check_tag, invalid};
use super::{KubeVersion, ProfileError, Profiles};

/// Flannel releases `from..=to` ship this flannel-cni-plugin tag.
#[derive(Debug, Clone)]
pub(super) struct FlannelRow {
    pub(super) from: KubeVersion,
    pub(super) to: KubeVersion,
    pub(super) plugin: String,
}

impl FlannelRow {
    pub(super) fn label(&self) -> String {
        if self.from == self.to {
            self.from.to_string()
        } else {
            format!("{}–{}", self.from, self.to)
        }
    }
}

/// Normalize a flannel tag (`0.26.7` or `v0.26.7`) to a version.
pub(super) fn flannel_version(tag: &str) -> Option<KubeVersion> {
    tag.trim().parse().ok()
}

impl Profiles {
    pub(super) fn flannel_row(file: &str, row: FlannelRowDoc) -> Result<FlannelRow, ProfileError> {
        let version = |s: &str| {
            flannel_version(s)
                .ok_or_else(|| invalid(file, format!("flannel version {s:?} is not vX.Y.Z")))
        };
        let from = version(&row.from)?;
        let to = match &row.to {
            Some(t) => version(t)?,
            None => from,
        };
        if from > to {
            return Err(invalid(
                file,
                format!("flannel range {from}–{to} is reversed"),
            ));
        }
        check_tag(file, "flannel-cni-plugin tag", &row.plugin)?;
        Ok(FlannelRow {
            from,
            to,
            plugin: row.plugin,
        })
    }

    pub(super) fn flannel_row_for(&self, v: &KubeVersion) -> Option<&FlannelRow> {
        self.flannel.iter().find(|r| r.from <= *v && *v <= r.to)
    }

    /// The flannel-cni-plugin tag that goes with flannel `flannel_tag`.
    pub fn flannel_cni_plugin(&self, flannel_tag: &str) -> Result<&str, ProfileError> {
        flannel_version(flannel_tag)
            .and_then(|v| self.flannel_row_for(&v))
            .map(|r| r.plugin.as_str())
            .ok_or_else(|| ProfileError::UnknownFlannel {
                tag: flannel_tag.to_string(),
                known: self.flannel.iter().map(FlannelRow::label).collect(),
            })
    }
}
