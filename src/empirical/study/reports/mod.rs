//! The reports of a study folder, written from its saved files only (its config, cells and
//! preparation: so `empirical plot` can redraw them at any time, and a merge of shards writes
//! the same bytes as a single run): `epochs.csv`, `timings.csv`, `summary.json`, `results.md`,
//! `results.tex`, the comparisons and the figures.
//!
//! * [`summary`]: statistics over seeds and the table; [`stats`]: paired comparisons with the
//!   baseline (95% intervals, verdicts); [`comparisons`]: the comparisons decided from the
//!   cells' saved predictions (paired t, Holm); [`figures`]: the SVG figures.

pub mod comparisons;
pub mod figures;
pub mod shape;
pub mod stats;
pub mod summary;

use std::path::Path;

use self::comparisons::{compare, COMPARISONS_FILE, FINE_PROBE};
use self::summary::{subset_table, summarize, summary_table, StudySummary};
use super::config::{Readout, StudyConfig};
use super::results::{
    read_cells, read_timings, CellResult, DesignInfo, DesignSubsets, EpochRecord, HardSubset,
    MemberOutput, DESIGNS_FILE, HARD_SUBSETS_FILE, MEMBERS_FILE, SUBSETS_FILE,
};
use crate::empirical::error::EmpiricalError;
use crate::report::{read_json, ResultsDir};

/// Writes `epochs.csv`, `summary.json`, `results.md` and the figures of the study in `dir` from
/// its saved cells. Returns the summary.
pub fn write_reports(dir: &Path) -> Result<StudySummary, EmpiricalError> {
    let rd = ResultsDir::create(dir)?;
    let cfg: StudyConfig = crate::config::load_file(&rd.path("config.toml"), &[])?;
    let mut cells = read_cells(dir)?;
    let plan = cfg.design_plan();
    // order: designs as run, baseline first, then the config's granularity order, then seed
    let pos = |c: &CellResult| {
        let d = plan
            .iter()
            .position(|(d, _)| *d == c.design)
            .unwrap_or(usize::MAX);
        let g = if c.condition == "baseline" {
            0
        } else {
            1 + cfg
                .granularities
                .iter()
                .position(|g| g.name == c.condition)
                .unwrap_or(usize::MAX - 1)
        };
        (d, g, c.seed)
    };
    cells.sort_by_key(pos);
    let mut epochs: Vec<EpochRecord> = Vec::new();
    let hard_subsets: Vec<HardSubset> = rd
        .path(HARD_SUBSETS_FILE)
        .exists()
        .then(|| read_json(&rd.path(HARD_SUBSETS_FILE)))
        .transpose()?
        .unwrap_or_default();
    if let Ok(members) = read_json::<Vec<MemberOutput>>(&rd.path(MEMBERS_FILE)) {
        for m in members {
            epochs.extend(m.epochs);
        }
    }
    for c in &cells {
        epochs.extend(c.epochs.iter().cloned());
    }
    rd.write_csv("epochs.csv", &epochs)?;
    rd.write_csv("timings.csv", &read_timings(dir)?)?;
    let rows = summarize(&cells);
    let summary = StudySummary {
        name: cfg.name.clone(),
        seeds: cfg.seeds.clone(),
        rows,
        hard_subsets,
    };
    rd.write_json("summary.json", &summary)?;
    let mut md = format!(
        "# Study `{}`\n\nTarget: level {} of the hierarchy. Errors are top-1 on the test set, mean ± sd over seeds; relative error reduction is against the design's from-scratch baseline (positive = better).\n\n",
        cfg.name, cfg.data.target_level
    );
    for h in &summary.hard_subsets {
        md.push_str(&format!(
            "* design `{}`: hard test images = {} ({} of {})\n",
            h.design, h.definition, h.hard, h.total
        ));
        if let Some(c) = &h.confusable {
            let leaves: Vec<String> = c
                .leaves
                .iter()
                .map(|(name, err)| format!("{name} ({err:.2})"))
                .collect();
            md.push_str(&format!(
                "* design `{}`: confusable leaves = {} ({} of {} test images): {}\n",
                h.design,
                c.definition,
                c.images,
                c.total,
                leaves.join(", ")
            ));
        }
    }
    md.push_str("\nThe paired column is, over the seeds that have both, the mean of the per-seed difference of the error and the baseline's (same seed, same design; negative = lower error), with its 95% t-interval; the verdict is read from the interval: helps (all below 0), hurts (all above 0), or no detectable difference.\n\n");
    let table = summary_table(&summary.rows);
    md.push_str(&table.to_string());
    if let Some(subsets) = subset_table(&summary.rows) {
        md.push_str("\n## Paired differences with the baseline on each test subset\n\nThe same paired comparison (negative = lower error than the baseline) on all test images, on the hard ones and on all test images of the confusable leaves (the leaves' ensemble error in parentheses above). Both subsets are chosen for being hard for coarse-trained networks, so they favour any arm unlike the baseline; the confusable subset, chosen leaf by leaf rather than image by image, much less so.\n\n");
        md.push_str(&subsets.to_string());
    }
    rd.write_text("results.md", &md)?;
    write_comparisons(&rd, &cfg, &cells)?;
    rd.write_text(
        "results.tex",
        &table.to_latex_table(
            &format!(
                "Study {}: target error (mean $\\pm$ sd over seeds) and the paired difference with the baseline (95\\% interval).",
                cfg.name
            ),
            &format!("tab:{}", crate::report::file_safe(&cfg.name)),
        ),
    )?;
    figures::write_figures(&rd, &summary)?;
    if let Ok(infos) = read_json::<Vec<DesignInfo>>(&rd.path(DESIGNS_FILE)) {
        for subset in figures::TestSubset::ALL {
            if let Some((chart, points)) = figures::gain_vs_size(&summary.rows, &infos, subset) {
                let name = format!("gain_vs_size{}", subset.suffix());
                rd.write_text(&format!("{name}.svg"), &crate::plot::line_chart(&chart)?)?;
                rd.write_csv(&format!("{name}.csv"), &points)?;
            }
        }
    }
    Ok(summary)
}

/// Writes `comparisons.json`, `comparisons.md` and the paired granularity figures
/// (`paired_{design}_{readout}.svg`, the direct arms' `paired_direct_...`) where the cells saved
/// their test predictions and `subsets.json` exists; nothing otherwise.
fn write_comparisons(
    rd: &ResultsDir,
    cfg: &StudyConfig,
    cells: &[CellResult],
) -> Result<(), EmpiricalError> {
    let path = rd.path(SUBSETS_FILE);
    if !path.exists() {
        return Ok(());
    }
    let subsets: Vec<DesignSubsets> = read_json(&path)?;
    let Some(c) = compare(cfg, cells, &subsets)? else {
        return Ok(());
    };
    rd.write_json(COMPARISONS_FILE, &c)?;
    rd.write_text("comparisons.md", &c.markdown())?;
    let readouts = Readout::PRETRAINED
        .iter()
        .map(|r| r.name())
        .chain([FINE_PROBE]);
    for (design, _) in cfg.design_plan() {
        for readout in readouts.clone() {
            for direct in [false, true] {
                if let Some(chart) = c.granularity_chart(&design, readout, direct) {
                    let name = format!(
                        "paired{}_{}_{readout}.svg",
                        if direct { "_direct" } else { "" },
                        crate::report::file_safe(&design)
                    );
                    rd.write_text(&name, &crate::plot::line_chart(&chart)?)?;
                }
            }
        }
    }
    Ok(())
}
