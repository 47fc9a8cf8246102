//! The cost model: per-layer output shape, parameters, MACs and bytes, with totals.

use std::fmt;

use crate::error::Result;
use crate::graph::{Graph, Op};
use crate::layer::Cost;

/// One row of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// Node name.
    pub name: String,
    /// Layer kind or merge op.
    pub kind: String,
    /// The node's cost (merges have no parameters; their MACs count one op per output element).
    pub cost: Cost,
}

/// Per-node cost of a model for one input shape, printable as a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Input shape.
    pub input: Vec<usize>,
    /// One row per node after the input.
    pub rows: Vec<SummaryRow>,
}

impl Summary {
    /// Computes the summary of `model` for `input`.
    ///
    /// # Errors
    /// When the input shape does not fit the model (the error names the node).
    pub fn of(model: &Graph, input: &[usize]) -> Result<Self> {
        let shapes = model.shapes(input)?;
        let mut rows = Vec::new();
        for (i, n) in model.nodes().iter().enumerate().skip(1) {
            let cost = match &n.op {
                Op::Layer(l) => l
                    .cost(&shapes[n.inputs[0].index()])
                    .map_err(|e| e.in_layer(&n.name))?,
                _ => Cost {
                    output: shapes[i].clone(),
                    macs: n.op.merge_macs(&shapes[i], &shapes[n.inputs[0].index()]),
                    ..Cost::default()
                },
            };
            rows.push(SummaryRow {
                name: n.name.clone(),
                kind: n.op.name().to_string(),
                cost,
            });
        }
        Ok(Self {
            input: input.to_vec(),
            rows,
        })
    }

    /// Total parameters.
    pub fn params(&self) -> usize {
        self.rows.iter().map(|r| r.cost.params).sum()
    }

    /// Total MACs.
    pub fn macs(&self) -> usize {
        self.rows.iter().map(|r| r.cost.macs).sum()
    }

    /// Total weight bytes.
    pub fn bytes(&self) -> usize {
        self.rows.iter().map(|r| r.cost.bytes).sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:<14} {:<18} {:>12} {:>14} {:>12}",
            "node", "kind", "output", "params", "MACs", "bytes"
        )?;
        writeln!(f, "{}", "-".repeat(91))?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<16} {:<14} {:<18} {:>12} {:>14} {:>12}",
                r.name,
                r.kind,
                format!("{:?}", r.cost.output),
                r.cost.params,
                r.cost.macs,
                r.cost.bytes
            )?;
        }
        writeln!(f, "{}", "-".repeat(91))?;
        write!(
            f,
            "{:<16} {:<14} {:<18} {:>12} {:>14} {:>12}",
            "total",
            "",
            format!("input {:?}", self.input),
            self.params(),
            self.macs(),
            self.bytes()
        )
    }
}
