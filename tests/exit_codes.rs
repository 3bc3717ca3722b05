//! The exit-code table of docs/en/reference.md is the contract: this test
//! reads it, runs every row's case against real parts (two loopback
//! registries, fixture images, a signed bundle built and loaded, podsec's
//! wrapper stood in by tests/stand-in/kubeadm) and compares the status with
//! the table's. A row without a case here fails too, and the Russian table
//! must list the same codes in the same order.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{command, make_fixtures, stdout_ok, Fault, FaultProxy, Registry};

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

/// What the stand-in wrapper exits with in the `N` row.
const WRAPPER_EXIT: i32 = 7;

/// (code, case) rows of the `## <heading>` table in a reference file.
fn table(file: &str, heading: &str) -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = fs::read_to_string(&path).unwrap();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("no '## {heading}' in {file}"));
    section
        .lines()
        .filter(|l| l.starts_with("| "))
        .skip(2) // the header and the --- line
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 2, "{file}: {l}");
            (cells[0].to_string(), cells[1].to_string())
        })
        .collect()
}

/// Everything the cases need: registries, keys, bundles (signed, unsigned,
/// damaged), a loaded registry with its trust files, the stand-in wrapper.
struct Site {
    src: Registry,
    target: Registry,
    home: tempfile::TempDir,
    work: tempfile::TempDir,
    signed: PathBuf,
    unsigned: PathBuf,
}

