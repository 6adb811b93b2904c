//! `request_state_id`: the path first, then the body.

use super::super::request_state_id;
use super::id;

#[test]
fn state_ids_of_requests() {
    let cases: &[(&str, Option<&str>, Option<&str>)] = &[
        ("/v1/responses/resp_abc/input_items", None, Some("resp_abc")),
        (
            "/v1/responses/resp_abc",
            Some(r#"{"previous_response_id":"resp_other"}"#),
            Some("resp_abc"),
        ),
        (
            "/openai/v1/conversations/conv_1/items/msg_2",
            None,
            Some("conv_1"),
        ),
        (
            "/v1/chat/completions/chatcmpl-x/messages",
            None,
            Some("chatcmpl-x"),
        ),
        ("/v1/responses/resp_q?include=x", None, Some("resp_q")),
        ("/v1/responses/resp_", None, None),
        ("/v1/responses/resp_a.b", None, None),
        ("/v1/responses", None, None),
        (
            "/v1/responses",
            Some(r#"{"model":"m","previous_response_id":"resp_prev","conversation":"conv_x"}"#),
            Some("resp_prev"),
        ),
        (
            "/v1/responses",
            Some(r#"{"model":"m","conversation":"conv_x"}"#),
            Some("conv_x"),
        ),
        (
            "/v1/responses",
            Some(r#"{"conversation":{"id":"conv_obj","x":[1]}}"#),
            Some("conv_obj"),
        ),
        (
            "/v1/responses",
            Some(r#"{"previous_response_id":null,"conversation":{"id":"conv_y"}}"#),
            Some("conv_y"),
        ),
        (
            "/v1/responses",
            Some(r#"{"previous_response_id":"nope","conversation":"conv_z"}"#),
            Some("conv_z"),
        ),
        (
            "/v1/responses",
            Some(r#"{"previous_response_id":"resp_\u0061"}"#),
            Some("resp_a"),
        ),
        (
            "/v1/responses",
            Some(r#"{"previous_response_id":"resp_1","previous_response_id":"resp_2"}"#),
            Some("resp_2"),
        ),
        (
            "/v1/responses",
            Some(r#"{"input":[{"previous_response_id":"resp_deep","id":"resp_x"}]}"#),
            None,
        ),
        (
            "/v1/responses",
            Some(r#"{"previous_response_id":5,"conversation":{"id":7}}"#),
            None,
        ),
        (
            "/v1/responses",
            Some(r#"{"conversation":["conv_1"]}"#),
            None,
        ),
        ("/v1/responses", Some(r#"["resp_1"]"#), None),
        (
            "/v1/responses",
            Some(r#"{"previous_response_id":"resp_1""#),
            None,
        ),
        (
            "/v1/responses",
            Some(r#"{"previous_response_id":"resp_1"} x"#),
            None,
        ),
        ("/v1/responses", Some("\u{0}"), None),
        ("/v1/responses", Some(""), None),
    ];
    for (path, body, want) in cases {
        let got = request_state_id(path, body.map(str::as_bytes));
        assert_eq!(got, want.map(id), "{path} {body:?}");
    }
    assert_eq!(
        request_state_id("/v1/responses", Some(b"{\"conversation\":\"conv_\xff\"}")),
        None
    );
}
