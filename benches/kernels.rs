//! Each kernel of `genmodels-kernels` against burn's own op and PyTorch's, at the shapes of the
//! project's networks (batch 128), on the CPU (flex against PyTorch CPU) or on a GPU (wgpu
//! against PyTorch CUDA).
//!
//! ```text
//! cargo bench --profile dev --bench kernels -- [--backend flex|wgpu] [--runs 5] [--warmup 2]
//!                                              [--python PATH] [--filter conv]
//! ```
//!
//! A measurement is the forward pass and the backward pass of `L = Σ y · r` (every input
//! requiring a gradient) with autodiff, the median of `--runs` runs after `--warmup`, the
//! device synchronised before the clock stops. `benches/pytorch_ops.py` times the same
//! functions in PyTorch. GFLOP/s counts the three GEMM-shaped passes of a convolution (forward,
//! input gradient, weight gradient: 2 · batch · out_channels · patch · pixels flops each).

/// The examples' global allocator, so that the timings are those of the examples.
#[path = "../examples/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use clap::Parser;
use genmodels_kernels::Activation;

#[derive(Parser)]
#[command(about = "Time each genmodels kernel against burn's op and PyTorch's")]
struct Cli {
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Python interpreter with `torch` [default: $GENMODELS_PYTHON, else python3].
    #[arg(long)]
    python: Option<PathBuf>,
    /// Only the cases whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Where to run: flex (beside PyTorch on the CPU) or wgpu's default adapter (beside
    /// PyTorch CUDA).
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Flex,
    Wgpu,
}

#[derive(Clone, Copy)]
enum Op {
    /// Convolution: input dims, out channels, kernel, stride, padding.
    Conv([usize; 4], usize, usize, usize, usize),
    /// Transposed convolution: input dims, out channels, kernel, stride, padding.
    ConvTranspose([usize; 4], usize, usize, usize, usize),
    /// BatchNorm in training mode then an activation, on `[batch, features]`.
    Norm2([usize; 2], Activation),
    /// The same on `[batch, channels, h, w]`.
    Norm4([usize; 4], Activation),
    /// GroupNorm (the groups given) then an activation, on `[batch, channels, h, w]`.
    Group([usize; 4], usize, Activation),
    /// A linear layer without bias: `[rows, d_in]`, d_out.
    Linear([usize; 2], usize),
}

struct Case {
    name: &'static str,
    op: Op,
}

impl Case {
    /// The case as `benches/pytorch_ops.py` reads it.
    fn pytorch_spec(&self) -> String {
        let dims = |d: &[usize]| {
            d.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("x")
        };
        let act = |a: Activation| match a {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::LeakyRelu(_) => "leaky_relu",
            Activation::Silu => "silu",
            Activation::Tanh => "tanh",
        };
        match self.op {
            Op::Conv(d, o, k, s, p) => format!("conv2d:{}:{o}:{k}:{s}:{p}", dims(&d)),
            Op::ConvTranspose(d, o, k, s, p) => {
                format!("conv_transpose2d:{}:{o}:{k}:{s}:{p}", dims(&d))
            }
            Op::Norm2(d, a) => format!("batch_norm:{}:{}", dims(&d), act(a)),
            Op::Norm4(d, a) => format!("batch_norm:{}:{}", dims(&d), act(a)),
            Op::Group(d, g, a) => format!("group_norm:{}:{g}:{}", dims(&d), act(a)),
            Op::Linear(d, o) => format!("linear:{}:{o}", dims(&d)),
        }
    }

    /// Flops of the three GEMM passes, for convolutions and linear layers.
    fn flops(&self) -> Option<f64> {
        match self.op {
            Op::Conv([n, c, h, w], o, k, s, p) => {
                let out = |side: usize| (side + 2 * p - k) / s + 1;
                Some(3.0 * 2.0 * (n * o * c * k * k * out(h) * out(w)) as f64)
            }
            Op::ConvTranspose([n, c, h, w], o, k, _, _) => {
                Some(3.0 * 2.0 * (n * c * o * k * k * h * w) as f64)
            }
            Op::Linear([rows, d_in], d_out) => Some(3.0 * 2.0 * (rows * d_in * d_out) as f64),
            _ => None,
        }
    }
}

