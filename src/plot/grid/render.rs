//! Layout and drawing of a matrix figure: cell size, label thinning, margins, the cells with
//! their annotations and block separators, axis titles, and the colour bar beside the cells.

use plotters::prelude::{IntoDrawingArea, SVGBackend};
use plotters::style::text_anchor::{HPos, VPos};

use super::colorbar::{color_bar, Scale};
use crate::plot::draw::{self, DrawResult, LegendEntry, PixRect, Root, Swatch};
use crate::plot::style;

/// Everything a matrix figure needs, in display order (row 0 at the top).
pub(super) struct GridFig<'a> {
    pub(super) title: &'a str,
    pub(super) x_label: &'a str,
    pub(super) y_label: &'a str,
    pub(super) color_label: &'a str,
    pub(super) col_labels: Vec<String>,
    pub(super) col_numeric: bool,
    pub(super) row_labels: Vec<String>,
    pub(super) row_numeric: bool,
    pub(super) values: Vec<Vec<f64>>,
    pub(super) diverging: bool,
    pub(super) row_breaks: Vec<usize>,
    pub(super) col_breaks: Vec<usize>,
    pub(super) annotate: bool,
    pub(super) threshold: Option<f64>,
    pub(super) missing_label: &'static str,
}

/// Largest plotting area of a matrix figure, px (cells shrink to fit).
const MAX_PLOT_W: f64 = 640.0;
const MAX_PLOT_H: f64 = 460.0;
/// Largest cell side, px.
const MAX_CELL: f64 = 80.0;
/// Below this cell side, cells stop being square and fill the area.
const MIN_SQUARE: f64 = 10.0;
const PAD: f64 = 14.0;
const CBAR_W: f64 = 18.0;
const CBAR_GAP: f64 = 24.0;
const CBAR_MIN_H: f64 = 150.0;
/// Rotated column labels longer than this are shortened.
const MAX_ROT_CHARS: usize = 32;

/// Show every `step`-th label; for index labels the step is a nice number (1, 2, 5, 10...).
fn label_step(cell: f64, need: f64, numeric: bool) -> usize {
    let k = (need / cell.max(1e-9)).ceil().max(1.0) as usize;
    if !numeric || k == 1 {
        return k;
    }
    let mut nice = 1usize;
    loop {
        for m in [1, 2, 5] {
            if m * nice >= k {
                return m * nice;
            }
        }
        nice *= 10;
    }
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    } else {
        s.to_string()
    }
}

