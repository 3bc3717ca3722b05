//! `u7s-bundle load`: verify → push → sign → trust files, on the isolated host.
//!
//! Nothing is written anywhere before the bundle signature checked out; no tag is
//! set before the whole archive verified and every signature is in place; the
//! trust files are written last, each atomically with a backup.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

use super::{print_json, registry_client, trusted_keys, Exit};
use crate::cli::LoadArgs;
use u7s_bundle::bundle::model::BlobKind;
use u7s_bundle::bundle::reader::{self, Entry};
use u7s_bundle::bundle::verify::{check_layout, check_signature};
use u7s_bundle::bundle::volumes;
use u7s_bundle::bundle::BundleManifest;
use u7s_bundle::digest::Digest;
use u7s_bundle::progress::Progress;
use u7s_bundle::push::{push_names, LayerCompression, PushError, PushName, Pusher};
use u7s_bundle::sign::{self, ImageSigner};
use u7s_bundle::trust;
use u7s_bundle::{delta, freshness, fsutil, interrupt};

pub fn run(args: LoadArgs) -> Result<()> {
    interrupt::install();
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

    let plain_http =
        args.registry_opts.plain_http || u7s_bundle::reference::is_registry_local(&args.registry);
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

    // One load at a time (a dry run writes nothing, so it needs no lock).
    let _lock = if args.dry_run {
        None
    } else {
        Some(
            u7s_bundle::lock::HostLock::acquire(&args.lock_file, |pid| {
                progress.message(&format!(
                    "waiting for another load to finish ({}, lock {})",
                    pid.map(|p| format!("pid {p}"))
                        .unwrap_or_else(|| "unknown pid".into()),
                    args.lock_file.display()
                ))
            })
            .with_context(|| format!("taking the lock {}", args.lock_file.display()))?,
        )
    };

    // Stream the archive: header → signature check → blobs pushed as they come.
    let split = volumes::is_volume_path(&args.archive);
    let legacy_archive = !split
        && reader::is_legacy(&args.archive).map_err(|e| {
            anyhow::Error::new(e).context(format!("reading {}", args.archive.display()))
        })?;
    if legacy_archive && !args.trust.allow_unsigned {
        return Err(Exit::Verification(format!(
            "{} has no bundle.json: it looks like a podsec archive, which is not signed; \
             give --allow-unsigned (and --arch if it is not for this host's architecture) to load it anyway",
            args.archive.display()
        ))
        .into());
    }
    let profiles = super::load_profiles(None)?;
    let mut signer_fpr: Option<String> = None;
    // The pusher borrows the manifest and names; both are set once, in the
    // header callback, and live in `holder` — declared first, so it outlives
    // the pusher — for the rest of the read.
    let holder: std::cell::OnceCell<(BundleManifest, Vec<PushName>)> = std::cell::OnceCell::new();
    let mut pusher: Option<Pusher> = None;
    let mut index_json: Option<Vec<u8>> = None;
    let legacy_names = !args.no_legacy_names;
    let layer_compression = LayerCompression::from(args.layer_compression);
    let task = progress.bytes_task("Verifying and pushing", None);
    let mut input = if legacy_archive {
        None
    } else {
        let trust = volumes::Trust {
            keyring: &keyring,
            allow_unsigned: args.trust.allow_unsigned,
        };
        let prompt = args.wait_for_volumes.then(volumes::terminal_prompt);
        Some(
            volumes::Input::open(&args.archive, prompt, Some(&trust))
                .with_context(|| format!("opening {}", args.archive.display()))?,
        )
    };
    let volume_json = input.as_ref().and_then(volumes::Input::bundle_json_digest);
    let mut fresh: Option<freshness::Guard> = None;
    let check_header = |h: &reader::Header| -> Result<(), reader::BoxError> {
        volumes::check_bundle_json(volume_json.as_ref(), &h.raw_manifest)?;
        signer_fpr = check_signature(
            &h.raw_manifest,
            h.signature.as_deref(),
            &keyring,
            args.trust.allow_unsigned,
        )?;
        u7s_bundle::platform::check_bundle_arch(&h.manifest.arch, args.arch.as_deref())
            .map_err(|why| Box::new(Exit::Verification(why)) as reader::BoxError)?;
        freshness::check_expiry(&h.manifest, time::OffsetDateTime::now_utc())
            .map_err(freshness_refused)?;
        let mut m = h.manifest.clone();
        if m.legacy_prefixes.is_empty() {
            // A podsec archive does not say; the profile of its platform does.
            // Its names may use the canonical platform (c10f/…) or an old one
            // (k8s-c10f2/…): push under the others too.
            if let Ok(p) = profiles.platform(&m.platform) {
                let mut prefixes = vec![p.name.clone()];
                prefixes.extend(p.legacy_prefixes.iter().cloned());
                prefixes.retain(|x| x != &m.platform);
                m.legacy_prefixes = prefixes;
            }
        }
        let n = push_names(&m, legacy_names);
        // Before the first blob: an older bundle must not move a newer one's tags.
        fresh = Some(
            freshness::Guard::check(
                &args.state_dir,
                &client,
                &m,
                &h.raw_manifest,
                &n,
                args.allow_downgrade,
            )
            .map_err(freshness_refused)?,
        );
        // A delta: what it leaves out must be here before a layer is read.
        delta::check_base_present(
            &client,
            &m,
            &n,
            args.dry_run,
            layer_compression != LayerCompression::None,
        )?;
        let _ = holder.set((m, n));
        Ok(())
    };
    let mut checked_rest = false;
    let on_entry = |_: &BundleManifest, entry: Entry<'_>| -> Result<(), reader::BoxError> {
        if interrupt::cancelled() {
            return Err(Box::new(Exit::Interrupted(
                interrupt::exit_code().unwrap_or(130),
            )));
        }
        let (m, n) = holder.get().expect("header checked");
        let p = pusher
            .get_or_insert_with(|| Pusher::new(&client, m, n, args.dry_run, layer_compression));
        match entry {
            Entry::LayoutFile { path, data } => {
                if path == "index.json" {
                    index_json = Some(data);
                }
            }
            Entry::Blob { blob, reader } => {
                if blob.kind == BlobKind::Layer && !checked_rest {
                    checked_rest = true;
                    if p.nothing_left_to_read()? {
                        return Err(Box::new(StopReading));
                    }
                }
                p.on_blob(blob, reader)?;
                task.inc(blob.size);
            }
        }
        Ok(())
    };
    let result = if legacy_archive {
        let (arch, _) = super::select_arch(args.arch.as_deref())?;
        let file = &args.archive;
        reader::read_legacy(file, &arch, check_header, on_entry)
    } else {
        let input = input.as_mut().expect("opened above");
        reader::read_bundle(input, check_header, on_entry)
    };
    drop(task);
    let mut skipped_rest = false;
    let result = match result {
        Err(reader::ReadError::Rejected(e)) if e.is::<StopReading>() => {
            skipped_rest = true;
            Ok(())
        }
        r => r.map(|_| ()),
    };
    // A bad volume is the cause, not the corrupt stream it made.
    if let (Err(_), Some(v)) = (&result, input.as_mut().and_then(volumes::Input::diagnose)) {
        return Err(
            anyhow::Error::new(v).context(format!("{} was refused", args.archive.display()))
        );
    }
    result.map_err(|e| {
        // The registry failing is not the archive's fault: say so, and what
        // to do. Nothing is tagged before every blob is in, so a re-run is safe.
        let registry_failed = matches!(&e, reader::ReadError::Rejected(inner)
            if matches!(inner.downcast_ref::<PushError>(), Some(PushError::Registry { .. })));
        let what = if registry_failed {
            format!(
                "loading {} into {} stopped, nothing was tagged; when the registry \
                 answers again, run the same command: blobs already uploaded are not sent again",
                args.archive.display(),
                args.registry
            )
        } else {
            format!("{} was refused", args.archive.display())
        };
        anyhow::Error::new(e).context(what)
    })?;
    let (m, n) = holder.get().expect("header read");
    if !legacy_archive {
        // (A podsec archive's images were derived from its index.json itself.)
        check_layout(m, index_json.as_deref().unwrap_or_default())
            .map_err(|why| Exit::Verification(format!("{}: {why}", args.archive.display())))?;
    }
    let mut pusher =
        pusher.unwrap_or_else(|| Pusher::new(&client, m, n, args.dry_run, layer_compression));

    // Every trust-file merge is computed and checked before the first
    // signature or tag: an unmergeable policy.json must not fail the load
    // after the tags moved.
    let registry = client.host().to_string();
    if !args.no_trust_config {
        write_trust_files(signer.as_ref(), &args, &registry, true)?;
        trust::registries_d::load(&args.registries_d)
            .with_context(|| format!("reading {}", args.registries_d.display()))?;
    }

    // Manifests by digest, then signatures, then tags.
    pusher.push_manifests().context("pushing manifests")?;
    let digests: Vec<Digest> = (0..m.images.len())
        .map(|i| pusher.manifest_digest(i).clone())
        .collect();
    let sig_stats = sign_all(
        signer.as_ref(),
        &registry,
        &digests,
        n,
        &args.sigstore_dir,
        args.dry_run,
    )?;
    pusher.tag_all().context("setting tags")?;
    let stats = pusher.stats.clone();
    let repointed = fresh
        .take()
        .expect("checked with the header")
        .commit(
            &args.state_dir,
            &freshness::Tagged {
                registry: &registry,
                manifest: m,
                names: n,
                digests: &digests,
                repointed: &pusher.repointed,
            },
            args.dry_run,
        )
        .context("recording the tags set")?;

    // Trust files last.
    let mut changes: Vec<String> = Vec::new();
    if !args.no_trust_config {
        changes = write_trust_files(signer.as_ref(), &args, &registry, args.dry_run)?;
        if plain_http {
            changes.extend(mark_insecure(
                &args.registries_conf_d,
                &registry,
                args.dry_run,
            )?);
        }
    }

    // What was loaded, for preflight/init/join to default to.
    if !args.dry_run && m.kube_version.is_some() {
        let lb = u7s_bundle::kubeadm::LastBundle {
            kube_version: m.kube_version.clone().unwrap_or_default(),
            platform: Some(m.platform.clone()),
            arch: Some(m.arch.clone()),
            flannel_tag: m.flannel_tag.clone(),
            flannel_cni_plugin_tag: m.flannel_cni_plugin_tag.clone(),
            registry: Some(registry.clone()),
            bundle: Some(absolute(&args.archive).display().to_string()),
            loaded_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .ok(),
        };
        // Per platform and version too: loading another version must not
        // change what init/join on this node use (see node_state).
        u7s_bundle::node_state::record_load(&args.state_dir, &lb).context("recording the load")?;
    }

    let images: Vec<_> = n
        .iter()
        .map(|p| json!({"name": p.identity(&registry), "digest": digests[p.image]}))
        .collect();
    if args.json {
        print_json(&json!({
            "archive": args.archive,
            "dry_run": args.dry_run,
            "bundle_signer": signer_fpr,
            "image_signer": signer.fingerprint(),
            "registry": registry,
            "images": images,
            "push": stats,
            "signatures": sig_stats,
            "files": changes,
            "archive_fully_read": !skipped_rest,
            "repointed": repointed,
        }));
    } else if !args.quiet {
        let verb = if args.dry_run {
            "would be loaded"
        } else {
            "loaded"
        };
        println!(
            "{} images ({} names) {verb} into {registry}: {} tags set, {} already right",
            m.images.len(),
            n.len(),
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
        println!(
            "signatures by {}: {} written, {} already present",
            signer.fingerprint(),
            sig_stats.written,
            sig_stats.present
        );
        for m in &sig_stats.moved_aside {
            println!("{m}");
        }
        let verb = if args.dry_run {
            "would re-point"
        } else {
            "re-pointed"
        };
        for r in &repointed {
            println!("{verb} {}", r.describe());
        }
        if skipped_rest {
            println!(
                "every layer was already in the registry: the rest of the archive was not read"
            );
        }
        println!(
            "image-signing key fingerprint: {} (the other nodes: u7s-bundle node-trust --fingerprint {})",
            signer.fingerprint(),
            signer.fingerprint()
        );
        match &signer_fpr {
            Some(f) => println!("bundle signed by {f}"),
            None => println!("bundle NOT signed (accepted with --allow-unsigned)"),
        }
        for c in &changes {
            println!("{c}");
        }
    }
    Ok(())
}

/// A stale bundle (expired, or older than what set the tags) is not to be
/// trusted (exit 3); trouble reading the record or the registry is not.
fn freshness_refused(e: freshness::FreshnessError) -> reader::BoxError {
    if e.is_refusal() {
        Box::new(Exit::Verification(e.to_string()))
    } else {
        Box::new(e)
    }
}

/// Raised by the entry callback when the rest of the archive is not needed.
#[derive(Debug, thiserror::Error)]
#[error("the rest of the archive is already in the registry")]
struct StopReading;

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
fn sign_all(
    signer: &dyn ImageSigner,
    registry: &str,
    digests: &[Digest],
    names: &[PushName],
    sigstore: &Path,
    dry_run: bool,
) -> Result<SignStats> {
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
