//! Command-line definitions: one struct per subcommand. Parsing only; the
//! commands in `src/commands/` do the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "u7s-bundle",
    version,
    // An option given twice: the last one counts (scripts append overrides).
    args_override_self = true,
    about = "Carry a rootless Kubernetes (ALT podsec-k8s, u7s) image set to air-gapped hosts as one signed archive",
    long_about = "Carry a rootless Kubernetes (ALT podsec-k8s, u7s) image set to air-gapped hosts.\n\n\
On a connected host: `build` pulls the image set of a platform / kubernetes version / \
architecture and writes one compact, signed archive. On the isolated host: `load` \
verifies it, pushes the images to registry.local, signs them (OpenPGP simple signing) \
and writes policy.json, registries.d and the lookaside signatures that CRI-O checks.",
    after_help = "Exit codes: 0 success; 1 failure; 2 usage error; 3 verification failed \
(bad or untrusted signature, digest mismatch, malformed archive); 130/143 interrupted.\n\
Docs: man u7s-bundle, docs/ (English and Russian)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the platforms, their aliases and the kubernetes versions the profiles know.
    Profiles(ProfilesArgs),
    /// Show the image set of a platform / version / arch (offline by default).
    Plan(PlanArgs),
    /// Pull an image set and write one compact, signed bundle archive.
    Build(BuildArgs),
    /// Show what a bundle holds (reads only its bundle.json; use `verify` to check it).
    Inspect(InspectArgs),
    /// Check a bundle offline: signature, every digest and size, the layout.
    Verify(VerifyArgs),
    /// Verify a bundle, push it to registry.local, sign every image, write the trust files.
    Load(LoadArgs),
    /// List what a registry holds, as JSON: the base of a delta build.
    ///
    /// Every repo:tag with its manifest, every manifest, every config and
    /// layer with the repositories holding it. Carried back from the
    /// isolated host, it is what `build --base` leaves out.
    Inventory(InventoryArgs),
    /// Generate an OpenPGP signing key of the shape container tools accept.
    Keygen(KeygenArgs),
    /// Check this host is ready: every image in the registry, signed, trusted by the policy.
    Preflight(PreflightArgs),
    /// Bring up the first control-plane node (rootless kubeadm init) from the registry.
    Init(InitArgs),
    /// Join this node to the cluster (rootless kubeadm join) with images from the registry.
    Join(JoinArgs),
    /// Serve registry.local and sigstore.local on the registry host (docker-registry, nginx).
    Services(ServicesArgs),
    /// Make another node trust the registry (served keys checked by fingerprint).
    NodeTrust(NodeTrustArgs),
    /// Print the shell completion script for bash, zsh or fish.
    #[command(after_help = "EXAMPLES:\n  \
u7s-bundle completions bash > /etc/bash_completion.d/u7s-bundle\n  \
u7s-bundle completions zsh > /usr/share/zsh/site-functions/_u7s-bundle\n  \
u7s-bundle completions fish > /usr/share/fish/vendor_completions.d/u7s-bundle.fish")]
    Completions(CompletionsArgs),
    /// Write the manual pages (u7s-bundle.1, u7s-bundle-<command>.1) into a directory.
    #[command(hide = true)]
    Man(ManArgs),
}

impl Command {
    /// Whether the command was asked for JSON output: its failures are then
    /// a JSON document on stdout too.
    pub fn json(&self) -> bool {
        match self {
            Command::Profiles(a) => a.json,
            Command::Plan(a) => a.json,
            Command::Build(a) => a.json,
            Command::Inspect(a) => a.json,
            Command::Verify(a) => a.json,
            Command::Load(a) => a.json,
            Command::Inventory(a) => a.json,
            Command::Preflight(a) => a.json,
            Command::Services(a) => a.json,
            Command::NodeTrust(a) => a.json,
            Command::Keygen(_)
            | Command::Init(_)
            | Command::Join(_)
            | Command::Completions(_)
            | Command::Man(_) => false,
        }
    }
}

/// How to reach a registry.
#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Talk plain HTTP to the registry (loopback test registries, lab mirrors).
    #[arg(long)]
    pub plain_http: bool,
    /// Extra CA certificates (PEM) to trust for the registry's TLS.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// User name for the registry (the password is read from stdin with --password-stdin).
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the registry password from the first line of standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Attempts per request on transient failures (connection errors, 5xx, 429).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,
    /// Seconds of silence from the registry (no answer, no body bytes) before a
    /// request counts as stalled and is retried; a half-open connection would
    /// otherwise hang forever. Not a limit on a whole transfer: an upload
    /// stalls when the registry takes none of its bytes for this long. 0:
    /// wait forever.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 120,
        env = "U7S_READ_TIMEOUT"
    )]
    pub read_timeout: u64,
}

