//! The test server's routes: what each path answers. `<file>` is a path under the served root's
//! `files/` folder; `n` counts the requests this exact path (query included) has received so far,
//! this one included.
//!
//! | route | answer |
//! |---|---|
//! | `/files/<file>` | the file, 200, exact `Content-Length`, `Content-Type` from the extension; 404 if missing, 403 for `..` |
//! | `/status/<code>` | that status with a short text body |
//! | `/flaky/<k>/<file>` | 503 for the first `k` requests, then the file |
//! | `/throttle/<k>/<secs>/<file>` | 429 with `Retry-After: <secs>` for the first `k` requests, then the file |
//! | `/redirect/<k>/<file>` | 302 to `/redirect/<k-1>/<file>`, the last one to `/files/<file>`: `k` redirects in all |
//! | `/redirect-to/<location>` | 302 with `Location: <location>` verbatim (any URL, e.g. `http://169.254.169.254/`) |
//! | `/loop`, `/loop/b` | 302 to each other: a redirect loop |
//! | `/slow/<file>` | headers at once (with `Content-Length`), then one byte of the file per `slow_interval` |
//! | `/big[/<bytes>]` | `<bytes>` zero bytes (default 1 GiB) with `Content-Length` |
//! | `/big-chunked[/<bytes>]` | the same, chunked, without `Content-Length` |
//! | `/robots/<value>/<file>` | the file with `X-Robots-Tag: <value>` (percent-decoded, e.g. `flipstream:%20noai`) |
//! | `/html/<name>` | an HTML page, 200, `text/html`, whatever the name (`/html/cat.jpg`) |
//! | `/headers` | the request headers, one `name: value` per line, `text/plain` |
//! | anything else | 404 |
//!
//! Only `GET` is served; other methods get 405.

use std::path::{Component, Path};
use std::time::Duration;

use super::http::{Request, percent_decode};

/// Default size of `/big` and `/big-chunked`: far more than any size cap, so a test can tell that
/// the client stopped early.
pub const BIG_DEFAULT_BYTES: u64 = 1 << 30;

/// What to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A complete response (headers include `Content-Length`).
    Full {
        /// HTTP status.
        status: u16,
        /// Response headers.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// 200 with `Content-Length`, then the body one byte per `interval`.
    Trickle {
        /// Response headers.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
        /// Pause before each byte.
        interval: Duration,
    },
    /// 200 with `len` zero bytes, streamed; chunked (no `Content-Length`) when `chunked`.
    Zeros {
        /// Body length.
        len: u64,
        /// Use chunked transfer encoding instead of `Content-Length`.
        chunked: bool,
    },
}

/// Everything a route may depend on.
#[derive(Debug, Clone, Copy)]
pub struct RouteContext<'a> {
    /// The served folder (files under `root/files/`).
    pub root: &'a Path,
    /// Requests to this exact target so far, this one included.
    pub count: u64,
    /// Pause between bytes on `/slow/…`.
    pub slow_interval: Duration,
}

