//! PyTorch checkpoints read into the networks, and networks written for PyTorch.
//!
//! The fixtures are reduced-width versions of the PyTorch modules of
//! `benches/pytorch_reference.py`, every parameter and BatchNorm statistic drawn at random,
//! written by `python3 benches/pytorch_reference.py --fixtures crates/models/tests/fixtures/pytorch`
//! as a state dict (`<name>.pt`, `<name>.safetensors`) with fixed inputs and PyTorch's outputs on
//! them in eval mode (`<name>_io.safetensors`).
//!
//! Loaded here, each network reproduces PyTorch's outputs within 1e-5 (absolute; the outputs
//! are of order 1 and computed in float32 in a different order). Written back out, it gives
//! PyTorch's own file: the same names, shapes and bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ModuleStore, SafetensorsStore, bridge};
use burn::tensor::{Device, Tensor, TensorData};
use genmodels::checkpoint::CheckpointError;
use genmodels::dcgan::{Discriminator, DiscriminatorConfig, Generator, GeneratorConfig};
use genmodels::diffusion::{UNet, UNetConfig};
use genmodels::pytorch::{PytorchNames, load_pytorch, save_safetensors};
use genmodels::vae::{Vae, VaeConfig};

const TOLERANCE: f32 = 1e-5;
const FORMATS: [&str; 2] = ["pt", "safetensors"];

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pytorch")
        .join(file)
}

/// Every tensor of a safetensors file, by name.
fn read_safetensors(path: &Path) -> BTreeMap<String, TensorData> {
    SafetensorsStore::from_file(path)
        .map_indices_contiguous(false)
        .get_all_tensors()
        .unwrap()
        .iter()
        .map(|(name, tensor)| (name.clone(), bridge::to_data(tensor).unwrap()))
        .collect()
}

/// The fixture's inputs and PyTorch's outputs.
struct Io(BTreeMap<String, TensorData>);

impl Io {
    fn of(network: &str) -> Self {
        Self(read_safetensors(&fixture(&format!(
            "{network}_io.safetensors"
        ))))
    }

    fn input<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        Tensor::from_data(self.0[&format!("input.{name}")].clone(), device)
    }

    fn expect<const D: usize>(&self, name: &str, ours: Tensor<D>, case: &str) {
        let theirs = &self.0[&format!("output.{name}")];
        assert_eq!(
            ours.dims().to_vec(),
            theirs.shape().to_vec(),
            "{case}: {name}"
        );
        let ours = ours.into_data().try_to_vec::<f32>().unwrap();
        let theirs = theirs.try_to_vec::<f32>().unwrap();
        let error = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("{case}: {name}: max |ours - PyTorch| = {error:.2e}");
        assert!(error < TOLERANCE, "{case}: {name} differs by {error}");
    }
}

fn generator(device: &Device) -> Generator {
    GeneratorConfig::new()
        .with_latent_dim(8)
        .with_base_channels(16)
        .init(device)
}

fn discriminator(device: &Device) -> Discriminator {
    DiscriminatorConfig::new()
        .with_base_channels(8)
        .init(device)
}

fn vae(device: &Device) -> Vae {
    VaeConfig::new()
        .with_latent_dim(4)
        .with_channels([4, 8])
        .with_hidden(16)
        .init(device)
}

fn unet(device: &Device) -> UNet {
    UNetConfig::new()
        .with_image_size(8)
        .with_base_channels(4)
        .with_channel_multipliers(vec![1, 2])
        .with_blocks_per_level(1)
        .with_attention_levels(vec![1])
        .with_time_embedding_dim(8)
        .with_groups(2)
        .init(device)
}

/// `network` with the fixture `name` read into it, once from each format, with the case's name
/// (`vae.pt`).
fn each_format<M: Module + PytorchNames>(name: &str, network: M) -> Vec<(String, M)> {
    FORMATS
        .iter()
        .map(|format| {
            let case = format!("{name}.{format}");
            let loaded = load_pytorch(network.clone(), fixture(&case)).unwrap();
            (case, loaded)
        })
        .collect()
}

#[test]
fn dcgan_generator_and_discriminator_give_pytorchs_outputs() {
    let device = Device::flex();
    let io = Io::of("dcgan_generator");
    for (case, network) in each_format("dcgan_generator", generator(&device)) {
        io.expect("out", network.forward(io.input("z", &device)), &case);
    }
    let io = Io::of("dcgan_discriminator");
    for (case, network) in each_format("dcgan_discriminator", discriminator(&device)) {
        io.expect("out", network.forward(io.input("x", &device)), &case);
    }
}

