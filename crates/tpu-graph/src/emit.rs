//! StableHLO text emission in MLIR's generic operation form, which is uniform
//! across ops and parsed by every PJRT plugin that accepts "mlir" programs.

use crate::canon::Canonical;
use crate::dtype::DType;
use crate::ir::*;
use std::fmt::Write;

/// The bit pattern (or decimal) of a splat constant in MLIR's `dense<...>` syntax.
pub fn literal(value: ConstVal, dtype: DType) -> String {
    let f = value.as_f64();
    match dtype {
        DType::Bool => (if f != 0.0 { "true" } else { "false" }).to_string(),
        DType::F64 => format!("0x{:016X}", f.to_bits()),
        DType::F32 => format!("0x{:08X}", (f as f32).to_bits()),
        DType::F16 => format!("0x{:04X}", half::f16::from_f64(f).to_bits()),
        DType::BF16 => format!("0x{:04X}", half::bf16::from_f64(f).to_bits()),
        DType::C64 | DType::C128 => {
            let part = dtype.real();
            let (re, im) = (ConstVal::float(f), ConstVal::float(value.imag()));
            format!("({}, {})", literal(re, part), literal(im, part))
        }
        _ => match value {
            ConstVal::Int(i) => wrap_int(i, dtype).to_string(),
            _ => wrap_int(f as i64, dtype).to_string(),
        },
    }
}

/// Wraps an integer into the range of `dtype`, as a C cast would.
fn wrap_int(i: i64, dtype: DType) -> i128 {
    match dtype {
        DType::U8 => i as u8 as i128,
        DType::I8 => i as i8 as i128,
        DType::I16 => i as i16 as i128,
        DType::I32 => i as i32 as i128,
        DType::U32 => i as u32 as i128,
        DType::U64 => i as u64 as i128,
        _ => i as i128,
    }
}

fn ints(v: &[i64]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn array(v: &[i64]) -> String {
    if v.is_empty() {
        "array<i64>".to_string()
    } else {
        format!("array<i64: {}>", ints(v))
    }
}

fn padding(p: &[(i64, i64)]) -> String {
    let rows: Vec<String> = p.iter().map(|(l, h)| format!("[{l}, {h}]")).collect();
    format!("dense<[{}]> : tensor<{}x2xi64>", rows.join(", "), p.len())
}

/// `name = [..]` for a dimension-numbers field; empty lists are left out.
fn field(out: &mut Vec<String>, name: &str, v: &[i64]) {
    if !v.is_empty() {
        out.push(format!("{name} = [{}]", ints(v)));
    }
}

fn unary_name(k: UnaryKind) -> &'static str {
    use UnaryKind::*;
    match k {
        Neg => "stablehlo.negate",
        Abs => "stablehlo.abs",
        Exp => "stablehlo.exponential",
        Expm1 => "stablehlo.exponential_minus_one",
        Log => "stablehlo.log",
        Log1p => "stablehlo.log_plus_one",
        Sqrt => "stablehlo.sqrt",
        Rsqrt => "stablehlo.rsqrt",
        Cbrt => "stablehlo.cbrt",
        Tanh => "stablehlo.tanh",
        Logistic => "stablehlo.logistic",
        Sin => "stablehlo.sine",
        Cos => "stablehlo.cosine",
        Tan => "chlo.tan",
        Floor => "stablehlo.floor",
        Ceil => "stablehlo.ceil",
        RoundEven => "stablehlo.round_nearest_even",
        Sign => "stablehlo.sign",
        Not => "stablehlo.not",
        IsFinite => "stablehlo.is_finite",
        Erf => "chlo.erf",
        Erfinv => "chlo.erf_inv",
        Asin => "chlo.asin",
        Acos => "chlo.acos",
        Atan => "chlo.atan",
        Sinh => "chlo.sinh",
        Cosh => "chlo.cosh",
        Asinh => "chlo.asinh",
        Acosh => "chlo.acosh",
        Atanh => "chlo.atanh",
        Lgamma => "chlo.lgamma",
        Digamma => "chlo.digamma",
        Real => "stablehlo.real",
        Imag => "stablehlo.imag",
    }
}

