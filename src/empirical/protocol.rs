//! The fine-to-coarse transfer protocol, minimal version: for each pretraining granularity,
//! pretrain a network on those labels, then fine-tune it on the coarse target with a new head
//! (and, for labels nested inside the superclasses, also read the coarse prediction off the
//! pretrained net by summing its logits per superclass: the mapped head); the baseline trains the
//! same network on the coarse labels from scratch for the same total number of epochs. Test
//! error is reported on easy and hard test images separately. Seeds, studies from TOML, figures,
//! checkpoint/resume of whole studies and the hard subsets of real data are not built yet.

use super::data::synthetic::{generate, SyntheticConfig};
use super::data::{Augment, ImageSet};
use super::error::EmpiricalError;
use super::model::{Model, ModelConfig};
use super::optim::{LrSchedule, Schedule, Sgd, SgdConfig};
use super::train::{evaluate, train_epoch, EpochConfig, Matrix};
use crate::hierarchy::Relabeling;
use crate::report::{MarkdownTable, ResultsDir};
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Settings of a transfer run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferConfig {
    /// The network.
    pub model: ModelConfig,
    /// Pretraining epochs.
    pub pretrain_epochs: usize,
    /// Fine-tuning epochs (the baseline trains pretrain + fine-tune epochs).
    pub finetune_epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Pretraining learning-rate schedule (also the baseline's).
    pub pretrain_lr: LrSchedule,
    /// Fine-tuning learning-rate schedule.
    pub finetune_lr: LrSchedule,
    /// SGD settings.
    pub sgd: SgdConfig,
    /// Augmentation.
    pub augment: Augment,
    /// Seed of initialisation, augmentation and relabeling.
    pub seed: u64,
    /// Pretraining granularities (name, relabeling); the coarse target is hierarchy level 0.
    pub granularities: Vec<(String, Relabeling)>,
}

/// Coarse test error of one condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferResult {
    /// Condition name ("baseline" for coarse labels from scratch).
    pub condition: String,
    /// Pretraining classes.
    pub classes: usize,
    /// Readout ("finetune", "mapped_head" or "scratch").
    pub readout: String,
    /// Error on all test images.
    pub error: f64,
    /// Error on easy test images.
    pub easy_error: f64,
    /// Error on hard test images.
    pub hard_error: f64,
}

fn errors(
    logits: &Matrix,
    targets: &[usize],
    is_hard: &[bool],
) -> Result<(f64, f64, f64), EmpiricalError> {
    let pred = logits.argmax();
    let rate = |keep: &dyn Fn(usize) -> bool| {
        let idx: Vec<usize> = (0..pred.len()).filter(|&i| keep(i)).collect();
        if idx.is_empty() {
            return f64::NAN;
        }
        idx.iter().filter(|&&i| pred[i] != targets[i]).count() as f64 / idx.len() as f64
    };
    Ok((
        rate(&|_| true),
        rate(&|i| !is_hard[i]),
        rate(&|i| is_hard[i]),
    ))
}

struct Trainer<'a> {
    cfg: &'a TransferConfig,
    train: &'a ImageSet,
    epoch: EpochConfig,
    rng: ChaCha8Rng,
}

impl Trainer<'_> {
    fn fit(
        &mut self,
        model: &Model,
        labels: &[usize],
        epochs: usize,
        lr: &LrSchedule,
        progress: &mut dyn FnMut(&str),
        what: &str,
    ) -> Result<(), EmpiricalError> {
        if epochs == 0 {
            return Ok(());
        }
        let mut sgd = Sgd::new(model.trainable_params(), self.cfg.sgd)?;
        let schedule = Schedule::new(
            lr.clone(),
            epochs,
            self.epoch.steps_per_epoch(self.train.len),
        )?;
        for e in 0..epochs {
            let stats = train_epoch(
                model,
                &mut sgd,
                &schedule,
                self.train,
                labels,
                &self.epoch,
                e,
                &mut self.rng,
                &mut |_| {},
            )?;
            progress(&format!(
                "{what}: epoch {}/{epochs} loss {:.3} train acc {:.3} ({:.0} img/s)",
                e + 1,
                stats.loss,
                stats.acc,
                stats.images_per_sec
            ));
        }
        Ok(())
    }
}

