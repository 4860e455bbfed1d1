//! The runner: expands a plan (targets × benchmark samples × completions per prompt) into
//! units, skips units already answered in the run (resume; judging again only what lacks a
//! scored verdict), serves identical requests from
//! the completion cache, sends the rest with bounded concurrency per endpoint, an optional
//! requests-per-minute limit and retries with backoff that honour `Retry-After`, judges each
//! completion on every channel, and hands every outcome to a writer thread that commits in
//! small batches. Per-unit failures are data, never fatal.
//!
//! Cancellation is an input ([`Shutdown`]): `stop` ends the intake of new units and lets
//! in-flight requests finish; `abandon` also aborts those in flight. Either way the store is
//! left consistent and the run can be resumed by running it again.

mod judge_cache;
mod limits;

pub use judge_cache::StoreReplyCache;
pub use limits::{Backoff, RateLimiter};
pub use redtrace_core::{BenchmarkRecord, RunSpec};

use redtrace_attacks::driven::DrivenAttack;
use redtrace_core::{sha256_hex, Channel, Completion, Sample};
use redtrace_judges::{judge_channel, Judge, Responder};
use redtrace_providers::{ChatRequest, ModelConfig, Provider, ProviderError};
use redtrace_store::{RunId, Store, StoreError, UnitError, UnitKey, UnitRecord};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A model to send requests to.
pub struct Target {
    /// Its resolved configuration (name, endpoint, limits).
    pub config: ModelConfig,
    /// The client.
    pub provider: Arc<dyn Provider>,
}

/// A benchmark's samples, read lazily, and the judges of its completions.
pub struct BenchmarkInput {
    /// Its name in the store and reports.
    pub name: String,
    /// The samples, in data order. An `Err` stops the run before anything more is sent.
    pub samples: Box<dyn Iterator<Item = Result<Sample, String>> + Send>,
    /// Judges applied to every completion of this benchmark, on every channel of the plan.
    pub judges: Vec<Arc<dyn Judge>>,
    /// For a multi-turn benchmark, the other party: the target's replies and the responder's
    /// alternate until it stops or the target has had its turns; the completion is then the
    /// whole exchange.
    pub responder: Option<Arc<dyn Responder>>,
    /// For an attack that asks for an encoded answer: the answer as the judges should read it
    /// (the stored completion keeps what the model wrote).
    pub decode: Option<Decoder>,
    /// For a model-driven attack (PAIR, TAP, Crescendo, translation): the attack runs each
    /// unit, reaching the target through the unit (its retries, limits and cancellation); the
    /// completion is the reply it chose, with its transcript.
    pub driven: Option<Arc<dyn DrivenAttack>>,
}

/// Turns an encoded answer into the text judges read; `None` leaves it as written.
pub type Decoder = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything one run does.
pub struct Plan {
    /// The run in the store.
    pub run: RunId,
    /// Targets.
    pub targets: Vec<Target>,
    /// Benchmarks, each with its judges.
    pub benchmarks: Vec<BenchmarkInput>,
    /// Channels each judge scores.
    pub channels: Vec<Channel>,
    /// Completions per prompt (distinct seeds when above 1).
    pub samples_per_prompt: u32,
    /// Serve identical requests from earlier runs' completions.
    pub use_cache: bool,
    /// Total units, when known, for progress.
    pub total_units: Option<u64>,
}

/// Tuning knobs that are not part of a run's identity.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Retry backoff.
    pub backoff: Backoff,
    /// Records per write transaction at most.
    pub batch_size: usize,
    /// How long the writer gathers records before committing them.
    pub batch_wait: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            batch_size: 512,
            batch_wait: Duration::from_millis(25),
        }
    }
}

/// How one unit ended, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitOutcome {
    /// A new completion.
    Answered,
    /// Served from the completion cache.
    Cached,
    /// Already answered in this run (resume).
    Skipped,
    /// Already answered in this run, and judged again where a verdict was missing or unscored
    /// (resume after judge failures, or with a judge added).
    Rejudged,
    /// Failed after its retries.
    Failed,
    /// Never sent: the run was stopped while it waited for its turn. Nothing is stored; a
    /// resume sends it.
    Unsent,
}

