//! Helpers around the optimizer step: a network with its optimizer ([`TrainedNetwork`]), an
//! exponential moving average of the weights, clipping the gradients to a global norm, and the
//! three together as a diffusion model trains its network ([`AveragedNetwork`]).

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};

use crate::adam::AdamConfig;
use burn::tensor::{Gradients, Tensor};
use genmodels::pytorch::{PytorchNames, load_pytorch};

use crate::checkpoint::{Checkpoint, CheckpointWriter};
use crate::fit::StepMetrics;
use crate::interop::export_network;
use crate::run::CheckpointPart;

/// The name of the moving average's record in a checkpoint, `ema.bpk`.
pub use genmodels::diffusion::EMA;

/// An exponential moving average of a module's weights, kept off the autodiff graph:
/// `ema <- d ema + (1 - d) theta` after every optimizer step, with the warm-up of diffusers'
/// `EMAModel`, `d = min(decay, (1 + n) / (10 + n))` at update n, so that early samples are not
/// dominated by the random initialisation.
#[derive(Debug, Clone)]
pub struct Ema<M> {
    pub model: M,
    pub decay: f64,
}

impl<M: Module> Ema<M> {
    /// Starts the average at the module's current weights.
    pub fn new(model: &M, decay: f64) -> Self {
        Self {
            model: model.valid(),
            decay,
        }
    }

    /// The decay used at update `n` (1-based).
    pub fn decay_at(&self, update: u64) -> f64 {
        let warmup = (1.0 + update as f64) / (10.0 + update as f64);
        self.decay.min(warmup)
    }

    /// Moves the average towards `model`'s weights; `update` counts from 1.
    pub fn update(&mut self, model: &M, update: u64) {
        let decay = self.decay_at(update);
        let mut collector = CollectWeights::default();
        model.visit(&mut collector);
        let mut blend = BlendWeights {
            weights: collector.weights.into_iter(),
            decay,
        };
        self.model = self.model.clone().map(&mut blend);
    }
}

/// A network and its optimizer's state: what most models train. One optimisation step is
/// [`TrainedNetwork::step`].
pub struct TrainedNetwork<M> {
    pub network: M,
    optim: ModuleOptimizer,
}

impl<M: Module> TrainedNetwork<M> {
    /// `network` (on an autodiff device) with a fresh optimizer.
    pub fn new(network: M, optim: ModuleOptimizer) -> Self {
        Self { network, optim }
    }

    /// One optimizer step at learning rate `lr` down the gradient of `loss`.
    pub fn step(&mut self, loss: Tensor<1>, lr: f64) {
        self.step_with(&mut loss.backward(), lr);
    }

    /// One optimizer step at learning rate `lr` on this network's share of `grads`, the
    /// gradients of a loss that several networks minimise together (BiGAN's G and E), taken
    /// out of `grads`.
    pub fn step_with(&mut self, grads: &mut Gradients, lr: f64) {
        let grads = GradientsParams::from_module(grads, &self.network);
        self.network = self.optim.step(lr, self.network.clone(), grads);
    }

    /// [`TrainedNetwork::step`] with the gradient's global norm clipped at `max_grad_norm`.
    /// Returns the norm before clipping.
    pub fn step_clipped(&mut self, loss: Tensor<1>, lr: f64, max_grad_norm: f64) -> Tensor<1> {
        let grads = GradientsParams::from_grads(loss.backward(), &self.network);
        let (grads, norm) = clip_grad_norm(grads, &self.network, max_grad_norm);
        self.network = self.optim.step(lr, self.network.clone(), grads);
        norm
    }
}

/// `<name>.bpk` and the optimizer's state under the same name.
impl<M: Module + PytorchNames> CheckpointPart for TrainedNetwork<M> {
    fn save(&self, writer: &CheckpointWriter, name: &str) -> Result<()> {
        writer.module(name, &self.network)?;
        writer.optimizer(name, &self.optim)
    }

    fn load(&mut self, checkpoint: &Checkpoint, name: &str) -> Result<()> {
        self.network = checkpoint.load_module(name, self.network.clone())?;
        self.optim = checkpoint.load_optimizer(name, self.optim.clone())?;
        Ok(())
    }

    fn init_from(&mut self, file: &Path) -> Result<()> {
        self.network = load_pytorch(self.network.clone(), file)?;
        Ok(())
    }

    fn export(&self, dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
        Ok(vec![export_network(dir, name, &self.network)?])
    }
}

