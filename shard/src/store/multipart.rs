//! Unfinished S3 multipart uploads. A process killed while it uploads a large object leaves an
//! upload that is not an object: S3 keeps (and bills) its parts until someone aborts it, and
//! `object_store` can neither list nor abort it once the process is gone. This module asks S3
//! itself (`ListMultipartUploads`, `AbortMultipartUpload`, signed with AWS Signature V4) so that a
//! [`super::StoreRoot`] on S3 lists each unfinished upload as a leftover named
//! `<key>#upload=<id>` ([`pseudo_name`]) — reported by `shard verify`, removed with the other
//! leftovers of its unit by ingest's re-run — and aborts it when such a name is deleted.
//!
//! It uses the configuration the S3 store was built from (bucket, endpoint, region, path or
//! virtual-hosted style, static credentials from `AWS_*` or the URL); with no static credentials
//! (an instance role) uploads are not listed. Requests are retried like every store operation.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{ClientConfigKey, ObjectMeta};
use ring::{digest, hmac};

use super::retry::{retry_policy, with_retries};

/// What separates a key from the upload id in a leftover's name.
const MARKER: &str = "#upload=";
/// SHA-256 of the empty body (every request here has one).
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Whether `err` says the bucket will not list uploads for these credentials (403: the policy
/// lacks `s3:ListBucketMultipartUploads`) or at all (405, 501: an S3-compatible store without the
/// call). Listings then go on without uploads: they are a report of leftovers, not the data.
pub(super) fn is_unsupported(err: &object_store::Error) -> bool {
    let text = err.to_string();
    [
        "status code: 403",
        "status code: 405",
        "status code: 501",
        "NotImplemented",
    ]
    .iter()
    .any(|s| text.contains(s))
}

/// How an unfinished upload of `key` appears in listings.
pub(super) fn pseudo_name(key: &str, upload_id: &str) -> String {
    format!("{key}{MARKER}{upload_id}")
}

/// The key and upload id of a [`pseudo_name`], `None` for any other name.
pub(super) fn parse_pseudo(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once(MARKER)
        .filter(|(key, id)| !key.is_empty() && !id.is_empty())
}

/// An unfinished multipart upload.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PendingUpload {
    /// The object key it would create (from the bucket root).
    pub key: String,
    /// S3's id of the upload.
    pub upload_id: String,
    /// When it was started.
    pub initiated: DateTime<Utc>,
}

impl PendingUpload {
    /// The upload as a listing entry named `<key relative to root_prefix>#upload=<id>`.
    pub(super) fn as_object(&self, root_prefix: &str) -> Option<ObjectMeta> {
        let rel = self.key.strip_prefix(root_prefix)?.trim_start_matches('/');
        let location = object_store::path::Path::parse(pseudo_name(rel, &self.upload_id)).ok()?;
        Some(ObjectMeta {
            location,
            last_modified: self.initiated,
            size: 0,
            e_tag: None,
            version: None,
        })
    }
}

/// Static credentials.
#[derive(Clone)]
struct Credentials {
    key_id: String,
    secret: String,
    token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A signing client for the two multipart requests of one bucket.
#[derive(Debug)]
pub(super) struct S3Uploads {
    client: reqwest::Client,
    /// `scheme://host[:port][/bucket]`: the bucket's base URL, without a trailing slash.
    base: url::Url,
    region: String,
    credentials: Credentials,
}

fn generic(detail: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3 multipart uploads",
        source: detail.into(),
    }
}

impl S3Uploads {
    /// The client for `bucket` with the settings of `builder` (the store's); `None` without
    /// static credentials.
    pub(super) fn from_builder(builder: &AmazonS3Builder, bucket: &str) -> Option<Self> {
        let get = |k: AmazonS3ConfigKey| builder.get_config_value(&k).filter(|v| !v.is_empty());
        let credentials = Credentials {
            key_id: get(AmazonS3ConfigKey::AccessKeyId)?,
            secret: get(AmazonS3ConfigKey::SecretAccessKey)?,
            token: get(AmazonS3ConfigKey::Token),
        };
        let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted = get(AmazonS3ConfigKey::VirtualHostedStyleRequest)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let base = match (get(AmazonS3ConfigKey::Endpoint), virtual_hosted) {
            (Some(endpoint), true) => endpoint,
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let base = url::Url::parse(base.trim_end_matches('/')).ok()?;
        let allow_http = builder
            .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if base.scheme() == "http" && !allow_http {
            return None;
        }
        super::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(super::CONNECT_TIMEOUT_S))
            .timeout(std::time::Duration::from_secs(super::REQUEST_TIMEOUT_S))
            .build()
            .ok()?;
        Some(Self {
            client,
            base,
            region,
            credentials,
        })
    }

