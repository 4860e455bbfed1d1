//! Why an attack cannot be built. An attack that fails on one sample is not an error: the
//! unit's error says why, as data. The command line adds hints naming its flags; the messages
//! here name no flag, so an embedder reads them as they are.

/// Why an attack cannot be built from its name and models.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttackError {
    /// No attack has this name.
    #[error("unknown attack '{name}': known attacks are {} (and `none` for none)", known.join(", "))]
    Unknown {
        /// The name given.
        name: String,
        /// The attacks there are, as they are named with their parameters.
        known: Vec<&'static str>,
    },
    /// The name's parameters are wrong (too many, not a number, missing).
    #[error("attack '{name}': {detail}")]
    Parameter {
        /// The name given.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// A model-driven attack was given no attacker model.
    #[error("attack '{0}' is written by an attacker model and none was given")]
    NeedsAttacker(String),
    /// An attack that rates replies was given no judge model.
    #[error("attack '{0}' rates the target's replies with a judge model and none was given")]
    NeedsJudge(String),
    /// A model-driven attack was given no queries to spend.
    #[error("the attack budget must be at least 1 query")]
    NoBudget,
    /// Asked for a transform, the name names a model-driven attack, or the reverse.
    #[error("'{name}' is {what}")]
    WrongKind {
        /// The name given.
        name: String,
        /// What it is not.
        what: &'static str,
    },
    /// An attack's file (templates, examples) cannot be used (the message names the file).
    #[error("{0}")]
    File(String),
}
