//! Hard and degenerate figures: they render as well-formed SVG (and, with
//! `$PLOT_EXAMPLES_DIR` set, are written there for looking at them).

use super::*;

/// Hard cases (many series, log-log, big and annotated heatmaps, long and rotated labels, a
/// legend that has to move) render as well-formed SVG with their titles; with
/// `$PLOT_EXAMPLES_DIR` set they are also written there for looking at them.
#[test]
fn write_examples() {
    let mut many = sample_line_chart();
    many.title = "Nine series, linear axes".into();
    many.log_x = false;
    many.error_bars = false;
    many.series = (0..9)
        .map(|i| curve(&format!("run {i}"), 0.2 + 0.1 * i as f64, i % 2 == 0))
        .collect();
    let mut logy = sample_line_chart();
    logy.title = "Log-log".into();
    logy.log_y = true;
    logy.y_label = "hard error (fraction)".into();
    for s in &mut logy.series {
        s.mean = s.x.iter().map(|x| 0.5 / x).collect();
        s.sd = Some(s.x.iter().map(|x| 0.2 / x).collect());
    }
    logy.series[1].mean[3] = f64::NAN;
    logy.bands[0].mean = 0.01;
    logy.bands[0].sd = 0.004;
    let big: Vec<Vec<f64>> = (0..64)
        .map(|r| {
            (0..40)
                .map(|c| ((r / 8) as f64 - (c / 5) as f64).abs() * 0.1 + (r as f64 * 0.3).sin())
                .collect()
        })
        .collect();
    let big = Heatmap {
        title: "Activations of 64 neurons on 40 fine classes".into(),
        x_label: "fine class".into(),
        y_label: "neuron".into(),
        values: big,
        color_label: "activation".into(),
        row_breaks: vec![8, 16, 24, 32, 40, 48, 56],
        col_breaks: vec![10, 20, 30],
        ..Default::default()
    };
    let mut long_bars = sample_bars();
    long_bars.groups = vec![
        "iNaturalist 2021 plants".into(),
        "Stanford Cars".into(),
        "FGVC Aircraft variants".into(),
        "DTD".into(),
    ];
    for b in &mut long_bars.bars {
        b.mean.push(60.0);
        b.sd.push(2.0);
    }
    let mut crowded = sample_line_chart();
    crowded.title = "Legend has to move".into();
    crowded.log_x = false;
    crowded.bands.clear();
    crowded.series = vec![Series {
        label: "rising".into(),
        x: (0..40).map(f64::from).collect(),
        mean: (0..40).map(|i| f64::from(i).powi(2)).collect(),
        sd: Some(vec![20.0; 40]),
    }];
    crowded.series.push(Series {
        label: "flat, with a gap".into(),
        x: (0..40).map(f64::from).collect(),
        mean: (0..40)
            .map(|i| {
                if (15..18).contains(&i) {
                    f64::NAN
                } else {
                    1400.0
                }
            })
            .collect(),
        sd: None,
    });
    crowded.y_label = "loss".into();
    let mut rot_bars = sample_bars();
    rot_bars.groups = (0..9).map(|i| format!("dataset_number_{i}")).collect();
    rot_bars.bars = (0..3)
        .map(|s| BarSeries {
            label: format!("method {s}"),
            mean: (0..9).map(|g| f64::from(g * 3 + s) - 8.0).collect(),
            sd: vec![1.5; 9],
        })
        .collect();
    let mut wrap_bars = sample_bars();
    wrap_bars.groups = vec![
        "iNaturalist 2021 plants and fungi".into(),
        "Stanford Cars".into(),
        "FGVC Aircraft variants".into(),
        "DTD".into(),
        "Oxford-IIIT Pets".into(),
    ];
    for b in &mut wrap_bars.bars {
        b.mean.extend([60.0, 75.0]);
        b.sd.extend([2.0, 1.0]);
    }
    let classes = [
        "tabby cat",
        "siamese cat",
        "persian cat",
        "beagle",
        "golden retriever",
        "pug",
        "sparrow",
        "hummingbird",
        "bald eagle",
        "goldfish",
        "great white shark",
        "tench",
    ];
    let conf = Heatmap {
        title: "Confusion of fine classes".into(),
        x_label: "predicted".into(),
        y_label: "true".into(),
        col_labels: classes.iter().map(|s| s.to_string()).collect(),
        row_labels: classes.iter().map(|s| s.to_string()).collect(),
        values: (0..12)
            .map(|r| {
                (0..12)
                    .map(|c| {
                        if r == c {
                            0.8
                        } else {
                            0.2 / (1.0 + (r as f64 - c as f64).abs())
                        }
                    })
                    .collect()
            })
            .collect(),
        color_label: "rate".into(),
        row_breaks: vec![3, 6, 9],
        col_breaks: vec![3, 6, 9],
        annotate: true,
        ..Default::default()
    };
    let mut seq_phase = sample_phase();
    seq_phase.diverging = false;
    seq_phase.annotate = false;
    seq_phase.title = String::new();
    let outputs = [
        ("line_log_x", line_chart(&sample_line_chart()).unwrap()),
        ("line_many", line_chart(&many).unwrap()),
        ("line_log_log", line_chart(&logy).unwrap()),
        ("heatmap_small", heatmap(&sample_heatmap()).unwrap()),
        ("heatmap_big", heatmap(&big).unwrap()),
        ("bars", grouped_bars(&sample_bars()).unwrap()),
        ("bars_long", grouped_bars(&long_bars).unwrap()),
        ("phase", phase_diagram(&sample_phase()).unwrap()),
        ("phase_seq", phase_diagram(&seq_phase).unwrap()),
        ("line_crowded", line_chart(&crowded).unwrap()),
        ("bars_rot", grouped_bars(&rot_bars).unwrap()),
        ("bars_wrap", grouped_bars(&wrap_bars).unwrap()),
        ("heatmap_conf", heatmap(&conf).unwrap()),
    ];
    let titles = [
        ("line_many", "Nine series, linear axes"),
        ("line_log_log", "Log-log"),
        (
            "heatmap_big",
            "Activations of 64 neurons on 40 fine classes",
        ),
        ("line_crowded", "Legend has to move"),
        ("heatmap_conf", "Confusion of fine classes"),
        ("bars_wrap", "Oxford-IIIT Pets"),
    ];
    for (name, svg) in &outputs {
        assert_well_formed(svg);
        if let Some((_, t)) = titles.iter().find(|(n, _)| n == name) {
            assert_contains_all(svg, &[t]);
        }
    }
    if let Some(dir) = std::env::var_os("PLOT_EXAMPLES_DIR") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, svg) in outputs {
            std::fs::write(dir.join(format!("{name}.svg")), svg).unwrap();
        }
    }
}

