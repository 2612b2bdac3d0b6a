//! Which units this process runs: `--worker-index/--num-workers`, or the batch scheduler's
//! environment.
//!
//! Units are sorted by id and dealt round-robin: worker `i` of `n` runs units `i, i+n, i+2n, …`.
//! Every worker writes into the same dataset; readers see the union of committed units, so no
//! final merge step is needed. Sources of the slot, first match wins:
//! 1. `--worker-index` and `--num-workers`;
//! 2. Slurm job arrays: `SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` (default 0) of
//!    `SLURM_ARRAY_TASK_COUNT`;
//! 3. Kubernetes indexed Jobs: `JOB_COMPLETION_INDEX`, with the count from `--num-workers`
//!    (Kubernetes does not export it);
//! 4. otherwise a single worker.

use serde::{Deserialize, Serialize};

/// This process's share of the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSlot {
    /// 0-based index.
    pub index: u32,
    /// Number of workers.
    pub count: u32,
}

impl Default for WorkerSlot {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

fn parse_env(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<u32>, String> {
    match env(name) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={v:?} is not a non-negative integer")),
    }
}

impl WorkerSlot {
    /// Resolves the slot from flags and the environment (`env` looks a variable up; pass
    /// `|k| std::env::var(k).ok()`). The error says what to fix.
    pub fn resolve(
        index: Option<u32>,
        count: Option<u32>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let slot = match (index, count) {
            (Some(index), Some(count)) => Self { index, count },
            (Some(_), None) => return Err("--worker-index needs --num-workers".into()),
            (None, explicit_count) => {
                if let Some(task) = parse_env(env, "SLURM_ARRAY_TASK_ID")? {
                    let min = parse_env(env, "SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                    let array = parse_env(env, "SLURM_ARRAY_TASK_COUNT")?;
                    let count = match (explicit_count, array) {
                        (Some(c), Some(a)) if c != a => {
                            return Err(format!(
                                "this Slurm job array has {a} tasks but --num-workers is {c}: the \
                                 tasks would cover {a} of {c} shares of the inputs; leave out \
                                 --num-workers (the array's size is used) or submit --array with {c} tasks"
                            ));
                        }
                        (Some(c), _) => c,
                        (None, Some(a)) => a,
                        (None, None) => return Err(
                            "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --num-workers"
                                .into(),
                        ),
                    };
                    let index = task.checked_sub(min).ok_or_else(|| {
                        format!(
                            "SLURM_ARRAY_TASK_ID ({task}) is below SLURM_ARRAY_TASK_MIN ({min})"
                        )
                    })?;
                    Self { index, count }
                } else if let Some(index) = parse_env(env, "JOB_COMPLETION_INDEX")? {
                    let count = explicit_count.ok_or(
                        "JOB_COMPLETION_INDEX is set (Kubernetes indexed Job): pass --num-workers with the Job's completions",
                    )?;
                    Self { index, count }
                } else {
                    Self {
                        index: 0,
                        count: explicit_count.unwrap_or(1),
                    }
                }
            }
        };
        if slot.count == 0 {
            return Err("the number of workers must be at least 1".into());
        }
        if slot.index >= slot.count {
            return Err(format!(
                "worker index {} is not below the number of workers {}",
                slot.index, slot.count
            ));
        }
        Ok(slot)
    }

    /// True when the unit at `position` (in sorted unit order) belongs to this worker.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count as usize == self.index as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_win_then_slurm_then_kubernetes() {
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ]);
        assert_eq!(
            WorkerSlot::resolve(Some(2), Some(3), &slurm).unwrap(),
            WorkerSlot { index: 2, count: 3 }
        );
        assert_eq!(
            WorkerSlot::resolve(None, None, &slurm).unwrap(),
            WorkerSlot { index: 4, count: 8 }
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "3")]);
        assert_eq!(
            WorkerSlot::resolve(None, Some(4), &k8s).unwrap(),
            WorkerSlot { index: 3, count: 4 }
        );
        assert!(
            WorkerSlot::resolve(None, None, &k8s)
                .unwrap_err()
                .contains("--num-workers")
        );
        assert_eq!(
            WorkerSlot::resolve(None, None, &env(&[])).unwrap(),
            WorkerSlot::default()
        );
    }

    #[test]
    fn impossible_slots_are_explained() {
        let none = env(&[]);
        assert!(
            WorkerSlot::resolve(Some(3), Some(3), &none)
                .unwrap_err()
                .contains("not below")
        );
        assert!(
            WorkerSlot::resolve(Some(0), Some(0), &none)
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(
            WorkerSlot::resolve(Some(1), None, &none)
                .unwrap_err()
                .contains("--num-workers")
        );
        let array_of_2 = env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ]);
        let e = WorkerSlot::resolve(None, Some(4), &array_of_2).unwrap_err();
        assert!(e.contains("has 2 tasks but --num-workers is 4"), "{e}");
        assert_eq!(
            WorkerSlot::resolve(None, Some(2), &array_of_2).unwrap(),
            WorkerSlot { index: 1, count: 2 }
        );
        let bad = env(&[("SLURM_ARRAY_TASK_ID", "x")]);
        assert!(
            WorkerSlot::resolve(None, None, &bad)
                .unwrap_err()
                .contains("SLURM_ARRAY_TASK_ID")
        );
    }

    #[test]
    fn round_robin_covers_every_unit_once() {
        let n = 3;
        let owners: Vec<u32> = (0..10)
            .map(|p| {
                (0..n)
                    .filter(|&i| WorkerSlot { index: i, count: n }.owns(p))
                    .collect::<Vec<_>>()
            })
            .map(|v| {
                assert_eq!(v.len(), 1);
                v[0]
            })
            .collect();
        assert_eq!(owners, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
    }
}
