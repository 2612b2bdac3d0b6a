//! URL lists: CSV, TSV, JSON lines and JSON arrays (the first byte picks the format).
#![no_main]

#[path = "common.rs"]
mod common;

const NAMES: [&str; 4] = ["urls.csv", "urls.tsv", "urls.jsonl", "urls.json"];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((&pick, rest)) = data.split_first() {
        common::read_as_input(NAMES[usize::from(pick) % NAMES.len()], rest);
    }
});
