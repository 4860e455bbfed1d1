//! The one list of attacks: every transform, the parametrised ones (`templates:`,
//! `many-shot:`) and the model-driven ones, each entry typed with its usage, family, the
//! helper models it needs and how it is built. `redtrace attacks` prints it, settings check
//! names against it, and the conformance tests run over it. Adding an attack is its own file
//! plus one line here.

use std::sync::Arc;

use crate::driven::{DrivenAttack, Helper, Helpers};
use crate::{Attack, AttackError, AttackInfo};

/// Makes a model-driven attack from the parameters in its name and its helper models.
pub type MakeDriven = fn(&[&str], &Helpers) -> Result<Arc<dyn DrivenAttack>, AttackError>;

/// How an entry's attack is made from the name a user gave (`pair:3`, `templates:x.yaml:2`).
#[derive(Clone)]
pub enum Make {
    /// A fixed transform of the prompt.
    Transform(Arc<dyn Attack>),
    /// A transform configured by the parameters in its name.
    Parametrised(fn(&str) -> Result<Arc<dyn Attack>, AttackError>),
    /// A model-driven attack, from the parameters in its name and its helper models.
    Driven(MakeDriven),
}

/// One attack of the registry.
#[derive(Clone)]
pub struct Entry {
    /// How it is named, with its parameters (`fiction`, `templates:PATH[:N]`, `pair[:ROUNDS]`).
    pub usage: &'static str,
    /// Its name, family, description and reference.
    pub info: AttackInfo,
    /// Whether it needs an attacker model (`--attacker-model`).
    pub needs_attacker: bool,
    /// Whether it needs a judge model to rate replies (`--judge-model`).
    pub needs_judge: bool,
    /// How it is made.
    pub make: Make,
}

/// Every attack.
pub fn attacks() -> Vec<Entry> {
    let transform = |attack: Arc<dyn Attack>| Entry {
        usage: attack.info().name,
        info: attack.info(),
        needs_attacker: false,
        needs_judge: false,
        make: Make::Transform(attack),
    };
    let parametrised = |usage, info, make| Entry {
        usage,
        info,
        needs_attacker: false,
        needs_judge: false,
        make: Make::Parametrised(make),
    };
    let driven = |usage, info, needs_judge, make| Entry {
        usage,
        info,
        needs_attacker: true,
        needs_judge,
        make: Make::Driven(make),
    };
    let mut entries: Vec<Entry> = crate::transforms().into_iter().map(transform).collect();
    entries.extend([
        parametrised(
            "templates:PATH[:N]",
            crate::templates::INFO,
            crate::templates::make,
        ),
        parametrised(
            "many-shot:PATH[:N]",
            crate::many_shot::INFO,
            crate::many_shot::make,
        ),
        parametrised(
            "cot-padding[:CHARS]",
            crate::padding::PADDING_INFO,
            crate::padding::make_padding,
        ),
        parametrised(
            "overthink[:N]",
            crate::padding::OVERTHINK_INFO,
            crate::padding::make_overthink,
        ),
        driven(
            "translate:LANGUAGE",
            crate::translate::INFO,
            false,
            crate::translate::build,
        ),
        driven(
            "past-tense",
            crate::past_tense::INFO,
            false,
            crate::past_tense::build,
        ),
        driven(
            "h-cot-attacker",
            crate::h_cot_attacker::INFO,
            false,
            crate::h_cot_attacker::build,
        ),
        Entry {
            usage: "morethink[:N]",
            info: crate::more_think::INFO,
            needs_attacker: false,
            needs_judge: false,
            make: Make::Driven(crate::more_think::build),
        },
        driven("pair[:ROUNDS]", crate::pair::INFO, true, crate::pair::build),
        driven(
            "tap[:DEPTH[:BRANCHING[:WIDTH]]]",
            crate::tap::INFO,
            true,
            crate::tap::build,
        ),
        driven(
            "crescendo[:TURNS[:BACKTRACKS]]",
            crate::crescendo::INFO,
            true,
            crate::crescendo::build,
        ),
    ]);
    entries
}