/// Degenerate but valid inputs render (no panic, well-formed SVG).
#[test]
fn edge_cases_render() {
    let single = LineChart {
        series: vec![Series {
            label: "one point".into(),
            x: vec![3.0],
            mean: vec![0.5],
            sd: Some(vec![0.1]),
        }],
        error_bars: true,
        ..Default::default()
    };
    let constant = LineChart {
        title: "constant".into(),
        series: vec![Series {
            label: "flat".into(),
            x: vec![1.0, 1.0, 1.0],
            mean: vec![0.0, 0.0, 0.0],
            sd: None,
        }],
        log_x: true,
        ..Default::default()
    };
    let mut wide_sd = sample_line_chart();
    wide_sd.title = "sd larger than the mean on log y".into();
    wide_sd.log_y = true;
    wide_sd.bands[0].sd = 0.9;
    for s in &mut wide_sd.series {
        s.sd = Some(vec![0.8; 8]);
    }
    let mut clipped = sample_line_chart();
    clipped.title = "fixed range clips".into();
    clipped.y_range = Some((0.45, 0.8));
    let one_cell = Heatmap {
        values: vec![vec![1.0]],
        ..Default::default()
    };
    let strip = Heatmap {
        title: "strip".into(),
        values: vec![(0..300).map(f64::from).collect()],
        col_breaks: vec![0, 300],
        annotate: true,
        ..Default::default()
    };
    let tall = Heatmap {
        values: (0..500).map(|r| vec![f64::from(r); 3]).collect(),
        diverging: true,
        ..Default::default()
    };
    let one_bar = GroupedBars {
        groups: vec!["only".into()],
        bars: vec![BarSeries {
            label: String::new(),
            mean: vec![-3.0],
            sd: vec![0.5],
        }],
        ..Default::default()
    };
    let many_groups = GroupedBars {
        title: "many groups".into(),
        groups: (0..60).map(|i| format!("g{i}")).collect(),
        bars: vec![BarSeries {
            label: "a".into(),
            mean: (0..60).map(f64::from).collect(),
            sd: vec![1.0; 60],
        }],
        y_range: Some((10.0, 40.0)),
        ..Default::default()
    };
    let one_phase = PhaseDiagram {
        x_values: vec![1.0],
        y_values: vec![2.0],
        values: vec![vec![0.3]],
        threshold: Some(0.0),
        annotate: true,
        ..Default::default()
    };
    let outputs = [
        ("edge_single", line_chart(&single).unwrap()),
        ("edge_constant", line_chart(&constant).unwrap()),
        ("edge_wide_sd", line_chart(&wide_sd).unwrap()),
        ("edge_clipped", line_chart(&clipped).unwrap()),
        ("edge_one_cell", heatmap(&one_cell).unwrap()),
        ("edge_strip", heatmap(&strip).unwrap()),
        ("edge_tall", heatmap(&tall).unwrap()),
        ("edge_one_bar", grouped_bars(&one_bar).unwrap()),
        ("edge_many_groups", grouped_bars(&many_groups).unwrap()),
        ("edge_one_phase", phase_diagram(&one_phase).unwrap()),
    ];
    let dir = std::env::var_os("PLOT_EXAMPLES_DIR").map(std::path::PathBuf::from);
    for (name, svg) in outputs {
        assert_well_formed(&svg);
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("{name}.svg")), svg).unwrap();
        }
    }
}
