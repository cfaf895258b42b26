//! MariaDB option files (`--defaults-file`): the TLS settings a node's SST uses, found the way
//! the SST scripts find them (contract 1.3), so sst-tunnel can be pointed at a node's my.cnf.
//!
//! Syntax as `my_print_defaults` reads it: `[group]` headers, `key = value` or bare `key`,
//! `#`/`;` comment lines, `!include FILE` and `!includedir DIR` (`*.cnf` files, in name
//! order), `_` and `-` equivalent in names, a `loose-` prefix ignored, quoted values. Lookup:
//! `[sst]` tca/tcapath/tcert/tkey first; else ssl-ca/ssl-capath/ssl-cert/ssl-key from the
//! server groups and `[sst]`; then the role's ssl-server-*/ssl-client-* overrides; then
//! `wsrep_provider_options` socket.ssl_ca/ssl_cert/ssl_key as the last fallback. Within one
//! lookup the last occurrence wins, and the first group (set) with a value beats later ones.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::settings::files;
use crate::settings::vocabulary;
use crate::settings::{Role, TlsSettings, VerifyMode};

/// The server's option groups (`my_print_defaults --mysqld` on MariaDB 10.11).
const SERVER_GROUPS: [&str; 8] = [
    "mysqld",
    "server",
    "mariadb",
    "mariadbd",
    "galera",
    "client-server",
    "mysqld-10.11",
    "mariadb-10.11",
];

/// Deepest `!include` nesting followed (MariaDB stops at 10 as well).
const MAX_DEPTH: usize = 10;

/// One `key = value` line, and where it was.
#[derive(Debug, Clone)]
struct Entry {
    group: String,
    key: String,
    value: String,
    file: PathBuf,
    line: usize,
}

/// Every option line of a file and what it includes, in reading order.
#[derive(Debug, Default)]
pub struct OptionFiles {
    entries: Vec<Entry>,
}

impl OptionFiles {
    /// Reads `path` and everything it includes.
    pub fn load(path: &Path) -> Result<Self> {
        let mut files = Self::default();
        files.read(path, 0)?;
        Ok(files)
    }

    fn read(&mut self, path: &Path, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::file(path, "!include nested too deeply (a loop?)"));
        }
        let text = files::read_text(path, files::CONFIG_LIMIT)?;
        self.parse_text(path, &text, depth)
    }

    /// Option-file text as if read from `path` (which names it in errors and anchors relative
    /// `!include`s).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let mut files = Self::default();
        files.parse_text(path, text, 0)?;
        Ok(files)
    }

    fn parse_text(&mut self, path: &Path, text: &str, depth: usize) -> Result<()> {
        let mut group = String::new();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let at = |why: &str| Error::file(path, format!("line {number}: '{line}': {why}"));
            if let Some(rest) = line.strip_prefix("!includedir") {
                let dir = resolve(path, rest.trim());
                let mut names: Vec<PathBuf> = fs::read_dir(&dir)
                    .map_err(|e| Error::file_io(&dir, &e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "cnf"))
                    .collect();
                names.sort();
                for name in names {
                    self.read(&name, depth + 1)?;
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("!include") {
                self.read(&resolve(path, rest.trim()), depth + 1)?;
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| at("missing ']' in a group header"))?;
                group = name.trim().to_ascii_lowercase();
                continue;
            }
            if group.is_empty() {
                return Err(at("an option before the first [group]"));
            }
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (k.trim(), unquote(v.trim()).map_err(|w| at(&w))?),
                None => (line, String::new()),
            };
            let key = key.replace('_', "-").to_ascii_lowercase();
            let key = key.strip_prefix("loose-").unwrap_or(&key).to_string();
            self.entries.push(Entry {
                group: group.clone(),
                key,
                value,
                file: path.to_path_buf(),
                line: number,
            });
        }
        Ok(())
    }

    /// The last value of `key` in the first of `group_sets` that has one; a set is one group
    /// or several read as one (the server groups).
    fn get(&self, group_sets: &[&[&str]], key: &str) -> Option<String> {
        group_sets.iter().find_map(|set| {
            self.entries
                .iter()
                .rev()
                .find(|e| e.key == key && set.contains(&e.group.as_str()))
                .map(|e| e.value.clone())
        })
    }
}

/// A relative `!include` is relative to the including file.
fn resolve(from: &Path, target: &str) -> PathBuf {
    let target = Path::new(target);
    if target.is_absolute() {
        target.to_path_buf()
    } else {
        from.parent().unwrap_or(Path::new(".")).join(target)
    }
}

