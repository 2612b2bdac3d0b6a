//! The sample order: which rows make up batch `t` of epoch `e` on rank `r`, as a pure function.
//!
//! **Train** (seed `s`, global batch `B`, lanes `L`, shuffle block `K`, world size `W`):
//! 1. The units are permuted with a permutation seeded by (s, e) and concatenated: positions
//!    `0..N`, each position one selected row.
//! 2. `N_e = floor(N / B) · B` positions are kept (the tail, under one batch, is dropped) and cut
//!    into `L` contiguous lanes of `N_e / L` positions.
//! 3. Inside a lane, positions are shuffled within blocks of `K`, each block by its own
//!    permutation seeded by (s, e, lane, block). Lane `l`'s block boundaries are staggered by
//!    `l·K/L` positions, so the lanes do not all need a fresh block of row groups at the same
//!    batch (which would stall every lane at once).
//! 4. Global batch `t` is, for each lane in order, its items `[t·B/L, (t+1)·B/L)`. Rank `r` owns
//!    the lanes `l ≡ r (mod W)` and yields their chunks concatenated.
//!
//! Consequences: the same seed gives the same order; each kept row appears once per epoch over
//! all ranks; every rank has `N_e / B` batches; the union of the ranks' batch `t` is the same for
//! every `W` dividing `L`; a lane reads a contiguous run of units, so a row group is read by one
//! rank (two at a lane boundary).
//!
//! **Eval**: canonical unit order, nothing dropped, rank `r` takes the contiguous positions
//! `[N·r/W, N·(r+1)/W)` in batches of `B / W`, the last one partial.

use super::config::{LoaderConfig, Mode, Rank};
use super::error::{LoaderError, LoaderResult};
use super::rng::{Tag, derive, permutation};
use super::units::Units;

/// One slot of a rank's batch: a position in the epoch's concatenated order, and the lane it
/// came from (the group within which a bad sample is substituted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Position in the epoch's concatenation of (permuted) units.
    pub pos: u64,
    /// Lane (train) or 0 (eval).
    pub group: u32,
}

#[derive(Debug)]
struct TrainLayout {
    seed: u64,
    epoch: u64,
    lanes: u64,
    lane_len: u64,
    chunk: u64,
    block: u64,
    my_lanes: Vec<u64>,
    /// The most recent block permutation of each owned lane: (block, permutation).
    cache: Vec<Option<(u64, Vec<u32>)>>,
}

#[derive(Debug)]
struct EvalLayout {
    start: u64,
    end: u64,
    per_batch: u64,
}

#[derive(Debug)]
enum Layout {
    Train(TrainLayout),
    Eval(EvalLayout),
}

/// The order of one epoch for one rank.
#[derive(Debug)]
pub(crate) struct EpochOrder {
    /// Position in the concatenation → unit index.
    perm: Vec<u32>,
    /// `starts[k]`: first position of the k-th unit of the concatenation; `starts[n] = N`.
    starts: Vec<u64>,
    layout: Layout,
    batches: u64,
    dropped: u64,
}

impl TrainLayout {
    fn shift(&self, lane: u64) -> u64 {
        ((u128::from(lane) * u128::from(self.block) / u128::from(self.lanes)) as u64) % self.block
    }

    fn block_of(&self, lane: u64, offset: u64) -> u64 {
        (offset + self.shift(lane)) / self.block
    }

    /// Lane offsets `[lo, hi)` of block `b` of `lane`.
    fn block_range(&self, lane: u64, b: u64) -> (u64, u64) {
        let shift = self.shift(lane);
        let lo = (b * self.block).saturating_sub(shift);
        let hi = ((b + 1) * self.block - shift).min(self.lane_len);
        (lo, hi)
    }

