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
    /// Judge a stored run's completions again with other judges, into a new run linked to it;
    /// nothing is sent to the targets.
    #[command(after_help = "Examples:
  redtrace judge --run 3 --judge refusal-llm --judge-model gpt-4o-mini@https://api.openai.com/v1
  redtrace judge --run last --judge xstest=refusal-rule,airbench=airbench --judge-model qwen@http://127.0.0.1:8000/v1
  redtrace report --compare 3    # the re-judged run against the original, paired

Benchmarks no judge is named for are left out. The same command again resumes the re-judging.")]
    Judge(Box<JudgeArgs>),
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
    /// Bring generations made elsewhere into the store, to judge them with `redtrace judge`.
    #[command(after_help = "Examples:
  redtrace import generations.jsonl --model my-r1 --bench my-prompts
  redtrace import results.csv           # an export of redtrace's, or any file with its fields
  redtrace import logs/2026-12-01T10-00-00_task_abc.eval   # an inspect_ai log, traces kept
  redtrace judge --run last --judge refusal-llm --judge-model J@URL

JSONL and CSV take the fields `export` writes: prompt (or messages), reasoning (the trace),
answer, and optionally model, benchmark, sample_id, sample_k, category, prompt_label,
error_message; other fields are kept as the sample's metadata.")]
    Import(ImportArgs),
    /// List stored runs.
    Runs(RunsArgs),
    /// Upgrade a store written by an older redtrace to this version's schema, in place.
    Migrate(DbArgs),
    /// Merge the stores of a run's shards (`run --shard K/N`) into one.
    #[command(
        after_help = "Examples:\n  redtrace merge shard-0.db shard-1.db shard-2.db --into all.db"
    )]
    Merge(MergeArgs),
    /// Work a run of a PostgreSQL store with its other workers, until its queue is empty.
    ///
    /// The run is worked as it was started (`redtrace run --db postgres://…`, with or
    /// without --enqueue-only): its command line is stored with it.
    #[command(after_help = "Examples:
  redtrace run suite.toml --db postgres://rt@db/redtrace --enqueue-only
  redtrace worker --db postgres://rt@db/redtrace --concurrency 16    # on each machine")]
    Worker(WorkerArgs),
    /// Gate a release on a run's rates: exits 1 with a table of what failed.
    #[command(after_help = "Examples:
  redtrace check --run last --max-unsafe airbench=0.2,jbb+pair=0.3 --min-refusal xstest-unsafe=0.9
  redtrace check --max-refusal xstest-safe=10%

BENCH-safe and BENCH-unsafe hold a benchmark that mixes safe and unsafe prompts (XSTest,
WildGuardTest) on those rows; each rate is read through the benchmark's own judge, on its
answers, for every model of the run. A threshold the run has no data for fails.")]
    Check(CheckArgs),
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
    /// How many samples a wanted interval width needs, from a pilot rate; or, with --cost,
    /// what a run will cost before anything is sent.
    #[command(
        after_help = "Examples:\n  redtrace plan --rate 0.12 --width 0.10\n  redtrace plan --cost --suite suite.toml --prices prices.toml\n  redtrace plan --cost --model openai:o3-mini --bench harmbench --max-tokens 4096"
    )]
    Plan(Box<PlanArgs>),
    /// Measure speed and memory of the whole path against a local fake server.
    #[command(
        after_help = "Examples:\n  redtrace bench --samples 5000 --concurrency 64 --latency-ms 20\n  redtrace bench --samples 100000 --latency-ms 0"
    )]
    Bench(BenchArgs),
}

/// Where the store is.
#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// The store: a SQLite file, or a PostgreSQL URL (postgres://USER@HOST/DB).
    #[arg(long, env = "REDTRACE_DB", default_value = "redtrace.db")]
    pub db: PathBuf,
}

