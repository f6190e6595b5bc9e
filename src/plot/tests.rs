use super::*;

/// XML escaping as the SVG backend writes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Minimal XML well-formedness check: balanced tags, quoted attributes, valid entities.
fn assert_well_formed(svg: &str) {
    assert!(svg.starts_with("<svg"), "does not start with <svg");
    assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    let b = svg.as_bytes();
    let mut stack: Vec<&str> = Vec::new();
    let mut i = 0;
    let check_text = |t: &str| {
        for (k, _) in t.match_indices('&') {
            let rest = &t[k..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"]
                    .iter()
                    .any(|e| rest.starts_with(e)),
                "bad entity in {t:?}"
            );
        }
        assert!(!t.contains('>'), "stray '>' in text {t:?}");
    };
    while let Some(off) = svg[i..].find('<') {
        let start = i + off;
        check_text(&svg[i..start]);
        let mut j = start + 1;
        let mut quote: Option<u8> = None;
        loop {
            assert!(j < b.len(), "unterminated tag at {start}");
            let c = b[j];
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => assert!(c != b'<', "'<' inside attribute at {j}"),
                None if c == b'"' || c == b'\'' => quote = Some(c),
                None if c == b'>' => break,
                None => {}
            }
            j += 1;
        }
        let tag = &svg[start + 1..j];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.starts_with('?') && !tag.starts_with('!') {
            let name = tag.split_whitespace().next().unwrap_or("");
            assert!(!name.is_empty(), "empty tag name at {start}");
            // Every attribute is name="value".
            let attrs = tag[name.len()..].trim_end_matches('/');
            let mut in_q = false;
            let mut eq_count = 0;
            let mut q_count = 0;
            for c in attrs.chars() {
                if c == '"' {
                    in_q = !in_q;
                    q_count += 1;
                } else if c == '=' && !in_q {
                    eq_count += 1;
                }
            }
            assert_eq!(q_count, 2 * eq_count, "unquoted attribute in <{tag}>");
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        i = j + 1;
    }
    check_text(&svg[i..]);
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
}

/// The SVG has a `<text>` element whose content is exactly `t`.
fn has_text(svg: &str, t: &str) -> bool {
    svg.contains(&format!(">\n{}\n</text>", esc(t)))
}

fn assert_contains_all(svg: &str, texts: &[&str]) {
    for t in texts {
        assert!(svg.contains(&esc(t)), "SVG lacks text {t:?}");
    }
}

fn assert_data_err<T: std::fmt::Debug>(r: Result<T, PlotError>, needle: &str) {
    match r {
        Err(PlotError::Data { msg, .. }) => {
            assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}")
        }
        other => panic!("expected PlotError::Data containing {needle:?}, got {other:?}"),
    }
}

fn curve(label: &str, k: f64, with_sd: bool) -> Series {
    let x: Vec<f64> = (0..8).map(|i| 2f64.powi(i + 1)).collect();
    let mean: Vec<f64> = x.iter().map(|x| 0.9 - k / x.sqrt()).collect();
    let sd = with_sd.then(|| x.iter().map(|x| 0.02 + 0.05 / x).collect());
    Series {
        label: label.into(),
        x,
        mean,
        sd,
    }
}

fn sample_line_chart() -> LineChart {
    LineChart {
        title: "Fine-grained pretraining & transfer <ImageNet21k>".into(),
        x_label: "pretraining classes (count)".into(),
        y_label: "top-1 accuracy (fraction)".into(),
        series: vec![
            curve("leaf labels", 0.9, true),
            curve("coarse labels", 0.6, true),
            curve("random labels", 0.3, false),
        ],
        bands: vec![HBand {
            label: "from scratch".into(),
            mean: 0.5,
            sd: 0.03,
        }],
        log_x: true,
        log_y: false,
        y_range: None,
        error_bars: true,
    }
}

fn sample_heatmap() -> Heatmap {
    let values: Vec<Vec<f64>> = (0..6)
        .map(|r| {
            (0..5)
                .map(|c| {
                    if r == 2 && c == 3 {
                        f64::NAN
                    } else {
                        ((r * 5 + c) as f64 * 0.37).sin()
                    }
                })
                .collect()
        })
        .collect();
    Heatmap {
        title: "Neuron selectivity".into(),
        x_label: "fine class".into(),
        y_label: "neuron".into(),
        col_labels: vec![
            "tabby cat".into(),
            "siamese cat".into(),
            "beagle".into(),
            "golden retriever".into(),
            "pug".into(),
        ],
        row_labels: vec![],
        values,
        color_label: "mean activation (a.u.)".into(),
        diverging: true,
        row_breaks: vec![3],
        col_breaks: vec![2],
        annotate: true,
    }
}

fn sample_bars() -> GroupedBars {
    GroupedBars {
        title: "Transfer accuracy by granularity".into(),
        x_label: "target dataset".into(),
        y_label: "accuracy (%)".into(),
        groups: vec!["CIFAR-10".into(), "CIFAR-100".into(), "Flowers".into()],
        bars: vec![
            BarSeries {
                label: "coarse".into(),
                mean: vec![91.0, 70.5, 88.0],
                sd: vec![0.4, 0.8, 1.1],
            },
            BarSeries {
                label: "fine".into(),
                mean: vec![94.2, f64::NAN, 92.3],
                sd: vec![0.3, f64::NAN, 0.9],
            },
        ],
        y_range: None,
    }
}

