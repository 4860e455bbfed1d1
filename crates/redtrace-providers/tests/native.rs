//! The native reasoning APIs (Anthropic Messages, OpenAI Responses, Gemini, Ollama) against
//! the fake server speaking each one's wire format: plain and streamed, thinking on and off,
//! a withheld trace, a stop on the budget inside the thinking, the provider's own refusal,
//! rate limits with each API's wait hint, malformed bodies and a cut stream. The trace's
//! provenance is asserted every time: a summary is never taken for the model's own words.

use redtrace_core::{Message, StopReason, TraceSource, TraceState};
use redtrace_providers::{
    AnthropicProvider, ApiKey, ChatRequest, GeminiProvider, ModelConfig, OllamaProvider, Provider,
    ProviderError, ResponsesProvider,
};
use redtrace_testkit::{FakeMessage, FakeServer, Reply, Wire};
use serde_json::json;
use std::time::Duration;

const PREFIXES: [&str; 4] = ["anthropic:", "openai-responses:", "gemini:", "ollama:"];

fn provider(server: &FakeServer, prefix: &str, model: &str, stream: bool) -> Box<dyn Provider> {
    let mut config = ModelConfig::parse_ref(&server.native_ref(prefix, model)).unwrap();
    config.stream = stream;
    config.timeout_secs = 10.0;
    let key = Some(ApiKey::new("sk-native-secret"));
    match prefix {
        "anthropic:" => Box::new(AnthropicProvider::with_key(config, key)),
        "openai-responses:" => Box::new(ResponsesProvider::with_key(config, key)),
        "gemini:" => Box::new(GeminiProvider::with_key(config, key)),
        _ => Box::new(OllamaProvider::with_key(config, key)),
    }
}

fn ask(prompt: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::system("Be brief."), Message::user(prompt)],
        seed: None,
    }
}

/// The provenance each API gives a visible trace: Anthropic's (Claude 4) and Gemini's and the
/// Responses API's are summaries; Ollama's is the model's own text.
fn visible(prefix: &str) -> TraceState {
    match prefix {
        "ollama:" => TraceState::Complete,
        _ => TraceState::Summary,
    }
}

#[tokio::test]
async fn every_native_api_keeps_the_trace_apart_plain_and_streamed() {
    let server = FakeServer::start(|seen| match seen.prompt.as_str() {
        "think" => {
            Reply::reasoning_content("The user asks about bread. Harmless.", "Knead, rise, bake.")
        }
        "plain" => Reply::text("Hello there."),
        "hidden" => Reply::redacted_trace("A safe answer."),
        "budget" => Reply::Message(FakeMessage {
            reasoning_content: Some("Still thinking about".into()),
            content: Some("never sent".into()),
            finish_reason: Some("length".into()),
            ..Default::default()
        }),
        _ => Reply::provider_refusal(),
    })
    .await;
    for prefix in PREFIXES {
        for stream in [false, true] {
            let client = provider(&server, prefix, "claude-sonnet-4-5", stream);
            let case = format!("{prefix} stream={stream}");

            let c = client.complete(&ask("think")).await.unwrap();
            assert_eq!(
                c.reasoning.text, "The user asks about bread. Harmless.",
                "{case}"
            );
            assert_eq!(c.reasoning.state, visible(prefix), "{case}");
            assert!(c.reasoning.source.is_some(), "{case}");
            assert_eq!(c.answer.as_deref(), Some("Knead, rise, bake."), "{case}");
            assert_eq!(c.finish_reason, Some(StopReason::Stop), "{case}");
            assert!(
                c.usage.prompt_tokens.is_some() && c.usage.completion_tokens.is_some(),
                "{case}"
            );
            assert!(!c.raw.is_empty(), "{case}");

            let c = client.complete(&ask("plain")).await.unwrap();
            assert_eq!(c.reasoning.state, TraceState::Absent, "{case}");
            assert_eq!(c.answer.as_deref(), Some("Hello there."), "{case}");

            let c = client.complete(&ask("budget")).await.unwrap();
            assert_eq!(c.reasoning.state, TraceState::Truncated, "{case}");
            assert_eq!(c.reasoning.text, "Still thinking about", "{case}");
            assert_eq!(
                c.answer, None,
                "{case}: no answer when the budget ran out in the trace"
            );
            assert!(!c.is_provider_refusal(), "{case}");

            if prefix != "ollama:" {
                // Ollama has no withheld trace and no safety system of its own.
                let c = client.complete(&ask("hidden")).await.unwrap();
                let withheld = match prefix {
                    "anthropic:" => TraceState::Redacted,
                    "openai-responses:" => TraceState::Encrypted,
                    _ => TraceState::Omitted,
                };
                assert_eq!(c.reasoning.state, withheld, "{case}");
                assert!(
                    c.reasoning.text.is_empty(),
                    "{case}: nothing withheld is judged"
                );
                assert_eq!(c.answer.as_deref(), Some("A safe answer."), "{case}");

                let c = client.complete(&ask("refuse")).await.unwrap();
                assert!(c.is_provider_refusal(), "{case}: {:?}", c.finish_reason);
            }
        }
    }
    // What was sent: each API's own shape, its key in its own header, the system prompt apart.
    let seen = server.requests();
    let first = |wire: Wire| seen.iter().find(|s| s.wire == wire).unwrap();
    let anthropic = first(Wire::Anthropic);
    assert_eq!(anthropic.api_key.as_deref(), Some("sk-native-secret"));
    assert_eq!(anthropic.body["system"], "Be brief.");
    assert!(
        anthropic.body["max_tokens"].as_u64().is_some(),
        "the API requires max_tokens"
    );
    let gemini = first(Wire::Gemini);
    assert_eq!(gemini.api_key.as_deref(), Some("sk-native-secret"));
    assert_eq!(
        gemini.body["systemInstruction"]["parts"][0]["text"],
        "Be brief."
    );
    assert_eq!(
        gemini.body["generationConfig"]["thinkingConfig"]["includeThoughts"],
        true
    );
    assert!(gemini
        .path
        .contains("/models/claude-sonnet-4-5:generateContent"));
    assert!(seen
        .iter()
        .any(|s| s.wire == Wire::Gemini && s.path.ends_with(":streamGenerateContent?alt=sse")));
    let responses = first(Wire::Responses);
    assert_eq!(
        responses.authorization.as_deref(),
        Some("Bearer sk-native-secret")
    );
    assert_eq!(responses.body["instructions"], "Be brief.");
    assert_eq!(responses.body["reasoning"]["summary"], "auto");
    let ollama = first(Wire::Ollama);
    assert_eq!(ollama.body["think"], true);
    assert_eq!(ollama.body["stream"], false);
}

