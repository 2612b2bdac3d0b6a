//! Loader settings: a plain struct with `Default` + serde, so a trainer can write the resolved
//! configuration next to its checkpoints.
//!
//! Augmentation defaults follow FLIP (`configs/default.py` of facebookresearch/flip):
//! RandomResizedCrop with area scale (0.5, 1) and aspect ratio (3/4, 4/3), then a horizontal flip
//! with probability 0.5. For comparison: torchvision's `RandomResizedCrop` defaults to scale
//! (0.08, 1), MAE pre-training uses (0.2, 1) and open_clip's `AugmentationCfg` (0.9, 1) without a
//! flip. Resampling is bicubic (Catmull–Rom) like MAE and open_clip; torchvision's default is
//! bilinear, selectable with [`Interpolation::Bilinear`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{LoaderError, LoaderResult};

/// Training order (shuffled, equal per rank) or evaluation order (canonical, complete).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Seeded shuffle, the tail below one global batch dropped, RandomResizedCrop + flip.
    #[default]
    Train,
    /// Canonical order, nothing dropped (the last batch may be partial), contiguous shares per
    /// rank, shortest-side resize + centre crop.
    Eval,
}

/// Which rows to stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitSelection {
    /// Every committed row.
    #[default]
    All,
    /// Rows on the train side of `_flipstream/split.json`.
    Train,
    /// Rows on the validation side of `_flipstream/split.json`.
    Val,
}

impl SplitSelection {
    /// `all`, `train` or `val`.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitSelection::All => "all",
            SplitSelection::Train => "train",
            SplitSelection::Val => "val",
        }
    }
}

impl std::str::FromStr for SplitSelection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(SplitSelection::All),
            "train" => Ok(SplitSelection::Train),
            "val" => Ok(SplitSelection::Val),
            other => Err(format!("unknown split {other:?} (use all, train or val)")),
        }
    }
}

/// Resampling filter of the crop-resize.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Bilinear (torchvision's default).
    Bilinear,
    /// Bicubic, Catmull–Rom (MAE, open_clip).
    #[default]
    Bicubic,
}

/// Everything that decides what a loader yields, and how hard it works for it.
///
/// The *order* depends only on the dataset, `split`, `mode`, `seed`, `batch_size`, `lanes` and
/// `shuffle_block`; the *pixels* additionally on the augmentation fields. Thread counts and
/// prefetch depths change speed and memory, never results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    /// Train or eval order and augmentation.
    pub mode: Mode,
    /// Rows to stream.
    pub split: SplitSelection,
    /// Global batch size B over all ranks; each rank yields B / world_size samples per batch.
    pub batch_size: usize,
    /// Lanes L: the epoch's positions are cut into L contiguous segments, each shuffled
    /// independently; B % L == 0 and L % world_size == 0. Any world size dividing L sees the
    /// same global batches.
    pub lanes: usize,
    /// Seed of the unit permutation, the block shuffles and the augmentation.
    pub seed: u64,
    /// Positions per shuffle block K inside a lane (the bounded shuffle buffer).
    pub shuffle_block: usize,
    /// Stop when the epoch counter reaches this value (`None`: run until dropped). Train only.
    pub epochs: Option<u64>,
    /// Output side in pixels (square images, `image_size × image_size × 3`, HWC, u8).
    pub image_size: u32,
    /// RandomResizedCrop: range of the crop's area as a fraction of the image's.
    pub crop_scale: (f64, f64),
    /// RandomResizedCrop: range of the crop's aspect ratio (width / height).
    pub crop_ratio: (f64, f64),
    /// Probability of a horizontal flip (train).
    pub hflip_prob: f64,
    /// Eval: the centre crop covers this fraction of the shortest side (1.0 = CLIP's
    /// resize-shortest-side + centre crop; 0.875 = the classic ImageNet 256 → 224).
    pub eval_crop_fraction: f64,
    /// Resampling filter.
    pub interpolation: Interpolation,
    /// Passthrough columns to carry into each batch (e.g. `label` for evaluation).
    pub extra_columns: Vec<String>,
    /// A `tokenizer.json` to encode captions with; `None`: batches carry no tokens.
    pub tokenizer: Option<PathBuf>,
    /// Token context length (start and end tokens included).
    pub context_length: usize,
    /// Row groups fetched ahead of the current shuffle block(s), per lane. Memory per lane is
    /// about (shuffle_block + prefetch_row_groups × rows per row group) encoded images.
    pub prefetch_row_groups: usize,
    /// Finished batches buffered ahead of the consumer.
    pub prefetch_batches: usize,
    /// Decode threads (0: one per available core).
    pub decode_threads: usize,
    /// Threads of the I/O runtime.
    pub io_threads: usize,
    /// Row-group reads in flight at once.
    pub max_concurrent_fetches: usize,
    /// Open shard readers (footers) kept.
    pub reader_cache: usize,
    /// Retries of a failed store read before the row group counts as lost.
    pub retries: u32,
    /// First retry delay in milliseconds; doubles with each retry (at most 10 s).
    pub retry_backoff_ms: u64,
    /// Images with more pixels than this are refused (decompression bombs), and substituted.
    pub max_image_pixels: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Train,
            split: SplitSelection::All,
            batch_size: 256,
            lanes: 16,
            seed: 0,
            shuffle_block: 4096,
            epochs: None,
            image_size: 224,
            crop_scale: (0.5, 1.0),
            crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip_prob: 0.5,
            eval_crop_fraction: 1.0,
            interpolation: Interpolation::Bicubic,
            extra_columns: Vec::new(),
            tokenizer: None,
            context_length: 77,
            prefetch_row_groups: 8,
            prefetch_batches: 2,
            decode_threads: 0,
            io_threads: 2,
            max_concurrent_fetches: 16,
            reader_cache: 1024,
            retries: 4,
            retry_backoff_ms: 100,
            max_image_pixels: 64 << 20,
        }
    }
}

