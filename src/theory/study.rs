//! Conditions and runs: a condition is a pretraining label granularity plus optional config
//! changes (e.g. a width-matched net or hard training samples); a run is one condition at one
//! seed, giving its training curve, final feature responses and the coarse test errors of every
//! readout. Grids of runs (conditions x parameter values x seeds) execute in parallel with rayon,
//! one network per thread, so results are the same bits whatever the thread count.

use crate::hierarchy::Relabeling;
use crate::report::{read_json, write_json};
use crate::theory::config::TheoryConfig;
use crate::theory::data::{derive_key, stream_rng, Distribution, Purpose};
use crate::theory::probe::{correlations, init_level, responses, Responses};
use crate::theory::readout::{self, Errors, Readout, TestSets};
use crate::theory::train::{init_net, pretrain, CurvePoint, Source};
use crate::theory::TheoryError;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One experimental condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Name used in tables and files.
    pub name: String,
    /// Pretraining labels.
    pub labels: Relabeling,
    /// Give the net as many neurons in total as the fine-label net (K * m), spread over its
    /// classes: the width-matched control.
    #[serde(default)]
    pub width_matched: bool,
    /// Config overrides applied for this condition (`section.field=value`).
    #[serde(default)]
    pub set: Vec<String>,
}

impl Condition {
    /// A condition with labels only.
    pub fn new(name: &str, labels: Relabeling) -> Self {
        Condition {
            name: name.into(),
            labels,
            width_matched: false,
            set: Vec::new(),
        }
    }
    /// The same condition with extra overrides.
    pub fn with_set(mut self, set: &[&str]) -> Self {
        self.set.extend(set.iter().map(|s| s.to_string()));
        self
    }
}

/// Result of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Condition name.
    pub condition: String,
    /// Seed.
    pub seed: u64,
    /// Number of pretraining classes.
    pub classes: usize,
    /// Neurons in the net.
    pub neurons: usize,
    /// Whether the pretraining labels nest inside the superclasses.
    pub aligned: bool,
    /// Expected max init correlation sigma_0 sqrt(2 ln N).
    pub init_level: f64,
    /// Feature responses at the end of training.
    pub responses: Responses,
    /// Training curve.
    pub curve: Vec<CurvePoint>,
    /// Coarse test errors by readout (the summed head only for aligned labels).
    pub errors: BTreeMap<Readout, Errors>,
    /// Final neuron x feature correlations (rows = neurons).
    pub correlations: Vec<Vec<f32>>,
}

/// The config of a condition: base config plus the condition's overrides (re-validated).
pub fn condition_config(
    base: &TheoryConfig,
    cond: &Condition,
) -> Result<TheoryConfig, TheoryError> {
    Ok(base.with_overrides(&format!("condition '{}'", cond.name), &cond.set)?)
}