/// Strips matching quotes, or a trailing ` # comment` from an unquoted value.
fn unquote(value: &str) -> std::result::Result<String, String> {
    for quote in ['\'', '"'] {
        if let Some(rest) = value.strip_prefix(quote) {
            let end = rest
                .find(quote)
                .ok_or_else(|| format!("unbalanced {quote}"))?;
            return Ok(rest[..end].to_string());
        }
    }
    let value = match value.find(" #").or_else(|| value.find("\t#")) {
        Some(i) => &value[..i],
        None => value,
    };
    Ok(value.trim().to_string())
}

/// `wsrep_provider_options` as Galera splits it: `key = value` pairs separated by `;`, where
/// a backslash makes the next character literal (so a path may hold `\;` or `\=`); pairs
/// without `=` are skipped, keys and values trimmed.
pub fn provider_options(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let (mut key, mut value) = (String::new(), None::<String>);
    let mut chars = text.chars();
    let mut finish = |key: &mut String, value: &mut Option<String>| {
        if let Some(v) = value.take() {
            pairs.push((key.trim().to_string(), v.trim().to_string()));
        }
        key.clear();
    };
    while let Some(c) = chars.next() {
        let c = match c {
            '\\' => match chars.next() {
                Some(next) => next,
                None => break,
            },
            ';' => {
                finish(&mut key, &mut value);
                continue;
            }
            '=' if value.is_none() => {
                value = Some(String::new());
                continue;
            }
            c => c,
        };
        match &mut value {
            Some(v) => v.push(c),
            None => key.push(c),
        }
    }
    finish(&mut key, &mut value);
    pairs
}

/// The SST TLS settings of one node, as the SST scripts would resolve them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SstTls {
    /// Certificate file.
    pub cert: Option<PathBuf>,
    /// Key file.
    pub key: Option<PathBuf>,
    /// CA file or directory.
    pub ca: Option<PathBuf>,
    /// `ssl-mode`, upper-cased.
    pub mode: Option<String>,
    /// Which key gave each of the files: (the native flag it stands for, the key).
    pub keys: Vec<(&'static str, String)>,
}