/// Which of how many data-parallel processes this loader feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rank {
    /// This process, `0..world_size`.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
}

impl Rank {
    /// The only process.
    pub const SINGLE: Rank = Rank {
        rank: 0,
        world_size: 1,
    };

    /// The rows of the global training batch (in the order one process would yield it) that
    /// this rank yields, in its yield order: the chunks of the lanes `l ≡ rank (mod world_size)`,
    /// each `batch_size / lanes` rows long. Settings that [`LoaderConfig::validate`] refuses give
    /// an empty list.
    pub fn global_rows(&self, batch_size: usize, lanes: usize) -> Vec<usize> {
        if lanes == 0 || self.world_size == 0 || !batch_size.is_multiple_of(lanes) {
            return Vec::new();
        }
        let chunk = batch_size / lanes;
        (self.rank..lanes)
            .step_by(self.world_size)
            .flat_map(|lane| lane * chunk..(lane + 1) * chunk)
            .collect()
    }
}

fn settings(msg: String) -> LoaderError {
    LoaderError::Settings(msg)
}

impl LoaderConfig {
    /// Checks everything that can be checked without the data; messages say what to change.
    pub fn validate(&self, rank: Rank) -> LoaderResult<()> {
        let Rank { rank, world_size } = rank;
        if world_size == 0 {
            return Err(settings("world size must be at least 1".into()));
        }
        if rank >= world_size {
            return Err(settings(format!(
                "rank {rank} is not below world size {world_size}; ranks are 0..{world_size}"
            )));
        }
        if self.batch_size == 0 {
            return Err(settings("batch size must be at least 1".into()));
        }
        if !self.batch_size.is_multiple_of(world_size) {
            return Err(settings(format!(
                "batch size {} is not divisible by world size {world_size}; use a multiple of {world_size}",
                self.batch_size
            )));
        }
        if self.mode == Mode::Train {
            let (b, l) = (self.batch_size, self.lanes);
            if l == 0 {
                return Err(settings("lanes must be at least 1".into()));
            }
            if b % l != 0 {
                return Err(settings(format!(
                    "batch size {b} is not divisible by lanes {l}; use a batch size that is a multiple of {l} \
                     (e.g. {}) or a number of lanes dividing {b}",
                    (b / l + 1) * l
                )));
            }
            if l % world_size != 0 {
                return Err(settings(format!(
                    "lanes {l} is not divisible by world size {world_size}; use lanes that are a multiple of \
                     {world_size} (e.g. {}), which also keeps batches identical when the world size changes",
                    world_size.max(l.div_ceil(world_size) * world_size)
                )));
            }
            if self.shuffle_block == 0 {
                return Err(settings("shuffle block must be at least 1".into()));
            }
            check_range("crop scale", self.crop_scale, 0.0, 1.0)?;
            check_range("crop ratio", self.crop_ratio, 0.0, f64::INFINITY)?;
            if !(0.0..=1.0).contains(&self.hflip_prob) {
                return Err(settings(format!(
                    "flip probability {} is not in [0, 1]",
                    self.hflip_prob
                )));
            }
        } else if !(self.eval_crop_fraction > 0.0 && self.eval_crop_fraction <= 1.0) {
            return Err(settings(format!(
                "eval crop fraction {} is not in (0, 1]",
                self.eval_crop_fraction
            )));
        }
        if self.image_size == 0 || self.image_size > 8192 {
            return Err(settings(format!(
                "image size {} is not in 1..=8192",
                self.image_size
            )));
        }
        if self.tokenizer.is_some() && self.context_length < 2 {
            return Err(settings(format!(
                "context length {} leaves no room for the start and end tokens; use at least 2",
                self.context_length
            )));
        }
        if self.io_threads == 0 || self.max_concurrent_fetches == 0 || self.reader_cache == 0 {
            return Err(settings(
                "io threads, concurrent fetches and reader cache must be at least 1".into(),
            ));
        }
        if self.prefetch_batches == 0 {
            return Err(settings("prefetch batches must be at least 1".into()));
        }
        Ok(())
    }

