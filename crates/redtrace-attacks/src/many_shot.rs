//! # Many-shot (`many-shot:PATH[:N]`)
//!
//! ## What it does
//! Puts N fabricated dialogue turns before the request, in which an assistant complied with
//! requests like it, read at run time from a file of examples (a JSON array of
//! `{"user": …, "assistant": …}` objects, as PyRIT ships them); the request closes the
//! dialogue. The examples are drawn with a seed from the prompt's id.
//!
//! ## Why
//! In-context examples of compliance shift the model toward complying; the effect grows with
//! the number of shots.
//!
//! ## Reference
//! Anil et al., "Many-shot Jailbreaking" (Anthropic, 2024).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use redtrace_core::{sha256_hex, Sample};
use std::path::Path;

use crate::{Attack, AttackInfo, Family};

/// Its entry in the registry.
pub(crate) const INFO: AttackInfo = AttackInfo {
    name: "many-shot",
    family: Family::Framing,
    about: "N fabricated compliant dialogue turns from a file of examples before the request",
    reference: "Anil et al. 2024, Many-shot Jailbreaking",
};

/// Makes `many-shot:PATH[:N]`.
pub(crate) fn make(name: &str) -> Result<std::sync::Arc<dyn Attack>, crate::AttackError> {
    let spec = name
        .strip_prefix("many-shot:")
        .ok_or_else(|| crate::AttackError::Parameter {
            name: name.to_owned(),
            detail: "needs a file: many-shot:PATH[:N]".into(),
        })?;
    Ok(std::sync::Arc::new(
        ManyShot::open(spec).map_err(crate::AttackError::File)?,
    ))
}

/// The attack over a file of examples.
pub struct ManyShot {
    label: String,
    examples: Vec<(String, String)>,
    shots: usize,
}

impl ManyShot {
    /// Parses `PATH[:N]` (default 8 shots) and loads the examples.
    pub fn open(spec: &str) -> Result<Self, String> {
        let (path, shots) = match spec.rsplit_once(':') {
            Some((path, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
                (path, n.parse::<usize>().map_err(|e| e.to_string())?)
            }
            _ => (spec, 8),
        };
        if shots == 0 {
            return Err("many-shot:PATH:N needs N of at least 1".into());
        }
        let text = std::fs::read_to_string(Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
        let items: Vec<serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| format!("{path}: not a JSON array: {e}"))?;
        let examples: Vec<(String, String)> = items
            .iter()
            .filter_map(|item| {
                Some((
                    item["user"].as_str()?.to_owned(),
                    item["assistant"].as_str()?.to_owned(),
                ))
            })
            .collect();
        if examples.is_empty() {
            return Err(format!("{path}: no {{\"user\", \"assistant\"}} examples"));
        }
        Ok(Self {
            label: format!("many-shot:{spec}"),
            examples,
            shots,
        })
    }

    fn dialogue(&self, id: &str, prompt: &str) -> String {
        let seed = u64::from_str_radix(&sha256_hex(id.as_bytes())[..16], 16).unwrap_or(0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut text = String::new();
        for (user, assistant) in self.examples.choose_multiple(&mut rng, self.shots) {
            text.push_str(&format!("User: {user}\n\nAssistant: {assistant}\n\n"));
        }
        text.push_str(&format!("User: {prompt}\n\nAssistant:"));
        text
    }
}

impl Attack for ManyShot {
    fn info(&self) -> AttackInfo {
        INFO
    }

    fn label(&self) -> String {
        self.label.clone()
    }

    fn rewrite(&self, prompt: &str) -> String {
        self.dialogue("", prompt)
    }

    fn variants(&self, sample: &Sample) -> Vec<Sample> {
        vec![crate::with_prompt(
            sample,
            self.dialogue(&sample.id, sample.prompt()),
            &self.label,
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shots_from_the_real_examples() {
        let Some(data) = redtrace_testkit::shared_data_or_skip("many-shot examples") else {
            return;
        };
        let path = data.join("jailbreak_templates/pyrit/many_shot_examples.json");
        let attack = ManyShot::open(&format!("{}:4", path.display())).unwrap();
        assert_eq!(attack.examples.len(), 400);
        let text = attack.dialogue("1", "the request");
        assert_eq!(
            text.matches("User: ").count(),
            5,
            "four shots and the request"
        );
        assert!(text.ends_with("User: the request\n\nAssistant:"));
        assert_eq!(
            text,
            attack.dialogue("1", "the request"),
            "seeded by the id"
        );
        assert!(ManyShot::open("/nonexistent.json")
            .err()
            .unwrap()
            .contains("/nonexistent.json"));
    }
}