/// Which image set. Each option marked [env: U7S_…] takes podsec's variable
/// when not given; the command says so when it does.
#[derive(Args, Debug, Clone)]
pub struct SelectArgs {
    /// Platform or alias: c10f (k8s-c10f2, k8s-c10f1), p10 (k8s-p10), p11, sisyphus, alt.
    /// [env: U7S_PLATFORM]
    #[arg(long, value_name = "P")]
    pub platform: Option<String>,
    /// Kubernetes version (v1.26.9 or 1.26.9); default: `plan` the newest the
    /// profile knows, `build` the newest kube-apiserver tag on the source registry
    /// that the profile knows. For --platform alt (base images): the ALT branch
    /// (p10, p11, …). [env: U7S_KUBEVERSION]
    #[arg(long, value_name = "V")]
    pub kube_version: Option<String>,
    /// The kubeadm package version on the target hosts (repeatable: the bundle
    /// carries the union, for a fleet with mixed patches). pause and coredns are
    /// that kubeadm's, etcd its entry for the target minor; default: the
    /// kubernetes version.
    #[arg(long = "kubeadm-version", value_name = "V", action = clap::ArgAction::Append)]
    pub kubeadm_versions: Vec<String>,
    /// The output of `kubeadm config images list --kubernetes-version V
    /// --image-repository R` on a target host: the exact kubeadm images.
    #[arg(long, value_name = "FILE", conflicts_with = "kubeadm_versions")]
    pub kubeadm_images: Option<PathBuf>,
    /// Architecture: amd64, arm64, arm, ppc64le, 386 (arm/v7 for a variant); default: the host's.
    #[arg(long, value_name = "A")]
    pub arch: Option<String>,
    /// Flannel tag: which of podsec's kube-flannel manifests the cluster applies;
    /// the images carried are the ones that manifest deploys. [env: U7S_FLANNEL_TAG]
    #[arg(long, value_name = "TAG")]
    pub flannel_tag: Option<String>,
    /// Read the flannel images from this kube-flannel.yml (e.g. the target
    /// host's /etc/podsec/u7s/manifests/kube-flannel/<maj>/<min>/<patch>/kube-flannel.yml)
    /// instead of the profile's table of podsec's manifests.
    #[arg(long, value_name = "FILE")]
    pub flannel_manifest: Option<PathBuf>,
    /// A flannel-cni-plugin tag podsec lists besides the one the manifest
    /// deploys: carried too (the manifest's stays). [env: U7S_FLANNELCNIPLUGIN_TAG]
    #[arg(long, value_name = "TAG")]
    pub flannel_cni_plugin_tag: Option<String>,
    /// When the source lacks a tag, take the newest tag of the same minor there
    /// (sorted as versions), like podsec's U7S_SETAVAILABLEIMAGES=yes.
    /// [env: U7S_SETAVAILABLEIMAGES=yes]
    #[arg(long)]
    pub set_available_images: bool,
    /// Read profiles from this directory instead of the built-in ones.
    #[arg(long, value_name = "DIR", hide_short_help = true)]
    pub profiles_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(after_help = "EXAMPLES:\n  u7s-bundle profiles\n  u7s-bundle profiles --json")]
pub struct ProfilesArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Read profiles from this directory instead of the built-in ones.
    #[arg(long, value_name = "DIR", hide_short_help = true)]
    pub profiles_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(
    after_help = "EXAMPLES:\n  u7s-bundle plan --platform c10f --kube-version v1.26.9 --arch amd64\n  u7s-bundle plan --platform p11 --resolve --json"
)]
pub struct PlanArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Source registry [default: registry.altlinux.org] [env: U7S_REGISTRY;
    /// set but empty is refused: podsec's upstream registry.k8s.io images are
    /// not ALT's].
    #[arg(long, value_name = "HOST[:PORT]")]
    pub source: Option<String>,
    /// Ask the source registry for each image's digest and size.
    #[arg(long)]
    pub resolve: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionArg {
    Xz,
    Zstd,
}

/// How `load` pushes layers.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCompressionArg {
    /// As they are in the bundle (uncompressed): nothing to recompress.
    None,
    /// gzip, level 6 (what every registry client reads).
    Gzip,
    /// zstd, level 3 (OCI layer type `tar+zstd`; CRI-O ≥ 1.22 reads it).
    Zstd,
}

