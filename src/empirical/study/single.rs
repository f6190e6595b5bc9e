//! Single networks from a study config, for interactive use and debugging: `pretrain` trains one
//! network on one granularity (on the balanced design's training set) and saves its weights;
//! `finetune` loads a pretrained backbone, fits the linear probe and fine-tunes it on the target
//! labels. Both write `config.toml`, `epochs.csv` and `result.json` into their folder and resume
//! from their checkpoint if killed.

use std::path::Path;

use candle_core::Device;

use super::config::{EmbeddingSource, LabelSpec, Readout, StudyConfig};
use super::labels::build_labels;
use super::{derive, load_data, prepare_dir, progress_bar, CellResult, Runner, EVAL_BATCH};
use crate::empirical::error::EmpiricalError;
use crate::empirical::model::Model;
use crate::empirical::probe::LinearProbe;
use crate::empirical::train::{evaluate, extract_features};

fn runner<'a>(
    cfg: &'a StudyConfig,
    out: &Path,
    data: &'a super::StudyData,
    device: &Device,
    what: &str,
) -> Result<Runner<'a>, EmpiricalError> {
    let resolved = format!(
        "# {what}\n{}",
        crate::config::to_toml(cfg)
            .map_err(|e| EmpiricalError::invalid("config", e.to_string()))?
    );
    let dir = prepare_dir(out, &resolved, false)?;
    let tl = cfg.data.target_level;
    Ok(Runner {
        cfg,
        dir,
        device: device.clone(),
        test: &data.test,
        test_targets: data.test.labels_at_level(tl),
        num_targets: data.train.hierarchy.num_classes(tl),
        mean_std: data.mean_std,
        bar: progress_bar(true),
        kernels: crate::empirical::model::Kernels::Fast,
    })
}

fn finish(r: &Runner<'_>, cell: &CellResult) -> Result<String, EmpiricalError> {
    r.bar.finish();
    r.dir.write_json("result.json", cell)?;
    r.dir.write_csv("epochs.csv", &cell.epochs)?;
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
    s.push_str(&format!("results in {}", r.dir.root().display()));
    Ok(s)
}

/// Pretrains one network on granularity `name` ("target" for the target labels) and saves
/// `weights.safetensors` in `out`; returns a short report (with the mapped-head error when the
/// labels are nested in the targets).
pub fn pretrain(
    cfg: &StudyConfig,
    name: &str,
    seed: u64,
    out: &Path,
    data_dir: Option<&Path>,
    device: &Device,
) -> Result<String, EmpiricalError> {
    let tl = cfg.data.target_level;
    let spec = if name == "target" {
        LabelSpec::Level { level: tl }
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
    let data = load_data(cfg, data_dir)?;
    let r = runner(
        cfg,
        out,
        &data,
        device,
        &format!("pretrain {name}, seed {seed}"),
    )?;
    let emb = if spec.needs_embeddings() {
        if cfg.embedding.source != EmbeddingSource::RandomNet {
            return Err(EmpiricalError::invalid(
                "embedding.source",
                "a single pretraining run can only embed with 'random_net' (the ensemble belongs to a study): pass --set embedding.source=\"random_net\"",
            ));
        }
        let m = Model::new(cfg.model, r.num_targets, cfg.embedding.seed, device)?;
        Some(extract_features(
            &m,
            &data.train,
            data.mean_std.0,
            data.mean_std.1,
            EVAL_BATCH,
        )?)
    } else {
        None
    };
    let l = build_labels(
        &spec,
        &data.train,
        tl,
        emb.as_ref(),
        derive(cfg.embedding.seed, name),
        cfg.embedding.iters,
    )?;
    let model = Model::new(cfg.model, l.num_classes, derive(seed, "init"), device)?;
    r.bar
        .set_length((cfg.train.pretrain_epochs * data.train.len) as u64);
    let epochs = r.train_phase(
        &model,
        &data.train,
        &l.labels,
        cfg.train.pretrain_epochs,
        &cfg.train.pretrain_lr,
        derive(seed, "pretrain"),
        &r.dir.path("pretrain.ckpt"),
        ("single", name, seed, "pretrain"),
    )?;
    model.save_weights(&r.dir.path("weights.safetensors"))?;
    r.dir.write_json("labels.json", &l)?;
    let mut readouts = Vec::new();
    let logits = evaluate(
        &model,
        &data.test,
        data.mean_std.0,
        data.mean_std.1,
        EVAL_BATCH,
    )?;
    if let Some(m) = l.mapped_logits(&logits, r.num_targets)? {
        readouts.push(r.readout(Readout::SummedHead, &m, data.synthetic_hard.as_deref())?);
    }
    let _ = std::fs::remove_file(r.dir.path("pretrain.ckpt"));
    let cell = CellResult {
        design: "balanced".into(),
        condition: name.into(),
        family: spec.family(tl).into(),
        seed,
        classes: l.num_classes,
        used_classes: l.num_classes,
        aligned: l.aligned,
        purity: l.purity,
        readouts,
        epochs,
        seconds: 0.0,
    };
    finish(&r, &cell)
}

/// Loads the backbone of `weights`, fits the linear probe on its frozen features and fine-tunes
/// it with a new head on the target labels; returns a short report.
pub fn finetune(
    cfg: &StudyConfig,
    weights: &Path,
    seed: u64,
    out: &Path,
    data_dir: Option<&Path>,
    device: &Device,
) -> Result<String, EmpiricalError> {
    let data = load_data(cfg, data_dir)?;
    let r = runner(
        cfg,
        out,
        &data,
        device,
        &format!("finetune {}, seed {seed}", weights.display()),
    )?;
    let (mean, std) = data.mean_std;
    let targets = data.train.labels_at_level(cfg.data.target_level);
    let model = Model::new(cfg.model, r.num_targets, derive(seed, "head"), device)?;
    model.load_backbone(weights)?;
    let hard = data.synthetic_hard.as_deref();
    let ftr = extract_features(&model, &data.train, mean, std, EVAL_BATCH)?;
    let fte = extract_features(&model, &data.test, mean, std, EVAL_BATCH)?;
    let p = LinearProbe::train(
        &ftr,
        &targets,
        r.num_targets,
        &cfg.train.probe,
        derive(seed, "probe"),
    )?;
    let mut readouts = vec![r.readout(Readout::LinearProbe, &p.logits(&fte)?, hard)?];
    r.bar
        .set_length((cfg.train.finetune_epochs * data.train.len) as u64);
    let epochs = r.train_phase(
        &model,
        &data.train,
        &targets,
        cfg.train.finetune_epochs,
        &cfg.train.finetune_lr,
        derive(seed, "finetune"),
        &r.dir.path("finetune.ckpt"),
        ("single", "finetune", seed, "finetune"),
    )?;
    let logits = evaluate(&model, &data.test, mean, std, EVAL_BATCH)?;
    readouts.push(r.readout(Readout::Finetune, &logits, hard)?);
    model.save_weights(&r.dir.path("weights.safetensors"))?;
    let _ = std::fs::remove_file(r.dir.path("finetune.ckpt"));
    let cell = CellResult {
        design: "balanced".into(),
        condition: format!("finetune of {}", weights.display()),
        family: String::new(),
        seed,
        classes: r.num_targets,
        used_classes: r.num_targets,
        aligned: true,
        purity: 1.0,
        readouts,
        epochs,
        seconds: 0.0,
    };
    finish(&r, &cell)
}
