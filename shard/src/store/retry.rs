//! Riding out a flaky object store: every operation of a cloud store is re-issued after a
//! transient failure, with bounded exponential backoff and jitter.
//!
//! Object stores throttle (503 SlowDown, 429), fail (500), reset connections and cut bodies
//! short. `object_store` retries a request whose *response* says so, but not a body cut short
//! after the headers, a listing whose page broke mid-way, or a write whose answer was lost. So the
//! cloud stores are built with `object_store`'s own retries off and wrapped in a
//! [`RetryingStore`], which retries *whole operations* and is the one place that counts them:
//! - reads (`get`, ranged reads, `head`) are re-issued; a body that breaks off is resumed from the
//!   byte reached, pinned to the same object version by its ETag;
//! - listings resume after the last object they delivered (`list_with_offset`);
//! - writes are re-issued with the same payload. When an earlier attempt may have landed (its
//!   answer was lost) and a conditional write then finds the object present, the object is read
//!   back: holding exactly our bytes, it is ours and the write succeeded;
//! - multipart uploads retry each part under its own part number ([`MultipartStore`]), and a
//!   completion whose answer was lost is confirmed by the object's size.
//!
//! What counts as transient: a transport error (reset, timeout, body cut short), a 5xx, 408 or
//! 429 status. Not found, already exists, precondition failed, denied and every other 4xx are
//! answers, returned at once. Limits come from the process-wide [`RetryPolicy`] (the CLI's
//! `--store-retries` and `--store-retry-timeout`); [`retry_counts`] says how many retries this
//! process made, for the commands' `--json` summaries.

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartId, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use serde::Serialize;

/// How hard to try before an operation fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Re-issues of one operation after transient failures (0: fail on the first).
    pub max_retries: u32,
    /// No retry starts once the operation has been failing for this long.
    pub timeout: Duration,
    /// The first wait; each further one doubles, up to `max_backoff`. Throttling answers
    /// (503, 429) wait four times as long.
    pub initial_backoff: Duration,
    /// The longest single wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 8,
            timeout: Duration::from_secs(120),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(4),
        }
    }
}

static POLICY: RwLock<Option<RetryPolicy>> = RwLock::new(None);
static RETRIES: AtomicU64 = AtomicU64::new(0);
static GAVE_UP: AtomicU64 = AtomicU64::new(0);

/// Sets the policy of the cloud stores opened from now on (the CLI does, from its flags).
pub fn set_retry_policy(policy: RetryPolicy) {
    if let Ok(mut p) = POLICY.write() {
        *p = Some(policy);
    }
}

/// The policy new cloud stores get.
pub fn retry_policy() -> RetryPolicy {
    POLICY.read().ok().and_then(|p| *p).unwrap_or_default()
}

/// What the object stores of this process have retried so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetryCounts {
    /// Operations (or resumed bodies and listings) re-issued after a transient failure.
    pub retries: u64,
    /// Operations that still failed transiently when the policy's limits were reached.
    pub gave_up: u64,
}

/// The counts of this process.
pub fn retry_counts() -> RetryCounts {
    RetryCounts {
        retries: RETRIES.load(Ordering::Relaxed),
        gave_up: GAVE_UP.load(Ordering::Relaxed),
    }
}

/// The HTTP status an error reports, if any (object_store keeps it only in its message).
fn http_status(err: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let mut next = Some(err);
    while let Some(e) = next {
        let msg = e.to_string();
        if let Some(at) = msg.find("status code: ") {
            let digits = msg.get(at + 13..at + 16)?;
            return digits.parse().ok();
        }
        next = e.source();
    }
    None
}

/// Whether retrying `err` can help: transport failures and 5xx/408/429 answers.
pub fn is_transient(err: &object_store::Error) -> bool {
    match err {
        object_store::Error::Generic { source, .. } if source.is::<GaveUp>() => false,
        object_store::Error::Generic { source, .. } => match http_status(source.as_ref()) {
            Some(status) => status >= 500 || status == 408 || status == 429,
            None => true,
        },
        _ => false,
    }
}

/// Whether `err` is a [`RetryingStore`] giving up after its retries: retrying it again, on top,
/// would only multiply the waits.
pub fn is_exhausted(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::Generic { source, .. } if source.is::<GaveUp>())
}

fn is_throttling(err: &object_store::Error) -> bool {
    match err {
        object_store::Error::Generic { source, .. } => {
            matches!(http_status(source.as_ref()), Some(503 | 429))
        }
        _ => false,
    }
}

