//! Speed of the synthetic-pair generator: one item at a time on one thread (`render_pair`), and
//! whole WebDataset outputs on all threads (`generate`). Run with
//! `cargo bench -p flipstream-synth --bench synth`; set RAYON_NUM_THREADS to pin the pool.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flipstream_synth::{DirtMix, Layout, Overwrite, SynthConfig, SynthPlan, generate};

const ITEMS: u64 = 200;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("synth");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ITEMS));
    for (name, dirt) in [
        ("clean", DirtMix::none()),
        ("dirt_default", DirtMix::web_default()),
    ] {
        let cfg = SynthConfig {
            count: 100_000,
            dirt,
            ..SynthConfig::default()
        };
        let plan = SynthPlan::new(&cfg).expect("valid config");
        group.bench_function(format!("render_pair_1_thread/{name}"), |b| {
            let mut next = 0u64;
            b.iter(|| {
                for _ in 0..ITEMS {
                    black_box(plan.render_pair(next % cfg.count).expect("render"));
                    next += 1;
                }
            })
        });
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = SynthConfig {
        count: ITEMS,
        layout: Layout::Webdataset,
        dirt: DirtMix::web_default(),
        ..SynthConfig::default()
    };
    group.bench_function("generate_webdataset_all_threads", |b| {
        b.iter(|| {
            generate(&cfg, &dir.path().join("out"), Overwrite::Replace, &()).expect("generate")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
