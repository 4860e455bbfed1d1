//! The HTML report's plots: inline SVG drawn from the findings' own tables (so a plot shows
//! the numbers its table prints), no script. Colour says what is good: one green for safe, one
//! red for unsafe, grey where the same rate is good on some prompts and bad on others
//! (refusal on a benchmark that mixes safe and unsafe prompts); the trace is the lighter tint
//! of its measure's hue, the answer the full one.

use std::fmt::Write;

use crate::html::escape;
use crate::tables::{Cell, Document, Section};
use crate::Interval;

/// What a rate means, and so its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// Higher is safer (a safety rate; refusal of harmful prompts).
    Safe,
    /// Higher is less safe (an unsafe rate; attack success).
    Unsafe,
    /// Good on some prompts and bad on others (refusal where safe prompts are mixed in).
    Neutral,
}

impl Meaning {
    /// The full colour (the answer) and its light tint (the trace).
    pub(crate) fn colours(self) -> (&'static str, &'static str) {
        match self {
            Meaning::Safe => ("#1a7f4b", "#8fd1ad"),
            Meaning::Unsafe => ("#b3261e", "#f0a39d"),
            Meaning::Neutral => ("#555555", "#bbbbbb"),
        }
    }

    /// The background of a heatmap cell at `rate` (0–1): white to the full colour.
    pub(crate) fn shade(self, rate: f64) -> String {
        let (full, _) = self.colours();
        let channel = |at: usize| u8::from_str_radix(&full[at..at + 2], 16).unwrap_or(0) as f64;
        let mix = |c: f64| (255.0 - (255.0 - c) * rate.clamp(0.0, 1.0) * 0.75).round() as u8;
        format!(
            "rgb({},{},{})",
            mix(channel(1)),
            mix(channel(3)),
            mix(channel(5))
        )
    }
}

const WIDTH: f64 = 780.0;
const LABEL: f64 = 340.0;
const PLOT: f64 = 400.0;
const ROW: f64 = 20.0;

/// A label that fits its column: at most 48 characters, the whole in the tooltip.
fn label(text: &str) -> String {
    let short: String = if text.chars().count() > 48 {
        text.chars().take(47).chain(std::iter::once('…')).collect()
    } else {
        text.to_owned()
    };
    format!("<title>{}</title>{}", escape(text), escape(&short))
}

/// The x position of a share (0–1).
fn x(value: f64) -> f64 {
    LABEL + value.clamp(0.0, 1.0) * PLOT
}

/// Axis lines and labels at 0, 25, 50, 75 and 100% below `height`.
fn axis(svg: &mut String, height: f64, caption: &str) {
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let at = x(tick);
        let _ = write!(
            svg,
            "<line x1=\"{at:.1}\" y1=\"0\" x2=\"{at:.1}\" y2=\"{height:.1}\" stroke=\"#e4e4e4\"/>\
             <text x=\"{at:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#555\">{:.0}%</text>",
            height + 13.0,
            tick * 100.0
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
        LABEL + PLOT / 2.0,
        height + 28.0,
        escape(caption)
    );
}

fn open(svg: &mut String, height: f64, title: &str) {
    let _ = write!(
        svg,
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {WIDTH} {:.0}\" width=\"{WIDTH}\" height=\"{:.0}\" role=\"img\" aria-label=\"{}\" font-family=\"system-ui,sans-serif\">",
        escape(title),
        height + 36.0,
        height + 36.0,
        escape(title)
    );
}

