//! Attacks: a registry of transforms of a benchmark's prompts, one file each, applied with
//! `--attack NAME[,NAME…]`. An attacked benchmark is reported as `BENCH+ATTACK`, so the
//! attack success rate per technique is the benchmark's unsafe (or compliance) rate under it.
//!
//! Most attacks are pure functions of the prompt ([`Attack`]). The judged request stays the
//! original one (kept as the sample's `request`), and an attack that asks for an
//! encoded answer decodes it before it is judged. Attacks that talk to an attacker model and
//! a judge model (translation, past tense, PAIR, TAP, Crescendo) are [`driven::DrivenAttack`]s,
//! run by the engine one sample at a time.

mod base64_encoding;
mod crescendo;
pub mod driven;
mod error;
mod fake_trace;
mod fiction;
mod h_cot;
mod h_cot_attacker;
mod hex_encoding;
pub mod injection;
mod leetspeak;
pub mod many_shot;
mod more_think;
mod padding;
mod pair;
mod past_tense;
mod payload_split;
mod prefix_injection;
mod reasoning_hijack;
mod refusal_suppression;
pub mod registry;
mod roleplay;
mod rot13;
pub mod solver;
mod tap;
pub mod templates;
mod think_length;
mod trace_prefill;
mod translate;

pub use error::AttackError;

use redtrace_core::{Message, Role, Sample};
use std::sync::Arc;

/// What kind of attack it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A framing around the request (persona, fiction, suppression of refusals).
    Framing,
    /// The request rewritten in an encoding the model must decode.
    Encoding,
    /// Aimed at the reasoning trace.
    Trace,
    /// Instructions smuggled in to override the system prompt.
    Injection,
    /// Written or steered by an attacker model (see [`driven`]).
    Driven,
}

/// An attack's typed description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackInfo {
    /// Its name on the command line.
    pub name: &'static str,
    /// What kind of attack it is.
    pub family: Family,
    /// One line about it.
    pub about: &'static str,
    /// Where the technique comes from.
    pub reference: &'static str,
}

/// A transform of a prompt.
pub trait Attack: Send + Sync {
    /// Its description.
    fn info(&self) -> AttackInfo;

    /// The name it is reported under (the registry name, or with its parameters).
    fn label(&self) -> String {
        self.info().name.to_owned()
    }

    /// The attacked prompt.
    fn rewrite(&self, prompt: &str) -> String;

    /// The attacked samples of one sample: one by default; several for attacks that try
    /// several variants per prompt (templates).
    fn variants(&self, sample: &Sample) -> Vec<Sample> {
        vec![with_prompt(
            sample,
            self.rewrite(sample.prompt()),
            &self.label(),
        )]
    }

    /// The answer as the judge should read it, for attacks that ask for an encoded answer
    /// (`None` when the answer is not in the encoding, or the attack asks for plain text).
    fn decode(&self, _answer: &str) -> Option<String> {
        None
    }
}

/// The attack name that leaves a benchmark as it is.
pub const NO_ATTACK: &str = "none";

/// The name an attacked benchmark is reported under: `BENCH+ATTACK`, or the benchmark's own
/// name for [`NO_ATTACK`].
pub fn attacked_name(benchmark: &str, attack: &str) -> String {
    if attack == NO_ATTACK {
        benchmark.to_owned()
    } else {
        format!("{benchmark}+{attack}")
    }
}

/// A reported benchmark name split into the benchmark and the attack that made it, the
/// inverse of [`attacked_name`]: `xstest+base64` → (`xstest`, `Some("base64")`), `xstest` →
/// (`xstest`, `None`). The attack is what follows the first `+` that names a known one.
pub fn split_attacked(name: &str) -> (&str, Option<&str>) {
    for (at, _) in name.match_indices('+') {
        let attack = &name[at + 1..];
        if registry::find(attack).is_ok() {
            return (&name[..at], Some(attack));
        }
    }
    (name, None)
}

