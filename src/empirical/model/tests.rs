//! Tests of the model: fast vs stock agreement, determinism, configs, names, BatchNorm modes
//! and transfer.

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn tiny() -> ModelConfig {
    ModelConfig {
        arch: Arch::ResNet8,
        width: 4,
    }
}

fn input(n: usize, hw: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * 3 * hw * hw)
        .map(|_| rng.gen_range(-1.0f32..1.0))
        .collect();
    Tensor::from_vec(v, (n, 3, hw, hw), &Device::Cpu).unwrap()
}

fn input_hw(n: usize, h: usize, w: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * 3 * h * w)
        .map(|_| rng.gen_range(-1.0f32..1.0))
        .collect();
    Tensor::from_vec(v, (n, 3, h, w), &Device::Cpu).unwrap()
}

/// Largest |a - b| relative to the largest |b| (at least 1e-3).
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
        / scale
}

/// The fast backbone (one custom operation on channels-last kernels) agrees with candle's
/// stock operations: logits, the gradient of every parameter and the running statistics,
/// in training and evaluation mode, for every architecture, odd sizes and batch 1 (candle 0.11's
/// stock 1x1 stride-2 convolution gets non-square images wrong, so they are covered by the
/// kernel tests only).
#[test]
fn fast_kernels_match_stock() {
    let dev = Device::Cpu;
    let cases = [
        (tiny(), 2, 8, 8),
        (tiny(), 1, 7, 7),
        (
            ModelConfig {
                arch: Arch::ResNet20,
                width: 4,
            },
            3,
            9,
            9,
        ),
        (
            ModelConfig {
                arch: Arch::ResNet18,
                width: 2,
            },
            2,
            16,
            16,
        ),
    ];
    for (i, &(cfg, n, h, w)) in cases.iter().enumerate() {
        let fast = Model::new_with(cfg, 5, 3, &dev, Kernels::Fast).unwrap();
        let stock = Model::new_with(cfg, 5, 3, &dev, Kernels::Stock).unwrap();
        assert_eq!(fast.state_vecs().unwrap(), stock.state_vecs().unwrap());
        let x = input_hw(n, h, w, 10 + i as u64);
        for train in [true, false, true] {
            let what = format!("case {i} ({cfg:?}, {n}x{h}x{w}) train {train}");
            let (lf, ls) = (
                fast.logits(&x, train).unwrap(),
                stock.logits(&x, train).unwrap(),
            );
            assert!(
                rel_err(&lf, &ls) < 1e-4,
                "logits {what}: {}",
                rel_err(&lf, &ls)
            );
            let r = input_hw(n, 1, 5, 20)
                .narrow(1, 0, 1)
                .unwrap()
                .reshape((n, 5))
                .unwrap();
            let gf = (&lf * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gs = (&ls * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (pf, ps) in fast.trainable_params().iter().zip(stock.trainable_params()) {
                let (a, b) = (gf.get(&pf.var).unwrap(), gs.get(&ps.var).unwrap());
                let e = rel_err(a, b);
                assert!(e < 1e-4, "grad of {} {what}: {e}", pf.name);
            }
            let (sf, ss) = (fast.named_tensors(), stock.named_tensors());
            for (k, t) in &sf {
                assert!(rel_err(t, &ss[k]) < 1e-4, "{k} {what}");
            }
        }
    }
}

/// The fast kernels give the same bits whatever the number of threads (1, 2, 3), on every
/// vector-instruction path this processor has, and every path gives the same bits (channel
/// counts that fill whole vectors, and counts that do not).
#[test]
fn fast_kernels_same_bits_for_any_thread_count_and_path() {
    let cases = [
        (
            ModelConfig {
                arch: Arch::ResNet20,
                width: 4,
            },
            input_hw(19, 12, 10, 5),
        ),
        (
            ModelConfig {
                arch: Arch::ResNet8,
                width: 16,
            },
            input_hw(5, 16, 16, 6),
        ),
    ];
    for (cfg, x) in cases {
        let run = |threads: usize, simd: Simd| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut m = Model::new(cfg, 4, 1, &Device::Cpu).unwrap();
                m.set_simd(simd).unwrap();
                assert_eq!(m.backbone().simd(), simd);
                let l = m.logits(&x, true).unwrap();
                let g = l.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                let mut out = vec![l.flatten_all().unwrap().to_vec1::<f32>().unwrap()];
                for p in m.trainable_params() {
                    out.push(
                        g.get(&p.var)
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1()
                            .unwrap(),
                    );
                }
                out.extend(m.state_vecs().unwrap().into_values());
                out
            })
        };
        let first = run(1, Simd::Scalar);
        for simd in Simd::available() {
            for threads in [1, 2, 3] {
                assert!(
                    run(threads, simd) == first,
                    "{cfg:?}: {simd} with {threads} threads differs from scalar with 1"
                );
            }
        }
    }
}

