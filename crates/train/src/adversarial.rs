//! What the GANs' training shares: a generator and its opponent (a discriminator or a critic),
//! each with its own optimizer, checkpointed under their record names, and the rule of the
//! game (the losses and the order of the updates) held apart by each model.

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Tensor;
use genmodels::dcgan::GENERATOR;
use genmodels::pytorch::PytorchNames;

use crate::optim::TrainedNetwork;
use crate::run::{CheckpointPart, Checkpointed};

/// A generator `G`, its opponent `D`, each with its optimizer, and `rule` the model's own
/// settings: `Adversarial<Generator, Discriminator, DcganSettings>` is the DCGAN.
pub struct Adversarial<G, D, R> {
    generator: TrainedNetwork<G>,
    opponent: TrainedNetwork<D>,
    /// The opponent's record name (`discriminator`, `critic`).
    opponent_name: &'static str,
    pub rule: R,
}

impl<G: Module, D: Module, R> Adversarial<G, D, R> {
    /// Both networks, `(generator, opponent)`, with fresh optimizers from `optimizer`.
    pub fn with_players(
        (generator, opponent): (G, D),
        opponent_name: &'static str,
        optimizer: impl Fn() -> ModuleOptimizer,
        rule: R,
    ) -> Self {
        Self {
            generator: TrainedNetwork::new(generator, optimizer()),
            opponent: TrainedNetwork::new(opponent, optimizer()),
            opponent_name,
            rule,
        }
    }

    pub fn generator(&self) -> &G {
        &self.generator.network
    }

    /// The discriminator or the critic.
    pub fn opponent(&self) -> &D {
        &self.opponent.network
    }

    /// The opponent with its weights held fixed, for the generator's step: the gradient reaches
    /// the generator through it, and none is computed for its own weights, which that step does
    /// not move (their weight-gradient passes are a third of the opponent's backward pass). Its
    /// batch-norm running statistics are shared with [`Self::opponent`], as for any clone.
    pub fn fixed_opponent(&self) -> D {
        self.opponent.network.clone().no_grad()
    }

    /// One optimizer step of the opponent down the gradient of `loss`.
    pub fn step_opponent(&mut self, lr: f64, loss: Tensor<1>) {
        self.opponent.step(loss, lr);
    }

    /// Replaces the opponent's weights with `f` of them (the clipped WGAN's critic), keeping its
    /// optimizer state.
    pub fn map_opponent(&mut self, f: impl FnOnce(D) -> D) {
        self.opponent.network = f(self.opponent.network.clone());
    }

    /// One optimizer step of the generator down the gradient of `loss`.
    pub fn step_generator(&mut self, lr: f64, loss: Tensor<1>) {
        self.generator.step(loss, lr);
    }
}

impl<G: Module + PytorchNames, D: Module + PytorchNames, R> Checkpointed for Adversarial<G, D, R> {
    fn parts(&mut self) -> Vec<(&'static str, &mut dyn CheckpointPart)> {
        vec![
            (GENERATOR, &mut self.generator),
            (self.opponent_name, &mut self.opponent),
        ]
    }
}

#[cfg(test)]
mod tests {
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Distribution, Tensor};
    use genmodels::dcgan::{DiscriminatorConfig, GeneratorConfig};

    use super::*;

    /// Through the fixed opponent the images get the same gradient as through the opponent
    /// itself (to 1e-6 relative), and the opponent's weights get none.
    #[test]
    fn the_fixed_opponent_passes_the_gradient_on_and_computes_none_for_itself() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let generator = GeneratorConfig::new().with_base_channels(16).init(&device);
        let opponent = DiscriminatorConfig::new()
            .with_base_channels(8)
            .init(&device);
        let game = Adversarial::with_players(
            (generator, opponent),
            "discriminator",
            || crate::adam::AdamConfig::new().init(),
            (),
        );
        let images = Tensor::<4>::random([4, 1, 28, 28], Distribution::Uniform(-1.0, 1.0), &device);
        let through = |opponent: &genmodels::dcgan::Discriminator| {
            let images = images.clone().detach().require_grad();
            let grads = opponent.forward(images.clone()).sum().backward();
            let image_grad = images.grad(&grads).expect("the images' gradient");
            let own = GradientsParams::from_grads(grads, opponent).len();
            (
                image_grad.into_data().try_to_vec::<f32>().expect("f32"),
                own,
            )
        };
        let (expected, own) = through(game.opponent());
        assert!(own > 0, "the opponent's own weights get gradients");
        let (got, own) = through(&game.fixed_opponent());
        assert_eq!(own, 0, "the fixed opponent's weights get none");
        let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0);
        for (i, (a, e)) in got.iter().zip(&expected).enumerate() {
            assert!((a - e).abs() <= 1e-6 * scale, "pixel {i}: {a} vs {e}");
        }
    }
}
