//! Pretraining labels of a study's training set, for every [`LabelSpec`]: the hierarchy's
//! relabelings, k-means clusters of image embeddings (inside each class of a level, or over the
//! whole set) and levels coarser than the target. The summed head that reads target predictions
//! off a network trained on labels nested inside the target classes is
//! [`super::readouts::summed_head`].
//!
//! Whatever made them, the labels come with their [`LabelRule`]: for each pretraining class, the
//! target class it lies inside (the class is then *nested* in that target) or none when it
//! crosses targets. A label set is *aligned* when every class is nested; its *purity* is the
//! fraction of training images whose class's majority target is their own target (1 for aligned
//! labels). Relabelings of the hierarchy know their classes' targets from the tree; labels made
//! from the data (k-means, coarser groups) are a table rule read against the images' targets.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::config::{DataLabels, EmbeddingSource, GranularitySpec, LabelSpec, StudyConfig};
use super::designs::Design;
use super::hard::first_member;
use super::results::{labels_file, LabelSummary};
use super::runner::Runner;
use crate::empirical::data::ImageSet;
use crate::empirical::error::EmpiricalError;
use crate::empirical::kmeans::{cluster_global, cluster_within};
use crate::hierarchy::LabelRule;
use crate::report::read_json;
use ndarray::Array2;

/// The pretraining labels of one granularity on one training set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainLabels {
    /// The rule the labels were drawn with (classes and their targets).
    pub rule: LabelRule,
    /// The label of every training image (below the rule's class count).
    pub labels: Vec<usize>,
    /// Fraction of images whose class's majority target is their own target.
    pub purity: f64,
}

impl PretrainLabels {
    /// The labels drawn with `rule` for the images whose targets are `targets`.
    pub fn new(
        rule: LabelRule,
        labels: Vec<usize>,
        targets: &[usize],
    ) -> Result<Self, EmpiricalError> {
        let (n, nt) = (rule.num_classes(), rule.num_targets());
        if labels.len() != targets.len() {
            return Err(EmpiricalError::invalid(
                "pretraining labels",
                format!("{} labels for {} images", labels.len(), targets.len()),
            ));
        }
        let mut counts = vec![vec![0usize; nt]; n];
        for (&l, &t) in labels.iter().zip(targets) {
            if l >= n || t >= nt {
                return Err(EmpiricalError::invalid(
                    "pretraining labels",
                    format!("label {l} / target {t} out of range ({n} / {nt})"),
                ));
            }
            counts[l][t] += 1;
        }
        let pure: usize = counts
            .iter()
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .sum();
        let purity = if labels.is_empty() {
            f64::NAN
        } else {
            pure as f64 / labels.len() as f64
        };
        Ok(PretrainLabels {
            rule,
            labels,
            purity,
        })
    }

    /// Labels made from the data (k-means clusters, groups of targets): a table rule whose
    /// classes' targets are read off the images' `targets`.
    pub fn from_table(
        name: &str,
        labels: Vec<usize>,
        num_classes: usize,
        targets: &[usize],
        num_targets: usize,
    ) -> Result<Self, EmpiricalError> {
        let rule = LabelRule::from_table(name, labels.clone(), num_classes, targets, num_targets)?;
        Self::new(rule, labels, targets)
    }

    /// Number of pretraining classes (some may be empty, e.g. random labels of a small set).
    pub fn num_classes(&self) -> usize {
        self.rule.num_classes()
    }

    /// Every class lies inside one target class.
    pub fn aligned(&self) -> bool {
        self.rule.is_aligned()
    }

    /// The summary a cell records.
    pub fn summary(&self) -> LabelSummary {
        LabelSummary {
            classes: self.num_classes(),
            used_classes: self.used_classes(),
            aligned: self.aligned(),
            purity: self.purity,
        }
    }

    /// Whether each class labels at least one image.
    fn used(&self) -> Vec<bool> {
        let mut seen = vec![false; self.num_classes()];
        self.labels.iter().for_each(|&c| seen[c] = true);
        seen
    }

    /// Number of classes that label at least one image.
    pub fn used_classes(&self) -> usize {
        self.used().iter().filter(|&&s| s).count()
    }
}

