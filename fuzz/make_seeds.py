#!/usr/bin/env python3
"""Write the seed corpus under fuzz/corpus/<target>/ (small files only).

Deterministic: running it again rewrites the same files. The bundle seeds are
plain tar streams (the bundle_reader entry point compresses input that has no
xz/zstd magic), one valid bundle and variants of it that the reader refuses.
"""
import hashlib
import io
import json
import os
import tarfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def tar_of(entries):
    """entries: (name, bytes) for regular files, or a ready TarInfo + bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for e in entries:
            if isinstance(e[0], tarfile.TarInfo):
                info, data = e
            else:
                info = tarfile.TarInfo(e[0])
                data = e[1]
                info.size = len(data)
                info.mode = 0o644
                info.mtime = 0
            t.addfile(info, io.BytesIO(data) if data else None)
        end = t.offset
    # Exactly two zero blocks after the last entry, as the bundle writer
    # ends (the reader refuses tarfile's padding to a 10 KiB record).
    return buf.getvalue()[:end + 1024]


def bundle():
    layer = b"layer data " * 20
    config = json.dumps(
        {"architecture": "amd64", "os": "linux",
         "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}},
        separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha(layer), "size": len(layer)}],
    }, separators=(",", ":")).encode()
    name = "c10f/pause:3.9"
    oci_layout = b'{"imageLayoutVersion":"1.0.0"}'
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": sha(manifest), "size": len(manifest),
                       "annotations": {"org.opencontainers.image.ref.name": name}}],
    }, separators=(",", ":")).encode()
    blobs = [(manifest, "application/vnd.oci.image.manifest.v1+json", "manifest"),
             (config, "application/vnd.oci.image.config.v1+json", "config"),
             (layer, "application/vnd.oci.image.layer.v1.tar", "layer")]
    bj = {
        "format": "u7s-bundle", "format_version": 1, "platform": "c10f",
        "platform_aliases": ["k8s-c10f2"], "legacy_prefixes": ["k8s-c10f2"],
        "kube_version": "v1.26.9", "arch": "amd64", "variant": None,
        "profile": "c10f", "flannel_tag": None, "flannel_cni_plugin_tag": None,
        "created": "2026-01-01T00:00:00Z", "tool": "u7s-bundle 0.1.0",
        "layout": [{"path": "oci-layout", "digest": sha(oci_layout), "size": len(oci_layout)},
                   {"path": "index.json", "digest": sha(index), "size": len(index)}],
        "images": [{"name": name, "role": "pause",
                    "source": "registry.altlinux.org/k8s-c10f2/pause:3.9",
                    "source_digest": sha(manifest), "source_manifest_digest": sha(manifest),
                    "manifest": sha(manifest),
                    "manifest_media_type": "application/vnd.oci.image.manifest.v1+json",
                    "config": sha(config), "layers": [sha(layer)],
                    "size": len(manifest) + len(config) + len(layer), "preserved": True}],
        "blobs": [{"digest": sha(b), "size": len(b), "media_type": mt, "kind": k}
                  for b, mt, k in blobs],
    }
    files = [("amd64/oci-layout", oci_layout), ("amd64/index.json", index)]
    files += [("amd64/blobs/sha256/" + hashlib.sha256(b).hexdigest(), b) for b, _, _ in blobs]
    return bj, files


def main():
    bj, files = bundle()
    raw = json.dumps(bj, indent=2).encode()
    put("bundle_reader", "valid.tar", tar_of([("bundle.json", raw)] + files))
    put("bundle_reader", "signed-shape.tar",
        tar_of([("bundle.json", raw), ("bundle.json.sig", b"\x88\x00")] + files))
    put("bundle_reader", "missing-entry.tar", tar_of([("bundle.json", raw)] + files[:-1]))
    put("bundle_reader", "extra-entry.tar",
        tar_of([("bundle.json", raw)] + files + [("amd64/blobs/sha256/evil", b"x")]))
    put("bundle_reader", "duplicate-entry.tar",
        tar_of([("bundle.json", raw)] + files + [files[-1]]))
    flipped = bytearray(files[-1][1])
    flipped[3] ^= 1
    put("bundle_reader", "flipped-layer.tar",
        tar_of([("bundle.json", raw)] + files[:-1] + [(files[-1][0], bytes(flipped))]))
    link = tarfile.TarInfo(files[-1][0])
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/shadow"
    put("bundle_reader", "symlink.tar",
        tar_of([("bundle.json", raw)] + files[:-1] + [(link, b"")]))
    dup = raw.decode().replace('"platform": "c10f",', '"platform": "c10f",\n  "platform": "p10",', 1)
    put("bundle_reader", "duplicate-key.tar", tar_of([("bundle.json", dup.encode())] + files))
    put("bundle_reader", "no-manifest.tar", tar_of(files))

    for i, r in enumerate([
        "c10f/kube-apiserver:v1.26.9",
        "registry.altlinux.org/k8s-c10f2/pause:3.9",
        "registry.local:5000/c10f/etcd:3.5.6-0",
        "[::1]:5000/a/b:c",
        "quay.io/x/y@sha256:" + "a" * 64,
        "k8s-c10f2/flannel-cni-plugin:v1.6.2-flannel1",
        "c10f/../etc:1",
        "C10F/Pause:3.9",
        "localhost/a__b/c--d:_x",
    ]):
        put("reference", f"ref-{i}", r)

    for name, p in {
        "podsec.json": {"default": [{"type": "reject"}],
                        "transports": {"docker": {"registry.local": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/var/sigstore/keys/imagemaker.pgp"}]},
                                       "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}}},
        "permissive.json": {"default": [{"type": "insecureAcceptAnything"}]},
        "custom.json": {"default": [{"type": "reject"}],
                        "transports": {"docker": {"registry.example.org": [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/a.gpg", "/b.gpg"], "signedIdentity": {"type": "matchRepository"}}],
                                                  "quay.io/x": [{"type": "sigstoreSigned", "keyPath": "/k.pub"}]},
                                       "oci": {"": [{"type": "insecureAcceptAnything"}]}}},
        "our-scope-reject.json": {"default": [{"type": "reject"}],
                                  "transports": {"docker": {"registry.local": [{"type": "reject"}]}}},
    }.items():
        put("policy", name, json.dumps(p, indent=4))

    for name, y in {
        "podsec.yaml": "default-docker:\n  lookaside: http://sigstore.local:81/sigstore/\n  sigstore-staging: file:///var/sigstore/sigstore/\n",
        "scopes.yaml": "docker:\n  registry.local:\n    lookaside: file:///var/sigstore/sigstore\n    lookaside-staging: file:///var/sigstore/sigstore\n  quay.io:\n    use-sigstore-attachments: true\n",
        "empty.yaml": "",
        "anchors.yaml": "x: &a {lookaside: file:///s}\ndocker:\n  r.example.org: *a\n",
    }.items():
        put("registries_d", name, y)


if __name__ == "__main__":
    main()
