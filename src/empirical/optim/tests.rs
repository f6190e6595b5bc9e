//! Tests of the optimizer, the schedule and the loss.

use super::*;
use crate::empirical::model::Param;
use crate::empirical::train_error::TrainError;
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

/// A parameter `p` and gradients equal to `g`: loss = sum(p * g).
fn param(values: &[f32], decay: bool) -> Param {
    let var = Var::from_slice(values, values.len(), &Device::Cpu).unwrap();
    Param {
        name: "p".into(),
        var,
        weight_decay: decay,
    }
}

fn grads_for(p: &Param, g: &[f32]) -> GradStore {
    let g = Tensor::from_slice(g, g.len(), &Device::Cpu).unwrap();
    (p.var.as_tensor() * g)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
}

fn values(p: &Param) -> Vec<f32> {
    p.var.as_tensor().to_vec1::<f32>().unwrap()
}

fn close(a: &[f32], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((f64::from(*x) - y).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

const P0: [f32; 2] = [1.0, -2.0];
const G: [f32; 2] = [0.5, 0.25];

#[test]
fn sgd_momentum_with_weight_decay_by_hand() {
    let p = param(&P0, true);
    let cfg = SgdConfig {
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.01,
    };
    let mut opt = Sgd::new(vec![p.clone()], cfg).unwrap();
    opt.step(&grads_for(&p, &G), 0.1).unwrap();
    // d = g + 0.01 p = [0.51, 0.23]; b = d; p = p - 0.1 d.
    close(&values(&p), &[0.949, -2.023]);
    opt.step(&grads_for(&p, &G), 0.1).unwrap();
    // d = g + 0.01 [0.949, -2.023] = [0.50949, 0.22977]; b = 0.9 [0.51, 0.23] + d
    // = [0.96849, 0.43677]; p = p - 0.1 b.
    close(&values(&p), &[0.852151, -2.066677]);
    assert_eq!(opt.steps(), 2);
    let st = opt.state().unwrap();
    close(&st.momentum["p"], &[0.96849, 0.43677]);
}

#[test]
fn sgd_nesterov_by_hand() {
    let p = param(&P0, true);
    let cfg = SgdConfig {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.0,
    };
    let mut opt = Sgd::new(vec![p.clone()], cfg).unwrap();
    opt.step(&grads_for(&p, &G), 0.1).unwrap();
    // b = g; d = g + 0.9 b = 1.9 g = [0.95, 0.475].
    close(&values(&p), &[0.905, -2.0475]);
    opt.step(&grads_for(&p, &G), 0.1).unwrap();
    // b = 0.9 g + g = 1.9 g; d = g + 0.9 * 1.9 g = 2.71 g = [1.355, 0.6775].
    close(&values(&p), &[0.905 - 0.1355, -2.0475 - 0.06775]);
}

#[test]
fn sgd_decay_only_where_marked_and_plain_sgd() {
    // No momentum: p = p - lr (g + wd p) for decayed parameters, p - lr g for the others.
    let cfg = SgdConfig {
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.1,
    };
    let a = param(&P0, true);
    let mut b = param(&P0, false);
    b.name = "q".into();
    let mut opt = Sgd::new(vec![a.clone(), b.clone()], cfg).unwrap();
    let loss = ((a.var.as_tensor() + b.var.as_tensor()).unwrap()
        * Tensor::new(&G, &Device::Cpu).unwrap())
    .unwrap()
    .sum_all()
    .unwrap();
    opt.step(&loss.backward().unwrap(), 0.5).unwrap();
    // a: d = [0.5 + 0.1, 0.25 - 0.2] = [0.6, 0.05]; a = [1 - 0.3, -2 - 0.025].
    close(&values(&a), &[0.7, -2.025]);
    close(&values(&b), &[0.75, -2.125]);
    assert!(opt.state().unwrap().momentum.is_empty());
}

#[test]
fn sgd_rejects_non_finite_gradients_and_bad_config() {
    let p = param(&P0, true);
    let mut opt = Sgd::new(vec![p.clone()], SgdConfig::default()).unwrap();
    let e = opt.step(&grads_for(&p, &[f32::NAN, 1.0]), 0.1).unwrap_err();
    assert!(
        matches!(e, TrainError::NonFiniteGradient { step: 0, .. }),
        "{e}"
    );
    assert_eq!(values(&p), P0, "a failed step changes nothing");
    assert_eq!(opt.steps(), 0);
    assert!(opt.step(&grads_for(&p, &G), f64::NAN).is_err());
    let bad = SgdConfig {
        momentum: 0.0,
        nesterov: true,
        weight_decay: 0.0,
    };
    assert!(Sgd::new(vec![], bad).is_err());
    assert!(Sgd::new(vec![p.clone(), p.clone()], SgdConfig::default()).is_err());
    let c: SgdConfig = toml::from_str("nesterov = true").unwrap();
    assert_eq!(c.momentum, 0.9);
    assert!(toml::from_str::<SgdConfig>("momentun = 0.9").is_err());
}

/// The update rule as an element loop on the host, in `f32` (the rule of the module doc).
fn reference_step(
    cfg: &SgdConfig,
    w: &mut [f32],
    buf: &mut Option<Vec<f32>>,
    g: &[f32],
    decay: bool,
    lr: f64,
) {
    let (mu, wd, lr) = (cfg.momentum as f32, cfg.weight_decay as f32, lr as f32);
    let mut d = g.to_vec();
    if decay && wd != 0.0 {
        for (d, w) in d.iter_mut().zip(w.iter()) {
            *d += wd * w;
        }
    }
    if mu != 0.0 {
        match buf {
            None => *buf = Some(d.clone()),
            Some(b) => {
                for (b, d) in b.iter_mut().zip(&d) {
                    *b = mu * *b + d;
                }
            }
        }
        let b = buf.as_deref().unwrap_or_default();
        if cfg.nesterov {
            for (d, b) in d.iter_mut().zip(b) {
                *d += mu * b;
            }
        } else {
            d.copy_from_slice(b);
        }
    }
    for (w, d) in w.iter_mut().zip(&d) {
        *w -= lr * d;
    }
}

/// Values spread over many magnitudes and both signs, zeros included, from a fixed stream.
fn spread(n: usize, salt: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let h = (i.wrapping_mul(2654435761) ^ salt.wrapping_mul(40503)).rotate_left(13);
            match h % 7 {
                0 => 0.0,
                1 => -0.0,
                _ => ((h % 2001) as f32 - 1000.0) * 10f32.powi((h % 9) as i32 - 6),
            }
        })
        .collect()
}