/// Where the engine reports progress; the binary draws a bar, tests count.
pub trait Progress: Send + Sync {
    /// The run starts; `total` units when known.
    fn begin(&self, total: Option<u64>);
    /// One unit ended.
    fn unit(&self, outcome: UnitOutcome);
    /// Something worth telling a person (stopping, waiting for a retry).
    fn note(&self, message: &str);
    /// The run ended.
    fn end(&self);
}

/// A progress sink that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _total: Option<u64>) {}
    fn unit(&self, _outcome: UnitOutcome) {}
    fn note(&self, _message: &str) {}
    fn end(&self) {}
}

/// Cancellation inputs.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Stop taking new units; let in-flight ones finish.
    pub stop: CancellationToken,
    /// Abort in-flight units too.
    pub abandon: CancellationToken,
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    /// New completions.
    pub answered: u64,
    /// Completions served from the cache.
    pub cached: u64,
    /// Units already answered in this run.
    pub skipped: u64,
    /// Units already answered and judged again (a verdict was missing or unscored).
    pub rejudged: u64,
    /// Units that failed after retries.
    pub failed: u64,
    /// HTTP requests sent (including retries).
    pub requests: u64,
    /// The run was stopped before all units were taken.
    pub interrupted: bool,
}

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed; what was committed before stays.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A benchmark row was bad.
    #[error("{0}")]
    Data(String),
}

enum WriterMessage {
    Sample(String, Sample),
    Unit(UnitRecord),
    Verdicts(UnitKey, Vec<redtrace_core::Verdict>),
}

/// The writer commits a batch once no record has arrived for this long.
const IDLE_GAP: Duration = Duration::from_millis(3);

/// The cache key of a request: what would be sent, and which completion of the prompt it is.
pub fn request_hash(provider: &dyn Provider, request: &ChatRequest, sample_k: u32) -> String {
    sha256_hex(format!("{}\u{1f}{sample_k}", provider.fingerprint(request)).as_bytes())
}

struct Endpoint {
    permits: Arc<Semaphore>,
    limiter: Option<Arc<RateLimiter>>,
}

