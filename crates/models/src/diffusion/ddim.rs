//! DDIM sampling (Song, Meng & Ermon, 2021): the non-Markovian reverse process that shares
//! DDPM's marginals q(x_t | x_0), so a network trained for DDPM samples in a few tens of steps.
//! `eta = 0` is deterministic; `eta = 1` has DDPM's posterior variance on the subsequence.

use burn::tensor::Tensor;

use super::{DiffusionError, NoiseSchedule, Sampler, Scheduler, leading_timesteps, predict_x0};

/// The DDIM reverse process over a "leading" subsequence of the schedule's timesteps.
pub type DdimScheduler = Scheduler<Ddim>;

/// The DDIM step, with the weight `eta` of its fresh noise.
#[derive(Debug, Clone, Copy)]
pub struct Ddim {
    eta: f64,
}

impl DdimScheduler {
    /// 50 steps (980, 960, ..., 0 for T = 1000), eta = 0, x0_hat clipped to [-1, 1].
    pub fn new(schedule: NoiseSchedule) -> Self {
        let steps = schedule.num_steps().min(50);
        let timesteps = leading_timesteps(schedule.num_steps(), steps).expect("1 <= steps <= T");
        Self::with_rule(schedule, timesteps, Ddim { eta: 0.0 })
    }

    /// The weight of the fresh noise: `sigma_t = eta sqrt(beta_tilde_t)` on the subsequence.
    pub fn with_eta(mut self, eta: f64) -> Result<Self, DiffusionError> {
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(DiffusionError::Eta(eta));
        }
        self.rule.eta = eta;
        Ok(self)
    }

    pub fn eta(&self) -> f64 {
        self.rule.eta
    }
}

/// Equation 12 of Song et al.:
///
/// `x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma_t^2) eps + sigma_t noise`,
///
/// with `x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)`, clipped when asked
/// (the direction term keeps the network's own eps, as diffusers does by default).
impl Sampler for DdimScheduler {
    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// `sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma_t^2) eps`.
    fn mean<const D: usize>(&self, eps: Tensor<D>, t: usize, x_t: Tensor<D>) -> Tensor<D> {
        let alpha_bar = self.schedule.alpha_bar(t);
        let alpha_bar_prev = self.alpha_bar_prev(t);
        let variance = self.noise_variance(t);

        let x0_hat = predict_x0(x_t, eps.clone(), alpha_bar, self.clip_sample);
        let direction = eps.mul_scalar((1.0 - alpha_bar_prev - variance).sqrt());
        x0_hat.mul_scalar(alpha_bar_prev.sqrt()) + direction
    }

    /// `sigma_t^2 = eta^2 (1 - alpha_bar_prev) / (1 - alpha_bar_t) (1 - alpha_bar_t / alpha_bar_prev)`.
    fn noise_variance(&self, t: usize) -> f64 {
        let (alpha_bar, alpha_bar_prev) = (self.schedule.alpha_bar(t), self.alpha_bar_prev(t));
        let posterior =
            (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev);
        self.rule.eta * self.rule.eta * posterior
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::assert_near;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn fifty_steps_visit_980_down_to_0() {
        let scheduler = DdimScheduler::new(NoiseSchedule::ddpm());
        let expected: Vec<usize> = (0..50).rev().map(|k| 20 * k).collect();
        assert_eq!(scheduler.timesteps(), expected.as_slice());
        assert_eq!(scheduler.timesteps()[0], 980);
        let mut ten = scheduler.clone();
        ten.set_timesteps(10).unwrap();
        assert_eq!(
            ten.timesteps(),
            [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
        );
        assert!(ten.set_timesteps(0).is_err());
        let eta = DdimScheduler::new(NoiseSchedule::ddpm())
            .with_eta(-0.5)
            .unwrap_err();
        assert!(eta.to_string().contains("-0.5"));
    }

    /// eta = 0: no noise is asked for, and the same x_T gives the same x_0 every time.
    #[test]
    fn eta_zero_is_deterministic() {
        let mut scheduler = DdimScheduler::new(NoiseSchedule::ddpm());
        scheduler.set_timesteps(10).unwrap();
        let device = Device::flex();
        let x_start = Tensor::<2>::random([3, 5], Distribution::Normal(0.0, 1.0), &device);
        // A fixed stand-in for the network: eps(x, t) = 0.5 x + t / 1000.
        let run = || {
            let mut x = x_start.clone();
            for &t in scheduler.timesteps() {
                assert!(!scheduler.needs_noise(t));
                let eps = x.clone().mul_scalar(0.5).add_scalar(t as f64 / 1000.0);
                x = scheduler.step(eps, t, x, None);
            }
            x
        };
        let (first, second) = (run(), run());
        assert!(first.clone().all_close(second, Some(0.0), Some(0.0)));
        let values = first.into_data().try_to_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
    }

    /// The first step of eta = 0 by hand: alpha_bar at 980 and 960 of the linear schedule.
    #[test]
    fn a_deterministic_step_by_hand() {
        let schedule = NoiseSchedule::ddpm();
        let scheduler = DdimScheduler::new(schedule.clone()).with_clip_sample(false);
        let device = Device::flex();
        let (x, e) = (0.3f64, -0.8f64);
        let out = scheduler.step(
            Tensor::<1>::from_floats([e as f32], &device),
            980,
            Tensor::<1>::from_floats([x as f32], &device),
            None,
        );
        let (a, a_prev) = (schedule.alpha_bar(980), schedule.alpha_bar(960));
        let x0 = (x - (1.0 - a).sqrt() * e) / a.sqrt();
        let expected = a_prev.sqrt() * x0 + (1.0 - a_prev).sqrt() * e;
        assert_near(out.into_scalar::<f32>() as f64, expected, 1e-5, "x_prev");
    }

    /// With eta = 1 and every timestep visited, sigma_t^2 is DDPM's beta_tilde_t.
    #[test]
    fn eta_one_over_all_steps_has_the_ddpm_posterior_variance() {
        let schedule = NoiseSchedule::ddpm();
        let mut scheduler = DdimScheduler::new(schedule.clone()).with_eta(1.0).unwrap();
        scheduler.set_timesteps(1000).unwrap();
        for t in [1, 10, 500, 999] {
            let beta_tilde = (1.0 - schedule.alpha_bar(t - 1)) / (1.0 - schedule.alpha_bar(t))
                * schedule.beta(t);
            let variance = scheduler.noise_variance(t);
            assert!(
                (variance - beta_tilde).abs() < 1e-12 * beta_tilde.max(1e-3),
                "t {t}: {variance} vs {beta_tilde}"
            );
        }
        assert!(scheduler.needs_noise(500));
        assert!(!scheduler.needs_noise(0));
    }
}
