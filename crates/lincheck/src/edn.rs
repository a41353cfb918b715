//! A small EDN reader for one history line. It reads every EDN form (so nemesis lines with maps and
//! sets in their values parse), never panics, and bounds its recursion; its allocations are bounded by
//! the length of the input, which the caller limits.

use crate::model::canonical_integer;

/// Collections nested deeper than this are refused, so hostile input cannot exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// An EDN form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edn {
    Nil,
    Bool(bool),
    /// An integer, as its canonical decimal text (any size).
    Int(String),
    /// Any other number (float, ratio, ...), as written.
    Number(String),
    Str(String),
    /// Without its leading colon.
    Keyword(String),
    Symbol(String),
    Char(String),
    Vector(Vec<Edn>),
    List(Vec<Edn>),
    Set(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
    Tagged(String, Box<Edn>),
}

impl Edn {
    /// A short name of the form's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Edn::Nil => "nil",
            Edn::Bool(_) => "a boolean",
            Edn::Int(_) => "an integer",
            Edn::Number(_) => "a non-integer number",
            Edn::Str(_) => "a string",
            Edn::Keyword(_) => "a keyword",
            Edn::Symbol(_) => "a symbol",
            Edn::Char(_) => "a character",
            Edn::Vector(_) => "a vector",
            Edn::List(_) => "a list",
            Edn::Set(_) => "a set",
            Edn::Map(_) => "a map",
            Edn::Tagged(..) => "a tagged value",
        }
    }
}

/// Where and why the input is not EDN. `column` counts bytes from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub column: usize,
    pub reason: String,
}

/// Parses `input` as exactly one EDN form, or `None` when it holds only whitespace and comments.
pub fn parse(input: &[u8]) -> Result<Option<Edn>, SyntaxError> {
    let mut parser = Parser { input, at: 0 };
    parser.skip_blank(0)?;
    if parser.at >= input.len() {
        return Ok(None);
    }
    let form = parser.form(0)?;
    parser.skip_blank(0)?;
    if parser.at < input.len() {
        return Err(parser.error("more than one form on the line"));
    }
    Ok(Some(form))
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
}

fn is_delimiter(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'"' | b';')
}

