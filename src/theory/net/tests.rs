//! Tests of the network: analytic gradients against central finite differences, the vectorised
//! activations against `Activation::eval`, the smoothed ReLU's continuity, and a step that is
//! bit-identical on one or two threads.

use super::*;
use rand::SeedableRng;

/// A small random net and batch whose pre-activations all stay at least 0.02 away from the
/// activation's kinks (0, and the threshold of the smoothed ReLU), so that central finite
/// differences with a step of 1e-3 never cross one.
fn net(act: Activation, linear: bool) -> (Net, Vec<f32>, Vec<usize>) {
    let (classes, m, d, p, batch) = (3, 2, 7, 3, 3);
    for seed in 0..1000u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut net = Net::new(classes, m, d, p, 0.5, act, &mut rng);
        if linear {
            let mut a = Array2::<f32>::zeros((2, classes * m));
            for v in a.iter_mut() {
                *v = rng.sample::<f32, _>(StandardNormal) * 0.5;
            }
            net.head = Head::Linear {
                a,
                c: vec![0.1, -0.2],
            };
        }
        let x: Vec<f32> = (0..batch * p * d)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect();
        let mut z = Vec::new();
        net.preact(&x, &mut z);
        let mut bias = Vec::new();
        net.biases(&mut bias);
        let kinks: Vec<f32> = match act {
            Activation::Smoothed { t, .. } => vec![0.0, t],
            _ => vec![0.0],
        };
        let far = z.chunks(classes * m).all(|row| {
            row.iter()
                .zip(&bias)
                .all(|(v, b)| kinks.iter().all(|k| (v + b - k).abs() > 0.02))
        });
        if far {
            let labels = (0..batch).map(|i| i % net.head.classes()).collect();
            return (net, x, labels);
        }
    }
    panic!("no seed gives pre-activations away from the kinks");
}

fn loss(net: &Net, x: &[f32], labels: &[usize]) -> f64 {
    let f = net.forward(x);
    let mut total = 0.0;
    for (b, &y) in labels.iter().enumerate() {
        let row: Vec<f64> = f.logits.row(b).iter().map(|&v| v as f64).collect();
        let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = mx + row.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
        total += lse - row[y];
    }
    total / labels.len() as f64
}

/// Central finite differences in f32 against the analytic gradient, for every activation
/// and both heads. Tolerances allow for f32 rounding of the differences.
#[test]
fn analytic_gradients_match_finite_differences() {
    let acts = [
        Activation::Relu,
        Activation::ThresholdRelu { scale: 0.0 },
        Activation::Smoothed { q: 3, t: 0.8 },
        Activation::Smoothed { q: 2, t: 1.5 },
    ];
    for act in acts {
        for linear in [false, true] {
            let (net, x, labels) = net(act, linear);
            let (l0, dw, dhead) = net.loss_and_grad(&x, &labels);
            assert!((l0 - loss(&net, &x, &labels)).abs() < 1e-5);
            let eps = 1e-3f32;
            let mut worst = 0.0f64;
            for i in 0..net.w.nrows() {
                for j in 0..net.w.ncols() {
                    let mut plus = net.clone();
                    plus.w[[i, j]] += eps;
                    let mut minus = net.clone();
                    minus.w[[i, j]] -= eps;
                    let fd =
                        (loss(&plus, &x, &labels) - loss(&minus, &x, &labels)) / (2.0 * eps as f64);
                    let err = (fd - dw[[i, j]] as f64).abs() / (fd.abs().max(1e-2));
                    assert!(err.is_finite());
                    worst = worst.max(err);
                }
            }
            assert!(
                worst < 2e-2,
                "{act:?} linear={linear}: worst rel err {worst}"
            );
            if let Some((da, dc)) = dhead {
                let Head::Linear { a, .. } = &net.head else {
                    unreachable!()
                };
                for k in 0..a.nrows() {
                    for j in 0..a.ncols() {
                        let mut plus = net.clone();
                        let mut minus = net.clone();
                        if let Head::Linear { a, .. } = &mut plus.head {
                            a[[k, j]] += eps;
                        }
                        if let Head::Linear { a, .. } = &mut minus.head {
                            a[[k, j]] -= eps;
                        }
                        let fd = (loss(&plus, &x, &labels) - loss(&minus, &x, &labels))
                            / (2.0 * eps as f64);
                        assert!((fd - da[[k, j]] as f64).abs() < 2e-2 * fd.abs().max(1e-2));
                    }
                    let mut plus = net.clone();
                    let mut minus = net.clone();
                    if let Head::Linear { c, .. } = &mut plus.head {
                        c[k] += eps;
                    }
                    if let Head::Linear { c, .. } = &mut minus.head {
                        c[k] -= eps;
                    }
                    let fd =
                        (loss(&plus, &x, &labels) - loss(&minus, &x, &labels)) / (2.0 * eps as f64);
                    assert!(
                        (fd - dc[k] as f64).abs() < 3e-2 * fd.abs().max(1e-2),
                        "dc {fd} vs {}",
                        dc[k]
                    );
                }
            }
        }
    }
}

