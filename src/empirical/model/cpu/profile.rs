//! Where the fast backbone's time goes: wall time and floating-point operations per layer shape
//! and pass, recorded by the backbone operation while profiling is on
//! ([`super::Model::set_profiling`]) and read by `empirical bench` for its per-layer table.
//! Off by default; when off, recording costs one relaxed atomic load per operation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// The pass of a layer that an entry times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    /// The forward pass.
    Forward,
    /// The gradient with respect to the layer's input.
    InputGrad,
    /// The gradient with respect to the layer's weights.
    WeightGrad,
}

impl Pass {
    /// `forward`, `input grad`, `weight grad`.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Forward => "forward",
            Pass::InputGrad => "input grad",
            Pass::WeightGrad => "weight grad",
        }
    }
}

/// Accumulated time of one (layer, pass).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LayerTime {
    /// Calls recorded.
    pub calls: usize,
    /// Total wall time, seconds.
    pub seconds: f64,
    /// Total floating-point operations (a multiply-add counts 2; 0 for memory-bound passes).
    pub flops: f64,
}

/// The recorded times by layer description (`conv 3x3 16->16 s1 32x32`, `batchnorm+relu`,
/// ...) and pass.
pub type Profile = BTreeMap<(String, Pass), LayerTime>;

/// The recorder a backbone shares with its operations.
#[derive(Debug, Default)]
pub(crate) struct Profiler {
    on: AtomicBool,
    times: Mutex<Profile>,
}

impl Profiler {
    /// Starts (or stops) recording.
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    /// Whether recording is on.
    pub fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// The times recorded since the last call, and a fresh start.
    pub fn take(&self) -> Profile {
        std::mem::take(&mut *self.times.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f`, and adds its wall time and `flops` to `(layer(), pass)` when recording.
    pub fn time<R>(
        &self,
        layer: impl FnOnce() -> String,
        pass: Pass,
        flops: f64,
        f: impl FnOnce() -> R,
    ) -> R {
        if !self.on.load(Ordering::Relaxed) {
            return f();
        }
        let t = Instant::now();
        let r = f();
        let dt = t.elapsed().as_secs_f64();
        let mut times = self.times.lock().unwrap_or_else(|e| e.into_inner());
        let e = times.entry((layer(), pass)).or_default();
        e.calls += 1;
        e.seconds += dt;
        e.flops += flops;
        r
    }
}
