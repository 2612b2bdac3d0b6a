//! One download attempt: the redirect chain, hop by hop, then the body with its size cap.
//!
//! Redirects are followed here rather than by reqwest so that every hop goes through the same
//! checks as the first URL (scheme, literal address, the guarded resolver), loops are recognised
//! as loops, and each way of failing maps to its own reason code. An attempt's failure says
//! whether it is transient; the retry loop in [`Fetcher::fetch`](super::Fetcher::fetch) decides
//! what to do with that.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flipstream_schemas::RejectReason;
use reqwest::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use url::{Host, Url};

use super::Inner;
use super::address::BlockedHost;
use super::retry::{is_transient_status, parse_retry_after};

/// Largest buffer reserved up front from a `Content-Length`, so a lying header cannot make every
/// download in flight allocate the full size cap before any byte arrives.
const MAX_PREALLOCATION: u64 = 4 << 20;

/// The body and facts of the response that ended an attempt successfully.
pub(super) struct Body {
    pub bytes: Bytes,
    pub final_url: String,
    pub status: u16,
    pub content_type: Option<String>,
}

/// Why an attempt failed, and whether trying again may help.
#[derive(Debug)]
pub(super) struct AttemptFailure {
    pub reason: RejectReason,
    pub detail: String,
    /// Worth retrying (connect error, timeout, reset, 408/429/5xx).
    pub transient: bool,
    /// The server's `Retry-After`, when it sent a readable one.
    pub retry_after: Option<Duration>,
}

impl AttemptFailure {
    /// A failure that retrying cannot fix.
    pub(super) fn permanent(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            transient: false,
            retry_after: None,
        }
    }

    /// A network failure (`download_error`) that may go away on its own.
    pub(super) fn transient(detail: impl Into<String>) -> Self {
        Self {
            reason: RejectReason::DownloadError,
            detail: detail.into(),
            transient: true,
            retry_after: None,
        }
    }
}

/// Where the request was when reqwest failed: wording of the detail only.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Request,
    Body,
}

/// The longest URL requested: far beyond any image URL of the web (a few hundred bytes), and
/// below the 65,534 bytes the HTTP stack can carry at all.
pub(super) const MAX_URL_BYTES: usize = 32 * 1024;

impl Inner {
    /// Parses a URL from a list and applies the checks that need no network: a clear
    /// `invalid_url` or `blocked_address` before any request is made.
    pub(super) fn parse_url(&self, raw: &str) -> Result<Url, AttemptFailure> {
        let url = Url::parse(raw)
            .map_err(|e| AttemptFailure::permanent(RejectReason::InvalidUrl, format!("{e}")))?;
        self.check_url(&url)?;
        Ok(url)
    }

