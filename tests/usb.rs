//! USB delivery: a bundle split into volumes (each checked alone, all read as
//! one stream) and deltas against what the isolated registry already holds —
//! with real registries, and skopeo as the verifier.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

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

struct Site {
    src: Registry,
    home: tempfile::TempDir,
    work: tempfile::TempDir,
    builder_key: PathBuf,
    builder_pub: PathBuf,
    signer_key: PathBuf,
}

impl Site {
    fn new() -> Site {
        let src = Registry::start();
        let work = tempfile::tempdir().unwrap();
        make_fixtures(&work.path().join("layout"), &SET, Some(&src));
        let home = tempfile::tempdir().unwrap();
        let mut keys = Vec::new();
        for who in ["builder", "imagemaker"] {
            let p = work.path().join(who);
            stdout_ok(&ub(
                home.path(),
                &[
                    "keygen",
                    "--uid",
                    &format!("{who} <{who}@example.org>"),
                    "--output",
                    p.to_str().unwrap(),
                ],
            ));
            keys.push(p);
        }
        Site {
            src,
            home,
            work,
            builder_key: keys[0].with_extension("key"),
            builder_pub: keys[0].with_extension("pgp"),
            signer_key: keys[1].with_extension("key"),
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    fn ub(&self, args: &[&str]) -> Output {
        ub(self.home.path(), args)
    }

    /// `build` into `out` with `extra` options; stdout's last line.
    fn build(&self, out: &str, extra: &[&str]) -> PathBuf {
        let dir = self.p(out);
        let mut args = vec![
            "build",
            "--platform",
            "k8s-c10f2",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--source",
            &self.src.addr,
            "--plain-http",
            "--sign-key",
            self.builder_key.to_str().unwrap(),
            "--output",
            dir.to_str().unwrap(),
            "--compression",
            "zstd",
        ];
        args.extend_from_slice(extra);
        let text = stdout_ok(&self.ub(&args));
        PathBuf::from(text.lines().last().unwrap().trim())
    }

    fn load_args(&self, target: &Registry, archive: &Path, tag: &str) -> Vec<String> {
        let d = |rel: &str| self.p(&format!("{tag}/{rel}")).display().to_string();
        [
            "load",
            &archive.display().to_string(),
            "--keyring",
            self.builder_pub.to_str().unwrap(),
            "--sign-key",
            self.signer_key.to_str().unwrap(),
            "--registry",
            &target.addr,
            "--plain-http",
            "--sigstore-dir",
            &d("sigstore"),
            "--keys-dir",
            &d("keys"),
            "--policy",
            &d("policy.json"),
            "--registries-d",
            &d("registries.d"),
            "--lookaside-url",
            &format!("file://{}", d("sigstore")),
            "--lock-file",
            &d("load.lock"),
            "--state-dir",
            &d("state"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn load(&self, target: &Registry, archive: &Path, tag: &str) -> Output {
        let args = self.load_args(target, archive, tag);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ub(&a)
    }

    fn verify(&self, args: &[&str]) -> Output {
        let mut a = vec!["verify", "--keyring", self.builder_pub.to_str().unwrap()];
        a.extend_from_slice(args);
        self.ub(&a)
    }
}

/// No tag of the set in `r`.
fn assert_untagged(r: &Registry, what: &str) {
    for name in SET {
        let repo = name.split(':').next().unwrap();
        assert!(r.tags(repo).is_empty(), "{what}: {repo} got a tag");
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn volume(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("c10f-v1.26.9-amd64.u7s.tar.zst.{n:03}"))
}

#[test]
fn a_split_set_verifies_volume_by_volume_refuses_each_fault_and_loads() {
    let s = Site::new();
    let single = s.build("single", &[]);
    let size = fs::metadata(&single).unwrap().len();
    let vsize = (size / 4).max(4096).to_string();
    let index = s.build("vols", &["--volume-size", &vsize]);
    let vols = s.p("vols");
    assert_eq!(
        index.file_name().unwrap(),
        "c10f-v1.26.9-amd64.u7s.volumes.json"
    );
    let idx: serde_json::Value = serde_json::from_slice(&fs::read(&index).unwrap()).unwrap();
    let count = idx["volume_count"].as_u64().unwrap() as usize;
    assert!(count >= 3, "{count} volumes of {vsize} bytes for {size}");
    // The volumes are the single file, cut.
    let mut joined = Vec::new();
    for n in 1..=count {
        let v = fs::read(volume(&vols, n)).unwrap();
        assert!(v.len() as u64 <= vsize.parse::<u64>().unwrap());
        joined.extend(v);
    }
    assert_eq!(joined.len() as u64, idx["total_size"].as_u64().unwrap());
    // Joined, they are an ordinary archive for the tools a user has.
    let j = s.p("joined.tar.zst");
    fs::write(&j, &joined).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | tar tf - | head -1", j.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "bundle.json");
    assert!(vols
        .join("c10f-v1.26.9-amd64.u7s.volumes.json.sig")
        .exists());

    // Each volume alone, from a "stick" holding only it and the index.
    for n in 1..=count {
        let stick = s.p(&format!("stick{n}"));
        fs::create_dir_all(&stick).unwrap();
        fs::copy(volume(&vols, n), volume(&stick, n)).unwrap();
        fs::copy(&index, stick.join(index.file_name().unwrap())).unwrap();
        fs::copy(
            vols.join("c10f-v1.26.9-amd64.u7s.volumes.json.sig"),
            stick.join("c10f-v1.26.9-amd64.u7s.volumes.json.sig"),
        )
        .unwrap();
        let out = s.verify(&[
            volume(&stick, n).to_str().unwrap(),
            "--volumes",
            stick.join(index.file_name().unwrap()).to_str().unwrap(),
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&stdout_ok(&out)).unwrap();
        assert_eq!(v["number"], n);
        assert_eq!(v["signed"], true);
        assert_eq!(v["missing"].as_array().unwrap().len(), count - 1, "{v}");
    }
    // A volume altered on its stick fails alone, named.
    let stick2 = s.p("stick2");
    let mut b = fs::read(volume(&stick2, 2)).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    fs::write(volume(&stick2, 2), &b).unwrap();
    let out = s.verify(&[
        volume(&stick2, 2).to_str().unwrap(),
        "--volumes",
        index.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("volume 2 of"), "{}", stderr(&out));

    // Each fault: refused by verify and load, naming the volume, no tag set.
    let target = Registry::start();
    let last = count;
    type Fault = Box<dyn Fn(&Path)>;
    let faults: Vec<(&str, Fault, String)> = vec![
        (
            "byte flipped in volume 2",
            Box::new(|d| {
                let p = volume(d, 2);
                let mut b = fs::read(&p).unwrap();
                let i = b.len() / 3;
                b[i] ^= 0x20;
                fs::write(&p, &b).unwrap();
            }),
            format!("volume 2 of {count}"),
        ),
        (
            "volume 3 missing",
            Box::new(|d| fs::remove_file(volume(d, 3)).unwrap()),
            format!("volume 3 of {count}"),
        ),
        (
            "volumes 1 and 2 swapped",
            Box::new(|d| {
                let t = d.join("t");
                fs::rename(volume(d, 1), &t).unwrap();
                fs::rename(volume(d, 2), volume(d, 1)).unwrap();
                fs::rename(&t, volume(d, 2)).unwrap();
            }),
            format!("volume 1 of {count}"),
        ),
        (
            "an extra volume",
            Box::new(move |d| {
                fs::copy(volume(d, 1), volume(d, last + 1))
                    .map(drop)
                    .unwrap()
            }),
            volume(Path::new(""), last + 1).display().to_string(),
        ),
        (
            "last volume truncated",
            Box::new(move |d| {
                let p = volume(d, last);
                let b = fs::read(&p).unwrap();
                fs::write(&p, &b[..b.len() / 2]).unwrap();
            }),
            format!("volume {last} of {count}"),
        ),
    ];
    for (i, (what, fault, names)) in faults.iter().enumerate() {
        let d = s.p(&format!("fault{i}"));
        copy_dir(&vols, &d);
        fault(&d);
        let idx = d.join(index.file_name().unwrap());
        let out = s.verify(&[idx.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "verify, {what}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(names.as_str()),
            "verify, {what}: {}",
            stderr(&out)
        );
        let out = s.load(&target, &idx, &format!("t{i}"));
        assert_eq!(out.status.code(), Some(3), "load, {what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(names.as_str()),
            "load, {what}: {}",
            stderr(&out)
        );
        assert_untagged(&target, what);
    }

    // The intact set, from its first volume: verifies, loads, and every
    // image passes skopeo with the policy load wrote.
    stdout_ok(&s.verify(&[index.to_str().unwrap()]));
    let inspect = stdout_ok(&s.ub(&["inspect", volume(&vols, 1).to_str().unwrap()]));
    assert!(inspect.contains("v1.26.9"), "{inspect}");
    stdout_ok(&s.load(&target, &volume(&vols, 1), "ok"));
    for name in SET {
        let dest = s.p(&format!("pulled/{}", name.replace(['/', ':'], "_")));
        fs::create_dir_all(&dest).unwrap();
        let out = skopeo([
            "--policy",
            s.p("ok/policy.json").to_str().unwrap(),
            "--registries.d",
            s.p("ok/registries.d").to_str().unwrap(),
            "copy",
            "--src-tls-verify=false",
            &target.docker_ref(name),
            &format!("dir:{}", dest.display()),
        ]);
        assert_success(&out, &format!("skopeo copy {name}"));
    }
}

/// One drive: load asks for each volume in turn and checks it before reading on.
#[test]
fn wait_for_volumes_asks_for_each_volume_and_checks_it() {
    let s = Site::new();
    let single = s.build("single", &[]);
    let vsize = (fs::metadata(&single).unwrap().len() / 3 + 1).max(4096);
    let index = s.build("vols", &["--volume-size", &vsize.to_string()]);
    let vols = s.p("vols");
    let count = (1..).take_while(|&n| volume(&vols, n).exists()).count();
    assert!(count >= 3);
    let drive = s.p("drive");
    fs::create_dir_all(&drive).unwrap();
    for f in [
        index.file_name().unwrap().to_owned(),
        "c10f-v1.26.9-amd64.u7s.volumes.json.sig".into(),
    ] {
        fs::copy(vols.join(&f), drive.join(&f)).unwrap();
    }
    fs::copy(volume(&vols, 1), volume(&drive, 1)).unwrap();
    let target = Registry::start();
    let mut args = s.load_args(&target, &volume(&drive, 1), "w");
    args.push("--wait-for-volumes".into());
    let mut child = command(s.home.path())
        .args(&args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let err = BufReader::new(child.stderr.take().unwrap());
    let mut asked = Vec::new();
    let mut rest = String::new();
    for line in err.lines() {
        let line = line.unwrap();
        if let Some(n) = line
            .strip_prefix("insert volume ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
        {
            assert!(
                line.ends_with(&format!("of {count}, then press Enter")),
                "{line}"
            );
            asked.push(n);
            // The drive now holds volume n only; the first time volume 3 is
            // asked for, a damaged copy is offered first.
            for k in 1..=count {
                let _ = fs::remove_file(volume(&drive, k));
            }
            if n == 3 && asked.iter().filter(|&&k| k == 3).count() == 1 {
                let mut b = fs::read(volume(&vols, 3)).unwrap();
                b[7] ^= 1;
                fs::write(volume(&drive, 3), b).unwrap();
            } else {
                fs::copy(volume(&vols, n), volume(&drive, n)).unwrap();
            }
            stdin.write_all(b"\n").unwrap();
        } else {
            rest.push_str(&line);
            rest.push('\n');
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest}");
    // The damaged volume 3 was refused, named, and asked for again.
    assert!(
        rest.contains(&format!("volume 3 of {count} (")) && rest.contains("does not match"),
        "{rest}"
    );
    let mut want: Vec<usize> = (2..=count).collect();
    want.insert(2, 3);
    assert_eq!(asked, want, "{rest}");
    for name in SET {
        let (repo, tag) = name.split_once(':').unwrap();
        assert_eq!(target.tags(repo), [tag.to_string()], "{name}");
    }
}

/// An inventory of the isolated registry, carried back; a delta built
/// against it leaves out what that registry holds, loads there, and is
/// refused — naming the missing layers, no tag set — by an empty one.
#[test]
fn an_inventory_delta_loads_where_it_was_taken_and_is_refused_elsewhere() {
    let s = Site::new();
    make_fixtures(&s.p("layout2"), &["apps/tool:v1"], Some(&s.src));
    let full = s.build("full", &[]);
    let target = Registry::start();
    stdout_ok(&s.load(&target, &full, "a"));

    let inv = s.p("inventory.json");
    stdout_ok(&s.ub(&[
        "inventory",
        "--registry",
        &target.addr,
        "--plain-http",
        "--output",
        inv.to_str().unwrap(),
    ]));
    let i: serde_json::Value = serde_json::from_slice(&fs::read(&inv).unwrap()).unwrap();
    assert_eq!(i["format"], "u7s-inventory");
    assert!(
        i["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "c10f/kube-apiserver:v1.26.9"),
        "{i}"
    );

    let delta = s.build(
        "delta",
        &[
            "--base",
            inv.to_str().unwrap(),
            "--extra-image",
            "apps/tool:v1",
        ],
    );
    let shown: serde_json::Value = serde_json::from_str(&stdout_ok(&s.ub(&[
        "inspect",
        delta.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    let omitted = shown["delta"]["omitted"].as_u64().unwrap();
    assert!(omitted > 0, "{shown}");
    assert!(shown["delta"]["bytes_saved"].as_u64().unwrap() > 0);
    assert!(shown["delta"]["base"]
        .as_str()
        .unwrap()
        .contains(&target.addr));
    assert!(
        fs::metadata(&delta).unwrap().len() < fs::metadata(&full).unwrap().len(),
        "a delta is smaller than the full bundle"
    );
    let full_shown: serde_json::Value = serde_json::from_str(&stdout_ok(&s.ub(&[
        "inspect",
        full.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    assert!(full_shown["delta"].is_null(), "a full bundle is no delta");
    stdout_ok(&s.verify(&[delta.to_str().unwrap()]));

    // Into an empty registry: refused before anything is tagged.
    let empty = Registry::start();
    let out = s.load(&empty, &delta, "b");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("lacks") && err.contains(&format!("{omitted} layer")),
        "{err}"
    );
    let m: serde_json::Value = serde_json::from_slice(&empty_or_bundle_json(&s, &delta)).unwrap();
    for o in m["delta"]["omitted"].as_array().unwrap().iter().take(3) {
        assert!(err.contains(o["digest"].as_str().unwrap()), "{err}");
    }
    assert_untagged(&empty, "a delta into an empty registry");
    assert!(empty.tags("apps/tool").is_empty());

    // Into the registry the inventory came from: loads, and skopeo accepts
    // the new image and an old one with the policy load wrote.
    stdout_ok(&s.load(&target, &delta, "a"));
    for name in ["apps/tool:v1", SET[0]] {
        let dest = s.p(&format!("pulled/{}", name.replace(['/', ':'], "_")));
        fs::create_dir_all(&dest).unwrap();
        let out = skopeo([
            "--policy",
            s.p("a/policy.json").to_str().unwrap(),
            "--registries.d",
            s.p("a/registries.d").to_str().unwrap(),
            "copy",
            "--src-tls-verify=false",
            &target.docker_ref(name),
            &format!("dir:{}", dest.display()),
        ]);
        assert_success(&out, &format!("skopeo copy {name}"));
    }
}

/// bundle.json of a bundle, by the tools a user has.
fn empty_or_bundle_json(_s: &Site, archive: &Path) -> Vec<u8> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar xOf - bundle.json",
            archive.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}