impl SstTls {
    /// Resolves the settings for `role` from `files`, groups with `suffix` read too.
    pub fn resolve(files: &OptionFiles, role: Role, suffix: Option<&str>) -> Self {
        let with_suffix = |groups: &[&str]| -> Vec<String> {
            let mut all: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            if let Some(s) = suffix {
                all.extend(groups.iter().map(|g| format!("{g}{s}")));
            }
            all
        };
        let server = with_suffix(&SERVER_GROUPS);
        let sst = with_suffix(&["sst"]);
        let server: Vec<&str> = server.iter().map(String::as_str).collect();
        let sst: Vec<&str> = sst.iter().map(String::as_str).collect();
        let both: [&[&str]; 2] = [&server, &sst];
        let sst_only: [&[&str]; 1] = [&sst];
        // Each value is kept with the key it came from, for hints in the file's words.
        let get =
            |groups: &[&[&str]], key: &str| files.get(groups, key).map(|v| (v, key.to_string()));
        // 1. Legacy [sst] names; 2. otherwise the ssl-* options.
        let legacy = ["tca", "tcapath", "tcert", "tkey"]
            .iter()
            .any(|k| files.get(&sst_only, k).is_some());
        let (mut ca, mut capath, mut cert, mut key) = if legacy {
            (
                get(&sst_only, "tca"),
                get(&sst_only, "tcapath"),
                get(&sst_only, "tcert"),
                get(&sst_only, "tkey"),
            )
        } else {
            (
                get(&both, "ssl-ca"),
                get(&both, "ssl-capath"),
                get(&both, "ssl-cert"),
                get(&both, "ssl-key"),
            )
        };
        // 3. Role overrides.
        let side = match role {
            Role::Joiner => "server",
            Role::Donor => "client",
        };
        let override_with = |slot: &mut Option<(String, String)>, what: &str| {
            if let Some(v) = get(&both, &format!("ssl-{side}-{what}")) {
                *slot = Some(v);
            }
        };
        override_with(&mut ca, "ca");
        override_with(&mut capath, "capath");
        override_with(&mut cert, "cert");
        override_with(&mut key, "key");
        // 4. Galera's own TLS settings, last.
        if let Some(options) = files.get(&[&server], "wsrep-provider-options") {
            for (k, v) in provider_options(&options) {
                match k.as_str() {
                    "socket.ssl_ca" if ca.is_none() && capath.is_none() => ca = Some((v, k)),
                    "socket.ssl_cert" if cert.is_none() => cert = Some((v, k)),
                    "socket.ssl_key" if key.is_none() => key = Some((v, k)),
                    _ => {}
                }
            }
        }
        let mut keys = Vec::new();
        let mut non_empty = |flag: &'static str, v: Option<(String, String)>| {
            let (value, key) = v.filter(|(s, _)| !s.is_empty())?;
            keys.push((flag, key));
            Some(PathBuf::from(value))
        };
        let cert = non_empty("--cert", cert);
        let key = non_empty("--key", key);
        let ca = non_empty("--ca", ca);
        let ca = ca.or_else(|| non_empty("--ca", capath));
        Self {
            cert,
            key,
            ca,
            mode: files.get(&both, "ssl-mode").map(|m| m.to_ascii_uppercase()),
            keys,
        }
    }

    /// Fills what the command line left out; flags always win.
    /// What the file gave is named in its own words in later hints ([`vocabulary`]).
    pub fn fill(self, args: &mut TlsSettings, path: &Path) -> Result<()> {
        let mut words = vocabulary::current();
        let mut took = |flag: &'static str| {
            if let Some((_, key)) = self.keys.iter().find(|(f, _)| *f == flag) {
                words.from_option_file(flag, key, path);
            }
        };
        if args.cert.is_none() && self.cert.is_some() {
            took("--cert");
            args.cert = self.cert;
        }
        if args.key.is_none() && args.cert.is_some() && self.key.is_some() {
            took("--key");
            args.key = self.key;
        }
        if args.ca.is_none() && self.ca.is_some() {
            took("--ca");
            args.ca = self.ca;
        }
        vocabulary::install(words);
        if args.verify.is_none() {
            args.verify = match self.mode.as_deref() {
                None => None,
                Some("REQUIRED") => Some(VerifyMode::None),
                Some("VERIFY_CA") => Some(VerifyMode::Chain),
                Some("VERIFY_IDENTITY") => Some(VerifyMode::Identity),
                Some("DISABLED") => {
                    return Err(Error::file(
                        path,
                        "ssl-mode=DISABLED: this node's SST is not encrypted; give the TLS \
                         flags explicitly to use sst-tunnel anyway",
                    ));
                }
                Some(other) => {
                    return Err(Error::file(
                        path,
                        format!(
                            "ssl-mode={other}: expected DISABLED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY"
                        ),
                    ));
                }
            };
        }
        Ok(())
    }
}

/// The TLS options we read, by where: a line whose key is close to one of these but is none
/// of them (nor another option the SST scripts or the server know) is a typo that would
/// silently leave TLS half set up.
const SST_TLS_KEYS: [&str; 9] = [
    "tca",
    "tcapath",
    "tcert",
    "tkey",
    "ssl-ca",
    "ssl-capath",
    "ssl-cert",
    "ssl-key",
    "ssl-mode",
];
/// Other `[sst]` options of the stock SST scripts (never reported, however close).
const SST_OTHER_KEYS: [&str; 26] = [
    "encrypt",
    "encrypt-algo",
    "encrypt-format",
    "tmode",
    "sockopt",
    "progress",
    "time",
    "rlimit",
    "incremental",
    "streamfmt",
    "transferfmt",
    "inno-backup-opts",
    "inno-apply-opts",
    "inno-move-opts",
    "sst-initial-timeout",
    "sst-syslog",
    "sst-log-archive",
    "sst-log-archive-dir",
    "cpat",
    "compressor",
    "decompressor",
    "compress",
    "backup-threads",
    "ssl-cipher",
    "ssl-dhparams",
    "transfer-fifo-streams",
];
/// The server's `ssl*` options (server groups).
const SERVER_SSL_KEYS: [&str; 20] = [
    "ssl",
    "ssl-ca",
    "ssl-capath",
    "ssl-cert",
    "ssl-key",
    "ssl-cipher",
    "ssl-crl",
    "ssl-crlpath",
    "ssl-mode",
    "ssl-passphrase",
    "ssl-verify-server-cert",
    "ssl-server-ca",
    "ssl-server-cert",
    "ssl-server-key",
    "ssl-server-capath",
    "ssl-client-ca",
    "ssl-client-cert",
    "ssl-client-key",
    "ssl-client-capath",
    "ssl-fp",
];
/// Galera's `socket.ssl*` provider options.
const PROVIDER_SSL_KEYS: [&str; 8] = [
    "socket.ssl",
    "socket.ssl_ca",
    "socket.ssl_cert",
    "socket.ssl_key",
    "socket.ssl_cipher",
    "socket.ssl_compression",
    "socket.ssl_password_file",
    "socket.ssl_reload",
];

