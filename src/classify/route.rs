//! The route table: API path shapes (slice patterns) → route template + endpoint family.
//!
//! Each [`Tpl`] is one bounded route template; [`api`] and [`aws`] map a segment slice to it
//! with slice patterns, and [`Tpl::family`] tells the built-in rules what kind of endpoint it
//! is. Labels (prefix + template) are assembled in `labels.rs`.

/// What kind of endpoint a template is; the built-in rules decide per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// `/responses`: body decides on POST.
    ResponsesCreate,
    /// `/responses/input_tokens`: body decides on POST.
    ResponsesInputTokens,
    /// `/responses/compact`: body decides on POST.
    ResponsesCompact,
    /// `/responses/{id}…`: stored responses.
    ResponsesStored,
    Conversations,
    /// `/chat/completions`: body decides on POST.
    ChatCreate,
    /// `/chat/completions/{id}…`: stored completions.
    ChatStored,
    Assistants,
    Threads,
    Realtime,
    /// OpenAI server-side resources (uploads, vector stores, batches, …).
    Resource,
    /// `/files*`, `/skills*`: OpenAI's or Anthropic's (told apart by `anthropic-version`).
    SharedResource,
    /// `/models`.
    Models,
    /// `/models/{id}`: DELETE removes a fine-tuned model.
    Model,
    /// Inference endpoints that keep nothing.
    Stateless,
    /// Anthropic `/messages`: body decides on POST.
    AnthropicMessages,
    /// Anthropic `/messages/batches*`.
    AnthropicBatches,
    BedrockInvoke,
    BedrockAsyncInvoke,
    AgentCoreRuntime,
}

impl Family {
    /// Matched at the root (and under the base path), not under the OpenAI-style prefixes.
    pub(crate) const fn is_aws(self) -> bool {
        matches!(
            self,
            Family::BedrockInvoke | Family::BedrockAsyncInvoke | Family::AgentCoreRuntime
        )
    }
}

