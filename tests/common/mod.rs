//! Shared support for the integration tests (`mod common;` in `tests/*.rs`).
//!
//! # Real parts, not mocks
//!
//! The tests exercise `u7s-bundle` against the same components the clusters use:
//!
//! * [`Registry`] starts Debian's `docker-registry` (CNCF distribution 2.8) on
//!   127.0.0.1 with a random free port and its own temporary storage, once as the
//!   source registry and once as `registry.local`; it is killed when dropped.
//! * [`make_fixtures`] / [`Fixtures`] run `tests/fixtures/make_images.py`, which
//!   writes small, deterministic multi-arch images (an OCI index per reference, two
//!   gzip layers per image, a base layer shared per arch) into an OCI layout and
//!   optionally seeds them into a [`Registry`] with `skopeo copy --all`.
//! * Output is checked with the real consumers: [`skopeo`] (inspect, copy with our
//!   `policy.json` and `registries.d`, standalone-verify) and `gpg`
//!   ([`gnupg_home`]).
//!
//! Every external program runs with a cleared environment (PATH kept, HOME a fresh
//! temporary directory), so nothing from the developer's configuration leaks in.
//! Needs on PATH: `docker-registry`, `skopeo`, `python3`, `gpg` (and `zstd` for
//! zstd fixtures). Each test gets its own registries, so tests run in parallel.

#![allow(dead_code)]

pub mod host;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// How long a registry may take to answer `GET /v2/` after start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------ registry

/// A `docker-registry` on 127.0.0.1, plain HTTP, no auth, deletes enabled,
/// storage in a temporary directory. Killed (and reaped) on drop.
pub struct Registry {
    /// `"127.0.0.1:PORT"`, what goes into image references.
    pub addr: String,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    token: String,
    /// TLS and auth (see [`Registry::start_with`]); default: plain HTTP, no auth.
    config: RegistryConfig,
}

/// What [`Registry::start_with`] turns on beyond the plain default.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Serve HTTPS with this certificate (see [`TlsFiles::generate`]).
    pub tls: Option<TlsFiles>,
    /// Require HTTP basic auth (`auth: htpasswd`, bcrypt) for this user and password.
    pub htpasswd: Option<(String, String)>,
    /// Listen on this port instead of a free one (e.g. 80 inside an
    /// [`host::IsolatedHost`], where `registry.local` means port 80).
    pub port: Option<u16>,
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate: what `--ca-file` gets.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One line of the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path and query, e.g. `/v2/c10f/pause/blobs/uploads/?mount=…`.
    pub path: String,
    pub status: u16,
    pub user_agent: String,
}

/// A raw HTTP response (see [`Registry::http`]).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

enum StartError {
    /// The process exited; the log says why (e.g. "address already in use").
    Exited(String),
    TimedOut,
}

impl Registry {
    /// Start a fresh registry on a free port; panics (with the registry's log) if
    /// it does not come up within 20 s.
    pub fn start() -> Registry {
        Registry::start_with(RegistryConfig::default())
    }

