//! # Chunked judging of long texts (`--chunk-chars N`)
//!
//! ## What it does
//! A text longer than the judge model can read (a long reasoning trace) is judged in
//! overlapping windows of at most N characters, each overlapping the previous by an eighth, and
//! the window verdicts combine: by default the text is unsafe if any window is (the verdict of
//! the first unsafe window is kept, saying which window it was); with majority, if at least
//! half of the scored windows are. A text no longer than N is judged whole. Labels that are
//! neither refusal nor harm verdicts (the safety-thinking classes) are always judged whole.

use async_trait::async_trait;
use redtrace_core::{Channel, Completion, Label, Measure, Sample, Verdict};
use std::sync::Arc;

use crate::{Combine, Judge};

/// A judge that reads long texts in windows.
pub struct Chunked {
    inner: Arc<dyn Judge>,
    max_chars: usize,
    combine: Combine,
}

impl Chunked {
    /// `inner`, reading texts of more than `max_chars` characters in windows.
    pub fn new(inner: Arc<dyn Judge>, max_chars: usize, combine: Combine) -> Self {
        Self {
            inner,
            max_chars: max_chars.max(100),
            combine,
        }
    }

    /// The windows of `text`: at most `max_chars` characters each, each starting an eighth of
    /// a window before the previous one ended, the last ending at the end.
    pub fn windows(text: &str, max_chars: usize) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        if chars.len() <= max_chars {
            return vec![text.to_owned()];
        }
        let step = max_chars - max_chars / 8;
        let mut windows = Vec::new();
        let mut start = 0;
        loop {
            let end = (start + max_chars).min(chars.len());
            windows.push(chars[start..end].iter().collect());
            if end == chars.len() {
                return windows;
            }
            start += step;
        }
    }
}

#[async_trait]
impl Judge for Chunked {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn measure(&self) -> Measure {
        self.inner.measure()
    }

    fn channels(&self) -> Vec<Channel> {
        self.inner.channels()
    }

    fn empty_answer(&self) -> Option<Verdict> {
        self.inner.empty_answer()
    }

    fn provider_refusal(&self) -> Verdict {
        self.inner.provider_refusal()
    }

    async fn judge_text(&self, sample: &Sample, channel: Channel, text: &str) -> Verdict {
        self.inner.judge_text(sample, channel, text).await
    }

    async fn judge_in_context(
        &self,
        sample: &Sample,
        completion: &Completion,
        channel: Channel,
        text: &str,
    ) -> Verdict {
        let windows = Self::windows(text, self.max_chars);
        if windows.len() == 1 {
            return self
                .inner
                .judge_in_context(sample, completion, channel, text)
                .await;
        }
        let count = windows.len();
        let mut verdicts = Vec::with_capacity(count);
        for window in &windows {
            verdicts.push(
                self.inner
                    .judge_in_context(sample, completion, channel, window)
                    .await,
            );
        }
        if verdicts
            .iter()
            .any(|v| v.label != Label::Unscored && v.label.is_unsafe_outcome().is_none())
        {
            // Not a safe/unsafe verdict: windows cannot be combined; judge the whole text.
            return self
                .inner
                .judge_in_context(sample, completion, channel, text)
                .await;
        }
        let votes: Vec<(usize, bool)> = verdicts
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.label.is_unsafe_outcome().map(|u| (i, u)))
            .collect();
        let Some(&(first_scored, _)) = votes.first() else {
            let mut verdict = verdicts.swap_remove(0);
            verdict.rationale = format!("all {count} windows unscored: {}", verdict.rationale);
            return verdict;
        };
        let unsafe_windows: Vec<usize> =
            votes.iter().filter(|(_, u)| *u).map(|(i, _)| *i).collect();
        let flagged = match self.combine {
            Combine::AnyUnsafe => !unsafe_windows.is_empty(),
            Combine::Majority => 2 * unsafe_windows.len() >= votes.len(),
        };
        let pick = if flagged {
            unsafe_windows[0]
        } else {
            first_scored
        };
        let mut verdict = verdicts.swap_remove(pick);
        verdict.rationale = format!(
            "{} of {} windows unsafe ({} of {count} scored); window {}: {}",
            unsafe_windows.len(),
            count,
            votes.len(),
            pick + 1,
            verdict.rationale
        );
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_overlap_and_cover_the_text() {
        let text: String = (0..1000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let windows = Chunked::windows(&text, 400);
        assert_eq!(windows.len(), 3, "0-400, 350-750, 700-1000");
        assert_eq!(windows[0].chars().count(), 400);
        assert_eq!(&windows[1][..50], &text[350..400], "an eighth of overlap");
        assert!(text.ends_with(windows.last().unwrap().as_str()));
        assert_eq!(Chunked::windows("short", 400), vec!["short".to_owned()]);
    }
}
