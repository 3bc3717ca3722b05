//! `u7s-bundle build`: profile → plan → pull into the cache → one archive.

use std::fs;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{
    choose_set, default_jobs, human_bytes, kubeadm_line, load_profiles, print_json,
    registry_client, select_arch, Chosen, Exit,
};
use crate::cli::BuildArgs;
use u7s_bundle::bundle::assemble::{self, BlobData, BundleInfo};
use u7s_bundle::bundle::compress::{Codec, EncodeOptions};
use u7s_bundle::bundle::model::{MANIFEST_NAME, SIGNATURE_NAME};
use u7s_bundle::bundle::volumes;
use u7s_bundle::bundle::writer::{self, Content, Entry, Hooks};
use u7s_bundle::cache::Cache;
use u7s_bundle::fsutil::PendingFile;
use u7s_bundle::plan::{
    image_set, nearest_tags, newest_on_source, planned_images, substitute_missing, Planned,
};
use u7s_bundle::profile::{sort_tags_as_versions, PlatformKind, Profiles, SetOptions};
use u7s_bundle::progress::Progress;
use u7s_bundle::reference::Reference;
use u7s_bundle::registry::{Client, RegistryError};
use u7s_bundle::{delta, interrupt, pull, sign};

pub fn run(args: BuildArgs) -> Result<()> {
    interrupt::install();
    let progress = Progress::auto(args.quiet || args.json);
    let profiles = load_profiles(args.select.profiles_dir.as_deref())?;
    let (arch, variant) = select_arch(args.select.arch.as_deref())?;
    let mut chosen = choose_set(&profiles, &args.select, args.source.clone(), None)?;
    let client = registry_client(&chosen.source, args.registry.plain_http, &args.registry)?;
    if !chosen.version_given && chosen.set.kind == PlatformKind::Kubernetes {
        newest_version_on_source(&profiles, &client, &mut chosen, &progress)?;
    }
    let set = &chosen.set;
    let source = chosen.source.as_str();
    let platform = profiles.platform(&set.platform)?;
    let jobs = args.jobs.unwrap_or_else(default_jobs).max(1);

    // Everything that can fail without the network fails first.
    let validity = args
        .expires
        .as_deref()
        .map(u7s_bundle::freshness::parse_validity)
        .transpose()
        .context("--expires")?;
    let signer = args
        .sign_key
        .as_deref()
        .map(|path| sign::open_key_file(path, args.passphrase_file.as_deref()))
        .transpose()?;
    let base = args
        .base
        .as_deref()
        .map(delta::Base::read)
        .transpose()
        .context("reading --base")?;
    let mut planned = planned_images(set, source)?;
    for extra in &args.extra_images {
        planned.push(parse_extra(extra, source)?);
    }
    if args.preserve_digests {
        for p in &mut planned {
            p.preserve = true;
        }
    }
    let codec = Codec::from(args.compression);
    let arch_label = match &variant {
        Some(v) => format!("{arch}{v}"),
        None => arch.clone(),
    };
    let stem = format!("{}-{}-{arch_label}", set.platform, set.kube_version);
    let final_path = args
        .output
        .join(format!("{stem}.u7s.{}", codec.extension()));
    let volume_size = args
        .volume_size
        .as_deref()
        .map(volumes::parse_size)
        .transpose()?;
    let bundle_name = format!("{stem}.u7s.{}", codec.extension());
    if volume_size.is_some() && !args.force {
        let old = volumes::existing_volumes(&args.output, &bundle_name)?;
        if let Some(v) = old.first() {
            bail!(
                "{} exists already; remove the old volumes or give --force to replace them",
                args.output.join(v).display()
            );
        }
    }
    if volume_size.is_none() && final_path.exists() && !args.force {
        bail!(
            "{} exists already; remove it or give --force to replace it",
            final_path.display()
        );
    }
    fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let cache_dir = args.cache_dir.clone().unwrap_or_else(Cache::default_dir);
    let cache = Cache::open(&cache_dir)
        .with_context(|| format!("opening the build cache {}", cache_dir.display()))?;

    // Resolve every image before downloading any layer.
    for n in set
        .notes
        .iter()
        .cloned()
        .chain(kubeadm_line(set, args.select.kubeadm_images.as_deref()))
    {
        progress.message(&format!("note: {n}"));
    }
    if chosen.set_available {
        for n in substitute_missing(&client, &mut planned)? {
            progress.message(&format!("note: {n}"));
        }
    }
    progress.message(&format!(
        "Resolving {} images for {}/{} on {}",
        planned.len(),
        set.platform,
        arch_label,
        source
    ));
    let mut resolved = Vec::with_capacity(planned.len());
    let mut missing = Vec::new();
    for p in &planned {
        if interrupt::cancelled() {
            return Err(interrupted());
        }
        match pull::resolve(
            &client,
            &p.name,
            p.role.as_deref(),
            &p.source,
            &arch,
            variant.as_deref(),
            p.preserve,
        ) {
            Ok(r) => resolved.push(r),
            Err(pull::PullError::Registry {
                source: RegistryError::NotFound { .. },
                ..
            }) => missing.push(p),
            Err(e) => return Err(e).with_context(|| format!("resolving {}", p.name)),
        }
    }
    if !missing.is_empty() {
        bail!(missing_images(&client, source, &missing));
    }

    // Download distinct layers in parallel into the cache.
    let mut layer_jobs = pull::layer_jobs(&resolved);
    layer_jobs
        .iter_mut()
        .for_each(|j| j.max_stored = args.max_layer_size);
    let total: u64 = layer_jobs.iter().map(|j| j.source.size).sum();
    progress.message(&format!(
        "Fetching {} distinct layers ({}) with {jobs} parallel downloads",
        layer_jobs.len(),
        human_bytes(total)
    ));
    let sizes = match pull::download(
        &client,
        &cache,
        &layer_jobs,
        jobs,
        args.registry.retries.max(1),
        &progress,
        interrupt::flag(),
    ) {
        Ok(s) => s,
        Err(pull::PullError::Interrupted) => return Err(interrupted()),
        Err(e) => return Err(e).context("downloading layers"),
    };

    // Assemble and sign bundle.json.
    let (created, mtime) = creation_time();
    let expires = validity.map(|v| u7s_bundle::freshness::expires_at(mtime as i64, v));
    let info = BundleInfo {
        platform: set.platform.clone(),
        platform_aliases: platform.aliases.clone(),
        legacy_prefixes: platform.legacy_prefixes.clone(),
        // Base image sets (platform `alt`) are versioned by ALT branch, which
        // only names the file; bundle.json's kube_version stays empty.
        kube_version: match set.kind {
            u7s_bundle::profile::PlatformKind::Kubernetes => Some(set.kube_version.clone()),
            u7s_bundle::profile::PlatformKind::Base => None,
        },
        arch: arch.clone(),
        variant: variant.clone(),
        profile: platform.name.clone(),
        flannel_tag: set.flannel_tag.clone(),
        flannel_cni_plugin_tag: set.flannel_cni_plugin_tag.clone(),
        kubeadm_versions: set.kubeadm_versions.clone(),
        created,
        expires,
    };
    let mut assembled = assemble::assemble(info, &resolved, &cache, &sizes)?;
    let saved = base.as_ref().map(|b| delta::leave_out(&mut assembled, b));
    assembled
        .manifest
        .validate()
        .context("the assembled bundle.json")?;
    let bundle_json = assembled.manifest.to_json();
    let bundle_json_copy = bundle_json.clone();
    let signature = match &signer {
        Some(k) => {
            Some(sign::detached::sign_detached(k, &bundle_json).context("signing bundle.json")?)
        }
        None => None,
    };

    // Write under a temporary name; rename only when complete.
    let mut entries = vec![Entry {
        path: MANIFEST_NAME.into(),
        content: Content::Bytes(bundle_json),
    }];
    if let Some(sig) = signature {
        entries.push(Entry {
            path: SIGNATURE_NAME.into(),
            content: Content::Bytes(sig),
        });
    }
    entries.push(Entry {
        path: format!("{arch}/oci-layout"),
        content: Content::Bytes(assembled.oci_layout.clone()),
    });
    entries.push(Entry {
        path: format!("{arch}/index.json"),
        content: Content::Bytes(assembled.index_json.clone()),
    });
    for b in &assembled.blobs {
        entries.push(Entry {
            path: assembled.manifest.blob_path(&b.entry.digest),
            content: match &b.data {
                BlobData::Memory(bytes) => Content::Bytes(bytes.clone()),
                BlobData::File(p) => Content::File {
                    path: p.clone(),
                    size: b.entry.size,
                },
            },
        });
    }
    let uncompressed: u64 = assembled.blobs.iter().map(|b| b.entry.size).sum();
    let opts = EncodeOptions::for_arch(codec, args.level, jobs as u32, &arch);
    let task = progress.bytes_task(
        &format!("Compressing ({:?})", codec).to_lowercase(),
        Some(uncompressed),
    );
    let hooks = Hooks {
        progress: &|n| task.inc(n),
        cancel: interrupt::flag(),
    };
    let (output_path, archive_size, volume_count) = match volume_size {
        None => {
            let (pending, mut file) = PendingFile::create(&final_path)
                .with_context(|| format!("creating a file in {}", args.output.display()))?;
            let written =
                writer::write_archive(&mut file, &args.output, entries, opts, mtime, &hooks);
            let written = written_or_interrupted(written)?;
            drop(file);
            pending
                .persist()
                .with_context(|| format!("renaming into {}", final_path.display()))?;
            (final_path.clone(), written.compressed, None)
        }
        Some(max) => {
            let mut out = volumes::VolumeWriter::new(&args.output, &bundle_name, max);
            let written =
                writer::write_archive(&mut out, &args.output, entries, opts, mtime, &hooks);
            let written = written_or_interrupted(written)?;
            let finished = out.finish().context("writing the volumes")?;
            let index = finished.index(&bundle_json_copy);
            let sig = match &signer {
                Some(k) => Some(
                    sign::detached::sign_detached(k, &index.to_json())
                        .context("signing the volume index")?,
                ),
                None => None,
            };
            let path = finished
                .persist(&index, sig.as_deref())
                .with_context(|| format!("writing the volumes into {}", args.output.display()))?;
            (path, written.compressed, Some(index.volume_count))
        }
    };
    drop(task);

    let signer_fpr = signer.as_ref().map(|k| k.fingerprint());
    if args.json {
        print_json(&json!({
            "archive": output_path,
            "size": archive_size,
            "volumes": volume_count,
            "delta": assembled.manifest.delta.as_ref().map(|d| json!({"base": d.base, "omitted": d.omitted.len(), "bytes_saved": saved})),
            "uncompressed_size": uncompressed,
            "compression": codec,
            "platform": assembled.manifest.platform,
            "kube_version": assembled.manifest.kube_version,
            "arch": assembled.manifest.arch,
            "kubeadm_versions": assembled.manifest.kubeadm_versions,
            "environment": chosen.env,
            "signed": signer_fpr.is_some(),
            "signer": signer_fpr,
            "images": assembled.manifest.images.iter().map(|i| json!({"name": i.name, "digest": i.manifest, "size": i.size})).collect::<Vec<_>>(),
        }));
    } else {
        if signer.is_none() {
            progress.message("warning: the bundle is not signed (no --sign-key); load will refuse it without --allow-unsigned");
        }
        progress.message(&format!(
            "{} images, {} blobs, {} → {} ({:.1}%)",
            assembled.manifest.images.len(),
            assembled.manifest.blobs.len(),
            human_bytes(uncompressed),
            human_bytes(archive_size),
            archive_size as f64 * 100.0 / uncompressed.max(1) as f64
        ));
        if let (Some(d), Some(saved)) = (&assembled.manifest.delta, saved) {
            progress.message(&format!(
                "delta against {}: {} layers ({}) left out",
                d.base,
                d.omitted.len(),
                human_bytes(saved)
            ));
        }
        println!("{}", output_path.display());
    }
    Ok(())
}