    /// [`Registry::start`] with TLS and/or htpasswd basic auth.
    pub fn start_with(config: RegistryConfig) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("u7s-registry-")
            .tempdir()
            .expect("temp dir for registry");
        fs::create_dir(dir.path().join("data")).unwrap();
        let mut reg = Registry {
            addr: String::new(),
            port: 0,
            dir,
            child: None,
            token: unique_token(),
            config,
        };
        if let Some((user, pass)) = reg.config.htpasswd.clone() {
            let out = Command::new("htpasswd")
                .args(["-Bbn", &user, &pass])
                .stdin(Stdio::null())
                .output()
                .expect("run htpasswd (apt-get install apache2-utils)");
            assert_success(&out, "htpasswd -Bbn");
            fs::write(reg.dir.path().join("htpasswd"), &out.stdout).unwrap();
        }
        let mut last = String::new();
        // Another process may grab the port between our probe bind and the
        // registry's listen: retry with a new port.
        for _ in 0..10 {
            reg.port = reg.config.port.unwrap_or_else(free_port);
            reg.addr = format!("127.0.0.1:{}", reg.port);
            match reg.spawn_and_wait() {
                Ok(()) => return reg,
                Err(StartError::Exited(log)) if log.contains("address already in use") => {
                    last = log
                }
                Err(StartError::Exited(log)) => {
                    panic!("docker-registry exited during startup; its log:\n{log}")
                }
                Err(StartError::TimedOut) => panic!(
                    "docker-registry on {} did not answer GET /v2/ within {:?}; its log:\n{}",
                    reg.addr,
                    START_TIMEOUT,
                    reg.log()
                ),
            }
        }
        panic!("could not find a free port for docker-registry; last log:\n{last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS)
    pub fn url(&self) -> String {
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// What skopeo needs to reach this registry (`--tls-verify=false` — it
    /// skips verification over TLS and allows plain HTTP — plus `--creds`).
    fn skopeo_access(&self) -> Vec<String> {
        let mut v = vec!["--tls-verify=false".to_string()];
        if let Some((u, p)) = &self.config.htpasswd {
            v.push(format!("--creds={u}:{p}"));
        }
        v
    }

    /// `skopeo copy --all --preserve-digests` of `refs` from the OCI layout
    /// `layout` (as [`Fixtures::make`] writes it, OCI media types) into this
    /// registry, with its TLS and credentials.
    pub fn seed(&self, layout: &Path, refs: &[&str]) {
        for r in refs {
            let mut args = vec![
                "--insecure-policy".to_string(),
                "copy".into(),
                "--quiet".into(),
                "--all".into(),
                "--preserve-digests".into(),
                "--dest-tls-verify=false".into(),
            ];
            if let Some((u, p)) = &self.config.htpasswd {
                args.push(format!("--dest-creds={u}:{p}"));
            }
            args.push(format!("oci:{}:{r}", layout.display()));
            args.push(self.docker_ref(r));
            assert_success(&skopeo(&args), &format!("skopeo copy {r} to {}", self.addr));
        }
    }

    /// `docker://127.0.0.1:PORT/<reference>` for skopeo.
    pub fn docker_ref(&self, reference: &str) -> String {
        format!("docker://{}/{}", self.addr, reference)
    }

    /// The storage root (`rootdirectory` of the registry).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kill the registry (SIGKILL, like a crash) and reap it. Storage and port
    /// stay reserved for [`Registry::restart`]. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop (if running) and start again on the same address with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        self.token = unique_token();
        match self.spawn_and_wait() {
            Ok(()) => {}
            Err(StartError::Exited(log)) => {
                panic!(
                    "docker-registry exited while restarting on {}; log:\n{log}",
                    self.addr
                )
            }
            Err(StartError::TimedOut) => panic!(
                "restarted docker-registry on {} did not answer within {:?}; log:\n{}",
                self.addr,
                START_TIMEOUT,
                self.log()
            ),
        }
    }

    /// Everything the registry wrote so far (error log and access log).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The access log, parsed: every request served since the first start
    /// (including the harness's own readiness probes, `GET /v2/` with an empty
    /// user agent). Use it to assert e.g. that a reload uploaded nothing.
    pub fn requests(&self) -> Vec<Request> {
        self.log().lines().filter_map(parse_access_line).collect()
    }

    /// Tags of `repo` (e.g. `c10f/kube-apiserver`), sorted; empty if the
    /// repository does not exist.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let mut args = vec!["list-tags".to_string()];
        args.extend(self.skopeo_access());
        args.push(self.docker_ref(repo));
        let out = skopeo(&args);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("404") || err.contains("name unknown") {
                return Vec::new();
            }
            panic!("skopeo list-tags {repo} on {} failed: {err}", self.addr);
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list-tags JSON");
        let mut tags: Vec<String> = v["Tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// The raw manifest (index or image) at `reference` (`repo:tag` or
    /// `repo@sha256:…`), or `None` if the registry does not know it.
    pub fn manifest(&self, reference: &str) -> Option<Vec<u8>> {
        let mut args = vec!["inspect".to_string()];
        args.extend(self.skopeo_access());
        args.push("--raw".into());
        args.push(self.docker_ref(reference));
        let out = skopeo(&args);
        if out.status.success() {
            return Some(out.stdout);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("manifest unknown") || err.contains("name unknown") {
            return None;
        }
        panic!(
            "skopeo inspect --raw {reference} on {} failed: {err}",
            self.addr
        );
    }

    /// [`Registry::manifest`] parsed as JSON.
    pub fn manifest_json(&self, reference: &str) -> Option<serde_json::Value> {
        self.manifest(reference)
            .map(|raw| serde_json::from_slice(&raw).expect("manifest is JSON"))
    }

    /// `sha256:<hex>` of the manifest at `reference` (the digest of the exact bytes
    /// the registry serves: for a tag of a multi-arch image, the index digest).
    pub fn manifest_digest(&self, reference: &str) -> Option<String> {
        self.manifest(reference).map(|raw| sha256_digest(&raw))
    }

    /// `skopeo delete` of `reference`. Registry 2.8 cannot untag: this deletes the
    /// manifest the tag points to, so every tag of that digest disappears.
    pub fn delete_tag(&self, reference: &str) {
        let mut args = vec!["delete".to_string()];
        args.extend(self.skopeo_access());
        args.push(self.docker_ref(reference));
        let out = skopeo(&args);
        assert_success(&out, &format!("skopeo delete {reference}"));
    }

    /// A raw HTTP/1.0 request to the registry (no HTTP crate, no redirects).
    /// With TLS it goes through reqwest (trusting the test CA); with htpasswd
    /// it carries the credentials.
    pub fn http(&self, method: &str, path: &str) -> HttpResponse {
        self.request(method, path)
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.addr))
    }

    fn request(&self, method: &str, path: &str) -> std::io::Result<HttpResponse> {
        let auth = self.config.htpasswd.as_ref().map(|(u, p)| {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        match &self.config.tls {
            None => {
                let headers: Vec<(&str, &str)> = auth
                    .as_deref()
                    .map(|a| vec![("Authorization", a)])
                    .unwrap_or_default();
                http_request(self.port, method, path, &headers, &[])
            }
            Some(tls) => https_request(&self.addr, &tls.ca, method, path, auth.as_deref()),
        }
    }

    /// The blob `digest` through `repo`, or `None` on 404.
    pub fn blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        let r = self.http("GET", &format!("/v2/{repo}/blobs/{digest}"));
        match r.status {
            200 => Some(r.body),
            404 => None,
            s => panic!("GET blob {repo}@{digest}: status {s}"),
        }
    }

    /// HEAD of the blob in `repo` (blob existence is per repository).
    pub fn has_blob(&self, repo: &str, digest: &str) -> bool {
        match self
            .http("HEAD", &format!("/v2/{repo}/blobs/{digest}"))
            .status
        {
            200 => true,
            404 => false,
            s => panic!("HEAD blob {repo}@{digest}: status {s}"),
        }
    }

    /// Unlink the blob from `repo` (for fault tests: a manifest whose blob is gone).
    pub fn delete_blob(&self, repo: &str, digest: &str) {
        let r = self.http("DELETE", &format!("/v2/{repo}/blobs/{digest}"));
        assert_eq!(
            r.status,
            202,
            "DELETE blob {repo}@{digest}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    // -- internals

    fn write_config(&self) -> PathBuf {
        let root = self.dir.path();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n  secret: u7s-test-secret\n\
             \x20 headers:\n    X-U7s-Registry: [\"{token}\"]\n",
            data = root.join("data").display(),
            addr = self.addr,
            token = self.token,
        );
        let mut config = config;
        if let Some(tls) = &self.config.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                tls.cert.display(),
                tls.key.display()
            ));
        }
        if self.config.htpasswd.is_some() {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: u7s-test\n    path: {}\n",
                root.join("htpasswd").display()
            ));
        }
        let path = root.join("config.yml");
        fs::write(&path, config).expect("write registry config");
        path
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let config = self.write_config();
        let log_path = self.dir.path().join("registry.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let log_start = log.metadata().unwrap().len();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // REGISTRY_* variables override the config file: keep them out.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run docker-registry ({e}); install it: apt-get install docker-registry")
        });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                let mut text = String::new();
                if let Ok(mut f) = File::open(&log_path) {
                    let mut all = String::new();
                    let _ = f.read_to_string(&mut all);
                    text = all.get(log_start as usize..).unwrap_or(&all).to_string();
                }
                return Err(StartError::Exited(format!("({status})\n{text}")));
            }
            if let Ok(r) = self.request("GET", "/v2/") {
                // The header proves the answer comes from *this* process, not
                // from whoever else may already listen on the port.
                if r.status == 200 && r.header("x-u7s-registry") == Some(self.token.as_str()) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(StartError::TimedOut);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn unique_token() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        t
    )
}

