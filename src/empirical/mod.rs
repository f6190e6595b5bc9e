//! The empirical half: fine-to-coarse transfer on real images with candle, layer by layer (no
//! module imports from a layer above its own):
//!
//! * [`data`]: the image sources (CIFAR-100, image folders with a hierarchy file, iNaturalist
//!   2021, ImageNet-style folders under WordNet's hierarchy or a BREEDS task, the embedded
//!   synthetic multi-view images), their `[data]` config, seeded augmentation and batching;
//! * [`model`]: ResNet-8/20/18, with the fast CPU engine; [`kmeans`]: k-means label
//!   granularities; [`device`]: the `--device` flag (CPU or a CUDA GPU);
//! * [`optim`]: SGD and schedules; [`train`]: training epochs and evaluation;
//!   [`checkpoint`]: resumable training state; [`probe`]: linear probes on frozen features;
//!   [`train_error`]: their error;
//! * [`error`]: the error of the layers above training;
//! * [`study`]: the transfer protocol over granularities, seeds and hard-sample designs, with
//!   its results, reports and figures;
//! * [`commands`]: the `empirical` subcommands as library functions;
//!   [`bench`](mod@bench): the training-step benchmark against candle's stock operations and
//!   PyTorch; [`gpucheck`]: a device's training step checked against the CPU, and its speed.

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
pub mod train_error;
