//! The variance schedule and the forward (noising) process of Ho, Jain & Abbeel (2020).
//!
//! Timesteps are 0-indexed, `t = 0..T-1`, as in diffusers: `alpha_bar[t] = prod_{s<=t} alpha_s`
//! is the signal left after noising steps 0..=t. Every coefficient is computed in `f64` on the
//! host and only the products with tensors happen in the tensors' precision.

use burn::tensor::{Device, Tensor, TensorData};

use super::DiffusionError;

/// The betas of a diffusion process and the products derived from them.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    betas: Vec<f64>,
    alphas: Vec<f64>,
    alpha_bars: Vec<f64>,
}

impl NoiseSchedule {
    /// The DDPM paper's schedule: 1000 steps, betas linear from 1e-4 to 0.02.
    pub fn ddpm() -> Self {
        Self::linear(1000, 1e-4, 0.02).expect("the paper's schedule is valid")
    }

    /// `beta_i = beta_start + i (beta_end - beta_start) / (T - 1)`, `i = 0..T-1` (the values of
    /// `torch.linspace(beta_start, beta_end, T)`).
    pub fn linear(
        num_steps: usize,
        beta_start: f64,
        beta_end: f64,
    ) -> Result<Self, DiffusionError> {
        let betas = match num_steps {
            0 => Vec::new(),
            1 => vec![beta_start],
            _ => {
                let step = (beta_end - beta_start) / (num_steps - 1) as f64;
                (0..num_steps)
                    .map(|i| beta_start + i as f64 * step)
                    .collect()
            }
        };
        Self::from_betas(betas)
    }

    /// A schedule from any betas, each in (0, 1].
    pub fn from_betas(betas: Vec<f64>) -> Result<Self, DiffusionError> {
        if betas.is_empty() {
            return Err(DiffusionError::EmptySchedule);
        }
        if let Some((index, &beta)) = betas
            .iter()
            .enumerate()
            .find(|(_, b)| !(**b > 0.0 && **b <= 1.0))
        {
            return Err(DiffusionError::BetaOutOfRange { index, beta });
        }
        let alphas: Vec<f64> = betas.iter().map(|beta| 1.0 - beta).collect();
        let alpha_bars = alphas
            .iter()
            .scan(1.0, |product, alpha| {
                *product *= alpha;
                Some(*product)
            })
            .collect();
        Ok(Self {
            betas,
            alphas,
            alpha_bars,
        })
    }

    /// The number of diffusion steps T.
    pub fn num_steps(&self) -> usize {
        self.betas.len()
    }

    /// `beta_t`, the variance of the noise added at step t.
    pub fn beta(&self, t: usize) -> f64 {
        self.betas[t]
    }

    /// `alpha_t = 1 - beta_t`.
    pub fn alpha(&self, t: usize) -> f64 {
        self.alphas[t]
    }

