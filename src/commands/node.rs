//! What `preflight`, `init` and `join` share: the node's selection (which image
//! set, from where) and the checks of whether this host can bring the rootless
//! cluster up from the registry. Every image of the set present for this arch
//! under the name the kubeadm wrapper asks for, every one allowed by
//! policy.json as CRI-O decides (see `u7s_bundle::policy_eval`), and the host
//! ready. A shared helper, not a command: the commands import it, not each other.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::ToSocketAddrs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use super::host_images::{ask_kubeadm, host_flannel as host_flannel_manifest, image_of};
use super::{load_profiles, registry_client};
use crate::cli::{ClusterSelectArgs, RegistryArgs};
use u7s_bundle::digest::Digest;
use u7s_bundle::kubeadm::LastBundle;
use u7s_bundle::oci;
use u7s_bundle::platform;
use u7s_bundle::podsec_env::{EnvValue, PodsecEnv};
use u7s_bundle::policy_eval::{Evaluator, HttpFetch, Image};
use u7s_bundle::profile::{KubeVersion, PlatformKind};
use u7s_bundle::registry::{Client, RegistryError};
use u7s_bundle::trust::{policy, registries_d};

/// The kernel rootless kubernetes needs (podsec-k8s's requirement).
const MIN_KERNEL: (u64, u64) = (5, 15);
/// The user the rootless cluster runs as.
const U7S_ADMIN: &str = "u7s-admin";

/// The image set a node will run and where from.
#[derive(Clone, Debug)]
pub struct Selection {
    /// `registry.local` or `host:port`: the wrapper's U7S_REGISTRY.
    pub registry: String,
    pub plain_http: bool,
    /// The first component of the names the wrapper asks for (U7S_PLATFORM).
    pub platform: String,
    pub kube_version: KubeVersion,
    pub arch: String,
    pub variant: Option<String>,
    pub flannel_tag: Option<String>,
    pub flannel_cni_plugin_tag: Option<String>,
    /// Registry-relative `repo:tag` names, in kubeadm's order.
    pub images: Vec<String>,
    /// Expected per-platform manifest digests (from a bundle).
    pub expected: Vec<Option<Digest>>,
    /// Where the set came from, for the report.
    pub source: String,
    /// The options that took podsec's variables.
    pub env: Vec<EnvValue>,
    /// What the host's kubeadm and flannel manifest said about the set (ok,
    /// skipped when the host has neither, failed when they refused).
    pub set_checks: Vec<Check>,
    /// The fix for an image that is not in the registry, where it is not
    /// "load the bundle": the build options that would have carried it.
    pub fixes: BTreeMap<String, String>,
}

impl Selection {
    /// `<registry>/<platform>`: kubeadm's imageRepository.
    pub fn image_repository(&self) -> String {
        format!("{}/{}", self.registry, self.platform)
    }

    pub fn arch_label(&self) -> String {
        match &self.variant {
            Some(v) => format!("linux/{}/{v}", self.arch),
            None => format!("linux/{}", self.arch),
        }
    }
}

/// Resolve the selection options: `--bundle`, else the profiles with the
/// platform from the options / the host / the last bundle, the version from
/// the options / the last bundle.
pub fn select(args: &ClusterSelectArgs) -> Result<Selection> {
    let mut sel = select_set(args)?;
    host_kubeadm(args, &mut sel);
    host_flannel(args, &mut sel);
    Ok(sel)
}