/// Without a version, take what podsec takes: the newest kube-apiserver tag on
/// the source, among the versions the profile can name the images for (the
/// profile's own default may not be on that registry at all).
fn newest_version_on_source(
    profiles: &Profiles,
    client: &Client,
    chosen: &mut Chosen,
    progress: &Progress,
) -> Result<()> {
    let platform = profiles.platform(&chosen.platform)?;
    let (newest, tags) = newest_on_source(client, platform)
        .with_context(|| format!("finding the newest kubernetes on {}", chosen.source))?;
    let Some(v) = newest else {
        bail!(
            "{} has no kube-apiserver tag of {} that the profile knows (tags there: {}); give --kube-version",
            chosen.source,
            platform.name,
            if tags.is_empty() { "none".to_string() } else { sort_tags_as_versions(&tags).join(", ") }
        );
    };
    let opts = SetOptions {
        kube_version: Some(v.to_string()),
        ..chosen.opts.clone()
    };
    chosen.set = image_set(profiles, &chosen.platform, &opts, chosen.set_available)?;
    chosen.opts = opts;
    progress.message(&format!(
        "note: kubernetes {v}: the newest kube-apiserver tag on {} that the profile knows (as podsec takes it); --kube-version chooses another",
        chosen.source
    ));
    Ok(())
}

