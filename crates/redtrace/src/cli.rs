//! Command-line arguments, as clap parses them; resolution into settings is in `settings`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// redtrace: safety assessment of large reasoning models, with the thinking trace judged
/// apart from the answer.
#[derive(Debug, Parser)]
#[command(name = "redtrace", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run benchmarks against models and judge every answer and trace.
    #[command(after_help = "Examples:
  redtrace run --model deepseek-r1@http://127.0.0.1:8000/v1 --bench xstest --data-dir ../shared/data --limit 20
  redtrace run --model hf:bartowski/DeepSeek-R1-Distill-Qwen-1.5B-GGUF/DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf --bench xstest --limit 10
  redtrace run suite.toml
  redtrace run --model qwq@http://127.0.0.1:11434/v1 --bench file:prompts.csv --prompt-field question")]
    Run(Box<RunArgs>),
    /// Show a stored run's metrics.
    #[command(
        after_help = "Examples:\n  redtrace report --run last\n  redtrace report --run 3 --format json"
    )]
    Report(ReportArgs),
    /// Export a stored run, one line per (sample, completion).
    #[command(
        after_help = "Examples:\n  redtrace export --run last --format jsonl > results.jsonl"
    )]
    Export(ExportArgs),
    /// List stored runs.
    Runs(RunsArgs),
    /// List the built-in attacks (for --attack).
    Attacks,
    /// List, download and check the benchmark data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Measure judges against people on a human-labelled set.
    #[command(
        name = "judge-eval",
        after_help = "Examples:
  redtrace judge-eval --judge refusal-rule --labels xstest-completions --data-dir ../shared/data
  redtrace judge-eval --judge harm,refusal-rule --ensemble majority --judge-model gpt-4o-mini@https://api.openai.com/v1 \\
      --labels jbb-judges --data-dir ../shared/data
  redtrace judge-eval --judge harm --judge-model gguf:judge.gguf --labels human-labelled:harmbench_response --limit 200

Label sets: xstest-completions, jbb-judges, human-labelled:NAME (a file of human_labelled/), file:PATH.jsonl"
    )]
    JudgeEval(JudgeEvalArgs),
    /// Browse runs, metrics and samples in a local web viewer (live while a run writes).
    #[command(after_help = "Examples:
  redtrace view                      # http://127.0.0.1:8700
  redtrace view --db suite.db --port 9000

Keys on a sample page: j / → next, k / ← previous, u / Esc back to the list.")]
    View(ViewArgs),
    /// How many samples a wanted interval width needs, from a pilot rate.
    #[command(after_help = "Examples:\n  redtrace plan --rate 0.12 --width 0.10")]
    Plan(PlanArgs),
    /// Measure speed and memory of the whole path against a local fake server.
    #[command(
        after_help = "Examples:\n  redtrace bench --samples 5000 --concurrency 64 --latency-ms 20\n  redtrace bench --samples 100000 --latency-ms 0"
    )]
    Bench(BenchArgs),
}

/// Where the store is.
#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// The SQLite store.
    #[arg(long, env = "REDTRACE_DB", default_value = "redtrace.db")]
    pub db: PathBuf,
}

