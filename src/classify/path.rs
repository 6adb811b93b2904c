//! Request path normalisation: split into segments, percent-decode, and refuse every path
//! whose meaning could depend on the parser that reads it.
//!
//! The proxy forwards the path exactly as the client sent it, so the segments the classifier
//! matches must be the segments every upstream sees. [`split`] refuses ([`Ambiguous`]):
//!
//! - an empty segment (`//v1/files`, `/v1//files`); one trailing `/` is allowed and ignored;
//! - a `.` or `..` segment, raw or percent-encoded (`%2e`, `.%2E`);
//! - a `\`, raw or encoded (`%5C`): some servers treat it as a separator;
//! - an encoded `/` (`%2F`), except in an ARN slot (below);
//! - an encoded `?` or `#` (`%3F`, `%23`): a decode-then-reparse would cut the path there;
//! - a `;` (path parameters, which some servers strip), raw or `%3B`;
//! - invalid percent-encoding (`%zz`, a truncated `%4`) or escapes that are not UTF-8;
//! - a NUL or other ASCII control byte, raw or decoded.
//!
//! ARN slots: AWS clients URL-encode an ARN into one segment, `/` included: the segment after
//! `runtimes` (AgentCore: `/runtimes/arn%3A…%3Aruntime%2Fmy_agent/invocations`), `model` and
//! `async-invoke` (Bedrock model and invocation ARNs). There a decoded `/` is allowed when
//! no component between slashes is empty, `.` or `..`. Whether the segment really is the
//! route's ARN slot, and whether splitting it at its slashes leads to the same kind of
//! endpoint, is the engine's check ([`SplitPath::arn`], [`SplitPath::spread_segments`]).
//!
//! A path with no `%` is checked by a quick scan of its bytes and never allocates; only
//! segments with escapes are decoded (the only allocation here). Segments are handed to the
//! route table as a `&[&str]` for slice patterns; up to [`INLINE`] of them live on the stack.

/// Segments held on the stack before spilling to the heap.
pub(crate) const INLINE: usize = 16;

/// Segments whose next segment is an ARN slot (may hold an encoded `/`).
const ARN_PARENTS: [&str; 3] = ["runtimes", "model", "async-invoke"];

/// Why a path is refused. The engine reports all of them as `AmbiguousPath`; the variant
/// only serves tests and debugging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ambiguous {
    /// `//`, or an empty component inside an ARN.
    EmptySegment,
    /// `.` or `..`, raw or encoded (also as a component of an ARN).
    DotSegment,
    /// `\`, raw or encoded.
    Backslash,
    /// `%2F` outside an ARN slot, `%3F`, `%23`, or a second encoded ARN.
    EncodedDelimiter,
    /// `;`, raw or encoded.
    Semicolon,
    /// `%` not followed by two hex digits, or escapes that do not decode to UTF-8.
    BadEncoding,
    /// NUL or another ASCII control byte, raw or decoded.
    ControlByte,
}

/// A split request path; owns the decoded copies of percent-encoded segments.
#[derive(Debug)]
pub(crate) struct SplitPath<'a> {
    /// The path without query, fragment, leading `/` and trailing `/`; `None`: no segments.
    body: Option<&'a str>,
    /// Decoded segments, in order, one per raw segment containing `%`.
    decoded: Vec<String>,
    /// Index of the segment whose decoded form contains `/` (an encoded ARN).
    arn: Option<usize>,
}

/// The segments of a [`SplitPath`], borrowed.
pub(crate) struct Segments<'s> {
    inline: [&'s str; INLINE],
    len: usize,
    spill: Vec<&'s str>,
}

