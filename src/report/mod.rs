//! Results on disk: one folder per run holding the resolved config, the seeds, structured
//! results (JSON, CSV) and Markdown tables, all written atomically so that a killed run never
//! leaves a half-written file behind; plus the small statistics (mean +- sd over seeds) that
//! every table and figure of the toolkit reports.

mod latex;
mod progress;

pub use progress::Progress;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors from writing or reading results.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or folder could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Serialising or parsing a result file failed.
    #[error("{path}: {msg}")]
    Format {
        /// The file at fault.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// The results folder holds results of another configuration.
    #[error("{} holds results of a different configuration; choose another --out, or pass --fresh to discard them", path.display())]
    OtherConfig {
        /// The results folder.
        path: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `bytes` to `path` atomically: write a temporary file beside it, flush it to disk, then
/// rename it over `path`. Creates missing parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Write a value as pretty JSON, atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), ReportError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ReportError::Format {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes())
}

/// Read a JSON file written by [`write_json`].
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ReportError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| ReportError::Format {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// Write rows (structs with named fields) as CSV with a header row, atomically.
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), ReportError> {
    let fmt_err = |e: csv::Error| ReportError::Format {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(fmt_err)?;
    }
    let bytes = w.into_inner().map_err(|e| ReportError::Format {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

/// Read rows written by [`write_csv`].
pub fn read_csv<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, ReportError> {
    let mut r = csv::Reader::from_path(path).map_err(|e| ReportError::Format {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    r.deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| ReportError::Format {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
}

/// Deserialise an `f64` that JSON may hold as `null` (serde_json writes NaN and infinities
/// as `null`): `null` reads back as NaN. Use with `#[serde(deserialize_with = ...)]`.
pub fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// NaN: the serde default of an `f64` field that older files lack (`#[serde(default =
/// "crate::report::nan")]`), read as "not measured".
pub fn nan() -> f64 {
    f64::NAN
}

/// `n` and the noun for it: `1 cell`, `0 cells`, `2 cells` (`one` for exactly one).
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A name made safe for a file name.
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Mean, sample standard deviation and count of a set of per-seed values. NaN values are
/// counted in `n_nan` and left out of the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanSd {
    /// Mean of the finite values (NaN if there are none).
    #[serde(deserialize_with = "f64_or_nan")]
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator; 0 for a single value).
    #[serde(deserialize_with = "f64_or_nan")]
    pub sd: f64,
    /// Number of finite values.
    pub n: usize,
    /// Number of NaN values left out.
    pub n_nan: usize,
}

impl MeanSd {
    /// Statistics of `values`.
    pub fn of(values: &[f64]) -> Self {
        let finite: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        let n = finite.len();
        let n_nan = values.len() - n;
        if n == 0 {
            return MeanSd {
                mean: f64::NAN,
                sd: f64::NAN,
                n,
                n_nan,
            };
        }
        let mean = finite.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        MeanSd { mean, sd, n, n_nan }
    }
}

impl fmt::Display for MeanSd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = f.precision().unwrap_or(3);
        write!(f, "{:.p$} ± {:.p$}", self.mean, self.sd)
    }
}

/// A Markdown table built row by row.
#[derive(Clone, Debug, Default)]
pub struct MarkdownTable {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl MarkdownTable {
    /// A table with these column headers.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        MarkdownTable {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }
    /// Append a row (missing cells are left empty, extra ones dropped).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut r: Vec<String> = cells.into_iter().map(Into::into).collect();
        r.resize(self.header.len(), String::new());
        self.rows.push(r);
    }
    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    /// True when there are no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl fmt::Display for MarkdownTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let esc = |s: &str| s.replace('|', "\\|");
        writeln!(
            f,
            "| {} |",
            self.header
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | ")
        )?;
        writeln!(
            f,
            "|{}",
            self.header.iter().map(|_| "---|").collect::<String>()
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "| {} |",
                r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
            )?;
        }
        Ok(())
    }
}

/// A results folder: creates it, and writes files into it atomically.
#[derive(Clone, Debug)]
pub struct ResultsDir {
    root: PathBuf,
}

impl ResultsDir {
    /// Create (if needed) and open the folder `root`.
    pub fn create(root: &Path) -> Result<Self, ReportError> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        Ok(ResultsDir {
            root: root.to_path_buf(),
        })
    }
    /// The folder's path.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The path of `name` inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    /// Write a text file atomically.
    pub fn write_text(&self, name: &str, text: &str) -> Result<PathBuf, ReportError> {
        let p = self.path(name);
        write_atomic(&p, text.as_bytes())?;
        Ok(p)
    }
    /// Write JSON atomically.
    pub fn write_json<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<PathBuf, ReportError> {
        let p = self.path(name);
        write_json(&p, value)?;
        Ok(p)
    }
    /// Write CSV rows atomically.
    pub fn write_csv<T: Serialize>(&self, name: &str, rows: &[T]) -> Result<PathBuf, ReportError> {
        let p = self.path(name);
        write_csv(&p, rows)?;
        Ok(p)
    }

    /// Opens `out` for a run whose resolved config is `resolved`, keeping results of the same
    /// config (so a killed run resumes) and never mixing results of different configs.
    ///
    /// `results` names the entries (files or folders) that hold computed results. If `out`
    /// holds a `config.toml` that differs from `resolved` and any of those entries is non-empty,
    /// the call fails with [`ReportError::OtherConfig`] unless `fresh`, which deletes them; a
    /// folder with a config but no results counts as empty. A config that only adds seeds to
    /// the saved one ([`adds_seeds`]) is the same study extended: its results are kept. Temporary files left by writes that
    /// were interrupted (`.NAME.tmpPID`) are deleted. Writes `config.toml` last, so call this
    /// only after everything the run needs has been checked: a run that fails its checks then
    /// leaves no folder behind.
    pub fn prepare(
        out: &Path,
        resolved: &str,
        fresh: bool,
        results: &[&str],
    ) -> Result<Self, ReportError> {
        let dir = ResultsDir::create(out)?;
        let held = other_results(out, resolved, results);
        if !held.is_empty() {
            if !fresh {
                return Err(ReportError::OtherConfig {
                    path: out.to_path_buf(),
                });
            }
            for p in &held {
                let r = if p.is_dir() {
                    fs::remove_dir_all(p)
                } else {
                    fs::remove_file(p)
                };
                r.map_err(io_err(p))?;
            }
        }
        remove_stale_temporaries(dir.root())?;
        dir.write_text("config.toml", resolved)?;
        Ok(dir)
    }
}

