//! `Format::Json`: the top-level `usage`, `id` and `conversation` of one document.

use super::super::{Format, Usage, Want};
use super::{ids, observe, run, usage, Outcome, ALL};

fn json(input: &str) -> Outcome {
    observe(Format::Json, ALL, input.as_bytes())
}

#[test]
fn usage_field_spellings() {
    let cases: &[(&str, Option<Usage>)] = &[
        (
            r#"{"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30,
              "prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},
              "completion_tokens_details":{"reasoning_tokens":7,"audio_tokens":0}}}"#,
            usage(10, 20, 4, 7),
        ),
        (
            r#"{"usage":{"input_tokens":11,"input_tokens_details":{"cached_tokens":5},
              "output_tokens":21,"output_tokens_details":{"reasoning_tokens":8},"total_tokens":32}}"#,
            usage(11, 21, 5, 8),
        ),
        (
            r#"{"usage":{"inputTokens":12,"outputTokens":22,"totalTokens":34,"cacheReadInputTokens":6,"cacheWriteInputTokens":1}}"#,
            usage(12, 22, 6, 0),
        ),
        (
            r#"{"usage":{"input_tokens":13,"output_tokens":23,"cache_creation_input_tokens":2,"cache_read_input_tokens":9}}"#,
            usage(13, 23, 9, 0),
        ),
        (
            r#"{"usage":{"prompt_tokens":1,"completion_tokens":2,"prompt_tokens_details":null,"completion_tokens_details":null}}"#,
            usage(1, 2, 0, 0),
        ),
        (r#"{"usage":{}}"#, usage(0, 0, 0, 0)),
        (
            r#"{"usage":{"prompt_tokens":null,"completion_tokens":3}}"#,
            usage(0, 3, 0, 0),
        ),
        (
            r#"{"usage":{"prompt_tokens":"7","completion_tokens":3.0,"x":[1,{"y":2}]}}"#,
            usage(0, 3, 0, 0),
        ),
        (
            r#"{"usage":{"prompt_tokens":-1,"completion_tokens":1e2}}"#,
            usage(0, 100, 0, 0),
        ),
        (
            r#"{"usage":{"prompt_tokens_details":5,"completion_tokens_details":[1]}}"#,
            usage(0, 0, 0, 0),
        ),
        (r#"{"usage":null}"#, None),
        (r#"{"usage":[1,2]}"#, None),
        (r#"{"usage":"none"}"#, None),
        (
            r#"{"choices":[{"usage":{"prompt_tokens":1}}],"response":{"usage":{"input_tokens":1}}}"#,
            None,
        ),
        (r#"{"x":{"usage":{"prompt_tokens":1}}}"#, None),
        (r#"[{"usage":{"prompt_tokens":1}}]"#, None),
    ];
    for (input, want) in cases {
        assert_eq!(json(input).usage, *want, "{input}");
    }
}

#[test]
fn the_last_usage_of_a_document_wins() {
    let outcome = json(r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#);
    assert_eq!(outcome.usage, usage(2, 0, 0, 0));
}

#[test]
fn chat_completion_document() {
    let body = r#"{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4.1-2025-04-14",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "He said \"id\": \"resp_fake\", then {\"usage\":{\"prompt_tokens\":99}} \\ done\u0022 ]}",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
    "completion_tokens_details": { "reasoning_tokens": 0, "audio_tokens": 0,
      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0 }
  },
  "service_tier": "default"
}
"#;
    let outcome = json(body);
    assert_eq!(
        outcome.ids,
        ids(&["chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"])
    );
    assert_eq!(outcome.usage, usage(19, 10, 0, 0));
    assert!(!outcome.first_token, "never for JSON");
}

#[test]
fn responses_document_with_conversation() {
    let body = r#"{"id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","object":"response",
"status":"completed","conversation":{"id":"conv_689667905b048191b4740501625afd940c7533ace33a2dab"},
"previous_response_id":"resp_previous","output":[{"type":"message","id":"msg_1","status":"completed",
"role":"assistant","content":[{"type":"output_text","text":"In a peaceful grove...","annotations":[]}]}],
"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,
"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}"#;
    let outcome = json(body);
    assert_eq!(
        outcome.ids,
        ids(&[
            "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
            "conv_689667905b048191b4740501625afd940c7533ace33a2dab"
        ])
    );
    assert_eq!(outcome.usage, usage(36, 87, 0, 0));
}

#[test]
fn ids_only_where_they_belong() {
    let cases: &[(&str, &[&str])] = &[
        (r#"{"conversation":"conv_top"}"#, &["conv_top"]),
        (
            r#"{"id":"conv_new","object":"conversation"}"#,
            &["conv_new"],
        ),
        (
            r#"{"previous_response_id":"resp_1","response_id":"resp_2","xid":"resp_3"}"#,
            &[],
        ),
        (
            r#"{"data":{"id":"resp_deep"},"items":[{"id":"resp_item"}]}"#,
            &[],
        ),
        (
            r#"{"text":"\"id\":\"resp_in_string\"","id2":"resp_x"}"#,
            &[],
        ),
        (
            r#"{"conversation":{"object":"x","id":"conv_a","metadata":{"id":"conv_b"}}}"#,
            &["conv_a"],
        ),
        (r#"{"conversation":{"id":{"id":"conv_c"}}}"#, &[]),
        (r#"{"id":"msg_1"}"#, &[]),
        (r#"{"id":"resp_"}"#, &[]),
        (r#"{"id":"resp_a.b"}"#, &[]),
        (r#"{"id":"resp_1","id":"resp_1"}"#, &["resp_1"]),
        (r#"{"id":12,"conversation":null}"#, &[]),
        (r#"{"i\u0064":"resp_\u0061bc\u002D9"}"#, &["resp_abc-9"]),
        (
            r#"{"x":"a\\\\\"b\\\\","y":["\\","\"",""],"id":"resp_bs"}"#,
            &["resp_bs"],
        ),
        (
            r#"{"x":"\\\"id\\\":\\\"resp_no\\","id":"resp_bs2"}"#,
            &["resp_bs2"],
        ),
        (r#"{"\u0069\u0064":"resp_x\u00e9"}"#, &[]),
        (r#"{"id\u0000":"resp_1"}"#, &[]),
        (r#"{"id":"resp_a\nb"}"#, &[]),
        (r#" { "id" : "resp_ws" } "#, &["resp_ws"]),
        (r#"["resp_1",{"id":"resp_2"}]"#, &[]),
        (r#""resp_1""#, &[]),
    ];
    for (input, want) in cases {
        assert_eq!(json(input).ids, ids(want), "{input}");
    }
}

#[test]
fn an_id_longer_than_the_cap_is_dropped() {
    let longest = format!("chatcmpl-{}", "a".repeat(256));
    let outcome = json(&format!(r#"{{"id":"{longest}"}}"#));
    assert_eq!(outcome.ids, ids(&[&longest]));
    let outcome = json(&format!(r#"{{"id":"chatcmpl-{}"}}"#, "a".repeat(257)));
    assert_eq!(outcome.ids, ids(&[]));
}

#[test]
fn nothing_after_invalid_json() {
    let cases: &[&str] = &[
        r#"{"x":1"usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        r#"{"x":]"usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        r#"{"x":{]},"usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        r#"{"x":[}],"usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        // Escapes are checked where strings are decoded (keys, ids); skipped ones are not.
        r#"{"x\q":1,"usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        r#"{"x\u12G4":1,"usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        r#"{"id":"resp_\q","usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        r#"{"x" "usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        r#"{,"usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        r#"{"x":1,,"usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        r#"{"x":1,}"usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        r#"{"x":@,"usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        r#"{"choices":[1}],"usage":{"prompt_tokens":1},"id":"resp_1"}"#,
        r#"{"usage":{"prompt_tokens":1]},"id":"resp_1"}"#,
        r#"{"usage":{"prompt_tokens":1,},"id":"resp_1"}"#,
        r#"}{"id":"resp_1"}"#,
        r#"{"id":"resp_1"#,
    ];
    for input in cases {
        let outcome = json(input);
        assert_eq!(outcome.usage, None, "{input}");
        assert_eq!(outcome.ids, ids(&[]), "{input}");
    }
    // What came before the error stands.
    let outcome = json(r#"{"id":"resp_1","usage":{"prompt_tokens":1},"x":]}"#);
    assert_eq!(outcome.ids, ids(&["resp_1"]));
    assert_eq!(outcome.usage, usage(1, 0, 0, 0));
}

#[test]
fn deep_nesting_is_skipped_or_refused_without_panicking() {
    let deep = |n: usize| {
        format!(
            r#"{{"x":{}1{},"id":"resp_1"}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    assert_eq!(json(&deep(127)).ids, ids(&["resp_1"]));
    assert_eq!(json(&deep(5000)).ids, ids(&[]));
}

#[test]
fn a_body_cut_short_has_no_usage() {
    let body = r#"{"id":"resp_1","usage":{"input_tokens":5,"output_tokens":6}}"#;
    let cut = body.get(..body.len() - 3).unwrap_or_default();
    assert_eq!(json(cut).usage, None);
    assert_eq!(json(body).usage, usage(5, 6, 0, 0));
}

#[test]
fn unwanted_parts_are_not_reported() {
    let body = br#"{"id":"resp_1","usage":{"input_tokens":5}}"#;
    let only_usage = Want {
        usage: true,
        ids: false,
        first_token: true,
    };
    let outcome = observe(Format::Json, only_usage, body);
    assert_eq!((outcome.ids, outcome.usage), (ids(&[]), usage(5, 0, 0, 0)));
    let only_ids = Want {
        usage: false,
        ids: true,
        first_token: false,
    };
    let outcome = observe(Format::Json, only_ids, body);
    assert_eq!((outcome.ids, outcome.usage), (ids(&["resp_1"]), None));
    let outcome = run(Format::Other, super::ALL, [&body[..]]);
    assert_eq!((outcome.ids, outcome.usage), (ids(&[]), None));
}

#[test]
fn garbage_never_panics() {
    let seeds: &[&[u8]] = &[
        br#"{"id":"resp_1","usage":{"a":[{"b":"\u00"}]}}"#,
        b"\xff\xfe{\"id\":\"resp_\xff\"}",
        br#"{"usage":{"prompt_tokens":1e999999}}"#,
        br#"{"conversation":{"id":"conv_1"}"#,
        b"\0\0\0",
    ];
    for seed in seeds {
        for at in 0..seed.len() {
            let mut mutated = seed.to_vec();
            for byte in [b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', 0xff] {
                if let Some(slot) = mutated.get_mut(at) {
                    *slot = byte;
                }
                let _ = run(Format::Json, super::ALL, mutated.chunks(3));
                let _ = run(Format::Sse, super::ALL, [b"data: ".as_slice(), &mutated]);
            }
        }
    }
}
