//! `flipstream train --nproc N`: starts N ranks of the same command on this machine, the way
//! `torchrun --nproc-per-node N` would — the same variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `LOCAL_WORLD_SIZE`, `MASTER_ADDR=127.0.0.1`, `MASTER_PORT`: a free port, or the caller's
//! `MASTER_PORT`) — and watches them. The CPU is shared out: each rank gets `cores / N` libtorch
//! and decode threads unless `--threads` / `--decode-threads` say otherwise. When a rank fails,
//! the launcher says which one and how, gives the others the distributed timeout to stop on their
//! own (a collective with a dead peer fails), then ends them. The exit code is the first failed
//! rank's.

use std::ffi::OsString;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The command line of one rank: this process's arguments without `--nproc`, with the thread
/// count flags `share` set to `cores / nproc` where the user gave none.
pub(super) fn rank_args(
    args: &[OsString],
    nproc: usize,
    cores: usize,
    share: &[&str],
) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 4);
    let mut skip = false;
    for a in args {
        if std::mem::take(&mut skip) {
            continue;
        }
        let s = a.to_string_lossy();
        if s == "--nproc" {
            skip = true;
            continue;
        }
        if s.starts_with("--nproc=") {
            continue;
        }
        out.push(a.clone());
    }
    let per_rank = (cores / nproc).max(1).to_string();
    for &flag in share {
        let given = out.iter().any(|a| {
            let s = a.to_string_lossy();
            s == flag || s.starts_with(&format!("{flag}="))
        });
        if !given {
            out.push(flag.into());
            out.push(per_rank.clone().into());
        }
    }
    out
}

/// `--nproc`: `Some(exit code)` after starting and watching `nproc` local ranks of this command
/// (their thread flags `share` shared out), `None` when this process is to run as it is (no
/// `--nproc`, or 1). Refuses 0 and `--nproc` under a launcher (`dist` already has ranks).
pub(super) fn launch_if_asked(
    nproc: Option<usize>,
    dist: &flipstream_train::dist::DistSetup,
    share: &[&str],
) -> anyhow::Result<Option<ExitCode>> {
    match nproc {
        Some(0) => crate::usage_bail!("--nproc must be at least 1"),
        Some(_) if dist.is_distributed() => crate::usage_bail!(
            "--nproc starts the ranks itself, but this process already is rank {} of {} \
             (launcher variables are set): leave out --nproc",
            dist.rank,
            dist.world_size
        ),
        Some(n) if n > 1 => {
            let all: Vec<OsString> = std::env::args_os().skip(1).collect();
            let grace = dist.timeout + Duration::from_secs(10);
            run_local(n, &all, share, grace).map(Some)
        }
        _ => Ok(None),
    }
}

/// A free TCP port on 127.0.0.1 (the rendezvous of the local ranks).
fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port for the ranks")?;
    Ok(listener.local_addr()?.port())
}

/// How a rank ended, in words.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".into(),
    }
}

/// Starts `nproc` ranks of this program with `args` (the arguments after the program name; the
/// thread flags `share` shared out, see [`rank_args`]) and waits for them; `grace` is how long the
/// others may take to stop after one failed.
pub(super) fn run_local(
    nproc: usize,
    args: &[OsString],
    share: &[&str],
    grace: Duration,
) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the flipstream program")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let port = match std::env::var("MASTER_PORT") {
        Ok(p) => p
            .parse::<u16>()
            .with_context(|| format!("MASTER_PORT={p:?} is not a port"))?,
        Err(_) => free_port()?,
    };
    let rank_args = rank_args(args, nproc, cores, share);
    let mut children: Vec<Option<Child>> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let child = Command::new(&exe)
            .args(&rank_args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn()
            .with_context(|| format!("starting rank {rank}"))?;
        children.push(Some(child));
    }
    watch(children, grace)
}

/// Waits for every rank; after the first failure, the others get `grace` to stop, then are
/// killed.
fn watch(mut children: Vec<Option<Child>>, grace: Duration) -> anyhow::Result<ExitCode> {
    let mut first_failure: Option<(usize, ExitStatus)> = None;
    let mut deadline: Option<Instant> = None;
    while children.iter().any(Option::is_some) {
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for rank {rank}"))?
            else {
                continue;
            };
            *slot = None;
            if !status.success() && first_failure.is_none() {
                eprintln!(
                    "flipstream: rank {rank} {}; the other ranks stop within {} s",
                    describe(status),
                    grace.as_secs()
                );
                first_failure = Some((rank, status));
                deadline = Some(Instant::now() + grace);
            }
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            for (rank, slot) in children.iter_mut().enumerate() {
                if let Some(mut child) = slot.take() {
                    eprintln!("flipstream: rank {rank} did not stop; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(match first_failure {
        None => ExitCode::SUCCESS,
        Some((_, status)) => ExitCode::from(status.code().map_or(1, |c| c.clamp(1, 255) as u8)),
    })
}

/// The rank's own GPU: `auto` / `cuda` mean `cuda:LOCAL_RANK` in a data-parallel run.
pub(super) fn rank_device(
    device: tch::Device,
    spec: &str,
    setup: &flipstream_train::dist::DistSetup,
) -> anyhow::Result<tch::Device> {
    let generic = matches!(
        spec.trim().to_ascii_lowercase().as_str(),
        "auto" | "cuda" | "gpu"
    );
    match device {
        tch::Device::Cuda(0) if generic && setup.local_rank > 0 => {
            let available = tch::Cuda::device_count() as usize;
            if setup.local_rank >= available {
                crate::usage_bail!(
                    "local rank {} needs its own GPU but {available} are available: start at most \
                     {available} ranks per machine, or pass --device cpu",
                    setup.local_rank
                );
            }
            Ok(tch::Device::Cuda(setup.local_rank))
        }
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn rank_args_drop_nproc_and_share_the_threads() {
        let share = ["--threads", "--decode-threads"];
        let out = rank_args(
            &args(&["train", "d", "--nproc", "2", "--run", "r"]),
            2,
            8,
            &share,
        );
        assert_eq!(
            out,
            args(&[
                "train",
                "d",
                "--run",
                "r",
                "--threads",
                "4",
                "--decode-threads",
                "4"
            ])
        );
        let out = rank_args(
            &args(&["train", "--nproc=3", "--threads=2", "--decode-threads", "1"]),
            3,
            2,
            &share,
        );
        assert_eq!(
            out,
            args(&["train", "--threads=2", "--decode-threads", "1"])
        );
    }
}