/// A forest plot: one row per label, the rate as a dot with its interval as a line.
pub(crate) fn forest(
    title: &str,
    caption: &str,
    rows: &[(String, f64, Option<Interval>)],
    meaning: Meaning,
) -> String {
    let (colour, _) = meaning.colours();
    let height = rows.len() as f64 * ROW + 4.0;
    let mut svg = String::new();
    open(&mut svg, height, title);
    axis(&mut svg, height, caption);
    for (i, (name, value, ci)) in rows.iter().enumerate() {
        let y = 12.0 + i as f64 * ROW;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            LABEL - 8.0,
            y + 4.0,
            label(name)
        );
        if let Some(ci) = ci {
            let _ = write!(
                svg,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/>",
                x(ci.low),
                x(ci.high)
            );
        }
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4.5\" fill=\"{colour}\"><title>{:.1}%{}</title></circle>",
            x(*value),
            value * 100.0,
            ci.map(|ci| format!(" [{:.1}, {:.1}]", ci.low * 100.0, ci.high * 100.0))
                .unwrap_or_default()
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// Answer and trace safety per row: a filled dot (answer) and a hollow square in the light
/// tint (trace), joined by a line whose length is the gap.
pub(crate) fn paired(title: &str, rows: &[(String, Option<f64>, Option<f64>)]) -> String {
    let (full, light) = Meaning::Safe.colours();
    let height = rows.len() as f64 * ROW + 4.0;
    let mut svg = String::new();
    open(&mut svg, height, title);
    axis(
        &mut svg,
        height,
        "safe share (%): ● answer, □ trace, same judge, same completions",
    );
    for (i, (name, answer, trace)) in rows.iter().enumerate() {
        let y = 12.0 + i as f64 * ROW;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            LABEL - 8.0,
            y + 4.0,
            label(name)
        );
        if let (Some(a), Some(t)) = (answer, trace) {
            let _ = write!(
                svg,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#999\" stroke-width=\"1\"/>",
                x(*a),
                x(*t)
            );
        }
        if let Some(t) = trace {
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"9\" height=\"9\" fill=\"white\" stroke=\"{light}\" stroke-width=\"2.5\"><title>trace {:.1}%</title></rect>",
                x(*t) - 4.5,
                y - 4.5,
                t * 100.0
            );
        }
        if let Some(a) = answer {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4.5\" fill=\"{full}\"><title>answer {:.1}%</title></circle>",
                x(*a),
                a * 100.0
            );
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

/// One series of a sweep: its name and, per setting value (sorted by number), the answer's
/// and the trace's safety.
pub(crate) type Series = (String, Vec<(String, Option<f64>, Option<f64>)>);

/// Safety against a swept setting: one small panel per series, the settings evenly spaced in
/// numeric order, the answer (full colour) and the trace (light tint) as lines.
pub(crate) fn sweep(title: &str, series: &[Series], meaning: Meaning, legend: &str) -> String {
    let (full, light) = meaning.colours();
    let panel = 160.0;
    let mut svg = String::new();
    let height = series.len() as f64 * (panel + 30.0);
    let _ = write!(
        svg,
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {WIDTH} {height:.0}\" width=\"{WIDTH}\" height=\"{height:.0}\" role=\"img\" aria-label=\"{}\" font-family=\"system-ui,sans-serif\">",
        escape(title),
        escape(title)
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let top = i as f64 * (panel + 30.0) + 30.0;
        let left = 90.0;
        let span = WIDTH - left - 90.0;
        let at = |k: usize| {
            if points.len() < 2 {
                left + span / 2.0
            } else {
                left + span * k as f64 / (points.len() - 1) as f64
            }
        };
        let y = |v: f64| top + (1.0 - v.clamp(0.0, 1.0)) * (panel - 30.0);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"12\" font-weight=\"bold\">{}</text>",
            top - 14.0,
            label(name)
        );
        for tick in [0.0, 0.5, 1.0] {
            let (level, right, text_x, text_y, percent) = (
                y(tick),
                left + span,
                left - 6.0,
                y(tick) + 4.0,
                tick * 100.0,
            );
            let _ = write!(
                svg,
                "<line x1=\"{left}\" y1=\"{level:.1}\" x2=\"{right:.1}\" y2=\"{level:.1}\" stroke=\"#e4e4e4\"/>\
                 <text x=\"{text_x:.1}\" y=\"{text_y:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#555\">{percent:.0}%</text>"
            );
        }
        for (k, (setting, _, _)) in points.iter().enumerate() {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                at(k),
                top + panel - 14.0,
                label(setting)
            );
        }
        for (pick, colour, dash) in [(0usize, full, ""), (1, light, " stroke-dasharray=\"5 3\"")] {
            let line: Vec<String> = points
                .iter()
                .enumerate()
                .filter_map(|(k, (_, a, t))| {
                    let v = if pick == 0 { *a } else { *t }?;
                    Some(format!("{:.1},{:.1}", at(k), y(v)))
                })
                .collect();
            if line.len() > 1 {
                let _ = write!(
                    svg,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>",
                    line.join(" ")
                );
            }
            for (k, (_, a, t)) in points.iter().enumerate() {
                if let Some(v) = if pick == 0 { *a } else { *t } {
                    let _ = write!(
                        svg,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\"><title>{} {:.1}%</title></circle>",
                        at(k),
                        y(v),
                        if pick == 0 { "answer" } else { "trace" },
                        v * 100.0
                    );
                }
            }
        }
    }
    let _ = write!(
        svg,
        "</svg></figure><p class=\"meta\">{}</p>",
        escape(legend)
    );
    svg
}

