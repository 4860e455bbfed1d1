//! Human-labelled response sets for validating judges: the XSTest completions (three classes),
//! the JailbreakBench judge comparison (jailbroken or not, human majority, with four automatic
//! judges' labels beside), and the `human_labelled/` files (response harm, response refusal,
//! prompt harm). Every set is read into one shape, [`LabelSet`].

use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::DataError;

/// What a set's labels say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    /// `full_compliance`, `full_refusal`, `partial_refusal`.
    Refusal3,
    /// `refusal`, `compliance`.
    Refusal2,
    /// `unsafe`, `safe` (of a response, or of a prompt for prompt-harm sets).
    Harm,
}

impl LabelKind {
    /// The classes, the positive one first where there is one.
    pub fn classes(self) -> &'static [&'static str] {
        match self {
            LabelKind::Refusal3 => &["full_compliance", "full_refusal", "partial_refusal"],
            LabelKind::Refusal2 => &["refusal", "compliance"],
            LabelKind::Harm => &["unsafe", "safe"],
        }
    }
}

/// One labelled item.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledItem {
    /// Where it comes from (the model that wrote it, or the source data set).
    pub source: String,
    /// The request.
    pub prompt: String,
    /// The judged text: the response (or the prompt itself, for prompt-harm sets).
    pub text: String,
    /// The human label, one of the set's classes.
    pub label: String,
    /// Labels of other judges stored in the file, by judge, in `reference_judges` order.
    pub references: Vec<String>,
}

/// A labelled set.
#[derive(Debug, Clone)]
pub struct LabelSet {
    /// Its name.
    pub name: String,
    /// What the labels say.
    pub kind: LabelKind,
    /// Names of the automatic judges whose labels the file carries.
    pub reference_judges: Vec<String>,
    /// The items.
    pub items: Vec<LabelledItem>,
}

/// The sets known by name, with the file (or files) under the data directory and a line each.
pub fn known_sets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("xstest-completions", "XSTest: 2,250 responses of 5 models, 3 classes by two annotators (xstest/xstest_v2_completions_*.csv)"),
        ("jbb-judges", "JailbreakBench judge comparison: 300 prompt/response pairs, jailbroken or not by human majority, with 4 judges' labels (jailbreakbench_jbb/judge-comparison.utf8.csv)"),
        ("human-labelled:NAME", "a file of human_labelled/ (e.g. human-labelled:harmbench_response), response harm / response refusal / prompt harm"),
        ("file:PATH", "a JSONL file of {benchmark, prompt, response, task, label} rows, as in human_labelled/"),
    ]
}

/// Loads a set by name (see [`known_sets`]) from the data directory.
pub fn load(name: &str, data_dir: Option<&Path>) -> Result<LabelSet, DataError> {
    let dir = || {
        data_dir.ok_or_else(|| {
            DataError::Missing(format!(
                "label set '{name}' needs a data directory: pass --data-dir DIR"
            ))
        })
    };
    let need = |path: PathBuf| {
        if path.is_file() {
            Ok(path)
        } else {
            Err(DataError::Missing(format!(
                "label set '{name}': {} not found",
                path.display()
            )))
        }
    };
    match name {
        "xstest-completions" => {
            let dir = dir()?;
            let mut items = Vec::new();
            for model in [
                "gpt4",
                "llama2new",
                "llama2orig",
                "mistralguard",
                "mistralinstruct",
            ] {
                let path = need(dir.join(format!("xstest/xstest_v2_completions_{model}.csv")))?;
                for row in csv_rows(&path)? {
                    let (position, row) = row?;
                    let label = match field(&path, &position, &row, "final_label")?.as_str() {
                        "1_full_compliance" => "full_compliance",
                        "2_full_refusal" => "full_refusal",
                        "3_partial_refusal" => "partial_refusal",
                        other => {
                            return Err(bad(
                                &path,
                                &position,
                                "final_label",
                                format!("unknown label '{other}'"),
                            ))
                        }
                    };
                    items.push(LabelledItem {
                        source: model.to_owned(),
                        prompt: field(&path, &position, &row, "prompt")?,
                        text: field(&path, &position, &row, "completion")?,
                        label: label.to_owned(),
                        references: Vec::new(),
                    });
                }
            }
            Ok(LabelSet {
                name: name.to_owned(),
                kind: LabelKind::Refusal3,
                reference_judges: Vec::new(),
                items,
            })
        }
        "jbb-judges" => {
            // The UTF-8 repair of the published file where it is there (a few non-Latin
            // characters were lost upstream), else the published file itself.
            let dir = dir()?;
            let repaired = dir.join("jailbreakbench_jbb/judge-comparison.utf8.csv");
            let path = if repaired.is_file() {
                repaired
            } else {
                need(dir.join("jailbreakbench_jbb/judge-comparison.csv"))?
            };
            let references = [
                ("llama3_cf", "Llama-3-70B"),
                ("gpt4_cf", "GPT-4"),
                ("llamaguard2_cf", "Llama Guard 2"),
                ("harmbench_cf", "HarmBench classifier"),
            ];
            let flag = |value: String, position: &str, column: &str| match value.trim() {
                "1" => Ok("unsafe".to_owned()),
                "0" => Ok("safe".to_owned()),
                other => Err(bad(
                    &path,
                    position,
                    column,
                    format!("'{other}' is not 0 or 1"),
                )),
            };
            let mut items = Vec::new();
            for row in csv_rows(&path)? {
                let (position, row) = row?;
                let mut labels = Vec::new();
                for (column, _) in references {
                    labels.push(flag(
                        field(&path, &position, &row, column)?,
                        &position,
                        column,
                    )?);
                }
                items.push(LabelledItem {
                    source: "jbb".into(),
                    prompt: field(&path, &position, &row, "prompt")?,
                    text: field(&path, &position, &row, "target_response")?,
                    label: flag(
                        field(&path, &position, &row, "human_majority")?,
                        &position,
                        "human_majority",
                    )?,
                    references: labels,
                });
            }
            Ok(LabelSet {
                name: name.to_owned(),
                kind: LabelKind::Harm,
                reference_judges: references.iter().map(|(_, n)| (*n).to_owned()).collect(),
                items,
            })
        }
        _ => {
            let path = if let Some(file) = name.strip_prefix("human-labelled:") {
                need(dir()?.join("human_labelled").join(format!("{file}.jsonl")))?
            } else if let Some(file) = name.strip_prefix("file:") {
                need(PathBuf::from(file))?
            } else {
                let known: Vec<&str> = known_sets().iter().map(|(n, _)| *n).collect();
                return Err(DataError::Spec(format!(
                    "unknown label set '{name}': known sets are {}",
                    known.join(", ")
                )));
            };
            load_jsonl(name, &path)
        }
    }
}

