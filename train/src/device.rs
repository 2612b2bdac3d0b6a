//! Device selection: `--device cpu|cuda|cuda:N|auto`; and [`set_tf32`], the TF32 switch for
//! float32 matmuls on CUDA.

use std::fmt;
use std::str::FromStr;

use tch::Device;

/// A device as the user names it on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// CUDA device 0 when available, else CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA device by index.
    Cuda(usize),
}

/// A device name that is not `cpu`, `cuda`, `cuda:N` or `auto`, or a CUDA device that is absent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Unparseable name.
    #[error("unknown device {0:?}: expected cpu, cuda, cuda:N or auto")]
    Unknown(String),
    /// CUDA asked for but not usable.
    #[error("device cuda:{index} requested but {available} CUDA device(s) are available")]
    Unavailable {
        /// Requested index.
        index: usize,
        /// Devices libtorch sees.
        available: usize,
    },
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| DeviceError::Unknown(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceSpec {
    /// Resolves to a libtorch device, checking that a requested CUDA device exists.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        let available = if tch::Cuda::is_available() {
            tch::Cuda::device_count().max(0) as usize
        } else {
            0
        };
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Auto if available > 0 => Ok(Device::Cuda(0)),
            DeviceSpec::Auto => Ok(Device::Cpu),
            DeviceSpec::Cuda(index) if index < available => Ok(Device::Cuda(index)),
            DeviceSpec::Cuda(index) => Err(DeviceError::Unavailable { index, available }),
        }
    }
}

/// Lets CUDA float32 matmuls and convolutions use TF32 tensor cores (PyTorch's
/// `torch.backends.cuda.matmul.allow_tf32` and `torch.backends.cudnn.allow_tf32`): about 8× the
/// fp32 throughput of an A100/H100 with a 10-bit mantissa in the products, accumulation in fp32.
/// A process-wide libtorch setting; no effect on the CPU or on bf16 matmuls.
pub fn set_tf32(on: bool) -> Result<(), String> {
    #[allow(unsafe_code)]
    mod sys {
        unsafe extern "C" {
            pub(crate) fn fs_torch_set_tf32(on: std::ffi::c_int) -> std::ffi::c_int;
        }
        pub(crate) fn set(on: bool) -> bool {
            // SAFETY: sets two flags of libtorch's global context; catches every exception.
            unsafe { fs_torch_set_tf32(std::ffi::c_int::from(on)) == 0 }
        }
    }
    if sys::set(on) {
        Ok(())
    } else {
        Err(format!(
            "libtorch refused to turn TF32 {}",
            if on { "on" } else { "off" }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert_eq!(DeviceSpec::Cpu.resolve().unwrap(), Device::Cpu);
    }

    #[test]
    fn tf32_can_be_switched() {
        set_tf32(true).unwrap();
        set_tf32(false).unwrap();
    }
}