fn binary_name(k: BinaryKind) -> &'static str {
    use BinaryKind::*;
    match k {
        Add => "stablehlo.add",
        Sub => "stablehlo.subtract",
        Mul => "stablehlo.multiply",
        Div => "stablehlo.divide",
        Rem => "stablehlo.remainder",
        Pow => "stablehlo.power",
        Max => "stablehlo.maximum",
        Min => "stablehlo.minimum",
        And => "stablehlo.and",
        Or => "stablehlo.or",
        Xor => "stablehlo.xor",
        Atan2 => "stablehlo.atan2",
        Complex => "stablehlo.complex",
        ShiftLeft => "stablehlo.shift_left",
        ShiftRightArithmetic => "stablehlo.shift_right_arithmetic",
        ShiftRightLogical => "stablehlo.shift_right_logical",
    }
}

fn compare_type(d: DType) -> &'static str {
    if d.is_inexact() {
        "FLOAT"
    } else if d.is_unsigned() {
        "UNSIGNED"
    } else {
        "SIGNED"
    }
}

fn compare_attrs(dir: CmpDir, d: DType) -> String {
    let dir = match dir {
        CmpDir::Eq => "EQ",
        CmpDir::Ne => "NE",
        CmpDir::Lt => "LT",
        CmpDir::Le => "LE",
        CmpDir::Gt => "GT",
        CmpDir::Ge => "GE",
    };
    format!(
        "{{comparison_direction = #stablehlo<comparison_direction {dir}>, compare_type = #stablehlo<comparison_type {}>}}",
        compare_type(d)
    )
}

/// The identity element of a reduction, as a `dense` literal.
pub fn reduce_init(kind: ReduceKind, d: DType) -> String {
    let v = match (kind, d.category()) {
        (ReduceKind::Sum, _) | (ReduceKind::Or, _) => ConstVal::Int(0),
        (ReduceKind::Prod, _) | (ReduceKind::And, _) => ConstVal::Int(1),
        (ReduceKind::Max, crate::Category::Float) => ConstVal::float(f64::NEG_INFINITY),
        (ReduceKind::Min, crate::Category::Float) => ConstVal::float(f64::INFINITY),
        (ReduceKind::Max, crate::Category::Bool) => ConstVal::Int(0),
        (ReduceKind::Min, crate::Category::Bool) => ConstVal::Int(1),
        (ReduceKind::Max, _) => ConstVal::Int(int_min(d)),
        (ReduceKind::Min, _) => ConstVal::Int(int_max(d)),
    };
    literal(v, d)
}

fn int_min(d: DType) -> i64 {
    match d {
        DType::I8 => i8::MIN as i64,
        DType::I16 => i16::MIN as i64,
        DType::I32 => i32::MIN as i64,
        DType::I64 => i64::MIN,
        _ => 0,
    }
}

fn int_max(d: DType) -> i64 {
    match d {
        DType::I8 => i8::MAX as i64,
        DType::I16 => i16::MAX as i64,
        DType::I32 => i32::MAX as i64,
        DType::U8 => u8::MAX as i64,
        DType::U32 => u32::MAX as i64,
        DType::U64 => -1,
        _ => i64::MAX,
    }
}

fn combiner_name(kind: ReduceKind, d: DType) -> &'static str {
    match (kind, d) {
        (ReduceKind::Sum, DType::Bool) | (ReduceKind::Or, _) | (ReduceKind::Max, DType::Bool) => {
            "stablehlo.or"
        }
        (ReduceKind::And, _) | (ReduceKind::Min, DType::Bool) | (ReduceKind::Prod, DType::Bool) => {
            "stablehlo.and"
        }
        (ReduceKind::Sum, _) => "stablehlo.add",
        (ReduceKind::Prod, _) => "stablehlo.multiply",
        (ReduceKind::Max, _) => "stablehlo.maximum",
        (ReduceKind::Min, _) => "stablehlo.minimum",
    }
}

struct Emitter<'g> {
    g: &'g Graph,
    names: Vec<String>,
    out: String,
    /// Prepended to every name, so a region's names differ from the enclosing ones.
    prefix: String,
}

