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
