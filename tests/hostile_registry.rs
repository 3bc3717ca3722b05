//! A hostile registry, as a small HTTP server on loopback: it names a token
//! service on another host over plain HTTP, or sends an upload to another
//! origin. The user's credentials and the image must not follow. A second
//! server stands for the other host and records every request it gets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use u7s_bundle::registry::auth::Credentials;
use u7s_bundle::registry::{Client, ClientOptions, RegistryError};

/// A server answering every request with `answer(request head)`; the heads
/// of the requests it got are kept.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(answer: impl Fn(&str) -> String + Send + 'static) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let head = read_request(&s);
                log.lock().unwrap().push(head.clone());
                let _ = (&s).write_all(answer(&head).as_bytes());
            }
        });
        Server { port, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// The request head; a body (Content-Length) is read and dropped.
fn read_request(s: &TcpStream) -> String {
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<u64>().ok())?
        })
        .unwrap_or(0);
    let _ = std::io::copy(&mut r.take(len), &mut std::io::sink());
    head
}

fn reply(status: &str, headers: &[String]) -> String {
    let mut s = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s + "\r\n"
}

fn client(port: u16) -> Client {
    Client::new(
        &format!("127.0.0.1:{port}"),
        &ClientOptions {
            plain_http: true,
            credentials: Some(Credentials {
                username: "admin".into(),
                password: "s3cret-password".into(),
            }),
            attempts: 1,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn a_plain_http_token_realm_on_another_host_gets_no_credentials() {
    let other = Server::start(|_| reply("200 OK", &[]));
    // "localhost" is not the host the registry was given as (127.0.0.1).
    let realm = format!("http://localhost:{}/token", other.port);
    let registry = Server::start(move |_| {
        reply(
            "401 Unauthorized",
            &[format!(
                "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"reg\""
            )],
        )
    });
    let err = client(registry.port).ping().unwrap_err();
    assert!(
        matches!(err, RegistryError::PlainTokenRealm { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("localhost"), "{err}");
    assert!(
        other.requests().is_empty(),
        "the other host was asked: {:?}",
        other.requests()
    );
}

#[test]
fn the_registrys_own_plain_http_token_realm_gets_them() {
    let token = Server::start(|_| {
        "HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"token\":\"tok\"}"
            .to_string()
    });
    let realm = format!("http://127.0.0.1:{}/token", token.port);
    let registry = Server::start(move |head| {
        if head.contains("Bearer tok") {
            reply("200 OK", &[])
        } else {
            reply(
                "401 Unauthorized",
                &[format!("WWW-Authenticate: Bearer realm=\"{realm}\"")],
            )
        }
    });
    client(registry.port).ping().unwrap();
    let asked = token.requests();
    assert_eq!(asked.len(), 1);
    assert!(asked[0].to_lowercase().contains("authorization: basic"));
}

#[test]
fn an_upload_location_on_another_origin_is_refused() {
    let other = Server::start(|_| reply("202 Accepted", &[]));
    let location = format!("http://localhost:{}/upload/1", other.port);
    let registry = Server::start(move |head| {
        if head.starts_with("POST") {
            reply("202 Accepted", &[format!("Location: {location}")])
        } else {
            reply("201 Created", &[])
        }
    });
    let digest = u7s_bundle::digest::Digest::of(b"layer");
    let err = client(registry.port)
        .push_blob_bytes("c10f/x", &digest, b"layer")
        .unwrap_err();
    assert!(matches!(err, RegistryError::ForeignUpload { .. }), "{err}");
    assert!(
        other.requests().is_empty(),
        "the other origin got: {:?}",
        other.requests()
    );
}
