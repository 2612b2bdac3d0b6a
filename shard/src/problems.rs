//! One shape for "what is wrong with these settings": ingest's configuration and its parts
//! (sources, captions, dedup, fetching, the shard writer) implement [`Validate`]; the trainer's
//! settings list their problems as [`Problem`]s too.
//!
//! A configuration implements [`Validate`]: [`Validate::problems`] lists every [`Problem`], each
//! naming its key (`caption.min_chars`, `fetch.concurrency`) and saying what is wrong and what to
//! change; [`Validate::validate`] turns a non-empty list into one [`Problems`] error. A
//! configuration made of parts lists its parts' problems under their table's name
//! ([`Problem::within`]), so the key is the one the user writes in the TOML file. Everything is
//! reported at once, not the first problem only, so a config file is fixed in one round.

use std::fmt;

/// One thing wrong with a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The setting's key, dotted from the top of its configuration (`image.resize.size`).
    pub key: String,
    /// What is wrong, and what to change; reads after the key (`must be at least 1`).
    pub message: String,
}

impl Problem {
    /// `key` `message`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same problem seen from the configuration that holds this one as `table`.
    pub fn within(self, table: &str) -> Problem {
        Problem {
            key: format!("{table}.{}", self.key),
            ..self
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.message)
    }
}

/// Every problem of a configuration (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&joined(&self.0))
    }
}

/// Every problem of `problems`, `; `-separated, as [`Problems`] shows them.
pub fn joined(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl std::error::Error for Problems {}

/// Settings that can be checked before any work starts.
pub trait Validate {
    /// Every problem of these settings; empty when they are usable.
    fn problems(&self) -> Vec<Problem>;

    /// `Ok` when [`Validate::problems`] is empty, else all of them.
    fn validate(&self) -> Result<(), Problems> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Problems(problems))
        }
    }
}

/// The problems of `part`, keyed under `table`.
pub fn problems_within(part: &dyn Validate, table: &str) -> Vec<Problem> {
    part.problems()
        .into_iter()
        .map(|p| p.within(table))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Part {
        size: u32,
    }

    impl Validate for Part {
        fn problems(&self) -> Vec<Problem> {
            let mut p = Vec::new();
            if self.size == 0 {
                p.push(Problem::new("size", "must be at least 1"));
            }
            if self.size > 9 {
                p.push(Problem::new("size", format!("= {} is above 9", self.size)));
            }
            p
        }
    }

    struct Whole {
        left: Part,
        right: Part,
    }

    impl Validate for Whole {
        fn problems(&self) -> Vec<Problem> {
            let mut p = problems_within(&self.left, "left");
            p.extend(problems_within(&self.right, "right"));
            p
        }
    }

    #[test]
    fn every_problem_is_reported_under_its_full_key() {
        let whole = Whole {
            left: Part { size: 0 },
            right: Part { size: 12 },
        };
        let err = whole.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "left.size must be at least 1; right.size = 12 is above 9"
        );
        assert_eq!(err.0[1].key, "right.size");
        let fine = Whole {
            left: Part { size: 1 },
            right: Part { size: 9 },
        };
        assert!(fine.validate().is_ok());
    }
}