/// The pretraining labels of every granularity of a design, by name.
pub struct DesignLabels(BTreeMap<String, PretrainLabels>);

impl DesignLabels {
    /// The labels of the granularity `name`.
    pub fn get(&self, name: &str) -> Result<&PretrainLabels, EmpiricalError> {
        self.0.get(name).ok_or_else(|| {
            EmpiricalError::invalid("granularity", format!("no labels for '{name}'"))
        })
    }
}

/// The image embeddings of `set` for the k-means granularities: the features of the first
/// ensemble member or of a random network (`embedding.source`).
pub fn embeddings(r: &Runner, set: &ImageSet) -> Result<Array2<f32>, EmpiricalError> {
    let cfg = r.config();
    let model = match cfg.embedding.source {
        EmbeddingSource::Ensemble => first_member(r)?,
        EmbeddingSource::RandomNet => r.model(
            r.num_targets(),
            crate::seed::derive(cfg.embedding.seed, &["embedding", "init"]),
        )?,
    };
    r.features(&model, set)
}

/// The labels of every granularity of `design`: read back if the study's preparation saved
/// them ([`labels_file`]), else built (in the config's order) and saved, with their summary in
/// `labels_{design}.json`.
pub fn for_design(r: &Runner, design: &Design) -> Result<DesignLabels, EmpiricalError> {
    let key = design.labels_key();
    let saved = r.prep_dir().path(&labels_file(&key));
    if saved.exists() {
        return Ok(DesignLabels(read_json(&saved)?));
    }
    let cfg = r.config();
    let specs: Vec<_> = cfg
        .granularities
        .iter()
        .filter(|g| design.granularities.contains(&g.name))
        .collect();
    let emb = if specs.iter().any(|g| g.labels.needs_embeddings()) {
        Some(embeddings(r, &design.train)?)
    } else {
        None
    };
    let mut labels = BTreeMap::new();
    for g in specs {
        let l = build_granularity(cfg, g, &design.train, emb.as_ref())?;
        labels.insert(g.name.clone(), l);
    }
    let summary: BTreeMap<&String, serde_json::Value> = labels
        .iter()
        .map(|(k, l)| {
            let v = serde_json::json!({
                "classes": l.num_classes(),
                "aligned": l.aligned(),
                "purity": l.purity,
            });
            (k, v)
        })
        .collect();
    r.prep_dir()
        .write_json(&format!("labels_{key}.json"), &summary)?;
    r.prep_dir().write_json(&labels_file(&key), &labels)?;
    Ok(DesignLabels(labels))
}

/// Checks that every granularity of `design` can be built on its training set, before any
/// network is trained: labels from the hierarchy are built (and dropped); for k-means, the
/// level and the number of clusters are checked (the embeddings come later).
pub fn check_buildable(cfg: &StudyConfig, design: &Design) -> Result<(), EmpiricalError> {
    let h = &design.train.hierarchy;
    for g in &cfg.granularities {
        if !design.granularities.contains(&g.name) {
            continue;
        }
        let bad = |message: String| EmpiricalError::Labels {
            granularity: g.name.clone(),
            source: Box::new(EmpiricalError::invalid("labels", message)),
        };
        match &g.labels {
            LabelSpec::Data(DataLabels::KmeansWithin { level: Some(l), .. })
                if *l >= h.num_levels() =>
            {
                return Err(bad(format!(
                    "level {l} does not exist (the hierarchy has {} levels)",
                    h.num_levels()
                )));
            }
            LabelSpec::Data(DataLabels::KmeansGlobal { k }) if *k > design.train.len => {
                return Err(bad(format!(
                    "{k} clusters of {} training images (design {})",
                    design.train.len, design.name
                )));
            }
            LabelSpec::Data(DataLabels::KmeansWithin { .. } | DataLabels::KmeansGlobal { .. }) => {}
            LabelSpec::Hierarchy(_) | LabelSpec::Data(DataLabels::Coarser { .. }) => {
                build_granularity(cfg, g, &design.train, None)?;
            }
        }
    }
    Ok(())
}

