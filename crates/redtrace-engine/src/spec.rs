//! The frozen description of a run, and the hash that identifies it for resume.

use redtrace_core::sha256_hex;
use redtrace_providers::ModelConfig;
use serde::{Deserialize, Serialize};

/// One benchmark as a run used it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkRecord {
    /// Its name (`xstest`, `file:PATH`).
    pub name: String,
    /// The file read.
    pub file: String,
    /// SHA-256 of that file.
    pub sha256: String,
    /// The field mapping.
    pub fields: serde_json::Value,
    /// Row limit.
    pub limit: Option<usize>,
    /// Sampling seed.
    pub sample_seed: Option<u64>,
    /// Its judges (`NAME`, `NAME=MODEL_REF`, with a template file's name and hash).
    #[serde(default)]
    pub judges: Vec<String>,
    /// For a multi-turn benchmark, the model playing the other party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responder: Option<String>,
    /// For a model-driven attack: its name, models and budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<String>,
}

/// Everything that defines a run, stored with it so that it can be reproduced and compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Targets.
    pub models: Vec<ModelConfig>,
    /// Benchmarks.
    pub benchmarks: Vec<BenchmarkRecord>,
    /// Every judge of the run (the union of the benchmarks' judges).
    pub judges: Vec<String>,
    /// Completions per prompt.
    pub samples_per_prompt: u32,
}

/// Fields of a model that change how a run goes but not what it asks: they are left out of
/// the run's identity, so changing `--concurrency` resumes the same run.
const NOT_IDENTITY: &[&str] = &[
    "max_concurrency",
    "requests_per_minute",
    "timeout_secs",
    "max_retries",
    "stream",
];

impl RunSpec {
    /// The spec as stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a run spec serialises")
    }

    /// The hash of what the run asks and of which data: the same command gives the same hash.
    pub fn identity_hash(&self) -> String {
        let mut value = serde_json::to_value(self).expect("a run spec serialises");
        if let Some(models) = value.get_mut("models").and_then(|m| m.as_array_mut()) {
            for model in models {
                if let Some(object) = model.as_object_mut() {
                    for key in NOT_IDENTITY {
                        object.remove(*key);
                    }
                }
            }
        }
        sha256_hex(value.to_string().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        RunSpec {
            models: vec![ModelConfig::new("http://127.0.0.1:1/v1", "m")],
            benchmarks: vec![BenchmarkRecord {
                name: "xstest".into(),
                file: "x.csv".into(),
                sha256: "abc".into(),
                fields: serde_json::json!({}),
                limit: Some(5),
                sample_seed: None,
                judges: vec!["refusal-rule".into()],
                responder: None,
                attack: None,
            }],
            judges: vec!["refusal-rule".into()],
            samples_per_prompt: 1,
        }
    }

    #[test]
    fn identity_ignores_operational_settings_only() {
        let base = spec();
        let mut faster = spec();
        faster.models[0].max_concurrency = 64;
        faster.models[0].stream = true;
        assert_eq!(base.identity_hash(), faster.identity_hash());
        let mut hotter = spec();
        hotter.models[0].params.temperature = Some(0.7);
        assert_ne!(base.identity_hash(), hotter.identity_hash());
        let mut other_data = spec();
        other_data.benchmarks[0].sha256 = "def".into();
        assert_ne!(base.identity_hash(), other_data.identity_hash());
    }
}
