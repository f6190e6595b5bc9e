//! Tests of the benchmark: its arguments parse and its report renders.

use super::*;

#[test]
fn args_parse_and_table_renders() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        b: BenchArgs,
    }
    let c = Cli::parse_from(["x", "--arch", "resnet20,resnet8", "--no-torch"]);
    assert_eq!(c.b.arch, vec![Arch::ResNet20, Arch::ResNet8]);
    assert!(c.b.no_torch && c.b.batch == 128 && c.b.layer_steps == 3);
    assert!(c.b.device.is_cpu() && c.b.kernels == Kernels::Fast);
    assert!(Cli::try_parse_from(["x", "--arch", "resnet9"]).is_err());
    let r = BenchReport {
        machine: "cpu".into(),
        device: "cpu".into(),
        simd: "avx2".into(),
        threads: 2,
        data_batch_ms: Some(1.0),
        results: vec![ArchResult {
            arch: "resnet8".into(),
            batch: 4,
            kernels: "fast".into(),
            step_s: 0.5,
            ours: 8.0,
            stock: Some(2.0),
            torch: TorchResult {
                note: Some("PyTorch not installed".into()),
                ..Default::default()
            },
            profiled_step_s: Some(0.5),
            layers: vec![LayerRow {
                layer: "conv 3x3 4->4 s1 8x8".into(),
                calls: 2.0,
                forward: Some((100.0, Some(50.0))),
                input_grad: None,
                weight_grad: Some((150.0, Some(40.0))),
            }],
        }],
    };
    let t = markdown(&r);
    assert!(
        t.contains("| resnet8 | 4 | 8.0 | 2.0 | n/a | n/a | 4.00 | n/a | n/a |"),
        "{t}"
    );
    assert!(t.contains("PyTorch not installed"), "{t}");
    assert!(t.contains("0.2% of a resnet8 step"), "{t}");
    assert!(
        t.contains("convolutions 250.0 ms (50% of the step) at 44 GFLOP/s"),
        "{t}"
    );
    assert!(
        t.contains("| conv 3x3 4->4 s1 8x8 | 2 | 100.0 | 50 | | | 150.0 | 40 | 50.0% |"),
        "{t}"
    );
    assert!(
        t.contains("conv 3x3 4->4 s1 8x8 weight grad at 40 GFLOP/s"),
        "{t}"
    );
}

/// A tiny run of both paths (no PyTorch) completes, reports positive throughput and a
/// per-layer breakdown whose convolutions count their operations.
#[test]
fn tiny_run() {
    let args = BenchArgs {
        arch: vec![Arch::ResNet8],
        batch: 2,
        steps: 1,
        warmup: 0,
        no_torch: true,
        stock_steps: 1,
        layer_steps: 1,
        ..Default::default()
    };
    let r = run(&args, &mut |_| {}).unwrap();
    let a = &r.results[0];
    assert!(a.ours > 0.0 && a.stock.unwrap() > 0.0);
    assert!(r.data_batch_ms.unwrap() > 0.0);
    let conv = a
        .layers
        .iter()
        .find(|l| l.layer == "conv 3x3 16->16 s1 32x32")
        .expect("stage-1 convolution in the breakdown");
    assert_eq!(conv.calls, 2.0);
    assert!(conv.forward.unwrap().1.unwrap() > 0.0);
    assert!(conv.weight_grad.unwrap().1.unwrap() > 0.0);
    // Without a backward pass into the stem's input, the stem has no input gradient.
    let stem = a
        .layers
        .iter()
        .find(|l| l.layer == "conv 3x3 3->16 s1 32x32")
        .unwrap();
    assert!(stem.input_grad.is_none());
}