/// Runs a plan to the end (or until shut down), writing everything to the store at `db`.
pub async fn run(
    plan: Plan,
    db: PathBuf,
    options: EngineOptions,
    progress: Arc<dyn Progress>,
    shutdown: Shutdown,
) -> Result<RunSummary, EngineError> {
    let reader = Store::open(&db)?;
    let answered = reader.answered(plan.run)?;
    let judged = reader.judged(plan.run)?;
    let run_id = plan.run;

    // The writer owns its own connection on its own thread: SQLite writes are blocking, and a
    // single writer batches them into few transactions. The bounded channel gives
    // backpressure if the disk is slower than the network.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<WriterMessage>(4096);
    let writer_db = db.clone();
    let writer = std::thread::spawn(move || -> Result<(), StoreError> {
        let mut store = Store::open(&writer_db)?;
        let mut samples: Vec<(String, Sample)> = Vec::new();
        let mut units: Vec<UnitRecord> = Vec::new();
        let mut rejudged: Vec<(UnitKey, Vec<redtrace_core::Verdict>)> = Vec::new();
        let flush =
            |store: &mut Store,
             samples: &mut Vec<(String, Sample)>,
             units: &mut Vec<UnitRecord>,
             rejudged: &mut Vec<(UnitKey, Vec<redtrace_core::Verdict>)>| {
                let mut by_benchmark: HashMap<&str, Vec<&Sample>> = HashMap::new();
                for (benchmark, sample) in samples.iter() {
                    by_benchmark.entry(benchmark).or_default().push(sample);
                }
                for (benchmark, list) in by_benchmark {
                    store.insert_samples(run_id, benchmark, list)?;
                }
                samples.clear();
                if !units.is_empty() {
                    store.write_batch(run_id, units)?;
                    units.clear();
                }
                if !rejudged.is_empty() {
                    store.write_verdicts(run_id, rejudged)?;
                    rejudged.clear();
                }
                Ok::<(), StoreError>(())
            };
        while let Some(first) = receiver.blocking_recv() {
            // Gather a batch: records that keep arriving (no gap over 3 ms) within
            // `batch_wait` of the first, up to `batch_size`. Under load one transaction then
            // carries hundreds of records, which keeps the commit cost (the largest CPU cost at
            // thousands of completions a second) small; when completions trickle in, each
            // commits within milliseconds, so a crash loses little finished work.
            let deadline = std::time::Instant::now() + options.batch_wait;
            let mut last_arrival = std::time::Instant::now();
            let mut next = Some(first);
            loop {
                if let Some(message) = next.take() {
                    last_arrival = std::time::Instant::now();
                    match message {
                        WriterMessage::Sample(benchmark, sample) => {
                            samples.push((benchmark, sample))
                        }
                        WriterMessage::Unit(record) => units.push(record),
                        WriterMessage::Verdicts(key, verdicts) => rejudged.push((key, verdicts)),
                    }
                }
                if units.len() + samples.len() + rejudged.len() >= options.batch_size {
                    break;
                }
                match receiver.try_recv() {
                    Ok(message) => next = Some(message),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty)
                        if std::time::Instant::now() < deadline
                            && last_arrival.elapsed() < IDLE_GAP =>
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(_) => break,
                }
            }
            flush(&mut store, &mut samples, &mut units, &mut rejudged)?;
        }
        flush(&mut store, &mut samples, &mut units, &mut rejudged)
    });

    let mut endpoints: HashMap<String, Arc<Endpoint>> = HashMap::new();
    let mut target_endpoints = Vec::new();
    let mut spawn_capacity = 0usize;
    for target in &plan.targets {
        let endpoint = endpoints
            .entry(target.config.endpoint())
            .or_insert_with(|| {
                spawn_capacity += target.config.max_concurrency;
                Arc::new(Endpoint {
                    permits: Arc::new(Semaphore::new(target.config.max_concurrency)),
                    limiter: target
                        .config
                        .requests_per_minute
                        .map(|rpm| Arc::new(RateLimiter::per_minute(rpm))),
                })
            })
            .clone();
        target_endpoints.push(endpoint);
    }
    // Tasks waiting for an endpoint permit are bounded too: twice the total concurrency.
    let spawn_permits = Arc::new(Semaphore::new(spawn_capacity.max(1) * 2));
    let channels = Arc::new(plan.channels);
    let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let in_flight = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut summary = RunSummary::default();
    let mut tasks: JoinSet<UnitOutcome> = JoinSet::new();
    let mut data_error = None;
    progress.begin(plan.total_units);

    let targets: Vec<(Arc<dyn Provider>, ModelConfig, Arc<Endpoint>)> = plan
        .targets
        .into_iter()
        .zip(target_endpoints)
        .map(|(target, endpoint)| (target.provider, target.config, endpoint))
        .collect();

    'intake: for benchmark in plan.benchmarks {
        let judges = Arc::new(benchmark.judges);
        let responder = benchmark.responder;
        let decode = benchmark.decode;
        let driven = benchmark.driven;
        for sample in benchmark.samples {
            let sample = match sample {
                Ok(sample) => sample,
                Err(error) => {
                    data_error = Some(error);
                    break 'intake;
                }
            };
            if shutdown.stop.is_cancelled() {
                break 'intake;
            }
            if sender
                .send(WriterMessage::Sample(
                    benchmark.name.clone(),
                    sample.clone(),
                ))
                .await
                .is_err()
            {
                break 'intake; // the writer failed; its error is reported below
            }
            let sample = Arc::new(sample);
            for (provider, config, endpoint) in &targets {
                for sample_k in 0..plan.samples_per_prompt {
                    let key = UnitKey {
                        model: config.name.clone(),
                        benchmark: benchmark.name.clone(),
                        sample_id: sample.id.clone(),
                        sample_k,
                    };
                    if answered.contains(&key) {
                        // Judge again where a verdict is missing or unscored (a judge that
                        // failed, or one added since): from the stored completion, without
                        // asking the target again.
                        let done = judged.get(&key);
                        let missing: Vec<(Arc<dyn Judge>, Channel)> = judges
                            .iter()
                            .flat_map(|judge| {
                                let own = judge.channels();
                                channels
                                    .iter()
                                    .filter(move |c| own.contains(c))
                                    .map(move |&c| (judge.clone(), c))
                            })
                            .filter(|(judge, channel)| {
                                !done.is_some_and(|d| {
                                    d.contains(&(judge.name().to_owned(), *channel))
                                })
                            })
                            .collect();
                        let stored = if missing.is_empty() {
                            None
                        } else {
                            reader.completion(run_id, &key)?
                        };
                        let Some(completion) = stored else {
                            summary.skipped += 1;
                            progress.unit(UnitOutcome::Skipped);
                            continue;
                        };
                        let spawn_permit = tokio::select! {
                            permit = spawn_permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
                            _ = shutdown.stop.cancelled() => break 'intake,
                        };
                        let sample = sample.clone();
                        let sender = sender.clone();
                        let progress = progress.clone();
                        let completion =
                            judged_view(&completion, decode.as_ref()).unwrap_or(completion);
                        tasks.spawn(async move {
                            let _spawn_permit = spawn_permit;
                            let mut verdicts = Vec::new();
                            for (judge, channel) in missing {
                                verdicts.push(
                                    judge_channel(judge.as_ref(), &sample, &completion, channel)
                                        .await,
                                );
                            }
                            if sender
                                .send(WriterMessage::Verdicts(key, verdicts))
                                .await
                                .is_ok()
                            {
                                progress.unit(UnitOutcome::Rejudged);
                            }
                            UnitOutcome::Rejudged
                        });
                        continue;
                    }
                    let request = ChatRequest {
                        messages: sample.messages.clone(),
                        seed: (plan.samples_per_prompt > 1)
                            .then(|| config.params.seed.unwrap_or(0) + u64::from(sample_k)),
                    };
                    let mut hash = request_hash(provider.as_ref(), &request, sample_k);
                    if let Some(responder) = &responder {
                        // A conversation is cached as a whole, apart from single replies.
                        hash = sha256_hex(
                            format!("{hash}\u{1f}dialogue:{}", responder.name()).as_bytes(),
                        );
                    }
                    if let Some(attack) = &driven {
                        // So is an attack, by everything that changes what it sends.
                        hash = sha256_hex(
                            format!("{hash}\u{1f}attack:{}", attack.identity()).as_bytes(),
                        );
                    }
                    let cached = if plan.use_cache {
                        reader.cached(&hash)?
                    } else {
                        None
                    };
                    let spawn_permit = tokio::select! {
                        permit = spawn_permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
                        _ = shutdown.stop.cancelled() => break 'intake,
                    };
                    while let Some(done) = tasks.try_join_next() {
                        count(&mut summary, done);
                    }
                    let unit = Unit {
                        key,
                        request,
                        hash,
                        cached,
                        sample: sample.clone(),
                        responder: responder.clone(),
                        decode: decode.clone(),
                        driven: driven.clone(),
                        provider: provider.clone(),
                        max_retries: config.max_retries,
                        endpoint: endpoint.clone(),
                        judges: judges.clone(),
                        channels: channels.clone(),
                        backoff: options.backoff,
                        requests: requests.clone(),
                        sender: sender.clone(),
                        progress: progress.clone(),
                        stop: shutdown.stop.clone(),
                        abandon: shutdown.abandon.clone(),
                        in_flight: in_flight.clone(),
                    };
                    tasks.spawn(async move {
                        let _spawn_permit = spawn_permit;
                        unit.run().await
                    });
                }
            }
        }
    }
    let interrupted = shutdown.stop.is_cancelled() || shutdown.abandon.is_cancelled();
    if interrupted && !tasks.is_empty() {
        // Give units waiting for a permit a moment to see the stop and leave, so the count
        // shown is of requests really in flight.
        tokio::task::yield_now().await;
        progress.note(&format!(
            "stopping: waiting for {} requests in flight (Ctrl-C again to abandon them)",
            in_flight.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(done) => count(&mut summary, done),
                None => break,
            },
            _ = shutdown.abandon.cancelled() => {
                tasks.abort_all();
                while let Some(done) = tasks.join_next().await {
                    count(&mut summary, done);
                }
                break;
            }
        }
    }
    drop(sender);
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await
        .expect("joining the writer thread")
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    progress.end();
    summary.requests = requests.load(std::sync::atomic::Ordering::Relaxed);
    summary.interrupted = interrupted || shutdown.abandon.is_cancelled();
    written?;
    if let Some(error) = data_error {
        return Err(EngineError::Data(error));
    }
    Ok(summary)
}

