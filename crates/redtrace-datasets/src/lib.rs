//! Benchmark data: the registry of known benchmarks ([`registry`]) and a loader for CSV, JSON
//! and JSONL files with a field mapping, which yields [`Sample`](redtrace_core::Sample)s one at a time (a 100,000-row
//! file is never held in memory unless a seeded sample of it is asked for), plus the file's
//! SHA-256 for the run's record.
//!
//! Every bad row is an error naming the file, the line (or item) and the field. [`labels`]
//! reads the human-labelled response sets that judges are validated against.

pub mod catalog;
pub mod labels;
mod loader;
pub mod method;

pub use loader::{open, open_capped, DataError, FieldMap, Format, SampleReader, MAX_ROW_BYTES};

use redtrace_core::PromptLabel;
use std::path::{Path, PathBuf};

/// The environment variable that says where data sets live when `--data-dir` is not given.
pub const DATA_DIR_ENV: &str = "REDTRACE_DATA";

/// A benchmark the registry knows: where its file lives under the data directory and how to
/// read it.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchmarkSpec {
    /// Its name on the command line.
    pub name: &'static str,
    /// One line about what it measures.
    pub description: &'static str,
    /// The file, relative to the data directory.
    pub file: &'static str,
    /// Where the file comes from, for error messages that tell a user how to get it.
    pub origin: &'static str,
    /// The data set's license.
    pub license: &'static str,
    /// How to read it.
    pub fields: FieldMap,
    /// The judges it gets when none are named, best first; judges that call a model are used
    /// only when a judge model is given.
    pub default_judges: &'static [&'static str],
    /// For a multi-turn benchmark, who plays the other party (`cse-phishing-victim`: the
    /// judge model, in CyberSecEval's exchange).
    pub responder: Option<&'static str>,
    /// How its headline number is read: the tables of the paper and the findings use this.
    pub reading: Reading,
}

/// How a benchmark's headline number is read from a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The judges whose verdicts give it, best first (a judge name, which also matches
    /// `NAME:MODEL`); the first one the run has is used.
    pub judges: &'static [&'static str],
    /// Which number of that judge it is.
    pub headline: Headline,
}

/// Which number of a judge is a benchmark's headline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headline {
    /// The share of safe answers: the refusal rate for a refusal judge on harmful prompts,
    /// one minus the unsafe rate for a harm judge.
    SafeShare,
    /// The judge's mean score (AIR-Bench: 1 refused, 0.5 partly, 0 complied).
    MeanScore,
}

/// The judges a run of a user's file (or of any benchmark the registry does not know, such
/// as an attacked one, `BENCH+ATTACK`) is read through: harm, else refusal.
const ANY_JUDGE: &[&str] = &["harm", "refusal-llm", "refusal-rule"];

/// How the benchmark named `name` in a run is read.
pub fn reading_of(name: &str) -> Reading {
    find(name).map_or(
        Reading {
            judges: ANY_JUDGE,
            headline: Headline::SafeShare,
        },
        |spec| spec.reading,
    )
}

/// A field map for a file whose prompts are all harmful requests.
fn harmful(prompt: &str, id: Option<&str>, category: &[&str]) -> FieldMap {
    FieldMap {
        prompt: prompt.into(),
        id: id.map(Into::into),
        category: category.iter().map(|c| (*c).into()).collect(),
        label: None,
        system: None,
        fixed_label: Some(PromptLabel::Unsafe),
        skip_without_prompt: false,
        prompt_template: None,
    }
}

/// CyberSecEval's official MITRE prompts, relative to the data directory.
pub const MITRE_FILE: &str = "cyberseceval/mitre_benchmark_100_per_category_with_augmentation.json";

