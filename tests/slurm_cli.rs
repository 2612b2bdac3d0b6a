//! flipstream under a real Slurm: Debian's slurm-wlm and munge, a one-node cluster on 127.0.0.1
//! started by `scripts/slurm-local.sh` (installed on first use, as root). Through the sbatch
//! scripts users run (`scripts/slurm/`): an ingest job array gives exactly the dataset of one run;
//! a cancelled task re-submitted alone completes it; an array whose size contradicts
//! `--num-workers` fails with a message; `flipstream stats` runs as a dependent job; `srun` of
//! `flipstream train` over two tasks logs the losses of one process.
//!
//! Without root (Slurm cannot be installed) the test says so on stderr and stops; any other
//! failure to start the cluster fails it.

#![cfg(feature = "train")]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::dataset::fingerprint;
use support::train::{CONFIG, assert_same_losses, losses};
use support::{bin, run};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A running one-node cluster; stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(repo().join("scripts/slurm-local.sh"))
            .arg("start")
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => Some(Cluster {
                conf: dir.path().join("slurm.conf"),
                dir,
            }),
            Some(3) => {
                eprintln!("SKIPPED: no Slurm on this machine: {stderr}");
                None
            }
            _ => panic!("the Slurm cluster did not start:\n{stderr}"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A Slurm command (`sbatch`, `scancel`, …) talking to this cluster.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }

    /// `sbatch --parsable` with `args` and `env` (given up after 5 minutes); the job id and the
    /// output.
    fn sbatch(&self, args: &[&str], env: &[(&str, String)]) -> (String, Output) {
        let out = self
            .command("timeout")
            .args(["300", "sbatch", "--parsable"])
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        (id, out)
    }

    /// Waits (up to 2 minutes) until job `id` has left the queue.
    fn wait_gone(&self, id: &str) {
        let started = Instant::now();
        loop {
            let out = self
                .command("squeue")
                .args(["-h", "-j", id])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "job {id} did not finish"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/slurm-local.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The files `prefix*` of `dir`, concatenated.
fn logs(dir: &Path, prefix: &str) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    out
}

#[test]
fn ingest_arrays_training_and_dependent_jobs_run_under_slurm() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (raw, single) = (cluster.path("raw"), cluster.path("single"));
    run(&[
        "--quiet",
        "synth",
        "--out",
        &s(&raw),
        "--count",
        "240",
        "--seed",
        "5",
        "--layout",
        "webdataset",
        "--shard-size",
        "60",
        "--object-sizes",
        "large=1",
    ])
    .expect_code(0);
    run(&[
        "--quiet",
        "ingest",
        &s(&raw),
        "--out",
        &s(&single),
        "--size",
        "32",
    ])
    .expect_code(0);
    let want = fingerprint(&s(&single));
    let script = s(&repo().join("scripts/slurm/ingest-array.sbatch"));
    let bin = s(&bin());
    let raw_s = s(&raw);
    let env = |out: &str, extra: &str| {
        vec![
            ("FLIPSTREAM", bin.clone()),
            ("INPUT", raw_s.clone()),
            ("OUTPUT", out.to_string()),
            ("INGEST_ARGS", format!("--size 32 {extra}")),
        ]
    };
    let logs_dir = cluster.path("logs");
    std::fs::create_dir_all(&logs_dir).unwrap();
    let output = |name: &str| format!("--output={}/{name}-%A_%a.txt", s(&logs_dir));

    // 1. A job array of 4 tasks makes the dataset one run makes.
    let array = s(&cluster.path("array"));
    let vars = env(&array, "");
    let (array_job, out) = cluster.sbatch(&["--wait", &output("array"), &script], &vars);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        logs(&logs_dir, "array")
    );
    assert_eq!(
        fingerprint(&array),
        want,
        "the array's dataset differs from one run's"
    );

    // 2. A task cancelled before it ran, re-submitted alone, completes the dataset.
    let partial = s(&cluster.path("partial"));
    let vars = env(&partial, "");
    let (job, out) = cluster.sbatch(&["--hold", &output("partial"), &script], &vars);
    assert!(out.status.success(), "{}", text(&out));
    let cancel = cluster
        .command("scancel")
        .arg(format!("{job}_2"))
        .output()
        .unwrap();
    assert!(cancel.status.success(), "{}", text(&cancel));
    let release = cluster
        .command("scontrol")
        .args(["release", &job])
        .output()
        .unwrap();
    assert!(release.status.success(), "{}", text(&release));
    cluster.wait_gone(&job);
    assert_ne!(
        fingerprint(&partial),
        want,
        "the cancelled task's units should be missing"
    );
    let (_, out) = cluster.sbatch(&["--wait", "--array=2", &output("again"), &script], &vars);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        logs(&logs_dir, "again")
    );
    assert_eq!(
        fingerprint(&partial),
        want,
        "re-submitting the task did not complete the dataset"
    );

    // 3. The statistics report as a job that waits for the array.
    let report = cluster.path("report");
    let wrap = format!("{bin} --quiet stats {array} --out {}", s(&report));
    let (_, out) = cluster.sbatch(
        &[
            "--wait",
            &format!("--dependency=afterok:{array_job}"),
            &output("stats"),
            "--wrap",
            &wrap,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        logs(&logs_dir, "stats")
    );
    assert!(
        report.join("report.json").is_file(),
        "{}",
        logs(&logs_dir, "stats")
    );

    // 4. An array whose size contradicts --num-workers fails and says why.
    let vars = env(&s(&cluster.path("bad")), "--num-workers 4");
    let (_, out) = cluster.sbatch(&["--wait", "--array=0-1", &output("bad"), &script], &vars);
    assert!(!out.status.success(), "{}", text(&out));
    let said = logs(&logs_dir, "bad");
    assert!(
        said.contains("has 2 tasks but --num-workers is 4"),
        "{said}"
    );

    // 5. Training on two Slurm tasks logs the losses of one process.
    let config = cluster.path("micro.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let args = format!(
        "--config {} --all-data --eval-every 0 --device cpu --threads 1 --decode-threads 1 --dist-timeout 60",
        s(&config)
    );
    let one = cluster.path("one");
    let mut single_args: Vec<String> = vec![
        "--quiet".into(),
        "train".into(),
        s(&single),
        "--run".into(),
        s(&one),
    ];
    single_args.extend(args.split(' ').map(String::from));
    let refs: Vec<&str> = single_args.iter().map(String::as_str).collect();
    run(&refs).expect_code(0);
    let two = cluster.path("two");
    let train_script = s(&repo().join("scripts/slurm/train.sbatch"));
    let vars = [
        ("FLIPSTREAM", bin.clone()),
        ("DATASET", s(&single)),
        ("RUN", s(&two)),
        ("TRAIN_ARGS", args.clone()),
    ];
    let (_, out) = cluster.sbatch(&["--wait", &output("train"), &train_script], &vars);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        logs(&logs_dir, "train")
    );
    assert_same_losses(&losses(&one), &losses(&two));
}
