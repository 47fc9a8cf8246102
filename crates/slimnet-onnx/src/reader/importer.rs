//! The state of one import and the helpers every op converter uses.

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use slimnet_core::graph::NodeId;
use slimnet_core::{Graph, Layer};
use slimnet_kernels::int8::QuantParams;

use super::tensor::Const;
use super::{fold, ops, quant_ops, shape_ops, upsample_ops, Int8Import};
use crate::error::{OnnxError, Result};
use crate::proto::NodeProto;
use slimnet_core::tensor::checked_len;

/// A value during import: a constant, or the output of a graph node with its shape.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Const(Rc<Const>),
    Act(NodeId, Vec<usize>),
}

/// The state of one import.
pub(crate) struct Importer {
    pub opset: i64,
    pub graph: Graph,
    pub vals: HashMap<String, Val>,
    /// How many nodes (and graph outputs) read each value.
    pub uses: HashMap<String, usize>,
    pub base: Option<PathBuf>,
    /// Elements created by folding so far (bounded like one constant).
    pub folded: usize,
    /// The int8 layer constructors, when given.
    pub int8: Option<Int8Import>,
    /// ONNX values that are u8 codes, with the quantization relating them to the real values
    /// the slimnet graph carries for them (as codes or reals: the graph converts on demand).
    pub domain: HashMap<String, QuantParams>,
}

/// The name a node is known by in messages: its name, else its first output.
pub(crate) fn display_name(n: &NodeProto) -> String {
    match n.name() {
        "" => n
            .output
            .first()
            .cloned()
            .unwrap_or_else(|| n.op_type().to_string()),
        s => s.to_string(),
    }
}

impl Importer {
    pub fn unsupported(&self, n: &NodeProto, reason: impl Into<String>) -> OnnxError {
        OnnxError::Unsupported {
            node: display_name(n),
            op: n.op_type().to_string(),
            opset: self.opset,
            reason: reason.into(),
        }
    }

    pub fn invalid(&self, n: &NodeProto, reason: impl Into<String>) -> OnnxError {
        OnnxError::Invalid {
            node: display_name(n),
            op: n.op_type().to_string(),
            reason: reason.into(),
        }
    }

