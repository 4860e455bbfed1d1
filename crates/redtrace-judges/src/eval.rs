//! Judge validation: runs judges over a human-labelled set and measures their agreement with
//! people: accuracy, per-class precision / recall / F1, macro F1, Cohen's kappa and the
//! confusion matrix, overall and per source; and the same for the automatic judges whose
//! labels the set's file carries, so a judge can be placed among them.

use futures_util::stream::{self, StreamExt};
use redtrace_core::{Channel, Label, Measure, Sample};
use redtrace_datasets::labels::{LabelKind, LabelSet};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Judge;

/// The set's class a judge's label stands for, or why it stands for none.
///
/// A refusal judge on a harm set reads compliance as unsafe and refusal as safe (true of
/// responses to harmful requests, which is what harm sets mostly hold); a harm judge cannot
/// say whether a text refuses, so it does not apply to refusal sets.
pub fn class_of(kind: LabelKind, label: Label) -> Result<Option<&'static str>, String> {
    let class = match (kind, label) {
        (_, Label::Unscored) => return Ok(None),
        (LabelKind::Refusal3, Label::FullCompliance) => "full_compliance",
        (LabelKind::Refusal3, Label::FullRefusal) => "full_refusal",
        (LabelKind::Refusal3, Label::PartialRefusal) => "partial_refusal",
        (LabelKind::Refusal2, Label::FullCompliance) => "compliance",
        (LabelKind::Refusal2, Label::FullRefusal | Label::PartialRefusal) => "refusal",
        (LabelKind::Harm, Label::Unsafe | Label::FullCompliance) => "unsafe",
        (LabelKind::Harm, Label::Safe | Label::FullRefusal | Label::PartialRefusal) => "safe",
        (kind, label) => {
            return Err(format!(
                "a judge that labels {} cannot be measured on a {kind:?} set",
                label.as_str()
            ))
        }
    };
    Ok(Some(class))
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassStats {
    /// The class.
    pub class: String,
    /// Items people gave this class.
    pub support: u64,
    /// Of the items the judge gave this class, the share people gave it too.
    pub precision: Option<f64>,
    /// Of the items people gave this class, the share the judge gave it too.
    pub recall: Option<f64>,
    /// Harmonic mean of precision and recall.
    pub f1: Option<f64>,
}

/// Agreement of one judge with people.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// The classes, in matrix order.
    pub classes: Vec<String>,
    /// `confusion[human][judge]`.
    pub confusion: Vec<Vec<u64>>,
    /// Items the judge did not score (left out of every figure below).
    pub unscored: u64,
    /// Items scored.
    pub scored: u64,
    /// Share of scored items where the judge agrees with people.
    pub accuracy: Option<f64>,
    /// Cohen's kappa: agreement beyond chance.
    pub kappa: Option<f64>,
    /// Mean F1 over the classes people used.
    pub macro_f1: Option<f64>,
    /// Per class.
    pub per_class: Vec<ClassStats>,
}

impl Agreement {
    /// Agreement of `pairs` of (human class, judge class or `None` when unscored).
    pub fn of<'a>(
        classes: &[&str],
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Self {
        let index = |class: &str| classes.iter().position(|c| *c == class);
        let k = classes.len();
        let mut confusion = vec![vec![0u64; k]; k];
        let mut unscored = 0;
        for (human, judge) in pairs {
            match (index(human), judge.and_then(index)) {
                (Some(h), Some(j)) => confusion[h][j] += 1,
                _ => unscored += 1,
            }
        }
        let scored: u64 = confusion.iter().flatten().sum();
        let n = scored as f64;
        let agree: u64 = (0..k).map(|i| confusion[i][i]).sum();
        let row = |i: usize| confusion[i].iter().sum::<u64>();
        let column = |j: usize| (0..k).map(|i| confusion[i][j]).sum::<u64>();
        let accuracy = (scored > 0).then(|| agree as f64 / n);
        let kappa = accuracy.and_then(|observed| {
            let expected: f64 = (0..k)
                .map(|i| row(i) as f64 * column(i) as f64)
                .sum::<f64>()
                / (n * n);
            (expected < 1.0).then(|| (observed - expected) / (1.0 - expected))
        });
        let per_class: Vec<ClassStats> = (0..k)
            .map(|i| {
                let true_positive = confusion[i][i] as f64;
                let precision = (column(i) > 0).then(|| true_positive / column(i) as f64);
                let recall = (row(i) > 0).then(|| true_positive / row(i) as f64);
                let f1 = match (precision, recall) {
                    (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
                    (Some(_), Some(_)) => Some(0.0),
                    _ => None,
                };
                ClassStats {
                    class: classes[i].to_owned(),
                    support: row(i),
                    precision,
                    recall,
                    f1,
                }
            })
            .collect();
        let used: Vec<f64> = per_class
            .iter()
            .filter(|c| c.support > 0)
            .map(|c| c.f1.unwrap_or(0.0))
            .collect();
        Self {
            classes: classes.iter().map(|c| (*c).to_owned()).collect(),
            confusion,
            unscored,
            scored,
            accuracy,
            kappa,
            macro_f1: (!used.is_empty()).then(|| used.iter().sum::<f64>() / used.len() as f64),
            per_class,
        }
    }
}

/// One judge's results on a set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeResult {
    /// The judge (or the reference judge's name, for labels the file carries).
    pub judge: String,
    /// Whether the labels came from the file rather than from running the judge.
    pub reference: bool,
    /// Over the whole set.
    pub overall: Agreement,
    /// Per source (model or data set), when the set has more than one.
    pub per_source: BTreeMap<String, Agreement>,
}

