//! The OpenAI-compatible chat completions client (vLLM, SGLang, llama.cpp server, Ollama's
//! `/v1`, DeepSeek, OpenRouter, Together, OpenAI), non-streaming and streaming.

use async_trait::async_trait;
use redtrace_core::{Completion, Role, StopReason, Usage};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Instant;

use crate::http::{sse_data, truncate_chars, Http, ERROR_BODY_CHARS};
use crate::{
    split_reasoning, ApiKey, ChatRequest, ModelConfig, Provider, ProviderError, RawOutput,
    TextPrompt, TextReply, TextRequest, TokenLogprobs,
};

/// A client for one model behind an OpenAI-compatible endpoint.
pub struct OpenAiProvider {
    http: Http,
    url: String,
}

impl OpenAiProvider {
    /// Builds the client; reads the API key from the environment variable the config names.
    pub fn new(config: ModelConfig) -> Result<Self, ProviderError> {
        Ok(Self::over(Http::checked(config)?))
    }

    /// Builds the client with an explicit key (or none).
    pub fn with_key(config: ModelConfig, api_key: Option<ApiKey>) -> Self {
        Self::over(Http::new(config, api_key))
    }

    fn over(http: Http) -> Self {
        Self {
            url: http.url("chat/completions"),
            http,
        }
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.http.config
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let params = &self.http.config.params;
        let mut messages: Vec<Value> = request
            .messages
            .iter()
            .map(|message| {
                let role = match message.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                };
                let mut turn = json!({ "role": role, "content": message.content });
                // An earlier reply's trace goes back only to a model set to replay it.
                if let (true, Some(trace)) = (self.http.config.replay_traces, &message.reasoning) {
                    turn["reasoning_content"] = json!(trace);
                }
                turn
            })
            .collect();
        if let Some(prefill) = &self.http.config.think_prefill {
            messages.push(json!({ "role": "assistant", "content": prefill }));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(self.http.config.model));
        body.insert("messages".into(), Value::Array(messages));
        sampling(&mut body, params, request.seed);
        if let Some(value) = params.max_tokens {
            body.insert("max_tokens".into(), json!(value));
        }
        // The reasoning settings as OpenAI, DeepSeek and vLLM (`reasoning_effort`) and
        // OpenRouter (`reasoning.max_tokens`) take them.
        if let Some(effort) = &params.reasoning_effort {
            body.insert("reasoning_effort".into(), json!(effort));
        }
        if let Some(budget) = params.thinking_budget {
            body.insert("reasoning".into(), json!({ "max_tokens": budget }));
        }
        if self.http.config.stream {
            body.insert("stream".into(), json!(true));
            body.insert("stream_options".into(), json!({ "include_usage": true }));
        }
        for (key, value) in &self.http.config.extra {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }

    /// The assistant text the request ends with, which the model continues: the model's
    /// `think_prefill`, or a final assistant message.
    fn prefill<'r>(&'r self, request: &'r ChatRequest) -> Option<&'r str> {
        if let Some(prefill) = &self.http.config.think_prefill {
            return Some(prefill);
        }
        match request.messages.last() {
            Some(last) if last.role == Role::Assistant => Some(&last.content),
            _ => None,
        }
    }

    /// Whether the output starts inside a trace: the template opens one, or the request ends
    /// with an assistant prefill that opened `<think>` without closing it.
    fn opened_in_prompt(&self, request: &ChatRequest) -> bool {
        self.http.config.template_opens_think
            || self
                .prefill(request)
                .is_some_and(|prefill| prefill.contains("<think>") && !prefill.contains("</think>"))
    }
}

