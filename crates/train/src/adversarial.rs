//! What the GANs' training shares: a generator and its opponent (a discriminator or a critic),
//! each with its own optimizer, checkpointed under their record names, and the rule of the
//! game (the losses and the order of the updates) held apart by each model.

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use genmodels::dcgan::GENERATOR;
use genmodels::pytorch::{PytorchNames, load_pytorch};

use crate::checkpoint::{Checkpoint, TrainingState};
use crate::interop::export_network;
use crate::run::{Checkpointed, RunDir};

/// A generator `G`, its opponent `D` and their optimizers, with `rule` the model's own
/// settings: `Adversarial<Generator, Discriminator, DcganSettings>` is the DCGAN.
pub struct Adversarial<G, D, R> {
    pub generator: G,
    pub opponent: D,
    optim_g: ModuleOptimizer,
    optim_d: ModuleOptimizer,
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
            generator,
            opponent,
            optim_g: optimizer(),
            optim_d: optimizer(),
            opponent_name,
            rule,
        }
    }

    /// One optimizer step of the opponent down the gradient of `loss`.
    pub fn step_opponent(&mut self, lr: f64, loss: Tensor<1>) {
        let grads = GradientsParams::from_grads(loss.backward(), &self.opponent);
        self.opponent = self.optim_d.step(lr, self.opponent.clone(), grads);
    }

    /// One optimizer step of the generator down the gradient of `loss`.
    pub fn step_generator(&mut self, lr: f64, loss: Tensor<1>) {
        let grads = GradientsParams::from_grads(loss.backward(), &self.generator);
        self.generator = self.optim_g.step(lr, self.generator.clone(), grads);
    }
}

impl<G: Module + PytorchNames, D: Module + PytorchNames, R> Checkpointed for Adversarial<G, D, R> {
    fn load(self, checkpoint: &Checkpoint) -> Result<Self> {
        Ok(Self {
            generator: checkpoint.load_module(GENERATOR, self.generator)?,
            opponent: checkpoint.load_module(self.opponent_name, self.opponent)?,
            optim_g: checkpoint.load_optimizer(GENERATOR, self.optim_g)?,
            optim_d: checkpoint.load_optimizer(self.opponent_name, self.optim_d)?,
            ..self
        })
    }

    fn save(&self, run: &RunDir, state: &TrainingState) -> Result<Checkpoint> {
        let writer = run.checkpoints.begin(state.step)?;
        writer.module(GENERATOR, &self.generator)?;
        writer.module(self.opponent_name, &self.opponent)?;
        writer.optimizer(GENERATOR, &self.optim_g)?;
        writer.optimizer(self.opponent_name, &self.optim_d)?;
        writer.commit(state)
    }

    fn networks(&self) -> Vec<&'static str> {
        vec![GENERATOR, self.opponent_name]
    }

    fn init_from(self, network: &str, file: &Path) -> Result<Self> {
        Ok(if network == GENERATOR {
            Self {
                generator: load_pytorch(self.generator, file)?,
                ..self
            }
        } else {
            Self {
                opponent: load_pytorch(self.opponent, file)?,
                ..self
            }
        })
    }

    fn export(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        Ok(vec![
            export_network(dir, GENERATOR, &self.generator)?,
            export_network(dir, self.opponent_name, &self.opponent)?,
        ])
    }
}
