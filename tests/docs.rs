//! The user's guide says what the binary does: every message README's troubleshooting table
//! names is one the binary can print (it is in the source it is built from), the README stays
//! a guide (about 350 lines at most, the rest under docs/), and every document it links to
//! exists.

use std::fs;
use std::path::Path;

mod common;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The text of every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut String) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&fs::read_to_string(&path).unwrap());
        }
    }
}

/// The backticked first cell of each row of README's troubleshooting table.
fn troubleshooting_messages(readme: &str) -> Vec<String> {
    let table = readme
        .split("## Troubleshooting")
        .nth(1)
        .expect("README has a Troubleshooting section");
    table
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cell = l.split('|').nth(1).unwrap().trim();
            cell.trim_matches('`').to_string()
        })
        .collect()
}

#[test]
fn every_troubleshooting_message_is_one_the_binary_prints() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let messages = troubleshooting_messages(&readme);
    assert!(messages.len() >= 10, "too few rows: {messages:?}");
    let mut source = String::new();
    sources(&repo().join("src"), &mut source);
    let missing: Vec<&String> = messages
        .iter()
        .filter(|m| !source.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "in README's table but printed nowhere: {missing:?}"
    );
}

#[test]
fn the_readme_is_a_guide_and_its_links_resolve() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 360,
        "README has {lines} lines: move reference material under docs/"
    );
    for doc in [
        "docs/packaging.md",
        "docs/drop-in.md",
        "docs/security.md",
        "docs/testing.md",
        "docs/benchmarks.md",
        "docs/design.md",
        "SECURITY.md",
    ] {
        assert!(
            readme.contains(&format!("]({doc})")),
            "README does not link {doc}"
        );
        assert!(repo().join(doc).is_file(), "{doc} is linked but missing");
    }
}