impl Site {
    fn new() -> Site {
        let src = Registry::start();
        let target = Registry::start();
        let work = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        make_fixtures(&work.path().join("layout"), &SET, Some(&src));
        let mut s = Site {
            src,
            target,
            home,
            work,
            signed: PathBuf::new(),
            unsigned: PathBuf::new(),
        };
        for name in ["builder", "imagemaker", "other"] {
            let uid = format!("{name} <{name}@example.org>");
            stdout_ok(&s.ub(&["keygen", "--uid", &uid, "--output", &s.p(name)]));
        }
        s.signed = PathBuf::from(stdout_ok(&s.build("signed", true)).trim());
        s.unsigned = PathBuf::from(stdout_ok(&s.build("unsigned", false)).trim());
        let archive = s.signed.display().to_string();
        stdout_ok(&s.ub(&s.load_args(&archive)));
        let kubeadm = s.work.path().join("bin/kubeadm");
        fs::create_dir_all(kubeadm.parent().unwrap()).unwrap();
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stand-in/kubeadm"),
            &kubeadm,
        )
        .unwrap();
        fs::set_permissions(&kubeadm, fs::Permissions::from_mode(0o755)).unwrap();
        s
    }

    fn p(&self, rel: &str) -> String {
        self.work.path().join(rel).display().to_string()
    }

    fn ub(&self, args: &[impl AsRef<str>]) -> Output {
        self.ub_env(args, &[])
    }

    fn ub_env(&self, args: &[impl AsRef<str>], envs: &[(&str, String)]) -> Output {
        command(self.home.path())
            .args(args.iter().map(AsRef::as_ref))
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run u7s-bundle")
    }

    fn build_args(&self, source: &str, out: &str, cache: &str, signed: bool) -> Vec<String> {
        let mut a: Vec<String> = [
            "build",
            "--platform",
            "c10f",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--source",
            source,
            "--plain-http",
            "--compression",
            "zstd",
            "--output",
            out,
            "--cache-dir",
            cache,
        ]
        .map(String::from)
        .to_vec();
        if signed {
            a.extend(["--sign-key".into(), self.p("builder.key")]);
        }
        a
    }

    fn build(&self, out: &str, signed: bool) -> Output {
        let args = self.build_args(&self.src.addr, &self.p(out), &self.p("cache"), signed);
        self.ub(&args)
    }

    fn load_args(&self, archive: &str) -> Vec<String> {
        let sigstore = self.p("sigstore");
        [
            "load",
            archive,
            "--keyring",
            &self.p("builder.pgp"),
            "--sign-key",
            &self.p("imagemaker.key"),
            "--registry",
            &self.target.addr,
            "--plain-http",
            "--sigstore-dir",
            &sigstore,
            "--keys-dir",
            &self.p("keys"),
            "--policy",
            &self.p("etc/policy.json"),
            "--registries-d",
            &self.p("etc/registries.d"),
            "--registries-conf-d",
            &self.p("etc/registries.conf.d"),
            "--lookaside-url",
            &format!("file://{sigstore}"),
            "--lock-file",
            &self.p("load.lock"),
        ]
        .map(String::from)
        .to_vec()
    }

    /// `verify ARCHIVE --keyring KEY`.
    fn verify(&self, archive: &str, key: &str) -> Output {
        self.ub(&["verify", archive, "--keyring", &self.p(key)])
    }

    /// preflight / init against the loaded registry and its trust files.
    fn cluster(&self, cmd: &str, registry: &str, envs: &[(&str, String)]) -> Output {
        let archive = self.signed.display().to_string();
        let args = [
            cmd,
            "--bundle",
            &archive,
            "--registry",
            registry,
            "--plain-http",
            "--policy",
            &self.p("etc/policy.json"),
            "--registries-d",
            &self.p("etc/registries.d"),
            "--skip-host-checks",
            "--kubeadm",
            &self.p("bin/kubeadm"),
            "--state-dir",
            &self.p("state"),
        ];
        let mut envs = envs.to_vec();
        envs.push(("STANDIN_RECORD", self.p("record")));
        self.ub_env(&args, &envs)
    }

    /// A copy of the signed bundle with bytes in its middle changed.
    fn damaged(&self) -> String {
        let mut bytes = fs::read(&self.signed).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0x5a;
        }
        let path = self.p("damaged.u7s.tar.zst");
        fs::write(&path, bytes).unwrap();
        path
    }

    /// A build through a slow link, signalled once it is fetching.
    fn interrupted_build(&self, signal: i32) -> Option<i32> {
        let proxy = FaultProxy::start(
            self.src.port(),
            Fault::Slow {
                chunk: 1024,
                pause: Duration::from_millis(20),
            },
        );
        let tag = format!("sig{signal}");
        let args = self.build_args(
            &proxy.addr,
            &self.p(&format!("out-{tag}")),
            &self.p(&format!("cache-{tag}")),
            false,
        );
        let mut child = command(self.home.path())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push_str(&line);
            if line.contains("Fetching") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the build never started fetching"
            );
        }
        assert!(
            seen.contains("Fetching"),
            "the build ended before fetching: {seen}"
        );
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) of our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        std::thread::spawn(move || lines.for_each(drop));
        child.wait().unwrap().code()
    }

    /// Runs the case a row describes; None for a row this test does not know.
    fn run_case(&self, case: &str) -> Option<Option<i32>> {
        let code = |o: Output| o.status.code();
        let signed = self.signed.display().to_string();
        Some(match case {
            c if c.starts_with("Success") => code(self.verify(&signed, "builder.pgp")),
            c if c.starts_with("A missing or unreadable file") => {
                code(self.verify(&self.p("nosuch.u7s.tar.zst"), "builder.pgp"))
            }
            c if c.starts_with("A registry that does not answer") => code(self.ub(&[
                "plan",
                "--platform",
                "c10f",
                "--resolve",
                "--source",
                "127.0.0.1:9",
                "--plain-http",
                "--retries",
                "1",
            ])),
            c if c.starts_with("`build`: an archive of the same name exists") => {
                code(self.build("signed", true))
            }
            c if c.starts_with("`keygen`") => code(self.ub(&[
                "keygen",
                "--uid",
                "again <a@example.org>",
                "--output",
                &self.p("builder"),
            ])),
            c if c.starts_with("An unusable signing key") => {
                let mut a = self.load_args(&signed);
                let i = a.iter().position(|x| x == "--sign-key").unwrap();
                a[i + 1] = self.p("imagemaker.pgp");
                code(self.ub(&a))
            }
            c if c.starts_with("`preflight`") => {
                code(self.cluster("preflight", "127.0.0.1:9", &[]))
            }
            c if c.starts_with("Usage error") => code(self.ub(&["verify", "--no-such-option"])),
            c if c.starts_with("A bundle without a signature") => {
                code(self.verify(&self.unsigned.display().to_string(), "builder.pgp"))
            }
            c if c.starts_with("A bundle signed by a key that is not trusted") => {
                code(self.verify(&signed, "other.pgp"))
            }
            c if c.starts_with("A bundle whose bytes do not match") => {
                code(self.verify(&self.damaged(), "builder.pgp"))
            }
            c if c.starts_with("Not a bundle at all") => {
                let junk = self.p("junk.u7s.tar.xz");
                fs::write(&junk, b"no bundle here").unwrap();
                code(self.verify(&junk, "builder.pgp"))
            }
            c if c.starts_with("`init`, `join`: the wrapper failed") => {
                let exit = ("STANDIN_EXIT", WRAPPER_EXIT.to_string());
                code(self.cluster("init", &self.target.addr, &[exit]))
            }
            c if c.starts_with("Interrupted by SIGINT") => self.interrupted_build(libc::SIGINT),
            c if c.starts_with("Interrupted by SIGTERM") => self.interrupted_build(libc::SIGTERM),
            _ => return None,
        })
    }
}

#[test]
fn every_documented_exit_code_is_what_the_program_returns() {
    let rows = table("docs/en/reference.md", "Exit status");
    assert!(rows.len() >= 10, "too few rows: {rows:?}");
    let ru = table("docs/ru/reference.md", "Коды завершения");
    let codes = |t: &[(String, String)]| t.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        codes(&ru),
        codes(&rows),
        "the Russian table lists other codes"
    );

    let site = Site::new();
    let mut wrong = Vec::new();
    for (code, case) in &rows {
        let expected = match code.as_str() {
            "N" => WRAPPER_EXIT,
            n => n
                .parse()
                .unwrap_or_else(|_| panic!("code {n:?} in row {case:?}")),
        };
        let got = site
            .run_case(case)
            .unwrap_or_else(|| panic!("documented case without a test here: {case:?}"));
        if got != Some(expected) {
            wrong.push(format!("{case:?}: documented {code}, got {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "exit codes differ from the table:\n{}",
        wrong.join("\n")
    );
}
