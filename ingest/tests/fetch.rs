//! The downloader against the loopback test server: every reason code, retries, redirects, size
//! caps, timeouts, opt-outs, address blocking and bounded concurrency.

// clippy's allow-unwrap-in-tests covers `#[test]` functions only, not the set-up helpers here.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use flipstream_ingest::fetch::{FetchConfig, FetchFailure, Fetched, Fetcher};
use flipstream_schemas::RejectReason;
use flipstream_testkit::http_server::routes::BIG_DEFAULT_BYTES;
use flipstream_testkit::http_server::{TestServer, TestServerOptions};
use futures::StreamExt;
use tempfile::TempDir;

/// Bytes of `files/a.jpg` (the fetcher does not decode, so any bytes will do).
fn image_bytes() -> Vec<u8> {
    (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A served folder with `files/a.jpg`, `files/sub/b.png` and a short `files/tiny.txt`.
fn folder() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(files.join("sub")).unwrap();
    std::fs::write(files.join("a.jpg"), image_bytes()).unwrap();
    std::fs::write(files.join("sub/b.png"), b"\x89PNG not really").unwrap();
    std::fs::write(files.join("tiny.txt"), b"twenty bytes of text").unwrap();
    dir
}

fn start(dir: &Path) -> TestServer {
    TestServer::start(dir).unwrap()
}

/// Short timeouts and backoff so failing cases stay fast; loopback allowed.
fn config() -> FetchConfig {
    FetchConfig {
        allow_private_addresses: true,
        connect_timeout_ms: 2_000,
        read_timeout_ms: 2_000,
        total_timeout_ms: 5_000,
        backoff_base_ms: 1,
        backoff_max_ms: 5,
        ..FetchConfig::default()
    }
}

fn fetcher(config: FetchConfig) -> Fetcher {
    Fetcher::new(config).unwrap()
}

#[track_caller]
fn expect_failure(result: Result<Fetched, FetchFailure>, reason: RejectReason) -> FetchFailure {
    match result {
        Ok(f) => panic!(
            "expected {reason}, got a success from {} ({} bytes)",
            f.final_url,
            f.bytes.len()
        ),
        Err(failure) => {
            assert_eq!(failure.reason, reason, "{failure:?}");
            failure
        }
    }
}

#[tokio::test]
async fn success_returns_the_exact_bytes() {
    let dir = folder();
    let server = start(dir.path());
    let url = server.url("/files/a.jpg");
    let fetched = fetcher(config()).fetch(&url).await.unwrap();
    assert_eq!(fetched.bytes.as_ref(), image_bytes().as_slice());
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.final_url, url);
    assert_eq!(fetched.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(fetched.attempts, 1);
    assert_eq!(server.requests("/files/a.jpg"), 1);

    let png = fetcher(config())
        .fetch(&server.url("/files/sub/b.png"))
        .await
        .unwrap();
    assert_eq!(png.bytes.as_ref(), b"\x89PNG not really");
    assert_eq!(png.content_type.as_deref(), Some("image/png"));
}

#[tokio::test]
async fn sends_the_configured_user_agent() {
    let dir = folder();
    let server = start(dir.path());
    let fetched = fetcher(config())
        .fetch(&server.url("/headers"))
        .await
        .unwrap();
    let headers = String::from_utf8(fetched.bytes.to_vec()).unwrap();
    let expected = format!(
        "user-agent: flipstream/{} (+https://github.com/flipstream/flipstream)",
        env!("CARGO_PKG_VERSION")
    );
    assert!(headers.lines().any(|l| l == expected), "{headers}");

    let custom = FetchConfig {
        user_agent: "mybot/2".into(),
        ..config()
    };
    let fetched = fetcher(custom)
        .fetch(&server.url("/headers"))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&fetched.bytes).contains("user-agent: mybot/2"));
}

#[tokio::test]
async fn html_served_as_jpg_is_downloaded_with_its_content_type() {
    let dir = folder();
    let server = start(dir.path());
    let fetched = fetcher(config())
        .fetch(&server.url("/html/cat.jpg"))
        .await
        .unwrap();
    assert_eq!(fetched.status, 200);
    assert!(fetched.content_type.unwrap().starts_with("text/html"));
    assert!(fetched.bytes.starts_with(b"<!DOCTYPE html>"));
}

#[tokio::test]
async fn not_found_is_http_status_without_retry() {
    let dir = folder();
    let server = start(dir.path());
    let failure = expect_failure(
        fetcher(config())
            .fetch(&server.url("/files/missing.jpg"))
            .await,
        RejectReason::HttpStatus,
    );
    assert_eq!(failure.detail, "HTTP 404 Not Found");
    assert_eq!(failure.attempts, 1);
    assert_eq!(server.requests("/files/missing.jpg"), 1);
}