#[test]
fn config_serde() {
    let c: ModelConfig = toml::from_str("arch = \"resnet20\"\nwidth = 16").unwrap();
    assert_eq!(c, ModelConfig::standard(Arch::ResNet20));
    assert!(toml::from_str::<ModelConfig>("arch = \"resnet20\"\nwidth = 16\nx = 1").is_err());
    assert!(toml::from_str::<ModelConfig>("arch = \"resnet21\"\nwidth = 16").is_err());
    let s = serde_json::to_string(&ModelConfig::standard(Arch::ResNet18)).unwrap();
    assert_eq!(s, r#"{"arch":"resnet18","width":64}"#);
    assert!(ModelConfig {
        arch: Arch::ResNet8,
        width: 0
    }
    .validate()
    .is_err());
}

#[test]
fn shapes_names_and_parameter_counts() {
    let dev = Device::Cpu;
    // ResNet-20 at width 16 has 0.27 M parameters (He et al.); with option-B shortcuts
    // (1x1 conv + BN at the two stage changes) and a 10-class head exactly this many:
    let m = Model::new(ModelConfig::standard(Arch::ResNet20), 10, 0, &dev).unwrap();
    assert_eq!(m.feature_dim(), 64);
    assert_eq!(m.num_parameters(), 272_474);
    // ResNet-18 (CIFAR stem) with a 100-class head: 11.22 M.
    let r18 = ModelConfig::standard(Arch::ResNet18);
    assert_eq!(r18.feature_dim(), 512);
    let m18 = Model::new(r18, 100, 0, &dev).unwrap();
    assert_eq!(m18.num_parameters(), 11_220_132);

    let m = Model::new(tiny(), 5, 0, &dev).unwrap();
    let names: Vec<String> = m.named_tensors().into_keys().collect();
    for n in [
        "backbone.stem.conv.weight",
        "backbone.stem.bn.running_var",
        "backbone.layer1.0.conv1.weight",
        "backbone.layer2.0.bn2.bias",
        "backbone.layer3.0.shortcut.conv.weight",
        "backbone.layer3.0.shortcut.bn.running_mean",
        "head.weight",
        "head.bias",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    assert!(!names
        .iter()
        .any(|x| x.starts_with("backbone.layer1.0.shortcut")));
    let x = input(2, 8, 1);
    assert_eq!(m.features(&x, false).unwrap().dims(), &[2, 16]);
    assert_eq!(m.logits(&x, true).unwrap().dims(), &[2, 5]);
    // Decay on conv/linear weights only.
    for p in m.trainable_params() {
        assert_eq!(p.weight_decay, p.var.rank() > 1, "{}", p.name);
    }
    assert!(m
        .features(&input(2, 8, 1).narrow(1, 0, 2).unwrap(), false)
        .is_err());
}

#[test]
fn seeded_init_is_deterministic() {
    let dev = Device::Cpu;
    let a = Model::new(tiny(), 3, 7, &dev)
        .unwrap()
        .state_vecs()
        .unwrap();
    let b = Model::new(tiny(), 3, 7, &dev)
        .unwrap()
        .state_vecs()
        .unwrap();
    let c = Model::new(tiny(), 3, 8, &dev)
        .unwrap()
        .state_vecs()
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Kaiming fan-out scale: std of the stem weights ~ sqrt(2 / (4 * 9)) = 0.236.
    let w = &a["backbone.layer2.0.conv2.weight"]; // 8 x 8 x 3 x 3: std sqrt(2/72) = 0.167
    let var = w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
    assert!((var.sqrt() - 0.167).abs() < 0.03, "{}", var.sqrt());
}

#[test]
fn batchnorm_modes() {
    let dev = Device::Cpu;
    let m = Model::new(tiny(), 3, 0, &dev).unwrap();
    let x = input(4, 8, 2);
    let before = m.state_vecs().unwrap();
    let e1 = m.logits(&x, false).unwrap().to_vec2::<f32>().unwrap();
    // Eval mode leaves running stats alone.
    assert_eq!(m.state_vecs().unwrap(), before);
    m.logits(&x, true).unwrap();
    let after = m.state_vecs().unwrap();
    // Train mode: running_mean = 0.9 * 0 + 0.1 * batch mean of the stem conv output.
    let stem_out = x
        .conv2d(&m.named_tensors()["backbone.stem.conv.weight"], 1, 1, 1, 1)
        .unwrap();
    let mean = stem_out.mean((0, 2, 3)).unwrap().to_vec1::<f32>().unwrap();
    let rm = &after["backbone.stem.bn.running_mean"];
    for (r, m) in rm.iter().zip(&mean) {
        assert!((r - 0.1 * m).abs() < 1e-5, "{r} vs {}", 0.1 * m);
    }
    // Unbiased batch variance: n / (n - 1) with n = 4 * 8 * 8.
    let var = stem_out
        .broadcast_sub(&stem_out.mean_keepdim((0, 2, 3)).unwrap())
        .unwrap()
        .sqr()
        .unwrap()
        .mean((0, 2, 3))
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let rv = &after["backbone.stem.bn.running_var"];
    for (r, v) in rv.iter().zip(&var) {
        let want = 0.9 + 0.1 * v * 256.0 / 255.0;
        assert!((r - want).abs() < 1e-4, "{r} vs {want}");
    }
    // Eval output changed because the running statistics did.
    let e2 = m.logits(&x, false).unwrap().to_vec2::<f32>().unwrap();
    assert_ne!(e1, e2);
}

#[test]
fn new_head_and_backbone_transfer() {
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pre.safetensors");
    let pre = Model::new(tiny(), 10, 1, &dev).unwrap();
    pre.logits(&input(4, 8, 3), true).unwrap(); // move the BN stats off their init
    pre.save_weights(&path).unwrap();

    // A coarse model with another seed and head size takes the backbone only.
    let coarse = Model::new(tiny(), 2, 2, &dev).unwrap();
    let head_before = coarse.state_vecs().unwrap()["head.weight"].clone();
    coarse.load_backbone(&path).unwrap();
    let (a, b) = (pre.state_vecs().unwrap(), coarse.state_vecs().unwrap());
    for (k, v) in &a {
        if k.starts_with(BACKBONE_PREFIX) {
            assert_eq!(v, &b[k], "{k}");
        }
    }
    assert_eq!(b["head.weight"], head_before);
    assert_eq!(b["head.weight"].len(), 2 * 16);
    // Loading everything fails on the head's shape, naming the tensor, and changes nothing.
    let e = coarse.load_weights(&path).unwrap_err().to_string();
    assert!(e.contains("head.bias") || e.contains("head.weight"), "{e}");
    assert_eq!(coarse.state_vecs().unwrap(), b);
    // Same features after the transfer.
    let x = input(3, 8, 4);
    let fa = pre.features(&x, false).unwrap().to_vec2::<f32>().unwrap();
    let fb = coarse
        .features(&x, false)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(fa, fb);

    // replace_head: new size, seeded, backbone untouched, old head gone from the map.
    let mut ft = Model::new(tiny(), 10, 1, &dev).unwrap();
    ft.load_weights(&path).unwrap();
    ft.replace_head(3, 5).unwrap();
    assert_eq!(ft.num_classes(), 3);
    assert_eq!(ft.logits(&x, false).unwrap().dims(), &[3, 3]);
    let s = ft.state_vecs().unwrap();
    assert_eq!(s["head.bias"].len(), 3);
    assert_eq!(s.len(), a.len());
    let mut other = Model::new(tiny(), 10, 9, &dev).unwrap();
    other.replace_head(3, 5).unwrap();
    assert_eq!(other.state_vecs().unwrap()["head.weight"], s["head.weight"]);

    // Frozen backbone: only the head is trainable and no gradient reaches the backbone.
    ft.set_backbone_frozen(true);
    let names: Vec<String> = ft.trainable_params().into_iter().map(|p| p.name).collect();
    assert_eq!(names, vec!["head.weight", "head.bias"]);
    let before = ft.state_vecs().unwrap();
    let loss = ft.logits(&x, true).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let stem = &ft.backbone().params()[0];
    assert!(grads.get(&stem.var).is_none());
    assert!(grads.get(&ft.head().params()[0].var).is_some());
    assert_eq!(
        ft.state_vecs().unwrap(),
        before,
        "frozen BN stats must not move"
    );

    let missing = dir.path().join("nope.safetensors");
    let e = ft.load_backbone(&missing).unwrap_err().to_string();
    assert!(e.contains("nope.safetensors"), "{e}");
}
