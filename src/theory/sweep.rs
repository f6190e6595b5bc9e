//! Sweeps: any config parameter (or the pretraining labels) swept over a grid of values, for a
//! set of conditions, at many seeds (the runs themselves are [`crate::theory::run`]'s). Built-in
//! sweeps are TOML files in `experiments/theory/studies/`; `theory-sim sweep --param
//! key=v1,v2,...` builds one on the fly. A sweep's folder keeps its definition in `study.toml`
//! (the file name of the results already written).

use crate::hierarchy::Relabeling;
use crate::theory::readout::Readout;
use crate::theory::run::{Condition, RunResult};
use crate::theory::TheoryError;
use serde::{Deserialize, Serialize};

/// One axis of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    /// Dotted config key (e.g. `data.hard_noise`), or `labels` to vary the pretraining labels.
    pub key: String,
    /// Axis title for figures, with units.
    pub label: String,
    /// Values (TOML values: numbers, arrays, or relabelings for `labels`).
    pub values: Vec<toml::Value>,
    /// Numeric position of each value on the figure axis (default: the value itself, or the
    /// first element of an array; for `labels`, the number of pretraining classes).
    #[serde(default)]
    pub x: Vec<f64>,
    /// Log-scale axis in figures.
    #[serde(default)]
    pub log: bool,
}

/// A coarse and a fine condition whose hard-error gap a one-axis sweep draws along its axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    /// Legend label.
    pub label: String,
    /// The coarse condition.
    pub coarse: String,
    /// The fine condition.
    pub fine: String,
}

/// A sweep: conditions run at every point of a grid of one or two axes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// Name (also the results sub-folder).
    pub name: String,
    /// What the sweep asks.
    pub description: String,
    /// Config overrides for the whole sweep.
    #[serde(default)]
    pub set: Vec<String>,
    /// Readouts to compute.
    #[serde(default = "all_readouts")]
    pub readouts: Vec<Readout>,
    /// Conditions run at every grid point (a `labels` axis replaces their labels).
    pub condition: Vec<Condition>,
    /// One or two axes.
    pub axis: Vec<Axis>,
    /// Coarse-fine pairs whose gap is drawn against the axis (one-axis sweeps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pair: Vec<Pair>,
}

fn all_readouts() -> Vec<Readout> {
    Readout::PRETRAINED.to_vec()
}

/// The built-in studies, embedded from `experiments/theory/studies/`.
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "subclasses",
        include_str!("../../experiments/theory/studies/subclasses.toml"),
    ),
    (
        "hardness",
        include_str!("../../experiments/theory/studies/hardness.toml"),
    ),
    (
        "hard_fraction",
        include_str!("../../experiments/theory/studies/hard_fraction.toml"),
    ),
    (
        "train_size",
        include_str!("../../experiments/theory/studies/train_size.toml"),
    ),
    (
        "granularity",
        include_str!("../../experiments/theory/studies/granularity.toml"),
    ),
    (
        "phase_relu",
        include_str!("../../experiments/theory/studies/phase_relu.toml"),
    ),
    (
        "phase_smoothed",
        include_str!("../../experiments/theory/studies/phase_smoothed.toml"),
    ),
    (
        "dim",
        include_str!("../../experiments/theory/studies/dim.toml"),
    ),
];

/// A grid point: the value index along each axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Index of the value along each axis.
    pub at: Vec<usize>,
    /// `key=value` for each axis.
    pub assignment: Vec<String>,
}

