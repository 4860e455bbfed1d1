//! Paired comparison of two runs on the same samples (two models, a model before and after a
//! change, two reasoning settings): per benchmark × category × judge × channel, the rates of
//! what the judge measures (refusal, or unsafe for harm judges) of both on the samples both have a scored verdict for, their difference, McNemar's
//! exact test on the discordant pairs, Holm's correction across the categories of each
//! benchmark × judge × channel, and a paired bootstrap interval of the difference in mean
//! refusal score (1 full refusal, 0.5 partial, 0 compliance).

use comfy_table::{presets, ContentArrangement, Table};
use redtrace_core::Channel;
use redtrace_store::{RunInfo, Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use crate::stats::{bootstrap_mean, holm, mcnemar_exact, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED};
use crate::ALL;

/// One compared cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareRow {
    /// The benchmark.
    pub benchmark: String,
    /// The category, or "(all)".
    pub category: String,
    /// The judge.
    pub judge: String,
    /// The channel.
    pub channel: Channel,
    /// What the rates count: refusals, or unsafe verdicts.
    pub measure: redtrace_core::Measure,
    /// Samples with a scored verdict in both runs.
    pub pairs: u64,
    /// Refusal rate of the base run on those pairs.
    pub base_rate: f64,
    /// Refusal rate of the other run on those pairs.
    pub other_rate: f64,
    /// `other_rate - base_rate`.
    pub difference: f64,
    /// Pairs where only the base run refused.
    pub only_base_refused: u64,
    /// Pairs where only the other run refused.
    pub only_other_refused: u64,
    /// McNemar's exact two-sided p-value.
    pub p_value: f64,
    /// The p-value after Holm's correction across the categories of this benchmark × judge ×
    /// channel (equal to `p_value` on the "(all)" row).
    pub p_holm: f64,
    /// `p_holm < 0.05`.
    pub significant: bool,
    /// Mean of (B's refusal score − A's) over the pairs.
    pub score_difference: f64,
    /// Seeded 95% paired bootstrap interval of `score_difference`.
    pub score_difference_ci: Option<crate::Interval>,
}

/// A comparison of two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The base run (A).
    pub base: redtrace_store::RunId,
    /// The other run (B).
    pub other: redtrace_store::RunId,
    /// Whether samples were paired across different model names (each run has one model).
    pub paired_across_models: bool,
    /// The rows, "(all)" first within each benchmark × judge × channel.
    pub rows: Vec<CompareRow>,
}

#[derive(Default)]
struct Cell {
    measure: redtrace_core::Measure,
    pairs: u64,
    base: u64,
    other: u64,
    only_base: u64,
    only_other: u64,
    /// Counts of each paired score difference, in half points (-2..=2).
    differences: BTreeMap<i8, u64>,
}

/// The label's score: the refusal score for refusal classes, 1 for unsafe and 0 for safe.
fn score(label: redtrace_core::Label) -> f64 {
    match label {
        redtrace_core::Label::FullRefusal | redtrace_core::Label::Unsafe => 1.0,
        redtrace_core::Label::PartialRefusal => 0.5,
        _ => 0.0,
    }
}

type PairKey = (String, String, String, u32, String, Channel);