/// Why an operation stopped retrying: names the limits and keeps the last error as the source.
#[derive(Debug, thiserror::Error)]
#[error(
    "still failing after {retries} retries over {secs:.1} s (see --store-retries, --store-retry-timeout)"
)]
struct GaveUp {
    retries: u32,
    secs: f64,
    #[source]
    source: object_store::Error,
}

/// The retry state of one operation.
#[derive(Debug)]
struct Attempts {
    policy: RetryPolicy,
    retries: u32,
    failing_since: Option<Instant>,
}

impl Attempts {
    fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            retries: 0,
            failing_since: None,
        }
    }

    /// The wait before the next try, or the error to return: `err` itself when it is not
    /// transient, wrapped in [`GaveUp`] when the limits are reached.
    fn after(&mut self, err: object_store::Error) -> Result<Duration, object_store::Error> {
        if !is_transient(&err) {
            return Err(err);
        }
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if self.retries >= self.policy.max_retries || since.elapsed() >= self.policy.timeout {
            GAVE_UP.fetch_add(1, Ordering::Relaxed);
            return Err(object_store::Error::Generic {
                store: "retry",
                source: Box::new(GaveUp {
                    retries: self.retries,
                    secs: since.elapsed().as_secs_f64(),
                    source: err,
                }),
            });
        }
        let factor = if is_throttling(&err) { 4 } else { 1 };
        let full = self
            .policy
            .initial_backoff
            .saturating_mul(factor << self.retries.min(20))
            .min(self.policy.max_backoff);
        self.retries += 1;
        RETRIES.fetch_add(1, Ordering::Relaxed);
        // "equal jitter": at least half the backoff, so that waits still grow
        Ok(full / 2 + full.mul_f64(rand::random::<f64>() / 2.0))
    }

    /// Progress was made (a streamed body or listing delivered more): the next failure starts a
    /// fresh count.
    fn progressed(&mut self) {
        self.retries = 0;
        self.failing_since = None;
    }
}

/// Runs `op` until it succeeds, fails for good, or the policy's limits are reached.
pub(super) async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    mut op: F,
) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = object_store::Result<T>>,
{
    let mut attempts = Attempts::new(policy);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => tokio::time::sleep(attempts.after(e)?).await,
        }
    }
}

/// A cloud store whose operations are retried (see the module documentation).
#[derive(Debug)]
pub struct RetryingStore<T> {
    inner: Arc<T>,
    policy: RetryPolicy,
}

impl<T> RetryingStore<T> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: T, policy: RetryPolicy) -> Self {
        Self {
            inner: Arc::new(inner),
            policy,
        }
    }
}

impl<T: std::fmt::Display> std::fmt::Display for RetryingStore<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner)
    }
}

