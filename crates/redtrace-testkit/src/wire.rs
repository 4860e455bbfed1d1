//! The native APIs the fake server speaks besides OpenAI's chat completions, each in its real
//! wire format, told apart by the request's path: Anthropic Messages (`…/messages`, SSE with
//! `event:` lines), the OpenAI Responses API (`…/responses`, SSE events ending in
//! `response.completed`), Gemini (`…/models/M:generateContent`, `:streamGenerateContent?alt=sse`)
//! and Ollama's native chat (`…/api/chat`, NDJSON when streamed). A [`FakeMessage`]'s trace
//! (`reasoning_content` or `reasoning`) becomes each API's thinking, its `content` the answer,
//! `redacted` a withheld trace, `refusal` the provider's own refusal, `finish_reason: length`
//! the API's budget stop.

use serde_json::{json, Value};

use crate::FakeMessage;

/// Which API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI-compatible chat completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI Responses.
    Responses,
    /// Gemini generateContent.
    Gemini,
    /// Ollama's native chat.
    Ollama,
    /// OpenAI-compatible text completions (`/completions`: a raw prompt).
    Completions,
}

impl Wire {
    /// The API a request path speaks, if any.
    pub fn of_path(path: &str) -> Option<Self> {
        if path.ends_with("/chat/completions") {
            Some(Wire::OpenAi)
        } else if path.ends_with("/messages") {
            Some(Wire::Anthropic)
        } else if path.ends_with("/responses") {
            Some(Wire::Responses)
        } else if path.contains(":generateContent") || path.contains(":streamGenerateContent") {
            Some(Wire::Gemini)
        } else if path.ends_with("/api/chat") {
            Some(Wire::Ollama)
        } else if path.ends_with("/completions") {
            Some(Wire::Completions)
        } else {
            None
        }
    }

