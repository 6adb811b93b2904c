//! The catalogue of built-in rules (PROTOCOL.md): names, descriptions, which are enabled,
//! and the body places and equality tests they read. `decide.rs` applies them.

use super::trie::Scalar;

macro_rules! builtin_rules {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// A built-in rule. Its [`name`](BuiltinRule::name) appears in metrics, response
        /// headers and `disabled_builtins`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum BuiltinRule { $(#[doc = $doc] $variant,)* }

        impl BuiltinRule {
            /// Every built-in rule, in the order of the module's table.
            pub const ALL: &'static [BuiltinRule] = &[$(BuiltinRule::$variant,)*];
            const NAMES: &'static [&'static str] = &[$($name,)*];

            /// The stable dotted name.
            pub const fn name(self) -> &'static str {
                match self { $(BuiltinRule::$variant => $name,)* }
            }

            /// One line on what the rule matches.
            pub const fn description(self) -> &'static str {
                match self { $(BuiltinRule::$variant => $doc,)* }
            }
        }
    };
}

builtin_rules! {
    HeaderMcpSession => "header.mcp_session",
        "a non-blank Mcp-Session-Id header on any path: an MCP streamable-HTTP session (stateful)";
    HeaderAgentcoreSession => "header.agentcore_session",
        "a non-blank X-Amzn-Bedrock-AgentCore-Runtime-Session-Id header on any path: an AgentCore session (stateful)";
    WebsocketUpgrade => "websocket.upgrade",
        "GET with Upgrade: websocket on /responses or /realtime*: the session lives on the connection (stateful)";
    ResponsesPreviousResponseId => "responses.previous_response_id",
        "POST /responses[/input_tokens|/compact] with previous_response_id not null (stateful)";
    ResponsesConversation => "responses.conversation",
        "POST /responses[/input_tokens|/compact] with conversation not null (stateful)";
    ResponsesBackground => "responses.background",
        "POST /responses with background: true, stored for polling (stateful)";
    ResponsesPrompt => "responses.prompt",
        "POST /responses with a prompt (stored prompt template) not null (stateful)";
    ResponsesStore => "responses.store",
        "POST /responses with store absent, null or anything but false: the API default stores (stateful)";
    ResponsesStateless => "responses.stateless",
        "POST /responses with store: false and no other marker (stateless)";
    ResponsesInputTokens => "responses.input_tokens",
        "POST /responses/input_tokens without a stored reference (stateless)";
    ResponsesCompact => "responses.compact",
        "POST /responses/compact without a stored reference (stateless)";
    ResponsesStoredObject => "responses.stored_object",
        "any other call under /responses: GET/DELETE /responses/{id}, cancel, input_items (stateful)";
    Conversations => "conversations",
        "/conversations* with any method (stateful)";
    ChatStore => "chat.store",
        "POST /chat/completions with store: true, a stored completion (stateful)";
    ChatStateless => "chat.stateless",
        "POST /chat/completions with store absent, null or false and no reference (stateless)";
    ChatStoredCompletions => "chat.stored_completions",
        "GET /chat/completions and /chat/completions/{id}*: stored completions (stateful)";
    Assistants => "assistants",
        "/assistants* with any method (stateful)";
    Threads => "threads",
        "/threads* (runs, steps, messages) with any method (stateful)";
    Realtime => "realtime",
        "/realtime and /realtime/* (calls, client_secrets, sessions, …) (stateful)";
    Resources => "resources",
        "files, uploads, vector_stores, batches, containers, evals, fine_tuning, skills, videos; DELETE /models/{id} (stateful)";
    StatelessEndpoints => "stateless.endpoints",
        "completions, embeddings, moderations, audio, images, models, Anthropic count_tokens (stateless)";
    BedrockInvoke => "bedrock.invoke",
        "Bedrock /model/{id}/converse[-stream] and /invoke[-with-response-stream] (stateless)";
    BedrockAsyncInvoke => "bedrock.async_invoke",
        "Bedrock /async-invoke*: an async job (stateful)";
    AgentcoreRuntime => "agentcore.runtime",
        "AgentCore /runtimes/{arn}/invocations, /stopruntimesession and anything under /runtimes (stateful)";
    AnthropicContainer => "anthropic.container",
        "Anthropic POST /messages with container not null (stateful)";
    AnthropicMessages => "anthropic.messages",
        "Anthropic POST /messages without container or reference (stateless)";
    AnthropicResources => "anthropic.resources",
        "Anthropic /messages/batches*, and /files* or /skills* sent with anthropic-version (stateful)";
    BodyFileReference => "body.file_reference",
        "a request body refers to an uploaded file by file_id (stateful)";
    BodyVectorStore => "body.vector_store",
        "a file_search tool names vector_store_ids (stateful)";
    BodyContainer => "body.container",
        "a code_interpreter tool names a container, by id or {\"type\": \"auto\"} (stateful)";
    BodyItemReference => "body.item_reference",
        "an input item of type item_reference points at a stored item (stateful)";
}

/// The rule of a decision no other rule made: stateless, marker "none". Cannot be disabled.
pub const DEFAULT_RULE: &str = "default";

/// Names of the built-in rules that `disabled_builtins` may name (not [`DEFAULT_RULE`]).
pub fn builtin_rule_names() -> &'static [&'static str] {
    BuiltinRule::NAMES
}

