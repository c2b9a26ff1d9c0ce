//! The same forward pass gives the same numbers on every CPU and GPU backend built in.
//!
//! wgpu runs wherever a Vulkan/Metal/DirectX adapter exists (lavapipe counts); without one the
//! wgpu case is skipped, unless `GENMODELS_REQUIRE_WGPU=1` (set in CI) makes that a failure.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use genmodels::dcgan::{DiscriminatorConfig, GeneratorConfig};
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

#[test]
fn dcgan_forward_is_the_same_on_every_backend() {
    let _turn = ONE_TEST_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let reference = Device::flex();
    reference.seed(3);
    // Tiny shapes: wgpu on a software adapter is slow.
    let generator = GeneratorConfig::new()
        .with_latent_dim(8)
        .with_base_channels(16)
        .init(&reference);
    let discriminator = DiscriminatorConfig::new()
        .with_base_channels(8)
        .init(&reference);
    let z = Tensor::<2>::random([2, 8], Distribution::Normal(0.0, 1.0), &reference);
    let expected_images = generator.forward(z.clone());
    let expected_logits = discriminator.forward(expected_images.clone());
    let expected_images = expected_images.into_data().try_to_vec::<f32>().unwrap();
    let expected_logits = expected_logits.into_data().try_to_vec::<f32>().unwrap();

    for (name, device) in other_devices() {
        let images = generator
            .clone()
            .to_device(&device)
            .forward(z.clone().to_device(&device));
        let logits = discriminator
            .clone()
            .to_device(&device)
            .forward(images.clone());
        let images = images.into_data().try_to_vec::<f32>().unwrap();
        let logits = logits.into_data().try_to_vec::<f32>().unwrap();
        // Relative to each value, with a floor so that values near zero compare absolutely.
        let image_error = max_relative_difference(&images, &expected_images, 1e-2);
        let logit_error = max_relative_difference(&logits, &expected_logits, 1e-2);
        assert!(
            image_error < 1e-4,
            "{name}: generator differs from flex by {image_error}"
        );
        assert!(
            logit_error < 1e-4,
            "{name}: discriminator differs from flex by {logit_error}"
        );
        eprintln!("{name}: generator {image_error:.2e}, discriminator {logit_error:.2e}");
    }
}

/// Training mode: batch statistics in every BatchNorm, and the backward pass through every layer
/// (the kernels' hand-written backward on flex, burn's on the others).
#[test]
fn dcgan_training_gradients_are_the_same_on_every_backend() {
    let _turn = ONE_TEST_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let reference = Device::flex();
    reference.seed(5);
    let generator = GeneratorConfig::new()
        .with_latent_dim(8)
        .with_base_channels(16)
        .init(&reference);
    let discriminator = DiscriminatorConfig::new()
        .with_base_channels(8)
        .init(&reference);
    let z = Tensor::<2>::random([4, 8], Distribution::Normal(0.0, 1.0), &reference);
    // The logit sum and its gradient with respect to z, on an autodiff device.
    let run = |device: &Device| {
        let train = device.clone().autodiff();
        let g = generator.clone().to_device(&train);
        let d = discriminator.clone().to_device(&train);
        let z = z.clone().to_device(&train).autodiff().require_grad();
        let score = d.forward(g.forward(z.clone())).sum();
        let grads = score.backward();
        let score = score.inner().into_data().try_to_vec::<f32>().unwrap();
        let dz = z
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        (score, dz)
    };
    let (expected_score, expected_dz) = run(&reference);
    for (name, device) in other_devices() {
        let (score, dz) = run(&device);
        let score_error = max_relative_difference(&score, &expected_score, 1e-2);
        let grad_error = max_relative_difference(&dz, &expected_dz, 1e-2);
        assert!(
            score_error < 1e-4,
            "{name}: score differs from flex by {score_error}"
        );
        assert!(
            grad_error < 1e-3,
            "{name}: dL/dz differs from flex by {grad_error}"
        );
        eprintln!("{name}: score {score_error:.2e}, dL/dz {grad_error:.2e}");
    }
}
