//! # granularity
//!
//! A toolkit for studying how *pretraining label granularity* shapes what a neural network
//! learns, after Hong, Cui, Fuxman, Chan and Luo, "Towards Understanding the Effect of
//! Pretraining Label Granularity" (arXiv 2303.16887; TMLR 2024).
//!
//! The [`hierarchy`] module (label trees and relabelings), [`config`] (TOML configs with
//! overrides), [`report`] (results folders, progress, tables, statistics), [`readout`] (how a
//! network is read out on the target), [`seed`] (every
//! random stream, derived by name) and [`plot`] (the figures) are shared by both halves: [`theory`], a CPU simulation of the paper's two-layer convolutional
//! network on hierarchical multi-view data, and the real-image fine-to-coarse transfer
//! experiments (`empirical`).

pub mod cluster;
pub mod config;
pub mod empirical;
pub mod hierarchy;
pub mod plot;
pub mod readout;
pub mod report;
pub mod runtime;
pub mod seed;
pub mod theory;
