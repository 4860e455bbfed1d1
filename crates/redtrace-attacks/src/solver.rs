//! Attacks as solvers: a transform rewrites each sample before it is sent and decodes the
//! answer the judges read; a model-driven attack runs the whole exchange with the target and
//! hands back the reply it chose, the answer to judge and its transcript.

use async_trait::async_trait;
use redtrace_core::solver::{Solved, Solver, Target};
use redtrace_core::{Completion, Sample};
use std::sync::Arc;

use crate::driven::{self, DrivenAttack};
use crate::Attack;

/// A transform attack: its variants of each sample are sent as they are.
pub struct TransformSolver(pub Arc<dyn Attack>);

#[async_trait]
impl Solver for TransformSolver {
    fn prepare(&self, sample: Sample) -> Vec<Sample> {
        self.0.variants(&sample)
    }

    async fn solve(&self, sample: &Sample, target: &dyn Target) -> Result<Solved, String> {
        let completion = target.send(sample.messages.clone()).await?;
        Ok(Solved {
            judged_answer: self.judged_answer(&completion),
            completion,
            transcript: None,
        })
    }

    fn judged_answer(&self, completion: &Completion) -> Option<String> {
        self.0.decode(completion.answer.as_deref()?)
    }
}

/// What the judges read of the completions a run stored for benchmark `BENCH+ATTACK`, when
/// they are judged again (`redtrace judge`): a model-driven attack's chosen answer (from its
/// transcript), a transform's decoded answer, else the answer as written. It sends nothing:
/// its samples are the stored ones, as they were sent.
pub struct StoredSolver(Option<Arc<dyn Attack>>);

impl StoredSolver {
    /// The reader for the stored benchmark `name`. A transform that can no longer be built
    /// (a template file since moved) decodes nothing, as template attacks never do.
    pub fn for_benchmark(name: &str) -> Self {
        let attack = crate::split_attacked(name).1;
        Self(attack.and_then(|attack| crate::by_name(attack).ok()))
    }
}

#[async_trait]
impl Solver for StoredSolver {
    async fn solve(&self, _sample: &Sample, _target: &dyn Target) -> Result<Solved, String> {
        Err("re-judging sends nothing: this unit has no stored completion".into())
    }

    fn judged_answer(&self, completion: &Completion) -> Option<String> {
        driven::judged_answer(completion)
            .or_else(|| self.0.as_ref()?.decode(completion.answer.as_deref()?))
    }
}

/// A model-driven attack, run once per sample.
pub struct DrivenSolver {
    /// The attack.
    pub attack: Arc<dyn DrivenAttack>,
    /// The name its samples are marked with (`pair:3`).
    pub label: String,
}

#[async_trait]
impl Solver for DrivenSolver {
    fn prepare(&self, sample: Sample) -> Vec<Sample> {
        vec![driven::marked(&sample, &self.label)]
    }

    fn cache_key(&self, _sample: &Sample) -> Option<String> {
        Some(format!("attack:{}", self.attack.identity()))
    }

    async fn solve(&self, sample: &Sample, target: &dyn Target) -> Result<Solved, String> {
        self.attack.run(sample, target).await
    }

    fn judged_answer(&self, completion: &Completion) -> Option<String> {
        driven::judged_answer(completion)
    }

    fn failure_kind(&self) -> redtrace_core::ErrorKind {
        redtrace_core::ErrorKind::Attack
    }
}