/// A provider's result as stored.
fn unit_result(
    (result, attempts): (Result<Completion, ProviderError>, u32),
) -> (Result<Completion, UnitError>, u32) {
    (
        result.map_err(|error| UnitError {
            kind: error.kind().to_owned(),
            message: error.to_string(),
        }),
        attempts,
    )
}

/// The completion as judges should read it, where it differs from what the model wrote: the
/// translation a driven attack stored, or the decoding of an encoded answer.
fn judged_view(completion: &Completion, decode: Option<&Decoder>) -> Option<Completion> {
    redtrace_attacks::driven::judged_view(completion).or_else(|| {
        let answer = decode?(completion.answer.as_deref()?)?;
        Some(Completion {
            answer: Some(answer),
            ..completion.clone()
        })
    })
}

/// The target as a driven attack reaches it: through the unit's endpoint, retries and
/// cancellation, counting attempts.
struct UnitTarget<'a> {
    unit: &'a Unit,
    attempts: std::sync::atomic::AtomicU32,
    stopped: std::sync::atomic::AtomicBool,
    last_error: std::sync::Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl redtrace_attacks::driven::Target for UnitTarget<'_> {
    async fn send(&self, messages: Vec<redtrace_core::Message>) -> Result<Completion, String> {
        let request = ChatRequest {
            messages,
            seed: self.unit.request.seed,
        };
        let Some((result, attempts)) = self.unit.call(&request).await else {
            self.stopped
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err("the run was stopped".into());
        };
        self.attempts
            .fetch_add(attempts, std::sync::atomic::Ordering::Relaxed);
        result.map_err(|error| {
            *self.last_error.lock().expect("not poisoned") = Some(error.kind().to_owned());
            error.to_string()
        })
    }
}