#[tokio::test]
async fn claude_3_7_thinking_is_the_models_own_text_and_an_empty_block_is_omitted() {
    let server = FakeServer::start(|seen| {
        if seen.prompt == "omitted" {
            Reply::reasoning_content("", "Fine.")
        } else {
            Reply::reasoning_content("Raw thoughts.", "Fine.")
        }
    })
    .await;
    let old = provider(&server, "anthropic:", "claude-3-7-sonnet-20250219", false);
    let c = old.complete(&ask("x")).await.unwrap();
    assert_eq!(c.reasoning.state, TraceState::Complete);
    assert_eq!(c.reasoning.source, Some(TraceSource::AnthropicThinking));
    let new = provider(&server, "anthropic:", "claude-opus-4-7", false);
    let c = new.complete(&ask("omitted")).await.unwrap();
    assert_eq!(c.reasoning.state, TraceState::Omitted);
    assert!(c.reasoning.text.is_empty());
}

#[tokio::test]
async fn reasoning_settings_map_to_each_api() {
    let server = FakeServer::start(|_| Reply::text("ok")).await;
    for (prefix, effort, budget) in [
        ("anthropic:", None, Some(2048)),
        ("anthropic:", Some("high"), None),
        ("gemini:", Some("low"), Some(1024)),
        ("openai-responses:", Some("medium"), None),
        ("ollama:", Some("high"), None),
    ] {
        let mut config = ModelConfig::parse_ref(&server.native_ref(prefix, "m")).unwrap();
        config.params.reasoning_effort = effort.map(str::to_owned);
        config.params.thinking_budget = budget;
        config.validate().unwrap();
        let client: Box<dyn Provider> = match prefix {
            "anthropic:" => Box::new(AnthropicProvider::with_key(config, None)),
            "openai-responses:" => Box::new(ResponsesProvider::with_key(config, None)),
            "gemini:" => Box::new(GeminiProvider::with_key(config, None)),
            _ => Box::new(OllamaProvider::with_key(config, None)),
        };
        client.complete(&ask("x")).await.unwrap();
    }
    let seen = server.requests();
    assert_eq!(
        seen[0].body["thinking"],
        json!({ "type": "enabled", "budget_tokens": 2048 })
    );
    assert_eq!(
        seen[0].body["max_tokens"],
        2048 + 4096,
        "room for the answer after the budget"
    );
    assert_eq!(seen[1].body["thinking"], json!({ "type": "adaptive" }));
    assert_eq!(seen[1].body["output_config"], json!({ "effort": "high" }));
    let thinking = &seen[2].body["generationConfig"]["thinkingConfig"];
    assert_eq!(
        (
            thinking["thinkingLevel"].as_str(),
            thinking["thinkingBudget"].as_u64()
        ),
        (Some("low"), Some(1024))
    );
    assert_eq!(
        seen[3].body["reasoning"],
        json!({ "effort": "medium", "summary": "auto" })
    );
    assert_eq!(seen[4].body["think"], "high");

    // Anthropic with thinking on takes temperature 1 only.
    let mut hot = ModelConfig::parse_ref(&server.native_ref("anthropic:", "m")).unwrap();
    hot.params.thinking_budget = Some(1024);
    hot.params.temperature = Some(0.6);
    assert!(hot
        .validate()
        .unwrap_err()
        .to_string()
        .contains("temperature"));
    hot.params.temperature = Some(1.0);
    hot.validate().unwrap();

    // A setting an API has no place for is refused before anything is sent.
    for (reference, effort, budget, wanted) in [
        (
            server.native_ref("ollama:", "m"),
            None,
            Some(100),
            "Ollama takes no thinking_budget",
        ),
        (
            server.native_ref("openai-responses:", "m"),
            None,
            Some(100),
            "the Responses API takes no thinking_budget",
        ),
        (
            server.model_ref("m"),
            Some("extreme"),
            None,
            "reasoning_effort 'extreme'",
        ),
    ] {
        let mut config = ModelConfig::parse_ref(&reference).unwrap();
        config.params.reasoning_effort = effort.map(str::to_owned);
        config.params.thinking_budget = budget;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(wanted), "{error}");
    }
}

