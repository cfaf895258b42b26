//! What the user calls each TLS setting: a native flag, a line of a stunnel config, a socat
//! option, or a key of a MariaDB option file. Hints and errors are written once, with the
//! native flags; [`speak`] rewrites them into the words of whatever the user actually gave,
//! so a DBA under the stunnel front-end is told about the `cert =` line of that config, not
//! a `--cert` flag they never typed (issue 22, point 5).

use std::path::Path;
use std::sync::RwLock;

/// Native flags and what this run calls them instead; flags not listed stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vocabulary {
    words: Vec<(&'static str, String)>,
}

/// How hints name the peer's certificate setting (a listener asking for a client
/// certificate): under a front-end, the peer's config says it its own way.
pub const PEERS_CERT: &str = "the client's --cert";

/// The flags hints may name, longest first where one is a prefix of another.
const FLAGS: [&str; 7] = [
    "--tls-min/--tls-max/--ciphers",
    "--peer-name",
    "--cert",
    "--key",
    "--crl",
    "--ca",
    "--verify",
];

impl Vocabulary {
    /// The stunnel front-end reading `conf`.
    pub fn stunnel(conf: &Path) -> Self {
        let conf = conf.display();
        let mut v = Self::default();
        v.say("--cert", format!("the 'cert =' line of {conf}"));
        v.say("--key", format!("the 'key =' line of {conf}"));
        v.say("--ca", format!("'CAfile =' (or 'CApath =') in {conf}"));
        v.say("--crl", format!("'CRLfile =' (or 'CRLpath =') in {conf}"));
        v.say("--peer-name", format!("'checkHost =' in {conf}"));
        v.say("--verify", format!("'verifyChain'/'verifyPeer' in {conf}"));
        v.say(
            "--tls-min/--tls-max/--ciphers",
            format!("'sslVersionMin'/'sslVersionMax'/'ciphers' in {conf}"),
        );
        v.say(
            PEERS_CERT,
            "the 'cert =' line of the client's stunnel config".into(),
        );
        v
    }

    /// The socat front-end: options of the openssl address.
    pub fn socat() -> Self {
        let mut v = Self::default();
        v.say("--cert", "socat's cert= option".into());
        v.say("--key", "socat's key= option".into());
        v.say("--ca", "socat's cafile= (or capath=) option".into());
        v.say("--peer-name", "socat's commonname= option".into());
        v.say("--verify", "socat's verify= option".into());
        v.say(
            "--tls-min/--tls-max/--ciphers",
            "socat's min-proto-version=/max-proto-version=/cipher= options".into(),
        );
        v.say(PEERS_CERT, "cert= in the client's socat address".into());
        v
    }

    /// `flag`'s value came from `key` of the option file `file` (the command line left it
    /// out).
    pub fn from_option_file(&mut self, flag: &'static str, key: &str, file: &Path) {
        self.say(flag, format!("{key} in {}", file.display()));
    }

    fn say(&mut self, flag: &'static str, words: String) {
        self.words.retain(|(f, _)| *f != flag);
        self.words.push((flag, words));
    }

    /// `text` with each native flag this run calls otherwise put in its words. A flag is
    /// replaced only as a whole word (`--ca` in `--ca-name` stays).
    pub fn translate(&self, text: &str) -> String {
        if self.words.is_empty() {
            return text.to_string();
        }
        let phrased = match self.words.iter().find(|(f, _)| *f == PEERS_CERT) {
            Some((phrase, words)) => text.replace(phrase, words),
            None => text.to_string(),
        };
        let mut out = String::with_capacity(phrased.len());
        let mut rest = phrased.as_str();
        'scan: while let Some(at) = rest.find("--") {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            for flag in FLAGS {
                let Some(after) = rest.strip_prefix(flag) else {
                    continue;
                };
                let whole = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-');
                if let Some((_, words)) = self.words.iter().find(|(f, _)| *f == flag)
                    && whole
                {
                    out.push_str(words);
                    rest = after;
                    continue 'scan;
                }
            }
            out.push_str("--");
            rest = &rest[2..];
        }
        out.push_str(rest);
        out
    }
}

/// This run's vocabulary: set once the run knows where its settings come from.
static SPOKEN: RwLock<Option<Vocabulary>> = RwLock::new(None);

/// Makes `vocabulary` this run's, for every later [`speak`].
pub fn install(vocabulary: Vocabulary) {
    if let Ok(mut spoken) = SPOKEN.write() {
        *spoken = Some(vocabulary);
    }
}

/// This run's vocabulary (native flags when nothing was installed).
pub fn current() -> Vocabulary {
    SPOKEN
        .read()
        .ok()
        .and_then(|spoken| spoken.clone())
        .unwrap_or_default()
}

/// `text` in this run's words: what every error and log line goes through before it is
/// written.
pub fn speak(text: &str) -> String {
    match SPOKEN.read() {
        Ok(spoken) => match spoken.as_ref() {
            Some(vocabulary) => vocabulary.translate(text),
            None => text.to_string(),
        },
        Err(_) => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_replaced_as_whole_words_only() {
        let v = Vocabulary::stunnel(Path::new("/tmp/j.conf"));
        assert_eq!(
            v.translate("our certificate (--cert) (wrong --ca?); --ca-name X, the client's --cert"),
            "our certificate (the 'cert =' line of /tmp/j.conf) (wrong 'CAfile =' (or \
             'CApath =') in /tmp/j.conf?); --ca-name X, the 'cert =' line of the client's \
             stunnel config"
        );
        assert_eq!(Vocabulary::default().translate("--cert"), "--cert");
        let socat = Vocabulary::socat();
        assert_eq!(
            socat.translate("(check --tls-min/--tls-max/--ciphers on both ends)"),
            "(check socat's min-proto-version=/max-proto-version=/cipher= options on both ends)"
        );
        // Flags socat has no word for stay native.
        assert_eq!(socat.translate("revoked (--crl)"), "revoked (--crl)");
    }

    #[test]
    fn an_option_file_names_its_key() {
        let mut v = Vocabulary::default();
        v.from_option_file("--cert", "tcert", Path::new("/etc/my.cnf"));
        assert_eq!(
            v.translate("give the client --cert; --key"),
            "give the client tcert in /etc/my.cnf; --key"
        );
    }
}