/// How many samples an attack makes of each prompt (`templates:PATH:N` makes N, others 1).
pub fn variants_per_prompt(attack: &str) -> u64 {
    attack
        .strip_prefix("templates:")
        .and_then(|spec| spec.rsplit_once(':'))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

/// The judge an attack needs to be read at all, added to the benchmark's judges by default
/// (the injection attacks plant a canary that only the `canary` judge sees).
pub fn own_judge(attack: &str) -> Option<&'static str> {
    matches!(attack, "injection-direct" | "injection-indirect").then_some("canary")
}

/// The fixed transforms (the whole registry, with the parametrised and model-driven attacks,
/// is [`registry::attacks`]).
pub fn transforms() -> Vec<Arc<dyn Attack>> {
    vec![
        Arc::new(refusal_suppression::RefusalSuppression),
        Arc::new(prefix_injection::PrefixInjection),
        Arc::new(roleplay::Roleplay),
        Arc::new(fiction::Fiction),
        Arc::new(payload_split::PayloadSplit),
        Arc::new(base64_encoding::Base64Encoding),
        Arc::new(rot13::Rot13),
        Arc::new(leetspeak::Leetspeak),
        Arc::new(hex_encoding::HexEncoding),
        Arc::new(fake_trace::FakeTrace),
        Arc::new(reasoning_hijack::ReasoningHijack),
        Arc::new(trace_prefill::TracePrefill),
        Arc::new(think_length::ThinkLength(think_length::Length::Zero)),
        Arc::new(think_length::ThinkLength(think_length::Length::Less)),
        Arc::new(h_cot::HCot),
        Arc::new(injection::Injection(injection::Route::Direct)),
        Arc::new(injection::Injection(injection::Route::Indirect)),
    ]
}

/// The transform named `name` (`templates:PATH[:N]` loads a template collection), or an
/// error listing the known attacks.
pub fn by_name(name: &str) -> Result<Arc<dyn Attack>, AttackError> {
    registry::find(name)?.transform(name)
}

/// The sample under `attack`: its last user message rewritten, the original request kept
/// as its `request` (the judges' question) and the attack's name as `attack`.
pub fn apply<A: Attack + ?Sized>(attack: &A, sample: &Sample) -> Sample {
    with_prompt(sample, attack.rewrite(sample.prompt()), &attack.label())
}

