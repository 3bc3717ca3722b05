//! One module per subcommand: orchestration only. Shared helpers for options
//! that several commands take live here.

mod build;
mod cluster;
mod completions;
mod host_images;
mod inspect;
mod inventory;
mod keygen;
mod load;
mod man;
mod node;
mod node_trust;
mod plan;
mod preflight;
mod profiles;
mod services;
mod verify;

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::cli::{Cli, Command, RegistryArgs, SelectArgs, TrustArgs};
use u7s_bundle::bundle::{reader, volumes};
use u7s_bundle::error::Class;
use u7s_bundle::podsec_env::{EnvValue, PodsecEnv};
use u7s_bundle::profile::{
    self, ImageSet, PlatformKind, Profiles, SetOptions, DEFAULT_SOURCE_REGISTRY,
};
use u7s_bundle::registry::{self, auth::Credentials, Client, ClientOptions};

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Profiles(a) => profiles::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Build(a) => build::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Load(a) => load::run(a),
        Command::Inventory(a) => inventory::run(a),
        Command::Keygen(a) => keygen::run(a),
        Command::Preflight(a) => preflight::run(a),
        Command::Init(a) => cluster::run_init(a),
        Command::Join(a) => cluster::run_join(a),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
        Command::Services(a) => services::run(a),
        Command::NodeTrust(a) => node_trust::run(a),
    }
}

/// A failure whose exit code is not 1.
#[derive(Debug, thiserror::Error)]
pub enum Exit {
    /// The bundle or a signature did not verify.
    #[error("{0}")]
    Verification(String),
    /// Ctrl-C / SIGTERM.
    #[error("interrupted")]
    Interrupted(i32),
}

pub const EXIT_VERIFICATION: i32 = 3;

/// 3 for anything that means "this bundle is not to be trusted", 130/143 for
/// interruptions, 1 otherwise: the class the first classified error in the
/// chain says.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    match err.chain().find_map(class_of).unwrap_or(Class::Failed) {
        Class::Untrusted => EXIT_VERIFICATION,
        Class::Interrupted(code) => code,
        Class::Failed => 1,
    }
}

