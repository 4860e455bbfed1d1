//! The run record: the frozen, versioned description of a run that every reader (report,
//! findings, paper tables, viewer, export) reads typed, its status, and the hash that
//! identifies a run for resume.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::model::{ModelConfig, ModelSource, SamplingParams};
use crate::sha256_hex;

/// The version of [`RunSpec`] this build writes. Specs stored before versions were recorded
/// read as version 1, which has the same shape.
pub const RUN_SPEC_VERSION: u32 = 1;

fn first_version() -> u32 {
    1
}

/// One benchmark as a run used it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkRecord {
    /// Its name (`xstest`, `file:PATH`, `BENCH+ATTACK`).
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
    /// How a seeded sample was drawn (`stratified-by-category`); a run drawn another way is
    /// another run, so a resume never mixes two samples. `None` for runs without a seed, and
    /// for seeded runs stored before sampling was stratified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<String>,
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
    /// The version of this record's shape ([`RUN_SPEC_VERSION`] when written now).
    #[serde(default = "first_version")]
    pub schema_version: u32,
    /// Targets.
    pub models: Vec<ModelConfig>,
    /// Benchmarks.
    pub benchmarks: Vec<BenchmarkRecord>,
    /// Every judge of the run (the union of the benchmarks' judges).
    pub judges: Vec<String>,
    /// Completions per prompt.
    pub samples_per_prompt: u32,
    /// For a run that re-judged another's completions (`redtrace judge`): that run's id in
    /// the same store. Its completions were copied, never asked for again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejudged_from: Option<i64>,
}

/// What a model asks, as the run's identity sees it: everything but how fast and how
/// patiently it is asked (concurrency, rate, timeout, retries, streaming), so that changing
/// `--concurrency` resumes the same run. A field added to [`ModelConfig`] must be placed here
/// or left out on purpose; a test keeps the two in step.
#[derive(Serialize)]
struct ModelIdentity<'a> {
    name: &'a str,
    source: &'a ModelSource,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_env: &'a Option<String>,
    params: &'a SamplingParams,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    extra: &'a serde_json::Map<String, serde_json::Value>,
    template_opens_think: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    think_prefill: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: &'a Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replay_traces: bool,
}

/// What a run asks: its identity, hashed.
#[derive(Serialize)]
struct RunIdentity<'a> {
    models: Vec<ModelIdentity<'a>>,
    benchmarks: &'a [BenchmarkRecord],
    judges: &'a [String],
    samples_per_prompt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejudged_from: Option<i64>,
}

/// An empty spec of this build's version (no models, no benchmarks), for tests and tools
/// that fill it in.
impl Default for RunSpec {
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new(), Vec::new(), 1)
    }
}

impl RunSpec {
    /// A spec of this build's version.
    pub fn new(
        models: Vec<ModelConfig>,
        benchmarks: Vec<BenchmarkRecord>,
        judges: Vec<String>,
        samples_per_prompt: u32,
    ) -> Self {
        Self {
            schema_version: RUN_SPEC_VERSION,
            models,
            benchmarks,
            judges,
            samples_per_prompt,
            rejudged_from: None,
        }
    }