#[derive(Deserialize)]
struct ResponseJson {
    choices: Option<Vec<ChoiceJson>>,
    usage: Option<UsageJson>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChoiceJson {
    message: Option<MessageJson>,
    delta: Option<MessageJson>,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct MessageJson {
    content: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    /// OpenRouter's typed reasoning parts (`reasoning.text`, `.summary`, `.encrypted`).
    reasoning_details: Option<Vec<Value>>,
    /// OpenAI's refusal: the provider declined instead of answering.
    refusal: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
struct UsageJson {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    completion_tokens_details: Option<DetailsJson>,
    prompt_tokens_details: Option<PromptDetailsJson>,
}

#[derive(Deserialize, Clone, Copy)]
struct DetailsJson {
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize, Clone, Copy)]
struct PromptDetailsJson {
    cached_tokens: Option<u64>,
}

impl From<UsageJson> for Usage {
    fn from(usage: UsageJson) -> Self {
        Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            reasoning_tokens: usage
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens),
            cached_prompt_tokens: usage.prompt_tokens_details.and_then(|d| d.cached_tokens),
        }
    }
}

/// What a stream has delivered so far.
#[derive(Default)]
struct StreamState {
    content: String,
    reasoning_content: String,
    reasoning: String,
    finish_reason: Option<String>,
    usage: Option<UsageJson>,
    done: bool,
    saw_choice: bool,
    summary: String,
    encrypted: bool,
    refusal: String,
}

impl StreamState {
    /// Takes what one message (or delta) adds.
    fn absorb(&mut self, message: MessageJson) {
        self.content
            .push_str(message.content.as_deref().unwrap_or(""));
        self.reasoning_content
            .push_str(message.reasoning_content.as_deref().unwrap_or(""));
        self.reasoning
            .push_str(message.reasoning.as_deref().unwrap_or(""));
        self.refusal
            .push_str(message.refusal.as_deref().unwrap_or(""));
        for detail in message.reasoning_details.unwrap_or_default() {
            match detail["type"].as_str() {
                Some("reasoning.summary") => self
                    .summary
                    .push_str(detail["summary"].as_str().unwrap_or("")),
                Some("reasoning.encrypted") => self.encrypted = true,
                _ => {}
            }
        }
    }
}

impl OpenAiProvider {
    fn finish(
        &self,
        request: &ChatRequest,
        mut state: StreamState,
        raw: String,
        started: Instant,
    ) -> Completion {
        let raw = self.http.redact(raw);
        state.content = self.http.redact(state.content);
        state.reasoning_content = self.http.redact(state.reasoning_content);
        state.reasoning = self.http.redact(state.reasoning);
        state.summary = self.http.redact(state.summary);
        // Some servers (llama.cpp without streaming) echo an assistant prefill before its
        // continuation, others do not: the completion is the model's own text either way, so
        // the prefill (ours, not the model's) is never judged as its thinking.
        let content = match self.prefill(request) {
            Some(prefill) if !prefill.is_empty() => state
                .content
                .strip_prefix(prefill)
                .or_else(|| state.content.strip_prefix(prefill.trim_end()))
                .unwrap_or(&state.content),
            _ => &state.content,
        };
        let usage = state.usage.map(Usage::from).unwrap_or_default();
        let (reasoning, answer) = split_reasoning(RawOutput {
            content: Some(content),
            reasoning_content: Some(&state.reasoning_content),
            reasoning: Some(&state.reasoning),
            finish_reason: state.finish_reason.as_deref(),
            opened_in_prompt: self.opened_in_prompt(request),
            reasoning_tokens: usage.reasoning_tokens,
            reasoning_summary: Some(&state.summary),
            reasoning_encrypted: state.encrypted,
        });
        // OpenAI's `refusal`: the provider declined; its text is kept as the answer.
        let refused = !state.refusal.is_empty();
        let answer = if refused {
            Some(self.http.redact(state.refusal.clone()))
        } else {
            answer
        };
        Completion {
            reasoning,
            answer,
            finish_reason: if refused {
                Some(StopReason::Refusal)
            } else {
                state.finish_reason.as_deref().map(StopReason::parse)
            },
            usage,
            latency_ms: started.elapsed().as_millis() as u64,
            raw,
        }
    }