    /// The position of lane offset `offset` after the block shuffle; `slot` indexes `cache`.
    fn position(&mut self, slot: usize, lane: u64, offset: u64) -> u64 {
        let b = self.block_of(lane, offset);
        let (lo, hi) = self.block_range(lane, b);
        let fresh = !matches!(&self.cache[slot], Some((cached, _)) if *cached == b);
        if fresh {
            let seed = derive(Tag::Block, &[self.seed, self.epoch, lane, b]);
            self.cache[slot] = Some((b, permutation((hi - lo) as usize, seed)));
        }
        let j = match &self.cache[slot] {
            Some((_, p)) => p
                .get((offset - lo) as usize)
                .copied()
                .map_or(offset - lo, u64::from),
            None => offset - lo,
        };
        lane * self.lane_len + lo + j
    }
}

impl EpochOrder {
    /// The order of `epoch` for `rank` under `config` (train or eval per `config.mode`).
    pub(crate) fn new(
        units: &Units,
        config: &LoaderConfig,
        rank: Rank,
        epoch: u64,
    ) -> LoaderResult<Self> {
        let n = units.total_rows();
        let rows: Vec<u64> = units.units().iter().map(|u| u.rows).collect();
        let b = config.batch_size as u64;
        let w = rank.world_size as u64;
        let r = rank.rank as u64;
        match config.mode {
            Mode::Train => {
                let kept = n / b * b;
                if kept == 0 {
                    return Err(LoaderError::Settings(format!(
                        "the selected rows ({n}) are fewer than one global batch of {b}; use a smaller batch size"
                    )));
                }
                let lanes = config.lanes as u64;
                let perm = permutation(rows.len(), derive(Tag::Units, &[config.seed, epoch]));
                let starts = prefix_sums(
                    perm.iter()
                        .map(|&u| rows.get(u as usize).copied().unwrap_or(0)),
                );
                let my_lanes: Vec<u64> = (r..lanes).step_by(w as usize).collect();
                let layout = TrainLayout {
                    seed: config.seed,
                    epoch,
                    lanes,
                    lane_len: kept / lanes,
                    chunk: b / lanes,
                    block: config.shuffle_block as u64,
                    cache: vec![None; my_lanes.len()],
                    my_lanes,
                };
                Ok(Self {
                    perm,
                    starts,
                    layout: Layout::Train(layout),
                    batches: kept / b,
                    dropped: n - kept,
                })
            }
            Mode::Eval => {
                let start = (u128::from(n) * u128::from(r) / u128::from(w)) as u64;
                let end = (u128::from(n) * u128::from(r + 1) / u128::from(w)) as u64;
                if end == start {
                    return Err(LoaderError::Settings(format!(
                        "rank {r} of {w} gets no rows: the selection has only {n}; use fewer ranks for evaluation"
                    )));
                }
                let per_batch = b / w;
                let perm: Vec<u32> = (0..rows.len() as u32).collect();
                let starts = prefix_sums(rows.iter().copied());
                let batches = (end - start).div_ceil(per_batch);
                Ok(Self {
                    perm,
                    starts,
                    layout: Layout::Eval(EvalLayout {
                        start,
                        end,
                        per_batch,
                    }),
                    batches,
                    dropped: 0,
                })
            }
        }
    }

    /// Batches in this epoch (for this rank).
    pub(crate) fn batches(&self) -> u64 {
        self.batches
    }

    /// Selected rows left out of the epoch (the tail under one global batch; 0 in eval).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Samples this rank yields over the epoch.
    pub(crate) fn rank_samples(&self) -> u64 {
        match &self.layout {
            Layout::Train(t) => t.my_lanes.len() as u64 * t.lane_len,
            Layout::Eval(e) => e.end - e.start,
        }
    }

    /// The slots of this rank's batch `t`, in yield order.
    pub(crate) fn rank_batch(&mut self, t: u64) -> Vec<Slot> {
        match &mut self.layout {
            Layout::Train(layout) => {
                let mut out = Vec::with_capacity(layout.my_lanes.len() * layout.chunk as usize);
                for slot in 0..layout.my_lanes.len() {
                    let lane = layout.my_lanes[slot];
                    for offset in t * layout.chunk..(t + 1) * layout.chunk {
                        let pos = layout.position(slot, lane, offset);
                        out.push(Slot {
                            pos,
                            group: lane as u32,
                        });
                    }
                }
                out
            }
            Layout::Eval(e) => {
                let p0 = e.start + t * e.per_batch;
                let p1 = (p0 + e.per_batch).min(e.end);
                (p0..p1).map(|pos| Slot { pos, group: 0 }).collect()
            }
        }
    }

