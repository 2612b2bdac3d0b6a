//! WebDataset tars: consecutive members sharing a key (the path up to the first dot of the last
//! component) form one sample. The image is the member with an image extension (`jpg`, `jpeg`,
//! `png`, `webp`, `gif`, `bmp`, `tif`, `tiff`, first in that order), the caption the `.txt` member
//! (else the caption field of the `.json` member), and the `.json` member's scalar fields are
//! passthrough columns. One unit per tar.
//!
//! The tar is read as a stream (no seeking, flat memory) by a producer thread that sends complete
//! samples through a bounded channel: `tar`'s entry iterator borrows its archive, so it cannot
//! live inside the `Send` source itself. A tar that ends early or has a corrupt header yields the
//! samples read so far, then one malformed item saying where reading stopped.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow::datatypes::Field;
use bytes::Bytes;
use tokio::runtime::Handle;

use super::error::Result;
use super::format::{Compression, IMAGE_EXTENSIONS};
use super::keys::split_member;
use super::location::Tap;
use super::meta::{JsonObject, SidecarSchema, parse_object};
use super::options::SourceOptions;
use super::{ImageRef, RawItem, SourceStats, UnitCtx, UnitSource};

/// Samples queued between the reading thread and the source.
const QUEUE: usize = 16;
/// Samples read ahead at open time to find a `.json` member that parses.
const LOOKAHEAD: usize = 32;
/// Tar block size.
const BLOCK: u64 = 512;

/// One member of a sample: its extension and bytes (or why they were not read).
#[derive(Debug)]
struct Member {
    ext: String,
    name: String,
    data: std::result::Result<Bytes, String>,
}

/// Consecutive members sharing a key.
#[derive(Debug)]
struct Sample {
    key: String,
    members: Vec<Member>,
}

impl Sample {
    fn member(&self, ext: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.ext == ext)
    }
}

/// What the reading thread sends.
#[derive(Debug)]
enum Event {
    Sample(Sample),
    /// A member that belongs to no sample (hidden file, no key).
    Skipped,
    /// The tar is truncated or corrupt: `pending` is the key of the sample being read.
    Stopped {
        pending: Option<String>,
        detail: String,
    },
    /// The storage failed while reading.
    Failed(String),
}

/// Reads the tar, sending samples until the end, an error, or the source is dropped.
fn produce(reader: Box<dyn Read + Send>, tap: Tap, max_member: u64, tx: SyncSender<Event>) {
    let mut archive = tar::Archive::new(reader);
    let stop = |pending: Option<String>, detail: String| {
        let event = match tap.failure() {
            Some(f) => Event::Failed(f),
            None => Event::Stopped { pending, detail },
        };
        // The receiver may be gone; nothing left to do either way.
        let _ = tx.send(event);
    };
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => return stop(None, format!("cannot read the tar: {e}")),
    };
    let mut current: Option<Sample> = None;
    let mut next_offset = 0u64;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let pending = current.take().map(|s| s.key);
                return stop(
                    pending,
                    format!("tar unreadable after byte {next_offset}: {e}"),
                );
            }
        };
        let pos = entry.raw_header_position();
        let size = entry.size();
        next_offset = entry.raw_file_position() + size.div_ceil(BLOCK) * BLOCK;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some((key, ext)) = split_member(&path) else {
            if tx.send(Event::Skipped).is_err() {
                return;
            }
            continue;
        };
        if current.as_ref().is_some_and(|s| s.key != key)
            && let Some(done) = current.take()
            && tx.send(Event::Sample(done)).is_err()
        {
            return;
        }
        let data = if size > max_member {
            Err(format!(
                "member {path} is {size} bytes, above the {max_member}-byte limit"
            ))
        } else {
            let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            let read = entry.read_to_end(&mut buf);
            match read {
                Ok(n) if n as u64 == size => Ok(Bytes::from(buf)),
                Ok(n) => {
                    let pending = Some(current.take().map_or_else(|| key.to_string(), |s| s.key));
                    return stop(
                        pending,
                        format!(
                            "member {path} (header at byte {pos}) is cut short: {n} of {size} bytes"
                        ),
                    );
                }
                Err(e) => {
                    let pending = Some(current.take().map_or_else(|| key.to_string(), |s| s.key));
                    return stop(
                        pending,
                        format!("member {path} (header at byte {pos}) is unreadable: {e}"),
                    );
                }
            }
        };
        let sample = current.get_or_insert_with(|| Sample {
            key: key.to_string(),
            members: Vec::new(),
        });
        sample.members.push(Member {
            ext: ext.to_ascii_lowercase(),
            name: path.clone(),
            data,
        });
    }
    if let Some(done) = current {
        let _ = tx.send(Event::Sample(done));
    }
}

