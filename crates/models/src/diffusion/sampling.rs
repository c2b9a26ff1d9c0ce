//! Drawing images from a trained noise predictor: the reverse process x_T -> x_0 with a DDPM or
//! DDIM sampler, the settings that choose one, and the noise schedule as `config.json` stores it.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::guidance::{Denoiser, Guidance, GuidanceError, denoise};
use super::{DdimScheduler, DdpmScheduler, DiffusionError, NoiseSchedule, Sampler, UNet};
use crate::image_source::{Drawn, GridImages, ImageSource, PixelRange};
use crate::noise::seeded_normal;

/// The noise predictor's name in a run folder: its Config's key in `config.json` and the record
/// of the weights being trained, `unet.bpk`.
pub const UNET: &str = "unet";
/// The record of the exponential moving average of the weights, `ema.bpk`: the weights that
/// draw every sample.
pub const EMA: &str = "ema";
/// The noise schedule's key in `config.json`.
pub const SCHEDULE: &str = "schedule";

/// A noise schedule as settings: T betas linear from `beta_start` to `beta_end`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    pub num_steps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
}

impl Default for ScheduleConfig {
    /// The DDPM paper's: 1000 steps, betas from 1e-4 to 0.02.
    fn default() -> Self {
        Self {
            num_steps: 1000,
            beta_start: 1e-4,
            beta_end: 0.02,
        }
    }
}

impl ScheduleConfig {
    pub fn build(&self) -> Result<NoiseSchedule, DiffusionError> {
        NoiseSchedule::linear(self.num_steps, self.beta_start, self.beta_end)
    }
}

/// Which reverse process draws the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    /// Ancestral sampling, one step per timestep (or a "leading" subsequence).
    Ddpm,
    /// DDIM over a "leading" subsequence; deterministic at eta = 0.
    Ddim,
}

/// How images are drawn: which sampler, in how many steps, with which eta (DDIM only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingSettings {
    pub sampler: SamplerKind,
    pub steps: usize,
    pub eta: f64,
}

impl SamplingSettings {
    /// The sampler these settings choose, on `schedule`; refused when the schedule cannot
    /// honour them (more steps than T, a negative eta).
    pub fn build(&self, schedule: &NoiseSchedule) -> Result<AnySampler, DiffusionError> {
        Ok(match self.sampler {
            SamplerKind::Ddpm => {
                let mut sampler = DdpmScheduler::new(schedule.clone());
                sampler.set_timesteps(self.steps)?;
                AnySampler::Ddpm(sampler)
            }
            SamplerKind::Ddim => {
                let mut sampler = DdimScheduler::new(schedule.clone()).with_eta(self.eta)?;
                sampler.set_timesteps(self.steps)?;
                AnySampler::Ddim(sampler)
            }
        })
    }

    /// In words: `DDPM-1000`, `DDIM-50 (eta 0)`.
    pub fn describe(&self) -> String {
        match self.sampler {
            SamplerKind::Ddpm => format!("DDPM-{}", self.steps),
            SamplerKind::Ddim => format!("DDIM-{} (eta {})", self.steps, self.eta),
        }
    }
}

/// A DDPM or DDIM sampler, chosen at run time.
#[derive(Debug, Clone)]
pub enum AnySampler {
    Ddpm(DdpmScheduler),
    Ddim(DdimScheduler),
}

impl AnySampler {
    /// [`sample`] with the chosen sampler.
    pub fn sample(
        &self,
        unet: &UNet,
        count: usize,
        seed: u64,
        device: &Device,
        observe: impl FnMut(usize, &Tensor<4>),
    ) -> Tensor<4> {
        match self {
            Self::Ddpm(sampler) => sample(unet, sampler, count, seed, device, observe),
            Self::Ddim(sampler) => sample(unet, sampler, count, seed, device, observe),
        }
    }

    /// The sampler clipping x0_hat to the image range [-1, 1] (the default) or not (data of
    /// another range, such as standardised latent codes).
    pub fn with_clip_sample(self, clip_sample: bool) -> Self {
        match self {
            Self::Ddpm(sampler) => Self::Ddpm(sampler.with_clip_sample(clip_sample)),
            Self::Ddim(sampler) => Self::Ddim(sampler.with_clip_sample(clip_sample)),
        }
    }

    /// [`reverse_process`] with the chosen sampler.
    pub fn reverse_process<const D: usize>(
        &self,
        shape: [usize; D],
        seed: u64,
        device: &Device,
        predict_noise: impl FnMut(Tensor<D>, usize) -> Tensor<D>,
        observe: impl FnMut(usize, &Tensor<D>),
    ) -> Tensor<D> {
        match self {
            Self::Ddpm(sampler) => {
                reverse_process(shape, sampler, seed, device, predict_noise, observe)
            }
            Self::Ddim(sampler) => {
                reverse_process(shape, sampler, seed, device, predict_noise, observe)
            }
        }
    }
}

/// Timesteps `[B]` as the floats the U-Net's time embedding takes.
pub fn timesteps_tensor(timesteps: &[usize], device: &Device) -> Tensor<1> {
    let values: Vec<f32> = timesteps.iter().map(|&t| t as f32).collect();
    Tensor::from_data(TensorData::new(values, [timesteps.len()]), device)
}

