//! `u7s-bundle man --output DIR` (hidden): the manual pages, generated from the
//! clap definitions so that they never drift from `--help`.
//!
//! Writes `u7s-bundle.1` and one `u7s-bundle-<command>.1` per visible
//! subcommand (hidden ones, this one included, get none). The main page gets
//! EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO sections that clap has no
//! place for; every subcommand page points back to it. Meant to run at install
//! time: `u7s-bundle man --output /usr/local/share/man/man1`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;

use crate::cli::{Cli, ManArgs};

const SECTION: &str = "1";

pub fn run(args: ManArgs) -> Result<()> {
    for path in write_pages(&args.output)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// Render every page into `dir` (created if missing); returns the files written.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = long_help_for_hidden(Cli::command().disable_help_subcommand(true));
    cmd.build();
    let mut written = Vec::new();

    let main_page = render_main(&cmd)?;
    written.push(write_page(dir, cmd.get_name(), &main_page)?);

    let subcommands: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    for sub in &subcommands {
        let page = render_subcommand(sub, &cmd, &subcommands)?;
        let name = sub
            .get_display_name()
            .unwrap_or_else(|| sub.get_name())
            .to_string();
        written.push(write_page(dir, &name, &page)?);
    }
    Ok(written)
}

/// clap_mangen prints no text for an option with `hide_short_help` and no
/// separate long help (it hides the short help from the page too); such an
/// option is meant for `--help` and the manual, so give it its help as long help.
fn long_help_for_hidden(mut cmd: clap::Command) -> clap::Command {
    let fix: Vec<(clap::Id, clap::builder::StyledStr)> = cmd
        .get_arguments()
        .filter(|a| a.is_hide_short_help_set() && a.get_long_help().is_none())
        .filter_map(|a| a.get_help().map(|h| (a.get_id().clone(), h.clone())))
        .collect();
    for (id, help) in fix {
        cmd = cmd.mut_arg(id, |a| a.long_help(help));
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subs {
        cmd = cmd.mut_subcommand(name, long_help_for_hidden);
    }
    cmd
}

fn write_page(dir: &Path, name: &str, page: &[u8]) -> Result<PathBuf> {
    let path = dir.join(format!("{name}.{SECTION}"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn man(cmd: &clap::Command) -> Man {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section(SECTION)
        .source(concat!("u7s-bundle ", env!("CARGO_PKG_VERSION")))
        .manual("u7s-bundle manual")
}

/// The main page: clap's sections without its EXTRA (the after-help text says
/// in one line what EXIT STATUS says properly), then ours.
fn render_main(cmd: &clap::Command) -> Result<Vec<u8>> {
    let m = man(cmd);
    let mut out = Vec::new();
    m.render_title(&mut out)?;
    m.render_name_section(&mut out)?;
    m.render_synopsis_section(&mut out)?;
    m.render_description_section(&mut out)?;
    m.render_options_section(&mut out)?;
    m.render_subcommands_section(&mut out)?;

    let mut r = Roff::new();
    exit_status(&mut r);
    environment(&mut r);
    files(&mut r);
    let mut see_also: Vec<Inline> = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_display_name().unwrap_or_else(|| sub.get_name());
        push_ref(&mut see_also, name, SECTION);
    }
    for (page, section) in EXTERNAL_PAGES {
        push_ref(&mut see_also, page, section);
    }
    see_also.push(roman("."));
    r.control("SH", ["SEE ALSO"]);
    r.text(see_also);
    r.text([roman(
        "The guide, the full reference and the bundle format, in English and Russian: \
         docs/README.md in the source tree.",
    )]);
    r.to_writer(&mut out)?;
    m.render_version_section(&mut out)?;
    Ok(finish(out))
}

/// Each `render_*` call starts with roff's two-line preamble (the `Aq` string):
/// keep the first one only. No hyphenation (`.nh` after `.TH`): option names
/// broken across lines would not paste back into a shell. Non-ASCII characters
/// (the help texts have a few, like `…`) as `\[uXXXX]` escapes, which groff and
/// mandoc read whatever the input encoding is taken to be.
fn finish(page: Vec<u8>) -> Vec<u8> {
    let preamble = Roff::new().render();
    let text = String::from_utf8(page).expect("roff output is UTF-8");
    let text = match text.strip_prefix(&preamble) {
        Some(rest) => format!("{preamble}{}", rest.replace(&preamble, "")),
        None => text,
    };
    let mut out = String::with_capacity(text.len() + 4);
    let mut done = false;
    for line in text.split_inclusive('\n') {
        out.push_str(line);
        if !done && line.starts_with(".TH ") {
            out.push_str(".nh\n");
            done = true;
        }
    }
    let mut ascii = String::with_capacity(out.len());
    for c in out.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            ascii.push_str(&format!("\\[u{:04X}]", c as u32));
        }
    }
    ascii.into_bytes()
}

/// A subcommand page: everything clap knows, then a pointer to the main page
/// and the sibling pages.
fn render_subcommand(
    sub: &clap::Command,
    main: &clap::Command,
    siblings: &[clap::Command],
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    man(sub).render(&mut out)?;
    let mut r = Roff::new();
    r.control("SH", ["EXIT STATUS"]);
    r.text([
        roman(
            "0 success, 1 failure, 2 usage error, 3 verification failed, 130/143 interrupted; see ",
        ),
        bold(main.get_name()),
        roman(format!("({SECTION})")),
        roman(" for details, the environment and the files."),
    ]);
    let mut see_also: Vec<Inline> = Vec::new();
    push_ref(&mut see_also, main.get_name(), SECTION);
    for s in siblings.iter().filter(|s| s.get_name() != sub.get_name()) {
        push_ref(
            &mut see_also,
            s.get_display_name().unwrap_or_else(|| s.get_name()),
            SECTION,
        );
    }
    see_also.push(roman("."));
    r.control("SH", ["SEE ALSO"]);
    r.text(see_also);
    r.to_writer(&mut out)?;
    Ok(finish(out))
}

const EXTERNAL_PAGES: [(&str, &str); 6] = [
    ("skopeo", "1"),
    ("gpg", "1"),
    ("containers-policy.json", "5"),
    ("containers-registries.d", "5"),
    ("containers-registries.conf.d", "5"),
    ("containers-signature", "5"),
];

fn push_ref(v: &mut Vec<Inline>, page: &str, section: &str) {
    if !v.is_empty() {
        v.push(roman(", "));
    }
    v.push(bold(page));
    v.push(roman(format!("({section})")));
}

/// `.TP` + a bold tag + its paragraph.
fn item(r: &mut Roff, tag: Vec<Inline>, text: &str) {
    r.control("TP", []);
    r.text(tag);
    r.text([roman(text)]);
}

fn exit_status(r: &mut Roff) {
    r.control("SH", ["EXIT STATUS"]);
    for (code, text) in [
        ("0", "Success."),
        ("1", "Failure: a missing or unreadable file, a registry that does not answer, an existing archive \
               without --force, keygen finding the key files already there, an unusable signing key (a wrong \
               or missing passphrase, a public key as --sign-key, no GnuPG key for --sign-by), a failed \
               preflight check (init and join then do not run the wrapper)."),
        ("2", "Usage error: an unknown option, a missing or conflicting argument."),
        ("3", "Verification failed: the bundle is not signed (without --allow-unsigned), signed by a key that is not trusted, \
               its signature is bad, a digest or size does not match bundle.json, or the archive is malformed, truncated, \
               not a bundle at all, or carries an entry that bundle.json does not list. Nothing is pushed that was not verified."),
        ("N", "init, join: the wrapper failed with status N, passed through."),
        ("130, 143", "Interrupted by SIGINT (Ctrl-C) or SIGTERM."),
    ] {
        item(r, vec![bold(code)], text);
    }
}

fn environment(r: &mut Roff) {
    r.control("SH", ["ENVIRONMENT"]);
    for (var, text) in [
        ("U7S_FLANNEL_TAG", "Default of --flannel-tag (plan, build), as in podsec."),
        ("REGISTRY_AUTH_FILE", "Registry credentials file (containers-auth.json(5)) read first when --username is not given; \
           then ${XDG_RUNTIME_DIR}/containers/auth.json, ~/.config/containers/auth.json, ~/.docker/config.json."),
        ("XDG_CACHE_HOME", "The build cache is ${XDG_CACHE_HOME}/u7s-bundle (else ~/.cache/u7s-bundle) unless --cache-dir is given."),
        ("SOURCE_DATE_EPOCH", "build: the creation time written into bundle.json and the tar entries (reproducible builds)."),
        ("GNUPGHOME", "load --sign-by: the GnuPG home directory of the signing key (gpg's default: ~/.gnupg)."),
        ("U7S_READ_TIMEOUT", "Default of --read-timeout (plan, build, load, inventory): seconds of registry silence before a retry; 0 waits forever."),
        ("U7S_STATE_DIR", "Default of --state-dir (load, preflight, init, join): /var/lib/u7s-bundle."),
        ("U7S_KUBEADM", "Default of --kubeadm (preflight, init, join): podsec's rootless kubeadm wrapper."),
        ("U7S_PLATFORM", "preflight, init, join: the host's platform when --platform is not given (podsec's override of /etc/os-release)."),
        ("U7S_SYSTEMCTL", "Default of --systemctl (services)."),
    ] {
        item(r, vec![bold(var)], text);
    }
}

fn files(r: &mut Roff) {
    r.control("SH", ["FILES"]);
    for (path, text) in [
        ("/etc/u7s-bundle/trusted.d/*.{pgp,asc,gpg}", "Public keys trusted to sign bundles (verify, load); --trusted-dir, --keyring."),
        ("/var/sigstore/sigstore/", "Lookaside signature store written by load: <repo>@sha256=<hex>/signature-N; --sigstore-dir."),
        ("/var/sigstore/keys/", "load writes the image signer's public key <name>.pgp and a copy of policy.json here \
           (served to the other nodes by sigstore.local); --keys-dir."),
        ("/etc/containers/policy.json", "load merges a signedBy rule for the target registry and sets the default to reject; \
           a dated backup of the old file is kept; --policy."),
        ("/etc/containers/registries.d/", "load makes default.yaml (or u7s-bundle.yaml) name the lookaside URL; --registries-d."),
        ("/etc/containers/registries.conf.d/u7s-bundle.conf", "load marks a plain-HTTP registry insecure = true there, unless registries.conf already does; --registries-conf-d."),
        ("~/.cache/u7s-bundle/", "Build cache of downloaded layers, checked before reuse; --cache-dir."),
        ("bundles/", "Default output directory of build: <platform>-<version>-<arch>.u7s.tar.xz (or .tar.zst); --output."),
        ("/run/u7s-bundle.lock", "Lock file held by a running load (it holds the pid); a second load waits; --lock-file."),
        ("/var/lib/u7s-bundle/last-bundle.json", "State file: the platform, kubernetes version and flannel tag the last load put in \
           the registry; preflight, init and join default to them; --state-dir."),
        ("/var/lib/u7s-bundle/join-worker.sh, join-control-plane.sh", "The kubeadm join commands init saved (mode 0600: they hold secrets); --state-dir."),
    ] {
        item(r, vec![italic(path)], text);
    }
}
