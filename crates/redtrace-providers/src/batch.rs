//! Batch APIs (OpenAI Batch, Anthropic Message Batches, Gemini's batch mode): a
//! [`BatchProvider`] takes the
//! requests of a run as ordinary calls, gathers them into batches, submits them, polls, and
//! answers each call with its result, read by the model's own provider as any reply. The engine
//! is unchanged: a call simply takes as long as its batch.
//!
//! What is sent is recorded before it is sent ([`BatchLedger`], the store in a run): a batch's
//! requests (their keys, the hash of what is sent) when it is formed, its id once the provider
//! has it, its state as it changes, each result as it arrives. A run started again therefore
//! never submits a request twice: a request whose batch is under way waits for it, one whose
//! batch has ended takes its stored result. A batch formed but not known to be submitted (a
//! kill between the two) is found again by its tag (OpenAI's `metadata`, Gemini's display
//! name); Anthropic's batches carry none, so such a batch is taken as not submitted, and the
//! run says so.
//!
//! Requests a batch failed with a server error or let expire go again, on their own or in a
//! new batch ([`BatchRetry`]); a request the provider rejected fails as the same request would
//! alone; a cancelled batch fails its requests that have no result, saying so, and a later run
//! sends them again. Batches keep to the providers' limits (OpenAI 50,000 requests and 200 MB;
//! Anthropic 100,000 and 256 MB; Gemini 20 MB of inline requests), split automatically.
//! Gemini returns its inline responses in the order of the requests (without their keys):
//! they are matched by position.

use async_trait::async_trait;
use redtrace_core::model::{BatchConfig, BatchRetry};
use redtrace_core::{sha256_hex, Completion};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::http::{truncate_chars, Http, ERROR_BODY_CHARS};
use crate::{BatchApi, ChatRequest, ModelConfig, Provider, ProviderError, TextReply, TextRequest};

/// A batch as the ledger keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerBatch {
    /// The ledger's id of it.
    pub id: i64,
    /// The provider's id, once it was submitted.
    pub remote_id: Option<String>,
    /// The keys of its requests, each with its stored result line where there is one.
    pub requests: Vec<(String, Option<String>)>,
}

/// Where batches are recorded (the store, in a run), so that a killed run resumes them.
pub trait BatchLedger: Send + Sync {
    /// The batches of `endpoint` recorded and not ended.
    fn open(&self, endpoint: &str) -> Result<Vec<LedgerBatch>, String>;
    /// Records a batch of `keys` about to be submitted; its ledger id.
    fn form(&self, endpoint: &str, api: &str, keys: &[String]) -> Result<i64, String>;
    /// Records the provider's id of batch `id`.
    fn submitted(&self, id: i64, remote_id: &str) -> Result<(), String>;
    /// Records the state of batch `id`.
    fn state(&self, id: i64, state: &str) -> Result<(), String>;
    /// Records the result line of request `key` in batch `id`.
    fn result(&self, id: i64, key: &str, line: &str) -> Result<(), String>;
    /// The stored result line of request `key` in an ended batch, if any.
    fn stored_result(&self, key: &str) -> Result<Option<String>, String>;
}

/// One request's outcome in a batch.
#[derive(Debug, Clone)]
enum LineOutcome {
    /// The reply body.
    Reply(String),
    /// The provider rejected it (its status and message).
    Rejected(u16, String),
    /// A server error or an expiry: worth sending again.
    Again(String),
    /// The batch was cancelled before it was done.
    Cancelled,
}

/// A provider's batch API's limits.
fn limits(api: BatchApi) -> (usize, usize) {
    match api {
        BatchApi::OpenAi => (50_000, 200 * 1024 * 1024),
        BatchApi::Anthropic => (100_000, 256 * 1024 * 1024),
        // Inline requests: 20 MB a batch in all.
        BatchApi::Gemini => (100_000, 20 * 1024 * 1024),
    }
}

type Waiter = tokio::sync::oneshot::Sender<Result<Completion, ProviderError>>;

struct Pending {
    key: String,
    line: Value,
    bytes: usize,
}

