//! The IDX readers on arbitrary bytes: a seeded mutation fuzzer (valid files with bytes flipped,
//! cut short, lengthened, headers rewritten with other dimensions, gzip framing broken, and pure
//! noise) checks that every outcome is a value or an error, never a panic, and that what reads
//! as images is whole 28x28 images.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};

use flate2::{Compression, write::GzEncoder};
use genmodels_data::IMAGE_PIXELS;
use genmodels_data::idx::{self, Encoding};
use genmodels_data::shuffle::SplitMix64;

/// Cases per kind of input.
const CASES: usize = 400;

fn valid_files(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..2 * IMAGE_PIXELS)
        .map(|i| (i * 13 % 256) as u8)
        .collect();
    let (images, labels) = (dir.join("images"), dir.join("labels"));
    idx::write_images(&images, &pixels, Encoding::Raw).unwrap();
    idx::write_labels(&labels, &[3, 9], Encoding::Raw).unwrap();
    (
        std::fs::read(images).unwrap(),
        std::fs::read(labels).unwrap(),
    )
}

/// One mutation of `bytes`, chosen by `rng`.
fn mutate(bytes: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match rng.below(6) {
        0 => {
            for _ in 0..=rng.below(8) {
                let at = rng.below(out.len() as u64) as usize;
                out[at] = rng.next_u64() as u8;
            }
        }
        1 => out.truncate(rng.below(out.len() as u64 + 1) as usize),
        2 => out.extend((0..rng.below(100)).map(|_| rng.next_u64() as u8)),
        3 => {
            // A header byte: the magic number or a dimension.
            let at = rng.below(16.min(out.len() as u64)) as usize;
            out[at] = rng.next_u64() as u8;
        }
        4 => {
            let at = 4 + 4 * rng.below(3) as usize;
            if at + 4 <= out.len() {
                out[at..at + 4].copy_from_slice(&(rng.next_u64() as u32).to_be_bytes());
            }
        }
        _ => out = (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect(),
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn arbitrary_bytes_give_an_error_or_whole_images_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = valid_files(dir.path());
    let mut rng = SplitMix64::new(20261201);
    let (mut read, mut refused) = (0, 0);
    for case in 0..CASES {
        for (kind, valid) in [("images", &images), ("labels", &labels)] {
            let mut bytes = mutate(valid, &mut rng);
            let gzipped = case % 4 == 0;
            if gzipped {
                bytes = gzip(&bytes);
                if case % 8 == 0 {
                    let cut = rng.below(bytes.len() as u64) as usize;
                    bytes.truncate(cut.max(2));
                }
            }
            let name = if gzipped {
                format!("{kind}.gz")
            } else {
                kind.to_string()
            };
            let path = dir.path().join(format!("case-{name}"));
            std::fs::write(&path, &bytes).unwrap();
            let outcome = catch_unwind(AssertUnwindSafe(|| match kind {
                "images" => idx::read_images(&path).map(|p| p.len() % IMAGE_PIXELS == 0),
                _ => idx::read_labels(&path).map(|l| l.iter().all(|&c| c < 10)),
            }));
            match outcome {
                Ok(Ok(whole)) => {
                    assert!(
                        whole,
                        "case {case} ({name}): a partial image or a bad label"
                    );
                    read += 1;
                }
                Ok(Err(error)) => {
                    assert!(
                        error.to_string().contains("case-"),
                        "case {case} ({name}): the error names no file: {error}"
                    );
                    refused += 1;
                }
                Err(_) => panic!("case {case} ({name}): the reader panicked on {bytes:?}"),
            }
        }
    }
    // Both outcomes occur: the mutations reach past the header checks.
    assert!(read > 0 && refused > 0, "read {read}, refused {refused}");
}