    /// Input `i` of `n`, if present.
    pub fn input(&self, n: &NodeProto, i: usize) -> Result<Option<Val>> {
        match n.input.get(i).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(name) => self.vals.get(name).cloned().map(Some).ok_or_else(|| {
                OnnxError::graph(format!(
                    "node `{}` reads `{name}`, which no earlier node writes",
                    display_name(n)
                ))
            }),
        }
    }

    /// Input `i`, which must be computed from the graph input.
    pub fn act(&self, n: &NodeProto, i: usize) -> Result<(NodeId, Vec<usize>)> {
        match self.input(n, i)? {
            Some(Val::Act(id, s)) => Ok((id, s)),
            Some(Val::Const(_)) => Err(self.unsupported(
                n,
                format!("input {i} is a constant where slimnet needs an activation"),
            )),
            None => Err(self.invalid(n, format!("missing input {i}"))),
        }
    }

    /// Input `i`, which must be a constant.
    pub fn konst(&self, n: &NodeProto, i: usize) -> Result<Rc<Const>> {
        self.konst_opt(n, i)?
            .ok_or_else(|| self.invalid(n, format!("missing input {i}")))
    }

    /// Input `i`, a constant when present.
    pub fn konst_opt(&self, n: &NodeProto, i: usize) -> Result<Option<Rc<Const>>> {
        match self.input(n, i)? {
            Some(Val::Const(c)) => Ok(Some(c)),
            Some(Val::Act(..)) => Err(self.unsupported(n, format!("input {i} is computed from the graph input; slimnet needs a constant (a weight) there"))),
            None => Ok(None),
        }
    }

    /// Sets output `k` of `n`.
    pub fn set(&mut self, n: &NodeProto, k: usize, v: Val) {
        if let Some(name) = n.output.get(k).filter(|s| !s.is_empty()) {
            self.vals.insert(name.clone(), v);
        }
    }

    /// Whether output `k` of `n` is read by anyone.
    pub fn output_used(&self, n: &NodeProto, k: usize) -> bool {
        n.output
            .get(k)
            .is_some_and(|o| !o.is_empty() && self.uses.get(o).copied().unwrap_or(0) > 0)
    }

    /// A fresh node name from the ONNX node's (`.` becomes `_`), with `suffix`.
    pub fn name(&self, n: &NodeProto, suffix: &str) -> String {
        let base: String = format!("{}{suffix}", display_name(n))
            .chars()
            .map(|c| if c == '.' { '_' } else { c })
            .collect();
        let base = if base.is_empty() {
            "node".to_string()
        } else {
            base
        };
        let mut name = base.clone();
        let mut k = 2;
        while self.graph.node_id(&name).is_some() || name == "input" {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }

    /// Appends `layer` reading `from` (of shape `shape`), returning its node and output shape.
    pub fn push(
        &mut self,
        n: &NodeProto,
        suffix: &str,
        layer: Box<dyn Layer>,
        from: NodeId,
        shape: &[usize],
    ) -> Result<Val> {
        let out = layer
            .output_shape(shape)
            .map_err(|e| self.invalid(n, e.to_string()))?;
        checked_len(&out).map_err(|e| self.invalid(n, e.to_string()))?;
        let name = self.name(n, suffix);
        let id = self.graph.add_boxed(&name, layer, from)?;
        Ok(Val::Act(id, out))
    }

    /// The shape the second operand of an element-wise op takes under the broadcasting of
    /// opsets before 7 (`broadcast = 1`: its shape matches a run of the first operand's axes
    /// starting at `axis`, by default the trailing ones), written as NumPy broadcasting reads
    /// it (trailing axes of size 1 added); `None` from opset 7 on, or when the shapes are equal.
    ///
    /// # Errors
    /// Shapes that do not fit the legacy rule, or differ without `broadcast = 1`.
    pub fn legacy_operand(
        &self,
        n: &NodeProto,
        a: &[usize],
        b: &[usize],
    ) -> Result<Option<Vec<usize>>> {
        if self.opset >= 7 || a == b {
            return Ok(None);
        }
        let at = super::attrs::Attrs::of(n);
        if at.int("broadcast", 0) == 0 {
            return Err(self.invalid(
                n,
                format!(
                    "shapes {a:?} and {b:?} differ, and broadcast is 0 (opset {})",
                    self.opset
                ),
            ));
        }
        let axis = at.int("axis", a.len() as i64 - b.len() as i64);
        let start = usize::try_from(axis).ok().filter(|&s| {
            s + b.len() <= a.len() && b.iter().zip(&a[s..]).all(|(x, y)| x == y || *x == 1)
        });
        let start = start.ok_or_else(|| {
            self.invalid(
                n,
                format!("{b:?} is not a run of {a:?}'s axes from axis {axis}"),
            )
        })?;
        let mut dims = b.to_vec();
        dims.resize(a.len() - start, 1);
        Ok(Some(dims))
    }

    /// The quantization of input `i` when it is u8 codes.
    pub fn domain(&self, n: &NodeProto, i: usize) -> Option<QuantParams> {
        n.input.get(i).and_then(|x| self.domain.get(x)).copied()
    }

    /// Converts one node.
    pub(crate) fn node(&mut self, n: &NodeProto) -> Result<()> {
        if fold::try_fold(self, n)? {
            return Ok(());
        }
        // ops that move u8 codes around keep their quantization; the quantized ops set their
        // own; any other op reading codes is not a valid ONNX graph for slimnet
        let op = n.op_type();
        let codes = (0..n.input.len())
            .filter_map(|i| self.domain(n, i))
            .collect::<Vec<_>>();
        let keeps = matches!(
            op,
            "MaxPool"
                | "Flatten"
                | "Reshape"
                | "Squeeze"
                | "Unsqueeze"
                | "Transpose"
                | "Identity"
                | "Dropout"
                | "Pad"
                | "Clip"
                | "Concat"
        );
        let quant = matches!(
            op,
            "QuantizeLinear"
                | "DequantizeLinear"
                | "QLinearConv"
                | "QLinearMatMul"
                | "ConvInteger"
                | "MatMulInteger"
                | "Cast"
        );
        if !codes.is_empty() && !keeps && !quant {
            return Err(self.unsupported(n, "an op on u8 codes"));
        }
        if op == "Concat" && codes.len() != n.input.len() && !codes.is_empty()
            || codes.windows(2).any(|w| w[0] != w[1]) && !quant
        {
            return Err(self.unsupported(
                n,
                "codes of different quantizations, or codes and reals, together",
            ));
        }
        if quant {
            return quant_ops::convert(self, n);
        }
        let v = match n.op_type() {
            "Conv" => ops::conv(self, n)?,
            "ConvTranspose" => upsample_ops::conv_transpose(self, n)?,
            "Resize" | "Upsample" => upsample_ops::resize(self, n)?,
            "Gemm" => ops::gemm(self, n)?,
            "MatMul" => ops::matmul(self, n)?,
            "BatchNormalization" => ops::batchnorm(self, n)?,
            "InstanceNormalization" => upsample_ops::instance_norm(self, n)?,
            "MaxPool" | "AveragePool" => ops::pool(self, n)?,
            "GlobalAveragePool" => ops::global_pool(self, n)?,
            "Relu" | "Clip" | "LeakyRelu" | "Sigmoid" | "Tanh" | "HardSigmoid" | "HardSwish" => {
                ops::activation(self, n)?
            }
            "Softmax" | "LogSoftmax" => ops::softmax(self, n)?,
            "PRelu" => ops::prelu(self, n)?,
            "Add" | "Sub" | "Mul" | "Div" | "Pow" => shape_ops::binary(self, n)?,
            op if crate::layers::elementwise::UNARY_OPS.contains(&op) => shape_ops::unary(self, n)?,
            "ReduceMean" | "ReduceSum" => shape_ops::reduce(self, n)?,
            "Slice" => shape_ops::slice(self, n)?,
            "Split" => return shape_ops::split(self, n),
            "Concat" => shape_ops::concat(self, n)?,
            "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => shape_ops::reshape(self, n)?,
            "Transpose" => shape_ops::transpose(self, n)?,
            "Pad" => shape_ops::pad(self, n)?,
            "Dropout" | "Identity" => shape_ops::identity(self, n)?,
            op => {
                return Err(self.unsupported(
                    n,
                    format!("{op} is only supported on constants (it folds at import)"),
                ))
            }
        };
        self.set(n, 0, v);
        if let (Some(&p), Some(out)) = (codes.first(), n.output.first()) {
            self.domain.insert(out.clone(), p);
        }
        Ok(())
    }
}
