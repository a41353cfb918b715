//! The MIT 6.5840 (2024/2025) Raft lab's tests (`raft_test.go`, parts 3A–3C), ported as scenarios on the
//! simulator: the real nodes, a simulated network and disk, every safety check after every step.
//!
//! Bounds are the lab's, in simulated time: a leader within 5 s of a failure (`check_one_leader`),
//! agreement within 10 s (`one`). The lab's sleeps are kept in simulated time too, as multiples of its
//! `RaftElectionTimeout` (1 s); our own election timeout is 10 ticks of 10 ms (100–200 ms).
//!
//! Where our system differs from the lab's bare Raft, the test says how it adapts: the log also holds
//! each new leader's no-op and the glue's session registrations (so a command's index is wherever it
//! lands), and a node's glue retries a client's command itself after a leader change (at most once,
//! through its session).
//!
//! A failure names its seed and simulated time. `RAFTKV_LAB_SEEDS=N` runs every scenario over seeds
//! `1..=N` (a longer search); `RAFTKV_SCENARIO_TRACE_DIR=DIR` writes each run's trace to
//! `DIR/<test>-seed<seed>.jsonl`.

use bytes::Bytes;
use kv::Command;
use raft::{Index, NodeId};
use rand::Rng;
use sim::scenario::{command_of, Scenario, Started};
use sim::world::{ELECTION_TIMEOUT_TICKS, TICK_US};
use sim::FaultSettings;

