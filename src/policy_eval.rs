//! Would CRI-O run this image? `policy.json` evaluated for the `docker`
//! transport the way containers/image (5.23, the library inside CRI-O, podman
//! and skopeo) evaluates it in `IsRunningImageAllowed`.
//!
//! For an image pulled as `host/repo:tag` whose (per-platform) manifest is
//! known:
//!
//! 1. the requirements are those of the most specific policy scope
//!    ([`Policy::requirements_for_docker`]); **every** one must be satisfied;
//! 2. `reject` refuses, `insecureAcceptAnything` accepts;
//! 3. `signedBy` with `keyType: GPGKeys`: the signatures are read from the
//!    lookaside that `registries.d` names for the image (`file://` or
//!    `http(s)://`; containers/image's built-in default directory when nothing
//!    is configured), `signature-1`, `signature-2`, … up to the first missing
//!    one. The requirement is satisfied when *one* signature verifies with the
//!    keys of `keyPath` / `keyPaths` / `keyData` (primary keys only, as the
//!    GPGME mechanism; see [`crate::sign::verify_simple`]), its
//!    `docker-manifest-digest` matches the manifest, and its
//!    `docker-reference` matches the image per `signedIdentity` (default
//!    `matchRepoDigestOrExact`: pulled by tag, the signed reference must equal
//!    `host/repo:tag` exactly);
//! 4. anything else — other key types, requirement types we don't model
//!    (`sigstoreSigned`, newer ones) — refuses: fail closed. (containers/image
//!    knows `sigstoreSigned`; an image we can't check is reported as refused
//!    rather than passed.)
//!
//! Every refusal carries the reason containers/image would give, so that
//! `preflight` can say what to fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use sha2::Digest as _;

use crate::sign::{self, Cert};
use crate::trust::lookaside::{self, Fetch, LookasideError};
use crate::trust::policy::{KeySource, Policy, Requirement, SignedBy, SignedIdentity};
use crate::trust::{registries_d, DockerName};

/// Where containers/image reads signatures for root when registries.d
/// configures no lookaside for an image.
pub const BUILTIN_LOOKASIDE_ROOT: &str = "/var/lib/containers/sigstore";
/// The same for other users, relative to `$HOME`.
pub const BUILTIN_LOOKASIDE_USER: &str = ".local/share/containers/sigstore";

/// Why an image was accepted: one line per requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub reasons: Vec<String>,
}

/// An image refused by the policy, with the reason (containers/image's words
/// where it has them).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

/// The image to check: its name as pulled and the manifest that will run.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    /// `host[:port]/repo:tag`, exactly the name the pull uses.
    pub reference: &'a str,
    /// The bytes of the manifest that runs (for an index pulled by tag, the
    /// chosen platform's manifest: that is the one whose signature counts).
    pub manifest: &'a [u8],
}

/// The configuration an evaluation reads.
pub struct Evaluator<'a> {
    pub policy: &'a Policy,
    /// `registries.d` (a missing directory configures nothing).
    pub registries_d: &'a Path,
    /// Reads `http(s)://` lookasides.
    pub http: &'a dyn Fetch,
}