    /// The checks every hop passes before it is requested: length, scheme, host present, and a
    /// literal IP address allowed by the policy (host names are checked by the resolver after
    /// resolution).
    fn check_url(&self, url: &Url) -> Result<(), AttemptFailure> {
        let len = url.as_str().len();
        if len > MAX_URL_BYTES {
            return Err(AttemptFailure::permanent(
                RejectReason::InvalidUrl,
                format!("URL is {len} bytes long, over the limit of {MAX_URL_BYTES}"),
            ));
        }
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(AttemptFailure::permanent(
                RejectReason::InvalidUrl,
                format!("unsupported scheme {scheme:?} (only http and https)"),
            ));
        }
        let ip = match url.host() {
            None => {
                return Err(AttemptFailure::permanent(
                    RejectReason::InvalidUrl,
                    "URL has no host",
                ));
            }
            Some(Host::Domain(_)) => return Ok(()),
            Some(Host::Ipv4(ip)) => ip.into(),
            Some(Host::Ipv6(ip)) => ip.into(),
        };
        self.policy.check(ip).map_err(|range| {
            AttemptFailure::permanent(RejectReason::BlockedAddress, format!("{ip} is {range}"))
        })
    }

    /// One attempt at `start`: follows redirects, then reads the body.
    pub(super) async fn attempt(&self, start: &Url) -> Result<Body, AttemptFailure> {
        let max_redirects = self.config.max_redirects;
        let mut visited: Vec<Url> = Vec::new();
        let mut current = start.clone();
        loop {
            if !visited.is_empty() {
                self.check_url(&current).map_err(|f| AttemptFailure {
                    detail: format!("redirect to {current}: {}", f.detail),
                    ..f
                })?;
            }
            let response = self
                .client
                .get(current.clone())
                .send()
                .await
                .map_err(|e| self.classify(&e, Phase::Request))?;
            let status = response.status();
            visited.push(current);
            if let Some(location) = redirect_location(&response) {
                let from = visited.last().map_or_else(String::new, Url::to_string);
                let mut next = location.and_then(|loc| {
                    visited
                        .last()
                        .and_then(|base| base.join(loc).ok())
                        .ok_or_else(|| {
                            AttemptFailure::permanent(
                                RejectReason::InvalidUrl,
                                format!(
                                    "HTTP {} at {from} redirects to an invalid Location {loc:?}",
                                    status.as_u16()
                                ),
                            )
                        })
                })?;
                next.set_fragment(None);
                if visited.contains(&next) {
                    return Err(AttemptFailure::permanent(
                        RejectReason::TooManyRedirects,
                        format!(
                            "redirect loop: {from} redirects back to {next}, visited {}",
                            visited.len()
                        ),
                    ));
                }
                if visited.len() > max_redirects as usize {
                    return Err(AttemptFailure::permanent(
                        RejectReason::TooManyRedirects,
                        format!(
                            "more than max_redirects = {max_redirects} redirects (last to {next})"
                        ),
                    ));
                }
                current = next;
                continue;
            }
            if !status.is_success() {
                return Err(status_failure(&response));
            }
            if let Some(opt_out) = self
                .opt_outs
                .as_ref()
                .and_then(|rules| rules.check(response.headers()))
            {
                return Err(AttemptFailure::permanent(
                    RejectReason::OptedOut,
                    format!(
                        "X-Robots-Tag: {} (directive {:?})",
                        opt_out.header, opt_out.directive
                    ),
                ));
            }
            return self.read_body(response).await;
        }
    }

    /// Streams the body into memory, refusing it as soon as it is known to exceed the cap.
    async fn read_body(&self, mut response: Response) -> Result<Body, AttemptFailure> {
        let max = self.config.max_body_bytes;
        let declared = response.content_length();
        if let Some(len) = declared.filter(|&len| len > max) {
            return Err(AttemptFailure::permanent(
                RejectReason::BodyTooLarge,
                format!("Content-Length {len} exceeds max_body_bytes {max}"),
            ));
        }
        let final_url = response.url().to_string();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let reserve = declared.unwrap_or(0).min(MAX_PREALLOCATION);
        let mut buf = BytesMut::with_capacity(usize::try_from(reserve).unwrap_or(0));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.classify(&e, Phase::Body))?
        {
            let total = buf.len() as u64 + chunk.len() as u64;
            if total > max {
                return Err(AttemptFailure::permanent(
                    RejectReason::BodyTooLarge,
                    format!(
                        "body exceeds max_body_bytes {max} (stopped after {total} bytes, no Content-Length)"
                    ),
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Body {
            bytes: buf.freeze(),
            final_url,
            status,
            content_type,
        })
    }

    /// Maps a reqwest error to a reason: a refusal by the guarded resolver is `blocked_address`,
    /// everything else on the wire is a transient `download_error`.
    fn classify(&self, error: &reqwest::Error, phase: Phase) -> AttemptFailure {
        if let Some(blocked) = find_source::<BlockedHost>(error) {
            return AttemptFailure::permanent(RejectReason::BlockedAddress, blocked.to_string());
        }
        if error.is_builder() {
            return AttemptFailure::permanent(RejectReason::InvalidUrl, error_chain(error));
        }
        let chain = error_chain(error);
        let detail = if error.is_timeout() && error.is_connect() {
            format!(
                "connect timeout: no connection within connect_timeout_ms {} ({chain})",
                self.config.connect_timeout_ms
            )
        } else if error.is_timeout() {
            format!(
                "read timeout: no data for read_timeout_ms {} ({chain})",
                self.config.read_timeout_ms
            )
        } else if error.is_connect() {
            format!("connect error: {chain}")
        } else {
            match phase {
                Phase::Request => format!("request failed: {chain}"),
                Phase::Body => format!("reading the body failed: {chain}"),
            }
        };
        AttemptFailure::transient(detail)
    }
}

/// `None` when the response is not a redirect; `Some(Err)` for a redirect whose `Location` is
/// missing or not text; `Some(Ok(location))` otherwise.
fn redirect_location(response: &Response) -> Option<Result<&str, AttemptFailure>> {
    let status = response.status();
    let redirect = matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    );
    if !redirect {
        return None;
    }
    Some(match response.headers().get(LOCATION) {
        None => Err(AttemptFailure::permanent(
            RejectReason::HttpStatus,
            format!(
                "HTTP {} redirect without a Location header",
                status.as_u16()
            ),
        )),
        Some(value) => value.to_str().map_err(|_| {
            AttemptFailure::permanent(
                RejectReason::HttpStatus,
                format!(
                    "HTTP {} redirect with a non-ASCII Location header",
                    status.as_u16()
                ),
            )
        }),
    })
}

/// The failure for a non-success, non-redirect status.
fn status_failure(response: &Response) -> AttemptFailure {
    let status = response.status();
    let code = status.as_u16();
    let mut detail = format!("HTTP {code}");
    if let Some(reason) = status.canonical_reason() {
        detail = format!("{detail} {reason}");
    }
    let transient = is_transient_status(code);
    let retry_after_header = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok());
    if let Some(value) = retry_after_header {
        detail = format!("{detail} (Retry-After: {value})");
    }
    let retry_after = if transient {
        retry_after_header.and_then(|v| parse_retry_after(v, chrono::Utc::now()))
    } else {
        None
    };
    AttemptFailure {
        reason: RejectReason::HttpStatus,
        detail,
        transient,
        retry_after,
    }
}

/// The first error of type `T` in `error`'s source chain.
fn find_source<'e, T: StdError + 'static>(error: &'e (dyn StdError + 'static)) -> Option<&'e T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The messages of an error's source chain joined by ": ". reqwest's outermost message only
/// repeats the URL (already in the rejection row), so it is left out when there is a cause.
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut messages: Vec<String> = Vec::new();
    let mut current = error.source();
    while let Some(e) = current {
        let message = e.to_string();
        if messages.last() != Some(&message) {
            messages.push(message);
        }
        current = e.source();
    }
    if messages.is_empty() {
        error.to_string()
    } else {
        messages.join(": ")
    }
}