#[test]
fn sgd_on_device_matches_the_element_loop_bit_for_bit() {
    let configs = [
        SgdConfig::default(),
        SgdConfig {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
        },
        SgdConfig {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 1e-3,
        },
        SgdConfig {
            momentum: 0.8,
            nesterov: true,
            weight_decay: 0.0,
        },
    ];
    for cfg in configs {
        for decay in [true, false] {
            let n = 257;
            let p = param(&spread(n, 1), decay);
            let mut opt = Sgd::new(vec![p.clone()], cfg).unwrap();
            let (mut w, mut buf) = (spread(n, 1), None);
            for step in 0..6u32 {
                let g = spread(n, 100 + step);
                let lr = 0.1 / f64::from(step + 1);
                let grads = grads_for(&p, &g);
                // The gradient as backward() made it (its sum turns -0 into +0).
                let g = grads.get(&p.var).unwrap().to_vec1::<f32>().unwrap();
                opt.step(&grads, lr).unwrap();
                reference_step(&cfg, &mut w, &mut buf, &g, decay, lr);
                let got: Vec<u32> = values(&p).iter().map(|v| v.to_bits()).collect();
                let want: Vec<u32> = w.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want, "{cfg:?} decay {decay} step {step}");
            }
            let state = opt.state().unwrap();
            match &buf {
                Some(b) => {
                    let got: Vec<u32> = state.momentum["p"].iter().map(|v| v.to_bits()).collect();
                    let want: Vec<u32> = b.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(got, want, "{cfg:?} momentum buffer");
                }
                None => assert!(state.momentum.is_empty()),
            }
        }
    }
}

