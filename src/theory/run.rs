//! Conditions and runs: a condition is a pretraining label granularity plus optional config
//! changes (e.g. a width-matched net or hard training samples); a run is one condition at one
//! seed, giving its training curve, how training ended (steps, converged or not), final feature
//! responses and the coarse test errors of every readout. Grids of runs (conditions x parameter
//! values x seeds) execute in parallel with rayon, one network per thread, so results are the
//! same bits whatever the thread count.

use crate::hierarchy::Relabeling;
use crate::report::{file_safe, read_json, write_json, Progress, ResultsDir};
use crate::seed;
use crate::theory::config::TheoryConfig;
use crate::theory::data::Distribution;
use crate::theory::margin::{relu_hard_margin, Margin};
use crate::theory::net::Activation;
use crate::theory::readout::{self, Errors, Readout, TestSets};
use crate::theory::responses::{
    contrasts, correlations, init_level, responses, Contrasts, Responses,
};
use crate::theory::train::{init_net, pretrain, CurvePoint, Floors, Source};
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
    /// SGD steps taken.
    pub steps: usize,
    /// Whether training met the convergence rule before `train.max_steps`.
    pub converged: bool,
    /// Feature responses at the end of training.
    pub responses: Responses,
    /// How much more the neurons of a superclass respond to its features than the other
    /// neurons do, at the end of training (NaN for labels not aligned with the superclasses).
    pub contrasts: Contrasts,
    /// Training curve.
    pub curve: Vec<CurvePoint>,
    /// Coarse test errors by readout (the summed head only for aligned labels).
    pub errors: BTreeMap<Readout, Errors>,
    /// Final neuron x feature correlations (rows = neurons).
    pub correlations: Vec<Vec<f32>>,
    /// Final norm ||w_n|| of every neuron (rows of the correlations, in the same order).
    pub weight_norms: Vec<f32>,
    /// The summed head's hard-sample margin predicted from the final weights (ReLU nets with
    /// aligned labels and two superclasses; `theory/MODEL.md` §4.4).
    #[serde(default)]
    pub hard_margin: Option<Margin>,
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
        return Err(TheoryError::Invalid(format!(
            "condition '{}': one label per sample needs a fixed pool (set train.pool > 0)",
            cond.name
        )));
    }
    let mut lrng = seed::rng(seed, &["labels"]);
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
    let curve_sets = TestSets {
        easy: test.easy.head(cfg.train.curve_test),
        hard: test.hard.head(cfg.train.curve_test),
    };
    let level = init_level(cfg.net.init_scale, net.neurons());
    let floors = Floors {
        loss: cond.labels.loss_floor(),
        response: level,
    };
    let trained = pretrain(
        net,
        &dist,
        &rule,
        &source,
        &cfg.train,
        floors,
        Some(&curve_sets),
        on_step,
    )?;
    let mut errors = BTreeMap::new();
    for r in readouts {
        if let Some(e) = readout::read_out(*r, &trained.net, &rule, &dist, &cfg, seed, &test)? {
            errors.insert(*r, e);
        }
    }
    let corr = correlations(&trained.net, &dist);
    let per_class = trained.net.neurons() / classes.max(1);
    let neuron_superclass: Option<Vec<usize>> = rule.summed_head().map(|m| {
        (0..trained.net.neurons())
            .map(|n| m[n / per_class])
            .collect()
    });
    let corr_rows: Vec<Vec<f32>> = corr.rows().into_iter().map(|r| r.to_vec()).collect();
    let weight_norms: Vec<f32> = trained
        .net
        .w
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
        .collect();
    let hard_margin = match (&neuron_superclass, trained.net.act) {
        (Some(ns), Activation::Relu) => relu_hard_margin(
            &corr_rows,
            &weight_norms,
            ns,
            dist.leaf_superclass(),
            &cfg.data,
        ),
        _ => None,
    };
    Ok(RunResult {
        condition: cond.name.clone(),
        seed,
        classes,
        neurons: trained.net.neurons(),
        aligned: rule.is_aligned(),
        init_level: level,
        steps: trained.steps,
        converged: trained.converged,
        responses: responses(&corr, cfg.data.superclasses()),
        contrasts: contrasts(&corr, neuron_superclass.as_deref(), dist.leaf_superclass()),
        curve: trained.curve,
        errors,
        correlations: corr_rows,
        weight_norms,
        hard_margin,
    })
}

