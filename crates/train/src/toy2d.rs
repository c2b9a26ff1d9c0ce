//! The 2-D lab: three small experiments that show GAN theory on densities known in closed form,
//! fast enough for a CPU.
//!
//! 1. Optimal discriminator: the generator frozen at a Gaussian `p_g`, D trained alone on the
//!    1-D two-Gaussian mixture, compared with `D* = p_data / (p_data + p_g)`.
//! 2. Equilibrium: a GAN trained on the 1-D mixture; at the equilibrium `p_g = p_data`, so
//!    `D = 1/2` everywhere and the mean D on real and on generated samples is near 1/2.
//! 3. Mode collapse: on 8 Gaussians, a standard GAN with several discriminator steps per
//!    generator step against WGAN-GP with as many critic steps, same networks, same optimizer,
//!    same budget; scatter plots over training, modes covered and high-quality samples per seed.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};

use crate::adam::AdamConfig;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use genmodels::gan_loss::{GeneratorLoss, discriminator_loss, generator_loss};
use genmodels::toy2d::{
    EightGaussians, Gaussian, Mlp, MlpConfig, ModeCoverage, TwoGaussians, mode_coverage,
    optimal_discriminator,
};
use genmodels::wgan::{critic_loss, gradient_penalty, interpolate, wasserstein_generator_loss};
use plotters::prelude::*;
use serde::Serialize;

use crate::backend::{BackendChoice, select_device};
use crate::fsutil::write_atomic;
use crate::grid::save_plot;

/// Which experiments to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Experiment {
    All,
    OptimalD,
    Equilibrium,
    ModeCollapse,
}

/// Every setting of the lab; written into `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Toy2dSettings {
    pub out: PathBuf,
    #[serde(skip)]
    pub backend: BackendChoice,
    pub experiment: Experiment,
    /// Seeds of the mode-collapse comparison (the 1-D experiments use the first).
    pub seeds: Vec<u64>,
    /// Discriminator steps with the generator frozen (experiment 1).
    pub optimal_d_steps: usize,
    /// GAN steps on the 1-D mixture (experiment 2).
    pub equilibrium_steps: usize,
    /// Generator steps on the 8 Gaussians (experiment 3).
    pub mode_steps: usize,
    /// Discriminator (critic) steps per generator step in experiment 3, for both methods.
    pub d_steps: usize,
    pub batch_size: usize,
    pub hidden_dim: usize,
    pub hidden_layers: usize,
    /// Adam learning rates of experiments 1, 2 and 3 (in 3 it decays linearly to 0).
    pub lr_optimal_d: f64,
    pub lr_equilibrium: f64,
    pub lr_2d: f64,
    /// Adam's betas and epsilon, as in the WGAN-GP paper's toy experiments.
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// Gradient penalty weight of WGAN-GP in experiment 3.
    pub gp_lambda: f64,
    /// Size of the generator's noise.
    pub noise_dim: usize,
    /// Samples drawn for every reported number and plot.
    pub eval_samples: usize,
}

impl Toy2dSettings {
    /// The lab's defaults: MLPs of 3 hidden layers of 128 units, batch 256, Adam betas (0.5, 0.9).
    pub fn new(out: PathBuf, backend: BackendChoice) -> Self {
        Self {
            out,
            backend,
            experiment: Experiment::All,
            seeds: vec![1, 2, 3],
            optimal_d_steps: 2000,
            equilibrium_steps: 3000,
            mode_steps: 2000,
            d_steps: 5,
            batch_size: 256,
            hidden_dim: 128,
            hidden_layers: 3,
            lr_optimal_d: 1e-3,
            lr_equilibrium: 1e-4,
            lr_2d: 1e-3,
            beta1: 0.5,
            beta2: 0.9,
            epsilon: 1e-8,
            gp_lambda: 0.1,
            noise_dim: 2,
            eval_samples: 2000,
        }
    }

    fn adam(&self) -> ModuleOptimizer {
        AdamConfig::new()
            .with_beta_1(self.beta1 as f32)
            .with_beta_2(self.beta2 as f32)
            .with_epsilon(self.epsilon as f32)
            .init()
    }

    fn mlp(&self, input: usize, output: usize, device: &Device) -> Mlp {
        MlpConfig::new(input, output)
            .with_hidden_dim(self.hidden_dim)
            .with_hidden_layers(self.hidden_layers)
            .init(device)
    }

    fn noise(&self, count: usize, device: &Device) -> Tensor<2> {
        Tensor::random(
            [count, self.noise_dim],
            Distribution::Normal(0.0, 1.0),
            device,
        )
    }
}

