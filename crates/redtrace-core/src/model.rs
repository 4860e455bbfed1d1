//! Model references and target configuration: what a model is and where it runs, parsed and
//! validated once, then passed around (and recorded in a run's spec). Clients live in
//! `redtrace-providers`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A model reference or configuration that cannot be used, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Sampling parameters sent with each request; unset ones are left to the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Token budget for trace and answer together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Seed, where the server honours one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// How hard a reasoning model thinks (`low`, `medium`, `high`), mapped per API: OpenAI
    /// and OpenRouter `reasoning_effort` / `reasoning.effort`, Anthropic adaptive thinking's
    /// effort, Gemini's `thinkingLevel`, Ollama's `think` level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// The thinking token budget, mapped per API: Anthropic `budget_tokens`, Gemini
    /// `thinkingBudget`, OpenRouter `reasoning.max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<u64>,
}

/// The reasoning efforts `--reasoning-effort` takes.
pub const REASONING_EFFORTS: [&str; 3] = ["low", "medium", "high"];

/// Where a model runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    /// Behind an OpenAI-compatible endpoint.
    #[serde(rename = "openai")]
    OpenAi {
        /// The API base URL, e.g. `http://127.0.0.1:8000/v1`.
        base_url: String,
    },
    /// A local GGUF file, run in-process with llama.cpp.
    Gguf {
        /// The file.
        path: String,
    },
    /// A GGUF file on the Hugging Face hub, downloaded once into its cache, then run
    /// in-process.
    Hf {
        /// `OWNER/NAME`.
        repo: String,
        /// The file within the repository.
        file: String,
    },
    /// Behind Anthropic's Messages API (`BASE_URL/messages`).
    Anthropic {
        /// The API base URL, e.g. `https://api.anthropic.com/v1`.
        base_url: String,
    },
    /// Behind OpenAI's Responses API (`BASE_URL/responses`).
    #[serde(rename = "openai_responses")]
    OpenAiResponses {
        /// The API base URL, e.g. `https://api.openai.com/v1`.
        base_url: String,
    },
    /// Behind the Gemini API (`BASE_URL/models/MODEL:generateContent`).
    Gemini {
        /// The API base URL, e.g. `https://generativelanguage.googleapis.com/v1beta`.
        base_url: String,
    },
    /// Behind Ollama's native API (`BASE_URL/api/chat`).
    Ollama {
        /// The server, e.g. `http://127.0.0.1:11434`.
        base_url: String,
    },
    /// Generations made elsewhere, read from a file by `redtrace import`: never asked.
    Imported {
        /// The file they were read from.
        file: String,
    },
}

/// One target (or judge) model, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The name reports use; defaults to `model`.
    pub name: String,
    /// Where it runs.
    pub source: ModelSource,
    /// The model id sent to the API (for local models, the file's stem).
    pub model: String,
    /// The environment variable holding the API key, if any. The key itself is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Sampling parameters.
    #[serde(default)]
    pub params: SamplingParams,
    /// Extra JSON fields passed through verbatim (`reasoning_effort`, `chat_template_kwargs`...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Use server-sent events streaming.
    #[serde(default)]
    pub stream: bool,
    /// The chat template opens `<think>` in the prompt (R1 distills served raw), so output
    /// without a closing tag is all trace.
    #[serde(default)]
    pub template_opens_think: bool,
    /// In dialogues, send the model's earlier traces back with its earlier replies
    /// (`reasoning_content` on OpenAI-compatible servers, `thinking` on Ollama). Off by
    /// default: every API accepts earlier replies without their traces, and some (DeepSeek)
    /// reject them with.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay_traces: bool,
    /// Text the assistant turn starts with (e.g. `<think>\n` to force a trace): a trailing
    /// assistant message for servers, appended to the prompt for local models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think_prefill: Option<String>,
    /// Threads for local inference; default suited to the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Requests in flight at once against this endpoint.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Requests per minute, if the endpoint has a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Per-request timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Retries after the first attempt for retryable failures.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// A response body (or stream) past this many bytes is cut off and the request fails;
    /// [`DEFAULT_MAX_RESPONSE_BYTES`] when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// What its tokens cost (from the price table, `--prices`, or the suite's `price`); `None`:
    /// no price known. Not part of a run's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<crate::price::Price>,
    /// Send the run's requests through the provider's batch API (`None`: one by one). Not
    /// part of a run's identity: a batch reply is the same completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchConfig>,
}