/// The reply to `request`.
pub async fn route(request: &Request, ctx: RouteContext<'_>) -> Reply {
    if request.method != "GET" {
        return text(405, "only GET is served");
    }
    let path = request.path();
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    let (head, rest) = match segments.as_slice() {
        [head] => (*head, ""),
        [head, rest] => (*head, *rest),
        _ => ("", ""),
    };
    match head {
        "files" => serve_file(ctx.root, rest, Vec::new()).await,
        "status" => match rest.parse::<u16>() {
            Ok(code) if (200..=599).contains(&code) => text(code, &format!("status {code}")),
            _ => text(400, "bad status code"),
        },
        "flaky" => match split_count(rest) {
            Some((k, _)) if ctx.count <= k => text(503, "flaky: failing on purpose"),
            Some((_, file)) => serve_file(ctx.root, file, Vec::new()).await,
            None => text(400, "use /flaky/<k>/<file>"),
        },
        "throttle" => match split_count(rest)
            .and_then(|(k, r)| split_count(r).map(|(secs, file)| (k, secs, file)))
        {
            Some((k, secs, _)) if ctx.count <= k => Reply::Full {
                status: 429,
                headers: vec![content_length(0), ("Retry-After".into(), secs.to_string())],
                body: Vec::new(),
            },
            Some((_, _, file)) => serve_file(ctx.root, file, Vec::new()).await,
            None => text(400, "use /throttle/<k>/<secs>/<file>"),
        },
        "redirect" => match split_count(rest) {
            Some((0, file)) => serve_file(ctx.root, file, Vec::new()).await,
            Some((1, file)) => redirect(&format!("/files/{file}")),
            Some((k, file)) => redirect(&format!("/redirect/{}/{file}", k - 1)),
            None => text(400, "use /redirect/<k>/<file>"),
        },
        "redirect-to" => {
            // Everything after the prefix, query included, is the location.
            let location = request
                .target
                .get("/redirect-to/".len()..)
                .unwrap_or_default();
            redirect(location)
        }
        "loop" if rest.is_empty() => redirect("/loop/b"),
        "loop" if rest == "b" => redirect("/loop"),
        "slow" => match serve_file(ctx.root, rest, Vec::new()).await {
            Reply::Full {
                status: 200,
                headers,
                body,
            } => Reply::Trickle {
                headers,
                body,
                interval: ctx.slow_interval,
            },
            other => other,
        },
        "big" | "big-chunked" => {
            let len = if rest.is_empty() {
                Some(BIG_DEFAULT_BYTES)
            } else {
                rest.parse().ok()
            };
            match len {
                Some(len) => Reply::Zeros {
                    len,
                    chunked: head == "big-chunked",
                },
                None => text(400, "use /big/<bytes>"),
            }
        }
        "robots" => match rest.split_once('/') {
            Some((value, file)) => {
                serve_file(
                    ctx.root,
                    file,
                    vec![("X-Robots-Tag".into(), percent_decode(value))],
                )
                .await
            }
            None => text(400, "use /robots/<value>/<file>"),
        },
        "html" => {
            let body = format!(
                "<!DOCTYPE html>\n<html><head><title>{}</title></head><body><p>Not an image.</p></body></html>\n",
                percent_decode(rest)
            )
            .into_bytes();
            Reply::Full {
                status: 200,
                headers: vec![
                    content_length(body.len()),
                    content_type("text/html; charset=utf-8"),
                ],
                body,
            }
        }
        "headers" => {
            let body: String = request
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {value}\n"))
                .collect();
            Reply::Full {
                status: 200,
                headers: vec![
                    content_length(body.len()),
                    content_type("text/plain; charset=utf-8"),
                ],
                body: body.into_bytes(),
            }
        }
        _ => text(404, "no such route"),
    }
}

/// `"<number>/<rest>"` → `(number, rest)`.
fn split_count(s: &str) -> Option<(u64, &str)> {
    let (n, rest) = s.split_once('/')?;
    Some((n.parse().ok()?, rest))
}

fn content_length(len: usize) -> (String, String) {
    ("Content-Length".into(), len.to_string())
}

fn content_type(value: &str) -> (String, String) {
    ("Content-Type".into(), value.into())
}

fn text(status: u16, message: &str) -> Reply {
    let body = format!("{message}\n").into_bytes();
    Reply::Full {
        status,
        headers: vec![
            content_length(body.len()),
            content_type("text/plain; charset=utf-8"),
        ],
        body,
    }
}

fn redirect(location: &str) -> Reply {
    Reply::Full {
        status: 302,
        headers: vec![content_length(0), ("Location".into(), location.into())],
        body: Vec::new(),
    }
}

/// `root/files/<rel>` with its type, plus `extra` headers; 403 for paths leaving the folder.
async fn serve_file(root: &Path, rel: &str, extra: Vec<(String, String)>) -> Reply {
    let rel = percent_decode(rel);
    let rel_path = Path::new(&rel);
    if rel.is_empty()
        || !rel_path
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return text(403, "path must stay inside files/");
    }
    match tokio::fs::read(root.join("files").join(rel_path)).await {
        Ok(body) => {
            let mut headers = vec![content_length(body.len()), content_type(mime_for(rel_path))];
            headers.extend(extra);
            Reply::Full {
                status: 200,
                headers,
                body,
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => text(404, &format!("no file {rel}")),
        Err(e) => text(500, &format!("reading {rel}: {e}")),
    }
}

/// `Content-Type` from the file extension.
pub fn mime_for(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("bmp") => "image/bmp",
        Some("tif" | "tiff") => "image/tiff",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