/// The density below which experiment 1 does not compare D with D*: there, neither distribution
/// puts samples and D is unconstrained.
const MIN_DENSITY: f64 = 0.01;

/// The numbers of experiment 1.
#[derive(Debug, Clone, Serialize)]
pub struct OptimalDReport {
    pub p_g: String,
    /// Largest |D(x) - D*(x)| on a grid of step 0.02 over [-5, 5], where the mixture
    /// (p_data + p_g) / 2 has a density of at least 0.01 (where the samples D learns from are).
    pub max_gap: f64,
    /// E_{x ~ (p_data + p_g) / 2} |D(x) - D*(x)|, on the same grid.
    pub mean_gap: f64,
}

/// The numbers of experiment 2.
#[derive(Debug, Clone, Serialize)]
pub struct EquilibriumReport {
    pub mean_d_real: f64,
    pub mean_d_fake: f64,
    /// Share of generated samples left of 0 (the data has 1/2).
    pub fake_left_share: f64,
    /// Mean and standard deviation of |x| over generated samples (the data: 2 and 0.5).
    pub fake_mean_abs: f64,
    pub fake_std_abs: f64,
}

/// The numbers of one method and seed in experiment 3.
#[derive(Debug, Clone, Serialize)]
pub struct ModeRun {
    pub method: String,
    pub seed: u64,
    pub coverage: ModeCoverage,
    pub seconds: f64,
}

/// Everything the lab measured, written to `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Toy2dReport {
    pub settings: Toy2dSettings,
    pub optimal_d: Option<OptimalDReport>,
    pub equilibrium: Option<EquilibriumReport>,
    pub mode_collapse: Vec<ModeRun>,
}

fn to_vec(t: Tensor<2>) -> Result<Vec<f32>> {
    Ok(t.into_data().convert::<f32>().try_to_vec::<f32>()?)
}

fn column(values: &[f64], device: &Device) -> Tensor<2> {
    let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, [values.len(), 1]), device)
}

/// `count` evenly spaced points from `lo` to `hi`, both included.
fn linspace(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    (0..count)
        .map(|i| lo + (hi - lo) * i as f64 / (count - 1) as f64)
        .collect()
}

/// One discriminator step of the standard GAN on `real` and `fake` (detached).
fn d_step(d: Mlp, optim: &mut ModuleOptimizer, lr: f64, real: Tensor<2>, fake: Tensor<2>) -> Mlp {
    let loss = discriminator_loss(d.forward(real), d.forward(fake.detach()));
    let grads = GradientsParams::from_grads(loss.backward(), &d);
    optim.step(lr, d, grads)
}

/// Experiment 1: D trained against the frozen `p_g`, against D*. Draws from `device` as the
/// caller seeded it.
pub fn optimal_discriminator_experiment(
    settings: &Toy2dSettings,
    device: &Device,
) -> Result<OptimalDReport> {
    let data = TwoGaussians::default();
    let p_g = Gaussian {
        mean: 0.5,
        std: 1.5,
    };
    let mut d = settings.mlp(1, 1, device);
    let mut optim = settings.adam();
    for _ in 0..settings.optimal_d_steps {
        let real = data.sample(settings.batch_size, device);
        let fake = p_g.sample(settings.batch_size, device);
        d = d_step(d, &mut optim, settings.lr_optimal_d, real, fake);
    }
    let xs = linspace(-5.0, 5.0, 501);
    let d_x: Vec<f64> = to_vec(sigmoid(
        d.valid().forward(column(&xs, &device.clone().inner())),
    ))?
    .iter()
    .map(|&v| v as f64)
    .collect();
    let d_star: Vec<f64> = xs
        .iter()
        .map(|&x| optimal_discriminator(data.density(x), p_g.density(x)))
        .collect();
    // Where samples of either distribution fall: the mixture m = (p_data + p_g) / 2.
    let dx = xs[1] - xs[0];
    let mixture: Vec<f64> = xs
        .iter()
        .map(|&x| 0.5 * (data.density(x) + p_g.density(x)))
        .collect();
    let gap = |i: usize| (d_x[i] - d_star[i]).abs();
    let report = OptimalDReport {
        p_g: format!("N({}, {}^2)", p_g.mean, p_g.std),
        max_gap: (0..xs.len())
            .filter(|&i| mixture[i] >= MIN_DENSITY)
            .map(gap)
            .fold(0.0, f64::max),
        mean_gap: (0..xs.len()).map(|i| gap(i) * mixture[i] * dx).sum(),
    };
    let p_d: Vec<f64> = xs.iter().map(|&x| data.density(x)).collect();
    let p_gs: Vec<f64> = xs.iter().map(|&x| p_g.density(x)).collect();
    let title = format!(
        "Optimal discriminator: max |D - D*| = {:.3} where (p_data + p_g) / 2 >= {MIN_DENSITY}",
        report.max_gap
    );
    save_density_plot(&settings.out.join("optimal_d.png"), &title, |chart| {
        let line = |ys: &[f64]| {
            xs.iter()
                .cloned()
                .zip(ys.iter().cloned())
                .collect::<Vec<_>>()
        };
        let curves = [
            (&p_d, GREEN.stroke_width(2), "p_data"),
            (&p_gs, MAGENTA.stroke_width(2), "p_g (frozen)"),
            (
                &d_star,
                BLACK.stroke_width(3),
                "D* = p_data / (p_data + p_g)",
            ),
            (&d_x, RED.stroke_width(2), "trained D"),
        ];
        for (ys, style, label) in curves {
            chart
                .draw_series(LineSeries::new(line(ys), style))?
                .label(label)
                .legend(legend_line(style));
        }
        Ok(())
    })?;
    Ok(report)
}

