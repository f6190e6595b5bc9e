//! LaTeX (`booktabs`) versions of [`MarkdownTable`]s, so that a results table goes into a paper
//! unchanged: the same cells as the Markdown (so the same rounding of mean +- sd), with LaTeX's
//! special characters escaped, `±` as `$\pm$`, the missing-value dash `–` as `--`, and columns of
//! numbers right-aligned. Needs `\usepackage{booktabs}` in the document.

use super::MarkdownTable;

/// One cell's text in LaTeX.
fn escape(cell: &str) -> String {
    let mut out = String::with_capacity(cell.len() + 8);
    for ch in cell.chars() {
        match ch {
            '\\' => out.push_str(r"\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '~' => out.push_str(r"\textasciitilde{}"),
            '^' => out.push_str(r"\textasciicircum{}"),
            '±' => out.push_str(r"$\pm$"),
            '–' => out.push_str("--"),
            '—' => out.push_str("---"),
            '×' => out.push_str(r"$\times$"),
            '≤' => out.push_str(r"$\leq$"),
            '≥' => out.push_str(r"$\geq$"),
            _ => out.push(ch),
        }
    }
    out
}

/// True when a cell reads as a number (or a mean ± sd, a percentage, a missing-value dash).
fn numeric(cell: &str) -> bool {
    let c = cell.trim();
    c == "–" || c.starts_with(|ch: char| ch.is_ascii_digit() || "+-.".contains(ch))
}

impl MarkdownTable {
    /// The table as a LaTeX `tabular` with `booktabs` rules (`\toprule`, `\midrule`,
    /// `\bottomrule`). A column is right-aligned when every non-empty cell of it is a number.
    pub fn to_latex(&self) -> String {
        let align: String = (0..self.header.len())
            .map(|c| {
                let cells: Vec<&String> = self
                    .rows
                    .iter()
                    .map(|r| &r[c])
                    .filter(|s| !s.trim().is_empty())
                    .collect();
                if !cells.is_empty() && cells.iter().all(|s| numeric(s)) {
                    'r'
                } else {
                    'l'
                }
            })
            .collect();
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().map(|c| escape(c)).collect();
            format!("{} \\\\\n", cells.join(" & "))
        };
        let mut out = format!("\\begin{{tabular}}{{{align}}}\n\\toprule\n");
        out.push_str(&line(&self.header));
        out.push_str("\\midrule\n");
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out.push_str("\\bottomrule\n\\end{tabular}\n");
        out
    }

    /// [`MarkdownTable::to_latex`] inside a centred `table` float with a caption and a label.
    pub fn to_latex_table(&self, caption: &str, label: &str) -> String {
        format!(
            "\\begin{{table}}[t]\n\\centering\n\\caption{{{}}}\n\\label{{{label}}}\n{}\\end{{table}}\n",
            escape(caption),
            self.to_latex()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::MeanSd;

    #[test]
    fn latex_keeps_the_markdown_cells_and_escapes() {
        let m = MeanSd::of(&[0.25, 0.2625]);
        let mut t =
            MarkdownTable::new(["pretraining", "error (mean ± sd)", "rel. error reduction"]);
        let cell = format!("{:.3} ± {:.3}", m.mean, m.sd);
        t.row(["fine_100 & co", cell.as_str(), "+12.5%"]);
        t.row(["baseline", "–", "(baseline)"]);
        let md = t.to_string();
        let tex = t.to_latex();
        assert!(md.contains("| 0.256 ± 0.009 |"), "{md}");
        assert!(tex.contains("0.256 $\\pm$ 0.009"), "{tex}");
        assert!(
            tex.starts_with("\\begin{tabular}{lrl}\n\\toprule\n"),
            "{tex}"
        );
        assert!(
            tex.contains(
                "pretraining & error (mean $\\pm$ sd) & rel. error reduction \\\\\n\\midrule\n"
            ),
            "{tex}"
        );
        assert!(
            tex.contains("fine\\_100 \\& co & 0.256 $\\pm$ 0.009 & +12.5\\% \\\\\n"),
            "{tex}"
        );
        assert!(
            tex.contains("baseline & -- & (baseline) \\\\\n\\bottomrule\n\\end{tabular}\n"),
            "{tex}"
        );
        let float = t.to_latex_table("Error on the 20 superclasses (n = 3 seeds)", "tab:err");
        assert!(float.contains("\\caption{Error on the 20 superclasses (n = 3 seeds)}\n\\label{tab:err}\n\\begin{tabular}"), "{float}");
        assert!(float.ends_with("\\end{tabular}\n\\end{table}\n"), "{float}");
    }
}