#[tokio::test]
async fn rate_limits_errors_malformed_bodies_and_cut_streams() {
    let server = FakeServer::start(|seen| match seen.prompt.as_str() {
        "busy" => match seen.wire {
            Wire::Gemini => Reply::status_with(429, json!({ "error": { "code": 429, "status": "RESOURCE_EXHAUSTED",
                "details": [{ "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s" }] } })),
            Wire::Anthropic => Reply::Status { code: 529, retry_after: Some("3".into()),
                body: json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } }).to_string() },
            _ => Reply::too_many_requests(5),
        },
        "garbage" => Reply::RawBody("{\"unexpected\": true".into()),
        "empty" => Reply::RawBody("{}".into()),
        _ => Reply::CutStream(
            FakeMessage { reasoning_content: Some("a long trace that will be cut".into()), content: Some("answer".into()), ..Default::default() },
            3,
        ),
    })
    .await;
    for prefix in PREFIXES {
        let client = provider(&server, prefix, "m", false);
        let error = client.complete(&ask("busy")).await.unwrap_err();
        assert!(error.is_retryable(), "{prefix}: {error}");
        let wait = match prefix {
            "gemini:" => Duration::from_secs(7),
            "anthropic:" => Duration::from_secs(3),
            _ => Duration::from_secs(5),
        };
        assert_eq!(error.retry_after(), Some(wait), "{prefix}");

        for body in ["garbage", "empty"] {
            let error = client.complete(&ask(body)).await.unwrap_err();
            assert!(
                matches!(error, ProviderError::InvalidResponse { .. }),
                "{prefix} {body}: {error}"
            );
            assert!(!error.is_retryable());
            let shown = error.to_string();
            assert!(!shown.contains("sk-native-secret"), "{shown}");
        }

        let streaming = provider(&server, prefix, "m", true);
        let error = streaming.complete(&ask("cut")).await.unwrap_err();
        assert!(
            matches!(error, ProviderError::Connection { .. }),
            "{prefix}: a cut stream is a dropped connection, retried: {error}"
        );
    }
}