#[derive(Default)]
struct State {
    /// Requests waiting to be put in a batch.
    pending: Vec<Pending>,
    /// A flush is scheduled.
    flushing: bool,
    /// Calls waiting for a request's result, with the request.
    waiters: HashMap<String, Vec<(ChatRequest, Waiter)>>,
    /// Keys in a batch under way (submitted or being submitted).
    in_batch: HashSet<String>,
    /// Results that arrived with nobody waiting (a resumed run's batch ahead of its units).
    arrived: HashMap<String, LineOutcome>,
    /// Bumped on each arrival, so that a flush waits until requests stop coming.
    arrivals: u64,
}

/// A model whose requests go through its provider's batch API.
pub struct BatchProvider {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Arc<dyn Provider>,
    api: BatchApi,
    http: Http,
    settings: BatchConfig,
    ledger: Arc<dyn BatchLedger>,
    note: Arc<dyn Fn(String) + Send + Sync>,
    state: Mutex<State>,
}

impl BatchProvider {
    /// `inner`'s requests through its batch API, recorded in `ledger`; what a person should
    /// know (a batch submitted, ended, cancelled) goes to `note`. Batches a killed run left
    /// under way are picked up at once.
    pub fn new(
        config: ModelConfig,
        inner: Arc<dyn Provider>,
        ledger: Arc<dyn BatchLedger>,
        note: Arc<dyn Fn(String) + Send + Sync>,
    ) -> Result<Self, ProviderError> {
        let settings = config.batch.clone().unwrap_or_default();
        let api = inner.batch_api().ok_or_else(|| {
            ProviderError::Config(format!(
                "model '{}': its API has no batch API redtrace speaks (OpenAI Batch, Anthropic Message Batches, Gemini batch mode); drop `batch`",
                config.name
            ))
        })?;
        let http = Http::checked(config)?;
        let shared = Arc::new(Shared {
            inner,
            api,
            http,
            settings,
            ledger,
            note,
            state: Mutex::new(State::default()),
        });
        shared.clone().resume()?;
        Ok(Self { shared })
    }
}

impl Shared {
    fn endpoint(&self) -> String {
        format!("{}#{}", self.http.endpoint, self.http.config.model)
    }

