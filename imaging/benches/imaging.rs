//! Criterion benchmarks of `flipstream_imaging`, one thread (images per CPU-second):
//!
//! - `decode/*`: the JPEG decoder candidates at full size and scaled for a 256-px shortest side
//!   (zune-jpeg through `image`, `jpeg-decoder` with `scale`, libjpeg-turbo through `turbojpeg`
//!   with power-of-two and with M/8 factors, and our [`imaging::decode`]).
//! - `resize/*`: the filters, from the scaled decodes (and Lanczos3 / box from full decodes).
//! - `encode/*`: JPEG q90 4:2:0 (libjpeg-turbo, `jpeg-encoder`), WebP, PNG of the resized images.
//! - `process/*`: [`imaging::process_for_shard`] at 256 shortest side, JPEG q90 — the ingest hot
//!   path — with and without keeping small originals, and with the scaled decode off.
//! - `phash/*`.
//!
//! Inputs: `synthetic` (generated web-like JPEGs, always) and `photos` when
//! `FLIPSTREAM_BENCH_CORPUS=/dir` names a folder of `.jpg`/`.png` files (the anchors' corpus:
//! `python3 /work/shared/bench/make_photo_corpus.py DIR`). `FLIPSTREAM_BENCH_LIMIT` (default 500)
//! caps the number of files read, in name order. Time is process CPU time (all threads), so
//! criterion's `elem/s` is images per CPU-second even on a busy machine; `jpeg-decoder` spawns a
//! thread per colour component, and that time counts too.

use std::sync::OnceLock;
use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use flipstream_imaging::{
    self as imaging, DctScaling, DecodeOptions, EncodeSpec, OutputFormat, ProcessSpec,
    ResizeFilter, ResizeSpec, fixtures,
};
use image::RgbImage;

const TARGET: u32 = 256;

struct Corpus {
    name: &'static str,
    /// JPEG files only (decoder candidates).
    jpegs: Vec<Vec<u8>>,
    /// Every file (JPEG and PNG), for the whole process.
    all: Vec<Vec<u8>>,
}

fn corpora() -> Vec<Corpus> {
    let limit: usize = std::env::var("FLIPSTREAM_BENCH_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let synthetic = fixtures::web_like_jpegs(limit.min(150), 2024).expect("synthetic corpus");
    let mut out = vec![Corpus {
        name: "synthetic",
        jpegs: synthetic.clone(),
        all: synthetic,
    }];
    if let Ok(dir) = std::env::var("FLIPSTREAM_BENCH_CORPUS") {
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("FLIPSTREAM_BENCH_CORPUS={dir}: {e}"))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "jpg" || e == "jpeg" || e == "png")
            })
            .collect();
        paths.sort();
        paths.truncate(limit);
        let all: Vec<Vec<u8>> = paths
            .iter()
            .map(|p| std::fs::read(p).expect("read corpus file"))
            .collect();
        let jpegs = all
            .iter()
            .filter(|b| b.starts_with(&[0xFF, 0xD8]))
            .cloned()
            .collect();
        out.push(Corpus {
            name: "photos",
            jpegs,
            all,
        });
    }
    out
}

fn group<'a>(c: &'a mut Criterion, name: &str, n: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(n as u64));
    g
}

/// The `(width, height)` that `jpeg-decoder`'s `scale` must be asked for so that the shortest
/// side stays at or above [`TARGET`].
fn jpeg_decoder_request(w: u16, h: u16) -> (u16, u16) {
    let min = u32::from(w.min(h));
    if min <= TARGET {
        return (w, h);
    }
    let req = |s: u16| u16::try_from((u32::from(s) * TARGET).div_ceil(min)).unwrap_or(u16::MAX);
    (req(w), req(h))
}

/// libjpeg-turbo decode at the largest factor from `factors` that keeps [`TARGET`].
fn turbo_decode(
    d: &mut turbojpeg::Decompressor,
    bytes: &[u8],
    factors: &[turbojpeg::ScalingFactor],
) -> Vec<u8> {
    let h = d.read_header(bytes).expect("header");
    let sf = factors
        .iter()
        .copied()
        .find(|f| f.scale(h.width.min(h.height)) >= TARGET as usize)
        .unwrap_or(turbojpeg::ScalingFactor::ONE);
    d.set_scaling_factor(sf).expect("scaling factor");
    let s = h.scaled(sf);
    let mut pixels = vec![0u8; s.width * s.height * 3];
    let img = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width: s.width,
        pitch: s.width * 3,
        height: s.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    d.decompress(bytes, img).expect("decompress");
    pixels
}

