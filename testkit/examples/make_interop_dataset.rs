//! Writes a small committed dataset with real JPEG images, through the real commit protocol, for
//! the Python interop tests (`tests/python/test_interop_readers.py`):
//!
//! ```text
//! cargo run -p flipstream-testkit --example make_interop_dataset -- DIR
//! ```
//!
//! Three units of 40 accepted pairs and 6 rejections each, row groups of 16 rows, shards of 25
//! rows (so units have two shards), passthrough columns `similarity` (f32) and `label_shape`
//! (utf8). DIR must not hold another dataset.

use flipstream_shard::{StoreRoot, WriterSettings};
use flipstream_testkit::synthetic::{SyntheticSpec, write_synthetic};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: make_interop_dataset DIR");
        std::process::exit(2);
    };
    let spec = SyntheticSpec {
        units: 3,
        rows_per_unit: 40,
        rejections_per_unit: 6,
        real_images: true,
        seed: 7,
        settings: WriterSettings {
            row_group_rows: 16,
            shard_rows: 25,
            ..WriterSettings::default()
        },
        ..SyntheticSpec::default()
    };
    let root = StoreRoot::parse(&dir)?;
    let records = write_synthetic(&root, &spec).await?;
    let rows: u64 = records.iter().map(|r| r.counts.accepted).sum();
    eprintln!(
        "wrote {} units, {rows} accepted rows to {}",
        records.len(),
        root.url()
    );
    Ok(())
}
