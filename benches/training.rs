//! GPU against CPU: one training iteration, generation and DDPM/DDIM sampling of every network in
//! the project, on every backend asked for, side by side with the same networks in PyTorch.
//!
//! ```text
//! cargo bench --bench training                                   # flex (+ a hardware GPU)
//! cargo bench --bench training -- --backends flex,ndarray,wgpu --models dcgan,vae
//! cargo bench --bench training -- --python /path/to/venv/bin/python3
//! cargo bench --bench training --features vulkan -- --backends wgpu   # SPIR-V kernels on Vulkan
//! ```
//!
//! Every measurement runs in a fresh child process (this binary with `--case`), so the peak
//! resident set it reports belongs to that measurement alone and one backend's pools cannot slow
//! the next. Each figure is the median of `--runs` timed repetitions after `--warmup` untimed
//! ones, the device synchronised before the clock stops. Writes `results.json` (raw figures and
//! the machine), `results.md` (the table) and `images_per_s.png` into `--out`, again after every
//! row, so that a run stopped by a time limit keeps what it measured.

/// The examples' global allocator, so that the timings are those of the examples.
#[path = "../examples/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::Distribution;
use clap::{Parser, ValueEnum};
use genmodels::diffusion::{
    AnySampler, NoiseSchedule, Sampler, SamplerKind, SamplingSettings, UNet, timesteps_tensor,
};
use genmodels_train::backend::{BackendChoice, select_device, wgpu_adapters};
use genmodels_train::cli::{DiffusionArgs, SamplerArg};
use genmodels_train::dcgan::{Dcgan, DcganArgs, DcganSettings, GeneratorLossArg};
use genmodels_train::ddpm::{Ddpm, DdpmArgs, DdpmSettings, Preset};
use genmodels_train::vae::{AnalysisFlags, ModelKind, Trainer as VaeTrainer, VaeArgs, VaeSettings};
use genmodels_train::{CommonArgs, fsutil::write_atomic};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "Benchmark the genmodels networks on each backend, and against PyTorch")]
struct Cli {
    /// Backends to measure [default: flex, and wgpu when a hardware GPU is found].
    #[arg(long, value_delimiter = ',')]
    backends: Vec<BackendChoice>,
    /// Networks to measure.
    #[arg(long, value_delimiter = ',', default_values = ["dcgan", "vae", "unet-small", "unet-full"])]
    models: Vec<Model>,
    /// Batch sizes of the training and generation measurements.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 128])]
    batches: Vec<usize>,
    /// Images drawn by each DDPM-1000 / DDIM-50 sampling measurement.
    #[arg(long, default_value_t = 64)]
    sample_images: usize,
    /// Timed repetitions per measurement (fewer when --max-seconds runs out; at least one).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Untimed repetitions before the clock starts.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Stop repeating a measurement after this many seconds of timed runs.
    #[arg(long, default_value_t = 30.0)]
    max_seconds: f64,
    /// Reverse steps actually run by a sampling measurement; the total is then the measured
    /// median step time times the sampler's steps, marked "extrapolated" (0: run every step).
    #[arg(long, default_value_t = 0)]
    max_sampling_steps: usize,
    /// Python interpreter with `torch` [default: $GENMODELS_PYTHON, else python3].
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip the PyTorch comparison.
    #[arg(long)]
    no_pytorch: bool,
    /// Where the results go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Internal: run one measurement ("backend:model:workload:batch") and print it as JSON.
    #[arg(long, hide = true)]
    case: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Model {
    Dcgan,
    Vae,
    UnetSmall,
    UnetFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Workload {
    /// Forward, backward and optimizer step (for DCGAN one D and one G step).
    Train,
    /// The generator / decoder alone, no gradients.
    Generate,
    /// DDPM ancestral sampling, 1000 steps.
    Ddpm1000,
    /// DDIM (eta 0) sampling, 50 steps.
    Ddim50,
}

/// One measurement to make.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Case {
    backend: BackendChoice,
    model: Model,
    workload: Workload,
    batch: usize,
}

/// The times of one case's runs, and the memory the process held: what both halves of the
/// benchmark report.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Timing {
    median_s: f64,
    min_s: f64,
    max_s: f64,
    runs: usize,
    images_per_s: f64,
    /// Peak resident set of the process (CPU backends) in MiB.
    peak_rss_mib: f64,
}