/// `redtrace worker`: which shared store and run, and this worker's own limits.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The shared store: a PostgreSQL URL (postgres://USER@HOST/DB, ?host=/run/dir for a
    /// socket folder).
    #[arg(long, env = "REDTRACE_DB")]
    pub db: PathBuf,
    /// The run to work: its id, or `last` (the latest run).
    #[arg(long, default_value = "last")]
    pub run: String,
    /// Requests in flight at once per endpoint, on this worker [default: as the run was
    /// started].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// How long this worker holds the units it took without its heartbeat; a dead worker's
    /// units go to the others after this long.
    #[arg(long, value_name = "SECS")]
    pub lease_secs: Option<f64>,
    /// No progress bar and no report at the end.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `redtrace run`: a suite file, and the overrides laid over it.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A TOML suite file naming models, benchmarks and judges (see README).
    pub suite: Option<PathBuf>,
    /// Everything that overrides the suite file (or makes a suite without one).
    #[command(flatten)]
    pub overrides: redtrace_suite::Overrides,
    /// No progress bar and no report at the end.
    #[arg(long, short)]
    pub quiet: bool,
    /// Exit 1 when a judge left more than this share of the texts it had to judge unscored
    /// (failed calls, unparseable replies); every judge with unscored verdicts is reported.
    #[arg(long, default_value_t = 0.2, value_name = "SHARE")]
    pub max_unscored: f64,
}

/// `redtrace judge`: a stored run and the judges to judge it with.
#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// The stored run: `last` or a run id.
    #[arg(long, default_value = "last")]
    pub run: String,
    /// The judges and how they judge.
    #[command(flatten)]
    pub judging: redtrace_suite::JudgeOverrides,
    /// Where data sets live, for judges that read their method from there [env: REDTRACE_DATA].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Judge requests in flight at once per endpoint.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Judge requests per minute per endpoint.
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Per-request timeout in seconds.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Retries for rate limits, server errors, timeouts and dropped connections.
    #[arg(long)]
    pub retries: Option<u32>,
    /// No progress bar and no report at the end.
    #[arg(long, short)]
    pub quiet: bool,
    /// Exit 1 when a judge left more than this share of the texts it had to judge unscored.
    #[arg(long, default_value_t = 0.2, value_name = "SHARE")]
    pub max_unscored: f64,
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
    /// Output format [default: table; md with --paper or --findings, which also take json].
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// Also compare with this run (`last` or an id), paired on the same samples.
    #[arg(long, value_name = "RUN")]
    pub compare: Option<String>,
    /// Instead, the paper's tables (safety rates, attack success, answer vs thinking, XSTest,
    /// spear phishing) from a run of the paper's benchmarks, in Markdown or JSON.
    #[arg(long, conflicts_with_all = ["compare"])]
    pub paper: bool,
    /// Instead, the paper's four findings with intervals: the safety gap between models, the
    /// harmfulness of unsafe answers, safety thinking in the trace, trace vs answer; in
    /// Markdown or JSON.
    #[arg(long, conflicts_with_all = ["compare", "paper"])]
    pub findings: bool,
    /// Only these models (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub model: Vec<String>,
    /// Only these benchmarks, as the run names them (`xstest`, `jbb+pair`).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub bench: Vec<String>,
    /// Only these categories (a category keeps its subcategories; `(unsafe prompts)` works).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub category: Vec<String>,
    /// Only these judges (`harm` keeps `harm:MODEL`).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub judge: Vec<String>,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

/// `redtrace merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' stores (each one's latest run; all must be the same run).
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
    /// The store to merge into: a SQLite file (made if missing) or a PostgreSQL URL; a run of
    /// the same identity there is added to.
    #[arg(long)]
    pub into: PathBuf,
}

