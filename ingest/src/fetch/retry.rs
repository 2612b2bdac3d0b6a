//! The retry policy: which failures are transient, and how long to wait before the next attempt.
//!
//! - Transient: connect errors, timeouts, resets while reading, HTTP 408, 429 and 5xx.
//! - Wait before retry `k` (1-based): `min(backoff_max, backoff_base · 2^(k-1))`, times a uniform
//!   jitter factor in `[0.5, 1.0]` so that many failed downloads do not retry in lock step.
//! - A `Retry-After` header (seconds or an HTTP date) on a 408/429/5xx answer raises the wait to
//!   what the server asked for, if that is at most `retry_after_cap`; a longer request ends the
//!   retries (see [`RetryPlan`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use super::config::FetchConfig;

/// `true` for HTTP statuses worth retrying: 408 Request Timeout, 429 Too Many Requests, 5xx.
pub fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// Parses a `Retry-After` value: delta-seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015
/// 07:28:00 GMT`, relative to `now`; a date in the past means zero). `None` when unreadable.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// What to do after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPlan {
    /// Sleep this long, then try again.
    After(Duration),
    /// The server asked for a longer pause than `retry_after_cap`: give up now.
    RetryAfterTooLong(Duration),
}

/// Backoff and `Retry-After` handling, from the [`FetchConfig`].
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    retry_after_cap: Duration,
}

impl Backoff {
    /// The policy configured in `config`.
    pub fn new(config: &FetchConfig) -> Self {
        Self {
            base: Duration::from_millis(config.backoff_base_ms),
            max: Duration::from_millis(config.backoff_max_ms),
            retry_after_cap: Duration::from_millis(config.retry_after_cap_ms),
        }
    }

    /// The exponential backoff before retry `retry` (1-based), before jitter.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The plan before retry `retry` (1-based), given the server's `Retry-After` if any and a jitter
    /// factor in `[0.5, 1.0]`.
    pub fn plan_with_jitter(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> RetryPlan {
        let backoff = self.ceiling(retry).mul_f64(jitter.clamp(0.5, 1.0));
        match retry_after {
            Some(asked) if asked > self.retry_after_cap => RetryPlan::RetryAfterTooLong(asked),
            Some(asked) => RetryPlan::After(backoff.max(asked)),
            None => RetryPlan::After(backoff),
        }
    }

    /// [`plan_with_jitter`](Self::plan_with_jitter) with a random jitter.
    pub fn plan(&self, retry: u32, retry_after: Option<Duration>) -> RetryPlan {
        let jitter = rand::rng().random_range(0.5..=1.0);
        self.plan_with_jitter(retry, retry_after, jitter)
    }

    /// The configured `Retry-After` cap.
    pub fn retry_after_cap(&self) -> Duration {
        self.retry_after_cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(base: u64, max: u64, cap: u64) -> Backoff {
        let config = FetchConfig {
            backoff_base_ms: base,
            backoff_max_ms: max,
            retry_after_cap_ms: cap,
            ..Default::default()
        };
        Backoff::new(&config)
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(is_transient_status(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 410, 451, 600] {
            assert!(!is_transient_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_max_and_jitter_halves_at_most() {
        let b = backoff(100, 1_000, 5_000);
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(b.ceiling(1)), 100);
        assert_eq!(ms(b.ceiling(2)), 200);
        assert_eq!(ms(b.ceiling(3)), 400);
        assert_eq!(ms(b.ceiling(5)), 1_000);
        assert_eq!(ms(b.ceiling(200)), 1_000);
        assert_eq!(
            b.plan_with_jitter(2, None, 1.0),
            RetryPlan::After(Duration::from_millis(200))
        );
        assert_eq!(
            b.plan_with_jitter(2, None, 0.5),
            RetryPlan::After(Duration::from_millis(100))
        );
        assert_eq!(
            b.plan_with_jitter(2, None, 0.0),
            RetryPlan::After(Duration::from_millis(100))
        );
        for _ in 0..100 {
            match b.plan(3, None) {
                RetryPlan::After(d) => assert!((200..=400).contains(&d.as_millis()), "{d:?}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn retry_after_raises_the_wait_up_to_the_cap() {
        let b = backoff(100, 1_000, 5_000);
        let s = Duration::from_secs;
        assert_eq!(
            b.plan_with_jitter(1, Some(s(2)), 1.0),
            RetryPlan::After(s(2))
        );
        assert_eq!(
            b.plan_with_jitter(1, Some(s(5)), 1.0),
            RetryPlan::After(s(5))
        );
        assert_eq!(
            b.plan_with_jitter(1, Some(s(0)), 1.0),
            RetryPlan::After(Duration::from_millis(100))
        );
        assert_eq!(
            b.plan_with_jitter(1, Some(s(6)), 1.0),
            RetryPlan::RetryAfterTooLong(s(6))
        );
    }

    #[test]
    fn retry_after_values() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }
}