    /// `alpha_bar_t = prod_{s<=t} alpha_s`.
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alpha_bars[t]
    }

    /// `alpha_bar` before step `t`: `alpha_bar_{t-1}`, and 1 (no noise yet) before step 0.
    pub fn alpha_bar_before(&self, t: usize) -> f64 {
        t.checked_sub(1)
            .map_or(1.0, |previous| self.alpha_bars[previous])
    }

    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    pub fn alpha_bars(&self) -> &[f64] {
        &self.alpha_bars
    }

    /// Checks that `t` is a step of this schedule.
    pub fn check_timestep(&self, t: usize) -> Result<(), DiffusionError> {
        if t >= self.num_steps() {
            return Err(DiffusionError::TimestepOutOfRange {
                t,
                num_steps: self.num_steps(),
            });
        }
        Ok(())
    }

    /// One step of the forward process, a sample of q(x_t | x_{t-1}):
    ///
    /// `x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps`, with `eps ~ N(0, I)` given.
    pub fn forward_step<const D: usize>(
        &self,
        x_prev: Tensor<D>,
        noise: Tensor<D>,
        t: usize,
    ) -> Tensor<D> {
        let beta = self.beta(t);
        x_prev.mul_scalar((1.0 - beta).sqrt()) + noise.mul_scalar(beta.sqrt())
    }

    /// The closed form q(x_t | x_0), one `t` per sample of the batch (diffusers' `add_noise`):
    ///
    /// `x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`.
    ///
    /// `timesteps` has one entry per sample along the first axis of `x0`.
    pub fn add_noise<const D: usize>(
        &self,
        x0: Tensor<D>,
        noise: Tensor<D>,
        timesteps: &[usize],
    ) -> Tensor<D> {
        let device = x0.device();
        let signal = self.per_sample(timesteps, |t| self.alpha_bar(t).sqrt(), &device);
        let noise_scale = self.per_sample(timesteps, |t| (1.0 - self.alpha_bar(t)).sqrt(), &device);
        x0 * signal + noise * noise_scale
    }

    /// `coefficient(t)` for each sample, shaped `[B, 1, ..., 1]` to broadcast over a sample.
    fn per_sample<const D: usize>(
        &self,
        timesteps: &[usize],
        coefficient: impl Fn(usize) -> f64,
        device: &Device,
    ) -> Tensor<D> {
        let values: Vec<f32> = timesteps.iter().map(|&t| coefficient(t) as f32).collect();
        let mut shape = [1; D];
        shape[0] = timesteps.len();
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn tensor(rows: [[f32; 3]; 3]) -> Tensor<2> {
        Tensor::from_floats(rows, &Device::flex())
    }

    fn assert_close(actual: Tensor<2>, expected: [[f32; 3]; 3], tolerance: f32) {
        let actual = actual.into_data().try_to_vec::<f32>().unwrap();
        for (index, (a, e)) in actual.iter().zip(expected.as_flattened()).enumerate() {
            assert!((a - e).abs() <= tolerance, "element {index}: {a} vs {e}");
        }
    }

    #[test]
    fn linear_betas_are_the_linspace_values() {
        let schedule = NoiseSchedule::ddpm();
        assert_eq!(schedule.num_steps(), 1000);
        assert_eq!(schedule.beta(0), 1e-4);
        assert!((schedule.beta(999) - 0.02).abs() < 1e-15);
        // beta_1 = 1e-4 + 0.0199 / 999, beta_2 = 1e-4 + 2 * 0.0199 / 999.
        assert!((schedule.beta(1) - 1.199_199_2e-4).abs() < 1e-12);
        assert!((schedule.beta(2) - 1.398_398_4e-4).abs() < 1e-12);
        let three = NoiseSchedule::linear(3, 0.1, 0.3).unwrap();
        assert_eq!(three.betas().len(), 3);
        assert!((three.beta(1) - 0.2).abs() < 1e-15);
        // alpha_bar_2 = 0.9 * 0.8 * 0.7 by hand.
        assert!((three.alpha_bar(2) - 0.504).abs() < 1e-15);
        assert_eq!(three.alpha_bar_before(0), 1.0);
        assert!((three.alpha_bar_before(2) - 0.72).abs() < 1e-15);
    }

    #[test]
    fn alpha_bar_decreases_to_almost_no_signal() {
        let schedule = NoiseSchedule::ddpm();
        let alpha_bars = schedule.alpha_bars();
        assert!(alpha_bars.windows(2).all(|pair| pair[1] < pair[0]));
        assert!(alpha_bars[0] < 1.0);
        // prod (1 - beta_t) over the 1000 steps is about 4.0e-5.
        assert!(alpha_bars[999] < 1e-4, "{}", alpha_bars[999]);
        assert!(alpha_bars[999] > 3e-5, "{}", alpha_bars[999]);
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert_eq!(
            NoiseSchedule::from_betas(vec![]),
            Err(DiffusionError::EmptySchedule)
        );
        assert_eq!(
            NoiseSchedule::linear(10, 0.0, 0.02),
            Err(DiffusionError::BetaOutOfRange {
                index: 0,
                beta: 0.0
            })
        );
        assert!(matches!(
            NoiseSchedule::from_betas(vec![0.1, f64::NAN]),
            Err(DiffusionError::BetaOutOfRange { index: 1, .. })
        ));
        let schedule = NoiseSchedule::ddpm();
        assert!(schedule.check_timestep(999).is_ok());
        let message = schedule.check_timestep(1000).unwrap_err().to_string();
        assert!(
            message.contains("1000") && message.contains("0..=999"),
            "{message}"
        );
    }

    /// The worked example: two forward steps with the schedule's beta_1 and beta_2.
    #[test]
    fn two_forward_steps_match_the_worked_example() {
        let schedule = NoiseSchedule::ddpm();
        let x0 = tensor([[0.8, 0.5, 0.9], [0.1, 1.0, 0.6], [0.4, 0.6, 0.3]]);
        let eps1 = tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, -1.0, 1.0]]);
        let eps2 = eps1.clone().mul_scalar(2.0);
        let x1 = schedule.forward_step(x0, eps1, 1);
        let x2 = schedule.forward_step(x1.clone(), eps2, 2);
        assert_close(
            x1,
            [
                [0.81090, 0.48902, 0.91090],
                [0.08904, 1.01089, 0.61091],
                [0.41093, 0.58901, 0.31093],
            ],
            1e-4,
        );
        assert_close(
            x2,
            [
                [0.83449, 0.46534, 0.93448],
                [0.06539, 1.03447, 0.63452],
                [0.43454, 0.56533, 0.33456],
            ],
            1e-4,
        );
    }

    #[test]
    fn add_noise_uses_each_samples_own_timestep() {
        let schedule = NoiseSchedule::ddpm();
        let device = Device::flex();
        let x0 = Tensor::<3>::from_floats([[[0.5, -0.5]], [[0.5, -0.5]]], &device);
        let noise = Tensor::<3>::from_floats([[[1.0, 2.0]], [[1.0, 2.0]]], &device);
        let noised = schedule
            .add_noise(x0, noise, &[0, 999])
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (sample, t) in [(0, 0), (1, 999)] {
            let (signal, scale) = (
                schedule.alpha_bar(t).sqrt(),
                (1.0 - schedule.alpha_bar(t)).sqrt(),
            );
            let expected = [0.5 * signal + scale, -0.5 * signal + 2.0 * scale];
            for (k, e) in expected.iter().enumerate() {
                let actual = noised[sample * 2 + k] as f64;
                assert!(
                    (actual - e).abs() < 1e-6,
                    "sample {sample}: {actual} vs {e}"
                );
            }
        }
    }

    /// Iterating q(x_t | x_{t-1}) and drawing q(x_t | x_0) once give the same distribution:
    /// mean `sqrt(alpha_bar_t) x0` and variance `1 - alpha_bar_t`.
    #[test]
    fn the_closed_form_matches_iterated_steps_in_mean_and_variance() {
        let schedule = NoiseSchedule::ddpm();
        let device = Device::flex();
        device.seed(3);
        let (samples, t) = (20_000, 299);
        let x0_value = 0.7f64;
        let x0 = Tensor::<1>::full([samples], x0_value, &device);
        let normal = || Tensor::<1>::random([samples], Distribution::Normal(0.0, 1.0), &device);
        let mut iterated = x0.clone();
        for step in 0..=t {
            iterated = schedule.forward_step(iterated, normal(), step);
        }
        let closed = schedule.add_noise(x0, normal(), &vec![t; samples]);

        let expected_mean = schedule.alpha_bar(t).sqrt() * x0_value;
        let expected_var = 1.0 - schedule.alpha_bar(t);
        for (name, draws) in [("iterated", iterated), ("closed form", closed)] {
            let values = draws.into_data().try_to_vec::<f32>().unwrap();
            let n = values.len() as f64;
            let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = values
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / (n - 1.0);
            // Standard errors at n = 20000: mean 0.0063 sqrt(var), variance sqrt(2/n) var = 0.01 var.
            let mean_tolerance = 4.0 * (expected_var / n).sqrt();
            assert!(
                (mean - expected_mean).abs() < mean_tolerance,
                "{name}: mean {mean} vs {expected_mean}"
            );
            assert!(
                (var - expected_var).abs() < 0.04 * expected_var,
                "{name}: var {var} vs {expected_var}"
            );
        }
    }
}
