//! Caption cleanup (decoding, HTML entities, whitespace, length and junk rules).
#![no_main]

use flipstream_ingest::caption::{CaptionRules, clean_caption};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let rules = CaptionRules::default();
    if let Ok(clean) = clean_caption(Some(data), &rules) {
        // cleaning is idempotent: a clean caption comes out unchanged
        assert_eq!(
            clean_caption(Some(clean.as_bytes()), &rules).as_deref(),
            Ok(clean.as_str())
        );
    }
});