/// A network, its Adam state and the moving average of its weights that draws the samples:
/// what a diffusion model trains. One optimisation step is [`AveragedNetwork::step`].
pub struct AveragedNetwork<M> {
    pub trained: TrainedNetwork<M>,
    pub ema: Ema<M>,
}

impl<M: Module + PytorchNames> AveragedNetwork<M> {
    /// `network` (on an autodiff device), fresh Adam state and an average starting at its
    /// weights.
    pub fn new(network: M, optimizer: &AdamConfig, decay: f64) -> Self {
        Self {
            ema: Ema::new(&network, decay),
            trained: TrainedNetwork::new(network, optimizer.init()),
        }
    }

    /// The network being trained.
    pub fn network(&self) -> &M {
        &self.trained.network
    }

    /// One Adam step at learning rate `lr` on `loss`, the gradient's global norm clipped at
    /// `max_grad_norm`, then average update number `step`. Returns the norm before clipping.
    pub fn step(&mut self, loss: Tensor<1>, lr: f64, max_grad_norm: f64, step: u64) -> Tensor<1> {
        let norm = self.trained.step_clipped(loss, lr, max_grad_norm);
        self.ema.update(&self.trained.network, step);
        norm
    }

    /// The step of the simplified DDPM objective (Ho et al., 2020, eq. 14): [`Self::step`] on
    /// `mean ||eps - eps_theta||^2` for the network's prediction `predicted` of `noise`.
    /// Reports `loss` and `grad_norm` (before clipping).
    pub fn noise_prediction_step<const D: usize>(
        &mut self,
        predicted: Tensor<D>,
        noise: Tensor<D>,
        lr: f64,
        max_grad_norm: f64,
        step: u64,
    ) -> StepMetrics {
        let loss = (predicted - noise).square().mean();
        let norm = self.step(loss.clone(), lr, max_grad_norm, step);
        StepMetrics::new()
            .with("loss", loss.detach().inner())
            .with("grad_norm", norm)
    }
}

/// The network `<name>.bpk` with its optimizer, and the average `ema.bpk`.
impl<M: Module + PytorchNames> CheckpointPart for AveragedNetwork<M> {
    fn save(&self, writer: &CheckpointWriter, name: &str) -> Result<()> {
        self.trained.save(writer, name)?;
        writer.module(EMA, &self.ema.model)
    }

    fn load(&mut self, checkpoint: &Checkpoint, name: &str) -> Result<()> {
        self.trained.load(checkpoint, name)?;
        self.ema.model = checkpoint.load_module(EMA, self.ema.model.clone())?;
        Ok(())
    }

    /// The network and its average both start from the weights of a PyTorch file.
    fn init_from(&mut self, file: &Path) -> Result<()> {
        self.trained.init_from(file)?;
        self.ema = Ema::new(&self.trained.network, self.ema.decay);
        Ok(())
    }

    /// `<name>.safetensors` and `ema.safetensors` in `dir`.
    fn export(&self, dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
        let mut files = self.trained.export(dir, name)?;
        files.push(export_network(dir, EMA, &self.ema.model)?);
        Ok(files)
    }
}

/// Every float parameter of `module`, flattened in visiting order: whether a step moved it. (A
/// sum over them would not do: a step of 2e-4 per weight can cancel out or round away in it.)
#[cfg(test)]
pub(crate) fn parameter_values<M: Module>(module: &M) -> Vec<f32> {
    let mut collect = CollectWeights::default();
    module.visit(&mut collect);
    collect
        .weights
        .into_iter()
        .flat_map(|weight| weight.into_data().try_to_vec::<f32>().unwrap())
        .collect()
}

/// Every float parameter, flattened, in visiting order and detached from the graph.
#[derive(Default)]
struct CollectWeights {
    weights: Vec<Tensor<1>>,
}

impl ModuleVisitor for CollectWeights {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.weights.push(param.val().inner().flatten(0, D - 1));
    }
}

/// `ema <- decay ema + (1 - decay) weight`, parameter by parameter in the same order.
struct BlendWeights {
    weights: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for BlendWeights {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let weight = self.weights.next().expect("the same architecture");
        let decay = self.decay;
        param.map(|ema| {
            let weight = weight.reshape(ema.shape());
            ema.mul_scalar(decay) + weight.mul_scalar(1.0 - decay)
        })
    }
}

