//! The simplest runs: no faults at all must pass every check.

use sim::{FaultSettings, RunConfig, Trace, World};

#[test]
fn calm_three_node_cluster_passes_every_check() {
    let config =
        RunConfig { settings: Some(FaultSettings::calm()), nodes: 3, ticks: 300, ..RunConfig::new(1) };
    let path = std::env::temp_dir().join("raftkv-calm.jsonl");
    let trace = Trace::to_writer(Box::new(std::io::BufWriter::new(std::fs::File::create(&path).unwrap())));
    let (report, trace) = World::new(config, trace).run_keeping_trace();
    trace.finish().unwrap();
    assert!(report.operations > 10, "clients ran: {report:?}");
    assert_eq!(report.violation, None, "trace at {}", path.display());
}