    /// The spec as stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a run spec serialises")
    }

    /// Reads a stored spec.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The hash of what the run asks and of which data: the same command gives the same hash.
    /// The JSON is taken through `serde_json::Value`, whose keys are sorted, so that the hash
    /// does not hang on the order fields are declared in.
    pub fn identity_hash(&self) -> String {
        sha256_hex(self.identity().to_string().as_bytes())
    }

    /// What the run asks and of which data, as JSON with sorted keys: what
    /// [`RunSpec::identity_hash`] hashes.
    pub fn identity(&self) -> serde_json::Value {
        let identity = RunIdentity {
            models: self
                .models
                .iter()
                .map(|m| ModelIdentity {
                    name: &m.name,
                    source: &m.source,
                    model: &m.model,
                    api_key_env: &m.api_key_env,
                    params: &m.params,
                    extra: &m.extra,
                    template_opens_think: m.template_opens_think,
                    think_prefill: &m.think_prefill,
                    threads: &m.threads,
                    replay_traces: m.replay_traces,
                })
                .collect(),
            benchmarks: &self.benchmarks,
            judges: &self.judges,
            samples_per_prompt: self.samples_per_prompt,
            rejudged_from: self.rejudged_from,
        };
        serde_json::to_value(identity).expect("a run identity serialises")
    }

    /// Where two runs' identities differ, a line each (`models[0].params.max_tokens: 512 ≠
    /// 1024`); empty when they are the same run.
    pub fn differences(&self, other: &RunSpec) -> Vec<String> {
        fn walk(path: String, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
            use serde_json::Value;
            match (a, b) {
                _ if a == b => {}
                (Value::Object(x), Value::Object(y)) => {
                    let keys: std::collections::BTreeSet<&String> =
                        x.keys().chain(y.keys()).collect();
                    for key in keys {
                        let at = if path.is_empty() {
                            key.clone()
                        } else {
                            format!("{path}.{key}")
                        };
                        walk(
                            at,
                            x.get(key).unwrap_or(&Value::Null),
                            y.get(key).unwrap_or(&Value::Null),
                            out,
                        );
                    }
                }
                (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                    for (i, (p, q)) in x.iter().zip(y).enumerate() {
                        walk(format!("{path}[{i}]"), p, q, out);
                    }
                }
                _ => {
                    let show = |v: &Value| {
                        let text = v.to_string();
                        match text.char_indices().nth(80) {
                            Some((at, _)) => format!("{}…", &text[..at]),
                            None => text,
                        }
                    };
                    out.push(format!("{path}: {} ≠ {}", show(a), show(b)));
                }
            }
        }
        let mut out = Vec::new();
        walk(String::new(), &self.identity(), &other.identity(), &mut out);
        out
    }

    /// The targets' names, in the suite's order.
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(|m| m.name.as_str())
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A process is running it (or died without saying so).
    Running,
    /// Every unit was taken and ended.
    Complete,
    /// Stopped before the end; running it again resumes it.
    Interrupted,
    /// Ended by an error; running it again resumes it.
    Failed,
}

