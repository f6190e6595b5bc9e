//! The experiment, top to bottom: what a study runs and in which order.
//!
//! For each design (the training set and its easy/hard test split), each seed and each
//! condition:
//! * **baseline**: a network trained on the target labels from scratch for `pretrain_epochs +
//!   finetune_epochs` epochs with the pretraining schedule (readout `scratch`);
//! * **each granularity**: a network pretrained on its labels for `pretrain_epochs`, then read out
//!   on the target: the summed head (the summed probability of the classes nested in each target;
//!   no training; labels nested in the targets only), a linear
//!   probe on the frozen features, and fine-tuning (a new head, the whole network trained on the
//!   target labels for `finetune_epochs`).
//! * **each granularity, directly** (`train.direct`): a network trained on its labels for the
//!   baseline's whole schedule, read out with the summed head and a linear probe, no further
//!   training (the fair comparison with the baseline: same epochs, only the labels differ).
//!
//! With `data.sizes` every size is its own design, and with `train.equal_steps` each design's
//! epochs are scaled so that every network takes the same number of SGD steps.
//!
//! Before the cells, the preparation: the data, the designs, the ensemble that defines the
//! balanced design's hard test images on real data, and each design's label sets. After them:
//! the reports. Every cell is saved when it finishes and every training phase checkpoints each
//! epoch, so a killed study resumes where it stopped ([`Runner`]). A study can also run in
//! parts: the preparation alone ([`prepare_study`]), then shards that each run the cells they
//! own ([`run_shard`]), merged by [`super::sharding::merge`].

use super::config::{FinetuneHead, Readout, StudyConfig};
use super::designs::{
    design_plan, designs, load_data, Design, DesignInfo, StudyData, DESIGNS_FILE,
};
use super::hard::{
    assign_hard_subsets, ensemble, ensemble_epochs, mirror_ensemble, MEMBERS_FILE, SUBSETS_FILE,
};
use super::labels::{self, LabelSummary, PretrainLabels};
use super::memory::{budget, check, study_needs};
use super::phase::{Phase, Trainee};
use super::report::write_reports;
use super::results::{EpochRecord, FineProbe, ReadoutError};
use super::runner::{error_rate, prepare_dir, Cell, CellOutcome, RunOptions, Runner};
use super::sharding::check_prepared;
use super::summary::StudySummary;
use crate::cluster::Shard;
use crate::empirical::error::EmpiricalError;
use crate::empirical::model::{Kernels, Model};
use crate::empirical::probe::LinearProbe;
use ndarray::Array2;
use std::path::PathBuf;

/// Runs (or resumes) the study `cfg` into `opts.out` and writes its reports.
pub fn run_study(cfg: &StudyConfig, opts: &RunOptions) -> Result<StudySummary, EmpiricalError> {
    run(cfg, opts, Part::Whole)?;
    write_reports(&opts.out)
}

/// Runs (or resumes) only the study's preparation into `opts.out`: the ensemble, the hard test
/// images and the label sets of every design, which the shards read.
pub fn prepare_study(cfg: &StudyConfig, opts: &RunOptions) -> Result<(), EmpiricalError> {
    run(cfg, opts, Part::Prepare)
}

/// Runs (or resumes) the cells that `shard` owns into its folder `opts.out/shards/I-of-N`,
/// reading the preparation from `opts.out` (refused if it has not run). Returns the shard's
/// folder; [`super::sharding::merge`] makes the study's reports from the shards' cells.
pub fn run_shard(
    cfg: &StudyConfig,
    opts: &RunOptions,
    shard: Shard,
) -> Result<PathBuf, EmpiricalError> {
    run(cfg, opts, Part::Shard(shard))?;
    Ok(shard.dir(&opts.out))
}

/// Which part of a study a run does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Part {
    /// The preparation and every cell.
    Whole,
    /// The preparation only.
    Prepare,
    /// The cells of one shard (the preparation must have run).
    Shard(Shard),
}

