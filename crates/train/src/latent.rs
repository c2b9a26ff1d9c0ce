//! What a trained VAE (or autoencoder) has learnt: how well it reconstructs the test split, how
//! its latent space is organised, and what lies between and around the codes of real images.
//!
//! [`analyze`] writes into a folder:
//!
//! - `report.json`: test reconstruction error (BCE per image, MSE per pixel, decoding mu), the
//!   test KL and negative ELBO, and the 5-nearest-neighbour class accuracy of mu, train -> test;
//! - `latent_map.png`: the test set's mu in 2-D (t-SNE when d > 2), one colour per class;
//! - `interpolation.png`, `arithmetic.png`, `priors.png`: decoded latent vectors.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use genmodels::vae::{Code, Vae};
use genmodels_data::{CLASS_NAMES, FashionMnist, IMAGE_PIXELS, NUM_CLASSES, PixelRange, Split};
use image::GrayImage;
use plotters::prelude::*;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use crate::fsutil::{write_atomic, write_atomic_with};
use crate::grid::{PixelScale, image_grid, save_plot};

/// Images per forward pass when scoring a split.
pub const EVAL_BATCH: usize = 500;
/// Neighbours in the k-NN class accuracy.
pub const NEIGHBOURS: usize = 5;
/// Points on each interpolation line, ends included.
const INTERPOLATION_STEPS: usize = 10;
/// Pairs of classes interpolated between, one row each.
const INTERPOLATION_PAIRS: [(&str, &str); 6] = [
    ("T-shirt/top", "Trouser"),
    ("Sneaker", "Ankle boot"),
    ("Bag", "Dress"),
    ("Pullover", "Sandal"),
    ("Coat", "Bag"),
    ("Shirt", "Sneaker"),
];

/// Settings of the t-SNE map.
#[derive(Debug, Clone, Serialize)]
pub struct TsneSettings {
    pub perplexity: f32,
    pub epochs: usize,
    /// Barnes-Hut accuracy: 0.5 is the usual trade-off of van der Maaten (2014).
    pub theta: f32,
    pub seed: u64,
}

impl Default for TsneSettings {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            epochs: 1000,
            theta: 0.5,
            seed: 0,
        }
    }
}

/// Per-image means over a split, and the codes mu of every image.
#[derive(Debug, Clone)]
pub struct SplitScores {
    /// `[len * d]`, image after image.
    pub mu: Vec<f32>,
    /// Mean BCE per image (nats), the first term of the negative ELBO.
    pub reconstruction: f64,
    /// Mean KL(q(z|x) || N(0, I)) per image (nats); 0 for the plain autoencoder.
    pub kl: f64,
    /// Mean squared error per pixel between the image and the decoder's mean sigmoid(l).
    pub mse: f64,
}

/// Scores every image of `split` in order, with z per `code` (`Code::Mean` decodes mu).
pub fn score_split(vae: &Vae, split: &Split, code: Code, device: &Device) -> SplitScores {
    let indices: Vec<usize> = (0..split.len()).collect();
    let mut mu = Vec::with_capacity(split.len() * vae.latent_dim());
    let mut sums: Option<Tensor<1>> = None;
    for chunk in indices.chunks(EVAL_BATCH) {
        let images = split.images_tensor(chunk, PixelRange::ZeroToOne, device);
        let out = vae.reconstruct(images.clone(), code);
        let squared_error = (sigmoid(out.logits) - images).square().sum().reshape([1]);
        let batch_sums = Tensor::cat(
            vec![
                out.terms.reconstruction.sum(),
                out.terms.kl.sum(),
                squared_error,
            ],
            0,
        );
        sums = Some(match sums {
            Some(total) => total + batch_sums,
            None => batch_sums,
        });
        mu.extend(
            out.posterior
                .mu
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 codes"),
        );
    }
    let sums = sums
        .map(|s| s.into_data().try_to_vec::<f32>().expect("f32 sums"))
        .unwrap_or(vec![0.0; 3]);
    let n = split.len().max(1) as f64;
    SplitScores {
        mu,
        reconstruction: sums[0] as f64 / n,
        kl: sums[1] as f64 / n,
        mse: sums[2] as f64 / (n * IMAGE_PIXELS as f64),
    }
}