/// `127.0.0.1 - - [date] "PUT /v2/x/manifests/t HTTP/1.1" 201 0 "" "skopeo/1.9.3"`
fn parse_access_line(line: &str) -> Option<Request> {
    let rest = line.split_once("] \"")?.1;
    let (req, rest) = rest.split_once('"')?;
    let mut parts = req.split(' ');
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let status = rest.trim_start().split(' ').next()?.parse().ok()?;
    let user_agent = rest.rsplit('"').nth(1).unwrap_or("").to_string();
    Some(Request {
        method,
        path,
        status,
        user_agent,
    })
}

/// A minimal HTTP/1.0 client on 127.0.0.1:`port`; reads until the server closes.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let _ = s.shutdown(Shutdown::Write);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

// ------------------------------------------------------------------ fixtures

/// Path of `tests/fixtures/make_images.py`.
pub fn fixture_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_images.py")
}

/// Options for `make_images.py`; [`make_fixtures`] uses the defaults
/// (amd64+arm64, 64 KiB of app data, OCI media types, gzip).
#[derive(Debug, Clone)]
pub struct Fixtures {
    pub arches: Vec<String>,
    pub size_kib: u32,
    pub docker_media_types: bool,
    pub zstd: bool,
}

impl Default for Fixtures {
    fn default() -> Self {
        Fixtures {
            arches: vec!["amd64".into(), "arm64".into()],
            size_kib: 64,
            docker_media_types: false,
            zstd: false,
        }
    }
}