    /// `(k, row)`: the index of the unit in the concatenation, and the row within the unit's
    /// selected rows, of position `pos`.
    pub(crate) fn locate(&self, pos: u64) -> (usize, u64) {
        let k = self.starts.partition_point(|&s| s <= pos).saturating_sub(1);
        (k, pos - self.starts.get(k).copied().unwrap_or(0))
    }

    /// The unit index (into [`Units::units`]) of the k-th unit of the concatenation.
    pub(crate) fn unit_at(&self, k: usize) -> usize {
        self.perm.get(k).map_or(0, |&u| u as usize)
    }

    /// Units to hold for batch `t`, as inclusive ranges of concatenation indices: per group, the
    /// units of the shuffle block(s) the batch draws from plus `prefetch` more ahead (within the
    /// group's own units).
    pub(crate) fn window(&self, t: u64, prefetch: usize) -> Vec<(usize, usize)> {
        let k = |pos: u64| self.locate(pos).0;
        match &self.layout {
            Layout::Train(l) => l
                .my_lanes
                .iter()
                .map(|&lane| {
                    let base = lane * l.lane_len;
                    let (lo, _) = l.block_range(lane, l.block_of(lane, t * l.chunk));
                    let (_, hi) = l.block_range(lane, l.block_of(lane, (t + 1) * l.chunk - 1));
                    let last = k(base + l.lane_len - 1);
                    (k(base + lo), (k(base + hi - 1) + prefetch).min(last))
                })
                .collect(),
            Layout::Eval(e) => {
                let p0 = e.start + t * e.per_batch;
                let p1 = (p0 + e.per_batch).min(e.end);
                vec![(k(p0), (k(p1 - 1) + prefetch).min(k(e.end - 1)))]
            }
        }
    }
}