/// Runs the reverse process for `count` images of the U-Net's shape ([`reverse_process`] with
/// `eps_theta(x, t)` of the U-Net).
pub fn sample(
    unet: &UNet,
    sampler: &impl Sampler,
    count: usize,
    seed: u64,
    device: &Device,
    observe: impl FnMut(usize, &Tensor<4>),
) -> Tensor<4> {
    let unet = unet.valid();
    let shape = unet.image_shape(count);
    let predict_noise = |x: Tensor<4>, t: usize| {
        unet.forward(x, timesteps_tensor(&vec![t; count], device)) // [count, C, H, W]
    };
    reverse_process(shape, sampler, seed, device, predict_noise, observe)
}

/// The reverse process for data of any `shape` (`shape[0]` samples): x_T ~ N(0, I), then
/// `x <- sampler.step(predict_noise(x, t), t, x, z_t)` for each timestep of the sampler, from
/// noisiest to clean. x_T and each step's fresh noise z_t are drawn on the host from `seed`
/// (stream 0 for x_T, 1 + t for z_t), so that the samples are the same on every backend.
/// `observe(t, x)` sees x_T with `t = usize::MAX`, then the state before the step at each `t`
/// (the reverse-process strips use it).
pub fn reverse_process<const D: usize>(
    shape: [usize; D],
    sampler: &impl Sampler,
    seed: u64,
    device: &Device,
    mut predict_noise: impl FnMut(Tensor<D>, usize) -> Tensor<D>,
    mut observe: impl FnMut(usize, &Tensor<D>),
) -> Tensor<D> {
    let count = shape[0];
    let per_sample = shape[1..].iter().product();
    let normal = |stream: u64| {
        seeded_normal([count, per_sample], seed.wrapping_add(stream), device).reshape(shape)
    };
    let mut x = normal(0); // x_T: shape
    observe(usize::MAX, &x);
    for &t in sampler.timesteps() {
        observe(t, &x);
        let eps = predict_noise(x.clone(), t); // shape
        let noise = sampler.needs_noise(t).then(|| normal(1 + t as u64));
        x = sampler.step(eps, t, x, noise); // x_{t_prev}
    }
    x
}

/// A diffusion model as an [`ImageSource`]: a noise predictor (a DDPM run's EMA weights) and a
/// sampler, and for a class-conditional U-Net the classes and the guidance scale.
#[derive(Debug, Clone)]
pub struct DiffusionSource {
    pub unet: UNet,
    pub sampler: AnySampler,
    pub settings: SamplingSettings,
    pub guidance: Option<Guidance>,
}

impl DiffusionSource {
    /// Refuses settings the schedule cannot honour. A conditional U-Net draws the classes in
    /// turn at w = 0 unless [`DiffusionSource::with_guidance`] says otherwise.
    pub fn new(
        unet: UNet,
        schedule: &NoiseSchedule,
        settings: SamplingSettings,
    ) -> Result<Self, DiffusionError> {
        let guidance = Guidance::resolve(None, unet.num_classes()).expect("no guidance asked");
        Ok(Self {
            unet,
            sampler: settings.build(schedule)?,
            settings,
            guidance,
        })
    }

    /// The classes and guidance scale of a conditional U-Net; refused as [`Guidance::resolve`]
    /// says.
    pub fn with_guidance(mut self, guidance: Option<Guidance>) -> Result<Self, GuidanceError> {
        self.guidance = Guidance::resolve(guidance, self.unet.num_classes())?;
        Ok(self)
    }

    /// [`ImageSource::draw`], with `observe` seeing the reverse process as
    /// [`reverse_process`] shows it.
    pub fn draw_observed(
        &self,
        count: usize,
        seed: u64,
        device: &Device,
        observe: impl FnMut(usize, &Tensor<4>),
    ) -> Drawn {
        let classes = self
            .guidance
            .map(|g| g.classes(count, self.unet.num_classes()));
        let scale = self.guidance.map_or(0.0, |g| g.scale);
        let unet = self.unet.valid();
        let images = denoise(
            &unet,
            &self.sampler,
            unet.image_shape(count),
            classes.as_deref(),
            scale,
            seed,
            device,
            observe,
        );
        Drawn { images, classes }
    }
}

impl ImageSource for DiffusionSource {
    fn pixel_range(&self) -> PixelRange {
        PixelRange::MinusOneToOne
    }

    fn describe(&self) -> String {
        let guidance = self.guidance.map(|g| g.describe()).unwrap_or_default();
        format!("EMA U-Net, {}{guidance}", self.settings.describe())
    }

    fn draw(&self, count: usize, seed: u64, device: &Device) -> Drawn {
        self.draw_observed(count, seed, device, |_, _| {})
    }

    /// A conditional U-Net with the classes in turn: one column per class, ten rows.
    fn grid(&self, seed: u64, device: &Device) -> GridImages {
        Guidance::grid(self.guidance, self.unet.num_classes(), self, seed, device)
    }
}
