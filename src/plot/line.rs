//! Line charts: mean curves with +-sd bands / error bars and horizontal reference bands.

use plotters::prelude::{IntoDrawingArea, SVGBackend};

use super::axes::{self, AxisSpec, Margins, PixMap};
use super::draw::{self, DrawResult, LegendEntry, PixRect, Pt, Root, Swatch};
use super::spec::{data_err, draw_err, figure_name, LineChart, PlotError};
use super::style;

/// One point of a series after validation.
#[derive(Clone, Copy)]
struct P {
    x: f64,
    m: f64,
    /// Finite, non-negative sd, if any.
    sd: Option<f64>,
}

impl P {
    fn ok(&self) -> bool {
        self.x.is_finite() && self.m.is_finite()
    }
}

struct Clean {
    series: Vec<Vec<P>>,
    x: (f64, f64),
    y: (f64, f64),
}

fn validate(c: &LineChart, fig: &str) -> Result<Clean, PlotError> {
    if c.series.is_empty() {
        return Err(data_err(fig, "no series to plot"));
    }
    let mut series = Vec::with_capacity(c.series.len());
    let (mut xlo, mut xhi) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut ylo, mut yhi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut grow_y = |v: f64| {
        if v.is_finite() && (!c.log_y || v > 0.0) {
            ylo = ylo.min(v);
            yhi = yhi.max(v);
        }
    };
    for (si, s) in c.series.iter().enumerate() {
        let name = if s.label.is_empty() {
            format!("series #{si}")
        } else {
            format!("series '{}'", s.label)
        };
        if s.x.is_empty() && s.mean.is_empty() {
            return Err(data_err(fig, format!("{name} is empty")));
        }
        if s.x.len() != s.mean.len() {
            return Err(data_err(
                fig,
                format!(
                    "{name}: x has {} values but mean has {}",
                    s.x.len(),
                    s.mean.len()
                ),
            ));
        }
        if let Some(sd) = &s.sd {
            if sd.len() != s.x.len() {
                return Err(data_err(
                    fig,
                    format!("{name}: x has {} values but sd has {}", s.x.len(), sd.len()),
                ));
            }
        }
        let mut pts = Vec::with_capacity(s.x.len());
        for i in 0..s.x.len() {
            let (x, m) = (s.x[i], s.mean[i]);
            let sd = s.sd.as_ref().map(|v| v[i]);
            for (what, v) in [("x", x), ("mean", m), ("sd", sd.unwrap_or(0.0))] {
                if v.is_infinite() {
                    return Err(data_err(fig, format!("{name}: {what}[{i}] is infinite")));
                }
            }
            if let Some(sd) = sd {
                if sd < 0.0 {
                    return Err(data_err(fig, format!("{name}: sd[{i}] = {sd} is negative")));
                }
            }
            let p = P {
                x,
                m,
                sd: sd.filter(|v| v.is_finite()),
            };
            if p.ok() {
                if c.log_x && x <= 0.0 {
                    return Err(data_err(
                        fig,
                        format!("{name}: x[{i}] = {x} on a log x axis (must be > 0)"),
                    ));
                }
                if c.log_y && m <= 0.0 {
                    return Err(data_err(
                        fig,
                        format!("{name}: mean[{i}] = {m} on a log y axis (must be > 0)"),
                    ));
                }
                xlo = xlo.min(x);
                xhi = xhi.max(x);
                grow_y(m);
                if let Some(sd) = p.sd {
                    grow_y(m - sd);
                    grow_y(m + sd);
                }
            }
            pts.push(p);
        }
        if !pts.iter().any(P::ok) {
            return Err(data_err(
                fig,
                format!("{name} has no finite (x, mean) point (all NaN)"),
            ));
        }
        series.push(pts);
    }
    for (bi, b) in c.bands.iter().enumerate() {
        let name = if b.label.is_empty() {
            format!("band #{bi}")
        } else {
            format!("band '{}'", b.label)
        };
        if !b.mean.is_finite() || !b.sd.is_finite() {
            return Err(data_err(fig, format!("{name}: mean and sd must be finite")));
        }
        if b.sd < 0.0 {
            return Err(data_err(fig, format!("{name}: sd = {} is negative", b.sd)));
        }
        if c.log_y && b.mean <= 0.0 {
            return Err(data_err(
                fig,
                format!("{name}: mean = {} on a log y axis (must be > 0)", b.mean),
            ));
        }
        grow_y(b.mean);
        grow_y(b.mean - b.sd);
        grow_y(b.mean + b.sd);
    }
    let x = pad_range(xlo, xhi, c.log_x, 0.03);
    let y = match c.y_range {
        Some((lo, hi)) => {
            if !lo.is_finite() || !hi.is_finite() || lo >= hi {
                return Err(data_err(
                    fig,
                    format!("y_range ({lo}, {hi}) must be finite with lo < hi"),
                ));
            }
            if c.log_y && lo <= 0.0 {
                return Err(data_err(
                    fig,
                    format!("y_range ({lo}, {hi}) on a log y axis must be > 0"),
                ));
            }
            (lo, hi)
        }
        None => pad_range(ylo, yhi, c.log_y, 0.05),
    };
    Ok(Clean { series, x, y })
}

