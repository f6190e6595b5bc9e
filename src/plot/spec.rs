//! What a figure shows, as plain data (every type serde-serialisable, built from saved
//! results): a [`LineChart`] of [`Series`] with reference [`HBand`]s, a [`Heatmap`], a
//! [`GroupedBars`] chart of [`BarSeries`], a [`PhaseDiagram`]; and [`PlotError`], why one could
//! not be drawn.

use super::draw;

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
    /// Labelled x ticks at these values (those inside the axis range) instead of automatic
    /// ones, e.g. at the data's own x values (powers of two, the class counts of a study).
    #[serde(default)]
    pub x_ticks: Option<Vec<f64>>,
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

/// Name of a figure in error messages: its title, or its kind when untitled.
pub(super) fn figure_name(title: &str, kind: &str) -> String {
    if title.trim().is_empty() {
        kind.to_string()
    } else {
        title.to_string()
    }
}

pub(super) fn data_err(figure: &str, msg: impl Into<String>) -> PlotError {
    PlotError::Data {
        figure: figure.to_string(),
        msg: msg.into(),
    }
}

pub(super) fn draw_err(figure: &str, e: draw::Fail) -> PlotError {
    PlotError::Draw {
        figure: figure.to_string(),
        msg: e.0,
    }
}
