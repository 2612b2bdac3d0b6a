//! [`FetchConfig`]: every knob of the downloader, with defaults close to img2dataset's.
//!
//! Part of the ingest configuration (serde, `Default`, unknown fields refused); durations are
//! whole milliseconds so the resolved config reads the same in JSON and TOML.

use std::time::Duration;

use flipstream_shard::problems::{Problem, Validate};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The default `User-Agent`: program, version and where to read about it.
pub const DEFAULT_USER_AGENT: &str = concat!(
    "flipstream/",
    env!("CARGO_PKG_VERSION"),
    " (+https://github.com/flipstream/flipstream)"
);

/// How URLs are downloaded. See `docs/fetching.md` for the policy behind each field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// Download attempts in flight at once per [`Fetcher`](super::Fetcher), however many callers
    /// it has. Default 64.
    pub concurrency: usize,
    /// Time allowed to resolve the host and open the TCP (and TLS) connection, per hop.
    /// Default 10 000 ms.
    pub connect_timeout_ms: u64,
    /// Idle timeout: the longest wait for the next bytes of the response (headers or body).
    /// Default 20 000 ms.
    pub read_timeout_ms: u64,
    /// Time allowed for one whole attempt: every redirect hop and the full body.
    /// Default 60 000 ms.
    pub total_timeout_ms: u64,
    /// Further attempts after a transient failure (connect error, timeout, reset, HTTP 408, 429,
    /// 5xx). Default 2, so at most 3 attempts.
    pub retries: u32,
    /// Backoff before the first retry; doubles for each further retry, then jitter (× 0.5–1.0).
    /// Default 500 ms.
    pub backoff_base_ms: u64,
    /// Upper bound of the exponential backoff before jitter. Default 10 000 ms.
    pub backoff_max_ms: u64,
    /// Longest `Retry-After` honoured. A server asking for a longer wait is not retried (retrying
    /// sooner than asked is impolite, waiting longer stalls the pipeline). Default 30 000 ms.
    pub retry_after_cap_ms: u64,
    /// Redirects followed per attempt; one more is `too_many_redirects`, and so is a redirect back
    /// to a URL already visited (a loop). Default 5.
    pub max_redirects: u32,
    /// Largest body accepted, checked against `Content-Length` before reading and while streaming.
    /// Default 20 MiB.
    pub max_body_bytes: u64,
    /// The `User-Agent` header. Default `flipstream/<version> (+https://github.com/flipstream/flipstream)`.
    pub user_agent: String,
    /// Skip every address check (loopback, private, link-local … become reachable). For tests
    /// against 127.0.0.1 and trusted internal lists only. Default false.
    pub allow_private_addresses: bool,
    /// Networks reachable even though they are not public, e.g. `["10.20.0.0/16"]` for an internal
    /// mirror; everything else non-public stays blocked. Default empty.
    pub allowed_networks: Vec<IpNet>,
    /// Refuse images whose response carries an opt-out `X-Robots-Tag`. Default true.
    pub respect_opt_outs: bool,
    /// `X-Robots-Tag` directives that mean "do not use". Compared case-insensitively.
    /// Default `noai`, `noimageai`, `noindex`, `noimageindex` (as img2dataset).
    pub opt_out_directives: Vec<String>,
    /// User-agent tokens whose agent-scoped directives (`X-Robots-Tag: <token>: noai`) apply to us;
    /// directives scoped to any other agent are ignored. Default `flipstream`, `img2dataset`.
    pub opt_out_agents: Vec<String>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            connect_timeout_ms: 10_000,
            read_timeout_ms: 20_000,
            total_timeout_ms: 60_000,
            retries: 2,
            backoff_base_ms: 500,
            backoff_max_ms: 10_000,
            retry_after_cap_ms: 30_000,
            max_redirects: 5,
            max_body_bytes: 20 << 20,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            allow_private_addresses: false,
            allowed_networks: Vec::new(),
            respect_opt_outs: true,
            opt_out_directives: ["noai", "noimageai", "noindex", "noimageindex"]
                .map(String::from)
                .to_vec(),
            opt_out_agents: ["flipstream", "img2dataset"].map(String::from).to_vec(),
        }
    }
}

