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
use u7s_bundle::{fsutil, interrupt};

pub fn run(args: LoadArgs) -> Result<()> {
    interrupt::install();
    let cfg = LoadConfig::from_args(args)?;
    let _lock = take_lock(&cfg)?;
    let (streamed, complete) = read_and_push(&cfg)?;
    let Streamed {
        mut pusher, signer, ..
    } = streamed;
    check_trust_files(&cfg)?;
    pusher.push_manifests().context("pushing manifests")?;
    let digests = manifest_digests(&pusher);
    let signatures = sign_all(&cfg, &digests, pusher.names())?;
    tag_all(&mut pusher)?;
    let files = install_trust_files(&cfg)?;
    record_state(&cfg, pusher.manifest())?;
    report(&Loaded {
        cfg: &cfg,
        bundle_signer: signer,
        digests,
        push: pusher.stats.clone(),
        pusher: &pusher,
        signatures,
        files,
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
    let trust = volumes::Trust {
        keyring: &cfg.keyring,
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
fn check_trust_files(cfg: &LoadConfig) -> Result<()> {
    let args = &cfg.args;
    if args.no_trust_config {
        return Ok(());
    }
    write_trust_files(cfg.signer.as_ref(), args, &cfg.registry(), true)?;
    trust::registries_d::load(&args.registries_d)
        .with_context(|| format!("reading {}", args.registries_d.display()))?;
    Ok(())
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

/// The trust files, last: written (or, in a dry run, what would be).
fn install_trust_files(cfg: &LoadConfig) -> Result<Vec<String>> {
    let args = &cfg.args;
    if args.no_trust_config {
        return Ok(Vec::new());
    }
    let registry = cfg.registry();
    let mut changes = write_trust_files(cfg.signer.as_ref(), args, &registry, args.dry_run)?;
    if cfg.plain_http {
        changes.extend(mark_insecure(
            &args.registries_conf_d,
            &registry,
            args.dry_run,
        )?);
    }
    Ok(changes)
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
    let path = u7s_bundle::kubeadm::LastBundle::path(&args.state_dir);
    fsutil::create_dir_all_mode(&args.state_dir, 0o755)
        .and_then(|()| fsutil::write_atomic(&path, &serde_json::to_vec_pretty(&lb)?, 0o644))
        .with_context(|| format!("recording the load in {}", path.display()))
}

/// What the report says.
struct Loaded<'a> {
    cfg: &'a LoadConfig,
    bundle_signer: Option<String>,
    digests: Vec<Digest>,
    pusher: &'a Pusher<'a>,
    push: PushStats,
    signatures: SignStats,
    files: Vec<String>,
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
        "files": l.files,
        "archive_fully_read": l.complete,
    }));
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
    for c in &l.files {
        println!("{c}");
    }
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
    let (signer, registry) = (cfg.signer.as_ref(), &cfg.registry());
    let (sigstore, dry_run) = (&cfg.args.sigstore_dir, cfg.args.dry_run);
    let mut stats = SignStats::default();
    let own = sign::keys::load_keyring_bytes(&signer.public_key_bytes()?)?;
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
        if dry_run {
            stats.written += 1;
            continue;
        }
        let payload = sign::payload(
            &identity,
            &digest.to_string(),
            concat!("u7s-bundle ", env!("CARGO_PKG_VERSION")),
            created,
        );
        let sig = signer
            .sign_payload(&payload)
            .with_context(|| format!("signing {identity}"))?;
        trust::lookaside::store_signature(
            sigstore,
            &n.repository,
            &digest.lookaside_form(),
            &sig,
            |old| {
                // A signature by the same key for the same identity (e.g. an expired
                // or re-made one) is replaced, not added to.
                sign::verify_simple(&own, old)
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
        stats.written += 1;
    }
    Ok(stats)
}

/// The public key, policy.json (+ its copy for other nodes), registries.d.
fn write_trust_files(
    signer: &dyn ImageSigner,
    args: &LoadArgs,
    registry: &str,
    dry_run: bool,
) -> Result<Vec<String>> {
    // Never over another key: a policy rule may name that file.
    let (name, key_present) =
        trust::keys::choose_key_name(&args.keys_dir, &key_file_name(signer), signer.fingerprint())
            .with_context(|| format!("choosing a key file in {}", args.keys_dir.display()))?;
    // policy.json needs an absolute keyPath: CRI-O would resolve a relative one
    // from its own working directory.
    let key_path = absolute(&args.keys_dir).join(format!("{name}.pgp"));
    let mut out = Vec::new();
    let existing_policy = match std::fs::read(&args.policy) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", args.policy.display())),
    };
    let (policy, policy_changed) =
        trust::policy::merge_signed_by(existing_policy.as_deref(), registry, &key_path)
            .with_context(|| format!("merging into {}", args.policy.display()))?;
    let staging = format!("file://{}", absolute(&args.sigstore_dir).display());
    if dry_run {
        out.push(format!("would write {}", key_path.display()));
        if policy_changed {
            out.push(format!("would update {}", args.policy.display()));
        }
        out.push(format!(
            "would write {}",
            args.keys_dir.join("policy.json").display()
        ));
        out.push(format!(
            "would configure {} (lookaside {})",
            args.registries_d.display(),
            args.lookaside_url
        ));
        return Ok(out);
    }
    fsutil::create_dir_all_mode(&args.keys_dir, 0o755)
        .with_context(|| format!("creating {}", args.keys_dir.display()))?;
    if !key_present {
        let (p, _) = trust::keys::install_public_key(
            &args.keys_dir,
            &name,
            &signer.public_key_bytes()?,
            Some(&args.state_dir.join("backups")),
        )
        .with_context(|| format!("writing the public key into {}", args.keys_dir.display()))?;
        out.push(format!("wrote {}", p.display()));
    }
    if let Some(parent) = args.policy.parent() {
        fsutil::create_dir_all_mode(parent, 0o755)?;
    }
    if let Some(b) = fsutil::write_atomic_with_backup(&args.policy, &policy, 0o644)
        .with_context(|| format!("writing {}", args.policy.display()))?
    {
        out.push(format!(
            "updated {} (backup: {})",
            args.policy.display(),
            b.display()
        ));
    } else if policy_changed {
        out.push(format!("wrote {}", args.policy.display()));
    }
    let copy = args.keys_dir.join("policy.json");
    let copy_existed = copy.exists();
    match fsutil::write_atomic_with_backup(&copy, &policy, 0o644)
        .with_context(|| format!("writing {}", copy.display()))?
    {
        Some(b) => out.push(format!(
            "updated {} (backup: {})",
            copy.display(),
            b.display()
        )),
        None if !copy_existed => out.push(format!("wrote {}", copy.display())),
        None => {}
    }
    fsutil::create_dir_all_mode(&args.registries_d, 0o755)?;
    for c in
        trust::registries_d::configure(&args.registries_d, registry, &args.lookaside_url, &staging)
            .with_context(|| format!("configuring {}", args.registries_d.display()))?
    {
        out.push(c.to_string());
    }
    Ok(out)
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

/// Plain HTTP: the registries.conf drop-in that lets podman and CRI-O pull.
fn mark_insecure(conf_d: &Path, registry: &str, dry_run: bool) -> Result<Vec<String>> {
    let plan = trust::registries_conf::plan(conf_d, registry)
        .with_context(|| format!("checking {}", conf_d.display()))?;
    if dry_run {
        return Ok(plan
            .changes
            .iter()
            .map(|c| format!("would do: {c}"))
            .collect());
    }
    let changes = trust::registries_conf::apply(plan)?;
    Ok(changes.iter().map(ToString::to_string).collect())
}

/// `imagemaker` from `imagemaker@example.org`; the fingerprint when there is no email.
fn key_file_name(signer: &dyn ImageSigner) -> String {
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
