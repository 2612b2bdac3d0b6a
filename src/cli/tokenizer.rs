//! `flipstream tokenizer`: train a byte-level BPE on a dataset's captions, or encode text with a
//! `tokenizer.json` to check what the trainer will see.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use flipstream_loader::TextTokenizer;
use flipstream_loader::tokenize::{
    BpeOptions, TokenizeError, save_tokenizer, train_bpe_on_dataset,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::loader::write_stdout;
use super::{Global, UsageError};

/// Arguments of `flipstream tokenizer`.
#[derive(Debug, Args)]
pub(crate) struct TokenizerArgs {
    #[command(subcommand)]
    pub command: TokenizerCommand,
}

/// The tokenizer subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenizerCommand {
    /// Train a byte-level BPE (NFC + lowercase, special tokens <|pad|>=0, <|startoftext|>=1,
    /// <|endoftext|>=2) on every caption of a dataset, reading only the caption column.
    Train(TrainArgs),
    /// Encode text to a fixed context length: start token, ids, end token, padding.
    Encode(EncodeArgs),
}

/// Arguments of `flipstream tokenizer train`.
#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    /// Dataset URL or path.
    pub url: String,

    /// Target vocabulary size (special tokens and the 256 byte symbols included).
    #[arg(long, default_value_t = 8192)]
    pub vocab_size: usize,

    /// Merge only pairs seen at least this often.
    #[arg(long, default_value_t = 2)]
    pub min_frequency: u64,

    /// Longest token in characters (0: unbounded).
    #[arg(long, default_value_t = 32)]
    pub max_token_length: usize,

    /// Where to write the tokenizer (Hugging Face `tokenizer.json` format).
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `flipstream tokenizer encode`.
#[derive(Debug, Args)]
pub(crate) struct EncodeArgs {
    /// The tokenizer.json to use (ours, CLIP's, BERT's, ...).
    #[arg(long)]
    pub tokenizer: PathBuf,

    /// Ids per text, start and end tokens included.
    #[arg(long, default_value_t = 77)]
    pub context_length: usize,

    /// The texts to encode.
    #[arg(required = true)]
    pub text: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Encoded {
    text: String,
    ids: Vec<i64>,
    tokens: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Trained {
    url: String,
    captions: u64,
    vocab_size: usize,
    out: PathBuf,
}

fn usage_if_settings(e: TokenizeError) -> anyhow::Error {
    match e {
        TokenizeError::Settings(msg) => UsageError(msg).into(),
        TokenizeError::Load { .. } | TokenizeError::MissingSpecial { .. } => {
            UsageError(e.to_string()).into()
        }
        other => anyhow::Error::new(other),
    }
}

/// Runs `flipstream tokenizer`.
pub(super) fn run(args: TokenizerArgs, global: Global) -> anyhow::Result<ExitCode> {
    match args.command {
        TokenizerCommand::Train(a) => train(a, global),
        TokenizerCommand::Encode(a) => encode(a, global),
    }
}

fn train(args: TrainArgs, global: Global) -> anyhow::Result<ExitCode> {
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(UsageError(format!(
            "--out {}: folder {} does not exist",
            args.out.display(),
            parent.display()
        ))
        .into());
    }
    let options = BpeOptions {
        vocab_size: args.vocab_size,
        min_frequency: args.min_frequency,
        max_token_length: (args.max_token_length > 0).then_some(args.max_token_length),
    };
    let spinner = ProgressBar::new_spinner();
    if global.quiet {
        spinner.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_message("reading captions");
    }
    let (tokenizer, captions) = train_bpe_on_dataset(&args.url, &options, |n| {
        spinner.set_message(format!("{n} captions read"))
    })
    .map_err(usage_if_settings)?;
    spinner.finish_and_clear();
    save_tokenizer(&tokenizer, &args.out)?;
    let out = Trained {
        url: args.url,
        captions,
        vocab_size: tokenizer.get_vocab_size(true),
        out: args.out,
    };
    if global.json {
        write_stdout(&serde_json::to_string_pretty(&out)?)?;
    } else {
        write_stdout(&format!(
            "trained a byte-level BPE of {} tokens on {} captions of {} → {}",
            out.vocab_size,
            out.captions,
            out.url,
            out.out.display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn encode(args: EncodeArgs, global: Global) -> anyhow::Result<ExitCode> {
    let tok = TextTokenizer::from_file(&args.tokenizer, args.context_length)
        .map_err(usage_if_settings)?;
    let mut out = Vec::with_capacity(args.text.len());
    for text in args.text {
        let ids = tok.encode(&text)?;
        let tokens = ids
            .iter()
            .map(|&i| {
                u32::try_from(i)
                    .ok()
                    .and_then(|i| tok.inner().id_to_token(i))
                    .unwrap_or_else(|| "?".into())
            })
            .collect();
        out.push(Encoded { text, ids, tokens });
    }
    if global.json {
        write_stdout(&serde_json::to_string_pretty(&out)?)?;
    } else {
        if !global.quiet {
            eprintln!(
                "{}: vocab {}, start {}, end {}, pad {}, context {}",
                args.tokenizer.display(),
                tok.vocab_size(),
                tok.start_id(),
                tok.end_id(),
                tok.pad_id(),
                tok.context_length()
            );
        }
        let lines: Vec<String> = out
            .iter()
            .map(|e| {
                let ids: Vec<String> = e.ids.iter().map(i64::to_string).collect();
                format!(
                    "{}\n  ids:    {}\n  tokens: {}",
                    e.text,
                    ids.join(" "),
                    e.tokens.join(" ")
                )
            })
            .collect();
        write_stdout(&lines.join("\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}
