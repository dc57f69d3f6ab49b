//! Build-time assets for the packages, generated from the sources they document:
//!
//! - `kube-event-pipe.1.gz`: the man page, rendered by clap_mangen from the very clap `Cli` the
//!   binary parses (`src/config/cli.rs`, whose help texts come from `src/config/keys.rs`);
//! - `completions/{kube-event-pipe.bash,_kube-event-pipe,kube-event-pipe.fish}`: clap_complete;
//! - `changelog.Debian.gz`: `CHANGELOG.md` rewritten in the Debian changelog format lintian
//!   reads (`/usr/share/doc/kube-event-pipe/changelog.Debian.gz`).
//!
//! Everything is written to `$OUT_DIR/assets/` and then copied to `assets/` in the profile
//! directory (`$CARGO_TARGET_DIR/release/assets/` for a release build). That second copy is
//! the stable path `[package.metadata.deb]` and `[package.metadata.generate-rpm]` name as
//! `target/release/assets/...`; both tools map a `target/release/` prefix to the real target
//! directory and profile, so `CARGO_TARGET_DIR` and `--profile` work.
//!
//! The build fails when the newest `CHANGELOG.md` entry is not the crate version, so a version
//! bump cannot ship without its changelog entry.
//!
//! It also sets `KEP_BUILD_COMMIT` for `kube_event_pipe_build_info`: the environment's
//! `KEP_BUILD_COMMIT` when set (a packager building from a tarball), else the commit of this
//! crate's own git checkout, else `unknown`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

// `cli.rs` refers to `super::keys`; declared side by side at the root of the build script,
// `super` is this crate root, exactly as `crate::config` is in the library.
#[allow(dead_code)]
#[path = "src/config/keys.rs"]
mod keys;

#[allow(dead_code)]
#[path = "src/config/cli.rs"]
mod cli;

const BIN: &str = "kube-event-pipe";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() {
    for input in [
        "build.rs",
        "src/config/cli.rs",
        "src/config/keys.rs",
        "CHANGELOG.md",
    ] {
        println!("cargo:rerun-if-changed={input}");
    }
    println!("cargo:rustc-env=KEP_BUILD_COMMIT={}", commit());
    if let Err(e) = run() {
        // A build script reports failure by exiting non-zero; the message is shown by cargo.
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// See the module comment. Never fails the build: a missing git or a foreign checkout only
/// means `unknown`.
fn commit() -> String {
    println!("cargo:rerun-if-env-changed=KEP_BUILD_COMMIT");
    if let Ok(c) = std::env::var("KEP_BUILD_COMMIT")
        && !c.trim().is_empty()
    {
        return c.trim().to_string();
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let unknown = || "unknown".to_string();
    // A tarball unpacked inside some other repository must not take that repository's commit.
    let (Some(top), Ok(manifest)) = (
        git(&["rev-parse", "--show-toplevel"]),
        std::env::var("CARGO_MANIFEST_DIR"),
    ) else {
        return unknown();
    };
    let same = |a: &str, b: &str| {
        let (a, b) = (Path::new(a).canonicalize(), Path::new(b).canonicalize());
        matches!((a, b), (Ok(a), Ok(b)) if a == b)
    };
    if !same(&top, &manifest) {
        return unknown();
    }
    // Rebuild when HEAD moves: HEAD itself, the branch it names, and packed refs. Only files
    // that exist are named, since cargo reruns every time for a missing one.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(unknown)
}

fn run() -> Result<()> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let assets = out_dir.join("assets");
    std::fs::create_dir_all(assets.join("completions"))?;

    let mut cmd = cli::Cli::command();
    cmd.build();

    let man = man_page(cmd.clone())?;
    std::fs::write(assets.join(format!("{BIN}.1.gz")), gzip(&man)?)?;

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, BIN, assets.join("completions"))?;
    }

    let version = std::env::var("CARGO_PKG_VERSION")?;
    let maintainer = std::env::var("CARGO_PKG_AUTHORS")?;
    let maintainer = maintainer.split(':').next().unwrap_or_default();
    let changelog = std::fs::read_to_string("CHANGELOG.md")?;
    let debian = debian_changelog(&changelog, &version, maintainer)?;
    std::fs::write(assets.join("changelog.Debian.gz"), gzip(debian.as_bytes())?)?;

    if let Some(profile_dir) = profile_dir(&out_dir) {
        copy_tree(&assets, &profile_dir.join("assets"))?;
    }
    Ok(())
}

