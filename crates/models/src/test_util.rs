//! Helpers shared by the unit tests.

use burn::tensor::Tensor;

/// A tensor's values on the host, as f32: a parameter's, a gradient's, an output's.
pub(crate) fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
}

/// Asserts `|actual - expected| < tolerance * max(|expected|, 1)`: a relative tolerance for
/// values above 1, an absolute one near 0.
pub(crate) fn assert_near(actual: f64, expected: f64, tolerance: f64, context: &str) {
    assert!(
        (actual - expected).abs() < tolerance * expected.abs().max(1.0),
        "{context}: {actual} vs {expected}"
    );
}
