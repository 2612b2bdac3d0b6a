//! How the CLI shows the progress that libraries report through
//! [`flipstream_shard::progress::Progress`] (libraries never print):
//!
//! - on a terminal, a bar on stderr with the count, rate and ETA;
//! - when stderr is not a terminal (a Slurm or Kubernetes log, a pipe), one plain line every
//!   [`LINE_EVERY`], so that a long job's log shows it is alive and how far it got; a short run
//!   prints none;
//! - nothing with `--quiet` or `--json` (stdout then carries the one JSON document).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flipstream_shard::progress::Progress;
use flipstream_stats::format;
use indicatif::{ProgressBar, ProgressStyle};

use super::Global;

/// How often a plain progress line is written when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(30);

/// The progress of one long operation (`ingest`, `stats`, `shard verify`, …), shown as
/// [`Global`] and the terminal say. Counts `unit`s (items, rows, files).
pub(crate) struct Meter {
    view: View,
}

enum View {
    Hidden,
    Bar(ProgressBar),
    Lines(Lines),
}

impl Meter {
    /// A meter labelled `label` (the command) counting `unit`.
    pub(crate) fn new(global: Global, label: &'static str, unit: &'static str) -> Meter {
        let view = if global.quiet || global.json {
            View::Hidden
        } else if std::io::stderr().is_terminal() {
            View::Bar(bar(label, unit))
        } else {
            View::Lines(Lines::new(label, unit, LINE_EVERY))
        };
        Meter { view }
    }
}

impl Progress for Meter {
    fn set_total(&self, total: u64) {
        match &self.view {
            View::Hidden => {}
            View::Bar(bar) => bar.set_length(total),
            View::Lines(lines) => lines.total.store(total, Ordering::Relaxed),
        }
    }

    fn advance(&self, n: u64) {
        match &self.view {
            View::Hidden => {}
            View::Bar(bar) => bar.inc(n),
            View::Lines(lines) => {
                if let Some(line) = lines.advance(n, Instant::now()) {
                    eprintln!("{line}");
                }
            }
        }
    }

    fn finish(&self) {
        if let View::Bar(bar) = &self.view {
            bar.finish_and_clear();
        }
    }
}

/// A bar left behind by a failed operation is cleared, so that its error is not printed after it.
impl Drop for Meter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The terminal bar: label, bar, count of `unit`, rate, ETA.
fn bar(label: &str, unit: &str) -> ProgressBar {
    let template = format!(
        "{{prefix:>8}} [{{elapsed_precise}}] [{{bar:36}}] {{human_pos}}/{{human_len}} {unit} \
         ({{per_sec}}, eta {{eta}})"
    );
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::new(0).with_style(style);
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Plain progress lines, at most one per `every`.
struct Lines {
    label: &'static str,
    unit: &'static str,
    every: Duration,
    started: Instant,
    total: AtomicU64,
    done: AtomicU64,
    /// When the last line was written, in ms after `started` (no lock: `advance` is called for
    /// every item, from many threads).
    last_ms: AtomicU64,
}

impl Lines {
    fn new(label: &'static str, unit: &'static str, every: Duration) -> Lines {
        let now = Instant::now();
        Lines {
            label,
            unit,
            every,
            started: now,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Counts `n` more units at `now`; the line to write, if one is due.
    fn advance(&self, n: u64, now: Instant) -> Option<String> {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let elapsed = now.saturating_duration_since(self.started);
        let now_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = now_ms.saturating_sub(last) >= u64::try_from(self.every.as_millis()).unwrap_or(0);
        // of the threads that find a line due, the one that moves `last_ms` writes it
        let won = due
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        won.then(|| self.line(done, elapsed.as_secs_f64()))
    }

    /// `ingest: 1,200/5,000 items (24.0 %), 40.0 items/s, 30 s`.
    fn line(&self, done: u64, elapsed_s: f64) -> String {
        let total = self.total.load(Ordering::Relaxed);
        let rate = if elapsed_s > 0.0 {
            done as f64 / elapsed_s
        } else {
            0.0
        };
        let of_total = if total > 0 {
            format!(
                "/{} {} ({:.1} %)",
                format::count(total),
                self.unit,
                100.0 * done as f64 / total as f64
            )
        } else {
            format!(" {}", self.unit)
        };
        format!(
            "{}: {}{of_total}, {rate:.1} {}/s, {:.0} s",
            self.label,
            format::count(done),
            self.unit,
            elapsed_s
        )
    }
}

/// The streaming loader's notices (row groups lost, samples substituted) on stderr, one line
/// each, above `bar` when there is one; nothing with `-q`.
pub(crate) fn show_loader_notices(notices: &[String], bar: Option<&ProgressBar>, global: Global) {
    if global.quiet || notices.is_empty() {
        return;
    }
    let print = || notices.iter().for_each(|n| eprintln!("loader: {n}"));
    match bar {
        Some(bar) => bar.suspend(print),
        None => print(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_at_most_once_per_interval_with_the_count_and_rate() {
        let lines = Lines::new("ingest", "items", Duration::from_secs(30));
        lines.total.store(5_000, Ordering::Relaxed);
        let t0 = lines.started;
        assert_eq!(lines.advance(600, t0 + Duration::from_secs(10)), None);
        let first = lines.advance(600, t0 + Duration::from_secs(30));
        assert_eq!(
            first.as_deref(),
            Some("ingest: 1,200/5,000 items (24.0 %), 40.0 items/s, 30 s")
        );
        assert_eq!(lines.advance(1, t0 + Duration::from_secs(45)), None);
        assert!(lines.advance(1, t0 + Duration::from_secs(61)).is_some());
    }

    #[test]
    fn without_a_total_a_line_gives_the_count_alone() {
        let lines = Lines::new("stats", "rows", Duration::ZERO);
        let line = lines.advance(10, lines.started + Duration::from_secs(2));
        assert_eq!(line.as_deref(), Some("stats: 10 rows, 5.0 rows/s, 2 s"));
    }

    #[test]
    fn quiet_and_json_show_nothing() {
        for global in [
            Global {
                json: true,
                quiet: false,
            },
            Global {
                json: false,
                quiet: true,
            },
        ] {
            let meter = Meter::new(global, "stats", "rows");
            assert!(matches!(meter.view, View::Hidden));
            meter.set_total(3);
            meter.advance(3);
            meter.finish();
        }
    }
}
