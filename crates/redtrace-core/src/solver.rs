//! The solver seam (inspect_ai's name): the one place that decides what is sent to the target
//! for a sample and what the judges read of the result. A plain request, a transform attack
//! (with its decoder), a model-driven attack and a multi-turn dialogue are all solvers; the
//! engine runs every unit the same way, giving the solver a [`Target`] that carries the
//! unit's limits, retries and cancellation.

use async_trait::async_trait;
use std::borrow::Cow;

use crate::{AttackTranscript, Completion, Message, Sample};

/// The target, as the engine lets a solver reach it.
#[async_trait]
pub trait Target: Send + Sync {
    /// The target's completion of a conversation; `Err` says why there is none (after the
    /// engine's retries, or because the run was stopped).
    async fn send(&self, messages: Vec<Message>) -> Result<Completion, String>;
}

/// What a solver made of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Solved {
    /// The completion stored for the unit: the reply (or exchange) the solver settled on.
    pub completion: Completion,
    /// The answer the judges read where it differs from what the model wrote (a decoded or
    /// translated-back answer); `None` when they read the completion's own answer.
    pub judged_answer: Option<String>,
    /// A model-driven attack's record of every attempt; stored as the completion's `raw`.
    pub transcript: Option<AttackTranscript>,
}

impl Solved {
    /// A completion judged as written.
    pub fn plain(completion: Completion) -> Self {
        Self {
            completion,
            judged_answer: None,
            transcript: None,
        }
    }

    /// A completion stored earlier (a resumed unit, a cache hit), with the answer `solver`
    /// says its judges read.
    pub fn stored(completion: Completion, solver: &dyn Solver) -> Self {
        Self {
            judged_answer: solver.judged_answer(&completion),
            completion,
            transcript: None,
        }
    }

    /// The completion as the judges read it, taken.
    pub fn into_judged(self) -> Completion {
        match self.judged_answer {
            Some(answer) => Completion {
                answer: Some(answer),
                ..self.completion
            },
            None => self.completion,
        }
    }

    /// The completion as the judges read it (borrowed when they read it as written).
    pub fn judged(&self) -> Cow<'_, Completion> {
        match &self.judged_answer {
            Some(answer) => Cow::Owned(Completion {
                answer: Some(answer.clone()),
                ..self.completion.clone()
            }),
            None => Cow::Borrowed(&self.completion),
        }
    }

    /// The completion as stored: its `raw` field holds the transcript where there is one.
    pub fn into_stored(self) -> Completion {
        match self.transcript {
            Some(transcript) => Completion {
                raw: transcript.to_raw(),
                ..self.completion
            },
            None => self.completion,
        }
    }
}

/// Decides what is sent for a sample and what the judges read.
#[async_trait]
pub trait Solver: Send + Sync {
    /// The samples a benchmark sample becomes (a transform attack rewrites it, a template
    /// attack makes several); the sample itself by default.
    fn prepare(&self, sample: Sample) -> Vec<Sample> {
        vec![sample]
    }

    /// What decides the exchange of `sample` beyond its first request (a dialogue's other
    /// party and the item's fields it reads, an attack's models and budget): part of the
    /// completion cache key. `None` when the first request alone decides it.
    fn cache_key(&self, _sample: &Sample) -> Option<String> {
        None
    }

    /// Solves one sample against the target; `Err` when not one reply was obtained.
    async fn solve(&self, sample: &Sample, target: &dyn Target) -> Result<Solved, String>;

    /// The answer the judges read of a stored completion (on resume), where it differs from
    /// what the model wrote.
    fn judged_answer(&self, _completion: &Completion) -> Option<String> {
        None
    }

    /// The error kind stored when solving fails without a failed request to name one.
    fn failure_kind(&self) -> crate::ErrorKind {
        crate::ErrorKind::Solver
    }
}

/// The sample's messages sent as they are, the answer judged as written.
pub struct Direct;

#[async_trait]
impl Solver for Direct {
    async fn solve(&self, sample: &Sample, target: &dyn Target) -> Result<Solved, String> {
        target
            .send(sample.messages.clone())
            .await
            .map(Solved::plain)
    }
}

/// Two solvers as one: the first prepares the samples and says what the judges read (a
/// transform attack), the second runs the exchange (a dialogue): a multi-turn benchmark under
/// a transform attack.
pub struct Prepared {
    /// Prepares the samples and decodes answers.
    pub prepare: std::sync::Arc<dyn Solver>,
    /// Runs the exchange.
    pub solve: std::sync::Arc<dyn Solver>,
}

#[async_trait]
impl Solver for Prepared {
    fn prepare(&self, sample: Sample) -> Vec<Sample> {
        self.prepare.prepare(sample)
    }

    fn cache_key(&self, sample: &Sample) -> Option<String> {
        self.solve.cache_key(sample)
    }

    async fn solve(&self, sample: &Sample, target: &dyn Target) -> Result<Solved, String> {
        let mut solved = self.solve.solve(sample, target).await?;
        if solved.judged_answer.is_none() {
            solved.judged_answer = self.prepare.judged_answer(&solved.completion);
        }
        Ok(solved)
    }

    fn judged_answer(&self, completion: &Completion) -> Option<String> {
        self.solve
            .judged_answer(completion)
            .or_else(|| self.prepare.judged_answer(completion))
    }

    fn failure_kind(&self) -> crate::ErrorKind {
        self.solve.failure_kind()
    }
}
