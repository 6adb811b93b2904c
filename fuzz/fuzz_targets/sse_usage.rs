//! The response observer (token usage, state ids, first token) on arbitrary bodies split at
//! arbitrary points: never panics, and what it reports does not depend on the framing.
//!
//! Input: byte 0 picks what is wanted (bit 0 usage, bit 1 ids, bit 2 first token; none set
//! means all three), byte 1 seeds the chunk sizes, the rest is the body. Seeds start with `?`
//! (everything wanted) so they stay readable text. Every body is observed both as one JSON
//! document and as an SSE stream, each fed whole, in pseudo-random chunks (1 to 64 bytes, and
//! empty ones) and one byte at a time; the three outcomes must be equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::observe::{Format, Observer, StateId, Usage, Want};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    first_token: bool,
    ids: Vec<StateId>,
    usage: Option<Usage>,
}

fn run<'a>(format: Format, want: Want, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut observer = Observer::new(format, want);
    let mut outcome = Outcome {
        first_token: false,
        ids: Vec::new(),
        usage: None,
    };
    for chunk in chunks {
        let seen = observer.feed(chunk);
        assert!(
            !(seen.first_token && outcome.first_token),
            "first_token reported twice"
        );
        assert!(
            want.first_token || !seen.first_token,
            "unwanted first_token"
        );
        assert!(want.ids || seen.ids.is_empty(), "unwanted ids");
        outcome.first_token |= seen.first_token;
        outcome.ids.extend(seen.ids);
    }
    outcome.usage = observer.usage();
    assert!(want.usage || outcome.usage.is_none(), "unwanted usage");
    assert!(
        outcome.ids.len() <= 4,
        "more ids than the cap: {:?}",
        outcome.ids
    );
    for (i, id) in outcome.ids.iter().enumerate() {
        assert!(!outcome.ids[..i].contains(id), "id {id:?} reported twice");
        assert_eq!(StateId::parse(id.as_str()).as_ref(), Some(id));
    }
    if format == Format::Json {
        assert!(!outcome.first_token, "first_token from a JSON body");
    }
    outcome
}

/// Chunks of 0 to 64 bytes from a xorshift sequence seeded by `seed`.
fn chunks(body: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 0x9E37_7900;
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % 65) as usize;
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (&flags, rest) = data.split_first().unwrap_or((&0, &[]));
    let (&seed, body) = rest.split_first().unwrap_or((&0, &[]));
    let want = match flags & 0b111 {
        0 => Want {
            usage: true,
            ids: true,
            first_token: true,
        },
        bits => Want {
            usage: bits & 1 != 0,
            ids: bits & 2 != 0,
            first_token: bits & 4 != 0,
        },
    };
    for format in [Format::Json, Format::Sse, Format::Other] {
        let whole = run(format, want, [body]);
        let split = run(format, want, chunks(body, seed));
        assert_eq!(
            split, whole,
            "{format:?}: chunks (seed {seed}) differ from whole"
        );
        let bytes = run(format, want, body.chunks(1));
        assert_eq!(
            bytes, whole,
            "{format:?}: one byte at a time differs from whole"
        );
        if format == Format::Other {
            assert_eq!(whole, run(format, want, []));
        }
    }
});
