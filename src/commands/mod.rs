//! One module per subcommand: orchestration only. Shared helpers for options
//! that several commands take live here.

mod build;
mod cluster;
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
use u7s_bundle::profile::{ImageSet, Profiles};
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

/// `err` and its causes joined by `: `, leaving out a cause whose text the
/// message already ends with (errors that print their source, like
/// `"{path}: {source}"`, would otherwise say it twice).
pub fn error_message(err: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if msg.ends_with(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
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
pub fn image_set(profiles: &Profiles, select: &SelectArgs) -> Result<ImageSet> {
    Ok(u7s_bundle::plan::image_set(
        profiles,
        &select.platform,
        select.kube_version.as_deref(),
        select.flannel_tag.as_deref(),
        select.set_available_images,
    )?)
}

/// Trusted keys: --keyring files plus every *.pgp in the trusted directory.
pub fn trusted_keys(args: &TrustArgs) -> Result<Vec<sequoia_openpgp::Cert>> {
    let mut certs =
        u7s_bundle::sign::keys::load_keyring(&args.keyrings).context("reading --keyring")?;
    certs.extend(
        u7s_bundle::sign::keys::keyring_from_dir(&args.trusted_dir)
            .with_context(|| format!("reading trusted keys in {}", args.trusted_dir.display()))?,
    );
    Ok(certs)
}

pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
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
