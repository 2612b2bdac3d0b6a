//! `flipstream ingest … --retry-failed`: fetch again the items that failed for a transient reason,
//! and commit what now succeeds as new units of the same dataset.
//!
//! URL lists lose a few percent of their items to failures that go away on their own: timeouts,
//! reset connections, HTTP 408/429/5xx ([`is_transient_rejection`]). A re-run with
//! `--retry-failed` plans, for each committed unit of this worker, one *retry unit*
//! `<unit>.retry<k>` that re-reads the unit's input slice, keeps only the items whose rejection
//! is transient, and sends them through the ordinary pipeline (caption, download, image, dedup
//! against everything the unit and its earlier retries accepted). Its commit record names the
//! unit it re-tried and the rejections it supersedes
//! ([`RetryInfo`](flipstream_schemas::RetryInfo)); nothing already written is rewritten.
//!
//! Round `k + 1` re-tries only what round `k` still failed, so a second `--retry-failed` costs only
//! the items still failing. Permanent failures (404, not an image, filtered, duplicates) are never
//! re-tried. A retry unit is committed like any unit: a crash leaves it uncommitted and the next
//! `--retry-failed` runs it again under the same id.

use std::collections::{BTreeMap, HashMap};

use flipstream_schemas::{CommitRecord, RejectReason, RetryInfo, UnitSpec, columns};
use flipstream_shard::reader::for_each_text_row;
use flipstream_shard::retried::{AcceptedHash, accepted_hashes};
use flipstream_shard::{Dataset, ShardError};

use crate::fetch::retry::is_transient_status;
use crate::source::UnitPlan;

/// The detail of a URL item met without a downloader: the same run would fail it again.
pub(crate) const NO_DOWNLOADER: &str = "no downloader configured";

/// A unit to re-try: the plan to read (the original input slice under the retry unit's id), the
/// keys to fetch again and the rows already accepted.
#[derive(Debug, Clone)]
pub(crate) struct RetryUnit {
    /// The original unit's input under the retry unit's id.
    pub plan: UnitPlan,
    /// Round, the unit re-tried and the original unit (`superseded_by_reason` is filled in at
    /// commit, from the items actually read: [`KeyFilter::superseded`]).
    pub info: RetryInfo,
    /// Which items of the input to read again.
    pub filter: KeyFilter,
    /// Rows the original unit and its earlier retries accepted, for duplicate checks.
    pub accepted: Vec<AcceptedHash>,
}

/// The keys a retry unit reads again, each once, counting by reason the rejections it
/// supersedes.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyFilter {
    /// Key → reason code of its transient rejection, for keys not read yet.
    keys: HashMap<String, String>,
    /// Rejections superseded so far, per reason (one per admitted item).
    superseded: BTreeMap<String, u64>,
}

impl KeyFilter {
    /// True when the item `key` is to be read again; the first time only (a key repeated in the
    /// input was rejected as such the first time round and stays so).
    pub(crate) fn admits(&mut self, key: &str) -> bool {
        let Some(reason) = self.keys.remove(key) else {
            return false;
        };
        *self.superseded.entry(reason).or_insert(0) += 1;
        true
    }

    /// Keys still to be read.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.keys.len()
    }

    /// The rejections superseded by the items admitted, per reason.
    pub(crate) fn superseded(self) -> BTreeMap<String, u64> {
        self.superseded
    }
}

/// True for a rejection that may not happen again: `download_error` (connect, timeout, reset,
/// body cut short) and `http_status` with 408, 429 or 5xx. Everything else says something about
/// the item (404, not an image, too small, a duplicate) and would be rejected again.
pub(crate) fn is_transient_rejection(reason: RejectReason, detail: &str) -> bool {
    match reason {
        RejectReason::DownloadError => !detail.starts_with(NO_DOWNLOADER),
        RejectReason::HttpStatus => detail
            .strip_prefix("HTTP ")
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|code| code.parse::<u16>().ok())
            .is_some_and(is_transient_status),
        _ => false,
    }
}

