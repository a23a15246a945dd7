//! The xl.cfg language: lexer and parser producing a generic value tree.
//!
//! Follows xl's own parser (XEN-4.19 `tools/libs/util/libxlu_cfg_l.l`, `libxlu_cfg_y.y`,
//! `libxlu_cfg.c`; summary in research/xen-hvm.md §6.1):
//!
//! * `KEY = VALUE` or `KEY += VALUE`; a statement ends at a newline or `;`, or at the end
//!   of the file. Keys match `[a-z][._0-9a-z]*`.
//! * Values: `"string"` / `'string'` with the C escapes `\" \' \\ \a \b \f \n \r \t \v`
//!   (strings end on their line); numbers: decimal, `0x` hex (lowercase digits), leading-`0`
//!   octal, no sign; lists `[ v, v, ]`, heterogeneous and nested, newlines allowed inside,
//!   trailing comma allowed.
//! * `#` starts a comment that runs to the end of the line.
//! * `KEY = ...` again replaces the earlier value; `KEY += ...` appends a list to a list or
//!   a string to a string (a `+=` with no earlier value acts as `=`).
//!
//! Deviations, all of them refusals with a clear message where xl would accept something
//! dubious: `\x..` and octal escapes (xl lexes them but drops the value), NUL bytes and
//! invalid UTF-8 in strings, `+=` on a number (xl would concatenate the digits). A `\r`
//! before a newline is accepted (xl would reject CRLF files).
//!
//! The parser never panics, whatever the bytes: lists nest at most [`MAX_DEPTH`] deep and
//! every error carries the source name, line and column (1-based; columns count UTF-8
//! characters, a tab is one column).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// How deeply lists may nest (`[[[...]]]`) before the parser refuses the file.
pub const MAX_DEPTH: usize = 32;

/// A position in a config source: `source:line:col`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    /// The name the user knows the source by (the config path as given, or `<command line>`).
    pub source: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl Loc {
    /// `source:line`, the form used by warnings.
    pub fn line_only(&self) -> String {
        format!("{}:{}", self.source, self.line)
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.col)
    }
}

/// A value and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub at: Loc,
    pub value: Value,
}

/// An xl.cfg value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A quoted string, escapes already decoded.
    Str(String),
    /// A number literal, with its text as written (`0x10`, `017`, `42`).
    Num { value: u64, text: String },
    /// A list of values (possibly empty, possibly nested).
    List(Vec<Node>),
}

impl Value {
    /// A short description for messages: `a string "abc"`, `the number 12`, `a list`.
    pub fn describe(&self) -> String {
        match self {
            Value::Str(s) => format!("a string \"{}\"", shorten(s)),
            Value::Num { text, .. } => format!("the number {text}"),
            Value::List(l) if l.is_empty() => "an empty list".to_string(),
            Value::List(_) => "a list".to_string(),
        }
    }
}

/// One key's current setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    /// Where the key was (last) assigned with `=` (or first given with `+=`).
    pub at: Loc,
    pub value: Node,
}

/// A parsed config: the settings in the order their keys first appeared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    settings: Vec<Setting>,
    /// key -> index in `settings` (a hostile file can hold many thousands of keys).
    index: HashMap<String, usize>,
}

/// A syntax error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub at: Loc,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.msg)
    }
}

impl std::error::Error for ParseError {}

impl Config {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse one source into a new config.
    pub fn parse(source: &str, text: &[u8]) -> Result<Config, ParseError> {
        let mut c = Config::new();
        c.parse_into(source, text)?;
        Ok(c)
    }

    /// Parse one more source on top of this config (later sources override or append, like
    /// xl's `KEY=VALUE` arguments after the config file). On error this config may hold
    /// the statements before the error.
    pub fn parse_into(&mut self, source: &str, text: &[u8]) -> Result<(), ParseError> {
        let mut p = Parser {
            lx: Lexer::new(Arc::from(source), text),
            cfg: self,
        };
        p.file()
    }

    /// Every setting, in order of first appearance.
    pub fn settings(&self) -> &[Setting] {
        &self.settings
    }