#[derive(Args, Debug)]
#[command(
    after_help = "EXAMPLES:\n  u7s-bundle keygen --uid 'Image Builder <builder@example.org>' --output keys/builder\n  u7s-bundle build --platform c10f --kube-version v1.26.9 --arch amd64 --sign-key keys/builder.key\n  u7s-bundle build --platform c10f --compression zstd --volume-size fat32 --sign-key keys/builder.key"
)]
pub struct BuildArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Source registry [default: registry.altlinux.org] [env: U7S_REGISTRY;
    /// set but empty is refused: podsec's upstream registry.k8s.io images are
    /// not ALT's].
    #[arg(long, value_name = "HOST[:PORT]")]
    pub source: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Outer compression: xz (smallest) or zstd (much faster to build and load).
    #[arg(long, value_enum, default_value_t = CompressionArg::Xz)]
    pub compression: CompressionArg,
    /// Compression level (xz 0-9, default 9; zstd 1-22, default 12).
    #[arg(long, value_name = "N")]
    pub level: Option<u32>,
    /// Secret key to sign bundle.json with (as `keygen` or `gpg --export-secret-keys` writes).
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// File holding the passphrase of --sign-key.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Directory for the archive.
    #[arg(long, value_name = "DIR", default_value = "bundles")]
    pub output: PathBuf,
    /// Add an image: REF (named as its registry-relative path) or REF=NAME
    /// (NAME: registry-relative repo:tag). REF@sha256:… keeps its digests.
    #[arg(long = "extra-image", value_name = "REF[=NAME]")]
    pub extra_images: Vec<String>,
    /// Store the original blobs byte for byte (for images pinned by digest).
    #[arg(long)]
    pub preserve_digests: bool,
    /// Largest layer accepted, decompressed (bytes, or with a K, M, G
    /// suffix): a layer that inflates beyond it is refused before it fills
    /// the cache.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size, hide_short_help = true)]
    pub max_layer_size: u64,
    /// Parallel downloads, and compressor threads. With xz each thread
    /// compresses its own share of the archive as a separate xz stream: more
    /// threads build faster, a little larger (`--jobs 1` gives the smallest
    /// archive); each needs ~674 MiB at level 9, and no more start than the
    /// available memory holds.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Build cache (downloaded layers, verified before reuse).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Split the archive into volumes of at most SIZE (`4G`, `700M`, bytes,
    /// or `fat32` = 4 GiB − 1): NAME.u7s.tar.xz.001, .002, … and the signed
    /// volume index NAME.u7s.volumes.json, each volume checkable on its own.
    #[arg(long, value_name = "SIZE")]
    pub volume_size: Option<String>,
    /// Build a delta: leave out every layer this base holds — an inventory
    /// of the target registry (`u7s-bundle inventory`), a previous bundle, or
    /// its bundle.json. `load` then checks the registry has them.
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,
    /// Replace an existing archive (or volumes) of the same name.
    #[arg(long)]
    pub force: bool,
    /// Let the bundle expire this long after it was built (`90d`, `12w`,
    /// `36h`): bundle.json then says until when (signed), and `load` and
    /// `verify` refuse it after that.
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "EXAMPLES:\n  u7s-bundle inventory --output registry-inventory.json")]
pub struct InventoryArgs {
    /// The registry to list. registry.local is spoken to over plain HTTP.
    #[arg(long, value_name = "HOST[:PORT]", default_value = "registry.local")]
    pub registry: String,
    #[command(flatten)]
    pub registry_opts: RegistryArgs,
    /// Write the inventory into FILE (default: standard output).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// JSON output (the only format; the default).
    #[arg(long, default_value_t = true)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "EXAMPLES:\n  u7s-bundle inspect bundles/c10f-v1.26.9-amd64.u7s.tar.xz")]
pub struct InspectArgs {
    /// The bundle (.u7s.tar.xz / .u7s.tar.zst), or the volume index
    /// (.u7s.volumes.json) or first volume (.001) of a split one.
    pub archive: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TrustArgs {
    /// Public keys trusted to sign bundles (repeatable). Every *.pgp, *.asc and
    /// *.gpg in --trusted-dir (default /etc/u7s-bundle/trusted.d/) is trusted too.
    #[arg(long = "keyring", value_name = "FILE")]
    pub keyrings: Vec<PathBuf>,
    /// Accept a bundle without a signature (with `load`, also a legacy podsec
    /// archive, which is never signed).
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Directory of trusted keys (*.pgp, *.asc, *.gpg; binary or armored).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/u7s-bundle/trusted.d",
        hide_short_help = true
    )]
    pub trusted_dir: PathBuf,
}

