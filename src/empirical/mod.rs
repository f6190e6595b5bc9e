//! The empirical half: fine-to-coarse transfer on real images (CIFAR-100, your own image
//! folders). So far: the image-data layer ([`data`]): loaders, augmentation and batching.

pub mod data;