/// Experiment 2: a GAN on the 1-D mixture, D on real and generated samples at the end. Draws
/// from `device` as the caller seeded it.
pub fn equilibrium_experiment(
    settings: &Toy2dSettings,
    device: &Device,
) -> Result<EquilibriumReport> {
    let data = TwoGaussians::default();
    let mut g = settings.mlp(settings.noise_dim, 1, device);
    let mut d = settings.mlp(1, 1, device);
    let (mut optim_g, mut optim_d) = (settings.adam(), settings.adam());
    let lr = settings.lr_equilibrium;
    for _ in 0..settings.equilibrium_steps {
        let real = data.sample(settings.batch_size, device);
        let fake = g.forward(settings.noise(settings.batch_size, device));
        d = d_step(d, &mut optim_d, lr, real, fake.clone());
        let loss_g = generator_loss(d.forward(fake), GeneratorLoss::NonSaturating);
        let grads = GradientsParams::from_grads(loss_g.backward(), &g);
        g = optim_g.step(lr, g, grads);
    }
    let plain = device.clone().inner();
    let (g, d) = (g.valid(), d.valid());
    let n = settings.eval_samples;
    let real = data.sample(n, &plain);
    let fake = g.forward(settings.noise(n, &plain));
    let mean_d = |x: Tensor<2>| -> Result<f64> {
        Ok(sigmoid(d.forward(x)).mean().into_scalar::<f32>() as f64)
    };
    let fakes = to_vec(fake.clone())?;
    let report = EquilibriumReport {
        mean_d_real: mean_d(real)?,
        mean_d_fake: mean_d(fake)?,
        fake_left_share: fakes.iter().filter(|&&x| x < 0.0).count() as f64 / n as f64,
        fake_mean_abs: fakes.iter().map(|x| x.abs() as f64).sum::<f64>() / n as f64,
        fake_std_abs: 0.0,
    };
    let report = EquilibriumReport {
        fake_std_abs: (fakes
            .iter()
            .map(|x| (x.abs() as f64 - report.fake_mean_abs).powi(2))
            .sum::<f64>()
            / n as f64)
            .sqrt(),
        ..report
    };
    let xs = linspace(-5.0, 5.0, 501);
    let d_x = to_vec(sigmoid(d.forward(column(&xs, &plain))))?;
    let p_d: Vec<(f64, f64)> = xs.iter().map(|&x| (x, data.density(x))).collect();
    // Histogram of the generated samples as a density: bins of 0.1 on [-5, 5].
    let width = 0.1;
    let mut bins = vec![0usize; 100];
    for &x in &fakes {
        let i = ((x as f64 + 5.0) / width).floor();
        if (0.0..100.0).contains(&i) {
            bins[i as usize] += 1;
        }
    }
    let title = format!(
        "GAN equilibrium: mean D(x) = {:.3} on data, {:.3} on samples",
        report.mean_d_real, report.mean_d_fake
    );
    save_density_plot(&settings.out.join("equilibrium.png"), &title, |chart| {
        chart
            .draw_series(bins.iter().enumerate().map(|(i, &count)| {
                let x0 = -5.0 + i as f64 * width;
                let height = count as f64 / (n as f64 * width);
                Rectangle::new([(x0, 0.0), (x0 + width, height)], BLUE.mix(0.35).filled())
            }))?
            .label("generated (histogram)")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 18, y + 5)], BLUE.mix(0.35).filled())
            });
        chart
            .draw_series(LineSeries::new(p_d, GREEN.stroke_width(2)))?
            .label("p_data")
            .legend(legend_line(GREEN.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                xs.iter().zip(&d_x).map(|(&x, &v)| (x, v as f64)),
                RED.stroke_width(2),
            ))?
            .label("D(x)")
            .legend(legend_line(RED.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                [(-5.0, 0.5), (5.0, 0.5)],
                BLACK.mix(0.5).stroke_width(1),
            ))?
            .label("1/2")
            .legend(legend_line(BLACK.mix(0.5)));
        Ok(())
    })?;
    Ok(report)
}