struct TarSource {
    ctx: UnitCtx,
    rx: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
    ahead: VecDeque<Event>,
    schema: SidecarSchema,
    next_index: u64,
    stats: SourceStats,
    done: bool,
}

/// Opens a tar unit (`gzip`: `.tar.gz`).
pub(super) fn open(
    ctx: UnitCtx,
    gzip: bool,
    opts: &SourceOptions,
    rt: &Handle,
) -> Result<Box<dyn UnitSource>> {
    let compression = if gzip {
        Compression::Gzip
    } else {
        Compression::None
    };
    let (reader, tap) = ctx.loc.open_read(compression, rt)?;
    let (tx, rx) = sync_channel(QUEUE);
    let max = opts.max_item_bytes;
    let thread = std::thread::Builder::new()
        .name(format!("tar:{}", ctx.source))
        .spawn(move || produce(reader, tap, max, tx))
        .map_err(|e| ctx.read_error(format!("cannot start the tar reader thread: {e}")))?;
    // Read ahead to the first `.json` member that parses: it fixes the passthrough columns.
    let mut ahead = VecDeque::new();
    let mut first: Option<JsonObject> = None;
    while ahead.len() < LOOKAHEAD {
        let Ok(event) = rx.recv() else { break };
        let last = !matches!(event, Event::Sample(_) | Event::Skipped);
        if let Event::Sample(s) = &event
            && let Some(Member { data: Ok(b), .. }) = s.member("json")
            && let Ok(m) = parse_object(b)
        {
            first = Some(m);
        }
        ahead.push_back(event);
        if last || first.is_some() {
            break;
        }
    }
    let schema = SidecarSchema::infer(first.as_ref(), opts);
    Ok(Box::new(TarSource {
        ctx,
        rx,
        thread: Some(thread),
        ahead,
        schema,
        next_index: 0,
        stats: SourceStats::default(),
        done: false,
    }))
}

impl TarSource {
    fn item(&mut self, s: Sample) -> RawItem {
        let index = self.next_index;
        let n = self.schema.fields().len();
        let malformed = |detail: String| self.ctx.malformed(index, s.key.clone(), detail, n);
        for (i, m) in s.members.iter().enumerate() {
            if let Err(detail) = &m.data {
                return malformed(detail.clone());
            }
            if s.members.iter().take(i).any(|o| o.ext == m.ext) {
                return malformed(format!("sample {} has member {} twice", s.key, m.name));
            }
        }
        let meta = match s.member("json") {
            Some(Member {
                data: Ok(b), name, ..
            }) => match parse_object(b) {
                Ok(m) => Some(m),
                Err(e) => return malformed(format!("{name}: {e}")),
            },
            _ => None,
        };
        let bytes_of = |ext: &str| match s.member(ext) {
            Some(Member { data: Ok(b), .. }) => Some(b.clone()),
            _ => None,
        };
        let image = IMAGE_EXTENSIONS
            .iter()
            .find_map(|e| bytes_of(e))
            .map_or(ImageRef::Missing, ImageRef::Bytes);
        let caption =
            bytes_of("txt").or_else(|| meta.as_ref().and_then(|m| self.schema.caption(m)));
        let url = meta.as_ref().and_then(|m| self.schema.url(m));
        let extras = self.schema.extras(meta.as_ref(), &mut self.stats);
        RawItem {
            index,
            key: s.key,
            source: self.ctx.source.clone(),
            image,
            caption,
            url,
            extras,
            malformed: None,
        }
    }

