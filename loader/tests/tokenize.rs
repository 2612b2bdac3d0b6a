//! Caption tokenization: fixed-length encoding, special-token discovery across tokenizer
//! families, and byte-level BPE training (from strings and from a dataset's captions).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use flipstream_loader::TextTokenizer;
use flipstream_loader::tokenize::{
    BpeOptions, SpecialTokens, TRAINED_END, TRAINED_PAD, TRAINED_START, TokenizeError,
    save_tokenizer, train_bpe, train_bpe_on_dataset,
};
use flipstream_schemas::{DatasetManifest, UnitSpec, WorkerInfo, shard_schema};
use flipstream_shard::rows::{ShardBatchBuilder, ShardRow};
use flipstream_shard::{DatasetWriter, StoreRoot, WriterSettings};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{AddedToken, Tokenizer};

fn captions() -> Vec<String> {
    let things = [
        "cat",
        "dog",
        "red car",
        "mountain lake",
        "bowl of soup",
        "old bicycle",
    ];
    (0..300)
        .map(|i| {
            format!(
                "A photo of a {} number {}",
                things[i % things.len()],
                i % 17
            )
        })
        .collect()
}

fn trained(dir: &std::path::Path, context_length: usize) -> TextTokenizer {
    let options = BpeOptions {
        vocab_size: 400,
        min_frequency: 2,
        max_token_length: None,
    };
    let tok = train_bpe(captions().into_iter(), &options).unwrap();
    let path = dir.join("tokenizer.json");
    save_tokenizer(&tok, &path).unwrap();
    TextTokenizer::from_file(&path, context_length).unwrap()
}

#[test]
fn a_trained_bpe_loads_back_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let tok = trained(dir.path(), 32);
    assert_eq!((tok.pad_id(), tok.start_id(), tok.end_id()), (0, 1, 2));
    assert!(
        tok.vocab_size() <= 400 && tok.vocab_size() > 259,
        "{}",
        tok.vocab_size()
    );
    let inner = tok.inner();
    assert_eq!(inner.token_to_id(TRAINED_PAD), Some(0));
    assert_eq!(inner.token_to_id(TRAINED_START), Some(1));
    assert_eq!(inner.token_to_id(TRAINED_END), Some(2));

    let ids = tok.encode("A photo of a cat number 3").unwrap();
    assert_eq!(ids.len(), 32);
    assert_eq!(ids[0], 1);
    let end = ids.iter().position(|&i| i == 2).unwrap();
    assert!(end > 1);
    assert!(
        ids[end + 1..].iter().all(|&i| i == 0),
        "padded with the pad id: {ids:?}"
    );
    // lowercase + NFC normaliser; decoding leaves out the special tokens
    assert_eq!(tok.decode(&ids).unwrap(), "a photo of a cat number 3");
    // "é" as e + combining accent is normalised to the single code point
    assert_eq!(
        tok.encode("Caf\u{0065}\u{0301}").unwrap(),
        tok.encode("CAF\u{00e9}").unwrap()
    );
    // frequent words became single tokens
    assert!(end < 20, "{ids:?}");
}

#[test]
fn truncation_keeps_the_end_token() {
    let dir = tempfile::tempdir().unwrap();
    let tok = trained(dir.path(), 8);
    let long = "a photo of a mountain lake number 12 and a red car and an old bicycle";
    let ids = tok.encode(long).unwrap();
    assert_eq!(ids.len(), 8);
    assert_eq!((ids[0], ids[7]), (1, 2));
    assert!(ids[1..7].iter().all(|&i| i > 2));
    let full = tok.with_context_length(64).unwrap().encode(long).unwrap();
    assert_eq!(
        ids[1..7],
        full[1..7],
        "the kept ids are the text's first ones"
    );
}

#[test]
fn special_tokens_spelled_out_in_a_caption_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let tok = trained(dir.path(), 16);
    let ids = tok
        .encode("a cat <|endoftext|> dog <|pad|> <|startoftext|>")
        .unwrap();
    assert_eq!(ids[0], 1);
    let end = ids.iter().position(|&i| i == 2).unwrap();
    assert!(
        end > 3,
        "the words before and after the spelled-out tokens are kept: {ids:?}"
    );
    assert!(ids[1..end].iter().all(|&i| i > 2), "{ids:?}");
    assert!(ids[end + 1..].iter().all(|&i| i == 0), "{ids:?}");
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 1, "{ids:?}");
}

#[test]
fn batch_encoding_matches_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let tok = trained(dir.path(), 16);
    let texts = captions();
    let batch = tok.encode_batch(&texts).unwrap();
    assert_eq!(batch.len(), texts.len() * 16);
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(batch[i * 16..(i + 1) * 16], tok.encode(t).unwrap()[..]);
    }
}

fn bert_like() -> Tokenizer {
    let names = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "photo", "of", "cat", "##s",
    ];
    let vocab: [(String, u32); 9] = std::array::from_fn(|i| (names[i].to_string(), i as u32));
    let wp = WordPiece::builder()
        .vocab(vocab)
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut tok = Tokenizer::new(wp);
    tok.with_normalizer(Some(BertNormalizer::default()))
        .unwrap();
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]"].map(|t| AddedToken::from(t, true)))
        .unwrap();
    tok
}