#[derive(Args, Debug)]
#[command(
    after_help = "EXAMPLES:\n  u7s-bundle verify c10f-v1.26.9-amd64.u7s.tar.xz --keyring builder.pgp\n  u7s-bundle verify /media/usb/c10f-v1.26.9-amd64.u7s.tar.xz.002 --volumes c10f-v1.26.9-amd64.u7s.volumes.json"
)]
pub struct VerifyArgs {
    /// The bundle (.u7s.tar.xz / .u7s.tar.zst), or the volume index
    /// (.u7s.volumes.json) or first volume (.001) of a split one; with
    /// --volumes, one volume.
    pub archive: PathBuf,
    /// Check the one volume given against this volume index (signed), and
    /// list the volumes still missing: a volume can be checked alone,
    /// straight from its medium.
    #[arg(long, value_name = "INDEX")]
    pub volumes: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Print nothing; the exit code says it (0 verified, 3 not).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "EXAMPLES:\n  u7s-bundle keygen --uid 'Image Maker <imagemaker@example.org>' --output /root/keys/imagemaker"
)]
pub struct KeygenArgs {
    /// User ID, e.g. 'Image Builder <builder@example.org>'.
    #[arg(long)]
    pub uid: String,
    /// Writes PREFIX.key (secret, mode 0600) and PREFIX.pgp (public).
    #[arg(long, value_name = "PREFIX")]
    pub output: PathBuf,
    /// Protect the secret key with the passphrase in this file.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(
    after_help = "EXAMPLES:\n  u7s-bundle load c10f-v1.26.9-amd64.u7s.tar.xz --sign-by imagemaker@example.org\n  u7s-bundle load c10f-v1.26.9-amd64.u7s.tar.xz --sign-key /root/keys/imagemaker.key --dry-run --json"
)]
pub struct LoadArgs {
    /// The bundle (.u7s.tar.xz / .u7s.tar.zst), the volume index
    /// (.u7s.volumes.json) or first volume (.001) of a split one, or a legacy
    /// podsec archive (<arch>.tar.xz).
    pub archive: PathBuf,
    /// Volumes come one at a time on the same drive: ask on the terminal for
    /// each next volume ("insert volume 2 of 3, then press Enter") and check
    /// it whole before reading on.
    #[arg(long)]
    pub wait_for_volumes: bool,
    /// Target registry. registry.local is spoken to over plain HTTP (as podsec
    /// sets it up); other registries over HTTPS unless --plain-http.
    #[arg(long, value_name = "HOST[:PORT]", default_value = "registry.local")]
    pub registry: String,
    #[command(flatten)]
    pub registry_opts: RegistryArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The architecture to load (default: the host's): the directory of a
    /// legacy podsec archive, and the architecture a u7s bundle must be for —
    /// a bundle for another one is refused unless this names it, as its
    /// images would replace the host's under the same tags.
    #[arg(long, value_name = "A")]
    pub arch: Option<String>,
    /// Secret key file to sign the images with (as keygen or `gpg --export-secret-keys` writes).
    #[arg(long, value_name = "FILE", conflicts_with = "sign_by")]
    pub sign_key: Option<PathBuf>,
    /// Passphrase of --sign-key (or of the GnuPG key with --sign-by; without
    /// it gpg-agent's pinentry asks on the terminal, when stdin is one).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Sign with an existing GnuPG key of the current user (fingerprint or email), like podsec's imagemaker.
    #[arg(long, value_name = "ID")]
    pub sign_by: Option<String>,
    /// Lookaside signature store (written).
    #[arg(long, value_name = "DIR", default_value = "/var/sigstore/sigstore")]
    pub sigstore_dir: PathBuf,
    /// Where the public key and the policy copy for other nodes go.
    #[arg(long, value_name = "DIR", default_value = "/var/sigstore/keys")]
    pub keys_dir: PathBuf,
    /// containers-policy.json to merge the signedBy rule into.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/containers/policy.json"
    )]
    pub policy: PathBuf,
    /// containers-registries.d directory.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/containers/registries.d"
    )]
    pub registries_d: PathBuf,
    /// containers-registries.conf drop-in directory: a plain-HTTP registry is
    /// marked `insecure = true` there (u7s-bundle.conf), unless registries.conf or
    /// another drop-in already says so; without it podman and CRI-O insist on HTTPS.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/containers/registries.conf.d"
    )]
    pub registries_conf_d: PathBuf,
    /// Where readers (CRI-O on every node) fetch signatures from.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://sigstore.local:81/sigstore/"
    )]
    pub lookaside_url: String,
    /// Only push and sign; leave policy.json, registries.d and the keys alone.
    #[arg(long)]
    pub no_trust_config: bool,
    /// Do not push the legacy name aliases (k8s-c10f2/… for c10f).
    #[arg(long)]
    pub no_legacy_names: bool,
    /// Push layers compressed. By default they go as the bundle holds them,
    /// uncompressed: fastest, and all CRI-O needs on a local registry.
    /// Compressing changes the manifest digests (the configs and image IDs
    /// stay); the signatures are made for the manifests as pushed.
    #[arg(long, value_enum, value_name = "HOW", default_value = "none")]
    pub layer_compression: LayerCompressionArg,
    /// Verify everything and report what would be pushed and written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Re-point tags that a newer bundle set (by kubernetes version or
    /// creation time, as recorded in the state directory's tags.json) to
    /// this older bundle's images; each one is named. Without it such a load
    /// is refused before any tag moves.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Where to record what was loaded (last-bundle.json: the kubernetes
    /// version and platform `preflight`, `init` and `join` default to).
    #[arg(
        long,
        value_name = "DIR",
        env = "U7S_STATE_DIR",
        default_value = "/var/lib/u7s-bundle",
        hide_short_help = true
    )]
    pub state_dir: PathBuf,
    /// Lock file that keeps two loads on this host from running at once (the
    /// second waits).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/run/u7s-bundle.lock",
        hide_short_help = true
    )]
    pub lock_file: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The shells `completions` writes scripts for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