/// Whether [`ResultsDir::prepare`] without `fresh` would refuse `out` for the resolved config
/// `resolved` (it holds results of another config); reads only, so that a run of several
/// folders can check them all before it writes any.
pub fn holds_other_results(out: &Path, resolved: &str, results: &[&str]) -> bool {
    !other_results(out, resolved, results).is_empty()
}

/// The non-empty `results` entries of `out` when its `config.toml` is another config's (not
/// `resolved`, nor `resolved` less some seeds); none otherwise.
fn other_results(out: &Path, resolved: &str, results: &[&str]) -> Vec<PathBuf> {
    let old = fs::read_to_string(out.join("config.toml")).ok();
    let other = old
        .as_deref()
        .is_some_and(|o| o != resolved && !adds_seeds(o, resolved));
    if !other {
        return Vec::new();
    }
    results
        .iter()
        .map(|r| out.join(r))
        .filter(|p| !is_empty_entry(p))
        .collect()
}

/// Whether the resolved config `new` is `old` with more seeds: the top-level `seeds` of `new`
/// hold every seed of `old` and more, and everything else (comments included) is the same.
/// Every result is keyed by its seed, so the results of `old` are results of `new`.
pub fn adds_seeds(old: &str, new: &str) -> bool {
    fn parse(t: &str) -> Option<(toml::Table, Vec<i64>, Vec<&str>)> {
        let mut table = t.parse::<toml::Table>().ok()?;
        let seeds: Vec<i64> = table
            .remove("seeds")?
            .as_array()?
            .iter()
            .map(toml::Value::as_integer)
            .collect::<Option<_>>()?;
        let comments: Vec<&str> = t
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .collect();
        Some((table, seeds, comments))
    }
    match (parse(old), parse(new)) {
        (Some((a, old_seeds, ca)), Some((b, new_seeds, cb))) => {
            a == b
                && ca == cb
                && new_seeds.len() > old_seeds.len()
                && old_seeds.iter().all(|s| new_seeds.contains(s))
        }
        _ => false,
    }
}

/// True when `p` does not exist or is a folder with nothing in it but temporary files.
fn is_empty_entry(p: &Path) -> bool {
    match fs::read_dir(p) {
        Ok(rd) => rd.filter_map(Result::ok).all(|e| is_temporary(&e.path())),
        Err(_) => !p.exists(),
    }
}

/// A temporary file of [`write_atomic`] (`.NAME.tmpPID`).
fn is_temporary(p: &Path) -> bool {
    p.file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| n.starts_with('.') && n.contains(".tmp"))
}