impl<T: ObjectStore + MultipartStore> RetryingStore<T> {
    /// Whether `location` holds exactly `payload` (an earlier attempt of ours may have written it).
    async fn holds(&self, location: &Path, payload: &PutPayload) -> object_store::Result<bool> {
        let inner = &self.inner;
        let got = with_retries(self.policy, || async {
            inner.get(location).await?.bytes().await
        })
        .await;
        match got {
            Ok(bytes) => Ok(bytes == Bytes::from(payload.clone())),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// State of a streamed body that resumes where it broke off.
struct BodyState<T> {
    inner: Arc<T>,
    location: Path,
    options: GetOptions,
    /// Absolute range still to deliver.
    remaining: Range<u64>,
    body: BoxStream<'static, object_store::Result<Bytes>>,
    attempts: Attempts,
}

impl<T: ObjectStore> BodyState<T> {
    /// The next chunk, resuming the body after transient failures.
    async fn next_chunk(mut self) -> Option<(object_store::Result<Bytes>, Self)> {
        loop {
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    self.remaining.start += chunk.len() as u64;
                    self.attempts.progressed();
                    return Some((Ok(chunk), self));
                }
                None if self.remaining.is_empty() => return None,
                None => {
                    let short = object_store::Error::Generic {
                        store: "retry",
                        source: format!(
                            "body ended {} bytes early",
                            self.remaining.end - self.remaining.start
                        )
                        .into(),
                    };
                    if let Err(e) = self.resume(short).await {
                        return Some((Err(e), self.ended()));
                    }
                }
                Some(Err(e)) => {
                    if let Err(e) = self.resume(e).await {
                        return Some((Err(e), self.ended()));
                    }
                }
            }
        }
    }

    /// Re-requests the rest of the body after `err` (if transient), pinned to the same version.
    async fn resume(&mut self, mut err: object_store::Error) -> object_store::Result<()> {
        loop {
            tokio::time::sleep(self.attempts.after(err)?).await;
            let mut options = self.options.clone();
            options.range = Some(GetRange::Bounded(self.remaining.clone()));
            match self.inner.get_opts(&self.location, options).await {
                Ok(res) => {
                    self.body = res.into_stream();
                    return Ok(());
                }
                Err(e) => err = e,
            }
        }
    }

    /// A state whose stream is over (after an error has been delivered).
    fn ended(mut self) -> Self {
        self.body = stream::empty().boxed();
        self.remaining.start = self.remaining.end;
        self
    }
}

/// State of a listing that resumes after the last object it delivered.
struct ListState<T> {
    inner: Arc<T>,
    prefix: Option<Path>,
    last: Option<Path>,
    page: BoxStream<'static, object_store::Result<ObjectMeta>>,
    attempts: Attempts,
}

impl<T: ObjectStore> ListState<T> {
    async fn next_item(mut self) -> Option<(object_store::Result<ObjectMeta>, Self)> {
        loop {
            match self.page.next().await? {
                Ok(meta) => {
                    self.last = Some(meta.location.clone());
                    self.attempts.progressed();
                    return Some((Ok(meta), self));
                }
                Err(e) => match self.attempts.after(e) {
                    Ok(wait) => {
                        tokio::time::sleep(wait).await;
                        self.page = match &self.last {
                            Some(after) => self.inner.list_with_offset(self.prefix.as_ref(), after),
                            None => self.inner.list(self.prefix.as_ref()),
                        };
                    }
                    Err(e) => {
                        self.page = stream::empty().boxed();
                        return Some((Err(e), self));
                    }
                },
            }
        }
    }
}

#[async_trait]
impl<T: ObjectStore + MultipartStore> ObjectStore for RetryingStore<T> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let conditional = !matches!(opts.mode, PutMode::Overwrite);
        let mut attempts = Attempts::new(self.policy);
        let mut maybe_landed = false;
        loop {
            match self
                .inner
                .put_opts(location, payload.clone(), opts.clone())
                .await
            {
                Ok(r) => return Ok(r),
                Err(
                    e @ (object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }),
                ) if conditional && maybe_landed => {
                    if !self.holds(location, &payload).await? {
                        return Err(e);
                    }
                    let meta = self.head(location).await?;
                    return Ok(PutResult {
                        e_tag: meta.e_tag,
                        version: meta.version,
                        extensions: Default::default(),
                    });
                }
                Err(e) => {
                    tokio::time::sleep(attempts.after(e)?).await;
                    maybe_landed = true;
                }
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = &self.inner;
        let id = with_retries(self.policy, || {
            inner.create_multipart_opts(location, opts.clone())
        })
        .await?;
        Ok(Box::new(RetryingUpload {
            inner: self.inner.clone(),
            policy: self.policy,
            location: location.clone(),
            id,
            next_part: 0,
            parts: Arc::new(Mutex::new(Vec::new())),
            bytes: Arc::new(AtomicU64::new(0)),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let inner = &self.inner;
        let mut res =
            with_retries(self.policy, || inner.get_opts(location, options.clone())).await?;
        if options.head {
            return Ok(res);
        }
        let GetResultPayload::Stream(body) = res.payload else {
            return Ok(res);
        };
        let mut pinned = options;
        if pinned.version.is_none() {
            pinned.version = res.meta.version.clone();
        }
        if pinned.if_match.is_none() {
            pinned.if_match = res.meta.e_tag.clone();
        }
        let state = BodyState {
            inner: self.inner.clone(),
            location: location.clone(),
            options: pinned,
            remaining: res.range.clone(),
            body,
            attempts: Attempts::new(self.policy),
        };
        res.payload =
            GetResultPayload::Stream(stream::unfold(state, BodyState::next_chunk).fuse().boxed());
        Ok(res)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let inner = &self.inner;
        with_retries(self.policy, || inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = self.inner.clone();
        let policy = self.policy;
        locations
            .map(move |location| {
                let inner = inner.clone();
                async move {
                    let location = location?;
                    let deleted = with_retries(policy, || inner.delete(&location)).await;
                    match deleted {
                        // an earlier attempt may have deleted it
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(location),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffered(8)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let state = ListState {
            inner: self.inner.clone(),
            prefix: prefix.cloned(),
            last: None,
            page: self.inner.list(prefix),
            attempts: Attempts::new(self.policy),
        };
        stream::unfold(state, ListState::next_item).fuse().boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let state = ListState {
            inner: self.inner.clone(),
            prefix: prefix.cloned(),
            last: Some(offset.clone()),
            page: self.inner.list_with_offset(prefix, offset),
            attempts: Attempts::new(self.policy),
        };
        stream::unfold(state, ListState::next_item).fuse().boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let inner = &self.inner;
        with_retries(self.policy, || inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let create = matches!(options.mode, CopyMode::Create);
        let mut attempts = Attempts::new(self.policy);
        let mut maybe_landed = false;
        loop {
            match self.inner.copy_opts(from, to, options.clone()).await {
                Ok(()) => return Ok(()),
                Err(e @ object_store::Error::AlreadyExists { .. }) if create && maybe_landed => {
                    // an earlier attempt may have made the copy: same size and ETag as the source
                    let (src, dst) = (self.head(from).await?, self.head(to).await?);
                    return if src.size == dst.size && src.e_tag == dst.e_tag {
                        Ok(())
                    } else {
                        Err(e)
                    };
                }
                Err(e) => {
                    tokio::time::sleep(attempts.after(e)?).await;
                    maybe_landed = true;
                }
            }
        }
    }
}

/// A multipart upload whose parts and completion are retried.
#[derive(Debug)]
struct RetryingUpload<T> {
    inner: Arc<T>,
    policy: RetryPolicy,
    location: Path,
    id: MultipartId,
    next_part: usize,
    parts: Arc<Mutex<Vec<Option<PartId>>>>,
    bytes: Arc<AtomicU64>,
}

impl<T: MultipartStore + ObjectStore> RetryingUpload<T> {
    fn collected_parts(&self) -> object_store::Result<Vec<PartId>> {
        let parts = self
            .parts
            .lock()
            .map_err(|_| object_store::Error::Generic {
                store: "retry",
                source: "multipart part list poisoned".into(),
            })?;
        if parts.len() != self.next_part {
            return Err(object_store::Error::Generic {
                store: "retry",
                source: format!(
                    "{} of {} parts uploaded before completion",
                    parts.iter().flatten().count(),
                    self.next_part
                )
                .into(),
            });
        }
        parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.clone().ok_or_else(|| object_store::Error::Generic {
                    store: "retry",
                    source: format!("part {i} was not uploaded").into(),
                })
            })
            .collect()
    }
}

#[async_trait]
impl<T: MultipartStore + ObjectStore> MultipartUpload for RetryingUpload<T> {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let idx = self.next_part;
        self.next_part += 1;
        let (inner, policy) = (self.inner.clone(), self.policy);
        let (location, id) = (self.location.clone(), self.id.clone());
        let (parts, bytes) = (self.parts.clone(), self.bytes.clone());
        Box::pin(async move {
            let len = data.content_length() as u64;
            let part =
                with_retries(policy, || inner.put_part(&location, &id, idx, data.clone())).await?;
            bytes.fetch_add(len, Ordering::Relaxed);
            let mut parts = parts.lock().map_err(|_| object_store::Error::Generic {
                store: "retry",
                source: "multipart part list poisoned".into(),
            })?;
            if parts.len() <= idx {
                parts.resize(idx + 1, None);
            }
            parts[idx] = Some(part);
            Ok(())
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let parts = self.collected_parts()?;
        let mut attempts = Attempts::new(self.policy);
        let mut maybe_landed = false;
        loop {
            match self
                .inner
                .complete_multipart(&self.location, &self.id, parts.clone())
                .await
            {
                Ok(r) => return Ok(r),
                Err(e) if maybe_landed && !is_transient(&e) => {
                    // the upload is gone: an earlier completion landed if the object has our size
                    let meta = with_retries(self.policy, || self.inner.head(&self.location)).await;
                    return match meta {
                        Ok(m) if m.size == self.bytes.load(Ordering::Relaxed) => Ok(PutResult {
                            e_tag: m.e_tag,
                            version: m.version,
                            extensions: Default::default(),
                        }),
                        _ => Err(e),
                    };
                }
                Err(e) => {
                    tokio::time::sleep(attempts.after(e)?).await;
                    maybe_landed = true;
                }
            }
        }
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let (inner, location, id) = (&self.inner, &self.location, &self.id);
        match with_retries(self.policy, || inner.abort_multipart(location, id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use futures::TryStreamExt;
    use object_store::memory::InMemory;

    use super::*;

    /// What the next operation of a [`Flaky`] store does wrong.
    #[derive(Debug, Clone, Copy)]
    enum Fault {
        /// Fails without doing anything.
        Fail,
        /// Does the work, then fails (the answer is lost).
        FailAfter,
        /// Delivers this many bytes or objects, then fails.
        Cut(usize),
    }

    /// An in-memory store that fails on a script, one fault per operation.
    #[derive(Debug, Default)]
    struct Flaky {
        inner: InMemory,
        script: Mutex<VecDeque<Fault>>,
    }

    fn reset() -> object_store::Error {
        object_store::Error::Generic {
            store: "flaky",
            source: "connection reset by peer".into(),
        }
    }

    impl Flaky {
        fn next_fault(&self) -> Option<Fault> {
            self.script.lock().unwrap().pop_front()
        }
    }

    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Flaky")
        }
    }

    #[async_trait]
    impl ObjectStore for Flaky {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            match self.next_fault() {
                Some(Fault::Fail) => Err(reset()),
                Some(Fault::FailAfter) => {
                    self.inner.put_opts(location, payload, opts).await?;
                    Err(reset())
                }
                _ => self.inner.put_opts(location, payload, opts).await,
            }
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            let fault = self.next_fault();
            if matches!(fault, Some(Fault::Fail)) {
                return Err(reset());
            }
            let mut res = self.inner.get_opts(location, options).await?;
            if let Some(Fault::Cut(n)) = fault {
                let empty = GetResultPayload::Stream(stream::empty().boxed());
                let GetResultPayload::Stream(body) = std::mem::replace(&mut res.payload, empty)
                else {
                    unreachable!("in-memory stores stream")
                };
                let chunks: Vec<Bytes> = body.try_collect().await?;
                let bytes = Bytes::from(chunks.concat());
                let head = bytes.slice(..n.min(bytes.len()));
                res.payload =
                    GetResultPayload::Stream(stream::iter([Ok(head), Err(reset())]).boxed());
            }
            Ok(res)
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            match self.next_fault() {
                Some(Fault::Cut(n)) => self
                    .inner
                    .list(prefix)
                    .take(n)
                    .chain(stream::iter([Err(reset())]))
                    .boxed(),
                _ => self.inner.list(prefix),
            }
        }

        fn list_with_offset(
            &self,
            prefix: Option<&Path>,
            offset: &Path,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list_with_offset(prefix, offset)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    #[async_trait]
    impl MultipartStore for Flaky {
        async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
            self.inner.create_multipart(path).await
        }

        async fn put_part(
            &self,
            path: &Path,
            id: &MultipartId,
            part_idx: usize,
            data: PutPayload,
        ) -> object_store::Result<PartId> {
            match self.next_fault() {
                Some(Fault::Fail) => Err(reset()),
                _ => self.inner.put_part(path, id, part_idx, data).await,
            }
        }

        async fn complete_multipart(
            &self,
            path: &Path,
            id: &MultipartId,
            parts: Vec<PartId>,
        ) -> object_store::Result<PutResult> {
            self.inner.complete_multipart(path, id, parts).await
        }

        async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
            self.inner.abort_multipart(path, id).await
        }
    }

    fn quick(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        }
    }

    fn store(faults: &[Fault]) -> RetryingStore<Flaky> {
        let flaky = Flaky::default();
        flaky.script.lock().unwrap().extend(faults.iter().copied());
        RetryingStore::new(flaky, quick(3))
    }

    fn script(s: &RetryingStore<Flaky>, faults: &[Fault]) {
        s.inner
            .script
            .lock()
            .unwrap()
            .extend(faults.iter().copied());
    }

    #[tokio::test]
    async fn a_body_cut_short_resumes_where_it_broke_off() {
        let s = store(&[]);
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let path = Path::from("a/obj");
        s.put(&path, data.clone().into()).await.unwrap();
        let before = retry_counts().retries;
        // the first read fails outright, the second breaks off twice inside the body
        script(&s, &[Fault::Fail, Fault::Cut(3_000), Fault::Cut(2_000)]);
        let got = s.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), data.as_slice());
        assert!(retry_counts().retries >= before + 3);
        // a ranged read resumes within its range
        script(&s, &[Fault::Cut(10)]);
        assert_eq!(
            s.get_range(&path, 100..200).await.unwrap().as_ref(),
            &data[100..200]
        );
    }

    #[tokio::test]
    async fn an_empty_object_reads_as_empty() {
        // object_store's `bytes()` polls the body once more after it ended: the resumable body
        // must stay ended (a 0-byte metrics.jsonl once panicked here)
        let s = store(&[]);
        let path = Path::from("empty");
        s.put(&path, Bytes::new().into()).await.unwrap();
        let got = s.get(&path).await.unwrap().bytes().await.unwrap();
        assert!(got.is_empty());
        let listed: Vec<_> = s.list(Some(&Path::from("nothing"))).collect().await;
        assert!(listed.is_empty());
    }

    #[tokio::test]
    async fn a_listing_broken_mid_way_resumes_after_the_last_object() {
        let s = store(&[]);
        for i in 0..7 {
            s.put(
                &Path::from(format!("d/{i}")),
                Bytes::from_static(b"x").into(),
            )
            .await
            .unwrap();
        }
        script(&s, &[Fault::Cut(3)]);
        let listed: Vec<String> = s
            .list(Some(&Path::from("d")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        let expected: Vec<String> = (0..7).map(|i| format!("d/{i}")).collect();
        assert_eq!(listed, expected);
    }

    #[tokio::test]
    async fn a_conditional_write_whose_answer_was_lost_is_recognised_as_ours() {
        let s = store(&[Fault::FailAfter]);
        let path = Path::from("commit.json");
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let ours = Bytes::from_static(b"ours");
        s.put_opts(&path, ours.clone().into(), create.clone())
            .await
            .unwrap();
        assert_eq!(s.get(&path).await.unwrap().bytes().await.unwrap(), ours);
        // someone else's object stays someone else's, even after a lost answer of ours
        let other = Path::from("other.json");
        s.put(&other, Bytes::from_static(b"theirs").into())
            .await
            .unwrap();
        script(&s, &[Fault::Fail]);
        let err = s.put_opts(&other, ours.into(), create).await.unwrap_err();
        assert!(
            matches!(err, object_store::Error::AlreadyExists { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn multipart_parts_are_retried_under_their_own_numbers() {
        let s = store(&[]);
        let path = Path::from("big");
        let mut up = s.put_multipart(&path).await.unwrap();
        script(&s, &[Fault::Fail, Fault::Fail]);
        for part in [b"aa".as_slice(), b"bb", b"cc"] {
            up.put_part(Bytes::copy_from_slice(part).into())
                .await
                .unwrap();
        }
        up.complete().await.unwrap();
        assert_eq!(
            s.get(&path).await.unwrap().bytes().await.unwrap().as_ref(),
            b"aabbcc"
        );
    }

    #[tokio::test]
    async fn answers_are_returned_at_once_and_outages_give_up_with_the_limits_named() {
        let s = store(&[]);
        let err = s.get(&Path::from("missing")).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        let s = RetryingStore::new(Flaky::default(), quick(2));
        script(&s, &[Fault::Fail; 5]);
        let err = s.head(&Path::from("x")).await.unwrap_err();
        assert!(is_exhausted(&err));
        assert!(!is_transient(&err));
        let mut msg = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(e) = source {
            msg = format!("{msg}: {e}");
            source = e.source();
        }
        assert!(msg.contains("still failing after 2 retries"), "{msg}");
        assert!(msg.contains("connection reset"), "{msg}");
    }

    #[test]
    fn statuses_decide_what_is_transient() {
        let status = |code: &str| object_store::Error::Generic {
            store: "S3",
            source: format!("Error performing GET: Server returned non-2xx status code: {code}: x")
                .into(),
        };
        for code in [
            "500 Internal Server Error",
            "503 Slow Down",
            "429 Too Many",
            "408 x",
        ] {
            assert!(is_transient(&status(code)), "{code}");
        }
        for code in ["400 Bad Request", "416 Range Not Satisfiable"] {
            assert!(!is_transient(&status(code)), "{code}");
        }
        assert!(is_throttling(&status("503 Slow Down")));
        assert!(!is_throttling(&status("500 Internal")));
        assert!(is_transient(&reset()));
        let missing = object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        };
        assert!(!is_transient(&missing));
    }
}
