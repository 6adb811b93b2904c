//! Request path normalisation: split into segments, percent-decode, refuse `.`/`..`.
//!
//! Empty segments are dropped (`//` and a trailing `/` collapse). A segment is
//! percent-decoded only when it contains `%` (the only allocation here). Segments are handed
//! to the route table as a `&[&str]` for slice patterns; up to [`INLINE`] of them live on
//! the stack.

/// Segments held on the stack before spilling to the heap.
pub(crate) const INLINE: usize = 16;

/// The path has a `.` or `..` segment (raw or percent-encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ambiguous;

/// A split request path; owns the decoded copies of percent-encoded segments.
#[derive(Debug)]
pub(crate) struct SplitPath<'a> {
    path: &'a str,
    decoded: Vec<String>,
}

/// The segments of a [`SplitPath`], borrowed.
pub(crate) struct Segments<'s> {
    inline: [&'s str; INLINE],
    len: usize,
    spill: Vec<&'s str>,
}

impl<'s> Segments<'s> {
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

fn raw_segments(path: &str) -> impl Iterator<Item = &str> {
    let path = match path.find(['?', '#']) {
        Some(end) => path.get(..end).unwrap_or(path),
        None => path,
    };
    path.split('/').filter(|s| !s.is_empty())
}

/// Splits `path` (a query or fragment is ignored), decoding percent-encoded segments.
pub(crate) fn split(path: &str) -> Result<SplitPath<'_>, Ambiguous> {
    let mut decoded = Vec::new();
    for raw in raw_segments(path) {
        if raw == "." || raw == ".." {
            return Err(Ambiguous);
        }
        if raw.contains('%') {
            let seg = percent_decode(raw);
            if seg == "." || seg == ".." {
                return Err(Ambiguous);
            }
            decoded.push(seg);
        }
    }
    Ok(SplitPath { path, decoded })
}

impl SplitPath<'_> {
    pub(crate) fn segments(&self) -> Segments<'_> {
        let mut out = Segments {
            inline: [""; INLINE],
            len: 0,
            spill: Vec::new(),
        };
        let mut decoded = self.decoded.iter();
        for raw in raw_segments(self.path) {
            if raw.contains('%') {
                out.push(decoded.next().map_or(raw, String::as_str));
            } else {
                out.push(raw);
            }
        }
        out
    }
}

/// Decodes `%XX` escapes. A segment with a malformed escape, or whose bytes do not decode to
/// UTF-8, is kept as written (it then matches no literal, only placeholders).
pub(crate) fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = (
                bytes.get(i + 1).and_then(|h| hex_val(*h)),
                bytes.get(i + 2).and_then(|h| hex_val(*h)),
            );
            match hex {
                (Some(hi), Some(lo)) => {
                    out.push((hi << 4) | lo);
                    i += 3;
                }
                _ => return raw.to_owned(),
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| raw.to_owned())
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

    #[test]
    fn collapses_empty_segments_and_drops_query() {
        assert_eq!(segs("/v1/responses"), ["v1", "responses"]);
        assert_eq!(segs("//v1///responses/"), ["v1", "responses"]);
        assert_eq!(
            segs("/openai/responses?api-version=2025-04-01-preview"),
            ["openai", "responses"]
        );
        assert_eq!(segs("/v1/files#frag"), ["v1", "files"]);
        assert!(segs("/").is_empty());
        assert!(segs("").is_empty());
        assert!(segs("?a=/b").is_empty());
    }

    #[test]
    fn decodes_only_encoded_segments() {
        let path = "/runtimes/arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fmy_agent-abc/invocations";
        assert_eq!(
            segs(path),
            [
                "runtimes",
                "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/my_agent-abc",
                "invocations"
            ]
        );
        assert_eq!(
            segs("/v1/%72esponses/a%2fb/%zz/%"),
            ["v1", "responses", "a/b", "%zz", "%"]
        );
        // Invalid UTF-8 after decoding stays as written.
        assert_eq!(segs("/v1/%ff"), ["v1", "%ff"]);
        assert_eq!(segs("/v1/caf%C3%A9"), ["v1", "café"]);
    }

    #[test]
    fn refuses_dot_segments() {
        for path in [
            "/v1/./responses",
            "/v1/../v1/responses",
            "/v1/responses/..",
            "/v1/%2e/responses",
            "/v1/%2E%2e/responses",
            "/v1/.%2E/x",
            "/v1/%2e./x",
            "./v1",
        ] {
            assert_eq!(split(path).unwrap_err(), Ambiguous, "{path}");
        }
        for path in ["/v1/.../x", "/v1/.well-known", "/v1/a.b", "/v1/%2e%2e%2e"] {
            assert!(split(path).is_ok(), "{path}");
        }
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
    }
}
