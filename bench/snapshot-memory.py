#!/usr/bin/env python3
"""How much memory a leader uses while streaming a large snapshot (issue 6's "Done when").

Starts a 3-node cluster of release `raftkv serve` processes on 127.0.0.1 with a low snapshot threshold,
stops one follower, loads KEYS keys of VALUE_BYTES bytes each through the leader (RESP MSETs, pipelined),
waits until the leader has snapshotted (every 1,000 entries of 100 keys, so its last snapshot holds
nearly everything) and compacted past the stopped follower, records the leader's
VmRSS, restarts the follower, samples the leader's VmRSS every 50 ms until the follower has caught up
through InstallSnapshot, and prints the growth next to the chunk size. Cleans up its processes and
folder on the way out. Only the Python standard library.

    cargo build --release -p raftkv
    python3 bench/snapshot-memory.py                       # 1,100,000 keys x 1 KiB: a snapshot over 1 GB
    KEYS=100000 python3 bench/snapshot-memory.py           # a quick run

Needs about 3 x 2 GB of RAM and a few GB of disk (each node's snapshot, its temporary successor and a
log segment or two) for the default size.
"""

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BIN = os.environ.get("RAFTKV_BIN", "target/release/raftkv")
KEYS = int(os.environ.get("KEYS", "1100000"))
VALUE_BYTES = int(os.environ.get("VALUE_BYTES", "1024"))
KEYS_PER_MSET = 100
PIPELINE = 16
THRESHOLD = os.environ.get("SNAPSHOT_THRESHOLD_ENTRIES", "1000")
# The consensus core's default InstallSnapshot chunk (raft::Config::max_snapshot_chunk_bytes).
CHUNK_BYTES = 1 << 20
SAMPLE_S = 0.05


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def status(admin_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/status", timeout=2) as r:
        return json.load(r)


def metric(admin_port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def wait(what, bound_s, check):
    deadline = time.time() + bound_s
    while time.time() < deadline:
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"waited {bound_s} s for {what}")


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def reply_ok(f):
    line = f.readline()
    if line.startswith(b"+"):
        return True
    if line.startswith(b"-"):
        return False
    raise RuntimeError(f"unexpected reply {line!r}")


def load(port):
    """MSETs of KEYS_PER_MSET keys, PIPELINE of them in flight, key-<i> = i padded to VALUE_BYTES. An MSET
    that failed (a timeout while the machine is busy) is sent again: MSET is idempotent."""
    sock = socket.create_connection(("127.0.0.1", port))
    f = sock.makefile("rb")
    in_flight = collections.deque()
    started, retries = time.time(), 0

    def settle_oldest():
        nonlocal retries
        request = in_flight.popleft()
        if not reply_ok(f):
            retries += 1
            if retries > 1000:
                sys.exit("more than 1,000 MSETs failed")
            sock.sendall(request)
            in_flight.append(request)

    for first in range(0, KEYS, KEYS_PER_MSET):
        args = ["MSET"]
        for i in range(first, min(first + KEYS_PER_MSET, KEYS)):
            args += [f"key-{i}", str(i).rjust(VALUE_BYTES, "x")]
        request = resp(*args)
        sock.sendall(request)
        in_flight.append(request)
        if len(in_flight) >= PIPELINE:
            settle_oldest()
        if first % 100_000 == 0 and first:
            print(f"  {first:,} keys loaded ({time.time() - started:.0f} s)", flush=True)
    while in_flight:
        settle_oldest()
    sock.close()
    if retries:
        print(f"  {retries} MSETs failed and were sent again")
    return time.time() - started


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not found: cargo build --release -p raftkv (or set RAFTKV_BIN)")
    folder = tempfile.mkdtemp(prefix="raftkv-snapmem-")
    ports = free_ports(9)
    nodes = {i: {"client": ports[i - 1], "peer": ports[2 + i], "admin": ports[5 + i]} for i in (1, 2, 3)}
    members = [f"{i}=127.0.0.1:{n['peer']},127.0.0.1:{n['client']},127.0.0.1:{n['admin']}" for i, n in nodes.items()]
    procs = {}

    def start(i):
        n = nodes[i]
        args = [BIN, "serve", "--node-id", str(i), "--cluster-id", "7", "--data-dir", f"{folder}/node-{i}",
                "--client-listen", f"127.0.0.1:{n['client']}", "--peer-listen", f"127.0.0.1:{n['peer']}",
                "--admin-listen", f"127.0.0.1:{n['admin']}", "--snapshot-threshold-entries", THRESHOLD,
                "--bootstrap", "--log-level", "warn"]
        for m in members:
            args += ["--member", m]
        log = open(f"{folder}/node-{i}.log", "ab")
        procs[i] = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def stop(i):
        proc = procs.pop(i)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    try:
        for i in nodes:
            start(i)
        leader = wait("a leader", 30, lambda: next((i for i in nodes if status(nodes[i]["admin"])["role"] == "leader"), None))
        follower = next(i for i in nodes if i != leader)
        print(f"leader {leader}; stopping follower {follower}; loading {KEYS:,} keys x {VALUE_BYTES} B", flush=True)
        follower_applied = status(nodes[follower]["admin"])["applied_index"]
        stop(follower)
        seconds = load(nodes[leader]["client"])
        print(f"loaded in {seconds:.0f} s", flush=True)
        # Measure whoever leads now (an election during the load may have moved the lead).
        leader = wait("a leader", 30, lambda: next((i for i in nodes if i != follower and status(nodes[i]["admin"])["role"] == "leader"), None))
        admin = nodes[leader]["admin"]
        wait("the leader to compact past the follower", 600, lambda: status(admin)["snapshot_index"] > follower_applied)
        # The leader's last snapshot holds all but fewer than THRESHOLD entries (one being written when the
        # load ended is finished), and the snapshot index then stays put for 5 s.
        wait("the leader's last snapshot", 600, lambda: (lambda st: st["applied_index"] - st["snapshot_index"] < int(THRESHOLD))(status(admin)))
        last, since = status(admin)["snapshot_index"], time.time()
        while time.time() - since < 5:
            time.sleep(0.5)
            now = status(admin)["snapshot_index"]
            if now != last:
                last, since = now, time.time()
        snap_files = [f for f in os.listdir(f"{folder}/node-{leader}") if f.endswith(".snap")]
        snap_bytes = max(os.path.getsize(f"{folder}/node-{leader}/{f}") for f in snap_files)
        leader_pid = procs[leader].pid
        baseline = rss_bytes(leader_pid)
        print(f"leader snapshot at index {last}, {snap_bytes / 1e9:.3f} GB on disk; leader VmRSS before the transfer {baseline / 2**20:.0f} MiB", flush=True)

        start(follower)
        started = time.time()
        # A thread of its own samples every 50 ms, whatever the status polls below cost.
        peak, samples, done = [baseline], [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes(leader_pid))
                samples[0] += 1
                time.sleep(SAMPLE_S)

        sampler = threading.Thread(target=sample)
        sampler.start()
        target = status(admin)["commit_index"]
        try:
            wait("the follower to catch up", 900, lambda: status(nodes[follower]["admin"])["applied_index"] >= target)
        finally:
            done.set()
            sampler.join()
        peak, samples = peak[0], samples[0]
        elapsed = time.time() - started
        installed = metric(nodes[follower]["admin"], "raftkv_snapshots_installed_total")
        growth = peak - baseline
        print(f"follower {follower} caught up in {elapsed:.1f} s through {installed:.0f} InstallSnapshot(s); {samples} samples")
        print(f"leader VmRSS: before {baseline / 2**20:.1f} MiB, peak during the transfer {peak / 2**20:.1f} MiB, "
              f"growth {growth / 2**20:.1f} MiB = {growth / CHUNK_BYTES:.1f} chunks of {CHUNK_BYTES // 2**20} MiB "
              f"(snapshot {snap_bytes / 2**20:.0f} MiB)")
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