/// Progress over SGD steps with an ETA (a bar on a terminal, plain lines otherwise, one per
/// finished run); its length is set by [`run_grid`].
pub fn progress(what: &str) -> Progress {
    let pb = Progress::new(0, "steps", true);
    pb.set_message(what);
    pb
}

/// Opens the results folder `out` for `resolved` (see [`ResultsDir::prepare`]; the saved runs
/// are in `cells/`).
pub fn prepare_dir(out: &Path, resolved: &str, fresh: bool) -> Result<ResultsDir, TheoryError> {
    Ok(ResultsDir::prepare(out, resolved, fresh, &["cells"])?)
}

/// The file name, in a grid's store, of the run of the condition named `condition` at `seed`:
/// `<condition>-s<seed>.json`. The one place that names it: [`run_grid`]'s store, the shards of
/// a sweep and their merge ([`crate::theory::sharding`]) all read and write runs under it.
pub fn cell_file(condition: &str, seed: u64) -> String {
    format!("{}-s{seed}.json", file_safe(condition))
}

/// A saved run of `cond` at `seed`, if `store` holds one.
fn load_saved(store: Option<&Path>, cond: &Condition, seed: u64) -> Option<RunResult> {
    let p = store?.join(cell_file(&cond.name, seed));
    let r = read_json::<RunResult>(&p).ok()?;
    (r.condition == cond.name && r.seed == seed).then_some(r)
}

/// One line about a finished run, for progress output.
pub fn run_summary(r: &RunResult) -> String {
    format!(
        "{} seed {}: {} after {} steps",
        r.condition,
        r.seed,
        if r.converged {
            "converged"
        } else {
            "not converged"
        },
        r.steps
    )
}

/// Run every condition at every seed of `base.seeds`, in parallel (one net per thread).
/// Results come back ordered by condition, then seed. See [`run_jobs`] for the store and the
/// progress.
pub fn run_grid(
    base: &TheoryConfig,
    conds: &[Condition],
    readouts: &[Readout],
    store: Option<&Path>,
    progress: &Progress,
) -> Result<Vec<RunResult>, TheoryError> {
    let jobs: Vec<(&Condition, u64)> = conds
        .iter()
        .flat_map(|c| base.seeds.iter().map(move |&s| (c, s)))
        .collect();
    run_jobs(base, &jobs, readouts, store, progress)
}

/// Run the given runs (condition, seed) in parallel (one net per thread), results in the order
/// of `jobs` (a shard of a sweep runs only its own runs this way). With `store`, each finished
/// run is saved at once as `<store>/`[`cell_file`] (atomically), and runs already saved there
/// are loaded instead of run again, so a killed grid resumes where it was. A run's length is
/// not known in advance (it trains until it converges), so `progress` counts SGD steps against
/// each remaining run's `train.max_steps`, an upper bound: a run that converges early adds the
/// steps it did not need when it ends, so the count reaches the bound exactly and the ETA is a
/// pessimistic one. It also says what a resume loaded and marks a milestone per finished run.
pub fn run_jobs(
    base: &TheoryConfig,
    jobs: &[(&Condition, u64)],
    readouts: &[Readout],
    store: Option<&Path>,
    progress: &Progress,
) -> Result<Vec<RunResult>, TheoryError> {
    let mut budget = 0u64;
    let mut saved = Vec::with_capacity(jobs.len());
    for (c, s) in jobs {
        let r = load_saved(store, c, *s);
        if r.is_none() {
            budget += condition_config(base, c)?.train.max_steps as u64;
        }
        saved.push(r);
    }
    let loaded = saved.iter().filter(|r| r.is_some()).count();
    if loaded > 0 {
        progress.note(format!(
            "resuming: {loaded} of {} runs loaded from {}, {} to run",
            jobs.len(),
            store.map(|p| p.display().to_string()).unwrap_or_default(),
            jobs.len() - loaded
        ));
    }
    progress.set_length(budget);
    let finished = std::sync::atomic::AtomicUsize::new(loaded);
    let total = jobs.len();
    jobs.par_iter()
        .zip(saved.into_par_iter())
        .map(|((c, s), saved)| {
            if let Some(r) = saved {
                return Ok(r);
            }
            let r = run(base, c, *s, readouts, false, &|| progress.inc(1))?;
            let cap = condition_config(base, c)?.train.max_steps;
            progress.inc(cap.saturating_sub(r.steps) as u64);
            if let Some(store) = store {
                write_json(&store.join(cell_file(&c.name, *s)), &r)?;
            }
            let n = finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress.milestone(format!("run {n} of {total} done: {}", run_summary(&r)));
            Ok(r)
        })
        .collect()
}