    /// The setting of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.index.get(key).map(|&i| &self.settings[i])
    }

    fn store(
        &mut self,
        key: String,
        key_at: Loc,
        add: bool,
        value: Node,
    ) -> Result<(), ParseError> {
        let Some(&i) = self.index.get(&key) else {
            self.index.insert(key.clone(), self.settings.len());
            self.settings.push(Setting {
                key,
                at: key_at,
                value,
            });
            return Ok(());
        };
        let prev = &mut self.settings[i];
        if !add {
            prev.at = key_at;
            prev.value = value;
            return Ok(());
        }
        match (&mut prev.value.value, value.value) {
            (Value::Str(a), Value::Str(b)) => {
                a.push_str(&b);
                Ok(())
            }
            (Value::List(a), Value::List(b)) => {
                a.extend(b);
                Ok(())
            }
            (old, new) => Err(ParseError {
                at: value.at,
                msg: format!(
                    "'+=' cannot add {} to '{key}', which holds {} (set at line {}); \
                     '+=' appends a string to a string or a list to a list",
                    new.describe(),
                    old.describe(),
                    prev.at.line
                ),
            }),
        }
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 24;
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_default).collect();
    if s.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// A run of letters, digits, `_` and `.` starting with a letter or `_`: a key when
    /// it matches `[a-z][._0-9a-z]*` and stands at the start of a statement.
    Word(String),
    Str(String),
    Num(u64, String),
    Eq,
    PlusEq,
    LBrack,
    RBrack,
    Comma,
    Semi,
    Newline,
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(k) => format!("the name '{}'", shorten(k)),
            Tok::Str(s) => format!("the string \"{}\"", shorten(s)),
            Tok::Num(_, t) => format!("the number {t}"),
            Tok::Eq => "'='".into(),
            Tok::PlusEq => "'+='".into(),
            Tok::LBrack => "'['".into(),
            Tok::RBrack => "']'".into(),
            Tok::Comma => "','".into(),
            Tok::Semi => "';'".into(),
            Tok::Newline => "the end of the line".into(),
            Tok::Eof => "the end of the file".into(),
        }
    }
}

struct Lexer<'a> {
    source: Arc<str>,
    text: &'a [u8],
    i: usize,
    line: u32,
    col: u32,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

impl<'a> Lexer<'a> {
    fn new(source: Arc<str>, text: &'a [u8]) -> Self {
        Lexer {
            source,
            text,
            i: 0,
            line: 1,
            col: 1,
        }
    }

    fn loc(&self) -> Loc {
        Loc {
            source: self.source.clone(),
            line: self.line,
            col: self.col,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.i).copied()
    }