impl<'s> Segments<'s> {
    fn new() -> Segments<'s> {
        Segments {
            inline: [""; INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }

    pub(crate) fn as_slice(&self) -> &[&'s str] {
        if self.spill.is_empty() {
            self.inline.get(..self.len).unwrap_or(&[])
        } else {
            &self.spill
        }
    }

    fn push(&mut self, seg: &'s str) {
        if self.spill.is_empty() {
            if let Some(slot) = self.inline.get_mut(self.len) {
                *slot = seg;
                self.len += 1;
                return;
            }
            self.spill.extend_from_slice(&self.inline);
        }
        self.spill.push(seg);
    }
}

/// The part of `path` that holds segments: no query or fragment, no leading `/`, no single
/// trailing `/`. `None` when there are no segments (`""`, `/`, `/?x`).
fn segment_body(path: &str) -> Option<&str> {
    let end = path
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    let path = path.get(..end).unwrap_or(path);
    let path = path.strip_prefix('/').unwrap_or(path);
    if path.is_empty() {
        return None;
    }
    // `//` leaves "" here: one empty segment, refused by `split`.
    Some(path.strip_suffix('/').unwrap_or(path))
}

fn raw_segments(body: Option<&str>) -> impl Iterator<Item = &str> {
    body.into_iter().flat_map(|b| b.split('/'))
}

/// The next segment is an ARN slot.
pub(crate) fn is_arn_parent(seg: &str) -> bool {
    ARN_PARENTS.contains(&seg)
}

/// `\`, `;`, NUL or another ASCII control byte: refused wherever they appear in a segment.
fn is_refused_byte(b: u8) -> bool {
    b == b'\\' || b == b';' || b.is_ascii_control()
}

/// What a whole-path scan found; one branch-free pass, so ordinary paths cost little.
struct Scan {
    escaped: bool,
    dot: bool,
    refused: bool,
    empty_segment: bool,
}

fn scan(body: &str) -> Scan {
    let bytes = body.as_bytes();
    let (mut escaped, mut dot, mut refused) = (false, false, false);
    for &b in bytes {
        escaped |= b == b'%';
        dot |= b == b'.';
        refused |= is_refused_byte(b);
    }
    Scan {
        escaped,
        dot,
        refused,
        empty_segment: body.is_empty()
            || body.starts_with('/')
            || body.ends_with('/')
            || body.contains("//"),
    }
}

/// Splits `path` (a query or fragment is ignored), decoding percent-encoded segments, or
/// refuses it (see the module doc).
pub(crate) fn split(path: &str) -> Result<SplitPath<'_>, Ambiguous> {
    let body = segment_body(path);
    let Some(text) = body else {
        return Ok(SplitPath {
            body,
            decoded: Vec::new(),
            arn: None,
        });
    };
    let found = scan(text);
    if found.empty_segment {
        return Err(Ambiguous::EmptySegment);
    }
    let mut decoded = Vec::new();
    let mut arn = None;
    if found.refused || found.escaped || found.dot {
        let mut arn_slot = false;
        for (i, raw) in text.split('/').enumerate() {
            let seg = match check_segment(raw, arn_slot, found.refused)? {
                None => raw,
                Some(seg) => {
                    if seg.contains('/') {
                        if arn.is_some() {
                            return Err(Ambiguous::EncodedDelimiter);
                        }
                        arn = Some(i);
                    }
                    decoded.push(seg);
                    decoded.last().map_or(raw, String::as_str)
                }
            };
            arn_slot = found.escaped && is_arn_parent(seg);
        }
    }
    Ok(SplitPath { body, decoded, arn })
}

/// Checks one raw segment; `Some(decoded)` when it has escapes. `arn_slot`: the previous
/// segment is one of [`ARN_PARENTS`], so an encoded `/` is allowed.
pub(crate) fn check(raw: &str, arn_slot: bool) -> Result<Option<String>, Ambiguous> {
    check_segment(raw, arn_slot, true)
}

/// [`check`]; `refused_bytes: false` when a scan already found no refused raw byte.
fn check_segment(
    raw: &str,
    arn_slot: bool,
    refused_bytes: bool,
) -> Result<Option<String>, Ambiguous> {
    if raw.is_empty() {
        return Err(Ambiguous::EmptySegment);
    }
    if refused_bytes {
        if let Some(&b) = raw.as_bytes().iter().find(|b| is_refused_byte(**b)) {
            return Err(refusal(b));
        }
    }
    if !raw.contains('%') {
        return if raw == "." || raw == ".." {
            Err(Ambiguous::DotSegment)
        } else {
            Ok(None)
        };
    }
    let (seg, slash) = decode(raw, arn_slot)?;
    if slash {
        for part in seg.split('/') {
            match part {
                "" => return Err(Ambiguous::EmptySegment),
                "." | ".." => return Err(Ambiguous::DotSegment),
                _ => {}
            }
        }
    } else if seg == "." || seg == ".." {
        return Err(Ambiguous::DotSegment);
    }
    Ok(Some(seg))
}

/// Why a byte (raw, or produced by an escape) is refused.
fn refusal(b: u8) -> Ambiguous {
    match b {
        b'\\' => Ambiguous::Backslash,
        b';' => Ambiguous::Semicolon,
        b'/' | b'?' | b'#' => Ambiguous::EncodedDelimiter,
        _ => Ambiguous::ControlByte,
    }
}