/// SSA names of `g`'s live values, each starting with `%{prefix}`, numbered
/// in canonical order so that the text does not depend on the recording order.
fn value_names(g: &Graph, c: &Canonical, prefix: &str) -> Vec<String> {
    let mut names = vec![String::new(); g.types.len()];
    for (i, &n) in c.nodes.iter().enumerate() {
        let node = &g.nodes[n as usize];
        let number = |v: ValueId| c.value_number[v.0 as usize];
        match node.op {
            Op::Parameter(p) => names[node.outputs[0].0 as usize] = format!("%{prefix}arg{p}"),
            // Emitted as a two-result reduce; the index is its second result.
            Op::ArgReduce { .. } => names[node.outputs[0].0 as usize] = format!("%{prefix}n{i}r#1"),
            _ if node.outputs.len() == 1 => {
                names[node.outputs[0].0 as usize] = format!("%{prefix}v{}", number(node.outputs[0]))
            }
            _ => {
                for (k, v) in node.outputs.iter().enumerate() {
                    names[v.0 as usize] = format!("%{prefix}m{i}#{k}");
                }
            }
        }
    }
    names
}

/// The external functions `g`'s live nodes call, its loops' regions included.
fn called<'a>(g: &'a Graph, live: &[u32], out: &mut Vec<&'a ExternalFunctions>) {
    for &n in live {
        match &g.nodes[n as usize].op {
            Op::Call(f) => out.push(f),
            Op::While(l) => {
                called(&l.cond, &l.cond.canonical().nodes, out);
                called(&l.body, &l.body.canonical().nodes, out);
            }
            _ => {}
        }
    }
}

