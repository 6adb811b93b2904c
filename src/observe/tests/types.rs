//! `Format::from_content_type` and `StateId::parse`.

use http::HeaderValue;

use super::super::{Format, IdKind, StateId};

#[test]
fn formats_from_content_type() {
    let cases = [
        ("application/json", Format::Json),
        ("application/json; charset=utf-8", Format::Json),
        ("Application/JSON;charset=UTF-8", Format::Json),
        ("  application/json  ", Format::Json),
        ("application/problem+json", Format::Json),
        ("application/vnd.api+JSON; v=1", Format::Json),
        ("text/event-stream", Format::Sse),
        ("TEXT/Event-Stream; charset=utf-8", Format::Sse),
        ("text/plain", Format::Other),
        ("application/jsonl", Format::Other),
        ("application/x-ndjson", Format::Other),
        ("text/json+", Format::Other),
        ("application", Format::Other),
        ("json", Format::Other),
        ("", Format::Other),
        ("multipart/form-data; boundary=x", Format::Other),
    ];
    for (value, want) in cases {
        let header = HeaderValue::from_static(value);
        assert_eq!(Format::from_content_type(Some(&header)), want, "{value:?}");
    }
    assert_eq!(Format::from_content_type(None), Format::Other);
    let opaque = HeaderValue::from_bytes(b"application/json\xff").ok();
    assert_eq!(Format::from_content_type(opaque.as_ref()), Format::Other);
}

#[test]
fn state_ids_parse_by_prefix() {
    let longest = format!("resp_{}", "a".repeat(256));
    let too_long = format!("resp_{}", "a".repeat(257));
    let cases: &[(&str, Option<IdKind>)] = &[
        ("resp_abc123", Some(IdKind::Response)),
        ("resp_A-b_9", Some(IdKind::Response)),
        ("conv_68ad", Some(IdKind::Conversation)),
        (
            "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            Some(IdKind::ChatCompletion),
        ),
        ("chatcmpl-_", Some(IdKind::ChatCompletion)),
        (&longest, Some(IdKind::Response)),
        (&too_long, None),
        ("resp_", None),
        ("conv_", None),
        ("chatcmpl-", None),
        ("resp_a.b", None),
        ("resp_a b", None),
        ("resp_a/b", None),
        ("resp_é", None),
        ("Resp_abc", None),
        ("msg_abc", None),
        ("chatcmpl_abc", None),
        ("xresp_abc", None),
        ("", None),
    ];
    for (value, kind) in cases {
        let parsed = StateId::parse(value);
        assert_eq!(parsed.as_ref().map(|id| id.kind), *kind, "{value:?}");
        if let Some(id) = parsed {
            assert_eq!(id.as_str(), *value);
        }
    }
}
