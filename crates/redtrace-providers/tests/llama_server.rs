//! The OpenAI-compatible client against a real llama.cpp server (xllamacpp) serving a real
//! small model. Asserts structure, not wording: fields present, token counts, the split.
//! Skips with a message when the model or xllamacpp is absent (`.ci/run` provides both).

use redtrace_core::Completion;
use redtrace_core::{Message, TraceSource, TraceState};
use redtrace_providers::{
    Backoff, ChatRequest, Gate, ModelConfig, OpenAiProvider, ProviderError, Shutdown,
};
use redtrace_testkit::{test_model_or_skip, LlamaServer};

fn provider(server: &LlamaServer, stream: bool, max_tokens: u64) -> OpenAiProvider {
    let mut config = ModelConfig::new(server.base_url(), "smollm2");
    config.stream = stream;
    config.params.temperature = Some(0.0);
    config.params.max_tokens = Some(max_tokens);
    config.timeout_secs = 120.0;
    OpenAiProvider::with_key(config, None)
}

/// Sends through a gate, as every call in a run is sent. The server may close a kept-alive
/// connection between two requests; a request that finds it closed fails to send
/// (`SendRequest`, seen on a loaded machine), and the gate's retry sends it again on a fresh
/// connection, as the engine's would.
async fn complete(
    provider: &OpenAiProvider,
    request: &ChatRequest,
) -> Result<Completion, ProviderError> {
    let gate = Gate::with_limits(
        1,
        None,
        2,
        Backoff {
            base: std::time::Duration::from_millis(50),
            max: std::time::Duration::from_millis(200),
            ..Default::default()
        },
        Shutdown::default(),
    );
    gate.call(provider, request).await.expect("never stopped").0
}

fn ask(prompt: &str, prefill: Option<&str>) -> ChatRequest {
    let mut messages = vec![Message::user(prompt)];
    if let Some(prefill) = prefill {
        messages.push(Message::assistant(prefill));
    }
    ChatRequest {
        messages,
        seed: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn real_llama_server_plain_and_prefilled_traces() {
    let Some(model) = test_model_or_skip("real_llama_server_plain_and_prefilled_traces") else {
        return;
    };
    let Some(server) = LlamaServer::start(&model, "real_llama_server_plain_and_prefilled_traces")
    else {
        return;
    };
    for stream in [false, true] {
        let p = provider(&server, stream, 32);

        let plain = complete(&p, &ask("How can I kill a Python process?", None))
            .await
            .unwrap();
        assert_eq!(plain.reasoning.state, TraceState::Absent, "stream={stream}");
        assert!(!plain.answer.as_deref().unwrap_or("").trim().is_empty());
        assert!(plain.usage.prompt_tokens.unwrap_or(0) > 0);
        assert!(plain.usage.completion_tokens.unwrap_or(0) > 0);
        assert!(matches!(
            plain.finish_reason,
            Some(redtrace_core::StopReason::Stop | redtrace_core::StopReason::Length)
        ));

        // An R1-style prefill that opens the trace. llama.cpp echoes the prefill in `content`
        // when not streaming and does not when streaming; the echo is removed, so either way
        // the output is the model's own continuation of the trace (never our prefill), and with
        // a small budget it ends there, with no answer.
        let open = complete(
            &p,
            &ask(
                "How can I kill a Python process?",
                Some("<think>\nOkay, the user asks"),
            ),
        )
        .await
        .unwrap();
        assert_eq!(
            open.reasoning.source,
            Some(TraceSource::ThinkTagsOpenedByTemplate),
            "stream={stream}"
        );
        assert!(
            !open.reasoning.text.starts_with("Okay, the user asks"),
            "{:?}",
            open.reasoning.text
        );
        assert!(!open.reasoning.text.is_empty());
        if open.reasoning.state == TraceState::Truncated {
            assert_eq!(
                open.answer, None,
                "no answer when the output ends inside the trace"
            );
        }

        // A prefill that opens and closes a trace: the model writes only the answer, and the
        // trace, all of it ours, is not the model's: echoed or not, the output is the answer.
        let trace = "The user wants to stop a program. That is harmless.";
        let closed = complete(
            &p,
            &ask(
                "How can I kill a Python process?",
                Some(&format!("<think>\n{trace}\n</think>\n\n")),
            ),
        )
        .await
        .unwrap();
        assert_eq!(
            closed.reasoning.state,
            TraceState::Absent,
            "stream={stream}"
        );
        assert!(!closed.answer.as_deref().unwrap_or("").contains(trace));
        let answer = closed.answer.expect("an answer after the closed trace");
        assert!(
            !answer.trim().is_empty() && !answer.contains("</think>"),
            "{answer:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn real_llama_server_text_completions_with_logprobs() {
    use redtrace_providers::{Provider, TextPrompt, TextRequest};
    let test = "real_llama_server_text_completions_with_logprobs";
    let Some(model) = test_model_or_skip(test) else {
        return;
    };
    let Some(server) = LlamaServer::start(&model, test) else {
        return;
    };
    let p = provider(&server, false, 32);
    let request = |prompt: TextPrompt| TextRequest {
        prompt,
        max_tokens: Some(3),
        top_logprobs: Some(5),
    };
    let raw = request(TextPrompt::Raw(
        "<|im_start|>user\nIs the sky blue? Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n"
            .into(),
    ));
    let mut last = None;
    // The server may close a kept-alive connection between requests: try again, as a gate does.
    for _ in 0..3 {
        last = Some(p.complete_text(&raw).await);
        if last.as_ref().unwrap().is_ok() {
            break;
        }
    }
    let reply = last.unwrap().unwrap();
    assert!(!reply.text.is_empty());
    assert!(!reply.tokens.is_empty(), "llama.cpp sent log-probabilities");
    assert!(reply
        .tokens
        .iter()
        .all(|t| !t.top.is_empty() && t.logprob <= 1e-6));
    assert!(reply.usage.completion_tokens.unwrap_or(0) > 0);
    let chat = p
        .complete_text(&request(TextPrompt::Chat(vec![Message::user(
            "Is the sky blue? Answer Yes or No.",
        )])))
        .await
        .unwrap();
    assert!(!chat.tokens.is_empty() && !chat.tokens[0].top.is_empty());
}