/// The class an error says of itself, for the error types that know one.
fn class_of(e: &(dyn std::error::Error + 'static)) -> Option<Class> {
    use u7s_bundle::bundle::{model::ModelError, reader::ReadError, verify::VerifyError};
    use u7s_bundle::{bundle::volumes::VolumeError, load::StreamError, sign::SignError};
    if let Some(e) = e.downcast_ref::<Exit>() {
        return Some(match e {
            Exit::Verification(_) => Class::Untrusted,
            Exit::Interrupted(c) => Class::Interrupted(*c),
        });
    }
    (e.downcast_ref::<StreamError>().map(StreamError::class))
        .or_else(|| e.downcast_ref::<VolumeError>().map(VolumeError::class))
        .or_else(|| e.downcast_ref::<ReadError>().map(ReadError::class))
        .or_else(|| e.downcast_ref::<VerifyError>().map(VerifyError::class))
        .or_else(|| e.downcast_ref::<ModelError>().map(|_| Class::Untrusted))
        .or_else(|| {
            // Trouble with our own key or gpg says nothing: look further down.
            let c = e.downcast_ref::<SignError>()?.class();
            (c == Class::Untrusted).then_some(c)
        })
}

/// `err` and its causes, each said once (see
/// [`u7s_bundle::error::message_with_causes`]).
pub fn error_message(err: &anyhow::Error) -> String {
    u7s_bundle::error::message_with_causes(err.as_ref())
}

/// bundle.json and its signature, the first entries of a bundle file or
/// volume set (nothing else is read, the volume index's signature is not
/// checked): what `inspect` shows and `preflight`/`init`/`join` select by.
pub fn read_header(path: &Path) -> Result<reader::Header> {
    let not_bundle = || {
        anyhow::anyhow!(
            "{} has no bundle.json first: not a u7s bundle (a legacy podsec archive?)",
            path.display()
        )
    };
    if !volumes::is_volume_path(path) && reader::is_legacy(path).unwrap_or(false) {
        return Err(not_bundle());
    }
    let input = volumes::Input::open(path, None, None)
        .with_context(|| format!("opening {}", path.display()))?;
    reader::read_header(input).with_context(|| format!("reading {}", path.display()))
}

pub fn load_profiles(dir: Option<&Path>) -> Result<Profiles> {
    Ok(match dir {
        Some(d) => Profiles::load_dir(d)
            .with_context(|| format!("loading profiles from {}", d.display()))?,
        None => Profiles::builtin().context("loading the built-in profiles")?,
    })
}

/// A registry client from the common options; reads the password from stdin
/// when asked to.
pub fn registry_client(host: &str, plain_http: bool, args: &RegistryArgs) -> Result<Client> {
    if !u7s_bundle::reference::is_valid_registry(host) {
        bail!("{host:?} is not a registry host (HOST or HOST:PORT)");
    }
    let credentials = match (&args.username, args.password_stdin) {
        (Some(u), true) => Some(Credentials {
            username: u.clone(),
            password: registry::password_from_reader(std::io::stdin().lock())
                .context("reading the password from standard input")?,
        }),
        _ => None,
    };
    let opts = ClientOptions {
        plain_http,
        ca_file: args.ca_file.clone(),
        credentials,
        attempts: args.retries.max(1),
        read_timeout: (args.read_timeout > 0)
            .then(|| std::time::Duration::from_secs(args.read_timeout)),
    };
    Ok(Client::new(host, &opts)?)
}

/// (arch, variant) from --arch or the host.
pub fn select_arch(arch: Option<&str>) -> Result<(String, Option<String>)> {
    let a = arch.unwrap_or(u7s_bundle::platform::host_arch());
    Ok(u7s_bundle::platform::normalize_arch(a)?)
}

/// The image set for the selection (see `plan::image_set`).
/// A `plan`/`build` selection with podsec's variables applied and the files
/// of --flannel-manifest and --kubeadm-images read.
pub struct Chosen {
    pub set: ImageSet,
    /// The source registry (--source, U7S_REGISTRY, or the default).
    pub source: String,
    /// Whether the kubernetes version was given (option or U7S_KUBEVERSION).
    pub version_given: bool,
    pub set_available: bool,
    /// The options that took podsec's variables.
    pub env: Vec<EnvValue>,
    /// The platform and options the set was made of, to make it again with
    /// another version (build's default from the source registry).
    pub platform: String,
    pub opts: SetOptions,
}

/// Resolve the selection of `plan` and `build`: options first, podsec's
/// variables where an option is missing (said once on stderr), then the set.
/// `kube_version` overrides the selection's version (build's registry default).
pub fn choose_set(
    profiles: &Profiles,
    select: &SelectArgs,
    source: Option<String>,
    kube_version: Option<String>,
) -> Result<Chosen> {
    let mut env = PodsecEnv::process();
    let platform = env
        .value(select.platform.clone(), "U7S_PLATFORM", "--platform")
        .context("no platform: give --platform (or set U7S_PLATFORM, as for podsec)")?;
    // podsec's kubernetes variables say nothing about base images: an admin's
    // U7S_KUBEVERSION must not become a branch name for --platform alt.
    let kubernetes = profiles.platform(&platform)?.kind == PlatformKind::Kubernetes;
    let mut var = |flag: &Option<String>, name, option| match kubernetes {
        true => env.value(flag.clone(), name, option),
        false => flag.clone(),
    };
    let kube_from_args = var(&select.kube_version, "U7S_KUBEVERSION", "--kube-version");
    let flannel_tag = var(&select.flannel_tag, "U7S_FLANNEL_TAG", "--flannel-tag");
    let cni = var(
        &select.flannel_cni_plugin_tag,
        "U7S_FLANNELCNIPLUGIN_TAG",
        "--flannel-cni-plugin-tag",
    );
    let set_available = env.set_available_images(select.set_available_images);
    let source = env.registry(source, "--source", DEFAULT_SOURCE_REGISTRY)?;
    let flannel_manifest = match &select.flannel_manifest {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --flannel-manifest {}", path.display()))?;
            Some(
                profile::flannel_images_from_manifest(&text)
                    .with_context(|| format!("--flannel-manifest {}", path.display()))?,
            )
        }
        None => None,
    };
    let kubeadm_images = match &select.kubeadm_images {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --kubeadm-images {}", path.display()))?;
            Some(
                profile::parse_kubeadm_images(&text)
                    .with_context(|| format!("--kubeadm-images {}", path.display()))?,
            )
        }
        None => None,
    };
    let version_given = kube_from_args.is_some() || kubeadm_images.is_some();
    let opts = SetOptions {
        kube_version: kube_from_args.or(kube_version),
        flannel_tag,
        flannel_manifest,
        flannel_cni_plugin_tag: cni,
        kubeadm_versions: select.kubeadm_versions.clone(),
        kubeadm_images,
    };
    if let Some(m) = env.message() {
        eprintln!("note: {m}");
    }
    let set = u7s_bundle::plan::image_set(profiles, &platform, &opts, set_available)?;
    Ok(Chosen {
        set,
        source,
        version_given,
        set_available,
        env: env.used,
        platform,
        opts,
    })
}

