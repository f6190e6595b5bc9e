//! Tests of line charts: titles, axes and legend, linear and log axes, gaps at NaN, clipping
//! to a fixed range, and data errors.

use super::*;

#[test]
fn line_chart_has_title_axes_and_legend() {
    let c = sample_line_chart();
    let svg = line_chart(&c).unwrap();
    assert_well_formed(&svg);
    assert_contains_all(
        &svg,
        &[
            &c.title,
            &c.x_label,
            &c.y_label,
            "leaf labels",
            "coarse labels",
            "random labels",
            "from scratch",
        ],
    );
    assert!(svg.contains("font-family=\"sans-serif\""));
    // Series colours in the fixed order.
    assert!(svg.contains("#0072B2") && svg.contains("#D55E00") && svg.contains("#009E73"));
    // Deterministic output.
    assert_eq!(svg, line_chart(&c).unwrap());
}

#[test]
fn line_chart_linear_axes_and_fixed_range() {
    let mut c = sample_line_chart();
    c.log_x = false;
    c.y_range = Some((0.0, 1.0));
    c.error_bars = false;
    let svg = line_chart(&c).unwrap();
    assert_well_formed(&svg);
    // Tick labels of the fixed range.
    assert!(has_text(&svg, "0.2") && has_text(&svg, "1.0"));
}

#[test]
fn line_chart_log_axes() {
    let mut c = sample_line_chart();
    c.log_y = true;
    c.bands[0].mean = 0.4;
    let svg = line_chart(&c).unwrap();
    assert_well_formed(&svg);
    assert!(
        has_text(&svg, "10") && has_text(&svg, "100"),
        "decade labels on log x"
    );
}

#[test]
fn line_chart_nan_breaks_line() {
    let c = LineChart {
        title: "gap".into(),
        series: vec![Series {
            label: String::new(),
            x: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            mean: vec![1.0, 2.0, f64::NAN, 4.0, 5.0, 4.5],
            sd: None,
        }],
        ..Default::default()
    };
    let svg = line_chart(&c).unwrap();
    assert_well_formed(&svg);
    let pieces = svg
        .matches("<polyline fill=\"none\" opacity=\"1\" stroke=\"#0072B2\" stroke-width=\"2\"")
        .count();
    assert_eq!(pieces, 2, "a NaN point must split the line in two");
}

#[test]
fn line_chart_values_outside_fixed_range_are_clipped() {
    let c = LineChart {
        series: vec![Series {
            label: "s".into(),
            x: vec![0.0, 1.0, 2.0],
            mean: vec![0.5, 5.0, 0.5],
            sd: Some(vec![0.1, 0.1, 0.1]),
        }],
        y_range: Some((0.0, 1.0)),
        error_bars: true,
        ..Default::default()
    };
    let svg = line_chart(&c).unwrap();
    assert_well_formed(&svg);
    assert!(
        !svg.contains("points=\"-") && !svg.contains(",-"),
        "nothing drawn off-canvas"
    );
}

#[test]
fn line_chart_data_errors() {
    assert_data_err(line_chart(&LineChart::default()), "no series");
    let mut c = sample_line_chart();
    c.series[1].mean.pop();
    assert_data_err(line_chart(&c), "x has 8 values but mean has 7");
    let mut c = sample_line_chart();
    c.series[0].sd.as_mut().unwrap().push(0.1);
    assert_data_err(line_chart(&c), "sd has 9");
    let mut c = sample_line_chart();
    c.series[2].mean = vec![f64::NAN; 8];
    assert_data_err(line_chart(&c), "all NaN");
    let mut c = sample_line_chart();
    c.series[0].x.clear();
    c.series[0].mean.clear();
    c.series[0].sd = None;
    assert_data_err(line_chart(&c), "empty");
    let mut c = sample_line_chart();
    c.series[0].sd.as_mut().unwrap()[3] = -0.1;
    assert_data_err(line_chart(&c), "negative");
    let mut c = sample_line_chart();
    c.series[0].mean[0] = f64::INFINITY;
    assert_data_err(line_chart(&c), "infinite");
    let mut c = sample_line_chart();
    c.y_range = Some((1.0, 0.0));
    assert_data_err(line_chart(&c), "lo < hi");
}

#[test]
fn log_axis_with_zero_is_an_error() {
    let mut c = sample_line_chart();
    c.series[0].x[0] = 0.0;
    assert_data_err(line_chart(&c), "log x axis");
    let mut c = sample_line_chart();
    c.log_y = true;
    c.series[1].mean[2] = 0.0;
    assert_data_err(line_chart(&c), "log y axis");
    let mut c = sample_line_chart();
    c.log_y = true;
    c.bands[0].mean = -1.0;
    assert_data_err(line_chart(&c), "log y axis");
    let mut c = sample_line_chart();
    c.log_y = true;
    c.y_range = Some((0.0, 1.0));
    assert_data_err(line_chart(&c), "log y axis");
}
