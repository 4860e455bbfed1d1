//! The runner: expands a plan (targets × benchmark samples, as each benchmark's solver
//! prepares them, × completions per prompt) into units, one path for every unit (its solver
//! reaches the target through the unit's limits), skips units already answered in the run (resume; judging again only what lacks a
//! scored verdict), serves identical requests from
//! the completion cache, sends the rest with bounded concurrency per endpoint, an optional
//! requests-per-minute limit and retries with backoff that honour `Retry-After`, judges each
//! completion on every channel, and hands every outcome to a writer thread that commits in
//! small batches. Per-unit failures are data, never fatal.
//!
//! On a shared store (PostgreSQL) a run is worked by any number of processes at once: each
//! reads the plan, queues its units ([`redtrace_store::Storage::enqueue_units`]: the same
//! units, queued once), then takes units in batches under a lease that a heartbeat renews,
//! and stores each unit's outcome, which finishes it in the queue. A worker that dies leaves
//! its units to the others once their lease runs out; a unit's completion is stored once
//! whatever happens (the store's unique key). Identical requests are served from the
//! completion cache that all workers share.
//!
//! Cancellation is an input ([`Shutdown`]): `stop` ends the intake of new units and lets
//! in-flight requests finish; `abandon` also aborts those in flight. Either way the store is
//! left consistent and the run can be resumed by running it again.
//!
//! What the calls cost is metered as they are made: the target's (each request priced with its
//! model's price), the attack helpers' and each verdict's judge calls
//! ([`redtrace_judges::metered`]). With a [`Budget`], every target request first reserves the
//! most it can cost; one that would take the spent cost and the reservations past the limit is
//! not sent, and the run stops as if interrupted (resumable), saying so.

mod batch_ledger;
mod budget;

mod judge_cache;

pub use batch_ledger::StoreBatchLedger;
pub use budget::Budget;
pub use judge_cache::StoreReplyCache;
pub use redtrace_core::{BenchmarkRecord, RunSpec};
pub use redtrace_providers::{Backoff, Gate, RateLimiter, Shutdown};

use redtrace_core::solver::{Solved, Solver};
use redtrace_core::{sha256_hex, Channel, Completion, Sample};
use redtrace_judges::{judge_channel, Judge};
use redtrace_providers::{ChatRequest, ModelConfig, Provider};
use redtrace_store::{RunId, Store, StoreError, UnitError, UnitKey, UnitRecord};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// A model to send requests to.
pub struct Target {
    /// Its resolved configuration (name, endpoint, limits).
    pub config: ModelConfig,
    /// The client.
    pub provider: Arc<dyn Provider>,
}

/// A benchmark's samples, read lazily, how each is solved, and the judges of its completions.
pub struct BenchmarkInput {
    /// Its name in the store and reports.
    pub name: String,
    /// The samples, in data order. An `Err` stops the run before anything more is sent.
    pub samples: Box<dyn Iterator<Item = Result<Sample, String>> + Send>,
    /// Judges applied to every completion of this benchmark, on every channel of the plan.
    pub judges: Vec<Arc<dyn Judge>>,
    /// What is sent for each sample and what the judges read ([`redtrace_core::solver`]): the
    /// request as it is, a transform attack, a model-driven attack or a dialogue. It reaches
    /// the target through the unit's limits, retries and cancellation.
    pub solver: Arc<dyn Solver>,
}

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
    /// Judge only what the run has stored (re-judging): a unit without a stored completion
    /// is skipped, and no target is ever asked.
    pub stored_only: bool,
    /// The most the run may spend, USD, counting what it spent before a resume.
    pub budget: Option<Arc<Budget>>,
    /// Only the units of this shard (`--shard`): the others are left to other processes.
    pub shard: Option<redtrace_core::run::Shard>,
    /// On a shared store: queue the run's units and stop, leaving them to workers.
    pub enqueue_only: bool,
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
    /// On a shared store, how long a worker holds the units it took without renewing its
    /// lease (its heartbeat renews it every third of that): how long a dead worker's units
    /// wait before others take them.
    pub lease: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            batch_size: 512,
            batch_wait: Duration::from_millis(25),
            lease: Duration::from_secs(30),
        }
    }
}