fn count(summary: &mut RunSummary, done: Result<UnitOutcome, tokio::task::JoinError>) {
    match done {
        Ok(UnitOutcome::Answered) => summary.answered += 1,
        Ok(UnitOutcome::Cached) => summary.cached += 1,
        Ok(UnitOutcome::Skipped) => summary.skipped += 1,
        Ok(UnitOutcome::Rejudged) => summary.rejudged += 1,
        Ok(UnitOutcome::Failed) => summary.failed += 1,
        Ok(UnitOutcome::Unsent) => {}
        // Aborted (abandoned) or panicked: nothing was stored for it; a resume redoes it.
        Err(_) => {}
    }
}

/// One unit of work, owned by its task.
struct Unit {
    responder: Option<Arc<dyn Responder>>,
    decode: Option<Decoder>,
    driven: Option<Arc<dyn DrivenAttack>>,
    key: UnitKey,
    request: ChatRequest,
    hash: String,
    cached: Option<Completion>,
    sample: Arc<Sample>,
    provider: Arc<dyn Provider>,
    max_retries: u32,
    endpoint: Arc<Endpoint>,
    judges: Arc<Vec<Arc<dyn Judge>>>,
    channels: Arc<Vec<Channel>>,
    backoff: Backoff,
    requests: Arc<std::sync::atomic::AtomicU64>,
    sender: tokio::sync::mpsc::Sender<WriterMessage>,
    progress: Arc<dyn Progress>,
    stop: CancellationToken,
    abandon: CancellationToken,
    in_flight: Arc<std::sync::atomic::AtomicU64>,
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<std::sync::atomic::AtomicU64>);