impl From<CompletionShell> for clap_complete::Shell {
    fn from(s: CompletionShell) -> Self {
        match s {
            CompletionShell::Bash => Self::Bash,
            CompletionShell::Zsh => Self::Zsh,
            CompletionShell::Fish => Self::Fish,
        }
    }
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing), e.g. /usr/local/share/man/man1.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
}

/// Which image set a cluster node runs, where it comes from and how it is
/// trusted (preflight, init, join).
#[derive(Args, Debug, Clone)]
pub struct ClusterSelectArgs {
    /// The registry the cluster pulls from (the wrapper's U7S_REGISTRY).
    /// registry.local is spoken to over plain HTTP, as podsec sets it up.
    #[arg(long, value_name = "HOST[:PORT]", default_value = "registry.local")]
    pub registry: String,
    /// Talk plain HTTP to a registry other than registry.local.
    #[arg(long)]
    pub plain_http: bool,
    /// Platform or alias (c10f, k8s-c10f2, p10, p11, sisyphus); default: from
    /// /etc/os-release as podsec derives it (or U7S_PLATFORM), else the last bundle loaded.
    #[arg(long, value_name = "P")]
    pub platform: Option<String>,
    /// Kubernetes version (v1.26.9); default: that of the last bundle loaded on
    /// this host (<state-dir>/last-bundle.json). [env: U7S_KUBEVERSION]
    #[arg(long, value_name = "V")]
    pub kube_version: Option<String>,
    /// Architecture (amd64, arm64, arm, ppc64le, 386); default: the host's.
    #[arg(long, value_name = "A")]
    pub arch: Option<String>,
    /// Flannel tag; default: the last bundle's, else the profile's.
    /// [env: U7S_FLANNEL_TAG]
    #[arg(long, value_name = "TAG")]
    pub flannel_tag: Option<String>,
    /// The kubeadm that will run (podsec's wrapper runs /usr/bin/kubeadm):
    /// preflight asks it `config images list` and checks the images it names;
    /// without it, the profile's set is checked.
    #[arg(long, value_name = "PATH", default_value = "/usr/bin/kubeadm")]
    pub kubeadm_bin: PathBuf,
    /// podsec's kube-flannel manifests on this host (<DIR>/<maj>/<min>/<patch>/kube-flannel.yml):
    /// the flannel images checked are the ones the manifest for the flannel tag deploys.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/podsec/u7s/manifests/kube-flannel",
        hide_short_help = true
    )]
    pub flannel_manifests: PathBuf,
    /// Take the image set from this bundle's bundle.json instead of the profiles
    /// (only bundle.json is read; the registry's signatures are what is trusted).
    #[arg(long, value_name = "ARCHIVE", conflicts_with_all = ["platform", "kube_version", "flannel_tag"])]
    pub bundle: Option<PathBuf>,
    /// The containers policy CRI-O applies.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/containers/policy.json"
    )]
    pub policy: PathBuf,
    /// The containers registries.d directory (where signatures are read from).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/containers/registries.d"
    )]
    pub registries_d: PathBuf,
    /// Skip the kernel (>= 5.15) and u7s-admin user checks (test machines);
    /// the report says they were skipped.
    #[arg(long)]
    pub skip_host_checks: bool,
    /// podsec's rootless kubeadm wrapper.
    #[arg(
        long,
        value_name = "PATH",
        env = "U7S_KUBEADM",
        default_value = "/usr/libexec/podsec/u7s/bin/kubeadm"
    )]
    pub kubeadm: PathBuf,
    /// u7s-bundle's state on this host: last-bundle.json (read), and the join
    /// commands init saves (join-worker.sh, join-control-plane.sh, mode 0600).
    #[arg(
        long,
        value_name = "DIR",
        env = "U7S_STATE_DIR",
        default_value = "/var/lib/u7s-bundle"
    )]
    pub state_dir: PathBuf,
    #[arg(long, value_name = "DIR", hide = true)]
    pub profiles_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(
    long_about = "Check that this host can bring the rootless cluster up from the registry, \
before kubeadm finds out ten minutes in.\n\n\
Checks: the registry answers /v2/; registry.local and sigstore.local resolve (when those \
names are used); every image of the set is in the registry for this architecture under \
the name the wrapper asks for (<registry>/<platform>/<image>:<tag>); every one passes \
policy.json exactly as CRI-O checks it (signedBy GPGKeys: the lookaside named by \
registries.d, the signature verified with the policy's keys, the identity matched; \
reject; insecureAcceptAnything; anything else refused); kernel >= 5.15, the u7s-admin \
user, the kubeadm wrapper present and executable.",
    after_help = "Exit codes: 0 every check passed; 1 a check failed (each failure says what to do) or an error."
)]
pub struct PreflightArgs {
    #[command(flatten)]
    pub select: ClusterSelectArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of the wrapper run shared by init and join.
#[derive(Args, Debug, Clone)]
pub struct KubeadmRunArgs {
    /// Address the API server advertises on this node.
    #[arg(long, value_name = "IP")]
    pub apiserver_advertise_address: Option<std::net::IpAddr>,
    /// Shared endpoint of the control plane (init; for highly available clusters).
    #[arg(long, value_name = "HOST:PORT")]
    pub control_plane_endpoint: Option<String>,
    /// Pod network (init) [default: 10.244.0.0/16, flannel's].
    #[arg(long, value_name = "CIDR")]
    pub pod_network_cidr: Option<String>,
    /// Service network (init) [default: 10.96.0.0/12].
    #[arg(long, value_name = "CIDR")]
    pub service_cidr: Option<String>,
    /// kubeadm log verbosity, passed through.
    #[arg(short = 'v', value_name = "N")]
    pub verbosity: Option<u8>,
    /// Run preflight, then print the wrapper command line and environment instead of running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the kubeadm configuration this run amounts to (YAML; v1beta3 before
    /// kubernetes 1.31, v1beta4 from 1.31) and run nothing. Tokens and
    /// certificate keys are printed as <redacted>.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Args, Debug)]
#[command(
    long_about = "Bring up the first control-plane node: run preflight, then podsec's rootless \
kubeadm wrapper (`kubeadm init`) with U7S_REGISTRY, U7S_PLATFORM, U7S_KUBEVERSION, \
U7S_FLANNEL_TAG and U7S_FLANNELCNIPLUGIN_TAG set from the image set, so that every \
image comes from the registry. The wrapper's output is streamed and its exit code \
passed through. The `kubeadm join` commands it prints are saved to \
<state-dir>/join-worker.sh and join-control-plane.sh (mode 0600: they hold secrets).",
    after_help = "Exit codes: 0 success; 1 preflight failed (the wrapper was not run) or an error; \
otherwise the wrapper's own exit code."
)]
pub struct InitArgs {
    #[command(flatten)]
    pub select: ClusterSelectArgs,
    #[command(flatten)]
    pub run: KubeadmRunArgs,
}

