//! A run's budget (`--max-cost`): the spent cost and the reservations of requests in flight,
//! held under one lock so that no two requests can both take the last of it.

use redtrace_core::Message;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The output a request without `max_tokens` is reserved at: a long reasoning trace.
pub const UNBOUNDED_OUTPUT: u64 = 32_768;

/// At most this many prompt tokens for these messages: tokenizers give no fewer than one
/// token per 3 characters of English text on average, and a few per message for the template
/// around it.
pub fn prompt_tokens_at_most(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| m.content.chars().count() as u64 / 3 + 8)
        .sum()
}

/// What a run may spend, USD.
#[derive(Debug)]
pub struct Budget {
    limit: f64,
    state: Mutex<State>,
    reached: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    spent: f64,
    reserved: f64,
}

impl Budget {
    /// A budget of `limit` USD, of which `spent` was spent before (a resumed run's earlier
    /// calls).
    pub fn new(limit: f64, spent: f64) -> Self {
        Self {
            limit,
            state: Mutex::new(State {
                spent,
                reserved: 0.0,
            }),
            reached: AtomicBool::new(false),
        }
    }

    /// Reserves `ceiling` for a request; `false` (and the budget counts as reached) when the
    /// spent cost, the reservations and this one would pass the limit.
    pub fn reserve(&self, ceiling: f64) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        if state.spent + state.reserved + ceiling > self.limit {
            self.reached.store(true, Ordering::Relaxed);
            return false;
        }
        state.reserved += ceiling;
        true
    }

    /// Releases a reservation of `ceiling` and counts `actual` as spent.
    pub fn settle(&self, ceiling: f64, actual: f64) {
        let mut state = self.state.lock().expect("not poisoned");
        state.reserved = (state.reserved - ceiling).max(0.0);
        state.spent += actual;
    }

    /// What has been spent, USD.
    pub fn spent(&self) -> f64 {
        self.state.lock().expect("not poisoned").spent
    }

    /// The limit, USD.
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// Whether a request was held back for the budget.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    /// What the run says when it stops for the budget.
    pub fn stop_note(&self) -> String {
        format!(
            "budget: ${:.4} spent of --max-cost ${:.4}, and the next request could cost more than is left; \
             stopping (requests in flight finish; run again with a higher --max-cost to go on)",
            self.spent(),
            self.limit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_hold_the_limit_across_requests_in_flight() {
        let budget = Budget::new(1.0, 0.25);
        assert!(budget.reserve(0.5));
        assert!(!budget.reserve(0.5), "0.25 + 0.5 + 0.5 > 1");
        assert!(budget.reached());
        budget.settle(0.5, 0.1);
        assert!((budget.spent() - 0.35).abs() < 1e-12);
        assert!(budget.reserve(0.6), "0.35 + 0.6 <= 1");
    }
}
