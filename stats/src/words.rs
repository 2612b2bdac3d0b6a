//! Caption text measures: characters, words, and the words counted for the frequent-words table.
//!
//! - characters: Unicode scalar values (`str::chars`);
//! - words: whitespace-separated tokens (`str::split_whitespace`), as caption filters count them;
//! - frequent words: the caption lower-cased and split on anything that is not a letter or a
//!   digit; tokens shorter than two characters, pure numbers and common English function words
//!   ([`STOPWORDS`]) are left out, so the table shows what the captions are about.

/// Function words left out of the frequent-words table.
pub(crate) const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as",
    "at", "be", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could",
    "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had",
    "has", "have", "having", "he", "her", "here", "hers", "him", "his", "how", "if", "in", "into",
    "is", "it", "its", "itself", "just", "me", "more", "most", "my", "no", "nor", "not", "now",
    "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out", "over", "own", "same",
    "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them",
    "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until",
    "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom",
    "why", "will", "with", "would", "you", "your", "yours",
];

/// Characters of a caption.
pub(crate) fn char_count(caption: &str) -> usize {
    caption.chars().count()
}

/// Words of a caption.
pub(crate) fn word_count(caption: &str) -> usize {
    caption.split_whitespace().count()
}

fn is_stopword(w: &str) -> bool {
    STOPWORDS.binary_search(&w).is_ok()
}

/// Calls `f` with every word of `caption` that counts for the frequent-words table (lower-cased).
pub(crate) fn for_each_topic_word(caption: &str, mut f: impl FnMut(&str)) {
    let mut buf = String::new();
    for token in caption.split(|c: char| !c.is_alphanumeric()) {
        if token.is_empty() {
            continue;
        }
        buf.clear();
        buf.extend(token.chars().flat_map(char::to_lowercase));
        if buf.chars().count() < 2 || buf.chars().all(|c| c.is_numeric()) || is_stopword(&buf) {
            continue;
        }
        f(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_are_sorted_for_binary_search() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn topic_words_skip_function_words_numbers_and_single_letters() {
        let mut got = Vec::new();
        for_each_topic_word("A red Fox, the 2 foxes & 1990s—Café x", |w| {
            got.push(w.to_string())
        });
        assert_eq!(got, ["red", "fox", "foxes", "1990s", "café"]);
        assert_eq!(char_count("Café ☕"), 6);
        assert_eq!(word_count("  two   words "), 2);
    }
}