/// Run one condition at one seed. `readouts` selects which readouts to compute (the summed
/// head is skipped for misaligned labels). `on_step` is called once per SGD step.
pub fn run(
    base: &TheoryConfig,
    cond: &Condition,
    seed: u64,
    readouts: &[Readout],
    parallel: bool,
    on_step: &(dyn Fn() + Sync),
) -> Result<RunResult, TheoryError> {
    let cfg = condition_config(base, cond)?;
    let dist = Distribution::new(&cfg.data, seed)?;
    let h = dist.hierarchy();
    let pool = (cfg.train.pool > 0).then_some(cfg.train.pool);
    if matches!(cond.labels, Relabeling::PerSample) && pool.is_none() {
        return Err(TheoryError::Study(format!(
            "condition '{}': one label per sample needs a fixed pool (set train.pool > 0)",
            cond.name
        )));
    }
    let mut lrng = stream_rng(derive_key(seed, Purpose::Labels), 0);
    let rule = cond.labels.build(h, 0, pool, &mut lrng)?;
    let classes = rule.num_classes();
    let neurons = if cond.width_matched {
        (cfg.net.neurons * h.num_leaves()).div_ceil(classes)
    } else {
        cfg.net.neurons
    };
    let mut net = init_net(&dist, &cfg.net, classes, neurons, seed);
    net.parallel = parallel;
    let source = Source::new(
        &dist,
        &rule,
        seed,
        cfg.train.pool,
        cfg.data.train_hard_fraction,
    );
    // per-sample labels on a pool: the class -> superclass map comes from the pool itself
    let rule = match (&source, &cond.labels) {
        (Source::Pool { samples, .. }, Relabeling::PerSample) => {
            let targets: Vec<usize> = samples
                .leaves
                .iter()
                .map(|&l| dist.leaf_superclass()[l])
                .collect();
            crate::hierarchy::LabelRule::from_table(
                "per_sample",
                (0..samples.len()).collect(),
                samples.len(),
                &targets,
                cfg.data.superclasses(),
            )?
        }
        _ => rule,
    };
    let test = TestSets::draw(&dist, seed);
    let probe_sets = TestSets {
        easy: test.easy.head(cfg.train.probe_test),
        hard: test.hard.head(cfg.train.probe_test),
    };
    let trained = pretrain(
        net,
        &dist,
        &rule,
        &source,
        &cfg.train,
        Some(&probe_sets),
        on_step,
    )?;
    let mut errors = BTreeMap::new();
    for r in readouts {
        let e = match r {
            Readout::Scratch => {
                return Err(TheoryError::Study(
                    "readout \"scratch\" is not a readout of a pretrained net: train the coarse condition instead".into(),
                ))
            }
            Readout::SummedHead => match rule.summed_head() {
                Some(map) => readout::summed_head(&trained.net, &map, &dist, &test),
                None => continue,
            },
            Readout::LinearProbe => readout::linear_probe(
                &trained.net,
                &dist,
                &cfg.readout,
                cfg.data.train_hard_fraction,
                seed,
                &test,
            ),
            Readout::Finetune => {
                if cfg.readout.finetune_steps == 0 {
                    continue;
                }
                readout::finetune(
                    &trained.net,
                    &dist,
                    &cfg.readout,
                    &cfg.train,
                    cfg.data.train_hard_fraction,
                    seed,
                    &test,
                )?
            }
        };
        errors.insert(*r, e);
    }
    let corr = correlations(&trained.net, &dist);
    Ok(RunResult {
        condition: cond.name.clone(),
        seed,
        classes,
        neurons: trained.net.neurons(),
        aligned: rule.is_aligned(),
        init_level: init_level(cfg.net.init_scale, trained.net.neurons()),
        responses: responses(&corr, cfg.data.superclasses()),
        curve: trained.curve,
        errors,
        correlations: corr.rows().into_iter().map(|r| r.to_vec()).collect(),
    })
}

/// Run every condition at every seed of `base.seeds`, in parallel (one net per thread).
/// Results come back ordered by condition, then seed. With `store`, each finished run is saved
/// at once as `<store>/<condition>-s<seed>.json` (atomically), and runs already saved there are
/// loaded instead of run again, so a killed grid resumes where it was.
pub fn run_grid(
    base: &TheoryConfig,
    conds: &[Condition],
    readouts: &[Readout],
    store: Option<&Path>,
    on_step: &(dyn Fn() + Sync),
) -> Result<Vec<RunResult>, TheoryError> {
    let jobs: Vec<(&Condition, u64)> = conds
        .iter()
        .flat_map(|c| base.seeds.iter().map(move |&s| (c, s)))
        .collect();
    jobs.par_iter()
        .map(|(c, s)| {
            let path = store.map(|d| d.join(cell_file(&c.name, *s)));
            if let Some(p) = &path {
                if p.exists() {
                    if let Ok(r) = read_json::<RunResult>(p) {
                        if r.condition == c.name && r.seed == *s {
                            return Ok(r);
                        }
                    }
                }
            }
            let r = run(base, c, *s, readouts, false, on_step)?;
            if let Some(p) = &path {
                write_json(p, &r)?;
            }
            Ok(r)
        })
        .collect()
}

/// The file, in a grid's store, of the run of the condition named `condition` at `seed`.
pub fn cell_file(condition: &str, seed: u64) -> String {
    format!("{}-s{seed}.json", file_safe(condition))
}

/// Steps still to run for a grid whose finished runs are saved in `store`.
pub fn remaining_steps(
    base: &TheoryConfig,
    conds: &[Condition],
    store: Option<&Path>,
) -> Result<u64, TheoryError> {
    let mut total = 0u64;
    for c in conds {
        let cfg = condition_config(base, c)?;
        for s in &base.seeds {
            let done = store
                .map(|d| d.join(cell_file(&c.name, *s)).exists())
                .unwrap_or(false);
            if !done {
                total += cfg.train.steps as u64;
            }
        }
    }
    Ok(total)
}

pub use crate::report::file_safe;
