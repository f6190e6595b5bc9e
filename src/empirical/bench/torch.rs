//! The PyTorch side of the benchmark: `benches/torch_step.py` run as a child process that takes
//! one training step per request, so that its steps interleave with ours.

use std::path::{Path, PathBuf};

use crate::empirical::model::Arch;

/// The PyTorch script: `benches/torch_step.py` of this crate's source tree, or of the current
/// directory.
pub(super) fn torch_script() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/torch_step.py");
    if here.exists() {
        here
    } else {
        PathBuf::from("benches/torch_step.py")
    }
}

/// The PyTorch script in `--serve` mode: one training step per request, so that its steps
/// interleave with ours.
pub(super) struct TorchServer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    pub(super) version: Option<String>,
}

/// OpenMP's wait policy for the PyTorch process when the environment sets none: `PASSIVE`,
/// because PyTorch's spinning threads collapse as soon as another process wants a core, and
/// would also steal time from the steps interleaved with theirs.
pub(super) const OMP_WAIT_POLICY: &str = "PASSIVE";

impl TorchServer {
    /// Starts the script on `device` (`cpu` or `cuda`) and waits until its models are built and
    /// warmed up; `Err` says why there is no PyTorch (not installed, no python3, no GPU, script
    /// failed).
    pub(super) fn start(
        arch: Arch,
        batch: usize,
        warmup: usize,
        threads: usize,
        device: &str,
    ) -> Result<Self, String> {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(torch_script())
            .args(["--serve", "--arch", arch.name(), "--device", device])
            .args(["--batch", &batch.to_string()])
            .args(["--warmup", &warmup.max(1).to_string()])
            .args(["--threads", &threads.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if std::env::var_os("OMP_WAIT_POLICY").is_none() {
            cmd.env("OMP_WAIT_POLICY", OMP_WAIT_POLICY);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("no pipes to python3".into());
        };
        let mut stdout = std::io::BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            let n = stdout.read_line(&mut line).map_err(|e| e.to_string())?;
            if n == 0 {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let _ = child.wait();
                let last = err.lines().last().unwrap_or("no output").to_string();
                return Err(format!("torch_step.py failed: {last}"));
            }
            if let Some(j) = line.trim().strip_prefix("READY ") {
                let v: serde_json::Value = serde_json::from_str(j).unwrap_or_default();
                let version = v["torch"].as_str().map(String::from);
                return Ok(Self {
                    child,
                    stdin,
                    stdout,
                    version,
                });
            }
            if let Some(j) = line.trim().strip_prefix("RESULT ") {
                let v: serde_json::Value = serde_json::from_str(j).unwrap_or_default();
                let _ = child.wait();
                let why = v["error"].as_str().unwrap_or("no PyTorch result");
                return Err(why.to_string());
            }
        }
    }

    /// One step in `format` (`nchw` or `channels_last`); its time in seconds.
    pub(super) fn step(&mut self, format: &str) -> Result<f64, String> {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{format}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("torch_step.py: {e}"))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("torch_step.py: {e}"))?;
        line.trim()
            .strip_prefix("TIME ")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("torch_step.py answered {:?}", line.trim()))
    }
}

impl Drop for TorchServer {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}
