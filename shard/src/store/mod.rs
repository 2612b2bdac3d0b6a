//! Object-store URLs: the one place that turns what a user typed into a store rooted at a folder.
//!
//! Accepted forms:
//! - a local path (`out/ds`, `/data/ds`) or `file:///data/ds`;
//! - `memory://name/prefix`: a process-wide in-memory store per `name` (tests, in-process use);
//! - `s3://bucket/prefix` (also `s3a://`), configured from the standard `AWS_*` variables
//!   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//!   `AWS_ALLOW_HTTP`, …);
//! - `gs://bucket/prefix`, from `GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_APPLICATION_CREDENTIALS`, …;
//! - `az://container/prefix` (also `azure://`, `abfs://`, `abfss://`, `adl://`), from
//!   `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, …
//!
//! A [`StoreRoot`] wraps the store in a [`PrefixStore`], so every path below it is relative to the
//! root, and its helpers put the full location into every error message. Cloud stores are also
//! wrapped in a [`RetryingStore`] (see [`retry`]): their operations ride out throttling, resets
//! and bodies cut short.
//!
//! Leftovers of killed writes, which the stores themselves hide, are listed and deleted like
//! objects: staging files on local disk (`<name>#<n>`, [`staging`]) and unfinished multipart
//! uploads on S3 (`<name>#upload=<id>`, [`multipart`]). Their HTTP clients use rustls with ring
//! ([`tls`]).

mod multipart;
pub mod retry;
mod staging;
pub mod tls;

pub use retry::{RetryCounts, RetryPolicy, RetryingStore, retry_counts, set_retry_policy};

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    ClientConfigKey, ObjectMeta, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutMode,
    PutOptions, PutPayload, RetryConfig,
};
use url::Url;

use crate::error::{Result, ShardError};

static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A store rooted at a folder: all paths given to its methods are relative to that folder.
#[derive(Debug, Clone)]
pub struct StoreRoot {
    store: Arc<dyn ObjectStore>,
    url: String,
    /// The folder on disk, for local roots: their staging files are handled here (see
    /// [`StoreRoot::list`]).
    local: Option<std::path::PathBuf>,
    /// For S3 roots: the unfinished multipart uploads under this root (see [`StoreRoot::list`]).
    uploads: Option<Uploads>,
}

/// The multipart-upload client of an S3 root and the root's key prefix in its bucket.
#[derive(Debug, Clone)]
struct Uploads {
    client: Arc<multipart::S3Uploads>,
    /// `a/b` for `s3://bucket/a/b`; empty at the bucket's root.
    prefix: String,
}

impl Uploads {
    /// The bucket key of `rel` under this root.
    fn key(&self, rel: &str) -> String {
        match (self.prefix.is_empty(), rel.is_empty()) {
            (true, _) => rel.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{rel}", self.prefix),
        }
    }
}

/// Why an S3 request had no credentials: none were configured, so the client asked the instance
/// metadata endpoint (the last resort, which works only on a cloud instance with a role).
#[derive(Debug, thiserror::Error)]
#[error(
    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_SKIP_SIGNATURE=true \
     for a public bucket); the instance metadata endpoint, tried as a last resort, failed"
)]
struct NoCredentials {
    #[source]
    source: object_store::Error,
}

/// Adds what to do to a store error whose cause is recognisable: an S3 client without
/// credentials failing at the instance metadata endpoint.
pub(crate) fn explain(err: object_store::Error) -> object_store::Error {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut metadata = false;
    while let Some(e) = next {
        let msg = e.to_string();
        metadata |= msg.contains("/latest/api/token") || msg.contains("/latest/meta-data/");
        next = e.source();
    }
    if !metadata {
        return err;
    }
    object_store::Error::Generic {
        store: "S3",
        source: Box::new(NoCredentials { source: err }),
    }
}

/// `object_store`'s own request retries are off: [`RetryingStore`] retries whole operations,
/// which covers what they would and more, and counts every retry.
fn request_retries_off() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        retry_timeout: Duration::ZERO,
        ..Default::default()
    }
}