impl Fixtures {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn arches(mut self, arches: &[&str]) -> Self {
        self.arches = arches.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn size_kib(mut self, n: u32) -> Self {
        self.size_kib = n;
        self
    }
    /// Docker v2 schema2 manifest list + manifests instead of OCI.
    pub fn docker_media_types(mut self) -> Self {
        self.docker_media_types = true;
        self
    }
    /// The app layer zstd-compressed (`…tar+zstd`); the shared base stays gzip.
    pub fn zstd(mut self) -> Self {
        self.zstd = true;
        self
    }

    /// Write (or add to) the OCI layout `dir` and optionally seed `seed`.
    /// Returns ref → index digest (`sha256:…`), stable across runs.
    pub fn make(
        &self,
        dir: &Path,
        refs: &[&str],
        seed: Option<&Registry>,
    ) -> BTreeMap<String, String> {
        let mut cmd = Command::new("python3");
        cmd.arg(fixture_script())
            .arg("--out")
            .arg(dir)
            .arg("--arches")
            .arg(self.arches.join(","))
            .arg("--size-kib")
            .arg(self.size_kib.to_string())
            .arg("--print-digests");
        if self.docker_media_types {
            cmd.arg("--docker-media-types");
        }
        if self.zstd {
            cmd.arg("--zstd");
        }
        if let Some(r) = seed {
            cmd.arg("--seed").arg(&r.addr);
        }
        cmd.args(refs);
        let home = temp_home();
        clean_env(&mut cmd, home.path());
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .expect("run python3 make_images.py");
        assert_success(&out, "make_images.py");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(r, d)| (r.to_string(), d.to_string()))
            .collect()
    }
}

/// Fixture images for `refs` (registry-relative `repo:tag`) in the OCI layout
/// `dir`, seeded into `seed` if given. Returns ref → index digest.
pub fn make_fixtures(
    dir: &Path,
    refs: &[&str],
    seed: Option<&Registry>,
) -> BTreeMap<String, String> {
    Fixtures::default().make(dir, refs, seed)
}

