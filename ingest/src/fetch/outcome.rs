//! What a download ends with: [`Fetched`] bytes, or a [`FetchFailure`] that becomes a rejection row;
//! and [`FetchError`], the error of setting a fetcher up.

use std::time::Duration;

use bytes::Bytes;
use flipstream_schemas::RejectReason;

/// A successful download.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The body, exactly as served.
    pub bytes: Bytes,
    /// The URL that answered, after redirects.
    pub final_url: String,
    /// The final HTTP status (2xx).
    pub status: u16,
    /// The `Content-Type` header of the final response, if any.
    pub content_type: Option<String>,
    /// From the call to the last byte, retries and their backoff included.
    pub elapsed: Duration,
    /// Attempts made (1 when the first one succeeded).
    pub attempts: u32,
}

/// A download that did not produce bytes: the rejection reason, what exactly happened, and how many
/// attempts were made. Never a panic, whatever the URL or the server does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct FetchFailure {
    /// One of `invalid_url`, `blocked_address`, `download_error`, `http_status`,
    /// `too_many_redirects`, `body_too_large`, `opted_out`.
    pub reason: RejectReason,
    /// What happened: the status, the timeout, the refused address, the header; ends with
    /// "(after N attempts)" when there were retries. This is what the rejection row stores.
    pub detail: String,
    /// Attempts made; 0 when the URL was refused before any request.
    pub attempts: u32,
}

/// Setting up a [`Fetcher`](super::Fetcher) failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A [`FetchConfig`](super::FetchConfig) field is out of range.
    #[error("invalid fetch configuration: {0}")]
    InvalidConfig(String),
    /// The HTTP client could not be built (TLS roots, invalid user agent).
    #[error("building the HTTP client (user agent {user_agent:?}): {source}")]
    Client {
        /// The configured user agent.
        user_agent: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
}