/// On the OpenAI-compatible path: an OpenAI `refusal` is the provider's refusal; OpenRouter's
/// `reasoning_details` summary is a summary and an encrypted part an encrypted trace; gpt-oss
/// harmony output served raw splits like `<think>`.
#[tokio::test]
async fn openai_compatible_refusals_reasoning_details_and_harmony() {
    let server = FakeServer::start(|seen| {
        let message = match seen.prompt.as_str() {
            "refuse" => json!({ "role": "assistant", "content": null, "refusal": "I'm sorry, I can't help with that." }),
            "summary" => json!({ "role": "assistant", "content": "Answer.",
                "reasoning_details": [{ "type": "reasoning.summary", "summary": "Weighing the request.", "format": "openai-responses-v1" }] }),
            "encrypted" => json!({ "role": "assistant", "content": "Answer.",
                "reasoning_details": [{ "type": "reasoning.encrypted", "data": "gAAAA", "format": "openai-responses-v1" }] }),
            _ => json!({ "role": "assistant", "content": "<|channel|>analysis<|message|>Think first.<|end|><|start|>assistant<|channel|>final<|message|>Done.<|return|>" }),
        };
        Reply::RawBody(json!({ "id": "x", "object": "chat.completion", "model": "m",
            "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }] }).to_string())
    })
    .await;
    let client = redtrace_providers::OpenAiProvider::with_key(
        ModelConfig::parse_ref(&server.model_ref("m")).unwrap(),
        None,
    );
    let c = client.complete(&ask("refuse")).await.unwrap();
    assert!(c.is_provider_refusal());
    assert_eq!(
        c.answer.as_deref(),
        Some("I'm sorry, I can't help with that.")
    );
    let c = client.complete(&ask("summary")).await.unwrap();
    assert_eq!(
        (c.reasoning.state, c.reasoning.text.as_str()),
        (TraceState::Summary, "Weighing the request.")
    );
    let c = client.complete(&ask("encrypted")).await.unwrap();
    assert_eq!(c.reasoning.state, TraceState::Encrypted);
    let c = client.complete(&ask("harmony")).await.unwrap();
    assert_eq!(
        (c.reasoning.text.as_str(), c.answer.as_deref()),
        ("Think first.", Some("Done."))
    );
    assert_eq!(c.reasoning.source, Some(TraceSource::Harmony));
}

/// In a dialogue the model's earlier replies go back without their traces by default (what
/// every API accepts); with `replay_traces` an OpenAI-compatible server gets them as
/// `reasoning_content` and Ollama as `thinking`; the APIs that take earlier thinking back only
/// in their own signed form refuse the setting before anything is sent.
#[tokio::test]
async fn earlier_traces_are_dropped_by_default_and_replayed_where_the_api_takes_them() {
    let server = FakeServer::start(|_| Reply::text("next")).await;
    let earlier = redtrace_core::Reasoning {
        text: "I considered the first question.".into(),
        source: Some(TraceSource::ReasoningContentField),
        state: TraceState::Complete,
    };
    let dialogue = ChatRequest {
        messages: vec![
            Message::user("first"),
            Message::reply("first answer", &earlier),
            Message::user("second"),
        ],
        seed: None,
    };
    for replay in [false, true] {
        for reference in [server.model_ref("m"), server.native_ref("ollama:", "m")] {
            let mut config = ModelConfig::parse_ref(&reference).unwrap();
            config.replay_traces = replay;
            config.validate().unwrap();
            let client: Box<dyn Provider> = if reference.starts_with("ollama:") {
                Box::new(OllamaProvider::with_key(config, None))
            } else {
                Box::new(redtrace_providers::OpenAiProvider::with_key(config, None))
            };
            client.complete(&dialogue).await.unwrap();
        }
    }
    let seen = server.requests();
    let turn = |n: usize| &seen[n].body["messages"][1];
    assert_eq!(turn(0)["content"], "first answer");
    assert!(turn(0).get("reasoning_content").is_none() && turn(1).get("thinking").is_none());
    assert_eq!(
        turn(2)["reasoning_content"],
        "I considered the first question."
    );
    assert_eq!(turn(3)["thinking"], "I considered the first question.");

    for prefix in ["anthropic:", "gemini:", "openai-responses:"] {
        let mut config = ModelConfig::parse_ref(&server.native_ref(prefix, "m")).unwrap();
        config.replay_traces = true;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("replay_traces"), "{prefix}: {error}");
    }
    // A summary is replayed as what the model was shown to have thought; a withheld trace
    // has nothing to replay.
    let withheld = redtrace_core::Reasoning {
        state: TraceState::Redacted,
        ..redtrace_core::Reasoning::absent()
    };
    assert_eq!(Message::reply("a", &withheld).reasoning, None);
}

/// Gemini's blocked prompt (no candidates, `promptFeedback.blockReason`) is the provider's
/// refusal; Anthropic's `overloaded_error` inside a stream is retried like a 529.
#[tokio::test]
async fn a_blocked_prompt_and_an_overloaded_stream() {
    let server = FakeServer::start(|seen| match seen.wire {
        Wire::Gemini => Reply::RawBody(
            json!({ "promptFeedback": { "blockReason": "PROHIBITED_CONTENT" },
                    "usageMetadata": { "promptTokenCount": 9, "totalTokenCount": 9 } })
            .to_string(),
        ),
        _ => Reply::RawBody(String::new()),
    })
    .await;
    let gemini = provider(&server, "gemini:", "m", false);
    let c = gemini.complete(&ask("x")).await.unwrap();
    assert!(c.is_provider_refusal());
    assert_eq!(c.answer, None);
    assert_eq!(c.usage.prompt_tokens, Some(9));

    // An SSE stream that reports overload partway.
    let overloaded = FakeServer::start(|_| {
        Reply::RawBody(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n\
             event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
                .into(),
        )
    })
    .await;
    let anthropic = provider(&overloaded, "anthropic:", "m", true);
    let error = anthropic.complete(&ask("x")).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
}

/// A prefill (an assistant turn last) goes only to an API that continues it: the Responses
/// API and Gemini refuse it, and Anthropic with thinking on, before anything is sent, saying
/// the provider does not support it; Anthropic without thinking and Ollama take it.
#[tokio::test]
async fn a_prefill_is_refused_where_the_api_cannot_continue_it() {
    let server = FakeServer::start(|_| Reply::text("continued")).await;
    let prefilled = ChatRequest {
        messages: vec![
            Message::user("q"),
            Message::assistant("<think>\n\n</think>\n\n"),
        ],
        seed: None,
    };
    for prefix in ["openai-responses:", "gemini:"] {
        let error = provider(&server, prefix, "m", false)
            .complete(&prefilled)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::Config(_)),
            "{prefix}: {error}"
        );
        assert!(error.to_string().contains("not supported by this provider"));
        assert!(!error.is_retryable());
    }
    let mut thinking = ModelConfig::parse_ref(&server.native_ref("anthropic:", "m")).unwrap();
    thinking.params.thinking_budget = Some(1024);
    let error = AnthropicProvider::with_key(thinking, None)
        .complete(&prefilled)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("with thinking on"), "{error}");
    assert_eq!(server.count(), 0, "nothing was sent");
    for prefix in ["anthropic:", "ollama:"] {
        provider(&server, prefix, "m", false)
            .complete(&prefilled)
            .await
            .unwrap();
    }
    let mut config = ModelConfig::parse_ref(&server.native_ref("gemini:", "m")).unwrap();
    config.think_prefill = Some("<think>\n".into());
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("think_prefill"));
}