impl BuiltinRule {
    /// The rule with this name.
    pub fn from_name(name: &str) -> Option<BuiltinRule> {
        BuiltinRule::ALL.iter().copied().find(|r| r.name() == name)
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// Which built-in rules are on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Enabled(u64);

impl Enabled {
    pub(crate) fn new(builtins: bool, disabled: &[String]) -> Enabled {
        if !builtins {
            return Enabled(0);
        }
        let count = u32::try_from(BuiltinRule::ALL.len()).unwrap_or(u32::MAX);
        let mut bits = 1u64.checked_shl(count).map_or(u64::MAX, |b| b - 1);
        for rule in disabled.iter().filter_map(|n| BuiltinRule::from_name(n)) {
            bits &= !(1u64 << rule.index());
        }
        Enabled(bits)
    }

    pub(crate) fn has(self, rule: BuiltinRule) -> bool {
        self.0 & (1u64 << rule.index()) != 0
    }

    pub(crate) fn any(self, rules: &[BuiltinRule]) -> bool {
        rules.iter().any(|r| self.has(*r))
    }
}

/// A body place the built-ins read. Registered first, so its capture slot is its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Store,
    PreviousResponseId,
    Conversation,
    Background,
    Prompt,
    AnthropicContainer,
    InputFileId,
    InputOutputFileId,
    InputOutputObjectFileId,
    ChatFileId,
    AnthropicBlockFileId,
    AnthropicSourceFileId,
    AnthropicToolResultFileId,
    ToolImageMaskFileId,
    VectorStoreIds,
    ToolContainer,
    InputType,
}

use BuiltinRule as R;

impl Place {
    pub(crate) const ALL: &'static [Place] = &[
        Place::Store,
        Place::PreviousResponseId,
        Place::Conversation,
        Place::Background,
        Place::Prompt,
        Place::AnthropicContainer,
        Place::InputFileId,
        Place::InputOutputFileId,
        Place::InputOutputObjectFileId,
        Place::ChatFileId,
        Place::AnthropicBlockFileId,
        Place::AnthropicSourceFileId,
        Place::AnthropicToolResultFileId,
        Place::ToolImageMaskFileId,
        Place::VectorStoreIds,
        Place::ToolContainer,
        Place::InputType,
    ];

    /// The pointer, and the rules that read its presence (`/store` and `/background`: to
    /// refuse a value that is not a boolean, see `decide::invalid_marker`).
    pub(crate) const fn spec(self) -> (&'static str, &'static [BuiltinRule]) {
        match self {
            Place::Store => ("/store", &[R::ResponsesStore, R::ChatStore]),
            Place::PreviousResponseId => {
                ("/previous_response_id", &[R::ResponsesPreviousResponseId])
            }
            Place::Conversation => ("/conversation", &[R::ResponsesConversation]),
            Place::Background => ("/background", &[R::ResponsesBackground]),
            Place::Prompt => ("/prompt", &[R::ResponsesPrompt]),
            Place::AnthropicContainer => ("/container", &[R::AnthropicContainer]),
            Place::InputFileId => ("/input/*/content/*/file_id", &[R::BodyFileReference]),
            Place::InputOutputFileId => ("/input/*/output/*/file_id", &[R::BodyFileReference]),
            // computer_call_output: `output` is one `computer_screenshot` object.
            Place::InputOutputObjectFileId => ("/input/*/output/file_id", &[R::BodyFileReference]),
            Place::ChatFileId => (
                "/messages/*/content/*/file/file_id",
                &[R::BodyFileReference],
            ),
            Place::AnthropicBlockFileId => {
                ("/messages/*/content/*/file_id", &[R::BodyFileReference])
            }
            Place::AnthropicSourceFileId => (
                "/messages/*/content/*/source/file_id",
                &[R::BodyFileReference],
            ),
            Place::AnthropicToolResultFileId => (
                "/messages/*/content/*/content/*/source/file_id",
                &[R::BodyFileReference],
            ),
            // image_generation tool: a mask uploaded as a file.
            Place::ToolImageMaskFileId => {
                ("/tools/*/input_image_mask/file_id", &[R::BodyFileReference])
            }
            Place::VectorStoreIds => ("/tools/*/vector_store_ids", &[R::BodyVectorStore]),
            Place::ToolContainer => ("/tools/*/container", &[R::BodyContainer]),
            Place::InputType => ("/input/*/type", &[]),
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// A body equality test the built-ins use. Registered right after the places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Test {
    StoreTrue,
    StoreFalse,
    BackgroundTrue,
    BackgroundFalse,
    InputItemReference,
}

impl Test {
    pub(crate) const ALL: &'static [Test] = &[
        Test::StoreTrue,
        Test::StoreFalse,
        Test::BackgroundTrue,
        Test::BackgroundFalse,
        Test::InputItemReference,
    ];

    /// The place, the value it must equal, and the rules that use the test (both boolean
    /// tests of a marker: to tell a boolean from anything else).
    pub(crate) fn spec(self) -> (Place, Scalar, &'static [BuiltinRule]) {
        const STORE: &[BuiltinRule] = &[R::ResponsesStore, R::ChatStore];
        const BACKGROUND: &[BuiltinRule] = &[R::ResponsesBackground];
        match self {
            Test::StoreTrue => (Place::Store, Scalar::Bool(true), STORE),
            Test::StoreFalse => (Place::Store, Scalar::Bool(false), STORE),
            Test::BackgroundTrue => (Place::Background, Scalar::Bool(true), BACKGROUND),
            Test::BackgroundFalse => (Place::Background, Scalar::Bool(false), BACKGROUND),
            Test::InputItemReference => (
                Place::InputType,
                Scalar::Str("item_reference".into()),
                &[R::BodyItemReference],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::pointer::Pointer;

    #[test]
    fn places_and_tests_are_listed_in_declaration_order() {
        for (i, place) in Place::ALL.iter().enumerate() {
            assert_eq!(place.index(), i, "{place:?}");
            assert!(place.spec().0.parse::<Pointer>().is_ok(), "{place:?}");
        }
        for (i, test) in Test::ALL.iter().enumerate() {
            assert_eq!(*test as usize, i, "{test:?}");
        }
    }
}
