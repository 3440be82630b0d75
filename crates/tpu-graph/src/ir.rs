//! The graph IR: nodes with typed results, in topological order.
//!
//! A graph does not know where its nodes come from (one dispatched op, a fused
//! stream of ops, or an FX graph); it only knows parameters, nodes and outputs.

use crate::dtype::DType;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Shape and dtype of one value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValueType {
    pub dtype: DType,
    pub shape: Vec<i64>,
}

impl ValueType {
    pub fn new(dtype: DType, shape: &[i64]) -> Self {
        ValueType {
            dtype,
            shape: shape.to_vec(),
        }
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }
    pub fn with_dtype(&self, dtype: DType) -> Self {
        ValueType {
            dtype,
            shape: self.shape.clone(),
        }
    }
}

impl fmt::Display for ValueType {
    /// MLIR spelling: `tensor<2x3xf32>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tensor<")?;
        for d in &self.shape {
            write!(f, "{d}x")?;
        }
        write!(f, "{}>", self.dtype.mlir())
    }
}

/// A value: result `index` of node `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryKind {
    Neg,
    Abs,
    Exp,
    Expm1,
    Log,
    Log1p,
    Sqrt,
    Rsqrt,
    Cbrt,
    Tanh,
    Logistic,
    Sin,
    Cos,
    Tan,
    Floor,
    Ceil,
    RoundEven,
    Sign,
    Not,
    IsFinite,
    // chlo ops, legalised by XLA.
    Erf,
    Erfinv,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    Lgamma,
    Digamma,
    /// Parts of a complex value (real dtype out).
    Real,
    Imag,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Max,
    Min,
    And,
    Or,
    Xor,
    Atan2,
    ShiftLeft,
    ShiftRightArithmetic,
    ShiftRightLogical,
    /// Real and imaginary parts (real operands) into one complex value.
    Complex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpDir {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The associative operation of a reduction or window reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Prod,
    Max,
    Min,
    And,
    Or,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DotDims {
    pub lhs_batch: Vec<i64>,
    pub rhs_batch: Vec<i64>,
    pub lhs_contract: Vec<i64>,
    pub rhs_contract: Vec<i64>,
}

/// Convolution in (batch, feature, spatial...) layout for input and output and
/// (out-feature, in-feature, spatial...) for the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConvAttrs {
    pub strides: Vec<i64>,
    pub padding: Vec<(i64, i64)>,
    pub lhs_dilation: Vec<i64>,
    pub rhs_dilation: Vec<i64>,
    pub feature_groups: i64,
    pub batch_groups: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowAttrs {
    pub dims: Vec<i64>,
    pub strides: Vec<i64>,
    pub padding: Vec<(i64, i64)>,
    pub base_dilation: Vec<i64>,
    pub window_dilation: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GatherAttrs {
    pub offset_dims: Vec<i64>,
    pub collapsed_slice_dims: Vec<i64>,
    pub start_index_map: Vec<i64>,
    pub index_vector_dim: i64,
    pub slice_sizes: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScatterAttrs {
    pub update_window_dims: Vec<i64>,
    pub inserted_window_dims: Vec<i64>,
    pub scatter_dims_to_operand_dims: Vec<i64>,
    pub index_vector_dim: i64,
    /// `None` replaces, `Some(kind)` combines old and new values with `kind`.
    pub combine: Option<ReduceKind>,
}

/// A splat constant's value, stored bit-exactly so that hashing is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConstVal {
    Bool(bool),
    Int(i64),
    /// f64 bits.
    Float(u64),
    /// f64 bits of the real and imaginary parts.
    Complex(u64, u64),
}

impl ConstVal {
    pub fn float(v: f64) -> Self {
        ConstVal::Float(v.to_bits())
    }
    pub fn complex(re: f64, im: f64) -> Self {
        ConstVal::Complex(re.to_bits(), im.to_bits())
    }
    /// The imaginary part (0 for real values).
    pub fn imag(self) -> f64 {
        match self {
            ConstVal::Complex(_, im) => f64::from_bits(im),
            _ => 0.0,
        }
    }
    pub fn as_f64(self) -> f64 {
        match self {
            ConstVal::Bool(b) => b as i64 as f64,
            ConstVal::Int(i) => i as f64,
            ConstVal::Float(bits) | ConstVal::Complex(bits, _) => f64::from_bits(bits),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Parameter(u32),
    /// Every element equals the value.
    Constant(ConstVal),
    Iota(i64),
    Unary(UnaryKind),
    Binary(BinaryKind),
    Compare(CmpDir),
    Select,
    Clamp,
    Convert,
    BitcastConvert,
    Reshape,
    Transpose(Vec<i64>),
    BroadcastInDim(Vec<i64>),
    Slice {
        start: Vec<i64>,
        limit: Vec<i64>,
        stride: Vec<i64>,
    },
    /// operand, update, then one scalar start index per dimension.
    DynamicUpdateSlice,
    /// operand, then one scalar start index per dimension.
    DynamicSlice(Vec<i64>),
    Concatenate(i64),
    Pad {
        low: Vec<i64>,
        high: Vec<i64>,
        interior: Vec<i64>,
    },
    Reverse(Vec<i64>),
    Reduce {
        kind: ReduceKind,
        dims: Vec<i64>,
    },
    /// Index of the max (or min) along `dim`, first occurrence, NaN wins for max/min.
    ArgReduce {
        max: bool,
        dim: i64,
    },
    Dot(DotDims),
    Convolution(ConvAttrs),
    ReduceWindow {
        kind: ReduceKind,
        window: WindowAttrs,
    },
    Gather(GatherAttrs),
    /// operand, indices, updates.
    Scatter(ScatterAttrs),
    /// state (ui64[2]) -> (new state, random bits of the result shape).
    RngBitGenerator,
    /// Stable sort of the operands along `dim` by the first operand; one result per operand.
    Sort {
        dim: i64,
        descending: bool,
    },
    /// Cholesky factor of each matrix in the last two dims; only the `lower`
    /// (or upper) triangle is read, the other triangle of the result is undefined.
    Cholesky {
        lower: bool,
    },
    /// Solves `op(a) x = b` (`left_side`) or `x op(a) = b` for triangular `a`
    /// (operands a, b; batch dims leading and equal), `op` transposing if `transpose_a`.
    TriangularSolve {
        left_side: bool,
        lower: bool,
        unit_diagonal: bool,
        transpose_a: bool,
    },
    /// A call of a function written elsewhere (a JAX or Pallas kernel):
    /// `functions` are private `func.func` definitions, emitted once beside
    /// `main`, among them `symbol`, called with the node's inputs.
    Call(std::sync::Arc<ExternalFunctions>),
    /// Discrete Fourier transform over the trailing `lengths.len()` dims
    /// (`Ifft`/`Irfft` scale by 1/n, as StableHLO defines them).
    Fft {
        kind: FftKind,
        lengths: Vec<i64>,
    },
    /// `stablehlo.while`: inputs are the initial carried values, results
    /// their final values (see [`crate::control`]).
    While(std::sync::Arc<Loop>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FftKind {
    /// complex → complex, forward.
    Fft,
    /// complex → complex, inverse.
    Ifft,
    /// real → complex, the non-redundant half of the last dim (n/2 + 1).
    Rfft,
    /// complex half spectrum → real of the last length.
    Irfft,
}

/// The two regions of a while loop (see [`Op::While`]).
/// (Here, beside [`Op`], so the IR needs nothing from the `control` builder.)
#[derive(Clone, Debug)]
pub struct Loop {
    /// Parameters: the carried values; one output: a `tensor<i1>`.
    pub cond: Graph,
    /// Parameters: the carried values; outputs: their next values.
    pub body: Graph,
}

fn key(g: &Graph) -> impl PartialEq + Hash + '_ {
    (&g.nodes, &g.types, &g.params, &g.outputs)
}

impl PartialEq for Loop {
    fn eq(&self, other: &Self) -> bool {
        key(&self.cond) == key(&other.cond) && key(&self.body) == key(&other.body)
    }
}

impl Eq for Loop {}

impl Hash for Loop {
    fn hash<H: Hasher>(&self, h: &mut H) {
        key(&self.cond).hash(h);
        key(&self.body).hash(h);
    }
}

/// StableHLO functions from outside the graph (see [`Op::Call`]); names are
/// unique per content, so two calls of one kernel share its definition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExternalFunctions {
    pub symbol: String,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

/// Rank-0 parameters of one dtype that reach the executable as one argument,
/// in this order (see `pack.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ParamPack {
    pub dtype: DType,
    pub params: Vec<usize>,
}

/// A function: parameters, nodes in topological order, outputs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Type of every value, indexed by `ValueId`.
    pub types: Vec<ValueType>,
    /// For every value, the node that makes it and the result index.
    pub producers: Vec<(u32, u32)>,
    pub params: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// `(param index, output index)`: the parameter's buffer is donated to that output.
    pub aliases: Vec<(usize, usize)>,
    /// Rank-0 parameters that reach the executable packed, one argument per
    /// dtype (`pack.rs`); empty: every parameter is its own argument.
    pub packs: Vec<ParamPack>,
    /// Pure nodes by content, so [`Graph::push`] can hand back an equal one (`cse.rs`).
    pub(crate) cse: CseIndex,
}

/// Hash of (op, inputs, result types) → index of a node with that content.
/// Entries are only hints: a hit is checked against the node, so truncating
/// `nodes` (a trace's rollback) leaves no wrong answers behind.
#[derive(Clone, Default)]
pub(crate) struct CseIndex(pub(crate) rustc_hash::FxHashMap<u64, u32>);

impl fmt::Debug for CseIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CseIndex({} entries)", self.0.len())
    }
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn ty(&self, v: ValueId) -> &ValueType {
        &self.types[v.0 as usize]
    }

    pub fn shape(&self, v: ValueId) -> &[i64] {
        &self.types[v.0 as usize].shape
    }

    pub fn dtype(&self, v: ValueId) -> DType {
        self.types[v.0 as usize].dtype
    }

    pub fn rank(&self, v: ValueId) -> usize {
        self.types[v.0 as usize].shape.len()
    }

    /// Appends a node as it is, merging nothing (see [`Graph::push`]).
    pub(crate) fn append(
        &mut self,
        op: Op,
        inputs: Vec<ValueId>,
        out_types: Vec<ValueType>,
    ) -> Vec<ValueId> {
        let node_index = self.nodes.len() as u32;
        let mut outputs = Vec::with_capacity(out_types.len());
        for (i, t) in out_types.into_iter().enumerate() {
            let id = ValueId(self.types.len() as u32);
            self.types.push(t);
            self.producers.push((node_index, i as u32));
            outputs.push(id);
        }
        self.nodes.push(Node {
            op,
            inputs,
            outputs: outputs.clone(),
        });
        outputs
    }

    pub fn push1(&mut self, op: Op, inputs: Vec<ValueId>, ty: ValueType) -> ValueId {
        self.push(op, inputs, vec![ty])[0]
    }

    pub fn parameter(&mut self, ty: ValueType) -> ValueId {
        let index = self.params.len() as u32;
        let v = self.push1(Op::Parameter(index), vec![], ty);
        self.params.push(v);
        v
    }

    pub fn node_of(&self, v: ValueId) -> &Node {
        &self.nodes[self.producers[v.0 as usize].0 as usize]
    }

    /// The constant a value is, if it is a splat constant.
    pub fn constant_value(&self, v: ValueId) -> Option<ConstVal> {
        match self.node_of(v).op {
            Op::Constant(c) => Some(c),
            _ => None,
        }
    }
}
