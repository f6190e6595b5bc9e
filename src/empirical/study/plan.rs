//! What a study runs, from its config alone, before anything runs: the cells of each design
//! ([`Cell`]: the baseline, each granularity pretrained and read out, each direct arm) with
//! their positions (what `--shard` assigns, [`cells_by_design`]), the epochs of each
//! ([`cell_epochs`]), who trains ([`Trainee`]), the names of the training phases
//! ([`PhaseName`]) and which part of a study a run does ([`Part`]).

use serde::{Deserialize, Serialize};

use super::config::{GranularitySpec, StudyConfig};
use crate::cluster::Shard;
use crate::readout::{Readout, Reads};

/// What a cell of a design runs.
pub enum Cell<'a> {
    /// The target labels from scratch.
    Baseline,
    /// Pretraining on a granularity's labels, then the readouts.
    Pretrained {
        /// The granularity.
        granularity: &'a GranularitySpec,
    },
    /// The direct arm: a network trained on a granularity's labels for the baseline's whole
    /// schedule, read out with the summed head and the linear probe (condition `NAME direct`).
    Direct {
        /// The granularity.
        granularity: &'a GranularitySpec,
        /// The condition's name.
        name: String,
    },
}

impl Cell<'_> {
    /// The condition's name in files and tables.
    pub fn condition(&self) -> &str {
        match self {
            Cell::Baseline => "baseline",
            Cell::Pretrained { granularity, .. } => &granularity.name,
            Cell::Direct { name, .. } => name,
        }
    }

    /// The family of the condition (one line per family in the figures).
    pub fn family(&self) -> String {
        match self {
            Cell::Baseline => "baseline".to_string(),
            Cell::Pretrained { granularity } => granularity.labels.family().to_string(),
            Cell::Direct { granularity, .. } => {
                format!("direct, {}", granularity.labels.family())
            }
        }
    }
}

/// Who trains: a design (or "ensemble", "single"), a condition and a seed. Names the
/// checkpoints and the epoch records.
#[derive(Clone, Copy, Debug)]
pub struct Trainee<'a> {
    /// The design.
    pub design: &'a str,
    /// The condition.
    pub condition: &'a str,
    /// The seed (the cell's): every draw of its phases comes from it, keyed by what it is for
    /// ([`Trainee::key`]).
    pub seed: u64,
}

impl Trainee<'_> {
    /// The key of the purpose `name` (`"init"`, `"probe"`, ...) under the trainee's seed.
    pub fn key(&self, name: &str) -> u64 {
        crate::seed::derive(self.seed, &[name])
    }

    /// `design/condition sSEED`, for messages.
    pub fn label(&self) -> String {
        format!("{}/{} s{}", self.design, self.condition, self.seed)
    }
}

/// A training phase of a network: its name in `epochs.csv`, in checkpoint names and in the
/// generator of its batches (`train.batch_keying = "phase"`). Written as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum PhaseName {
    /// The baseline: the target labels from scratch, for the whole schedule.
    Baseline,
    /// Pretraining on a granularity's labels.
    Pretrain,
    /// The training of a readout that trains the pretrained network on the target labels (one
    /// that [`Readout::reads`] [`Reads::FineTuned`]), named by the readout: fine-tuning is
    /// `Trains(Readout::Finetune)`, `finetune`.
    Trains(Readout),
    /// The direct arm: a granularity's labels for the baseline's whole schedule.
    Direct,
    /// A member of the hard-image ensemble.
    Ensemble,
}

impl PhaseName {
    /// Fine-tuning: the phase of [`Readout::Finetune`].
    pub const FINETUNE: PhaseName = PhaseName::Trains(Readout::Finetune);

    /// The phases a cell may train (whose checkpoints go when it finishes): the baseline,
    /// pretraining, the direct arm and every readout that trains the network.
    pub fn of_cells() -> Vec<PhaseName> {
        let mut phases = vec![PhaseName::Baseline, PhaseName::Pretrain, PhaseName::Direct];
        phases.extend(
            Readout::PRETRAINED
                .into_iter()
                .filter(|r| r.reads() == Reads::FineTuned)
                .map(PhaseName::Trains),
        );
        phases
    }