/// This process's name as a worker of a shared run: `HOST:PID`.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Units queued at a time while a shared run's plan is read.
const ENQUEUE_CHUNK: usize = 1000;

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
    /// A download (a model from the hub) has `done` of `total` bytes of `file`.
    fn bytes(&self, _file: &str, _done: u64, _total: u64) {}
    /// A unit's calls (target, helpers, judges) used `tokens` and cost `usd` (`None`: some
    /// model has no price).
    fn spend(&self, _tokens: u64, _usd: Option<f64>) {}
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
    /// The run stopped sending because the next request could have passed its budget.
    pub budget_reached: bool,
}

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed; what was committed before stays.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue of a shared run holds units this worker's plan does not: the workers were
    /// started with different data or settings.
    #[error("run {run}'s queue holds unit {unit}, which this worker's plan does not have: start every worker with the same data and settings")]
    Foreign {
        /// The run.
        run: RunId,
        /// The unit, as `MODEL/BENCHMARK/SAMPLE#K`.
        unit: String,
    },
    /// A benchmark row was bad.
    #[error("{0}")]
    Data(String),
}

enum WriterMessage {
    Sample(String, Sample),
    Unit(Box<UnitRecord>),
    Verdicts(UnitKey, Vec<redtrace_core::Verdict>),
}

/// The writer commits a batch once no record has arrived for this long.
const IDLE_GAP: Duration = Duration::from_millis(3);

/// The cache key of a request: what would be sent, and which completion of the prompt it is.
pub fn request_hash(provider: &dyn Provider, request: &ChatRequest, sample_k: u32) -> String {
    sha256_hex(format!("{}\u{1f}{sample_k}", provider.fingerprint(request)).as_bytes())
}

/// A target and its endpoint's gate (permits, rate, retries, cancellation), shared by the
/// units that send to it.
struct Lane {
    provider: Arc<dyn Provider>,
    gate: Arc<Gate>,
    /// What the target's tokens cost.
    price: Option<redtrace_core::price::Price>,
    /// Its requests go through a batch API (its discount applies).
    batch: bool,
    /// The most tokens a request may generate, for the budget's reservation.
    max_output: u64,
    budget: Option<Arc<Budget>>,
    shutdown: Shutdown,
    progress: Arc<dyn Progress>,
}

