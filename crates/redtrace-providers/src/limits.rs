//! An endpoint's limits, which every call to a model goes through (a target's, a judge's, an
//! attacker's): a [`Gate`] holds the permits (requests in flight at most), the
//! requests-per-minute limiter and the retry policy (backoff with jitter, `Retry-After`
//! honoured), and stops when the run is stopped.

use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    ChatRequest, Completion, ModelConfig, Provider, ProviderError, TextReply, TextRequest,
};

/// Exponential backoff with jitter: attempt n waits a random time in
/// `[base·2ⁿ⁻¹/2, base·2ⁿ⁻¹]`, capped at `max`. The jitter keeps many failed requests from
/// coming back at the same instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay (before jitter).
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// The longest wait a server may ask for with `Retry-After` (seconds or a date): a 429
    /// that asks for an hour, or a date in 2100, waits this long and tries again.
    pub max_retry_after: Duration,
}

/// How long a server's `Retry-After` is honoured at most unless told otherwise.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
            max_retry_after: MAX_RETRY_AFTER,
        }
    }
}

impl Backoff {
    /// The delay after failed attempt `attempt` (from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let full = self.base.saturating_mul(1 << exponent).min(self.max);
        let jitter = rand::thread_rng().gen_range(0.5..=1.0);
        full.mul_f64(jitter)
    }
}

/// Spaces requests evenly so that no more than `n` start in any minute.
pub struct RateLimiter {
    interval: Duration,
    // A plain mutex: it is held only to read and bump one instant, never across an await.
    next: std::sync::Mutex<Option<Instant>>,
    /// The schedule that many processes share, under this key, where there is one.
    shared: Option<(Arc<dyn SharedSchedule>, String)>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("interval", &self.interval)
            .field("shared", &self.shared.as_ref().map(|(_, key)| key))
            .finish()
    }
}

/// Permits for requests in flight that many processes share (the workers of one run on a
/// PostgreSQL store): an endpoint's concurrency holds for all of them together. A permit of a
/// process that dies is free again at once.
pub trait SharedPermits: Send + Sync {
    /// A permit of `key` this process holds and no call uses, if there is one (without
    /// blocking: no round trip).
    fn take_kept(&self, _key: &str) -> Option<u32> {
        None
    }
    /// Takes one of the `limit` permits of `key` if one is free: which one (it may block, on
    /// a round trip to where the permits are kept).
    fn try_take(&self, key: &str, limit: usize) -> Result<Option<u32>, String>;
    /// Gives permit `slot` of `key` back, without blocking (an implementation that must
    /// make a round trip does it elsewhere).
    fn give_back(&self, key: &str, slot: u32);
}

/// A permit of [`SharedPermits`] held by a call, given back when dropped.
struct SharedPermit {
    permits: Arc<dyn SharedPermits>,
    key: String,
    slot: u32,
}

impl Drop for SharedPermit {
    fn drop(&mut self) {
        self.permits.give_back(&self.key, self.slot);
    }
}

/// A requests-per-minute schedule that many processes share (the workers of one run on a
/// PostgreSQL store): each request start takes the next slot of the endpoint's schedule,
/// wherever it runs, so the endpoint sees the limit once, not once per worker.
pub trait SharedSchedule: Send + Sync {
    /// Takes the next slot of `key`'s schedule, `interval` after the one taken before it;
    /// how long from now until that slot comes (zero when it is now).
    fn next_slot(&self, key: &str, interval: Duration) -> Result<Duration, String>;
}

impl RateLimiter {
    /// A limiter for `rpm` requests per minute (at least 1).
    pub fn per_minute(rpm: u32) -> Self {
        Self {
            interval: Duration::from_secs(60) / rpm.max(1),
            next: std::sync::Mutex::new(None),
            shared: None,
        }
    }

