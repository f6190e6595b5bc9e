//! Cartesian axes (frame, ticks, tick labels, axis titles, light grid) drawn with plotters'
//! `ChartBuilder` / `configure_mesh`, log axes through `.log_scale()`. After drawing, figures
//! continue in pixel space through [`PixMap`].

use plotters::chart::ChartBuilder;
use plotters::coord::combinators::{BindKeyPoints, IntoLogRange};
use plotters::coord::ranged1d::{
    AsRangedCoord, DefaultFormatting, KeyPointHint, Ranged, ValueFormatter,
};
use plotters::coord::types::RangedCoordf64;

use super::draw::{self, DrawResult, PixRect, Root};
use super::style;

/// One axis: range, scale, ticks and title.
pub(crate) struct AxisSpec {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    /// Labelled ticks (and grid lines).
    pub major: Vec<f64>,
    /// Unlabelled light grid lines (minor log ticks).
    pub minor: Vec<f64>,
    /// Tick label text.
    pub labels: Vec<String>,
    pub title: String,
    /// Draw grid lines for this axis.
    pub grid: bool,
}

impl AxisSpec {
    /// A numeric axis over `[lo, hi]` with automatic ticks.
    pub fn numeric(lo: f64, hi: f64, log: bool, title: &str, target_ticks: usize) -> Self {
        let (major, minor, labels) = if log {
            let (major, minor) = style::log_ticks(lo, hi);
            let labels = major.iter().map(|v| style::fmt_log_tick(*v)).collect();
            (major, minor, labels)
        } else {
            let (major, step) = style::linear_ticks(lo, hi, target_ticks);
            let labels = major.iter().map(|v| style::fmt_tick(*v, step)).collect();
            (major, Vec::new(), labels)
        };
        AxisSpec {
            lo,
            hi,
            log,
            major,
            minor,
            labels,
            title: title.to_string(),
            grid: true,
        }
    }