/// Runs a plan to the end (or until shut down), writing everything to the store at `db`.
pub async fn run(
    plan: Plan,
    db: PathBuf,
    options: EngineOptions,
    progress: Arc<dyn Progress>,
    shutdown: Shutdown,
) -> Result<RunSummary, EngineError> {
    let mut reader = Store::open(&db)?;
    let answered = reader.answered(plan.run)?;
    let judged = reader.judged(plan.run)?;
    let run_id = plan.run;
    // A shared store's run is worked through its queue (judging stored units again stays
    // with the process that asks for it).
    let queued = reader.shared() && !plan.stored_only;
    if plan.enqueue_only && !queued {
        return Err(EngineError::Data(format!(
            "only a PostgreSQL store (--db postgres://...) has a queue to fill; {} is a SQLite file",
            reader.location()
        )));
    }
    let worker = worker_name();
    let mut to_enqueue: Vec<UnitKey> = Vec::new();

    // Targets behind the same endpoint share its gate: its permits and rate limit hold for
    // all of them together.
    let schedule: Option<Arc<StoreSchedule>> = match queued {
        true => Some(StoreSchedule::start(&db)?),
        false => None,
    };
    // The targets' limits as the run was started: those hold across all its workers.
    let started_with = match queued {
        true => reader.resolve_run(&run_id.to_string())?.spec.models,
        false => Vec::new(),
    };
    let mut gates: Vec<(String, Arc<Gate>)> = Vec::new();
    let mut target_gates = Vec::new();
    let mut spawn_capacity = 0usize;
    for target in &plan.targets {
        let endpoint = target.config.endpoint();
        let gate = match gates.iter().find(|(e, _)| *e == endpoint) {
            Some((_, gate)) => gate.clone(),
            None => {
                spawn_capacity += target.config.max_concurrency;
                let mut gate = Gate::new(&target.config, options.backoff, shutdown.clone());
                if let Some(schedule) = &schedule {
                    // Its requests per minute, and its requests in flight as the run was
                    // started, hold across every worker of the run.
                    let key = format!("{run_id}\u{1f}{endpoint}");
                    gate = gate.sharing_rate(schedule.clone(), key.clone());
                    let started = started_with
                        .iter()
                        .find(|m| m.endpoint() == endpoint)
                        .map_or(target.config.max_concurrency, |m| m.max_concurrency);
                    gate = gate.sharing_permits(schedule.clone(), key, started);
                }
                let gate = Arc::new(gate);
                gates.push((endpoint, gate.clone()));
                gate
            }
        };
        target_gates.push(gate);
    }
    // The writer owns its own connection on its own thread: SQLite writes are blocking, and a
    // single writer batches them into few transactions. What a kill -9 can lose is what is
    // not committed: the units in flight, the channel and the batch being gathered. The
    // channel holds as many records as requests can be in flight, and a batch no more, and a
    // unit keeps its place until the writer has taken its record (back-pressure), so the loss
    // stays within a few times the requests in flight however fast completions arrive.
    let capacity = spawn_capacity.max(16);
    let batch_size = options.batch_size.min(capacity).max(1);
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<WriterMessage>(capacity);
    let writer_db = db.clone();
    let writer_name = worker.clone();
    let writer = std::thread::spawn(move || -> Result<(), StoreError> {
        let mut store = Store::open(&writer_db)?;
        store.set_worker(&writer_name);
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
                        WriterMessage::Unit(record) => units.push(*record),
                        WriterMessage::Verdicts(key, verdicts) => rejudged.push((key, verdicts)),
                    }
                }
                if units.len() + samples.len() + rejudged.len() >= batch_size {
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

    let in_flight = || gates.iter().map(|(_, gate)| gate.in_flight()).sum::<u64>();
    // Units under way: sending, waiting for a retry, or holding a reply while it is judged
    // (a kill loses these, and only these, besides the writer's channel and batch).
    let busy = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Tasks waiting for an endpoint permit are bounded too: twice the total concurrency.
    let spawn_permits = Arc::new(Semaphore::new(spawn_capacity.max(1) * 2));
    let channels = Arc::new(plan.channels);
    let mut summary = RunSummary::default();
    let mut tasks: JoinSet<UnitOutcome> = JoinSet::new();
    let mut data_error = None;
    progress.begin(if queued { None } else { plan.total_units });
    // A shared run: this worker takes units while it still reads the plan (its heartbeat
    // keeping the lease on them); a worker that joins a run already queued in full does not
    // queue its units again.
    let mut queue = Queue::new(
        worker.clone(),
        options.lease,
        plan.use_cache,
        &spawn_permits,
    );
    let mut heartbeat = None;
    let mut joined = false;
    let mut offered = 0u64;
    if queued {
        joined = plan
            .total_units
            .is_some_and(|total| reader.queue_state(run_id).is_ok_and(|q| q.total() >= total));
        progress.note(&format!(
            "worker {worker} of run {run_id}: {}",
            if joined {
                "taking the run's units with the other workers"
            } else {
                "queueing the run's units and taking them with the other workers"
            }
        ));
        if !plan.enqueue_only {
            heartbeat = Some(Heartbeat::start(&db, run_id, &worker, options.lease)?);
        }
    }

    let targets: Vec<(ModelConfig, Arc<Lane>)> = plan
        .targets
        .into_iter()
        .zip(target_gates)
        .map(|(target, gate)| {
            let lane = Lane {
                provider: target.provider,
                gate,
                price: target.config.price,
                batch: target.config.batch.is_some(),
                max_output: target
                    .config
                    .params
                    .max_tokens
                    .unwrap_or(budget::UNBOUNDED_OUTPUT),
                budget: plan.budget.clone(),
                shutdown: shutdown.clone(),
                progress: progress.clone(),
            };
            (target.config, Arc::new(lane))
        })
        .collect();

    'intake: for benchmark in plan.benchmarks {
        let judges = Arc::new(benchmark.judges);
        let solver = benchmark.solver;
        for read in benchmark.samples {
            let read = match read {
                Ok(sample) => sample,
                Err(error) => {
                    data_error = Some(error);
                    break 'intake;
                }
            };
            for sample in solver.prepare(read) {
                if shutdown.stop.is_cancelled() {
                    break 'intake;
                }
                // A shared run's samples are stored with their units' outcomes instead (by
                // whichever worker runs each): never a unit stored without its sample.
                if !queued
                    && sender
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
                for (config, lane) in &targets {
                    for sample_k in 0..plan.samples_per_prompt {
                        if plan.shard.is_some_and(|shard| {
                            !shard.holds(&config.name, &benchmark.name, &sample.id, sample_k)
                        }) {
                            continue;
                        }
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
                                Solved::stored(completion, solver.as_ref()).into_judged();
                            let budget = plan.budget.clone();
                            tasks.spawn(async move {
                                let _spawn_permit = spawn_permit;
                                let mut verdicts = Vec::new();
                                let mut spent = redtrace_core::price::Spend::default();
                                for (judge, channel) in missing {
                                    let verdict = judge_metered(
                                        judge.as_ref(),
                                        &sample,
                                        &completion,
                                        channel,
                                        &mut spent,
                                    )
                                    .await;
                                    verdicts.push(verdict);
                                }
                                account(&spent, budget.as_deref(), progress.as_ref());
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
                        if plan.stored_only {
                            summary.skipped += 1;
                            progress.unit(UnitOutcome::Skipped);
                            continue;
                        }
                        let request = ChatRequest {
                            messages: sample.messages.clone(),
                            seed: (plan.samples_per_prompt > 1)
                                .then(|| config.params.seed.unwrap_or(0) + u64::from(sample_k)),
                        };
                        let mut hash = request_hash(lane.provider.as_ref(), &request, sample_k);
                        if let Some(key) = solver.cache_key(&sample) {
                            // An exchange that more than its first request decides (a dialogue,
                            // an attack) is cached as a whole, by everything that decides it.
                            hash = sha256_hex(format!("{hash}\u{1f}{key}").as_bytes());
                        }
                        let mut unit = Unit {
                            key,
                            seed: request.seed,
                            hash,
                            cached: None,
                            sample: sample.clone(),
                            solver: solver.clone(),
                            lane: lane.clone(),
                            judges: judges.clone(),
                            channels: channels.clone(),
                            sender: sender.clone(),
                            progress: progress.clone(),
                            busy: busy.clone(),
                            store_sample: queued,
                        };
                        if queued {
                            if !joined {
                                to_enqueue.push(unit.key.clone());
                            }
                            queue.offer(unit, &mut tasks).await;
                            // The first units go to the queue soon, so that work starts
                            // while the rest is read.
                            let chunk = ENQUEUE_CHUNK.min(64 << queue.rounds.min(4));
                            offered += 1;
                            let flush = to_enqueue.len() >= chunk;
                            if flush {
                                reader.enqueue_units(run_id, &to_enqueue)?;
                                to_enqueue.clear();
                            }
                            // A round of taking after each chunk queued (or read, when the run
                            // was queued already), where there is room.
                            if !plan.enqueue_only
                                && (flush || (joined && offered.is_multiple_of(chunk as u64)))
                                && queue.due()
                            {
                                queue
                                    .round(&mut reader, run_id, &mut tasks, &mut summary)
                                    .await?;
                            }
                            continue;
                        }
                        if plan.use_cache {
                            unit.cached = reader.cached(&unit.hash)?;
                        }
                        let spawn_permit = tokio::select! {
                            permit = spawn_permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
                            _ = shutdown.stop.cancelled() => break 'intake,
                        };
                        while let Some(done) = tasks.try_join_next() {
                            count(&mut summary, done);
                        }
                        tasks.spawn(async move {
                            let _spawn_permit = spawn_permit;
                            unit.run().await
                        });
                    }
                }
            }
        }
    }
    let mut foreign = None;
    if queued && data_error.is_none() {
        reader.enqueue_units(run_id, &to_enqueue)?;
        to_enqueue.clear();
        if !plan.enqueue_only && !shutdown.stop.is_cancelled() {
            foreign = queue
                .drain(&mut reader, run_id, &mut tasks, &mut summary, &shutdown)
                .await?;
        }
    }
    drop(queue);
    let interrupted = shutdown.stop.is_cancelled() || shutdown.abandon.is_cancelled();
    if interrupted && !tasks.is_empty() {
        // Give units waiting for a permit a moment to see the stop and leave, so the count
        // shown is of requests really in flight.
        tokio::task::yield_now().await;
        progress.note(&format!(
            "stopping: waiting for {} units under way ({} requests in flight, the rest being judged; Ctrl-C again to abandon them)",
            busy.load(std::sync::atomic::Ordering::Relaxed),
            in_flight()
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
    summary.requests = gates.iter().map(|(_, gate)| gate.requests()).sum();
    summary.interrupted = interrupted || shutdown.abandon.is_cancelled();
    summary.budget_reached = plan.budget.as_ref().is_some_and(|b| b.reached());
    drop(heartbeat);
    written?;
    if queued {
        // Units this worker took and did not finish (stopped before sending) go back.
        reader.release_units(run_id, &worker)?;
    }
    if let Some(error) = data_error {
        return Err(EngineError::Data(error));
    }
    if let Some(unit) = foreign {
        return Err(EngineError::Foreign { run: run_id, unit });
    }
    Ok(summary)
}

/// This worker's side of a shared run's queue: the units of its plan not yet taken
/// (`waiting`), units it took before reading them (a unit another worker queued ahead of
/// this one's reading), and the taking itself, in batches as there is room for them.
struct Queue {
    worker: String,
    lease: Duration,
    use_cache: bool,
    waiting: HashMap<UnitKey, Unit>,
    taken_early: std::collections::HashSet<UnitKey>,
    permits: Arc<Semaphore>,
    /// Units taken at a time at least, while units are under way: half the room.
    batch: usize,
    /// How often at most to look again when every open unit is someone else's (the first
    /// looks come sooner: the units may be this worker's own, being written).
    poll: Duration,
    /// Rounds of taking made while the plan was read.
    rounds: u32,
}

impl Queue {
    fn new(worker: String, lease: Duration, use_cache: bool, permits: &Arc<Semaphore>) -> Self {
        Self {
            worker,
            lease,
            use_cache,
            waiting: HashMap::new(),
            taken_early: Default::default(),
            batch: (permits.available_permits() / 2).max(1),
            permits: permits.clone(),
            poll: (lease / 8).clamp(Duration::from_millis(10), Duration::from_millis(500)),
            rounds: 0,
        }
    }

    /// A unit of the plan, as it is read: run now if it was taken already, else kept until
    /// it is.
    async fn offer(&mut self, unit: Unit, tasks: &mut JoinSet<UnitOutcome>) {
        if self.taken_early.remove(&unit.key) {
            self.spawn(unit, tasks).await;
        } else {
            self.waiting.insert(unit.key.clone(), unit);
        }
    }

    /// Whether there is room enough for a round of taking.
    fn due(&self) -> bool {
        self.permits.available_permits() >= self.batch
    }

    async fn spawn(&self, unit: Unit, tasks: &mut JoinSet<UnitOutcome>) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        tasks.spawn(async move {
            let _permit = permit;
            unit.run().await
        });
    }

    /// Takes what there is room for and runs what it took (served from the completion cache
    /// where it can be); how many units it took.
    async fn round(
        &mut self,
        reader: &mut Store,
        run: RunId,
        tasks: &mut JoinSet<UnitOutcome>,
        summary: &mut RunSummary,
    ) -> Result<usize, EngineError> {
        while let Some(done) = tasks.try_join_next() {
            count(summary, done);
        }
        self.rounds += 1;
        let room = self.permits.available_permits();
        if room == 0 {
            return Ok(0);
        }
        let taken = reader.take_units(run, &self.worker, room.min(256), self.lease)?;
        let mut cached = if self.use_cache {
            let hashes: Vec<String> = taken
                .iter()
                .filter_map(|key| self.waiting.get(key).map(|unit| unit.hash.clone()))
                .collect();
            reader.cached_many(&hashes)?
        } else {
            HashMap::new()
        };
        let count = taken.len();
        for key in taken {
            match self.waiting.remove(&key) {
                Some(mut unit) => {
                    unit.cached = cached.remove(&unit.hash);
                    self.spawn(unit, tasks).await;
                }
                None => {
                    self.taken_early.insert(key);
                }
            }
        }
        Ok(count)
    }

    /// Once the whole plan is read: takes and runs units until the queue holds nothing open
    /// or the run is stopped. Returns a unit of the queue that the plan does not have, if
    /// one was taken (the workers' plans differ).
    async fn drain(
        &mut self,
        reader: &mut Store,
        run: RunId,
        tasks: &mut JoinSet<UnitOutcome>,
        summary: &mut RunSummary,
        shutdown: &Shutdown,
    ) -> Result<Option<String>, EngineError> {
        let mut idle_looks = 0u32;
        loop {
            if let Some(key) = self.taken_early.iter().next() {
                let unit = format!(
                    "{}/{}/{}#{}",
                    key.model, key.benchmark, key.sample_id, key.sample_k
                );
                shutdown.stop.cancel();
                return Ok(Some(unit));
            }
            if shutdown.stop.is_cancelled() {
                return Ok(None);
            }
            let worth = self.due() || (self.permits.available_permits() > 0 && tasks.is_empty());
            let taken = if worth {
                self.round(reader, run, tasks, summary).await?
            } else {
                0
            };
            if taken > 0 {
                idle_looks = 0;
                continue;
            }
            if worth && tasks.is_empty() && reader.queue_state(run)?.open() == 0 {
                return Ok(None);
            }
            tokio::select! {
                done = tasks.join_next(), if !tasks.is_empty() => {
                    if let Some(done) = done {
                        count(summary, done);
                    }
                }
                // Nothing to take now: units others hold may come free (a lease runs out).
                _ = tokio::time::sleep(
                    (Duration::from_millis(5) * 2u32.pow(idle_looks.min(10))).min(self.poll)
                ), if worth => idle_looks += 1,
                _ = shutdown.stop.cancelled() => return Ok(None),
            }
        }
    }
}

/// The request schedules and permits of a shared store, on a connection of their own (the
/// permits are held by that connection, and go when it does). A permit a call gives back is
/// kept a moment for this worker's next call ([`PERMIT_KEEP`]) before it goes back to the
/// store: a busy worker takes its permits from the store once, not once per request, and
/// still never holds more than its own concurrency.
struct StoreSchedule {
    store: std::sync::Mutex<Store>,
    /// Permits held but not in use, by key, with when they were given back.
    idle: std::sync::Mutex<HashMap<String, Vec<(u32, std::time::Instant)>>>,
}

/// How long a permit given back waits for this worker's next call before the store gets it.
const PERMIT_KEEP: Duration = Duration::from_millis(20);

impl StoreSchedule {
    /// Opens its connection, and starts the thread that gives idle permits back to the
    /// store (it ends with the schedule).
    fn start(db: &std::path::Path) -> Result<Arc<Self>, StoreError> {
        let schedule = Arc::new(Self {
            store: std::sync::Mutex::new(Store::open(db)?),
            idle: std::sync::Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&schedule);
        std::thread::spawn(move || {
            while let Some(schedule) = weak.upgrade() {
                schedule.return_idle(PERMIT_KEEP);
                drop(schedule);
                std::thread::sleep(PERMIT_KEEP / 2);
            }
        });
        Ok(schedule)
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Gives the store back the permits idle for `at_least`.
    fn return_idle(&self, at_least: Duration) {
        let stale: Vec<(String, u32)> = {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let mut stale = Vec::new();
            for (key, slots) in idle.iter_mut() {
                slots.retain(|(slot, since)| {
                    let keep = since.elapsed() < at_least;
                    if !keep {
                        stale.push((key.clone(), *slot));
                    }
                    keep
                });
            }
            stale
        };
        if !stale.is_empty() {
            let store = self.store();
            for (key, slot) in stale {
                let _ = store.give_back_permit(&key, slot);
            }
        }
    }
}

impl redtrace_providers::SharedPermits for StoreSchedule {
    fn take_kept(&self, key: &str) -> Option<u32> {
        self.idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get_mut(key)
            .and_then(Vec::pop)
            .map(|(slot, _)| slot)
    }

    fn try_take(&self, key: &str, limit: usize) -> Result<Option<u32>, String> {
        if let Some(slot) = self.take_kept(key) {
            return Ok(Some(slot));
        }
        self.store()
            .take_permit(key, limit)
            .map_err(|error| error.to_string())
    }

    fn give_back(&self, key: &str, slot: u32) {
        self.idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .entry(key.to_owned())
            .or_default()
            .push((slot, std::time::Instant::now()));
    }
}

impl redtrace_providers::SharedSchedule for StoreSchedule {
    fn next_slot(&self, key: &str, interval: Duration) -> Result<Duration, String> {
        self.store()
            .next_slot(key, interval)
            .map_err(|error| error.to_string())
    }
}

/// Renews the lease on a worker's units every third of it, from a thread of its own with a
/// connection of its own, until dropped (after the worker's last unit is stored).
struct Heartbeat {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(
        db: &std::path::Path,
        run: RunId,
        worker: &str,
        lease: Duration,
    ) -> Result<Self, StoreError> {
        let (stop, beats) = std::sync::mpsc::channel::<()>();
        let store = Store::open(db)?;
        let worker = worker.to_owned();
        let thread = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                beats.recv_timeout(lease / 3)
            {
                // A failed renewal is tried again at the next beat; the lease has two more
                // beats before it runs out.
                let _ = store.renew_lease(run, &worker, lease);
            }
        });
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The target as a solver reaches it: through the unit's lane (its endpoint's permits and
/// rate, retries, cancellation), counting attempts and remembering the kind of the last
/// failure.
struct UnitTarget<'a> {
    unit: &'a Unit,
    attempts: std::sync::atomic::AtomicU32,
    stopped: std::sync::atomic::AtomicBool,
    last_error: std::sync::Mutex<Option<redtrace_core::ErrorKind>>,
    /// What the target's replies cost so far.
    spend: std::sync::Mutex<redtrace_core::price::Spend>,
}

#[async_trait::async_trait]
impl redtrace_core::solver::Target for UnitTarget<'_> {
    async fn send(&self, messages: Vec<redtrace_core::Message>) -> Result<Completion, String> {
        let request = ChatRequest {
            messages,
            seed: self.unit.seed,
        };
        let lane = &self.unit.lane;
        // Under a budget, the most this request can cost is reserved before it is sent.
        let ceiling = match (&lane.budget, &lane.price) {
            (Some(budget), Some(price)) => {
                let ceiling = price.ceiling(
                    budget::prompt_tokens_at_most(&request.messages),
                    lane.max_output,
                    lane.batch,
                );
                if !budget.reserve(ceiling) {
                    if !lane.shutdown.stop.is_cancelled() {
                        lane.shutdown.stop.cancel();
                        lane.progress.note(&budget.stop_note());
                    }
                    self.stopped
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Err("the run's budget was reached".into());
                }
                Some((budget, ceiling))
            }
            _ => None,
        };
        let called = lane.gate.call(lane.provider.as_ref(), &request).await;
        let cost = match &called {
            Some((Ok(completion), _)) => lane
                .price
                .as_ref()
                .and_then(|p| p.cost(&completion.usage, lane.batch)),
            _ => None,
        };
        if let Some((budget, ceiling)) = ceiling {
            budget.settle(ceiling, cost.unwrap_or(0.0));
        }
        let Some((result, attempts)) = called else {
            self.stopped
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err("the run was stopped".into());
        };
        if let Ok(completion) = &result {
            self.spend.lock().expect("not poisoned").add(
                &completion.usage,
                lane.price.as_ref(),
                lane.batch,
            );
        }
        self.attempts
            .fetch_add(attempts, std::sync::atomic::Ordering::Relaxed);
        result.map_err(|error| {
            *self.last_error.lock().expect("not poisoned") = Some(error.kind());
            error.to_string()
        })
    }
}

/// Judges `channel` of `completion`, metering the judge's model calls into `spent` and onto
/// the verdict.
async fn judge_metered(
    judge: &dyn Judge,
    sample: &Sample,
    completion: &Completion,
    channel: Channel,
    spent: &mut redtrace_core::price::Spend,
) -> redtrace_core::Verdict {
    let (mut verdict, spend) =
        redtrace_judges::metered(judge_channel(judge, sample, completion, channel)).await;
    if spend.calls > 0 {
        spent.merge(&spend);
        verdict.spend = Some(spend);
    }
    verdict
}

/// Counts what a unit's helper and judge calls cost against the budget, and shows it.
fn account(spent: &redtrace_core::price::Spend, budget: Option<&Budget>, progress: &dyn Progress) {
    if spent.calls == 0 {
        return;
    }
    if let Some(budget) = budget {
        budget.settle(0.0, spent.cost_usd.unwrap_or(0.0));
    }
    progress.spend(
        spent.prompt_tokens + spent.completion_tokens,
        spent.cost_usd,
    );
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
    key: UnitKey,
    seed: Option<u64>,
    hash: String,
    cached: Option<Completion>,
    sample: Arc<Sample>,
    solver: Arc<dyn Solver>,
    lane: Arc<Lane>,
    judges: Arc<Vec<Arc<dyn Judge>>>,
    channels: Arc<Vec<Channel>>,
    sender: tokio::sync::mpsc::Sender<WriterMessage>,
    progress: Arc<dyn Progress>,
    busy: Arc<std::sync::atomic::AtomicU64>,
    /// Store the sample with the outcome (a shared run's units).
    store_sample: bool,
}

/// Counts a unit as under way while it lives.
struct Busy(Arc<std::sync::atomic::AtomicU64>);

impl Busy {
    fn new(counter: &Arc<std::sync::atomic::AtomicU64>) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Unit {
    async fn run(mut self) -> UnitOutcome {
        let _busy = Busy::new(&self.busy);
        let price = self.lane.price;
        let (outcome, attempts, cached, target, helpers) = match self.cached.take() {
            Some(completion) => (
                Ok(Solved::stored(completion, self.solver.as_ref())),
                0,
                true,
                redtrace_core::price::Spend::default(),
                redtrace_core::price::Spend::default(),
            ),
            None => {
                let Some((result, attempts, target, helpers)) = self.solve().await else {
                    return UnitOutcome::Unsent;
                };
                (result, attempts, false, target, helpers)
            }
        };
        // A unit that made no paid call (served from the cache, or failed) cost nothing: 0
        // where the target has a price, unknown where it has none.
        let cost_usd = if target.calls == 0 {
            price.map(|_| 0.0)
        } else {
            target.cost_usd
        };
        let mut spent = helpers;
        let mut verdicts = Vec::new();
        if let Ok(solved) = &outcome {
            // Judges read the answer the solver says they should (decoded, translated back).
            let completion = solved.judged();
            for judge in self.judges.iter() {
                let own = judge.channels();
                for &channel in self.channels.iter().filter(|c| own.contains(c)) {
                    verdicts.push(
                        judge_metered(
                            judge.as_ref(),
                            &self.sample,
                            &completion,
                            channel,
                            &mut spent,
                        )
                        .await,
                    );
                }
            }
        }
        account(&spent, self.lane.budget.as_deref(), self.progress.as_ref());
        if target.calls > 0 {
            self.progress.spend(
                target.prompt_tokens + target.completion_tokens,
                target.cost_usd,
            );
        }
        let result = match (&outcome, cached) {
            (Err(_), _) => UnitOutcome::Failed,
            (Ok(_), true) => UnitOutcome::Cached,
            (Ok(_), false) => UnitOutcome::Answered,
        };
        let record = UnitRecord {
            key: self.key,
            request_hash: self.hash,
            outcome: outcome.map(Solved::into_stored),
            attempts,
            cached,
            verdicts,
            helper_spend: (helpers.calls > 0).then_some(helpers),
            cost_usd,
        };
        if self.store_sample
            && self
                .sender
                .send(WriterMessage::Sample(
                    record.key.benchmark.clone(),
                    (*self.sample).clone(),
                ))
                .await
                .is_err()
        {
            return result;
        }
        if self
            .sender
            .send(WriterMessage::Unit(Box::new(record)))
            .await
            .is_ok()
        {
            self.progress.unit(result);
        }
        result
    }

    /// Solves the unit's sample, with what the target's and the attack helpers' calls cost;
    /// `None` when the run was stopped during it (nothing is stored; a resume runs it again).
    #[allow(clippy::type_complexity)]
    async fn solve(
        &self,
    ) -> Option<(
        Result<Solved, UnitError>,
        u32,
        redtrace_core::price::Spend,
        redtrace_core::price::Spend,
    )> {
        let target = UnitTarget {
            unit: self,
            attempts: std::sync::atomic::AtomicU32::new(0),
            stopped: std::sync::atomic::AtomicBool::new(false),
            last_error: std::sync::Mutex::new(None),
            spend: std::sync::Mutex::new(redtrace_core::price::Spend::default()),
        };
        let (result, helpers) =
            redtrace_judges::metered(self.solver.solve(&self.sample, &target)).await;
        if target.stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let kind = target
            .last_error
            .lock()
            .expect("not poisoned")
            .take()
            .unwrap_or_else(|| self.solver.failure_kind());
        let spend = *target.spend.lock().expect("not poisoned");
        Some((
            result.map_err(|message| UnitError { kind, message }),
            target.attempts.load(std::sync::atomic::Ordering::Relaxed),
            spend,
            helpers,
        ))
    }
}
