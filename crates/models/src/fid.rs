//! The Fréchet Inception Distance (Heusel et al., 2017) between two sets of feature vectors.
//!
//! Each set is summarised by the mean `mu` and covariance `S` of its features, as if they were
//! Gaussian; the distance between the two Gaussians is the Fréchet (Wasserstein-2) distance
//!
//! `FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})`.
//!
//! Lower is closer; 0 for identical statistics. Everything is computed in f64. The features
//! arrive in batches: [`FeatureMoments`] keeps a running mean and scatter matrix, so any number
//! of samples fits in memory.
//!
//! The trace of the matrix square root is taken without forming the square root of the
//! non-symmetric product `S_1 S_2`: with `A = S_1^{1/2}` (symmetric), `S_1 S_2 = A (A S_2 A) A^{-1}`
//! is similar to the symmetric positive semi-definite `A S_2 A`, so both have the same
//! eigenvalues and `Tr (S_1 S_2)^{1/2} = sum_i sqrt(lambda_i(A S_2 A))`. Both square roots come
//! from nalgebra's symmetric eigen-decomposition, with round-off negative eigenvalues set to
//! zero.

pub use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

/// What can go wrong when comparing feature statistics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FidError {
    /// The two sets have features of different widths.
    #[error("feature widths differ: {0} and {1}")]
    DimensionMismatch(usize, usize),
    /// A covariance needs at least two samples.
    #[error("a covariance needs at least 2 feature vectors, got {0}")]
    TooFewSamples(usize),
    /// A batch whose length is not a whole number of feature vectors.
    #[error("{len} values is not a whole number of {dim}-wide feature vectors")]
    RaggedBatch { len: usize, dim: usize },
    /// A NaN or infinite feature or statistic.
    #[error("feature statistics are not finite")]
    NotFinite,
}

/// `S^{1/2} = V diag(sqrt(max(lambda, 0))) V^T` for a symmetric positive semi-definite `S`,
/// through nalgebra's symmetric eigen-decomposition `S = V diag(lambda) V^T`. Round-off
/// negative eigenvalues count as zero.
pub fn symmetric_sqrt(s: &DMatrix<f64>) -> DMatrix<f64> {
    let eigen = symmetrised(s).symmetric_eigen();
    let roots = eigen.eigenvalues.map(|lambda| lambda.max(0.0).sqrt());
    &eigen.eigenvectors * DMatrix::from_diagonal(&roots) * eigen.eigenvectors.transpose()
}

/// `(A + A^T) / 2`: removes the round-off asymmetry of a product such as `A S A`.
fn symmetrised(a: &DMatrix<f64>) -> DMatrix<f64> {
    (a + a.transpose()) * 0.5
}

/// The mean and covariance of a set of feature vectors: one side of the FID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStatistics {
    /// Number of feature vectors summarised.
    pub count: usize,
    /// `mu`, one entry per feature.
    pub mean: Vec<f64>,
    /// `S`, row-major `dim x dim`, the unbiased estimate (divided by `count - 1`).
    pub covariance: Vec<f64>,
}

impl FeatureStatistics {
    /// Statistics from a mean and a row-major covariance.
    ///
    /// # Panics
    /// If `covariance` does not hold `mean.len()^2` values.
    pub fn new(count: usize, mean: Vec<f64>, covariance: Vec<f64>) -> Self {
        assert_eq!(
            covariance.len(),
            mean.len() * mean.len(),
            "the covariance must be dim x dim"
        );
        Self {
            count,
            mean,
            covariance,
        }
    }

    /// Width of the feature vectors.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The covariance as a matrix.
    pub fn covariance_matrix(&self) -> DMatrix<f64> {
        DMatrix::from_row_slice(self.dim(), self.dim(), &self.covariance)
    }

    /// The Fréchet distance between these statistics and `other`; see [`frechet_distance`].
    pub fn frechet_distance(&self, other: &FeatureStatistics) -> Result<f64, FidError> {
        if self.dim() != other.dim() {
            return Err(FidError::DimensionMismatch(self.dim(), other.dim()));
        }
        frechet_distance(
            &self.mean,
            &self.covariance_matrix(),
            &other.mean,
            &other.covariance_matrix(),
        )
    }
}