fn select_set(args: &ClusterSelectArgs) -> Result<Selection> {
    if !u7s_bundle::reference::is_valid_registry(&args.registry) {
        bail!(
            "--registry {:?} is not a registry host (HOST or HOST:PORT)",
            args.registry
        );
    }
    let plain_http = args.plain_http || u7s_bundle::reference::is_registry_local(&args.registry);
    if let Some(path) = &args.bundle {
        return select_from_bundle(args, path, plain_http);
    }
    let mut env = PodsecEnv::process();
    let kube_version = env.value(
        args.kube_version.clone(),
        "U7S_KUBEVERSION",
        "--kube-version",
    );
    let flannel_tag = env.value(args.flannel_tag.clone(), "U7S_FLANNEL_TAG", "--flannel-tag");
    if let Some(m) = env.message() {
        eprintln!("note: {m}");
    }
    let last = LastBundle::read(&args.state_dir).map_err(anyhow::Error::msg)?;
    let profiles = load_profiles(args.profiles_dir.as_deref())?;
    let platform_name = args
        .platform
        .clone()
        .or_else(platform::host_platform)
        .or_else(|| last.as_ref().and_then(|l| l.platform.clone()))
        .context(
            "cannot tell this host's platform (not an ALT system, no U7S_PLATFORM, no last-bundle.json): give --platform",
        )?;
    let (version, flannel, source) = match &kube_version {
        Some(v) => (v.clone(), flannel_tag.clone(), "profile".to_string()),
        None => {
            let canonical = |name: &str| {
                profiles
                    .platform(name)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|_| name.to_string())
            };
            default_version(
                args,
                flannel_tag.as_deref(),
                &canonical(&platform_name),
                canonical,
                last.as_ref(),
            )?
        }
    };
    let set = profiles.image_set(&platform_name, Some(&version), flannel.as_deref())?;
    if set.kind != PlatformKind::Kubernetes {
        bail!(
            "platform {} holds base images, not a kubernetes image set",
            set.platform
        );
    }
    let (arch, variant) = super::select_arch(args.arch.as_deref())?;
    // Asked for by a legacy name (k8s-c10f2): the wrapper will ask for that
    // name, which load pushes and signs too.
    let legacy = set
        .legacy_prefixes
        .iter()
        .find(|p| **p == set.requested_platform)
        .cloned();
    let images: Vec<String> = set
        .images
        .iter()
        .map(|i| match &legacy {
            Some(p) => i.name_under(p),
            None => i.name(),
        })
        .collect();
    Ok(Selection {
        registry: args.registry.clone(),
        plain_http,
        platform: legacy.unwrap_or_else(|| set.platform.clone()),
        kube_version: set.kube_version.parse()?,
        arch,
        variant,
        flannel_tag: set.flannel_tag.clone(),
        flannel_cni_plugin_tag: set.flannel_cni_plugin_tag.clone(),
        expected: vec![None; images.len()],
        images,
        source,
        env: env.used,
        set_checks: Vec::new(),
        fixes: BTreeMap::new(),
    })
}

/// Replace the kubeadm images of the set by those the host's kubeadm lists: they
/// are the ones it will pull. An image the set lacked gets the build option
/// that carries it as its fix.
fn host_kubeadm(args: &ClusterSelectArgs, sel: &mut Selection) {
    let bin = &args.kubeadm_bin;
    let host = match ask_kubeadm(bin, &sel.kube_version, &sel.image_repository()) {
        Ok(Some(h)) => h,
        Ok(None) => {
            sel.set_checks.push(Check::skipped(
                "kubeadm images",
                format!(
                    "no kubeadm at {}: checked the profile's set for kubeadm {} instead",
                    bin.display(),
                    sel.kube_version
                ),
            ));
            return;
        }
        Err(e) => {
            sel.set_checks.push(Check::failed(
                "kubeadm images",
                e,
                format!(
                    "install the kubeadm package of kubernetes {} (podsec: kubernetes{}.{}-kubeadm), or give --kubeadm-bin",
                    sel.kube_version, sel.kube_version.major, sel.kube_version.minor
                ),
            ));
            return;
        }
    };
    let version = host.version.clone().unwrap_or_else(|| "vX.Y.Z".into());
    let listed: Vec<String> = host
        .images
        .iter()
        .map(|(image, tag)| format!("{}/{image}:{tag}", sel.platform))
        .collect();
    for name in &listed {
        if !sel.images.contains(name) {
            sel.fixes.insert(
                name.clone(),
                format!(
                    "build for this host's kubeadm and load that bundle: u7s-bundle build --platform {} --kube-version {} --kubeadm-version {version}",
                    sel.platform, sel.kube_version
                ),
            );
        }
    }
    let rest = sel
        .images
        .iter()
        .filter(|n| !host.images.iter().any(|(i, _)| i == image_of(n)))
        .cloned();
    let images: Vec<String> = listed.iter().cloned().chain(rest).collect();
    replace_images(sel, images);
    sel.set_checks.push(Check::ok(
        "kubeadm images",
        format!(
            "as {} (kubeadm {}) lists them for {}",
            bin.display(),
            host.version.as_deref().unwrap_or("?"),
            sel.kube_version
        ),
    ));
}

