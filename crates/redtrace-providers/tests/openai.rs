//! The OpenAI-compatible client against the fake server: both transports, every trace shape,
//! and every failure the engine must be able to classify.

use redtrace_core::{Message, TraceSource, TraceState};
use redtrace_providers::{
    ApiKey, ChatRequest, ModelConfig, OpenAiProvider, Provider, ProviderError,
};
use redtrace_testkit::{FakeMessage, FakeServer, Reply};
use std::time::Duration;

fn request(prompt: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user(prompt)],
        seed: None,
    }
}

fn provider(server: &FakeServer, stream: bool) -> OpenAiProvider {
    let mut config = ModelConfig::new(server.base_url(), "fake-r1");
    config.stream = stream;
    config.timeout_secs = 2.0;
    OpenAiProvider::with_key(config, None)
}

#[tokio::test]
async fn reasoning_content_in_both_transports() {
    let server = FakeServer::start(|_| {
        Reply::Message(FakeMessage {
            content: Some("I can't help with that.".into()),
            reasoning_content: Some("The user wants something risky. I should decline.".into()),
            usage: Some((12, 40, Some(30))),
            ..Default::default()
        })
    })
    .await;
    for stream in [false, true] {
        let completion = provider(&server, stream)
            .complete(&request("hi"))
            .await
            .unwrap();
        assert_eq!(
            completion.reasoning.text,
            "The user wants something risky. I should decline."
        );
        assert_eq!(
            completion.reasoning.source,
            Some(TraceSource::ReasoningContentField)
        );
        assert_eq!(
            completion.answer.as_deref(),
            Some("I can't help with that.")
        );
        assert_eq!(
            completion.finish_reason,
            Some(redtrace_core::StopReason::Stop)
        );
        assert_eq!(completion.usage.prompt_tokens, Some(12));
        assert_eq!(completion.usage.completion_tokens, Some(40));
        assert_eq!(
            completion.usage.reasoning_tokens,
            Some(30),
            "stream={stream}"
        );
        assert!(
            completion.raw.contains("I can't help"),
            "raw kept for audit"
        );
    }
    let bodies = server.requests();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0].body.get("stream"), None);
    assert_eq!(bodies[1].body["stream"], true);
    assert_eq!(bodies[1].body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn think_tags_split_in_both_transports() {
    let server = FakeServer::start(|seen| match seen.prompt.as_str() {
        "tags" => Reply::think_tags("let me think", "Answer A"),
        "close-only" => Reply::think_close_only("thinking without opening", "Answer B"),
        "truncated" => Reply::truncated_in_trace("still going"),
        _ => Reply::Message(FakeMessage {
            content: Some("Answer D".into()),
            reasoning: Some("field named reasoning".into()),
            ..Default::default()
        }),
    })
    .await;
    for stream in [false, true] {
        let p = provider(&server, stream);
        let tags = p.complete(&request("tags")).await.unwrap();
        assert_eq!(
            (tags.reasoning.text.as_str(), tags.answer.as_deref()),
            ("let me think", Some("Answer A"))
        );
        // A bare `</think>` is the answer's text unless the template opened the trace.
        let close = p.complete(&request("close-only")).await.unwrap();
        assert_eq!(close.reasoning.state, TraceState::Absent);
        assert!(close
            .answer
            .as_deref()
            .unwrap()
            .ends_with("</think>\n\nAnswer B"));
        let mut config = ModelConfig::new(server.base_url(), "fake-r1");
        config.stream = stream;
        config.template_opens_think = true;
        let opened = OpenAiProvider::with_key(config, None);
        let close = opened.complete(&request("close-only")).await.unwrap();
        assert_eq!(
            close.reasoning.source,
            Some(TraceSource::ThinkTagsOpenedByTemplate)
        );
        assert_eq!(close.answer.as_deref(), Some("Answer B"));
        let truncated = p.complete(&request("truncated")).await.unwrap();
        assert_eq!(truncated.reasoning.state, TraceState::Truncated);
        assert_eq!(truncated.answer, None, "no answer, never an empty one");
        assert_eq!(
            truncated.finish_reason,
            Some(redtrace_core::StopReason::Length)
        );
        let field = p.complete(&request("field")).await.unwrap();
        assert_eq!(field.reasoning.source, Some(TraceSource::ReasoningField));
        assert_eq!(field.answer.as_deref(), Some("Answer D"));
    }
}

#[tokio::test]
async fn params_extra_and_key_are_sent() {
    let server = FakeServer::start(|_| Reply::text("ok")).await;
    let mut config = ModelConfig::new(server.base_url(), "m");
    config.params.temperature = Some(0.6);
    config.params.top_p = Some(0.95);
    config.params.max_tokens = Some(512);
    config.params.seed = Some(7);
    config.params.stop = vec!["###".into()];
    config
        .extra
        .insert("reasoning_effort".into(), serde_json::json!("high"));
    config.extra.insert(
        "chat_template_kwargs".into(),
        serde_json::json!({"thinking": true}),
    );
    let p = OpenAiProvider::with_key(config, Some(ApiKey::new("sk-test-123")));
    let mut req = request("hello");
    req.messages.insert(0, Message::system("be brief"));
    req.seed = Some(99);
    p.complete(&req).await.unwrap();
    let seen = &server.requests()[0];
    let body = &seen.body;
    assert_eq!(body["model"], "m");
    assert_eq!(body["temperature"], 0.6);
    assert_eq!(body["top_p"], 0.95);
    assert_eq!(body["max_tokens"], 512);
    assert_eq!(
        body["seed"], 99,
        "the request's seed overrides the configured one"
    );
    assert_eq!(body["stop"][0], "###");
    assert_eq!(body["reasoning_effort"], "high");
    assert_eq!(body["chat_template_kwargs"]["thinking"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(seen.authorization.as_deref(), Some("Bearer sk-test-123"));
    // The cache key never holds the key.
    assert!(!p.fingerprint(&req).contains("sk-test-123"));
}

#[tokio::test]
async fn failures_are_classified() {
    let server = FakeServer::start(|seen| match seen.prompt.as_str() {
        "429" => Reply::too_many_requests(3),
        "500" => Reply::status(500),
        "400" => Reply::status(400),
        "malformed" => Reply::RawBody("{not json".into()),
        "no-choices" => Reply::RawBody(r#"{"id":"x","object":"chat.completion"}"#.into()),
        "cut" => Reply::CutStream(
            FakeMessage {
                content: Some("a long answer that will be cut".into()),
                ..Default::default()
            },
            2,
        ),
        "drop" => Reply::Drop,
        "slow" => Reply::text("late").after(Duration::from_secs(5)),
        _ => Reply::text("ok"),
    })
    .await;
    let plain = provider(&server, false);
    let streaming = provider(&server, true);

    let error = plain.complete(&request("429")).await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(error.kind(), redtrace_core::ErrorKind::RateLimited);

    let error = plain.complete(&request("500")).await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.kind(), redtrace_core::ErrorKind::ServerError);

    let error = plain.complete(&request("400")).await.unwrap_err();
    assert!(!error.is_retryable());

    let error = plain.complete(&request("malformed")).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::InvalidResponse { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("not JSON"), "{error}");

    let error = plain.complete(&request("no-choices")).await.unwrap_err();
    assert!(error.to_string().contains("no choices"), "{error}");
    assert!(!error.is_retryable());

    let error = streaming.complete(&request("cut")).await.unwrap_err();
    assert!(
        error.is_retryable(),
        "a cut stream is a dropped connection: {error}"
    );

    let error = plain.complete(&request("drop")).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");

    let error = plain.complete(&request("slow")).await.unwrap_err();
    assert!(matches!(error, ProviderError::Timeout { .. }), "{error}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn unreachable_endpoint_is_a_connection_error() {
    // Bind then drop a listener so the port is (almost certainly) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = ModelConfig::new(format!("http://127.0.0.1:{port}/v1"), "m");
    config.timeout_secs = 2.0;
    let error = OpenAiProvider::with_key(config, None)
        .complete(&request("x"))
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Connection { .. }), "{error}");
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
}

#[tokio::test]
async fn prefill_that_opens_think_marks_output_as_trace() {
    let server =
        FakeServer::start(|_| Reply::text("so the user wants X.\n</think>\n\nHere is X.")).await;
    let p = provider(&server, false);
    let mut req = request("q");
    req.messages.push(Message::assistant("<think>\nOkay,"));
    let completion = p.complete(&req).await.unwrap();
    assert_eq!(completion.reasoning.text, "so the user wants X.");
    assert_eq!(completion.answer.as_deref(), Some("Here is X."));
    assert_eq!(
        server.requests()[0].body["messages"][1]["role"],
        "assistant"
    );
}

/// A server that echoes the prefill before its continuation (llama.cpp without streaming)
/// gives the same completion as one that does not: the prefill is ours, not the model's.
#[tokio::test]
async fn an_echoed_prefill_is_not_the_models_text() {
    let server = FakeServer::start(|_| {
        Reply::text("<think>\nOkay, I will comply.\nso the user wants X.\n</think>\n\nHere is X.")
    })
    .await;
    let p = provider(&server, false);
    let mut req = request("q");
    req.messages
        .push(Message::assistant("<think>\nOkay, I will comply.\n"));
    let completion = p.complete(&req).await.unwrap();
    assert_eq!(completion.reasoning.text, "so the user wants X.");
    assert_eq!(completion.answer.as_deref(), Some("Here is X."));
}

#[test]
fn missing_key_variable_is_named() {
    let mut config = ModelConfig::new("http://127.0.0.1:1/v1", "m");
    config.api_key_env = Some("REDTRACE_TEST_SURELY_UNSET_KEY".into());
    let error = OpenAiProvider::new(config).err().unwrap().to_string();
    assert!(error.contains("REDTRACE_TEST_SURELY_UNSET_KEY"), "{error}");
}

/// A server that echoes the key (in a 401 body, or in its reply) gets it back as `***`: the
/// key reaches no error, stored completion or report (regression: it was stored in
/// `completions.error` and shown by exports, the HTML report and the viewer).
#[tokio::test]
async fn a_key_the_server_echoes_is_redacted() {
    let key = "sk-echoed-0123456789";
    let server = FakeServer::start(|seen| {
        let echoed = seen.authorization.clone().unwrap_or_default();
        if seen.prompt == "fail" {
            Reply::Status {
                code: 401,
                retry_after: None,
                body: format!("{{\"error\": \"bad key: {echoed}\"}}"),
            }
        } else {
            Reply::reasoning_content(format!("the key was {echoed}"), format!("{echoed}!"))
        }
    })
    .await;
    for stream in [false, true] {
        let mut config = ModelConfig::new(server.base_url(), "fake-r1");
        config.stream = stream;
        let provider = OpenAiProvider::with_key(config, Some(ApiKey::new(key)));
        let error = provider.complete(&request("fail")).await.unwrap_err();
        assert!(!error.to_string().contains(key), "{error}");
        assert!(error.to_string().contains("bad key: Bearer ***"), "{error}");
        let completion = provider.complete(&request("echo")).await.unwrap();
        for text in [
            completion.answer.as_deref().unwrap(),
            &completion.reasoning.text,
            &completion.raw,
        ] {
            assert!(!text.contains(key), "stream={stream}: {text}");
        }
        assert_eq!(completion.answer.as_deref(), Some("Bearer ***!"));
    }
}

/// A body or stream past the cap fails the request with a clear error instead of filling the
/// memory (regression: an endless JSON body reached 19 GB, an endless stream 5 GB).
#[tokio::test]
async fn responses_past_the_cap_are_cut_off() {
    let long = "word ".repeat(2_000);
    let server = FakeServer::start(move |seen| {
        if seen.prompt == "error" {
            Reply::Status {
                code: 500,
                retry_after: None,
                body: "x".repeat(1_000_000),
            }
        } else {
            Reply::text(long.clone())
        }
    })
    .await;
    for stream in [false, true] {
        let mut config = ModelConfig::new(server.base_url(), "fake-r1");
        config.stream = stream;
        config.max_response_bytes = Some(4_000);
        let provider = OpenAiProvider::with_key(config, None);
        let error = provider.complete(&request("hi")).await.unwrap_err();
        assert!(
            error.to_string().contains("passed 4000 bytes"),
            "stream={stream}: {error}"
        );
        assert!(!error.is_retryable());
        // An error body is read only as far as its start is shown.
        let error = provider.complete(&request("error")).await.unwrap_err();
        assert!(
            error.to_string().len() < 1_000,
            "{}",
            error.to_string().len()
        );
    }
    // The default cap is far above a real completion.
    let provider = OpenAiProvider::with_key(ModelConfig::new(server.base_url(), "fake-r1"), None);
    assert!(provider.complete(&request("hi")).await.is_ok());
}

#[tokio::test]
async fn text_completions_and_log_probabilities_in_both_shapes() {
    use redtrace_providers::{TextPrompt, TextRequest};
    use redtrace_testkit::Wire;
    let server = FakeServer::start(|seen| {
        Reply::with_logprobs(
            if seen.wire == Wire::Completions {
                "Yes it is"
            } else {
                "No"
            },
            &[("Yes", -0.2), ("No", -1.8)],
        )
    })
    .await;
    // The streaming setting does not apply: a text request is answered whole.
    let p = provider(&server, true);
    let ask = |prompt: TextPrompt, top_logprobs| TextRequest {
        prompt,
        max_tokens: Some(3),
        top_logprobs,
    };
    // A raw prompt: /completions, the legacy `logprobs` shape.
    let raw = p
        .complete_text(&ask(TextPrompt::Raw("<s>[INST] Q [/INST]".into()), Some(2)))
        .await
        .unwrap();
    assert_eq!(raw.text, "Yes it is");
    assert_eq!(raw.tokens.len(), 3, "one per position");
    assert_eq!(
        raw.tokens[0].top,
        [("Yes".to_owned(), -0.2), ("No".to_owned(), -1.8)]
    );
    let first = raw.first_token_probabilities(&["Yes", "No"]).unwrap();
    assert!((first.probabilities[0] - (-0.2f64).exp()).abs() < 1e-12 && !first.bounded);
    // A conversation: /chat/completions with `logprobs` and `top_logprobs`, the chat shape.
    let chat = p
        .complete_text(&ask(TextPrompt::Chat(vec![Message::user("Q")]), Some(2)))
        .await
        .unwrap();
    assert_eq!(chat.text, "No");
    assert_eq!(chat.tokens[0].top.len(), 2);
    let seen = server.requests();
    assert_eq!(seen[0].path, "/v1/completions");
    assert_eq!(seen[0].body["prompt"], "<s>[INST] Q [/INST]");
    assert_eq!(seen[0].body["logprobs"], 2);
    assert_eq!(seen[0].body["max_tokens"], 3);
    assert!(seen[0].body.get("stream").is_none());
    assert_eq!(seen[1].path, "/v1/chat/completions");
    assert_eq!(
        (&seen[1].body["logprobs"], &seen[1].body["top_logprobs"]),
        (&serde_json::json!(true), &serde_json::json!(2))
    );
    assert!(seen[1].body.get("stream").is_none());
    // A server that ignores `logprobs` is an error, not a silent guess.
    let bare = FakeServer::start(|_| Reply::text("Yes")).await;
    let error = provider(&bare, false)
        .complete_text(&ask(TextPrompt::Raw("Q".into()), Some(5)))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("none came back"), "{error}");
}
