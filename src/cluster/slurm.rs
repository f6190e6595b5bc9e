//! Slurm job scripts for a sharded study: a preparation job, an array job of N shards that
//! starts when the preparation succeeded (`--dependency=afterok`), and a merge job that starts
//! when every shard succeeded; plus `submit.sh`, which submits the three in that order, and
//! [`submit`], which does the same from the binary (`--submit`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::ShardError;
use crate::report::write_atomic;

/// The Slurm options of `empirical slurm` and `theory-sim slurm`.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct SlurmArgs {
    /// Number of shards (tasks of the array job).
    #[arg(long, default_value_t = 4)]
    pub shards: usize,
    /// Partition (`#SBATCH --partition`); default: the cluster's default partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit of each job (`#SBATCH --time`, e.g. 12:00:00 or 2-00:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs of each job (`#SBATCH --cpus-per-task`; also the job's thread count).
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: usize,
    /// GPUs of the preparation job and of each shard (`#SBATCH --gpus-per-task`); pair it with
    /// `--device cuda:0` (Slurm shows each job only its own GPUs).
    #[arg(long)]
    pub gpus_per_task: Option<usize>,
    /// Memory of each job (`#SBATCH --mem`, e.g. 16G).
    #[arg(long)]
    pub mem: Option<String>,
    /// Run at most this many shards at once (`#SBATCH --array=1-N%M`).
    #[arg(long)]
    pub max_parallel: Option<usize>,
    /// Any other sbatch option for every job, e.g. --sbatch-option=--account=lab (repeatable).
    #[arg(
        long = "sbatch-option",
        value_name = "OPTION",
        allow_hyphen_values = true
    )]
    pub sbatch_options: Vec<String>,
    /// The binary the jobs run (default: this one); it must be reachable from the compute nodes.
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Folder for the scripts and the jobs' logs (default: RESULTS/slurm).
    #[arg(long)]
    pub scripts: Option<PathBuf>,
    /// Submit the jobs with sbatch (which must be on the PATH) once the scripts are written.
    #[arg(long)]
    pub submit: bool,
}

impl Default for SlurmArgs {
    fn default() -> Self {
        SlurmArgs {
            shards: 4,
            partition: None,
            time: None,
            cpus_per_task: 1,
            gpus_per_task: None,
            mem: None,
            max_parallel: None,
            sbatch_options: Vec::new(),
            binary: None,
            scripts: None,
            submit: false,
        }
    }
}

impl SlurmArgs {
    /// The binary the jobs run: `--binary`, else the running executable (absolute).
    pub fn binary(&self) -> Result<PathBuf, ShardError> {
        match &self.binary {
            Some(b) => absolute(b),
            None => std::env::current_exe().map_err(|source| ShardError::Io {
                path: PathBuf::from("(the running executable)"),
                source,
            }),
        }
    }

    /// The scripts folder: `--scripts`, else `results/slurm` (absolute).
    pub fn scripts_dir(&self, results: &Path) -> Result<PathBuf, ShardError> {
        absolute(
            &self
                .scripts
                .clone()
                .unwrap_or_else(|| results.join("slurm")),
        )
    }
}

/// True for a time limit in one of Slurm's formats: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`,
/// `D-HH:MM`, `D-HH:MM:SS` (numbers of digits), or `INFINITE` / `UNLIMITED`.
pub fn is_slurm_time(t: &str) -> bool {
    if t.eq_ignore_ascii_case("infinite") || t.eq_ignore_ascii_case("unlimited") {
        return true;
    }
    let number = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    if days.is_some_and(|d| !number(d)) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    if !parts.iter().all(|p| number(p)) {
        return false;
    }
    (1..=3).contains(&parts.len())
}

