//! podsec's U7S_* environment variables as defaults for u7s-bundle's options.
//!
//! An admin who has used podsec has these in the shell profile
//! (`U7S_KUBEVERSION=v1.27.11`), and a command that ignored them would quietly
//! build or check another set than the one podsec will run. The rule: an option
//! given on the command line wins; otherwise a variable that is set is taken, and
//! the command says once which ones it took (and records them with `--json`).
//! The values are read as podsec reads them: `U7S_SETAVAILABLEIMAGES` counts only
//! as `yes`, and a set-but-empty `U7S_REGISTRY` (podsec: upstream images from
//! registry.k8s.io, without the platform path) is refused with what to use.

use serde::Serialize;

/// One option whose value came from the environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvValue {
    /// `U7S_KUBEVERSION`
    pub var: &'static str,
    pub value: String,
    /// `--kube-version`
    pub option: &'static str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error(
        "U7S_REGISTRY is set but empty: podsec then takes the upstream images of registry.k8s.io \
         (no platform path, no ALT builds), which u7s-bundle does not carry; unset U7S_REGISTRY \
         to use the ALT registry ({default}), or give {option} HOST"
    )]
    UpstreamRegistry {
        option: &'static str,
        default: &'static str,
    },
}

/// How a variable is read: the process environment, or a map in tests.
type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Reads variables through `lookup` (the process environment, or a map in
/// tests) and keeps the list of the ones taken.
pub struct PodsecEnv<'a> {
    lookup: Lookup<'a>,
    pub used: Vec<EnvValue>,
}

impl PodsecEnv<'static> {
    /// The process environment (a value that is not UTF-8 counts as unset).
    pub fn process() -> PodsecEnv<'static> {
        PodsecEnv::new(|k| std::env::var(k).ok())
    }
}

impl<'a> PodsecEnv<'a> {
    pub fn new(lookup: impl Fn(&str) -> Option<String> + 'a) -> PodsecEnv<'a> {
        PodsecEnv {
            lookup: Box::new(lookup),
            used: Vec::new(),
        }
    }

    /// `flag` if given, else a non-empty `var` (recorded), else `None`.
    pub fn value(
        &mut self,
        flag: Option<String>,
        var: &'static str,
        option: &'static str,
    ) -> Option<String> {
        if flag.is_some() {
            return flag;
        }
        let value = (self.lookup)(var).filter(|v| !v.trim().is_empty())?;
        self.used.push(EnvValue {
            var,
            value: value.clone(),
            option,
        });
        Some(value)
    }

    /// `flag`, or `U7S_SETAVAILABLEIMAGES=yes` (podsec tests for exactly `yes`).
    pub fn set_available_images(&mut self, flag: bool) -> bool {
        if flag {
            return true;
        }
        match (self.lookup)("U7S_SETAVAILABLEIMAGES") {
            Some(v) if v == "yes" => {
                self.used.push(EnvValue {
                    var: "U7S_SETAVAILABLEIMAGES",
                    value: v,
                    option: "--set-available-images",
                });
                true
            }
            _ => false,
        }
    }

    /// The registry: `flag`, else U7S_REGISTRY, else `default`. Set but empty is
    /// refused (see [`EnvError::UpstreamRegistry`]).
    pub fn registry(
        &mut self,
        flag: Option<String>,
        option: &'static str,
        default: &'static str,
    ) -> Result<String, EnvError> {
        if let Some(f) = flag {
            return Ok(f);
        }
        match (self.lookup)("U7S_REGISTRY") {
            Some(v) if v.trim().is_empty() => Err(EnvError::UpstreamRegistry { option, default }),
            Some(v) => {
                self.used.push(EnvValue {
                    var: "U7S_REGISTRY",
                    value: v.clone(),
                    option,
                });
                Ok(v)
            }
            None => Ok(default.to_string()),
        }
    }

    /// One line naming every value taken from the environment, or `None`.
    pub fn message(&self) -> Option<String> {
        if self.used.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .used
            .iter()
            .map(|u| format!("{}={} (for {})", u.var, u.value, u.option))
            .collect();
        Some(format!(
            "from the environment: {}; an option on the command line overrides it",
            parts.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_flag_wins_and_the_environment_is_recorded() {
        let vars = env(&[("U7S_KUBEVERSION", "v1.27.11"), ("U7S_PLATFORM", "c10f")]);
        let mut e = PodsecEnv::new(|k| vars.get(k).cloned());
        let v = e.value(Some("v1.26.9".into()), "U7S_KUBEVERSION", "--kube-version");
        assert_eq!(v.as_deref(), Some("v1.26.9"));
        assert!(e.used.is_empty());
        let p = e.value(None, "U7S_PLATFORM", "--platform");
        assert_eq!(p.as_deref(), Some("c10f"));
        assert_eq!(e.used.len(), 1);
        let msg = e.message().unwrap();
        assert!(msg.contains("U7S_PLATFORM=c10f (for --platform)"), "{msg}");
        assert_eq!(e.value(None, "U7S_FLANNEL_TAG", "--flannel-tag"), None);
    }

    #[test]
    fn set_available_images_only_with_yes() {
        for (value, expected) in [("yes", true), ("no", false), ("1", false), ("YES", false)] {
            let vars = env(&[("U7S_SETAVAILABLEIMAGES", value)]);
            let mut e = PodsecEnv::new(|k| vars.get(k).cloned());
            assert_eq!(e.set_available_images(false), expected, "{value}");
            assert_eq!(e.used.len(), usize::from(expected));
        }
    }

    #[test]
    fn empty_registry_is_refused_unless_an_option_is_given() {
        let vars = env(&[("U7S_REGISTRY", "")]);
        let mut e = PodsecEnv::new(|k| vars.get(k).cloned());
        let err = e
            .registry(None, "--source", "registry.altlinux.org")
            .unwrap_err();
        assert!(err.to_string().contains("registry.k8s.io"), "{err}");
        assert_eq!(
            e.registry(
                Some("mirror:5000".into()),
                "--source",
                "registry.altlinux.org"
            ),
            Ok("mirror:5000".into())
        );
        let vars = env(&[("U7S_REGISTRY", "mirror.lan")]);
        let mut e = PodsecEnv::new(|k| vars.get(k).cloned());
        assert_eq!(
            e.registry(None, "--source", "registry.altlinux.org"),
            Ok("mirror.lan".into())
        );
        assert_eq!(e.used[0].var, "U7S_REGISTRY");
        let mut e = PodsecEnv::new(|_| None);
        assert_eq!(
            e.registry(None, "--source", "registry.altlinux.org"),
            Ok("registry.altlinux.org".into())
        );
        assert!(e.message().is_none());
    }
}
