//! The batch provider against fakes of OpenAI Batch and Anthropic Message Batches: a batch of
//! concurrent calls, partial failure (rejected, server errors retried live or in a new batch),
//! expiry, cancellation, the providers' limits, and a batch picked up again by a new process
//! without being submitted twice.

use redtrace_core::model::{BatchConfig, BatchRetry};
use redtrace_core::Message;
use redtrace_providers::{
    AnthropicProvider, BatchLedger, BatchProvider, ChatRequest, LedgerBatch, ModelConfig,
    OpenAiProvider, Provider,
};
use redtrace_testkit::{BatchEnd, BatchLine, FakeBatchApi, FakeMessage};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A batch in memory: endpoint, remote id, state, results by key.
type Stored = (
    String,
    Option<String>,
    String,
    HashMap<String, Option<String>>,
);

/// A ledger in memory.
#[derive(Default)]
struct Memory {
    batches: Mutex<Vec<Stored>>,
}

impl BatchLedger for Memory {
    fn open(&self, endpoint: &str) -> Result<Vec<LedgerBatch>, String> {
        let batches = self.batches.lock().unwrap();
        Ok(batches
            .iter()
            .enumerate()
            .filter(|(_, (e, _, state, _))| {
                e == endpoint && state != "ended" && state != "abandoned"
            })
            .map(|(i, (_, remote, _, requests))| LedgerBatch {
                id: i as i64,
                remote_id: remote.clone(),
                requests: requests
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .collect())
    }
    fn form(&self, endpoint: &str, _api: &str, keys: &[String]) -> Result<i64, String> {
        let mut batches = self.batches.lock().unwrap();
        batches.push((
            endpoint.into(),
            None,
            "formed".into(),
            keys.iter().map(|k| (k.clone(), None)).collect(),
        ));
        Ok(batches.len() as i64 - 1)
    }
    fn submitted(&self, id: i64, remote_id: &str) -> Result<(), String> {
        let mut batches = self.batches.lock().unwrap();
        batches[id as usize].1 = Some(remote_id.into());
        batches[id as usize].2 = "submitted".into();
        Ok(())
    }
    fn state(&self, id: i64, state: &str) -> Result<(), String> {
        self.batches.lock().unwrap()[id as usize].2 = state.into();
        Ok(())
    }
    fn result(&self, id: i64, key: &str, line: &str) -> Result<(), String> {
        self.batches.lock().unwrap()[id as usize]
            .3
            .insert(key.into(), Some(line.into()));
        Ok(())
    }
    fn stored_result(&self, key: &str) -> Result<Option<String>, String> {
        Ok(self
            .batches
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|(_, _, _, r)| r.get(key).cloned().flatten()))
    }
}

/// Answers by the prompt: "reject …", "fail …" (a server error), else a reply echoing it.
fn script(_id: &str, body: &Value) -> BatchLine {
    // The last user turn: OpenAI's and Anthropic's `messages`, Gemini's `contents`.
    let prompt = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .or_else(|| {
            body["contents"]
                .as_array()
                .and_then(|c| c.last())
                .and_then(|c| c["parts"][0]["text"].as_str())
        })
        .unwrap_or("")
        .to_owned();
    if prompt.starts_with("reject") {
        BatchLine::Rejected
    } else if prompt.starts_with("fail") {
        BatchLine::ServerError
    } else {
        BatchLine::Reply(FakeMessage {
            content: Some(format!("answer to {prompt}")),
            reasoning_content: Some("thinking".into()),
            usage: Some((10, 5, Some(2))),
            ..Default::default()
        })
    }
}

fn config(api: &FakeBatchApi, which: Api, retry: BatchRetry) -> ModelConfig {
    let mut config = match which {
        Api::Anthropic => {
            ModelConfig::parse_ref(&format!("anthropic:claude@{}", api.base_url())).unwrap()
        }
        Api::Gemini => {
            ModelConfig::parse_ref(&format!("gemini:gemini-2.5-pro@{}", api.base_url())).unwrap()
        }
        Api::OpenAi => ModelConfig::new(api.base_url(), "gpt"),
    };
    config.timeout_secs = 5.0;
    config.batch = Some(BatchConfig {
        poll_secs: 0.02,
        window_secs: 0.05,
        retry,
        max_requests: None,
    });
    config
}

/// The three batch APIs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Api {
    OpenAi,
    Anthropic,
    Gemini,
}

const APIS: [Api; 3] = [Api::OpenAi, Api::Anthropic, Api::Gemini];

fn batched(
    config: &ModelConfig,
    which: Api,
    ledger: Arc<Memory>,
) -> (Arc<BatchProvider>, Arc<Mutex<Vec<String>>>) {
    let inner: Arc<dyn Provider> = match which {
        Api::Anthropic => Arc::new(AnthropicProvider::with_key(config.clone(), None)),
        Api::Gemini => Arc::new(redtrace_providers::GeminiProvider::with_key(
            config.clone(),
            None,
        )),
        Api::OpenAi => Arc::new(OpenAiProvider::with_key(config.clone(), None)),
    };
    let notes = Arc::new(Mutex::new(Vec::new()));
    let sink = notes.clone();
    let provider = BatchProvider::new(
        config.clone(),
        inner,
        ledger,
        Arc::new(move |note: String| sink.lock().unwrap().push(note)),
    )
    .unwrap();
    (Arc::new(provider), notes)
}

fn ask(prompt: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user(prompt)],
        seed: None,
    }
}