/// The two methods of experiment 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Gan,
    WganGp,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Gan => "GAN",
            Method::WganGp => "WGAN-GP",
        }
    }
}

/// Snapshots of the generated points over training.
const SNAPSHOTS: usize = 4;

/// The generated points `(step, [x0, y0, x1, y1, ...])` at a few steps of training.
type Snapshots = Vec<(usize, Vec<f32>)>;

/// Trains one method on the 8 Gaussians; returns the snapshots and the final coverage.
fn train_on_eight_gaussians(
    settings: &Toy2dSettings,
    method: Method,
    seed: u64,
    device: &Device,
) -> Result<(Snapshots, ModeCoverage)> {
    device.seed(seed);
    let data = EightGaussians::default();
    let mut g = settings.mlp(settings.noise_dim, 2, device);
    let mut d = settings.mlp(2, 1, device);
    let (mut optim_g, mut optim_d) = (settings.adam(), settings.adam());
    let lr = settings.lr_2d;
    let batch = settings.batch_size;
    let plain = device.clone().inner();
    let mut snapshots = Vec::new();
    let snapshot_at: Vec<usize> = (1..=SNAPSHOTS)
        .map(|k| (settings.mode_steps * k).div_ceil(SNAPSHOTS))
        .collect();
    for step in 1..=settings.mode_steps {
        // Linear decay to 0 over training, as in the WGAN-GP paper's CIFAR-10 runs: the last
        // steps refine the modes instead of jittering around them.
        let lr = lr * (1.0 - (step - 1) as f64 / settings.mode_steps as f64);
        for _ in 0..settings.d_steps {
            let real = data.sample(batch, device);
            let fake = g.forward(settings.noise(batch, device)).detach();
            d = match method {
                Method::Gan => d_step(d, &mut optim_d, lr, real, fake),
                Method::WganGp => {
                    let mix = Tensor::<1>::random([batch], Distribution::Uniform(0.0, 1.0), device);
                    let x_hat = interpolate(real.clone(), fake.clone(), mix);
                    let penalty =
                        gradient_penalty(d.input_gradient(x_hat), settings.gp_lambda).penalty;
                    let loss = critic_loss(d.forward(real), d.forward(fake)) + penalty;
                    let grads = GradientsParams::from_grads(loss.backward(), &d);
                    optim_d.step(lr, d, grads)
                }
            };
        }
        let fake_scores = d.forward(g.forward(settings.noise(batch, device)));
        let loss_g = match method {
            Method::Gan => generator_loss(fake_scores, GeneratorLoss::NonSaturating),
            Method::WganGp => wasserstein_generator_loss(fake_scores),
        };
        let grads = GradientsParams::from_grads(loss_g.backward(), &g);
        g = optim_g.step(lr, g, grads);
        if snapshot_at.contains(&step) {
            let points = to_vec(
                g.valid()
                    .forward(settings.noise(settings.eval_samples, &plain)),
            )?;
            anyhow::ensure!(
                points.iter().all(|v| v.is_finite()),
                "{} (seed {seed}) diverged before step {step}: a generated point is not finite",
                method.name()
            );
            snapshots.push((step, points));
        }
    }
    let last = &snapshots.last().expect("at least one snapshot").1;
    let coverage = mode_coverage(last, &data.centres(), data.std);
    Ok((snapshots, coverage))
}