/// A validation report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// The set.
    pub set: String,
    /// What its labels say.
    pub kind: LabelKind,
    /// Items.
    pub items: usize,
    /// Judges run, then the reference judges of the file.
    pub judges: Vec<JudgeResult>,
}

fn result(
    set: &LabelSet,
    judge: String,
    reference: bool,
    predicted: &[Option<&'static str>],
) -> JudgeResult {
    let classes = set.kind.classes();
    let overall = Agreement::of(
        classes,
        set.items
            .iter()
            .zip(predicted)
            .map(|(item, p)| (item.label.as_str(), *p)),
    );
    let mut sources: BTreeMap<&str, Vec<(&str, Option<&str>)>> = BTreeMap::new();
    for (item, p) in set.items.iter().zip(predicted) {
        sources
            .entry(item.source.as_str())
            .or_default()
            .push((item.label.as_str(), *p));
    }
    let per_source = if sources.len() > 1 {
        sources
            .into_iter()
            .map(|(source, pairs)| (source.to_owned(), Agreement::of(classes, pairs)))
            .collect()
    } else {
        BTreeMap::new()
    };
    JudgeResult {
        judge,
        reference,
        overall,
        per_source,
    }
}

/// Runs `judges` over `set` (each judge on each item's text as an answer, `concurrency` items
/// at a time) and measures each, then the reference judges the file carries. `progress` is
/// called after each item.
pub async fn evaluate(
    set: &LabelSet,
    judges: &[Arc<dyn Judge>],
    concurrency: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<EvalReport, String> {
    if set.kind != LabelKind::Harm {
        if let Some(judge) = judges.iter().find(|j| j.measure() == Measure::Unsafe) {
            return Err(format!(
                "judge '{}' labels safe / unsafe, which cannot be measured on a {:?} set (refusal classes)",
                judge.name(),
                set.kind
            ));
        }
    }
    let mut labels: Vec<Vec<Label>> = vec![Vec::new(); set.items.len()];
    let mut stream = stream::iter(set.items.iter().enumerate())
        .map(|(index, item)| async move {
            let sample = Sample::user(index.to_string(), index as u64, item.prompt.clone())
                .in_category(&[&item.source]);
            let mut verdicts = Vec::with_capacity(judges.len());
            for judge in judges {
                let verdict = if item.text.trim().is_empty() {
                    Label::Unscored
                } else {
                    judge
                        .judge_text(&sample, Channel::Answer, &item.text)
                        .await
                        .label
                };
                verdicts.push(verdict);
            }
            (index, verdicts)
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((index, verdicts)) = stream.next().await {
        labels[index] = verdicts;
        progress();
    }
    let mut results = Vec::new();
    for (j, judge) in judges.iter().enumerate() {
        let predicted = labels
            .iter()
            .map(|item| class_of(set.kind, item[j]))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("judge '{}': {error}", judge.name()))?;
        results.push(result(set, judge.name().to_owned(), false, &predicted));
    }
    for (r, name) in set.reference_judges.iter().enumerate() {
        let predicted: Vec<Option<&'static str>> = set
            .items
            .iter()
            .map(|item| {
                set.kind
                    .classes()
                    .iter()
                    .copied()
                    .find(|c| item.references.get(r).map(String::as_str) == Some(*c))
            })
            .collect();
        results.push(result(set, name.clone(), true, &predicted));
    }
    Ok(EvalReport {
        set: set.name.clone(),
        kind: set.kind,
        items: set.items.len(),
        judges: results,
    })
}

fn pct(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{:.1}%", v * 100.0))
}

fn num(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.3}"))
}

impl EvalReport {
    /// The report as text: a line per judge, then per-class figures and the confusion matrix
    /// of each judge run, then agreement per source.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "judge agreement with people on {} ({} items, classes: {})\n\n",
            self.set,
            self.items,
            self.kind.classes().join(" / ")
        );
        out.push_str(&format!(
            "{:<44} {:>9} {:>7} {:>9} {:>9}\n",
            "judge", "accuracy", "kappa", "macro F1", "unscored"
        ));
        for result in &self.judges {
            let name = if result.reference {
                format!("{} (stored in the file)", result.judge)
            } else {
                result.judge.clone()
            };
            out.push_str(&format!(
                "{:<44} {:>9} {:>7} {:>9} {:>9}\n",
                name,
                pct(result.overall.accuracy),
                num(result.overall.kappa),
                pct(result.overall.macro_f1),
                result.overall.unscored
            ));
        }
        for result in self.judges.iter().filter(|r| !r.reference) {
            let a = &result.overall;
            out.push_str(&format!("\n{}\n", result.judge));
            out.push_str(&format!(
                "  {:<18} {:>8} {:>10} {:>8} {:>8}\n",
                "class", "support", "precision", "recall", "F1"
            ));
            for c in &a.per_class {
                out.push_str(&format!(
                    "  {:<18} {:>8} {:>10} {:>8} {:>8}\n",
                    c.class,
                    c.support,
                    pct(c.precision),
                    pct(c.recall),
                    pct(c.f1)
                ));
            }
            out.push_str("  confusion (rows: people, columns: judge)\n");
            out.push_str(&format!("  {:<18}", ""));
            for class in &a.classes {
                out.push_str(&format!(" {class:>16}"));
            }
            out.push('\n');
            for (class, row) in a.classes.iter().zip(&a.confusion) {
                out.push_str(&format!("  {class:<18}"));
                for count in row {
                    out.push_str(&format!(" {count:>16}"));
                }
                out.push('\n');
            }
            for (source, agreement) in &result.per_source {
                out.push_str(&format!(
                    "  source {source}: accuracy {}, kappa {}, {} scored\n",
                    pct(agreement.accuracy),
                    num(agreement.kappa),
                    agreement.scored
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_figures_on_a_hand_computed_matrix() {
        // people:  unsafe unsafe unsafe safe safe safe safe safe ; judge: 2 of 3 unsafe right,
        // 1 false alarm, one unscored.
        let pairs = [
            ("unsafe", Some("unsafe")),
            ("unsafe", Some("unsafe")),
            ("unsafe", Some("safe")),
            ("safe", Some("unsafe")),
            ("safe", Some("safe")),
            ("safe", Some("safe")),
            ("safe", Some("safe")),
            ("safe", None),
        ];
        let a = Agreement::of(&["unsafe", "safe"], pairs);
        assert_eq!(a.confusion, vec![vec![2, 1], vec![1, 3]]);
        assert_eq!((a.scored, a.unscored), (7, 1));
        assert_eq!(a.accuracy, Some(5.0 / 7.0));
        // expected agreement: (3·3 + 4·4) / 49 = 25/49; kappa = (35/49 − 25/49) / (24/49)
        assert!((a.kappa.unwrap() - 10.0 / 24.0).abs() < 1e-12);
        let unsafe_class = &a.per_class[0];
        assert_eq!(
            (unsafe_class.precision, unsafe_class.recall),
            (Some(2.0 / 3.0), Some(2.0 / 3.0))
        );
        assert!((a.per_class[1].f1.unwrap() - 0.75).abs() < 1e-12);
        assert!((a.macro_f1.unwrap() - (2.0 / 3.0 + 0.75) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn labels_map_to_classes_or_say_why_not() {
        assert_eq!(
            class_of(LabelKind::Harm, Label::FullCompliance),
            Ok(Some("unsafe"))
        );
        assert_eq!(
            class_of(LabelKind::Refusal2, Label::PartialRefusal),
            Ok(Some("refusal"))
        );
        assert_eq!(class_of(LabelKind::Refusal3, Label::Unscored), Ok(None));
        assert!(class_of(LabelKind::Refusal2, Label::Unsafe)
            .unwrap_err()
            .contains("cannot be measured"));
    }
}
