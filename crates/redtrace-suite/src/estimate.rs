//! What a run will cost before anything is sent (`redtrace plan --cost`): per model ×
//! benchmark × attack, the requests, their prompt and output tokens and dollars, the judges'
//! apart, each as a range around a point estimate.
//!
//! Prompt tokens are counted from the prompts themselves: where the store holds an earlier
//! run of the model, with the model's own ratio of tokens to prompt text measured there (the
//! server's tokenizer); otherwise at 4 characters a token, ±25%, said so. Output tokens come
//! from an earlier run's mean (range: half of it to `max_tokens`, or twice it without one),
//! else from `max_tokens` (range: nothing to all of it, point half of it), else there is no
//! upper bound and the estimate says why. Judges that call a model are estimated from the
//! store's earlier verdicts of the same judge where there are some, else at a rubric of 600
//! tokens plus the judged text, 100 tokens out.

use anyhow::Result;
use redtrace_core::price::Price;
use redtrace_datasets::open;
use redtrace_store::Store;
use serde::Serialize;

use crate::settings::RunSettings;

/// Characters of the messages' JSON per token without a measured ratio.
const CHARS_PER_TOKEN: f64 = 4.0;
/// A judge rubric's tokens, without earlier verdicts to measure.
const RUBRIC_TOKENS: f64 = 600.0;
/// A judge reply's tokens, without earlier verdicts to measure.
const JUDGE_REPLY_TOKENS: f64 = 100.0;

/// A low / point / high triple.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Range {
    /// The least it is likely to be.
    pub low: f64,
    /// The estimate.
    pub point: f64,
    /// The most it is likely to be (`f64::INFINITY`: no upper bound).
    pub high: f64,
}

impl Range {
    fn scaled(self, by: f64) -> Self {
        Self {
            low: self.low * by,
            point: self.point * by,
            high: self.high * by,
        }
    }

    fn plus(self, other: Self) -> Self {
        Self {
            low: self.low + other.low,
            point: self.point + other.point,
            high: self.high + other.high,
        }
    }

    /// Dollars for `input` prompt tokens and `output` generated ones at `price`.
    fn dollars(input: Self, output: Self, price: &Price) -> Self {
        let usd = |i: f64, o: f64| (i * price.input + o * price.output) / 1e6;
        Self {
            low: usd(input.low, output.low),
            point: usd(input.point, output.point),
            high: usd(input.high, output.high),
        }
    }
}

/// The estimate of one model × benchmark (× attack).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EstimateRow {
    /// The target.
    pub model: String,
    /// The benchmark, with its attack.
    pub benchmark: String,
    /// Requests to the target (upper bound for a model-driven attack: its budget each).
    pub requests: Range,
    /// The target's prompt tokens.
    pub prompt_tokens: Range,
    /// The target's generated tokens (reasoning included).
    pub output_tokens: Range,
    /// The target's dollars; `None`: no price.
    pub target_usd: Option<Range>,
    /// The judges' dollars; `None`: some judge model has no price.
    pub judge_usd: Option<Range>,
    /// Where the figures come from, said plainly.
    pub basis: Vec<String>,
}

impl EstimateRow {
    /// Target and judges together; `None` when either has no price.
    pub fn total_usd(&self) -> Option<Range> {
        Some(self.target_usd?.plus(self.judge_usd?))
    }
}

/// What an earlier run of the model measured.
struct Observed {
    /// Prompt tokens per character of the messages' JSON.
    tokens_per_char: f64,
    /// Mean generated tokens per completion (of this benchmark where measured, else any).
    output_mean: Option<f64>,
}

fn observed(store: &Store, model: &str, benchmark: &str) -> Result<Option<Observed>> {
    let ratio = store.prompt_ratio(model)?;
    let Some((tokens, chars)) = ratio.filter(|(t, c)| *t > 0 && *c > 0) else {
        return Ok(None);
    };
    let output_mean = store
        .mean_output(model, Some(benchmark))?
        .or(store.mean_output(model, None)?);
    Ok(Some(Observed {
        tokens_per_char: tokens as f64 / chars as f64,
        output_mean,
    }))
}

