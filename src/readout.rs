//! The readouts: how a network trained on some labels is read out on the coarse target. One
//! enum for both halves, so that a name means the same thing in the simulation and on real
//! images, in configs, files, tables and figures. A new readout is a variant here (with its
//! place in [`Readout::PRETRAINED`]); the compiler then asks each half how to compute it.

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

impl Readout {
    /// The readouts of a pretrained network, in report order.
    pub const PRETRAINED: [Readout; 3] =
        [Readout::SummedHead, Readout::LinearProbe, Readout::Finetune];

    /// Whether the readout trains the network it reads (the baseline from scratch, fine-tuning);
    /// the others read a frozen network.
    pub fn trains_network(self) -> bool {
        match self {
            Readout::Scratch | Readout::Finetune => true,
            Readout::SummedHead | Readout::LinearProbe => false,
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
