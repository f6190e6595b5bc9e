//! The colour scale of a matrix figure (viridis, or a diverging map symmetric about 0) and the
//! labelled colour bar that shows it.

use plotters::style::text_anchor::{HPos, VPos};
use plotters::style::RGBColor;

use crate::plot::draw::{self, DrawResult, PixRect, Root};
use crate::plot::style;

/// Maps values to colours.
pub(super) struct Scale {
    pub(super) lo: f64,
    pub(super) hi: f64,
    diverging: bool,
}

impl Scale {
    pub(super) fn new(values: &[Vec<f64>], diverging: bool) -> Self {
        let finite = || values.iter().flatten().copied().filter(|v| v.is_finite());
        if diverging {
            let m = finite().map(f64::abs).fold(0.0, f64::max);
            let m = if m > 0.0 { m } else { 1.0 };
            Scale {
                lo: -m,
                hi: m,
                diverging,
            }
        } else {
            let lo = finite().fold(f64::INFINITY, f64::min);
            let hi = finite().fold(f64::NEG_INFINITY, f64::max);
            let (lo, hi) = if hi > lo {
                (lo, hi)
            } else {
                let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
                (lo - d, lo + d)
            };
            Scale { lo, hi, diverging }
        }
    }
    pub(super) fn frac(&self, v: f64) -> f64 {
        (v - self.lo) / (self.hi - self.lo)
    }
    pub(super) fn color(&self, v: f64) -> RGBColor {
        let t = self.frac(v);
        if self.diverging {
            style::diverging(t)
        } else {
            style::viridis(t)
        }
    }
}

/// Vertical colour bar with ticks on its right and an optional threshold mark.
pub(super) fn color_bar(
    root: &Root,
    scale: &Scale,
    bar: PixRect,
    ticks: &[f64],
    labels: &[String],
    threshold: Option<f64>,
) -> DrawResult {
    let steps = bar.height().round().max(1.0) as usize;
    for i in 0..steps {
        let y0 = bar.y1 - (i as f64 + 1.0) * bar.height() / steps as f64;
        let y1 = bar.y1 - i as f64 * bar.height() / steps as f64;
        let t = (i as f64 + 0.5) / steps as f64;
        let v = scale.lo + t * (scale.hi - scale.lo);
        draw::fill_rect(root, PixRect::new(bar.x0, y0, bar.x1, y1), &scale.color(v))?;
    }
    draw::stroke_rect(root, bar, &style::AXIS, 1.0)?;
    let ypos = |v: f64| bar.y1 - scale.frac(v) * bar.height();
    for (v, l) in ticks.iter().zip(labels) {
        let y = ypos(*v);
        draw::polyline(root, &[(bar.x1, y), (bar.x1 + 5.0, y)], &style::AXIS, 1)?;
        draw::text(
            root,
            l,
            (bar.x1 + 9.0, y),
            style::TICK_PX,
            HPos::Left,
            VPos::Center,
            false,
            &style::TEXT,
        )?;
    }
    if let Some(t) = threshold {
        let f = scale.frac(t);
        if (0.0..=1.0).contains(&f) {
            let y = ypos(t);
            let line = PixRect::new(bar.x0 - 4.0, y - 1.5, bar.x1 + 4.0, y + 1.5);
            draw::fill_rect(
                root,
                PixRect::new(line.x0 - 1.0, line.y0 - 1.0, line.x1 + 1.0, line.y1 + 1.0),
                &style::WHITE,
            )?;
            draw::fill_rect(root, line, &style::BLACK)?;
        }
    }
    Ok(())
}
