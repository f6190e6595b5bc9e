//! The empirical half: fine-to-coarse transfer on real images (CIFAR-100, your own image
//! folders, or the embedded synthetic multi-view images) with candle.
//!
//! * [`data`]: loaders (CIFAR-100 binary release, image folders with a hierarchy file), the
//!   synthetic images, seeded augmentation and batching;
//! * [`model`]: ResNet-8/20/18 with fast CPU kernels; [`optim`]: SGD and schedules;
//!   [`train`]: training epochs and evaluation; [`checkpoint`]: resumable training state;
//!   [`probe`]: linear probes on frozen features; [`kmeans`]: k-means label granularities;
//! * [`study`]: the transfer protocol over granularities, seeds and hard-sample designs, with
//!   its results, tables and figures;
//! * [`bench`](mod@bench): the training-step benchmark against candle's stock operations and PyTorch;
//! * [`device`]: the `--device` flag (CPU or a CUDA GPU); [`gpucheck`]: a device's training step
//!   checked against the CPU, and its speed.

pub mod bench;
pub mod checkpoint;
pub mod commands;
pub mod data;
pub mod device;
pub mod error;
pub mod gpucheck;
pub mod kmeans;
pub mod model;
pub mod optim;
pub mod probe;
pub mod study;
pub mod train;
