//! Caption tokenization with Hugging Face `tokenizers`: load any `tokenizer.json` (CLIP's, BERT's,
//! or one trained here), or train a byte-level BPE on a dataset's captions.
//!
//! [`TextTokenizer`] encodes to a fixed context length the same way whatever the tokenizer:
//! start token, the text's ids, end token, padded with the pad id. Too long a text is truncated
//! *before* the end token, so every row ends with it (CLIP-style models pool at the end token),
//! and special tokens spelled out in a text are dropped, so the first end token of a row is always
//! the real one.
//! The tokenizer's own post-processor is not used, so BERT's `[CLS] … [SEP]` and CLIP's
//! `<|startoftext|> … <|endoftext|>` come out the same shape. Special tokens are found by name
//! ([`START_TOKENS`], [`END_TOKENS`], [`PAD_TOKENS`]) unless given explicitly; a tokenizer
//! without a pad token (CLIP's) pads with its end token.
//!
//! [`train_bpe`] trains a byte-level BPE (NFC + lowercase normaliser, GPT-2 byte-level
//! pre-tokenizer and decoder) whose special tokens are [`TRAINED_PAD`] (id 0), [`TRAINED_START`]
//! (1) and [`TRAINED_END`] (2); [`train_bpe_on_dataset`] streams only the `caption` column of a
//! dataset into it.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use rayon::prelude::*;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::{Lowercase, NFC, Sequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use flipstream_shard::dataset::Dataset;
use flipstream_shard::error::ShardError;
use flipstream_shard::reader::ShardReader;

/// Names tried, in order, for the start-of-text token.
pub const START_TOKENS: [&str; 5] = [
    "<|startoftext|>",
    "[CLS]",
    "<s>",
    "<bos>",
    "<|begin_of_text|>",
];
/// Names tried, in order, for the end-of-text token.
pub const END_TOKENS: [&str; 5] = ["<|endoftext|>", "[SEP]", "</s>", "<eos>", "<|end_of_text|>"];
/// Names tried, in order, for the padding token.
pub const PAD_TOKENS: [&str; 3] = ["<|pad|>", "[PAD]", "<pad>"];
/// Padding token of tokenizers trained by [`train_bpe`] (id 0).
pub const TRAINED_PAD: &str = "<|pad|>";
/// Start token of tokenizers trained by [`train_bpe`] (id 1).
pub const TRAINED_START: &str = "<|startoftext|>";
/// End token of tokenizers trained by [`train_bpe`] (id 2).
pub const TRAINED_END: &str = "<|endoftext|>";

/// Errors from loading, using and training tokenizers.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// The file could not be read or is not a tokenizer.
    #[error("loading tokenizer {source_name}: {detail}")]
    Load {
        /// File or description.
        source_name: String,
        /// The library's message.
        detail: String,
    },
    /// No special token of a needed kind was found.
    #[error(
        "tokenizer {source_name} has no {role} token (looked for {candidates}); name one explicitly"
    )]
    MissingSpecial {
        /// File or description.
        source_name: String,
        /// `start`, `end` or `pad`.
        role: &'static str,
        /// The names tried.
        candidates: String,
    },
    /// Encoding or decoding failed.
    #[error("{what} {text:?}: {detail}")]
    Codec {
        /// `encoding` or `decoding`.
        what: &'static str,
        /// The text (shortened) or ids.
        text: String,
        /// The library's message.
        detail: String,
    },
    /// Training failed.
    #[error("training the tokenizer: {0}")]
    Train(String),
    /// Writing the tokenizer failed.
    #[error("writing tokenizer {path}: {detail}")]
    Save {
        /// Output path.
        path: String,
        /// The library's message.
        detail: String,
    },
    /// A setting that cannot work.
    #[error("{0}")]
    Settings(String),
    /// Reading captions from the dataset failed.
    #[error(transparent)]
    Dataset(#[from] ShardError),
}

