//! The paper's claims as executable checks. `theory/CLAIMS.md` states each claim in words and,
//! in its one fenced `toml` block, as data: the conditions to run and, per claim, a quantity
//! computed per seed, a comparison and a threshold fixed before any run. [`evaluate`] turns a
//! set of run results into verdicts with mean +- sd over seeds: PASS, FAIL, or NOT CONVERGED
//! when a run the claim reads stopped at its step cap before converging (a claim about what
//! training learns is judged at the end of training, not at a step budget).

use crate::report::{MarkdownTable, MeanSd};
use crate::theory::readout::Readout;
use crate::theory::run::{Condition, RunResult};
use crate::theory::TheoryError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The claims file shipped with the toolkit.
pub const CLAIMS_MD: &str = include_str!("../../theory/CLAIMS.md");

/// Which test subset an error is measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subset {
    /// Easy test samples.
    Easy,
    /// Hard test samples.
    Hard,
}

/// A feature-response summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseField {
    /// Max over neurons of the common-feature correlation.
    CommonMax,
    /// Max over neurons of the fine-feature correlation.
    FineMax,
    /// Mean over neurons (positive part) of the common-feature correlation.
    CommonMean,
    /// Mean over neurons (positive part) of the fine-feature correlation.
    FineMean,
}

/// What a response is divided by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelativeTo {
    /// Nothing: the raw correlation.
    None,
    /// The init level sigma_0 sqrt(2 ln N).
    Init,
    /// The same net's common_max.
    CommonMax,
}

/// A quantity computed for each seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Quantity {
    /// A feature response of one condition.
    Response {
        /// Condition name.
        condition: String,
        /// Which summary.
        field: ResponseField,
        /// Divided by what.
        relative_to: RelativeTo,
    },
    /// A coarse test error of one condition.
    Error {
        /// Condition name.
        condition: String,
        /// Readout.
        readout: Readout,
        /// Subset.
        subset: Subset,
    },
    /// error(a) - error(b).
    ErrorGap {
        /// First condition.
        a: String,
        /// Second condition.
        b: String,
        /// Readout.
        readout: Readout,
        /// Subset.
        subset: Subset,
    },
    /// Gaps error(a_i) - error(b_i) along a list of pairs: `last_minus_first` is
    /// gap(last) - gap(first); `min_step` is the smallest gap(i+1) - gap(i).
    GapTrend {
        /// Pairs (a, b), in order of the varied parameter.
        pairs: Vec<[String; 2]>,
        /// Readout.
        readout: Readout,
        /// Subset.
        subset: Subset,
        /// Which summary of the gaps.
        summary: TrendSummary,
    },
}

/// Summary of a sequence of gaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrendSummary {
    /// gap(last) - gap(first).
    LastMinusFirst,
    /// min over i of gap(i+1) - gap(i).
    MinStep,
}

/// Comparison of the mean with the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// mean >= threshold.
    #[serde(rename = ">=")]
    Ge,
    /// mean <= threshold.
    #[serde(rename = "<=")]
    Le,
}

impl Op {
    fn symbol(&self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Le => "<=",
        }
    }
}

/// One claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// Short id.
    pub id: String,
    /// The claim in words.
    pub statement: String,
    /// What is measured per seed.
    pub quantity: Quantity,
    /// How the mean over seeds is compared.
    pub op: Op,
    /// The threshold, fixed before running.
    pub threshold: f64,
}

/// The machine-readable part of the claims file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsFile {
    /// Minimum number of seeds `verify` accepts.
    pub min_seeds: usize,
    /// Conditions to run.
    pub condition: Vec<Condition>,
    /// Claims to check.
    pub claim: Vec<Claim>,
}

