//! Hints the command line adds to the libraries' errors: which flag (or suite key) gives what
//! is missing. The libraries' messages name no flag; this is the one place that knows them.

use redtrace_attacks::AttackError;
use redtrace_judges::JudgeError;

/// A hint for `error`, where one of its causes is a judge's or an attack's error with a flag
/// that fixes it.
pub fn hint(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| {
        if let Some(error) = cause.downcast_ref::<JudgeError>() {
            return judge(error);
        }
        cause.downcast_ref::<AttackError>().and_then(attack)
    })
}

fn judge(error: &JudgeError) -> Option<String> {
    Some(match error {
        JudgeError::NeedsModel(name) => format!(
            "give --judge-model MODEL_REF, or {name}=MODEL_REF (e.g. {name}=gguf:judge.gguf)"
        ),
        JudgeError::NeedsEndpoint => {
            "give --reward URL[,format=score|classify|messages][,model=M][,path=P][,threshold=T]"
                .into()
        }
        JudgeError::Unknown { .. } => "the README's judge table says what each one does".into(),
        JudgeError::Setup { name, .. } if name == "airbench" => {
            "pass --data-dir DIR (or REDTRACE_DATA) where `redtrace data pull airbench` put it"
                .into()
        }
        _ => return None,
    })
}

fn attack(error: &AttackError) -> Option<String> {
    Some(match error {
        AttackError::NeedsAttacker(_) => {
            "give --attacker-model MODEL_REF (or attacker_model in the suite file)".into()
        }
        AttackError::NeedsJudge(_) => {
            "give --judge-model MODEL_REF (or judge_model in the suite file)".into()
        }
        AttackError::NoBudget => "give --attack-budget N with N of 1 or more".into(),
        AttackError::Unknown { .. } => "`redtrace attacks` lists every attack".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_flag_that_fixes_the_error() {
        let error =
            anyhow::Error::from(JudgeError::NeedsModel("harm".into())).context("judge 'harm'");
        assert!(hint(&error)
            .unwrap()
            .contains("--judge-model MODEL_REF, or harm=MODEL_REF"));
        let error = anyhow::Error::from(AttackError::NeedsAttacker("pair".into()));
        assert!(hint(&error).unwrap().contains("--attacker-model"));
        assert_eq!(hint(&anyhow::anyhow!("something else")), None);
    }
}