    fn parse_whole(
        &self,
        request: &ChatRequest,
        text: String,
        started: Instant,
    ) -> Result<Completion, ProviderError> {
        let parsed: ResponseJson = serde_json::from_str(&text).map_err(|error| {
            self.http.invalid(format!(
                "not JSON ({error}): {}",
                truncate_chars(&text, ERROR_BODY_CHARS)
            ))
        })?;
        let Some(choice) = parsed
            .choices
            .and_then(|choices| choices.into_iter().next())
        else {
            let detail = match parsed.error {
                Some(error) => format!(
                    "error in a 200 response: {}",
                    truncate_chars(&error.to_string(), ERROR_BODY_CHARS)
                ),
                None => format!(
                    "response has no choices: {}",
                    truncate_chars(&text, ERROR_BODY_CHARS)
                ),
            };
            return Err(self.http.invalid(detail));
        };
        let mut state = StreamState {
            finish_reason: choice.finish_reason,
            usage: parsed.usage,
            done: true,
            saw_choice: true,
            ..StreamState::default()
        };
        state.absorb(choice.message.unwrap_or_default());
        Ok(self.finish(request, state, text, started))
    }

    fn absorb_event(&self, state: &mut StreamState, data: &str) -> Result<(), ProviderError> {
        if data == "[DONE]" {
            state.done = true;
            return Ok(());
        }
        let chunk: ResponseJson = serde_json::from_str(data).map_err(|error| {
            self.http.invalid(format!(
                "bad stream chunk ({error}): {}",
                truncate_chars(data, ERROR_BODY_CHARS)
            ))
        })?;
        if let Some(error) = chunk.error {
            return Err(self.http.invalid(format!(
                "error in stream: {}",
                truncate_chars(&error.to_string(), ERROR_BODY_CHARS)
            )));
        }
        if let Some(usage) = chunk.usage {
            state.usage = Some(usage);
        }
        for choice in chunk.choices.unwrap_or_default() {
            state.saw_choice = true;
            if let Some(delta) = choice.delta.or(choice.message) {
                state.absorb(delta);
            }
            if choice.finish_reason.is_some() {
                state.finish_reason = choice.finish_reason;
            }
        }
        Ok(())
    }

    async fn read_stream(
        &self,
        request: &ChatRequest,
        response: reqwest::Response,
        started: Instant,
    ) -> Result<Completion, ProviderError> {
        let mut state = StreamState::default();
        self.http
            .lines(response, |line| match sse_data(line) {
                Some(data) => self.absorb_event(&mut state, data),
                None => Ok(()),
            })
            .await?;
        if !state.done && state.finish_reason.is_none() {
            return Err(self.http.cut("no finish_reason, no [DONE]"));
        }
        if !state.saw_choice {
            return Err(self.http.invalid("stream carried no choices"));
        }
        // Keep an audit copy in the shape of a non-streamed response rather than thousands of
        // SSE chunks.
        let raw = json!({
            "streamed": true,
            "choices": [{
                "message": {
                    "content": state.content,
                    "reasoning_content": (!state.reasoning_content.is_empty()).then_some(&state.reasoning_content),
                    "reasoning": (!state.reasoning.is_empty()).then_some(&state.reasoning),
                },
                "finish_reason": state.finish_reason,
            }],
            "usage": state.usage.map(|u| json!({
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "reasoning_tokens": u.completion_tokens_details.and_then(|d| d.reasoning_tokens),
            })),
        })
        .to_string();
        Ok(self.finish(request, state, raw, started))
    }
}

/// The sampling fields of a body, as the OpenAI API names them: temperature, top_p, the seed
/// (`seed` over the model's own), stop sequences.
fn sampling(body: &mut Map<String, Value>, params: &crate::SamplingParams, seed: Option<u64>) {
    if let Some(value) = params.temperature {
        body.insert("temperature".into(), json!(value));
    }
    if let Some(value) = params.top_p {
        body.insert("top_p".into(), json!(value));
    }
    if let Some(value) = seed.or(params.seed) {
        body.insert("seed".into(), json!(value));
    }
    if !params.stop.is_empty() {
        body.insert("stop".into(), json!(params.stop));
    }
}