impl TransferConfig {
    /// The embedded default: ResNet-8 (width 16), 6 pretraining + 3 fine-tuning epochs, batch
    /// 64, cosine schedules, crop+flip, coarse and fine pretraining.
    pub fn default_synthetic() -> Self {
        TransferConfig {
            model: ModelConfig {
                arch: super::model::Arch::ResNet8,
                width: 16,
            },
            pretrain_epochs: 6,
            finetune_epochs: 3,
            batch_size: 64,
            pretrain_lr: LrSchedule::Cosine {
                lr: 0.05,
                warmup_epochs: 1,
            },
            finetune_lr: LrSchedule::Cosine {
                lr: 0.01,
                warmup_epochs: 0,
            },
            sgd: SgdConfig::default(),
            augment: Augment::cifar(),
            seed: 0,
            granularities: vec![
                ("coarse".into(), Relabeling::Level { level: 0 }),
                ("fine".into(), Relabeling::Level { level: 1 }),
            ],
        }
    }
}

/// Run the baseline and every granularity of `cfg` on `train`, evaluating on `test` (whose
/// image i is hard when `test_is_hard[i]`). `progress` receives one line per epoch.
pub fn run_transfer(
    cfg: &TransferConfig,
    train: &ImageSet,
    test: &ImageSet,
    test_is_hard: &[bool],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<TransferResult>, EmpiricalError> {
    if test_is_hard.len() != test.len {
        return Err(EmpiricalError::invalid(
            "run_transfer",
            format!(
                "{} hard flags for {} test images",
                test_is_hard.len(),
                test.len
            ),
        ));
    }
    let device = Device::Cpu;
    let (mean, std) = train.rgb_mean_std().ok_or_else(|| {
        EmpiricalError::invalid("run_transfer", "the training set needs 3 channels")
    })?;
    let h = train.hierarchy.clone();
    let coarse_train = train.labels_at_level(0);
    let coarse_test = test.labels_at_level(0);
    let n_coarse = h.num_classes(0);
    let mut trainer = Trainer {
        cfg,
        train,
        epoch: EpochConfig {
            batch_size: cfg.batch_size,
            augment: cfg.augment,
            mean,
            std,
            label_smoothing: 0.0,
            drop_last: false,
        },
        rng: ChaCha8Rng::seed_from_u64(cfg.seed),
    };
    let mut out = Vec::new();
    let push = |out: &mut Vec<TransferResult>, cond: &str, classes, readout: &str, m: &Matrix| {
        let (error, easy_error, hard_error) = errors(m, &coarse_test, test_is_hard)?;
        out.push(TransferResult {
            condition: cond.into(),
            classes,
            readout: readout.into(),
            error,
            easy_error,
            hard_error,
        });
        Ok::<(), EmpiricalError>(())
    };
    // baseline: coarse labels from scratch, same total epochs
    let base = Model::new(cfg.model, n_coarse, cfg.seed, &device)?;
    trainer.fit(
        &base,
        &coarse_train,
        cfg.pretrain_epochs + cfg.finetune_epochs,
        &cfg.pretrain_lr,
        progress,
        "baseline (coarse from scratch)",
    )?;
    let logits = evaluate(&base, test, mean, std, 256)?;
    push(&mut out, "baseline", n_coarse, "scratch", &logits)?;
    for (name, relabel) in &cfg.granularities {
        let mut lrng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed);
        let rule = relabel
            .build_for_samples(&h, 0, &train.leaves, &mut lrng)
            .map_err(|e| EmpiricalError::invalid("granularity", format!("{name}: {e}")))?;
        let labels = rule.label_all(&train.leaves, &mut lrng);
        let mut model = Model::new(cfg.model, rule.num_classes(), cfg.seed, &device)?;
        trainer.fit(
            &model,
            &labels,
            cfg.pretrain_epochs,
            &cfg.pretrain_lr,
            progress,
            &format!("pretrain '{name}'"),
        )?;
        if let Some(map) = rule.summed_head() {
            let fine_logits = evaluate(&model, test, mean, std, 256)?;
            let mapped = fine_logits.group_sum(&map, n_coarse)?;
            push(&mut out, name, rule.num_classes(), "mapped_head", &mapped)?;
        }
        model.replace_head(n_coarse, cfg.seed.wrapping_add(1))?;
        trainer.fit(
            &model,
            &coarse_train,
            cfg.finetune_epochs,
            &cfg.finetune_lr,
            progress,
            &format!("fine-tune '{name}'"),
        )?;
        let logits = evaluate(&model, test, mean, std, 256)?;
        push(&mut out, name, rule.num_classes(), "finetune", &logits)?;
    }
    Ok(out)
}

