//! The SSE parser's outcome does not depend on how the stream is split into frames.

use super::super::tests::{ids, observe, run, usage, Outcome, ALL};
use super::super::{Format, Want};

/// Every combination of what may be wanted.
fn wants() -> impl Iterator<Item = Want> {
    (0u8..8).map(|bits| Want {
        usage: bits & 1 != 0,
        ids: bits & 2 != 0,
        first_token: bits & 4 != 0,
    })
}

/// `observe` (whole, every split in two, one byte at a time) plus pseudo-random frames of 1 to
/// 64 bytes: all give the outcome of the whole input, which is returned.
fn same_for_every_split(format: Format, want: Want, input: &[u8]) -> Outcome {
    let whole = observe(format, want, input);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..50 {
        let mut chunks = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let size = usize::try_from(seed >> 58).unwrap_or(1) + 1;
            let (head, tail) = rest.split_at(size.min(rest.len()));
            chunks.push(head);
            rest = tail;
        }
        assert_eq!(
            run(format, want, chunks),
            whole,
            "random frames, round {round}: {:?}",
            String::from_utf8_lossy(input)
        );
    }
    whole
}

/// fuzz/artifacts/sse_usage/minimized-split-first-token (after its two control bytes: `?`, all
/// wanted; `C`, the chunking seed). A first token (`tool_calls`) is found mid-event; the second
/// `choices` holds invalid JSON. The scan flags used to be recomputed per frame, so a frame
/// boundary after the token made the scanner skip the second `choices` unchecked and keep the
/// `usage` after it, while the whole body failed as invalid JSON and had no usage.
#[test]
fn first_token_mid_event_does_not_change_the_scan() {
    let body: &[u8] = b"data:{\"choices\":[{\"delta\":{\"tool_calls\":[{}]}}],\
                        \"choices\":[{l}],\"usage\":{}";
    for want in wants() {
        for format in [Format::Sse, Format::Json] {
            let outcome = same_for_every_split(format, want, body);
            // As SSE, the second `choices` is followed (and found invalid) only when a first
            // token is looked for; otherwise it is skipped and the usage counts. As one JSON
            // document the body (`data:…`) is invalid from its first byte.
            let sse = format == Format::Sse;
            let expected = usage(0, 0, 0, 0).filter(|_| sse && want.usage && !want.first_token);
            assert_eq!(outcome.usage, expected, "{format:?} {want:?}");
            assert_eq!(
                outcome.first_token,
                sse && want.first_token,
                "{format:?} {want:?}"
            );
        }
    }
    // The same with the event completed, more data lines and a valid event after it: the
    // invalid event reports no usage, the next one does.
    let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\n\
                   data: \"choices\":[{l}],\"usage\":{\"prompt_tokens\":7}}\n\n\
                   data: {\"usage\":{\"prompt_tokens\":8}}\n\n";
    for want in wants() {
        let outcome = same_for_every_split(Format::Sse, want, stream);
        assert_eq!(outcome.usage, usage(8, 0, 0, 0).filter(|_| want.usage));
    }
}

const CHAT_ID: &str = "chatcmpl-B9xQ";

/// A Chat Completions chunk of `CHAT_ID`.
fn chat(choices: &str, usage: &str) -> String {
    format!(
        "data: {{\"id\":\"{CHAT_ID}\",\"object\":\"chat.completion.chunk\",\"created\":1741569952,\
         \"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":{choices},\
         \"usage\":{usage}}}\n\n"
    )
}