/// The line that says which kubeadm the pause/etcd/coredns tags are for, and how
/// to change it; `None` for base images.
pub fn kubeadm_line(set: &ImageSet, listed_from: Option<&Path>) -> Option<String> {
    if set.kind != PlatformKind::Kubernetes {
        return None;
    }
    if let Some(path) = listed_from {
        return Some(format!(
            "kubeadm images as listed in {} (the target host's `kubeadm config images list`)",
            path.display()
        ));
    }
    Some(format!(
        "pause/etcd/coredns are those of kubeadm {}: the kubeadm package on the target hosts \
         must be that version; another: --kubeadm-version vX.Y.Z (repeatable) or \
         --kubeadm-images FILE",
        set.kubeadm_versions.join(" + ")
    ))
}

/// Where [`trusted_keys`] reads: the --keyring files, then the trusted
/// directory (named in every refusal).
pub fn trust_sources(args: &TrustArgs) -> Vec<std::path::PathBuf> {
    let mut s = args.keyrings.clone();
    s.push(args.trusted_dir.clone());
    s
}

/// Trusted keys: --keyring files plus every key file in the trusted directory.
pub fn trusted_keys(args: &TrustArgs) -> Result<Vec<sequoia_openpgp::Cert>> {
    let mut certs =
        u7s_bundle::sign::keys::load_keyring(&args.keyrings).context("reading --keyring")?;
    certs.extend(
        u7s_bundle::sign::keys::keyring_from_dir(&args.trusted_dir)
            .with_context(|| format!("reading trusted keys in {}", args.trusted_dir.display()))?,
    );
    Ok(certs)
}

/// The command's JSON document (`--json`), held until the command has
/// finished: the edge (`finish`) prints exactly one document, and a command
/// that fails after reporting (preflight's failed checks, `node-trust
/// --check`) gets `ok`, `error` and `exit_code` added to its report instead
/// of a second document.
static DOCUMENT: std::sync::Mutex<Option<serde_json::Value>> = std::sync::Mutex::new(None);

/// Print `v` as the command's JSON document, when the command has finished.
pub fn print_json(v: &serde_json::Value) {
    *DOCUMENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(v.clone());
}

fn print_document(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

/// The edge: the command's result becomes its exit code, its error is
/// printed on stderr, and with `--json` one JSON document goes to stdout
/// whatever happened — `ok: true` added to the command's report, or on
/// failure `{ok: false, error, exit_code}` (merged into the report, if the
/// command made one).
pub fn finish(result: Result<()>, json: bool) -> i32 {
    let doc = DOCUMENT.lock().unwrap_or_else(|e| e.into_inner()).take();
    match result {
        Ok(()) => {
            if let Some(mut doc) = doc {
                if let Some(o) = doc.as_object_mut() {
                    o.entry("ok").or_insert(true.into());
                }
                print_document(&doc);
            }
            0
        }
        Err(err) => {
            let code = exit_code(&err);
            let msg = error_message(&err);
            eprintln!("u7s-bundle: error: {msg}");
            if json {
                print_failure(doc, &msg, code);
            }
            code
        }
    }
}

/// `{ok: false, error, exit_code}`, into `report` when it is an object.
fn print_failure(report: Option<serde_json::Value>, error: &str, code: i32) {
    let mut doc = report
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    doc["ok"] = false.into();
    doc["error"] = error.into();
    doc["exit_code"] = code.into();
    print_document(&doc);
}

/// A command line clap refused (exit 2): with `--json` among the arguments,
/// the failure is a JSON document too, then clap prints its usage message.
/// `--help` and `--version` are not failures and print as usual.
pub fn usage_error(err: clap::Error) -> ! {
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if err.use_stderr() && json {
        let text = err.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        print_failure(None, first.trim_start_matches("error: "), err.exit_code());
    }
    err.exit()
}

/// Human-readable byte count.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}
