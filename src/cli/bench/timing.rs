//! Timing helpers shared by the benchmarks: wall-clock and process CPU time (the shard crate's
//! `process_cpu_seconds`) of repeated runs, reported as medians.

use std::time::Instant;

use flipstream_loader::bench::process_cpu_seconds;
use serde::Serialize;

/// One measurement: seconds of wall-clock and CPU time for `items` items (images or pairs).
#[derive(Debug, Clone, Serialize)]
pub(super) struct Measure {
    pub name: &'static str,
    pub items: usize,
    pub median_wall_s: f64,
    pub median_cpu_s: f64,
    pub items_per_s: f64,
    pub items_per_cpu_s: f64,
}

/// The median (the upper one of an even count); NaN when empty.
pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Times `f` `repeat` times; `f` returns how many items it handled.
pub(super) fn measure(
    name: &'static str,
    repeat: usize,
    f: impl FnMut() -> anyhow::Result<usize>,
) -> anyhow::Result<Measure> {
    measure_prepared(name, repeat, || Ok(()), f)
}

/// [`measure`], running the untimed `prepare` before each timed run of `f`.
pub(super) fn measure_prepared(
    name: &'static str,
    repeat: usize,
    mut prepare: impl FnMut() -> anyhow::Result<()>,
    mut f: impl FnMut() -> anyhow::Result<usize>,
) -> anyhow::Result<Measure> {
    let (mut walls, mut cpus, mut items) = (Vec::new(), Vec::new(), 0);
    for _ in 0..repeat {
        prepare()?;
        let cpu0 = process_cpu_seconds().unwrap_or(0.0);
        let t0 = Instant::now();
        items = f()?;
        walls.push(t0.elapsed().as_secs_f64());
        cpus.push(process_cpu_seconds().unwrap_or(0.0) - cpu0);
    }
    let (wall, cpu) = (median(walls), median(cpus));
    Ok(Measure {
        name,
        items,
        median_wall_s: wall,
        median_cpu_s: cpu,
        items_per_s: items as f64 / wall,
        items_per_cpu_s: if cpu > 0.0 {
            items as f64 / cpu
        } else {
            f64::NAN
        },
    })
}
