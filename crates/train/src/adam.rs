//! Adam (Kingma & Ba, 2015) with its update in one pass over each parameter
//! ([`genmodels_kernels::adam_step`]), as an optimizer for burn's `ModuleOptimizer`.
//!
//! It computes what `burn::optim::Adam` computes (the bias corrections folded into the step
//! size, ε scaled by `√(1 − β₂ᵗ)`), and keeps its state in burn's own `AdamState`, so that
//! checkpoints written by either load into the other. burn's takes a dozen whole-tensor passes
//! per parameter, each allocating and, on flex, each on one thread below 4M floats.

use burn::config::Config;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};
use genmodels_kernels::{AdamStep, adam_step};

/// Adam's settings, with burn's `AdamConfig`'s names and defaults (ε = 1e-5, not PyTorch's
/// 1e-8). AMSGrad is not offered.
#[derive(Config, Debug)]
pub struct AdamConfig {
    /// The decay of the first moment, β₁.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// The decay of the second moment, β₂.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// ε, added to `√v̂` in the denominator.
    #[config(default = 1e-5)]
    pub epsilon: f32,
    /// An L2 penalty `λ · θ` added to the gradient (not AdamW's decoupled decay).
    pub weight_decay: Option<WeightDecayConfig>,
}

impl AdamConfig {
    /// The optimizer for a whole module.
    pub fn init(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(Adam {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self
                .weight_decay
                .as_ref()
                .map_or(0.0, |decay| decay.penalty),
        })
    }
}

/// Adam for one parameter at a time, built by [`AdamConfig::init`].
#[derive(Debug, Clone)]
pub struct Adam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

impl Optimizer for Adam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        // Before the first step both moments are zero.
        let (moment_1, moment_2, time) = match state {
            Some(state) => {
                let momentum = state.momentum;
                (momentum.moment_1, momentum.moment_2, momentum.time + 1)
            }
            None => (grad.zeros_like(), grad.zeros_like(), 1),
        };
        let step = AdamStep {
            learning_rate: lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            time,
        };
        let (tensor, moment_1, moment_2) = adam_step(tensor, grad, moment_1, moment_2, step);
        let momentum = AdaptiveMomentumState::new(time, moment_1, moment_2);
        (tensor, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamState::new(state.momentum.to_device(device))
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::Distribution;

    use super::*;
    use crate::optim::parameter_values;

    /// `steps` steps of `optim` on `layer`, on the loss `mean((layer(x) − 1)²)` at learning rate
    /// 1e-2: the weights after them.
    fn train(layer: &Linear, mut optim: ModuleOptimizer, x: &Tensor<2>, steps: usize) -> Vec<f32> {
        let mut layer = layer.clone();
        for _ in 0..steps {
            let loss = (layer.forward(x.clone()) - 1.0).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            layer = optim.step(1e-2, layer, grads);
        }
        parameter_values(&layer)
    }

    /// Twelve steps from the same weights land where burn's Adam lands, with and without the L2
    /// penalty and at PyTorch's ε: within 1e-5 of the weights' scale (the two round the step's
    /// factors in a different order, a few ulp per step), on flex (the fused pass) and on
    /// ndarray (burn's ops). The weights move by up to about 0.05, so a wrong moment, correction or
    /// penalty shows far above that tolerance.
    #[test]
    fn steps_land_where_burns_adam_lands() {
        #[allow(deprecated)] // ndarray stays available for comparisons
        let ndarray = Device::ndarray();
        for device in [Device::flex().autodiff(), ndarray.autodiff()] {
            device.seed(11);
            // 300 x 250 weights: three chunks of the fused pass, the last one short.
            let layer = LinearConfig::new(300, 250).init(&device);
            let x = Tensor::<2>::random([16, 300], Distribution::Normal(0.0, 1.0), &device);
            let start = parameter_values(&layer);
            for (decay, epsilon) in [(None, 1e-5), (Some(0.05), 1e-5), (None, 1e-8)] {
                let decay = decay.map(WeightDecayConfig::new);
                let ours = AdamConfig::new()
                    .with_epsilon(epsilon)
                    .with_weight_decay(decay.clone())
                    .init();
                let burns = burn::optim::AdamConfig::new()
                    .with_epsilon(epsilon)
                    .with_weight_decay(decay)
                    .init();
                let (ours, burns) = (train(&layer, ours, &x, 12), train(&layer, burns, &x, 12));
                let moved = start.iter().zip(&burns).map(|(a, b)| (a - b).abs());
                let moved = moved.fold(0.0f32, f32::max);
                assert!(moved > 0.03, "the steps moved the weights by {moved}");
                for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
                    assert!((a - b).abs() <= 1e-5, "weight {i}: {a} against burn's {b}");
                }
            }
        }
    }

    /// The state our steps leave is burn's `AdamState`: burn's Adam goes on from it as if it
    /// had taken the first steps itself.
    #[test]
    fn burns_adam_continues_from_our_state() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let layer = LinearConfig::new(20, 10).init(&device);
        let x = Tensor::<2>::random([8, 20], Distribution::Normal(0.0, 1.0), &device);
        let step = |layer: Linear, optim: &mut ModuleOptimizer| {
            let loss = (layer.forward(x.clone()) - 1.0).powi_scalar(2).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            optim.step(1e-2, layer, grads)
        };
        let (mut ours, mut burns) = (
            AdamConfig::new().init(),
            burn::optim::AdamConfig::new().init(),
        );
        let (mut mixed, mut reference) = (layer.clone(), layer);
        for _ in 0..3 {
            mixed = step(mixed, &mut ours);
            reference = step(reference, &mut burns);
        }
        let mut continued = burn::optim::AdamConfig::new()
            .init()
            .from_bytes(ours.into_bytes().expect("our state as bytes"))
            .expect("burn's Adam reads our state");
        for _ in 0..3 {
            mixed = step(mixed, &mut continued);
            reference = step(reference, &mut burns);
        }
        let (mixed, reference) = (parameter_values(&mixed), parameter_values(&reference));
        for (i, (a, b)) in mixed.iter().zip(&reference).enumerate() {
            assert!((a - b).abs() <= 1e-5, "weight {i}: {a} against {b}");
        }
    }
}
