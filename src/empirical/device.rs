//! Where networks run: the `--device` flag (`cpu`, `cuda`, `cuda:N`) and opening the device it
//! names.
//!
//! CUDA needs a binary built with the `cuda` cargo feature (see `scripts/build-cuda.sh` and the
//! README's "CUDA" section). Without it, or when the index names a GPU the machine does not have,
//! [`DeviceSpec::open`] fails with a [`DeviceError`] that says so, before any work starts.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

/// A device named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU (this crate's fast kernels, or candle's stock operations).
    Cpu,
    /// The CUDA GPU with this index (candle's CUDA operations).
    Cuda(usize),
}

/// Why a device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The flag's value is not a device name.
    #[error("--device {spec}: expected \"cpu\", \"cuda\" or \"cuda:N\" with N a GPU index")]
    Parse {
        /// The value given.
        spec: String,
    },
    /// CUDA was asked for, but this binary was built without the `cuda` feature.
    #[error(
        "--device {spec}: this binary was built without CUDA support; build one with \
         `scripts/build-cuda.sh` (or `cargo build --release --features cuda` where the CUDA \
         toolkit is installed)"
    )]
    NotCompiled {
        /// The device asked for.
        spec: DeviceSpec,
    },
    /// The GPU index is not below the number of GPUs the driver reports.
    #[error("--device {spec}: there is no GPU {index}: the driver reports {count} CUDA device(s){}",
        if *count > 0 { format!(" (use cuda:0 to cuda:{})", count - 1) } else { String::new() })]
    NoSuchGpu {
        /// The device asked for.
        spec: DeviceSpec,
        /// Its index.
        index: usize,
        /// How many GPUs there are.
        count: usize,
    },
    /// The CUDA driver or libraries failed (no driver, a stub library, out of memory, ...).
    #[error("--device {spec}: cannot open the GPU: {source}")]
    Cuda {
        /// The device asked for.
        spec: DeviceSpec,
        /// The error from candle / the CUDA driver.
        #[source]
        source: Box<candle_core::Error>,
    },
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    /// `cpu`, `cuda` (GPU 0) or `cuda:N`; surrounding spaces and letter case are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let bad = || DeviceError::Parse {
            spec: s.to_string(),
        };
        match t.as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => {
                let n = t.strip_prefix("cuda:").ok_or_else(bad)?;
                // usize::from_str accepts a leading '+'; a GPU index is plain digits.
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                n.parse().map(DeviceSpec::Cuda).map_err(|_| bad())
            }
        }
    }
}

/// Whether this binary was built with the `cuda` feature.
pub fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

/// Checks that GPU `index` exists when the driver reports `count` GPUs.
pub fn check_index(spec: DeviceSpec, index: usize, count: usize) -> Result<(), DeviceError> {
    if index < count {
        Ok(())
    } else {
        Err(DeviceError::NoSuchGpu { spec, index, count })
    }
}

impl DeviceSpec {
    /// Opens the device: the CPU always; a GPU only in a build with the `cuda` feature, after
    /// checking that the driver reports a GPU with that index.
    pub fn open(self) -> Result<Device, DeviceError> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(index) => open_cuda(self, index),
        }
    }

    /// Whether this names the CPU.
    pub fn is_cpu(self) -> bool {
        self == DeviceSpec::Cpu
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(spec: DeviceSpec, index: usize) -> Result<Device, DeviceError> {
    use candle_core::cuda_backend::cudarc::driver::CudaContext;
    let cuda = |e: candle_core::Error| DeviceError::Cuda {
        spec,
        source: Box::new(e),
    };
    // device_count initialises the driver first, so a missing driver (or the link-time stub
    // library) is reported here with the driver's own error.
    let count =
        CudaContext::device_count().map_err(|e| cuda(candle_core::Error::Cuda(Box::new(e))))?;
    check_index(spec, index, usize::try_from(count).unwrap_or(0))?;
    Device::new_cuda(index).map_err(cuda)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(spec: DeviceSpec, _index: usize) -> Result<Device, DeviceError> {
    Err(DeviceError::NotCompiled { spec })
}

/// A short description of an open device for reports: `cpu`, or `cuda:N` and the GPU's name.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let stream = d.cuda_stream();
            let ctx = stream.context();
            let name = ctx.name().unwrap_or_else(|e| format!("unknown GPU ({e})"));
            format!("cuda:{} ({name})", ctx.ordinal())
        }
        other => format!("{:?}", other.location()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_cuda_indices() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!(" CPU ".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:0".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("CUDA:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        for spec in [DeviceSpec::Cpu, DeviceSpec::Cuda(0), DeviceSpec::Cuda(12)] {
            assert_eq!(spec.to_string().parse::<DeviceSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn rejects_other_values_naming_them() {
        for bad in [
            "",
            "gpu",
            "cuda:",
            "cuda:-1",
            "cuda:+1",
            "cuda:x",
            "cuda:1.5",
            "cuda0",
            "cuda:0:1",
            "metal",
            "cuda:99999999999999999999999",
        ] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(matches!(e, DeviceError::Parse { .. }), "{bad}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("--device {bad}:")), "{msg}");
            assert!(msg.contains("cuda:N"), "{msg}");
        }
    }

    #[test]
    fn the_cpu_always_opens() {
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        assert_eq!(describe(&Device::Cpu), "cpu");
        assert!(DeviceSpec::Cpu.is_cpu() && !DeviceSpec::Cuda(0).is_cpu());
    }

    #[test]
    fn a_missing_gpu_index_is_named_with_the_count() {
        assert!(check_index(DeviceSpec::Cuda(0), 0, 1).is_ok());
        let e = check_index(DeviceSpec::Cuda(2), 2, 2)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cuda:2") && e.contains("no GPU 2") && e.contains("2 CUDA device(s)"),
            "{e}"
        );
        assert!(e.contains("cuda:0 to cuda:1"), "{e}");
        let e = check_index(DeviceSpec::Cuda(0), 0, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("0 CUDA device(s)") && !e.contains("use cuda:"),
            "{e}"
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_build_it() {
        assert!(!cuda_compiled());
        let e = DeviceSpec::Cuda(1).open().unwrap_err();
        assert!(matches!(e, DeviceError::NotCompiled { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("cuda:1") && msg.contains("without CUDA") && msg.contains("build-cuda.sh"),
            "{msg}"
        );
    }
}