/// A text completion's choice: `text` from `/completions`, `message` from `/chat/completions`.
#[derive(Deserialize)]
struct TextChoiceJson {
    text: Option<String>,
    message: Option<MessageJson>,
    logprobs: Option<Value>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct TextResponseJson {
    choices: Option<Vec<TextChoiceJson>>,
    usage: Option<UsageJson>,
    error: Option<Value>,
}

/// The chosen tokens of a `logprobs` object in either shape servers send: the chat shape
/// (`content: [{token, logprob, top_logprobs: [{token, logprob}]}]`, also llama.cpp's for
/// `/completions`) or the legacy completions shape (`tokens`, `token_logprobs`, `top_logprobs`
/// as one `{token: logprob}` map per position).
fn parse_logprobs(logprobs: &Value) -> Result<Vec<TokenLogprobs>, String> {
    let number = |value: &Value, what: &str| {
        value
            .as_f64()
            .ok_or_else(|| format!("{what} is not a number: {value}"))
    };
    if let Some(content) = logprobs.get("content").and_then(Value::as_array) {
        return content
            .iter()
            .map(|entry| {
                let top = entry["top_logprobs"]
                    .as_array()
                    .map(|top| {
                        top.iter()
                            .map(|t| {
                                Ok((
                                    t["token"].as_str().unwrap_or_default().to_owned(),
                                    number(&t["logprob"], "top_logprobs[].logprob")?,
                                ))
                            })
                            .collect::<Result<Vec<_>, String>>()
                    })
                    .transpose()?
                    .unwrap_or_default();
                Ok(TokenLogprobs {
                    token: entry["token"].as_str().unwrap_or_default().to_owned(),
                    logprob: number(&entry["logprob"], "logprob")?,
                    top,
                })
            })
            .collect();
    }
    let tokens = logprobs["tokens"].as_array().cloned().unwrap_or_default();
    let chosen = logprobs["token_logprobs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let tops = logprobs["top_logprobs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let mut top: Vec<(String, f64)> = match tops.get(i).and_then(Value::as_object) {
                Some(map) => map
                    .iter()
                    .map(|(t, lp)| Ok((t.clone(), number(lp, "top_logprobs value")?)))
                    .collect::<Result<_, String>>()?,
                None => Vec::new(),
            };
            top.sort_by(|a, b| b.1.total_cmp(&a.1));
            Ok(TokenLogprobs {
                token: token.as_str().unwrap_or_default().to_owned(),
                logprob: chosen
                    .get(i)
                    .map(|lp| number(lp, "token_logprobs[]"))
                    .transpose()?
                    .unwrap_or(f64::NAN),
                top,
            })
        })
        .collect()
}

impl OpenAiProvider {
    /// The URL and body of a text request: `/completions` with `prompt` for a raw prompt,
    /// `/chat/completions` with the conversation for a chat one; never streamed.
    fn text_body(&self, request: &TextRequest) -> (String, Value) {
        let params = &self.http.config.params;
        let (url, mut body) = match &request.prompt {
            TextPrompt::Raw(prompt) => {
                let mut body = Map::new();
                body.insert("model".into(), json!(self.http.config.model));
                body.insert("prompt".into(), json!(prompt));
                sampling(&mut body, params, None);
                if let Some(k) = request.top_logprobs {
                    body.insert("logprobs".into(), json!(k));
                }
                for (key, value) in &self.http.config.extra {
                    body.insert(key.clone(), value.clone());
                }
                (self.http.url("completions"), body)
            }
            TextPrompt::Chat(messages) => {
                let chat = ChatRequest {
                    messages: messages.clone(),
                    seed: None,
                };
                let Value::Object(mut body) = self.body(&chat) else {
                    unreachable!("the chat body is an object")
                };
                body.remove("stream");
                body.remove("stream_options");
                if let Some(k) = request.top_logprobs {
                    body.insert("logprobs".into(), json!(true));
                    body.insert("top_logprobs".into(), json!(k));
                }
                (self.url.clone(), body)
            }
        };
        if let Some(max) = request.max_tokens.or(params.max_tokens) {
            body.insert("max_tokens".into(), json!(max));
        }
        (url, Value::Object(body))
    }

