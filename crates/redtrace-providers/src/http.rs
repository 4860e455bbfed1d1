//! What every HTTP provider shares: one client per model with its timeouts, errors that name
//! the endpoint and never the key (the key is redacted wherever a server echoes it), bodies
//! read up to a cap (an endless or huge body never fills the memory), `Retry-After` read from
//! an error response, and a streamed body split into lines as they arrive.

use futures_util::StreamExt;
use std::time::Duration;

use crate::{ApiKey, ModelConfig, ProviderError};

/// How much of an error body goes into an error message.
pub(crate) const ERROR_BODY_CHARS: usize = 300;

/// An error body is read this far at most: its start is all an error message shows.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// The HTTP side of one model's client.
pub(crate) struct Http {
    pub(crate) config: ModelConfig,
    pub(crate) api_key: Option<ApiKey>,
    pub(crate) client: reqwest::Client,
    /// The endpoint as errors name it: no credentials.
    pub(crate) endpoint: String,
}

/// `text` cut to `limit` characters, with an ellipsis when cut.
pub(crate) fn truncate_chars(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A `Retry-After` header: seconds or an HTTP date.
pub(crate) fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(3600.0)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

impl Http {
    /// The client for `config`, with `api_key` (or none).
    pub(crate) fn new(config: ModelConfig, api_key: Option<ApiKey>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(config.timeout_secs))
            .connect_timeout(Duration::from_secs_f64(config.timeout_secs.min(30.0)))
            .pool_max_idle_per_host(config.max_concurrency)
            .build()
            .expect("a reqwest client with static settings builds");
        let endpoint = config.endpoint();
        Self {
            config,
            api_key,
            client,
            endpoint,
        }
    }

    /// The client of `config`, checked, with the key read from the variable it names.
    pub(crate) fn checked(config: ModelConfig) -> Result<Self, ProviderError> {
        config.validate()?;
        let api_key = crate::api_key(&config)?;
        Ok(Self::new(config, api_key))
    }

    /// The model's base URL with `path` after it.
    pub(crate) fn url(&self, path: &str) -> String {
        format!(
            "{}/{path}",
            self.config
                .base_url()
                .unwrap_or_default()
                .trim_end_matches('/')
        )
    }

    pub(crate) fn transport_error(&self, error: reqwest::Error) -> ProviderError {
        if error.is_timeout() {
            ProviderError::Timeout {
                endpoint: self.endpoint.clone(),
                secs: self.config.timeout_secs,
            }
        } else {
            // reqwest's messages name the URL; ours has no credentials in it, but strip the
            // URL anyway so nothing but our redacted endpoint is shown.
            let source = std::error::Error::source(&error).map(|source| source.to_string());
            let detail = error.without_url().to_string();
            let detail = match source {
                Some(source) => format!("{detail}: {source}"),
                None => detail,
            };
            ProviderError::Connection {
                endpoint: self.endpoint.clone(),
                detail,
            }
        }
    }

    /// A response that is not what the API sends, named as the provider's.
    pub(crate) fn invalid(&self, detail: impl Into<String>) -> ProviderError {
        ProviderError::InvalidResponse {
            endpoint: self.endpoint.clone(),
            detail: self.redact(detail.into()),
        }
    }

    /// A stream that ended before the API says a response ends.
    pub(crate) fn cut(&self, detail: &str) -> ProviderError {
        ProviderError::Connection {
            endpoint: self.endpoint.clone(),
            detail: format!("stream ended before the completion finished ({detail})"),
        }
    }

    pub(crate) fn too_large(&self, limit: usize) -> ProviderError {
        self.invalid(format!(
            "the response passed {limit} bytes and was cut off (max_response_bytes in the \
             model's suite table raises the cap)"
        ))
    }

    /// `text` with this client's key replaced by `***` wherever a server echoed it (in an
    /// error body, or in a reply), so that it reaches no store, report or message.
    pub(crate) fn redact(&self, text: String) -> String {
        match &self.api_key {
            Some(key) if !key.expose().is_empty() && text.contains(key.expose()) => {
                text.replace(key.expose(), "***")
            }
            _ => text,
        }
    }

    /// The body, read up to `limit` bytes: past it, an error (`fail`) or the start alone.
    pub(crate) async fn read_capped(
        &self,
        response: reqwest::Response,
        limit: usize,
        fail: bool,
    ) -> Result<String, ProviderError> {
        let mut body: Vec<u8> = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| self.transport_error(error))?;
            if body.len() + chunk.len() > limit {
                if fail {
                    return Err(self.too_large(limit));
                }
                body.extend_from_slice(&chunk[..limit - body.len()]);
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Sends `request`; a non-success status becomes [`ProviderError::Http`] with the start of
    /// its body and the server's wait hint: `Retry-After`, else what `hint` reads in the body
    /// (Gemini's `RetryInfo`).
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
        hint: fn(&str) -> Option<Duration>,
    ) -> Result<reqwest::Response, ProviderError> {
        let response = request
            .send()
            .await
            .map_err(|error| self.transport_error(error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = parse_retry_after(response.headers());
        let body = self
            .read_capped(response, ERROR_BODY_BYTES, false)
            .await
            .unwrap_or_default();
        let body = self.redact(body);
        Err(ProviderError::Http {
            status: status.as_u16(),
            endpoint: self.endpoint.clone(),
            retry_after: retry_after.or_else(|| hint(&body)),
            body: truncate_chars(body.trim(), ERROR_BODY_CHARS),
        })
    }

    /// The whole body of a successful response, up to the model's cap.
    pub(crate) async fn body(&self, response: reqwest::Response) -> Result<String, ProviderError> {
        let limit = self.config.max_response_bytes();
        self.read_capped(response, limit, true).await
    }

    /// Hands each line of a streamed body to `line` as it arrives (without its line break),
    /// the last one too; the model's cap holds for the whole stream.
    pub(crate) async fn lines(
        &self,
        response: reqwest::Response,
        mut line: impl FnMut(&str) -> Result<(), ProviderError>,
    ) -> Result<(), ProviderError> {
        let mut stream = response.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        let limit = self.config.max_response_bytes();
        let mut received = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| self.transport_error(error))?;
            received += chunk.len();
            if received > limit {
                return Err(self.too_large(limit));
            }
            pending.extend_from_slice(&chunk);
            while let Some(newline) = pending.iter().position(|&byte| byte == b'\n') {
                let text: Vec<u8> = pending.drain(..=newline).collect();
                let text = String::from_utf8_lossy(&text);
                line(text.trim_end_matches(['\r', '\n']))?;
            }
        }
        let tail = String::from_utf8_lossy(&pending);
        let tail = tail.trim();
        if !tail.is_empty() {
            line(tail)?;
        }
        Ok(())
    }
}

/// Refuses a request that ends with an assistant turn (a prefill: `--think-prefill`, or the
/// `trace-prefill`, `zerothink`, `lessthink` and `morethink` attacks) for an API that cannot
/// continue one, before anything is sent.
pub(crate) fn no_prefill(
    config: &ModelConfig,
    request: &crate::ChatRequest,
    api: &str,
) -> Result<(), ProviderError> {
    let ends_with_assistant = request
        .messages
        .last()
        .is_some_and(|m| m.role == redtrace_core::Role::Assistant);
    if ends_with_assistant || config.think_prefill.is_some() {
        return Err(ProviderError::Config(format!(
            "model '{}': {api} does not continue an assistant turn, so a prefill (--think-prefill, or the trace-prefill, zerothink, lessthink and morethink attacks) is not supported by this provider",
            config.name
        )));
    }
    Ok(())
}

/// The data of server-sent event lines: `data: {...}` → `{...}`; other lines (`event:`,
/// comments, blank) → `None`.
pub(crate) fn sse_data(line: &str) -> Option<&str> {
    line.strip_prefix("data:").map(str::trim)
}
