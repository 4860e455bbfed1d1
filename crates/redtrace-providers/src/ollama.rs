//! Ollama's native chat API (`ollama:MODEL[@BASE_URL]`, `BASE_URL/api/chat`), plain and
//! streamed (NDJSON): `message.thinking` is the trace (the model's own text), `message.content`
//! the answer, `done_reason: length` a stop on the budget. Thinking is asked for with `think`:
//! `true`, or the `reasoning_effort` level (`low`, `medium`, `high`) for models that take one.

use async_trait::async_trait;
use redtrace_core::{Completion, Reasoning, Role, StopReason, TraceSource, TraceState, Usage};
use serde_json::{json, Map, Value};
use std::time::Instant;

use crate::http::{truncate_chars, Http, ERROR_BODY_CHARS};
use crate::{ApiKey, ChatRequest, ModelConfig, Provider, ProviderError};

/// A client for one model behind Ollama's native API.
pub struct OllamaProvider {
    http: Http,
    url: String,
}

#[derive(Default)]
struct Reply {
    thinking: String,
    content: String,
    done_reason: Option<String>,
    prompt_tokens: Option<u64>,
    output_tokens: Option<u64>,
    done: bool,
}

impl OllamaProvider {
    /// Builds the client (Ollama takes no key unless a proxy in front of it does).
    pub fn new(config: ModelConfig) -> Result<Self, ProviderError> {
        Ok(Self::over(Http::checked(config)?))
    }

    /// Builds the client with an explicit key (or none), sent as a bearer token.
    pub fn with_key(config: ModelConfig, api_key: Option<ApiKey>) -> Self {
        Self::over(Http::new(config, api_key))
    }

    fn over(http: Http) -> Self {
        Self {
            url: http.url("api/chat"),
            http,
        }
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let config = &self.http.config;
        let params = &config.params;
        let mut messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                let mut turn = json!({ "role": role, "content": m.content });
                if let (true, Some(trace)) = (config.replay_traces, &m.reasoning) {
                    turn["thinking"] = json!(trace);
                }
                turn
            })
            .collect();
        if let Some(prefill) = &config.think_prefill {
            messages.push(json!({ "role": "assistant", "content": prefill }));
        }
        let mut options = Map::new();
        if let Some(value) = params.temperature {
            options.insert("temperature".into(), json!(value));
        }
        if let Some(value) = params.top_p {
            options.insert("top_p".into(), json!(value));
        }
        if let Some(value) = params.max_tokens {
            options.insert("num_predict".into(), json!(value));
        }
        if let Some(value) = request.seed.or(params.seed) {
            options.insert("seed".into(), json!(value));
        }
        if !params.stop.is_empty() {
            options.insert("stop".into(), json!(params.stop));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(config.model));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("stream".into(), json!(config.stream));
        body.insert(
            "think".into(),
            match &params.reasoning_effort {
                Some(level) => json!(level),
                None => json!(true),
            },
        );
        if !options.is_empty() {
            body.insert("options".into(), Value::Object(options));
        }
        for (key, value) in &config.extra {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }

    fn absorb(&self, reply: &mut Reply, text: &str) -> Result<(), ProviderError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            self.http.invalid(format!(
                "Ollama chat response: not JSON ({e}): {}",
                truncate_chars(text, ERROR_BODY_CHARS)
            ))
        })?;
        if let Some(error) = value["error"].as_str() {
            return Err(self.http.invalid(format!("Ollama error: {error}")));
        }
        let Some(message) = value.get("message") else {
            return Err(self.http.invalid(format!(
                "Ollama chat response: no `message`: {}",
                truncate_chars(text, ERROR_BODY_CHARS)
            )));
        };
        reply
            .thinking
            .push_str(message["thinking"].as_str().unwrap_or(""));
        reply
            .content
            .push_str(message["content"].as_str().unwrap_or(""));
        if value["done"].as_bool() == Some(true) {
            reply.done = true;
            reply.done_reason = value["done_reason"].as_str().map(str::to_owned);
            reply.prompt_tokens = value["prompt_eval_count"].as_u64();
            reply.output_tokens = value["eval_count"].as_u64();
        }
        Ok(())
    }

    fn finish(&self, reply: Reply, raw: String, started: Instant) -> Completion {
        let truncated = reply.done_reason.as_deref() == Some("length");
        let thinking = self.http.redact(reply.thinking);
        let content = self.http.redact(reply.content);
        let in_trace = truncated && content.is_empty() && !thinking.is_empty();
        let reasoning = if thinking.trim().is_empty() {
            Reasoning::absent()
        } else {
            Reasoning {
                text: thinking,
                source: Some(TraceSource::OllamaThinking),
                state: if in_trace {
                    TraceState::Truncated
                } else {
                    TraceState::Complete
                },
            }
        };
        Completion {
            reasoning,
            answer: (!in_trace).then_some(content),
            finish_reason: reply.done_reason.as_deref().map(StopReason::parse),
            usage: Usage {
                prompt_tokens: reply.prompt_tokens,
                completion_tokens: reply.output_tokens,
                reasoning_tokens: None,
                cached_prompt_tokens: None,
            },
            latency_ms: started.elapsed().as_millis() as u64,
            raw: self.http.redact(raw),
        }
    }
}

#[async_trait]
impl Provider for OllamaProvider {
    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ProviderError> {
        let started = Instant::now();
        let mut builder = self.http.client.post(&self.url).json(&self.body(request));
        if let Some(key) = &self.http.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        let response = self.http.send(builder, |_| None).await?;
        let mut reply = Reply::default();
        if self.http.config.stream {
            self.http
                .lines(response, |line| {
                    if line.trim().is_empty() {
                        Ok(())
                    } else {
                        self.absorb(&mut reply, line)
                    }
                })
                .await?;
            if !reply.done {
                return Err(self.http.cut("no line with done: true"));
            }
            let raw = json!({
                "streamed": true,
                "message": { "role": "assistant", "thinking": reply.thinking, "content": reply.content },
                "done": true,
                "done_reason": reply.done_reason,
                "prompt_eval_count": reply.prompt_tokens,
                "eval_count": reply.output_tokens,
            })
            .to_string();
            Ok(self.finish(reply, raw, started))
        } else {
            let text = self.http.body(response).await?;
            self.absorb(&mut reply, &text)?;
            Ok(self.finish(reply, text, started))
        }
    }

    fn fingerprint(&self, request: &ChatRequest) -> String {
        let mut body = self.body(request);
        if let Some(object) = body.as_object_mut() {
            object.remove("stream");
        }
        json!({ "api": "ollama", "endpoint": self.http.endpoint, "body": body }).to_string()
    }
}