/// README's ```sh blocks, in order, each with the line it starts on.
fn shell_blocks(readme: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in readme.lines().enumerate() {
        match (&mut current, line) {
            (None, "```sh") => current = Some((index + 2, String::new())),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Blocks not run here, by a line they contain, and why.
const SKIPPED: [(&str, &str); 5] = [
    (
        "packaging/build.sh",
        "installs a package as root; scripts/test.sh builds, installs and removes both packages",
    ),
    ("scripts/test.sh", "the test command itself"),
    (
        "sst-tunnel-switch on",
        "changes the MariaDB unit as root; scripts/test.sh runs the switch in its chroots",
    ),
    (
        "mariabackup --backup --stream=mbstream | \\",
        "needs a running MariaDB server; tests/galera.rs runs real mariabackup SSTs into mbstream",
    ),
    (
        "--progress 10s --stats-json",
        "needs a running MariaDB server; tests/tools.rs checks --progress and --stats-json",
    ),
];

/// Issue 22: every command README gives runs as written. Each block runs with bash (-eu,
/// pipefail), in README's order, with `sst-tunnel` the binary under test and the host's
/// paths moved into a sandbox (/root/sst-ca, /etc/mysql/my.cnf, /var/lib/mysql, /var/tmp;
/// `cargo run --release --` is the built binary; port 4444 a free one); a block with a
/// `# joiner` and a `# donor` half runs the joiner in the background until the donor is
/// done, and the rsync example's copy is compared with its source. The blocks in
/// [`SKIPPED`] say why they do not run here.
#[test]
fn readme_shell_blocks_run_as_written() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = shell_blocks(&readme);
    assert!(blocks.len() >= 10, "too few shell blocks: {}", blocks.len());
    let sandbox = tempfile::tempdir().unwrap();
    let sb = sandbox.path();
    let bin_dir = sb.join("bin");
    fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(common::bin(), bin_dir.join("sst-tunnel")).unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    // The node's option file includes node1's snippet (written by the first gen-certs).
    fs::write(
        sb.join("my.cnf"),
        format!("[mysqld]\n!include {}/sst-ca/node1-sst.cnf\n", sb.display()),
    )
    .unwrap();
    let datadir = sb.join("datadir");
    fs::create_dir_all(datadir.join("db")).unwrap();
    fs::write(datadir.join("db/t1.ibd"), common::bytes(300_000, 5)).unwrap();
    fs::write(datadir.join("ibdata1"), common::bytes(70_000, 6)).unwrap();
    let dest = sb.join("joined");
    fs::create_dir(&dest).unwrap();
    fs::write(
        sb.join("rsync_sst.conf"),
        format!(
            "use chroot = no\nread only = no\n{}\n[rsync_sst]\npath = {}\n",
            if nix::unistd::Uid::effective().is_root() {
                "uid = 0\ngid = 0\n"
            } else {
                ""
            },
            dest.display()
        ),
    )
    .unwrap();
    let port = common::free_port().to_string();
    let sandboxed = |text: &str| {
        text.replace("cargo run --release -- ", "sst-tunnel ")
            .replace("/root/sst-ca", &format!("{}/sst-ca", sb.display()))
            .replace("/etc/mysql/my.cnf", &format!("{}/my.cnf", sb.display()))
            .replace(
                "/var/lib/mysql/rsync_sst.conf",
                &format!("{}/rsync_sst.conf", sb.display()),
            )
            .replace("/var/lib/mysql/", &format!("{}/", datadir.display()))
            .replace("/var/tmp/", &format!("{}/", sb.display()))
            .replace("/usr/bin/rsync", &common::require("rsync"))
            .replace("4444", &port)
    };
    let bash = |script: &str| {
        let mut cmd = std::process::Command::new("bash");
        cmd.args(["-euo", "pipefail", "-c", script])
            .env("PATH", &path)
            .current_dir(sb.join("sst-ca"));
        cmd
    };
    let mut ran = 0;
    for (line, block) in &blocks {
        if let Some((_, why)) = SKIPPED.iter().find(|(key, _)| block.contains(key)) {
            eprintln!("README line {line}: skipped: {why}");
            continue;
        }
        fs::create_dir_all(sb.join("sst-ca")).unwrap();
        let script = sandboxed(block);
        if let Some((joiner, donor)) = script.split_once("# donor") {
            let joiner: String = joiner
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n");
            let listener = common::Proc::spawn_with(&mut bash(&format!("exec {}", joiner.trim())));
            listener.wait_line("listening on");
            let out = bash(donor).output().unwrap();
            assert!(
                out.status.success(),
                "README line {line}: the donor half failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            listener.signal(nix::sys::signal::Signal::SIGTERM);
            drop(listener);
            let diff = std::process::Command::new("diff")
                .args(["-r"])
                .arg(&datadir)
                .arg(&dest)
                .output()
                .unwrap();
            assert!(
                diff.status.success(),
                "README line {line}: the copy differs: {}",
                String::from_utf8_lossy(&diff.stdout)
            );
        } else {
            let out = bash(&script).output().unwrap();
            assert!(
                out.status.success(),
                "README line {line} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ran += 1;
    }
    assert!(ran >= 8, "only {ran} README blocks ran");
}

/// Issue 22, point 9: every man page has EXIT STATUS, ENVIRONMENT and EXAMPLES; the
/// front-end pages list what they accept; every page a page refers to exists (no
/// `sst-tunnel-help(1)`); and every SST_TUNNEL_* variable the source reads is documented.
#[test]
fn man_pages_are_complete_and_refer_only_to_real_pages() {
    let out_dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(common::bin())
        .args(["generate", "man"])
        .arg(out_dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let mut pages = std::collections::BTreeMap::new();
    for entry in fs::read_dir(out_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        pages.insert(name, fs::read_to_string(&path).unwrap());
    }
    for name in [
        "sst-tunnel",
        "sst-tunnel-connect",
        "sst-tunnel-listen",
        "sst-tunnel-gen-certs",
        "sst-tunnel-check",
        "sst-tunnel-stunnel",
        "sst-tunnel-socat",
    ] {
        assert!(
            pages.contains_key(name),
            "no page {name}: {:?}",
            pages.keys()
        );
    }
    let mut wrong = Vec::new();
    for (name, text) in &pages {
        for section in ["EXIT STATUS", "ENVIRONMENT", "EXAMPLES", "SEE ALSO"] {
            if !text.contains(&format!(".SH \"{section}\"")) {
                wrong.push(format!("{name}: no {section}"));
            }
        }
        let examples = text.split(".SH \"EXAMPLES\"").nth(1).unwrap_or("");
        if !examples.split(".SH").next().unwrap_or("").contains(".nf") {
            wrong.push(format!("{name}: EXAMPLES has no example"));
        }
        // Every reference to one of our pages, in roff's escaped form.
        for (at, _) in text.match_indices("sst\\-tunnel") {
            let rest = &text[at..];
            let Some(open) = rest.find('(') else { continue };
            let word = &rest[..open];
            if word.contains(char::is_whitespace) || rest.len() < open + 3 {
                continue;
            }
            let page = word.replace("\\-", "-");
            let section = &rest[open + 1..open + 2];
            let exists = match section {
                "1" => pages.contains_key(&page),
                "8" => repo().join(format!("packaging/{page}.8")).is_file(),
                _ => false,
            };
            if !exists {
                wrong.push(format!(
                    "{name}: refers to {page}({section}), which does not exist"
                ));
            }
        }
    }
    let stunnel = &pages["sst-tunnel-stunnel"];
    for needle in [
        "ACCEPTED DIRECTIVES",
        "verifyChain",
        "CRLpath",
        "OUTSIDE THE SUBSET",
    ] {
        if !stunnel.contains(needle) {
            wrong.push(format!("sst-tunnel-stunnel: no {needle}"));
        }
    }
    let socat = &pages["sst-tunnel-socat"];
    for needle in [
        "ACCEPTED SYNTAX",
        "openssl\\-connect",
        "commonname",
        "OUTSIDE THE SUBSET",
    ] {
        if !socat.contains(needle) {
            wrong.push(format!("sst-tunnel-socat: no {needle}"));
        }
    }
    // Every variable the source reads, in the top page's ENVIRONMENT (test hooks excepted).
    let mut source = String::new();
    sources(&repo().join("src"), &mut source);
    let environment = pages["sst-tunnel"]
        .split(".SH \"ENVIRONMENT\"")
        .nth(1)
        .unwrap()
        .split(".SH")
        .next()
        .unwrap()
        .replace("\\-", "-");
    for (at, _) in source.match_indices("\"SST_TUNNEL_") {
        let name: String = source[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        if !name.starts_with("SST_TUNNEL_TEST_") && !environment.contains(&name) {
            wrong.push(format!("{name} is read but not in ENVIRONMENT"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
