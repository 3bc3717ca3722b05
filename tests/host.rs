//! The isolated host as the cluster sees it: after `u7s-bundle load`, every
//! loaded name pulls with podman (containers/image, as in CRI-O) by the name
//! `registry.local/…`, with the policy.json, registries.d and
//! registries.conf.d that load wrote and no TLS override (see
//! [`common::host`]).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::host::{with_isolated_host, IsolatedHost};
use common::*;

const SET: [&str; 9] = [
    "c10f/kube-apiserver:v1.26.9",
    "c10f/kube-controller-manager:v1.26.9",
    "c10f/kube-scheduler:v1.26.9",
    "c10f/kube-proxy:v1.26.9",
    "c10f/coredns:v1.9.3",
    "c10f/pause:3.9",
    "c10f/etcd:3.5.6-0",
    "c10f/flannel:v0.26.7",
    "c10f/flannel-cni-plugin:v1.7.1-flannel1",
];

fn ub(home: &Path, args: &[&str]) -> Output {
    command(home).args(args).output().expect("run u7s-bundle")
}

/// Every name load pushes: the bundle's and the legacy `k8s-c10f2/` alias.
fn all_names() -> Vec<String> {
    SET.iter()
        .flat_map(|n| [n.to_string(), n.replacen("c10f/", "k8s-c10f2/", 1)])
        .collect()
}

/// A signed bundle built outside the isolated host (its source registry is on
/// the ordinary loopback), plus the keys.
struct Bundle {
    _src: Registry,
    home: tempfile::TempDir,
    work: tempfile::TempDir,
    archive: PathBuf,
    builder_pub: PathBuf,
}

impl Bundle {
    fn build() -> Bundle {
        let src = Registry::start();
        let work = tempfile::tempdir().unwrap();
        make_fixtures(&work.path().join("layout"), &SET, Some(&src));
        let home = tempfile::tempdir().unwrap();
        let builder = work.path().join("builder");
        stdout_ok(&ub(
            home.path(),
            &[
                "keygen",
                "--uid",
                "Builder <builder@example.org>",
                "--output",
                builder.to_str().unwrap(),
            ],
        ));
        let out = ub(
            home.path(),
            &[
                "build",
                "--platform",
                "k8s-c10f2",
                "--kube-version",
                "v1.26.9",
                "--arch",
                "amd64",
                "--source",
                &src.addr,
                "--plain-http",
                "--sign-key",
                builder.with_extension("key").to_str().unwrap(),
                "--output",
                work.path().join("bundles").to_str().unwrap(),
                "--compression",
                "zstd",
            ],
        );
        let archive = PathBuf::from(stdout_ok(&out).trim());
        Bundle {
            _src: src,
            home,
            work,
            archive,
            builder_pub: builder.with_extension("pgp"),
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    /// A signing key made by `keygen` with this uid; returns the `.key` path.
    fn keygen(&self, name: &str, uid: &str) -> PathBuf {
        let out = self.p(name);
        stdout_ok(&ub(
            self.home.path(),
            &["keygen", "--uid", uid, "--output", out.to_str().unwrap()],
        ));
        out.with_extension("key")
    }

    /// `load` on `host` with the default trust paths under /etc/containers
    /// (the namespace's own) and the writable ones under `host`'s temp dir.
    fn load(&self, host: &IsolatedHost, extra: &[&str]) -> Output {
        let sig = host.path("var/sigstore/sigstore");
        let mut args: Vec<String> = vec![
            "load".into(),
            self.archive.display().to_string(),
            "--keyring".into(),
            self.builder_pub.display().to_string(),
            "--sigstore-dir".into(),
            sig.display().to_string(),
            "--keys-dir".into(),
            host.path("var/sigstore/keys").display().to_string(),
            "--lookaside-url".into(),
            format!("file://{}", sig.display()),
            "--lock-file".into(),
            host.path("load.lock").display().to_string(),
            "--state-dir".into(),
            host.path("state").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ub(self.home.path(), &a)
    }
}

#[test]
fn every_loaded_name_pulls_with_podman_by_its_registry_local_name() {
    let b = Bundle::build();
    let key = b.keygen("imagemaker", "Image Maker <imagemaker@example.org>");
    with_isolated_host(|h| {
        stdout_ok(&b.load(h, &["--sign-key", key.to_str().unwrap()]));
        let conf_d = h.etc_containers().join("registries.conf.d");
        let dropins: Vec<_> = fs::read_dir(&conf_d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(dropins.len(), 1, "one drop-in in {}", conf_d.display());
        h.assert_pulls(&all_names());

        // A second load finds its own drop-in and writes nothing more.
        let text = stdout_ok(&b.load(h, &["--sign-key", key.to_str().unwrap()]));
        assert!(!text.contains("registries.conf.d"), "{text}");
    });
}

/// Set `h` up as podsec leaves a host: `/etc/containers/policy.json` a symlink
/// to a dated file with `signedBy keyPath …/imagemaker.pgp` (podsec's own
/// imagemaker key, made by gpg), registries.conf marking registry.local
/// insecure, registries.d with both lookaside and sigstore pairs, the sigstore
/// dir root:`group` 0775, and one image pushed and signed with that key
/// through skopeo. Returns the GnuPG home holding the key.
fn podsec_host(h: &IsolatedHost, b: &Bundle, group: u32) -> GnupgHome {
    let etc = h.etc_containers();
    let keys = h.path("var/sigstore/keys");
    let sig = h.path("var/sigstore/sigstore");
    fs::create_dir_all(&keys).unwrap();
    fs::create_dir_all(&sig).unwrap();
    std::os::unix::fs::chown(&sig, Some(0), Some(group)).unwrap();
    fs::set_permissions(&sig, std::os::unix::fs::PermissionsExt::from_mode(0o775)).unwrap();
    let gh = gnupg_home();
    let fpr = gh.gen_key("imagemaker <imagemaker@podsec.local>");
    fs::write(keys.join("imagemaker.pgp"), gh.export(&fpr)).unwrap();
    let dated = etc.join("policy.json.2026-01-01_000000");
    fs::write(
        &dated,
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"registry.local":[{{"type":"signedBy","keyType":"GPGKeys","keyPath":"{}"}}]}}}}}}"#,
            keys.join("imagemaker.pgp").display()
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(&dated, etc.join("policy.json")).unwrap();
    fs::write(
        etc.join("registries.conf"),
        "[[registry]]\nlocation = \"registry.local\"\ninsecure = true\n",
    )
    .unwrap();
    let url = format!("file://{}", sig.display());
    fs::write(
        etc.join("registries.d/default.yaml"),
        format!(
            "default-docker:\n  lookaside: {url}\n  sigstore: {url}\n  \
             lookaside-staging: {url}\n  sigstore-staging: {url}\n"
        ),
    )
    .unwrap();
    let out = skopeo_env(
        [
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--sign-by",
            &fpr,
            &format!("oci:{}:c10f/pause:3.9", b.p("layout").display()),
            "docker://registry.local/podsec/old:1",
        ],
        &[("GNUPGHOME", gh.path().to_str().unwrap())],
    );
    assert_success(&out, "skopeo copy --sign-by (podsec's imagemaker)");
    gh
}

