//! `flipstream shard ls|verify|split|filter URL`: list, check, split and filter a committed
//! dataset (`split` optionally holding out label-value combinations; `filter` in
//! [`super::filter`]).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use flipstream_schemas::Holdout;
use flipstream_shard::listing::list_dataset;
use flipstream_shard::split::{HoldoutOptions, SplitOptions, SplitOutcome, write_split};
use flipstream_shard::verify::{VerifyOptions, verify_dataset};
use flipstream_shard::{Dataset, ShardError, StoreRoot};
use flipstream_stats::format;

use super::progress::Meter;
use super::{Global, UsageError, runtime};
use crate::usage_bail;

/// Arguments of `flipstream shard`.
#[derive(Debug, Args)]
pub(crate) struct ShardArgs {
    #[command(subcommand)]
    pub command: ShardCommand,
}

/// The shard tools.
#[derive(Debug, Subcommand)]
pub(crate) enum ShardCommand {
    /// List committed units and their shards with rows and bytes, and the totals (from the commit
    /// records; no shard is opened).
    Ls(LsArgs),
    /// Check every shard and rejection file against its commit record (exists, size, BLAKE3,
    /// schema v1, rows, row groups), the commit records and the manifest themselves, and look for
    /// orphans and uncommitted leftovers. Reports every problem; exit 0 when clean, 1 when not.
    Verify(VerifyArgs),
    /// Write a new dataset with the rows that satisfy column predicates (--where
    /// similarity>=0.28 …) or a CLIP-score threshold (--min-clip-score, --clip-score-top, from
    /// `flipstream score`), stored as they are; every other row becomes a `column_filter` (or
    /// `low_clip_score`) rejection naming the predicate and its value, so accepted + rejected =
    /// read holds. Resumable: a re-run continues the units not yet committed.
    Filter(super::filter::FilterArgs),
    /// Write a deterministic train/validation split view (_flipstream/split.json): a row is in
    /// validation when the hash of its key with the seed falls below the fraction, or, with
    /// --holdout-columns, when its label values form a held-out combination. Reads only the `key`
    /// (and holdout) columns. Re-running with the same arguments leaves the file as it is; other
    /// arguments replace it.
    Split(SplitArgs),
}

/// Arguments of `flipstream shard ls`.
#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// The dataset: a local path, file://, s3://, gs://, az://.
    #[arg(value_name = "URL")]
    pub url: String,
}

/// Arguments of `flipstream shard verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The dataset: a local path, file://, s3://, gs://, az://.
    #[arg(value_name = "URL")]
    pub url: String,

    /// Skip the BLAKE3 checksums: fetch only each file's size and footer instead of every byte
    /// (much faster; a changed byte inside the data pages then goes unnoticed).
    #[arg(long)]
    pub no_checksums: bool,

    /// Files checked at once.
    #[arg(long, value_name = "C", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,

    /// Skip the check that every key is unique across the dataset (it reads each shard's key
    /// column and holds about 40 bytes per row in memory: 40 GB for a billion rows).
    #[arg(long)]
    pub no_key_check: bool,
}

/// Arguments of `flipstream shard split`.
#[derive(Debug, Args)]
pub(crate) struct SplitArgs {
    /// The dataset: a local path, file://, s3://, gs://, az://.
    #[arg(value_name = "URL")]
    pub url: String,

    /// Fraction of rows assigned to validation, between 0 and 1 (e.g. 0.01).
    #[arg(long, value_name = "F")]
    pub val_fraction: f64,

    /// Seed of the key hash: another seed gives another, independent split.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Row groups read at once.
    #[arg(long, value_name = "C", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,

    /// Hold out combinations of the values of these label columns (comma-separated, at least
    /// two, e.g. label_color,label_shape): every row of a held-out combination goes to
    /// validation, so a model can be scored on combinations it never saw in training. Each
    /// single value keeps other combinations in training. The seed picks the combinations.
    #[arg(long, value_name = "COLS", value_delimiter = ',')]
    pub holdout_columns: Option<Vec<String>>,

    /// Share of the distinct label combinations to hold out, between 0 and 1 (exclusive);
    /// needs --holdout-columns [default: 0.1].
    #[arg(long, value_name = "F")]
    pub holdout_fraction: Option<f64>,
}

impl SplitArgs {
    /// The split options, or a usage error saying which flag is wrong.
    fn options(&self) -> anyhow::Result<SplitOptions> {
        let holdout = match (&self.holdout_columns, self.holdout_fraction) {
            (None, None) => None,
            (None, Some(_)) => usage_bail!("--holdout-fraction needs --holdout-columns"),
            (Some(columns), fraction) => {
                let columns: Vec<String> = columns.iter().map(|c| c.trim().to_string()).collect();
                if columns.iter().any(String::is_empty) {
                    usage_bail!("--holdout-columns: an empty column name in {columns:?}");
                }
                let holdout = HoldoutOptions {
                    columns,
                    fraction: fraction.unwrap_or(DEFAULT_HOLDOUT_FRACTION),
                };
                if let Err(e) = holdout.validate() {
                    usage_bail!("--holdout-columns / --holdout-fraction: {e}");
                }
                Some(holdout)
            }
        };
        let options = SplitOptions {
            val_fraction: self.val_fraction,
            seed: self.seed,
            concurrency: self.concurrency as usize,
            holdout,
        };
        if let Err(e) = options.validate() {
            usage_bail!("--val-fraction: {e}");
        }
        Ok(options)
    }
}

/// `--holdout-fraction` when only `--holdout-columns` is given.
const DEFAULT_HOLDOUT_FRACTION: f64 = 0.1;

/// Held-out combinations listed in the human output; the rest are counted.
const COMBOS_LISTED: usize = 40;