/// `||mu_1 - mu_2||^2 + Tr(S_1) + Tr(S_2) - 2 Tr (S_1 S_2)^{1/2}`, with the trace of the square
/// root computed as `sum_i sqrt(lambda_i(S_1^{1/2} S_2 S_1^{1/2}))` (see the module notes).
/// Tiny negative results of round-off are returned as 0.
pub fn frechet_distance(
    mu1: &[f64],
    s1: &DMatrix<f64>,
    mu2: &[f64],
    s2: &DMatrix<f64>,
) -> Result<f64, FidError> {
    let dim = mu1.len();
    for size in [mu2.len(), s1.nrows(), s1.ncols(), s2.nrows(), s2.ncols()] {
        if size != dim {
            return Err(FidError::DimensionMismatch(dim, size));
        }
    }
    if ![mu1, mu2, s1.as_slice(), s2.as_slice()]
        .iter()
        .all(|values| values.iter().all(|v| v.is_finite()))
    {
        return Err(FidError::NotFinite);
    }
    let mean_term: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let root1 = symmetric_sqrt(s1);
    let product = &root1 * s2 * &root1; // S_1^{1/2} S_2 S_1^{1/2}, symmetric PSD
    let trace_root: f64 = symmetrised(&product)
        .symmetric_eigenvalues()
        .iter()
        .map(|&lambda| lambda.max(0.0).sqrt())
        .sum();
    let fid = mean_term + s1.trace() + s2.trace() - 2.0 * trace_root;
    if !fid.is_finite() {
        return Err(FidError::NotFinite);
    }
    Ok(fid.max(0.0))
}

/// A running mean and scatter matrix `M = sum_i (x_i - mu)(x_i - mu)^T` of feature vectors that
/// arrive in batches.
///
/// Each batch is first reduced to its own mean and scatter (two passes over the batch, in
/// f64), then merged with the totals by the pairwise update of Chan, Golub & LeVeque (1979):
/// with `delta = mu_b - mu`,
///
/// `mu <- mu + delta n_b / (n + n_b)`, `M <- M + M_b + delta delta^T n n_b / (n + n_b)`,
///
/// which equals the two-pass result up to round-off, however the data is split.
#[derive(Debug, Clone)]
pub struct FeatureMoments {
    dim: usize,
    count: usize,
    mean: Vec<f64>,
    /// Row-major `dim x dim`.
    scatter: Vec<f64>,
}

