//! The readouts: how a network trained on some labels is read out on the coarse target. One
//! enum for both halves, so that a name means the same thing in the simulation and on real
//! images, in configs, files, tables and figures. A new readout is a variant here (with its
//! place in [`Readout::PRETRAINED`] and what it [`Readout::reads`]); the compiler then asks each
//! half how to compute it.

use serde::{Deserialize, Serialize};

/// How a network is read out on the target labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readout {
    /// A network trained on the target labels from scratch (the baseline): its own logits.
    Scratch,
    /// The summed head: the target score of a class is computed from the scores of the
    /// training classes nested inside it, with no training (so it needs labels nested in the
    /// targets); for a network trained on the target labels it is the network's own
    /// prediction. Each half's docs say how the scores are combined. The config name
    /// `mapped_head` is accepted as an alias.
    #[serde(alias = "mapped_head")]
    SummedHead,
    /// A new linear classifier on the frozen features.
    LinearProbe,
    /// A new head, and the whole network trained on the target labels.
    Finetune,
}

/// Which network a readout reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// The network trained on the target labels from scratch, through its own head.
    Own,
    /// A network trained on other labels, frozen: nothing of it is trained.
    Frozen,
    /// A network trained on other labels, then trained whole on the target labels.
    FineTuned,
}

impl Readout {
    /// The readouts of a pretrained network, in report order.
    pub const PRETRAINED: [Readout; 3] =
        [Readout::SummedHead, Readout::LinearProbe, Readout::Finetune];

    /// Which network the readout reads.
    pub fn reads(self) -> Reads {
        match self {
            Readout::Scratch => Reads::Own,
            Readout::SummedHead | Readout::LinearProbe => Reads::Frozen,
            Readout::Finetune => Reads::FineTuned,
        }
    }

    /// The name used in files, tables and configs.
    pub fn name(self) -> &'static str {
        match self {
            Readout::Scratch => "scratch",
            Readout::SummedHead => "summed_head",
            Readout::LinearProbe => "linear_probe",
            Readout::Finetune => "finetune",
        }
    }

    /// A title for figures and tables.
    pub fn title(self) -> &'static str {
        match self {
            Readout::Scratch => "trained from scratch",
            Readout::SummedHead => "summed head",
            Readout::LinearProbe => "linear probe",
            Readout::Finetune => "full fine-tuning",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_old_name_is_an_alias() {
        for r in [
            Readout::Scratch,
            Readout::SummedHead,
            Readout::LinearProbe,
            Readout::Finetune,
        ] {
            let s = serde_json::to_string(&r).unwrap();
            assert_eq!(s, format!("\"{}\"", r.name()));
            assert_eq!(serde_json::from_str::<Readout>(&s).unwrap(), r);
        }
        let old: Readout = serde_json::from_str("\"mapped_head\"").unwrap();
        assert_eq!(old, Readout::SummedHead);
    }
}