fn sample_phase() -> PhaseDiagram {
    let xs: Vec<f64> = vec![0.01, 0.03, 0.1, 0.3, 1.0];
    let ys: Vec<f64> = vec![2.0, 4.0, 8.0, 16.0];
    let values = ys
        .iter()
        .map(|y| {
            xs.iter()
                .map(|x| {
                    if *y == 16.0 && *x == 1.0 {
                        f64::NAN
                    } else {
                        (y.ln() - 1.0) * 0.1 - x * 0.2
                    }
                })
                .collect()
        })
        .collect();
    PhaseDiagram {
        title: "Coarse minus fine hard error".into(),
        x_label: "noise level σ".into(),
        y_label: "subclasses per class".into(),
        color_label: "gap (pp)".into(),
        x_values: xs,
        y_values: ys,
        values,
        diverging: true,
        threshold: Some(0.05),
        annotate: true,
    }
}

// --- line chart ------------------------------------------------------------------------------

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

// --- heatmap -----------------------------------------------------------------------------------

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

// --- grouped bars ------------------------------------------------------------------------------

#[test]
fn grouped_bars_has_title_axes_groups_and_legend() {
    let b = sample_bars();
    let svg = grouped_bars(&b).unwrap();
    assert_well_formed(&svg);
    assert_contains_all(
        &svg,
        &[
            &b.title, &b.x_label, &b.y_label, "coarse", "fine", "CIFAR-10", "Flowers",
        ],
    );
}

#[test]
fn grouped_bars_long_names_and_negative_values() {
    let mut b = sample_bars();
    b.groups = vec![
        "a rather long dataset name".into(),
        "another very long dataset name here".into(),
        "x".into(),
    ];
    b.bars[0].mean[1] = -12.0;
    let svg = grouped_bars(&b).unwrap();
    assert_well_formed(&svg);
    assert!(svg.contains("dataset"));
}

#[test]
fn grouped_bars_data_errors() {
    assert_data_err(grouped_bars(&GroupedBars::default()), "no groups");
    let mut b = sample_bars();
    b.bars.clear();
    assert_data_err(grouped_bars(&b), "no bar series");
    let mut b = sample_bars();
    b.bars[1].mean.pop();
    assert_data_err(grouped_bars(&b), "2 means for 3 groups");
    let mut b = sample_bars();
    b.bars[0].sd.push(1.0);
    assert_data_err(grouped_bars(&b), "4 sds for 3 groups");
    let mut b = sample_bars();
    b.bars[0].mean = vec![f64::NAN; 3];
    assert_data_err(grouped_bars(&b), "all NaN");
}

// --- phase diagram -----------------------------------------------------------------------------

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

// --- misc --------------------------------------------------------------------------------------

#[test]
fn figures_round_trip_through_json() {
    let c = sample_line_chart();
    let back: LineChart = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(line_chart(&back).unwrap(), line_chart(&c).unwrap());
    // (serde_json writes NaN as null and cannot read it back: NaN-free data here.)
    let mut p = sample_bars();
    p.bars[1].mean[1] = 80.0;
    p.bars[1].sd[1] = 1.0;
    let back: GroupedBars = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(grouped_bars(&back).unwrap(), grouped_bars(&p).unwrap());
}

#[test]
fn error_messages_name_the_figure() {
    let e = line_chart(&LineChart {
        title: "Fig 3".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "figure 'Fig 3': no series to plot");
    let e = heatmap(&Heatmap::default()).unwrap_err();
    assert!(e.to_string().starts_with("figure 'heatmap':"));
}

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

/// A bar of height zero is drawn as a mark on the axis with its value, so it does not look
/// missing.
#[test]
fn zero_bars_show_their_value() {
    let zero_texts = |b: &GroupedBars| {
        let svg = grouped_bars(b).unwrap();
        assert_well_formed(&svg);
        svg.matches(">\n0\n</text>").count()
    };
    let mut b = sample_bars();
    b.bars[0].mean = vec![0.5, 0.01, 0.3];
    b.bars[1].mean = vec![0.2, 0.4, 0.02];
    b.bars[1].sd = vec![0.0; 3];
    let base = zero_texts(&b);
    b.bars[0].mean[1] = 0.0;
    b.bars[1].mean[2] = 0.0;
    assert_eq!(zero_texts(&b), base + 2);
}

/// A title wider than the figure is wrapped onto more lines instead of running off the page.
#[test]
fn long_titles_wrap() {
    let mut c = sample_line_chart();
    c.title = "balanced design (every leaf keeps all its training images): full fine-tuning, hard test images".into();
    let svg = line_chart(&c).unwrap();
    assert_well_formed(&svg);
    assert!(!svg.contains(&esc(&c.title)), "not wrapped");
    assert!(svg.contains("balanced design"), "first line missing");
    assert!(svg.contains("hard test images"), "last line missing");
}
