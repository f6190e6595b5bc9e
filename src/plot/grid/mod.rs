//! Matrix figures: heatmaps and phase diagrams, drawn cell by cell in pixel space with a
//! labelled colour bar.
//!
//! The figure is laid out and drawn by `render` from the one `GridFig` both kinds share; the
//! colour scale and its bar live in `colorbar`. This file checks the data of each figure kind and
//! turns it into a `GridFig`.

use super::spec::{data_err, draw_err, figure_name, Heatmap, PhaseDiagram, PlotError};
use super::style;

mod colorbar;
mod render;

use render::{render, GridFig};

/// Check the matrix: non-empty, rectangular, some finite value, no infinities.
fn check_matrix(values: &[Vec<f64>], fig: &str) -> Result<(usize, usize), PlotError> {
    let nrows = values.len();
    if nrows == 0 || values[0].is_empty() {
        return Err(data_err(fig, "empty matrix (no rows or no columns)"));
    }
    let ncols = values[0].len();
    for (r, row) in values.iter().enumerate() {
        if row.len() != ncols {
            return Err(data_err(
                fig,
                format!(
                    "ragged matrix: row {r} has {} values, row 0 has {ncols}",
                    row.len()
                ),
            ));
        }
        if let Some(c) = row.iter().position(|v| v.is_infinite()) {
            return Err(data_err(
                fig,
                format!("value at row {r}, column {c} is infinite"),
            ));
        }
    }
    if !values.iter().flatten().any(|v| v.is_finite()) {
        return Err(data_err(fig, "no finite value (all NaN)"));
    }
    Ok((nrows, ncols))
}

/// Render a heatmap.
pub(crate) fn heatmap(h: &Heatmap) -> Result<String, PlotError> {
    let fig = figure_name(&h.title, "heatmap");
    let (nrows, ncols) = check_matrix(&h.values, &fig)?;
    if !h.col_labels.is_empty() && h.col_labels.len() != ncols {
        return Err(data_err(
            &fig,
            format!("{} column labels for {ncols} columns", h.col_labels.len()),
        ));
    }
    if !h.row_labels.is_empty() && h.row_labels.len() != nrows {
        return Err(data_err(
            &fig,
            format!("{} row labels for {nrows} rows", h.row_labels.len()),
        ));
    }
    if let Some(b) = h.row_breaks.iter().find(|b| **b > nrows) {
        return Err(data_err(&fig, format!("row break {b} beyond {nrows} rows")));
    }
    if let Some(b) = h.col_breaks.iter().find(|b| **b > ncols) {
        return Err(data_err(
            &fig,
            format!("column break {b} beyond {ncols} columns"),
        ));
    }
    let index = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
    let g = GridFig {
        title: &h.title,
        x_label: &h.x_label,
        y_label: &h.y_label,
        color_label: &h.color_label,
        col_numeric: h.col_labels.is_empty(),
        col_labels: if h.col_labels.is_empty() {
            index(ncols)
        } else {
            h.col_labels.clone()
        },
        row_numeric: h.row_labels.is_empty(),
        row_labels: if h.row_labels.is_empty() {
            index(nrows)
        } else {
            h.row_labels.clone()
        },
        values: h.values.clone(),
        diverging: h.diverging,
        row_breaks: h.row_breaks.clone(),
        col_breaks: h.col_breaks.clone(),
        annotate: h.annotate,
        threshold: None,
        missing_label: "no data",
    };
    render(&g).map_err(|e| draw_err(&fig, e))
}

/// Render a phase diagram (first y value at the bottom).
pub(crate) fn phase_diagram(p: &PhaseDiagram) -> Result<String, PlotError> {
    let fig = figure_name(&p.title, "phase diagram");
    if p.x_values.is_empty() || p.y_values.is_empty() {
        return Err(data_err(&fig, "no x values or no y values"));
    }
    if let Some(v) = p
        .x_values
        .iter()
        .chain(&p.y_values)
        .find(|v| !v.is_finite())
    {
        return Err(data_err(&fig, format!("axis value {v} is not finite")));
    }
    if p.values.len() != p.y_values.len() {
        return Err(data_err(
            &fig,
            format!(
                "{} rows of values for {} y values",
                p.values.len(),
                p.y_values.len()
            ),
        ));
    }
    if let Some((iy, row)) = p
        .values
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() != p.x_values.len())
    {
        return Err(data_err(
            &fig,
            format!(
                "row {iy} has {} values for {} x values",
                row.len(),
                p.x_values.len()
            ),
        ));
    }
    check_matrix(&p.values, &fig)?;
    if let Some(t) = p.threshold {
        if !t.is_finite() {
            return Err(data_err(&fig, format!("threshold {t} is not finite")));
        }
    }
    let g = GridFig {
        title: &p.title,
        x_label: &p.x_label,
        y_label: &p.y_label,
        color_label: &p.color_label,
        col_labels: p.x_values.iter().map(|v| style::fmt_compact(*v)).collect(),
        col_numeric: false,
        row_labels: p
            .y_values
            .iter()
            .rev()
            .map(|v| style::fmt_compact(*v))
            .collect(),
        row_numeric: false,
        values: p.values.iter().rev().cloned().collect(),
        diverging: p.diverging,
        row_breaks: Vec::new(),
        col_breaks: Vec::new(),
        annotate: p.annotate,
        threshold: p.threshold,
        missing_label: "not run",
    };
    render(&g).map_err(|e| draw_err(&fig, e))
}
