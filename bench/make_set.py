#!/usr/bin/env python3
"""Build the benchmark's kubernetes-like image set from real Go binaries.

Usage:
  make_set.py --out DIR --pkgs PKGDIR --scale {1,3} [--seed HOST:PORT] [--json] REF...

REFs are the registry-relative names of the c10f v1.26.9 set (from
`u7s-bundle plan --json`); each is matched to a role by its repository's last
component (kube-apiserver, etcd, ...).

Every image is a multi-arch OCI index (amd64 + a small arm64 variant) of two
gzip layers (level 6, as registries serve them):
  1. a base layer shared by all images of one arch: the host's libc6 files
     (`dpkg -L libc6`, ~13 MB) for amd64, a few small text files for arm64;
  2. an app layer per image: real binaries (most of them Go) taken from Debian
     packages unpacked under PKGDIR/<package>/ (bench/run.sh unpacks them with
     `apt-get download` + `dpkg-deb -x`, nothing is installed), and the kubectl
     builds of the `kubectl` package (/usr/lib/google-cloud-sdk/bin/kubectl.1.NN)
     where the machine has them. The four kube-* images get different kubectl
     releases: like the real control-plane binaries they share most of their
     code (client-go, apimachinery), which is the cross-image redundancy that a
     solid xz/zstd stream finds.
--scale 3 gives each app layer about three times the content, from *different*
real binaries (no file repeats within an image), so compression ratios stay
realistic.

Each slot of a role lists alternatives; the first that exists is used, so the
set still builds (a little differently) on a machine without the kubectl
package. The chosen files are printed (--json: as JSON) for the report.

Deterministic: fixed mtimes and owners, gzip mtime 0; the same files give the
same digests. Writes DIR/oci-layout, DIR/index.json, DIR/blobs/sha256/*.
--seed copies every REF (all arches, digests preserved) to a plain-HTTP registry.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from concurrent.futures import ProcessPoolExecutor

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
MTIME = 1700000000
CREATED = "2023-11-14T22:13:20Z"

GSDK = "/usr/lib/google-cloud-sdk/bin/"


def k(v):
    """A kubectl build of the `kubectl` package (host path)."""
    return GSDK + ("kubectl" if v == "" else "kubectl." + v)


# role -> {scale: [slot, ...]}; slot = list of alternatives.
# An alternative is "pkg:/path" (inside PKGDIR/pkg) or an absolute host path.
# The first slot's file becomes /usr/bin/<role>; the others keep their basename
# under their own directory.
CNI = "containernetworking-plugins:/usr/lib/cni/"
ROLES = {
    "kube-apiserver": {
        1: [[k("1.30"), "kubernetes-client:/usr/bin/kubectl"]],
        3: [[k("1.30"), "kubernetes-client:/usr/bin/kubectl"],
            [k("1.33"), "hugo:/usr/bin/hugo"],
            ["prometheus:/usr/bin/prometheus"]],
    },
    "kube-controller-manager": {
        1: [[k("1.29"), "containerd:/usr/bin/containerd"]],
        3: [[k("1.29"), "containerd:/usr/bin/containerd"],
            [k("1.32"), "rclone:/usr/bin/rclone"],
            ["prometheus:/usr/bin/promtool"]],
    },
    "kube-scheduler": {
        1: [[k("1.27"), "gh:/usr/bin/gh"]],
        3: [[k("1.27"), "gh:/usr/bin/gh"],
            [k(""), "golang-1.19-go:/usr/lib/go-1.19/pkg/tool/linux_amd64/compile"],
            ["containerd:/usr/bin/containerd", "rclone:/usr/bin/rclone"]],
    },
    "kube-proxy": {
        1: [[k("1.28"), "prometheus:/usr/bin/prometheus"]],
        3: [[k("1.28"), "prometheus:/usr/bin/prometheus"],
            [k("1.31"), "hugo:/usr/bin/hugo"],
            ["kubernetes-client:/usr/bin/kubectl"]],
    },
    "etcd": {
        1: [["etcd-server:/usr/bin/etcd"], ["etcd-client:/usr/bin/etcdctl"]],
        3: [["etcd-server:/usr/bin/etcd"], ["etcd-client:/usr/bin/etcdctl"],
            ["containerd:/usr/bin/ctr"], ["restic:/usr/bin/restic"],
            ["influxdb:/usr/bin/influxd"], ["syncthing:/usr/bin/syncthing"]],
    },
    "coredns": {
        1: [["docker-registry:/usr/bin/docker-registry"]],
        3: [["docker-registry:/usr/bin/docker-registry"], ["caddy:/usr/bin/caddy"]],
    },
    "flannel": {
        1: [["runc:/usr/sbin/runc"], [CNI + "bridge"], [CNI + "host-local"],
            [CNI + "portmap"], [CNI + "loopback"]],
        3: [["runc:/usr/sbin/runc"], [CNI + "bridge"], [CNI + "host-local"],
            [CNI + "portmap"], [CNI + "loopback"],
            ["containerd:/usr/bin/containerd-shim-runc-v2"],
            ["containerd:/usr/bin/containerd-shim-runc-v1"],
            [CNI + "dhcp"], [CNI + "firewall"], [CNI + "macvlan"], [CNI + "tuning"],
            ["skopeo:/usr/bin/skopeo"]],
    },
    "flannel-cni-plugin": {
        1: [[CNI + "ptp"]],
        3: [[CNI + "ptp"], [CNI + "bandwidth"], [CNI + "host-device"]],
    },
    "pause": {
        1: [["golang-1.19-go:/usr/lib/go-1.19/pkg/tool/linux_amd64/pack"]],
        3: [["golang-1.19-go:/usr/lib/go-1.19/pkg/tool/linux_amd64/pack"],
            ["golang-1.19-go:/usr/lib/go-1.19/pkg/tool/linux_amd64/buildid"],
            ["golang-1.19-go:/usr/lib/go-1.19/pkg/tool/linux_amd64/test2json"]],
    },
}

# Debian packages bench/run.sh must unpack under PKGDIR.
PACKAGES = sorted({alt.split(":", 1)[0] for r in ROLES.values() for s in r.values()
                   for slot in s for alt in slot if not alt.startswith("/")})


def die(msg):
    print("make_set.py: error: " + msg, file=sys.stderr)
    sys.exit(2)


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def cjson(o):
    return json.dumps(o, separators=(",", ":")).encode()


def resolve(alt, pkgs):
    if alt.startswith("/"):
        return alt, alt
    pkg, path = alt.split(":", 1)
    return os.path.join(pkgs, pkg) + path, path


def pick(role, scale, pkgs):
    """[(host file, path in image)] for the role's app layer."""
    out = []
    for n, slot in enumerate(ROLES[role][scale]):
        for alt in slot:
            host, inner = resolve(alt, pkgs)
            if os.path.isfile(host):
                break
        else:
            die("none of %s exists (did bench/run.sh unpack the packages?)" % slot)
        if n == 0:
            inner = "/usr/bin/" + role
        elif alt.startswith("/"):
            inner = "/usr/bin/" + os.path.basename(host)
        out.append((host, inner.lstrip("/")))
    return out


