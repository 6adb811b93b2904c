//! Tests of response observation and the request-side helpers: table tests per rule, every
//! input fed whole, split at every byte and one byte at a time.

mod bounds;
mod inject;
mod json;
mod request;
mod sse;
mod types;

use super::{Format, IdKind, Observer, StateId, Usage, Want};

pub(super) const ALL: Want = Want {
    usage: true,
    ids: true,
    first_token: true,
};

/// What an observer reported over a whole body.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Outcome {
    pub(super) first_token: bool,
    pub(super) ids: Vec<StateId>,
    pub(super) usage: Option<Usage>,
}

/// Feeds `chunks` in order; first_token must be reported at most once.
pub(super) fn run<'a>(
    format: Format,
    want: Want,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Outcome {
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
        outcome.first_token |= seen.first_token;
        outcome.ids.extend(seen.ids);
    }
    outcome.usage = observer.usage();
    outcome
}

/// The outcome of feeding `input` whole, after checking that every split into two chunks, and
/// feeding it one byte at a time, give the same outcome.
pub(super) fn observe(format: Format, want: Want, input: &[u8]) -> Outcome {
    let whole = run(format, want, [input]);
    for at in 0..=input.len() {
        let (head, tail) = input.split_at(at);
        assert_eq!(
            run(format, want, [head, tail]),
            whole,
            "split at {at} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(
        run(format, want, input.chunks(1)),
        whole,
        "one byte at a time: {:?}",
        String::from_utf8_lossy(input)
    );
    whole
}

pub(super) fn id(value: &str) -> StateId {
    match StateId::parse(value) {
        Some(id) => id,
        None => panic!("not a state id: {value}"),
    }
}

pub(super) fn ids(values: &[&str]) -> Vec<StateId> {
    values.iter().map(|value| id(value)).collect()
}

pub(super) fn usage(input: u64, output: u64, cached: u64, reasoning: u64) -> Option<Usage> {
    Some(Usage {
        input,
        output,
        cached,
        reasoning,
    })
}

#[test]
fn id_kinds_follow_the_prefix() {
    assert_eq!(id("resp_1").kind, IdKind::Response);
    assert_eq!(id("conv_1").kind, IdKind::Conversation);
    assert_eq!(id("chatcmpl-1").kind, IdKind::ChatCompletion);
}
