//! Retry backoff and the requests-per-minute limiter.

use rand::Rng;
use std::time::Duration;
use tokio::time::Instant;

/// Exponential backoff with jitter: attempt n waits a random time in
/// `[base·2ⁿ⁻¹/2, base·2ⁿ⁻¹]`, capped at `max`. The jitter keeps many failed requests from
/// coming back at the same instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay (before jitter).
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
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
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    // A plain mutex: it is held only to read and bump one instant, never across an await.
    next: std::sync::Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter for `rpm` requests per minute (at least 1).
    pub fn per_minute(rpm: u32) -> Self {
        Self {
            interval: Duration::from_secs(60) / rpm.max(1),
            next: std::sync::Mutex::new(None),
        }
    }

    /// Waits for the next free slot.
    pub async fn wait(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
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
}
