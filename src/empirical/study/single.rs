//! Single networks from a study config, for interactive use and debugging: `pretrain` trains one
//! network on one granularity (on the balanced design's training set) and saves its weights;
//! `finetune` loads a pretrained backbone, fits the linear probe and fine-tunes it on the target
//! labels. Both run on the study's [`Runner`] and read out through [`super::readouts`] (the same
//! training phases, checkpoints, readouts and scoring),
//! write `config.toml`, `epochs.csv` and `result.json` into their folder and resume from their
//! checkpoint if killed.

use std::path::Path;

use super::config::{EmbeddingSource, LabelSpec, Readout, StudyConfig};
use super::designs::load_data;
use super::labels::{build_labels, embeddings, labels_key};
use super::memory::{budget, check, study_needs};
use super::plan::{PhaseName, Trainee};
use super::readouts::{fine_tune_phase, summed_head, train_probe};
use super::results::{CellResult, EpochRecord, LabelSummary, ReadoutError};
use super::runner::{prepare_dir, resolved_config, Phase, RunOptions, Runner};
use crate::empirical::error::EmpiricalError;

/// Writes the result of a single run and returns its report.
fn finish(r: &Runner<'_>, cell: &CellResult) -> Result<String, EmpiricalError> {
    r.progress().finish();
    r.write_timings("single")?;
    r.dir().write_json("result.json", cell)?;
    r.dir().write_csv("epochs.csv", &cell.epochs)?;
    let mut s = format!(
        "{} (seed {}): {} classes, aligned {}\n",
        cell.condition, cell.seed, cell.classes, cell.aligned
    );
    for ro in &cell.readouts {
        s.push_str(&format!(
            "  {}: error {:.4} (easy {:.4}, hard {:.4})\n",
            ro.readout.name(),
            ro.error,
            ro.easy_error,
            ro.hard_error
        ));
    }
    s.push_str(&format!("results in {}", r.dir().root().display()));
    Ok(s)
}

/// The result record of a single run.
fn single_result(
    condition: String,
    family: &str,
    seed: u64,
    labels: LabelSummary,
    readouts: Vec<ReadoutError>,
    epochs: Vec<EpochRecord>,
) -> CellResult {
    CellResult {
        design: "balanced".into(),
        condition,
        family: family.into(),
        seed,
        classes: labels.classes,
        used_classes: labels.classes,
        aligned: labels.aligned,
        purity: labels.purity,
        readouts,
        epochs,
        fine_probe: None,
    }
}