/// What [`run_synthetic_default`] produced.
#[derive(Debug)]
pub struct SyntheticRun {
    /// One row per condition and readout.
    pub results: Vec<TransferResult>,
    /// The same as a Markdown table.
    pub table: MarkdownTable,
    /// The results folder.
    pub dir: std::path::PathBuf,
    /// The seed.
    pub seed: u64,
}

/// The empirical default: the transfer protocol of [`TransferConfig::default_synthetic`] on the
/// embedded synthetic images ([`SyntheticConfig::default`]); writes `config.toml`,
/// `results.json` and `results.md` (atomically) into `out`.
pub fn run_synthetic_default(
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<SyntheticRun, EmpiricalError> {
    let data_cfg = SyntheticConfig::default();
    let cfg = TransferConfig::default_synthetic();
    let data = generate(&data_cfg)?;
    let test = data.test();
    progress(&format!(
        "synthetic multi-view images: {} train, {} test ({} hard); {} on CPU",
        data.train.len,
        test.len,
        data.test_is_hard.iter().filter(|&&h| h).count(),
        cfg.model.arch.name()
    ));
    let results = run_transfer(&cfg, &data.train, &test, &data.test_is_hard, progress)?;
    let dir = ResultsDir::create(out)?;
    let config = format!(
        "# data\n{}\n# transfer\n{}",
        toml::to_string_pretty(&data_cfg)
            .map_err(|e| EmpiricalError::invalid("config", e.to_string()))?,
        toml::to_string_pretty(&cfg)
            .map_err(|e| EmpiricalError::invalid("config", e.to_string()))?
    );
    dir.write_text("config.toml", &config)?;
    dir.write_json("results.json", &results)?;
    let mut table = MarkdownTable::new([
        "pretraining",
        "classes",
        "readout",
        "coarse error",
        "easy",
        "hard",
    ]);
    for r in &results {
        table.row([
            r.condition.clone(),
            r.classes.to_string(),
            r.readout.clone(),
            format!("{:.3}", r.error),
            format!("{:.3}", r.easy_error),
            format!("{:.3}", r.hard_error),
        ]);
    }
    dir.write_text("results.md", &table.to_string())?;
    Ok(SyntheticRun {
        results,
        table,
        dir: dir.root().to_path_buf(),
        seed: cfg.seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empirical::model::Arch;

    /// The whole protocol runs on a tiny synthetic set and reports every condition and readout
    /// with errors in [0, 1]; mismatched hard flags are an error.
    #[test]
    fn protocol_runs_end_to_end_on_tiny_synthetic_data() {
        let data = generate(&SyntheticConfig {
            image_size: 16,
            patch_size: 4,
            subclasses: vec![2, 2],
            train_per_leaf: 24,
            test_easy_per_leaf: 8,
            test_hard_per_leaf: 8,
            noise: 5.0,
            ..Default::default()
        })
        .unwrap();
        let cfg = TransferConfig {
            model: ModelConfig {
                arch: Arch::ResNet8,
                width: 4,
            },
            pretrain_epochs: 3,
            finetune_epochs: 1,
            batch_size: 16,
            pretrain_lr: LrSchedule::Cosine {
                lr: 0.05,
                warmup_epochs: 0,
            },
            finetune_lr: LrSchedule::Cosine {
                lr: 0.02,
                warmup_epochs: 0,
            },
            sgd: SgdConfig::default(),
            augment: Augment::none(),
            seed: 1,
            granularities: vec![
                ("coarse".into(), Relabeling::Level { level: 0 }),
                ("fine".into(), Relabeling::Level { level: 1 }),
            ],
        };
        let test = data.test();
        let mut lines = 0;
        let res = run_transfer(&cfg, &data.train, &test, &data.test_is_hard, &mut |_| {
            lines += 1
        })
        .unwrap();
        assert_eq!(lines, 4 + 2 * 3 + 2);
        let names: Vec<(String, String)> = res
            .iter()
            .map(|r| (r.condition.clone(), r.readout.clone()))
            .collect();
        for want in [
            ("baseline", "scratch"),
            ("coarse", "mapped_head"),
            ("coarse", "finetune"),
            ("fine", "mapped_head"),
            ("fine", "finetune"),
        ] {
            assert!(
                names.contains(&(want.0.to_string(), want.1.to_string())),
                "{names:?}"
            );
        }
        for r in &res {
            for e in [r.error, r.easy_error, r.hard_error] {
                assert!((0.0..=1.0).contains(&e), "{r:?}");
            }
        }
        let bad = run_transfer(&cfg, &data.train, &test, &[true], &mut |_| {});
        assert!(bad.is_err());
    }
}
