//! File formats recognised by name, and the image extensions shared by tars and folders.

/// Image file extensions (lower case), in order of preference when a sample has several.
pub(super) const IMAGE_EXTENSIONS: [&str; 8] =
    ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// True when `ext` (any case, without the dot) is an image extension.
pub(super) fn is_image_ext(ext: &str) -> bool {
    IMAGE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext))
}

/// Compression of a text list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// Plain text.
    None,
    /// `.gz`.
    Gzip,
    /// `.zst` / `.zstd`.
    Zstd,
}

impl Compression {
    /// The compression `head` (a file's first bytes) starts with the magic of, if any: a file
    /// named `.tar` or `.csv` may hold gzip or zstd all the same.
    pub(crate) fn sniff(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else {
            None
        }
    }
}

/// What a file is, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileFormat {
    /// `.tar` (WebDataset shard); `.tar.gz` / `.tgz` when `gzip`.
    Tar {
        /// Gzip-compressed tar.
        gzip: bool,
    },
    /// `.parquet`: images or a URL list, decided by its columns.
    Parquet,
    /// `.csv` / `.tsv`, optionally compressed.
    Delimited {
        /// Field separator: `,` or tab.
        delimiter: u8,
        /// Compression.
        compression: Compression,
    },
    /// `.jsonl` / `.json` (JSON lines, or one JSON array of objects), optionally compressed.
    Json {
        /// Compression.
        compression: Compression,
    },
}

/// Extensions `stem_of` strips, longest first.
const SUFFIXES: [&str; 14] = [
    ".tar.gz",
    ".tgz",
    ".tar",
    ".parquet",
    ".csv.gz",
    ".csv.zst",
    ".csv",
    ".tsv.gz",
    ".tsv.zst",
    ".tsv",
    ".jsonl.gz",
    ".jsonl.zst",
    ".jsonl",
    ".json",
];

impl FileFormat {
    /// The format of a file name, or `None` when it is not an input format.
    pub(super) fn detect(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".tar") {
            return Some(FileFormat::Tar { gzip: false });
        }
        if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            return Some(FileFormat::Tar { gzip: true });
        }
        if lower.ends_with(".parquet") {
            return Some(FileFormat::Parquet);
        }
        let (base, compression) = if let Some(b) = lower.strip_suffix(".gz") {
            (b, Compression::Gzip)
        } else if let Some(b) = lower
            .strip_suffix(".zst")
            .or_else(|| lower.strip_suffix(".zstd"))
        {
            (b, Compression::Zstd)
        } else {
            (lower.as_str(), Compression::None)
        };
        if base.ends_with(".csv") {
            Some(FileFormat::Delimited {
                delimiter: b',',
                compression,
            })
        } else if base.ends_with(".tsv") {
            Some(FileFormat::Delimited {
                delimiter: b'\t',
                compression,
            })
        } else if base.ends_with(".jsonl") || base.ends_with(".json") {
            Some(FileFormat::Json { compression })
        } else {
            None
        }
    }
}

/// The name without its input-format extension: `shard-00001.tar` → `shard-00001`,
/// `urls.csv.gz` → `urls`, `images` → `images`.
pub(super) fn stem_of(name: &str) -> &str {
    let lower = name.to_ascii_lowercase();
    for suffix in SUFFIXES.iter().chain([".zstd", ".zst", ".gz"].iter()) {
        if lower.ends_with(suffix) && lower.len() > suffix.len() {
            return &name[..name.len() - suffix.len()];
        }
    }
    name
}

/// The supported formats, for error messages.
pub(super) const SUPPORTED: &str = "a .tar / .tar.gz (WebDataset), .parquet (images or URL list), \
     .csv / .tsv / .jsonl / .json (URL list; optionally .gz or .zst), or a folder";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_name() {
        assert_eq!(
            FileFormat::detect("a.TAR"),
            Some(FileFormat::Tar { gzip: false })
        );
        assert_eq!(
            FileFormat::detect("a.tgz"),
            Some(FileFormat::Tar { gzip: true })
        );
        assert_eq!(FileFormat::detect("p.parquet"), Some(FileFormat::Parquet));
        assert_eq!(
            FileFormat::detect("u.tsv.zst"),
            Some(FileFormat::Delimited {
                delimiter: b'\t',
                compression: Compression::Zstd
            })
        );
        assert_eq!(
            FileFormat::detect("u.json.gz"),
            Some(FileFormat::Json {
                compression: Compression::Gzip
            })
        );
        assert_eq!(FileFormat::detect("notes.txt"), None);
        assert_eq!(FileFormat::detect("x.gz"), None);
    }

    #[test]
    fn stems_drop_format_extensions() {
        assert_eq!(stem_of("shard-00001.tar"), "shard-00001");
        assert_eq!(stem_of("urls.CSV.gz"), "urls");
        assert_eq!(stem_of("a.b.jsonl.zst"), "a.b");
        assert_eq!(stem_of("images"), "images");
        assert_eq!(stem_of(".tar"), ".tar");
    }
}
