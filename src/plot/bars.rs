//! Grouped bar charts with +-sd error bars.

use plotters::prelude::{IntoDrawingArea, SVGBackend};
use plotters::style::text_anchor::{HPos, VPos};

use super::axes::{self, AxisSpec, Margins, PixMap};
use super::draw::{self, DrawResult, LegendEntry, PixRect, Pt, Root, Swatch};
use super::line::pad_range;
use super::spec::{data_err, draw_err, figure_name, GroupedBars, PlotError};
use super::style;

/// Fraction of a group's slot covered by its bars.
const GROUP_FILL: f64 = 0.8;
/// Widest bar, px (few bars should not turn into slabs).
const MAX_BAR_PX: f64 = 90.0;
const ERRBAR_COLOR: plotters::style::RGBColor = plotters::style::RGBColor(0x22, 0x22, 0x22);

/// How the group names are written under the axis.
enum GroupLabels {
    /// One line each.
    Flat,
    /// Wrapped at spaces into several centred lines.
    Wrapped(Vec<Vec<String>>),
    /// Rotated to read bottom-to-top; only every `step`-th when the slots are too narrow.
    Rotated(Vec<String>, usize),
}

impl GroupLabels {
    fn height(&self, groups: &[String]) -> f64 {
        let lh = style::line_height(style::TICK_PX);
        match self {
            GroupLabels::Flat => lh,
            GroupLabels::Wrapped(lines) => {
                lh * lines.iter().map(Vec::len).max().unwrap_or(1) as f64
            }
            GroupLabels::Rotated(l, _) => {
                let w = l
                    .iter()
                    .map(|s| style::text_width(s, style::TICK_PX))
                    .fold(0.0, f64::max);
                debug_assert_eq!(l.len(), groups.len());
                w + 4.0
            }
        }
    }
}

fn choose_labels(groups: &[String], slot: f64) -> GroupLabels {
    let room = slot - 8.0;
    let widest = groups
        .iter()
        .map(|g| style::text_width(g, style::TICK_PX))
        .fold(0.0, f64::max);
    if widest <= room {
        return GroupLabels::Flat;
    }
    let wrapped: Option<Vec<Vec<String>>> = groups
        .iter()
        .map(|g| draw::wrap(g, style::TICK_PX, room, 3))
        .collect();
    if let Some(w) = wrapped {
        return GroupLabels::Wrapped(w);
    }
    let step = (style::line_height(style::TICK_PX) / slot).ceil().max(1.0) as usize;
    GroupLabels::Rotated(
        groups
            .iter()
            .map(|g| {
                if g.chars().count() > 40 {
                    format!("{}…", g.chars().take(39).collect::<String>())
                } else {
                    g.clone()
                }
            })
            .collect(),
        step,
    )
}

fn validate(b: &GroupedBars, fig: &str) -> Result<(f64, f64), PlotError> {
    if b.groups.is_empty() {
        return Err(data_err(fig, "no groups to plot"));
    }
    if b.bars.is_empty() {
        return Err(data_err(fig, "no bar series to plot"));
    }
    let g = b.groups.len();
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for (si, s) in b.bars.iter().enumerate() {
        let name = if s.label.is_empty() {
            format!("bar series #{si}")
        } else {
            format!("bar series '{}'", s.label)
        };
        if s.mean.len() != g {
            return Err(data_err(
                fig,
                format!("{name}: {} means for {g} groups", s.mean.len()),
            ));
        }
        if s.sd.len() != g {
            return Err(data_err(
                fig,
                format!("{name}: {} sds for {g} groups", s.sd.len()),
            ));
        }
        for i in 0..g {
            let (m, sd) = (s.mean[i], s.sd[i]);
            if m.is_infinite() || sd.is_infinite() {
                return Err(data_err(fig, format!("{name}: group {i} is infinite")));
            }
            if sd < 0.0 {
                return Err(data_err(fig, format!("{name}: sd[{i}] = {sd} is negative")));
            }
            if m.is_finite() {
                let sd = if sd.is_finite() { sd } else { 0.0 };
                lo = lo.min(m - sd);
                hi = hi.max(m + sd);
            }
        }
        if !s.mean.iter().any(|m| m.is_finite()) {
            return Err(data_err(
                fig,
                format!("{name} has no finite mean (all NaN)"),
            ));
        }
    }
    match b.y_range {
        Some((l, h)) => {
            if !l.is_finite() || !h.is_finite() || l >= h {
                return Err(data_err(
                    fig,
                    format!("y_range ({l}, {h}) must be finite with lo < hi"),
                ));
            }
            Ok((l, h))
        }
        None => {
            if lo == 0.0 && hi == 0.0 {
                return Ok((0.0, 1.0));
            }
            // Pad away from zero only, so bars start exactly at the axis.
            let (pl, ph) = pad_range(lo, hi, false, 0.05);
            Ok((
                if lo == 0.0 { 0.0 } else { pl },
                if hi == 0.0 { 0.0 } else { ph },
            ))
        }
    }
}