/// The seeds a randomized scenario runs: `1..=default`, or `1..=N` with `RAFTKV_LAB_SEEDS=N` for a longer
/// search.
fn seeds(default: u64) -> std::ops::RangeInclusive<u64> {
    let count = std::env::var("RAFTKV_LAB_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(default);
    1..=count
}

/// The lab's `RaftElectionTimeout`: its tester sleeps in multiples of it.
const RAFT_ELECTION_TIMEOUT_MS: u64 = 1_000;

/// The lab's commands are integers; ours are `SET lab <value>`.
fn cmd(value: impl std::fmt::Display) -> Command {
    Command::Set {
        key: Bytes::from_static(b"lab"),
        value: Bytes::from(value.to_string()),
        condition: Default::default(),
        get: false,
        expiry: Default::default(),
    }
}

fn calm(nodes: usize, seed: u64) -> Scenario {
    Scenario::new(nodes, seed, FaultSettings::calm())
}

/// The lab's unreliable network: 10% of messages lost, short random delays (labrpc: up to 27 ms).
fn unreliable() -> FaultSettings {
    FaultSettings { message_loss: 0.1, network_delay_mean_us: 10_000, ..FaultSettings::calm() }
}

fn random_node(s: &mut Scenario) -> NodeId {
    let n = s.node_count() as NodeId;
    s.rng().gen_range(1..=n)
}

fn random_value(s: &mut Scenario) -> u64 {
    s.rng().gen_range(0..1_000_000_000)
}

/// The lab's `start1` after a `crash1`: kill the process, restart it from its disk, reconnect it.
fn reboot(s: &mut Scenario, id: NodeId) {
    s.crash(id);
    s.restart(id);
    s.connect(id);
}

// ----- 3A: leader election ---------------------------------------------------------------------------

/// TestInitialElection3A: three servers elect one leader within 5 s; all agree on the term; with no
/// failures the term stays the same for 2 election timeouts (the lab only warns; we insist), and there is
/// still a leader.
#[test]
fn test_initial_election() {
    for seed in seeds(5) {
        let mut s = calm(3, seed);
        s.check_one_leader();
        s.run_ms(50);
        let term1 = s.check_terms();
        assert!(term1 >= 1, "seed {seed}: term is {term1}, but should be at least 1");
        s.run_ms(2 * RAFT_ELECTION_TIMEOUT_MS);
        let term2 = s.check_terms();
        assert_eq!(term1, term2, "seed {seed}: term changed even though there were no failures");
        s.check_one_leader();
    }
}

/// TestReElection3A: if the leader disconnects a new one is elected (within 5 s); the old leader
/// rejoining does not disturb that; with no quorum there is no leader for 2 election timeouts; when a
/// quorum returns, a leader is elected again.
#[test]
fn test_re_election() {
    for seed in seeds(5) {
        let mut s = calm(3, seed);
        let leader1 = s.check_one_leader();
        s.disconnect(leader1);
        s.check_one_leader();
        s.connect(leader1);
        let leader2 = s.check_one_leader();
        s.disconnect(leader2);
        s.disconnect(s.peer_after(leader2, 1));
        s.run_ms(2 * RAFT_ELECTION_TIMEOUT_MS);
        s.check_no_leader();
        s.connect(s.peer_after(leader2, 1));
        s.check_one_leader();
        s.connect(leader2);
        s.check_one_leader();
    }
}

/// TestManyElections3A: seven servers; ten times, three random ones are disconnected (a majority stays)
/// and a leader must be there within 5 s; then they reconnect.
#[test]
fn test_many_elections() {
    for seed in seeds(10) {
        let mut s = calm(7, seed);
        s.check_one_leader();
        for _ in 0..10 {
            let picked: Vec<NodeId> = (0..3).map(|_| random_node(&mut s)).collect();
            picked.iter().for_each(|&id| s.disconnect(id));
            s.check_one_leader();
            picked.iter().for_each(|&id| s.connect(id));
        }
        s.check_one_leader();
    }
}

// ----- 3B: log agreement -----------------------------------------------------------------------------

/// TestBasicAgree3B: nothing is committed before it is started, and three commands are committed, in
/// order, on all three servers within 10 s each. (The lab expects indexes 1, 2, 3; ours also hold the
/// leader's no-op and a session registration, so the indexes must only increase.)
#[test]
fn test_basic_agree() {
    for seed in seeds(5) {
        let mut s = calm(3, seed);
        let mut expected: Vec<(Index, Command)> = Vec::new();
        for i in 1..=3u64 {
            let command = cmd(i * 100);
            if let Some(index) = s.applied_index_of(&command, 0) {
                s.fail(format!("{command:?} committed at {index} before Start()"));
            }
            let index = s.one(command.clone(), 3, false);
            assert!(expected.last().is_none_or(|&(last, _)| index > last), "index {index} out of order");
            expected.push((index, command));
        }
        for id in s.node_ids().collect::<Vec<_>>() {
            assert_eq!(s.applied_commands(id), expected, "node {id} applied something else");
        }
    }
}

/// TestRPCBytes3B: each command is sent to each follower about once: after ten 5000-byte commands, the
/// bytes of all RPCs must stay within 3 × the command bytes + 50,000 (the lab's bound for 3 servers).
#[test]
fn test_rpc_bytes() {
    for seed in seeds(5) {
        let mut s = calm(3, seed);
        s.one(cmd(99), 3, false);
        let bytes0 = s.rpc_bytes();
        let mut sent = 0;
        for _ in 0..10 {
            let value: String = (0..5_000).map(|_| s.rng().gen_range(b'a'..=b'z') as char).collect();
            sent += value.len() as u64;
            s.one(cmd(value), 3, false);
        }
        let got = s.rpc_bytes() - bytes0;
        let expected = 3 * sent;
        println!("RPC bytes for {sent} command bytes: {got} (bound {})", expected + 50_000);
        assert!(got <= expected + 50_000, "too many RPC bytes; got {got}, expected {expected}");
    }
}

/// TestFollowerFailure3B: with one follower disconnected the other two agree (within 10 s); with both
/// followers gone, a command the leader accepted is not committed after 2 election timeouts.
#[test]
fn test_follower_failure() {
    for seed in seeds(5) {
        let mut s = calm(3, seed);
        s.one(cmd(101), 3, false);
        let leader1 = s.check_one_leader();
        s.disconnect(s.peer_after(leader1, 1));
        s.one(cmd(102), 2, false);
        s.run_ms(RAFT_ELECTION_TIMEOUT_MS);
        s.one(cmd(103), 2, false);
        let leader2 = s.check_one_leader();
        s.disconnect(s.peer_after(leader2, 1));
        s.disconnect(s.peer_after(leader2, 2));
        if s.start(leader2, cmd(104)).is_none() {
            s.fail("leader rejected Start()");
        }
        s.run_ms(2 * RAFT_ELECTION_TIMEOUT_MS);
        if let Some(index) = s.applied_index_of(&cmd(104), 0) {
            s.fail(format!("command 104 committed at {index} without a majority"));
        }
    }
}

/// TestLeaderFailure3B: the remaining two agree after the leader disconnects (within 10 s); with a
/// second leader gone, a command handed to every server (the followers' glue forwards it) is not
/// committed after 2 election timeouts.
#[test]
fn test_leader_failure() {
    for seed in seeds(5) {
        let mut s = calm(3, seed);
        s.one(cmd(101), 3, false);
        let leader1 = s.check_one_leader();
        s.disconnect(leader1);
        s.one(cmd(102), 2, false);
        s.run_ms(RAFT_ELECTION_TIMEOUT_MS);
        s.one(cmd(103), 2, false);
        let leader2 = s.check_one_leader();
        s.disconnect(leader2);
        for id in s.node_ids().collect::<Vec<_>>() {
            s.submit(id, cmd(104));
        }
        s.run_ms(2 * RAFT_ELECTION_TIMEOUT_MS);
        if let Some(index) = s.applied_index_of(&cmd(104), 0) {
            s.fail(format!("command 104 committed at {index} but no majority"));
        }
    }
}

/// TestFailAgree3B: a follower disconnected while four commands commit catches up after it reconnects:
/// the next commands reach all three servers within 10 s.
#[test]
fn test_fail_agree() {
    for seed in seeds(5) {
        let mut s = calm(3, seed);
        s.one(cmd(101), 3, false);
        let leader = s.check_one_leader();
        let follower = s.peer_after(leader, 1);
        s.disconnect(follower);
        s.one(cmd(102), 2, false);
        s.one(cmd(103), 2, false);
        s.run_ms(RAFT_ELECTION_TIMEOUT_MS);
        s.one(cmd(104), 2, false);
        s.one(cmd(105), 2, false);
        s.connect(follower);
        s.one(cmd(106), 3, true);
        s.run_ms(RAFT_ELECTION_TIMEOUT_MS);
        s.one(cmd(107), 3, true);
    }
}

/// TestFailNoAgree3B: with 3 of 5 servers disconnected the leader accepts a command but nothing commits
/// in 2 election timeouts; after they reconnect, the (possibly new) leader's next command lands right
/// after the old one (the lab: index 2 or 3; ours: at most a no-op, a session registration and the glue's
/// re-proposal of 20 in between), and all five agree within 10 s.
#[test]
fn test_fail_no_agree() {
    for seed in seeds(5) {
        let mut s = calm(5, seed);
        s.one(cmd(10), 5, false);
        let leader = s.check_one_leader();
        for k in 1..=3 {
            s.disconnect(s.peer_after(leader, k));
        }
        let Some(Started { index: Some(index), .. }) = s.start(leader, cmd(20)) else {
            s.fail("leader rejected Start(), or did not propose it at once");
        };
        s.run_ms(2 * RAFT_ELECTION_TIMEOUT_MS);
        let (n, _) = s.n_committed(index);
        if n > 0 {
            s.fail(format!("{n} committed but no majority"));
        }
        for k in 1..=3 {
            s.connect(s.peer_after(leader, k));
        }
        let leader2 = s.check_one_leader();
        let Some(started) = s.start(leader2, cmd(30)) else { s.fail("leader2 rejected Start()") };
        if let Some(index2) = started.index {
            assert!((index..=index + 3).contains(&index2), "unexpected index {index2} (20 was at {index})");
        }
        s.one(cmd(1000), 5, true);
    }
}

/// TestConcurrentStarts3B: five commands started at once on the leader all commit, in its term, on all
/// three servers (retrying up to five times if the term changes meanwhile, as the lab does).
#[test]
fn test_concurrent_starts() {
    for seed in seeds(5) {
        concurrent_starts(seed);
    }
}

fn concurrent_starts(seed: u64) {
    let mut s = calm(3, seed);
    for attempt in 0..5 {
        if attempt > 0 {
            s.run_ms(3_000);
        }
        let leader = s.check_one_leader();
        let Some(first) = s.start(leader, cmd(1)) else { continue };
        let floor = s.commit_floor();
        let commands: Vec<Command> = (0..5).map(|i| cmd(100 + i)).collect();
        if commands.iter().any(|c| s.start(leader, c.clone()).is_none_or(|st| st.term != first.term)) {
            continue;
        }
        let term_moved_on =
            |s: &Scenario| s.node_ids().any(|id| s.term_of(id).is_some_and(|t| t != first.term));
        let all_applied = |s: &Scenario| {
            commands.iter().all(|c| s.applied_index_of(c, floor).is_some_and(|i| s.n_committed(i).0 == 3))
        };
        s.run_until(10_000, |s| term_moved_on(s) || all_applied(s));
        if term_moved_on(&s) {
            continue;
        }
        if !all_applied(&s) {
            s.fail("concurrent starts were not all applied on 3 servers within 10 s");
        }
        for command in &commands {
            let index = s.applied_index_of(command, floor).expect("applied");
            let term = s.n_committed(index).1.expect("applied").term;
            assert_eq!(term, first.term, "{command:?} committed in term {term}, not the leader's");
        }
        return;
    }
    s.fail("term changed too often");
}

/// TestRejoin3B: a leader disconnected with three uncommitted entries rejoins after a new leader
/// committed others: its entries are overwritten (every node now holds later-term entries at their
/// indexes), and all three servers agree within 10 s.
#[test]
fn test_rejoin() {
    for seed in seeds(5) {
        let mut s = calm(3, seed);
        s.one(cmd(101), 3, true);
        let leader1 = s.check_one_leader();
        let term1 = s.term_of(leader1).expect("runs");
        s.disconnect(leader1);
        let stale: Vec<Index> = [102, 103, 104]
            .iter()
            .filter_map(|&x| s.start(leader1, cmd(x)).and_then(|st| st.index))
            .collect();
        assert_eq!(stale.len(), 3, "the old leader took the three commands into its log");
        s.one(cmd(103), 2, true);
        let leader2 = s.check_one_leader();
        s.disconnect(leader2);
        s.connect(leader1);
        s.one(cmd(104), 2, true);
        s.connect(leader2);
        s.one(cmd(105), 3, true);
        for index in stale {
            let (n, entry) = s.n_committed(index);
            let entry = entry.expect("applied");
            assert_eq!(n, 3);
            assert!(entry.term > term1, "index {index} still holds the old leader's entry {entry}");
        }
    }
}

/// TestBackup3B: a leader backs up quickly over incorrect follower logs: 50 uncommitted entries on one
/// side, 50 committed by the other, 50 more uncommitted on a third leader; every `one` within 10 s, and
/// finally all five agree within 10 s.
#[test]
fn test_backup() {
    for seed in seeds(5) {
        let mut s = calm(5, seed);
        let value = random_value(&mut s);
        s.one(cmd(value), 5, true);
        // Put the leader and one follower in a partition.
        let leader1 = s.check_one_leader();
        for k in 2..=4 {
            s.disconnect(s.peer_after(leader1, k));
        }
        // Lots of commands that won't commit.
        for _ in 0..50 {
            let value = random_value(&mut s);
            s.start(leader1, cmd(value));
        }
        s.run_ms(RAFT_ELECTION_TIMEOUT_MS / 2);
        s.disconnect(leader1);
        s.disconnect(s.peer_after(leader1, 1));
        // Allow the other partition to recover.
        for k in 2..=4 {
            s.connect(s.peer_after(leader1, k));
        }
        // Lots of successful commands to the new group.
        for _ in 0..50 {
            let value = random_value(&mut s);
            s.one(cmd(value), 3, true);
        }
        // Now another partitioned leader and one follower.
        let leader2 = s.check_one_leader();
        let mut other = s.peer_after(leader1, 2);
        if other == leader2 {
            other = s.peer_after(leader2, 1);
        }
        s.disconnect(other);
        // Lots more commands that won't commit.
        for _ in 0..50 {
            let value = random_value(&mut s);
            s.start(leader2, cmd(value));
        }
        s.run_ms(RAFT_ELECTION_TIMEOUT_MS / 2);
        // Bring the original leader back to life.
        for id in s.node_ids().collect::<Vec<_>>() {
            s.disconnect(id);
        }
        s.connect(leader1);
        s.connect(s.peer_after(leader1, 1));
        s.connect(other);
        // Lots of successful commands to the new group.
        for _ in 0..50 {
            let value = random_value(&mut s);
            s.one(cmd(value), 3, true);
        }
        // Now everyone.
        for id in s.node_ids().collect::<Vec<_>>() {
            s.connect(id);
        }
        let value = random_value(&mut s);
        s.one(cmd(value), 5, true);
    }
}

/// TestCount3B: RPC counts are bounded. Electing the first leader takes 1–30 RPCs; agreeing on 11
/// commands takes at most (11 + 3) × 3 RPCs; and idleness costs at most 3 × 20 RPCs per election timeout
/// (the lab's bound is per second with its 1 s `RaftElectionTimeout`; ours is 10 ticks, 100 ms, and we
/// heartbeat every tick, so the same bound is 600 per second). An RPC is a request: vote, pre-vote,
/// append or heartbeat; replies are not counted, as in labrpc.
#[test]
fn test_count() {
    const ITERS: u64 = 10;
    for seed in seeds(5) {
        let mut s = calm(3, seed);
        s.check_one_leader();
        let total1 = s.rpc_total();
        assert!((1..=30).contains(&total1), "too many or few RPCs ({total1}) to elect initial leader");
        // Not in the lab: the leader's glue opens its client session first, so proposals go straight in.
        s.one(cmd(0), 3, false);
        let mut total2 = None;
        'tries: for attempt in 0..5 {
            if attempt > 0 {
                s.run_ms(3_000);
            }
            let leader = s.check_one_leader();
            let total1 = s.rpc_total();
            let Some(Started { term, index: Some(starti), .. }) = s.start(leader, cmd(1)) else { continue };
            let mut commands = vec![cmd(1)];
            for i in 1..=ITERS {
                let command = cmd(random_value(&mut s));
                let Some(started) = s.start(leader, command.clone()) else { continue 'tries };
                if started.term != term {
                    continue 'tries;
                }
                assert_eq!(started.index, Some(starti + i), "Start() failed");
                commands.push(command);
            }
            for (i, command) in (starti..).zip(&commands) {
                let Some(entry) = s.wait_applied(i, 3, Some(term)) else { continue 'tries };
                assert_eq!(command_of(&entry).as_ref(), Some(command), "wrong value at index {i}");
            }
            let spent = s.rpc_total() - total1;
            let bound = (ITERS + 1 + 3) * 3;
            println!("{} entries took {spent} RPCs (bound {bound})", ITERS + 1);
            assert!(spent <= bound, "too many RPCs ({spent}) for {} entries (bound {bound})", ITERS + 1);
            total2 = Some(s.rpc_total());
            break;
        }
        let Some(total2) = total2 else { s.fail("term changed too often") };
        s.run_ms(RAFT_ELECTION_TIMEOUT_MS);
        let idle = s.rpc_total() - total2;
        let our_election_timeout_ms = ELECTION_TIMEOUT_TICKS * TICK_US / 1_000;
        let bound = 3 * 20 * RAFT_ELECTION_TIMEOUT_MS / our_election_timeout_ms;
        println!("initial election took {total1} RPCs; 1 s of idleness {idle} (bound {bound})");
        assert!(idle <= bound, "too many RPCs ({idle}) for 1 second of idleness (bound {bound})");
    }
}

// ----- 3C: persistence -------------------------------------------------------------------------------

/// TestPersist13C: state survives crashes: of every server at once, of the leader, of a leader while
/// the other two commit (it must then catch up to that index on restart), and of a follower. Each step
/// agrees within 10 s.
#[test]
fn test_persist1() {
    for seed in seeds(5) {
        let mut s = calm(3, seed);
        s.one(cmd(11), 3, true);
        let all: Vec<NodeId> = s.node_ids().collect();
        all.iter().for_each(|&id| s.crash(id));
        all.iter().for_each(|&id| s.restart(id));
        s.one(cmd(12), 3, true);
        let leader1 = s.check_one_leader();
        reboot(&mut s, leader1);
        s.one(cmd(13), 3, true);
        let leader2 = s.check_one_leader();
        s.crash(leader2);
        let index14 = s.one(cmd(14), 2, true);
        s.restart(leader2);
        s.wait_applied(index14, 3, None);
        let leader3 = s.check_one_leader();
        let i3 = s.peer_after(leader3, 1);
        s.crash(i3);
        s.one(cmd(15), 2, true);
        s.restart(i3);
        s.one(cmd(16), 3, true);
    }
}

/// TestPersist23C: five rounds on five servers: two followers disconnected while the rest commit, then
/// the leader and the other two go down, the first two restart from disk (they must not lose what they
/// promised), then the others; each agreement within 10 s.
#[test]
fn test_persist2() {
    for seed in seeds(5) {
        let mut s = calm(5, seed);
        let mut index = 1;
        for _ in 0..5 {
            s.one(cmd(10 + index), 5, true);
            index += 1;
            let leader1 = s.check_one_leader();
            s.disconnect(s.peer_after(leader1, 1));
            s.disconnect(s.peer_after(leader1, 2));
            s.one(cmd(10 + index), 3, true);
            index += 1;
            for k in [0, 3, 4] {
                s.disconnect(s.peer_after(leader1, k));
            }
            let id = s.peer_after(leader1, 1);
            reboot(&mut s, id);
            let id = s.peer_after(leader1, 2);
            reboot(&mut s, id);
            s.run_ms(RAFT_ELECTION_TIMEOUT_MS);
            let id = s.peer_after(leader1, 3);
            reboot(&mut s, id);
            s.one(cmd(10 + index), 3, true);
            index += 1;
            let id = s.peer_after(leader1, 4);
            reboot(&mut s, id);
            reboot(&mut s, leader1);
        }
        s.one(cmd(1000), 5, true);
    }
}

/// TestPersist33C: a partitioned leader and one follower crash; the follower that missed an entry and
/// the restarted leader agree within 10 s (the leader must have kept its log), then all three.
#[test]
fn test_persist3() {
    for seed in seeds(5) {
        let mut s = calm(3, seed);
        s.one(cmd(101), 3, false);
        let leader = s.check_one_leader();
        let lagging = s.peer_after(leader, 2);
        s.disconnect(lagging);
        s.one(cmd(102), 2, false);
        s.crash(leader);
        s.crash(s.peer_after(leader, 1));
        s.connect(lagging);
        s.restart(leader);
        s.one(cmd(103), 2, true);
        s.restart(s.peer_after(leader, 1));
        s.one(cmd(104), 3, true);
    }
}

/// The lab's Figure 8 sleeps: mostly a few milliseconds, sometimes up to half an election timeout.
fn figure8_pause_ms(s: &mut Scenario) -> u64 {
    if s.rng().gen_range(0..1_000) < 100 {
        s.rng().gen_range(0..RAFT_ELECTION_TIMEOUT_MS / 2)
    } else {
        s.rng().gen_range(0..13)
    }
}

/// TestFigure83C: 1000 rounds of: start a command on whoever leads, wait a little, crash the leader;
/// keep at least three servers up by restarting random ones. The checks (Figure 8's old-term commit is
/// Leader Completeness and State Machine Safety) run throughout; at the end all five agree within 10 s.
#[test]
fn test_figure8() {
    for seed in seeds(10) {
        let mut s = calm(5, seed);
        let value = random_value(&mut s);
        s.one(cmd(value), 1, true);
        let mut up = 5;
        let mut leaders_crashed = 0;
        for _ in 0..1_000 {
            let mut leader = None;
            for id in s.node_ids().collect::<Vec<_>>() {
                let value = random_value(&mut s);
                if s.start(id, cmd(value)).is_some() {
                    leader = Some(id);
                }
            }
            let pause = figure8_pause_ms(&mut s);
            s.run_ms(pause);
            if let Some(leader) = leader.filter(|&id| s.is_up(id)) {
                s.crash(leader);
                up -= 1;
                leaders_crashed += 1;
            }
            if up < 3 {
                let id = random_node(&mut s);
                if !s.is_up(id) {
                    s.restart(id);
                    up += 1;
                }
            }
        }
        for id in s.node_ids().collect::<Vec<_>>() {
            if !s.is_up(id) {
                s.restart(id);
            }
        }
        let value = random_value(&mut s);
        let index = s.one(cmd(value), 5, true);
        println!(
            "seed {seed}: {leaders_crashed} leaders crashed, {} ms simulated, agreed at {index}",
            s.now_ms()
        );
    }
}

/// TestUnreliableAgree3C: on a network that loses 10% of messages and delays the rest, 50 rounds of
/// five concurrent commands each reach at least one server (each within 10 s); then, reliable again, a
/// command reaches all five within 10 s.
#[test]
fn test_unreliable_agree() {
    for seed in seeds(5) {
        let mut s = Scenario::new(5, seed, unreliable());
        for iters in 1..50u64 {
            let mut commands: Vec<Command> = (0..4).map(|j| cmd(100 * iters + j)).collect();
            commands.push(cmd(iters));
            s.agree_all(&commands, 1, true);
        }
        s.make_network_reliable();
        s.one(cmd(100), 5, true);
    }
}

/// TestFigure8Unreliable3C: Figure 8 with disconnections instead of crashes, on an unreliable network
/// that also delivers some messages very late (labrpc's long reordering; ours: 10% of messages up to 5 s
/// late, from the start rather than from round 200); at the end all five agree within 10 s.
#[test]
fn test_figure8_unreliable() {
    let settings = FaultSettings { message_late: 0.1, ..unreliable() };
    for seed in seeds(10) {
        let mut s = Scenario::new(5, seed, settings.clone());
        let value = random_value(&mut s) % 10_000;
        s.one(cmd(value), 1, true);
        let mut up = 5;
        for _ in 0..1_000 {
            let mut leader = None;
            for id in s.node_ids().collect::<Vec<_>>() {
                let value = random_value(&mut s) % 10_000;
                if s.start(id, cmd(value)).is_some() && s.is_connected(id) {
                    leader = Some(id);
                }
            }
            let pause = figure8_pause_ms(&mut s);
            s.run_ms(pause);
            if let Some(leader) = leader {
                if s.rng().gen_range(0..1_000) < RAFT_ELECTION_TIMEOUT_MS / 2 {
                    s.disconnect(leader);
                    up -= 1;
                }
            }
            if up < 3 {
                let id = random_node(&mut s);
                if !s.is_connected(id) {
                    s.connect(id);
                    up += 1;
                }
            }
        }
        for id in s.node_ids().collect::<Vec<_>>() {
            s.connect(id);
        }
        let value = random_value(&mut s) % 10_000;
        let index = s.one(cmd(value), 5, true);
        println!("seed {seed}: {} ms simulated, agreed at {index}", s.now_ms());
    }
}

/// One of the churn tests' clients: it starts a random value on whoever leads, then polls (10, 20, 50,
/// 100, 200 ms) for it to be committed, and remembers the values it saw committed.
struct ChurnClient {
    me: u64,
    next_at_ms: u64,
    polling: Option<(Command, Index, usize)>,
    committed: Vec<Command>,
}

const CHURN_POLL_MS: [u64; 5] = [10, 20, 50, 100, 200];

impl ChurnClient {
    fn step(&mut self, s: &mut Scenario) {
        if s.now_ms() < self.next_at_ms {
            return;
        }
        match self.polling.take() {
            None => {
                let command = cmd(random_value(s));
                let floor = s.commit_floor();
                let mut started = false;
                for id in s.node_ids().collect::<Vec<_>>() {
                    started |= s.start(id, command.clone()).is_some();
                }
                if started {
                    self.polling = Some((command, floor, 0));
                } else {
                    self.next_at_ms = s.now_ms() + 79 + self.me * 17;
                }
            }
            Some((command, floor, polls)) => {
                let index = s.applied_index_of(&command, floor);
                if index.is_some_and(|i| s.n_committed(i).0 > 0) {
                    self.committed.push(command);
                } else if let Some(&wait_ms) = CHURN_POLL_MS.get(polls) {
                    self.next_at_ms = s.now_ms() + wait_ms;
                    self.polling = Some((command, floor, polls + 1));
                }
            }
        }
    }
}

/// The lab's churn: for 20 rounds of 70 ms, maybe disconnect a random server, maybe restart and
/// reconnect one, maybe crash one, while three clients start values on whoever leads; then heal. Every
/// value a client saw committed must be in the final log, which all five servers apply identically
/// (agreement within 10 s). Our simulated clients also run their random workload throughout, and its
/// history must be linearizable.
fn churn(seed: u64, settings: FaultSettings) {
    let mut s = Scenario::with_clients(5, seed, settings, 3);
    let mut clients: Vec<ChurnClient> =
        (0..3).map(|me| ChurnClient { me, next_at_ms: 0, polling: None, committed: Vec::new() }).collect();
    let run_with_clients = |s: &mut Scenario, clients: &mut Vec<ChurnClient>, ms: u64| {
        let end = s.now_ms() + ms;
        while s.now_ms() < end {
            clients.iter_mut().for_each(|c| c.step(s));
            s.run_ticks(1);
        }
    };
    for _ in 0..20 {
        if s.rng().gen_range(0..1_000) < 200 {
            let id = random_node(&mut s);
            s.disconnect(id);
        }
        if s.rng().gen_range(0..1_000) < 500 {
            let id = random_node(&mut s);
            if !s.is_up(id) {
                s.restart(id);
            }
            s.connect(id);
        }
        if s.rng().gen_range(0..1_000) < 200 {
            let id = random_node(&mut s);
            if s.is_up(id) {
                s.crash(id);
            }
        }
        run_with_clients(&mut s, &mut clients, RAFT_ELECTION_TIMEOUT_MS * 7 / 100);
    }
    run_with_clients(&mut s, &mut clients, RAFT_ELECTION_TIMEOUT_MS);
    s.make_network_reliable();
    for id in s.node_ids().collect::<Vec<_>>() {
        if !s.is_up(id) {
            s.restart(id);
        }
        s.connect(id);
    }
    let values: Vec<Command> = clients.into_iter().flat_map(|c| c.committed).collect();
    s.run_ms(RAFT_ELECTION_TIMEOUT_MS);
    let value = random_value(&mut s);
    let last_index = s.one(cmd(value), 5, true);
    let mut really = Vec::new();
    for index in 1..=last_index {
        let (n, entry) = s.n_committed(index);
        assert_eq!(n, 5, "seed {seed}: index {index} applied on {n} servers after agreement on {last_index}");
        really.extend(entry.as_ref().and_then(command_of));
    }
    for value in &values {
        assert!(really.contains(value), "seed {seed}: didn't find committed value {value:?} in the log");
    }
    let operations = s.check_clients_linearizable();
    println!(
        "seed {seed}: {} values seen committed, {} commands in the final log of {last_index}, {operations} \
         client operations linearizable",
        values.len(),
        really.len()
    );
}

/// TestReliableChurn3C: the churn on a reliable network.
#[test]
fn test_reliable_churn() {
    for seed in seeds(10) {
        churn(seed, FaultSettings::calm());
    }
}

/// TestUnreliableChurn3C: the churn on an unreliable network (10% loss, random delays), made reliable
/// before the final agreement.
#[test]
fn test_unreliable_churn() {
    for seed in seeds(10) {
        churn(seed, unreliable());
    }
}

// ----- 3D: log compaction ------------------------------------------------------------------------------

/// The lab's `SnapShotInterval`: its tester snapshots every 10 applied commands; our nodes snapshot every
/// 10 applied entries (their own policy, `FaultSettings::snapshot_threshold_entries`).
const SNAPSHOT_INTERVAL: u64 = 10;

/// The lab's `MAXLOGSIZE` (2,000 bytes of persisted Raft state) as entries held after the snapshot: the
/// interval, plus what one iteration appends before the next snapshot, plus leaders' no-ops and
/// session registrations.
const MAX_LOG_ENTRIES: u64 = 60;

fn snapshotting(nodes: usize, seed: u64, reliable: bool) -> Scenario {
    let base = if reliable { FaultSettings::calm() } else { unreliable() };
    Scenario::new(nodes, seed, FaultSettings { snapshot_threshold_entries: SNAPSHOT_INTERVAL, ..base })
}

#[track_caller]
fn check_log_size(s: &Scenario) {
    for id in s.node_ids() {
        if let Some(held) = s.log_entries_held(id) {
            if held > MAX_LOG_ENTRIES {
                s.fail(format!(
                    "node {id} holds {held} log entries after its snapshot: the log is not compacted"
                ));
            }
        }
    }
}

/// The lab's `snapcommon`: 30 rounds in which a victim (a follower, every third round the leader) is
/// disconnected or crashed while the others commit and snapshot past it, then comes back and must catch
/// up — through InstallSnapshot, since the entries it lacks are compacted away.
fn snap_common(seed: u64, disconnect: bool, reliable: bool, crash: bool) -> Scenario {
    let servers = 3;
    let mut s = snapshotting(servers, seed, reliable);
    let mut leader1 = s.check_one_leader();
    let value = random_value(&mut s);
    s.one(cmd(value), servers, true);
    for round in 0..30 {
        let (mut victim, mut sender) = (s.peer_after(leader1, 1), leader1);
        if round % 3 == 1 {
            (sender, victim) = (s.peer_after(leader1, 1), leader1);
        }
        if disconnect {
            s.disconnect(victim);
            let value = random_value(&mut s);
            s.one(cmd(value), servers - 1, true);
        }
        if crash {
            s.crash(victim);
            let value = random_value(&mut s);
            s.one(cmd(value), servers - 1, true);
        }
        // Enough commands to trigger a snapshot, started on the sender (a no-op unless it leads).
        let count = SNAPSHOT_INTERVAL / 2 + s.rng().gen_range(0..SNAPSHOT_INTERVAL);
        for _ in 0..count {
            let value = random_value(&mut s);
            s.start(sender, cmd(value));
        }
        let value = random_value(&mut s);
        let expected = if disconnect || crash { servers - 1 } else { servers };
        s.one(cmd(value), expected, true);
        check_log_size(&s);
        if disconnect {
            // Reconnect a follower, who may be behind and need to receive a snapshot.
            s.connect(victim);
            let value = random_value(&mut s);
            s.one(cmd(value), servers, true);
            leader1 = s.check_one_leader();
        }
        if crash {
            s.restart(victim);
            s.connect(victim);
            let value = random_value(&mut s);
            s.one(cmd(value), servers, true);
            leader1 = s.check_one_leader();
        }
    }
    for id in s.node_ids() {
        if s.snapshot_index(id).unwrap_or(0) == 0 {
            s.fail(format!("node {id} never took or installed a snapshot"));
        }
    }
    s
}

/// Snapshots were streamed to someone (InstallSnapshot chunks went out).
#[track_caller]
fn check_installed(s: &mut Scenario) {
    let chunks = s.message_counts().of("install_snapshot").messages;
    if chunks == 0 {
        s.fail("no follower ever needed InstallSnapshot");
    }
}

/// TestSnapshotBasic3D: every node snapshots and compacts while all stay connected.
#[test]
fn test_snapshot_basic() {
    for seed in seeds(2) {
        snap_common(seed, false, true, false);
    }
}

/// TestSnapshotInstall3D: a disconnected follower catches up through InstallSnapshot.
#[test]
fn test_snapshot_install() {
    for seed in seeds(2) {
        let mut s = snap_common(seed, true, true, false);
        check_installed(&mut s);
    }
}

/// TestSnapshotInstallUnreliable3D: the same over a network that loses and delays messages (chunks and
/// their answers get lost: the leader asks again after its chunk timeout).
#[test]
fn test_snapshot_install_unreliable() {
    for seed in seeds(2) {
        let mut s = snap_common(seed, true, false, false);
        check_installed(&mut s);
    }
}

/// TestSnapshotInstallCrash3D: a crashed follower restarts from its own snapshot and catches up.
#[test]
fn test_snapshot_install_crash() {
    for seed in seeds(2) {
        snap_common(seed, false, true, true);
    }
}

/// TestSnapshotInstallUnCrash3D: crashes over an unreliable network.
#[test]
fn test_snapshot_install_uncrash() {
    for seed in seeds(2) {
        snap_common(seed, false, false, true);
    }
}

fn crash_and_restart_all(s: &mut Scenario) {
    let ids: Vec<NodeId> = s.node_ids().collect();
    for &id in &ids {
        s.crash(id);
    }
    for &id in &ids {
        s.restart(id);
    }
}

/// TestSnapshotAllCrash3D: every server crashes after snapshots were taken, restarts from its snapshot
/// and log, and the cluster makes progress from where it was.
#[test]
fn test_snapshot_all_crash() {
    for seed in seeds(2) {
        let servers = 3;
        let mut s = snapshotting(servers, seed, true);
        let value = random_value(&mut s);
        s.one(cmd(value), servers, true);
        for _ in 0..5 {
            // Enough commands to trigger a snapshot.
            let count = SNAPSHOT_INTERVAL / 2 + s.rng().gen_range(0..SNAPSHOT_INTERVAL);
            for _ in 0..count {
                let value = random_value(&mut s);
                s.one(cmd(value), servers, true);
            }
            let value = random_value(&mut s);
            let index1 = s.one(cmd(value), servers, true);
            crash_and_restart_all(&mut s);
            let value = random_value(&mut s);
            let index2 = s.one(cmd(value), servers, true);
            assert!(index2 > index1, "seed {seed}: index decreased from {index1} to {index2}");
        }
    }
}

/// TestSnapshotInit3D: restarting from a snapshot and restarting again right away (the state a node
/// starts from must itself be a valid snapshot to start from).
#[test]
fn test_snapshot_init() {
    for seed in seeds(2) {
        let servers = 3;
        let mut s = snapshotting(servers, seed, true);
        let value = random_value(&mut s);
        s.one(cmd(value), servers, true);
        // Enough ops to make a snapshot.
        for _ in 0..=SNAPSHOT_INTERVAL {
            let value = random_value(&mut s);
            s.one(cmd(value), servers, true);
        }
        crash_and_restart_all(&mut s);
        for id in s.node_ids() {
            if s.snapshot_index(id).unwrap_or(0) == 0 {
                s.fail(format!("node {id} restarted without its snapshot"));
            }
        }
        // A single op, to get something written back to the disk.
        let value = random_value(&mut s);
        s.one(cmd(value), servers, true);
        crash_and_restart_all(&mut s);
        // Another op, to trigger a potential bug.
        let value = random_value(&mut s);
        s.one(cmd(value), servers, true);
    }
}
