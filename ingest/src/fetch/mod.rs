//! Downloading images from URL lists: fast, bounded, polite and safe.
//!
//! URL lists (LAION, DataComp) are untrusted input from the open web. [`Fetcher`] downloads them
//! with one shared reqwest client (rustls, connection pooling) and turns every way a download can
//! go wrong into a [`FetchFailure`] carrying a [`RejectReason`](flipstream_schemas::RejectReason)
//! and a detail — never a panic:
//!
//! - `invalid_url`: unparsable, not `http`/`https`, no host;
//! - `blocked_address`: a literal IP or a resolved address that is not public ([`address`]); every
//!   redirect hop is checked again, and host names are checked *after* DNS resolution by the
//!   [`GuardedResolver`](address::GuardedResolver), so DNS rebinding to 127.0.0.1 fails;
//! - `download_error`: connect errors, connect / read / total timeouts, resets, after retries;
//! - `http_status`: a non-2xx answer (408, 429 and 5xx retried with backoff, `Retry-After` honoured);
//! - `too_many_redirects`: more than `max_redirects`, or a loop;
//! - `body_too_large`: `Content-Length` or the streamed body over `max_body_bytes`;
//! - `opted_out`: an `X-Robots-Tag` opt-out that applies to us ([`optout`]).
//!
//! At most `concurrency` attempts are in flight per [`Fetcher`] (and its clones), whoever calls
//! it: one semaphore, taken per attempt and released during a retry's backoff. Servers and NATs
//! see a bounded number of connections however many items the caller has in flight.
//! [`Fetcher::fetch_many`] yields results as they complete, so memory stays bounded however long
//! the list is. The policy in prose, with
//! every default, is in `docs/fetching.md`.

pub mod address;
mod attempt;
pub mod config;
pub mod optout;
pub mod outcome;
pub mod retry;

use std::sync::Arc;
use std::time::Instant;

use flipstream_shard::problems::Validate;
use futures::{Stream, StreamExt};
use reqwest::redirect;

pub use address::{AddressPolicy, GuardedResolver, is_public, non_public_range};
pub use config::{DEFAULT_USER_AGENT, FetchConfig};
pub use outcome::{FetchError, FetchFailure, Fetched};

use attempt::AttemptFailure;
use optout::OptOutRules;
use retry::{Backoff, RetryPlan};

/// Downloads URLs under one [`FetchConfig`]. Cheap to clone (one shared client and pool);
/// `Send + Sync`, so clones can be used from any number of tasks.
#[derive(Debug, Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

/// What the clones of a [`Fetcher`] share.
#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    config: FetchConfig,
    policy: Arc<AddressPolicy>,
    /// `None` when `respect_opt_outs` is off.
    opt_outs: Option<OptOutRules>,
    backoff: Backoff,
    /// `config.concurrency` permits: one per attempt in flight.
    slots: tokio::sync::Semaphore,
}

