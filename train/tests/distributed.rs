//! Data-parallel steps on real c10d Gloo groups over 127.0.0.1: each rank is a thread with its
//! own group and trainer (the process-level tests, through `flipstream train --nproc`, are in the
//! CLI tests). Two ranks must take the steps one process takes on the whole batch: the same
//! losses, accuracy and gradient norms within float tolerance, identical weights on every rank.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::time::{Duration, Instant};

use common::{colour_batch, micro_run, micro_run_mae};
use flipstream_train::dist::{Backend, DistSetup, LaunchSource, World};
use flipstream_train::{RunConfig, StepMetrics, TrainError, TrainStep};
use tch::{Device, Tensor};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn setup(rank: usize, world_size: usize, port: u16, timeout: Duration) -> DistSetup {
    DistSetup {
        rank,
        world_size,
        local_rank: rank,
        local_world_size: world_size,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        backend: Some(Backend::Gloo),
        timeout,
        source: LaunchSource::Torchrun,
    }
}

/// Runs `f` on `n` ranks (threads), each joined to one Gloo group; the results in rank order.
fn on_ranks<T: Send>(n: usize, f: impl Fn(World) -> T + Sync) -> Vec<T> {
    let port = free_port();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|rank| {
                let f = &f;
                s.spawn(move || {
                    let world =
                        World::connect(&setup(rank, n, port, Duration::from_secs(60)), Device::Cpu)
                            .unwrap();
                    f(world)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The rows of an 8-sample batch that rank `r` of 2 holds when the loader has 4 lanes (lane
/// chunks of 2, lanes `l ≡ r mod 2`): not a contiguous half, so the masks must follow the rows.
fn lane_rows(rank: usize) -> Vec<usize> {
    flipstream_loader::Rank {
        rank,
        world_size: 2,
    }
    .global_rows(8, 4)
}

fn take_rows(t: &Tensor, rows: &[usize]) -> Tensor {
    let idx: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    t.index_select(0, &Tensor::from_slice(&idx))
}

/// `steps` steps of one process on whole batches.
fn single(run: &RunConfig, steps: u64) -> (Vec<StepMetrics>, TrainStep) {
    let mut trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    let metrics = (0..steps)
        .map(|s| {
            let (images, tokens) = colour_batch(&run.model, s);
            trainer.step(&images, &tokens).unwrap()
        })
        .collect();
    (metrics, trainer)
}

/// `steps` steps of one rank of 2 on its lane rows of the same batches.
fn rank_steps(run: &RunConfig, world: World, steps: u64) -> (Vec<StepMetrics>, TrainStep) {
    let rows = lane_rows(world.rank());
    let mut trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
    trainer.join(world).unwrap();
    let metrics = (0..steps)
        .map(|s| {
            let (images, tokens) = colour_batch(&run.model, s);
            trainer
                .step_rows(
                    &take_rows(&images, &rows),
                    &take_rows(&tokens, &rows),
                    Some(&rows),
                )
                .unwrap()
        })
        .collect();
    (metrics, trainer)
}

fn params(trainer: &TrainStep) -> Vec<Tensor> {
    trainer
        .model()
        .params()
        .tensors()
        .into_iter()
        .map(|t| t.detach().copy())
        .collect()
}

fn max_difference(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

/// Two ranks with `run_ranks` against one process with `run_single` over `steps` steps.
fn compare(run_single: &RunConfig, run_ranks: &RunConfig, steps: u64) {
    let (want, single_trainer) = single(run_single, steps);
    let ranks = on_ranks(2, |w| rank_steps(run_ranks, w, steps));
    for (rank, (got, _)) in ranks.iter().enumerate() {
        for (a, b) in want.iter().zip(got) {
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-4 * x.abs().max(1.0);
            assert!(
                close(a.loss, b.loss) && close(a.grad_norm, b.grad_norm),
                "rank {rank} step {}: loss {} vs {}, grad norm {} vs {}",
                a.step,
                a.loss,
                b.loss,
                a.grad_norm,
                b.grad_norm
            );
            assert!(
                (a.accuracy - b.accuracy).abs() < 1e-6,
                "accuracy at step {}",
                a.step
            );
            for (name, value) in &a.terms {
                assert!(
                    close(*value, b.terms[name]),
                    "{name} at step {}: {value} vs {}",
                    a.step,
                    b.terms[name]
                );
            }
        }
    }
    let (p0, p1) = (params(&ranks[0].1), params(&ranks[1].1));
    assert_eq!(max_difference(&p0, &p1), 0.0, "the ranks' weights differ");
    let drift = max_difference(&p0, &params(&single_trainer));
    assert!(
        drift < 1e-3,
        "the ranks drifted from one process by {drift}"
    );
}

#[test]
fn two_ranks_take_the_steps_of_one_process() {
    let run = micro_run();
    assert!(run.train.mask_ratio > 0.0, "the test needs masks");
    compare(&run, &run, 20);
}

#[test]
fn two_ranks_with_accumulation_take_the_steps_of_one_process() {
    let run = micro_run();
    let mut accumulated = run.clone();
    accumulated.train.accum_steps = 2;
    compare(&run, &accumulated, 20);
}

#[test]
fn local_terms_average_over_the_global_batch() {
    // MAE+CLIP: a per-sample reconstruction term beside the contrastive one.
    let run = micro_run_mae();
    compare(&run, &run, 8);
}

#[test]
fn ranks_start_from_rank_0s_weights() {
    let sums = on_ranks(2, |w| {
        let mut run = micro_run();
        run.train.seed = 10 + w.rank() as u64; // different initial weights
        let mut trainer = TrainStep::new(run, Device::Cpu).unwrap();
        trainer.join(w).unwrap();
        params(&trainer)
    });
    assert_eq!(max_difference(&sums[0], &sums[1]), 0.0);
}

#[test]
fn collectives_sum_gather_and_agree() {
    let out = on_ranks(3, |w| {
        let r = w.rank() as f64;
        let sums = w.sum_values(&[r, 1.0]).unwrap();
        let gathered = w
            .all_gather(&Tensor::from_slice(&[r as f32, r as f32 + 0.5]).view([1, 2]))
            .unwrap();
        let same = w.check_same("settings", &[7; 32]);
        let mut mine = [0u8; 32];
        mine[0] = u8::from(w.rank() == 2);
        let differ = w.check_same("settings", &mine).unwrap_err().to_string();
        w.barrier().unwrap();
        (
            sums,
            Vec::<f32>::try_from(gathered.view([-1])).unwrap(),
            same.is_ok(),
            differ,
        )
    });
    for (rank, (sums, gathered, same, differ)) in out.into_iter().enumerate() {
        assert_eq!(sums, vec![3.0, 3.0]);
        assert_eq!(gathered, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        assert!(same);
        assert!(
            differ.contains("1 rank(s) have other settings than rank 0"),
            "{differ}"
        );
        assert_eq!(
            differ.contains("this one among them"),
            rank == 2,
            "{differ}"
        );
    }
}

#[test]
fn a_lost_rank_fails_the_others_instead_of_hanging() {
    let run = micro_run();
    let started = Instant::now();
    let results = on_ranks(2, |w| {
        let rank = w.rank();
        let rows = lane_rows(rank);
        let mut trainer = TrainStep::new(run.clone(), Device::Cpu).unwrap();
        trainer.join(w).unwrap();
        let mut outcome = Ok(());
        for s in 0..3 {
            if rank == 1 && s == 1 {
                // rank 1 dies: its group (and connections) go away
                drop(trainer);
                return outcome;
            }
            let (images, tokens) = colour_batch(&run.model, s);
            let m = trainer.step_rows(
                &take_rows(&images, &rows),
                &take_rows(&tokens, &rows),
                Some(&rows),
            );
            if let Err(e) = m {
                outcome = Err(e);
                break;
            }
        }
        outcome
    });
    let err = results[0].as_ref().unwrap_err();
    assert!(matches!(err, TrainError::Distributed { .. }), "{err}");
    assert!(!err.is_usage());
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_unreachable_rendezvous_is_a_setup_error_within_the_timeout() {
    let port = free_port(); // nobody serves it
    let started = Instant::now();
    let err = World::connect(&setup(1, 2, port, Duration::from_secs(3)), Device::Cpu).unwrap_err();
    assert!(matches!(err, TrainError::DistSetup(_)), "{err}");
    assert!(err.is_usage());
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("MASTER_ADDR"),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn nccl_on_the_cpu_is_refused() {
    let mut s = setup(0, 2, free_port(), Duration::from_secs(1));
    s.backend = Some(Backend::Nccl);
    let err = World::connect(&s, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("nccl needs a CUDA device"), "{err}");
}
