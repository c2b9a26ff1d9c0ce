//! Ancestral sampling of Ho et al. (2020): x_{t-1} ~ p(x_{t-1} | x_t), the Gaussian posterior
//! q(x_{t-1} | x_t, x0_hat) around the clean image the network's noise prediction implies.

use burn::tensor::Tensor;

use super::{NoiseSchedule, Sampler, Scheduler, predict_x0};

/// The variance of each reverse step (Ho et al., section 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PosteriorVariance {
    /// `beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t`, the posterior's own
    /// variance (diffusers' "fixed_small").
    #[default]
    FixedSmall,
    /// `beta_t` (diffusers' "fixed_large").
    FixedLarge,
}

/// The DDPM reverse process over all T timesteps (or a "leading" subsequence of them, after
/// [`Scheduler::set_timesteps`]).
pub type DdpmScheduler = Scheduler<Ddpm>;

/// The DDPM step, with the variance of its fresh noise.
#[derive(Debug, Clone, Copy)]
pub struct Ddpm {
    variance: PosteriorVariance,
}

impl DdpmScheduler {
    /// Every timestep T-1, ..., 0, fixed-small variance, x0_hat clipped to [-1, 1].
    pub fn new(schedule: NoiseSchedule) -> Self {
        let timesteps = (0..schedule.num_steps()).rev().collect();
        let rule = Ddpm {
            variance: PosteriorVariance::FixedSmall,
        };
        Self::with_rule(schedule, timesteps, rule)
    }

    pub fn with_variance(mut self, variance: PosteriorVariance) -> Self {
        self.rule.variance = variance;
        self
    }

    /// `alpha_bar_t`, `alpha_bar_prev` (the signal at the next timestep, 1 after the last) and
    /// `alpha_t = alpha_bar_t / alpha_bar_prev`.
    fn signal_levels(&self, t: usize) -> (f64, f64, f64) {
        let (alpha_bar, alpha_bar_prev) = (self.schedule.alpha_bar(t), self.alpha_bar_prev(t));
        (alpha_bar, alpha_bar_prev, alpha_bar / alpha_bar_prev)
    }
}

