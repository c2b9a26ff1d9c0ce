//! Mini-batches: shapes, pixel scaling, and the per-epoch shuffle.

use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor};
use genmodels_data::{BatchLoader, IMAGE_PIXELS, PixelRange, Split};

/// Pure-Rust CPU backend: always available, no GPU needed.
fn device() -> Device {
    Device::flex()
}

/// `len` images; image `i` has first pixel `i` (so it can be identified), pixel 1 = 0,
/// pixel 2 = 255, pixel 3 = 51 and the rest a pattern; label `i % 10`.
fn split(len: usize) -> Split {
    assert!(len <= 256);
    let mut images = Vec::with_capacity(len * IMAGE_PIXELS);
    for i in 0..len {
        let mut image: Vec<u8> = (0..IMAGE_PIXELS)
            .map(|p| ((p * 13 + i) % 256) as u8)
            .collect();
        image[..4].copy_from_slice(&[i as u8, 0, 255, 51]);
        images.extend(image);
    }
    Split {
        images,
        labels: (0..len).map(|i| (i % 10) as u8).collect(),
    }
}

fn floats(tensor: Tensor<4>) -> Vec<f32> {
    tensor.into_data().try_into_vec_as::<f32>().unwrap()
}

fn ints(tensor: Tensor<1, Int>) -> Vec<i64> {
    tensor.into_data().try_into_vec_as::<i64>().unwrap()
}

/// The image ids (first pixel) of a batch, read back from its tensor.
fn ids(images: Tensor<4>, range: PixelRange) -> Vec<usize> {
    floats(images)
        .chunks(IMAGE_PIXELS)
        .map(|image| range.unscale(image[0]) as usize)
        .collect()
}

#[test]
fn pixel_scaling_exact_values() {
    assert_eq!(PixelRange::MinusOneToOne.scale(0), -1.0);
    assert_eq!(PixelRange::MinusOneToOne.scale(255), 1.0);
    assert!((PixelRange::MinusOneToOne.scale(51) - (51.0 / 127.5 - 1.0)).abs() < 1e-7);
    assert_eq!(PixelRange::ZeroToOne.scale(0), 0.0);
    assert_eq!(PixelRange::ZeroToOne.scale(255), 1.0);
    assert!((PixelRange::ZeroToOne.scale(51) - 0.2).abs() < 1e-7);
    for range in [PixelRange::MinusOneToOne, PixelRange::ZeroToOne] {
        for byte in 0..=255u8 {
            assert_eq!(range.unscale(range.scale(byte)), byte);
        }
    }
}

#[test]
fn batch_tensors_have_the_right_shapes_and_values() {
    let split = split(20);
    let indices = [4, 0, 17];
    for range in [PixelRange::MinusOneToOne, PixelRange::ZeroToOne] {
        let batch = split.batch(&indices, range, &device());
        assert_eq!(batch.images.dims(), [3, 1, 28, 28]);
        assert_eq!(batch.labels.dims(), [3]);
        assert_eq!(batch.len(), 3);
        assert_eq!(ints(batch.labels), vec![4, 0, 7]);

        let pixels = floats(batch.images);
        let (low, high) = range.bounds();
        let min = pixels.iter().copied().fold(f32::INFINITY, f32::min);
        let max = pixels.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // Every image holds a 0 and a 255 pixel, so both ends of the range are reached.
        assert_eq!((min, max), (low, high), "{range:?}");
        for (k, &index) in indices.iter().enumerate() {
            let image = &pixels[k * IMAGE_PIXELS..(k + 1) * IMAGE_PIXELS];
            assert_eq!(image[0], range.scale(index as u8));
            assert_eq!(image[1], low);
            assert_eq!(image[2], high);
            assert_eq!(image[3], range.scale(51));
            for (p, &value) in image.iter().enumerate() {
                assert_eq!(value, range.scale(split.image(index)[p]));
            }
        }
    }
}

