//! Memory stays bounded however large the body, its events, strings or lines.

use super::super::json_scan::TEXT_CAP;
use super::super::{Format, Observer, USAGE_CAP};
use super::{ids, usage, ALL};

const MIB: usize = 1024 * 1024;

/// Feeds `body` in `frame`-byte frames, checking the held state after each: returns the
/// observer.
fn feed_bounded(
    format: Format,
    body: &[u8],
    frame: usize,
) -> (Observer, Vec<super::super::StateId>) {
    let mut observer = Observer::new(format, ALL);
    let mut seen_ids = Vec::new();
    for chunk in body.chunks(frame) {
        seen_ids.extend(observer.feed(chunk).ids);
        let (held, cap) = observer.held_bytes();
        assert!(held <= cap, "held {held} > cap {cap}");
        assert!(observer.scanner.capture_capacity() <= USAGE_CAP);
    }
    (observer, seen_ids)
}

/// A `response.completed` event of about `size` bytes: long output texts, usage at the end.
fn huge_completed(size: usize) -> String {
    let mut output = String::new();
    let text =
        r#"Lorem ipsum \"id\":\"resp_no\" {[}] dolor sit amet,\n consectetur \\ adipiscing elit. "#;
    while output.len() < size {
        if !output.is_empty() {
            output.push(',');
        }
        output.push_str(
            r#"{"id":"msg_1","type":"message","content":[{"type":"output_text","text":""#,
        );
        for _ in 0..64 {
            output.push_str(text);
        }
        output.push_str(r#""}]}"#);
    }
    format!(
        "event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_big\",\
         \"output\":[{output}],\"usage\":{{\"input_tokens\":3,\"output_tokens\":500000}}}}}}\n\n"
    )
}

#[test]
fn a_two_mib_completed_event_is_bounded() {
    let body = huge_completed(2 * MIB);
    assert!(body.len() > 2 * MIB);
    for frame in [16 * 1024, 4096 + 7, 1] {
        let (observer, seen) = feed_bounded(Format::Sse, body.as_bytes(), frame);
        assert_eq!(observer.usage(), usage(3, 500_000, 0, 0), "frame {frame}");
        assert_eq!(seen, ids(&["resp_big"]));
    }
}

#[test]
fn oversized_values_are_dropped_not_grown() {
    let long_id = format!(
        "{{\"id\":\"resp_{}\",\"usage\":{{\"input_tokens\":1}}}}",
        "a".repeat(MIB)
    );
    let (observer, seen) = feed_bounded(Format::Json, long_id.as_bytes(), 1000);
    assert_eq!((seen, observer.usage()), (ids(&[]), usage(1, 0, 0, 0)));

    let fields: String = (0..2000).map(|n| format!("\"f{n}\":{n},")).collect();
    let long_usage = format!("{{\"usage\":{{{fields}\"input_tokens\":1}}}}");
    assert!(long_usage.len() > USAGE_CAP);
    let (observer, _) = feed_bounded(Format::Json, long_usage.as_bytes(), 100);
    assert_eq!(observer.usage(), None);

    let long_key = format!("{{\"{}\":1,\"id\":\"resp_k\"}}", "k".repeat(MIB));
    let (_, seen) = feed_bounded(Format::Json, long_key.as_bytes(), 999);
    assert_eq!(seen, ids(&["resp_k"]));

    let long_lines = format!(
        "{}: x\n\nevent: {}\ndata: {}\n\n:{}\n\nevent: a.delta\ndata: {{\"id\":\"chatcmpl-9\",\"usage\":{{\"input_tokens\":2}}}}\n\n",
        "f".repeat(MIB),
        "e".repeat(MIB),
        "not json ".repeat(MIB / 8),
        "c".repeat(MIB),
    );
    let (observer, seen) = feed_bounded(Format::Sse, long_lines.as_bytes(), 16 * 1024);
    assert_eq!(
        (seen, observer.usage()),
        (ids(&["chatcmpl-9"]), usage(2, 0, 0, 0))
    );
    assert!(TEXT_CAP >= "chatcmpl-".len() + 256);
}
