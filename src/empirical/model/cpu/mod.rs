//! The CPU engine: the fast path of [`super::Kernels::Fast`] on the CPU, the whole backbone as
//! one candle custom operation with a hand-written backward pass on channels-last buffers.
//!
//! * `engine`: the backbone's forward and backward pass from the plan [`super::Backbone`]
//!   builds of its layers, with its buffer pool;
//! * `conv`: the convolution layers (forward, input gradient, weight gradient), as gathers
//!   (`gather`: a layer's shape and passes) or by Winograd F(2x2, 3x3) (`winograd`);
//! * `kernels`: BatchNorm fused with ReLU and the residual addition, their backward passes;
//!   `simd`: their vectorised inner loops;
//! * `micro`: the convolution microkernels, written once over the vector operations of `isa`
//!   ([`Simd`]: AVX-512, AVX2 with FMA, or scalar, chosen at run time);
//! * `profile`: per-layer timing of the passes ([`Profile`], for `empirical bench`).
//!
//! Every path gives the same bits for any thread count and instruction set (see each module).

pub(super) mod conv;
pub(super) mod engine;
pub(super) mod gather;
pub(super) mod isa;
pub(super) mod kernels;
pub(super) mod micro;
pub(super) mod profile;
pub(super) mod simd;
pub(super) mod winograd;

pub use isa::{Simd, SimdError, SIMD_ENV};
pub use profile::{LayerTime, Pass, Profile};
