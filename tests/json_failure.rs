//! `--json` that scripts can trust: every command that takes `--json` prints
//! exactly one JSON document on standard output when it fails too —
//! `{ok: false, error, exit_code}`, the same error stderr shows and the same
//! code the process exits with — and a command that reports before failing
//! (preflight) has those fields merged into its report, not a second document.
//! One case per class of command: offline (profiles, plan), archive readers
//! (inspect, verify, load), registry clients (build, inventory), host set-up
//! (preflight, services, node-trust), and a command line clap refuses.

mod common;

use std::path::Path;
use std::process::Output;

use common::command;
use serde_json::Value;

fn ub(home: &Path, args: &[&str]) -> Output {
    command(home).args(args).output().expect("run u7s-bundle")
}

/// stdout is one JSON document (a second one, or text, fails to parse) that
/// says the failure: `ok: false`, the exit code the process returned, and the
/// error stderr printed. Returns the document.
#[track_caller]
fn one_failure_document(out: &Output, code: i32) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"));
    assert_eq!(doc["ok"], Value::Bool(false), "{doc}");
    assert_eq!(doc["exit_code"], Value::from(code), "{doc}");
    let error = doc["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {doc}"));
    assert!(!error.is_empty(), "{doc}");
    if code != 2 {
        // The same message as on stderr, where people read it.
        assert!(
            stderr.contains(&format!("u7s-bundle: error: {error}")),
            "stderr:\n{stderr}\nerror: {error}"
        );
    } else {
        assert!(stderr.contains(error), "stderr:\n{stderr}\nerror: {error}");
    }
    doc
}

fn p(dir: &Path, rel: &str) -> String {
    dir.join(rel).display().to_string()
}

#[test]
fn offline_commands_fail_with_one_json_document() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let out = ub(h, &["profiles", "--json", "--profiles-dir", &p(h, "none")]);
    let doc = one_failure_document(&out, 1);
    assert!(doc["error"].as_str().unwrap().contains("none"), "{doc}");

    let out = ub(h, &["plan", "--platform", "nosuch", "--json"]);
    let doc = one_failure_document(&out, 1);
    assert!(doc["error"].as_str().unwrap().contains("nosuch"), "{doc}");

    // And a success says ok: true.
    let out = ub(h, &["profiles", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], Value::Bool(true));
    assert!(doc["platforms"].as_array().is_some_and(|a| !a.is_empty()));
}

#[test]
fn a_refused_command_line_is_a_json_document_with_exit_code_2() {
    let home = tempfile::tempdir().unwrap();
    let out = ub(home.path(), &["verify", "--no-such-option", "--json"]);
    let doc = one_failure_document(&out, 2);
    assert!(
        doc["error"].as_str().unwrap().contains("--no-such-option"),
        "{doc}"
    );
    // Without --json, clap's message only.
    let out = ub(home.path(), &["verify", "--no-such-option"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn archive_readers_fail_with_one_json_document() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let junk = h.join("junk.u7s.tar.xz");
    std::fs::write(&junk, b"not a bundle at all").unwrap();
    let junk = junk.to_str().unwrap();

    one_failure_document(
        &ub(h, &["inspect", &p(h, "missing.u7s.tar.xz"), "--json"]),
        1,
    );
    // Verification failures keep their own code.
    let doc = one_failure_document(&ub(h, &["verify", junk, "--json"]), 3);
    assert!(
        doc["error"].as_str().unwrap().contains("does not verify"),
        "{doc}"
    );

    // load: before reading (no signing key), and a bundle that does not verify.
    one_failure_document(&ub(h, &["load", junk, "--json", "--dry-run"]), 1);
    let key = h.join("keys/signer");
    let out = ub(
        h,
        &[
            "keygen",
            "--uid",
            "S <s@example.org>",
            "--output",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ub(
        h,
        &[
            "load",
            junk,
            "--sign-key",
            &p(h, "keys/signer.key"),
            "--registry",
            "127.0.0.1:9",
            "--plain-http",
            "--dry-run",
            "--lock-file",
            &p(h, "load.lock"),
            "--json",
        ],
    );
    one_failure_document(&out, 3);
}

#[test]
fn registry_clients_fail_with_one_json_document() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // Port 9 (discard) on loopback: nothing listens, connections are refused.
    let out = ub(
        h,
        &[
            "build",
            "--platform",
            "c10f",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--source",
            "127.0.0.1:9",
            "--plain-http",
            "--retries",
            "1",
            "--output",
            &p(h, "out"),
            "--cache-dir",
            &p(h, "cache"),
            "--json",
        ],
    );
    one_failure_document(&out, 1);
    // inventory's JSON is its only format: --json is implied.
    let out = ub(
        h,
        &[
            "inventory",
            "--registry",
            "127.0.0.1:9",
            "--plain-http",
            "--retries",
            "1",
        ],
    );
    one_failure_document(&out, 1);
}

#[test]
fn host_commands_fail_with_one_json_document() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // preflight reports its checks, then fails: one document holding both.
    let out = ub(
        h,
        &[
            "preflight",
            "--registry",
            "127.0.0.1:9",
            "--plain-http",
            "--platform",
            "c10f",
            "--kube-version",
            "v1.26.9",
            "--arch",
            "amd64",
            "--policy",
            &p(h, "policy.json"),
            "--registries-d",
            &p(h, "registries.d"),
            "--skip-host-checks",
            "--json",
        ],
    );
    let doc = one_failure_document(&out, 1);
    let checks = doc["checks"].as_array().expect("the report's checks");
    assert!(checks.iter().any(|c| c["status"] == "failed"), "{doc}");
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .starts_with("preflight failed"),
        "{doc}"
    );

    let out = ub(
        h,
        &[
            "services",
            "--address",
            "127.0.0.1",
            "--root",
            &p(h, "root"),
            "--systemctl",
            "/bin/false",
            "--json",
        ],
    );
    one_failure_document(&out, 1);

    let out = ub(
        h,
        &[
            "node-trust",
            "--sigstore-url",
            "http://127.0.0.1:9",
            "--fingerprint",
            "0123456789ABCDEF0123456789ABCDEF01234567",
            "--policy",
            &p(h, "policy.json"),
            "--registries-d",
            &p(h, "rd"),
            "--registries-conf-d",
            &p(h, "rcd"),
            "--keys-dir",
            &p(h, "keys"),
            "--hosts-file",
            &p(h, "hosts"),
            "--json",
        ],
    );
    one_failure_document(&out, 1);
}