impl SplitPath<'_> {
    /// The segments as the classifier reads them (an encoded ARN is one segment).
    pub(crate) fn segments(&self) -> Segments<'_> {
        self.collect(false)
    }

    /// Index of the segment holding an encoded ARN (a decoded `/`), if any.
    pub(crate) fn arn(&self) -> Option<usize> {
        self.arn
    }

    /// The segments as an upstream that decodes `%2F` into a separator would read them: the
    /// encoded ARN spread over several segments.
    pub(crate) fn spread_segments(&self) -> Segments<'_> {
        self.collect(true)
    }

    fn collect(&self, spread: bool) -> Segments<'_> {
        let mut out = Segments::new();
        if self.decoded.is_empty() {
            raw_segments(self.body).for_each(|raw| out.push(raw));
            return out;
        }
        let mut decoded = self.decoded.iter();
        for raw in raw_segments(self.body) {
            if !raw.contains('%') {
                out.push(raw);
                continue;
            }
            let seg = decoded.next().map_or(raw, String::as_str);
            if spread && seg.contains('/') {
                seg.split('/').for_each(|part| out.push(part));
            } else {
                out.push(seg);
            }
        }
        out
    }
}

/// Decodes `%XX` escapes, refusing malformed ones, escapes that produce a refused byte (or a
/// `/` outside an ARN slot), and results that are not UTF-8. Returns whether a `/` was
/// decoded. Raw bytes were checked by the caller; only escaped ones are checked here.
fn decode(raw: &str, arn_slot: bool) -> Result<(String, bool), Ambiguous> {
    let mut out = Vec::with_capacity(raw.len());
    let mut slash = false;
    let mut rest = raw.as_bytes();
    while let Some(at) = rest.iter().position(|b| *b == b'%') {
        out.extend_from_slice(rest.get(..at).unwrap_or_default());
        let hi = rest.get(at + 1).copied().and_then(hex_val);
        let lo = rest.get(at + 2).copied().and_then(hex_val);
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(Ambiguous::BadEncoding);
        };
        let b = (hi << 4) | lo;
        match b {
            b'/' if arn_slot => slash = true,
            b'/' | b'?' | b'#' => return Err(refusal(b)),
            b if is_refused_byte(b) => return Err(refusal(b)),
            _ => {}
        }
        out.push(b);
        rest = rest.get(at + 3..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    let seg = String::from_utf8(out).map_err(|_| Ambiguous::BadEncoding)?;
    Ok((seg, slash))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        let split = split(path).unwrap();
        let segs = split.segments();
        segs.as_slice().iter().map(|s| s.to_string()).collect()
    }

    fn spread(path: &str) -> Vec<String> {
        let split = split(path).unwrap();
        let segs = split.spread_segments();
        segs.as_slice().iter().map(|s| s.to_string()).collect()
    }

    const ARN: &str =
        "arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fmy_agent-abc";

    #[test]
    fn splits_and_drops_query_and_one_trailing_slash() {
        assert_eq!(segs("/v1/responses"), ["v1", "responses"]);
        assert_eq!(segs("/v1/files/"), ["v1", "files"]);
        assert_eq!(segs("v1/files"), ["v1", "files"]);
        assert_eq!(
            segs("/openai/responses?api-version=2025-04-01-preview"),
            ["openai", "responses"]
        );
        assert_eq!(segs("/v1/files#frag"), ["v1", "files"]);
        assert_eq!(segs("/v1/files/?a=//b;c"), ["v1", "files"]);
        assert_eq!(segs("*"), ["*"]);
        for none in ["/", "", "?a=/b", "/?a", "#x"] {
            assert!(segs(none).is_empty(), "{none:?}");
        }
    }

    #[test]
    fn decodes_only_encoded_segments() {
        let path = format!("/runtimes/{ARN}/invocations");
        let arn = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/my_agent-abc";
        assert_eq!(segs(&path), ["runtimes", arn, "invocations"]);
        assert_eq!(
            spread(&path),
            [
                "runtimes",
                "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime",
                "my_agent-abc",
                "invocations"
            ]
        );
        assert_eq!(split(&path).unwrap().arn(), Some(1));
        assert_eq!(
            segs("/v1/%72esponses/%41b%20c"),
            ["v1", "responses", "Ab c"]
        );
        assert_eq!(spread("/v1/%72esponses"), ["v1", "responses"]);
        assert_eq!(split("/v1/%72esponses").unwrap().arn(), None);
        assert_eq!(segs("/v1/caf%C3%A9/caf\u{e9}"), ["v1", "café", "café"]);
        // The slot follows a decoded parent too.
        assert_eq!(split("/%72untimes/a%2Fb").unwrap().arn(), Some(1));
        assert_eq!(split("/model/a%2fb/invoke").unwrap().arn(), Some(1));
        assert_eq!(split("/async-invoke/a%2Fb").unwrap().arn(), Some(1));
    }

    #[test]
    fn refusals_name_their_reason() {
        use Ambiguous as A;
        for (path, want) in [
            ("//v1/responses", A::EmptySegment),
            ("/v1//files", A::EmptySegment),
            ("/v1/files//", A::EmptySegment),
            ("//", A::EmptySegment),
            ("///", A::EmptySegment),
            ("/v1/./responses", A::DotSegment),
            ("/v1/../v1/responses", A::DotSegment),
            ("/v1/responses/..", A::DotSegment),
            ("/v1/responses/../", A::DotSegment),
            ("/v1/%2e/responses", A::DotSegment),
            ("/v1/%2E%2e/responses", A::DotSegment),
            ("/v1/.%2E/x", A::DotSegment),
            ("/v1/%2e./x", A::DotSegment),
            ("./v1", A::DotSegment),
            ("/v1\\files", A::Backslash),
            ("/v1/files%5cx", A::Backslash),
            ("/v1/files%5Cx", A::Backslash),
            ("/runtimes/a%5Cb/invocations", A::Backslash),
            ("/v1/files%2Ffile-abc", A::EncodedDelimiter),
            ("/v1/files%2ffile-abc", A::EncodedDelimiter),
            ("/v1/responses/..%2Fembeddings", A::EncodedDelimiter),
            ("/v1/responses/%2e%2e%2fembeddings", A::EncodedDelimiter),
            ("/v1/responses%3Fx", A::EncodedDelimiter),
            ("/v1/responses%23x", A::EncodedDelimiter),
            ("/runtimes/a%2Fb/c%2Fd/invocations", A::EncodedDelimiter),
            ("/runtimes/x/y%2Fz", A::EncodedDelimiter),
            ("/v1/files;x=1", A::Semicolon),
            ("/v1/files/file-1;", A::Semicolon),
            ("/v1/files%3Bx=1", A::Semicolon),
            ("/v1/files%3bx", A::Semicolon),
            ("/v1/%zz", A::BadEncoding),
            ("/v1/files/%4", A::BadEncoding),
            ("/v1/files/%", A::BadEncoding),
            ("/v1/files/%%41", A::BadEncoding),
            ("/v1/%ff", A::BadEncoding),
            ("/v1/%C0%AE%C0%AE/x", A::BadEncoding),
            ("/v1/files/a%00", A::ControlByte),
            ("/v1/files/a%0A", A::ControlByte),
            ("/v1/files/a%7F", A::ControlByte),
            ("/v1/files/a\u{0}b", A::ControlByte),
            ("/v1/files/a\tb", A::ControlByte),
            // Inside an ARN slot: components are checked too.
            ("/runtimes/a%2F..%2Fb/invocations", A::DotSegment),
            ("/runtimes/..%2Fembeddings/invocations", A::DotSegment),
            ("/runtimes/a%2F.%2Fb", A::DotSegment),
            ("/runtimes/a%2F%2Fb/invocations", A::EmptySegment),
            ("/runtimes/%2Fa/invocations", A::EmptySegment),
            ("/runtimes/a%2F/invocations", A::EmptySegment),
            ("/runtimes/a%2Fb%3Bc/invocations", A::Semicolon),
            ("/runtimes/%2e%2e", A::DotSegment),
        ] {
            assert_eq!(split(path).map(|_| ()), Err(want), "{path}");
        }
    }

    #[test]
    fn near_misses_are_accepted() {
        for path in [
            "/v1/.../x",
            "/v1/.well-known",
            "/v1/a.b",
            "/v1/%2e%2e%2e",
            "/v1/files/",
            "/v1/files/file-abc%20x",
            "/v1/%41%42",
            "/v1/files/a%25b",
            "/v1/files?x=a;b\\c%zz",
            "/runtimes/arn%3Aaws%2F.x%2Fy..",
        ] {
            assert!(split(path).is_ok(), "{path}");
        }
    }

    #[test]
    fn ordinary_paths_do_not_allocate() {
        let split = split("/v1/responses/resp_1/input_items?limit=10").unwrap();
        assert_eq!(split.decoded.capacity(), 0);
        assert_eq!(split.segments().spill.capacity(), 0);
    }

    #[test]
    fn long_paths_spill_without_loss() {
        let path: String = (0..40).map(|i| format!("/s{i}")).collect();
        let got = segs(&path);
        assert_eq!(got.len(), 40);
        assert_eq!(got[0], "s0");
        assert_eq!(got[16], "s16");
        assert_eq!(got[39], "s39");
        let exactly: String = (0..INLINE).map(|i| format!("/s{i}")).collect();
        assert_eq!(segs(&exactly).len(), INLINE);
        // Spreading an ARN across the inline boundary.
        let deep: String = (0..15).map(|i| format!("/s{i}")).collect();
        let got = spread(&format!("{deep}/runtimes/a%2Fb%2Fc/invocations"));
        assert_eq!(got.len(), 20);
        assert_eq!(got[16..], ["a", "b", "c", "invocations"]);
    }
}