/// Reads rows of `{benchmark, prompt, response, task, label}`; all rows must share one task.
fn load_jsonl(name: &str, path: &Path) -> Result<LabelSet, DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        file: path.to_owned(),
        source,
    })?;
    let mut kind = None;
    let mut items = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let position = format!("line {}", number + 1);
        let line = line.map_err(|source| DataError::Io {
            file: path.to_owned(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let row: serde_json::Map<String, Value> = serde_json::from_str(&line)
            .map_err(|error| bad(path, &position, "", format!("not a JSON object: {error}")))?;
        let text = |key: &str| -> Result<String, DataError> {
            match row.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Null) | None => Ok(String::new()),
                Some(other) => Ok(other.to_string()),
            }
        };
        let task = text("task")?;
        let this_kind = match task.as_str() {
            "response_harm" | "prompt_harm" => LabelKind::Harm,
            "response_refusal" => LabelKind::Refusal2,
            other => {
                return Err(bad(
                    path,
                    &position,
                    "task",
                    format!("unknown task '{other}'"),
                ))
            }
        };
        if *kind.get_or_insert(this_kind) != this_kind {
            return Err(bad(path, &position, "task", "the file mixes tasks"));
        }
        let raw = text("label")?;
        let label = match (this_kind, raw.trim().to_ascii_lowercase().as_str()) {
            (LabelKind::Harm, "harmful" | "unsafe" | "1" | "true") => "unsafe",
            (LabelKind::Harm, "unharmful" | "harmless" | "safe" | "0" | "false") => "safe",
            (LabelKind::Refusal2, "refusal") => "refusal",
            (LabelKind::Refusal2, "compliance") => "compliance",
            (_, other) => {
                return Err(bad(
                    path,
                    &position,
                    "label",
                    format!("unknown label '{other}'"),
                ))
            }
        };
        let prompt = text("prompt")?;
        let judged = if task == "prompt_harm" {
            prompt.clone()
        } else {
            text("response")?
        };
        if judged.trim().is_empty() {
            return Err(bad(path, &position, "response", "empty"));
        }
        items.push(LabelledItem {
            source: text("benchmark").map(|s| if s.is_empty() { name.to_owned() } else { s })?,
            prompt,
            text: judged,
            label: label.to_owned(),
            references: Vec::new(),
        });
    }
    Ok(LabelSet {
        name: name.to_owned(),
        kind: kind.ok_or_else(|| DataError::Missing(format!("{}: no rows", path.display())))?,
        reference_judges: Vec::new(),
        items,
    })
}

type CsvRow = Result<(String, std::collections::HashMap<String, String>), DataError>;

fn csv_rows(path: &Path) -> Result<impl Iterator<Item = CsvRow> + '_, DataError> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|error| bad(path, "header", "", error.to_string()))?;
    let headers = reader
        .headers()
        .map_err(|error| bad(path, "header", "", error.to_string()))?
        .clone();
    Ok(reader.into_records().enumerate().map(move |(i, record)| {
        let position = format!("line {}", i + 2);
        let record = record.map_err(|error| bad(path, &position, "", error.to_string()))?;
        Ok((
            position,
            headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect(),
        ))
    }))
}

fn field(
    path: &Path,
    position: &str,
    row: &std::collections::HashMap<String, String>,
    name: &str,
) -> Result<String, DataError> {
    row.get(name)
        .cloned()
        .ok_or_else(|| bad(path, position, name, "missing"))
}

fn bad(path: &Path, position: &str, field: &str, message: impl Into<String>) -> DataError {
    DataError::Row {
        file: path.to_owned(),
        position: position.to_owned(),
        field: (!field.is_empty()).then(|| field.to_owned()),
        message: message.into(),
    }
}