    /// Waits for the next free slot (of the shared schedule, where there is one: if it
    /// cannot be reached, of this process's own).
    pub async fn wait(&self) {
        if let Some((schedule, key)) = &self.shared {
            let (schedule, key, interval) = (schedule.clone(), key.clone(), self.interval);
            let delay =
                tokio::task::spawn_blocking(move || schedule.next_slot(&key, interval)).await;
            if let Ok(Ok(delay)) = delay {
                tokio::time::sleep(delay).await;
                return;
            }
        }
        let slot = {
            let mut next = self.next.lock().expect("rate limiter lock");
            let now = Instant::now();
            let slot = next.map_or(now, |at| at.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Cancellation inputs of a run: `stop` ends the intake of new requests and lets those in
/// flight finish; `abandon` also aborts those in flight (and any wait for a retry).
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Stop taking new work; let in-flight requests finish.
    pub stop: CancellationToken,
    /// Abort in-flight requests too.
    pub abandon: CancellationToken,
}

/// Calls in a row that must fail to reach an endpoint (after their retries) before its gate
/// gives up on it.
pub const TRIP_AFTER: u32 = 10;

/// One endpoint's limits, shared by every call to it. It is also a circuit breaker: once
/// [`TRIP_AFTER`] calls in a row have failed to reach the endpoint (refused, dropped or timed
/// out, after their retries), it is taken to be down and later calls fail at once, sending
/// nothing, so a run against a dead endpoint ends in seconds with every unit stored as failed
/// (and resumable), not after thousands of attempts.
pub struct Gate {
    permits: Arc<Semaphore>,
    limiter: Option<RateLimiter>,
    max_retries: u32,
    backoff: Backoff,
    shutdown: Shutdown,
    requests: AtomicU64,
    in_flight: Arc<AtomicU64>,
    failures_in_a_row: std::sync::atomic::AtomicU32,
    endpoint: String,
    /// Permits shared with other processes: the key and how many there are in all.
    shared_permits: Option<(Arc<dyn SharedPermits>, String, usize)>,
}

impl Gate {
    /// The gate of `config`'s endpoint: its `max_concurrency`, `requests_per_minute` and
    /// `max_retries`, waiting `backoff` between attempts, stopped by `shutdown`.
    pub fn new(config: &ModelConfig, backoff: Backoff, shutdown: Shutdown) -> Self {
        Self {
            endpoint: config.endpoint(),
            ..Self::with_limits(
                config.max_concurrency,
                config.requests_per_minute,
                config.max_retries,
                backoff,
                shutdown,
            )
        }
    }

    /// A gate letting `max_concurrency` requests in flight and `requests_per_minute` start in
    /// a minute, retrying `max_retries` times.
    pub fn with_limits(
        max_concurrency: usize,
        requests_per_minute: Option<u32>,
        max_retries: u32,
        backoff: Backoff,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(
                max_concurrency.clamp(1, Semaphore::MAX_PERMITS),
            )),
            limiter: requests_per_minute.map(RateLimiter::per_minute),
            max_retries,
            backoff,
            shutdown,
            requests: AtomicU64::new(0),
            in_flight: Arc::new(AtomicU64::new(0)),
            failures_in_a_row: std::sync::atomic::AtomicU32::new(0),
            endpoint: "the endpoint".into(),
            shared_permits: None,
        }
    }

    /// The gate with its requests-per-minute limit kept in `schedule` under `key`, shared
    /// with every other process that uses the same schedule and key (the other workers of a
    /// run). A gate without such a limit is left as it is.
    pub fn sharing_rate(mut self, schedule: Arc<dyn SharedSchedule>, key: String) -> Self {
        if let Some(limiter) = &mut self.limiter {
            limiter.shared = Some((schedule, key));
        }
        self
    }

    /// The gate with its requests in flight also held to `limit` in all across every process
    /// that shares `permits` under `key` (the other workers of a run); its own
    /// `max_concurrency` still caps this process's share.
    pub fn sharing_permits(
        mut self,
        permits: Arc<dyn SharedPermits>,
        key: String,
        limit: usize,
    ) -> Self {
        self.shared_permits = Some((permits, key, limit.max(1)));
        self
    }

    /// Takes a shared permit, waiting for one to come free; `None` when the run is stopped
    /// first, or (with a note in the log) when the shared permits cannot be reached, in which
    /// case this process's own limit holds alone.
    async fn shared_permit(&self) -> Result<Option<SharedPermit>, ()> {
        let Some((permits, key, limit)) = &self.shared_permits else {
            return Ok(None);
        };
        let mut wait = Duration::from_millis(2);
        loop {
            if let Some(slot) = permits.take_kept(key) {
                return Ok(Some(SharedPermit {
                    permits: permits.clone(),
                    key: key.clone(),
                    slot,
                }));
            }
            let (asked, key_owned, limit) = (permits.clone(), key.clone(), *limit);
            let taken = tokio::task::spawn_blocking(move || asked.try_take(&key_owned, limit))
                .await
                .unwrap_or_else(|_| Err("the permit call panicked".into()));
            match taken {
                Ok(Some(slot)) => {
                    return Ok(Some(SharedPermit {
                        permits: permits.clone(),
                        key: key.clone(),
                        slot,
                    }))
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(
                        "shared permits of {}: {error}; using this worker's own limit",
                        self.endpoint
                    );
                    return Ok(None);
                }
            }
            tokio::select! {
                _ = self.shutdown.stop.cancelled() => return Err(()),
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_millis(50));
        }
    }

    /// Whether the gate has given up on its endpoint.
    pub fn tripped(&self) -> bool {
        self.failures_in_a_row.load(Ordering::Relaxed) >= TRIP_AFTER
    }

    /// Counts a call's end towards the breaker: a reply resets it, a failure to reach the
    /// endpoint adds to it, any other error (the endpoint answered) resets it too.
    fn record<T>(&self, result: &Result<T, ProviderError>) {
        match result {
            Err(ProviderError::Connection { .. } | ProviderError::Timeout { .. }) => {
                self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
            }
            _ => self.failures_in_a_row.store(0, Ordering::Relaxed),
        }
    }

    /// Requests sent through the gate, retries included.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests in flight now (holding a permit).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Sends `request` to `provider`, retrying what is retryable; returns the last result and
    /// the number of attempts, or `None` when the run was stopped before the request could
    /// start (a call still waiting for its turn is not in flight: it leaves without sending).
    pub async fn call(
        &self,
        provider: &dyn Provider,
        request: &ChatRequest,
    ) -> Option<(Result<Completion, ProviderError>, u32)> {
        self.attempts(|| provider.complete(request)).await
    }

    /// [`Gate::call`] for a text completion ([`Provider::complete_text`]).
    pub async fn call_text(
        &self,
        provider: &dyn Provider,
        request: &TextRequest,
    ) -> Option<(Result<TextReply, ProviderError>, u32)> {
        self.attempts(|| provider.complete_text(request)).await
    }

    /// Makes the attempts `send` makes, within the gate's limits.
    async fn attempts<T, F, Fut>(&self, mut send: F) -> Option<(Result<T, ProviderError>, u32)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let _permit = tokio::select! {
            biased;
            _ = self.shutdown.stop.cancelled() => return None,
            permit = self.permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        if self.shutdown.stop.is_cancelled() {
            return None;
        }
        let Ok(_shared) = self.shared_permit().await else {
            return None;
        };
        if self.tripped() {
            return Some((
                Err(ProviderError::Connection {
                    endpoint: self.endpoint.clone(),
                    detail: format!(
                        "not sent: the last {TRIP_AFTER} calls to this endpoint could not reach it \
                         (is it up?); run again to retry"
                    ),
                }),
                0,
            ));
        }
        let _in_flight = InFlight::new(&self.in_flight);
        let mut attempt = 0u32;
        loop {
            if let Some(limiter) = &self.limiter {
                limiter.wait().await;
            }
            attempt += 1;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let error = match send().await {
                Ok(completion) => {
                    let result = Ok(completion);
                    self.record(&result);
                    return Some((result, attempt));
                }
                Err(error) => error,
            };
            if !error.is_retryable() || attempt > self.max_retries {
                let result = Err(error);
                self.record(&result);
                return Some((result, attempt));
            }
            let delay = match error.retry_after() {
                Some(asked) => asked.min(self.backoff.max_retry_after),
                None => self.backoff.delay(attempt),
            };
            tracing::debug!(attempt, ?delay, %error, "retrying");
            // A wait is cut short by a stop: the call then counts as never made (a resume
            // makes it), so that Ctrl-C never waits out a long Retry-After.
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.stop.cancelled() => return None,
                _ = self.shutdown.abandon.cancelled() => return Some((Err(error), attempt)),
            }
        }
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<AtomicU64>);

impl InFlight {
    fn new(counter: &Arc<AtomicU64>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            ..Default::default()
        };
        for _ in 0..50 {
            let first = backoff.delay(1);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let third = backoff.delay(3);
            assert!(
                third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
                "{third:?}"
            );
            assert!(backoff.delay(30) <= Duration::from_secs(1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_spaces_requests() {
        let limiter = RateLimiter::per_minute(120); // one every 500 ms
        let start = Instant::now();
        for _ in 0..5 {
            limiter.wait().await;
        }
        // Slots at 0, 0.5, 1.0, 1.5, 2.0 s; with paused time this is exact.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    /// A provider that answers 429 with a long `Retry-After` once, then succeeds.
    struct SlowDown(std::sync::atomic::AtomicU32);

    #[async_trait::async_trait]
    impl Provider for SlowDown {
        async fn complete(&self, _request: &ChatRequest) -> Result<Completion, ProviderError> {
            if self.0.fetch_add(1, Ordering::Relaxed) == 0 {
                return Err(ProviderError::Http {
                    endpoint: "http://127.0.0.1:1/v1".into(),
                    status: 429,
                    body: "slow down".into(),
                    retry_after: Some(Duration::from_secs(3600)),
                });
            }
            Ok(Completion::answer("ok"))
        }

        fn fingerprint(&self, _request: &ChatRequest) -> String {
            "slow-down".into()
        }
    }

    fn request() -> ChatRequest {
        ChatRequest {
            messages: vec![redtrace_core::Message::user("hi")],
            seed: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_retry_after_is_capped() {
        let gate = Gate::with_limits(1, None, 3, Backoff::default(), Shutdown::default());
        let start = Instant::now();
        let (result, attempts) = gate.call(&SlowDown(0.into()), &request()).await.unwrap();
        assert!(result.is_ok() && attempts == 2);
        assert_eq!(
            start.elapsed(),
            MAX_RETRY_AFTER,
            "an hour asked, a minute waited"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_cuts_a_retry_wait_short() {
        let shutdown = Shutdown::default();
        let gate = Gate::with_limits(1, None, 3, Backoff::default(), shutdown.clone());
        let stop = shutdown.stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            stop.cancel();
        });
        let start = Instant::now();
        assert!(gate.call(&SlowDown(0.into()), &request()).await.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(gate.requests(), 1);
    }

    /// Always refused, as an endpoint that is down.
    struct Down(std::sync::atomic::AtomicU32);

    #[async_trait::async_trait]
    impl Provider for Down {
        async fn complete(&self, _request: &ChatRequest) -> Result<Completion, ProviderError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(ProviderError::Connection {
                endpoint: "http://127.0.0.1:1/v1".into(),
                detail: "connection refused".into(),
            })
        }

        fn fingerprint(&self, _request: &ChatRequest) -> String {
            "down".into()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_endpoint_trips_the_breaker() {
        let gate = Gate::with_limits(4, None, 1, Backoff::default(), Shutdown::default());
        let down = Down(0.into());
        for _ in 0..TRIP_AFTER {
            let (result, attempts) = gate.call(&down, &request()).await.unwrap();
            assert!(result.is_err() && attempts == 2);
        }
        assert!(gate.tripped());
        let (result, attempts) = gate.call(&down, &request()).await.unwrap();
        assert_eq!(attempts, 0);
        assert!(result
            .unwrap_err()
            .to_string()
            .contains("could not reach it"));
        assert_eq!(
            down.0.load(Ordering::Relaxed),
            2 * TRIP_AFTER,
            "nothing more was sent"
        );
        // An endpoint that answers, even with an error, resets the count.
        let flaky = Gate::with_limits(4, None, 0, Backoff::default(), Shutdown::default());
        for _ in 0..TRIP_AFTER - 1 {
            let _ = flaky.call(&down, &request()).await;
        }
        let _ = flaky.call(&SlowDown(1.into()), &request()).await;
        assert!(!flaky.tripped());
    }
}
