//! `u7s-bundle plan`: the image set of a selection, offline from the profile or,
//! with `--resolve`, checked against the source registry.

use anyhow::{Context, Result};
use serde_json::json;

use super::{
    choose_set, human_bytes, kubeadm_line, load_profiles, print_json, registry_client, select_arch,
};
use crate::cli::PlanArgs;
use u7s_bundle::plan::{image_size, planned_images, substitute_missing};
use u7s_bundle::{profile, pull};

pub fn run(args: PlanArgs) -> Result<()> {
    let profiles = load_profiles(args.select.profiles_dir.as_deref())?;
    let (arch, variant) = select_arch(args.select.arch.as_deref())?;
    let chosen = choose_set(&profiles, &args.select, args.source.clone(), None)?;
    let set = &chosen.set;
    let mut planned = planned_images(set, &chosen.source)?;

    let mut resolved = Vec::new();
    let mut notes = set.notes.clone();
    notes.extend(kubeadm_line(set, args.select.kubeadm_images.as_deref()));
    if args.resolve || chosen.set_available {
        let client = registry_client(&chosen.source, args.registry.plain_http, &args.registry)?;
        if chosen.set_available {
            notes.extend(substitute_missing(&client, &mut planned)?);
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
            "kubeadm_versions": set.kubeadm_versions,
            "source": chosen.source,
            "environment": chosen.env,
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