/// Runs a shard tool.
pub(super) fn run(args: ShardArgs, global: Global) -> anyhow::Result<ExitCode> {
    match args.command {
        ShardCommand::Ls(a) => ls(a, global),
        ShardCommand::Verify(a) => verify(a, global),
        ShardCommand::Split(a) => split(a, global),
        ShardCommand::Filter(a) => super::filter::filter(a, global),
    }
}

fn ls(args: LsArgs, global: Global) -> anyhow::Result<ExitCode> {
    let ds = runtime()?.block_on(Dataset::open(&args.url))?;
    let listing = list_dataset(&ds);
    if global.json {
        println!("{}", crate::cli::json_summary(&listing)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", listing.url);
    for u in &listing.units {
        let read = match &u.retry_of {
            Some(of) => format!("re-tried {} failures of {of}", format::count(u.read)),
            None => format!("read {}", format::count(u.read)),
        };
        println!(
            "{}  {read}  accepted {}  rejected {}  ({})",
            u.unit,
            format::count(u.accepted),
            format::count(u.rejected),
            u.source
        );
        for s in &u.shards {
            println!(
                "  {:<48} {:>12} rows {:>5} row groups {:>10}",
                s.path,
                format::count(s.rows),
                format::count(s.row_groups),
                format::bytes(s.bytes as f64)
            );
        }
        if let Some(r) = &u.rejections {
            println!(
                "  {:<48} {:>12} rows {:>16} {:>10}",
                r.path,
                format::count(r.rows),
                "",
                format::bytes(r.bytes as f64)
            );
        }
    }
    let t = &listing.totals;
    println!(
        "total: {} units, {} shards, {} row groups, {} rows ({}), {} rejected ({}), {} read{}",
        format::count(t.units),
        format::count(t.shards),
        format::count(t.row_groups),
        format::count(t.rows),
        format::bytes(t.shard_bytes as f64),
        format::count(t.rejected),
        format::bytes(t.rejection_bytes as f64),
        format::count(t.read),
        if listing.units.iter().any(|u| u.retry_of.is_some()) {
            " (rejections that retries superseded left out)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs, global: Global) -> anyhow::Result<ExitCode> {
    let root = StoreRoot::parse(&args.url)?;
    let options = VerifyOptions {
        checksums: !args.no_checksums,
        concurrency: args.concurrency as usize,
        check_keys: !args.no_key_check,
    };
    let progress = Meter::new(global, "verify", "files");
    let report = runtime()?.block_on(verify_dataset(&root, &options, &progress))?;
    if global.json {
        println!("{}", crate::cli::json_summary(&report)?);
    } else {
        for p in &report.problems {
            let kind = serde_json::to_value(p.kind)?;
            println!(
                "{}: {}: {}",
                p.object,
                kind.as_str().unwrap_or("problem"),
                p.detail
            );
        }
        println!(
            "{}: {} units, {} files checked{}: {}",
            report.url,
            format::count(report.units),
            format::count(report.files),
            if report.checksums {
                format!(" ({} hashed)", format::bytes(report.bytes_hashed as f64))
            } else {
                " (sizes and footers only, no checksums)".to_string()
            },
            if report.is_clean() {
                "OK".to_string()
            } else {
                format!("{} problem(s)", report.problems.len())
            }
        );
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn split(args: SplitArgs, global: Global) -> anyhow::Result<ExitCode> {
    let options = args.options()?;
    let rt = runtime()?;
    let ds = rt.block_on(Dataset::open(&args.url))?;
    let progress = Meter::new(global, "split", "rows");
    let result = rt
        .block_on(write_split(&ds, &options, &progress))
        .map_err(|e| match e {
            // holdout columns the dataset lacks, too few combinations: the request's fault
            ShardError::SplitRequest { .. } => UsageError(e.to_string()).into(),
            e => anyhow::Error::new(e),
        })?;
    if global.json {
        println!("{}", crate::cli::json_summary(&result)?);
        return Ok(ExitCode::SUCCESS);
    }
    let m = &result.manifest;
    let what = match &result.outcome {
        SplitOutcome::Created => "written".to_string(),
        SplitOutcome::Unchanged => "unchanged (the same split was already there)".to_string(),
        SplitOutcome::Replaced {
            previous_val_fraction: Some(f),
            previous_seed: Some(s),
        } => {
            format!("replaced the previous split (val fraction {f}, seed {s})")
        }
        SplitOutcome::Replaced { .. } => "replaced an unreadable previous split".to_string(),
    };
    println!(
        "{}/_flipstream/split.json {what}: train {} rows, val {} rows (val fraction {}, seed {}); fetched {}",
        ds.root().url(),
        format::count(m.train_rows),
        format::count(m.val_rows),
        m.val_fraction,
        m.seed,
        format::bytes(result.bytes_fetched as f64)
    );
    if let Some(h) = &m.holdout {
        println!("{}", holdout_line(h));
    }
    Ok(ExitCode::SUCCESS)
}

/// `held out 5 of 20 label_color × label_shape combinations (25 rows, all in validation): red
/// star, …`
fn holdout_line(h: &Holdout) -> String {
    let mut listed: Vec<String> = h
        .combos
        .iter()
        .take(COMBOS_LISTED)
        .map(|c| c.join(" "))
        .collect();
    if h.combos.len() > COMBOS_LISTED {
        listed.push(format!(
            "and {} more (see split.json)",
            h.combos.len() - COMBOS_LISTED
        ));
    }
    format!(
        "held out {} of {} {} combinations ({} rows, all in validation): {}",
        format::count(h.combos.len() as u64),
        format::count(h.distinct_combos),
        h.columns.join(" × "),
        format::count(h.rows),
        listed.join(", ")
    )
}