#[tokio::test]
async fn transient_errors_are_retried_until_success() {
    let dir = folder();
    let server = start(dir.path());
    let fetched = fetcher(config())
        .fetch(&server.url("/flaky/2/a.jpg"))
        .await
        .unwrap();
    assert_eq!(fetched.attempts, 3);
    assert_eq!(server.requests("/flaky/2/a.jpg"), 3);
    assert_eq!(fetched.bytes.as_ref(), image_bytes().as_slice());
}

#[tokio::test]
async fn a_persistent_server_error_fails_after_the_retries() {
    let dir = folder();
    let server = start(dir.path());
    let failure = expect_failure(
        fetcher(config()).fetch(&server.url("/status/500")).await,
        RejectReason::HttpStatus,
    );
    assert_eq!(failure.attempts, 3);
    assert_eq!(
        failure.detail,
        "HTTP 500 Internal Server Error (after 3 attempts)"
    );
    assert_eq!(server.requests("/status/500"), 3);

    let no_retries = FetchConfig {
        retries: 0,
        ..config()
    };
    let failure = expect_failure(
        fetcher(no_retries).fetch(&server.url("/status/503")).await,
        RejectReason::HttpStatus,
    );
    assert_eq!(failure.attempts, 1);
    assert_eq!(server.requests("/status/503"), 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let dir = folder();
    let server = start(dir.path());
    let started = Instant::now();
    let fetched = fetcher(config())
        .fetch(&server.url("/throttle/1/1/a.jpg"))
        .await
        .unwrap();
    assert_eq!(fetched.attempts, 2);
    // The backoff alone is at most 5 ms: only the header explains a one-second pause.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retry_after_beyond_the_cap_is_not_retried() {
    let dir = folder();
    let server = start(dir.path());
    let failure = expect_failure(
        fetcher(config())
            .fetch(&server.url("/throttle/1/3600/a.jpg"))
            .await,
        RejectReason::HttpStatus,
    );
    assert_eq!(failure.attempts, 1);
    assert!(
        failure
            .detail
            .starts_with("HTTP 429 Too Many Requests (Retry-After: 3600)"),
        "{}",
        failure.detail
    );
    assert!(
        failure.detail.contains("retry_after_cap_ms"),
        "{}",
        failure.detail
    );
    assert_eq!(server.requests("/throttle/1/3600/a.jpg"), 1);
}

#[tokio::test]
async fn redirects_within_the_limit_are_followed() {
    let dir = folder();
    let server = start(dir.path());
    let fetched = fetcher(config())
        .fetch(&server.url("/redirect/5/a.jpg"))
        .await
        .unwrap();
    assert_eq!(fetched.final_url, server.url("/files/a.jpg"));
    assert_eq!(fetched.bytes.as_ref(), image_bytes().as_slice());
    for k in 1..=5 {
        assert_eq!(server.requests(&format!("/redirect/{k}/a.jpg")), 1);
    }
}

#[tokio::test]
async fn too_many_redirects() {
    let dir = folder();
    let server = start(dir.path());
    let failure = expect_failure(
        fetcher(config())
            .fetch(&server.url("/redirect/6/a.jpg"))
            .await,
        RejectReason::TooManyRedirects,
    );
    assert!(
        failure.detail.contains("max_redirects = 5"),
        "{}",
        failure.detail
    );
    assert_eq!(failure.attempts, 1);
    assert_eq!(server.requests("/files/a.jpg"), 0);

    let strict = FetchConfig {
        max_redirects: 0,
        ..config()
    };
    expect_failure(
        fetcher(strict)
            .fetch(&server.url("/redirect/1/a.jpg"))
            .await,
        RejectReason::TooManyRedirects,
    );
}

#[tokio::test]
async fn redirect_loops_are_detected() {
    let dir = folder();
    let server = start(dir.path());
    let lenient = FetchConfig {
        max_redirects: 50,
        ..config()
    };
    let failure = expect_failure(
        fetcher(lenient).fetch(&server.url("/loop")).await,
        RejectReason::TooManyRedirects,
    );
    assert!(
        failure.detail.contains("redirect loop"),
        "{}",
        failure.detail
    );
    assert_eq!(failure.attempts, 1);
    // Detected on the first repeat, not after 50 hops.
    assert_eq!(server.requests("/loop"), 1);
    assert_eq!(server.requests("/loop/b"), 1);
}

#[tokio::test]
async fn redirects_to_other_schemes_are_invalid() {
    let dir = folder();
    let server = start(dir.path());
    let failure = expect_failure(
        fetcher(config())
            .fetch(&server.url("/redirect-to/file:///etc/passwd"))
            .await,
        RejectReason::InvalidUrl,
    );
    assert!(
        failure.detail.contains("redirect to file:///etc/passwd"),
        "{}",
        failure.detail
    );
}

#[tokio::test]
async fn body_too_large_by_content_length_stops_early() {
    let dir = folder();
    let server = start(dir.path());
    let capped = FetchConfig {
        max_body_bytes: 1 << 20,
        ..config()
    };
    let failure = expect_failure(
        fetcher(capped).fetch(&server.url("/big")).await,
        RejectReason::BodyTooLarge,
    );
    assert_eq!(
        failure.detail,
        format!("Content-Length {BIG_DEFAULT_BYTES} exceeds max_body_bytes 1048576")
    );
    assert_eq!(failure.attempts, 1);
    let sent = server.body_bytes_sent("/big");
    assert!(
        sent < 64 << 20,
        "the server wrote {sent} bytes of a refused body"
    );
}

#[tokio::test]
async fn body_too_large_while_streaming_stops_early() {
    let dir = folder();
    let server = start(dir.path());
    let capped = FetchConfig {
        max_body_bytes: 1 << 20,
        ..config()
    };
    let failure = expect_failure(
        fetcher(capped).fetch(&server.url("/big-chunked")).await,
        RejectReason::BodyTooLarge,
    );
    assert!(
        failure
            .detail
            .starts_with("body exceeds max_body_bytes 1048576"),
        "{}",
        failure.detail
    );
    assert_eq!(failure.attempts, 1);
    let sent = server.body_bytes_sent("/big-chunked");
    assert!(
        sent < 64 << 20,
        "the server wrote {sent} bytes of an endless body"
    );
    assert!(
        sent > 1 << 20,
        "the cap was reached, so more than 1 MiB was sent ({sent})"
    );
}

#[tokio::test]
async fn bodies_up_to_the_cap_are_accepted() {
    let dir = folder();
    let server = start(dir.path());
    let capped = FetchConfig {
        max_body_bytes: 1 << 20,
        ..config()
    };
    let fetcher = fetcher(capped);
    for path in ["/big/1048576", "/big-chunked/1048576"] {
        let fetched = fetcher.fetch(&server.url(path)).await.unwrap();
        assert_eq!(fetched.bytes.len(), 1 << 20, "{path}");
    }
    expect_failure(
        fetcher.fetch(&server.url("/big/1048577")).await,
        RejectReason::BodyTooLarge,
    );
    expect_failure(
        fetcher.fetch(&server.url("/big-chunked/1048577")).await,
        RejectReason::BodyTooLarge,
    );
}

#[tokio::test]
async fn a_server_slower_than_the_read_timeout_is_a_download_error() {
    let dir = folder();
    let server = start(dir.path()); // one byte per 500 ms
    let impatient = FetchConfig {
        read_timeout_ms: 100,
        retries: 1,
        ..config()
    };
    let failure = expect_failure(
        fetcher(impatient)
            .fetch(&server.url("/slow/tiny.txt"))
            .await,
        RejectReason::DownloadError,
    );
    assert!(
        failure
            .detail
            .starts_with("read timeout: no data for read_timeout_ms 100"),
        "{}",
        failure.detail
    );
    assert_eq!(failure.attempts, 2);
    assert_eq!(server.requests("/slow/tiny.txt"), 2);
}

#[tokio::test]
async fn a_trickle_is_cut_by_the_total_timeout() {
    let dir = folder();
    let options = TestServerOptions {
        slow_interval: Duration::from_millis(50),
    };
    let server = TestServer::start_with(dir.path(), options).unwrap(); // 20 bytes: 1 s
    let bounded = FetchConfig {
        read_timeout_ms: 2_000,
        total_timeout_ms: 300,
        retries: 0,
        ..config()
    };
    let failure = expect_failure(
        fetcher(bounded).fetch(&server.url("/slow/tiny.txt")).await,
        RejectReason::DownloadError,
    );
    assert!(
        failure.detail.starts_with("total timeout"),
        "{}",
        failure.detail
    );

    let patient = FetchConfig {
        read_timeout_ms: 2_000,
        total_timeout_ms: 5_000,
        ..config()
    };
    let fetched = fetcher(patient)
        .fetch(&server.url("/slow/tiny.txt"))
        .await
        .unwrap();
    assert_eq!(fetched.bytes.as_ref(), b"twenty bytes of text");
}

#[tokio::test]
async fn a_refused_connection_is_a_download_error_after_retries() {
    // A port that was free a moment ago: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let failure = expect_failure(
        fetcher(config())
            .fetch(&format!("http://127.0.0.1:{port}/a.jpg"))
            .await,
        RejectReason::DownloadError,
    );
    assert!(
        failure.detail.starts_with("connect error"),
        "{}",
        failure.detail
    );
    assert_eq!(failure.attempts, 3);
}

