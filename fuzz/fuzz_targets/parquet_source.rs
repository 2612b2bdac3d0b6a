//! Parquet inputs (with images or URLs), as ingest plans and reads them.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::read_as_input("pairs.parquet", data));