/// What one measurement found.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measurement {
    #[serde(flatten)]
    timing: Timing,
    /// Peak bytes the backend's allocator reserved (GPU backends) in MiB.
    device_reserved_mib: Option<f64>,
    /// The time is `steps_run` measured steps scaled to the sampler's full step count.
    extrapolated: bool,
    device: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    case: Case,
    genmodels: Option<Measurement>,
    error: Option<String>,
    pytorch: Option<PytorchMeasurement>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PytorchMeasurement {
    #[serde(flatten)]
    timing: Timing,
    torch: String,
    threads: usize,
    /// "cpu", or the CUDA device's name.
    #[serde(default)]
    device: String,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    gpu_adapters: Vec<String>,
    os: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.case {
        Some(case) => parse_case(case).and_then(|case| {
            let measurement = measure(case, &cli)?;
            println!("{}", serde_json::to_string(&measurement)?);
            Ok(())
        }),
        None => run_all(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

// --- the driver --------------------------------------------------------------------------------

fn run_all(cli: &Cli) -> Result<()> {
    let backends = if cli.backends.is_empty() {
        let mut default = vec![BackendChoice::Flex];
        if wgpu_adapters().iter().any(|a| a.is_hardware()) {
            default.push(BackendChoice::Wgpu);
        }
        default
    } else {
        cli.backends.clone()
    };
    let cases = cases(&backends, &cli.models, &cli.batches, cli.sample_images);
    let python = cli
        .python
        .clone()
        .or_else(|| std::env::var_os("GENMODELS_PYTHON").map(PathBuf::from));
    let python = python.unwrap_or_else(|| PathBuf::from("python3"));
    let torch = !cli.no_pytorch && has_torch(&python);
    if !cli.no_pytorch && !torch {
        println!(
            "PyTorch comparison skipped: `{}` cannot import torch",
            python.display()
        );
    }

    let machine = machine();
    let mut rows = Vec::new();
    for case in cases {
        print!(
            "{:>8} {:>10} {:>9} batch {:>3} ... ",
            backend_name(case.backend),
            name(case.model),
            workload_name(case.workload),
            case.batch
        );
        let (genmodels, error) = match measure_in_child(case, cli) {
            Ok(m) => {
                println!(
                    "{:>10.1} ms  {:>8.1} img/s",
                    m.timing.median_s * 1e3,
                    m.timing.images_per_s
                );
                (Some(m), None)
            }
            Err(e) => {
                println!("failed: {e:#}");
                (None, Some(format!("{e:#}")))
            }
        };
        rows.push(Row {
            case,
            genmodels,
            error,
            pytorch: None,
        });
        save(cli, &machine, &rows)?;
    }
    if torch {
        // PyTorch runs on the kind of device the row's backend runs on: its CPU build beside
        // flex and ndarray, CUDA beside wgpu and cuda.
        let mut done: Vec<(
            Model,
            Workload,
            usize,
            TorchDevice,
            Option<PytorchMeasurement>,
        )> = Vec::new();
        for index in 0..rows.len() {
            let case = rows[index].case;
            let key = (
                case.model,
                case.workload,
                case.batch,
                TorchDevice::for_backend(case.backend),
            );
            let found = done
                .iter()
                .find(|d| (d.0, d.1, d.2, d.3) == key)
                .map(|d| d.4.clone());
            rows[index].pytorch = match found {
                Some(measurement) => measurement,
                None => {
                    let label = format!("torch-{}", key.3.name());
                    print!(
                        "{label:>8} {:>10} {:>9} batch {:>3} ... ",
                        name(key.0),
                        workload_name(key.1),
                        key.2
                    );
                    let measurement = measure_pytorch(&python, case, key.3, cli);
                    match &measurement {
                        Ok(m) => println!(
                            "{:>10.1} ms  {:>8.1} img/s",
                            m.timing.median_s * 1e3,
                            m.timing.images_per_s
                        ),
                        Err(e) => println!("failed: {e:#}"),
                    }
                    let measurement = measurement.ok();
                    done.push((key.0, key.1, key.2, key.3, measurement.clone()));
                    measurement
                }
            };
            save(cli, &machine, &rows)?;
        }
    }

    let table = save(cli, &machine, &rows)?;
    println!("\n{table}");
    println!(
        "written: {0}/results.json, {0}/results.md, {0}/images_per_s.png",
        cli.out.display()
    );
    Ok(())
}

/// Writes `results.json`, `results.md` and the plot for the rows measured so far, so that a run
/// cut short by a time limit keeps them; returns the table.
fn save(cli: &Cli, machine: &Machine, rows: &[Row]) -> Result<String> {
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    let command: Vec<String> = std::env::args().collect();
    let json =
        serde_json::json!({ "machine": machine, "command": command.join(" "), "rows": rows });
    write_atomic(
        &cli.out.join("results.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    let table = markdown_table(rows, machine);
    write_atomic(&cli.out.join("results.md"), table.as_bytes())?;
    plot(rows, &cli.out.join("images_per_s.png"))?;
    Ok(table)
}

fn cases(
    backends: &[BackendChoice],
    models: &[Model],
    batches: &[usize],
    sample_images: usize,
) -> Vec<Case> {
    let mut cases = Vec::new();
    for &model in models {
        let mut workloads = vec![(Workload::Train, batches.to_vec())];
        match model {
            Model::Dcgan | Model::Vae => workloads.push((Workload::Generate, batches.to_vec())),
            Model::UnetSmall | Model::UnetFull => {
                workloads.push((Workload::Ddim50, vec![sample_images]));
                workloads.push((Workload::Ddpm1000, vec![sample_images]));
            }
        }
        for (workload, batches) in workloads {
            for batch in batches {
                for &backend in backends {
                    cases.push(Case {
                        backend,
                        model,
                        workload,
                        batch,
                    });
                }
            }
        }
    }
    cases
}

fn measure_in_child(case: Case, cli: &Cli) -> Result<Measurement> {
    let exe = std::env::current_exe()?;
    let output = Command::new(exe)
        .args(["--case", &case_string(case)])
        .args([
            "--runs",
            &cli.runs.to_string(),
            "--warmup",
            &cli.warmup.to_string(),
        ])
        .args(["--max-seconds", &cli.max_seconds.to_string()])
        .args(["--max-sampling-steps", &cli.max_sampling_steps.to_string()])
        .output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last_line = stderr.lines().last().unwrap_or("the measurement failed");
        #[cfg(unix)]
        let signal = std::os::unix::process::ExitStatusExt::signal(&output.status);
        #[cfg(not(unix))]
        let signal: Option<i32> = None;
        match signal {
            // A crash (in a GPU driver, say) leaves no message of its own on stderr.
            Some(signal) => bail!("killed by signal {signal}; last line on stderr: {last_line}"),
            None => bail!("{last_line}"),
        }
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .context("the measurement printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

fn has_torch(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Where the PyTorch side of a row runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TorchDevice {
    Cpu,
    Cuda,
}

impl TorchDevice {
    fn for_backend(backend: BackendChoice) -> Self {
        match backend {
            BackendChoice::Wgpu | BackendChoice::Cuda => Self::Cuda,
            BackendChoice::Auto | BackendChoice::Flex | BackendChoice::Ndarray => Self::Cpu,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
}

fn measure_pytorch(
    python: &Path,
    case: Case,
    device: TorchDevice,
    cli: &Cli,
) -> Result<PytorchMeasurement> {
    // The checkout's copy when run from its root, else the one this binary was built from.
    let script = Some(PathBuf::from("benches/pytorch_reference.py"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pytorch_reference.py")
        });
    let spec = format!(
        "{}:{}:{}",
        name(case.model),
        workload_name(case.workload),
        case.batch
    );
    let output = Command::new(python)
        .arg(&script)
        .args([
            "--cases",
            &spec,
            "--runs",
            &cli.runs.to_string(),
            "--warmup",
            &cli.warmup.to_string(),
        ])
        .args(["--device", device.name()])
        .args(["--max-seconds", &cli.max_seconds.to_string()])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "{}",
            stderr
                .lines()
                .last()
                .unwrap_or("pytorch_reference.py failed")
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(serde_json::from_str(
        stdout.lines().last().context("no output")?,
    )?)
}

// --- one measurement, in the child process -------------------------------------------------------

fn measure(case: Case, cli: &Cli) -> Result<Measurement> {
    let selected = select_device(case.backend)?;
    let device = selected.device.clone();
    device.seed(0);
    let batch = case.batch;
    let common = CommonArgs {
        batch_size: batch,
        ..CommonArgs::default()
    };

    let mut peak_reserved = 0u64;
    let mut extrapolated = false;
    let mut timed = |iteration: &mut dyn FnMut() -> Result<()>| -> Result<Vec<f64>> {
        for _ in 0..cli.warmup {
            iteration()?;
        }
        let mut times = Vec::new();
        let started = Instant::now();
        while times.is_empty()
            || (times.len() < cli.runs && started.elapsed().as_secs_f64() < cli.max_seconds)
        {
            let t0 = Instant::now();
            iteration()?;
            device.sync()?;
            times.push(t0.elapsed().as_secs_f64());
            if let Some(usage) = device.memory_pool_usage() {
                peak_reserved = peak_reserved.max(usage.bytes_reserved);
            }
        }
        Ok(times)
    };

    let train_device = device.clone().autodiff();
    // A batch of uniform noise images in [low, 1] on the training device.
    let images = |low: f64| {
        let range = Distribution::Uniform(low, 1.0);
        Tensor::<4>::random([batch, 1, 28, 28], range, &train_device)
    };
    let times = match (case.model, case.workload) {
        (Model::Dcgan, Workload::Train) => {
            let mut gan = Dcgan::new(&dcgan_settings(common), &train_device);
            let real = images(-1.0);
            timed(&mut || done(gan.step(real.clone())))?
        }
        (Model::Dcgan, Workload::Generate) => {
            let generator = dcgan_settings(common).generator.init(&device);
            timed(&mut || done(generator.forward(generator.sample_latent(batch, &device))))?
        }
        (Model::Vae, Workload::Train) => {
            let mut trainer = VaeTrainer::new(&vae_settings(common), &train_device);
            let real = images(0.0);
            timed(&mut || done(trainer.step(real.clone(), 1.0)))?
        }
        (Model::Vae, Workload::Generate) => {
            let vae = vae_settings(common).vae.init(&device);
            timed(&mut || done(vae.decoder.decode(vae.sample_prior(batch, &device))))?
        }
        (Model::UnetSmall | Model::UnetFull, Workload::Train) => {
            let mut ddpm = Ddpm::new(&ddpm_settings(case.model, common), &train_device)?;
            let x0 = images(-1.0);
            let mut step = 0;
            timed(&mut || {
                step += 1;
                done(ddpm.step(x0.clone(), None, step))
            })?
        }
        (Model::UnetSmall | Model::UnetFull, Workload::Ddpm1000 | Workload::Ddim50) => {
            let settings = ddpm_settings(case.model, common);
            let unet = settings.unet.init(&device);
            let schedule = NoiseSchedule::ddpm();
            let (steps, sampler) = match case.workload {
                Workload::Ddpm1000 => (1000, SamplerKind::Ddpm),
                _ => (50, SamplerKind::Ddim),
            };
            let limit = match cli.max_sampling_steps {
                0 => steps,
                cap => cap.min(steps),
            };
            extrapolated = limit < steps;
            let sampling = SamplingSettings {
                sampler,
                steps,
                eta: 0.0,
            };
            let mut per_run =
                timed(&mut || reverse_steps(&unet, &schedule, sampling, batch, limit, &device))?;
            for t in &mut per_run {
                *t *= steps as f64 / limit as f64;
            }
            per_run
        }
        (model, workload) => bail!(
            "{} has no {} workload",
            name(model),
            workload_name(workload)
        ),
    };

    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = median(&sorted);
    Ok(Measurement {
        timing: Timing {
            median_s: median,
            min_s: sorted[0],
            max_s: sorted[sorted.len() - 1],
            runs: sorted.len(),
            images_per_s: batch as f64 / median,
            peak_rss_mib: peak_rss_mib(),
        },
        device_reserved_mib: (peak_reserved > 0).then(|| peak_reserved as f64 / (1024.0 * 1024.0)),
        extrapolated,
        device: selected.description,
    })
}

/// What [`measure`]'s timed iterations return: their results are not needed.
fn done<T>(_result: T) -> Result<()> {
    Ok(())
}

fn dcgan_settings(common: CommonArgs) -> DcganSettings {
    DcganSettings::new(DcganArgs {
        common,
        g_loss: GeneratorLossArg::NonSaturating,
    })
}

fn vae_settings(common: CommonArgs) -> VaeSettings {
    VaeSettings::new(VaeArgs {
        common,
        model: ModelKind::Vae,
        latent_dim: 16,
        latent_channels: None,
        beta: 1.0,
        kl_warmup_epochs: 0.0,
        analysis: AnalysisFlags {
            tsne_epochs: 1,
            analysis_images: None,
        },
    })
}

fn ddpm_settings(model: Model, common: CommonArgs) -> DdpmSettings {
    let preset = if model == Model::UnetFull {
        Preset::Full
    } else {
        Preset::Small
    };
    DdpmSettings::new(DdpmArgs {
        common,
        preset,
        conditioning: Default::default(),
        sampling: DiffusionArgs {
            sampler: SamplerArg::Ddim,
            sample_steps: Some(50),
            eta: 0.0,
        },
        ema_decay: 0.999,
        final_ddpm_steps: 0,
    })
}

/// The first `limit` steps of the reverse process of `sampling` from x_T ~ N(0, I), without
/// gradients: [`genmodels::diffusion::sample`] cut short, so that a 1000-step sampler can be
/// timed on a few steps and extrapolated.
fn reverse_steps(
    unet: &UNet,
    schedule: &NoiseSchedule,
    sampling: SamplingSettings,
    count: usize,
    limit: usize,
    device: &Device,
) -> Result<()> {
    fn run(unet: &UNet, sampler: &impl Sampler, count: usize, limit: usize, device: &Device) {
        let normal =
            || Tensor::<4>::random([count, 1, 28, 28], Distribution::Normal(0.0, 1.0), device);
        let mut x = normal();
        for &t in sampler.timesteps().iter().take(limit) {
            let eps = unet.forward(x.clone(), timesteps_tensor(&vec![t; count], device));
            x = sampler.step(eps, t, x, sampler.needs_noise(t).then(normal));
        }
    }
    match sampling.build(schedule)? {
        AnySampler::Ddpm(sampler) => run(unet, &sampler, count, limit, device),
        AnySampler::Ddim(sampler) => run(unet, &sampler, count, limit, device),
    }
    Ok(())
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The process's peak resident set (`VmHWM`), in MiB; 0 where /proc is not available.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

// --- reporting -----------------------------------------------------------------------------------

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")
                .and_then(|rest| rest.split(':').nth(1))
        })
        .map_or_else(|| "unknown".to_string(), |name| name.trim().to_string());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        gpu_adapters: wgpu_adapters()
            .iter()
            .map(|a| {
                let shaders = a.shader_language();
                format!("{} ({}, {:?}, {shaders})", a.name, a.backend, a.device_type)
            })
            .collect(),
        os: std::env::consts::OS.to_string(),
    }
}

/// model x backend: ms per iteration, images/s, speed relative to the fastest CPU backend and to
/// PyTorch.
fn markdown_table(rows: &[Row], machine: &Machine) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Machine: {}, {} cores; wgpu adapters: {}\n",
        machine.cpu,
        machine.cores,
        if machine.gpu_adapters.is_empty() {
            "none".into()
        } else {
            machine.gpu_adapters.join("; ")
        }
    );
    out.push_str("| model | workload | batch | backend | ms (median [min, max], runs) | images/s | vs fastest CPU backend | peak memory MiB | PyTorch ms (CPU; CUDA beside GPU backends) | genmodels / PyTorch speed |\n");
    out.push_str("|---|---|---:|---|---|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let case = row.case;
        let Some(m) = &row.genmodels else {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | failed: {} | | | | | |",
                name(case.model),
                workload_name(case.workload),
                case.batch,
                backend_name(case.backend),
                row.error.as_deref().unwrap_or("?")
            );
            continue;
        };
        let fastest_cpu = rows
            .iter()
            .filter(|r| {
                (r.case.model, r.case.workload, r.case.batch)
                    == (case.model, case.workload, case.batch)
            })
            .filter(|r| matches!(r.case.backend, BackendChoice::Flex | BackendChoice::Ndarray))
            .filter_map(|r| r.genmodels.as_ref().map(|m| m.timing.median_s))
            .min_by(f64::total_cmp);
        let relative =
            fastest_cpu.map_or("".into(), |cpu| format!("{:.2}x", cpu / m.timing.median_s));
        let memory = m
            .device_reserved_mib
            .map_or(format!("{:.0} (RSS)", m.timing.peak_rss_mib), |gpu| {
                format!("{gpu:.0} (device)")
            });
        let (torch_ms, ratio) = match &row.pytorch {
            Some(p) => (
                format!("{:.1}", p.timing.median_s * 1e3),
                format!("{:.2}x", p.timing.median_s / m.timing.median_s),
            ),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} [{:.1}, {:.1}], {}{} | {:.1} | {} | {} | {} | {} |",
            name(case.model),
            workload_name(case.workload),
            case.batch,
            backend_name(case.backend),
            m.timing.median_s * 1e3,
            m.timing.min_s * 1e3,
            m.timing.max_s * 1e3,
            m.timing.runs,
            if m.extrapolated { ", extrapolated" } else { "" },
            m.timing.images_per_s,
            relative,
            memory,
            torch_ms,
            ratio
        );
    }
    out
}

/// Training images/s per network (largest batch), one bar per backend and PyTorch, log scale.
fn plot(rows: &[Row], path: &Path) -> Result<()> {
    let largest = rows.iter().map(|r| r.case.batch).max().unwrap_or(0);
    let train: Vec<&Row> = rows
        .iter()
        .filter(|r| r.case.workload == Workload::Train && r.case.batch == largest)
        .collect();
    let mut models: Vec<Model> = Vec::new();
    let mut series: Vec<String> = Vec::new();
    let mut bars: Vec<(usize, String, f64)> = Vec::new();
    for row in &train {
        if !models.contains(&row.case.model) {
            models.push(row.case.model);
        }
        let model = models
            .iter()
            .position(|m| *m == row.case.model)
            .expect("just added");
        if let Some(m) = &row.genmodels {
            bars.push((
                model,
                backend_name(row.case.backend).to_string(),
                m.timing.images_per_s,
            ));
        }
        if let Some(p) = &row.pytorch
            && !bars.iter().any(|b| b.0 == model && b.1 == "pytorch")
        {
            bars.push((model, "pytorch".to_string(), p.timing.images_per_s));
        }
    }
    for bar in &bars {
        if !series.contains(&bar.1) {
            series.push(bar.1.clone());
        }
    }
    if bars.is_empty() {
        return Ok(());
    }
    let top = bars.iter().map(|b| b.2).fold(1.0, f64::max) * 3.0;
    let bottom = bars
        .iter()
        .map(|b| b.2)
        .fold(f64::INFINITY, f64::min)
        .min(1.0)
        / 3.0;
    let (width, height) = (900u32, 500u32);
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Training images/s, batch {largest} (log scale)"),
                ("sans-serif", 22),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..models.len() as f64, (bottom..top).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(models.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let index = (x - 0.5).round();
                if (x - 0.5 - index).abs() < 1e-6 && index >= 0.0 {
                    models
                        .get(index as usize)
                        .map_or(String::new(), |m| name(*m).to_string())
                } else {
                    String::new()
                }
            })
            .y_desc("images/s")
            .draw()?;
        let slot = 0.8 / series.len() as f64;
        for (index, label) in series.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let rectangles: Vec<_> = bars
                .iter()
                .filter(|b| &b.1 == label)
                .map(|b| {
                    let left = b.0 as f64 + 0.1 + index as f64 * slot;
                    Rectangle::new([(left, bottom), (left + slot * 0.9, b.2)], color.filled())
                })
                .collect();
            chart
                .draw_series(rectangles)?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        root.present()?;
    }
    let image = image::RgbImage::from_raw(width, height, pixels).context("plot buffer")?;
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    write_atomic(path, &png)?;
    Ok(())
}

// --- names -------------------------------------------------------------------------------------

fn name(model: Model) -> &'static str {
    match model {
        Model::Dcgan => "dcgan",
        Model::Vae => "vae",
        Model::UnetSmall => "unet-small",
        Model::UnetFull => "unet-full",
    }
}

