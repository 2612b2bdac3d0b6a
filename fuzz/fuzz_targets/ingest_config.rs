//! `flipstream ingest --config`: TOML parsing and validation of every setting.
#![no_main]

use flipstream_ingest::config::IngestConfig;
use flipstream_shard::problems::Validate;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = IngestConfig::from_toml(text) {
        let _ = config.validate();
        let _ = config.fingerprint();
    }
});