/// Every image the source lacks, each with the nearest tags it has, and the
/// ways out: one message, so that one build run shows all that is missing.
fn missing_images(client: &Client, source: &str, missing: &[&Planned]) -> String {
    let mut msg = format!("{} image(s) of the set are not on {source}:", missing.len());
    for p in missing {
        let tag = p.source.tag.clone().unwrap_or_default();
        let near = match client.list_tags(&p.source.repository) {
            Ok(tags) if !tags.is_empty() => {
                format!("nearest there: {}", nearest_tags(&tag, &tags, 3).join(", "))
            }
            Ok(_) | Err(RegistryError::NotFound { .. }) => "the repository is not there".into(),
            Err(e) => format!("its tags could not be listed: {e}"),
        };
        msg.push_str(&format!("\n  {} ({near})", p.name));
    }
    msg.push_str(
        "\nBuild a version the source has (--kube-version, --kubeadm-version, --flannel-tag), \
         or give --set-available-images to take the newest tag of the same minor for each",
    );
    msg
}

fn written_or_interrupted(w: std::io::Result<writer::Written>) -> Result<writer::Written> {
    match w {
        Ok(w) => Ok(w),
        Err(_) if interrupt::cancelled() => Err(interrupted()),
        Err(e) => Err(e).context("writing the archive"),
    }
}

