//! The two comparisons `bench fidelity` can run: which arms, which rows and claims, and how the
//! page is titled.

use std::path::PathBuf;

use super::report::{Claim, FLIP_CLAIMS, FLIP_ROWS, OBJECTIVE_CLAIMS, OBJECTIVE_ROWS, RowDef};

/// One comparison.
#[derive(Debug, Clone, Copy)]
pub(super) struct Suite {
    /// `flip` or `objectives` (the `--suite` value).
    pub name: &'static str,
    /// Rows of the table.
    pub rows: &'static [RowDef],
    /// The papers' claims set against the rows.
    pub claims: &'static [Claim],
    /// Whether every evaluation includes the linear probe.
    pub probe: bool,
    /// The page's title.
    pub title: &'static str,
    /// The heading of the claims table.
    pub claims_heading: &'static str,
    /// The page written when `--doc` is not given.
    pub default_doc: &'static str,
}

/// CLIP against FLIP's arms.
const FLIP: Suite = Suite {
    name: "flip",
    rows: &FLIP_ROWS,
    claims: &FLIP_CLAIMS,
    probe: false,
    title: "Learning fidelity: what masking buys",
    claims_heading: "FLIP's claims against the measurements",
    default_doc: "docs/fidelity.md",
};

/// The objectives side by side.
const OBJECTIVES: Suite = Suite {
    name: "objectives",
    rows: &OBJECTIVE_ROWS,
    claims: &OBJECTIVE_CLAIMS,
    probe: true,
    title: "Objectives side by side: CLIP, FLIP, MAE+CLIP, CAE v2 and MUG",
    claims_heading: "The papers' claims against the measurements",
    default_doc: "docs/objectives-bench.md",
};

impl Suite {
    /// The suite called `name` (`--suite` accepts only the two names).
    pub(super) fn named(name: &str) -> Suite {
        if name == OBJECTIVES.name {
            OBJECTIVES
        } else {
            FLIP
        }
    }

    /// The page to write: `--doc` or the suite's default.
    pub(super) fn doc(&self, given: Option<&PathBuf>) -> PathBuf {
        given
            .cloned()
            .unwrap_or_else(|| PathBuf::from(self.default_doc))
    }
}