/// Scales all gradients together so that their global L2 norm is at most `max_norm`, as
/// PyTorch's `clip_grad_norm_`: `g <- g min(1, max_norm / (||g|| + 1e-6))`. Returns the clipped
/// gradients and the norm before clipping, `[1]`, on the device (no synchronisation).
pub fn clip_grad_norm<M: Module>(
    grads: GradientsParams,
    module: &M,
    max_norm: f64,
) -> (GradientsParams, Tensor<1>) {
    let mut norm = SquaredNorm {
        grads: &grads,
        sum: None,
    };
    module.visit(&mut norm);
    let norm = norm
        .sum
        .expect("the module has parameters with gradients")
        .sqrt();
    let scale = norm
        .clone()
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    let mut scaler = ScaleGradients { grads, scale };
    module.visit(&mut scaler);
    (scaler.grads, norm)
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let squared = grad.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + squared,
                None => squared,
            });
        }
    }
}

struct ScaleGradients {
    grads: GradientsParams,
    scale: Tensor<1>,
}

impl ModuleVisitor for ScaleGradients {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let id: ParamId = param.id;
        if let Some(grad) = self.grads.remove::<D>(id) {
            let scale = self.scale.clone().reshape([1; D]);
            self.grads.register(id, grad * scale);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    fn weights(layer: &Linear) -> Vec<f32> {
        layer.weight.val().into_data().try_to_vec::<f32>().unwrap()
    }

    /// The gradient of parameter `id` in `grads`, flattened.
    fn gradient<const D: usize>(grads: &GradientsParams, id: ParamId) -> Vec<f32> {
        let gradient = grads.get::<D>(id).unwrap();
        gradient.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn ema_update_by_hand() {
        let device = Device::flex();
        let start = LinearConfig::new(2, 1).init(&device);
        let mut ema = Ema::new(&start, 0.999);
        // Update 1 uses min(0.999, 2/11), update 1000 1001/1010, update 100000 0.999.
        assert!((ema.decay_at(1) - 2.0 / 11.0).abs() < 1e-15);
        assert!((ema.decay_at(1000) - 1001.0 / 1010.0).abs() < 1e-15);
        assert_eq!(ema.decay_at(100_000), 0.999);
        let mut moved = start.clone();
        moved.weight = moved.weight.map(|w| w.add_scalar(1.0));
        ema.update(&moved, 1);
        let d = 2.0 / 11.0;
        for (e, s) in weights(&ema.model).iter().zip(weights(&start)) {
            let expected = d * s as f64 + (1.0 - d) * (s as f64 + 1.0);
            assert!((*e as f64 - expected).abs() < 1e-6, "{e} vs {expected}");
        }
        ema.update(&moved, 100_000);
        let d2 = 0.999;
        for (e, s) in weights(&ema.model).iter().zip(weights(&start)) {
            let after_first = d * s as f64 + (1.0 - d) * (s as f64 + 1.0);
            let expected = d2 * after_first + (1.0 - d2) * (s as f64 + 1.0);
            assert!((*e as f64 - expected).abs() < 1e-6, "{e} vs {expected}");
        }
    }

    #[test]
    fn gradients_are_clipped_to_the_global_norm() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::from_floats([[1.0, 2.0, 3.0]], &device);
        // loss = 10 * sum(W x + b): dL/dW = 10 x per row, dL/db = 10.
        let loss = layer.forward(x).sum().mul_scalar(10.0);
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        let (clipped, norm) = clip_grad_norm(grads, &layer, 1.0);
        // ||g||^2 = 2 * 100 * (1 + 4 + 9) + 2 * 100 = 3000.
        let norm = norm.into_scalar::<f32>() as f64;
        assert!((norm - 3000f64.sqrt()).abs() < 1e-3, "{norm}");
        let bias_id = layer.bias.as_ref().unwrap().id;
        let weight = gradient::<2>(&clipped, layer.weight.id);
        let bias = gradient::<1>(&clipped, bias_id);
        let total: f64 = weight
            .iter()
            .chain(&bias)
            .map(|&g| (g as f64).powi(2))
            .sum();
        assert!((total.sqrt() - 1.0).abs() < 1e-5, "{}", total.sqrt());
        // The direction is kept: every entry scaled by 1 / sqrt(3000).
        assert!((bias[0] as f64 - 10.0 / 3000f64.sqrt()).abs() < 1e-5);
        // Small gradients pass unchanged.
        let loss = layer
            .forward(Tensor::<2>::from_floats([[0.01, 0.0, 0.0]], &device))
            .sum()
            .mul_scalar(0.01);
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        let (kept, _) = clip_grad_norm(grads, &layer, 1.0);
        let bias = gradient::<1>(&kept, bias_id);
        assert!(bias.iter().all(|b| (b - 0.01).abs() < 1e-7), "{bias:?}");
    }
}