    fn api_name(&self) -> &'static str {
        match self.api {
            BatchApi::OpenAi => "openai",
            BatchApi::Anthropic => "anthropic",
            BatchApi::Gemini => "gemini",
        }
    }

    fn ledger_error(&self, detail: String) -> ProviderError {
        ProviderError::Config(format!("recording a batch in the store: {detail}"))
    }

    /// Picks up the batches a killed run left: those submitted are polled again; those formed
    /// but not known to be submitted are looked for (OpenAI) or let go.
    fn resume(self: Arc<Self>) -> Result<(), ProviderError> {
        let open = self
            .ledger
            .open(&self.endpoint())
            .map_err(|e| self.ledger_error(e))?;
        for batch in open {
            let keys: Vec<String> = batch.requests.iter().map(|(k, _)| k.clone()).collect();
            let remote = batch.remote_id.clone();
            let this = self.clone();
            let id = batch.id;
            {
                let mut state = self.state.lock().expect("not poisoned");
                for (key, line) in &batch.requests {
                    match line {
                        Some(line) => {
                            state
                                .arrived
                                .insert(key.clone(), parse_line(self.api, line).1);
                        }
                        None => {
                            state.in_batch.insert(key.clone());
                        }
                    }
                }
            }
            tokio::spawn(async move {
                let remote = match remote {
                    Some(remote) => Some(remote),
                    None => this.find_formed(id).await,
                };
                match remote {
                    Some(remote) => {
                        (this.note)(format!(
                            "batch {remote}: resuming (a run before this one submitted it)"
                        ));
                        this.poll(id, remote, keys).await;
                    }
                    None => {
                        let _ = this.ledger.state(id, "abandoned");
                        (this.note)(format!(
                            "batch {id} was formed but not known to be submitted when the last run stopped, and was not found at the provider; its {} requests go in a new batch",
                            keys.len(),
                        ));
                        let mut state = this.state.lock().expect("not poisoned");
                        for key in keys {
                            state.in_batch.remove(&key);
                        }
                    }
                }
            });
        }
        Ok(())
    }

    /// A batch formed as ledger batch `id` whose submission was not recorded: found among
    /// the provider's recent batches by the tag it was given (OpenAI's `metadata`, Gemini's
    /// display name); Anthropic's batches carry neither, and the run says so.
    async fn find_formed(&self, id: i64) -> Option<String> {
        let tag = self.tag(id);
        let list = |path: &'static str| async move {
            let text = self
                .send(self.http.client.get(self.http.url(path)))
                .await
                .ok()?;
            serde_json::from_str::<Value>(&text).ok()
        };
        let found = match self.api {
            BatchApi::OpenAi => list("batches?limit=100").await?["data"]
                .as_array()?
                .iter()
                .find(|b| b["metadata"]["redtrace_batch"] == tag.as_str())
                .and_then(|b| b["id"].as_str().map(str::to_owned)),
            BatchApi::Gemini => list("batches?pageSize=100").await?["operations"]
                .as_array()?
                .iter()
                .find(|b| b["metadata"]["displayName"] == tag.as_str())
                .and_then(|b| b["name"].as_str().map(str::to_owned)),
            BatchApi::Anthropic => {
                (self.note)(format!(
                    "batch {id}: Anthropic's batches carry no metadata to find an unrecorded one by; if it was submitted just before the last run stopped, it completes on its own and is billed"
                ));
                None
            }
        }?;
        let _ = self.ledger.submitted(id, &found);
        Some(found)
    }

    /// The metadata that names ledger batch `id` at the provider.
    fn tag(&self, id: i64) -> String {
        format!("{}:{id}", &sha256_hex(self.endpoint().as_bytes())[..16])
    }

    /// Sends an authenticated request and returns its body.
    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<String, ProviderError> {
        let builder = match (&self.http.api_key, self.api) {
            (Some(key), BatchApi::OpenAi) => builder.bearer_auth(key.expose()),
            (Some(key), BatchApi::Anthropic) => builder
                .header("x-api-key", key.expose())
                .header("anthropic-version", crate::ANTHROPIC_VERSION),
            (None, BatchApi::Anthropic) => {
                builder.header("anthropic-version", crate::ANTHROPIC_VERSION)
            }
            (Some(key), BatchApi::Gemini) => builder.header("x-goog-api-key", key.expose()),
            (None, BatchApi::OpenAi | BatchApi::Gemini) => builder,
        };
        let response = self.http.send(builder, |_| None).await?;
        let text = self.http.body(response).await?;
        Ok(self.http.redact(text))
    }

    fn json(&self, text: &str) -> Result<Value, ProviderError> {
        serde_json::from_str(text).map_err(|e| {
            self.http.invalid(format!(
                "not JSON ({e}): {}",
                truncate_chars(text, ERROR_BODY_CHARS)
            ))
        })
    }

    /// Takes a call: its result at once where a batch already has it, else it waits for its
    /// request's batch (formed now, or under way since an earlier run).
    async fn call(self: &Arc<Self>, request: &ChatRequest) -> Result<Completion, ProviderError> {
        let key = sha256_hex(self.inner.fingerprint(request).as_bytes());
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let stored = self
            .ledger
            .stored_result(&key)
            .map_err(|e| self.ledger_error(e))?;
        {
            let mut state = self.state.lock().expect("not poisoned");
            let arrived = state
                .arrived
                .remove(&key)
                .or_else(|| stored.map(|line| parse_line(self.api, &line).1));
            if let Some(outcome) =
                arrived.filter(|o| matches!(o, LineOutcome::Reply(_) | LineOutcome::Rejected(..)))
            {
                drop(state);
                return self.answer(request, outcome);
            }
            let first = !state.waiters.contains_key(&key);
            state
                .waiters
                .entry(key.clone())
                .or_default()
                .push((request.clone(), sender));
            if first && !state.in_batch.contains(&key) {
                let line = self.line(&key, request);
                let bytes = line.to_string().len();
                state.pending.push(Pending { key, line, bytes });
                state.arrivals += 1;
                if !state.flushing {
                    state.flushing = true;
                    let this = self.clone();
                    tokio::spawn(async move { this.flush_when_quiet().await });
                }
            }
        }
        receiver.await.unwrap_or_else(|_| {
            Err(ProviderError::Connection {
                endpoint: self.http.endpoint.clone(),
                detail: "the batch was dropped".into(),
            })
        })
    }

    /// A request as a line of a batch file (OpenAI) or an entry of a batch (Anthropic).
    fn line(&self, key: &str, request: &ChatRequest) -> Value {
        let body = self.inner.batch_body(request);
        match self.api {
            BatchApi::OpenAi => json!({
                "custom_id": key,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            }),
            BatchApi::Anthropic => json!({ "custom_id": key, "params": body }),
            BatchApi::Gemini => json!({ "request": body, "metadata": { "key": key } }),
        }
    }

    /// Answers a call from its line's outcome.
    fn answer(
        &self,
        request: &ChatRequest,
        outcome: LineOutcome,
    ) -> Result<Completion, ProviderError> {
        match outcome {
            LineOutcome::Reply(body) => self.inner.batch_reply(request, &body),
            LineOutcome::Rejected(status, message) => Err(ProviderError::Http {
                status,
                endpoint: self.http.endpoint.clone(),
                body: truncate_chars(&message, ERROR_BODY_CHARS),
                retry_after: None,
            }),
            LineOutcome::Again(why) => Err(ProviderError::Connection {
                endpoint: self.http.endpoint.clone(),
                detail: format!("the batch did not answer this request ({why})"),
            }),
            LineOutcome::Cancelled => Err(self.http.invalid(
                "its batch was cancelled before it answered; run again to send it in a new batch",
            )),
        }
    }

    /// Waits until requests have stopped arriving for the window (or a batch is full), then
    /// submits what is pending, in as many batches as the limits need.
    fn flush_when_quiet(
        self: Arc<Self>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.flush_quietly())
    }

    async fn flush_quietly(self: Arc<Self>) {
        let window = Duration::from_secs_f64(self.settings.window_secs.max(0.0));
        let (max_requests, max_bytes) = limits(self.api);
        let max_requests = self
            .settings
            .max_requests
            .map_or(max_requests, |m| m.clamp(1, max_requests));
        loop {
            let seen = self.state.lock().expect("not poisoned").arrivals;
            tokio::time::sleep(window).await;
            let state = self.state.lock().expect("not poisoned");
            if state.arrivals == seen || state.pending.len() >= max_requests {
                break;
            }
        }
        let pending = {
            let mut state = self.state.lock().expect("not poisoned");
            state.flushing = false;
            let pending = std::mem::take(&mut state.pending);
            for p in &pending {
                state.in_batch.insert(p.key.clone());
            }
            pending
        };
        // Split at the provider's limits.
        let mut chunks: Vec<Vec<Pending>> = vec![Vec::new()];
        let mut bytes = 0usize;
        for p in pending {
            let last = chunks.last_mut().expect("one chunk at least");
            if !last.is_empty() && (last.len() >= max_requests || bytes + p.bytes + 1 > max_bytes) {
                chunks.push(Vec::new());
                bytes = 0;
            }
            bytes += p.bytes + 1;
            chunks.last_mut().expect("pushed").push(p);
        }
        for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
            let this = self.clone();
            tokio::spawn(async move { this.submit(chunk).await });
        }
    }

    /// Records, submits and polls one batch.
    async fn submit(self: Arc<Self>, chunk: Vec<Pending>) {
        let keys: Vec<String> = chunk.iter().map(|p| p.key.clone()).collect();
        let id = match self.ledger.form(&self.endpoint(), self.api_name(), &keys) {
            Ok(id) => id,
            Err(error) => {
                let error = self.ledger_error(error);
                self.fail_all(&keys, |_| Err(error.clone()));
                return;
            }
        };
        let remote = match self.create(id, &chunk).await {
            Ok(remote) => remote,
            Err(error) => {
                // Not submitted: the calls fail as a request would (retried by the gate where
                // the error is retryable, which forms a new batch).
                let _ = self.ledger.state(id, "abandoned");
                self.fail_all(&keys, |_| Err(error.clone()));
                return;
            }
        };
        if let Err(error) = self.ledger.submitted(id, &remote) {
            (self.note)(format!("batch {remote}: could not record its id: {error}"));
        }
        (self.note)(format!("batch {remote}: {} requests submitted", keys.len()));
        self.poll(id, remote, keys).await;
    }

    /// Creates the provider's batch; its id.
    async fn create(&self, id: i64, chunk: &[Pending]) -> Result<String, ProviderError> {
        match self.api {
            BatchApi::OpenAi => {
                let mut file = String::new();
                for p in chunk {
                    file.push_str(&p.line.to_string());
                    file.push('\n');
                }
                let boundary = format!("redtrace-{}", &sha256_hex(file.as_bytes())[..24]);
                let mut body = Vec::new();
                body.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
                         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"batch.jsonl\"\r\n\
                         Content-Type: application/jsonl\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(file.as_bytes());
                body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
                let uploaded = self
                    .send(
                        self.http
                            .client
                            .post(self.http.url("files"))
                            .header(
                                reqwest::header::CONTENT_TYPE,
                                format!("multipart/form-data; boundary={boundary}"),
                            )
                            .body(body),
                    )
                    .await?;
                let file_id = self.json(&uploaded)?["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.http.invalid("the uploaded file has no id"))?;
                let created = self
                    .send(
                        self.http
                            .client
                            .post(self.http.url("batches"))
                            .json(&json!({
                                "input_file_id": file_id,
                                "endpoint": "/v1/chat/completions",
                                "completion_window": "24h",
                                "metadata": { "redtrace_batch": self.tag(id) },
                            })),
                    )
                    .await?;
                self.json(&created)?["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.http.invalid("the created batch has no id"))
            }
            BatchApi::Gemini => {
                let requests: Vec<&Value> = chunk.iter().map(|p| &p.line).collect();
                let url = self.http.url(&format!(
                    "models/{}:batchGenerateContent",
                    self.http.config.model
                ));
                let created = self
                    .send(self.http.client.post(url).json(&json!({
                        "batch": {
                            "displayName": self.tag(id),
                            "inputConfig": { "requests": { "requests": requests } },
                        }
                    })))
                    .await?;
                self.json(&created)?["name"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.http.invalid("the created batch has no name"))
            }
            BatchApi::Anthropic => {
                let requests: Vec<&Value> = chunk.iter().map(|p| &p.line).collect();
                let created = self
                    .send(
                        self.http
                            .client
                            .post(self.http.url("messages/batches"))
                            .json(&json!({ "requests": requests })),
                    )
                    .await?;
                self.json(&created)?["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.http.invalid("the created batch has no id"))
            }
        }
    }

    /// Polls batch `remote` until it ends, then hands each request its outcome.
    async fn poll(self: Arc<Self>, id: i64, remote: String, keys: Vec<String>) {
        let every = Duration::from_secs_f64(self.settings.poll_secs.max(0.01));
        let mut last_state = String::new();
        let mut failures = 0u32;
        let (ended, files) = loop {
            let url = match self.api {
                BatchApi::OpenAi => self.http.url(&format!("batches/{remote}")),
                BatchApi::Anthropic => self.http.url(&format!("messages/batches/{remote}")),
                // `batches/ID`, a resource name.
                BatchApi::Gemini => self.http.url(&remote),
            };
            let status = match self
                .send(self.http.client.get(&url))
                .await
                .and_then(|t| self.json(&t))
            {
                Ok(status) => status,
                Err(error) => {
                    failures += 1;
                    if failures == 5 || !error.is_retryable() {
                        (self.note)(format!(
                            "batch {remote}: cannot read its state ({error}); still trying"
                        ));
                    }
                    tokio::time::sleep(every * failures.min(10)).await;
                    continue;
                }
            };
            failures = 0;
            let state = match self.api {
                BatchApi::OpenAi => status["status"].as_str().unwrap_or("unknown").to_owned(),
                BatchApi::Anthropic => status["processing_status"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_owned(),
                BatchApi::Gemini => status["metadata"]["state"]
                    .as_str()
                    .or(status["state"].as_str())
                    .unwrap_or("unknown")
                    .to_owned(),
            };
            if state != last_state {
                let _ = self.ledger.state(id, &state);
                last_state = state.clone();
            }
            let done = matches!(
                (self.api, state.as_str()),
                (
                    BatchApi::OpenAi,
                    "completed" | "expired" | "cancelled" | "failed"
                ) | (BatchApi::Anthropic, "ended")
                    | (
                        BatchApi::Gemini,
                        "BATCH_STATE_SUCCEEDED"
                            | "BATCH_STATE_FAILED"
                            | "BATCH_STATE_CANCELLED"
                            | "BATCH_STATE_EXPIRED"
                    )
            );
            if done {
                break (state, status);
            }
            tokio::time::sleep(every).await;
        };
        let mut outcomes: HashMap<String, LineOutcome> = HashMap::new();
        let mut lines: Vec<String> = Vec::new();
        // The result files: OpenAI's output and error files, Anthropic's results.
        // Gemini answers inline, in the order of the requests.
        if self.api == BatchApi::Gemini {
            let inline = ["response", "metadata"]
                .iter()
                .find_map(|at| {
                    let output = &files[*at];
                    output["inlinedResponses"]["inlinedResponses"]
                        .as_array()
                        .or(output["output"]["inlinedResponses"]["inlinedResponses"].as_array())
                })
                .cloned()
                .unwrap_or_default();
            for (i, item) in inline.iter().enumerate() {
                let key = item["metadata"]["key"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| keys.get(i).cloned());
                if let Some(key) = key {
                    lines.push(json!({ "custom_id": key, "gemini": item }).to_string());
                }
            }
        }
        let urls: Vec<String> = match self.api {
            BatchApi::Gemini => Vec::new(),
            BatchApi::OpenAi => ["output_file_id", "error_file_id"]
                .iter()
                .filter_map(|f| files[*f].as_str())
                .map(|file| self.http.url(&format!("files/{file}/content")))
                .collect(),
            BatchApi::Anthropic => files["results_url"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect(),
        };
        for url in urls {
            match self.send(self.http.client.get(&url)).await {
                Ok(text) => lines.extend(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_owned),
                ),
                Err(error) => {
                    (self.note)(format!("batch {remote}: cannot read its results ({error})"))
                }
            }
        }
        for line in lines {
            let (key, outcome) = parse_line(self.api, &line);
            if let Some(key) = key {
                let _ = self.ledger.result(id, &key, &line);
                outcomes.insert(key, outcome);
            }
        }
        let cancelled = matches!(
            ended.as_str(),
            "cancelled" | "failed" | "BATCH_STATE_CANCELLED" | "BATCH_STATE_FAILED"
        ) || (self.api == BatchApi::Anthropic
            && files["cancel_initiated_at"].is_string());
        let missing = keys
            .iter()
            .filter(|k| matches!(outcomes.get(*k), None | Some(LineOutcome::Cancelled)))
            .count();
        let _ = self.ledger.state(id, "ended");
        (self.note)(format!(
            "batch {remote}: {ended}, {} results{}",
            keys.len() - missing,
            match (cancelled, missing) {
                (true, m) if m > 0 => format!(", cancelled with {m} requests unanswered (they fail; run again to send them in a new batch)"),
                (_, 0) => String::new(),
                (_, m) => format!(", {m} requests unanswered (expired)"),
            }
        ));
        let again_kind = if cancelled {
            LineOutcome::Cancelled
        } else {
            LineOutcome::Again(format!("batch {ended}"))
        };
        let mut again: Vec<String> = Vec::new();
        for key in &keys {
            let outcome = outcomes.remove(key).unwrap_or_else(|| again_kind.clone());
            if matches!(outcome, LineOutcome::Again(_)) {
                again.push(key.clone());
                continue;
            }
            self.deliver(key, outcome);
        }
        if !again.is_empty() {
            self.clone().again(again).await;
        }
    }

    /// Hands `outcome` to the calls waiting for `key`, or keeps it for a later call.
    fn deliver(&self, key: &str, outcome: LineOutcome) {
        let waiters = {
            let mut state = self.state.lock().expect("not poisoned");
            state.in_batch.remove(key);
            match state.waiters.remove(key) {
                Some(waiters) => waiters,
                None => {
                    state.arrived.insert(key.to_owned(), outcome);
                    return;
                }
            }
        };
        for (request, waiter) in waiters {
            let _ = waiter.send(self.answer(&request, outcome.clone()));
        }
    }

    /// Sends again the requests a batch failed or let expire: each on its own, or in a new
    /// batch.
    async fn again(self: Arc<Self>, keys: Vec<String>) {
        match self.settings.retry {
            BatchRetry::Live => {
                for key in keys {
                    let waiters = {
                        let mut state = self.state.lock().expect("not poisoned");
                        state.in_batch.remove(&key);
                        state.waiters.remove(&key).unwrap_or_default()
                    };
                    let Some((request, _)) = waiters.first() else {
                        continue;
                    };
                    let result = self.inner.complete(request).await;
                    for (_, waiter) in waiters {
                        let _ = waiter.send(result.clone());
                    }
                }
            }
            BatchRetry::Batch => {
                let mut state = self.state.lock().expect("not poisoned");
                for key in keys {
                    state.in_batch.remove(&key);
                    let Some(request) = state
                        .waiters
                        .get(&key)
                        .and_then(|w| w.first())
                        .map(|(r, _)| r.clone())
                    else {
                        continue;
                    };
                    let line = self.line(&key, &request);
                    let bytes = line.to_string().len();
                    state.pending.push(Pending { key, line, bytes });
                }
                state.arrivals += 1;
                if !state.flushing && !state.pending.is_empty() {
                    state.flushing = true;
                    let this = self.clone();
                    tokio::spawn(async move { this.flush_when_quiet().await });
                }
            }
        }
    }

    fn fail_all(
        &self,
        keys: &[String],
        result: impl Fn(&ChatRequest) -> Result<Completion, ProviderError>,
    ) {
        let mut state = self.state.lock().expect("not poisoned");
        for key in keys {
            state.in_batch.remove(key);
            for (request, waiter) in state.waiters.remove(key).unwrap_or_default() {
                let _ = waiter.send(result(&request));
            }
        }
    }
}

/// A result line's request key and outcome.
fn parse_line(api: BatchApi, line: &str) -> (Option<String>, LineOutcome) {
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        return (None, LineOutcome::Again("an unreadable result line".into()));
    };
    let key = value["custom_id"].as_str().map(str::to_owned);
    let outcome = match api {
        BatchApi::OpenAi => {
            let status = value["response"]["status_code"].as_u64().unwrap_or(0) as u16;
            let body = &value["response"]["body"];
            if status == 200 {
                LineOutcome::Reply(body.to_string())
            } else {
                let message = if value["error"].is_object() {
                    value["error"].to_string()
                } else {
                    body.to_string()
                };
                if status == 0
                    || status == 429
                    || status >= 500
                    || value["error"]["code"] == "batch_expired"
                {
                    LineOutcome::Again(message)
                } else {
                    LineOutcome::Rejected(status, message)
                }
            }
        }
        BatchApi::Anthropic => match value["result"]["type"].as_str() {
            Some("succeeded") => LineOutcome::Reply(value["result"]["message"].to_string()),
            Some("errored") => {
                let error = &value["result"]["error"];
                let kind = error["error"]["type"]
                    .as_str()
                    .or(error["type"].as_str())
                    .unwrap_or("");
                if matches!(
                    kind,
                    "invalid_request_error"
                        | "permission_error"
                        | "not_found_error"
                        | "authentication_error"
                ) {
                    LineOutcome::Rejected(400, error.to_string())
                } else {
                    LineOutcome::Again(error.to_string())
                }
            }
            Some("canceled") => LineOutcome::Cancelled,
            Some("expired") => LineOutcome::Again("expired".into()),
            _ => LineOutcome::Again(format!("an unknown result: {}", truncate_chars(line, 200))),
        },
        BatchApi::Gemini => {
            let item = &value["gemini"];
            if item["response"].is_object() {
                LineOutcome::Reply(item["response"].to_string())
            } else {
                let code = item["error"]["code"].as_u64().unwrap_or(0);
                // google.rpc codes: 3 invalid argument, 5 not found, 7 permission denied.
                if matches!(code, 3 | 5 | 7 | 400 | 403 | 404) {
                    LineOutcome::Rejected(400, item["error"].to_string())
                } else {
                    LineOutcome::Again(item["error"].to_string())
                }
            }
        }
    };
    (key, outcome)
}

#[async_trait]
impl Provider for BatchProvider {
    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ProviderError> {
        self.shared.call(request).await
    }

    fn fingerprint(&self, request: &ChatRequest) -> String {
        // A batch reply is the same completion: the same cache key.
        self.shared.inner.fingerprint(request)
    }

    async fn complete_text(&self, request: &TextRequest) -> Result<TextReply, ProviderError> {
        self.shared.inner.complete_text(request).await
    }

    fn text_fingerprint(&self, request: &TextRequest) -> String {
        self.shared.inner.text_fingerprint(request)
    }
}