    fn parse_text(&self, text: &str) -> Result<TextReply, ProviderError> {
        let parsed: TextResponseJson = serde_json::from_str(text).map_err(|error| {
            self.http.invalid(format!(
                "not JSON ({error}): {}",
                truncate_chars(text, ERROR_BODY_CHARS)
            ))
        })?;
        let Some(choice) = parsed.choices.and_then(|c| c.into_iter().next()) else {
            let detail = match parsed.error {
                Some(error) => format!(
                    "error in a 200 response: {}",
                    truncate_chars(&error.to_string(), ERROR_BODY_CHARS)
                ),
                None => format!(
                    "response has no choices: {}",
                    truncate_chars(text, ERROR_BODY_CHARS)
                ),
            };
            return Err(self.http.invalid(detail));
        };
        let generated = match (choice.text, choice.message) {
            (Some(text), _) => text,
            (None, Some(message)) => message.content.unwrap_or_default(),
            (None, None) => return Err(self.http.invalid("the choice has no text and no message")),
        };
        let tokens = match choice.logprobs.filter(|l| !l.is_null()) {
            Some(logprobs) => parse_logprobs(&logprobs)
                .map_err(|detail| self.http.invalid(format!("bad logprobs: {detail}")))?,
            None => Vec::new(),
        };
        Ok(TextReply {
            text: self.http.redact(generated),
            tokens,
            finish_reason: choice.finish_reason.as_deref().map(StopReason::parse),
            usage: parsed.usage.map(Usage::from).unwrap_or_default(),
        })
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    async fn complete_text(&self, request: &TextRequest) -> Result<TextReply, ProviderError> {
        let (url, body) = self.text_body(request);
        let mut builder = self.http.client.post(&url).json(&body);
        if let Some(key) = &self.http.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        let response = self.http.send(builder, |_| None).await?;
        let text = self.http.body(response).await?;
        let reply = self.parse_text(&text)?;
        if request.top_logprobs.is_some() && reply.tokens.is_empty() && !reply.text.is_empty() {
            return Err(self.http.invalid(
                "log-probabilities were asked for and none came back (does the server support \
                 `logprobs`?)",
            ));
        }
        Ok(reply)
    }

    fn batch_api(&self) -> Option<crate::BatchApi> {
        Some(crate::BatchApi::OpenAi)
    }

    fn batch_body(&self, request: &ChatRequest) -> Value {
        let mut body = self.body(request);
        if let Some(object) = body.as_object_mut() {
            object.remove("stream");
            object.remove("stream_options");
        }
        body
    }

    fn batch_reply(&self, request: &ChatRequest, body: &str) -> Result<Completion, ProviderError> {
        self.parse_whole(request, body.to_owned(), Instant::now())
    }

    fn text_fingerprint(&self, request: &TextRequest) -> String {
        // The URL is left out (it may hold credentials); which API it is, is in the body.
        let (_, body) = self.text_body(request);
        json!({ "endpoint": self.http.endpoint, "text": body }).to_string()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ProviderError> {
        let started = Instant::now();
        let mut builder = self.http.client.post(&self.url).json(&self.body(request));
        if let Some(key) = &self.http.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        let response = self.http.send(builder, |_| None).await?;
        if self.http.config.stream {
            self.read_stream(request, response, started).await
        } else {
            let text = self.http.body(response).await?;
            self.parse_whole(request, text, started)
        }
    }

    fn fingerprint(&self, request: &ChatRequest) -> String {
        // The body without the transport choice: a streamed and a non-streamed request for the
        // same thing are the same request.
        let mut body = self.body(request);
        if let Some(object) = body.as_object_mut() {
            object.remove("stream");
            object.remove("stream_options");
        }
        json!({
            "endpoint": self.http.endpoint,
            "body": body,
            "template_opens_think": self.http.config.template_opens_think,
        })
        .to_string()
    }
}