/// One row of a bar chart: its label and its bars (value, colour, what it is).
pub(crate) type BarRow = (String, Vec<(f64, &'static str, &'static str)>);

/// Horizontal bars, several per row (each with its colour and what it is), scaled to the
/// largest value; `unit` follows each value in its tooltip.
pub(crate) fn bars(title: &str, caption: &str, rows: &[BarRow], unit: &str) -> String {
    let most = rows
        .iter()
        .flat_map(|(_, values)| values.iter().map(|v| v.0))
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let per_row = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(1).max(1) as f64;
    let row_height = 8.0 * per_row + 8.0;
    let height = rows.len() as f64 * row_height + 4.0;
    let mut svg = String::new();
    open(&mut svg, height, title);
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
        LABEL + PLOT / 2.0,
        height + 20.0,
        escape(caption)
    );
    for (i, (name, values)) in rows.iter().enumerate() {
        let top = 4.0 + i as f64 * row_height;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            LABEL - 8.0,
            top + row_height / 2.0,
            label(name)
        );
        for (k, (value, colour, what)) in values.iter().enumerate() {
            let width = value / most * PLOT;
            let _ = write!(
                svg,
                "<rect x=\"{LABEL:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"7\" fill=\"{colour}\"><title>{} {}{}</title></rect>",
                top + 8.0 * k as f64,
                escape(what),
                trim_number(*value),
                escape(unit)
            );
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

/// A value as a short number: whole numbers without decimals.
fn trim_number(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// The number a cell holds or starts with (`"812 (40 completions)"` → 812).
fn leading_number(cell: &Cell) -> Option<f64> {
    match cell {
        Cell::Number { value, .. } => Some(*value),
        Cell::Count { value } => Some(*value as f64),
        Cell::Text { text } => text.split_whitespace().next()?.parse().ok(),
        Cell::Missing => None,
    }
}

/// The number in column `at` of `row`, if it has one.
fn value_at(row: &[Cell], at: Option<usize>) -> Option<f64> {
    at.and_then(|i| leading_number(&row[i]))
}

/// The column of `section` named `name`.
fn column(section: &Section, name: &str) -> Option<usize> {
    section.columns.iter().position(|c| c == name)
}

fn number_of(cell: &Cell) -> Option<(f64, Option<Interval>)> {
    match cell {
        Cell::Number { value, ci, .. } => Some((*value, *ci)),
        _ => None,
    }
}

/// The section of `document` whose title starts with `prefix`, if it has rows.
fn section<'a>(document: &'a Document, prefix: &str) -> Option<&'a Section> {
    document
        .sections
        .iter()
        .find(|s| s.title.starts_with(prefix) && !s.rows.is_empty())
}

/// Rows of `section`, each labelled by the text of its `labels` columns joined with " · ".
fn labelled<'a>(section: &'a Section, labels: &[&str]) -> Vec<(String, &'a [Cell])> {
    let at: Vec<usize> = labels
        .iter()
        .filter_map(|name| column(section, name))
        .collect();
    section
        .rows
        .iter()
        .map(|row| {
            let name = at
                .iter()
                .map(|&i| row[i].to_markdown())
                .collect::<Vec<_>>()
                .join(" · ");
            (name, row.as_slice())
        })
        .collect()
}

/// The labelled rows of `section` that have a number in column `value`, with its interval.
fn points(section: &Section, labels: &[&str], value: &str) -> Vec<(String, f64, Option<Interval>)> {
    let Some(at) = column(section, value) else {
        return Vec::new();
    };
    labelled(section, labels)
        .into_iter()
        .filter_map(|(name, row)| {
            let (value, ci) = number_of(&row[at])?;
            Some((name, value, ci))
        })
        .collect()
}