/// The known name `key` is a typo of (within two edits), if it is no known name itself.
fn typo_of<'a>(key: &str, wanted: &[&'a str], known: &[&str]) -> Option<&'a str> {
    if wanted.contains(&key) || known.contains(&key) {
        return None;
    }
    wanted
        .iter()
        .map(|w| (strsim::damerau_levenshtein(key, w), *w))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, w)| w)
}

/// A near miss of a TLS option: where it is and what it is taken for.
struct Typo {
    file: PathBuf,
    line: usize,
    what: String,
}

impl Typo {
    /// `line N: [group] key: unknown option, did you mean ...?`
    fn at_line(&self) -> String {
        format!("line {}: {}", self.line, self.what)
    }
}

/// Looks for what would quietly leave a node's TLS half set up: option names one or two
/// edits away from a TLS option we read (warnings, with file, line and the option meant),
/// and `[sst] tkey` without `tcert` (an error naming its line, and the near misses with it).
pub fn lint(files: &OptionFiles, suffix: Option<&str>) -> Result<Vec<String>> {
    let in_group = |e: &Entry, groups: &[&str]| {
        groups
            .iter()
            .any(|g| e.group == *g || suffix.is_some_and(|s| e.group == format!("{g}{s}")))
    };
    let mut typos = Vec::new();
    let mut note = |e: &Entry, shown: &str, meant: &str| {
        typos.push(Typo {
            file: e.file.clone(),
            line: e.line,
            what: format!(
                "[{}] {shown}: unknown option, did you mean {meant}? (ignored)",
                e.group
            ),
        });
    };

    let sst_known: Vec<&str> = SST_OTHER_KEYS
        .iter()
        .chain(&SERVER_SSL_KEYS)
        .copied()
        .collect();
    for e in &files.entries {
        if in_group(e, &["sst"]) {
            if let Some(meant) = typo_of(&e.key, &SST_TLS_KEYS, &sst_known) {
                note(e, &e.key, meant);
            }
        } else if in_group(e, &SERVER_GROUPS) {
            if e.key.starts_with("ssl")
                && let Some(meant) = typo_of(&e.key, &SERVER_SSL_KEYS, &[])
            {
                note(e, &e.key, meant);
            }
            if e.key == "wsrep-provider-options" {
                for (k, _) in provider_options(&e.value) {
                    let k = k.to_ascii_lowercase();
                    if k.starts_with("socket.")
                        && let Some(meant) = typo_of(&k, &PROVIDER_SSL_KEYS, &[])
                    {
                        note(e, &format!("wsrep_provider_options {k}"), meant);
                    }
                }
            }
        }
    }
    // tkey without tcert: the scripts would run without a client certificate and fail
    // later, far from the cause (tcert alone is fine: it may hold the key too, as
    // encrypt=2 uses it).
    let last = |key: &str| {
        files
            .entries
            .iter()
            .rev()
            .find(|e| e.key == key && in_group(e, &["sst"]) && !e.value.is_empty())
    };
    if let (Some(k), None) = (last("tkey"), last("tcert")) {
        // One line: the typo that most likely caused it goes with it.
        let also: Vec<String> = typos.iter().map(Typo::at_line).collect();
        return Err(Error::file(
            &k.file,
            format!(
                "line {}: [sst] tkey is set but tcert is not: give both (the node's certificate \
                 and its key), or neither{}",
                k.line,
                if also.is_empty() {
                    String::new()
                } else {
                    format!("; also {}", also.join("; "))
                }
            ),
        ));
    }
    Ok(typos
        .iter()
        .map(|t| format!("{}: {}", t.file.display(), t.at_line()))
        .collect())
}

/// Applies `--defaults-file` (when given) to the TLS flags for `role`; what [`lint`] finds
/// is logged as warnings.
pub fn apply(args: &mut TlsSettings, role: Role) -> Result<()> {
    for warning in apply_and_lint(args, role)? {
        tracing::warn!("{warning}");
    }
    Ok(())
}

