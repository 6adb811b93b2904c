//! `Format::Sse`: Chat Completions chunks and Responses API events.

use super::super::{Format, Observer, Want};
use super::{ids, observe, run, usage, Outcome, ALL};

fn sse(input: &str) -> Outcome {
    observe(Format::Sse, ALL, input.as_bytes())
}

pub(super) fn chat_chunk(delta: &str, usage: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-A1b2\",\"object\":\"chat.completion.chunk\",\"created\":1741569952,\
         \"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_f9f4fb6dbf\",\"choices\":[{{\"index\":0,\
         \"delta\":{delta},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":{usage}}}\n\n"
    )
}

const CHAT_USAGE: &str = r#"{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":2,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":3,"audio_tokens":0}}"#;

/// A Chat Completions stream with `include_usage`, as a list of events.
fn chat_events() -> Vec<String> {
    vec![
        chat_chunk(
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        ),
        chat_chunk(r#"{"content":"Hello"}"#, "null"),
        chat_chunk(r#"{"content":" \"id\": \"resp_no\" \\"}"#, "null"),
        chat_chunk("{}", "null"),
        format!(
            "data: {{\"id\":\"chatcmpl-A1b2\",\"object\":\"chat.completion.chunk\",\"created\":1,\
             \"model\":\"gpt-4o\",\"choices\":[],\"usage\":{CHAT_USAGE}}}\n\n"
        ),
        "data: [DONE]\n\n".to_owned(),
    ]
}

fn response_event(kind: &str, data: &str) -> String {
    format!("event: {kind}\ndata: {data}\n\n")
}

const RESPONSE_USAGE: &str = r#"{"input_tokens":37,"input_tokens_details":{"cached_tokens":5},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":48}"#;

/// A Responses API stream ending in `end` (`response.completed`, `.failed`, `.incomplete`).
fn responses_events(end: &str) -> Vec<String> {
    let response = |status: &str, usage: &str| {
        format!(
            r#"{{"id":"resp_68af","object":"response","created_at":1756315696,"status":"{status}","conversation":{{"id":"conv_68ae"}},"model":"gpt-5","output":[{{"id":"msg_68b0","type":"message","content":[{{"type":"output_text","text":"Hi \"id\" there"}}]}}],"previous_response_id":"resp_old","usage":{usage}}}"#
        )
    };
    vec![
        response_event(
            "response.created",
            &format!(
                r#"{{"type":"response.created","sequence_number":0,"response":{}}}"#,
                response("in_progress", "null")
            ),
        ),
        response_event(
            "response.in_progress",
            &format!(
                r#"{{"type":"response.in_progress","sequence_number":1,"response":{}}}"#,
                response("in_progress", "null")
            ),
        ),
        response_event(
            "response.output_item.added",
            r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_68b0","type":"message","status":"in_progress","content":[],"role":"assistant"}}"#,
        ),
        response_event(
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_68b0","output_index":0,"content_index":0,"delta":"Hi","logprobs":[]}"#,
        ),
        response_event(
            "response.output_text.done",
            r#"{"type":"response.output_text.done","sequence_number":4,"item_id":"msg_68b0","text":"Hi"}"#,
        ),
        response_event(
            end,
            &format!(
                r#"{{"type":"{end}","sequence_number":5,"response":{}}}"#,
                response("completed", RESPONSE_USAGE)
            ),
        ),
    ]
}

/// Feeds one event per call: the index of the call that reported the first token.
fn first_token_call(events: &[String]) -> Option<usize> {
    let mut observer = Observer::new(Format::Sse, ALL);
    let calls: Vec<bool> = events
        .iter()
        .map(|event| observer.feed(event.as_bytes()).first_token)
        .collect();
    assert!(calls.iter().filter(|token| **token).count() <= 1);
    calls.iter().position(|token| *token)
}

#[test]
fn chat_stream_with_final_usage_chunk() {
    let events = chat_events();
    let outcome = sse(&events.concat());
    assert_eq!(outcome.ids, ids(&["chatcmpl-A1b2"]));
    assert_eq!(outcome.usage, usage(9, 12, 2, 3));
    assert!(outcome.first_token);
    assert_eq!(
        first_token_call(&events),
        Some(1),
        "the role-only chunk is not a token"
    );
}

#[test]
fn responses_stream_ends_with_usage() {
    for end in [
        "response.completed",
        "response.failed",
        "response.incomplete",
    ] {
        let events = responses_events(end);
        let outcome = sse(&events.concat());
        assert_eq!(outcome.ids, ids(&["resp_68af", "conv_68ae"]), "{end}");
        assert_eq!(outcome.usage, usage(37, 11, 5, 4), "{end}");
        assert_eq!(first_token_call(&events), Some(3), "{end}");
    }
}

#[test]
fn a_stream_cut_short_has_no_usage() {
    let stream = responses_events("response.completed").concat();
    let cut = stream.get(..stream.len() - 40).unwrap_or_default();
    let outcome = sse(cut);
    assert_eq!(outcome.usage, None);
    assert_eq!(outcome.ids, ids(&["resp_68af", "conv_68ae"]));
    let events = chat_events();
    let outcome = sse(&events.get(..4).unwrap_or_default().concat());
    assert_eq!(outcome.usage, None);
}

#[test]
fn line_endings_and_field_syntax() {
    let chat = chat_events().concat();
    let expected = sse(&chat);
    let variants = [
        chat.replace('\n', "\r\n"),
        chat.replace('\n', "\r"),
        chat.replace("data: ", "data:"),
        chat.replace("data: ", "data:  \t"),
        format!("\u{feff}{chat}"),
        format!(
            ": keep-alive\n\nretry: 3000\nid: 7\n\n{}",
            chat.replace("\n\n", "\n: comment\nid: 9\nfoo\n\n")
        ),
        chat.replacen("\n\n", "\r\n\r\n", 1)
            .replacen("\n\n", "\r\r", 1),
    ];
    for variant in &variants {
        assert_eq!(sse(variant), expected, "{variant:?}");
    }
}

#[test]
fn multi_line_data_is_joined() {
    let stream = "data: {\"id\":\ndata:\"chatcmpl-ml\",\r\ndata\ndata: \"usage\":{\"prompt_tokens\":\rdata: 4}}\n\n";
    let outcome = sse(stream);
    assert_eq!(outcome.ids, ids(&["chatcmpl-ml"]));
    assert_eq!(outcome.usage, usage(4, 0, 0, 0));
    // A data line ends a JSON string: the document is invalid, and nothing after it counts.
    let outcome = sse("data: {\"x\":\"a\ndata: b\",\"usage\":{\"prompt_tokens\":4}}\n\n");
    assert_eq!(outcome.usage, None);
}

#[test]
fn first_token_rules() {
    let chat = |delta: &str| chat_chunk(delta, "null");
    let cases: Vec<(String, bool)> = vec![
        (chat(r#"{"role":"assistant","content":""}"#), false),
        (chat(r#"{"role":"assistant","content":null,"refusal":null}"#), false),
        (chat(r#"{"content":"x"}"#), true),
        (chat(r#"{"content":"\n"}"#), true),
        (chat(r#"{"content":"\u00e9"}"#), true),
        (chat(r#"{"refusal":"I can't"}"#), true),
        (chat(r#"{"reasoning_content":"think"}"#), true),
        (chat(r#"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}"#), true),
        (chat(r#"{"tool_calls":[ ]}"#), false),
        (chat(r#"{"tool_calls":null,"function_call":{"name":"f"}}"#), false),
        (chat(r#"{"audio":{"content":"x"},"text":"y"}"#), false),
        (chat(r#"{"content":["x"]}"#), false),
        ("data: {\"choices\":[{\"index\":0,\"delta\":{}},{\"index\":1,\"delta\":{\"content\":\"x\"}}]}\n\n".into(), true),
        ("data: {\"choices\":[{\"message\":{\"content\":\"x\"}}]}\n\n".into(), false),
        ("data: {\"choices\":[[{\"delta\":{\"content\":\"x\"}}]]}\n\n".into(), false),
        ("data: {\"x\":{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}}\n\n".into(), false),
        ("data: {\"type\":\"response.output_text.delta\",\"delta\":\"x\"}\n\n".into(), true),
        ("data: {\"type\":\"response.function_call_arguments.delta\"}\n\n".into(), true),
        ("data: {\"type\":\"response.output_text.done\"}\n\n".into(), false),
        ("data: {\"type\":\"response.created\",\"response\":{\"type\":\"x.delta\"}}\n\n".into(), false),
        ("data: {\"text\":\"\\\"type\\\":\\\"a.delta\\\"\"}\n\n".into(), false),
        ("data: {\"delta\":\"x\"}\n\n".into(), false),
        ("event: response.output_text.delta\ndata: {}\n\n".into(), true),
        ("event: response.reasoning_summary_text.delta\ndata: [DONE]\n\n".into(), true),
        ("data: {}\nevent: response.audio.delta\n\n".into(), true),
        ("event: response.output_text.delta\n\ndata: {}\n\n".into(), false),
        ("event: response.output_text.delta\nevent: response.output_text.done\ndata: {}\n\n".into(), false),
        ("event: response.delta.done\ndata: {}\n\n".into(), false),
    ];
    for (stream, token) in &cases {
        assert_eq!(sse(stream).first_token, *token, "{stream:?}");
    }
    let no_token = Want {
        usage: true,
        ids: true,
        first_token: false,
    };
    let outcome = observe(Format::Sse, no_token, chat(r#"{"content":"x"}"#).as_bytes());
    assert!(!outcome.first_token);
}

#[test]
fn ids_come_from_the_first_json_event_only() {
    let cases: &[(&str, &[&str])] = &[
        ("data: {\"id\":\"chatcmpl-1\"}\n\ndata: {\"id\":\"chatcmpl-2\"}\n\n", &["chatcmpl-1"]),
        ("data: {\"x\":1}\n\ndata: {\"id\":\"chatcmpl-2\"}\n\n", &[]),
        ("data: hello\n\ndata: {\"id\":\"chatcmpl-2\"}\n\n", &["chatcmpl-2"]),
        ("data: [DONE]\n\ndata: {\"id\":\"chatcmpl-2\"}\n\n", &["chatcmpl-2"]),
        (": ping\n\nevent: ping\n\ndata: {\"id\":\"chatcmpl-2\"}\n\n", &["chatcmpl-2"]),
        ("data: {\"response\":{\"id\":\"resp_1\",\"conversation\":{\"id\":\"conv_1\"}}}\n\n", &["resp_1", "conv_1"]),
        ("data: {\"item\":{\"id\":\"resp_1\"},\"response\":{\"output\":[{\"id\":\"resp_2\"}]}}\n\n", &[]),
        ("data: {\"response\":{\"previous_response_id\":\"resp_1\"},\"item_id\":\"resp_2\"}\n\n", &[]),
        ("datum: {\"id\":\"chatcmpl-1\"}\n\n", &[]),
    ];
    for (stream, want) in cases {
        assert_eq!(sse(stream).ids, ids(want), "{stream:?}");
    }
}

#[test]
fn usage_rules() {
    let big = format!(
        r#"{{"prompt_tokens":1,"padding":"{}"}}"#,
        "x".repeat(9 * 1024)
    );
    let cases: Vec<(String, Option<super::super::Usage>)> = vec![
        ("data: {\"usage\":null}\n\n".into(), None),
        ("data: {\"response\":{\"usage\":null}}\n\n".into(), None),
        (
            "data: {\"item\":{\"usage\":{\"input_tokens\":1}}}\n\n".into(),
            None,
        ),
        (
            "data: {\"response\":{\"usage\":{\"input_tokens\":1}}}\n\n".into(),
            usage(1, 0, 0, 0),
        ),
        (
            "data: {\"usage\":{\"input_tokens\":1}}\n\ndata: {\"usage\":{\"input_tokens\":2}}\n\n"
                .into(),
            usage(2, 0, 0, 0),
        ),
        (
            "data: {\"usage\":{\"input_tokens\":1}}\n\ndata: {\"usage\":null}\n\n".into(),
            usage(1, 0, 0, 0),
        ),
        (
            format!("data: {{\"usage\":{{\"input_tokens\":1}}}}\n\ndata: {{\"usage\":{big}}}\n\n"),
            usage(1, 0, 0, 0),
        ),
        (
            "data: {\"usage\":{\"input_tokens\":1}}\n\ndata: {\"usage\":{\"input_tokens\":2,}}\n\n"
                .into(),
            usage(1, 0, 0, 0),
        ),
    ];
    for (stream, want) in &cases {
        assert_eq!(
            observe(Format::Sse, ALL, stream.as_bytes()).usage,
            *want,
            "{stream:.200}"
        );
    }
    let only_usage = Want {
        usage: true,
        ids: false,
        first_token: false,
    };
    let outcome = observe(Format::Sse, only_usage, chat_events().concat().as_bytes());
    assert_eq!(
        (outcome.ids, outcome.usage, outcome.first_token),
        (ids(&[]), usage(9, 12, 2, 3), false)
    );
    let nothing = Want {
        usage: false,
        ids: false,
        first_token: false,
    };
    let outcome = observe(Format::Sse, nothing, chat_events().concat().as_bytes());
    assert_eq!(
        (outcome.ids, outcome.usage, outcome.first_token),
        (ids(&[]), None, false)
    );
}

#[test]
fn random_frame_sizes_agree() {
    let streams = [
        chat_events().concat(),
        responses_events("response.completed")
            .concat()
            .replace('\n', "\r\n"),
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for stream in &streams {
        let bytes = stream.as_bytes();
        let whole = run(Format::Sse, ALL, [bytes]);
        for _ in 0..200 {
            let mut chunks = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let size = usize::try_from(seed >> 58).unwrap_or(1) + 1;
                let (head, tail) = rest.split_at(size.min(rest.len()));
                chunks.push(head);
                rest = tail;
            }
            assert_eq!(run(Format::Sse, ALL, chunks), whole);
        }
    }
}