/// Chat Completions with `stream_options.include_usage`: text deltas, then the usage chunk.
fn chat_text_stream() -> String {
    let delta = |delta: &str| {
        format!(r#"[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":null}}]"#)
    };
    [
        chat(&delta(r#"{"role":"assistant","content":"","refusal":null}"#), "null"),
        chat(&delta(r#"{"content":"Hello"}"#), "null"),
        chat(&delta(r#"{"content":" \"usage\": {} wo\nrld"}"#), "null"),
        chat(
            r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#,
            "null",
        ),
        chat(
            "[]",
            r#"{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#,
        ),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat()
}

/// Chat Completions streaming a tool call, with usage in every chunk (as vLLM's
/// `continuous_usage_stats` sends it): the first token and a usage share one event.
fn chat_tool_call_stream() -> String {
    let usage = |output: u32| {
        format!(
            r#"{{"prompt_tokens":82,"completion_tokens":{output},"total_tokens":{}}}"#,
            82 + output
        )
    };
    [
        chat(
            r#"[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_Ab12","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]"#,
            &usage(1),
        ),
        chat(
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\":"}}]},"finish_reason":null}]"#,
            &usage(5),
        ),
        chat(
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]"#,
            &usage(9),
        ),
        chat(r#"[{"index":0,"delta":{},"finish_reason":"tool_calls"}]"#, &usage(12)),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat()
}

/// The Responses API: ids in `response.created`, text deltas, usage in `response.completed`;
/// the `created` event's data is split over two `data` lines.
fn responses_stream() -> String {
    let response = |status: &str, usage: &str| {
        format!(
            r#"{{"id":"resp_67c9","object":"response","created_at":1741290958,"status":"{status}","model":"gpt-4.1","output":[],"previous_response_id":null,"usage":{usage}}}"#
        )
    };
    let event = |name: &str, data: &str| format!("event: {name}\ndata: {data}\n\n");
    [
        format!(
            "event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\n\
             data: \"response\":{}}}\n\n",
            response("in_progress", "null")
        ),
        event(
            "response.output_item.added",
            r#"{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"msg_67c9","type":"message","status":"in_progress","content":[],"role":"assistant"}}"#,
        ),
        event(
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","sequence_number":2,"item_id":"msg_67c9","output_index":0,"content_index":0,"delta":"Hi"}"#,
        ),
        event(
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_67c9","output_index":0,"content_index":0,"delta":" there"}"#,
        ),
        event(
            "response.completed",
            &format!(
                r#"{{"type":"response.completed","sequence_number":4,"response":{}}}"#,
                response(
                    "completed",
                    r#"{"input_tokens":36,"input_tokens_details":{"cached_tokens":4},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":6},"total_tokens":123}"#
                )
            ),
        ),
    ]
    .concat()
}

/// The Anthropic Messages API (CRLF line endings, a ping and a comment): the final usage is in
/// `message_delta`'s top-level `usage`.
fn anthropic_stream() -> String {
    let event = |name: &str, data: &str| format!("event: {name}\r\ndata: {data}\r\n\r\n");
    [
        event(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
        ),
        event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        event("ping", r#"{"type": "ping"}"#),
        ": keep-alive\r\n\r\n".to_owned(),
        event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        ),
        event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}"#,
        ),
        event("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
        event(
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":25,"cache_read_input_tokens":3,"output_tokens":15}}"#,
        ),
        event("message_stop", r#"{"type":"message_stop"}"#),
    ]
    .concat()
}

#[test]
fn realistic_streams_are_the_same_for_every_split() {
    // (stream, ids, usage) with everything wanted; first_token is checked where it is defined.
    let cases = [
        (
            chat_text_stream(),
            ids(&[CHAT_ID]),
            usage(19, 10, 0, 0),
            Some(true),
        ),
        (
            chat_tool_call_stream(),
            ids(&[CHAT_ID]),
            usage(82, 12, 0, 0),
            Some(true),
        ),
        (
            responses_stream(),
            ids(&["resp_67c9"]),
            usage(36, 87, 4, 6),
            Some(true),
        ),
        (anthropic_stream(), ids(&[]), usage(25, 15, 3, 0), None),
    ];
    for (stream, want_ids, want_usage, want_token) in &cases {
        let bytes = stream.as_bytes();
        let all = same_for_every_split(Format::Sse, ALL, bytes);
        assert_eq!(&all.ids, want_ids, "{stream:.120}");
        assert_eq!(&all.usage, want_usage, "{stream:.120}");
        if let Some(token) = want_token {
            assert_eq!(all.first_token, *token, "{stream:.120}");
        }
        for want in wants() {
            let outcome = same_for_every_split(Format::Sse, want, bytes);
            assert_eq!(outcome.usage, all.usage.filter(|_| want.usage), "{want:?}");
            let expected_ids = if want.ids {
                all.ids.clone()
            } else {
                Vec::new()
            };
            assert_eq!(outcome.ids, expected_ids, "{want:?}");
            assert_eq!(outcome.first_token, all.first_token && want.first_token);
        }
    }
}