impl Fetcher {
    /// A fetcher for `config` (validated first).
    pub fn new(config: FetchConfig) -> Result<Self, FetchError> {
        config
            .validate()
            .map_err(|problems| FetchError::InvalidConfig(problems.to_string()))?;
        let policy = Arc::new(AddressPolicy {
            allow_private: config.allow_private_addresses,
            allowed_networks: config.allowed_networks.clone(),
        });
        flipstream_shard::store::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent.as_str())
            .connect_timeout(config.connect_timeout())
            .read_timeout(config.read_timeout())
            // Redirects are followed hop by hop in `attempt`, each hop re-checked.
            .redirect(redirect::Policy::none())
            // A proxy would resolve host names itself, out of reach of the address checks.
            .no_proxy()
            .referer(false)
            .dns_resolver(GuardedResolver::new(Arc::clone(&policy)))
            .build()
            .map_err(|source| FetchError::Client {
                user_agent: config.user_agent.clone(),
                source,
            })?;
        let opt_outs = config
            .respect_opt_outs
            .then(|| OptOutRules::new(&config.opt_out_directives, &config.opt_out_agents));
        let backoff = Backoff::new(&config);
        let slots = tokio::sync::Semaphore::new(config.concurrency);
        Ok(Self {
            inner: Arc::new(Inner {
                slots,
                client,
                config,
                policy,
                opt_outs,
                backoff,
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &FetchConfig {
        &self.inner.config
    }

    /// The checks a URL passes before any request (it parses, is at most 32 KiB, is http(s) with
    /// a host, and a literal address is allowed by the policy): the URL that would be requested,
    /// or the failure [`Fetcher::fetch`] would give with `attempts == 0`. No network.
    pub fn check(&self, url: &str) -> Result<url::Url, FetchFailure> {
        self.inner.parse_url(url).map_err(|f| finish(f, 0, None))
    }

    /// Downloads one URL: up to `1 + retries` attempts, each bounded by `total_timeout_ms` and
    /// following at most `max_redirects` redirects. A URL refused before any request (invalid,
    /// literal non-public address) fails with `attempts == 0`. Waits for a free slot when
    /// `concurrency` attempts are already in flight.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, FetchFailure> {
        let inner = &self.inner;
        let started = Instant::now();
        let start = self.check(url)?;
        let max_attempts = inner.config.retries.saturating_add(1);
        let total = inner.config.total_timeout();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = {
                // never closed, so acquiring only waits
                let _slot = inner.slots.acquire().await;
                match tokio::time::timeout(total, inner.attempt(&start)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(AttemptFailure::transient(format!(
                        "total timeout: attempt took longer than total_timeout_ms {}",
                        inner.config.total_timeout_ms
                    ))),
                }
            };
            let failure = match outcome {
                Ok(body) => {
                    return Ok(Fetched {
                        bytes: body.bytes,
                        final_url: body.final_url,
                        status: body.status,
                        content_type: body.content_type,
                        elapsed: started.elapsed(),
                        attempts,
                    });
                }
                Err(failure) => failure,
            };
            if !failure.transient || attempts >= max_attempts {
                return Err(finish(failure, attempts, None));
            }
            match inner.backoff.plan(attempts, failure.retry_after) {
                RetryPlan::After(wait) => tokio::time::sleep(wait).await,
                RetryPlan::RetryAfterTooLong(asked) => {
                    let note = format!(
                        "not retried: Retry-After {} s exceeds retry_after_cap_ms {}",
                        asked.as_secs(),
                        inner.backoff.retry_after_cap().as_millis()
                    );
                    return Err(finish(failure, attempts, Some(note)));
                }
            }
        }
    }

    /// Downloads a stream of `(key, url)` pairs with at most `concurrency` downloads in flight,
    /// yielding `(key, result)` in completion order (not input order). The input is pulled only as
    /// slots free up, so memory stays bounded whatever the length of the list.
    pub fn fetch_many<K, S>(
        &self,
        urls: S,
    ) -> impl Stream<Item = (K, Result<Fetched, FetchFailure>)> + use<K, S>
    where
        S: Stream<Item = (K, String)>,
    {
        let fetcher = self.clone();
        let concurrency = self.inner.config.concurrency;
        urls.map(move |(key, url)| {
            let fetcher = fetcher.clone();
            async move {
                let result = fetcher.fetch(&url).await;
                (key, result)
            }
        })
        .buffer_unordered(concurrency)
    }
}

/// The public failure for the last attempt's failure; the detail records retries and any note.
fn finish(failure: AttemptFailure, attempts: u32, note: Option<String>) -> FetchFailure {
    let mut detail = failure.detail;
    if let Some(note) = note {
        detail = format!("{detail}; {note}");
    }
    if attempts > 1 {
        detail = format!("{detail} (after {attempts} attempts)");
    }
    FetchFailure {
        reason: failure.reason,
        detail,
        attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn fetcher_is_shareable() {
        assert_send_sync_clone::<Fetcher>();
    }

    #[test]
    fn invalid_config_is_refused() {
        let err = Fetcher::new(FetchConfig {
            concurrency: 0,
            ..FetchConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("concurrency"), "{err}");
    }

    #[tokio::test]
    async fn fetch_future_is_send() {
        fn is_send<T: Send>(t: T) -> T {
            t
        }
        let fetcher = Fetcher::new(FetchConfig::default()).unwrap();
        let failure = is_send(fetcher.fetch("not a url")).await.unwrap_err();
        assert_eq!(failure.attempts, 0);
    }
}
