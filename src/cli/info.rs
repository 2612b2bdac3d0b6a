//! `flipstream info`: build features and what the machine offers, for bug reports and set-up checks.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::Global;

/// Arguments of `flipstream info` (none besides the global `--json`).
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {}

#[derive(Debug, Serialize)]
struct Info {
    version: &'static str,
    schema_version: u32,
    train_feature: bool,
    cpus: usize,
    cpu_features: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cuda_devices: Option<i64>,
}

fn cpu_features() -> Vec<&'static str> {
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.1") {
            v.push("sse4.1");
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            v.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            v.push("avx512f");
        }
    }
    #[cfg(target_arch = "aarch64")]
    v.push("neon");
    v
}

/// Prints the build and machine summary.
pub(super) fn run(_args: InfoArgs, global: Global) -> anyhow::Result<ExitCode> {
    #[cfg(feature = "train")]
    let cuda_devices = Some(if tch::Cuda::is_available() {
        tch::Cuda::device_count()
    } else {
        0
    });
    #[cfg(not(feature = "train"))]
    let cuda_devices = None;
    let info = Info {
        version: env!("CARGO_PKG_VERSION"),
        schema_version: flipstream_schemas::SCHEMA_VERSION,
        train_feature: cfg!(feature = "train"),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_features: cpu_features(),
        cuda_devices,
    };
    if global.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!(
            "flipstream {} (data schema v{})",
            info.version, info.schema_version
        );
        println!(
            "training:     {}",
            if info.train_feature {
                "built in (libtorch)"
            } else {
                "not built (--no-default-features)"
            }
        );
        println!(
            "cpus:         {} ({})",
            info.cpus,
            info.cpu_features.join(", ")
        );
        if let Some(n) = info.cuda_devices {
            println!("cuda devices: {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