#[derive(Args, Debug)]
#[command(
    long_about = "Join this node to the cluster: check that the node trusts the registry (a \
signedBy rule for it in policy.json, with the keys of --fingerprint, and a lookaside in \
registries.d; --setup-trust runs `node-trust` first), run preflight (every image's \
signature verified through that lookaside), then podsec's rootless kubeadm wrapper \
(`kubeadm join`) with the U7S_* environment set from the image set. Give the arguments \
`init` printed (saved in join-worker.sh / join-control-plane.sh on the first master).",
    after_help = "Exit codes: 0 success; 1 the node does not trust the registry or preflight failed \
(the wrapper was not run), or an error; otherwise the wrapper's own exit code."
)]
pub struct JoinArgs {
    /// The API server endpoint, HOST:PORT (e.g. 10.0.0.10:6443).
    #[arg(value_name = "ENDPOINT")]
    pub endpoint: String,
    /// Bootstrap token (abcdef.0123456789abcdef). Visible to every local
    /// user in the process list: prefer --token-file.
    #[arg(
        long,
        value_name = "T",
        required_unless_present = "token_file",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// Read the bootstrap token from FILE (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Public key pin of the cluster CA (sha256:<hex>).
    #[arg(long, value_name = "H")]
    pub discovery_token_ca_cert_hash: String,
    /// Join as a control-plane node (needs --certificate-key-file or
    /// --certificate-key).
    #[arg(long, requires = "certificate_key_source")]
    pub control_plane: bool,
    /// Key to decrypt the control-plane certificates uploaded by init.
    /// Visible in the process list: prefer --certificate-key-file.
    #[arg(
        long,
        value_name = "K",
        requires = "control_plane",
        group = "certificate_key_source"
    )]
    pub certificate_key: Option<String>,
    /// Read the certificate key from FILE (`-`: standard input).
    #[arg(
        long,
        value_name = "FILE",
        requires = "control_plane",
        group = "certificate_key_source"
    )]
    pub certificate_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub select: ClusterSelectArgs,
    #[command(flatten)]
    pub run: KubeadmRunArgs,
    #[command(flatten)]
    pub trust: JoinTrustArgs,
}

