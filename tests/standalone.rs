//! `genmodels` on its own: run folders written by the `dcgan` and `ddpm` examples are opened,
//! their networks rebuilt and sampled with nothing but the `genmodels` API (no training kit, as
//! a downstream crate would), and the images match those the examples' `sample` subcommand
//! writes for the same seed.

mod common;

use std::path::Path;

use burn::tensor::{Device, Tensor};
use genmodels::ImageSource;
use genmodels::checkpoint::RunFolder;
use genmodels::dcgan::{GENERATOR, GeneratorConfig};
use genmodels::diffusion::{
    DiffusionSource, EMA, SCHEDULE, SamplerKind, SamplingSettings, ScheduleConfig, UNET, UNetConfig,
};

use common::{run_example, stderr};

/// Trains `model` for two steps into a new folder with `extra` flags.
fn train_briefly(model: &str, extra: &[&str]) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let out_arg = out.path().to_str().unwrap();
    let args = [
        &["--backend", "flex", "--batch-size", "8", "--max-steps", "2"][..],
        extra,
        &["--out", out_arg],
    ]
    .concat();
    let output = run_example(model, &args);
    assert!(output.status.success(), "{}", stderr(&output));
    out
}

/// The example's `sample` grid of 8 images (one row), decoded into bytes per tile.
fn sampled_tiles(model: &str, run: &Path, extra: &[&str]) -> Vec<Vec<u8>> {
    let grid_path = run.join("grid.png");
    let args = [
        &["sample", "--backend", "flex", "--count", "8", "--seed", "3"][..],
        &[
            "--from",
            run.to_str().unwrap(),
            "--output",
            grid_path.to_str().unwrap(),
        ],
        extra,
    ]
    .concat();
    let output = run_example(model, &args);
    assert!(output.status.success(), "{}", stderr(&output));
    let grid = image::open(&grid_path).unwrap().to_luma8();
    (0..8)
        .map(|tile| {
            let x0 = 2 + tile as u32 * 30;
            (0..28u32)
                .flat_map(|y| (0..28u32).map(move |x| (x, y)))
                .map(|(x, y)| grid.get_pixel(x0 + x, 2 + y).0[0])
                .collect()
        })
        .collect()
}

/// Images in [-1, 1] as the grids' bytes: `round(255 clamp((v + 1) / 2, 0, 1))`.
fn bytes(images: Tensor<4>) -> Vec<Vec<u8>> {
    let values = images.into_data().try_to_vec::<f32>().unwrap();
    values
        .chunks(28 * 28)
        .map(|image| {
            image
                .iter()
                .map(|v| (((v + 1.0) * 0.5).clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect()
        })
        .collect()
}

/// At most one byte apart everywhere (a value on a rounding boundary may land either side).
fn assert_same_images(ours: &[Vec<u8>], theirs: &[Vec<u8>]) {
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(theirs) {
        let worst = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        assert!(worst <= 1, "images differ by {worst} levels");
    }
}

#[test]
fn a_dcgan_run_folder_opens_and_draws_with_genmodels_alone() {
    let run = train_briefly("dcgan", &[]);
    let device = Device::flex();
    let folder = RunFolder::open(run.path()).unwrap();
    assert_eq!(folder.model(), "dcgan");
    let generator = folder
        .load(GENERATOR, |config: GeneratorConfig| config.init(&device))
        .unwrap();
    let images = generator.draw(8, 3, &device).images;
    assert_eq!(images.dims(), [8, 1, 28, 28]);
    assert_same_images(&bytes(images), &sampled_tiles("dcgan", run.path(), &[]));
}

#[test]
fn a_ddpm_run_folder_opens_and_samples_with_genmodels_alone() {
    let run = train_briefly(
        "ddpm",
        &[
            "--preset",
            "tiny",
            "--sample-steps",
            "4",
            "--final-ddpm-steps",
            "0",
        ],
    );
    let device = Device::flex();
    let folder = RunFolder::open(run.path()).unwrap();
    let unet = folder
        .load_record(UNET, EMA, |config: UNetConfig| config.init(&device))
        .unwrap();
    let schedule = folder
        .config::<ScheduleConfig>(SCHEDULE)
        .unwrap()
        .build()
        .unwrap();
    let sampling = SamplingSettings {
        sampler: SamplerKind::Ddim,
        steps: 4,
        eta: 0.0,
    };
    let source = DiffusionSource::new(unet, &schedule, sampling).unwrap();
    let images = source.draw(8, 3, &device).images;
    assert_eq!(images.dims(), [8, 1, 28, 28]);
    let tiles = sampled_tiles("ddpm", run.path(), &["--sample-steps", "4"]);
    assert_same_images(&bytes(images), &tiles);
}