impl Emitter<'_> {
    pub(crate) fn n(&self, v: ValueId) -> &str {
        &self.names[v.0 as usize]
    }
    fn t(&self, v: ValueId) -> String {
        self.g.ty(v).to_string()
    }
    pub(crate) fn operands(&self, vs: &[ValueId]) -> (String, String) {
        let names: Vec<&str> = vs.iter().map(|&v| self.n(v)).collect();
        let types: Vec<String> = vs.iter().map(|&v| self.t(v)).collect();
        (names.join(", "), types.join(", "))
    }

    /// One generic-form op line: `%r = "name"(ins) ({region}) {attrs} : (in types) -> out types`.
    pub(crate) fn op(&mut self, node: &Node, name: &str, region: &str, attrs: &str) {
        let (ins, in_types) = self.operands(&node.inputs);
        let result = if node.outputs.len() == 1 {
            self.n(node.outputs[0]).to_string()
        } else {
            let base = self.n(node.outputs[0]);
            format!(
                "{}:{}",
                &base[..base.find('#').unwrap_or(base.len())],
                node.outputs.len()
            )
        };
        let outs: Vec<String> = node.outputs.iter().map(|&v| self.t(v)).collect();
        let out_types = if outs.len() == 1 {
            outs[0].clone()
        } else {
            format!("({})", outs.join(", "))
        };
        let region = if region.is_empty() {
            String::new()
        } else {
            format!(" ({{\n{region}    }})")
        };
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" {attrs}")
        };
        let _ = writeln!(
            self.out,
            "    {result} = \"{name}\"({ins}){region}{attrs} : ({in_types}) -> {out_types}"
        );
    }

    /// A reduction body combining two scalars of dtype `d` with `combiner`.
    fn binary_region(&self, tag: &str, combiner: &str, d: DType) -> String {
        let s = format!("tensor<{}>", d.mlir());
        format!(
            "      ^bb0(%{tag}a: {s}, %{tag}b: {s}):\n        %{tag}r = \"{combiner}\"(%{tag}a, %{tag}b) : ({s}, {s}) -> {s}\n        \"stablehlo.return\"(%{tag}r) : ({s}) -> ()\n"
        )
    }

    fn init_const(&mut self, tag: &str, kind: ReduceKind, d: DType) -> String {
        let name = format!("%{tag}init");
        let _ = writeln!(
            self.out,
            "    {name} = \"stablehlo.constant\"() {{value = dense<{}> : tensor<{}>}} : () -> tensor<{}>",
            reduce_init(kind, d),
            d.mlir(),
            d.mlir()
        );
        name
    }

    fn emit_node(&mut self, idx: usize, node: &Node) {
        let tag = format!("{}n{idx}", self.prefix);
        match &node.op {
            Op::Parameter(_) => {}
            Op::Constant(c) => {
                let t = self.g.ty(node.outputs[0]);
                let attrs = format!("{{value = dense<{}> : {t}}}", literal(*c, t.dtype));
                self.op(node, "stablehlo.constant", "", &attrs);
            }
            Op::Iota(d) => self.op(
                node,
                "stablehlo.iota",
                "",
                &format!("{{iota_dimension = {d} : i64}}"),
            ),
            Op::Unary(k) => self.op(node, unary_name(*k), "", ""),
            Op::Binary(k) => self.op(node, binary_name(*k), "", ""),
            Op::Compare(dir) => {
                let attrs = compare_attrs(*dir, self.g.dtype(node.inputs[0]));
                self.op(node, "stablehlo.compare", "", &attrs);
            }
            Op::Select => self.op(node, "stablehlo.select", "", ""),
            Op::Clamp => self.op(node, "stablehlo.clamp", "", ""),
            Op::Convert => self.op(node, "stablehlo.convert", "", ""),
            Op::BitcastConvert => self.op(node, "stablehlo.bitcast_convert", "", ""),
            Op::Reshape => self.op(node, "stablehlo.reshape", "", ""),
            Op::Transpose(p) => self.op(
                node,
                "stablehlo.transpose",
                "",
                &format!("{{permutation = {}}}", array(p)),
            ),
            Op::BroadcastInDim(d) => self.op(
                node,
                "stablehlo.broadcast_in_dim",
                "",
                &format!("{{broadcast_dimensions = {}}}", array(d)),
            ),
            Op::Slice {
                start,
                limit,
                stride,
            } => {
                let attrs = format!(
                    "{{start_indices = {}, limit_indices = {}, strides = {}}}",
                    array(start),
                    array(limit),
                    array(stride)
                );
                self.op(node, "stablehlo.slice", "", &attrs);
            }
            Op::DynamicUpdateSlice => self.op(node, "stablehlo.dynamic_update_slice", "", ""),
            Op::DynamicSlice(sizes) => self.op(
                node,
                "stablehlo.dynamic_slice",
                "",
                &format!("{{slice_sizes = {}}}", array(sizes)),
            ),
            Op::Concatenate(d) => self.op(
                node,
                "stablehlo.concatenate",
                "",
                &format!("{{dimension = {d} : i64}}"),
            ),
            Op::Pad {
                low,
                high,
                interior,
            } => {
                let attrs = format!(
                    "{{edge_padding_low = {}, edge_padding_high = {}, interior_padding = {}}}",
                    array(low),
                    array(high),
                    array(interior)
                );
                self.op(node, "stablehlo.pad", "", &attrs);
            }
            Op::Fft { kind, lengths } => {
                let k = match kind {
                    FftKind::Fft => "FFT",
                    FftKind::Ifft => "IFFT",
                    FftKind::Rfft => "RFFT",
                    FftKind::Irfft => "IRFFT",
                };
                let attrs = format!(
                    "{{fft_type = #stablehlo<fft_type {k}>, fft_length = {}}}",
                    array(lengths)
                );
                self.op(node, "stablehlo.fft", "", &attrs);
            }
            Op::Reverse(d) => self.op(
                node,
                "stablehlo.reverse",
                "",
                &format!("{{dimensions = {}}}", array(d)),
            ),
            Op::Reduce { kind, dims } => self.emit_reduce(&tag, node, *kind, dims),
            Op::ArgReduce { max, dim } => self.emit_arg_reduce(&tag, node, *max, *dim),
            Op::Dot(d) => {
                let mut f = Vec::new();
                field(&mut f, "lhs_batching_dimensions", &d.lhs_batch);
                field(&mut f, "rhs_batching_dimensions", &d.rhs_batch);
                field(&mut f, "lhs_contracting_dimensions", &d.lhs_contract);
                field(&mut f, "rhs_contracting_dimensions", &d.rhs_contract);
                let attrs = format!(
                    "{{dot_dimension_numbers = #stablehlo.dot<{}>}}",
                    f.join(", ")
                );
                self.op(node, "stablehlo.dot_general", "", &attrs);
            }
            Op::Convolution(c) => {
                let sp: Vec<String> = (0..c.strides.len()).map(|i| i.to_string()).collect();
                let sp = sp.join(", ");
                let attrs = format!(
                    "{{batch_group_count = {} : i64, dimension_numbers = #stablehlo.conv<[b, f, {sp}]x[o, i, {sp}]->[b, f, {sp}]>, feature_group_count = {} : i64, lhs_dilation = {}, padding = {}, rhs_dilation = {}, window_strides = {}}}",
                    c.batch_groups,
                    c.feature_groups,
                    array(&c.lhs_dilation),
                    padding(&c.padding),
                    array(&c.rhs_dilation),
                    array(&c.strides)
                );
                self.op(node, "stablehlo.convolution", "", &attrs);
            }
            Op::ReduceWindow { kind, window: w } => {
                let d = self.g.dtype(node.inputs[0]);
                let init = self.init_const(&tag, *kind, d);
                let region = self.binary_region(&tag, combiner_name(*kind, d), d);
                let attrs = format!(
                    "{{window_dimensions = {}, window_strides = {}, base_dilations = {}, window_dilations = {}, padding = {}}}",
                    array(&w.dims),
                    array(&w.strides),
                    array(&w.base_dilation),
                    array(&w.window_dilation),
                    padding(&w.padding)
                );
                self.op_with_extra_input(
                    node,
                    "stablehlo.reduce_window",
                    &init,
                    d,
                    &region,
                    &attrs,
                );
            }
            Op::Gather(a) => {
                let mut f = Vec::new();
                field(&mut f, "offset_dims", &a.offset_dims);
                field(&mut f, "collapsed_slice_dims", &a.collapsed_slice_dims);
                field(&mut f, "start_index_map", &a.start_index_map);
                f.push(format!("index_vector_dim = {}", a.index_vector_dim));
                let attrs = format!(
                    "{{dimension_numbers = #stablehlo.gather<{}>, indices_are_sorted = false, slice_sizes = {}}}",
                    f.join(", "),
                    array(&a.slice_sizes)
                );
                self.op(node, "stablehlo.gather", "", &attrs);
            }
            Op::Scatter(a) => {
                let d = self.g.dtype(node.inputs[0]);
                let region = match a.combine {
                    Some(kind) => self.binary_region(&tag, combiner_name(kind, d), d),
                    None => {
                        let s = format!("tensor<{}>", d.mlir());
                        format!("      ^bb0(%{tag}a: {s}, %{tag}b: {s}):\n        \"stablehlo.return\"(%{tag}b) : ({s}) -> ()\n")
                    }
                };
                let mut f = Vec::new();
                field(&mut f, "update_window_dims", &a.update_window_dims);
                field(&mut f, "inserted_window_dims", &a.inserted_window_dims);
                field(
                    &mut f,
                    "scatter_dims_to_operand_dims",
                    &a.scatter_dims_to_operand_dims,
                );
                f.push(format!("index_vector_dim = {}", a.index_vector_dim));
                let attrs = format!(
                    "{{indices_are_sorted = false, scatter_dimension_numbers = #stablehlo.scatter<{}>, unique_indices = false}}",
                    f.join(", ")
                );
                self.op(node, "stablehlo.scatter", &region, &attrs);
            }
            Op::RngBitGenerator => self.op(
                node,
                "stablehlo.rng_bit_generator",
                "",
                "{rng_algorithm = #stablehlo<rng_algorithm THREE_FRY>}",
            ),
            Op::Sort { dim, descending } => {
                let mut args = Vec::new();
                for (i, &v) in node.inputs.iter().enumerate() {
                    let s = format!("tensor<{}>", self.g.dtype(v).mlir());
                    args.push(format!("%{tag}x{i}: {s}, %{tag}y{i}: {s}"));
                }
                let d0 = self.g.dtype(node.inputs[0]);
                let s0 = format!("tensor<{}>", d0.mlir());
                let dir = if *descending { "GT" } else { "LT" };
                let ct = if d0.is_float() {
                    "TOTALORDER"
                } else {
                    compare_type(d0)
                };
                let region = format!(
                    "      ^bb0({}):\n        %{tag}c = \"stablehlo.compare\"(%{tag}x0, %{tag}y0) {{comparison_direction = #stablehlo<comparison_direction {dir}>, compare_type = #stablehlo<comparison_type {ct}>}} : ({s0}, {s0}) -> tensor<i1>\n        \"stablehlo.return\"(%{tag}c) : (tensor<i1>) -> ()\n",
                    args.join(", ")
                );
                self.op(
                    node,
                    "stablehlo.sort",
                    &region,
                    &format!("{{dimension = {dim} : i64, is_stable = true}}"),
                );
            }
            Op::Cholesky { lower } => self.op(
                node,
                "stablehlo.cholesky",
                "",
                &format!("{{lower = {lower}}}"),
            ),
            Op::TriangularSolve {
                left_side,
                lower,
                unit_diagonal,
                transpose_a,
            } => {
                let tr = if *transpose_a {
                    "TRANSPOSE"
                } else {
                    "NO_TRANSPOSE"
                };
                let attrs = format!(
                    "{{left_side = {left_side}, lower = {lower}, unit_diagonal = {unit_diagonal}, transpose_a = #stablehlo<transpose {tr}>}}"
                );
                self.op(node, "stablehlo.triangular_solve", "", &attrs);
            }
            Op::Call(f) => self.op(
                node,
                "func.call",
                "",
                &format!("{{callee = @{}}}", f.symbol),
            ),
            Op::While(l) => {
                let cond = self.region(&format!("{tag}c"), &l.cond);
                let body = self.region(&format!("{tag}b"), &l.body);
                let regions = format!("{cond}    }}, {{\n{body}");
                self.op(node, "stablehlo.while", &regions, "");
            }
        }
    }

    /// A region's block: its parameters as block arguments, its nodes, and a return of its outputs.
    fn region(&self, prefix: &str, g: &Graph) -> String {
        let c = g.canonical();
        let mut e = Emitter {
            g,
            names: value_names(g, &c, prefix),
            out: String::new(),
            prefix: prefix.to_string(),
        };
        let args: Vec<String> = g
            .params
            .iter()
            .map(|&p| format!("{}: {}", e.n(p), e.t(p)))
            .collect();
        let _ = writeln!(e.out, "      ^bb0({}):", args.join(", "));
        for (i, &n) in c.nodes.iter().enumerate() {
            e.emit_node(i, &g.nodes[n as usize]);
        }
        let (outs, types) = e.operands(&g.outputs);
        let _ = writeln!(e.out, "    \"stablehlo.return\"({outs}) : ({types}) -> ()");
        e.out
    }

    /// Ops whose last operand is an init scalar the graph does not hold (reduce, reduce_window).
    fn op_with_extra_input(
        &mut self,
        node: &Node,
        name: &str,
        init: &str,
        d: DType,
        region: &str,
        attrs: &str,
    ) {
        let (ins, in_types) = self.operands(&node.inputs);
        let out = self.n(node.outputs[0]).to_string();
        let _ = writeln!(
            self.out,
            "    {out} = \"{name}\"({ins}, {init}) ({{\n{region}    }}) {attrs} : ({in_types}, tensor<{}>) -> {}",
            d.mlir(),
            self.t(node.outputs[0])
        );
    }

    fn emit_reduce(&mut self, tag: &str, node: &Node, kind: ReduceKind, dims: &[i64]) {
        let d = self.g.dtype(node.inputs[0]);
        let init = self.init_const(tag, kind, d);
        let region = self.binary_region(tag, combiner_name(kind, d), d);
        self.op_with_extra_input(
            node,
            "stablehlo.reduce",
            &init,
            d,
            &region,
            &format!("{{dimensions = {}}}", array(dims)),
        );
    }

    /// A variadic reduce over (value, index) keeping the first extreme; NaN counts as extreme.
    fn emit_arg_reduce(&mut self, tag: &str, node: &Node, max: bool, dim: i64) {
        let x = node.inputs[0];
        let d = self.g.dtype(x);
        let xt = self.t(x);
        let shape = self.g.shape(x).to_vec();
        let it = ValueType::new(DType::I64, &shape).to_string();
        let kind = if max {
            ReduceKind::Max
        } else {
            ReduceKind::Min
        };
        let vinit = self.init_const(tag, kind, d);
        let o = &mut self.out;
        let _ = writeln!(
            o,
            "    %{tag}iota = \"stablehlo.iota\"() {{iota_dimension = {dim} : i64}} : () -> {it}"
        );
        let _ = writeln!(o, "    %{tag}iinit = \"stablehlo.constant\"() {{value = dense<0> : tensor<i64>}} : () -> tensor<i64>");
        let s = format!("tensor<{}>", d.mlir());
        let i = "tensor<i64>";
        let b = "tensor<i1>";
        let cmp = |name: &str, dir: &str, l: &str, r: &str, ty: &str, ct: &str| {
            format!("        %{tag}{name} = \"stablehlo.compare\"(%{tag}{l}, %{tag}{r}) {{comparison_direction = #stablehlo<comparison_direction {dir}>, compare_type = #stablehlo<comparison_type {ct}>}} : ({ty}, {ty}) -> {b}\n")
        };
        let ct = compare_type(d);
        let better = if max { "GT" } else { "LT" };
        let mut r =
            format!("      ^bb0(%{tag}av: {s}, %{tag}ai: {i}, %{tag}bv: {s}, %{tag}bi: {i}):\n");
        r += &cmp("gt", better, "av", "bv", &s, ct);
        r += &cmp("eq", "EQ", "av", "bv", &s, ct);
        r += &cmp("lti", "LT", "ai", "bi", i, "SIGNED");
        r += &format!(
            "        %{tag}tie = \"stablehlo.and\"(%{tag}eq, %{tag}lti) : ({b}, {b}) -> {b}\n"
        );
        r += &format!(
            "        %{tag}pick0 = \"stablehlo.or\"(%{tag}gt, %{tag}tie) : ({b}, {b}) -> {b}\n"
        );
        let pick = if d.is_float() {
            r += &cmp("anan", "NE", "av", "av", &s, ct);
            r += &cmp("bnan", "NE", "bv", "bv", &s, ct);
            r += &format!("        %{tag}bok = \"stablehlo.not\"(%{tag}bnan) : ({b}) -> {b}\n");
            r += &format!("        %{tag}nan1 = \"stablehlo.and\"(%{tag}anan, %{tag}bok) : ({b}, {b}) -> {b}\n");
            r += &format!("        %{tag}both = \"stablehlo.and\"(%{tag}anan, %{tag}bnan) : ({b}, {b}) -> {b}\n");
            r += &format!("        %{tag}nan2 = \"stablehlo.and\"(%{tag}both, %{tag}lti) : ({b}, {b}) -> {b}\n");
            r += &format!("        %{tag}nan = \"stablehlo.or\"(%{tag}nan1, %{tag}nan2) : ({b}, {b}) -> {b}\n");
            r += &format!("        %{tag}pick = \"stablehlo.or\"(%{tag}pick0, %{tag}nan) : ({b}, {b}) -> {b}\n");
            "pick"
        } else {
            "pick0"
        };
        r += &format!("        %{tag}v = \"stablehlo.select\"(%{tag}{pick}, %{tag}av, %{tag}bv) : ({b}, {s}, {s}) -> {s}\n");
        r += &format!("        %{tag}i = \"stablehlo.select\"(%{tag}{pick}, %{tag}ai, %{tag}bi) : ({b}, {i}, {i}) -> {i}\n");
        r += &format!("        \"stablehlo.return\"(%{tag}v, %{tag}i) : ({s}, {i}) -> ()\n");
        let out_t = self.t(node.outputs[0]);
        let vout = self.g.ty(node.outputs[0]).with_dtype(d).to_string();
        let xn = self.n(x).to_string();
        let _ = writeln!(
            self.out,
            "    %{tag}r:2 = \"stablehlo.reduce\"({xn}, %{tag}iota, {vinit}, %{tag}iinit) ({{\n{r}    }}) {{dimensions = array<i64: {dim}>}} : ({xt}, {it}, {s}, {i}) -> ({vout}, {out_t})"
        );
    }
}