fn legend_entries(b: &GroupedBars) -> Vec<LegendEntry> {
    b.bars
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.label.is_empty())
        .map(|(i, s)| LegendEntry {
            label: s.label.clone(),
            swatch: Swatch::Bar {
                color: style::series_color(i),
            },
        })
        .collect()
}

/// Render a grouped bar chart.
pub(crate) fn grouped_bars(b: &GroupedBars) -> Result<String, PlotError> {
    let fig = figure_name(&b.title, "grouped bars");
    let y = validate(b, &fig)?;
    let entries = legend_entries(b);
    let (svg, cost, plot_h) = render(b, &entries, y).map_err(|e| draw_err(&fig, e))?;
    if cost == 0 || b.y_range.is_some() || entries.is_empty() || y.1 <= 0.0 {
        return Ok(svg);
    }
    let (_, lh) = draw::legend_size(&entries);
    let frac = ((lh + 26.0) / plot_h).min(0.6);
    let y = (y.0, y.0 + (y.1 - y.0) / (1.0 - frac));
    let (svg, _, _) = render(b, &entries, y).map_err(|e| draw_err(&fig, e))?;
    Ok(svg)
}

fn render(
    b: &GroupedBars,
    entries: &[LegendEntry],
    y: (f64, f64),
) -> DrawResult<(String, usize, f64)> {
    let g = b.groups.len() as f64;
    let mut xa = AxisSpec {
        lo: 0.0,
        hi: g,
        log: false,
        major: Vec::new(),
        minor: Vec::new(),
        labels: Vec::new(),
        title: b.x_label.clone(),
        grid: false,
    };
    let ya = AxisSpec::numeric(y.0, y.1, false, &b.y_label, 6);
    let m0 = Margins::for_axes(&b.title, &xa, &ya, style::line_height(style::TICK_PX));
    let (lw, lh) = draw::legend_size(entries);
    let est_plot_w = f64::from(style::WIDTH) - m0.left - m0.right - m0.y_area;
    let outside = !entries.is_empty() && (lw > 0.45 * est_plot_w);
    let mut width = style::WIDTH;
    let mut plot_w = est_plot_w;
    if outside {
        width += (lw + 16.0).ceil() as u32;
    }
    // Room for the group names: the plot width is known before drawing (margins only depend
    // on the y axis), so the label mode can be chosen up front.
    let labels = choose_labels(&b.groups, plot_w / g);
    let mut m = Margins::for_axes(&b.title, &xa, &ya, labels.height(&b.groups));
    if outside {
        m.right += lw + 16.0;
    }
    let est_plot_h = f64::from(style::HEIGHT) - m.top - m.bottom - m.x_area;
    let outside_h = !outside && !entries.is_empty() && lh > 0.55 * est_plot_h;
    if outside_h {
        width += (lw + 16.0).ceil() as u32;
        m.right += lw + 16.0;
    }
    let outside = outside || outside_h;
    plot_w = f64::from(width) - m.left - m.right - m.y_area;
    debug_assert!(plot_w > 0.0);
    xa.grid = false;

    let mut buf = String::new();
    let cost;
    let plot_h;
    {
        let root = SVGBackend::with_string(&mut buf, (width, style::HEIGHT)).into_drawing_area();
        root.fill(&style::WHITE)?;
        let map = axes::draw_axes(&root, &b.title, &m, xa, ya)?;
        plot_h = map.plot.height();
        let obstacles = draw_bars(&root, b, &map)?;
        draw_group_labels(&root, b, &map, &labels)?;
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

fn draw_bars(root: &Root, b: &GroupedBars, map: &PixMap) -> DrawResult<Vec<Pt>> {
    let plot = map.plot;
    let s_n = b.bars.len() as f64;
    // Bar width in group units, at most MAX_BAR_PX wide.
    let px_per_group = plot.width() / b.groups.len() as f64;
    let bw = (GROUP_FILL / s_n).min(MAX_BAR_PX / px_per_group);
    let fill = bw * s_n;
    let base = 0.0f64.clamp(map.y.lo, map.y.hi);
    let mut obstacles = Vec::new();
    for (si, s) in b.bars.iter().enumerate() {
        let color = style::series_color(si);
        let edge = style::darken(color, 0.6);
        for gi in 0..b.groups.len() {
            let mean = s.mean[gi];
            if !mean.is_finite() {
                continue;
            }
            let x0 = gi as f64 + (1.0 - fill) / 2.0 + si as f64 * bw;
            let (px0, px1) = (map.px(x0 + bw * 0.04), map.px(x0 + bw * 0.96));
            let r = PixRect::new(px0, map.py(base), px1, map.py(mean));
            let r = PixRect::new(
                r.x0,
                r.y0.clamp(plot.y0, plot.y1),
                r.x1,
                r.y1.clamp(plot.y0, plot.y1),
            );
            if r.height() >= 0.5 {
                draw::fill_rect(root, r, &color)?;
                draw::stroke_rect(root, r, &edge, 1.0)?;
                draw::sample_rect(&r, 6.0, &mut obstacles);
            } else {
                // a bar too low to see (a zero): a mark on the axis and its value above it
                let (cx, yb) = ((px0 + px1) / 2.0, r.y0);
                draw::polyline(root, &[(px0, yb), (px1, yb)], &edge, 3)?;
                let value = if mean == 0.0 {
                    "0".to_string()
                } else {
                    format!("{mean:.2e}")
                };
                draw::text(
                    root,
                    &value,
                    (cx, yb - 4.0),
                    style::TICK_PX,
                    HPos::Center,
                    VPos::Bottom,
                    false,
                    &style::TEXT,
                )?;
                obstacles.push((cx, yb - 10.0));
            }
            let sd = s.sd[gi];
            if sd.is_finite() && sd > 0.0 {
                let cx = (px0 + px1) / 2.0;
                let (ya, yb) = (map.py(mean + sd), map.py(mean - sd));
                if let Some((a, c)) = draw::clip_segment((cx, ya), (cx, yb), &plot) {
                    draw::polyline(root, &[a, c], &ERRBAR_COLOR, style::ERRBAR_W)?;
                    draw::sample_polyline(&[a, c], 3.0, &mut obstacles);
                    let cap = ((px1 - px0) * 0.3).clamp(3.0, 8.0);
                    for end in [ya, yb] {
                        if end >= plot.y0 - 0.5 && end <= plot.y1 + 0.5 {
                            draw::polyline(
                                root,
                                &[(cx - cap, end), (cx + cap, end)],
                                &ERRBAR_COLOR,
                                style::ERRBAR_W,
                            )?;
                        }
                    }
                }
            }
        }
    }
    // Zero line when the range straddles 0.
    if map.y.lo < 0.0 && map.y.hi > 0.0 {
        let y0 = map.py(0.0);
        draw::polyline(root, &[(plot.x0, y0), (plot.x1, y0)], &style::AXIS, 1)?;
    }
    Ok(obstacles)
}

fn draw_group_labels(
    root: &Root,
    b: &GroupedBars,
    map: &PixMap,
    labels: &GroupLabels,
) -> DrawResult {
    let plot = map.plot;
    let top = plot.y1 + 10.0;
    let lh = style::line_height(style::TICK_PX);
    for (gi, name) in b.groups.iter().enumerate() {
        if let GroupLabels::Rotated(_, step) = labels {
            if gi % step != 0 {
                continue;
            }
        }
        let cx = map.px(gi as f64 + 0.5);
        draw::polyline(root, &[(cx, plot.y1), (cx, plot.y1 + 5.0)], &style::AXIS, 1)?;
        match labels {
            GroupLabels::Flat => draw::text(
                root,
                name,
                (cx, top),
                style::TICK_PX,
                HPos::Center,
                VPos::Top,
                false,
                &style::TEXT,
            )?,
            GroupLabels::Wrapped(lines) => {
                for (k, line) in lines[gi].iter().enumerate() {
                    draw::text(
                        root,
                        line,
                        (cx, top + k as f64 * lh),
                        style::TICK_PX,
                        HPos::Center,
                        VPos::Top,
                        false,
                        &style::TEXT,
                    )?;
                }
            }
            GroupLabels::Rotated(short, _) => draw::text(
                root,
                &short[gi],
                (cx, top - 4.0),
                style::TICK_PX,
                HPos::Right,
                VPos::Center,
                true,
                &style::TEXT,
            )?,
        }
    }
    Ok(())
}
