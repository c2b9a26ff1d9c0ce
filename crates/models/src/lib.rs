//! Generative models for 28x28 images, written against the equations of their papers.
//!
//! Every network is one struct built from a `Config`; the maths that is not a network
//! (losses, output-size formulas, initialisation) lives beside it as plain functions so it can
//! be read and tested on its own.
//!
//! - [`cgan`]: the conditional GAN (Mirza & Osindero, 2014) on DCGAN networks.
//! - [`checkpoint`]: reading a run folder: its settings and its networks' trained weights.
//! - [`classifier`]: the Fashion-MNIST CNN whose penultimate layer is the feature space of FID.
//! - [`dcgan`]: the DCGAN generator and discriminator (Radford et al., 2016).
//! - [`diffusion`]: DDPM (Ho et al., 2020): noise schedule, DDPM and DDIM samplers, the U-Net;
//!   latent diffusion on a VAE's codes with classifier-free guidance.
//! - [`flow`]: RealNVP (Dinh et al., 2017): affine couplings, squeeze and factor-out, ActNorm,
//!   and the exact negative log-likelihood in bits per dimension.
//! - [`fid`]: the Fréchet distance between feature statistics, streamed in batches, in f64.
//! - [`gan_loss`]: the GAN objectives of Goodfellow et al. (2014), computed from logits.
//! - [`image_source`]: [`ImageSource`], the one interface of everything that draws images.
//! - [`infogan`]: InfoGAN (Chen et al., 2016): DCGAN networks with a categorical and two
//!   continuous codes, and the auxiliary head Q that recovers them.
//! - [`layers`]: small shared pieces: layer output sizes, the 4x4 stride-2 down- and upsampling
//!   convolutions and the DCGAN initialisation.
//! - [`noise`]: Gaussian noise drawn on the host from a seed, the same on every backend.
//! - [`pytorch`]: networks written as `.safetensors` under PyTorch's names, and PyTorch
//!   checkpoints (`.pt`, `.safetensors`) read into networks.
//! - [`toy2d`]: the 2-D lab: Gaussian mixtures, MLP players, the optimal discriminator and the
//!   mode-coverage metrics.
//! - [`vae`]: the variational autoencoder of Kingma & Welling (2014) and the plain autoencoder.
//! - [`wgan`]: the Wasserstein critic (Arjovsky et al., 2017) and the exact gradient penalty of
//!   WGAN-GP (Gulrajani et al., 2017).
//!
//! Every generator is an [`ImageSource`]: built from its `Config`, it draws images from a seed.
//!
//! ```
//! use genmodels::ImageSource;
//! use genmodels::burn::tensor::Device;
//! use genmodels::dcgan::GeneratorConfig;
//! use genmodels::diffusion::{
//!     DiffusionSource, NoiseSchedule, SamplerKind, SamplingSettings, UNetConfig,
//! };
//! use genmodels::vae::VaeConfig;
//!
//! let device = Device::flex();
//! // DCGAN: the generator of the paper's sizes; four images in [-1, 1] from seed 0.
//! let generator = GeneratorConfig::new().init(&device);
//! assert_eq!(generator.draw(4, 0, &device).images.dims(), [4, 1, 28, 28]);
//! // VAE: the decoder's mean image for z ~ N(0, I), in [0, 1].
//! let vae = VaeConfig::new().with_latent_dim(8).init(&device);
//! assert_eq!(vae.decoder.draw(4, 0, &device).images.dims(), [4, 1, 28, 28]);
//! // DDPM: a narrow U-Net with five DDIM steps on the paper's 1000-step schedule.
//! let unet = UNetConfig::new()
//!     .with_base_channels(8)
//!     .with_blocks_per_level(1)
//!     .with_time_embedding_dim(16)
//!     .init(&device);
//! let sampling = SamplingSettings { sampler: SamplerKind::Ddim, steps: 5, eta: 0.0 };
//! let ddpm = DiffusionSource::new(unet, &NoiseSchedule::ddpm(), sampling)?;
//! assert_eq!(ddpm.draw(2, 0, &device).images.dims(), [2, 1, 28, 28]);
//! # Ok::<(), genmodels::diffusion::DiffusionError>(())
//! ```
//!
//! A run folder written by the examples gives back its networks with their trained weights
//! ([`checkpoint::RunFolder`]): each network's `Config` is an entry of the run's `config.json`
//! and its weights a record of the checkpoint, both under the name the model module exports.
//!
//! ```no_run
//! use genmodels::ImageSource;
//! use genmodels::burn::tensor::Device;
//! use genmodels::checkpoint::RunFolder;
//! use genmodels::dcgan::{GENERATOR, GeneratorConfig};
//! use genmodels::diffusion::{
//!     DiffusionSource, EMA, SCHEDULE, SamplerKind, SamplingSettings, ScheduleConfig, UNET,
//!     UNetConfig,
//! };
//! use genmodels::vae::{VAE, VaeConfig};
//!
//! let device = Device::flex();
//! let dcgan = RunFolder::open("runs/dcgan")?;
//! let generator = dcgan.load(GENERATOR, |config: GeneratorConfig| config.init(&device))?;
//! let vae = RunFolder::open("runs/vae")?;
//! let decoder = vae.load(VAE, |config: VaeConfig| config.init(&device))?.decoder;
//! let ddpm = RunFolder::open("runs/ddpm")?;
//! let unet = ddpm.load_record(UNET, EMA, |config: UNetConfig| config.init(&device))?;
//! let schedule = ddpm.config::<ScheduleConfig>(SCHEDULE)?.build()?;
//! let sampling = SamplingSettings { sampler: SamplerKind::Ddim, steps: 50, eta: 0.0 };
//! let diffusion = DiffusionSource::new(unet, &schedule, sampling)?;
//! for source in [&generator as &dyn ImageSource, &decoder, &diffusion] {
//!     let images = source.draw(64, 0, &device).images; // [64, 1, 28, 28]
//!     println!("{}: {:?}", source.describe(), images.dims());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bigan;
pub mod cgan;
pub mod checkpoint;
pub mod classifier;
pub mod cyclegan;
pub mod dcgan;
pub mod diffusion;
pub mod fid;
pub mod flow;
pub mod gan_loss;
pub mod image_source;
pub mod infogan;
pub mod layers;
pub mod noise;
pub mod pytorch;
pub mod toy2d;
pub mod vae;
pub mod wgan;

#[cfg(test)]
mod test_util;

pub use classifier::{Classifier, ClassifierConfig};
pub use dcgan::{
    Discriminator as DcganDiscriminator, DiscriminatorConfig as DcganDiscriminatorConfig,
    Generator as DcganGenerator, GeneratorConfig as DcganGeneratorConfig,
};
pub use gan_loss::GeneratorLoss;
pub use image_source::{Drawn, GridImages, ImageSource, PixelRange};
pub use vae::{Decoder, DecoderConfig, Encoder, EncoderConfig, Vae, VaeConfig};

/// Re-exported so that users of this crate name the exact burn the models were built with.
pub use burn;