/// Special tokens to use instead of the ones found by name.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    /// Start-of-text token.
    pub start: Option<String>,
    /// End-of-text token.
    pub end: Option<String>,
    /// Padding token (default: the one found by name, else the end token).
    pub pad: Option<String>,
}

/// A tokenizer that encodes captions to fixed-length rows of ids.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Arc<Tokenizer>,
    source_name: String,
    context_length: usize,
    start_id: u32,
    end_id: u32,
    pad_id: u32,
}

fn shorten(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

impl TextTokenizer {
    /// Loads a `tokenizer.json`, finding its special tokens by name.
    pub fn from_file(path: &Path, context_length: usize) -> Result<Self, TokenizeError> {
        let name = path.display().to_string();
        let inner = Tokenizer::from_file(path).map_err(|e| TokenizeError::Load {
            source_name: name.clone(),
            detail: e.to_string(),
        })?;
        Self::new(inner, &name, context_length, &SpecialTokens::default())
    }

    /// Wraps a tokenizer; `source_name` names it in messages.
    pub fn new(
        inner: Tokenizer,
        source_name: &str,
        context_length: usize,
        special: &SpecialTokens,
    ) -> Result<Self, TokenizeError> {
        if context_length < 2 {
            return Err(TokenizeError::Settings(format!(
                "context length {context_length} leaves no room for the start and end tokens; use at least 2"
            )));
        }
        let find = |role: &'static str,
                    explicit: &Option<String>,
                    candidates: &[&str]|
         -> Result<Option<u32>, TokenizeError> {
            if let Some(name) = explicit {
                return inner.token_to_id(name).map(Some).ok_or_else(|| {
                    TokenizeError::MissingSpecial {
                        source_name: source_name.to_string(),
                        role,
                        candidates: format!("{name:?}"),
                    }
                });
            }
            Ok(candidates.iter().find_map(|c| inner.token_to_id(c)))
        };
        let missing = |role: &'static str, candidates: &[&str]| TokenizeError::MissingSpecial {
            source_name: source_name.to_string(),
            role,
            candidates: candidates.join(", "),
        };
        let start_id = find("start", &special.start, &START_TOKENS)?
            .ok_or_else(|| missing("start", &START_TOKENS))?;
        let end_id =
            find("end", &special.end, &END_TOKENS)?.ok_or_else(|| missing("end", &END_TOKENS))?;
        let pad_id = find("pad", &special.pad, &PAD_TOKENS)?.unwrap_or(end_id);
        Ok(Self {
            inner: Arc::new(inner),
            source_name: source_name.to_string(),
            context_length,
            start_id,
            end_id,
            pad_id,
        })
    }

    /// The same tokenizer with another context length.
    pub fn with_context_length(&self, context_length: usize) -> Result<Self, TokenizeError> {
        if context_length < 2 {
            return Err(TokenizeError::Settings(format!(
                "context length {context_length} is below 2"
            )));
        }
        Ok(Self {
            context_length,
            ..self.clone()
        })
    }

    /// Vocabulary size including added (special) tokens: the embedding table's row count.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Ids per encoded text.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Start-of-text id.
    pub fn start_id(&self) -> u32 {
        self.start_id
    }

    /// End-of-text id (every encoded row contains it exactly once, after the text).
    pub fn end_id(&self) -> u32 {
        self.end_id
    }

    /// Padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The wrapped Hugging Face tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Encodes `text` into `out` (exactly `context_length` ids).
    pub fn encode_into(&self, text: &str, out: &mut [i64]) -> Result<(), TokenizeError> {
        let n = self.context_length;
        if out.len() != n {
            return Err(TokenizeError::Settings(format!(
                "output row has {} slots, context length is {n}",
                out.len()
            )));
        }
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizeError::Codec {
                what: "encoding",
                text: shorten(text),
                detail: e.to_string(),
            })?;
        // A caption that spells out a special token ("<|endoftext|>") must not plant one: the end
        // token marks where the text tower pools, so the body never contains it (nor start, pad).
        let specials = [self.start_id, self.end_id, self.pad_id];
        let mut body = 0;
        for &id in enc.get_ids().iter().filter(|id| !specials.contains(id)) {
            if body == n - 2 {
                break;
            }
            body += 1;
            out[body] = i64::from(id);
        }
        out[0] = i64::from(self.start_id);
        out[body + 1] = i64::from(self.end_id);
        out[body + 2..].fill(i64::from(self.pad_id));
        Ok(())
    }

    /// Encodes one text to `context_length` ids.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, TokenizeError> {
        let mut out = vec![0; self.context_length];
        self.encode_into(text, &mut out)?;
        Ok(out)
    }

    /// Encodes texts in parallel (on the current rayon pool): `texts.len() × context_length`
    /// ids, row-major.
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
    ) -> Result<Vec<i64>, TokenizeError> {
        let mut out = vec![0; texts.len() * self.context_length];
        out.par_chunks_mut(self.context_length)
            .zip(texts.par_iter())
            .try_for_each(|(row, t)| self.encode_into(t.as_ref(), row))?;
        Ok(out)
    }

    /// Decodes ids back to text, leaving out the start, end and pad tokens.
    pub fn decode(&self, ids: &[i64]) -> Result<String, TokenizeError> {
        let specials = [self.start_id, self.end_id, self.pad_id];
        let kept: Vec<u32> = ids
            .iter()
            .filter_map(|&i| u32::try_from(i).ok())
            .filter(|i| !specials.contains(i))
            .collect();
        let text = self
            .inner
            .decode(&kept, true)
            .map_err(|e| TokenizeError::Codec {
                what: "decoding",
                text: format!("{} ids", ids.len()),
                detail: e.to_string(),
            })?;
        Ok(text.trim().to_string())
    }

    /// Where the tokenizer came from.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }
}

