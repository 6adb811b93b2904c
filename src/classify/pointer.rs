//! JSON Pointers (RFC 6901, plus `*` for "every array element") naming places in a request body.

use std::fmt;
use std::str::FromStr;

/// A JSON Pointer (RFC 6901, with `~0` / `~1` escapes) into the request body, extended with
/// `*` as a whole segment meaning "every element of an array".
///
/// `""` (the whole document) is not allowed: rules test members of the top-level object.
/// A segment of digits (`/input/0/type`) selects that array index, or that object key, as in
/// RFC 6901. A `*` segment never matches an object member: a non-array there matches nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer {
    text: Box<str>,
    segments: Box<[Segment]>,
}

/// One step of a [`Pointer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    /// An object key (unescaped); when all digits, also an array index.
    Key(Box<str>),
    /// `*`: every element of an array.
    Each,
}

impl Segment {
    /// The array index this segment selects, RFC 6901 style: digits without a leading zero.
    pub(crate) fn index(key: &str) -> Option<usize> {
        let canonical = key == "0" || (!key.starts_with('0') && !key.is_empty());
        if canonical && key.bytes().all(|b| b.is_ascii_digit()) {
            key.parse().ok()
        } else {
            None
        }
    }
}

/// Why a [`Pointer`] could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    #[error("must not be empty: name a member of the body, e.g. \"/store\"")]
    Empty,
    #[error("must start with '/'")]
    MissingSlash,
    /// `~` must be followed by `0` (for `~`) or `1` (for `/`).
    #[error("invalid escape '{0}'")]
    InvalidEscape(String),
}

impl Pointer {
    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Pointer {
    type Err = PointerError;

    fn from_str(text: &str) -> Result<Pointer, PointerError> {
        if text.is_empty() {
            return Err(PointerError::Empty);
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PointerError::MissingSlash);
        };
        let segments = rest
            .split('/')
            .map(|raw| {
                if raw == "*" {
                    Ok(Segment::Each)
                } else {
                    unescape(raw).map(Segment::Key)
                }
            })
            .collect::<Result<Box<[Segment]>, PointerError>>()?;
        Ok(Pointer {
            text: text.into(),
            segments,
        })
    }
}

fn unescape(raw: &str) -> Result<Box<str>, PointerError> {
    if !raw.contains('~') {
        return Ok(raw.into());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            Some(other) => return Err(PointerError::InvalidEscape(format!("~{other}"))),
            None => return Err(PointerError::InvalidEscape("~".to_owned())),
        }
    }
    Ok(out.into())
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Segment {
        Segment::Key(k.into())
    }

    #[test]
    fn parses_keys_wildcards_and_escapes() {
        let p: Pointer = "/input/*/content/0/file_id".parse().unwrap();
        assert_eq!(
            p.segments(),
            &[
                key("input"),
                Segment::Each,
                key("content"),
                key("0"),
                key("file_id")
            ]
        );
        assert_eq!(p.to_string(), "/input/*/content/0/file_id");
        let p: Pointer = "/a~1b/c~0d/~01".parse().unwrap();
        assert_eq!(p.segments(), &[key("a/b"), key("c~d"), key("~1")]);
        assert_eq!(p.as_str(), "/a~1b/c~0d/~01");
        let p: Pointer = "/".parse().unwrap();
        assert_eq!(p.segments(), &[key("")]);
        let p: Pointer = "/metadata//x".parse().unwrap();
        assert_eq!(p.segments(), &[key("metadata"), key(""), key("x")]);
    }

    #[test]
    fn error_texts() {
        let err = |s: &str| s.parse::<Pointer>().unwrap_err().to_string();
        assert_eq!(
            err(""),
            "must not be empty: name a member of the body, e.g. \"/store\""
        );
        assert_eq!(err("store"), "must start with '/'");
        assert_eq!(err("*/x"), "must start with '/'");
        assert_eq!(err("/a~2b"), "invalid escape '~2'");
        assert_eq!(err("/a~"), "invalid escape '~'");
        assert_eq!(err("/a/~é"), "invalid escape '~é'");
    }

    #[test]
    fn array_indices_follow_rfc6901() {
        assert_eq!(Segment::index("0"), Some(0));
        assert_eq!(Segment::index("12"), Some(12));
        assert_eq!(Segment::index("012"), None);
        assert_eq!(Segment::index(""), None);
        assert_eq!(Segment::index("-"), None);
        assert_eq!(Segment::index("1a"), None);
        assert_eq!(Segment::index("+1"), None);
        assert_eq!(Segment::index("99999999999999999999999"), None);
    }
}
