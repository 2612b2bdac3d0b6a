//! Where each object of a dataset lives, relative to the dataset root.
//!
//! ```text
//! <root>/_flipstream/manifest.json          DatasetManifest (how the dataset was made)
//! <root>/_flipstream/commits/<unit>.json    CommitRecord, one per committed unit (written last)
//! <root>/_flipstream/split.json             SplitManifest (optional train/val view)
//! <root>/shards/<unit>-<seq:05>.parquet     accepted pairs
//! <root>/rejections/<unit>.parquet          rejected items
//! <root>/scores/<name>/_score.json          ScoreManifest of a `flipstream score` sidecar
//! <root>/scores/<name>/<unit>.parquet       key, clip_score of the unit's accepted rows
//! ```
//!
//! Names are deterministic: re-running a unit after a crash rewrites the same objects, and anything
//! under `shards/<unit>-` or `rejections/<unit>` without a commit record is an orphan.

/// Folder of flipstream's own bookkeeping objects.
pub const META_DIR: &str = "_flipstream";
/// The dataset manifest.
pub const MANIFEST: &str = "_flipstream/manifest.json";
/// Folder of commit records.
pub const COMMITS_DIR: &str = "_flipstream/commits";
/// The train/validation split view.
pub const SPLIT: &str = "_flipstream/split.json";
/// Folder of shard files.
pub const SHARDS_DIR: &str = "shards";
/// Folder of rejection files.
pub const REJECTIONS_DIR: &str = "rejections";

/// Folder of score sidecars (`flipstream score`): data beside the shards, never named by a commit
/// record, so not an orphan either.
pub const SCORES_DIR: &str = "scores";

/// The manifest of the score sidecar `name`.
pub fn score_manifest_path(name: &str) -> String {
    format!("{SCORES_DIR}/{name}/_score.json")
}

/// The scores of one unit in the sidecar `name`.
pub fn score_unit_path(name: &str, unit: &str) -> String {
    format!("{SCORES_DIR}/{name}/{unit}.parquet")
}

/// The unit a path inside the sidecar `name` holds scores of, if it is such a file.
pub fn unit_of_score_path<'a>(name: &str, path: &'a str) -> Option<&'a str> {
    path.strip_prefix(SCORES_DIR)?
        .strip_prefix('/')?
        .strip_prefix(name)?
        .strip_prefix('/')?
        .strip_suffix(".parquet")
}

/// Path of a unit's commit record.
pub fn commit_path(unit: &str) -> String {
    format!("{COMMITS_DIR}/{unit}.json")
}

/// Path of a unit's `seq`-th shard.
pub fn shard_path(unit: &str, seq: u32) -> String {
    format!("{SHARDS_DIR}/{unit}-{seq:05}.parquet")
}

/// Path of a unit's rejection file.
pub fn rejection_path(unit: &str) -> String {
    format!("{REJECTIONS_DIR}/{unit}.parquet")
}

/// The prefix under which a unit's shards live (to find orphans of crashed attempts).
pub fn shard_prefix(unit: &str) -> String {
    format!("{SHARDS_DIR}/{unit}-")
}

/// The unit id named by a commit-record path (`_flipstream/commits/<unit>.json`), if it is one.
pub fn unit_of_commit_path(path: &str) -> Option<&str> {
    path.strip_prefix(COMMITS_DIR)?
        .strip_prefix('/')?
        .strip_suffix(".json")
}

/// The unit id a shard or rejection path belongs to, if it follows the layout.
pub fn unit_of_data_path(path: &str) -> Option<&str> {
    if let Some(name) = path
        .strip_prefix(SHARDS_DIR)
        .and_then(|p| p.strip_prefix('/'))
    {
        let stem = name.strip_suffix(".parquet")?;
        let (unit, seq) = stem.rsplit_once('-')?;
        return (seq.len() == 5 && seq.bytes().all(|b| b.is_ascii_digit())).then_some(unit);
    }
    path.strip_prefix(REJECTIONS_DIR)?
        .strip_prefix('/')?
        .strip_suffix(".parquet")
}

/// Turns any string into a unit id safe in object paths: `[A-Za-z0-9._-]`, other bytes become `_`,
/// at most 120 characters.
pub fn sanitize_unit_id(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(120);
    if s.is_empty() || s.starts_with('.') {
        s.insert(0, 'u');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_to_units() {
        assert_eq!(unit_of_commit_path(&commit_path("a-b_c")), Some("a-b_c"));
        assert_eq!(
            unit_of_data_path(&shard_path("part-0001", 3)),
            Some("part-0001")
        );
        assert_eq!(
            unit_of_data_path(&rejection_path("x.tar-s0")),
            Some("x.tar-s0")
        );
        assert_eq!(unit_of_data_path("shards/oops.parquet"), None);
        assert_eq!(unit_of_commit_path("_flipstream/manifest.json"), None);
        assert_eq!(
            unit_of_score_path("clip", &score_unit_path("clip", "part-0001")),
            Some("part-0001")
        );
        assert_eq!(
            unit_of_score_path("clip", &score_manifest_path("clip")),
            None
        );
        assert_eq!(
            unit_of_score_path("other", &score_unit_path("clip", "u")),
            None
        );
    }

    #[test]
    fn unit_ids_are_path_safe() {
        assert_eq!(sanitize_unit_id("dir/a b.tar"), "dir_a_b.tar");
        assert_eq!(sanitize_unit_id(""), "u");
        assert_eq!(sanitize_unit_id(".hidden"), "u.hidden");
        assert!(sanitize_unit_id(&"x".repeat(500)).len() <= 120);
    }
}
