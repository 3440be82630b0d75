//! Host scalars packed into one program argument per dtype.
//!
//! Every Python number an op takes (`x * 1.5`, an optimizer's learning rate)
//! is a rank-0 parameter of the graph, so its value can change without a
//! recompile. As separate arguments they cost XLA dearly: a 2000-op chain with
//! 1000 scalars compiled in 20 s against 1.7 s for the same chain without
//! them, and every run uploads each one on its own. Packed, the scalars of one
//! dtype arrive as one `tensor<N x dtype>` argument, sliced back into the
//! graph's rank-0 parameters at the top of `main`. The graph's parameters keep
//! their numbers; only the executable's argument list changes: the unpacked
//! parameters in order, then one argument per pack.

use crate::ir::{Graph, ParamPack, ValueType};
use std::fmt::Write as _;

/// Where a graph parameter's value comes from in the executable's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgSlot {
    /// Its own argument, at this position.
    Own(usize),
    /// Element `index` of pack `pack` (whose argument follows the unpacked ones).
    Packed { pack: usize, index: usize },
}

impl Graph {
    /// Packs the rank-0 parameters among `candidates` by dtype; dtypes with a
    /// single candidate stay unpacked (a pack of one saves nothing). Replaces
    /// any earlier packing.
    pub fn pack_scalar_params(&mut self, candidates: &[usize]) {
        let mut packs: Vec<ParamPack> = Vec::new();
        for &p in candidates {
            let ty = self.ty(self.params[p]);
            if !ty.shape.is_empty() {
                continue;
            }
            match packs.iter_mut().find(|k| k.dtype == ty.dtype) {
                Some(k) => k.params.push(p),
                None => packs.push(ParamPack {
                    dtype: ty.dtype,
                    params: vec![p],
                }),
            }
        }
        packs.retain(|k| k.params.len() > 1);
        self.packs = packs;
    }

    /// For every parameter, where the executable receives it.
    pub fn arg_slots(&self) -> Vec<ArgSlot> {
        let mut slots = vec![ArgSlot::Own(0); self.params.len()];
        for (pack, k) in self.packs.iter().enumerate() {
            for (index, &p) in k.params.iter().enumerate() {
                slots[p] = ArgSlot::Packed { pack, index };
            }
        }
        let mut next = 0;
        for s in &mut slots {
            if let ArgSlot::Own(i) = s {
                *i = next;
                next += 1;
            }
        }
        slots
    }

    /// The parameters that are arguments of their own, in argument order.
    pub fn unpacked_params(&self) -> Vec<usize> {
        self.arg_slots()
            .iter()
            .enumerate()
            .filter_map(|(p, s)| matches!(s, ArgSlot::Own(_)).then_some(p))
            .collect()
    }

    /// `main`'s argument list and the ops that slice packed scalars back into
    /// the graph's parameters `%arg{i}`.
    pub(crate) fn main_signature(&self) -> (String, String) {
        let mut args = Vec::with_capacity(self.params.len());
        for p in self.unpacked_params() {
            let ty = self.ty(self.params[p]);
            match self.aliases.iter().find(|(pi, _)| *pi == p) {
                Some((_, o)) => {
                    args.push(format!("%arg{p}: {ty} {{tf.aliasing_output = {o} : i32}}"))
                }
                None => args.push(format!("%arg{p}: {ty}")),
            }
        }
        let mut prologue = String::new();
        for (j, k) in self.packs.iter().enumerate() {
            let packed = ValueType::new(k.dtype, &[k.params.len() as i64]);
            let one = ValueType::new(k.dtype, &[1]);
            let scalar = ValueType::new(k.dtype, &[]);
            args.push(format!("%pack{j}: {packed}"));
            for (i, &p) in k.params.iter().enumerate() {
                let _ = writeln!(
                    prologue,
                    "    %arg{p}_1 = \"stablehlo.slice\"(%pack{j}) {{start_indices = array<i64: {i}>, limit_indices = array<i64: {}>, strides = array<i64: 1>}} : ({packed}) -> {one}\n    %arg{p} = \"stablehlo.reshape\"(%arg{p}_1) : ({one}) -> {scalar}",
                    i + 1
                );
            }
        }
        (args.join(", "), prologue)
    }
}