/// One row of a sweep's results: one run (cell, condition, seed) and one readout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    /// Base condition name.
    pub condition: String,
    /// `key=value;key=value` of the cell.
    pub cell: String,
    /// Position on the first axis.
    pub x: f64,
    /// Position on the second axis (NaN for a 1-D sweep).
    pub y: f64,
    /// Seed.
    pub seed: u64,
    /// Pretraining classes.
    pub classes: usize,
    /// Neurons.
    pub neurons: usize,
    /// Readout name.
    pub readout: String,
    /// Easy-sample coarse error.
    pub easy: f64,
    /// Hard-sample coarse error.
    pub hard: f64,
    /// Final common_max.
    pub common_max: f64,
    /// Final fine_max.
    pub fine_max: f64,
    /// Init level.
    pub init_level: f64,
    /// Common-feature contrast between the superclass's neurons and the others.
    pub common_contrast: f64,
    /// Fine-feature contrast between the superclass's neurons and the others.
    pub fine_contrast: f64,
    /// Mean squared norm of the neurons' feature parts.
    pub feature_sq: f64,
    /// Hard-sample error of the summed head predicted from the weights (NaN where
    /// [`crate::theory::margin`] does not apply).
    pub predicted_hard: f64,
    /// SGD steps taken.
    pub steps: usize,
    /// Whether training converged.
    pub converged: bool,
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Default numeric axis position of a value.
fn value_x(v: &toml::Value) -> f64 {
    match v {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        toml::Value::Array(a) => a.first().map(value_x).unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

impl Sweep {
    /// Parse a sweep TOML (origin names the file for errors) and check it.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, TheoryError> {
        let doc: toml::Value = text
            .parse::<toml::Table>()
            .map(toml::Value::Table)
            .map_err(|e| TheoryError::Invalid(format!("{origin}: not valid TOML: {e}")))?;
        let s: Sweep = serde_path_to_error::deserialize(doc).map_err(|e| {
            TheoryError::Invalid(format!("{origin}: field '{}': {}", e.path(), e.inner()))
        })?;
        if s.axis.is_empty() || s.axis.len() > 2 {
            return Err(TheoryError::Invalid(format!(
                "{origin}: field 'axis': a sweep has one or two axes, found {}",
                s.axis.len()
            )));
        }
        for (i, a) in s.axis.iter().enumerate() {
            if a.values.is_empty() {
                return Err(TheoryError::Invalid(format!(
                    "{origin}: field 'axis[{i}].values': no values"
                )));
            }
            if !a.x.is_empty() && a.x.len() != a.values.len() {
                return Err(TheoryError::Invalid(format!(
                    "{origin}: field 'axis[{i}].x': {} positions for {} values",
                    a.x.len(),
                    a.values.len()
                )));
            }
            if a.key == "labels" {
                for v in &a.values {
                    Relabeling::deserialize(v.clone()).map_err(|e| {
                        TheoryError::Invalid(format!(
                            "{origin}: field 'axis[{i}].values': {} is not a relabeling: {e}",
                            value_text(v)
                        ))
                    })?;
                }
            }
        }
        if s.condition.is_empty() {
            return Err(TheoryError::Invalid(format!(
                "{origin}: field 'condition': no conditions"
            )));
        }
        for (i, p) in s.pair.iter().enumerate() {
            for c in [&p.coarse, &p.fine] {
                if !s.condition.iter().any(|x| &x.name == c) {
                    return Err(TheoryError::Invalid(format!(
                        "{origin}: field 'pair[{i}]': no condition named '{c}'"
                    )));
                }
            }
        }
        Ok(s)
    }

    /// A built-in sweep by name.
    pub fn built_in(name: &str) -> Result<Self, TheoryError> {
        let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            TheoryError::Invalid(format!(
                "no built-in sweep '{name}'; known: {}",
                BUILT_IN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        Sweep::from_toml(text, &format!("experiments/theory/studies/{name}.toml"))
    }

    /// All grid points, first axis fastest.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = vec![Cell {
            at: vec![],
            assignment: vec![],
        }];
        for a in &self.axis {
            let mut next = Vec::new();
            for i in 0..a.values.len() {
                for c in &cells {
                    let mut at = c.at.clone();
                    at.push(i);
                    let mut assignment = c.assignment.clone();
                    assignment.push(format!("{}={}", a.key, value_text(&a.values[i])));
                    next.push(Cell { at, assignment });
                }
            }
            cells = next;
        }
        // order: first axis fastest
        cells.sort_by(|a, b| a.at.iter().rev().cmp(b.at.iter().rev()));
        cells
    }

    /// The condition run for `cond` at `cell`: the condition's overrides, then the cell's
    /// values. (The sweep's own `set` applies to the base config, see [`Sweep::set`].)
    pub fn cell_condition(&self, cond: &Condition, cell: &Cell) -> Result<Condition, TheoryError> {
        let mut c = cond.clone();
        c.name = format!("{}@{}", cond.name, cell.assignment.join(";"));
        let mut set: Vec<String> = cond.set.clone();
        for (ax, &i) in self.axis.iter().zip(&cell.at) {
            if ax.key == "labels" {
                c.labels = Relabeling::deserialize(ax.values[i].clone())
                    .map_err(|e| TheoryError::Invalid(format!("labels axis value: {e}")))?;
            } else {
                set.push(format!("{}={}", ax.key, value_text(&ax.values[i])));
            }
        }
        c.set = set;
        Ok(c)
    }

    /// Every (cell, base condition, cell condition).
    pub fn jobs(&self) -> Result<Vec<(Cell, String, Condition)>, TheoryError> {
        let mut out = Vec::new();
        for cell in self.cells() {
            for cond in &self.condition {
                out.push((
                    cell.clone(),
                    cond.name.clone(),
                    self.cell_condition(cond, &cell)?,
                ));
            }
        }
        Ok(out)
    }

    /// Rows of the results file from finished runs (`runs[i]` belongs to `jobs[i / seeds]`).
    pub fn rows(&self, jobs: &[(Cell, String, Condition)], runs: &[RunResult]) -> Vec<SweepRow> {
        let mut rows = Vec::new();
        for r in runs {
            let Some((cell, base, _)) = jobs.iter().find(|(_, _, c)| c.name == r.condition) else {
                continue;
            };
            let pos = |k: usize| -> f64 {
                let Some(a) = self.axis.get(k) else {
                    return f64::NAN;
                };
                let i = cell.at[k];
                if !a.x.is_empty() {
                    a.x[i]
                } else if a.key == "labels" {
                    r.classes as f64
                } else {
                    value_x(&a.values[i])
                }
            };
            for (readout, e) in &r.errors {
                rows.push(SweepRow {
                    condition: base.clone(),
                    cell: cell.assignment.join(";"),
                    x: pos(0),
                    y: pos(1),
                    seed: r.seed,
                    classes: r.classes,
                    neurons: r.neurons,
                    readout: readout.name().into(),
                    easy: e.easy,
                    hard: e.hard,
                    common_max: r.responses.common_max,
                    fine_max: r.responses.fine_max,
                    init_level: r.init_level,
                    common_contrast: r.contrasts.common,
                    fine_contrast: r.contrasts.fine,
                    feature_sq: r.contrasts.feature_sq,
                    predicted_hard: r.hard_margin.map(|m| m.error).unwrap_or(f64::NAN),
                    steps: r.steps,
                    converged: r.converged,
                });
            }
        }
        rows
    }
}

