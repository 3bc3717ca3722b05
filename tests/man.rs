//! `u7s-bundle man --output DIR`: one page per visible subcommand, each naming
//! every option its `--help` names, and pages that a formatter can render.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_u7s-bundle"))
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run u7s-bundle");
    assert!(
        out.status.success(),
        "u7s-bundle {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The subcommands `u7s-bundle --help` lists (without `help`).
fn visible_subcommands() -> Vec<String> {
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    let mut in_commands = false;
    let mut subs = Vec::new();
    for line in help.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if in_commands {
            if !line.starts_with("  ") {
                break;
            }
            let name = line.split_whitespace().next().unwrap();
            if name != "help" {
                subs.push(name.to_string());
            }
        }
    }
    assert!(
        subs.len() >= 7,
        "too few subcommands found in --help: {subs:?}"
    );
    subs
}

/// Every `--long` option in a subcommand's `--help`.
fn long_options(sub: &str) -> BTreeSet<String> {
    let help = String::from_utf8(run(&[sub, "--help"]).stdout).unwrap();
    help.lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let t = t.strip_prefix("-q, ").unwrap_or(t);
            let t = t.strip_prefix("-h, ").unwrap_or(t);
            t.strip_prefix("--").map(|rest| {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                format!("--{name}")
            })
        })
        .collect()
}

/// A page's text as a reader sees it: roff's `\-` is a plain `-`.
fn page_text(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} missing: {e}", path.display()));
    raw.replace("\\-", "-")
}

fn generate() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("man1");
    run(&["man", "--output", out.to_str().unwrap()]);
    tmp
}

#[test]
fn every_visible_subcommand_gets_a_page_with_its_options() {
    let tmp = generate();
    let dir = tmp.path().join("man1");

    let main = page_text(&dir, "u7s-bundle.1");
    assert!(main.starts_with(".ie") || main.starts_with(".TH"), "{main}");
    for section in [
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(main.contains(section), "u7s-bundle.1 lacks {section}");
    }
    for needle in [
        "/etc/u7s-bundle/trusted.d",
        "/var/sigstore/sigstore",
        "/etc/containers/policy.json",
        "/etc/containers/registries.conf.d",
        "U7S_FLANNEL_TAG",
        "SOURCE_DATE_EPOCH",
    ] {
        assert!(
            main.contains(needle),
            "u7s-bundle.1 does not mention {needle}"
        );
    }

    let subs = visible_subcommands();
    for sub in &subs {
        let name = format!("u7s-bundle-{sub}.1");
        let page = page_text(&dir, &name);
        assert!(
            page.contains(&format!(".TH U7S-BUNDLE-{}", sub.to_uppercase())),
            "{name}: no title line"
        );
        assert!(
            main.contains(&format!("u7s-bundle-{sub}")),
            "u7s-bundle.1 does not list {sub}"
        );
        for opt in long_options(sub) {
            assert!(page.contains(&opt), "{name} does not mention {opt}");
        }
    }

    // The options the guide leans on, spelled out.
    let load = page_text(&dir, "u7s-bundle-load.1");
    for opt in [
        "--sign-by",
        "--sign-key",
        "--keyring",
        "--dry-run",
        "--trusted-dir",
        "--registries-conf-d",
    ] {
        assert!(load.contains(opt), "u7s-bundle-load.1 lacks {opt}");
    }
    // An option shown only in long help still gets its text.
    assert!(load.contains("Directory of trusted keys"));

    // Nothing else: no page for the hidden `man` nor for `help`.
    let expected: BTreeSet<String> = std::iter::once("u7s-bundle.1".to_string())
        .chain(subs.iter().map(|s| format!("u7s-bundle-{s}.1")))
        .collect();
    let found: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn man_is_hidden_from_help() {
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    assert!(!help.lines().any(|l| l.trim_start().starts_with("man ")));
}

#[test]
fn pages_render() {
    let tmp = generate();
    let dir = tmp.path().join("man1");
    let groff = Command::new("groff").arg("--version").output();
    if groff.map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("groff not installed: checked the roff header only");
        let page = std::fs::read_to_string(dir.join("u7s-bundle-load.1")).unwrap();
        assert!(page.lines().any(|l| l.starts_with(".TH U7S-BUNDLE-LOAD 1")));
        return;
    }
    for name in ["u7s-bundle.1", "u7s-bundle-load.1"] {
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-P-cbou"])
            .arg(dir.join(name))
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "groff failed on {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("invalid input character"),
            "{name}: {stderr}"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("SYNOPSIS"), "{name} rendered: {text}");
        if name == "u7s-bundle-load.1" {
            assert!(text.contains("--sign-by"), "{text}");
        } else {
            assert!(text.contains("EXIT STATUS"), "{text}");
        }
    }
}
