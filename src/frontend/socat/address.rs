//! socat's address syntax: `TYPE:PARAM:PARAM,OPTION=VALUE,...`, with socat's quoting
//! (`'...'`, `"..."`, `\x`) and `[...]` protecting IPv6 colons and commas.

use std::fmt;

/// One parsed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The address type, lower-cased (`openssl-listen`, `stdio`, `-`...).
    pub kind: String,
    /// Colon-separated parameters after the type, unquoted (IPv6 brackets kept).
    pub params: Vec<String>,
    /// Options in order: name (lower-cased) and value (`None` for a bare flag).
    pub options: Vec<(String, Option<String>)>,
}

/// A syntax error in an address.
#[derive(Debug, PartialEq, Eq)]
pub struct SyntaxError(pub String);

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Address {
    /// Parses one address word as socat would.
    pub fn parse(text: &str) -> Result<Self, SyntaxError> {
        let parts = split_top(text, ',')?;
        let (head, options) = parts
            .split_first()
            .ok_or_else(|| SyntaxError("empty address".into()))?;
        let mut head_parts = split_top(head, ':')?.into_iter();
        let kind = unquote(&head_parts.next().unwrap_or_default()).to_ascii_lowercase();
        if kind.is_empty() {
            return Err(SyntaxError(format!("'{text}': no address type")));
        }
        let params = head_parts.map(|p| unquote(&p)).collect();
        let mut parsed = Vec::new();
        for option in options {
            if option.is_empty() {
                continue;
            }
            let pieces = split_top(option, '=')?;
            let name = unquote(&pieces[0]).trim().to_ascii_lowercase();
            // Everything after the first '=' is the value, '=' signs included.
            let value = (pieces.len() > 1).then(|| {
                let raw = &option[option_value_start(option)..];
                unquote(raw)
            });
            parsed.push((name, value));
        }
        Ok(Self {
            kind,
            params,
            options: parsed,
        })
    }
}

/// Byte offset just past the first unprotected `=` of an option.
fn option_value_start(option: &str) -> usize {
    let mut state = Scan::default();
    for (i, c) in option.char_indices() {
        if state.is_top() && c == '=' {
            return i + 1;
        }
        state.step(c);
    }
    option.len()
}

/// Quote/escape/bracket state while scanning.
#[derive(Default)]
struct Scan {
    single: bool,
    double: bool,
    escaped: bool,
    brackets: usize,
}

impl Scan {
    fn is_top(&self) -> bool {
        !self.single && !self.double && !self.escaped && self.brackets == 0
    }

    fn step(&mut self, c: char) {
        if self.escaped {
            self.escaped = false;
            return;
        }
        match c {
            '\\' if !self.single => self.escaped = true,
            '\'' if !self.double => self.single = !self.single,
            '"' if !self.single => self.double = !self.double,
            '[' if !self.single && !self.double => self.brackets += 1,
            ']' if !self.single && !self.double && self.brackets > 0 => self.brackets -= 1,
            _ => {}
        }
    }
}

/// Splits at unprotected `sep`, keeping quotes and escapes for the next stage.
fn split_top(text: &str, sep: char) -> Result<Vec<String>, SyntaxError> {
    let mut parts = vec![String::new()];
    let mut state = Scan::default();
    for c in text.chars() {
        if state.is_top() && c == sep {
            parts.push(String::new());
            continue;
        }
        state.step(c);
        parts.last_mut().expect("never empty").push(c);
    }
    if state.single || state.double {
        return Err(SyntaxError(format!("'{text}': unbalanced quote")));
    }
    Ok(parts)
}

/// Removes socat's quotes and backslash escapes.
fn unquote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut single = false;
    let mut double = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if !single => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(name: &str, value: Option<&str>) -> (String, Option<String>) {
        (name.to_string(), value.map(str::to_string))
    }

    #[test]
    fn contract_donor_address() {
        let a = Address::parse(
            "openssl-connect:[::1]:24444,no-sni=1,cert=/s/n1.pem,key=/s/k.pem,cafile=/s/ca.pem,commonname=,pf=ip6",
        )
        .unwrap();
        assert_eq!(a.kind, "openssl-connect");
        assert_eq!(a.params, vec!["[::1]", "24444"]);
        assert_eq!(
            a.options,
            vec![
                opt("no-sni", Some("1")),
                opt("cert", Some("/s/n1.pem")),
                opt("key", Some("/s/k.pem")),
                opt("cafile", Some("/s/ca.pem")),
                opt("commonname", Some("")),
                opt("pf", Some("ip6")),
            ]
        );
    }

    #[test]
    fn quotes_and_escapes_protect_commas() {
        let a = Address::parse(
            "OPENSSL-LISTEN:4444,reuseaddr,cert='a,x.pem',key=b\\,y.pem,commonname=''",
        )
        .unwrap();
        assert_eq!(a.kind, "openssl-listen");
        assert_eq!(a.params, vec!["4444"]);
        assert_eq!(
            a.options,
            vec![
                opt("reuseaddr", None),
                opt("cert", Some("a,x.pem")),
                opt("key", Some("b,y.pem")),
                opt("commonname", Some("")),
            ]
        );
        let b = Address::parse("openssl-connect:h:1,commonname=\"\"").unwrap();
        assert_eq!(b.options, vec![opt("commonname", Some(""))]);
        assert!(Address::parse("tcp:h:1,cert='x").is_err());
    }

    #[test]
    fn stdio_forms() {
        assert_eq!(Address::parse("stdio").unwrap().kind, "stdio");
        assert_eq!(Address::parse("-").unwrap().kind, "-");
    }
}
