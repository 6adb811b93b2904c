//! `inject_include_usage`: exact outputs, and the bodies left alone.

use super::super::inject_include_usage;

#[test]
fn include_usage_is_inserted() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"model":"gpt-4o","stream":true,"messages":[]}"#,
            r#"{"model":"gpt-4o","stream":true,"messages":[],"stream_options":{"include_usage":true}}"#,
        ),
        (r#"{"stream":true}"#, r#"{"stream":true,"stream_options":{"include_usage":true}}"#),
        (
            "{\n  \"stream\": true\n}\n",
            "{\n  \"stream\": true,\"stream_options\":{\"include_usage\":true}\n}\n",
        ),
        (
            " {\"messages\":[{\"content\":\"}\"}], \"stream\" : true } \r\n",
            " {\"messages\":[{\"content\":\"}\"}], \"stream\" : true,\"stream_options\":{\"include_usage\":true} } \r\n",
        ),
        (
            r#"{"stream":true,"stream_options":{}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            r#"{"stream":true,"stream_options":{ }}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true }}"#,
        ),
        (
            r#"{"stream_options":{"x":1} ,"stream":true}"#,
            r#"{"stream_options":{"x":1,"include_usage":true} ,"stream":true}"#,
        ),
        (
            r#"{"stream":true,"stream_options":{"a":{"include_usage":false}}}"#,
            r#"{"stream":true,"stream_options":{"a":{"include_usage":false},"include_usage":true}}"#,
        ),
        (
            r#"{"str\u0065am":true,"tools":[]}"#,
            r#"{"str\u0065am":true,"tools":[],"stream_options":{"include_usage":true}}"#,
        ),
        (
            r#"{"stream":true,"text":"é \"include_usage\""}"#,
            r#"{"stream":true,"text":"é \"include_usage\"","stream_options":{"include_usage":true}}"#,
        ),
    ];
    for (body, want) in cases {
        let got = inject_include_usage(body.as_bytes());
        assert_eq!(got.as_deref(), Some(want.as_bytes()), "{body}");
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(want);
        assert!(parsed.is_ok(), "{want}");
    }
}

#[test]
fn bodies_left_alone() {
    let cases: &[&[u8]] = &[
        br#"{"stream":false}"#,
        br#"{"stream":"true"}"#,
        br#"{"stream":1}"#,
        br#"{"model":"m"}"#,
        br#"{}"#,
        br#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        br#"{"stream":true,"stream_options":{"include_usage":false}}"#,
        br#"{"stream":true,"stream_options":{"include_usage":null}}"#,
        br#"{"stream":true,"stream_options":{"include\u005fusage":false}}"#,
        br#"{"stream":true,"stream_options":null}"#,
        br#"{"stream":true,"stream_options":[]}"#,
        br#"{"stream":true,"stream":true}"#,
        br#"{"stream":true,"model":"a","model":"b"}"#,
        br#"{"stream":true,"stream_options":{"x":1,"x":2}}"#,
        br#"{"stream":true"#,
        br#"{"stream":true}}"#,
        br#"{"stream":true} {}"#,
        br#"[{"stream":true}]"#,
        b"\"stream\"",
        b"",
        b"{\"stream\":true,\"x\":\"\xff\"}",
        br#"{"stream":true,"x":tru}"#,
    ];
    for body in cases {
        assert_eq!(
            inject_include_usage(body),
            None,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}
