//! The TLS crypto of every HTTP client flipstream builds (the cloud object stores, the URL
//! fetcher, the S3 upload signer): rustls with ring.
//!
//! reqwest is built without a crypto provider of its own (`rustls-no-provider`): its default,
//! aws-lc, costs a minute of CMake and C on every clean build. Without a provider reqwest panics
//! when a client is built, so every place that builds one calls [`install_crypto_provider`] first;
//! it is idempotent and cheap.

use std::sync::Once;

/// Makes ring's rustls provider the process default, unless a provider is already installed (an
/// embedding program's choice is kept).
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means another provider is already the default, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_builds_after_the_provider_is_installed() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        reqwest::Client::builder()
            .build()
            .expect("a TLS-capable client");
    }
}
