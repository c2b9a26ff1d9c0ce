//! Denoising diffusion probabilistic models (Ho, Jain & Abbeel, 2020) and DDIM sampling
//! (Song, Meng & Ermon, 2021).
//!
//! The maths of the process is kept apart from the network so that each can be read, tested and
//! reused on its own:
//!
//! - [`schedule`]: the betas, `alpha_bar`, one forward step q(x_t | x_{t-1}) and the closed form
//!   q(x_t | x_0) (`add_noise`).
//! - [`ddpm`]: the ancestral sampling step p(x_{t-1} | x_t) from a predicted noise.
//! - [`ddim`]: the DDIM step over a subsequence of timesteps, stochastic for `eta > 0`.
//! - [`unet`]: the noise predictor eps_theta(x_t, t), a U-Net with a time embedding,
//!   residual blocks and self-attention.
//! - [`attention`]: scaled dot-product attention, with an optional causal mask.
//! - [`sampling`]: the reverse process x_T -> x_0 ([`sample`], and [`reverse_process`] for data
//!   of any shape) with a sampler chosen by [`SamplingSettings`], and [`DiffusionSource`], a
//!   trained network as an image source.
//! - [`guidance`]: class-conditional noise predictors ([`Denoiser`]) and classifier-free
//!   guidance (Ho & Salimans, 2022), for the U-Net and the latent denoisers alike.
//! - [`latent`]: latent diffusion (Rombach et al., 2022): the same process on the codes of a
//!   frozen autoencoder, with a residual-MLP denoiser for vector codes and a small U-Net for
//!   spatial ones.
//!
//! Both samplers give the same numbers as the `DDPMScheduler` and `DDIMScheduler` of
//! huggingface diffusers for the same inputs and noise (see `tests/reference/`).

pub mod attention;
pub mod ddim;
pub mod ddpm;
pub mod guidance;
pub mod latent;
pub mod sampling;
pub mod schedule;
pub mod unet;

pub use attention::scaled_dot_product_attention;
pub use ddim::DdimScheduler;
pub use ddpm::{DdpmScheduler, PosteriorVariance};
pub use guidance::{Denoiser, Guidance, GuidanceError, denoise, drop_labels, guided_noise};
pub use latent::{
    AUTOENCODER, CodeStatistics, DENOISER, LatentCodec, LatentDenoiser, LatentDenoiserConfig,
    LatentDiffusionSource, LatentNetwork, LatentNetworkConfig,
};
pub use sampling::{
    AnySampler, DiffusionSource, EMA, SCHEDULE, SamplerKind, SamplingSettings, ScheduleConfig,
    UNET, reverse_process, sample, timesteps_tensor,
};
pub use schedule::NoiseSchedule;
pub use unet::{UNet, UNetConfig};

use burn::tensor::Tensor;

/// Why a schedule or a sampler setting was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DiffusionError {
    #[error("a noise schedule needs at least one step")]
    EmptySchedule,
    #[error("beta {index} is {beta}; every beta must lie in (0, 1]")]
    BetaOutOfRange { index: usize, beta: f64 },
    #[error("timestep {t} is outside the schedule's steps 0..={}", num_steps - 1)]
    TimestepOutOfRange { t: usize, num_steps: usize },
    #[error(
        "cannot sample in {requested} steps with a {num_steps}-step schedule: choose 1 to {num_steps}"
    )]
    InferenceSteps { requested: usize, num_steps: usize },
    #[error("eta must be a finite number >= 0, got {0}")]
    Eta(f64),
}

/// A reverse process: the timesteps it visits, from noisiest to clean, and one step
/// x_t -> x_prev given the network's noise prediction, a Gaussian `N(mu, sigma_t^2 I)` around
/// a mean `mu(x_t, eps)`.
pub trait Sampler {
    /// The timesteps visited, in decreasing order, ending at 0.
    fn timesteps(&self) -> &[usize];

    /// The mean `mu(x_t, eps)` of the step at timestep `t` from the predicted noise `eps`.
    fn mean<const D: usize>(&self, eps: Tensor<D>, t: usize, x_t: Tensor<D>) -> Tensor<D>;

    /// The variance `sigma_t^2` of the fresh noise the step at `t` adds.
    fn noise_variance(&self, t: usize) -> f64;

    /// Whether [`Sampler::step`] at `t` adds fresh noise (and so needs `noise`).
    fn needs_noise(&self, t: usize) -> bool {
        self.noise_variance(t) > 0.0
    }

