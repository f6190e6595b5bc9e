//! Label hierarchies and pretraining relabelings.
//!
//! This module is the shared vocabulary of the theory and empirical halves of the crate: a
//! [`Hierarchy`] is a label tree with named levels (level 0 is the coarsest, e.g. superclass; the
//! last level holds the leaves, e.g. fine classes), and a [`Relabeling`] describes a *granularity*
//! of the pretraining label space relative to a downstream target level (the classes of one
//! hierarchy level, finer or coarser label sets, random or misaligned groupings, one label per
//! sample). Building a relabeling against a hierarchy gives a [`LabelRule`], which turns a sample
//! (its leaf and its index) into a pretraining label and knows, for each pretraining class, the
//! target class it lies inside (if any), so that a "summed head" from pretraining classes to target
//! classes can be formed when the rule is aligned with the target.
//!
//! Everything here is deterministic given the random number generator passed in, and every
//! constructor validates its input and returns a [`HierarchyError`] naming the level, class or
//! field at fault instead of panicking. The module depends only on `std`, `serde`, `rand` and
//! `thiserror`.

mod error;
mod relabel;
mod restrict;
mod rule;
#[cfg(test)]
mod test_util;
mod tree;

pub use error::HierarchyError;
pub use relabel::Relabeling;
pub use rule::LabelRule;
pub use tree::{Hierarchy, Level};
