//! What the fuzz targets share: one async runtime, and reading bytes as an ingest input file.
#![allow(dead_code)] // each target uses its part

use std::sync::OnceLock;

use flipstream_ingest::source::{SourceOptions, open_unit, plan_units};

/// One runtime for every input of a fuzzing process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Saves `bytes` as a file called `name` and reads it as `flipstream ingest` would: planned into
/// units, every item of every unit read. Errors are expected of bad input; a panic, a hang or an
/// allocation beyond the fuzzer's limit is a bug.
pub fn read_as_input(name: &str, bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("writing the input");
    let rt = runtime();
    let opts = SourceOptions::default();
    let input = path.to_string_lossy().into_owned();
    let Ok(plans) = rt.block_on(plan_units(&[input], &opts)) else {
        return;
    };
    for plan in plans {
        let Ok(mut unit) = open_unit(&plan, &opts, rt.handle().clone()) else {
            continue;
        };
        while let Some(item) = unit.next_item() {
            if item.is_err() {
                break;
            }
        }
    }
}
