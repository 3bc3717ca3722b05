//! `u7s-bundle load`: verify → push → sign → tag → trust files → state, on the
//! isolated host.
//!
//! Nothing is written anywhere before the bundle signature checked out; no tag is
//! set before the whole archive verified and every signature is in place; the
//! trust files are written last, each atomically with a backup. `run` is that
//! order, one named stage a line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

use super::{print_json, registry_client, trusted_keys, Exit};
use crate::cli::LoadArgs;
use u7s_bundle::bundle::verify::check_layout;
use u7s_bundle::bundle::{reader, volumes};
use u7s_bundle::digest::Digest;
use u7s_bundle::load::{PushSink, StreamOptions, Streamed};
use u7s_bundle::lock::HostLock;
use u7s_bundle::profile::Profiles;
use u7s_bundle::progress::Progress;
use u7s_bundle::push::{LayerCompression, PushName, PushStats, Pusher};
use u7s_bundle::registry::Client;
use u7s_bundle::sign::{self, ImageSigner};
use u7s_bundle::trust;
use u7s_bundle::trust::install as trust_install;
use u7s_bundle::{freshness, interrupt};

pub fn run(args: LoadArgs) -> Result<()> {
    interrupt::install();
    let cfg = LoadConfig::from_args(args)?;
    let _lock = take_lock(&cfg)?;
    let (streamed, complete) = read_and_push(&cfg)?;
    let Streamed {
        mut pusher,
        signer,
        guard,
        ..
    } = streamed;
    let trust_plan = plan_trust_files(&cfg)?;
    pusher.push_manifests().context("pushing manifests")?;
    let digests = manifest_digests(&pusher);
    let signatures = sign_all(&cfg, &digests, pusher.names())?;
    tag_all(&mut pusher)?;
    let repointed = record_tags(&cfg, guard, &pusher, &digests)?;
    let files = install_trust_files(&cfg, trust_plan)?;
    record_state(&cfg, pusher.manifest())?;
    report(&Loaded {
        cfg: &cfg,
        bundle_signer: signer,
        digests,
        push: pusher.stats.clone(),
        pusher: &pusher,
        signatures,
        files,
        repointed,
        complete,
    });
    Ok(())
}

/// Everything decided from the arguments, once, before any work: the
/// signer (proven able to sign), the registry client (answering), the keys
/// that may vouch for the bundle.
struct LoadConfig {
    args: LoadArgs,
    progress: Progress,
    keyring: Vec<sequoia_openpgp::Cert>,
    signer: Box<dyn ImageSigner>,
    client: Client,
    plain_http: bool,
    profiles: Profiles,
    /// The signer's public key, as the trust files install it.
    public_key: Vec<u8>,
    /// Where a replaced key file is saved (not in the served keys directory).
    backups: PathBuf,
}

impl LoadConfig {
    fn from_args(args: LoadArgs) -> Result<LoadConfig> {
        let progress = Progress::auto(args.quiet || args.json);
        check_writable(&args)?;
        let keyring = trusted_keys(&args.trust)?;
        // The signer first: a wrong passphrase or a missing key fails before any work.
        let signer = sign::open_signer(
            args.sign_key.as_deref(),
            args.sign_by.as_deref(),
            args.passphrase_file.as_deref(),
        )?;
        // Proven before the first byte is pushed, not after the whole push.
        sign::probe(signer.as_ref()).with_context(|| probe_failed(&args, signer.fingerprint()))?;
        let plain_http = args.registry_opts.plain_http
            || u7s_bundle::reference::is_registry_local(&args.registry);
        u7s_bundle::registry::check_resolves(&args.registry)?;
        let client = registry_client(&args.registry, plain_http, &args.registry_opts)?;
        if !args.dry_run {
            client.ping().with_context(|| {
                format!(
                    "the registry {} does not answer; is it running?",
                    args.registry
                )
            })?;
        }
        Ok(LoadConfig {
            public_key: signer.public_key_bytes()?,
            backups: args.state_dir.join("backups"),
            progress,
            keyring,
            signer,
            client,
            plain_http,
            profiles: super::load_profiles(None)?,
            args,
        })
    }

    /// The registry as its images are named (`registry.local`, `host:port`).
    fn registry(&self) -> String {
        self.client.host().to_string()
    }
}