/// Pretrains one network on granularity `name` ("target" for the target labels) and saves
/// `weights.safetensors` in `opts.out`; returns a short report (with the summed-head error when
/// the labels are nested in the targets).
pub fn pretrain(
    cfg: &StudyConfig,
    name: &str,
    seed: u64,
    opts: &RunOptions,
) -> Result<String, EmpiricalError> {
    let tl = cfg.data.target_level;
    let spec = if name == "target" {
        LabelSpec::level(tl)
    } else {
        cfg.granularities
            .iter()
            .find(|g| g.name == name)
            .map(|g| g.labels.clone())
            .ok_or_else(|| {
                EmpiricalError::invalid(
                    "--granularity",
                    format!(
                        "'{name}' is not a granularity of {} (choose from: target, {})",
                        cfg.name,
                        cfg.granularities
                            .iter()
                            .map(|g| g.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?
    };
    if spec.needs_embeddings() && cfg.embedding.source != EmbeddingSource::RandomNet {
        return Err(EmpiricalError::invalid(
            "embedding.source",
            "a single pretraining run can only embed with 'random_net' (the ensemble belongs to a study): pass --set embedding.source=\"random_net\"",
        ));
    }
    let data = load_data(cfg, opts.data.as_deref())?;
    check(&study_needs(cfg, &data.train, &data.test), &budget(cfg))?;
    let resolved = format!(
        "# pretrain {name}, seed {seed}\n{}",
        resolved_config(cfg, opts.kernels)?
    );
    let build = |emb: Option<&ndarray::Array2<f32>>| {
        let key = labels_key(cfg, name);
        build_labels(&spec, &data.train, tl, emb, key, cfg.embedding.iters)
    };
    // labels from the hierarchy are built (and checked) before the folder is made
    let built = if spec.needs_embeddings() {
        None
    } else {
        Some(build(None)?)
    };
    let r = Runner::new(cfg, prepare_dir(&opts.out, &resolved, false)?, &data, opts);
    let l = match built {
        Some(l) => l,
        None => build(Some(&embeddings(&r, &data.train)?))?,
    };
    let who = Trainee {
        design: "single",
        condition: name,
        seed,
    };
    let model = r.model(l.num_classes(), who.key("init"))?;
    r.progress()
        .set_length((cfg.train.pretrain_epochs * data.train.len) as u64);
    let phase = Phase {
        name: PhaseName::Pretrain,
        set: &data.train,
        labels: &l.labels,
        epochs: cfg.train.pretrain_epochs,
        lr: &cfg.train.pretrain_lr,
        first_epoch: 0,
    };
    let epochs = r.train(&model, &who, &phase)?;
    model.save_weights(&r.dir().path("weights.safetensors"))?;
    r.dir().write_json("labels.json", &l)?;
    let mut readouts = Vec::new();
    let logits = r.test_logits(&model)?;
    if let Some(m) = summed_head(&l, &logits, r.num_targets())? {
        readouts.push(r.score(Readout::SummedHead, &m, data.hard_only()));
    }
    r.drop_checkpoints(&who, &[PhaseName::Pretrain]);
    let cell = single_result(
        name.into(),
        spec.family(),
        seed,
        l.summary(),
        readouts,
        epochs,
    );
    finish(&r, &cell)
}

/// Loads the backbone of `weights`, fits the linear probe on its frozen features and fine-tunes
/// it with a new head on the target labels; returns a short report.
pub fn finetune(
    cfg: &StudyConfig,
    weights: &Path,
    seed: u64,
    opts: &RunOptions,
) -> Result<String, EmpiricalError> {
    let data = load_data(cfg, opts.data.as_deref())?;
    check(&study_needs(cfg, &data.train, &data.test), &budget(cfg))?;
    let resolved = format!(
        "# finetune {}, seed {seed}\n{}",
        weights.display(),
        resolved_config(cfg, opts.kernels)?
    );
    let r = Runner::new(cfg, prepare_dir(&opts.out, &resolved, false)?, &data, opts);
    let targets = data.train.labels_at_level(cfg.data.target_level);
    let who = Trainee {
        design: "single",
        condition: "finetune",
        seed,
    };
    let model = r.model(r.num_targets(), who.key("head"))?;
    model.load_backbone(weights)?;
    let hard = data.hard_only();
    let train_features = r.features(&model, &data.train)?;
    let test_features = r.features(&model, &data.test)?;
    let probe = train_probe(&r, &train_features, &targets, &who)?;
    let mut readouts = vec![r.score(Readout::LinearProbe, &probe.logits(&test_features)?, hard)];
    r.progress()
        .set_length((cfg.train.finetune_epochs * data.train.len) as u64);
    let epochs = fine_tune_phase(
        &r,
        &model,
        &data.train,
        &targets,
        cfg.train.finetune_epochs,
        0,
        &who,
    )?;
    readouts.push(r.score(Readout::Finetune, &r.test_logits(&model)?, hard));
    model.save_weights(&r.dir().path("weights.safetensors"))?;
    r.drop_checkpoints(&who, &[PhaseName::FINETUNE]);
    let cell = single_result(
        format!("finetune of {}", weights.display()),
        "",
        seed,
        LabelSummary::targets(r.num_targets()),
        readouts,
        epochs,
    );
    finish(&r, &cell)
}
