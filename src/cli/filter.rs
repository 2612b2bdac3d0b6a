//! `flipstream shard filter SOURCE --out NEW --where PREDICATE… [--min-clip-score X |
//! --clip-score-top F]`: a new committed dataset with the rows of SOURCE that satisfy every
//! predicate; the others are `column_filter` (or, for scores, `low_clip_score`) rejections.

use std::process::ExitCode;

use clap::Args;
use flipstream_schemas::CLIP_SCORE_COLUMN;
use flipstream_shard::filter::{FilterSpec, Predicate, filter_dataset};
use flipstream_shard::scores::ScoreSidecar;
use flipstream_shard::{Dataset, ShardError, WriterSettings};
use flipstream_stats::format;

use super::progress::Meter;
use super::{Global, UsageError, runtime};
use crate::usage_bail;

/// Arguments of `flipstream shard filter`.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// The source dataset: a local path, file://, s3://, gs://, az://.
    #[arg(value_name = "URL")]
    pub url: String,

    /// Where to write the new dataset (a new location; a re-run continues it).
    #[arg(long, value_name = "URL")]
    pub out: String,

    /// A predicate every kept row satisfies: COLUMN OP VALUE with OP one of < <= > >= == !=, e.g.
    /// `similarity>=0.28`, `punsafe<0.5`, `label_color==red`. A number compares numerically,
    /// text only with == or !=; a null never passes. Repeat for more (all must hold). With
    /// --scores, `clip_score` is the sidecar's score.
    #[arg(long = "where", value_name = "PREDICATE")]
    pub predicates: Vec<String>,

    /// Keep the rows whose CLIP score (image-caption cosine similarity of a `flipstream score`
    /// sidecar) is at least X; the others become `low_clip_score` rejections.
    #[arg(long, value_name = "X")]
    pub min_clip_score: Option<f64>,

    /// Keep the top fraction F (in (0, 1]) of the rows by CLIP score, as DataComp's CLIP-score
    /// baselines do (0.3: the best 30 %); the threshold is printed.
    #[arg(long, value_name = "F", conflicts_with = "min_clip_score")]
    pub clip_score_top: Option<f64>,

    /// The score sidecar to read (a name under SOURCE/scores/) [default: the only one].
    #[arg(long, value_name = "NAME")]
    pub scores: Option<String>,
}

/// Runs `shard filter`.
pub(super) fn filter(args: FilterArgs, global: Global) -> anyhow::Result<ExitCode> {
    let mut predicates = Vec::new();
    for p in &args.predicates {
        match p.parse::<Predicate>() {
            Ok(p) => predicates.push(p),
            Err(e) => usage_bail!("--where {e}"),
        }
    }
    if let Some(x) = args.min_clip_score {
        if !x.is_finite() {
            usage_bail!("--min-clip-score {x}: give a finite number (a cosine, in [-1, 1])");
        }
        predicates.push(Predicate::at_least(CLIP_SCORE_COLUMN, x as f32));
    }
    if let Some(f) = args.clip_score_top
        && !(f > 0.0 && f <= 1.0)
    {
        usage_bail!("--clip-score-top {f}: give a fraction in (0, 1], e.g. 0.3 for the top 30 %");
    }
    if predicates.is_empty() && args.clip_score_top.is_none() {
        usage_bail!(
            "nothing to filter by: give --where COLUMN OP VALUE, --min-clip-score X or \
             --clip-score-top F"
        );
    }
    if args.out.trim_end_matches('/') == args.url.trim_end_matches('/') {
        usage_bail!(
            "--out {} is the source dataset: write the filtered rows to a new location",
            args.out
        );
    }
    let rt = runtime()?;
    let usage = |e: ShardError| match e {
        ShardError::FilterRequest { .. }
        | ShardError::ConfigMismatch { .. }
        | ShardError::ScoresRequest { .. }
        | ShardError::NotADataset { .. }
        | ShardError::InvalidUrl { .. } => UsageError(e.to_string()).into(),
        e => anyhow::Error::new(e),
    };
    let ds = rt.block_on(Dataset::open(&args.url)).map_err(usage)?;
    // a `--where` on clip_score alone reads a shard column of that name; --scores reads the sidecar
    let wants_scores =
        args.clip_score_top.is_some() || args.min_clip_score.is_some() || args.scores.is_some();
    let scores = match wants_scores {
        true => Some(
            rt.block_on(ScoreSidecar::find(&ds, args.scores.as_deref()))
                .map_err(usage)?,
        ),
        false => None,
    };
    let spec = FilterSpec {
        predicates,
        scores,
        clip_score_top: args.clip_score_top,
    };
    let progress = Meter::new(global, "filter", "rows");
    let summary = rt
        .block_on(filter_dataset(
            &ds,
            &args.out,
            &spec,
            WriterSettings::default(),
            &progress,
        ))
        .map_err(usage)?;
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
    if let (Some(t), Some(f)) = (summary.clip_score_threshold, args.clip_score_top) {
        println!(
            "the top {:.1} % of the scores in scores/{} are those at or above {t}",
            f * 100.0,
            summary.scores.as_deref().unwrap_or("?")
        );
    }
    println!(
        "rows: {} read, {} kept, {} left out ({} low_clip_score, {} column_filter)",
        format::count(c.read),
        format::count(c.accepted),
        format::count(c.rejected),
        format::count(summary.low_clip_score),
        format::count(c.rejected - summary.low_clip_score)
    );
    Ok(ExitCode::SUCCESS)
}