/// Every plot the findings allow: the forest of safety per model × benchmark, attack success
/// per technique, trace against answer, safety against a swept setting.
pub(crate) fn from_findings(findings: &Document) -> String {
    let mut html = String::new();
    if let Some(gap) = section(findings, "1.") {
        let rows = points(gap, &["benchmark", "model"], "answer safety [95% CI]");
        if !rows.is_empty() {
            html.push_str(&forest(
                "Answer safety per model and benchmark, with 95% intervals",
                "answer safety (%): higher is safer",
                &rows,
                Meaning::Safe,
            ));
        }
    }
    if let Some(attacks) = section(findings, "6.") {
        let rows = points(
            attacks,
            &["benchmark", "model", "attack"],
            "attack success (answer) [95% CI]",
        );
        if !rows.is_empty() {
            html.push_str(&forest(
                "Attack success per technique, with 95% intervals",
                "attack success on the answer (%): higher is less safe",
                &rows,
                Meaning::Unsafe,
            ));
        }
    }
    if let Some(trace) = section(findings, "4.") {
        let (answer, trace_at) = (column(trace, "answer safe"), column(trace, "trace safe"));
        let rows: Vec<(String, Option<f64>, Option<f64>)> =
            labelled(trace, &["benchmark", "model", "judge"])
                .into_iter()
                .map(|(name, row)| {
                    let pick = |at: Option<usize>| value_at(row, at);
                    (name, pick(answer), pick(trace_at))
                })
                .filter(|(_, a, t)| a.is_some() || t.is_some())
                .collect();
        if !rows.is_empty() {
            html.push_str(&paired(
                "Trace against answer: safety of each on the same completions",
                &rows,
            ));
        }
    }
    if let Some(budget) = section(findings, "5a.") {
        let (setting, answer, trace) = (
            column(budget, "setting"),
            column(budget, "answer safe"),
            column(budget, "trace safe"),
        );
        let mut series: Vec<Series> = Vec::new();
        for (name, row) in labelled(budget, &["benchmark", "model", "judge"]) {
            let pick = |at: Option<usize>| value_at(row, at);
            let point = (
                setting.map(|i| row[i].to_markdown()).unwrap_or_default(),
                pick(answer),
                pick(trace),
            );
            match series.iter_mut().find(|(n, _)| *n == name) {
                Some((_, points)) => points.push(point),
                None => series.push((name, vec![point])),
            }
        }
        for (_, points) in &mut series {
            points.sort_by(|a, b| setting_order(&a.0, &b.0));
        }
        if series.iter().any(|(_, points)| points.len() > 1) {
            html.push_str(&sweep(
                "Safety against the swept setting",
                &series,
                Meaning::Safe,
                "Solid: answer safety; dashed, lighter: trace safety.",
            ));
        }
    }
    if let Some(attacks) = section(findings, "6.") {
        // Attack success against the padding length, per benchmark and model.
        let (attack, answer, trace) = (
            column(attacks, "attack"),
            column(attacks, "attack success (answer) [95% CI]"),
            column(attacks, "on the trace [95% CI]"),
        );
        let mut series: Vec<Series> = Vec::new();
        for (name, row) in labelled(attacks, &["benchmark", "model"]) {
            let Some(chars) = attack
                .map(|i| row[i].to_markdown())
                .and_then(|a| a.strip_prefix("cot-padding:").map(str::to_owned))
            else {
                continue;
            };
            let pick = |at: Option<usize>| value_at(row, at);
            let point = (format!("{chars} chars"), pick(answer), pick(trace));
            match series.iter_mut().find(|(n, _)| *n == name) {
                Some((_, points)) => points.push(point),
                None => series.push((name, vec![point])),
            }
        }
        for (_, points) in &mut series {
            points.sort_by(|a, b| {
                setting_order(&a.0.replace(" chars", ""), &b.0.replace(" chars", ""))
            });
        }
        if series.iter().any(|(_, points)| points.len() > 1) {
            html.push_str(&sweep(
                "Attack success against the padding length (cot-padding)",
                &series,
                Meaning::Unsafe,
                "Solid: attack success on the answer; dashed, lighter: on the trace.",
            ));
        }
    }
    if let Some(outcome) = section(findings, "5b.") {
        let (safe, unsafe_) = (
            column(outcome, "reasoning tokens when safe"),
            column(outcome, "when unsafe"),
        );
        let (safe_colour, _) = Meaning::Safe.colours();
        let (unsafe_colour, _) = Meaning::Unsafe.colours();
        let rows: Vec<BarRow> = labelled(outcome, &["benchmark", "model"])
            .into_iter()
            .filter_map(|(name, row)| {
                let mut values = Vec::new();
                if let Some(v) = value_at(row, safe) {
                    values.push((v, safe_colour, "when safe:"));
                }
                if let Some(v) = value_at(row, unsafe_) {
                    values.push((v, unsafe_colour, "when unsafe:"));
                }
                (!values.is_empty()).then_some((name, values))
            })
            .collect();
        if !rows.is_empty() {
            html.push_str(&bars(
                "Reasoning tokens by outcome",
                "mean reasoning tokens per completion: green when the answer was safe, red when unsafe",
                &rows,
                " tokens",
            ));
        }
    }
    if let Some(trace) = section(findings, "4.") {
        let (leak, escape_at) = (column(trace, "leak"), column(trace, "escape"));
        let (unsafe_full, unsafe_light) = Meaning::Unsafe.colours();
        let rows: Vec<BarRow> = labelled(trace, &["benchmark", "model", "judge"])
            .into_iter()
            .map(|(name, row)| {
                let pick = |at: Option<usize>| value_at(row, at).unwrap_or(0.0);
                (
                    name,
                    vec![
                        (pick(leak), unsafe_full, "leak (unsafe trace, safe answer):"),
                        (
                            pick(escape_at),
                            unsafe_light,
                            "escape (safe trace, unsafe answer):",
                        ),
                    ],
                )
            })
            .filter(|(_, values)| values.iter().any(|v| v.0 > 0.0))
            .collect();
        if !rows.is_empty() {
            html.push_str(&bars(
                "Leaks and escapes per model",
                "completions: full red, a leak (the harm is in the trace); light red, an escape (the answer is worse than its trace)",
                &rows,
                " completions",
            ));
        }
    }
    if let Some(thinking) = section(findings, "3.") {
        let rows = points(thinking, &["benchmark", "model"], "first raised at");
        if !rows.is_empty() {
            html.push_str(&forest(
                "Time to the first safety thought",
                "where in the trace safety is first raised (% of its length): earlier is better",
                &rows,
                Meaning::Neutral,
            ));
        }
    }
    html
}

