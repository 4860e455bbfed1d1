//! API keys: read from the environment variable a model names, and never printed.

use redtrace_core::model::{ConfigError, ModelConfig};
use std::fmt;

use crate::ProviderError;

/// An API key. Its `Debug` and `Display` print `***`, and it is never serialised, so it cannot
/// reach the store, logs, reports or error messages by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
    /// The key itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Reads the API key from the environment variable `config` names, if any.
pub fn api_key(config: &ModelConfig) -> Result<Option<ApiKey>, ProviderError> {
    match &config.api_key_env {
        None => Ok(None),
        Some(var) => match std::env::var(var) {
            Ok(key) if !key.is_empty() => Ok(Some(ApiKey::new(key))),
            _ => Err(ProviderError::Config(format!(
                "model '{}': environment variable {var} (api_key_env) is not set",
                config.name
            ))),
        },
    }
}

impl From<ConfigError> for ProviderError {
    fn from(error: ConfigError) -> Self {
        ProviderError::Config(error.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_never_print() {
        let key = ApiKey::new("sk-secret");
        assert_eq!(format!("{key:?} {key}"), "ApiKey(***) ***");
    }
}