#[tokio::test]
async fn opt_outs_are_honoured() {
    let dir = folder();
    let server = start(dir.path());
    let fetcher = fetcher(config());
    for value in [
        "noai",
        "noimageai",
        "noindex",
        "noimageindex",
        "NoAI",
        "nofollow,%20noai",
        "none",
        "flipstream:%20noai",
        "img2dataset:%20noimageindex",
        "otherbot:%20nofollow,%20flipstream:%20noai",
    ] {
        let path = format!("/robots/{value}/a.jpg");
        let failure = expect_failure(
            fetcher.fetch(&server.url(&path)).await,
            RejectReason::OptedOut,
        );
        assert!(
            failure.detail.starts_with("X-Robots-Tag: "),
            "{}",
            failure.detail
        );
        assert_eq!(failure.attempts, 1);
        // Refused from the headers: the retry loop does not come back for it.
        assert_eq!(server.requests(&path), 1);
    }
    for value in [
        "otherbot:%20noai",
        "googlebot:%20noindex,%20noimageai",
        "nofollow",
        "max-image-preview:%20large",
    ] {
        let fetched = fetcher
            .fetch(&server.url(&format!("/robots/{value}/a.jpg")))
            .await
            .unwrap();
        assert_eq!(fetched.bytes.as_ref(), image_bytes().as_slice(), "{value}");
    }
}

