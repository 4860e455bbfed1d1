//! Calling a judge model: the request, retries of what is retryable, a cache of replies so
//! that a judge call is made once per distinct prompt, across runs and resumes, and the meter
//! of what the calls cost ([`metered`]).

use redtrace_core::price::{Price, Spend};
use redtrace_core::Usage;

tokio::task_local! {
    /// The spend of the calls made inside [`metered`].
    static METER: std::cell::RefCell<Spend>;
}

/// Runs `future`, and returns with its output what the judge-model calls made inside it cost
/// (tokens, and dollars where the models have a price). Calls served from the cache cost
/// nothing and are not counted.
pub async fn metered<F: std::future::Future>(future: F) -> (F::Output, Spend) {
    METER
        .scope(std::cell::RefCell::new(Spend::default()), async {
            let output = future.await;
            let spend = METER.with(|meter| *meter.borrow());
            (output, spend)
        })
        .await
}

/// Counts one call in the meter of the enclosing [`metered`], if any.
fn meter(usage: &Usage, price: Option<&Price>) {
    let _ = METER.try_with(|meter| meter.borrow_mut().add(usage, price, false));
}

use redtrace_core::{sha256_hex, Message};
use redtrace_providers::{Backoff, ChatRequest, Gate, Provider, Shutdown, TextReply, TextRequest};
use std::sync::Arc;

/// Retries of a judge call that has no gate of its own (outside a run).
const RETRIES: u32 = 2;

/// Where judge replies are kept between calls (the store, in a run). Keys are hashes of the
/// whole request (endpoint, model, parameters, messages), so a changed rubric or judge model
/// never gets an old reply.
pub trait ReplyCache: Send + Sync {
    /// The reply stored under `key`.
    fn get(&self, key: &str) -> Option<String>;
    /// Stores a reply (a failure to store is logged by the implementation, not fatal).
    fn put(&self, key: &str, reply: &str);
}

/// A judge model: a provider, the gate of its endpoint (in a run, the endpoint's own limits:
/// concurrency, rate, retries, cancellation) and, in a run, the reply cache.
#[derive(Clone)]
pub struct JudgeModel {
    provider: Arc<dyn Provider>,
    gate: Arc<Gate>,
    cache: Option<Arc<dyn ReplyCache>>,
    price: Option<Price>,
}

/// What came back from a judge model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The judge's answer (its reasoning trace, if it has one, is not part of it).
    pub text: String,
    /// Served from the cache.
    pub cached: bool,
}

/// What came back from a text request to a judge model.
#[derive(Debug, Clone, PartialEq)]
pub struct TextAnswer {
    /// The reply: its text, and the log-probabilities of its first token when asked (later
    /// positions are not kept).
    pub reply: TextReply,
    /// Served from the cache.
    pub cached: bool,
}

impl JudgeModel {
    /// Sends a text request ([`TextRequest`]: a guard model's raw prompt, or a conversation
    /// with log-probabilities); `Err` says why there is no reply. Cached like [`JudgeModel::ask`].
    pub async fn ask_text(&self, request: TextRequest) -> Result<TextAnswer, String> {
        let key = sha256_hex(self.provider.text_fingerprint(&request).as_bytes());
        if let Some(reply) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.get(&key))
            .and_then(|json| serde_json::from_str::<TextReply>(&json).ok())
        {
            return Ok(TextAnswer {
                reply,
                cached: true,
            });
        }
        let Some((result, _attempts)) = self.gate.call_text(self.provider.as_ref(), &request).await
        else {
            return Err("the run was stopped before the judge call".into());
        };
        let mut reply = result.map_err(|error| format!("judge call failed: {error}"))?;
        meter(&reply.usage, self.price.as_ref());
        reply.tokens.truncate(1);
        if let Some(cache) = &self.cache {
            cache.put(
                &key,
                &serde_json::to_string(&reply).expect("a text reply serialises"),
            );
        }
        Ok(TextAnswer {
            reply,
            cached: false,
        })
    }

    /// A judge model without a cache, its calls limited only by a few retries.
    pub fn new(provider: Arc<dyn Provider>) -> Self {
        Self {
            provider,
            gate: Arc::new(Gate::with_limits(
                usize::MAX,
                None,
                RETRIES,
                Backoff::default(),
                Shutdown::default(),
            )),
            cache: None,
            price: None,
        }
    }

    /// The same model, its calls priced at `price` (none: their cost is unknown).
    pub fn with_price(mut self, price: Option<Price>) -> Self {
        self.price = price;
        self
    }

    /// The same model, its calls going through `gate`.
    pub fn with_gate(mut self, gate: Arc<Gate>) -> Self {
        self.gate = gate;
        self
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
        let Some((result, _attempts)) = self.gate.call(self.provider.as_ref(), &request).await
        else {
            return Err("the run was stopped before the judge call".into());
        };
        let completion = result.map_err(|error| format!("judge call failed: {error}"))?;
        meter(&completion.usage, self.price.as_ref());
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