impl Part {
    /// Whether the run does the cell at `position` among the cells of one seed, at `seed`.
    fn runs(&self, position: usize, seed: u64) -> bool {
        match self {
            Part::Whole => true,
            Part::Prepare => false,
            Part::Shard(s) => s.owns(position, seed),
        }
    }
}

/// Runs `part` of the study `cfg`.
fn run(cfg: &StudyConfig, opts: &RunOptions, part: Part) -> Result<(), EmpiricalError> {
    // Everything is checked before the results folder is touched.
    let data = load_data(cfg, opts.data.as_deref())?;
    let mut designs = designs(cfg, &data);
    check_run(cfg, &data, &designs)?;
    let resolved = resolved_config(cfg, opts.kernels)?;
    let runner = match part {
        Part::Shard(shard) => {
            let prep = check_prepared(cfg, &opts.out, &resolved)?;
            let dir = prepare_dir(&shard.dir(&opts.out), &resolved, opts.fresh)?;
            Runner::new(cfg, dir, &data, opts).with_prep_dir(prep)
        }
        _ => {
            let dir = prepare_dir(&opts.out, &resolved, opts.fresh)?;
            Runner::new(cfg, dir, &data, opts)
        }
    };
    let plan = cells_by_design(cfg);
    announce_work(&runner, &designs, &plan, part);

    // The preparation (read back where saved): the ensemble (hard test images of the balanced
    // design on real data, k-means encoder), then each design's label sets.
    let members = ensemble(&runner)?;
    let mirror = mirror_ensemble(&runner)?;
    let (hard_subsets, subsets) =
        assign_hard_subsets(&runner, &mut designs, members.as_deref(), mirror.as_deref());
    if !matches!(part, Part::Shard(_)) {
        runner
            .prep_dir()
            .write_json("hard_subsets.json", &hard_subsets)?;
        runner.prep_dir().write_json(SUBSETS_FILE, &subsets)?;
        let infos: Vec<DesignInfo> = designs.iter().map(|d| DesignInfo::of(cfg, d)).collect();
        runner.prep_dir().write_json(DESIGNS_FILE, &infos)?;
    }

    for (design, (_, cells)) in designs.iter().zip(&plan) {
        // one label set per design, or per seed where each seed draws its own images
        let shared = design.for_seed(cfg, &data, 0).draw_seed.is_none();
        let shared_labels = if shared {
            Some(labels::for_design(&runner, design)?)
        } else {
            None
        };
        for &seed in &cfg.seeds {
            let seeded = design.for_seed(cfg, &data, seed);
            let own_labels;
            let labels = match &shared_labels {
                Some(l) => l,
                None => {
                    own_labels = labels::for_design(&runner, &seeded)?;
                    &own_labels
                }
            };
            let design = &seeded;
            for (position, cell) in cells {
                if !part.runs(*position, seed) {
                    continue;
                }
                runner.run_cell(design, cell, seed, |who| match cell {
                    Cell::Baseline => baseline(&runner, design, who),
                    Cell::Pretrained { granularity } => {
                        pretrained(&runner, design, labels.get(&granularity.name)?, who)
                    }
                    Cell::Direct { granularity, .. } => {
                        direct(&runner, design, labels.get(&granularity.name)?, who)
                    }
                })?;
            }
        }
    }
    runner.progress().finish();
    Ok(())
}

/// Checks what can be checked before training: the memory the run needs, and that every label
/// set can be built on its design's training set.
pub fn check_run(
    cfg: &StudyConfig,
    data: &StudyData,
    designs: &[Design],
) -> Result<(), EmpiricalError> {
    check(&study_needs(cfg, data), &budget(cfg))?;
    for design in designs {
        labels::check_buildable(cfg, design)?;
    }
    Ok(())
}

