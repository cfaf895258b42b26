//! The architecture as the README and lib.rs describe it, checked on the source: the parts of
//! `src/` in their top-down order, each importing only parts below it (so there is no import
//! cycle), nothing below the face importing it, clap's types only in the face and the tools,
//! and at most eight files directly in `src/`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The parts, top down: each may use only the parts after it.
const ORDER: &[&str] = &[
    "face", "fuzzing", "frontend", "tools", "ends", "relay", "handoff", "tls", "settings", "net",
    "fastpath", "error",
];

/// The files of the face, directly in `src/`.
const FACE: &[&str] = &["app", "cli", "main", "lib", "logging"];

/// The part a top-level module name (`crate::NAME`, or a file or folder of `src/`) is in.
fn part_of(module: &str) -> Option<&'static str> {
    if FACE.contains(&module) {
        return Some("face");
    }
    ORDER.iter().copied().find(|p| *p == module)
}

/// The part of a source file, from its path under `src/`.
fn part_of_file(relative: &Path) -> &'static str {
    let first = relative
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    let module = first.trim_end_matches(".rs");
    part_of(module)
        .unwrap_or_else(|| panic!("src/{}: in no part of the layout", relative.display()))
}

/// The code of a Rust source with comments (line, doc and block), string literals (raw ones
/// too) and char literals blanked, so a path named in prose or a message is not taken for an
/// import.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '/' if at(i + 1) == '/' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                loop {
                    if i >= c.len() {
                        break;
                    }
                    if c[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            'r' if (at(i + 1) == '"' || at(i + 1) == '#')
                && !at(i.wrapping_sub(1)).is_alphanumeric() =>
            {
                // r"..." or r#"..."#: ends at a quote followed by as many hashes.
                let mut j = i + 1;
                let mut hashes = 0;
                while at(j) == '#' {
                    hashes += 1;
                    j += 1;
                }
                if at(j) != '"' {
                    out.push(c[i]);
                    i += 1;
                    continue;
                }
                j += 1;
                while j < c.len() && !(c[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#')) {
                    j += 1;
                }
                i = j + 1 + hashes;
                out.push_str("\"\"");
            }
            '"' => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A char literal ('x', '\n', '\''), not a lifetime ('a).
            '\'' if at(i + 1) == '\\' => {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            }
            '\'' if at(i + 2) == '\'' => {
                i += 3;
                out.push_str("' '");
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// The top-level modules a source file uses: every `crate::NAME` path, and every first
/// segment inside a `use crate::{...}` group (which may span lines and nest).
fn imports(text: &str) -> BTreeSet<String> {
    let code = code_only(text);
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let preceded = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `sst_tunnel::crate::` does not exist; `$crate::` is a macro's, not ours.
        if preceded.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest_trimmed = rest.trim_start();
        if let Some(group) = rest_trimmed.strip_prefix('{') {
            // Top-level items of the group: split at depth-0 commas.
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            items.push(item);
            for item in items {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "self" {
                    found.insert(name);
                }
            }
        } else {
            let name: String = rest_trimmed
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Every import that does not go down the order, worded for a failure message.
fn violations(files: &[(PathBuf, String)]) -> Vec<String> {
    let rank = |part: &str| ORDER.iter().position(|p| *p == part).unwrap();
    let mut wrong = Vec::new();
    for (path, text) in files {
        let from = part_of_file(path);
        for module in imports(text) {
            let Some(to) = part_of(&module) else {
                wrong.push(format!(
                    "src/{}: crate::{module} is in no part",
                    path.display()
                ));
                continue;
            };
            if to == from {
                continue;
            }
            if to == "face" {
                wrong.push(format!(
                    "src/{}: {from} imports the face (crate::{module})",
                    path.display()
                ));
            } else if rank(to) < rank(from) {
                wrong.push(format!(
                    "src/{}: {from} imports {to} (crate::{module}), which is above it in {ORDER:?}",
                    path.display()
                ));
            }
        }
    }
    wrong
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&path).unwrap();
            out.push((path.strip_prefix(root).unwrap().to_path_buf(), text));
        }
    }
}

fn src() -> (PathBuf, Vec<(PathBuf, String)>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    files.sort();
    (root, files)
}

#[test]
fn every_import_goes_down_the_layout() {
    let (_, files) = src();
    let wrong = violations(&files);
    assert!(
        wrong.is_empty(),
        "imports against the layout:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn clap_only_in_the_face_and_the_tools() {
    let (_, files) = src();
    let users: Vec<String> = files
        .iter()
        .filter(|(path, text)| {
            let part = part_of_file(path);
            part != "face" && part != "tools" && code_only(text).contains("clap::")
        })
        .map(|(path, _)| format!("src/{}", path.display()))
        .collect();
    assert!(
        users.is_empty(),
        "clap used outside the face and the tools: {users:?}"
    );
}

#[test]
fn at_most_eight_files_directly_in_src() {
    let (root, _) = src();
    let files: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.len() <= 8,
        "{} files directly in src/: {files:?}",
        files.len()
    );
}

/// The checker itself: groups, nesting, comments and strings, and an upward import found.
#[test]
fn the_checker_reads_imports_as_rustc_would() {
    let text = "//! Uses [`crate::app`] in prose only.\n\
                use crate::{\n    ends::{client, server},\n    error::Result,\n    self,\n};\n\
                use crate::tls::Prepared; /* crate::cli /* nested */ crate::app */\n\
                fn f<'a>(x: &'a str) { let _ = \"crate::frontend\"; let _ = ['\"', '\\'']; \n\
                let _ = r#\"crate::face \"quoted\" \"#; crate::net::listen(); $crate::x; }\n";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, ["ends", "error", "net", "tls"]);

    let files = vec![
        (
            PathBuf::from("tls/mod.rs"),
            "use crate::ends::session;".to_string(),
        ),
        (
            PathBuf::from("handoff/ktls.rs"),
            "use crate::cli::Cli;".to_string(),
        ),
        (
            PathBuf::from("ends/client.rs"),
            "use crate::tls;".to_string(),
        ),
    ];
    let wrong = violations(&files);
    assert_eq!(wrong.len(), 2, "{wrong:?}");
    assert!(wrong[0].contains("tls imports ends"), "{wrong:?}");
    assert!(wrong[1].contains("handoff imports the face"), "{wrong:?}");
}
