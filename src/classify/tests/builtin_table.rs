//! The table test: every built-in rule and every PROTOCOL.md row, under each prefix shape.

use super::super::{builtin_rule_names, Class, Classifier, ClassifierSettings, DEFAULT_RULE};
use super::{check_rows, classifier, settings, Row};

const NO: &[(&str, &str)] = &[];
const ANTHROPIC: &[(&str, &str)] = &[("anthropic-version", "2023-06-01")];
const MCP: &[(&str, &str)] = &[("Mcp-Session-Id", "1868a90c-4f6a")];
const AGENTCORE: &[(&str, &str)] = &[(
    "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id",
    "dfmeoagmreaklgmrkleafremoigrmtesogmtrskhmtkrlshmt",
)];
const WS: &[(&str, &str)] = &[("Connection", "Upgrade"), ("Upgrade", "websocket")];

macro_rules! rows {
    ($($m:literal $p:expr, $h:expr, $b:expr => $class:ident $rule:literal $marker:literal $route:literal;)*) => {
        [$(Row {
            method: $m, path: $p, headers: $h, body: $b, class: Class::$class,
            rule: $rule, marker: $marker, route: $route,
        },)*]
    };
}

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
const MESSAGES: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;

fn table() -> Vec<Row> {
    Vec::from(rows! {
        // Header markers: any path, before everything else.
        "GET" "/v1/models", MCP, "" => Stateful "header.mcp_session" "header:mcp-session-id" "/v1/models";
        "POST" "/mcp", MCP, "" => Stateful "header.mcp_session" "header:mcp-session-id" "other";
        "DELETE" "/mcp", MCP, "" => Stateful "header.mcp_session" "header:mcp-session-id" "other";
        "POST" "/v1/responses", MCP, r#"{"store":false}"# => Stateful "header.mcp_session" "header:mcp-session-id" "/v1/responses";
        "POST" concat!("/runtimes/", "arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fmy_agent-abc", "/invocations?qualifier=DEFAULT"), AGENTCORE, "{}" => Stateful "header.agentcore_session" "header:x-amzn-bedrock-agentcore-runtime-session-id" "/runtimes/{arn}/invocations";
        "POST" "/v1/chat/completions", AGENTCORE, CHAT => Stateful "header.agentcore_session" "header:x-amzn-bedrock-agentcore-runtime-session-id" "/v1/chat/completions";
        // A blank session header is no marker: the other rules decide.
        "POST" "/v1/responses", &[("Mcp-Session-Id", "")], r#"{"store":false}"# => Stateless "responses.stateless" "body:/store" "/v1/responses";
        "POST" "/v1/responses", &[("Mcp-Session-Id", " \t ")], r#"{"store":false}"# => Stateless "responses.stateless" "body:/store" "/v1/responses";
        "POST" "/mcp", &[("mcp-session-id", "")], "{}" => Stateless "default" "none" "other";
        "POST" "/v1/chat/completions", &[("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", "")], CHAT => Stateless "chat.stateless" "body:/store" "/v1/chat/completions";
        "POST" "/v1/chat/completions", &[("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", "\t")], CHAT => Stateless "chat.stateless" "body:/store" "/v1/chat/completions";
        "POST" "/v1/embeddings", &[("mcp-session-id", ""), ("x-amzn-bedrock-agentcore-runtime-session-id", " ")], "{}" => Stateless "stateless.endpoints" "path:/v1/embeddings" "/v1/embeddings";
        // One non-blank value among several is a marker; so is a value with inner spaces.
        "POST" "/v1/responses", &[("Mcp-Session-Id", ""), ("Mcp-Session-Id", "s1")], r#"{"store":false}"# => Stateful "header.mcp_session" "header:mcp-session-id" "/v1/responses";
        "POST" "/v1/responses", &[("Mcp-Session-Id", " a b ")], r#"{"store":false}"# => Stateful "header.mcp_session" "header:mcp-session-id" "/v1/responses";
        "POST" "/v1/chat/completions", &[("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", " x")], CHAT => Stateful "header.agentcore_session" "header:x-amzn-bedrock-agentcore-runtime-session-id" "/v1/chat/completions";

        // WebSocket upgrades.
        "GET" "/v1/responses", WS, "" => Stateful "websocket.upgrade" "header:upgrade" "/v1/responses";
        "GET" "/v1/realtime?model=gpt-realtime", &[("upgrade", "WebSocket")], "" => Stateful "websocket.upgrade" "header:upgrade" "/v1/realtime";
        "GET" "/openai/v1/realtime", &[("upgrade", "h2c, websocket")], "" => Stateful "websocket.upgrade" "header:upgrade" "/openai/v1/realtime";
        "GET" "/v1/models", WS, "" => Stateless "stateless.endpoints" "path:/v1/models" "/v1/models";
        "POST" "/v1/chat/completions", WS, CHAT => Stateless "chat.stateless" "body:/store" "/v1/chat/completions";
        // Only a GET is a handshake: the proxy strips `Upgrade` from anything else, so the
        // route's own rules decide.
        "POST" "/v1/responses", WS, r#"{"store":false}"# => Stateless "responses.stateless" "body:/store" "/v1/responses";
        "POST" "/v1/responses", WS, r#"{"input":"hi"}"# => Stateful "responses.store" "body:/store" "/v1/responses";
        "POST" "/openai/v1/responses", &[("upgrade", "websocket")], r#"{"store":false}"# => Stateless "responses.stateless" "body:/store" "/openai/v1/responses";
        "POST" "/v1/realtime/calls", WS, "v=0" => Stateful "realtime" "path:/v1/realtime/calls" "/v1/realtime/calls";
        "HEAD" "/v1/realtime", WS, "" => Stateful "realtime" "path:/v1/realtime" "/v1/realtime";
        "PUT" "/v1/responses", WS, "" => Stateful "responses.stored_object" "path:/v1/responses" "/v1/responses";

        // POST /responses: the body decides.
        "POST" "/v1/responses", NO, r#"{"model":"gpt-5","input":"hi"}"# => Stateful "responses.store" "body:/store" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"model":"gpt-5","input":"hi","store":true}"# => Stateful "responses.store" "body:/store" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"model":"gpt-5","input":"hi","store":null}"# => Stateful "responses.store" "body:/store" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"model":"gpt-5","input":"hi","store":false}"# => Stateless "responses.stateless" "body:/store" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"previous_response_id":"resp_1"}"# => Stateful "responses.previous_response_id" "body:/previous_response_id" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"previous_response_id":null}"# => Stateless "responses.stateless" "body:/store" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"conversation":"conv_1"}"# => Stateful "responses.conversation" "body:/conversation" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"conversation":{"id":"conv_1"}}"# => Stateful "responses.conversation" "body:/conversation" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"conversation":null}"# => Stateless "responses.stateless" "body:/store" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"background":true}"# => Stateful "responses.background" "body:/background" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"background":false}"# => Stateless "responses.stateless" "body:/store" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"prompt":{"id":"pmpt_1","version":"2"}}"# => Stateful "responses.prompt" "body:/prompt" "/v1/responses";
        "POST" "/openai/v1/responses", NO, r#"{"model":"dep","input":"hi"}"# => Stateful "responses.store" "body:/store" "/openai/v1/responses";
        "POST" "/openai/v1/responses?api-version=preview", NO, r#"{"model":"dep","input":"hi","store":false}"# => Stateless "responses.stateless" "body:/store" "/openai/v1/responses";
        "POST" "/openai/responses?api-version=2025-04-01-preview", NO, r#"{"store":false}"# => Stateless "responses.stateless" "body:/store" "/openai/responses";
        "POST" "/openai/responses?api-version=2025-04-01-preview", NO, r#"{"previous_response_id":"resp_1","store":false}"# => Stateful "responses.previous_response_id" "body:/previous_response_id" "/openai/responses";

        // input_tokens and compact.
        "POST" "/v1/responses/input_tokens", NO, r#"{"model":"gpt-5","input":"hi"}"# => Stateless "responses.input_tokens" "path:/v1/responses/input_tokens" "/v1/responses/input_tokens";
        "POST" "/v1/responses/input_tokens", NO, r#"{"previous_response_id":"resp_1"}"# => Stateful "responses.previous_response_id" "body:/previous_response_id" "/v1/responses/input_tokens";
        "POST" "/v1/responses/input_tokens", NO, r#"{"input":[{"role":"user","content":[{"type":"input_file","file_id":"file-1"}]}]}"# => Stateful "body.file_reference" "body:/input/*/content/*/file_id" "/v1/responses/input_tokens";
        "POST" "/v1/responses/compact", NO, r#"{"model":"gpt-5","input":[]}"# => Stateless "responses.compact" "path:/v1/responses/compact" "/v1/responses/compact";
        "POST" "/v1/responses/compact", NO, r#"{"conversation":"conv_1"}"# => Stateful "responses.conversation" "body:/conversation" "/v1/responses/compact";

        // Stored responses.
        "GET" "/v1/responses/resp_123", NO, "" => Stateful "responses.stored_object" "path:/v1/responses/{id}" "/v1/responses/{id}";
        "DELETE" "/v1/responses/resp_123", NO, "" => Stateful "responses.stored_object" "path:/v1/responses/{id}" "/v1/responses/{id}";
        "POST" "/v1/responses/resp_123/cancel", NO, "" => Stateful "responses.stored_object" "path:/v1/responses/{id}/cancel" "/v1/responses/{id}/cancel";
        "GET" "/v1/responses/resp_123/input_items?limit=10", NO, "" => Stateful "responses.stored_object" "path:/v1/responses/{id}/input_items" "/v1/responses/{id}/input_items";
        "GET" "/v1/responses/resp_123/something/new", NO, "" => Stateful "responses.stored_object" "path:/v1/responses/*" "/v1/responses/*";
        "GET" "/v1/responses/input_tokens", NO, "" => Stateful "responses.stored_object" "path:/v1/responses/input_tokens" "/v1/responses/input_tokens";
        "GET" "/openai/v1/responses/resp_1", NO, "" => Stateful "responses.stored_object" "path:/openai/v1/responses/{id}" "/openai/v1/responses/{id}";
        "GET" "/openai/responses/resp_1?api-version=2025-04-01-preview", NO, "" => Stateful "responses.stored_object" "path:/openai/responses/{id}" "/openai/responses/{id}";

        // Conversations.
        "POST" "/v1/conversations", NO, r#"{"items":[]}"# => Stateful "conversations" "path:/v1/conversations" "/v1/conversations";
        "GET" "/v1/conversations/conv_1", NO, "" => Stateful "conversations" "path:/v1/conversations/{id}" "/v1/conversations/{id}";
        "POST" "/v1/conversations/conv_1/items", NO, "{}" => Stateful "conversations" "path:/v1/conversations/{id}/items" "/v1/conversations/{id}/items";
        "DELETE" "/v1/conversations/conv_1/items/msg_1", NO, "" => Stateful "conversations" "path:/v1/conversations/{id}/items/{item_id}" "/v1/conversations/{id}/items/{item_id}";
        "GET" "/openai/v1/conversations/conv_1", NO, "" => Stateful "conversations" "path:/openai/v1/conversations/{id}" "/openai/v1/conversations/{id}";

        // Chat Completions.
        "POST" "/v1/chat/completions", NO, CHAT => Stateless "chat.stateless" "body:/store" "/v1/chat/completions";
        "POST" "/v1/chat/completions", NO, r#"{"model":"gpt-4o","store":false,"messages":[]}"# => Stateless "chat.stateless" "body:/store" "/v1/chat/completions";
        "POST" "/v1/chat/completions", NO, r#"{"model":"gpt-4o","store":null,"messages":[]}"# => Stateless "chat.stateless" "body:/store" "/v1/chat/completions";
        "POST" "/v1/chat/completions", NO, r#"{"model":"gpt-4o","store":true,"messages":[]}"# => Stateful "chat.store" "body:/store" "/v1/chat/completions";
        "POST" "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", NO, CHAT => Stateless "chat.stateless" "body:/store" "/openai/deployments/{deployment}/chat/completions";
        "POST" "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", NO, r#"{"store":true,"messages":[]}"# => Stateful "chat.store" "body:/store" "/openai/deployments/{deployment}/chat/completions";
        "POST" "/openai/v1/chat/completions", NO, CHAT => Stateless "chat.stateless" "body:/store" "/openai/v1/chat/completions";
        "GET" "/v1/chat/completions?limit=5", NO, "" => Stateful "chat.stored_completions" "path:/v1/chat/completions" "/v1/chat/completions";
        "GET" "/v1/chat/completions/chatcmpl-1", NO, "" => Stateful "chat.stored_completions" "path:/v1/chat/completions/{id}" "/v1/chat/completions/{id}";
        "POST" "/v1/chat/completions/chatcmpl-1", NO, r#"{"metadata":{}}"# => Stateful "chat.stored_completions" "path:/v1/chat/completions/{id}" "/v1/chat/completions/{id}";
        "DELETE" "/v1/chat/completions/chatcmpl-1", NO, "" => Stateful "chat.stored_completions" "path:/v1/chat/completions/{id}" "/v1/chat/completions/{id}";
        "GET" "/v1/chat/completions/chatcmpl-1/messages", NO, "" => Stateful "chat.stored_completions" "path:/v1/chat/completions/{id}/messages" "/v1/chat/completions/{id}/messages";

        // Assistants, threads, realtime.
        "POST" "/v1/assistants", NO, "{}" => Stateful "assistants" "path:/v1/assistants" "/v1/assistants";
        "GET" "/v1/assistants/asst_1", NO, "" => Stateful "assistants" "path:/v1/assistants/{id}" "/v1/assistants/{id}";
        "GET" "/openai/assistants?api-version=2024-05-01-preview", NO, "" => Stateful "assistants" "path:/openai/assistants" "/openai/assistants";
        "POST" "/v1/threads", NO, "{}" => Stateful "threads" "path:/v1/threads" "/v1/threads";
        "POST" "/v1/threads/runs", NO, "{}" => Stateful "threads" "path:/v1/threads/runs" "/v1/threads/runs";
        "POST" "/v1/threads/thread_1/runs", NO, "{}" => Stateful "threads" "path:/v1/threads/{id}/runs" "/v1/threads/{id}/runs";
        "POST" "/v1/threads/thread_1/runs/run_1/submit_tool_outputs", NO, "{}" => Stateful "threads" "path:/v1/threads/{id}/runs/{run_id}/submit_tool_outputs" "/v1/threads/{id}/runs/{run_id}/submit_tool_outputs";
        "GET" "/v1/threads/thread_1/runs/run_1/steps/step_1", NO, "" => Stateful "threads" "path:/v1/threads/{id}/runs/{run_id}/steps/{step_id}" "/v1/threads/{id}/runs/{run_id}/steps/{step_id}";
        "GET" "/v1/threads/thread_1/messages/msg_1", NO, "" => Stateful "threads" "path:/v1/threads/{id}/messages/{message_id}" "/v1/threads/{id}/messages/{message_id}";
        "GET" "/v1/realtime", NO, "" => Stateful "realtime" "path:/v1/realtime" "/v1/realtime";
        "POST" "/v1/realtime/calls", NO, "v=0" => Stateful "realtime" "path:/v1/realtime/calls" "/v1/realtime/calls";
        "POST" "/v1/realtime/calls/rtc_1/accept", NO, "{}" => Stateful "realtime" "path:/v1/realtime/*" "/v1/realtime/*";
        "POST" "/v1/realtime/client_secrets", NO, "{}" => Stateful "realtime" "path:/v1/realtime/client_secrets" "/v1/realtime/client_secrets";
        "POST" "/v1/realtime/sessions", NO, "{}" => Stateful "realtime" "path:/v1/realtime/sessions" "/v1/realtime/sessions";
        "POST" "/v1/realtime/transcription_sessions", NO, "{}" => Stateful "realtime" "path:/v1/realtime/transcription_sessions" "/v1/realtime/transcription_sessions";

        // Server-side resources.
        "POST" "/v1/files", &[("content-type", "multipart/form-data; boundary=x")], "--x\r\n" => Stateful "resources" "path:/v1/files" "/v1/files";
        "GET" "/openai/v1/files/file-1/content", NO, "" => Stateful "resources" "path:/openai/v1/files/{id}/content" "/openai/v1/files/{id}/content";
        "GET" "/openai/files?api-version=2024-10-21", NO, "" => Stateful "resources" "path:/openai/files" "/openai/files";
        "DELETE" "/v1/files/file-1/a/b", NO, "" => Stateful "resources" "path:/v1/files/*" "/v1/files/*";
        "POST" "/v1/uploads", NO, "{}" => Stateful "resources" "path:/v1/uploads" "/v1/uploads";
        "POST" "/v1/uploads/upload_1/parts", NO, "" => Stateful "resources" "path:/v1/uploads/{id}/parts" "/v1/uploads/{id}/parts";
        "POST" "/v1/vector_stores/vs_1/search", NO, "{}" => Stateful "resources" "path:/v1/vector_stores/{id}/search" "/v1/vector_stores/{id}/search";
        "GET" "/v1/vector_stores/vs_1/files/file-1", NO, "" => Stateful "resources" "path:/v1/vector_stores/{id}/files/{file_id}" "/v1/vector_stores/{id}/files/{file_id}";
        "POST" "/v1/batches", NO, "{}" => Stateful "resources" "path:/v1/batches" "/v1/batches";
        "POST" "/v1/batches/batch_1/cancel", NO, "" => Stateful "resources" "path:/v1/batches/{id}/cancel" "/v1/batches/{id}/cancel";
        "POST" "/v1/containers", NO, "{}" => Stateful "resources" "path:/v1/containers" "/v1/containers";
        "GET" "/v1/containers/cntr_1/files/cfile_1/content", NO, "" => Stateful "resources" "path:/v1/containers/{id}/files/{file_id}/content" "/v1/containers/{id}/files/{file_id}/content";
        "POST" "/v1/evals/eval_1/runs", NO, "{}" => Stateful "resources" "path:/v1/evals/{id}/runs" "/v1/evals/{id}/runs";
        "POST" "/v1/fine_tuning/jobs", NO, "{}" => Stateful "resources" "path:/v1/fine_tuning/jobs" "/v1/fine_tuning/jobs";
        "GET" "/v1/fine_tuning/jobs/ftjob-1/events", NO, "" => Stateful "resources" "path:/v1/fine_tuning/*" "/v1/fine_tuning/*";
        "POST" "/v1/skills", NO, "" => Stateful "resources" "path:/v1/skills" "/v1/skills";
        "POST" "/v1/videos", NO, "{}" => Stateful "resources" "path:/v1/videos" "/v1/videos";
        "GET" "/v1/videos/video_1/content", NO, "" => Stateful "resources" "path:/v1/videos/{id}/content" "/v1/videos/{id}/content";
        "DELETE" "/v1/models/ft:gpt-4o-mini:org::abc", NO, "" => Stateful "resources" "path:/v1/models/{id}" "/v1/models/{id}";

        // Stateless endpoints.
        "POST" "/v1/completions", NO, r#"{"store":true}"# => Stateless "stateless.endpoints" "path:/v1/completions" "/v1/completions";
        "POST" "/v1/embeddings", NO, "{}" => Stateless "stateless.endpoints" "path:/v1/embeddings" "/v1/embeddings";
        "POST" "/v1/moderations", NO, "{}" => Stateless "stateless.endpoints" "path:/v1/moderations" "/v1/moderations";
        "POST" "/v1/audio/speech", NO, "{}" => Stateless "stateless.endpoints" "path:/v1/audio/speech" "/v1/audio/speech";
        "POST" "/v1/audio/transcriptions", NO, "--b" => Stateless "stateless.endpoints" "path:/v1/audio/transcriptions" "/v1/audio/transcriptions";
        "POST" "/v1/audio/translations", NO, "--b" => Stateless "stateless.endpoints" "path:/v1/audio/translations" "/v1/audio/translations";
        "POST" "/v1/images/generations", NO, "{}" => Stateless "stateless.endpoints" "path:/v1/images/generations" "/v1/images/generations";
        "POST" "/v1/images/edits", NO, "--b" => Stateless "stateless.endpoints" "path:/v1/images/edits" "/v1/images/edits";
        "POST" "/v1/images/variations", NO, "--b" => Stateless "stateless.endpoints" "path:/v1/images/variations" "/v1/images/variations";
        "GET" "/v1/models", NO, "" => Stateless "stateless.endpoints" "path:/v1/models" "/v1/models";
        "GET" "/v1/models/gpt-4o", NO, "" => Stateless "stateless.endpoints" "path:/v1/models/{id}" "/v1/models/{id}";
        "POST" "/openai/deployments/gpt4o/embeddings?api-version=2024-10-21", NO, "{}" => Stateless "stateless.endpoints" "path:/openai/deployments/{deployment}/embeddings" "/openai/deployments/{deployment}/embeddings";
        "POST" "/openai/deployments/whisper/audio/transcriptions", NO, "--b" => Stateless "stateless.endpoints" "path:/openai/deployments/{deployment}/audio/transcriptions" "/openai/deployments/{deployment}/audio/transcriptions";
        "POST" "/openai/deployments/dalle3/images/generations", NO, "{}" => Stateless "stateless.endpoints" "path:/openai/deployments/{deployment}/images/generations" "/openai/deployments/{deployment}/images/generations";
        "POST" "/v1/messages/count_tokens", ANTHROPIC, MESSAGES => Stateless "stateless.endpoints" "path:/v1/messages/count_tokens" "/v1/messages/count_tokens";

        // Bedrock runtime and AgentCore, at the root and under the base path.
        "POST" "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse", NO, "{}" => Stateless "bedrock.invoke" "path:/model/{id}/converse" "/model/{id}/converse";
        "POST" "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse-stream", NO, "{}" => Stateless "bedrock.invoke" "path:/model/{id}/converse-stream" "/model/{id}/converse-stream";
        "POST" "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.claude/invoke", NO, "{}" => Stateless "bedrock.invoke" "path:/model/{id}/invoke" "/model/{id}/invoke";
        "POST" "/model/meta.llama3/invoke-with-response-stream", NO, "{}" => Stateless "bedrock.invoke" "path:/model/{id}/invoke-with-response-stream" "/model/{id}/invoke-with-response-stream";
        "POST" "/v1/model/amazon.nova-pro-v1:0/converse", NO, "{}" => Stateless "bedrock.invoke" "path:/v1/model/{id}/converse" "/v1/model/{id}/converse";
        "POST" "/async-invoke", NO, "{}" => Stateful "bedrock.async_invoke" "path:/async-invoke" "/async-invoke";
        "GET" "/async-invoke?maxResults=10", NO, "" => Stateful "bedrock.async_invoke" "path:/async-invoke" "/async-invoke";
        "GET" "/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aasync-invoke%2Fabc", NO, "" => Stateful "bedrock.async_invoke" "path:/async-invoke/{arn}" "/async-invoke/{arn}";
        "POST" concat!("/runtimes/", "arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fmy_agent-abc", "/invocations?qualifier=DEFAULT"), NO, r#"{"prompt":"hi"}"# => Stateful "agentcore.runtime" "path:/runtimes/{arn}/invocations" "/runtimes/{arn}/invocations";
        "POST" concat!("/runtimes/", "arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fmy_agent-abc", "/stopruntimesession"), NO, "" => Stateful "agentcore.runtime" "path:/runtimes/{arn}/stopruntimesession" "/runtimes/{arn}/stopruntimesession";
        "POST" "/runtimes/arn:aws:bedrock-agentcore:us-east-1:1:runtime/my_agent-abc/invocations", NO, "{}" => Stateful "agentcore.runtime" "path:/runtimes/{arn}/invocations" "/runtimes/{arn}/invocations";
        "GET" "/runtimes/x/ws", NO, "" => Stateful "agentcore.runtime" "path:/runtimes/*" "/runtimes/*";

        // Anthropic.
        "POST" "/v1/messages", ANTHROPIC, MESSAGES => Stateless "anthropic.messages" "path:/v1/messages" "/v1/messages";
        "POST" "/v1/messages", ANTHROPIC, r#"{"model":"claude","container":"container_011","messages":[]}"# => Stateful "anthropic.container" "body:/container" "/v1/messages";
        "POST" "/v1/messages", ANTHROPIC, r#"{"model":"claude","container":{"skills":[{"type":"anthropic","skill_id":"pptx"}]},"messages":[]}"# => Stateful "anthropic.container" "body:/container" "/v1/messages";
        "POST" "/v1/messages", ANTHROPIC, r#"{"model":"claude","container":null,"messages":[]}"# => Stateless "anthropic.messages" "path:/v1/messages" "/v1/messages";
        "GET" "/v1/messages", ANTHROPIC, "" => Stateless "default" "none" "/v1/messages";
        "POST" "/v1/messages/batches", ANTHROPIC, "{}" => Stateful "anthropic.resources" "path:/v1/messages/batches" "/v1/messages/batches";
        "GET" "/v1/messages/batches/msgbatch_1/results", ANTHROPIC, "" => Stateful "anthropic.resources" "path:/v1/messages/batches/{id}/results" "/v1/messages/batches/{id}/results";
        "POST" "/v1/files", ANTHROPIC, "--b" => Stateful "anthropic.resources" "path:/v1/files" "/v1/files";
        "GET" "/v1/files/file_1/content", ANTHROPIC, "" => Stateful "anthropic.resources" "path:/v1/files/{id}/content" "/v1/files/{id}/content";

        // Objects referenced by id inside an otherwise stateless body.
        "POST" "/v1/responses", NO, r#"{"store":false,"input":[{"role":"user","content":[{"type":"input_text","text":"x"},{"type":"input_file","file_id":"file-1"}]}]}"# => Stateful "body.file_reference" "body:/input/*/content/*/file_id" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"input":[{"role":"user","content":[{"type":"input_image","file_id":"file-2","detail":"auto"}]}]}"# => Stateful "body.file_reference" "body:/input/*/content/*/file_id" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"input":[{"type":"function_call_output","call_id":"c","output":[{"type":"input_file","file_id":"file-3"}]}]}"# => Stateful "body.file_reference" "body:/input/*/output/*/file_id" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"input":[{"type":"computer_call_output","call_id":"c","output":{"type":"computer_screenshot","file_id":"file-4"}}]}"# => Stateful "body.file_reference" "body:/input/*/output/file_id" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"input":[{"type":"computer_call_output","call_id":"c","output":{"type":"computer_screenshot","image_url":"data:image/png;base64,AA","file_id":null}}]}"# => Stateless "responses.stateless" "body:/store" "/v1/responses";
        "POST" "/v1/responses/input_tokens", NO, r#"{"input":[{"type":"computer_call_output","output":{"type":"computer_screenshot","file_id":"file-4"}}]}"# => Stateful "body.file_reference" "body:/input/*/output/file_id" "/v1/responses/input_tokens";
        "POST" "/v1/responses", NO, r#"{"store":false,"tools":[{"type":"image_generation","input_image_mask":{"file_id":"file-5"}}]}"# => Stateful "body.file_reference" "body:/tools/*/input_image_mask/file_id" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"tools":[{"type":"image_generation","input_image_mask":{"image_url":"data:image/png;base64,AA"}}]}"# => Stateless "responses.stateless" "body:/store" "/v1/responses";
        "POST" "/v1/responses/compact", NO, r#"{"tools":[{"type":"web_search"},{"type":"image_generation","input_image_mask":{"file_id":"file-5"}}]}"# => Stateful "body.file_reference" "body:/tools/*/input_image_mask/file_id" "/v1/responses/compact";
        "POST" "/v1/chat/completions", NO, r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}"# => Stateful "body.file_reference" "body:/messages/*/content/*/file/file_id" "/v1/chat/completions";
        "POST" "/v1/messages", ANTHROPIC, r#"{"messages":[{"role":"user","content":[{"type":"document","source":{"type":"file","file_id":"file_011"}}]}]}"# => Stateful "body.file_reference" "body:/messages/*/content/*/source/file_id" "/v1/messages";
        "POST" "/v1/messages", ANTHROPIC, r#"{"messages":[{"role":"user","content":[{"type":"container_upload","file_id":"file_011"}]}]}"# => Stateful "body.file_reference" "body:/messages/*/content/*/file_id" "/v1/messages";
        "POST" "/v1/messages", ANTHROPIC, r#"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{"type":"file","file_id":"file_9"}}]}]}]}"# => Stateful "body.file_reference" "body:/messages/*/content/*/content/*/source/file_id" "/v1/messages";
        "POST" "/v1/responses", NO, r#"{"store":false,"tools":[{"type":"file_search","vector_store_ids":["vs_1"]}]}"# => Stateful "body.vector_store" "body:/tools/*/vector_store_ids" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"tools":[{"type":"code_interpreter","container":"cntr_1"}]}"# => Stateful "body.container" "body:/tools/*/container" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"tools":[{"type":"web_search"},{"type":"code_interpreter","container":{"type":"auto"}}]}"# => Stateful "body.container" "body:/tools/*/container" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"input":[{"role":"user","content":"hi"},{"type":"item_reference","id":"msg_1"}]}"# => Stateful "body.item_reference" "body:/input/*/type" "/v1/responses";
        "POST" "/v1/responses", NO, r#"{"store":false,"input":[{"type":"message","role":"user","content":[{"type":"input_file","file_data":"data:application/pdf;base64,AAAA","filename":"a.pdf"}]}]}"# => Stateless "responses.stateless" "body:/store" "/v1/responses";
        "POST" "/v1/chat/completions", NO, r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_data":"data:application/pdf;base64,AA","file_id":null}}]}]}"# => Stateless "chat.stateless" "body:/store" "/v1/chat/completions";

        // Nothing matched.
        "GET" "/healthz", NO, "" => Stateless "default" "none" "other";
        "POST" "/v1/unknown/endpoint", NO, "not json" => Stateless "default" "none" "other";
        "GET" "/v1", NO, "" => Stateless "default" "none" "other";
        "GET" "/", NO, "" => Stateless "default" "none" "other";
        "POST" "/v2/responses", NO, "{}" => Stateless "default" "none" "other";
        "POST" "/model/x/count-tokens", NO, "{}" => Stateless "default" "none" "other";
    })
}