/// Options of [`train_bpe`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BpeOptions {
    /// Target vocabulary size, special tokens and the 256 byte symbols included.
    pub vocab_size: usize,
    /// Pairs seen fewer times are not merged.
    pub min_frequency: u64,
    /// Longest token in characters (`None`: unbounded).
    pub max_token_length: Option<usize>,
}

impl Default for BpeOptions {
    fn default() -> Self {
        Self {
            vocab_size: 8192,
            min_frequency: 2,
            max_token_length: Some(32),
        }
    }
}

/// Special tokens of trained tokenizers, in id order.
const TRAINED_SPECIALS: [&str; 3] = [TRAINED_PAD, TRAINED_START, TRAINED_END];

impl BpeOptions {
    /// Checks the options; the message says what to change.
    pub fn validate(&self) -> Result<(), TokenizeError> {
        let floor = 256 + TRAINED_SPECIALS.len();
        if self.vocab_size < floor {
            return Err(TokenizeError::Settings(format!(
                "vocab size {} is below the 256 byte symbols plus {} special tokens; use at least {floor}",
                self.vocab_size,
                TRAINED_SPECIALS.len()
            )));
        }
        if self.max_token_length == Some(0) {
            return Err(TokenizeError::Settings(
                "max token length must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Trains a byte-level BPE on `captions` (see the module docs for its shape).
pub fn train_bpe<I, S>(captions: I, options: &BpeOptions) -> Result<Tokenizer, TokenizeError>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    options.validate()?;
    let train_err = |e: tokenizers::Error| TokenizeError::Train(e.to_string());
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer
        .with_normalizer(Some(Sequence::new(vec![NFC.into(), Lowercase.into()])))
        .map_err(train_err)?;
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(options.vocab_size)
        .min_frequency(options.min_frequency)
        .max_token_length(options.max_token_length)
        .show_progress(false)
        .special_tokens(
            TRAINED_SPECIALS
                .iter()
                .map(|s| AddedToken::from(*s, true))
                .collect(),
        )
        .initial_alphabet(alphabet)
        .build()
        .into();
    tokenizer.train(&mut trainer, captions).map_err(train_err)?;
    let id = |t: &str| {
        tokenizer
            .token_to_id(t)
            .ok_or_else(|| TokenizeError::Train(format!("{t} missing after training")))
    };
    let (start, end) = (id(TRAINED_START)?, id(TRAINED_END)?);
    // For Hugging Face users: `encode(text, add_special_tokens=True)` adds start and end too.
    let template = start_end_template((TRAINED_START, start), (TRAINED_END, end))
        .map_err(|e| TokenizeError::Train(e.to_string()))?;
    tokenizer.with_post_processor(Some(template));
    Ok(tokenizer)
}

/// The post-processor that makes a Hugging Face tokenizer's `encode(text,
/// add_special_tokens=True)` give what [`TextTokenizer`] gives before padding: the start token,
/// the text's ids, the end token (each a `(token, id)` pair).
pub fn start_end_template(
    start: (&str, u32),
    end: (&str, u32),
) -> Result<TemplateProcessing, TokenizeError> {
    let settings = |e: String| TokenizeError::Settings(format!("start/end template: {e}"));
    TemplateProcessing::builder()
        .try_single(format!("{} $A {}", start.0, end.0).as_str())
        .map_err(settings)?
        .special_tokens(vec![start, end])
        .build()
        .map_err(|e| settings(e.to_string()))
}

/// Writes a tokenizer as `tokenizer.json`.
pub fn save_tokenizer(tokenizer: &Tokenizer, path: &Path) -> Result<(), TokenizeError> {
    tokenizer
        .save(path, false)
        .map_err(|e| TokenizeError::Save {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
}

/// Row groups read at once while streaming captions.
const CAPTION_FETCH_CONCURRENCY: usize = 8;

/// Trains a byte-level BPE on every caption of the dataset at `url`, reading only the `caption`
/// column, row group by row group. `progress` is called with the number of captions read so far.
/// Returns the tokenizer and the number of captions it was trained on.
pub fn train_bpe_on_dataset(
    url: &str,
    options: &BpeOptions,
    progress: impl Fn(u64) + Send + Sync,
) -> Result<(Tokenizer, u64), TokenizeError> {
    options.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| TokenizeError::Settings(format!("starting the I/O runtime: {e}")))?;
    let dataset = runtime.block_on(Dataset::open(url))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(16 * 1024);
    let count = AtomicU64::new(0);
    let reader = {
        let root = dataset.root().clone();
        let groups = dataset.row_groups();
        let handle = runtime.handle().clone();
        std::thread::spawn(move || -> Result<(), ShardError> {
            handle.block_on(async move {
                let mut batches = futures::stream::iter(groups)
                    .map(|rg| {
                        let root = root.clone();
                        async move {
                            let reader =
                                ShardReader::open(&root, &rg.shard, Some(rg.shard_bytes)).await?;
                            reader
                                .read_row_group(
                                    rg.index,
                                    Some(&[flipstream_schemas::columns::CAPTION]),
                                )
                                .await
                        }
                    })
                    .buffered(CAPTION_FETCH_CONCURRENCY);
                while let Some(batch) = batches.next().await {
                    let batch = batch?;
                    let Some(captions) = batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                    else {
                        return Err(ShardError::BadRecord {
                            path: root.url().to_string(),
                            detail: "column `caption` is not utf8".into(),
                        });
                    };
                    for c in captions.iter().flatten() {
                        if tx.send(c.to_string()).is_err() {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            })
        })
    };
    let trained = train_bpe(
        rx.into_iter().inspect(|_| {
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(4096) {
                progress(n);
            }
        }),
        options,
    );
    let read = reader
        .join()
        .map_err(|_| TokenizeError::Train("the caption reader thread panicked".into()))?;
    read?;
    let tokenizer = trained?;
    let n = count.load(Ordering::Relaxed);
    progress(n);
    if n == 0 {
        return Err(TokenizeError::Settings(format!(
            "{url} has no captions to train on"
        )));
    }
    Ok((tokenizer, n))
}