impl Evaluator<'_> {
    /// `Ok` if containers/image would allow running `image`, else why not.
    pub fn evaluate(&self, image: Image<'_>) -> Result<Accepted, Rejected> {
        let reqs = self.policy.requirements_for_docker(image.reference);
        if reqs.is_empty() {
            // The parser refuses empty lists; be paranoid anyway.
            return Err(Rejected(format!(
                "no policy requirements apply to {}",
                image.reference
            )));
        }
        let mut reasons = Vec::new();
        for req in reqs {
            reasons.push(self.requirement(req, image)?);
        }
        Ok(Accepted { reasons })
    }

    fn requirement(&self, req: &Requirement, image: Image<'_>) -> Result<String, Rejected> {
        match req {
            Requirement::InsecureAcceptAnything => Ok("insecureAcceptAnything".into()),
            Requirement::Reject => Err(Rejected(format!(
                "Running image docker://{} is rejected by policy",
                image.reference
            ))),
            Requirement::SignedBy(s) => self.signed_by(s, image),
            Requirement::Other(v) => Err(Rejected(format!(
                "policy requirement type {} is not supported by this check (refused to stay on the safe side)",
                v.get("type").map_or_else(|| "?".to_string(), |t| t.to_string())
            ))),
        }
    }

    fn signed_by(&self, s: &SignedBy, image: Image<'_>) -> Result<String, Rejected> {
        if s.key_type != "GPGKeys" {
            return Err(Rejected(format!(
                "Unimplemented \"keyType\" value \"{}\"",
                s.key_type
            )));
        }
        let sigs = self.signatures(image)?;
        if sigs.is_empty() {
            return Err(Rejected(format!(
                "A signature was required, but no signature exists (looked in {})",
                self.lookaside_base(image.reference)?
            )));
        }
        let keys = load_keys(&s.keys)?;
        let mut rejections = Vec::new();
        for (i, sig) in sigs.iter().enumerate() {
            match check_signature(&keys, s.signed_identity.as_ref(), image, sig) {
                Ok(fpr) => return Ok(format!("signedBy {fpr} (signature-{})", i + 1)),
                Err(why) => rejections.push(format!("signature-{}: {why}", i + 1)),
            }
        }
        Err(Rejected(if rejections.len() == 1 {
            rejections.remove(0)
        } else {
            format!(
                "None of the signatures were accepted, reasons: {}",
                rejections.join("; ")
            )
        }))
    }

    /// The lookaside base URL for `reference`: registries.d, else the
    /// built-in default directory.
    fn lookaside_base(&self, reference: &str) -> Result<String, Rejected> {
        let configured = registries_d::lookaside_for(self.registries_d, reference)
            .map_err(|e| Rejected(format!("reading {}: {e}", self.registries_d.display())))?;
        Ok(configured.unwrap_or_else(builtin_lookaside))
    }

    fn signatures(&self, image: Image<'_>) -> Result<Vec<Vec<u8>>, Rejected> {
        let name = DockerName::parse(image.reference).map_err(|why| {
            Rejected(format!(
                "invalid image reference {}: {why}",
                image.reference
            ))
        })?;
        let base = self.lookaside_base(image.reference)?;
        let digest = manifest_digest("sha256", image.manifest);
        lookaside::read_signatures_from_url(&base, &name.path, &digest, self.http)
            .map_err(|e| Rejected(format!("reading signatures: {e}")))
    }
}

/// containers/image's default lookaside: `/var/lib/containers/sigstore` for
/// root, `$HOME/.local/share/containers/sigstore` for others.
fn builtin_lookaside() -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let dir: PathBuf = match (root, std::env::var_os("HOME")) {
        (false, Some(home)) => Path::new(&home).join(BUILTIN_LOOKASIDE_USER),
        _ => PathBuf::from(BUILTIN_LOOKASIDE_ROOT),
    };
    format!("file://{}", dir.display())
}

/// The keys of a `signedBy` requirement; none → refused, as containers/image
/// does ("No public keys imported").
fn load_keys(source: &KeySource) -> Result<Vec<Cert>, Rejected> {
    let keys = match source {
        KeySource::Path(p) => sign::load_keyring(&[PathBuf::from(p)]),
        KeySource::Paths(ps) => {
            sign::load_keyring(&ps.iter().map(PathBuf::from).collect::<Vec<_>>())
        }
        KeySource::Data(d) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map_err(|e| Rejected(format!("keyData is not base64: {e}")))?;
            sign::load_keyring_bytes(&bytes)
        }
    }
    .map_err(|e| Rejected(format!("reading the policy's keys: {e}")))?;
    if keys.is_empty() {
        return Err(Rejected("No public keys imported".into()));
    }
    Ok(keys)
}

