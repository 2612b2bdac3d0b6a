//! Proves the libtorch toolchain end to end: a tiny MLP learns XOR on the CPU with autograd and
//! AdamW. If this fails, libtorch is missing, mislinked, or the wrong version.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn tiny_mlp_forward_backward_learns_xor() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let net = nn::seq()
        .add(nn::linear(&root / "l1", 2, 16, Default::default()))
        .add_fn(|x| x.tanh())
        .add(nn::linear(&root / "l2", 16, 1, Default::default()));
    let x = Tensor::from_slice(&[0f32, 0., 0., 1., 1., 0., 1., 1.]).view([4, 2]);
    let y = Tensor::from_slice(&[0f32, 1., 1., 0.]).view([4, 1]);
    let mut opt = nn::AdamW::default().build(&vs, 0.05).unwrap();

    let first = net.forward(&x).binary_cross_entropy_with_logits::<Tensor>(
        &y,
        None,
        None,
        tch::Reduction::Mean,
    );
    let first = first.double_value(&[]);
    let mut last = first;
    for _ in 0..300 {
        let loss = net.forward(&x).binary_cross_entropy_with_logits::<Tensor>(
            &y,
            None,
            None,
            tch::Reduction::Mean,
        );
        opt.backward_step(&loss);
        last = loss.double_value(&[]);
    }
    assert!(
        last < first * 0.1,
        "loss {first} -> {last}: autograd or optimizer broken"
    );
    let pred = net.forward(&x).sigmoid().gt(0.5).to_kind(Kind::Float);
    assert_eq!(
        Vec::<f32>::try_from(pred.view([-1])).unwrap(),
        vec![0., 1., 1., 0.]
    );
}