/// Split `v1,v2,...` at top-level commas (not inside brackets, braces or quotes).
pub fn split_values(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quote = false;
    let mut cur = String::new();
    for ch in list.chars() {
        match ch {
            '"' => quote = !quote,
            '[' | '{' if !quote => depth += 1,
            ']' | '}' if !quote => depth -= 1,
            ',' if depth == 0 && !quote => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// An axis from a `key=v1,v2,...` command-line argument.
pub fn axis_from_arg(arg: &str) -> Result<Axis, TheoryError> {
    let (key, list) = arg
        .split_once('=')
        .ok_or_else(|| TheoryError::Invalid(format!("--param '{arg}': expected key=v1,v2,...")))?;
    let mut values = Vec::new();
    for raw in split_values(list) {
        let v = match format!("v = {raw}").parse::<toml::Table>() {
            Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.clone())),
            Err(_) => toml::Value::String(raw.clone()),
        };
        values.push(v);
    }
    if values.is_empty() {
        return Err(TheoryError::Invalid(format!("--param '{arg}': no values")));
    }
    Ok(Axis {
        key: key.trim().to_string(),
        label: key.trim().to_string(),
        values,
        x: vec![],
        log: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_sweeps_parse() {
        for (name, _) in BUILT_IN {
            let s = Sweep::built_in(name).unwrap();
            assert_eq!(&s.name, name);
            assert!(!s.jobs().unwrap().is_empty());
        }
    }

    #[test]
    fn values_split_at_top_level_commas() {
        assert_eq!(split_values("1, 2,3"), vec!["1", "2", "3"]);
        assert_eq!(split_values("[1, 1],[2,2]"), vec!["[1, 1]", "[2,2]"]);
        assert_eq!(
            split_values("{ kind = \"level\", level = 0 },{ kind = \"per_sample\" }").len(),
            2
        );
        let a = axis_from_arg("data.hard_noise=0.5,1,2").unwrap();
        assert_eq!(a.values.len(), 3);
        assert!(axis_from_arg("nokey").is_err());
    }

    #[test]
    fn grid_cells_cover_the_product() {
        let text = r#"
name = "t"
description = "d"
[[condition]]
name = "coarse"
labels = { kind = "level", level = 0 }
[[axis]]
key = "data.hard_noise"
label = "h"
values = [0.5, 1.0, 2.0]
[[axis]]
key = "labels"
label = "l"
values = [{ kind = "level", level = 1 }, { kind = "split_finer", splits = 2 }]
"#;
        let s = Sweep::from_toml(text, "t.toml").unwrap();
        let jobs = s.jobs().unwrap();
        assert_eq!(jobs.len(), 6);
        assert!(jobs[0].2.set.contains(&"data.hard_noise=0.5".to_string()));
        assert_eq!(jobs[4].2.labels, Relabeling::SplitFiner { splits: 2 });
        let bad = text.replace("splits = 2", "splits = \"x\"");
        assert!(Sweep::from_toml(&bad, "t.toml").is_err());
    }
}