/// How a model's requests go through its provider's batch API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Seconds between two looks at a batch's state.
    #[serde(default = "default_poll_secs")]
    pub poll_secs: f64,
    /// Seconds a batch waits for more requests after the last one arrived before it is sent.
    #[serde(default = "default_window_secs")]
    pub window_secs: f64,
    /// What happens to requests a batch failed (a server error) or let expire: `live` sends
    /// each on its own, `batch` puts them in a new batch.
    #[serde(default)]
    pub retry: BatchRetry,
    /// Requests per batch at most (the provider's own limit when lower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<usize>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            poll_secs: default_poll_secs(),
            window_secs: default_window_secs(),
            retry: BatchRetry::default(),
            max_requests: None,
        }
    }
}

fn default_poll_secs() -> f64 {
    30.0
}
fn default_window_secs() -> f64 {
    2.0
}

/// Where a batch's failed or expired requests go again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchRetry {
    /// Each on its own, at once.
    #[default]
    Live,
    /// Together in a new batch.
    Batch,
}

/// The largest response read unless a model says otherwise: far above any real completion,
/// far below what would exhaust the memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

fn default_concurrency() -> usize {
    16
}
fn default_timeout() -> f64 {
    600.0
}
fn default_retries() -> u32 {
    5
}

/// The native APIs a model reference can name: its prefix, the API's default base URL, and
/// the source it makes.
type MakeSource = fn(String) -> ModelSource;
const NATIVE_APIS: [(&str, &str, MakeSource); 4] = [
    ("anthropic:", "https://api.anthropic.com/v1", |base_url| {
        ModelSource::Anthropic { base_url }
    }),
    (
        "openai-responses:",
        "https://api.openai.com/v1",
        |base_url| ModelSource::OpenAiResponses { base_url },
    ),
    (
        "gemini:",
        "https://generativelanguage.googleapis.com/v1beta",
        |base_url| ModelSource::Gemini { base_url },
    ),
    ("ollama:", "http://127.0.0.1:11434", |base_url| {
        ModelSource::Ollama { base_url }
    }),
];

