//! packaging/rpm/build.sh builds the RPM with `rpmbuild -bb` (here from the
//! binary under test; the release uses the portable one), and the package
//! holds what an admin needs: the binary, a manual page per command, the
//! bash/zsh/fish completions, the docs in English and Russian, and the
//! directory of trusted keys.

use std::path::{Path, PathBuf};
use std::process::Command;

fn text(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn build_rpm(out: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let printed = text(
        &Command::new(root.join("packaging/rpm/build.sh"))
            .arg("--binary")
            .arg(env!("CARGO_BIN_EXE_u7s-bundle"))
            .arg("--out")
            .arg(out)
            .output()
            .expect("packaging/rpm/build.sh (needs rpmbuild: apt-get install rpm)"),
    );
    PathBuf::from(printed.lines().last().expect("the .rpm path").trim())
}

#[test]
fn the_rpm_installs_binary_man_pages_completions_docs_and_trust_dir() {
    let out = tempfile::tempdir().unwrap();
    let rpm = build_rpm(out.path());
    let version = env!("CARGO_PKG_VERSION");
    assert!(rpm.exists(), "{}", rpm.display());

    let query = |fmt: &str| {
        text(
            &Command::new("rpm")
                .args(["-qp", "--qf", fmt])
                .arg(&rpm)
                .output()
                .expect("rpm"),
        )
    };
    assert_eq!(
        query("%{NAME} %{VERSION} %{RELEASE}"),
        format!("u7s-bundle {version} alt1")
    );
    // path → permissions, for every file of the package.
    let files: std::collections::BTreeMap<String, String> =
        query("[%{FILEMODES:perms} %{FILENAMES}\n]")
            .lines()
            .map(|l| {
                let (mode, path) = l.split_once(' ').unwrap();
                (path.to_string(), mode.to_string())
            })
            .collect();
    let mode = |p: &str| {
        files
            .get(p)
            .unwrap_or_else(|| panic!("{p} not in the package: {files:#?}"))
            .as_str()
    };
    assert_eq!(mode("/usr/bin/u7s-bundle"), "-rwxr-xr-x");
    assert_eq!(mode("/etc/u7s-bundle"), "drwxr-xr-x");
    assert_eq!(mode("/etc/u7s-bundle/trusted.d"), "drwxr-xr-x");
    for p in [
        "/usr/share/bash-completion/completions/u7s-bundle",
        "/usr/share/zsh/site-functions/_u7s-bundle",
        "/usr/share/fish/vendor_completions.d/u7s-bundle.fish",
    ] {
        assert_eq!(mode(p), "-rw-r--r--", "{p}");
    }
    let doc = format!("/usr/share/doc/u7s-bundle-{version}");
    for d in [
        "README.md",
        "en/guide.md",
        "en/reference.md",
        "ru/guide.md",
        "ru/reference.md",
    ] {
        mode(&format!("{doc}/{d}"));
    }
    // A manual page per visible command, as `u7s-bundle man` writes them.
    let pages = tempfile::tempdir().unwrap();
    let written = text(
        &Command::new(env!("CARGO_BIN_EXE_u7s-bundle"))
            .args(["man", "--output"])
            .arg(pages.path())
            .output()
            .unwrap(),
    );
    let mut count = 0;
    for page in written.lines() {
        let name = Path::new(page).file_name().unwrap().to_str().unwrap();
        mode(&format!("/usr/share/man/man1/{name}"));
        count += 1;
    }
    assert!(count > 10, "{written}");
    // Nothing else (no build-id links, no stray files).
    let allowed = [
        "/usr/bin/u7s-bundle",
        "/etc/u7s-bundle",
        "/usr/share/man/man1/u7s-bundle",
        "/usr/share/bash-completion/completions/u7s-bundle",
        "/usr/share/zsh/site-functions/_u7s-bundle",
        "/usr/share/fish/vendor_completions.d/u7s-bundle.fish",
        doc.as_str(),
    ];
    for p in files.keys() {
        assert!(
            allowed.iter().any(|a| p.starts_with(a)),
            "unexpected file {p}"
        );
    }
}
