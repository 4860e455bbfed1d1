//! What tokens cost: a model's [`Price`] (USD per million tokens: input, cached input, output,
//! and the batch discount), the [`PriceTable`] shipped with redtrace (`prices.toml`, with its
//! date and source) or read from a user's file, and the cost of a [`Usage`]. Reasoning tokens
//! are billed as output, as every provider bills them. A model without a price has no cost,
//! never a cost of zero.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::Usage;

/// The price table shipped with redtrace.
pub const BUILTIN_PRICES: &str = include_str!("../prices.toml");

/// A model's price, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Prompt tokens not served from the provider's cache.
    pub input: f64,
    /// Generated tokens, reasoning included.
    pub output: f64,
    /// Prompt tokens served from the provider's prompt cache; `input` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// The share taken off through the provider's batch API (0.5: half price); none when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_discount: Option<f64>,
}

impl Price {
    /// Checks that every figure is a finite non-negative number and the discount a share.
    pub fn check(&self, what: &str) -> Result<(), String> {
        for (field, value) in [
            ("input", Some(self.input)),
            ("output", Some(self.output)),
            ("cached_input", self.cached_input),
        ] {
            if let Some(value) = value {
                if !value.is_finite() || value < 0.0 {
                    return Err(format!(
                        "{what}: {field} = {value} is not a price (USD per million tokens, 0 or more)"
                    ));
                }
            }
        }
        if let Some(discount) = self.batch_discount {
            if !(0.0..=1.0).contains(&discount) {
                return Err(format!(
                    "{what}: batch_discount = {discount} is not a share between 0 and 1"
                ));
            }
        }
        Ok(())
    }

    /// The cost in USD of `usage`, through the batch API when `batch`. `None` when the usage
    /// reports no token counts at all (nothing to price).
    pub fn cost(&self, usage: &Usage, batch: bool) -> Option<f64> {
        if usage.prompt_tokens.is_none() && usage.completion_tokens.is_none() {
            return None;
        }
        let prompt = usage.prompt_tokens.unwrap_or(0);
        let cached = usage.cached_prompt_tokens.unwrap_or(0).min(prompt);
        let fresh = prompt - cached;
        let output = usage.completion_tokens.unwrap_or(0);
        let full = fresh as f64 * self.input
            + cached as f64 * self.cached_input.unwrap_or(self.input)
            + output as f64 * self.output;
        let discount = if batch {
            self.batch_discount.unwrap_or(0.0)
        } else {
            0.0
        };
        Some(full / 1e6 * (1.0 - discount))
    }

    /// The most a request of `prompt_tokens` and at most `max_output` tokens costs (no cache).
    pub fn ceiling(&self, prompt_tokens: u64, max_output: u64, batch: bool) -> f64 {
        self.cost(
            &Usage {
                prompt_tokens: Some(prompt_tokens),
                completion_tokens: Some(max_output),
                ..Usage::default()
            },
            batch,
        )
        .unwrap_or(0.0)
    }
}