    /// Position of `v` along the axis in [0, 1] (log-aware); values <= 0 on a log axis map to
    /// -infinity.
    pub fn frac(&self, v: f64) -> f64 {
        if self.log {
            if v <= 0.0 {
                return f64::NEG_INFINITY;
            }
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    /// Widest tick label, px.
    pub fn max_label_width(&self) -> f64 {
        self.labels
            .iter()
            .map(|l| style::text_width(l, style::TICK_PX))
            .fold(0.0, f64::max)
    }
}

/// Space around the plotting area, px.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Margins {
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
    pub left: f64,
    /// Height of the area under the x axis holding tick labels and the x title.
    pub x_area: f64,
    /// Width of the area left of the y axis holding tick labels and the y title.
    pub y_area: f64,
}

/// Gap between the axis line and its tick labels (plotters uses twice the tick size).
const TICK: i32 = 5;
const LABEL_DIST: f64 = 2.0 * TICK as f64;

impl Margins {
    /// Margins for an axes figure with the given axes and title; `x_label_h` is the height of
    /// the x tick labels (one text line, or more for wrapped / rotated custom labels).
    pub fn for_axes(title: &str, x: &AxisSpec, y: &AxisSpec, x_label_h: f64) -> Self {
        let top = if title.is_empty() {
            16.0
        } else {
            12.0 + title_lines(title).len() as f64 * style::line_height(style::TITLE_PX) + 10.0
        };
        let x_title_h = if x.title.is_empty() {
            0.0
        } else {
            style::line_height(style::LABEL_PX) + 4.0
        };
        let y_title_w = if y.title.is_empty() {
            0.0
        } else {
            style::line_height(style::LABEL_PX) + 8.0
        };
        let last_x_label = x
            .labels
            .last()
            .map(|l| style::text_width(l, style::TICK_PX) / 2.0)
            .unwrap_or(0.0);
        Margins {
            top,
            right: (last_x_label + 8.0).max(24.0),
            bottom: 10.0,
            left: 12.0,
            x_area: (LABEL_DIST + x_label_h + x_title_h + 4.0).ceil(),
            y_area: (y_title_w + y.max_label_width() + LABEL_DIST + 4.0).ceil(),
        }
    }
}

/// Maps data coordinates to pixels once the axes are drawn.
pub(crate) struct PixMap {
    pub plot: PixRect,
    pub x: AxisSpec,
    pub y: AxisSpec,
}

impl PixMap {
    pub fn px(&self, v: f64) -> f64 {
        let f = self.x.frac(v);
        clamp_far(
            self.plot.x0 + f * self.plot.width(),
            self.plot.x0,
            self.plot.x1,
        )
    }
    pub fn py(&self, v: f64) -> f64 {
        let f = self.y.frac(v);
        clamp_far(
            self.plot.y1 - f * self.plot.height(),
            self.plot.y0,
            self.plot.y1,
        )
    }
    pub fn pt(&self, x: f64, y: f64) -> draw::Pt {
        (self.px(x), self.py(y))
    }
}

/// Keep far-off (or infinite) pixel values finite while preserving which side they are on.
fn clamp_far(p: f64, a: f64, b: f64) -> f64 {
    let span = (b - a).abs().max(1.0);
    if p.is_nan() {
        return a;
    }
    p.clamp(a - 1e4 * span, b + 1e4 * span)
}

/// A linear f64 axis with our own tick positions. (plotters' `RangedCoordf64` wrapped in
/// `WithKeyPoints` loses its value formatter, so the mesh could not label it.)
struct LinAxis {
    inner: RangedCoordf64,
    major: Vec<f64>,
    minor: Vec<f64>,
}

impl LinAxis {
    fn new(a: &AxisSpec) -> Self {
        LinAxis {
            inner: (a.lo..a.hi).into(),
            major: a.major.clone(),
            minor: a.minor.clone(),
        }
    }
}

impl Ranged for LinAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.major.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// The lines of a title: wrapped at spaces (up to three lines) when it is wider than a figure of
/// the default width.
pub(crate) fn title_lines(title: &str) -> Vec<String> {
    let room = f64::from(style::WIDTH) - 40.0;
    if style::text_width(title, style::TITLE_PX) <= room {
        return vec![title.to_string()];
    }
    draw::wrap(title, style::TITLE_PX, room, 3).unwrap_or_else(|| vec![title.to_string()])
}

/// Draw title, grid, axes, ticks and axis titles; return the pixel mapping.
pub(crate) fn draw_axes(
    root: &Root,
    title: &str,
    m: &Margins,
    x: AxisSpec,
    y: AxisSpec,
) -> DrawResult<PixMap> {
    let (w, _) = root.dim_in_pixel();
    if !title.is_empty() {
        for (k, line) in title_lines(title).iter().enumerate() {
            draw::text(
                root,
                line,
                (
                    f64::from(w) / 2.0,
                    12.0 + k as f64 * style::line_height(style::TITLE_PX),
                ),
                style::TITLE_PX,
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
                false,
                &style::TEXT,
            )?;
        }
    }
    let xr = x.lo..x.hi;
    let yr = y.lo..y.hi;
    let corners = match (x.log, y.log) {
        (false, false) => mesh(root, m, &x, &y, LinAxis::new(&x), LinAxis::new(&y))?,
        (true, false) => mesh(
            root,
            m,
            &x,
            &y,
            xr.log_scale()
                .with_key_points(x.major.clone())
                .with_light_points(x.minor.clone()),
            LinAxis::new(&y),
        )?,
        (false, true) => mesh(
            root,
            m,
            &x,
            &y,
            LinAxis::new(&x),
            yr.log_scale()
                .with_key_points(y.major.clone())
                .with_light_points(y.minor.clone()),
        )?,
        (true, true) => mesh(
            root,
            m,
            &x,
            &y,
            xr.log_scale()
                .with_key_points(x.major.clone())
                .with_light_points(x.minor.clone()),
            yr.log_scale()
                .with_key_points(y.major.clone())
                .with_light_points(y.minor.clone()),
        )?,
    };
    Ok(PixMap {
        plot: corners,
        x,
        y,
    })
}

fn mesh<XS, YS>(
    root: &Root,
    m: &Margins,
    xa: &AxisSpec,
    ya: &AxisSpec,
    xs: XS,
    ys: YS,
) -> DrawResult<PixRect>
where
    XS: AsRangedCoord<Value = f64>,
    YS: AsRangedCoord<Value = f64>,
    XS::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    YS::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .margin_top(m.top.round() as i32)
        .margin_right(m.right.round() as i32)
        .margin_bottom(m.bottom.round() as i32)
        .margin_left(m.left.round() as i32)
        .x_label_area_size(m.x_area.round() as i32)
        .y_label_area_size(m.y_area.round() as i32)
        .build_cartesian_2d(xs, ys)?;

    let label_of = |axis: &AxisSpec, v: f64| -> String {
        axis.major
            .iter()
            .position(|t| (t - v).abs() <= 1e-9 * t.abs().max(1e-300))
            .and_then(|i| axis.labels.get(i).cloned())
            .unwrap_or_default()
    };
    let xfmt = |v: &f64| label_of(xa, *v);
    let yfmt = |v: &f64| label_of(ya, *v);

    {
        let mut mesh = chart.configure_mesh();
        mesh.x_label_formatter(&xfmt)
            .y_label_formatter(&yfmt)
            .label_style(draw::font(style::TICK_PX))
            .axis_desc_style(draw::font(style::LABEL_PX))
            .bold_line_style(style::GRID.stroke_width(1))
            .light_line_style(style::GRID_MINOR.stroke_width(1))
            .axis_style(style::AXIS.stroke_width(1))
            .set_all_tick_mark_size(TICK);
        if !xa.title.is_empty() {
            mesh.x_desc(xa.title.clone());
        }
        if !ya.title.is_empty() {
            mesh.y_desc(ya.title.clone());
        }
        if !xa.grid {
            mesh.disable_x_mesh();
        }
        if !ya.grid {
            mesh.disable_y_mesh();
        }
        mesh.draw()?;
    }

    let (x0, y0) = chart.backend_coord(&(xa.lo, ya.hi));
    let (x1, y1) = chart.backend_coord(&(xa.hi, ya.lo));
    Ok(PixRect::new(
        f64::from(x0),
        f64::from(y0),
        f64::from(x1),
        f64::from(y1),
    ))
}

use plotters::style::Color as _;