#[test]
fn every_builtin_rule_under_v1_and_azure_bedrock_agentcore_anthropic() {
    check_rows(&classifier(), &table());
}

#[test]
fn the_table_covers_every_builtin_rule() {
    let table = table();
    let missing: Vec<&str> = builtin_rule_names()
        .iter()
        .copied()
        .chain([DEFAULT_RULE])
        .filter(|name| !table.iter().any(|row| row.rule == *name))
        .collect();
    assert!(missing.is_empty(), "no table row for {missing:?}");
}

#[test]
fn custom_base_path() {
    let c = Classifier::new(settings("/api"));
    check_rows(
        &c,
        &rows! {
            "POST" "/api/responses", NO, r#"{"store":false}"# => Stateless "responses.stateless" "body:/store" "/api/responses";
            "POST" "/api/responses", NO, r#"{"input":"x"}"# => Stateful "responses.store" "body:/store" "/api/responses";
            "POST" "/api/chat/completions", NO, CHAT => Stateless "chat.stateless" "body:/store" "/api/chat/completions";
            "GET" "/api/conversations/conv_1", NO, "" => Stateful "conversations" "path:/api/conversations/{id}" "/api/conversations/{id}";
            "POST" "/api/messages", ANTHROPIC, r#"{"container":"c"}"# => Stateful "anthropic.container" "body:/container" "/api/messages";
            "POST" "/api/model/m/converse", NO, "{}" => Stateless "bedrock.invoke" "path:/api/model/{id}/converse" "/api/model/{id}/converse";
            "POST" "/model/m/converse", NO, "{}" => Stateless "bedrock.invoke" "path:/model/{id}/converse" "/model/{id}/converse";
            "POST" "/openai/v1/responses", NO, r#"{"store":false}"# => Stateless "responses.stateless" "body:/store" "/openai/v1/responses";
            // "/v1" is a built-in API prefix whatever the base.
            "POST" "/v1/responses", NO, r#"{"input":"x"}"# => Stateful "responses.store" "body:/store" "/v1/responses";
            "POST" "/v1/responses", NO, r#"{"store":false}"# => Stateless "responses.stateless" "body:/store" "/v1/responses";
            "GET" "/v1/responses/resp_1", NO, "" => Stateful "responses.stored_object" "path:/v1/responses/{id}" "/v1/responses/{id}";
            "POST" "/v1/files", NO, "--b" => Stateful "resources" "path:/v1/files" "/v1/files";
            "POST" "/v1/chat/completions", NO, r#"{"store":true}"# => Stateful "chat.store" "body:/store" "/v1/chat/completions";
            "POST" "/v1/embeddings", NO, "{}" => Stateless "stateless.endpoints" "path:/v1/embeddings" "/v1/embeddings";
            // Bedrock and AgentCore live at the root and under the base only.
            "POST" "/v1/model/m/converse", NO, "{}" => Stateless "default" "none" "other";
            "POST" "/v2/responses", NO, r#"{"input":"x"}"# => Stateless "default" "none" "other";
        },
    );
}

