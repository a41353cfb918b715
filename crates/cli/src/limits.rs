//! The limit flags shared by `raftkv serve` and `raftkv local`: one per field of [`server::Limits`], each
//! optional. On `serve` a flag given overrides the TOML file's `[limits]` (or the default); `local` passes
//! the flags given on to every node. The README's "Limits" table lists defaults and errors.

/// Declares the flags, how they override a [`server::Limits`], and how they are passed on, from one list.
macro_rules! limit_flags {
    ($($(#[doc = $doc:literal])* $field:ident: $ty:ty,)*) => {
        /// Limits on what clients and peers can make a node hold (README: "Limits").
        #[derive(clap::Args, Debug, Default, Clone)]
        pub struct LimitArgs {
            $($(#[doc = $doc])* #[arg(long, help_heading = "Limits")] pub $field: Option<$ty>,)*
        }

        impl LimitArgs {
            /// `limits` with every flag given put over it.
            pub fn apply(&self, mut limits: server::Limits) -> server::Limits {
                $(if let Some(value) = self.$field { limits.$field = value; })*
                limits
            }

            /// The flags given, as `raftkv serve` arguments.
            pub fn to_args(&self) -> Vec<String> {
                let mut args = Vec::new();
                $(if let Some(value) = self.$field {
                    args.push(format!("--{}", stringify!($field).replace('_', "-")));
                    args.push(value.to_string());
                })*
                args
            }
        }
    };
}

limit_flags! {
    /// Client connections at once; more get "-ERR max number of clients reached" [default: 10000].
    max_client_connections: usize,
    /// Longest bulk string a client may send [default: 536870912, 512 MiB].
    max_bulk_bytes: usize,
    /// Largest request, and most bytes one MULTI may queue [default: 537919488, 513 MiB].
    max_request_bytes: usize,
    /// Most arguments in one command [default: 1048576].
    max_arguments_per_command: usize,
    /// Longest key [default: 65536].
    max_key_bytes: usize,
    /// Longest value, given or built by APPEND; the same on every node [default: 536870912].
    max_value_bytes: usize,
    /// Commands in flight per connection; at the limit the node stops reading it [default: 4096].
    max_pipelined_commands: usize,
    /// Unsent reply bytes past which a connection that does not read is closed; 0: never close, stop
    /// reading its requests instead [default: 268435456, 256 MiB].
    max_client_output_bytes: usize,
    /// Close a client connection idle this long; 0: never [default: 0].
    client_idle_timeout_secs: u64,
    /// Messages queued per peer; more are dropped [default: 65536].
    max_peer_queue_messages: usize,
    /// Frame bytes queued per peer; more are dropped [default: 134217728, 128 MiB].
    max_peer_queue_bytes: usize,
    /// Largest peer frame accepted; at least max-request-bytes + 1 MiB [default: 538968064].
    max_peer_frame_bytes: usize,
    /// Uncommitted bytes on the leader past which writes get -TRYAGAIN [default: 67108864, 64 MiB].
    max_uncommitted_bytes: usize,
    /// Admin HTTP connections at once [default: 64].
    max_admin_connections: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_defaults_are_the_real_ones() {
        let d = server::Limits::default();
        assert_eq!(d.max_client_connections, 10_000);
        assert_eq!(d.max_bulk_bytes, 536_870_912);
        assert_eq!(d.max_request_bytes, 537_919_488);
        assert_eq!(d.max_arguments_per_command, 1_048_576);
        assert_eq!(d.max_key_bytes, 65_536);
        assert_eq!(d.max_value_bytes, 536_870_912);
        assert_eq!(d.max_pipelined_commands, 4_096);
        assert_eq!(d.max_client_output_bytes, 268_435_456);
        assert_eq!(d.client_idle_timeout_secs, 0);
        assert_eq!(d.max_peer_queue_messages, 65_536);
        assert_eq!(d.max_peer_queue_bytes, 134_217_728);
        assert_eq!(d.max_peer_frame_bytes, 538_968_064);
        assert_eq!(d.max_uncommitted_bytes, 67_108_864);
        assert_eq!(d.max_admin_connections, 64);
    }

    #[test]
    fn flags_given_override_and_pass_on() {
        let args =
            LimitArgs { max_key_bytes: Some(10), client_idle_timeout_secs: Some(5), ..LimitArgs::default() };
        let limits = args.apply(server::Limits::default());
        assert_eq!(limits.max_key_bytes, 10);
        assert_eq!(limits.client_idle_timeout_secs, 5);
        assert_eq!(limits.max_bulk_bytes, server::Limits::default().max_bulk_bytes);
        assert_eq!(args.to_args(), ["--max-key-bytes", "10", "--client-idle-timeout-secs", "5"]);
    }
}