    /// Every unfinished upload whose key starts with `prefix`.
    pub(super) async fn list(&self, prefix: &str) -> object_store::Result<Vec<PendingUpload>> {
        let mut found = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![("prefix".to_string(), prefix.to_string())];
            query.push(("uploads".into(), String::new()));
            if let Some((key, id)) = &markers {
                query.push(("key-marker".into(), key.clone()));
                query.push(("upload-id-marker".into(), id.clone()));
            }
            let body = with_retries(retry_policy(), || self.send("GET", "", &query)).await?;
            let page = parse_list(&body)?;
            found.extend(page.uploads);
            match page.next {
                Some(next) => markers = Some(next),
                None => return Ok(found),
            }
        }
    }

    /// Aborts the upload `upload_id` of `key`; one that is already gone is not an error.
    pub(super) async fn abort(&self, key: &str, upload_id: &str) -> object_store::Result<()> {
        let query = vec![("uploadId".to_string(), upload_id.to_string())];
        match with_retries(retry_policy(), || self.send("DELETE", key, &query)).await {
            Err(e) if e.to_string().contains("NoSuchUpload") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Sends one signed request with an empty body; the response body, or an error that names
    /// the HTTP status (so that [`super::retry`] tells transient failures from final ones).
    async fn send(
        &self,
        method: &str,
        key: &str,
        query: &[(String, String)],
    ) -> object_store::Result<String> {
        let path = canonical_path(self.base.path(), key);
        let query = canonical_query(query);
        let now = Utc::now();
        let host = match self.base.port() {
            Some(port) => format!("{}:{port}", self.base.host_str().unwrap_or_default()),
            None => self.base.host_str().unwrap_or_default().to_string(),
        };
        let headers = self.signed_headers(method, &host, &path, &query, now);
        let url = format!(
            "{}://{host}{path}{}{query}",
            self.base.scheme(),
            if query.is_empty() { "" } else { "?" }
        );
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| generic(format!("method {method}: {e}")))?;
        let mut request = self.client.request(method, &url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| generic(format!("{url}: {e}")))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| generic(format!("{url}: reading the answer: {e}")))?;
        if !status.is_success() {
            return Err(generic(format!(
                "{url}: status code: {}, {}",
                status.as_u16(),
                body.chars().take(300).collect::<String>()
            )));
        }
        Ok(body)
    }

    /// The headers of an AWS Signature V4 request with an empty body.
    fn signed_headers(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: &str,
        now: DateTime<Utc>,
    ) -> Vec<(&'static str, String)> {
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let day = now.format("%Y%m%d").to_string();
        let mut headers = vec![
            ("host", host.to_string()),
            ("x-amz-content-sha256", EMPTY_SHA256.to_string()),
            ("x-amz-date", amz_date.clone()),
        ];
        if let Some(token) = &self.credentials.token {
            headers.push(("x-amz-security-token", token.clone()));
        }
        let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
        let signed = names.join(";");
        let mut canonical = format!("{method}\n{path}\n{query}\n");
        for (name, value) in &headers {
            let _ = writeln!(canonical, "{name}:{}", value.trim());
        }
        let _ = write!(canonical, "\n{signed}\n{EMPTY_SHA256}");
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
        );
        let mut key = format!("AWS4{}", self.credentials.secret).into_bytes();
        for part in [day.as_str(), self.region.as_str(), "s3", "aws4_request"] {
            key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes())
                .as_ref()
                .to_vec();
        }
        let signature =
            hex(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), to_sign.as_bytes()).as_ref());
        headers.retain(|(n, _)| *n != "host");
        headers.push((
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                self.credentials.key_id
            ),
        ));
        headers
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// S3's URI encoding: everything but `A–Z a–z 0–9 - . _ ~` percent-encoded, `/` kept in paths.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The request path: the base URL's path (the bucket, path-style) and the key (none for a
/// request on the bucket itself).
fn canonical_path(base_path: &str, key: &str) -> String {
    // the base path is the bucket (path-style) or empty: bucket names need no encoding
    let base = base_path.trim_end_matches('/').to_string();
    match (key.is_empty(), base.is_empty()) {
        (true, true) => "/".into(),
        (true, false) => base,
        (false, _) => format!("{base}/{}", uri_encode(key, true)),
    }
}

/// The query string, sorted by name, names and values URI-encoded.
fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// One page of `ListMultipartUploads`.
struct ListPage {
    uploads: Vec<PendingUpload>,
    /// The markers of the next page, when the answer was truncated.
    next: Option<(String, String)>,
}

