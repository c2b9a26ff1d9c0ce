//! Choosing where a run computes: one `--backend` flag shared by every example.

use burn::tensor::wgpu::wgpu;
use burn::tensor::{Device, DeviceKind};
use serde::{Deserialize, Serialize};

/// The backends a run can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// A hardware GPU through wgpu when one exists, otherwise flex. Never a software adapter.
    #[default]
    Auto,
    /// burn's pure-Rust CPU backend (the CPU default).
    Flex,
    /// The ndarray CPU backend (deprecated upstream, kept for comparison).
    Ndarray,
    /// wgpu: Vulkan, Metal or DirectX, whichever the machine offers; a software adapter such as
    /// lavapipe is accepted when asked for explicitly.
    Wgpu,
    /// CUDA on the first NVIDIA GPU; needs the `cuda` cargo feature.
    Cuda,
}

/// Why a backend could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "--backend wgpu: no wgpu adapter was found on this machine (no Vulkan, Metal or DirectX \
         driver). Install a driver (for a CPU-only machine, Debian's `mesa-vulkan-drivers` gives \
         the lavapipe software adapter) or choose another backend: {alternatives}"
    )]
    NoWgpuAdapter { alternatives: String },
    #[error(
        "--backend cuda: this build has no CUDA support. Rebuild with `--features cuda` \
         (needs the CUDA toolkit) or choose another backend: {alternatives}"
    )]
    CudaNotBuilt { alternatives: String },
}

/// The device a run uses, and a line that says what it is.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    /// The device without autodiff; call `.autodiff()` on it to train.
    pub device: Device,
    /// Human-readable description, printed at the start of a run.
    pub description: String,
    /// The concrete backend behind `auto`.
    pub backend: BackendChoice,
}

/// A wgpu adapter as seen by the machine.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: wgpu::DeviceType,
}

impl AdapterSummary {
    /// A real GPU, as opposed to a software rasteriser (lavapipe, SwiftShader, WARP).
    pub fn is_hardware(&self) -> bool {
        matches!(
            self.device_type,
            wgpu::DeviceType::DiscreteGpu
                | wgpu::DeviceType::IntegratedGpu
                | wgpu::DeviceType::VirtualGpu
        )
    }

    /// The language burn's kernels reach this adapter in: SPIR-V on a Vulkan adapter when the
    /// build has the `vulkan` feature (cubecl then takes SPIR-V for every Vulkan device with
    /// the Vulkan memory model and buffer device addresses, which every current driver has),
    /// WGSL otherwise.
    pub fn shader_language(&self) -> &'static str {
        if cfg!(feature = "vulkan") && self.backend == "Vulkan" {
            "SPIR-V"
        } else {
            "WGSL"
        }
    }
}

/// Lists the wgpu adapters of this machine without creating a device.
pub fn wgpu_adapters() -> Vec<AdapterSummary> {
    // Vulkan, Metal and DX12 only: burn's wgpu kernels need compute shaders, and probing
    // OpenGL prints EGL errors on machines without a display.
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(descriptor);
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    adapters
        .iter()
        .map(|adapter| {
            let info = adapter.get_info();
            AdapterSummary {
                name: info.name,
                backend: format!("{:?}", info.backend),
                device_type: info.device_type,
            }
        })
        .collect()
}

fn alternatives_to(refused: BackendChoice) -> String {
    let mut names = vec!["auto", "flex", "ndarray", "wgpu"];
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    let refused = format!("{refused:?}").to_lowercase();
    names.retain(|name| *name != refused);
    names.join(", ")
}

