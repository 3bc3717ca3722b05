//! A small OCI distribution client: the calls build and load need, streaming.
//!
//! Why not `oci-client`: its blob push takes the whole blob as `Vec<u8>`, and we
//! push multi-hundred-MB layers straight out of a tar stream while hashing them,
//! finalizing an upload only after our own digest check passed. The protocol part
//! we need is small (ping, manifests, blobs, uploads, mounts, tags, bearer/basic
//! auth), so it lives here on `reqwest`'s blocking client, which lets the rest of
//! the program be plain threads.

pub mod auth;
mod stream;

pub use stream::{body_channel, BodyReceiver, BodySender};

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::blocking::{Client as HttpClient, RequestBuilder, Response};
use reqwest::header::{
    HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LINK, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};

use crate::digest::Digest;
use crate::oci;
use auth::{Challenge, Credentials};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{method} {url}: {source}")]
    Http {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url}: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{what} not found in {registry}")]
    NotFound { registry: String, what: String },
    #[error("{registry} sent the upload to another origin, {origin}: refused (its data and our credentials go only to the registry itself)")]
    ForeignUpload { registry: String, origin: String },
    #[error("{registry} asks for credentials to be sent to {realm} over plain HTTP: refused (a token service on another host must use HTTPS; plain HTTP is accepted only for the registry's own host when --plain-http was given)")]
    PlainTokenRealm { registry: String, realm: String },
    #[error("{registry} refused our credentials or requires some: {hint}")]
    Unauthorized { registry: String, hint: String },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("reading {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed: an untrusted or invalid certificate, or not
    /// TLS at all. Asking again gives the same answer, so it is never retried.
    #[error("{method} {url}: TLS handshake failed: {source}; if the registry's certificate is signed by a private CA, give that CA's PEM file with --ca-file (or use --plain-http for a plain-HTTP registry)")]
    Tls {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Connected, but the registry sent nothing for the read timeout (a
    /// half-open connection, a hung server). Transient: retried.
    #[error("{method} {url}: no answer for {secs} s (a stalled connection or a hung registry; --read-timeout sets how long to wait)")]
    Stalled {
        method: Method,
        url: String,
        secs: u64,
        #[source]
        source: reqwest::Error,
    },
    #[error("PATCH {url}: the registry took no bytes of the upload and gave no answer for {secs} s (a stalled connection or a hung registry; --read-timeout sets how long to wait)")]
    UploadStalled { url: String, secs: u64 },
    #[error("bad CA file {path}: {why}")]
    CaFile { path: String, why: String },
    #[error(transparent)]
    Oci(#[from] oci::OciError),
    #[error("interrupted")]
    Cancelled,
}

impl RegistryError {
    /// Worth retrying: connection trouble, timeouts, 5xx, 429.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Http { source, .. } => {
                source.is_connect()
                    || source.is_timeout()
                    || source.is_request()
                    || source.is_body()
            }
            RegistryError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            RegistryError::Io { .. }
            | RegistryError::Stalled { .. }
            | RegistryError::UploadStalled { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// How to reach a registry.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Talk plain HTTP (loopback test registries, registry.local as podsec sets it up).
    pub plain_http: bool,
    /// Extra PEM CA certificates to trust in addition to the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Explicit credentials; when `None`, the containers/docker auth files are searched.
    pub credentials: Option<Credentials>,
    /// Attempts for each idempotent request (1 = no retry).
    pub attempts: u32,
    /// Longest silence on a connection (waiting for an answer or for the next
    /// bytes of a body) before the request fails as stalled; `None`: wait
    /// forever. Not a total timeout: a big layer may take many minutes, but a
    /// half-open connection never sends anything again. A blob's upload
    /// stalls when the registry takes none of its bytes, or gives no answer
    /// after the last, for this long ([`Client::patch_stream`]).
    pub read_timeout: Option<Duration>,
}

/// Is this a failed TLS handshake? rustls' error sits somewhere down the
/// source chain, sometimes inside an `io::Error` (whose `source()` skips it)
/// and sometimes behind a connector's wrapper that forwards `source()` past
/// it, so its messages are recognized too (rustls' own `Display` texts for
/// handshake failures).
fn is_tls_failure(e: &reqwest::Error) -> bool {
    const HANDSHAKE: [&str; 6] = [
        "invalid peer certificate",
        "peer sent no certificates",
        "received corrupt message",
        "peer is incompatible",
        "peer misbehaved",
        "received fatal alert",
    ];
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        let text = err.to_string();
        if HANDSHAKE.iter().any(|m| text.starts_with(m)) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// One registry endpoint. Cheap to share between threads (`&Client`), and
/// cheap to clone (one connection pool and token cache for all clones).
#[derive(Clone)]
pub struct Client {
    http: HttpClient,
    /// For the one request that streams a blob ([`Client::patch_stream`]);
    /// no idle connections kept, as each upload runs its own runtime.
    upload_http: reqwest::Client,
    host: String,
    base: url::Url,
    credentials: Option<Credentials>,
    /// Authorization header value per repository scope, learnt from challenges.
    tokens: Arc<Mutex<HashMap<String, String>>>,
    /// Token services on other hosts already named on stderr.
    told_realms: Arc<Mutex<std::collections::BTreeSet<String>>>,
    attempts: u32,
    read_timeout: Option<Duration>,
}

/// What a manifest GET returned.
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// Outcome of a cross-repository mount request.
pub enum Mount {
    Mounted,
    /// The registry could not mount; it opened an upload session instead.
    Upload(String),
}

impl Client {
    pub fn new(host: &str, opts: &ClientOptions) -> Result<Client> {
        // Idempotent: the first call wins, later calls see it installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = match &opts.ca_file {
            Some(ca) => {
                let pem = std::fs::read(ca).map_err(|e| RegistryError::CaFile {
                    path: ca.display().to_string(),
                    why: e.to_string(),
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    RegistryError::CaFile {
                        path: ca.display().to_string(),
                        why: e.to_string(),
                    }
                })?;
                if certs.is_empty() {
                    return Err(RegistryError::CaFile {
                        path: ca.display().to_string(),
                        why: "no PEM certificate in it".into(),
                    });
                }
                certs
            }
            None => vec![],
        };
        // The same settings for both clients (their builders are distinct types).
        macro_rules! common {
            ($b:expr) => {
                $b.user_agent(concat!("u7s-bundle/", env!("CARGO_PKG_VERSION")))
                    .connect_timeout(Duration::from_secs(15))
                    .tls_certs_merge(certs.clone())
            };
        }
        let b = common!(HttpClient::builder())
            // The blocking client's timeout is not a total one: it bounds the
            // wait for the answer (request body included) and then each read
            // of the response body separately, so a layer may take many
            // minutes as long as bytes keep coming. (The async builder's
            // `read_timeout` would need a Tokio runtime in the reading thread.)
            .timeout(opts.read_timeout)
            .pool_max_idle_per_host(8);
        let upload_http = common!(reqwest::Client::builder())
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|source| RegistryError::Http {
                method: Method::PATCH,
                url: host.to_string(),
                source,
            })?;
        let http = b.build().map_err(|source| RegistryError::Http {
            method: Method::GET,
            url: host.to_string(),
            source,
        })?;
        let scheme = if opts.plain_http { "http" } else { "https" };
        let base =
            url::Url::parse(&format!("{scheme}://{host}/")).map_err(|e| RegistryError::Status {
                method: Method::GET,
                url: format!("{scheme}://{host}/"),
                status: StatusCode::BAD_REQUEST,
                body: e.to_string(),
            })?;
        let credentials = opts
            .credentials
            .clone()
            .or_else(|| auth::find_credentials(host, &auth::auth_file_candidates()));
        Ok(Client {
            http,
            upload_http,
            host: host.to_string(),
            base,
            credentials,
            tokens: Arc::new(Mutex::new(HashMap::new())),
            told_realms: Arc::new(Mutex::new(std::collections::BTreeSet::new())),
            attempts: opts.attempts.max(1),
            read_timeout: opts.read_timeout,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn url(&self, path: &str) -> String {
        format!("{}v2/{}", self.base, path)
    }

    /// Resolve a `Location` header (absolute or relative) against the registry.
    fn resolve(&self, location: &str) -> String {
        self.base
            .join(location)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| location.to_string())
    }

    /// Send one request with auth: on 401, answer the challenge once and resend.
    /// `build` makes the request afresh for each try (bodies are not reusable).
    fn send_once(
        &self,
        method: &Method,
        url: &str,
        scope: &str,
        build: &dyn Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let mut answered = false;
        loop {
            let mut req = build(self.http.request(method.clone(), url));
            if let Some(h) = self.tokens.lock().unwrap().get(scope) {
                req = req.header(AUTHORIZATION, h.clone());
            }
            let resp = req
                .send()
                .map_err(|source| self.send_error(method, url, source))?;
            if resp.status() != StatusCode::UNAUTHORIZED || answered {
                if resp.status() == StatusCode::UNAUTHORIZED {
                    return Err(RegistryError::Unauthorized {
                        registry: self.host.clone(),
                        hint: if self.credentials.is_some() {
                            "check the user name and password".into()
                        } else {
                            "give --username and --password-stdin, or log in with `podman login` / `skopeo login`".into()
                        },
                    });
                }
                return Ok(resp);
            }
            answered = true;
            let header = self.challenge_answer(resp.headers(), scope)?;
            self.tokens
                .lock()
                .unwrap()
                .insert(scope.to_string(), header);
        }
    }

    /// Classify a failed send: TLS trouble is final, a stall is transient.
    fn send_error(&self, method: &Method, url: &str, source: reqwest::Error) -> RegistryError {
        let (method, url) = (method.clone(), shown_url(url));
        let source = source.without_url();
        if is_tls_failure(&source) {
            RegistryError::Tls {
                method,
                url,
                source,
            }
        } else if let (true, false, Some(t)) =
            (source.is_timeout(), source.is_connect(), self.read_timeout)
        {
            RegistryError::Stalled {
                method,
                url,
                secs: t.as_secs(),
                source,
            }
        } else {
            RegistryError::Http {
                method,
                url,
                source,
            }
        }
    }

    /// Turn a 401's `WWW-Authenticate` into an Authorization header value.
    fn challenge_answer(&self, headers: &HeaderMap, scope: &str) -> Result<String> {
        let challenge = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(auth::parse_challenge)
            .next();
        let unauthorized = |hint: &str| RegistryError::Unauthorized {
            registry: self.host.clone(),
            hint: hint.to_string(),
        };
        match challenge {
            Some(Challenge::Basic) => match &self.credentials {
                Some(c) => Ok(auth::basic_header(c)),
                None => Err(unauthorized(
                    "give --username and --password-stdin, or log in with `podman login` / `skopeo login`",
                )),
            },
            Some(Challenge::Bearer { realm, service, scope: chal_scope }) => {
                let mut url = url::Url::parse(&realm).map_err(|e| unauthorized(&format!("bad token realm {realm:?}: {e}")))?;
                self.check_realm(&url)?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    let want = chal_scope.unwrap_or_else(|| scope.to_string());
                    if !want.is_empty() {
                        q.append_pair("scope", &want);
                    }
                }
                let mut req = self.http.get(url.as_str());
                if let Some(c) = &self.credentials {
                    req = req.header(AUTHORIZATION, auth::basic_header(c));
                }
                let resp = req
                    .send()
                    .map_err(|source| self.send_error(&Method::GET, &realm, source))?;
                if !resp.status().is_success() {
                    return Err(unauthorized(&format!("token service answered HTTP {}", resp.status())));
                }
                let body = read_limited(resp, 1 << 20, "token response")?;
                let t: auth::TokenResponse =
                    serde_json::from_slice(&body).map_err(|e| unauthorized(&format!("bad token response: {e}")))?;
                let token = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| unauthorized("token response has no token"))?;
                Ok(format!("Bearer {token}"))
            }
            None => Err(unauthorized("it answered 401 without a usable WWW-Authenticate challenge")),
        }
    }

    /// Where the user's password may go for a token. The realm comes from
    /// the registry's answer, so a hostile or hijacked registry could name
    /// any URL: over plain HTTP only the registry's own host, and only when
    /// the user chose plain HTTP for it; another host must be HTTPS and is
    /// named on stderr (once per client), so the user sees where it went.
    fn check_realm(&self, realm: &url::Url) -> Result<()> {
        if self.credentials.is_none() {
            return Ok(()); // anonymous: no secret of the user's goes out
        }
        let own_host = realm.host_str() == self.base.host_str();
        match realm.scheme() {
            "https" => {
                if !own_host {
                    let origin = realm.origin().ascii_serialization();
                    if self.told_realms.lock().unwrap().insert(origin.clone()) {
                        eprintln!(
                            "{}: credentials go to the token service {origin}",
                            self.host
                        );
                    }
                }
                Ok(())
            }
            "http" if own_host && self.base.scheme() == "http" => Ok(()),
            _ => Err(RegistryError::PlainTokenRealm {
                registry: self.host.clone(),
                realm: realm.origin().ascii_serialization(),
            }),
        }
    }

    /// `send_once` with bounded retries and exponential backoff for transient failures.
    fn send(
        &self,
        method: Method,
        url: &str,
        scope: &str,
        build: &dyn Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        retry(self.attempts, || {
            self.send_checked(&method, url, scope, build)
        })
    }

    /// One attempt of `send`: 5xx and 429 become (transient) errors. For calls
    /// inside their own `retry` loop, so that attempts do not multiply.
    fn send_checked(
        &self,
        method: &Method,
        url: &str,
        scope: &str,
        build: &dyn Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let resp = self.send_once(method, url, scope, build)?;
        if resp.status().is_server_error() || resp.status() == StatusCode::TOO_MANY_REQUESTS {
            return Err(status_error(method, url, resp));
        }
        Ok(resp)
    }

    /// GET /v2/: does a registry answer here?
    pub fn ping(&self) -> Result<()> {
        let url = self.url("");
        let resp = self.send(Method::GET, &url, "", &|r| r)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_error(&Method::GET, &url, resp))
        }
    }

    fn pull_scope(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }
    fn push_scope(repo: &str) -> String {
        format!("repository:{repo}:pull,push")
    }

    /// GET a manifest or index (by tag or digest); verifies the digest when asked by digest.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest> {
        let url = self.url(&format!("{repo}/manifests/{reference}"));
        let what = format!("{}/{repo}:{reference}", self.host);
        retry(self.attempts, || {
            let resp = self.send_checked(&Method::GET, &url, &Self::pull_scope(repo), &|r| {
                r.header(ACCEPT, oci::MANIFEST_ACCEPT)
            })?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Err(RegistryError::NotFound {
                    registry: self.host.clone(),
                    what: format!("manifest {repo}:{reference}"),
                });
            }
            if !resp.status().is_success() {
                return Err(status_error(&Method::GET, &url, resp));
            }
            let content_type = header_str(resp.headers(), CONTENT_TYPE);
            let bytes = read_limited(resp, oci::MAX_MANIFEST_SIZE, &what)?;
            let digest = Digest::of(&bytes);
            if let Ok(expected) = reference.parse::<Digest>() {
                if expected != digest {
                    return Err(RegistryError::DigestMismatch {
                        what: what.clone(),
                        expected,
                        actual: digest,
                    });
                }
            }
            let media_type = match serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.get("mediaType")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                }) {
                Some(m) => m,
                None => content_type.unwrap_or_default(),
            };
            Ok(FetchedManifest {
                bytes,
                media_type,
                digest,
            })
        })
    }

    /// HEAD a manifest: its digest if the tag or digest exists.
    pub fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<Digest>> {
        let url = self.url(&format!("{repo}/manifests/{reference}"));
        let resp = self.send(Method::HEAD, &url, &Self::pull_scope(repo), &|r| {
            r.header(ACCEPT, oci::MANIFEST_ACCEPT)
        })?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(
                header_str(resp.headers(), "docker-content-digest").and_then(|d| d.parse().ok())
            ),
            _ => Err(status_error(&Method::HEAD, &url, resp)),
        }
    }

    /// Start a blob download; the caller streams, hashes and verifies it. One
    /// attempt: callers retry the whole download (a body can fail midway).
    pub fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Response> {
        let url = self.url(&format!("{repo}/blobs/{digest}"));
        let resp = self.send_checked(&Method::GET, &url, &Self::pull_scope(repo), &|r| r)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                registry: self.host.clone(),
                what: format!("blob {digest} of {repo}"),
            });
        }
        if !resp.status().is_success() {
            return Err(status_error(&Method::GET, &url, resp));
        }
        Ok(resp)
    }

    /// Download a small blob (a config) whole, verified.
    pub fn get_blob_bytes(&self, repo: &str, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        retry(self.attempts, || {
            let resp = self.get_blob(repo, digest)?;
            let bytes = read_limited(resp, limit, &format!("blob {digest}"))?;
            let actual = Digest::of(&bytes);
            if &actual != digest {
                return Err(RegistryError::DigestMismatch {
                    what: format!("blob of {repo}"),
                    expected: digest.clone(),
                    actual,
                });
            }
            Ok(bytes)
        })
    }

    /// HEAD a blob in `repo`: its size when present (existence is per repository).
    pub fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(&format!("{repo}/blobs/{digest}"));
        let resp = self.send(Method::HEAD, &url, &Self::push_scope(repo), &|r| r)?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(
                header_str(resp.headers(), CONTENT_LENGTH)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            _ => Err(status_error(&Method::HEAD, &url, resp)),
        }
    }

    /// Ask the registry to mount `digest` from repository `from` into `repo`.
    pub fn mount_blob(&self, repo: &str, from: &str, digest: &Digest) -> Result<Mount> {
        let url = self.url(&format!("{repo}/blobs/uploads/?mount={digest}&from={from}"));
        let scope = format!("repository:{repo}:pull,push repository:{from}:pull");
        let resp = self.send(Method::POST, &url, &scope, &|r| {
            r.header(CONTENT_LENGTH, "0")
        })?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Upload(self.location(&resp, &url)?)),
            _ => Err(status_error(&Method::POST, &url, resp)),
        }
    }

    /// Open an upload session; returns its location.
    pub fn start_upload(&self, repo: &str) -> Result<String> {
        let url = self.url(&format!("{repo}/blobs/uploads/"));
        let resp = self.send(Method::POST, &url, &Self::push_scope(repo), &|r| {
            r.header(CONTENT_LENGTH, "0")
        })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(&Method::POST, &url, resp));
        }
        self.location(&resp, &url)
    }

    /// Append `chunk` at `offset` to an upload session (a PATCH with
    /// Content-Range), for small blobs held in memory; blobs streamed from
    /// the archive go through [`Client::patch_stream`]. Returns the next
    /// location.
    fn patch_upload(
        &self,
        repo: &str,
        location: &str,
        offset: u64,
        chunk: Bytes,
    ) -> Result<String> {
        let len = chunk.len() as u64;
        let range = format!("{offset}-{}", (offset + len).saturating_sub(1));
        let resp = self.send_once(&Method::PATCH, location, &Self::push_scope(repo), &|r| {
            r.header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, len)
                .header("content-range", range.as_str())
                .body(chunk.clone())
        })?;
        if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::NO_CONTENT {
            return Err(status_error(&Method::PATCH, location, resp));
        }
        self.location(&resp, location)
    }

    /// Finalize an upload as `digest` (PUT with an empty body). The registry checks
    /// the digest too, so a mismatch is refused twice.
    pub fn finish_upload(&self, repo: &str, location: &str, digest: &Digest) -> Result<()> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let resp = self.send_once(&Method::PUT, &url, &Self::push_scope(repo), &|r| {
            r.header(CONTENT_LENGTH, "0")
        })?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(&Method::PUT, &url, resp));
        }
        Ok(())
    }

    /// Abandon an upload session (best effort).
    pub fn cancel_upload(&self, repo: &str, location: &str) {
        let _ = self.send_once(&Method::DELETE, location, &Self::push_scope(repo), &|r| r);
    }

    /// Upload a small blob from memory: POST, PATCH, PUT.
    pub fn push_blob_bytes(&self, repo: &str, digest: &Digest, bytes: &[u8]) -> Result<()> {
        retry(self.attempts, || {
            let loc = self.start_upload(repo)?;
            let loc = if bytes.is_empty() {
                loc
            } else {
                self.patch_upload(repo, &loc, 0, Bytes::copy_from_slice(bytes))?
            };
            self.finish_upload(repo, &loc, digest)
        })
    }

    /// PUT a manifest under a tag or digest; returns the digest the registry reports.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest> {
        let url = self.url(&format!("{repo}/manifests/{reference}"));
        let resp = self.send(Method::PUT, &url, &Self::push_scope(repo), &|r| {
            r.header(CONTENT_TYPE, media_type).body(bytes.to_vec())
        })?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(&Method::PUT, &url, resp));
        }
        let ours = Digest::of(bytes);
        if let Some(theirs) = header_str(resp.headers(), "docker-content-digest")
            .and_then(|d| d.parse::<Digest>().ok())
        {
            if theirs != ours {
                return Err(RegistryError::DigestMismatch {
                    what: format!("manifest {repo}:{reference} as stored by the registry"),
                    expected: ours,
                    actual: theirs,
                });
            }
        }
        Ok(ours)
    }

    /// Every tag of a repository, following `Link` pagination.
    pub fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut url = self.url(&format!("{repo}/tags/list?n=1000"));
        let mut out = Vec::new();
        for _page in 0..1000 {
            let resp = self.send(Method::GET, &url, &Self::pull_scope(repo), &|r| r)?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Err(RegistryError::NotFound {
                    registry: self.host.clone(),
                    what: format!("repository {repo}"),
                });
            }
            if !resp.status().is_success() {
                return Err(status_error(&Method::GET, &url, resp));
            }
            let next = header_str(resp.headers(), LINK).and_then(|l| next_link(&l));
            let body = read_limited(resp, 16 << 20, "tag list")?;
            let t: Tags = serde_json::from_slice(&body).map_err(|e| RegistryError::Io {
                what: "tag list".into(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
            out.extend(t.tags.unwrap_or_default());
            match next {
                Some(n) => url = self.resolve(&n),
                None => break,
            }
        }
        Ok(out)
    }

    /// Every repository (`GET /v2/_catalog`), following `Link` pagination.
    pub fn catalog(&self) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let mut url = self.url("_catalog?n=1000");
        let mut out = Vec::new();
        for _page in 0..1000 {
            let resp = self.send(Method::GET, &url, "registry:catalog:*", &|r| r)?;
            if !resp.status().is_success() {
                return Err(status_error(&Method::GET, &url, resp));
            }
            let next = header_str(resp.headers(), LINK).and_then(|l| next_link(&l));
            let body = read_limited(resp, 16 << 20, "catalog")?;
            let c: Catalog = serde_json::from_slice(&body).map_err(|e| RegistryError::Io {
                what: "catalog".into(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
            out.extend(c.repositories.unwrap_or_default());
            match next {
                Some(n) => url = self.resolve(&n),
                None => break,
            }
        }
        Ok(out)
    }

    /// An upload session's next URL. It must stay on the registry's origin:
    /// the PATCHes that follow carry the image and the Authorization header.
    fn location(&self, resp: &Response, url: &str) -> Result<String> {
        let loc = header_str(resp.headers(), LOCATION)
            .map(|l| self.resolve(&l))
            .ok_or_else(|| RegistryError::Status {
                method: Method::POST,
                url: url.to_string(),
                status: resp.status(),
                body: "no Location header in the answer".into(),
            })?;
        let origin = url::Url::parse(&loc).map(|u| u.origin()).map_err(|_| {
            RegistryError::ForeignUpload {
                registry: self.host.clone(),
                origin: shown_url(&loc),
            }
        })?;
        if origin != self.base.origin() {
            return Err(RegistryError::ForeignUpload {
                registry: self.host.clone(),
                origin: origin.ascii_serialization(),
            });
        }
        Ok(loc)
    }
}

/// Run `f` up to `attempts` times while it fails transiently, backing off
/// 0.25 s, 0.5 s, 1 s, … (capped at 8 s).
pub fn retry<T>(attempts: u32, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut delay = Duration::from_millis(250);
    let mut n = 1;
    loop {
        match f() {
            Err(e) if e.is_transient() && n < attempts => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(8));
                n += 1;
            }
            r => return r,
        }
    }
}