#[derive(Args, Debug)]
#[command(
    long_about = "Set up the registry host's services, as podsec-create-services does, with \
configuration files and drop-ins only (the packages' own files are not edited): \
docker-registry serving registry.local on --address:--registry-port from --registry-storage \
(its own configuration file and a systemd drop-in that starts the unit with it); nginx serving \
--sigstore-dir as sigstore.local on --address:--sigstore-port with a JSON autoindex (the \
other nodes list keys/ through it); and /etc/hosts binding registry.local sigstore.local to \
--address. Every write is atomic and keeps a dated backup; a re-run changes nothing. Then \
the units are enabled and started through systemctl (restarted when their configuration \
changed).",
    after_help = "Exit codes: 0 success; 1 an error (nothing half-written: each file is replaced whole)."
)]
pub struct ServicesArgs {
    /// This host's address: both services listen on it and /etc/hosts binds the names to it.
    #[arg(long, value_name = "IP")]
    pub address: std::net::IpAddr,
    /// docker-registry's port (registry.local; podsec: 80).
    #[arg(long, value_name = "PORT", default_value_t = 80)]
    pub registry_port: u16,
    /// nginx's port (sigstore.local; podsec: 81).
    #[arg(long, value_name = "PORT", default_value_t = 81)]
    pub sigstore_port: u16,
    /// The directory nginx serves (keys/ and sigstore/, as `load` writes them).
    #[arg(long, value_name = "DIR", default_value = "/var/sigstore")]
    pub sigstore_dir: PathBuf,
    /// docker-registry's storage (podsec's registry volume, so existing images stay).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/containers/storage/volumes/registry/_data"
    )]
    pub registry_storage: PathBuf,
    /// The docker-registry program the systemd drop-in starts.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/usr/bin/docker-registry",
        hide_short_help = true
    )]
    pub registry_bin: PathBuf,
    /// Write every file under DIR instead of / (tests, preparing an image).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Show what would change; write and start nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the files, but leave enabling and starting the units to the admin.
    #[arg(long)]
    pub no_start: bool,
    /// The systemctl program.
    #[arg(
        long,
        value_name = "PATH",
        env = "U7S_SYSTEMCTL",
        default_value = "systemctl",
        hide_short_help = true
    )]
    pub systemctl: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(
    long_about = "Make this node trust the cluster's registry, as podsec-create-policy does on \
the other nodes, but without trusting the network: the keys served at \
<sigstore-url>/keys/ (listed through nginx's JSON autoindex) are untrusted input, and a key \
is installed only when its fingerprint is one given with --fingerprint (printed by `load`, \
written into the join commands by `init`). A fingerprint that is not served is refused and \
no file changes. Then: the signedBy rule for --registry is merged into this node's own \
policy.json (the served policy is never copied), registries.d reads signatures from \
<sigstore-url>/sigstore/, a registries.conf.d drop-in lets the tools speak plain HTTP to \
--registry, and with --address /etc/hosts binds registry.local sigstore.local. Every write \
is atomic with a dated backup; a re-run changes nothing.",
    after_help = "Exit codes: 0 success (with --check: the node trusts the registry); 1 an error, \
a refused key, or (with --check) a file that would change."
)]
pub struct NodeTrustArgs {
    /// Where the registry host serves keys/ and sigstore/.
    #[arg(long, value_name = "URL", default_value = "http://sigstore.local:81")]
    pub sigstore_url: String,
    /// Fingerprint of the image-signing key to trust (repeatable; printed by `load`).
    #[arg(long = "fingerprint", value_name = "FPR", required = true, action = clap::ArgAction::Append)]
    pub fingerprints: Vec<String>,
    /// The registry whose images must carry these signatures.
    #[arg(long, value_name = "HOST[:PORT]", default_value = "registry.local")]
    pub registry: String,
    /// The registry host's address: binds registry.local sigstore.local in --hosts-file.
    #[arg(long, value_name = "IP")]
    pub address: Option<std::net::IpAddr>,
    /// containers-policy.json to merge the signedBy rule into.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/containers/policy.json"
    )]
    pub policy: PathBuf,
    /// containers-registries.d directory.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/containers/registries.d"
    )]
    pub registries_d: PathBuf,
    /// containers-registries.conf drop-in directory.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/containers/registries.conf.d"
    )]
    pub registries_conf_d: PathBuf,
    /// Where the trusted public keys are installed.
    #[arg(long, value_name = "DIR", default_value = "/var/sigstore/keys")]
    pub keys_dir: PathBuf,
    /// The hosts file (with --address).
    #[arg(long, value_name = "FILE", default_value = "/etc/hosts")]
    pub hosts_file: PathBuf,
    /// Verify that the node already trusts the served key; write nothing.
    #[arg(long)]
    pub check: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The node's trust in the registry, checked (and with --setup-trust set up)