    /// Decode threads to start (`decode_threads`, or one per available core).
    pub fn resolved_decode_threads(&self) -> usize {
        if self.decode_threads > 0 {
            self.decode_threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

fn check_range(what: &str, (lo, hi): (f64, f64), min: f64, max: f64) -> LoaderResult<()> {
    if !(lo.is_finite() && hi.is_finite() && lo > min && lo <= hi && hi <= max) {
        return Err(settings(format!(
            "{what} ({lo}, {hi}) must satisfy {min} < low <= high <= {max}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = LoaderConfig::default();
        c.validate(Rank::SINGLE).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<LoaderConfig>(&json).unwrap(), c);
        let partial: LoaderConfig =
            serde_json::from_str(r#"{"batch_size": 64, "seed": 3}"#).unwrap();
        assert_eq!(partial.batch_size, 64);
        assert_eq!(partial.lanes, 16);
    }

    #[test]
    fn impossible_settings_say_what_to_change() {
        let c = LoaderConfig {
            batch_size: 60,
            lanes: 16,
            ..Default::default()
        };
        let e = c.validate(Rank::SINGLE).unwrap_err().to_string();
        assert!(e.contains("not divisible by lanes 16"), "{e}");
        let c = LoaderConfig {
            batch_size: 48,
            lanes: 6,
            ..Default::default()
        };
        let e = c
            .validate(Rank {
                rank: 0,
                world_size: 4,
            })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lanes 6 is not divisible by world size 4"),
            "{e}"
        );
        let e = LoaderConfig::default()
            .validate(Rank {
                rank: 2,
                world_size: 2,
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("rank 2 is not below world size 2"), "{e}");
        let c = LoaderConfig {
            crop_scale: (0.0, 1.0),
            ..Default::default()
        };
        assert!(c.validate(Rank::SINGLE).is_err());
        assert!("bogus".parse::<SplitSelection>().is_err());
    }

    #[test]
    fn global_rows_partition_the_batch_by_lane() {
        let rows = |rank, world_size| Rank { rank, world_size }.global_rows(8, 4);
        assert_eq!(rows(0, 1), (0..8).collect::<Vec<_>>());
        assert_eq!(rows(0, 2), vec![0, 1, 4, 5]);
        assert_eq!(rows(1, 2), vec![2, 3, 6, 7]);
        assert_eq!(rows(3, 4), vec![6, 7]);
        assert!(rows(0, 3).len() == 4 && Rank::SINGLE.global_rows(8, 3).is_empty());
    }
}
