//! `flipstream shard ls|verify|split URL`: list, check and split a committed dataset.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use flipstream_shard::listing::list_dataset;
use flipstream_shard::split::{SplitOptions, SplitOutcome, write_split};
use flipstream_shard::stats::format;
use flipstream_shard::verify::{VerifyOptions, verify_dataset};
use flipstream_shard::{Dataset, StoreRoot};

use super::progress::counter_bar;
use super::{Global, runtime};
use crate::usage_bail;

/// Arguments of `flipstream shard`.
#[derive(Debug, Args)]
pub struct ShardArgs {
    #[command(subcommand)]
    pub command: ShardCommand,
}

/// The shard tools.
#[derive(Debug, Subcommand)]
pub enum ShardCommand {
    /// List committed units and their shards with rows and bytes, and the totals (from the commit
    /// records; no shard is opened).
    Ls(LsArgs),
    /// Check every shard and rejection file against its commit record (exists, size, BLAKE3,
    /// schema v1, rows, row groups), the commit records and the manifest themselves, and look for
    /// orphans and uncommitted leftovers. Reports every problem; exit 0 when clean, 1 when not.
    Verify(VerifyArgs),
    /// Write a deterministic train/validation split view (_flipstream/split.json): a row is in
    /// validation when the hash of its key with the seed falls below the fraction. Reads only the
    /// `key` column. Re-running with the same arguments leaves the file as it is; another fraction
    /// or seed replaces it.
    Split(SplitArgs),
}

/// Arguments of `flipstream shard ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// The dataset: a local path, file://, s3://, gs://, az://.
    #[arg(value_name = "URL")]
    pub url: String,
}

/// Arguments of `flipstream shard verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
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
}

/// Arguments of `flipstream shard split`.
#[derive(Debug, Args)]
pub struct SplitArgs {
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
}

/// Runs a shard tool.
pub fn run(args: ShardArgs, global: Global) -> anyhow::Result<ExitCode> {
    match args.command {
        ShardCommand::Ls(a) => ls(a, global),
        ShardCommand::Verify(a) => verify(a, global),
        ShardCommand::Split(a) => split(a, global),
    }
}

fn ls(args: LsArgs, global: Global) -> anyhow::Result<ExitCode> {
    let ds = runtime()?.block_on(Dataset::open(&args.url))?;
    let listing = list_dataset(&ds);
    if global.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", listing.url);
    for u in &listing.units {
        println!(
            "{}  read {}  accepted {}  rejected {}  ({})",
            u.unit,
            format::count(u.read),
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
        "total: {} units, {} shards, {} row groups, {} rows ({}), {} rejected ({}), {} read",
        format::count(t.units),
        format::count(t.shards),
        format::count(t.row_groups),
        format::count(t.rows),
        format::bytes(t.shard_bytes as f64),
        format::count(t.rejected),
        format::bytes(t.rejection_bytes as f64),
        format::count(t.read)
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs, global: Global) -> anyhow::Result<ExitCode> {
    let root = StoreRoot::parse(&args.url)?;
    let options = VerifyOptions {
        checksums: !args.no_checksums,
        concurrency: args.concurrency as usize,
    };
    let progress = counter_bar(global, "verify", "files");
    let report = runtime()?.block_on(verify_dataset(&root, &options, progress.as_ref()))?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
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
    let options = SplitOptions {
        val_fraction: args.val_fraction,
        seed: args.seed,
        concurrency: args.concurrency as usize,
        holdout: None,
    };
    if let Err(e) = options.validate() {
        usage_bail!("--val-fraction: {e}");
    }
    let rt = runtime()?;
    let ds = rt.block_on(Dataset::open(&args.url))?;
    let progress = counter_bar(global, "split", "rows");
    let result = rt.block_on(write_split(&ds, &options, progress.as_ref()))?;
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    if global.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
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
    Ok(ExitCode::SUCCESS)
}