impl ClaimsFile {
    /// Parse the first fenced ```toml block of a Markdown claims file and check that every
    /// claim refers to a defined condition.
    pub fn from_markdown(md: &str, origin: &str) -> Result<Self, TheoryError> {
        let start = md.find("```toml").ok_or_else(|| {
            TheoryError::Invalid(format!("{origin}: no ```toml block with the claims"))
        })?;
        let body = &md[start + "```toml".len()..];
        let end = body
            .find("```")
            .ok_or_else(|| TheoryError::Invalid(format!("{origin}: unterminated ```toml block")))?;
        let text = &body[..end];
        let doc: toml::Value = text
            .parse::<toml::Table>()
            .map(toml::Value::Table)
            .map_err(|e| {
                TheoryError::Invalid(format!("{origin}: claims block is not valid TOML: {e}"))
            })?;
        let file: ClaimsFile = serde_path_to_error::deserialize(doc).map_err(|e| {
            TheoryError::Invalid(format!(
                "{origin}: claims block, field '{}': {}",
                e.path(),
                e.inner()
            ))
        })?;
        let names: Vec<&str> = file.condition.iter().map(|c| c.name.as_str()).collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(TheoryError::Invalid(format!(
                    "{origin}: condition '{n}' is defined twice"
                )));
            }
        }
        for c in &file.claim {
            for used in c.quantity.conditions() {
                if !names.contains(&used) {
                    return Err(TheoryError::Invalid(format!(
                        "{origin}: claim '{}' uses condition '{used}', which is not defined",
                        c.id
                    )));
                }
            }
        }
        Ok(file)
    }
}

impl Quantity {
    /// Conditions the quantity reads.
    pub fn conditions(&self) -> Vec<&str> {
        match self {
            Quantity::Response { condition, .. } | Quantity::Error { condition, .. } => {
                vec![condition.as_str()]
            }
            Quantity::ErrorGap { a, b, .. } => vec![a.as_str(), b.as_str()],
            Quantity::GapTrend { pairs, .. } => pairs
                .iter()
                .flat_map(|p| [p[0].as_str(), p[1].as_str()])
                .collect(),
        }
    }

    /// A one-line description for tables.
    pub fn describe(&self) -> String {
        match self {
            Quantity::Response {
                condition,
                field,
                relative_to,
            } => {
                let f = serde_plain(field);
                match relative_to {
                    RelativeTo::None => format!("{f}({condition})"),
                    RelativeTo::Init => format!("{f}({condition}) / init level"),
                    RelativeTo::CommonMax => format!("{f}({condition}) / common_max({condition})"),
                }
            }
            Quantity::Error {
                condition,
                readout,
                subset,
            } => format!(
                "{} error({condition}, {})",
                serde_plain(subset),
                readout.name()
            ),
            Quantity::ErrorGap {
                a,
                b,
                readout,
                subset,
            } => format!(
                "{} error({a}) - ({b}), {}",
                serde_plain(subset),
                readout.name()
            ),
            Quantity::GapTrend {
                pairs,
                readout,
                subset,
                summary,
            } => {
                let list: Vec<String> =
                    pairs.iter().map(|p| format!("{}-{}", p[0], p[1])).collect();
                format!(
                    "{} of {} error gaps [{}], {}",
                    serde_plain(summary),
                    serde_plain(subset),
                    list.join(", "),
                    readout.name()
                )
            }
        }
    }
}

fn serde_plain<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// What a claim's check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every run converged and the mean satisfies the comparison.
    Pass,
    /// Every run converged and the mean does not satisfy it (or a seed lacks the value).
    Fail,
    /// A run the claim reads hit `train.max_steps` before converging: no verdict.
    NotConverged,
}

impl Outcome {
    /// The word in tables.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::NotConverged => "NOT CONVERGED",
        }
    }
}

/// The verdict on one claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Claim id.
    pub id: String,
    /// The claim in words.
    pub statement: String,
    /// What was measured.
    pub quantity: String,
    /// Per-seed values (NaN where a seed lacked the measurement).
    pub values: Vec<f64>,
    /// Mean +- sd over seeds.
    pub stats: MeanSd,
    /// ">=" or "<=".
    pub op: String,
    /// The threshold.
    pub threshold: f64,
    /// PASS, FAIL or NOT CONVERGED.
    pub outcome: Outcome,
    /// Runs the claim reads that converged, of all it reads.
    pub converged_runs: (usize, usize),
}

type Index<'a> = BTreeMap<(&'a str, u64), &'a RunResult>;

fn error_of(r: &RunResult, readout: Readout, subset: Subset) -> f64 {
    r.errors
        .get(&readout)
        .map(|e| match subset {
            Subset::Easy => e.easy,
            Subset::Hard => e.hard,
        })
        .unwrap_or(f64::NAN)
}

