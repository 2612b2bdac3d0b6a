//! The URL checks before any download: parsing, length, scheme, host, literal addresses against
//! the SSRF policy. Nothing is requested.
#![no_main]

use std::sync::OnceLock;

use flipstream_ingest::fetch::{FetchConfig, Fetcher, non_public_range};

fn fetcher() -> &'static Fetcher {
    static F: OnceLock<Fetcher> = OnceLock::new();
    F.get_or_init(|| Fetcher::new(FetchConfig::default()).expect("default fetch config"))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = fetcher().check(text) {
        assert!(matches!(url.scheme(), "http" | "https"), "{url}");
        // a literal address that passed is public
        if let Some(url::Host::Ipv4(ip)) = url.host() {
            assert_eq!(non_public_range(ip.into()), None, "{url}");
        }
        if let Some(url::Host::Ipv6(ip)) = url.host() {
            assert_eq!(non_public_range(ip.into()), None, "{url}");
        }
    }
});