fn header_str(h: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `<...>; rel="next"` from a Link header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
            return None;
        }
        Some(
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
        )
    })
}

fn status_error(method: &Method, url: &str, resp: Response) -> RegistryError {
    let status = resp.status();
    let body = read_limited(resp, 4096, "error body")
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim()
                .chars()
                .take(300)
                .collect()
        })
        .unwrap_or_default();
    RegistryError::Status {
        method: method.clone(),
        url: shown_url(url),
        status,
        body,
    }
}

/// A URL as error messages show it: without its query. Upload locations
/// carry the registry's opaque upload state (`_state=…`, hundreds of
/// characters) and a redirect may carry a signed token; the method, the
/// path and the blob named by the caller say what failed.
fn shown_url(url: &str) -> String {
    match url.split_once('?') {
        Some((path, _)) => format!("{path}?…"),
        None => url.to_string(),
    }
}

/// Read a response body whole, refusing more than `limit` bytes.
pub fn read_limited(resp: Response, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    resp.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| RegistryError::Io {
            what: what.to_string(),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(RegistryError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(buf)
}

/// Read a password from the first line of a reader (`--password-stdin`).
pub fn password_from_reader(r: impl Read) -> std::io::Result<String> {
    use std::io::BufRead;
    let mut s = String::new();
    std::io::BufReader::new(r.take(4096)).read_line(&mut s)?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_parsing() {
        assert_eq!(
            next_link(r#"</v2/c10f/etcd/tags/list?last=3.5.6-0&n=1000>; rel="next""#).as_deref(),
            Some("/v2/c10f/etcd/tags/list?last=3.5.6-0&n=1000")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }

    #[test]
    fn retry_stops_on_permanent_errors_and_bounds_transient_ones() {
        let mut calls = 0;
        let r: Result<()> = retry(3, || {
            calls += 1;
            Err(RegistryError::TooLarge {
                what: "x".into(),
                limit: 1,
            })
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
        let mut calls = 0;
        let r: Result<()> = retry(3, || {
            calls += 1;
            Err(RegistryError::Io {
                what: "x".into(),
                source: std::io::Error::other("reset"),
            })
        });
        assert!(r.is_err());
        assert_eq!(calls, 3);
    }
}

/// The registry's host name did not resolve.
#[derive(Debug, thiserror::Error)]
#[error(
    "the registry name {host} does not resolve ({why}): map it to the registry's address in \
     /etc/hosts (podsec writes `<address> registry.local sigstore.local` there)"
)]
pub struct Unresolvable {
    pub host: String,
    pub why: String,
}

/// Check that `registry` (`host[:port]`) resolves, so a missing /etc/hosts
/// line is reported as such rather than as a registry that does not answer.
/// IP literals always pass.
pub fn check_resolves(registry: &str) -> std::result::Result<(), Unresolvable> {
    use std::net::ToSocketAddrs;
    let (host, port) = match registry.rsplit_once(':') {
        // A bare IPv6 literal: every colon is part of the address.
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (registry, 80),
        Some((h, p)) => (h, p.parse().unwrap_or(80)),
        None => (registry, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match (host, port).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Unresolvable {
            host: host.to_string(),
            why: "no address".into(),
        }),
        Err(e) => Err(Unresolvable {
            host: host.to_string(),
            why: e.to_string(),
        }),
    }
}