fn value(q: &Quantity, idx: &Index, seed: u64) -> f64 {
    let get = |c: &str| idx.get(&(c, seed)).copied();
    let gap = |a: &str, b: &str, readout: Readout, subset: Subset| match (get(a), get(b)) {
        (Some(ra), Some(rb)) => error_of(ra, readout, subset) - error_of(rb, readout, subset),
        _ => f64::NAN,
    };
    match q {
        Quantity::Response {
            condition,
            field,
            relative_to,
        } => {
            let Some(r) = get(condition) else {
                return f64::NAN;
            };
            let v = match field {
                ResponseField::CommonMax => r.responses.common_max,
                ResponseField::FineMax => r.responses.fine_max,
                ResponseField::CommonMean => r.responses.common_mean,
                ResponseField::FineMean => r.responses.fine_mean,
            };
            match relative_to {
                RelativeTo::None => v,
                RelativeTo::Init => v / r.init_level,
                RelativeTo::CommonMax => v / r.responses.common_max,
            }
        }
        Quantity::Error {
            condition,
            readout,
            subset,
        } => get(condition)
            .map(|r| error_of(r, *readout, *subset))
            .unwrap_or(f64::NAN),
        Quantity::ErrorGap {
            a,
            b,
            readout,
            subset,
        } => gap(a, b, *readout, *subset),
        Quantity::GapTrend {
            pairs,
            readout,
            subset,
            summary,
        } => {
            let gaps: Vec<f64> = pairs
                .iter()
                .map(|p| gap(&p[0], &p[1], *readout, *subset))
                .collect();
            if gaps.len() < 2 {
                return f64::NAN;
            }
            match summary {
                TrendSummary::LastMinusFirst => gaps[gaps.len() - 1] - gaps[0],
                TrendSummary::MinStep => gaps
                    .windows(2)
                    .map(|w| w[1] - w[0])
                    .fold(f64::INFINITY, f64::min),
            }
        }
    }
}

/// Evaluate every claim on the results (one result per condition and seed).
pub fn evaluate(claims: &ClaimsFile, results: &[RunResult], seeds: &[u64]) -> Vec<Verdict> {
    let idx: Index = results
        .iter()
        .map(|r| ((r.condition.as_str(), r.seed), r))
        .collect();
    claims
        .claim
        .iter()
        .map(|c| {
            let values: Vec<f64> = seeds.iter().map(|&s| value(&c.quantity, &idx, s)).collect();
            let stats = MeanSd::of(&values);
            let pass = stats.n_nan == 0
                && stats.n > 0
                && match c.op {
                    Op::Ge => stats.mean >= c.threshold,
                    Op::Le => stats.mean <= c.threshold,
                };
            let read: Vec<bool> = seeds
                .iter()
                .flat_map(|&s| {
                    let idx = &idx;
                    c.quantity
                        .conditions()
                        .into_iter()
                        .filter_map(move |cond| idx.get(&(cond, s)).map(|r| r.converged))
                })
                .collect();
            let converged = read.iter().filter(|&&c| c).count();
            let outcome = if converged < read.len() {
                Outcome::NotConverged
            } else if pass {
                Outcome::Pass
            } else {
                Outcome::Fail
            };
            Verdict {
                id: c.id.clone(),
                statement: c.statement.clone(),
                quantity: c.quantity.describe(),
                values,
                stats,
                op: c.op.symbol().into(),
                threshold: c.threshold,
                outcome,
                converged_runs: (converged, read.len()),
            }
        })
        .collect()
}