def ti(name, size=0, mode=0o644, kind=tarfile.REGTYPE, link=""):
    t = tarfile.TarInfo(name)
    t.size, t.mode, t.type, t.linkname = size, mode, kind, link
    t.mtime, t.uid, t.gid, t.uname, t.gname = MTIME, 0, 0, "root", "root"
    return t


def make_tar(files, extra=()):
    """files: [(host path, path in image)]; extra: [(path, bytes)]. Parent
    directories are added; symlinks are kept as symlinks."""
    buf = io.BytesIO()
    seen = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def dirs(p):
            parts = p.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i]) + "/"
                if d not in seen:
                    seen.add(d)
                    tf.addfile(ti(d, mode=0o755, kind=tarfile.DIRTYPE))
        for host, inner in files:
            dirs(inner)
            if os.path.islink(host):
                tf.addfile(ti(inner, mode=0o777, kind=tarfile.SYMTYPE, link=os.readlink(host)))
                continue
            st = os.stat(host)
            with open(host, "rb") as f:
                tf.addfile(ti(inner, size=st.st_size, mode=st.st_mode & 0o7777), f)
        for inner, data in extra:
            dirs(inner)
            tf.addfile(ti(inner, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as g:
        g.write(data)
    return buf.getvalue()


class Layout:
    def __init__(self, root):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)

    def put(self, mt, data, **extra):
        h = sha256(data)
        p = os.path.join(self.blobs, h)
        if not os.path.exists(p):
            with open(p + ".tmp", "wb") as f:
                f.write(data)
            os.replace(p + ".tmp", p)
        d = {"mediaType": mt, "digest": "sha256:" + h, "size": len(data)}
        d.update(extra)
        return d


def layer_job(args):
    """(files, extra) -> (gzip bytes, diff_id, uncompressed size); runs in a worker."""
    files, extra = args
    tar = make_tar(files, extra)
    return gz(tar), "sha256:" + sha256(tar), len(tar)


def base_files(arch):
    if arch == "amd64":
        out = subprocess.run(["dpkg", "-L", "libc6"], check=True, stdout=subprocess.PIPE,
                             text=True).stdout.split()
        # Canonical paths (merged /usr: /lib64/x and /usr/lib64/x are one file),
        # files and symlinks to files only; no duplicates.
        files = set()
        for p in out:
            if os.path.isdir(p) or not (os.path.isfile(p) or os.path.islink(p)):
                continue
            p = os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))
            if not p.startswith("/usr/share/doc/"):
                files.add(p)
        return [(p, p.lstrip("/")) for p in sorted(files)], [
            ("etc/os-release", b'NAME="ALT bench base"\nID=altlinux\nALT_BRANCH_ID=c10f2\n'),
            ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")]
    return [], [("etc/os-release", b'NAME="ALT bench base arm64"\nID=altlinux\n'),
                ("etc/arch", b"arm64\n")]


def arm64_app(role, files):
    """A small, different file set: the copyright notices of the packages used."""
    extra = [("etc/bench-image", ("%s arm64\n" % role).encode())]
    for host, inner in files:
        extra.append(("usr/share/bench/" + os.path.basename(inner) + ".arm64",
                      ("arm64 build of %s (%d bytes on amd64)\n" % (inner, os.path.getsize(host))).encode() * 64))
    return [], extra


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--pkgs", help="directory with unpacked packages (PKGDIR/<pkg>/...)")
    ap.add_argument("--scale", type=int, choices=(1, 3), default=1)
    ap.add_argument("--seed", metavar="HOST:PORT")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true", help="print the chosen files and sizes as JSON")
    ap.add_argument("--list-packages", action="store_true", help="print the Debian packages needed and exit")
    ap.add_argument("refs", nargs="*")
    a = ap.parse_args()
    if a.list_packages:
        print(" ".join(PACKAGES))
        return
    if not a.refs or not a.out or not a.pkgs:
        die("--out, --pkgs and at least one REF are required")

    roles = {}
    for ref in a.refs:
        role = ref.split(":", 1)[0].rsplit("/", 1)[-1]
        if role not in ROLES:
            die("no content defined for %s (role %s)" % (ref, role))
        roles[ref] = role

    layout = Layout(os.path.abspath(a.out))
    picks = {ref: pick(roles[ref], a.scale, a.pkgs) for ref in a.refs}

    # All layers, compressed in parallel: base per arch, then app per (ref, arch).
    jobs = {("base", "amd64"): base_files("amd64"), ("base", "arm64"): base_files("arm64")}
    for ref in a.refs:
        jobs[(ref, "amd64")] = (picks[ref], [("etc/bench-image", ("%s amd64\n" % ref).encode())])
        jobs[(ref, "arm64")] = arm64_app(roles[ref], picks[ref])
    keys = list(jobs)
    with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        results = dict(zip(keys, ex.map(layer_job, [jobs[k_] for k_ in keys])))

    layers = {}
    for key, (blob, diff, usize) in results.items():
        layers[key] = (layout.put(OCI_LAYER_GZIP, blob), diff, usize)

    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    report = {"scale": a.scale, "images": {}, "base_amd64_bytes": layers[("base", "amd64")][2]}
    total_u = layers[("base", "amd64")][2]
    total_gz = layers[("base", "amd64")][0]["size"]
    for ref in a.refs:
        insts = []
        for arch in ("amd64", "arm64"):
            b, bdiff, _ = layers[("base", arch)]
            l, ldiff, usize = layers[(ref, arch)]
            cfg = {"created": CREATED, "architecture": arch, "os": "linux"}
            if arch == "arm64":
                cfg["variant"] = "v8"
            cfg["config"] = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                             "Entrypoint": ["/usr/bin/" + roles[ref]]}
            cfg["rootfs"] = {"type": "layers", "diff_ids": [bdiff, ldiff]}
            cfg["history"] = [{"created": CREATED, "created_by": "bench base " + arch},
                              {"created": CREATED, "created_by": "bench app " + ref}]
            c = layout.put(OCI_CONFIG, cjson(cfg))
            m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": c, "layers": [b, l]}
            plat = {"architecture": arch, "os": "linux"}
            if arch == "arm64":
                plat["variant"] = "v8"
            insts.append(layout.put(OCI_MANIFEST, cjson(m), platform=plat))
            if arch == "amd64":
                total_u += usize
                total_gz += l["size"]
                report["images"][ref] = {"app_layer_bytes": usize, "app_layer_gzip_bytes": l["size"],
                                         "files": [h for h, _ in picks[ref]]}
        idx = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": insts}
        index["manifests"].append(layout.put(OCI_INDEX, cjson(idx), annotations={REF_NAME: ref}))
    with open(os.path.join(layout.root, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(layout.root, "index.json"), "wb") as f:
        f.write(cjson(index))
    report["amd64_uncompressed_bytes"] = total_u
    report["amd64_gzip_bytes"] = total_gz

    if a.seed:
        for ref in a.refs:
            cmd = ["skopeo", "--insecure-policy", "copy", "--quiet", "--all", "--preserve-digests",
                   "--dest-tls-verify=false", "oci:%s:%s" % (layout.root, ref),
                   "docker://%s/%s" % (a.seed, ref)]
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if r.returncode:
                die("seeding %s failed: %s%s" % (ref, r.stdout, r.stderr))

    if a.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        for ref, r in report["images"].items():
            print("%-42s %7.1f MB  %s" % (ref, r["app_layer_bytes"] / 1e6,
                                          " ".join(os.path.basename(f) for f in r["files"])))
        print("amd64 total: %.1f MB uncompressed (base %.1f MB), %.1f MB as gzip layers"
              % (total_u / 1e6, report["base_amd64_bytes"] / 1e6, total_gz / 1e6))


if __name__ == "__main__":
    main()