#[tokio::test]
async fn opt_outs_can_be_ignored_or_customised() {
    let dir = folder();
    let server = start(dir.path());
    let ignoring = FetchConfig {
        respect_opt_outs: false,
        ..config()
    };
    fetcher(ignoring)
        .fetch(&server.url("/robots/noai/a.jpg"))
        .await
        .unwrap();

    let custom = FetchConfig {
        opt_out_directives: vec!["nocrawl".into()],
        opt_out_agents: vec!["mybot".into()],
        ..config()
    };
    let fetcher = fetcher(custom);
    fetcher
        .fetch(&server.url("/robots/noai/a.jpg"))
        .await
        .unwrap();
    expect_failure(
        fetcher
            .fetch(&server.url("/robots/mybot:%20nocrawl/a.jpg"))
            .await,
        RejectReason::OptedOut,
    );
    fetcher
        .fetch(&server.url("/robots/flipstream:%20nocrawl/a.jpg"))
        .await
        .unwrap();
}

#[tokio::test]
async fn loopback_is_blocked_before_any_connection() {
    let dir = folder();
    let server = start(dir.path());
    let port = server.addr().port();
    let strict = fetcher(FetchConfig {
        allow_private_addresses: false,
        ..config()
    });
    for url in [
        server.url("/files/a.jpg"),
        format!("http://127.1:{port}/files/a.jpg"),
        format!("http://0x7f000001:{port}/files/a.jpg"),
        format!("http://2130706433:{port}/files/a.jpg"),
        format!("http://[::1]:{port}/files/a.jpg"),
        format!("http://[::ffff:127.0.0.1]:{port}/files/a.jpg"),
        format!("http://0.0.0.0:{port}/files/a.jpg"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "https://10.0.0.1/a.jpg".to_owned(),
    ] {
        let failure = expect_failure(strict.fetch(&url).await, RejectReason::BlockedAddress);
        assert_eq!(failure.attempts, 0, "{url}: {failure:?}");
    }
    // A host name is checked after resolution: localhost resolves only to loopback.
    let failure = expect_failure(
        strict
            .fetch(&format!("http://localhost:{port}/files/a.jpg"))
            .await,
        RejectReason::BlockedAddress,
    );
    assert!(
        failure
            .detail
            .starts_with("localhost resolves only to non-public addresses"),
        "{}",
        failure.detail
    );
    assert_eq!(failure.attempts, 1, "a refusal is not retried");
    assert_eq!(server.connections(), 0);
    assert_eq!(server.total_requests(), 0);
}

#[tokio::test]
async fn every_redirect_hop_is_checked() {
    let dir = folder();
    let server = start(dir.path());
    let port = server.addr().port();
    // The test server itself is reachable; nothing else non-public is.
    let only_this_server = FetchConfig {
        allow_private_addresses: false,
        allowed_networks: vec!["127.0.0.1/32".parse().unwrap()],
        ..config()
    };
    let strict = fetcher(only_this_server);
    strict
        .fetch(&server.url("/redirect/2/a.jpg"))
        .await
        .unwrap();
    for target in [
        "/redirect-to/http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("/redirect-to/http://127.0.0.2:{port}/files/a.jpg"),
        format!("/redirect-to/http://[::ffff:10.0.0.1]:{port}/files/a.jpg"),
    ] {
        let failure = expect_failure(
            strict.fetch(&server.url(&target)).await,
            RejectReason::BlockedAddress,
        );
        assert!(
            failure.detail.starts_with("redirect to http://"),
            "{}",
            failure.detail
        );
        assert_eq!(server.requests(&target), 1);
    }
    assert_eq!(
        server.requests("/files/a.jpg"),
        1,
        "only the allowed redirect reached the file"
    );
    // Opening the private ranges does not open the metadata endpoint's link-local range.
    let open = fetcher(FetchConfig {
        allow_private_addresses: true,
        ..config()
    });
    let target = "/redirect-to/http://169.254.169.254/latest/meta-data/";
    let failure = expect_failure(
        open.fetch(&server.url(target)).await,
        RejectReason::BlockedAddress,
    );
    assert!(failure.detail.contains("link-local"), "{}", failure.detail);
}

#[tokio::test]
async fn invalid_urls_are_refused_without_a_request() {
    let fetcher = fetcher(FetchConfig::default());
    for url in [
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "garbage",
        "",
        "http://",
        "http://exa mple.com/a.jpg",
        "https://[::1/a.jpg",
        "//example.com/a.jpg",
    ] {
        let failure = expect_failure(fetcher.fetch(url).await, RejectReason::InvalidUrl);
        assert_eq!(failure.attempts, 0, "{url:?}");
        assert!(!failure.detail.is_empty());
    }
    // a 100 kB URL: its length is the reason given, not the HTTP stack's "not a valid Uri"
    let long = format!("http://example.com/{}.jpg", "a".repeat(100_000));
    let failure = expect_failure(fetcher.fetch(&long).await, RejectReason::InvalidUrl);
    assert_eq!(failure.attempts, 0);
    assert!(
        failure
            .detail
            .contains("bytes long, over the limit of 32768"),
        "{}",
        failure.detail
    );
}

#[tokio::test]
async fn fetch_many_returns_every_result_with_bounded_concurrency() {
    let dir = folder();
    let server = start(dir.path());
    let fetcher = fetcher(FetchConfig {
        concurrency: 4,
        ..config()
    });
    let urls: Vec<(usize, String)> = (0..50)
        .map(|i| {
            let path = match i % 5 {
                0 => format!("/files/missing-{i}.jpg"),
                1 => "/files/sub/b.png".to_owned(),
                _ => format!("/files/a.jpg?i={i}"),
            };
            (i, server.url(&path))
        })
        .collect();
    let results: Vec<_> = fetcher
        .fetch_many(futures::stream::iter(urls))
        .collect()
        .await;
    assert_eq!(results.len(), 50);
    let keys: HashSet<usize> = results.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, (0..50).collect());
    for (i, result) in &results {
        match (i % 5, result) {
            (0, Err(failure)) => assert_eq!(failure.reason, RejectReason::HttpStatus),
            (1, Ok(fetched)) => assert_eq!(fetched.bytes.len(), 15),
            (_, Ok(fetched)) => assert_eq!(fetched.bytes.len(), 50_000),
            (_, other) => panic!("url {i}: {other:?}"),
        }
    }
    assert_eq!(server.total_requests(), 50);
    assert!(server.max_in_flight() <= 4, "{}", server.max_in_flight());
}

#[tokio::test]
async fn concurrency_bounds_every_caller_together() {
    // Callers that do not go through fetch_many (the ingest pipeline keeps a window of items in
    // flight) still share the fetcher's `concurrency` slots.
    let dir = folder();
    let server = TestServer::start_with(
        dir.path(),
        TestServerOptions {
            slow_interval: Duration::from_millis(10),
        },
    )
    .unwrap();
    let fetcher = fetcher(FetchConfig {
        concurrency: 3,
        ..config()
    });
    let downloads = (0..24).map(|i| {
        let fetcher = fetcher.clone();
        let url = server.url(&format!("/slow/sub/b.png?i={i}"));
        async move { fetcher.fetch(&url).await }
    });
    let results = futures::future::join_all(downloads).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|f| f.bytes.len() == 15))
    );
    assert_eq!(server.total_requests(), 24);
    // 24 slow downloads: the server saw them overlap, but never more than 3 at once
    assert_eq!(server.max_in_flight(), 3);
}
