//! The Gemini API (`gemini:MODEL[@BASE_URL]`): `generateContent`, and
//! `streamGenerateContent?alt=sse` when streaming. Parts marked `thought: true` are the trace,
//! which Gemini gives as thought summaries (so a `summary`, never the model's own words);
//! thinking the response does not show (a `thoughtSignature` alone, or thought tokens without
//! text) is an omitted trace. A blocked prompt (`promptFeedback.blockReason`) or a safety
//! finish (`SAFETY`, `PROHIBITED_CONTENT`, `BLOCKLIST`, `SPII`, `IMAGE_SAFETY`) is the
//! provider's refusal. A 429's `RetryInfo.retryDelay` is honoured. Thinking is configured with
//! `thinking_budget` (`thinkingBudget`) or `reasoning_effort` (`thinkingLevel`), thoughts
//! always included.

use async_trait::async_trait;
use redtrace_core::{Completion, Reasoning, Role, StopReason, TraceSource, TraceState, Usage};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

use crate::http::{sse_data, truncate_chars, Http, ERROR_BODY_CHARS};
use crate::{ApiKey, ChatRequest, ModelConfig, Provider, ProviderError};

/// Finish reasons that are Gemini's safety system stopping the answer.
const SAFETY_FINISHES: [&str; 5] = [
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "IMAGE_SAFETY",
];

/// A client for one model behind the Gemini API.
pub struct GeminiProvider {
    http: Http,
    url: String,
}

#[derive(Default)]
struct Reply {
    thoughts: String,
    text: String,
    signature: bool,
    finish: Option<String>,
    block: Option<String>,
    prompt_tokens: Option<u64>,
    answer_tokens: Option<u64>,
    thought_tokens: Option<u64>,
    cached_tokens: Option<u64>,
}

