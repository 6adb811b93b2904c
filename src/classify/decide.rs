//! Applying the built-in rules: from the head (header markers, route families) and, on the
//! body routes, from the scanned body facts, in a fixed order per route.

use http::header::UPGRADE;
use http::{HeaderMap, HeaderName, Method};

use super::body::Facts;
use super::builtin::{BuiltinRule, Enabled, Place, Test};
use super::route::{Family, Tpl};
use super::Class;

use BuiltinRule as R;

/// Where the deciding fact was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The route itself.
    Path,
    Header(Hdr),
    Body(Place),
}

/// Headers the built-ins read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hdr {
    McpSession,
    AgentcoreSession,
    Upgrade,
}

pub(crate) static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
pub(crate) static AGENTCORE_SESSION_ID: HeaderName =
    HeaderName::from_static("x-amzn-bedrock-agentcore-runtime-session-id");
static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

impl Hdr {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Hdr::McpSession => MCP_SESSION_ID.as_str(),
            Hdr::AgentcoreSession => AGENTCORE_SESSION_ID.as_str(),
            Hdr::Upgrade => UPGRADE.as_str(),
        }
    }
}

/// A built-in decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) rule: BuiltinRule,
    pub(crate) class: Class,
    pub(crate) found: Found,
}

/// The POST routes whose class depends on the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyRoute {
    Responses,
    InputTokens,
    Compact,
    Chat,
    Messages,
}

/// What the built-ins make of a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Head {
    Hit(Hit),
    NeedsBody(BodyRoute),
    /// No built-in applies: the default rule decides.
    Miss,
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers.get_all(UPGRADE).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    })
}

/// A session header counts only with a value that is not blank (spaces and tabs trimmed);
/// an empty `Mcp-Session-Id:` is treated as absent.
fn has_session(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| v.as_bytes().iter().any(|b| *b != b' ' && *b != b'\t'))
}

/// The built-in decision from the head alone, or the body route that needs the body.
pub(crate) fn head(on: Enabled, method: &Method, headers: &HeaderMap, tpl: Option<Tpl>) -> Head {
    let hit = |rule, class, found| {
        if on.has(rule) {
            Head::Hit(Hit { rule, class, found })
        } else {
            Head::Miss
        }
    };
    use Class::{Stateful, Stateless};
    if on.has(R::HeaderMcpSession) && has_session(headers, &MCP_SESSION_ID) {
        return hit(
            R::HeaderMcpSession,
            Stateful,
            Found::Header(Hdr::McpSession),
        );
    }
    if on.has(R::HeaderAgentcoreSession) && has_session(headers, &AGENTCORE_SESSION_ID) {
        return hit(
            R::HeaderAgentcoreSession,
            Stateful,
            Found::Header(Hdr::AgentcoreSession),
        );
    }
    let Some(tpl) = tpl else {
        return Head::Miss;
    };
    let family = tpl.family();
    // A WebSocket handshake is a GET; the proxy strips `Upgrade` from anything else, which
    // then reaches the upstream as a plain request and is classified like one.
    let websocket_route = tpl == Tpl::Responses || family == Family::Realtime;
    let handshake = websocket_route && method == Method::GET;
    if on.has(R::WebsocketUpgrade) && handshake && is_websocket(headers) {
        return hit(R::WebsocketUpgrade, Stateful, Found::Header(Hdr::Upgrade));
    }
    let body = |route: BodyRoute| {
        if on.any(chain(route)) {
            Head::NeedsBody(route)
        } else {
            Head::Miss
        }
    };
    let path = |rule, class| hit(rule, class, Found::Path);
    let post = method == Method::POST;
    match family {
        Family::ResponsesCreate if post => body(BodyRoute::Responses),
        Family::ResponsesInputTokens if post => body(BodyRoute::InputTokens),
        Family::ResponsesCompact if post => body(BodyRoute::Compact),
        Family::ResponsesCreate
        | Family::ResponsesInputTokens
        | Family::ResponsesCompact
        | Family::ResponsesStored => path(R::ResponsesStoredObject, Stateful),
        Family::Conversations => path(R::Conversations, Stateful),
        Family::ChatCreate if post => body(BodyRoute::Chat),
        Family::ChatCreate | Family::ChatStored => path(R::ChatStoredCompletions, Stateful),
        Family::Assistants => path(R::Assistants, Stateful),
        Family::Threads => path(R::Threads, Stateful),
        Family::Realtime => path(R::Realtime, Stateful),
        Family::Resource => path(R::Resources, Stateful),
        Family::SharedResource
            if on.has(R::AnthropicResources) && headers.contains_key(&ANTHROPIC_VERSION) =>
        {
            path(R::AnthropicResources, Stateful)
        }
        Family::SharedResource => path(R::Resources, Stateful),
        Family::Model if method == Method::DELETE => path(R::Resources, Stateful),
        Family::Models | Family::Model | Family::Stateless => {
            path(R::StatelessEndpoints, Stateless)
        }
        Family::AnthropicMessages if post => body(BodyRoute::Messages),
        Family::AnthropicMessages => Head::Miss,
        Family::AnthropicBatches => path(R::AnthropicResources, Stateful),
        Family::BedrockInvoke => path(R::BedrockInvoke, Stateless),
        Family::BedrockAsyncInvoke => path(R::BedrockAsyncInvoke, Stateful),
        Family::AgentCoreRuntime => path(R::AgentcoreRuntime, Stateful),
    }
}

