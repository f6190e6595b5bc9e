//! Tests of the synthetic dataset: sizes and labels, determinism, the textures of easy and hard
//! images, a recoverable superclass, hard training images, and config validation and serde.

use super::*;

fn small() -> SyntheticConfig {
    SyntheticConfig {
        subclasses: vec![3, 2, 4],
        train_per_leaf: 6,
        test_easy_per_leaf: 3,
        test_hard_per_leaf: 2,
        ..SyntheticConfig::default()
    }
}

/// Pearson correlation of patch `q` of channel-major image `img` with texture `t`; 0 for a
/// constant patch.
fn patch_corr(img: &[u8], n: usize, ps: usize, q: usize, t: &[f32]) -> f64 {
    let grid = n / ps;
    let (py, px) = (q / grid, q % grid);
    let mut v = Vec::with_capacity(t.len());
    for c in 0..3 {
        for y in 0..ps {
            for x in 0..ps {
                v.push(f64::from(img[(c * n + py * ps + y) * n + px * ps + x]));
            }
        }
    }
    let mv = v.iter().sum::<f64>() / v.len() as f64;
    let mt = t.iter().map(|&x| f64::from(x)).sum::<f64>() / t.len() as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, &b) in v.iter().zip(t) {
        let (a, b) = (a - mv, f64::from(b) - mt);
        sxy += a * b;
        sxx += a * a;
        syy += b * b;
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

#[test]
fn sizes_counts_and_labels() {
    let cfg = small();
    let d = generate(&cfg).unwrap();
    let k = 9;
    assert_eq!(d.train.len, 6 * k);
    assert_eq!(d.test_easy.len, 3 * k);
    assert_eq!(d.test_hard.len, 2 * k);
    for set in [&d.train, &d.test_easy, &d.test_hard] {
        assert_eq!((set.channels, set.height, set.width), (3, 32, 32));
        assert_eq!(set.images.len(), set.len * 3 * 32 * 32);
        assert!(set.leaves.iter().all(|&l| l < k));
        assert_eq!(set.hierarchy.num_levels(), 2);
        assert_eq!(set.hierarchy.num_classes(0), 3);
    }
    assert_eq!(d.train.class_counts(1), vec![6; k]);
    assert_eq!(d.train.class_counts(0), vec![18, 12, 24]);
    assert_eq!(d.train.labels_at_level(0)[..k], [0, 0, 0, 1, 1, 2, 2, 2, 2]);
    assert!(d.train_is_hard.iter().all(|&h| !h));
    let s = d.splits();
    assert_eq!(s.test.len, 5 * k);
    assert_eq!(d.test_is_hard.len(), s.test.len);
    assert_eq!(d.test_is_hard.iter().filter(|&&h| h).count(), 2 * k);
    assert!(!d.test_is_hard[3 * k - 1] && d.test_is_hard[3 * k]);
    assert_eq!(s.test.image(3 * k), d.test_hard.image(0));
    assert_eq!(s.test.leaves[3 * k..], d.test_hard.leaves[..]);
    // Textures: 3 + 9 of them, zero mean, RMS 1, orthogonal.
    assert_eq!(d.features.len(), 12);
    for (i, a) in d.features.iter().enumerate() {
        assert_eq!(a.len(), 192);
        let mean: f32 = a.iter().sum::<f32>() / 192.0;
        assert!(mean.abs() < 1e-5);
        for (j, b) in d.features.iter().enumerate() {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / 192.0;
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-4, "{i} {j} {dot}");
        }
    }
    // Some mid-grey background survives, on average.
    let (mean, _) = d.train.channel_mean_std();
    assert!(
        mean.iter().all(|&m| (m - 128.0 / 255.0).abs() < 0.05),
        "{mean:?}"
    );
}