/// A name's attack without its parameters (`pair:5` → `pair`).
fn head(name: &str) -> &str {
    name.split([':', '[']).next().unwrap_or(name)
}

/// The entry of the attack `name` (parameters included), or an error listing the known ones.
pub fn find(name: &str) -> Result<Entry, AttackError> {
    let entries = attacks();
    let wanted = head(name);
    if let Some(entry) = entries.iter().find(|e| e.info.name == wanted) {
        return Ok(entry.clone());
    }
    Err(AttackError::Unknown {
        name: name.to_owned(),
        known: entries.iter().map(|e| e.usage).collect(),
    })
}

impl Entry {
    /// Whether it talks to models.
    pub fn is_driven(&self) -> bool {
        matches!(self.make, Make::Driven(_))
    }

    /// The transform named `name` (this entry's, with its parameters).
    pub fn transform(&self, name: &str) -> Result<Arc<dyn Attack>, AttackError> {
        match &self.make {
            Make::Transform(attack) if name == self.info.name => Ok(attack.clone()),
            Make::Transform(_) => Err(AttackError::Parameter {
                name: name.to_owned(),
                detail: format!("takes no parameters: give `{}`", self.info.name),
            }),
            Make::Parametrised(make) => make(name),
            Make::Driven(_) => Err(AttackError::WrongKind {
                name: name.to_owned(),
                what: "a model-driven attack, not a transform",
            }),
        }
    }

    /// The model-driven attack named `name` with its helpers.
    pub fn driven(
        &self,
        name: &str,
        helpers: &Helpers,
    ) -> Result<Arc<dyn DrivenAttack>, AttackError> {
        let Make::Driven(make) = self.make else {
            return Err(AttackError::WrongKind {
                name: name.to_owned(),
                what: "not a model-driven attack",
            });
        };
        if helpers.budget == 0 {
            return Err(AttackError::NoBudget);
        }
        let params: Vec<&str> = name.split(':').skip(1).collect();
        make(&params, helpers)
    }

    /// Checks the name's parameters (and, for a parametrised transform, its file) without
    /// models: what a run checks before anything is sent.
    pub fn check(&self, name: &str) -> Result<(), AttackError> {
        if !self.is_driven() {
            return self.transform(name).map(|_| ());
        }
        let unused: Arc<dyn Helper> = Arc::new(Unused);
        self.driven(
            name,
            &Helpers {
                attacker: Some(unused.clone()),
                judge: Some(unused),
                budget: 1,
            },
        )
        .map(|_| ())
    }
}

/// A helper that is never asked: parameters are checked by building with it.
struct Unused;

#[async_trait::async_trait]
impl Helper for Unused {
    fn name(&self) -> &str {
        "unused"
    }
    async fn ask(&self, _messages: Vec<redtrace_core::Message>) -> Result<String, String> {
        Err("not a real helper".into())
    }
}

/// Whether `name` names a model-driven attack.
pub fn is_driven(name: &str) -> bool {
    find(name).is_ok_and(|entry| entry.is_driven())
}

/// Whether the attack `name` needs a judge model as well as the attacker.
pub fn needs_judge(name: &str) -> bool {
    find(name).is_ok_and(|entry| entry.needs_judge)
}