/// The wait a Gemini error body asks for: `error.details[].retryDelay` of its `RetryInfo`
/// (`"17s"`, `"1.5s"`).
fn retry_info(body: &str) -> Option<Duration> {
    let value: Value = serde_json::from_str(body).ok()?;
    value["error"]["details"]
        .as_array()?
        .iter()
        .find_map(|detail| {
            let delay = detail["retryDelay"].as_str()?;
            let secs: f64 = delay.strip_suffix('s')?.parse().ok()?;
            (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
        })
}

impl GeminiProvider {
    /// Builds the client; the key comes from the environment variable the config names.
    pub fn new(config: ModelConfig) -> Result<Self, ProviderError> {
        Ok(Self::over(Http::checked(config)?))
    }

    /// Builds the client with an explicit key (or none), sent as `x-goog-api-key`.
    pub fn with_key(config: ModelConfig, api_key: Option<ApiKey>) -> Self {
        Self::over(Http::new(config, api_key))
    }

    fn over(http: Http) -> Self {
        let model = &http.config.model;
        let path = if http.config.stream {
            format!("models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("models/{model}:generateContent")
        };
        Self {
            url: http.url(&path),
            http,
        }
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let config = &self.http.config;
        let params = &config.params;
        let (system, turns) = request.system_apart();
        let mut contents: Vec<Value> = turns
            .into_iter()
            .map(|m| {
                let role = if m.role == Role::Assistant {
                    "model"
                } else {
                    "user"
                };
                json!({ "role": role, "parts": [{ "text": m.content }] })
            })
            .collect();
        if let Some(prefill) = &config.think_prefill {
            contents.push(json!({ "role": "model", "parts": [{ "text": prefill }] }));
        }
        let mut generation = Map::new();
        if let Some(value) = params.temperature {
            generation.insert("temperature".into(), json!(value));
        }
        if let Some(value) = params.top_p {
            generation.insert("topP".into(), json!(value));
        }
        if let Some(value) = params.max_tokens {
            generation.insert("maxOutputTokens".into(), json!(value));
        }
        if let Some(value) = request.seed.or(params.seed) {
            generation.insert("seed".into(), json!(value));
        }
        if !params.stop.is_empty() {
            generation.insert("stopSequences".into(), json!(params.stop));
        }
        let mut thinking = json!({ "includeThoughts": true });
        if let Some(budget) = params.thinking_budget {
            thinking["thinkingBudget"] = json!(budget);
        }
        if let Some(effort) = &params.reasoning_effort {
            thinking["thinkingLevel"] = json!(effort);
        }
        generation.insert("thinkingConfig".into(), thinking);
        let mut body = Map::new();
        body.insert("contents".into(), Value::Array(contents));
        if let Some(system) = system {
            body.insert(
                "systemInstruction".into(),
                json!({ "parts": [{ "text": system }] }),
            );
        }
        body.insert("generationConfig".into(), Value::Object(generation));
        for (key, value) in &config.extra {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }

    fn absorb(&self, reply: &mut Reply, text: &str) -> Result<(), ProviderError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            self.http.invalid(format!(
                "Gemini response: not JSON ({e}): {}",
                truncate_chars(text, ERROR_BODY_CHARS)
            ))
        })?;
        if value.get("error").is_some() {
            return Err(self.http.invalid(format!(
                "Gemini error in a 200 response: {}",
                truncate_chars(&value["error"].to_string(), ERROR_BODY_CHARS)
            )));
        }
        if let Some(reason) = value["promptFeedback"]["blockReason"].as_str() {
            reply.block = Some(reason.to_owned());
        }
        let usage = &value["usageMetadata"];
        if usage.is_object() {
            reply.prompt_tokens = usage["promptTokenCount"].as_u64().or(reply.prompt_tokens);
            reply.answer_tokens = usage["candidatesTokenCount"]
                .as_u64()
                .or(reply.answer_tokens);
            reply.thought_tokens = usage["thoughtsTokenCount"]
                .as_u64()
                .or(reply.thought_tokens);
            reply.cached_tokens = usage["cachedContentTokenCount"]
                .as_u64()
                .or(reply.cached_tokens);
        }
        let candidate = &value["candidates"][0];
        if candidate.is_null() {
            if reply.block.is_none() && value.get("usageMetadata").is_none() {
                return Err(self.http.invalid(format!(
                    "Gemini response: no `candidates` and no `promptFeedback.blockReason`: {}",
                    truncate_chars(text, ERROR_BODY_CHARS)
                )));
            }
            return Ok(());
        }
        for part in candidate["content"]["parts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if part.get("thoughtSignature").is_some() {
                reply.signature = true;
            }
            let Some(piece) = part["text"].as_str() else {
                continue;
            };
            if part["thought"].as_bool() == Some(true) {
                reply.thoughts.push_str(piece);
            } else {
                reply.text.push_str(piece);
            }
        }
        if let Some(finish) = candidate["finishReason"].as_str() {
            reply.finish = Some(finish.to_owned());
        }
        Ok(())
    }

    fn finish(&self, reply: Reply, raw: String, started: Instant) -> Completion {
        let refused = reply.block.is_some()
            || reply
                .finish
                .as_deref()
                .is_some_and(|f| SAFETY_FINISHES.contains(&f));
        let budget_stop = reply.finish.as_deref() == Some("MAX_TOKENS");
        let thoughts = self.http.redact(reply.thoughts);
        let text = self.http.redact(reply.text);
        let in_trace = budget_stop && text.is_empty();
        let reasoning = if !thoughts.trim().is_empty() {
            Reasoning {
                text: thoughts,
                source: Some(TraceSource::GeminiThought),
                state: if in_trace {
                    TraceState::Truncated
                } else {
                    TraceState::Summary
                },
            }
        } else if reply.signature || reply.thought_tokens.unwrap_or(0) > 0 {
            Reasoning {
                state: TraceState::Omitted,
                source: Some(TraceSource::GeminiThought),
                ..Reasoning::absent()
            }
        } else {
            Reasoning::absent()
        };
        let answer = if (refused || in_trace) && text.is_empty() {
            None
        } else {
            Some(text)
        };
        let finish_reason = if refused {
            Some(StopReason::Refusal)
        } else {
            reply.finish.as_deref().map(|f| match f {
                "STOP" => StopReason::Stop,
                "MAX_TOKENS" => StopReason::Length,
                other => StopReason::Other(other.to_ascii_lowercase()),
            })
        };
        let completion_tokens = match (reply.answer_tokens, reply.thought_tokens) {
            (None, None) => None,
            (a, t) => Some(a.unwrap_or(0) + t.unwrap_or(0)),
        };
        Completion {
            reasoning,
            answer,
            finish_reason,
            usage: Usage {
                prompt_tokens: reply.prompt_tokens,
                completion_tokens,
                reasoning_tokens: reply.thought_tokens,
                cached_prompt_tokens: reply.cached_tokens,
            },
            latency_ms: started.elapsed().as_millis() as u64,
            raw: self.http.redact(raw),
        }
    }
}