#[test]
fn deterministic_and_seed_dependent() {
    let cfg = small();
    let a = generate(&cfg).unwrap();
    let b = generate(&cfg).unwrap();
    assert_eq!(a.train.images, b.train.images);
    assert_eq!(a.test_easy.images, b.test_easy.images);
    assert_eq!(a.test_hard.images, b.test_hard.images);
    // Same bits on one thread.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let c = pool.install(|| generate(&cfg).unwrap());
    assert_eq!(a.train.images, c.train.images);
    assert_eq!(a.test_hard.images, c.test_hard.images);
    let d = generate(&SyntheticConfig { seed: 1, ..cfg }).unwrap();
    assert_ne!(a.train.images, d.train.images);
    assert_ne!(a.features, d.features);
    // The splits differ from each other.
    assert_ne!(a.train.image(0), a.test_easy.image(0));
}

#[test]
fn easy_images_carry_the_common_texture_and_hard_ones_do_not() {
    let cfg = SyntheticConfig {
        noise: 0.0,
        hard_noise: 0.0,
        feature_noise_prob: 0.0,
        ..small()
    };
    let d = generate(&cfg).unwrap();
    let p = cfg.num_patches();
    let count = |img: &[u8], t: &[f32]| {
        (0..p)
            .filter(|&q| patch_corr(img, 32, 8, q, t) > 0.9)
            .count()
    };
    for (set, hard) in [(&d.test_easy, false), (&d.test_hard, true)] {
        for i in 0..set.len {
            let leaf = set.leaves[i];
            let s = set.hierarchy.leaf_ancestor(leaf, 0);
            let img = set.image(i);
            let common = count(img, &d.features[s]);
            let fine = count(img, &d.features[3 + leaf]);
            assert_eq!(common, if hard { 0 } else { 3 }, "hard {hard} image {i}");
            assert_eq!(fine, 2, "hard {hard} image {i}");
            // No other texture anywhere.
            for (f, t) in d.features.iter().enumerate() {
                if f != s && f != 3 + leaf {
                    assert_eq!(count(img, t), 0);
                }
            }
        }
    }
    // Weak instead of missing: hard_rho keeps a (scaled) copy of the texture.
    let weak = generate(&SyntheticConfig {
        hard_rho: 0.5,
        ..cfg.clone()
    })
    .unwrap();
    let img = weak.test_hard.image(0);
    assert_eq!(count(img, &weak.features[0]), 3);
    // Hard noise: the common patches of a hard image are noisy, not flat.
    let noisy = generate(&SyntheticConfig {
        hard_noise: 30.0,
        ..cfg
    })
    .unwrap();
    let img = noisy.test_hard.image(0);
    let grid = 4;
    let flat = (0..p)
        .filter(|&q| {
            let (py, px) = (q / grid, q % grid);
            let v0 = img[py * 8 * 32 + px * 8];
            (0..8).all(|y| (0..8).all(|x| img[(py * 8 + y) * 32 + px * 8 + x] == v0))
        })
        .count();
    assert_eq!(flat, p - 3 - 2, "common patches noisy, background flat");
}

/// Nearest-centroid accuracy of the superclass, centroids from `train`, evaluated on `test`.
fn centroid_accuracy(train: &ImageSet, test: &ImageSet) -> f64 {
    let per = train.image_size();
    let sup = train.labels_at_level(0);
    let ns = train.hierarchy.num_classes(0);
    let mut cent = vec![vec![0f64; per]; ns];
    let counts = train.class_counts(0);
    for (i, &s) in sup.iter().enumerate() {
        for (c, &x) in cent[s].iter_mut().zip(train.image(i)) {
            *c += f64::from(x) / counts[s] as f64;
        }
    }
    let truth = test.labels_at_level(0);
    let correct = (0..test.len)
        .filter(|&i| {
            let img = test.image(i);
            let best = (0..ns)
                .map(|s| {
                    let d: f64 = cent[s]
                        .iter()
                        .zip(img)
                        .map(|(c, &x)| (c - f64::from(x)).powi(2))
                        .sum();
                    (d, s)
                })
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap()
                .1;
            best == truth[i]
        })
        .count();
    correct as f64 / test.len as f64
}

