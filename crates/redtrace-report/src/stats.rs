//! Statistics for reports: Wilson score intervals for proportions, seeded bootstrap intervals
//! for means, McNemar's exact test for paired proportions, Holm's correction across a family
//! of tests, and sample-size planning.

use serde::Serialize;

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// A 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// The Wilson score interval for `successes` out of `n` (95%); `None` when `n` is 0. Unlike
/// the normal approximation it stays inside [0, 1] and behaves at 0% and 100%.
pub fn wilson(successes: u64, n: u64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let n = n as f64;
    let p = successes as f64 / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    Some(Interval {
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    })
}

/// Resamples drawn by [`bootstrap_mean`] unless told otherwise.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// The fixed seed of report intervals: the same data always gives the same interval.
pub const BOOTSTRAP_SEED: u64 = 20250212;

/// A 95% percentile bootstrap interval of the mean of values given as `(value, count)` pairs,
/// seeded and so reproducible; `None` when there are no values. Resampling n items from a few
/// distinct values is a multinomial draw, done as a chain of binomials, so it costs the same
/// for ten values or ten million.
pub fn bootstrap_mean(values: &[(f64, u64)], seed: u64, resamples: usize) -> Option<Interval> {
    use rand::SeedableRng;
    use rand_distr::{Binomial, Distribution};
    let n: u64 = values.iter().map(|(_, count)| count).sum();
    if n == 0 || resamples == 0 {
        return None;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut means = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let (mut left, mut mass, mut sum) = (n, n as f64, 0.0);
        for (i, &(value, count)) in values.iter().enumerate() {
            if left == 0 {
                break;
            }
            let drawn = if i + 1 == values.len() {
                left
            } else {
                let p = (count as f64 / mass).clamp(0.0, 1.0);
                Binomial::new(left, p)
                    .map(|b| b.sample(&mut rng))
                    .unwrap_or(0)
            };
            sum += value * drawn as f64;
            left -= drawn;
            mass -= count as f64;
        }
        means.push(sum / n as f64);
    }
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Some(Interval {
        low: at(0.025),
        high: at(0.975),
    })
}

/// Natural log of n choose k.
fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

fn ln_factorial(n: u64) -> f64 {
    // Exact sums for small n; Stirling's series (error below 1e-10 here) for large n.
    if n < 256 {
        (2..=n).map(|i| (i as f64).ln()).sum()
    } else {
        let x = n as f64;
        x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x)
            - 1.0 / (360.0 * x.powi(3))
    }
}

/// McNemar's exact test: the two-sided p-value that `b` and `c`, the discordant pair counts
/// (first yes / second no, and the reverse), come from equal rates.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let ln_half_n = n as f64 * 0.5f64.ln();
    let tail: f64 = (0..=k).map(|i| (ln_choose(n, i) + ln_half_n).exp()).sum();
    (2.0 * tail).min(1.0)
}

/// Holm's step-down adjustment of p-values (same order as given).
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &index) in order.iter().enumerate() {
        let value = ((m - rank) as f64 * p_values[index]).min(1.0);
        running = running.max(value);
        adjusted[index] = running;
    }
    adjusted
}

/// Samples needed so that a 95% interval around a rate near `rate` is at most `width` wide
/// (full width, e.g. 0.10 for ±5 points).
pub fn samples_for_width(rate: f64, width: f64) -> u64 {
    let half = width / 2.0;
    let rate = rate.clamp(0.0, 1.0);
    // The worst case p(1-p) near 0 or 1 is floored so that a pilot of 0% still plans a sample.
    let variance = (rate * (1.0 - rate)).max(0.01);
    (Z95 * Z95 * variance / (half * half)).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-4
    }

    #[test]
    fn wilson_matches_known_values() {
        // 8 of 10: [0.490, 0.943] (Wilson, 95%).
        let interval = wilson(8, 10).unwrap();
        assert!(
            close(interval.low, 0.4902) && close(interval.high, 0.9433),
            "{interval:?}"
        );
        let zero = wilson(0, 20).unwrap();
        assert_eq!(zero.low, 0.0);
        assert!(close(zero.high, 0.1611), "{zero:?}");
        assert!(wilson(0, 0).is_none());
    }

    #[test]
    fn mcnemar_matches_the_binomial_tail() {
        // b=1, c=9: 2 * P(X<=1 | n=10, p=.5) = 2 * 11/1024.
        assert!(close(mcnemar_exact(1, 9), 22.0 / 1024.0));
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Large counts stay finite and symmetric.
        let p = mcnemar_exact(400, 500);
        assert!(p > 0.0 && p < 0.01 && close(p, mcnemar_exact(500, 400)));
    }

    #[test]
    fn holm_steps_down() {
        let adjusted = holm(&[0.01, 0.04, 0.03, 0.5]);
        assert!(close(adjusted[0], 0.04));
        assert!(close(adjusted[2], 0.09));
        assert!(close(adjusted[1], 0.09), "monotone: {adjusted:?}");
        assert!(close(adjusted[3], 0.5));
    }

    #[test]
    fn bootstrap_is_seeded_and_covers_the_mean() {
        let values = [(0.0, 60), (0.5, 10), (1.0, 30)];
        let a = bootstrap_mean(&values, 7, 2000).unwrap();
        assert_eq!(
            Some(a),
            bootstrap_mean(&values, 7, 2000),
            "same seed, same interval"
        );
        let mean = (0.5 * 10.0 + 30.0) / 100.0;
        assert!(a.low < mean && mean < a.high, "{a:?}");
        // Close to the normal approximation for a mean of 100 values: sd/sqrt(n) ~ 0.044.
        assert!((a.high - a.low) > 0.12 && (a.high - a.low) < 0.22, "{a:?}");
        let constant = bootstrap_mean(&[(1.0, 50)], 1, 500).unwrap();
        assert_eq!((constant.low, constant.high), (1.0, 1.0));
        assert!(bootstrap_mean(&[], 1, 100).is_none());
    }

    #[test]
    fn plans_sample_sizes() {
        // p=0.5, ±5 points: 385.
        assert_eq!(samples_for_width(0.5, 0.10), 385);
        assert!(samples_for_width(0.1, 0.10) < 385);
        assert!(samples_for_width(0.0, 0.10) > 0);
    }
}