/// The text of each `<tag>…</tag>` in `xml`, unescaped.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn parse_list(xml: &str) -> object_store::Result<ListPage> {
    let mut uploads = Vec::new();
    for upload in elements(xml, "Upload") {
        let field = |tag: &str| elements(upload, tag).first().map(|s| unescape(s));
        let (Some(key), Some(upload_id)) = (field("Key"), field("UploadId")) else {
            return Err(generic(format!(
                "an <Upload> without Key or UploadId: {upload}"
            )));
        };
        let initiated = field("Initiated")
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
        uploads.push(PendingUpload {
            key,
            upload_id,
            initiated,
        });
    }
    let truncated = elements(xml, "IsTruncated")
        .first()
        .is_some_and(|t| t.trim() == "true");
    let next = if truncated {
        let marker = |tag: &str| elements(xml, tag).first().map(|s| unescape(s));
        match (marker("NextKeyMarker"), marker("NextUploadIdMarker")) {
            (Some(k), Some(u)) => Some((k, u)),
            _ => {
                return Err(generic(
                    "a truncated upload listing without next markers".into(),
                ));
            }
        }
    } else {
        None
    };
    Ok(ListPage { uploads, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_names_round_trip_and_stay_apart_from_other_names() {
        let name = pseudo_name("shards/a.parquet", "abc.DEF-1_2");
        assert_eq!(
            parse_pseudo(&name),
            Some(("shards/a.parquet", "abc.DEF-1_2"))
        );
        assert_eq!(parse_pseudo("shards/a.parquet"), None);
        assert_eq!(parse_pseudo("shards/a.parquet#1"), None);
    }

    #[test]
    fn the_listing_is_parsed_with_its_markers() {
        let xml = "<ListMultipartUploadsResult><Bucket>b</Bucket>\
            <NextKeyMarker>ds/shards/b&amp;c</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>\
            <IsTruncated>true</IsTruncated>\
            <Upload><Key>ds/shards/a</Key><UploadId>u1</UploadId><Initiated>2026-12-07T10:00:00.000Z</Initiated></Upload>\
            <Upload><Key>ds/shards/b&amp;c</Key><UploadId>u2</UploadId></Upload>\
            </ListMultipartUploadsResult>";
        let page = parse_list(xml).unwrap();
        assert_eq!(page.uploads.len(), 2);
        assert_eq!(page.uploads[1].key, "ds/shards/b&c");
        assert_eq!(page.next, Some(("ds/shards/b&c".into(), "u2".into())));
        let obj = page.uploads[0].as_object("ds").unwrap();
        assert_eq!(obj.location.as_ref(), "shards/a#upload=u1");
    }

    fn signature(s3: &S3Uploads, host: &str, path: &str, query: &str) -> String {
        let now = DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let headers = s3.signed_headers("GET", host, path, query, now);
        let auth = &headers
            .iter()
            .find(|(n, _)| *n == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.contains("/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, "),
            "{auth}"
        );
        auth.rsplit_once("Signature=").unwrap().1.to_string()
    }

    #[test]
    fn signatures_are_the_ones_botocore_computes() {
        // The key pair of the S3 SigV4 documentation's examples; the expected signatures are
        // botocore's (S3SigV4Auth) for the same requests and time.
        super::super::tls::install_crypto_provider();
        let s3 = S3Uploads {
            client: reqwest::Client::new(),
            base: url::Url::parse("http://127.0.0.1:5000/bucket").unwrap(),
            region: "us-east-1".into(),
            credentials: Credentials {
                key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
                token: None,
            },
        };
        assert_eq!(
            signature(&s3, "examplebucket.s3.amazonaws.com", "/test.txt", ""),
            "df548e2ce037944d03f3e68682813b093763996d597cf890ca3d9037fd231eb4"
        );
        let query = canonical_query(&[
            ("prefix".into(), "ds/shards/".into()),
            ("uploads".into(), String::new()),
        ]);
        assert_eq!(
            signature(
                &s3,
                "127.0.0.1:5000",
                &canonical_path("/bucket", ""),
                &query
            ),
            "7cc18a007d323b6788edd7f56c141bace3f46c02023c287d39ab825ae08e061d"
        );
    }

    #[test]
    fn a_bucket_that_will_not_list_uploads_is_told_apart_from_a_failure() {
        let err = |s: &str| generic(format!("http://x/b?uploads: {s}"));
        assert!(is_unsupported(&err(
            "status code: 403, <Code>AccessDenied</Code>"
        )));
        assert!(is_unsupported(&err(
            "status code: 501, <Code>NotImplemented</Code>"
        )));
        assert!(!is_unsupported(&err(
            "status code: 503, <Code>SlowDown</Code>"
        )));
        assert!(!is_unsupported(&err("connection reset")));
    }

    #[test]
    fn canonical_forms_follow_s3() {
        assert_eq!(
            canonical_path("/bucket", "ds/a b#1"),
            "/bucket/ds/a%20b%231"
        );
        assert_eq!(canonical_path("", ""), "/");
        let q = canonical_query(&[
            ("uploads".into(), String::new()),
            ("prefix".into(), "ds/shards/".into()),
        ]);
        assert_eq!(q, "prefix=ds%2Fshards%2F&uploads=");
    }
}