impl Parser<'_> {
    fn error(&self, reason: impl Into<String>) -> SyntaxError {
        SyntaxError { column: self.at + 1, reason: reason.into() }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    /// Skips whitespace, commas, `;` comments and `#_` discarded forms.
    fn skip_blank(&mut self, depth: usize) -> Result<(), SyntaxError> {
        if depth >= MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH}")));
        }
        while let Some(b) = self.peek() {
            if b.is_ascii_whitespace() || b == b',' {
                self.at += 1;
            } else if b == b';' {
                while self.peek().is_some_and(|b| b != b'\n') {
                    self.at += 1;
                }
            } else if b == b'#' && self.input.get(self.at + 1) == Some(&b'_') {
                self.at += 2;
                self.skip_blank(depth + 1)?;
                if self.peek().is_none() {
                    return Err(self.error("#_ discards nothing"));
                }
                self.form(depth + 1)?;
            } else {
                break;
            }
        }
        Ok(())
    }

    fn form(&mut self, depth: usize) -> Result<Edn, SyntaxError> {
        if depth >= MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH}")));
        }
        let Some(b) = self.peek() else { return Err(self.error("unexpected end of line")) };
        match b {
            b'"' => self.string().map(Edn::Str),
            b'[' => self.seq(b']', depth).map(Edn::Vector),
            b'(' => self.seq(b')', depth).map(Edn::List),
            b'{' => self.map(depth),
            b'#' => self.dispatch(depth),
            b')' | b']' | b'}' => Err(self.error(format!("unexpected '{}'", b as char))),
            b'\\' => {
                self.at += 1;
                let token = self.token();
                if token.is_empty() {
                    // A delimiter character itself, such as `\(` or `\ `.
                    match self.peek() {
                        Some(c) => {
                            self.at += 1;
                            Ok(Edn::Char((c as char).to_string()))
                        }
                        None => Err(self.error("character literal without a character")),
                    }
                } else {
                    Ok(Edn::Char(token))
                }
            }
            _ => self.atom(),
        }
    }

    /// Reads up to the next delimiter, as text (invalid UTF-8 is replaced: only used in atoms).
    fn token(&mut self) -> String {
        let start = self.at;
        while self.peek().is_some_and(|b| !is_delimiter(b)) {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.input[start..self.at]).into_owned()
    }

    fn atom(&mut self) -> Result<Edn, SyntaxError> {
        let start = self.at;
        let token = self.token();
        let bytes = token.as_bytes();
        let starts_number = matches!(bytes, [b'0'..=b'9', ..] | [b'+' | b'-', b'0'..=b'9', ..]);
        if starts_number {
            let integer = token.strip_suffix('N').unwrap_or(&token);
            return Ok(match canonical_integer(integer) {
                Some(canonical) => Edn::Int(canonical),
                None if bytes.iter().all(|b| b.is_ascii_digit() || b"+-./eEMN".contains(b)) => {
                    Edn::Number(token)
                }
                None => {
                    self.at = start;
                    return Err(self.error(format!("malformed number {token:?}")));
                }
            });
        }
        if let Some(name) = token.strip_prefix(':') {
            if name.is_empty() || name.starts_with(':') {
                self.at = start;
                return Err(self.error("malformed keyword"));
            }
            return Ok(Edn::Keyword(name.to_string()));
        }
        Ok(match token.as_str() {
            "nil" => Edn::Nil,
            "true" => Edn::Bool(true),
            "false" => Edn::Bool(false),
            "" => return Err(self.error("unexpected character")),
            _ => Edn::Symbol(token),
        })
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let open = self.at;
        self.at += 1;
        let mut bytes = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                self.at = open;
                return Err(self.error("string never closed"));
            };
            self.at += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(escape) = self.peek() else { return Err(self.error("string never closed")) };
                    self.at += 1;
                    match escape {
                        b'"' | b'\\' => bytes.push(escape),
                        b'n' => bytes.push(b'\n'),
                        b't' => bytes.push(b'\t'),
                        b'r' => bytes.push(b'\r'),
                        b'b' => bytes.push(8),
                        b'f' => bytes.push(12),
                        b'u' => {
                            let hex = self.input.get(self.at..self.at + 4).unwrap_or_default();
                            let code = (hex.len() == 4 && hex.iter().all(u8::is_ascii_hexdigit)).then(|| {
                                hex.iter().fold(0, |n, &h| n * 16 + (h as char).to_digit(16).unwrap_or(0))
                            });
                            let Some(c) = code.and_then(char::from_u32) else {
                                return Err(self.error("bad \\u escape"));
                            };
                            self.at += 4;
                            let mut utf8 = [0; 4];
                            bytes.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                        }
                        _ => return Err(self.error(format!("unknown escape \\{}", escape as char))),
                    }
                }
                _ => bytes.push(b),
            }
        }
        String::from_utf8(bytes)
            .map_err(|_| SyntaxError { column: open + 1, reason: "string is not UTF-8".into() })
    }

    fn seq(&mut self, close: u8, depth: usize) -> Result<Vec<Edn>, SyntaxError> {
        let open = self.at;
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.skip_blank(depth + 1)?;
            match self.peek() {
                None => {
                    self.at = open;
                    return Err(self.error(format!("'{}' never closed", self.input[open] as char)));
                }
                Some(b) if b == close => {
                    self.at += 1;
                    return Ok(items);
                }
                Some(_) => items.push(self.form(depth + 1)?),
            }
        }
    }

    fn map(&mut self, depth: usize) -> Result<Edn, SyntaxError> {
        let open = self.at;
        let items = self.seq(b'}', depth)?;
        if items.len() % 2 != 0 {
            self.at = open;
            return Err(self.error("map with an odd number of forms"));
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            pairs.push((k, v));
        }
        Ok(Edn::Map(pairs))
    }

    fn dispatch(&mut self, depth: usize) -> Result<Edn, SyntaxError> {
        match self.input.get(self.at + 1) {
            Some(b'{') => {
                self.at += 1;
                self.seq(b'}', depth).map(Edn::Set)
            }
            Some(b'#') => {
                // Symbolic values such as ##Inf and ##NaN.
                self.at += 2;
                Ok(Edn::Number(format!("##{}", self.token())))
            }
            _ => {
                self.at += 1;
                let tag = self.token();
                if tag.is_empty() {
                    return Err(self.error("'#' without a tag"));
                }
                self.skip_blank(depth + 1)?;
                if self.peek().is_none() {
                    return Err(self.error(format!("tag #{tag} without a value")));
                }
                Ok(Edn::Tagged(tag, Box::new(self.form(depth + 1)?)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Edn {
        parse(text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn reads_a_jepsen_line() {
        let form = one(r#"{:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}"#);
        let Edn::Map(pairs) = form else { panic!("not a map") };
        assert_eq!(pairs.len(), 5);
        assert_eq!(pairs[4], (Edn::Keyword("value".into()), Edn::Str("x 0 1 y".into())));
    }

    #[test]
    fn reads_every_kind_of_form() {
        let form = one(
            r#"[nil true -007 12N 1.5e3 "a\"\u00e9" :k sym \c \space (1) #{2} {3 4} #inst "x" #_ 9 ##Inf]"#,
        );
        let Edn::Vector(items) = form else { panic!("not a vector") };
        assert_eq!(items[0], Edn::Nil);
        assert_eq!(items[2], Edn::Int("-7".into()));
        assert_eq!(items[3], Edn::Int("12".into()));
        assert_eq!(items[4], Edn::Number("1.5e3".into()));
        assert_eq!(items[5], Edn::Str("a\"é".into()));
        assert_eq!(items.len(), 15, "{items:?}");
    }

    #[test]
    fn refuses_what_is_not_edn() {
        for bad in
            ["{:a}", "[1 2", "\"open", "{:a 1} {:b 2}", ")", "1x", ":", "#", "#_", "\"\\q\"", "\"\\u12\""]
        {
            assert!(parse(bad.as_bytes()).is_err(), "{bad} should be refused");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).unwrap_err().reason.contains("nested"));
        let deep_discard = "#_".repeat(10_000) + "1";
        assert!(parse(deep_discard.as_bytes()).is_err());
        assert!(parse(b"\"\xff\"").unwrap_err().reason.contains("UTF-8"));
    }

    #[test]
    fn blank_lines_and_comments_are_empty() {
        assert_eq!(parse(b"  ,, ; just a comment").unwrap(), None);
        assert_eq!(parse(b"").unwrap(), None);
    }
}