/// Data range widened by `frac` of its span on each side (multiplicatively on a log axis);
/// a single value gets a range around it.
pub(crate) fn pad_range(lo: f64, hi: f64, log: bool, frac: f64) -> (f64, f64) {
    if log {
        if hi <= lo {
            return (lo / 2.0, lo * 2.0);
        }
        let f = (hi / lo).powf(frac);
        (lo / f, hi * f)
    } else {
        if hi <= lo {
            let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            return (lo - d, lo + d);
        }
        let d = (hi - lo) * frac;
        (lo - d, hi + d)
    }
}

/// Split a series into runs of consecutive finite points.
fn runs(pts: &[P]) -> Vec<&[P]> {
    pts.split(|p| !p.ok()).filter(|r| !r.is_empty()).collect()
}

fn legend_entries(c: &LineChart) -> Vec<LegendEntry> {
    let mut out = Vec::new();
    for (i, b) in c.bands.iter().enumerate() {
        if !b.label.is_empty() {
            let (color, dash) = style::reference_style(i);
            out.push(LegendEntry {
                label: b.label.clone(),
                swatch: Swatch::Reference {
                    color,
                    dash,
                    band: b.sd > 0.0,
                },
            });
        }
    }
    let mut series = Vec::new();
    for (i, s) in c.series.iter().enumerate() {
        if !s.label.is_empty() {
            let has_sd =
                s.sd.as_ref()
                    .is_some_and(|v| v.iter().any(|x| x.is_finite() && *x > 0.0));
            series.push(LegendEntry {
                label: s.label.clone(),
                swatch: Swatch::Series {
                    color: style::series_color(i),
                    marker: style::series_marker(i),
                    band: has_sd,
                    errbar: has_sd && c.error_bars,
                },
            });
        }
    }
    series.extend(out);
    series
}

/// Render a line chart; the chart's `x_ticks`, if any, replace the automatic labelled x ticks.
pub(crate) fn line_chart(c: &LineChart) -> Result<String, PlotError> {
    let fig = figure_name(&c.title, "line chart");
    let clean = validate(c, &fig)?;
    let entries = legend_entries(c);
    let render = |y| render(c, &clean, &entries, y, c.x_ticks.as_deref());
    let (svg, cost, plot_h) = render(clean.y).map_err(|e| draw_err(&fig, e))?;
    if cost == 0 || c.y_range.is_some() || entries.is_empty() {
        return Ok(svg);
    }
    // The legend covers data wherever it goes: make headroom above the data for it.
    let (_, lh) = draw::legend_size(&entries);
    let frac = ((lh + 26.0) / plot_h).min(0.6);
    let (lo, hi) = clean.y;
    let y = if c.log_y {
        (lo, lo * (hi / lo).powf(1.0 / (1.0 - frac)))
    } else {
        (lo, lo + (hi - lo) / (1.0 - frac))
    };
    let (svg, _, _) = render(y).map_err(|e| draw_err(&fig, e))?;
    Ok(svg)
}

/// Draw the figure with the given y range; returns the SVG, how many data points the legend
/// covers, and the plot height.
fn render(
    c: &LineChart,
    clean: &Clean,
    entries: &[LegendEntry],
    y: (f64, f64),
    x_ticks: Option<&[f64]>,
) -> DrawResult<(String, usize, f64)> {
    let mut xa = AxisSpec::numeric(clean.x.0, clean.x.1, c.log_x, &c.x_label, 7);
    if let Some(ticks) = x_ticks {
        xa.major = ticks
            .iter()
            .copied()
            .filter(|v| xa.frac(*v).is_finite() && (0.0..=1.0).contains(&xa.frac(*v)))
            .collect();
        xa.labels = xa.major.iter().map(|v| style::fmt_log_tick(*v)).collect();
        xa.minor.clear();
    }
    let ya = AxisSpec::numeric(y.0, y.1, c.log_y, &c.y_label, 6);
    let mut m = Margins::for_axes(&c.title, &xa, &ya, style::line_height(style::TICK_PX));
    let (lw, lh) = draw::legend_size(entries);
    let est_plot_w = f64::from(style::WIDTH) - m.left - m.right - m.y_area;
    let est_plot_h = f64::from(style::HEIGHT) - m.top - m.bottom - m.x_area;
    let outside = !entries.is_empty() && (lh > 0.55 * est_plot_h || lw > 0.45 * est_plot_w);
    let mut width = style::WIDTH;
    if outside {
        width += (lw + 16.0).ceil() as u32;
        m.right += lw + 16.0;
    }
    let mut buf = String::new();
    let cost;
    let plot_h;
    {
        let root = SVGBackend::with_string(&mut buf, (width, style::HEIGHT)).into_drawing_area();
        root.fill(&style::WHITE)?;
        let map = axes::draw_axes(&root, &c.title, &m, xa, ya)?;
        plot_h = map.plot.height();
        let obstacles = draw_data(&root, c, clean, &map)?;
        draw::stroke_rect(&root, map.plot, &style::AXIS, 1.0)?;
        if outside {
            cost = 0;
            draw::draw_legend(&root, entries, (map.plot.x1 + 16.0, map.plot.y0))?;
        } else if !entries.is_empty() {
            let (at, n) = draw::place_legend(&map.plot, (lw, lh), &obstacles);
            cost = n;
            draw::draw_legend(&root, entries, at)?;
        } else {
            cost = 0;
        }
        root.present()?;
    }
    Ok((buf, cost, plot_h))
}

