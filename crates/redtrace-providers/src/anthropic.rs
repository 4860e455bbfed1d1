//! Anthropic's Messages API (`anthropic:MODEL[@BASE_URL]`), plain and streamed: `thinking`
//! blocks are the trace (a summary on Claude 4 and later, the model's own text on Claude 3.7;
//! an empty one is a trace the API omitted), `redacted_thinking` blocks a redacted trace, `text`
//! blocks the answer; `stop_reason: refusal` is the provider's refusal. Thinking is asked for
//! with `thinking_budget` (`budget_tokens`) or `reasoning_effort` (adaptive thinking with
//! that effort); `extra` fields go in last and win.

use async_trait::async_trait;
use redtrace_core::{Completion, Reasoning, Role, StopReason, TraceSource, TraceState, Usage};
use serde_json::{json, Map, Value};
use std::time::Instant;

use crate::http::{sse_data, truncate_chars, Http, ERROR_BODY_CHARS};
use crate::{ApiKey, ChatRequest, ModelConfig, Provider, ProviderError};

/// The API version sent in `anthropic-version`.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The `max_tokens` sent when the model sets none (the API requires one): room for an answer
/// after the thinking budget.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A client for one model behind Anthropic's Messages API.
pub struct AnthropicProvider {
    http: Http,
    url: String,
}

/// One content block as it arrives.
#[derive(Default, Clone)]
struct Block {
    kind: String,
    text: String,
    signature: String,
    data: String,
}

/// What a response (whole or streamed) has delivered.
#[derive(Default)]
struct Message {
    blocks: Vec<Block>,
    stop_reason: Option<String>,
    stop_details: Option<Value>,
    input_tokens: Option<u64>,
    cache_read_tokens: Option<u64>,
    output_tokens: Option<u64>,
    done: bool,
}

/// The prompt tokens of Anthropic's usage: `input_tokens` counts only what the cache did not
/// serve or store, so the prompt is the three together; the cache reads apart.
fn prompt_usage(usage: &Value) -> (Option<u64>, Option<u64>) {
    let input = usage["input_tokens"].as_u64();
    let read = usage["cache_read_input_tokens"].as_u64();
    let written = usage["cache_creation_input_tokens"].as_u64();
    let prompt = input.map(|i| i + read.unwrap_or(0) + written.unwrap_or(0));
    (prompt, read)
}