/// Experiment 3 for one seed: both methods, their scatter plots and coverage.
pub fn mode_collapse_experiment(
    settings: &Toy2dSettings,
    seed: u64,
    device: &Device,
) -> Result<Vec<ModeRun>> {
    let data = EightGaussians::default();
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    for method in [Method::Gan, Method::WganGp] {
        let started = Instant::now();
        let (snapshots, coverage) = train_on_eight_gaussians(settings, method, seed, device)?;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "toy2d: seed {seed} {:<7} modes covered {}/8, high-quality {:.1}% ({:.1} s)",
            method.name(),
            coverage.modes_covered,
            100.0 * coverage.high_quality,
            seconds
        );
        rows.push((method, snapshots, coverage.clone()));
        runs.push(ModeRun {
            method: method.name().into(),
            seed,
            coverage,
            seconds,
        });
    }
    let centres = data.centres();
    let path = settings.out.join(format!("mode_collapse_seed{seed}.png"));
    let columns = rows[0].1.len();
    save_plot((260 * columns as u32, 560), &path, |root| {
        root.fill(&WHITE)?;
        let panels = root.split_evenly((2, columns));
        for (r, (method, snapshots, coverage)) in rows.iter().enumerate() {
            for (c, (step, points)) in snapshots.iter().enumerate() {
                let mut caption = format!("{} step {step}", method.name());
                if c + 1 == columns {
                    caption = format!("{caption}: {}/8", coverage.modes_covered);
                }
                let mut chart = ChartBuilder::on(&panels[r * columns + c])
                    .caption(caption, ("sans-serif", 15))
                    .margin(6)
                    .x_label_area_size(18)
                    .y_label_area_size(24)
                    .build_cartesian_2d(-3.0f32..3.0f32, -3.0f32..3.0f32)?;
                chart
                    .configure_mesh()
                    .disable_mesh()
                    .x_labels(4)
                    .y_labels(4)
                    .draw()?;
                chart.draw_series(
                    points
                        .chunks_exact(2)
                        .filter(|p| p[0].abs() < 3.0 && p[1].abs() < 3.0)
                        .map(|p| Circle::new((p[0], p[1]), 1, BLUE.mix(0.4).filled())),
                )?;
                chart.draw_series(
                    centres
                        .iter()
                        .map(|c| Cross::new((c[0] as f32, c[1] as f32), 4, RED.stroke_width(2))),
                )?;
            }
        }
        Ok(())
    })?;
    Ok(runs)
}

/// Runs the chosen experiments, writes the plots and `report.json` into `settings.out`.
pub fn run(settings: &Toy2dSettings) -> Result<Toy2dReport> {
    anyhow::ensure!(
        !settings.seeds.is_empty(),
        "--seeds: give at least one seed"
    );
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("--out: cannot create {}", settings.out.display()))?;
    let selected = select_device(settings.backend)?;
    println!("toy2d: computing on {}", selected.description);
    println!("toy2d: writing to {}", settings.out.display());
    let device = selected.device.autodiff();
    let wants = |e: Experiment| settings.experiment == Experiment::All || settings.experiment == e;
    let mut report = Toy2dReport {
        settings: settings.clone(),
        optimal_d: None,
        equilibrium: None,
        mode_collapse: Vec::new(),
    };
    if wants(Experiment::OptimalD) {
        device.seed(settings.seeds[0]);
        let r = optimal_discriminator_experiment(settings, &device)?;
        println!(
            "toy2d: optimal D against p_g = {}: max |D - D*| = {:.4} where (p_data + p_g) / 2 >= {MIN_DENSITY}, mean {:.4} under it",
            r.p_g, r.max_gap, r.mean_gap
        );
        report.optimal_d = Some(r);
    }
    if wants(Experiment::Equilibrium) {
        device.seed(settings.seeds[0]);
        let r = equilibrium_experiment(settings, &device)?;
        println!(
            "toy2d: equilibrium: mean D = {:.3} on data, {:.3} on samples; {:.1}% of samples left of 0, |x| of samples {:.3} +- {:.3} (data 2 +- 0.5)",
            r.mean_d_real,
            r.mean_d_fake,
            100.0 * r.fake_left_share,
            r.fake_mean_abs,
            r.fake_std_abs
        );
        report.equilibrium = Some(r);
    }
    if wants(Experiment::ModeCollapse) {
        for &seed in &settings.seeds {
            report
                .mode_collapse
                .extend(mode_collapse_experiment(settings, seed, &device)?);
        }
    }
    let text = serde_json::to_string_pretty(&report)?;
    write_atomic(&settings.out.join("report.json"), text.as_bytes())?;
    Ok(report)
}

/// The chart of the 1-D experiments: densities and discriminator values over x in [-5, 5],
/// drawn by `series`, under `title`, with the series' legend; 900x520 pixels.
fn save_density_plot(
    path: &Path,
    title: &str,
    series: impl FnOnce(&mut DensityChart) -> Result<(), Box<dyn Error>>,
) -> Result<()> {
    save_plot((900, 520), path, |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(-5.0..5.0, 0.0..1.05)?;
        chart.configure_mesh().disable_mesh().draw()?;
        series(&mut chart)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(())
    })
}

type DensityChart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A legend entry: a short line in `style`.
fn legend_line<S: Into<ShapeStyle>>(style: S) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    let style = style.into();
    move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style)
}
