//! The image path of every ingested item: probe, limited decode, resize and re-encode.
#![no_main]

use flipstream_imaging::{ProcessSpec, probe, process_for_shard};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = probe(data);
    let spec = ProcessSpec {
        // small limits keep each run fast; the checks are the same at any size
        max_pixels: 4_000_000,
        ..ProcessSpec::default()
    };
    let _ = process_for_shard(data, &spec);
});