pub(super) fn render(g: &GridFig) -> DrawResult<String> {
    let nrows = g.values.len();
    let ncols = g.values[0].len();
    let scale = Scale::new(&g.values, g.diverging);

    // Cell size.
    let (cw0, ch0) = (MAX_PLOT_W / ncols as f64, MAX_PLOT_H / nrows as f64);
    let side = cw0.min(ch0).min(MAX_CELL);
    let (cw, ch) = if side >= MIN_SQUARE {
        (side, side)
    } else {
        (cw0.min(MAX_CELL), ch0.min(MAX_CELL))
    };
    let (plot_w, plot_h) = (cw * ncols as f64, ch * nrows as f64);

    // Row labels (left).
    let tick_lh = style::line_height(style::TICK_PX);
    let row_step = label_step(
        ch,
        tick_lh * if g.row_numeric { 1.5 } else { 1.05 },
        g.row_numeric,
    );
    let row_w = g
        .row_labels
        .iter()
        .step_by(row_step)
        .map(|l| style::text_width(l, style::TICK_PX))
        .fold(0.0, f64::max);
    // Column labels (bottom): flat; else wrapped on two lines; else rotated if that shows
    // more of them.
    let flat_w = g
        .col_labels
        .iter()
        .map(|l| style::text_width(l, style::TICK_PX))
        .fold(0.0, f64::max);
    let flat_step = label_step(cw, flat_w + 8.0, g.col_numeric);
    let rot_step = label_step(cw, tick_lh * 1.05, g.col_numeric);
    let wrapped: Option<Vec<Vec<String>>> = if flat_step > 1 && !g.col_numeric {
        g.col_labels
            .iter()
            .map(|l| draw::wrap(l, style::TICK_PX, cw - 8.0, 2))
            .collect()
    } else {
        None
    };
    let rotated = wrapped.is_none() && !g.col_numeric && rot_step < flat_step;
    let col_step = if rotated || wrapped.is_some() {
        rot_step
    } else {
        flat_step
    };
    let col_lines: Vec<Vec<String>> = match &wrapped {
        Some(w) => w.clone(),
        None => g
            .col_labels
            .iter()
            .map(|l| {
                vec![if rotated {
                    shorten(l, MAX_ROT_CHARS)
                } else {
                    l.clone()
                }]
            })
            .collect(),
    };
    let col_h = if rotated {
        col_lines
            .iter()
            .step_by(col_step)
            .flatten()
            .map(|l| style::text_width(l, style::TICK_PX))
            .fold(0.0, f64::max)
    } else {
        tick_lh * col_lines.iter().map(Vec::len).max().unwrap_or(1) as f64
    };

    // Colour bar ticks and the small legend under it.
    let (cticks, cstep) = style::linear_ticks(scale.lo, scale.hi, 5);
    let clabels: Vec<String> = cticks.iter().map(|v| style::fmt_tick(*v, cstep)).collect();
    let clabel_w = clabels
        .iter()
        .map(|l| style::text_width(l, style::TICK_PX))
        .fold(0.0, f64::max);
    let mut legend: Vec<LegendEntry> = Vec::new();
    if g.values.iter().flatten().any(|v| v.is_nan()) {
        legend.push(LegendEntry {
            label: g.missing_label.to_string(),
            swatch: Swatch::Missing,
        });
    }
    let mask: Option<Vec<Vec<bool>>> = g.threshold.map(|t| {
        g.values
            .iter()
            .map(|row| row.iter().map(|v| v.is_finite() && *v > t).collect())
            .collect()
    });
    if let Some(t) = g.threshold {
        let name = if !g.color_label.is_empty() && g.color_label.chars().count() <= 24 {
            format!("{} > {}", g.color_label, style::fmt_compact(t))
        } else {
            format!("> {}", style::fmt_compact(t))
        };
        legend.push(LegendEntry {
            label: name,
            swatch: Swatch::Outline,
        });
    }
    let (leg_w, leg_h) = if legend.is_empty() {
        (0.0, 0.0)
    } else {
        draw::legend_size(&legend)
    };

    // Layout.
    let label_h = style::line_height(style::LABEL_PX);
    let title_h = if g.title.is_empty() {
        PAD + 6.0
    } else {
        12.0 + style::line_height(style::TITLE_PX) + 12.0
    };
    let y_title_w = if g.y_label.is_empty() {
        0.0
    } else {
        label_h + 8.0
    };
    let left = PAD + y_title_w + row_w + 10.0;
    let bottom = 10.0
        + col_h
        + if g.x_label.is_empty() {
            0.0
        } else {
            8.0 + label_h
        }
        + PAD;
    let cbar_block = CBAR_GAP
        + CBAR_W
        + 10.0
        + clabel_w
        + if g.color_label.is_empty() {
            0.0
        } else {
            10.0 + label_h
        };
    let right = cbar_block.max(CBAR_GAP + leg_w) + PAD;
    let cbar_h = if !legend.is_empty() && plot_h - leg_h - 16.0 >= CBAR_MIN_H {
        plot_h - leg_h - 16.0
    } else {
        plot_h.max(CBAR_MIN_H)
    };
    let content_w = left + plot_w + right;
    let title_w = style::text_width(g.title, style::TITLE_PX) + 2.0 * PAD;
    let shift = ((title_w - content_w) / 2.0).max(0.0);
    let width = (content_w + 2.0 * shift).ceil();
    let legend_bottom = if legend.is_empty() {
        cbar_h
    } else {
        cbar_h + 16.0 + leg_h
    };
    let height = (title_h + (plot_h + bottom).max(legend_bottom + PAD + 6.0)).ceil();

    let plot = PixRect::new(
        shift + left,
        title_h,
        shift + left + plot_w,
        title_h + plot_h,
    );
    let cell_x = |c: usize| (plot.x0 + c as f64 * cw).round();
    let cell_y = |r: usize| (plot.y0 + r as f64 * ch).round();

    let mut buf = String::new();
    {
        let root =
            SVGBackend::with_string(&mut buf, (width as u32, height as u32)).into_drawing_area();
        root.fill(&style::WHITE)?;
        if !g.title.is_empty() {
            draw::text(
                &root,
                g.title,
                (width / 2.0, 12.0),
                style::TITLE_PX,
                HPos::Center,
                VPos::Top,
                false,
                &style::TEXT,
            )?;
        }

        // Cells.
        for (r, row) in g.values.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let cell = PixRect::new(cell_x(c), cell_y(r), cell_x(c + 1), cell_y(r + 1));
                if v.is_finite() {
                    draw::fill_rect(&root, cell, &scale.color(*v))?;
                } else {
                    draw::hatched(&root, cell)?;
                }
            }
        }

        // Block separators: white halo with a dark core, visible on any colour.
        for &b in &g.row_breaks {
            let y = cell_y(b);
            let r = PixRect::new(plot.x0, y, plot.x1, y);
            separator(&root, r)?;
        }
        for &b in &g.col_breaks {
            let x = cell_x(b);
            let r = PixRect::new(x, plot.y0, x, plot.y1);
            separator(&root, r)?;
        }

        // Threshold outline.
        if let Some(mask) = &mask {
            let mut edges: Vec<PixRect> = Vec::new();
            for r in 0..nrows {
                for c in 0..ncols {
                    if !mask[r][c] {
                        continue;
                    }
                    let (x0, x1, y0, y1) = (cell_x(c), cell_x(c + 1), cell_y(r), cell_y(r + 1));
                    if r == 0 || !mask[r - 1][c] {
                        edges.push(PixRect::new(x0, y0, x1, y0));
                    }
                    if r + 1 == nrows || !mask[r + 1][c] {
                        edges.push(PixRect::new(x0, y1, x1, y1));
                    }
                    if c == 0 || !mask[r][c - 1] {
                        edges.push(PixRect::new(x0, y0, x0, y1));
                    }
                    if c + 1 == ncols || !mask[r][c + 1] {
                        edges.push(PixRect::new(x1, y0, x1, y1));
                    }
                }
            }
            for (t, color) in [(6.0, style::WHITE), (3.0, style::BLACK)] {
                for e in &edges {
                    let h = t / 2.0;
                    let thick = PixRect::new(e.x0 - h, e.y0 - h, e.x1 + h, e.y1 + h);
                    draw::fill_rect(&root, thick, &color)?;
                }
            }
        }

        // Cell annotations.
        if g.annotate {
            let dec = style::cell_decimals(g.values.iter().flatten().copied());
            let texts: Vec<Vec<String>> = g
                .values
                .iter()
                .map(|row| row.iter().map(|v| style::fmt_cell(*v, dec)).collect())
                .collect();
            let widest = texts
                .iter()
                .flatten()
                .map(|t| style::text_width(t, style::ANNOT_PX))
                .fold(0.0, f64::max);
            let px = style::ANNOT_PX
                .min(ch * 0.5)
                .min(style::ANNOT_PX * (cw - 6.0) / widest.max(1.0));
            if px >= 7.0 {
                for (r, row) in g.values.iter().enumerate() {
                    for (c, v) in row.iter().enumerate() {
                        if !v.is_finite() {
                            continue;
                        }
                        let at = (
                            (cell_x(c) + cell_x(c + 1)) / 2.0,
                            (cell_y(r) + cell_y(r + 1)) / 2.0,
                        );
                        let color = style::text_on(scale.color(*v));
                        draw::text(
                            &root,
                            &texts[r][c],
                            at,
                            px,
                            HPos::Center,
                            VPos::Center,
                            false,
                            &color,
                        )?;
                    }
                }
            }
        }

        draw::stroke_rect(&root, plot, &style::AXIS, 1.0)?;

        // Row labels and ticks.
        for (r, l) in g.row_labels.iter().enumerate().step_by(row_step) {
            let y = (cell_y(r) + cell_y(r + 1)) / 2.0;
            draw::polyline(&root, &[(plot.x0 - 5.0, y), (plot.x0, y)], &style::AXIS, 1)?;
            draw::text(
                &root,
                l,
                (plot.x0 - 9.0, y),
                style::TICK_PX,
                HPos::Right,
                VPos::Center,
                false,
                &style::TEXT,
            )?;
        }
        // Column labels and ticks.
        for (c, lines) in col_lines.iter().enumerate().step_by(col_step) {
            let x = (cell_x(c) + cell_x(c + 1)) / 2.0;
            draw::polyline(&root, &[(x, plot.y1), (x, plot.y1 + 5.0)], &style::AXIS, 1)?;
            for (k, l) in lines.iter().enumerate() {
                if rotated {
                    draw::text(
                        &root,
                        l,
                        (x, plot.y1 + 8.0),
                        style::TICK_PX,
                        HPos::Right,
                        VPos::Center,
                        true,
                        &style::TEXT,
                    )?;
                } else {
                    draw::text(
                        &root,
                        l,
                        (x, plot.y1 + 9.0 + k as f64 * tick_lh),
                        style::TICK_PX,
                        HPos::Center,
                        VPos::Top,
                        false,
                        &style::TEXT,
                    )?;
                }
            }
        }
        // Axis titles.
        draw::text(
            &root,
            g.x_label,
            ((plot.x0 + plot.x1) / 2.0, plot.y1 + 10.0 + col_h + 8.0),
            style::LABEL_PX,
            HPos::Center,
            VPos::Top,
            false,
            &style::TEXT,
        )?;
        draw::text(
            &root,
            g.y_label,
            (shift + PAD, (plot.y0 + plot.y1) / 2.0),
            style::LABEL_PX,
            HPos::Center,
            VPos::Top,
            true,
            &style::TEXT,
        )?;

        // Colour bar.
        let bar = PixRect::new(
            plot.x1 + CBAR_GAP,
            plot.y0,
            plot.x1 + CBAR_GAP + CBAR_W,
            plot.y0 + cbar_h,
        );
        color_bar(&root, &scale, bar, &cticks, &clabels, g.threshold)?;
        draw::text(
            &root,
            g.color_label,
            (bar.x1 + 10.0 + clabel_w + 10.0, (bar.y0 + bar.y1) / 2.0),
            style::LABEL_PX,
            HPos::Center,
            VPos::Top,
            true,
            &style::TEXT,
        )?;
        if !legend.is_empty() {
            draw::draw_legend(&root, &legend, (bar.x0, bar.y1 + 16.0))?;
        }
        root.present()?;
    }
    Ok(buf)
}

/// A separator line between blocks of rows/columns (`r` is degenerate: a horizontal or
/// vertical segment).
fn separator(root: &Root, r: PixRect) -> DrawResult {
    draw::fill_rect(
        root,
        PixRect::new(r.x0 - 1.5, r.y0 - 1.5, r.x1 + 1.5, r.y1 + 1.5),
        &style::WHITE,
    )?;
    draw::fill_rect(
        root,
        PixRect::new(r.x0 - 0.5, r.y0 - 0.5, r.x1 + 0.5, r.y1 + 0.5),
        &style::BLACK,
    )
}