/// Every benchmark the registry knows.
pub fn registry() -> Vec<BenchmarkSpec> {
    vec![
        BenchmarkSpec {
            name: "xstest",
            description: "XSTest: 250 safe prompts that look unsafe (over-refusal) and 200 unsafe contrasts, 10 types each",
            file: "xstest/xstest_prompts.csv",
            origin: "github.com/paul-rottger/xstest, file xstest_prompts.csv",
            license: "CC-BY-4.0",
            fields: FieldMap {
                prompt: "prompt".into(),
                id: Some("id".into()),
                category: vec!["type".into()],
                label: Some("label".into()),
                system: None,
                fixed_label: None,
                skip_without_prompt: false,
                prompt_template: None,
            },
            default_judges: &["refusal-rule", "refusal-llm"],
            responder: None,
            reading: Reading {
                judges: &["refusal-llm", "refusal-rule"],
                headline: Headline::SafeShare,
            },
        },
        BenchmarkSpec {
            name: "airbench",
            description: "AIR-Bench 2024: harmful requests in a 4-level risk taxonomy (reported per level-2 and level-3 category); the row's cate-idx picks its judge template",
            file: "air_bench_2024/air_bench_prompts_partial_sample.csv",
            origin: "huggingface.co/datasets/stanford-crfm/air-bench-2024 (this file: a 784-row sample of the 5,694 test prompts)",
            license: "CC-BY-4.0",
            fields: harmful("prompt", None, &["l2-name", "l3-name"]),
            default_judges: &["airbench"],
            responder: None,
            reading: Reading {
                judges: &["airbench"],
                headline: Headline::MeanScore,
            },
        },
        BenchmarkSpec {
            name: "cse-mitre",
            description: "CyberSecEval MITRE: requests for help with cyberattacks, 100 per ATT&CK category (the official augmented prompts, one user turn); safety rate = share judged benign",
            file: MITRE_FILE,
            origin: "github.com/meta-llama/PurpleLlama at 4be64c3, CybersecurityBenchmarks/datasets/mitre/mitre_benchmark_100_per_category_with_augmentation.json (git blob da9bca1f)",
            license: "MIT",
            fields: FieldMap {
                prompt: "mutated_prompt".into(),
                id: None,
                category: vec!["mitre_category".into()],
                label: None,
                system: None,
                fixed_label: Some(PromptLabel::Unsafe),
                skip_without_prompt: false,
                prompt_template: None,
            },
            default_judges: &["cse-mitre"],
            responder: None,
            reading: Reading {
                judges: &["cse-mitre", "cse-mitre-rubric"],
                headline: Headline::SafeShare,
            },
        },
        BenchmarkSpec {
            name: "cse-mitre-frr",
            description: "CyberSecEval MITRE false refusals: 750 benign look-alike prompts; the refusal rate is the false-refusal rate",
            file: "cyberseceval/mitre_frr.json",
            origin: "github.com/meta-llama/PurpleLlama, CybersecurityBenchmarks/datasets/frr/frr.json",
            license: "MIT",
            fields: FieldMap {
                prompt: "mutated_prompt".into(),
                id: None,
                category: vec![],
                label: None,
                system: None,
                fixed_label: Some(PromptLabel::Safe),
                skip_without_prompt: false,
                prompt_template: None,
            },
            default_judges: &["cse-refusal", "refusal-llm"],
            responder: None,
            reading: Reading {
                judges: &["cse-refusal", "refusal-llm", "refusal-rule"],
                headline: Headline::SafeShare,
            },
        },
        BenchmarkSpec {
            name: "cse-interpreter",
            description: "CyberSecEval code interpreter abuse: 5 attack types x 100; safety rate = 100 - mean over types of the malicious share",
            file: "cyberseceval/interpreter.json",
            origin: "github.com/meta-llama/PurpleLlama, CybersecurityBenchmarks/datasets/interpreter/interpreter.json",
            license: "MIT",
            fields: FieldMap {
                prompt: "mutated_prompt".into(),
                id: None,
                category: vec!["attack_type".into()],
                label: None,
                system: None,
                fixed_label: Some(PromptLabel::Unsafe),
                skip_without_prompt: false,
                prompt_template: None,
            },
            default_judges: &["cse-interpreter"],
            responder: None,
            reading: Reading {
                judges: &["cse-interpreter", "cse-interpreter-rubric"],
                headline: Headline::SafeShare,
            },
        },
        BenchmarkSpec {
            name: "cse-injection",
            description: "CyberSecEval prompt injection: a system prompt with a rule or secret, a user turn that injects against it; ASR by injection type, risk category and variant",
            file: "cyberseceval/prompt_injection.json",
            origin: "github.com/meta-llama/PurpleLlama, CybersecurityBenchmarks/datasets/prompt_injection/prompt_injection.json",
            license: "MIT",
            fields: FieldMap {
                prompt: "user_input".into(),
                id: Some("prompt_id".into()),
                category: vec![
                    "injection_type".into(),
                    "risk_category".into(),
                    "injection_variant".into(),
                ],
                label: None,
                system: Some("test_case_prompt".into()),
                fixed_label: Some(PromptLabel::Unsafe),
                skip_without_prompt: false,
                prompt_template: None,
            },
            default_judges: &["cse-injection"],
            responder: None,
            reading: Reading {
                judges: &["cse-injection", "cse-injection-rubric"],
                headline: Headline::SafeShare,
            },
        },
        BenchmarkSpec {
            name: "cse-injection-multilingual",
            description: "CyberSecEval prompt injection, machine-translated into 16 languages; ASR by language and injection type",
            file: "cyberseceval/prompt_injection_multilingual_machine_translated.json",
            origin: "github.com/meta-llama/PurpleLlama, CybersecurityBenchmarks/datasets/prompt_injection/prompt_injection_multilingual_machine_translated.json",
            license: "MIT",
            fields: FieldMap {
                prompt: "user_input".into(),
                id: None,
                category: vec!["speaking_language".into(), "injection_type".into()],
                label: None,
                system: Some("test_case_prompt".into()),
                fixed_label: Some(PromptLabel::Unsafe),
                skip_without_prompt: false,
                prompt_template: None,
            },
            default_judges: &["cse-injection"],
            responder: None,
            reading: Reading {
                judges: &["cse-injection", "cse-injection-rubric"],
                headline: Headline::SafeShare,
            },
        },
        BenchmarkSpec {
            name: "cse-phishing",
            description: "CyberSecEval spear phishing: the model plays a social engineer against a victim played by the judge model (CyberSecEval's exchange: an opening and up to 5 more turns); persuasion, rapport and argumentation 0-5 (lower is safer), the victim's compliance, refusals to play",
            file: "cyberseceval/multiturn_phishing_challenges.json",
            origin: "github.com/meta-llama/PurpleLlama, CybersecurityBenchmarks/datasets/spear_phishing/multiturn_phishing_challenges.json",
            license: "MIT",
            fields: FieldMap {
                prompt: "goal".into(),
                id: Some("prompt_id".into()),
                category: vec![],
                label: None,
                system: None,
                fixed_label: Some(PromptLabel::Unsafe),
                skip_without_prompt: false,
                prompt_template: None,
            },
            default_judges: &["cse-phishing"],
            responder: Some("cse-phishing-victim"),
            reading: Reading {
                judges: &["cse-phishing"],
                headline: Headline::SafeShare,
            },
        },
        BenchmarkSpec {
            name: "wildguardtest",
            description: "WildGuardTest prompts with their human harm label (harmful: attack success; safe: over-refusal), by source subcategory",
            file: "wildguardtest_partial/wildguardtest_prompts_partial_wizard101.json",
            origin: "huggingface.co/datasets/allenai/wildguardmix, wildguardtest split (this file: 1,554 of 1,725 prompts)",
            license: "ODC-BY",
            fields: FieldMap {
                prompt: "text".into(),
                id: None,
                category: vec!["source".into()],
                label: Some("label".into()),
                system: None,
                fixed_label: None,
                skip_without_prompt: false,
                prompt_template: None,
            },
            default_judges: &["harm", "refusal-rule"],
            responder: None,
            reading: Reading {
                judges: &["harm"],
                headline: Headline::SafeShare,
            },
        },
        BenchmarkSpec {
            name: "harmbench",
            description: "HarmBench: 400 harmful text behaviours by semantic category",
            file: "harmbench/harmbench_behaviors_text_all.csv",
            origin: "github.com/centerforaisafety/HarmBench, data/behavior_datasets/harmbench_behaviors_text_all.csv",
            license: "MIT",
            fields: harmful("Behavior", Some("BehaviorID"), &["SemanticCategory"]),
            default_judges: &["harm"],
            responder: None,
            reading: Reading {
                judges: ANY_JUDGE,
                headline: Headline::SafeShare,
            },
        },
        BenchmarkSpec {
            name: "advbench",
            description: "AdvBench: 520 harmful behaviours",
            file: "advbench/harmful_behaviors.csv",
            origin: "github.com/llm-attacks/llm-attacks, data/advbench/harmful_behaviors.csv",
            license: "MIT",
            fields: harmful("goal", None, &[]),
            default_judges: &["harm"],
            responder: None,
            reading: Reading {
                judges: ANY_JUDGE,
                headline: Headline::SafeShare,
            },
        },
        BenchmarkSpec {
            name: "jbb",
            description: "JailbreakBench JBB-Behaviors: 100 harmful behaviours in 10 categories",
            file: "jailbreakbench_jbb/harmful-behaviors.csv",
            origin: "huggingface.co/datasets/JailbreakBench/JBB-Behaviors, data/harmful-behaviors.csv",
            license: "MIT",
            fields: harmful("Goal", Some("Index"), &["Category"]),
            default_judges: &["harm"],
            responder: None,
            reading: Reading {
                judges: ANY_JUDGE,
                headline: Headline::SafeShare,
            },
        },
        BenchmarkSpec {
            name: "strongreject",
            description: "StrongREJECT: 313 forbidden prompts in 6 categories",
            file: "strongreject/data/strongreject_dataset.csv",
            origin: "github.com/alexandrasouly/strongreject, strongreject_dataset/strongreject_dataset.csv",
            license: "MIT",
            fields: harmful("forbidden_prompt", None, &["category"]),
            // The benchmark's own scoring: refused, convincing, specific.
            default_judges: &["strongreject"],
            responder: None,
            reading: Reading {
                judges: ANY_JUDGE,
                headline: Headline::SafeShare,
            },
        },
        BenchmarkSpec {
            name: "simplesafetytests",
            description: "SimpleSafetyTests: 100 clearly harmful prompts in 5 harm areas",
            file: "simplesafetytests/simplesafetytests_test_cases.csv",
            origin: "huggingface.co/datasets/Bertievidgen/SimpleSafetyTests",
            license: "CC-BY-4.0",
            fields: harmful("prompts_final", Some("id"), &["harm_area"]),
            default_judges: &["harm"],
            responder: None,
            reading: Reading {
                judges: ANY_JUDGE,
                headline: Headline::SafeShare,
            },
        },
    ]
}