// ------------------------------------------------------------------ programs

/// The `u7s-bundle` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_u7s-bundle"))
}

/// Clear the environment except PATH (+ TMPDIR, coverage and backtrace knobs)
/// and set HOME to `home`, LANG to C.UTF-8.
pub fn clean_env(cmd: &mut Command, home: &Path) {
    cmd.env_clear();
    for k in ["PATH", "TMPDIR", "LLVM_PROFILE_FILE", "RUST_BACKTRACE"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("HOME", home).env("LANG", "C.UTF-8");
    // u7s-bundle's host state (last-bundle.json, join files) per test, never
    // the machine's /var/lib/u7s-bundle.
    cmd.env("U7S_STATE_DIR", home.join("state"));
}

fn temp_home() -> TempDir {
    tempfile::Builder::new()
        .prefix("u7s-home-")
        .tempdir()
        .expect("temp HOME")
}

/// A `u7s-bundle` command with a clean environment and HOME=`home`; stdin is null.
pub fn command(home: &Path) -> Command {
    let mut cmd = Command::new(bin());
    clean_env(&mut cmd, home);
    cmd.stdin(Stdio::null());
    cmd
}

/// Run `u7s-bundle ARGS` with a clean environment and a fresh, empty HOME.
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_env(args, &[])
}

/// [`run`] with extra environment variables (e.g. `("U7S_PLATFORM", "c10f")`).
pub fn run_env<I, S>(args: I, envs: &[(&str, &str)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let home = temp_home();
    command(home.path())
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run u7s-bundle")
}

/// Run `skopeo ARGS` with a clean environment and a fresh HOME. No policy flag is
/// added: `copy` uses /etc/containers/policy.json unless the test passes
/// `--policy` (signature tests) or `--insecure-policy`.
pub fn skopeo<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    skopeo_env(args, &[])
}

/// [`skopeo`] with extra environment variables (e.g. GNUPGHOME for `--sign-by`).
pub fn skopeo_env<I, S>(args: I, envs: &[(&str, &str)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let home = temp_home();
    let mut cmd = Command::new("skopeo");
    clean_env(&mut cmd, home.path());
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null());
    cmd.output().expect("run skopeo (apt-get install skopeo)")
}