/// [`apply`], handing back what [`lint`] found (for `check`, which reports it itself).
pub fn apply_and_lint(args: &mut TlsSettings, role: Role) -> Result<Vec<String>> {
    let Some(path) = args.defaults_file.clone() else {
        return Ok(Vec::new());
    };
    let files = OptionFiles::load(&path)?;
    let warnings = lint(&files, args.defaults_group_suffix.as_deref())?;
    let role = args.role.unwrap_or(role);
    SstTls::resolve(&files, role, args.defaults_group_suffix.as_deref()).fill(args, &path)?;
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(text: &str) -> (tempfile::TempDir, OptionFiles) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my.cnf");
        fs::write(&path, text).unwrap();
        let files = OptionFiles::load(&path).unwrap();
        (dir, files)
    }

    #[test]
    fn provider_options_split_as_galera_does() {
        let got = provider_options(
            r"gcache.size=64M; socket.ssl_cert = /etc/my\;certs/a=b.pem ;bare;socket.ssl_key=k\\;x=",
        );
        let want = [
            ("gcache.size", "64M"),
            ("socket.ssl_cert", "/etc/my;certs/a=b.pem"),
            ("socket.ssl_key", "k\\"),
            ("x", ""),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn legacy_sst_names_win_over_ssl_options() {
        let (_d, f) = files(
            "[mysqld]\nssl-ca=/s/ca.pem\nssl_cert=/s/c.pem\nssl-key=/s/k.pem\n[sst]\ntca=/t/ca.pem\ntcert=/t/c.pem\ntkey=/t/k.pem\n",
        );
        let tls = SstTls::resolve(&f, Role::Donor, None);
        assert_eq!(tls.cert, Some("/t/c.pem".into()));
        assert_eq!(tls.ca, Some("/t/ca.pem".into()));
    }

    #[test]
    fn server_options_loose_prefix_last_wins_and_role_overrides() {
        let (_d, f) = files(
            "[mariadb]\nloose-ssl-ca = \"/a/ca.pem\"\nssl-cert=/a/c.pem # comment\nssl-key='/a/k.pem'\n[galera]\nssl-ca=/b/ca.pem\n[sst]\nssl-client-cert=/donor/c.pem\nssl-mode=verify_ca\n",
        );
        let donor = SstTls::resolve(&f, Role::Donor, None);
        assert_eq!(donor.ca, Some("/b/ca.pem".into()));
        assert_eq!(donor.cert, Some("/donor/c.pem".into()));
        assert_eq!(donor.key, Some("/a/k.pem".into()));
        assert_eq!(donor.mode.as_deref(), Some("VERIFY_CA"));
        let joiner = SstTls::resolve(&f, Role::Joiner, None);
        assert_eq!(joiner.cert, Some("/a/c.pem".into()));
    }

    #[test]
    fn provider_options_are_the_last_fallback_and_includes_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let conf_d = dir.path().join("conf.d");
        fs::create_dir(&conf_d).unwrap();
        fs::write(
            conf_d.join("60-galera.cnf"),
            "[galera]\nwsrep_provider_options=\"gcache.size=1G; socket.ssl_cert=/g/c.pem;socket.ssl_key=/g/k.pem;socket.ssl_ca=/g/ca.pem\"\n",
        )
        .unwrap();
        fs::write(conf_d.join("ignored.txt"), "[sst]\ntca=/nope\n").unwrap();
        let main = dir.path().join("my.cnf");
        fs::write(&main, "[client-server]\n!includedir conf.d\n").unwrap();
        let f = OptionFiles::load(&main).unwrap();
        let tls = SstTls::resolve(&f, Role::Joiner, None);
        assert_eq!(tls.cert, Some("/g/c.pem".into()));
        assert_eq!(tls.ca, Some("/g/ca.pem".into()));
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my.cnf");
        fs::write(&path, "[mysqld]\nssl-ca='/x\n").unwrap();
        let err = OptionFiles::load(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{}: line 2: 'ssl-ca='/x': unbalanced '", path.display())
        );
        fs::write(&path, "ssl-ca=/x\n").unwrap();
        let err = OptionFiles::load(&path).unwrap_err().to_string();
        assert!(err.ends_with("line 1: 'ssl-ca=/x': an option before the first [group]"));
    }
}