    /// Consume one byte, keeping line and column (columns count characters, so UTF-8
    /// continuation bytes do not advance them).
    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        if b == b'\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else if b & 0xc0 != 0x80 {
            self.col = self.col.saturating_add(1);
        }
        Some(b)
    }

    fn err(&self, at: Loc, msg: impl Into<String>) -> ParseError {
        ParseError {
            at,
            msg: msg.into(),
        }
    }

    /// The next token and where it starts.
    fn next(&mut self) -> Result<(Tok, Loc), ParseError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r') => {
                    self.bump();
                }
                Some(b'#') => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
        let at = self.loc();
        let Some(b) = self.peek() else {
            return Ok((Tok::Eof, at));
        };
        let tok = match b {
            b'\n' => {
                self.bump();
                Tok::Newline
            }
            b';' => {
                self.bump();
                Tok::Semi
            }
            b'=' => {
                self.bump();
                Tok::Eq
            }
            b'[' => {
                self.bump();
                Tok::LBrack
            }
            b']' => {
                self.bump();
                Tok::RBrack
            }
            b',' => {
                self.bump();
                Tok::Comma
            }
            b'+' if self.text.get(self.i + 1) == Some(&b'=') => {
                self.bump();
                self.bump();
                Tok::PlusEq
            }
            b'"' | b'\'' => self.string(at.clone())?,
            b'0'..=b'9' => self.number(at.clone())?,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => self.word(),
            b'+' | b'-' | b'(' | b')' | b':' | b'.' | b'{' | b'}' => {
                let what = match b {
                    b'-' => " (numbers have no sign)",
                    b'{' | b'}' => " (there are no dicts)",
                    b'(' | b')' => " (there are no tuples or calls)",
                    _ => "",
                };
                return Err(self.err(
                    at,
                    format!(
                        "unexpected '{}' outside a string: xl.cfg is not Python{what}; \
                         values are \"strings\", numbers or [lists]",
                        b as char
                    ),
                ));
            }
            _ => return Err(self.err(at, format!("unexpected {}", self.describe_char()))),
        };
        Ok((tok, at))
    }

    /// Describe the (possibly multi-byte, possibly invalid) character at the cursor.
    fn describe_char(&self) -> String {
        let rest = &self.text[self.i..];
        let b = rest[0];
        if b.is_ascii_graphic() {
            return format!("character '{}'", b as char);
        }
        if b < 0x80 {
            return format!("control character 0x{b:02x}");
        }
        let n = rest.len().min(4);
        let prefix = match std::str::from_utf8(&rest[..n]) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or(""),
        };
        match prefix.chars().next() {
            Some(c) => format!("character '{c}' (U+{:04X}) outside a string", c as u32),
            None => format!("byte 0x{b:02x} (not UTF-8)"),
        }
    }

    fn string(&mut self, at: Loc) -> Result<Tok, ParseError> {
        let quote = self.bump().unwrap_or(b'"');
        let mut buf = Vec::new();
        loop {
            let here = self.loc();
            match self.peek() {
                None | Some(b'\n') => {
                    return Err(self.err(
                        at,
                        format!(
                            "unterminated string: no closing {} on this line",
                            quote as char
                        ),
                    ));
                }
                Some(0) => return Err(self.err(here, "NUL byte inside a string")),
                Some(b) if b == quote => {
                    self.bump();
                    break;
                }
                Some(b'\\') => {
                    self.bump();
                    let decoded = match self.peek() {
                        None | Some(b'\n') => {
                            return Err(self.err(
                                at,
                                format!(
                                    "unterminated string: no closing {} on this line",
                                    quote as char
                                ),
                            ));
                        }
                        Some(b'"') => b'"',
                        Some(b'\'') => b'\'',
                        Some(b'\\') => b'\\',
                        Some(b'a') => 0x07,
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'v') => 0x0b,
                        Some(c @ (b'x' | b'0'..=b'7')) => {
                            let shown = if c == b'x' {
                                "\\x".into()
                            } else {
                                format!("\\{}", c as char)
                            };
                            return Err(self.err(
                                here,
                                format!(
                                    "escape '{shown}...' is not supported: xl drops the value of \
                                     hex and octal escapes; write the character itself"
                                ),
                            ));
                        }
                        Some(c) => {
                            let shown = if c.is_ascii_graphic() {
                                format!("'\\{}'", c as char)
                            } else {
                                format!("'\\' followed by byte 0x{c:02x}")
                            };
                            return Err(self.err(
                                here,
                                format!(
                                    "unknown escape {shown}; known: \\\" \\' \\\\ \\a \\b \\f \\n \\r \\t \\v"
                                ),
                            ));
                        }
                    };
                    self.bump();
                    buf.push(decoded);
                }
                Some(b) => {
                    self.bump();
                    buf.push(b);
                }
            }
        }
        match String::from_utf8(buf) {
            Ok(s) => Ok(Tok::Str(s)),
            Err(_) => Err(self.err(at, "string is not valid UTF-8")),
        }
    }

    fn number(&mut self, at: Loc) -> Result<Tok, ParseError> {
        let start = self.i;
        while self.peek().is_some_and(is_word_byte) {
            self.bump();
        }
        // Only ASCII bytes were consumed.
        let text = String::from_utf8_lossy(&self.text[start..self.i]).into_owned();
        match parse_number(&text) {
            Ok(v) => Ok(Tok::Num(v, text)),
            Err(why) => Err(self.err(at, why)),
        }
    }

    fn word(&mut self) -> Tok {
        let start = self.i;
        while self.peek().is_some_and(is_word_byte) {
            self.bump();
        }
        Tok::Word(String::from_utf8_lossy(&self.text[start..self.i]).into_owned())
    }
}

