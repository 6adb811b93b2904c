//! Operator rules: [`RuleSpec`] (typed, from the config), [`PathPattern`], and their compiled
//! form with head (method, path, headers) and body (capture) conditions.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::body::Facts;
use super::path::{self, Ambiguous};
use super::pointer::Pointer;
use super::trie::{Captures, Scalar};
use super::{Class, Marker, MarkerKind};

/// Typed operator rule, built by the config module from TOML `[[rules]]`.
///
/// All conditions must hold (AND); empty lists and `None` hold trivially.
#[derive(Clone, Debug)]
pub struct RuleSpec {
    pub name: String,
    pub class: Class,
    /// Empty = any method.
    pub methods: Vec<Method>,
    /// `None` = any path.
    pub path: Option<PathPattern>,
    pub header_present: Vec<HeaderName>,
    /// Any value of the header equals this one, byte for byte.
    pub header_equals: Vec<(HeaderName, HeaderValue)>,
    /// Present and not null.
    pub body_present: Vec<Pointer>,
    /// Missing or null.
    pub body_absent: Vec<Pointer>,
    /// The value is a JSON scalar (string/number/bool/null); numbers compare by value.
    pub body_equals: Vec<(Pointer, serde_json::Value)>,
}

/// Path pattern matched against the whole normalised request path (percent-decoded segments;
/// requests with ambiguous paths never reach the rules): literal segments, percent-decoded
/// and checked like request segments (empty segments in the pattern are ignored); `{name}`
/// matches exactly one segment; a final `*` segment matches zero or more remaining segments.
/// E.g. `/v1/custom/{id}/*`.
#[derive(Clone, Debug)]
pub struct PathPattern {
    text: Box<str>,
    segments: Box<[PatternSegment]>,
    /// Ends in `*`.
    rest: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PatternSegment {
    Literal(Box<str>),
    Placeholder,
}

/// Why a [`PathPattern`] could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("must start with '/'")]
    MissingSlash,
    #[error("must not contain '?' or '#': a pattern matches the path only")]
    QueryOrFragment,
    #[error("'*' is only allowed as the last segment")]
    WildcardNotLast,
    #[error("'*' must be a whole segment, e.g. \"/v1/files/*\"")]
    WildcardInSegment,
    #[error("'{{' must close with '}}' and enclose a name")]
    Placeholder,
    #[error("a '{{name}}' placeholder must be a whole segment")]
    PlaceholderInSegment,
    #[error("'.' and '..' segments never match: requests with them are refused")]
    DotSegment,
    #[error(
        "segment {0:?} never matches: requests with '\\', ';', control bytes, bad \
         percent-encoding or an encoded '/', '?' or '#' (outside an ARN) are refused"
    )]
    AmbiguousSegment(String),
}

impl PathPattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn matches(&self, segs: &[&str]) -> bool {
        let fits = if self.rest {
            segs.len() >= self.segments.len()
        } else {
            segs.len() == self.segments.len()
        };
        fits && self
            .segments
            .iter()
            .zip(segs)
            .all(|(want, got)| match want {
                PatternSegment::Literal(lit) => **lit == **got,
                PatternSegment::Placeholder => true,
            })
    }
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `arn_slot`: the previous segment is an ARN parent (see `path.rs`).
fn parse_segment(seg: &str, arn_slot: bool) -> Result<PatternSegment, PatternError> {
    if seg.contains('*') {
        return Err(PatternError::WildcardInSegment);
    }
    if !seg.contains(['{', '}']) {
        let literal = match path::check(seg, arn_slot) {
            Ok(decoded) => decoded.unwrap_or_else(|| seg.to_owned()),
            Err(Ambiguous::DotSegment) => return Err(PatternError::DotSegment),
            Err(_) => return Err(PatternError::AmbiguousSegment(seg.to_owned())),
        };
        return Ok(PatternSegment::Literal(literal.into()));
    }
    if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        if is_name(name) {
            return Ok(PatternSegment::Placeholder);
        }
    }
    // A well-formed `{name}` inside a longer segment gets the more helpful message.
    let embedded = seg
        .split_once('{')
        .and_then(|(_, after)| after.split_once('}'));
    match embedded {
        Some((name, _)) if is_name(name) => Err(PatternError::PlaceholderInSegment),
        _ => Err(PatternError::Placeholder),
    }
}

