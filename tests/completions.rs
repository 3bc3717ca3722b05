//! `u7s-bundle completions bash|zsh|fish`: the bash script is loaded into a
//! real bash and asked to complete, as the shell does on Tab; the zsh and
//! fish scripts (those shells are not installed here) are checked to name
//! every visible subcommand and a command's options.

mod common;

use std::process::Command;

use common::{command, stdout_ok};

fn completions(shell: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    stdout_ok(
        &command(home.path())
            .args(["completions", shell])
            .output()
            .unwrap(),
    )
}

/// What bash offers for the words typed so far (the last one may be empty).
fn bash_complete(script: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("u7s-bundle.bash");
    std::fs::write(&file, script).unwrap();
    let line = words.join(" ");
    let words_array: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        r#"source '{file}'
func=$(complete -p u7s-bundle | sed -n 's/.*-F \([^ ]*\).*/\1/p')
[[ -n $func ]] || {{ echo "no completion function registered" >&2; exit 1; }}
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
"$func" u7s-bundle "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        file = file.display(),
        words = words_array.join(" "),
        cword = words.len() - 1,
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

const SUBCOMMANDS: [&str; 14] = [
    "profiles",
    "plan",
    "build",
    "inspect",
    "verify",
    "load",
    "inventory",
    "keygen",
    "preflight",
    "init",
    "join",
    "services",
    "node-trust",
    "completions",
];

#[test]
fn bash_completes_subcommands_options_and_values() {
    let script = completions("bash");
    let subs = bash_complete(&script, &["u7s-bundle", ""]);
    for s in SUBCOMMANDS {
        assert!(subs.iter().any(|w| w == s), "{s} not offered: {subs:?}");
    }
    assert_eq!(bash_complete(&script, &["u7s-bundle", "lo"]), ["load"]);

    let mut opts = bash_complete(&script, &["u7s-bundle", "load", "--sig"]);
    opts.sort();
    assert_eq!(opts, ["--sign-by", "--sign-key", "--sigstore-dir"]);

    let mut shells = bash_complete(&script, &["u7s-bundle", "completions", ""]);
    shells.retain(|w| !w.starts_with('-'));
    shells.sort();
    assert_eq!(shells, ["bash", "fish", "zsh"]);

    let codecs = bash_complete(&script, &["u7s-bundle", "build", "--compression", ""]);
    assert_eq!(codecs, ["xz", "zstd"]);
}

#[test]
fn zsh_and_fish_scripts_name_every_subcommand() {
    let zsh = completions("zsh");
    assert!(zsh.starts_with("#compdef u7s-bundle"), "{}", &zsh[..80]);
    let fish = completions("fish");
    assert!(fish.contains("complete -c u7s-bundle"));
    for s in SUBCOMMANDS {
        assert!(zsh.contains(&format!("'{s}:")), "zsh lacks {s}");
        assert!(fish.contains(&format!("-a \"{s}\"")), "fish lacks {s}");
    }
    for opt in ["sign-key", "lookaside-url", "registries-conf-d"] {
        assert!(zsh.contains(&format!("--{opt}")), "zsh lacks --{opt}");
        assert!(fish.contains(&format!("-l {opt}")), "fish lacks --{opt}");
    }
    // An unknown shell is a usage error.
    let home = tempfile::tempdir().unwrap();
    let out = command(home.path())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
