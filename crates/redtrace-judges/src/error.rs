//! Why a judge cannot be built. A judge that fails while judging is not an error: its verdict
//! is unscored, with the reason as data. The command line adds hints naming its flags; the
//! messages here name no flag, so an embedder reads them as they are.

/// Why a judge cannot be built from what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JudgeError {
    /// No judge has this name.
    #[error("unknown judge '{name}': known judges are {}", known.join(", "))]
    Unknown {
        /// The name given.
        name: String,
        /// The judges there are.
        known: Vec<&'static str>,
    },
    /// A model was given to a judge that calls none.
    #[error("judge '{0}' takes no model")]
    TakesNoModel(String),
    /// A judge that calls a model was given none.
    #[error("judge '{0}' calls a model and none was given")]
    NeedsModel(String),
    /// The reward judge was given no scoring endpoint.
    #[error("judge 'reward' scores with an HTTP endpoint and none was given")]
    NeedsEndpoint,
    /// A template was given to a judge that takes none.
    #[error("judge '{name}' takes no template file: {why}")]
    TakesNoTemplate {
        /// The judge.
        name: String,
        /// Why it takes none.
        why: &'static str,
    },
    /// A rubric template could not be read or compiled (the message names the file).
    #[error("{0}")]
    Template(String),
    /// A reward endpoint spec is malformed.
    #[error("reward endpoint: {0}")]
    Reward(String),
    /// An ensemble or window rule is unknown.
    #[error("unknown rule '{0}': use majority or any-unsafe")]
    UnknownRule(String),
    /// A judge's own files or prompts could not be set up.
    #[error("judge '{name}': {detail}")]
    Setup {
        /// The judge.
        name: String,
        /// What went wrong.
        detail: String,
    },
}
