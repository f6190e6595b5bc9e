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

use super::config::StudyConfig;
use super::designs::{designs, load_data, Design, StudyData};
use super::hard::{assign_hard_subsets, ensemble, ensemble_epochs, mirror_ensemble};
use super::labels::{self, PretrainLabels};
use super::memory::{budget, check, study_needs};
use super::plan::{cell_epochs, cells_by_design, Cell, Part, PhaseName, Trainee};
use super::readouts::{
    fine_class_probe, frozen_readouts, scratch, trained_readouts, FrozenFeatures,
};
use super::reports::summary::StudySummary;
use super::reports::write_reports;
use super::results::{
    DesignInfo, EpochRecord, LabelSummary, DESIGNS_FILE, HARD_SUBSETS_FILE, MEMBERS_FILE,
    SUBSETS_FILE,
};
use super::runner::{prepare_dir, resolved_config, CellOutcome, Phase, RunOptions, Runner};
use super::sharding::check_prepared;
use crate::cluster::Shard;
use crate::empirical::error::EmpiricalError;
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
        Part::Whole | Part::Prepare => {
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
            .write_json(HARD_SUBSETS_FILE, &hard_subsets)?;
        runner.prep_dir().write_json(SUBSETS_FILE, &subsets)?;
        let infos: Vec<DesignInfo> = designs.iter().map(|d| d.info(cfg)).collect();
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
    check(&study_needs(cfg, &data.train, &data.test), &budget(cfg))?;
    for design in designs {
        labels::check_buildable(cfg, design)?;
    }
    Ok(())
}

/// The baseline: the target labels from scratch, for the whole schedule.
fn baseline(r: &Runner, design: &Design, who: &Trainee) -> Result<CellOutcome, EmpiricalError> {
    let cfg = r.config();
    let targets = design.train.labels_at_level(cfg.data.target_level);
    let model = r.model(r.num_targets(), who.key("init"))?;
    let phase = Phase {
        name: PhaseName::Baseline,
        set: &design.train,
        labels: &targets,
        epochs: cell_epochs(cfg, design.per_leaf, &Cell::Baseline),
        lr: &cfg.train.pretrain_lr,
        first_epoch: 0,
    };
    let epochs = r.train(&model, who, &phase)?;
    let mut frozen = FrozenFeatures::default();
    Ok(CellOutcome {
        readouts: vec![scratch(r, design, &model)?],
        epochs,
        labels: LabelSummary::targets(r.num_targets()),
        fine_probe: fine_class_probe(r, design, &model, who, &mut frozen)?,
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
    let model = r.model(labels.num_classes(), who.key("init"))?;
    let pretrain_epochs = design.epochs(cfg, t.pretrain_epochs);
    let pretrain = Phase {
        name: PhaseName::Pretrain,
        set: &design.train,
        labels: &labels.labels,
        epochs: pretrain_epochs,
        lr: &t.pretrain_lr,
        first_epoch: 0,
    };
    let mut epochs: Vec<EpochRecord> = r.train(&model, who, &pretrain)?;
    let mut frozen = FrozenFeatures::default();
    let (mut readouts, probe) = frozen_readouts(r, design, labels, &model, who, &mut frozen)?;
    let fine_probe = fine_class_probe(r, design, &model, who, &mut frozen)?;
    let (trained, trained_epochs) =
        trained_readouts(r, design, model, probe, who, &mut frozen, pretrain_epochs)?;
    readouts.extend(trained);
    epochs.extend(trained_epochs);
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
        name: PhaseName::Direct,
        set: &design.train,
        labels: &labels.labels,
        epochs: cell_epochs(cfg, design.per_leaf, &Cell::Baseline),
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
        fine_probe: fine_class_probe(r, design, &model, who, &mut frozen)?,
    })
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
                    images += cell_epochs(cfg, design.per_leaf, cell) * design.train.len;
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
