//! The progress bar on stderr: done / errors / rate / ETA, drawn only on a terminal.

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
}

impl Bar {
    /// A bar on stderr, hidden when stderr is not a terminal or `quiet` is set.
    pub fn new(quiet: bool) -> Self {
        let bar = ProgressBar::hidden();
        if !quiet && std::io::stderr().is_terminal() {
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
        }
    }

    fn refresh_message(&self) {
        self.bar.set_message(format!(
            "errors {} cached {} resumed {}",
            self.errors.load(Ordering::Relaxed),
            self.cached.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed)
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
