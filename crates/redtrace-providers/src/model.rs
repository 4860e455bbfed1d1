//! Model references and target configuration: parsed and validated once, then passed around.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::ProviderError;

/// An API key. Its `Debug` and `Display` print `***`, and it is never serialised, so it cannot
/// reach the store, logs, reports or error messages by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
    /// The key itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

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
}

/// One target (or judge) model behind an OpenAI-compatible endpoint, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The name reports use; defaults to `model`.
    pub name: String,
    /// The API base URL, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The model id sent to the API.
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
}

fn default_concurrency() -> usize {
    16
}
fn default_timeout() -> f64 {
    600.0
}
fn default_retries() -> u32 {
    5
}

impl ModelConfig {
    /// A configuration with defaults for everything but the endpoint and model id.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        let model = model.into();
        Self {
            name: model.clone(),
            base_url: base_url.into(),
            model,
            api_key_env: None,
            params: SamplingParams::default(),
            extra: Default::default(),
            stream: false,
            template_opens_think: false,
            max_concurrency: default_concurrency(),
            requests_per_minute: None,
            timeout_secs: default_timeout(),
            max_retries: default_retries(),
        }
    }

    /// Parses a command-line model reference, `MODEL@BASE_URL`.
    pub fn parse_ref(reference: &str) -> Result<Self, ProviderError> {
        let hint = "expected MODEL@BASE_URL, e.g. deepseek-r1@http://127.0.0.1:8000/v1";
        let Some((model, base_url)) = reference.rsplit_once('@') else {
            return Err(ProviderError::Config(format!(
                "unknown model reference '{reference}': {hint}"
            )));
        };
        if model.is_empty() {
            return Err(ProviderError::Config(format!(
                "model reference '{reference}' has no model id: {hint}"
            )));
        }
        let config = Self::new(base_url, model);
        config.validate()?;
        Ok(config)
    }

    /// Checks the fields that can be wrong.
    pub fn validate(&self) -> Result<(), ProviderError> {
        let url = &self.base_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ProviderError::Config(format!(
                "model '{}': base_url '{}' must start with http:// or https://",
                self.name,
                redact_url(url)
            )));
        }
        if reqwest::Url::parse(url).is_err() {
            return Err(ProviderError::Config(format!(
                "model '{}': base_url '{}' is not a valid URL",
                self.name,
                redact_url(url)
            )));
        }
        if self.max_concurrency == 0 {
            return Err(ProviderError::Config(format!(
                "model '{}': max_concurrency must be at least 1",
                self.name
            )));
        }
        if self.timeout_secs.is_nan() || self.timeout_secs <= 0.0 {
            return Err(ProviderError::Config(format!(
                "model '{}': timeout_secs must be positive",
                self.name
            )));
        }
        Ok(())
    }

    /// The endpoint requests are grouped under for concurrency and rate limits.
    pub fn endpoint(&self) -> String {
        redact_url(self.base_url.trim_end_matches('/'))
    }

    /// Reads the API key from the environment variable this config names, if any.
    pub fn api_key(&self) -> Result<Option<ApiKey>, ProviderError> {
        match &self.api_key_env {
            None => Ok(None),
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.is_empty() => Ok(Some(ApiKey::new(key))),
                _ => Err(ProviderError::Config(format!(
                    "model '{}': environment variable {var} (api_key_env) is not set",
                    self.name
                ))),
            },
        }
    }
}

/// A URL with any `user:password@` part replaced by `***@`, for display.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("***");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_at_url() {
        let config = ModelConfig::parse_ref("deepseek-r1@http://127.0.0.1:8000/v1").unwrap();
        assert_eq!(config.model, "deepseek-r1");
        assert_eq!(config.name, "deepseek-r1");
        assert_eq!(config.base_url, "http://127.0.0.1:8000/v1");
    }

    #[test]
    fn model_ids_may_contain_at_signs_before_the_url() {
        let config = ModelConfig::parse_ref("org/model@v2@http://h:1/v1").unwrap();
        assert_eq!(config.model, "org/model@v2");
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
    fn api_keys_never_print() {
        let key = ApiKey::new("sk-secret");
        assert_eq!(format!("{key:?} {key}"), "ApiKey(***) ***");
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(redact_url("http://user:pw@h:1/v1"), "http://***@h:1/v1");
        assert_eq!(redact_url("http://h:1/v1"), "http://h:1/v1");
    }
}