/// Replace the flannel images by those podsec's manifest on this host deploys.
fn host_flannel(args: &ClusterSelectArgs, sel: &mut Selection) {
    let Some(tag) = sel.flannel_tag.clone() else {
        return;
    };
    let dir = &args.flannel_manifests;
    let (path, deployed) = match host_flannel_manifest(dir, &tag) {
        Ok(Some(found)) => found,
        Ok(None) => {
            sel.set_checks.push(Check::skipped(
                "flannel manifest",
                format!(
                    "no podsec kube-flannel manifest for {tag} under {}: checked the profile's table instead",
                    dir.display()
                ),
            ));
            return;
        }
        Err(e) => {
            sel.set_checks.push(Check::failed(
                "flannel manifest",
                e,
                "reinstall podsec-k8s (its kube-flannel manifests), or give --flannel-tag",
            ));
            return;
        }
    };
    let wanted = [
        format!("{}/flannel:{}", sel.platform, deployed.flannel),
        format!(
            "{}/flannel-cni-plugin:{}",
            sel.platform, deployed.cni_plugin
        ),
    ];
    for name in &wanted {
        if !sel.images.contains(name) {
            sel.fixes.insert(
                name.clone(),
                format!(
                    "build with this host's manifest and load that bundle: u7s-bundle build --platform {} --kube-version {} --flannel-tag {tag} --flannel-manifest {}",
                    sel.platform,
                    sel.kube_version,
                    path.display()
                ),
            );
        }
    }
    // The deployed images replace the set's guess; the asked tag stays when the
    // set has it (podsec's wrapper pulls it before init).
    let asked = format!("{}/flannel:{tag}", sel.platform);
    let rest = sel
        .images
        .iter()
        .filter(|n| !matches!(image_of(n), "flannel" | "flannel-cni-plugin") || **n == asked)
        .cloned();
    let mut images: Vec<String> = rest.collect();
    for w in wanted {
        if !images.contains(&w) {
            images.push(w);
        }
    }
    replace_images(sel, images);
    sel.flannel_cni_plugin_tag = Some(deployed.cni_plugin.clone());
    sel.set_checks.push(Check::ok(
        "flannel manifest",
        format!(
            "flannel:{} and flannel-cni-plugin:{} as {} deploys them",
            deployed.flannel,
            deployed.cni_plugin,
            path.display()
        ),
    ));
}

/// New image names, keeping each one's expected digest where it had one.
fn replace_images(sel: &mut Selection, images: Vec<String>) {
    let expected: BTreeMap<&String, &Option<Digest>> =
        sel.images.iter().zip(&sel.expected).collect();
    sel.expected = images
        .iter()
        .map(|n| expected.get(n).and_then(|d| (*d).clone()))
        .collect();
    sel.images = images;
}

