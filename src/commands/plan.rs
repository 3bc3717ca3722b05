//! `u7s-bundle plan`: the image set of a selection, offline from the profile or,
//! with `--resolve`, checked against the source registry.

use anyhow::{Context, Result};
use serde_json::json;

use super::{human_bytes, image_set, load_profiles, print_json, registry_client, select_arch};
use crate::cli::PlanArgs;
use u7s_bundle::profile::{self, ImageSet};
use u7s_bundle::pull;
use u7s_bundle::reference::Reference;
use u7s_bundle::registry::Client;

/// One image to pull: its bundle name and where it comes from.
#[derive(Clone, Debug)]
pub struct Planned {
    pub name: String,
    pub role: Option<String>,
    pub source: Reference,
    pub preserve: bool,
}

pub fn planned_images(set: &ImageSet, source: &str) -> Result<Vec<Planned>> {
    set.images
        .iter()
        .map(|img| {
            let name = img.name();
            let source = Reference::parse(&format!("{source}/{name}"))
                .with_context(|| format!("image {name} from the profile"))?;
            Ok(Planned {
                name,
                role: Some(img.role.clone()),
                source,
                preserve: false,
            })
        })
        .collect()
}

/// podsec's U7S_SETAVAILABLEIMAGES: for an image whose tag is missing on the
/// source, pull the newest tag of the same minor (sorted as versions) and name
/// it as expected. Returns a note per substitution.
pub fn substitute_missing(client: &Client, planned: &mut [Planned]) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for p in planned.iter_mut() {
        let tag = p.source.tag.clone().unwrap_or_default();
        if client.head_manifest(&p.source.repository, &tag)?.is_some() {
            continue;
        }
        let Ok(v) = tag.parse::<profile::KubeVersion>() else {
            continue;
        };
        let tags = match client.list_tags(&p.source.repository) {
            Ok(t) => t,
            // No such repository: leave the image as it is; resolving it later
            // fails and names it.
            Err(u7s_bundle::registry::RegistryError::NotFound { .. }) => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("listing the tags of {}", p.source.repository))
            }
        };
        if let Some(newest) = profile::newest_in_minor(&tags, (v.major, v.minor)) {
            notes.push(format!(
                "{}: tag {tag} is not on {}; using {newest} (same minor, newest)",
                p.name,
                client.host()
            ));
            p.source.tag = Some(newest);
        }
    }
    Ok(notes)
}

pub fn run(args: PlanArgs) -> Result<()> {
    let profiles = load_profiles(args.select.profiles_dir.as_deref())?;
    let (arch, variant) = select_arch(args.select.arch.as_deref())?;
    let set = image_set(&profiles, &args.select)?;
    let mut planned = planned_images(&set, &args.source)?;

    let mut resolved = Vec::new();
    let mut notes = Vec::new();
    if args.resolve || args.select.set_available_images {
        let client = registry_client(&args.source, args.registry.plain_http, &args.registry)?;
        if args.select.set_available_images {
            notes = substitute_missing(&client, &mut planned)?;
        }
        if args.resolve {
            for p in &planned {
                let r = pull::resolve(
                    &client,
                    &p.name,
                    p.role.as_deref(),
                    &p.source,
                    &arch,
                    variant.as_deref(),
                    false,
                )
                .with_context(|| format!("resolving {}", p.name))?;
                resolved.push(r);
            }
        }
    }

    let arch_label = match &variant {
        Some(v) => format!("{arch}/{v}"),
        None => arch.clone(),
    };
    if args.json {
        let images: Vec<_> = planned
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut o = json!({
                    "name": p.name,
                    "source": p.source.to_string(),
                    "role": p.role,
                });
                if let Some(r) = resolved.get(i) {
                    o["digest"] = json!(r.source_digest.to_string());
                    o["manifest_digest"] = json!(r.manifest_digest.to_string());
                    o["size"] = json!(image_size(r));
                }
                o
            })
            .collect();
        print_json(&json!({
            "platform": set.platform,
            "requested_platform": set.requested_platform,
            "kube_version": set.kube_version,
            "arch": arch_label,
            "flannel_tag": set.flannel_tag,
            "flannel_cni_plugin_tag": set.flannel_cni_plugin_tag,
            "images": images,
            "notes": notes,
        }));
        return Ok(());
    }
    let what = match set.kind {
        profile::PlatformKind::Base => "branch",
        profile::PlatformKind::Kubernetes => "kubernetes",
    };
    println!(
        "platform {} (asked: {}), {what} {}, arch {arch_label}",
        set.platform, set.requested_platform, set.kube_version
    );
    for (i, p) in planned.iter().enumerate() {
        match resolved.get(i) {
            Some(r) => println!(
                "  {:<48} {}  {:>10}  from {}",
                p.name,
                &r.manifest_digest.to_string()[..19],
                human_bytes(image_size(r)),
                p.source
            ),
            None => println!("  {:<48} from {}", p.name, p.source),
        }
    }
    for n in notes {
        println!("note: {n}");
    }
    Ok(())
}

/// Bytes to download for one platform: manifest + config + compressed layers.
pub fn image_size(r: &pull::ResolvedImage) -> u64 {
    r.manifest_bytes.len() as u64
        + r.manifest.config.size
        + r.manifest.layers.iter().map(|l| l.size).sum::<u64>()
}