fn bench_decode(c: &mut Criterion, corpus: &Corpus) {
    let files = &corpus.jpegs;
    let mut g = group(c, &format!("decode/{}", corpus.name), files.len());
    g.bench_function("zune_full", |b| {
        measure(b, || {
            for f in files {
                let img =
                    image::load_from_memory_with_format(f, image::ImageFormat::Jpeg).expect("zune");
                std::hint::black_box(img.into_rgb8());
            }
        })
    });
    for scaled in [false, true] {
        g.bench_function(
            if scaled {
                "jpeg_decoder_scaled"
            } else {
                "jpeg_decoder_full"
            },
            |b| {
                measure(b, || {
                    for f in files {
                        let mut d = jpeg_decoder::Decoder::new(&f[..]);
                        if scaled {
                            d.read_info().expect("info");
                            let info = d.info().expect("info");
                            let (w, h) = jpeg_decoder_request(info.width, info.height);
                            d.scale(w, h).expect("scale");
                        }
                        std::hint::black_box(d.decode().expect("jpeg-decoder"));
                    }
                })
            },
        );
    }
    let one = [turbojpeg::ScalingFactor::ONE];
    let pow2 = [1, 2, 4].map(|den| turbojpeg::ScalingFactor::new(1, 8 / den));
    let m8: Vec<_> = (1..=8)
        .map(|m| turbojpeg::ScalingFactor::new(m, 8))
        .collect();
    for (name, factors) in [
        ("turbojpeg_full", &one[..]),
        ("turbojpeg_scaled_pow2", &pow2[..]),
        ("turbojpeg_scaled_m8", &m8[..]),
    ] {
        g.bench_function(name, |b| {
            let mut d = turbojpeg::Decompressor::new().expect("turbojpeg");
            measure(b, || {
                for f in files {
                    std::hint::black_box(turbo_decode(&mut d, f, factors));
                }
            })
        });
    }
    let opts = DecodeOptions {
        target_min_side: Some(TARGET),
        ..Default::default()
    };
    g.bench_function("imaging_decode_scaled", |b| {
        measure(b, || {
            for f in files {
                std::hint::black_box(imaging::decode(f, &opts).expect("decode"));
            }
        })
    });
    g.finish();
}

/// Upright RGB images with their original sizes.
fn decoded(files: &[Vec<u8>], target: Option<u32>) -> Vec<(RgbImage, u32, u32)> {
    let opts = DecodeOptions {
        target_min_side: target,
        ..Default::default()
    };
    files
        .iter()
        .map(|f| {
            let d = imaging::decode(f, &opts).expect("decode");
            (d.image, d.orig_width, d.orig_height)
        })
        .collect()
}

