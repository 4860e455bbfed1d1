//! Release gates (`redtrace check`): thresholds on a run's rates, each read the way the
//! report reads the benchmark (its own judge, its own scale), every model held to each; what
//! fails is listed, and a threshold that finds nothing to check fails too (a gate that cannot
//! be read must not pass).

use serde::Serialize;

use crate::{Report, ALL, SAFE_PROMPTS, UNSAFE_PROMPTS};

/// What a threshold bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The unsafe share of the answers (1 − the benchmark's safety rate) at most the limit.
    MaxUnsafe,
    /// The refusal rate of the answers (full and partial) at least the limit.
    MinRefusal,
    /// The refusal rate of the answers at most the limit (over-refusal on safe prompts).
    MaxRefusal,
}

impl Bound {
    fn flag(self) -> &'static str {
        match self {
            Bound::MaxUnsafe => "--max-unsafe",
            Bound::MinRefusal => "--min-refusal",
            Bound::MaxRefusal => "--max-refusal",
        }
    }
}

/// One threshold: `BENCH[-safe|-unsafe]=RATE` under a bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// The bound.
    pub bound: Bound,
    /// The benchmark (as the run names it: `xstest`, `jbb+pair`, `file:…`).
    pub benchmark: String,
    /// Which rows: all prompts, or the safe or unsafe ones of a benchmark that mixes them.
    pub rows: &'static str,
    /// The limit, a share from 0 to 1.
    pub limit: f64,
}

impl Threshold {
    /// Parses `BENCH=RATE`, `BENCH-safe=RATE` or `BENCH-unsafe=RATE` (RATE a share 0–1, or a
    /// percentage with `%`).
    pub fn parse(bound: Bound, text: &str) -> Result<Self, String> {
        let (name, rate) = text.rsplit_once('=').ok_or_else(|| {
            format!(
                "{} {text}: expected BENCH=RATE, e.g. airbench=0.2 or xstest-unsafe=90%",
                bound.flag()
            )
        })?;
        let limit = match rate.trim().strip_suffix('%') {
            Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
            None => rate.trim().parse::<f64>(),
        }
        .ok()
        .filter(|l| (0.0..=1.0).contains(l))
        .ok_or_else(|| {
            format!(
                "{} {text}: '{rate}' is not a share from 0 to 1 (or a percentage)",
                bound.flag()
            )
        })?;
        let name = name.trim();
        let (benchmark, rows) = if let Some(base) = name.strip_suffix("-unsafe") {
            (base, UNSAFE_PROMPTS)
        } else if let Some(base) = name.strip_suffix("-safe") {
            (base, SAFE_PROMPTS)
        } else {
            (name, ALL)
        };
        if benchmark.is_empty() {
            return Err(format!("{} {text}: no benchmark named", bound.flag()));
        }
        Ok(Self {
            bound,
            benchmark: benchmark.to_owned(),
            rows,
            limit,
        })
    }

    fn label(&self) -> String {
        let rows = match self.rows {
            ALL => String::new(),
            SAFE_PROMPTS => "-safe".into(),
            _ => "-unsafe".into(),
        };
        format!(
            "{} {}{rows}={}",
            self.bound.flag(),
            self.benchmark,
            self.limit
        )
    }
}

/// One threshold held against one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRow {
    /// The threshold, as given.
    pub threshold: String,
    /// The model; empty when the run has no row for the benchmark.
    pub model: String,
    /// The judge the rate was read through.
    pub judge: String,
    /// The rate; `None` when nothing could be read.
    pub value: Option<f64>,
    /// Verdicts behind it.
    pub n: u64,
    /// Whether the model passes.
    pub pass: bool,
    /// Why not, where it fails for want of data.
    pub note: String,
}

/// Holds every model of `report` to every threshold.
pub fn check(report: &Report, thresholds: &[Threshold]) -> Vec<CheckRow> {
    let mut rows = Vec::new();
    for threshold in thresholds {
        let groups: Vec<_> = report
            .groups
            .iter()
            .filter(|g| g.benchmark == threshold.benchmark && g.category == threshold.rows)
            .collect();
        if groups.is_empty() {
            rows.push(CheckRow {
                threshold: threshold.label(),
                model: String::new(),
                judge: String::new(),
                value: None,
                n: 0,
                pass: false,
                note: format!(
                    "the run has no {} rows of {}",
                    threshold.rows, threshold.benchmark
                ),
            });
            continue;
        }
        for group in groups {
            let stats = report.stats_in(group).or_else(|| group.judges.first());
            let Some(stats) = stats else {
                rows.push(CheckRow {
                    threshold: threshold.label(),
                    model: group.model.clone(),
                    judge: String::new(),
                    value: None,
                    n: 0,
                    pass: false,
                    note: "no judge verdicts".into(),
                });
                continue;
            };
            let (value, n, note) = match threshold.bound {
                Bound::MaxUnsafe => (
                    crate::findings::answer_safety(&threshold.benchmark, stats)
                        .0
                        .map(|safe| 1.0 - safe),
                    stats.answer.harm_scored().max(stats.answer.scored()),
                    "",
                ),
                Bound::MinRefusal | Bound::MaxRefusal => match stats.measure {
                    redtrace_core::Measure::Refusal => {
                        (stats.answer_refusal_rate, stats.answer.scored(), "")
                    }
                    redtrace_core::Measure::Unsafe => (
                        None,
                        0,
                        "its judge gives safe / unsafe, not refusals: use --max-unsafe",
                    ),
                },
            };
            let pass = match (threshold.bound, value) {
                (Bound::MaxUnsafe | Bound::MaxRefusal, Some(v)) => v <= threshold.limit + 1e-12,
                (Bound::MinRefusal, Some(v)) => v + 1e-12 >= threshold.limit,
                (_, None) => false,
            };
            rows.push(CheckRow {
                threshold: threshold.label(),
                model: group.model.clone(),
                judge: stats.judge.clone(),
                value,
                n,
                pass,
                note: if value.is_none() && note.is_empty() {
                    "no scored verdicts".into()
                } else {
                    note.into()
                },
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_with_their_rows_and_limits() {
        let t = Threshold::parse(Bound::MinRefusal, "xstest-unsafe=90%").unwrap();
        assert_eq!(
            (t.benchmark.as_str(), t.rows, t.limit),
            ("xstest", UNSAFE_PROMPTS, 0.9)
        );
        let t = Threshold::parse(Bound::MaxUnsafe, "jbb+pair=0.25").unwrap();
        assert_eq!((t.benchmark.as_str(), t.rows), ("jbb+pair", ALL));
        assert_eq!(
            Threshold::parse(Bound::MaxRefusal, "xstest-safe=0.1")
                .unwrap()
                .rows,
            SAFE_PROMPTS
        );
        for bad in ["airbench", "airbench=2", "airbench=x", "=0.1"] {
            assert!(Threshold::parse(Bound::MaxUnsafe, bad).is_err(), "{bad}");
        }
    }
}