#[async_trait]
impl Provider for GeminiProvider {
    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ProviderError> {
        crate::http::no_prefill(&self.http.config, request, "the Gemini API")?;
        let started = Instant::now();
        let mut builder = self.http.client.post(&self.url).json(&self.body(request));
        if let Some(key) = &self.http.api_key {
            builder = builder.header("x-goog-api-key", key.expose());
        }
        let response = self.http.send(builder, retry_info).await?;
        let mut reply = Reply::default();
        if self.http.config.stream {
            self.http
                .lines(response, |line| match sse_data(line) {
                    Some(data) if !data.is_empty() => self.absorb(&mut reply, data),
                    _ => Ok(()),
                })
                .await?;
            if reply.finish.is_none() && reply.block.is_none() {
                return Err(self.http.cut("no finishReason"));
            }
            let raw = json!({
                "streamed": true,
                "candidates": [{
                    "content": { "role": "model", "parts": [
                        { "text": reply.thoughts, "thought": true },
                        { "text": reply.text },
                    ] },
                    "finishReason": reply.finish,
                }],
                "promptFeedback": reply.block.as_ref().map(|b| json!({ "blockReason": b })),
                "usageMetadata": {
                    "promptTokenCount": reply.prompt_tokens,
                    "candidatesTokenCount": reply.answer_tokens,
                    "thoughtsTokenCount": reply.thought_tokens,
                },
            })
            .to_string();
            Ok(self.finish(reply, raw, started))
        } else {
            let text = self.http.body(response).await?;
            self.absorb(&mut reply, &text)?;
            if reply.finish.is_none() && reply.block.is_none() {
                return Err(self.http.invalid(format!(
                    "Gemini response: no candidate with a `finishReason`: {}",
                    truncate_chars(&text, ERROR_BODY_CHARS)
                )));
            }
            Ok(self.finish(reply, text, started))
        }
    }

    fn batch_api(&self) -> Option<crate::BatchApi> {
        Some(crate::BatchApi::Gemini)
    }

    fn batch_body(&self, request: &ChatRequest) -> Value {
        self.body(request)
    }

    fn batch_reply(&self, request: &ChatRequest, body: &str) -> Result<Completion, ProviderError> {
        crate::http::no_prefill(&self.http.config, request, "the Gemini API")?;
        let mut reply = Reply::default();
        self.absorb(&mut reply, body)?;
        if reply.finish.is_none() && reply.block.is_none() {
            return Err(self.http.invalid(format!(
                "Gemini batch response: no candidate with a `finishReason`: {}",
                truncate_chars(body, ERROR_BODY_CHARS)
            )));
        }
        Ok(self.finish(reply, body.to_owned(), Instant::now()))
    }

    fn fingerprint(&self, request: &ChatRequest) -> String {
        json!({
            "api": "gemini",
            "endpoint": self.http.endpoint,
            "model": self.http.config.model,
            "body": self.body(request),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_info_delay_is_read_from_the_error_body() {
        let body = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure"},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"17s"}]}}"#;
        assert_eq!(retry_info(body), Some(Duration::from_secs(17)));
        assert_eq!(retry_info("{}"), None);
        assert_eq!(retry_info("not json"), None);
    }
}