/// Parse an xl.cfg number literal: decimal, `0x` lowercase hex, or leading-`0` octal, as
/// C's `strtoul(.., 0)` reads the token xl's lexer accepts. The error says why not.
pub fn parse_number(text: &str) -> Result<u64, String> {
    let too_big = || format!("number '{text}' is too large");
    let bad = |why: &str| format!("invalid number '{text}': {why}");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if hex.is_empty() {
            return Err(bad("'0x' needs hex digits"));
        }
        if let Some(c) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(if c.is_ascii_hexdigit() {
                bad("hex digits must be lowercase")
            } else {
                bad(&format!("'{c}' is not a hex digit"))
            });
        }
        return u64::from_str_radix(hex, 16).map_err(|_| too_big());
    }
    if text.contains('.') {
        return Err(bad("numbers are whole (no decimal point)"));
    }
    if let Some(c) = text.chars().find(|c| !c.is_ascii_digit()) {
        return Err(if c.is_ascii_alphabetic() {
            bad("numbers have no unit suffix (memory is in MiB: write 512, not 512M)")
        } else {
            bad(&format!("unexpected '{c}'"))
        });
    }
    if text.len() > 1 && text.starts_with('0') {
        if text.bytes().any(|b| b == b'8' || b == b'9') {
            return Err(bad("a leading 0 means octal, which has no digits 8 or 9"));
        }
        return u64::from_str_radix(&text[1..], 8).map_err(|_| too_big());
    }
    text.parse::<u64>().map_err(|_| too_big())
}

// ---------------------------------------------------------------------------------------
// Parser

struct Parser<'a, 'c> {
    lx: Lexer<'a>,
    cfg: &'c mut Config,
}

