//! Strings: keys and values of interest decoded (escapes included) into bounded buffers;
//! every other string jumped over from quote to quote.

use memchr::{memchr, memchr2};

use super::path::Node;
use super::{Found, Scanner, State};
use crate::observe::StateId;

/// Where a decoded string's bytes go (other strings are skipped, not decoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    Key,
    /// `text` (an id or a `type`).
    Text,
    /// Only whether it is empty matters.
    Token,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Escape {
    No,
    Backslash,
    Hex { digits: u8, code: u32 },
}

/// Strings are mostly short (keys, ids, tokens): look at this many bytes before `memchr`.
const SHORT: usize = 16;

/// The first `needle` in `bytes`: a plain loop over the first bytes, then `memchr`.
fn find(needle: u8, bytes: &[u8]) -> Option<usize> {
    let (head, tail) = bytes.split_at(bytes.len().min(SHORT));
    match head.iter().position(|&b| b == needle) {
        Some(n) => Some(n),
        None => memchr(needle, tail).map(|n| n + head.len()),
    }
}

/// The first `a` or `b` in `bytes`, like [`find`].
fn find2(a: u8, b: u8, bytes: &[u8]) -> Option<usize> {
    let (head, tail) = bytes.split_at(bytes.len().min(SHORT));
    match head.iter().position(|&c| c == a || c == b) {
        Some(n) => Some(n),
        None => memchr2(a, b, tail).map(|n| n + head.len()),
    }
}

impl Scanner {
    pub(super) fn begin_string(&mut self, target: Target) {
        self.target = target;
        self.escape = Escape::No;
        self.nonempty = false;
        match target {
            Target::Key => self.key.clear(),
            Target::Text => self.text.clear(),
            Target::Token => {}
        }
        self.state = State::Str;
    }

    /// Inside a string: runs up to the next `"` or `\` in one `memchr`, escapes byte by byte.
    pub(super) fn string(&mut self, input: &[u8], mut at: usize, found: &mut Found) -> usize {
        loop {
            if self.escape != Escape::No {
                let Some(&b) = input.get(at) else {
                    return at;
                };
                self.escaped(b);
                at += 1;
                if self.state == State::Failed {
                    return input.len();
                }
                continue;
            }
            let rest = input.get(at..).unwrap_or_default();
            let Some(n) = find2(b'"', b'\\', rest) else {
                self.take(rest);
                return input.len();
            };
            self.take(rest.get(..n).unwrap_or_default());
            at += n + 1;
            if rest.get(n) == Some(&b'"') {
                self.end_string(found);
                return at;
            }
            self.escape = Escape::Backslash;
        }
    }

    fn take(&mut self, run: &[u8]) {
        if run.is_empty() {
            return;
        }
        self.nonempty = true;
        match self.target {
            Target::Key => self.key.extend(run),
            Target::Text => self.text.extend(run),
            Target::Token => {}
        }
    }

    /// The byte after a `\`, or one of a `\u` escape's four hex digits.
    fn escaped(&mut self, b: u8) {
        match self.escape {
            Escape::No => {}
            Escape::Backslash => {
                let decoded = match b {
                    b'"' | b'\\' | b'/' => b,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'u' => {
                        self.escape = Escape::Hex { digits: 0, code: 0 };
                        return;
                    }
                    _ => return self.fail(),
                };
                self.escape = Escape::No;
                self.take(&[decoded]);
            }
            Escape::Hex { digits, code } => {
                let Some(digit) = char::from(b).to_digit(16) else {
                    return self.fail();
                };
                let code = code << 4 | digit;
                if digits < 3 {
                    self.escape = Escape::Hex {
                        digits: digits + 1,
                        code,
                    };
                    return;
                }
                self.escape = Escape::No;
                match u8::try_from(code).ok().filter(u8::is_ascii) {
                    Some(ascii) => self.take(&[ascii]),
                    // Keys, ids and types of interest are ASCII: this one is none of them.
                    None => self.poison(),
                }
            }
        }
    }

    fn poison(&mut self) {
        self.nonempty = true;
        match self.target {
            Target::Key => self.key.poison(),
            Target::Text => self.text.poison(),
            Target::Token => {}
        }
    }

    fn end_string(&mut self, found: &mut Found) {
        match self.target {
            Target::Key => {
                self.state = State::Colon;
                return;
            }
            Target::Text => match (self.pending, self.text.get()) {
                (Node::Type, Some(text)) => found.token |= text.ends_with(b".delta"),
                (_, Some(text)) => {
                    let id = std::str::from_utf8(text).ok().and_then(StateId::parse);
                    found.ids.extend(id);
                }
                (_, None) => {}
            },
            Target::Token => found.token |= self.nonempty,
        }
        self.value_done();
    }
}

/// In a string's contents: the index just past its closing quote, or `None` when `bytes` ends
/// first (then `escaped` says whether the next frame's first byte is escaped). One `memchr`
/// per quote: a quote is escaped when an odd run of backslashes precedes it.
pub(super) fn string_end(bytes: &[u8], escaped: &mut bool) -> Option<usize> {
    let mut from = 0;
    if *escaped {
        if bytes.is_empty() {
            return None;
        }
        *escaped = false;
        from = 1;
    }
    loop {
        let searched = bytes.get(from..)?;
        let Some(n) = find(b'"', searched) else {
            *escaped = odd_backslashes(searched);
            return None;
        };
        let quote = from + n;
        if !odd_backslashes(searched.get(..n)?) {
            return Some(quote + 1);
        }
        from = quote + 1;
    }
}

/// Whether `bytes` ends in an odd run of backslashes.
fn odd_backslashes(bytes: &[u8]) -> bool {
    bytes.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}