impl FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<PathPattern, PatternError> {
        if !text.starts_with('/') {
            return Err(PatternError::MissingSlash);
        }
        if text.contains(['?', '#']) {
            return Err(PatternError::QueryOrFragment);
        }
        let raw: Vec<&str> = text.split('/').filter(|s| !s.is_empty()).collect();
        let mut segments = Vec::with_capacity(raw.len());
        let mut rest = false;
        for (i, seg) in raw.iter().enumerate() {
            if *seg == "*" {
                if i + 1 != raw.len() {
                    return Err(PatternError::WildcardNotLast);
                }
                rest = true;
            } else {
                let arn_slot = matches!(
                    segments.last(),
                    Some(PatternSegment::Literal(lit)) if path::is_arn_parent(lit)
                );
                segments.push(parse_segment(seg, arn_slot)?);
            }
        }
        Ok(PathPattern {
            text: text.into(),
            segments: segments.into(),
            rest,
        })
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A [`RuleSpec`] with its body conditions turned into capture slots and tests.
#[derive(Debug)]
pub(crate) struct OperatorRule {
    pub(crate) name: Arc<str>,
    pub(crate) class: Class,
    methods: Vec<Method>,
    path: Option<PathPattern>,
    header_present: Vec<HeaderName>,
    header_equals: Vec<(HeaderName, HeaderValue)>,
    body_present: Vec<usize>,
    body_absent: Vec<usize>,
    body_equals: Vec<usize>,
    /// The first body, header or path condition (in that order), or the default marker.
    pub(crate) marker: Marker,
}

impl OperatorRule {
    pub(crate) fn compile(spec: RuleSpec, captures: &mut Captures, none: &Marker) -> OperatorRule {
        let body_present = spec
            .body_present
            .iter()
            .map(|p| captures.slot(p, true))
            .collect();
        let body_absent = spec
            .body_absent
            .iter()
            .map(|p| captures.slot(p, true))
            .collect();
        let body_equals = spec
            .body_equals
            .iter()
            .map(|(p, v)| captures.test(p, Scalar::from_json(v), true))
            .collect();
        let marker = |kind, text: &str| Marker {
            kind,
            text: Arc::from(text),
        };
        let marker = None
            .or_else(|| {
                spec.body_present
                    .first()
                    .map(|p| marker(MarkerKind::Body, p.as_str()))
            })
            .or_else(|| {
                spec.body_absent
                    .first()
                    .map(|p| marker(MarkerKind::Body, p.as_str()))
            })
            .or_else(|| {
                spec.body_equals
                    .first()
                    .map(|(p, _)| marker(MarkerKind::Body, p.as_str()))
            })
            .or_else(|| {
                spec.header_present
                    .first()
                    .map(|h| marker(MarkerKind::Header, h.as_str()))
            })
            .or_else(|| {
                spec.header_equals
                    .first()
                    .map(|(h, _)| marker(MarkerKind::Header, h.as_str()))
            })
            .or_else(|| {
                spec.path
                    .as_ref()
                    .map(|p| marker(MarkerKind::Path, p.as_str()))
            })
            .unwrap_or_else(|| none.clone());
        OperatorRule {
            name: Arc::from(spec.name),
            class: spec.class,
            methods: spec.methods,
            path: spec.path,
            header_present: spec.header_present,
            header_equals: spec.header_equals,
            body_present,
            body_absent,
            body_equals,
            marker,
        }
    }