/// One signature against one `signedBy`: the signer's fingerprint, or why not.
fn check_signature(
    keys: &[Cert],
    identity: Option<&SignedIdentity>,
    image: Image<'_>,
    sig: &[u8],
) -> Result<String, String> {
    let (payload, fpr) = sign::verify_simple(keys, sig).map_err(|e| e.to_string())?;
    let (algo, _) = payload
        .manifest_digest
        .split_once(':')
        .ok_or_else(|| format!("invalid digest {}", payload.manifest_digest))?;
    if manifest_digest(algo, image.manifest).replacen('=', ":", 1) != payload.manifest_digest {
        return Err(format!(
            "Signature for docker digest \"{}\" does not match the image",
            payload.manifest_digest
        ));
    }
    let default = SignedIdentity::MatchRepoDigestOrExact;
    if !identity_matches(
        identity.unwrap_or(&default),
        image.reference,
        &payload.docker_reference,
    ) {
        return Err(format!(
            "Signature for identity \"{}\" is not accepted (image pulled as {})",
            payload.docker_reference, image.reference
        ));
    }
    Ok(fpr)
}

/// `algo=hex` of `bytes` (algo: sha256, sha384 or sha512; anything else gives
/// a digest nothing matches).
fn manifest_digest(algo: &str, bytes: &[u8]) -> String {
    let hex = match algo {
        "sha256" => hex::encode(sha2::Sha256::digest(bytes)),
        "sha384" => hex::encode(sha2::Sha384::digest(bytes)),
        "sha512" => hex::encode(sha2::Sha512::digest(bytes)),
        _ => return "unsupported=".to_string(),
    };
    format!("{algo}={hex}")
}