    /// Every phase (for reading names back).
    fn all() -> Vec<PhaseName> {
        let mut phases = PhaseName::of_cells();
        phases.push(PhaseName::Ensemble);
        phases
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            PhaseName::Baseline => "baseline",
            PhaseName::Pretrain => "pretrain",
            PhaseName::Trains(readout) => readout.name(),
            PhaseName::Direct => "direct",
            PhaseName::Ensemble => "ensemble",
        }
    }

    /// The phases whose last epoch a readout reads the network after (how well that training
    /// fit its own labels): the baseline's, the pretraining or direct training of the network
    /// a frozen readout reads, or the readout's own training.
    pub fn read_by(readout: Readout) -> Vec<PhaseName> {
        match readout.reads() {
            Reads::Own => vec![PhaseName::Baseline],
            Reads::Frozen => vec![PhaseName::Pretrain, PhaseName::Direct],
            Reads::FineTuned => vec![PhaseName::Trains(readout)],
        }
    }
}

impl From<PhaseName> for String {
    fn from(phase: PhaseName) -> String {
        phase.name().to_string()
    }
}

impl TryFrom<String> for PhaseName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        PhaseName::all()
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = PhaseName::all().into_iter().map(PhaseName::name).collect();
                format!("unknown phase `{name}` (one of {})", names.join(", "))
            })
    }
}

impl std::fmt::Display for PhaseName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which part of a study a run does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Part {
    /// The preparation and every cell.
    Whole,
    /// The preparation only.
    Prepare,
    /// The cells of one shard (the preparation must have run).
    Shard(Shard),
}

impl Part {
    /// Whether the run does the cell at `position` among the cells of one seed, at `seed`.
    pub fn runs(&self, position: usize, seed: u64) -> bool {
        match self {
            Part::Whole => true,
            Part::Prepare => false,
            Part::Shard(s) => s.owns(position, seed),
        }
    }
}

/// The cells of one seed, design by design (in [`StudyConfig::design_plan`]'s order), each with
/// its position among all of them (what `--shard` assigns): per design the baseline, then every
/// granularity of the design in the config's order (pretrained, then, where the granularity
/// runs its direct arm, trained directly).
pub fn cells_by_design(cfg: &StudyConfig) -> Vec<(String, Vec<(usize, Cell<'_>)>)> {
    let mut position = 0;
    cfg.design_plan()
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

/// Training epochs of a cell in a design with `per_leaf` training images per leaf (the
/// baseline's and the direct arm's: the whole schedule; see [`scaled_epochs`]).
pub fn cell_epochs(cfg: &StudyConfig, per_leaf: Option<usize>, cell: &Cell) -> usize {
    let t = &cfg.train;
    let (pre, fine) = (
        scaled_epochs(cfg, per_leaf, t.pretrain_epochs),
        scaled_epochs(cfg, per_leaf, t.finetune_epochs),
    );
    match cell {
        Cell::Baseline | Cell::Direct { .. } => pre + fine,
        Cell::Pretrained { .. } if t.readouts.iter().any(|r| r.reads() == Reads::FineTuned) => {
            pre + fine
        }
        Cell::Pretrained { .. } => pre,
    }
}

/// The epochs a design with `per_leaf` training images per leaf (a design of `data.sizes`)
/// trains where the config says `epochs`: the same, unless `train.equal_steps` scales them to
/// equal SGD steps (`round(epochs * train_per_leaf / n)`, at least 1, for n images per leaf).
pub fn scaled_epochs(cfg: &StudyConfig, per_leaf: Option<usize>, epochs: usize) -> usize {
    match per_leaf {
        Some(n) if cfg.train.equal_steps && epochs > 0 => {
            let e = epochs as f64 * cfg.data.train_per_leaf as f64 / n as f64;
            (e.round() as usize).max(1)
        }
        Some(_) | None => epochs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_round_trip_and_an_unknown_name_is_refused() {
        for phase in PhaseName::all() {
            let json = serde_json::to_string(&phase).unwrap();
            assert_eq!(json, format!("\"{}\"", phase.name()));
            assert_eq!(serde_json::from_str::<PhaseName>(&json).unwrap(), phase);
        }
        assert_eq!(PhaseName::FINETUNE.name(), "finetune");
        assert!(PhaseName::of_cells().contains(&PhaseName::FINETUNE));
        let err = serde_json::from_str::<PhaseName>("\"warmup\"").unwrap_err();
        assert!(err.to_string().contains("unknown phase `warmup`"), "{err}");
    }

    #[test]
    fn a_readout_is_read_after_its_own_phase() {
        assert_eq!(PhaseName::read_by(Readout::Scratch), [PhaseName::Baseline]);
        assert_eq!(
            PhaseName::read_by(Readout::SummedHead),
            [PhaseName::Pretrain, PhaseName::Direct]
        );
        assert_eq!(PhaseName::read_by(Readout::Finetune), [PhaseName::FINETUNE]);
    }
}
