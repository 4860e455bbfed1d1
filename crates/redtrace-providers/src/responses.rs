//! OpenAI's Responses API (`openai-responses:MODEL[@BASE_URL]`, `BASE_URL/responses`), plain
//! and streamed: `reasoning` output items carry the trace as the provider's summary (never the
//! model's own words) or, when asked with `include: ["reasoning.encrypted_content"]` in
//! `extra`, encrypted only; `message` items the answer; a `refusal` content part, or an
//! `incomplete` response stopped by the content filter, is the provider's refusal. Thinking is
//! asked for with `reasoning: {effort, summary: "auto"}`. A stream is read to its
//! `response.completed` (or `.incomplete`) event, which carries the whole response.

use async_trait::async_trait;
use redtrace_core::{Completion, Reasoning, Role, StopReason, TraceSource, TraceState, Usage};
use serde_json::{json, Map, Value};
use std::time::Instant;

use crate::http::{sse_data, truncate_chars, Http, ERROR_BODY_CHARS};
use crate::{ApiKey, ChatRequest, ModelConfig, Provider, ProviderError};

/// A client for one model behind the Responses API.
pub struct ResponsesProvider {
    http: Http,
    url: String,
}

impl ResponsesProvider {
    /// Builds the client; the key comes from the environment variable the config names.
    pub fn new(config: ModelConfig) -> Result<Self, ProviderError> {
        Ok(Self::over(Http::checked(config)?))
    }

    /// Builds the client with an explicit key (or none).
    pub fn with_key(config: ModelConfig, api_key: Option<ApiKey>) -> Self {
        Self::over(Http::new(config, api_key))
    }