#[test]
fn sgd_infinite_gradient_in_a_later_parameter_changes_nothing() {
    let a = param(&P0, true);
    let mut b = param(&P0, true);
    b.name = "q".into();
    let mut opt = Sgd::new(vec![a.clone(), b.clone()], SgdConfig::default()).unwrap();
    let loss = ((a.var.as_tensor() * Tensor::new(&G, &Device::Cpu).unwrap()).unwrap()
        + (b.var.as_tensor() * Tensor::new(&[1.0f32, f32::INFINITY], &Device::Cpu).unwrap())
            .unwrap())
    .unwrap()
    .sum_all()
    .unwrap();
    let e = opt.step(&loss.backward().unwrap(), 0.1).unwrap_err();
    match e {
        TrainError::NonFiniteGradient { param, value, .. } => {
            assert_eq!(param, "q");
            assert_eq!(value, f32::INFINITY);
        }
        other => panic!("{other}"),
    }
    assert_eq!(values(&a), P0);
    assert_eq!(values(&b), P0);
    assert!(opt.state().unwrap().momentum.is_empty());
}

#[test]
fn sgd_state_round_trip() {
    let cfg = SgdConfig::default();
    let p = param(&P0, true);
    let mut a = Sgd::new(vec![p.clone()], cfg).unwrap();
    a.step(&grads_for(&p, &G), 0.1).unwrap();
    let state = a.state().unwrap();
    let json = serde_json::to_string(&state).unwrap();
    let back: SgdState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
    // Continue from the state with a copy of the parameter: same result as continuing `a`.
    let q = param(&values(&p), true);
    let mut b = Sgd::new(vec![q.clone()], cfg).unwrap();
    b.load_state(back).unwrap();
    a.step(&grads_for(&p, &G), 0.1).unwrap();
    b.step(&grads_for(&q, &G), 0.1).unwrap();
    assert_eq!(values(&p), values(&q));
    assert_eq!(a.state().unwrap(), b.state().unwrap());
    let mut wrong = SgdState::default();
    wrong.momentum.insert("p".into(), vec![0.0; 3]);
    assert!(b.load_state(wrong).is_err());
    let mut stray = SgdState::default();
    stray.momentum.insert("zz".into(), vec![0.0; 2]);
    assert!(b.load_state(stray).is_err());
}

#[test]
fn cosine_schedule_by_hand() {
    let kind = LrSchedule::Cosine {
        lr: 0.1,
        warmup_epochs: 1,
    };
    // 10 epochs of 10 steps: warm-up over steps 0..10, cosine over the remaining 90.
    let s = Schedule::new(kind, 10, 10).unwrap();
    let at = |t| s.lr(t);
    assert!((at(0) - 0.01).abs() < 1e-12);
    assert!((at(4) - 0.05).abs() < 1e-12);
    assert!((at(9) - 0.1).abs() < 1e-12);
    assert!((at(10) - 0.1).abs() < 1e-12);
    assert!((at(55) - 0.05).abs() < 1e-12); // halfway through the cosine
                                            // 30 of 90 steps: (1 + cos(pi / 3)) / 2 = 0.75.
    assert!((at(40) - 0.075).abs() < 1e-12);
    assert!(at(99) > 0.0 && at(99) < 1e-4);
    assert_eq!(at(100), 0.0);
    assert_eq!(at(1000), 0.0);
    let no_warmup = Schedule::new(
        LrSchedule::Cosine {
            lr: 0.2,
            warmup_epochs: 0,
        },
        2,
        5,
    )
    .unwrap();
    assert!((no_warmup.lr(0) - 0.2).abs() < 1e-12);
    assert!((no_warmup.lr(5) - 0.1).abs() < 1e-12);
}

#[test]
fn step_and_constant_schedules_by_hand() {
    let kind = LrSchedule::Step {
        lr: 0.1,
        gamma: 0.2,
        milestones: vec![3, 6],
        warmup_epochs: 1,
    };
    let s = Schedule::new(kind, 8, 4).unwrap();
    assert!((s.lr(0) - 0.025).abs() < 1e-12);
    assert!((s.lr(3) - 0.1).abs() < 1e-12);
    assert!((s.lr(4) - 0.1).abs() < 1e-12);
    assert!((s.lr(11) - 0.1).abs() < 1e-12); // epoch 2
    assert!((s.lr(12) - 0.02).abs() < 1e-12); // epoch 3
    assert!((s.lr(23) - 0.02).abs() < 1e-12);
    assert!((s.lr(24) - 0.004).abs() < 1e-12); // epoch 6
    assert!((s.lr(1000) - 0.004).abs() < 1e-12);
    let c = Schedule::new(
        LrSchedule::Constant {
            lr: 0.3,
            warmup_epochs: 0,
        },
        1,
        1,
    )
    .unwrap();
    assert_eq!(c.lr(0), 0.3);
    assert_eq!(c.lr(77), 0.3);
}

