//! Figures of the toolkit, in one print-ready style.
//!
//! Both halves of the toolkit (the theory simulator and the real-image experiments) draw through
//! this module, so every figure shares fonts, colours, markers and layout rules. There are four
//! figure kinds:
//!
//! * [`line_chart`]: curves of a mean over seeds with a +-sd band (and optional error bars),
//!   horizontal reference bands (e.g. the from-scratch baseline), linear or log axes;
//! * [`heatmap`]: a matrix of coloured cells with a labelled colour bar, optional block
//!   separators and cell annotations;
//! * [`grouped_bars`]: bars grouped by category, one per series, with +-sd error bars;
//! * [`phase_diagram`]: a 2-D parameter grid coloured by a scalar, with cells above a threshold
//!   outlined and not-run cells hatched.
//!
//! Figures are built from plain data (saved results, all types here are serde-serialisable),
//! never from live state. Every function returns the SVG document as a `String`; the caller
//! writes it to disk. Unusable input (no data, ragged lengths, all-NaN data, non-positive values
//! on a log axis...) is reported as [`PlotError::Data`], never a panic. NaN entries inside a
//! series are skipped: the line breaks there, a bar is left out, a cell is drawn hatched.
//!
//! The style (one place: the private `style` submodule): white background, 800x560 px by
//! default (matrix figures size themselves to the matrix), sans-serif text of 22 px (title),
//! 18 px (axis titles), 14 px (tick labels), 15 px (legend); the Okabe-Ito colour-blind-safe
//! palette in a fixed order with a distinct marker per series index, so a series index looks
//! the same in every figure; viridis for sequential and blue-white-red for diverging colour
//! scales; a light grid; the legend in a white semi-opaque box at the corner of the plot where it
//! hides the least data.
//!
//! Rendering uses plotters' SVG backend with default features off (no font rasterisation):
//! layout leaves room for text using a conservative width estimate of a wide sans-serif font,
//! and the SVG viewer renders the text.

mod axes;
mod bars;
mod draw;
mod grid;
mod line;
mod spec;
mod style;

pub use spec::{
    BarSeries, GroupedBars, HBand, Heatmap, LineChart, PhaseDiagram, PlotError, Series,
};

/// Render a [`LineChart`] as an SVG document.
pub fn line_chart(c: &LineChart) -> Result<String, PlotError> {
    line::line_chart(c)
}

/// Render a [`Heatmap`] as an SVG document.
pub fn heatmap(h: &Heatmap) -> Result<String, PlotError> {
    grid::heatmap(h)
}

/// Render a [`GroupedBars`] chart as an SVG document.
pub fn grouped_bars(b: &GroupedBars) -> Result<String, PlotError> {
    bars::grouped_bars(b)
}

/// Render a [`PhaseDiagram`] as an SVG document.
pub fn phase_diagram(p: &PhaseDiagram) -> Result<String, PlotError> {
    grid::phase_diagram(p)
}

#[cfg(test)]
mod tests;
