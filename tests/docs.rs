//! The user's guide says what the binary does: every message README's troubleshooting table
//! names is one the binary can print (it is in the source it is built from), the README stays
//! a guide (about 350 lines at most, the rest under docs/), and every document it links to
//! exists.

use std::fs;
use std::path::Path;

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