impl FeatureMoments {
    /// No samples yet, for features of width `dim`.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            count: 0,
            mean: vec![0.0; dim],
            scatter: vec![0.0; dim * dim],
        }
    }

    /// Width of the feature vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Feature vectors seen so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds a batch of feature vectors, row after row (`len / dim` rows of `dim` values).
    pub fn update(&mut self, batch: &[f32]) -> Result<(), FidError> {
        let dim = self.dim;
        if dim == 0 || !batch.len().is_multiple_of(dim) {
            return Err(FidError::RaggedBatch {
                len: batch.len(),
                dim,
            });
        }
        if !batch.iter().all(|v| v.is_finite()) {
            return Err(FidError::NotFinite);
        }
        let rows = batch.len() / dim;
        if rows == 0 {
            return Ok(());
        }
        // First pass: the batch mean.
        let mut batch_mean = vec![0.0f64; dim];
        for row in batch.chunks_exact(dim) {
            for (m, &x) in batch_mean.iter_mut().zip(row) {
                *m += x as f64;
            }
        }
        batch_mean.iter_mut().for_each(|m| *m /= rows as f64);
        // Second pass: the batch scatter, added straight into the total (upper triangle).
        let mut centred = vec![0.0f64; dim];
        for row in batch.chunks_exact(dim) {
            for ((c, &x), m) in centred.iter_mut().zip(row).zip(&batch_mean) {
                *c = x as f64 - m;
            }
            for a in 0..dim {
                let ca = centred[a];
                let out = &mut self.scatter[a * dim + a..(a + 1) * dim];
                for (o, &cb) in out.iter_mut().zip(&centred[a..]) {
                    *o += ca * cb;
                }
            }
        }
        // Merge: the shift between the two means.
        let (n, nb) = (self.count as f64, rows as f64);
        let total = n + nb;
        let delta: Vec<f64> = batch_mean
            .iter()
            .zip(&self.mean)
            .map(|(b, m)| b - m)
            .collect();
        let weight = n * nb / total;
        for a in 0..dim {
            for b in a..dim {
                self.scatter[a * dim + b] += delta[a] * delta[b] * weight;
            }
        }
        for (m, d) in self.mean.iter_mut().zip(&delta) {
            *m += d * nb / total;
        }
        self.count += rows;
        Ok(())
    }

    /// The mean and the unbiased covariance `M / (n - 1)`, as numpy's `np.cov`.
    pub fn statistics(&self) -> Result<FeatureStatistics, FidError> {
        if self.count < 2 {
            return Err(FidError::TooFewSamples(self.count));
        }
        let dim = self.dim;
        let scale = 1.0 / (self.count as f64 - 1.0);
        let mut covariance = vec![0.0; dim * dim];
        for a in 0..dim {
            for b in a..dim {
                let value = self.scatter[a * dim + b] * scale;
                covariance[a * dim + b] = value;
                covariance[b * dim + a] = value;
            }
        }
        Ok(FeatureStatistics::new(
            self.count,
            self.mean.clone(),
            covariance,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn statistics(mean: [f64; 4], rows: [[f64; 4]; 4]) -> FeatureStatistics {
        FeatureStatistics::new(2, mean.to_vec(), rows.concat())
    }

    #[test]
    fn worked_example_of_the_issue() {
        let real = statistics(
            [0.5, 0.2, 0.7, 0.4],
            [
                [0.2, 0.1, 0.05, 0.02],
                [0.1, 0.3, 0.1, 0.05],
                [0.05, 0.1, 0.4, 0.1],
                [0.02, 0.05, 0.1, 0.2],
            ],
        );
        let set_one = statistics(
            [0.4, 0.3, 0.5, 0.6],
            [
                [0.7, 0.1, 0.05, 0.02],
                [0.1, 0.2, 0.1, 0.05],
                [0.05, 0.1, 0.3, 0.1],
                [0.02, 0.05, 0.1, 0.15],
            ],
        );
        let set_two = statistics(
            [0.7, 0.1, 0.3, 0.5],
            [
                [0.4, 0.05, 0.05, 0.01],
                [0.05, 0.3, 0.1, 0.05],
                [0.05, 0.1, 0.2, 0.05],
                [0.01, 0.05, 0.05, 0.2],
            ],
        );
        let one = real.frechet_distance(&set_one).unwrap();
        let two = real.frechet_distance(&set_two).unwrap();
        assert!((one - 0.28113).abs() < 1e-4, "set I: {one}");
        assert!((two - 0.30439).abs() < 1e-4, "set II: {two}");
        assert!(one < two, "set I is the closer one");
    }

    #[test]
    fn diagonal_covariances_have_a_closed_form() {
        // For diagonal S_1, S_2 the root is elementwise:
        // FID = ||mu_1 - mu_2||^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2.
        let s1 = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![4.0, 1.0, 0.25]));
        let s2 = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![1.0, 9.0, 0.25]));
        let expected = 5.0 + (2.0 - 1.0f64).powi(2) + (1.0 - 3.0f64).powi(2);
        let got = frechet_distance(&[1.0, 0.0, 2.0], &s1, &[0.0; 3], &s2).unwrap();
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        let root = symmetric_sqrt(&s1);
        assert!((root[(0, 0)] - 2.0).abs() < 1e-12 && root[(0, 1)].abs() < 1e-12);
    }

    #[test]
    fn the_square_root_squares_back() {
        // [[2, 1], [1, 2]] = V diag(1, 3) V^T with V = [[1, 1], [-1, 1]] / sqrt 2, so its root
        // is V diag(1, sqrt 3) V^T = [[1 + sqrt 3, sqrt 3 - 1], [sqrt 3 - 1, 1 + sqrt 3]] / 2.
        let root = symmetric_sqrt(&DMatrix::from_row_slice(2, 2, &[2.0, 1.0, 1.0, 2.0]));
        let r3 = 3f64.sqrt();
        let expected =
            DMatrix::from_row_slice(2, 2, &[1.0 + r3, r3 - 1.0, r3 - 1.0, 1.0 + r3]) / 2.0;
        assert!((&root - &expected).amax() < 1e-14, "{root}");
        // A larger symmetric positive definite matrix (a Hilbert matrix plus 0.5 I).
        let n = 12;
        let a = DMatrix::from_fn(n, n, |i, j| {
            1.0 / (1.0 + i as f64 + j as f64) + if i == j { 0.5 } else { 0.0 }
        });
        let root = symmetric_sqrt(&a);
        assert!((&root * &root - &a).amax() < 1e-12);
        assert!(
            (&root - root.transpose()).amax() < 1e-14,
            "the root is symmetric"
        );
    }

    /// `n` rows of `dim` correlated features, drawn from a seeded generator.
    fn features(n: usize, dim: usize, shift: f32, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut values = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let common: f32 = rng.random_range(-1.0..1.0);
            for j in 0..dim {
                let own: f32 = rng.random_range(-1.0..1.0);
                values.push(shift + common * (j as f32 + 1.0) * 0.3 + own);
            }
        }
        values
    }

    fn moments_of(values: &[f32], dim: usize, batch_rows: &[usize]) -> FeatureStatistics {
        let mut moments = FeatureMoments::new(dim);
        let mut start = 0;
        for &rows in batch_rows.iter().cycle() {
            if start >= values.len() {
                break;
            }
            let end = (start + rows * dim).min(values.len());
            moments.update(&values[start..end]).unwrap();
            start = end;
        }
        moments.statistics().unwrap()
    }

    #[test]
    fn streaming_statistics_equal_the_two_pass_ones() {
        let (n, dim) = (1000, 5);
        // An offset far from zero is where a naive sum-of-squares formula loses digits.
        let values: Vec<f32> = features(n, dim, 0.0, 3)
            .iter()
            .map(|v| v + 1000.0)
            .collect();
        // Two passes, by hand: the mean, then the centred products.
        let mut mean = vec![0.0f64; dim];
        for row in values.chunks(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64 / n as f64;
            }
        }
        let mut covariance = vec![0.0f64; dim * dim];
        for row in values.chunks(dim) {
            for a in 0..dim {
                for b in 0..dim {
                    covariance[a * dim + b] +=
                        (row[a] as f64 - mean[a]) * (row[b] as f64 - mean[b]) / (n as f64 - 1.0);
                }
            }
        }
        // Uneven batches, a single row, and the whole set at once.
        for batches in [&[1][..], &[7, 1, 300], &[1000]] {
            let streamed = moments_of(&values, dim, batches);
            assert_eq!(streamed.count, n);
            for (got, want) in streamed.mean.iter().zip(&mean) {
                assert!((got - want).abs() < 1e-9, "mean {got} vs {want}");
            }
            for (got, want) in streamed.covariance.iter().zip(&covariance) {
                assert!((got - want).abs() < 1e-9, "covariance {got} vs {want}");
            }
        }
    }

    #[test]
    fn a_set_against_itself_is_zero_and_the_distance_is_symmetric() {
        let dim = 6;
        let a = moments_of(&features(500, dim, 0.0, 1), dim, &[64]);
        let b = moments_of(&features(400, dim, 0.5, 2), dim, &[64]);
        let self_distance = a.frechet_distance(&a).unwrap();
        assert!(self_distance.abs() < 1e-9, "FID(a, a) = {self_distance}");
        let ab = a.frechet_distance(&b).unwrap();
        let ba = b.frechet_distance(&a).unwrap();
        // The mean shift alone contributes 6 * 0.5^2 = 1.5.
        assert!(ab > 1.4, "{ab}");
        assert!((ab - ba).abs() < 1e-9 * ab, "{ab} vs {ba}");
    }

    #[test]
    fn bad_input_is_refused() {
        let mut moments = FeatureMoments::new(3);
        assert_eq!(
            moments.update(&[1.0; 4]),
            Err(FidError::RaggedBatch { len: 4, dim: 3 })
        );
        assert_eq!(
            moments.update(&[1.0, f32::NAN, 0.0]),
            Err(FidError::NotFinite)
        );
        moments.update(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(moments.statistics(), Err(FidError::TooFewSamples(1)));
        let a = FeatureStatistics::new(2, vec![0.0; 2], vec![0.0; 4]);
        let b = FeatureStatistics::new(2, vec![0.0; 3], vec![0.0; 9]);
        assert_eq!(
            a.frechet_distance(&b),
            Err(FidError::DimensionMismatch(2, 3))
        );
    }
}
