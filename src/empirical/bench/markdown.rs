//! The benchmark report as Markdown: images/s per path with ratios, then the per-layer breakdown
//! of each architecture.

use super::torch::OMP_WAIT_POLICY;
use super::{ArchResult, BenchReport, LayerRow};

/// The report as Markdown: images/s per path and ratios, then per architecture the headline
/// and table of the per-layer breakdown.
pub fn markdown(r: &BenchReport) -> String {
    let f = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.1}"));
    let ratio = |a: f64, b: Option<f64>| b.map_or("n/a".into(), |b| format!("{:.2}", a / b));
    let kernels = r.results.first().map_or("fast", |a| a.kernels.as_str());
    let mut s = format!(
        "Training step (forward, cross-entropy, backward, momentum SGD), images/s, median step; \
         {}, device {}, {} threads, ours = {kernels} kernels (SIMD {})\n\n\
         | arch | batch | ours | stock | torch NCHW | torch channels-last | ours/stock | \
         ours/torch NCHW | ours/torch CL |\n|---|---|---|---|---|---|---|---|---|\n",
        r.machine, r.device, r.threads, r.simd
    );
    let mut notes = Vec::new();
    for a in &r.results {
        s += &format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            a.arch,
            a.batch,
            a.ours,
            f(a.stock),
            f(a.torch.nchw),
            f(a.torch.channels_last),
            ratio(a.ours, a.stock),
            ratio(a.ours, a.torch.nchw),
            ratio(a.ours, a.torch.channels_last),
        );
        if let Some(n) = &a.torch.note {
            notes.push(format!("{}: PyTorch: {n}", a.arch));
        } else if let Some(v) = &a.torch.version {
            let policy =
                std::env::var("OMP_WAIT_POLICY").unwrap_or_else(|_| OMP_WAIT_POLICY.into());
            notes.push(format!("{}: PyTorch {v}, OMP_WAIT_POLICY={policy}", a.arch));
        }
    }
    notes.dedup();
    if !notes.is_empty() {
        s += "\n";
        for n in notes {
            s += &format!("{n}\n");
        }
    }
    if let Some(d) = r.data_batch_ms {
        s += &format!(
            "\nData pipeline (gather, pad-4 crop, flip, normalise; 32x32): {d:.2} ms per batch"
        );
        for a in &r.results {
            s += &format!(
                ", {:.1}% of a {} step",
                100.0 * d / (1e3 * a.step_s),
                a.arch
            );
        }
        s += "\n";
    }
    for a in &r.results {
        if let Some(step) = a.profiled_step_s {
            s += &layer_table(a, step);
        }
    }
    s
}

/// The per-layer breakdown of one architecture: headline and table.
fn layer_table(a: &ArchResult, step_s: f64) -> String {
    let step_ms = 1e3 * step_s;
    let cell = |p: Option<(f64, Option<f64>)>| match p {
        None => "| | ".to_string(),
        Some((ms, None)) => format!("| {ms:.1} | "),
        Some((ms, Some(g))) => format!("| {ms:.1} | {g:.0} "),
    };
    let convs: Vec<&LayerRow> = a
        .layers
        .iter()
        .filter(|l| l.layer.starts_with("conv"))
        .collect();
    let conv_ms: f64 = convs.iter().map(|l| l.total_ms()).sum();
    let (mut flops, mut secs) = (0.0, 0.0);
    let mut slowest: Option<(f64, String)> = None;
    for l in &convs {
        for (name, p) in [
            ("forward", l.forward),
            ("input grad", l.input_grad),
            ("weight grad", l.weight_grad),
        ] {
            if let Some((ms, Some(g))) = p {
                flops += g * ms * 1e-3;
                secs += ms * 1e-3;
                if slowest.as_ref().is_none_or(|(sg, _)| g < *sg) && ms > 0.02 * step_ms {
                    slowest = Some((g, format!("{} {name}", l.layer)));
                }
            }
        }
    }
    let profiled: f64 = a.layers.iter().map(LayerRow::total_ms).sum();
    let mut s = format!(
        "\n{}: per-layer breakdown of the fast path ({:.1} ms per profiled step): convolutions \
         {:.1} ms ({:.0}% of the step) at {:.0} GFLOP/s overall",
        a.arch,
        step_ms,
        conv_ms,
        100.0 * conv_ms / step_ms,
        flops / secs.max(1e-12),
    );
    if let Some((g, what)) = slowest {
        s += &format!("; slowest pass over 2% of the step: {what} at {g:.0} GFLOP/s");
    }
    s += ". Profiled steps run each layer's BatchNorm backward, weight gradient and input \
          gradient as separate passes so that each can be timed; the timed steps fuse them \
          into one pass over the batch where the layer allows (the same bits)";
    s += "\n\n| layer | calls/step | forward ms | GFLOP/s | input grad ms | GFLOP/s | weight grad \
          ms | GFLOP/s | share |\n|---|---|---|---|---|---|---|---|---|\n";
    for l in &a.layers {
        s += &format!(
            "| {} | {:.0} {}{}{}| {:.1}% |\n",
            l.layer,
            l.calls,
            cell(l.forward),
            cell(l.input_grad),
            cell(l.weight_grad),
            100.0 * l.total_ms() / step_ms
        );
    }
    s += &format!(
        "| rest of the step (head, loss, SGD, candle) | | | | | | | | {:.1}% |\n",
        100.0 * (step_ms - profiled).max(0.0) / step_ms
    );
    s
}
