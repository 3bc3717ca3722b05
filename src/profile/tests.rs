use super::*;

fn builtin() -> Profiles {
    Profiles::builtin().expect("embedded profiles load")
}

fn tag_of(set: &ImageSet, role: &str) -> String {
    set.image(role)
        .unwrap_or_else(|| panic!("no {role} in {set:?}"))
        .tag
        .clone()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn kubeadm_tags_follow_the_table() {
    let p = builtin();
    let set = p.image_set("c10f", Some("v1.26.9"), None).unwrap();
    assert_eq!(tag_of(&set, "etcd"), "3.5.6-0");
    assert_eq!(tag_of(&set, "coredns"), "v1.9.3");
    assert_eq!(tag_of(&set, "pause"), "3.9");
    assert_eq!(tag_of(&set, "kube-apiserver"), "v1.26.9");

    let set = p.image_set("c10f", Some("1.26.10"), None).unwrap();
    assert_eq!(tag_of(&set, "etcd"), "3.5.9-0");
    assert_eq!(set.kube_version, "v1.26.10");

    let set = p.image_set("p10", Some("v1.31.0"), None).unwrap();
    assert_eq!(tag_of(&set, "pause"), "3.10");
    assert_eq!(tag_of(&set, "coredns"), "v1.11.1");
    let set = p.image_set("p10", Some("v1.31.1"), None).unwrap();
    assert_eq!(tag_of(&set, "coredns"), "v1.11.3");

    let set = p.image_set("sisyphus", Some("v1.34.2"), None).unwrap();
    assert_eq!(tag_of(&set, "etcd"), "3.6.5-0");
    assert_eq!(tag_of(&set, "pause"), "3.10.1");
    let set = p.image_set("sisyphus", Some("v1.34.1"), None).unwrap();
    assert_eq!(tag_of(&set, "etcd"), "3.6.4-0");
}

#[test]
fn image_order_and_names_follow_kubeadm() {
    let set = builtin().image_set("p11", Some("v1.30.5"), None).unwrap();
    let roles: Vec<&str> = set.images.iter().map(|i| i.role.as_str()).collect();
    assert_eq!(
        roles,
        [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-proxy",
            "coredns",
            "pause",
            "etcd",
            "flannel",
            "flannel-cni-plugin"
        ]
    );
    // custom-repository form: <platform>/coredns, not <platform>/coredns/coredns
    assert_eq!(set.images[4].name(), "p11/coredns:v1.11.3");
    assert_eq!(
        set.source_reference(&set.images[0]),
        "registry.altlinux.org/p11/kube-apiserver:v1.30.5"
    );
}

#[test]
fn alias_resolves_to_canonical_platform() {
    let p = builtin();
    let set = p.image_set("k8s-c10f2", Some("v1.26.9"), None).unwrap();
    assert_eq!(set.platform, "c10f");
    assert_eq!(set.requested_platform, "k8s-c10f2");
    let set = p.image_set(" K8S-C10F2", Some("v1.26.9"), None).unwrap();
    assert_eq!(set.requested_platform, "k8s-c10f2");
    assert_eq!(set.images[0].name(), "c10f/kube-apiserver:v1.26.9");
    assert!(set.names().iter().all(|n| n.starts_with("c10f/")));
    assert_eq!(set.legacy_prefixes, ["k8s-c10f2"]);
    assert_eq!(
        set.images[6].name_under("k8s-c10f2"),
        "k8s-c10f2/etcd:3.5.6-0"
    );
    assert_eq!(p.platform("k8s-c10f1").unwrap().name, "c10f");
    assert_eq!(p.platform("k8s-p10").unwrap().name, "p10");
    assert!(p.platform("p10").unwrap().legacy_prefixes.is_empty());
}

#[test]
fn unknown_platform_lists_names_and_aliases() {
    let err = builtin().platform("k8s-p9").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ProfileError::UnknownPlatform { .. }));
    assert!(msg.contains("c10f (k8s-c10f2, k8s-c10f1)"), "{msg}");
    assert!(
        msg.contains("p11") && msg.contains("sisyphus") && msg.contains("alt"),
        "{msg}"
    );
}

