//! The loader's resume state: where the next batch starts, and what the order was made from.
//!
//! Because position → sample is a pure function of (dataset, seed, epoch, batch size, lanes,
//! shuffle block), the state needs no buffer contents: a restarted loader computes batch `t` of
//! epoch `e` directly. The world size is deliberately absent: any world size dividing `lanes`
//! produces the same global batches, so a job may resume on a different number of GPUs.

use serde::{Deserialize, Serialize};

use super::config::LoaderConfig;
use super::error::{LoaderError, LoaderResult};

/// Where a loader stands: the next batch it will yield is batch `batch` of epoch `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderState {
    /// Epoch of the next batch.
    pub epoch: u64,
    /// Index of the next batch in its epoch.
    pub batch: u64,
    /// Seed of the order and augmentation.
    pub seed: u64,
    /// Global batch size.
    pub global_batch: usize,
    /// Number of lanes.
    pub lanes: usize,
    /// Fingerprint of the units (dataset content + split) the order was computed over.
    pub dataset_fingerprint: String,
}

impl LoaderState {
    /// The start of `epoch` for `config` over the dataset with `fingerprint`.
    pub fn start(config: &LoaderConfig, epoch: u64, fingerprint: &str) -> Self {
        Self {
            epoch,
            batch: 0,
            seed: config.seed,
            global_batch: config.batch_size,
            lanes: config.lanes,
            dataset_fingerprint: fingerprint.to_string(),
        }
    }

    /// Checks that this state was produced by a loader with the same order-defining settings
    /// over the same data; the message names the first field that differs.
    pub fn check_compatible(&self, config: &LoaderConfig, fingerprint: &str) -> LoaderResult<()> {
        let mismatch = |field: &str, saved: String, now: String| {
            LoaderError::State(format!(
                "{field} was {saved} when the state was saved, now {now}"
            ))
        };
        if self.seed != config.seed {
            return Err(mismatch(
                "seed",
                self.seed.to_string(),
                config.seed.to_string(),
            ));
        }
        if self.global_batch != config.batch_size {
            return Err(mismatch(
                "global batch size",
                self.global_batch.to_string(),
                config.batch_size.to_string(),
            ));
        }
        if self.lanes != config.lanes {
            return Err(mismatch(
                "lanes",
                self.lanes.to_string(),
                config.lanes.to_string(),
            ));
        }
        if self.dataset_fingerprint != fingerprint {
            return Err(mismatch(
                "the dataset fingerprint (committed row groups and split)",
                self.dataset_fingerprint.clone(),
                fingerprint.to_string(),
            ));
        }
        Ok(())
    }

    /// Parses a state from JSON, with the parse error in the message.
    pub fn from_json(text: &str) -> LoaderResult<Self> {
        serde_json::from_str(text)
            .map_err(|e| LoaderError::State(format!("not a loader state: {e}")))
    }

    /// The state as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_mismatches() {
        let c = LoaderConfig {
            seed: 5,
            batch_size: 32,
            lanes: 8,
            ..Default::default()
        };
        let s = LoaderState {
            batch: 3,
            ..LoaderState::start(&c, 2, "fp")
        };
        assert_eq!(LoaderState::from_json(&s.to_json()).unwrap(), s);
        s.check_compatible(&c, "fp").unwrap();
        let other = LoaderConfig {
            seed: 6,
            ..c.clone()
        };
        assert!(
            s.check_compatible(&other, "fp")
                .unwrap_err()
                .to_string()
                .contains("seed was 5")
        );
        assert!(
            s.check_compatible(&c, "other")
                .unwrap_err()
                .to_string()
                .contains("fingerprint")
        );
        assert!(LoaderState::from_json("{}").is_err());
    }
}