/// The codes mu of every image of `split`: `[len * d]`.
pub fn encode_split(vae: &Vae, split: &Split, device: &Device) -> Vec<f32> {
    let indices: Vec<usize> = (0..split.len()).collect();
    let mut mu = Vec::with_capacity(split.len() * vae.latent_dim());
    for chunk in indices.chunks(EVAL_BATCH) {
        let images = split.images_tensor(chunk, PixelRange::ZeroToOne, device);
        let codes = vae.encoder.forward(images).mu;
        mu.extend(codes.into_data().try_to_vec::<f32>().expect("f32 codes"));
    }
    mu
}

/// The fraction of `queries` whose `k` nearest `references` (Euclidean) mostly share their
/// class: the k-NN classifier's accuracy. Ties in the vote go to the class met first, i.e. the
/// nearer one. Points are rows of `dim` values.
pub fn knn_accuracy(
    references: &[f32],
    reference_labels: &[u8],
    queries: &[f32],
    query_labels: &[u8],
    dim: usize,
    k: usize,
    device: &Device,
) -> f64 {
    let n_ref = reference_labels.len();
    let k = k.min(n_ref);
    if query_labels.is_empty() || k == 0 {
        return 0.0;
    }
    // ||q - r||^2 = ||q||^2 - 2 q.r + ||r||^2; ||q||^2 does not change a query's ranking.
    let refs = Tensor::<2>::from_data(TensorData::new(references.to_vec(), [n_ref, dim]), device);
    let ref_norms = refs.clone().square().sum_dim(1).reshape([1, n_ref]); // [1, R]
    let refs_t = refs.transpose(); // [dim, R]
    let mut correct = 0usize;
    for (rows, labels) in queries.chunks(256 * dim).zip(query_labels.chunks(256)) {
        let q = Tensor::<2>::from_data(TensorData::new(rows.to_vec(), [labels.len(), dim]), device);
        let closeness = q.matmul(refs_t.clone()) * 2.0 - ref_norms.clone(); // [Q, R], larger = nearer
        let (_, nearest) = closeness.topk_with_indices(k, 1); // [Q, k], nearest first
        let nearest = nearest
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("indices");
        for (neighbours, &label) in nearest.chunks(k).zip(labels) {
            let mut votes = [0usize; 256];
            let mut winner = reference_labels[neighbours[0] as usize];
            for &index in neighbours {
                let class = reference_labels[index as usize];
                votes[class as usize] += 1;
                if votes[class as usize] > votes[winner as usize] {
                    winner = class;
                }
            }
            correct += usize::from(winner == label);
        }
    }
    correct as f64 / query_labels.len() as f64
}

/// Embeds rows of `dim` values in 2-D with Barnes-Hut t-SNE (van der Maaten, 2014), from a
/// seeded N(0, 1e-4 I) start so that a map can be made again.
pub fn tsne_2d(points: &[f32], dim: usize, settings: &TsneSettings) -> Vec<f32> {
    let samples: Vec<&[f32]> = points.chunks(dim).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed);
    let start = Normal::new(0.0f32, 1e-4).expect("valid std");
    let initial: Vec<f32> = (0..samples.len() * 2)
        .map(|_| start.sample(&mut rng))
        .collect();
    bhtsne::tSNE::<f32, &[f32], 2>::new(&samples)
        .perplexity(settings.perplexity)
        .epochs(settings.epochs)
        .initial_embedding(initial)
        .barnes_hut(settings.theta, |a, b| {
            a.iter()
                .zip(b.iter())
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f32>()
                .sqrt()
        })
        .embedding()
}