#[test]
fn unknown_version_lists_known_versions_compactly() {
    let err = builtin()
        .image_set("c10f", Some("v1.25.3"), None)
        .unwrap_err();
    let ProfileError::UnknownVersion {
        platform,
        version,
        known,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(platform, "c10f");
    assert_eq!(version, "v1.25.3");
    assert_eq!(known.first().map(String::as_str), Some("v1.26.0"));
    assert_eq!(known.last().map(String::as_str), Some("v1.36.3"));
    let msg = err.to_string();
    assert!(msg.contains("1.26.0–1.26.15, 1.27.0–1.27.16"), "{msg}");
    assert!(msg.contains("1.36.0–1.36.3"), "{msg}");
    assert!(!msg.contains("1.26.3,"), "not compact: {msg}");

    // a patch newer than the table: the message says so
    let msg = builtin()
        .image_set("c10f", Some("1.36.4"), None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("newer than the newest 1.36 patch") && msg.contains("v1.36.3"),
        "{msg}"
    );
    assert!(matches!(
        builtin().image_set("c10f", Some("latest"), None),
        Err(ProfileError::UnknownVersion { .. })
    ));
}

#[test]
fn every_platform_and_version_yields_a_valid_set() {
    let p = builtin();
    let names: Vec<&str> = p.platforms().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["alt", "c10f", "p10", "p11", "sisyphus"]);
    let mut checked = 0;
    for platform in p.platforms().filter(|p| p.kind == PlatformKind::Kubernetes) {
        let versions = platform.versions();
        assert_eq!(
            versions.len(),
            16 + 17 + 16 + 16 + 15 + 15 + 14 + 14 + 11 + 8 + 4
        );
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(platform.default_version(), "v1.36.3");
        assert_eq!(platform.default_flannel(), Some("v0.26.7"));
        for v in versions {
            let set = p
                .image_set(&platform.name, Some(&v.to_string()), None)
                .unwrap();
            assert_eq!(set.images.len(), 9, "{}", v);
            for image in &set.images {
                assert!(
                    crate::reference::Reference::parse(&image.name()).is_ok(),
                    "{}",
                    image.name()
                );
                assert!(image.repository.starts_with(&format!("{}/", platform.name)));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * 146);
}

#[test]
fn default_version_is_the_newest() {
    let set = builtin().image_set("p10", None, None).unwrap();
    assert_eq!(set.kube_version, "v1.36.3");
    assert_eq!(set.flannel_tag.as_deref(), Some("v0.26.7"));
    assert_eq!(
        set.flannel_cni_plugin_tag.as_deref(),
        Some("v1.7.1-flannel1")
    );
    // a minor stands for its newest patch
    let set = builtin().image_set("p10", Some("1.30"), None).unwrap();
    assert_eq!(set.kube_version, "v1.30.14");
}

#[test]
fn flannel_table_is_what_podsecs_manifests_deploy() {
    let p = builtin();
    // alt-cloud/podsec usernetes/manifests/kube-flannel/0/26/7/kube-flannel.yml
    assert_eq!(p.flannel_cni_plugin("v0.26.7").unwrap(), "v1.7.1-flannel1");
    assert_eq!(p.flannel_cni_plugin("v0.22.0").unwrap(), "v1.1.2");
    assert_eq!(p.flannel_cni_plugin("v0.25.7").unwrap(), "v1.4.0-flannel1");
    let set = p.image_set("c10f", Some("v1.26.9"), None).unwrap();
    assert!(set
        .names()
        .contains(&"c10f/flannel-cni-plugin:v1.7.1-flannel1".to_string()));
    let set = p
        .image_set("c10f", Some("v1.26.9"), Some("0.22.0"))
        .unwrap();
    assert_eq!(set.flannel_tag.as_deref(), Some("v0.22.0"));
    assert_eq!(tag_of(&set, "flannel"), "v0.22.0");
    assert_eq!(tag_of(&set, "flannel-cni-plugin"), "v1.1.2");
    assert!(set.notes.is_empty(), "{:?}", set.notes);
}

#[test]
fn a_manifest_deploying_another_flannel_is_said_and_carried() {
    let p = builtin();
    for (asked, deployed) in [
        ("v0.19.0", "v0.18.1"),
        ("v0.19.1", "v0.19.0"),
        ("v0.21.0", "v0.20.2"),
        ("v0.21.2", "v0.20.2"),
        ("v0.23.0", "v0.22.3"),
    ] {
        let set = p.image_set("c10f", Some("v1.26.9"), Some(asked)).unwrap();
        // the one the cluster runs first, then the one podsec's wrapper pre-pulls
        assert_eq!(tag_of(&set, "flannel"), deployed, "{asked}");
        let names = set.names();
        assert!(
            names.contains(&format!("c10f/flannel:{asked}")),
            "{names:?}"
        );
        assert_eq!(set.flannel_tag.as_deref(), Some(asked));
        assert!(
            set.notes
                .iter()
                .any(|n| n.contains(asked) && n.contains(deployed)),
            "{asked}: {:?}",
            set.notes
        );
    }
}

#[test]
fn a_flannel_without_a_podsec_manifest_is_refused_naming_the_known() {
    let p = builtin();
    for tag in ["v0.18.1", "v0.26.6", "v0.27.0", "latest"] {
        let err = p.image_set("c10f", None, Some(tag)).unwrap_err();
        assert!(matches!(err, ProfileError::UnknownFlannel { .. }), "{tag}");
        let msg = err.to_string();
        assert!(
            msg.contains("v0.19.0")
                && msg.contains("v0.26.7")
                && msg.contains("--flannel-manifest"),
            "{msg}"
        );
    }
}

/// A kube-flannel.yml laid out as podsec installs it (the shape of podsec's
/// 0/21/0 manifest: upstream names, a flannel tag other than the directory's).
const KUBE_FLANNEL_YML: &str = r#"---
kind: Namespace
apiVersion: v1
metadata:
  name: kube-flannel
---
kind: ConfigMap
apiVersion: v1
metadata:
  name: kube-flannel-cfg
data:
  net-conf.json: "{}"
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-flannel-ds
spec:
  template:
    spec:
      initContainers:
      - name: install-cni-plugin
        image: docker.io/flannel/flannel-cni-plugin:v1.1.2
       #image: docker.io/rancher/mirrored-flannelcni-flannel-cni-plugin:v1.1.2
      - name: install-cni
        image: docker.io/flannel/flannel:v0.20.2
      containers:
      - name: kube-flannel
        image: docker.io/flannel/flannel:v0.20.2
"#;

#[test]
fn flannel_manifest_file_gives_the_images() {
    let m = flannel_images_from_manifest(KUBE_FLANNEL_YML).unwrap();
    assert_eq!(
        m,
        FlannelImages {
            flannel: "v0.20.2".into(),
            cni_plugin: "v1.1.2".into()
        }
    );
    // a tag podsec has no manifest for is accepted with the file
    let opts = SetOptions {
        kube_version: Some("v1.26.9".into()),
        flannel_tag: Some("v0.27.0".into()),
        flannel_manifest: Some(m.clone()),
        ..SetOptions::default()
    };
    let set = builtin().image_set_with("c10f", &opts).unwrap();
    assert_eq!(tag_of(&set, "flannel"), "v0.20.2");
    assert_eq!(tag_of(&set, "flannel-cni-plugin"), "v1.1.2");
    // without --flannel-tag the manifest's flannel is the one asked for
    let opts = SetOptions {
        flannel_tag: None,
        ..opts
    };
    let set = builtin().image_set_with("c10f", &opts).unwrap();
    assert_eq!(set.flannel_tag.as_deref(), Some("v0.20.2"));
    for bad in [
        "kind: ConfigMap\n",
        "kind: DaemonSet\nspec: {template: {spec: {containers: [{image: \"x/flannel\"}]}}}\n",
        "kind: DaemonSet\nspec: {template: {spec: {containers: [{image: \"x/flannel:v1\"}]}}}\n",
    ] {
        assert!(flannel_images_from_manifest(bad).is_err(), "{bad}");
    }
    // podsec's own manifests, read by the same rule, agree with the table
    let podsec_0_26_7 = "kind: DaemonSet\nspec:\n  template:\n    spec:\n      initContainers:\n      - image: registry.altlinux.org/c10f/flannel-cni-plugin:v1.7.1-flannel1\n      - image: registry.altlinux.org/c10f/flannel:v0.26.7\n      containers:\n      - image: registry.altlinux.org/c10f/flannel:v0.26.7\n";
    let m = flannel_images_from_manifest(podsec_0_26_7).unwrap();
    assert_eq!(builtin().flannel_deployed("v0.26.7").unwrap(), &m);
}

#[test]
fn flannel_cni_plugin_tag_is_carried_besides_the_deployed_one() {
    let opts = SetOptions {
        kube_version: Some("v1.26.9".into()),
        flannel_cni_plugin_tag: Some("v1.6.2-flannel1".into()),
        ..SetOptions::default()
    };
    let set = builtin().image_set_with("c10f", &opts).unwrap();
    let names = set.names();
    assert!(names.contains(&"c10f/flannel-cni-plugin:v1.7.1-flannel1".to_string()));
    assert!(names.contains(&"c10f/flannel-cni-plugin:v1.6.2-flannel1".to_string()));
    // the deployed one is what the wrapper gets as the set's plugin tag
    assert_eq!(
        set.flannel_cni_plugin_tag.as_deref(),
        Some("v1.7.1-flannel1")
    );
    assert!(set.notes.iter().any(|n| n.contains("v1.6.2-flannel1")));
}

#[test]
fn kubeadm_version_picks_pause_etcd_coredns() {
    let p = builtin();
    let opts = |kubeadm: &[&str]| SetOptions {
        kube_version: Some("v1.26.9".into()),
        kubeadm_versions: strings(kubeadm),
        ..SetOptions::default()
    };
    // default: the kubeadm of the version itself
    let set = p.image_set_with("c10f", &opts(&[])).unwrap();
    assert_eq!(tag_of(&set, "etcd"), "3.5.6-0");
    assert_eq!(set.kubeadm_versions, strings(&["v1.26.9"]));
    // a host with kubeadm 1.26.15 asked for v1.26.9 wants etcd 3.5.10-0
    let set = p.image_set_with("c10f", &opts(&["v1.26.15"])).unwrap();
    assert_eq!(tag_of(&set, "etcd"), "3.5.10-0");
    assert_eq!(tag_of(&set, "kube-apiserver"), "v1.26.9");
    assert_eq!(set.kubeadm_versions, strings(&["v1.26.15"]));
    // a mixed fleet: the union, one copy of what they share
    let set = p
        .image_set_with("c10f", &opts(&["v1.26.9", "1.26.15", "v1.26.11"]))
        .unwrap();
    let etcd: Vec<&str> = set
        .images
        .iter()
        .filter(|i| i.role == "etcd")
        .map(|i| i.tag.as_str())
        .collect();
    assert_eq!(etcd, ["3.5.6-0", "3.5.10-0", "3.5.9-0"]);
    assert_eq!(set.images.iter().filter(|i| i.role == "pause").count(), 1);
    // another minor, or a release the table lacks, is refused with what to do
    let err = p.image_set_with("c10f", &opts(&["v1.27.3"])).unwrap_err();
    assert!(matches!(err, ProfileError::KubeadmMinor { .. }), "{err}");
    let err = p.image_set_with("c10f", &opts(&["v1.26.16"])).unwrap_err();
    assert!(matches!(err, ProfileError::UnknownKubeadm { .. }), "{err}");
    assert!(err.to_string().contains("1.26.0–1.26.15"), "{err}");
}

#[test]
fn kubeadm_images_listing_is_the_exact_set() {
    let listing = "registry.local/c10f/kube-apiserver:v1.26.9
registry.local/c10f/kube-controller-manager:v1.26.9
registry.local/c10f/kube-scheduler:v1.26.9
registry.local/c10f/kube-proxy:v1.26.9
registry.local/c10f/coredns:v1.9.3
registry.local/c10f/pause:3.9
registry.local/c10f/etcd:3.5.10-0
";
    let listed = parse_kubeadm_images(listing).unwrap();
    let opts = SetOptions {
        kubeadm_images: Some(listed.clone()),
        ..SetOptions::default()
    };
    let set = builtin().image_set_with("c10f", &opts).unwrap();
    assert_eq!(set.kube_version, "v1.26.9");
    assert_eq!(tag_of(&set, "etcd"), "3.5.10-0");
    assert_eq!(set.images.len(), 9);
    assert!(set.kubeadm_versions.is_empty());
    // the upstream form (registry.k8s.io/coredns/coredns) names the same image
    let upstream = listing.replace(
        "registry.local/c10f/coredns",
        "registry.k8s.io/coredns/coredns",
    );
    assert_eq!(parse_kubeadm_images(&upstream).unwrap(), listed);
    let opts = SetOptions {
        kube_version: Some("v1.26.10".into()),
        ..opts
    };
    let err = builtin().image_set_with("c10f", &opts).unwrap_err();
    assert!(
        matches!(err, ProfileError::KubeadmImagesVersion { .. }),
        "{err}"
    );
    for bad in [
        "",
        "registry.local/c10f/pause:3.9\n",
        "x/kube-apiserver\n",
        "x/kube-apiserver:v1.26.9\nx/nginx:1\n",
    ] {
        assert!(parse_kubeadm_images(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn base_platform_versions_are_branches() {
    let p = builtin();
    let set = p.image_set("alt", Some("p10"), None).unwrap();
    assert_eq!(set.kind, PlatformKind::Base);
    assert_eq!(set.names(), ["alt/alt:p10", "alt/distroless-base:p10"]);
    assert_eq!(set.kube_version, "p10");
    assert_eq!(set.flannel_tag, None);
    assert_eq!(p.image_set("alt", None, None).unwrap().kube_version, "p11");
    // a kubernetes platform (or alias) stands for its base branch
    assert_eq!(
        p.image_set("alt", Some("k8s-c10f2"), None)
            .unwrap()
            .kube_version,
        "c10f2"
    );
    assert_eq!(
        p.image_set("alt", Some("c10f"), None).unwrap().kube_version,
        "c10f2"
    );
    let err = p.image_set("alt", Some("p9"), None).unwrap_err();
    assert!(
        err.to_string().contains("c10f2, p10, p11, sisyphus"),
        "{err}"
    );
    assert!(matches!(
        p.image_set("alt", None, Some("v0.26.7")),
        Err(ProfileError::NotApplicable { .. })
    ));
    assert!(p.platform("alt").unwrap().versions().is_empty());
}

#[test]
fn kube_version_parsing() {
    let v: KubeVersion = "v1.26.9".parse().unwrap();
    assert_eq!(v, KubeVersion::new(1, 26, 9));
    assert_eq!("1.26.9".parse::<KubeVersion>().unwrap(), v);
    assert_eq!(v.to_string(), "v1.26.9");
    for bad in [
        "1.26",
        "v1.26.9.1",
        "1.26.09",
        "v1.26.9-rc.0",
        "",
        "v",
        "1..9",
        "+1.2.3",
    ] {
        assert!(bad.parse::<KubeVersion>().is_err(), "{bad:?} accepted");
    }
    assert!(KubeVersion::new(1, 28, 10) > KubeVersion::new(1, 28, 9));
    assert!(KubeVersion::new(1, 3, 0) < KubeVersion::new(1, 26, 0));
}

#[test]
fn tags_sort_as_versions() {
    let tags = strings(&[
        "v1.28.9",
        "latest",
        "v1.28.10",
        "v1.28.10-rc.1",
        "v1.27.16",
        "v1.28.2",
    ]);
    assert_eq!(
        sort_tags_as_versions(&tags),
        strings(&[
            "latest",
            "v1.27.16",
            "v1.28.2",
            "v1.28.9",
            "v1.28.10-rc.1",
            "v1.28.10"
        ])
    );
    assert_eq!(newest_in_minor(&tags, (1, 28)).as_deref(), Some("v1.28.10"));
    assert_eq!(newest_in_minor(&tags, (1, 27)).as_deref(), Some("v1.27.16"));
    assert_eq!(newest_in_minor(&tags, (1, 29)), None);
    // a pre-release only when nothing else is there
    let tags = strings(&["v1.29.0-rc.2", "v1.29.0-rc.10", "v1.29.0-alpha.1"]);
    assert_eq!(
        newest_in_minor(&tags, (1, 29)).as_deref(),
        Some("v1.29.0-rc.10")
    );
    let tags = strings(&["v1.29.1-rc.0", "v1.29.0"]);
    assert_eq!(newest_in_minor(&tags, (1, 29)).as_deref(), Some("v1.29.0"));
    // etcd-style tags are all suffixed: still sorted numerically
    let tags = strings(&["3.5.9-0", "3.5.10-0", "3.5.6-0"]);
    assert_eq!(newest_in_minor(&tags, (3, 5)).as_deref(), Some("3.5.10-0"));
}

#[test]
fn compact_ranges() {
    let v = |p| KubeVersion::new(1, 26, p);
    assert_eq!(
        compact_versions(&[v(0), v(1), v(2), v(5), KubeVersion::new(1, 27, 0)]),
        "1.26.0–1.26.2, 1.26.5, 1.27.0"
    );
}

const KUBEADM: &str = r#"kubeadm = [
  { minor = "1.26", patches = "0-9", pause = "3.9", etcd = "3.5.6-0", coredns = "v1.9.3" },
  { minor = "1.27", patches = "0-1", pause = "3.9", etcd = "3.5.7-0", coredns = "v1.10.1" },
]
[flannel]
default = "v0.26.7"
manifests = [{ tag = "v0.26.7", cni_plugin = "v1.7.1-flannel1" }]
"#;

fn load(platform: &str) -> Result<Profiles, ProfileError> {
    Profiles::from_files([("shared.toml", KUBEADM), ("platform.toml", platform)])
}

#[test]
fn profile_strings_are_validated() {
    let good = "[[platform]]\nname = \"x\"\nkind = \"kubernetes\"\ndescription = \"d\"\n";
    assert!(load(good).is_ok());
    for bad in [
        good.replace("name = \"x\"", "name = \"../x\""),
        good.replace("name = \"x\"", "name = \"a/b\""),
        good.replace("name = \"x\"", "name = \"X\""),
        format!("{good}aliases = [\"..\"]\n"),
        format!("{good}legacy_prefixes = [\"k8s/../../etc\"]\n"),
        format!("{good}registry = \"evil/path\"\n"),
        good.replace("description = \"d\"", "description = \"a\\u001b[2Jb\""),
        format!("{good}unknown_key = 1\n"),
        format!("{good}flannel = \"v0.1.0\"\n"),
        format!("{good}kube_versions = \">=1.40\"\n"),
        format!("{good}images = [\"alt\"]\n"),
    ] {
        let err = load(&bad).expect_err(&bad);
        assert!(matches!(err, ProfileError::Invalid { .. }), "{err:?}");
    }
    let err = load(&good.replace("name = \"x\"", "name = \"../x\"")).unwrap_err();
    assert!(err.to_string().contains("platform name \"../x\""), "{err}");
    let base =
        "[[platform]]\nname = \"b\"\nkind = \"base\"\ndescription = \"d\"\nbranches = [\"p10\"]\n";
    assert!(load(&format!("{base}images = [\"alt\"]\n")).is_ok());
    for images in ["[\"../x\"]", "[\"a//b\"]", "[]"] {
        assert!(
            load(&format!("{base}images = {images}\n")).is_err(),
            "{images}"
        );
    }
    let err =
        load(&format!("{base}images = [\"alt\"]\n").replace("\"p10\"", "\"../p10\"")).unwrap_err();
    assert!(err.to_string().contains("branch"), "{err}");
}

#[test]
fn kubeadm_rows_are_validated() {
    let platform = "[[platform]]\nname = \"x\"\nkind = \"kubernetes\"\ndescription = \"d\"\n";
    let row = |s: &str| format!("kubeadm = [{s}]\n");
    for bad in [
        // overlaps the shared 1.26.0-9 row
        row(
            r#"{ minor = "1.26", patches = "9-10", pause = "3.9", etcd = "3.5.9-0", coredns = "v1.9.3" }"#,
        ),
        // leaves 1.26.10 out
        row(
            r#"{ minor = "1.26", patches = "11", pause = "3.9", etcd = "3.5.9-0", coredns = "v1.9.3" }"#,
        ),
        row(
            r#"{ minor = "1.28", patches = "0-2", pause = "../3.9", etcd = "3.5.9-0", coredns = "v1.9.3" }"#,
        ),
        row(
            r#"{ minor = "1.28", patches = "5-2", pause = "3.9", etcd = "3.5.9-0", coredns = "v1.9.3" }"#,
        ),
        row(
            r#"{ minor = "v1.28", patches = "0", pause = "3.9", etcd = "3.5.9-0", coredns = "v1.9.3" }"#,
        ),
    ] {
        let text = format!("{bad}{platform}");
        assert!(load(&text).is_err(), "{text}");
    }
    // adding a patch is one line
    let extra = row(
        r#"{ minor = "1.26", patches = "10", pause = "3.9", etcd = "3.5.9-0", coredns = "v1.9.3" }"#,
    );
    let p = load(&format!("{extra}{platform}")).unwrap();
    let set = p.image_set("x", Some("v1.26.10"), None).unwrap();
    assert_eq!(tag_of(&set, "etcd"), "3.5.9-0");
}

#[test]
fn kube_versions_restricts_a_platform() {
    let platform = |req: &str| {
        format!("[[platform]]\nname = \"x\"\nkind = \"kubernetes\"\ndescription = \"d\"\nkube_versions = \"{req}\"\n")
    };
    let p = load(&platform(">=1.27")).unwrap();
    assert_eq!(
        p.platform("x").unwrap().versions(),
        [KubeVersion::new(1, 27, 0), KubeVersion::new(1, 27, 1)]
    );
    let p = load(&platform("=1.26.6 || =1.26.9")).unwrap();
    let x = p.platform("x").unwrap();
    assert_eq!(
        x.versions(),
        [KubeVersion::new(1, 26, 6), KubeVersion::new(1, 26, 9)]
    );
    assert_eq!(x.default_version(), "v1.26.9");
    assert!(p.image_set("x", Some("v1.26.7"), None).is_err());
    let p = load(&platform("<=1.26, >1.26.7")).unwrap();
    assert_eq!(p.platform("x").unwrap().version_summary(), "1.26.8–1.26.9");
    assert!(load(&platform(">=1.26.x")).is_err());
}

#[test]
fn names_and_legacy_prefixes_are_unique() {
    let two = "[[platform]]\nname = \"a\"\nkind = \"kubernetes\"\ndescription = \"d\"\naliases = [\"k8s-a\"]\n\
               [[platform]]\nname = \"b\"\nkind = \"kubernetes\"\ndescription = \"d\"\n";
    assert!(load(two).is_ok());
    assert!(load(&two.replace("\"k8s-a\"", "\"b\"")).is_err());
    // a legacy prefix pointing into another platform's namespace
    assert!(load(&format!("{two}legacy_prefixes = [\"a\"]\n")).is_err());
    assert!(load(&format!("{two}legacy_prefixes = [\"k8s-a\"]\n")).is_err());
    assert!(load(&format!("{two}legacy_prefixes = [\"k8s-b\"]\n")).is_ok());
}

#[test]
fn load_dir_overlays_the_builtin_files() {
    let dir = tempfile::tempdir().unwrap();
    // one more patch, without touching the embedded kubeadm.toml
    std::fs::write(
        dir.path().join("local.toml"),
        r#"kubeadm = [{ minor = "1.36", patches = "4", pause = "3.10.2", etcd = "3.6.8-0", coredns = "v1.14.2" }]"#,
    )
    .unwrap();
    // an emptied file removes a platform
    std::fs::write(dir.path().join("p10.toml"), "").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a profile").unwrap();
    let p = Profiles::load_dir(dir.path()).unwrap();
    assert_eq!(p.platform("c10f").unwrap().default_version(), "v1.36.4");
    assert!(p.platform("p10").is_err());

    std::fs::write(
        dir.path().join("bad.toml"),
        "[[platform]]\nname = \"../x\"\nkind = \"base\"\ndescription = \"\"\n",
    )
    .unwrap();
    let err = Profiles::load_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("bad.toml"), "{err}");
    assert!(matches!(
        Profiles::load_dir(&dir.path().join("missing")),
        Err(ProfileError::Io { .. })
    ));
}