/// `redtrace run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A TOML suite file naming models, benchmarks and judges (see README).
    pub suite: Option<PathBuf>,
    /// A model (repeatable): MODEL@BASE_URL for an OpenAI-compatible endpoint, gguf:PATH for a
    /// local GGUF file, hf:OWNER/REPO/FILE.gguf for a GGUF file on the Hugging Face hub.
    #[arg(long = "model", value_name = "REF")]
    pub models: Vec<String>,
    /// Benchmarks: registry names or file:PATH, comma-separated or repeated.
    #[arg(long = "bench", value_delimiter = ',', value_name = "NAME")]
    pub benches: Vec<String>,
    /// Where data sets live [env: REDTRACE_DATA].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Judges, comma-separated: NAME or NAME=MODEL_REF [default: each benchmark's own judges,
    /// those that call a model only with --judge-model].
    #[arg(long = "judge", value_delimiter = ',', value_name = "NAME")]
    pub judges: Vec<String>,
    /// The model LLM judges call (any model reference a target can use).
    #[arg(long, value_name = "REF")]
    pub judge_model: Option<String>,
    /// A rubric template file for a judge, NAME=PATH (repeatable).
    #[arg(long = "judge-template", value_name = "NAME=PATH")]
    pub judge_templates: Vec<String>,
    /// What the judges judge: answer, reasoning, or both [default: both].
    #[arg(long, value_delimiter = ',', value_name = "CHANNEL")]
    pub channels: Vec<String>,
    /// The scoring endpoint of the reward judge (--judge reward):
    /// URL[,format=score|classify|messages][,model=M][,path=data.0.score][,threshold=0].
    #[arg(long, value_name = "SPEC")]
    pub reward: Option<String>,
    /// Judge texts longer than N characters (long traces) in overlapping windows of N.
    #[arg(long, value_name = "N")]
    pub chunk_chars: Option<usize>,
    /// How window verdicts combine: any-unsafe (default) or majority.
    #[arg(long, value_name = "RULE", default_value = "any-unsafe")]
    pub chunk_combine: String,
    /// Environment variable holding the API key [default: OPENAI_API_KEY when set].
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Requests in flight at once per endpoint.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Requests per minute per endpoint.
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Per-request timeout in seconds.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Retries for rate limits, server errors, timeouts and dropped connections.
    #[arg(long)]
    pub retries: Option<u32>,
    /// Stream responses (server-sent events).
    #[arg(long)]
    pub stream: bool,
    /// Sampling temperature.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Token budget for trace and answer.
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Start every answer with this text, e.g. "<think>\n" to force a trace.
    #[arg(long)]
    pub think_prefill: Option<String>,
    /// Threads for in-process (gguf:, hf:) models.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Use at most N samples per benchmark.
    #[arg(long)]
    pub limit: Option<usize>,
    /// With --limit: pick the samples at random with this seed.
    #[arg(long)]
    pub sample_seed: Option<u64>,
    /// Attacks, comma-separated, each applied to every benchmark (reported as BENCH+ATTACK);
    /// `none` keeps the plain benchmark too. See `redtrace attacks`.
    #[arg(long = "attack", value_delimiter = ',', value_name = "NAME")]
    pub attacks: Vec<String>,
    /// The model that writes model-driven attacks (translate:LANGUAGE, past-tense, pair, tap,
    /// crescendo); any model reference a target can use. Those that rate replies also call
    /// the judge model (--judge-model).
    #[arg(long, value_name = "REF")]
    pub attacker_model: Option<String>,
    /// Target queries per sample at most for model-driven attacks.
    #[arg(long, value_name = "N")]
    pub attack_budget: Option<u32>,
    /// Run every model at several values of one setting, KEY=V1,V2,... (max_tokens,
    /// temperature, top_p, or a request field such as reasoning_effort); each value is a model
    /// of its own, named NAME@KEY=VALUE, and the findings report safety versus that setting.
    #[arg(long, value_name = "KEY=VALUES")]
    pub sweep: Option<String>,
    /// Completions per prompt, each with its own seed (the model's seed + k): the report then
    /// gives Safe@1, Safe@K and ConsSafe@K.
    #[arg(long, value_name = "K")]
    pub samples: Option<u32>,
    /// For file: benchmarks, the prompt field.
    #[arg(long, default_value = "prompt")]
    pub prompt_field: String,
    /// For file: benchmarks, the id field (row number when absent from the file).
    #[arg(long)]
    pub id_field: Option<String>,
    /// For file: benchmarks, category fields (comma-separated, most general first).
    #[arg(long, value_delimiter = ',')]
    pub category_field: Vec<String>,
    /// For file: benchmarks, a safe/unsafe label field.
    #[arg(long)]
    pub label_field: Option<String>,
    /// For file: benchmarks, a system-prompt field.
    #[arg(long)]
    pub system_field: Option<String>,
    /// Do not serve requests from earlier runs' completions.
    #[arg(long)]
    pub no_cache: bool,
    /// Start a new run even if this exact run exists (it still uses the cache).
    #[arg(long)]
    pub new_run: bool,
    /// No progress bar and no report at the end.
    #[arg(long, short)]
    pub quiet: bool,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Output formats of `report`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    /// A table for the terminal.
    Table,
    /// Markdown.
    Md,
    /// JSON.
    Json,
    /// One self-contained HTML file (no script, no network).
    Html,
}