/// The 10 colours of matplotlib's `tab10`, one per class.
const CLASS_COLOURS: [RGBColor; NUM_CLASSES] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Size of the latent map in pixels, and the width of its legend strip.
const MAP_SIZE: (u32, u32) = (900, 760);
const LEGEND_WIDTH: u32 = 170;

/// A scatter plot of 2-D points, one colour per class and a legend with the class names.
pub fn save_class_scatter(points: &[f32], labels: &[u8], title: &str, path: &Path) -> Result<()> {
    save_plot(MAP_SIZE, path, |root| {
        draw_class_scatter(root, points, labels, title)
    })
}

fn draw_class_scatter(
    root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    points: &[f32],
    labels: &[u8],
    title: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let (xs, ys): (Vec<f32>, Vec<f32>) = points.chunks(2).map(|p| (p[0], p[1])).unzip();
    let range = |v: &[f32]| {
        let (lo, hi) = v
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let margin = ((hi - lo) * 0.05).max(1e-3);
        (lo - margin)..(hi + margin)
    };
    root.fill(&WHITE)?;
    // The legend takes the right-hand strip so that it hides no point.
    let (plot, legend) = root.split_horizontally(MAP_SIZE.0 - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(range(&xs), range(&ys))?;
    chart.configure_mesh().disable_mesh().draw()?;
    for (class, colour) in CLASS_COLOURS.iter().enumerate() {
        let members = (0..labels.len()).filter(|&i| labels[i] as usize == class);
        chart.draw_series(
            members.map(|i| Circle::new((xs[i], ys[i]), 2, colour.mix(0.6).filled())),
        )?;
    }
    for (class, name) in CLASS_NAMES.iter().enumerate() {
        let y = 60 + class as i32 * 28;
        legend.draw(&Circle::new((16, y), 6, CLASS_COLOURS[class].filled()))?;
        legend.draw(&Text::new(
            *name,
            (30, y - 9),
            ("sans-serif", 18).into_font(),
        ))?;
    }
    Ok(())
}

fn save_gray(image: &GrayImage, path: &Path) -> Result<()> {
    write_atomic_with(path, |tmp| {
        image
            .save_with_format(tmp, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
}

/// Grids side by side, top-aligned, with `gap` white pixels between them.
fn side_by_side(grids: &[GrayImage], gap: u32) -> GrayImage {
    let width = grids.iter().map(|g| g.width()).sum::<u32>() + gap * (grids.len() as u32 - 1);
    let height = grids.iter().map(|g| g.height()).max().unwrap_or(0);
    let mut out = GrayImage::from_pixel(width, height, image::Luma([255]));
    let mut left = 0;
    for grid in grids {
        image::imageops::replace(&mut out, grid, left as i64, 0);
        left += grid.width() + gap;
    }
    out
}

/// The index of the first image of class `name` in `split`.
fn first_of_class(split: &Split, name: &str) -> Result<usize> {
    let class = CLASS_NAMES
        .iter()
        .position(|&c| c == name)
        .expect("a known class name") as u8;
    split
        .labels
        .iter()
        .position(|&l| l == class)
        .with_context(|| format!("no `{name}` image in the test split"))
}

/// Each row: image A, the decodes of 10 evenly spaced points on the segment from mu(A) to
/// mu(B) (ends included), image B.
fn interpolation_grid(vae: &Vae, test: &Split, device: &Device) -> Result<GrayImage> {
    let mut rows = Vec::new();
    for (from, to) in INTERPOLATION_PAIRS {
        let ends = test.images_tensor(
            &[first_of_class(test, from)?, first_of_class(test, to)?],
            PixelRange::ZeroToOne,
            device,
        );
        let mu = vae.encoder.forward(ends.clone()).mu; // [2, d]
        let (a, b) = (mu.clone().narrow(0, 0, 1), mu.narrow(0, 1, 1));
        let line: Vec<Tensor<2>> = (0..INTERPOLATION_STEPS)
            .map(|i| {
                let t = i as f64 / (INTERPOLATION_STEPS - 1) as f64;
                a.clone() * (1.0 - t) + b.clone() * t
            })
            .collect();
        let decoded = vae.decoder.decode(Tensor::cat(line, 0)); // [10, 1, 28, 28]
        rows.extend([ends.clone().narrow(0, 0, 1), decoded, ends.narrow(0, 1, 1)]);
    }
    image_grid(
        Tensor::cat(rows, 0),
        INTERPOLATION_STEPS + 2,
        2,
        PixelScale::ZeroToOne,
    )
}

/// Class-mean codes combined: each row shows a sandal, its reconstruction, the decoded means of
/// Ankle boot and Sneaker, and the decode of `mean(Ankle boot) - mean(Sneaker) + mu(sandal)`.
fn arithmetic_grid(vae: &Vae, test: &Split, test_mu: &[f32], device: &Device) -> Result<GrayImage> {
    let d = vae.latent_dim();
    let class_mean = |name: &str| -> Tensor<2> {
        let class = CLASS_NAMES
            .iter()
            .position(|&c| c == name)
            .expect("a known class") as u8;
        let mut mean = vec![0.0f32; d];
        let members: Vec<&[f32]> = test_mu
            .chunks(d)
            .zip(&test.labels)
            .filter(|(_, l)| **l == class)
            .map(|(m, _)| m)
            .collect();
        for code in &members {
            mean.iter_mut()
                .zip(code.iter())
                .for_each(|(m, c)| *m += c / members.len() as f32);
        }
        Tensor::from_data(TensorData::new(mean, [1, d]), device)
    };
    let (boot, sneaker) = (class_mean("Ankle boot"), class_mean("Sneaker"));
    let sandal_class = CLASS_NAMES
        .iter()
        .position(|&c| c == "Sandal")
        .expect("a class") as u8;
    let sandals: Vec<usize> = (0..test.len())
        .filter(|&i| test.labels[i] == sandal_class)
        .take(5)
        .collect();
    let mut rows = Vec::new();
    for index in sandals {
        let sandal = test.images_tensor(&[index], PixelRange::ZeroToOne, device);
        let mu = vae.encoder.forward(sandal.clone()).mu; // [1, d]
        let codes = Tensor::cat(
            vec![
                mu.clone(),
                boot.clone(),
                sneaker.clone(),
                boot.clone() - sneaker.clone() + mu,
            ],
            0,
        );
        rows.extend([sandal, vae.decoder.decode(codes)]);
    }
    image_grid(Tensor::cat(rows, 0), 5, 2, PixelScale::ZeroToOne)
}

/// 8x8 decodes of z ~ N(0, I), z ~ N(1, I) and z ~ U[-1, 1]^d, side by side.
fn priors_grid(vae: &Vae, seed: u64, device: &Device) -> Result<GrayImage> {
    let d = vae.latent_dim();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut draw = |sample: &mut dyn FnMut(&mut rand::rngs::StdRng) -> f32| -> Result<GrayImage> {
        let values: Vec<f32> = (0..64 * d).map(|_| sample(&mut rng)).collect();
        let z = Tensor::<2>::from_data(TensorData::new(values, [64, d]), device);
        image_grid(vae.decoder.decode(z), 8, 2, PixelScale::ZeroToOne)
    };
    let standard = Normal::new(0.0f32, 1.0).expect("valid");
    let shifted = Normal::new(1.0f32, 1.0).expect("valid");
    let uniform = rand_distr::Uniform::new_inclusive(-1.0f32, 1.0).expect("valid");
    let grids = [
        draw(&mut |r| standard.sample(r))?,
        draw(&mut |r| shifted.sample(r))?,
        draw(&mut |r| uniform.sample(r))?,
    ];
    Ok(side_by_side(&grids, 12))
}

/// The numbers `report.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub model: String,
    pub latent_dim: usize,
    pub checkpoint: String,
    pub step: u64,
    pub epoch: usize,
    /// Mean BCE per test image (nats), decoding mu.
    pub test_reconstruction_bce: f64,
    /// Mean squared error per test pixel, decoding mu.
    pub test_mse_per_pixel: f64,
    /// Mean KL per test image (nats); 0 for the autoencoder.
    pub test_kl: f64,
    /// `test_reconstruction_bce + test_kl`: the negative ELBO with its first term at z = mu.
    pub test_neg_elbo_at_mu: f64,
    /// 5-NN class accuracy of the test codes mu against the training codes mu.
    pub knn5_accuracy: f64,
    /// How `latent_map.png` was made: "t-SNE" or "mu".
    pub latent_map: String,
    pub tsne: Option<TsneSettings>,
    pub seconds: f64,
}

/// Everything the analysis needs to know beyond the network.
pub struct AnalysisInput<'a> {
    pub model: &'a str,
    pub checkpoint: &'a crate::checkpoint::Checkpoint,
    pub tsne: TsneSettings,
}

/// Runs the whole analysis of `vae` on `data`, writing the figures and `report.json` to `out`.
pub fn analyze(
    vae: &Vae,
    data: &FashionMnist,
    input: &AnalysisInput,
    out: &Path,
    device: &Device,
) -> Result<Report> {
    let started = Instant::now();
    let d = vae.latent_dim();
    if d < 2 {
        bail!("the latent map needs at least 2 latent dimensions, this model has {d}");
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let name = input.model;

    let test = score_split(vae, &data.test, Code::Mean, device);
    println!(
        "{name}: test reconstruction (decoding mu): BCE {:.2} nats/image, MSE {:.5} /pixel; KL {:.2} nats",
        test.reconstruction, test.mse, test.kl
    );
    let train_mu = encode_split(vae, &data.train, device);
    let knn = knn_accuracy(
        &train_mu,
        &data.train.labels,
        &test.mu,
        &data.test.labels,
        d,
        NEIGHBOURS,
        device,
    );
    println!(
        "{name}: {NEIGHBOURS}-NN class accuracy of mu, train -> test: {:.4}",
        knn
    );

    let (map, tsne) = if d == 2 {
        (test.mu.clone(), None)
    } else {
        let tsne_started = Instant::now();
        let map = tsne_2d(&test.mu, d, &input.tsne);
        println!(
            "{name}: t-SNE of {} test codes took {:.1} s",
            data.test.len(),
            tsne_started.elapsed().as_secs_f64()
        );
        (map, Some(input.tsne.clone()))
    };
    let title = if d == 2 {
        format!("{name}: test mu (d = 2)")
    } else {
        format!("{name}: t-SNE of test mu (d = {d})")
    };
    save_class_scatter(&map, &data.test.labels, &title, &out.join("latent_map.png"))?;
    save_gray(
        &interpolation_grid(vae, &data.test, device)?,
        &out.join("interpolation.png"),
    )?;
    save_gray(
        &arithmetic_grid(vae, &data.test, &test.mu, device)?,
        &out.join("arithmetic.png"),
    )?;
    save_gray(
        &priors_grid(vae, input.checkpoint.state.seed, device)?,
        &out.join("priors.png"),
    )?;

    let report = Report {
        model: name.into(),
        latent_dim: d,
        checkpoint: input.checkpoint.dir.display().to_string(),
        step: input.checkpoint.state.step,
        epoch: input.checkpoint.state.epoch,
        test_reconstruction_bce: test.reconstruction,
        test_mse_per_pixel: test.mse,
        test_kl: test.kl,
        test_neg_elbo_at_mu: test.reconstruction + test.kl,
        knn5_accuracy: knn,
        latent_map: if d == 2 { "mu".into() } else { "t-SNE".into() },
        tsne,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_atomic(
        &out.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    println!(
        "{name}: wrote report.json, latent_map.png, interpolation.png, arithmetic.png, priors.png to {}",
        out.display()
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `clusters` Gaussian blobs of `per_cluster` points in `dim` dimensions, centres 10 apart
    /// along the axes, spread 0.5: far apart compared to their size.
    fn blobs(clusters: usize, per_cluster: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let noise = Normal::new(0.0f32, 0.5).unwrap();
        let mut points = Vec::new();
        let mut labels = Vec::new();
        for i in 0..clusters * per_cluster {
            let class = i % clusters;
            for j in 0..dim {
                let centre = if j == class % dim {
                    10.0 * (1 + class / dim) as f32
                } else {
                    0.0
                };
                points.push(centre + noise.sample(&mut rng));
            }
            labels.push(class as u8);
        }
        (points, labels)
    }

    #[test]
    fn knn_matches_a_hand_worked_example() {
        // References on a line: classes 0 0 0 1 1 at x = 0, 1, 2, 10, 11.
        let refs = [0.0f32, 0.0, 1.0, 0.0, 2.0, 0.0, 10.0, 0.0, 11.0, 0.0];
        let ref_labels = [0u8, 0, 0, 1, 1];
        // x = 9: neighbours 10, 11 (class 1) and 2, 1 (class 0) at k = 4 -> tie 2:2, the nearest
        // (class 1) wins. x = 0.4 at k = 3: 0, 1, 2 -> class 0.
        let device = Device::flex();
        let acc = knn_accuracy(&refs, &ref_labels, &[9.0, 0.0], &[1], 2, 4, &device);
        assert_eq!(acc, 1.0);
        let acc = knn_accuracy(
            &refs,
            &ref_labels,
            &[0.4, 0.0, 9.0, 0.0],
            &[0, 0],
            2,
            3,
            &device,
        );
        // The second query's 3 nearest are 10, 11 (class 1) and 2 (class 0): votes for 1, wrong.
        assert_eq!(acc, 0.5);
    }

    #[test]
    fn tsne_of_well_separated_clusters_keeps_them_apart() {
        let (points, labels) = blobs(4, 60, 8, 11);
        let settings = TsneSettings {
            perplexity: 15.0,
            epochs: 400,
            theta: 0.5,
            seed: 3,
        };
        let map = tsne_2d(&points, 8, &settings);
        assert_eq!(map.len(), labels.len() * 2);
        assert!(map.iter().all(|v| v.is_finite()));
        // Leave-one-out 5-NN accuracy in the map: each point against all the others.
        let device = Device::flex();
        let mut correct = 0;
        for i in 0..labels.len() {
            let others: Vec<usize> = (0..labels.len()).filter(|&j| j != i).collect();
            let refs: Vec<f32> = others
                .iter()
                .flat_map(|&j| [map[2 * j], map[2 * j + 1]])
                .collect();
            let ref_labels: Vec<u8> = others.iter().map(|&j| labels[j]).collect();
            let acc = knn_accuracy(
                &refs,
                &ref_labels,
                &map[2 * i..2 * i + 2],
                &labels[i..=i],
                2,
                5,
                &device,
            );
            correct += acc as usize;
        }
        let accuracy = correct as f64 / labels.len() as f64;
        assert!(
            accuracy > 0.97,
            "5-NN accuracy in the t-SNE map: {accuracy}"
        );
    }

    #[test]
    fn scatter_and_side_by_side_write_images_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let (points, labels) = blobs(10, 5, 2, 1);
        let path = dir.path().join("map.png");
        save_class_scatter(&points, &labels, "test", &path).unwrap();
        let image = image::open(&path).unwrap();
        assert_eq!((image.width(), image.height()), (900, 760));
        let a = GrayImage::from_pixel(3, 2, image::Luma([0]));
        let b = GrayImage::from_pixel(4, 5, image::Luma([7]));
        let joined = side_by_side(&[a, b], 2);
        assert_eq!(joined.dimensions(), (9, 5));
        assert_eq!(joined.get_pixel(0, 0)[0], 0);
        assert_eq!(joined.get_pixel(3, 0)[0], 255); // gap
        assert_eq!(joined.get_pixel(0, 4)[0], 255); // below the shorter grid
        assert_eq!(joined.get_pixel(5, 4)[0], 7);
    }
}
