//! Tests of the matrix figures: heatmaps (colour bar, missing cells, thinned labels) and phase
//! diagrams (outline, missing runs), and their data errors.

use super::*;

#[test]
fn heatmap_has_title_axes_colorbar_and_nan_cell() {
    let h = sample_heatmap();
    let svg = heatmap(&h).unwrap();
    assert_well_formed(&svg);
    assert_contains_all(
        &svg,
        &[
            &h.title,
            &h.x_label,
            &h.y_label,
            &h.color_label,
            "beagle",
            "no data",
        ],
    );
    // The NaN cell is drawn in the missing-value grey.
    assert!(svg.contains("fill=\"#D9D9D9\""));
    // Row indices stand in for empty row labels.
    assert!(has_text(&svg, "5"));
}

#[test]
fn heatmap_large_matrix_thins_labels() {
    let values: Vec<Vec<f64>> = (0..200)
        .map(|r| {
            (0..120)
                .map(|c| (r as f64 * 0.1).cos() * c as f64)
                .collect()
        })
        .collect();
    let h = Heatmap {
        title: "big".into(),
        values,
        color_label: "w".into(),
        ..Default::default()
    };
    let svg = heatmap(&h).unwrap();
    assert_well_formed(&svg);
    assert!(has_text(&svg, "100") && !has_text(&svg, "101"));
}

#[test]
fn heatmap_data_errors() {
    assert_data_err(heatmap(&Heatmap::default()), "empty");
    let mut h = sample_heatmap();
    h.values[4].pop();
    assert_data_err(heatmap(&h), "ragged");
    let mut h = sample_heatmap();
    h.col_labels.pop();
    assert_data_err(heatmap(&h), "column labels");
    let mut h = sample_heatmap();
    h.row_labels = vec!["a".into()];
    assert_data_err(heatmap(&h), "row labels");
    let mut h = sample_heatmap();
    h.values = vec![vec![f64::NAN; 3]; 2];
    h.col_labels.clear();
    assert_data_err(heatmap(&h), "all NaN");
    let mut h = sample_heatmap();
    h.row_breaks = vec![7];
    assert_data_err(heatmap(&h), "row break");
}

#[test]
fn phase_diagram_has_title_axes_outline_and_missing() {
    let p = sample_phase();
    let svg = phase_diagram(&p).unwrap();
    assert_well_formed(&svg);
    assert_contains_all(
        &svg,
        &[
            &p.title,
            &p.x_label,
            &p.y_label,
            &p.color_label,
            "not run",
            "gap (pp) > 0.05",
            "0.03",
            "16",
        ],
    );
    // Thick outline pieces are black filled rectangles.
    assert!(svg.contains("fill=\"#000000\""));
}

#[test]
fn phase_diagram_data_errors() {
    assert_data_err(phase_diagram(&PhaseDiagram::default()), "no x values");
    let mut p = sample_phase();
    p.values.pop();
    assert_data_err(phase_diagram(&p), "3 rows of values for 4 y values");
    let mut p = sample_phase();
    p.values[1].push(0.0);
    assert_data_err(phase_diagram(&p), "row 1 has 6 values for 5 x values");
    let mut p = sample_phase();
    p.values = vec![vec![f64::NAN; 5]; 4];
    assert_data_err(phase_diagram(&p), "all NaN");
    let mut p = sample_phase();
    p.x_values[0] = f64::NAN;
    assert_data_err(phase_diagram(&p), "not finite");
}