#[test]
fn vae_encoder_and_decoder_give_pytorchs_outputs() {
    let device = Device::flex();
    let io = Io::of("vae");
    for (case, network) in each_format("vae", vae(&device)) {
        let posterior = network.encoder.forward(io.input("x", &device));
        io.expect("mu", posterior.mu, &case);
        io.expect("log_var", posterior.log_var, &case);
        io.expect(
            "logits",
            network.decoder.forward(io.input("z", &device)),
            &case,
        );
    }
}

#[test]
fn unet_gives_pytorchs_noise_prediction() {
    let device = Device::flex();
    let io = Io::of("unet");
    for (case, network) in each_format("unet", unet(&device)) {
        let eps = network.forward(io.input("x", &device), io.input("t", &device));
        io.expect("eps", eps, &case);
    }
}

/// Loads the fixture `name.pt`, writes it with [`save_safetensors`] and compares the file with
/// the one PyTorch wrote from the same state dict.
fn round_trip<M: Module + PytorchNames>(name: &str, network: M) {
    let network = load_pytorch(network, fixture(&format!("{name}.pt"))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join(format!("{name}.safetensors"));
    save_safetensors(&network, &written).unwrap();
    let ours = read_safetensors(&written);
    let mut theirs = read_safetensors(&fixture(&format!("{name}.safetensors")));
    theirs.retain(|key, _| !key.ends_with("num_batches_tracked"));
    let names = |t: &BTreeMap<String, TensorData>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&theirs), "{name}: names");
    for (key, data) in &theirs {
        assert_eq!(ours[key].shape(), data.shape(), "{name}: {key}");
        assert_eq!(ours[key].as_bytes(), data.as_bytes(), "{name}: {key}");
    }
}

#[test]
fn exported_networks_hold_pytorchs_names_layout_and_values() {
    let device = Device::flex();
    round_trip("dcgan_generator", generator(&device));
    round_trip("dcgan_discriminator", discriminator(&device));
    round_trip("vae", vae(&device));
    round_trip("unet", unet(&device));
}

/// The message `load_pytorch` refuses the file at `path` with.
fn refusal<M: Module + PytorchNames>(network: M, path: &Path) -> String {
    load_pytorch(network, path).err().unwrap().to_string()
}

#[test]
fn files_that_do_not_fit_are_refused_naming_the_file() {
    let device = Device::flex();
    let generator_file = fixture("dcgan_generator.pt");

    // Another network's weights: the error names the file and what is missing.
    let error = load_pytorch(discriminator(&device), &generator_file)
        .err()
        .unwrap();
    let message = error.to_string();
    assert!(
        matches!(error, CheckpointError::Mismatch { .. }),
        "{message}"
    );
    assert!(message.contains("dcgan_generator.pt"), "{message}");
    assert!(
        message.contains("lacks ") && message.contains("conv1.weight"),
        "{message}"
    );
    assert!(message.contains("does not have: bn0.bias"), "{message}");

    // The same network at another width: a shape mismatch, named.
    let wide = GeneratorConfig::new()
        .with_latent_dim(8)
        .with_base_channels(32)
        .init(&device);
    let message = refusal(wide, &generator_file);
    assert!(message.contains("dcgan_generator.pt"), "{message}");
    assert!(message.to_lowercase().contains("shape"), "{message}");

    // A truncated file, a missing file, a file of another kind.
    let dir = tempfile::tempdir().unwrap();
    for format in FORMATS {
        let bytes = std::fs::read(fixture(&format!("dcgan_generator.{format}"))).unwrap();
        let truncated = dir.path().join(format!("truncated.{format}"));
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let message = refusal(generator(&device), &truncated);
        assert!(message.contains("truncated."), "{message}");
    }
    let missing = dir.path().join("absent.pt");
    let message = refusal(generator(&device), &missing);
    assert!(
        message.contains("absent.pt") && message.contains("no such file"),
        "{message}"
    );
    let text = dir.path().join("weights.txt");
    std::fs::write(&text, "not weights").unwrap();
    let message = refusal(generator(&device), &text);
    assert!(
        message.contains("weights.txt") && message.contains(".pt"),
        "{message}"
    );
}
