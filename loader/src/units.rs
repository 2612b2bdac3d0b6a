//! The loader's units: the committed row groups in canonical order, each with its row count in
//! the selected split, and a fingerprint of that list so a saved state cannot be resumed over
//! different data. [`RowFilter`] picks a side's rows as they are read: by key hash, and, when the
//! split holds out label combinations, by the row's label values ([`side_of`]).

use std::collections::HashMap;
use std::sync::Arc;

use flipstream_schemas::{Holdout, Split, SplitManifest, side_of};

use super::config::SplitSelection;
use super::error::{LoaderError, LoaderResult};
use flipstream_shard::dataset::Dataset;

/// One row group of a committed shard, as the loader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Shard path relative to the dataset root.
    pub shard: String,
    /// Shard size in bytes.
    pub shard_bytes: u64,
    /// Row group index within the shard.
    pub row_group: usize,
    /// Rows stored in the row group.
    pub stored_rows: u64,
    /// Rows of the row group in the selected split.
    pub rows: u64,
    /// The checksum of its image values from the commit record, when it has one: the fetched
    /// images are checked against it ([`flipstream_schemas::checksum`]).
    pub image_checksum: Option<String>,
}

/// Which stored rows of a row group belong to the selection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RowFilter {
    /// Every row.
    All,
    /// Rows that [`side_of`] puts on `side`.
    Split {
        /// The side kept.
        side: Split,
        /// Seed of the key hash.
        seed: u64,
        /// Validation fraction.
        val_fraction: f64,
        /// Held-out label combinations (always `val`), if the split has them.
        holdout: Option<Arc<Holdout>>,
    },
}

impl RowFilter {
    /// True when the row with `key` and label values `labels` (in the holdout's column order;
    /// `None` when one is null or there is no holdout) is selected.
    pub(crate) fn keeps(&self, key: &str, labels: Option<&[&str]>) -> bool {
        match self {
            RowFilter::All => true,
            RowFilter::Split {
                side,
                seed,
                val_fraction,
                holdout,
            } => side_of(key, labels, *seed, *val_fraction, holdout.as_deref()) == *side,
        }
    }

    /// The label columns a row's side depends on (none without a holdout).
    pub(crate) fn label_columns(&self) -> &[String] {
        match self {
            RowFilter::Split {
                holdout: Some(h), ..
            } => &h.columns,
            _ => &[],
        }
    }
}

/// The units of a dataset for one split selection.
#[derive(Debug, Clone)]
pub struct Units {
    units: Vec<Unit>,
    total: u64,
    fingerprint: String,
    filter: RowFilter,
}

impl Units {
    /// Plans the units of `dataset` for `selection`; `split` is the dataset's split manifest
    /// (required for `train`/`val`). Row groups with no selected row are left out.
    pub fn plan(
        dataset: &Dataset,
        selection: SplitSelection,
        split: Option<&SplitManifest>,
    ) -> LoaderResult<Self> {
        let url = dataset.root().url().to_string();
        let side = match selection {
            SplitSelection::All => None,
            SplitSelection::Train => Some(Split::Train),
            SplitSelection::Val => Some(Split::Val),
        };
        let (filter, counts) = match (side, split) {
            (None, _) => (RowFilter::All, None),
            (Some(_), None) => return Err(LoaderError::NoSplit { url }),
            (Some(side), Some(m)) => {
                let counts: HashMap<(&str, usize), (u64, u64)> = m
                    .row_groups
                    .iter()
                    .map(|rg| {
                        (
                            (rg.shard.as_str(), rg.row_group as usize),
                            (rg.train, rg.val),
                        )
                    })
                    .collect();
                (
                    RowFilter::Split {
                        side,
                        seed: m.seed,
                        val_fraction: m.val_fraction,
                        holdout: m.holdout.clone().map(Arc::new),
                    },
                    Some(counts),
                )
            }
        };
        let mut units = Vec::new();
        for rg in dataset.row_groups() {
            let rows = match (&counts, side) {
                (Some(counts), Some(side)) => {
                    let Some(&(train, val)) = counts.get(&(rg.shard.as_str(), rg.index)) else {
                        return Err(LoaderError::SplitOutOfDate {
                            url,
                            detail: format!("{} row group {} is not in it", rg.shard, rg.index),
                        });
                    };
                    if train + val != rg.rows {
                        return Err(LoaderError::SplitOutOfDate {
                            url,
                            detail: format!(
                                "{} row group {} has {} rows but the split counts {train} + {val}",
                                rg.shard, rg.index, rg.rows
                            ),
                        });
                    }
                    if side == Split::Train { train } else { val }
                }
                _ => rg.rows,
            };
            if rows > 0 {
                units.push(Unit {
                    shard: rg.shard,
                    shard_bytes: rg.shard_bytes,
                    row_group: rg.index,
                    stored_rows: rg.rows,
                    rows,
                    image_checksum: rg.image_checksum,
                });
            }
        }
        if units.len() > u32::MAX as usize {
            return Err(LoaderError::Settings(format!(
                "{} row groups are more than the loader can order",
                units.len()
            )));
        }
        Ok(Self::from_units(units, filter, selection))
    }

    fn from_units(units: Vec<Unit>, filter: RowFilter, selection: SplitSelection) -> Self {
        let total = units.iter().map(|u| u.rows).sum();
        let mut h = blake3::Hasher::new();
        h.update(b"flipstream-loader-units-v1\0");
        h.update(selection.as_str().as_bytes());
        if let RowFilter::Split {
            seed,
            val_fraction,
            holdout,
            ..
        } = &filter
        {
            h.update(&seed.to_le_bytes());
            h.update(&val_fraction.to_le_bytes());
            if let Some(holdout) = holdout {
                // absent without a holdout, so older states still resume
                h.update(b"holdout\0");
                for value in holdout
                    .columns
                    .iter()
                    .chain(holdout.combos.iter().flatten())
                {
                    h.update(&(value.len() as u64).to_le_bytes());
                    h.update(value.as_bytes());
                }
            }
        }
        for u in &units {
            h.update(&(u.shard.len() as u64).to_le_bytes());
            h.update(u.shard.as_bytes());
            h.update(&(u.row_group as u64).to_le_bytes());
            h.update(&u.rows.to_le_bytes());
        }
        let fingerprint = h.finalize().to_hex()[..32].to_string();
        Self {
            units,
            total,
            fingerprint,
            filter,
        }
    }

    /// The units in canonical order.
    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    /// Selected rows over all units.
    pub fn total_rows(&self) -> u64 {
        self.total
    }

    /// Hex fingerprint of the unit list and split selection.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub(crate) fn filter(&self) -> &RowFilter {
        &self.filter
    }

    /// Units with given row counts (tests of the order, which need no data).
    #[cfg(test)]
    pub(crate) fn synthetic(rows: &[u64]) -> Self {
        let units = rows
            .iter()
            .enumerate()
            .map(|(i, &r)| Unit {
                shard: format!("s{i}"),
                shard_bytes: 0,
                row_group: 0,
                stored_rows: r,
                rows: r,
                image_checksum: None,
            })
            .collect();
        Self::from_units(units, RowFilter::All, SplitSelection::All)
    }
}