/// A docker reference normalized as `reference.ParseNormalizedNamed` does.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Named {
    /// `host/path`
    name: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Named {
    fn parse(s: &str) -> Option<Named> {
        let n = DockerName::parse(s).ok()?;
        let host = if n.host == "index.docker.io" {
            "docker.io".to_string()
        } else {
            n.host
        };
        let path = if host == "docker.io" && !n.path.contains('/') {
            format!("library/{}", n.path)
        } else {
            n.path
        };
        let (tag, digest) = match n.suffix.split_once('@') {
            Some((t, d)) => (t, Some(d.to_string())),
            None => (n.suffix.as_str(), None),
        };
        let tag = tag.strip_prefix(':').map(str::to_string);
        Some(Named {
            name: format!("{host}/{path}"),
            tag,
            digest,
        })
    }

    fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// `String()`: `name[:tag][@digest]`.
    fn full(&self) -> String {
        let mut s = self.name.clone();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

fn match_repo_digest_or_exact(intended: &Named, signature: &Named) -> bool {
    if intended.tag.is_some() {
        signature.full() == intended.full()
    } else if intended.digest.is_some() {
        signature.name == intended.name
    } else {
        false
    }
}

/// containers/image's `refMatchesPrefix`.
fn ref_matches_prefix(reference: &str, prefix: &str) -> bool {
    match reference.len().cmp(&prefix.len()) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => reference == prefix,
        std::cmp::Ordering::Greater => {
            reference.starts_with(prefix)
                && matches!(reference.as_bytes()[prefix.len()], b':' | b'/' | b'@')
        }
    }
}

/// Does the signed `docker-reference` satisfy `identity` for an image pulled
/// as `image_ref`? (`signedIdentity` semantics of containers/image.)
pub fn identity_matches(identity: &SignedIdentity, image_ref: &str, signed: &str) -> bool {
    let (Some(intended), Some(signature)) = (Named::parse(image_ref), Named::parse(signed)) else {
        return false;
    };
    match identity {
        SignedIdentity::MatchExact => {
            !intended.is_name_only()
                && !signature.is_name_only()
                && signature.full() == intended.full()
        }
        SignedIdentity::MatchRepoDigestOrExact => match_repo_digest_or_exact(&intended, &signature),
        SignedIdentity::MatchRepository => signature.name == intended.name,
        SignedIdentity::ExactReference { docker_reference } => {
            let Some(want) = Named::parse(docker_reference) else {
                return false;
            };
            !want.is_name_only() && !signature.is_name_only() && signature.full() == want.full()
        }
        SignedIdentity::ExactRepository { docker_repository } => {
            Named::parse(docker_repository).is_some_and(|want| want.name == signature.name)
        }
        SignedIdentity::RemapIdentity {
            prefix,
            signed_prefix,
        } => {
            let full = intended.full();
            let intended = if ref_matches_prefix(&full, prefix) {
                match Named::parse(&full.replacen(prefix.as_str(), signed_prefix, 1)) {
                    Some(n) => n,
                    None => return false,
                }
            } else {
                intended
            };
            match_repo_digest_or_exact(&intended, &signature)
        }
    }
}

/// Reads `http(s)://` lookaside signatures: 200 → the body, 404 → the end of
/// the `signature-N` sequence, anything else → an error (which refuses the
/// image, as containers/image does).
pub struct HttpFetch {
    client: reqwest::blocking::Client,
}

/// Largest signature we read; real ones are well under 1 KiB.
const MAX_SIGNATURE: u64 = 4 << 20;

impl HttpFetch {
    pub fn new() -> Result<HttpFetch, reqwest::Error> {
        Self::build(None)
    }

    /// A client that reaches the host of `url` at `addr`, whatever the
    /// resolver says. A fresh node learns the registry host's address from
    /// `--address` and writes it to /etc/hosts only after the served keys
    /// are checked (nothing is written before), so the name doesn't resolve
    /// yet while they are fetched. The URL, and with it the Host header and
    /// the port, stays as given.
    pub fn resolving(url: &str, addr: std::net::IpAddr) -> Result<HttpFetch, reqwest::Error> {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string));
        Self::build(host.map(|h| (h, addr)))
    }

    fn build(resolve: Option<(String, std::net::IpAddr)>) -> Result<HttpFetch, reqwest::Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::blocking::Client::builder()
            .user_agent(concat!("u7s-bundle/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30));
        if let Some((host, addr)) = resolve {
            // The port is taken from the URL (reqwest ignores this one).
            builder = builder.resolve(&host, std::net::SocketAddr::new(addr, 0));
        }
        Ok(HttpFetch {
            client: builder.build()?,
        })
    }
}