#[tokio::test]
async fn the_native_apis_refuse_text_requests_before_sending() {
    use redtrace_providers::{TextPrompt, TextRequest};
    let server = FakeServer::start(|_| Reply::text("never")).await;
    for prefix in PREFIXES {
        let error = provider(&server, prefix, "m", false)
            .complete_text(&TextRequest {
                prompt: TextPrompt::Raw("safe or unsafe?".into()),
                max_tokens: Some(1),
                top_logprobs: Some(5),
            })
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("serves no text completions") && !error.is_retryable(),
            "{prefix}: {error}"
        );
    }
    assert_eq!(server.count(), 0, "nothing was sent");
}

#[tokio::test]
async fn cached_prompt_tokens_are_read_from_each_api() {
    // OpenAI-compatible: `prompt_tokens_details.cached_tokens` within `prompt_tokens`.
    let openai = FakeServer::start(|_| {
        Reply::RawBody(
            serde_json::json!({
                "choices": [{ "message": { "content": "ok" }, "finish_reason": "stop" }],
                "usage": { "prompt_tokens": 1000, "completion_tokens": 20,
                           "prompt_tokens_details": { "cached_tokens": 600 } },
            })
            .to_string(),
        )
    })
    .await;
    let config = ModelConfig::new(openai.base_url(), "m");
    let usage = redtrace_providers::OpenAiProvider::with_key(config, None)
        .complete(&ask("q"))
        .await
        .unwrap()
        .usage;
    assert_eq!(
        (usage.prompt_tokens, usage.cached_prompt_tokens),
        (Some(1000), Some(600))
    );
    // Anthropic: `input_tokens` leaves out the cache reads and writes; the prompt is all three.
    let anthropic = FakeServer::start(|_| {
        Reply::RawBody(
            serde_json::json!({
                "id": "msg", "type": "message", "role": "assistant", "model": "m",
                "content": [{ "type": "text", "text": "ok" }],
                "stop_reason": "end_turn",
                "usage": { "input_tokens": 100, "cache_read_input_tokens": 600,
                           "cache_creation_input_tokens": 300, "output_tokens": 20 },
            })
            .to_string(),
        )
    })
    .await;
    let usage = provider(&anthropic, "anthropic:", "m", false)
        .complete(&ask("q"))
        .await
        .unwrap()
        .usage;
    assert_eq!(
        (usage.prompt_tokens, usage.cached_prompt_tokens),
        (Some(1000), Some(600))
    );
}
