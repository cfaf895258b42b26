//! Log set-up: everything goes to stderr (stdout carries payload or mysqld's protocol).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `RUST_LOG` if set, else `--log-level`, else `info`.
pub fn init(level: Option<&str>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Text a peer chose (certificate names, SNI, alert descriptions) made safe for one log or
/// error line: control characters (a newline would forge a log line), the Unicode controls
/// that reorder or hide text, and the backslash itself come out as Rust-style escapes; all
/// else is kept. Every piece of peer-supplied text goes through here before it is printed.
pub fn escape(text: &str) -> String {
    let hidden = |c: char| matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
    if !text
        .chars()
        .any(|c| c.is_control() || hidden(c) || c == '\\')
    {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn peer_text_stays_on_one_line() {
        assert_eq!(escape("CN=node1, O=Example"), "CN=node1, O=Example");
        assert_eq!(
            escape("CN=x\n2026-01-01T00:00:00Z  INFO forged"),
            "CN=x\\n2026-01-01T00:00:00Z  INFO forged"
        );
        assert_eq!(escape("a\r\t\u{1b}[31m\\"), "a\\r\\t\\u{1b}[31m\\\\");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape("Zürich"), "Zürich");
    }
}
