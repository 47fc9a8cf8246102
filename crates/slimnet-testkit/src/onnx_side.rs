//! A model and its ONNX file side by side: accuracy, file size and batch-1 latency in slimnet
//! and in ONNX Runtime, as `examples/onnx_compress.rs` reports them.

use std::fmt;
use std::path::Path;

use slimnet_core::data::{Dataset, Examples};
use slimnet_core::{io, train, Graph, Layer};

use crate::{ort, speed, Res, Table};

/// One model measured in both runtimes.
#[derive(Debug, Clone, PartialEq)]
pub struct SideBySide {
    /// Row name.
    pub name: String,
    /// Test accuracy of the slimnet graph.
    pub slimnet_acc: f32,
    /// Test accuracy of the ONNX file in ONNX Runtime.
    pub ort_acc: f32,
    /// Bytes of the slimnet model file (safetensors; sparse and int8 layers compact).
    pub slimnet_bytes: usize,
    /// Bytes of the ONNX file.
    pub onnx_bytes: usize,
    /// Median batch-1 latency of the slimnet graph, one thread, microseconds.
    pub slimnet_us: f64,
    /// Median batch-1 latency in ONNX Runtime, one thread, microseconds.
    pub ort_us: f64,
}

/// Measures each `(name, graph, onnx file)`: accuracy of both on `test` (for ONNX Runtime,
/// run in batches of 500 and compared by arg-max), file sizes, and batch-1 latency on the
/// images of `timed` over `rounds` rounds, the models taking turns
/// ([`speed::batch1`], [`ort::batch1`]).
///
/// # Errors
/// A graph that rejects the test images, a file that cannot be read or written, or an ONNX
/// Runtime failure.
pub fn measure(
    models: &[(&str, &Graph, &Path)],
    test: &dyn Examples,
    timed: &Dataset,
    rounds: usize,
) -> Res<Vec<SideBySide>> {
    let graphs: Vec<&dyn Layer> = models.iter().map(|m| m.1 as &dyn Layer).collect();
    let files: Vec<&Path> = models.iter().map(|m| m.2).collect();
    let ours = speed::batch1(&graphs, timed, rounds)?;
    let theirs = ort::batch1(&files, timed, rounds)?;
    let all = test.load(&(0..test.len()).collect::<Vec<_>>())?;
    let mut out = Vec::new();
    for (k, (name, graph, file)) in models.iter().enumerate() {
        let y = ort::run(file, &all.0, 500)?;
        let classes = y.shape().get(1).copied().unwrap_or(0);
        let hits = y
            .as_standard_layout()
            .as_slice()
            .ok_or("output layout")?
            .chunks(classes.max(1))
            .zip(&all.1)
            .filter(|(row, &label)| argmax(row) == label)
            .count();
        out.push(SideBySide {
            name: name.to_string(),
            slimnet_acc: train::accuracy(*graph, test)?,
            ort_acc: hits as f32 / test.len().max(1) as f32,
            slimnet_bytes: io::to_bytes(graph)?.len(),
            onnx_bytes: std::fs::metadata(file)
                .map_err(|e| format!("{}: {e}", file.display()))?
                .len() as usize,
            slimnet_us: ours[k].median_us,
            ort_us: theirs[k].median_us,
        });
    }
    Ok(out)
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0
}

/// The measurements as a table, each row with its ratio to the first: file sizes smaller by,
/// latencies faster by.
pub struct SideTable<'a>(pub &'a [SideBySide]);

impl fmt::Display for SideTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut t = Table::new(&[
            "model",
            "acc slimnet",
            "acc ORT",
            "slimnet file",
            "ONNX file",
            "slimnet us",
            "ORT us",
            "slimnet x",
            "ORT x",
        ]);
        let Some(base) = self.0.first() else {
            return write!(f, "{t}");
        };
        for s in self.0 {
            t.row(&[
                s.name.clone(),
                format!("{:.4}", s.slimnet_acc),
                format!("{:.4}", s.ort_acc),
                format!("{:.1} KB", s.slimnet_bytes as f64 / 1e3),
                format!("{:.1} KB", s.onnx_bytes as f64 / 1e3),
                format!("{:.1}", s.slimnet_us),
                format!("{:.1}", s.ort_us),
                format!("{:.2}", base.slimnet_us / s.slimnet_us),
                format!("{:.2}", base.ort_us / s.ort_us),
            ]);
        }
        write!(f, "{t}")
    }
}

/// `n` seeded random inputs of shape `input` (batch axis first, values in `[-1, 1]`) labelled
/// with `model`'s own arg-max: data for fine-tuning and calibrating a classifier that came
/// without its data set, where accuracy then means agreement with the original model.
///
/// # Errors
/// A model whose output is not `[N, classes]`.
pub fn self_labelled(model: &Graph, input: &[usize], n: usize, seed: u64) -> Res<Dataset> {
    let mut shape = input.to_vec();
    shape[0] = n;
    let x = slimnet_core::tensor::uniform(&shape, -1.0, 1.0, &mut slimnet_core::tensor::rng(seed));
    let unlabelled = Dataset::new(x.clone(), vec![0; n], 1)?;
    let mut labels = Vec::with_capacity(n);
    let mut classes = 0;
    for i in (0..n).step_by(64) {
        let idx: Vec<usize> = (i..(i + 64).min(n)).collect();
        let y = model.forward(&unlabelled.batch(&idx).0)?;
        if y.ndim() != 2 {
            return Err(
                format!("a classifier's output is [N, classes], got {:?}", y.shape()).into(),
            );
        }
        classes = y.shape()[1];
        let y = y.as_standard_layout();
        labels.extend(y.as_slice().ok_or("layout")?.chunks(classes).map(argmax));
    }
    Ok(Dataset::new(x, labels, classes)?)
}

/// The paths of the convolutions of `model` (top level) worth a Tucker-2 decomposition: one
/// group, a spatial kernel, and at least `min_in` input channels (a convolution reading the
/// image's few channels gains nothing from a reduction in front).
pub fn wide_convs(model: &Graph, min_in: usize) -> Vec<String> {
    model
        .children()
        .into_iter()
        .filter(|(_, l)| {
            l.downcast_ref::<slimnet_core::layers::Conv2d>()
                .is_some_and(|c| {
                    let c = c.config();
                    c.in_channels >= min_in && c.groups == 1 && c.kernel != [1, 1]
                })
        })
        .map(|(path, _)| path.to_string())
        .collect()
}