/// Connect and request timeouts, set key by key so that the client settings read from the
/// environment (`AWS_ALLOW_HTTP`, proxies, …) are kept: `with_client_options` would replace them.
const CONNECT_TIMEOUT: &str = "10s";
const REQUEST_TIMEOUT: &str = "120s";
/// The same timeouts for the clients we build ourselves (S3 multipart uploads).
pub(crate) const CONNECT_TIMEOUT_S: u64 = 10;
pub(crate) const REQUEST_TIMEOUT_S: u64 = 120;

/// The error for a store URL that cannot be used.
fn invalid_url(input: &str, reason: String) -> ShardError {
    ShardError::InvalidUrl {
        url: input.to_string(),
        reason,
    }
}

/// An S3 client for `url`: credentials from the environment, our timeouts, no request retries of
/// its own (the [`RetryingStore`] retries whole operations).
fn s3_builder(url: &str) -> AmazonS3Builder {
    AmazonS3Builder::from_env()
        .with_url(url)
        .with_retry(request_retries_off())
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            CONNECT_TIMEOUT,
        )
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
            REQUEST_TIMEOUT,
        )
}

/// A Google Cloud Storage client for `url`, set up as [`s3_builder`] is.
fn gcs_builder(url: &str) -> GoogleCloudStorageBuilder {
    GoogleCloudStorageBuilder::from_env()
        .with_url(url)
        .with_retry(request_retries_off())
        .with_config(
            GoogleConfigKey::Client(ClientConfigKey::ConnectTimeout),
            CONNECT_TIMEOUT,
        )
        .with_config(
            GoogleConfigKey::Client(ClientConfigKey::Timeout),
            REQUEST_TIMEOUT,
        )
}

/// An Azure Blob Storage client for `url`, set up as [`s3_builder`] is.
fn azure_builder(url: &str) -> MicrosoftAzureBuilder {
    MicrosoftAzureBuilder::from_env()
        .with_url(url)
        .with_retry(request_retries_off())
        .with_config(
            AzureConfigKey::Client(ClientConfigKey::ConnectTimeout),
            CONNECT_TIMEOUT,
        )
        .with_config(
            AzureConfigKey::Client(ClientConfigKey::Timeout),
            REQUEST_TIMEOUT,
        )
}

