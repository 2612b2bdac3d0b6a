//! What the loader yields: [`Batch`], and the deterministic substitution of bad samples.

use arrow::array::RecordBatch;

use super::state::LoaderState;

/// One rank's share of a global batch: augmented images as u8 HWC, with their keys, captions,
/// optional tokens and passthrough columns, and the state to resume after it.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Epoch of this batch.
    pub epoch: u64,
    /// Index of this batch in its epoch.
    pub index: u64,
    /// `len × height × width × 3` bytes, sample-major, rows top to bottom, RGB.
    pub images: Vec<u8>,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Key of each sample (a substituted slot carries its substitute's key).
    pub keys: Vec<String>,
    /// Caption of each sample.
    pub captions: Vec<String>,
    /// `len × context_length` token ids when the loader has a tokenizer.
    pub tokens: Option<Vec<i64>>,
    /// Token context length (0 without a tokenizer).
    pub context_length: usize,
    /// The passthrough columns asked for (`LoaderConfig::extra_columns`), one row per sample.
    pub extras: Option<RecordBatch>,
    /// Resume from here to continue with the batch after this one.
    pub state_after: LoaderState,
    /// Slots filled with another sample of the batch because theirs could not be loaded.
    pub substituted: u32,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the batch holds no sample.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The pixels of sample `i`.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.height as usize * self.width as usize * 3;
        self.images.get(i * n..(i + 1) * n)
    }

    /// The tokens of sample `i`.
    pub fn tokens_of(&self, i: usize) -> Option<&[i64]> {
        let n = self.context_length;
        self.tokens.as_ref()?.get(i * n..(i + 1) * n)
    }
}

/// For each slot, the slot whose sample fills it: itself when `ok[i]`, otherwise the next good
/// slot of the same group (cyclically after it), otherwise the next good slot of the batch.
/// Groups are lanes, whose content does not depend on the world size, so substitutes do not
/// either (unless a whole lane chunk is bad). `None` when no slot is good.
pub(crate) fn substitutes(groups: &[u32], ok: &[bool]) -> Option<Vec<usize>> {
    let n = ok.len();
    if !ok.iter().any(|&g| g) {
        return None;
    }
    let after = |i: usize| (i + 1..n).chain(0..i);
    Some(
        (0..n)
            .map(|i| {
                if ok[i] {
                    return i;
                }
                after(i)
                    .find(|&j| ok[j] && groups.get(j) == groups.get(i))
                    .or_else(|| after(i).find(|&j| ok[j]))
                    .unwrap_or(i)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_prefer_the_same_group_and_wrap_around() {
        let groups = [0, 0, 0, 1, 1, 1];
        let ok = [true, false, true, false, false, true];
        assert_eq!(substitutes(&groups, &ok).unwrap(), [0, 2, 2, 5, 5, 5]);
        let ok = [false, true, true, false, false, false];
        assert_eq!(substitutes(&groups, &ok).unwrap(), [1, 1, 2, 1, 1, 1]);
        assert!(substitutes(&groups, &[false; 6]).is_none());
    }
}