impl InFlight {
    fn new(counter: &Arc<std::sync::atomic::AtomicU64>) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Unit {
    async fn run(mut self) -> UnitOutcome {
        let (outcome, attempts, cached) = match self.cached.take() {
            Some(completion) => (Ok(completion), 0, true),
            None => {
                let called = match (self.driven.clone(), self.responder.clone()) {
                    (Some(attack), _) => self.drive(attack.as_ref()).await,
                    (None, Some(responder)) => {
                        self.converse(responder.as_ref()).await.map(unit_result)
                    }
                    (None, None) => self.call(&self.request).await.map(unit_result),
                };
                let Some((result, attempts)) = called else {
                    return UnitOutcome::Unsent;
                };
                (result, attempts, false)
            }
        };
        let mut verdicts = Vec::new();
        // Judges read a decoded answer where the attack asked for an encoded one.
        let decoded = match &outcome {
            Ok(completion) => judged_view(completion, self.decode.as_ref()),
            Err(_) => None,
        };
        if let Ok(completion) = &outcome {
            let completion = decoded.as_ref().unwrap_or(completion);
            for judge in self.judges.iter() {
                let own = judge.channels();
                for &channel in self.channels.iter().filter(|c| own.contains(c)) {
                    verdicts.push(
                        judge_channel(judge.as_ref(), &self.sample, completion, channel).await,
                    );
                }
            }
        }
        let result = match (&outcome, cached) {
            (Err(_), _) => UnitOutcome::Failed,
            (Ok(_), true) => UnitOutcome::Cached,
            (Ok(_), false) => UnitOutcome::Answered,
        };
        let record = UnitRecord {
            key: self.key,
            request_hash: self.hash,
            outcome,
            attempts,
            cached,
            verdicts,
        };
        if self.sender.send(WriterMessage::Unit(record)).await.is_ok() {
            self.progress.unit(result);
        }
        result
    }

    /// Runs a model-driven attack on the unit's sample; `None` when the run was stopped
    /// during it (nothing is stored; a resume runs it again).
    async fn drive(
        &self,
        attack: &dyn DrivenAttack,
    ) -> Option<(Result<Completion, UnitError>, u32)> {
        let target = UnitTarget {
            unit: self,
            attempts: std::sync::atomic::AtomicU32::new(0),
            stopped: std::sync::atomic::AtomicBool::new(false),
            last_error: std::sync::Mutex::new(None),
        };
        let result = attack.run(&self.sample, &target).await;
        if target.stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let kind = target
            .last_error
            .lock()
            .expect("not poisoned")
            .take()
            .unwrap_or_else(|| "attack".to_owned());
        Some((
            result.map_err(|message| UnitError { kind, message }),
            target.attempts.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }

    /// Sends the request, retrying what is retryable; returns the last result and the number
    /// of attempts, or `None` when the run was stopped before the request could start.
    async fn call(
        &self,
        request: &ChatRequest,
    ) -> Option<(Result<Completion, ProviderError>, u32)> {
        // A unit still waiting for its turn when the run is stopped is not in flight: it
        // leaves without sending anything.
        let _permit = tokio::select! {
            biased;
            _ = self.stop.cancelled() => return None,
            permit = self.endpoint.permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        if self.stop.is_cancelled() {
            return None;
        }
        let _in_flight = InFlight::new(&self.in_flight);
        let mut attempt = 0u32;
        loop {
            if let Some(limiter) = &self.endpoint.limiter {
                limiter.wait().await;
            }
            attempt += 1;
            self.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let error = match self.provider.complete(request).await {
                Ok(completion) => return Some((Ok(completion), attempt)),
                Err(error) => error,
            };
            if !error.is_retryable() || attempt > self.max_retries {
                return Some((Err(error), attempt));
            }
            let delay = error
                .retry_after()
                .unwrap_or_else(|| self.backoff.delay(attempt));
            tracing::debug!(sample = %self.key.sample_id, attempt, ?delay, %error, "retrying");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.abandon.cancelled() => return Some((Err(error), attempt)),
            }
        }
    }

    /// Runs a conversation: the target's turns alternate with the responder's replies until
    /// the responder stops, the target has had its turns, or a turn ends without an answer.
    /// The completion is the exchange: the answer is the transcript (`ASSISTANT:` and
    /// `USER:` turns after the opening request), the trace the target's traces turn by turn,
    /// usage and latency their sums, `raw` the turns as JSON.
    async fn converse(
        &self,
        responder: &dyn Responder,
    ) -> Option<(Result<Completion, ProviderError>, u32)> {
        let mut conversation = self.request.messages.clone();
        let mut attempts = 0;
        let mut transcript = String::new();
        let mut traces = String::new();
        let mut usage = redtrace_core::Usage::default();
        let mut latency = 0;
        let mut turns = Vec::new();
        let mut last: Option<Completion> = None;
        let add = |sum: &mut Option<u64>, value: Option<u64>| {
            if let Some(value) = value {
                *sum = Some(sum.unwrap_or(0) + value);
            }
        };
        for turn in 1..=responder.max_turns() {
            let request = ChatRequest {
                messages: conversation.clone(),
                seed: self.request.seed,
            };
            let (result, tries) = self.call(&request).await?;
            attempts += tries;
            let completion = match result {
                Ok(completion) => completion,
                // A failure after the first turn keeps what was said so far.
                Err(error) if last.is_none() => return Some((Err(error), attempts)),
                Err(_) => break,
            };
            add(&mut usage.prompt_tokens, completion.usage.prompt_tokens);
            add(
                &mut usage.completion_tokens,
                completion.usage.completion_tokens,
            );
            add(
                &mut usage.reasoning_tokens,
                completion.usage.reasoning_tokens,
            );
            latency += completion.latency_ms;
            if !completion.reasoning.text.is_empty() {
                traces.push_str(&format!("[turn {turn}]\n{}\n\n", completion.reasoning.text));
            }
            let Some(answer) = completion.answer.clone() else {
                last = Some(completion);
                break;
            };
            transcript.push_str(&format!("ASSISTANT: {}\n\n", answer.trim()));
            turns.push(serde_json::json!({"role": "assistant", "content": answer, "reasoning": completion.reasoning.text}));
            conversation.push(redtrace_core::Message::assistant(answer));
            last = Some(completion);
            if turn == responder.max_turns() {
                break;
            }
            match responder.reply(&self.sample, &conversation).await {
                Ok(Some(reply)) => {
                    transcript.push_str(&format!("USER: {}\n\n", reply.trim()));
                    turns.push(serde_json::json!({"role": "user", "content": reply}));
                    conversation.push(redtrace_core::Message::user(reply));
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(sample = %self.key.sample_id, %error, "the responder failed; the conversation ends here");
                    turns.push(serde_json::json!({"role": "user", "error": error}));
                    break;
                }
            }
        }
        let last = last.expect("at least one turn ran");
        let reasoning = redtrace_core::Reasoning {
            text: traces.trim_end().to_owned(),
            source: last.reasoning.source,
            state: if traces.is_empty() {
                redtrace_core::TraceState::Absent
            } else {
                last.reasoning.state
            },
        };
        Some((
            Ok(Completion {
                reasoning,
                answer: (!transcript.is_empty()).then(|| transcript.trim_end().to_owned()),
                finish_reason: last.finish_reason,
                usage,
                latency_ms: latency,
                raw: serde_json::Value::Array(turns).to_string(),
            }),
            attempts,
        ))
    }
}