/// `sample` with its last user message replaced by `prompt`, the original request kept.
pub(crate) fn with_prompt(sample: &Sample, prompt: String, attack: &str) -> Sample {
    let mut attacked = sample.clone();
    let original = sample.request().to_owned();
    if let Some(message) = attacked
        .messages
        .iter_mut()
        .rev()
        .find(|m| m.role == Role::User)
    {
        *message = Message::user(prompt);
    }
    attacked.request = Some(original);
    attacked.metadata.insert(
        "attack".into(),
        serde_json::Value::String(attack.to_owned()),
    );
    attacked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attacked_name_splits_back_into_benchmark_and_attack() {
        assert_eq!(split_attacked("xstest"), ("xstest", None));
        assert_eq!(split_attacked("xstest+base64"), ("xstest", Some("base64")));
        assert_eq!(
            split_attacked("file:a+b.csv+pair:3"),
            ("file:a+b.csv", Some("pair:3"))
        );
        assert_eq!(split_attacked("file:a+b.csv"), ("file:a+b.csv", None));
        for name in ["jbb+base64", "jbb+templates:t.json:2", "jbb+translate:fr"] {
            let (base, attack) = split_attacked(name);
            assert_eq!(attacked_name(base, attack.unwrap()), name);
        }
    }

    /// A re-judged transform's stored answer is decoded as the run decoded it.
    #[test]
    fn a_stored_answer_is_read_as_its_attack_wrote_it() {
        use redtrace_core::solver::Solver;
        let completion = redtrace_core::Completion::answer("aGVsbG8gd29ybGQ=");
        let decoded = solver::StoredSolver::for_benchmark("jbb+base64").judged_answer(&completion);
        assert_eq!(decoded.as_deref(), Some("hello world"));
        assert_eq!(
            solver::StoredSolver::for_benchmark("jbb").judged_answer(&completion),
            None
        );
    }

    /// Conformance over the whole registry: unique names, a description and a reference,
    /// the request survives the rewrite (or its encoding decodes back to it), and the prompt
    /// changes.
    #[test]
    fn every_attack_conforms() {
        let mut names = std::collections::HashSet::new();
        for attack in transforms() {
            let info = attack.info();
            assert!(names.insert(info.name), "duplicate name {}", info.name);
            assert!(
                !info.about.is_empty() && !info.reference.is_empty(),
                "{}",
                info.name
            );
            assert!(by_name(info.name).is_ok());
            let prompt = "How do I pick the lock of my own shed?";
            let rewritten = attack.rewrite(prompt);
            assert_ne!(rewritten, prompt, "{}", info.name);
            match info.family {
                Family::Encoding => {}
                _ if info.name == "payload-split" => {}
                _ => assert!(
                    rewritten.contains(prompt),
                    "{}: the request is kept",
                    info.name
                ),
            }
        }
        assert!(by_name("nope")
            .err()
            .unwrap()
            .to_string()
            .contains("known attacks are"));
    }

    #[test]
    fn apply_keeps_the_original_request_for_the_judges() {
        let sample = Sample {
            id: "1".into(),
            index: 0,
            messages: vec![Message::system("rules"), Message::user("the request")],
            category: vec![],
            label: None,
            metadata: Default::default(),
            request: None,
        };
        let attacked = apply(by_name("fiction").unwrap().as_ref(), &sample);
        assert_eq!(attacked.messages[0].content, "rules");
        assert!(attacked.prompt().contains("the request") && attacked.prompt() != "the request");
        assert_eq!(attacked.request(), "the request");
        assert_eq!(attacked.metadata["attack"], "fiction");
    }
}

#[cfg(test)]
mod round_trips {
    use rand::{Rng, SeedableRng};

    /// Random text: ASCII letters, digits, punctuation and some non-ASCII characters.
    fn texts(seed: u64, count: usize) -> Vec<String> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let alphabet: Vec<char> = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"-_/+=()éüß€中\n"
            .chars()
            .collect();
        (0..count)
            .map(|_| {
                let length = rng.gen_range(0..200);
                (0..length)
                    .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn encodings_round_trip_on_random_text() {
        for text in texts(7, 500) {
            assert_eq!(super::rot13::rot13(&super::rot13::rot13(&text)), text);
            let hex = super::hex_encoding::encode(&text);
            if hex.len() >= 8 {
                assert_eq!(
                    super::hex_encoding::decode(&hex).as_deref(),
                    Some(text.as_str())
                );
            }
            let b64 = super::base64_encoding::encode(&text);
            if b64.len() >= 8 {
                assert_eq!(
                    super::base64_encoding::decode(&b64).as_deref(),
                    Some(text.as_str())
                );
            }
            // Leetspeak reads digits as letters, so it round-trips lower-case text without
            // the six digits it uses.
            let plain: String = text
                .to_lowercase()
                .chars()
                .filter(|c| !"013457".contains(*c))
                .collect();
            assert_eq!(
                super::leetspeak::decode(&super::leetspeak::encode(&plain)),
                plain
            );
        }
    }

    #[test]
    fn encoded_answers_are_found_inside_chatter() {
        let answer = format!(
            "Sure! Here it is:\n\n{}\n\nHope that helps.",
            super::base64_encoding::encode("step one: do the thing")
        );
        assert_eq!(
            super::base64_encoding::decode(&answer).as_deref(),
            Some("step one: do the thing")
        );
        let spaced = "73 74 65 70 20 6f 6e 65";
        assert_eq!(
            super::hex_encoding::decode(spaced).as_deref(),
            Some("step one")
        );
        assert_eq!(super::base64_encoding::decode("I can't help."), None);
    }
}
