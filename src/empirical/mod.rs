//! The empirical half: fine-to-coarse transfer on real images (CIFAR-100, your own image
//! folders) with candle. Built so far: the image-data layer ([`data`]), the networks
//! ([`model`]: ResNet-8/20/18 with fast CPU kernels), SGD and schedules ([`optim`]), the
//! training loop ([`train`]), checkpoints ([`checkpoint`]) and clustering-based label
//! granularities ([`cluster`]: k-means inside each superclass or over the whole set). The study protocol (pretrain at
//! several granularities, fine-tune, baseline, hard subsets, figures) is not built yet.

pub mod checkpoint;
pub mod cluster;
pub mod data;
pub mod error;
pub mod model;
pub mod optim;
pub mod protocol;
pub mod train;