// A table, one case a line.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let relu = Activation::Relu;
    let leaky = Activation::LeakyRelu(0.2);
    let silu = Activation::Silu;
    [
        ("DCGAN D conv 1->64, 28->14", Op::Conv([128, 1, 28, 28], 64, 4, 2, 1)),
        ("DCGAN D conv 64->128, 14->7", Op::Conv([128, 64, 14, 14], 128, 4, 2, 1)),
        ("DCGAN G convT 256->128, 7->14", Op::ConvTranspose([128, 256, 7, 7], 128, 4, 2, 1)),
        ("DCGAN G convT 128->1, 14->28", Op::ConvTranspose([128, 128, 14, 14], 1, 4, 2, 1)),
        ("U-Net conv3x3 64->64 at 28", Op::Conv([128, 64, 28, 28], 64, 3, 1, 1)),
        ("U-Net small conv3x3 32->32 at 28", Op::Conv([128, 32, 28, 28], 32, 3, 1, 1)),
        ("U-Net small conv3x3 64->32 at 28", Op::Conv([128, 64, 28, 28], 32, 3, 1, 1)),
        ("U-Net conv3x3 128->128 at 14", Op::Conv([128, 128, 14, 14], 128, 3, 1, 1)),
        ("U-Net conv3x3 64->64 at 14", Op::Conv([128, 64, 14, 14], 64, 3, 1, 1)),
        ("U-Net conv3x3 128->128 at 7", Op::Conv([128, 128, 7, 7], 128, 3, 1, 1)),
        ("U-Net conv3x3 64->64 at 7", Op::Conv([128, 64, 7, 7], 64, 3, 1, 1)),
        ("DCGAN G BatchNorm+ReLU [128, 12544]", Op::Norm2([128, 12544], relu)),
        ("DCGAN G BatchNorm2d+ReLU 128x14x14", Op::Norm4([128, 128, 14, 14], relu)),
        ("DCGAN D BatchNorm2d+LeakyReLU 128x7x7", Op::Norm4([128, 128, 7, 7], leaky)),
        ("U-Net GroupNorm(8)+SiLU 128x64x28x28", Op::Group([128, 64, 28, 28], 8, silu)),
        ("U-Net GroupNorm(8)+SiLU 128x128x14x14", Op::Group([128, 128, 14, 14], 8, silu)),
        ("VAE linear 3136->256", Op::Linear([128, 3136], 256)),
        ("VAE linear 256->3136", Op::Linear([128, 256], 3136)),
        ("DCGAN G linear 100->12544", Op::Linear([128, 100], 12544)),
        ("U-Net attention qkv 128->384 at 7x7", Op::Linear([128 * 49, 128], 384)),
    ]
    .into_iter()
    .map(|(name, op)| Case { name, op })
    .collect()
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// The inputs of one case, drawn once before the clock starts: `x`, the weight of a
/// convolution, and the `r` of `L = Σ y · r`.
struct Inputs {
    x: Tensor<4>,
    weight: Option<Tensor<4>>,
    r: Tensor<4>,
}

fn inputs(op: Op, device: &Device) -> Inputs {
    let (x, weight, out) = match op {
        Op::Conv(d, o, k, s, p) => {
            let out = |side: usize| (side + 2 * p - k) / s + 1;
            (d, Some([o, d[1], k, k]), [d[0], o, out(d[2]), out(d[3])])
        }
        Op::ConvTranspose(d, o, k, s, p) => {
            let out = |side: usize| (side - 1) * s + k - 2 * p;
            (d, Some([d[1], o, k, k]), [d[0], o, out(d[2]), out(d[3])])
        }
        Op::Norm2([n, c], _) => ([n, c, 1, 1], None, [n, c, 1, 1]),
        Op::Norm4(d, _) | Op::Group(d, ..) => (d, None, d),
        Op::Linear([rows, d_in], d_out) => (
            [rows, d_in, 1, 1],
            Some([d_in, d_out, 1, 1]),
            [rows, d_out, 1, 1],
        ),
    };
    Inputs {
        x: random(x, device),
        weight: weight.map(|w| random(w, device)),
        r: random(out, device),
    }
}

/// One forward + backward of the case, through the kernels (`ours`) or burn's ops.
fn run_once(op: Op, inputs: &Inputs, ours: bool) {
    let x = inputs.x.clone().require_grad();
    let device = x.device();
    let weight = inputs.weight.clone().map(Tensor::require_grad);
    let y = match (op, weight) {
        (Op::Conv(_, _, _, s, p), Some(w)) => match ours {
            true => genmodels_kernels::conv2d(x, w, None, conv_options(s, p)),
            false => burn::tensor::module::conv2d(x, w, None, conv_options(s, p)),
        },
        (Op::ConvTranspose(_, _, _, s, p), Some(w)) => match ours {
            true => genmodels_kernels::conv_transpose2d(x, w, None, transposed_options(s, p)),
            false => burn::tensor::module::conv_transpose2d(x, w, None, transposed_options(s, p)),
        },
        (Op::Norm2(_, a) | Op::Norm4(_, a), _) => batch_norm(x, a, ours),
        (Op::Group(_, groups, a), _) => group_norm(x, groups, a, ours),
        (Op::Linear([rows, d_in], d_out), Some(w)) => {
            let (x, w) = (x.reshape([rows, d_in]), w.reshape([d_in, d_out]));
            let y = match ours {
                true => genmodels_kernels::linear(x, w, None),
                false => burn::tensor::module::linear(x, w, None),
            };
            y.reshape([rows, d_out, 1, 1])
        }
        _ => unreachable!("convolutions and linear layers have weights"),
    };
    drop((y * inputs.r.clone()).sum().backward());
    device.sync().expect("device sync");
}