impl Validate for FetchConfig {
    fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        for (key, value) in [
            ("concurrency", self.concurrency as u64),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("read_timeout_ms", self.read_timeout_ms),
            ("total_timeout_ms", self.total_timeout_ms),
            ("max_body_bytes", self.max_body_bytes),
        ] {
            if value == 0 {
                p.push(Problem::new(key, "must be at least 1"));
            }
        }
        if self.backoff_max_ms < self.backoff_base_ms {
            p.push(Problem::new(
                "backoff_max_ms",
                format!(
                    "({}) must not be below backoff_base_ms ({})",
                    self.backoff_max_ms, self.backoff_base_ms
                ),
            ));
        }
        if self.user_agent.trim().is_empty() {
            p.push(Problem::new("user_agent", "must not be empty"));
        } else if let Some(bad) = self.user_agent.chars().find(|c| c.is_control()) {
            p.push(Problem::new(
                "user_agent",
                format!("contains the control character {bad:?}"),
            ));
        }
        for (key, list) in [
            ("opt_out_directives", &self.opt_out_directives),
            ("opt_out_agents", &self.opt_out_agents),
        ] {
            if let Some(bad) = list
                .iter()
                .find(|s| s.trim().is_empty() || s.contains([',', ':']))
            {
                p.push(Problem::new(
                    key,
                    format!("entry {bad:?} must be a non-empty token without ',' or ':'"),
                ));
            }
        }
        p
    }
}

impl FetchConfig {
    /// [`connect_timeout_ms`](Self::connect_timeout_ms) as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// [`read_timeout_ms`](Self::read_timeout_ms) as a duration.
    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }

    /// [`total_timeout_ms`](Self::total_timeout_ms) as a duration.
    pub fn total_timeout(&self) -> Duration {
        Duration::from_millis(self.total_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let config = FetchConfig::default();
        config.validate().unwrap();
        assert!(
            config
                .user_agent
                .starts_with(concat!("flipstream/", env!("CARGO_PKG_VERSION")))
        );
        let json = serde_json::to_string(&config).unwrap();
        let back: FetchConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn partial_config_takes_defaults_and_unknown_fields_are_refused() {
        let config: FetchConfig =
            serde_json::from_str(r#"{"retries": 0, "allowed_networks": ["10.1.0.0/16"]}"#).unwrap();
        assert_eq!(config.retries, 0);
        assert_eq!(config.concurrency, FetchConfig::default().concurrency);
        assert_eq!(
            config.allowed_networks,
            vec!["10.1.0.0/16".parse::<IpNet>().unwrap()]
        );
        assert!(serde_json::from_str::<FetchConfig>(r#"{"retry": 1}"#).is_err());
        assert!(
            serde_json::from_str::<FetchConfig>(r#"{"allowed_networks": ["10.1.0.0/99"]}"#)
                .is_err()
        );
    }

    #[test]
    fn validate_names_the_bad_field() {
        let bad = |f: fn(&mut FetchConfig)| {
            let mut c = FetchConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(|c| c.concurrency = 0).contains("concurrency"));
        assert!(bad(|c| c.read_timeout_ms = 0).contains("read_timeout_ms"));
        assert!(bad(|c| c.backoff_max_ms = 1).contains("backoff_max_ms"));
        assert!(bad(|c| c.max_body_bytes = 0).contains("max_body_bytes"));
        assert!(bad(|c| c.user_agent = "a\nb".into()).contains("user_agent"));
        assert!(bad(|c| c.opt_out_agents = vec!["bot: x".into()]).contains("opt_out_agents"));
    }
}