    pub(crate) fn has_body_conditions(&self) -> bool {
        !(self.body_present.is_empty()
            && self.body_absent.is_empty()
            && self.body_equals.is_empty())
    }

    /// Method, path and header conditions.
    pub(crate) fn head_matches(&self, method: &Method, segs: &[&str], headers: &HeaderMap) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.path.as_ref().is_none_or(|p| p.matches(segs))
            && self.header_present.iter().all(|h| headers.contains_key(h))
            && self.header_equals.iter().all(|(h, want)| {
                headers
                    .get_all(h)
                    .iter()
                    .any(|got| got.as_bytes() == want.as_bytes())
            })
    }

    /// Body conditions (a wildcard pointer holds if any element it reaches does).
    pub(crate) fn body_matches(&self, facts: &Facts) -> bool {
        self.body_present.iter().all(|&s| facts.present(s))
            && self.body_absent.iter().all(|&s| !facts.present(s))
            && self.body_equals.iter().all(|&t| facts.matched(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> PathPattern {
        s.parse().unwrap()
    }

    fn segs(path: &str) -> Vec<&str> {
        path.split('/').filter(|s| !s.is_empty()).collect()
    }

    #[test]
    fn matches_literals_placeholders_and_rest() {
        let p = pattern("/v1/custom/{id}/*");
        assert_eq!(p.to_string(), "/v1/custom/{id}/*");
        assert!(p.matches(&segs("/v1/custom/abc")));
        assert!(p.matches(&segs("/v1/custom/abc/x/y/z")));
        assert!(!p.matches(&segs("/v1/custom")));
        assert!(!p.matches(&segs("/v1/other/abc")));
        let p = pattern("/v1/custom/{id}");
        assert!(p.matches(&segs("/v1/custom/abc")));
        assert!(!p.matches(&segs("/v1/custom/abc/x")));
        let p = pattern("/*");
        assert!(p.matches(&[]));
        assert!(p.matches(&segs("/anything/at/all")));
        let p = pattern("/");
        assert!(p.matches(&[]));
        assert!(!p.matches(&segs("/x")));
        // Literals are percent-decoded like request segments; empty segments collapse.
        let p = pattern("//runtimes/arn%3Aaws/{op}/");
        assert!(p.matches(&["runtimes", "arn:aws", "invocations"]));
    }

    #[test]
    fn error_texts() {
        let err = |s: &str| s.parse::<PathPattern>().unwrap_err().to_string();
        assert_eq!(err(""), "must start with '/'");
        assert_eq!(err("v1/files"), "must start with '/'");
        assert_eq!(
            err("/v1/*/files"),
            "'*' is only allowed as the last segment"
        );
        assert_eq!(
            err("/v1/files*"),
            "'*' must be a whole segment, e.g. \"/v1/files/*\""
        );
        assert_eq!(
            err("/v1/**"),
            "'*' must be a whole segment, e.g. \"/v1/files/*\""
        );
        assert_eq!(err("/v1/{id"), "'{' must close with '}' and enclose a name");
        assert_eq!(err("/v1/{}"), "'{' must close with '}' and enclose a name");
        assert_eq!(err("/v1/id}"), "'{' must close with '}' and enclose a name");
        assert_eq!(
            err("/v1/{a b}"),
            "'{' must close with '}' and enclose a name"
        );
        assert_eq!(
            err("/v1/{id}.json"),
            "a '{name}' placeholder must be a whole segment"
        );
        assert_eq!(
            err("/v1/x{id}"),
            "a '{name}' placeholder must be a whole segment"
        );
        assert_eq!(
            err("/v1/files?purpose=x"),
            "must not contain '?' or '#': a pattern matches the path only"
        );
        assert_eq!(
            err("/v1/../files"),
            "'.' and '..' segments never match: requests with them are refused"
        );
        assert_eq!(
            err("/v1/%2e"),
            "'.' and '..' segments never match: requests with them are refused"
        );
    }
}
