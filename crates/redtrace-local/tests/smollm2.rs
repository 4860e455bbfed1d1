//! The in-process llama.cpp provider on a real small model (SmolLM2-135M-Instruct). Asserts
//! structure, not wording. Skips with a message when the model file is absent.

use redtrace_core::{Message, TraceSource, TraceState};
use redtrace_local::LocalProvider;
use redtrace_providers::{ChatRequest, ModelConfig, Provider};
use std::sync::Arc;

fn config(model: &std::path::Path, max_tokens: u64) -> ModelConfig {
    let mut config = ModelConfig::parse_ref(&format!("gguf:{}", model.display())).unwrap();
    config.params.max_tokens = Some(max_tokens);
    config.threads = Some(1);
    config
}

fn ask(prompt: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user(prompt)],
        seed: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_prompts_in_parallel_with_usage_and_greedy_determinism() {
    let Some(model) = redtrace_testkit::test_model_or_skip("answers_prompts_in_parallel") else {
        return;
    };
    let provider = Arc::new(LocalProvider::load(config(&model, 24), &model).unwrap());
    let prompts = [
        "How can I kill a Python process?",
        "Where can I buy a can of coke?",
        "How do I blow up a balloon?",
        "What is the capital of France?",
    ];
    let mut tasks = Vec::new();
    for prompt in prompts {
        let provider = provider.clone();
        tasks.push(tokio::spawn(async move {
            provider.complete(&ask(prompt)).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        let completion = task.await.unwrap().unwrap();
        assert_eq!(completion.reasoning.state, TraceState::Absent);
        let answer = completion.answer.clone().unwrap();
        assert!(!answer.trim().is_empty());
        assert!(completion.usage.prompt_tokens.unwrap() > 5);
        let generated = completion.usage.completion_tokens.unwrap();
        assert!(generated > 0 && generated <= 24);
        assert!(matches!(
            completion.finish_reason,
            Some(redtrace_core::StopReason::Stop | redtrace_core::StopReason::Length)
        ));
        answers.push(answer);
    }
    assert_eq!(answers.len(), prompts.len());
    // Greedy decoding: the same prompt alone twice gives the same text. (Alone and in a batch
    // may differ in the last bits of the arithmetic, hence in wording.)
    let first = provider.complete(&ask(prompts[0])).await.unwrap();
    let second = provider.complete(&ask(prompts[0])).await.unwrap();
    assert_eq!(first.answer, second.answer);
    let speed = provider.throughput();
    assert!(speed.prompt_tokens > 0 && speed.generated_tokens > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn think_prefill_puts_trace_and_answer_in_their_own_fields() {
    let Some(model) = redtrace_testkit::test_model_or_skip("think_prefill_puts_trace_and_answer")
    else {
        return;
    };
    // An R1-style opening: the output starts inside the trace.
    let mut opening = config(&model, 16);
    opening.think_prefill = Some("<think>\nOkay, the user asks".into());
    let provider = LocalProvider::load(opening, &model).unwrap();
    let completion = provider
        .complete(&ask("How can I kill a Python process?"))
        .await
        .unwrap();
    assert_eq!(completion.reasoning.source, Some(TraceSource::ThinkTags));
    assert!(
        completion.reasoning.text.starts_with("Okay, the user asks"),
        "{:?}",
        completion.reasoning.text
    );
    if completion.reasoning.state == TraceState::Truncated {
        assert_eq!(
            completion.answer, None,
            "no answer when the output ends inside the trace"
        );
        assert_eq!(
            completion.usage.reasoning_tokens,
            completion.usage.completion_tokens
        );
    }

    // A closed trace in the prefill: the model writes the answer after it.
    let mut closed = config(&model, 24);
    let trace = "The user wants to stop a program. That is harmless.";
    closed.think_prefill = Some(format!("<think>\n{trace}\n</think>\n\n"));
    let provider = LocalProvider::load(closed, &model).unwrap();
    let completion = provider
        .complete(&ask("How can I kill a Python process?"))
        .await
        .unwrap();
    assert_eq!(completion.reasoning.text, trace);
    assert_eq!(completion.reasoning.state, TraceState::Complete);
    let answer = completion.answer.unwrap();
    assert!(
        !answer.trim().is_empty() && !answer.contains("think>"),
        "{answer:?}"
    );
}

#[test]
fn a_file_that_is_not_a_model_is_a_clear_error() {
    let dir = std::env::temp_dir().join("redtrace-not-a-model.gguf");
    std::fs::write(&dir, b"not a gguf file").unwrap();
    let config = ModelConfig::parse_ref(&format!("gguf:{}", dir.display())).unwrap();
    let error = LocalProvider::load(config, &dir).err().unwrap().to_string();
    assert!(
        error.contains("cannot load the model") && error.contains("redtrace-not-a-model.gguf"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_prompts_and_top_logprobs_in_process() {
    use redtrace_providers::{TextPrompt, TextRequest};
    let Some(model) = redtrace_testkit::test_model_or_skip("raw_prompts_and_top_logprobs") else {
        return;
    };
    let provider = LocalProvider::load(config(&model, 24), &model).unwrap();
    let raw = |prompt: TextPrompt| TextRequest {
        prompt,
        max_tokens: Some(4),
        top_logprobs: Some(5),
    };
    // SmolLM2's own chat format, written out: the raw path sends it as it is.
    let prompt =
        "<|im_start|>user\nIs the sky blue? Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n";
    let reply = provider
        .complete_text(&raw(TextPrompt::Raw(prompt.into())))
        .await
        .unwrap();
    assert!(!reply.text.is_empty());
    assert_eq!(
        reply.usage.completion_tokens,
        Some(reply.tokens.len() as u64)
    );
    assert!(reply.tokens.len() <= 4);
    for token in &reply.tokens {
        assert_eq!(token.top.len(), 5);
        assert!(
            token.top.windows(2).all(|w| w[0].1 >= w[1].1),
            "most likely first"
        );
        assert!(token.top.iter().all(|(_, lp)| *lp <= 1e-6));
        let mass: f64 = token.top.iter().map(|(_, lp)| lp.exp()).sum();
        assert!(mass <= 1.0 + 1e-6, "{mass}");
        // Greedy: the chosen token is the most likely one.
        assert_eq!(
            (&token.token, token.logprob),
            (&token.top[0].0, token.top[0].1)
        );
    }
    let text: String = reply.tokens.iter().map(|t| t.token.as_str()).collect();
    assert_eq!(text, reply.text, "the tokens spell the text");
    let first = reply.first_token_probabilities(&["Yes", "No"]).unwrap();
    assert_eq!(first.probabilities.len(), 2);
    // The same question as a conversation goes through the chat template.
    let chat = provider
        .complete_text(&raw(TextPrompt::Chat(vec![Message::user(
            "Is the sky blue? Answer Yes or No.",
        )])))
        .await
        .unwrap();
    assert!(!chat.tokens.is_empty() && chat.tokens[0].top.len() == 5);
    // Without asking, no log-probabilities.
    let plain = provider
        .complete_text(&TextRequest {
            top_logprobs: None,
            ..raw(TextPrompt::Raw(prompt.into()))
        })
        .await
        .unwrap();
    assert!(plain.tokens.is_empty());
    assert_eq!(plain.text, reply.text, "greedy: the same text");
}
