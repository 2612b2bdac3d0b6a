//! Row-group checksums of the `image` column, recorded per shard in the commit record
//! ([`crate::ShardEntry::image_checksums`]) so that a reader that fetches one row group (the
//! loader) can tell that its image bytes are the ones committed, without reading the whole file.
//!
//! The checksum of a row group is `xxh3_64` of the little-endian `xxh3_64` digests of its image
//! values in row order (a null value's digest is `u64::MAX`), as 16 hex digits. Python:
//! `xxhash.xxh3_64_hexdigest(b"".join(xxhash.xxh3_64_intdigest(v).to_bytes(8, "little") for v in values))`.

use xxhash_rust::xxh3::xxh3_64;

/// The digest of one image value (`None`: a null value).
pub fn image_digest(value: Option<&[u8]>) -> u64 {
    value.map_or(u64::MAX, xxh3_64)
}

/// The checksum of a row group from its rows' [`image_digest`]s, in row order.
pub fn row_group_checksum(digests: &[u64]) -> String {
    let bytes: Vec<u8> = digests.iter().flat_map(|d| d.to_le_bytes()).collect();
    format!("{:016x}", xxh3_64(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_depend_on_every_byte_and_the_order() {
        let a = [
            image_digest(Some(b"jpeg one")),
            image_digest(Some(b"jpeg two")),
        ];
        let b = [
            image_digest(Some(b"jpeg one")),
            image_digest(Some(b"jpeg twp")),
        ];
        let c = [a[1], a[0]];
        let sums: Vec<String> = [&a[..], &b[..], &c[..]]
            .iter()
            .map(|d| row_group_checksum(d))
            .collect();
        assert_eq!(sums[0].len(), 16);
        assert_ne!(sums[0], sums[1]);
        assert_ne!(sums[0], sums[2]);
        assert_ne!(image_digest(None), image_digest(Some(b"")));
        assert_eq!(row_group_checksum(&a), sums[0], "deterministic");
    }
}
