//! Progress of long library work, handed to the caller: libraries never print.
//!
//! Every long operation of the data crates (ingest, `stats`, `shard verify` / `split` / `filter`,
//! `synth`, scoring) takes a `&dyn Progress` (or an `Arc` of one where the work is shared by
//! tasks) and reports its amount of work and its advance in its own unit (items, rows, files).
//! The command-line program renders it: a bar on a terminal, a plain line every few seconds when
//! stderr is a log file, nothing with `--quiet` or `--json` (`src/cli/progress.rs`). Library
//! users and tests pass `&()`, which ignores everything.
//!
//! The trainer's per-step reports are richer than a count and go through its own
//! `TrainObserver`; the loader's notices travel with its batches. Neither prints either.

/// Receives the progress of one operation. Called from any thread, concurrently.
pub trait Progress: Send + Sync {
    /// The operation has `total` units of work in all (called again when an estimate changes).
    fn set_total(&self, total: u64);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The operation's work is done; nothing more will be reported. An operation that fails may
    /// end without calling it (its error says what happened); whoever shows the progress tidies
    /// up when it is dropped.
    fn finish(&self) {}
}

/// No progress wanted.
impl Progress for () {
    fn set_total(&self, _total: u64) {}
    fn advance(&self, _n: u64) {}
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::Progress;

    /// What a caller sees: the total and the sum of the advances.
    #[derive(Default)]
    struct Tally {
        total: AtomicU64,
        done: AtomicU64,
    }

    impl Progress for Tally {
        fn set_total(&self, total: u64) {
            self.total.store(total, Ordering::Relaxed);
        }
        fn advance(&self, n: u64) {
            self.done.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_progress_is_usable_as_a_trait_object_from_threads() {
        let tally = Tally::default();
        let progress: &dyn Progress = &tally;
        progress.set_total(8);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| progress.advance(2));
            }
        });
        progress.finish();
        assert_eq!(tally.total.load(Ordering::Relaxed), 8);
        assert_eq!(tally.done.load(Ordering::Relaxed), 8);
        // the no-op progress takes anything
        ().set_total(3);
        ().advance(1);
    }
}