impl Parser<'_, '_> {
    fn file(&mut self) -> Result<(), ParseError> {
        loop {
            let (tok, at) = self.lx.next()?;
            match tok {
                Tok::Eof => return Ok(()),
                Tok::Newline | Tok::Semi => {}
                Tok::Word(key) => {
                    let b = key.as_bytes();
                    if !b[0].is_ascii_lowercase()
                        || !b
                            .iter()
                            .all(|&c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.'))
                    {
                        return Err(ParseError {
                            at,
                            msg: format!(
                                "invalid key '{}': xl.cfg keys are lowercase, a letter \
                                 followed by letters, digits, '_' or '.'",
                                shorten(&key)
                            ),
                        });
                    }
                    self.assignment(key, at)?
                }
                other => {
                    let hint = match other {
                        Tok::Str(_) | Tok::Num(..) => " (a statement is KEY = VALUE)",
                        _ => "",
                    };
                    return Err(ParseError {
                        at,
                        msg: format!(
                            "expected a key at the start of a statement, found {}{hint}",
                            other.describe()
                        ),
                    });
                }
            }
        }
    }

    fn assignment(&mut self, key: String, key_at: Loc) -> Result<(), ParseError> {
        let (op, op_at) = self.lx.next()?;
        let add = match op {
            Tok::Eq => false,
            Tok::PlusEq => true,
            other => {
                return Err(ParseError {
                    at: op_at,
                    msg: format!(
                        "expected '=' or '+=' after key '{key}', found {}",
                        other.describe()
                    ),
                });
            }
        };
        let op_text = if add { "+=" } else { "=" };
        let (tok, at) = self.lx.next()?;
        let value = self.value(tok, at, &format!("after '{op_text}'"), 0)?;
        let (end, end_at) = self.lx.next()?;
        match end {
            Tok::Newline | Tok::Semi | Tok::Eof => {}
            other => {
                return Err(ParseError {
                    at: end_at,
                    msg: format!(
                        "expected the end of the statement (a newline or ';') after the value \
                         of '{key}', found {}",
                        other.describe()
                    ),
                });
            }
        }
        self.cfg.store(key, key_at, add, value)
    }

    /// A value starting with the already-read token `tok`. `ctx` says where we are for
    /// the "expected a value" message.
    fn value(&mut self, tok: Tok, at: Loc, ctx: &str, depth: usize) -> Result<Node, ParseError> {
        let value = match tok {
            Tok::Str(s) => Value::Str(s),
            Tok::Num(value, text) => Value::Num { value, text },
            Tok::LBrack => {
                if depth >= MAX_DEPTH {
                    return Err(ParseError {
                        at,
                        msg: format!("lists nested more than {MAX_DEPTH} deep"),
                    });
                }
                Value::List(self.list_items(&at, depth + 1)?)
            }
            Tok::Word(w) => {
                let w = shorten(&w);
                return Err(ParseError {
                    at,
                    msg: format!(
                        "expected a value {ctx}, found the bare word '{w}' (strings need quotes: \"{w}\")"
                    ),
                });
            }
            other => {
                return Err(ParseError {
                    at,
                    msg: format!("expected a value {ctx}, found {}", other.describe()),
                });
            }
        };
        Ok(Node { at, value })
    }

    /// The items of a list whose `[` (at `open`) was just read, through the closing `]`.
    fn list_items(&mut self, open: &Loc, depth: usize) -> Result<Vec<Node>, ParseError> {
        let mut items = Vec::new();
        let unterminated = |at: Loc| ParseError {
            at,
            msg: format!(
                "unterminated list: the '[' at line {} column {} has no matching ']'",
                open.line, open.col
            ),
        };
        loop {
            // A value, or ']' (empty list or after a trailing comma).
            let (tok, at) = self.skip_newlines()?;
            match tok {
                Tok::RBrack => return Ok(items),
                Tok::Eof => return Err(unterminated(at)),
                tok => {
                    let ctx = if items.is_empty() {
                        "or ']' after '['"
                    } else {
                        "or ']' after ','"
                    };
                    items.push(self.value(tok, at, ctx, depth)?);
                }
            }
            let (tok, at) = self.skip_newlines()?;
            match tok {
                Tok::Comma => {}
                Tok::RBrack => return Ok(items),
                Tok::Eof => return Err(unterminated(at)),
                other => {
                    return Err(ParseError {
                        at,
                        msg: format!(
                            "expected ',' or ']' after a list item, found {}",
                            other.describe()
                        ),
                    });
                }
            }
        }
    }

    fn skip_newlines(&mut self) -> Result<(Tok, Loc), ParseError> {
        loop {
            let (tok, at) = self.lx.next()?;
            if tok != Tok::Newline {
                return Ok((tok, at));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ParseError> {
        Config::parse("t.cfg", text.as_bytes())
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn val(text: &str, key: &str) -> Value {
        parse(text).unwrap().get(key).unwrap().value.value.clone()
    }

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    fn n(v: u64, t: &str) -> Value {
        Value::Num {
            value: v,
            text: t.into(),
        }
    }

    fn strip(v: &Value) -> Value {
        // Compare list shapes without positions.
        match v {
            Value::List(l) => Value::List(
                l.iter()
                    .map(|x| Node {
                        at: Loc {
                            source: "".into(),
                            line: 0,
                            col: 0,
                        },
                        value: strip(&x.value),
                    })
                    .collect(),
            ),
            o => o.clone(),
        }
    }

    fn list(items: Vec<Value>) -> Value {
        strip(&Value::List(
            items
                .into_iter()
                .map(|value| Node {
                    at: Loc {
                        source: "".into(),
                        line: 0,
                        col: 0,
                    },
                    value,
                })
                .collect(),
        ))
    }

    #[test]
    fn simple_assignments() {
        let c = parse("name = \"demo\"\nmemory = 512\ntype='hvm'\n").unwrap();
        assert_eq!(c.settings().len(), 3);
        assert_eq!(c.get("name").unwrap().value.value, s("demo"));
        assert_eq!(c.get("memory").unwrap().value.value, n(512, "512"));
        assert_eq!(c.get("type").unwrap().value.value, s("hvm"));
        let m = c.get("memory").unwrap();
        assert_eq!((m.at.line, m.at.col), (2, 1));
        assert_eq!((m.value.at.line, m.value.at.col), (2, 10));
        assert_eq!(&*m.at.source, "t.cfg");
    }

    #[test]
    fn semicolons_blank_lines_comments_and_no_final_newline() {
        let c = parse("# head\n\n a=1; b = 2 ;;\n\t c = 'x' # tail\n# only comment\nd=3").unwrap();
        let keys: Vec<_> = c.settings().iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        assert_eq!(c.get("c").unwrap().value.value, s("x"));
        assert_eq!(c.get("d").unwrap().value.value, n(3, "3"));
        assert!(parse("").unwrap().settings().is_empty());
        assert!(parse("# nothing").unwrap().settings().is_empty());
    }

    #[test]
    fn keys_with_dots_digits_underscores() {
        let c = parse("device_model_version = 'qemu-xen'\na.b_c9 = 1\n").unwrap();
        assert!(c.get("a.b_c9").is_some());
        assert!(c.get("device_model_version").is_some());
    }

    #[test]
    fn escapes() {
        assert_eq!(
            val(r#"x = "a\"b\'c\\d\ae\bf\fg\nh\ri\tj\vk""#, "x"),
            s("a\"b'c\\d\x07e\x08f\x0cg\nh\ri\tj\x0bk")
        );
        assert_eq!(val(r#"x = 'it\'s "fine"'"#, "x"), s("it's \"fine\""));
        assert_eq!(val("x = \"#not a comment\"", "x"), s("#not a comment"));
        assert_eq!(
            val("x = 'caf\u{e9} \u{1F600}'", "x"),
            s("caf\u{e9} \u{1F600}")
        );
        assert_eq!(val("x = \"\"", "x"), s(""));
    }

    #[test]
    fn bad_escapes() {
        assert_eq!(
            err(r#"x = "a\q""#),
            "t.cfg:1:7: unknown escape '\\q'; known: \\\" \\' \\\\ \\a \\b \\f \\n \\r \\t \\v"
        );
        assert!(err(r#"x = "\x41""#).starts_with("t.cfg:1:6: escape '\\x...' is not supported"));
        assert!(err(r#"x = "\101""#).starts_with("t.cfg:1:6: escape '\\1...' is not supported"));
    }

    #[test]
    fn numbers() {
        assert_eq!(val("x = 0", "x"), n(0, "0"));
        assert_eq!(val("x = 42", "x"), n(42, "42"));
        assert_eq!(val("x = 0x1f", "x"), n(31, "0x1f"));
        assert_eq!(val("x = 017", "x"), n(15, "017"));
        assert_eq!(
            val("x = 18446744073709551615", "x"),
            n(u64::MAX, "18446744073709551615")
        );
        assert_eq!(
            err("x = 18446744073709551616"),
            "t.cfg:1:5: number '18446744073709551616' is too large"
        );
        assert_eq!(
            err("x = 0x1F"),
            "t.cfg:1:5: invalid number '0x1F': hex digits must be lowercase"
        );
        assert_eq!(
            err("x = 0x"),
            "t.cfg:1:5: invalid number '0x': '0x' needs hex digits"
        );
        assert_eq!(
            err("memory = 512M"),
            "t.cfg:1:10: invalid number '512M': numbers have no unit suffix (memory is in MiB: write 512, not 512M)"
        );
        assert_eq!(
            err("x = 1.5"),
            "t.cfg:1:5: invalid number '1.5': numbers are whole (no decimal point)"
        );
        assert_eq!(
            err("x = 09"),
            "t.cfg:1:5: invalid number '09': a leading 0 means octal, which has no digits 8 or 9"
        );
    }

    #[test]
    fn lists() {
        assert_eq!(strip(&val("x = []", "x")), list(vec![]));
        assert_eq!(strip(&val("x = [ ]", "x")), list(vec![]));
        assert_eq!(
            strip(&val("x = [ 'a', 1, ]", "x")),
            list(vec![s("a"), n(1, "1")])
        );
        assert_eq!(
            strip(&val(
                "x = [\n  'a',  # first\n\n  [ 'b', [] ],\n  3\n]\ny = 1",
                "x"
            )),
            list(vec![s("a"), list(vec![s("b"), list(vec![])]), n(3, "3")])
        );
        let c = parse("x = [\n  'a',\n  'b' ]").unwrap();
        let Value::List(items) = &c.get("x").unwrap().value.value else {
            panic!()
        };
        assert_eq!((items[1].at.line, items[1].at.col), (3, 3));
    }

    #[test]
    fn list_errors() {
        assert_eq!(
            err("x = [,]"),
            "t.cfg:1:6: expected a value or ']' after '[', found ','"
        );
        assert_eq!(
            err("x = ['a',,]"),
            "t.cfg:1:10: expected a value or ']' after ',', found ','"
        );
        assert_eq!(
            err("x = ['a' 'b']"),
            "t.cfg:1:10: expected ',' or ']' after a list item, found the string \"b\""
        );
        assert_eq!(
            err("x = [\n 'a',\n"),
            "t.cfg:3:1: unterminated list: the '[' at line 1 column 5 has no matching ']'"
        );
        assert_eq!(
            err("x = ['a'; 'b']"),
            "t.cfg:1:9: expected ',' or ']' after a list item, found ';'"
        );
    }

    #[test]
    fn plus_equals() {
        let c = parse("x = ['a']\nx += ['b', 'c']\ny = 'ab'\ny += 'cd'\nz += 'new'\n").unwrap();
        assert_eq!(
            strip(&c.get("x").unwrap().value.value),
            list(vec![s("a"), s("b"), s("c")])
        );
        assert_eq!(c.get("y").unwrap().value.value, s("abcd"));
        assert_eq!(c.get("z").unwrap().value.value, s("new"));
        assert_eq!(c.get("x").unwrap().at.line, 1);
        assert_eq!(
            err("x = 'a'\nx += ['b']"),
            "t.cfg:2:6: '+=' cannot add a list to 'x', which holds a string \"a\" (set at line 1); '+=' appends a string to a string or a list to a list"
        );
        assert!(
            err("m = 5\nm += 12").starts_with("t.cfg:2:6: '+=' cannot add the number 12 to 'm'")
        );
    }

    #[test]
    fn reassignment_replaces() {
        let c = parse("memory = 256\nname='a'\nmemory = 1024\n").unwrap();
        let m = c.get("memory").unwrap();
        assert_eq!(m.value.value, n(1024, "1024"));
        assert_eq!(m.at.line, 3);
        assert_eq!(c.settings()[0].key, "memory");
    }

    #[test]
    fn parse_into_layers_sources() {
        let mut c = Config::parse("a.cfg", b"memory = 256\nextra = 'x'\n").unwrap();
        c.parse_into("<command line>", b"memory=1024").unwrap();
        c.parse_into("<command line>", b"extra+=' y'").unwrap();
        assert_eq!(c.get("memory").unwrap().value.value, n(1024, "1024"));
        assert_eq!(&*c.get("memory").unwrap().at.source, "<command line>");
        assert_eq!(c.get("extra").unwrap().value.value, s("x y"));
        let e = c.parse_into("<command line>", b"vcpus=").unwrap_err();
        assert_eq!(
            e.to_string(),
            "<command line>:1:7: expected a value after '=', found the end of the file"
        );
    }

    #[test]
    fn statement_errors_with_positions() {
        assert_eq!(
            err("name = 'a'\n\nmemory = ]\n"),
            "t.cfg:3:10: expected a value after '=', found ']'"
        );
        assert_eq!(
            err("name 'a'"),
            "t.cfg:1:6: expected '=' or '+=' after key 'name', found the string \"a\""
        );
        assert_eq!(
            err("name = 'a' memory = 5"),
            "t.cfg:1:12: expected the end of the statement (a newline or ';') after the value of 'name', found the name 'memory'"
        );
        assert_eq!(
            err("= 5"),
            "t.cfg:1:1: expected a key at the start of a statement, found '='"
        );
        assert_eq!(
            err("'a' = 5"),
            "t.cfg:1:1: expected a key at the start of a statement, found the string \"a\" (a statement is KEY = VALUE)"
        );
        assert_eq!(
            err("type = hvm"),
            "t.cfg:1:8: expected a value after '=', found the bare word 'hvm' (strings need quotes: \"hvm\")"
        );
        assert_eq!(
            err("x += \n"),
            "t.cfg:1:6: expected a value after '+=', found the end of the line"
        );
        assert_eq!(
            err("x = 'abc\ny = 1"),
            "t.cfg:1:5: unterminated string: no closing ' on this line"
        );
        assert_eq!(
            err("x = \"abc"),
            "t.cfg:1:5: unterminated string: no closing \" on this line"
        );
    }

    #[test]
    fn python_isms() {
        for (text, col, ch) in [
            ("x = -1", 5, '-'),
            ("x = (1, 2)", 5, '('),
            ("x = {'a': 1}", 5, '{'),
            ("x = 1 + 2", 7, '+'),
            ("x = 'a':", 8, ':'),
            ("x = .5", 5, '.'),
        ] {
            let e = err(text);
            assert!(
                e.starts_with(&format!(
                    "t.cfg:1:{col}: unexpected '{ch}' outside a string: xl.cfg is not Python"
                )),
                "{text}: {e}"
            );
        }
        assert!(err("x = -1").contains("(numbers have no sign)"));
        assert_eq!(
            err("x = True"),
            "t.cfg:1:5: expected a value after '=', found the bare word 'True' (strings need quotes: \"True\")"
        );
    }

    #[test]
    fn uppercase_and_odd_characters() {
        assert_eq!(
            err("Memory = 5"),
            "t.cfg:1:1: invalid key 'Memory': xl.cfg keys are lowercase, a letter followed by letters, digits, '_' or '.'"
        );
        assert!(err("_x = 5").starts_with("t.cfg:1:1: invalid key '_x'"));
        assert_eq!(err("x = 5 !"), "t.cfg:1:7: unexpected character '!'");
        assert_eq!(
            err("x = 5\x01"),
            "t.cfg:1:6: unexpected control character 0x01"
        );
        assert_eq!(
            err("x = \u{e9}"),
            "t.cfg:1:5: unexpected character '\u{e9}' (U+00E9) outside a string"
        );
        assert_eq!(
            err("x = \u{e9}\u{e9}\n\u{ff}"),
            "t.cfg:1:5: unexpected character '\u{e9}' (U+00E9) outside a string"
        );
        assert_eq!(
            Config::parse("t.cfg", b"x = 1\n\xff")
                .unwrap_err()
                .to_string(),
            "t.cfg:2:1: unexpected byte 0xff (not UTF-8)"
        );
        assert_eq!(
            Config::parse("t.cfg", b"x = '\xff'")
                .unwrap_err()
                .to_string(),
            "t.cfg:1:5: string is not valid UTF-8"
        );
        assert_eq!(
            Config::parse("t.cfg", b"x = 'a\0'")
                .unwrap_err()
                .to_string(),
            "t.cfg:1:7: NUL byte inside a string"
        );
    }

    #[test]
    fn columns_count_characters_and_crlf_is_accepted() {
        // 'é' is two bytes, one column.
        assert_eq!(
            err("x = '\u{e9}' ]"),
            "t.cfg:1:9: expected the end of the statement (a newline or ';') after the value of 'x', found ']'"
        );
        let c = parse("a = 1\r\nb = 'x'\r\n").unwrap();
        assert_eq!(c.get("b").unwrap().value.value, s("x"));
        assert_eq!(c.get("b").unwrap().at.line, 2);
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("x = {}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!(
            "x = {}{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(
            err(&deep),
            format!(
                "t.cfg:1:{}: lists nested more than {MAX_DEPTH} deep",
                5 + MAX_DEPTH
            )
        );
        // Far deeper than any stack would allow without the bound.
        let hostile = format!("x = {}", "[".repeat(1_000_000));
        assert!(parse(&hostile).is_err());
    }

    /// xorshift64*: deterministic pseudo-random bytes without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Bytes biased towards the grammar's alphabet so the parser gets deep.
        const ALPHABET: &[u8] = b"ab=[],;'\"\\\n #0x19+-()e\t.:\r";
        for round in 0..20_000 {
            let len = (rng.next() % 96) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if round % 3 == 0 {
                        r as u8
                    } else {
                        ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                    }
                })
                .collect();
            match Config::parse("fuzz", &bytes) {
                Ok(c) => {
                    for s in c.settings() {
                        assert!(!s.key.is_empty());
                    }
                }
                Err(e) => {
                    assert!(e.at.line >= 1 && e.at.col >= 1, "{e}");
                    assert!(!e.msg.is_empty());
                }
            }
        }
    }

    #[test]
    fn mutated_valid_configs_never_panic() {
        let base = b"name = \"demo\"\nmemory = 0x200\nvcpus = 1; serial = [ 'file:/tmp/x', ]\ndisk = [ [ 'a', 017 ], ]\nextra += 'console=ttyS0'\n";
        let mut rng = Rng(42);
        for _ in 0..20_000 {
            let mut b = base.to_vec();
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % b.len();
                match rng.next() % 3 {
                    0 => b[i] = rng.next() as u8,
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, rng.next() as u8),
                }
            }
            let _ = Config::parse("fuzz", &b);
        }
    }
}