#[test]
fn bert_and_clip_style_tokenizers_find_their_special_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bert.json");
    save_tokenizer(&bert_like(), &path).unwrap();
    let bert = TextTokenizer::from_file(&path, 6).unwrap();
    assert_eq!((bert.pad_id(), bert.start_id(), bert.end_id()), (0, 2, 3));
    // [CLS] a photo of cat ##s [SEP] → truncated to 6 keeping [SEP]
    assert_eq!(bert.encode("A photo of cats").unwrap(), [2, 4, 5, 6, 7, 3]);
    assert_eq!(bert.encode("cat").unwrap(), [2, 7, 3, 0, 0, 0]);

    // CLIP's tokenizer has start/end but no pad token: it pads with the end token
    let mut clip = bert_like();
    clip.add_special_tokens([
        AddedToken::from("<|startoftext|>", true),
        AddedToken::from("<|endoftext|>", true),
    ])
    .unwrap();
    let clip_path = dir.path().join("clip.json");
    save_tokenizer(&clip, &clip_path).unwrap();
    let json = std::fs::read_to_string(&clip_path)
        .unwrap()
        .replace("[PAD]", "[NOTPAD]");
    std::fs::write(&clip_path, json).unwrap();
    let clip = TextTokenizer::from_file(&clip_path, 5).unwrap();
    let (s, e) = (clip.start_id(), clip.end_id());
    assert_eq!(clip.inner().token_to_id("<|startoftext|>"), Some(s));
    assert_eq!(clip.pad_id(), e);
    assert_eq!(
        clip.encode("cat").unwrap(),
        [i64::from(s), 7, i64::from(e), i64::from(e), i64::from(e)]
    );

    // explicit names win; unknown ones are named in the error
    let explicit = SpecialTokens {
        start: Some("[UNK]".into()),
        ..Default::default()
    };
    let t = TextTokenizer::new(bert_like(), "bert", 4, &explicit).unwrap();
    assert_eq!(t.start_id(), 1);
    let missing = SpecialTokens {
        end: Some("<nope>".into()),
        ..Default::default()
    };
    let err = TextTokenizer::new(bert_like(), "bert", 4, &missing).unwrap_err();
    assert!(
        matches!(err, TokenizeError::MissingSpecial { role: "end", .. }),
        "{err}"
    );
}

#[test]
fn bad_files_and_settings_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.json");
    std::fs::write(&path, "{not json").unwrap();
    assert!(matches!(
        TextTokenizer::from_file(&path, 8),
        Err(TokenizeError::Load { .. })
    ));
    assert!(TextTokenizer::from_file(&dir.path().join("absent.json"), 8).is_err());
    let no_specials = Tokenizer::new(WordPiece::default());
    assert!(matches!(
        TextTokenizer::new(no_specials, "empty", 8, &SpecialTokens::default()),
        Err(TokenizeError::MissingSpecial { role: "start", .. })
    ));
    assert!(TextTokenizer::new(bert_like(), "bert", 1, &SpecialTokens::default()).is_err());
    let tiny = BpeOptions {
        vocab_size: 100,
        ..Default::default()
    };
    assert!(matches!(
        train_bpe(captions().into_iter(), &tiny),
        Err(TokenizeError::Settings(_))
    ));
}

#[test]
fn training_streams_a_datasets_captions() {
    let url = "memory://tokenize-train/ds";
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let root = StoreRoot::parse(url).unwrap();
            let manifest = DatasetManifest::new("tok".into(), serde_json::json!({}));
            let settings = WriterSettings {
                row_group_rows: 50,
                ..Default::default()
            };
            let w = DatasetWriter::open(root, manifest, settings).await.unwrap();
            let spec = UnitSpec {
                id: "u".into(),
                source: "test://u".into(),
                kind: "test".into(),
                start: None,
                end: None,
            };
            let mut unit = w
                .begin_unit(spec, shard_schema(), WorkerInfo::default())
                .await
                .unwrap();
            let mut b = ShardBatchBuilder::new(shard_schema());
            for (i, c) in captions().into_iter().enumerate() {
                b.push(ShardRow {
                    key: format!("k{i}"),
                    image: vec![0xff, 0xd8],
                    image_format: "jpeg",
                    width: 1,
                    height: 1,
                    orig_width: 1,
                    orig_height: 1,
                    caption: c,
                    url: None,
                    source: "u".into(),
                    content_hash: [0; 32],
                    phash: 0,
                    extras: Vec::new(),
                })
                .unwrap();
            }
            unit.write(&b.finish().unwrap()).await.unwrap();
            unit.commit(300, 0).await.unwrap();
        });
    let seen = std::sync::Mutex::new(0u64);
    let options = BpeOptions {
        vocab_size: 400,
        min_frequency: 2,
        max_token_length: None,
    };
    let (tok, n) = train_bpe_on_dataset(url, &options, |k| *seen.lock().unwrap() = k).unwrap();
    assert_eq!(n, 300);
    assert_eq!(*seen.lock().unwrap(), 300);
    // the same captions give the same tokenizer as training on them directly
    let direct = train_bpe(captions().into_iter(), &options).unwrap();
    assert_eq!(
        tok.to_string(false).unwrap(),
        direct.to_string(false).unwrap()
    );
    let err = train_bpe_on_dataset("memory://tokenize-none/ds", &options, |_| {}).unwrap_err();
    assert!(matches!(err, TokenizeError::Dataset(_)), "{err}");
}