impl ModelConfig {
    /// A configuration with defaults for everything but the endpoint and model id.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self::with_source(
            ModelSource::OpenAi {
                base_url: base_url.into(),
            },
            model,
        )
    }

    /// A configuration with defaults for everything but the source and model id.
    pub fn with_source(source: ModelSource, model: impl Into<String>) -> Self {
        let model = model.into();
        // A local model decodes its parallel sequences in one batch: more requests in flight
        // than its sequences only queue.
        let max_concurrency = match source {
            ModelSource::Gguf { .. } | ModelSource::Hf { .. } => 4,
            _ => default_concurrency(),
        };
        Self {
            name: model.clone(),
            source,
            model,
            api_key_env: None,
            params: SamplingParams::default(),
            extra: Default::default(),
            stream: false,
            template_opens_think: false,
            replay_traces: false,
            think_prefill: None,
            threads: None,
            max_concurrency,
            requests_per_minute: None,
            timeout_secs: default_timeout(),
            max_retries: default_retries(),
            max_response_bytes: None,
            price: None,
            batch: None,
        }
    }

    /// The largest response read, in bytes.
    pub fn max_response_bytes(&self) -> usize {
        usize::try_from(
            self.max_response_bytes
                .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
        )
        .unwrap_or(usize::MAX)
    }

    /// Parses a command-line model reference: `MODEL@BASE_URL`, `gguf:PATH` or
    /// `hf:OWNER/REPO/FILE.gguf`.
    pub fn parse_ref(reference: &str) -> Result<Self, ConfigError> {
        let stem = |file: &str| {
            std::path::Path::new(file)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or(file)
                .to_owned()
        };
        let native = NATIVE_APIS.iter().find_map(|(prefix, default, make)| {
            reference
                .strip_prefix(prefix)
                .map(|rest| (*prefix, *default, make, rest))
        });
        let config = if let Some((prefix, default, make, rest)) = native {
            // PREFIX:MODEL[@BASE_URL]: the URL starts at the last `@http`, as for
            // MODEL@BASE_URL.
            let (model, base_url) = ["@http://", "@https://"]
                .iter()
                .filter_map(|marker| rest.rfind(marker))
                .max()
                .map_or((rest, default), |at| (&rest[..at], &rest[at + 1..]));
            if model.is_empty() {
                return Err(ConfigError(format!(
                    "model reference '{}' has no model id: expected {prefix}MODEL[@BASE_URL]",
                    redact_credentials(reference)
                )));
            }
            Self::with_source(make(base_url.to_owned()), model)
        } else if let Some(path) = reference.strip_prefix("gguf:") {
            Self::with_source(
                ModelSource::Gguf {
                    path: path.to_owned(),
                },
                stem(path),
            )
        } else if let Some(spec) = reference.strip_prefix("hf:") {
            let parts: Vec<&str> = spec.splitn(3, '/').collect();
            let [owner, name, file] = parts[..] else {
                return Err(ConfigError(format!(
                    "model reference '{reference}': expected hf:OWNER/REPO/FILE.gguf"
                )));
            };
            let source = ModelSource::Hf {
                repo: format!("{owner}/{name}"),
                file: file.to_owned(),
            };
            Self::with_source(source, stem(file))
        } else {
            let hint = "expected MODEL@BASE_URL (e.g. deepseek-r1@http://127.0.0.1:8000/v1), \
                        anthropic:MODEL, openai-responses:MODEL, gemini:MODEL, ollama:MODEL \
                        (each with an optional @BASE_URL), gguf:PATH or hf:OWNER/REPO/FILE.gguf";
            // The URL starts at the last `@http`: a model id may hold `@`, and so may a URL's
            // credentials (refused by `validate`, never taken for part of the model id).
            let split = ["@http://", "@https://"]
                .iter()
                .filter_map(|marker| reference.rfind(marker))
                .max()
                .map(|at| (&reference[..at], &reference[at + 1..]))
                .or_else(|| reference.rsplit_once('@'));
            let Some((model, base_url)) = split else {
                return Err(ConfigError(format!(
                    "unknown model reference '{}': {hint}",
                    redact_credentials(reference)
                )));
            };
            if model.is_empty() {
                return Err(ConfigError(format!(
                    "model reference '{reference}' has no model id: {hint}"
                )));
            }
            Self::new(base_url, model)
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the fields that can be wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |what: String| Err(ConfigError(format!("model '{}': {what}", self.name)));
        match &self.source {
            ModelSource::OpenAi { base_url }
            | ModelSource::Anthropic { base_url }
            | ModelSource::OpenAiResponses { base_url }
            | ModelSource::Gemini { base_url }
            | ModelSource::Ollama { base_url } => {
                if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                    return fail(format!(
                        "base_url '{}' must start with http:// or https://",
                        redact_url(base_url)
                    ));
                }
                let Ok(parsed) = url::Url::parse(base_url) else {
                    return fail(format!(
                        "base_url '{}' is not a valid URL",
                        redact_url(base_url)
                    ));
                };
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return fail(format!(
                        "base_url '{}' carries credentials, which would be stored with the run \
                         and shown in reports: name the environment variable that holds the key \
                         instead (api_key_env, or --api-key-env)",
                        redact_url(base_url)
                    ));
                }
            }
            ModelSource::Gguf { path } => {
                if !std::path::Path::new(path).is_file() {
                    return fail(format!("GGUF file {path} does not exist"));
                }
            }
            ModelSource::Hf { repo, file } => {
                let parts: Vec<&str> = repo.split('/').collect();
                if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) || file.is_empty() {
                    return fail(format!(
                        "hf source must be OWNER/REPO and a FILE, got '{repo}' and '{file}'"
                    ));
                }
            }
            ModelSource::Imported { .. } => {}
        }
        if let Some(effort) = &self.params.reasoning_effort {
            if !REASONING_EFFORTS.contains(&effort.as_str()) {
                return fail(format!(
                    "reasoning_effort '{effort}': give {}",
                    REASONING_EFFORTS.join(", ")
                ));
            }
        }
        // A reasoning setting the API has no place for is refused before anything is sent.
        let unsupported = match &self.source {
            ModelSource::Gguf { .. } | ModelSource::Hf { .. } => Some((
                "an in-process model",
                true,
                true,
                "cap its output with max_tokens",
            )),
            ModelSource::Ollama { .. } => Some((
                "Ollama",
                false,
                true,
                "give reasoning_effort (think levels)",
            )),
            ModelSource::OpenAiResponses { .. } => Some((
                "the Responses API",
                false,
                true,
                "give reasoning_effort, or max_tokens for the whole output",
            )),
            _ => None,
        };
        if self.think_prefill.is_some()
            && matches!(
                self.source,
                ModelSource::OpenAiResponses { .. } | ModelSource::Gemini { .. }
            )
        {
            return fail(
                "think_prefill: this API does not continue an assistant turn (a prefill is not supported by this provider)".into(),
            );
        }
        if matches!(self.source, ModelSource::Anthropic { .. })
            && (self.params.thinking_budget.is_some() || self.params.reasoning_effort.is_some())
            && self.params.temperature.is_some_and(|t| t != 1.0)
        {
            return fail(
                "Anthropic takes no temperature but 1 with thinking on: leave temperature unset"
                    .into(),
            );
        }
        if self.replay_traces {
            let refused = match &self.source {
                ModelSource::Anthropic { .. } => Some("Anthropic takes earlier thinking back only as the signed blocks it sent"),
                ModelSource::Gemini { .. } => Some("Gemini takes earlier thoughts back only with their signatures"),
                ModelSource::OpenAiResponses { .. } => Some("the Responses API takes earlier reasoning back only as its own items"),
                ModelSource::Gguf { .. } | ModelSource::Hf { .. } => Some("in-process models render earlier turns with their chat template, which drops traces"),
                _ => None,
            };
            if let Some(why) = refused {
                return fail(format!(
                    "replay_traces: {why}; earlier replies go back without their traces (the default)"
                ));
            }
        }
        if let Some((api, no_effort, no_budget, instead)) = unsupported {
            if no_effort && self.params.reasoning_effort.is_some() {
                return fail(format!("{api} takes no reasoning_effort: {instead}"));
            }
            if no_budget && self.params.thinking_budget.is_some() {
                return fail(format!("{api} takes no thinking_budget: {instead}"));
            }
        }
        if self.max_concurrency == 0 {
            return fail("max_concurrency must be at least 1".into());
        }
        if self.timeout_secs.is_nan() || self.timeout_secs <= 0.0 {
            return fail("timeout_secs must be positive".into());
        }
        Ok(())
    }

    /// The endpoint requests are grouped under for concurrency and rate limits.
    pub fn endpoint(&self) -> String {
        match &self.source {
            ModelSource::OpenAi { base_url }
            | ModelSource::Anthropic { base_url }
            | ModelSource::OpenAiResponses { base_url }
            | ModelSource::Gemini { base_url }
            | ModelSource::Ollama { base_url } => redact_url(base_url.trim_end_matches('/')),
            ModelSource::Gguf { path } => format!("gguf:{path}"),
            ModelSource::Hf { repo, file } => format!("hf:{repo}/{file}"),
            ModelSource::Imported { file } => format!("imported:{file}"),
        }
    }

    /// The base URL, for a model behind an OpenAI-compatible endpoint.
    pub fn base_url(&self) -> Option<&str> {
        match &self.source {
            ModelSource::OpenAi { base_url }
            | ModelSource::Anthropic { base_url }
            | ModelSource::OpenAiResponses { base_url }
            | ModelSource::Gemini { base_url }
            | ModelSource::Ollama { base_url } => Some(base_url),
            _ => None,
        }
    }
}