/// Resolves a backend choice to a device, or says why it cannot be had.
pub fn select_device(choice: BackendChoice) -> Result<SelectedDevice, BackendError> {
    match choice {
        BackendChoice::Auto => {
            let hardware = wgpu_adapters()
                .into_iter()
                .find(AdapterSummary::is_hardware);
            match hardware {
                Some(adapter) => Ok(wgpu_device(&adapter)),
                None => Ok(flex_device("no hardware GPU found")),
            }
        }
        BackendChoice::Flex => Ok(flex_device("")),
        BackendChoice::Ndarray => {
            #[allow(deprecated)] // ndarray stays available for comparisons
            let device = Device::ndarray();
            Ok(SelectedDevice {
                device,
                description: "ndarray (CPU)".into(),
                backend: BackendChoice::Ndarray,
            })
        }
        BackendChoice::Wgpu => {
            let adapters = wgpu_adapters();
            // Prefer a hardware GPU; take a software adapter only when it is all there is.
            let adapter = adapters
                .iter()
                .find(|a| a.is_hardware())
                .or_else(|| adapters.first())
                .ok_or_else(|| BackendError::NoWgpuAdapter {
                    alternatives: alternatives_to(BackendChoice::Wgpu),
                })?;
            Ok(wgpu_device(adapter))
        }
        BackendChoice::Cuda => cuda_device(),
    }
}

fn flex_device(reason: &str) -> SelectedDevice {
    let description = if reason.is_empty() {
        "flex (CPU)".to_string()
    } else {
        format!("flex (CPU; {reason})")
    };
    SelectedDevice {
        device: Device::flex(),
        description,
        backend: BackendChoice::Flex,
    }
}

fn wgpu_device(adapter: &AdapterSummary) -> SelectedDevice {
    let kind = match adapter.device_type {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(0),
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(0),
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(0),
        wgpu::DeviceType::Cpu => DeviceKind::Cpu,
        wgpu::DeviceType::Other => DeviceKind::DefaultDevice,
    };
    let software = if adapter.is_hardware() {
        ""
    } else {
        ", software adapter: slow"
    };
    SelectedDevice {
        device: Device::wgpu(kind),
        description: format!(
            "wgpu ({} via {}, {} kernels{software})",
            adapter.name,
            adapter.backend,
            adapter.shader_language()
        ),
        backend: BackendChoice::Wgpu,
    }
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<SelectedDevice, BackendError> {
    Ok(SelectedDevice {
        device: Device::cuda(0),
        description: "cuda (GPU 0)".into(),
        backend: BackendChoice::Cuda,
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<SelectedDevice, BackendError> {
    Err(BackendError::CudaNotBuilt {
        alternatives: alternatives_to(BackendChoice::Cuda),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_backends_are_always_available() {
        assert!(
            select_device(BackendChoice::Flex)
                .unwrap()
                .description
                .starts_with("flex")
        );
        assert!(
            select_device(BackendChoice::Ndarray)
                .unwrap()
                .description
                .starts_with("ndarray")
        );
    }

    #[test]
    fn auto_never_picks_a_software_adapter() {
        let selected = select_device(BackendChoice::Auto).unwrap();
        let has_hardware = wgpu_adapters().iter().any(AdapterSummary::is_hardware);
        assert_eq!(selected.backend == BackendChoice::Wgpu, has_hardware);
    }

    #[test]
    fn only_vulkan_adapters_of_a_vulkan_build_take_spirv() {
        let adapter = |backend: &str| AdapterSummary {
            name: "test".into(),
            backend: backend.into(),
            device_type: wgpu::DeviceType::DiscreteGpu,
        };
        assert_eq!(adapter("Metal").shader_language(), "WGSL");
        assert_eq!(adapter("Dx12").shader_language(), "WGSL");
        let vulkan = if cfg!(feature = "vulkan") {
            "SPIR-V"
        } else {
            "WGSL"
        };
        assert_eq!(adapter("Vulkan").shader_language(), vulkan);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_names_the_alternatives() {
        let message = select_device(BackendChoice::Cuda).unwrap_err().to_string();
        assert!(message.contains("--features cuda"), "{message}");
        assert!(message.contains("flex, ndarray, wgpu"), "{message}");
    }
}