/// `redtrace report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// `last` or a run id.
    #[arg(long, default_value = "last")]
    pub run: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Also compare with this run (`last` or an id), paired on the same samples.
    #[arg(long, value_name = "RUN")]
    pub compare: Option<String>,
    /// Instead, the paper's tables (safety rates, attack success, answer vs thinking, XSTest,
    /// spear phishing), in Markdown, from a run of the paper's benchmarks.
    #[arg(long, conflicts_with_all = ["compare", "format"])]
    pub paper: bool,
    /// Instead, the paper's four findings with intervals: the safety gap between models, the
    /// harmfulness of unsafe answers, safety thinking in the trace, trace vs answer.
    #[arg(long, conflicts_with_all = ["compare", "format", "paper"])]
    pub findings: bool,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

/// `redtrace plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The rate a pilot run measured (0 to 1), e.g. 0.12.
    #[arg(long)]
    pub rate: f64,
    /// The full width of the 95% interval wanted (0 to 1), e.g. 0.10 for ±5 points.
    #[arg(long)]
    pub width: f64,
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ExportFormat {
    /// JSON lines, one object per (sample, completion), nested.
    Jsonl,
    /// CSV with a header row, flat.
    Csv,
    /// Parquet (needs --output), flat, snappy-compressed.
    Parquet,
}

/// `redtrace export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// `last` or a run id.
    #[arg(long, default_value = "last")]
    pub run: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

/// `redtrace runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

/// `redtrace data`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// The data sets redtrace knows: files, size, license, where they come from.
    List,
    /// Download data sets into the data directory, checking each file's SHA-256.
    #[command(after_help = "Examples:
  redtrace data pull xstest cyberseceval
  redtrace data pull --all --data-dir ~/data

Files already there with the right hash are never fetched again.")]
    Pull {
        /// Data sets (see `redtrace data list`).
        names: Vec<String>,
        /// Every data set.
        #[arg(long)]
        all: bool,
        /// Where data goes [env: REDTRACE_DATA; default: ~/.cache/redtrace/data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Fetch from this mirror instead (files at MIRROR/PATH, laid out like the data
        /// directory).
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
    },
    /// One data set's files: present, missing or different, and where each comes from.
    Info {
        /// The data set.
        name: String,
        /// The data directory to check [env: REDTRACE_DATA; default: ~/.cache/redtrace/data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// `redtrace judge-eval`.
#[derive(Debug, Args)]
pub struct JudgeEvalArgs {
    /// Judges to measure, comma-separated: NAME or NAME=MODEL_REF.
    #[arg(
        long = "judge",
        value_delimiter = ',',
        value_name = "NAME",
        required = true
    )]
    pub judges: Vec<String>,
    /// The model LLM judges call.
    #[arg(long, value_name = "REF")]
    pub judge_model: Option<String>,
    /// A rubric template file for a judge, NAME=PATH (repeatable).
    #[arg(long = "judge-template", value_name = "NAME=PATH")]
    pub judge_templates: Vec<String>,
    /// Also measure the judges combined: majority or any-unsafe.
    #[arg(long, value_name = "RULE")]
    pub ensemble: Option<String>,
    /// The labelled set.
    #[arg(long, value_name = "SET")]
    pub labels: String,
    /// Where data sets live [env: REDTRACE_DATA].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use at most this many items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// With --limit: a seeded random sample of items instead of the first ones.
    #[arg(long)]
    pub sample_seed: Option<u64>,
    /// Items judged at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The store that caches judge replies.
    #[command(flatten)]
    pub db: DbArgs,
}

/// `redtrace view`.
#[derive(Debug, Args)]
pub struct ViewArgs {
    /// The port (0 picks a free one).
    #[arg(long, default_value_t = 8700)]
    pub port: u16,
    /// The address to listen on. Anything but a loopback address serves every model output
    /// in the store to the network, so it needs --allow-remote too.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Allow a non-loopback --host.
    #[arg(long)]
    pub allow_remote: bool,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

/// `redtrace bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Samples to run.
    #[arg(long, default_value_t = 5000)]
    pub samples: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The fake server's latency per request, milliseconds.
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Stream responses.
    #[arg(long)]
    pub stream: bool,
    /// Instead, measure in-process inference of this GGUF file: prompt and generation tokens
    /// per second over --samples prompts, --concurrency sequences decoded together.
    #[arg(long, value_name = "PATH")]
    pub gguf: Option<std::path::PathBuf>,
    /// With --gguf: tokens to generate per prompt.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u64,
    /// With --gguf: threads (default suited to the machine).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Instead, measure report generation over a store holding this many verdicts (two per
    /// completion: answer and trace).
    #[arg(long, value_name = "N")]
    pub report_verdicts: Option<u64>,
}