    /// The last user turn's text in a request body of this API.
    pub fn prompt(self, body: &Value) -> String {
        let text_of = |content: &Value| -> String {
            match content {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(""),
                _ => String::new(),
            }
        };
        let last_user = |turns: &Value, content: &str| {
            turns
                .as_array()
                .and_then(|turns| turns.iter().rev().find(|m| m["role"] == "user"))
                .map(|m| text_of(&m[content]))
                .unwrap_or_default()
        };
        match self {
            Wire::OpenAi | Wire::Anthropic | Wire::Ollama => {
                last_user(&body["messages"], "content")
            }
            Wire::Responses => match &body["input"] {
                Value::String(s) => s.clone(),
                turns => last_user(turns, "content"),
            },
            Wire::Gemini => last_user(&body["contents"], "parts"),
            Wire::Completions => body["prompt"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// Whether a request asks for a stream.
    pub fn streams(self, path_and_query: &str, body: &Value) -> bool {
        match self {
            Wire::Gemini => path_and_query.contains(":streamGenerateContent"),
            Wire::Ollama => body["stream"].as_bool().unwrap_or(true),
            _ => body["stream"].as_bool().unwrap_or(false),
        }
    }
}

fn trace(message: &FakeMessage) -> Option<&str> {
    message
        .reasoning_content
        .as_deref()
        .or(message.reasoning.as_deref())
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn truncated(message: &FakeMessage) -> bool {
    message.finish_reason.as_deref() == Some("length")
}

/// (prompt, output, reasoning) tokens.
fn usage(message: &FakeMessage) -> (u64, u64, u64) {
    message.usage.map_or_else(
        || {
            let reasoning = words(trace(message).unwrap_or(""));
            (
                10,
                reasoning + words(message.content.as_deref().unwrap_or("")),
                reasoning,
            )
        },
        |(p, c, r)| (p, c, r.unwrap_or(0)),
    )
}

/// Splits text into pieces of a few characters, as token streams do.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(7)
        .map(|piece| piece.iter().collect())
        .collect()
}

/// A whole response of `wire`.
pub fn whole(wire: Wire, message: &FakeMessage, model: &str) -> Value {
    let (input, output, reasoning) = usage(message);
    let answer = message.content.as_deref();
    match wire {
        Wire::OpenAi => unreachable!("the OpenAI wire is rendered by the server itself"),
        Wire::Completions => {
            // The legacy completions shape of `logprobs`, as OpenAI and vLLM send it.
            let logprobs = message.top_logprobs.as_ref().map(|positions| {
                json!({
                    "tokens": positions.iter().map(|top| top[0].0.clone()).collect::<Vec<_>>(),
                    "token_logprobs": positions.iter().map(|top| top[0].1).collect::<Vec<_>>(),
                    "top_logprobs": positions.iter().map(|top| {
                        top.iter().map(|(t, lp)| (t.clone(), json!(lp))).collect::<serde_json::Map<_, _>>()
                    }).collect::<Vec<_>>(),
                })
            });
            json!({
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": 0,
                "model": model,
                "choices": [{
                    "index": 0,
                    "text": answer.unwrap_or_default(),
                    "logprobs": logprobs,
                    "finish_reason": message.finish_reason.as_deref().unwrap_or("stop"),
                }],
                "usage": { "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output },
            })
        }
        Wire::Anthropic => {
            let mut content = Vec::new();
            if message.redacted {
                content
                    .push(json!({ "type": "redacted_thinking", "data": "EncryptedOpaqueData==" }));
            }
            if let Some(trace) = trace(message) {
                content
                    .push(json!({ "type": "thinking", "thinking": trace, "signature": "sig-abc" }));
            }
            if let Some(answer) = answer.filter(|_| !message.refusal && !truncated(message)) {
                content.push(json!({ "type": "text", "text": answer }));
            }
            json!({
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": if message.refusal { "refusal" } else if truncated(message) { "max_tokens" } else { "end_turn" },
                "stop_sequence": null,
                "usage": { "input_tokens": input, "output_tokens": output },
            })
        }
        Wire::Responses => {
            let mut items = Vec::new();
            if message.redacted {
                items.push(json!({ "type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAencrypted" }));
            } else if let Some(trace) = trace(message) {
                items.push(json!({ "type": "reasoning", "id": "rs_1", "summary": [{ "type": "summary_text", "text": trace }] }));
            }
            if message.refusal {
                items.push(json!({ "type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                    "content": [{ "type": "refusal", "refusal": "I'm sorry, I cannot assist with that request." }] }));
            } else if let Some(answer) = answer.filter(|_| !truncated(message)) {
                items.push(json!({ "type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                    "content": [{ "type": "output_text", "text": answer, "annotations": [] }] }));
            }
            let mut response = json!({
                "id": "resp_fake",
                "object": "response",
                "status": if truncated(message) { "incomplete" } else { "completed" },
                "model": model,
                "output": items,
                "usage": {
                    "input_tokens": input,
                    "output_tokens": output,
                    "output_tokens_details": { "reasoning_tokens": reasoning },
                    "total_tokens": input + output,
                },
            });
            if truncated(message) {
                response["incomplete_details"] = json!({ "reason": "max_output_tokens" });
            }
            response
        }
        Wire::Gemini => {
            let mut candidate = json!({ "index": 0 });
            if message.refusal {
                candidate["finishReason"] = json!("SAFETY");
            } else {
                let mut parts = Vec::new();
                if let Some(trace) = trace(message) {
                    parts.push(json!({ "text": trace, "thought": true }));
                }
                if message.redacted {
                    parts.push(json!({ "thoughtSignature": "c2lnbmF0dXJl" }));
                }
                if let Some(answer) = answer.filter(|_| !truncated(message)) {
                    parts.push(json!({ "text": answer }));
                }
                candidate["content"] = json!({ "role": "model", "parts": parts });
                candidate["finishReason"] = json!(if truncated(message) {
                    "MAX_TOKENS"
                } else {
                    "STOP"
                });
            }
            json!({
                "candidates": [candidate],
                "usageMetadata": {
                    "promptTokenCount": input,
                    "candidatesTokenCount": output - reasoning,
                    "thoughtsTokenCount": reasoning,
                    "totalTokenCount": input + output,
                },
                "modelVersion": model,
            })
        }
        Wire::Ollama => {
            let mut reply = json!({ "role": "assistant", "content": if truncated(message) { "" } else { answer.unwrap_or("") } });
            if let Some(trace) = trace(message) {
                reply["thinking"] = json!(trace);
            }
            json!({
                "model": model,
                "created_at": "2026-12-01T00:00:00Z",
                "message": reply,
                "done": true,
                "done_reason": if truncated(message) { "length" } else { "stop" },
                "prompt_eval_count": input,
                "eval_count": output,
            })
        }
    }
}

/// The lines of a streamed response of `wire`, each written as the API frames it.
pub fn stream(wire: Wire, message: &FakeMessage, model: &str) -> Vec<String> {
    let (input, output, reasoning) = usage(message);
    let sse = |event: &str, data: Value| format!("event: {event}\ndata: {data}\n\n");
    match wire {
        Wire::OpenAi => unreachable!("the OpenAI wire is rendered by the server itself"),
        Wire::Completions => vec![
            format!("data: {}\n\n", whole(wire, message, model)),
            "data: [DONE]\n\n".into(),
        ],
        Wire::Anthropic => {
            let mut out = vec![sse(
                "message_start",
                json!({ "type": "message_start", "message": { "id": "msg_fake", "type": "message", "role": "assistant",
                    "model": model, "content": [], "stop_reason": null, "usage": { "input_tokens": input, "output_tokens": 1 } } }),
            )];
            let mut index = 0;
            if message.redacted {
                out.push(sse("content_block_start", json!({ "type": "content_block_start", "index": index,
                    "content_block": { "type": "redacted_thinking", "data": "EncryptedOpaqueData==" } })));
                out.push(sse(
                    "content_block_stop",
                    json!({ "type": "content_block_stop", "index": index }),
                ));
                index += 1;
            }
            if let Some(trace) = trace(message) {
                out.push(sse(
                    "content_block_start",
                    json!({ "type": "content_block_start", "index": index,
                    "content_block": { "type": "thinking", "thinking": "" } }),
                ));
                for piece in pieces(trace) {
                    out.push(sse(
                        "content_block_delta",
                        json!({ "type": "content_block_delta", "index": index,
                        "delta": { "type": "thinking_delta", "thinking": piece } }),
                    ));
                }
                out.push(sse(
                    "content_block_delta",
                    json!({ "type": "content_block_delta", "index": index,
                    "delta": { "type": "signature_delta", "signature": "sig-abc" } }),
                ));
                out.push(sse(
                    "content_block_stop",
                    json!({ "type": "content_block_stop", "index": index }),
                ));
                index += 1;
            }
            out.push(sse("ping", json!({ "type": "ping" })));
            if let Some(answer) = message
                .content
                .as_deref()
                .filter(|_| !message.refusal && !truncated(message))
            {
                out.push(sse(
                    "content_block_start",
                    json!({ "type": "content_block_start", "index": index,
                    "content_block": { "type": "text", "text": "" } }),
                ));
                for piece in pieces(answer) {
                    out.push(sse(
                        "content_block_delta",
                        json!({ "type": "content_block_delta", "index": index,
                        "delta": { "type": "text_delta", "text": piece } }),
                    ));
                }
                out.push(sse(
                    "content_block_stop",
                    json!({ "type": "content_block_stop", "index": index }),
                ));
            }
            let stop = if message.refusal {
                "refusal"
            } else if truncated(message) {
                "max_tokens"
            } else {
                "end_turn"
            };
            out.push(sse("message_delta", json!({ "type": "message_delta",
                "delta": { "stop_reason": stop, "stop_sequence": null }, "usage": { "output_tokens": output } })));
            out.push(sse("message_stop", json!({ "type": "message_stop" })));
            out
        }
        Wire::Responses => {
            let whole = whole(wire, message, model);
            let mut out = vec![sse(
                "response.created",
                json!({ "type": "response.created", "response": { "id": "resp_fake", "object": "response", "status": "in_progress", "output": [] } }),
            )];
            if let Some(trace) = trace(message).filter(|_| !message.redacted) {
                for piece in pieces(trace) {
                    out.push(sse("response.reasoning_summary_text.delta", json!({
                        "type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 0, "delta": piece })));
                }
            }
            if let Some(answer) = message
                .content
                .as_deref()
                .filter(|_| !message.refusal && !truncated(message))
            {
                for piece in pieces(answer) {
                    out.push(sse("response.output_text.delta", json!({
                        "type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": piece })));
                }
            }
            let done = if truncated(message) {
                "response.incomplete"
            } else {
                "response.completed"
            };
            out.push(sse(done, json!({ "type": done, "response": whole })));
            out
        }
        Wire::Gemini => {
            let usage = json!({
                "promptTokenCount": input,
                "candidatesTokenCount": output - reasoning,
                "thoughtsTokenCount": reasoning,
                "totalTokenCount": input + output,
            });
            let chunk = |parts: Value, finish: Option<&str>| {
                let mut candidate = json!({ "index": 0 });
                if !parts.as_array().is_some_and(Vec::is_empty) {
                    candidate["content"] = json!({ "role": "model", "parts": parts });
                }
                let mut chunk = json!({ "candidates": [candidate], "modelVersion": model });
                if let Some(finish) = finish {
                    chunk["candidates"][0]["finishReason"] = json!(finish);
                    chunk["usageMetadata"] = usage.clone();
                }
                format!("data: {chunk}\r\n\r\n")
            };
            let mut out = Vec::new();
            if message.refusal {
                out.push(chunk(json!([]), Some("SAFETY")));
                return out;
            }
            if let Some(trace) = trace(message) {
                for piece in pieces(trace) {
                    out.push(chunk(json!([{ "text": piece, "thought": true }]), None));
                }
            }
            if message.redacted {
                out.push(chunk(json!([{ "thoughtSignature": "c2lnbmF0dXJl" }]), None));
            }
            if let Some(answer) = message.content.as_deref().filter(|_| !truncated(message)) {
                for piece in pieces(answer) {
                    out.push(chunk(json!([{ "text": piece }]), None));
                }
            }
            out.push(chunk(
                json!([]),
                Some(if truncated(message) {
                    "MAX_TOKENS"
                } else {
                    "STOP"
                }),
            ));
            out
        }
        Wire::Ollama => {
            let line = |thinking: &str, content: &str| {
                let mut reply = json!({ "role": "assistant", "content": content });
                if !thinking.is_empty() {
                    reply["thinking"] = json!(thinking);
                }
                format!(
                    "{}\n",
                    json!({ "model": model, "created_at": "2026-12-01T00:00:00Z", "message": reply, "done": false })
                )
            };
            let mut out = Vec::new();
            if let Some(trace) = trace(message) {
                for piece in pieces(trace) {
                    out.push(line(&piece, ""));
                }
            }
            if let Some(answer) = message.content.as_deref().filter(|_| !truncated(message)) {
                for piece in pieces(answer) {
                    out.push(line("", &piece));
                }
            }
            out.push(format!(
                "{}\n",
                json!({
                    "model": model, "created_at": "2026-12-01T00:00:00Z",
                    "message": { "role": "assistant", "content": "" },
                    "done": true, "done_reason": if truncated(message) { "length" } else { "stop" },
                    "prompt_eval_count": input, "eval_count": output,
                })
            ));
            out
        }
    }
}

/// The content type of a streamed response of `wire`.
pub fn stream_type(wire: Wire) -> &'static str {
    match wire {
        Wire::Ollama => "application/x-ndjson",
        _ => "text/event-stream",
    }
}
