//! The registries.conf drop-in that lets the container tools of a node talk
//! plain HTTP to `registry.local` (podsec appends the same entry to
//! `/etc/containers/registries.conf` itself; a drop-in in
//! `registries.conf.d/` leaves the distribution file alone).
//!
//! Self-contained on purpose: one file we own, rewritten whole.

use super::is_registry_host;

/// The drop-in's name: read after the distribution's own `*.conf` files.
pub const DROPIN_FILE: &str = "50-u7s-bundle-registry.conf";

#[derive(Debug, thiserror::Error)]
#[error("invalid registry {0:?}: expected host[:port]")]
pub struct InvalidRegistry(pub String);

/// The drop-in's content for `registry` (`host[:port]`).
pub fn dropin(registry: &str) -> Result<String, InvalidRegistry> {
    if !is_registry_host(registry) {
        return Err(InvalidRegistry(registry.to_string()));
    }
    Ok(format!(
        "# Written by u7s-bundle: the cluster's registry speaks plain HTTP (as podsec sets it up);\n\
         # its images are trusted by their signatures (policy.json), not by TLS.\n\
         [[registry]]\nlocation = \"{registry}\"\ninsecure = true\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_toml_with_one_insecure_registry() {
        let text = dropin("registry.local").unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        let r = &v["registry"][0];
        assert_eq!(r["location"].as_str(), Some("registry.local"));
        assert_eq!(r["insecure"].as_bool(), Some(true));
        assert!(dropin("registry.local\"\n[x]").is_err());
    }
}