    /// One reverse step at timestep `t` from the predicted noise `eps`:
    ///
    /// `x_prev = mu(x_t, eps) + sigma_t noise`.
    ///
    /// `noise ~ N(0, I)` must be given when [`Sampler::needs_noise`] says so; it is an argument
    /// so that a step is reproducible.
    fn step<const D: usize>(
        &self,
        eps: Tensor<D>,
        t: usize,
        x_t: Tensor<D>,
        noise: Option<Tensor<D>>,
    ) -> Tensor<D> {
        let mean = self.mean(eps, t, x_t);
        if !self.needs_noise(t) {
            return mean;
        }
        let noise = noise.expect("a step that adds noise needs `noise` (see `needs_noise`)");
        mean + noise.mul_scalar(self.noise_variance(t).sqrt())
    }
}

/// A reverse process over the timesteps of a schedule, all of them or a "leading" subsequence,
/// with the step `rule` of DDPM ([`DdpmScheduler`]) or DDIM ([`DdimScheduler`]): the timesteps
/// visited, the clipping of x0_hat and the signal levels are the same for both.
#[derive(Debug, Clone)]
pub struct Scheduler<R> {
    schedule: NoiseSchedule,
    timesteps: Vec<usize>,
    clip_sample: bool,
    rule: R,
}

impl<R> Scheduler<R> {
    /// `rule` over `timesteps` of `schedule`, x0_hat clipped to [-1, 1].
    fn with_rule(schedule: NoiseSchedule, timesteps: Vec<usize>, rule: R) -> Self {
        Self {
            schedule,
            timesteps,
            clip_sample: true,
            rule,
        }
    }

    /// Whether x0_hat is clipped to the data range [-1, 1] before it enters the step.
    pub fn with_clip_sample(mut self, clip_sample: bool) -> Self {
        self.clip_sample = clip_sample;
        self
    }

    /// Samples in `num_inference_steps` steps, "leading" spacing: `k * (T / n)`, k = n-1..0.
    pub fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<(), DiffusionError> {
        self.timesteps = leading_timesteps(self.schedule.num_steps(), num_inference_steps)?;
        Ok(())
    }

    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// `alpha_bar` at the timestep after `t` in the reverse process: 1 after the last
    /// (diffusers' `set_alpha_to_one`).
    fn alpha_bar_prev(&self, t: usize) -> f64 {
        let stride = self.schedule.num_steps() / self.timesteps.len();
        t.checked_sub(stride)
            .map_or(1.0, |prev| self.schedule.alpha_bar(prev))
    }
}

/// The "leading" timestep spacing of diffusers: `n` steps `k * (T / n)` for `k = n-1, ..., 0`,
/// e.g. 980, 960, ..., 0 for 50 of 1000.
pub fn leading_timesteps(
    num_train_steps: usize,
    num_inference_steps: usize,
) -> Result<Vec<usize>, DiffusionError> {
    if num_inference_steps == 0 || num_inference_steps > num_train_steps {
        return Err(DiffusionError::InferenceSteps {
            requested: num_inference_steps,
            num_steps: num_train_steps,
        });
    }
    let ratio = num_train_steps / num_inference_steps;
    Ok((0..num_inference_steps).rev().map(|k| k * ratio).collect())
}

/// `x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)`: the clean image implied by a
/// noise prediction, inverting the closed form q(x_t | x_0); clipped to [-1, 1] when asked.
pub fn predict_x0<const D: usize>(
    x_t: Tensor<D>,
    eps: Tensor<D>,
    alpha_bar: f64,
    clip: bool,
) -> Tensor<D> {
    let x0 = (x_t - eps.mul_scalar((1.0 - alpha_bar).sqrt())).div_scalar(alpha_bar.sqrt());
    if clip { x0.clamp(-1.0, 1.0) } else { x0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_spacing_gives_980_down_to_0_for_50_of_1000() {
        let timesteps = leading_timesteps(1000, 50).unwrap();
        assert_eq!(timesteps.len(), 50);
        assert_eq!(timesteps[..3], [980, 960, 940]);
        assert_eq!(*timesteps.last().unwrap(), 0);
        assert!(timesteps.windows(2).all(|pair| pair[0] - pair[1] == 20));
        assert_eq!(
            leading_timesteps(1000, 1000).unwrap(),
            (0..1000).rev().collect::<Vec<_>>()
        );
        // 1000 / 3 = 333: 666, 333, 0, as diffusers.
        assert_eq!(leading_timesteps(1000, 3).unwrap(), [666, 333, 0]);
        let message = leading_timesteps(1000, 1001).unwrap_err().to_string();
        assert!(
            message.contains("1001") && message.contains("1 to 1000"),
            "{message}"
        );
        assert!(leading_timesteps(1000, 0).is_err());
    }
}
