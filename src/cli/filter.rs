//! `flipstream shard filter SOURCE --out NEW --where PREDICATE…`: a new committed dataset with
//! the rows of SOURCE that satisfy every predicate; the others are `column_filter` rejections.

use std::process::ExitCode;

use clap::Args;
use flipstream_shard::filter::{Predicate, filter_dataset};
use flipstream_shard::stats::format;
use flipstream_shard::{Dataset, ShardError, WriterSettings};

use super::progress::counter_bar;
use super::{Global, UsageError, runtime};
use crate::usage_bail;

/// Arguments of `flipstream shard filter`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// The source dataset: a local path, file://, s3://, gs://, az://.
    #[arg(value_name = "URL")]
    pub url: String,

    /// Where to write the new dataset (a new location; a re-run continues it).
    #[arg(long, value_name = "URL")]
    pub out: String,

    /// A predicate every kept row satisfies: COLUMN OP VALUE with OP one of < <= > >= == !=, e.g.
    /// `similarity>=0.28`, `punsafe<0.5`, `label_color==red`. A number compares numerically,
    /// text only with == or !=; a null never passes. Repeat for more (all must hold).
    #[arg(long = "where", value_name = "PREDICATE", required = true)]
    pub predicates: Vec<String>,
}

/// Runs `shard filter`.
pub fn filter(args: FilterArgs, global: Global) -> anyhow::Result<ExitCode> {
    let mut predicates = Vec::new();
    for p in &args.predicates {
        match p.parse::<Predicate>() {
            Ok(p) => predicates.push(p),
            Err(e) => usage_bail!("--where {e}"),
        }
    }
    if args.out.trim_end_matches('/') == args.url.trim_end_matches('/') {
        usage_bail!(
            "--out {} is the source dataset: write the filtered rows to a new location",
            args.out
        );
    }
    let rt = runtime()?;
    let ds = rt.block_on(Dataset::open(&args.url))?;
    let progress = counter_bar(global, "filter", "rows");
    let summary = rt
        .block_on(filter_dataset(
            &ds,
            &args.out,
            &predicates,
            WriterSettings::default(),
            progress.as_ref(),
        ))
        .map_err(|e| match e {
            ShardError::FilterRequest { .. } | ShardError::ConfigMismatch { .. } => {
                UsageError(e.to_string()).into()
            }
            e => anyhow::Error::new(e),
        })?;
    if global.json {
        println!("{}", crate::cli::json_summary(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    let c = &summary.counts;
    println!(
        "{} → {} (where {}): {} units, {} committed now, {} already there",
        summary.source,
        summary.dataset,
        summary.predicates.join(" and "),
        format::count(summary.units_planned as u64),
        format::count(summary.units_committed as u64),
        format::count(summary.units_skipped as u64)
    );
    println!(
        "rows: {} read, {} kept, {} left out as column_filter rejections",
        format::count(c.read),
        format::count(c.accepted),
        format::count(c.rejected)
    );
    Ok(ExitCode::SUCCESS)
}