    /// The thread's end: `Err` when it died instead of finishing.
    fn finish(&mut self) -> Option<Result<RawItem>> {
        self.done = true;
        match self.thread.take().map(JoinHandle::join) {
            Some(Err(_)) => Some(Err(self.ctx.read_error("the tar reader thread panicked"))),
            _ => None,
        }
    }
}

impl UnitSource for TarSource {
    fn extra_fields(&self) -> &[Field] {
        self.schema.fields()
    }

    fn next_item(&mut self) -> Option<Result<RawItem>> {
        loop {
            if self.done {
                return None;
            }
            let event = match self.ahead.pop_front() {
                Some(e) => e,
                None => match self.rx.recv() {
                    Ok(e) => e,
                    Err(_) => return self.finish(),
                },
            };
            match event {
                Event::Skipped => self.stats.skipped_members += 1,
                Event::Sample(s) => {
                    let item = self.item(s);
                    self.next_index += 1;
                    return Some(Ok(item));
                }
                Event::Stopped { pending, detail } => {
                    self.done = true;
                    let key = pending.unwrap_or_else(|| self.ctx.fallback_key(self.next_index));
                    let item = self.ctx.malformed(
                        self.next_index,
                        key,
                        detail,
                        self.schema.fields().len(),
                    );
                    self.next_index += 1;
                    return Some(Ok(item));
                }
                Event::Failed(detail) => {
                    self.done = true;
                    return Some(Err(self.ctx.read_error(detail)));
                }
            }
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives `data`, then fails like a dropped connection.
    struct Flaky {
        data: std::io::Cursor<Vec<u8>>,
    }

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.data.read(buf)? {
                0 => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset",
                )),
                n => Ok(n),
            }
        }
    }

    fn events(reader: impl Read + Send + 'static, tap: Tap) -> Vec<Event> {
        let (tx, rx) = sync_channel(4);
        let t = std::thread::spawn(move || produce(Box::new(reader), tap, 1 << 20, tx));
        let got: Vec<Event> = rx.iter().collect();
        t.join().unwrap();
        got
    }

    fn two_samples() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("a.jpg", &[1u8; 700][..]),
            ("a.txt", b"cap"),
            ("b.jpg", &[2u8; 700][..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_storage_failure_is_not_a_truncated_tar() {
        let tar = two_samples();
        // a.jpg: header at 0, data 512..1212; a.txt: header at 1536; b.jpg: data from 3072.
        let cut = tar[..3300].to_vec();
        // The storage fails where the data ends: an error, not a malformed item.
        let tap = Tap::default();
        let got = events(
            tap.wrap(Flaky {
                data: std::io::Cursor::new(cut.clone()),
            }),
            tap,
        );
        assert!(
            matches!(&got[..], [Event::Sample(s), Event::Failed(e)] if s.key == "a" && e.contains("reset")),
            "{got:?}"
        );
        // The file simply ends there: the sample being read is malformed.
        let tap = Tap::default();
        let got = events(tap.wrap(std::io::Cursor::new(cut)), tap);
        assert!(
            matches!(&got[..], [Event::Sample(_), Event::Stopped { pending: Some(k), .. }] if k == "b"),
            "{got:?}"
        );
        // The whole tar: two samples, nothing else.
        let tap = Tap::default();
        let got = events(tap.wrap(std::io::Cursor::new(tar)), tap);
        assert!(
            matches!(&got[..], [Event::Sample(a), Event::Sample(b)] if a.members.len() == 2 && b.key == "b"),
            "{got:?}"
        );
    }
}
