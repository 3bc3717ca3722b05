//! An isolated host as the cluster sees it: `registry.local` on port 80, plain
//! HTTP, resolved through `/etc/hosts`, and podman (containers/image, the
//! library CRI-O uses) reading `/etc/containers/{policy.json,registries.d,
//! registries.conf,registries.conf.d}` — no `--tls-verify=false`, no
//! `--policy` override.
//!
//! [`with_isolated_host`] runs a closure on a thread of its own that first moves
//! into a new network and mount namespace (`unshare(2)` acts on the calling
//! thread only, so other tests and the test runner are not affected). There:
//! loopback is brought up, a hosts file mapping `registry.local` and
//! `sigstore.local` to 127.0.0.1 is bind-mounted over `/etc/hosts`, and an
//! empty directory over `/etc/containers`. Every process the closure starts
//! (the registry, `u7s-bundle load`, podman, skopeo) is forked from that thread
//! and so inherits both namespaces: `load` with its default paths writes the
//! host's real trust files into the temporary `/etc/containers`.
//!
//! Needs root (namespaces, port 80) and `podman`, `ip` on PATH.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

use super::{Registry, RegistryConfig};

/// The name the cluster pulls from.
pub const REGISTRY_HOST: &str = "registry.local";

/// One isolated host (see the module documentation). Paths under `/etc` are
/// the real ones inside the namespace.
pub struct IsolatedHost {
    root: TempDir,
    /// `docker-registry` on 127.0.0.1:80, i.e. `registry.local`.
    pub registry: Registry,
}

/// Run `f` on an [`IsolatedHost`]; a panic inside `f` is re-raised here.
pub fn with_isolated_host<R: Send>(f: impl FnOnce(&IsolatedHost) -> R + Send) -> R {
    std::thread::scope(|s| {
        match s
            .spawn(|| {
                let host = IsolatedHost::enter();
                f(&host)
            })
            .join()
        {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

fn check(rc: libc::c_int, what: &str) {
    if rc != 0 {
        panic!(
            "{what}: {} (the podman tests need root)",
            std::io::Error::last_os_error()
        );
    }
}

fn bind(src: &Path, dst: &str) {
    let s = CString::new(src.to_str().unwrap()).unwrap();
    let d = CString::new(dst).unwrap();
    // SAFETY: plain mount(2) call with valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    check(rc, &format!("bind-mounting {} over {dst}", src.display()));
}

impl IsolatedHost {
    /// Move the calling thread into new namespaces and set the host up.
    fn enter() -> IsolatedHost {
        // SAFETY: unshare(2) and mount(2) with constant arguments; they affect
        // this thread (and its future children) only.
        check(
            unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS) },
            "unshare(CLONE_NEWNET | CLONE_NEWNS)",
        );
        let root_c = CString::new("/").unwrap();
        check(
            unsafe {
                libc::mount(
                    std::ptr::null(),
                    root_c.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
            },
            "making / private in the new mount namespace",
        );
        let out = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .output()
            .expect("run ip (iproute2)");
        super::assert_success(&out, "ip link set lo up");

        let root = tempfile::Builder::new()
            .prefix("u7s-host-")
            .tempdir()
            .unwrap();
        let hosts = root.path().join("hosts");
        fs::write(
            &hosts,
            "127.0.0.1 localhost\n::1 localhost\n127.0.0.1 registry.local sigstore.local\n",
        )
        .unwrap();
        bind(&hosts, "/etc/hosts");
        let etc = root.path().join("etc-containers");
        fs::create_dir_all(etc.join("registries.d")).unwrap();
        fs::create_dir_all(etc.join("registries.conf.d")).unwrap();
        // An empty registries.conf: no search registries, nothing insecure.
        fs::write(etc.join("registries.conf"), "").unwrap();
        bind(&etc, "/etc/containers");
        for d in ["home", "run", "storage", "runroot", "tmp"] {
            fs::create_dir_all(root.path().join(d)).unwrap();
        }

        let registry = Registry::start_with(RegistryConfig {
            port: Some(80),
            ..Default::default()
        });
        IsolatedHost { root, registry }
    }

    /// A scratch path on this host (not under `/etc`).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// `/etc/containers` as seen from inside the namespace.
    pub fn etc_containers(&self) -> PathBuf {
        PathBuf::from("/etc/containers")
    }

    /// podman with its own vfs storage under this host's temp dir and a
    /// cleared environment; everything else (policy, registries.d,
    /// registries.conf[.d], /etc/hosts) is the host's.
    pub fn podman_cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("TMPDIR", self.path("tmp"))
            .stdin(Stdio::null())
            .args(["--root", self.path("storage").to_str().unwrap()])
            .args(["--runroot", self.path("runroot").to_str().unwrap()])
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ]);
        cmd
    }

    /// `podman pull registry.local/<name>` exactly as a cluster node would.
    pub fn podman_pull(&self, name: &str) -> Output {
        self.podman_cmd()
            .args(["pull", "--quiet", &format!("{REGISTRY_HOST}/{name}")])
            .output()
            .expect("run podman")
    }

    /// Assert that every name pulls with podman.
    pub fn assert_pulls(&self, names: &[String]) {
        for n in names {
            let out = self.podman_pull(n);
            assert!(
                out.status.success(),
                "podman pull {REGISTRY_HOST}/{n} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