/// Settings (`max_tokens=1024`) in order: those whose value is a number first, in numeric
/// order, then the rest as text (a total order, whatever the mix).
pub(crate) fn setting_order(a: &str, b: &str) -> std::cmp::Ordering {
    let value = |s: &str| {
        s.rsplit_once('=')
            .map_or(s, |(_, v)| v)
            .trim()
            .parse::<f64>()
            .ok()
    };
    match (value(a), value(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_sort_by_their_numbers() {
        let mut settings = vec!["max_tokens=4096", "max_tokens=512", "max_tokens=1024"];
        settings.sort_by(|a, b| setting_order(a, b));
        assert_eq!(
            settings,
            ["max_tokens=512", "max_tokens=1024", "max_tokens=4096"]
        );
        let mut efforts = vec!["reasoning_effort=low", "reasoning_effort=high"];
        efforts.sort_by(|a, b| setting_order(a, b));
        assert_eq!(efforts, ["reasoning_effort=high", "reasoning_effort=low"]);
    }

    #[test]
    fn safe_and_unsafe_never_share_a_colour() {
        let (safe, safe_light) = Meaning::Safe.colours();
        let (unsafe_, unsafe_light) = Meaning::Unsafe.colours();
        let (neutral, _) = Meaning::Neutral.colours();
        assert_ne!(safe, unsafe_);
        assert_ne!(safe_light, unsafe_light);
        assert_ne!(neutral, safe);
        assert_eq!(Meaning::Safe.shade(0.0), "rgb(255,255,255)");
        assert_ne!(Meaning::Safe.shade(1.0), Meaning::Unsafe.shade(1.0));
    }

    #[test]
    fn labels_are_escaped_and_shortened() {
        let svg = forest(
            "t",
            "c",
            &[(
                "<script>x</script> and a very long category name that goes on".into(),
                0.5,
                None,
            )],
            Meaning::Safe,
        );
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains('…'));
    }
}
