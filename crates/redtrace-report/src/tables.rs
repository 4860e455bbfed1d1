//! Documents of tables computed as values, rendered after: the findings and the paper's tables
//! are built as a [`Document`] (sections of typed cells: counts, rates with their intervals,
//! text), then written as Markdown or serialised as JSON. This is ripgrep's printer rule:
//! compute a typed message, then render it.

use serde::Serialize;
use std::fmt::Write;

use crate::Interval;

/// A titled list of tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    /// The document's title.
    pub title: String,
    /// A paragraph under the title, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub intro: String,
    /// Its tables, in order.
    pub sections: Vec<Section>,
}

/// One table with its title and a note on how to read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    /// The table's title.
    pub title: String,
    /// How it is computed and read.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, one cell per column.
    pub rows: Vec<Vec<Cell>>,
}

/// How a number is shown; not part of the value (JSON carries the number itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// Digits after the decimal point.
    pub decimals: u8,
    /// A share (0–1) shown as a percentage (× 100).
    pub percent: bool,
    /// A sign on positive numbers (differences).
    pub signed: bool,
    /// A `%` after the number.
    pub unit: bool,
}

/// One cell of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cell {
    /// Text (a model, a benchmark, a judge's name).
    Text {
        /// The text.
        text: String,
    },
    /// A count.
    Count {
        /// The count.
        value: u64,
    },
    /// A number (a share for rates, 0–1) with its 95% interval when it has one.
    Number {
        /// The number.
        value: f64,
        /// Its 95% interval.
        #[serde(skip_serializing_if = "Option::is_none")]
        ci: Option<Interval>,
        /// Whether `value` is a share (0–1) shown as a percentage.
        share: bool,
        /// How it is shown.
        #[serde(skip)]
        style: Style,
    },
    /// No value: the run lacks what it needs.
    Missing,
}

impl Cell {
    /// A text cell.
    pub fn text(text: impl Into<String>) -> Self {
        Cell::Text { text: text.into() }
    }

    /// A count.
    pub fn count(value: u64) -> Self {
        Cell::Count { value }
    }

    /// A number with its interval in `style`; missing when `value` is `None`.
    pub fn number(value: Option<f64>, ci: Option<Interval>, style: Style) -> Self {
        match value {
            Some(value) => Cell::Number {
                value,
                ci,
                share: style.percent,
                style,
            },
            None => Cell::Missing,
        }
    }

    /// A share shown as a percentage with one decimal (`12.5 [8.1, 18.9]`).
    pub fn percent(value: Option<f64>, ci: Option<Interval>) -> Self {
        Self::number(
            value,
            ci,
            Style {
                decimals: 1,
                percent: true,
                ..Style::default()
            },
        )
    }

    /// A plain number with `decimals` digits after the point.
    pub fn fixed(value: Option<f64>, ci: Option<Interval>, decimals: u8) -> Self {
        Self::number(
            value,
            ci,
            Style {
                decimals,
                ..Style::default()
            },
        )
    }

    /// The cell as Markdown shows it.
    pub fn to_markdown(&self) -> String {
        match self {
            Cell::Text { text } => text.clone(),
            Cell::Count { value } => value.to_string(),
            Cell::Missing => "–".into(),
            Cell::Number {
                value, ci, style, ..
            } => {
                let scale = if style.percent { 100.0 } else { 1.0 };
                let show = |x: f64| {
                    let decimals = usize::from(style.decimals);
                    if style.signed {
                        format!("{:+.decimals$}", x * scale)
                    } else {
                        format!("{:.decimals$}", x * scale)
                    }
                };
                let mut text = show(*value);
                if style.unit {
                    text.push('%');
                }
                if let Some(ci) = ci {
                    let _ = write!(text, " [{}, {}]", show(ci.low), show(ci.high));
                }
                text
            }
        }
    }
}

impl Section {
    /// A table.
    pub fn new(title: &str, note: &str, columns: &[&str], rows: Vec<Vec<Cell>>) -> Self {
        Self {
            title: title.to_owned(),
            note: note.to_owned(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows,
        }
    }
}

impl Document {
    /// The document as Markdown: a table says "(no data in this run)" where it has no row.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("# {}\n", self.title);
        if !self.intro.is_empty() {
            let _ = write!(out, "\n{}\n", self.intro);
        }
        for section in &self.sections {
            let _ = write!(out, "\n## {}\n\n", section.title);
            if !section.note.is_empty() {
                let _ = write!(out, "{}\n\n", section.note);
            }
            let _ = writeln!(
                out,
                "| {} |\n|{}",
                section.columns.join(" | "),
                "---|".repeat(section.columns.len())
            );
            if section.rows.is_empty() {
                let _ = writeln!(
                    out,
                    "| (no data in this run) |{}",
                    " |".repeat(section.columns.len().saturating_sub(1))
                );
            }
            for row in &section.rows {
                let cells: Vec<String> = row.iter().map(Cell::to_markdown).collect();
                let _ = writeln!(out, "| {} |", cells.join(" | "));
            }
        }
        out
    }

    /// The document as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a document serialises") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_render_as_the_tables_always_did() {
        let ci = Some(Interval {
            low: 0.081,
            high: 0.189,
        });
        assert_eq!(
            Cell::percent(Some(0.125), ci).to_markdown(),
            "12.5 [8.1, 18.9]"
        );
        assert_eq!(Cell::percent(None, ci).to_markdown(), "–");
        assert_eq!(Cell::fixed(Some(2.345), None, 2).to_markdown(), "2.35");
        let signed = Style {
            decimals: 2,
            signed: true,
            ..Style::default()
        };
        assert_eq!(
            Cell::number(
                Some(0.5),
                Some(Interval {
                    low: -0.25,
                    high: 1.0
                }),
                signed
            )
            .to_markdown(),
            "+0.50 [-0.25, +1.00]"
        );
        let whole_percent = Style {
            percent: true,
            unit: true,
            ..Style::default()
        };
        assert_eq!(
            Cell::number(Some(0.354), None, whole_percent).to_markdown(),
            "35%"
        );
        let json = serde_json::to_value(Cell::percent(Some(0.125), ci)).unwrap();
        assert_eq!(json["kind"], "number");
        assert_eq!(json["value"], 0.125);
        assert_eq!(json["share"], true);
        assert_eq!(json["ci"]["low"], 0.081);
    }

    #[test]
    fn an_empty_table_says_so() {
        let document = Document {
            title: "T".into(),
            intro: String::new(),
            sections: vec![Section::new("S", "how", &["a", "b"], Vec::new())],
        };
        assert_eq!(
            document.to_markdown(),
            "# T\n\n## S\n\nhow\n\n| a | b |\n|---|---|\n| (no data in this run) | |\n"
        );
    }
}