impl StoreRoot {
    /// Parses a URL or local path. Does not touch the store: an unreachable store or a missing
    /// folder shows up on first use.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: String| invalid_url(input, reason);
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(invalid("empty".into()));
        }
        if !trimmed.contains("://") {
            return Self::local(std::path::Path::new(trimmed)).map_err(invalid);
        }
        let url = Url::parse(trimmed).map_err(|e| invalid(e.to_string()))?;
        if url.scheme() == "memory" {
            return Self::memory(&url, input);
        }
        let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(scheme, ObjectStoreScheme::Local) {
            tls::install_crypto_provider();
        }
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::Local => {
                let local = url
                    .to_file_path()
                    .map_err(|()| invalid("not a local file URL".into()))?;
                return Self::local(&local).map_err(invalid);
            }
            ObjectStoreScheme::AmazonS3 => return Self::s3(&url, input, path),
            ObjectStoreScheme::GoogleCloudStorage => Arc::new(RetryingStore::new(
                gcs_builder(trimmed)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
                retry::retry_policy(),
            )),
            ObjectStoreScheme::MicrosoftAzure => Arc::new(RetryingStore::new(
                azure_builder(trimmed)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
                retry::retry_policy(),
            )),
            other => {
                return Err(invalid(format!(
                    "unsupported scheme {other:?} (use a path, s3://, gs://, az:// or memory://)"
                )));
            }
        };
        Ok(Self::with_prefix(
            store,
            path,
            trimmed.trim_end_matches('/').to_string(),
        ))
    }

    /// `memory://NAME/path`: the process-wide in-memory store `NAME` (for tests and benchmarks).
    /// `input` is the URL as given (errors name it).
    fn memory(url: &Url, input: &str) -> Result<Self> {
        let invalid = |reason: String| invalid_url(input, reason);
        let trimmed = input.trim();
        let name = url.host_str().unwrap_or("default").to_string();
        let path = Path::from_url_path(url.path()).map_err(|e| invalid(e.to_string()))?;
        let store = MEMORY_STORES
            .lock()
            .map_err(|_| invalid("in-memory store registry poisoned".into()))?
            .entry(name)
            .or_insert_with(|| Arc::new(InMemory::new()))
            .clone();
        Ok(Self::with_prefix(
            store,
            path,
            trimmed.trim_end_matches('/').to_string(),
        ))
    }

    /// An S3 bucket (or S3-compatible server), with the parallel multipart uploads of large
    /// objects that object_store has no API for. `input` is the URL as given (errors name it).
    fn s3(url: &Url, input: &str, path: Path) -> Result<Self> {
        let trimmed = input.trim();
        let builder = s3_builder(trimmed);
        // s3:// and s3a:// name the bucket as the host; https:// forms are left alone
        let uploads = matches!(url.scheme(), "s3" | "s3a")
            .then(|| url.host_str())
            .flatten()
            .and_then(|bucket| multipart::S3Uploads::from_builder(&builder, bucket))
            .map(|client| Uploads {
                client: Arc::new(client),
                prefix: path.as_ref().to_string(),
            });
        let store = RetryingStore::new(
            builder
                .build()
                .map_err(|e| invalid_url(input, e.to_string()))?,
            retry::retry_policy(),
        );
        let mut root =
            Self::with_prefix(Arc::new(store), path, trimmed.trim_end_matches('/').into());
        root.uploads = uploads;
        Ok(root)
    }

    fn local(dir: &std::path::Path) -> std::result::Result<Self, String> {
        let abs = std::path::absolute(dir).map_err(|e| e.to_string())?;
        let path = Path::from_absolute_path(&abs).map_err(|e| e.to_string())?;
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        let mut root = Self::with_prefix(store, path, abs.display().to_string());
        root.local = Some(abs);
        Ok(root)
    }

    /// Roots `store` at `prefix`; `url` is what messages show.
    pub fn with_prefix(store: Arc<dyn ObjectStore>, prefix: Path, url: String) -> Self {
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Self {
            store,
            url,
            local: None,
            uploads: None,
        }
    }

    /// Wraps an already rooted store (e.g. a byte-counting wrapper around another root's store).
    pub fn from_store(store: Arc<dyn ObjectStore>, url: impl Into<String>) -> Self {
        Self {
            store,
            url: url.into(),
            local: None,
            uploads: None,
        }
    }

    /// The store, rooted at this folder.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The URL as given (normalised: no trailing slash; local paths absolute).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Full location of a relative path, for messages.
    pub fn location(&self, rel: &str) -> String {
        format!("{}/{}", self.url, rel)
    }

    /// A root for a sub-folder.
    pub fn child(&self, rel: &str) -> Self {
        let mut child = Self::with_prefix(self.store.clone(), Path::from(rel), self.location(rel));
        child.local = self.local.as_ref().map(|dir| dir.join(rel));
        child.uploads = self.uploads.as_ref().map(|u| Uploads {
            client: u.client.clone(),
            prefix: u.key(rel.trim_matches('/')),
        });
        child
    }

    /// Reads a whole object.
    pub async fn get(&self, rel: &str) -> Result<Bytes> {
        let res = self
            .store
            .get(&Path::from(rel))
            .await
            .map_err(|e| ShardError::store("get", self.location(rel), e))?;
        res.bytes()
            .await
            .map_err(|e| ShardError::store("get", self.location(rel), e))
    }

    /// Reads a whole object, `None` when it does not exist.
    pub async fn get_opt(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.get(rel).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a whole object atomically (replacing any existing one).
    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&Path::from(rel), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| ShardError::store("put", self.location(rel), e))
    }

    /// Writes an object only if none exists. Returns `false` when one already existed. Stores
    /// without conditional writes fall back to check-then-write.
    pub async fn put_if_absent(&self, rel: &str, bytes: Bytes) -> Result<bool> {
        let path = Path::from(rel);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from_bytes(bytes.clone()), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. })
            | Err(object_store::Error::NotSupported { .. }) => {
                if self.head(rel).await?.is_some() {
                    return Ok(false);
                }
                self.put(rel, bytes).await?;
                Ok(true)
            }
            Err(e) => Err(ShardError::store("put", self.location(rel), e)),
        }
    }

    /// Object metadata, `None` when it does not exist.
    pub async fn head(&self, rel: &str) -> Result<Option<ObjectMeta>> {
        match self.store.head(&Path::from(rel)).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(ShardError::store("head", self.location(rel), e)),
        }
    }

    /// Deletes an object; deleting a missing object is not an error. A leftover that
    /// [`StoreRoot::list`] named is removed too (a local staging file deleted, an unfinished S3
    /// upload aborted).
    pub async fn delete(&self, rel: &str) -> Result<()> {
        if let Some(dir) = self.local.as_ref().filter(|_| staging::is_staging(rel)) {
            return staging::remove(&dir.join(rel))
                .map_err(|e| ShardError::store("delete", self.location(rel), e));
        }
        if let (Some(u), Some((target, id))) = (&self.uploads, multipart::parse_pseudo(rel)) {
            return u
                .client
                .abort(&u.key(target), id)
                .await
                .map_err(|e| ShardError::store("abort the upload", self.location(rel), e));
        }
        match self.store.delete(&Path::from(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(ShardError::store("delete", self.location(rel), e)),
        }
    }

    /// Lists every object under a folder (recursively), sorted by path. Paths in the result are
    /// relative to this root. It includes the leftovers of interrupted writes that `object_store`
    /// hides, to report and remove: staging files on local disk (`<name>#<n>`) and unfinished
    /// multipart uploads on S3 (`<name>#upload=<id>`, size 0).
    pub async fn list(&self, folder: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = (!folder.is_empty()).then(|| Path::from(folder));
        let mut items: Vec<ObjectMeta> = self
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| ShardError::store("list", self.location(folder), e))?;
        if let Some(dir) = &self.local {
            // a directory walk: off the async threads, as object_store's own local listing is
            let (dir, sub) = (dir.clone(), folder.to_string());
            let staged = tokio::task::spawn_blocking(move || staging::find(&dir, &sub))
                .await
                .map_err(object_store::Error::from)
                .and_then(|found| found)
                .map_err(|e| ShardError::store("list", self.location(folder), e))?;
            items.extend(staged);
        }
        if let Some(u) = &self.uploads {
            let under = u.key(folder.trim_matches('/'));
            let prefix = if under.is_empty() {
                under
            } else {
                format!("{under}/")
            };
            let pending = match u.client.list(&prefix).await {
                Ok(pending) => pending,
                Err(e) if multipart::is_unsupported(&e) => Vec::new(),
                Err(e) => {
                    return Err(ShardError::store(
                        "list unfinished uploads",
                        self.location(folder),
                        e,
                    ));
                }
            };
            items.extend(pending.iter().filter_map(|p| p.as_object(&u.prefix)));
        }
        items.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_stores_are_shared_by_name_and_rooted() {
        let a = StoreRoot::parse("memory://t-shared/ds").unwrap();
        a.put("x/one.json", Bytes::from_static(b"1")).await.unwrap();
        let b = StoreRoot::parse("memory://t-shared/ds/").unwrap();
        assert_eq!(b.get("x/one.json").await.unwrap(), Bytes::from_static(b"1"));
        let other = StoreRoot::parse("memory://t-other/ds").unwrap();
        assert!(other.get_opt("x/one.json").await.unwrap().is_none());
        let listed = a.list("x").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].location.as_ref(), "x/one.json");
    }

    #[tokio::test]
    async fn local_paths_create_folders_and_put_if_absent_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let root = StoreRoot::parse(dir.path().join("new/ds").to_str().unwrap()).unwrap();
        assert!(
            root.put_if_absent("m.json", Bytes::from_static(b"a"))
                .await
                .unwrap()
        );
        assert!(
            !root
                .put_if_absent("m.json", Bytes::from_static(b"b"))
                .await
                .unwrap()
        );
        assert_eq!(root.get("m.json").await.unwrap(), Bytes::from_static(b"a"));
        assert!(dir.path().join("new/ds/m.json").exists());
        root.delete("m.json").await.unwrap();
        root.delete("m.json").await.unwrap();
        assert!(root.head("m.json").await.unwrap().is_none());
        let file_url = format!("file://{}", dir.path().join("new/ds").display());
        assert!(
            StoreRoot::parse(&file_url)
                .unwrap()
                .list("")
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_urls_are_named_in_the_error() {
        for bad in ["", "ftp://host/x", "s3://"] {
            let err = StoreRoot::parse(bad).unwrap_err();
            assert!(matches!(err, ShardError::InvalidUrl { .. }), "{bad}: {err}");
        }
    }
}
