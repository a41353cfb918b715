//! etcd's v3 API as a target: `Put` for writes and a default `Range` (linearizable: it goes through the
//! leader's ReadIndex) for reads. Each connection is one client (one HTTP/2 connection) carrying
//! `inflight` concurrent request loops.

use std::sync::Arc;

use crate::args::BenchConfig;
use crate::control::Control;
use crate::run::ConnectionOutcome;

#[cfg(feature = "etcd")]
pub async fn run_connection(
    address: String,
    number: u64,
    config: Arc<BenchConfig>,
    control: Arc<Control>,
) -> Result<ConnectionOutcome, String> {
    use std::time::Instant;

    use crate::control::Ticket;
    use crate::stats::Op;
    use crate::workload::{key_name, Chooser};

    let endpoint = if address.contains("://") { address.clone() } else { format!("http://{address}") };
    let client = etcd_client::Client::connect([endpoint], None)
        .await
        .map_err(|e| format!("connecting to etcd at {address}: {e}"))?;
    let mut streams = tokio::task::JoinSet::new();
    for slot in 0..config.inflight as u64 {
        let mut kv = client.kv_client();
        let (config, control) = (config.clone(), control.clone());
        let value = vec![b'x'; config.value_size];
        let stream_number = number * config.inflight as u64 + slot;
        let address = address.clone();
        streams.spawn(async move {
            let mut chooser = Chooser::new(config.seed, stream_number, config.get_percent, config.keyspace);
            let mut outcome = ConnectionOutcome::default();
            let mut key = Vec::with_capacity(16);
            while let Some(ticket) = control.ticket() {
                let (op, number) = chooser.next();
                key_name(number, &mut key);
                let sent_at = Instant::now();
                let request = async {
                    match op {
                        Op::Set => kv.put(key.clone(), value.clone(), None).await.map(drop),
                        Op::Get => kv.get(key.clone(), None).await.map(drop),
                    }
                };
                let answer = tokio::time::timeout(config.timeout, request)
                    .await
                    .map_err(|_| format!("{address}: no answer within {:?}", config.timeout))?;
                let now = Instant::now();
                control.answered(answer.is_err());
                if let Err(error) = &answer {
                    outcome.first_error.get_or_insert_with(|| error.to_string());
                }
                if ticket == Ticket::Measured {
                    outcome.answered(op, answer.is_err(), sent_at, now);
                }
            }
            Ok::<_, String>(outcome)
        });
    }
    let mut total = ConnectionOutcome::default();
    while let Some(joined) = streams.join_next().await {
        let outcome = joined.map_err(|e| format!("an etcd stream failed: {e}"))??;
        total.merge(outcome);
    }
    Ok(total)
}

#[cfg(not(feature = "etcd"))]
pub async fn run_connection(
    _address: String,
    _number: u64,
    _config: Arc<BenchConfig>,
    _control: Arc<Control>,
) -> Result<ConnectionOutcome, String> {
    Err(NOT_BUILT.into())
}

/// What a build without the feature says when asked for etcd.
pub const NOT_BUILT: &str = "this raftkv was built without the etcd target: build it with \
     `cargo build --release -p raftkv --features etcd` (needs Debian's protobuf-compiler and libprotobuf-dev)";
