//! Who this process is in a data-parallel run: [`DistSetup`], read from the variables launchers
//! set.
//!
//! - torchrun (and `flipstream train --nproc`, which sets the same): `RANK`, `WORLD_SIZE`,
//!   `MASTER_ADDR`, `MASTER_PORT`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`.
//! - Slurm's `srun`: `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, `SLURM_STEP_TASKS_PER_NODE`;
//!   the master is `MASTER_ADDR` or the first host of `SLURM_STEP_NODELIST` /
//!   `SLURM_JOB_NODELIST`, the port `MASTER_PORT` or one derived from `SLURM_JOB_ID`. Only inside
//!   a job step (`SLURM_STEP_ID` set), so that a batch script's own shell is not mistaken for
//!   rank 0 of the job.
//! - Neither: one process.

use std::time::Duration;

use super::Backend;
use crate::error::{Result, TrainError};

/// How long a rank waits for the others (rendezvous, a collective, a barrier) before failing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Which launcher described the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchSource {
    /// No launcher: one process.
    Single,
    /// torchrun's variables (also set by `flipstream train --nproc`).
    Torchrun,
    /// Slurm's `srun`.
    Slurm,
}

/// This process's place in a data-parallel run.
#[derive(Debug, Clone, PartialEq)]
pub struct DistSetup {
    /// This rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Rank among the processes on this machine (picks the GPU).
    pub local_rank: usize,
    /// Processes on this machine.
    pub local_world_size: usize,
    /// Host of rank 0's rendezvous store.
    pub master_addr: String,
    /// Its port.
    pub master_port: u16,
    /// The backend; `None`: NCCL on CUDA, Gloo on the CPU.
    pub backend: Option<Backend>,
    /// How long to wait for the other ranks.
    pub timeout: Duration,
    /// Where this came from.
    pub source: LaunchSource,
}

impl DistSetup {
    /// One process.
    pub fn single() -> Self {
        DistSetup {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            local_world_size: 1,
            master_addr: "127.0.0.1".into(),
            master_port: 29500,
            backend: None,
            timeout: DEFAULT_TIMEOUT,
            source: LaunchSource::Single,
        }
    }

    /// From this process's environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// From the variables `get` returns (the environment, or a test's map).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let setup = if get("WORLD_SIZE").is_some() {
            torchrun(&get)?
        } else if get("SLURM_STEP_ID").is_some() && get("SLURM_NTASKS").is_some() {
            slurm(&get)?
        } else {
            return Ok(Self::single());
        };
        setup.check()?;
        Ok(setup)
    }

    /// True when more than one rank takes part.
    pub fn is_distributed(&self) -> bool {
        self.world_size > 1
    }

    fn check(&self) -> Result<()> {
        if self.world_size == 0 {
            return Err(bad("the world size is 0".into()));
        }
        if self.rank >= self.world_size {
            return Err(bad(format!(
                "rank {} is not below the world size {}",
                self.rank, self.world_size
            )));
        }
        if self.local_rank >= self.local_world_size.max(1) {
            return Err(bad(format!(
                "local rank {} is not below the local world size {}",
                self.local_rank, self.local_world_size
            )));
        }
        Ok(())
    }
}

fn bad(msg: String) -> TrainError {
    TrainError::DistSetup(msg)
}

/// A required variable, parsed.
fn number<T: std::str::FromStr>(get: &impl Fn(&str) -> Option<String>, name: &str) -> Result<T> {
    let value = get(name).ok_or_else(|| bad(format!("{name} is not set")))?;
    value
        .trim()
        .parse()
        .map_err(|_| bad(format!("{name}={value:?} is not a valid number")))
}

/// An optional variable, parsed, or `default`.
fn number_or<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T> {
    match get(name) {
        None => Ok(default),
        Some(_) => number(get, name),
    }
}

fn torchrun(get: &impl Fn(&str) -> Option<String>) -> Result<DistSetup> {
    let world_size: usize = number(get, "WORLD_SIZE")?;
    if world_size <= 1 {
        return Ok(DistSetup::single());
    }
    let rank: usize = number(get, "RANK")?;
    let master_addr = get("MASTER_ADDR")
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| bad("MASTER_ADDR is not set (WORLD_SIZE is)".into()))?;
    Ok(DistSetup {
        rank,
        world_size,
        local_rank: number_or(get, "LOCAL_RANK", rank)?,
        local_world_size: number_or(get, "LOCAL_WORLD_SIZE", world_size)?,
        master_addr,
        master_port: number(get, "MASTER_PORT")?,
        backend: None,
        timeout: DEFAULT_TIMEOUT,
        source: LaunchSource::Torchrun,
    })
}

