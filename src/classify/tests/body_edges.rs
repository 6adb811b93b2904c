//! Body scanner edge cases: escapes, nesting, nulls, duplicates, invalid JSON, size, encoding.

use super::super::{Class, Inspection, UnclassifiableReason as Why};
use super::{classifier, headers, method, run};

/// A Responses body of about `size` bytes: `{<head>"model":…,"input":[messages…]<tail>}`.
pub(super) fn responses_body(head: &str, tail: &str, size: usize) -> String {
    let text =
        "The quick brown fox jumps over the lazy dog. \\\"Quoted\\\"\\n\\tand \\u00e9 escapes. ";
    let mut out = format!(r#"{{{head}"model":"gpt-5","input":["#);
    let mut first = true;
    while out.len() + tail.len() + 2 < size {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(r#"{"role":"user","content":[{"type":"input_text","text":""#);
        for _ in 0..16 {
            out.push_str(text);
        }
        out.push_str(r#""}]},{"role":"assistant","content":""#);
        out.push_str(text);
        out.push_str(r#""}"#);
    }
    out.push(']');
    out.push_str(tail);
    out.push('}');
    out
}

fn responses(body: &str) -> Result<(Class, String, String), Why> {
    run(&classifier(), "POST", "/v1/responses", &[], body)
        .map(|d| (d.class, d.rule.to_string(), d.marker.to_string()))
        .map_err(|e| e.reason)
}

fn stateless(body: &str) {
    assert_eq!(
        responses(body),
        Ok((
            Class::Stateless,
            "responses.stateless".into(),
            "body:/store".into()
        )),
        "{body}"
    );
}

fn stateful(body: &str, rule: &str, marker: &str) {
    assert_eq!(
        responses(body),
        Ok((Class::Stateful, rule.into(), marker.into())),
        "{body}"
    );
}

#[test]
fn non_markers_keep_a_request_stateless() {
    let body = r#"{"model":"gpt-5","input":"hi","store":false,
        "metadata":{"session":"s1","store":"true","previous_response_id":"resp_1"},
        "user":"u1","safety_identifier":"sid","prompt_cache_key":"pck","service_tier":"priority",
        "include":["reasoning.encrypted_content"],"litellm_session_id":"ls1",
        "text":{"format":{"type":"text"}},"reasoning":{"effort":"low"}}"#;
    let observability = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-session-id", "abc"),
        ("Helicone-Session-Id", "hs"),
        ("x-portkey-trace-id", "pt"),
    ];
    let c = classifier();
    let d = run(&c, "POST", "/v1/responses", &observability, body).unwrap();
    assert_eq!(
        (d.class, &*d.rule),
        (Class::Stateless, "responses.stateless")
    );
    let chat = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"metadata":{"store":"true"},
        "user":"u1","safety_identifier":"sid","prompt_cache_key":"pck","service_tier":"flex","litellm_session_id":"x"}"#;
    let d = run(&c, "POST", "/v1/chat/completions", &observability, chat).unwrap();
    assert_eq!((d.class, &*d.rule), (Class::Stateless, "chat.stateless"));
}

#[test]
fn escaped_keys_are_decoded() {
    stateless(r#"{"st\u006fre":false}"#);
    stateful(
        r#"{"store":false,"previous\u005fresponse_id":"resp_1"}"#,
        "responses.previous_response_id",
        "body:/previous_response_id",
    );
    stateful(
        r#"{"store":false,"input":[{"\u0074ype":"item_reference","id":"x"}]}"#,
        "body.item_reference",
        "body:/input/*/type",
    );
    // An escaped value is compared decoded, too.
    stateful(
        r#"{"store":false,"input":[{"type":"item\u005freference","id":"x"}]}"#,
        "body.item_reference",
        "body:/input/*/type",
    );
}

#[test]
fn keys_deeper_down_that_share_a_name_do_not_count() {
    stateless(r#"{"metadata":{"store":true},"store":false}"#);
    stateless(r#"{"store":false,"text":{"previous_response_id":"r","conversation":"c"}}"#);
    stateless(r#"{"store":false,"input":[{"role":"user","content":"x","file_id":"file-1"}]}"#);
    stateless(r#"{"store":false,"tools":{"container":"cntr_1"}}"#);
    stateless(r#"{"store":false,"input":{"0":{"type":"item_reference"}}}"#);
    stateless(r#"{"store":false,"input":"item_reference","tools":"container"}"#);
}

#[test]
fn nulls_count_as_absent() {
    stateless(
        r#"{"store":false,"previous_response_id":null,"conversation":null,"prompt":null,
            "background":null,"tools":[{"type":"code_interpreter","container":null},
            {"type":"file_search","vector_store_ids":null}],
            "input":[{"content":[{"file_id":null}]}]}"#,
    );
    stateful(r#"{"store":null}"#, "responses.store", "body:/store");
}

#[test]
fn whitespace_and_key_order_do_not_matter() {
    stateless("{\r\n\t\"input\" : [ ] ,\n  \"store\"\t:\tfalse  \n}\n");
    stateless(" \n{\"store\":false}\n\n ");
    stateful(
        "{\n  \"store\": false,\n  \"model\": \"m\",\n  \"previous_response_id\" :\"r\"\n}",
        "responses.previous_response_id",
        "body:/previous_response_id",
    );
}

#[test]
fn markers_at_the_start_and_end_of_a_big_body() {
    let size = 1 << 20;
    let start = responses_body(
        r#""previous_response_id":"resp_1","#,
        r#","store":false"#,
        size,
    );
    assert!(start.len() >= size - 1024);
    stateful(
        &start,
        "responses.previous_response_id",
        "body:/previous_response_id",
    );
    let end = responses_body("", r#","store":false,"conversation":{"id":"conv_1"}"#, size);
    stateful(&end, "responses.conversation", "body:/conversation");
    let absent = responses_body("", r#","store":false"#, size);
    stateless(&absent);
    let store_default = responses_body("", "", size);
    stateful(&store_default, "responses.store", "body:/store");
}

#[test]
fn invalid_json_at_the_very_end_of_a_big_body() {
    let body = responses_body("", r#","store":false"#, 1 << 20);
    let truncated = &body[..body.len() - 1];
    match responses(truncated) {
        Err(Why::InvalidJson(msg)) => {
            assert!(msg.starts_with("EOF while parsing an object"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    // A syntax error deep inside an ignored string is still found.
    let broken = body.replacen("lazy dog", "lazy\u{1}dog", 1);
    assert!(matches!(responses(&broken), Err(Why::InvalidJson(_))));
}

#[test]
fn refusals_and_their_texts() {
    let err = |body: &str| responses(body).unwrap_err();
    assert_eq!(
        err("").to_string(),
        "request body is not valid JSON: EOF while parsing a value at line 1 column 0"
    );
    assert_eq!(
        err(r#"{"store":false} x"#).to_string(),
        "request body is not valid JSON: trailing characters at line 1 column 17"
    );
    assert!(matches!(err(r#"{"store":false}{}"#), Why::InvalidJson(_)));
    assert_eq!(
        err(r#"{"store":tru}"#).to_string(),
        "request body is not valid JSON: expected ident at line 1 column 13"
    );
    assert!(matches!(err(r#"{"store":false,}"#), Why::InvalidJson(_)));
    assert!(matches!(
        err("{\"store\":false,\"input\":\"\u{0}\"}"),
        Why::InvalidJson(_)
    ));
    assert_eq!(err(r#"[{"store":false}]"#), Why::NotAnObject);
    assert_eq!(err(r#""store""#), Why::NotAnObject);
    assert_eq!(err("null"), Why::NotAnObject);
    assert_eq!(err("42"), Why::NotAnObject);
    assert_eq!(err("[1,2").code(), "invalid_json");
    assert_eq!(err("[]").to_string(), "request body must be a JSON object");
    assert_eq!(err("[]").code(), "not_an_object");
}

#[test]
fn invalid_utf8_in_an_inspected_string_is_refused() {
    let c = classifier();
    let body = b"{\"store\":false,\"previous_response_id\":\"\xff\"}";
    let err = c
        .classify(&method("POST"), "/v1/responses", &headers(&[]), body)
        .unwrap_err();
    assert!(matches!(err.reason, Why::InvalidJson(_)), "{err}");
}

#[test]
fn duplicate_inspected_keys_are_refused() {
    let err = responses(r#"{"store":false,"store":true}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "request body has duplicate key /store; cannot tell which one the provider will use"
    );
    assert_eq!(err.code(), "duplicate_key");
    assert_eq!(
        responses(r#"{"store":false,"st\u006fre":true}"#),
        Err(Why::DuplicateKey("/store".into()))
    );
    assert_eq!(
        responses(
            r#"{"store":false,"input":[{"type":"message"},{"type":"message","type":"item_reference"}]}"#
        ),
        Err(Why::DuplicateKey("/input/*/type".into()))
    );
    // Keys nobody inspects may repeat; so may inspected names in different objects.
    stateless(r#"{"model":"a","model":"b","store":false,"metadata":{"x":1,"x":2}}"#);
    stateless(r#"{"store":false,"input":[{"type":"message"},{"type":"message"}]}"#);
    stateless(r#"{"store":false,"metadata":{"store":1,"store":2}}"#);
}

#[test]
fn deep_nesting_in_skipped_values_is_fine() {
    let depth = 100_000;
    let deep = format!(
        r#"{{"store":false,"metadata":{}1{},"input":[{{"content":{}"x"{}}}]}}"#,
        "[".repeat(depth),
        "]".repeat(depth),
        "[".repeat(depth),
        "]".repeat(depth)
    );
    stateless(&deep);
    let objects = format!(
        r#"{{"store":false,"tools":[{{"type":"x","container":{}null{}}}]}}"#,
        r#"{"a":"#.repeat(depth),
        "}".repeat(depth)
    );
    stateful(&objects, "body.container", "body:/tools/*/container");
    let unbalanced = format!(r#"{{"store":false,"metadata":{}}}"#, "[".repeat(depth));
    assert!(matches!(responses(&unbalanced), Err(Why::InvalidJson(_))));
}

#[test]
fn numbers_and_other_types() {
    assert_eq!(responses(r#"{"store":0}"#), Err(marker("/store")));
    assert_eq!(responses(r#"{"store":"false"}"#), Err(marker("/store")));
    assert_eq!(
        responses(r#"{"store":false,"background":"true"}"#),
        Err(marker("/background"))
    );
    assert_eq!(
        responses(r#"{"store":false,"background":1}"#),
        Err(marker("/background"))
    );
    stateful(
        r#"{"store":false,"prompt":"pmpt_1"}"#,
        "responses.prompt",
        "body:/prompt",
    );
    stateful(
        r#"{"store":false,"tools":[{"type":"file_search","vector_store_ids":[]}]}"#,
        "body.vector_store",
        "body:/tools/*/vector_store_ids",
    );
}

#[test]
fn content_encoding_on_a_body_route_is_refused_from_the_head() {
    let c = classifier();
    let gzip = headers(&[("content-encoding", "gzip")]);
    match c.inspect(&method("POST"), "/v1/responses", &gzip) {
        Inspection::Unclassifiable(u) => {
            assert_eq!(u.reason, Why::Encoded("gzip".into()));
            assert_eq!(
                u.to_string(),
                "cannot inspect a request body with content-encoding gzip"
            );
            assert_eq!(u.reason.code(), "encoded_body");
            assert_eq!(c.route_label(u.route), "/v1/responses");
        }
        other => panic!("{other:?}"),
    }
    let both = headers(&[("content-encoding", "identity, br")]);
    let err = c.classify(&method("POST"), "/v1/chat/completions", &both, b"{}");
    assert_eq!(err.unwrap_err().reason, Why::Encoded("br".into()));
    let identity = headers(&[("content-encoding", "Identity")]);
    let d = c.classify(
        &method("POST"),
        "/v1/responses",
        &identity,
        br#"{"store":false}"#,
    );
    assert_eq!(d.unwrap().class, Class::Stateless);
    // Head-decided routes do not care.
    let d = c
        .classify(&method("POST"), "/v1/files", &gzip, b"\x1f\x8b")
        .unwrap();
    assert_eq!(&*d.rule, "resources");
}

#[test]
fn content_type_is_not_required() {
    let c = classifier();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let h: Vec<(&str, &str)> = ct.map(|v| ("content-type", v)).into_iter().collect();
        let d = run(&c, "POST", "/v1/responses", &h, r#"{"store":false}"#).unwrap();
        assert_eq!(d.class, Class::Stateless);
    }
}

#[test]
fn ambiguous_paths_are_refused() {
    let c = classifier();
    for path in [
        "/v1/../v1/responses",
        "/v1/./conversations",
        "/v1/%2e%2e/files",
        "/v1/responses/%2E",
    ] {
        let err = run(&c, "GET", path, &[], "").unwrap_err();
        assert_eq!(err.reason, Why::AmbiguousPath, "{path}");
        assert!(
            err.to_string().starts_with("request path is ambiguous"),
            "{err}"
        );
        assert_eq!(err.reason.code(), "ambiguous_path");
        assert_eq!(c.route_label(err.route), "other");
    }
}

#[test]
fn which_routes_need_the_body() {
    let c = classifier();
    let needs = |m: &str, p: &str| {
        matches!(
            c.inspect(&method(m), p, &headers(&[])),
            Inspection::NeedsBody(_)
        )
    };
    for path in [
        "/v1/responses",
        "/v1/responses/input_tokens",
        "/v1/responses/compact",
        "/v1/chat/completions",
        "/v1/messages",
        "/openai/deployments/d/chat/completions",
        "/openai/responses",
    ] {
        assert!(needs("POST", path), "{path}");
        assert!(!needs("GET", path), "{path}");
    }
    for path in [
        "/v1/embeddings",
        "/v1/files",
        "/v1/conversations",
        "/v1/messages/count_tokens",
        "/v1/messages/batches",
        "/model/m/converse",
        "/runtimes/a/invocations",
        "/v1/responses/resp_1",
        "/other",
    ] {
        assert!(!needs("POST", path), "{path}");
    }
    let Inspection::NeedsBody(pending) = c.inspect(&method("POST"), "/v1/messages", &headers(&[]))
    else {
        panic!()
    };
    assert_eq!(c.route_label(pending.route()), "/v1/messages");
}

fn marker(field: &str) -> Why {
    Why::InvalidMarker(field.to_owned())
}

/// `store` / `background` must be a boolean or null: providers disagree on coercing
/// anything else (`0`, `"false"`, …), so such a body is refused before the rules run.
#[test]
fn non_boolean_markers_are_refused() {
    let odd = [
        "0",
        "1",
        "1e0",
        "0.0",
        "-1",
        r#""false""#,
        r#""true""#,
        r#""""#,
        "{}",
        r#"{"value":false}"#,
        "[]",
        "[false]",
    ];
    for v in odd {
        let store = format!(r#"{{"model":"gpt-5","input":"hi","store":{v}}}"#);
        assert_eq!(responses(&store), Err(marker("/store")), "{store}");
        let background = format!(r#"{{"store":false,"background":{v}}}"#);
        assert_eq!(
            responses(&background),
            Err(marker("/background")),
            "{background}"
        );
        // Checked before the other rules: a stored reference does not make it valid.
        let both = format!(r#"{{"previous_response_id":"resp_1","store":{v}}}"#);
        assert_eq!(responses(&both), Err(marker("/store")), "{both}");
        let chat = format!(r#"{{"model":"gpt-4o","messages":[],"store":{v}}}"#);
        let got = run(&classifier(), "POST", "/v1/chat/completions", &[], &chat);
        let err = got.unwrap_err();
        assert_eq!(err.reason, marker("/store"), "{chat}");
        assert_eq!(err.reason.code(), "invalid_marker");
        assert_eq!(
            err.to_string(),
            "request body field /store must be true, false or null"
        );
        assert_eq!(classifier().route_label(err.route), "/v1/chat/completions");
        // Routes whose rules do not read these fields ignore them.
        for (path, h) in [
            ("/v1/responses/input_tokens", &[][..]),
            ("/v1/responses/compact", &[][..]),
            ("/v1/messages", &[("anthropic-version", "2023-06-01")][..]),
        ] {
            let body = format!(r#"{{"store":{v},"background":{v}}}"#);
            assert!(
                run(&classifier(), "POST", path, h, &body).is_ok(),
                "{path} {body}"
            );
        }
        let chat_background = format!(r#"{{"messages":[],"background":{v}}}"#);
        let d = run(
            &classifier(),
            "POST",
            "/v1/chat/completions",
            &[],
            &chat_background,
        );
        assert_eq!(
            d.map(|d| d.rule.to_string()).as_deref(),
            Ok("chat.stateless")
        );
    }
    let err = responses(r#"{"store":false,"background":"yes"}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "request body field /background must be true, false or null"
    );
    // Booleans and null are fine; so is a nested `store`.
    stateless(r#"{"store":false,"background":false}"#);
    stateless(r#"{"store":false,"background":null}"#);
    stateless(r#"{"store":false,"metadata":{"store":"1","background":1}}"#);
    stateful(r#"{"store":null}"#, "responses.store", "body:/store");
    stateful(r#"{"store":true}"#, "responses.store", "body:/store");
    // Store is reported before background.
    assert_eq!(
        responses(r#"{"background":2,"store":1}"#),
        Err(marker("/store"))
    );
    // A duplicate is still a duplicate.
    assert_eq!(
        responses(r#"{"store":1,"store":false}"#),
        Err(Why::DuplicateKey("/store".into()))
    );
}