/// The rules checked, in order, on each body route.
pub(crate) const fn chain(route: BodyRoute) -> &'static [BuiltinRule] {
    const REFS: [BuiltinRule; 4] = [
        R::BodyFileReference,
        R::BodyVectorStore,
        R::BodyContainer,
        R::BodyItemReference,
    ];
    match route {
        BodyRoute::Responses => &[
            R::ResponsesPreviousResponseId,
            R::ResponsesConversation,
            R::ResponsesBackground,
            R::ResponsesPrompt,
            REFS[0],
            REFS[1],
            REFS[2],
            REFS[3],
            R::ResponsesStore,
            R::ResponsesStateless,
        ],
        BodyRoute::InputTokens => &[
            R::ResponsesPreviousResponseId,
            R::ResponsesConversation,
            REFS[0],
            REFS[1],
            REFS[2],
            REFS[3],
            R::ResponsesInputTokens,
        ],
        BodyRoute::Compact => &[
            R::ResponsesPreviousResponseId,
            R::ResponsesConversation,
            REFS[0],
            REFS[1],
            REFS[2],
            REFS[3],
            R::ResponsesCompact,
        ],
        BodyRoute::Chat => &[
            R::ChatStore,
            REFS[0],
            REFS[1],
            REFS[2],
            REFS[3],
            R::ChatStateless,
        ],
        BodyRoute::Messages => &[
            R::AnthropicContainer,
            REFS[0],
            REFS[1],
            REFS[2],
            REFS[3],
            R::AnthropicMessages,
        ],
    }
}

/// Whether `rule` holds for the body facts; `slot`/`test` map built-in places and tests to
/// their capture numbers.
fn check(
    rule: BuiltinRule,
    facts: &Facts,
    slot: impl Fn(Place) -> usize,
    test: impl Fn(Test) -> usize,
) -> Option<Hit> {
    use Class::{Stateful, Stateless};
    let present = |place: Place| facts.present(slot(place)).then_some(place);
    let stateful = |place: Option<Place>| {
        place.map(|p| Hit {
            rule,
            class: Stateful,
            found: Found::Body(p),
        })
    };
    let stateless = |found| {
        Some(Hit {
            rule,
            class: Stateless,
            found,
        })
    };
    match rule {
        R::ResponsesPreviousResponseId => stateful(present(Place::PreviousResponseId)),
        R::ResponsesConversation => stateful(present(Place::Conversation)),
        R::ResponsesBackground => stateful(
            facts
                .matched(test(Test::BackgroundTrue))
                .then_some(Place::Background),
        ),
        R::ResponsesPrompt => stateful(present(Place::Prompt)),
        R::BodyFileReference => stateful(
            [
                Place::InputFileId,
                Place::InputOutputFileId,
                Place::InputOutputObjectFileId,
                Place::ChatFileId,
                Place::AnthropicBlockFileId,
                Place::AnthropicSourceFileId,
                Place::AnthropicToolResultFileId,
                Place::ToolImageMaskFileId,
            ]
            .into_iter()
            .find_map(present),
        ),
        R::BodyVectorStore => stateful(present(Place::VectorStoreIds)),
        R::BodyContainer => stateful(present(Place::ToolContainer)),
        R::BodyItemReference => stateful(
            facts
                .matched(test(Test::InputItemReference))
                .then_some(Place::InputType),
        ),
        R::ResponsesStore => {
            stateful((!facts.matched(test(Test::StoreFalse))).then_some(Place::Store))
        }
        R::ChatStore => stateful(facts.matched(test(Test::StoreTrue)).then_some(Place::Store)),
        R::AnthropicContainer => stateful(present(Place::AnthropicContainer)),
        R::ResponsesStateless | R::ChatStateless => stateless(Found::Body(Place::Store)),
        R::ResponsesInputTokens | R::ResponsesCompact | R::AnthropicMessages => {
            stateless(Found::Path)
        }
        _ => None,
    }
}

/// A marker on `route` holding something other than `true`, `false` or `null` (`0`,
/// `"false"`, an object, …), when a rule that is on reads it: providers disagree on
/// coercing such values, so the request cannot be classified.
pub(crate) fn invalid_marker(
    on: Enabled,
    route: BodyRoute,
    facts: &Facts,
    slot: impl Fn(Place) -> usize,
    test: impl Fn(Test) -> usize,
) -> Option<Place> {
    let not_bool = |place: Place, yes: Test, no: Test| {
        facts.present(slot(place)) && !facts.matched(test(yes)) && !facts.matched(test(no))
    };
    let store = || not_bool(Place::Store, Test::StoreTrue, Test::StoreFalse);
    let background = || {
        not_bool(
            Place::Background,
            Test::BackgroundTrue,
            Test::BackgroundFalse,
        )
    };
    match route {
        BodyRoute::Responses if on.has(R::ResponsesStore) && store() => Some(Place::Store),
        BodyRoute::Responses if on.has(R::ResponsesBackground) && background() => {
            Some(Place::Background)
        }
        BodyRoute::Chat if on.has(R::ChatStore) && store() => Some(Place::Store),
        _ => None,
    }
}

/// The built-in decision on a body route, or `None` (the default rule decides).
pub(crate) fn body(
    on: Enabled,
    route: BodyRoute,
    facts: &Facts,
    slot: impl Fn(Place) -> usize + Copy,
    test: impl Fn(Test) -> usize + Copy,
) -> Option<Hit> {
    chain(route)
        .iter()
        .filter(|rule| on.has(**rule))
        .find_map(|rule| check(*rule, facts, slot, test))
}
