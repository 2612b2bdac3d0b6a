//! The exported tokenizer: the run's `tokenizer.json` as a Hugging Face tokenizer folder
//! (`tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`) that `AutoTokenizer`
//! and open_clip's `HFTokenizer` load, encoding a caption to the ids flipstream's loader gives:
//! start token, the text's ids, end token, then padding (the post-processor is set to exactly
//! that, whatever the original had).
//!
//! With a swap `(a, b)` ([`hf_swap`]), the tokens with ids `a` and `b` exchange ids everywhere in
//! the file (model vocabulary, added tokens), matching the swapped rows of the exported
//! embedding table.

use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Value, json};
use tokenizers::Tokenizer;

use crate::config::ModelConfig;
use crate::error::{Result, TrainError};
use flipstream_loader::TextTokenizer;
use flipstream_loader::tokenize::start_end_template;

/// Start, end and pad ids of an (exported) tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenIds {
    /// Start of text.
    pub start: u32,
    /// End of text (where the text tower pools).
    pub end: u32,
    /// Padding.
    pub pad: u32,
}

/// The ids the model was trained with: `None` when its text tower pools at the last non-pad
/// token (configs without `eot_id`) and the tokenizer pads with its end token, which makes that
/// the last word, a position no target pools at.
pub fn special_ids(cfg: &ModelConfig, text: &TextTokenizer) -> Option<TokenIds> {
    let end = match cfg.eot_id {
        Some(id) => id as u32,
        None if text.pad_id() != text.end_id() => text.end_id(),
        None => return None,
    };
    Some(TokenIds {
        start: text.start_id(),
        end,
        pad: text.pad_id(),
    })
}

/// The swap a transformers export needs: transformers keeps a legacy argmax pooling for
/// `eos_token_id == 2`, so an end token at id 2 trades ids with the tokenizer's last id.
pub fn hf_swap(
    cfg: &ModelConfig,
    text: &TextTokenizer,
    ids: TokenIds,
) -> Result<Option<(u32, u32)>> {
    if ids.end != 2 {
        return Ok(None);
    }
    let last = text.vocab_size().saturating_sub(1) as u32;
    if last <= 2 || last as usize >= cfg.vocab_size {
        return Err(TrainError::Request(format!(
            "the end token has id 2, which transformers pools by a legacy argmax; no other id \
             to move it to (tokenizer vocabulary {}, model vocabulary {})",
            text.vocab_size(),
            cfg.vocab_size
        )));
    }
    Ok(Some((2, last)))
}

fn swapped(id: u64, (a, b): (u32, u32)) -> u64 {
    match id {
        x if x == u64::from(a) => u64::from(b),
        x if x == u64::from(b) => u64::from(a),
        x => x,
    }
}

/// Exchanges ids `a` and `b` in a `tokenizer.json` document: the model's vocabulary (a map of
/// token → id, or Unigram's list where the position is the id) and the added tokens.
fn swap_ids(doc: &mut Value, swap: (u32, u32)) -> std::result::Result<(), String> {
    match doc.pointer_mut("/model/vocab") {
        Some(Value::Object(vocab)) => {
            for id in vocab.values_mut() {
                let n = id.as_u64().ok_or("a vocabulary id is not a number")?;
                *id = json!(swapped(n, swap));
            }
        }
        Some(Value::Array(pieces)) => {
            let (a, b) = (swap.0 as usize, swap.1 as usize);
            if a.max(b) >= pieces.len() {
                return Err("an id to swap is outside the vocabulary".into());
            }
            pieces.swap(a, b);
        }
        _ => return Err("no model vocabulary to swap ids in".into()),
    }
    if let Some(Value::Array(added)) = doc.get_mut("added_tokens") {
        for token in added {
            if let Some(id) = token.get("id").and_then(Value::as_u64) {
                token["id"] = json!(swapped(id, swap));
            }
        }
    }
    Ok(())
}

/// Writes the tokenizer folder's three files into `dir` (see the module docs) and returns the
/// exported ids.
pub fn write(
    source: &Path,
    dir: &Path,
    text: &TextTokenizer,
    swap: Option<(u32, u32)>,
) -> Result<TokenIds> {
    let bad =
        |detail: String| TrainError::Request(format!("exporting {}: {detail}", source.display()));
    let raw = std::fs::read_to_string(source).map_err(|e| TrainError::Io {
        path: source.to_path_buf(),
        source: e,
    })?;
    let mut doc: Value = serde_json::from_str(&raw).map_err(|e| bad(e.to_string()))?;
    if let Some(pair) = swap {
        swap_ids(&mut doc, pair).map_err(bad)?;
    }
    let mut tok = Tokenizer::from_str(&doc.to_string()).map_err(|e| bad(e.to_string()))?;
    let name = |id: u32| {
        text.inner()
            .id_to_token(id)
            .ok_or_else(|| bad(format!("no token with id {id}")))
    };
    let (start, end, pad) = (
        name(text.start_id())?,
        name(text.end_id())?,
        name(text.pad_id())?,
    );
    let id = |token: &str| {
        tok.token_to_id(token)
            .ok_or_else(|| bad(format!("{token} lost its id")))
    };
    let ids = TokenIds {
        start: id(&start)?,
        end: id(&end)?,
        pad: id(&pad)?,
    };
    let template =
        start_end_template((&start, ids.start), (&end, ids.end)).map_err(|e| bad(e.to_string()))?;
    tok.with_post_processor(Some(template));
    tok.with_truncation(None).map_err(|e| bad(e.to_string()))?;
    tok.with_padding(None);
    tok.save(dir.join("tokenizer.json"), false)
        .map_err(|e| bad(e.to_string()))?;
    let context_length = text.context_length();
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": start,
        "eos_token": end,
        "pad_token": pad,
        "model_max_length": context_length,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": false,
    });
    let special = json!({"bos_token": start, "eos_token": end, "pad_token": pad});
    super::export::write_json(&dir.join("tokenizer_config.json"), &config)?;
    super::export::write_json(&dir.join("special_tokens_map.json"), &special)?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swapping_exchanges_two_ids_in_vocabulary_and_added_tokens() {
        let mut doc = json!({
            "added_tokens": [{"id": 2, "content": "<|endoftext|>"}],
            "model": {"vocab": {"<|endoftext|>": 2, "a": 0, "zz": 9}},
        });
        swap_ids(&mut doc, (2, 9)).unwrap();
        assert_eq!(doc["model"]["vocab"]["<|endoftext|>"], 9);
        assert_eq!(doc["model"]["vocab"]["zz"], 2);
        assert_eq!(doc["model"]["vocab"]["a"], 0);
        assert_eq!(doc["added_tokens"][0]["id"], 9);
        let mut unigram = json!({"model": {"vocab": [["a", 0.0], ["b", -1.0], ["c", -2.0]]}});
        swap_ids(&mut unigram, (0, 2)).unwrap();
        assert_eq!(unigram["model"]["vocab"][0][0], "c");
        assert!(swap_ids(&mut unigram, (0, 3)).is_err());
    }
}
