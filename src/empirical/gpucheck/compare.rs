//! How the check compares two tensors: the normwise relative error ([`rel_err`]), one
//! [`Comparison`] per quantity, and which comparisons of a state map are gated.

use std::collections::BTreeMap;

use serde::Serialize;

/// One compared quantity.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// What was compared (`logits`, `grad backbone.stem.conv.weight`, ...).
    pub what: String,
    /// `‖other − reference‖₂ / ‖reference‖₂` (0 when both are zero).
    pub rel_err: f64,
    /// Largest absolute difference.
    pub max_abs: f64,
    /// The largest `rel_err` accepted (0: must be identical).
    pub tolerance: f64,
    /// Whether `rel_err <= tolerance` and both are finite.
    pub ok: bool,
    /// Whether the check's verdict depends on it (per-tensor entries are informational).
    pub gated: bool,
}

/// `‖other − reference‖₂ / ‖reference‖₂` and the largest absolute difference; the relative
/// error is 0 when both are zero, infinite when only the reference is, and NaN when a length
/// differs or a value is not finite.
pub fn rel_err(reference: &[f32], other: &[f32]) -> (f64, f64) {
    if reference.len() != other.len() {
        return (f64::NAN, f64::NAN);
    }
    let (mut num, mut den, mut max_abs) = (0.0f64, 0.0f64, 0.0f64);
    for (&r, &o) in reference.iter().zip(other) {
        let d = f64::from(o) - f64::from(r);
        num += d * d;
        den += f64::from(r) * f64::from(r);
        max_abs = max_abs.max(d.abs());
        if !d.is_finite() {
            return (f64::NAN, f64::NAN);
        }
    }
    let rel = if num == 0.0 {
        0.0
    } else if den == 0.0 {
        f64::INFINITY
    } else {
        (num / den).sqrt()
    };
    (rel, max_abs)
}

/// Collects comparisons.
pub(super) struct Comparisons(pub(super) Vec<Comparison>);

impl Comparisons {
    pub(super) fn push(
        &mut self,
        what: String,
        reference: &[f32],
        other: &[f32],
        tolerance: f64,
        gated: bool,
    ) {
        let (rel_err, max_abs) = rel_err(reference, other);
        self.0.push(Comparison {
            what,
            rel_err,
            max_abs,
            tolerance,
            ok: rel_err <= tolerance,
            gated,
        });
    }

    /// One gated quantity.
    pub(super) fn add(&mut self, what: &str, reference: &[f32], other: &[f32], tolerance: f64) {
        self.push(what.to_string(), reference, other, tolerance, true);
    }

    /// Two state maps: as one concatenated vector (names must match: a missing tensor fails
    /// it), gated unless `gating` is [`Gating::None`], and each tensor alone, gated only with
    /// [`Gating::Each`].
    pub(super) fn add_states(
        &mut self,
        kind: &str,
        reference: &BTreeMap<String, Vec<f32>>,
        other: &BTreeMap<String, Vec<f32>>,
        tolerance: f64,
        gating: Gating,
    ) {
        let empty = Vec::new();
        let (mut all_r, mut all_o) = (Vec::new(), Vec::new());
        for (name, r) in reference {
            let o = other.get(name).unwrap_or(&empty);
            all_r.extend_from_slice(r);
            all_o.extend_from_slice(o);
            let each = gating == Gating::Each;
            self.push(format!("{kind} {name}"), r, o, tolerance, each);
        }
        if other.len() != reference.len() {
            all_o.push(f32::NAN);
        }
        let what = format!("{kind}-all ({} tensors)", reference.len());
        self.push(what, &all_r, &all_o, tolerance, gating != Gating::None);
    }
}

/// Which comparisons of a state map decide the verdict.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Gating {
    /// Every tensor, and all of them together.
    Each,
    /// All of them together only.
    All,
    /// None (reported only).
    None,
}