fn slurm(get: &impl Fn(&str) -> Option<String>) -> Result<DistSetup> {
    let world_size: usize = number(get, "SLURM_NTASKS")?;
    if world_size <= 1 {
        return Ok(DistSetup::single());
    }
    let rank: usize = number(get, "SLURM_PROCID")?;
    let master_addr = match get("MASTER_ADDR") {
        Some(a) => a,
        None => {
            let list = get("SLURM_STEP_NODELIST")
                .or_else(|| get("SLURM_JOB_NODELIST"))
                .ok_or_else(|| bad("neither MASTER_ADDR nor SLURM_JOB_NODELIST is set".into()))?;
            first_host(&list)
                .ok_or_else(|| bad(format!("cannot read a host from the node list {list:?}")))?
        }
    };
    let master_port = match get("MASTER_PORT") {
        Some(_) => number(get, "MASTER_PORT")?,
        None => {
            let job: u64 = number(get, "SLURM_JOB_ID")?;
            // A port per job, so that two jobs sharing a node do not collide.
            15000 + (job % 20000) as u16
        }
    };
    let local_world_size = get("SLURM_STEP_TASKS_PER_NODE")
        .or_else(|| get("SLURM_TASKS_PER_NODE"))
        .and_then(|t| first_count(&t))
        .unwrap_or(1);
    Ok(DistSetup {
        rank,
        world_size,
        local_rank: number_or(get, "SLURM_LOCALID", 0)?,
        local_world_size,
        master_addr,
        master_port,
        backend: None,
        timeout: DEFAULT_TIMEOUT,
        source: LaunchSource::Slurm,
    })
}

/// The first host of a Slurm host list: `node[07-09,12],login1` → `node07`,
/// `rack[1-2]-gpu[3,5]` → `rack1-gpu3`.
pub fn first_host(list: &str) -> Option<String> {
    // The first entry: up to the first comma outside brackets.
    let mut depth = 0i32;
    let end = list
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            c == ',' && depth == 0
        })
        .map_or(list.len(), |(i, _)| i);
    let entry = list[..end].trim();
    // Each bracket group becomes its first value.
    let mut host = String::new();
    let mut rest = entry;
    while let Some(open) = rest.find('[') {
        host.push_str(&rest[..open]);
        let close = rest[open..].find(']')? + open;
        let group = &rest[open + 1..close];
        let first = group.split(',').next()?.split('-').next()?.trim();
        host.push_str(first);
        rest = &rest[close + 1..];
    }
    host.push_str(rest);
    (!host.is_empty()).then_some(host)
}

/// The first task count of `SLURM_STEP_TASKS_PER_NODE` (`4(x2),3` → 4).
fn first_count(spec: &str) -> Option<usize> {
    spec.split(',')
        .next()?
        .split('(')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<DistSetup> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DistSetup::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn nothing_set_is_one_process() {
        let s = from(&[]).unwrap();
        assert_eq!(s.source, LaunchSource::Single);
        assert!(!s.is_distributed());
        // a batch script's shell: Slurm variables but no job step
        let s = from(&[("SLURM_NTASKS", "8"), ("SLURM_PROCID", "0")]).unwrap();
        assert_eq!(s.source, LaunchSource::Single);
    }

    #[test]
    fn torchrun_variables() {
        let s = from(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29400"),
        ])
        .unwrap();
        assert_eq!(
            (s.rank, s.world_size, s.local_rank, s.local_world_size),
            (3, 4, 1, 2)
        );
        assert_eq!((s.master_addr.as_str(), s.master_port), ("10.0.0.1", 29400));
        assert_eq!(s.source, LaunchSource::Torchrun);
        assert_eq!(
            from(&[("WORLD_SIZE", "1")]).unwrap().source,
            LaunchSource::Single
        );
    }

    #[test]
    fn bad_torchrun_variables_name_the_variable() {
        let msg = |v: &[(&str, &str)]| from(v).unwrap_err().to_string();
        assert!(
            msg(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "1")])
                .contains("MASTER_ADDR")
        );
        assert!(msg(&[("WORLD_SIZE", "two")]).contains("WORLD_SIZE=\"two\""));
        let m = msg(&[
            ("WORLD_SIZE", "2"),
            ("RANK", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1"),
        ]);
        assert!(m.contains("rank 2 is not below the world size 2"), "{m}");
        let m = msg(&[
            ("WORLD_SIZE", "2"),
            ("RANK", "0"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "70000"),
        ]);
        assert!(m.contains("MASTER_PORT"), "{m}");
    }

    #[test]
    fn slurm_variables_inside_a_job_step() {
        let s = from(&[
            ("SLURM_STEP_ID", "0"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_PROCID", "5"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_STEP_TASKS_PER_NODE", "4(x2)"),
            ("SLURM_JOB_NODELIST", "gpu[07-08]"),
            ("SLURM_JOB_ID", "123456"),
        ])
        .unwrap();
        assert_eq!(
            (s.rank, s.world_size, s.local_rank, s.local_world_size),
            (5, 8, 1, 4)
        );
        assert_eq!(s.master_addr, "gpu07");
        assert_eq!(s.master_port, 15000 + (123456 % 20000) as u16);
        assert_eq!(s.source, LaunchSource::Slurm);
    }

    #[test]
    fn first_host_of_slurm_node_lists() {
        assert_eq!(
            first_host("node[07-09,12],login1").as_deref(),
            Some("node07")
        );
        assert_eq!(first_host("login1,node[1-2]").as_deref(), Some("login1"));
        assert_eq!(
            first_host("rack[1-2]-gpu[3,5]").as_deref(),
            Some("rack1-gpu3")
        );
        assert_eq!(first_host("single").as_deref(), Some("single"));
        assert_eq!(first_host("broken[1-2").as_deref(), None);
        assert_eq!(first_host("").as_deref(), None);
    }
}