/// Builds the model-driven attack `name` with its helpers.
pub fn build_driven(name: &str, helpers: &Helpers) -> Result<Arc<dyn DrivenAttack>, AttackError> {
    find(name)?.driven(name, helpers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driven::scripted;
    use crate::Family;

    /// Conformance over the whole registry: unique names, a description and a reference,
    /// a family that says whether it talks to models, and a usage that starts with its name.
    #[test]
    fn every_entry_conforms() {
        let mut names = std::collections::HashSet::new();
        for entry in attacks() {
            let info = &entry.info;
            assert!(names.insert(info.name), "duplicate name {}", info.name);
            assert!(!info.about.is_empty() && !info.reference.is_empty());
            assert_eq!(head(entry.usage), info.name, "{}", entry.usage);
            // A driven attack talks to the target over several turns; it needs an attacker
            // model exactly when it is of the driven family (MoreThink needs none).
            assert!(info.family != Family::Driven || entry.is_driven());
            assert_eq!(entry.needs_attacker, info.family == Family::Driven);
            assert!(!entry.needs_judge || entry.is_driven());
            assert_eq!(find(entry.usage).unwrap().info, entry.info);
        }
        assert!(find("nope")
            .err()
            .unwrap()
            .to_string()
            .contains("known attacks are"));
        assert!(find("fiction:3").unwrap().transform("fiction:3").is_err());
    }

    /// Conformance over the model-driven attacks: each builds from its listed name, needs a
    /// judge exactly when listed so, and its file opens with the doc headings.
    #[test]
    fn every_driven_attack_conforms() {
        let sources = [
            include_str!("translate.rs"),
            include_str!("past_tense.rs"),
            include_str!("h_cot_attacker.rs"),
            include_str!("more_think.rs"),
            include_str!("pair.rs"),
            include_str!("tap.rs"),
            include_str!("crescendo.rs"),
        ];
        let driven: Vec<Entry> = attacks().into_iter().filter(Entry::is_driven).collect();
        assert_eq!(sources.len(), driven.len());
        let script = scripted::Script::new("helper", &[]);
        for (entry, source) in driven.iter().zip(sources) {
            let name = entry
                .usage
                .split('[')
                .next()
                .unwrap()
                .replace(":LANGUAGE", ":Zulu");
            let attack = build_driven(&name, &scripted::helpers(&script, &script, 3)).unwrap();
            let info = attack.info();
            assert_eq!(info, entry.info);
            assert!(name.starts_with(info.name) && attack.label().starts_with(info.name));
            let without_judge = Helpers {
                judge: None,
                ..scripted::helpers(&script, &script, 3)
            };
            assert_eq!(
                build_driven(&name, &without_judge).is_err(),
                entry.needs_judge,
                "{name}"
            );
            assert!(attack.identity().contains("budget=3"));
            assert_eq!(
                attack.identity().contains("helper"),
                entry.needs_attacker,
                "{name}"
            );
            for heading in [
                "//! # ",
                "//! ## What it does",
                "//! ## Why",
                "//! ## Example",
                "//! ## Reference",
            ] {
                assert!(source.contains(heading), "{name}: no '{heading}'");
            }
            assert!(source.contains("#[tokio::test]"), "{name} has no test");
        }
    }

    #[test]
    fn building_names_what_is_missing() {
        let none = Helpers {
            attacker: None,
            judge: None,
            budget: 5,
        };
        assert_eq!(
            build_driven("pair", &none).err(),
            Some(AttackError::NeedsAttacker("pair".into()))
        );
        let attacker = scripted::Script::new("a", &[]);
        let only_attacker = Helpers {
            attacker: Some(attacker as Arc<dyn Helper>),
            ..none
        };
        assert_eq!(
            build_driven("tap", &only_attacker).err(),
            Some(AttackError::NeedsJudge("tap".into()))
        );
        assert!(build_driven("past-tense", &only_attacker).is_ok());
        assert!(build_driven("translate", &only_attacker)
            .err()
            .unwrap()
            .to_string()
            .contains("needs a language"));
        assert!(build_driven("translate:Zulu", &only_attacker).is_ok());
        assert!(build_driven("pair:0", &only_attacker)
            .err()
            .unwrap()
            .to_string()
            .contains("at least 1"));
        assert!(build_driven("crescendo:1:2:3", &only_attacker)
            .err()
            .unwrap()
            .to_string()
            .contains("too many"));
        let no_budget = Helpers {
            budget: 0,
            ..only_attacker
        };
        assert_eq!(
            build_driven("past-tense", &no_budget).err(),
            Some(AttackError::NoBudget)
        );
        assert!(is_driven("pair:3") && needs_judge("tap") && !needs_judge("translate:x"));
        assert!(!is_driven("fiction") && !is_driven("templates:x.json"));
    }
}