/// `x_prev = mu(x_t, x0_hat) + sigma_t noise`, where, with `alpha_bar_prev` the signal at the
/// next timestep and `beta_t = 1 - alpha_bar_t / alpha_bar_prev` (the schedule's beta_t when
/// every timestep is visited),
///
/// `x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)`,
///
/// `mu = sqrt(alpha_bar_prev) beta_t / (1 - alpha_bar_t) x0_hat
///      + sqrt(alpha_t) (1 - alpha_bar_prev) / (1 - alpha_bar_t) x_t`,
///
/// `sigma_t^2 = beta_tilde_t` or `beta_t`; no noise at t = 0.
impl Sampler for DdpmScheduler {
    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn mean<const D: usize>(&self, eps: Tensor<D>, t: usize, x_t: Tensor<D>) -> Tensor<D> {
        let (alpha_bar, alpha_bar_prev, alpha) = self.signal_levels(t);
        let beta = 1.0 - alpha;
        let x0_hat = predict_x0(x_t.clone(), eps, alpha_bar, self.clip_sample);
        let x0_coefficient = alpha_bar_prev.sqrt() * beta / (1.0 - alpha_bar);
        let x_t_coefficient = alpha.sqrt() * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar);
        x0_hat.mul_scalar(x0_coefficient) + x_t.mul_scalar(x_t_coefficient)
    }

    fn noise_variance(&self, t: usize) -> f64 {
        let (alpha_bar, alpha_bar_prev, alpha) = self.signal_levels(t);
        let beta = 1.0 - alpha;
        match self.rule.variance {
            // Floored as in diffusers: at t = 1 of a fine schedule it is tiny but not zero.
            PosteriorVariance::FixedSmall => {
                ((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta).max(1e-20)
            }
            PosteriorVariance::FixedLarge => beta,
        }
    }

    /// Every step adds noise but the last.
    fn needs_noise(&self, t: usize) -> bool {
        t > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// Given the true noise of a known x0 at a small t, one step returns close to x0: the
    /// posterior mean is a weighted average of x0 and x_t with the weight almost all on x0.
    #[test]
    fn a_step_with_the_true_noise_at_small_t_lands_near_x0() {
        let scheduler = DdpmScheduler::new(NoiseSchedule::ddpm());
        let device = Device::flex();
        device.seed(11);
        let x0 = Tensor::<4>::random([4, 1, 8, 8], Distribution::Uniform(-1.0, 1.0), &device);
        let eps = Tensor::<4>::random([4, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let t = 2;
        let x_t = scheduler
            .schedule()
            .add_noise(x0.clone(), eps.clone(), &[t; 4]);
        let zero_noise = Tensor::zeros([4, 1, 8, 8], &device);
        let x_prev = scheduler.step(eps, t, x_t.clone(), Some(zero_noise));
        // With the true eps, x0_hat = x0 exactly and mu = x0 + (x_t - x0) * c, where the weight
        // c = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) is about 0.6 at t = 2, and
        // |x_t - x0| is about sqrt(1 - alpha_bar_2) |eps| = 0.019 |eps|.
        let schedule = scheduler.schedule();
        let c = schedule.alpha(t).sqrt() * (1.0 - schedule.alpha_bar(1))
            / (1.0 - schedule.alpha_bar(t));
        let expected = x0.clone() + (x_t - x0.clone()).mul_scalar(c);
        assert!(x_prev.clone().all_close(expected, Some(0.0), Some(1e-5)));
        let distance = (x_prev - x0).abs().max().into_scalar::<f32>();
        assert!(distance < 0.05, "max |x_prev - x0| = {distance}");
    }

    #[test]
    fn the_last_step_adds_no_noise_and_returns_the_clipped_x0_estimate() {
        let scheduler = DdpmScheduler::new(NoiseSchedule::ddpm());
        let device = Device::flex();
        let x_t = Tensor::<2>::from_floats([[0.5, 3.0, -3.0]], &device);
        let eps = Tensor::<2>::from_floats([[0.1, 0.0, 0.0]], &device);
        assert!(!scheduler.needs_noise(0));
        // At t = 0, alpha_bar_prev = 1, so mu = x0_hat: (x - sqrt(beta_0) eps) / sqrt(alpha_0).
        let out = scheduler
            .step(eps, 0, x_t, None)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let first = (0.5 - 1e-4f64.sqrt() * 0.1) / (1.0 - 1e-4f64).sqrt();
        assert!((out[0] as f64 - first).abs() < 1e-6, "{}", out[0]);
        assert_eq!(out[1..], [1.0, -1.0]);
    }

    #[test]
    fn fixed_large_adds_more_noise_than_fixed_small() {
        let device = Device::flex();
        let small = DdpmScheduler::new(NoiseSchedule::ddpm());
        let large = small.clone().with_variance(PosteriorVariance::FixedLarge);
        let zeros = Tensor::<1>::zeros([1], &device);
        let ones = Tensor::<1>::ones([1], &device);
        let spread = |s: &DdpmScheduler| {
            let with = s.step(zeros.clone(), 10, zeros.clone(), Some(ones.clone()));
            let without = s.step(zeros.clone(), 10, zeros.clone(), Some(zeros.clone()));
            (with - without).into_scalar::<f32>() as f64
        };
        let schedule = NoiseSchedule::ddpm();
        let beta_tilde =
            (1.0 - schedule.alpha_bar(9)) / (1.0 - schedule.alpha_bar(10)) * schedule.beta(10);
        assert!((spread(&small) - beta_tilde.sqrt()).abs() < 1e-6);
        assert!((spread(&large) - schedule.beta(10).sqrt()).abs() < 1e-6);
    }
}