/// Deletes the temporary files of interrupted [`write_atomic`] calls in `root` and in the
/// folders below it.
fn remove_stale_temporaries(root: &Path) -> Result<(), ReportError> {
    let Ok(rd) = fs::read_dir(root) else {
        return Ok(());
    };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            remove_stale_temporaries(&p)?;
        } else if is_temporary(&p) {
            fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_say_one_or_many() {
        assert_eq!(count(1, "cell", "cells"), "1 cell");
        assert_eq!(count(0, "cell", "cells"), "0 cells");
        assert_eq!(count(2, "child", "children"), "2 children");
    }

    #[test]
    fn mean_sd_matches_hand_computation() {
        let m = MeanSd::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m.mean, 2.5);
        assert!((m.sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(m.n, 4);
        let single = MeanSd::of(&[7.0]);
        assert_eq!((single.mean, single.sd), (7.0, 0.0));
        let with_nan = MeanSd::of(&[1.0, f64::NAN, 3.0]);
        assert_eq!((with_nan.mean, with_nan.n, with_nan.n_nan), (2.0, 2, 1));
        assert!(MeanSd::of(&[]).mean.is_nan());
    }

    #[test]
    fn atomic_json_and_csv_round_trip() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Row {
            a: u32,
            b: f64,
        }
        let dir = tempfile::tempdir().unwrap();
        let rd = ResultsDir::create(&dir.path().join("nested/run")).unwrap();
        let rows = vec![Row { a: 1, b: 0.5 }, Row { a: 2, b: -1.0 }];
        let p = rd.write_csv("rows.csv", &rows).unwrap();
        assert_eq!(read_csv::<Row>(&p).unwrap(), rows);
        let pj = rd.write_json("rows.json", &rows).unwrap();
        assert_eq!(read_json::<Vec<Row>>(&pj).unwrap(), rows);
        // no temporary files left behind
        let names: Vec<_> = fs::read_dir(rd.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    }

    #[test]
    fn prepare_keeps_same_config_refuses_other_and_ignores_empty_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let d = ResultsDir::prepare(&out, "a = 1\n", false, &["cells"]).unwrap();
        d.write_json("cells/x.json", &1).unwrap();
        // an interrupted write leaves a temporary file: cleaned on the next start
        fs::write(out.join("cells/.y.json.tmp123"), "{").unwrap();
        ResultsDir::prepare(&out, "a = 1\n", false, &["cells"]).unwrap();
        assert!(out.join("cells/x.json").exists());
        assert!(!out.join("cells/.y.json.tmp123").exists());
        // another config with results: refused, nothing lost
        let e = ResultsDir::prepare(&out, "a = 2\n", false, &["cells"]).unwrap_err();
        assert!(e.to_string().contains("--fresh"), "{e}");
        assert_eq!(
            fs::read_to_string(out.join("config.toml")).unwrap(),
            "a = 1\n"
        );
        assert!(out.join("cells/x.json").exists());
        // --fresh discards them
        ResultsDir::prepare(&out, "a = 2\n", true, &["cells"]).unwrap();
        assert!(!out.join("cells").exists());
        // a config without results counts as empty: another config is accepted
        ResultsDir::prepare(&out, "a = 3\n", false, &["cells"]).unwrap();
        assert_eq!(
            fs::read_to_string(out.join("config.toml")).unwrap(),
            "a = 3\n"
        );
    }

    #[test]
    fn more_seeds_keep_the_results_other_changes_do_not() {
        let cfg = |seeds: &str, lr: &str| format!("seeds = {seeds}\n\n[train]\nlr = {lr}\n");
        assert!(adds_seeds(&cfg("[0, 1]", "0.1"), &cfg("[0, 1, 2]", "0.1")));
        assert!(adds_seeds(&cfg("[3]", "0.1"), &cfg("[0, 3]", "0.1")));
        assert!(
            !adds_seeds(&cfg("[0, 1]", "0.1"), &cfg("[0, 1]", "0.1")),
            "same"
        );
        assert!(
            !adds_seeds(&cfg("[0, 1]", "0.1"), &cfg("[0]", "0.1")),
            "fewer"
        );
        assert!(
            !adds_seeds(&cfg("[0, 1]", "0.1"), &cfg("[0, 2, 3]", "0.1")),
            "dropped 1"
        );
        assert!(
            !adds_seeds(&cfg("[0]", "0.1"), &cfg("[0, 1]", "0.2")),
            "other lr"
        );
        let stock = format!("{}\n# trained with --kernels stock\n", cfg("[0, 1]", "0.1"));
        assert!(!adds_seeds(&cfg("[0]", "0.1"), &stock), "comments differ");
        assert!(!adds_seeds("not toml", &cfg("[0]", "0.1")));

        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let d = ResultsDir::prepare(&out, &cfg("[0]", "0.1"), false, &["cells"]).unwrap();
        d.write_json("cells/s0.json", &1).unwrap();
        ResultsDir::prepare(&out, &cfg("[0, 1]", "0.1"), false, &["cells"]).unwrap();
        assert!(out.join("cells/s0.json").exists());
        assert_eq!(
            fs::read_to_string(out.join("config.toml")).unwrap(),
            cfg("[0, 1]", "0.1")
        );
        let e = ResultsDir::prepare(&out, &cfg("[1]", "0.1"), false, &["cells"]).unwrap_err();
        assert!(e.to_string().contains("--fresh"), "{e}");
    }

    #[test]
    fn markdown_table_escapes_and_pads() {
        let mut t = MarkdownTable::new(["claim", "value"]);
        t.row(["a|b"]);
        let s = t.to_string();
        assert!(s.contains("| a\\|b |  |"), "{s}");
        assert!(s.starts_with("| claim | value |\n|---|---|\n"));
    }
}