/// The vectorised per-patch loop gives the same bits as `eval` element by element, for
/// every activation (q = 2, 3 and a general q) and values on both sides of every kink.
#[test]
fn vectorised_activation_matches_eval() {
    let acts = [
        Activation::Relu,
        Activation::ThresholdRelu { scale: 0.3 },
        Activation::Smoothed { q: 2, t: 0.5 },
        Activation::Smoothed { q: 3, t: 1.0 },
        Activation::Smoothed { q: 4, t: 0.7 },
    ];
    let z0: Vec<f32> = (0..301).map(|i| (i as f32 - 150.0) / 60.0).collect();
    let bias: Vec<f32> = (0..301)
        .map(|i| if i % 2 == 0 { -0.1 } else { 0.0 })
        .collect();
    for act in acts {
        let b: Vec<f32> = match act {
            Activation::ThresholdRelu { .. } => bias.clone(),
            _ => vec![0.0; z0.len()],
        };
        let mut z = z0.clone();
        let mut h = vec![1.0f32; z0.len()];
        act.apply(&mut z, &b, &mut h);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let mut z2 = z0.clone();
            let mut h2 = vec![1.0f32; z0.len()];
            // SAFETY: AVX-512F is present.
            unsafe { act.apply_avx512(&mut z2, &b, &mut h2) };
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&z2), bits(&z), "{act:?}: AVX-512 derivative");
            assert_eq!(bits(&h2), bits(&h), "{act:?}: AVX-512 activation");
        }
        for i in 0..z0.len() {
            let (a, da) = act.eval(z0[i] + b[i]);
            assert_eq!(h[i].to_bits(), (1.0 + a).to_bits(), "{act:?} at {}", z0[i]);
            assert_eq!(z[i].to_bits(), da.to_bits(), "{act:?} at {}", z0[i]);
        }
    }
}

#[test]
fn smoothed_relu_is_continuous_with_continuous_derivative() {
    let a = Activation::Smoothed { q: 3, t: 0.7 };
    for &u in &[0.0f32, 0.7] {
        let (l, dl) = a.eval(u - 1e-4);
        let (r, dr) = a.eval(u + 1e-4);
        assert!((l - r).abs() < 1e-3 && (dl - dr).abs() < 2e-3, "at {u}");
    }
    assert_eq!(a.eval(-1.0), (0.0, 0.0));
    let (v, d) = a.eval(2.0);
    assert!((v - (2.0 - 2.0 / 3.0 * 0.7)).abs() < 1e-6 && d == 1.0);
}

#[test]
fn step_is_identical_with_one_or_two_threads() {
    let (net, _, _) = net(Activation::Relu, false);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut big = Net::new(4, 16, 96, 8, 0.1, Activation::Relu, &mut rng);
    let x: Vec<f32> = (0..64 * 8 * 96)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    let labels: Vec<usize> = (0..64).map(|i| i % 4).collect();
    let run = |threads: usize, net: &Net| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut n = net.clone();
            let mut ws = Workspace::default();
            for _ in 0..3 {
                n.sgd_step(&x, &labels, 0.1, false, &mut ws);
            }
            n.w
        })
    };
    big.parallel = true;
    let a = run(1, &big);
    let b = run(2, &big);
    big.parallel = false;
    let c = run(2, &big);
    assert_eq!(a, b);
    assert_eq!(a, c);
    drop(net);
}

/// The step in the `products` kernels (where this processor runs them) gives the same bits as
/// the step through `matrixmultiply`: weights, head, losses and gradients, for every
/// activation and both heads, over several steps.
#[test]
fn kernels_give_the_bits_of_matrixmultiply() {
    let acts = [
        Activation::Relu,
        Activation::ThresholdRelu { scale: 0.3 },
        Activation::Smoothed { q: 3, t: 0.8 },
        Activation::Smoothed { q: 2, t: 1.5 },
        Activation::Smoothed { q: 4, t: 0.7 },
    ];
    for (i, act) in acts.into_iter().enumerate() {
        for linear in [false, true] {
            let mut rng = ChaCha8Rng::seed_from_u64(40 + i as u64);
            // 5 classes x 7 neurons (35: partial tiles), d = 300 (two blocks of the reduction),
            // 20 samples x 13 patches (260 rows)
            let (classes, m, d, p, batch) = (5, 7, 300, 13, 20);
            let mut net = Net::new(classes, m, d, p, 0.3, act, &mut rng);
            if linear {
                let mut a = Array2::<f32>::zeros((3, classes * m));
                for v in a.iter_mut() {
                    *v = rng.sample::<f32, _>(StandardNormal) * 0.3;
                }
                net.head = Head::Linear {
                    a,
                    c: vec![0.1, -0.2, 0.05],
                };
            }
            let x: Vec<f32> = (0..batch * p * d)
                .map(|_| rng.sample::<f32, _>(StandardNormal))
                .collect();
            let labels: Vec<usize> = (0..batch).map(|b| b % net.head.classes()).collect();
            let run = |portable: bool| {
                let mut n = net.clone();
                let mut ws = Workspace {
                    portable,
                    ..Workspace::default()
                };
                let losses: Vec<u64> = (0..3)
                    .map(|_| n.sgd_step(&x, &labels, 0.5, linear, &mut ws).to_bits())
                    .collect();
                let f = n.forward(&x);
                (n, losses, f.pooled, f.logits)
            };
            let (a, la, pa, ga) = run(false);
            let (b, lb, pb, gb) = run(true);
            assert_eq!(la, lb, "{act:?} linear={linear}: losses");
            let bits = |v: &Array2<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a.w), bits(&b.w), "{act:?} linear={linear}: weights");
            assert_eq!(a.head, b.head, "{act:?} linear={linear}: head");
            assert_eq!(bits(&pa), bits(&pb), "{act:?} linear={linear}: pooled");
            assert_eq!(bits(&ga), bits(&gb), "{act:?} linear={linear}: logits");
            assert!(a.w != net.w, "the steps must move the weights");
        }
    }
}
