//! Classification: (method, path, headers, body bytes) → [`Decision`] {class, rule, marker,
//! route}. Owns the built-in rules (PROTOCOL.md), operator rules, path normalisation, route
//! labels and the streaming body scanner.
//!
//! # Phases
//!
//! 1. [`Classifier::inspect`] looks at the head only. Most requests are decided here.
//! 2. When a rule needs the body it returns [`Inspection::NeedsBody`]; the proxy buffers the
//!    body and calls [`PendingBody::finish`], which scans it in one streaming pass.
//!
//! # Order of evaluation (first match wins)
//!
//! 1. Path normalisation (`path.rs`): a path two parsers could read differently →
//!    [`UnclassifiableReason::AmbiguousPath`] (always refused, whatever the policy):
//!    empty segments (`//v1/x`, `/v1//x`; one trailing `/` is fine), `.`/`..` segments (also
//!    `%2e`), `\` (raw or `%5C`), an encoded `/` (`%2F`) outside an ARN slot, an encoded `?`
//!    or `#`, `;` (raw or `%3B`), invalid percent-encoding or escapes that are not UTF-8,
//!    and NUL/control bytes (raw or decoded); and a case variant of a known path (a path
//!    that matches no template as sent but does once ASCII-lowercased, `/v1/Files`). The
//!    proxy forwards the raw path, so the classifier must only accept paths every upstream
//!    splits, decodes and matches as it does.
//! 2. Operator rules, in order. A rule with body conditions whose head conditions match
//!    defers to the body; later rules and the built-ins are then evaluated after the scan.
//! 3. Header built-ins (any path): `header.mcp_session`, `header.agentcore_session`. Only a
//!    value that is not blank (spaces and tabs trimmed) is a marker; an empty header is
//!    treated as absent.
//! 4. `websocket.upgrade`: a `GET` with `Upgrade: websocket` on `/responses` and
//!    `/realtime*`. Other methods go on to the route's rules: a handshake is a GET, and the
//!    proxy strips `Upgrade` from anything else, so the upstream sees a plain request.
//! 5. The route's built-ins (table below); a disabled one is skipped and the next check runs.
//! 6. `default`: stateless, marker `none`.
//!
//! # Routes and built-in rules
//!
//! Prefixes recognised (longest first): the configured base path (default `/v1`),
//! `/openai/v1`, `/openai/deployments/{deployment}`, `/openai` and `/v1` (whatever the base,
//! so `/v1/responses` is known under base `/api` or the root too; a base equal to a built-in
//! prefix is one prefix, and labels are never duplicated). The API path after the prefix
//! is matched against the table; Bedrock and AgentCore paths match at the root or under the
//! base path. Labels are prefix + template (`/v1/responses/{id}`), or `other`; with five
//! prefixes plus the root the table stays under 700 labels.
//!
//! | API path | Method | Rule(s), in order | Class |
//! |---|---|---|---|
//! | `/responses` | POST | `responses.previous_response_id`, `.conversation`, `.background`, `.prompt`, `body.*` references, `responses.store` (store not `false`), `responses.stateless` | body |
//! | `/responses/input_tokens`, `/responses/compact` | POST | `responses.previous_response_id`, `.conversation`, `body.*`, then `responses.input_tokens` / `responses.compact` | body |
//! | `/responses…` (any other method or sub-path) | any | `responses.stored_object` | stateful |
//! | `/conversations*` | any | `conversations` | stateful |
//! | `/chat/completions` | POST | `chat.store` (`store: true`), `body.*`, `chat.stateless` | body |
//! | `/chat/completions` (not POST), `/chat/completions/{id}*` | any | `chat.stored_completions` | stateful |
//! | `/assistants*`, `/threads*`, `/realtime*` | any | `assistants`, `threads`, `realtime` | stateful |
//! | `/files*`, `/skills*` | any | `anthropic.resources` if `anthropic-version` is sent, else `resources` | stateful |
//! | `/uploads*`, `/vector_stores*`, `/batches*`, `/containers*`, `/evals*`, `/fine_tuning/*`, `/videos*` | any | `resources` | stateful |
//! | `/models/{id}` | DELETE | `resources` (deletes a fine-tuned model) | stateful |
//! | `/models`, `/models/{id}`, `/completions`, `/embeddings`, `/moderations`, `/audio/{speech,transcriptions,translations}`, `/images/*`, `/messages/count_tokens` | any other | `stateless.endpoints` | stateless |
//! | `/messages` (Anthropic) | POST | `anthropic.container`, `body.*`, `anthropic.messages` | body |
//! | `/messages` | not POST | `default` | stateless |
//! | `/messages/batches*` | any | `anthropic.resources` | stateful |
//! | `/model/{id}/{converse,converse-stream,invoke,invoke-with-response-stream}` | any | `bedrock.invoke` | stateless |
//! | `/async-invoke*` | any | `bedrock.async_invoke` | stateful |
//! | `/runtimes/{arn}/invocations`, `/stopruntimesession`, any `/runtimes/*` | any | `agentcore.runtime` | stateful |
//! | anything else | any | `default` | stateless |
//!
//! `body.*` references (checked on every body route): `body.file_reference`
//! (`/input/*/content/*/file_id`, `/input/*/output/*/file_id`, `/input/*/output/file_id`
//! (a `computer_call_output` screenshot), `/messages/*/content/*/file/file_id`,
//! `/messages/*/content/*/file_id`, `/messages/*/content/*/source/file_id`,
//! `/messages/*/content/*/content/*/source/file_id`, `/tools/*/input_image_mask/file_id`
//! (an `image_generation` mask)),
//! `body.vector_store` (`/tools/*/vector_store_ids`), `body.container`
//! (`/tools/*/container`), `body.item_reference` (`/input/*/type` = `"item_reference"`).
//! "Present" always means present and not null; `store: null` counts as absent.
//!
//! Marker values: on `POST /responses`, `store` and `background`, and on
//! `POST /chat/completions`, `store`, must be `true`, `false` or `null` (absent). Anything
//! else (`0`, `1`, `"false"`, an object, …) is refused with
//! [`UnclassifiableReason::InvalidMarker`] (`invalid_marker`) before the route's built-ins
//! run, since providers disagree on coercing it. Only fields a rule that is on reads are
//! checked (`store` by `responses.store` / `chat.store`, `background` by
//! `responses.background`); operator rules with body conditions are evaluated first.
//!
//! Refusal codes ([`UnclassifiableReason::code`], a bounded set): `invalid_json`,
//! `not_an_object`, `duplicate_key`, `encoded_body`, `invalid_marker`, `ambiguous_path`.
//!
//! Decisions on cases PROTOCOL.md leaves open:
//! - Non-POST calls on the body routes of `/responses` hit the stored-object shape
//!   (`GET /responses/input_tokens` is `GET /responses/{id}` to the provider): stateful.
//! - Unknown sub-paths of a stateful family (`/files/{id}/x/y`) stay stateful, labelled
//!   with the family's `/*` template; `/runtimes/*` is stateful (everything there is
//!   session-bound).
//! - Reference markers also apply to `input_tokens`/`compact`: the referenced object lives
//!   in one cloud only, so only that cloud can count or compact it.
//! - A wildcard pointer holds if any element it reaches holds; `body_absent` holds when no
//!   element has the member non-null.
//! - A body is needed only when a rule that can still decide reads it; a body route whose
//!   built-ins are all disabled is decided by `default` from the head.
//! - The last rule of each body route (`responses.stateless`, `responses.input_tokens`,
//!   `responses.compact`, `chat.stateless`, `anthropic.messages`) matches whatever reaches
//!   it, so disabling `responses.store` makes a body without `store` stateless.
//! - `/files*` and `/skills*` exist in both OpenAI's and Anthropic's APIs under `/v1`; the
//!   `anthropic-version` header (always sent by Anthropic clients) picks the rule name.
//! - Path literals are compared case-sensitively, but some front ends (Azure APIM) match
//!   them case-insensitively: a path that matches no template as sent but does once
//!   ASCII-lowercased (`/V1/Responses`, `/openai/deployments/d/Chat/Completions`) is
//!   refused as `AmbiguousPath`. Capitals in parameter segments (deployments, ids, ARNs)
//!   are fine: such a path matches as sent. A path that matches one template as sent and
//!   another lowercased (`/v1/responses/Compact` is `/responses/{id}`) is classified as
//!   sent.
//! - Segments are percent-decoded before matching (`/v1/%72esponses` is `/v1/responses`):
//!   decoding letters cannot change the split, and upstreams decode them alike.
//! - ARN slots: the segment after `runtimes` (AgentCore) and after `model` or `async-invoke`
//!   (Bedrock) may hold a URL-encoded ARN with `%2F`, as AWS clients send it
//!   (`/runtimes/arn%3Aaws%3A…%3Aruntime%2Fmy_agent/invocations`). It is matched as one
//!   segment, and accepted only when it is that route's `{arn}`/`{id}` segment (right after
//!   `runtimes`/`model`/`async-invoke` at the root or under the base path), none of its
//!   `/`-separated parts is empty, `.` or `..`, and reading its `/` as separators resolves to
//!   the same family (the AWS templates match a multi-segment, unencoded ARN too). Every
//!   other `%2F` is refused: `/v1/files%2Ffile-abc` would be `default` here but
//!   `/v1/files/{id}` to an upstream that decodes it.
//! - A single trailing `/` is ignored (`/v1/files/` is `/v1/files`); other empty segments
//!   are refused, since `//v1/responses` escapes the proxy's base-path mapping.
//! - An escaped `%` (`%25`) is decoded once, as RFC 3986 says; an upstream that decodes twice
//!   is not defended against.
//!
//! # Files
//!
//! `engine.rs` (the [`Classifier`] and its phases), `builtin.rs` (rule catalogue),
//! `decide.rs` (applying built-ins), `rules.rs` (operator rules, [`PathPattern`]),
//! `route.rs` (templates, slice patterns), `labels.rs` (prefixes, label table), `path.rs`
//! (normalisation), `pointer.rs` ([`Pointer`]), `trie.rs` (compiled pointers), `body.rs`
//! (the streaming scan), `bits.rs` (small bit set), `tests/` (whole-classifier tests).