impl RunStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }

    /// Reads a stored status.
    pub fn parse(text: &str) -> Option<Self> {
        [
            RunStatus::Running,
            RunStatus::Complete,
            RunStatus::Interrupted,
            RunStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        RunSpec::new(
            vec![ModelConfig::new("http://127.0.0.1:1/v1", "m")],
            vec![BenchmarkRecord {
                sampling: None,
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
            vec!["refusal-rule".into()],
            1,
        )
    }

    #[test]
    fn identity_ignores_operational_settings_only() {
        let base = spec();
        let mut faster = spec();
        faster.models[0].max_concurrency = 64;
        faster.models[0].stream = true;
        faster.models[0].timeout_secs = 5.0;
        faster.models[0].max_retries = 0;
        faster.models[0].requests_per_minute = Some(60);
        assert_eq!(base.identity_hash(), faster.identity_hash());
        let mut hotter = spec();
        hotter.models[0].params.temperature = Some(0.7);
        assert_ne!(base.identity_hash(), hotter.identity_hash());
        let mut other_data = spec();
        other_data.benchmarks[0].sha256 = "def".into();
        assert_ne!(base.identity_hash(), other_data.identity_hash());
        let mut prefilled = spec();
        prefilled.models[0].think_prefill = Some("<think>\n".into());
        assert_ne!(base.identity_hash(), prefilled.identity_hash());
        // A seeded sample drawn another way is another run: a resume never mixes two samples.
        let mut seeded = spec();
        seeded.benchmarks[0].sample_seed = Some(3);
        let mut stratified = seeded.clone();
        stratified.benchmarks[0].sampling = Some("stratified-by-category".into());
        assert_ne!(seeded.identity_hash(), stratified.identity_hash());
        // Re-judging a run is a run of its own, whatever judges it names.
        let mut rejudged = spec();
        rejudged.rejudged_from = Some(1);
        assert_ne!(base.identity_hash(), rejudged.identity_hash());
    }

    /// The typed identity is the hash earlier versions computed (the spec's JSON without the
    /// operational keys), so runs stored by them resume; and every field of a model is either
    /// in the identity or one of the operational ones.
    #[test]
    fn identity_matches_the_stored_runs_of_earlier_versions() {
        const OPERATIONAL: &[&str] = &[
            "max_concurrency",
            "requests_per_minute",
            "timeout_secs",
            "max_retries",
            "stream",
        ];
        let mut spec = spec();
        spec.models[0].think_prefill = Some("<think>\n".into());
        spec.models[0].threads = Some(2);
        spec.models[0].api_key_env = Some("KEY".into());
        spec.models[0]
            .extra
            .insert("reasoning_effort".into(), "high".into());
        let mut earlier = serde_json::to_value(&spec).unwrap();
        earlier.as_object_mut().unwrap().remove("schema_version");
        for model in earlier["models"].as_array_mut().unwrap() {
            for key in OPERATIONAL {
                model.as_object_mut().unwrap().remove(*key);
            }
        }
        assert_eq!(
            spec.identity_hash(),
            sha256_hex(earlier.to_string().as_bytes())
        );
    }

    #[test]
    fn specs_stored_without_a_version_read_as_version_one() {
        let mut value = serde_json::to_value(spec()).unwrap();
        value.as_object_mut().unwrap().remove("schema_version");
        let read = RunSpec::from_json(&value.to_string()).unwrap();
        assert_eq!(read.schema_version, 1);
        assert_eq!(read, spec());
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            RunStatus::Running,
            RunStatus::Complete,
            RunStatus::Interrupted,
            RunStatus::Failed,
        ] {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{status}\"")
            );
        }
        assert_eq!(RunStatus::parse("done"), None);
    }
}

/// One of `count` disjoint parts of a run (`--shard INDEX/COUNT`, INDEX from 0): the units
/// whose key hashes to `index`. The same on every machine and in every session, so the shards
/// of a run together are exactly the run, each unit in one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which part, from 0.
    pub index: u32,
    /// How many parts.
    pub count: u32,
}

impl Shard {
    /// Reads `INDEX/COUNT` (`0/4` … `3/4`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("--shard '{text}': give INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4 (a SLURM array's $SLURM_ARRAY_TASK_ID, a Kubernetes Indexed Job's $JOB_COMPLETION_INDEX)")
        };
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = index.trim().parse().map_err(|_| bad())?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// Whether the unit (`model`, `benchmark`, `sample_id`, completion `k`) is in this shard.
    pub fn holds(&self, model: &str, benchmark: &str, sample_id: &str, k: u32) -> bool {
        if self.count == 1 {
            return true;
        }
        let digest =
            sha256_hex(format!("{model}\u{1f}{benchmark}\u{1f}{sample_id}\u{1f}{k}").as_bytes());
        let value = u64::from_str_radix(&digest[..16], 16).expect("hex digits");
        value % u64::from(self.count) == u64::from(self.index)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod shard_tests {
    use super::*;

    #[test]
    fn shards_split_units_disjointly_and_cover_them() {
        let shards: Vec<Shard> = (0..3)
            .map(|i| Shard::parse(&format!("{i}/3")).unwrap())
            .collect();
        let mut sizes = [0; 3];
        for unit in 0..3000 {
            let id = unit.to_string();
            let holders: Vec<usize> = (0..3)
                .filter(|&s| shards[s].holds("m", "b", &id, 0))
                .collect();
            assert_eq!(holders.len(), 1, "unit {unit} in exactly one shard");
            sizes[holders[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| (900..1100).contains(&n)), "{sizes:?}");
        for bad in ["3/3", "1", "a/b", "0/0", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
