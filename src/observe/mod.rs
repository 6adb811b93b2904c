//! Response observation without delaying a byte: token usage, provider state ids and the first
//! generated token, read from response bodies as their frames pass.
//!
//! The proxy calls [`Observer::feed`] on every data frame before relaying it unchanged. The
//! observer never buffers the body: a resumable byte state machine (`json_scan.rs`) follows
//! only the few JSON paths it needs and skips everything else (string contents with `memchr`),
//! and an incremental SSE parser (`sse.rs`) feeds each event's data through it as it arrives.
//! Its state is bounded: a captured `usage` object ≤ [`USAGE_CAP`] bytes, a string value (an
//! id) ≤ [`TEXT_CAP`] bytes, an SSE event name ≤ [`EVENT_CAP`] bytes; anything larger is
//! dropped, never grown.
//!
//! The request side lives here too: [`request_state_id`] (the provider-held state a request
//! refers to, for affinity routing) and [`inject_include_usage`] (ask a streaming chat
//! completion for its usage).

mod inject;
mod json_scan;
mod members;
mod request;
mod small;
mod sse;
mod usage;

#[cfg(test)]
mod tests;

use http::HeaderValue;

pub use inject::inject_include_usage;
pub use json_scan::{TEXT_CAP, USAGE_CAP};
pub use request::request_state_id;
pub use sse::EVENT_CAP;

use json_scan::{Flags, Found, Scanner};
use sse::Sse;

/// How a response body is framed, from its `content-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON document (`application/json`, `application/*+json`).
    Json,
    /// Server-sent events (`text/event-stream`) whose data are JSON documents.
    Sse,
    /// Anything else: not observed.
    Other,
}

impl Format {
    /// The format of a `content-type` value; case-insensitive, parameters ignored.
    pub fn from_content_type(value: Option<&HeaderValue>) -> Format {
        let Some(value) = value.and_then(|value| value.to_str().ok()) else {
            return Format::Other;
        };
        let essence = value.split(';').next().unwrap_or_default().trim();
        let (kind, subtype) = essence.split_once('/').unwrap_or((essence, ""));
        let suffix = subtype
            .len()
            .checked_sub(5)
            .and_then(|at| subtype.get(at..));
        if kind.eq_ignore_ascii_case("application")
            && (subtype.eq_ignore_ascii_case("json")
                || suffix.is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json")))
        {
            Format::Json
        } else if essence.eq_ignore_ascii_case("text/event-stream") {
            Format::Sse
        } else {
            Format::Other
        }
    }
}

/// Token counts of one response. Missing counts are 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens (`prompt_tokens`, `input_tokens`, `inputTokens`).
    pub input: u64,
    /// Generated tokens (`completion_tokens`, `output_tokens`, `outputTokens`).
    pub output: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached: u64,
    /// Generated tokens spent on reasoning.
    pub reasoning: u64,
}

/// The kind of provider-held state an id names, by its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// A stored Responses API response, `resp_…`.
    Response,
    /// A conversation, `conv_…`.
    Conversation,
    /// A stored chat completion, `chatcmpl-…`.
    ChatCompletion,
}

impl IdKind {
    /// The prefix every id of this kind starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Response => "resp_",
            IdKind::Conversation => "conv_",
            IdKind::ChatCompletion => "chatcmpl-",
        }
    }
}

/// The longest id body (after the prefix) [`StateId::parse`] accepts.
pub const MAX_ID_BODY: usize = 256;

/// An id of provider-held state, e.g. `resp_abc`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StateId {
    /// What the id names.
    pub kind: IdKind,
    /// The whole id, prefix included.
    pub value: Box<str>,
}

impl StateId {
    /// The id `value` is, by prefix: `resp_`, `conv_` or `chatcmpl-` followed by 1 to 256
    /// bytes of `[A-Za-z0-9_-]`. Anything else is `None`.
    pub fn parse(value: &str) -> Option<StateId> {
        let kind = [
            IdKind::Response,
            IdKind::Conversation,
            IdKind::ChatCompletion,
        ]
        .into_iter()
        .find(|kind| value.starts_with(kind.prefix()))?;
        let body = value.get(kind.prefix().len()..)?;
        let valid = (1..=MAX_ID_BODY).contains(&body.len())
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        valid.then(|| StateId {
            kind,
            value: value.into(),
        })
    }

    /// The whole id.
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// What an [`Observer`] looks for; what is not wanted costs nothing.
#[derive(Clone, Copy, Debug)]
pub struct Want {
    /// Token counts ([`Observer::usage`]).
    pub usage: bool,
    /// State ids ([`Seen::ids`]).
    pub ids: bool,
    /// The first generated token ([`Seen::first_token`]), SSE only.
    pub first_token: bool,
}

/// What one [`Observer::feed`] call saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// The first generated token arrived in this chunk (true on exactly one call at most).
    pub first_token: bool,
    /// State ids first seen in this chunk; each id is reported once per response.
    pub ids: Vec<StateId>,
}

/// Ids reported per response, at most (a document holds two or three of interest).
const MAX_REPORTED_IDS: usize = 4;

/// Watches one response body as it streams; see the module docs.
#[derive(Debug)]
pub struct Observer {
    format: Format,
    want: Want,
    scanner: Scanner,
    sse: Sse,
    usage: Option<Usage>,
    token_reported: bool,
    reported: Vec<StateId>,
}

impl Observer {
    /// An observer of a body in `format`, looking for what `want` asks.
    pub fn new(format: Format, want: Want) -> Observer {
        Observer {
            format,
            want,
            scanner: Scanner::new(),
            sse: Sse::new(want),
            usage: None,
            token_reported: false,
            reported: Vec::new(),
        }
    }

    /// Looks at the next frame of the body (any split point); never holds on to it.
    pub fn feed(&mut self, chunk: &[u8]) -> Seen {
        let mut found = Found::default();
        match self.format {
            Format::Json if self.want.usage || self.want.ids => {
                let flags = Flags {
                    usage: self.want.usage,
                    ids: self.want.ids,
                    token: false,
                    stream: false,
                };
                self.scanner.feed(chunk, flags, &mut found);
            }
            Format::Sse => self.sse.feed(chunk, &mut self.scanner, &mut found),
            Format::Json | Format::Other => {}
        }
        self.settle(found)
    }

    /// The last complete `usage` seen so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn settle(&mut self, found: Found) -> Seen {
        let mut seen = Seen::default();
        if let Some(usage) = found.usage.filter(|_| self.want.usage) {
            self.usage = Some(usage);
        }
        if found.token && self.want.first_token && !self.token_reported {
            self.token_reported = true;
            seen.first_token = true;
        }
        for id in found.ids {
            if self.want.ids
                && self.reported.len() < MAX_REPORTED_IDS
                && !self.reported.contains(&id)
            {
                self.reported.push(id.clone());
                seen.ids.push(id);
            }
        }
        seen
    }

    /// Bytes of body-derived state held right now, and the most it may ever hold.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> (usize, usize) {
        let held = self.scanner.held_bytes() + self.sse.held_bytes();
        let cap = USAGE_CAP + TEXT_CAP + json_scan::KEY_CAP + EVENT_CAP + sse::FIELD_CAP;
        (held, cap)
    }
}