fn workload_name(workload: Workload) -> &'static str {
    match workload {
        Workload::Train => "train",
        Workload::Generate => "generate",
        Workload::Ddpm1000 => "ddpm1000",
        Workload::Ddim50 => "ddim50",
    }
}

fn backend_name(backend: BackendChoice) -> &'static str {
    match backend {
        BackendChoice::Auto => "auto",
        BackendChoice::Flex => "flex",
        BackendChoice::Ndarray => "ndarray",
        BackendChoice::Wgpu => "wgpu",
        BackendChoice::Cuda => "cuda",
    }
}

fn case_string(case: Case) -> String {
    format!(
        "{}:{}:{}:{}",
        backend_name(case.backend),
        name(case.model),
        workload_name(case.workload),
        case.batch
    )
}

fn parse_case(text: &str) -> Result<Case> {
    let parts: Vec<&str> = text.split(':').collect();
    let [backend, model, workload, batch] = parts[..] else {
        bail!("--case {text}: expected backend:model:workload:batch");
    };
    let parse =
        |kind: &str, value: &str| anyhow::anyhow!("--case {text}: unknown {kind} `{value}`");
    Ok(Case {
        backend: BackendChoice::from_str(backend, true).map_err(|_| parse("backend", backend))?,
        model: Model::from_str(model, true).map_err(|_| parse("model", model))?,
        workload: Workload::from_str(workload, true).map_err(|_| parse("workload", workload))?,
        batch: batch.parse().map_err(|_| parse("batch", batch))?,
    })
}
