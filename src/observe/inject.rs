//! Request side: ask a streaming chat completion for its token usage
//! (`stream_options.include_usage = true`), changing nothing else.

use bytes::Bytes;

use super::members::{has_duplicate_keys, members, offset_in, Member};

/// The body with `stream_options.include_usage = true` added, for a JSON object body whose
/// top-level `stream` is `true`: a whole `"stream_options":{"include_usage":true}` member after
/// the last member when there is no `stream_options`, or `"include_usage":true` added to a
/// `stream_options` object without it. Every other byte is kept as it was.
///
/// `None` (leave the body alone) when `stream` is not `true`, `include_usage` is already there
/// (whatever its value: the client chose), `stream_options` is not an object, the body is not
/// one JSON object, or a key repeats (top level or in `stream_options`).
pub fn inject_include_usage(body: &[u8]) -> Option<Bytes> {
    let text = std::str::from_utf8(body).ok()?;
    let top = members(text)?;
    if has_duplicate_keys(&top) {
        return None;
    }
    let find = |key: &str| top.iter().find(|member| member.key == key);
    if find("stream")?.value.get() != "true" {
        return None;
    }
    let (at, insert) = match find("stream_options") {
        None => (
            end_of_last(text, &top)?,
            r#","stream_options":{"include_usage":true}"#,
        ),
        Some(options) => {
            let raw = options.value.get();
            let fields = members(raw)?;
            if has_duplicate_keys(&fields) || fields.iter().any(|f| f.key == "include_usage") {
                return None;
            }
            match end_of_last(text, &fields) {
                Some(end) => (end, r#","include_usage":true"#),
                // An empty object: right after its `{`.
                None => (offset_in(text, raw)? + 1, r#""include_usage":true"#),
            }
        }
    };
    let (head, tail) = (body.get(..at)?, body.get(at..)?);
    let mut out = Vec::with_capacity(body.len() + insert.len());
    out.extend_from_slice(head);
    out.extend_from_slice(insert.as_bytes());
    out.extend_from_slice(tail);
    Some(Bytes::from(out))
}

/// Where the last member's value ends in `text` (`None` for no members).
fn end_of_last(text: &str, members: &[Member<'_>]) -> Option<usize> {
    let last = members.last()?.value.get();
    Some(offset_in(text, last)? + last.len())
}