#[test]
fn schedule_config_and_validation() {
    let k: LrSchedule = toml::from_str("kind = \"cosine\"\nlr = 0.1\nwarmup_epochs = 5").unwrap();
    assert_eq!(
        k,
        LrSchedule::Cosine {
            lr: 0.1,
            warmup_epochs: 5
        }
    );
    let k: LrSchedule =
        toml::from_str("kind = \"step\"\nlr = 0.1\ngamma = 0.1\nmilestones = [100, 150]").unwrap();
    assert!(matches!(
        k,
        LrSchedule::Step {
            warmup_epochs: 0,
            ..
        }
    ));
    assert!(toml::from_str::<LrSchedule>("kind = \"cosine\"\nlr = 0.1\nfoo = 1").is_err());
    assert!(toml::from_str::<LrSchedule>("kind = \"linear\"\nlr = 0.1").is_err());
    let cos = |lr, w| LrSchedule::Cosine {
        lr,
        warmup_epochs: w,
    };
    assert!(Schedule::new(cos(0.1, 5), 5, 10).is_err());
    assert!(Schedule::new(cos(0.0, 0), 5, 10).is_err());
    assert!(Schedule::new(cos(0.1, 0), 0, 10).is_err());
    assert!(Schedule::new(cos(0.1, 0), 5, 0).is_err());
    let step = |gamma, milestones| LrSchedule::Step {
        lr: 0.1,
        gamma,
        milestones,
        warmup_epochs: 0,
    };
    assert!(Schedule::new(step(0.1, vec![5, 3]), 10, 1).is_err());
    assert!(Schedule::new(step(1.5, vec![3]), 10, 1).is_err());
}

#[test]
fn cross_entropy_by_hand() {
    let logits = Tensor::new(&[[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
    // Row 1: log-sum-exp = 3 + ln(1 + e^-1 + e^-2); log p = z - lse.
    let lse = 3.0 + (1.0 + (-1.0f64).exp() + (-2.0f64).exp()).ln();
    let nll0 = lse - 1.0;
    let mean_nll0 = ((lse - 1.0) + (lse - 2.0) + (lse - 3.0)) / 3.0;
    let ln3 = 3.0f64.ln();
    // No smoothing: plain NLL, also what candle's own loss gives.
    let plain = cross_entropy(&logits, &[0, 2], 0.0).unwrap();
    let plain = f64::from(plain.to_scalar::<f32>().unwrap());
    assert!((plain - (nll0 + ln3) / 2.0).abs() < 1e-6, "{plain}");
    let y = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
    let candle = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
    assert!((f64::from(candle.to_scalar::<f32>().unwrap()) - plain).abs() < 1e-6);
    // eps = 0.1: (1 - eps) nll + eps * mean_k(-log p_k); row 2 is uniform, so ln 3.
    let smoothed = cross_entropy(&logits, &[0, 2], 0.1).unwrap();
    let want = ((0.9 * nll0 + 0.1 * mean_nll0) + ln3) / 2.0;
    assert!((f64::from(smoothed.to_scalar::<f32>().unwrap()) - want).abs() < 1e-6);
    assert!((want - 1.703_109_1).abs() < 1e-6); // = (2.3076059 + 1.0986123) / 2
    assert!(cross_entropy(&logits, &[0, 3], 0.0).is_err());
    assert!(cross_entropy(&logits, &[0], 0.0).is_err());
    assert!(cross_entropy(&logits, &[0, 1], 1.0).is_err());
}

#[test]
fn cross_entropy_gradient_is_softmax_minus_target() {
    let z = Var::new(&[[1.0f32, 2.0, 3.0]], &Device::Cpu).unwrap();
    let loss = cross_entropy(z.as_tensor(), &[0], 0.3).unwrap();
    let g = loss.backward().unwrap();
    let g = g.get(&z).unwrap().to_vec2::<f32>().unwrap();
    let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).collect();
    let s: f64 = e.iter().sum();
    let q = [0.7 + 0.1, 0.1, 0.1];
    for k in 0..3 {
        assert!((f64::from(g[0][k]) - (e[k] / s - q[k])).abs() < 1e-6);
    }
}
