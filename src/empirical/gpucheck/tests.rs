//! Tests of the GPU check, run on the CPU: the error measure, comparisons of state maps, the
//! stock CPU path against the fast kernels, a failing tolerance, checkpoint moves and the speed
//! report.

use std::collections::BTreeMap;

use super::agree::train_step;
use super::compare::{Comparisons, Gating};
use super::*;
use crate::empirical::model::{Kernels, Model, ModelConfig};
use crate::empirical::optim::Sgd;

#[test]
fn rel_err_is_normwise_and_catches_bad_values() {
    assert_eq!(rel_err(&[1.0, 2.0], &[1.0, 2.0]), (0.0, 0.0));
    assert_eq!(rel_err(&[0.0, 0.0], &[0.0, 0.0]), (0.0, 0.0));
    let (r, m) = rel_err(&[3.0, 4.0], &[3.0, 4.5]);
    assert!(
        (r - 0.1).abs() < 1e-12 && (m - 0.5).abs() < 1e-12,
        "{r} {m}"
    );
    assert_eq!(rel_err(&[0.0], &[1.0]).0, f64::INFINITY);
    assert!(rel_err(&[1.0], &[f32::NAN]).0.is_nan());
    assert!(rel_err(&[1.0], &[1.0, 2.0]).0.is_nan());
    // NaN never passes a tolerance.
    let mut c = Comparisons(Vec::new());
    c.add("x", &[1.0], &[f32::NAN], 1.0);
    c.add("y", &[1.0], &[1.0], 0.0);
    assert!(!c.0[0].ok && c.0[1].ok);
    // States: per tensor and all together; a missing tensor fails the whole.
    let r: BTreeMap<String, Vec<f32>> =
        [("a".to_string(), vec![3.0]), ("b".to_string(), vec![4.0])].into();
    let mut o = r.clone();
    o.insert("a".to_string(), vec![3.5]);
    let mut c = Comparisons(Vec::new());
    c.add_states("s", &r, &o, 0.15, Gating::All);
    assert_eq!(c.0.len(), 3);
    assert!(!c.0[0].ok && !c.0[0].gated && c.0[1].ok);
    assert!(c.0[2].gated && c.0[2].ok && (c.0[2].rel_err - 0.1).abs() < 1e-12);
    o.remove("b");
    c.add_states("t", &r, &o, 1.0, Gating::Each);
    assert!(!c.0[5].ok && c.0[5].what == "t-all (2 tensors)");
}

/// The CPU half of the GPU check, in the configuration the GPU runs (ResNet-20, batch 32):
/// candle's stock operations against the fast kernels, through every comparison and both
/// checkpoint moves. (On ResNet-8 at batch 4 the two already differ by 1.6e-3 on the
/// whole gradient: tiny batches make BatchNorm's backward ill-conditioned.)
#[test]
fn stock_cpu_agrees_with_the_fast_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let args = AgreeArgs {
        arch: Arch::ResNet20,
        batch: 32,
        tolerance: 1e-3,
        json: None,
    };
    let r = agree(&Device::Cpu, &args, dir.path()).unwrap();
    assert!(r.pass, "{}", r.summary());
    let n_params = Model::new(
        ModelConfig::standard(Arch::ResNet20),
        CLASSES,
        0,
        &Device::Cpu,
    )
    .unwrap()
    .trainable_params()
    .len();
    let count = |k: &str| {
        r.comparisons
            .iter()
            .filter(|c| c.what.split(' ').next() == Some(k))
            .count()
    };
    assert_eq!(count("grad"), n_params);
    assert_eq!(count("resumed-on-cpu-grad"), n_params);
    assert_eq!(count("resumed-on-dev-grad"), n_params);
    assert_eq!(count("ckpt-dev-to-cpu-momentum"), n_params);
    assert!(
        count("ckpt-cpu-to-dev") > n_params,
        "running statistics too"
    );
    for k in [
        "grad-all",
        "after-step-all",
        "momentum-all",
        "ckpt-dev-to-cpu-all",
    ] {
        assert_eq!(count(k), 1, "{k}");
    }
    // The two paths are different code: not every error is exactly zero.
    assert!(r.comparisons.iter().any(|c| c.rel_err > 0.0));
    // Checkpoint moves are exact.
    assert!(r
        .comparisons
        .iter()
        .filter(|c| c.what.starts_with("ckpt"))
        .all(|c| c.rel_err == 0.0));
    assert_eq!(r.device, "cpu");
    assert!(
        r.summary().contains("| grad-all (gated, 1e-3) | 1 |"),
        "{}",
        r.summary()
    );
}

#[test]
fn a_zero_tolerance_fails_and_names_the_quantity() {
    let dir = tempfile::tempdir().unwrap();
    let args = AgreeArgs {
        arch: Arch::ResNet8,
        batch: 2,
        tolerance: 0.0,
        json: None,
    };
    let r = agree(&Device::Cpu, &args, dir.path()).unwrap();
    assert!(!r.pass);
    let worst = r.worst().unwrap();
    assert!(!worst.ok && worst.rel_err > 0.0);
    assert!(r.summary().contains(&format!("FAILED {}", worst.what)));
    let e = run_cli(
        &Device::Cpu,
        &GpuCheckArgs {
            command: GpuCheckCommand::Agree(args),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("FAILED"), "{e}");
}

#[test]
fn moving_a_checkpoint_restores_every_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModelConfig {
        arch: Arch::ResNet8,
        width: 4,
    };
    let m = Model::new_with(cfg, 3, 5, &Device::Cpu, Kernels::Fast).unwrap();
    let mut sgd = Sgd::new(m.trainable_params(), sgd_config()).unwrap();
    let (x, _) = batch(2).unwrap();
    train_step(&m, &mut sgd, &x, &[0, 2]).unwrap();
    let (back, back_sgd) = move_checkpoint(
        &m,
        &sgd,
        &dir.path().join("c.ckpt"),
        &Device::Cpu,
        Kernels::Stock,
    )
    .unwrap();
    assert_eq!(back.state_vecs().unwrap(), m.state_vecs().unwrap());
    assert_eq!(back_sgd.state().unwrap(), sgd.state().unwrap());
    assert_eq!(back.backbone().kernels(), Kernels::Stock);
}

#[test]
fn speed_reports_every_configuration() {
    let args = SpeedArgs {
        arch: vec![Arch::ResNet8],
        batch: vec![2, 4],
        steps: 1,
        warmup: 0,
        json: None,
    };
    let mut lines = Vec::new();
    let r = speed(&Device::Cpu, &args, &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!(r.results.len(), 2);
    assert_eq!(lines, ["resnet8 batch 2", "resnet8 batch 4"]);
    for (res, b) in r.results.iter().zip([2, 4]) {
        assert_eq!(res.batch, b);
        assert!(res.step_s > 0.0 && res.step_s >= res.forward_backward_s);
        assert!((res.images_per_s - b as f64 / res.step_s).abs() < 1e-9);
    }
    assert!(r.table().contains("| resnet8 | 4 |"));
    let bad = SpeedArgs {
        batch: vec![1],
        ..args
    };
    assert!(speed(&Device::Cpu, &bad, &mut |_| {}).is_err());
}