impl AnthropicProvider {
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
            url: http.url("messages"),
            http,
        }
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let config = &self.http.config;
        let params = &config.params;
        let (system, turns) = request.system_apart();
        // Earlier turns go back as text: a dialogue's earlier replies without their thinking,
        // which the API accepts for every turn but the one being continued.
        let mut messages: Vec<Value> = turns
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
        if let Some(prefill) = &config.think_prefill {
            messages.push(json!({ "role": "assistant", "content": prefill }));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(config.model));
        body.insert("messages".into(), Value::Array(messages));
        if let Some(system) = system {
            body.insert("system".into(), json!(system));
        }
        let budget = params.thinking_budget;
        let max_tokens = params
            .max_tokens
            .unwrap_or(DEFAULT_MAX_TOKENS + budget.unwrap_or(0));
        body.insert("max_tokens".into(), json!(max_tokens));
        if let Some(value) = params.temperature {
            body.insert("temperature".into(), json!(value));
        }
        if let Some(value) = params.top_p {
            body.insert("top_p".into(), json!(value));
        }
        if !params.stop.is_empty() {
            body.insert("stop_sequences".into(), json!(params.stop));
        }
        match (budget, &params.reasoning_effort) {
            (Some(budget), _) => {
                body.insert(
                    "thinking".into(),
                    json!({ "type": "enabled", "budget_tokens": budget }),
                );
            }
            (None, Some(effort)) => {
                body.insert("thinking".into(), json!({ "type": "adaptive" }));
                body.insert("output_config".into(), json!({ "effort": effort }));
            }
            (None, None) => {}
        }
        if config.stream {
            body.insert("stream".into(), json!(true));
        }
        for (key, value) in &config.extra {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }

    /// A field of the API's JSON that is missing or of the wrong type.
    fn field(&self, what: &str, text: &str) -> ProviderError {
        self.http.invalid(format!(
            "Anthropic Messages response: {what}: {}",
            truncate_chars(text, ERROR_BODY_CHARS)
        ))
    }

    fn block_of(value: &Value) -> Block {
        let text = |key: &str| value[key].as_str().unwrap_or("").to_owned();
        Block {
            kind: text("type"),
            text: if value["type"] == "thinking" {
                text("thinking")
            } else {
                text("text")
            },
            signature: text("signature"),
            data: text("data"),
        }
    }

    fn parse_whole(&self, text: &str) -> Result<Message, ProviderError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| self.field(&format!("not JSON ({e})"), text))?;
        if value["type"] == "error" {
            return Err(self.field("an error in a 200 response", text));
        }
        let Some(content) = value["content"].as_array() else {
            return Err(self.field("no `content` array", text));
        };
        Ok(Message {
            blocks: content.iter().map(Self::block_of).collect(),
            stop_reason: value["stop_reason"].as_str().map(str::to_owned),
            stop_details: value.get("stop_details").cloned().filter(|v| !v.is_null()),
            input_tokens: prompt_usage(&value["usage"]).0,
            cache_read_tokens: prompt_usage(&value["usage"]).1,
            output_tokens: value["usage"]["output_tokens"].as_u64(),
            done: true,
        })
    }

    /// Takes one streamed event's data.
    fn absorb(&self, message: &mut Message, data: &str) -> Result<(), ProviderError> {
        let event: Value = serde_json::from_str(data)
            .map_err(|e| self.field(&format!("bad stream event ({e})"), data))?;
        let index = event["index"].as_u64().unwrap_or(0) as usize;
        match event["type"].as_str().unwrap_or("") {
            "message_start" => {
                (message.input_tokens, message.cache_read_tokens) =
                    prompt_usage(&event["message"]["usage"]);
            }
            "content_block_start" => {
                if message.blocks.len() <= index {
                    message.blocks.resize(index + 1, Block::default());
                }
                message.blocks[index] = Self::block_of(&event["content_block"]);
            }
            "content_block_delta" => {
                let Some(block) = message.blocks.get_mut(index) else {
                    return Err(self.field("a delta for a block never started", data));
                };
                let delta = &event["delta"];
                let piece = |key: &str| delta[key].as_str().unwrap_or("");
                match delta["type"].as_str().unwrap_or("") {
                    "thinking_delta" => block.text.push_str(piece("thinking")),
                    "text_delta" => block.text.push_str(piece("text")),
                    "signature_delta" => block.signature.push_str(piece("signature")),
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = event["delta"]["stop_reason"].as_str() {
                    message.stop_reason = Some(reason.to_owned());
                }
                if let Some(details) = event["delta"].get("stop_details").filter(|v| !v.is_null()) {
                    message.stop_details = Some(details.clone());
                }
                if let Some(tokens) = event["usage"]["output_tokens"].as_u64() {
                    message.output_tokens = Some(tokens);
                }
            }
            "message_stop" => message.done = true,
            "error" => {
                let kind = event["error"]["type"].as_str().unwrap_or("error");
                let detail = truncate_chars(&event["error"].to_string(), ERROR_BODY_CHARS);
                // Overloaded mid-stream is what a 529 is: worth trying again.
                return Err(if kind == "overloaded_error" {
                    ProviderError::Http {
                        status: 529,
                        endpoint: self.http.endpoint.clone(),
                        body: detail,
                        retry_after: None,
                    }
                } else {
                    self.field("an error event in the stream", &detail)
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&self, message: Message, raw: String, started: Instant) -> Completion {
        let redact = |text: &str| self.http.redact(text.to_owned());
        let thinking: Vec<&Block> = message
            .blocks
            .iter()
            .filter(|b| b.kind == "thinking")
            .collect();
        let redacted = message.blocks.iter().any(|b| b.kind == "redacted_thinking");
        let trace = thinking
            .iter()
            .map(|b| b.text.as_str())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n");
        let texts: Vec<&Block> = message.blocks.iter().filter(|b| b.kind == "text").collect();
        let stop = message.stop_reason.as_deref();
        let refused = stop == Some("refusal");
        let answer = if texts.is_empty() && (refused || stop == Some("max_tokens")) {
            None
        } else {
            Some(redact(
                &texts.iter().map(|b| b.text.as_str()).collect::<String>(),
            ))
        };
        // Claude 3.7 returns its full thinking; later models summarise it (or omit it).
        let own_words = self.http.config.model.starts_with("claude-3-7");
        let state = if !trace.is_empty() {
            if answer.is_none() && stop == Some("max_tokens") {
                TraceState::Truncated
            } else if own_words {
                TraceState::Complete
            } else {
                TraceState::Summary
            }
        } else if redacted {
            TraceState::Redacted
        } else if !thinking.is_empty() {
            TraceState::Omitted
        } else {
            TraceState::Absent
        };
        let reasoning = Reasoning {
            text: if trace.is_empty() {
                String::new()
            } else {
                redact(&trace)
            },
            source: (state != TraceState::Absent).then_some(TraceSource::AnthropicThinking),
            state,
        };
        Completion {
            reasoning,
            answer,
            finish_reason: stop.map(|reason| match reason {
                "end_turn" | "stop_sequence" => StopReason::Stop,
                other => StopReason::parse(other),
            }),
            usage: Usage {
                prompt_tokens: message.input_tokens,
                completion_tokens: message.output_tokens,
                reasoning_tokens: None,
                cached_prompt_tokens: message.cache_read_tokens,
            },
            latency_ms: started.elapsed().as_millis() as u64,
            raw: self.http.redact(raw),
        }
    }

    /// The streamed message in the shape of a whole one, signatures and redacted data kept
    /// (a later turn can send them back).
    fn raw_of(message: &Message) -> String {
        let blocks: Vec<Value> = message
            .blocks
            .iter()
            .map(|b| match b.kind.as_str() {
                "thinking" => {
                    json!({ "type": "thinking", "thinking": b.text, "signature": b.signature })
                }
                "redacted_thinking" => json!({ "type": "redacted_thinking", "data": b.data }),
                kind => json!({ "type": kind, "text": b.text }),
            })
            .collect();
        json!({
            "streamed": true,
            "type": "message",
            "content": blocks,
            "stop_reason": message.stop_reason,
            "stop_details": message.stop_details,
            "usage": { "input_tokens": message.input_tokens, "output_tokens": message.output_tokens },
        })
        .to_string()
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ProviderError> {
        let params = &self.http.config.params;
        if params.thinking_budget.is_some() || params.reasoning_effort.is_some() {
            // Anthropic continues an assistant turn, but not with thinking on.
            crate::http::no_prefill(
                &self.http.config,
                request,
                "Anthropic's API with thinking on",
            )?;
        }
        let started = Instant::now();
        let mut builder = self
            .http
            .client
            .post(&self.url)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&self.body(request));
        if let Some(key) = &self.http.api_key {
            builder = builder.header("x-api-key", key.expose());
        }
        let response = self.http.send(builder, |_| None).await?;
        if self.http.config.stream {
            let mut message = Message::default();
            self.http
                .lines(response, |line| match sse_data(line) {
                    Some(data) if !data.is_empty() => self.absorb(&mut message, data),
                    _ => Ok(()),
                })
                .await?;
            if !message.done {
                return Err(self.http.cut("no message_stop event"));
            }
            let raw = Self::raw_of(&message);
            Ok(self.finish(message, raw, started))
        } else {
            let text = self.http.body(response).await?;
            let message = self.parse_whole(&text)?;
            Ok(self.finish(message, text, started))
        }
    }

    fn batch_api(&self) -> Option<crate::BatchApi> {
        Some(crate::BatchApi::Anthropic)
    }

    fn batch_body(&self, request: &ChatRequest) -> Value {
        let mut body = self.body(request);
        if let Some(object) = body.as_object_mut() {
            object.remove("stream");
        }
        body
    }

    fn batch_reply(&self, _request: &ChatRequest, body: &str) -> Result<Completion, ProviderError> {
        let message = self.parse_whole(body)?;
        Ok(self.finish(message, body.to_owned(), Instant::now()))
    }

    fn fingerprint(&self, request: &ChatRequest) -> String {
        let mut body = self.body(request);
        if let Some(object) = body.as_object_mut() {
            object.remove("stream");
        }
        json!({ "api": "anthropic", "endpoint": self.http.endpoint, "body": body }).to_string()
    }
}