/// The verdicts as a Markdown table.
pub fn verdict_table(verdicts: &[Verdict]) -> MarkdownTable {
    let mut t = MarkdownTable::new([
        "claim",
        "statement",
        "quantity",
        "mean ± sd",
        "threshold",
        "runs converged",
        "result",
    ]);
    for v in verdicts {
        t.row([
            v.id.clone(),
            v.statement.clone(),
            v.quantity.clone(),
            format!("{:.3}", v.stats),
            format!("{} {}", v.op, v.threshold),
            format!("{}/{}", v.converged_runs.0, v.converged_runs.1),
            v.outcome.word().to_string(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::readout::Errors;
    use crate::theory::responses::{Contrasts, Responses};

    fn result(cond: &str, seed: u64, hard: f64, fine_max: f64) -> RunResult {
        let mut errors = BTreeMap::new();
        errors.insert(Readout::SummedHead, Errors { easy: 0.0, hard });
        RunResult {
            condition: cond.into(),
            seed,
            classes: 2,
            neurons: 4,
            aligned: true,
            init_level: 0.1,
            steps: 100,
            converged: true,
            contrasts: Contrasts {
                common: 1.0,
                fine: 0.0,
                feature_sq: 4.0,
            },
            responses: Responses {
                common_max: 2.0,
                common_mean: 0.5,
                fine_max,
                fine_mean: 0.1,
            },
            curve: vec![],
            errors,
            correlations: vec![],
            weight_norms: vec![],
            hard_margin: None,
        }
    }

    const MD: &str = r#"
# claims
```toml
min_seeds = 2
[[condition]]
name = "coarse"
labels = { kind = "level", level = 0 }
[[condition]]
name = "fine"
labels = { kind = "level", level = 1 }
[[claim]]
id = "gap"
statement = "coarse is worse on hard samples"
quantity = { kind = "error_gap", a = "coarse", b = "fine", readout = "summed_head", subset = "hard" }
op = ">="
threshold = 0.2
[[claim]]
id = "fine-small"
statement = "coarse leaves fine features near init"
quantity = { kind = "response", condition = "coarse", field = "fine_max", relative_to = "init" }
op = "<="
threshold = 2.0
```
"#;

    #[test]
    fn claims_parse_and_evaluate_both_ways() {
        let f = ClaimsFile::from_markdown(MD, "t.md").unwrap();
        assert_eq!(f.condition.len(), 2);
        let res = vec![
            result("coarse", 0, 0.5, 0.1),
            result("coarse", 1, 0.4, 0.3),
            result("fine", 0, 0.1, 3.0),
            result("fine", 1, 0.1, 3.0),
        ];
        let v = evaluate(&f, &res, &[0, 1]);
        assert!((v[0].stats.mean - 0.35).abs() < 1e-12 && v[0].outcome == Outcome::Pass);
        // fine_max/init = 1 and 3 -> mean 2 <= 2 passes; push one seed up and it fails
        assert!((v[1].stats.mean - 2.0).abs() < 1e-9 && v[1].outcome == Outcome::Pass);
        assert_eq!(v[0].converged_runs, (4, 4));
        assert_eq!(v[1].converged_runs, (2, 2));
        let res2 = vec![
            result("coarse", 0, 0.2, 0.1),
            result("coarse", 1, 0.2, 0.5),
            result("fine", 0, 0.1, 3.0),
            result("fine", 1, 0.1, 3.0),
        ];
        let v2 = evaluate(&f, &res2, &[0, 1]);
        assert!(v2[0].outcome == Outcome::Fail && v2[1].outcome == Outcome::Fail);
        // a missing seed is a failure, never a silent pass
        let v3 = evaluate(&f, &res[..3], &[0, 1]);
        assert_eq!(v3[0].outcome, Outcome::Fail);
        // a run that hit its step cap leaves every claim that reads it without a verdict,
        // whether its value would pass or fail
        let mut capped = res.clone();
        capped[2].converged = false; // fine, seed 0
        let v4 = evaluate(&f, &capped, &[0, 1]);
        assert_eq!(v4[0].outcome, Outcome::NotConverged);
        assert_eq!(v4[0].converged_runs, (3, 4));
        assert_eq!(
            v4[1].outcome,
            Outcome::Pass,
            "claim 2 reads only the coarse runs"
        );
        let table = verdict_table(&v4).to_string();
        assert!(
            table.contains("NOT CONVERGED") && table.contains("3/4"),
            "{table}"
        );
    }

    #[test]
    fn undefined_condition_is_an_error() {
        let bad = MD.replace("b = \"fine\"", "b = \"finer\"");
        let e = ClaimsFile::from_markdown(&bad, "t.md").unwrap_err();
        assert!(e.to_string().contains("finer"), "{e}");
    }

    #[test]
    fn shipped_claims_file_parses() {
        let f = ClaimsFile::from_markdown(CLAIMS_MD, "theory/CLAIMS.md").unwrap();
        assert!(f.min_seeds >= 5);
        assert!(f.claim.len() >= 10);
    }
}