/// Panic with both output streams unless `out` succeeded.
#[track_caller]
pub fn assert_success(out: &Output, what: &str) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Panic (with both streams) if `out` failed; returns stdout as text.
#[track_caller]
pub fn stdout_ok(out: &Output) -> String {
    assert_success(out, "command");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

// ------------------------------------------------------------------ gnupg

/// A temporary GNUPGHOME (mode 0700). Dereferences to its [`TempDir`]; on drop
/// the gpg-agent it may have started is killed before the directory goes.
pub struct GnupgHome {
    dir: TempDir,
}

/// A fresh, empty GNUPGHOME.
pub fn gnupg_home() -> GnupgHome {
    let dir = tempfile::Builder::new()
        .prefix("u7s-gnupg-")
        .tempdir()
        .expect("temp GNUPGHOME");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    GnupgHome { dir }
}

impl std::ops::Deref for GnupgHome {
    type Target = TempDir;
    fn deref(&self) -> &TempDir {
        &self.dir
    }
}

impl GnupgHome {
    /// Run `gpg --batch --homedir HOME ARGS` (clean environment).
    pub fn gpg<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("gpg");
        clean_env(&mut cmd, self.dir.path());
        cmd.env("GNUPGHOME", self.dir.path())
            .arg("--batch")
            .arg("--homedir")
            .arg(self.dir.path())
            .args(args)
            .stdin(Stdio::null());
        cmd.output().expect("run gpg (apt-get install gnupg)")
    }

    /// Generate a passphrase-less RSA-3072 key whose PRIMARY key signs ([SC], no
    /// subkeys: the shape containers/image accepts). Returns its fingerprint.
    pub fn gen_key(&self, uid: &str) -> String {
        let out = self.gpg([
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-generate-key",
            uid,
            "rsa3072",
            "sign",
            "never",
        ]);
        assert_success(&out, "gpg --quick-generate-key");
        let out = self.gpg(["--with-colons", "--list-keys", uid]);
        let text = stdout_ok(&out);
        text.lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .map(String::from)
            .expect("fingerprint in gpg --with-colons output")
    }

    /// The public key(s) matching `who`, binary (as policy.json keyPath wants).
    pub fn export(&self, who: &str) -> Vec<u8> {
        let out = self.gpg(["--export", who]);
        assert_success(&out, "gpg --export");
        assert!(!out.stdout.is_empty(), "gpg --export {who}: no such key");
        out.stdout
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.dir.path())
            .args(["--kill", "all"])
            .env("GNUPGHOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ------------------------------------------------------------------ TLS

impl TlsFiles {
    /// Make a throwaway CA (`ca.pem`) and a server certificate for the IP
    /// 127.0.0.1 (`server.pem`, `server.key`) signed by it, in `dir`, with the
    /// `openssl` CLI (EC P-256: fast to generate).
    pub fn generate(dir: &Path) -> TlsFiles {
        fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .expect("run openssl (apt-get install openssl)");
            assert_success(&out, &format!("openssl {}", args.join(" ")));
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]);
        a.extend(["-subj", "/CN=u7s test CA"]);
        openssl(&a);
        let mut a = vec!["req"];
        a.extend(ec);
        a.extend(["-keyout", "server.key", "-out", "server.csr"]);
        a.extend(["-subj", "/CN=127.0.0.1"]);
        openssl(&a);
        fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// One HTTPS request to `addr` trusting only the PEM CA `ca` (no redirects).
pub fn https_request(
    addr: &str,
    ca: &Path,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs =
        reqwest::Certificate::from_pem_bundle(&fs::read(ca)?).map_err(std::io::Error::other)?;
    let client = reqwest::blocking::Client::builder()
        .tls_certs_only(certs)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(std::io::Error::other)?;
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(std::io::Error::other)?;
    let mut req = client.request(method, format!("https://{addr}{path}"));
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let resp = req.send().map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp.bytes().map_err(std::io::Error::other)?.to_vec();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

// ------------------------------------------------------------------ fault proxy

/// Which requests a [`Fault`] applies to: `(method, path) -> bool`.
pub type Filter = std::sync::Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Every request.
pub fn any_request() -> Filter {
    std::sync::Arc::new(|_, _| true)
}

/// `GET /v2/<repo>/blobs/<digest>` (configs and layers).
pub fn blob_get() -> Filter {
    std::sync::Arc::new(|m, p| m == "GET" && p.contains("/blobs/sha256:"))
}

/// `GET` of one of these blobs (`sha256:…`), e.g. only the layers.
pub fn blob_get_of(digests: &[String]) -> Filter {
    let d: Vec<String> = digests.iter().map(|d| format!("/blobs/{d}")).collect();
    std::sync::Arc::new(move |m, p| m == "GET" && d.iter().any(|d| p.ends_with(d.as_str())))
}

/// Anything under `/v2/<repo>/blobs/uploads/` (POST, PATCH, PUT, DELETE).
pub fn blob_upload() -> Filter {
    std::sync::Arc::new(|_, p| p.contains("/blobs/uploads/"))
}

/// What a [`FaultProxy`] does to the requests its filter matches.
#[derive(Clone)]
pub enum Fault {
    /// Forward everything unchanged.
    Pass,
    /// Answer the first `n` matching requests with `status` itself, then forward.
    /// `u64::MAX`: always.
    FailFirst { n: u64, status: u16, filter: Filter },
    /// Forward the first `k` matching requests, answer every later one with `status`.
    FailAfter { k: u64, status: u16, filter: Filter },
    /// For the first `n` matching requests answered 200, forward the response
    /// head and half the body, then reset the connection (RST).
    ResetMidBody { n: u64, filter: Filter },
    /// Forward, but relay responses `chunk` bytes at a time with `pause` in
    /// between (a slow link).
    Slow { chunk: usize, pause: Duration },
    /// Take matching requests' heads, then neither read nor answer until
    /// the proxy stops (a hung registry, a half-open connection).
    Stall { filter: Filter },
    /// Read `bytes` of a matching request's body (at most half of it), then
    /// drop the connection with a reset, unread data and all (a registry
    /// killed mid-upload).
    DieMidRequest { bytes: u64, filter: Filter },
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    pub method: String,
    pub path: String,
    /// True when the proxy answered or broke it instead of forwarding it intact.
    pub injected: bool,
}

struct ProxyState {
    target: u16,
    fault: std::sync::Mutex<Fault>,
    matched: AtomicU64,
    log: std::sync::Mutex<Vec<ProxyRequest>>,
    stop: std::sync::atomic::AtomicBool,
}

/// A fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of a plain-HTTP
/// registry: plain std threads, one request per client connection (it forwards
/// the request with `Connection: close`, so the registry's answer ends at EOF and
/// tells the client not to reuse the connection). Stopped on drop.
pub struct FaultProxy {
    /// `"127.0.0.1:PORT"`: give it as `--source` / `--registry` (with `--plain-http`).
    pub addr: String,
    port: u16,
    state: std::sync::Arc<ProxyState>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy forwarding to the plain-HTTP registry on 127.0.0.1:`target_port`.
    pub fn start(target_port: u16, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(ProxyState {
            target: target_port,
            fault: std::sync::Mutex::new(fault),
            matched: AtomicU64::new(0),
            log: std::sync::Mutex::new(Vec::new()),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        let st = state.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = proxy_one(&st, conn);
                });
            }
        });
        FaultProxy {
            addr: format!("127.0.0.1:{port}"),
            port,
            state,
            accept: Some(accept),
        }
    }

    /// Replace the fault (the match counter restarts at 0).
    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
        self.state.matched.store(0, Ordering::SeqCst);
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<ProxyRequest> {
        self.state.log.lock().unwrap().clone()
    }

    /// How many requests were answered or broken by the proxy.
    pub fn injected(&self) -> usize {
        self.requests().iter().filter(|r| r.injected).count()
    }

    /// Stop accepting; connections in flight end at their next read or write.
    pub fn stop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            // Wake the blocking accept.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let _ = h.join();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Read until the end of an HTTP head; returns (head, bytes read past it).
fn read_head(s: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p + 4]).into_owned();
            return Ok(Some((head, buf[p + 4..].to_vec())));
        }
        if buf.len() > 1 << 20 {
            return Err(std::io::Error::other("HTTP head too large"));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn head_value(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Close `s` with a TCP reset instead of a FIN (SO_LINGER 0).
fn reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

/// Handle one client connection (one request).
fn proxy_one(st: &ProxyState, mut client: TcpStream) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let Some((head, early_body)) = read_head(&mut client)? else {
        return Ok(());
    };
    if st.stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let mut first = head.split("\r\n").next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();

    enum Action {
        Forward,
        Answer(u16),
        Reset,
        Slow(usize, Duration),
        Stall,
        Die(u64),
    }
    let action = {
        let fault = st.fault.lock().unwrap().clone();
        let hit = |f: &Filter| f(&method, &path).then(|| st.matched.fetch_add(1, Ordering::SeqCst));
        match fault {
            Fault::Pass => Action::Forward,
            Fault::FailFirst { n, status, filter } => match hit(&filter) {
                Some(i) if i < n => Action::Answer(status),
                _ => Action::Forward,
            },
            Fault::FailAfter { k, status, filter } => match hit(&filter) {
                Some(i) if i >= k => Action::Answer(status),
                _ => Action::Forward,
            },
            // Counted below, once the answer is known to be a 200 with a body.
            Fault::ResetMidBody { n, filter } => {
                if filter(&method, &path) && st.matched.load(Ordering::SeqCst) < n {
                    Action::Reset
                } else {
                    Action::Forward
                }
            }
            Fault::Slow { chunk, pause } => Action::Slow(chunk.max(1), pause),
            Fault::Stall { filter } => match hit(&filter) {
                Some(_) => Action::Stall,
                None => Action::Forward,
            },
            Fault::DieMidRequest { bytes, filter } => match hit(&filter) {
                Some(_) => Action::Die(bytes),
                None => Action::Forward,
            },
        }
    };
    let log = |injected: bool| {
        st.log.lock().unwrap().push(ProxyRequest {
            method: method.clone(),
            path: path.clone(),
            injected,
        })
    };

    let content_length: u64 = head_value(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if let Action::Die(bytes) = action {
        log(true);
        // Never more than half the body: the connection dies mid-request.
        let mut left = bytes
            .min(content_length / 2)
            .saturating_sub(early_body.len() as u64);
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = client.read(&mut buf[..left.min(64 * 1024) as usize])?;
            if n == 0 {
                break;
            }
            left -= n as u64;
        }
        reset(client);
        return Ok(());
    }
    if let Action::Stall = action {
        log(true);
        while !st.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return Ok(());
    }
    if let Action::Answer(status) = action {
        // Read the request body first, so the client sees our answer rather
        // than a reset while it is still sending.
        let mut left = content_length.saturating_sub(early_body.len() as u64);
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = client.read(&mut buf[..left.min(64 * 1024) as usize])?;
            if n == 0 {
                break;
            }
            left -= n as u64;
        }
        log(true);
        let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy","detail":null}]}"#;
        let reason = if status == 503 {
            "Service Unavailable"
        } else {
            "Injected"
        };
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(resp.as_bytes())?;
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }

    // Forward: the same head with `Connection: close`.
    let mut upstream = TcpStream::connect(("127.0.0.1", st.target))?;
    upstream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = String::new();
    for (i, line) in head.trim_end_matches("\r\n").split("\r\n").enumerate() {
        let name = line.split(':').next().unwrap_or("").trim();
        if i > 0
            && (name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes())?;
    upstream.write_all(&early_body)?;
    // The rest of the request body (Content-Length or chunked): a raw copy
    // until either side closes; this connection carries no second request.
    let (mut c_in, mut u_out) = (client.try_clone()?, upstream.try_clone()?);
    let pump = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_in, &mut u_out);
    });

    let result = (|| -> std::io::Result<bool> {
        match action {
            Action::Reset => {
                let Some((rhead, mut rest)) = read_head(&mut upstream)? else {
                    return Ok(false);
                };
                let status_ok = rhead.split(' ').nth(1) == Some("200");
                let len: u64 = head_value(&rhead, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let Fault::ResetMidBody { n, .. } = st.fault.lock().unwrap().clone() else {
                    unreachable!()
                };
                let take = status_ok
                    && len >= 2
                    && st
                        .matched
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |m| {
                            (m < n).then_some(m + 1)
                        })
                        .is_ok();
                client.write_all(rhead.as_bytes())?;
                if !take {
                    client.write_all(&rest)?;
                    std::io::copy(&mut upstream, &mut client)?;
                    return Ok(false);
                }
                let half = (len / 2) as usize;
                while rest.len() < half {
                    let mut buf = vec![0u8; 64 * 1024];
                    let k = upstream.read(&mut buf)?;
                    if k == 0 {
                        break;
                    }
                    rest.extend_from_slice(&buf[..k]);
                }
                client.write_all(&rest[..half.min(rest.len())])?;
                client.flush()?;
                Ok(true)
            }
            Action::Slow(chunk, pause) => {
                let mut buf = vec![0u8; chunk];
                loop {
                    if st.stop.load(Ordering::SeqCst) {
                        return Ok(false);
                    }
                    let k = upstream.read(&mut buf)?;
                    if k == 0 {
                        return Ok(false);
                    }
                    client.write_all(&buf[..k])?;
                    std::thread::sleep(pause);
                }
            }
            _ => {
                std::io::copy(&mut upstream, &mut client)?;
                Ok(false)
            }
        }
    })();
    let _ = upstream.shutdown(Shutdown::Both);
    let injected = matches!(result, Ok(true));
    log(injected);
    if injected {
        // The pump holds a duplicate of the socket: end it first (a shut-down
        // read side returns EOF), so closing ours is the last close — the RST.
        let _ = client.shutdown(Shutdown::Read);
        let _ = pump.join();
        reset(client);
    } else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = pump.join();
    }
    result.map(|_| ())
}
