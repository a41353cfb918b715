//! The flags of `raftkv bench`, and their check into a [`BenchConfig`] that the runner trusts.

use std::time::Duration;

/// Drive a RESP endpoint (raftkv, Redis) or etcd with a closed-loop load and print throughput and latency
/// percentiles per operation.
#[derive(clap::Args, Clone, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["resp", "etcd"])))]
pub struct BenchArgs {
    /// A RESP endpoint (a raftkv node or a Redis server): SET and GET.
    #[arg(long, value_name = "HOST:PORT")]
    pub resp: Option<String>,
    /// An etcd v3 endpoint (gRPC): Put and linearizable Range. Needs a build with `--features etcd`.
    #[arg(long, value_name = "HOST:PORT")]
    pub etcd: Option<String>,
    /// TCP connections (etcd: separate clients, each its own HTTP/2 connection).
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Requests in flight per connection (RESP: pipelined; etcd: concurrent streams). Clients in all =
    /// connections × in-flight.
    #[arg(long, default_value_t = 1)]
    pub inflight: usize,
    /// What to send: `set` (writes only), `get` (reads only) or `mixed` (see --get-percent).
    #[arg(long, value_enum, default_value_t = Workload::Set)]
    pub workload: Workload,
    /// In a `mixed` workload, the share of reads in percent (the rest are writes).
    #[arg(long, default_value_t = 50)]
    pub get_percent: u32,
    /// Keys are drawn uniformly from this many (`key:0000000000` …).
    #[arg(long, default_value_t = 10_000)]
    pub keyspace: u64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Measure for this many seconds (after the warm-up). Ignored when --requests is given.
    #[arg(long, default_value_t = 10.0)]
    pub duration_seconds: f64,
    /// Measure exactly this many requests instead of a duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Run the load this long before measuring (not counted).
    #[arg(long, default_value_t = 2.0)]
    pub warmup_seconds: f64,
    /// A request unanswered for this long fails its connection.
    #[arg(long, default_value_t = 10.0)]
    pub timeout_seconds: f64,
    /// Print the result as one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Seed of the key and operation choices (a run's requests are a function of it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Which operations a run sends.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Set,
    Get,
    Mixed,
}

/// Where the load goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Resp(String),
    Etcd(String),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Resp(_) => "resp",
            Target::Etcd(_) => "etcd",
        }
    }

    pub fn address(&self) -> &str {
        match self {
            Target::Resp(address) | Target::Etcd(address) => address,
        }
    }
}

/// When measuring stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Length {
    Duration(Duration),
    Requests(u64),
}

/// A validated run.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchConfig {
    pub target: Target,
    pub connections: usize,
    pub inflight: usize,
    /// Reads per 100 operations: 0 for `set`, 100 for `get`.
    pub get_percent: u32,
    pub keyspace: u64,
    pub value_size: usize,
    pub length: Length,
    pub warmup: Duration,
    pub timeout: Duration,
    pub json: bool,
    pub progress: bool,
    pub seed: u64,
}

/// Bounds that keep a typo from opening a million sockets or allocating gigabytes.
pub const MAX_CONNECTIONS: usize = 10_000;
pub const MAX_INFLIGHT: usize = 10_000;
pub const MAX_VALUE_SIZE: usize = 64 * 1024 * 1024;

fn seconds(name: &str, value: f64, allow_zero: bool) -> Result<Duration, String> {
    if !value.is_finite() || value < 0.0 || (!allow_zero && value == 0.0) || value > 1e6 {
        let bound = if allow_zero { "≥ 0" } else { "> 0" };
        return Err(format!("--{name} must be a number of seconds {bound}, got {value}"));
    }
    Ok(Duration::from_secs_f64(value))
}