/// clap_mangen's sections (name, synopsis, description, options) plus what an operator looks
/// for in a daemon's page: the environment variables (from the same key table the flags use),
/// files, signals, exit status and where to read on.
fn man_page(cmd: clap::Command) -> Result<Vec<u8>> {
    use roff::{Roff, bold, italic, roman};
    let man = clap_mangen::Man::new(cmd);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;

    let mut r = Roff::new();
    let tp = |r: &mut Roff, term: &str, text: &str| {
        r.control("TP", []).text([bold(term)]).text([roman(text)]);
    };
    r.control("SH", ["ENVIRONMENT"]);
    r.text([roman(
        "Each setting can also be given in the environment; flags win over the environment, \
         which wins over the config file.",
    )]);
    for key in keys::ALL {
        let text = match key.default_text {
            "" => format!("{} (TOML key {})", key.help, key.toml),
            default => format!("{} (TOML key {}, default {default})", key.help, key.toml),
        };
        tp(&mut r, &key.env_var(), &text);
    }
    tp(
        &mut r,
        "KUBE_EVENT_PIPE_CONFIG",
        "the TOML config file, as --config gives it",
    );

    r.control("SH", ["FILES"]);
    for (path, text) in [
        (
            "/etc/kube-event-pipe/config.toml",
            "the config file, read when it exists",
        ),
        (
            "/etc/kube-event-pipe/kubeconfig",
            "the credentials the packaged service uses; the unit does not start without it \
             (see /usr/share/doc/kube-event-pipe/KUBECONFIG.md)",
        ),
        (
            "/var/lib/kube-event-pipe/",
            "the packaged service's persistence_path: <unix_ts>.bloom dedup filters and the \
             saved resource_version",
        ),
        (
            "/var/log/kube-event-pipe/events.log",
            "the packaged service's destination, one JSON object per line, rotated by \
             /etc/logrotate.d/kube-event-pipe",
        ),
    ] {
        tp(&mut r, path, text);
    }

    r.control("SH", ["SIGNALS"]);
    tp(
        &mut r,
        "SIGHUP",
        "the next write goes to a freshly opened destination (for logrotate)",
    );
    tp(
        &mut r,
        "SIGTERM, SIGINT, SIGQUIT",
        "write the lines in hand, save the resourceVersion, flush the filters, exit 0; \
         a second one exits at once with status 130",
    );

    r.control("SH", ["EXIT STATUS"]);
    for (code, text) in [
        (
            "0",
            "clean exit: --check-config succeeded, the replay input ended, or a stop signal \
             was handled",
        ),
        ("1", "a failure while running"),
        (
            "2",
            "something to fix before it can start: bad configuration, unreadable kubeconfig, \
             unopenable destination, unusable state directory",
        ),
        ("130", "a second stop signal cut the shutdown short"),
    ] {
        tp(&mut r, code, text);
    }

    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1), "),
        bold("logrotate"),
        roman("(8), "),
        italic("/usr/share/doc/kube-event-pipe/README.md"),
    ]);
    r.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// `<target>/<profile>` (or `<target>/<triple>/<profile>`) from
/// `<that>/build/<package>-<hash>/out`.
fn profile_dir(out_dir: &Path) -> Option<PathBuf> {
    let build = out_dir.parent()?.parent()?;
    (build.file_name()? == "build").then(|| build.parent().map(Path::to_path_buf))?
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// gzip with a zero mtime and no file name, so the output depends on the input alone.
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

/// `CHANGELOG.md` → Debian changelog. The Markdown file has one section per release,
/// `## VERSION - YYYY-MM-DD`, each a list of `- ` items (continuation lines indented). A first
/// section `## Unreleased` collects changes not yet in a release; the package leaves it out.
fn debian_changelog(markdown: &str, version: &str, maintainer: &str) -> Result<String> {
    struct Release {
        version: String,
        date: String,
        items: Vec<String>,
    }
    let mut releases: Vec<Release> = Vec::new();
    let mut unreleased = false;
    for (n, line) in markdown.lines().enumerate() {
        let n = n + 1;
        if line == "## Unreleased" {
            if !releases.is_empty() {
                return Err(format!("CHANGELOG.md:{n}: `## Unreleased` must come first").into());
            }
            unreleased = true;
        } else if let Some(head) = line.strip_prefix("## ") {
            unreleased = false;
            let (v, d) = head.split_once(" - ").ok_or(format!(
                "CHANGELOG.md:{n}: expected `## VERSION - YYYY-MM-DD`"
            ))?;
            releases.push(Release {
                version: v.trim().to_string(),
                date: d.trim().to_string(),
                items: Vec::new(),
            });
        } else if unreleased {
            continue;
        } else if let Some(item) = line.strip_prefix("- ") {
            let r = releases
                .last_mut()
                .ok_or(format!("CHANGELOG.md:{n}: item before the first release"))?;
            r.items.push(item.trim().to_string());
        } else if line.starts_with("  ") && !line.trim().is_empty() {
            let item = releases
                .last_mut()
                .and_then(|r| r.items.last_mut())
                .ok_or(format!(
                    "CHANGELOG.md:{n}: continuation line outside an item"
                ))?;
            item.push(' ');
            item.push_str(line.trim());
        }
    }
    let newest = releases
        .first()
        .ok_or("CHANGELOG.md has no `## VERSION - DATE` section")?;
    if newest.version != version {
        return Err(format!(
            "CHANGELOG.md: the newest entry is {}, but Cargo.toml says {version}; add its entry",
            newest.version
        )
        .into());
    }
    let mut out = String::new();
    for r in &releases {
        if r.items.is_empty() {
            return Err(format!("CHANGELOG.md: release {} lists no change", r.version).into());
        }
        writeln!(out, "{BIN} ({}-1) unstable; urgency=medium\n", r.version)?;
        for item in &r.items {
            writeln!(out, "  * {}", wrap(item, 76, "    "))?;
        }
        writeln!(out, "\n -- {maintainer}  {}\n", rfc2822(&r.date)?)?;
    }
    Ok(out)
}

/// Greedy word wrap; lines after the first get `indent`.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut len = 0;
    for word in text.split_whitespace() {
        if len > 0 && len + 1 + word.len() > width {
            out.push('\n');
            out.push_str(indent);
            len = indent.len();
        } else if len > 0 {
            out.push(' ');
            len += 1;
        }
        out.push_str(word);
        len += word.len();
    }
    out
}

/// `YYYY-MM-DD` → `Www, DD Mon YYYY 00:00:00 +0000`.
fn rfc2822(date: &str) -> Result<String> {
    let bad = || format!("CHANGELOG.md: bad date {date:?}, expected YYYY-MM-DD");
    let parts: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    let [y, m, d] = parts[..] else {
        return Err(bad().into());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad().into());
    }
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil); 1970-01-01 was a Thursday.
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    Ok(format!(
        "{}, {d:02} {} {y} 00:00:00 +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize]
    ))
}