#[test]
fn images_and_labels_tensors_helpers() {
    let split = split(12);
    let images = split.images_tensor(&[11, 3], PixelRange::ZeroToOne, &device());
    assert_eq!(images.dims(), [2, 1, 28, 28]);
    assert_eq!(ids(images, PixelRange::ZeroToOne), vec![11, 3]);
    assert_eq!(ints(split.labels_tensor(&[11, 3], &device())), vec![1, 3]);
}

#[test]
fn number_and_sizes_of_batches() {
    let data = Arc::new(split(103));
    let keep = BatchLoader::new(Arc::clone(&data), 10, PixelRange::ZeroToOne);
    let drop = BatchLoader::new(data, 10, PixelRange::ZeroToOne).with_drop_last(true);
    assert_eq!(keep.num_batches(), 11);
    assert_eq!(drop.num_batches(), 10);

    let sizes: Vec<usize> = keep.epoch(0, &device()).map(|b| b.len()).collect();
    assert_eq!(sizes, [vec![10; 10], vec![3]].concat());
    let batches = drop.epoch(0, &device());
    assert_eq!(batches.len(), 10);
    let sizes: Vec<[usize; 4]> = batches.map(|b| b.images.dims()).collect();
    assert_eq!(sizes, vec![[10, 1, 28, 28]; 10]);
}

#[test]
fn an_epoch_visits_every_image_once_with_matching_labels() {
    let range = PixelRange::MinusOneToOne;
    let loader = BatchLoader::new(Arc::new(split(57)), 8, range).with_seed(5);
    let mut seen = Vec::new();
    for batch in loader.epoch(3, &device()) {
        let batch_ids = ids(batch.images, range);
        let labels = ints(batch.labels);
        for (id, label) in batch_ids.iter().zip(&labels) {
            assert_eq!(*label as usize, id % 10, "label must travel with its image");
        }
        seen.extend(batch_ids);
    }
    assert_eq!(seen, loader.epoch_order(3), "batches follow epoch_order");
    assert_ne!(
        seen,
        (0..57).collect::<Vec<_>>(),
        "the epoch must be shuffled"
    );
    seen.sort_unstable();
    assert_eq!(seen, (0..57).collect::<Vec<_>>());
}

#[test]
fn reshuffled_each_epoch_and_reproducible() {
    let data = Arc::new(split(200));
    let loader = BatchLoader::new(Arc::clone(&data), 16, PixelRange::ZeroToOne).with_seed(42);
    let same_seed = BatchLoader::new(Arc::clone(&data), 16, PixelRange::ZeroToOne).with_seed(42);
    let other_seed = BatchLoader::new(data, 16, PixelRange::ZeroToOne).with_seed(43);

    assert_ne!(loader.epoch_order(0), loader.epoch_order(1));
    assert_ne!(loader.epoch_order(1), loader.epoch_order(2));
    assert_eq!(loader.epoch_order(1), same_seed.epoch_order(1));
    assert_ne!(loader.epoch_order(1), other_seed.epoch_order(1));

    // The same holds for the tensors actually produced.
    let first_batch =
        |l: &BatchLoader, epoch| floats(l.epoch(epoch, &device()).next().unwrap().images);
    assert_eq!(first_batch(&loader, 4), first_batch(&same_seed, 4));
    assert_ne!(first_batch(&loader, 4), first_batch(&loader, 5));
}

#[test]
fn dropping_an_epoch_early_does_not_hang() {
    let loader = BatchLoader::new(Arc::new(split(100)), 4, PixelRange::ZeroToOne);
    for epoch in 0..20 {
        let mut batches = loader.epoch(epoch, &device());
        assert!(batches.next().is_some());
        // `batches` is dropped here while the background thread has more to send.
    }
}

#[test]
fn batch_indices_cover_the_order_in_chunks() {
    let loader =
        BatchLoader::new(Arc::new(split(10)), 4, PixelRange::ZeroToOne).with_drop_last(true);
    let order = loader.epoch_order(7);
    let batches = loader.epoch_batch_indices(7);
    assert_eq!(batches, vec![order[0..4].to_vec(), order[4..8].to_vec()]);
}