impl BenchArgs {
    /// Checks every flag and its combination; the error is one line naming the flag.
    pub fn validate(&self) -> Result<BenchConfig, String> {
        let target = match (&self.resp, &self.etcd) {
            (Some(address), None) => Target::Resp(address.clone()),
            (None, Some(address)) => Target::Etcd(address.clone()),
            _ => return Err("give exactly one of --resp HOST:PORT and --etcd HOST:PORT".into()),
        };
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return Err(format!("--connections must be 1..={MAX_CONNECTIONS}, got {}", self.connections));
        }
        if !(1..=MAX_INFLIGHT).contains(&self.inflight) {
            return Err(format!("--inflight must be 1..={MAX_INFLIGHT}, got {}", self.inflight));
        }
        if self.keyspace == 0 {
            return Err("--keyspace must be at least 1".into());
        }
        if self.value_size > MAX_VALUE_SIZE {
            return Err(format!("--value-size must be at most {MAX_VALUE_SIZE} bytes"));
        }
        let get_percent = match self.workload {
            Workload::Set => 0,
            Workload::Get => 100,
            Workload::Mixed if self.get_percent <= 100 => self.get_percent,
            Workload::Mixed => {
                return Err(format!("--get-percent must be 0..=100, got {}", self.get_percent))
            }
        };
        let length = match self.requests {
            Some(0) => return Err("--requests must be at least 1".into()),
            Some(count) => Length::Requests(count),
            None => Length::Duration(seconds("duration-seconds", self.duration_seconds, false)?),
        };
        Ok(BenchConfig {
            target,
            connections: self.connections,
            inflight: self.inflight,
            get_percent,
            keyspace: self.keyspace,
            value_size: self.value_size,
            length,
            warmup: seconds("warmup-seconds", self.warmup_seconds, true)?,
            timeout: seconds("timeout-seconds", self.timeout_seconds, false)?,
            json: self.json,
            progress: !self.quiet,
            seed: self.seed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(line: &str) -> Result<BenchConfig, String> {
        let words = std::iter::once("bench").chain(line.split_whitespace());
        Cli::try_parse_from(words).map_err(|e| e.to_string())?.args.validate()
    }

    #[test]
    fn defaults_are_sixteen_writers_for_ten_seconds_after_two_of_warm_up() {
        let config = parse("--resp 127.0.0.1:7001").unwrap();
        assert_eq!(config.target, Target::Resp("127.0.0.1:7001".into()));
        assert_eq!((config.connections, config.inflight, config.get_percent), (16, 1, 0));
        assert_eq!((config.keyspace, config.value_size), (10_000, 100));
        assert_eq!(config.length, Length::Duration(Duration::from_secs(10)));
        assert_eq!(config.warmup, Duration::from_secs(2));
        assert!(config.progress && !config.json);
    }

    #[test]
    fn the_workload_sets_the_share_of_reads() {
        assert_eq!(parse("--resp a:1 --workload get").unwrap().get_percent, 100);
        assert_eq!(parse("--resp a:1 --workload mixed").unwrap().get_percent, 50);
        assert_eq!(parse("--resp a:1 --workload mixed --get-percent 90").unwrap().get_percent, 90);
        // The percentage only matters for a mixed workload.
        assert_eq!(parse("--resp a:1 --workload set --get-percent 90").unwrap().get_percent, 0);
        let error = parse("--resp a:1 --workload mixed --get-percent 101").unwrap_err();
        assert!(error.contains("--get-percent"), "{error}");
    }

    #[test]
    fn a_request_count_replaces_the_duration() {
        let config =
            parse("--etcd 127.0.0.1:2379 --requests 5000 --warmup-seconds 0 --json --quiet").unwrap();
        assert_eq!(config.target, Target::Etcd("127.0.0.1:2379".into()));
        assert_eq!(config.length, Length::Requests(5000));
        assert_eq!(config.warmup, Duration::ZERO);
        assert!(config.json && !config.progress);
        assert!(parse("--resp a:1 --requests 0").unwrap_err().contains("--requests"));
    }

    #[test]
    fn exactly_one_target_is_required() {
        assert!(parse("--connections 4").is_err());
        assert!(parse("--resp a:1 --etcd b:2").is_err());
    }

    #[test]
    fn out_of_range_numbers_name_their_flag() {
        for (line, flag) in [
            ("--resp a:1 --connections 0", "--connections"),
            ("--resp a:1 --inflight 0", "--inflight"),
            ("--resp a:1 --inflight 10001", "--inflight"),
            ("--resp a:1 --keyspace 0", "--keyspace"),
            ("--resp a:1 --duration-seconds 0", "--duration-seconds"),
            ("--resp a:1 --warmup-seconds=-1", "--warmup-seconds"),
            ("--resp a:1 --timeout-seconds NaN", "--timeout-seconds"),
        ] {
            let error = parse(line).unwrap_err();
            assert!(error.contains(flag), "{line}: {error}");
        }
        assert!(parse("--resp a:1 --workload delete").is_err());
    }
}