/// One load at a time (a dry run writes nothing, so it needs no lock).
fn take_lock(cfg: &LoadConfig) -> Result<Option<HostLock>> {
    let path = &cfg.args.lock_file;
    if cfg.args.dry_run {
        return Ok(None);
    }
    let lock = HostLock::acquire(path, |pid| {
        let pid = pid.map_or_else(|| "unknown pid".into(), |p| format!("pid {p}"));
        cfg.progress.message(&format!(
            "waiting for another load to finish ({pid}, lock {})",
            path.display()
        ))
    })
    .with_context(|| format!("taking the lock {}", path.display()))?;
    Ok(Some(lock))
}

/// Stream the archive: header → signature check → blobs pushed as they come;
/// then index.json against bundle.json. Returns what was read and whether the
/// whole archive was (a reload stops once the registry has every layer).
fn read_and_push(cfg: &LoadConfig) -> Result<(Streamed<'_>, bool)> {
    let args = &cfg.args;
    let legacy = is_podsec_archive(args)?;
    let sources = super::trust_sources(&args.trust);
    let trust = volumes::Trust {
        keyring: &cfg.keyring,
        sources: &sources,
        allow_unsigned: args.trust.allow_unsigned,
    };
    let mut input = match legacy {
        true => None,
        false => {
            let prompt = args.wait_for_volumes.then(volumes::terminal_prompt);
            let input = volumes::Input::open(&args.archive, prompt, Some(&trust))
                .with_context(|| format!("opening {}", args.archive.display()))?;
            Some(input)
        }
    };
    let options = StreamOptions {
        dry_run: args.dry_run,
        legacy_names: !args.no_legacy_names,
        layer_compression: LayerCompression::from(args.layer_compression),
        arch: args.arch.as_deref(),
        volume_json: input.as_ref().and_then(volumes::Input::bundle_json_digest),
        state_dir: &args.state_dir,
        allow_downgrade: args.allow_downgrade,
    };
    let task = cfg.progress.bytes_task("Verifying and pushing", None);
    let mut sink = PushSink::new(&cfg.client, &trust, &cfg.profiles, options, &task);
    let result = match input.as_mut() {
        None => {
            let (arch, _) = super::select_arch(args.arch.as_deref())?;
            reader::read_legacy(&args.archive, &arch, &mut sink)
        }
        Some(input) => reader::read_bundle(input, &mut sink),
    };
    let streamed = sink.finish();
    drop(task);
    let complete = refused(cfg, result, input.as_mut())?.complete;
    let streamed = streamed.expect("the header was read");
    if !legacy {
        // (A podsec archive's images were derived from its index.json itself.)
        let index = streamed.index_json.as_deref().unwrap_or_default();
        check_layout(streamed.pusher.manifest(), index)
            .map_err(|why| Exit::Verification(format!("{}: {why}", args.archive.display())))?;
    }
    Ok((streamed, complete))
}

/// A podsec archive (no bundle.json) is not signed: loaded only with
/// --allow-unsigned.
fn is_podsec_archive(args: &LoadArgs) -> Result<bool> {
    if volumes::is_volume_path(&args.archive) {
        return Ok(false);
    }
    let legacy = reader::is_legacy(&args.archive).map_err(|e| {
        anyhow::Error::new(e).context(format!("reading {}", args.archive.display()))
    })?;
    if legacy && !args.trust.allow_unsigned {
        return Err(Exit::Verification(format!(
            "{} has no bundle.json: it looks like a podsec archive, which is not signed; \
             give --allow-unsigned (and --arch if it is not for this host's architecture) to load it anyway",
            args.archive.display()
        ))
        .into());
    }
    Ok(legacy)
}