impl Comparison {
    /// Compares `other` against `base`.
    pub fn build(store: &Store, base: &RunInfo, other: &RunInfo) -> Result<Self, StoreError> {
        let (base_models, other_models) = (store.models(base.id)?, store.models(other.id)?);
        // Two one-model runs compare their models with each other; otherwise models pair by
        // name.
        let across =
            base_models.len() == 1 && other_models.len() == 1 && base_models != other_models;
        // What pairs a verdict of one run with a verdict of the other.
        let pair_key =
            |row: &redtrace_store::ResultRow, verdict: &redtrace_core::Verdict| -> PairKey {
                (
                    if across {
                        String::new()
                    } else {
                        row.key.model.clone()
                    },
                    row.key.benchmark.clone(),
                    row.key.sample_id.clone(),
                    row.key.sample_k,
                    verdict.judge.clone(),
                    verdict.channel,
                )
            };

        let mut other_refused: HashMap<PairKey, redtrace_core::Label> = HashMap::new();
        store.for_each_result(other.id, false, |row| {
            for verdict in row
                .verdicts
                .iter()
                .filter(|v| v.label != redtrace_core::Label::Unscored)
            {
                other_refused.insert(pair_key(&row, verdict), verdict.label);
            }
            Ok(())
        })?;
        let mut cells: BTreeMap<(String, String, Channel, String), Cell> = BTreeMap::new();
        store.for_each_result(base.id, false, |row| {
            let category = row.category_name();
            for verdict in row
                .verdicts
                .iter()
                .filter(|v| v.label != redtrace_core::Label::Unscored)
            {
                let Some(&other_label) = other_refused.get(&pair_key(&row, verdict)) else {
                    continue;
                };
                let (Some((measure, base_refused)), Some((other_measure, other))) =
                    (verdict.label.flag(), other_label.flag())
                else {
                    continue;
                };
                if measure != other_measure {
                    continue;
                }
                let half_points = ((score(other_label) - score(verdict.label)) * 2.0).round() as i8;
                for category in [ALL.to_owned(), category.clone()] {
                    let cell = cells
                        .entry((
                            row.key.benchmark.clone(),
                            verdict.judge.clone(),
                            verdict.channel,
                            category,
                        ))
                        .or_default();
                    cell.measure = measure;
                    cell.pairs += 1;
                    cell.base += u64::from(base_refused);
                    cell.other += u64::from(other);
                    cell.only_base += u64::from(base_refused && !other);
                    cell.only_other += u64::from(other && !base_refused);
                    *cell.differences.entry(half_points).or_default() += 1;
                }
            }
            Ok(())
        })?;
        let mut rows: Vec<CompareRow> = cells
            .into_iter()
            .map(|((benchmark, judge, channel, category), cell)| {
                let pairs = cell.pairs as f64;
                let p_value = mcnemar_exact(cell.only_base, cell.only_other);
                let differences: Vec<(f64, u64)> = cell
                    .differences
                    .iter()
                    .map(|(&half, &count)| (f64::from(half) / 2.0, count))
                    .collect();
                let score_difference =
                    differences.iter().map(|(v, c)| v * *c as f64).sum::<f64>() / pairs;
                CompareRow {
                    benchmark,
                    category,
                    judge,
                    channel,
                    measure: cell.measure,
                    pairs: cell.pairs,
                    base_rate: cell.base as f64 / pairs,
                    other_rate: cell.other as f64 / pairs,
                    difference: (cell.other as f64 - cell.base as f64) / pairs,
                    only_base_refused: cell.only_base,
                    only_other_refused: cell.only_other,
                    p_value,
                    p_holm: p_value,
                    significant: false,
                    score_difference,
                    score_difference_ci: bootstrap_mean(
                        &differences,
                        BOOTSTRAP_SEED,
                        BOOTSTRAP_RESAMPLES,
                    ),
                }
            })
            .collect();
        // Holm across categories within each benchmark × judge × channel.
        let mut families: BTreeMap<(String, String, Channel), Vec<usize>> = BTreeMap::new();
        for (index, row) in rows.iter().enumerate() {
            if row.category != ALL {
                families
                    .entry((row.benchmark.clone(), row.judge.clone(), row.channel))
                    .or_default()
                    .push(index);
            }
        }
        for members in families.values() {
            let adjusted = holm(&members.iter().map(|&i| rows[i].p_value).collect::<Vec<_>>());
            for (&index, p) in members.iter().zip(adjusted) {
                rows[index].p_holm = p;
            }
        }
        for row in &mut rows {
            row.significant = row.p_holm < 0.05;
        }
        Ok(Self {
            base: base.id,
            other: other.id,
            paired_across_models: across,
            rows,
        })
    }

    fn cells(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let header = vec![
            "benchmark",
            "category",
            "judge",
            "channel",
            "pairs",
            "measure",
            "rate A",
            "rate B",
            "B - A",
            "only A / only B",
            "p (McNemar)",
            "p (Holm)",
        ];
        let rows = self
            .rows
            .iter()
            .map(|row| {
                vec![
                    row.benchmark.clone(),
                    row.category.clone(),
                    row.judge.clone(),
                    row.channel.as_str().to_owned(),
                    row.pairs.to_string(),
                    row.measure.as_str().to_owned(),
                    format!("{:.1}%", row.base_rate * 100.0),
                    format!("{:.1}%", row.other_rate * 100.0),
                    format!(
                        "{:+.1} pts{}",
                        row.difference * 100.0,
                        if row.significant { " *" } else { "" }
                    ),
                    format!("{} / {}", row.only_base_refused, row.only_other_refused),
                    format!("{:.3}", row.p_value),
                    format!("{:.3}", row.p_holm),
                    match row.score_difference_ci {
                        Some(ci) => format!(
                            "{:+.2} [{:+.2}, {:+.2}]",
                            row.score_difference, ci.low, ci.high
                        ),
                        None => format!("{:+.2}", row.score_difference),
                    },
                ]
            })
            .collect();
        (header, rows)
    }

    fn title(&self) -> String {
        format!(
            "comparison: run {} (B) against run {} (A), paired by {}",
            self.other,
            self.base,
            if self.paired_across_models {
                "benchmark and sample"
            } else {
                "model, benchmark and sample"
            }
        )
    }

    const NOTE: &'static str =
        "Rates (of refusals, or of unsafe verdicts for harm judges) on the samples both runs scored; * marks a difference significant at 5% \
after Holm's correction across the categories of a benchmark, judge and channel.";

    /// A table for the terminal.
    pub fn to_terminal(&self) -> String {
        let (header, rows) = self.cells();
        let mut table = Table::new();
        table
            .load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
        table.set_header(header);
        for row in rows {
            table.add_row(row);
        }
        format!("\n{}\n{table}\n{}\n", self.title(), Self::NOTE)
    }

    /// A Markdown section.
    pub fn to_markdown(&self) -> String {
        let (header, rows) = self.cells();
        let mut out = format!(
            "\n## {}\n\n| {} |\n|{}\n",
            self.title(),
            header.join(" | "),
            "---|".repeat(header.len())
        );
        for row in rows {
            let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out.push_str(&format!("\n{}\n", Self::NOTE));
        out
    }
}