fn prefix_sums(rows: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut starts = vec![0u64];
    let mut acc = 0u64;
    for r in rows {
        acc += r;
        starts.push(acc);
    }
    starts
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn units() -> Units {
        // uneven row groups, 1000 rows in all
        Units::synthetic(&[64, 100, 7, 129, 200, 1, 99, 150, 250])
    }

    fn config(seed: u64) -> LoaderConfig {
        LoaderConfig {
            batch_size: 48,
            lanes: 8,
            shuffle_block: 20,
            seed,
            ..Default::default()
        }
    }

    fn all_batches(units: &Units, c: &LoaderConfig, rank: Rank, epoch: u64) -> Vec<Vec<Slot>> {
        let mut o = EpochOrder::new(units, c, rank, epoch).unwrap();
        (0..o.batches()).map(|t| o.rank_batch(t)).collect()
    }

    #[test]
    fn every_kept_position_once_and_equal_batches_for_any_world_size() {
        let u = units();
        let c = config(3);
        for w in [1usize, 2, 4, 8] {
            let mut seen = HashSet::new();
            let mut counts = Vec::new();
            for r in 0..w {
                let batches = all_batches(
                    &u,
                    &c,
                    Rank {
                        rank: r,
                        world_size: w,
                    },
                    0,
                );
                counts.push(batches.len());
                for b in &batches {
                    assert_eq!(b.len(), 48 / w);
                    for s in b {
                        assert!(seen.insert(s.pos), "position {} twice (w={w})", s.pos);
                    }
                }
            }
            assert!(counts.iter().all(|&c| c == 1000 / 48), "{counts:?}");
            assert_eq!(seen.len(), 1000 / 48 * 48);
        }
    }

    #[test]
    fn global_batches_do_not_depend_on_world_size() {
        let u = units();
        let c = config(9);
        let global = |w: usize| -> Vec<Vec<u64>> {
            let per_rank: Vec<Vec<Vec<Slot>>> = (0..w)
                .map(|r| {
                    all_batches(
                        &u,
                        &c,
                        Rank {
                            rank: r,
                            world_size: w,
                        },
                        1,
                    )
                })
                .collect();
            (0..per_rank[0].len())
                .map(|t| {
                    let mut v: Vec<u64> = per_rank
                        .iter()
                        .flat_map(|b| b[t].iter().map(|s| s.pos))
                        .collect();
                    v.sort_unstable();
                    v
                })
                .collect()
        };
        let one = global(1);
        assert_eq!(one, global(2));
        assert_eq!(one, global(4));
        assert_eq!(one, global(8));
    }

    #[test]
    fn order_depends_on_seed_and_epoch_and_shuffles_within_blocks() {
        let u = units();
        let a = all_batches(&u, &config(1), Rank::SINGLE, 0);
        assert_eq!(a, all_batches(&u, &config(1), Rank::SINGLE, 0));
        assert_ne!(a, all_batches(&u, &config(2), Rank::SINGLE, 0));
        assert_ne!(a, all_batches(&u, &config(1), Rank::SINGLE, 1));
        // lane 0's first block holds lane offsets 0..20: the first 20 of its positions are a
        // permutation of them
        let mut o = EpochOrder::new(
            &u,
            &config(1),
            Rank {
                rank: 0,
                world_size: 8,
            },
            0,
        )
        .unwrap();
        let first: Vec<u64> = (0..4)
            .flat_map(|t| o.rank_batch(t))
            .map(|s| s.pos)
            .collect();
        let mut block: Vec<u64> = first[..20].to_vec();
        block.sort_unstable();
        assert_eq!(block, (0..20).collect::<Vec<_>>());
        assert_ne!(first[..20].to_vec(), (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn windows_cover_every_unit_a_batch_needs() {
        let u = units();
        for prefetch in [0usize, 2] {
            let mut o = EpochOrder::new(
                &u,
                &config(4),
                Rank {
                    rank: 1,
                    world_size: 2,
                },
                0,
            )
            .unwrap();
            for t in 0..o.batches() {
                let window = o.window(t, prefetch);
                for s in o.rank_batch(t) {
                    let (k, row) = o.locate(s.pos);
                    assert!(row < u.units()[o.unit_at(k)].rows);
                    assert!(
                        window.iter().any(|&(a, b)| (a..=b).contains(&k)),
                        "t={t} k={k} {window:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn eval_covers_everything_in_canonical_order_with_a_partial_last_batch() {
        let u = units();
        let c = LoaderConfig {
            mode: Mode::Eval,
            batch_size: 48,
            ..Default::default()
        };
        let mut all = Vec::new();
        for r in 0..3 {
            let batches = all_batches(
                &u,
                &LoaderConfig {
                    batch_size: 48,
                    ..c.clone()
                },
                Rank {
                    rank: r,
                    world_size: 3,
                },
                0,
            );
            assert!(batches.iter().rev().skip(1).all(|b| b.len() == 16));
            all.extend(batches.into_iter().flatten().map(|s| s.pos));
        }
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        let o = EpochOrder::new(&u, &c, Rank::SINGLE, 0).unwrap();
        assert_eq!((o.batches(), o.dropped()), (21, 0));
        assert_eq!(o.locate(64), (1, 0));
        assert_eq!(o.locate(170), (2, 6));
        assert_eq!(o.locate(171), (3, 0));
    }

    #[test]
    fn too_few_rows_for_a_batch_is_refused() {
        let u = Units::synthetic(&[10]);
        let c = LoaderConfig {
            batch_size: 16,
            lanes: 4,
            ..Default::default()
        };
        let e = EpochOrder::new(&u, &c, Rank::SINGLE, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fewer than one global batch"), "{e}");
        let c = LoaderConfig {
            mode: Mode::Eval,
            batch_size: 16,
            ..Default::default()
        };
        assert!(
            EpochOrder::new(
                &Units::synthetic(&[1]),
                &c,
                Rank {
                    rank: 0,
                    world_size: 2
                },
                0
            )
            .is_err()
        );
    }
}