fn interrupted() -> anyhow::Error {
    Exit::Interrupted(interrupt::exit_code().unwrap_or(130)).into()
}

/// `REF` or `REF=NAME`. A bare REF without a registry comes from --source; the
/// bundle name is REF's registry-relative path. `REF@sha256:…` keeps digests.
fn parse_extra(spec: &str, source: &str) -> Result<Planned> {
    let (r, name) = match spec.split_once('=') {
        Some((r, n)) => (r, Some(n)),
        None => (spec, None),
    };
    let mut source_ref = Reference::parse(r).with_context(|| format!("--extra-image {spec}"))?;
    if source_ref.registry.is_none() {
        source_ref.registry = Some(source.to_string());
    }
    let name = match name {
        Some(n) => {
            let nr = Reference::parse(n).with_context(|| format!("--extra-image {spec}: name"))?;
            if nr.registry.is_some() || nr.digest.is_some() || nr.tag.is_none() {
                bail!("--extra-image {spec}: NAME must be registry-relative repo:tag, e.g. c10f/tool:v1");
            }
            nr.to_string()
        }
        None => {
            let tag = source_ref.tag.clone().or_else(|| {
                source_ref
                    .digest
                    .as_ref()
                    .map(|d| format!("sha256-{}", d.hex()))
            });
            format!(
                "{}:{}",
                source_ref.repository,
                tag.unwrap_or_else(|| "latest".into())
            )
        }
    };
    Ok(Planned {
        name,
        role: Some("extra".into()),
        preserve: source_ref.digest.is_some(),
        source: source_ref,
    })
}

/// RFC 3339 creation time and the tar mtime: now, or SOURCE_DATE_EPOCH for
/// reproducible builds.
fn creation_time() -> (String, u64) {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let s = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
    (s, secs.max(0) as u64)
}
