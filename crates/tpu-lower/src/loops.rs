//! Counted loops as StableHLO `while`: the body is built with the ordinary
//! graph builder into a graph of its own, emitted as a private function,
//! and called from a `while` in a second private function that the op's
//! graph calls (`Op::Call`). Recurrences over a long axis (CTC's time steps)
//! so compile as one loop instead of one unrolled copy per step.

use crate::registry::LowerCtx;
use crate::{bail, Result};
use std::fmt::Write;
use std::hash::Hasher;
use std::sync::Arc;
use tpu_graph::{DType, ExternalFunctions, Graph, ValueId, ValueType};

/// The loop body: `(counter, carry) -> new carry` (same types), built in a
/// context of its own; it may use constants but no host parameters or checks.
pub(crate) type Body<'a> = dyn Fn(&mut LowerCtx, ValueId, &[ValueId]) -> Result<Vec<ValueId>> + 'a;

/// `for i in 0..n { carry = body(i, carry) }`; returns the final carry.
pub(crate) fn fori_loop(
    c: &mut LowerCtx,
    name: &str,
    n: i64,
    carry: &[ValueId],
    body: &Body,
) -> Result<Vec<ValueId>> {
    let types: Vec<ValueType> = carry.iter().map(|&v| c.g.ty(v).clone()).collect();
    let mut g = Graph::new();
    let mut bc = LowerCtx::new(&mut g, &[]);
    let i = bc.g.parameter(ValueType::new(DType::I64, &[]));
    let params: Vec<ValueId> = types.iter().map(|t| bc.g.parameter(t.clone())).collect();
    let next = body(&mut bc, i, &params)?;
    if !bc.host.is_empty() || !bc.checks.is_empty() {
        bail!("{name}: a loop body cannot take host parameters or value checks");
    }
    let got: Vec<ValueType> = next.iter().map(|&v| bc.g.ty(v).clone()).collect();
    if got != types {
        bail!("{name}: the loop body changes the carry's types: {types:?} to {got:?}");
    }
    let one = bc.g.scalar(1.0, DType::I64);
    let i1 = bc.g.binary(tpu_graph::BinaryKind::Add, i, one)?;
    g.outputs = std::iter::once(i1).chain(next).collect();
    let module = g.to_stablehlo();
    // The body module's `main`, renamed and made private.
    let (Some(start), Some(end)) = (module.find("  func.func public @main("), module.rfind('}'))
    else {
        bail!("{name}: unexpected body module text");
    };
    let mut h = rustc_hash::FxHasher::default();
    h.write(module.as_bytes());
    h.write_i64(n);
    let tag = format!("{name}_{:016x}", h.finish());
    let body_sym = format!("{tag}_body");
    let body_fn = module[start..end].replacen(
        "func.func public @main(",
        &format!("func.func private @{body_sym}("),
        1,
    );
    let all: Vec<String> = std::iter::once("tensor<i64>".to_string())
        .chain(types.iter().map(|t| t.to_string()))
        .collect();
    let sig = all.join(", ");
    let k = all.len();
    let args: Vec<String> = (0..types.len())
        .map(|j| format!("%arg{j}: {}", types[j]))
        .collect();
    let outs: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    let block: Vec<String> = all
        .iter()
        .enumerate()
        .map(|(j, t)| format!("%c{j}: {t}"))
        .collect();
    let cvals: Vec<String> = (0..k).map(|j| format!("%c{j}")).collect();
    let rvals: Vec<String> = (0..k).map(|j| format!("%r#{j}")).collect();
    let wvals: Vec<String> = (1..k).map(|j| format!("%w#{j}")).collect();
    let inits: Vec<String> = std::iter::once("%lo".to_string())
        .chain((0..types.len()).map(|j| format!("%arg{j}")))
        .collect();
    let mut t = String::new();
    let _ = writeln!(t, "{body_fn}");
    let _ = writeln!(
        t,
        "  func.func private @{tag}({}) -> ({}) {{",
        args.join(", "),
        outs.join(", ")
    );
    let _ = writeln!(
        t,
        "    %lo = \"stablehlo.constant\"() {{value = dense<0> : tensor<i64>}} : () -> tensor<i64>"
    );
    let _ = writeln!(
        t,
        "    %w:{k} = \"stablehlo.while\"({}) ({{",
        inits.join(", ")
    );
    let _ = writeln!(t, "    ^bb0({}):", block.join(", "));
    let _ = writeln!(t, "      %hi = \"stablehlo.constant\"() {{value = dense<{n}> : tensor<i64>}} : () -> tensor<i64>");
    let _ = writeln!(t, "      %p = \"stablehlo.compare\"(%c0, %hi) {{comparison_direction = #stablehlo<comparison_direction LT>}} : (tensor<i64>, tensor<i64>) -> tensor<i1>");
    let _ = writeln!(t, "      \"stablehlo.return\"(%p) : (tensor<i1>) -> ()");
    let _ = writeln!(t, "    }}, {{");
    let _ = writeln!(t, "    ^bb0({}):", block.join(", "));
    let _ = writeln!(
        t,
        "      %r:{k} = \"func.call\"({}) {{callee = @{body_sym}}} : ({sig}) -> ({sig})",
        cvals.join(", ")
    );
    let _ = writeln!(
        t,
        "      \"stablehlo.return\"({}) : ({sig}) -> ()",
        rvals.join(", ")
    );
    let _ = writeln!(t, "    }}) : ({sig}) -> ({sig})");
    let _ = writeln!(
        t,
        "    \"func.return\"({}) : ({}) -> ()",
        wvals.join(", "),
        outs.join(", ")
    );
    let _ = write!(t, "  }}");
    let f = Arc::new(ExternalFunctions {
        symbol: tag,
        text: t,
    });
    Ok(c.g.call(f, carry, types)?)
}