/// Without --kube-version: the version this node runs, else the only one
/// loaded for the platform, else (a state directory from before per-version
/// records) the last bundle loaded. Several loaded and none running: refused.
fn default_version(
    args: &ClusterSelectArgs,
    flannel_tag: Option<&str>,
    platform: &str,
    canonical: impl Fn(&str) -> String,
    last: Option<&LastBundle>,
) -> Result<(String, Option<String>, String)> {
    use u7s_bundle::node_state::{self, Chosen, NodeRecord};
    let dir = &args.state_dir;
    // (A node brought up under a legacy name, k8s-c10f2, runs c10f.)
    let node = NodeRecord::read(dir)?.map(|mut n| {
        n.platform = canonical(&n.platform);
        n
    });
    let loaded = node_state::loaded(dir, platform)?;
    let flannel_of = |v: &str| {
        flannel_tag.map(str::to_string).or_else(|| {
            loaded
                .iter()
                .find(|l| l.kube_version == v)
                .and_then(|l| l.flannel_tag.clone())
        })
    };
    Ok(match node_state::choose(node.as_ref(), &loaded, platform)? {
        Some(Chosen::Running(v)) => (
            v.clone(),
            flannel_of(&v),
            format!(
                "profile, the version this node runs ({})",
                NodeRecord::path(dir).display()
            ),
        ),
        Some(Chosen::OnlyLoaded(l)) => (
            l.kube_version.clone(),
            flannel_of(&l.kube_version),
            format!("profile, the only version loaded for {platform}"),
        ),
        None => match last {
            Some(l) => (
                l.kube_version.clone(),
                flannel_tag.map(str::to_string).or_else(|| l.flannel_tag.clone()),
                format!(
                    "profile, version of the last bundle loaded ({})",
                    LastBundle::path(dir).display()
                ),
            ),
            None => bail!(
                "no kubernetes version: give --kube-version (or --bundle); no bundle load is recorded in {}",
                dir.display()
            ),
        },
    })
}

fn select_from_bundle(
    args: &ClusterSelectArgs,
    path: &Path,
    plain_http: bool,
) -> Result<Selection> {
    let m = super::read_header(path)?.manifest;
    let Some(v) = &m.kube_version else {
        bail!(
            "{} holds base images ({}), not a kubernetes image set",
            path.display(),
            m.platform
        );
    };
    if let Some(a) = &args.arch {
        let (arch, variant) = platform::normalize_arch(a)?;
        if arch != m.arch || (variant.is_some() && variant != m.variant) {
            bail!(
                "--arch {a} does not match the bundle's architecture {}",
                m.arch
            );
        }
    }
    Ok(Selection {
        registry: args.registry.clone(),
        plain_http,
        platform: m.platform.clone(),
        kube_version: v
            .parse()
            .with_context(|| format!("kube_version of {}", path.display()))?,
        arch: m.arch.clone(),
        variant: m.variant.clone(),
        flannel_tag: m.flannel_tag.clone(),
        flannel_cni_plugin_tag: m.flannel_cni_plugin_tag.clone(),
        images: m.images.iter().map(|i| i.name.clone()).collect(),
        expected: m.images.iter().map(|i| Some(i.manifest.clone())).collect(),
        source: format!("bundle {}", path.display()),
        env: Vec::new(),
        set_checks: Vec::new(),
        fixes: BTreeMap::new(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    Skipped,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// registry, hosts, policy, image, kernel, user, kubeadm.
    pub check: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// For image checks: the full name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// For image checks: the manifest digest checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Check {
    fn ok(check: &'static str, detail: impl Into<String>) -> Check {
        Check {
            check,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
            image: None,
            digest: None,
        }
    }
    fn failed(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Failed,
            fix: Some(fix.into()),
            ..Check::ok(check, detail)
        }
    }
    fn skipped(check: &'static str, detail: impl Into<String>) -> Check {
        Check {
            status: Status::Skipped,
            ..Check::ok(check, detail)
        }
    }
}

pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed() == 0
    }

    pub fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Failed)
            .count()
    }

    pub fn json(&self, sel: &Selection) -> serde_json::Value {
        json!({
            "ok": self.ok(),
            "registry": sel.registry,
            "environment": sel.env,
            "platform": sel.platform,
            "kube_version": sel.kube_version.to_string(),
            "arch": sel.arch_label(),
            "image_set": sel.source,
            "checks": self.checks,
        })
    }

    pub fn print(&self, sel: &Selection, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "preflight: {} {} {} from {} (image set: {})",
            sel.platform,
            sel.kube_version,
            sel.arch_label(),
            sel.registry,
            sel.source
        )?;
        for c in &self.checks {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Failed => "FAILED",
                Status::Skipped => "skipped",
            };
            let what = match &c.image {
                Some(i) => format!("{i}: {}", c.detail),
                None => c.detail.clone(),
            };
            writeln!(out, "  {status:<8} {:<9} {what}", c.check)?;
            if let Some(f) = &c.fix {
                writeln!(out, "  {:<8} {:<9} -> {f}", "", "")?;
            }
        }
        if self.ok() {
            writeln!(out, "preflight: all checks passed")
        } else {
            writeln!(
                out,
                "preflight: {} check(s) FAILED; the cluster would not come up",
                self.failed()
            )
        }
    }
}