impl Graph {
    /// The graph as a StableHLO module with one public function `main`: its
    /// live nodes in canonical order (`canon.rs`), dead ones left out.
    pub fn to_stablehlo(&self) -> String {
        let c = self.canonical();
        let mut e = Emitter {
            g: self,
            names: value_names(self, &c, ""),
            out: String::new(),
            prefix: String::new(),
        };
        let (params, prologue) = self.main_signature();
        let (outs, out_types) = e.operands(&self.outputs);
        let _ = writeln!(
            e.out,
            "module @torch_tpu attributes {{mhlo.num_partitions = 1 : i32, mhlo.num_replicas = 1 : i32}} {{\n  func.func public @main({}) -> ({out_types}) {{",
            params
        );
        e.out.push_str(&prologue);
        for (i, &n) in c.nodes.iter().enumerate() {
            e.emit_node(i, &self.nodes[n as usize]);
        }
        let _ = writeln!(
            e.out,
            "    \"func.return\"({outs}) : ({out_types}) -> ()\n  }}"
        );
        // Functions called by the graph, each once.
        let mut seen = std::collections::HashSet::new();
        let mut functions = Vec::new();
        called(self, &c.nodes, &mut functions);
        for f in functions {
            if seen.insert(f.symbol.as_str()) {
                let _ = writeln!(e.out, "{}", f.text);
            }
        }
        let _ = writeln!(e.out, "}}");
        e.out
    }
}