/// The retry units of `mine` (this worker's planned units) in `ds`: for each committed unit, the
/// next round over its latest round's transient rejections; units with none are left out.
pub(crate) async fn plan_retries(
    ds: &Dataset,
    mine: &[UnitPlan],
) -> Result<Vec<RetryUnit>, ShardError> {
    let mut chains: BTreeMap<&str, Vec<&CommitRecord>> = BTreeMap::new();
    for c in ds.commits() {
        chains.entry(c.origin()).or_default().push(c);
    }
    let mut out = Vec::new();
    for plan in mine {
        let Some(chain) = chains.get(plan.spec.id.as_str()) else {
            continue;
        };
        let latest = chain
            .iter()
            .max_by_key(|c| c.retry.as_ref().map_or(0, |r| r.round))
            .copied()
            .expect("a chain holds its original unit or a retry of it");
        let keys = transient_rejections(ds, latest).await?;
        if keys.is_empty() {
            continue;
        }
        let mut accepted = Vec::new();
        for c in chain {
            accepted.extend(accepted_hashes(ds.root(), c).await?);
        }
        let round = latest.retry.as_ref().map_or(0, |r| r.round) + 1;
        let info = RetryInfo {
            of: latest.unit.id.clone(),
            origin: plan.spec.id.clone(),
            round,
            superseded_by_reason: BTreeMap::new(),
        };
        let spec = UnitSpec {
            id: RetryInfo::unit_id(&plan.spec.id, round),
            ..plan.spec.clone()
        };
        out.push(RetryUnit {
            plan: UnitPlan {
                spec,
                kind: plan.kind,
                estimated_items: Some(keys.len() as u64),
            },
            info,
            filter: KeyFilter {
                keys,
                superseded: BTreeMap::new(),
            },
            accepted,
        });
    }
    Ok(out)
}

/// Key → reason of the transient rejections of `record`.
async fn transient_rejections(
    ds: &Dataset,
    record: &CommitRecord,
) -> Result<HashMap<String, String>, ShardError> {
    let mut keys = HashMap::new();
    let Some(file) = &record.rejections else {
        return Ok(keys);
    };
    let names = [columns::KEY, columns::REASON, columns::DETAIL];
    for_each_text_row(ds.root(), &file.path, file.bytes, &names, |row| {
        if let Some(reason) = RejectReason::from_code(row[1])
            && is_transient_rejection(reason, row[2])
        {
            keys.insert(row[0].to_string(), row[1].to_string());
        }
    })
    .await?;
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_admits_each_key_once_and_counts_what_it_supersedes() {
        let mut f = KeyFilter {
            keys: [("a", "download_error"), ("b", "http_status")]
                .map(|(k, r)| (k.to_string(), r.to_string()))
                .into(),
            superseded: BTreeMap::new(),
        };
        assert!(!f.admits("z"));
        assert!(f.admits("a"));
        assert!(!f.admits("a"), "a repeated key is read once");
        assert_eq!(f.pending(), 1);
        assert_eq!(f.superseded(), [("download_error".to_string(), 1)].into());
    }

    #[test]
    fn only_failures_that_may_go_away_are_transient() {
        use RejectReason::*;
        assert!(is_transient_rejection(
            DownloadError,
            "timed out (after 3 attempts)"
        ));
        assert!(!is_transient_rejection(DownloadError, NO_DOWNLOADER));
        assert!(is_transient_rejection(
            HttpStatus,
            "HTTP 503 Service Unavailable"
        ));
        assert!(is_transient_rejection(
            HttpStatus,
            "HTTP 429 Too Many Requests (Retry-After: 5)"
        ));
        assert!(is_transient_rejection(HttpStatus, "HTTP 408"));
        assert!(!is_transient_rejection(HttpStatus, "HTTP 404 Not Found"));
        assert!(!is_transient_rejection(
            HttpStatus,
            "HTTP 302 redirect without a Location header"
        ));
        assert!(!is_transient_rejection(HttpStatus, "garbage"));
        assert!(!is_transient_rejection(NotAnImage, "HTTP 503"));
        assert!(!is_transient_rejection(TooManyRedirects, "10 redirects"));
    }
}