/// The labels of the granularity `g` on `train` (an error names the granularity).
pub fn build_granularity(
    cfg: &StudyConfig,
    g: &GranularitySpec,
    train: &ImageSet,
    embeddings: Option<&Array2<f32>>,
) -> Result<PretrainLabels, EmpiricalError> {
    build_labels(
        &g.labels,
        train,
        cfg.data.target_level,
        embeddings,
        labels_key(cfg, &g.name),
        cfg.embedding.iters,
    )
    .map_err(|e| EmpiricalError::Labels {
        granularity: g.name.clone(),
        source: Box::new(e),
    })
}

/// The key of the labels of the granularity `name` (every random choice of its labels, k-means
/// included, comes from it).
pub fn labels_key(cfg: &StudyConfig, name: &str) -> u64 {
    crate::seed::derive(cfg.embedding.seed, &["labels", name])
}

/// Builds the labels of `spec` for `train` (targets at `target_level`). `embeddings` (one row
/// per training image) are needed by the k-means kinds; every random choice comes from the key
/// `seed` ([`labels_key`]) and `iters` is the number of k-means iterations.
pub fn build_labels(
    spec: &LabelSpec,
    train: &ImageSet,
    target_level: usize,
    embeddings: Option<&Array2<f32>>,
    seed: u64,
    iters: usize,
) -> Result<PretrainLabels, EmpiricalError> {
    let h = &train.hierarchy;
    let targets = train.labels_at_level(target_level);
    let num_targets = h.num_classes(target_level);
    let mut rng = crate::seed::stream(seed, 0);
    let kmeans_key = crate::seed::derive(seed, &["kmeans"]);
    let bad = |m: String| EmpiricalError::invalid("granularity", m);
    let need_emb = || -> Result<(&[f32], usize, usize), EmpiricalError> {
        let e = embeddings.ok_or_else(|| bad("k-means labels need embeddings".into()))?;
        if e.nrows() != train.len {
            return Err(bad(format!(
                "{} embeddings for {} training images",
                e.nrows(),
                train.len
            )));
        }
        let flat = e
            .as_slice()
            .ok_or_else(|| bad("embeddings must be a standard-layout array".into()))?;
        Ok((flat, e.nrows(), e.ncols()))
    };
    let (rule, labels) = match spec {
        LabelSpec::Hierarchy(relabel) => {
            let rule = relabel.build_for_samples(h, target_level, &train.leaves, &mut rng)?;
            let labels = rule.label_all(&train.leaves, &mut rng);
            (rule, labels)
        }
        LabelSpec::Data(DataLabels::KmeansWithin { k, level }) => {
            let level = level.unwrap_or(target_level);
            if level >= h.num_levels() {
                return Err(bad(format!(
                    "level {level} does not exist (the hierarchy has {} levels)",
                    h.num_levels()
                )));
            }
            let (e, rows, cols) = need_emb()?;
            let groups = train.labels_at_level(level);
            let rule = cluster_within(
                e,
                rows,
                cols,
                &groups,
                h.num_classes(level),
                *k,
                iters,
                kmeans_key,
            )?;
            // the clusters' targets are read at the target level (not at `level`)
            let labels = rule.label_all(&train.leaves, &mut rng);
            let n = rule.num_classes();
            let rule =
                LabelRule::from_table(rule.name(), labels.clone(), n, &targets, num_targets)?;
            (rule, labels)
        }
        LabelSpec::Data(DataLabels::KmeansGlobal { k }) => {
            let (e, rows, cols) = need_emb()?;
            let rule = cluster_global(e, rows, cols, &targets, num_targets, *k, iters, kmeans_key)?;
            let labels = rule.label_all(&train.leaves, &mut rng);
            (rule, labels)
        }
        LabelSpec::Data(DataLabels::Coarser { groups }) => {
            if *groups >= num_targets {
                return Err(bad(format!(
                    "coarser labels need fewer groups than the {num_targets} target classes, got {groups}"
                )));
            }
            let mut order: Vec<usize> = (0..num_targets).collect();
            order.shuffle(&mut rng);
            let mut group_of = vec![0usize; num_targets];
            for (i, &t) in order.iter().enumerate() {
                group_of[t] = i % groups;
            }
            let labels: Vec<usize> = targets.iter().map(|&t| group_of[t]).collect();
            let name = format!("coarser_{groups}");
            let rule =
                LabelRule::from_table(&name, labels.clone(), *groups, &targets, num_targets)?;
            (rule, labels)
        }
    };
    PretrainLabels::new(rule, labels, &targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empirical::data::load::synthetic::{generate, SyntheticConfig};

    fn data() -> ImageSet {
        generate(&SyntheticConfig {
            image_size: 16,
            patch_size: 4,
            subclasses: vec![3, 3, 2],
            train_per_leaf: 6,
            test_easy_per_leaf: 1,
            test_hard_per_leaf: 1,
            ..Default::default()
        })
        .unwrap()
        .train
    }

    /// Every kind of label nests in the target classes or crosses them as it should.
    use crate::hierarchy::Relabeling;
    use LabelSpec::{Data as D, Hierarchy as R};

    #[test]
    fn labels_nest_or_cross_as_designed() {
        let train = data();
        let n = train.len;
        let fine = train.labels_at_level(1);
        // embeddings that separate the leaves (so clusters follow leaves) plus a little jitter
        let emb = Array2::from_shape_fn((n, 2), |(i, j)| {
            [fine[i] as f32 * 10.0, (i % 3) as f32 * 0.1][j]
        });
        let cases: Vec<(LabelSpec, Option<bool>, Option<usize>)> = vec![
            (LabelSpec::level(0), Some(true), Some(3)),
            (LabelSpec::level(1), Some(true), Some(8)),
            (
                R(Relabeling::MergeWithin { groups: 2 }),
                Some(true),
                Some(6),
            ),
            (
                R(Relabeling::RandomAligned { per_target: 4 }),
                Some(true),
                Some(12),
            ),
            (
                R(Relabeling::Misaligned { groups: 3 }),
                Some(false),
                Some(3),
            ),
            (
                R(Relabeling::SplitFiner { splits: 2 }),
                Some(true),
                Some(16),
            ),
            (R(Relabeling::PerSample), Some(true), Some(n)),
            (
                D(DataLabels::KmeansWithin { k: 2, level: None }),
                Some(true),
                None,
            ),
            (
                D(DataLabels::KmeansWithin {
                    k: 2,
                    level: Some(1),
                }),
                Some(true),
                Some(16),
            ),
            (D(DataLabels::KmeansGlobal { k: 4 }), Some(false), Some(4)),
            (D(DataLabels::Coarser { groups: 2 }), Some(false), Some(2)),
        ];
        for (spec, aligned, classes) in cases {
            let l = build_labels(&spec, &train, 0, Some(&emb), 3, 20).unwrap();
            assert_eq!(l.labels.len(), n);
            assert!(l.labels.iter().all(|&c| c < l.num_classes()), "{spec:?}");
            if let Some(a) = aligned {
                assert_eq!(l.aligned(), a, "{spec:?}");
            }
            if let Some(c) = classes {
                assert_eq!(l.num_classes(), c, "{spec:?}");
            }
            if l.aligned() {
                assert_eq!(l.purity, 1.0);
            } else {
                assert!(l.purity < 1.0);
            }
            // determinism
            assert_eq!(
                l,
                build_labels(&spec, &train, 0, Some(&emb), 3, 20).unwrap()
            );
        }
        // k-means inside each fine class nests inside the leaves too
        let l = build_labels(
            &D(DataLabels::KmeansWithin {
                k: 2,
                level: Some(1),
            }),
            &train,
            0,
            Some(&emb),
            3,
            20,
        )
        .unwrap();
        let f =
            PretrainLabels::from_table("km", l.labels.clone(), l.num_classes(), &fine, 8).unwrap();
        assert!(f.aligned());
        // the k-means kinds without embeddings, and a coarser level that is not coarser, fail
        assert!(
            build_labels(&D(DataLabels::KmeansGlobal { k: 2 }), &train, 0, None, 0, 5).is_err()
        );
        assert!(
            build_labels(&D(DataLabels::Coarser { groups: 3 }), &train, 0, None, 0, 5).is_err()
        );
    }
}