/// `redtrace plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The rate a pilot run measured (0 to 1), e.g. 0.12.
    #[arg(long, required_unless_present = "cost")]
    pub rate: Option<f64>,
    /// The full width of the 95% interval wanted (0 to 1), e.g. 0.10 for ±5 points.
    #[arg(long, required_unless_present = "cost")]
    pub width: Option<f64>,
    /// Instead, estimate what a run costs before anything is sent: tokens and dollars per
    /// model × benchmark, the judges apart, each a range (with a suite, or --model and
    /// --bench, and the run's other flags).
    #[arg(long)]
    pub cost: bool,
    /// With --cost: the suite file.
    #[arg(long, requires = "cost")]
    pub suite: Option<PathBuf>,
    /// With --cost: JSON instead of a table.
    #[arg(long, requires = "cost")]
    pub json: bool,
    /// With --cost: the run as `redtrace run` would take it.
    #[command(flatten)]
    pub overrides: redtrace_suite::Overrides,
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
    /// inspect_ai logs (needs --output DIR), one .eval file per model and benchmark, the trace
    /// as a reasoning block and every verdict as a score: `inspect view` opens them.
    Inspect,
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

/// `redtrace import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A .jsonl, .csv or inspect_ai .eval file.
    pub file: PathBuf,
    /// The model of records that do not name one [default: imported; an inspect log's model].
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// The benchmark of records that do not name one [default: file:NAME; an inspect log's
    /// task].
    #[arg(long, value_name = "NAME")]
    pub bench: Option<String>,
    /// The store.
    #[command(flatten)]
    pub db: DbArgs,
}

/// `redtrace check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// `last` or a run id.
    #[arg(long, default_value = "last")]
    pub run: String,
    /// A suite file: its `[thresholds]` table (added to any given here) and its store.
    #[arg(long, value_name = "FILE")]
    pub suite: Option<PathBuf>,
    /// BENCH=RATE: the answers' unsafe share (1 − the benchmark's safety rate) at most RATE.
    #[arg(long, value_delimiter = ',', value_name = "BENCH=RATE")]
    pub max_unsafe: Vec<String>,
    /// BENCH=RATE: the answers' refusal rate at least RATE.
    #[arg(long, value_delimiter = ',', value_name = "BENCH=RATE")]
    pub min_refusal: Vec<String>,
    /// BENCH=RATE: the answers' refusal rate at most RATE (over-refusal).
    #[arg(long, value_delimiter = ',', value_name = "BENCH=RATE")]
    pub max_refusal: Vec<String>,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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
    /// Delete this run (its samples, completions and verdicts) from the store.
    #[arg(long, value_name = "RUN")]
    pub delete: Option<String>,
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
    /// Environment variable holding the judge model's key [default: OPENAI_API_KEY, only for
    /// api.openai.com].
    #[arg(long, value_name = "NAME")]
    pub judge_api_key_env: Option<String>,
    /// A rubric template file for a judge, NAME=PATH (repeatable).
    #[arg(long = "judge-template", value_name = "NAME=PATH")]
    pub judge_templates: Vec<String>,
    /// Also measure the judges combined: majority or any-unsafe.
    #[arg(long, value_name = "RULE", value_parser = redtrace_judges::Combine::parse)]
    pub ensemble: Option<redtrace_judges::Combine>,
    /// The threshold on P(Yes) above which ShieldGemma's verdict is unsafe [default: 0.5].
    #[arg(long, value_name = "P")]
    pub guard_threshold: Option<f64>,
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
    /// The API the fake server is spoken to in: openai (chat completions), anthropic,
    /// openai-responses, gemini or ollama.
    #[arg(long, default_value = "openai")]
    pub api: String,
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
    /// Instead, kill -9 a `redtrace run` N times mid-run (judged by an LLM judge on a second
    /// fake server with the same latency), then let it finish: requests sent again per kill,
    /// against the requests in flight (target and judge) at each kill.
    #[arg(long, value_name = "N")]
    pub kill_test: Option<u32>,
    /// With --kill-test: judge with the refusal rule instead (no judge calls: completions come
    /// as fast as the target answers, the case that fills the writer's queue).
    #[arg(long)]
    pub rule_judge: bool,
    /// Into this store instead of a temporary SQLite file: a PostgreSQL URL measures the
    /// shared store (the run queued first, then worked by --workers workers, each with
    /// --concurrency of its own; with --report-verdicts, the report over it).
    #[arg(long, value_name = "URL")]
    pub db: Option<std::path::PathBuf>,
    /// With a PostgreSQL --db: workers taking the run's units together (in this process).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}