/// Why the read stopped, in the words the admin needs: a bad volume is the
/// cause, not the corrupt stream it made; the registry failing is not the
/// archive's fault, and a re-run is safe (nothing is tagged before every blob
/// is in).
fn refused<T>(
    cfg: &LoadConfig,
    result: Result<T, u7s_bundle::load::StreamError>,
    input: Option<&mut volumes::Input>,
) -> Result<T> {
    let archive = cfg.args.archive.display();
    let e = match result {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    if let Some(v) = input.and_then(volumes::Input::diagnose) {
        return Err(anyhow::Error::new(v).context(format!("{archive} was refused")));
    }
    let what = if e.is_registry() {
        format!(
            "loading {archive} into {} stopped, nothing was tagged; when the registry \
             answers again, run the same command: blobs already uploaded are not sent again",
            cfg.args.registry
        )
    } else {
        format!("{archive} was refused")
    };
    Err(anyhow::Error::new(e).context(what))
}

/// Every trust-file merge is computed and checked before the first
/// signature or tag: an unmergeable policy.json must not fail the load
/// after the tags moved.
fn plan_trust_files(cfg: &LoadConfig) -> Result<Option<trust_install::Plan>> {
    let args = &cfg.args;
    if args.no_trust_config {
        return Ok(None);
    }
    let plan = trust_install::plan(&trust_request(cfg, &cfg.registry(), &key_file_name(cfg)))?;
    trust::registries_d::load(&args.registries_d)
        .with_context(|| format!("reading {}", args.registries_d.display()))?;
    Ok(Some(plan))
}

fn manifest_digests(pusher: &Pusher) -> Vec<Digest> {
    (0..pusher.manifest().images.len())
        .map(|i| pusher.manifest_digest(i).clone())
        .collect()
}

/// The tags move last, once every manifest and signature is in place.
fn tag_all(pusher: &mut Pusher) -> Result<()> {
    pusher.tag_all().context("setting tags")
}

/// The tags that moved, named; the record of what set each tag updated
/// (see `freshness`).
fn record_tags(
    cfg: &LoadConfig,
    guard: freshness::Guard,
    pusher: &Pusher,
    digests: &[Digest],
) -> Result<Vec<freshness::Replacement>> {
    let registry = cfg.registry();
    let tagged = freshness::Tagged {
        registry: &registry,
        manifest: pusher.manifest(),
        names: pusher.names(),
        digests,
        repointed: &pusher.repointed,
    };
    guard
        .commit(&cfg.args.state_dir, &tagged, cfg.args.dry_run)
        .context("recording the tags set")
}

/// The trust files, last: written (or, in a dry run, what would be).
fn install_trust_files(
    cfg: &LoadConfig,
    plan: Option<trust_install::Plan>,
) -> Result<trust_install::Installed> {
    let Some(plan) = plan else {
        return Ok(Default::default());
    };
    let (registry, name) = (cfg.registry(), key_file_name(cfg));
    let req = trust_request(cfg, &registry, &name);
    Ok(trust_install::install(&req, &plan, cfg.args.dry_run)?)
}

/// Where load's trust files go, from the arguments.
fn trust_request<'a>(
    cfg: &'a LoadConfig,
    registry: &'a str,
    key_name: &'a str,
) -> trust_install::Request<'a> {
    let args = &cfg.args;
    trust_install::Request {
        registry,
        keys_dir: &args.keys_dir,
        policy: &args.policy,
        registries_d: &args.registries_d,
        registries_conf_d: cfg.plain_http.then_some(args.registries_conf_d.as_path()),
        lookaside_url: &args.lookaside_url,
        sigstore_dir: &args.sigstore_dir,
        key_backups: &cfg.backups,
        key_name,
        public_key: &cfg.public_key,
        fingerprint: cfg.signer.fingerprint(),
    }
}

/// What was loaded, for preflight/init/join to default to.
fn record_state(cfg: &LoadConfig, m: &u7s_bundle::bundle::BundleManifest) -> Result<()> {
    let args = &cfg.args;
    if args.dry_run || m.kube_version.is_none() {
        return Ok(());
    }
    let lb = u7s_bundle::kubeadm::LastBundle {
        kube_version: m.kube_version.clone().unwrap_or_default(),
        platform: Some(m.platform.clone()),
        arch: Some(m.arch.clone()),
        flannel_tag: m.flannel_tag.clone(),
        flannel_cni_plugin_tag: m.flannel_cni_plugin_tag.clone(),
        registry: Some(cfg.registry()),
        bundle: Some(absolute(&args.archive).display().to_string()),
        loaded_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .ok(),
    };
    // Per platform and version too: loading another version must not change
    // what init/join on this node use (see node_state).
    u7s_bundle::node_state::record_load(&args.state_dir, &lb).context("recording the load")
}

/// What the report says.
struct Loaded<'a> {
    cfg: &'a LoadConfig,
    bundle_signer: Option<String>,
    digests: Vec<Digest>,
    pusher: &'a Pusher<'a>,
    push: PushStats,
    signatures: SignStats,
    files: trust_install::Installed,
    /// Tags that pointed elsewhere and were moved (see `freshness`).
    repointed: Vec<freshness::Replacement>,
    /// False when the rest of the archive was not needed (every layer present).
    complete: bool,
}