/// True for a memory size as `#SBATCH --mem` takes it: a whole number with an optional unit
/// `K`, `M`, `G` or `T` (upper or lower case).
fn is_slurm_mem(m: &str) -> bool {
    let digits = m.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    m.len() - digits.len() <= 1 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

impl SlurmArgs {
    /// Checks every option before a script is written: Slurm's time format for `--time`, a
    /// memory size for `--mem`, at least one shard, CPU and parallel shard, no GPUs when the
    /// jobs run on the CPU (`on_cpu`), and single-line options (a line break would end the
    /// `#SBATCH` line and put the rest in the script's shell code). Errors name the option.
    pub fn check(&self, on_cpu: bool) -> Result<(), ShardError> {
        let bad = |m: String| Err(ShardError::Slurm(m));
        if self.shards == 0 {
            return bad("--shards must be at least 1".into());
        }
        if self.cpus_per_task == 0 {
            return bad("--cpus-per-task must be at least 1".into());
        }
        if self.max_parallel == Some(0) {
            return bad("--max-parallel must be at least 1 (shards running at once)".into());
        }
        match self.gpus_per_task {
            Some(0) => return bad("--gpus-per-task must be at least 1 (or left out)".into()),
            Some(g) if on_cpu => {
                return bad(format!(
                    "--gpus-per-task {g} with --device cpu: the jobs would hold GPUs and not use \
                     them; add --device cuda:0 (Slurm shows each job only its own GPUs) or drop \
                     --gpus-per-task"
                ))
            }
            _ => {}
        }
        if let Some(t) = &self.time {
            if !is_slurm_time(t) {
                return bad(format!(
                    "--time {t:?} is not a Slurm time limit: give MM, HH:MM:SS, D-HH, \
                     D-HH:MM:SS (e.g. 12:00:00 or 2-00:00:00) or UNLIMITED"
                ));
            }
        }
        if let Some(m) = &self.mem {
            if !is_slurm_mem(m) {
                return bad(format!(
                    "--mem {m:?} is not a memory size: give a number with an optional unit K, \
                     M, G or T (e.g. 16G)"
                ));
            }
        }
        let single_line = |what: &str, v: &str| -> Result<(), ShardError> {
            if v.trim().is_empty() || v.chars().any(char::is_control) {
                return bad(format!(
                    "{what} {v:?} must be one non-empty line without control characters"
                ));
            }
            Ok(())
        };
        if let Some(p) = &self.partition {
            single_line("--partition", p)?;
        }
        for o in &self.sbatch_options {
            single_line("--sbatch-option", o)?;
            if !o.starts_with('-') {
                return bad(format!(
                    "--sbatch-option {o:?} is not an sbatch option: give it with its dashes, \
                     e.g. --sbatch-option=--account=lab"
                ));
            }
        }
        Ok(())
    }
}

/// `path` made absolute against the current folder (jobs may start elsewhere).
pub fn absolute(path: &Path) -> Result<PathBuf, ShardError> {
    std::path::absolute(path).map_err(|source| ShardError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The three commands of a sharded study, each an argument list starting with the binary.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSet {
    /// Job name prefix (the study's name).
    pub name: String,
    /// Where the jobs start (`#SBATCH --chdir`).
    pub workdir: PathBuf,
    /// The preparation (run once, before the shards).
    pub prepare: Vec<String>,
    /// A shard's command without its `--shard I/N`, which each array task appends.
    pub shard: Vec<String>,
    /// The merge (after every shard).
    pub merge: Vec<String>,
}

impl JobSet {
    /// The jobs of the study or sweep `name` whose shard command is `shard` (an argument list
    /// starting with the binary; each array task appends its `--shard I/N`): the preparation is
    /// the same command with `--prepare`, the merge `BINARY merge OUT`. The jobs start in this
    /// process's working folder.
    pub fn new(name: &str, shard: Vec<String>, out: &Path) -> Result<JobSet, ShardError> {
        let binary = shard
            .first()
            .cloned()
            .ok_or_else(|| ShardError::Slurm("a job needs a command".into()))?;
        let mut prepare = shard.clone();
        prepare.push("--prepare".into());
        Ok(JobSet {
            name: name.to_string(),
            workdir: absolute(Path::new("."))?,
            prepare,
            shard,
            merge: vec![binary, "merge".into(), path_arg(out)?],
        })
    }
}

/// `path` made absolute, as an argument of a job's command.
pub fn path_arg(path: &Path) -> Result<String, ShardError> {
    Ok(absolute(path)?.to_string_lossy().into_owned())
}

/// The `slurm` command of both binaries once its jobs are built (and its options checked):
/// writes the scripts into the scripts folder of the results folder `out` and, with
/// `--submit`, submits them. Returns what to print: where the scripts are and, when submitted,
/// the job ids; `what` names the kind of work ("study", "sweep").
pub fn deploy(
    jobs: &JobSet,
    args: &SlurmArgs,
    out: &Path,
    what: &str,
) -> Result<String, ShardError> {
    let dir = args.scripts_dir(out)?;
    let scripts = write_scripts(jobs, args, &dir)?;
    let mut text = format!(
        "Slurm jobs of {what} '{}' in {}: submit them with\n  {}",
        jobs.name,
        dir.display(),
        scripts.submit.display()
    );
    if args.submit {
        let ids = submit(&scripts)?;
        text.push_str(&format!(
            "\nsubmitted: prepare job {}, shards array job {}, merge job {}; results in {}",
            ids.prepare,
            ids.shards,
            ids.merge,
            out.display()
        ));
    }
    Ok(text)
}

/// The files [`write_scripts`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Scripts {
    /// The scripts folder (logs go to `logs/` inside it).
    pub dir: PathBuf,
    /// The preparation job.
    pub prepare: PathBuf,
    /// The array job of the shards.
    pub shards: PathBuf,
    /// The merge job.
    pub merge: PathBuf,
    /// Submits the three with their dependencies.
    pub submit: PathBuf,
}

/// Quotes `arg` for a POSIX shell (left bare when it holds only safe characters).
pub fn shell_quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

fn command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One job of the set: its name, extra `#SBATCH` options, resources and command line.
struct Job {
    what: &'static str,
    extra: Vec<String>,
    gpus: Option<usize>,
    cpus: usize,
    command: String,
}

impl Job {
    /// The sbatch script: the header (`#SBATCH` lines), then the command, run with as many
    /// threads as the job has CPUs.
    fn script(&self, jobs: &JobSet, opts: &SlurmArgs, logs: &Path) -> String {
        let what = self.what;
        let mut s = String::from("#!/bin/bash\n");
        let mut opt = |o: String| {
            let _ = writeln!(s, "#SBATCH {o}");
        };
        opt(format!(
            "--job-name={}",
            shell_quote(&format!("{}-{what}", jobs.name))
        ));
        opt(format!(
            "--chdir={}",
            shell_quote(&jobs.workdir.to_string_lossy())
        ));
        let log = if what == "shards" {
            "shard-%a-job-%A.out".to_string()
        } else {
            format!("{what}-job-%j.out")
        };
        opt(format!(
            "--output={}",
            shell_quote(&logs.join(log).to_string_lossy())
        ));
        opt(format!("--cpus-per-task={}", self.cpus));
        if let Some(p) = &opts.partition {
            opt(format!("--partition={}", shell_quote(p)));
        }
        if let Some(t) = &opts.time {
            opt(format!("--time={}", shell_quote(t)));
        }
        if let Some(g) = self.gpus {
            opt(format!("--gpus-per-task={g}"));
        }
        if let Some(m) = &opts.mem {
            opt(format!("--mem={}", shell_quote(m)));
        }
        for o in self.extra.iter().chain(&opts.sbatch_options) {
            opt(shell_quote(o));
        }
        let _ = write!(
            s,
            "\n# The {what} job of study '{}' (written by its binary's `slurm` command).\nset -euo pipefail\nexport RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"\nexec {}\n",
            jobs.name, self.command
        );
        s
    }
}

const SUBMIT_SH: &str = "#!/bin/bash
# Submits the preparation, the shards (after it) and the merge (after every shard).
set -euo pipefail
cd \"$(dirname \"$0\")\"
prep=$(sbatch --parsable prepare.sbatch)
prep=${prep%%;*}
shards=$(sbatch --parsable --kill-on-invalid-dep=yes --dependency=afterok:$prep shards.sbatch)
shards=${shards%%;*}
merge=$(sbatch --parsable --kill-on-invalid-dep=yes --dependency=afterok:$shards merge.sbatch)
merge=${merge%%;*}
echo \"prepare: job $prep; shards: array job $shards; merge: job $merge\"
";

/// Writes `prepare.sbatch`, `shards.sbatch` (an array job of `opts.shards` tasks), `merge.sbatch`
/// and `submit.sh` into `dir`, and creates `dir/logs`.
/// The options are checked first ([`SlurmArgs::check`], GPUs allowed): nothing is written
/// when one is wrong.
pub fn write_scripts(jobs: &JobSet, opts: &SlurmArgs, dir: &Path) -> Result<Scripts, ShardError> {
    opts.check(false)?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|source| ShardError::Io {
        path: logs.clone(),
        source,
    })?;
    let n = opts.shards;
    let array = match opts.max_parallel {
        Some(m) => format!("--array=1-{n}%{m}"),
        None => format!("--array=1-{n}"),
    };
    let (gpus, cpus) = (opts.gpus_per_task, opts.cpus_per_task);
    let set = [
        Job {
            what: "prepare",
            extra: vec![],
            gpus,
            cpus,
            command: command_line(&jobs.prepare),
        },
        Job {
            what: "shards",
            extra: vec![array],
            gpus,
            cpus,
            command: format!(
                "{} --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\"",
                command_line(&jobs.shard)
            ),
        },
        Job {
            what: "merge",
            extra: vec![],
            gpus: None,
            cpus: 1,
            command: command_line(&jobs.merge),
        },
    ];
    let mut files: Vec<(String, String)> = set
        .iter()
        .map(|j| (format!("{}.sbatch", j.what), j.script(jobs, opts, &logs)))
        .collect();
    files.push(("submit.sh".into(), SUBMIT_SH.into()));
    for (name, text) in &files {
        let p = dir.join(name);
        write_atomic(&p, text.as_bytes())?;
        set_executable(&p)?;
    }
    Ok(Scripts {
        dir: dir.to_path_buf(),
        prepare: dir.join("prepare.sbatch"),
        shards: dir.join("shards.sbatch"),
        merge: dir.join("merge.sbatch"),
        submit: dir.join("submit.sh"),
    })
}

#[cfg(unix)]
fn set_executable(p: &Path) -> Result<(), ShardError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).map_err(|source| {
        ShardError::Io {
            path: p.to_path_buf(),
            source,
        }
    })
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<(), ShardError> {
    Ok(())
}