fn batch_norm(x: Tensor<4>, activation: Activation, ours: bool) -> Tensor<4> {
    let device = x.device();
    let channels = x.dims()[1];
    let gamma = Tensor::<1>::ones([channels], &device).require_grad();
    let beta = Tensor::<1>::zeros([channels], &device).require_grad();
    if ours {
        return genmodels_kernels::batch_norm_train(x, gamma, beta, 1e-5, activation).output;
    }
    let y = burn::tensor::module::batch_norm_train(x, gamma, beta, 1e-5).output;
    match activation {
        Activation::Identity => y,
        Activation::Relu => burn::tensor::activation::relu(y),
        Activation::LeakyRelu(s) => burn::tensor::activation::leaky_relu(y, s),
        Activation::Silu => burn::tensor::activation::silu(y),
        Activation::Tanh => burn::tensor::activation::tanh(y),
    }
}

fn group_norm(x: Tensor<4>, groups: usize, activation: Activation, ours: bool) -> Tensor<4> {
    let device = x.device();
    let channels = x.dims()[1];
    let norm = burn::nn::GroupNormConfig::new(groups, channels).init(&device);
    if ours {
        return genmodels_kernels::nn::group_norm(&norm, x, activation);
    }
    let y = norm.forward(x);
    match activation {
        Activation::Silu => burn::tensor::activation::silu(y),
        _ => y,
    }
}

fn conv_options(stride: usize, padding: usize) -> ConvOptions<2> {
    ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1)
}

fn transposed_options(stride: usize, padding: usize) -> ConvTransposeOptions<2> {
    ConvTransposeOptions::new([stride; 2], [padding; 2], [0, 0], [1, 1], 1)
}

fn median_seconds(cli: &Cli, mut f: impl FnMut()) -> f64 {
    for _ in 0..cli.warmup {
        f();
    }
    let mut times: Vec<f64> = (0..cli.runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// PyTorch's median seconds per case, or `None` when torch is not there.
fn pytorch(cli: &Cli, cases: &[Case]) -> Result<Option<Vec<f64>>> {
    let python = cli
        .python
        .clone()
        .or_else(|| std::env::var_os("GENMODELS_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/pytorch_ops.py");
    let output = Command::new(&python)
        .arg(script)
        .args([
            "--runs",
            &cli.runs.to_string(),
            "--warmup",
            &cli.warmup.to_string(),
            "--device",
            match cli.backend {
                Backend::Flex => "cpu",
                Backend::Wgpu => "cuda",
            },
        ])
        .arg("--cases")
        .args(cases.iter().map(Case::pytorch_spec))
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !output.status.success() {
        eprintln!(
            "PyTorch half skipped ({}): {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return Ok(None);
    }
    let medians = String::from_utf8(output.stdout)?
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line)?;
            row["median_s"].as_f64().context("median_s")
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(Some(medians))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| {
            cli.filter
                .as_ref()
                .is_none_or(|f| c.name.contains(f.as_str()))
        })
        .collect();
    let (device, name) = match cli.backend {
        Backend::Flex => (Device::flex(), "flex"),
        Backend::Wgpu => (Device::wgpu(DeviceKind::DefaultDevice), "wgpu"),
    };
    let device = device.autodiff();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{cpu}, {threads} threads; forward + backward, median of {} runs\n",
        cli.runs
    );
    let mut rows = Vec::new();
    for case in &cases {
        let inputs = inputs(case.op, &device);
        let burn_s = median_seconds(&cli, || run_once(case.op, &inputs, false));
        let ours_s = median_seconds(&cli, || run_once(case.op, &inputs, true));
        rows.push((burn_s, ours_s));
    }
    let torch = pytorch(&cli, &cases)?;
    println!(
        "| op | burn {name} ms | genmodels-kernels ms | PyTorch ms | kernels / burn speed | kernels / PyTorch speed | kernels GFLOP/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (i, (case, (burn_s, ours_s))) in cases.iter().zip(&rows).enumerate() {
        let torch_s = torch.as_ref().map(|t| t[i]);
        let cell = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or(String::new(), f);
        println!(
            "| {} | {:.2} | {:.2} | {} | {:.2}x | {} | {} |",
            case.name,
            burn_s * 1e3,
            ours_s * 1e3,
            cell(torch_s, &|t| format!("{:.2}", t * 1e3)),
            burn_s / ours_s,
            cell(torch_s, &|t| format!("{:.2}x", t / ours_s)),
            cell(case.flops(), &|f| format!("{:.1}", f / ours_s / 1e9)),
        );
    }
    Ok(())
}