/// Looks a benchmark up by name.
pub fn find(name: &str) -> Option<BenchmarkSpec> {
    registry().into_iter().find(|spec| spec.name == name)
}

/// Where a benchmark's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum BenchSource {
    /// A registry benchmark, read from the data directory.
    Named(BenchmarkSpec),
    /// A user's file with its own field mapping (`file:PATH`).
    File {
        /// The file.
        path: PathBuf,
        /// How to read it.
        fields: FieldMap,
    },
}

impl BenchSource {
    /// Parses a `--bench` value: a registry name or `file:PATH` (read with `fields`).
    pub fn parse(text: &str, fields: FieldMap) -> Result<Self, DataError> {
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err(DataError::Spec(
                    "--bench file: needs a path, e.g. file:prompts.csv".into(),
                ));
            }
            return Ok(BenchSource::File {
                path: PathBuf::from(path),
                fields,
            });
        }
        find(text).map(BenchSource::Named).ok_or_else(|| {
            let known: Vec<&str> = registry().iter().map(|spec| spec.name).collect();
            DataError::Spec(format!(
                "unknown benchmark '{text}': known benchmarks are {}, or file:PATH for your own CSV/JSON/JSONL",
                known.join(", ")
            ))
        })
    }

    /// The judges it gets when none are named: the registry's choice, or for a user's file the
    /// refusal judges.
    pub fn default_judges(&self) -> &'static [&'static str] {
        match self {
            BenchSource::Named(spec) => spec.default_judges,
            BenchSource::File { .. } => &["refusal-rule", "refusal-llm"],
        }
    }

    /// Who plays the other party of a multi-turn benchmark, if it is one.
    pub fn responder(&self) -> Option<&'static str> {
        match self {
            BenchSource::Named(spec) => spec.responder,
            BenchSource::File { .. } => None,
        }
    }

    /// The name reports use: the registry name, or `file:PATH`.
    pub fn name(&self) -> String {
        match self {
            BenchSource::Named(spec) => spec.name.to_owned(),
            BenchSource::File { path, .. } => format!("file:{}", path.display()),
        }
    }

    /// The file to read, given the data directory (needed only for registry benchmarks).
    pub fn resolve(&self, data_dir: Option<&Path>) -> Result<(PathBuf, FieldMap), DataError> {
        match self {
            BenchSource::File { path, fields } => {
                if !path.is_file() {
                    return Err(DataError::Missing(format!(
                        "data file {} does not exist",
                        path.display()
                    )));
                }
                Ok((path.clone(), fields.clone()))
            }
            BenchSource::Named(spec) => {
                let pull_hint = match catalog::set_holding(spec.file) {
                    Some((set, true)) => format!(
                        "; get it with `redtrace data pull {set}`, which fetches a pinned copy from {}",
                        catalog::pinned(spec.file).map(|f| f.origin).unwrap_or_default()
                    ),
                    Some((set, false)) => format!(
                        "; `redtrace data info {set}` says where it comes from (it cannot be downloaded by redtrace)"
                    ),
                    None => String::new(),
                };
                let Some(dir) = data_dir else {
                    return Err(DataError::Missing(format!(
                        "benchmark '{}' needs a data directory: pass --data-dir DIR (or set {DATA_DIR_ENV}) where {} lives (published at {}){pull_hint}",
                        spec.name, spec.file, spec.origin
                    )));
                };
                let path = dir.join(spec.file);
                if !path.is_file() {
                    return Err(DataError::Missing(format!(
                        "benchmark '{}': {} not found under data directory {} (published at {}){pull_hint}",
                        spec.name,
                        spec.file,
                        dir.display(),
                        spec.origin
                    )));
                }
                Ok((path, spec.fields.clone()))
            }
        }
    }
}

/// Options that pick which rows of a benchmark are used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selection {
    /// Use at most this many rows.
    pub limit: Option<usize>,
    /// With a limit: pick the rows at random with this seed instead of the first ones.
    pub sample_seed: Option<u64>,
}
