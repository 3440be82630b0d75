//! The StableHLO module of one XLA collective over `N` replicas: a flat
//! operand per replica in, a flat result per replica out. The text holds the
//! collective, the reduction, the shape, the dtype and the replica group, so
//! it is also the executable cache's key (`collective.rs`).

use crate::error::{Error, Result};
use tpu_graph::{Category, DType};

/// How an all-reduce or reduce-scatter combines the replicas' values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    /// The sum divided by the replica count (truncated for integers, as
    /// the host-staged engine divides).
    Avg,
    Product,
    Min,
    Max,
    BAnd,
    BOr,
    BXor,
}

impl Reduce {
    pub fn parse(name: &str) -> Option<Reduce> {
        Some(match name {
            "sum" => Reduce::Sum,
            "avg" => Reduce::Avg,
            "product" => Reduce::Product,
            "min" => Reduce::Min,
            "max" => Reduce::Max,
            "band" => Reduce::BAnd,
            "bor" => Reduce::BOr,
            "bxor" => Reduce::BXor,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Reduce::Sum => "sum",
            Reduce::Avg => "avg",
            Reduce::Product => "product",
            Reduce::Min => "min",
            Reduce::Max => "max",
            Reduce::BAnd => "band",
            Reduce::BOr => "bor",
            Reduce::BXor => "bxor",
        }
    }

    fn is_bitwise(self) -> bool {
        matches!(self, Reduce::BAnd | Reduce::BOr | Reduce::BXor)
    }

    /// The identity of a bitwise reduction on `dtype` (all ones for `band`).
    fn identity(self, dtype: DType) -> String {
        match (self, dtype) {
            (Reduce::BAnd, DType::Bool) => "true".into(),
            (_, DType::Bool) => "false".into(),
            (Reduce::BAnd, DType::U8) => "255".into(),
            (Reduce::BAnd, _) => "-1".into(),
            _ => "0".into(),
        }
    }

    /// The binary StableHLO op of the reduction region for `dtype`, or why not.
    fn region_op(self, dtype: DType) -> std::result::Result<&'static str, String> {
        let cat = dtype.category();
        let refuse = |what: &str| Err(format!("reduce op {} needs {what}", self.name()));
        Ok(match (self, cat) {
            // On bool, sum and max are "any", product and min "all" (as CPU torch reduces bool).
            (Reduce::Sum | Reduce::Max | Reduce::BOr, Category::Bool) => "or",
            (Reduce::Product | Reduce::Min | Reduce::BAnd, Category::Bool) => "and",
            (Reduce::BXor, Category::Bool) => "xor",
            (Reduce::Avg, Category::Bool) => return refuse("a numeric dtype"),
            (Reduce::Sum | Reduce::Avg, _) => "add",
            (Reduce::Product, _) => "multiply",
            (Reduce::Min | Reduce::Max, Category::Complex) => {
                return refuse("a real dtype (complex numbers are not ordered)")
            }
            (Reduce::Min, _) => "minimum",
            (Reduce::Max, _) => "maximum",
            (Reduce::BAnd | Reduce::BOr | Reduce::BXor, Category::Int) => match self {
                Reduce::BAnd => "and",
                Reduce::BOr => "or",
                _ => "xor",
            },
            (Reduce::BAnd | Reduce::BOr | Reduce::BXor, _) => {
                return refuse("an integer or bool dtype")
            }
        })
    }
}

/// One collective over the replicas of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collective {
    AllReduce(Reduce),
    /// Replica `i`'s operand becomes the `i`-th block of every result.
    AllGather,
    /// Reduced, then block `i` goes to replica `i`.
    ReduceScatter(Reduce),
    /// Block `j` of replica `i` becomes block `i` of replica `j`.
    AllToAll,
    /// `(source, target)` replica pairs; a replica no pair targets gets zeros.
    Permute(Vec<(usize, usize)>),
}