/// A model reference as the user wrote it (`MODEL@BASE_URL`, `gguf:PATH`, `hf:OWNER/REPO/FILE`),
/// parsed once: the text is what a run's identity records, the configuration what is built.
#[derive(Debug, Clone)]
pub struct ModelRef {
    text: String,
    config: ModelConfig,
}

impl ModelRef {
    /// Parses and checks a reference.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            config: ModelConfig::parse_ref(text)?,
            text: text.to_owned(),
        })
    }

    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The model it names, with default settings.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }
}

/// Two references are the same model when they are written the same.
impl PartialEq for ModelRef {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for ModelRef {}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A URL with any `user:password@` part replaced by `***@`, for display.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("***");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => redact_credentials(url),
    }
}

/// Any text (a model reference, an error) with the `user:password@` part of every URL in it
/// replaced by `***@`.
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme_end + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?' or '#' (or the text's end); credentials
        // are what comes before its last '@'.
        let authority_end = tail.find(['/', '?', '#', ' ']).unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_at_url() {
        let config = ModelConfig::parse_ref("deepseek-r1@http://127.0.0.1:8000/v1").unwrap();
        assert_eq!(config.model, "deepseek-r1");
        assert_eq!(config.name, "deepseek-r1");
        assert_eq!(config.base_url(), Some("http://127.0.0.1:8000/v1"));
    }

    #[test]
    fn model_ids_may_contain_at_signs_before_the_url() {
        let config = ModelConfig::parse_ref("org/model@v2@http://h:1/v1").unwrap();
        assert_eq!(config.model, "org/model@v2");
    }

    #[test]
    fn parses_local_references() {
        let file = std::env::temp_dir().join("redtrace-parse-test.gguf");
        std::fs::write(&file, b"GGUF").unwrap();
        let config = ModelConfig::parse_ref(&format!("gguf:{}", file.display())).unwrap();
        assert_eq!(config.model, "redtrace-parse-test");
        assert!(matches!(config.source, ModelSource::Gguf { .. }));
        let config = ModelConfig::parse_ref(
            "hf:bartowski/DeepSeek-R1-Distill-Qwen-1.5B-GGUF/model-Q4_K_M.gguf",
        )
        .unwrap();
        assert_eq!(
            config.source,
            ModelSource::Hf {
                repo: "bartowski/DeepSeek-R1-Distill-Qwen-1.5B-GGUF".into(),
                file: "model-Q4_K_M.gguf".into()
            }
        );
        assert_eq!(config.name, "model-Q4_K_M");
        let error = ModelConfig::parse_ref("gguf:/no/such/model.gguf")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/no/such/model.gguf does not exist"),
            "{error}"
        );
        let error = ModelConfig::parse_ref("hf:only-owner")
            .unwrap_err()
            .to_string();
        assert!(error.contains("hf:OWNER/REPO/FILE.gguf"), "{error}");
    }

    #[test]
    fn rejects_unknown_references_with_a_hint() {
        let error = ModelConfig::parse_ref("gpt-9").unwrap_err().to_string();
        assert!(error.contains("unknown model reference 'gpt-9'"), "{error}");
        assert!(error.contains("MODEL@BASE_URL"), "{error}");
        let error = ModelConfig::parse_ref("m@ftp://x").unwrap_err().to_string();
        assert!(error.contains("must start with http"), "{error}");
    }

    #[test]
    fn credentials_in_a_reference_stay_with_its_url() {
        let error = ModelConfig::parse_ref("m@http://u:s3cret@h:1/v1")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("carries credentials") && !error.contains("s3cret"),
            "{error}"
        );
        assert_eq!(
            ModelConfig::parse_ref("org/m@v2@https://h:1/v1")
                .unwrap()
                .model,
            "org/m@v2"
        );
    }

    #[test]
    fn credentials_in_urls_are_refused_and_never_shown() {
        let mut config = ModelConfig::new("http://user:s3cret@h:1/v1", "m");
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("carries credentials") && !error.contains("s3cret"),
            "{error}"
        );
        config.source = ModelSource::OpenAi {
            base_url: "http://h:1/v1".into(),
        };
        assert!(config.validate().is_ok());
        assert_eq!(
            redact_credentials("judge 'harm=m@http://u:s3cret@h/v1' and https://k@x.io?q=1"),
            "judge 'harm=m@http://***@h/v1' and https://***@x.io?q=1"
        );
        assert_eq!(redact_credentials("no url here"), "no url here");
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(redact_url("http://user:pw@h:1/v1"), "http://***@h:1/v1");
        assert_eq!(redact_url("http://h:1/v1"), "http://h:1/v1");
    }
}
