//! The progress bar on stderr: done / errors / rate / ETA, drawn on a terminal; elsewhere (a
//! log file, a CI job) a plain line every few seconds instead of silence.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use redtrace_engine::{Progress, UnitOutcome};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

/// Draws the engine's progress with indicatif.
pub struct Bar {
    bar: ProgressBar,
    errors: AtomicU64,
    cached: AtomicU64,
    skipped: AtomicU64,
    /// Tokens used so far, and micro-dollars spent on priced calls.
    tokens: AtomicU64,
    micro_usd: AtomicU64,
    /// A call of a model without a price was made.
    unpriced: std::sync::atomic::AtomicBool,
    /// Plain progress lines when stderr is not a terminal: the last one's time.
    lines: Option<std::sync::Mutex<std::time::Instant>>,
    every: std::time::Duration,
}

/// How often a plain progress line is written: every 5 s, or every
/// `REDTRACE_PROGRESS_EVERY` seconds.
fn line_every() -> std::time::Duration {
    std::env::var("REDTRACE_PROGRESS_EVERY")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map_or(
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs_f64,
        )
}

impl Bar {
    /// A bar on stderr, hidden when stderr is not a terminal or `quiet` is set.
    pub fn new(quiet: bool) -> Self {
        let bar = ProgressBar::hidden();
        let terminal = std::io::stderr().is_terminal();
        if !quiet && terminal {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} {per_sec} ETA {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        Self {
            bar,
            errors: AtomicU64::new(0),
            cached: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            micro_usd: AtomicU64::new(0),
            unpriced: std::sync::atomic::AtomicBool::new(false),
            lines: (!quiet && !terminal).then(|| std::sync::Mutex::new(std::time::Instant::now())),
            every: line_every(),
        }
    }

    /// Writes a plain progress line when one is due (stderr not a terminal).
    fn line(&self, force: bool) {
        let Some(last) = &self.lines else { return };
        let mut last = last.lock().expect("not poisoned");
        if !force && last.elapsed() < self.every {
            return;
        }
        *last = std::time::Instant::now();
        let done = self.bar.position();
        let elapsed = self.bar.elapsed().as_secs_f64().max(1e-9);
        let rate = done as f64 / elapsed;
        let eta = self
            .bar
            .length()
            .filter(|total| *total > done && rate > 0.0)
            .map(|total| format!(", ETA {:.0} s", (total - done) as f64 / rate))
            .unwrap_or_default();
        eprintln!(
            "progress: {done}{} units, {:.1}/s, {} errors{eta}{}",
            self.bar
                .length()
                .map(|total| format!("/{total}"))
                .unwrap_or_default(),
            rate,
            self.errors.load(Ordering::Relaxed),
            self.spent()
        );
    }

    /// Tokens and dollars spent, as the bar and the lines show them.
    fn spent(&self) -> String {
        let tokens = self.tokens.load(Ordering::Relaxed);
        if tokens == 0 {
            return String::new();
        }
        format!(
            " {:.1}k tok ${:.4}{}",
            tokens as f64 / 1000.0,
            self.micro_usd.load(Ordering::Relaxed) as f64 / 1e6,
            if self.unpriced.load(Ordering::Relaxed) {
                " (+ unpriced)"
            } else {
                ""
            }
        )
    }

    fn refresh_message(&self) {
        self.bar.set_message(format!(
            "errors {} cached {} resumed {}{}",
            self.errors.load(Ordering::Relaxed),
            self.cached.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.spent()
        ));
    }
}

impl Progress for Bar {
    fn begin(&self, total: Option<u64>) {
        // A download may have used the bar for its bytes.
        self.bar.set_position(0);
        if let Some(total) = total {
            self.bar.set_length(total);
        }
        self.refresh_message();
    }

    fn unit(&self, outcome: UnitOutcome) {
        let counter = match outcome {
            UnitOutcome::Failed => Some(&self.errors),
            UnitOutcome::Cached => Some(&self.cached),
            UnitOutcome::Skipped | UnitOutcome::Rejudged => Some(&self.skipped),
            UnitOutcome::Answered => None,
            UnitOutcome::Unsent => return,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
            self.refresh_message();
        }
        self.bar.inc(1);
        self.line(false);
    }

    fn spend(&self, tokens: u64, usd: Option<f64>) {
        self.tokens.fetch_add(tokens, Ordering::Relaxed);
        match usd {
            Some(usd) => {
                self.micro_usd
                    .fetch_add((usd * 1e6).round() as u64, Ordering::Relaxed);
            }
            None => self.unpriced.store(true, Ordering::Relaxed),
        }
        self.refresh_message();
    }

    fn bytes(&self, file: &str, done: u64, total: u64) {
        if done == 0 {
            self.bar.set_length(total);
            self.bar.set_message(file.to_owned());
        }
        self.bar.set_position(done);
    }

    fn note(&self, message: &str) {
        if self.bar.is_hidden() {
            eprintln!("{message}");
        } else {
            self.bar.println(message);
        }
    }

    fn end(&self) {
        self.bar.finish_and_clear();
    }
}