/// Run every check.
pub fn check(args: &ClusterSelectArgs, sel: &Selection) -> Report {
    let mut checks = sel.set_checks.clone();
    let client = registry_client(
        &sel.registry,
        sel.plain_http,
        &RegistryArgs {
            plain_http: sel.plain_http,
            ca_file: None,
            username: None,
            password_stdin: false,
            retries: 2,
            // A preflight check reports a hung registry instead of waiting on it.
            read_timeout: 30,
        },
    );
    let reachable = match &client {
        Ok(c) => match c.ping() {
            Ok(()) => {
                checks.push(Check::ok(
                    "registry",
                    format!("{} answers /v2/", sel.registry),
                ));
                true
            }
            Err(e) => {
                checks.push(Check::failed(
                    "registry",
                    format!("{} does not answer /v2/: {e}", sel.registry),
                    registry_fix(sel),
                ));
                false
            }
        },
        Err(e) => {
            checks.push(Check::failed(
                "registry",
                format!("{e:#}"),
                "give --registry HOST[:PORT]",
            ));
            false
        }
    };

    let first_ref = sel
        .images
        .first()
        .map(|n| format!("{}/{n}", sel.registry))
        .unwrap_or_else(|| sel.registry.clone());
    let lookaside = registries_d::lookaside_for(&args.registries_d, &first_ref);
    hosts_checks(
        sel,
        lookaside.as_ref().ok().and_then(|l| l.as_deref()),
        &mut checks,
    );

    let policy = read_policy(&args.policy);
    match &policy {
        Ok(_) => checks.push(Check::ok(
            "policy",
            format!(
                "{} read; signatures from {}",
                args.policy.display(),
                match &lookaside {
                    Ok(Some(u)) => u.clone(),
                    Ok(None) => "the built-in default lookaside (registries.d names none)".into(),
                    Err(e) => format!("? ({e})"),
                }
            ),
        )),
        Err(e) => checks.push(Check::failed(
            "policy",
            format!("{e:#}"),
            "load a bundle (u7s-bundle load writes policy.json), or give --policy FILE",
        )),
    }

    let http = HttpFetch::new();
    for (i, name) in sel.images.iter().enumerate() {
        let reference = format!("{}/{name}", sel.registry);
        let mut c = match (&client, reachable) {
            (Ok(client), true) => image_check(
                client,
                sel,
                name,
                &reference,
                sel.expected[i].as_ref(),
                policy.as_ref().ok(),
                &args.registries_d,
                http.as_ref().ok(),
            ),
            _ => Check::failed(
                "image",
                "not checked: the registry does not answer",
                registry_fix(sel),
            ),
        };
        c.image = Some(reference);
        checks.push(c);
    }

    host_checks(args, &mut checks);
    Report { checks }
}