fn report(l: &Loaded) {
    if l.cfg.args.json {
        report_json(l);
    } else if !l.cfg.args.quiet {
        report_text(l);
    }
}

fn report_json(l: &Loaded) {
    let (args, registry) = (&l.cfg.args, l.cfg.registry());
    let images: Vec<_> = (l.pusher.names().iter())
        .map(|p| json!({"name": p.identity(&registry), "digest": l.digests[p.image]}))
        .collect();
    print_json(&json!({
        "archive": args.archive,
        "dry_run": args.dry_run,
        "bundle_signer": l.bundle_signer,
        "image_signer": l.cfg.signer.fingerprint(),
        "registry": registry,
        "images": images,
        "push": l.push,
        "signatures": l.signatures,
        "files": l.files.files,
        "warnings": l.files.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "archive_fully_read": l.complete,
        "repointed": l.repointed,
    }));
}

/// One line a trust file that changed (or would), then the warnings.
fn report_files(installed: &trust_install::Installed, dry_run: bool) {
    use trust_install::Action;
    for f in &installed.files {
        let verb = match (f.action, dry_run) {
            (Action::Unchanged, _) => continue,
            (Action::Created, false) => "created",
            (Action::Updated, false) => "updated",
            (Action::Created, true) => "would create",
            (Action::Updated, true) => "would update",
        };
        match &f.backup {
            Some(b) => println!("{verb} {} (backup: {})", f.path.display(), b.display()),
            None => println!("{verb} {}", f.path.display()),
        }
    }
    for w in &installed.warnings {
        println!("{w}");
    }
}

fn report_text(l: &Loaded) {
    let (args, stats, sigs) = (&l.cfg.args, &l.push, &l.signatures);
    let fpr = l.cfg.signer.fingerprint();
    let verb = if args.dry_run {
        "would be loaded"
    } else {
        "loaded"
    };
    println!(
        "{} images ({} names) {verb} into {}: {} tags set, {} already right",
        l.pusher.manifest().images.len(),
        l.pusher.names().len(),
        l.cfg.registry(),
        stats.tags_set,
        stats.tags_unchanged
    );
    println!(
        "blobs: {} uploaded ({}), {} mounted, {} already present",
        stats.blobs_uploaded,
        super::human_bytes(stats.bytes_uploaded),
        stats.blobs_mounted,
        stats.blobs_present
    );
    let (written, present) = (sigs.written, sigs.present);
    println!("signatures by {fpr}: {written} written, {present} already present");
    for m in &sigs.moved_aside {
        println!("{m}");
    }
    let moved = if args.dry_run {
        "would re-point"
    } else {
        "re-pointed"
    };
    for r in &l.repointed {
        println!("{moved} {}", r.describe());
    }
    if !l.complete {
        println!("every layer was already in the registry: the rest of the archive was not read");
    }
    println!(
        "image-signing key fingerprint: {fpr} (the other nodes: u7s-bundle node-trust --fingerprint {fpr})"
    );
    match &l.bundle_signer {
        Some(f) => println!("bundle signed by {f}"),
        None => println!("bundle NOT signed (accepted with --allow-unsigned)"),
    }
    report_files(&l.files, args.dry_run);
}

#[derive(Debug, Default, serde::Serialize)]
struct SignStats {
    written: usize,
    present: usize,
    /// Unreadable signature files moved out of the way (see trust::lookaside::repair).
    moved_aside: Vec<String>,
}

fn moved_aside_note(m: &trust::lookaside::MovedAside) -> String {
    match &m.kept {
        Some(k) => format!(
            "{} is empty or not a signature (podman and CRI-O would refuse the image): moved aside to {}",
            m.was.display(),
            k.display()
        ),
        None => format!(
            "{} is empty or not a signature: would be moved aside",
            m.was.display()
        ),
    }
}