/// What model calls made for one result cost: tokens, and dollars where every call had a
/// price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    /// Calls made (served from a cache: not counted).
    pub calls: u32,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens (reasoning included).
    pub completion_tokens: u64,
    /// USD; `None` when some call's model has no price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl Spend {
    /// Adds one call's `usage`, priced with `price` (`None`: no price, and the sum has none).
    pub fn add(&mut self, usage: &Usage, price: Option<&Price>, batch: bool) {
        let cost = price.and_then(|p| p.cost(usage, batch));
        self.cost_usd = match (self.calls, self.cost_usd, cost) {
            (0, _, cost) => cost,
            (_, Some(sum), Some(cost)) => Some(sum + cost),
            _ => None,
        };
        self.calls += 1;
        self.prompt_tokens += usage.prompt_tokens.unwrap_or(0);
        self.completion_tokens += usage.completion_tokens.unwrap_or(0);
    }

    /// Adds another spend.
    pub fn merge(&mut self, other: &Spend) {
        if other.calls == 0 {
            return;
        }
        self.cost_usd = match (self.calls, self.cost_usd, other.cost_usd) {
            (0, _, cost) => cost,
            (_, Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        self.calls += other.calls;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

/// Prices by model id, with the date and source of the table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    /// When the prices were taken.
    pub date: Option<String>,
    /// Where they come from.
    pub source: Option<String>,
    /// Model id (or id prefix) → price.
    pub prices: BTreeMap<String, Price>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    date: Option<String>,
    source: Option<String>,
}

impl PriceTable {
    /// The table shipped with redtrace.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN_PRICES, "the built-in price table").expect("the built-in prices parse")
    }

    /// A table from TOML text: one table per model id (`[MODEL] input = …, output = …,
    /// cached_input = …, batch_discount = …`), and an optional `[_meta]` with `date` and
    /// `source`. Errors name `origin`, the model and the field (the TOML parser's names the
    /// line).
    pub fn parse(text: &str, origin: &str) -> Result<Self, String> {
        let mut root: toml::Table =
            toml::from_str(text).map_err(|error| format!("{origin}: {error}"))?;
        let meta: Option<Meta> = root
            .remove("_meta")
            .map(|meta| meta.try_into())
            .transpose()
            .map_err(|error| format!("{origin}: [_meta]: {error}"))?;
        let mut prices = BTreeMap::new();
        for (model, value) in root {
            let price: Price = value
                .try_into()
                .map_err(|error| format!("{origin}: [{model}]: {error}"))?;
            price.check(&format!("{origin}: [{model}]"))?;
            prices.insert(model, price);
        }
        Ok(Self {
            date: meta.as_ref().and_then(|m| m.date.clone()),
            source: meta.and_then(|m| m.source),
            prices,
        })
    }

    /// A table read from a file.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("--prices {}: {error}", path.display()))?;
        Self::parse(&text, &format!("--prices {}", path.display()))
    }

    /// This table with `over`'s prices laid over it (a user's file over the built-in one).
    pub fn overlaid(mut self, over: PriceTable) -> Self {
        self.prices.extend(over.prices);
        if over.date.is_some() {
            self.date = over.date;
            self.source = over.source;
        }
        self
    }

    /// The price of the model id `model`: its own table, the part after a `provider/` prefix,
    /// or the longest table name it starts with followed by `-` (a dated id of a listed
    /// model).
    pub fn lookup(&self, model: &str) -> Option<Price> {
        let bare = model.rsplit('/').next().unwrap_or(model);
        if let Some(price) = self.prices.get(model).or_else(|| self.prices.get(bare)) {
            return Some(*price);
        }
        self.prices
            .iter()
            .filter(|(name, _)| {
                bare.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, price)| *price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_table_parses_and_matches_dated_and_prefixed_ids() {
        let table = PriceTable::builtin();
        assert_eq!(table.date.as_deref(), Some("2026-12-02"));
        assert!(table.prices.len() >= 10);
        let sonnet = table.lookup("claude-3-7-sonnet-20250219").unwrap();
        assert_eq!((sonnet.input, sonnet.output), (3.0, 15.0));
        assert_eq!(table.lookup("openai/o3-mini"), table.lookup("o3-mini"));
        // o3-mini is not o3, and gpt-4o-mini is not gpt-4o.
        assert_eq!(table.lookup("o3-mini-2025-01-31").unwrap().input, 1.1);
        assert_eq!(table.lookup("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert!(table.lookup("my-local-model").is_none());
    }

    #[test]
    fn cost_bills_reasoning_as_output_cached_input_apart_and_the_batch_discount() {
        let price = Price {
            input: 1.0,
            output: 4.0,
            cached_input: Some(0.25),
            batch_discount: Some(0.5),
        };
        let usage = Usage {
            prompt_tokens: Some(1_000_000),
            cached_prompt_tokens: Some(400_000),
            completion_tokens: Some(500_000),
            reasoning_tokens: Some(450_000),
        };
        // 0.6 M fresh × 1 + 0.4 M cached × 0.25 + 0.5 M output × 4.
        assert!((price.cost(&usage, false).unwrap() - 2.7).abs() < 1e-12);
        assert!((price.cost(&usage, true).unwrap() - 1.35).abs() < 1e-12);
        assert_eq!(price.cost(&Usage::default(), false), None);
    }

    #[test]
    fn bad_tables_name_the_model_and_the_field() {
        let error = PriceTable::parse("[m]\ninput = -1\noutput = 2\n", "p.toml").unwrap_err();
        assert!(error.contains("[m]: input = -1"), "{error}");
        let error = PriceTable::parse("[m]\ninput = 1\n", "p.toml").unwrap_err();
        assert!(
            error.contains("p.toml: [m]") && error.contains("output"),
            "{error}"
        );
        let error =
            PriceTable::parse("[m]\ninput = 1\noutput = 2\ncolour = 3\n", "p.toml").unwrap_err();
        assert!(error.contains("colour"), "{error}");
        let error = PriceTable::parse("[m\n", "p.toml").unwrap_err();
        assert!(
            error.contains("p.toml") && error.contains("line 1"),
            "{error}"
        );
    }
}
