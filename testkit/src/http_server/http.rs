//! The HTTP/1.1 wire format, as much of it as the test server needs: reading a request head,
//! writing a response head, percent-decoding a path segment, naming a status.
//!
//! Every response carries `Connection: close` and the connection ends after it, so there is no
//! keep-alive state to get wrong.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest request head accepted (request line and headers).
const MAX_HEAD: usize = 16 * 1024;

/// A parsed request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The request target as sent (`/files/a.jpg?x=1`).
    pub target: String,
    /// The request headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path)
    }
}

/// Reads one request head. `Ok(None)` when the peer closed before sending a whole head.
pub(super) async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> io::Result<Option<Request>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head larger than 16 KiB",
            ));
        }
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let head = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned();
    let mut lines = head.split("\r\n");
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed request line");
    let mut request_line = lines.next().ok_or_else(bad)?.split(' ');
    let (Some(method), Some(target), Some(_version)) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
    ) else {
        return Err(bad());
    };
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Ok(Some(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
    }))
}

/// Writes a status line and headers (plus `Connection: close`) and the blank line after them.
pub(super) async fn write_head<W: AsyncWrite + Unpin>(
    writer: &mut W,
    status: u16,
    headers: &[(String, String)],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    writer.write_all(head.as_bytes()).await
}

/// The standard reason phrase of the statuses the server uses; "Status" for any other.
pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Decodes `%XX` escapes (a malformed escape is kept as it is). The result is read as UTF-8,
/// invalid sequences replaced.
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_request_head() {
        let raw =
            b"GET /files/a.jpg?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: t/1\r\n\r\nrest";
        let request = read_request(&mut &raw[..]).await.unwrap().unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.target, "/files/a.jpg?x=1");
        assert_eq!(request.path(), "/files/a.jpg");
        assert_eq!(
            request.headers[1],
            ("user-agent".to_owned(), "t/1".to_owned())
        );
        assert_eq!(
            read_request(&mut &b"GET / HTTP/1.1\r\n"[..]).await.unwrap(),
            None
        );
        assert!(read_request(&mut &b"nonsense\r\n\r\n"[..]).await.is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("flipstream:%20noai"), "flipstream: noai");
        assert_eq!(percent_decode("a%2Cb%"), "a,b%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
