//! Item keys: WebDataset member keys and generated keys.
//!
//! An item keeps the source's own key when it has one (the WebDataset member key, a `key` / `uid`
//! / `id` column, a folder image's relative path without extension). Otherwise its key is
//! `<input stem>/<index in input, zero-padded to 9>`, e.g. `urls/000001234`: unique across the
//! dataset as long as no two inputs share a file stem.

/// The generated key of the item at `index` of the input with stem `stem`.
pub(super) fn fallback_key(stem: &str, index: u64) -> String {
    format!("{stem}/{index:09}")
}

/// Splits a tar member path into its WebDataset key and extension: the key is the path up to the
/// first dot of the last component (`a/b/0001.seg.png` → `a/b/0001`, `seg.png`). A leading `./`
/// is ignored. `None` for members without a key (hidden names like `._x.jpg` or `.DS_Store`).
pub(super) fn split_member(path: &str) -> Option<(&str, &str)> {
    let path = path.trim_start_matches("./");
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    let name = path.get(name_start..)?;
    if name.is_empty() || name.starts_with('.') {
        return None;
    }
    match name.find('.') {
        Some(dot) => Some((&path[..name_start + dot], &name[dot + 1..])),
        None => Some((path, "")),
    }
}

/// A folder image's key: its relative path without the last extension (`a/IMG_1.jpg` → `a/IMG_1`).
pub(super) fn folder_key(rel: &str) -> &str {
    let name_start = rel.rfind('/').map_or(0, |i| i + 1);
    match rel[name_start..].rfind('.') {
        Some(dot) if dot > 0 => &rel[..name_start + dot],
        _ => rel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_keys_follow_webdataset() {
        assert_eq!(split_member("000000042.jpg"), Some(("000000042", "jpg")));
        assert_eq!(
            split_member("./dir/0001.seg.png"),
            Some(("dir/0001", "seg.png"))
        );
        assert_eq!(
            split_member("dir.v2/0001.txt"),
            Some(("dir.v2/0001", "txt"))
        );
        assert_eq!(split_member("README"), Some(("README", "")));
        assert_eq!(split_member("dir/._0001.jpg"), None);
        assert_eq!(split_member("dir/"), None);
    }

    #[test]
    fn generated_and_folder_keys() {
        assert_eq!(fallback_key("urls", 1234), "urls/000001234");
        assert_eq!(folder_key("a/IMG_1.jpg"), "a/IMG_1");
        assert_eq!(folder_key("photo.v2.png"), "photo.v2");
        assert_eq!(folder_key("noext"), "noext");
    }
}
