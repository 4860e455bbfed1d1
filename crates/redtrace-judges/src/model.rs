//! Calling a judge model: the request, retries of what is retryable, and a cache of replies so
//! that a judge call is made once per distinct prompt, across runs and resumes.

use redtrace_core::{sha256_hex, Message};
use redtrace_providers::{ChatRequest, Provider};
use std::sync::Arc;
use std::time::Duration;

/// Judge calls that fail with a retryable error are tried this many times in all.
const ATTEMPTS: u32 = 3;

/// Where judge replies are kept between calls (the store, in a run). Keys are hashes of the
/// whole request (endpoint, model, parameters, messages), so a changed rubric or judge model
/// never gets an old reply.
pub trait ReplyCache: Send + Sync {
    /// The reply stored under `key`.
    fn get(&self, key: &str) -> Option<String>;
    /// Stores a reply (a failure to store is logged by the implementation, not fatal).
    fn put(&self, key: &str, reply: &str);
}

/// A judge model: a provider and, in a run, the reply cache.
#[derive(Clone)]
pub struct JudgeModel {
    provider: Arc<dyn Provider>,
    cache: Option<Arc<dyn ReplyCache>>,
}

/// What came back from a judge model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The judge's answer (its reasoning trace, if it has one, is not part of it).
    pub text: String,
    /// Served from the cache.
    pub cached: bool,
}

impl JudgeModel {
    /// A judge model without a cache.
    pub fn new(provider: Arc<dyn Provider>) -> Self {
        Self {
            provider,
            cache: None,
        }
    }

    /// The same model, caching its replies in `cache`.
    pub fn with_cache(mut self, cache: Arc<dyn ReplyCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Asks the judge; `Err` says why there is no reply (the verdict is then unscored).
    pub async fn ask(&self, messages: Vec<Message>) -> Result<Reply, String> {
        let request = ChatRequest {
            messages,
            seed: None,
        };
        let key = sha256_hex(self.provider.fingerprint(&request).as_bytes());
        if let Some(text) = self.cache.as_ref().and_then(|cache| cache.get(&key)) {
            return Ok(Reply { text, cached: true });
        }
        let mut attempt = 0;
        let completion = loop {
            attempt += 1;
            match self.provider.complete(&request).await {
                Ok(completion) => break completion,
                Err(error) if error.is_retryable() && attempt < ATTEMPTS => {
                    let delay = error
                        .retry_after()
                        .unwrap_or(Duration::from_millis(500 * u64::from(attempt)));
                    tokio::time::sleep(delay.min(Duration::from_secs(60))).await;
                }
                Err(error) => return Err(format!("judge call failed: {error}")),
            }
        };
        // A reasoning judge may think first: only its answer carries the verdict.
        let Some(text) = completion.answer else {
            return Err("judge gave no answer (its output ended inside its reasoning)".into());
        };
        if let Some(cache) = &self.cache {
            cache.put(&key, &text);
        }
        Ok(Reply {
            text,
            cached: false,
        })
    }
}
