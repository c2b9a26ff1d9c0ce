//! The same forward pass gives the same numbers on every CPU and GPU backend built in.
//!
//! wgpu runs wherever a Vulkan/Metal/DirectX adapter exists (lavapipe counts); without one the
//! wgpu case is skipped, unless `GENMODELS_REQUIRE_WGPU=1` (set in CI) makes that a failure.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use genmodels::dcgan::{Discriminator, DiscriminatorConfig, Generator, GeneratorConfig};
use genmodels_train::backend::{BackendChoice, select_device, wgpu_adapters};

/// Largest |a - b| / max(|b|, floor) over two equally long slices.
fn max_relative_difference(a: &[f32], b: &[f32], floor: f32) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(floor))
        .fold(0.0, f32::max)
}

/// The tests take turns: once in CI (lavapipe), the two running at the same time on the one
/// wgpu adapter gave a wrong gradient on wgpu, right on the two CPU backends.
static ONE_TEST_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn other_devices() -> Vec<(String, Device)> {
    let mut devices = vec![];
    for choice in [BackendChoice::Ndarray, BackendChoice::Wgpu] {
        if choice == BackendChoice::Wgpu && wgpu_adapters().is_empty() {
            assert!(
                std::env::var("GENMODELS_REQUIRE_WGPU").is_err(),
                "GENMODELS_REQUIRE_WGPU is set but no wgpu adapter exists"
            );
            eprintln!("skipping wgpu: no adapter on this machine");
            continue;
        }
        let selected = select_device(choice).unwrap();
        devices.push((selected.description, selected.device));
    }
    devices
}

/// A tiny DCGAN (wgpu on a software adapter is slow) and a batch of `batch` latents, drawn on
/// flex from `seed`.
fn tiny_dcgan(seed: u64, batch: usize) -> (Generator, Discriminator, Tensor<2>) {
    let reference = Device::flex();
    reference.seed(seed);
    let generator = GeneratorConfig::new()
        .with_latent_dim(8)
        .with_base_channels(16)
        .init(&reference);
    let discriminator = DiscriminatorConfig::new()
        .with_base_channels(8)
        .init(&reference);
    let z = Tensor::<2>::random([batch, 8], Distribution::Normal(0.0, 1.0), &reference);
    (generator, discriminator, z)
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().unwrap()
}

/// `actual` is within `tolerance` of `expected`, relative to each value with a floor of 1e-2 so
/// that values near zero compare absolutely. Returns the difference.
fn assert_agrees(what: &str, actual: &[f32], expected: &[f32], tolerance: f32) -> f32 {
    let error = max_relative_difference(actual, expected, 1e-2);
    assert!(error < tolerance, "{what} differs from flex by {error}");
    error
}

#[test]
fn dcgan_forward_is_the_same_on_every_backend() {
    let _turn = ONE_TEST_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (generator, discriminator, z) = tiny_dcgan(3, 2);
    let expected_images = generator.forward(z.clone());
    let expected_logits = values(discriminator.forward(expected_images.clone()));
    let expected_images = values(expected_images);

    for (name, device) in other_devices() {
        let images = generator
            .clone()
            .to_device(&device)
            .forward(z.clone().to_device(&device));
        let logits = discriminator
            .clone()
            .to_device(&device)
            .forward(images.clone());
        let what = format!("{name}: generator");
        let image_error = assert_agrees(&what, &values(images), &expected_images, 1e-4);
        let what = format!("{name}: discriminator");
        let logit_error = assert_agrees(&what, &values(logits), &expected_logits, 1e-4);
        eprintln!("{name}: generator {image_error:.2e}, discriminator {logit_error:.2e}");
    }
}

/// Training mode: batch statistics in every BatchNorm, and the backward pass through every layer
/// (the kernels' hand-written backward on flex, burn's on the others).
#[test]
fn dcgan_training_gradients_are_the_same_on_every_backend() {
    let _turn = ONE_TEST_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (generator, discriminator, z) = tiny_dcgan(5, 4);
    // The logit sum and its gradient with respect to z, on an autodiff device.
    let run = |device: &Device| {
        let train = device.clone().autodiff();
        let g = generator.clone().to_device(&train);
        let d = discriminator.clone().to_device(&train);
        let z = z.clone().to_device(&train).autodiff().require_grad();
        let score = d.forward(g.forward(z.clone())).sum();
        let grads = score.backward();
        (values(score.inner()), values(z.grad(&grads).unwrap()))
    };
    let (expected_score, expected_dz) = run(&Device::flex());
    for (name, device) in other_devices() {
        let (score, dz) = run(&device);
        let score_error = assert_agrees(&format!("{name}: score"), &score, &expected_score, 1e-4);
        let grad_error = assert_agrees(&format!("{name}: dL/dz"), &dz, &expected_dz, 1e-3);
        eprintln!("{name}: score {score_error:.2e}, dL/dz {grad_error:.2e}");
    }
}