#[test]
fn superclass_is_recoverable_from_easy_images() {
    let cfg = SyntheticConfig {
        subclasses: vec![3, 3],
        noise: 5.0,
        train_per_leaf: 100,
        test_easy_per_leaf: 40,
        test_hard_per_leaf: 40,
        ..SyntheticConfig::default()
    };
    let d = generate(&cfg).unwrap();
    let easy = centroid_accuracy(&d.train, &d.test_easy);
    assert!(easy > 0.9, "easy accuracy {easy}");
    // Control: without features the same check is at chance, so it can fail.
    let blank = generate(&SyntheticConfig {
        strength: [0.0, 0.0],
        feature_noise_prob: 0.0,
        ..cfg
    })
    .unwrap();
    let chance = centroid_accuracy(&blank.train, &blank.test_easy);
    assert!(chance < 0.7, "featureless accuracy {chance}");
}

/// The amplitude of texture `t` in patch `q` of image `img` (least squares, background 128).
fn patch_amplitude(img: &[u8], n: usize, ps: usize, q: usize, t: &[f32]) -> f64 {
    let grid = n / ps;
    let (py, px) = (q / grid, q % grid);
    let (mut dot, mut tt) = (0.0, 0.0);
    for c in 0..3 {
        for y in 0..ps {
            for x in 0..ps {
                let v = f64::from(img[(c * n + py * ps + y) * n + px * ps + x]) - 128.0;
                let w = f64::from(t[(c * ps + y) * ps + x]);
                dot += v * w;
                tt += w * w;
            }
        }
    }
    dot / tt
}

#[test]
fn common_strength_sets_the_common_textures_alone() {
    let cfg = SyntheticConfig {
        noise: 0.0,
        hard_noise: 0.0,
        feature_noise_prob: 0.0,
        strength: [30.0, 30.0],
        ..small()
    };
    let base = generate(&cfg).unwrap();
    // Unset, or set to `strength`: the same bits (existing configs keep their data).
    let same = generate(&SyntheticConfig {
        common_strength: Some([30.0, 30.0]),
        ..cfg.clone()
    })
    .unwrap();
    assert_eq!(base.train.images, same.train.images);
    assert_eq!(base.test_hard.images, same.test_hard.images);
    assert!(!toml::to_string(&cfg).unwrap().contains("common_strength"));
    // Stronger common textures, fine textures unchanged.
    let strong = generate(&SyntheticConfig {
        common_strength: Some([70.0, 70.0]),
        ..cfg.clone()
    })
    .unwrap();
    assert_ne!(base.train.images, strong.train.images);
    let p = cfg.num_patches();
    for i in 0..strong.test_easy.len {
        let leaf = strong.test_easy.leaves[i];
        let s = strong.test_easy.hierarchy.leaf_ancestor(leaf, 0);
        let img = strong.test_easy.image(i);
        let amp = |t: &[f32]| -> Vec<f64> {
            (0..p)
                .map(|q| patch_amplitude(img, 32, 8, q, t))
                .filter(|a| *a > 10.0)
                .collect()
        };
        let (common, fine) = (amp(&strong.features[s]), amp(&strong.features[3 + leaf]));
        assert_eq!((common.len(), fine.len()), (3, 2), "image {i}");
        // rounding and clamping to 0..=255 shave a little off the strong texture
        assert!(
            common.iter().all(|a| (60.0..=70.5).contains(a)),
            "{common:?}"
        );
        assert!(fine.iter().all(|a| (29.0..=30.5).contains(a)), "{fine:?}");
    }
}