/// before `join` calls kubeadm.
#[derive(Args, Debug, Clone)]
pub struct JoinTrustArgs {
    /// Run `node-trust` first (needs --fingerprint): install the served key
    /// whose fingerprint is given, merge the policy, registries.d, the
    /// registries.conf.d drop-in, and /etc/hosts with --registry-address.
    #[arg(long, requires = "fingerprints")]
    pub setup_trust: bool,
    /// Fingerprint of the image-signing key the node must trust (repeatable;
    /// `init` writes it into the saved join commands).
    #[arg(long = "fingerprint", value_name = "FPR", action = clap::ArgAction::Append)]
    pub fingerprints: Vec<String>,
    /// Where the registry host serves keys/ and sigstore/ (--setup-trust).
    #[arg(long, value_name = "URL", default_value = "http://sigstore.local:81")]
    pub sigstore_url: String,
    /// The registry host's address, bound to registry.local sigstore.local in
    /// --hosts-file (--setup-trust).
    #[arg(long, value_name = "IP")]
    pub registry_address: Option<std::net::IpAddr>,
    /// containers-registries.conf drop-in directory (--setup-trust).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/containers/registries.conf.d",
        hide_short_help = true
    )]
    pub registries_conf_d: PathBuf,
    /// Where the trusted public keys are installed (--setup-trust).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/sigstore/keys",
        hide_short_help = true
    )]
    pub keys_dir: PathBuf,
    /// The hosts file (--setup-trust with --registry-address).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/hosts",
        hide_short_help = true
    )]
    pub hosts_file: PathBuf,
}

impl From<CompressionArg> for u7s_bundle::bundle::Codec {
    fn from(a: CompressionArg) -> Self {
        match a {
            CompressionArg::Xz => Self::Xz,
            CompressionArg::Zstd => Self::Zstd,
        }
    }
}

impl From<LayerCompressionArg> for u7s_bundle::push::LayerCompression {
    fn from(a: LayerCompressionArg) -> Self {
        match a {
            LayerCompressionArg::None => Self::None,
            LayerCompressionArg::Gzip => Self::Gzip,
            LayerCompressionArg::Zstd => Self::Zstd,
        }
    }
}

/// A size in bytes, or with a K, M or G suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 4G, 512M, 1048576)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}
