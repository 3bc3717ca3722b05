//! What the target host's own programs will ask the registry for: the real
//! kubeadm's `config images list` (pause, etcd and coredns are wired into the
//! binary that runs, not into the kubernetes version) and podsec's kube-flannel
//! manifest for the flannel tag (its images, not the tag asked for, are what the
//! cluster pulls). `preflight` checks these instead of the profile's guess
//! wherever the host has them. A shared helper of `commands::node`.

use std::path::{Path, PathBuf};
use std::process::Command;

use u7s_bundle::profile::{
    flannel_images_from_manifest, parse_kubeadm_images, FlannelImages, KubeVersion,
};

/// What `kubeadm config images list` printed on this host.
pub struct HostKubeadm {
    /// `kubeadm version -o short`, `None` when it would not say.
    pub version: Option<String>,
    /// `(image, tag)` in kubeadm's order.
    pub images: Vec<(String, String)>,
}

/// Ask the kubeadm at `bin` which images it pulls for `kube` from `repository`
/// (`<registry>/<platform>`), as podsec's `getKuberImages` does. `Ok(None)`: no
/// such binary. `Err`: it is there but refused (a message to show).
pub fn ask_kubeadm(
    bin: &Path,
    kube: &KubeVersion,
    repository: &str,
) -> Result<Option<HostKubeadm>, String> {
    if !bin.is_file() {
        return Ok(None);
    }
    let out = Command::new(bin)
        .args(["config", "images", "list", "--kubernetes-version"])
        .arg(kube.to_string())
        .args(["--image-repository", repository])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`{} config images list --kubernetes-version {kube}` failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let images = parse_kubeadm_images(&String::from_utf8_lossy(&out.stdout))
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let version = Command::new(bin)
        .args(["version", "-o", "short"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| v.parse::<KubeVersion>().is_ok());
    Ok(Some(HostKubeadm { version, images }))
}

/// podsec's manifest for flannel `tag` under `dir`
/// (`<dir>/<major>/<minor>/<patch>/kube-flannel.yml`, podsec's
/// `getKubeFlannelFile`) and the images it deploys. `Ok(None)`: no such file.
pub fn host_flannel(dir: &Path, tag: &str) -> Result<Option<(PathBuf, FlannelImages)>, String> {
    let Ok(v) = tag.parse::<KubeVersion>() else {
        return Ok(None);
    };
    let path = dir
        .join(v.major.to_string())
        .join(v.minor.to_string())
        .join(v.patch.to_string())
        .join("kube-flannel.yml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let images =
        flannel_images_from_manifest(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some((path, images)))
}

/// The image of a registry-relative name: `c10f/etcd:3.5.6-0` → `etcd`.
pub fn image_of(name: &str) -> &str {
    let rest = name.split_once('/').map_or(name, |(_, r)| r);
    rest.split(':').next().unwrap_or(rest)
}
