//! WebDataset tars, as ingest reads them (members grouped into samples, sidecar JSON, captions).
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::read_as_input("shard.tar", data));