impl Collective {
    /// Its name in errors and metrics (as `torch.distributed` names it).
    pub fn name(&self) -> &'static str {
        match self {
            Collective::AllReduce(_) => "all_reduce",
            Collective::AllGather => "all_gather",
            Collective::ReduceScatter(_) => "reduce_scatter",
            Collective::AllToAll => "all_to_all",
            Collective::Permute(_) => "collective_permute",
        }
    }

    /// Elements of each replica's result for `n` elements per operand.
    pub fn result_len(&self, n: i64, replicas: usize) -> Result<i64> {
        let r = replicas as i64;
        match self {
            Collective::AllGather => Ok(n * r),
            Collective::ReduceScatter(_) | Collective::AllToAll if n % r != 0 => Err(self.error(
                format!("{n} elements do not split into {replicas} equal blocks"),
            )),
            Collective::ReduceScatter(_) => Ok(n / r),
            _ => Ok(n),
        }
    }

    fn error(&self, why: impl std::fmt::Display) -> Error {
        Error::Invalid(format!("{} (xla collectives): {why}", self.name()))
    }

    /// The module for `replicas` replicas of `n` elements of `dtype` each.
    pub fn module(&self, dtype: DType, n: i64, replicas: usize) -> Result<String> {
        if matches!(dtype, DType::U32 | DType::U64) {
            return Err(self.error(format!("dtype {dtype} is not supported")));
        }
        let et = dtype.mlir();
        let out_len = self.result_len(n, replicas)?;
        let (tin, tout) = (
            format!("tensor<{n}x{et}>"),
            format!("tensor<{out_len}x{et}>"),
        );
        let group: Vec<String> = (0..replicas).map(|i| i.to_string()).collect();
        let groups = format!(
            "replica_groups = dense<[[{}]]> : tensor<1x{replicas}xi64>",
            group.join(", ")
        );
        let region = |reduce: Reduce| -> Result<String> {
            let op = reduce
                .region_op(dtype)
                .map_err(|e| self.error(format!("{e}, got {dtype}")))?;
            Ok(format!(
                "({{\n    ^bb0(%a: tensor<{et}>, %b: tensor<{et}>):\n      %s = stablehlo.{op} %a, %b : tensor<{et}>\n      stablehlo.return %s : tensor<{et}>\n    }})"
            ))
        };
        let mut body = match self {
            // The CPU plugin compiles no bitwise all-reduce region: bitwise
            // reductions gather every replica's operand (all-gather, or
            // all-to-all for the scattered blocks) and reduce locally.
            Collective::AllReduce(r) | Collective::ReduceScatter(r) if r.is_bitwise() => {
                let rows = if matches!(self, Collective::AllReduce(_)) { n * replicas as i64 } else { n };
                let gather = if matches!(self, Collective::AllReduce(_)) {
                    format!("\"stablehlo.all_gather\"(%x) {{all_gather_dim = 0 : i64, {groups}}}")
                } else {
                    format!("\"stablehlo.all_to_all\"(%x) {{split_dimension = 0 : i64, concat_dimension = 0 : i64, split_count = {replicas} : i64, {groups}}}")
                };
                let tg = format!("tensor<{rows}x{et}>");
                let tm = format!("tensor<{replicas}x{out_len}x{et}>");
                format!(
                    "%g = {gather} : ({tin}) -> {tg}\n    %m = stablehlo.reshape %g : ({tg}) -> {tm}\n    %i = stablehlo.constant dense<{init}> : tensor<{et}>\n    %0 = \"stablehlo.reduce\"(%m, %i) {} {{dimensions = array<i64: 0>}} : ({tm}, tensor<{et}>) -> {tout}",
                    region(*r)?,
                    init = r.identity(dtype),
                )
            }
            Collective::AllReduce(r) => format!(
                "%0 = \"stablehlo.all_reduce\"(%x) {} {{{groups}}} : ({tin}) -> {tout}",
                region(*r)?
            ),
            Collective::ReduceScatter(r) => format!(
                "%0 = \"stablehlo.reduce_scatter\"(%x) {} {{scatter_dimension = 0 : i64, {groups}}} : ({tin}) -> {tout}",
                region(*r)?
            ),
            Collective::AllGather => format!(
                "%0 = \"stablehlo.all_gather\"(%x) {{all_gather_dim = 0 : i64, {groups}}} : ({tin}) -> {tout}"
            ),
            Collective::AllToAll => format!(
                "%0 = \"stablehlo.all_to_all\"(%x) {{split_dimension = 0 : i64, concat_dimension = 0 : i64, split_count = {replicas} : i64, {groups}}} : ({tin}) -> {tout}"
            ),
            Collective::Permute(pairs) => {
                self.check_pairs(pairs, replicas)?;
                let flat: Vec<String> = pairs.iter().map(|(s, t)| format!("[{s}, {t}]")).collect();
                format!(
                    "%0 = \"stablehlo.collective_permute\"(%x) {{source_target_pairs = dense<[{}]> : tensor<{}x2xi64>}} : ({tin}) -> {tout}",
                    flat.join(", "),
                    pairs.len()
                )
            }
        };
        let mut result = "%0";
        if let Collective::AllReduce(Reduce::Avg) | Collective::ReduceScatter(Reduce::Avg) = self {
            let count = match dtype.category() {
                Category::Complex => format!("({replicas}.0, 0.0)"),
                Category::Float => format!("{replicas}.0"),
                _ => replicas.to_string(),
            };
            body.push_str(&format!(
                "\n    %n = stablehlo.constant dense<{count}> : {tout}\n    %1 = stablehlo.divide %0, %n : {tout}"
            ));
            result = "%1";
        }
        Ok(format!(
            "module @{name} attributes {{mhlo.num_replicas = {replicas} : i32, mhlo.num_partitions = 1 : i32}} {{\n  func.func public @main(%x: {tin}) -> {tout} {{\n    {body}\n    return {result} : {tout}\n  }}\n}}\n",
            name = self.name()
        ))
    }

    fn check_pairs(&self, pairs: &[(usize, usize)], replicas: usize) -> Result<()> {
        if pairs.is_empty() {
            return Err(self.error("no (source, target) pairs"));
        }
        for (i, &(s, t)) in pairs.iter().enumerate() {
            if s >= replicas || t >= replicas {
                return Err(self.error(format!(
                    "pair ({s}, {t}) names a replica outside 0..{replicas}"
                )));
            }
            if pairs[..i].iter().any(|&(s2, t2)| s2 == s || t2 == t) {
                return Err(self.error(format!(
                    "pair ({s}, {t}): each replica may send once and receive once"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_reduce_text_names_group_region_and_shape() {
        let t = Collective::AllReduce(Reduce::Sum)
            .module(DType::F32, 3, 2)
            .unwrap();
        assert!(t.contains("\"stablehlo.all_reduce\"(%x)"), "{t}");
        assert!(t.contains("stablehlo.add %a, %b : tensor<f32>"), "{t}");
        assert!(t.contains("dense<[[0, 1]]> : tensor<1x2xi64>"), "{t}");
        assert!(t.contains("(tensor<3xf32>) -> tensor<3xf32>"), "{t}");
    }

    #[test]
    fn shapes_follow_the_collective() {
        let rs = Collective::ReduceScatter(Reduce::Max)
            .module(DType::I32, 8, 4)
            .unwrap();
        assert!(rs.contains("(tensor<8xi32>) -> tensor<2xi32>"), "{rs}");
        let ag = Collective::AllGather.module(DType::BF16, 2, 3).unwrap();
        assert!(ag.contains("(tensor<2xbf16>) -> tensor<6xbf16>"), "{ag}");
        let avg = Collective::AllReduce(Reduce::Avg)
            .module(DType::F32, 1, 2)
            .unwrap();
        assert!(avg.contains("stablehlo.divide %0, %n"), "{avg}");
        let xor = Collective::ReduceScatter(Reduce::BXor)
            .module(DType::I32, 4, 2)
            .unwrap();
        assert!(
            xor.contains("stablehlo.all_to_all") && xor.contains("tensor<2x2xi32>"),
            "{xor}"
        );
    }

    #[test]
    fn unsupported_ops_name_the_collective() {
        let e = Collective::AllReduce(Reduce::BXor)
            .module(DType::F32, 4, 2)
            .unwrap_err();
        assert!(
            e.to_string().contains("all_reduce") && e.to_string().contains("bxor"),
            "{e}"
        );
        let e = Collective::ReduceScatter(Reduce::Sum)
            .module(DType::F32, 3, 2)
            .unwrap_err();
        assert!(e.to_string().contains("reduce_scatter"), "{e}");
        let e = Collective::Permute(vec![(0, 1), (0, 0)])
            .module(DType::F32, 3, 2)
            .unwrap_err();
        assert!(e.to_string().contains("collective_permute"), "{e}");
    }
}