fn registry_fix(sel: &Selection) -> String {
    if u7s_bundle::reference::is_registry_local(&sel.registry) {
        "start the registry on the first master (podsec: systemctl start docker-registry) \
         and make /etc/hosts map registry.local to it"
            .into()
    } else {
        format!("start the registry at {} or give --registry", sel.registry)
    }
}

fn resolves(host: &str) -> Result<(), String> {
    match (host, 80).to_socket_addrs() {
        Ok(a) if a.len() > 0 => Ok(()),
        Ok(_) => Err("no address".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// registry.local and sigstore.local must resolve when they are the names used
/// (podsec-create-policy writes them into /etc/hosts).
fn hosts_checks(sel: &Selection, lookaside: Option<&str>, checks: &mut Vec<Check>) {
    let mut names = Vec::new();
    if u7s_bundle::reference::is_registry_local(&sel.registry) {
        names.push("registry.local");
    }
    let sigstore_host = lookaside
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_string));
    if sigstore_host.as_deref() == Some("sigstore.local") {
        names.push("sigstore.local");
    }
    for n in names {
        match resolves(n) {
            Ok(()) => checks.push(Check::ok("hosts", format!("{n} resolves"))),
            Err(e) => checks.push(Check::failed(
                "hosts",
                format!("{n} does not resolve: {e}"),
                "add \"<first master's IP> registry.local sigstore.local\" to /etc/hosts (podsec-create-policy does)",
            )),
        }
    }
}

fn read_policy(path: &Path) -> Result<policy::Policy> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    policy::parse(&bytes).with_context(|| format!("{} is invalid", path.display()))
}

/// Present for this arch, the bundle's image if a bundle was given, and
/// allowed by the policy.
#[allow(clippy::too_many_arguments)]
fn image_check(
    client: &Client,
    sel: &Selection,
    name: &str,
    reference: &str,
    expected: Option<&Digest>,
    policy: Option<&policy::Policy>,
    registries_d: &Path,
    http: Option<&HttpFetch>,
) -> Check {
    let load_fix = sel.fixes.get(name).map_or(
        "load the bundle that holds it: u7s-bundle load ARCHIVE",
        |f| f.as_str(),
    );
    let Some((repo, tag)) = name.rsplit_once(':') else {
        return Check::failed("image", "not a repo:tag name", load_fix);
    };
    let manifest = match platform_manifest(client, repo, tag, sel) {
        Ok(m) => m,
        Err(e) => return Check::failed("image", e, load_fix),
    };
    let digest = Digest::of(&manifest);
    let c = |status_check: Check| Check {
        digest: Some(digest.to_string()),
        ..status_check
    };
    if let Some(want) = expected {
        if *want != digest {
            return c(Check::failed(
                "image",
                format!("the registry serves {digest}, the bundle holds {want}"),
                "load this bundle again: u7s-bundle load ARCHIVE",
            ));
        }
    }
    let Some(policy) = policy else {
        return c(Check::failed(
            "image",
            "present, but not checked against the policy (policy.json unreadable)",
            "fix policy.json",
        ));
    };
    let Some(http) = http else {
        return c(Check::failed(
            "image",
            "present, but cannot read an http lookaside (HTTP client failed to start)",
            "check the TLS setup",
        ));
    };
    let eval = Evaluator {
        policy,
        registries_d,
        http,
    };
    match eval.evaluate(Image {
        reference,
        manifest: &manifest,
    }) {
        Ok(a) => c(Check::ok(
            "image",
            format!("present, allowed: {}", a.reasons.join(", ")),
        )),
        Err(r) => c(Check::failed(
            "image",
            format!("refused by policy: {r}"),
            "sign it again (u7s-bundle load ARCHIVE), or make policy.json name the key that signed it",
        )),
    }
}