macro_rules! templates {
    ($($variant:ident => $path:literal, $family:ident;)*) => {
        /// A route template (relative to its prefix).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Tpl { $($variant,)* }

        impl Tpl {
            pub(crate) const ALL: &'static [Tpl] = &[$(Tpl::$variant,)*];

            pub(crate) const fn path(self) -> &'static str {
                match self { $(Tpl::$variant => $path,)* }
            }

            pub(crate) const fn family(self) -> Family {
                match self { $(Tpl::$variant => Family::$family,)* }
            }

            pub(crate) const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

templates! {
    Responses => "/responses", ResponsesCreate;
    ResponsesInputTokens => "/responses/input_tokens", ResponsesInputTokens;
    ResponsesCompact => "/responses/compact", ResponsesCompact;
    Response => "/responses/{id}", ResponsesStored;
    ResponseCancel => "/responses/{id}/cancel", ResponsesStored;
    ResponseInputItems => "/responses/{id}/input_items", ResponsesStored;
    ResponsesAny => "/responses/*", ResponsesStored;
    Conversations => "/conversations", Conversations;
    Conversation => "/conversations/{id}", Conversations;
    ConversationItems => "/conversations/{id}/items", Conversations;
    ConversationItem => "/conversations/{id}/items/{item_id}", Conversations;
    ConversationsAny => "/conversations/*", Conversations;
    ChatCompletions => "/chat/completions", ChatCreate;
    ChatCompletion => "/chat/completions/{id}", ChatStored;
    ChatCompletionMessages => "/chat/completions/{id}/messages", ChatStored;
    ChatCompletionsAny => "/chat/completions/*", ChatStored;
    Completions => "/completions", Stateless;
    Embeddings => "/embeddings", Stateless;
    Moderations => "/moderations", Stateless;
    AudioSpeech => "/audio/speech", Stateless;
    AudioTranscriptions => "/audio/transcriptions", Stateless;
    AudioTranslations => "/audio/translations", Stateless;
    ImagesGenerations => "/images/generations", Stateless;
    ImagesEdits => "/images/edits", Stateless;
    ImagesVariations => "/images/variations", Stateless;
    ImagesAny => "/images/*", Stateless;
    Models => "/models", Models;
    Model => "/models/{id}", Model;
    Assistants => "/assistants", Assistants;
    Assistant => "/assistants/{id}", Assistants;
    AssistantsAny => "/assistants/*", Assistants;
    Threads => "/threads", Threads;
    ThreadsRuns => "/threads/runs", Threads;
    Thread => "/threads/{id}", Threads;
    ThreadMessages => "/threads/{id}/messages", Threads;
    ThreadMessage => "/threads/{id}/messages/{message_id}", Threads;
    ThreadRuns => "/threads/{id}/runs", Threads;
    ThreadRun => "/threads/{id}/runs/{run_id}", Threads;
    ThreadRunCancel => "/threads/{id}/runs/{run_id}/cancel", Threads;
    ThreadRunToolOutputs => "/threads/{id}/runs/{run_id}/submit_tool_outputs", Threads;
    ThreadRunSteps => "/threads/{id}/runs/{run_id}/steps", Threads;
    ThreadRunStep => "/threads/{id}/runs/{run_id}/steps/{step_id}", Threads;
    ThreadsAny => "/threads/*", Threads;
    Realtime => "/realtime", Realtime;
    RealtimeCalls => "/realtime/calls", Realtime;
    RealtimeClientSecrets => "/realtime/client_secrets", Realtime;
    RealtimeSessions => "/realtime/sessions", Realtime;
    RealtimeTranscriptionSessions => "/realtime/transcription_sessions", Realtime;
    RealtimeAny => "/realtime/*", Realtime;
    Files => "/files", SharedResource;
    File => "/files/{id}", SharedResource;
    FileContent => "/files/{id}/content", SharedResource;
    FilesAny => "/files/*", SharedResource;
    Skills => "/skills", SharedResource;
    Skill => "/skills/{id}", SharedResource;
    SkillsAny => "/skills/*", SharedResource;
    Uploads => "/uploads", Resource;
    UploadParts => "/uploads/{id}/parts", Resource;
    UploadComplete => "/uploads/{id}/complete", Resource;
    UploadCancel => "/uploads/{id}/cancel", Resource;
    UploadsAny => "/uploads/*", Resource;
    VectorStores => "/vector_stores", Resource;
    VectorStore => "/vector_stores/{id}", Resource;
    VectorStoreFiles => "/vector_stores/{id}/files", Resource;
    VectorStoreFile => "/vector_stores/{id}/files/{file_id}", Resource;
    VectorStoreFileBatches => "/vector_stores/{id}/file_batches", Resource;
    VectorStoreSearch => "/vector_stores/{id}/search", Resource;
    VectorStoresAny => "/vector_stores/*", Resource;
    Batches => "/batches", Resource;
    Batch => "/batches/{id}", Resource;
    BatchCancel => "/batches/{id}/cancel", Resource;
    BatchesAny => "/batches/*", Resource;
    Containers => "/containers", Resource;
    Container => "/containers/{id}", Resource;
    ContainerFiles => "/containers/{id}/files", Resource;
    ContainerFile => "/containers/{id}/files/{file_id}", Resource;
    ContainerFileContent => "/containers/{id}/files/{file_id}/content", Resource;
    ContainersAny => "/containers/*", Resource;
    Evals => "/evals", Resource;
    Eval => "/evals/{id}", Resource;
    EvalRuns => "/evals/{id}/runs", Resource;
    EvalRun => "/evals/{id}/runs/{run_id}", Resource;
    EvalsAny => "/evals/*", Resource;
    FineTuningJobs => "/fine_tuning/jobs", Resource;
    FineTuningJob => "/fine_tuning/jobs/{id}", Resource;
    FineTuningAny => "/fine_tuning/*", Resource;
    Videos => "/videos", Resource;
    Video => "/videos/{id}", Resource;
    VideoContent => "/videos/{id}/content", Resource;
    VideosAny => "/videos/*", Resource;
    Messages => "/messages", AnthropicMessages;
    MessagesCountTokens => "/messages/count_tokens", Stateless;
    MessageBatches => "/messages/batches", AnthropicBatches;
    MessageBatch => "/messages/batches/{id}", AnthropicBatches;
    MessageBatchResults => "/messages/batches/{id}/results", AnthropicBatches;
    MessageBatchCancel => "/messages/batches/{id}/cancel", AnthropicBatches;
    MessageBatchesAny => "/messages/batches/*", AnthropicBatches;
    BedrockConverse => "/model/{id}/converse", BedrockInvoke;
    BedrockConverseStream => "/model/{id}/converse-stream", BedrockInvoke;
    BedrockInvoke => "/model/{id}/invoke", BedrockInvoke;
    BedrockInvokeStream => "/model/{id}/invoke-with-response-stream", BedrockInvoke;
    AsyncInvokes => "/async-invoke", BedrockAsyncInvoke;
    AsyncInvoke => "/async-invoke/{arn}", BedrockAsyncInvoke;
    AsyncInvokeAny => "/async-invoke/*", BedrockAsyncInvoke;
    RuntimeInvocations => "/runtimes/{arn}/invocations", AgentCoreRuntime;
    RuntimeStopSession => "/runtimes/{arn}/stopruntimesession", AgentCoreRuntime;
    RuntimesAny => "/runtimes/*", AgentCoreRuntime;
}

/// Matches an API path (segments after a recognised prefix) against the OpenAI-shaped table,
/// which also holds Anthropic's `/messages…`, `/files…` and `/skills…`.
pub(crate) fn api(segs: &[&str]) -> Option<Tpl> {
    use Tpl as T;
    Some(match segs {
        ["responses"] => T::Responses,
        ["responses", "input_tokens"] => T::ResponsesInputTokens,
        ["responses", "compact"] => T::ResponsesCompact,
        ["responses", _] => T::Response,
        ["responses", _, "cancel"] => T::ResponseCancel,
        ["responses", _, "input_items"] => T::ResponseInputItems,
        ["responses", ..] => T::ResponsesAny,

        ["conversations"] => T::Conversations,
        ["conversations", _] => T::Conversation,
        ["conversations", _, "items"] => T::ConversationItems,
        ["conversations", _, "items", _] => T::ConversationItem,
        ["conversations", ..] => T::ConversationsAny,

        ["chat", "completions"] => T::ChatCompletions,
        ["chat", "completions", _] => T::ChatCompletion,
        ["chat", "completions", _, "messages"] => T::ChatCompletionMessages,
        ["chat", "completions", ..] => T::ChatCompletionsAny,

        ["completions"] => T::Completions,
        ["embeddings"] => T::Embeddings,
        ["moderations"] => T::Moderations,
        ["audio", "speech"] => T::AudioSpeech,
        ["audio", "transcriptions"] => T::AudioTranscriptions,
        ["audio", "translations"] => T::AudioTranslations,
        ["images", "generations"] => T::ImagesGenerations,
        ["images", "edits"] => T::ImagesEdits,
        ["images", "variations"] => T::ImagesVariations,
        ["images", ..] => T::ImagesAny,
        ["models"] => T::Models,
        ["models", _] => T::Model,

        ["assistants"] => T::Assistants,
        ["assistants", _] => T::Assistant,
        ["assistants", ..] => T::AssistantsAny,
        ["threads"] => T::Threads,
        ["threads", "runs"] => T::ThreadsRuns,
        ["threads", _] => T::Thread,
        ["threads", _, "messages"] => T::ThreadMessages,
        ["threads", _, "messages", _] => T::ThreadMessage,
        ["threads", _, "runs"] => T::ThreadRuns,
        ["threads", _, "runs", _] => T::ThreadRun,
        ["threads", _, "runs", _, "cancel"] => T::ThreadRunCancel,
        ["threads", _, "runs", _, "submit_tool_outputs"] => T::ThreadRunToolOutputs,
        ["threads", _, "runs", _, "steps"] => T::ThreadRunSteps,
        ["threads", _, "runs", _, "steps", _] => T::ThreadRunStep,
        ["threads", ..] => T::ThreadsAny,

        ["realtime"] => T::Realtime,
        ["realtime", "calls"] => T::RealtimeCalls,
        ["realtime", "client_secrets"] => T::RealtimeClientSecrets,
        ["realtime", "sessions"] => T::RealtimeSessions,
        ["realtime", "transcription_sessions"] => T::RealtimeTranscriptionSessions,
        ["realtime", ..] => T::RealtimeAny,

        ["files"] => T::Files,
        ["files", _] => T::File,
        ["files", _, "content"] => T::FileContent,
        ["files", ..] => T::FilesAny,
        ["skills"] => T::Skills,
        ["skills", _] => T::Skill,
        ["skills", ..] => T::SkillsAny,
        ["uploads"] => T::Uploads,
        ["uploads", _, "parts"] => T::UploadParts,
        ["uploads", _, "complete"] => T::UploadComplete,
        ["uploads", _, "cancel"] => T::UploadCancel,
        ["uploads", ..] => T::UploadsAny,
        ["vector_stores"] => T::VectorStores,
        ["vector_stores", _] => T::VectorStore,
        ["vector_stores", _, "files"] => T::VectorStoreFiles,
        ["vector_stores", _, "files", _] => T::VectorStoreFile,
        ["vector_stores", _, "file_batches"] => T::VectorStoreFileBatches,
        ["vector_stores", _, "search"] => T::VectorStoreSearch,
        ["vector_stores", ..] => T::VectorStoresAny,
        ["batches"] => T::Batches,
        ["batches", _] => T::Batch,
        ["batches", _, "cancel"] => T::BatchCancel,
        ["batches", ..] => T::BatchesAny,
        ["containers"] => T::Containers,
        ["containers", _] => T::Container,
        ["containers", _, "files"] => T::ContainerFiles,
        ["containers", _, "files", _] => T::ContainerFile,
        ["containers", _, "files", _, "content"] => T::ContainerFileContent,
        ["containers", ..] => T::ContainersAny,
        ["evals"] => T::Evals,
        ["evals", _] => T::Eval,
        ["evals", _, "runs"] => T::EvalRuns,
        ["evals", _, "runs", _] => T::EvalRun,
        ["evals", ..] => T::EvalsAny,
        ["fine_tuning", "jobs"] => T::FineTuningJobs,
        ["fine_tuning", "jobs", _] => T::FineTuningJob,
        ["fine_tuning", ..] => T::FineTuningAny,
        ["videos"] => T::Videos,
        ["videos", _] => T::Video,
        ["videos", _, "content"] => T::VideoContent,
        ["videos", ..] => T::VideosAny,

        ["messages"] => T::Messages,
        ["messages", "count_tokens"] => T::MessagesCountTokens,
        ["messages", "batches"] => T::MessageBatches,
        ["messages", "batches", _] => T::MessageBatch,
        ["messages", "batches", _, "results"] => T::MessageBatchResults,
        ["messages", "batches", _, "cancel"] => T::MessageBatchCancel,
        ["messages", "batches", ..] => T::MessageBatchesAny,

        _ => return None,
    })
}

/// Matches Bedrock runtime and AgentCore paths (at the root, or under the base path).
pub(crate) fn aws(segs: &[&str]) -> Option<Tpl> {
    use Tpl as T;
    Some(match segs {
        // An ARN sent without encoding its '/' spans several segments; still the same call
        // (and the same family as its encoded form, which `path.rs` relies on).
        ["model", _, .., "converse"] => T::BedrockConverse,
        ["model", _, .., "converse-stream"] => T::BedrockConverseStream,
        ["model", _, .., "invoke"] => T::BedrockInvoke,
        ["model", _, .., "invoke-with-response-stream"] => T::BedrockInvokeStream,
        ["async-invoke"] => T::AsyncInvokes,
        ["async-invoke", _] => T::AsyncInvoke,
        ["async-invoke", ..] => T::AsyncInvokeAny,
        ["runtimes", _, .., "invocations"] => T::RuntimeInvocations,
        ["runtimes", _, .., "stopruntimesession"] => T::RuntimeStopSession,
        ["runtimes", ..] => T::RuntimesAny,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_reachable_from_its_own_shape() {
        for &tpl in Tpl::ALL {
            // Turn the template back into a concrete path: placeholders → ids, `*` → deeper.
            let segs: Vec<&str> = tpl
                .path()
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| match s {
                    "*" => "x/y/z",
                    s if s.starts_with('{') => "id_123",
                    s => s,
                })
                .flat_map(|s| s.split('/'))
                .collect();
            let got = if tpl.family().is_aws() {
                aws(&segs)
            } else {
                api(&segs)
            };
            assert_eq!(got, Some(tpl), "{}", tpl.path());
        }
    }

    #[test]
    fn indices_follow_declaration_order() {
        for (i, tpl) in Tpl::ALL.iter().enumerate() {
            assert_eq!(tpl.index(), i);
        }
    }

    /// The engine relies on this: spreading an encoded ARN under the same prefix cannot
    /// turn an AWS route into an API one.
    #[test]
    fn no_api_template_starts_with_an_arn_parent() {
        for &tpl in Tpl::ALL {
            let first = tpl.path().split('/').nth(1).unwrap_or("");
            assert_eq!(
                super::super::path::is_arn_parent(first),
                tpl.family().is_aws(),
                "{}",
                tpl.path()
            );
        }
        for parent in ["runtimes", "model", "async-invoke"] {
            assert_eq!(api(&[parent, "a", "b", "invocations"]), None);
            assert_eq!(api(&[parent, "a", "b", "invoke"]), None);
        }
    }

    #[test]
    fn unencoded_arns_keep_their_template() {
        let arn = ["arn:aws:bedrock:us-east-1:1:inference-profile", "us.claude"];
        assert_eq!(
            aws(&["model", arn[0], arn[1], "invoke"]),
            Some(Tpl::BedrockInvoke)
        );
        assert_eq!(
            aws(&["model", arn[0], arn[1], "converse-stream"]),
            Some(Tpl::BedrockConverseStream)
        );
        assert_eq!(
            aws(&[
                "async-invoke",
                "arn:aws:bedrock:us-east-1:1:async-invoke",
                "abc"
            ]),
            Some(Tpl::AsyncInvokeAny)
        );
        assert_eq!(
            aws(&["runtimes", "arn:aws:x:runtime", "agent", "invocations"]),
            Some(Tpl::RuntimeInvocations)
        );
    }

    #[test]
    fn unknown_shapes_are_not_matched() {
        assert_eq!(api(&[]), None);
        assert_eq!(api(&["v1"]), None);
        assert_eq!(api(&["chat"]), None);
        assert_eq!(api(&["models", "a", "b"]), None);
        assert_eq!(api(&["audio", "voices"]), None);
        assert_eq!(api(&["messages", "other"]), None);
        assert_eq!(aws(&["model", "x", "count-tokens"]), None);
        assert_eq!(aws(&["model", "x", "y", "count-tokens"]), None);
        assert_eq!(aws(&["model", "invoke"]), None);
        assert_eq!(aws(&["model"]), None);
        assert_eq!(aws(&["responses"]), None);
    }
}