#[test]
fn root_and_multi_segment_base_paths() {
    let root = Classifier::new(settings(""));
    check_rows(
        &root,
        &rows! {
            "POST" "/responses", NO, r#"{"input":"x"}"# => Stateful "responses.store" "body:/store" "/responses";
            "GET" "/files/file-1", NO, "" => Stateful "resources" "path:/files/{id}" "/files/{id}";
            "POST" "/model/m/converse", NO, "{}" => Stateless "bedrock.invoke" "path:/model/{id}/converse" "/model/{id}/converse";
            "POST" "/openai/v1/responses", NO, r#"{"store":false}"# => Stateless "responses.stateless" "body:/store" "/openai/v1/responses";
            "POST" "/v1/responses", NO, r#"{"input":"x"}"# => Stateful "responses.store" "body:/store" "/v1/responses";
            "POST" "/v1/responses", NO, r#"{"store":false}"# => Stateless "responses.stateless" "body:/store" "/v1/responses";
            "GET" "/v1/conversations/conv_1", NO, "" => Stateful "conversations" "path:/v1/conversations/{id}" "/v1/conversations/{id}";
            "POST" "/v1/model/m/converse", NO, "{}" => Stateless "default" "none" "other";
        },
    );
    let deep = Classifier::new(settings("/gateway/openai/v1"));
    check_rows(
        &deep,
        &rows! {
            "POST" "/gateway/openai/v1/responses", NO, r#"{"store":false}"# => Stateless "responses.stateless" "body:/store" "/gateway/openai/v1/responses";
            "GET" "/openai/v1/responses/r", NO, "" => Stateful "responses.stored_object" "path:/openai/v1/responses/{id}" "/openai/v1/responses/{id}";
        },
    );
    // Longest prefix first: the deployment prefix beats a shorter configured base.
    let short = Classifier::new(settings("/openai/deployments"));
    check_rows(
        &short,
        &rows! {
            "POST" "/openai/deployments/files/chat/completions", NO, "{}" => Stateless "chat.stateless" "body:/store" "/openai/deployments/{deployment}/chat/completions";
            "GET" "/openai/deployments/files", NO, "" => Stateful "resources" "path:/openai/deployments/files" "/openai/deployments/files";
        },
    );
    // A base equal to a built-in prefix is one prefix, not two.
    let azure = Classifier::new(ClassifierSettings {
        base_path: "/openai/v1".to_owned(),
        ..settings("")
    });
    let labels: Vec<&str> = azure.route_labels().map(|(_, l)| l).collect();
    let count = labels
        .iter()
        .filter(|l| **l == "/openai/v1/responses")
        .count();
    assert_eq!(count, 1);
    // `/v1` is still recognised (a built-in prefix), without the AWS routes.
    assert!(labels.contains(&"/v1/responses"));
    assert!(!labels.contains(&"/v1/model/{id}/converse"));
}