/// The cells of one seed, design by design (in [`design_plan`]'s order), each with its
/// position among all of them (what `--shard` assigns): per design the baseline, then every
/// granularity of the design in the config's order (pretrained, then, where the granularity
/// runs its direct arm, trained directly).
pub fn cells_by_design(cfg: &StudyConfig) -> Vec<(String, Vec<(usize, Cell<'_>)>)> {
    let mut position = 0;
    design_plan(cfg)
        .into_iter()
        .map(|(design, granularities)| {
            let mut cells = vec![Cell::Baseline];
            for granularity in &cfg.granularities {
                if granularities.contains(&granularity.name) {
                    if granularity.pretrained {
                        cells.push(Cell::Pretrained { granularity });
                    }
                    if granularity.runs_direct(&cfg.train) {
                        let name = format!("{} direct", granularity.name);
                        cells.push(Cell::Direct { granularity, name });
                    }
                }
            }
            let cells = cells
                .into_iter()
                .map(|c| {
                    position += 1;
                    (position - 1, c)
                })
                .collect();
            (design, cells)
        })
        .collect()
}

/// The baseline: the target labels from scratch, for the whole schedule.
fn baseline(r: &Runner, design: &Design, who: &Trainee) -> Result<CellOutcome, EmpiricalError> {
    let cfg = r.config();
    let targets = design.train.labels_at_level(cfg.data.target_level);
    let model = r.model(r.num_targets(), who.key("init"))?;
    let phase = Phase {
        name: "baseline",
        set: &design.train,
        labels: &targets,
        epochs: cell_epochs(cfg, design, &Cell::Baseline),
        lr: &cfg.train.pretrain_lr,
        first_epoch: 0,
    };
    let epochs = r.train(&model, who, &phase)?;
    let logits = r.test_logits(&model)?;
    let train_logits = r.logits(&model, &design.train)?;
    let hard = design.subsets();
    let mut frozen = FrozenFeatures::default();
    Ok(CellOutcome {
        readouts: vec![r.score_with_train(
            Readout::Scratch,
            &logits,
            hard,
            &train_logits,
            &targets,
        )],
        epochs,
        labels: LabelSummary::targets(r.num_targets()),
        fine_probe: fine_probe_of(r, design, &model, who, &mut frozen)?,
    })
}

/// A granularity: pretrain on its labels, then read the network out on the target labels.
fn pretrained(
    r: &Runner,
    design: &Design,
    labels: &PretrainLabels,
    who: &Trainee,
) -> Result<CellOutcome, EmpiricalError> {
    let cfg = r.config();
    let t = &cfg.train;
    let hard = design.subsets();
    let targets = design.train.labels_at_level(cfg.data.target_level);
    let model = r.model(labels.num_classes(), who.key("init"))?;
    let pretrain_epochs = design.epochs(cfg, t.pretrain_epochs);
    let pretrain = Phase {
        name: "pretrain",
        set: &design.train,
        labels: &labels.labels,
        epochs: pretrain_epochs,
        lr: &t.pretrain_lr,
        first_epoch: 0,
    };
    let mut epochs: Vec<EpochRecord> = r.train(&model, who, &pretrain)?;
    let mut frozen = FrozenFeatures::default();
    let (mut readouts, probe) = frozen_readouts(r, design, labels, &model, who, &mut frozen)?;
    let fine_probe = fine_probe_of(r, design, &model, who, &mut frozen)?;
    if t.readouts.contains(&Readout::Finetune) {
        let mut model = model;
        match t.finetune_head {
            FinetuneHead::Fresh => model.replace_head(r.num_targets(), who.key("head"))?,
            FinetuneHead::Probe => {
                let probe = match probe {
                    Some(p) => p,
                    None => target_probe(r, design, &model, who, &mut frozen)?,
                };
                let (w, b) = probe.as_linear();
                model.replace_head_with(r.num_targets(), w, b)?;
            }
        }
        let start_train_error = error_rate(&r.logits(&model, &design.train)?, &targets);
        let finetune = Phase {
            name: "finetune",
            set: &design.train,
            labels: &targets,
            epochs: design.epochs(cfg, t.finetune_epochs),
            lr: &t.finetune_lr,
            first_epoch: pretrain_epochs,
        };
        epochs.extend(r.train(&model, who, &finetune)?);
        let logits = r.test_logits(&model)?;
        let train_logits = r.logits(&model, &design.train)?;
        readouts.push(ReadoutError {
            start_train_error,
            ..r.score_with_train(Readout::Finetune, &logits, hard, &train_logits, &targets)
        });
    }
    Ok(CellOutcome {
        readouts,
        epochs,
        labels: labels.summary(),
        fine_probe,
    })
}

/// The direct arm: the network trained on a granularity's labels for the baseline's whole
/// schedule, read out without further training (summed head, linear probe).
fn direct(
    r: &Runner,
    design: &Design,
    labels: &PretrainLabels,
    who: &Trainee,
) -> Result<CellOutcome, EmpiricalError> {
    let cfg = r.config();
    let t = &cfg.train;
    let model = r.model(labels.num_classes(), who.key("init"))?;
    let phase = Phase {
        name: "direct",
        set: &design.train,
        labels: &labels.labels,
        epochs: cell_epochs(cfg, design, &Cell::Baseline),
        lr: &t.pretrain_lr,
        first_epoch: 0,
    };
    let epochs = r.train(&model, who, &phase)?;
    let mut frozen = FrozenFeatures::default();
    let (readouts, _) = frozen_readouts(r, design, labels, &model, who, &mut frozen)?;
    Ok(CellOutcome {
        readouts,
        epochs,
        labels: labels.summary(),
        fine_probe: fine_probe_of(r, design, &model, who, &mut frozen)?,
    })
}

/// The readouts of a network trained on `labels` that train nothing of it: the summed head and
/// the linear probe on its frozen features (those the config asks for); also returns the probe.
fn frozen_readouts(
    r: &Runner,
    design: &Design,
    labels: &PretrainLabels,
    model: &Model,
    who: &Trainee,
    frozen: &mut FrozenFeatures,
) -> Result<(Vec<ReadoutError>, Option<LinearProbe>), EmpiricalError> {
    let t = &r.config().train;
    let hard = design.subsets();
    let targets = design.train.labels_at_level(r.config().data.target_level);
    let mut readouts = Vec::new();
    if t.readouts.contains(&Readout::SummedHead) {
        let logits = r.test_logits(model)?;
        if let Some(m) = labels.summed_head(&logits, r.num_targets())? {
            let train = labels
                .summed_head(&r.logits(model, &design.train)?, r.num_targets())?
                .unwrap_or(m.clone());
            readouts.push(r.score_with_train(Readout::SummedHead, &m, hard, &train, &targets));
        }
    }
    let mut probe = None;
    if t.readouts.contains(&Readout::LinearProbe) {
        let p = target_probe(r, design, model, who, frozen)?;
        let (train_f, test_f) = frozen.get(r, model, design)?;
        let logits = p.logits(test_f)?;
        let train_logits = p.logits(train_f)?;
        readouts.push(r.score_with_train(
            Readout::LinearProbe,
            &logits,
            hard,
            &train_logits,
            &targets,
        ));
        probe = Some(p);
    }
    Ok((readouts, probe))
}

/// The linear probe of the network's frozen features for the target labels.
fn target_probe(
    r: &Runner,
    design: &Design,
    model: &Model,
    who: &Trainee,
    frozen: &mut FrozenFeatures,
) -> Result<LinearProbe, EmpiricalError> {
    r.progress()
        .set_message(format!("{} linear probe", who.label()));
    let targets = design.train.labels_at_level(r.config().data.target_level);
    let (train_f, _) = frozen.get(r, model, design)?;
    LinearProbe::train(
        train_f,
        &targets,
        r.num_targets(),
        &r.config().train.probe,
        who.key("probe"),
    )
}

/// The fine-class probe of the network's frozen features (`train.fine_probe`), else none.
fn fine_probe_of(
    r: &Runner,
    design: &Design,
    model: &Model,
    who: &Trainee,
    frozen: &mut FrozenFeatures,
) -> Result<Option<FineProbe>, EmpiricalError> {
    if !r.config().train.fine_probe {
        return Ok(None);
    }
    r.progress()
        .set_message(format!("{} fine-class probe", who.label()));
    let (train_f, test_f) = frozen.get(r, model, design)?;
    let probe = super::fine_probe::fine_probe(
        train_f,
        &design.train,
        test_f,
        &r.data().test,
        r.config().data.target_level,
        &r.config().train.probe,
        who.key("fine_probe"),
    )?;
    Ok(Some(probe))
}

/// The frozen features of a network on the design's training images and on the test images,
/// extracted once for every probe of the network.
#[derive(Default)]
struct FrozenFeatures(Option<(Array2<f32>, Array2<f32>)>);

impl FrozenFeatures {
    fn get(
        &mut self,
        r: &Runner,
        model: &Model,
        design: &Design,
    ) -> Result<(&Array2<f32>, &Array2<f32>), EmpiricalError> {
        if self.0.is_none() {
            let train = r.features(model, &design.train)?;
            let test = r.features(model, &r.data().test)?;
            self.0 = Some((train, test));
        }
        let (a, b) = self.0.as_ref().ok_or_else(|| {
            EmpiricalError::invalid("features", "frozen features were not extracted")
        })?;
        Ok((a, b))
    }
}

/// Training epochs of a cell in `design` (the baseline's and the direct arm's: the whole
/// schedule; see [`Design::epochs`]).
fn cell_epochs(cfg: &StudyConfig, design: &Design, cell: &Cell) -> usize {
    let t = &cfg.train;
    let (pre, fine) = (
        design.epochs(cfg, t.pretrain_epochs),
        design.epochs(cfg, t.finetune_epochs),
    );
    match cell {
        Cell::Baseline | Cell::Direct { .. } => pre + fine,
        Cell::Pretrained { .. } if t.readouts.contains(&Readout::Finetune) => pre + fine,
        Cell::Pretrained { .. } => pre,
    }
}

/// Sets the progress display to the work left (the ensemble and the unsaved cells the run does,
/// in training images) and, when something was saved before, says what was loaded and what
/// remains.
fn announce_work(
    r: &Runner,
    designs: &[Design],
    plan: &[(String, Vec<(usize, Cell)>)],
    part: Part,
) {
    let cfg = r.config();
    let mut images = 0;
    let (mut cells_total, mut cells_saved) = (0, 0);
    let mut ensemble_saved = false;
    if let (Some(e), Some(epochs)) = (&cfg.hard.ensemble, ensemble_epochs(r)) {
        ensemble_saved = r.prep_dir().path(MEMBERS_FILE).exists();
        if !ensemble_saved {
            images += e.seeds.len() * epochs * r.data().train.len;
        }
    }
    for (design, (_, cells)) in designs.iter().zip(plan) {
        for &seed in &cfg.seeds {
            for (position, cell) in cells {
                if !part.runs(*position, seed) {
                    continue;
                }
                cells_total += 1;
                if r.is_done(&design.name, cell.condition(), seed) {
                    cells_saved += 1;
                } else {
                    images += cell_epochs(cfg, design, cell) * design.train.len;
                }
            }
        }
    }
    if cells_saved > 0 || ensemble_saved {
        r.progress().note(format!(
            "resuming {}: loaded {cells_saved} of {}{}; {} to run",
            r.dir().root().display(),
            crate::report::count(cells_total, "cell", "cells"),
            if ensemble_saved {
                " and the ensemble"
            } else {
                ""
            },
            crate::report::count(cells_total - cells_saved, "cell", "cells")
        ));
    }
    r.progress().set_length(images as u64);
}

/// The config as saved in the results folder: results of other kernels agree only to rounding,
/// so the kernels are part of it (never mixed in one folder).
pub(crate) fn resolved_config(
    cfg: &StudyConfig,
    kernels: Kernels,
) -> Result<String, EmpiricalError> {
    let mut resolved = crate::config::to_toml(cfg)?;
    if kernels != Kernels::Fast {
        resolved.push_str(&format!("\n# trained with --kernels {}\n", kernels.name()));
    }
    Ok(resolved)
}