/// The manifest that runs on this arch when `repo:tag` is pulled: the tag's
/// manifest, or the platform's entry of the tag's index.
fn platform_manifest(
    client: &Client,
    repo: &str,
    tag: &str,
    sel: &Selection,
) -> Result<Vec<u8>, String> {
    let top = client.get_manifest(repo, tag).map_err(|e| match e {
        RegistryError::NotFound { .. } => "not in the registry".to_string(),
        e => format!("cannot read its manifest: {e}"),
    })?;
    match oci::parse_manifest(&top.bytes, Some(&top.media_type)) {
        Ok((oci::Fetched::Image(_), _)) => Ok(top.bytes),
        Ok((oci::Fetched::Index(index), _)) => {
            let d = oci::select_platform(&index, &sel.arch, sel.variant.as_deref())
                .map_err(|e| format!("no {} image: {e}", sel.arch_label()))?;
            let m = client
                .get_manifest(repo, &d.digest.to_string())
                .map_err(|e| format!("its {} manifest: {e}", sel.arch_label()))?;
            Ok(m.bytes)
        }
        Err(e) => Err(format!("unreadable manifest: {e}")),
    }
}

/// `5.15.0-91-generic` → (5, 15).
fn kernel_version(release: &str) -> Option<(u64, u64)> {
    let mut it = release.trim().split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

fn user_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: a valid C string; the result is only tested for NULL.
    !unsafe { libc::getpwnam(c.as_ptr()) }.is_null()
}

fn is_executable_file(p: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let md = std::fs::metadata(p).map_err(|e| e.to_string())?;
    if !md.is_file() {
        return Err("not a regular file".into());
    }
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a valid C string.
    if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
        return Err("not executable".into());
    }
    Ok(())
}

fn host_checks(args: &ClusterSelectArgs, checks: &mut Vec<Check>) {
    if args.skip_host_checks {
        checks.push(Check::skipped("kernel", "skipped (--skip-host-checks)"));
        checks.push(Check::skipped("user", "skipped (--skip-host-checks)"));
    } else {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        match kernel_version(&release) {
            Some(v) if v >= MIN_KERNEL => checks.push(Check::ok(
                "kernel",
                format!("{} (>= {}.{})", release.trim(), MIN_KERNEL.0, MIN_KERNEL.1),
            )),
            _ => checks.push(Check::failed(
                "kernel",
                format!(
                    "kernel {:?} is older than {}.{} (or unreadable)",
                    release.trim(),
                    MIN_KERNEL.0,
                    MIN_KERNEL.1
                ),
                "boot a kernel >= 5.15 (rootless kubernetes needs it)",
            )),
        }
        if user_exists(U7S_ADMIN) {
            checks.push(Check::ok("user", format!("{U7S_ADMIN} exists")));
        } else {
            checks.push(Check::failed(
                "user",
                format!("no user {U7S_ADMIN}"),
                "install podsec-k8s (it creates u7s-admin)",
            ));
        }
    }
    match is_executable_file(&args.kubeadm) {
        Ok(()) => checks.push(Check::ok(
            "kubeadm",
            format!("{} is executable", args.kubeadm.display()),
        )),
        Err(e) => checks.push(Check::failed(
            "kubeadm",
            format!("{}: {e}", args.kubeadm.display()),
            "install podsec-k8s (it provides the rootless kubeadm wrapper), or give --kubeadm PATH",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels() {
        assert_eq!(kernel_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(kernel_version("6.1.0-18-amd64\n"), Some((6, 1)));
        assert_eq!(kernel_version("5.10.209-std-def-alt1"), Some((5, 10)));
        assert_eq!(kernel_version("6.12rc1"), Some((6, 12)));
        assert_eq!(kernel_version(""), None);
        assert!(kernel_version("5.10.1").unwrap() < MIN_KERNEL);
    }
}