mod bits;
mod body;
mod builtin;
mod decide;
mod engine;
mod labels;
mod path;
mod pointer;
mod route;
mod rules;
#[cfg(test)]
mod tests;
mod trie;

use std::fmt;
use std::sync::Arc;

pub use builtin::{builtin_rule_names, BuiltinRule, DEFAULT_RULE};
pub use engine::{Classifier, Inspection, PendingBody};
pub use pointer::{Pointer, PointerError};
pub use rules::{PathPattern, PatternError, RuleSpec};

/// Which upstream class a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Keeps nothing at the provider: goes to the primary.
    Stateless,
    /// Creates, reads, continues or deletes provider-side state.
    Stateful,
}

impl Class {
    pub const ALL: [Class; 2] = [Class::Stateless, Class::Stateful];

    pub const fn as_str(self) -> &'static str {
        match self {
            Class::Stateless => "stateless",
            Class::Stateful => "stateful",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bounded route label id (index into the classifier's label table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId(u16);

impl RouteId {
    /// The `other` label: no template matched.
    pub const OTHER: RouteId = RouteId(0);

    /// Position in [`Classifier::route_labels`] (dense, from 0), e.g. for metric arrays.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// The outcome of classification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub class: Class,
    /// The deciding rule: a built-in name, an operator rule's name, or `default`.
    pub rule: Arc<str>,
    pub marker: Marker,
    pub route: RouteId,
}

/// Where the deciding fact was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerKind {
    Path,
    Body,
    Header,
    Default,
}

impl MarkerKind {
    /// Bounded label value: "path", "body", "header" or "none".
    pub const fn as_str(self) -> &'static str {
        match self {
            MarkerKind::Path => "path",
            MarkerKind::Body => "body",
            MarkerKind::Header => "header",
            MarkerKind::Default => "none",
        }
    }
}

/// The deciding fact: a route template or rule pattern, a body pointer, or a header name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    pub kind: MarkerKind,
    /// `/v1/conversations/{id}`, `/previous_response_id`, `mcp-session-id`; "none" for Default.
    pub text: Arc<str>,
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            MarkerKind::Default => f.write_str("none"),
            kind => write!(f, "{}:{}", kind.as_str(), self.text),
        }
    }
}