    fn over(http: Http) -> Self {
        Self {
            url: http.url("responses"),
            http,
        }
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let config = &self.http.config;
        let params = &config.params;
        let (system, turns) = request.system_apart();
        let input: Vec<Value> = turns
            .into_iter()
            .map(|m| {
                let role = if m.role == Role::Assistant {
                    "assistant"
                } else {
                    "user"
                };
                json!({ "role": role, "content": m.content })
            })
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), json!(config.model));
        body.insert("input".into(), Value::Array(input));
        if let Some(system) = system {
            body.insert("instructions".into(), json!(system));
        }
        if let Some(value) = params.temperature {
            body.insert("temperature".into(), json!(value));
        }
        if let Some(value) = params.top_p {
            body.insert("top_p".into(), json!(value));
        }
        if let Some(value) = params.max_tokens {
            body.insert("max_output_tokens".into(), json!(value));
        }
        let mut reasoning = json!({ "summary": "auto" });
        if let Some(effort) = &params.reasoning_effort {
            reasoning["effort"] = json!(effort);
        }
        body.insert("reasoning".into(), reasoning);
        if config.stream {
            body.insert("stream".into(), json!(true));
        }
        for (key, value) in &config.extra {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }

    fn field(&self, what: &str, text: &str) -> ProviderError {
        self.http.invalid(format!(
            "Responses API: {what}: {}",
            truncate_chars(text, ERROR_BODY_CHARS)
        ))
    }

    /// The completion a whole response object holds.
    fn completion(
        &self,
        response: &Value,
        raw: String,
        started: Instant,
    ) -> Result<Completion, ProviderError> {
        let Some(output) = response["output"].as_array() else {
            return Err(self.field("no `output` array", &response.to_string()));
        };
        let mut summary = Vec::new();
        let mut encrypted = false;
        let mut reasoned = false;
        let mut answer: Option<String> = None;
        let mut refused = false;
        for item in output {
            match item["type"].as_str() {
                Some("reasoning") => {
                    reasoned = true;
                    for part in item["summary"].as_array().into_iter().flatten() {
                        if let Some(text) = part["text"].as_str() {
                            summary.push(text.to_owned());
                        }
                    }
                    encrypted |= item["encrypted_content"]
                        .as_str()
                        .is_some_and(|c| !c.is_empty());
                }
                Some("message") => {
                    for part in item["content"].as_array().into_iter().flatten() {
                        match part["type"].as_str() {
                            Some("output_text") => answer
                                .get_or_insert_with(String::new)
                                .push_str(part["text"].as_str().unwrap_or("")),
                            Some("refusal") => {
                                refused = true;
                                answer
                                    .get_or_insert_with(String::new)
                                    .push_str(part["refusal"].as_str().unwrap_or(""));
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let incomplete = response["incomplete_details"]["reason"].as_str();
        let filtered = incomplete == Some("content_filter");
        let budget = incomplete == Some("max_output_tokens");
        let trace = self.http.redact(summary.join("\n\n"));
        let in_trace = budget && answer.is_none();
        let reasoning_tokens =
            response["usage"]["output_tokens_details"]["reasoning_tokens"].as_u64();
        let state = if !trace.trim().is_empty() {
            if in_trace {
                TraceState::Truncated
            } else {
                TraceState::Summary
            }
        } else if encrypted {
            TraceState::Encrypted
        } else if reasoned || reasoning_tokens.unwrap_or(0) > 0 {
            TraceState::Omitted
        } else {
            TraceState::Absent
        };
        Ok(Completion {
            reasoning: Reasoning {
                text: if state.has_text() {
                    trace
                } else {
                    String::new()
                },
                source: (state != TraceState::Absent).then_some(TraceSource::ResponsesReasoning),
                state,
            },
            answer: answer.map(|a| self.http.redact(a)),
            finish_reason: Some(if refused {
                StopReason::Refusal
            } else if filtered {
                StopReason::ContentFilter
            } else if budget {
                StopReason::Length
            } else {
                match response["status"].as_str() {
                    Some("completed") | None => StopReason::Stop,
                    Some(other) => StopReason::Other(other.to_owned()),
                }
            }),
            usage: Usage {
                prompt_tokens: response["usage"]["input_tokens"].as_u64(),
                completion_tokens: response["usage"]["output_tokens"].as_u64(),
                reasoning_tokens,
                cached_prompt_tokens: response["usage"]["input_tokens_details"]["cached_tokens"]
                    .as_u64(),
            },
            latency_ms: started.elapsed().as_millis() as u64,
            raw: self.http.redact(raw),
        })
    }
}

#[async_trait]
impl Provider for ResponsesProvider {
    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ProviderError> {
        crate::http::no_prefill(&self.http.config, request, "the Responses API")?;
        let started = Instant::now();
        let mut builder = self.http.client.post(&self.url).json(&self.body(request));
        if let Some(key) = &self.http.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        let response = self.http.send(builder, |_| None).await?;
        if self.http.config.stream {
            let mut last: Option<Value> = None;
            self.http
                .lines(response, |line| {
                    let Some(data) = sse_data(line).filter(|d| !d.is_empty()) else {
                        return Ok(());
                    };
                    let event: Value = serde_json::from_str(data)
                        .map_err(|e| self.field(&format!("bad stream event ({e})"), data))?;
                    match event["type"].as_str().unwrap_or("") {
                        "response.completed" | "response.incomplete" => {
                            last = Some(event["response"].clone());
                        }
                        "response.failed" | "error" => {
                            return Err(self.field("the response failed", data));
                        }
                        _ => {}
                    }
                    Ok(())
                })
                .await?;
            let Some(whole) = last else {
                return Err(self.http.cut("no response.completed event"));
            };
            let mut raw = whole.clone();
            raw["streamed"] = json!(true);
            self.completion(&whole, raw.to_string(), started)
        } else {
            let text = self.http.body(response).await?;
            let whole: Value = serde_json::from_str(&text)
                .map_err(|e| self.field(&format!("not JSON ({e})"), &text))?;
            if whole.get("error").is_some_and(|e| !e.is_null()) {
                return Err(self.field("an error in a 200 response", &text));
            }
            self.completion(&whole, text, started)
        }
    }

    fn fingerprint(&self, request: &ChatRequest) -> String {
        let mut body = self.body(request);
        if let Some(object) = body.as_object_mut() {
            object.remove("stream");
        }
        json!({ "api": "openai-responses", "endpoint": self.http.endpoint, "body": body })
            .to_string()
    }
}