#[test]
fn train_hard_fraction_marks_hard_images() {
    let cfg = SyntheticConfig {
        train_hard_fraction: 0.5,
        ..small()
    };
    let d = generate(&cfg).unwrap();
    let n = d.train_is_hard.iter().filter(|&&h| h).count();
    assert!(n > 5 && n < d.train.len - 5, "{n} of {}", d.train.len);
}

#[test]
fn config_validation_names_the_field() {
    let bad = |cfg: SyntheticConfig, field: &str| {
        let e = generate(&cfg).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::Invalid { .. }), "{msg}");
        assert!(msg.contains(&format!("`{field}`")), "{field}: {msg}");
    };
    let d = SyntheticConfig::default;
    bad(
        SyntheticConfig {
            image_size: 0,
            ..d()
        },
        "image_size",
    );
    bad(
        SyntheticConfig {
            patch_size: 0,
            ..d()
        },
        "patch_size",
    );
    bad(
        SyntheticConfig {
            patch_size: 5,
            ..d()
        },
        "patch_size",
    );
    bad(
        SyntheticConfig {
            subclasses: vec![],
            ..d()
        },
        "subclasses",
    );
    bad(
        SyntheticConfig {
            subclasses: vec![2, 0],
            ..d()
        },
        "subclasses",
    );
    bad(
        SyntheticConfig {
            common_patches: 10,
            fine_patches: 7,
            ..d()
        },
        "common_patches",
    );
    bad(
        SyntheticConfig {
            train_per_leaf: 0,
            ..d()
        },
        "train_per_leaf",
    );
    bad(SyntheticConfig { noise: -1.0, ..d() }, "noise");
    bad(
        SyntheticConfig {
            noise: f32::NAN,
            ..d()
        },
        "noise",
    );
    bad(
        SyntheticConfig {
            hard_noise: -1.0,
            ..d()
        },
        "hard_noise",
    );
    bad(
        SyntheticConfig {
            hard_rho: 1.5,
            ..d()
        },
        "hard_rho",
    );
    bad(
        SyntheticConfig {
            background: 300.0,
            ..d()
        },
        "background",
    );
    bad(
        SyntheticConfig {
            strength: [5.0, 1.0],
            ..d()
        },
        "strength",
    );
    bad(
        SyntheticConfig {
            strength: [-1.0, 1.0],
            ..d()
        },
        "strength",
    );
    bad(
        SyntheticConfig {
            common_strength: Some([5.0, 1.0]),
            ..d()
        },
        "common_strength",
    );
    bad(
        SyntheticConfig {
            feature_noise_prob: 2.0,
            ..d()
        },
        "feature_noise_prob",
    );
    bad(
        SyntheticConfig {
            feature_noise: -2.0,
            ..d()
        },
        "feature_noise",
    );
    bad(
        SyntheticConfig {
            train_hard_fraction: -0.1,
            ..d()
        },
        "train_hard_fraction",
    );
    bad(
        SyntheticConfig {
            subclasses: vec![100, 100],
            ..d()
        },
        "orthogonalize",
    );
    bad(
        SyntheticConfig {
            train_per_leaf: usize::MAX,
            ..d()
        },
        "train_per_leaf",
    );
    // Many classes work without orthogonalisation.
    let many = SyntheticConfig {
        subclasses: vec![100, 100],
        orthogonalize: false,
        train_per_leaf: 1,
        test_easy_per_leaf: 0,
        test_hard_per_leaf: 0,
        ..d()
    };
    assert_eq!(generate(&many).unwrap().train.len, 200);
}

#[test]
fn config_serde() {
    let cfg: SyntheticConfig = toml::from_str("noise = 5.0\nsubclasses = [2, 3, 4]").unwrap();
    assert_eq!(cfg.noise, 5.0);
    assert_eq!(cfg.subclasses, vec![2, 3, 4]);
    assert_eq!(cfg.image_size, 32);
    assert!(toml::from_str::<SyntheticConfig>("nosie = 5.0").is_err());
    let back: SyntheticConfig = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
}