fn bench_resize(c: &mut Criterion, corpus: &Corpus) {
    let scaled = decoded(&corpus.jpegs, Some(TARGET));
    let full = decoded(&corpus.jpegs, None);
    let mut g = group(c, &format!("resize/{}", corpus.name), scaled.len());
    let filters = [
        ResizeFilter::Lanczos3,
        ResizeFilter::CatmullRom,
        ResizeFilter::Hamming,
        ResizeFilter::Bilinear,
        ResizeFilter::Box,
    ];
    for filter in filters {
        let spec = ResizeSpec {
            filter,
            ..Default::default()
        };
        g.bench_function(format!("{filter:?}_from_scaled").to_lowercase(), |b| {
            measure(b, || {
                for (img, w, h) in &scaled {
                    std::hint::black_box(
                        imaging::resize(img.clone(), *w, *h, &spec).expect("resize"),
                    );
                }
            })
        });
    }
    for filter in [ResizeFilter::Lanczos3, ResizeFilter::Box] {
        let spec = ResizeSpec {
            filter,
            ..Default::default()
        };
        g.bench_function(format!("{filter:?}_from_full").to_lowercase(), |b| {
            measure(b, || {
                for (img, w, h) in &full {
                    std::hint::black_box(
                        imaging::resize(img.clone(), *w, *h, &spec).expect("resize"),
                    );
                }
            })
        });
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion, corpus: &Corpus) {
    let spec = ResizeSpec::default();
    let resized: Vec<RgbImage> = decoded(&corpus.jpegs, Some(TARGET))
        .into_iter()
        .map(|(img, w, h)| imaging::resize(img, w, h, &spec).expect("resize"))
        .collect();
    let mut g = group(c, &format!("encode/{}", corpus.name), resized.len());
    for (name, format, quality) in [
        ("turbojpeg_q90", OutputFormat::Jpeg, 90),
        ("webp_q80", OutputFormat::Webp, 80),
        ("png", OutputFormat::Png, 0),
    ] {
        let spec = EncodeSpec { format, quality };
        g.bench_function(name, |b| {
            measure(b, || {
                for img in &resized {
                    std::hint::black_box(imaging::encode(img, &spec).expect("encode"));
                }
            })
        });
    }
    g.bench_function("jpeg_encoder_q90", |b| {
        measure(b, || {
            for img in &resized {
                let mut out = Vec::new();
                let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
                enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
                enc.encode(
                    img.as_raw(),
                    img.width() as u16,
                    img.height() as u16,
                    jpeg_encoder::ColorType::Rgb,
                )
                .expect("jpeg-encoder");
                std::hint::black_box(out);
            }
        })
    });
    g.finish();
}

fn bench_process(c: &mut Criterion, corpus: &Corpus) {
    let files = &corpus.all;
    let mut g = group(c, &format!("process/{}", corpus.name), files.len());
    let default = ProcessSpec::default();
    let eighths = ProcessSpec {
        dct_scaling: DctScaling::Eighths,
        ..ProcessSpec::default()
    };
    let always_encode = ProcessSpec {
        keep_original: Vec::new(),
        ..ProcessSpec::default()
    };
    let dct_off = ProcessSpec {
        keep_original: Vec::new(),
        dct_scaling: DctScaling::Off,
        ..ProcessSpec::default()
    };
    for (name, spec) in [
        ("default_256_q90", &default),
        ("eighths_256_q90", &eighths),
        ("always_encode_256_q90", &always_encode),
        ("dct_off_always_encode_256_q90", &dct_off),
    ] {
        g.bench_function(name, |b| {
            measure(b, || {
                for f in files {
                    std::hint::black_box(imaging::process_for_shard(f, spec).expect("process"));
                }
            })
        });
    }
    g.finish();

    let images = decoded(&corpus.jpegs, Some(TARGET));
    let mut g = group(c, &format!("phash/{}", corpus.name), images.len());
    g.bench_function("phash_scaled_decode", |b| {
        measure(b, || {
            for (img, _, _) in &images {
                std::hint::black_box(imaging::phash(img).expect("phash"));
            }
        })
    });
    g.finish();
}

/// Runs `f` on a one-thread rayon pool: `fast_image_resize` splits its work over the current
/// pool, and these figures are per core.
fn one_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("rayon pool")
    })
    .install(f)
}

/// CPU time (user + system) of this process and all its threads, live or exited, from
/// `/proc/self/stat` (clock ticks of 10 ms; every sample here runs for a second or more).
fn process_cpu_time() -> Duration {
    const TICKS_PER_SECOND: u64 = 100; // USER_HZ, fixed at 100 on Linux
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat (Linux only)");
    let after_name = &stat[stat.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

/// Measures `work` in CPU time rather than wall time: the machines are shared, and CPU time is
/// what "images per CPU-second" means. Criterion's `elem/s` is then images per CPU-second.
fn measure(b: &mut criterion::Bencher<'_>, mut work: impl FnMut() + Send) {
    b.iter_custom(|iters| {
        let start = process_cpu_time();
        one_thread(|| {
            for _ in 0..iters {
                work();
            }
        });
        process_cpu_time().saturating_sub(start)
    });
}

fn benches(c: &mut Criterion) {
    for corpus in corpora() {
        bench_decode(c, &corpus);
        bench_resize(c, &corpus);
        bench_encode(c, &corpus);
        bench_process(c, &corpus);
    }
}

criterion_group!(imaging_benches, benches);
criterion_main!(imaging_benches);
