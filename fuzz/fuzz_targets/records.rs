//! The dataset's own records, read back from storage: the manifest, commit records, and the
//! footer and schema check of shard and rejection files (the first byte picks which).
#![no_main]

#[path = "common.rs"]
mod common;

use bytes::Bytes;
use flipstream_schemas::{FileKind, layout, validate_parquet_file};
use flipstream_shard::StoreRoot;
use flipstream_shard::dataset::{parse_commit, read_manifest};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 3 {
        0 => {
            let root = StoreRoot::parse("memory://fuzz-records/ds").expect("memory root");
            let rt = common::runtime();
            rt.block_on(async {
                root.put(layout::MANIFEST, Bytes::copy_from_slice(rest))
                    .await
                    .expect("in-memory put");
                let _ = read_manifest(&root).await;
            });
        }
        1 => {
            let root = StoreRoot::parse("memory://fuzz-records/ds").expect("memory root");
            let _ = parse_commit(&root, &layout::commit_path("unit-0000"), rest);
        }
        _ => {
            let _ = validate_parquet_file(Bytes::copy_from_slice(rest), Some(FileKind::Shard));
            let _ = validate_parquet_file(Bytes::copy_from_slice(rest), None);
        }
    }
});
