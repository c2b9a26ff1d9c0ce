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
//! - [`diffusion`]: DDPM (Ho et al., 2020): noise schedule, DDPM and DDIM samplers, the U-Net.
//! - [`fid`]: the Fréchet distance between feature statistics, streamed in batches, in f64.
//! - [`gan_loss`]: the GAN objectives of Goodfellow et al. (2014), computed from logits.
//! - [`image_source`]: [`ImageSource`], the one interface of everything that draws images.
//! - [`layers`]: small shared pieces: layer output sizes and the DCGAN initialisation.
//! - [`noise`]: Gaussian noise drawn on the host from a seed, the same on every backend.
//! - [`toy2d`]: the 2-D lab: Gaussian mixtures, MLP players, the optimal discriminator and the
//!   mode-coverage metrics.
//! - [`vae`]: the variational autoencoder of Kingma & Welling (2014) and the plain autoencoder.
//! - [`wgan`]: the Wasserstein critic (Arjovsky et al., 2017) and the exact gradient penalty of
//!   WGAN-GP (Gulrajani et al., 2017).

pub mod cgan;
pub mod checkpoint;
pub mod classifier;
pub mod dcgan;
pub mod diffusion;
pub mod fid;
pub mod gan_loss;
pub mod image_source;
pub mod layers;
pub mod noise;
pub mod toy2d;
pub mod vae;
pub mod wgan;

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