/// Sign every manifest for every name it was pushed under, unless a valid
/// signature by this key for this identity is already there (reloads write
/// nothing and never pile up signature-N files).
fn sign_all(cfg: &LoadConfig, digests: &[Digest], names: &[PushName]) -> Result<SignStats> {
    let (registry, sigstore, dry_run) = (&cfg.registry(), &cfg.args.sigstore_dir, cfg.args.dry_run);
    let mut stats = SignStats::default();
    let own = sign::keys::load_keyring_bytes(&cfg.public_key)?;
    let created = time::OffsetDateTime::now_utc().unix_timestamp();
    for n in names {
        let digest: &Digest = &digests[n.image];
        let identity = n.identity(registry);
        for m in
            trust::lookaside::repair(sigstore, &n.repository, &digest.lookaside_form(), dry_run)
                .with_context(|| format!("checking the signatures of {identity}"))?
        {
            stats.moved_aside.push(moved_aside_note(&m));
        }
        let existing =
            trust::lookaside::read_signatures(sigstore, &n.repository, &digest.lookaside_form())
                .with_context(|| format!("reading signatures of {identity}"))?;
        let ours = |sig: &[u8]| {
            sign::verify_simple(&own, sig)
                .map(|(p, _)| {
                    p.docker_reference == identity && p.manifest_digest == digest.to_string()
                })
                .unwrap_or(false)
        };
        if existing.iter().any(|s| ours(s)) {
            stats.present += 1;
            continue;
        }
        if !dry_run {
            sign_one(cfg, &own, n, digest, created)?;
        }
        stats.written += 1;
    }
    Ok(stats)
}

/// One new signature for `n`, stored in the lookaside directory.
fn sign_one(
    cfg: &LoadConfig,
    own: &[sequoia_openpgp::Cert],
    n: &PushName,
    digest: &Digest,
    created: i64,
) -> Result<()> {
    let (identity, sigstore) = (n.identity(&cfg.registry()), &cfg.args.sigstore_dir);
    let payload = sign::payload(
        &identity,
        &digest.to_string(),
        concat!("u7s-bundle ", env!("CARGO_PKG_VERSION")),
        created,
    );
    let sig = (cfg.signer.sign_payload(&payload)).with_context(|| format!("signing {identity}"))?;
    trust::lookaside::store_signature(
        sigstore,
        &n.repository,
        &digest.lookaside_form(),
        &sig,
        |old| {
            // A signature by the same key for the same identity (e.g. an expired
            // or re-made one) is replaced, not added to.
            sign::verify_simple(own, old)
                .map(|(p, _)| p.docker_reference == identity)
                .unwrap_or(false)
        },
    )
    .with_context(|| {
        format!(
            "writing the signature of {identity} under {}",
            sigstore.display()
        )
    })?;
    Ok(())
}

/// Every path load writes, checked before anything is read (a dry run too).
fn check_writable(args: &LoadArgs) -> Result<()> {
    use trust::writable::Target;
    fn t<'a>(option: &'static str, path: &'a Path, is_file: bool) -> Target<'a> {
        Target {
            option,
            path,
            is_file,
        }
    }
    let mut targets = vec![
        t("--lock-file", &args.lock_file, true),
        t("--state-dir", &args.state_dir, false),
        t("--sigstore-dir", &args.sigstore_dir, false),
    ];
    if !args.no_trust_config {
        targets.extend([
            t("--keys-dir", &args.keys_dir, false),
            t("--policy", &args.policy, true),
            t("--registries-d", &args.registries_d, false),
            t("--registries-conf-d", &args.registries_conf_d, false),
        ]);
    }
    Ok(trust::writable::check(&targets)?)
}

/// What to do when the probe signature fails: a GnuPG key with a passphrase
/// needs pinentry on a terminal or a passphrase file.
fn probe_failed(args: &LoadArgs, fingerprint: &str) -> String {
    let mut msg = format!("the signing key {fingerprint} cannot sign");
    if args.sign_by.is_some() && args.passphrase_file.is_none() && sign::gpg::stdin_tty().is_none()
    {
        msg.push_str(
            "; if it has a passphrase, run load from a terminal (gpg-agent's pinentry asks there) \
             or give --passphrase-file FILE",
        );
    }
    msg
}

/// `imagemaker` from `imagemaker@example.org`; the fingerprint when there is no email.
fn key_file_name(cfg: &LoadConfig) -> String {
    let signer = cfg.signer.as_ref();
    let local = signer
        .email()
        .and_then(|e| e.split('@').next().map(str::to_string))
        .filter(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !l.starts_with('.')
        });
    local.unwrap_or_else(|| signer.fingerprint().to_string())
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
