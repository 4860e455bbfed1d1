//! Model providers: model references and configuration, the OpenAI-compatible chat client
//! (non-streaming and SSE streaming), the native APIs that keep a reasoning model's trace apart
//! from its answer (Anthropic Messages, OpenAI Responses, Gemini, Ollama), the shared HTTP
//! plumbing they stand on, and the one place where a trace inline in the text is split from
//! the answer ([`split_reasoning`]).
//!
//! A provider makes exactly one attempt per call; retries, rate limits and concurrency belong
//! to the engine, which asks [`ProviderError::is_retryable`] and
//! [`ProviderError::retry_after`] rather than guessing from messages.

mod anthropic;
mod batch;
mod gemini;
mod http;
mod limits;
mod model;
mod ollama;
mod openai;
mod responses;
mod split;
mod text;

pub use anthropic::{AnthropicProvider, ANTHROPIC_VERSION};
pub use batch::{BatchLedger, BatchProvider, LedgerBatch};
pub use gemini::GeminiProvider;
pub use limits::{
    Backoff, Gate, RateLimiter, SharedPermits, SharedSchedule, Shutdown, MAX_RETRY_AFTER,
    TRIP_AFTER,
};
pub use model::{api_key, ApiKey};
pub use ollama::OllamaProvider;
pub use openai::OpenAiProvider;
pub use redtrace_core::model::{
    redact_url, ConfigError, ModelConfig, ModelRef, ModelSource, SamplingParams,
};
pub use responses::ResponsesProvider;
pub use split::{split_reasoning, RawOutput};
pub use text::{FirstToken, TextPrompt, TextReply, TextRequest, TokenLogprobs};

use async_trait::async_trait;
use redtrace_core::{Completion, Message};
use std::time::Duration;

/// One request to a chat model.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The conversation; a trailing assistant message is a prefill.
    pub messages: Vec<Message>,
    /// A seed that overrides the model's configured one (distinct samples of one prompt).
    pub seed: Option<u64>,
}

impl ChatRequest {
    /// The system turns joined (for APIs that take the system prompt apart: Anthropic's
    /// `system`, Gemini's `systemInstruction`, the Responses API's `instructions`), and the
    /// other turns.
    pub(crate) fn system_apart(&self) -> (Option<String>, Vec<&Message>) {
        let system: Vec<&str> = self
            .messages
            .iter()
            .filter(|m| m.role == redtrace_core::Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let turns = self
            .messages
            .iter()
            .filter(|m| m.role != redtrace_core::Role::System)
            .collect();
        ((!system.is_empty()).then(|| system.join("\n\n")), turns)
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The server answered with an error status.
    #[error("HTTP {status} from {endpoint}: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The endpoint, without credentials.
        endpoint: String,
        /// The start of the response body.
        body: String,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// No answer within the per-request timeout.
    #[error("request to {endpoint} timed out after {secs:.1}s")]
    Timeout {
        /// The endpoint, without credentials.
        endpoint: String,
        /// The timeout that ran out.
        secs: f64,
    },
    /// The connection could not be made or was dropped before a full response arrived.
    #[error("connection to {endpoint} failed: {detail}")]
    Connection {
        /// The endpoint, without credentials.
        endpoint: String,
        /// What went wrong.
        detail: String,
    },
    /// The server answered 200 with something that is not a chat completion.
    #[error("invalid response from {endpoint}: {detail}")]
    InvalidResponse {
        /// The endpoint, without credentials.
        endpoint: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The configuration is unusable (bad URL, missing key variable).
    #[error("{0}")]
    Config(String),
}

impl ProviderError {
    /// Whether trying again may succeed: 408, 409, 425, 429 and 5xx, timeouts and dropped
    /// connections are; other 4xx, malformed responses and configuration errors are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Http { status, .. } => {
                matches!(status, 408 | 409 | 425 | 429) || *status >= 500
            }
            ProviderError::Timeout { .. } | ProviderError::Connection { .. } => true,
            ProviderError::InvalidResponse { .. } | ProviderError::Config(_) => false,
        }
    }

    /// How long the server asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short machine-readable kind for the store and reports.
    pub fn kind(&self) -> redtrace_core::ErrorKind {
        use redtrace_core::ErrorKind;
        match self {
            ProviderError::Http { status: 429, .. } => ErrorKind::RateLimited,
            ProviderError::Http { status, .. } if *status >= 500 => ErrorKind::ServerError,
            ProviderError::Http { .. } => ErrorKind::HttpError,
            ProviderError::Timeout { .. } => ErrorKind::Timeout,
            ProviderError::Connection { .. } => ErrorKind::Connection,
            ProviderError::InvalidResponse { .. } => ErrorKind::InvalidResponse,
            ProviderError::Config(_) => ErrorKind::Config,
        }
    }
}

/// A chat model behind some API.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Sends one request, once, and returns the split completion.
    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ProviderError>;

    /// A canonical description of what would be sent (no secrets), used as the cache key.
    fn fingerprint(&self, request: &ChatRequest) -> String;

    /// Sends one text request ([`TextRequest`]: a raw prompt or a conversation as it stands,
    /// with log-probabilities when asked), once. APIs that serve neither (the native reasoning
    /// APIs) refuse it before anything is sent.
    async fn complete_text(&self, _request: &TextRequest) -> Result<TextReply, ProviderError> {
        Err(ProviderError::Config(
            "this model's API serves no text completions or log-probabilities: a guard-model \
             judge needs an OpenAI-compatible server (vLLM, SGLang, llama.cpp's llama-server) \
             or an in-process gguf: model"
                .into(),
        ))
    }

    /// [`Provider::fingerprint`] of a text request.
    fn text_fingerprint(&self, request: &TextRequest) -> String {
        serde_json::to_string(request).expect("a text request serialises")
    }

    /// The batch API this provider's requests can go through, if any.
    fn batch_api(&self) -> Option<BatchApi> {
        None
    }

    /// The body of `request` as one line of a batch (never streamed).
    fn batch_body(&self, _request: &ChatRequest) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// A batch's reply body for `request`, read as this provider reads its own replies.
    fn batch_reply(
        &self,
        _request: &ChatRequest,
        _body: &str,
    ) -> Result<Completion, ProviderError> {
        Err(ProviderError::Config(
            "this model's API has no batch API".into(),
        ))
    }
}

/// The batch APIs redtrace speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchApi {
    /// OpenAI Batch: a JSONL file uploaded to `/files`, `/batches`, output and error files.
    OpenAi,
    /// Anthropic Message Batches: `/messages/batches`, a results file.
    Anthropic,
    /// Gemini's batch mode: `models/MODEL:batchGenerateContent` with inline requests, the
    /// responses inline in the batch, in the order of the requests.
    Gemini,
}