/// The job ids [`submit`] got back.
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    /// The preparation job.
    pub prepare: String,
    /// The array job of the shards.
    pub shards: String,
    /// The merge job.
    pub merge: String,
}

/// Submits the scripts with `sbatch` (found on the PATH): the preparation, the shards after it
/// succeeded, the merge after every shard succeeded (a job whose dependency fails is cancelled).
pub fn submit(scripts: &Scripts) -> Result<Submitted, ShardError> {
    submit_with(Path::new("sbatch"), scripts)
}

/// [`submit`] with another `sbatch` program.
fn submit_with(program: &Path, scripts: &Scripts) -> Result<Submitted, ShardError> {
    let prepare = sbatch(program, &scripts.prepare, None)?;
    let shards = sbatch(program, &scripts.shards, Some(&prepare))?;
    let merge = sbatch(program, &scripts.merge, Some(&shards))?;
    Ok(Submitted {
        prepare,
        shards,
        merge,
    })
}

fn sbatch(program: &Path, script: &Path, after: Option<&str>) -> Result<String, ShardError> {
    let mut cmd = Command::new(program);
    cmd.arg("--parsable");
    if let Some(id) = after {
        cmd.arg("--kill-on-invalid-dep=yes")
            .arg(format!("--dependency=afterok:{id}"));
    }
    let out = cmd.arg(script).output().map_err(|e| {
        ShardError::Slurm(if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "sbatch is not on the PATH; the scripts are written: submit them on the cluster with {}",
                script.with_file_name("submit.sh").display()
            )
        } else {
            format!("running sbatch: {e}")
        })
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if !out.status.success() || id.is_empty() {
        return Err(ShardError::Slurm(format!(
            "sbatch {} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs() -> JobSet {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        JobSet {
            name: "quick".into(),
            workdir: "/w d".into(),
            prepare: s(&["/bin/emp", "study", "c.toml", "--out", "/r", "--prepare"]),
            shard: s(&[
                "/bin/emp", "--set", "x='a b'", "study", "c.toml", "--out", "/r",
            ]),
            merge: s(&["/bin/emp", "merge", "/r"]),
        }
    }

    #[test]
    fn quoting_keeps_safe_words_bare_and_quotes_the_rest() {
        assert_eq!(shell_quote("a/b-c_d.toml"), "a/b-c_d.toml");
        assert_eq!(shell_quote("train.lr=0.5"), "train.lr=0.5");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn scripts_hold_the_options_the_array_and_the_commands() {
        let t = tempfile::tempdir().unwrap();
        let opts = SlurmArgs {
            shards: 3,
            partition: Some("gpu".into()),
            time: Some("1:00:00".into()),
            cpus_per_task: 8,
            gpus_per_task: Some(1),
            max_parallel: Some(2),
            sbatch_options: vec!["--account=lab".into()],
            ..SlurmArgs::default()
        };
        let s = write_scripts(&jobs(), &opts, t.path()).unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let (prep, shards, merge, submit) = (
            read(&s.prepare),
            read(&s.shards),
            read(&s.merge),
            read(&s.submit),
        );
        assert!(shards.contains("#SBATCH --array=1-3%2\n"), "{shards}");
        assert!(shards.contains("--shard \"${SLURM_ARRAY_TASK_ID}/3\""));
        assert!(shards.contains("--set 'x='\\''a b'\\'''"), "{shards}");
        for text in [&prep, &shards] {
            for line in [
                "#SBATCH --partition=gpu",
                "#SBATCH --time=1:00:00",
                "#SBATCH --cpus-per-task=8",
                "#SBATCH --gpus-per-task=1",
                "#SBATCH --account=lab",
                "#SBATCH --chdir='/w d'",
            ] {
                assert!(text.contains(line), "{line} missing in\n{text}");
            }
        }
        assert!(prep.contains("exec /bin/emp study c.toml --out /r --prepare\n"));
        assert!(!prep.contains("--array"));
        assert!(merge.contains("#SBATCH --cpus-per-task=1\n") && !merge.contains("gpus"));
        assert!(merge.contains("exec /bin/emp merge /r\n"));
        assert!(submit.contains("--dependency=afterok:$prep shards.sbatch"));
        assert!(submit.contains("--dependency=afterok:$shards merge.sbatch"));
        assert!(t.path().join("logs").is_dir());
        // bash can parse every script
        for p in [&s.prepare, &s.shards, &s.merge, &s.submit] {
            let ok = Command::new("bash").arg("-n").arg(p).status();
            if let Ok(st) = ok {
                assert!(st.success(), "{} does not parse", p.display());
            }
        }
    }

    #[test]
    fn slurm_time_formats() {
        for ok in [
            "30",
            "30:00",
            "12:00:00",
            "2-00",
            "2-12:30",
            "2-00:00:00",
            "UNLIMITED",
            "infinite",
        ] {
            assert!(is_slurm_time(ok), "{ok}");
        }
        for bad in [
            "tomorrow",
            "",
            "1:2:3:4",
            "2-",
            "-1",
            "1h",
            "12:00:00\n",
            "2-1-1",
            "1::0",
        ] {
            assert!(!is_slurm_time(bad), "{bad:?}");
        }
        assert!(is_slurm_mem("16G") && is_slurm_mem("4000") && is_slurm_mem("0"));
        assert!(!is_slurm_mem("16GB") && !is_slurm_mem("G") && !is_slurm_mem("lots"));
    }

    #[test]
    fn bad_options_are_refused_before_a_script_is_written() {
        let t = tempfile::tempdir().unwrap();
        let cases: [(SlurmArgs, &str); 7] = [
            (
                SlurmArgs {
                    time: Some("tomorrow".into()),
                    ..SlurmArgs::default()
                },
                "--time \"tomorrow\" is not a Slurm time limit",
            ),
            (
                SlurmArgs {
                    max_parallel: Some(0),
                    ..SlurmArgs::default()
                },
                "--max-parallel must be at least 1",
            ),
            (
                SlurmArgs {
                    sbatch_options: vec!["--account=lab\necho hi; (".into()],
                    ..SlurmArgs::default()
                },
                "--sbatch-option",
            ),
            (
                SlurmArgs {
                    sbatch_options: vec!["account=lab".into()],
                    ..SlurmArgs::default()
                },
                "not an sbatch option",
            ),
            (
                SlurmArgs {
                    partition: Some("gpu\nrm".into()),
                    ..SlurmArgs::default()
                },
                "--partition",
            ),
            (
                SlurmArgs {
                    mem: Some("lots".into()),
                    ..SlurmArgs::default()
                },
                "--mem \"lots\"",
            ),
            (
                SlurmArgs {
                    gpus_per_task: Some(0),
                    ..SlurmArgs::default()
                },
                "--gpus-per-task must be at least 1",
            ),
        ];
        for (i, (opts, want)) in cases.iter().enumerate() {
            let dir = t.path().join(i.to_string());
            let e = write_scripts(&jobs(), opts, &dir).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert!(
                !dir.exists(),
                "{} written for a refused option",
                dir.display()
            );
        }
        let gpus = SlurmArgs {
            gpus_per_task: Some(1),
            ..SlurmArgs::default()
        };
        let e = gpus.check(true).unwrap_err().to_string();
        assert!(e.contains("--gpus-per-task 1 with --device cpu"), "{e}");
        gpus.check(false).unwrap();
    }

    #[test]
    fn zero_shards_or_cpus_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let zero = SlurmArgs {
            shards: 0,
            ..SlurmArgs::default()
        };
        assert!(write_scripts(&jobs(), &zero, t.path()).is_err());
        let no_cpu = SlurmArgs {
            cpus_per_task: 0,
            ..SlurmArgs::default()
        };
        assert!(write_scripts(&jobs(), &no_cpu, t.path()).is_err());
    }

    #[test]
    fn submitting_without_sbatch_says_where_the_scripts_are() {
        let t = tempfile::tempdir().unwrap();
        let s = write_scripts(&jobs(), &SlurmArgs::default(), t.path()).unwrap();
        let missing = t.path().join("no-such-sbatch");
        let e = submit_with(&missing, &s).unwrap_err().to_string();
        assert!(
            e.contains("not on the PATH") && e.contains("submit.sh"),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn submit_chains_the_jobs_by_their_ids() {
        let t = tempfile::tempdir().unwrap();
        let s = write_scripts(&jobs(), &SlurmArgs::default(), t.path()).unwrap();
        // a stand-in sbatch: logs its arguments, answers "ID;cluster" with ids 11, 12, 13
        let fake = t.path().join("fake-sbatch");
        let log = t.path().join("calls.txt");
        let text = format!(
            "#!/bin/sh\necho \"$*\" >> '{0}'\nn=$(wc -l < '{0}')\necho \"$((10 + n));cluster\"\n",
            log.display()
        );
        std::fs::write(&fake, text).unwrap();
        set_executable(&fake).unwrap();
        let ids = submit_with(&fake, &s).unwrap();
        assert_eq!(
            (
                ids.prepare.as_str(),
                ids.shards.as_str(),
                ids.merge.as_str()
            ),
            ("11", "12", "13")
        );
        let calls = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = calls.lines().collect();
        assert!(lines[0].ends_with("prepare.sbatch") && !lines[0].contains("dependency"));
        assert!(
            lines[1].contains("--dependency=afterok:11") && lines[1].ends_with("shards.sbatch")
        );
        assert!(lines[2].contains("--dependency=afterok:12") && lines[2].ends_with("merge.sbatch"));
        // a failing sbatch is reported with its message
        std::fs::write(&fake, "#!/bin/sh\necho 'invalid partition' >&2\nexit 1\n").unwrap();
        let e = submit_with(&fake, &s).unwrap_err().to_string();
        assert!(e.contains("invalid partition"), "{e}");
    }
}
