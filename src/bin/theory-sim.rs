use anyhow::Result;
use granularity::hierarchy::Relabeling;
use granularity::theory::config::{TheoryConfig, DEFAULT_TOML};
use granularity::theory::readout::Readout;
use granularity::theory::study::{run_grid, Condition};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg: TheoryConfig = granularity::config::load_str(DEFAULT_TOML, "default", &args)?;
    let conds = vec![
        Condition::new("coarse", Relabeling::Level { level: 0 }),
        Condition::new("fine", Relabeling::Level { level: 1 }),
    ];
    let t = std::time::Instant::now();
    let res = run_grid(&cfg, &conds, &Readout::ALL, &|| {})?;
    for r in &res {
        println!(
            "{:8} seed {} com {:.3} fine {:.3} init {:.3} loss {:.4} | {}",
            r.condition,
            r.seed,
            r.responses.common_max,
            r.responses.fine_max,
            r.init_level,
            r.curve.last().unwrap().loss,
            r.errors
                .iter()
                .map(|(k, e)| format!("{}: {:.3}/{:.3}", k.name(), e.easy, e.hard))
                .collect::<Vec<_>>()
                .join("  ")
        );
    }
    for r in &res { if r.seed == 0 { for p in r.curve.iter().step_by(3) { println!("{} {} loss {:.4} com {:.3} fine {:.3}", r.condition, p.step, p.loss, p.responses.common_max, p.responses.fine_max); } } }
    eprintln!("{:.1}s", t.elapsed().as_secs_f64());
    Ok(())
}
#[allow(dead_code)]
fn _x() {}