/// Draw reference bands and series; returns pixel points covered by data (for the legend).
fn draw_data(root: &Root, c: &LineChart, clean: &Clean, map: &PixMap) -> DrawResult<Vec<Pt>> {
    let plot = map.plot;
    let mut obstacles: Vec<Pt> = Vec::new();

    // Reference bands, behind everything.
    for (i, b) in c.bands.iter().enumerate() {
        let (color, dash) = style::reference_style(i);
        if b.sd > 0.0 {
            let top = map.py(b.mean + b.sd).clamp(plot.y0, plot.y1);
            let bot = map.py(b.mean - b.sd).clamp(plot.y0, plot.y1);
            if bot > top {
                draw::fill_rect(
                    root,
                    PixRect::new(plot.x0, top, plot.x1, bot),
                    &style::alpha(color, style::BAND_ALPHA * 0.8),
                )?;
            }
        }
        let y = map.py(b.mean);
        if y >= plot.y0 && y <= plot.y1 {
            let line = [(plot.x0, y), (plot.x1, y)];
            draw::dashed(root, &line, &color, style::LINE_W, dash)?;
            draw::sample_polyline(&line, 3.0, &mut obstacles);
        }
    }

    // Series bands.
    for (i, pts) in clean.series.iter().enumerate() {
        let color = style::series_color(i);
        for run in runs(pts) {
            for band in run.split(|p| p.sd.is_none()).filter(|r| r.len() > 1) {
                let mut poly: Vec<Pt> = band
                    .iter()
                    .map(|p| map.pt(p.x, p.m + p.sd.unwrap_or(0.0)))
                    .collect();
                poly.extend(
                    band.iter()
                        .rev()
                        .map(|p| map.pt(p.x, p.m - p.sd.unwrap_or(0.0))),
                );
                let clipped = draw::clip_polygon(&poly, &plot);
                draw::polygon(root, &clipped, &style::alpha(color, style::BAND_ALPHA))?;
                let mut edge = clipped.clone();
                if let Some(&first) = clipped.first() {
                    edge.push(first);
                }
                draw::sample_polyline(&edge, 8.0, &mut obstacles);
            }
        }
    }

    // Lines, error bars, markers.
    for (i, pts) in clean.series.iter().enumerate() {
        let color = style::series_color(i);
        for run in runs(pts) {
            let px: Vec<Pt> = run.iter().map(|p| map.pt(p.x, p.m)).collect();
            for piece in draw::clip_polyline(&px, &plot) {
                draw::polyline(root, &piece, &color, style::LINE_W)?;
                draw::sample_polyline(&piece, 3.0, &mut obstacles);
            }
        }
        if c.error_bars {
            for p in pts.iter().filter(|p| p.ok()) {
                let Some(sd) = p.sd else { continue };
                let x = map.px(p.x);
                let (a, b) = ((x, map.py(p.m + sd)), (x, map.py(p.m - sd)));
                if let Some((a, b)) = draw::clip_segment(a, b, &plot) {
                    draw::polyline(root, &[a, b], &color, style::ERRBAR_W)?;
                    draw::sample_polyline(&[a, b], 3.0, &mut obstacles);
                    for end in [map.py(p.m + sd), map.py(p.m - sd)] {
                        if end >= plot.y0 - 0.5 && end <= plot.y1 + 0.5 {
                            draw::polyline(
                                root,
                                &[(x - 5.0, end), (x + 5.0, end)],
                                &color,
                                style::ERRBAR_W,
                            )?;
                        }
                    }
                }
            }
        }
        let n_finite = pts.iter().filter(|p| p.ok()).count();
        let stride = n_finite.div_ceil(30).max(1);
        let shape = style::series_marker(i);
        let mut k = 0;
        for (idx, p) in pts.iter().enumerate() {
            if !p.ok() {
                continue;
            }
            // A point without finite neighbours has no line: always mark it.
            let isolated =
                (idx == 0 || !pts[idx - 1].ok()) && (idx + 1 >= pts.len() || !pts[idx + 1].ok());
            let show = k % stride == 0 || isolated;
            k += 1;
            let at = map.pt(p.x, p.m);
            if show && plot.contains(at, 0.5) {
                draw::marker(root, shape, at, style::MARKER_R, &color)?;
                draw::sample_rect(
                    &PixRect::new(at.0 - 5.0, at.1 - 5.0, at.0 + 5.0, at.1 + 5.0),
                    5.0,
                    &mut obstacles,
                );
            }
        }
    }
    Ok(obstacles)
}