#[test]
fn a_host_podsec_set_up_keeps_pulling_its_old_images_after_a_load() {
    let b = Bundle::build();
    // imagemaker@…, as in the guide's keygen example: the name podsec's key has.
    let key = b.keygen("imagemaker", "Image Maker <imagemaker@example.org>");
    with_isolated_host(|h| {
        let _gh = podsec_host(h, &b, 100);
        h.assert_pulls(&["podsec/old:1".to_string()]);
        let keys = h.path("var/sigstore/keys");
        let old_key = fs::read(keys.join("imagemaker.pgp")).unwrap();

        let text = stdout_ok(&b.load(h, &["--sign-key", key.to_str().unwrap()]));
        assert_eq!(
            fs::read(keys.join("imagemaker.pgp")).unwrap(),
            old_key,
            "podsec's key file replaced: {text}"
        );
        let policy: serde_json::Value =
            serde_json::from_slice(&fs::read("/etc/containers/policy.json").unwrap()).unwrap();
        let paths = policy["transports"]["docker"]["registry.local"][0]["keyPaths"]
            .as_array()
            .unwrap_or_else(|| panic!("keyPaths in {policy}"))
            .clone();
        assert_eq!(paths.len(), 2, "{paths:?}");
        // The admin's registries.conf already says insecure: no drop-in.
        assert_eq!(
            fs::read_dir(h.etc_containers().join("registries.conf.d"))
                .unwrap()
                .count(),
            0
        );
        let mut names = all_names();
        names.push("podsec/old:1".into());
        h.assert_pulls(&names);
        // What load created under the sigstore dir keeps podsec's group and
        // group write, so the imagemaker can still sign into it.
        let sigstore = h.path("var/sigstore/sigstore");
        let mut dirs = vec![sigstore.join("c10f"), sigstore.join("k8s-c10f2")];
        dirs.extend(
            fs::read_dir(sigstore.join("c10f"))
                .unwrap()
                .map(|e| e.unwrap().path()),
        );
        for d in dirs {
            use std::os::unix::fs::MetadataExt;
            let m = fs::metadata(&d).unwrap();
            assert_eq!(
                (m.gid(), m.mode() & 0o7777),
                (100, 0o775),
                "{}",
                d.display()
            );
        }

        // A re-run changes no key file and no policy.
        let text = stdout_ok(&b.load(h, &["--sign-key", key.to_str().unwrap()]));
        assert!(!text.contains(".pgp"), "{text}");
        assert!(!text.contains("policy.json"), "{text}");
    });
}

#[test]
fn a_rerun_moves_unreadable_signatures_aside_and_the_images_pull_again() {
    let b = Bundle::build();
    let key = b.keygen("imagemaker", "Image Maker <imagemaker@example.org>");
    with_isolated_host(|h| {
        stdout_ok(&b.load(h, &["--sign-key", key.to_str().unwrap()]));
        let sigstore = h.path("var/sigstore/sigstore");
        let sig1 = |repo: &str| {
            let d = fs::read_dir(sigstore.join(repo).parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .starts_with(&format!("{}@", repo.rsplit('/').next().unwrap()))
                })
                .unwrap();
            d.join("signature-1")
        };
        // Empty, and not a signature: each stops containers/image's reader.
        fs::write(sig1("c10f/pause"), b"").unwrap();
        fs::write(sig1("c10f/coredns"), b"not a signature\n").unwrap();
        assert!(!h.podman_pull("c10f/pause:3.9").status.success());

        let text = stdout_ok(&b.load(h, &["--sign-key", key.to_str().unwrap()]));
        h.assert_pulls(&all_names());
        assert_eq!(text.matches("moved aside to").count(), 2, "{text}");
        for repo in ["c10f/pause", "c10f/coredns"] {
            let dir = sig1(repo).parent().unwrap().to_path_buf();
            let mut names: Vec<String> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(names.len(), 2, "{names:?}");
            assert_eq!(names[0], "signature-1");
            assert!(names[1].starts_with("signature-1.invalid-"), "{names:?}");
        }
    });
}