async fn all(
    provider: &Arc<BatchProvider>,
    prompts: &[&str],
) -> Vec<Result<redtrace_core::Completion, redtrace_providers::ProviderError>> {
    let calls = prompts.iter().map(|p| {
        let provider = provider.clone();
        let request = ask(p);
        async move { provider.complete(&request).await }
    });
    futures_util::future::join_all(calls).await
}

#[tokio::test]
async fn one_batch_answers_concurrent_calls_with_partial_failure_on_both_apis() {
    for which in APIS {
        let api = FakeBatchApi::start(3, script).await;
        let config = config(&api, which, BatchRetry::Live);
        let (provider, notes) = batched(&config, which, Arc::new(Memory::default()));
        let results = all(
            &provider,
            &["one", "two", "reject this", "fail this", "three"],
        )
        .await;
        assert_eq!(api.creates(), 1, "{which:?}: one batch for all five");
        assert_eq!(api.batches()[0].len(), 5);
        let answer = |i: usize| results[i].as_ref().unwrap().answer.clone().unwrap();
        assert_eq!(answer(0), "answer to one");
        assert_eq!(answer(4), "answer to three");
        assert_eq!(results[0].as_ref().unwrap().reasoning.text, "thinking");
        assert_eq!(
            results[0].as_ref().unwrap().usage.completion_tokens,
            Some(5)
        );
        let rejected = results[2].as_ref().unwrap_err();
        assert!(!rejected.is_retryable(), "{rejected}");
        // The server error was sent again on its own, and failed again there.
        assert_eq!(api.live(), 1, "{which:?}");
        assert!(results[3].is_err());
        let notes = notes.lock().unwrap().join("\n");
        assert!(
            notes.contains("5 requests submitted") && notes.contains("5 results"),
            "{notes}"
        );
    }
}

#[tokio::test]
async fn an_expired_batch_goes_again_in_a_new_batch_and_a_cancelled_one_fails_its_rest() {
    let api = FakeBatchApi::start(2, script).await;
    api.end_with(BatchEnd::Expire);
    let retrying = config(&api, Api::OpenAi, BatchRetry::Batch);
    let (provider, _) = batched(&retrying, Api::OpenAi, Arc::new(Memory::default()));
    let calls = tokio::spawn({
        let provider = provider.clone();
        async move { all(&provider, &["a", "b", "c", "d"]).await }
    });
    // The first batch expires with half its requests answered; the other half go in a new
    // batch, which completes.
    while api.creates() < 1 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    api.end_with(BatchEnd::Complete);
    let results = calls.await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(api.creates(), 2);
    assert_eq!(api.batches()[1].len(), 2, "only the expired half again");
    assert_eq!(api.live(), 0);

    // A cancelled batch: the answered half stands, the rest fail saying so.
    api.end_with(BatchEnd::Cancel);
    for which in APIS {
        let config = config(&api, which, BatchRetry::Live);
        let (provider, notes) = batched(&config, which, Arc::new(Memory::default()));
        let results = all(&provider, &["e", "f", "g", "h"]).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2, "{which:?}");
        let error = results[3].as_ref().unwrap_err().to_string();
        assert!(error.contains("cancelled"), "{error}");
        assert!(notes
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("cancelled with 2 requests unanswered")));
    }
}

#[tokio::test]
async fn batches_split_at_the_limit() {
    let api = FakeBatchApi::start(1, script).await;
    let mut config = config(&api, Api::OpenAi, BatchRetry::Live);
    config.batch.as_mut().unwrap().max_requests = Some(3);
    let (provider, _) = batched(&config, Api::OpenAi, Arc::new(Memory::default()));
    let prompts: Vec<String> = (0..7).map(|i| format!("q{i}")).collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let results = all(&provider, &prompts).await;
    assert!(results.iter().all(Result::is_ok));
    let mut sizes: Vec<usize> = api.batches().iter().map(Vec::len).collect();
    sizes.sort();
    assert_eq!(sizes, [1, 3, 3]);
}

#[test]
fn a_batch_under_way_is_picked_up_by_a_new_process_and_never_submitted_twice() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = runtime.block_on(FakeBatchApi::start(2, script));
    api.hold(true);
    let ledger = Arc::new(Memory::default());
    let config = config(&api, Api::OpenAi, BatchRetry::Live);
    // The first "process": a runtime of its own, dropped (killed) once the batch is submitted.
    {
        let first = tokio::runtime::Runtime::new().unwrap();
        let kept = ledger.clone();
        let config = config.clone();
        first.spawn(async move {
            let (provider, _) = batched(&config, Api::OpenAi, kept);
            all(&provider, &["x", "y", "z"]).await
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while ledger
            .batches
            .lock()
            .unwrap()
            .first()
            .and_then(|b| b.1.clone())
            .is_none()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the batch was never submitted"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        first.shutdown_background();
    }
    assert_eq!(api.creates(), 1);
    // The second process: the same calls find their batch under way and wait for it.
    api.hold(false);
    let results = runtime.block_on(async {
        let (provider, notes) = batched(&config, Api::OpenAi, ledger.clone());
        let results = all(&provider, &["x", "y", "z"]).await;
        assert!(notes.lock().unwrap().iter().any(|n| n.contains("resuming")));
        results
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(api.creates(), 1, "not submitted twice");
    // A third: every result is in the ledger; nothing is sent at all.
    let before = api.creates();
    let results = runtime.block_on(async {
        let (provider, _) = batched(&config, Api::OpenAi, ledger.clone());
        all(&provider, &["x", "y", "z"]).await
    });
    assert!(results.iter().all(Result::is_ok));
    assert_eq!((api.creates(), api.live()), (before, 0));
}