/// Estimates what `settings` will cost; `store`, where one exists, supplies earlier runs'
/// measurements.
pub fn estimate(settings: &RunSettings, store: Option<&Store>) -> Result<Vec<EstimateRow>> {
    let mut rows = Vec::new();
    for plan in &settings.benchmarks {
        let (path, fields) = plan.source.resolve(settings.data_dir.as_deref())?;
        let samples = open(&path, &fields, plan.selection)?.collect::<Result<Vec<_>, _>>()?;
        for attack in &settings.attacks {
            // The characters of each request's messages as JSON, as the store measures them
            // (SQLite's `length`): the samples as a transform attack rewrites them; as they
            // are for a model-driven attack, whose attacker writes the prompts.
            let transform = (attack.name != redtrace_attacks::NO_ATTACK && !attack.is_driven())
                .then(|| redtrace_attacks::by_name(&attack.name))
                .transpose()?;
            let mut chars: Vec<f64> = Vec::new();
            for sample in &samples {
                let prepared = match &transform {
                    Some(transform) => transform.variants(sample),
                    None => vec![sample.clone()],
                };
                for sample in prepared {
                    chars.push(serde_json::to_string(&sample.messages)?.chars().count() as f64);
                }
            }
            let n = chars.len() as f64 * f64::from(settings.samples_per_prompt);
            let total_chars: f64 =
                chars.iter().sum::<f64>() * f64::from(settings.samples_per_prompt);
            let benchmark = redtrace_attacks::attacked_name(&plan.source.name(), &attack.name);
            for config in &settings.models {
                let mut basis = Vec::new();
                let seen = match store {
                    Some(store) => observed(store, &config.name, &benchmark)?,
                    None => None,
                };
                let prompt_tokens = match &seen {
                    Some(seen) => {
                        basis.push(format!(
                            "prompt tokens at {:.3} a character, as an earlier run of {} measured",
                            seen.tokens_per_char, config.name
                        ));
                        let t = total_chars * seen.tokens_per_char;
                        Range {
                            low: t * 0.95,
                            point: t,
                            high: t * 1.05,
                        }
                    }
                    None => {
                        basis.push(format!(
                            "prompt tokens estimated at {CHARS_PER_TOKEN} characters a token (±25%): no earlier run of {} to measure",
                            config.name
                        ));
                        let t = total_chars / CHARS_PER_TOKEN;
                        Range {
                            low: t * 0.75,
                            point: t,
                            high: t * 1.25,
                        }
                    }
                };
                let max_tokens = config.params.max_tokens.map(|m| m as f64);
                let per_output = match (seen.as_ref().and_then(|s| s.output_mean), max_tokens) {
                    (Some(mean), max) => {
                        basis.push(format!(
                            "output {mean:.0} tokens a request, the mean of an earlier run"
                        ));
                        Range {
                            low: mean * 0.5,
                            point: mean,
                            high: max.unwrap_or(mean * 2.0).max(mean),
                        }
                    }
                    (None, Some(max)) => {
                        basis.push(format!(
                            "output up to max_tokens = {max:.0} a request (point: half of it): no earlier run to measure"
                        ));
                        Range {
                            low: 0.0,
                            point: max / 2.0,
                            high: max,
                        }
                    }
                    (None, None) => {
                        basis.push(
                            "output unbounded: no max_tokens and no earlier run (set max_tokens, or run a pilot with --limit)".into(),
                        );
                        Range {
                            low: 0.0,
                            point: f64::NAN,
                            high: f64::INFINITY,
                        }
                    }
                };
                // A model-driven attack asks the target up to its budget per sample.
                let calls = if attack.is_driven() {
                    basis.push(format!(
                        "{}: 1 to {} target requests a sample",
                        attack.name, attack.budget
                    ));
                    Range {
                        low: 1.0,
                        point: 1.0,
                        high: f64::from(attack.budget.max(1)),
                    }
                } else {
                    Range {
                        low: 1.0,
                        point: 1.0,
                        high: 1.0,
                    }
                };
                let requests = calls.scaled(n);
                let prompt_tokens = Range {
                    low: prompt_tokens.low * calls.low,
                    point: prompt_tokens.point * calls.point,
                    high: prompt_tokens.high * calls.high,
                };
                let output_tokens = Range {
                    low: per_output.low * requests.low,
                    point: per_output.point * requests.point,
                    high: per_output.high * requests.high,
                };
                let target_usd = config
                    .price
                    .as_ref()
                    .map(|price| Range::dollars(prompt_tokens, output_tokens, price));
                if config.price.is_none() {
                    basis.push(format!(
                        "no price for {} ({}): give one with --prices or the suite's price",
                        config.name, config.model
                    ));
                }
                // Each judge that calls a model: once per channel of each completion.
                let mut judge_usd = Some(Range::default());
                for judge in plan.judges.iter().filter(|j| j.calls_model()) {
                    let Some(reference) = &judge.model else {
                        continue;
                    };
                    let judge_config = reference.config();
                    let price = judge_config
                        .price
                        .or_else(|| crate::resolve::price_of(judge_config, &settings.prices));
                    let channels = judge.channels.len() as f64;
                    let measured = match store {
                        Some(store) => store.mean_judge_spend(&judge.name, &config.name)?,
                        None => None,
                    };
                    let (judge_in, judge_out) = match measured {
                        Some((input, output)) => {
                            basis.push(format!(
                                "judge {}: {input:.0} tokens in, {output:.0} out a verdict, as earlier verdicts measured",
                                judge.name
                            ));
                            (
                                Range {
                                    low: input * 0.8,
                                    point: input,
                                    high: input * 1.2,
                                }
                                .scaled(n * channels),
                                Range {
                                    low: output * 0.5,
                                    point: output,
                                    high: output * 2.0,
                                }
                                .scaled(n * channels),
                            )
                        }
                        None => {
                            basis.push(format!(
                                "judge {}: a {RUBRIC_TOKENS:.0}-token rubric with the prompt and the judged text, {JUDGE_REPLY_TOKENS:.0} tokens out a verdict (estimated)",
                                judge.name
                            ));
                            let input = Range {
                                low: RUBRIC_TOKENS * n * channels,
                                point: RUBRIC_TOKENS * n * channels,
                                high: RUBRIC_TOKENS * n * channels,
                            }
                            .plus(prompt_tokens.scaled(channels))
                            .plus(output_tokens);
                            let output = Range {
                                low: JUDGE_REPLY_TOKENS * 0.5,
                                point: JUDGE_REPLY_TOKENS,
                                high: JUDGE_REPLY_TOKENS * 4.0,
                            }
                            .scaled(n * channels);
                            (input, output)
                        }
                    };
                    judge_usd = match (judge_usd, price) {
                        (Some(sum), Some(price)) => {
                            Some(sum.plus(Range::dollars(judge_in, judge_out, &price)))
                        }
                        _ => {
                            basis.push(format!(
                                "no price for judge {}'s model ({})",
                                judge.name, judge_config.model
                            ));
                            None
                        }
                    };
                }
                rows.push(EstimateRow {
                    model: config.name.clone(),
                    benchmark: benchmark.clone(),
                    requests,
                    prompt_tokens,
                    output_tokens,
                    target_usd,
                    judge_usd,
                    basis,
                });
            }
        }
    }
    Ok(rows)
}