/// Inputs of [`Classifier::new`], already validated by the config module.
#[derive(Clone, Debug)]
pub struct ClassifierSettings {
    /// Client-facing API base: starts with '/', no trailing '/', e.g. "/v1"; "" is the root.
    pub base_path: String,
    /// `false`: no built-in rules at all (only operator rules and `default`).
    pub builtins: bool,
    /// Names from [`builtin_rule_names`]; any other name (including `default`) is ignored.
    pub disabled_builtins: Vec<String>,
    /// Evaluated before the built-ins, in order; the first match wins.
    pub rules: Vec<RuleSpec>,
}

/// A request that cannot be classified; the proxy refuses it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Unclassifiable {
    pub route: RouteId,
    pub reason: UnclassifiableReason,
}

/// Why a request cannot be classified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnclassifiableReason {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("request body has duplicate key {0}; cannot tell which one the provider will use")]
    DuplicateKey(String),
    #[error("cannot inspect a request body with content-encoding {0}")]
    Encoded(String),
    /// A marker the built-ins read (`/store`, `/background`) holds something other than
    /// `true`, `false` or `null`: providers disagree on coercing it.
    #[error("request body field {0} must be true, false or null")]
    InvalidMarker(String),
    #[error(
        "request path is ambiguous (empty, '.' or '..' segments, encoded '/' or '\\', ';', \
         bad percent-encoding or a case variant of a known path); upstreams may read it \
         differently"
    )]
    AmbiguousPath,
}

impl UnclassifiableReason {
    /// Bounded code for metrics and error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            UnclassifiableReason::InvalidJson(_) => "invalid_json",
            UnclassifiableReason::NotAnObject => "not_an_object",
            UnclassifiableReason::DuplicateKey(_) => "duplicate_key",
            UnclassifiableReason::Encoded(_) => "encoded_body",
            UnclassifiableReason::InvalidMarker(_) => "invalid_marker",
            UnclassifiableReason::AmbiguousPath => "ambiguous_path",
        }
    }
}