impl Fetch for HttpFetch {
    fn fetch(&self, url: &str) -> Result<Option<Vec<u8>>, LookasideError> {
        let err = |why: String| LookasideError::Fetch {
            url: url.to_string(),
            why,
        };
        let resp = self
            .client
            .get(url)
            .send()
            .map_err(|e| err(crate::error::message_with_causes(&e)))?;
        match resp.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            reqwest::StatusCode::OK => {
                let mut body = Vec::new();
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(resp, MAX_SIGNATURE + 1),
                    &mut body,
                )
                .map_err(|e| err(e.to_string()))?;
                if body.len() as u64 > MAX_SIGNATURE {
                    return Err(err("signature larger than 4 MiB".into()));
                }
                Ok(Some(body))
            }
            s => Err(err(format!("status {s}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "registry.local/c10f/coredns:v1.9.3";

    #[test]
    fn identities() {
        let d = format!("sha256:{}", "a".repeat(64));
        let by_digest = format!("registry.local/c10f/coredns@{d}");
        let exact = SignedIdentity::MatchExact;
        let rdoe = SignedIdentity::MatchRepoDigestOrExact;
        let repo = SignedIdentity::MatchRepository;
        assert!(identity_matches(&rdoe, R, R));
        assert!(!identity_matches(
            &rdoe,
            R,
            "registry.local/c10f/coredns:v1.9.4"
        ));
        assert!(!identity_matches(
            &rdoe,
            R,
            "registry.local/k8s-c10f2/coredns:v1.9.3"
        ));
        assert!(!identity_matches(&rdoe, R, "registry.local/c10f/coredns"));
        assert!(!identity_matches(&rdoe, R, "not a reference"));
        assert!(identity_matches(
            &rdoe,
            &by_digest,
            "registry.local/c10f/coredns:other"
        ));
        assert!(!identity_matches(
            &rdoe,
            &by_digest,
            "registry.local/c10f/etcd:x"
        ));
        assert!(identity_matches(&exact, R, R));
        assert!(!identity_matches(&exact, &by_digest, R));
        assert!(identity_matches(
            &repo,
            R,
            "registry.local/c10f/coredns:zzz"
        ));
        assert!(!identity_matches(
            &repo,
            R,
            "registry.local/c10f/etcd:v1.9.3"
        ));
        // Docker Hub normalization.
        assert!(identity_matches(
            &rdoe,
            "docker.io/library/busybox:1",
            "busybox:1"
        ));
        let er = SignedIdentity::ExactReference {
            docker_reference: "other.example/x:1".into(),
        };
        assert!(identity_matches(&er, R, "other.example/x:1"));
        assert!(!identity_matches(&er, R, R));
        let erepo = SignedIdentity::ExactRepository {
            docker_repository: "other.example/x".into(),
        };
        assert!(identity_matches(&erepo, R, "other.example/x:9"));
        let remap = SignedIdentity::RemapIdentity {
            prefix: "registry.local".into(),
            signed_prefix: "registry.altlinux.org".into(),
        };
        assert!(identity_matches(
            &remap,
            R,
            "registry.altlinux.org/c10f/coredns:v1.9.3"
        ));
        assert!(!identity_matches(&remap, R, R));
        // A prefix must end at a component boundary.
        let remap = SignedIdentity::RemapIdentity {
            prefix: "registry.loc".into(),
            signed_prefix: "x.example".into(),
        };
        assert!(identity_matches(&remap, R, R));
    }

    #[test]
    fn digests() {
        assert_eq!(
            manifest_digest("sha256", b""),
            "sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(manifest_digest("sha512", b"x").starts_with("sha512="));
        assert_eq!(manifest_digest("md5", b"x"), "unsupported=");
    }

    #[test]
    fn requirements_without_signatures() {
        let t = tempfile::tempdir().unwrap();
        let rd = t.path().join("registries.d");
        std::fs::create_dir(&rd).unwrap();
        std::fs::write(
            rd.join("default.yaml"),
            format!(
                "default-docker:\n  lookaside: file://{}\n",
                t.path().join("sigstore").display()
            ),
        )
        .unwrap();
        let eval = |json: &str| {
            let policy = crate::trust::policy::parse(json.as_bytes()).unwrap();
            Evaluator {
                policy: &policy,
                registries_d: &rd,
                http: &lookaside::NoHttp,
            }
            .evaluate(Image {
                reference: R,
                manifest: b"{}",
            })
        };
        assert!(eval(r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).is_ok());
        let e = eval(r#"{"default":[{"type":"reject"}]}"#).unwrap_err();
        assert!(e.0.contains("rejected by policy"), "{e}");
        // The most specific scope decides; all its requirements must pass.
        let e = eval(
            r#"{"default":[{"type":"insecureAcceptAnything"}],
                "transports":{"docker":{"registry.local/c10f":[{"type":"insecureAcceptAnything"},{"type":"reject"}]}}}"#,
        )
        .unwrap_err();
        assert!(e.0.contains("rejected"), "{e}");
        let e = eval(
            r#"{"default":[{"type":"insecureAcceptAnything"}],
                "transports":{"docker":{"registry.local":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/nonexistent.pgp"}]}}}"#,
        )
        .unwrap_err();
        assert!(e.0.contains("no signature exists"), "{e}");
        let e = eval(
            r#"{"default":[{"type":"signedBy","keyType":"X509Certificates","keyPath":"/x"}]}"#,
        )
        .unwrap_err();
        assert!(e.0.contains("Unimplemented"), "{e}");
    }
}
