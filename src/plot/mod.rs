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
mod style;

/// Why a figure could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Input data is unusable (ragged lengths, no series, NaN-only, non-positive value on a log axis...).
    #[error("figure '{figure}': {msg}")]
    Data {
        /// Title of the figure (or its kind when untitled).
        figure: String,
        /// What is wrong with the data.
        msg: String,
    },
    /// plotters failed while drawing.
    #[error("figure '{figure}': drawing failed: {msg}")]
    Draw {
        /// Title of the figure (or its kind when untitled).
        figure: String,
        /// The drawing error.
        msg: String,
    },
}

/// One curve: mean over seeds at each x, optional standard deviation drawn as a shaded band
/// (and error bars when `error_bars` on the chart is true).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Series {
    /// Legend label (an empty label leaves the series out of the legend).
    pub label: String,
    /// x coordinates, in drawing order; NaN breaks the line.
    pub x: Vec<f64>,
    /// Mean over seeds at each x; NaN breaks the line.
    pub mean: Vec<f64>,
    /// Standard deviation at each x (same length as `x`); NaN = no band at that point.
    pub sd: Option<Vec<f64>>,
}

/// A horizontal reference (e.g. the from-scratch baseline): a line at `mean` with a band of +-sd.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct HBand {
    /// Legend label (empty: not in the legend).
    pub label: String,
    /// Height of the line.
    pub mean: f64,
    /// Half-height of the shaded band (0: line only).
    pub sd: f64,
}

/// A line chart of [`Series`] (mean +- sd over seeds) with optional horizontal reference bands.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LineChart {
    /// Figure title (may be empty).
    pub title: String,
    /// x-axis title, with units.
    pub x_label: String,
    /// y-axis title, with units.
    pub y_label: String,
    /// The curves; series `i` always gets colour and marker number `i`.
    pub series: Vec<Series>,
    /// Horizontal reference lines with bands, drawn behind the series.
    pub bands: Vec<HBand>,
    /// Logarithmic x axis (all x must be > 0).
    pub log_x: bool,
    /// Logarithmic y axis (all means, band means and a fixed range must be > 0).
    pub log_y: bool,
    /// Fixed y range; None = fit the data (including bands and +-sd) with a small margin.
    pub y_range: Option<(f64, f64)>,
    /// Draw error bars (+-sd) at each point in addition to the band.
    pub error_bars: bool,
}

/// Render a [`LineChart`] as an SVG document.
pub fn line_chart(c: &LineChart) -> Result<String, PlotError> {
    line::line_chart(c, None)
}

/// Render a [`LineChart`] with its labelled x ticks at `x_ticks` (those inside the axis range),
/// e.g. at the data's own x values (powers of two on a log axis), instead of automatic ones.
pub fn line_chart_x_ticks(c: &LineChart, x_ticks: &[f64]) -> Result<String, PlotError> {
    line::line_chart(c, Some(x_ticks))
}

/// A matrix as colored cells: rows top to bottom, columns left to right, with a color scale bar.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Heatmap {
    /// Figure title (may be empty).
    pub title: String,
    /// Title under the columns.
    pub x_label: String,
    /// Title left of the rows.
    pub y_label: String,
    /// Column names (empty: column indices); thinned out when there are many.
    pub col_labels: Vec<String>,
    /// Row names (empty: row indices); thinned out when there are many.
    pub row_labels: Vec<String>,
    /// `values[row][col]`; NaN cells are drawn hatched grey.
    pub values: Vec<Vec<f64>>,
    /// Title of the colour bar (quantity and units).
    pub color_label: String,
    /// Diverging blue-white-red palette centred at 0 (symmetric range); otherwise sequential (viridis-like).
    pub diverging: bool,
    /// Horizontal separator lines drawn before these row indices (e.g. between classes' neuron blocks),
    /// and vertical ones before these column indices.
    pub row_breaks: Vec<usize>,
    /// Vertical separator lines drawn before these column indices.
    pub col_breaks: Vec<usize>,
    /// Write the value in each cell (for small matrices).
    pub annotate: bool,
}

/// Render a [`Heatmap`] as an SVG document.
pub fn heatmap(h: &Heatmap) -> Result<String, PlotError> {
    grid::heatmap(h)
}

/// Bars grouped by category, one bar per series in each group, with +-sd error bars.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct BarSeries {
    /// Legend label (empty: not in the legend).
    pub label: String,
    /// Bar height per group (`mean.len() == groups.len()`); NaN leaves the bar out.
    pub mean: Vec<f64>,
    /// Standard deviation per group (same length); NaN = no error bar.
    pub sd: Vec<f64>,
}

/// A grouped bar chart: one group per category, one bar per [`BarSeries`] in each group.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct GroupedBars {
    /// Figure title (may be empty).
    pub title: String,
    /// x-axis title (under the group names).
    pub x_label: String,
    /// y-axis title, with units.
    pub y_label: String,
    /// Group (category) names, left to right.
    pub groups: Vec<String>,
    /// The series; `bars[s].mean.len() == groups.len()`. Series `s` gets colour number `s`.
    pub bars: Vec<BarSeries>,
    /// Fixed y range; None = fit the bars, their error bars and 0.
    pub y_range: Option<(f64, f64)>,
}

/// Render a [`GroupedBars`] chart as an SVG document.
pub fn grouped_bars(b: &GroupedBars) -> Result<String, PlotError> {
    bars::grouped_bars(b)
}

/// A 2-D parameter grid (x values by y values) coloured by a scalar, e.g. the coarse-minus-fine
/// hard-error gap; optional contour-like highlighting of cells above `threshold`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PhaseDiagram {
    /// Figure title (may be empty).
    pub title: String,
    /// x-axis title (parameter name and units).
    pub x_label: String,
    /// y-axis title (parameter name and units).
    pub y_label: String,
    /// Title of the colour bar.
    pub color_label: String,
    /// Parameter values along x (one column each, left to right).
    pub x_values: Vec<f64>,
    /// Parameter values along y (one row each, bottom to top).
    pub y_values: Vec<f64>,
    /// `values[iy][ix]`; NaN = not run (drawn hatched/grey).
    pub values: Vec<Vec<f64>>,
    /// Diverging blue-white-red palette centred at 0; otherwise sequential.
    pub diverging: bool,
    /// Cells with value > threshold get a thick outline (e.g. "the theorem's picture holds here").
    pub threshold: Option<f64>,
    /// Write the value in each cell.
    pub annotate: bool,
}

/// Render a [`PhaseDiagram`] as an SVG document.
pub fn phase_diagram(p: &PhaseDiagram) -> Result<String, PlotError> {
    grid::phase_diagram(p)
}

/// Name of a figure in error messages: its title, or its kind when untitled.
fn figure_name(title: &str, kind: &str) -> String {
    if title.trim().is_empty() {
        kind.to_string()
    } else {
        title.to_string()
    }
}

fn data_err(figure: &str, msg: impl Into<String>) -> PlotError {
    PlotError::Data {
        figure: figure.to_string(),
        msg: msg.into(),
    }
}

fn draw_err(figure: &str, e: draw::Fail) -> PlotError {
    PlotError::Draw {
        figure: figure.to_string(),
        msg: e.0,
    }
}

#[cfg(test)]
mod tests;
